//! The prescriptive-language filter: normalization, matching, and reading a phrase list.

use crate::governance::filter::{find_prescriptive, normalize, PhraseList};

/// Every match names a range of the original text on char boundaries whose own normalization holds
/// the phrase, and normalization maps each char it makes back into the text.
#[test]
fn filter_reports_ranges_of_the_text_it_was_given() {
    let phrases = PhraseList::default_forbidden();
    super::fuzz("filter", |bytes| {
        let text = String::from_utf8_lossy(bytes);
        let normalized = normalize(&text);
        for (start, end) in normalized.spans() {
            assert!(
                start < end && text.get(start..end).is_some(),
                "span {start}..{end}"
            );
        }
        let _ = normalized.original_range(0..normalized.text.len());
        for violation in find_prescriptive(&text, &phrases) {
            let Some(matched) = text.get(violation.start..violation.end) else {
                panic!("{violation:?} is not a range of the text");
            };
            assert!(
                normalize(matched).text.contains(&violation.phrase),
                "{violation:?} covers {matched:?}"
            );
        }
        // The same text as a phrase list (one phrase a line), as FORBIDDEN_PHRASES_FILE reads it.
        if let Ok(list) = PhraseList::parse(&text) {
            let _ = find_prescriptive(&text, &list);
        }
    });
}
