//! The embedded JSONL store: an active file plus rotated segments, one writer (`flock` on its directory and a lock file), group
//! commit, torn-tail recovery, signed checkpoints and retention.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};

use super::checkpoint::Signer;
use super::format::{self, PreEncoded, GENESIS_HASH};
use super::lines::{first_line, last_line, line_facts, read_at, rfind_newline};
use super::lock::WriterLock;
use super::record::encode;
use super::record::{Receipt, Record};
use super::segments;
use super::tail::{cut_foreign_tail, cut_glued_write, ForeignTails};
use super::{AuditError, FsyncMode};

mod retention;

/// How the store writes, rotates, signs and forgets.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub fsync: FsyncMode,
    /// Rotate the active file once it is this large (0: never by size).
    pub segment_max_bytes: u64,
    /// Rotate when the UTC day changes.
    pub rotate_daily: bool,
    /// Remove whole segments whose newest record is older than this many days (0: keep forever).
    pub retention_days: u32,
    /// Sign a checkpoint every `checkpoint_every` records (and on request) with this key.
    pub signer: Option<Signer>,
    pub checkpoint_every: u64,
}

impl StoreOptions {
    /// Durable, never rotating, never forgetting, unsigned: the simplest store.
    pub fn new(fsync: FsyncMode) -> StoreOptions {
        StoreOptions {
            fsync,
            segment_max_bytes: 0,
            rotate_daily: false,
            retention_days: 0,
            signer: None,
            checkpoint_every: 0,
        }
    }
}

/// Records written but not yet synced: durable once `file` is synced through `end`.
pub struct Written {
    pub end: u64,
    pub head: ChainHead,
    pub receipts: Vec<Receipt>,
    pub file: std::sync::Arc<File>,
}

/// The head of the chain: the last durable record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub seq: u64,
    pub hash: String,
}

/// The audit log, opened for exclusive appending. Every method blocks: call them from the writer
/// thread, never from the async runtime.
pub struct JsonlStore {
    path: PathBuf,
    /// Held for the store's life: the locks that make this process the only writer.
    _lock: WriterLock,
    file: File,
    /// A second handle on the active file, for the thread that syncs.
    sync_handle: std::sync::Arc<File>,
    len: u64,
    head: ChainHead,
    /// The seq of the active file's first record (the next record's seq when it is empty).
    active_first_seq: u64,
    /// The UTC day of the active file's first record.
    active_day: NaiveDate,
    /// Records written since the last checkpoint.
    since_checkpoint: u64,
    /// A rollback's truncate failed: retry it before writing anything.
    cut_pending: bool,
    /// A rotation renamed the active file but could not open the new one yet.
    reopen_pending: bool,
    /// Foreign bytes were cut: these `recovery` records go first in the next write.
    recovery_due: Vec<Record>,
    /// How many foreign tails were cut since the store opened, and what the last one was.
    foreign_tails: ForeignTails,
    options: StoreOptions,
}

impl JsonlStore {
    /// Opens (creating it and its directory when missing) and locks the log, finds the chain head,
    /// and cuts off a torn final line. Returns the records start-up must append: a `recovery` record
    /// for a cut tail. Call [`JsonlStore::apply_retention`] after.
    pub fn open(
        path: &Path,
        options: StoreOptions,
    ) -> Result<(JsonlStore, Vec<Record>), AuditError> {
        let io_err = |source: io::Error| AuditError::Open {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io_err)?;
        }
        let lock = WriterLock::acquire(path)?;
        let mut file = open_active(path).map_err(io_err)?;
        // The file (or its directory) may have just been created: make its entry durable too.
        sync_dir(path).map_err(io_err)?;
        let mut len = file.metadata().map_err(io_err)?.len();

        let mut startup = Vec::new();
        if len > 0 && read_at(&mut file, len - 1, 1).map_err(io_err)? != b"\n" {
            let keep = rfind_newline(&mut file, len)
                .map_err(io_err)?
                .map_or(0, |nl| nl + 1);
            let cut = read_at(&mut file, keep, len - keep).map_err(io_err)?;
            file.set_len(keep).map_err(io_err)?;
            file.sync_all().map_err(io_err)?;
            tracing::warn!(path = %path.display(), offset = keep, length = cut.len(), "cut a torn final audit line");
            startup.push(Record::Recovery {
                cut_offset: keep,
                cut_length: cut.len() as u64,
                cut_hash: format::sha256_tagged(&cut),
                reason: "torn final line (the previous process stopped mid-write)".to_owned(),
            });
            len = keep;
        }

        let corrupt = || AuditError::CorruptHead(path.to_owned());
        let (head, active_first_seq, active_day) = if len > 0 {
            let last = last_line(&mut file, len).map_err(io_err)?;
            let (head, _) = line_facts(&last).ok_or_else(corrupt)?;
            let first = first_line(&mut file).map_err(io_err)?;
            let (first, day) = line_facts(&first).ok_or_else(corrupt)?;
            (head, first.seq, day)
        } else {
            // An empty active file continues the newest rotated segment, if any.
            let head = match segments::rotated(path).map_err(io_err)?.last() {
                Some(segment) => {
                    let mut previous = File::open(&segment.path).map_err(io_err)?;
                    let previous_len = previous.metadata().map_err(io_err)?.len();
                    let last = last_line(&mut previous, previous_len).map_err(io_err)?;
                    line_facts(&last).ok_or_else(corrupt)?.0
                }
                None => ChainHead {
                    seq: 0,
                    hash: GENESIS_HASH.to_owned(),
                },
            };
            let next = head.seq + 1;
            (head, next, Utc::now().date_naive())
        };
        let sync_handle = std::sync::Arc::new(file.try_clone().map_err(io_err)?);
        let store = JsonlStore {
            path: path.to_owned(),
            _lock: lock,
            sync_handle,
            file,
            len,
            head,
            active_first_seq,
            active_day,
            since_checkpoint: 0,
            cut_pending: false,
            reopen_pending: false,
            recovery_due: Vec::new(),
            foreign_tails: ForeignTails::default(),
            options,
        };
        Ok((store, startup))
    }

    pub fn head(&self) -> &ChainHead {
        &self.head
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends records (pre-encoded by their callers) in order with one write and one sync, plus a
    /// signed checkpoint when one is due. All or nothing: on error the file is cut back to its
    /// previous length and the head does not move.
    pub fn append_encoded(&mut self, items: &[PreEncoded]) -> io::Result<Vec<Receipt>> {
        self.rotate_if_due(Utc::now())?;
        let before = (self.len, self.head.clone());
        let written = self.write_encoded(items)?;
        self.sync_or_roll_back(before)?;
        Ok(written.receipts)
    }

    /// Syncs what was written since `before` (per the fsync mode); on failure cuts it off again.
    fn sync_or_roll_back(&mut self, before: (u64, ChainHead)) -> io::Result<()> {
        if self.options.fsync == FsyncMode::Always {
            if let Err(e) = self.file.sync_data() {
                self.rollback(before.0, before.1);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Like [`JsonlStore::append_encoded`] without the sync: the records are written (page cache)
    /// and the head moves, but they are durable only once [`Written::file`] is synced through
    /// [`Written::end`]. The pipelined writer syncs on another thread while this one writes on.
    /// Never rotates: callers rotate first ([`JsonlStore::rotate_if_due`]) when nothing is pending.
    pub fn write_encoded(&mut self, items: &[PreEncoded]) -> io::Result<Written> {
        self.ready()?;
        let now = Utc::now();
        let timestamp = now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let mut buffer = Vec::with_capacity(items.len() * 1024);
        let mut receipts = Vec::with_capacity(items.len());
        let mut head = self.head.clone();
        let recovery = std::mem::take(&mut self.recovery_due);
        for record in &recovery {
            head.seq += 1;
            head.hash = encode(record).seal(head.seq, &head.hash, &timestamp, &mut buffer);
        }
        for item in items {
            head.seq += 1;
            head.hash = item.seal(head.seq, &head.hash, &timestamp, &mut buffer);
            receipts.push(Receipt {
                seq: head.seq,
                hash: head.hash.clone(),
            });
        }
        let mut since_checkpoint = self.since_checkpoint + items.len() as u64;
        let every = self.options.checkpoint_every;
        if every > 0 && since_checkpoint >= every {
            if let Some(checkpoint) = self.checkpoint_record(&head, &timestamp) {
                head.seq += 1;
                head.hash = encode(&checkpoint).seal(head.seq, &head.hash, &timestamp, &mut buffer);
                since_checkpoint = 0;
            }
        }
        if let Err(e) = self.write_all(&buffer) {
            self.restore_recovery(recovery);
            return Err(e);
        }
        self.head = head;
        self.since_checkpoint = since_checkpoint;
        Ok(Written {
            end: self.len,
            head: self.head.clone(),
            receipts,
            file: std::sync::Arc::clone(&self.sync_handle),
        })
    }

    /// Whether the active file is due to rotate at `now`: too large, or from an earlier UTC day.
    pub fn rotation_due(&self, now: DateTime<Utc>) -> bool {
        self.len > 0
            && ((self.options.segment_max_bytes > 0 && self.len >= self.options.segment_max_bytes)
                || (self.options.rotate_daily && now.date_naive() != self.active_day))
    }

    /// Cuts the file back to `len` and the chain back to `head`: the durable point after a failed
    /// write or sync, so nothing unsynced stays behind to fork the chain. If the cut itself fails,
    /// the store refuses every write until a retry of the cut succeeds.
    pub fn rollback(&mut self, len: u64, head: ChainHead) {
        self.len = len;
        self.head = head;
        if let Err(e) = self.file.set_len(len) {
            tracing::error!(error = %e, "could not cut the audit file back; refusing writes until it can");
            self.cut_pending = true;
        }
    }

    /// Before any write: the file must be the one the path names, cut back to the durable point,
    /// and reopened after a rotation whose reopen failed.
    fn ready(&mut self) -> io::Result<()> {
        if self.reopen_pending {
            self.file = open_active(&self.path)?;
            self.sync_handle = std::sync::Arc::new(self.file.try_clone()?);
            self.reopen_pending = false;
            sync_dir(&self.path)?;
        }
        if self.cut_pending {
            self.file.set_len(self.len)?;
            self.cut_pending = false;
        }
        self.check_identity()?;
        if let Some(record) = cut_foreign_tail(&mut self.file, self.len)? {
            self.foreign_tail_cut(record);
        }
        Ok(())
    }

    /// Puts back recovery records a failed write did not get onto the trail (before any new one).
    fn restore_recovery(&mut self, mut recovery: Vec<Record>) {
        recovery.append(&mut self.recovery_due);
        self.recovery_due = recovery;
    }

    /// Counts a cut foreign tail and keeps its `recovery` record for the next write.
    fn foreign_tail_cut(&mut self, record: Record) {
        self.foreign_tails.note(&record);
        self.recovery_due.push(record);
    }

    /// The foreign tails cut since the store opened.
    pub fn foreign_tails(&self) -> &ForeignTails {
        &self.foreign_tails
    }

    /// The active file's length (everything written, synced or not).
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends whole records (encoding them here).
    pub fn append_batch(&mut self, records: &[Record]) -> io::Result<Vec<Receipt>> {
        let items: Vec<PreEncoded> = records.iter().map(encode).collect();
        self.append_encoded(&items)
    }

    /// Signs a checkpoint over the head now, if a key is configured and anything was written since
    /// the last one (on a timer and at graceful shutdown).
    pub fn checkpoint_now(&mut self) -> io::Result<Option<Receipt>> {
        if self.options.signer.is_none() || self.since_checkpoint == 0 {
            return Ok(None);
        }
        self.ready()?;
        let timestamp = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let mut buffer = Vec::with_capacity(1024);
        let mut head = self.head.clone();
        let recovery = std::mem::take(&mut self.recovery_due);
        for record in &recovery {
            head.seq += 1;
            head.hash = encode(record).seal(head.seq, &head.hash, &timestamp, &mut buffer);
        }
        let Some(record) = self.checkpoint_record(&head, &timestamp) else {
            self.restore_recovery(recovery);
            return Ok(None);
        };
        let seq = head.seq + 1;
        let hash = encode(&record).seal(seq, &head.hash, &timestamp, &mut buffer);
        if let Err(e) = self.write_durably(&buffer) {
            self.restore_recovery(recovery);
            return Err(e);
        }
        self.head = ChainHead {
            seq,
            hash: hash.clone(),
        };
        self.since_checkpoint = 0;
        Ok(Some(Receipt { seq, hash }))
    }

    fn checkpoint_record(&self, covered: &ChainHead, signed_at: &str) -> Option<Record> {
        let signer = self.options.signer.as_ref()?;
        Some(Record::Checkpoint {
            covered_seq: covered.seq,
            covered_hash: covered.hash.clone(),
            signed_at: signed_at.to_owned(),
            public_key: signer.public_hex(),
            signature: signer.sign(covered.seq, &covered.hash, signed_at),
        })
    }

    /// Rotates the active file into a segment when it is due. Call only when every write is
    /// synced (the pipelined writer settles first): the old file is synced whole, so afterwards the
    /// durable point is the start of the new file. Returns whether it rotated.
    pub fn rotate_if_due(&mut self, now: DateTime<Utc>) -> io::Result<bool> {
        self.ready()?;
        if self.len == 0 {
            self.active_day = now.date_naive();
            self.active_first_seq = self.head.seq + 1;
            return Ok(false);
        }
        // A cut foreign tail is recorded in the file it was cut from, before that file rotates.
        if !self.rotation_due(now) || !self.recovery_due.is_empty() {
            return Ok(false);
        }
        self.file.sync_all()?;
        let segment = segments::segment_path(&self.path, self.active_first_seq);
        if segment.exists() {
            // Never overwrite history: this would be a second segment starting at the same seq.
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "cannot rotate: segment {} already exists",
                    segment.display()
                ),
            ));
        }
        std::fs::rename(&self.path, &segment)?;
        // From here the old file is a segment: the store's state moves on at once, and the new
        // active file is opened now or, if that fails, before the next write.
        tracing::info!(segment = %segment.display(), "rotated the audit log");
        self.len = 0;
        self.active_first_seq = self.head.seq + 1;
        self.active_day = now.date_naive();
        self.reopen_pending = true;
        self.ready()?;
        Ok(true)
    }

    /// Refuses to write when the path no longer names the file we hold open (removed or replaced
    /// under us): writing on would put records where no one can read them.
    fn check_identity(&self) -> io::Result<()> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let open = self.file.metadata()?;
            let named = std::fs::metadata(&self.path).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("audit file {} is gone: {e}", self.path.display()),
                )
            })?;
            if (open.dev(), open.ino()) != (named.dev(), named.ino()) {
                return Err(io::Error::other(format!(
                    "audit file {} was replaced under the server",
                    self.path.display()
                )));
            }
        }
        Ok(())
    }

    fn write_durably(&mut self, buffer: &[u8]) -> io::Result<()> {
        self.ready()?;
        let before = (self.len, self.head.clone());
        self.write_all(buffer)?;
        self.sync_or_roll_back(before)
    }

    /// Writes `buffer` at the end; on error cuts the partial bytes off again.
    fn write_all(&mut self, buffer: &[u8]) -> io::Result<()> {
        if let Err(e) = self.file.write_all(buffer) {
            // A partial line must not stay behind to break the chain.
            let (len, head) = (self.len, self.head.clone());
            self.rollback(len, head);
            return Err(e);
        }
        if let Some(record) = cut_glued_write(&mut self.file, self.len, buffer)? {
            self.foreign_tail_cut(record);
            return Err(io::Error::other(
                "another process appended to the audit file as this write was made; the write was undone",
            ));
        }
        self.len += buffer.len() as u64;
        Ok(())
    }
}

/// The active file; a new one is readable by the server's user only (a workflow step, running as
/// another user, cannot read the trail; auditors read it through the API or as its owner).
fn open_active(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => File::open(".")?.sync_all(),
    }
}
