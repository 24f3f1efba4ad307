//! Enough of PromQL's lexical structure to list the metric names an expression selects: identifiers
//! outside `{...}` and `[...]` that are not functions, aggregations, keywords or the label lists of
//! `by`, `without`, `on`, `ignoring`, `group_left` and `group_right`. (Whether the expression parses at
//! all is promtool's job.)

use std::collections::BTreeSet;

const AGGREGATIONS: [&str; 12] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];
const LABEL_LISTS: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
const KEYWORDS: [&str; 8] = [
    "and", "or", "unless", "offset", "bool", "atan2", "inf", "nan",
];

/// The metric names `expr` selects.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let (mut braces, mut brackets) = (0i32, 0i32);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '"' | '\'' | '`') {
            i = skip_string(&chars, i);
            continue;
        }
        match c {
            '{' => braces += 1,
            '}' => braces -= 1,
            '[' => brackets += 1,
            ']' => brackets -= 1,
            _ => {}
        }
        if c.is_ascii_digit() || c == '.' {
            // A number or a duration (`5m`, `1e3`, `0.99`).
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            continue;
        }
        if !(c.is_ascii_alphabetic() || c == '_' || c == ':') {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | ':'))
        {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        if braces > 0 || brackets > 0 {
            continue; // a label name, or inside a range
        }
        let next = chars[i..].iter().find(|c| !c.is_whitespace()).copied();
        if LABEL_LISTS.contains(&word.as_str()) {
            if next == Some('(') {
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
            }
        } else if KEYWORDS.contains(&word.as_str()) || AGGREGATIONS.contains(&word.as_str()) {
        } else if next != Some('(') {
            names.insert(word);
        }
    }
    names
}

/// The index after the string literal that starts at `start`.
fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() && chars[i] != quote {
        if chars[i] == '\\' && quote != '`' {
            i += 1;
        }
        i += 1;
    }
    i + 1
}

#[test]
fn finds_metric_names_and_nothing_else() {
    let expr = r#"histogram_quantile(0.99, sum by (instance, le) (rate(a_bucket{job="x", le!="1"}[5m] offset 1h))) > 0.25
        and on (instance) b_total / ignoring(x) group_left(y) c - time() < 600 unless count(d{e=~"sum(f)"}) > bool 1e3"#;
    assert_eq!(
        metric_names(expr).into_iter().collect::<Vec<_>>(),
        ["a_bucket", "b_total", "c", "d"]
    );
}
