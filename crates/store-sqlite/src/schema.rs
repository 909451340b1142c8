//! The SQLite schema and its migrations, tracked with `PRAGMA user_version`: each entry of
//! `MIGRATIONS` runs once, in order, inside one transaction.

use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE requests (
    n          INTEGER PRIMARY KEY,          -- insertion order: newest first, and the list cursor
    id         TEXT NOT NULL UNIQUE,
    status     TEXT NOT NULL,
    policy_id  TEXT NOT NULL,
    requester  TEXT NOT NULL,
    subject    TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    version    INTEGER NOT NULL,
    state      TEXT NOT NULL                 -- the fold of the events, as JSON
);
CREATE INDEX requests_status ON requests (status, n);
CREATE INDEX requests_policy ON requests (policy_id, n);
CREATE INDEX requests_requester ON requests (requester, n);
CREATE INDEX requests_subject ON requests (subject, n);

CREATE TABLE events (
    request_id TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    type       TEXT NOT NULL,
    at         TEXT NOT NULL,
    body       TEXT NOT NULL,                -- the whole event, hash included
    PRIMARY KEY (request_id, seq)
) WITHOUT ROWID;

-- Open approver slots, rebuilt from the state on every commit of a request.
CREATE TABLE tasks (
    approver  TEXT NOT NULL,
    request_n INTEGER NOT NULL,
    step_id   TEXT NOT NULL,
    due_at    INTEGER,                      -- unix milliseconds, for ordering
    body      TEXT NOT NULL,
    PRIMARY KEY (approver, request_n, step_id)
) WITHOUT ROWID;
CREATE INDEX tasks_request ON tasks (request_n);

-- Who may see a request: its requester and everyone ever on its plan.
CREATE TABLE participants (
    user_id   TEXT NOT NULL,
    request_n INTEGER NOT NULL,
    PRIMARY KEY (user_id, request_n)
) WITHOUT ROWID;

CREATE TABLE idempotency (
    scope       TEXT NOT NULL,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status      INTEGER NOT NULL,
    body        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;

CREATE TABLE policies (
    hash    TEXT PRIMARY KEY,
    id      TEXT NOT NULL,
    version INTEGER NOT NULL,
    source  TEXT NOT NULL
);
"#, r#"
ALTER TABLE requests ADD COLUMN lineage TEXT;
CREATE INDEX requests_lineage ON requests (lineage, n);

-- The earliest pending timer of each open request; the scheduler reads only due rows.
CREATE TABLE timers (
    request_n INTEGER PRIMARY KEY,
    due_at    INTEGER NOT NULL               -- unix milliseconds
);
CREATE INDEX timers_due ON timers (due_at);
"#, r#"
-- The outbox: notifications written with the events that call for them, delivered later.
CREATE TABLE outbox (
    n               INTEGER PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    request_id      TEXT NOT NULL,
    channel         TEXT NOT NULL,
    destination     TEXT NOT NULL,
    kind            TEXT NOT NULL,
    payload         TEXT NOT NULL,
    coalesce_key    TEXT,
    status          TEXT NOT NULL,          -- pending | delivered | failed
    attempts        INTEGER NOT NULL DEFAULT 0,
    revision        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,                -- unix milliseconds, while pending
    last_error      TEXT,
    result          TEXT,
    created_at      TEXT NOT NULL,
    delivered_at    TEXT
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX outbox_request ON outbox (request_id, n);
CREATE UNIQUE INDEX outbox_coalesce ON outbox (coalesce_key) WHERE status = 'pending';

CREATE TABLE outbox_attempts (
    notification_n INTEGER NOT NULL,
    seq            INTEGER NOT NULL,
    body           TEXT NOT NULL,           -- the attempt, as JSON
    PRIMARY KEY (notification_n, seq)
) WITHOUT ROWID;
"#, r#"
-- A dispatcher claims the rows it is delivering until this time (unix ms).
ALTER TABLE outbox ADD COLUMN claimed_until INTEGER;
DROP INDEX outbox_due;
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE status = 'pending' AND claimed_until IS NULL;
CREATE INDEX outbox_claimed ON outbox (claimed_until) WHERE claimed_until IS NOT NULL;
"#, r#"
-- Keys that may be used once: replayed Slack signatures, spent email links.
CREATE TABLE used_keys (
    key TEXT PRIMARY KEY,
    at  INTEGER NOT NULL                    -- unix milliseconds
) WITHOUT ROWID;
CREATE INDEX used_keys_at ON used_keys (at);
"#, r#"
-- Version 6 once added `timers.claimed_until` and its index; claims now live in memory (one
-- process owns the file). Databases that ran it keep the unused column. The slot stays so that
-- the next migration is version 7 everywhere: as version 6 it would be skipped where the old
-- one ran.
"#, r#"
-- The inbox reads one person's tasks soonest due first (undated last): this index holds them
-- in that order, so the inbox costs the same for 20 tasks or 200,000.
CREATE INDEX tasks_inbox ON tasks (approver, due_at IS NULL, due_at, request_n, step_id);
"#, r#"
-- The admins' view of every open task, soonest due first (undated last), in index order.
CREATE INDEX tasks_due ON tasks (due_at IS NULL, due_at, request_n, step_id, approver);
"#, r#"
-- Web sessions: the sha256 of each cookie's secret, whose it is, and until when (unix ms).
CREATE TABLE sessions (
    id_hash    TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    csrf       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX sessions_expires ON sessions (expires_at);
"#, r#"
-- The W3C traceparent of the work that queued a notification, so that its delivery joins
-- that trace (null with tracing off).
ALTER TABLE outbox ADD COLUMN trace TEXT;
"#, r#"
-- The audit log (signoff_store::log). Every event written is queued, in commit order, by the
-- trigger; sequencing moves queued events into the Merkle tree: each leaf's place and hash,
-- and the hash of each complete subtree at every fourth level.
CREATE TABLE audit_queue (
    n          INTEGER PRIMARY KEY,
    request_id TEXT NOT NULL,
    seq        INTEGER NOT NULL
);
CREATE TABLE audit_leaves (
    idx        INTEGER PRIMARY KEY,
    request_id TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    hash       BLOB NOT NULL                -- the leaf hash
);
CREATE UNIQUE INDEX audit_leaves_event ON audit_leaves (request_id, seq);
CREATE TABLE audit_nodes (
    level INTEGER NOT NULL,
    idx   INTEGER NOT NULL,
    hash  BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TRIGGER events_audit AFTER INSERT ON events BEGIN
    INSERT INTO audit_queue (request_id, seq) VALUES (NEW.request_id, NEW.seq);
END;
-- What was written before the log existed joins it oldest request first.
INSERT INTO audit_queue (request_id, seq)
SELECT e.request_id, e.seq FROM events e JOIN requests r ON r.id = e.request_id ORDER BY r.n, e.seq;
"#, r#"
-- Requests retention moved to an archive file and removed; their leaves stay in the log.
CREATE TABLE purged (
    request_id TEXT PRIMARY KEY,
    archive    TEXT NOT NULL,
    at         TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX outbox_done ON outbox (created_at) WHERE status <> 'pending';
CREATE INDEX idempotency_created ON idempotency (created_at);
"#, r#"
-- The analytics projection (signoff_insights): each request's facts, folded from the audit
-- log by a follower, and how far the follower has read.
CREATE TABLE insight_facts (
    request_id TEXT PRIMARY KEY,
    cursor     INTEGER NOT NULL,             -- the log index these facts were folded up to
    body       TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX insight_facts_cursor ON insight_facts (cursor, request_id);
CREATE TABLE insight_cursor (
    one    INTEGER PRIMARY KEY CHECK (one = 1),
    cursor INTEGER NOT NULL
);
"#, r#"
-- Changes to the directory made through the API, in order (each hash-chained to the last).
CREATE TABLE directory_changes (
    seq  INTEGER PRIMARY KEY,
    body TEXT NOT NULL
);
"#, r#"
-- Directory changes are leaves of the audit log too, under the name `directory`
-- (signoff_store::log::DIRECTORY): queued as they are written; those made before join it now.
CREATE TRIGGER directory_changes_audit AFTER INSERT ON directory_changes BEGIN
    INSERT INTO audit_queue (request_id, seq) VALUES ('directory', NEW.seq);
END;
INSERT INTO audit_queue (request_id, seq) SELECT 'directory', seq FROM directory_changes ORDER BY seq;
"#];

pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let current: usize = conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Released databases are at version 6 or later (see the sixth migration): a new one must
    /// never be numbered at or below a version some database already has.
    #[test]
    fn numbering_continues_after_every_released_version() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version as usize, MIGRATIONS.len(), "a fresh database runs every migration");
        assert!(version >= 7);
        // A database from the release that added `timers.claimed_until` (its sixth migration)
        // takes every later migration.
        let mut old = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..5] {
            old.execute_batch(sql).unwrap();
        }
        old.execute_batch("ALTER TABLE timers ADD COLUMN claimed_until INTEGER; PRAGMA user_version = 6;").unwrap();
        migrate(&mut old).unwrap();
        let indexed: i64 = old.query_row("SELECT count(*) FROM sqlite_master WHERE name = 'tasks_inbox'", [], |r| r.get(0)).unwrap();
        assert_eq!(indexed, 1, "migration 7 ran");
    }
}
