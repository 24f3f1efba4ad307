//! The patterns a policy file names workflows and roles with: `*` is any run of characters (none
//! too), `?` exactly one; every other character stands for itself. No classes, no escapes, no
//! `**`: a pattern reads the same to a person as to the matcher.

use std::fmt;

/// A checked pattern. A workflow pattern can only match names a workflow can have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(String);

/// Characters of glob dialects that this one does not have: refused, so that nobody believes
/// `deploy-[ab]` or `{a,b}` means what it means elsewhere.
const UNSUPPORTED: [char; 5] = ['[', ']', '{', '}', '\\'];

impl Pattern {
    /// A pattern for workflow names: `[A-Za-z0-9_-]`, `*` and `?`.
    pub fn workflow(text: &str) -> Result<Pattern, String> {
        Pattern::common(text)?;
        match text
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '*' | '?')))
        {
            None => Ok(Pattern(text.to_owned())),
            Some(c) => Err(format!(
                "bad workflow pattern '{text}': '{c}' cannot appear in a workflow name (letters, \
                 digits, - and _; * and ? as wildcards)"
            )),
        }
    }

    /// A pattern for role names: any text without surrounding spaces; `*` and `?` as wildcards.
    pub fn role(text: &str) -> Result<Pattern, String> {
        Pattern::common(text)?;
        if text.trim() != text {
            return Err(format!(
                "bad role pattern '{text}': no spaces around a role name"
            ));
        }
        Ok(Pattern(text.to_owned()))
    }

    fn common(text: &str) -> Result<(), String> {
        if text.is_empty() {
            return Err("an empty pattern matches nothing; remove it or write *".to_owned());
        }
        if let Some(c) = text.chars().find(|c| UNSUPPORTED.contains(c)) {
            return Err(format!(
                "bad pattern '{text}': '{c}' is not supported (only * and ? are wildcards)"
            ));
        }
        Ok(())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `text` matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        let pattern: Vec<char> = self.0.chars().collect();
        let text: Vec<char> = text.chars().collect();
        // The classic two-pointer match: on a mismatch, the last `*` takes one more character.
        // Linear in practice, never exponential.
        let (mut p, mut t) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match pattern.get(p) {
                Some('*') => {
                    star = Some((p, t));
                    p += 1;
                }
                Some(&c) if c == '?' || c == text[t] => {
                    p += 1;
                    t += 1;
                }
                _ => match star {
                    Some((star_p, star_t)) => {
                        p = star_p + 1;
                        t = star_t + 1;
                        star = Some((star_p, star_t + 1));
                    }
                    None => return false,
                },
            }
        }
        pattern[p..].iter().all(|&c| c == '*')
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workflow(text: &str) -> Pattern {
        Pattern::workflow(text).expect(text)
    }

    #[test]
    fn star_matches_any_run_and_question_mark_one_character() {
        for (pattern, name, expected) in [
            ("deploy-*", "deploy-prod", true),
            ("deploy-*", "deploy-", true),
            ("deploy-*", "deploy", false),
            ("deploy-*", "predeploy-x", false),
            ("*", "anything", true),
            ("noop", "noop", true),
            ("noop", "noop2", false),
            ("noop", "NOOP", false),
            ("db-?", "db-1", true),
            ("db-?", "db-12", false),
            ("db-?", "db-", false),
            ("*-prod-*", "eu-prod-web", true),
            ("*-prod-*", "eu-staging-web", false),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
            ("**", "", true),
        ] {
            assert_eq!(
                workflow(pattern).matches(name),
                expected,
                "{pattern} ~ {name}"
            );
        }
    }

    #[test]
    fn a_pattern_of_many_stars_does_not_backtrack_exponentially() {
        let pattern = workflow(&format!("{}c", "a*".repeat(30)));
        let text = "a".repeat(60) + "b";
        let started = std::time::Instant::now();
        assert!(!pattern.matches(&text));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn refuses_empty_patterns_other_dialects_and_characters_no_workflow_has() {
        for (text, expected) in [
            ("", "empty pattern"),
            ("deploy-[ab]", "'[' is not supported"),
            ("{a,b}", "'{' is not supported"),
            ("deploy\\*", "'\\' is not supported"),
            ("deploy.prod", "'.' cannot appear in a workflow name"),
            ("a/b", "'/' cannot appear"),
            ("a b", "' ' cannot appear"),
        ] {
            let error = Pattern::workflow(text).expect_err(text);
            assert!(error.contains(expected), "{text}: {error}");
        }
        assert!(Pattern::role(" admin").is_err());
        assert!(Pattern::role("").is_err());
        assert!(Pattern::role("team.sre-*").is_ok(), "roles are free text");
        assert!(Pattern::role("Team Lead").is_ok());
    }

    #[test]
    fn role_patterns_match_as_written() {
        let pattern = Pattern::role("team-*").unwrap();
        assert!(pattern.matches("team-sre"));
        assert!(!pattern.matches("Team-sre"));
        assert!(Pattern::role("élan").unwrap().matches("élan"));
    }
}
