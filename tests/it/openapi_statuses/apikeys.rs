//! The scenarios of `openapi_statuses.rs` that manage API keys.

use serde_json::json;

use super::{bearer, json_body, send, Seen};
use crate::helpers::{TestApp, ANA, JAKE};

pub(super) async fn apikeys(app: &TestApp, seen: &mut Seen) {
    let admin = app.jake();
    let user = app.token(ANA, "user");
    let json_type = ("content-type", "application/json".to_owned());
    let mut created = None;
    for (token, body) in [
        (
            &admin,
            json!({"owner": JAKE, "role": "deployer", "name": "ci"}),
        ),
        (&admin, json!({"owner": "not an email", "role": "deployer"})),
        (&user, json!({"owner": JAKE, "role": "deployer"})),
    ] {
        let headers = [bearer(token), json_type.clone()];
        let reply = send(app, "POST", "/apikeys", &headers, json_body(&body)).await;
        let answer = seen.add("POST", "/apikeys", &reply);
        if reply.status == 201 {
            created = Some(answer);
        }
    }
    let created = created.expect("a key was created");
    let key = created["key"].as_str().expect("the key");
    let id = created["id"].as_str().expect("its id");
    for headers in [
        vec![bearer(&admin)],
        vec![bearer(&user)],
        // A key may not manage keys, whatever its role.
        vec![("x-api-key", key.to_owned())],
    ] {
        let reply = send(app, "GET", "/apikeys", &headers, Vec::new()).await;
        seen.add("GET", "/apikeys", &reply);
    }
    for (path, token) in [
        (format!("/apikeys/{id}"), &user),
        (format!("/apikeys/{id}"), &admin),
        ("/apikeys/0000000000000000".to_owned(), &admin),
        ("/apikeys/not-an-id".to_owned(), &admin),
    ] {
        let reply = send(app, "DELETE", &path, &[bearer(token)], Vec::new()).await;
        seen.add("DELETE", &path, &reply);
    }
}
