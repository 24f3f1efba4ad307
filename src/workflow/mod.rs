//! Workflow definitions: JSON or YAML files in `WORKFLOWS_DIR`, named by file stem.

mod cancel;
pub mod command;
mod context;
mod definition;
mod display;
mod fields;
pub mod http_step;
pub mod llm;
mod name;
mod openclaw;
mod params;
mod redact;
mod report;
mod runner;
mod secrets;
mod step;
mod template;
pub(crate) mod yaml;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::sync::{read, write};

pub use command::CommandStep;
pub use context::HttpClient;
pub use definition::{Approval, Workflow};
pub use http_step::HttpStep;
pub use llm::LlmStep;
pub use name::{InvalidName, WorkflowName};
pub use openclaw::OpenClawStep;
pub use params::{ParamSpec, ParamType};
pub use redact::{redact, OutputLimits, REDACTED};
pub use report::StepReport;
pub use runner::{RunFailure, RunObserver, RunOutput, Runner, Services};
pub use secrets::{EnvSecrets, SecretMap, SecretSource};
pub use step::{Step, StepKind};
pub use template::Arg;

/// The largest definition file read, in bytes (1 MiB, as a request body); a larger one is refused.
pub const MAX_DEFINITION_BYTES: u64 = 1024 * 1024;

/// The formats a definition file may be in, by extension: `.json`, `.yaml` or `.yml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Yaml,
}

impl Format {
    /// The format of a file, or `None` when the file is not a definition.
    fn of(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()? {
            "json" => Some(Format::Json),
            "yaml" | "yml" => Some(Format::Yaml),
            _ => None,
        }
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
        *write(&self.catalog) = Arc::new(catalog);
        *write(&self.problems) = problems;
        *write(&self.loaded) = fingerprint;
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
    // The definition files of each name, in path order so that problems come out the same way
    // every time.
    let mut files: BTreeMap<String, Vec<(PathBuf, Format)>> = BTreeMap::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(format) = Format::of(&path) else {
            continue;
        };
        let Some(name) = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else {
            continue;
        };
        files.entry(name).or_default().push((path, format));
    }
    for (name, mut paths) in files {
        paths.sort_by(|a, b| a.0.cmp(&b.0));
        let loaded = match paths.as_slice() {
            [(path, format)] => load_file(&name, path, *format),
            _ => Err(format!(
                "workflow '{name}' is defined by more than one file ({}); keep one",
                paths
                    .iter()
                    .map(|(path, _)| path.file_name().unwrap_or_default().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        };
        match loaded {
            Ok(workflow) => {
                catalog.insert(name, Arc::new(workflow));
            }
            Err(reason) => problems.push(LoadProblem {
                file: paths.remove(0).0,
                reason,
            }),
        }
    }
    (catalog, problems)
}

/// Reads and validates one definition file; on failure, every problem in one line.
fn load_file(name: &str, path: &Path, format: Format) -> Result<Workflow, String> {
    WorkflowName::parse(name).map_err(|e| e.to_string())?;
    let text = read_bounded(path)?;
    match format {
        Format::Json => Workflow::from_json(name, &text),
        Format::Yaml => Workflow::from_yaml(name, &text),
    }
    .map_err(|problems| problems.join("; "))
}

/// A file's text, refused past [`MAX_DEFINITION_BYTES`] (read at most one byte beyond, whatever
/// the file's size when it was listed).
fn read_bounded(path: &Path) -> Result<String, String> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_DEFINITION_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_DEFINITION_BYTES {
        return Err(format!(
            "the file is larger than {MAX_DEFINITION_BYTES} bytes (1 MiB), the limit for a definition"
        ));
    }
    String::from_utf8(bytes).map_err(|e| format!("not UTF-8 text: {e}"))
}

#[cfg(test)]
mod tests;
