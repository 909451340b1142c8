//! The PostgreSQL schema and its migrations. Instances starting together take an advisory lock
//! first, so exactly one of them migrates; the others find the work done.

use tokio_postgres::Client;

/// Any fixed number: the lock all signoff instances take around migrations.
const MIGRATION_LOCK: i64 = 0x5167_6e6f_6666;

const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE requests (
    n          BIGSERIAL PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    status     TEXT NOT NULL,
    policy_id  TEXT NOT NULL,
    requester  TEXT NOT NULL,
    subject    TEXT,
    lineage    TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    version    BIGINT NOT NULL,
    state      TEXT NOT NULL
);
CREATE INDEX requests_status ON requests (status, n);
CREATE INDEX requests_policy ON requests (policy_id, n);
CREATE INDEX requests_requester ON requests (requester, n);
CREATE INDEX requests_subject ON requests (subject, n);
CREATE INDEX requests_lineage ON requests (lineage, n);

CREATE TABLE events (
    request_id TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    type       TEXT NOT NULL,
    at         TEXT NOT NULL,
    body       TEXT NOT NULL,
    PRIMARY KEY (request_id, seq)
);

CREATE TABLE tasks (
    approver  TEXT NOT NULL,
    request_n BIGINT NOT NULL,
    step_id   TEXT NOT NULL,
    due_at    BIGINT,
    body      TEXT NOT NULL,
    PRIMARY KEY (approver, request_n, step_id)
);
CREATE INDEX tasks_request ON tasks (request_n);

CREATE TABLE participants (
    user_id   TEXT NOT NULL,
    request_n BIGINT NOT NULL,
    PRIMARY KEY (user_id, request_n)
);

CREATE TABLE idempotency (
    scope       TEXT NOT NULL,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status      INTEGER NOT NULL,
    body        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (scope, key)
);

CREATE TABLE policies (
    hash    TEXT PRIMARY KEY,
    id      TEXT NOT NULL,
    version BIGINT NOT NULL,
    source  TEXT NOT NULL
);

CREATE TABLE timers (
    request_n BIGINT PRIMARY KEY,
    due_at    BIGINT NOT NULL
);
CREATE INDEX timers_due ON timers (due_at);

CREATE TABLE outbox (
    n               BIGSERIAL PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    request_id      TEXT NOT NULL,
    channel         TEXT NOT NULL,
    destination     TEXT NOT NULL,
    kind            TEXT NOT NULL,
    payload         TEXT NOT NULL,
    coalesce_key    TEXT,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    revision        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    last_error      TEXT,
    result          TEXT,
    created_at      TEXT NOT NULL,
    delivered_at    TEXT,
    claimed_until   BIGINT
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE status = 'pending' AND claimed_until IS NULL;
CREATE INDEX outbox_claimed ON outbox (claimed_until) WHERE claimed_until IS NOT NULL;
CREATE INDEX outbox_request ON outbox (request_id, n);
CREATE UNIQUE INDEX outbox_coalesce ON outbox (coalesce_key) WHERE status = 'pending';

CREATE TABLE outbox_attempts (
    notification_n BIGINT NOT NULL,
    seq            INTEGER NOT NULL,
    body           TEXT NOT NULL,
    PRIMARY KEY (notification_n, seq)
);

CREATE TABLE used_keys (
    key TEXT PRIMARY KEY,
    at  BIGINT NOT NULL
);
CREATE INDEX used_keys_at ON used_keys (at);
"#];

pub async fn migrate(client: &mut Client) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS signoff_migrations (version INTEGER PRIMARY KEY)").await?;
    let done: i32 = tx.query_one("SELECT COALESCE(MAX(version), 0) FROM signoff_migrations", &[]).await?.get(0);
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done as usize) {
        tx.batch_execute(sql).await?;
        tx.execute("INSERT INTO signoff_migrations (version) VALUES ($1)", &[&(i as i32 + 1)]).await?;
    }
    tx.commit().await
}
