//! Reading an audit log back: filtered, cursor-paginated queries and the last records.
//!
//! Every file of the log (rotated segments, then the active file) is streamed line by line; no file
//! is ever loaded whole. Only complete lines (ending in `\n`) are read, so a batch the writer is
//! appending right now is never half-seen. Lines that are not audit records (a damaged line) are
//! skipped here: `verify` is what judges a log.
//!
//! The writer may rotate the active file, and retention may remove old segments, while a query
//! reads. A query notices (a file gone, a gap in `seq` where the active file begins, or a listing
//! that changed under it), lists the files again and resumes from the next seq it still wants, so
//! that no record is skipped or returned twice.

pub(crate) mod matcher;
mod tail;

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::ops::ControlFlow;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::segments::{self, SegmentFile};
use super::Outcome;
use crate::governance::DragMode;

use self::matcher::{Facts, Matcher};
pub use self::tail::{tail, tail_lines};

/// How often one query lists the log's files again after seeing it change under it.
const MAX_RELISTS: usize = 8;
/// Read buffer for streaming a file.
const READ_BUFFER: usize = 256 * 1024;
/// Bisection for a cursor stops this close to the first wanted line, then reads on.
const CLOSE_ENOUGH: u64 = 64 * 1024;

/// Which records a query returns. Every criterion that is set must hold.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Exactly this trace id.
    pub trace_id: Option<String>,
    /// `aim.actor.email`, `aim.actor.name` or `principal.actor` equals this, ignoring case and
    /// surrounding white space.
    pub actor: Option<String>,
    /// Exactly this `workflow_name`.
    pub workflow: Option<String>,
    /// This `outcome` (`started`, `success`, ...), ignoring ASCII case.
    pub outcome: Option<String>,
    /// This `drag_mode`, ignoring ASCII case.
    pub drag_mode: Option<String>,
    /// This `kind` (`run`, `recovery`, `checkpoint`, `retention`, `approval`, `override`,
    /// `genesis`, `apikey`), ignoring ASCII case.
    pub kind: Option<String>,
    /// Records stamped at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Records stamped strictly before this instant.
    pub until: Option<DateTime<Utc>>,
    /// The cursor: only records with a greater `seq`.
    pub after_seq: Option<u64>,
}

/// The kinds of record the writer makes.
pub const KINDS: [&str; 8] = [
    "run",
    "recovery",
    "checkpoint",
    "retention",
    "approval",
    "override",
    "genesis",
    "apikey",
];

impl Filter {
    /// Checks the members with a fixed set of values (`outcome`, `drag_mode`, `kind`), writing
    /// them in lower case, and that `since` is not after `until`. The error names the member, so
    /// that a misspelt value is refused rather than matching nothing.
    pub fn check(&mut self) -> Result<(), String> {
        fn one_of<'a>(
            name: &str,
            value: &mut Option<String>,
            allowed: impl IntoIterator<Item = &'a str> + Clone,
        ) -> Result<(), String> {
            let Some(given) = value.as_deref() else {
                return Ok(());
            };
            let given = given.trim();
            match allowed
                .clone()
                .into_iter()
                .find(|a| a.eq_ignore_ascii_case(given))
            {
                Some(known) => {
                    *value = Some(known.to_owned());
                    Ok(())
                }
                None => Err(format!(
                    "invalid {name} '{given}': expected one of {}",
                    allowed.into_iter().collect::<Vec<_>>().join(", ")
                )),
            }
        }
        let outcomes = [
            Outcome::Started,
            Outcome::Success,
            Outcome::Failure,
            Outcome::Rejected,
            Outcome::Cancelled,
        ];
        one_of("outcome", &mut self.outcome, outcomes.map(Outcome::as_str))?;
        one_of(
            "drag_mode",
            &mut self.drag_mode,
            DragMode::ALL.map(DragMode::as_str),
        )?;
        one_of("kind", &mut self.kind, KINDS)?;
        if let (Some(since), Some(until)) = (self.since, self.until) {
            if since > until {
                return Err(
                    "invalid since: it is after until (since is inclusive, until exclusive)"
                        .to_owned(),
                );
            }
        }
        Ok(())
    }
}

/// One page of matching records.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// Whole records (with `integrity_hash`), in seq order.
    pub entries: Vec<Value>,
    /// When the page is full, the seq of its last record: pass it as `after_seq` for the next page.
    /// `None` when the log held no more matches.
    pub next_cursor: Option<u64>,
}

/// Parses an RFC 3339 timestamp (`2026-01-31T12:00:00Z`, any offset) for [`Filter::since`] and
/// [`Filter::until`].
pub fn parse_timestamp(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            format!("'{text}' is not an RFC 3339 timestamp ({e}), e.g. 2026-01-31T12:00:00Z")
        })
}

/// [`query`] with each record as the exact line of the log (with its newline), so that what is
/// exported still verifies line by line (its `integrity_hash` is the last member of its bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct RawPage {
    pub lines: Vec<Vec<u8>>,
    /// As [`Page::next_cursor`].
    pub next_cursor: Option<u64>,
}

/// The matching records with `seq > filter.after_seq`, in seq order, at most `limit` of them.
/// Segments that end before the cursor are not opened.
pub fn query(path: &Path, filter: &Filter, limit: usize) -> io::Result<Page> {
    let (entries, next_cursor) = collect(path, filter, limit, |line| {
        serde_json::from_slice::<Value>(line).ok()
    })?;
    Ok(Page {
        entries,
        next_cursor,
    })
}

/// [`query`], returning the lines as they are in the log.
pub fn query_lines(path: &Path, filter: &Filter, limit: usize) -> io::Result<RawPage> {
    let (lines, next_cursor) = collect(path, filter, limit, |line| Some(line.to_vec()))?;
    Ok(RawPage { lines, next_cursor })
}

/// Calls `visit` with each matching record, in seq order, without keeping them: for a reader that
/// folds the whole log (start-up reads the open approval requests this way).
pub fn for_each(path: &Path, filter: &Filter, visit: &mut dyn FnMut(Value)) -> io::Result<()> {
    let matcher = Matcher::new(filter);
    scan(path, filter.after_seq.unwrap_or(0), |facts, line| {
        if matcher.matches(facts) {
            // The line parsed as a record just now, so it parses as a value too.
            if let Ok(record) = serde_json::from_slice::<Value>(line) {
                visit(record);
            }
        }
        ControlFlow::Continue(())
    })
}

fn collect<T>(
    path: &Path,
    filter: &Filter,
    limit: usize,
    mut make: impl FnMut(&[u8]) -> Option<T>,
) -> io::Result<(Vec<T>, Option<u64>)> {
    let mut found = Vec::new();
    if limit == 0 {
        return Ok((found, None));
    }
    let matcher = Matcher::new(filter);
    let mut last = 0;
    scan(path, filter.after_seq.unwrap_or(0), |facts, line| {
        if !matcher.matches(facts) {
            return ControlFlow::Continue(());
        }
        // The line parsed as a record just now, so it parses as a value too.
        if let Some(item) = make(line) {
            found.push(item);
            last = facts.seq;
        }
        if found.len() >= limit {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    let next_cursor = (found.len() >= limit).then_some(last);
    Ok((found, next_cursor))
}

/// Calls `visit` with every record whose seq is greater than `after`, once each, in seq order,
/// until it breaks.
fn scan(
    path: &Path,
    after: u64,
    mut visit: impl FnMut(&Facts<'_>, &[u8]) -> ControlFlow<()>,
) -> io::Result<()> {
    // The lowest seq not yet visited: everything before it was seen already (or lies before the
    // cursor), which is what makes reading a file again after a re-listing harmless.
    let mut next = after.saturating_add(1);
    let mut relists = 0;
    let mut line = Vec::with_capacity(4096);
    'listing: loop {
        let files = segments::log_files(path)?;
        // The active file is opened now, so that the seq its first record states (which lets a
        // query start in it) is that of the very file read later, whatever rotation happens.
        let mut active = None;
        if let Some(file) = files.last().filter(|f| f.first_seq.is_none()) {
            match File::open(&file.path) {
                Ok(mut handle) => {
                    let first = first_seq(&mut handle)?;
                    active = Some((handle, first));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && relists < MAX_RELISTS => {
                    relists += 1;
                    continue 'listing;
                }
                Err(e) => return Err(e),
            }
        }
        let active_first = active.as_ref().and_then(|(_, first)| *first);
        // Segments are named after their first seq: start in the last file that begins at or
        // before `next`, skipping every file that ends before it without opening it.
        let start = files
            .iter()
            .rposition(|f| {
                f.first_seq
                    .or(active_first)
                    .is_some_and(|first| first <= next)
            })
            .unwrap_or(0);
        // The last seq read in this pass (visited or not), to notice a gap between files.
        let mut last_seen: Option<u64> = None;
        for (index, file) in files.iter().enumerate().skip(start) {
            let opened = match file.first_seq {
                None => active.take().map(|(handle, _)| Ok(handle)),
                Some(_) => None,
            };
            let mut handle = match opened.unwrap_or_else(|| File::open(&file.path)) {
                Ok(handle) => handle,
                Err(e) if e.kind() == io::ErrorKind::NotFound && relists < MAX_RELISTS => {
                    relists += 1;
                    continue 'listing;
                }
                Err(e) => return Err(e),
            };
            // Within the first file, skip (by bisection) the lines before `next`. Later files
            // start right after what was read.
            let from = if index == start {
                offset_before(&mut handle, next)?
            } else {
                0
            };
            handle.seek(SeekFrom::Start(from))?;
            let mut reader = BufReader::with_capacity(READ_BUFFER, handle);
            let mut first_of_file = true;
            loop {
                line.clear();
                let read = reader.read_until(b'\n', &mut line)?;
                if read == 0 || !line.ends_with(b"\n") {
                    // The end, or a line the writer has not finished yet.
                    break;
                }
                let Some(facts) = Facts::parse(&line) else {
                    continue;
                };
                if first_of_file {
                    first_of_file = false;
                    // The active file no longer starts where the previous file ended: it was
                    // rotated after we listed. List again before visiting anything out of order.
                    let gap = file.first_seq.is_none()
                        && last_seen.is_some_and(|seen| facts.seq > seen + 1);
                    if gap && relists < MAX_RELISTS {
                        relists += 1;
                        continue 'listing;
                    }
                }
                last_seen = Some(facts.seq);
                if facts.seq < next {
                    continue;
                }
                next = facts.seq.saturating_add(1);
                if visit(&facts, &line).is_break() {
                    return Ok(());
                }
            }
        }
        // A rotation after we opened the active file can leave records in a segment we never
        // listed (the new active file was empty when we opened it).
        if relists < MAX_RELISTS && listing_changed(path, &files)? {
            relists += 1;
            continue 'listing;
        }
        return Ok(());
    }
}

/// The seq of a file's first complete line, if it has one that is a record.
fn first_seq(file: &mut File) -> io::Result<Option<u64>> {
    file.seek(SeekFrom::Start(0))?;
    let mut line = Vec::with_capacity(4096);
    BufReader::new(Read::by_ref(file)).read_until(b'\n', &mut line)?;
    Ok(line
        .ends_with(b"\n")
        .then(|| Facts::parse(&line).map(|facts| facts.seq))
        .flatten())
}

/// A line start in `file` such that every line before it has a seq below `target`, found by
/// bisection over byte offsets (seqs grow along a file), to within [`CLOSE_ENOUGH`] bytes of the
/// first line at or after `target`. A line that does not parse ends the search early: the scan
/// then reads on from there, which is slower but still right.
fn offset_before(file: &mut File, target: u64) -> io::Result<u64> {
    let (mut lo, mut hi) = (0, file.metadata()?.len());
    let mut line = Vec::with_capacity(4096);
    while hi - lo > CLOSE_ENOUGH {
        let mid = lo + (hi - lo) / 2;
        file.seek(SeekFrom::Start(mid))?;
        let mut reader = BufReader::with_capacity(16 * 1024, Read::by_ref(file));
        // The rest of the line `mid` falls in, then the whole line after it.
        line.clear();
        let skipped = reader.read_until(b'\n', &mut line)? as u64;
        let start = mid + skipped;
        line.clear();
        if !line_is_complete(&mut reader, &mut line)? || start >= hi {
            hi = mid;
            continue;
        }
        match Facts::parse(&line) {
            Some(facts) if facts.seq < target => lo = start,
            Some(_) => hi = mid,
            None => break,
        }
    }
    Ok(lo)
}

fn line_is_complete(reader: &mut impl BufRead, line: &mut Vec<u8>) -> io::Result<bool> {
    reader.read_until(b'\n', line)?;
    Ok(line.ends_with(b"\n"))
}

/// Whether the log's files are no longer the ones listed.
fn listing_changed(path: &Path, listed: &[SegmentFile]) -> io::Result<bool> {
    Ok(segments::log_files(path)? != listed)
}

#[cfg(test)]
mod tests;
