//! The original (Python) server's audit log: its JSON reader (`pyjson`, which keeps lone
//! surrogates, big integers and `NaN` as Python wrote them), the line check and the file verifier.

use std::io::Cursor;

use crate::audit::legacy::{check_line, pyjson, verify_reader};

/// Python's encoding of what the reader read reads back to the same encoding (the line hash is
/// computed over it), and no line or file makes the reader or verifier panic.
#[test]
fn legacy_reader_reencodes_stably_and_never_panics() {
    super::fuzz("legacy_audit", |bytes| {
        let report = verify_reader(Cursor::new(bytes)).expect("reading from memory cannot fail");
        let _ = report.is_valid();
        for line in bytes.split(|&b| b == b'\n') {
            let _ = check_line(line);
            let Ok(text) = std::str::from_utf8(line) else {
                continue;
            };
            if let Ok(value) = pyjson::parse(text) {
                let mut once = String::new();
                pyjson::dumps_sorted(&value, &mut once);
                let again =
                    pyjson::parse(&once).unwrap_or_else(|e| panic!("re-reading {once:?}: {e}"));
                let mut twice = String::new();
                pyjson::dumps_sorted(&again, &mut twice);
                assert_eq!(once, twice);
            }
        }
    });
}
