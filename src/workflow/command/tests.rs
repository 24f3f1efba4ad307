use super::*;

const PATH: &str = "/usr/bin:/bin";

fn spec(argv: &[&str]) -> CommandSpec {
    CommandSpec {
        argv: argv.iter().map(|a| a.to_string()).collect(),
        env: vec![("PATH".to_owned(), PATH.to_owned())],
        base_dir: std::env::temp_dir(),
        timeout: Duration::from_secs(20),
        run_as: None,
    }
}

/// A megabyte of each stream, nothing to redact.
fn limits() -> OutputLimits {
    OutputLimits {
        max_bytes: 1 << 20,
        redact: Vec::new(),
    }
}

/// Alive = exists and is not a zombie (a zombie has already died; only its parent can reap it).
fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, None | Some('Z') | Some('X'))
}

/// Gives the kernel a moment to finish delivering SIGKILL; true if every pid is gone.
async fn all_dead(pids: &[i32]) -> bool {
    for _ in 0..60 {
        if pids.iter().all(|&pid| !alive(pid)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn read_pids(path: &Path) -> Vec<i32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect()
}

/// sh writes its own pid and those of two background `sleep 300`s (one ignoring SIGTERM) to
/// `$1`, prints "started", then waits.
const FAMILY: &str = r#"echo $$ > "$1"
sleep 300 &
echo $! >> "$1"
(trap '' TERM; exec sleep 300) &
echo $! >> "$1"
echo started
wait"#;

fn family(pid_file: &Path) -> CommandSpec {
    let mut spec = spec(&["/bin/sh", "-c", FAMILY, "sh"]);
    spec.argv.push(pid_file.display().to_string());
    spec
}

#[tokio::test]
async fn runs_argv_without_a_shell() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("pwned");
    let injection = format!("$(touch {})", marker.display());
    let spec = spec(&["/bin/echo", "; rm -rf /tmp/x", &injection, "`id`", "a|b"]);
    let outcome = run(&spec, &limits(), None).await.unwrap();
    assert!(outcome.success(), "{outcome:?}");
    assert_eq!(
        outcome.stdout,
        format!("; rm -rf /tmp/x {injection} `id` a|b\n")
    );
    assert!(!marker.exists());
}

#[tokio::test]
async fn captures_stdout_and_stderr_and_exit_code() {
    let spec = spec(&["/bin/sh", "-c", "echo out; echo err >&2; exit 0"]);
    let outcome = run(&spec, &limits(), None).await.unwrap();
    assert_eq!(outcome.stdout, "out\n");
    assert_eq!(outcome.stderr, "err\n");
    assert_eq!(outcome.exit_code, Some(0));
    assert_eq!(outcome.signal, None);
    assert!(!outcome.timed_out && !outcome.stdout_truncated && !outcome.stderr_truncated);
    assert!(outcome.success());
}

#[tokio::test]
async fn nonzero_exit_is_not_success() {
    let outcome = run(
        &spec(&["/bin/sh", "-c", "echo failing >&2; exit 3"]),
        &limits(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(outcome.exit_code, Some(3));
    assert_eq!(outcome.stderr, "failing\n");
    assert!(!outcome.timed_out);
    assert!(!outcome.success());

    let outcome = run(&spec(&["/bin/sh", "-c", "kill -9 $$"]), &limits(), None)
        .await
        .unwrap();
    assert_eq!(outcome.exit_code, None);
    assert_eq!(outcome.signal, Some(libc::SIGKILL));
    assert!(!outcome.success());
}

#[tokio::test]
async fn a_hung_step_is_killed_at_its_timeout_with_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pids");
    let mut spec = family(&pid_file);
    spec.timeout = Duration::from_secs(1);
    let outcome = run(&spec, &limits(), None).await.unwrap();
    assert!(outcome.timed_out, "{outcome:?}");
    assert!(!outcome.success());
    assert_eq!(outcome.exit_code, None);
    assert_eq!(outcome.stdout, "started\n");
    // SIGTERM, up to TERM_GRACE for the one ignoring it, then SIGKILL: never the full 300 s.
    assert!(outcome.duration < Duration::from_secs(8), "{outcome:?}");
    let pids = read_pids(&pid_file);
    assert_eq!(pids.len(), 3, "{pids:?}");
    assert!(all_dead(&pids).await, "still alive: {pids:?}");
}

#[tokio::test]
async fn cancellation_kills_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pids");
    let hung = family(&pid_file);
    let (tx, rx) = watch::channel(false);
    let watched = pid_file.clone();
    tokio::spawn(async move {
        while read_pids(&watched).len() < 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = tx.send(true);
        // Keep the sender alive until the step is gone.
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let started = Instant::now();
    let result = run(&hung, &limits(), Some(rx)).await;
    assert!(matches!(result, Err(CommandError::Cancelled)), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(8));
    let pids = read_pids(&pid_file);
    assert_eq!(pids.len(), 3, "{pids:?}");
    assert!(all_dead(&pids).await, "still alive: {pids:?}");

    // Already cancelled: nothing is started.
    let (tx, rx) = watch::channel(true);
    let result = run(&hung, &limits(), Some(rx)).await;
    assert!(matches!(result, Err(CommandError::Cancelled)), "{result:?}");
    drop(tx);
    // A dropped sender never cancels.
    let (tx, rx) = watch::channel(false);
    drop(tx);
    let outcome = run(&spec(&["/bin/echo", "hi"]), &limits(), Some(rx))
        .await
        .unwrap();
    assert!(outcome.success());
}

#[tokio::test]
async fn output_is_capped_but_the_child_is_not_blocked() {
    let spec = spec(&[
        "/bin/sh",
        "-c",
        "yes | head -c 5000000; yes e | head -c 5000000 >&2; echo done >&2",
    ]);
    let limits = OutputLimits {
        max_bytes: 1000,
        ..limits()
    };
    let outcome = run(&spec, &limits, None).await.unwrap();
    assert!(outcome.success(), "{:?}", outcome.exit_code);
    assert!(outcome.duration < Duration::from_secs(10));
    assert_eq!(outcome.stdout.len(), 1000);
    assert!(outcome.stdout.starts_with("y\ny\n"));
    assert_eq!(outcome.stderr.len(), 1000);
    assert!(outcome.stdout_truncated && outcome.stderr_truncated);
}

#[tokio::test]
async fn environment_is_only_what_is_given() {
    let mut spec = spec(&["env"]);
    spec.env
        .push(("GREETING".to_owned(), "hello world".to_owned()));
    let outcome = run(&spec, &limits(), None).await.unwrap();
    assert!(outcome.success(), "{outcome:?}");
    let mut lines: Vec<&str> = outcome.stdout.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["GREETING=hello world", "PATH=/usr/bin:/bin"]);

    spec.env.push(("BAD=NAME".to_owned(), "x".to_owned()));
    let result = run(&spec, &limits(), None).await;
    assert!(
        matches!(result, Err(CommandError::InvalidEnv { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn relative_programs_resolve_against_the_base_dir() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("scripts")).unwrap();
    let script = dir.path().join("scripts/hello.sh");
    std::fs::write(&script, "#!/bin/sh\necho \"hello $1 from $(pwd)\"\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let here = dir.path().canonicalize().unwrap();
    for program in ["scripts/hello.sh", "./scripts/hello.sh"] {
        let mut spec = spec(&[program, "world"]);
        spec.base_dir = dir.path().to_path_buf();
        // Another test thread forking while the script was open for writing can make exec
        // fail with ETXTBSY for a moment.
        let mut attempt = 0;
        let outcome = loop {
            match run(&spec, &limits(), None).await {
                Err(CommandError::Spawn { source, .. })
                    if source.raw_os_error() == Some(libc::ETXTBSY) && attempt < 20 =>
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => break other.unwrap(),
            }
        };
        assert!(outcome.success(), "{outcome:?}");
        assert_eq!(
            outcome.stdout,
            format!("hello world from {}\n", here.display())
        );
    }
}

#[tokio::test]
async fn a_missing_program_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let not_found = |result: Result<CommandOutcome, CommandError>| match result {
        Err(CommandError::NotFound { program }) => program,
        other => panic!("expected NotFound, got {other:?}"),
    };
    assert_eq!(
        not_found(run(&spec(&["no-such-program-sustainbot"]), &limits(), None).await),
        "no-such-program-sustainbot"
    );
    assert_eq!(
        not_found(run(&spec(&["/nonexistent/bin/tool"]), &limits(), None).await),
        "/nonexistent/bin/tool"
    );
    let mut relative = spec(&["./missing.sh"]);
    relative.base_dir = dir.path().to_path_buf();
    assert_eq!(
        not_found(run(&relative, &limits(), None).await),
        "./missing.sh"
    );
    // No PATH in the given environment: the server's own PATH is never searched.
    let mut no_path = spec(&["sh", "-c", "true"]);
    no_path.env.clear();
    assert_eq!(not_found(run(&no_path, &limits(), None).await), "sh");
    // Not executable, and empty.
    let plain = dir.path().join("plain.sh");
    std::fs::write(&plain, "#!/bin/sh\n").unwrap();
    let result = run(&spec(&[&plain.display().to_string()]), &limits(), None).await;
    assert!(
        matches!(result, Err(CommandError::NotExecutable { .. })),
        "{result:?}"
    );
    assert!(matches!(
        run(&spec(&[]), &limits(), None).await,
        Err(CommandError::Empty)
    ));
    assert!(matches!(
        run(&spec(&[""]), &limits(), None).await,
        Err(CommandError::Empty)
    ));
}

#[tokio::test]
async fn secrets_are_redacted_from_output() {
    let spec = spec(&[
        "/bin/sh",
        "-c",
        "printf 'token=%s pass=%s\\n' s3cr3t-token hunter2; echo \"err s3cr3t-token\" >&2",
    ]);
    let limits = OutputLimits {
        redact: vec![
            "s3cr3t-token".to_owned(),
            String::new(),
            "hunter2".to_owned(),
        ],
        ..limits()
    };
    let outcome = run(&spec, &limits, None).await.unwrap();
    assert_eq!(outcome.stdout, "token=[REDACTED] pass=[REDACTED]\n");
    assert_eq!(outcome.stderr, "err [REDACTED]\n");
    assert!(!format!("{limits:?}").contains("hunter2"));

    // A secret cut by the cap leaves no fragment, even when redaction shortens the text.
    let secret = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123";
    let mut spec = spec.clone();
    spec.argv = vec![
        "/usr/bin/printf".to_owned(),
        format!("xxxxxxxx{secret}{secret}"),
    ];
    let mut limits = OutputLimits {
        max_bytes: 20,
        redact: vec![secret.to_owned()],
    };
    let outcome = run(&spec, &limits, None).await.unwrap();
    assert_eq!(outcome.stdout, "xxxxxxxx[REDACTED]");
    assert!(outcome.stdout_truncated);
    limits.max_bytes = 10;
    let outcome = run(&spec, &limits, None).await.unwrap();
    assert_eq!(outcome.stdout, "xxxxxxxx[R");
}

#[tokio::test]
async fn a_finished_step_does_not_wait_for_its_background_children() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pids");
    let mut spec = spec(&[
        "/bin/sh",
        "-c",
        "sleep 300 & echo $! > \"$1\"; echo done",
        "sh",
    ]);
    spec.argv.push(pid_file.display().to_string());
    let outcome = run(&spec, &limits(), None).await.unwrap();
    assert!(outcome.success(), "{outcome:?}");
    assert_eq!(outcome.stdout, "done\n");
    // The sleep holds the pipes open: PIPE_GRACE, not 300 s.
    assert!(outcome.duration < Duration::from_secs(5), "{outcome:?}");
    let pids = read_pids(&pid_file);
    assert_eq!(pids.len(), 1, "{pids:?}");
    assert!(all_dead(&pids).await, "still alive: {pids:?}");
}

#[tokio::test]
async fn dropping_the_future_kills_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pids");
    let spec = family(&pid_file);
    {
        let limits = limits();
        let mut step = pin!(run(&spec, &limits, None));
        let started = Instant::now();
        while read_pids(&pid_file).len() < 3 {
            assert!(started.elapsed() < Duration::from_secs(10), "never started");
            tokio::select! {
                result = &mut step => panic!("finished early: {result:?}"),
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    } // dropped here
    let pids = read_pids(&pid_file);
    assert_eq!(pids.len(), 3, "{pids:?}");
    assert!(all_dead(&pids).await, "still alive: {pids:?}");
}
