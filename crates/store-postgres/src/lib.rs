//! The PostgreSQL store, for several signoff instances sharing one database. Every commit is a
//! transaction whose version check is a conditional UPDATE (optimistic concurrency across
//! instances); outbox rows are claimed with `FOR UPDATE SKIP LOCKED` and a lease, so each is
//! delivered by one instance at a time; due timers likewise. States this instance committed
//! or read are cached for deciding the next commit only (`snapshot`): another instance may have
//! moved the request on, which the version check catches; change notifications evict what
//! they make stale. Reads (`load`) always go to the database.

mod audit;
mod commit;
mod insights;
mod retention;
mod schema;
#[cfg(feature = "testing")]
pub mod testing;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use jiff::Timestamp;
use signoff_engine::RequestState;
use signoff_store::rows::{NOTIFICATION_COLUMNS, OutboxRow, from_millis};
use signoff_audit::merkle::{Hash, Node};
use signoff_store::{LogLeaf, LogSize, Session, 
    Attempt, AttemptOutcome, Change, Commit, CommitOutcome, DeliveryReport, KeyMatch, ListQuery, Notification, Page, PolicyRecord,
    Result, Snapshot, Store, StoreError, Task, TaskPage, TaskQuery, due_millis, Gauges,
};
use tokio_postgres::types::ToSql;
use deadpool_postgres::GenericClient;
use tokio_postgres::{NoTls, Row};

/// A person's open tasks, soonest due first (undated last: NULLS LAST is the ascending
/// default); served in order by `tasks_inbox`.
/// The statements that read `q`'s page of tasks and count them, and their arguments (the
/// count takes all but the last two). An approver's page reads `tasks_inbox` in order,
/// everyone's `tasks_due`.
pub fn tasks_sql(q: &TaskQuery) -> (String, String, Vec<signoff_store::sql::SqlArg>) {
    let order = if q.approver.is_some() { "t.due_at, t.request_n, t.step_id COLLATE \"C\"" } else { "t.due_at, t.request_n, t.step_id COLLATE \"C\", t.approver COLLATE \"C\"" };
    signoff_store::sql::task_query(q, order, |k| format!("${k}"))
}

/// Set for the transaction of each inbox and list: their queries read an index in the order
/// they answer and stop at the page, which is the best plan whatever the statistics say; but
/// right after a bulk load (before autovacuum analyzes) PostgreSQL estimated a person's 200,000
/// tasks at a few hundred and chose to read them all and sort (1.9 s instead of 0.7 ms).
/// Without sorts to choose, it walks the index.
pub const ORDERED_READ: &str = "SET LOCAL enable_sort = off";

/// Connection settings, as parsed from a `postgres://` URL.
pub use tokio_postgres::Config;
pub use tokio_postgres::config::Host;

pub struct PostgresStore {
    pool: Pool,
    committer: commit::Committer,
    changes: tokio::sync::broadcast::Sender<Change>,
    cache: Arc<StateCache>,
}

/// Connections per instance. Queries are short, so a few connections serve many callers; each
/// more is another PostgreSQL process on the database's cores (three instances with 16 each
/// did about a tenth less than with 8, docs/benchmarks.md §7).
const CONNECTIONS: usize = 8;

use signoff_store::{CachedState, StateCache};

/// The channel commits are announced on: each notification lists `<id> <version>` lines.
const CHANNEL: &str = "signoff_changes";

/// Notification payloads announcing `commits` (id, version): as few as fit PostgreSQL's
/// payload limit (8000 bytes).
fn announcements<'a>(commits: impl Iterator<Item = (&'a str, u64)>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (id, version) in commits {
        let line = format!("{id} {version}");
        match out.last_mut() {
            Some(p) if p.len() + 1 + line.len() <= 7_900 => {
                p.push('\n');
                p.push_str(&line);
            }
            _ => out.push(line),
        }
    }
    out
}

/// A failed database call: the store is unavailable, unless PostgreSQL refused text it cannot
/// hold (a NUL character), which is the caller's mistake.
fn unavailable(e: impl std::fmt::Display + 'static) -> StoreError {
    let refused_text = (&e as &dyn std::any::Any)
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(tokio_postgres::Error::code)
        .is_some_and(|c| *c == tokio_postgres::error::SqlState::CHARACTER_NOT_IN_REPERTOIRE);
    if refused_text { StoreError::Invalid("text may not contain NUL characters".into()) } else { StoreError::Unavailable(e.to_string()) }
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// The notification in an outbox row (`NOTIFICATION_COLUMNS` first).
fn notification(r: &Row) -> Result<Notification> {
    OutboxRow {
        id: r.get(0),
        request_id: r.get(1),
        channel: r.get(2),
        destination: r.get(3),
        kind: r.get(4),
        payload: r.get(5),
        coalesce_key: r.get(6),
        created_at: r.get(7),
        status: r.get(8),
        attempts: r.get::<_, i32>(9).into(),
        revision: r.get::<_, i32>(10).into(),
        next_attempt_at: r.get(11),
        last_error: r.get(12),
        result: r.get(13),
        delivered_at: r.get(14),
        trace: r.get(15),
    }
    .decode()
}

/// What the idempotency key `scope`/`key`, if used, says about a call with `fingerprint`.
async fn key_match(pool: &Pool, scope: &str, key: &str, fingerprint: &str) -> Result<Option<KeyMatch>> {
    let row = pool
        .get()
        .await
        .map_err(unavailable)?
        .query_opt("SELECT fingerprint, status, body FROM idempotency WHERE scope = $1 AND key = $2", &[&scope, &key])
        .await
        .map_err(unavailable)?;
    Ok(row.map(|r| KeyMatch::of(r.get(0), fingerprint, r.get::<_, i32>(1) as u16, r.get(2))))
}

/// Keeps `state` for deciding on next, unless the cache already holds a newer version.
fn remember(cache: &StateCache, state: CachedState) {
    if cache.get(state.state.id.as_str()).is_none_or(|cached| cached.state.version < state.state.version) {
        cache.insert(state.state.id.to_string(), state);
    }
}

/// A list query's arguments as PostgreSQL binds them.
pub fn sql_params(args: Vec<signoff_store::sql::SqlArg>) -> Vec<Box<dyn ToSql + Sync + Send>> {
    args.into_iter()
        .map(|a| -> Box<dyn ToSql + Sync + Send> {
            match a {
                signoff_store::sql::SqlArg::Int(n) => Box::new(n),
                signoff_store::sql::SqlArg::Text(t) => Box::new(t),
            }
        })
        .collect()
}

/// A read-only transaction with `ORDERED_READ` set, for the inbox and lists.
async fn ordered_read(client: &mut deadpool_postgres::Object) -> Result<deadpool_postgres::Transaction<'_>> {
    let tx = client.build_transaction().read_only(true).start().await.map_err(unavailable)?;
    tx.batch_execute(ORDERED_READ).await.map_err(unavailable)?;
    Ok(tx)
}

fn decode_state(text: &str) -> Result<RequestState> {
    signoff_store::decode(text)
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user@host:port/db`) and runs pending migrations.
    pub async fn connect(url: &str) -> Result<PostgresStore> {
        Self::connect_with(url, signoff_store::DEFAULT_STATE_CACHE_BYTES).await
    }

    /// `connect`, keeping at most `state_cache_bytes` of request states in memory.
    pub async fn connect_with(url: &str, state_cache_bytes: u64) -> Result<PostgresStore> {
        let config: tokio_postgres::Config = url.parse().map_err(|e| StoreError::Invalid(format!("database-url: {e}")))?;
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager).max_size(CONNECTIONS).build().map_err(unavailable)?;
        let mut client = pool.get().await.map_err(unavailable)?;
        schema::migrate(&mut client).await.map_err(unavailable)?;
        let (changes, _) = tokio::sync::broadcast::channel(4096);
        let cache = Arc::new(signoff_store::state_cache(state_cache_bytes));
        tokio::spawn(listen(url.to_string(), changes.clone(), cache.clone()));
        Ok(PostgresStore { committer: commit::Committer::start(pool.clone(), cache.clone()), pool, changes, cache })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(unavailable)
    }
}

/// Listens for commits of every instance on a connection of its own, reconnecting (and telling
/// subscribers to resync) whenever it drops.
async fn listen(url: String, changes: tokio::sync::broadcast::Sender<Change>, cache: Arc<StateCache>) {
    use futures_util::StreamExt;
    let mut first = true;
    loop {
        match tokio_postgres::connect(&url, NoTls).await {
            Ok((client, mut connection)) => {
                let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                let statement = format!("LISTEN {CHANNEL}");
                let listening = client.batch_execute(&statement);
                // The connection must be polled for the LISTEN to complete.
                let ready = async {
                    tokio::pin!(listening);
                    loop {
                        tokio::select! {
                            r = &mut listening => return r.is_ok(),
                            m = messages.next() => if m.is_none() { return false },
                        }
                    }
                };
                if ready.await {
                    if !first {
                        // Whatever changed meanwhile went unannounced.
                        cache.clear();
                        let _ = changes.send(Change::Resync);
                    }
                    first = false;
                    while let Some(message) = messages.next().await {
                        match message {
                            Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                                for line in n.payload().lines() {
                                    let (id, version) = line.split_once(' ').unwrap_or((line, ""));
                                    let version: u64 = version.parse().unwrap_or(u64::MAX);
                                    if cache.get(id).is_some_and(|s| s.state.version < version) {
                                        cache.remove(id);
                                    }
                                    let _ = changes.send(Change::Request(id.to_string()));
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "change listener lost its connection; reconnecting");
                                break;
                            }
                        }
                    }
                }
                drop(client);
            }
            Err(e) => tracing::warn!(error = %e, "change listener cannot connect; retrying"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> Result<()> {
        self.client().await?.execute("SELECT 1", &[]).await.map(|_| ()).map_err(unavailable)
    }

    async fn put_policy(&self, p: &PolicyRecord) -> Result<()> {
        self.client()
            .await?
            .execute(
                "INSERT INTO policies (hash, id, version, source) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                &[&p.hash, &p.id, &(p.version as i64), &p.source.to_string()],
            )
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn policy(&self, hash: &str) -> Result<Option<PolicyRecord>> {
        let row = self.client().await?.query_opt("SELECT hash, id, version, source FROM policies WHERE hash = $1", &[&hash]).await.map_err(unavailable)?;
        row.map(|r| PolicyRecord::from_row(r.get(0), r.get(1), r.get(2), r.get(3))).transpose()
    }

    async fn policies(&self) -> Result<Vec<PolicyRecord>> {
        let rows = self.client().await?.query("SELECT hash, id, version, source FROM policies ORDER BY hash", &[]).await.map_err(unavailable)?;
        rows.iter().map(|r| PolicyRecord::from_row(r.get(0), r.get(1), r.get(2), r.get(3))).collect()
    }

    async fn load(&self, id: &str) -> Result<Option<RequestState>> {
        let client = self.client().await?;
        let statement = client.prepare_cached("SELECT state FROM requests WHERE id = $1").await.map_err(unavailable)?;
        let row = client.query_opt(&statement, &[&id]).await.map_err(unavailable)?;
        let Some(text) = row.as_ref().map(|r| r.get::<_, &str>(0)) else { return Ok(None) };
        let state = decode_state(text)?;
        remember(&self.cache, CachedState::new(Arc::new(state.clone()), text.len()));
        Ok(Some(state))
    }

    async fn snapshot(&self, id: &str) -> Result<Option<Snapshot>> {
        if let Some(cached) = self.cache.get(id) {
            return Ok(Some(Snapshot { state: RequestState::clone(&cached.state), current: false }));
        }
        Ok(self.load(id).await?.map(|state| Snapshot { state, current: true }))
    }

    async fn event_bodies(&self, id: &str) -> Result<Vec<String>> {
        let client = self.client().await?;
        let statement = client.prepare_cached("SELECT body FROM events WHERE request_id = $1 ORDER BY seq").await.map_err(unavailable)?;
        let rows = client.query(&statement, &[&id]).await.map_err(unavailable)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn commit_all(&self, commits: Vec<Commit>) -> Result<CommitOutcome> {
        self.committer.commit_all(commits).await
    }

    async fn claim_timers(&self, now: Timestamp, limit: u32, lease_until: Timestamp) -> Result<Vec<String>> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "UPDATE timers t SET claimed_until = $3 FROM requests r
                 WHERE r.n = t.request_n AND t.request_n IN (
                    SELECT request_n FROM timers
                    WHERE due_at <= $1 AND (claimed_until IS NULL OR claimed_until <= $1)
                    ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED)
                 RETURNING r.id, t.due_at",
            )
            .await
            .map_err(unavailable)?;
        let rows = client.query(&statement, &[&now.as_millisecond(), &(limit as i64), &due_millis(lease_until)]).await.map_err(unavailable)?;
        let mut due: Vec<(i64, String)> = rows.iter().map(|r| (r.get(1), r.get(0))).collect();
        due.sort();
        Ok(due.into_iter().map(|(_, id)| id).collect())
    }

    async fn next_timer_at(&self) -> Result<Option<Timestamp>> {
        let row = self.client().await?.query_one("SELECT MIN(COALESCE(claimed_until, due_at)) FROM timers", &[]).await.map_err(unavailable)?;
        row.get::<_, Option<i64>>(0).map(from_millis).transpose()
    }

    async fn lineage(&self, lineage: &str) -> Result<Vec<RequestState>> {
        let rows = self.client().await?.query("SELECT state FROM requests WHERE lineage = $1 ORDER BY n", &[&lineage]).await.map_err(unavailable)?;
        rows.iter().map(|r| decode_state(r.get(0))).collect()
    }

    async fn claim_notifications(&self, now: Timestamp, limit: u32, lease_until: Timestamp) -> Result<Vec<Notification>> {
        let sql = format!(
            "UPDATE outbox SET claimed_until = $3 WHERE n IN (
                SELECT n FROM outbox
                WHERE status = 'pending' AND ((claimed_until IS NULL AND next_attempt_at <= $1) OR claimed_until <= $1)
                ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED)
             RETURNING {NOTIFICATION_COLUMNS}"
        );
        let rows = self
            .client()
            .await?
            .query(&sql, &[&now.as_millisecond(), &(limit as i64), &due_millis(lease_until)])
            .await
            .map_err(unavailable)?;
        let mut out = rows.iter().map(notification).collect::<Result<Vec<_>>>()?;
        out.sort_by_key(|n| n.next_attempt_at);
        Ok(out)
    }

    async fn next_notification_at(&self) -> Result<Option<Timestamp>> {
        let row = self
            .client()
            .await?
            .query_one("SELECT MIN(COALESCE(claimed_until, next_attempt_at)) FROM outbox WHERE status = 'pending'", &[])
            .await
            .map_err(unavailable)?;
        row.get::<_, Option<i64>>(0).map(from_millis).transpose()
    }

    async fn record_attempts(&self, attempts: Vec<Attempt>) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(unavailable)?;
        for a in &attempts {
            let Some(row) = tx.query_opt("SELECT n, attempts, revision FROM outbox WHERE id = $1 FOR UPDATE", &[&a.notification]).await.map_err(unavailable)? else {
                continue;
            };
            let (n, attempts, revision): (i64, i32, i32) = (row.get(0), row.get(1), row.get(2));
            let at = a.at.to_string();
            let at_ms = due_millis(a.at);
            match &a.outcome {
                AttemptOutcome::Delivered { result } if revision as u32 == a.revision => {
                    let result = result.as_ref().map(|r| r.to_string());
                    tx.execute(
                        "UPDATE outbox SET status = 'delivered', attempts = attempts + 1, delivered_at = $2, result = $3, next_attempt_at = NULL, last_error = NULL, claimed_until = NULL WHERE n = $1",
                        &[&n, &at, &result],
                    )
                    .await
                }
                // Delivered, but the payload was replaced meanwhile: send the new one now.
                AttemptOutcome::Delivered { result } => {
                    let result = result.as_ref().map(|r| r.to_string());
                    tx.execute(
                        "UPDATE outbox SET attempts = attempts + 1, result = $3, next_attempt_at = $2, claimed_until = NULL WHERE n = $1",
                        &[&n, &at_ms, &result],
                    )
                    .await
                }
                AttemptOutcome::Failed { error, next_attempt_at: Some(next) } => {
                    let next = due_millis(*next);
                    tx.execute(
                        "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $2, last_error = $3, claimed_until = NULL WHERE n = $1",
                        &[&n, &next, error],
                    )
                    .await
                }
                AttemptOutcome::Failed { error, next_attempt_at: None } => {
                    tx.execute(
                        "UPDATE outbox SET status = 'failed', attempts = attempts + 1, next_attempt_at = NULL, last_error = $2, claimed_until = NULL WHERE n = $1",
                        &[&n, error],
                    )
                    .await
                }
                AttemptOutcome::Deferred { until } => {
                    let until = due_millis(*until);
                    tx.execute("UPDATE outbox SET next_attempt_at = $2, claimed_until = NULL WHERE n = $1", &[&n, &until])
                        .await
                        .map_err(unavailable)?;
                    continue;
                }
            }
            .map_err(unavailable)?;
            tx.execute(
                "INSERT INTO outbox_attempts (notification_n, seq, body) VALUES ($1, $2, $3)",
                &[&n, &(attempts + 1), &serde_json::to_string(a).map_err(corrupt)?],
            )
            .await
            .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)
    }

    async fn notification(&self, id: &str) -> Result<Option<Notification>> {
        let sql = format!("SELECT {NOTIFICATION_COLUMNS} FROM outbox WHERE id = $1");
        self.client().await?.query_opt(&sql, &[&id]).await.map_err(unavailable)?.as_ref().map(notification).transpose()
    }

    async fn deliveries(&self, request_id: &str) -> Result<Vec<DeliveryReport>> {
        let client = self.client().await?;
        let sql = format!("SELECT {NOTIFICATION_COLUMNS}, n FROM outbox WHERE request_id = $1 ORDER BY n");
        let rows = client.query(&sql, &[&request_id]).await.map_err(unavailable)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let n: i64 = r.get(16);
            let log = client.query("SELECT body FROM outbox_attempts WHERE notification_n = $1 ORDER BY seq", &[&n]).await.map_err(unavailable)?;
            let attempt_log = log.iter().map(|l| signoff_store::decode(l.get(0))).collect::<Result<_>>()?;
            out.push(DeliveryReport { notification: notification(r)?, attempt_log });
        }
        Ok(out)
    }

    fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<Change>> {
        Some(self.changes.subscribe())
    }

    async fn put_session(&self, s: &Session) -> Result<()> {
        let client = self.client().await?;
        client.execute("DELETE FROM sessions WHERE expires_at < $1", &[&s.created_at.as_millisecond()]).await.map_err(unavailable)?;
        client
            .execute(
                "INSERT INTO sessions (id_hash, user_id, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (id_hash) DO UPDATE SET user_id = EXCLUDED.user_id, csrf = EXCLUDED.csrf, created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at",
                &[&s.id_hash, &s.user, &s.csrf, &s.created_at.as_millisecond(), &s.expires_at.as_millisecond()],
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn session(&self, id_hash: &str, now: Timestamp) -> Result<Option<Session>> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT id_hash, user_id, csrf, created_at, expires_at FROM sessions WHERE id_hash = $1 AND expires_at > $2", &[&id_hash, &now.as_millisecond()])
            .await
            .map_err(unavailable)?;
        row.map(|r| signoff_store::rows::session(r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))).transpose()
    }

    async fn end_session(&self, id_hash: &str) -> Result<()> {
        let client = self.client().await?;
        client.execute("DELETE FROM sessions WHERE id_hash = $1", &[&id_hash]).await.map_err(unavailable)?;
        Ok(())
    }

    async fn use_once(&self, key: &str, at: Timestamp) -> Result<bool> {
        let client = self.client().await?;
        client.execute("DELETE FROM used_keys WHERE at < $1", &[&(at.as_millisecond() - 2 * 86_400_000)]).await.map_err(unavailable)?;
        let n = client
            .execute("INSERT INTO used_keys (key, at) VALUES ($1, $2) ON CONFLICT DO NOTHING", &[&key, &at.as_millisecond()])
            .await
            .map_err(unavailable)?;
        Ok(n == 1)
    }

    async fn directory_changes(&self, after: u64) -> Result<Vec<(u64, String)>> {
        let client = self.client().await?;
        let rows = client
            .query("SELECT seq, body FROM directory_changes WHERE seq > $1 ORDER BY seq", &[&(after as i64)])
            .await
            .map_err(unavailable)?;
        Ok(rows.iter().map(|r| (r.get::<_, i64>(0) as u64, r.get(1))).collect())
    }

    async fn append_directory_change(&self, seq: u64, body: &str) -> Result<bool> {
        let client = self.client().await?;
        let n = client
            .execute("INSERT INTO directory_changes (seq, body) VALUES ($1, $2) ON CONFLICT DO NOTHING", &[&(seq as i64), &body])
            .await
            .map_err(unavailable)?;
        Ok(n == 1)
    }

    async fn take_tokens(&self, key: &str, rate: signoff_store::rate::Rate, now: Timestamp, want: u32) -> Result<std::result::Result<u32, std::time::Duration>> {
        let client = self.client().await?;
        let (now, burst, want) = (now.as_millisecond(), rate.burst as f64, want.max(1) as f64);
        // One statement takes as many whole tokens as the refilled bucket holds, up to `want`,
        // if it holds one (and says how many in `granted`); a new bucket starts full.
        let taken = client
            .query_opt(
                "INSERT INTO rate_buckets AS b (key, tokens, at, granted) \
                 VALUES ($1, $2::float8 - LEAST($5::float8, floor($2::float8)), $3::int8, LEAST($5::float8, floor($2::float8))) \
                 ON CONFLICT (key) DO UPDATE SET \
                   granted = LEAST($5::float8, floor(LEAST($2::float8, b.tokens + GREATEST(0, $3::int8 - b.at) * $4::float8 / 1000.0))), \
                   tokens = LEAST($2::float8, b.tokens + GREATEST(0, $3::int8 - b.at) * $4::float8 / 1000.0) \
                          - LEAST($5::float8, floor(LEAST($2::float8, b.tokens + GREATEST(0, $3::int8 - b.at) * $4::float8 / 1000.0))), \
                   at = GREATEST(b.at, $3::int8) \
                 WHERE LEAST($2::float8, b.tokens + GREATEST(0, $3::int8 - b.at) * $4::float8 / 1000.0) >= 1 \
                 RETURNING granted",
                &[&key, &burst, &now, &rate.per_second, &want],
            )
            .await
            .map_err(unavailable)?;
        if let Some(row) = taken {
            // Now and then, forget buckets untouched for a day (full again, for any sane rule).
            if fastrand::u32(..1024) == 0 {
                client.execute("DELETE FROM rate_buckets WHERE at < $1", &[&(now - 86_400_000)]).await.map_err(unavailable)?;
            }
            let granted: f64 = row.get(0);
            return Ok(Ok(granted as u32));
        }
        let row = client.query_one("SELECT tokens, at FROM rate_buckets WHERE key = $1", &[&key]).await.map_err(unavailable)?;
        Ok(Err(rate.wait(rate.refill(row.get(0), row.get(1), now))))
    }

    async fn list(&self, q: &ListQuery) -> Result<Page> {
        let (sql, args) = signoff_store::sql::list_query(q, |k| format!("${k}"))?;
        let args = sql_params(args);
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a.as_ref() as &(dyn ToSql + Sync)).collect();
        // Fetched a few rows at a time through a portal, and only until the page is full: the
        // rest of `limit + 1` large states is never sent.
        let mut client = self.client().await?;
        let tx = ordered_read(&mut client).await?;
        let statement = tx.prepare_cached(&sql).await.map_err(unavailable)?;
        let portal = tx.bind(&statement, &params).await.map_err(unavailable)?;
        let limit = q.limit.clamp(1, 500) as usize;
        let max_bytes = q.max_bytes.unwrap_or(usize::MAX);
        let mut rows: Vec<(String, String)> = Vec::new();
        let mut bytes = 0usize;
        // One row first, then as many as the rest of the budget holds at the size so far.
        let mut want = 1;
        loop {
            let batch = tx.query_portal(&portal, want as i32).await.map_err(unavailable)?;
            let done = batch.len() < want;
            for r in batch {
                let text: String = r.get(1);
                bytes = bytes.saturating_add(text.len());
                rows.push((r.get(0), text));
            }
            if done || rows.len() > limit || bytes > max_bytes {
                break;
            }
            let average = (bytes / rows.len()).max(1);
            want = ((max_bytes - bytes) / average + 1).clamp(1, limit + 1 - rows.len());
        }
        drop(tx);
        signoff_store::sql::list_page(q, rows.into_iter().map(Ok))
    }

    async fn gauges(&self, now: Timestamp) -> Result<Gauges> {
        let client = self.client().await?;
        let rows = |sql: &'static str| {
            let client = &client;
            async move { client.query(sql, &[]).await.map_err(unavailable) }
        };
        let now_ms = now.as_millisecond();
        let pending = rows(
            "SELECT policy_id, count(*)::bigint, extract(epoch FROM min(created_at::timestamptz))::float8,
                    avg(extract(epoch FROM created_at::timestamptz))::float8
             FROM requests WHERE status = 'pending' GROUP BY policy_id",
        )
        .await?
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64, r.get::<_, f64>(2), r.get::<_, f64>(3)))
        .collect();
        let acks = client
            .query(
                "SELECT policy, sum(p)::bigint, sum(late)::bigint FROM (SELECT max((body::jsonb)->>'policy') AS policy,
                        max(coalesce(((body::jsonb)->>'pending_acks')::int, 0)) AS p, max(CASE WHEN due_at <= $1 THEN 1 ELSE 0 END) AS late
                 FROM tasks GROUP BY request_n, step_id) t GROUP BY policy",
                &[&now_ms],
            )
            .await
            .map_err(unavailable)?
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64, r.get::<_, i64>(2) as u64))
            .collect();
        let outbox = rows("SELECT channel, count(*)::bigint, extract(epoch FROM min(created_at::timestamptz))::float8 FROM outbox WHERE status = 'pending' GROUP BY channel")
            .await?
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64, r.get::<_, f64>(2)))
            .collect();
        Ok(Gauges::assemble(now, pending, acks, outbox))
    }

    async fn tasks(&self, q: &TaskQuery) -> Result<TaskPage> {
        let (select, count, args) = tasks_sql(q);
        let mut client = self.client().await?;
        let tx = ordered_read(&mut client).await?;
        let args = sql_params(args);
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = args.iter().map(|a| a.as_ref() as _).collect();
        let total = if q.count {
            let statement = tx.prepare_cached(&count).await.map_err(unavailable)?;
            let n: i64 = tx.query_one(&statement, &params[..params.len() - 2]).await.map_err(unavailable)?.get(0);
            Some(n as u64)
        } else {
            None
        };
        let statement = tx.prepare_cached(&select).await.map_err(unavailable)?;
        let rows = tx.query(&statement, &params).await.map_err(unavailable)?;
        let items = rows.iter().map(|r| signoff_store::task_row(r.get(0), r.get(1))).collect::<Result<Vec<Task>>>()?;
        Ok(TaskPage { items, total })
    }

    async fn idempotency(&self, scope: &str, key: &str, fingerprint: &str) -> Result<Option<KeyMatch>> {
        key_match(&self.pool, scope, key, fingerprint).await
    }

    async fn sequence_log(&self, limit: u32) -> Result<u64> {
        audit::sequence(&mut self.client().await?, limit).await
    }

    async fn log_size(&self) -> Result<LogSize> {
        let client = self.client().await?;
        Ok(LogSize { size: audit::size(&client).await?, queued: audit::queued(&client).await? })
    }

    async fn log_nodes(&self, wanted: &[Node]) -> Result<HashMap<Node, Hash>> {
        audit::nodes(&self.client().await?, wanted).await
    }

    async fn log_leaves(&self, from: u64, limit: u32) -> Result<Vec<LogLeaf>> {
        audit::leaves(&self.client().await?, from, limit).await
    }

    async fn log_leaves_of(&self, request_id: &str) -> Result<Vec<LogLeaf>> {
        audit::leaves_of(&self.client().await?, request_id).await
    }

    async fn audit_rows(&self, from: u64, limit: u32) -> Result<Vec<signoff_store::log::AuditRow>> {
        audit::audit_rows(&self.client().await?, from, limit).await
    }

    async fn retention_candidates(&self, policy: Option<&str>, statuses: &[signoff_engine::RequestStatus], before: Timestamp, limit: u32) -> Result<Vec<String>> {
        retention::candidates(&self.client().await?, policy, statuses, before, limit).await
    }

    async fn purge(&self, ids: &[String], archive: &str, at: Timestamp) -> Result<u64> {
        let gone = retention::purge(&mut self.client().await?, ids, archive, at).await?;
        for id in &gone {
            self.cache.remove(id.as_str());
        }
        Ok(gone.len() as u64)
    }

    async fn purged(&self) -> Result<HashMap<String, String>> {
        retention::purged(&self.client().await?).await
    }

    async fn prune(&self, keys_before: Timestamp, notifications_before: Timestamp, used_before: Timestamp) -> Result<signoff_store::Pruned> {
        retention::prune(&mut self.client().await?, keys_before, notifications_before, used_before).await
    }

    async fn put_facts(&self, rows: Vec<signoff_store::FactsRow>, cursor: u64) -> Result<()> {
        insights::put(&mut self.client().await?, &rows, cursor).await
    }

    async fn facts_cursor(&self) -> Result<u64> {
        insights::cursor(&self.client().await?).await
    }

    async fn facts_page(&self, after: (u64, &str), limit: u32) -> Result<Vec<signoff_store::FactsRow>> {
        insights::page(&self.client().await?, after.0, after.1, limit).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn announcements_fit_the_payload_limit_and_keep_every_commit() {
        let ids: Vec<String> = (0..2000).map(|i| format!("req_{i:026}")).collect();
        let payloads = super::announcements(ids.iter().map(|id| (id.as_str(), 7)));
        assert!(payloads.len() > 1);
        assert!(payloads.iter().all(|p| p.len() <= 7_900));
        let lines: Vec<String> = payloads.iter().flat_map(|p| p.lines().map(str::to_string)).collect();
        assert_eq!(lines, ids.iter().map(|id| format!("{id} 7")).collect::<Vec<_>>());
        assert!(super::announcements(std::iter::empty()).is_empty());
    }
}
