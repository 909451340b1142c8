//! Service-level tests: optimistic concurrency between two server instances sharing one
//! database, where commits race and the loser must re-decide on fresh state.

use std::sync::Arc;

use serde_json::json;
use signoff_server::service::{ActionBody, Caller, SubmitBody};
use signoff_server::{Config, Database, Sources, SystemClock};

fn caller(id: &str) -> Caller {
    Caller { id: id.into(), admin: false }
}

fn approve(step: &str) -> ActionBody {
    ActionBody { action: "approve".into(), step: Some(step.into()), comment: None, edits: None, item: None, to: None }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_racing_complete_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config { database: Database::Sqlite(dir.path().join("shared.db")), sources: Sources::default() };
    let a = signoff_server::build(&config, Arc::new(SystemClock)).await.unwrap();
    let b = signoff_server::build(&config, Arc::new(SystemClock)).await.unwrap();
    for _ in 0..20 {
        let body = SubmitBody {
            policy: "quote-discount".into(),
            title: None,
            subject: None,
            context: json!({"quote": {"total": 48000, "discount": 0.18, "margin": 0.21, "nonstandard_clause": false}}),
            evidence: vec![],
            resubmits: None,
        };
        let id = a.submit(&caller("alice"), body, None).await.unwrap().body["id"].as_str().unwrap().to_string();
        // Both instances have the request cached at version 4 before racing.
        a.visible(&caller("alice"), &id).await.unwrap();
        b.visible(&caller("alice"), &id).await.unwrap();
        let (mark, fiona) = (caller("mark"), caller("fiona"));
        let (x, y) = tokio::join!(a.act(&mark, &id, approve("manager"), None), b.act(&fiona, &id, approve("finance"), None));
        let (x, y) = (x.unwrap(), y.unwrap());
        assert_eq!(x.status, 200);
        assert_eq!(y.status, 200);
        let events = a.store().events(&id).await.unwrap();
        signoff_engine::event::verify_chain(&events).unwrap();
        let completions = events.iter().filter(|e| e.kind.type_name() == "completed").count();
        assert_eq!(completions, 1, "exactly one completion");
        assert_eq!(b.visible(&caller("alice"), &id).await.unwrap().status.as_str(), "approved");
    }
}
