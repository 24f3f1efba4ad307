//! Workflow definitions: JSON or YAML files in `WORKFLOWS_DIR`, named by file stem (legacy JSON
//! files of the original server too, see `legacy.rs`).

mod cancel;
pub mod command;
mod context;
mod definition;
mod display;
mod fields;
pub mod http_step;
mod legacy;
pub mod llm;
mod load;
mod name;
mod openclaw;
mod params;
mod redact;
mod report;
mod runner;
mod secrets;
mod step;
pub(crate) mod template;
pub mod yaml;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::sync::{read, write};

pub use command::CommandStep;
pub use context::HttpClient;
pub use definition::{Approval, Workflow};
pub use http_step::HttpStep;
pub use legacy::{native_definition, LEGACY_STEP_ID};
pub use llm::LlmStep;
use load::{defined_twice, definition_files, load_file, Format};
pub use load::{inspect_dir, DefinitionFile, Loaded, MAX_DEFINITION_BYTES};
pub use name::{InvalidName, WorkflowName};
pub use openclaw::{OpenClawBody, OpenClawStep, OPENCLAW_UNAVAILABLE};
pub use params::{ParamSpec, ParamType};
pub use redact::{redact, OutputLimits, REDACTED};
pub use report::StepReport;
pub use runner::{RunFailure, RunObserver, RunOutput, Runner, Services};
pub use secrets::{EnvSecrets, SecretMap, SecretSource};
pub use step::{Step, StepKind};
pub use template::Arg;

/// A definition file that could not be loaded, and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct LoadProblem {
    #[schema(value_type = String)]
    pub file: PathBuf,
    pub reason: String,
}

/// The workflows by name.
type Definitions = BTreeMap<String, Arc<Workflow>>;

type Catalog = Arc<Definitions>;

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
    /// Loads every `*.json`, `*.yaml` and `*.yml` file of `dir`. A missing directory loads nothing
    /// (as the original); a bad file, or a name defined by more than one file, is skipped and
    /// reported in [`WorkflowRegistry::problems`].
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
    /// workflow: the earlier version stays loaded and the problem is reported. When the directory
    /// itself cannot be read (out of descriptors, permissions, removed), nothing is learnt about
    /// its files: every loaded workflow stays loaded and the problem is reported.
    pub fn reload(&self) {
        // Taken before reading: an edit made while reading shows as a change next time.
        let fingerprint = self.fingerprint();
        let previous = self.snapshot();
        let (mut catalog, mut problems) = match read_dir(&self.dir) {
            Ok(read) => read,
            Err(e) => return self.keep_loaded(&e, &previous),
        };
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
        *write(&self.catalog) = Arc::new(catalog);
        *write(&self.problems) = problems;
        *write(&self.loaded) = fingerprint;
    }

    /// A reload that could not read the directory: the catalog stays as it is. The problem is
    /// reported, except for a directory that is missing while nothing is loaded (a server started
    /// without workflows, as the original allowed).
    fn keep_loaded(&self, error: &std::io::Error, loaded: &Catalog) {
        let missing = error.kind() == std::io::ErrorKind::NotFound;
        tracing::warn!(
            dir = %self.dir.display(),
            error = %error,
            kept = loaded.len(),
            "workflows directory not readable; the loaded workflows stay loaded"
        );
        *write(&self.problems) = if missing && loaded.is_empty() {
            Vec::new()
        } else {
            vec![LoadProblem {
                file: self.dir.clone(),
                reason: format!(
                    "the directory could not be read ({error}); the {} loaded workflows stay loaded",
                    loaded.len()
                ),
            }]
        };
        // No fingerprint: once the directory can be read again, it shows as changed.
        *write(&self.loaded) = Vec::new();
    }

    fn snapshot(&self) -> Catalog {
        Arc::clone(&read(&self.catalog))
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
        read(&self.problems).clone()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the directory changed since the last (re)load.
    pub fn changed(&self) -> bool {
        let now = self.fingerprint();
        *read(&self.loaded) != now
    }

    /// A cheap fingerprint of the directory (names, sizes, modification times of the definition
    /// files), to notice edits without reading every file.
    pub fn fingerprint(&self) -> Vec<FileStamp> {
        let mut entries: Vec<_> = std::fs::read_dir(&self.dir)
            .map(|dir| {
                dir.flatten()
                    .filter(|e| Format::of(&e.path()).is_some())
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

/// Every definition of `dir` that loads, and the problems of those that do not; an error when
/// the directory itself (or one of its entries) cannot be read.
fn read_dir(dir: &Path) -> std::io::Result<(Definitions, Vec<LoadProblem>)> {
    let mut catalog = BTreeMap::new();
    let mut problems = Vec::new();
    let files = definition_files(dir)?;
    // Each name's files come in path order, so that problems come out the same way every time.
    for (name, mut paths) in files {
        let loaded = match paths.as_slice() {
            [path] => load_file(&name, path),
            _ => Err(defined_twice(&name, &paths)),
        };
        match loaded {
            Ok(loaded) => {
                catalog.insert(name, Arc::new(loaded.into_workflow()));
            }
            Err(reason) => problems.push(LoadProblem {
                file: paths.remove(0),
                reason,
            }),
        }
    }
    Ok((catalog, problems))
}

#[cfg(test)]
mod tests;
