//! The policy in force, loaded from `POLICY_PATH` at start-up and reloaded when the workflows
//! are (`POST /workflows/reload`, SIGHUP, the file changing). A file that does not load at
//! start-up stops the server; one that does not load on a reload leaves the policy in force as
//! it was, and says why.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use super::{parse, Policy, PolicyFile, MAX_POLICY_BYTES};
use crate::sync::{lock, read, write};

/// Told the policy in force whenever it changes (see [`PolicyStore::follow`]).
type Follower = Box<dyn Fn(&Policy) + Send + Sync>;

/// The file's size and modification time when it was last read, to notice edits cheaply.
type Stamp = Option<(u64, Option<SystemTime>)>;

/// The policy in force and where it comes from.
pub struct PolicyStore {
    /// `None`: no `POLICY_PATH`, the built-in rules for good.
    path: Option<PathBuf>,
    current: RwLock<Policy>,
    /// Why the last reload did not replace the policy (cleared by one that does).
    problem: RwLock<Option<String>>,
    loaded: RwLock<Stamp>,
    followers: Mutex<Vec<Follower>>,
}

/// What `/health` and the logs say about the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyStatus {
    pub path: PathBuf,
    pub rules: usize,
    pub sha256: String,
    /// Why the last reload kept the policy as it was.
    pub last_error: Option<String>,
}

impl PolicyStore {
    /// The built-in rules, with no file to reload.
    pub fn built_in() -> PolicyStore {
        PolicyStore {
            path: None,
            current: RwLock::new(Policy::BuiltIn),
            problem: RwLock::new(None),
            loaded: RwLock::new(None),
            followers: Mutex::default(),
        }
    }

    /// Loads the policy file at `path`; the error says what is wrong with it, line by line.
    pub fn load(path: &Path) -> Result<PolicyStore, String> {
        let stamp = stamp(path);
        let file = read_policy(path)?;
        Ok(PolicyStore {
            path: Some(path.to_owned()),
            current: RwLock::new(Policy::File(Arc::new(file))),
            problem: RwLock::new(None),
            loaded: RwLock::new(stamp),
            followers: Mutex::default(),
        })
    }

    /// The policy in force now.
    pub fn current(&self) -> Policy {
        read(&self.current).clone()
    }

    /// Calls `follower` with the policy in force now, and again after every reload that changes
    /// it, whichever path reloaded it (`POST /workflows/reload`, SIGHUP, the file watcher): what is
    /// derived from the policy (an identity provider's group mapping) never lags behind it. Called
    /// in the order the policies came into force, under the store's lock: a follower must not call
    /// back into the store.
    pub fn follow(&self, follower: impl Fn(&Policy) + Send + Sync + 'static) {
        let current = read(&self.current);
        follower(&current);
        lock(&self.followers).push(Box::new(follower));
    }

    /// The policy file's path, when there is one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Reads the file again. `Ok(true)` when the policy in force changed, `Ok(false)` when the
    /// file says the same (or there is no file); an error, which the status keeps, when the file
    /// no longer loads: the policy in force stays as it was.
    pub fn reload(&self) -> Result<bool, String> {
        let Some(path) = &self.path else {
            return Ok(false);
        };
        // Taken before reading: an edit made while reading shows as a change next time.
        *write(&self.loaded) = stamp(path);
        match read_policy(path) {
            Ok(file) => {
                *write(&self.problem) = None;
                let mut current = write(&self.current);
                let changed = current.file().is_none_or(|old| old.sha256 != file.sha256);
                if changed {
                    tracing::info!(
                        path = %path.display(),
                        rules = file.rules.len(),
                        sha256 = file.sha256,
                        "policy reloaded"
                    );
                    *current = Policy::File(Arc::new(file));
                    for follower in lock(&self.followers).iter() {
                        follower(&current);
                    }
                }
                Ok(changed)
            }
            Err(problem) => {
                let problem = format!("{problem} (the policy in force stays as it was)");
                tracing::warn!(reason = %problem, "policy file not reloaded");
                *write(&self.problem) = Some(problem.clone());
                Err(problem)
            }
        }
    }

    /// Whether the file changed since it was last read.
    pub fn changed(&self) -> bool {
        match &self.path {
            Some(path) => *read(&self.loaded) != stamp(path),
            None => false,
        }
    }

    /// What is in force, for `/health` and the logs; `None` without a policy file.
    pub fn status(&self) -> Option<PolicyStatus> {
        let path = self.path.clone()?;
        let current = self.current();
        let file = current.file()?;
        Some(PolicyStatus {
            path,
            rules: file.rules.len(),
            sha256: file.sha256.clone(),
            last_error: read(&self.problem).clone(),
        })
    }
}

fn stamp(path: &Path) -> Stamp {
    std::fs::metadata(path)
        .ok()
        .map(|meta| (meta.len(), meta.modified().ok()))
}

/// A policy file's text, at most [`MAX_POLICY_BYTES`]; the error names the file.
pub fn read_text(path: &Path) -> Result<String, String> {
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| format!("{shown}: {e}"))?;
    let mut text = String::new();
    file.take(MAX_POLICY_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("{shown}: {e}"))?;
    if text.len() as u64 > MAX_POLICY_BYTES {
        return Err(format!(
            "{shown}: larger than {MAX_POLICY_BYTES} bytes; a policy is a short file"
        ));
    }
    Ok(text)
}

/// Reads and parses the policy file; the error names the file and every problem in it.
fn read_policy(path: &Path) -> Result<PolicyFile, String> {
    let shown = path.display();
    let text = read_text(path)?;
    parse(&text).map_err(|problems| {
        let listed: Vec<String> = problems.0.iter().map(|p| format!("{shown}:{p}")).collect();
        listed.join("; ")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALLOW_RUN: &str = "rules:\n  - roles: [devops]\n    allow: [run]\n";

    #[test]
    fn a_reload_swaps_a_changed_file_and_keeps_the_policy_when_the_new_one_is_bad() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.yaml");
        std::fs::write(&path, ALLOW_RUN).unwrap();
        let store = PolicyStore::load(&path).unwrap();
        let first = store.status().unwrap();
        assert_eq!(first.rules, 1);
        assert_eq!(store.reload(), Ok(false), "the same file is no change");

        std::fs::write(
            &path,
            format!("{ALLOW_RUN}  - roles: [admin]\n    allow: [reload]\n"),
        )
        .unwrap();
        assert_eq!(store.reload(), Ok(true));
        assert_eq!(store.status().unwrap().rules, 2);

        std::fs::write(&path, "rules:\n  - roles: [admin]\n    allow: [relaod]\n").unwrap();
        let error = store.reload().unwrap_err();
        assert!(
            error.contains("policy.yaml:3:13: unknown action 'relaod'"),
            "{error}"
        );
        let kept = store.status().unwrap();
        assert_eq!(kept.rules, 2, "the policy in force stays");
        assert_eq!(kept.last_error.as_deref(), Some(error.as_str()));

        std::fs::remove_file(&path).unwrap();
        assert!(
            store.reload().is_err(),
            "a missing file keeps the policy too"
        );
        assert_eq!(store.status().unwrap().rules, 2);
    }

    #[test]
    fn a_start_up_with_a_bad_or_missing_file_fails_and_no_file_means_the_built_in_rules() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.yaml");
        assert!(PolicyStore::load(&path).is_err());
        std::fs::write(&path, "default: maybe\nrules: []\n").unwrap();
        let error = PolicyStore::load(&path).err().unwrap();
        assert!(
            error.contains(":1:10: default must be allow or deny"),
            "{error}"
        );
        let built_in = PolicyStore::built_in();
        assert!(matches!(built_in.current(), Policy::BuiltIn));
        assert!(built_in.status().is_none());
        assert!(!built_in.changed());
        assert_eq!(built_in.reload(), Ok(false));
    }

    #[test]
    fn followers_are_told_the_policy_now_and_after_each_change_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.yaml");
        std::fs::write(&path, ALLOW_RUN).unwrap();
        let store = PolicyStore::load(&path).unwrap();
        let told = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&told);
        store.follow(move |policy| {
            let groups = policy.file().map_or(0, |f| f.groups.len());
            lock(&seen).push(groups);
        });
        assert_eq!(*lock(&told), [0], "told at once");
        store.reload().unwrap();
        assert_eq!(*lock(&told), [0], "an unchanged file is not news");
        std::fs::write(&path, format!("{ALLOW_RUN}groups:\n  sre: [devops]\n")).unwrap();
        store.reload().unwrap();
        assert_eq!(*lock(&told), [0, 1]);
        std::fs::write(&path, "rules: [\n").unwrap();
        assert!(store.reload().is_err());
        assert_eq!(*lock(&told), [0, 1], "a bad file changes nothing");
    }

    #[test]
    fn an_edit_shows_as_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.yaml");
        std::fs::write(&path, ALLOW_RUN).unwrap();
        let store = PolicyStore::load(&path).unwrap();
        assert!(!store.changed());
        std::fs::write(&path, format!("{ALLOW_RUN}# a comment\n")).unwrap();
        assert!(store.changed());
        assert_eq!(
            store.reload(),
            Ok(true),
            "another file's bytes, another digest"
        );
        assert!(!store.changed());
    }
}
