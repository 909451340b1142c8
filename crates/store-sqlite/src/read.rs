//! Reads: a small pool of read-only connections, each lent to one read at a time on the
//! blocking thread pool (in WAL mode they never wait for the writer), and the queries of
//! requests, events, policies, tasks, lists and idempotency keys run on them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use signoff_engine::RequestState;
use signoff_store::{Gauges, KeyMatch, ListQuery, Page, PolicyRecord, Result, Task, TaskPage, TaskQuery};
use tokio::sync::Semaphore;

use crate::unavailable;

/// A person's open tasks, soonest due first (undated last); served in order by `tasks_inbox`.
/// The statements that read `q`'s page of tasks and count them, and their arguments (the
/// count takes all but the last two). An approver's page reads `tasks_inbox` in order,
/// everyone's `tasks_due`.
pub(crate) fn tasks_sql(q: &TaskQuery) -> (String, String, Vec<rusqlite::types::Value>) {
    let order = if q.approver.is_some() { "t.due_at IS NULL, t.due_at, t.request_n, t.step_id" } else { "t.due_at IS NULL, t.due_at, t.request_n, t.step_id, t.approver" };
    let (select, count, args) = signoff_store::sql::task_query(q, order, |k| format!("?{k}"));
    (select, count, args.into_iter().map(sql_value).collect())
}

/// The state gauges at `now` (`Store::gauges`). Times are RFC 3339 text, read as julian days.
pub(crate) fn gauges(c: &Connection, now: jiff::Timestamp) -> Result<Gauges> {
    let unix = |jd: f64| (jd - 2_440_587.5) * 86_400.0;
    let query = |sql: &str| c.prepare_cached(sql).map_err(unavailable);
    let pending = query("SELECT policy_id, count(*), min(julianday(created_at)), avg(julianday(created_at)) FROM requests WHERE status = 'pending' GROUP BY policy_id")?
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64, unix(r.get(2)?), unix(r.get(3)?))))
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(unavailable)?;
    let acks = query(
        "SELECT policy, sum(p), sum(late) FROM (SELECT max(json_extract(body, '$.policy')) AS policy, max(coalesce(json_extract(body, '$.pending_acks'), 0)) AS p,
                max(due_at IS NOT NULL AND due_at <= ?1) AS late
         FROM tasks GROUP BY request_n, step_id) GROUP BY policy",
    )?
    .query_map([now.as_millisecond()], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64, r.get::<_, i64>(2)? as u64)))
    .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
    .map_err(unavailable)?;
    let outbox = query("SELECT channel, count(*), min(julianday(created_at)) FROM outbox WHERE status = 'pending' GROUP BY channel")?
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64, unix(r.get(2)?))))
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(unavailable)?;
    Ok(Gauges::assemble(now, pending, acks, outbox))
}

/// `q`'s page of tasks.
pub(crate) fn task_page(c: &Connection, q: &TaskQuery) -> Result<TaskPage> {
    let (select, count, args) = tasks_sql(q);
    let total = if q.count {
        let filters = rusqlite::params_from_iter(args[..args.len() - 2].iter());
        let n: i64 = c.prepare_cached(&count).and_then(|mut s| s.query_row(filters, |r| r.get(0))).map_err(unavailable)?;
        Some(n as u64)
    } else {
        None
    };
    let items = tasks(c, &select, rusqlite::params_from_iter(args.iter()))?;
    Ok(TaskPage { items, total })
}

/// Reads running at once, each on its own connection: bounded so that a burst of reads (the
/// scheduler firing thousands of timers) queues instead of opening a connection, a page cache
/// and a blocking thread per read.
const READERS: usize = 8;
/// Idle connections kept for the next reads.
const KEPT: usize = 16;

/// Read-only connections to one database file, opened as reads need them.
pub(crate) struct Readers {
    path: PathBuf,
    idle: Arc<Mutex<Vec<Connection>>>,
    permits: Arc<Semaphore>,
}

impl Readers {
    pub(crate) fn new(path: PathBuf) -> Readers {
        Readers { path, idle: Arc::new(Mutex::new(Vec::new())), permits: Arc::new(Semaphore::new(READERS)) }
    }

    /// Runs `f` on a pooled read connection on the blocking thread pool.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let idle = self.idle.clone();
        let path = self.path.clone();
        let permit = self.permits.clone().acquire_owned().await.map_err(unavailable)?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = idle.lock().map_err(unavailable)?.pop();
            let conn = match conn {
                Some(c) => c,
                None => open_read_only(&path).map_err(unavailable)?,
            };
            let out = f(&conn);
            if let Ok(mut idle) = idle.lock()
                && idle.len() < KEPT
            {
                idle.push(conn);
            }
            out
        })
        .await
        .map_err(unavailable)?
    }
}

/// A read-only connection that waits up to five seconds for a lock.
pub(crate) fn open_read_only(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

pub(crate) fn policy(c: &Connection, hash: &str) -> Result<Option<PolicyRecord>> {
    let row: Option<(String, String, i64, String)> = c
        .prepare_cached("SELECT hash, id, version, source FROM policies WHERE hash = ?1")
        .and_then(|mut s| s.query_row(params![hash], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).optional())
        .map_err(unavailable)?;
    row.map(|(hash, id, version, source)| PolicyRecord::from_row(hash, id, version, &source)).transpose()
}

pub(crate) fn session(c: &Connection, id_hash: &str, now_ms: i64) -> Result<Option<signoff_store::Session>> {
    let row: Option<(String, String, String, i64, i64)> = c
        .prepare_cached("SELECT id_hash, user_id, csrf, created_at, expires_at FROM sessions WHERE id_hash = ?1 AND expires_at > ?2")
        .and_then(|mut s| s.query_row(params![id_hash, now_ms], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))).optional())
        .map_err(unavailable)?;
    row.map(|(h, u, c, start, end)| signoff_store::rows::session(h, u, c, start, end)).transpose()
}

pub(crate) fn policies(c: &Connection) -> Result<Vec<PolicyRecord>> {
    let mut stmt = c.prepare_cached("SELECT hash, id, version, source FROM policies ORDER BY hash").map_err(unavailable)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, String>(3)?)))
        .map_err(unavailable)?;
    rows.map(|r| {
        let (hash, id, version, source) = r.map_err(unavailable)?;
        PolicyRecord::from_row(hash, id, version, &source)
    })
    .collect()
}

/// A request's current state.
pub(crate) fn state(c: &Connection, id: &str) -> Result<Option<RequestState>> {
    let text: Option<String> = c
        .prepare_cached("SELECT state FROM requests WHERE id = ?1")
        .and_then(|mut s| s.query_row(params![id], |r| r.get(0)).optional())
        .map_err(unavailable)?;
    text.map(|t| signoff_store::decode(&t)).transpose()
}

pub(crate) fn event_bodies(c: &Connection, id: &str) -> Result<Vec<String>> {
    let mut stmt = c.prepare_cached("SELECT body FROM events WHERE request_id = ?1 ORDER BY seq").map_err(unavailable)?;
    let rows = stmt.query_map(params![id], |r| r.get::<_, String>(0)).map_err(unavailable)?;
    rows.map(|r| r.map_err(unavailable)).collect()
}

pub(crate) fn lineage(c: &Connection, lineage: &str) -> Result<Vec<RequestState>> {
    let mut stmt = c.prepare_cached("SELECT state FROM requests WHERE lineage = ?1 ORDER BY n").map_err(unavailable)?;
    let rows = stmt.query_map(params![lineage], |r| r.get::<_, String>(0)).map_err(unavailable)?;
    rows.map(|r| signoff_store::decode(&r.map_err(unavailable)?)).collect()
}

pub(crate) fn list(c: &Connection, q: &ListQuery) -> Result<Page> {
    let (sql, args) = signoff_store::sql::list_query(q, |k| format!("?{k}"))?;
    let args = args.into_iter().map(sql_value);
    let mut stmt = c.prepare_cached(&sql).map_err(unavailable)?;
    // Stepped lazily: rows past the page's byte budget are never read.
    let rows = stmt
        .query_map(rusqlite::params_from_iter(args), |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .map_err(unavailable)?;
    signoff_store::sql::list_page(q, rows.map(|r| r.map_err(unavailable)))
}

/// The tasks `sql` selects (`approver, body`), as `tasks_sql` does.
fn tasks(c: &Connection, sql: &str, args: impl rusqlite::Params) -> Result<Vec<Task>> {
    let mut stmt = c.prepare_cached(sql).map_err(unavailable)?;
    let rows = stmt.query_map(args, |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).map_err(unavailable)?;
    rows.map(|r| r.map_err(unavailable).and_then(|(approver, body)| signoff_store::task_row(approver, &body))).collect()
}

/// What the idempotency key `scope`/`key`, if used, says about a call with `fingerprint`.
pub(crate) fn key_match(c: &Connection, scope: &str, key: &str, fingerprint: &str) -> Result<Option<KeyMatch>> {
    let found: Option<(String, i64, String)> = c
        .prepare_cached("SELECT fingerprint, status, body FROM idempotency WHERE scope = ?1 AND key = ?2")
        .and_then(|mut s| s.query_row(params![scope, key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional())
        .map_err(unavailable)?;
    Ok(found.map(|(fp, status, body)| KeyMatch::of(&fp, fingerprint, status as u16, body)))
}

/// A list query's argument as SQLite binds it.
fn sql_value(arg: signoff_store::sql::SqlArg) -> rusqlite::types::Value {
    match arg {
        signoff_store::sql::SqlArg::Int(n) => rusqlite::types::Value::Integer(n),
        signoff_store::sql::SqlArg::Text(t) => rusqlite::types::Value::Text(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SqliteStore;

    /// What SQLite plans for `sql` with `args`, one line per step.
    fn plan(conn: &Connection, sql: &str, args: &[rusqlite::types::Value]) -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), |r| r.get::<_, String>(3)).unwrap();
        rows.map(|r| r.unwrap()).collect::<Vec<_>>().join("\n")
    }

    /// The inbox and the approver's and a participant's lists read an index in the order they
    /// answer in: no sort of all of a person's rows, no list built first (which made an inbox
    /// of 181,000 tasks cost half a second).
    #[test]
    fn inbox_and_lists_are_served_in_index_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.db");
        drop(SqliteStore::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < 20000)
             INSERT INTO requests (n, id, status, policy_id, requester, created_at, updated_at, version, state)
                 SELECT i, 'req_' || i, 'pending', 'p', 'alice', '', '', 1, '{}' FROM k;
             INSERT INTO tasks (approver, request_n, step_id, due_at, body)
                 SELECT 'mark', n, 'review', CASE WHEN n % 10 = 0 THEN NULL ELSE n * 7 % 1000 END, '{}' FROM requests;
             INSERT INTO participants (user_id, request_n) SELECT 'mark', n FROM requests;
             ANALYZE;",
        )
        .unwrap();
        let mut page = TaskQuery { approver: Some("mark".into()), limit: 100, offset: 200, ..Default::default() };
        let (select, _, args) = tasks_sql(&page);
        let inbox = plan(&conn, &select, &args);
        assert!(inbox.contains("tasks_inbox") && !inbox.contains("TEMP B-TREE"), "{inbox}");
        page.approver = None;
        let (select, _, args) = tasks_sql(&page);
        let everyone = plan(&conn, &select, &args);
        assert!(everyone.contains("tasks_due") && !everyone.contains("TEMP B-TREE"), "{everyone}");
        for q in [
            ListQuery { approver: Some("mark".into()), visible_to: Some("mark".into()), limit: 50, ..Default::default() },
            ListQuery { approver: Some("mark".into()), status: Some(signoff_engine::RequestStatus::Pending), limit: 50, cursor: Some("900".into()), ..Default::default() },
            ListQuery { visible_to: Some("mark".into()), limit: 50, ..Default::default() },
            ListQuery { limit: 50, ..Default::default() },
        ] {
            let (sql, args) = signoff_store::sql::list_query(&q, |k| format!("?{k}")).unwrap();
            let args: Vec<rusqlite::types::Value> = args.into_iter().map(sql_value).collect();
            let p = plan(&conn, &sql, &args);
            assert!(!p.contains("TEMP B-TREE") && !p.contains("LIST SUBQUERY"), "{q:?}:\n{p}");
            let driven = q.approver.is_some() || q.visible_to.is_some();
            assert!(!driven || p.starts_with("SEARCH d USING PRIMARY KEY"), "{q:?}:\n{p}");
        }
    }
}

pub(crate) fn directory_changes(c: &Connection, after: u64) -> Result<Vec<(u64, String)>> {
    let mut stmt = c.prepare_cached("SELECT seq, body FROM directory_changes WHERE seq > ?1 ORDER BY seq").map_err(unavailable)?;
    let rows = stmt.query_map(params![after as i64], |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?))).map_err(unavailable)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(unavailable)
}
