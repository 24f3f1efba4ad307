//! A log is its active file (`AUDIT_LOG_PATH`) plus rotated segments beside it, named after the
//! active file with the first `seq` they hold: `audit.jsonl` rotates to
//! `audit.00000000000000000001.jsonl`. Sorted by name, the segments and then the active file are
//! the whole chain in order.

use std::path::{Path, PathBuf};

/// One file of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFile {
    pub path: PathBuf,
    /// The first seq it holds (from its name); `None` for the active file.
    pub first_seq: Option<u64>,
}

fn stem_and_ext(active: &Path) -> (String, Option<String>) {
    let stem = active
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = active.extension().map(|e| e.to_string_lossy().into_owned());
    (stem, ext)
}

/// The name a segment holding records from `first_seq` gets.
pub fn segment_path(active: &Path, first_seq: u64) -> PathBuf {
    let (stem, ext) = stem_and_ext(active);
    let name = match ext {
        Some(ext) => format!("{stem}.{first_seq:020}.{ext}"),
        None => format!("{stem}.{first_seq:020}"),
    };
    active.with_file_name(name)
}

/// The lock file that makes a process the log's only writer.
pub fn lock_path(active: &Path) -> PathBuf {
    let mut name = active
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".lock");
    active.with_file_name(name)
}

/// The rotated segments of the log whose active file is `active`, oldest first (not the active file).
pub fn rotated(active: &Path) -> std::io::Result<Vec<SegmentFile>> {
    let dir = match active.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let (stem, ext) = stem_and_ext(active);
    let prefix = format!("{stem}.");
    let suffix = ext.map(|e| format!(".{e}")).unwrap_or_default();
    let mut segments = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(segments),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(middle) = name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(&suffix))
        else {
            continue;
        };
        if middle.len() == 20 && middle.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(first_seq) = middle.parse() {
                segments.push(SegmentFile {
                    path: dir.join(&name),
                    first_seq: Some(first_seq),
                });
            }
        }
    }
    segments.sort_by_key(|s| s.first_seq);
    Ok(segments)
}

/// Every file of the log, oldest first: the rotated segments, then the active file if it exists.
/// `path` may be the active file or the directory holding it (then the active file is the only
/// `*.jsonl` that is not a segment, or `audit.jsonl`).
pub fn log_files(path: &Path) -> std::io::Result<Vec<SegmentFile>> {
    let active = if path.is_dir() {
        active_in_dir(path)?
    } else {
        path.to_owned()
    };
    let mut files = rotated(&active)?;
    if active.exists() {
        files.push(SegmentFile {
            path: active,
            first_seq: None,
        });
    }
    Ok(files)
}

fn active_in_dir(dir: &Path) -> std::io::Result<PathBuf> {
    let default = dir.join("audit.jsonl");
    if default.exists() || !rotated(&default)?.is_empty() {
        return Ok(default);
    }
    let mut candidates = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let is_segment = name
            .split('.')
            .any(|part| part.len() == 20 && part.bytes().all(|b| b.is_ascii_digit()));
        if name.ends_with(".jsonl") && !is_segment {
            candidates.push(path);
        }
    }
    candidates.sort();
    Ok(candidates.into_iter().next().unwrap_or(default))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_named_after_the_active_file_and_listed_in_seq_order() {
        let dir = tempfile::tempdir().unwrap();
        let active = dir.path().join("audit.jsonl");
        assert_eq!(
            segment_path(&active, 1),
            dir.path().join("audit.00000000000000000001.jsonl")
        );
        for seq in [101, 1, 11] {
            std::fs::write(segment_path(&active, seq), "").unwrap();
        }
        std::fs::write(&active, "").unwrap();
        std::fs::write(dir.path().join("other.00000000000000000001.jsonl"), "").unwrap();
        std::fs::write(dir.path().join("audit.jsonl.lock"), "").unwrap();
        let files = log_files(&active).unwrap();
        let seqs: Vec<Option<u64>> = files.iter().map(|f| f.first_seq).collect();
        assert_eq!(seqs, [Some(1), Some(11), Some(101), None]);
        assert_eq!(log_files(dir.path()).unwrap(), files);
    }
}
