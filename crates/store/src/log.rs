//! The audit log as both stores keep it: each commit queues its events (`audit_queue`), and
//! sequencing appends queued events to the Merkle tree in queue order, one batch per
//! transaction, writing each leaf's place (`audit_leaves`) and every node it completes
//! (`audit_nodes`). What a batch writes is worked out here, once for both stores.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

use signoff_audit::merkle::{Frontier, Hash, Node};

use crate::{Result, StoreError};

/// One leaf of the log: the event at `index`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLeaf {
    pub index: u64,
    pub request_id: String,
    pub seq: u64,
}

/// The name the directory's changes go by in the log, in place of a request id (no request's
/// id has this form: signoff mints them `req_…`). Change number `seq` is the leaf of
/// (`DIRECTORY`, `seq`, the change's hash), like an event of a request.
pub const DIRECTORY: &str = "directory";

/// A leaf with what an audit export needs of its event and request.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    pub leaf: LogLeaf,
    /// The event as stored (JSON text); for a leaf of `DIRECTORY`, the directory change.
    pub body: String,
    /// The request's policy (none for a directory change).
    pub policy_id: Option<String>,
    /// The request's status now (none for a directory change).
    pub status: Option<String>,
}

/// A queued event (or directory change), as sequencing reads it: its queue position, which
/// event, and the event as stored (for its hash).
#[derive(Debug, Clone)]
pub struct Queued {
    pub n: i64,
    pub request_id: String,
    pub seq: u64,
    pub body: String,
}

/// Interior nodes are stored only at levels that are multiples of this: the others are
/// worked out from the level below when a root or proof needs them (at most 2^3 reads each),
/// which keeps the log to about one leaf row per event plus a sixteenth of a node row.
pub const STORED_LEVELS: u8 = 4;

/// Whether a node of `level` is stored (leaves always are, with their leaf rows).
pub fn is_stored(level: u8) -> bool {
    level % STORED_LEVELS == 0
}

/// What one sequencing batch writes.
#[derive(Debug, Default)]
pub struct Batch {
    /// Each leaf with its hash.
    pub leaves: Vec<(LogLeaf, Hash)>,
    /// The interior nodes it completes that are stored (`is_stored`).
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
        let Hashed { hash } = serde_json::from_str(&q.body).map_err(|e| StoreError::Corrupt(format!("event {}#{}: {e}", q.request_id, q.seq)))?;
        let leaf = signoff_audit::event_leaf(&q.request_id, q.seq, &hash);
        batch.leaves.push((LogLeaf { index: frontier.size, request_id: q.request_id, seq: q.seq }, leaf));
        batch.nodes.extend(frontier.append(leaf).into_iter().filter(|(n, _)| n.level > 0 && is_stored(n.level)));
        batch.done.push(q.n);
    }
    Ok(batch)
}

/// The stored nodes `wanted` are made of: each stored one itself, each other one its
/// children's, down to a stored level.
pub fn stored_for(wanted: &[Node]) -> Vec<Node> {
    fn down(n: Node, out: &mut Vec<Node>) {
        if is_stored(n.level) {
            out.push(n);
        } else {
            down(Node { level: n.level - 1, index: n.index * 2 }, out);
            down(Node { level: n.level - 1, index: n.index * 2 + 1 }, out);
        }
    }
    let mut out = Vec::new();
    for n in wanted {
        down(*n, &mut out);
    }
    out.sort();
    out.dedup();
    out
}

/// The hashes of `wanted`, from the stored ones `stored_for` named; `None` for one whose
/// stored parts are missing.
pub fn assemble(wanted: &[Node], stored: &HashMap<Node, Hash>) -> HashMap<Node, Hash> {
    fn hash(n: Node, stored: &HashMap<Node, Hash>) -> Option<Hash> {
        if is_stored(n.level) {
            return stored.get(&n).copied();
        }
        let left = hash(Node { level: n.level - 1, index: n.index * 2 }, stored)?;
        let right = hash(Node { level: n.level - 1, index: n.index * 2 + 1 }, stored)?;
        Some(signoff_audit::merkle::node_hash(&left, &right))
    }
    wanted.iter().filter_map(|n| hash(*n, stored).map(|h| (*n, h))).collect()
}

/// The frontier of a tree of `size` leaves from its stored nodes (`stored_for` of
/// `Frontier::nodes(size)`).
pub fn frontier(size: u64, stored: &HashMap<Node, Hash>) -> Result<Frontier> {
    let wanted = Frontier::nodes(size);
    let nodes = assemble(&wanted, stored);
    let hashes = wanted
        .iter()
        .map(|n| nodes.get(n).copied().ok_or_else(|| StoreError::Corrupt(format!("audit log: node {}/{} of a tree of {size} is missing", n.level, n.index))))
        .collect::<Result<Vec<_>>>()?;
    Ok(Frontier { size, hashes })
}

/// A stored hash (32 bytes) back as a `Hash`.
pub fn hash_of(bytes: &[u8]) -> Result<Hash> {
    bytes.try_into().map_err(|_| StoreError::Corrupt(format!("audit log: a node hash of {} bytes", bytes.len())))
}

/// Builds many roots or proofs from the nodes the store holds, in one read for all of them
/// (proofs of neighbouring leaves share most of their nodes).
pub async fn build_many<T>(store: &dyn crate::Store, plans: &[signoff_audit::merkle::Plan<T>]) -> Result<Vec<T>> {
    let mut needed: Vec<Node> = plans.iter().flat_map(|p| p.needed()).collect();
    needed.sort();
    needed.dedup();
    let stored = store.log_nodes(&stored_for(&needed)).await?;
    let nodes = assemble(&needed, &stored);
    if let Some(missing) = needed.iter().find(|n| !nodes.contains_key(n)) {
        return Err(StoreError::Corrupt(format!("audit log: node {}/{} is missing", missing.level, missing.index)));
    }
    Ok(plans.iter().map(|p| p.build(&nodes)).collect())
}

/// Builds a root or proof from the nodes the store holds (one read for all of them).
pub async fn build<T>(store: &dyn crate::Store, plan: &signoff_audit::merkle::Plan<T>) -> Result<T> {
    let needed = plan.needed();
    let stored = store.log_nodes(&stored_for(&needed)).await?;
    let nodes = assemble(&needed, &stored);
    if let Some(missing) = needed.iter().find(|n| !nodes.contains_key(n)) {
        return Err(StoreError::Corrupt(format!("audit log: node {}/{} is missing", missing.level, missing.index)));
    }
    Ok(plan.build(&nodes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use signoff_audit::merkle;

    /// Roots, proofs and frontiers from only the stored levels are those from every node.
    #[test]
    fn the_stored_levels_rebuild_every_root_proof_and_frontier() {
        let mut f = Frontier::default();
        let mut all = HashMap::new();
        for i in 0..300u64 {
            all.extend(f.append(merkle::leaf_hash(&i.to_le_bytes())));
        }
        let stored: HashMap<Node, Hash> = all.iter().filter(|(n, _)| is_stored(n.level)).map(|(n, h)| (*n, *h)).collect();
        assert!(stored.len() < all.len() * 6 / 10, "{} of {}", stored.len(), all.len());
        let from_stored = |wanted: &[Node]| {
            let parts = stored_for(wanted);
            assert!(parts.iter().all(|n| stored.contains_key(n)), "only stored nodes are read");
            assemble(wanted, &stored)
        };
        for size in [1u64, 2, 3, 15, 16, 17, 31, 64, 100, 255, 256, 257, 300] {
            let root = merkle::root(size);
            assert_eq!(root.build(&from_stored(&root.needed())), root.build(&all), "root of {size}");
            for index in [0, size / 2, size - 1] {
                let p = merkle::inclusion_proof(index, size);
                assert_eq!(p.build(&from_stored(&p.needed())), p.build(&all), "proof of {index} in {size}");
            }
            let c = merkle::consistency_proof(size / 3, size);
            assert_eq!(c.build(&from_stored(&c.needed())), c.build(&all), "consistency to {size}");
            let mut expected = Frontier::default();
            for i in 0..size {
                expected.append(merkle::leaf_hash(&i.to_le_bytes()));
            }
            assert_eq!(frontier(size, &from_stored(&stored_for(&Frontier::nodes(size)))).unwrap(), expected, "frontier of {size}");
        }
    }
}
