//! The runner with what it is given: its secret source, and (with a live run) its observer.

use serde_json::json;

use super::*;
use crate::workflow::secrets::SecretMap;

fn runner() -> Runner {
    let services = Services {
        http: HttpClient::default(),
        llm: LlmEndpoint::ollama("127.0.0.1", 9, "none"),
        phrases: Arc::new(PhraseList::default_forbidden()),
        openclaw_url: "http://127.0.0.1:9".to_owned(),
        server_url: "http://127.0.0.1:9".to_owned(),
    };
    Runner::new(std::env::temp_dir(), services)
}

fn workflow(definition: serde_json::Value) -> Workflow {
    Workflow::from_value("w", definition).expect("valid")
}

/// A command step that prints its secret and the secret's length.
fn prints_its_token() -> Workflow {
    workflow(json!({"steps": [{"id": "show", "secrets": ["DEPLOY_TOKEN"],
        "command": ["/bin/sh", "-c", "printf '%s|%s' \"$DEPLOY_TOKEN\" \"${#DEPLOY_TOKEN}\""]}]}))
}

#[tokio::test]
async fn a_command_step_reads_its_secrets_from_the_runners_source_and_redacts_them() {
    assert!(
        std::env::var("DEPLOY_TOKEN").is_err(),
        "not from the environment"
    );
    let runner = runner().with_secrets(Arc::new(
        SecretMap::new().with("DEPLOY_TOKEN", "unit-t0ken-value"),
    ));
    let output = runner
        .run(&prints_its_token(), &Map::new(), "t1", None, None)
        .await
        .expect("succeeds");
    assert_eq!(output.steps[0].stdout, "[REDACTED]|16");
}

#[tokio::test]
async fn a_secret_its_source_lacks_fails_the_step_before_it_starts() {
    let runner = runner().with_secrets(Arc::new(SecretMap::new()));
    let failure = runner
        .run(&prints_its_token(), &Map::new(), "t1", None, None)
        .await
        .expect_err("fails");
    assert_eq!(
        failure.steps[0].error.as_deref(),
        Some("secret DEPLOY_TOKEN is not set in the server's environment")
    );
    assert_eq!(failure.steps[0].exit_code, None, "nothing ran");
}
