//! Which records a [`Filter`] selects: the few members of a line it looks at, read without
//! building values, and the comparison.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::Filter;

/// Compares records against a [`Filter`], with the filter's text prepared once.
pub(crate) struct Matcher<'f> {
    filter: &'f Filter,
    actor: Option<String>,
}

impl<'f> Matcher<'f> {
    pub(crate) fn new(filter: &'f Filter) -> Matcher<'f> {
        Matcher {
            filter,
            actor: filter.actor.as_deref().map(|a| a.trim().to_lowercase()),
        }
    }

    pub(crate) fn matches(&self, facts: &Facts<'_>) -> bool {
        let filter = self.filter;
        let exact = |want: &Option<String>, have: &Option<Cow<'_, str>>| {
            want.as_deref()
                .is_none_or(|want| have.as_deref() == Some(want))
        };
        let ascii = |want: &Option<String>, have: &Option<Cow<'_, str>>| {
            want.as_deref().is_none_or(|want| {
                have.as_deref()
                    .is_some_and(|have| have.eq_ignore_ascii_case(want.trim()))
            })
        };
        if !(exact(&filter.trace_id, &facts.trace_id)
            && exact(&filter.workflow, &facts.workflow_name)
            && ascii(&filter.outcome, &facts.outcome)
            && ascii(&filter.drag_mode, &facts.drag_mode)
            && ascii(&filter.kind, &facts.kind))
        {
            return false;
        }
        if let Some(actor) = &self.actor {
            let person = facts.aim.as_ref().and_then(|aim| aim.actor.as_ref());
            let candidates = [
                person.and_then(|p| p.email.as_deref()),
                person.and_then(|p| p.name.as_deref()),
                facts.principal.as_ref().and_then(|p| p.actor.as_deref()),
            ];
            let same = |have: &str| {
                have.trim()
                    .chars()
                    .flat_map(char::to_lowercase)
                    .eq(actor.chars())
            };
            if !candidates.into_iter().flatten().any(same) {
                return false;
            }
        }
        if filter.since.is_some() || filter.until.is_some() {
            let Some(at) = facts
                .timestamp
                .as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc))
            else {
                return false;
            };
            if filter.since.is_some_and(|since| at < since)
                || filter.until.is_some_and(|until| at >= until)
            {
                return false;
            }
        }
        true
    }
}

/// The members of a record a filter looks at, borrowed from the line where possible (everything
/// else is skipped without building values).
#[derive(Deserialize)]
pub(crate) struct Facts<'a> {
    pub(crate) seq: u64,
    #[serde(default, borrow)]
    pub(crate) timestamp: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) trace_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    outcome: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    drag_mode: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    workflow_name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    aim: Option<AimFacts<'a>>,
    #[serde(default, borrow)]
    principal: Option<PrincipalFacts<'a>>,
}

#[derive(Deserialize)]
struct AimFacts<'a> {
    #[serde(default, borrow)]
    actor: Option<PersonFacts<'a>>,
}

#[derive(Deserialize)]
struct PersonFacts<'a> {
    #[serde(default, borrow)]
    email: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct PrincipalFacts<'a> {
    #[serde(default, borrow)]
    actor: Option<Cow<'a, str>>,
}

impl<'a> Facts<'a> {
    /// The facts of a line; `None` when it is not a JSON object with a whole-number `seq`.
    ///
    /// Records written by SustainBot have the types above. A line that does not (an `aim` that is a
    /// string, say: it holds whatever a refused request sent) is read as a whole value instead, and
    /// a member of an unexpected type counts as absent, so that no record drops out of a query.
    pub(crate) fn parse(line: &'a [u8]) -> Option<Facts<'a>> {
        if let Ok(facts) = serde_json::from_slice(line) {
            return Some(facts);
        }
        let value: Value = serde_json::from_slice(line).ok()?;
        let text = |v: &Value| v.as_str().map(|s| Cow::Owned(s.to_owned()));
        let member = |key: &str| value.get(key).and_then(text);
        let actor = &value["aim"]["actor"];
        Some(Facts {
            seq: value.get("seq")?.as_u64()?,
            timestamp: member("timestamp"),
            kind: member("kind"),
            trace_id: member("trace_id"),
            outcome: member("outcome"),
            drag_mode: member("drag_mode"),
            workflow_name: member("workflow_name"),
            aim: Some(AimFacts {
                actor: Some(PersonFacts {
                    email: text(&actor["email"]),
                    name: text(&actor["name"]),
                }),
            }),
            principal: Some(PrincipalFacts {
                actor: text(&value["principal"]["actor"]),
            }),
        })
    }
}
