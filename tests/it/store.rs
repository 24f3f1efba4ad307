//! The gate writes through the `AuditStore` trait: any store will do, and the gate fails closed
//! when the store cannot record.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use serde_json::Value;
use sustainbot::audit::query::{Filter, Page};
use sustainbot::audit::verify::{Report, VerifyOptions};
use sustainbot::audit::{AuditError, AuditStore, Receipt, Record, SinkStatus};
use sustainbot::auth::Principal;
use sustainbot::governance::filter::PhraseList;
use sustainbot::metrics::Metrics;
use sustainbot::pipeline::{Gate, GateError, RequestBody, RunLimits, RunRequest, Submitted, Wait};
use sustainbot::trace::TraceId;
use sustainbot::workflow::llm::LlmEndpoint;
use sustainbot::workflow::{Runner, Services, WorkflowRegistry};

use crate::helpers::{governance_request, JAKE};

/// Records in memory; refuses everything while `down`.
#[derive(Default)]
struct Memory {
    records: Mutex<Vec<Value>>,
    down: AtomicBool,
}

impl AuditStore for Memory {
    fn append(&self, record: Record) -> BoxFuture<'_, Result<Receipt, AuditError>> {
        Box::pin(async move {
            if self.down.load(Ordering::SeqCst) {
                return Err(AuditError::Write("the store is down".to_owned()));
            }
            let mut records = self.records.lock().unwrap();
            records.push(serde_json::to_value(&record).unwrap());
            Ok(Receipt {
                seq: records.len() as u64,
                hash: String::new(),
            })
        })
    }

    fn status(&self) -> SinkStatus {
        SinkStatus {
            healthy: !self.down.load(Ordering::SeqCst),
            path: "memory".into(),
            head_seq: self.records.lock().unwrap().len() as u64,
            last_error: None,
            signing: false,
            foreign_tail_events: 0,
            last_foreign_tail: None,
        }
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    fn query(&self, _: &Filter, _: usize) -> std::io::Result<Page> {
        Err(std::io::Error::other("not needed here"))
    }

    fn for_each(&self, _: &Filter, _: &mut dyn FnMut(Value)) -> std::io::Result<()> {
        Ok(())
    }

    fn verify(&self, _: &VerifyOptions) -> std::io::Result<Report> {
        Err(std::io::Error::other("not needed here"))
    }
}

fn gate(store: Arc<Memory>, workflows: &std::path::Path) -> Gate {
    let services = Services {
        http: Default::default(),
        llm: LlmEndpoint::ollama("127.0.0.1", 9, "none"),
        phrases: Arc::new(PhraseList::default_forbidden()),
        openclaw_url: "http://127.0.0.1:9".to_owned(),
        server_url: "http://127.0.0.1:9".to_owned(),
        run_as: None,
    };
    Gate::new(
        store,
        Arc::new(WorkflowRegistry::load(workflows)),
        Runner::new(workflows.to_owned(), services),
        Arc::new(Metrics::default()),
        RunLimits {
            workers: 4,
            queue: 4,
            waiting_for_approval: 4,
            max_parameter_bytes: 64 * 1024,
        },
        false,
    )
}

#[tokio::test]
async fn the_gate_records_through_any_audit_store_and_fails_closed_when_it_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    std::fs::write(
        dir.path().join("touch.json"),
        serde_json::json!({"steps": [{"id": "t", "command": ["touch", marker.to_str().unwrap()]}]})
            .to_string(),
    )
    .unwrap();
    let store = Arc::new(Memory::default());
    let gate = gate(Arc::clone(&store), dir.path());
    let principal = Principal::new(Some(JAKE.to_owned()), "admin".into(), None);
    let request = |trace: &str| RunRequest {
        trace_id: TraceId::parse(trace).unwrap(),
        principal: principal.clone(),
        body: RequestBody::Governed(Ok(Some(governance_request("touch")))),
        approvable: false,
    };

    let Ok(Submitted::Finished(report)) = gate.submit(request("mem-1"), Wait::Outcome).await else {
        panic!("the run finishes");
    };
    assert!(report.success);
    assert!(marker.exists());
    let outcomes: Vec<Value> = store
        .records
        .lock()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].clone())
        .collect();
    assert_eq!(outcomes, ["started", "success"]);

    // The store is down: nothing runs without its record.
    std::fs::remove_file(&marker).unwrap();
    store.down.store(true, Ordering::SeqCst);
    let refused = gate
        .submit(request("mem-2"), Wait::Outcome)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, GateError::AuditUnavailable(_)),
        "{refused:?}"
    );
    assert!(!marker.exists(), "the step did not run");
    assert_eq!(store.records.lock().unwrap().len(), 2);
}
