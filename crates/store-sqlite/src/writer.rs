//! The writer thread, the only one that writes: it takes every write waiting when it is free
//! and applies them in one transaction (group commit, one fsync for the group), answers each
//! caller, and fills the state cache with what a durable commit wrote.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use rusqlite::{Connection, params};
use signoff_store::{Attempt, Commit, CommitOutcome, Notification, PolicyRecord, Result, Session, StateCache, StoreError};
use tokio::sync::oneshot;

use crate::{commit, outbox, unavailable};

/// At most this many commits share one transaction.
const MAX_GROUP: usize = 512;

/// A write for the writer thread, with where to send its outcome.
pub(crate) enum WriteOp {
    Commit(Vec<Commit>, oneshot::Sender<Result<CommitOutcome>>),
    Claim { now: Timestamp, limit: u32, lease_until: Timestamp, reply: oneshot::Sender<Result<Vec<Notification>>> },
    PutPolicy(PolicyRecord, oneshot::Sender<Result<()>>),
    Attempts(Vec<Attempt>, oneshot::Sender<Result<()>>),
    UseOnce(String, Timestamp, oneshot::Sender<Result<bool>>),
    /// Records a directory change under its number, unless that number is taken.
    DirectoryChange(u64, String, oneshot::Sender<Result<bool>>),
    Session(SessionWrite, oneshot::Sender<Result<()>>),
    /// Appends queued events to the audit log (a transaction of its own).
    SequenceLog(u32, oneshot::Sender<Result<u64>>),
    /// Removes archived requests (a transaction of its own); answers which went.
    Purge { ids: Vec<String>, archive: String, at: Timestamp, reply: oneshot::Sender<Result<Vec<String>>> },
    /// Deletes what is kept only for a while: keys before, notifications before, used keys before.
    Prune([Timestamp; 3], oneshot::Sender<Result<signoff_store::Pruned>>),
    /// Writes the analytics projection (a transaction of its own).
    PutFacts(Vec<signoff_store::FactsRow>, u64, oneshot::Sender<Result<()>>),
}

/// A change to the web sessions.
pub(crate) enum SessionWrite {
    Start(Session),
    End(String),
}

/// The way to the writer thread.
pub(crate) struct Writer(Mutex<mpsc::Sender<WriteOp>>);

impl Writer {
    /// Starts the writer thread on `conn`; it stops when the `Writer` is dropped.
    pub(crate) fn start(conn: Connection, cache: Arc<StateCache>) -> Result<Writer> {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("signoff-sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx, &cache))
            .map_err(unavailable)?;
        Ok(Writer(Mutex::new(tx)))
    }

    /// Hands the writer the write `op` makes of a reply channel, and waits for its outcome.
    pub(crate) async fn call<T>(&self, op: impl FnOnce(oneshot::Sender<Result<T>>) -> WriteOp) -> Result<T> {
        let (reply, outcome) = oneshot::channel();
        self.0
            .lock()
            .map_err(unavailable)?
            .send(op(reply))
            .map_err(|_| StoreError::Unavailable("the writer thread has stopped".into()))?;
        outcome.await.map_err(|_| unavailable("the writer thread has stopped"))?
    }
}

fn writer_loop(mut conn: Connection, rx: mpsc::Receiver<WriteOp>, cache: &StateCache) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let (own, writes): (Vec<WriteOp>, Vec<WriteOp>) =
            batch.into_iter().partition(|op| matches!(op, WriteOp::Claim { .. } | WriteOp::SequenceLog(..) | WriteOp::Purge { .. } | WriteOp::Prune(..) | WriteOp::PutFacts(..)));
        // Claims and sequencing run in transactions of their own: they answer rows or a size,
        // not a commit outcome.
        for op in own {
            match op {
                WriteOp::Claim { now, limit, lease_until, reply } => {
                    let _ = reply.send(outbox::claim(&mut conn, now, limit, lease_until));
                }
                WriteOp::SequenceLog(limit, reply) => {
                    let _ = reply.send(crate::audit::sequence(&mut conn, limit));
                }
                WriteOp::Purge { ids, archive, at, reply } => {
                    let gone = crate::retention::purge(&mut conn, &ids, &archive, at);
                    for id in gone.iter().flatten() {
                        cache.remove(id.as_str());
                    }
                    let _ = reply.send(gone);
                }
                WriteOp::Prune([keys, notifications, used], reply) => {
                    let _ = reply.send(crate::retention::prune(&mut conn, keys, notifications, used));
                }
                WriteOp::PutFacts(rows, cursor, reply) => {
                    let _ = reply.send(crate::insights::put(&mut conn, &rows, cursor));
                }
                _ => {}
            }
        }
        if writes.is_empty() {
            continue;
        }
        let results = write_group(&mut conn, &writes);
        for (op, result) in writes.into_iter().zip(results) {
            answer(op, result, cache);
        }
    }
}

/// Sends `op`'s caller its outcome; a durable commit's states go to the cache first.
fn answer(op: WriteOp, result: Result<CommitOutcome>, cache: &StateCache) {
    match (op, result) {
        (WriteOp::Commit(commits, reply), r) => {
            if matches!(r, Ok(CommitOutcome::Committed)) {
                for c in commits {
                    cache.insert(c.state.id.to_string(), c.cached_state());
                }
            }
            let _ = reply.send(r);
        }
        (WriteOp::PutPolicy(_, reply), r) | (WriteOp::Attempts(_, reply), r) | (WriteOp::Session(_, reply), r) => {
            let _ = reply.send(r.map(|_| ()));
        }
        (WriteOp::Claim { .. }, _) | (WriteOp::SequenceLog(..), _) | (WriteOp::Purge { .. }, _) | (WriteOp::Prune(..), _) | (WriteOp::PutFacts(..), _) => {}
        (WriteOp::UseOnce(_, _, reply), r) | (WriteOp::DirectoryChange(_, _, reply), r) => {
            let _ = reply.send(r.map(|o| o == CommitOutcome::Committed));
        }
    }
}

/// Applies a group of writes in one transaction and one fsync. Writes are not isolated by
/// savepoints (their statement journals cost a sixth of the CPU): a write that fails with an
/// error rolls the whole group back, and the group is then retried one write per transaction,
/// so one bad write never takes the others down. Conflicts and used keys are not errors; they
/// are found before anything is written.
fn write_group(conn: &mut Connection, batch: &[WriteOp]) -> Vec<Result<CommitOutcome>> {
    match apply_all(conn, batch) {
        Ok(results) => results.into_iter().map(Ok).collect(),
        Err(_) if batch.len() > 1 => batch
            .iter()
            .map(|op| apply_all(conn, std::slice::from_ref(op)).map(|mut r| r.remove(0)))
            .collect(),
        Err(e) => vec![Err(e)],
    }
}

fn apply_all(conn: &mut Connection, batch: &[WriteOp]) -> Result<Vec<CommitOutcome>> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(unavailable)?;
    let results = batch.iter().map(|op| apply(&tx, op)).collect::<Result<Vec<_>>>()?;
    let start = std::time::Instant::now();
    tx.commit().map_err(unavailable)?;
    // (The names are the server's `telemetry::COMMIT_SECONDS` and `COMMIT_GROUP`.)
    metrics::histogram!("signoff_commit_seconds").record(start.elapsed().as_secs_f64());
    metrics::histogram!("signoff_commit_group_size").record(batch.len() as f64);
    Ok(results)
}

/// Writes `op` inside the group's transaction.
fn apply(tx: &Connection, op: &WriteOp) -> Result<CommitOutcome> {
    Ok(match op {
        WriteOp::Commit(commits, _) => commit::apply(tx, commits)?,
        WriteOp::PutPolicy(p, _) => {
            put_policy(tx, p)?;
            CommitOutcome::Committed
        }
        WriteOp::Attempts(attempts, _) => {
            for a in attempts {
                outbox::record_attempt(tx, a)?;
            }
            CommitOutcome::Committed
        }
        WriteOp::Claim { .. } | WriteOp::SequenceLog(..) | WriteOp::Purge { .. } | WriteOp::Prune(..) | WriteOp::PutFacts(..) => CommitOutcome::Committed,
        WriteOp::Session(write, _) => {
            session(tx, write)?;
            CommitOutcome::Committed
        }
        WriteOp::UseOnce(key, at, _) => {
            if use_once(tx, key, *at)? { CommitOutcome::Committed } else { CommitOutcome::VersionConflict }
        }
        WriteOp::DirectoryChange(seq, body, _) => {
            let fresh = tx
                .prepare_cached("INSERT OR IGNORE INTO directory_changes (seq, body) VALUES (?1, ?2)")
                .and_then(|mut s| s.execute(params![*seq as i64, body]))
                .map_err(unavailable)?;
            if fresh == 1 { CommitOutcome::Committed } else { CommitOutcome::VersionConflict }
        }
    })
}

fn session(tx: &Connection, write: &SessionWrite) -> Result<()> {
    match write {
        SessionWrite::Start(s) => {
            tx.prepare_cached("DELETE FROM sessions WHERE expires_at < ?1")
                .and_then(|mut st| st.execute(params![s.created_at.as_millisecond()]))
                .map_err(unavailable)?;
            tx.prepare_cached("INSERT OR REPLACE INTO sessions (id_hash, user_id, csrf, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)")
                .and_then(|mut st| st.execute(params![s.id_hash, s.user, s.csrf, s.created_at.as_millisecond(), s.expires_at.as_millisecond()]))
                .map_err(unavailable)?;
        }
        SessionWrite::End(id_hash) => {
            tx.prepare_cached("DELETE FROM sessions WHERE id_hash = ?1").and_then(|mut st| st.execute(params![id_hash])).map_err(unavailable)?;
        }
    }
    Ok(())
}

fn put_policy(tx: &Connection, p: &PolicyRecord) -> Result<()> {
    tx.prepare_cached("INSERT OR IGNORE INTO policies (hash, id, version, source) VALUES (?1, ?2, ?3, ?4)")
        .and_then(|mut s| s.execute(params![p.hash, p.id, p.version as i64, p.source.to_string()]))
        .map_err(unavailable)?;
    Ok(())
}

/// Records `key` as used at `at`: false if it already was.
fn use_once(tx: &Connection, key: &str, at: Timestamp) -> Result<bool> {
    // Forget keys older than two days while here.
    tx.prepare_cached("DELETE FROM used_keys WHERE at < ?1")
        .and_then(|mut s| s.execute(params![at.as_millisecond() - 2 * 86_400_000]))
        .map_err(unavailable)?;
    let fresh = tx
        .prepare_cached("INSERT OR IGNORE INTO used_keys (key, at) VALUES (?1, ?2)")
        .and_then(|mut s| s.execute(params![key, at.as_millisecond()]))
        .map_err(unavailable)?;
    Ok(fresh == 1)
}
