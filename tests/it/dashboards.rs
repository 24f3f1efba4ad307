//! `dashboards/`: the Grafana dashboard and the Prometheus alert rules. Every expression in them parses
//! (promtool) and uses only metrics a live server exports; the rules pass `promtool check rules` and
//! their unit tests; each alert has a summary and a runbook section in `docs/operations.md`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::helpers::prometheus::{promtool, promtool_ok, sample_names};
use crate::helpers::promql::metric_names;
use crate::helpers::{demo_invalid_request, governance_request, Settings, TestApp};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn dashboard() -> Value {
    let path = repo("dashboards/governance-observability.json");
    let text = std::fs::read_to_string(&path).expect("read the dashboard");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// The alerting rules of `dashboards/alerts.yml`.
fn alert_rules() -> Vec<Value> {
    let text = std::fs::read_to_string(repo("dashboards/alerts.yml")).expect("read alerts.yml");
    let rules = sustainbot::workflow::yaml::to_json(&text).expect("alerts.yml is YAML");
    rules["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|group| group["rules"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// Grafana's variables as Grafana fills them in: ranges, and `.*` for "All".
fn as_grafana_sends_it(expr: &str) -> String {
    let expr = expr
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
        .replace("$drag_mode", ".*")
        .replace("$workflow", ".*");
    assert!(
        !expr.contains('$'),
        "a variable the test does not know: {expr}"
    );
    expr
}

/// `(where, PromQL)` for every query of the dashboard: panel targets, annotations, and the metric
/// selector of each `label_values(...)` variable.
fn dashboard_expressions() -> Vec<(String, String)> {
    let dashboard = dashboard();
    let mut found = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("every target has an expr");
            found.push((
                format!("panel {:?}", panel["title"]),
                as_grafana_sends_it(expr),
            ));
        }
    }
    for annotation in dashboard["annotations"]["list"]
        .as_array()
        .expect("annotations")
    {
        if let Some(expr) = annotation["expr"].as_str() {
            found.push((
                format!("annotation {:?}", annotation["name"]),
                as_grafana_sends_it(expr),
            ));
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
    {
        if let Some(query) = variable["query"]["query"].as_str() {
            let selector = query
                .strip_prefix("label_values(")
                .and_then(|rest| rest.rsplit_once(','))
                .map(|(selector, _)| selector.trim())
                .expect("variables are label_values(selector, label)");
            found.push((
                format!("variable {:?}", variable["name"]),
                selector.to_owned(),
            ));
        }
    }
    assert!(found.len() > 20, "{found:?}");
    found
}

fn alert_expressions() -> Vec<(String, String)> {
    alert_rules()
        .iter()
        .map(|rule| {
            let name = rule["alert"].as_str().expect("alerting rules only");
            let expr = rule["expr"].as_str().expect("expr");
            (format!("alert {name}"), expr.to_owned())
        })
        .collect()
}

#[test]
fn the_dashboard_is_a_current_grafana_dashboard_with_a_prometheus_datasource_variable() {
    let dashboard = dashboard();
    assert!(
        dashboard["schemaVersion"].as_u64() >= Some(39),
        "Grafana 11 or later"
    );
    assert!(dashboard["uid"].is_string() && dashboard["title"].is_string());
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    let datasource = variables
        .iter()
        .find(|v| v["type"] == "datasource")
        .expect("a datasource variable");
    assert_eq!(datasource["query"], "prometheus");
    let name = datasource["name"].as_str().expect("its name");
    let reference = json!({"type": "prometheus", "uid": format!("${{{name}}}")});
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        assert!(
            ids.insert(panel["id"].as_u64()),
            "duplicate panel id: {panel}"
        );
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"], reference, "{}", panel["title"]);
        for target in panel["targets"].as_array().expect("targets") {
            assert_eq!(target["datasource"], reference, "{}", panel["title"]);
        }
    }
    let titles: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .filter_map(|p| p["title"].as_str().map(str::to_lowercase))
        .collect();
    for subject in [
        "drag mode",
        "validation failures",
        "prescriptive",
        "run outcomes",
        "run duration",
        "queue",
        "approvals",
        "audit appends",
        "batch size",
        "append latency",
        "audit sink",
        "authentication failures",
        "slack",
    ] {
        assert!(
            titles.iter().any(|t| t.contains(subject)),
            "no panel about {subject}: {titles:?}"
        );
    }
}

#[tokio::test]
async fn dashboard_and_alert_expressions_use_only_metrics_the_server_exports() {
    let app = TestApp::builder()
        .slack_signing_secret("slack-signing-secret-for-tests")
        .spawn()
        .await;
    // A bit of every kind of traffic, so that the labelled families have samples.
    app.execute(&governance_request("noop"), &[])
        .await
        .expect_ok(200);
    app.execute(&governance_request("with-steps"), &[]).await;
    app.post_json("/governance/validate", &demo_invalid_request(), None)
        .await
        .expect(400, "GOVERNANCE_ERROR");
    let draft = json!({"text": "You should use Docker", "drag_mode": "draft"});
    app.post_json("/governance/filter", &draft, None)
        .await
        .expect_ok(200);
    app.get("/workflows", None)
        .await
        .expect(401, "AUTH_REQUIRED");
    app.post_raw("/slack/events", b"{}".to_vec(), &[])
        .await
        .expect(401, "MISSING_SIGNATURE");
    let page = app.get("/metrics", None).await.text;
    let exported = sample_names(&page);

    let mut missing = Vec::new();
    for (place, expr) in dashboard_expressions()
        .into_iter()
        .chain(alert_expressions())
    {
        let names = metric_names(&expr);
        assert!(!names.is_empty(), "{place} selects no metric: {expr}");
        for name in names {
            if !exported.contains(&name) {
                missing.push(format!("{place}: {name}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not on the live /metrics page:\n{}\n\nexported: {exported:?}",
        missing.join("\n")
    );
}

#[test]
fn every_dashboard_and_alert_expression_parses_with_promtool() {
    let Some(promtool) = promtool() else { return };
    // promtool parses expressions offline as rules: each one becomes a recording rule.
    let expressions: Vec<(String, String)> = dashboard_expressions()
        .into_iter()
        .chain(alert_expressions())
        .collect();
    let rules: Vec<Value> = expressions
        .iter()
        .enumerate()
        .map(|(i, (_, expr))| json!({"record": format!("check:expression_{i}"), "expr": expr}))
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("expressions.yml");
    // JSON is YAML: no YAML writer needed.
    let groups = json!({"groups": [{"name": "dashboard", "rules": rules}]});
    std::fs::write(&file, groups.to_string()).expect("write rules");
    let output = promtool_ok(&promtool, [Path::new("check"), Path::new("rules"), &file]);
    assert!(
        output.contains(&format!("{} rules found", expressions.len())),
        "{output}"
    );
}

#[test]
fn alert_rules_pass_promtool_check_rules() {
    let Some(promtool) = promtool() else { return };
    let output = promtool_ok(
        &promtool,
        [
            Path::new("check"),
            Path::new("rules"),
            &repo("dashboards/alerts.yml"),
        ],
    );
    assert!(output.contains("SUCCESS: 6 rules found"), "{output}");
}

#[test]
fn alert_rules_fire_on_synthetic_series() {
    let Some(promtool) = promtool() else { return };
    let output = promtool_ok(
        &promtool,
        [
            Path::new("test"),
            Path::new("rules"),
            &repo("dashboards/alerts.test.yml"),
        ],
    );
    assert!(output.contains("SUCCESS"), "{output}");
}

#[test]
fn every_alert_has_a_summary_a_runbook_section_and_a_firing_test() {
    let operations =
        std::fs::read_to_string(repo("docs/operations.md")).expect("docs/operations.md");
    let anchors: BTreeSet<String> = operations
        .lines()
        .filter_map(|line| line.strip_prefix("### "))
        .map(|title| {
            title
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-')
                .collect::<String>()
                .replace(' ', "-")
        })
        .collect();
    let tests =
        std::fs::read_to_string(repo("dashboards/alerts.test.yml")).expect("alerts.test.yml");
    let tests = sustainbot::workflow::yaml::to_json(&tests).expect("alerts.test.yml is YAML");
    let firing: BTreeSet<&str> = tests["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .flat_map(|test| test["alert_rule_test"].as_array().into_iter().flatten())
        .filter(|check| {
            check["exp_alerts"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        })
        .filter_map(|check| check["alertname"].as_str())
        .collect();
    let rules = alert_rules();
    assert_eq!(rules.len(), 6);
    for rule in &rules {
        let name = rule["alert"].as_str().expect("name");
        let summary = rule["annotations"]["summary"].as_str().unwrap_or_default();
        assert!(!summary.is_empty(), "{name} has no summary");
        let runbook = rule["annotations"]["runbook"].as_str().unwrap_or_default();
        let anchor = runbook
            .strip_prefix("docs/operations.md#")
            .unwrap_or_else(|| {
                panic!("{name}: runbook {runbook:?} is not a docs/operations.md section")
            });
        assert!(
            anchors.contains(anchor),
            "{name}: no section #{anchor} in {anchors:?}"
        );
        assert!(
            firing.contains(name),
            "{name} is never shown firing in alerts.test.yml"
        );
    }
}
