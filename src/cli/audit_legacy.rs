//! `sustainbot audit verify --legacy FILE [PATH]` and `sustainbot audit import-legacy FILE`: the
//! original (Python) server's audit log, checked line by line the way it hashed them, and anchored
//! in our chain by one `genesis` record holding its line count and digest.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::json;
use sustainbot::audit::legacy::{self, Anchor, LegacyReport, LEGACY_FORMAT};
use sustainbot::audit::verify::{verify_log, Report};
use sustainbot::audit::{AuditError, AuditLog, Record};
use sustainbot::auth::Principal;
use sustainbot::config::AuditConfig;

use super::audit::verify_options;
use super::Env;

/// What the chain at PATH says about the legacy file, when a PATH was given.
enum Anchoring {
    /// No PATH: the file is checked on its own.
    NotAsked,
    /// The chain itself does not verify.
    ChainInvalid(Report),
    Anchored(Anchor),
    Missing,
}

pub fn verify(
    file: &Path,
    chain: Option<PathBuf>,
    public_key: Option<PathBuf>,
    as_json: bool,
) -> ExitCode {
    if public_key.is_some() && chain.is_none() {
        eprintln!(
            "sustainbot audit verify: --public-key checks our chain: give its PATH after --legacy FILE"
        );
        return ExitCode::from(2);
    }
    let options = match verify_options(public_key) {
        Ok(options) => options,
        Err(code) => return code,
    };
    let report = match legacy::verify_file(file) {
        Ok(report) => report,
        Err(e) => {
            eprintln!(
                "sustainbot audit verify: cannot read {}: {e}",
                file.display()
            );
            return ExitCode::from(2);
        }
    };
    let anchoring = match (&chain, report.is_valid()) {
        (Some(chain), true) => {
            let checked = verify_log(chain, &options).and_then(|chain_report| {
                if !chain_report.is_valid() {
                    return Ok(Anchoring::ChainInvalid(chain_report));
                }
                Ok(match legacy::find_anchor(chain, &report.sha256)? {
                    Some(anchor) => Anchoring::Anchored(anchor),
                    None => Anchoring::Missing,
                })
            });
            match checked {
                Ok(anchoring) => anchoring,
                Err(e) => {
                    eprintln!(
                        "sustainbot audit verify: cannot read {}: {e}",
                        chain.display()
                    );
                    return ExitCode::from(2);
                }
            }
        }
        _ => Anchoring::NotAsked,
    };
    let valid =
        report.is_valid() && matches!(anchoring, Anchoring::NotAsked | Anchoring::Anchored(_));
    if as_json {
        let (anchor, chain_report) = match &anchoring {
            Anchoring::Anchored(anchor) => (json!(anchor), json!(null)),
            Anchoring::ChainInvalid(chain_report) => (json!(null), json!(chain_report)),
            _ => (json!(null), json!(null)),
        };
        println!(
            "{}",
            json!({"legacy": file, "format": LEGACY_FORMAT, "valid": valid, "report": report,
                   "chain": chain, "anchor": anchor, "chain_report": chain_report})
        );
    } else {
        print_verdict(file, chain.as_deref(), &report, &anchoring);
    }
    if valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn print_verdict(file: &Path, chain: Option<&Path>, report: &LegacyReport, anchoring: &Anchoring) {
    if let Some(problem) = &report.problem {
        println!(
            "FAILED {}: line {}: {}",
            file.display(),
            problem.line,
            problem.message
        );
        println!("  {} lines verified before it", report.lines);
        return;
    }
    let chain = chain.unwrap_or(Path::new(""));
    match anchoring {
        Anchoring::ChainInvalid(chain_report) => {
            if let Some(problem) = &chain_report.problem {
                let at = problem.file.as_deref().unwrap_or(chain);
                println!(
                    "FAILED {}: line {}: {}",
                    at.display(),
                    problem.line,
                    problem.message
                );
            }
            println!(
                "  the audit log that should anchor {} does not verify",
                file.display()
            );
        }
        Anchoring::Missing => {
            println!(
                "FAILED {}: not anchored in {}: no genesis record there holds {} (the file changed after it was imported, or was never imported)",
                file.display(),
                chain.display(),
                report.sha256
            );
            println!(
                "  its {} lines verify on their own, but the original's hashes have no key: an edited line can be re-hashed",
                report.lines
            );
        }
        Anchoring::NotAsked | Anchoring::Anchored(_) => {
            println!(
                "OK {}: {} lines verify in the original's format ({} .. {}), {}",
                file.display(),
                report.lines,
                report.first_timestamp.as_deref().unwrap_or("-"),
                report.last_timestamp.as_deref().unwrap_or("-"),
                report.sha256
            );
            if let Anchoring::Anchored(anchor) = anchoring {
                println!(
                    "  anchored by the genesis record at seq {} of {} (imported {})",
                    anchor.seq,
                    chain.display(),
                    anchor.imported_at
                );
            }
        }
    }
}

pub fn import(env: &Env, file: &Path) -> ExitCode {
    let config = match env.section(|reader| AuditConfig::read(reader, false)) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("sustainbot audit import-legacy: {e}");
            return ExitCode::from(2);
        }
    };
    let report = match legacy::verify_file(file) {
        Ok(report) => report,
        Err(e) => {
            eprintln!(
                "sustainbot audit import-legacy: cannot read {}: {e}",
                file.display()
            );
            return ExitCode::from(2);
        }
    };
    if let Some(problem) = &report.problem {
        println!(
            "FAILED {}: line {}: {}",
            file.display(),
            problem.line,
            problem.message
        );
        println!("  nothing imported: a file that does not verify is not anchored");
        return ExitCode::FAILURE;
    }
    let (Some(first), Some(last), Some(last_hash)) = (
        report.first_timestamp.clone(),
        report.last_timestamp.clone(),
        report.last_integrity_hash.clone(),
    ) else {
        println!("FAILED {}: no lines to import", file.display());
        return ExitCode::FAILURE;
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sustainbot audit import-legacy: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let log = match sustainbot::audit_options(&config)
        .map_err(|e| e.to_string())
        .and_then(|options| {
            AuditLog::open_with(&config.log_path, options).map_err(|e| match e {
                AuditError::Locked(_) => format!("{e} (stop the server, then import)"),
                other => other.to_string(),
            })
        }) {
        Ok(log) => log,
        Err(e) => {
            eprintln!("sustainbot audit import-legacy: {e}");
            return ExitCode::from(2);
        }
    };
    // The log is locked now, so no other import can write the same anchor meanwhile.
    let path = config.log_path.display();
    let code = match legacy::find_anchor(&config.log_path, &report.sha256) {
        Err(e) => {
            eprintln!("sustainbot audit import-legacy: cannot read {path}: {e}");
            ExitCode::from(2)
        }
        Ok(Some(anchor)) => {
            println!(
                "{} is already anchored by the genesis record at seq {} of {path} (imported {}); nothing written",
                file.display(),
                anchor.seq,
                anchor.imported_at
            );
            ExitCode::SUCCESS
        }
        Ok(None) => {
            let record = Record::Genesis {
                source: file
                    .file_name()
                    .map(|name| name.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                legacy_format: LEGACY_FORMAT.to_owned(),
                lines: report.lines,
                sha256: report.sha256.clone(),
                first_timestamp: first.clone(),
                last_timestamp: last.clone(),
                last_integrity_hash: last_hash,
                imported_at: chrono::Utc::now()
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                principal: Principal::local_operator(),
            };
            match runtime.block_on(log.append(record)) {
                Ok(receipt) => {
                    println!(
                        "imported {}: {} lines ({first} .. {last}), {}; anchored by the genesis record at seq {} of {path}",
                        file.display(),
                        report.lines,
                        report.sha256,
                        receipt.seq
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("sustainbot audit import-legacy: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    };
    runtime.block_on(log.close());
    code
}
