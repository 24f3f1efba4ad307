//! Serving the API, and `--run NAME`: one workflow through the same gate, then exit.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::{json, Value};
use sustainbot::auth::{JwtKeys, Principal};
use sustainbot::config::{Config, Overrides};
use sustainbot::pipeline::{GateError, RequestBody, RunRequest, Submitted, Wait};
use sustainbot::trace::TraceId;
use sustainbot::{build_state, shutdown_signal, stop_requests, Application};

use super::{Env, ServeArgs};

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

pub fn serve_or_run(args: ServeArgs, env: &Env) -> ExitCode {
    sustainbot::keep_memory_private();
    let overrides = Overrides {
        host: args.host.clone(),
        port: args.port,
        dev: args.dev,
    };
    let config = match Config::from_lookup(|name| env.get(name), overrides) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("sustainbot: {e}");
            return ExitCode::from(2);
        }
    };
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sustainbot: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match args.run {
        Some(name) => runtime.block_on(run_once(config, &name, args.request)),
        None => runtime.block_on(serve(config)),
    };
    // Everything that matters is recorded by now: a blocking task still going (an audit query, a
    // reload) does not hold the exit up.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    code
}

async fn serve(config: Config) -> ExitCode {
    let dev_token = config.server.dev.then(|| {
        let auth = &config.auth;
        let keys = JwtKeys::new(auth.jwt_secret.expose().as_bytes(), auth.jwt_algorithm);
        (
            keys.mint("jake@example.org", "admin", Some(86_400)),
            auth.jwt_secret.clone(),
            auth.jwt_secret_generated,
        )
    });
    let app = match Application::build(config).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("sustainbot: {e}");
            return ExitCode::from(2);
        }
    };
    let address = app.local_addr();
    super::logging::reopen_on_hangup();
    tracing::info!(%address, "SustainBot listening");
    if let Some((Ok(token), secret, generated)) = dev_token {
        print_dev_banner(address, &token, generated.then_some(secret.expose()));
    }
    app.run(stop_requests()).await;
    ExitCode::SUCCESS
}

fn print_dev_banner(address: std::net::SocketAddr, token: &str, generated_secret: Option<&str>) {
    let host = if address.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        address.ip().to_string()
    };
    let url = format!("http://{host}:{}", address.port());
    println!("\nSustainBot DEV MODE: not for production.");
    println!("  listening on {url}");
    if let Some(secret) = generated_secret {
        println!("  throwaway JWT secret for this process (to mint more tokens with `sustainbot token`):");
        println!("    export JWT_SECRET={secret}");
    }
    println!("  demo token (actor jake@example.org, role admin, 24 h):");
    println!("    export SUSTAINBOT_TOKEN={token}");
    println!("  try:");
    println!("    curl -s {url}/workflows -H \"Authorization: Bearer $SUSTAINBOT_TOKEN\"");
    println!("    SUSTAINBOT_URL={url} scripts/demo-governance.sh\n");
}

async fn run_once(config: Config, name: &str, request: Option<PathBuf>) -> ExitCode {
    let state = match build_state(config).await {
        Ok(state) => state,
        Err(e) => {
            eprintln!("sustainbot: {e}");
            return ExitCode::from(2);
        }
    };
    let body = match request.map(|path| read_request(&path)).transpose() {
        Ok(body) => body,
        Err(e) => {
            eprintln!("sustainbot: {e}");
            return ExitCode::FAILURE;
        }
    };
    // With a request file: a governed run of NAME. Without: the ungoverned path, which the gate
    // refuses (on the record) unless governance is disabled.
    let body = match body {
        Some(mut body) => {
            if let Value::Object(map) = &mut body {
                map.insert("workflow_name".into(), Value::String(name.to_owned()));
            }
            RequestBody::Governed(Ok(Some(body)))
        }
        None => RequestBody::Ungoverned {
            workflow_name: name.to_owned(),
            parameters: Ok(None),
        },
    };
    let request = RunRequest {
        trace_id: TraceId::random(),
        principal: Principal::local_operator(),
        body,
        // Nobody could decide it from here: a workflow that requires approval is refused.
        approvable: false,
    };
    // SIGINT/SIGTERM drains the gate as the server's shutdown does: the run is cancelled (its
    // command steps killed) and recorded as `cancelled`.
    let submit = state.gate.submit(request, Wait::Outcome);
    tokio::pin!(submit);
    let submitted = tokio::select! {
        submitted = &mut submit => submitted,
        () = shutdown_signal() => {
            let gate = state.gate.clone();
            tokio::spawn(async move {
                gate.drain(std::time::Duration::ZERO, std::time::Duration::from_secs(10)).await
            });
            submit.await
        }
    };
    let (success, result) = match submitted {
        Ok(Submitted::Finished(report)) => (report.success, serde_json::to_value(&report)),
        Ok(_) => (
            false,
            Ok(json!({"success": false, "error": "the run did not finish"})),
        ),
        Err(GateError::GovernanceRequired) => (
            false,
            Ok(json!({
                "success": false,
                "code": "GOVERNANCE_REQUIRED",
                "error": "--run needs an AIM declaration: pass --request FILE with a governance request (actor, input, mission, drag_mode)",
            })),
        ),
        Err(e) => (
            false,
            Ok(json!({"success": false, "error": e.to_string(), "code": e.code()})),
        ),
    };
    state
        .gate
        .drain(
            std::time::Duration::ZERO,
            std::time::Duration::from_secs(10),
        )
        .await;
    // The completion notification (SLACK_WEBHOOK_URL), if any, goes out before the process ends.
    state
        .slack
        .notifier
        .drain(std::time::Duration::from_secs(10))
        .await;
    state.gate.audit().close().await;
    println!(
        "{}",
        result
            .and_then(|r| serde_json::to_string_pretty(&r))
            .unwrap_or_default()
    );
    if success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn read_request(path: &std::path::Path) -> Result<Value, String> {
    let mut text = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
    } else {
        text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    }
    serde_json::from_str(&text).map_err(|e| format!("{} is not valid JSON: {e}", path.display()))
}
