//! The audit log's tables: sequencing queued events into the Merkle tree (on the writer
//! thread, a transaction of its own), and the reads proofs and verification need.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};
use signoff_audit::merkle::{Frontier, Hash, Node};
use signoff_store::log::{self, LogLeaf, Queued};
use signoff_store::{Result, StoreError};

use crate::unavailable;

/// Appends up to `limit` queued events to the log; answers its size after.
pub(crate) fn sequence(conn: &mut Connection, limit: u32) -> Result<u64> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(unavailable)?;
    let size = size(&tx)?;
    let queued: Vec<Queued> = {
        let mut stmt = tx
            .prepare_cached(
                "SELECT q.n, q.request_id, q.seq, COALESCE(e.body, d.body) FROM audit_queue q
                 LEFT JOIN events e ON e.request_id = q.request_id AND e.seq = q.seq
                 LEFT JOIN directory_changes d ON q.request_id = 'directory' AND d.seq = q.seq
                 ORDER BY q.n LIMIT ?1",
            )
            .map_err(unavailable)?;
        let rows = stmt
            .query_map(params![limit], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<String>>(3)?,
                ))
            })
            .map_err(unavailable)?;
        rows.map(|r| {
            let (n, request_id, seq, body) = r.map_err(unavailable)?;
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
        .collect::<Result<_>>()?
    };
    let Some(last) = queued.last().map(|q| q.n) else {
        return Ok(size);
    };
    let mut frontier = frontier(&tx, size)?;
    let batch = log::sequence(&mut frontier, queued)?;
    {
        let mut leaf = tx
            .prepare_cached("INSERT INTO audit_leaves (idx, request_id, seq, hash) VALUES (?1, ?2, ?3, ?4)")
            .map_err(unavailable)?;
        for (l, h) in &batch.leaves {
            leaf.execute(params![l.index as i64, l.request_id, l.seq as i64, &h[..]])
                .map_err(unavailable)?;
        }
        let mut node = tx
            .prepare_cached("INSERT INTO audit_nodes (level, idx, hash) VALUES (?1, ?2, ?3)")
            .map_err(unavailable)?;
        for (n, h) in &batch.nodes {
            node.execute(params![n.level, n.index as i64, &h[..]])
                .map_err(unavailable)?;
        }
    }
    // (One writer: the queue is consumed in order, up to the last row read.)
    tx.execute("DELETE FROM audit_queue WHERE n <= ?1", params![last])
        .map_err(unavailable)?;
    tx.commit().map_err(unavailable)?;
    Ok(frontier.size)
}

fn frontier(c: &Connection, size: u64) -> Result<Frontier> {
    log::frontier(size, &nodes(c, &log::stored_for(&Frontier::nodes(size)))?)
}

pub(crate) fn size(c: &Connection) -> Result<u64> {
    c.query_row(
        "SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_leaves",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n as u64)
    .map_err(unavailable)
}

pub(crate) fn queued(c: &Connection) -> Result<u64> {
    c.query_row("SELECT COUNT(*) FROM audit_queue", [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|n| n as u64)
    .map_err(unavailable)
}

/// The stored hashes of `wanted` (those that exist): leaves from their rows, interior nodes
/// from theirs.
pub(crate) fn nodes(c: &Connection, wanted: &[Node]) -> Result<HashMap<Node, Hash>> {
    let mut leaf = c.prepare_cached("SELECT hash FROM audit_leaves WHERE idx = ?1").map_err(unavailable)?;
    let mut node = c
        .prepare_cached("SELECT hash FROM audit_nodes WHERE level = ?1 AND idx = ?2")
        .map_err(unavailable)?;
    let mut found = HashMap::with_capacity(wanted.len());
    for n in wanted {
        let hash: Option<Vec<u8>> = if n.level == 0 {
            leaf.query_row(params![n.index as i64], |r| r.get(0))
        } else {
            node.query_row(params![n.level, n.index as i64], |r| r.get(0))
        }
        .optional()
        .map_err(unavailable)?;
        if let Some(h) = hash {
            found.insert(*n, log::hash_of(&h)?);
        }
    }
    Ok(found)
}

fn leaves_where(c: &Connection, sql: &str, args: impl rusqlite::Params) -> Result<Vec<LogLeaf>> {
    let mut stmt = c.prepare_cached(sql).map_err(unavailable)?;
    let rows = stmt
        .query_map(args, |r| {
            Ok(LogLeaf {
                index: r.get::<_, i64>(0)? as u64,
                request_id: r.get(1)?,
                seq: r.get::<_, i64>(2)? as u64,
            })
        })
        .map_err(unavailable)?;
    rows.map(|r| r.map_err(unavailable)).collect()
}

pub(crate) fn audit_rows(c: &Connection, from: u64, limit: u32) -> Result<Vec<log::AuditRow>> {
    let mut stmt = c
        .prepare_cached(
            "SELECT l.idx, l.request_id, l.seq, COALESCE(e.body, d.body), r.policy_id, r.status FROM audit_leaves l
             LEFT JOIN events e ON e.request_id = l.request_id AND e.seq = l.seq
             LEFT JOIN requests r ON r.id = l.request_id
             LEFT JOIN directory_changes d ON l.request_id = 'directory' AND d.seq = l.seq
             WHERE (r.id IS NOT NULL AND e.body IS NOT NULL OR d.seq IS NOT NULL) AND l.idx >= ?1 ORDER BY l.idx LIMIT ?2",
        )
        .map_err(unavailable)?;
    let rows = stmt
        .query_map(params![from as i64, limit], |r| {
            Ok(log::AuditRow {
                leaf: LogLeaf { index: r.get::<_, i64>(0)? as u64, request_id: r.get(1)?, seq: r.get::<_, i64>(2)? as u64 },
                body: r.get(3)?,
                policy_id: r.get(4)?,
                status: r.get(5)?,
            })
        })
        .map_err(unavailable)?;
    rows.map(|r| r.map_err(unavailable)).collect()
}

/// Leaves from `from` on, in order.
pub(crate) fn leaves(c: &Connection, from: u64, limit: u32) -> Result<Vec<LogLeaf>> {
    leaves_where(
        c,
        "SELECT idx, request_id, seq FROM audit_leaves WHERE idx >= ?1 ORDER BY idx LIMIT ?2",
        params![from as i64, limit],
    )
}

/// One request's leaves, by sequence number.
pub(crate) fn leaves_of(c: &Connection, request_id: &str) -> Result<Vec<LogLeaf>> {
    leaves_where(
        c,
        "SELECT idx, request_id, seq FROM audit_leaves WHERE request_id = ?1 ORDER BY seq",
        params![request_id],
    )
}
