//! Retention on SQLite: finding closed requests past their time, removing them once archived
//! (one transaction per batch, on the writer thread, so live commits go on between batches),
//! and pruning what is kept only for a while.

use std::collections::HashMap;

use jiff::Timestamp;
use rusqlite::{Connection, params, params_from_iter};
use signoff_engine::RequestStatus;
use signoff_store::{Pruned, Result};

use crate::unavailable;

pub(crate) fn candidates(c: &Connection, policy: Option<&str>, statuses: &[RequestStatus], before: Timestamp, limit: u32) -> Result<Vec<String>> {
    let statuses: Vec<&str> = statuses.iter().filter(|s| **s != RequestStatus::Pending).map(|s| s.as_str()).collect();
    if statuses.is_empty() {
        return Ok(Vec::new());
    }
    let marks = vec!["?"; statuses.len()].join(", ");
    let sql = format!(
        "SELECT id FROM requests WHERE status IN ({marks}) AND updated_at < ? {} ORDER BY n LIMIT ?",
        if policy.is_some() { "AND policy_id = ?" } else { "" }
    );
    let mut args: Vec<rusqlite::types::Value> = statuses.iter().map(|s| rusqlite::types::Value::Text(s.to_string())).collect();
    args.push(rusqlite::types::Value::Text(before.to_string()));
    if let Some(p) = policy {
        args.push(rusqlite::types::Value::Text(p.to_string()));
    }
    args.push(rusqlite::types::Value::Integer(limit as i64));
    let mut stmt = c.prepare(&sql).map_err(unavailable)?;
    let rows = stmt.query_map(params_from_iter(args), |r| r.get::<_, String>(0)).map_err(unavailable)?;
    rows.map(|r| r.map_err(unavailable)).collect()
}

/// Removes the closed ones of `ids` and what hangs off them; answers which went.
pub(crate) fn purge(conn: &mut Connection, ids: &[String], archive: &str, at: Timestamp) -> Result<Vec<String>> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(unavailable)?;
    let mut gone = Vec::new();
    for id in ids {
        let row: Option<(i64, String)> = tx
            .query_row("SELECT n, state FROM requests WHERE id = ?1 AND status <> 'pending'", params![id], |r| Ok((r.get(0)?, r.get(1)?)))
            .map(Some)
            .or_else(|e| if e == rusqlite::Error::QueryReturnedNoRows { Ok(None) } else { Err(e) })
            .map_err(unavailable)?;
        let Some((n, state)) = row else { continue };
        // Participants are keyed by user first: each is removed by its key, as the state
        // names them (a scan by request would hold the writer for the whole table).
        let state: signoff_engine::RequestState = signoff_store::decode(&state)?;
        for user in state.participants() {
            tx.execute("DELETE FROM participants WHERE user_id = ?1 AND request_n = ?2", params![user, n]).map_err(unavailable)?;
        }
        for sql in ["DELETE FROM tasks WHERE request_n = ?1", "DELETE FROM timers WHERE request_n = ?1", "DELETE FROM requests WHERE n = ?1"] {
            tx.execute(sql, params![n]).map_err(unavailable)?;
        }
        for sql in [
            "DELETE FROM outbox_attempts WHERE notification_n IN (SELECT n FROM outbox WHERE request_id = ?1)",
            "DELETE FROM outbox WHERE request_id = ?1",
            "DELETE FROM events WHERE request_id = ?1",
            "DELETE FROM insight_facts WHERE request_id = ?1",
        ] {
            tx.execute(sql, params![id]).map_err(unavailable)?;
        }
        tx.execute("INSERT OR REPLACE INTO purged (request_id, archive, at) VALUES (?1, ?2, ?3)", params![id, archive, at.to_string()]).map_err(unavailable)?;
        gone.push(id.clone());
    }
    tx.commit().map_err(unavailable)?;
    Ok(gone)
}

pub(crate) fn purged(c: &Connection) -> Result<HashMap<String, String>> {
    let mut stmt = c.prepare("SELECT request_id, archive FROM purged").map_err(unavailable)?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).map_err(unavailable)?;
    rows.map(|r| r.map_err(unavailable)).collect()
}

pub(crate) fn prune(conn: &mut Connection, keys_before: Timestamp, notifications_before: Timestamp, used_before: Timestamp) -> Result<Pruned> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(unavailable)?;
    let idempotency_keys = tx.execute("DELETE FROM idempotency WHERE created_at < ?1", params![keys_before.to_string()]).map_err(unavailable)? as u64;
    tx.execute(
        "DELETE FROM outbox_attempts WHERE notification_n IN (SELECT n FROM outbox WHERE status <> 'pending' AND created_at < ?1)",
        params![notifications_before.to_string()],
    )
    .map_err(unavailable)?;
    let notifications = tx.execute("DELETE FROM outbox WHERE status <> 'pending' AND created_at < ?1", params![notifications_before.to_string()]).map_err(unavailable)? as u64;
    let used_keys = tx.execute("DELETE FROM used_keys WHERE at < ?1", params![used_before.as_millisecond()]).map_err(unavailable)? as u64;
    tx.commit().map_err(unavailable)?;
    Ok(Pruned { idempotency_keys, notifications, used_keys })
}
