//! The prescriptive-language filter: phrases, word boundaries, normalization, offsets.

use super::*;
use proptest::prelude::*;

fn default_hits(text: &str) -> Vec<Violation> {
    find_prescriptive(text, &PhraseList::default_forbidden())
}

fn phrases_found(text: &str) -> Vec<String> {
    default_hits(text).into_iter().map(|v| v.phrase).collect()
}

#[test]
fn default_list_is_the_originals() {
    let list = PhraseList::default_forbidden();
    assert_eq!(list.phrases().collect::<Vec<_>>(), DEFAULT_FORBIDDEN);
    assert_eq!(list.len(), 9);
    assert!(!list.is_empty());
}

#[test]
fn finds_plain_phrase_with_offsets() {
    let text = "Honestly, you should pick B.";
    let hits = default_hits(text);
    assert_eq!(
        hits,
        vec![Violation {
            phrase: "you should".into(),
            start: 10,
            end: 20
        }]
    );
    assert_eq!(&text[10..20], "you should");
}

#[test]
fn clean_text_has_no_violations() {
    assert!(default_hits("Option A is cheaper; option B is faster. Trade-offs follow.").is_empty());
    assert!(default_hits("").is_empty());
}

#[test]
fn ignores_case() {
    assert_eq!(phrases_found("YOU SHOULD"), ["you should"]);
    assert_eq!(phrases_found("You Should"), ["you should"]);
    assert_eq!(phrases_found("I Recommend this"), ["i recommend"]);
    // Non-ASCII upper case goes through Unicode lower-casing.
    let list = PhraseList::parse("über alles").unwrap();
    assert_eq!(find_prescriptive("ÜBER ALLES", &list).len(), 1);
}

#[test]
fn collapses_repeated_and_odd_whitespace() {
    for text in [
        "you \t\n  should",
        "you\u{00A0}should",
        "you\u{3000}should",
        "you\u{2003}\u{2009}should",
        "you\r\n\u{0B}\u{0C}should",
        "you\u{2028}should",
    ] {
        let hits = default_hits(text);
        assert_eq!(hits.len(), 1, "{text:?}");
        assert_eq!((hits[0].start, hits[0].end), (0, text.len()), "{text:?}");
    }
    assert!(default_hits("youshould").is_empty());
}

#[test]
fn sees_through_fullwidth_letters() {
    let text = "Ｙｏｕ ｓｈｏｕｌｄ wait";
    let hits = default_hits(text);
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].phrase, "you should");
    assert_eq!(&text[hits[0].start..hits[0].end], "Ｙｏｕ ｓｈｏｕｌｄ");
}

#[test]
fn folds_ligatures() {
    assert_eq!(normalize("ﬁne").text, "fine");
    let list = PhraseList::parse("definitely fine").unwrap();
    let text = "de\u{FB01}nitely \u{FB01}ne";
    let hits = find_prescriptive(text, &list);
    assert_eq!(hits.len(), 1);
    assert_eq!(&text[hits[0].start..hits[0].end], text);
}

#[test]
fn ignores_zero_width_characters() {
    let text = "\u{200B}you\u{200B} sho\u{200D}uld\u{FEFF}!";
    let hits = default_hits(text);
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].phrase, "you should");
    // Leading and trailing ignorables are not part of the span; inner ones are.
    assert_eq!(
        &text[hits[0].start..hits[0].end],
        "you\u{200B} sho\u{200D}uld"
    );
    for zw in [
        '\u{00AD}',
        '\u{2060}',
        '\u{180E}',
        '\u{FE0F}',
        '\u{E0041}',
        '\u{1D173}',
    ] {
        let text = format!("you sh{zw}ould");
        assert_eq!(phrases_found(&text), ["you should"], "{zw:?}");
    }
}

#[test]
fn zero_width_chars_do_not_join_words() {
    // An invisible char is not a word boundary: "you" is still glued to "bay".
    assert!(default_hits("bay\u{200B}you should").is_empty());
    assert!(default_hits("you\u{200B}should").is_empty());
    assert_eq!(phrases_found("x \u{200B}you should"), ["you should"]);
}

#[test]
fn treats_curly_apostrophes_as_straight() {
    let list = PhraseList::parse("don't").unwrap();
    for text in ["don’t", "don‘t", "don‛t", "donʼt", "don＇t", "don't"] {
        let hits = find_prescriptive(text, &list);
        assert_eq!(hits.len(), 1, "{text:?}");
        assert_eq!(&text[hits[0].start..hits[0].end], text);
    }
    // And a curly apostrophe in the list matches a straight one in text.
    let curly = PhraseList::parse("don’t").unwrap();
    assert_eq!(curly.phrases().collect::<Vec<_>>(), ["don't"]);
}

#[test]
fn does_not_fire_inside_other_words() {
    assert!(default_hits("you shoulder the load").is_empty());
    assert!(default_hits("bayou should be dredged").is_empty());
    assert!(default_hits("you shouldn't").is_empty()); // "shouldn" is another word
    assert_eq!(default_hits("you should've").len(), 1); // apostrophe is a boundary
    assert!(default_hits("always used").is_empty());
    assert!(default_hits("you should\u{0301}").is_empty()); // combining mark alters the letter
    assert!(default_hits("ｙou shouldｓ").is_empty()); // full-width letters are letters
    assert!(default_hits("you should2").is_empty());
}

#[test]
fn punctuation_and_edges_are_boundaries() {
    assert_eq!(phrases_found("you should"), ["you should"]);
    assert_eq!(phrases_found("(you should)"), ["you should"]);
    assert_eq!(phrases_found("\"You must.\""), ["you must"]);
    assert_eq!(phrases_found("—never use—"), ["never use"]);
}

#[test]
fn reports_every_occurrence_sorted_longest_first() {
    let list = PhraseList::parse("you should\nyou should not\nshould not\nno no").unwrap();
    let text = "You should not. you should! no no no";
    let hits = find_prescriptive(text, &list);
    let summary: Vec<_> = hits
        .iter()
        .map(|v| (v.phrase.as_str(), &text[v.start..v.end]))
        .collect();
    assert_eq!(
        summary,
        [
            ("you should not", "You should not"),
            ("you should", "You should"),
            ("should not", "should not"),
            ("you should", "you should"),
            ("no no", "no no"),
            ("no no", "no no"),
        ]
    );
    assert!(hits.windows(2).all(|w| w[0].start <= w[1].start));
    assert_eq!(hits[4].start, 28);
    assert_eq!(hits[5].start, 31);
}

#[test]
fn offsets_cover_multibyte_and_expanding_chars() {
    // U+0130 lower-cases to two chars; both map back to the one original char.
    let list = PhraseList::parse("i\u{307}stanbul").unwrap();
    let text = "→ İstanbul ←";
    let hits = find_prescriptive(text, &list);
    assert_eq!(hits.len(), 1);
    assert_eq!(&text[hits[0].start..hits[0].end], "İstanbul");
}

#[test]
fn check_output_depends_on_mode() {
    let list = PhraseList::default_forbidden();
    let text = "You must deploy now.";
    assert_eq!(check_output(text, DragMode::Draft, &list).len(), 1);
    assert_eq!(check_output(text, DragMode::Research, &list).len(), 1);
    assert!(check_output(text, DragMode::Grunt, &list).is_empty());
    assert!(check_output(text, DragMode::Execute, &list).is_empty());
}

#[test]
fn parses_phrase_lists() {
    let list = PhraseList::parse(
        "# forbidden\n\n  You  Should \n\t# indented comment\nＭＵＳＴ\nyou should\n\u{200B}\n",
    )
    .unwrap();
    assert_eq!(list.phrases().collect::<Vec<_>>(), ["you should", "must"]);
    assert!(matches!(
        PhraseList::parse("# only\n\n \u{200B}\n"),
        Err(PhraseListError::Empty { path: None })
    ));
    assert!(PhraseList::parse("").is_err());
}

#[test]
fn phrase_list_file_errors_name_the_path() {
    let dir = std::env::temp_dir().join(format!("filter-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("missing.txt");
    let err = PhraseList::from_file(&missing).unwrap_err();
    assert!(matches!(err, PhraseListError::Io { .. }));
    assert!(err.to_string().contains("missing.txt"), "{err}");

    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "# nothing\n").unwrap();
    let err = PhraseList::from_file(&empty).unwrap_err();
    assert!(matches!(err, PhraseListError::Empty { path: Some(_) }));
    assert!(err.to_string().contains("empty.txt"), "{err}");

    let good = dir.join("good.txt");
    std::fs::write(&good, "always use\n").unwrap();
    let list = PhraseList::from_file(&good).unwrap();
    assert_eq!(list.phrases().collect::<Vec<_>>(), ["always use"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn normalize_maps_each_char_back() {
    let text = "A\u{200B}Ｂ  ﬁ";
    let n = normalize(text);
    assert_eq!(n.text, "ab fi");
    let spans: Vec<_> = n.spans().collect();
    assert_eq!(spans, [(0, 1), (4, 7), (7, 8), (9, 12), (9, 12)]);
    assert_eq!(n.span_of_char(1), Some((4, 7)));
    assert_eq!(n.span_of_char(5), None);
    assert_eq!(n.original_range(0..2), Some(0..7));
    assert_eq!(n.original_range(3..4), Some(9..12));
    assert_eq!(n.original_range(2..2), None);
    assert_eq!(n.original_range(0..99), None);
}

#[test]
fn violation_serializes_as_plain_fields() {
    // serde::Serialize is derived; make sure the derive compiles against a trivial serializer.
    fn assert_serialize<T: serde::Serialize>(_: &T) {}
    assert_serialize(&Violation {
        phrase: "you must".into(),
        start: 0,
        end: 8,
    });
}

/// Strings mixing arbitrary chars with the troublesome ones this module handles.
fn tricky_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => any::<char>().prop_map(String::from),
        2 => prop::sample::select(vec![
            "you", "should", "You", "SHOULD", "ｙｏｕ", "ｓｈｏｕｌｄ", "ﬁ", "İ", "ß", "ẞ",
            "don’t", "'", "\u{0301}", "\u{0345}", "ΐ", "\u{FFA0}", "\u{3164}", "\u{00B4}",
            "½", "㍿", "ﷺ", "\u{1D173}", "\u{E0001}",
        ])
        .prop_map(String::from),
        2 => prop::sample::select(vec![
            " ", "\t", "\n", "\u{00A0}", "\u{3000}", "\u{200B}", "\u{200D}", "\u{FEFF}",
            "\u{00AD}", "\u{2060}", "\u{202E}", "\u{FE0F}",
        ])
        .prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

const ZERO_WIDTH: [char; 6] = [
    '\u{200B}', '\u{200C}', '\u{200D}', '\u{2060}', '\u{FEFF}', '\u{00AD}',
];
const WIDE_SPACE: [&str; 6] = [" ", "\t", "\n", "\u{00A0}", "\u{3000}", "\u{2003}"];

proptest! {
    #[test]
    fn never_panics_and_offsets_are_valid(text in prop_oneof![any::<String>(), tricky_text()]) {
        let list = PhraseList::parse("you should\nﬁ\ni\u{307}\n'\nß\n\u{0301}\nyou\nsh")
            .expect("non-empty list");
        for hits in [find_prescriptive(&text, &list), default_hits(&text)] {
            for v in &hits {
                prop_assert!(v.start < v.end && v.end <= text.len(), "{:?}", v);
                prop_assert!(text.is_char_boundary(v.start) && text.is_char_boundary(v.end));
            }
            prop_assert!(hits.windows(2).all(|w| w[0].start <= w[1].start));
        }
    }

    #[test]
    fn normalize_spans_are_ordered_and_in_bounds(text in prop_oneof![any::<String>(), tricky_text()]) {
        let n = normalize(&text);
        prop_assert_eq!(n.spans().len(), n.text.chars().count());
        let mut previous = (0, 0);
        for (start, end) in n.spans() {
            prop_assert!(start < end && end <= text.len());
            prop_assert!(text.is_char_boundary(start) && text.is_char_boundary(end));
            prop_assert!(start >= previous.0 && (start >= previous.1 || (start, end) == previous));
            previous = (start, end);
        }
        prop_assert!(!n.text.contains("  "));
        // Normalizing twice changes nothing, so phrases and text meet in the same form.
        prop_assert_eq!(&normalize(&n.text).text, &n.text);
    }

    #[test]
    fn disguised_phrase_is_still_found(
        prefix in prop_oneof![any::<String>(), tricky_text()],
        suffix in prop_oneof![any::<String>(), tricky_text()],
        upper in prop::collection::vec(any::<bool>(), 10),
        zero_width in prop::collection::vec(prop::option::of(prop::sample::select(ZERO_WIDTH.to_vec())), 11),
        spaces in prop::collection::vec(prop::sample::select(WIDE_SPACE.to_vec()), 1..4),
    ) {
        let mut text = format!("{prefix} ");
        let mut start = None;
        let mut end = 0;
        for (i, c) in "you should".chars().enumerate() {
            if let Some(zw) = zero_width[i] {
                text.push(zw);
            }
            if c == ' ' {
                text.push_str(&spaces.concat());
                continue;
            }
            start.get_or_insert(text.len());
            text.push(if upper[i] { c.to_ascii_uppercase() } else { c });
            end = text.len();
        }
        if let Some(zw) = zero_width[10] {
            text.push(zw);
        }
        text.push(' ');
        text.push_str(&suffix);
        let start = start.expect("phrase has letters");
        let hits = default_hits(&text);
        prop_assert!(
            hits.iter().any(|v| v.phrase == "you should" && v.start == start && v.end == end),
            "{:?} in {:?}", hits, text
        );
    }
}

#[test]
fn confusables_fold_to_latin_one_char_for_one_char() {
    let text = "You ѕhould";
    let normalized = normalize(text);
    assert_eq!(normalized.text, "you should");
    assert_eq!(
        phrases_found("yоu ѕhоuld, ΥΟU MUЅT"),
        ["you should", "you must"]
    );
    let hits = default_hits("Well, yоu ѕhould.");
    assert_eq!(
        &"Well, yоu ѕhould."[hits[0].start..hits[0].end],
        "yоu ѕhould"
    );
}
