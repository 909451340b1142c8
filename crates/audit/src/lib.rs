//! The audit log: every event, in the order the log took it, as the leaves of an append-only
//! Merkle tree (RFC 6962 / RFC 9162), with signed checkpoints and the proofs that let anyone
//! holding a checkpoint see that no event was since removed, rewritten or reordered. Pure: no
//! I/O; the stores keep the tree's nodes and the server signs.

pub mod checkpoint;
pub mod merkle;

/// The bytes a leaf hashes: which event (request and sequence number) and that event's own
/// chained hash, one per line.
pub fn leaf_data(request_id: &str, seq: u64, event_hash: &str) -> Vec<u8> {
    format!("{request_id}\n{seq}\n{event_hash}").into_bytes()
}

/// The leaf hash of one event.
pub fn event_leaf(request_id: &str, seq: u64, event_hash: &str) -> merkle::Hash {
    merkle::leaf_hash(&leaf_data(request_id, seq, event_hash))
}
