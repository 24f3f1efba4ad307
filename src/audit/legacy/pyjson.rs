//! JSON as Python's standard `json` module reads and writes it, for the original server's audit
//! lines: [`parse`] follows `json.loads`, and [`dumps_sorted`] reproduces
//! `json.dumps(value, sort_keys=True)` byte for byte.
//!
//! The original hashed the output of `json.dumps` of its in-memory record, so verifying one of its
//! lines means rebuilding those exact bytes from the line. Three things differ from serde_json and
//! are why this module exists: Python writes `", "` and `": "` between members and escapes every
//! non-ASCII character as `\uXXXX` (surrogate pairs above U+FFFF); it prints floats with `repr`
//! (`1e-05`, `12.0`) and integers at any size; and it keeps strings that hold lone surrogates.

/// A JSON value as Python holds it after `json.loads`.
#[derive(Debug, Clone, PartialEq)]
pub enum PyValue {
    Null,
    Bool(bool),
    /// An integer of any size, as canonical decimal digits (Python's `str(int)`).
    Int(String),
    /// A number with a fraction or an exponent, or `NaN`, `Infinity`, `-Infinity`.
    Float(f64),
    Str(PyStr),
    Array(Vec<PyValue>),
    /// Members in the order read (the serializer sorts them).
    Object(Vec<(PyStr, PyValue)>),
}

/// A Python `str`: a sequence of code points, which may include lone surrogates (Rust's `String`
/// cannot). Ordering is by code point, as Python compares strings.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct PyStr(pub Vec<u32>);

impl PyStr {
    pub fn from_text(text: &str) -> PyStr {
        PyStr(text.chars().map(u32::from).collect())
    }

    /// The string as Rust text; `None` if it holds a lone surrogate.
    pub fn to_text(&self) -> Option<String> {
        self.0.iter().map(|&c| char::from_u32(c)).collect()
    }

    pub fn is(&self, text: &str) -> bool {
        self.0.iter().copied().eq(text.chars().map(u32::from))
    }
}

/// Deeper nesting than this is refused (the audit format's own limit).
pub const MAX_DEPTH: usize = 512;
/// Python (3.11 and later) refuses to read an integer with more digits than this.
pub const MAX_INT_DIGITS: usize = 4300;

/// Why a text is not JSON as `json.loads` reads it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at column {column}")]
pub struct ParseError {
    pub message: String,
    /// 1-based, in characters of the line (as Python counts).
    pub column: usize,
}

/// Reads one JSON document the way `json.loads` does (strict mode: no raw control characters in
/// strings), except that a member name repeated in one object is refused: the original never
/// wrote one, and Python would silently keep only the last.
pub fn parse(text: &str) -> Result<PyValue, ParseError> {
    let mut parser = Parser {
        text,
        bytes: text.as_bytes(),
        at: 0,
        depth: 0,
    };
    parser.skip_white();
    let value = parser.value()?;
    parser.skip_white();
    if parser.at != parser.bytes.len() {
        return Err(parser.error("extra data after the value"));
    }
    Ok(value)
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    depth: usize,
}

impl Parser<'_> {
    fn error(&self, message: &str) -> ParseError {
        let column = self
            .text
            .get(..self.at)
            .map_or(self.at, |s| s.chars().count())
            + 1;
        ParseError {
            message: message.to_owned(),
            column,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_white(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn eat(&mut self, word: &str) -> bool {
        let found = self.bytes[self.at..].starts_with(word.as_bytes());
        if found {
            self.at += word.len();
        }
        found
    }

    fn value(&mut self) -> Result<PyValue, ParseError> {
        match self.peek() {
            Some(b'{') => self.nested(Self::object),
            Some(b'[') => self.nested(Self::array),
            Some(b'"') => self.string().map(PyValue::Str),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ if self.eat("null") => Ok(PyValue::Null),
            _ if self.eat("true") => Ok(PyValue::Bool(true)),
            _ if self.eat("false") => Ok(PyValue::Bool(false)),
            _ if self.eat("NaN") => Ok(PyValue::Float(f64::NAN)),
            _ if self.eat("Infinity") => Ok(PyValue::Float(f64::INFINITY)),
            _ => Err(self.error("expecting a value")),
        }
    }

    fn nested(
        &mut self,
        read: fn(&mut Self) -> Result<PyValue, ParseError>,
    ) -> Result<PyValue, ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(&format!("nested deeper than {MAX_DEPTH} levels")));
        }
        self.at += 1;
        let value = read(self);
        self.depth -= 1;
        value
    }

    fn object(&mut self) -> Result<PyValue, ParseError> {
        let mut members: Vec<(PyStr, PyValue)> = Vec::new();
        self.skip_white();
        if self.eat("}") {
            return Ok(PyValue::Object(members));
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(self.error("expecting a member name in double quotes"));
            }
            let start = self.at;
            let key = self.string()?;
            if members.iter().any(|(k, _)| *k == key) {
                self.at = start;
                return Err(self.error("a member name appears twice in one object"));
            }
            self.skip_white();
            if !self.eat(":") {
                return Err(self.error("expecting ':'"));
            }
            self.skip_white();
            let value = self.value()?;
            members.push((key, value));
            self.skip_white();
            if self.eat("}") {
                return Ok(PyValue::Object(members));
            }
            if !self.eat(",") {
                return Err(self.error("expecting ',' or '}'"));
            }
            self.skip_white();
        }
    }

    fn array(&mut self) -> Result<PyValue, ParseError> {
        let mut items = Vec::new();
        self.skip_white();
        if self.eat("]") {
            return Ok(PyValue::Array(items));
        }
        loop {
            items.push(self.value()?);
            self.skip_white();
            if self.eat("]") {
                return Ok(PyValue::Array(items));
            }
            if !self.eat(",") {
                return Err(self.error("expecting ',' or ']'"));
            }
            self.skip_white();
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?`, or `-Infinity`: an int without a fraction
    /// or exponent, else a float (as Python's scanner decides).
    fn number(&mut self) -> Result<PyValue, ParseError> {
        let start = self.at;
        let negative = self.eat("-");
        if negative && self.eat("Infinity") {
            return Ok(PyValue::Float(f64::NEG_INFINITY));
        }
        let digits = |p: &mut Self| {
            let from = p.at;
            while matches!(p.peek(), Some(b'0'..=b'9')) {
                p.at += 1;
            }
            p.at - from
        };
        match self.peek() {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return Err(self.error("expecting a value")),
        }
        let whole_end = self.at;
        let mut float = false;
        if self.peek() == Some(b'.') && matches!(self.bytes.get(self.at + 1), Some(b'0'..=b'9')) {
            self.at += 1;
            digits(self);
            float = true;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            let before = self.at;
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if digits(self) == 0 {
                // Not an exponent after all: the number ends before the `e`.
                self.at = before;
            } else {
                float = true;
            }
        }
        let text = &self.text[start..self.at];
        if float {
            // Rust's parser rounds correctly, as Python's `float()` does; overflow gives infinity.
            return text
                .parse::<f64>()
                .map(PyValue::Float)
                .map_err(|_| self.error("not a number"));
        }
        let whole = &self.text[start..whole_end];
        if whole.len() - usize::from(negative) > MAX_INT_DIGITS {
            return Err(self.error(&format!(
                "an integer with more than {MAX_INT_DIGITS} digits (Python refuses to read it)"
            )));
        }
        Ok(PyValue::Int(if whole == "-0" {
            "0".to_owned()
        } else {
            whole.to_owned()
        }))
    }

    fn string(&mut self) -> Result<PyStr, ParseError> {
        self.at += 1;
        let mut out = Vec::new();
        loop {
            let rest = &self.text[self.at..];
            let Some(c) = rest.chars().next() else {
                return Err(self.error("unterminated string"));
            };
            match c {
                '"' => {
                    self.at += 1;
                    return Ok(PyStr(out));
                }
                '\\' => {
                    self.at += 1;
                    let escaped = match self.peek() {
                        Some(b'"') => u32::from('"'),
                        Some(b'\\') => u32::from('\\'),
                        Some(b'/') => u32::from('/'),
                        Some(b'b') => 0x08,
                        Some(b'f') => 0x0c,
                        Some(b'n') => 0x0a,
                        Some(b'r') => 0x0d,
                        Some(b't') => 0x09,
                        Some(b'u') => {
                            self.at += 1;
                            out.push(self.unicode_escape()?);
                            continue;
                        }
                        _ => return Err(self.error("invalid escape")),
                    };
                    self.at += 1;
                    out.push(escaped);
                }
                c if (c as u32) < 0x20 => {
                    return Err(self.error("invalid control character in a string"))
                }
                c => {
                    self.at += c.len_utf8();
                    out.push(u32::from(c));
                }
            }
        }
    }

    /// After `\u`: four hex digits; a high surrogate followed by `\u` and a low surrogate is one
    /// code point, any other surrogate stays as it is (as Python decodes them).
    fn unicode_escape(&mut self) -> Result<u32, ParseError> {
        let first = self.hex4()?;
        if (0xd800..=0xdbff).contains(&first) && self.bytes[self.at..].starts_with(b"\\u") {
            let save = self.at;
            self.at += 2;
            let second = self.hex4()?;
            if (0xdc00..=0xdfff).contains(&second) {
                return Ok(0x10000 + ((first - 0xd800) << 10) + (second - 0xdc00));
            }
            self.at = save;
        }
        Ok(first)
    }

    fn hex4(&mut self) -> Result<u32, ParseError> {
        let digits = self
            .bytes
            .get(self.at..self.at + 4)
            .filter(|d| d.iter().all(u8::is_ascii_hexdigit))
            .ok_or_else(|| self.error("invalid \\uXXXX escape"))?;
        let value = digits.iter().fold(0u32, |n, &d| {
            n * 16 + char::from(d).to_digit(16).unwrap_or_default()
        });
        self.at += 4;
        Ok(value)
    }
}

/// `json.dumps(value, sort_keys=True)` with Python's defaults (`ensure_ascii=True`, separators
/// `", "` and `": "`, `allow_nan=True`), appended to `out`.
pub fn dumps_sorted(value: &PyValue, out: &mut String) {
    match value {
        PyValue::Null => out.push_str("null"),
        PyValue::Bool(true) => out.push_str("true"),
        PyValue::Bool(false) => out.push_str("false"),
        PyValue::Int(digits) => out.push_str(digits),
        PyValue::Float(f) => float_repr(*f, out),
        PyValue::Str(s) => ascii_string(s, out),
        PyValue::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                dumps_sorted(item, out);
            }
            out.push(']');
        }
        PyValue::Object(members) => {
            let mut sorted: Vec<&(PyStr, PyValue)> = members.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            out.push('{');
            for (i, (key, value)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                ascii_string(key, out);
                out.push_str(": ");
                dumps_sorted(value, out);
            }
            out.push('}');
        }
    }
}

/// A string as `json.dumps` writes it with `ensure_ascii=True`: printable ASCII as is, `"` and
/// `\` and the five short escapes, everything else (control characters, DEL, non-ASCII) as
/// lower-case `\uXXXX`, with a surrogate pair above U+FFFF.
fn ascii_string(s: &PyStr, out: &mut String) {
    out.push('"');
    for &c in &s.0 {
        match c {
            0x22 => out.push_str("\\\""),
            0x5c => out.push_str("\\\\"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            0x0a => out.push_str("\\n"),
            0x0d => out.push_str("\\r"),
            0x09 => out.push_str("\\t"),
            0x20..=0x7e => out.push(char::from(c as u8)),
            0x10000.. => {
                let v = c - 0x10000;
                push_u_escape(0xd800 | (v >> 10), out);
                push_u_escape(0xdc00 | (v & 0x3ff), out);
            }
            _ => push_u_escape(c, out),
        }
    }
    out.push('"');
}

fn push_u_escape(unit: u32, out: &mut String) {
    out.push_str(&format!("\\u{unit:04x}"));
}

/// A float as Python's `repr` prints it (the shortest digits that read back as the same float),
/// or `NaN`, `Infinity`, `-Infinity` as `json.dumps` writes those: positional notation with at
/// least one digit after the point when the decimal exponent is from -4 to 15, else scientific
/// with a signed exponent of at least two digits (`1e-05`, `1.5e+16`).
pub fn float_repr(f: f64, out: &mut String) {
    if f.is_nan() {
        return out.push_str("NaN");
    }
    if f.is_infinite() {
        return out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
    }
    // Rust's `{:e}` gives the same shortest round-trip digits, as `d.ddde<exp>`.
    let scientific = format!("{f:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or_default();
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    out.push_str(sign);
    if !(-4..16).contains(&exponent) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        out.push_str(&format!("e{exp_sign}{:02}", exponent.unsigned_abs()));
    } else if exponent < 0 {
        out.push_str("0.");
        out.push_str(&"0".repeat(exponent.unsigned_abs() as usize - 1));
        out.push_str(&digits);
    } else {
        let whole = exponent as usize + 1;
        if digits.len() <= whole {
            out.push_str(&digits);
            out.push_str(&"0".repeat(whole - digits.len()));
            out.push_str(".0");
        } else {
            out.push_str(&digits[..whole]);
            out.push('.');
            out.push_str(&digits[whole..]);
        }
    }
}
