//! Who a Slack user is: the accountable human and role behind a Slack user id, from
//! `SLACK_USERS_FILE`, or (optionally) looked up with `users.info` and given `SLACK_DEFAULT_ROLE`.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

use crate::auth::{Principal, Role};

/// A Slack user mapped to a human.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackUser {
    /// The human's name (the AIM actor's name).
    pub name: String,
    /// The human's email: the accountable identity, as a token's `actor`.
    pub email: String,
    /// The authorization role (as a token's `role`: `admin`, `auditor`, or any role a workflow names).
    pub role: String,
    /// The job title the AIM declaration shows as the actor's role; the role when absent.
    #[serde(default)]
    pub title: Option<String>,
}

impl SlackUser {
    /// The caller as the gate knows callers: the email as actor, the Slack ids as user id.
    pub fn principal(&self, team_id: &str, user_id: &str) -> Principal {
        Principal::new(
            Some(self.email.clone()),
            Role::from(self.role.as_str()),
            Some(slack_id(team_id, user_id)),
        )
    }

    /// The AIM actor.
    pub fn actor(&self) -> Value {
        serde_json::json!({
            "name": self.name,
            "email": self.email,
            "role": self.title.as_deref().unwrap_or(&self.role),
        })
    }
}

/// How the audit trail names a Slack user: `{"slack_team": .., "slack_user": ..}`.
pub fn slack_id(team_id: &str, user_id: &str) -> Value {
    serde_json::json!({"slack_team": team_id, "slack_user": user_id})
}

/// The users file: Slack user id -> human. JSON or YAML, a mapping at the top.
#[derive(Debug, Clone, Default)]
pub struct UsersFile {
    users: HashMap<String, SlackUser>,
}

impl UsersFile {
    /// Reads and checks the file; every problem is named with the user id it belongs to.
    pub fn load(path: &Path) -> Result<UsersFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("SLACK_USERS_FILE {}: {e}", path.display()))?;
        UsersFile::parse(&text).map_err(|e| format!("SLACK_USERS_FILE {}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<UsersFile, String> {
        let value: Value = match serde_json::from_str(text) {
            Ok(value) => value,
            Err(json) if text.trim_start().starts_with('{') => {
                return Err(format!("not valid JSON: {json}"))
            }
            Err(_) => crate::workflow::yaml::to_json(text)?,
        };
        let Value::Object(entries) = value else {
            return Err("must map Slack user ids to {name, email, role}".into());
        };
        let mut users = HashMap::with_capacity(entries.len());
        for (id, entry) in entries {
            let user: SlackUser = serde_json::from_value(entry).map_err(|e| {
                format!("user {id}: {e} (expected name, email, role, optional title)")
            })?;
            if user.name.trim().chars().count() < crate::governance::MIN_ACTOR_NAME_CHARS {
                return Err(format!("user {id}: name must have at least 3 characters"));
            }
            if !user.email.contains('@') {
                return Err(format!("user {id}: email '{}' has no @", user.email));
            }
            if user.role.trim().is_empty() {
                return Err(format!("user {id}: role is empty"));
            }
            users.insert(id, user);
        }
        Ok(UsersFile { users })
    }

    pub fn get(&self, user_id: &str) -> Option<&SlackUser> {
        self.users.get(user_id)
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// How long a `users.info` answer is trusted.
pub const LOOKUP_TTL: Duration = Duration::from_secs(3600);
/// At most this many looked-up users are remembered.
const LOOKUP_CACHE_MAX: usize = 10_000;

/// Users looked up with `users.info`: found (with the default role) or known not to qualify.
#[derive(Default)]
pub struct LookupCache {
    entries: HashMap<String, (Instant, Option<SlackUser>)>,
}

impl LookupCache {
    /// A fresh answer for `user_id`: `Some(None)` means looked up and not usable.
    pub fn get(&self, user_id: &str) -> Option<Option<SlackUser>> {
        self.entries
            .get(user_id)
            .filter(|(at, _)| at.elapsed() < LOOKUP_TTL)
            .map(|(_, user)| user.clone())
    }

    pub fn put(&mut self, user_id: &str, user: Option<SlackUser>) {
        if self.entries.len() >= LOOKUP_CACHE_MAX {
            self.entries.retain(|_, (at, _)| at.elapsed() < LOOKUP_TTL);
            if self.entries.len() >= LOOKUP_CACHE_MAX {
                self.entries.clear();
            }
        }
        self.entries
            .insert(user_id.to_owned(), (Instant::now(), user));
    }
}

/// A `users.info` answer as a human, when it names a full member of `team_id` with an email:
/// never a bot, a deactivated account, a guest (`is_restricted`, `is_ultra_restricted`) or a
/// member of another organisation in a shared channel (`is_stranger`, another `team_id`).
pub fn from_users_info(answer: &Value, role: &str, team_id: &str) -> Option<SlackUser> {
    let user = answer.get("user")?;
    let flag = |name: &str| user[name].as_bool() == Some(true);
    if [
        "deleted",
        "is_bot",
        "is_app_user",
        "is_restricted",
        "is_ultra_restricted",
        "is_stranger",
    ]
    .iter()
    .any(|name| flag(name))
    {
        return None;
    }
    if user["team_id"].as_str().is_some_and(|t| t != team_id) {
        return None;
    }
    let profile = &user["profile"];
    let email = profile["email"].as_str().filter(|e| e.contains('@'))?;
    let name = [
        &profile["real_name"],
        &user["real_name"],
        &profile["display_name"],
        &user["name"],
    ]
    .into_iter()
    .filter_map(Value::as_str)
    .map(str::trim)
    .find(|n| n.chars().count() >= crate::governance::MIN_ACTOR_NAME_CHARS)?;
    Some(SlackUser {
        name: name.to_owned(),
        email: email.to_owned(),
        role: role.to_owned(),
        title: profile["title"]
            .as_str()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_json_and_yaml_and_names_the_bad_entry() {
        let json =
            r#"{"U1": {"name": "Jake Smith", "email": "jake@example.org", "role": "deployer"}}"#;
        let users = UsersFile::parse(json).unwrap();
        assert_eq!(users.get("U1").unwrap().email, "jake@example.org");
        let yaml =
            "U2:\n  name: Ana Lopez\n  email: ana@example.org\n  role: admin\n  title: SRE lead\n";
        let users = UsersFile::parse(yaml).unwrap();
        let ana = users.get("U2").unwrap();
        assert_eq!(ana.actor()["role"], "SRE lead");
        let principal = ana.principal("T1", "U2");
        assert_eq!(principal.role, Role::Admin);
        assert_eq!(principal.actor.as_deref(), Some("ana@example.org"));

        for (bad, expected) in [
            (
                r#"{"U1": {"name": "Jo", "email": "j@x.org", "role": "user"}}"#,
                "U1: name",
            ),
            (
                r#"{"U1": {"name": "Jake", "email": "nope", "role": "user"}}"#,
                "U1: email",
            ),
            (r#"{"U1": {"name": "Jake", "email": "j@x.org"}}"#, "U1:"),
            (
                r#"{"U1": {"name": "Jake", "email": "j@x.org", "role": "u", "x": 1}}"#,
                "U1:",
            ),
            (r#"["U1"]"#, "must map"),
            (r#"{"U1": "#, "not valid JSON"),
        ] {
            let error = UsersFile::parse(bad).unwrap_err();
            assert!(error.contains(expected), "{bad}: {error}");
        }
    }

    #[test]
    fn a_looked_up_user_needs_an_email_and_a_name() {
        let answer = serde_json::json!({"ok": true, "user": {"id": "U9", "name": "sam",
            "real_name": "Sam Doe", "profile": {"email": "sam@example.org", "real_name": "Sam Doe"}}});
        let sam = from_users_info(&answer, "user", "T1").unwrap();
        assert_eq!(
            (sam.name.as_str(), sam.email.as_str()),
            ("Sam Doe", "sam@example.org")
        );
        let no_email = serde_json::json!({"ok": true, "user": {"name": "sam", "profile": {}}});
        assert_eq!(from_users_info(&no_email, "user", "T1"), None);
        let bot = serde_json::json!({"ok": true, "user": {"is_bot": true, "profile": {"email": "b@x.org", "real_name": "Bot Bot"}}});
        assert_eq!(from_users_info(&bot, "user", "T1"), None);
        for (flag, value) in [
            ("is_restricted", json!(true)),
            ("is_ultra_restricted", json!(true)),
            ("is_stranger", json!(true)),
            ("team_id", json!("TOTHER")),
        ] {
            let mut guest = answer.clone();
            guest["user"][flag] = value;
            assert_eq!(from_users_info(&guest, "user", "T1"), None, "{flag}");
        }
        let mut member = answer.clone();
        member["user"]["team_id"] = json!("T1");
        assert!(from_users_info(&member, "user", "T1").is_some());
    }
}
