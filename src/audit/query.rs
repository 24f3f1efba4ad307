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

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::ops::ControlFlow;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::segments::{self, SegmentFile};
use super::Outcome;
use crate::governance::DragMode;

/// How often one query lists the log's files again after seeing it change under it.
const MAX_RELISTS: usize = 8;
/// Read buffer for streaming a file.
const READ_BUFFER: usize = 256 * 1024;
/// Bisection for a cursor stops this close to the first wanted line, then reads on.
const CLOSE_ENOUGH: u64 = 64 * 1024;
/// Chunk read from the end when reading a file backwards.
const BACK_CHUNK: u64 = 64 * 1024;

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
    /// This `kind` (`run`, `recovery`, `checkpoint`, `retention`, `approval`, `override`),
    /// ignoring ASCII case.
    pub kind: Option<String>,
    /// Records stamped at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Records stamped strictly before this instant.
    pub until: Option<DateTime<Utc>>,
    /// The cursor: only records with a greater `seq`.
    pub after_seq: Option<u64>,
}

/// The kinds of record the writer makes.
pub const KINDS: [&str; 6] = [
    "run",
    "recovery",
    "checkpoint",
    "retention",
    "approval",
    "override",
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

/// The last `n` records of the log (fewer when it holds fewer), oldest first. Reads the files
/// backwards from the end, so it costs the same on a small log and a huge one.
pub fn tail(path: &Path, n: usize) -> io::Result<Vec<Value>> {
    Ok(tail_lines(path, n)?
        .iter()
        .filter_map(|line| serde_json::from_slice(line).ok())
        .collect())
}

/// [`tail`], returning the lines as they are in the log (with their newlines).
pub fn tail_lines(path: &Path, n: usize) -> io::Result<Vec<Vec<u8>>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut relists = 0;
    'listing: loop {
        let files = segments::log_files(path)?;
        // Newest first while collecting.
        let mut newest_first: Vec<(u64, Vec<u8>)> = Vec::with_capacity(n.min(4096));
        for file in files.iter().rev() {
            let handle = match File::open(&file.path) {
                Ok(handle) => handle,
                Err(e) if e.kind() == io::ErrorKind::NotFound && relists < MAX_RELISTS => {
                    relists += 1;
                    continue 'listing;
                }
                Err(e) => return Err(e),
            };
            // The oldest record collected so far: this file must end just before it.
            let boundary = newest_first.last().map(|(seq, _)| *seq);
            let mut last_of_file = true;
            let mut lines = BackwardLines::new(handle)?;
            while let Some(line) = lines.next_line()? {
                let Some(seq) = Facts::parse(&line).map(|facts| facts.seq) else {
                    continue;
                };
                if last_of_file {
                    last_of_file = false;
                    let gap = boundary.is_some_and(|oldest| seq.saturating_add(1) != oldest);
                    if gap && relists < MAX_RELISTS {
                        // A file was rotated in between since we listed: list again.
                        relists += 1;
                        continue 'listing;
                    }
                }
                newest_first.push((seq, line));
                if newest_first.len() >= n {
                    break;
                }
            }
            if newest_first.len() >= n {
                break;
            }
        }
        if relists < MAX_RELISTS && listing_changed(path, &files)? {
            relists += 1;
            continue 'listing;
        }
        return Ok(newest_first
            .into_iter()
            .rev()
            .map(|(_, line)| line)
            .collect());
    }
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

/// Reads the complete lines of a file from the last to the first, ignoring an unfinished final
/// line (no newline yet).
struct BackwardLines {
    file: File,
    /// File offset of `buffer[0]`.
    pos: u64,
    /// Bytes `[pos, pos + buffer.len())` not yet returned; ends with `\n` once trimmed.
    buffer: Vec<u8>,
    trimmed: bool,
}

impl BackwardLines {
    fn new(mut file: File) -> io::Result<BackwardLines> {
        let len = file.seek(SeekFrom::End(0))?;
        Ok(BackwardLines {
            file,
            pos: len,
            buffer: Vec::new(),
            trimmed: false,
        })
    }

    /// Reads the chunk before `pos` in front of the buffer; false at the start of the file.
    fn read_more(&mut self) -> io::Result<bool> {
        if self.pos == 0 {
            return Ok(false);
        }
        let from = self.pos.saturating_sub(BACK_CHUNK);
        let mut chunk = vec![0; (self.pos - from) as usize];
        self.file.seek(SeekFrom::Start(from))?;
        self.file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&self.buffer);
        self.buffer = chunk;
        self.pos = from;
        Ok(true)
    }

    /// The previous complete line, with its newline.
    fn next_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        while !self.trimmed {
            // Drop whatever follows the last newline: a line still being written.
            if let Some(nl) = self.buffer.iter().rposition(|&b| b == b'\n') {
                self.buffer.truncate(nl + 1);
                self.trimmed = true;
            } else {
                self.buffer.clear();
                if !self.read_more()? {
                    return Ok(None);
                }
            }
        }
        loop {
            if self.buffer.is_empty() {
                if !self.read_more()? {
                    return Ok(None);
                }
                continue;
            }
            let body = &self.buffer[..self.buffer.len() - 1];
            if let Some(nl) = body.iter().rposition(|&b| b == b'\n') {
                let line = self.buffer.split_off(nl + 1);
                return Ok(Some(line));
            }
            if !self.read_more()? {
                return Ok(Some(std::mem::take(&mut self.buffer)));
            }
        }
    }
}

/// Compares records against a [`Filter`], with the filter's text prepared once.
struct Matcher<'f> {
    filter: &'f Filter,
    actor: Option<String>,
}

impl<'f> Matcher<'f> {
    fn new(filter: &'f Filter) -> Matcher<'f> {
        Matcher {
            filter,
            actor: filter.actor.as_deref().map(|a| a.trim().to_lowercase()),
        }
    }

    fn matches(&self, facts: &Facts<'_>) -> bool {
        let filter = self.filter;
        let exact = |want: &Option<String>, have: &Option<Cow<'_, str>>| {
            want.as_deref()
                .is_none_or(|want| have.as_deref() == Some(want))
        };
        let ascii = |want: &Option<String>, have: &Option<Cow<'_, str>>| {
            want.as_deref().is_none_or(|want| {
                have.as_deref()
                    .is_some_and(|have| have.eq_ignore_ascii_case(want.trim()))
            })
        };
        if !(exact(&filter.trace_id, &facts.trace_id)
            && exact(&filter.workflow, &facts.workflow_name)
            && ascii(&filter.outcome, &facts.outcome)
            && ascii(&filter.drag_mode, &facts.drag_mode)
            && ascii(&filter.kind, &facts.kind))
        {
            return false;
        }
        if let Some(actor) = &self.actor {
            let person = facts.aim.as_ref().and_then(|aim| aim.actor.as_ref());
            let candidates = [
                person.and_then(|p| p.email.as_deref()),
                person.and_then(|p| p.name.as_deref()),
                facts.principal.as_ref().and_then(|p| p.actor.as_deref()),
            ];
            let same = |have: &str| {
                have.trim()
                    .chars()
                    .flat_map(char::to_lowercase)
                    .eq(actor.chars())
            };
            if !candidates.into_iter().flatten().any(same) {
                return false;
            }
        }
        if filter.since.is_some() || filter.until.is_some() {
            let Some(at) = facts
                .timestamp
                .as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc))
            else {
                return false;
            };
            if filter.since.is_some_and(|since| at < since)
                || filter.until.is_some_and(|until| at >= until)
            {
                return false;
            }
        }
        true
    }
}

/// The members of a record a filter looks at, borrowed from the line where possible (everything
/// else is skipped without building values).
#[derive(Deserialize)]
struct Facts<'a> {
    seq: u64,
    #[serde(default, borrow)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    trace_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    outcome: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    drag_mode: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    workflow_name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    aim: Option<AimFacts<'a>>,
    #[serde(default, borrow)]
    principal: Option<PrincipalFacts<'a>>,
}

#[derive(Deserialize)]
struct AimFacts<'a> {
    #[serde(default, borrow)]
    actor: Option<PersonFacts<'a>>,
}

#[derive(Deserialize)]
struct PersonFacts<'a> {
    #[serde(default, borrow)]
    email: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct PrincipalFacts<'a> {
    #[serde(default, borrow)]
    actor: Option<Cow<'a, str>>,
}

impl<'a> Facts<'a> {
    /// The facts of a line; `None` when it is not a JSON object with a whole-number `seq`.
    ///
    /// Records written by SustainBot have the types above. A line that does not (an `aim` that is a
    /// string, say: it holds whatever a refused request sent) is read as a whole value instead, and
    /// a member of an unexpected type counts as absent, so that no record drops out of a query.
    fn parse(line: &'a [u8]) -> Option<Facts<'a>> {
        if let Ok(facts) = serde_json::from_slice(line) {
            return Some(facts);
        }
        let value: Value = serde_json::from_slice(line).ok()?;
        let text = |v: &Value| v.as_str().map(|s| Cow::Owned(s.to_owned()));
        let member = |key: &str| value.get(key).and_then(text);
        let actor = &value["aim"]["actor"];
        Some(Facts {
            seq: value.get("seq")?.as_u64()?,
            timestamp: member("timestamp"),
            kind: member("kind"),
            trace_id: member("trace_id"),
            outcome: member("outcome"),
            drag_mode: member("drag_mode"),
            workflow_name: member("workflow_name"),
            aim: Some(AimFacts {
                actor: Some(PersonFacts {
                    email: text(&actor["email"]),
                    name: text(&actor["name"]),
                }),
            }),
            principal: Some(PrincipalFacts {
                actor: text(&value["principal"]["actor"]),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use serde_json::json;

    use super::*;
    use crate::audit::{FsyncMode, JsonlStore, Outcome, Record, RunRecord, StoreOptions};
    use crate::auth::Principal;

    fn run(trace: &str, outcome: Outcome, actor: &str, workflow: &str) -> Record {
        Record::Run(RunRecord {
            trace_id: trace.to_owned(),
            aim: json!({"actor": {"name": actor, "email": format!("{}@example.org", actor.to_lowercase())}}),
            drag_mode: Some("execute".into()),
            workflow_name: Some(workflow.into()),
            parameters: json!({"note": "\"quoted\" \\ é"}),
            outcome,
            error: None,
            code: None,
            duration_seconds: None,
            principal: Some(Principal {
                user_id: None,
                actor: Some("token-holder@example.org".into()),
                role: "admin".into(),
            }),
            steps: serde_json::Value::Null,
        })
    }

    fn options() -> StoreOptions {
        StoreOptions::new(FsyncMode::Never)
    }

    /// A log of `n` runs `t0..`, alternating outcome, actor and workflow; one batch per record
    /// when `rotate` (so that each batch rotates the active file into a segment).
    fn write_log(path: &Path, n: usize, rotate: bool) {
        let mut options = options();
        if rotate {
            options.segment_max_bytes = 1;
        }
        let (mut store, _) = JsonlStore::open(path, options).unwrap();
        let records: Vec<Record> = (0..n)
            .map(|i| {
                let (outcome, actor, workflow) = if i % 2 == 0 {
                    (Outcome::Started, "Jake", "deploy")
                } else {
                    (Outcome::Success, "Ana", "noop")
                };
                run(&format!("t{i}"), outcome, actor, workflow)
            })
            .collect();
        if rotate {
            for record in records {
                store.append_batch(&[record]).unwrap();
            }
        } else {
            store.append_batch(&records).unwrap();
        }
    }

    fn seqs(entries: &[Value]) -> Vec<u64> {
        entries.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
    }

    fn all(path: &Path, filter: &Filter) -> Vec<Value> {
        query(path, filter, usize::MAX).unwrap().entries
    }

    #[test]
    fn filters_select_records_and_return_them_whole_in_seq_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write_log(&path, 10, false);

        let everything = all(&path, &Filter::default());
        assert_eq!(seqs(&everything), (1..=10).collect::<Vec<_>>());
        let first = &everything[0];
        assert_eq!(first["trace_id"], "t0");
        assert!(first["integrity_hash"]
            .as_str()
            .unwrap()
            .starts_with("sha256:"));
        assert_eq!(first["parameters"]["note"], "\"quoted\" \\ é");

        let by_trace = Filter {
            trace_id: Some("t3".into()),
            ..Filter::default()
        };
        assert_eq!(seqs(&all(&path, &by_trace)), [4]);
        let by_outcome = Filter {
            outcome: Some("SUCCESS".into()),
            ..Filter::default()
        };
        assert_eq!(seqs(&all(&path, &by_outcome)), [2, 4, 6, 8, 10]);
        let by_workflow = Filter {
            workflow: Some("deploy".into()),
            ..Filter::default()
        };
        assert_eq!(seqs(&all(&path, &by_workflow)), [1, 3, 5, 7, 9]);
        assert!(all(
            &path,
            &Filter {
                workflow: Some("Deploy".into()),
                ..Filter::default()
            }
        )
        .is_empty());

        for actor in ["ana", " ANA@example.org ", "Ana"] {
            let by_actor = Filter {
                actor: Some(actor.into()),
                ..Filter::default()
            };
            assert_eq!(seqs(&all(&path, &by_actor)), [2, 4, 6, 8, 10], "{actor}");
        }
        let by_principal = Filter {
            actor: Some("Token-Holder@example.org".into()),
            ..Filter::default()
        };
        assert_eq!(all(&path, &by_principal).len(), 10);
        let nobody = Filter {
            actor: Some("an".into()),
            ..Filter::default()
        };
        assert!(all(&path, &nobody).is_empty(), "no substring matches");

        let combined = Filter {
            actor: Some("jake".into()),
            outcome: Some("started".into()),
            drag_mode: Some("execute".into()),
            kind: Some("run".into()),
            after_seq: Some(4),
            ..Filter::default()
        };
        assert_eq!(seqs(&all(&path, &combined)), [5, 7, 9]);
        let other_kind = Filter {
            kind: Some("checkpoint".into()),
            ..Filter::default()
        };
        assert!(all(&path, &other_kind).is_empty());
    }

    #[test]
    fn check_normalizes_fixed_values_and_names_a_bad_one() {
        let mut filter = Filter {
            outcome: Some(" Success".into()),
            drag_mode: Some("EXECUTE".into()),
            kind: Some("Run".into()),
            ..Filter::default()
        };
        filter.check().unwrap();
        assert_eq!(filter.outcome.as_deref(), Some("success"));
        assert_eq!(filter.drag_mode.as_deref(), Some("execute"));
        assert_eq!(filter.kind.as_deref(), Some("run"));
        for (bad, name) in [
            (
                Filter {
                    outcome: Some("succeeded".into()),
                    ..Filter::default()
                },
                "outcome",
            ),
            (
                Filter {
                    drag_mode: Some("analysis".into()),
                    ..Filter::default()
                },
                "drag_mode",
            ),
            (
                Filter {
                    kind: Some("runs".into()),
                    ..Filter::default()
                },
                "kind",
            ),
            (
                Filter {
                    since: parse_timestamp("2026-01-02T00:00:00Z").ok(),
                    until: parse_timestamp("2026-01-01T00:00:00Z").ok(),
                    ..Filter::default()
                },
                "since",
            ),
        ] {
            let mut bad = bad;
            let message = bad.check().unwrap_err();
            assert!(message.contains(name), "{message}");
        }
    }

    #[test]
    fn since_is_inclusive_and_until_exclusive_on_the_record_timestamp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let (mut store, _) = JsonlStore::open(&path, options()).unwrap();
        for i in 0..3 {
            store
                .append_batch(&[run(&format!("t{i}"), Outcome::Success, "Jake", "noop")])
                .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(3));
        }
        let everything = all(&path, &Filter::default());
        let stamp =
            |i: usize| parse_timestamp(everything[i]["timestamp"].as_str().unwrap()).unwrap();
        assert!(stamp(0) < stamp(1) && stamp(1) < stamp(2));
        let between = Filter {
            since: Some(stamp(1)),
            until: Some(stamp(2)),
            ..Filter::default()
        };
        assert_eq!(seqs(&all(&path, &between)), [2]);
        let from = Filter {
            since: Some(stamp(1)),
            ..Filter::default()
        };
        assert_eq!(seqs(&all(&path, &from)), [2, 3]);
        let to = Filter {
            until: Some(stamp(1)),
            ..Filter::default()
        };
        assert_eq!(seqs(&all(&path, &to)), [1]);
        let future = Filter {
            since: Some(parse_timestamp("2999-01-01T00:00:00Z").unwrap()),
            ..Filter::default()
        };
        assert!(all(&path, &future).is_empty());
        let past = Filter {
            until: Some(parse_timestamp("2000-01-01T00:00:00+02:00").unwrap()),
            ..Filter::default()
        };
        assert!(all(&path, &past).is_empty());
        assert!(parse_timestamp("yesterday").is_err());
        assert!(parse_timestamp("2026-01-01").is_err());
    }

    #[test]
    fn pages_walk_every_record_once_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write_log(&path, 9, true);
        assert_eq!(
            segments::log_files(&path).unwrap().len(),
            9,
            "8 segments and the active file"
        );
        for limit in [1, 2, 4, 9, 10] {
            let mut cursor = None;
            let mut walked = Vec::new();
            let mut pages = 0;
            loop {
                let filter = Filter {
                    after_seq: cursor,
                    ..Filter::default()
                };
                let page = query(&path, &filter, limit).unwrap();
                assert!(page.entries.len() <= limit);
                walked.extend(seqs(&page.entries));
                pages += 1;
                match page.next_cursor {
                    Some(next) => {
                        assert_eq!(Some(&next), walked.last());
                        assert_eq!(page.entries.len(), limit);
                        cursor = Some(next);
                    }
                    None => break,
                }
            }
            assert_eq!(walked, (1..=9).collect::<Vec<_>>(), "limit {limit}");
            assert_eq!(pages, 9 / limit + 1, "limit {limit}");
        }
        let filtered = Filter {
            outcome: Some("success".into()),
            ..Filter::default()
        };
        let page = query(&path, &filtered, 2).unwrap();
        assert_eq!(seqs(&page.entries), [2, 4]);
        assert_eq!(page.next_cursor, Some(4));
        let rest = query(
            &path,
            &Filter {
                after_seq: Some(4),
                ..filtered
            },
            2,
        )
        .unwrap();
        assert_eq!(seqs(&rest.entries), [6, 8]);
        assert!(query(&path, &Filter::default(), 0)
            .unwrap()
            .entries
            .is_empty());
    }

    #[test]
    fn a_cursor_deep_in_a_large_file_is_found_by_bisection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write_log(&path, 6000, false);
        assert!(std::fs::metadata(&path).unwrap().len() > 20 * CLOSE_ENOUGH);
        for after in [0, 1, 2, 777, 2999, 3000, 5997, 5999, 6000, 7000] {
            let filter = Filter {
                after_seq: Some(after),
                ..Filter::default()
            };
            let page = query(&path, &filter, 3).unwrap();
            let expected: Vec<u64> = (after + 1..=6000).take(3).collect();
            assert_eq!(seqs(&page.entries), expected, "after {after}");
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let target = text
            .lines()
            .take(3999)
            .map(|l| l.len() as u64 + 1)
            .sum::<u64>();
        let offset = offset_before(&mut File::open(&path).unwrap(), 4000).unwrap();
        assert!(
            offset <= target && target - offset <= CLOSE_ENOUGH,
            "{offset} for {target}"
        );
        assert!(
            offset == 0 || text.as_bytes()[offset as usize - 1] == b'\n',
            "a line start"
        );

        // A damaged line in the way stops the bisection early, and the answer stays right.
        let mut lines: Vec<&str> = text.lines().collect();
        lines[3000] = "damaged";
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        for after in [2998, 2999, 3000, 3001, 5000] {
            let filter = Filter {
                after_seq: Some(after),
                ..Filter::default()
            };
            let expected: Vec<u64> = (after + 1..=6000).filter(|&s| s != 3001).take(3).collect();
            assert_eq!(seqs(&query(&path, &filter, 3).unwrap().entries), expected);
        }
    }

    #[test]
    fn segments_that_end_before_the_cursor_are_not_opened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write_log(&path, 5, true);
        // Turn the first segment (seq 1) into something that fails when read.
        let first = segments::segment_path(&path, 1);
        std::fs::remove_file(&first).unwrap();
        std::fs::create_dir(&first).unwrap();
        assert!(query(&path, &Filter::default(), 10).is_err());
        for after in [1, 2, 4] {
            let filter = Filter {
                after_seq: Some(after),
                ..Filter::default()
            };
            let page = query(&path, &filter, 10).unwrap();
            assert_eq!(seqs(&page.entries), ((after + 1)..=5).collect::<Vec<_>>());
        }
        assert_eq!(seqs(&tail(&path, 4).unwrap()), [2, 3, 4, 5]);
    }

    #[test]
    fn tail_returns_the_last_records_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        for rotate in [false, true] {
            let path = dir.path().join(format!("audit-{rotate}.jsonl"));
            assert!(tail(&path, 3).unwrap().is_empty(), "no log yet");
            write_log(&path, 7, rotate);
            assert_eq!(seqs(&tail(&path, 3).unwrap()), [5, 6, 7]);
            assert_eq!(seqs(&tail(&path, 1).unwrap()), [7]);
            assert_eq!(seqs(&tail(&path, 7).unwrap()), (1..=7).collect::<Vec<_>>());
            assert_eq!(
                seqs(&tail(&path, 100).unwrap()),
                (1..=7).collect::<Vec<_>>()
            );
            assert!(tail(&path, 0).unwrap().is_empty());
            assert_eq!(tail(&path, 2).unwrap()[1]["trace_id"], "t6");
            let written: Vec<String> = segments::log_files(&path)
                .unwrap()
                .iter()
                .flat_map(|f| {
                    let text = std::fs::read_to_string(&f.path).unwrap();
                    text.lines().map(|l| format!("{l}\n")).collect::<Vec<_>>()
                })
                .collect();
            let raw = |lines: Vec<Vec<u8>>| -> Vec<String> {
                lines
                    .into_iter()
                    .map(|l| String::from_utf8(l).unwrap())
                    .collect()
            };
            assert_eq!(raw(tail_lines(&path, 2).unwrap()), written[5..]);
            let page = query_lines(
                &path,
                &Filter {
                    after_seq: Some(1),
                    ..Filter::default()
                },
                3,
            )
            .unwrap();
            assert_eq!(page.next_cursor, Some(4));
            assert_eq!(raw(page.lines), written[1..4]);
        }
    }

    #[test]
    fn tail_reads_lines_longer_than_its_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let (mut store, _) = JsonlStore::open(&path, options()).unwrap();
        let mut big = run("big", Outcome::Success, "Jake", "noop");
        if let Record::Run(record) = &mut big {
            record.parameters = json!({"blob": "x".repeat(3 * BACK_CHUNK as usize)});
        }
        store
            .append_batch(&[
                run("a", Outcome::Started, "Jake", "noop"),
                big.clone(),
                run("b", Outcome::Started, "Jake", "noop"),
                big,
            ])
            .unwrap();
        let last = tail(&path, 3).unwrap();
        assert_eq!(seqs(&last), [2, 3, 4]);
        assert_eq!(last[0]["trace_id"], "big");
        assert_eq!(
            last[2]["parameters"]["blob"].as_str().unwrap().len(),
            3 * BACK_CHUNK as usize
        );
        assert_eq!(seqs(&tail(&path, 10).unwrap()), [1, 2, 3, 4]);
    }

    #[test]
    fn an_unfinished_final_line_and_damaged_lines_are_not_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write_log(&path, 3, false);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(
            b"not json
{\"seq\":\"four\"}
",
        )
        .unwrap();
        let mut copy = all(&path, &Filter::default())[0].to_string();
        copy = copy.replace("\"seq\":1", "\"seq\":4");
        file.write_all(format!("{copy}\n").as_bytes()).unwrap();
        // A line the writer is still writing.
        file.write_all(&copy.as_bytes()[..40]).unwrap();
        drop(file);
        assert_eq!(seqs(&all(&path, &Filter::default())), [1, 2, 3, 4]);
        assert_eq!(seqs(&tail(&path, 2).unwrap()), [3, 4]);
        // Once the line is finished, it is read.
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        let finished = copy.replace("\"seq\":4", "\"seq\":5");
        file.write_all(&finished.as_bytes()[40..]).unwrap();
        file.write_all(b"\n").unwrap();
        drop(file);
        assert_eq!(seqs(&tail(&path, 2).unwrap()), [4, 5]);
    }

    #[test]
    fn a_record_with_unexpected_member_types_still_matches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let (mut store, _) = JsonlStore::open(&path, options()).unwrap();
        let mut odd = run("odd", Outcome::Rejected, "Jake", "noop");
        if let Record::Run(record) = &mut odd {
            record.aim = json!("whatever the client sent");
        }
        let mut odder = run("odder", Outcome::Rejected, "Jake", "noop");
        if let Record::Run(record) = &mut odder {
            record.aim = json!({"actor": {"name": 42, "email": "JAKE@example.org"}});
        }
        store.append_batch(&[odd, odder]).unwrap();
        let by_trace = Filter {
            trace_id: Some("odd".into()),
            ..Filter::default()
        };
        assert_eq!(seqs(&all(&path, &by_trace)), [1]);
        let by_actor = Filter {
            actor: Some("jake@example.org".into()),
            ..Filter::default()
        };
        assert_eq!(seqs(&all(&path, &by_actor)), [2]);
        let by_principal = Filter {
            actor: Some("token-holder@example.org".into()),
            outcome: Some("rejected".into()),
            ..Filter::default()
        };
        assert_eq!(seqs(&all(&path, &by_principal)), [1, 2]);
    }

    #[test]
    fn reads_stay_consistent_while_the_writer_appends_and_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut options = options();
        options.segment_max_bytes = 8 * 1024;
        let (mut store, _) = JsonlStore::open(&path, options).unwrap();
        let total = 1500u64;
        let writer = std::thread::spawn(move || {
            let mut written = 0;
            while written < total {
                let batch: Vec<Record> = (0..7.min(total - written))
                    .map(|i| {
                        run(
                            &format!("w{}", written + i),
                            Outcome::Success,
                            "Jake",
                            "noop",
                        )
                    })
                    .collect();
                written += batch.len() as u64;
                store.append_batch(&batch).unwrap();
            }
        });
        let mut rounds = 0;
        loop {
            let done = writer.is_finished();
            // One pass of pages: consecutive seqs from 1, each exactly once.
            let mut cursor = None;
            let mut expected = 1;
            loop {
                let filter = Filter {
                    after_seq: cursor,
                    ..Filter::default()
                };
                let page = query(&path, &filter, 97).unwrap();
                for seq in seqs(&page.entries) {
                    assert_eq!(seq, expected, "round {rounds}");
                    expected += 1;
                }
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            let last = seqs(&tail(&path, 25).unwrap());
            for pair in last.windows(2) {
                assert_eq!(pair[0] + 1, pair[1], "round {rounds}: {last:?}");
            }
            rounds += 1;
            if done {
                assert_eq!(expected, total + 1);
                assert_eq!(last.last(), Some(&total));
                break;
            }
        }
        writer.join().unwrap();
    }
}
