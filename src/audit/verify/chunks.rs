//! Verifying a log that arrives in pieces: pages of lines read from a database, or a log file read
//! chunk by chunk so that what verified can be handed on (an import) before the rest is read.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Cursor};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Mutex};

use super::ranges::{stitch, verify_segment, Segment};
use super::{Report, VerifyOptions};
use crate::audit::segments;

/// Verifies a chain given as consecutive chunks of whole lines (each with its newline), in order:
/// up to `workers` chunks are verified at once, on threads of their own, while the next ones are
/// read; then the verdicts are linked in order. Problems name no file; their `line` counts records
/// from the first one given.
pub fn verify_chunks(
    chunks: impl Iterator<Item = io::Result<Vec<u8>>>,
    options: &VerifyOptions,
    workers: usize,
) -> io::Result<Report> {
    let key = options.public_key.as_ref();
    let workers = workers.max(1);
    let (results, verdicts) = mpsc::channel::<(usize, io::Result<Segment>)>();
    // Bounded: at most `workers` chunks wait, so memory stays a few chunks whatever the log.
    let (sender, receiver) = mpsc::sync_channel::<(usize, Vec<u8>)>(workers);
    let receiver = Mutex::new(receiver);
    let read = std::thread::scope(|scope| {
        // Moved in: the workers stop once it is dropped, whichever way this returns.
        let sender = sender;
        for _ in 0..workers {
            let (results, receiver) = (results.clone(), &receiver);
            scope.spawn(move || loop {
                let next = crate::sync::lock(receiver).recv();
                let Ok((index, chunk)) = next else {
                    return;
                };
                let len = chunk.len() as u64;
                let verdict = verify_segment(Cursor::new(chunk), len, key);
                if results.send((index, verdict)).is_err() {
                    return;
                }
            });
        }
        let mut count = 0;
        for chunk in chunks {
            if sender.send((count, chunk?)).is_err() {
                break;
            }
            count += 1;
        }
        Ok::<usize, io::Error>(count)
    });
    drop(results);
    let count = read?;
    let mut segments: Vec<(usize, Segment)> = Vec::with_capacity(count);
    for (index, verdict) in verdicts {
        segments.push((index, verdict?));
    }
    if segments.len() != count {
        return Err(io::Error::other("a verifier thread stopped"));
    }
    segments.sort_by_key(|(index, _)| *index);
    let segments = segments.into_iter().map(|(_, s)| (0, s)).collect();
    let mut report = stitch(segments, &[PathBuf::new()], key);
    if let Some(problem) = &mut report.problem {
        problem.file = None;
    }
    Ok(report)
}

/// Verifies the log at `path` (its active file or its directory, with every rotated segment) as
/// [`super::verify_log`] does, reading it once, in chunks of whole lines of about `chunk_bytes`:
/// each chunk that verifies and continues the chain is handed to `accept` before the next one is
/// read; the first one that does not ends the reading. Whether the log is valid is known only from
/// the report (a log that does not start at seq 1 is judged at the end, by its retention records):
/// act on what `accept` was given only then.
pub fn verify_log_in_chunks(
    path: &Path,
    options: &VerifyOptions,
    chunk_bytes: usize,
    mut accept: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<Report> {
    if !(path.is_dir() || path.exists()) {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} does not exist", path.display()),
        ));
    }
    let key = options.public_key.as_ref();
    let files: Vec<PathBuf> = segments::log_files(path)?
        .into_iter()
        .map(|s| s.path)
        .collect();
    let mut verdicts: Vec<(usize, Segment)> = Vec::new();
    // The last verdict that held a line: the next chunk must continue it.
    let mut previous: Option<usize> = None;
    let mut chunk = Vec::with_capacity(chunk_bytes + 64 * 1024);
    'files: for (index, file) in files.iter().enumerate() {
        let mut reader = BufReader::with_capacity(1 << 20, File::open(file)?);
        loop {
            chunk.clear();
            while chunk.len() < chunk_bytes {
                if reader.read_until(b'\n', &mut chunk)? == 0 || !chunk.ends_with(b"\n") {
                    break;
                }
            }
            if chunk.is_empty() {
                break;
            }
            let segment = verify_segment(Cursor::new(&chunk[..]), chunk.len() as u64, key)?;
            let good = segment.continues(previous.map(|i| &verdicts[i].1));
            if good {
                accept(&chunk)?;
            }
            let lines = segment.lines();
            verdicts.push((index, segment));
            if lines > 0 {
                previous = Some(verdicts.len() - 1);
            }
            if !good {
                break 'files;
            }
        }
    }
    Ok(stitch(verdicts, &files, key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::format::{encode_line, GENESIS_HASH};
    use crate::audit::verify::verify_log;

    fn log(n: u64) -> Vec<u8> {
        let mut prev = GENESIS_HASH.to_owned();
        let mut out = Vec::new();
        for seq in 1..=n {
            let mut fields = serde_json::Map::new();
            fields.insert("seq".into(), seq.into());
            fields.insert("prev_hash".into(), prev.clone().into());
            fields.insert("kind".into(), "run".into());
            let (line, hash) = encode_line(fields);
            out.extend_from_slice(&line);
            prev = hash;
        }
        out
    }

    fn chunked(bytes: &[u8], lines_per_chunk: usize) -> Vec<io::Result<Vec<u8>>> {
        let lines: Vec<&[u8]> = bytes.split_inclusive(|b| *b == b'\n').collect();
        lines
            .chunks(lines_per_chunk)
            .map(|chunk| Ok(chunk.concat()))
            .collect()
    }

    #[test]
    fn chunks_verify_as_the_whole_log_does() {
        let bytes = log(100);
        let report =
            verify_chunks(chunked(&bytes, 7).into_iter(), &VerifyOptions::default(), 3).unwrap();
        assert!(report.is_valid(), "{report:?}");
        assert_eq!(report.records, 100);
        assert_eq!(report.head_seq, 100);
    }

    #[test]
    fn a_record_missing_between_chunks_is_found_and_counted_from_the_first() {
        let bytes = log(30);
        let mut lines: Vec<&[u8]> = bytes.split_inclusive(|b| *b == b'\n').collect();
        lines.remove(10);
        let report = verify_chunks(
            chunked(&lines.concat(), 5).into_iter(),
            &VerifyOptions::default(),
            2,
        )
        .unwrap();
        let problem = report.problem.expect("the gap is found");
        assert_eq!(problem.line, 11);
        assert_eq!(problem.file, None);
    }

    #[test]
    fn a_read_error_is_an_error_not_a_verdict() {
        let chunks = vec![Ok(log(2)), Err(io::Error::other("connection lost"))];
        assert!(verify_chunks(chunks.into_iter(), &VerifyOptions::default(), 2).is_err());
    }

    #[test]
    fn reading_in_chunks_hands_on_only_what_verified_and_agrees_with_verify_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut bytes = log(50);
        // Line 31 edited: the chunks before it are handed on, none after.
        let start = bytes
            .split_inclusive(|b| *b == b'\n')
            .take(30)
            .map(<[u8]>::len)
            .sum::<usize>();
        bytes[start + 2] = b'X';
        std::fs::write(&path, &bytes).unwrap();
        let mut handed = Vec::new();
        let report = verify_log_in_chunks(&path, &VerifyOptions::default(), 1000, |chunk| {
            handed.extend_from_slice(chunk);
            Ok(())
        })
        .unwrap();
        assert_eq!(
            report,
            verify_log(&path, &VerifyOptions::default()).unwrap()
        );
        assert_eq!(report.problem.as_ref().map(|p| p.line), Some(31));
        assert!(handed.len() <= start && bytes.starts_with(&handed));
    }
}
