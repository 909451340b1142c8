//! Writing commits: commits that arrive together share a transaction and its WAL flush (group
//! commit), and the whole group is one call of the `signoff_commit_group` database function
//! (version checks, events, indexes, outbox and timers, each a statement for the whole group),
//! plus one notification to the other instances.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use deadpool_postgres::{GenericClient, Pool};
use signoff_store::{Commit, CommitOutcome, Result, StoreError, due_millis, tasks_of};
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use tokio_postgres::types::ToSql;

use crate::{corrupt, unavailable};

/// At most this many commits share one transaction.
const MAX_GROUP: usize = 64;
/// Transactions in flight at once per instance, at most: while one waits for its WAL flush,
/// the next group is being written.
const WRITERS: usize = 4;
/// While a transaction is in flight, another starts only once this many commits wait; fewer
/// wait for it to end and then share one transaction. Each transaction costs a WAL flush and
/// wakes every instance's listener, so on a busy database fewer, larger groups do more
/// (docs/benchmarks.md §7: with three instances, 16 did about 15% more than 8, and 8 about 20%
/// more than starting a transaction whenever a writer was free; 32 and 64 did as well as 16).
const BUSY_GROUP: usize = 16;
/// ...but never longer than this, so one slow transaction (a lock wait) holds nobody up.
const BUSY_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

const COMMIT_SQL: &str = "SELECT signoff_commit_group($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
    $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33, $34, $35, $36, $37, $38, $39, $40, $41, $42, \
    $43, $44, $45)";

/// A group's commits as the arguments of `signoff_commit_group`: one element per commit, and
/// the rows of all commits flattened, each naming its commit (from 1); then the notifications
/// that announce them.
#[derive(Default)]
struct Group {
    id: Vec<String>,
    expected: Vec<i64>,
    version: Vec<i64>,
    status: Vec<&'static str>,
    policy_id: Vec<String>,
    requester: Vec<String>,
    subject: Vec<Option<String>>,
    lineage: Vec<Option<String>>,
    created_at: Vec<String>,
    updated_at: Vec<String>,
    state: Vec<String>,
    tasks_changed: Vec<bool>,
    timer_changed: Vec<bool>,
    timer: Vec<Option<i64>>,
    idem_scope: Vec<Option<String>>,
    idem_key: Vec<Option<String>>,
    idem_fingerprint: Vec<Option<String>>,
    idem_status: Vec<Option<i32>>,
    idem_body: Vec<Option<String>>,
    idem_at: Vec<Option<String>>,
    event_commit: Vec<i32>,
    event_seq: Vec<i64>,
    event_type: Vec<&'static str>,
    event_at: Vec<String>,
    event_body: Vec<String>,
    task_commit: Vec<i32>,
    task_approver: Vec<String>,
    task_step: Vec<String>,
    task_due: Vec<Option<i64>>,
    task_body: Vec<String>,
    participant_commit: Vec<i32>,
    participant: Vec<String>,
    outbox_commit: Vec<i32>,
    outbox_id: Vec<String>,
    outbox_request: Vec<String>,
    outbox_channel: Vec<String>,
    outbox_destination: Vec<String>,
    outbox_kind: Vec<String>,
    outbox_payload: Vec<String>,
    outbox_coalesce: Vec<Option<String>>,
    outbox_next: Vec<i64>,
    outbox_created: Vec<String>,
    /// Beside `outbox_id`; empty when no notification has a trace (tracing off).
    outbox_trace: Vec<Option<String>>,
    announcements: Vec<String>,
}

impl Group {
    fn of(commits: &[&Commit]) -> Result<Group> {
        let mut g = Group::default();
        for (i, c) in commits.iter().enumerate() {
            g.add(i as i32 + 1, c)?;
        }
        if g.outbox_trace.iter().all(Option::is_none) {
            g.outbox_trace.clear();
        }
        g.announcements = crate::announcements(commits.iter().map(|c| (c.state.id.as_str(), c.state.version)));
        Ok(g)
    }

    /// Adds commit number `i` (from 1).
    fn add(&mut self, i: i32, c: &Commit) -> Result<()> {
        let state = &c.state;
        // (Only the state this commit replaces tells what changed.)
        let previous = c.previous.as_ref().filter(|p| p.version == c.expected_version);
        let tasks = tasks_of(state);
        let tasks_changed = previous.is_none_or(|p| tasks_of(p) != tasks);
        self.id.push(state.id.to_string());
        self.expected.push(c.expected_version as i64);
        self.version.push(state.version as i64);
        self.status.push(state.status.as_str());
        self.policy_id.push(state.policy.id.clone());
        self.requester.push(state.requester.clone());
        self.subject.push(state.subject.clone());
        self.lineage.push(state.lineage.as_ref().map(ToString::to_string));
        self.created_at.push(state.created_at.to_string());
        self.updated_at.push(state.updated_at.to_string());
        self.state.push(match &c.encoded_state {
            Some(j) => j.clone(),
            None => serde_json::to_string(&**state).map_err(corrupt)?,
        });
        self.tasks_changed.push(tasks_changed);
        self.timer_changed.push(previous.is_none_or(|p| p.next_timer_at != state.next_timer_at));
        self.timer.push(state.next_timer_at.map(due_millis));
        let idem = c.idempotency.as_ref();
        self.idem_scope.push(idem.map(|k| k.scope.clone()));
        self.idem_key.push(idem.map(|k| k.key.clone()));
        self.idem_fingerprint.push(idem.map(|k| k.fingerprint.clone()));
        self.idem_status.push(idem.map(|k| k.response.status as i32));
        self.idem_body.push(idem.map(|k| k.response.body.clone()));
        self.idem_at.push(idem.map(|k| k.at.to_string()));
        for e in &c.events {
            self.event_commit.push(i);
            self.event_seq.push(e.seq as i64);
            self.event_type.push(e.kind.type_name());
            self.event_at.push(e.at.to_string());
            self.event_body.push(serde_json::to_string(e).map_err(corrupt)?);
        }
        for (approver, task) in if tasks_changed { tasks } else { Vec::new() } {
            self.task_commit.push(i);
            self.task_body.push(serde_json::to_string(&task).map_err(corrupt)?);
            self.task_approver.push(approver);
            self.task_step.push(task.step);
            self.task_due.push(task.due_at.map(|d| d.as_millisecond()));
        }
        // Only who joined, when the previous state says who was there.
        let before = previous.map(|p| p.participants()).unwrap_or_default();
        for p in state.participants().into_iter().filter(|p| !before.contains(p)) {
            self.participant_commit.push(i);
            self.participant.push(p.to_string());
        }
        // One statement cannot insert two rows with one coalescing key: the later payload
        // replaces the earlier one here, as it would replace a pending row.
        let mut by_key: HashMap<&str, usize> = HashMap::new();
        for o in &c.notifications {
            if let Some(&at) = o.coalesce_key.as_deref().and_then(|k| by_key.get(k)) {
                self.outbox_payload[at] = o.payload.to_string();
                continue;
            }
            if let Some(k) = o.coalesce_key.as_deref() {
                by_key.insert(k, self.outbox_id.len());
            }
            self.outbox_commit.push(i);
            self.outbox_id.push(o.id.clone());
            self.outbox_request.push(o.request_id.clone());
            self.outbox_channel.push(o.channel.clone());
            self.outbox_destination.push(o.destination.clone());
            self.outbox_kind.push(o.kind.clone());
            self.outbox_payload.push(o.payload.to_string());
            self.outbox_coalesce.push(o.coalesce_key.clone());
            self.outbox_next.push(due_millis(o.created_at));
            self.outbox_created.push(o.created_at.to_string());
            self.outbox_trace.push(o.trace.clone());
        }
        Ok(())
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 45] {
        [
            &self.id, &self.expected, &self.version, &self.status, &self.policy_id, &self.requester, &self.subject, &self.lineage,
            &self.created_at, &self.updated_at, &self.state, &self.tasks_changed, &self.timer_changed, &self.timer,
            &self.idem_scope, &self.idem_key, &self.idem_fingerprint, &self.idem_status, &self.idem_body, &self.idem_at,
            &self.event_commit, &self.event_seq, &self.event_type, &self.event_at, &self.event_body,
            &self.task_commit, &self.task_approver, &self.task_step, &self.task_due, &self.task_body,
            &self.participant_commit, &self.participant,
            &self.outbox_commit, &self.outbox_id, &self.outbox_request, &self.outbox_channel, &self.outbox_destination,
            &self.outbox_kind, &self.outbox_payload, &self.outbox_coalesce, &self.outbox_next, &self.outbox_created,
            &crate::CHANNEL, &self.announcements, &self.outbox_trace,
        ]
    }
}

/// What `signoff_commit_group` answered for one commit.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Verdict {
    Written,
    Conflict,
    KeyUsed,
}

impl Verdict {
    fn of(answer: &str) -> Result<Verdict> {
        match answer {
            "ok" => Ok(Verdict::Written),
            "conflict" => Ok(Verdict::Conflict),
            "key_used" => Ok(Verdict::KeyUsed),
            other => Err(corrupt(format!("signoff_commit_group answered `{other}`"))),
        }
    }
}

/// Writes `commits` with one call of `signoff_commit_group` on `client`, which also announces
/// them to every instance (one notification per group: the listeners wake once per group, not
/// once per commit). Outside a transaction the call is one statement, committed on its own.
async fn call_all(client: &impl GenericClient, commits: &[&Commit]) -> Shared {
    let group = match Group::of(commits) {
        Ok(g) => g,
        Err(e) => return Shared::NotWritten(e),
    };
    let statement = match client.prepare_cached(COMMIT_SQL).await {
        Ok(s) => s,
        Err(e) => return Shared::NotWritten(unavailable(e)),
    };
    let answers: Vec<String> = match client.query_one(&statement, &group.params()).await {
        Ok(row) => row.get(0),
        Err(e) if refused(&e) => return Shared::NotWritten(unavailable(e)),
        Err(e) => return Shared::Unknown(unavailable(e)),
    };
    if answers.len() != commits.len() {
        let e = corrupt(format!("signoff_commit_group answered {} verdicts for {} commits", answers.len(), commits.len()));
        return Shared::Unknown(e);
    }
    match answers.iter().map(|a| Verdict::of(a)).collect() {
        Ok(verdicts) => Shared::Written(verdicts),
        Err(e) => Shared::Unknown(e),
    }
}

/// Whether PostgreSQL refused a statement with an ERROR, which rolls its transaction back:
/// nothing it did was written. (Anything else, a lost connection or a FATAL error, may have
/// come after the commit.)
fn refused(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|d| d.parsed_severity() == Some(tokio_postgres::error::Severity::Error))
}

/// A caller's commits (all or nothing) and where to send the outcome.
struct Job {
    commits: Vec<Commit>,
    reply: oneshot::Sender<Result<CommitOutcome>>,
}

/// Collects commits from concurrent callers and writes them in shared transactions.
pub struct Committer {
    queue: mpsc::Sender<Job>,
}

/// Where written states go, for the next decision on them.
type Cache = Arc<crate::StateCache>;

impl Committer {
    pub fn start(pool: Pool, cache: Cache) -> Committer {
        let (queue, rx) = mpsc::channel::<Job>(1024);
        let rx = Arc::new(Mutex::new(rx));
        let in_flight = Arc::new(watch::Sender::new(0usize));
        for _ in 0..WRITERS {
            tokio::spawn(writer(pool.clone(), rx.clone(), cache.clone(), in_flight.clone()));
        }
        Committer { queue }
    }

    pub async fn commit_all(&self, commits: Vec<Commit>) -> Result<CommitOutcome> {
        let (reply, outcome) = oneshot::channel();
        self.queue.send(Job { commits, reply }).await.map_err(|_| unavailable("the committer has stopped"))?;
        outcome.await.map_err(|_| unavailable("the committer has stopped"))?
    }
}

/// Adds what is already queued to `jobs`, up to a full group.
fn drain(rx: &mut mpsc::Receiver<Job>, jobs: &mut Vec<Job>) {
    while jobs.len() < MAX_GROUP {
        match rx.try_recv() {
            Ok(job) => jobs.push(job),
            Err(_) => break,
        }
    }
}

/// Transactions this instance has in flight.
type InFlight = Arc<watch::Sender<usize>>;

async fn writer(pool: Pool, queue: Arc<Mutex<mpsc::Receiver<Job>>>, cache: Cache, in_flight: InFlight) {
    loop {
        let mut jobs = Vec::new();
        let _writing: Writing;
        {
            let mut rx = queue.lock().await;
            match rx.recv().await {
                Some(job) => jobs.push(job),
                None => return,
            }
            drain(&mut rx, &mut jobs);
            if *in_flight.borrow() > 0 && jobs.len() < BUSY_GROUP {
                let mut idle = in_flight.subscribe();
                let waited = tokio::time::sleep(BUSY_WAIT);
                tokio::pin!(waited);
                while jobs.len() < BUSY_GROUP {
                    tokio::select! {
                        _ = idle.wait_for(|n| *n == 0) => break,
                        _ = &mut waited => break,
                        job = rx.recv() => match job {
                            Some(job) => jobs.push(job),
                            None => break,
                        },
                    }
                    drain(&mut rx, &mut jobs);
                }
                drain(&mut rx, &mut jobs);
            }
            // (Counted before the queue is free, so the next writer sees this one in flight.)
            _writing = Writing::start(&in_flight);
        }
        // Single commits share a transaction; a caller's several commits (a resubmission
        // closes one request and opens another) get one of their own, all or nothing.
        let (mut single, mut grouped): (Vec<Job>, Vec<Job>) = jobs.into_iter().partition(|j| j.commits.len() == 1);
        // A key used twice in one group (a caller's retry racing its first try) is tried after
        // the group, on its own: within the group, a first use that then conflicts would free the
        // key too late for the second.
        let mut keys = HashSet::new();
        let (first_uses, again): (Vec<Job>, Vec<Job>) = single
            .into_iter()
            .partition(|j| j.commits[0].idempotency.as_ref().is_none_or(|k| keys.insert((k.scope.clone(), k.key.clone()))));
        single = first_uses;
        grouped.extend(again);
        // Every instance's groups visit request rows in one order (by id), so two groups that
        // share requests usually wait for each other rather than deadlock.
        single.sort_by(|a, b| a.commits[0].state.id.cmp(&b.commits[0].state.id));
        if !single.is_empty() {
            for (job, outcome) in write_singles(&pool, single).await {
                answer(&cache, job, outcome);
            }
        }
        for job in grouped {
            let outcome = write_group(&pool, &job.commits).await;
            answer(&cache, job, outcome);
        }
    }
}

/// Counts a writer's transaction as in flight for as long as it lives (a panic included).
struct Writing<'a>(&'a InFlight);

impl<'a> Writing<'a> {
    fn start(in_flight: &'a InFlight) -> Writing<'a> {
        in_flight.send_modify(|n| *n += 1);
        Writing(in_flight)
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

/// Tells the caller; a written state is kept for the next decision on it (unless a newer one
/// is already there).
fn answer(cache: &Cache, job: Job, outcome: Result<CommitOutcome>) {
    if matches!(outcome, Ok(CommitOutcome::Committed)) {
        for c in job.commits {
            crate::remember(cache, c.cached_state());
        }
    }
    let _ = job.reply.send(outcome);
}

/// Writes single commits with one group statement. If PostgreSQL refuses it (so nothing of the
/// group is written), each commit is tried again in a transaction of its own, so one bad commit
/// never takes the others down. If it fails in a way that may have come after its commit,
/// whether it took effect is unknown: every caller is told the store is unavailable, never to
/// write again what may be written.
async fn write_singles(pool: &Pool, jobs: Vec<Job>) -> Vec<(Job, Result<CommitOutcome>)> {
    let commits: Vec<&Commit> = jobs.iter().map(|j| &j.commits[0]).collect();
    let mut outcomes = Vec::with_capacity(jobs.len());
    let start = std::time::Instant::now();
    match write_shared(pool, &commits).await {
        Shared::Written(verdicts) => {
            // (The names are the server's `telemetry::COMMIT_SECONDS` and `COMMIT_GROUP`.)
            metrics::histogram!("signoff_commit_seconds").record(start.elapsed().as_secs_f64());
            metrics::histogram!("signoff_commit_group_size").record(commits.len() as f64);
            for (c, v) in commits.iter().zip(verdicts) {
                outcomes.push(outcome(pool, c, v).await);
            }
        }
        Shared::Unknown(e) => {
            tracing::warn!(error = %e, commits = commits.len(), "a group commit failed after it was sent; its outcome is unknown");
            outcomes.extend(commits.iter().map(|_| Err(e.clone())));
        }
        Shared::NotWritten(e) => {
            if commits.len() > 1 {
                tracing::warn!(error = %e, commits = commits.len(), "a group commit failed; writing its commits one by one");
            }
            for c in &commits {
                outcomes.push(if commits.len() > 1 { write_group(pool, std::slice::from_ref(*c)).await } else { Err(e.clone()) });
            }
        }
    }
    jobs.into_iter().zip(outcomes).collect()
}

/// How a group's call ended.
enum Shared {
    Written(Vec<Verdict>),
    /// Refused, or never sent: nothing was written.
    NotWritten(StoreError),
    /// Sent, and failed in a way that may have come after its commit (or its answer was lost).
    Unknown(StoreError),
}

async fn write_shared(pool: &Pool, commits: &[&Commit]) -> Shared {
    match pool.get().await {
        Ok(client) => call_all(&client, commits).await,
        Err(e) => Shared::NotWritten(unavailable(e)),
    }
}

/// Writes one caller's commits in a transaction of their own: all of them or none.
async fn write_group(pool: &Pool, commits: &[Commit]) -> Result<CommitOutcome> {
    let mut client = pool.get().await.map_err(unavailable)?;
    let tx = client.transaction().await.map_err(unavailable)?;
    let refs: Vec<&Commit> = commits.iter().collect();
    // (Inside a transaction nothing is written before COMMIT, whatever the call's failure.)
    let verdicts = match call_all(&tx, &refs).await {
        Shared::Written(verdicts) => verdicts,
        Shared::NotWritten(e) | Shared::Unknown(e) => return Err(e),
    };
    match verdicts.iter().zip(commits).find(|(v, _)| **v != Verdict::Written) {
        None => {
            tx.commit().await.map_err(unavailable)?;
            Ok(CommitOutcome::Committed)
        }
        Some((v, c)) => {
            tx.rollback().await.map_err(unavailable)?;
            outcome(pool, c, *v).await
        }
    }
}

/// The outcome a caller sees for a commit `signoff_commit_group` judged `verdict`.
async fn outcome(pool: &Pool, c: &Commit, verdict: Verdict) -> Result<CommitOutcome> {
    match verdict {
        Verdict::Written => Ok(CommitOutcome::Committed),
        Verdict::Conflict => Ok(CommitOutcome::VersionConflict),
        Verdict::KeyUsed => {
            let idem = c.idempotency.as_ref().ok_or_else(|| corrupt("a used key without a key"))?;
            crate::key_match(pool, &idem.scope, &idem.key, &idem.fingerprint)
                .await?
                .map(CommitOutcome::KeyUsed)
                .ok_or_else(|| StoreError::Unavailable("an idempotency key was used and then vanished".into()))
        }
    }
}
