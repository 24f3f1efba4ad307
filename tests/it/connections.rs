//! Connections cannot be held hostage, against the real binary: header, body and idle timeouts, the
//! connection cap, a slowloris flood under a lowered descriptor limit, and a workflow reload that
//! runs out of descriptors (issue 12, item 1).

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::helpers::{
    governance_request, json_lines as records, socket_address, trace, RawConnection, ServerProcess,
    Settings, Site,
};

/// Workflows beside `noop`: every one must stay loaded whatever the clients do.
const WORKFLOWS: [&str; 4] = ["alpha", "beta", "gamma", "delta"];

/// A site with `noop` and [`WORKFLOWS`] (each one `true` command step).
fn site_with_workflows() -> Site {
    let site = Site::new();
    for name in WORKFLOWS {
        site.workflow(
            name,
            &json!({"steps": [{"id": "check", "command": ["true"]}]}),
        );
    }
    site
}

/// The names `GET /workflows` listed.
fn names(list: &Value) -> Vec<String> {
    list["workflows"]
        .as_array()
        .unwrap_or_else(|| panic!("no workflows list: {list}"))
        .iter()
        .map(|n| n.as_str().unwrap_or_default().to_owned())
        .collect()
}

fn every_workflow() -> Vec<String> {
    let mut all: Vec<String> = WORKFLOWS.iter().map(|n| (*n).to_owned()).collect();
    all.push("noop".to_owned());
    all.sort();
    all
}

/// Runs `future` and fails the test, naming `what`, when it takes longer than `within`.
async fn within<T>(
    within: Duration,
    what: &str,
    future: impl std::future::Future<Output = T>,
) -> T {
    tokio::time::timeout(within, future)
        .await
        .unwrap_or_else(|_| panic!("{what} took over {within:?}"))
}

/// Opens a connection that sends half of a request header and holds.
async fn slowloris(server: &ServerProcess) -> RawConnection {
    let mut connection = RawConnection::open(&server.address).await;
    connection
        .send(b"GET /health HTTP/1.1\r\nHost: test\r\nX-Slow: ")
        .await;
    connection
}

#[tokio::test]
async fn a_connection_that_sends_nothing_or_half_a_header_is_closed_at_the_header_timeout() {
    let site = Site::new();
    let server = site.sustainbot().header_timeout(1).idle_timeout(30).start();
    let opened = std::time::Instant::now();
    let mut silent = RawConnection::open(&server.address).await;
    let mut partial = slowloris(&server).await;
    for (what, connection) in [("silent", &mut silent), ("half a header", &mut partial)] {
        connection
            .closed_within(Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("{what}: still open 5 s after a 1 s header timeout"));
        let took = opened.elapsed();
        assert!(
            took >= Duration::from_millis(900),
            "{what}: closed too early ({took:?})"
        );
    }
    // The server itself is unharmed.
    let mut fresh = RawConnection::open(&server.address).await;
    assert_eq!(
        fresh
            .get("/health", None, Duration::from_secs(5))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn a_kept_alive_connection_is_reused_within_the_idle_timeout_and_closed_after_it() {
    let site = Site::new();
    let server = site.sustainbot().header_timeout(30).idle_timeout(2).start();
    let mut connection = RawConnection::open(&server.address).await;
    let wait = Duration::from_secs(5);
    assert_eq!(connection.get("/health", None, wait).await.status, 200);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        connection.get("/health", None, wait).await.status,
        200,
        "reused while idle"
    );
    let took = connection
        .closed_within(Duration::from_secs(6))
        .await
        .expect("an idle connection still open 6 s after a 2 s idle timeout");
    assert!(
        took >= Duration::from_millis(1800),
        "closed too early ({took:?})"
    );
}

#[tokio::test]
async fn a_body_that_stops_or_trickles_is_answered_408_at_the_body_timeout_and_closed() {
    let site = Site::new();
    let server = site.sustainbot().body_timeout(2).start();
    let head = |length: usize| {
        format!(
            "POST /governance/validate HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
        )
    };

    // Half a body, then nothing.
    let mut stalled = RawConnection::open(&server.address).await;
    stalled.send(head(100).as_bytes()).await;
    stalled.send(b"{\"aim\": ").await;
    let answer = stalled
        .response(Duration::from_secs(6))
        .await
        .expect("an answer to a stalled body");
    assert_eq!(answer.status, 408, "{answer:?}");
    assert_eq!(answer.json()["code"], "REQUEST_TIMEOUT", "{answer:?}");
    assert!(
        stalled
            .closed_within(Duration::from_secs(2))
            .await
            .is_some(),
        "the connection stays open after a body timeout"
    );

    // A byte every 300 ms: never idle for long, yet the whole body is late.
    let mut trickle = RawConnection::open(&server.address).await;
    trickle.send(head(1000).as_bytes()).await;
    let started = std::time::Instant::now();
    let answer = loop {
        trickle.send(b" ").await;
        if let Some(answer) = trickle.response(Duration::from_millis(300)).await {
            break answer;
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "a trickled body was still being read 8 s after a 2 s body timeout"
        );
    };
    assert_eq!(answer.status, 408, "{answer:?}");
    assert!(started.elapsed() >= Duration::from_millis(1800));

    // An identified caller's late body is a refusal on the record, like any other.
    let token = server.jake();
    let mut governed = RawConnection::open(&server.address).await;
    governed
        .send(
            format!(
                "POST /workflows/governed/execute HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\nX-Trace-ID: late-body-1\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{{\"workflow_name\""
            )
            .as_bytes(),
        )
        .await;
    let answer = governed
        .response(Duration::from_secs(6))
        .await
        .expect("an answer to a late governed body");
    assert_eq!(answer.status, 408, "{answer:?}");
    let refusal = records(&site.audit())
        .into_iter()
        .find(|r| r["trace_id"] == "late-body-1")
        .expect("the refusal is on the record");
    assert_eq!(refusal["outcome"], "rejected", "{refusal}");
    assert_eq!(refusal["code"], "REQUEST_TIMEOUT", "{refusal}");
}

#[tokio::test]
async fn past_the_connection_cap_a_waiting_connection_makes_room_and_busy_ones_refuse_with_503() {
    let site = Site::new();
    site.workflow(
        "slow",
        &json!({"steps": [{"id": "wait", "command": ["sleep", "4"]}]}),
    );
    let server = site.sustainbot().max_connections(4).start();

    // Four connections hold every place, none with a request: the next one takes the place of
    // the one that waited longest.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(slowloris(&server).await);
    }
    let mut fresh = RawConnection::open(&server.address).await;
    let health = fresh.get("/health", None, Duration::from_secs(5)).await;
    assert_eq!(health.status, 200, "{health:?}");
    assert!(
        held[0]
            .closed_within(Duration::from_secs(2))
            .await
            .is_some(),
        "the oldest waiting connection made room"
    );
    drop(fresh);

    // Four requests in progress hold every place: a fifth connection is refused, at once and
    // with a reason.
    let runs: Vec<_> = (0..4)
        .map(|n| {
            let api = server.api.clone();
            tokio::spawn(async move {
                api.execute(&governance_request("slow"), &trace(&format!("busy-{n}")))
                    .await
                    .status
                    .as_u16()
            })
        })
        .collect();
    within(Duration::from_secs(10), "four runs starting", async {
        while records(&site.audit())
            .iter()
            .filter(|r| r["outcome"] == "started")
            .count()
            < 4
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let mut refused = RawConnection::open(&server.address).await;
    let answer = refused.get("/health", None, Duration::from_secs(3)).await;
    assert_eq!(answer.status, 503, "{answer:?}");
    assert_eq!(answer.json()["code"], "TOO_MANY_CONNECTIONS", "{answer:?}");
    assert!(answer.header("retry-after").is_some(), "{answer:?}");
    for run in runs {
        let status = within(Duration::from_secs(15), "a busy run", run).await;
        assert_eq!(status.expect("run task"), 200);
    }
    let mut after = RawConnection::open(&server.address).await;
    assert_eq!(
        after
            .get("/health", None, Duration::from_secs(5))
            .await
            .status,
        200
    );
}

/// The soft descriptor limit of this (test) process, raised to at least `wanted` when the hard
/// limit allows: a thousand client sockets need it.
fn raise_own_descriptor_limit(wanted: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: reads and sets this process's own limit through valid pointers.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < wanted {
            limit.rlim_cur = wanted.min(limit.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_flood_under_a_low_descriptor_limit_leaves_health_runs_and_workflows_working() {
    const CLIENTS: usize = 1000;
    let own = raise_own_descriptor_limit(4096);
    assert!(
        own >= 1200,
        "this test needs 1200 descriptors, the limit is {own}"
    );
    let site = site_with_workflows();
    let server = site.sustainbot().descriptor_limit(256).start();
    let target = socket_address(&server.address);

    // A thousand clients, each with half a header, holding on.
    let connects = (0..CLIENTS).map(|_| {
        let target = target.clone();
        async move {
            let mut stream =
                tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(target))
                    .await
                    .ok()?
                    .ok()?;
            stream
                .write_all(b"GET /health HTTP/1.1\r\nHost: test\r\nX-Slow: ")
                .await
                .ok()?;
            Some(stream)
        }
    });
    let held: Vec<TcpStream> = within(
        Duration::from_secs(30),
        "opening the slowloris connections",
        futures_util::future::join_all(connects),
    )
    .await
    .into_iter()
    .flatten()
    .collect();
    eprintln!("{} of {CLIENTS} slowloris connections opened", held.len());
    assert!(
        server.logged_count("lowered to what the descriptor limit") == 1,
        "the cap follows the descriptor limit\n{}",
        server.stderr()
    );

    let quick = Duration::from_secs(5);
    let health = within(
        quick,
        "GET /health under the flood",
        server.get("/health", None),
    )
    .await;
    assert_eq!(health.status.as_u16(), 200, "{}", health.text);
    let run = within(
        quick,
        "a governed run under the flood",
        server.execute(&governance_request("alpha"), &trace("flood-run-1")),
    )
    .await;
    assert_eq!(
        run.status.as_u16(),
        200,
        "{}\n{}",
        run.text,
        server.stderr()
    );

    // Reloads under descriptor pressure unload nothing.
    let token = server.jake();
    let reloaded = within(
        quick,
        "POST /workflows/reload",
        server.post_empty("/workflows/reload", &token),
    )
    .await;
    assert_eq!(names(&reloaded.expect_ok(200)), every_workflow());
    server.signal(libc::SIGHUP);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let listed = within(
        quick,
        "GET /workflows",
        server.get("/workflows", Some(&token)),
    )
    .await;
    assert_eq!(
        names(&listed.expect_ok(200)),
        every_workflow(),
        "{}",
        server.stderr()
    );
    let again = within(
        quick,
        "a second governed run",
        server.execute(&governance_request("beta"), &trace("flood-run-2")),
    )
    .await;
    assert_eq!(again.status.as_u16(), 200, "{}", again.text);
    drop(held);
}

/// Sets the soft descriptor limit of process `pid`; its former limits.
fn set_descriptor_limit(pid: libc::pid_t, soft: u64) -> libc::rlimit {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit on our own child, through valid pointers.
    unsafe {
        assert_eq!(
            libc::prlimit(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old),
            0
        );
        let new = libc::rlimit {
            rlim_cur: soft,
            rlim_max: old.rlim_max,
        };
        assert_eq!(
            libc::prlimit(pid, libc::RLIMIT_NOFILE, &new, std::ptr::null_mut()),
            0,
            "prlimit {}",
            std::io::Error::last_os_error()
        );
    }
    old
}

#[tokio::test]
async fn a_reload_that_runs_out_of_descriptors_keeps_every_workflow_and_says_so() {
    let site = site_with_workflows();
    let server = site.start();
    let token = server.jake();
    let wait = Duration::from_secs(5);
    // Opened before the descriptors run out: it needs none to be served.
    let mut kept = RawConnection::open(&server.address).await;
    let listed = kept.get("/workflows", Some(&token), wait).await;
    assert_eq!(names(&listed.json()), every_workflow());

    // Not one descriptor more: every open(), accept() and socket() fails with EMFILE.
    let reloads = server.logged_count("workflows reloaded");
    let old = set_descriptor_limit(server.pid(), 3);
    server.signal(libc::SIGHUP);
    within(Duration::from_secs(10), "the reload on SIGHUP", async {
        while server.logged_count("workflows reloaded") == reloads {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let listed = kept.get("/workflows", Some(&token), wait).await;
    let during = names(&listed.json());
    let health = kept.get("/health", None, wait).await.json();
    set_descriptor_limit(server.pid(), old.rlim_cur);
    assert_eq!(during, every_workflow(), "{}", server.stderr());
    let workflows = &health["components"]["workflows"];
    assert_eq!(workflows["files_valid"], false, "{health}");
    let problem = workflows["invalid"][0]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(
        problem.contains("stay loaded") && problem.to_lowercase().contains("too many open files"),
        "{health}"
    );

    // With descriptors again, the next reload reads the directory and clears the problem.
    let reloaded = within(
        wait,
        "a reload",
        server.post_empty("/workflows/reload", &token),
    )
    .await;
    let reloaded = reloaded.expect_ok(200);
    assert_eq!(names(&reloaded), every_workflow());
    assert_eq!(reloaded["invalid"], json!([]), "{reloaded}");
}
