//! The embedded store: one SQLite file in WAL mode. All writes go through one writer thread
//! that commits in groups: every commit waiting while the previous transaction was being
//! fsynced joins the next transaction, so durability costs one fsync per group, not per call.
//! Reads use a small pool of separate connections and never wait for the writer; the states
//! this process committed most recently are also kept in memory (write-through, filled only by
//! the writer after a durable commit), so acting on a hot request does not re-read it.
//!
//! This module opens the file (and holds its lock) and answers `Store` through the others:
//! `writer` (the thread and its groups), `commit` (a commit's SQL), `outbox` (notifications),
//! `read` (the reader pool and its queries), `timers` (timer claims) and `schema`.

mod audit;
mod commit;
mod insights;
mod outbox;
mod read;
mod retention;
mod schema;
mod timers;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use rusqlite::Connection;
use signoff_engine::RequestState;
use signoff_audit::merkle::{Hash, Node};
use signoff_store::{LogLeaf, LogSize, Session, 
    Attempt, Commit, CommitOutcome, DeliveryReport, KeyMatch, ListQuery, Notification, Page, PolicyRecord, Result, StateCache,
    Store, StoreError, TaskPage, TaskQuery, due_millis, Gauges,
};

use read::Readers;
use timers::TimerClaims;
use writer::{WriteOp, Writer};

pub struct SqliteStore {
    /// Held for the store's lifetime: one process (one store) per database file, which is what
    /// makes the write-through state cache exact. Several instances need PostgreSQL.
    _lock: std::fs::File,
    writer: Writer,
    readers: Readers,
    cache: Arc<StateCache>,
    timers: TimerClaims,
    /// Rate-limit buckets: in memory, since this process is the only one on the file.
    buckets: signoff_store::rate::Buckets,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and runs pending migrations.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore> {
        Self::open_with(path, signoff_store::DEFAULT_STATE_CACHE_BYTES)
    }

    /// Writes a consistent copy of the database at `path` to `into` (which must not exist), in
    /// one read transaction: a server using the database goes on serving, and only its writes
    /// made after the copy began are not in it. Works whether or not a server holds the file.
    pub fn snapshot(path: impl AsRef<Path>, into: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        if !path.exists() {
            return Err(StoreError::Unavailable(format!("{}: no database here", path.display())));
        }
        let conn = read::open_read_only(path).map_err(|e| unavailable(format!("{}: {e}", path.display())))?;
        let into = into.as_ref().to_str().ok_or_else(|| unavailable("the snapshot path is not UTF-8"))?;
        conn.execute("VACUUM INTO ?1", [into]).map_err(|e| unavailable(format!("{}: cannot copy: {e}", path.display())))?;
        Ok(())
    }

    /// `open`, keeping at most `state_cache_bytes` of request states in memory.
    pub fn open_with(path: impl AsRef<Path>, state_cache_bytes: u64) -> Result<SqliteStore> {
        let path = path.as_ref().to_path_buf();
        let lock = lock(&path)?;
        let conn = open_writer(&path)?;
        let cache = Arc::new(signoff_store::state_cache(state_cache_bytes));
        let writer = Writer::start(conn, cache.clone())?;
        Ok(SqliteStore { _lock: lock, writer, readers: Readers::new(path), cache, timers: TimerClaims::default(), buckets: Default::default() })
    }
}

/// Takes the lock file beside `path`, or says who has it.
fn lock(path: &Path) -> Result<std::fs::File> {
    let lock_path = PathBuf::from(format!("{}.lock", path.display()));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| unavailable(format!("{}: {e}", lock_path.display())))?;
    lock.try_lock().map_err(|_| {
        StoreError::Unavailable(format!(
            "{} is in use by another signoff process (one server per SQLite database; use PostgreSQL for several)",
            path.display()
        ))
    })?;
    Ok(lock)
}

/// The writer's connection, with the database migrated and ready for this process.
fn open_writer(path: &Path) -> Result<Connection> {
    let mut conn = Connection::open(path).map_err(unavailable)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA busy_timeout = 5000;
         PRAGMA foreign_keys = ON;",
    )
    .map_err(unavailable)?;
    schema::migrate(&mut conn).map_err(unavailable)?;
    outbox::release_claims(&conn)?;
    Ok(conn)
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<()> {
        self.readers.run(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(unavailable)).await
    }

    async fn put_policy(&self, policy: &PolicyRecord) -> Result<()> {
        self.writer.call(|reply| WriteOp::PutPolicy(policy.clone(), reply)).await
    }

    async fn policy(&self, hash: &str) -> Result<Option<PolicyRecord>> {
        let hash = hash.to_string();
        self.readers.run(move |c| read::policy(c, &hash)).await
    }

    async fn policies(&self) -> Result<Vec<PolicyRecord>> {
        self.readers.run(read::policies).await
    }

    async fn load(&self, id: &str) -> Result<Option<RequestState>> {
        if let Some(cached) = self.cache.get(id) {
            return Ok(Some(RequestState::clone(&cached.state)));
        }
        let id = id.to_string();
        self.readers.run(move |c| read::state(c, &id)).await
    }

    async fn load_stored(&self, id: &str) -> Result<Option<RequestState>> {
        let id = id.to_string();
        self.readers.run(move |c| read::state(c, &id)).await
    }

    async fn event_bodies(&self, id: &str) -> Result<Vec<String>> {
        let id = id.to_string();
        self.readers.run(move |c| read::event_bodies(c, &id)).await
    }

    async fn commit_all(&self, commits: Vec<Commit>) -> Result<CommitOutcome> {
        let ids: Vec<String> = commits.iter().map(|c| c.state.id.to_string()).collect();
        let outcome = self.writer.call(|reply| WriteOp::Commit(commits, reply)).await?;
        if outcome == CommitOutcome::Committed {
            // A commit ends the request's timer claim (its timers are what it left due).
            self.timers.end(&ids);
        }
        Ok(outcome)
    }

    async fn claim_timers(&self, now: Timestamp, limit: u32, lease_until: Timestamp) -> Result<Vec<String>> {
        let now_ms = now.as_millisecond();
        // Enough due rows to find `limit` unclaimed ones among them.
        let want = limit as usize + self.timers.held(now_ms);
        let due = self.readers.run(move |c| timers::due(c, now_ms, want)).await?;
        Ok(self.timers.take(due, limit as usize, due_millis(lease_until)))
    }

    async fn next_timer_at(&self) -> Result<Option<Timestamp>> {
        let claims = self.timers.all();
        let scan = claims.len() + 1;
        let earliest = self.readers.run(move |c| timers::earliest(c, scan)).await?;
        timers::next_at(&earliest, &claims)
    }

    async fn claim_notifications(&self, now: Timestamp, limit: u32, lease_until: Timestamp) -> Result<Vec<Notification>> {
        self.writer.call(|reply| WriteOp::Claim { now, limit, lease_until, reply }).await
    }

    async fn next_notification_at(&self) -> Result<Option<Timestamp>> {
        self.readers.run(outbox::next_due).await
    }

    async fn record_attempts(&self, attempts: Vec<Attempt>) -> Result<()> {
        self.writer.call(|reply| WriteOp::Attempts(attempts, reply)).await
    }

    async fn notification(&self, id: &str) -> Result<Option<Notification>> {
        let id = id.to_string();
        self.readers.run(move |c| outbox::notification(c, &id)).await
    }

    async fn deliveries(&self, request_id: &str) -> Result<Vec<DeliveryReport>> {
        let request_id = request_id.to_string();
        self.readers.run(move |c| outbox::deliveries(c, &request_id)).await
    }

    async fn put_session(&self, session: &Session) -> Result<()> {
        let write = writer::SessionWrite::Start(session.clone());
        self.writer.call(|reply| WriteOp::Session(write, reply)).await
    }

    async fn session(&self, id_hash: &str, now: Timestamp) -> Result<Option<Session>> {
        let id_hash = id_hash.to_string();
        self.readers.run(move |c| read::session(c, &id_hash, now.as_millisecond())).await
    }

    async fn end_session(&self, id_hash: &str) -> Result<()> {
        let write = writer::SessionWrite::End(id_hash.to_string());
        self.writer.call(|reply| WriteOp::Session(write, reply)).await
    }

    async fn use_once(&self, key: &str, at: Timestamp) -> Result<bool> {
        self.writer.call(|reply| WriteOp::UseOnce(key.to_string(), at, reply)).await
    }

    async fn directory_changes(&self, after: u64) -> Result<Vec<(u64, String)>> {
        self.readers.run(move |c| read::directory_changes(c, after)).await
    }

    async fn append_directory_change(&self, seq: u64, body: &str) -> Result<bool> {
        self.writer.call(|reply| WriteOp::DirectoryChange(seq, body.to_string(), reply)).await
    }

    async fn take_tokens(&self, key: &str, rate: signoff_store::rate::Rate, now: Timestamp, want: u32) -> Result<std::result::Result<u32, std::time::Duration>> {
        Ok(self.buckets.take(key, rate, now, want))
    }

    async fn lineage(&self, lineage: &str) -> Result<Vec<RequestState>> {
        let lineage = lineage.to_string();
        self.readers.run(move |c| read::lineage(c, &lineage)).await
    }

    async fn list(&self, q: &ListQuery) -> Result<Page> {
        let q = q.clone();
        self.readers.run(move |c| read::list(c, &q)).await
    }

    async fn gauges(&self, now: Timestamp) -> Result<Gauges> {
        self.readers.run(move |c| read::gauges(c, now)).await
    }

    async fn tasks(&self, q: &TaskQuery) -> Result<TaskPage> {
        let q = q.clone();
        self.readers.run(move |c| read::task_page(c, &q)).await
    }

    async fn idempotency(&self, scope: &str, key: &str, fingerprint: &str) -> Result<Option<KeyMatch>> {
        let (scope, key, fingerprint) = (scope.to_string(), key.to_string(), fingerprint.to_string());
        self.readers.run(move |c| read::key_match(c, &scope, &key, &fingerprint)).await
    }

    async fn sequence_log(&self, limit: u32) -> Result<u64> {
        self.writer.call(|reply| WriteOp::SequenceLog(limit, reply)).await
    }

    async fn log_size(&self) -> Result<LogSize> {
        self.readers.run(|c| Ok(LogSize { size: audit::size(c)?, queued: audit::queued(c)? })).await
    }

    async fn log_nodes(&self, wanted: &[Node]) -> Result<HashMap<Node, Hash>> {
        let wanted = wanted.to_vec();
        self.readers.run(move |c| audit::nodes(c, &wanted)).await
    }

    async fn log_leaves(&self, from: u64, limit: u32) -> Result<Vec<LogLeaf>> {
        self.readers.run(move |c| audit::leaves(c, from, limit)).await
    }

    async fn log_leaves_of(&self, request_id: &str) -> Result<Vec<LogLeaf>> {
        let request_id = request_id.to_string();
        self.readers.run(move |c| audit::leaves_of(c, &request_id)).await
    }

    async fn audit_rows(&self, from: u64, limit: u32) -> Result<Vec<signoff_store::log::AuditRow>> {
        self.readers.run(move |c| audit::audit_rows(c, from, limit)).await
    }

    async fn retention_candidates(&self, policy: Option<&str>, statuses: &[signoff_engine::RequestStatus], before: Timestamp, limit: u32) -> Result<Vec<String>> {
        let (policy, statuses) = (policy.map(str::to_string), statuses.to_vec());
        self.readers.run(move |c| retention::candidates(c, policy.as_deref(), &statuses, before, limit)).await
    }

    async fn purge(&self, ids: &[String], archive: &str, at: Timestamp) -> Result<u64> {
        let (ids, archive) = (ids.to_vec(), archive.to_string());
        self.writer.call(|reply| WriteOp::Purge { ids, archive, at, reply }).await.map(|gone| gone.len() as u64)
    }

    async fn purged(&self) -> Result<HashMap<String, String>> {
        self.readers.run(retention::purged).await
    }

    async fn prune(&self, keys_before: Timestamp, notifications_before: Timestamp, used_before: Timestamp) -> Result<signoff_store::Pruned> {
        self.writer.call(|reply| WriteOp::Prune([keys_before, notifications_before, used_before], reply)).await
    }

    async fn put_facts(&self, rows: Vec<signoff_store::FactsRow>, cursor: u64) -> Result<()> {
        self.writer.call(|reply| WriteOp::PutFacts(rows, cursor, reply)).await
    }

    async fn facts_cursor(&self) -> Result<u64> {
        self.readers.run(insights::cursor).await
    }

    async fn facts_page(&self, after: (u64, &str), limit: u32) -> Result<Vec<signoff_store::FactsRow>> {
        let (cursor, id) = (after.0, after.1.to_string());
        self.readers.run(move |c| insights::page(c, cursor, &id, limit)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn snapshot_while_the_database_is_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("live.db");
        let store = SqliteStore::open(&path).unwrap();
        let record = signoff_store::PolicyRecord { hash: "sha256:abc".into(), id: "p".into(), version: 1, source: serde_json::json!({"id": "p"}) };
        store.put_policy(&record).await.unwrap();
        let copy = dir.path().join("copy.db");
        SqliteStore::snapshot(&path, &copy).unwrap();
        store.put_policy(&signoff_store::PolicyRecord { hash: "sha256:def".into(), ..record.clone() }).await.unwrap();
        let copied = SqliteStore::open(&copy).unwrap();
        assert_eq!(copied.policies().await.unwrap(), vec![record], "the copy holds what was committed when it began");
        assert!(SqliteStore::snapshot(dir.path().join("missing.db"), dir.path().join("x.db")).is_err());
    }
}
