//! Append throughput of the PostgreSQL audit store: `writers` tasks append run records as fast as
//! they can to one instance (group commit: one transaction per batch, synchronous commit), then to
//! two instances on the same chain (each with its own pool and writer).
//!
//!     cargo run --release --example pg_audit_load -- DATABASE_URL [SECONDS_PER_CASE]
//!
//! The database must be empty or hold a chain this may extend. Prints one line per case:
//! `instances writers records_per_second`. `scripts/bench-pg-verify.sh` runs it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sustainbot::audit::{PgAuditStore, PgStoreOptions};

#[path = "common/load_record.rs"]
mod load_record;
use load_record::record;

// The server's allocator, so the figures are the server's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn open(url: &str, instance: &str) -> PgAuditStore {
    let pool = sustainbot::db::connect(url, Duration::from_secs(30))
        .await
        .expect("connect");
    sustainbot::db::migrate(&pool).await.expect("schema");
    PgAuditStore::open(pool, instance.to_owned(), PgStoreOptions::new())
        .await
        .expect("open the store")
}

/// `writers` tasks spread over `stores` append for `seconds`; records per second.
async fn load(stores: &[PgAuditStore], writers: u64, seconds: f64) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = stores[w as usize % stores.len()].clone();
        let (stop, count) = (Arc::clone(&stop), Arc::clone(&count));
        tasks.push(tokio::spawn(async move {
            let mut i = w << 32;
            while !stop.load(Ordering::Relaxed) {
                store.append(record(i)).await.expect("append");
                count.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("writer");
    }
    count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .expect("usage: pg_audit_load DATABASE_URL [SECONDS]");
    let seconds: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let one = [open(&url, "load-a").await];
    let two = [one[0].clone(), open(&url, "load-b").await];
    for (instances, stores) in [(1, &one[..]), (2, &two[..])] {
        for writers in [1, 16, 64] {
            let rate = load(stores, writers, seconds).await;
            println!("{instances} {writers} {rate:.0}");
        }
    }
}
