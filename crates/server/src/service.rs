//! The service: what every entry point (HTTP, CLI, tests) does with a call. It authorizes,
//! asks the pure engine to decide, and commits the events through the store, re-deciding on
//! fresh state when another commit to the same request got there first. Handlers stay thin.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde_json::{Value, json};
use signoff_engine::machine::{self, Action, Command, Outcome, Submission};
use signoff_engine::{Code, Event, LineageId, Policy, RequestId, RequestState, RequestStatus};
use signoff_store::{
    Commit, CommitOutcome, IdempotencyRecord, KeyMatch, ListQuery, Page, PolicyRecord, SavedResponse, Snapshot, Store, Task,
    TaskPage, TaskQuery,
};

use crate::catalog::{Catalog, CatalogError, Sources};
use crate::telemetry::{self, Tally};
use tracing::Instrument;
use crate::clock::Clock;
use crate::error::Problem;
use crate::feed::Feed;
use crate::notify::Channels;
use crate::notify::{self, NotifyConfig};
use crate::scheduler::TimerWake;

/// Why an emailed link did not act.
pub enum LinkOutcome {
    /// A rejection without a reason: show the form again (the link is not spent).
    NeedsReason(crate::notify::email::LinkClaim),
    Refused(Problem),
}

/// Whether `caller` may see a request: its requester, anyone on its plan, or an admin.
fn may_see(caller: &Caller, state: &RequestState) -> bool {
    caller.admin || state.participants().contains(&caller.id.as_str())
}

/// Why a reload kept the previous catalog.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Invalid(CatalogError),
    #[error("{0}")]
    Store(signoff_store::StoreError),
}

/// How many times a command is re-decided after losing a race before the caller is told to retry.
const MAX_ATTEMPTS: usize = 32;

/// The authenticated user of a call.
#[derive(Debug, Clone)]
pub struct Caller {
    pub id: String,
    pub admin: bool,
    /// Where the call came from (API calls), stamped on the events it causes.
    pub origin: Option<signoff_engine::event::Origin>,
}

impl Caller {
    /// Stamps `events` (one decision's new events) with this caller's origin, if it has one,
    /// and moves `state`'s head to the resealed chain.
    fn stamp(&self, events: &mut [Event], state: &mut RequestState) {
        if let Some(origin) = &self.origin
            && let Some(head) = signoff_engine::event::stamp_origin(events, &self.id, origin)
        {
            state.head_hash = head;
        }
    }
}

/// An `Idempotency-Key` and the fingerprint of the call it came with.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    pub key: String,
    pub fingerprint: String,
}

/// What a call produced: its kind and its JSON text (a problem when it was refused). The body
/// is serialized once, straight from the state: it is what the client gets and what an
/// idempotency key keeps.
#[derive(Debug, Clone)]
pub struct Reply {
    pub kind: Replied,
    pub body: String,
}

/// The kind of a reply; the edge answers it with `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replied {
    /// A request was submitted.
    Created,
    /// An action was applied (or repeated).
    Done,
    /// An action was refused, and the refusal recorded in the history.
    Refused(Code),
}

impl Replied {
    /// The HTTP status of the reply, which is also what an idempotency key keeps.
    pub fn status(self) -> u16 {
        match self {
            Replied::Created => 201,
            Replied::Done => 200,
            Replied::Refused(code) => code.http_status(),
        }
    }

    pub fn is_success(self) -> bool {
        !matches!(self, Replied::Refused(_))
    }
}

impl Reply {
    fn from_saved(saved: SavedResponse) -> Reply {
        let kind = match saved.status {
            201 => Replied::Created,
            200..=299 => Replied::Done,
            _ => Replied::Refused(serde_json::from_str(&saved.body).map_or(Code::Internal, |b: Value| Problem::from_body(&b).code)),
        };
        Reply { kind, body: saved.body }
    }

    fn of<T: serde::Serialize>(kind: Replied, value: &T) -> Result<Reply, Problem> {
        Ok(Reply { kind, body: serde_json::to_string(value).map_err(Problem::internal)? })
    }

    /// The body as a JSON value.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

pub use signoff_api::{ActionBody, ActionFields, PlanBody, SubmitBody};

pub struct Service {
    store: Arc<dyn Store>,
    sources: Sources,
    catalog: ArcSwap<Catalog>,
    clock: Arc<dyn Clock>,
    /// Policies requests were planned with that are no longer (or not yet) in the catalog.
    pinned: Mutex<HashMap<String, Arc<Policy>>>,
    timer_wake: Arc<TimerWake>,
    feed: Arc<Feed>,
    /// Notification settings, for the integrations' inbound side (Slack clicks, email links).
    notify: Arc<NotifyConfig>,
    /// The channels notifications are planned for.
    channels: Arc<Channels>,
    outbox_wake: Arc<tokio::sync::Notify>,
    /// Commands on one request queue here rather than race to a version conflict: a lost race
    /// costs a second decision and a second trip through group commit. Other instances sharing
    /// the database are still caught by optimistic concurrency.
    request_locks: Vec<tokio::sync::Mutex<()>>,
    limits: crate::transport::Limits,
    memory: crate::Memory,
    /// Set once the server begins to shut down: live streams end and long polls answer.
    closing: tokio::sync::watch::Sender<bool>,
    /// Signs the audit log's checkpoints; none on PostgreSQL without a configured key.
    audit_key: Option<Arc<ed25519_dalek::SigningKey>>,
    retention: crate::retention::Retention,
    /// The analytics projection, and whether it follows the log in the background.
    insights: Arc<crate::insights::Projection>,
    follow_insights: bool,
    /// Rate limits, when they are on.
    throttle: Option<crate::throttle::Throttle>,
    /// The listener's certificates, when it serves HTTPS.
    tls: Option<Arc<crate::tls::Tls>>,
    /// The directory changes made through the API, applied over the directory file.
    people: crate::people::People,
    /// Single sign-on, when an issuer is configured.
    oidc: Option<Arc<crate::oidc::Oidc>>,
}

/// Stripes of `request_locks`; unrelated requests rarely share one.
const LOCK_STRIPES: usize = 1024;

fn refusal_error(r: machine::Refusal) -> Problem {
    Problem::new(r.code, r.detail)
}

/// A refusal for a caller who cannot see the request: its code, and nothing of the request.
fn outsider_error(r: machine::Refusal) -> Problem {
    Problem::new(r.code, format!("refused ({}); you are not on this request, so no more is said", r.code))
}

impl Service {
    /// Loads the catalog and records its policies in the store.
    pub async fn start(store: Arc<dyn Store>, sources: Sources, clock: Arc<dyn Clock>) -> Result<Service, crate::StartError> {
        let catalog = Catalog::load(&sources)?;
        let service = Service {
            store,
            sources,
            catalog: ArcSwap::from_pointee(catalog),
            clock,
            pinned: Mutex::new(HashMap::new()),
            request_locks: (0..LOCK_STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            timer_wake: Arc::new(TimerWake::new()),
            feed: Arc::new(Feed::default()),
            notify: Arc::new(NotifyConfig::default()),
            channels: Arc::new(Channels::default()),
            outbox_wake: Arc::new(tokio::sync::Notify::new()),
            limits: Default::default(),
            memory: Default::default(),
            closing: tokio::sync::watch::Sender::new(false),
            audit_key: None,
            retention: crate::retention::RetentionConfig::default().check(None).expect("the defaults are valid"),
            insights: Arc::new(crate::insights::Projection::default()),
            follow_insights: true,
            throttle: None,
            tls: None,
            people: Default::default(),
            oidc: None,
        };
        service.people.catch_up(&*service.store, &service.catalog).await?;
        service.record_policies(&service.catalog()).await?;
        if let Some(changes) = service.store.changes() {
            tokio::spawn(service.feed.clone().follow(service.store.clone(), changes));
        }
        Ok(service)
    }

    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.load_full()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn now(&self) -> jiff::Timestamp {
        self.clock.now()
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Sets where notifications go (checked by the caller).
    pub fn with_notify(mut self, config: NotifyConfig) -> Self {
        self.channels = Arc::new(Channels::configured(&config));
        self.notify = Arc::new(config);
        self
    }

    /// Sets what the HTTP transport allows each client.
    pub fn with_limits(mut self, limits: crate::transport::Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets how much memory responses may take.
    pub fn with_audit_key(mut self, key: Option<ed25519_dalek::SigningKey>) -> Self {
        self.audit_key = key.map(Arc::new);
        self
    }

    pub fn with_retention(mut self, retention: crate::retention::Retention) -> Self {
        self.retention = retention;
        self
    }

    /// Runs retention once, as of now.
    pub async fn run_retention(&self, dry: bool) -> Result<crate::retention::RunReport, String> {
        let mode = if dry { crate::retention::Mode::Dry } else { crate::retention::Mode::Paced };
        let report = crate::retention::run(&*self.store, &self.retention, self.audit_key.as_deref(), self.now(), mode).await?;
        if !dry {
            self.insights.forget(&report.requests);
        }
        Ok(report)
    }

    /// Runs retention every `retention.every` until dropped (a failed run is logged and tried
    /// again at the next).
    pub async fn retain(self: Arc<Self>) {
        loop {
            tokio::time::sleep(self.retention.every).await;
            match self.run_retention(false).await {
                Ok(r) => tracing::info!(archived = r.requests.len(), archives = r.archives.len(), keys = r.pruned.idempotency_keys, notifications = r.pruned.notifications, used_keys = r.pruned.used_keys, "retention ran"),
                Err(e) => tracing::warn!(error = %e, "retention failed; trying again at its next run"),
            }
        }
    }

    /// Limits calls by `limits` (none: no limits).
    pub fn with_rate_limits(mut self, limits: Option<crate::throttle::RateLimits>) -> Self {
        self.throttle = limits.map(|l| crate::throttle::Throttle::new(l, self.store.clone()));
        self
    }

    /// Accepts JWT bearer tokens from (and signs the web inbox in through) `oidc`.
    pub fn with_oidc(mut self, oidc: Option<Arc<crate::oidc::Oidc>>) -> Self {
        self.oidc = oidc;
        self
    }

    /// Single sign-on, when an issuer is configured.
    pub fn oidc(&self) -> Option<&Arc<crate::oidc::Oidc>> {
        self.oidc.as_ref()
    }

    /// The caller a bearer token names: a JWT from the single sign-on issuer, when one is
    /// configured and the token is one, else a token of the directory; else why not.
    pub async fn authenticate_bearer(&self, token: &str) -> Result<Caller, String> {
        match self.oidc() {
            Some(oidc) if crate::oidc::Oidc::looks_like_jwt(token) => self.caller_of(oidc.verify(token, self.now(), None).await?).await,
            _ => self.authenticate(token).ok_or_else(|| "unknown token".to_string()),
        }
    }

    /// The caller an issuer's `identity` names: a directory user, whose group memberships
    /// follow the token's groups when a groups claim is configured (recorded as directory
    /// changes by `oidc`, only when they differ).
    pub async fn caller_of(&self, identity: crate::oidc::Identity) -> Result<Caller, String> {
        use signoff_engine::directory::Change;
        let catalog = self.catalog();
        if catalog.directory.user(&identity.user).is_none() {
            return Err(format!("`{}` is no user of the directory", identity.user));
        }
        if let Some(groups) = &identity.groups {
            // Joins and leaves one membership at a time, so that two people signing in at once
            // cannot undo each other's.
            let user = &identity.user;
            let changes: Vec<Change> = catalog
                .directory
                .groups()
                .filter_map(|(id, members)| match (members.contains(user), groups.contains(id)) {
                    (false, true) => Some(Change::JoinGroup { group: id.clone(), user: user.clone() }),
                    (true, false) => Some(Change::LeaveGroup { group: id.clone(), user: user.clone() }),
                    _ => None,
                })
                .collect();
            for change in changes {
                self.people.change(&*self.store, &self.catalog, "oidc", None, change, self.now()).await.map_err(|e| e.detail)?;
            }
        }
        let catalog = self.catalog();
        Ok(Caller { id: identity.user.clone(), admin: catalog.directory.is_admin(&identity.user), origin: None })
    }

    /// Serves HTTPS with `tls` (none: plain HTTP).
    pub fn with_tls(mut self, tls: Option<Arc<crate::tls::Tls>>) -> Self {
        self.tls = tls;
        self
    }

    /// The listener's certificates, when it serves HTTPS.
    pub fn tls(&self) -> Option<&Arc<crate::tls::Tls>> {
        self.tls.as_ref()
    }

    /// The rate limits in force, if any.
    pub fn throttle(&self) -> Option<&crate::throttle::Throttle> {
        self.throttle.as_ref()
    }

    /// Whether the analytics projection follows the log in the background.
    pub fn with_insights(mut self, follow: bool) -> Self {
        self.follow_insights = follow;
        self
    }

    /// The analytics projection, brought up to date.
    pub async fn insights(&self) -> Result<&crate::insights::Projection, Problem> {
        self.insights.refresh(&*self.store).await?;
        Ok(&self.insights)
    }

    pub fn with_memory(mut self, memory: crate::Memory) -> Self {
        self.memory = memory;
        self
    }

    pub fn limits(&self) -> &crate::transport::Limits {
        &self.limits
    }

    /// Tells live streams and long polls that the server is shutting down.
    pub fn begin_shutdown(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once the server has begun to shut down.
    pub async fn closing(&self) {
        let mut rx = self.closing.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }

    pub fn notify_config(&self) -> &Arc<NotifyConfig> {
        &self.notify
    }

    pub fn feed(&self) -> &Arc<Feed> {
        &self.feed
    }

    /// The background workers, each given the components it uses.
    pub fn workers(self: &Arc<Self>) -> crate::Workers {
        crate::Workers {
            scheduler: crate::scheduler::Scheduler::new(self.clone(), self.store.clone(), self.clock.clone(), self.timer_wake.clone()),
            dispatcher: notify::dispatch::Dispatcher::new(self.store.clone(), self.clock.clone(), self.channels.clone(), self.outbox_wake.clone()),
            sequencer: Box::pin(crate::audit::sequencer(self.store.clone())),
            follower: self.follow_insights.then(|| Box::pin(crate::insights::follower(self.store.clone(), self.insights.clone())) as _),
        }
    }

    async fn record_policies(&self, catalog: &Catalog) -> Result<(), signoff_store::StoreError> {
        for p in catalog.policies.values() {
            let record = PolicyRecord { hash: p.hash.clone(), id: p.id.clone(), version: p.version, source: p.source.clone() };
            self.store.put_policy(&record).await?;
        }
        Ok(())
    }

    /// Re-reads policies and directory; on any error the previous catalog stays in force. The
    /// new policies are stored before they go live, so every request can find the exact policy
    /// it was planned with.
    pub async fn reload(&self) -> Result<Arc<Catalog>, ReloadError> {
        let fresh = Catalog::load(&self.sources).map_err(ReloadError::Invalid)?;
        self.record_policies(&fresh).await.map_err(ReloadError::Store)?;
        // The API's changes apply over the reloaded file as they did over the old one.
        Ok(self.people.install(&fresh, &self.catalog).await)
    }

    pub fn authenticate(&self, token: &str) -> Option<Caller> {
        let catalog = self.catalog.load();
        let user = catalog.directory.authenticate_at(token, self.now())?;
        Some(Caller { id: user.id.clone(), admin: catalog.directory.is_admin(&user.id), origin: None })
    }

    /// Starts a web session for `user` (signed in by token today; single sign-on would end the
    /// same way): the secret for the cookie, and the session the store keeps of it.
    pub async fn start_session(&self, user: &str) -> Result<(String, signoff_store::Session), Problem> {
        let secret = random_hex().map_err(Problem::internal)?;
        let now = self.clock.now();
        let session = signoff_store::Session {
            id_hash: session_hash(&secret),
            user: user.to_string(),
            csrf: random_hex().map_err(Problem::internal)?,
            created_at: now,
            expires_at: now + SESSION_LIFETIME,
        };
        self.store.put_session(&session).await?;
        Ok((secret, session))
    }

    /// The caller a session cookie's secret stands for, with its session, while it lives and its
    /// user is still in the directory.
    pub async fn session_caller(&self, secret: &str) -> Result<Option<(Caller, signoff_store::Session)>, Problem> {
        let Some(session) = self.store.session(&session_hash(secret), self.clock.now()).await? else { return Ok(None) };
        let catalog = self.catalog.load();
        if catalog.directory.user(&session.user).is_none() {
            return Ok(None);
        }
        let caller = Caller { id: session.user.clone(), admin: catalog.directory.is_admin(&session.user), origin: None };
        Ok(Some((caller, session)))
    }

    /// Signs a session out.
    pub async fn end_session(&self, secret: &str) -> Result<(), Problem> {
        Ok(self.store.end_session(&session_hash(secret)).await?)
    }

    /// The exact policy a request was planned with.
    pub async fn policy_for(&self, state: &RequestState) -> Result<Arc<Policy>, Problem> {
        let hash = &state.policy.hash;
        if let Some(p) = self.catalog.load().policies.get(&state.policy.id).filter(|p| &p.hash == hash) {
            return Ok(p.clone());
        }
        if let Some(p) = self.pinned.lock().map_err(Problem::internal)?.get(hash) {
            return Ok(p.clone());
        }
        let record = self
            .store
            .policy(hash)
            .await?
            .ok_or_else(|| Problem::internal(format!("policy {hash} of request {} is missing", state.id)))?;
        let policy = Arc::new(Policy::from_value(record.source).map_err(|e| Problem::internal(format!("{e:?}")))?);
        self.pinned.lock().map_err(Problem::internal)?.insert(hash.clone(), policy.clone());
        Ok(policy)
    }

    async fn check_key(&self, caller: &Caller, idem: &Option<IdempotencyKey>) -> Result<Option<Reply>, Problem> {
        let Some(k) = idem else { return Ok(None) };
        match self.store.idempotency(&caller.id, &k.key, &k.fingerprint).await? {
            None => Ok(None),
            Some(m) => key_reply(m).map(Some),
        }
    }

    fn record(caller: &Caller, idem: &Option<IdempotencyKey>, reply: &Reply, now: jiff::Timestamp) -> Option<IdempotencyRecord> {
        idem.as_ref().map(|k| IdempotencyRecord {
            scope: caller.id.clone(),
            key: k.key.clone(),
            fingerprint: k.fingerprint.clone(),
            response: SavedResponse { status: reply.kind.status(), body: reply.body.clone() },
            at: now,
        })
    }

    #[tracing::instrument(name = "submit", skip_all, fields(policy = %body.policy, actor = %caller.id))]
    pub async fn submit(&self, caller: &Caller, body: SubmitBody, idem: Option<IdempotencyKey>) -> Result<Reply, Problem> {
        if body.subject.as_deref().is_some_and(|s| s.chars().any(char::is_control)) {
            return Err(Problem::bad_parameter("subject may not contain control characters"));
        }
        if let Some(reply) = self.check_key(caller, &idem).await? {
            return Ok(reply);
        }
        let catalog = self.catalog();
        let policy = loaded(&catalog, &body.policy)?.clone();
        for _ in 0..MAX_ATTEMPTS {
            let now = self.clock.now();
            let earlier = match &body.resubmits {
                None => None,
                Some(id) => Some(self.resubmittable(caller, id, &policy, now).await?),
            };
            let id = RequestId::from_key(&uuid::Uuid::now_v7().simple().to_string());
            let lineage = match &earlier {
                None => LineageId::started_by(&id),
                Some(e) => e.lineage.clone().unwrap_or_else(|| LineageId::started_by(&e.id)),
            };
            let sub = Submission {
                id: id.clone(),
                requester: caller.id.clone(),
                title: body.title.clone(),
                subject: body.subject.clone(),
                context: body.context.clone(),
                evidence: body.evidence.clone(),
                lineage: Some(lineage),
                resubmits: body.resubmits.as_deref().map(RequestId::from),
            };
            let (mut events, mut state) = machine::submit(&policy, &catalog.directory, sub, now).map_err(submit_error)?;
            caller.stamp(&mut events, &mut state);
            let reply = Reply::of(Replied::Created, &state)?;
            let notifications = self.channels.plan(&policy, &catalog.directory, &events, &state);
            let state = Arc::new(state);
            let tally = Tally::of(&events, &state);
            let mut commits = vec![Commit {
                idempotency: Self::record(caller, &idem, &reply, now),
                notifications,
                encoded_state: Some(reply.body.clone()),
                ..Commit::create(events, state.clone())
            }];
            if let Some(e) = &earlier {
                // The earlier request's history links forward to this one, in the same commit.
                let link = Command { actor: signoff_engine::SYSTEM_ACTOR.into(), action: Action::NoteResubmission { by: id } };
                let d = machine::decide(&policy, &catalog.directory, e, &link, now);
                commits.push(Commit::after(Arc::new(e.clone()), d.events, Arc::new(d.state)));
            }
            let linked = commits.get(1).map(|c| c.state.clone());
            let span = tracing::info_span!("store.commit", signoff.commits = commits.len());
            match self.store.commit_all(commits).instrument(span).await? {
                CommitOutcome::Committed => {
                    self.committed(&state);
                    if let Some(earlier) = linked {
                        self.committed(&earlier);
                    }
                    tally.record();
                    return Ok(reply);
                }
                CommitOutcome::KeyUsed(m) => return key_reply(m),
                // The earlier request changed (or was re-submitted) meanwhile: check again.
                CommitOutcome::VersionConflict => continue,
            }
        }
        Err(Problem::new(Code::Busy, "the request is changing too fast; retry"))
    }

    /// The earlier request a resubmission names, if it may be re-submitted now: the caller's own
    /// (or an admin's pick), of the same policy, closed without approval, and within the
    /// policy's cooldown and lineage limit.
    async fn resubmittable(&self, caller: &Caller, earlier: &str, policy: &Policy, now: jiff::Timestamp) -> Result<RequestState, Problem> {
        let prev = self.visible(caller, earlier).await?;
        if prev.requester != caller.id && !caller.admin {
            return Err(Problem::new(Code::Forbidden, format!("{earlier} was requested by {}; only they can re-submit it", prev.requester)));
        }
        if prev.policy.id != policy.id {
            return Err(Problem::new(Code::NotTerminal, format!("{earlier} is a request of policy `{}`", prev.policy.id)));
        }
        if !prev.status.is_terminal() || prev.status == RequestStatus::Approved {
            return Err(Problem::new(
                Code::NotTerminal,
                format!("{earlier} is {}; only rejected, expired or cancelled requests can be re-submitted", prev.status.as_str()),
            ));
        }
        let Some(rules) = &policy.resubmission else { return Ok(prev) };
        if let Some(lineage) = &prev.lineage {
            let members = self.store.lineage(lineage).await?.len().max(1);
            if let Some(max) = rules.max_per_lineage
                && members >= max as usize {
                    return Err(Problem::new(Code::LineageLimit, format!("lineage {lineage} already has {members} of at most {max} requests")));
                }
        }
        if let (Some(cooldown), Some(closed)) = (rules.cooldown, prev.decided_at) {
            let ready = closed.checked_add(cooldown).unwrap_or(closed);
            if now < ready {
                let wait = ready.duration_since(now).as_secs().max(1);
                return Err(Problem::new(Code::ResubmitCooldown, format!("{earlier} closed at {closed}; re-submit after {ready}"))
                    .retry_after(wait as u64));
            }
        }
        Ok(prev)
    }

    pub async fn act(&self, caller: &Caller, id: &str, body: ActionBody, idem: Option<IdempotencyKey>) -> Result<Reply, Problem> {
        let command = Command { actor: caller.id.clone(), action: body.into() };
        let span = tracing::info_span!("action", otel.name = %format!("action {}", command.action.name()), request = id, actor = %caller.id);
        async {
            if let Some(reply) = self.check_key(caller, &idem).await? {
                return Ok(reply);
            }
            Ok(self.run_command(id, &command, Some(caller), &idem).await?.0)
        }
        .instrument(span)
        .await
    }

    /// Load, decide, commit; on a lost race, again on fresh state. `caller` is `None` for the
    /// system (no visibility check). Returns the reply and whether anything was committed.
    async fn run_command(&self, id: &str, command: &Command, caller: Option<&Caller>, idem: &Option<IdempotencyKey>) -> Result<(Reply, bool), Problem> {
        let _turn = self.request_locks[stripe_of(id)].lock().await;
        let not_found = || Problem::not_found(format!("no request `{id}`"));
        // First decide on the store's snapshot, which may be stale where several instances
        // share the store; whatever is answered without a commit (whose version check would
        // catch the staleness) is decided again on the current state.
        let mut need_current = false;
        for _ in 0..MAX_ATTEMPTS {
            let Snapshot { state, current } = if need_current {
                self.store.load(id).await?.map(|state| Snapshot { state, current: true })
            } else {
                self.store.snapshot(id).await?
            }
            .ok_or_else(not_found)?;
            need_current = true;
            // A caller who cannot see the request may still try to act on it: the attempt is
            // refused (and recorded) like any other, but the answer says nothing of the request.
            let outsider = caller.is_some_and(|c| !may_see(c, &state));
            if outsider && !current {
                continue;
            }
            let policy = self.policy_for(&state).await?;
            let directory = self.catalog.load().directory.clone();
            let now = self.clock.now();
            let mut decision = machine::decide(&policy, &directory, &state, command, now);
            if let Some(c) = caller {
                c.stamp(&mut decision.events, &mut decision.state);
            }
            let unrecorded = matches!(decision.outcome, Outcome::Refused(_)) && decision.events.is_empty();
            let reply = match decision.outcome {
                Outcome::Invalid(_) | Outcome::Unchanged if !current => continue,
                Outcome::Refused(_) if unrecorded && !current => continue,
                // Nothing an outsider does can change a request; should it ever, it is not theirs to know.
                Outcome::Applied | Outcome::Unchanged if outsider => return Err(not_found()),
                Outcome::Invalid(r) if outsider => return Err(outsider_error(r)),
                Outcome::Invalid(r) => return Err(refusal_error(r)),
                Outcome::Unchanged => return Ok((Reply::of(Replied::Done, &decision.state)?, false)),
                Outcome::Applied => Reply::of(Replied::Done, &decision.state)?,
                Outcome::Refused(r) => {
                    let e = if outsider { outsider_error(r) } else { refusal_error(r) };
                    if unrecorded {
                        // The caller used up the refusals the history records (see
                        // `MAX_RECORDED_REFUSALS`): answered, logged and counted, not recorded.
                        tracing::warn!(request = %id, actor = %command.actor, code = e.code.as_str(), "refusal not recorded: the caller reached the limit of recorded refusals");
                        metrics::counter!(telemetry::REFUSALS_UNRECORDED).increment(1);
                        return Err(e);
                    }
                    Reply::of(Replied::Refused(e.code), &e.body())?
                }
            };
            let notifications = self.channels.plan(&policy, &directory, &decision.events, &decision.state);
            let new_state = Arc::new(decision.state);
            let tally = Tally::of(&decision.events, &new_state);
            let commit = Commit {
                idempotency: caller.and_then(|c| Self::record(c, idem, &reply, now)),
                notifications,
                // The reply of an applied command is the new state: the store need not encode it again.
                encoded_state: reply.kind.is_success().then(|| reply.body.clone()),
                ..Commit::after(Arc::new(state), decision.events, new_state.clone())
            };
            match self.store.commit(commit).instrument(tracing::info_span!("store.commit", signoff.commits = 1)).await? {
                CommitOutcome::Committed => {
                    self.committed(&new_state);
                    tally.record();
                    metrics::counter!(telemetry::ACTIONS, "action" => command.action.name(), "status" => reply.kind.status().to_string()).increment(1);
                    return Ok((reply, true));
                }
                CommitOutcome::KeyUsed(m) => return key_reply(m).map(|r| (r, false)),
                CommitOutcome::VersionConflict => {
                    metrics::counter!(telemetry::COMMIT_CONFLICTS).increment(1);
                    continue;
                }
            }
        }
        Err(Problem::new(Code::Busy, "the request is changing too fast; retry"))
    }

    /// What follows every durable commit: the scheduler learns of an earlier timer, watchers
    /// get the new state.
    fn committed(&self, state: &Arc<RequestState>) {
        self.timer_wake.hint(state.next_timer_at);
        if self.channels.is_active() {
            self.outbox_wake.notify_one();
        }
        if self.feed.is_watched(state) {
            self.feed.publish(state.clone());
        }
    }

    /// The request if `caller` may see it (see `may_see`); anyone else is told it does not exist.
    pub async fn visible(&self, caller: &Caller, id: &str) -> Result<RequestState, Problem> {
        let state = self.store.load(id).await?.ok_or_else(|| Problem::not_found(format!("no request `{id}`")))?;
        if may_see(caller, &state) { Ok(state) } else { Err(Problem::not_found(format!("no request `{id}`"))) }
    }

    /// A Slack button click (already parsed): acts as the directory user linked to the Slack
    /// account, with exactly the API's authorization. Answers the text to show the clicker.
    pub async fn slack_click(&self, click: notify::slack::Click) -> Result<String, Problem> {
        let directory = self.catalog.load().directory.clone();
        let Some(user) = directory.users().find(|u| u.slack.as_deref() == Some(click.slack_user.as_str())) else {
            return Ok(format!("Your Slack account ({}) is not linked to a signoff user.", click.slack_user));
        };
        let caller = Caller { id: user.id.clone(), admin: directory.is_admin(&user.id), origin: None };
        if click.action == "reject" && click.reason.is_none() {
            return Ok("Type a reason in the box, then press Reject.".into());
        }
        let fields = ActionFields { action: click.action.clone(), step: Some(click.step.clone()), comment: click.reason.clone(), ..Default::default() };
        let body = ActionBody::try_from(fields).map_err(Problem::bad_parameter)?;
        match self.act(&caller, &click.request, body, None).await {
            Ok(reply) if reply.kind.is_success() => Ok(format!("Done: {} on step {} of {}.", click.action, click.step, click.request)),
            Ok(reply) => {
                let problem = reply.json();
                Ok(format!("Not done ({}): {}", problem["code"].as_str().unwrap_or(""), problem["detail"].as_str().unwrap_or("")))
            }
            Err(e) if e.code.is_client_error() => Ok(format!("Not done ({}): {}", e.code, e.detail)),
            Err(e) => Err(e),
        }
    }

    /// What an emailed link would do, if it is genuine and has not expired.
    pub fn email_link(&self, token: &str) -> Result<crate::notify::email::LinkClaim, Problem> {
        use crate::notify::email;
        let config = self.notify.email.as_ref().ok_or_else(|| Problem::not_found("email is not configured"))?;
        email::open(&config.link_secret, token, self.now()).map_err(|e| match e {
            email::BadLink::Forged => Problem::bad_parameter("this link is not one signoff sent"),
            email::BadLink::Expired => Problem::new(Code::LinkExpired, "this link has expired"),
        })
    }

    /// Spends an emailed link and acts as its user, with exactly the API's authorization.
    pub async fn email_act(&self, token: &str, comment: Option<String>) -> Result<String, LinkOutcome> {
        let claim = self.email_link(token).map_err(LinkOutcome::Refused)?;
        if claim.a == "reject" && comment.is_none() {
            return Err(LinkOutcome::NeedsReason(claim));
        }
        let directory = self.catalog.load().directory.clone();
        let caller = Caller { id: claim.u.clone(), admin: directory.is_admin(&claim.u), origin: None };
        // The link is spent by the commit that acts on it: its nonce is the action's
        // idempotency key, written in the same transaction, so an action that fails to commit
        // (a 503) leaves the link usable, and two clicks act once.
        let key = IdempotencyKey {
            key: format!("email:{}", claim.n),
            fingerprint: signoff_engine::canonical::digest(&json!({ "route": "email", "nonce": claim.n })),
        };
        let spent = self.store.idempotency(&caller.id, &key.key, &key.fingerprint).await.map_err(|e| LinkOutcome::Refused(e.into()))?;
        if spent.is_some() {
            return Err(LinkOutcome::Refused(Problem::new(Code::IdempotencyConflict, "this link was already used")));
        }
        let fields = ActionFields { action: claim.a.clone(), step: Some(claim.s.clone()), comment, ..Default::default() };
        let body = ActionBody::try_from(fields).map_err(|e| LinkOutcome::Refused(Problem::bad_parameter(e)))?;
        match self.act(&caller, &claim.r, body, Some(key)).await {
            Ok(reply) if reply.kind.is_success() => Ok(format!("Done: {} on step {} of request {}.", claim.a, claim.s, claim.r)),
            Ok(reply) => Err(LinkOutcome::Refused(Problem::from_body(&reply.json()))),
            Err(e) => Err(LinkOutcome::Refused(e)),
        }
    }

    /// The request's notifications and every delivery attempt.
    pub async fn deliveries(&self, caller: &Caller, id: &str) -> Result<Vec<signoff_store::DeliveryReport>, Problem> {
        self.visible(caller, id).await?;
        Ok(self.store.deliveries(id).await?)
    }

    pub async fn events(&self, caller: &Caller, id: &str) -> Result<Vec<Event>, Problem> {
        self.visible(caller, id).await?;
        Ok(self.store.events(id).await?)
    }

    /// The audit log's current checkpoint, signed.
    pub async fn audit_checkpoint(&self) -> Result<signoff_audit::checkpoint::Checkpoint, Problem> {
        let Some(key) = &self.audit_key else {
            return Err(Problem::new(Code::Unavailable, "the audit log has no signing key: set `audit-key` (a file shared by every instance) to publish checkpoints"));
        };
        Ok(crate::audit::checkpoint(&*self.store, key, self.now()).await?)
    }

    /// The consistency proof from the log of `from` events to the log of `to` (default: now).
    pub async fn audit_consistency(&self, from: u64, to: Option<u64>) -> Result<crate::audit::ConsistencyProof, Problem> {
        let size = crate::audit::catch_up(&*self.store).await?;
        let to = to.unwrap_or(size);
        // (Sizes the log never had have no proof: not found, as a request that does not exist.)
        if to > size {
            return Err(Problem::not_found(format!("the audit log holds {size} events, so there is no log of {to}")));
        }
        if from > to {
            return Err(Problem::not_found(format!("a log of {to} events cannot extend one of {from}: there is no such proof")));
        }
        Ok(crate::audit::consistency(&*self.store, from, to).await?)
    }

    /// An audit export from log index `cursor` on (admins).
    pub fn audit_export(&self, caller: &Caller, filter: crate::audit::ExportFilter, cursor: u64) -> Result<crate::audit::Export, Problem> {
        if !caller.admin {
            return Err(Problem::forbidden("only admins may export the audit trail"));
        }
        Ok(crate::audit::Export::new(self.store.clone(), filter, cursor))
    }

    /// One request's verification, for those who may see it.
    pub async fn verify_request(&self, caller: &Caller, id: &str) -> Result<crate::audit::RequestVerification, Problem> {
        self.visible(caller, id).await?;
        Ok(crate::audit::verify_request(&*self.store, id).await?)
    }

    pub async fn list(&self, caller: &Caller, mut query: ListQuery) -> Result<Page, Problem> {
        if query.approver.as_deref() == Some("me") {
            query.approver = Some(caller.id.clone());
        }
        if !caller.admin {
            query.visible_to = Some(caller.id.clone());
        }
        query.max_bytes = Some(self.memory.page_bytes);
        Ok(self.store.list(&query).await?)
    }

    /// `list` of the requests overdue now: with an open task past its due time.
    pub async fn list_overdue(&self, caller: &Caller, query: ListQuery) -> Result<Page, Problem> {
        self.list(caller, ListQuery { overdue_at: Some(self.now()), ..query }).await
    }

    /// A page of open tasks: the caller's own, or for an admin anyone's or everyone's.
    pub async fn tasks(&self, caller: &Caller, query: TaskQuery) -> Result<TaskPage, Problem> {
        if !caller.admin && query.approver.as_deref() != Some(caller.id.as_str()) {
            return Err(Problem::new(Code::Forbidden, "only admins see others' open tasks; `GET /v1/inbox` lists yours"));
        }
        Ok(self.store.tasks(&query).await?)
    }

    pub async fn inbox(&self, caller: &Caller, limit: u32) -> Result<Vec<Task>, Problem> {
        Ok(self.store.inbox(&caller.id, limit).await?)
    }

    /// Every open task of everyone (admins), or of one `approver`, soonest due first.
    pub async fn open_tasks(&self, caller: &Caller, approver: Option<&str>, limit: u32) -> Result<Vec<Task>, Problem> {
        if !caller.admin {
            return Err(Problem::new(Code::Forbidden, "only admins see every open task; `GET /v1/inbox` lists yours"));
        }
        let query = TaskQuery { approver: approver.map(str::to_string), limit, ..TaskQuery::default() };
        Ok(self.store.tasks(&query).await?.items)
    }

    /// The configured notification channels, by name.
    pub fn channel_names(&self) -> Vec<String> {
        self.channels.active()
    }

    /// The caller's directory entry.
    /// Records a change to the directory by `caller` (an admin; anyone for their own
    /// out-of-office) and puts it in force.
    pub async fn change_directory(&self, caller: &Caller, change: signoff_engine::directory::Change) -> Result<crate::people::Record, Problem> {
        use signoff_engine::directory::Change;
        let own = matches!(&change, Change::SetOutOfOffice { user, .. } | Change::ClearOutOfOffice { user } if *user == caller.id);
        if !caller.admin && !own {
            return Err(Problem::forbidden("only admins change the directory (anyone may set their own out-of-office)"));
        }
        self.people.change(&*self.store, &self.catalog, &caller.id, caller.origin.clone(), change, self.now()).await
    }

    /// Applies the directory changes other instances recorded since this one last looked.
    pub async fn catch_up_directory(&self) -> Result<(), signoff_store::StoreError> {
        self.people.catch_up(&*self.store, &self.catalog).await
    }

    /// The recorded directory changes after number `after` (admins).
    pub async fn directory_changes(&self, caller: &Caller, after: u64, limit: usize) -> Result<Vec<crate::people::Record>, Problem> {
        if !caller.admin {
            return Err(Problem::forbidden("only admins read the directory's changes"));
        }
        Ok(self.people.records(&*self.store, after, limit).await?)
    }

    pub fn me(&self, caller: &Caller) -> signoff_api::Me {
        let catalog = self.catalog();
        let dir = &catalog.directory;
        let user = dir.user(&caller.id);
        signoff_api::Me {
            id: caller.id.clone(),
            name: user.and_then(|u| u.name.clone()),
            email: user.and_then(|u| u.email.clone()),
            manager: user.and_then(|u| u.manager.clone()),
            groups: dir.groups_of(&caller.id).to_vec(),
            admin: caller.admin,
        }
    }

    /// Directory users whose id or name contains `q` (any case), by id, at most `limit`.
    pub fn users(&self, q: &str, limit: usize) -> Vec<signoff_api::UserSummary> {
        let catalog = self.catalog();
        let q = q.to_lowercase();
        let mut found: Vec<signoff_api::UserSummary> = catalog
            .directory
            .users()
            .filter(|u| u.id.to_lowercase().contains(&q) || u.name.as_deref().is_some_and(|n| n.to_lowercase().contains(&q)))
            .map(|u| signoff_api::UserSummary { id: u.id.clone(), name: u.name.clone() })
            .collect();
        found.sort_by(|a, b| a.id.cmp(&b.id));
        found.truncate(limit);
        found
    }

    /// The policies whose insights `caller` sees: every loaded one for an admin, else those
    /// they own.
    pub fn insight_policies(&self, caller: &Caller) -> Vec<String> {
        let catalog = self.catalog();
        catalog.policies.values().filter(|p| caller.admin || p.owned_by(&caller.id, &catalog.directory)).map(|p| p.id.clone()).collect()
    }

    /// Whether `caller` may see insights at all: an admin, or the owner of some policy.
    pub fn sees_insights(&self, caller: &Caller) -> bool {
        caller.admin || !self.insight_policies(caller).is_empty()
    }

    /// The policies whose statistics `caller` may see: every one for an admin (`None`), else
    /// those they own; `policy`, if given, must be one of them.
    fn insight_scope(&self, caller: &Caller, policy: Option<&str>) -> Result<Option<Vec<String>>, Problem> {
        if let Some(p) = policy
            && !caller.admin
            && !self.catalog().policies.contains_key(p)
        {
            return Err(Problem::not_found(format!("no policy `{p}`")));
        }
        if caller.admin {
            return Ok(None);
        }
        let owned = self.insight_policies(caller);
        match policy {
            Some(p) if owned.iter().any(|o| o == p) => Ok(Some(vec![p.to_string()])),
            Some(p) => Err(Problem::forbidden(format!("only admins and the owners of `{p}` see its statistics"))),
            None if owned.is_empty() => Err(Problem::forbidden("only admins and policy owners see statistics")),
            None => Ok(Some(owned)),
        }
    }

    /// Runs `f` over the facts of the requests `caller` may see insights of (of `policy`
    /// alone, if given), with the projection brought up to date first.
    pub async fn read_insights<T>(&self, caller: &Caller, policy: Option<&str>, f: impl FnOnce(Vec<&signoff_insights::RequestFacts>) -> T) -> Result<T, Problem> {
        let scope = self.insight_scope(caller, policy)?;
        let projection = self.insights().await?;
        Ok(projection.read(|facts| f(facts.filter(|r| scope.as_ref().is_none_or(|s| s.contains(&r.policy))).collect())))
    }

    /// Statistics of the requests submitted in `[from, to)` (of `policy`, or of every policy
    /// the caller may see).
    pub async fn stats(&self, caller: &Caller, from: jiff::Timestamp, to: jiff::Timestamp, policy: Option<String>) -> Result<signoff_insights::stats::Stats, Problem> {
        let now = self.now().as_millisecond();
        let window = signoff_insights::stats::Window::between(from, to, policy);
        self.read_insights(caller, window.policy.as_deref(), |facts| signoff_insights::stats::stats(facts, &window, now)).await
    }

    /// A bottleneck heatmap (`approver` or `hour_of_week`) of the steps activated in `[from, to)`.
    pub async fn heatmap(&self, caller: &Caller, kind: &str, from: jiff::Timestamp, to: jiff::Timestamp, policy: Option<String>) -> Result<signoff_insights::heatmap::Heatmap, Problem> {
        use signoff_insights::heatmap;
        let hourly = match kind {
            "approver" => false,
            "hour_of_week" => true,
            other => return Err(Problem::bad_parameter(format!("kind: `{other}` is neither approver nor hour_of_week"))),
        };
        let now = self.now().as_millisecond();
        let window = signoff_insights::stats::Window::between(from, to, policy);
        self.read_insights(caller, window.policy.as_deref(), |facts| {
            if hourly { heatmap::by_hour(facts, &window, now) } else { heatmap::by_approver(facts, &window, now) }
        })
        .await
    }

    /// Replays the requests of policy `id` submitted in `[from, to)` through `candidate`.
    pub async fn simulate(&self, caller: &Caller, id: &str, candidate: Policy, from: jiff::Timestamp, to: jiff::Timestamp, examples: usize) -> Result<signoff_insights::simulate::Report, Problem> {
        self.insight_scope(caller, Some(id))?;
        let catalog = self.catalog();
        let live = catalog.policies.get(id).cloned().ok_or_else(|| Problem::not_found(format!("no policy `{id}` is loaded")))?;
        let projection = self.insights().await?;
        let facts = projection.snapshot();
        let window = signoff_insights::stats::Window::between(from, to, Some(id.to_string()));
        let dir = catalog.directory.clone();
        let replay = move || {
            let facts: Vec<&signoff_insights::RequestFacts> = facts.iter().map(|f| &**f).collect();
            signoff_insights::simulate::simulate(&live, &candidate, &dir, &facts, &window, examples)
        };
        tokio::task::spawn_blocking(replay).await.map_err(|e| Problem::internal(format!("the simulation stopped: {e}")))
    }

    /// When a pending request is expected to be decided, from this installation's history;
    /// `None` when it is closed or the history is too thin. Best effort, and from the
    /// projection as the follower last left it (a second behind at most): a read of a request
    /// never writes, and a store that cannot be read leaves the request without one.
    pub async fn prediction(&self, id: &str) -> Option<signoff_insights::predict::Prediction> {
        if let Err(e) = self.insights.loaded(&*self.store).await {
            tracing::warn!(error = %e, "insights: no prediction");
            return None;
        }
        let projection = &self.insights;
        let facts = projection.get(id)?;
        if facts.status.is_terminal() {
            return None;
        }
        let now = self.now().as_millisecond();
        projection.model(now).await.request(&facts, now)
    }

    /// `user`'s summary (theirs, or anyone's for an admin): decisions made in `[from, to)`.
    pub async fn user_summary(&self, caller: &Caller, user: &str, from: jiff::Timestamp, to: jiff::Timestamp) -> Result<signoff_insights::stats::Summary, Problem> {
        if user != caller.id && !caller.admin {
            return Err(Problem::forbidden("a summary is for its person and for admins"));
        }
        if self.catalog().directory.user(user).is_none() {
            return Err(Problem::not_found(format!("no user `{user}` in the directory")));
        }
        let projection = self.insights().await?;
        let window = signoff_insights::stats::Window::between(from, to, None);
        let now = self.now().as_millisecond();
        Ok(projection.read(|facts| signoff_insights::stats::summary(facts, user, &window, now)))
    }

    /// What submitting `context` under `policy_id` would produce, without storing anything.
    pub fn plan(&self, caller: &Caller, policy_id: &str, body: PlanBody) -> Result<RequestState, Problem> {
        let catalog = self.catalog();
        let policy = loaded(&catalog, policy_id)?;
        let requester = body.requester.unwrap_or_else(|| caller.id.clone());
        if catalog.directory.user(&requester).is_none() {
            return Err(Problem::new(Code::UnknownUser, format!("no user `{requester}` in the directory")));
        }
        let sub = Submission {
            id: "req_plan".into(),
            requester,
            title: None,
            subject: None,
            context: body.context,
            evidence: vec![],
            lineage: None,
            resubmits: None,
        };
        machine::submit(policy, &catalog.directory, sub, self.clock.now())
            .map(|(_, state)| state)
            .map_err(|e| Problem::new(e.code(), e.to_string()))
    }
}

/// A loaded policy, for a submission or a plan: an unknown one is 422 `unknown_policy` for both.
fn loaded<'a>(catalog: &'a Catalog, id: &str) -> Result<&'a Arc<Policy>, Problem> {
    catalog.policies.get(id).ok_or_else(|| {
        Problem::new(Code::UnknownPolicy, signoff_engine::suggest::unknown("no policy is loaded with id", id, catalog.policies.keys().map(String::as_str)))
    })
}

/// How long a web session lasts.
pub const SESSION_LIFETIME: jiff::SignedDuration = jiff::SignedDuration::from_hours(12);

/// What the store keeps of a session's secret.
fn session_hash(secret: &str) -> String {
    signoff_engine::directory::token_hash(secret)
}

/// 32 random bytes from the system as hex: session secrets, CSRF tokens, new API tokens.
pub fn random_hex() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}

fn stripe_of(id: &str) -> usize {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(id) as usize % LOCK_STRIPES
}

fn submit_error(e: machine::SubmitError) -> Problem {
    let err = Problem::new(e.code(), e.to_string());
    match &e {
        machine::SubmitError::InvalidContext(errors) => err.with(json!({ "errors": errors })),
        _ => err,
    }
}

fn key_reply(m: KeyMatch) -> Result<Reply, Problem> {
    match m {
        KeyMatch::Same(saved) => Ok(Reply::from_saved(saved)),
        KeyMatch::Different => Err(Problem::new(
            Code::IdempotencyConflict,
            "this Idempotency-Key was already used with a different request",
        )),
    }
}

#[async_trait::async_trait]
impl crate::scheduler::Fire for Service {
    /// Fires the timers of one request that are due now; true if anything happened.
    async fn fire(&self, id: &str) -> Result<bool, Problem> {
        let tick = Command { actor: signoff_engine::SYSTEM_ACTOR.into(), action: Action::Tick };
        // Named for what fired (`timer escalate`, …) once the commit says (`Tally::record`).
        let span = tracing::info_span!("timer", request = id);
        match self.run_command(id, &tick, None, &None).instrument(span).await {
            Ok((_, changed)) => Ok(changed),
            Err(e) if e.code == Code::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}
