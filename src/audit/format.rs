//! The byte-level audit line format (see `docs/audit-format.md`).
//!
//! A line is the canonical JSON of a record (sorted keys, no insignificant white space, UTF-8) with one
//! member appended last: `"integrity_hash":"sha256:<64 hex>"`. The hash covers the exact bytes of the
//! line without that member, so a verifier never re-encodes JSON: it cuts the fixed-length suffix off,
//! closes the brace and hashes what it has.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Domain separation: no other SustainBot hash starts with these bytes.
pub const DOMAIN: &[u8] = b"sustainbot-audit-v1\n";
/// The `prev_hash` of the first record.
pub const GENESIS_HASH: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000000";

const SUFFIX_HEAD: &[u8] = b",\"integrity_hash\":\"sha256:";
const SUFFIX_TAIL: &[u8] = b"\"}";
/// Length of the integrity member plus closing brace at the end of every line (without newline).
pub const SUFFIX_LEN: usize = SUFFIX_HEAD.len() + 64 + SUFFIX_TAIL.len();

/// `sha256:<hex>` of the domain tag followed by `body`.
pub fn hash_body(body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(DOMAIN);
    hasher.update(body);
    tagged(&hasher.finalize())
}

/// `sha256:` followed by the lower-case hex of a digest, in one allocation.
fn tagged(digest: &[u8]) -> String {
    let mut hex = [0u8; 64];
    // A 32-byte digest always fits 64 hex digits.
    let _ = hex::encode_to_slice(digest, &mut hex);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    out.push_str(std::str::from_utf8(&hex).unwrap_or_default());
    out
}

/// Plain `sha256:<hex>` of some bytes, without the domain tag (for evidence such as cut bytes).
pub fn sha256_tagged(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Encodes `fields` as one chained line (with trailing newline) and returns it with its hash.
///
/// `fields` must not already hold `integrity_hash`. serde_json's `Map` is ordered by key (the crate's
/// `preserve_order` feature is not enabled; a test guards it), which makes the encoding canonical.
pub fn encode_line(fields: Map<String, Value>) -> (Vec<u8>, String) {
    let body = serde_json::to_vec(&Value::Object(fields)).unwrap_or_else(|_| b"{}".to_vec());
    let hash = hash_body(&body);
    let mut line = Vec::with_capacity(body.len() + SUFFIX_LEN + 1);
    line.extend_from_slice(&body[..body.len() - 1]);
    if body.len() > 2 {
        line.extend_from_slice(SUFFIX_HEAD);
    } else {
        // An empty object has no member before ours, so no comma.
        line.extend_from_slice(&SUFFIX_HEAD[1..]);
    }
    line.extend_from_slice(&hash.as_bytes()["sha256:".len()..]);
    line.extend_from_slice(SUFFIX_TAIL);
    line.push(b'\n');
    (line, hash)
}

/// The chain members the writer adds, in key order.
const CHAIN_KEYS: [&str; 3] = ["prev_hash", "seq", "timestamp"];

/// A record's own members, encoded ahead of time (by the caller, off the single writer thread),
/// grouped by where the writer's chain members fall in key order. [`PreEncoded::seal`] then only
/// splices in `prev_hash`, `seq` and `timestamp`, hashes and frames the line.
#[derive(Debug, Clone, Default)]
pub struct PreEncoded {
    /// Comma-joined `"key":value` members: keys before `prev_hash`, between `prev_hash` and `seq`,
    /// between `seq` and `timestamp`, after `timestamp`.
    parts: [Vec<u8>; 4],
}

impl PreEncoded {
    /// Encodes `fields` (which must not hold the chain members or `integrity_hash`; any that do are
    /// dropped: only the writer sets them).
    pub fn new(fields: &Map<String, Value>) -> PreEncoded {
        let mut encoded = PreEncoded::default();
        for (key, value) in fields {
            if CHAIN_KEYS.contains(&key.as_str()) || key == "integrity_hash" {
                continue;
            }
            let part = CHAIN_KEYS
                .iter()
                .take_while(|chain| key.as_str() > **chain)
                .count();
            let out = &mut encoded.parts[part];
            if !out.is_empty() {
                out.push(b',');
            }
            // Writing JSON into a Vec cannot fail for a string key and a `Value`.
            let _ = serde_json::to_writer(&mut *out, key);
            out.push(b':');
            let _ = serde_json::to_writer(&mut *out, value);
        }
        encoded
    }

    /// Adds one member. Members must come in key order and not be chain members; `value` must
    /// serialize canonically (maps sorted, as `serde_json::Value` and key-ordered structs do).
    pub fn member(&mut self, key: &str, value: &(impl serde::Serialize + ?Sized)) {
        debug_assert!(!CHAIN_KEYS.contains(&key) && key != "integrity_hash");
        let part = CHAIN_KEYS.iter().take_while(|chain| key > **chain).count();
        let out = &mut self.parts[part];
        if !out.is_empty() {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut *out, key);
        out.push(b':');
        let _ = serde_json::to_writer(&mut *out, value);
    }

    /// Appends the framed line (with newline) for this record at `seq` to `out`; returns its hash.
    pub fn seal(&self, seq: u64, prev_hash: &str, timestamp: &str, out: &mut Vec<u8>) -> String {
        let start = out.len();
        out.push(b'{');
        // The record's own members with the three chain members spliced in, each written in place
        // (this runs once per record on the single writer thread).
        let mut digits = [0u8; 20];
        let seq_digits = itoa(seq, &mut digits);
        let chain: [&[&[u8]]; 3] = [
            &[b"\"prev_hash\":\"", prev_hash.as_bytes(), b"\""],
            &[b"\"seq\":", seq_digits],
            &[b"\"timestamp\":\"", timestamp.as_bytes(), b"\""],
        ];
        let mut first = true;
        for (i, part) in self.parts.iter().enumerate() {
            for pieces in std::iter::once(&[part.as_slice()][..]).chain(chain.get(i).copied()) {
                if pieces.iter().all(|p| p.is_empty()) {
                    continue;
                }
                if !first {
                    out.push(b',');
                }
                first = false;
                for piece in pieces {
                    out.extend_from_slice(piece);
                }
            }
        }
        out.push(b'}');
        let hash = hash_body(&out[start..]);
        out.pop();
        out.extend_from_slice(SUFFIX_HEAD);
        out.extend_from_slice(&hash.as_bytes()["sha256:".len()..]);
        out.extend_from_slice(SUFFIX_TAIL);
        out.push(b'\n');
        hash
    }
}

/// The decimal digits of `n`, written into `buffer`.
fn itoa(mut n: u64, buffer: &mut [u8; 20]) -> &[u8] {
    let mut at = buffer.len();
    loop {
        at -= 1;
        buffer[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buffer[at..];
        }
    }
}

/// Why a line does not have the audit line's shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("line does not end with the integrity_hash member")]
    NoIntegrityHash,
}

/// Splits a line (without its newline) into the hashed body and the stated hash.
pub fn split_line(line: &[u8]) -> Result<(Vec<u8>, String), LineError> {
    if line.len() < SUFFIX_LEN + 1 || !line.ends_with(SUFFIX_TAIL) {
        return Err(LineError::NoIntegrityHash);
    }
    let at = line.len() - SUFFIX_LEN;
    let hex_part = &line[at + SUFFIX_HEAD.len()..line.len() - SUFFIX_TAIL.len()];
    let well_formed = line[at..].starts_with(SUFFIX_HEAD)
        && hex_part
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
    if !well_formed {
        return Err(LineError::NoIntegrityHash);
    }
    let mut body = Vec::with_capacity(at + 1);
    body.extend_from_slice(&line[..at]);
    body.push(b'}');
    let stated = format!("sha256:{}", String::from_utf8_lossy(hex_part));
    Ok((body, stated))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn map_keys_are_sorted_so_the_encoding_is_canonical() {
        let mut map = Map::new();
        map.insert("zeta".into(), json!(1));
        map.insert("alpha".into(), json!({"y": 1, "b": 2}));
        assert_eq!(
            serde_json::to_string(&map).unwrap(),
            r#"{"alpha":{"b":2,"y":1},"zeta":1}"#
        );
    }

    #[test]
    fn a_line_splits_back_into_the_hashed_body() {
        let mut map = Map::new();
        map.insert("seq".into(), json!(1));
        map.insert("text".into(), json!("é \" }"));
        let (line, hash) = encode_line(map);
        assert!(line.ends_with(b"\"}\n"));
        let (body, stated) = split_line(&line[..line.len() - 1]).unwrap();
        assert_eq!(stated, hash);
        assert_eq!(hash_body(&body), hash);
        let expected = serde_json::to_vec(&json!({"seq": 1, "text": "é \" }"})).unwrap();
        assert_eq!(body, expected);
    }

    #[test]
    fn a_sealed_record_is_the_canonical_encoding_of_all_its_members() {
        let record = json!({"kind": "run", "aim": {"b": 1, "a": "é"}, "outcome": "started", "principal": null,
                            "seq": 99, "trace_id": "t", "zeta": [1, 2]});
        let Value::Object(fields) = record else {
            unreachable!()
        };
        let mut line = Vec::new();
        let hash = PreEncoded::new(&fields).seal(
            7,
            GENESIS_HASH,
            "2026-01-01T00:00:00.000000Z",
            &mut line,
        );
        let mut expected = fields.clone();
        expected.insert("seq".into(), json!(7));
        expected.insert("prev_hash".into(), json!(GENESIS_HASH));
        expected.insert("timestamp".into(), json!("2026-01-01T00:00:00.000000Z"));
        let (canonical, canonical_hash) = encode_line(expected);
        assert_eq!(
            String::from_utf8(line).unwrap(),
            String::from_utf8(canonical).unwrap()
        );
        assert_eq!(hash, canonical_hash);
    }

    #[test]
    fn a_record_with_no_members_of_its_own_still_seals() {
        let mut line = Vec::new();
        PreEncoded::new(&Map::new()).seal(1, GENESIS_HASH, "t", &mut line);
        let (body, stated) = split_line(&line[..line.len() - 1]).unwrap();
        assert_eq!(hash_body(&body), stated);
    }

    #[test]
    fn rejects_lines_without_the_final_member() {
        assert_eq!(split_line(br#"{"seq":1}"#), Err(LineError::NoIntegrityHash));
        let forged = format!(
            r#"{{"seq":1,"integrity_hash":"sha256:{}"}}"#,
            "Z".repeat(64)
        );
        assert_eq!(
            split_line(forged.as_bytes()),
            Err(LineError::NoIntegrityHash)
        );
    }
}
