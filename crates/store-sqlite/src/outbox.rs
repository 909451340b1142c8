//! The outbox after a commit has written it: claiming due notifications (leases the writer
//! sets), recording delivery attempts, and reading notifications and their attempt logs back.
//! Rows decode through `signoff_store::rows::OutboxRow`, as PostgreSQL's do.

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};
use signoff_store::rows::{NOTIFICATION_COLUMNS, OutboxRow};
use signoff_store::{Attempt, AttemptOutcome, DeliveryReport, Notification, Result, due_millis};

use crate::unavailable;

/// Frees every claim left in the outbox. Only this process can have the file open (its lock):
/// claims found on opening belong to a process that died mid-delivery, so those rows are due
/// again now.
pub(crate) fn release_claims(conn: &Connection) -> Result<()> {
    conn.execute("UPDATE outbox SET claimed_until = NULL WHERE claimed_until IS NOT NULL", []).map_err(unavailable)?;
    Ok(())
}

/// Claims up to `limit` notifications due at `now` until `lease_until`, in a transaction of
/// its own.
pub(crate) fn claim(conn: &mut Connection, now: Timestamp, limit: u32, lease_until: Timestamp) -> Result<Vec<Notification>> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(unavailable)?;
    let sql = format!(
        "SELECT {NOTIFICATION_COLUMNS}, n FROM outbox
         WHERE status = 'pending' AND ((claimed_until IS NULL AND next_attempt_at <= ?1) OR claimed_until <= ?1)
         ORDER BY next_attempt_at LIMIT ?2"
    );
    let rows = numbered(&tx, &sql, params![now.as_millisecond(), limit])?;
    {
        let mut mark = tx.prepare_cached("UPDATE outbox SET claimed_until = ?2 WHERE n = ?1").map_err(unavailable)?;
        for (n, _) in &rows {
            mark.execute(params![n, due_millis(lease_until)]).map_err(unavailable)?;
        }
    }
    tx.commit().map_err(unavailable)?;
    Ok(rows.into_iter().map(|(_, n)| n).collect())
}

/// Applies one attempt's outcome to its notification and appends it to the attempt log (a
/// deferral is not an attempt: it only moves the notification's time).
pub(crate) fn record_attempt(tx: &Connection, a: &Attempt) -> Result<()> {
    let row: Option<(i64, i64, i64)> = tx
        .prepare_cached("SELECT n, attempts, revision FROM outbox WHERE id = ?1")
        .and_then(|mut s| s.query_row(params![a.notification], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional())
        .map_err(unavailable)?;
    let Some((n, attempts, revision)) = row else { return Ok(()) };
    let at = a.at.to_string();
    match &a.outcome {
        AttemptOutcome::Delivered { result } if revision as u32 == a.revision => tx
            .prepare_cached("UPDATE outbox SET status = 'delivered', attempts = attempts + 1, delivered_at = ?2, result = ?3, next_attempt_at = NULL, last_error = NULL, claimed_until = NULL WHERE n = ?1")
            .and_then(|mut s| s.execute(params![n, at, result.as_ref().map(|r| r.to_string())])),
        // Delivered, but the payload was replaced meanwhile: send the new one now.
        AttemptOutcome::Delivered { result } => tx
            .prepare_cached("UPDATE outbox SET attempts = attempts + 1, result = ?3, next_attempt_at = ?2, claimed_until = NULL WHERE n = ?1")
            .and_then(|mut s| s.execute(params![n, due_millis(a.at), result.as_ref().map(|r| r.to_string())])),
        AttemptOutcome::Failed { error, next_attempt_at: Some(next) } => tx
            .prepare_cached("UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3, claimed_until = NULL WHERE n = ?1")
            .and_then(|mut s| s.execute(params![n, due_millis(*next), error])),
        AttemptOutcome::Failed { error, next_attempt_at: None } => tx
            .prepare_cached("UPDATE outbox SET status = 'failed', attempts = attempts + 1, next_attempt_at = NULL, last_error = ?2, claimed_until = NULL WHERE n = ?1")
            .and_then(|mut s| s.execute(params![n, error])),
        AttemptOutcome::Deferred { until } => {
            return tx
                .prepare_cached("UPDATE outbox SET next_attempt_at = ?2, claimed_until = NULL WHERE n = ?1")
                .and_then(|mut s| s.execute(params![n, due_millis(*until)]))
                .map(|_| ())
                .map_err(unavailable);
        }
    }
    .map_err(unavailable)?;
    tx.prepare_cached("INSERT INTO outbox_attempts (notification_n, seq, body) VALUES (?1, ?2, ?3)")
        .and_then(|mut s| s.execute(params![n, attempts + 1, serde_json::to_string(a).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?]))
        .map_err(unavailable)?;
    Ok(())
}

/// When the earliest pending notification is due (or its claim runs out).
pub(crate) fn next_due(c: &Connection) -> Result<Option<Timestamp>> {
    let ms: Option<i64> = c
        .query_row("SELECT MIN(COALESCE(claimed_until, next_attempt_at)) FROM outbox WHERE status = 'pending'", [], |r| r.get(0))
        .map_err(unavailable)?;
    ms.map(signoff_store::rows::from_millis).transpose()
}

pub(crate) fn notification(c: &Connection, id: &str) -> Result<Option<Notification>> {
    let sql = format!("SELECT {NOTIFICATION_COLUMNS} FROM outbox WHERE id = ?1");
    let row = c.prepare_cached(&sql).and_then(|mut s| s.query_row(params![id], outbox_row).optional()).map_err(unavailable)?;
    row.map(OutboxRow::decode).transpose()
}

/// A request's notifications, oldest first, each with its attempts.
pub(crate) fn deliveries(c: &Connection, request_id: &str) -> Result<Vec<DeliveryReport>> {
    let sql = format!("SELECT {NOTIFICATION_COLUMNS}, n FROM outbox WHERE request_id = ?1 ORDER BY n");
    let rows = numbered(c, &sql, params![request_id])?;
    let mut log = c.prepare_cached("SELECT body FROM outbox_attempts WHERE notification_n = ?1 ORDER BY seq").map_err(unavailable)?;
    let mut out = Vec::with_capacity(rows.len());
    for (n, notification) in rows {
        let attempt_log = log
            .query_map(params![n], |r| r.get::<_, String>(0))
            .map_err(unavailable)?
            .map(|b| signoff_store::decode(&b.map_err(unavailable)?))
            .collect::<Result<_>>()?;
        out.push(DeliveryReport { notification, attempt_log });
    }
    Ok(out)
}

/// The notifications `sql` selects (`NOTIFICATION_COLUMNS, n`), with their row numbers.
fn numbered(c: &Connection, sql: &str, args: impl rusqlite::Params) -> Result<Vec<(i64, Notification)>> {
    let mut stmt = c.prepare_cached(sql).map_err(unavailable)?;
    // `n` comes last so that `outbox_row` reads the same columns everywhere.
    let rows = stmt.query_map(args, |r| Ok((r.get::<_, i64>(16)?, outbox_row(r)?))).map_err(unavailable)?;
    rows.map(|r| {
        let (n, row) = r.map_err(unavailable)?;
        Ok((n, row.decode()?))
    })
    .collect()
}

/// The values of `NOTIFICATION_COLUMNS`, first in `r`.
fn outbox_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxRow> {
    Ok(OutboxRow {
        id: r.get(0)?,
        request_id: r.get(1)?,
        channel: r.get(2)?,
        destination: r.get(3)?,
        kind: r.get(4)?,
        payload: r.get(5)?,
        coalesce_key: r.get(6)?,
        created_at: r.get(7)?,
        status: r.get(8)?,
        attempts: r.get(9)?,
        revision: r.get(10)?,
        next_attempt_at: r.get(11)?,
        last_error: r.get(12)?,
        result: r.get(13)?,
        delivered_at: r.get(14)?,
        trace: r.get(15)?,
    })
}

#[cfg(test)]
mod tests {
    use signoff_store::{Store, StoreError};

    use crate::SqliteStore;

    /// A row the store cannot read back is reported, not passed off with defaults.
    #[tokio::test]
    async fn a_damaged_outbox_row_reads_as_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.db");
        drop(SqliteStore::open(&path).unwrap());
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute(
                "INSERT INTO outbox (id, request_id, channel, destination, kind, payload, status, next_attempt_at, created_at)
                 VALUES ('ntf_1', 'req_1', 'webhook', 'erp', 'event', '{not json', 'pending', 0, '2026-11-22T09:00:00Z')",
                [],
            )
            .unwrap();
        let store = SqliteStore::open(&path).unwrap();
        let corrupt = |r: Result<_, StoreError>| matches!(r, Err(StoreError::Corrupt(e)) if e.contains("ntf_1") && e.contains("payload"));
        assert!(corrupt(store.notification("ntf_1").await.map(|_| ())));
        assert!(corrupt(store.deliveries("req_1").await.map(|_| ())));
        let now = jiff::Timestamp::from_millisecond(1_000).unwrap();
        assert!(corrupt(store.claim_notifications(now, 10, now).await.map(|_| ())));
    }
}
