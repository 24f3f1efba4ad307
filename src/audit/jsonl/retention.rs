//! Retention: whole old segments removed, on the record.

use std::fs::File;
use std::io;
use std::path::PathBuf;

use chrono::Utc;

use super::super::lines::{last_line, line_facts, line_timestamp};
use super::super::record::{Receipt, Record};
use super::super::segments;
use super::{sync_dir, ChainHead, JsonlStore};

impl JsonlStore {
    /// Removes whole rotated segments whose newest record is older than the retention period. The
    /// `retention` record naming them is made durable before any file is deleted.
    pub fn apply_retention(&mut self) -> io::Result<Option<Receipt>> {
        let days = self.options.retention_days;
        if days == 0 {
            return Ok(None);
        }
        let cutoff = Utc::now() - chrono::Duration::days(i64::from(days));
        let mut expired: Vec<(PathBuf, ChainHead)> = Vec::new();
        for segment in segments::rotated(&self.path)? {
            let mut file = File::open(&segment.path)?;
            let len = file.metadata()?.len();
            if len == 0 {
                continue;
            }
            let last = last_line(&mut file, len)?;
            let newest = line_timestamp(&last);
            match (newest, line_facts(&last)) {
                (Some(newest), Some((head, _))) if newest < cutoff => {
                    expired.push((segment.path, head))
                }
                // Only a prefix of old segments goes: the chain that remains stays contiguous.
                _ => break,
            }
        }
        let (Some(first), Some(last)) = (expired.first(), expired.last()) else {
            return Ok(None);
        };
        let first_seq = segments::rotated(&self.path)?
            .into_iter()
            .find(|s| s.path == first.0)
            .and_then(|s| s.first_seq)
            .unwrap_or(1);
        let record = Record::Retention {
            removed_segments: expired
                .iter()
                .map(|(p, _)| {
                    p.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                })
                .collect(),
            removed_first_seq: first_seq,
            removed_through_seq: last.1.seq,
            removed_last_hash: last.1.hash.clone(),
            retention_days: days,
        };
        let receipt = self.append_batch(std::slice::from_ref(&record))?.pop();
        for (path, _) in &expired {
            std::fs::remove_file(path)?;
            tracing::info!(segment = %path.display(), "removed an audit segment past retention");
        }
        sync_dir(&self.path)?;
        Ok(receipt)
    }
}
