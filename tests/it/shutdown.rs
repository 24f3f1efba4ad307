//! Shutdown keeps its bound, against the real binary (issue 12, item 2): from SIGTERM the process
//! ends within the grace period plus a second, whatever its clients do (a run watched over SSE, a
//! request waiting on a run, a connection holding half a header), what is still going then is
//! cancelled on the record, and a second signal ends it at once, after recording.

use std::time::{Duration, Instant};

use serde_json::json;
use sustainbot::audit::verify::verify_path;

use crate::helpers::{
    governance_request, json_lines as records, trace, RawConnection, ServerProcess, Settings, Site,
};

/// The grace period of these tests.
const GRACE: u64 = 3;

/// What the bound allows beyond the grace period.
const SLACK: Duration = Duration::from_secs(1);

/// A site whose `slow` workflow sleeps `seconds`.
fn site_with_slow(seconds: u64) -> Site {
    let site = Site::new();
    site.workflow(
        "slow",
        &json!({"steps": [{"id": "wait", "command": ["sleep", seconds.to_string()]}]}),
    );
    site
}

/// The outcomes recorded for `trace_id`, in order.
fn outcomes(site: &Site, trace_id: &str) -> Vec<String> {
    records(&site.audit())
        .iter()
        .filter(|r| r["trace_id"] == trace_id)
        .filter_map(|r| r["outcome"].as_str().map(str::to_owned))
        .collect()
}

/// Waits (at most 20 s) until run `trace_id` has its `started` record.
async fn wait_started(site: &Site, trace_id: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !outcomes(site, trace_id).iter().any(|o| o == "started") {
        assert!(Instant::now() < deadline, "run {trace_id} never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends `signal` and waits for the exit, failing (and killing the server) past `bound`; how
/// long it took.
fn stop_within(server: &mut ServerProcess, signal: libc::c_int, bound: Duration) -> Duration {
    let sent = Instant::now();
    server.signal(signal);
    let status = server.exit_within(bound + Duration::from_secs(60));
    let took = sent.elapsed();
    let status = status.unwrap_or_else(|| {
        panic!(
            "still running {took:?} after the signal (bound {bound:?})\n{}",
            server.stderr()
        )
    });
    assert!(
        took <= bound,
        "the server took {took:?} to stop (bound {bound:?})\n{}",
        server.stderr()
    );
    assert!(status.success(), "{status}\n{}", server.stderr());
    eprintln!("stopped {took:?} after the signal (bound {bound:?})");
    took
}

#[tokio::test]
async fn sigterm_ends_an_async_run_watched_over_sse_within_the_grace_period_and_records_it_cancelled(
) {
    let site = site_with_slow(40);
    let mut server = site.sustainbot().grace_seconds(GRACE).start();
    let mut body = governance_request("slow");
    body["async"] = true.into();
    server
        .execute(&body, &trace("watched-1"))
        .await
        .expect_ok(202);
    wait_started(&site, "watched-1").await;

    // Watch it over SSE: the stream is read to its end in a task.
    let response = server
        .client
        .get(server.url("/runs/watched-1/events"))
        .bearer_auth(server.jake())
        .send()
        .await
        .expect("SSE request");
    assert_eq!(response.status().as_u16(), 200);
    let watcher = tokio::spawn(async move {
        let mut response = response;
        let mut text = String::new();
        while let Ok(Some(chunk)) = response.chunk().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        text
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    stop_within(
        &mut server,
        libc::SIGTERM,
        Duration::from_secs(GRACE) + SLACK,
    );
    let stream = tokio::time::timeout(Duration::from_secs(2), watcher)
        .await
        .expect("the SSE stream ended with the server")
        .expect("watcher task");
    assert!(stream.starts_with("event: run"), "{stream}");
    let last = stream
        .trim_end()
        .rsplit("\n\n")
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(
        last.starts_with("event: shutdown") || last.contains("\"cancelled\""),
        "the stream's last event says why it ends: {stream}"
    );
    assert!(stream.contains("event: shutdown"), "{stream}");
    assert_eq!(outcomes(&site, "watched-1"), ["started", "cancelled"]);
    assert!(verify_path(&site.audit()).unwrap().is_valid());
}

#[tokio::test]
async fn sigterm_answers_a_request_waiting_on_a_synchronous_run_within_the_grace_period() {
    let site = site_with_slow(30);
    let mut server = site.sustainbot().grace_seconds(GRACE).start();
    let api = server.api.clone();
    let waiting = tokio::spawn(async move {
        api.execute(&governance_request("slow"), &trace("sync-1"))
            .await
    });
    wait_started(&site, "sync-1").await;
    stop_within(
        &mut server,
        libc::SIGTERM,
        Duration::from_secs(GRACE) + SLACK,
    );
    let reply = tokio::time::timeout(Duration::from_secs(2), waiting)
        .await
        .expect("the request was answered")
        .expect("request task");
    assert_eq!(reply.status.as_u16(), 500, "{}", reply.text);
    assert_eq!(reply.json()["code"], "CANCELLED", "{}", reply.text);
    assert_eq!(outcomes(&site, "sync-1"), ["started", "cancelled"]);
    assert!(verify_path(&site.audit()).unwrap().is_valid());
}

#[tokio::test]
async fn idle_and_half_sent_connections_do_not_hold_up_shutdown() {
    let site = Site::new();
    // The default timeouts (30 s for a header, 60 s idle): shutdown must not wait for them.
    let mut server = site.sustainbot().grace_seconds(GRACE).start();
    let mut partial = RawConnection::open(&server.address).await;
    partial
        .send(b"GET /health HTTP/1.1\r\nHost: test\r\nX-Slow: ")
        .await;
    let mut idle = RawConnection::open(&server.address).await;
    assert_eq!(
        idle.get("/health", None, Duration::from_secs(5))
            .await
            .status,
        200
    );
    // Nothing is running: nothing to give the grace period to.
    stop_within(&mut server, libc::SIGTERM, SLACK);
    for connection in [&mut partial, &mut idle] {
        assert!(connection
            .closed_within(Duration::from_millis(500))
            .await
            .is_some());
    }
}

#[tokio::test]
async fn a_second_signal_ends_the_process_at_once_after_recording_the_cancellation() {
    let site = site_with_slow(60);
    let (private, public) = site.keygen();
    // A long grace period: only the second signal can end this quickly.
    let mut server = site
        .sustainbot()
        .grace_seconds(60)
        .signing_key(&private)
        .checkpoint_every(0)
        .checkpoint_seconds(3600)
        .start();
    let mut body = governance_request("slow");
    body["async"] = true.into();
    server
        .execute(&body, &trace("second-1"))
        .await
        .expect_ok(202);
    let mut partial = RawConnection::open(&server.address).await;
    partial
        .send(b"GET /health HTTP/1.1\r\nHost: test\r\nX-Slow: ")
        .await;
    wait_started(&site, "second-1").await;

    server.signal(libc::SIGTERM);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        server.exit_within(Duration::ZERO).is_none(),
        "the first signal leaves the run its grace period"
    );
    stop_within(&mut server, libc::SIGINT, SLACK);

    assert_eq!(outcomes(&site, "second-1"), ["started", "cancelled"]);
    // The audit log was closed cleanly: a final signed checkpoint covers every record.
    let all = records(&site.audit());
    let last = all.last().expect("records");
    assert_eq!(last["kind"], "checkpoint", "{last}");
    let key = sustainbot::audit::checkpoint::PublicKey::from_file(&public).unwrap();
    let options = sustainbot::audit::verify::VerifyOptions {
        public_key: Some(key),
        live: false,
    };
    let report = sustainbot::audit::verify::verify_log(&site.audit(), &options).unwrap();
    assert!(report.is_valid(), "{report:?}");
}
