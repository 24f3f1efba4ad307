//! One person is one person: the canonical form of an identity (a token's `actor`, an AIM email or
//! name), used wherever identities are compared (binding, self-approval, ownership of runs,
//! cancel, override). NFKC-normalized, trimmed, runs of white space as one space, case-folded, so
//! `"Bob@Example.org "`, `"bob@example.org"` and `"ｂｏｂ@example.org"` are the same human.

use unicode_normalization::UnicodeNormalization;

/// The canonical form of an identity.
pub fn canonical(identity: &str) -> String {
    let normalized: String = identity.nfkc().collect();
    normalized
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Whether two identities name the same human.
pub fn same(a: &str, b: &str) -> bool {
    canonical(a) == canonical(b)
}

/// Whether an identity is written in its plain form: no white space around it, none doubled, and
/// NFKC-normalized (what the `token` command mints).
pub fn is_plain(identity: &str) -> bool {
    let normalized: String = identity.nfkc().collect();
    !identity.is_empty()
        && normalized == identity
        && identity.split_whitespace().collect::<Vec<_>>().join(" ") == identity
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_case_width_and_spacing_do_not_make_another_person() {
        assert!(same("bob@example.org ", "Bob@Example.ORG"));
        assert!(
            same("\u{ff42}ob@example.org", "bob@example.org"),
            "full-width b"
        );
        assert!(same("Demo  User", "demo user"));
        assert!(!same("bob@example.org", "rob@example.org"));
        assert!(is_plain("bob@example.org"));
        assert!(!is_plain("bob@example.org "));
        assert!(!is_plain(" bob"));
        assert!(!is_plain("Demo  User"));
        assert!(!is_plain("\u{ff42}ob"));
        assert!(!is_plain(""));
    }
}
