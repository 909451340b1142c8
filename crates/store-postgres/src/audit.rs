//! The audit log's tables on PostgreSQL: sequencing queued events into the Merkle tree, one
//! instance at a time (an advisory lock; the others skip, so every instance sees one tree in
//! one order), and the reads proofs and verification need.

use std::collections::HashMap;

use deadpool_postgres::GenericClient;
use signoff_audit::merkle::{Frontier, Hash, Node};
use signoff_store::log::{self, LogLeaf, Queued};
use signoff_store::{Result, StoreError};
use tokio_postgres::Row;

use crate::unavailable;

/// Any fixed number: the lock an instance holds while it sequences.
const SEQUENCER_LOCK: i64 = 0x5167_6e6f_6c6f_67;

pub(crate) async fn sequence(client: &mut deadpool_postgres::Object, limit: u32) -> Result<u64> {
    let tx = client.transaction().await.map_err(unavailable)?;
    let locked: bool = tx
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&SEQUENCER_LOCK])
        .await
        .map_err(unavailable)?
        .get(0);
    let size = size(&tx).await?;
    if !locked {
        return Ok(size);
    }
    let rows = tx
        .query(
            "SELECT q.n, q.request_id, q.seq, COALESCE(e.body, d.body) FROM audit_queue q
             LEFT JOIN events e ON e.request_id = q.request_id AND e.seq = q.seq
             LEFT JOIN directory_changes d ON q.request_id = 'directory' AND d.seq = q.seq
             ORDER BY q.n LIMIT $1",
            &[&(limit as i64)],
        )
        .await
        .map_err(unavailable)?;
    if rows.is_empty() {
        return Ok(size);
    }
    let queued = rows
        .into_iter()
        .map(|r| {
            let (n, request_id, seq, body): (i64, String, i64, Option<String>) =
                (r.get(0), r.get(1), r.get(2), r.get(3));
            let body = body.ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "audit queue: event {request_id}#{seq} is not stored"
                ))
            })?;
            Ok(Queued {
                n,
                request_id,
                seq: seq as u64,
                body,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut frontier = log::frontier(size, &nodes(&tx, &log::stored_for(&Frontier::nodes(size))).await?)?;
    let batch = log::sequence(&mut frontier, queued)?;
    let idx: Vec<i64> = batch.leaves.iter().map(|(l, _)| l.index as i64).collect();
    let request: Vec<&str> = batch.leaves.iter().map(|(l, _)| l.request_id.as_str()).collect();
    let seq: Vec<i64> = batch.leaves.iter().map(|(l, _)| l.seq as i64).collect();
    let leaf_hash: Vec<&[u8]> = batch.leaves.iter().map(|(_, h)| &h[..]).collect();
    tx.execute(
        "INSERT INTO audit_leaves (idx, request_id, seq, hash) SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bytea[])",
        &[&idx, &request, &seq, &leaf_hash],
    )
        .await
        .map_err(unavailable)?;
    let level: Vec<i16> = batch.nodes.iter().map(|(n, _)| n.level as i16).collect();
    let node_idx: Vec<i64> = batch.nodes.iter().map(|(n, _)| n.index as i64).collect();
    let hash: Vec<&[u8]> = batch.nodes.iter().map(|(_, h)| &h[..]).collect();
    tx.execute("INSERT INTO audit_nodes (level, idx, hash) SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bytea[])", &[&level, &node_idx, &hash])
        .await
        .map_err(unavailable)?;
    // (Queue positions may commit out of order across instances: only what was read goes.)
    tx.execute("DELETE FROM audit_queue WHERE n = ANY($1)", &[&batch.done])
        .await
        .map_err(unavailable)?;
    tx.commit().await.map_err(unavailable)?;
    Ok(frontier.size)
}

pub(crate) async fn size(c: &impl GenericClient) -> Result<u64> {
    let n: i64 = c
        .query_one("SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_leaves", &[])
        .await
        .map_err(unavailable)?
        .get(0);
    Ok(n as u64)
}

pub(crate) async fn queued(c: &impl GenericClient) -> Result<u64> {
    let n: i64 = c
        .query_one("SELECT COUNT(*) FROM audit_queue", &[])
        .await
        .map_err(unavailable)?
        .get(0);
    Ok(n as u64)
}

/// The stored hashes of `wanted` (those that exist), in one query: leaves from their rows,
/// interior nodes from theirs.
pub(crate) async fn nodes(c: &impl GenericClient, wanted: &[Node]) -> Result<HashMap<Node, Hash>> {
    let level: Vec<i16> = wanted.iter().map(|n| n.level as i16).collect();
    let idx: Vec<i64> = wanted.iter().map(|n| n.index as i64).collect();
    let rows = c
        .query(
            "SELECT n.level, n.idx, n.hash FROM audit_nodes n JOIN unnest($1::smallint[], $2::bigint[]) AS w(level, idx)
             ON n.level = w.level AND n.idx = w.idx
             UNION ALL
             SELECT 0::smallint, l.idx, l.hash FROM audit_leaves l JOIN unnest($1::smallint[], $2::bigint[]) AS w(level, idx)
             ON w.level = 0 AND l.idx = w.idx",
            &[&level, &idx],
        )
        .await
        .map_err(unavailable)?;
    rows.iter()
        .map(|r| {
            let node = Node {
                level: r.get::<_, i16>(0) as u8,
                index: r.get::<_, i64>(1) as u64,
            };
            Ok((node, log::hash_of(r.get::<_, &[u8]>(2))?))
        })
        .collect()
}

fn leaf(r: &Row) -> LogLeaf {
    LogLeaf {
        index: r.get::<_, i64>(0) as u64,
        request_id: r.get(1),
        seq: r.get::<_, i64>(2) as u64,
    }
}

pub(crate) async fn audit_rows(c: &impl GenericClient, from: u64, limit: u32) -> Result<Vec<log::AuditRow>> {
    let rows = c
        .query(
            "SELECT l.idx, l.request_id, l.seq, COALESCE(e.body, d.body), r.policy_id, r.status FROM audit_leaves l
             LEFT JOIN events e ON e.request_id = l.request_id AND e.seq = l.seq
             LEFT JOIN requests r ON r.id = l.request_id
             LEFT JOIN directory_changes d ON l.request_id = 'directory' AND d.seq = l.seq
             WHERE (r.id IS NOT NULL AND e.body IS NOT NULL OR d.seq IS NOT NULL) AND l.idx >= $1 ORDER BY l.idx LIMIT $2",
            &[&(from as i64), &(limit as i64)],
        )
        .await
        .map_err(unavailable)?;
    Ok(rows.iter().map(|r| log::AuditRow { leaf: leaf(r), body: r.get(3), policy_id: r.get(4), status: r.get(5) }).collect())
}

pub(crate) async fn leaves(c: &impl GenericClient, from: u64, limit: u32) -> Result<Vec<LogLeaf>> {
    let rows = c
        .query(
            "SELECT idx, request_id, seq FROM audit_leaves WHERE idx >= $1 ORDER BY idx LIMIT $2",
            &[&(from as i64), &(limit as i64)],
        )
        .await
        .map_err(unavailable)?;
    Ok(rows.iter().map(leaf).collect())
}

pub(crate) async fn leaves_of(c: &impl GenericClient, request_id: &str) -> Result<Vec<LogLeaf>> {
    let rows = c
        .query(
            "SELECT idx, request_id, seq FROM audit_leaves WHERE request_id = $1 ORDER BY seq",
            &[&request_id],
        )
        .await
        .map_err(unavailable)?;
    Ok(rows.iter().map(leaf).collect())
}
