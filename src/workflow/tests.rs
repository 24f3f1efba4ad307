//! The registry: which files are definitions, reloads, and what a bad file does.

use super::*;
use crate::workflow::command::CommandStep;

#[test]
fn loads_json_files_by_stem_and_reports_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("noop.json"),
        r#"{"description": "nothing"}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("broken.json"), "{").unwrap();
    std::fs::write(dir.path().join("bad-steps.json"), r#"{"steps": 3}"#).unwrap();
    std::fs::write(dir.path().join("typo.json"), r#"{"drag_mode": ["draft"]}"#).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
    let registry = WorkflowRegistry::load(dir.path());
    assert_eq!(registry.names(), ["noop"]);
    assert_eq!(
        registry.get("noop").unwrap().description.as_deref(),
        Some("nothing")
    );
    let problems = registry.problems();
    assert_eq!(problems.len(), 3);
    let typo = problems
        .iter()
        .find(|p| p.file.ends_with("typo.json"))
        .expect("named by file");
    assert!(
        typo.reason.contains("drag_mode: unknown key"),
        "{}",
        typo.reason
    );
}

#[test]
fn a_reload_keeps_the_previous_valid_version_of_a_broken_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.json"), r#"{"description": "one"}"#).unwrap();
    let registry = WorkflowRegistry::load(dir.path());
    std::fs::write(dir.path().join("a.json"), r#"{"description": 5}"#).unwrap();
    std::fs::write(dir.path().join("b.json"), r#"{}"#).unwrap();
    registry.reload();
    assert_eq!(registry.names(), ["a", "b"]);
    assert_eq!(
        registry.get("a").unwrap().description.as_deref(),
        Some("one")
    );
    assert!(registry.problems()[0]
        .reason
        .contains("previous valid version"));
    std::fs::remove_file(dir.path().join("a.json")).unwrap();
    registry.reload();
    assert_eq!(registry.names(), ["b"], "a removed file is unloaded");
}

#[test]
fn a_missing_directory_loads_nothing() {
    let registry = WorkflowRegistry::load(Path::new("/nonexistent/sustainbot/workflows"));
    assert!(registry.is_empty());
    assert!(registry.problems().is_empty(), "{:?}", registry.problems());
}

#[test]
fn a_directory_that_cannot_be_read_keeps_every_loaded_workflow_and_says_so() {
    let site = tempfile::tempdir().unwrap();
    let dir = site.path().join("workflows");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("a.json"), "{}").unwrap();
    std::fs::write(dir.join("b.json"), "{}").unwrap();
    let registry = WorkflowRegistry::load(&dir);
    assert_eq!(registry.names(), ["a", "b"]);

    // Not a directory any more (an I/O error of another kind than EMFILE, for the same path),
    // then gone: neither says the workflows were removed.
    std::fs::rename(&dir, site.path().join("moved")).unwrap();
    std::fs::write(&dir, "not a directory").unwrap();
    assert!(registry.changed());
    registry.reload();
    assert_eq!(registry.names(), ["a", "b"], "nothing is unloaded");
    let problems = registry.problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].file, dir);
    assert!(
        problems[0].reason.contains("could not be read")
            && problems[0]
                .reason
                .contains("2 loaded workflows stay loaded"),
        "{}",
        problems[0].reason
    );
    std::fs::remove_file(&dir).unwrap();
    registry.reload();
    assert_eq!(registry.names(), ["a", "b"]);
    assert_eq!(registry.problems().len(), 1);

    // Readable again: it shows as changed, and the next reload reads it.
    std::fs::rename(site.path().join("moved"), &dir).unwrap();
    std::fs::remove_file(dir.join("b.json")).unwrap();
    assert!(registry.changed());
    registry.reload();
    assert_eq!(registry.names(), ["a"]);
    assert!(registry.problems().is_empty());
}

#[test]
fn loads_yaml_and_yml_files_by_stem() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), "description: from yaml\n").unwrap();
    std::fs::write(
        dir.path().join("b.yml"),
        "steps:\n  - command: [echo, yes]\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("c.YAML"), "description: not a definition\n").unwrap();
    let registry = WorkflowRegistry::load(dir.path());
    assert_eq!(registry.names(), ["a", "b"]);
    assert!(registry.problems().is_empty(), "{:?}", registry.problems());
    assert_eq!(
        registry.get("a").unwrap().description.as_deref(),
        Some("from yaml")
    );
    let StepKind::Command(CommandStep { argv, .. }) = &registry.get("b").unwrap().steps[0].kind
    else {
        panic!("command")
    };
    assert_eq!(argv[1], Arg::Literal("yes".into()));
}

#[test]
fn a_name_defined_by_two_files_is_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("deploy.json"), r#"{"description": "json"}"#).unwrap();
    std::fs::write(dir.path().join("deploy.yaml"), "description: yaml\n").unwrap();
    std::fs::write(dir.path().join("other.yml"), "{}\n").unwrap();
    let registry = WorkflowRegistry::load(dir.path());
    assert_eq!(registry.names(), ["other"], "no guess between the two");
    let problems = registry.problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].file.ends_with("deploy.json"));
    assert_eq!(
        problems[0].reason,
        "workflow 'deploy' is defined by more than one file (deploy.json, deploy.yaml); keep one"
    );
}

#[test]
fn a_second_file_for_a_loaded_name_keeps_the_loaded_version() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("deploy.json"), r#"{"description": "json"}"#).unwrap();
    let registry = WorkflowRegistry::load(dir.path());
    std::fs::write(dir.path().join("deploy.yml"), "description: yaml\n").unwrap();
    assert!(registry.changed(), "a new .yml file is a change");
    registry.reload();
    assert_eq!(
        registry.get("deploy").unwrap().description.as_deref(),
        Some("json")
    );
    let reason = &registry.problems()[0].reason;
    assert!(
        reason.contains("deploy.json, deploy.yml") && reason.contains("previous valid version"),
        "{reason}"
    );
}

#[test]
fn a_broken_yaml_edit_keeps_the_previous_version_and_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.yaml");
    std::fs::write(&file, "description: one\n").unwrap();
    let registry = WorkflowRegistry::load(dir.path());
    assert!(!registry.changed());
    std::fs::write(&file, "description: two\nsteps: [\n").unwrap();
    assert!(registry.changed(), "an edited .yaml file is a change");
    registry.reload();
    assert!(!registry.changed());
    assert_eq!(
        registry.get("a").unwrap().description.as_deref(),
        Some("one")
    );
    let problems = registry.problems();
    assert!(problems[0].file.ends_with("a.yaml"));
    assert!(
        problems[0].reason.starts_with("invalid YAML: ")
            && problems[0].reason.contains(" at line 3 column ")
            && problems[0]
                .reason
                .ends_with("(the previous valid version stays loaded)"),
        "{}",
        problems[0].reason
    );
}

#[test]
fn a_definition_file_over_1_mib_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let padding = " ".repeat(MAX_DEFINITION_BYTES as usize);
    std::fs::write(dir.path().join("big.json"), format!("{{}}{padding}")).unwrap();
    std::fs::write(dir.path().join("big2.yaml"), format!("{{}}{padding}")).unwrap();
    std::fs::write(
        dir.path().join("fits.json"),
        format!("{{}}{}", &padding[2..]),
    )
    .unwrap();
    let registry = WorkflowRegistry::load(dir.path());
    assert_eq!(registry.names(), ["fits"]);
    let problems = registry.problems();
    assert_eq!(problems.len(), 2);
    assert!(
        problems
            .iter()
            .all(|p| p.reason.contains("larger than 1048576 bytes (1 MiB)")),
        "{problems:?}"
    );
}

#[test]
fn the_shipped_workflows_all_load() {
    let registry = WorkflowRegistry::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows"));
    assert!(registry.problems().is_empty(), "{:?}", registry.problems());
    assert!(registry.get("disk-report").is_some(), "the YAML example");
    assert!(registry.get("deploy-to-staging").is_some());
}

#[test]
fn a_legacy_file_loads_beside_native_ones_and_is_no_problem() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("native.json"), r#"{"steps": []}"#).unwrap();
    std::fs::write(
        dir.path().join("example.json"),
        r#"{"name": "example-workflow", "steps": [{"type": "task", "name": "step1"}]}"#,
    )
    .unwrap();
    let registry = WorkflowRegistry::load(dir.path());
    assert_eq!(registry.names(), ["example", "native"]);
    assert!(registry.problems().is_empty(), "{:?}", registry.problems());
    let example = registry.get("example").unwrap();
    assert_eq!(example.steps[0].kind.name(), "openclaw");
}

#[test]
fn inspect_dir_tells_native_legacy_and_invalid_apart_file_by_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("native.yaml"), "description: n\n").unwrap();
    std::fs::write(dir.path().join("legacy.json"), r#"{"name": "legacy"}"#).unwrap();
    std::fs::write(dir.path().join("broken.json"), "{").unwrap();
    std::fs::write(dir.path().join("twice.json"), "{}").unwrap();
    std::fs::write(dir.path().join("twice.yml"), "{}\n").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
    let found = inspect_dir(dir.path()).unwrap();
    let seen: Vec<(String, &str)> = found
        .iter()
        .map(|f| {
            let file = f.file.file_name().unwrap().to_string_lossy().into_owned();
            let kind = match &f.verdict {
                Ok(Loaded::Native(_)) => "native",
                Ok(Loaded::Legacy { .. }) => "legacy",
                Err(_) => "invalid",
            };
            (file, kind)
        })
        .collect();
    let expected = [
        ("broken.json", "invalid"),
        ("legacy.json", "legacy"),
        ("native.yaml", "native"),
        ("twice.json", "invalid"),
        ("twice.yml", "invalid"),
    ];
    assert_eq!(
        seen,
        expected
            .map(|(file, kind)| (file.to_owned(), kind))
            .to_vec()
    );
    assert!(inspect_dir(&dir.path().join("missing")).is_err());
}
