//! Service-level tests of optimistic concurrency: when another writer commits to a request
//! between our load and our commit, the commit really conflicts in the database and the
//! service must re-decide on fresh state. The competing writer stands in for a second instance.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use jiff::Timestamp;
use serde_json::json;
use signoff_engine::machine::{self, Action, Command};
use signoff_engine::{Directory, Policy, RequestState};
use signoff_server::service::{ActionBody, Caller, SubmitBody};
use signoff_server::{Service, Sources, SystemClock};
use signoff_store::{
    Attempt, Commit, CommitOutcome, DeliveryReport, KeyMatch, ListQuery, Notification, Page, PolicyRecord, Result, Store,
};
use signoff_store_sqlite::SqliteStore;

/// Forwards to SQLite, but before the next action commit it lets a competitor commit first.
struct Contended {
    inner: SqliteStore,
    competitor: Mutex<Option<Commit>>,
}

#[async_trait]
impl Store for Contended {
    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }
    async fn put_policy(&self, p: &PolicyRecord) -> Result<()> {
        self.inner.put_policy(p).await
    }
    async fn policy(&self, hash: &str) -> Result<Option<PolicyRecord>> {
        self.inner.policy(hash).await
    }
    async fn policies(&self) -> Result<Vec<PolicyRecord>> {
        self.inner.policies().await
    }
    async fn load(&self, id: &str) -> Result<Option<RequestState>> {
        self.inner.load(id).await
    }
    async fn event_bodies(&self, id: &str) -> Result<Vec<String>> {
        self.inner.event_bodies(id).await
    }
    async fn commit_all(&self, commits: Vec<Commit>) -> Result<CommitOutcome> {
        let competitor = self.competitor.lock().unwrap().take();
        if let Some(c) = competitor {
            assert_eq!(self.inner.commit(c).await?, CommitOutcome::Committed);
        }
        self.inner.commit_all(commits).await
    }
    async fn claim_timers(&self, now: Timestamp, limit: u32, lease_until: Timestamp) -> Result<Vec<String>> {
        self.inner.claim_timers(now, limit, lease_until).await
    }
    async fn next_timer_at(&self) -> Result<Option<Timestamp>> {
        self.inner.next_timer_at().await
    }
    async fn lineage(&self, lineage: &str) -> Result<Vec<RequestState>> {
        self.inner.lineage(lineage).await
    }
    async fn claim_notifications(&self, now: Timestamp, limit: u32, lease_until: Timestamp) -> Result<Vec<Notification>> {
        self.inner.claim_notifications(now, limit, lease_until).await
    }
    async fn next_notification_at(&self) -> Result<Option<Timestamp>> {
        self.inner.next_notification_at().await
    }
    async fn record_attempts(&self, attempts: Vec<Attempt>) -> Result<()> {
        self.inner.record_attempts(attempts).await
    }
    async fn notification(&self, id: &str) -> Result<Option<Notification>> {
        self.inner.notification(id).await
    }
    async fn deliveries(&self, request_id: &str) -> Result<Vec<DeliveryReport>> {
        self.inner.deliveries(request_id).await
    }
    async fn use_once(&self, key: &str, at: Timestamp) -> Result<bool> {
        self.inner.use_once(key, at).await
    }
    async fn directory_changes(&self, after: u64) -> Result<Vec<(u64, String)>> {
        self.inner.directory_changes(after).await
    }
    async fn append_directory_change(&self, seq: u64, body: &str) -> Result<bool> {
        self.inner.append_directory_change(seq, body).await
    }
    async fn take_tokens(&self, key: &str, rate: signoff_store::rate::Rate, now: Timestamp, want: u32) -> Result<std::result::Result<u32, std::time::Duration>> {
        self.inner.take_tokens(key, rate, now, want).await
    }
    async fn put_session(&self, s: &signoff_store::Session) -> Result<()> {
        self.inner.put_session(s).await
    }
    async fn session(&self, id_hash: &str, now: Timestamp) -> Result<Option<signoff_store::Session>> {
        self.inner.session(id_hash, now).await
    }
    async fn end_session(&self, id_hash: &str) -> Result<()> {
        self.inner.end_session(id_hash).await
    }
    async fn list(&self, q: &ListQuery) -> Result<Page> {
        self.inner.list(q).await
    }
    async fn gauges(&self, now: Timestamp) -> Result<signoff_store::Gauges> {
        self.inner.gauges(now).await
    }
    async fn tasks(&self, q: &signoff_store::TaskQuery) -> Result<signoff_store::TaskPage> {
        self.inner.tasks(q).await
    }
    async fn idempotency(&self, scope: &str, key: &str, fp: &str) -> Result<Option<KeyMatch>> {
        self.inner.idempotency(scope, key, fp).await
    }
    async fn sequence_log(&self, limit: u32) -> Result<u64> {
        self.inner.sequence_log(limit).await
    }
    async fn log_size(&self) -> Result<signoff_store::LogSize> {
        self.inner.log_size().await
    }
    async fn log_nodes(&self, wanted: &[signoff_audit::merkle::Node]) -> Result<std::collections::HashMap<signoff_audit::merkle::Node, signoff_audit::merkle::Hash>> {
        self.inner.log_nodes(wanted).await
    }
    async fn log_leaves(&self, from: u64, limit: u32) -> Result<Vec<signoff_store::LogLeaf>> {
        self.inner.log_leaves(from, limit).await
    }
    async fn log_leaves_of(&self, request_id: &str) -> Result<Vec<signoff_store::LogLeaf>> {
        self.inner.log_leaves_of(request_id).await
    }
    async fn audit_rows(&self, from: u64, limit: u32) -> Result<Vec<signoff_store::log::AuditRow>> {
        self.inner.audit_rows(from, limit).await
    }
    async fn retention_candidates(&self, policy: Option<&str>, statuses: &[signoff_engine::RequestStatus], before: jiff::Timestamp, limit: u32) -> Result<Vec<String>> {
        self.inner.retention_candidates(policy, statuses, before, limit).await
    }
    async fn purge(&self, ids: &[String], archive: &str, at: jiff::Timestamp) -> Result<u64> {
        self.inner.purge(ids, archive, at).await
    }
    async fn purged(&self) -> Result<std::collections::HashMap<String, String>> {
        self.inner.purged().await
    }
    async fn prune(&self, a: jiff::Timestamp, b: jiff::Timestamp, c: jiff::Timestamp) -> Result<signoff_store::Pruned> {
        self.inner.prune(a, b, c).await
    }
    async fn put_facts(&self, rows: Vec<signoff_store::FactsRow>, cursor: u64) -> Result<()> {
        self.inner.put_facts(rows, cursor).await
    }
    async fn facts_cursor(&self) -> Result<u64> {
        self.inner.facts_cursor().await
    }
    async fn facts_page(&self, after: (u64, &str), limit: u32) -> Result<Vec<signoff_store::FactsRow>> {
        self.inner.facts_page(after, limit).await
    }
}

fn caller(id: &str) -> Caller {
    Caller { id: id.into(), admin: false, origin: None }
}

#[tokio::test]
async fn a_lost_race_is_re_decided_on_fresh_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Contended { inner: SqliteStore::open(dir.path().join("db")).unwrap(), competitor: Mutex::new(None) });
    let service = Service::start(store.clone(), Sources::default(), Arc::new(SystemClock)).await.unwrap();
    let body = SubmitBody {
        policy: "quote-discount".into(),
        title: None,
        subject: None,
        context: json!({"quote": {"total": 48000, "discount": 0.18, "margin": 0.21, "nonstandard_clause": false}}),
        evidence: vec![],
        resubmits: None,
    };
    let id = service.submit(&caller("alice"), body, None).await.unwrap().json()["id"].as_str().unwrap().to_string();

    // The competitor (fiona, on "another instance") approves finance from the same version.
    let state = store.load(&id).await.unwrap().unwrap();
    let catalog = service.catalog();
    let policy: &Policy = &catalog.policies["quote-discount"];
    let directory: &Directory = &catalog.directory;
    let fiona = Command { actor: "fiona".into(), action: Action::Approve { step: "finance".into(), comment: None, edits: None } };
    let d = machine::decide(policy, directory, &state, &fiona, service.now());
    *store.competitor.lock().unwrap() = Some(Commit { expected_version: state.version, events: d.events, state: Arc::new(d.state), idempotency: None, notifications: Vec::new(), encoded_state: None, previous: None });

    let approve = ActionBody::Approve { step: "manager".into(), comment: None, edits: None };
    let reply = service.act(&caller("mark"), &id, approve, None).await.unwrap();
    assert_eq!(reply.kind.status(), 200);
    assert_eq!(reply.json()["status"], "approved", "mark's approval, re-decided after fiona's, completes the request");

    let events = store.events(&id).await.unwrap();
    signoff_engine::event::verify_chain(&events).unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.type_name()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "completed").count(), 1);
    assert_eq!(kinds.iter().filter(|k| **k == "approved").count(), 2, "{kinds:?}");
    assert_eq!(store.load(&id).await.unwrap().unwrap(), RequestState::fold(&events).unwrap());
}
