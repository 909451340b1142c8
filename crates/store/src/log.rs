//! The audit log as both stores keep it: each commit queues its events (`audit_queue`), and
//! sequencing appends queued events to the Merkle tree in queue order, one batch per
//! transaction, writing each leaf's place (`audit_leaves`) and every node it completes
//! (`audit_nodes`). What a batch writes is worked out here, once for both stores.

use serde::{Deserialize, Serialize};
use signoff_audit::merkle::{Frontier, Hash, Node};

use crate::{Result, StoreError};

/// One leaf of the log: the event at `index`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLeaf {
    pub index: u64,
    pub request_id: String,
    pub seq: u64,
}

/// A leaf with what an audit export needs of its event and request.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    pub leaf: LogLeaf,
    /// The event as stored (JSON text).
    pub body: String,
    pub policy_id: String,
    /// The request's status now.
    pub status: String,
}

/// A queued event, as sequencing reads it: its queue position, which event, and the event as
/// stored (for its hash).
#[derive(Debug, Clone)]
pub struct Queued {
    pub n: i64,
    pub request_id: String,
    pub seq: u64,
    pub body: String,
}

/// What one sequencing batch writes.
#[derive(Debug, Default)]
pub struct Batch {
    pub leaves: Vec<LogLeaf>,
    pub nodes: Vec<(Node, Hash)>,
    /// The queue positions it consumed.
    pub done: Vec<i64>,
}

#[derive(Deserialize)]
struct Hashed {
    hash: String,
}

/// Appends `queued` (in queue order) to the tree whose edge is `frontier`.
pub fn sequence(frontier: &mut Frontier, queued: Vec<Queued>) -> Result<Batch> {
    let mut batch = Batch::default();
    for q in queued {
        let Hashed { hash } = serde_json::from_str(&q.body)
            .map_err(|e| StoreError::Corrupt(format!("event {}#{}: {e}", q.request_id, q.seq)))?;
        let leaf = signoff_audit::event_leaf(&q.request_id, q.seq, &hash);
        batch.leaves.push(LogLeaf {
            index: frontier.size,
            request_id: q.request_id,
            seq: q.seq,
        });
        batch.nodes.extend(frontier.append(leaf));
        batch.done.push(q.n);
    }
    Ok(batch)
}

/// The frontier of a tree of `size` leaves from its stored nodes.
pub fn frontier(size: u64, nodes: &std::collections::HashMap<Node, Hash>) -> Result<Frontier> {
    let hashes = Frontier::nodes(size)
        .into_iter()
        .map(|n| {
            nodes.get(&n).copied().ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "audit log: node {}/{} of a tree of {size} is missing",
                    n.level, n.index
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Frontier { size, hashes })
}

/// A stored hash (32 bytes) back as a `Hash`.
pub fn hash_of(bytes: &[u8]) -> Result<Hash> {
    bytes.try_into().map_err(|_| {
        StoreError::Corrupt(format!("audit log: a node hash of {} bytes", bytes.len()))
    })
}

/// Builds a root or proof from the nodes the store holds (one read for all of them).
pub async fn build<T>(
    store: &dyn crate::Store,
    plan: &signoff_audit::merkle::Plan<T>,
) -> Result<T> {
    let needed = plan.needed();
    let nodes = store.log_nodes(&needed).await?;
    if let Some(missing) = needed.iter().find(|n| !nodes.contains_key(n)) {
        return Err(StoreError::Corrupt(format!(
            "audit log: node {}/{} is missing",
            missing.level, missing.index
        )));
    }
    Ok(plan.build(&nodes))
}
