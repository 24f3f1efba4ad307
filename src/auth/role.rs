//! Roles: the words the server itself gives meaning to, and whatever else a token or a workflow
//! names (compared as written).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A caller's role. The server's own words are variants; any other role a token carries is kept
/// as written (workflows may name it in their `roles` and `approval.approver_roles`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Role {
    /// Reloads workflows, sees and cancels every run, reads the audit trail.
    Admin,
    /// Reads the audit trail and sees every run.
    Auditor,
    /// A token without a role claim.
    User,
    /// The local operator of the command line (`--run`), never a token's.
    Cli,
    /// The server itself, for what it records on nobody's request.
    System,
    /// Any other role, as written.
    Named(String),
}

impl Role {
    pub fn as_str(&self) -> &str {
        match self {
            Role::Admin => "admin",
            Role::Auditor => "auditor",
            Role::User => "user",
            Role::Cli => "cli",
            Role::System => "system",
            Role::Named(name) => name,
        }
    }

    /// Whether this role is one of `names` (as written in a definition).
    pub fn is_any_of(&self, names: &[String]) -> bool {
        names.iter().any(|name| name == self.as_str())
    }
}

impl From<&str> for Role {
    fn from(name: &str) -> Role {
        match name {
            "admin" => Role::Admin,
            "auditor" => Role::Auditor,
            "user" => Role::User,
            "cli" => Role::Cli,
            "system" => Role::System,
            other => Role::Named(other.to_owned()),
        }
    }
}

impl From<String> for Role {
    fn from(name: String) -> Role {
        match Role::from(name.as_str()) {
            Role::Named(_) => Role::Named(name),
            known => known,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// A role is a plain string on the wire and on the audit record.
impl Serialize for Role {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Role, D::Error> {
        String::deserialize(deserializer).map(Role::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_reads_and_writes_as_the_same_string() {
        for name in [
            "admin", "auditor", "user", "cli", "system", "deployer", "Admin",
        ] {
            let role = Role::from(name);
            assert_eq!(role.as_str(), name);
            assert_eq!(serde_json::to_string(&role).unwrap(), format!("\"{name}\""));
            let back: Role = serde_json::from_str(&format!("\"{name}\"")).unwrap();
            assert_eq!(back, role);
        }
        assert_eq!(Role::from("Admin"), Role::Named("Admin".to_owned()));
    }
}
