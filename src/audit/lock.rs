//! The single-writer guarantee: locks that a second server (or `audit import-legacy`) on the same
//! log cannot take while this process holds them.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use super::segments;
use super::AuditError;

/// Held for the store's life; dropping it (or the process ending, however it ends) releases both.
///
/// Two exclusive `flock`s: one on the directory that holds the log (opened `O_RDONLY|O_DIRECTORY`)
/// and one on the lock file beside the log. The directory's lock is the one that cannot be
/// defeated by deleting a file: a directory holding files cannot be removed, and a lock file
/// deleted and created again is a new inode whose lock proves nothing. The lock file stays for
/// older binaries and tools that look for it. One consequence: one audit log per directory.
#[derive(Debug)]
pub struct WriterLock {
    _directory: File,
    _file: File,
}

impl WriterLock {
    /// Takes both locks without waiting; [`AuditError::Locked`] when another process holds either.
    pub fn acquire(path: &Path) -> Result<WriterLock, AuditError> {
        let io_err = |source: io::Error| AuditError::Open {
            path: path.to_owned(),
            source,
        };
        let directory = open_directory(&directory_of(path)).map_err(io_err)?;
        directory
            .try_lock()
            .map_err(|_| AuditError::Locked(path.to_owned()))?;
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(segments::lock_path(path))
            .map_err(io_err)?;
        file.try_lock()
            .map_err(|_| AuditError::Locked(path.to_owned()))?;
        Ok(WriterLock {
            _directory: directory,
            _file: file,
        })
    }
}

/// The directory holding the log (`.` for a bare file name).
fn directory_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn open_directory(dir: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deleted_lock_file_does_not_let_a_second_writer_in() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.jsonl");
        let first = WriterLock::acquire(&log).unwrap();
        std::fs::remove_file(segments::lock_path(&log)).unwrap();
        assert!(matches!(
            WriterLock::acquire(&log),
            Err(AuditError::Locked(_))
        ));
        drop(first);
        WriterLock::acquire(&log).expect("free once the first is gone");
    }
}
