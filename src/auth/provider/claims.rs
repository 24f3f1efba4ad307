//! From a provider token's claims to a [`Principal`]: which claim is the person's email, which
//! their name, where their roles or groups are, and how groups become our roles.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::auth::{Principal, Role};

/// Where a claim is: a top-level claim named as written (`email`, `https://example.org/roles`),
/// else a dotted path into nested objects (`realm_access.roles`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath(String);

impl ClaimPath {
    pub fn new(path: impl Into<String>) -> ClaimPath {
        ClaimPath(path.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The claim's value, when present and not `null`.
    pub fn find<'a>(&self, claims: &'a Map<String, Value>) -> Option<&'a Value> {
        let found = match claims.get(&self.0) {
            Some(value) => Some(value),
            None => {
                let mut parts = self.0.split('.');
                let first = claims.get(parts.next()?)?;
                parts.try_fold(first, |value, part| value.get(part))
            }
        };
        found.filter(|v| !v.is_null())
    }
}

/// Provider groups (or roles, as the provider names them) -> our roles. Empty: every value of the
/// roles claim is a role as written. Not empty: only the groups it names give roles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupMapping(HashMap<String, Vec<Role>>);

impl GroupMapping {
    /// Reads `JWT_GROUP_ROLES`: `group=role` pairs separated by commas; a group named twice gives
    /// both roles (`sre=devops,platform-admins=admin,sre=oncall`).
    pub fn parse(text: &str) -> Result<GroupMapping, String> {
        let mut mapping = GroupMapping::default();
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((group, role)) = pair.split_once('=') else {
                return Err(format!("'{pair}' is not group=role"));
            };
            let (group, role) = (group.trim(), role.trim());
            if group.is_empty() || role.is_empty() {
                return Err(format!("'{pair}' is not group=role"));
            }
            mapping.add(group, Role::from(role));
        }
        Ok(mapping)
    }

    /// Gives members of `group` the role `role` too.
    pub fn add(&mut self, group: &str, role: Role) {
        let roles = self.0.entry(group.to_owned()).or_default();
        if !roles.contains(&role) {
            roles.push(role);
        }
    }

    /// Gives members of `group` exactly `roles`, in place of what the mapping gave them before.
    pub fn set(&mut self, group: &str, roles: &[Role]) {
        let mut unique: Vec<Role> = Vec::new();
        for role in roles {
            if !unique.contains(role) {
                unique.push(role.clone());
            }
        }
        self.0.insert(group.to_owned(), unique);
    }

    /// How many groups the mapping names.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Adds every group -> roles pair of `other` to this mapping (a group in both gets both lists).
    pub fn extend(&mut self, other: GroupMapping) {
        for (group, roles) in other.0 {
            for role in roles {
                self.add(&group, role);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Our roles for a caller in `groups`, in the order the token lists them, without repeats.
    pub fn roles_for(&self, groups: &[String]) -> Vec<Role> {
        let mut roles: Vec<Role> = Vec::new();
        for group in groups {
            let mapped: Vec<Role> = if self.is_empty() {
                vec![Role::from(group.as_str())]
            } else {
                self.0.get(group).cloned().unwrap_or_default()
            };
            for role in mapped {
                if !roles.contains(&role) {
                    roles.push(role);
                }
            }
        }
        roles
    }
}

impl From<HashMap<String, Vec<Role>>> for GroupMapping {
    fn from(map: HashMap<String, Vec<Role>>) -> GroupMapping {
        let mut mapping = GroupMapping::default();
        for (group, roles) in map {
            for role in roles {
                mapping.add(&group, role);
            }
        }
        mapping
    }
}

/// Which claims name the person and their roles (`JWT_EMAIL_CLAIM`, `JWT_NAME_CLAIM`,
/// `JWT_ROLES_CLAIM`, `JWT_GROUP_ROLES`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRules {
    /// The person's email: this claim, then `actor`.
    pub email: ClaimPath,
    pub name: ClaimPath,
    pub roles: ClaimPath,
    pub group_roles: GroupMapping,
    /// `JWT_REQUIRED_CLAIMS`: claims that must hold exactly this string (Google's `hd`, Entra's
    /// `tid`), or the token is refused.
    pub required: Vec<(ClaimPath, String)>,
}

impl Default for ClaimRules {
    fn default() -> ClaimRules {
        ClaimRules {
            email: ClaimPath::new("email"),
            name: ClaimPath::new("name"),
            roles: ClaimPath::new("roles"),
            group_roles: GroupMapping::default(),
            required: Vec::new(),
        }
    }
}

/// Reads `JWT_REQUIRED_CLAIMS`: `claim=value` pairs separated by commas (`hd=example.org`).
pub fn parse_required(text: &str) -> Result<Vec<(ClaimPath, String)>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((claim, value)) if !claim.trim().is_empty() && !value.trim().is_empty() => {
                Ok((ClaimPath::new(claim.trim()), value.trim().to_owned()))
            }
            _ => Err(format!("'{pair}' is not claim=value")),
        })
        .collect()
}

/// Why a verified provider token names no usable caller (told to the caller: the token is theirs).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PersonError {
    #[error("Token names no person: no '{0}' claim (nor 'actor')")]
    NoEmail(String),
    #[error("Token claim '{0}' must be a string (the caller's email)")]
    Email(String),
    #[error("Token claim 'email_verified' is false: the email is not the provider's to vouch for")]
    Unverified,
    #[error("Token claim '{0}' must be a string or a list of strings")]
    Roles(String),
    #[error("Token claim '{0}' is not '{1}'")]
    Required(String, String),
}

impl ClaimRules {
    /// The caller a verified token speaks for: `actor` is the email (identity binding and
    /// four-eyes compare it), `name` the display name, the roles from the roles claim through the
    /// group mapping (`user` when none), `user_id` the `sub`.
    pub fn principal(
        &self,
        claims: &Map<String, Value>,
        group_roles: &GroupMapping,
    ) -> Result<Principal, PersonError> {
        for (claim, expected) in &self.required {
            if claim.find(claims).and_then(Value::as_str) != Some(expected.as_str()) {
                return Err(PersonError::Required(
                    claim.as_str().to_owned(),
                    expected.clone(),
                ));
            }
        }
        let actor_claim = ClaimPath::new("actor");
        let (claim, value) = [&self.email, &actor_claim]
            .into_iter()
            .find_map(|path| path.find(claims).map(|value| (path, value)))
            .ok_or_else(|| PersonError::NoEmail(self.email.as_str().to_owned()))?;
        let email = value
            .as_str()
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .ok_or_else(|| PersonError::Email(claim.as_str().to_owned()))?;
        // An email the provider did not verify may be anyone's (a self-registered account).
        if claim.as_str() == "email" && is_false(claims.get("email_verified")) {
            return Err(PersonError::Unverified);
        }
        let name = self
            .name
            .find(claims)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned);
        let groups: Vec<String> = match self.roles.find(claims) {
            None => Vec::new(),
            Some(Value::String(one)) => vec![one.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or_else(|| PersonError::Roles(self.roles.as_str().to_owned()))?,
            Some(_) => return Err(PersonError::Roles(self.roles.as_str().to_owned())),
        };
        let mut roles = group_roles.roles_for(&groups);
        let role = if roles.is_empty() {
            Role::User
        } else {
            roles.remove(0)
        };
        let mut principal = Principal::new(
            Some(email.to_owned()),
            role,
            claims.get("sub").filter(|s| s.is_string()).cloned(),
        );
        principal.name = name;
        principal.roles = roles;
        Ok(principal)
    }
}

/// `false` or `"false"` (some providers write booleans as strings).
fn is_false(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => !b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("false"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn claims(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!("an object"),
        }
    }

    #[test]
    fn a_path_finds_top_level_names_with_dots_and_nested_claims() {
        let c = claims(json!({"realm_access": {"roles": ["a"]}, "https://x.org/roles": ["b"]}));
        assert_eq!(
            ClaimPath::new("realm_access.roles").find(&c),
            Some(&json!(["a"]))
        );
        assert_eq!(
            ClaimPath::new("https://x.org/roles").find(&c),
            Some(&json!(["b"]))
        );
        assert_eq!(ClaimPath::new("realm_access.missing").find(&c), None);
        assert_eq!(ClaimPath::new("nope").find(&c), None);
    }

    #[test]
    fn the_mapping_parses_pairs_and_refuses_anything_else() {
        let mapping = GroupMapping::parse("sre=devops, platform-admins=admin,sre=oncall").unwrap();
        assert_eq!(
            mapping.roles_for(&["sre".into(), "platform-admins".into(), "other".into()]),
            [
                Role::Named("devops".into()),
                Role::Named("oncall".into()),
                Role::Admin
            ]
        );
        assert!(GroupMapping::parse("sre").is_err());
        assert!(GroupMapping::parse("=admin").is_err());
        assert!(GroupMapping::parse("sre=").is_err());
        assert!(GroupMapping::parse("").unwrap().is_empty());
    }

    #[test]
    fn required_claims_must_hold_their_value() {
        let rules = ClaimRules {
            required: parse_required("hd=example.org, tenant.id=t1").unwrap(),
            ..ClaimRules::default()
        };
        let none = GroupMapping::default();
        let ok = json!({"email": "a@example.org", "hd": "example.org", "tenant": {"id": "t1"}});
        assert!(rules.principal(&claims(ok), &none).is_ok());
        let other = json!({"email": "a@gmail.com", "tenant": {"id": "t1"}});
        assert_eq!(
            rules.principal(&claims(other), &none),
            Err(PersonError::Required("hd".into(), "example.org".into()))
        );
        assert!(parse_required("hd").is_err());
        assert!(parse_required("hd=").is_err());
    }

    #[test]
    fn without_a_mapping_each_group_is_a_role_with_one_only_mapped_groups_count() {
        let groups = ["admin".to_owned(), "sre".to_owned()];
        assert_eq!(
            GroupMapping::default().roles_for(&groups),
            [Role::Admin, Role::Named("sre".into())]
        );
        let mapping = GroupMapping::parse("sre=devops").unwrap();
        assert_eq!(mapping.roles_for(&groups), [Role::Named("devops".into())]);
    }

    #[test]
    fn the_email_names_the_person_and_the_name_and_roles_come_along() {
        let rules = ClaimRules {
            roles: ClaimPath::new("realm_access.roles"),
            ..ClaimRules::default()
        };
        let c = claims(
            json!({"sub": "123", "email": "Ana@example.org", "name": "Ana",
                              "realm_access": {"roles": ["deployer", "admin"]}}),
        );
        let principal = rules.principal(&c, &GroupMapping::default()).unwrap();
        assert_eq!(principal.actor.as_deref(), Some("Ana@example.org"));
        assert_eq!(principal.name.as_deref(), Some("Ana"));
        assert_eq!(principal.role, Role::Named("deployer".into()));
        assert_eq!(principal.roles, [Role::Admin]);
        assert_eq!(principal.user_id, Some(json!("123")));
    }

    #[test]
    fn actor_is_the_fallback_and_without_either_the_token_is_refused() {
        let rules = ClaimRules::default();
        let none = GroupMapping::default();
        let by_actor = rules
            .principal(&claims(json!({"actor": "a@b.org"})), &none)
            .unwrap();
        assert_eq!(by_actor.actor.as_deref(), Some("a@b.org"));
        assert_eq!(by_actor.role, Role::User);
        assert_eq!(
            rules.principal(&claims(json!({"sub": "x"})), &none),
            Err(PersonError::NoEmail("email".into()))
        );
        assert_eq!(
            rules.principal(&claims(json!({"email": 7})), &none),
            Err(PersonError::Email("email".into()))
        );
        assert_eq!(
            rules.principal(
                &claims(json!({"email": "a@b.org", "email_verified": false})),
                &none
            ),
            Err(PersonError::Unverified)
        );
        assert_eq!(
            rules.principal(&claims(json!({"email": "a@b.org", "roles": [1]})), &none),
            Err(PersonError::Roles("roles".into()))
        );
    }
}
