//! Workflow definitions: JSON files in `WORKFLOWS_DIR`, named by file stem.

pub mod command;
mod definition;
pub mod http_step;
pub mod llm;
mod runner;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

pub use definition::{Approval, Arg, ParamSpec, ParamType, Step, StepKind, Workflow};
pub use runner::{RunFailure, RunOutput, Runner, Services, StepReport};

/// Why a workflow name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid workflow name: {0}. Must contain only alphanumerics, hyphens, and underscores.")]
pub struct InvalidName(pub String);

/// Checks a workflow name: `[A-Za-z0-9_-]+`, so it can never name a path outside the directory.
pub fn validate_name(name: &str) -> Result<(), InvalidName> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(InvalidName(name.to_owned()))
    }
}

/// A definition file that could not be loaded, and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LoadProblem {
    pub file: PathBuf,
    pub reason: String,
}

type Catalog = Arc<BTreeMap<String, Arc<Workflow>>>;

/// The loaded workflows. Reads are cheap (a shared snapshot); a reload swaps the snapshot whole.
pub struct WorkflowRegistry {
    dir: PathBuf,
    catalog: RwLock<Catalog>,
    problems: RwLock<Vec<LoadProblem>>,
    /// The directory's fingerprint when it was last read.
    loaded: RwLock<Vec<FileStamp>>,
}

type FileStamp = (PathBuf, u64, Option<std::time::SystemTime>);

impl WorkflowRegistry {
    /// Loads every `*.json` file of `dir`. A missing directory loads nothing (as the original); a bad
    /// file is skipped and reported in [`WorkflowRegistry::problems`].
    pub fn load(dir: &Path) -> WorkflowRegistry {
        let registry = WorkflowRegistry {
            dir: dir.to_owned(),
            catalog: RwLock::new(Arc::new(BTreeMap::new())),
            problems: RwLock::new(Vec::new()),
            loaded: RwLock::new(Vec::new()),
        };
        registry.reload();
        registry
    }

    /// Reads the directory again and replaces the catalog.
    ///
    /// A file that no longer validates does not replace a valid earlier version of the same
    /// workflow: the earlier version stays loaded and the problem is reported.
    pub fn reload(&self) {
        // Taken before reading: an edit made while reading shows as a change next time.
        let fingerprint = self.fingerprint();
        let (mut catalog, mut problems) = read_dir(&self.dir);
        let previous = self.snapshot();
        for problem in &mut problems {
            let name = problem
                .file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if let Some(old) = previous.get(&name) {
                if problem.file.exists() {
                    catalog.insert(name, Arc::clone(old));
                    problem
                        .reason
                        .push_str(" (the previous valid version stays loaded)");
                }
            }
        }
        for problem in &problems {
            tracing::warn!(file = %problem.file.display(), reason = %problem.reason, "workflow not loaded");
        }
        *self
            .catalog
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(catalog);
        *self
            .problems
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = problems;
        *self
            .loaded
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fingerprint;
    }

    fn snapshot(&self) -> Catalog {
        Arc::clone(
            &self
                .catalog
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    pub fn get(&self, name: &str) -> Option<Arc<Workflow>> {
        self.snapshot().get(name).cloned()
    }

    /// Names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.snapshot().keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.snapshot().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn problems(&self) -> Vec<LoadProblem> {
        self.problems
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the directory changed since the last (re)load.
    pub fn changed(&self) -> bool {
        let now = self.fingerprint();
        *self
            .loaded
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            != now
    }

    /// A cheap fingerprint of the directory (names, sizes, modification times of `*.json`), to
    /// notice edits without reading every file.
    pub fn fingerprint(&self) -> Vec<FileStamp> {
        let mut entries: Vec<_> = std::fs::read_dir(&self.dir)
            .map(|dir| {
                dir.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                    .filter_map(|e| {
                        let meta = e.metadata().ok()?;
                        Some((e.path(), meta.len(), meta.modified().ok()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        entries.sort();
        entries
    }
}

fn read_dir(dir: &Path) -> (BTreeMap<String, Arc<Workflow>>, Vec<LoadProblem>) {
    let mut catalog = BTreeMap::new();
    let mut problems = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "workflows directory not readable; no workflows loaded");
            return (catalog, problems);
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let Some(name) = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else {
            continue;
        };
        let loaded = validate_name(&name)
            .map_err(|e| e.to_string())
            .and_then(|()| std::fs::read_to_string(&path).map_err(|e| e.to_string()))
            .and_then(|text| {
                Workflow::from_json(&name, &text).map_err(|problems| problems.join("; "))
            });
        match loaded {
            Ok(workflow) => {
                catalog.insert(name, Arc::new(workflow));
            }
            Err(reason) => problems.push(LoadProblem { file: path, reason }),
        }
    }
    (catalog, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_allow_only_alphanumerics_hyphens_and_underscores() {
        assert!(validate_name("deploy-to_staging2").is_ok());
        for bad in ["", "../etc/passwd", "a/b", "a b", "a.json", "é", "a\0"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

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
    }
}
