//! `sustainbot workflows ...`: what each definition file of a directory is (native, a legacy file
//! of the original server, or invalid), and the migration of legacy files to native definitions.
//! These read only `WORKFLOWS_DIR` (no `JWT_SECRET`).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::json;
use sustainbot::config::RunsConfig;
use sustainbot::workflow::{inspect_dir, DefinitionFile, Loaded};

use super::Env;

/// Exit code of a directory that cannot be read or a refused migration (1 is "invalid files").
const UNUSABLE: u8 = 2;

/// What a file is, as `check` prints it.
fn kind(file: &DefinitionFile) -> &'static str {
    match &file.verdict {
        Ok(Loaded::Native(_)) => "native",
        Ok(Loaded::Legacy { .. }) => "legacy",
        Err(_) => "invalid",
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// The detail `check` prints after the name.
fn detail(file: &DefinitionFile) -> String {
    let shown = file_name(&file.file);
    match &file.verdict {
        Ok(Loaded::Native(_)) => shown,
        Ok(Loaded::Legacy { .. }) => format!(
            "{shown}: the original server's format; runs as one openclaw step posting the file to \
             OPENCLAW_URL/api/workflows/execute"
        ),
        Err(reason) => format!("{shown}: {reason}"),
    }
}

fn read(dir: &Path, command: &str) -> Result<Vec<DefinitionFile>, ExitCode> {
    inspect_dir(dir).map_err(|e| {
        eprintln!(
            "sustainbot workflows {command}: cannot read {}: {e}",
            dir.display()
        );
        ExitCode::from(UNUSABLE)
    })
}

/// `workflows check [DIR]`: one line per definition file, `KIND  NAME  DETAIL`; exits 1 when any
/// is invalid.
pub fn check(env: &Env, dir: Option<PathBuf>, as_json: bool) -> ExitCode {
    let dir = match dir {
        Some(dir) => dir,
        None => match env.section(RunsConfig::read_workflows_dir) {
            Ok(dir) => dir,
            Err(e) => {
                eprintln!("sustainbot workflows check: {e}");
                return ExitCode::from(UNUSABLE);
            }
        },
    };
    let files = match read(&dir, "check") {
        Ok(files) => files,
        Err(code) => return code,
    };
    let count = |wanted: &str| files.iter().filter(|f| kind(f) == wanted).count();
    let invalid = count("invalid");
    if as_json {
        let listed: Vec<_> = files
            .iter()
            .map(|f| {
                json!({"file": f.file, "name": f.name, "kind": kind(f),
                       "reason": f.verdict.as_ref().err()})
            })
            .collect();
        let report = json!({"dir": dir, "files": listed, "native": count("native"),
                            "legacy": count("legacy"), "invalid": invalid});
        println!("{report:#}");
    } else {
        let width = files.iter().map(|f| f.name.len()).max().unwrap_or(0);
        for file in &files {
            println!("{:<8} {:<width$}  {}", kind(file), file.name, detail(file));
        }
        eprintln!(
            "{}: {} definition file(s): {} native, {} legacy, {invalid} invalid",
            dir.display(),
            files.len(),
            count("native"),
            count("legacy"),
        );
    }
    if invalid > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// One file `migrate` writes.
struct Output {
    name: String,
    target: PathBuf,
    bytes: Vec<u8>,
    /// `migrated` (a legacy file) or `copied` (a native one).
    action: &'static str,
}

/// `workflows migrate DIR --out OUT`: every legacy file becomes `OUT/NAME.json`, a native
/// definition with one `openclaw` step that posts the same body; native files are copied
/// unchanged (left alone when OUT is DIR), so OUT is a complete workflows directory. Nothing is
/// written when a file to write exists (unless `force`) or another file of OUT defines the same
/// name. Exits 1 when any file is invalid (the others are still written).
pub fn migrate(dir: &Path, out: &Path, force: bool) -> ExitCode {
    let files = match read(dir, "migrate") {
        Ok(files) => files,
        Err(code) => return code,
    };
    let in_place = same_dir(dir, out);
    let mut outputs = Vec::new();
    let mut invalid = 0;
    for file in &files {
        match &file.verdict {
            Ok(Loaded::Legacy { definition, .. }) => {
                let mut bytes = serde_json::to_vec_pretty(definition).unwrap_or_default();
                bytes.push(b'\n');
                outputs.push(Output {
                    name: file.name.clone(),
                    target: out.join(format!("{}.json", file.name)),
                    bytes,
                    action: "migrated",
                });
            }
            Ok(Loaded::Native(_)) if in_place => {
                println!("{:<9} {}  {}", "unchanged", file.name, file.file.display());
            }
            Ok(Loaded::Native(_)) => match std::fs::read(&file.file) {
                Ok(bytes) => outputs.push(Output {
                    name: file.name.clone(),
                    target: out.join(file_name(&file.file)),
                    bytes,
                    action: "copied",
                }),
                Err(e) => {
                    invalid += 1;
                    println!(
                        "{:<9} {}  {}: {e}",
                        "invalid",
                        file.name,
                        file.file.display()
                    );
                }
            },
            Err(reason) => {
                invalid += 1;
                println!(
                    "{:<9} {}  {}: {reason} (not written)",
                    "invalid",
                    file.name,
                    file.file.display()
                );
            }
        }
    }
    let conflicts: Vec<String> = outputs.iter().flat_map(|o| conflicts(o, force)).collect();
    if !conflicts.is_empty() {
        for conflict in &conflicts {
            eprintln!("sustainbot workflows migrate: {conflict}");
        }
        eprintln!("sustainbot workflows migrate: nothing written");
        return ExitCode::from(UNUSABLE);
    }
    if let Err(e) = std::fs::create_dir_all(out) {
        eprintln!(
            "sustainbot workflows migrate: cannot create {}: {e}",
            out.display()
        );
        return ExitCode::from(UNUSABLE);
    }
    for output in &outputs {
        if let Err(e) = write(output, force) {
            eprintln!(
                "sustainbot workflows migrate: cannot write {}: {e}",
                output.target.display()
            );
            return ExitCode::from(UNUSABLE);
        }
        println!(
            "{:<9} {}  -> {}",
            output.action,
            output.name,
            output.target.display()
        );
    }
    if invalid > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Why `output` may not be written: its target exists (without `force`), or another definition
/// file of its directory defines the same name (the directory would not load it).
fn conflicts(output: &Output, force: bool) -> Vec<String> {
    let mut found = Vec::new();
    if !force && output.target.exists() {
        found.push(format!(
            "{} exists (--force to overwrite it)",
            output.target.display()
        ));
    }
    let dir = output.target.parent().unwrap_or(Path::new("."));
    for extension in ["json", "yaml", "yml"] {
        let other = dir.join(format!("{}.{extension}", output.name));
        if other != output.target && other.exists() {
            found.push(format!(
                "{} also defines '{}'; remove one of them",
                other.display(),
                output.name
            ));
        }
    }
    found
}

/// Writes one file: a new file, or (with `force`) over an existing one.
fn write(output: &Output, force: bool) -> std::io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(&output.target)?;
    file.write_all(&output.bytes)?;
    file.sync_all()
}

/// Whether two paths are the same directory (both must exist to be).
fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
