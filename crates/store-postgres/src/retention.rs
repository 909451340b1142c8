//! Retention on PostgreSQL: finding closed requests past their time, removing them once
//! archived (one transaction per batch), and pruning what is kept only for a while.

use std::collections::HashMap;

use deadpool_postgres::GenericClient;
use jiff::Timestamp;
use signoff_engine::RequestStatus;
use signoff_store::{Pruned, Result};

use crate::unavailable;

pub(crate) async fn candidates(c: &impl GenericClient, policy: Option<&str>, statuses: &[RequestStatus], before: Timestamp, limit: u32) -> Result<Vec<String>> {
    let statuses: Vec<&str> = statuses.iter().filter(|s| **s != RequestStatus::Pending).map(|s| s.as_str()).collect();
    let rows = c
        .query(
            "SELECT id FROM requests WHERE status = ANY($1) AND updated_at < $2 AND ($3::text IS NULL OR policy_id = $3) ORDER BY n LIMIT $4",
            &[&statuses, &before.to_string(), &policy, &(limit as i64)],
        )
        .await
        .map_err(unavailable)?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Removes the closed ones of `ids` and what hangs off them; answers which went.
pub(crate) async fn purge(client: &mut deadpool_postgres::Object, ids: &[String], archive: &str, at: Timestamp) -> Result<Vec<String>> {
    let tx = client.transaction().await.map_err(unavailable)?;
    let rows = tx
        .query("SELECT id, n, state FROM requests WHERE id = ANY($1) AND status <> 'pending' FOR UPDATE", &[&ids])
        .await
        .map_err(unavailable)?;
    let gone: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let ns: Vec<i64> = rows.iter().map(|r| r.get(1)).collect();
    // Participants are keyed by user first: removed by their keys, as each state names them
    // (a scan by request would read the whole table).
    let (mut users, mut of) = (Vec::<String>::new(), Vec::<i64>::new());
    for r in &rows {
        let state: signoff_engine::RequestState = signoff_store::decode(r.get::<_, &str>(2))?;
        for u in state.participants() {
            users.push(u.to_string());
            of.push(r.get(1));
        }
    }
    tx.execute("DELETE FROM participants p USING unnest($1::text[], $2::bigint[]) AS x(u, n) WHERE p.user_id = x.u AND p.request_n = x.n", &[&users, &of])
        .await
        .map_err(unavailable)?;
    for sql in ["DELETE FROM tasks WHERE request_n = ANY($1)", "DELETE FROM timers WHERE request_n = ANY($1)", "DELETE FROM requests WHERE n = ANY($1)"] {
        tx.execute(sql, &[&ns]).await.map_err(unavailable)?;
    }
    for sql in [
        "DELETE FROM outbox_attempts WHERE notification_n IN (SELECT n FROM outbox WHERE request_id = ANY($1))",
        "DELETE FROM outbox WHERE request_id = ANY($1)",
        "DELETE FROM events WHERE request_id = ANY($1)",
        "DELETE FROM insight_facts WHERE request_id = ANY($1)",
    ] {
        tx.execute(sql, &[&gone]).await.map_err(unavailable)?;
    }
    tx.execute(
        "INSERT INTO purged (request_id, archive, at) SELECT unnest($1::text[]), $2, $3 ON CONFLICT (request_id) DO UPDATE SET archive = EXCLUDED.archive, at = EXCLUDED.at",
        &[&gone, &archive, &at.to_string()],
    )
    .await
    .map_err(unavailable)?;
    tx.commit().await.map_err(unavailable)?;
    Ok(gone)
}

pub(crate) async fn purged(c: &impl GenericClient) -> Result<HashMap<String, String>> {
    let rows = c.query("SELECT request_id, archive FROM purged", &[]).await.map_err(unavailable)?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

pub(crate) async fn prune(client: &mut deadpool_postgres::Object, keys_before: Timestamp, notifications_before: Timestamp, used_before: Timestamp) -> Result<Pruned> {
    let tx = client.transaction().await.map_err(unavailable)?;
    let idempotency_keys = tx.execute("DELETE FROM idempotency WHERE created_at < $1", &[&keys_before.to_string()]).await.map_err(unavailable)?;
    tx.execute(
        "DELETE FROM outbox_attempts WHERE notification_n IN (SELECT n FROM outbox WHERE status <> 'pending' AND created_at < $1)",
        &[&notifications_before.to_string()],
    )
    .await
    .map_err(unavailable)?;
    let notifications = tx.execute("DELETE FROM outbox WHERE status <> 'pending' AND created_at < $1", &[&notifications_before.to_string()]).await.map_err(unavailable)?;
    let used_keys = tx.execute("DELETE FROM used_keys WHERE at < $1", &[&used_before.as_millisecond()]).await.map_err(unavailable)?;
    tx.commit().await.map_err(unavailable)?;
    Ok(Pruned { idempotency_keys, notifications, used_keys })
}
