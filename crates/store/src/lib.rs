//! The storage contract. A `Store` keeps each request's events (the truth), its current state
//! beside them for fast reads, the indexes behind inboxes and lists, idempotency records and
//! the exact policies requests were planned with. Implementations: SQLite (embedded) and, later,
//! PostgreSQL; both must pass the shared `conformance` suite.
//!
//! A commit is all-or-nothing and durable when it returns: a caller may answer 2xx right after.
//! Concurrency is optimistic: a commit names the version it was decided against and fails with
//! `VersionConflict` if another commit got there first, so the caller re-decides on fresh state.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use signoff_audit::merkle::{Hash, Node};
use signoff_engine::{Event, RequestState, RequestStatus};
pub use log::LogLeaf;

pub mod cache;
pub mod log;
pub mod rate;
pub mod rows;
pub mod sql;
#[cfg(feature = "conformance")]
pub mod conformance;

pub use cache::{CachedState, DEFAULT_STATE_CACHE_BYTES, StateCache, state_cache};

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or refused the operation.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The caller passed something the store cannot use (e.g. a cursor it never issued).
    #[error("{0}")]
    Invalid(String),
    /// Stored data could not be decoded.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Reads stored JSON back, however deeply it nests (up to `nesting::READ_MAX_DEPTH`, far
/// beyond what the door lets in), so that everything a writer stored, this release or an
/// earlier one that checked less, can be read: a parser's default recursion limit (128) is
/// only a few levels above what clients could once send.
pub fn decode<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
    use signoff_engine::nesting::{READ_MAX_DEPTH, text_depth};
    let depth = text_depth(text.as_bytes());
    if depth > READ_MAX_DEPTH {
        return Err(StoreError::Corrupt(format!("stored JSON nests {depth} levels deep (at most {READ_MAX_DEPTH} are read)")));
    }
    let mut de = serde_json::Deserializer::from_str(text);
    // Bounded by the check above: the recursion stays far inside a thread's stack.
    de.disable_recursion_limit();
    let value = T::deserialize(&mut de).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    de.end().map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(value)
}

/// A change seen in a shared store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// This request was committed.
    Request(String),
    /// Changes may have been missed (the listener reconnected): re-read what you watch.
    Resync,
}

/// A response kept under an idempotency key, replayed on a retry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedResponse {
    pub status: u16,
    /// The JSON text of the response body.
    pub body: String,
}

/// An idempotency key, scoped to the caller, and the fingerprint of the call it was used for.
#[derive(Debug, Clone, PartialEq)]
pub struct IdempotencyRecord {
    pub scope: String,
    pub key: String,
    pub fingerprint: String,
    pub response: SavedResponse,
    pub at: Timestamp,
}

/// What a stored idempotency key says about a new call with that key.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyMatch {
    /// Same call: here is the first response again.
    Same(SavedResponse),
    /// The key was used for a different call.
    Different,
}

/// Events to append to one request, with the state they fold to.
#[derive(Debug, Clone)]
pub struct Commit {
    /// The version the events were decided against; 0 creates the request.
    pub expected_version: u64,
    pub events: Vec<Event>,
    /// Shared: the caller keeps it to publish after the commit, the store to cache it.
    pub state: Arc<RequestState>,
    pub idempotency: Option<IdempotencyRecord>,
    /// Notifications the events call for, written in the same transaction (the outbox).
    pub notifications: Vec<Outgoing>,
    /// `state` as JSON text, when the caller already has it (it is what the client gets back):
    /// stores that keep JSON use it instead of serializing the state again.
    pub encoded_state: Option<String>,
    /// The state the events were decided on (version `expected_version`), when the caller has
    /// it: a store may then skip rewriting indexes that did not change.
    pub previous: Option<Arc<RequestState>>,
}

impl Commit {
    /// A commit that creates a request: its first events and the state they fold to.
    pub fn create(events: Vec<Event>, state: Arc<RequestState>) -> Commit {
        Commit { expected_version: 0, events, state, idempotency: None, notifications: Vec::new(), encoded_state: None, previous: None }
    }

    /// A commit of `events`, decided on `previous`, that turn it into `state`.
    pub fn after(previous: Arc<RequestState>, events: Vec<Event>, state: Arc<RequestState>) -> Commit {
        Commit { expected_version: previous.version, previous: Some(previous), ..Commit::create(events, state) }
    }

    /// The committed state as a store keeps it in memory, weighed by its JSON (the caller's
    /// encoding when there is one).
    pub fn cached_state(&self) -> CachedState {
        match &self.encoded_state {
            Some(json) => CachedState::new(self.state.clone(), json.len()),
            None => CachedState::measured(self.state.clone()),
        }
    }
}

impl KeyMatch {
    /// What a key stored for a call with `stored_fingerprint` (and its response) says about a
    /// new call with `fingerprint`.
    pub fn of(stored_fingerprint: &str, fingerprint: &str, status: u16, body: String) -> KeyMatch {
        if stored_fingerprint == fingerprint { KeyMatch::Same(SavedResponse { status, body }) } else { KeyMatch::Different }
    }
}

/// A time as unix milliseconds, rounded up: stores index timers and retries this way, so that
/// they never call something due before the engine (which compares exact times) does.
pub fn due_millis(t: Timestamp) -> i64 {
    let ms = t.as_millisecond();
    if t.subsec_nanosecond() % 1_000_000 != 0 && t.as_second() >= 0 { ms + 1 } else { ms }
}

/// A notification to deliver, as planned from a commit's events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outgoing {
    /// `ntf_…`; also the `webhook-id` receivers deduplicate on.
    pub id: String,
    pub request_id: String,
    /// `webhook`, `slack` or `email`.
    pub channel: String,
    /// The webhook endpoint's name, the Slack channel or user, the email address.
    pub destination: String,
    /// What it is about: `event`, `task`, `update`, `reminder`, `escalation`, …
    pub kind: String,
    /// What the channel needs to build the message.
    pub payload: Value,
    /// A pending notification with the same key is replaced rather than joined (coalescing).
    pub coalesce_key: Option<String>,
    pub created_at: Timestamp,
    /// The W3C `traceparent` of the work that queued it, so that its delivery joins that trace;
    /// none with tracing off. Telemetry, not part of the notification's API form.
    #[serde(skip)]
    pub trace: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    /// Every attempt failed; no more will be made.
    Failed,
}

/// A notification as stored, with its delivery state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    #[serde(flatten)]
    pub outgoing: Outgoing,
    pub status: DeliveryStatus,
    pub attempts: u32,
    /// Bumped each time coalescing replaces the payload.
    pub revision: u32,
    pub next_attempt_at: Option<Timestamp>,
    pub last_error: Option<String>,
    /// What the receiver answered that later notifications need (e.g. a Slack message `ts`).
    pub result: Option<Value>,
    pub delivered_at: Option<Timestamp>,
}

/// The outcome of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub notification: String,
    /// The revision that was sent: if the payload was replaced meanwhile, it is sent again.
    pub revision: u32,
    pub at: Timestamp,
    /// The receiver's HTTP status (or SMTP code), if it answered.
    pub status: Option<u16>,
    pub outcome: AttemptOutcome,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum AttemptOutcome {
    Delivered { result: Option<Value> },
    /// Failed; try again at `next_attempt_at`, or never if it is `None`.
    Failed { error: String, next_attempt_at: Option<Timestamp> },
    /// Not attempted yet: something it depends on is not delivered (e.g. the Slack message an
    /// update edits). Does not count as an attempt.
    Deferred { until: Timestamp },
}

/// A notification with every attempt made, for `GET /v1/requests/{id}/notifications`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryReport {
    #[serde(flatten)]
    pub notification: Notification,
    pub attempt_log: Vec<Attempt>,
}

/// A request's state from `Store::snapshot`.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub state: RequestState,
    /// Known to be the latest committed state (false: it may be stale).
    pub current: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CommitOutcome {
    Committed,
    /// Another commit changed the request first (or the id already exists for a create).
    VersionConflict,
    /// The idempotency key was already used: nothing was written.
    KeyUsed(KeyMatch),
}

/// A policy document as planned with, kept by hash for as long as requests may need it.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyRecord {
    pub hash: String,
    pub id: String,
    pub version: u64,
    pub source: Value,
}

/// Filters of `GET /v1/requests`. Newest first.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub status: Option<RequestStatus>,
    pub policy: Option<String>,
    pub requester: Option<String>,
    /// Requests with a step this user can act on now.
    pub approver: Option<String>,
    pub subject: Option<String>,
    /// Only requests this user may see (requester or on the plan); `None` for admins.
    pub visible_to: Option<String>,
    pub limit: u32,
    /// Opaque position from a previous page.
    pub cursor: Option<String>,
    /// A page also ends before the item that would take it past this many bytes of state JSON
    /// (it always holds at least one item); `None`: only `limit` counts.
    pub max_bytes: Option<usize>,
    pub sort: ListSort,
    /// Only requests with an open task due before this instant (overdue at that time).
    pub overdue_at: Option<Timestamp>,
}

/// The order of a list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ListSort {
    /// Newest first.
    #[default]
    Newest,
    /// Open requests by their soonest due task, undated last; ties oldest first.
    Due,
}

#[derive(Debug, Clone)]
pub struct Page {
    pub items: Vec<RequestState>,
    pub next_cursor: Option<String>,
}

/// Which open tasks to read, soonest due first (undated last): an inbox page, or the admins'
/// view of everyone's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskQuery {
    /// Whose tasks; everyone's when `None`.
    pub approver: Option<String>,
    /// Only tasks of requests under this policy.
    pub policy: Option<String>,
    /// Tasks passed over first, for paging.
    pub offset: u32,
    pub limit: u32,
    /// Whether to count every task the query matches (`TaskPage::total`).
    pub count: bool,
}

/// One page of open tasks.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskPage {
    pub items: Vec<Task>,
    /// Every task the query matches, when it asked for the count.
    pub total: Option<u64>,
}

/// An open task in someone's inbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub request: String,
    pub step: String,
    pub title: Option<String>,
    pub reason: Option<String>,
    pub due_at: Option<Timestamp>,
    pub policy: String,
    /// Who may act on it. (Rows written before it was kept read back empty until their request
    /// next changes; the stores fill it from the row.)
    #[serde(default)]
    pub approver: String,
    #[serde(default)]
    pub requester: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
    /// When the whole request expires, if its policy sets `expires_in`. (Rows written before it
    /// was kept read back without it until their request next changes.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// Checklist items of the step not yet acknowledged (`require_acks`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pending_acks: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What the state gauges say, read from the store so that they are right after a restart and
/// the same on every instance sharing it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gauges {
    /// One per policy with a pending request.
    pub policies: Vec<PolicyGauges>,
    /// One per channel with an undelivered notification.
    pub channels: Vec<ChannelGauges>,
}

/// The open requests of one policy.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyGauges {
    pub policy: String,
    pub pending: u64,
    /// The oldest pending request's age, and the mean age, at the time asked about.
    pub oldest_age_seconds: f64,
    pub mean_age_seconds: f64,
    /// Checklist items not yet acknowledged on active steps.
    pub pending_acks: u64,
    /// Active steps past their due time (their SLA).
    pub overdue_steps: u64,
}

impl Gauges {
    /// The gauges from what a store's queries read, times as unix seconds: per policy
    /// (policy, pending, oldest and mean creation time), per policy its unacknowledged items and overdue steps,
    /// per channel (channel, backlog, oldest creation time).
    pub fn assemble(now: Timestamp, pending: Vec<(String, u64, f64, f64)>, acks: Vec<(String, u64, u64)>, outbox: Vec<(String, u64, f64)>) -> Gauges {
        let now = now.as_millisecond() as f64 / 1000.0;
        let age = |t: f64| (now - t).max(0.0);
        let policies = pending
            .into_iter()
            .map(|(policy, pending, oldest, mean)| {
                let (pending_acks, overdue_steps) = acks.iter().find(|(p, _, _)| *p == policy).map_or((0, 0), |(_, a, o)| (*a, *o));
                PolicyGauges { policy, pending, oldest_age_seconds: age(oldest), mean_age_seconds: age(mean), pending_acks, overdue_steps }
            })
            .collect();
        let channels = outbox.into_iter().map(|(channel, backlog, oldest)| ChannelGauges { channel, backlog, oldest_age_seconds: age(oldest) }).collect();
        Gauges { policies, channels }
    }
}

/// The undelivered notifications of one channel.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelGauges {
    pub channel: String,
    pub backlog: u64,
    pub oldest_age_seconds: f64,
}

/// A signed-in web session. The browser's cookie holds a random secret; the store keeps only
/// its sha256, so a copy of the database signs nobody in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id_hash: String,
    pub user: String,
    /// What a state change made through the cookie must carry (`X-CSRF-Token` or a form field).
    pub csrf: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// A task read back from its row: the body, with the approver its row is keyed by.
pub fn task_row(approver: String, body: &str) -> Result<Task> {
    let mut task: Task = decode(body)?;
    task.approver = approver;
    Ok(task)
}

/// An inbox row for each open approver slot of a state; what every store indexes.
pub fn tasks_of(state: &RequestState) -> Vec<(String, Task)> {
    state
        .open_tasks()
        .into_iter()
        .map(|(step, approver)| {
            (
                approver.to_string(),
                Task {
                    request: state.id.to_string(),
                    step: step.id.clone(),
                    title: state.title.clone(),
                    reason: step.reason.clone().or_else(|| step.title.clone()),
                    due_at: step.due_at,
                    policy: state.policy.id.clone(),
                    approver: approver.to_string(),
                    requester: Some(state.requester.clone()),
                    subject: state.subject.clone(),
                    expires_at: state.expires_at,
                    pending_acks: step.pending_acks().len() as u32,
                },
            )
        })
        .collect()
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The database answers.
    async fn ping(&self) -> Result<()>;

    /// Keeps a policy document by hash (idempotent).
    async fn put_policy(&self, policy: &PolicyRecord) -> Result<()>;

    /// A policy document by hash.
    async fn policy(&self, hash: &str) -> Result<Option<PolicyRecord>>;

    /// Every policy document kept (for export).
    async fn policies(&self) -> Result<Vec<PolicyRecord>>;

    /// The current state of a request.
    async fn load(&self, id: &str) -> Result<Option<RequestState>>;

    /// A state of the request to decide a commit on: possibly one this process cached that
    /// another process has since moved on (then `current` is false). Deciding on it is safe,
    /// since the commit's version check refuses a stale decision, but a caller that would
    /// answer from it without committing must `load` first.
    async fn snapshot(&self, id: &str) -> Result<Option<Snapshot>> {
        Ok(self.load(id).await?.map(|state| Snapshot { state, current: true }))
    }

    /// A request's whole history, oldest first.
    async fn events(&self, id: &str) -> Result<Vec<Event>> {
        self.event_bodies(id).await?.iter().map(|b| decode(b)).collect()
    }

    /// The request's events as stored, byte for byte (JSON text), oldest first: verification
    /// checks each is exactly what signoff wrote, not only that it reads the same.
    async fn event_bodies(&self, id: &str) -> Result<Vec<String>>;

    /// The request's state as stored, never from a cache: what verification compares with the
    /// fold of its events.
    async fn load_stored(&self, id: &str) -> Result<Option<RequestState>> {
        self.load(id).await
    }

    /// Appends events to several requests atomically and durably: all commits apply, or none
    /// (the outcome is then that of the first commit that could not apply).
    async fn commit_all(&self, commits: Vec<Commit>) -> Result<CommitOutcome>;

    /// Appends events to one request atomically and durably; see `CommitOutcome`.
    async fn commit(&self, commit: Commit) -> Result<CommitOutcome> {
        self.commit_all(vec![commit]).await
    }

    /// Claims up to `limit` requests with a timer due at `now`, earliest first, until
    /// `lease_until`: no other claim returns them meanwhile, so with several instances each due
    /// request is fired by one. A commit that moves the request's next timer ends the claim (a store may end it on
    /// any commit of the request); a claim whose
    /// holder died (or whose firing changed nothing) ends with its lease (or, for a store that
    /// only one process can open, when the store is opened again). Claims save work; firing
    /// exactly once rests on the version check of the commit.
    async fn claim_timers(&self, now: Timestamp, limit: u32, lease_until: Timestamp) -> Result<Vec<String>>;

    /// When the earliest timer of any request falls due (or its claim runs out).
    async fn next_timer_at(&self) -> Result<Option<Timestamp>>;

    /// Every request of a lineage, oldest first.
    async fn lineage(&self, lineage: &str) -> Result<Vec<RequestState>>;

    /// Claims up to `limit` pending notifications due at `now`, earliest first, until
    /// `lease_until`: nobody else claims them meanwhile. Recording an attempt ends the claim; a
    /// claim whose holder died ends with its lease (or, for a store that only one process can
    /// open, when the store is opened again).
    async fn claim_notifications(&self, now: Timestamp, limit: u32, lease_until: Timestamp) -> Result<Vec<Notification>>;

    /// When the earliest pending notification is due (or its claim runs out).
    async fn next_notification_at(&self) -> Result<Option<Timestamp>>;

    /// Records delivery attempts (durably, before returning).
    async fn record_attempts(&self, attempts: Vec<Attempt>) -> Result<()>;

    /// One notification.
    async fn notification(&self, id: &str) -> Result<Option<Notification>>;

    /// A request's notifications with their attempts, oldest first.
    async fn deliveries(&self, request_id: &str) -> Result<Vec<DeliveryReport>>;

    /// Ids of requests committed by anyone (other processes included), for stores shared by
    /// several instances; `Resync` after the feed was interrupted. `None` when this process is
    /// the only writer (its own commits are all it needs to know about).
    fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<Change>> {
        None
    }

    /// Starts a web session (and forgets sessions that have expired).
    async fn put_session(&self, session: &Session) -> Result<()>;

    /// The session whose secret hashes to `id_hash`, if it is live at `now`.
    async fn session(&self, id_hash: &str, now: Timestamp) -> Result<Option<Session>>;

    /// Ends a session (signing out); ending one that is gone already is no error.
    async fn end_session(&self, id_hash: &str) -> Result<()>;

    /// Records `key` as used at `at`; false if it was used before (replayed signatures, spent
    /// single-use links). Keys are kept at least a day.
    async fn use_once(&self, key: &str, at: Timestamp) -> Result<bool>;

    /// The directory changes made through the API after number `after`, in order: (number,
    /// the change as stored).
    async fn directory_changes(&self, after: u64) -> Result<Vec<(u64, String)>>;

    /// Records directory change number `seq` (durably, before returning); false if another
    /// writer recorded that number first (read the changes since, and decide again).
    async fn append_directory_change(&self, seq: u64, body: &str) -> Result<bool>;

    /// Takes up to `want` tokens from the rate-limit bucket `key` at `now`, filling by `rate`:
    /// `Ok(n)`, the n (at least one) it held; `Err(wait)` when it held none, and how long until
    /// it does. Every instance on the store draws from the same buckets.
    async fn take_tokens(&self, key: &str, rate: rate::Rate, now: Timestamp, want: u32) -> Result<std::result::Result<u32, std::time::Duration>>;

    /// Requests matching `query`, newest first.
    async fn list(&self, query: &ListQuery) -> Result<Page>;

    /// The state gauges at `now`: pending requests by policy, their ages and unacknowledged
    /// checklist items, and undelivered notifications by channel.
    async fn gauges(&self, now: Timestamp) -> Result<Gauges>;

    /// The open tasks `query` selects, soonest due first (undated last).
    async fn tasks(&self, query: &TaskQuery) -> Result<TaskPage>;

    /// The first `limit` open tasks of `user`.
    async fn inbox(&self, user: &str, limit: u32) -> Result<Vec<Task>> {
        Ok(self.tasks(&TaskQuery { approver: Some(user.to_string()), limit, ..Default::default() }).await?.items)
    }

    /// The first `limit` open tasks of everyone.
    async fn open_tasks(&self, limit: u32) -> Result<Vec<Task>> {
        Ok(self.tasks(&TaskQuery { limit, ..Default::default() }).await?.items)
    }

    /// What an idempotency key already holds, if anything.
    async fn idempotency(&self, scope: &str, key: &str, fingerprint: &str) -> Result<Option<KeyMatch>>;

    /// Appends up to `limit` events to the audit log, in the order commits queued them, in one
    /// transaction; answers the log's size after. (While another instance is sequencing,
    /// nothing is appended.)
    async fn sequence_log(&self, limit: u32) -> Result<u64>;

    /// The audit log's size, and how many committed events wait to join it.
    async fn log_size(&self) -> Result<LogSize>;

    /// The stored hashes of the tree nodes `wanted` (those that exist).
    async fn log_nodes(&self, wanted: &[Node]) -> Result<HashMap<Node, Hash>>;

    /// At most `limit` leaves from index `from` on, in order.
    async fn log_leaves(&self, from: u64, limit: u32) -> Result<Vec<LogLeaf>>;

    /// One request's leaves, by sequence number.
    async fn log_leaves_of(&self, request_id: &str) -> Result<Vec<LogLeaf>>;

    /// At most `limit` leaves from index `from` on, in order, each with its event as stored and
    /// its request's policy and current status: what an audit export streams. A leaf whose
    /// event or request is gone is left out.
    async fn audit_rows(&self, from: u64, limit: u32) -> Result<Vec<log::AuditRow>>;

    /// At most `limit` closed requests in one of `statuses` (never `pending`), of `policy` (any
    /// when none), last changed before `before`, oldest first: what a retention rule archives.
    async fn retention_candidates(&self, policy: Option<&str>, statuses: &[RequestStatus], before: Timestamp, limit: u32) -> Result<Vec<String>>;

    /// Removes these requests, with their events, tasks, timers and notifications, in one
    /// transaction, and records each as archived in `archive`; a pending one is left alone.
    /// The audit log keeps their leaves, so checkpoints and proofs still verify. Answers how
    /// many went.
    async fn purge(&self, ids: &[String], archive: &str, at: Timestamp) -> Result<u64>;

    /// Every purged request and the archive it went to.
    async fn purged(&self) -> Result<HashMap<String, String>>;

    /// Deletes idempotency keys stored before `keys_before`, delivered (or finally failed)
    /// notifications created before `notifications_before`, and spent single-use keys from
    /// before `used_before`.
    async fn prune(&self, keys_before: Timestamp, notifications_before: Timestamp, used_before: Timestamp) -> Result<Pruned>;

    /// Writes the analytics projection: each request's facts (JSON text, opaque here) as of
    /// log index `cursor`, and `cursor` as how far it has read, in one transaction. A row
    /// already written at a later cursor (by another instance) is kept.
    async fn put_facts(&self, rows: Vec<FactsRow>, cursor: u64) -> Result<()>;

    /// How far the projection has read the audit log.
    async fn facts_cursor(&self) -> Result<u64>;

    /// At most `limit` projection rows after `after` (cursor, request id), in that order.
    async fn facts_page(&self, after: (u64, &str), limit: u32) -> Result<Vec<FactsRow>>;
}

/// One request's row of the analytics projection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactsRow {
    pub request_id: String,
    /// The log index up to which these facts were folded.
    pub cursor: u64,
    pub body: String,
}

/// What `Store::prune` deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pruned {
    pub idempotency_keys: u64,
    pub notifications: u64,
    pub used_keys: u64,
}

/// How big the audit log is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogSize {
    /// Leaves in the tree.
    pub size: u64,
    /// Committed events not yet in it.
    pub queued: u64,
}
