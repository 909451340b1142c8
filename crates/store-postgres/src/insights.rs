//! The analytics projection's tables: each request's facts as a follower last folded them, and
//! how far it has read the audit log. Every instance follows the log; a row already written
//! at a later cursor is kept, and the cursor only moves forward.

use signoff_store::{FactsRow, Result};

use crate::unavailable;

pub(crate) async fn put(client: &mut deadpool_postgres::Object, rows: &[FactsRow], cursor: u64) -> Result<()> {
    let tx = client.transaction().await.map_err(unavailable)?;
    let ids: Vec<&str> = rows.iter().map(|r| r.request_id.as_str()).collect();
    let cursors: Vec<i64> = rows.iter().map(|r| r.cursor as i64).collect();
    let bodies: Vec<&str> = rows.iter().map(|r| r.body.as_str()).collect();
    tx.execute(
        "INSERT INTO insight_facts (request_id, cursor, body) SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[])
         ON CONFLICT (request_id) DO UPDATE SET cursor = EXCLUDED.cursor, body = EXCLUDED.body
         WHERE EXCLUDED.cursor >= insight_facts.cursor",
        &[&ids, &cursors, &bodies],
    )
    .await
    .map_err(unavailable)?;
    tx.execute(
        "INSERT INTO insight_cursor (one, cursor) VALUES (1, $1) ON CONFLICT (one) DO UPDATE SET cursor = GREATEST(insight_cursor.cursor, EXCLUDED.cursor)",
        &[&(cursor as i64)],
    )
    .await
    .map_err(unavailable)?;
    tx.commit().await.map_err(unavailable)
}

pub(crate) async fn cursor(client: &deadpool_postgres::Object) -> Result<u64> {
    let row = client.query_opt("SELECT cursor FROM insight_cursor WHERE one = 1", &[]).await.map_err(unavailable)?;
    Ok(row.map_or(0, |r| r.get::<_, i64>(0) as u64))
}

pub(crate) async fn page(client: &deadpool_postgres::Object, cursor: u64, id: &str, limit: u32) -> Result<Vec<FactsRow>> {
    let rows = client
        .query(
            "SELECT request_id, cursor, body FROM insight_facts WHERE (cursor, request_id) > ($1, $2)
             ORDER BY cursor, request_id LIMIT $3",
            &[&(cursor as i64), &id, &(limit as i64)],
        )
        .await
        .map_err(unavailable)?;
    Ok(rows.iter().map(|r| FactsRow { request_id: r.get(0), cursor: r.get::<_, i64>(1) as u64, body: r.get(2) }).collect())
}
