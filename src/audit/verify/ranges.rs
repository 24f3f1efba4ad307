//! Verifying a log in pieces: its files split into byte ranges at line boundaries, each range
//! verified on its own thread, and the verdicts linked in order.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::PathBuf;

use super::{check_line, check_link, Problem, Report};
use crate::audit::checkpoint::PublicKey;
use crate::audit::format::GENESIS_HASH;

/// The verdict on a run of consecutive lines, not yet linked to what came before.
#[derive(Default)]
pub(super) struct Segment {
    /// Lines that verified (up to the problem).
    lines: u64,
    /// seq and prev_hash of the first line, to link to the previous segment.
    first: Option<(u64, String)>,
    last_seq: u64,
    last_hash: String,
    checkpoints: u64,
    last_checkpoint: Option<u64>,
    anchors: Vec<(u64, String)>,
    /// A problem inside the segment: 0-based line index within it, and the message.
    problem: Option<(u64, String)>,
}

impl Segment {
    /// Whether this run of lines verified on its own and continues the chain where `previous`
    /// (the last run that held any line) ended.
    pub(super) fn continues(&self, previous: Option<&Segment>) -> bool {
        if self.problem.is_some() {
            return false;
        }
        match (&self.first, previous) {
            (Some((seq, prev)), Some(before)) if before.lines > 0 => {
                before.last_seq.checked_add(1) == Some(*seq) && *prev == before.last_hash
            }
            _ => true,
        }
    }

    /// Lines that verified.
    pub(super) fn lines(&self) -> u64 {
        self.lines
    }
}

pub(super) fn verify_segment(
    mut reader: impl BufRead,
    limit: u64,
    key: Option<&PublicKey>,
) -> io::Result<Segment> {
    let mut segment = Segment::default();
    let mut line = Vec::with_capacity(4096);
    let mut consumed = 0u64;
    while consumed < limit {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        consumed += n as u64;
        let verdict = check_line(&line, key).and_then(|checked| {
            match &segment.first {
                None => segment.first = Some((checked.seq, checked.prev_hash.clone())),
                Some(_) => check_link(
                    checked.seq,
                    &checked.prev_hash,
                    segment.last_seq.saturating_add(1),
                    &segment.last_hash,
                )?,
            }
            Ok(checked)
        });
        match verdict {
            Ok(checked) => {
                segment.lines += 1;
                segment.last_seq = checked.seq;
                segment.last_hash = checked.hash;
                if let Some(covered) = checked.checkpoint {
                    segment.checkpoints += 1;
                    segment.last_checkpoint = Some(covered);
                }
                segment.anchors.extend(checked.anchor);
            }
            Err(message) => {
                segment.problem = Some((segment.lines, message));
                break;
            }
        }
    }
    Ok(segment)
}

/// A byte range of one file of the log.
struct Range {
    file: usize,
    start: u64,
    end: u64,
}

/// Links segments in order into one report. `files` names the files the ranges index.
pub(super) fn stitch(
    segments: Vec<(usize, Segment)>,
    files: &[PathBuf],
    key: Option<&PublicKey>,
) -> Report {
    let mut report = Report {
        records: 0,
        first_seq: 1,
        head_seq: 0,
        head_hash: GENESIS_HASH.to_owned(),
        checkpoints: 0,
        last_checkpoint_seq: None,
        files: files.len(),
        problem: None,
        unfinished_tail_bytes: 0,
    };
    let anchors: Vec<(u64, String)> = segments
        .iter()
        .flat_map(|(_, s)| s.anchors.iter().cloned())
        .collect();
    let mut lines_in_file = vec![0u64; files.len()];
    let problem = |file: usize, line: u64, message: String| Problem {
        file: files.get(file).cloned(),
        line,
        message,
    };
    for (index, (file, segment)) in segments.into_iter().enumerate() {
        let base = lines_in_file[file];
        if let Some((seq, prev)) = &segment.first {
            if index == 0 && *seq != 1 {
                // A log that no longer starts at 1 must be anchored by a retention record.
                if anchors
                    .iter()
                    .any(|(through, hash)| through.checked_add(1) == Some(*seq) && hash == prev)
                {
                    report.first_seq = *seq;
                    report.head_seq = *seq - 1;
                    report.head_hash = prev.clone();
                } else {
                    let message = format!("the log starts at seq {seq} but no retention record names the records before it");
                    report.problem = Some(problem(file, 1, message));
                    return report;
                }
            }
            if let Err(message) = check_link(
                *seq,
                prev,
                report.head_seq.saturating_add(1),
                &report.head_hash,
            ) {
                report.problem = Some(problem(file, base + 1, message));
                return report;
            }
            report.records += segment.lines;
            report.head_seq = segment.last_seq;
            report.head_hash = segment.last_hash;
            report.checkpoints += segment.checkpoints;
            report.last_checkpoint_seq = segment.last_checkpoint.or(report.last_checkpoint_seq);
            lines_in_file[file] += segment.lines;
        }
        if let Some((index, message)) = segment.problem {
            report.problem = Some(problem(file, base + index + 1, message));
            return report;
        }
    }
    if key.is_some() && report.records > 0 && report.checkpoints == 0 {
        let last = files.len().saturating_sub(1);
        let message = "no signed checkpoint: nothing in this log is proven by the key".to_owned();
        report.problem = Some(problem(
            last,
            lines_in_file.get(last).copied().unwrap_or(0),
            message,
        ));
    }
    report
}

/// Verifies `files` as one chain, splitting any file of at least `threshold` bytes into `workers`
/// ranges.
pub(super) fn verify_files(
    files: &[PathBuf],
    threshold: u64,
    workers: u64,
    key: Option<&PublicKey>,
    live: bool,
) -> io::Result<Report> {
    let mut ranges = Vec::new();
    let mut unfinished = 0;
    // Every file is opened first and read through its open descriptor: a file the writer renames
    // meanwhile (the active file becoming a segment) is still the file that was listed.
    let mut opened = Vec::with_capacity(files.len());
    for path in files {
        opened.push(File::open(path)?);
    }
    for (index, file) in opened.iter().enumerate() {
        let mut file = reopen(file)?;
        let mut len = file.metadata()?.len();
        if live && index + 1 == files.len() {
            let complete = complete_lines_end(&mut file, len)?;
            unfinished = len - complete;
            len = complete;
        }
        let mut starts = vec![0u64];
        if len >= threshold && workers > 1 {
            for k in 1..workers {
                let from = (len * k / workers).max(*starts.last().unwrap_or(&0));
                if let Some(start) = next_line_start(&mut file, from)? {
                    if start < len && start > *starts.last().unwrap_or(&0) {
                        starts.push(start);
                    }
                }
            }
        }
        for (i, &start) in starts.iter().enumerate() {
            let end = starts.get(i + 1).copied().unwrap_or(len);
            ranges.push(Range {
                file: index,
                start,
                end,
            });
        }
    }
    let results: Vec<io::Result<Segment>> = std::thread::scope(|scope| {
        let handles: Vec<_> = ranges
            .iter()
            .map(|range| {
                let listed = &opened[range.file];
                scope.spawn(move || -> io::Result<Segment> {
                    let mut file = reopen(listed)?;
                    file.seek(SeekFrom::Start(range.start))?;
                    verify_segment(
                        BufReader::with_capacity(1 << 20, file),
                        range.end - range.start,
                        key,
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(io::Error::other("verifier thread panicked")))
            })
            .collect()
    });
    let mut segments = Vec::with_capacity(results.len());
    for (range, result) in ranges.iter().zip(results) {
        segments.push((range.file, result?));
    }
    let mut report = stitch(segments, files, key);
    report.unfinished_tail_bytes = unfinished;
    Ok(report)
}

/// The same file as `file` (whatever its name is now), with a read position of its own.
fn reopen(file: &File) -> io::Result<File> {
    use std::os::fd::AsRawFd;
    File::open(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

/// The offset just after the last `\n` in the first `len` bytes of `file` (0 when there is none).
fn complete_lines_end(file: &mut File, len: u64) -> io::Result<u64> {
    let mut end = len;
    let mut chunk = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let part = &mut chunk[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(part)?;
        if let Some(i) = part.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// The offset just after the first `\n` at or after `from`, if any.
fn next_line_start(file: &mut File, from: u64) -> io::Result<Option<u64>> {
    file.seek(SeekFrom::Start(from))?;
    let mut reader = BufReader::with_capacity(64 * 1024, Read::by_ref(file));
    let mut skipped = Vec::new();
    let n = reader.read_until(b'\n', &mut skipped)?;
    Ok(skipped.ends_with(b"\n").then_some(from + n as u64))
}
