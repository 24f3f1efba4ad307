//! The embedded JSONL store: one append-only file, one writer, group commit.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::format::{self, GENESIS_HASH};
use super::record::{Receipt, Record};
use super::{AuditError, FsyncMode};

/// The head of the chain: the last durable record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub seq: u64,
    pub hash: String,
}

impl ChainHead {
    fn genesis() -> ChainHead {
        ChainHead {
            seq: 0,
            hash: GENESIS_HASH.to_owned(),
        }
    }
}

/// The audit file, opened for exclusive appending. All methods block: call them from the writer
/// thread, never from the async runtime.
pub struct JsonlStore {
    path: PathBuf,
    file: File,
    len: u64,
    head: ChainHead,
    fsync: FsyncMode,
}

impl JsonlStore {
    /// Opens (creating it and its directory when missing) and locks the file, finds the chain head,
    /// and cuts off a torn final line. The cut, when there was one, is returned as a record to append.
    pub fn open(path: &Path, fsync: FsyncMode) -> Result<(JsonlStore, Option<Record>), AuditError> {
        let io_err = |source: io::Error| AuditError::Open {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io_err)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io_err)?;
        file.try_lock()
            .map_err(|_| AuditError::Locked(path.to_owned()))?;
        let mut len = file.metadata().map_err(io_err)?.len();

        let mut recovery = None;
        if len > 0 && read_at(&mut file, len - 1, 1).map_err(io_err)? != b"\n" {
            let keep = rfind_newline(&mut file, len)
                .map_err(io_err)?
                .map_or(0, |nl| nl + 1);
            let cut = read_at(&mut file, keep, len - keep).map_err(io_err)?;
            file.set_len(keep).map_err(io_err)?;
            file.sync_all().map_err(io_err)?;
            tracing::warn!(path = %path.display(), offset = keep, length = cut.len(), "cut a torn final audit line");
            recovery = Some(Record::Recovery {
                cut_offset: keep,
                cut_length: cut.len() as u64,
                cut_hash: format::sha256_tagged(&cut),
                reason: "torn final line (the previous process stopped mid-write)".to_owned(),
            });
            len = keep;
        }

        let head = if len == 0 {
            ChainHead::genesis()
        } else {
            let start = rfind_newline(&mut file, len - 1)
                .map_err(io_err)?
                .map_or(0, |nl| nl + 1);
            let line = read_at(&mut file, start, len - 1 - start).map_err(io_err)?;
            head_of(&line).ok_or_else(|| AuditError::CorruptHead(path.to_owned()))?
        };
        let store = JsonlStore {
            path: path.to_owned(),
            file,
            len,
            head,
            fsync,
        };
        Ok((store, recovery))
    }

    pub fn head(&self) -> &ChainHead {
        &self.head
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `records` in order with one write and one sync. All or nothing: on error the file is
    /// cut back to its previous length and the head does not move.
    pub fn append_batch(&mut self, records: &[Record]) -> io::Result<Vec<Receipt>> {
        let mut buffer = Vec::with_capacity(records.len() * 1024);
        let mut receipts = Vec::with_capacity(records.len());
        let mut head = self.head.clone();
        let timestamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        for record in records {
            let mut fields = match serde_json::to_value(record) {
                Ok(Value::Object(map)) => map,
                _ => Map::new(),
            };
            head.seq += 1;
            fields.insert("seq".into(), Value::from(head.seq));
            fields.insert("prev_hash".into(), Value::String(head.hash.clone()));
            fields.insert("timestamp".into(), Value::String(timestamp.clone()));
            let (line, hash) = format::encode_line(fields);
            buffer.extend_from_slice(&line);
            head.hash = hash.clone();
            receipts.push(Receipt {
                seq: head.seq,
                hash,
            });
        }
        let written = self
            .file
            .write_all(&buffer)
            .and_then(|()| match self.fsync {
                FsyncMode::Always => self.file.sync_data(),
                FsyncMode::Never => Ok(()),
            });
        if let Err(e) = written {
            // Best effort: a partial line must not stay behind to break the chain.
            let _ = self.file.set_len(self.len);
            return Err(e);
        }
        self.len += buffer.len() as u64;
        self.head = head;
        Ok(receipts)
    }
}

/// Reads the seq and hash a complete line states, checking its own hash.
fn head_of(line: &[u8]) -> Option<ChainHead> {
    let (body, stated) = format::split_line(line).ok()?;
    if format::hash_body(&body) != stated {
        return None;
    }
    let fields: Map<String, Value> = serde_json::from_slice(&body).ok()?;
    Some(ChainHead {
        seq: fields.get("seq")?.as_u64()?,
        hash: stated,
    })
}

fn read_at(file: &mut File, offset: u64, len: u64) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; usize::try_from(len).map_err(io::Error::other)?];
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(&mut buf)?;
    Ok(buf)
}

/// Offset of the last `\n` strictly before `end`, scanning backwards in chunks.
fn rfind_newline(file: &mut File, end: u64) -> io::Result<Option<u64>> {
    const CHUNK: u64 = 64 * 1024;
    let mut hi = end;
    while hi > 0 {
        let lo = hi.saturating_sub(CHUNK);
        let chunk = read_at(file, lo, hi - lo)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(Some(lo + i as u64));
        }
        hi = lo;
    }
    Ok(None)
}
