//! The expected strings below are what CPython 3.11's `json` and `repr` print for the same values
//! (checked with `python3`; `tests/it/legacy_audit.rs` also compares against a live `python3`).

use super::pyjson::{dumps_sorted, float_repr, parse, PyStr, PyValue};
use super::*;

fn dumps(text: &str) -> String {
    let mut out = String::new();
    dumps_sorted(&parse(text).unwrap(), &mut out);
    out
}

fn repr(f: f64) -> String {
    let mut out = String::new();
    float_repr(f, &mut out);
    out
}

#[test]
fn floats_print_as_python_repr() {
    let cases: [(f64, &str); 18] = [
        (0.1, "0.1"),
        (1e-05, "1e-05"),
        (12.0, "12.0"),
        (1e16, "1e+16"),
        (1e15, "1000000000000000.0"),
        (0.0001, "0.0001"),
        (-0.0, "-0.0"),
        (5e-324, "5e-324"),
        (f64::MAX, "1.7976931348623157e+308"),
        (123456789.123, "123456789.123"),
        (1e22, "1e+22"),
        (9999999999999998.0, "9999999999999998.0"),
        (0.1 + 0.2, "0.30000000000000004"),
        (-1.5e-7, "-1.5e-07"),
        (2.5e-5, "2.5e-05"),
        (1e100, "1e+100"),
        (100.0, "100.0"),
        (1234567890123456.7, "1234567890123456.8"),
    ];
    for (value, python) in cases {
        assert_eq!(repr(value), python, "{value:e}");
    }
}

#[test]
fn nan_and_infinities_print_as_json_dumps_writes_them() {
    assert_eq!(
        dumps("[-0, 1E2, 1e400, -1e400, NaN, -Infinity, 10000000000000000000000000000001]"),
        "[0, 100.0, Infinity, -Infinity, NaN, -Infinity, 10000000000000000000000000000001]"
    );
}

#[test]
fn objects_are_sorted_by_code_point_with_python_separators() {
    let text = r#"{"b":[1,null,true,false,{"y":"é","x":"😀\u007f\u0001\t\"\\"}],"a":{},"￿":1,"😀":2,"Z":3,"a0":[]}"#;
    // U+FFFF sorts before U+1F600 by code point, though not by UTF-16 code unit.
    assert_eq!(
        dumps(text),
        r#"{"Z": 3, "a": {}, "a0": [], "b": [1, null, true, false, {"x": "\ud83d\ude00\u007f\u0001\t\"\\", "y": "\u00e9"}], "\uffff": 1, "\ud83d\ude00": 2}"#
    );
}

#[test]
fn surrogate_escapes_pair_up_or_stay_lone_as_in_python() {
    let value = parse(r#"{"s":"\ud83d \ud83d\ude00 \udc00\ud800"}"#).unwrap();
    let PyValue::Object(members) = &value else {
        panic!("{value:?}")
    };
    assert_eq!(
        members[0].1,
        PyValue::Str(PyStr(vec![0xd83d, 0x20, 0x1f600, 0x20, 0xdc00, 0xd800]))
    );
    let mut out = String::new();
    dumps_sorted(&value, &mut out);
    assert_eq!(out, r#"{"s": "\ud83d \ud83d\ude00 \udc00\ud800"}"#);
}

#[test]
fn white_space_and_escapes_read_as_json_loads_reads_them() {
    assert_eq!(
        dumps(" {\"k\" : [ \"\\/\\b\\f\\n\\r\" , 2.50 ] }\r\n"),
        r#"{"k": ["/\b\f\n\r", 2.5]}"#
    );
}

#[test]
fn refuses_what_json_loads_refuses_and_repeated_names() {
    for bad in [
        "",
        "{",
        r#"{"a":1,}"#,
        "[1,]",
        r#"{"a":01}"#,
        "1.",
        "{'a':1}",
        "\"tab\there\"",
        r#""\x41""#,
        r#""\u12G4""#,
        "nul",
        "[1] 2",
        r#"{"a":1,"a":2}"#,
    ] {
        assert!(parse(bad).is_err(), "{bad:?} parsed");
    }
    let deep = format!("{}{}", "[".repeat(513), "]".repeat(513));
    assert!(parse(&deep).unwrap_err().message.contains("deeper"));
    assert!(parse(&"7".repeat(4301)).is_err());
    assert!(parse(&"7".repeat(4300)).is_ok());
}

/// Written by the original's own audit code (pydantic 2.13, Python 3.11): a naive timestamp, a
/// non-ASCII and astral name, a DEL character, a float the line spells `0.00001` and the hash
/// `1e-05`, a big integer.
const ORIGINAL_LINE: &str = "{\"trace_id\":\"t-1\",\"timestamp\":\"2026-11-30T07:09:03.193189\",\"aim\":{\"actor\":{\"name\":\"Zoë Ünal 😀\",\"email\":null,\"role\":\"Lead\"}},\"drag_mode\":\"execute\",\"workflow_name\":\"deploy\",\"parameters\":{\"x\":0.00001,\"big\":1180591620717411303424,\"f\":12.0,\"s\":\"a\u{7f}b\\\"\\\\\\n\"},\"outcome\":\"success\",\"error\":null,\"duration_seconds\":0.1,\"integrity_hash\":\"bea7978bad29e53305d3b4d85a1b3aa663c2146f936a27e447a24ba2d7658296\"}";

/// Also the original's, for an aware (UTC) timestamp: the offset is kept in both forms.
const ORIGINAL_AWARE_LINE: &str = r#"{"trace_id":"t-3","timestamp":"2025-01-02T03:04:05.000007+00:00","aim":{},"drag_mode":"draft","workflow_name":"w","parameters":{},"outcome":"rejected","error":null,"duration_seconds":null,"integrity_hash":"715dfff5687e4e0329adb29b944ee58eef88d936a8c9d1ec3e9de8e7979f16d9"}"#;

#[test]
fn lines_written_by_the_original_verify() {
    let line = check_line(ORIGINAL_LINE.as_bytes()).unwrap();
    assert_eq!(line.timestamp, "2026-11-30T07:09:03.193189");
    assert_eq!(&line.integrity_hash[..8], "bea7978b");
    check_line(ORIGINAL_AWARE_LINE.as_bytes()).unwrap();
    // The same record in pydantic 1's form (json.dumps defaults) hashes the same.
    let spaced = r#"{"trace_id": "t-3", "timestamp": "2025-01-02T03:04:05.000007+00:00", "aim": {}, "drag_mode": "draft", "workflow_name": "w", "parameters": {}, "outcome": "rejected", "error": null, "duration_seconds": null, "integrity_hash": "715dfff5687e4e0329adb29b944ee58eef88d936a8c9d1ec3e9de8e7979f16d9"}"#;
    check_line(spaced.as_bytes()).unwrap();
}

#[test]
fn an_edited_line_does_not_verify() {
    let edited = ORIGINAL_LINE.replace("\"success\"", "\"failure\"");
    assert!(check_line(edited.as_bytes())
        .unwrap_err()
        .contains("does not match"));
    // A float that reads back as another value is an edit; one spelt differently is not.
    let respelt = ORIGINAL_LINE.replace("0.00001", "1e-5");
    check_line(respelt.as_bytes()).unwrap();
    let changed = ORIGINAL_LINE.replace("0.00001", "0.000011");
    assert!(check_line(changed.as_bytes()).is_err());
}

#[test]
fn a_line_without_its_hash_or_timestamp_in_the_original_form_is_refused() {
    let cases = [
        (
            ORIGINAL_LINE.replace("\"integrity_hash\"", "\"hash\""),
            "integrity_hash",
        ),
        (
            ORIGINAL_LINE.replace("\"bea79", "\"BEA79"),
            "integrity_hash",
        ),
        (
            ORIGINAL_LINE.replace("\"timestamp\"", "\"time\""),
            "no timestamp",
        ),
        (
            ORIGINAL_LINE.replace("03.193189\"", "03.193189Z\""),
            "timestamp",
        ),
        (ORIGINAL_LINE.replace("T07:", " 07:"), "timestamp"),
        ("[1]".to_owned(), "not a JSON object"),
        ("{\"a\":".to_owned(), "not JSON"),
    ];
    for (line, expected) in cases {
        let error = check_line(line.as_bytes()).unwrap_err();
        assert!(error.contains(expected), "{line}: {error}");
    }
    assert_eq!(
        check_line(b"{\"a\":\"\xff\"}").unwrap_err(),
        "not UTF-8 text"
    );
}

#[test]
fn timestamps_hash_with_a_space_where_the_line_has_a_t() {
    let cases = [
        ("2025-03-01T09:16:00", Some("2025-03-01 09:16:00")),
        (
            "2025-03-01T09:15:02.250000",
            Some("2025-03-01 09:15:02.250000"),
        ),
        (
            "2025-03-01T09:15:02.250000+00:00",
            Some("2025-03-01 09:15:02.250000+00:00"),
        ),
        (
            "2025-03-01T09:15:02-05:30",
            Some("2025-03-01 09:15:02-05:30"),
        ),
        (
            "2025-03-01T09:15:02+01:00:30.000001",
            Some("2025-03-01 09:15:02+01:00:30.000001"),
        ),
        ("2025-03-01T09:15:02Z", None),
        ("2025-03-01T09:15:02.25", None),
        ("2025-03-01 09:15:02", None),
        ("2025-03-01T09:15", None),
        ("2025-03-01T09:15:02+0000", None),
        ("２025-03-01T09:15:02", None),
    ];
    for (written, hashed) in cases {
        assert_eq!(hashed_timestamp(written).as_deref(), hashed, "{written}");
    }
}

fn report(text: &str) -> LegacyReport {
    verify_reader(text.as_bytes()).unwrap()
}

#[test]
fn a_file_verifies_line_by_line_and_names_the_first_bad_line() {
    let good = format!("{ORIGINAL_LINE}\n{ORIGINAL_AWARE_LINE}\n");
    let whole = report(&good);
    assert!(whole.is_valid(), "{whole:?}");
    assert_eq!(whole.lines, 2);
    assert_eq!(
        whole.first_timestamp.as_deref(),
        Some("2026-11-30T07:09:03.193189")
    );
    assert_eq!(
        whole.last_timestamp.as_deref(),
        Some("2025-01-02T03:04:05.000007+00:00")
    );
    assert_eq!(
        whole.sha256,
        format!("sha256:{}", hex::encode(Sha256::digest(good.as_bytes())))
    );

    let tampered = format!(
        "{good}{}\n{ORIGINAL_LINE}\n",
        ORIGINAL_LINE.replace("t-1", "t-9")
    );
    let bad = report(&tampered);
    assert_eq!(bad.lines, 2);
    let problem = bad.problem.unwrap();
    assert_eq!(problem.line, 3);
    assert!(problem.message.contains("does not match"), "{problem:?}");
    // The digest still covers every byte, past the bad line too.
    assert_eq!(
        bad.sha256,
        format!(
            "sha256:{}",
            hex::encode(Sha256::digest(tampered.as_bytes()))
        )
    );
}

#[test]
fn a_torn_last_line_and_an_empty_line_are_bad_lines() {
    let torn = report(&format!("{ORIGINAL_LINE}\n{ORIGINAL_AWARE_LINE}"));
    let problem = torn.problem.unwrap();
    assert_eq!(problem.line, 2);
    assert!(problem.message.contains("no final newline"));
    let blank = report(&format!("{ORIGINAL_LINE}\n\n"));
    assert_eq!(blank.problem.unwrap().line, 2);
}

#[test]
fn an_empty_file_verifies_with_no_lines() {
    let empty = report("");
    assert!(empty.is_valid());
    assert_eq!(empty.lines, 0);
    assert_eq!(empty.first_timestamp, None);
}
