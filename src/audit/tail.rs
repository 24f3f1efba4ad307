//! Bytes at the end of the active file that this writer did not write: another process appended
//! to the log. They are cut before our next record (else that record would be glued onto them and
//! the chain broken) and a `recovery` record names what was cut.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

use sha2::{Digest, Sha256};

use super::record::Record;

/// Foreign tails cut since the store opened (bytes another process appended to the active file).
#[derive(Debug, Clone, Default)]
pub struct ForeignTails {
    pub count: u64,
    /// What the last one was: its length, offset and hash.
    pub last: Option<String>,
}

impl ForeignTails {
    pub(super) fn note(&mut self, record: &Record) {
        if let Record::Recovery {
            cut_offset,
            cut_length,
            cut_hash,
            ..
        } = record
        {
            self.count += 1;
            self.last = Some(format!(
                "{cut_length} foreign bytes at offset {cut_offset} of the active file ({cut_hash}) were cut and recorded"
            ));
        }
    }
}

/// If the file is longer than `expected` (what this writer wrote), cuts it back to `expected` and
/// returns the `recovery` record for the cut. A special file (not a regular file) is left alone.
///
/// The check is an `fstat` before each write: bytes appended between it and our write cannot be
/// told apart from ours until the next write's check finds the file longer than it should be.
pub fn cut_foreign_tail(file: &mut File, expected: u64) -> io::Result<Option<Record>> {
    let meta = file.metadata()?;
    if !meta.file_type().is_file() || meta.len() <= expected {
        return Ok(None);
    }
    let length = meta.len() - expected;
    let mut hasher = Sha256::new();
    let mut reader = &*file;
    reader.seek(SeekFrom::Start(expected))?;
    let copied = io::copy(&mut reader.take(length), &mut HashWriter(&mut hasher))?;
    file.set_len(expected)?;
    file.sync_data()?;
    Ok(Some(recovery(expected, copied, hasher.finalize().into())))
}

/// After our write of `ours` at `start`: whether another process's bytes landed in front of it
/// (between the check before the write and the write itself), gluing our record onto them. Then
/// everything from `start` is cut, and the `recovery` record for the foreign bytes is returned: the
/// caller fails the write (its records are not on the trail) and writes the recovery next. Bytes
/// that landed after ours are left for the next write's [`cut_foreign_tail`].
pub fn cut_glued_write(file: &mut File, start: u64, ours: &[u8]) -> io::Result<Option<Record>> {
    let meta = file.metadata()?;
    let end = start + ours.len() as u64;
    if !meta.file_type().is_file() || meta.len() <= end {
        return Ok(None);
    }
    let mut region = Vec::new();
    let mut reader = &*file;
    reader.seek(SeekFrom::Start(start))?;
    reader.take(meta.len() - start).read_to_end(&mut region)?;
    if region.starts_with(ours) {
        return Ok(None);
    }
    let foreign = region.strip_suffix(ours).unwrap_or(&region);
    file.set_len(start)?;
    file.sync_data()?;
    let hash = Sha256::digest(foreign).into();
    Ok(Some(recovery(start, foreign.len() as u64, hash)))
}

fn recovery(offset: u64, length: u64, hash: [u8; 32]) -> Record {
    tracing::error!(
        offset,
        length,
        "cut bytes another process appended to the audit log"
    );
    Record::Recovery {
        cut_offset: offset,
        cut_length: length,
        cut_hash: format!("sha256:{}", hex::encode(hash)),
        reason:
            "foreign tail: bytes this server did not write were appended to the active file by \
                 another process; cut before the next record"
                .to_owned(),
    }
}

struct HashWriter<'a>(&'a mut Sha256);

impl io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(bytes: &[u8]) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::write(&path, bytes).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .unwrap();
        (dir, file)
    }

    #[test]
    fn a_foreign_tail_is_cut_back_to_what_we_wrote() {
        let (_dir, mut file) = file_with(b"ours\n{\"garbage");
        let record = cut_foreign_tail(&mut file, 5).unwrap().expect("cut");
        assert!(matches!(
            record,
            Record::Recovery {
                cut_offset: 5,
                cut_length: 9,
                ..
            }
        ));
        assert_eq!(file.metadata().unwrap().len(), 5);
        assert!(cut_foreign_tail(&mut file, 5).unwrap().is_none());
    }

    #[test]
    fn bytes_that_landed_in_front_of_our_write_undo_it() {
        let (_dir, mut file) = file_with(b"ours\nxyz");
        file.write_all(b"next\n").unwrap();
        let record = cut_glued_write(&mut file, 5, b"next\n")
            .unwrap()
            .expect("glued");
        assert!(matches!(
            record,
            Record::Recovery {
                cut_offset: 5,
                cut_length: 3,
                ..
            }
        ));
        assert_eq!(file.metadata().unwrap().len(), 5);
    }

    #[test]
    fn bytes_after_our_write_wait_for_the_next_check() {
        let (_dir, mut file) = file_with(b"ours\nnext\nxyz");
        assert!(cut_glued_write(&mut file, 5, b"next\n").unwrap().is_none());
        assert!(cut_foreign_tail(&mut file, 10).unwrap().is_some());
    }
}
