//! The SQL of a commit, run by the writer inside its group's transaction: a caller's commits
//! are all checked (used keys, versions) before any is written, so they need no savepoint;
//! then each writes its request row, events, inbox tasks, participants, idempotency key,
//! outbox rows and timer.

use std::borrow::Cow;

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};
use signoff_engine::RequestState;
use signoff_store::{Commit, CommitOutcome, IdempotencyRecord, Outgoing, Result, due_millis, tasks_of};

use crate::{corrupt, read, unavailable};

/// Checks every commit first (used keys, versions), then writes them all: a group needs no
/// savepoint because nothing is written unless everything can be.
pub(crate) fn apply(tx: &Connection, commits: &[Commit]) -> Result<CommitOutcome> {
    let mut rows = Vec::with_capacity(commits.len());
    for c in commits {
        match check(tx, c)? {
            Ok(row) => rows.push(row),
            Err(outcome) => return Ok(outcome),
        }
    }
    for (c, row) in commits.iter().zip(rows) {
        write(tx, c, row)?;
    }
    Ok(CommitOutcome::Committed)
}

/// The request's row number if it exists (`None` to create it), or why the commit cannot apply.
fn check(tx: &Connection, c: &Commit) -> Result<std::result::Result<Option<i64>, CommitOutcome>> {
    if let Some(idem) = &c.idempotency
        && let Some(used) = read::key_match(tx, &idem.scope, &idem.key, &idem.fingerprint)?
    {
        return Ok(Err(CommitOutcome::KeyUsed(used)));
    }
    let current: Option<(i64, i64)> = tx
        .prepare_cached("SELECT n, version FROM requests WHERE id = ?1")
        .and_then(|mut s| s.query_row(params![c.state.id.as_str()], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .map_err(unavailable)?;
    Ok(match (current, c.expected_version) {
        (None, 0) => Ok(None),
        (Some((n, version)), expected) if expected != 0 && version as u64 == expected => Ok(Some(n)),
        _ => Err(CommitOutcome::VersionConflict),
    })
}

/// Writes a checked commit to the request at `row` (`None`: a new request).
fn write(tx: &Connection, c: &Commit, row: Option<i64>) -> Result<()> {
    let state = &c.state;
    let n = match row {
        None => insert_request(tx, state, &state_json(c)?)?,
        Some(n) => {
            update_request(tx, n, state, &state_json(c)?)?;
            n
        }
    };
    events(tx, c)?;
    tasks(tx, n, state)?;
    participants(tx, n, state)?;
    if let Some(idem) = &c.idempotency {
        idempotency(tx, idem)?;
    }
    notifications(tx, &c.notifications)?;
    timer(tx, n, state.next_timer_at)
}

/// The committed state as JSON: the caller's text when it has it.
fn state_json(c: &Commit) -> Result<Cow<'_, str>> {
    match &c.encoded_state {
        Some(json) => Ok(Cow::Borrowed(json)),
        None => serde_json::to_string(&*c.state).map(Cow::Owned).map_err(corrupt),
    }
}

/// Creates the request's row; its row number.
fn insert_request(tx: &Connection, state: &RequestState, json: &str) -> Result<i64> {
    tx.prepare_cached(
        "INSERT INTO requests (id, status, policy_id, requester, subject, created_at, updated_at, version, state, lineage)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )
    .and_then(|mut s| {
        s.execute(params![
            state.id.as_str(),
            state.status.as_str(),
            state.policy.id,
            state.requester,
            state.subject,
            state.created_at.to_string(),
            state.updated_at.to_string(),
            state.version as i64,
            json,
            state.lineage.as_deref()
        ])
    })
    .map_err(unavailable)?;
    Ok(tx.last_insert_rowid())
}

fn update_request(tx: &Connection, n: i64, state: &RequestState, json: &str) -> Result<()> {
    tx.prepare_cached("UPDATE requests SET status = ?2, updated_at = ?3, version = ?4, state = ?5 WHERE n = ?1")
        .and_then(|mut s| s.execute(params![n, state.status.as_str(), state.updated_at.to_string(), state.version as i64, json]))
        .map_err(unavailable)?;
    Ok(())
}

fn events(tx: &Connection, c: &Commit) -> Result<()> {
    let mut insert = tx
        .prepare_cached("INSERT INTO events (request_id, seq, type, at, body) VALUES (?1, ?2, ?3, ?4, ?5)")
        .map_err(unavailable)?;
    for e in &c.events {
        let body = serde_json::to_string(e).map_err(corrupt)?;
        insert.execute(params![c.state.id.as_str(), e.seq as i64, e.kind.type_name(), e.at.to_string(), body]).map_err(unavailable)?;
    }
    Ok(())
}

/// Replaces the request's inbox rows with its open tasks now.
fn tasks(tx: &Connection, n: i64, state: &RequestState) -> Result<()> {
    tx.prepare_cached("DELETE FROM tasks WHERE request_n = ?1").and_then(|mut s| s.execute(params![n])).map_err(unavailable)?;
    let mut insert = tx
        .prepare_cached("INSERT OR IGNORE INTO tasks (approver, request_n, step_id, due_at, body) VALUES (?1, ?2, ?3, ?4, ?5)")
        .map_err(unavailable)?;
    for (approver, task) in tasks_of(state) {
        let due = task.due_at.map(|d| d.as_millisecond());
        let body = serde_json::to_string(&task).map_err(corrupt)?;
        insert.execute(params![approver, n, task.step, due, body]).map_err(unavailable)?;
    }
    Ok(())
}

fn participants(tx: &Connection, n: i64, state: &RequestState) -> Result<()> {
    let mut insert = tx.prepare_cached("INSERT OR IGNORE INTO participants (user_id, request_n) VALUES (?1, ?2)").map_err(unavailable)?;
    for user in state.participants() {
        insert.execute(params![user, n]).map_err(unavailable)?;
    }
    Ok(())
}

fn idempotency(tx: &Connection, idem: &IdempotencyRecord) -> Result<()> {
    tx.prepare_cached("INSERT INTO idempotency (scope, key, fingerprint, status, body, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
        .and_then(|mut s| {
            s.execute(params![idem.scope, idem.key, idem.fingerprint, idem.response.status as i64, idem.response.body, idem.at.to_string()])
        })
        .map_err(unavailable)?;
    Ok(())
}

/// Adds the commit's notifications to the outbox; one with the key of a pending one replaces
/// its payload instead (coalescing).
fn notifications(tx: &Connection, notifications: &[Outgoing]) -> Result<()> {
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO outbox (id, request_id, channel, destination, kind, payload, coalesce_key, status, next_attempt_at, created_at, trace)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, ?9, ?10)
             ON CONFLICT (coalesce_key) WHERE status = 'pending'
             DO UPDATE SET payload = excluded.payload, revision = revision + 1",
        )
        .map_err(unavailable)?;
    for o in notifications {
        insert
            .execute(params![
                o.id,
                o.request_id,
                o.channel,
                o.destination,
                o.kind,
                o.payload.to_string(),
                o.coalesce_key,
                due_millis(o.created_at),
                o.created_at.to_string(),
                o.trace
            ])
            .map_err(unavailable)?;
    }
    Ok(())
}

/// Sets the request's next timer, or removes it.
fn timer(tx: &Connection, n: i64, next: Option<Timestamp>) -> Result<()> {
    match next {
        Some(at) => tx
            .prepare_cached("INSERT INTO timers (request_n, due_at) VALUES (?1, ?2) ON CONFLICT (request_n) DO UPDATE SET due_at = excluded.due_at")
            .and_then(|mut s| s.execute(params![n, due_millis(at)])),
        None => tx.prepare_cached("DELETE FROM timers WHERE request_n = ?1").and_then(|mut s| s.execute(params![n])),
    }
    .map_err(unavailable)?;
    Ok(())
}
