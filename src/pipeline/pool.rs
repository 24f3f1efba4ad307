//! The worker pool: how many runs execute at once, per workflow, and how many may wait.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::sync::lock;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The worker pool: a global limit, a per-workflow limit, and a bounded number of waiting runs.
pub(super) struct Pool {
    workers: Arc<Semaphore>,
    /// The number of workers (`workers` hands out this many permits).
    capacity: usize,
    queue: usize,
    waiting: AtomicUsize,
    per_workflow: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// Held while a run executes.
pub(super) struct Slot {
    _worker: OwnedSemaphorePermit,
    _workflow: Option<OwnedSemaphorePermit>,
}

impl Pool {
    /// `workers` runs at once (at least one), and up to `queue` waiting.
    pub(super) fn new(workers: usize, queue: usize) -> Pool {
        let capacity = workers.clamp(1, Semaphore::MAX_PERMITS);
        Pool {
            workers: Arc::new(Semaphore::new(capacity)),
            capacity,
            queue,
            waiting: AtomicUsize::new(0),
            per_workflow: Mutex::new(HashMap::new()),
        }
    }

    /// How many runs may execute at once, and wait.
    pub(super) fn limits(&self) -> (usize, usize) {
        (self.capacity, self.queue)
    }

    /// Runs executing now (each holds a worker).
    pub(super) fn executing(&self) -> usize {
        self.capacity - self.workers.available_permits().min(self.capacity)
    }

    /// Runs waiting for a worker now (a refused one counts for a moment while it is turned away).
    pub(super) fn queued(&self) -> usize {
        self.waiting.load(Ordering::Relaxed).min(self.queue)
    }

    /// Waits for a worker (and a slot of the workflow's own limit); `None` when the queue is full.
    pub(super) async fn admit(
        self: &Arc<Self>,
        workflow: &str,
        limit: Option<u64>,
    ) -> Option<Slot> {
        self.reserve(workflow, limit)?.wait().await
    }

    /// Decides admission now, without waiting: a slot at once when there is free capacity, else a
    /// place in the queue; `None` when the queue is full. A caller can answer "queued" truthfully
    /// only with a ticket in hand.
    pub(super) fn reserve(self: &Arc<Self>, workflow: &str, limit: Option<u64>) -> Option<Ticket> {
        let per_workflow = limit.map(|limit| {
            let permits = usize::try_from(limit)
                .unwrap_or(usize::MAX)
                .min(Semaphore::MAX_PERMITS);
            let mut map = lock(&self.per_workflow);
            Arc::clone(
                map.entry(workflow.to_owned())
                    .or_insert_with(|| Arc::new(Semaphore::new(permits))),
            )
        });
        // Fast path: free capacity right now.
        if let Ok(worker) = Arc::clone(&self.workers).try_acquire_owned() {
            match &per_workflow {
                None => {
                    return Some(Ticket::Ready(Slot {
                        _worker: worker,
                        _workflow: None,
                    }))
                }
                Some(own) => {
                    if let Ok(own) = Arc::clone(own).try_acquire_owned() {
                        return Some(Ticket::Ready(Slot {
                            _worker: worker,
                            _workflow: Some(own),
                        }));
                    }
                }
            }
        }
        // Otherwise a place in the queue, if there is one. The place is given back however the
        // ticket ends (admitted, or the run was cancelled and the ticket dropped).
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.queue {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Ticket::Waiting {
            place: Place(Arc::clone(self)),
            own: per_workflow,
        })
    }
}

/// Admission decided: a slot already, or a place in the queue to wait in.
pub(super) enum Ticket {
    Ready(Slot),
    Waiting {
        place: Place,
        own: Option<Arc<Semaphore>>,
    },
}

/// A place in the queue, given back when dropped.
pub(super) struct Place(Arc<Pool>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Ticket {
    /// The slot: at once, or when a worker (and the workflow's own limit) frees one.
    pub(super) async fn wait(self) -> Option<Slot> {
        match self {
            Ticket::Ready(slot) => Some(slot),
            Ticket::Waiting { place, own } => {
                let own = match own {
                    Some(own) => own.acquire_owned().await.ok(),
                    None => None,
                };
                let worker = Arc::clone(&place.0.workers).acquire_owned().await.ok();
                drop(place);
                Some(Slot {
                    _worker: worker?,
                    _workflow: own,
                })
            }
        }
    }
}
