//! Workflow definitions: JSON files in `WORKFLOWS_DIR`, named by file stem.

pub mod command;
mod definition;
mod runner;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

pub use definition::{Approval, Arg, ParamSpec, ParamType, Step, StepKind, Workflow};
pub use runner::{RunFailure, RunOutput, Runner, StepReport};

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
}

impl WorkflowRegistry {
    /// Loads every `*.json` file of `dir`. A missing directory loads nothing (as the original); a bad
    /// file is skipped and reported in [`WorkflowRegistry::problems`].
    pub fn load(dir: &Path) -> WorkflowRegistry {
        let registry = WorkflowRegistry {
            dir: dir.to_owned(),
            catalog: RwLock::new(Arc::new(BTreeMap::new())),
            problems: RwLock::new(Vec::new()),
        };
        registry.reload();
        registry
    }

    /// Reads the directory again and replaces the catalog.
    pub fn reload(&self) {
        let (catalog, problems) = read_dir(&self.dir);
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
    fn a_missing_directory_loads_nothing() {
        let registry = WorkflowRegistry::load(Path::new("/nonexistent/sustainbot/workflows"));
        assert!(registry.is_empty());
    }
}
