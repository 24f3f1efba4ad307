//! The one table of differences from the original (`tests/compat/differences.json`): each entry is
//! a difference a migrating client meets, with its category, why, what the client changes, and
//! the observations (case, field, original, ours) that show it. The replay test holds the table to
//! what it sees, both ways; `docs/migrating.md` carries the table's rendering.

use std::fmt::Write as _;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::diff::{same_option, Difference};

/// The categories an entry may have, besides `to fix (issue N item M)`.
pub const CATEGORIES: [&str; 3] = ["deliberately different", "fixed", "extended"];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Table {
    pub about: String,
    pub differences: Vec<Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub id: String,
    /// `deliberately different`, `fixed`, `extended`, or `to fix (issue N item M)`.
    pub category: String,
    pub summary: String,
    pub why: String,
    pub client_change: String,
    pub observed: Vec<Observation>,
}

/// One difference as the replay sees it. A side without the field has no `original`/`ours` key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Observation {
    pub case: String,
    pub field: String,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub original: Option<Value>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub ours: Option<Value>,
}

/// A key that is there is `Some`, even when its value is `null`.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

impl From<&Difference> for Observation {
    fn from(d: &Difference) -> Observation {
        Observation {
            case: d.case.clone(),
            field: d.field.clone(),
            original: d.original.clone(),
            ours: d.ours.clone(),
        }
    }
}

/// Where the table and the replay disagree.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Differences the table does not list.
    pub new: Vec<Difference>,
    /// `(entry id, observation, what we answer now)`: listed, but ours is now something else.
    pub changed: Vec<(String, Observation, Difference)>,
    /// `(entry id, observation)`: listed, but no longer a difference (or its case is gone).
    pub stale: Vec<(String, Observation)>,
    /// Malformed entries: unknown category, an observation listed twice, no observations.
    pub malformed: Vec<String>,
}

impl Verdict {
    pub fn is_clean(&self) -> bool {
        self.new.is_empty()
            && self.changed.is_empty()
            && self.stale.is_empty()
            && self.malformed.is_empty()
    }
}

impl Table {
    /// Holds every found difference against the table, and every observation of the table
    /// against what was found.
    pub fn check(&self, found: &[Difference]) -> Verdict {
        let mut verdict = Verdict::default();
        let mut seen = std::collections::BTreeSet::new();
        for entry in &self.differences {
            if !valid_category(&entry.category) {
                verdict.malformed.push(format!(
                    "entry {}: category {:?} is none of {CATEGORIES:?} or \"to fix (issue N item M)\"",
                    entry.id, entry.category
                ));
            }
            if entry.observed.is_empty() {
                verdict
                    .malformed
                    .push(format!("entry {}: no observations", entry.id));
            }
            for observation in &entry.observed {
                if !seen.insert((observation.case.as_str(), observation.field.as_str())) {
                    verdict.malformed.push(format!(
                        "entry {}: case {} field {} is listed twice in the table",
                        entry.id, observation.case, observation.field
                    ));
                }
                match found
                    .iter()
                    .find(|d| d.case == observation.case && d.field == observation.field)
                {
                    None => verdict.stale.push((entry.id.clone(), observation.clone())),
                    Some(d)
                        if !same_option(observation.original.as_ref(), d.original.as_ref())
                            || !same_option(observation.ours.as_ref(), d.ours.as_ref()) =>
                    {
                        verdict
                            .changed
                            .push((entry.id.clone(), observation.clone(), d.clone()));
                    }
                    Some(_) => {}
                }
            }
        }
        verdict.new = found
            .iter()
            .filter(|d| !seen.contains(&(d.case.as_str(), d.field.as_str())))
            .cloned()
            .collect();
        verdict
    }

    /// The table without the stale observations, and without entries left with none.
    pub fn without_stale(&self, verdict: &Verdict) -> Table {
        let mut table = self.clone();
        for entry in &mut table.differences {
            entry.observed.retain(|o| {
                !verdict
                    .stale
                    .iter()
                    .any(|(id, s)| *id == entry.id && s.case == o.case && s.field == o.field)
            });
        }
        table.differences.retain(|e| !e.observed.is_empty());
        table
    }

    /// The table as Markdown for `docs/migrating.md`: one section per category, one row per entry.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut categories: Vec<&str> = CATEGORIES.to_vec();
        let mut to_fix: Vec<&str> = self
            .differences
            .iter()
            .map(|e| e.category.as_str())
            .filter(|c| c.starts_with("to fix"))
            .collect();
        to_fix.sort();
        to_fix.dedup();
        categories.extend(to_fix);
        for category in categories {
            let entries: Vec<&Entry> = self
                .differences
                .iter()
                .filter(|e| e.category == category)
                .collect();
            if entries.is_empty() {
                continue;
            }
            let _ = writeln!(out, "\n### {}\n", capitalised(category));
            out.push_str("| difference | why | what a client changes | cases |\n");
            out.push_str("| --- | --- | --- | --- |\n");
            for entry in entries {
                let mut cases: Vec<String> = Vec::new();
                for case in entry.observed.iter().map(|o| format!("`{}`", o.case)) {
                    if !cases.contains(&case) {
                        cases.push(case);
                    }
                }
                let _ = writeln!(
                    out,
                    "| **{}** | {} | {} | {} |",
                    cell(&entry.summary),
                    cell(&entry.why),
                    cell(&entry.client_change),
                    cases.join(", ")
                );
            }
        }
        out
    }
}

fn valid_category(category: &str) -> bool {
    CATEGORIES.contains(&category)
        || category
            .strip_prefix("to fix (issue ")
            .and_then(|rest| rest.strip_suffix(')'))
            .and_then(|rest| rest.split_once(" item "))
            .is_some_and(|(issue, item)| {
                issue.parse::<u32>().is_ok() && item.parse::<u32>().is_ok()
            })
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// Text safe inside one Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn difference(case: &str, field: &str, original: Value, ours: Option<Value>) -> Difference {
        Difference {
            case: case.into(),
            field: field.into(),
            original: Some(original),
            ours,
        }
    }

    fn table() -> Table {
        serde_json::from_value(json!({
            "about": "",
            "differences": [{
                "id": "unknown-404", "category": "deliberately different", "summary": "s",
                "why": "w", "client_change": "c",
                "observed": [
                    {"case": "a", "field": "status", "original": 500, "ours": 404},
                    {"case": "a", "field": "/success", "original": false}
                ]
            }]
        }))
        .unwrap()
    }

    #[test]
    fn listed_differences_pass_and_others_are_new() {
        let found = [
            difference("a", "status", json!(500), Some(json!(404))),
            difference("a", "/success", json!(false), None),
            difference("b", "status", json!(200), Some(json!(401))),
        ];
        let verdict = table().check(&found);
        assert!(verdict.stale.is_empty() && verdict.changed.is_empty());
        assert_eq!(verdict.new.len(), 1);
        assert_eq!(verdict.new[0].case, "b");
    }

    #[test]
    fn an_observation_that_no_longer_differs_is_stale_and_pruned() {
        let found = [difference("a", "status", json!(500), Some(json!(404)))];
        let verdict = table().check(&found);
        assert_eq!(verdict.stale.len(), 1);
        assert_eq!(verdict.stale[0].1.field, "/success");
        let pruned = table().without_stale(&verdict);
        assert_eq!(pruned.differences[0].observed.len(), 1);
        assert!(pruned.check(&found).is_clean());
    }

    #[test]
    fn an_observation_whose_value_moved_is_changed() {
        let found = [
            difference("a", "status", json!(500), Some(json!(403))),
            difference("a", "/success", json!(false), None),
        ];
        let verdict = table().check(&found);
        assert_eq!(verdict.changed.len(), 1);
        assert_eq!(verdict.changed[0].2.ours, Some(json!(403)));
    }

    #[test]
    fn null_is_a_value_and_absence_is_not() {
        let observation: Observation =
            serde_json::from_value(json!({"case": "a", "field": "/x", "original": null})).unwrap();
        assert_eq!(observation.original, Some(Value::Null));
        assert_eq!(observation.ours, None);
    }

    #[test]
    fn categories_are_the_four_kinds() {
        assert!(valid_category("to fix (issue 10 item 5)"));
        assert!(valid_category("extended"));
        assert!(!valid_category("to fix"));
        assert!(!valid_category("wontfix"));
    }

    #[test]
    fn renders_one_row_per_entry_with_its_cases() {
        let text = table().render();
        assert!(text.contains("### Deliberately different"), "{text}");
        assert!(text.contains("| **s** | w | c | `a` |"), "{text}");
    }
}
