//! YAML definitions, read into the same `serde_json::Value` a JSON definition gives, so one
//! validation path serves both formats.
//!
//! The reading is strict so that no YAML pitfall changes a definition's meaning silently:
//! - plain scalars resolve by the YAML 1.2 core schema: only `true`/`false` (any of their three
//!   spellings) are booleans, so `yes`, `no`, `on`, `off`, `y`, `n` are text;
//! - numbers must fit JSON: `.nan`, `.inf` and whole numbers beyond 64 bits are errors, and so is a
//!   whole number with a leading zero (`0755` is octal in YAML 1.1, decimal in 1.2);
//! - tags (`!env x`, `!!str 5`), anchors and aliases (`&a`, `*a`), non-text mapping keys, duplicate
//!   keys and a second document are refused.
//!
//! Every refusal, like every syntax error, names its line and column.

use std::sync::LazyLock;

use regex::Regex;
use saphyr_parser::{Event, Marker, Parser, ScalarStyle, Span, StrInput, Tag};
use serde_json::{Map, Number, Value};

/// Nesting deeper than this is refused (serde_json's own limit for JSON text).
const MAX_DEPTH: usize = 128;

/// Reads one YAML document as a JSON value; an empty document is `null`. On failure, one message
/// ending `at line L column C`.
pub fn to_json(text: &str) -> Result<Value, String> {
    Reader {
        parser: Parser::new_from_str(text),
    }
    .document()
}

struct Reader<'input> {
    parser: Parser<'input, StrInput<'input>>,
}

fn at(message: impl std::fmt::Display, mark: &Marker) -> String {
    format!(
        "{message} at line {} column {}",
        mark.line(),
        mark.col() + 1
    )
}

impl<'input> Reader<'input> {
    fn next(&mut self) -> Result<(Event<'input>, Span), String> {
        match self.parser.next_event() {
            Some(Ok(event)) => Ok(event),
            Some(Err(e)) => Err(at(e.info(), e.marker())),
            None => Err("unexpected end of the YAML stream".to_owned()),
        }
    }

    fn document(mut self) -> Result<Value, String> {
        let mut value = None;
        loop {
            let (event, span) = self.next()?;
            match event {
                Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
                Event::StreamEnd => return Ok(value.unwrap_or(Value::Null)),
                Event::DocumentStart(_) if value.is_some() => {
                    return Err(at(
                        "a definition is one YAML document; found a second one",
                        &span.start,
                    ));
                }
                Event::DocumentStart(_) => {
                    let (event, span) = self.next()?;
                    value = Some(self.node(event, span, 0)?);
                }
                other => return Err(at(format!("unexpected {other:?}"), &span.start)),
            }
        }
    }

    fn node(&mut self, event: Event<'input>, span: Span, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(at(
                format!("nested more than {MAX_DEPTH} levels deep"),
                &span.start,
            ));
        }
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                plain_node(anchor, tag.as_deref(), &span)?;
                scalar(&text, style).map_err(|message| at(message, &span.start))
            }
            Event::SequenceStart(anchor, tag) => {
                plain_node(anchor, tag.as_deref(), &span)?;
                let mut items = Vec::new();
                loop {
                    let (event, span) = self.next()?;
                    if matches!(event, Event::SequenceEnd) {
                        return Ok(Value::Array(items));
                    }
                    items.push(self.node(event, span, depth + 1)?);
                }
            }
            Event::MappingStart(anchor, tag) => {
                plain_node(anchor, tag.as_deref(), &span)?;
                let mut map = Map::new();
                loop {
                    let (event, key_span) = self.next()?;
                    if matches!(event, Event::MappingEnd) {
                        return Ok(Value::Object(map));
                    }
                    let key = key(event, &key_span)?;
                    let (event, span) = self.next()?;
                    let value = self.node(event, span, depth + 1)?;
                    if map.contains_key(&key) {
                        return Err(at(format!("duplicate key '{key}'"), &key_span.start));
                    }
                    map.insert(key, value);
                }
            }
            Event::Alias(_) => Err(at(
                "aliases (*name) are not supported; write the value out",
                &span.start,
            )),
            other => Err(at(format!("unexpected {other:?}"), &span.start)),
        }
    }
}

/// Refuses what would make a node mean something other than it reads: an anchor (only useful
/// with aliases) or a tag.
fn plain_node(anchor: usize, tag: Option<&Tag>, span: &Span) -> Result<(), String> {
    if anchor != 0 {
        return Err(at(
            "anchors (&name) and aliases are not supported; write the value out",
            &span.start,
        ));
    }
    if let Some(tag) = tag {
        let shown = if tag.is_yaml_core_schema() {
            format!("!!{}", tag.suffix)
        } else {
            tag.to_string()
        };
        return Err(at(
            format!(
                "YAML tags ({shown}) are not supported; write a plain value (quote it for text)"
            ),
            &span.start,
        ));
    }
    Ok(())
}

/// A mapping key: text only, as in JSON.
fn key(event: Event<'_>, span: &Span) -> Result<String, String> {
    let Event::Scalar(text, style, anchor, tag) = event else {
        return Err(at(
            "mapping keys must be text, not a list, a mapping or an alias",
            &span.start,
        ));
    };
    plain_node(anchor, tag.as_deref(), span)?;
    match scalar(&text, style) {
        Ok(Value::String(key)) => Ok(key),
        Ok(other) => Err(at(
            format!("mapping keys must be text; {other} is not (quote it: \"{text}\")"),
            &span.start,
        )),
        Err(message) => Err(at(message, &span.start)),
    }
}

static INTEGER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[-+]?[0-9]+$").expect("valid"));
static FLOAT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$").expect("valid")
});
static NOT_A_NUMBER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^([-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN))$").expect("valid"));

/// A scalar by the YAML 1.2 core schema; quoted and block scalars are always text.
fn scalar(text: &str, style: ScalarStyle) -> Result<Value, String> {
    if style != ScalarStyle::Plain {
        return Ok(Value::String(text.to_owned()));
    }
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Ok(Value::Null),
        "true" | "True" | "TRUE" => return Ok(Value::Bool(true)),
        "false" | "False" | "FALSE" => return Ok(Value::Bool(false)),
        _ => {}
    }
    if NOT_A_NUMBER.is_match(text) {
        return Err(format!(
            "{text} is not a number JSON can hold (quote it for text)"
        ));
    }
    if INTEGER.is_match(text) {
        let digits = text.trim_start_matches(['-', '+']);
        if digits.len() > 1 && digits.starts_with('0') {
            return Err(format!(
                "{text}: a whole number with a leading zero is ambiguous (octal in YAML 1.1); \
                 write it without the zero, or quote it for text"
            ));
        }
        let unsigned = text.trim_start_matches('+');
        return unsigned
            .parse::<i64>()
            .map(Number::from)
            .or_else(|_| unsigned.parse::<u64>().map(Number::from))
            .map(Value::Number)
            .map_err(|_| format!("{text} does not fit in a 64-bit whole number"));
    }
    for (prefix, radix) in [("0x", 16), ("0o", 8)] {
        let Some(digits) = text.strip_prefix(prefix) else {
            continue;
        };
        if !digits.is_empty() && digits.chars().all(|c| c.is_digit(radix)) {
            return u64::from_str_radix(digits, radix)
                .map(|n| Value::Number(n.into()))
                .map_err(|_| format!("{text} does not fit in a 64-bit whole number"));
        }
    }
    if FLOAT.is_match(text) {
        return text
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("{text} is not a number JSON can hold"));
    }
    Ok(Value::String(text.to_owned()))
}

/// Splits a message of this module (`... at line L column C`) into the message and its position.
pub fn split_position(message: &str) -> Option<(&str, usize, usize)> {
    let (text, place) = message.rsplit_once(" at line ")?;
    let (line, column) = place.split_once(" column ")?;
    Some((text, line.parse().ok()?, column.parse().ok()?))
}

/// Where the nodes of a document start, as `(line, column)` from 1, by JSON pointer (RFC 6901:
/// `""` the root, `/rules/0/allow/1`); for a mapping's members, also where their keys start. For
/// messages about a document [`to_json`] accepted; on anything else it stops where it stops.
#[derive(Debug, Clone, Default)]
pub struct Positions {
    nodes: std::collections::HashMap<String, (usize, usize)>,
    keys: std::collections::HashMap<String, (usize, usize)>,
}

impl Positions {
    /// Where the node at `pointer` starts.
    pub fn node(&self, pointer: &str) -> Option<(usize, usize)> {
        self.nodes.get(pointer).copied()
    }

    /// Where the key of the mapping member at `pointer` starts.
    pub fn key(&self, pointer: &str) -> Option<(usize, usize)> {
        self.keys.get(pointer).copied()
    }

    /// Reads the positions of `text`'s first document.
    pub fn of(text: &str) -> Positions {
        let mut positions = Positions::default();
        let mut parser = Parser::new_from_str(text);
        loop {
            match parser.next_event() {
                Some(Ok((Event::DocumentStart(_), _))) => {
                    if let Some(Ok((event, span))) = parser.next_event() {
                        positions.walk(&mut parser, event, &span, String::new(), 0);
                    }
                    return positions;
                }
                Some(Ok((Event::StreamEnd, _))) | Some(Err(_)) | None => return positions,
                Some(Ok(_)) => {}
            }
        }
    }

    fn walk<'input>(
        &mut self,
        parser: &mut Parser<'input, StrInput<'input>>,
        event: Event<'input>,
        span: &Span,
        pointer: String,
        depth: usize,
    ) -> Option<()> {
        let place = |mark: &Marker| (mark.line(), mark.col() + 1);
        self.nodes.insert(pointer.clone(), place(&span.start));
        if depth > MAX_DEPTH {
            return None;
        }
        match event {
            Event::SequenceStart(..) => {
                for index in 0.. {
                    let (event, span) = parser.next_event()?.ok()?;
                    if matches!(event, Event::SequenceEnd) {
                        break;
                    }
                    self.walk(
                        parser,
                        event,
                        &span,
                        format!("{pointer}/{index}"),
                        depth + 1,
                    )?;
                }
                Some(())
            }
            Event::MappingStart(..) => loop {
                let (event, key_span) = parser.next_event()?.ok()?;
                let key = match event {
                    Event::MappingEnd => return Some(()),
                    Event::Scalar(text, ..) => text.replace('~', "~0").replace('/', "~1"),
                    _ => return None,
                };
                let member = format!("{pointer}/{key}");
                self.keys.insert(member.clone(), place(&key_span.start));
                let (event, span) = parser.next_event()?.ok()?;
                self.walk(parser, event, &span, member, depth + 1)?;
            },
            _ => Some(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn plain_scalars_resolve_by_the_yaml_1_2_core_schema() {
        let value = to_json(
            "a: yes\nb: no\nc: on\nd: off\ne: y\nf: True\ng: FALSE\nh: ~\ni:\nj: 12\nk: -3\n\
             l: +4\nm: 1.5\nn: .5\no: 1e3\np: 0x1F\nq: 0o17\nr: 1_000\ns: 1:30\nt: '12'\n\
             u: 18446744073709551615\nv: \"true\"\nw: 0\n",
        )
        .unwrap();
        assert_eq!(
            value,
            json!({"a": "yes", "b": "no", "c": "on", "d": "off", "e": "y", "f": true, "g": false,
                   "h": null, "i": null, "j": 12, "k": -3, "l": 4, "m": 1.5, "n": 0.5, "o": 1000.0,
                   "p": 31, "q": 15, "r": "1_000", "s": "1:30", "t": "12",
                   "u": 18446744073709551615u64, "v": "true", "w": 0})
        );
    }

    #[test]
    fn numbers_json_cannot_hold_are_refused() {
        for (text, expected) in [
            (
                "x: .nan",
                ".nan is not a number JSON can hold (quote it for text) at line 1 column 4",
            ),
            ("x: -.inf", "-.inf is not a number JSON can hold"),
            ("x: 1e999", "1e999 is not a number JSON can hold"),
            (
                "x: 18446744073709551616",
                "does not fit in a 64-bit whole number",
            ),
            (
                "x: -9223372036854775809",
                "does not fit in a 64-bit whole number",
            ),
            (
                "x: 0755",
                "0755: a whole number with a leading zero is ambiguous",
            ),
            (
                "x: 0x1FFFFFFFFFFFFFFFF",
                "does not fit in a 64-bit whole number",
            ),
        ] {
            let error = to_json(text).expect_err(text);
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn block_and_quoted_scalars_are_text() {
        let value =
            to_json("a: |\n  line one\n  line two\nb: >\n  folded\n  text\nc: \"0755\"\n").unwrap();
        assert_eq!(
            value,
            json!({"a": "line one\nline two\n", "b": "folded text\n", "c": "0755"})
        );
    }

    #[test]
    fn anchors_aliases_keys_duplicates_and_documents_are_refused_with_their_position() {
        for (text, expected) in [
            (
                "a: &x 1\nb: *x\n",
                "anchors (&name) and aliases are not supported",
            ),
            ("a: *x\n", "unknown anchor at line 1 column 4"),
            ("? [a]\n: 1\n", "mapping keys must be text, not a list"),
            (
                "1: one\n",
                "mapping keys must be text; 1 is not (quote it: \"1\")",
            ),
            ("null: x\n", "mapping keys must be text; null is not"),
            ("a: 1\nb: 2\na: 3\n", "duplicate key 'a' at line 3 column 1"),
            ("a: 1\n---\nb: 2\n", "found a second one at line 2 column 1"),
            ("a: !!str 5\n", "YAML tags (!!str) are not supported"),
            ("a: [1, 2\n", "at line 2"),
        ] {
            let error = to_json(text).expect_err(text);
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn positions_name_each_node_and_key_by_pointer() {
        let text = "default: deny\nrules:\n  - roles: [admin, \"a/b\"]\n    allow:\n      - run\n";
        let positions = Positions::of(text);
        assert_eq!(positions.node(""), Some((1, 1)));
        assert_eq!(positions.key("/default"), Some((1, 1)));
        assert_eq!(positions.node("/default"), Some((1, 10)));
        assert_eq!(positions.node("/rules/0"), Some((3, 5)));
        assert_eq!(positions.key("/rules/0/roles"), Some((3, 5)));
        assert_eq!(positions.node("/rules/0/roles/1"), Some((3, 20)));
        assert_eq!(positions.node("/rules/0/allow/0"), Some((5, 9)));
        assert_eq!(positions.node("/rules/1"), None);
        let keyed = Positions::of("a/b: 1\n");
        assert_eq!(keyed.node("/a~1b"), Some((1, 6)));
    }

    #[test]
    fn a_message_splits_into_text_and_position() {
        let error = to_json("a: 1\na: 2\n").unwrap_err();
        assert_eq!(split_position(&error), Some(("duplicate key 'a'", 2, 1)));
        assert_eq!(split_position("no position here"), None);
    }

    #[test]
    fn an_empty_document_is_null_and_deep_nesting_is_refused() {
        assert_eq!(to_json("").unwrap(), Value::Null);
        assert_eq!(to_json("# only a comment\n").unwrap(), Value::Null);
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let error = to_json(&deep).expect_err("too deep");
        assert!(
            error.contains("nested more than 128 levels deep"),
            "{error}"
        );
    }
}
