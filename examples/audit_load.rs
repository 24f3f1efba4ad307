//! Audit append throughput: the server's group-commit writer against a naive writer that syncs once
//! per record, both with fdatasync and on the same file system, in one run.
//!
//!     cargo run --release --example audit_load -- DIR [SECONDS_PER_CASE]
//!
//! Prints one line per case: `mode writers records_per_second`. `scripts/bench-audit.sh` runs it.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sustainbot::audit::{AuditLog, FsyncMode};

#[path = "common/load_record.rs"]
mod load_record;
use load_record::record;

// The server's allocator, so the figures are the server's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `writers` tasks append as fast as they can for `seconds`; returns records per second.
async fn group_commit(dir: &Path, writers: u64, seconds: f64) -> f64 {
    let path = dir.join(format!("group-{writers}.jsonl"));
    let mode = if std::env::var_os("AUDIT_LOAD_NOSYNC").is_some() {
        FsyncMode::Never
    } else {
        FsyncMode::Always
    };
    let mut options = sustainbot::audit::AuditOptions::new(mode);
    options.pipelined = std::env::var_os("AUDIT_LOAD_UNPIPELINED").is_none();
    let log = AuditLog::open_with(&path, options).expect("open audit log");
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (log, stop, count) = (log.clone(), Arc::clone(&stop), Arc::clone(&count));
        tasks.push(tokio::spawn(async move {
            let mut i = w << 32;
            while !stop.load(Ordering::Relaxed) {
                log.append(record(i)).await.expect("append");
                count.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    let rate = count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    let report = sustainbot::audit::verify::verify_path(&path).expect("verify");
    assert!(
        report.is_valid(),
        "group-commit log does not verify: {report:?}"
    );
    rate
}

/// The naive design: every record is its own write plus fdatasync, under a lock (in a blocking
/// thread, so the runtime is not stalled), as a per-request sync would be.
async fn naive(dir: &Path, writers: u64, seconds: f64) -> f64 {
    let path: PathBuf = dir.join(format!("naive-{writers}.jsonl"));
    let file = Arc::new(Mutex::new(
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("open"),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (file, stop, count) = (Arc::clone(&file), Arc::clone(&stop), Arc::clone(&count));
        tasks.push(tokio::spawn(async move {
            let mut i = w << 32;
            while !stop.load(Ordering::Relaxed) {
                let mut line = serde_json::to_vec(&record(i)).expect("encode");
                line.push(b'\n');
                let file = Arc::clone(&file);
                tokio::task::spawn_blocking(move || {
                    let mut file = file
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    file.write_all(&line)
                        .and_then(|()| file.sync_data())
                        .expect("write");
                })
                .await
                .expect("join");
                count.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| ".".into()));
    let seconds: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    std::fs::create_dir_all(&dir).expect("create dir");
    for writers in [1, 16, 64] {
        let naive_rate = naive(&dir, writers, seconds).await;
        let group_rate = group_commit(&dir, writers, seconds).await;
        println!("naive {writers} {naive_rate:.0}");
        println!("group {writers} {group_rate:.0}");
    }
}
