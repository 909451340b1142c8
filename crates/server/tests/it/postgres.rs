//! The service on PostgreSQL: two instances on one database, clients spreading their calls
//! across both. Skipped (and said so) when no PostgreSQL is reachable.

use std::sync::Arc;

use serde_json::json;
use signoff_server::service::{ActionBody, Caller, SubmitBody};
use signoff_server::{Config, Database, Service, Sources, SystemClock};
use signoff_store_postgres::testing::TestDatabase;

/// A quote-discount submission that needs the manager and finance.
fn quote_submission(subject: Option<&str>) -> SubmitBody {
    SubmitBody {
        policy: "quote-discount".into(),
        title: None,
        subject: subject.map(str::to_string),
        context: signoff_testkit::app::quote(0.18, 0.21),
        evidence: vec![],
        resubmits: None,
    }
}

/// An instance on `db` with the bundled policies and the system clock.
async fn instance(db: &TestDatabase) -> Arc<Service> {
    let config = Config::new(Database::Postgres(db.url.clone()), Sources::default());
    signoff_server::build(&config, Arc::new(SystemClock)).await.unwrap()
}

fn caller(id: &str) -> Caller {
    Caller { id: id.into(), admin: false, origin: None }
}

fn approve(step: &str) -> ActionBody {
    ActionBody::Approve { step: step.into(), comment: None, edits: None }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_database_decide_each_request_once() {
    let Some(db) = TestDatabase::create("two instances on one database") else { return };
    let (a, b) = (instance(&db).await, instance(&db).await);
    for i in 0..20 {
        let body = quote_submission(Some(&format!("S-{i}")));
        let submitter = if i % 2 == 0 { &a } else { &b };
        let id = submitter.submit(&caller("alice"), body, None).await.unwrap().json()["id"].as_str().unwrap().to_string();
        // The two approvals race on different instances: one commit loses and is re-decided.
        let (mark, fiona) = (caller("mark"), caller("fiona"));
        let (x, y) = tokio::join!(a.act(&mark, &id, approve("manager"), None), b.act(&fiona, &id, approve("finance"), None));
        assert_eq!((x.unwrap().kind.status(), y.unwrap().kind.status()), (200, 200));
        let events = a.store().events(&id).await.unwrap();
        signoff_engine::event::verify_chain(&events).unwrap();
        assert_eq!(events.iter().filter(|e| e.kind.type_name() == "completed").count(), 1);
        assert_eq!(b.visible(&caller("alice"), &id).await.unwrap().status.as_str(), "approved");
    }
    let page = a.list(&caller("alice"), signoff_store::ListQuery { limit: 500, ..Default::default() }).await.unwrap();
    assert_eq!(page.items.len(), 20);
    drop((a, b, db));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_on_one_instance_see_changes_made_on_another() {
    let Some(db) = TestDatabase::create("changes across instances") else { return };
    let (a, b) = (instance(&db).await, instance(&db).await);
    let body = quote_submission(None);
    let id = a.submit(&caller("alice"), body, None).await.unwrap().json()["id"].as_str().unwrap().to_string();
    // Watch on b (as a stream or a long poll would), act on a.
    let mut watch = b.feed().watch_request(&id);
    let version = a.act(&caller("mark"), &id, approve("manager"), None).await.unwrap().json()["version"].as_u64().unwrap();
    // b may first hear of the submission (its notification can arrive after the watch began).
    let seen = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let s = watch.changed().await.unwrap();
            if s.version >= version {
                return s;
            }
        }
    })
    .await
    .expect("b heard of a's commit");
    assert!(!seen.steps[0].status.is_open(), "b got the state after mark's approval");
    let waiting = {
        let b = b.clone();
        let id = id.clone();
        tokio::spawn(async move { signoff_server::live::wait(&b, &caller("alice"), &id, jiff::SignedDuration::from_secs(30)).await })
    };
    a.act(&caller("fiona"), &id, approve("finance"), None).await.unwrap();
    let done = tokio::time::timeout(std::time::Duration::from_secs(10), waiting).await.unwrap().unwrap().unwrap();
    assert_eq!(done.status.as_str(), "approved", "a long poll on b answers when a closes the request");
    drop((a, b, watch, db));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_set_by_an_instance_that_died_is_fired_by_another() {
    let Some(db) = TestDatabase::create("timers across instances") else { return };
    let policies = tempfile::tempdir().unwrap();
    std::fs::write(policies.path().join("quick.yaml"), "id: quick\nsteps:\n  - {id: only, approvers: {users: [mark]}, sla: 10m, on_timeout: approve}\n").unwrap();
    let sources = Sources { policies: Some(policies.path().to_path_buf()), directory: None };
    let config = Config::new(Database::Postgres(db.url.clone()), sources);
    let clock = Arc::new(signoff_server::ManualClock::new("2026-11-22T09:00:00Z".parse().unwrap()));
    // a sets the timer and runs no scheduler (as if it died right after); b's scheduler is asleep
    // before the timer exists, and no commit of b's tells it about it.
    let a = signoff_server::build(&config, clock.clone()).await.unwrap();
    let b = signoff_server::build(&config, clock.clone()).await.unwrap();
    let scheduler = tokio::spawn(b.workers().scheduler.run());
    while clock.sleepers() == 0 {
        tokio::task::yield_now().await;
    }
    let body = SubmitBody { policy: "quick".into(), title: None, subject: None, context: json!({}), evidence: vec![], resubmits: None };
    let id = a.submit(&caller("alice"), body, None).await.unwrap().json()["id"].as_str().unwrap().to_string();
    // Ten minutes on (well short of an idle scheduler's hour), b looks at the store and fires it.
    clock.advance(jiff::SignedDuration::from_mins(10));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let state = b.visible(&caller("alice"), &id).await.unwrap();
        if state.status.as_str() == "approved" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "b never fired the timer a set");
        tokio::task::yield_now().await;
    }
    scheduler.abort();
    drop((a, b, db));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_postgresql_cannot_hold_is_a_client_error() {
    let Some(db) = TestDatabase::create("NUL characters") else { return };
    let a = instance(&db).await;
    let body = quote_submission(Some("S-\0"));
    let e = a.submit(&caller("alice"), body, None).await.unwrap_err();
    assert_eq!((e.status(), e.code.as_str()), (400, "bad_parameter"));
    let e = a.visible(&caller("alice"), "req_\0").await.unwrap_err();
    assert_eq!((e.status(), e.code.as_str()), (400, "bad_parameter"), "{}", e.detail);
    drop((a, db));
}
