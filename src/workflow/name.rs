//! A workflow's name: checked once, where it enters, and carried checked.

use std::fmt;

/// Why a workflow name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid workflow name: {0}. Must contain only alphanumerics, hyphens, and underscores.")]
pub struct InvalidName(pub String);

/// A valid workflow name: `[A-Za-z0-9_-]+`, so it can never name a path outside the directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkflowName(String);

impl WorkflowName {
    pub fn parse(name: &str) -> Result<WorkflowName, InvalidName> {
        let ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(WorkflowName(name.to_owned()))
        } else {
            Err(InvalidName(name.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for WorkflowName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_allow_only_alphanumerics_hyphens_and_underscores() {
        assert!(WorkflowName::parse("deploy-to_staging2").is_ok());
        for bad in ["", "../etc/passwd", "a/b", "a b", "a.json", "é", "a\0"] {
            assert!(WorkflowName::parse(bad).is_err(), "{bad:?}");
        }
    }
}
