//! Who a trace id belongs to: the principal of the first run accepted under it. Another principal
//! may not reuse the id of a run, finished or not (409 `TRACE_ID_IN_USE`), else its runs would hide
//! the earlier one in `/runs` and mix both runs' records under one id on the audit trail. The same
//! principal may reuse its own id once the earlier run has ended (as before).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde_json::Value;

use crate::audit::query::Filter;
use crate::audit::AuditStore;
use crate::sync::lock;

/// The most trace ids remembered (about 3 MB: a 64-bit hash of each id and the index of its
/// owner); beyond, the oldest are forgotten, and an id older than that may be reused by another
/// principal (the audit trail still tells the runs apart by their records' principals).
pub const MAX_TRACE_IDS: usize = 100_000;

/// Trace id -> canonical identity of its owner, oldest first for eviction.
#[derive(Default)]
pub struct TraceOwners {
    inner: Mutex<Owners>,
}

#[derive(Default)]
struct Owners {
    /// Hash of a trace id -> index of its owner in `names`.
    owner: HashMap<u64, u32>,
    order: VecDeque<u64>,
    /// The owners, each once.
    names: Vec<String>,
    index: HashMap<String, u32>,
    hasher: std::hash::RandomState,
}

impl Owners {
    fn key(&self, trace_id: &str) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(trace_id)
    }

    fn owner_index(&mut self, owner: &str) -> u32 {
        if let Some(&i) = self.index.get(owner) {
            return i;
        }
        if self.names.len() >= MAX_TRACE_IDS {
            // As many owners as ids: start over rather than grow.
            self.owner.clear();
            self.order.clear();
            self.names.clear();
            self.index.clear();
        }
        let i = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.names.push(owner.to_owned());
        self.index.insert(owner.to_owned(), i);
        i
    }

    fn owner_of(&self, trace_id: &str) -> Option<&str> {
        let i = *self.owner.get(&self.key(trace_id))?;
        self.names.get(i as usize).map(String::as_str)
    }
}

impl TraceOwners {
    /// Claims `trace_id` for `owner` (a canonical identity); `Err` with nothing changed when it
    /// belongs to someone else.
    pub fn claim(&self, trace_id: &str, owner: &str) -> Result<(), ()> {
        let mut owners = lock(&self.inner);
        match owners.owner_of(trace_id) {
            Some(existing) if existing != owner => Err(()),
            Some(_) => Ok(()),
            None => {
                owners.insert(trace_id, owner);
                Ok(())
            }
        }
    }

    /// Reads the owners of every run on the audit trail (its `started` records and approval
    /// requests); the first owner of an id wins, as when it was claimed. Blocking: call at start-up.
    pub fn load(&self, audit: &dyn AuditStore) -> std::io::Result<usize> {
        let mut owners = lock(&self.inner);
        let filter = Filter::default();
        audit.for_each(&filter, &mut |record: Value| {
            let (Some(trace_id), actor) = (record["trace_id"].as_str(), owner_of(&record)) else {
                return;
            };
            let Some(actor) = actor else { return };
            if owners.owner_of(trace_id).is_none() {
                owners.insert(trace_id, &crate::identity::canonical(actor));
            }
        })?;
        Ok(owners.owner.len())
    }
}

/// The principal that a record shows started (or asked approval for) a run under its trace id.
fn owner_of(record: &Value) -> Option<&str> {
    match (
        record["kind"].as_str(),
        record["outcome"].as_str(),
        record["decision"].as_str(),
    ) {
        (Some("run"), Some("started"), _) => {
            Some(record["principal"]["actor"].as_str().unwrap_or(""))
        }
        (Some("approval"), _, Some("requested")) => {
            Some(record["actor"]["actor"].as_str().unwrap_or(""))
        }
        _ => None,
    }
}

impl Owners {
    fn insert(&mut self, trace_id: &str, owner: &str) {
        let index = self.owner_index(owner);
        if self.order.len() >= MAX_TRACE_IDS {
            if let Some(oldest) = self.order.pop_front() {
                self.owner.remove(&oldest);
            }
        }
        let key = self.key(trace_id);
        self.order.push_back(key);
        self.owner.insert(key, index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_id_belongs_to_its_first_owner() {
        let owners = TraceOwners::default();
        assert!(owners.claim("t1", "bob@example.org").is_ok());
        assert!(owners.claim("t1", "bob@example.org").is_ok());
        assert!(owners.claim("t1", "eve@example.org").is_err());
        assert!(owners.claim("t2", "eve@example.org").is_ok());
    }
}
