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
"#, r#"
-- Timers are claimed for a lease, like outbox rows, so one instance fires each.
ALTER TABLE timers ADD COLUMN claimed_until BIGINT;
-- When the scheduler should look next: a claim's end, else the due time.
CREATE INDEX timers_next ON timers ((COALESCE(claimed_until, due_at)));

-- Room on each page for the next version of its rows: an update that changes no indexed
-- column then stays on the page and leaves the indexes alone (a HOT update).
ALTER TABLE requests SET (fillfactor = 60);
ALTER TABLE timers SET (fillfactor = 70);

-- One commit in one round trip: idempotency key, version check, events, inbox tasks,
-- participants, outbox and timer (the caller notifies the other instances). Answers 'ok', 'conflict' (another
-- commit changed the request first; nothing is written) or 'key_used' (nothing is written).
-- It raises no error for either, so commits of many callers can share a transaction.
CREATE FUNCTION signoff_commit(
    p_id TEXT, p_expected BIGINT, p_version BIGINT, p_status TEXT, p_policy_id TEXT, p_requester TEXT,
    p_subject TEXT, p_lineage TEXT, p_created_at TEXT, p_updated_at TEXT, p_state TEXT,
    e_seq BIGINT[], e_type TEXT[], e_at TEXT[], e_body TEXT[],
    t_approver TEXT[], t_step TEXT[], t_due BIGINT[], t_body TEXT[],
    p_participants TEXT[],
    o_id TEXT[], o_request TEXT[], o_channel TEXT[], o_destination TEXT[], o_kind TEXT[], o_payload TEXT[],
    o_coalesce TEXT[], o_next BIGINT[], o_created TEXT[],
    p_timer BIGINT, p_tasks_changed BOOLEAN, p_timer_changed BOOLEAN,
    i_scope TEXT, i_key TEXT, i_fingerprint TEXT, i_status INTEGER, i_body TEXT, i_at TEXT
) RETURNS TEXT LANGUAGE plpgsql AS $$
DECLARE
    req_n BIGINT;
BEGIN
    IF i_scope IS NOT NULL THEN
        INSERT INTO idempotency (scope, key, fingerprint, status, body, created_at)
        VALUES (i_scope, i_key, i_fingerprint, i_status, i_body, i_at) ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            RETURN 'key_used';
        END IF;
    END IF;
    IF p_expected = 0 THEN
        INSERT INTO requests (id, status, policy_id, requester, subject, lineage, created_at, updated_at, version, state)
        VALUES (p_id, p_status, p_policy_id, p_requester, p_subject, p_lineage, p_created_at, p_updated_at, p_version, p_state)
        ON CONFLICT (id) DO NOTHING RETURNING n INTO req_n;
    ELSE
        UPDATE requests SET status = p_status, updated_at = p_updated_at, version = p_version, state = p_state
        WHERE id = p_id AND version = p_expected RETURNING n INTO req_n;
    END IF;
    IF req_n IS NULL THEN
        IF i_scope IS NOT NULL THEN
            DELETE FROM idempotency WHERE scope = i_scope AND key = i_key;
        END IF;
        RETURN 'conflict';
    END IF;
    INSERT INTO events (request_id, seq, type, at, body)
    SELECT p_id, x.seq, x.type, x.at, x.body FROM unnest(e_seq, e_type, e_at, e_body) AS x(seq, type, at, body);
    -- (Each statement costs even when it has nothing to do: skip those. The caller says
    -- whether the open tasks or the next timer changed, and passes only new participants.)
    IF p_expected <> 0 AND p_tasks_changed THEN
        DELETE FROM tasks WHERE request_n = req_n;
    END IF;
    IF p_tasks_changed AND cardinality(t_approver) > 0 THEN
        INSERT INTO tasks (approver, request_n, step_id, due_at, body)
        SELECT x.approver, req_n, x.step, x.due, x.body FROM unnest(t_approver, t_step, t_due, t_body) AS x(approver, step, due, body)
        ON CONFLICT DO NOTHING;
    END IF;
    IF cardinality(p_participants) > 0 THEN
        INSERT INTO participants (user_id, request_n) SELECT u, req_n FROM unnest(p_participants) AS u ON CONFLICT DO NOTHING;
    END IF;
    IF cardinality(o_id) > 0 THEN
        INSERT INTO outbox (id, request_id, channel, destination, kind, payload, coalesce_key, status, next_attempt_at, created_at)
        SELECT x.id, x.request, x.channel, x.destination, x.kind, x.payload, x.coalesce, 'pending', x.next, x.created
        FROM unnest(o_id, o_request, o_channel, o_destination, o_kind, o_payload, o_coalesce, o_next, o_created)
            AS x(id, request, channel, destination, kind, payload, coalesce, next, created)
        ON CONFLICT (coalesce_key) WHERE status = 'pending'
        DO UPDATE SET payload = EXCLUDED.payload, revision = outbox.revision + 1;
    END IF;
    IF NOT p_timer_changed THEN
        NULL;
    ELSIF p_timer IS NULL THEN
        IF p_expected <> 0 THEN
            DELETE FROM timers WHERE request_n = req_n;
        END IF;
    ELSE
        INSERT INTO timers (request_n, due_at) VALUES (req_n, p_timer)
        ON CONFLICT (request_n) DO UPDATE SET due_at = EXCLUDED.due_at, claimed_until = NULL;
    END IF;
    RETURN 'ok';
END
$$;
"#, r#"
-- A group of commits in one call: each statement below writes the rows of every commit in the
-- group at once, where `signoff_commit` ran them once per commit (a statement's fixed cost, not
-- its rows, was most of the database's work). Answers one verdict per commit, in order: 'ok',
-- 'conflict' or 'key_used', as `signoff_commit` does; a commit that is not 'ok' writes nothing.
-- The arrays `c_*` and `i_*` hold one element per commit; events, tasks, participants and
-- outbox rows are flattened, each row naming its commit (1-based) in `*_commit`. It notifies
-- the other instances too, so that a group is one statement (no BEGIN and COMMIT round trips).
-- (`signoff_commit` stays for instances of the previous release during a rolling upgrade.)
CREATE FUNCTION signoff_commit_group(
    c_id TEXT[], c_expected BIGINT[], c_version BIGINT[], c_status TEXT[], c_policy_id TEXT[], c_requester TEXT[],
    c_subject TEXT[], c_lineage TEXT[], c_created_at TEXT[], c_updated_at TEXT[], c_state TEXT[],
    c_tasks_changed BOOLEAN[], c_timer_changed BOOLEAN[], c_timer BIGINT[],
    i_scope TEXT[], i_key TEXT[], i_fingerprint TEXT[], i_status INTEGER[], i_body TEXT[], i_at TEXT[],
    e_commit INTEGER[], e_seq BIGINT[], e_type TEXT[], e_at TEXT[], e_body TEXT[],
    t_commit INTEGER[], t_approver TEXT[], t_step TEXT[], t_due BIGINT[], t_body TEXT[],
    p_commit INTEGER[], p_user TEXT[],
    o_commit INTEGER[], o_id TEXT[], o_request TEXT[], o_channel TEXT[], o_destination TEXT[], o_kind TEXT[],
    o_payload TEXT[], o_coalesce TEXT[], o_next BIGINT[], o_created TEXT[],
    notify_channel TEXT, notify_payloads TEXT[]
) RETURNS TEXT[] LANGUAGE plpgsql AS $$
DECLARE
    total INTEGER := cardinality(c_id);
    verdict TEXT[] := array_fill('conflict'::TEXT, ARRAY[total]);
    -- May write: its key was new, or it has none.
    go BOOLEAN[] := array_fill(TRUE, ARRAY[total]);
    -- The request row each written commit wrote.
    req_n BIGINT[] := array_fill(NULL::BIGINT, ARRAY[total]);
    found_i INTEGER[];
    found_n BIGINT[];
    found_id TEXT[];
    stale_tasks BIGINT[] := '{}';
    timers_gone BIGINT[] := '{}';
    timers_set INTEGER[] := '{}';
    i INTEGER;
    k INTEGER;
BEGIN
    IF total = 0 THEN
        RETURN verdict;
    END IF;
    -- Keys one by one: a group may hold one key twice (a caller's retry racing its first try).
    FOR i IN 1..total LOOP
        IF i_scope[i] IS NOT NULL THEN
            INSERT INTO idempotency (scope, key, fingerprint, status, body, created_at)
            VALUES (i_scope[i], i_key[i], i_fingerprint[i], i_status[i], i_body[i], i_at[i]) ON CONFLICT DO NOTHING;
            IF NOT FOUND THEN
                verdict[i] := 'key_used';
                go[i] := FALSE;
            END IF;
        END IF;
    END LOOP;
    -- The version check. Two commits on one request (both decided on one version) update its
    -- row once: the other is a conflict.
    WITH u AS (
        UPDATE requests r SET status = x.status, updated_at = x.updated_at, version = x.version, state = x.state
        FROM unnest(c_id, c_expected, c_version, c_status, c_updated_at, c_state)
            WITH ORDINALITY AS x(id, expected, version, status, updated_at, state, i)
        WHERE x.expected <> 0 AND go[x.i] AND r.id = x.id AND r.version = x.expected
        RETURNING x.i, r.n
    )
    SELECT array_agg(u.i::INTEGER), array_agg(u.n) INTO found_i, found_n FROM u;
    FOR k IN 1..coalesce(cardinality(found_i), 0) LOOP
        req_n[found_i[k]] := found_n[k];
    END LOOP;
    WITH c AS (
        INSERT INTO requests (id, status, policy_id, requester, subject, lineage, created_at, updated_at, version, state)
        SELECT x.id, x.status, x.policy_id, x.requester, x.subject, x.lineage, x.created_at, x.updated_at, x.version, x.state
        FROM unnest(c_id, c_expected, c_status, c_policy_id, c_requester, c_subject, c_lineage, c_created_at, c_updated_at, c_version, c_state)
            WITH ORDINALITY AS x(id, expected, status, policy_id, requester, subject, lineage, created_at, updated_at, version, state, i)
        WHERE x.expected = 0 AND go[x.i]
        ORDER BY x.i
        ON CONFLICT (id) DO NOTHING RETURNING requests.id, requests.n
    )
    SELECT array_agg(c.id), array_agg(c.n) INTO found_id, found_n FROM c;
    FOR i IN 1..total LOOP
        IF c_expected[i] = 0 AND go[i] THEN
            k := array_position(found_id, c_id[i]);
            IF k IS NOT NULL THEN
                req_n[i] := found_n[k];
                found_id[k] := NULL;
            END IF;
        END IF;
        IF req_n[i] IS NOT NULL THEN
            verdict[i] := 'ok';
            IF c_expected[i] <> 0 AND c_tasks_changed[i] THEN
                stale_tasks := stale_tasks || req_n[i];
            END IF;
            IF c_timer_changed[i] AND c_timer[i] IS NOT NULL THEN
                timers_set := timers_set || i;
            ELSIF c_timer_changed[i] AND c_expected[i] <> 0 THEN
                timers_gone := timers_gone || req_n[i];
            END IF;
        ELSIF go[i] AND i_scope[i] IS NOT NULL THEN
            -- A conflict keeps nothing, its key included.
            DELETE FROM idempotency WHERE scope = i_scope[i] AND key = i_key[i];
        END IF;
    END LOOP;
    INSERT INTO events (request_id, seq, type, at, body)
    SELECT c_id[x.c], x.seq, x.type, x.at, x.body
    FROM unnest(e_commit, e_seq, e_type, e_at, e_body) AS x(c, seq, type, at, body)
    WHERE req_n[x.c] IS NOT NULL;
    -- (Each statement costs even when it has nothing to do: skip those.)
    IF cardinality(stale_tasks) > 0 THEN
        DELETE FROM tasks WHERE request_n = ANY (stale_tasks);
    END IF;
    IF cardinality(t_commit) > 0 THEN
        INSERT INTO tasks (approver, request_n, step_id, due_at, body)
        SELECT x.approver, req_n[x.c], x.step, x.due, x.body
        FROM unnest(t_commit, t_approver, t_step, t_due, t_body) AS x(c, approver, step, due, body)
        WHERE req_n[x.c] IS NOT NULL
        ON CONFLICT DO NOTHING;
    END IF;
    IF cardinality(p_commit) > 0 THEN
        INSERT INTO participants (user_id, request_n)
        SELECT x.u, req_n[x.c] FROM unnest(p_commit, p_user) AS x(c, u)
        WHERE req_n[x.c] IS NOT NULL
        ON CONFLICT DO NOTHING;
    END IF;
    IF cardinality(o_commit) > 0 THEN
        -- (Coalescing keys name one request, and one commit per request is written.)
        INSERT INTO outbox (id, request_id, channel, destination, kind, payload, coalesce_key, status, next_attempt_at, created_at)
        SELECT x.id, x.request, x.channel, x.destination, x.kind, x.payload, x.coalesce, 'pending', x.next, x.created
        FROM unnest(o_commit, o_id, o_request, o_channel, o_destination, o_kind, o_payload, o_coalesce, o_next, o_created)
            AS x(c, id, request, channel, destination, kind, payload, coalesce, next, created)
        WHERE req_n[x.c] IS NOT NULL
        ON CONFLICT (coalesce_key) WHERE status = 'pending'
        DO UPDATE SET payload = EXCLUDED.payload, revision = outbox.revision + 1;
    END IF;
    IF cardinality(timers_gone) > 0 THEN
        DELETE FROM timers WHERE request_n = ANY (timers_gone);
    END IF;
    IF cardinality(timers_set) > 0 THEN
        INSERT INTO timers (request_n, due_at)
        SELECT req_n[x.i], c_timer[x.i] FROM unnest(timers_set) AS x(i)
        ON CONFLICT (request_n) DO UPDATE SET due_at = EXCLUDED.due_at, claimed_until = NULL;
    END IF;
    -- Delivered to every listening instance when (and only if) the transaction commits.
    PERFORM pg_notify(notify_channel, x) FROM unnest(notify_payloads) AS x;
    RETURN verdict;
END
$$;
"#, r#"
-- The inbox reads one person's tasks soonest due first (NULLS LAST is the ascending default):
-- this index holds them in that order, so the inbox costs the same for 20 tasks or 200,000.
-- Step ids compare byte by byte, as in SQLite, so both stores break ties alike.
CREATE INDEX tasks_inbox ON tasks (approver, due_at, request_n, step_id COLLATE "C");
"#, r#"
-- The admins' view of every open task, soonest due first (undated last), in index order.
CREATE INDEX tasks_due ON tasks (due_at, request_n, step_id COLLATE "C", approver COLLATE "C");
"#, r#"
-- Web sessions: the sha256 of each cookie's secret, whose it is, and until when (unix ms).
CREATE TABLE sessions (
    id_hash    TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    csrf       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_expires ON sessions (expires_at);
"#, r#"
-- The W3C traceparent of the work that queued a notification, so that its delivery joins
-- that trace (null with tracing off).
ALTER TABLE outbox ADD COLUMN trace TEXT;

-- `signoff_commit_group` with each new outbox row's trace (`o_trace`, beside `o_id`; empty
-- when no row has one, which costs nothing). The group is written as before, then the traces
-- of the rows it inserted are set, in the same statement. (A row coalesced into a pending one
-- keeps that one's trace.) The function without `o_trace` stays for the previous release.
CREATE FUNCTION signoff_commit_group(
    c_id TEXT[], c_expected BIGINT[], c_version BIGINT[], c_status TEXT[], c_policy_id TEXT[], c_requester TEXT[],
    c_subject TEXT[], c_lineage TEXT[], c_created_at TEXT[], c_updated_at TEXT[], c_state TEXT[],
    c_tasks_changed BOOLEAN[], c_timer_changed BOOLEAN[], c_timer BIGINT[],
    i_scope TEXT[], i_key TEXT[], i_fingerprint TEXT[], i_status INTEGER[], i_body TEXT[], i_at TEXT[],
    e_commit INTEGER[], e_seq BIGINT[], e_type TEXT[], e_at TEXT[], e_body TEXT[],
    t_commit INTEGER[], t_approver TEXT[], t_step TEXT[], t_due BIGINT[], t_body TEXT[],
    p_commit INTEGER[], p_user TEXT[],
    o_commit INTEGER[], o_id TEXT[], o_request TEXT[], o_channel TEXT[], o_destination TEXT[], o_kind TEXT[],
    o_payload TEXT[], o_coalesce TEXT[], o_next BIGINT[], o_created TEXT[],
    notify_channel TEXT, notify_payloads TEXT[], o_trace TEXT[]
) RETURNS TEXT[] LANGUAGE plpgsql AS $$
DECLARE
    verdict TEXT[];
BEGIN
    verdict := signoff_commit_group(
        c_id, c_expected, c_version, c_status, c_policy_id, c_requester,
        c_subject, c_lineage, c_created_at, c_updated_at, c_state,
        c_tasks_changed, c_timer_changed, c_timer,
        i_scope, i_key, i_fingerprint, i_status, i_body, i_at,
        e_commit, e_seq, e_type, e_at, e_body,
        t_commit, t_approver, t_step, t_due, t_body,
        p_commit, p_user,
        o_commit, o_id, o_request, o_channel, o_destination, o_kind,
        o_payload, o_coalesce, o_next, o_created,
        notify_channel, notify_payloads);
    IF cardinality(o_trace) > 0 THEN
        UPDATE outbox o SET trace = x.trace
        FROM unnest(o_id, o_commit, o_trace) AS x(id, c, trace)
        WHERE x.trace IS NOT NULL AND verdict[x.c] = 'ok' AND o.id = x.id;
    END IF;
    RETURN verdict;
END
$$;
"#, r#"
-- The audit log (signoff_store::log). Every event written is queued by the trigger (whichever
-- function or release wrote it); sequencing, one instance at a time, moves queued events into
-- the Merkle tree: each leaf's place and hash, and the hash of each complete subtree at every
-- fourth level.
CREATE TABLE audit_queue (
    n          BIGSERIAL PRIMARY KEY,
    request_id TEXT NOT NULL,
    seq        BIGINT NOT NULL
);
CREATE TABLE audit_leaves (
    idx        BIGINT PRIMARY KEY,
    request_id TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    hash       BYTEA NOT NULL,
    UNIQUE (request_id, seq)
);
CREATE TABLE audit_nodes (
    level SMALLINT NOT NULL,
    idx   BIGINT NOT NULL,
    hash  BYTEA NOT NULL,
    PRIMARY KEY (level, idx)
);
CREATE FUNCTION signoff_queue_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_queue (request_id, seq) SELECT request_id, seq FROM added ORDER BY request_id, seq;
    RETURN NULL;
END
$$;
CREATE TRIGGER events_audit AFTER INSERT ON events REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION signoff_queue_audit();
-- What was written before the log existed joins it oldest request first.
INSERT INTO audit_queue (request_id, seq)
SELECT e.request_id, e.seq FROM events e JOIN requests r ON r.id = e.request_id ORDER BY r.n, e.seq;
"#, r#"
-- Requests retention moved to an archive file and removed; their leaves stay in the log.
CREATE TABLE purged (
    request_id TEXT PRIMARY KEY,
    archive    TEXT NOT NULL,
    at         TEXT NOT NULL
);
CREATE INDEX outbox_done ON outbox (created_at) WHERE status <> 'pending';
CREATE INDEX idempotency_created ON idempotency (created_at);
"#, r#"
-- The analytics projection (signoff_insights): each request's facts, folded from the audit
-- log by a follower, and how far the follower has read.
CREATE TABLE insight_facts (
    request_id TEXT PRIMARY KEY,
    cursor     BIGINT NOT NULL,
    body       TEXT NOT NULL
);
CREATE INDEX insight_facts_cursor ON insight_facts (cursor, request_id);
CREATE TABLE insight_cursor (
    one    INTEGER PRIMARY KEY CHECK (one = 1),
    cursor BIGINT NOT NULL
);
"#, r#"
-- Rate-limit buckets every instance draws from. Unlogged: losing them in a crash only refills
-- them, and writing them skips the WAL.
CREATE UNLOGGED TABLE rate_buckets (
    key    TEXT PRIMARY KEY,
    tokens DOUBLE PRECISION NOT NULL,
    at     BIGINT NOT NULL
);
CREATE INDEX rate_buckets_at ON rate_buckets (at);
"#, r#"
-- How many tokens the last take of a bucket got (an instance takes several at once and hands
-- them out itself, so that a busy bucket is not one row every call waits on).
ALTER TABLE rate_buckets ADD COLUMN granted DOUBLE PRECISION NOT NULL DEFAULT 0;
"#, r#"
-- Changes to the directory made through the API, in order (each hash-chained to the last).
CREATE TABLE directory_changes (
    seq  BIGINT PRIMARY KEY,
    body TEXT NOT NULL
);
"#, r#"
-- Directory changes are leaves of the audit log too, under the name `directory`
-- (signoff_store::log::DIRECTORY): queued as they are written; those made before join it now.
CREATE FUNCTION signoff_queue_directory_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_queue (request_id, seq) SELECT 'directory', seq FROM added ORDER BY seq;
    RETURN NULL;
END
$$;
CREATE TRIGGER directory_changes_audit AFTER INSERT ON directory_changes REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION signoff_queue_directory_audit();
INSERT INTO audit_queue (request_id, seq) SELECT 'directory', seq FROM directory_changes ORDER BY seq;
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
