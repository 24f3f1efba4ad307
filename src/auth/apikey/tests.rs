use std::io;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use serde_json::{json, Value};

use super::*;
use crate::audit::query::{Filter, Page};
use crate::audit::verify::{Report, VerifyOptions};
use crate::audit::{AuditError, AuditStore, Receipt, Record, SinkStatus};
use crate::sync::lock;

fn request(owner: &str, role: &str) -> KeyRequest {
    KeyRequest {
        owner: owner.to_owned(),
        role: role.to_owned(),
        ..KeyRequest::default()
    }
}

fn issue(request: &KeyRequest) -> (ApiKey, String) {
    let (key, text) = request.issue(Principal::local_operator()).unwrap();
    (key, text.expose().to_owned())
}

#[test]
fn a_key_is_sbk_id_secret_and_only_its_hash_matches_it() {
    let (key, text) = issue(&request("jake@example.org", "deployer"));
    assert!(text.starts_with("sbk_"), "{text}");
    assert_eq!(text.len(), 4 + 16 + 1 + 64);
    assert_eq!(presented_id(&text), Some(key.id.clone()));
    assert!(key.hash.starts_with("sha256:") && key.hash.len() == 7 + 64);
    assert!(
        !key.hash.contains(&text[21..]),
        "the hash is not the secret"
    );
    assert!(matches(&key.hash, &text));
    let mut wrong = text.clone();
    let last = if wrong.ends_with('0') { "1" } else { "0" };
    wrong.replace_range(wrong.len() - 1.., last);
    assert_eq!(presented_id(&wrong), Some(key.id.clone()), "same id");
    assert!(!matches(&key.hash, &wrong), "another secret");
    let (other, _) = issue(&request("jake@example.org", "deployer"));
    assert_ne!(other.id, key.id);
}

#[test]
fn only_the_exact_shape_is_a_presented_key() {
    let secret = "a".repeat(64);
    assert!(presented_id(&format!("sbk_0123456789abcdef_{secret}")).is_some());
    for bad in [
        format!("sbk_0123456789ABCDEF_{secret}"),
        format!("sbk_0123456789abcde_{secret}"),
        format!("sbk_0123456789abcdef_{}", &secret[1..]),
        format!("sbk_0123456789abcdef_{secret}a"),
        format!("sbk_0123456789abcdef-{secret}"),
        format!("0123456789abcdef_{secret}"),
        format!("sbk_0123456789abcdef_{}", "g".repeat(64)),
        "sbk_".to_owned(),
        String::new(),
    ] {
        assert_eq!(presented_id(&bad), None, "{bad}");
    }
    assert!(KeyId::parse("0123456789abcdef").is_some());
    assert!(KeyId::parse("../../etc/passwd").is_none());
}

#[test]
fn workflow_patterns_match_whole_names_with_stars() {
    let patterns = |p: &[&str]| p.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert!(workflow_allowed(&patterns(&["deploy-*"]), "deploy-staging"));
    assert!(workflow_allowed(&patterns(&["deploy-*"]), "deploy-"));
    assert!(!workflow_allowed(
        &patterns(&["deploy-*"]),
        "x-deploy-staging"
    ));
    assert!(!workflow_allowed(&patterns(&["deploy"]), "deploy-staging"));
    assert!(workflow_allowed(&patterns(&["report", "deploy"]), "deploy"));
    assert!(workflow_allowed(&patterns(&["*"]), "anything"));
    assert!(workflow_allowed(&patterns(&["a*b*c"]), "aXbYbZc"));
    assert!(!workflow_allowed(&patterns(&["a*b*c"]), "aXbYbZ"));
    assert!(workflow_allowed(&patterns(&["*-prod"]), "db-backup-prod"));
    assert!(!workflow_allowed(&[], "deploy"));
}

#[test]
fn a_scoped_key_may_run_only_its_workflows_and_never_decide() {
    let mut scoped = request("jake@example.org", "deployer");
    scoped.workflows = Some(vec!["deploy-*".to_owned()]);
    let (key, _) = issue(&scoped);
    let principal = key.principal();
    assert_eq!(principal.actor.as_deref(), Some("jake@example.org"));
    assert_eq!(principal.role, Role::Named("deployer".into()));
    assert!(check_scope(&principal, "deploy-staging").is_ok());
    let refused = check_scope(&principal, "wipe-prod").unwrap_err();
    assert!(
        refused.message.contains("wipe-prod") && refused.message.contains(key.id.as_str()),
        "{refused}"
    );
    assert!(in_person(&principal, "decide a run").is_err());
    let (unscoped, _) = issue(&request("jake@example.org", "deployer"));
    assert!(check_scope(&unscoped.principal(), "wipe-prod").is_ok());
    let person = Principal::new(Some("jake@example.org".into()), Role::Admin, None);
    assert!(check_scope(&person, "wipe-prod").is_ok());
    assert!(in_person(&person, "decide a run").is_ok());
}

#[test]
fn a_request_names_every_problem() {
    assert!(request("jake@example.org", "deployer").check().is_ok());
    for (bad, needle) in [
        (request("jake", "deployer"), "owner"),
        (request(" jake@example.org", "deployer"), "owner"),
        (request("jake@example.org", ""), "role"),
        (request("jake@example.org", "two words"), "role"),
        (request("jake@example.org", "cli"), "server's own"),
        (request("jake@example.org", "system"), "server's own"),
        (
            KeyRequest {
                expires_days: Some(0),
                ..request("jake@example.org", "x")
            },
            "expires_days",
        ),
        (
            KeyRequest {
                expires_days: Some(MAX_EXPIRES_DAYS + 1),
                ..request("jake@example.org", "x")
            },
            "expires_days",
        ),
        (
            KeyRequest {
                workflows: Some(Vec::new()),
                ..request("jake@example.org", "x")
            },
            "workflows",
        ),
        (
            KeyRequest {
                workflows: Some(vec!["deploy/../x".to_owned()]),
                ..request("jake@example.org", "x")
            },
            "pattern",
        ),
        (
            KeyRequest {
                name: Some("a\nb".to_owned()),
                ..request("jake@example.org", "x")
            },
            "name",
        ),
    ] {
        let problems = bad.check().unwrap_err();
        assert!(problems.contains(needle), "{bad:?}: {problems}");
        assert!(bad.issue(Principal::local_operator()).is_err());
    }
    let both = request("jake", "cli").check().unwrap_err();
    assert!(both.contains("owner") && both.contains("role"), "{both}");
}

#[test]
fn status_is_revoked_then_expired_then_pending_then_active() {
    let (mut key, _) = issue(&request("jake@example.org", "deployer"));
    let at = now();
    assert_eq!(key.status(at), KeyStatus::Pending);
    key.creation_recorded = true;
    assert_eq!(key.status(at), KeyStatus::Active);
    key.expires_at = Some(at);
    assert_eq!(key.status(at), KeyStatus::Expired);
    key.revoked_at = Some(at);
    assert_eq!(key.status(at), KeyStatus::Revoked);
}

#[test]
fn a_principal_with_a_key_encodes_for_the_trail_as_the_generic_encoding_does() {
    use crate::audit::{encode, encode_generic, Outcome, RunRecord};
    let mut scoped = request("jake@example.org", "deployer");
    scoped.workflows = Some(vec!["b-*".to_owned(), "a".to_owned()]);
    let (key, _) = issue(&scoped);
    let record = |principal: Principal| {
        Record::Run(RunRecord {
            trace_id: "t".into(),
            aim: Value::Null,
            drag_mode: None,
            workflow_name: None,
            parameters: json!({}),
            outcome: Outcome::Started,
            error: None,
            code: None,
            duration_seconds: None,
            principal: Some(principal),
            steps: Value::Null,
            governed: None,
            policy_rule: None,
        })
    };
    let keyed = record(key.principal());
    let (mut direct, mut generic) = (Vec::new(), Vec::new());
    encode(&keyed).seal(1, crate::audit::format::GENESIS_HASH, "T", &mut direct);
    encode_generic(&keyed).seal(1, crate::audit::format::GENESIS_HASH, "T", &mut generic);
    assert_eq!(
        String::from_utf8_lossy(&direct),
        String::from_utf8_lossy(&generic)
    );
    let line = String::from_utf8(direct).unwrap();
    assert!(
        line.contains(&format!(
            r#""principal":{{"actor":"jake@example.org","api_key":{{"id":"{}","workflows":["b-*","a"]}},"role":"deployer""#,
            key.id
        )),
        "{line}"
    );
    // A token's principal is written exactly as before keys existed.
    let person = Principal::new(Some("a@b.org".into()), Role::Admin, None);
    let mut bytes = Vec::new();
    encode(&record(person)).seal(1, crate::audit::format::GENESIS_HASH, "T", &mut bytes);
    let line = String::from_utf8(bytes).unwrap();
    assert!(
        line.contains(r#""principal":{"actor":"a@b.org","role":"admin","user_id":null}"#),
        "{line}"
    );
}

// --- The file store ---------------------------------------------------------------------------

fn file_store() -> (tempfile::TempDir, FileKeyStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = FileKeyStore::new(&dir.path().join("keys/api_keys.json"));
    (dir, store)
}

#[test]
fn the_file_holds_hashes_only_with_mode_0600_and_reads_back() {
    let (_dir, store) = file_store();
    assert_eq!(store.read().unwrap(), (Vec::new(), 0), "no file, no keys");
    let (key, text) = issue(&request("jake@example.org", "deployer"));
    store.insert_now(key.clone()).unwrap();
    let written = std::fs::read_to_string(store.path()).unwrap();
    assert!(!written.contains(&text), "the key is not in the file");
    assert!(!written.contains(&text[21..]), "nor its secret");
    assert!(written.contains(&key.hash));
    let mode = std::fs::metadata(store.path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let (keys, version) = store.read().unwrap();
    assert_eq!(keys, vec![key.clone()]);
    assert_ne!(version, 0);
    assert!(
        store.insert_now(key).is_err(),
        "an id that exists is refused"
    );
}

#[test]
fn every_write_changes_the_version() {
    let (_dir, store) = file_store();
    let (key, _) = issue(&request("jake@example.org", "deployer"));
    store.insert_now(key.clone()).unwrap();
    let first = store.version_now().unwrap();
    store
        .mark_recorded_now(&[(key.id.clone(), KeyEvent::Created)])
        .unwrap();
    let second = store.version_now().unwrap();
    assert_ne!(first, second);
    assert!(store.read().unwrap().0[0].creation_recorded);
}

#[test]
fn two_writers_at_once_lose_nothing() {
    let (_dir, store) = file_store();
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || {
                for _ in 0..10 {
                    let (key, _) = issue(&request("jake@example.org", "deployer"));
                    store.insert_now(key).unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    assert_eq!(store.read().unwrap().0.len(), 40);
}

#[test]
fn a_writer_waits_for_the_lock_another_holds() {
    let (_dir, store) = file_store();
    let (key, _) = issue(&request("jake@example.org", "deployer"));
    store.insert_now(key.clone()).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let holder = store.clone();
    let held = std::thread::spawn(move || {
        holder
            .update(|_| {
                tx.send(()).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(300));
                Ok(())
            })
            .unwrap();
    });
    rx.recv().unwrap();
    let started = std::time::Instant::now();
    store
        .revoke_now(&key.id, Principal::local_operator(), now())
        .unwrap();
    assert!(started.elapsed() >= std::time::Duration::from_millis(200));
    held.join().unwrap();
    assert!(store.read().unwrap().0[0].revoked_at.is_some());
}

#[test]
fn a_broken_file_is_an_error_not_an_empty_store() {
    let (_dir, store) = file_store();
    std::fs::create_dir_all(store.path().parent().unwrap()).unwrap();
    for text in [
        "not json".to_owned(),
        r#"{"format": "something-else", "keys": []}"#.to_owned(),
    ] {
        std::fs::write(store.path(), text).unwrap();
        assert!(store.read().is_err());
        let (key, _) = issue(&request("jake@example.org", "deployer"));
        assert!(store.insert_now(key).is_err(), "nothing is written over it");
    }
    let (key, _) = issue(&request("jake@example.org", "deployer"));
    let twice = json!({"format": "sustainbot-api-keys-v1", "keys": [key, key]});
    std::fs::write(store.path(), twice.to_string()).unwrap();
    let error = store.read().unwrap_err().to_string();
    assert!(error.contains("twice"), "{error}");
}

#[test]
fn revoking_keeps_the_first_revocation_and_unknown_ids_are_not_found() {
    let (_dir, store) = file_store();
    let (key, _) = issue(&request("jake@example.org", "deployer"));
    store.insert_now(key.clone()).unwrap();
    let first = now() - chrono::Duration::seconds(60);
    let revoked = store
        .revoke_now(&key.id, Principal::local_operator(), first)
        .unwrap();
    assert_eq!(revoked.revoked_at, Some(first));
    let again = store
        .revoke_now(&key.id, Principal::server(), now())
        .unwrap();
    assert_eq!(again.revoked_at, Some(first));
    assert_eq!(again.revoked_by, Some(Principal::local_operator()));
    let unknown = KeyId::parse("0000000000000000").unwrap();
    assert_eq!(
        store.revoke_now(&unknown, Principal::server(), now()),
        Err(KeyStoreError::NotFound(unknown))
    );
}

#[test]
fn last_uses_only_move_forward() {
    let (_dir, store) = file_store();
    let (key, _) = issue(&request("jake@example.org", "deployer"));
    store.insert_now(key.clone()).unwrap();
    let later = now();
    let earlier = later - chrono::Duration::seconds(30);
    store.record_uses_now(&[(key.id.clone(), later)]).unwrap();
    store.record_uses_now(&[(key.id.clone(), earlier)]).unwrap();
    assert_eq!(store.read().unwrap().0[0].last_used_at, Some(later));
}

// --- The server's registry --------------------------------------------------------------------

/// An audit trail in memory that can be made to fail.
#[derive(Default)]
struct Trail {
    records: Mutex<Vec<Value>>,
    broken: AtomicBool,
}

impl Trail {
    fn apikey_records(&self) -> Vec<Value> {
        lock(&self.records)
            .iter()
            .filter(|r| r["kind"] == "apikey")
            .cloned()
            .collect()
    }
}

impl AuditStore for Trail {
    fn append(&self, record: Record) -> BoxFuture<'_, Result<Receipt, AuditError>> {
        Box::pin(async move {
            if self.broken.load(Ordering::Relaxed) {
                return Err(AuditError::Write("disk full".into()));
            }
            let mut records = lock(&self.records);
            records.push(serde_json::to_value(&record).unwrap());
            Ok(Receipt {
                seq: records.len() as u64,
                hash: String::new(),
            })
        })
    }

    fn status(&self) -> SinkStatus {
        SinkStatus {
            healthy: true,
            path: Default::default(),
            head_seq: 0,
            last_error: None,
            signing: false,
            foreign_tail_events: 0,
            last_foreign_tail: None,
        }
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    fn query(&self, _: &Filter, _: usize) -> io::Result<Page> {
        Err(io::Error::other("not in this test"))
    }

    fn for_each(&self, _: &Filter, _: &mut dyn FnMut(Value)) -> io::Result<()> {
        Ok(())
    }

    fn verify(&self, _: &VerifyOptions) -> io::Result<Report> {
        Err(io::Error::other("not in this test"))
    }
}

fn registry() -> (tempfile::TempDir, FileKeyStore, Arc<Trail>, ApiKeys) {
    let (dir, store) = file_store();
    let trail = Arc::new(Trail::default());
    let keys = ApiKeys::new(
        Arc::new(store.clone()),
        Arc::clone(&trail) as Arc<dyn AuditStore>,
    );
    (dir, store, trail, keys)
}

#[tokio::test]
async fn a_key_from_the_command_line_is_accepted_once_its_creation_is_recorded_once() {
    let (_dir, store, trail, keys) = registry();
    let (key, text) = issue(&request("jake@example.org", "deployer"));
    store.insert_now(key.clone()).unwrap();
    assert_eq!(
        keys.authenticate(&text),
        Err(Refusal::Invalid),
        "not read yet"
    );
    trail.broken.store(true, Ordering::Relaxed);
    keys.refresh().await.unwrap();
    assert_eq!(
        keys.authenticate(&text),
        Err(Refusal::Pending),
        "not recorded"
    );
    trail.broken.store(false, Ordering::Relaxed);
    keys.refresh().await.unwrap();
    let principal = keys.authenticate(&text).unwrap();
    assert_eq!(principal.actor.as_deref(), Some("jake@example.org"));
    assert_eq!(principal.api_key.as_ref().map(|k| &k.id), Some(&key.id));
    keys.refresh().await.unwrap();
    let records = trail.apikey_records();
    assert_eq!(records.len(), 1, "{records:?}");
    let created = &records[0];
    assert_eq!(created["action"], "created");
    assert_eq!(created["key_id"], key.id.as_str());
    assert_eq!(created["owner"], "jake@example.org");
    assert_eq!(created["role"], "deployer");
    assert_eq!(created["principal"]["role"], "cli");
    let text_of_records = serde_json::to_string(&records).unwrap();
    assert!(!text_of_records.contains(&text) && !text_of_records.contains(&key.hash));
    assert!(
        store.read().unwrap().0[0].creation_recorded,
        "marked in the store"
    );
}

#[tokio::test]
async fn wrong_secrets_revoked_and_expired_keys_are_refused() {
    let (_dir, store, trail, keys) = registry();
    let (key, text) = issue(&request("jake@example.org", "deployer"));
    store.insert_now(key.clone()).unwrap();
    keys.refresh().await.unwrap();
    assert!(keys.authenticate(&text).is_ok());
    let wrong = format!("{}{}", &text[..21], "0".repeat(64));
    assert_eq!(keys.authenticate(&wrong), Err(Refusal::Invalid));
    assert_eq!(keys.authenticate("sbk_garbage"), Err(Refusal::Invalid));

    store
        .update(|all| {
            all[0].expires_at = Some(now() - chrono::Duration::seconds(1));
            Ok(())
        })
        .unwrap();
    keys.refresh().await.unwrap();
    assert_eq!(keys.authenticate(&text), Err(Refusal::Expired));
    assert_eq!(
        keys.authenticate(&wrong),
        Err(Refusal::Invalid),
        "told to the holder only"
    );

    store
        .revoke_now(&key.id, Principal::local_operator(), now())
        .unwrap();
    keys.refresh().await.unwrap();
    assert_eq!(keys.authenticate(&text), Err(Refusal::Revoked));
    let actions: Vec<Value> = trail
        .apikey_records()
        .iter()
        .map(|r| r["action"].clone())
        .collect();
    assert_eq!(actions, [json!("created"), json!("revoked")]);
}

#[tokio::test]
async fn the_server_records_its_own_creations_and_revocations_once() {
    let (_dir, store, trail, keys) = registry();
    let admin = Principal::new(Some("ana@example.org".into()), Role::Admin, None);
    let (key, text) = keys
        .create(&request("jake@example.org", "deployer"), admin.clone())
        .await
        .unwrap();
    assert!(keys.authenticate(text.expose()).is_ok(), "usable at once");
    keys.refresh().await.unwrap();
    let revoked = keys.revoke(key.id.clone(), admin.clone()).await.unwrap();
    assert!(revoked.revoked_at.is_some());
    assert_eq!(keys.authenticate(text.expose()), Err(Refusal::Revoked));
    keys.revoke(key.id.clone(), admin).await.unwrap();
    keys.refresh().await.unwrap();
    let records = trail.apikey_records();
    let actions: Vec<&str> = records
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["created", "revoked"]);
    assert_eq!(records[0]["principal"]["actor"], "ana@example.org");
    let stored = &store.read().unwrap().0[0];
    assert!(stored.creation_recorded && stored.revocation_recorded);
}

#[tokio::test]
async fn a_creation_the_trail_cannot_record_is_undone_and_both_recorded_later() {
    let (_dir, store, trail, keys) = registry();
    trail.broken.store(true, Ordering::Relaxed);
    let admin = Principal::new(Some("ana@example.org".into()), Role::Admin, None);
    let refused = keys
        .create(&request("jake@example.org", "deployer"), admin)
        .await;
    assert!(matches!(refused, Err(ManageError::Audit(_))));
    let stored = store.read().unwrap().0;
    assert_eq!(stored.len(), 1);
    assert!(
        stored[0].revoked_at.is_some(),
        "nobody holds it, and it is revoked"
    );
    trail.broken.store(false, Ordering::Relaxed);
    keys.refresh().await.unwrap();
    let actions: Vec<Value> = trail
        .apikey_records()
        .iter()
        .map(|r| r["action"].clone())
        .collect();
    assert_eq!(actions, [json!("created"), json!("revoked")]);
}

#[tokio::test]
async fn last_uses_are_written_back_in_one_batch_not_per_request() {
    let (_dir, store, _trail, keys) = registry();
    let (key, text) = issue(&request("jake@example.org", "deployer"));
    store.insert_now(key.clone()).unwrap();
    keys.refresh().await.unwrap();
    let version = store.version_now().unwrap();
    for _ in 0..5 {
        keys.authenticate(&text).unwrap();
    }
    assert_eq!(
        store.version_now().unwrap(),
        version,
        "no write per request"
    );
    assert!(
        keys.list()[0].last_used_at.is_some(),
        "the list shows it already"
    );
    keys.flush_uses().await;
    assert!(store.read().unwrap().0[0].last_used_at.is_some());
    let version = store.version_now().unwrap();
    keys.flush_uses().await;
    assert_eq!(
        store.version_now().unwrap(),
        version,
        "nothing new, no write"
    );
}
