//! Reading definition files: which files are definitions, what each one is (a native definition,
//! a legacy file of the original server, or invalid, with why), for the registry and for
//! `sustainbot workflows check` and `migrate` alike.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::definition::Workflow;
use super::fields::strict_json;
use super::legacy::{self, Shape};
use super::name::WorkflowName;

/// The largest definition file read, in bytes (1 MiB, as a request body); a larger one is refused.
pub const MAX_DEFINITION_BYTES: u64 = 1024 * 1024;

/// The formats a definition file may be in, by extension: `.json`, `.yaml` or `.yml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    Json,
    Yaml,
}

impl Format {
    /// The format of a file, or `None` when the file is not a definition.
    pub(super) fn of(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()? {
            "json" => Some(Format::Json),
            "yaml" | "yml" => Some(Format::Yaml),
            _ => None,
        }
    }
}

/// A definition file that loaded.
#[derive(Debug, Clone)]
pub enum Loaded {
    /// A definition in this server's format.
    Native(Workflow),
    /// A file in the original server's format, run as one `openclaw` step; `definition` is the
    /// native definition it stands for (what `workflows migrate` writes).
    Legacy {
        workflow: Workflow,
        definition: Value,
    },
}

impl Loaded {
    pub fn into_workflow(self) -> Workflow {
        match self {
            Loaded::Native(workflow) | Loaded::Legacy { workflow, .. } => workflow,
        }
    }
}

/// One definition file of a directory and what it is.
#[derive(Debug, Clone)]
pub struct DefinitionFile {
    pub file: PathBuf,
    /// The file stem: the workflow's name.
    pub name: String,
    /// The loaded definition, or why it is not loaded (every problem in one line).
    pub verdict: Result<Loaded, String>,
}

/// Every definition file of `dir` (`*.json`, `*.yaml`, `*.yml`), by name, each name's files in
/// path order. An entry that cannot be read fails the whole listing: a partial list would look
/// like removed files.
pub(super) fn definition_files(dir: &Path) -> std::io::Result<BTreeMap<String, Vec<PathBuf>>> {
    let mut files: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if Format::of(&path).is_none() {
            continue;
        }
        let Some(name) = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else {
            continue;
        };
        files.entry(name).or_default().push(path);
    }
    for paths in files.values_mut() {
        paths.sort();
    }
    Ok(files)
}

/// Reads every definition file of `dir`, in name then path order. A name defined by more than one
/// file makes each of them invalid.
pub fn inspect_dir(dir: &Path) -> std::io::Result<Vec<DefinitionFile>> {
    let mut found = Vec::new();
    for (name, paths) in definition_files(dir)? {
        match paths.as_slice() {
            [path] => found.push(DefinitionFile {
                verdict: load_file(&name, path),
                file: path.clone(),
                name,
            }),
            _ => {
                let reason = defined_twice(&name, &paths);
                for path in paths {
                    found.push(DefinitionFile {
                        file: path,
                        name: name.clone(),
                        verdict: Err(reason.clone()),
                    });
                }
            }
        }
    }
    Ok(found)
}

/// The problem of a name that more than one file defines.
pub(super) fn defined_twice(name: &str, paths: &[PathBuf]) -> String {
    format!(
        "workflow '{name}' is defined by more than one file ({}); keep one",
        paths
            .iter()
            .map(|path| path.file_name().unwrap_or_default().to_string_lossy())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Reads and validates one definition file (named `name`, its stem); on failure, every problem in
/// one line. A JSON file that is not a native definition loads as a legacy one when it is in the
/// original server's format (see `legacy.rs`); YAML files are always native (the original read
/// only `*.json`).
pub(super) fn load_file(name: &str, path: &Path) -> Result<Loaded, String> {
    WorkflowName::parse(name).map_err(|e| e.to_string())?;
    let text = read_bounded(path)?;
    match Format::of(path) {
        Some(Format::Yaml) => Workflow::from_yaml(name, &text)
            .map(Loaded::Native)
            .map_err(|problems| problems.join("; ")),
        Some(Format::Json) => {
            let value = strict_json(&text).map_err(|e| format!("invalid JSON: {e}"))?;
            match legacy::shape(&value) {
                Shape::Legacy => legacy::load(name, &value)
                    .map(|(workflow, definition)| Loaded::Legacy {
                        workflow,
                        definition,
                    })
                    .map_err(|problems| problems.join("; ")),
                Shape::Unmarked => Workflow::from_value(name, value)
                    .map(Loaded::Native)
                    .map_err(|problems| problems.join("; ")),
                Shape::Broken(why) => {
                    let native = Workflow::from_value(name, value)
                        .err()
                        .unwrap_or_default()
                        .join("; ");
                    Err(format!(
                        "not a legacy workflow file: {why}; not a native definition: {native}"
                    ))
                }
            }
        }
        None => Err("not a definition file (.json, .yaml or .yml)".to_owned()),
    }
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
