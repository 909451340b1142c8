//! The analytics projection's tables: each request's facts as the follower last folded them,
//! and how far it has read the audit log.

use rusqlite::{Connection, OptionalExtension, params};
use signoff_store::{FactsRow, Result};

use crate::unavailable;

/// Writes `rows` and the cursor in one transaction (on the writer thread).
pub(crate) fn put(conn: &mut Connection, rows: &[FactsRow], cursor: u64) -> Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(unavailable)?;
    {
        let mut put = tx
            .prepare_cached(
                "INSERT INTO insight_facts (request_id, cursor, body) VALUES (?1, ?2, ?3)
                 ON CONFLICT (request_id) DO UPDATE SET cursor = excluded.cursor, body = excluded.body
                 WHERE excluded.cursor >= insight_facts.cursor",
            )
            .map_err(unavailable)?;
        for r in rows {
            put.execute(params![r.request_id, r.cursor as i64, r.body]).map_err(unavailable)?;
        }
    }
    tx.execute(
        "INSERT INTO insight_cursor (one, cursor) VALUES (1, ?1) ON CONFLICT (one) DO UPDATE SET cursor = max(cursor, excluded.cursor)",
        params![cursor as i64],
    )
    .map_err(unavailable)?;
    tx.commit().map_err(unavailable)
}

pub(crate) fn cursor(c: &Connection) -> Result<u64> {
    let n: Option<i64> = c.query_row("SELECT cursor FROM insight_cursor WHERE one = 1", [], |r| r.get(0)).optional().map_err(unavailable)?;
    Ok(n.unwrap_or(0) as u64)
}

pub(crate) fn page(c: &Connection, cursor: u64, id: &str, limit: u32) -> Result<Vec<FactsRow>> {
    let mut stmt = c
        .prepare_cached(
            "SELECT request_id, cursor, body FROM insight_facts WHERE (cursor, request_id) > (?1, ?2)
             ORDER BY cursor, request_id LIMIT ?3",
        )
        .map_err(unavailable)?;
    let rows = stmt
        .query_map(params![cursor as i64, id, limit], |r| {
            Ok(FactsRow { request_id: r.get(0)?, cursor: r.get::<_, i64>(1)? as u64, body: r.get(2)? })
        })
        .map_err(unavailable)?;
    rows.map(|r| r.map_err(unavailable)).collect()
}
