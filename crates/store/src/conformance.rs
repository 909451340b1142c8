//! The conformance suite every `Store` implementation must pass. Each check takes a fresh,
//! empty store; implementations call `run_all` from their own tests.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use serde_json::json;
use signoff_engine::event::verify_chain;
use signoff_engine::machine::{self, Action, Command, Submission};
use signoff_engine::{Directory, Policy, RequestState, RequestStatus};

use crate::*;

const DIRECTORY: &str = "users: [{id: alice}, {id: bob}, {id: mark}, {id: fiona}, {id: frank}]\ngroups: {finance: [fiona, frank]}\n";
const POLICY: &str = "id: conf\nsteps:\n  - {id: manager, after: [], approvers: {users: [mark]}, sla: 1h}\n  - {id: finance, after: [], approvers: {groups: [finance]}, sla: 30m}\n";

fn t0() -> Timestamp {
    "2026-11-22T09:00:00Z".parse().unwrap()
}

struct Fixture {
    policy: Policy,
    dir: Directory,
}

impl Fixture {
    fn new() -> Self {
        Fixture::with(POLICY)
    }

    fn with(policy: &str) -> Self {
        Fixture { policy: Policy::from_yaml(policy).unwrap(), dir: Directory::from_yaml(DIRECTORY).unwrap() }
    }

    fn submit(&self, id: &str, requester: &str, subject: &str, at: Timestamp) -> Commit {
        self.submit_in(id, requester, subject, at, None)
    }

    fn submit_in(&self, id: &str, requester: &str, subject: &str, at: Timestamp, lineage: Option<&str>) -> Commit {
        let sub = Submission {
            id: id.into(),
            requester: requester.into(),
            title: Some(format!("title {id}")),
            subject: Some(subject.into()),
            context: json!({"n": 1}),
            evidence: vec![],
            lineage: lineage.map(Into::into),
            resubmits: None,
        };
        let (events, state) = machine::submit(&self.policy, &self.dir, sub, at).unwrap();
        Commit::create(events, Arc::new(state))
    }

    fn act(&self, state: &RequestState, actor: &str, action: Action) -> Commit {
        let d = machine::decide(&self.policy, &self.dir, state, &Command { actor: actor.into(), action }, t0());
        Commit::after(Arc::new(state.clone()), d.events, Arc::new(d.state))
    }
}

fn approve(step: &str) -> Action {
    Action::Approve { step: step.into(), comment: None, edits: None }
}

async fn committed(store: &dyn Store, c: Commit) -> RequestState {
    let state = RequestState::clone(&c.state);
    assert_eq!(store.commit(c).await.unwrap(), CommitOutcome::Committed);
    state
}

/// Runs every check, each on a store from `fresh`.
pub async fn run_all<F, Fut>(fresh: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Store>>,
{
    round_trip(&*fresh().await).await;
    optimistic_concurrency(&*fresh().await).await;
    concurrent_commits_keep_their_outcomes(&*fresh().await).await;
    idempotency_keys(&*fresh().await).await;
    inbox_follows_open_tasks(&*fresh().await).await;
    list_filters_and_pages(&*fresh().await).await;
    lists_by_due_time(&*fresh().await).await;
    policies_by_hash(&*fresh().await).await;
    timers_follow_the_state(&*fresh().await).await;
    lineages(&*fresh().await).await;
    several_requests_commit_together(&*fresh().await).await;
    outbox_delivery_states(&*fresh().await).await;
    outbox_coalescing(&*fresh().await).await;
    keys_are_used_once(&*fresh().await).await;
    rate_buckets_fill_and_empty(&*fresh().await).await;
    directory_changes_are_appended_once_in_order(&*fresh().await).await;
    sessions_live_until_they_end(&*fresh().await).await;
    gauges_are_read_from_the_store(&*fresh().await).await;
    the_audit_log_takes_every_event_in_commit_order(&*fresh().await).await;
    retention_purges_closed_requests_and_prunes_what_expires(&*fresh().await).await;
    the_projection_keeps_the_latest_facts(&*fresh().await).await;
    concurrent_commits(fresh().await).await;
}

pub async fn round_trip(store: &dyn Store) {
    let f = Fixture::new();
    store.ping().await.unwrap();
    assert!(store.load("req_missing").await.unwrap().is_none());
    assert!(store.events("req_missing").await.unwrap().is_empty());
    let c = f.submit("req_a", "alice", "S-1", t0());
    let state = committed(store, c.clone()).await;
    assert_eq!(store.load("req_a").await.unwrap().unwrap(), state);
    assert_eq!(store.snapshot("req_a").await.unwrap().unwrap().state, state, "a snapshot in one process is what it committed");
    assert!(store.snapshot("req_missing").await.unwrap().is_none());
    let s2 = committed(store, f.act(&state, "mark", approve("manager"))).await;
    let events = store.events("req_a").await.unwrap();
    assert_eq!(events.len() as u64, s2.version);
    verify_chain(&events).unwrap();
    assert_eq!(RequestState::fold(&events).unwrap(), s2);
    assert_eq!(store.load("req_a").await.unwrap().unwrap(), s2);
    // Lists decode the stored state itself (no cache in the way).
    let listed = store.list(&ListQuery { limit: 10, ..ListQuery::default() }).await.unwrap();
    assert_eq!(listed.items, vec![s2]);
}

pub async fn optimistic_concurrency(store: &dyn Store) {
    let f = Fixture::new();
    let c = f.submit("req_b", "alice", "S-1", t0());
    let state = committed(store, c.clone()).await;
    assert_eq!(store.commit(c).await.unwrap(), CommitOutcome::VersionConflict, "an id is created once");
    let first = f.act(&state, "mark", approve("manager"));
    let second = f.act(&state, "fiona", approve("finance"));
    committed(store, first).await;
    assert_eq!(store.commit(second).await.unwrap(), CommitOutcome::VersionConflict);
    let events = store.events("req_b").await.unwrap();
    verify_chain(&events).unwrap();
    assert_eq!(store.load("req_b").await.unwrap().unwrap().version, events.len() as u64);
}

/// Commits arriving together (which a store may write in one transaction) keep their own
/// outcomes: a conflict or a used key among them takes nothing of the others down.
pub async fn concurrent_commits_keep_their_outcomes(store: &dyn Store) {
    let f = Fixture::new();
    let keyed = |mut c: Commit, key: &str| {
        c.idempotency = Some(IdempotencyRecord {
            scope: "alice".into(),
            key: key.into(),
            fingerprint: key.into(),
            response: SavedResponse { status: 201, body: "{}".into() },
            at: t0(),
        });
        c
    };
    let a = committed(store, keyed(f.submit("req_k1", "alice", "S", t0()), "used")).await;
    let b = committed(store, f.submit("req_k2", "alice", "S", t0())).await;
    let stale = f.act(&a, "mark", approve("manager"));
    let a2 = committed(store, f.act(&a, "fiona", approve("finance"))).await;
    let b2 = f.act(&b, "mark", approve("manager"));
    let b2_version = b2.state.version;
    let (fresh, conflict, used, new) = tokio::join!(
        store.commit(b2),
        store.commit(stale),
        store.commit(keyed(f.submit("req_k3", "alice", "S", t0()), "used")),
        store.commit(keyed(f.submit("req_k4", "alice", "S", t0()), "new")),
    );
    assert_eq!(fresh.unwrap(), CommitOutcome::Committed);
    assert_eq!(conflict.unwrap(), CommitOutcome::VersionConflict);
    assert!(matches!(used.unwrap(), CommitOutcome::KeyUsed(KeyMatch::Same(_))));
    assert_eq!(new.unwrap(), CommitOutcome::Committed);
    assert!(store.load("req_k3").await.unwrap().is_none(), "nothing of a commit with a used key is written");
    assert_eq!(store.load("req_k1").await.unwrap().unwrap(), a2);
    assert_eq!(store.load("req_k2").await.unwrap().unwrap().version, b2_version);
    assert_eq!(store.idempotency("alice", "new", "new").await.unwrap(), Some(KeyMatch::Same(SavedResponse { status: 201, body: "{}".into() })));
    for id in ["req_k1", "req_k2", "req_k4"] {
        verify_chain(&store.events(id).await.unwrap()).unwrap();
    }
    // Two commits decided on one version of one request, arriving together: one is written;
    // the other is a conflict that leaves nothing behind, its idempotency key included.
    let c = committed(store, f.submit("req_k5", "alice", "S", t0())).await;
    let approval = f.act(&c, "mark", approve("manager"));
    let cancel = keyed(f.act(&c, "alice", Action::Cancel { comment: None }), "raced");
    let (approved, cancelled) = tokio::join!(store.commit(approval), store.commit(cancel));
    let outcomes = [approved.unwrap(), cancelled.unwrap()];
    assert_eq!(outcomes.iter().filter(|o| **o == CommitOutcome::Committed).count(), 1, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| **o == CommitOutcome::VersionConflict).count(), 1, "{outcomes:?}");
    let approval_won = outcomes[0] == CommitOutcome::Committed;
    let events = store.events("req_k5").await.unwrap();
    verify_chain(&events).unwrap();
    assert_eq!(events.len() as u64, store.load("req_k5").await.unwrap().unwrap().version, "only the winner's events are written");
    let in_inbox = |tasks: Vec<Task>| tasks.iter().any(|t| t.request == "req_k5");
    assert_eq!(in_inbox(store.inbox("fiona", 50).await.unwrap()), approval_won, "only the winner's tasks are written");
    assert!(!in_inbox(store.inbox("mark", 50).await.unwrap()));
    assert_eq!(store.idempotency("alice", "raced", "raced").await.unwrap().is_some(), !approval_won, "a conflict keeps no key");
    // One key on two commits arriving together, the first of them stale: the stale one cannot
    // be written, so the key goes to the other.
    let d = committed(store, f.submit("req_k6", "alice", "S", t0())).await;
    let d2 = committed(store, f.act(&d, "mark", approve("manager"))).await;
    let stale = keyed(f.act(&d, "alice", Action::Cancel { comment: None }), "twice");
    let fresh = keyed(f.act(&d2, "alice", Action::Cancel { comment: None }), "twice");
    let (stale, fresh) = tokio::join!(store.commit(stale), store.commit(fresh));
    assert!(matches!(stale.unwrap(), CommitOutcome::VersionConflict | CommitOutcome::KeyUsed(_)));
    assert_eq!(fresh.unwrap(), CommitOutcome::Committed);
    assert_eq!(store.load("req_k6").await.unwrap().unwrap().status, RequestStatus::Cancelled);
}

pub async fn idempotency_keys(store: &dyn Store) {
    let f = Fixture::new();
    assert_eq!(store.idempotency("alice", "k1", "fp1").await.unwrap(), None);
    let mut c = f.submit("req_c", "alice", "S-1", t0());
    let saved = SavedResponse { status: 201, body: json!({"id": "req_c"}).to_string() };
    c.idempotency = Some(IdempotencyRecord {
        scope: "alice".into(),
        key: "k1".into(),
        fingerprint: "fp1".into(),
        response: saved.clone(),
        at: t0(),
    });
    committed(store, c).await;
    assert_eq!(store.idempotency("alice", "k1", "fp1").await.unwrap(), Some(KeyMatch::Same(saved.clone())));
    assert_eq!(store.idempotency("alice", "k1", "fp2").await.unwrap(), Some(KeyMatch::Different));
    assert_eq!(store.idempotency("bob", "k1", "fp1").await.unwrap(), None, "keys are scoped to the caller");
    // A racing commit with a used key writes nothing and reports the key.
    let mut again = f.submit("req_c2", "alice", "S-1", t0());
    again.idempotency = Some(IdempotencyRecord {
        scope: "alice".into(),
        key: "k1".into(),
        fingerprint: "fp1".into(),
        response: SavedResponse { status: 201, body: json!({"id": "req_c2"}).to_string() },
        at: t0(),
    });
    assert_eq!(store.commit(again).await.unwrap(), CommitOutcome::KeyUsed(KeyMatch::Same(saved)));
    assert!(store.load("req_c2").await.unwrap().is_none());
}

pub async fn inbox_follows_open_tasks(store: &dyn Store) {
    let f = Fixture::new();
    let s = committed(store, f.submit("req_d", "alice", "S-1", t0())).await;
    let later = committed(store, f.submit("req_e", "alice", "S-2", t0() - SignedDuration::from_mins(50))).await;
    let inbox = store.inbox("fiona", 100).await.unwrap();
    let ids: Vec<&str> = inbox.iter().map(|t| t.request.as_str()).collect();
    assert_eq!(ids, ["req_e", "req_d"], "soonest due first");
    assert_eq!(inbox[0].step, "finance");
    assert_eq!(inbox[0].policy, "conf");
    assert_eq!(store.inbox("mark", 100).await.unwrap().len(), 2);
    assert_eq!(store.inbox("mark", 1).await.unwrap().len(), 1, "the limit applies");
    let page = |offset, policy: Option<&str>| TaskQuery { approver: Some("mark".into()), policy: policy.map(str::to_string), offset, limit: 1, count: true };
    let second = store.tasks(&page(1, None)).await.unwrap();
    assert_eq!((second.items.len(), second.total), (1, Some(2)), "a page, and the count of all");
    assert_eq!(second.items[0].request, store.inbox("mark", 2).await.unwrap()[1].request, "the second page starts where the first ends");
    assert_eq!(store.tasks(&page(2, None)).await.unwrap().items.len(), 0);
    assert_eq!(store.tasks(&page(0, Some("conf"))).await.unwrap().total, Some(2));
    let none = store.tasks(&page(0, Some("other"))).await.unwrap();
    assert_eq!((none.items.len(), none.total), (0, Some(0)), "filtered by policy");
    let everyone = store.tasks(&TaskQuery { limit: 100, count: true, ..Default::default() }).await.unwrap();
    assert_eq!(everyone.total, Some(everyone.items.len() as u64));
    assert!(everyone.items.iter().any(|t| t.approver == "fiona") && everyone.items.iter().any(|t| t.approver == "mark"));
    committed(store, f.act(&s, "frank", approve("finance"))).await;
    let ids: Vec<String> = store.inbox("fiona", 100).await.unwrap().into_iter().map(|t| t.request).collect();
    assert_eq!(ids, ["req_e"], "a decided step leaves every inbox");
    let mut closed = f.act(&later, "alice", Action::Cancel { comment: None });
    assert_eq!(closed.state.status, RequestStatus::Cancelled);
    closed.previous = None; // (a caller need not say what it decided on)
    committed(store, closed).await;
    assert!(store.inbox("fiona", 100).await.unwrap().is_empty());
    assert_eq!(store.inbox("mark", 100).await.unwrap().len(), 1);
}

pub async fn list_filters_and_pages(store: &dyn Store) {
    let f = Fixture::new();
    let mut states = Vec::new();
    for i in 0..7 {
        let requester = if i % 2 == 0 { "alice" } else { "bob" };
        let at = t0() + SignedDuration::from_secs(i);
        states.push(committed(store, f.submit(&format!("req_l{i}"), requester, &format!("S-{}", i % 3), at)).await);
    }
    committed(store, f.act(&states[0], "alice", Action::Cancel { comment: None })).await;
    committed(store, f.act(&states[1], "mark", approve("manager"))).await;

    let ids = |p: &Page| p.items.iter().map(|s| s.id.clone()).collect::<Vec<_>>();
    let q = ListQuery { limit: 3, ..ListQuery::default() };
    let p1 = store.list(&q).await.unwrap();
    assert_eq!(ids(&p1), ["req_l6", "req_l5", "req_l4"], "newest first");
    let p2 = store.list(&ListQuery { cursor: p1.next_cursor.clone(), ..q.clone() }).await.unwrap();
    assert_eq!(ids(&p2), ["req_l3", "req_l2", "req_l1"]);
    let p3 = store.list(&ListQuery { cursor: p2.next_cursor.clone(), ..q.clone() }).await.unwrap();
    assert_eq!(ids(&p3), ["req_l0"]);
    assert_eq!(p3.next_cursor, None);

    let all = ListQuery { limit: 50, ..ListQuery::default() };
    let cancelled = store.list(&ListQuery { status: Some(RequestStatus::Cancelled), ..all.clone() }).await.unwrap();
    assert_eq!(ids(&cancelled), ["req_l0"]);
    let bobs = store.list(&ListQuery { requester: Some("bob".into()), ..all.clone() }).await.unwrap();
    assert_eq!(ids(&bobs), ["req_l5", "req_l3", "req_l1"]);
    let s1 = store.list(&ListQuery { subject: Some("S-1".into()), ..all.clone() }).await.unwrap();
    assert_eq!(ids(&s1), ["req_l4", "req_l1"]);
    let marks = store.list(&ListQuery { approver: Some("mark".into()), ..all.clone() }).await.unwrap();
    assert_eq!(ids(&marks), ["req_l6", "req_l5", "req_l4", "req_l3", "req_l2"], "mark can act on pending ones he has not decided");
    let by_policy = store.list(&ListQuery { policy: Some("other".into()), ..all.clone() }).await.unwrap();
    assert!(by_policy.items.is_empty());
    let visible = store.list(&ListQuery { visible_to: Some("bob".into()), ..all.clone() }).await.unwrap();
    assert_eq!(ids(&visible), ["req_l5", "req_l3", "req_l1"]);
    let visible = store.list(&ListQuery { visible_to: Some("fiona".into()), ..all.clone() }).await.unwrap();
    assert_eq!(visible.items.len(), 7, "approvers on the plan see the request");
}

pub async fn lists_by_due_time(store: &dyn Store) {
    let f = Fixture::new();
    let mins = SignedDuration::from_mins;
    // Each request's soonest due task is its finance step (30 minutes), until finance decides.
    let a = committed(store, f.submit("req_a", "alice", "S-a", t0())).await;
    committed(store, f.submit("req_b", "alice", "S-b", t0() - mins(50))).await;
    committed(store, f.submit("req_c", "bob", "S-c", t0() + mins(10))).await;
    let d = committed(store, f.submit("req_d", "alice", "S-d", t0() - mins(5))).await;
    committed(store, f.act(&d, "fiona", approve("finance"))).await; // manager: due at t0 + 55m
    let e = committed(store, f.submit("req_e", "alice", "S-e", t0() - mins(90))).await;
    committed(store, f.act(&e, "alice", Action::Cancel { comment: None })).await;

    let ids = |p: &Page| p.items.iter().map(|s| s.id.clone()).collect::<Vec<_>>();
    let q = ListQuery { sort: ListSort::Due, limit: 2, ..ListQuery::default() };
    let p1 = store.list(&q).await.unwrap();
    assert_eq!(ids(&p1), ["req_b", "req_a"], "soonest due first; closed requests have no due time");
    let p2 = store.list(&ListQuery { cursor: p1.next_cursor.clone(), ..q.clone() }).await.unwrap();
    assert_eq!(ids(&p2), ["req_c", "req_d"]);
    assert_eq!(p2.next_cursor, None);
    let bobs = store.list(&ListQuery { requester: Some("bob".into()), limit: 50, ..q.clone() }).await.unwrap();
    assert_eq!(ids(&bobs), ["req_c"]);
    let marks = store.list(&ListQuery { approver: Some("mark".into()), visible_to: Some("mark".into()), limit: 50, ..q.clone() }).await.unwrap();
    assert_eq!(ids(&marks), ["req_b", "req_a", "req_c", "req_d"]);
    let fionas = store.list(&ListQuery { approver: Some("fiona".into()), limit: 50, ..q.clone() }).await.unwrap();
    assert_eq!(ids(&fionas), ["req_b", "req_a", "req_c"], "fiona decided req_d");

    let overdue = |at| ListQuery { overdue_at: Some(at), limit: 50, ..ListQuery::default() };
    assert_eq!(ids(&store.list(&overdue(t0())).await.unwrap()), ["req_b"]);
    assert_eq!(ids(&store.list(&overdue(t0() + mins(45))).await.unwrap()), ["req_c", "req_b", "req_a"], "newest first unless sorted");
    let sorted = ListQuery { sort: ListSort::Due, ..overdue(t0() + mins(45)) };
    assert_eq!(ids(&store.list(&sorted).await.unwrap()), ["req_b", "req_a", "req_c"]);

    let tasks = store.open_tasks(100).await.unwrap();
    let rows: Vec<(&str, &str, &str)> = tasks.iter().take(4).map(|t| (t.request.as_str(), t.step.as_str(), t.approver.as_str())).collect();
    assert_eq!(rows, [("req_b", "finance", "fiona"), ("req_b", "finance", "frank"), ("req_b", "manager", "mark"), ("req_a", "finance", "fiona")]);
    assert_eq!(tasks.len(), 10, "every open slot of every open request");
    assert_eq!((tasks[0].requester.as_deref(), tasks[0].subject.as_deref()), (Some("alice"), Some("S-b")));
    assert_eq!(store.open_tasks(3).await.unwrap().len(), 3);
    let mark = store.inbox("mark", 100).await.unwrap();
    assert!(mark.iter().all(|t| t.approver == "mark") && mark.len() == 4, "{mark:?}");
    let _ = a;
}

pub async fn policies_by_hash(store: &dyn Store) {
    let p = PolicyRecord { hash: "sha256:abc".into(), id: "conf".into(), version: 2, source: json!({"id": "conf"}) };
    assert_eq!(store.policy("sha256:abc").await.unwrap(), None);
    store.put_policy(&p).await.unwrap();
    store.put_policy(&p).await.unwrap();
    assert_eq!(store.policy("sha256:abc").await.unwrap(), Some(p.clone()));
    assert_eq!(store.policies().await.unwrap(), vec![p]);
}

pub async fn concurrent_commits(store: Arc<dyn Store>) {
    let f = Arc::new(Fixture::new());
    let mut tasks = Vec::new();
    for i in 0..40 {
        let (store, f) = (store.clone(), f.clone());
        tasks.push(tokio::spawn(async move {
            let s = committed(&*store, f.submit(&format!("req_x{i}"), "alice", "S", t0())).await;
            committed(&*store, f.act(&s, "mark", approve("manager"))).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for i in 0..40 {
        let s = store.load(&format!("req_x{i}")).await.unwrap().unwrap();
        assert_eq!(s.version, store.events(&s.id).await.unwrap().len() as u64);
    }
}

pub async fn timers_follow_the_state(store: &dyn Store) {
    let f = Fixture::new();
    assert_eq!(store.next_timer_at().await.unwrap(), None);
    // Finance is due 30 minutes after submission, manager after an hour.
    let a = committed(store, f.submit("req_t1", "alice", "S", t0())).await;
    let b = committed(store, f.submit("req_t2", "alice", "S", t0() - SignedDuration::from_mins(20))).await;
    assert_eq!(store.next_timer_at().await.unwrap(), Some(t0() + SignedDuration::from_mins(10)));
    let lease = |at: Timestamp| at + SignedDuration::from_mins(1);
    let claim = |at: Timestamp, limit: u32| async move { store.claim_timers(at, limit, lease(at)).await.unwrap() };
    assert!(claim(t0(), 10).await.is_empty());
    let at = t0() + SignedDuration::from_mins(30);
    assert_eq!(claim(at, 1).await, ["req_t2"], "earliest first");
    assert_eq!(claim(at, 10).await, ["req_t1"], "a claimed timer is not claimed again");
    assert!(claim(at, 10).await.is_empty());
    assert_eq!(store.next_timer_at().await.unwrap(), Some(lease(at)), "claims count from their lease");
    assert_eq!(claim(lease(at), 10).await, ["req_t2", "req_t1"], "claims end with their lease");
    // Approving finance on req_t1 moves its next timer to the manager's hour, and ends its claim.
    committed(store, f.act(&a, "fiona", approve("finance"))).await;
    assert_eq!(store.next_timer_at().await.unwrap(), Some(lease(lease(at))), "req_t2 is still claimed");
    assert_eq!(claim(t0() + SignedDuration::from_mins(59), 10).await, ["req_t2"], "req_t1 is not due before the hour");
    // Closing a request removes its timer (and its claim), whether or not the caller says what
    // it decided on.
    let mut cancel = f.act(&b, "alice", Action::Cancel { comment: None });
    cancel.previous = None;
    committed(store, cancel).await;
    assert_eq!(store.next_timer_at().await.unwrap(), Some(t0() + SignedDuration::from_mins(60)));
    assert_eq!(claim(t0() + SignedDuration::from_mins(60), 10).await, ["req_t1"]);
    let t1 = store.load("req_t1").await.unwrap().unwrap();
    committed(store, f.act(&t1, "alice", Action::Cancel { comment: None })).await;
    assert_eq!(store.next_timer_at().await.unwrap(), None);
    // Never due early, even by less than a millisecond.
    let sub_ms = SignedDuration::from_micros(500);
    committed(store, f.submit("req_t3", "alice", "S", t0() + SignedDuration::from_mins(120) + sub_ms)).await;
    let at = t0() + SignedDuration::from_mins(150);
    assert!(claim(at, 10).await.is_empty());
    // (Stores may round up to their precision: a millisecond late at most.)
    assert_eq!(claim(at + SignedDuration::from_millis(1), 10).await, ["req_t3"]);
}

pub async fn lineages(store: &dyn Store) {
    let f = Fixture::new();
    committed(store, f.submit_in("req_g1", "alice", "S", t0(), Some("lin_a"))).await;
    committed(store, f.submit_in("req_g2", "alice", "S", t0(), Some("lin_b"))).await;
    committed(store, f.submit_in("req_g3", "alice", "S", t0(), Some("lin_a"))).await;
    let ids: Vec<String> = store.lineage("lin_a").await.unwrap().into_iter().map(|s| s.id.to_string()).collect();
    assert_eq!(ids, ["req_g1", "req_g3"]);
    assert!(store.lineage("lin_none").await.unwrap().is_empty());
}

pub async fn several_requests_commit_together(store: &dyn Store) {
    let f = Fixture::new();
    let a = committed(store, f.submit("req_m1", "alice", "S", t0())).await;
    let b = committed(store, f.submit("req_m2", "alice", "S", t0())).await;
    let stale = f.act(&b, "mark", approve("manager"));
    committed(store, f.act(&b, "fiona", approve("finance"))).await;
    // One stale commit makes the whole group fail, and nothing of it is written.
    let outcome = store.commit_all(vec![f.act(&a, "mark", approve("manager")), stale]).await.unwrap();
    assert_eq!(outcome, CommitOutcome::VersionConflict);
    assert_eq!(store.load("req_m1").await.unwrap().unwrap().version, a.version);
    assert_eq!(store.events("req_m1").await.unwrap().len() as u64, a.version);
    let b_now = store.load("req_m2").await.unwrap().unwrap();
    let outcome = store.commit_all(vec![f.act(&a, "mark", approve("manager")), f.act(&b_now, "mark", approve("manager"))]).await.unwrap();
    assert_eq!(outcome, CommitOutcome::Committed);
    assert_eq!(store.load("req_m2").await.unwrap().unwrap().status, RequestStatus::Approved);
    assert!(store.load("req_m1").await.unwrap().unwrap().version > a.version);
}

pub async fn gauges_are_read_from_the_store(store: &dyn Store) {
    let now = t0() + SignedDuration::from_mins(10);
    assert_eq!(store.gauges(now).await.unwrap(), Gauges::default(), "nothing open, nothing to say");
    let f = Fixture::new();
    let mut first = f.submit("req_g1", "alice", "S-1", t0() - SignedDuration::from_mins(50));
    first.notifications = vec![outgoing("ntf_g1", "req_g1", None, json!({})), outgoing("ntf_g2", "req_g1", None, json!({}))];
    committed(store, first).await;
    let second = committed(store, f.submit("req_g2", "alice", "S-2", t0())).await;
    let checklist = Fixture::with("id: acks\nsteps:\n  - {id: review, approvers: {users: [mark]}, require_acks: [security, privacy]}\n");
    let third = committed(store, checklist.submit("req_g3", "alice", "S-3", t0())).await;
    let g = store.gauges(now).await.unwrap();
    let conf = g.policies.iter().find(|p| p.policy == "conf").expect("conf");
    assert_eq!(conf.pending, 2);
    assert!((conf.oldest_age_seconds - 3600.0).abs() < 1.0, "{conf:?}");
    assert!((conf.mean_age_seconds - 2100.0).abs() < 1.0, "(60 + 10) / 2 minutes: {conf:?}");
    assert_eq!(conf.pending_acks, 0);
    assert_eq!(conf.overdue_steps, 2, "both steps of the request submitted an hour ago are past their SLA (1 h, 30 min); none of the other");
    let acks = g.policies.iter().find(|p| p.policy == "acks").expect("acks");
    assert_eq!((acks.pending, acks.pending_acks), (1, 2), "two items on one step, counted once however many approvers it has");
    assert_eq!(g.channels.len(), 1);
    assert_eq!((g.channels[0].channel.as_str(), g.channels[0].backlog), ("webhook", 2));
    assert!((g.channels[0].oldest_age_seconds - 600.0).abs() < 1.0, "{:?}", g.channels[0]);

    let ack = Action::Acknowledge { step: "review".into(), item: "security".into() };
    committed(store, checklist.act(&third, "mark", ack)).await;
    committed(store, f.act(&second, "alice", Action::Cancel { comment: None })).await;
    let g = store.gauges(now).await.unwrap();
    assert_eq!(g.policies.iter().find(|p| p.policy == "acks").unwrap().pending_acks, 1);
    assert_eq!(g.policies.iter().find(|p| p.policy == "conf").unwrap().pending, 1, "a closed request is not pending");
}

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn outgoing(id: &str, request: &str, key: Option<&str>, payload: serde_json::Value) -> Outgoing {
    Outgoing {
        id: id.into(),
        request_id: request.into(),
        channel: "webhook".into(),
        destination: "crm".into(),
        kind: "event".into(),
        payload,
        coalesce_key: key.map(str::to_string),
        created_at: t0(),
        trace: None,
    }
}

pub async fn outbox_delivery_states(store: &dyn Store) {
    let f = Fixture::new();
    assert_eq!(store.next_notification_at().await.unwrap(), None);
    let mut c = f.submit("req_o1", "alice", "S", t0());
    // (The second carries the trace of the work that queued it, which its delivery joins.)
    let traced = Outgoing { trace: Some(TRACEPARENT.into()), ..outgoing("ntf_2", "req_o1", None, json!({"n": 2})) };
    c.notifications = vec![outgoing("ntf_1", "req_o1", None, json!({"n": 1})), traced];
    let s = committed(store, c).await;
    // A commit that loses its race writes no notifications either.
    let mut stale = f.act(&s, "mark", approve("manager"));
    stale.expected_version = 1;
    stale.notifications = vec![outgoing("ntf_lost", "req_o1", None, json!({}))];
    assert_eq!(store.commit(stale).await.unwrap(), CommitOutcome::VersionConflict);
    assert_eq!(store.notification("ntf_lost").await.unwrap(), None);

    assert_eq!(store.next_notification_at().await.unwrap(), Some(t0()));
    // A claim holds rows until its lease runs out.
    let claimed = store.claim_notifications(t0(), 1, t0() + SignedDuration::from_secs(30)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let others = store.claim_notifications(t0(), 10, t0() + SignedDuration::from_secs(30)).await.unwrap();
    assert_eq!(others.iter().map(|n| n.outgoing.id.as_str()).collect::<Vec<_>>(), ["ntf_2"], "claimed rows are not claimed twice");
    assert_eq!(store.next_notification_at().await.unwrap(), Some(t0() + SignedDuration::from_secs(30)));
    let due = store.claim_notifications(t0() + SignedDuration::from_secs(30), 10, t0() + SignedDuration::from_mins(1)).await.unwrap();
    assert_eq!(due.iter().map(|n| n.outgoing.id.as_str()).collect::<Vec<_>>(), ["ntf_1", "ntf_2"], "an expired claim frees the rows");
    assert_eq!(due[0].status, DeliveryStatus::Pending);
    assert_eq!(due[0].outgoing.payload, json!({"n": 1}));
    assert_eq!((due[0].outgoing.trace.as_deref(), due[1].outgoing.trace.as_deref()), (None, Some(TRACEPARENT)));

    let later = t0() + SignedDuration::from_secs(5);
    store
        .record_attempts(vec![
            Attempt { notification: "ntf_1".into(), revision: 0, at: t0(), status: Some(200), outcome: AttemptOutcome::Delivered { result: Some(json!({"ts": "1.2"})) } },
            Attempt {
                notification: "ntf_2".into(),
                revision: 0,
                at: t0(),
                status: Some(503),
                outcome: AttemptOutcome::Failed { error: "busy".into(), next_attempt_at: Some(later) },
            },
        ])
        .await
        .unwrap();
    assert!(store.claim_notifications(t0(), 10, t0() + SignedDuration::from_mins(1)).await.unwrap().is_empty());
    assert_eq!(store.next_notification_at().await.unwrap(), Some(later));
    let delivered = store.notification("ntf_1").await.unwrap().unwrap();
    assert_eq!((delivered.status, delivered.attempts, delivered.result), (DeliveryStatus::Delivered, 1, Some(json!({"ts": "1.2"}))));
    let due = store.claim_notifications(later, 10, later + SignedDuration::from_mins(1)).await.unwrap();
    assert_eq!((due.len(), due[0].attempts, due[0].last_error.as_deref()), (1, 1, Some("busy")));
    store
        .record_attempts(vec![Attempt { notification: "ntf_2".into(), revision: 0, at: later, status: Some(500), outcome: AttemptOutcome::Deferred { until: later + SignedDuration::from_secs(1) } }])
        .await
        .unwrap();
    assert_eq!(store.notification("ntf_2").await.unwrap().unwrap().attempts, 1, "a deferral is not an attempt");
    store
        .record_attempts(vec![Attempt { notification: "ntf_2".into(), revision: 0, at: later, status: Some(410), outcome: AttemptOutcome::Failed { error: "gone".into(), next_attempt_at: None } }])
        .await
        .unwrap();
    assert_eq!(store.notification("ntf_2").await.unwrap().unwrap().status, DeliveryStatus::Failed);
    assert_eq!(store.next_notification_at().await.unwrap(), None);
    let report = store.deliveries("req_o1").await.unwrap();
    assert_eq!(report.len(), 2);
    assert_eq!(report[1].attempt_log.len(), 2);
    assert_eq!(report[1].attempt_log[0].status, Some(503));
    assert!(store.deliveries("req_none").await.unwrap().is_empty());
}

pub async fn outbox_coalescing(store: &dyn Store) {
    let f = Fixture::new();
    let mut c = f.submit("req_o2", "alice", "S", t0());
    c.notifications = vec![outgoing("ntf_a", "req_o2", Some("msg-1"), json!({"v": 1}))];
    let s = committed(store, c).await;
    let mut c = f.act(&s, "mark", approve("manager"));
    c.notifications = vec![outgoing("ntf_b", "req_o2", Some("msg-1"), json!({"v": 2}))];
    let s = committed(store, c).await;
    let due = store.claim_notifications(t0(), 10, t0() + SignedDuration::from_mins(1)).await.unwrap();
    assert_eq!(due.len(), 1, "the second replaced the first while it was pending");
    assert_eq!((due[0].outgoing.id.as_str(), &due[0].outgoing.payload, due[0].revision), ("ntf_a", &json!({"v": 2}), 1));
    // Revision 1 goes out; revision 2 arrives while it is in flight, so it is sent again.
    let mut c = f.act(&s, "fiona", approve("finance"));
    c.notifications = vec![outgoing("ntf_c", "req_o2", Some("msg-1"), json!({"v": 3}))];
    committed(store, c).await;
    store
        .record_attempts(vec![Attempt { notification: "ntf_a".into(), revision: 1, at: t0(), status: Some(200), outcome: AttemptOutcome::Delivered { result: None } }])
        .await
        .unwrap();
    let due = store.claim_notifications(t0() + SignedDuration::from_secs(1), 10, t0() + SignedDuration::from_secs(1) + SignedDuration::from_mins(1)).await.unwrap();
    assert_eq!((due.len(), &due[0].outgoing.payload, due[0].revision), (1, &json!({"v": 3}), 2));
    store
        .record_attempts(vec![Attempt { notification: "ntf_a".into(), revision: 2, at: t0(), status: Some(200), outcome: AttemptOutcome::Delivered { result: None } }])
        .await
        .unwrap();
    assert_eq!(store.notification("ntf_a").await.unwrap().unwrap().status, DeliveryStatus::Delivered);
}

pub async fn keys_are_used_once(store: &dyn Store) {
    assert!(store.use_once("sig-1", t0()).await.unwrap());
    assert!(!store.use_once("sig-1", t0()).await.unwrap(), "a second use is refused");
    assert!(store.use_once("sig-2", t0()).await.unwrap());
    assert!(!store.use_once("sig-1", t0() + SignedDuration::from_hours(20)).await.unwrap(), "kept at least a day");
}

pub async fn directory_changes_are_appended_once_in_order(store: &dyn Store) {
    assert!(store.directory_changes(0).await.unwrap().is_empty());
    assert!(store.append_directory_change(1, r#"{"op":"a"}"#).await.unwrap());
    assert!(store.append_directory_change(2, r#"{"op":"b"}"#).await.unwrap());
    assert!(!store.append_directory_change(2, r#"{"op":"late"}"#).await.unwrap(), "number 2 is taken");
    let all = store.directory_changes(0).await.unwrap();
    assert_eq!(all, vec![(1, r#"{"op":"a"}"#.to_string()), (2, r#"{"op":"b"}"#.to_string())]);
    assert_eq!(store.directory_changes(1).await.unwrap(), vec![(2, r#"{"op":"b"}"#.to_string())]);
}

pub async fn rate_buckets_fill_and_empty(store: &dyn Store) {
    use crate::rate::Rate;
    let rate = Rate { per_second: 2.0, burst: 3 };
    let take = |key: &'static str, at: Timestamp, want: u32| async move { store.take_tokens(key, rate, at, want).await.unwrap() };
    for _ in 0..3 {
        assert_eq!(take("caller:ann:submissions", t0(), 1).await, Ok(1), "a full bucket grants its burst");
    }
    let wait = take("caller:ann:submissions", t0(), 1).await.expect_err("the burst is spent");
    assert_eq!(wait.as_millis(), 500, "one token flows in every half second");
    assert_eq!(take("caller:bob:submissions", t0(), 1).await, Ok(1), "buckets are by key");
    let later = t0() + SignedDuration::from_millis(499);
    assert!(take("caller:ann:submissions", later, 1).await.is_err(), "not yet a whole token");
    let later = t0() + SignedDuration::from_millis(500);
    assert_eq!(take("caller:ann:submissions", later, 1).await, Ok(1), "refilled");
    assert!(take("caller:ann:submissions", later, 1).await.is_err());
    let much_later = t0() + SignedDuration::from_hours(1);
    assert_eq!(take("caller:ann:submissions", much_later, 10).await, Ok(3), "several at once, up to what it holds");
    assert!(take("caller:ann:submissions", much_later, 1).await.is_err(), "and no more");
    let earlier = t0() + SignedDuration::from_mins(30);
    assert!(take("caller:ann:submissions", earlier, 1).await.is_err(), "a clock behind adds nothing");
    assert_eq!(take("caller:cy:reads", t0(), 2).await, Ok(2), "a new bucket gives what is asked of its burst");
    assert_eq!(take("caller:cy:reads", t0(), 5).await, Ok(1));
}

pub async fn sessions_live_until_they_end(store: &dyn Store) {
    let hour = SignedDuration::from_hours(1);
    let session = |id: &str, user: &str, at: Timestamp| crate::Session {
        id_hash: id.into(),
        user: user.into(),
        csrf: format!("csrf-{id}"),
        created_at: at,
        expires_at: at + hour,
    };
    store.put_session(&session("s1", "alice", t0())).await.unwrap();
    assert_eq!(store.session("s1", t0()).await.unwrap(), Some(session("s1", "alice", t0())));
    assert_eq!(store.session("s2", t0()).await.unwrap(), None, "an unknown session");
    assert_eq!(store.session("s1", t0() + hour).await.unwrap(), None, "expired at its end");
    store.put_session(&session("s2", "mark", t0())).await.unwrap();
    store.end_session("s1").await.unwrap();
    store.end_session("s1").await.unwrap();
    assert_eq!(store.session("s1", t0()).await.unwrap(), None, "signed out");
    assert!(store.session("s2", t0()).await.unwrap().is_some(), "the other session lives on");
    store.put_session(&session("s3", "fiona", t0() + hour + hour)).await.unwrap();
    assert_eq!(store.session("s2", t0()).await.unwrap(), None, "expired sessions are forgotten when a new one starts");
}

pub async fn the_audit_log_takes_every_event_in_commit_order(store: &dyn Store) {
    use signoff_audit::merkle::{self, Frontier};
    let f = Fixture::new();
    assert_eq!(store.log_size().await.unwrap(), LogSize { size: 0, queued: 0 });
    assert_eq!(store.sequence_log(100).await.unwrap(), 0, "an empty queue appends nothing");
    let a = committed(store, f.submit("req_l1", "alice", "S", t0())).await;
    let b = committed(store, f.submit("req_l2", "bob", "S", t0())).await;
    committed(store, f.act(&a, "mark", approve("manager"))).await;
    committed(store, f.act(&b, "fiona", approve("finance"))).await;
    // A lost race queues nothing.
    assert_eq!(store.commit(f.act(&a, "mark", approve("manager"))).await.unwrap(), CommitOutcome::VersionConflict);
    let events_a = store.events("req_l1").await.unwrap();
    let events_b = store.events("req_l2").await.unwrap();
    let total = (events_a.len() + events_b.len()) as u64;
    assert_eq!(store.log_size().await.unwrap(), LogSize { size: 0, queued: total });

    // Two batches: the second goes on from the first's edge.
    assert_eq!(store.sequence_log(3).await.unwrap(), 3);
    assert_eq!(store.sequence_log(100).await.unwrap(), total);
    assert_eq!(store.log_size().await.unwrap(), LogSize { size: total, queued: 0 });
    let leaves = store.log_leaves(0, 1000).await.unwrap();
    assert_eq!(leaves.iter().map(|l| l.index).collect::<Vec<_>>(), (0..total).collect::<Vec<_>>());
    // Commit order: each commit's events in sequence, the commits in the order they were made.
    let order: Vec<(String, u64)> = leaves.iter().map(|l| (l.request_id.clone(), l.seq)).collect();
    let commit_of = |r: &str, seq: u64| order.iter().position(|(id, s)| id == r && *s == seq).unwrap();
    assert!(commit_of("req_l1", 1) < commit_of("req_l2", 1));
    assert!(commit_of("req_l2", 1) < commit_of("req_l1", events_a.len() as u64));
    assert!(commit_of("req_l1", events_a.len() as u64) < commit_of("req_l2", events_b.len() as u64));
    assert_eq!(store.log_leaves(2, 2).await.unwrap(), leaves[2..4].to_vec());
    assert_eq!(store.log_leaves_of("req_l2").await.unwrap().iter().map(|l| l.seq).collect::<Vec<_>>(), (1..=events_b.len() as u64).collect::<Vec<_>>());

    // The stored tree is the tree of these events: its root, and a proof for each leaf.
    let event_of = |l: &LogLeaf| if l.request_id == "req_l1" { &events_a[l.seq as usize - 1] } else { &events_b[l.seq as usize - 1] };
    let mut expected = Frontier::default();
    for l in &leaves {
        expected.append(signoff_audit::event_leaf(&l.request_id, l.seq, &event_of(l).hash));
    }
    let root = crate::log::build(store, &merkle::root(total)).await.unwrap();
    assert_eq!(root, expected.root());
    for l in &leaves {
        let proof = crate::log::build(store, &merkle::inclusion_proof(l.index, total)).await.unwrap();
        let leaf = signoff_audit::event_leaf(&l.request_id, l.seq, &event_of(l).hash);
        assert_eq!(merkle::verify_inclusion(&leaf, l.index, total, &proof, &root), Ok(()));
    }
    let old_root = crate::log::build(store, &merkle::root(3)).await.unwrap();
    let proof = crate::log::build(store, &merkle::consistency_proof(3, total)).await.unwrap();
    assert_eq!(merkle::verify_consistency(3, total, &old_root, &root, &proof), Ok(()));
    // What an export streams: each leaf with its event as stored, its policy and status now.
    let rows = store.audit_rows(1, 3).await.unwrap();
    assert_eq!(rows.iter().map(|r| r.leaf.clone()).collect::<Vec<_>>(), leaves[1..4].to_vec());
    for r in &rows {
        assert_eq!(decode::<Event>(&r.body).unwrap(), *event_of(&r.leaf));
        assert_eq!((r.policy_id.as_deref(), r.status.as_deref()), (Some("conf"), Some("pending")));
    }
    assert!(store.audit_rows(total, 10).await.unwrap().is_empty());

    // A directory change joins the log like an event, under the directory's name.
    let change = r#"{"seq":1,"hash":"5d41402abc4b2a76b9719d911017c592"}"#;
    assert!(store.append_directory_change(1, change).await.unwrap());
    assert_eq!(store.log_size().await.unwrap(), LogSize { size: total, queued: 1 });
    assert_eq!(store.sequence_log(100).await.unwrap(), total + 1);
    let leaf = LogLeaf { index: total, request_id: crate::log::DIRECTORY.into(), seq: 1 };
    assert_eq!(store.log_leaves_of(crate::log::DIRECTORY).await.unwrap(), vec![leaf.clone()]);
    let rows = store.audit_rows(total, 10).await.unwrap();
    assert_eq!(rows, vec![crate::log::AuditRow { leaf, body: change.into(), policy_id: None, status: None }]);
    expected.append(signoff_audit::event_leaf(crate::log::DIRECTORY, 1, "5d41402abc4b2a76b9719d911017c592"));
    assert_eq!(crate::log::build(store, &merkle::root(total + 1)).await.unwrap(), expected.root());
}

pub async fn retention_purges_closed_requests_and_prunes_what_expires(store: &dyn Store) {
    use signoff_audit::merkle;
    let f = Fixture::new();
    let later = t0() + SignedDuration::from_secs(1);
    let closed = vec![RequestStatus::Approved, RequestStatus::Rejected, RequestStatus::Expired, RequestStatus::Cancelled];
    let open = committed(store, f.submit("req_r1", "alice", "S", t0())).await;
    let mut ids = Vec::new();
    for id in ["req_r2", "req_r3"] {
        let s = committed(store, f.submit(id, "alice", "S", t0())).await;
        let s = committed(store, f.act(&s, "mark", approve("manager"))).await;
        let mut c = f.act(&s, "fiona", approve("finance"));
        c.notifications = vec![outgoing(&format!("ntf_{id}"), id, None, json!({}))];
        let s = committed(store, c).await;
        assert_eq!(s.status, RequestStatus::Approved);
        ids.push(id.to_string());
    }
    // Oldest first, closed only (a pending request is never a candidate, whatever is asked).
    let mut all = closed.clone();
    all.push(RequestStatus::Pending);
    assert_eq!(store.retention_candidates(None, &all, later, 10).await.unwrap(), ids);
    assert_eq!(store.retention_candidates(None, &closed, later, 1).await.unwrap(), ids[..1].to_vec());
    assert!(store.retention_candidates(None, &closed, t0(), 10).await.unwrap().is_empty(), "changed at t0, not before it");
    assert!(store.retention_candidates(Some("other"), &closed, later, 10).await.unwrap().is_empty());
    assert!(store.retention_candidates(Some("conf"), &[RequestStatus::Rejected], later, 10).await.unwrap().is_empty());

    store.sequence_log(1000).await.unwrap();
    let size = store.log_size().await.unwrap().size;
    let root = crate::log::build(store, &merkle::root(size)).await.unwrap();
    let facts = |id: &str| crate::FactsRow { request_id: id.to_string(), cursor: 1, body: "{}".into() };
    store.put_facts(vec![facts(&ids[0]), facts(&ids[1])], 1).await.unwrap();
    // The pending one is left alone; the approved one goes, with all that hangs off it.
    assert_eq!(store.purge(&[open.id.to_string(), ids[0].clone()], "archive-1.ndjson.gz", later).await.unwrap(), 1);
    assert!(store.load(&ids[0]).await.unwrap().is_none());
    assert!(store.events(&ids[0]).await.unwrap().is_empty());
    assert!(store.deliveries(&ids[0]).await.unwrap().is_empty());
    assert_eq!(store.facts_page((0, ""), 10).await.unwrap(), vec![facts(&ids[1])], "its analytics facts go too");
    assert!(store.load(open.id.as_str()).await.unwrap().is_some());
    assert!(store.load(&ids[1]).await.unwrap().is_some());
    assert_eq!(store.purged().await.unwrap(), std::collections::HashMap::from([(ids[0].clone(), "archive-1.ndjson.gz".to_string())]));
    // The log keeps its leaves: the same root, and proofs of the purged events still verify.
    assert!(!store.log_leaves_of(&ids[0]).await.unwrap().is_empty());
    assert_eq!(crate::log::build(store, &merkle::root(size)).await.unwrap(), root);
    assert_eq!(store.retention_candidates(None, &closed, later, 10).await.unwrap(), ids[1..].to_vec());

    // Pruning: the key, the delivered notification and the spent key from before go.
    let mut keyed = f.submit("req_r4", "alice", "S", t0());
    keyed.idempotency = Some(IdempotencyRecord { scope: "alice".into(), key: "k".into(), fingerprint: "fp".into(), response: SavedResponse { status: 201, body: "{}".into() }, at: t0() });
    committed(store, keyed).await;
    let attempt = Attempt { notification: format!("ntf_{}", ids[1]), revision: 0, at: t0(), status: Some(200), outcome: AttemptOutcome::Delivered { result: None } };
    store.record_attempts(vec![attempt]).await.unwrap();
    assert!(store.use_once("link-1", t0()).await.unwrap());
    assert_eq!(store.prune(t0(), t0(), t0()).await.unwrap(), Pruned::default(), "nothing is older than t0");
    assert_eq!(store.prune(later, later, later).await.unwrap(), Pruned { idempotency_keys: 1, notifications: 1, used_keys: 1 });
    assert_eq!(store.idempotency("alice", "k", "fp").await.unwrap(), None);
    assert!(store.use_once("link-1", later).await.unwrap(), "a pruned key is new again");
}

pub async fn the_projection_keeps_the_latest_facts(store: &dyn Store) {
    use crate::FactsRow;
    let row = |id: &str, cursor: u64, body: &str| FactsRow { request_id: id.into(), cursor, body: body.into() };
    assert_eq!(store.facts_cursor().await.unwrap(), 0, "nothing read yet");
    assert!(store.facts_page((0, ""), 10).await.unwrap().is_empty());
    store.put_facts(vec![row("req_a", 3, "a@3"), row("req_b", 3, "b@3")], 3).await.unwrap();
    store.put_facts(vec![row("req_a", 5, "a@5")], 5).await.unwrap();
    // Another instance, behind, writes older facts and an older cursor: neither goes back.
    store.put_facts(vec![row("req_a", 4, "a@4"), row("req_c", 4, "c@4")], 4).await.unwrap();
    assert_eq!(store.facts_cursor().await.unwrap(), 5);
    let all = store.facts_page((0, ""), 10).await.unwrap();
    assert_eq!(all, vec![row("req_b", 3, "b@3"), row("req_c", 4, "c@4"), row("req_a", 5, "a@5")]);
    // Pages follow (cursor, id).
    assert_eq!(store.facts_page((3, "req_b"), 1).await.unwrap(), vec![row("req_c", 4, "c@4")]);
    assert_eq!(store.facts_page((4, "req_c"), 10).await.unwrap(), vec![row("req_a", 5, "a@5")]);
    store.put_facts(Vec::new(), 9).await.unwrap();
    assert_eq!(store.facts_cursor().await.unwrap(), 9, "a batch without changes still moves the cursor");
}
