//! Prescriptive-language filter: AI output in draft and research mode must present options, not
//! decisions, so it may not contain phrases such as "you should" or "i recommend".
//!
//! Text and phrases are normalized the same way before matching, in one pass over the original
//! chars: default-ignorable (zero-width) code points are dropped, each remaining char is folded with
//! NFKC on its own (so every normalized char maps back to exactly one original char), curly apostrophes
//! become `'`, letters of other scripts that look like Latin ones (`ѕ`, `о`, `α`, ...) become those
//! (see `confusables.rs`), every run of Unicode whitespace becomes one space, and letters are lower-cased.
//! Matches are whole-word substring matches over the normalized text, reported with byte offsets into
//! the original text.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use unicode_normalization::UnicodeNormalization;

use super::DragMode;

mod confusables;

/// The original server's forbidden phrases.
const DEFAULT_FORBIDDEN: [&str; 9] = [
    "you should",
    "you must",
    "the best option is",
    "this is the right choice",
    "definitely do",
    "always use",
    "never use",
    "i recommend",
    "my recommendation is",
];

/// A forbidden phrase found in text, with byte offsets into the *original* submitted text:
/// `&text[start..end]` is the phrase as the author wrote it (zero-width chars and odd whitespace
/// inside it included, leading and trailing ignorable chars excluded).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[schema(as = PrescriptivePhrase)]
pub struct Violation {
    /// The normalized phrase from the list that matched, e.g. `"you should"`.
    pub phrase: String,
    /// Byte offset of the first original char contributing to the match.
    pub start: usize,
    /// Byte offset just after the last original char contributing to the match.
    pub end: usize,
}

/// Why a phrase list could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PhraseListError {
    /// The file could not be read (missing, unreadable, or not UTF-8).
    #[error("cannot read phrase list {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Nothing but blank lines, comments, or lines that normalize to nothing.
    #[error("phrase list{} contains no phrases (blank lines and '#' comments are ignored)", DisplayOrigin(path.as_deref()))]
    Empty { path: Option<PathBuf> },
}

/// Formats an optional path as `" <path>"` for error messages.
struct DisplayOrigin<'a>(Option<&'a Path>);

impl fmt::Display for DisplayOrigin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(path) => write!(f, " {}", path.display()),
            None => Ok(()),
        }
    }
}

/// A non-empty, de-duplicated list of normalized forbidden phrases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhraseList {
    phrases: Vec<String>,
}

impl PhraseList {
    /// The original server's forbidden list: "you should", "you must", "the best option is",
    /// "this is the right choice", "definitely do", "always use", "never use", "i recommend",
    /// "my recommendation is".
    pub fn default_forbidden() -> Self {
        let mut list = PhraseList {
            phrases: Vec::with_capacity(DEFAULT_FORBIDDEN.len()),
        };
        for phrase in DEFAULT_FORBIDDEN {
            list.push_normalized(phrase);
        }
        list
    }

    /// Parses one phrase per line. Blank lines and lines whose first non-blank char is `#` are
    /// ignored; each phrase is normalized exactly like the text it will be matched against (and
    /// trimmed); duplicates after normalization are kept once. Fails if no phrase remains.
    pub fn parse(text: &str) -> Result<Self, PhraseListError> {
        let mut list = PhraseList {
            phrases: Vec::new(),
        };
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            list.push_normalized(line);
        }
        if list.phrases.is_empty() {
            return Err(PhraseListError::Empty { path: None });
        }
        Ok(list)
    }

    /// Reads and [parses](Self::parse) a phrase-list file; errors name the path.
    pub fn from_file(path: &Path) -> Result<Self, PhraseListError> {
        let text = std::fs::read_to_string(path).map_err(|source| PhraseListError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|err| match err {
            PhraseListError::Empty { .. } => PhraseListError::Empty {
                path: Some(path.to_path_buf()),
            },
            other => other,
        })
    }

    /// The normalized phrases, in list order.
    pub fn phrases(&self) -> impl Iterator<Item = &str> {
        self.phrases.iter().map(String::as_str)
    }

    /// Number of phrases.
    pub fn len(&self) -> usize {
        self.phrases.len()
    }

    /// Whether the list has no phrases (never true for a list built by this module's constructors).
    pub fn is_empty(&self) -> bool {
        self.phrases.is_empty()
    }

    fn push_normalized(&mut self, raw: &str) {
        let normalized = normalize(raw).text;
        let phrase = normalized.trim_matches(' ');
        if !phrase.is_empty() && !self.phrases.iter().any(|p| p == phrase) {
            self.phrases.push(phrase.to_owned());
        }
    }
}

impl Default for PhraseList {
    fn default() -> Self {
        Self::default_forbidden()
    }
}

/// Text after normalization, remembering where each normalized char came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    /// The normalized text (see the module docs).
    pub text: String,
    /// One entry per normalized char, in order.
    spans: Vec<CharSpan>,
}

/// Where one normalized char sits (byte offset in the normalized text) and which original char
/// (byte range in the original text) produced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CharSpan {
    at: usize,
    original: (usize, usize),
}

impl Normalized {
    /// For each normalized char, in order, the byte range `(start, end)` in the original text of the
    /// char it came from. Several normalized chars may share one original range (ligatures, `İ`).
    pub fn spans(&self) -> impl ExactSizeIterator<Item = (usize, usize)> + '_ {
        self.spans.iter().map(|s| s.original)
    }

    /// The original byte range of the `index`-th normalized char.
    pub fn span_of_char(&self, index: usize) -> Option<(usize, usize)> {
        self.spans.get(index).map(|s| s.original)
    }

    /// Maps a non-empty byte range of [`text`](Self::text) (on char boundaries) to the original
    /// byte range covering every original char that contributed to it.
    pub fn original_range(&self, normalized: Range<usize>) -> Option<Range<usize>> {
        if normalized.start >= normalized.end {
            return None;
        }
        let first = self.char_index_at(normalized.start)?;
        let last = match self.char_index_at(normalized.end) {
            Some(next) => next.checked_sub(1)?,
            None if normalized.end == self.text.len() => self.spans.len().checked_sub(1)?,
            None => return None,
        };
        let start = self.spans.get(first)?.original.0;
        let end = self.spans.get(last)?.original.1;
        (start < end).then_some(start..end)
    }

    /// Index of the normalized char starting exactly at byte `at`.
    fn char_index_at(&self, at: usize) -> Option<usize> {
        let index = self.spans.partition_point(|s| s.at < at);
        (self.spans.get(index)?.at == at).then_some(index)
    }

    fn push(&mut self, c: char, original: (usize, usize)) {
        self.spans.push(CharSpan {
            at: self.text.len(),
            original,
        });
        self.text.push(c);
    }
}

/// Default-ignorable and zero-width code points, dropped before matching.
fn is_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// Curly and modifier apostrophes (U+FF07 is already `'` after NFKC).
fn is_apostrophe_like(c: char) -> bool {
    matches!(c, '\u{2018}' | '\u{2019}' | '\u{201B}' | '\u{02BC}')
}

/// Normalizes `text` for matching (see the module docs) in a single pass, recording for each
/// normalized char the byte range of the original char it came from.
pub fn normalize(text: &str) -> Normalized {
    let mut out = Normalized {
        text: String::with_capacity(text.len()),
        spans: Vec::with_capacity(text.len()),
    };
    let mut after_space = false;
    for (start, c) in text.char_indices() {
        let span = (start, start + c.len_utf8());
        if c.is_ascii() {
            if c.is_whitespace() {
                if !after_space {
                    out.push(' ', span);
                    after_space = true;
                }
            } else {
                out.push(c.to_ascii_lowercase(), span);
                after_space = false;
            }
            continue;
        }
        if is_ignorable(c) {
            continue;
        }
        for folded in std::iter::once(c).nfkc() {
            if is_ignorable(folded) {
                continue;
            }
            if folded.is_whitespace() {
                if !after_space {
                    out.push(' ', span);
                    after_space = true;
                }
                continue;
            }
            after_space = false;
            let folded = confusables::latin_lookalike(folded).unwrap_or(folded);
            if is_apostrophe_like(folded) {
                out.push('\'', span);
            } else {
                // Again after lower-casing (`Γ` becomes `γ`), so normalizing twice changes nothing.
                for lower in folded.to_lowercase() {
                    out.push(confusables::latin_lookalike(lower).unwrap_or(lower), span);
                }
            }
        }
    }
    out
}

/// Whether `c` continues a word: letters and digits, plus combining marks (a mark changes the
/// letter before it, so "should" followed by U+0301 is not the word "should").
fn continues_word(c: char) -> bool {
    c.is_alphanumeric() || unicode_normalization::char::is_combining_mark(c)
}

/// Whether `phrase` occurs at `start..end` of `haystack` as whole words: where the phrase begins
/// (ends) with a letter or digit, the normalized char before (after) it must not continue a word.
fn is_whole_word(haystack: &str, start: usize, end: usize, phrase: &str) -> bool {
    let starts_with_word = phrase.chars().next().is_some_and(char::is_alphanumeric);
    let ends_with_word = phrase
        .chars()
        .next_back()
        .is_some_and(char::is_alphanumeric);
    let before_ok = !starts_with_word
        || haystack
            .get(..start)
            .and_then(|s| s.chars().next_back())
            .is_none_or(|c| !c.is_alphanumeric());
    let after_ok = !ends_with_word
        || haystack
            .get(end..)
            .and_then(|s| s.chars().next())
            .is_none_or(|c| !continues_word(c));
    before_ok && after_ok
}

/// Every whole-word occurrence of every phrase in `text` (overlapping ones included), sorted by
/// start offset, ties longest first. Offsets are byte offsets into `text` itself.
pub fn find_prescriptive(text: &str, phrases: &PhraseList) -> Vec<Violation> {
    let normalized = normalize(text);
    let haystack = normalized.text.as_str();
    let mut found = Vec::new();
    for phrase in phrases.phrases() {
        let Some(first_len) = phrase.chars().next().map(char::len_utf8) else {
            continue;
        };
        let mut from = 0;
        while let Some(offset) = haystack.get(from..).and_then(|rest| rest.find(phrase)) {
            let start = from + offset;
            let end = start + phrase.len();
            if is_whole_word(haystack, start, end, phrase) {
                if let Some(range) = normalized.original_range(start..end) {
                    found.push(Violation {
                        phrase: phrase.to_owned(),
                        start: range.start,
                        end: range.end,
                    });
                }
            }
            // Step one char so overlapping occurrences of the same phrase are found too.
            from = start + first_len;
        }
    }
    found.sort_by(|a, b| {
        a.start
            .cmp(&b.start)
            .then(b.end.cmp(&a.end))
            .then_with(|| a.phrase.cmp(&b.phrase))
    });
    found
}

/// The violations `text` commits in `mode`: none for modes that may be directive (grunt, execute),
/// otherwise [`find_prescriptive`].
pub fn check_output(text: &str, mode: DragMode, phrases: &PhraseList) -> Vec<Violation> {
    if mode.forbids_prescriptive_language() {
        find_prescriptive(text, phrases)
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests;
