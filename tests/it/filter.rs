//! `POST /governance/filter`: the prescriptive-language filter as a service.

use serde_json::{json, Value};

use crate::helpers::TestApp;

async fn filter(app: &TestApp, text: &str, drag_mode: &str) -> Value {
    app.post_json(
        "/governance/filter",
        &json!({"text": text, "drag_mode": drag_mode}),
        None,
    )
    .await
    .expect_ok(200)
}

/// The violations' phrases, each with the original text it covers.
fn found(body: &Value, text: &str) -> Vec<(String, String)> {
    body["violations"]
        .as_array()
        .unwrap_or_else(|| panic!("violations array expected: {body}"))
        .iter()
        .map(|v| {
            let start = v["start"].as_u64().expect("start") as usize;
            let end = v["end"].as_u64().expect("end") as usize;
            (
                v["phrase"].as_str().expect("phrase").to_owned(),
                text[start..end].to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn you_should_in_research_mode_is_a_violation_at_bytes_0_to_10() {
    let app = TestApp::spawn().await;
    let body = filter(&app, "You should use Docker", "research").await;
    assert_eq!(
        body,
        json!({
            "valid": false,
            "checked": true,
            "drag_mode": "research",
            "violations": [{"phrase": "you should", "start": 0, "end": 10}],
        })
    );
}

#[tokio::test]
async fn execute_mode_output_is_not_checked() {
    let app = TestApp::spawn().await;
    let body = filter(&app, "You should use Docker", "execute").await;
    assert_eq!(body["valid"], true);
    assert_eq!(body["checked"], false);
    assert_eq!(body["violations"], json!([]));
}

#[tokio::test]
async fn full_width_disguise_is_caught() {
    let app = TestApp::spawn().await;
    let text = "Ｙｏｕ ｓｈｏｕｌｄ use Docker";
    let body = filter(&app, text, "draft").await;
    assert_eq!(body["valid"], false, "{body}");
    assert_eq!(
        found(&body, text),
        vec![("you should".to_owned(), "Ｙｏｕ ｓｈｏｕｌｄ".to_owned())]
    );
}

#[tokio::test]
async fn zero_width_disguise_is_caught() {
    let app = TestApp::spawn().await;
    let text = "Honestly, y\u{200B}ou sh\u{200D}ould use Docker";
    let body = filter(&app, text, "research").await;
    assert_eq!(body["valid"], false, "{body}");
    assert_eq!(
        found(&body, text),
        vec![(
            "you should".to_owned(),
            "y\u{200B}ou sh\u{200D}ould".to_owned()
        )]
    );
}

#[tokio::test]
async fn you_shoulder_the_load_is_not_a_violation() {
    let app = TestApp::spawn().await;
    let body = filter(&app, "Today you shoulder the load", "research").await;
    assert_eq!(body["valid"], true, "{body}");
    assert_eq!(body["checked"], true);
    assert_eq!(body["violations"], json!([]));
}

#[tokio::test]
async fn bad_drag_mode_is_400() {
    let app = TestApp::spawn().await;
    for mode in ["analysis", "EXECUTE", "sprint"] {
        let body = app
            .post_json(
                "/governance/filter",
                &json!({"text": "anything", "drag_mode": mode}),
                None,
            )
            .await
            .expect(400, "VALIDATION_ERROR");
        assert!(body["error"].as_str().is_some(), "{body}");
    }
}

#[tokio::test]
async fn confusable_letters_of_other_scripts_are_caught() {
    let app = TestApp::spawn().await;
    // Cyrillic ѕ (U+0455); Cyrillic о and у; Greek ο and υ with Cyrillic е; Armenian օ; upper-case
    // Cyrillic and Greek; a mathematical bold y (folded by NFKC).
    for (text, phrase) in [
        ("You ѕhould use Docker", "you should"),
        ("yоu shоuld use Docker", "you should"),
        ("Υου ΜUЅТ use Docker", "you must"),
        ("I rеcommеnd Docker", "i recommend"),
        ("you sh\u{0585}uld use Docker", "you should"),
        ("\u{1D432}ou should use Docker", "you should"),
        ("Thе bеѕt οption is Docker", "the best option is"),
    ] {
        let body = filter(&app, text, "draft").await;
        assert_eq!(body["valid"], false, "{text}: {body}");
        let hits = found(&body, text);
        assert_eq!(hits.len(), 1, "{text}: {body}");
        assert_eq!(hits[0].0, phrase, "{text}: {body}");
    }
    // The folding does not invent a phrase out of ordinary Cyrillic or Greek text.
    let body = filter(&app, "Вы должны выбрать. Πρέπει να επιλέξετε.", "draft").await;
    assert_eq!(body["valid"], true, "{body}");
}
