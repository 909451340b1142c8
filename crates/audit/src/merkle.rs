//! The audit log's Merkle tree, hashed as RFC 6962 / RFC 9162 §2.1 define it: a leaf is
//! `SHA-256(0x00 ‖ data)`, an interior node `SHA-256(0x01 ‖ left ‖ right)`, the empty tree
//! `SHA-256("")`. The tree is kept as its perfect subtrees (`Node`s): appending writes the ones a
//! leaf completes, and roots and proofs for any size are assembled from them.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// A perfect subtree: `2^level` leaves from `index * 2^level`. Level 0 is a leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Node {
    pub level: u8,
    pub index: u64,
}

pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

pub fn empty_root() -> Hash {
    Sha256::digest(b"").into()
}

/// The largest power of two below `n` (n ≥ 2): where RFC 6962 splits a tree of `n` leaves.
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// The right edge of a tree of `size` leaves: its perfect subtrees, largest (leftmost) first.
/// Appending a leaf only ever needs these.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Frontier {
    pub size: u64,
    /// One hash per set bit of `size`, from the highest bit down.
    pub hashes: Vec<Hash>,
}

impl Frontier {
    /// The nodes that hold a tree's frontier, in `hashes` order.
    pub fn nodes(size: u64) -> Vec<Node> {
        (0..64u8)
            .rev()
            .filter(|l| size & (1 << l) != 0)
            .map(|level| Node {
                level,
                index: (size >> level) - 1,
            })
            .collect()
    }

    /// Appends a leaf: answers every node it completes (the leaf itself first, then each
    /// subtree it closes, bottom up), to be stored.
    pub fn append(&mut self, leaf: Hash) -> Vec<(Node, Hash)> {
        let index = self.size;
        let mut written = vec![(Node { level: 0, index }, leaf)];
        let mut carry = leaf;
        let mut level = 0u8;
        // Each trailing one bit of the old size is a subtree of this level that the new leaf's
        // side now matches: they merge.
        while self.size & (1 << level) != 0 {
            let left = self.hashes.pop().expect("one hash per set bit");
            carry = node_hash(&left, &carry);
            level += 1;
            written.push((
                Node {
                    level,
                    index: index >> level,
                },
                carry,
            ));
        }
        self.hashes.push(carry);
        self.size += 1;
        written
    }

    /// The root of the tree this is the edge of.
    pub fn root(&self) -> Hash {
        let mut hashes = self.hashes.iter().rev();
        let Some(last) = hashes.next() else {
            return empty_root();
        };
        hashes.fold(*last, |right, left| node_hash(left, &right))
    }
}

/// Reads stored nodes. Proof building runs twice: once to learn which nodes it needs (so a
/// store can fetch them in one query), once with them.
pub trait Nodes {
    fn get(&mut self, node: Node) -> Hash;
}

struct Wanted(Vec<Node>);

impl Nodes for Wanted {
    fn get(&mut self, node: Node) -> Hash {
        self.0.push(node);
        [0; 32]
    }
}

struct Known<'a>(&'a HashMap<Node, Hash>);

impl Nodes for Known<'_> {
    fn get(&mut self, node: Node) -> Hash {
        self.0.get(&node).copied().unwrap_or([0; 32])
    }
}

/// The hash of leaves `[start, end)` of the tree (`start` aligned as RFC 6962's recursion
/// leaves it): a stored node when the range is a perfect subtree, else built from them.
fn range(nodes: &mut dyn Nodes, start: u64, end: u64) -> Hash {
    let n = end - start;
    if n.is_power_of_two() && start % n == 0 {
        return nodes.get(Node {
            level: n.trailing_zeros() as u8,
            index: start / n,
        });
    }
    let k = split(n);
    let left = range(nodes, start, start + k);
    let right = range(nodes, start + k, end);
    node_hash(&left, &right)
}

/// RFC 6962 §2.1.1 PATH(m, D[start:end]).
fn path(nodes: &mut dyn Nodes, m: u64, start: u64, end: u64, out: &mut Vec<Hash>) {
    let n = end - start;
    if n <= 1 {
        return;
    }
    let k = split(n);
    if m < k {
        path(nodes, m, start, start + k, out);
        out.push(range(nodes, start + k, end));
    } else {
        path(nodes, m - k, start + k, end, out);
        out.push(range(nodes, start, start + k));
    }
}

/// RFC 6962 §2.1.2 SUBPROOF(m, D[start:end], b).
fn subproof(
    nodes: &mut dyn Nodes,
    m: u64,
    start: u64,
    end: u64,
    complete: bool,
    out: &mut Vec<Hash>,
) {
    let n = end - start;
    if m == n {
        if !complete {
            out.push(range(nodes, start, end));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(nodes, m, start, start + k, complete, out);
        out.push(range(nodes, start + k, end));
    } else {
        subproof(nodes, m - k, start + k, end, false, out);
        out.push(range(nodes, start, start + k));
    }
}

/// What a proof or root is built from: `needed` names the nodes to read, `build` makes it.
pub struct Plan<T> {
    run: Box<dyn Fn(&mut dyn Nodes) -> T + Send + Sync>,
}

impl<T> Plan<T> {
    /// The stored nodes this needs, each once, sorted.
    pub fn needed(&self) -> Vec<Node> {
        let mut wanted = Wanted(Vec::new());
        (self.run)(&mut wanted);
        let mut nodes = wanted.0;
        nodes.sort();
        nodes.dedup();
        nodes
    }

    /// The answer from the nodes `needed` named (a missing one counts as zeros, which fails
    /// any verification rather than passing).
    pub fn build(&self, nodes: &HashMap<Node, Hash>) -> T {
        (self.run)(&mut Known(nodes))
    }
}

/// The root of the first `size` leaves.
pub fn root(size: u64) -> Plan<Hash> {
    Plan {
        run: Box::new(move |nodes| {
            if size == 0 {
                empty_root()
            } else {
                range(nodes, 0, size)
            }
        }),
    }
}

/// The audit path of leaf `index` in the tree of `size` leaves (`index < size`).
pub fn inclusion_proof(index: u64, size: u64) -> Plan<Vec<Hash>> {
    Plan {
        run: Box::new(move |nodes| {
            let mut out = Vec::new();
            path(nodes, index, 0, size, &mut out);
            out
        }),
    }
}

/// The proof that the tree of `old` leaves is a prefix of the tree of `new` (`old ≤ new`).
pub fn consistency_proof(old: u64, new: u64) -> Plan<Vec<Hash>> {
    Plan {
        run: Box::new(move |nodes| {
            let mut out = Vec::new();
            if old > 0 && old < new {
                subproof(nodes, old, 0, new, true, &mut out);
            }
            out
        }),
    }
}

/// Why a proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf {index} is not in a tree of {size} leaves")]
    OutOfRange { index: u64, size: u64 },
    #[error("the proof has the wrong number of hashes for these sizes")]
    WrongLength,
    #[error("the proof leads to a different root: the log is not the one the root was signed for")]
    RootMismatch,
    #[error("a tree of {new} leaves cannot extend one of {old}")]
    Shrunk { old: u64, new: u64 },
}

/// Checks an inclusion proof (RFC 9162 §2.1.3.2): leaf `leaf` at `index` of the tree of `size`
/// leaves whose root is `root`.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::OutOfRange { index, size });
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return Err(ProofError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength);
    }
    if r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Checks a consistency proof (RFC 9162 §2.1.4.2): the tree of `old` leaves with root
/// `old_root` is a prefix of the tree of `new` leaves with root `new_root`.
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old > new {
        return Err(ProofError::Shrunk { old, new });
    }
    if old == new {
        return if !proof.is_empty() {
            Err(ProofError::WrongLength)
        } else if old_root != new_root {
            Err(ProofError::RootMismatch)
        } else {
            Ok(())
        };
    }
    if old == 0 {
        // Every tree extends the empty one.
        return if proof.is_empty() && *old_root == empty_root() {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return Err(ProofError::WrongLength);
    };
    let (mut f, mut s) = (old - 1, new - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s == 0 {
            return Err(ProofError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength);
    }
    if fr != *old_root || sr != *new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree of `n` leaves (`leaf i` = "leaf i") and every node appending wrote.
    fn tree(n: u64) -> (Frontier, HashMap<Node, Hash>, Vec<Hash>) {
        let mut f = Frontier::default();
        let mut nodes = HashMap::new();
        let leaves: Vec<Hash> = (0..n)
            .map(|i| leaf_hash(format!("leaf {i}").as_bytes()))
            .collect();
        for l in &leaves {
            nodes.extend(f.append(*l));
        }
        (f, nodes, leaves)
    }

    /// RFC 6962's MTH, computed straight from the leaves, for comparison.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    fn built<T>(plan: Plan<T>, nodes: &HashMap<Node, Hash>) -> T {
        let needed = plan.needed();
        assert!(
            needed.iter().all(|n| nodes.contains_key(n)),
            "a plan needs only stored nodes: {needed:?}"
        );
        plan.build(nodes)
    }

    #[test]
    fn roots_from_the_frontier_and_from_stored_nodes_match_the_definition() {
        let (_, nodes, leaves) = tree(70);
        for size in 0..=70u64 {
            let expected = mth(&leaves[..size as usize]);
            assert_eq!(built(root(size), &nodes), expected, "size {size}");
            let (f, _, _) = tree(size);
            assert_eq!(f.root(), expected, "frontier of {size}");
            assert_eq!(
                Frontier::nodes(size)
                    .iter()
                    .map(|n| nodes[n])
                    .collect::<Vec<_>>(),
                f.hashes,
                "frontier nodes of {size}"
            );
        }
    }

    #[test]
    fn every_inclusion_proof_verifies_and_a_wrong_one_does_not() {
        let (_, nodes, leaves) = tree(40);
        for size in 1..=40u64 {
            let r = built(root(size), &nodes);
            for index in 0..size {
                let proof = built(inclusion_proof(index, size), &nodes);
                assert_eq!(
                    verify_inclusion(&leaves[index as usize], index, size, &proof, &r),
                    Ok(()),
                    "{index} of {size}"
                );
                let other = leaves[((index + 1) % 40) as usize];
                if size > 1 {
                    assert!(
                        verify_inclusion(&other, index, size, &proof, &r).is_err(),
                        "another leaf at {index} of {size}"
                    );
                    assert!(
                        verify_inclusion(
                            &leaves[index as usize],
                            (index + 1) % size,
                            size,
                            &proof,
                            &r
                        )
                        .is_err()
                            || size == 1
                    );
                }
            }
        }
        assert_eq!(
            verify_inclusion(&leaves[0], 3, 3, &[], &leaves[0]),
            Err(ProofError::OutOfRange { index: 3, size: 3 })
        );
    }

    #[test]
    fn every_consistency_proof_verifies_and_a_rewritten_prefix_does_not() {
        let (_, nodes, leaves) = tree(40);
        for new in 0..=40u64 {
            let new_root = built(root(new), &nodes);
            for old in 0..=new {
                let old_root = built(root(old), &nodes);
                let proof = built(consistency_proof(old, new), &nodes);
                assert_eq!(
                    verify_consistency(old, new, &old_root, &new_root, &proof),
                    Ok(()),
                    "{old} → {new}"
                );
                if old > 0 && old < new {
                    // The same sizes over a log whose first leaf was rewritten.
                    let mut forged = leaves[..old as usize].to_vec();
                    forged[0] = leaf_hash(b"rewritten");
                    assert!(
                        verify_consistency(old, new, &mth(&forged), &new_root, &proof).is_err(),
                        "{old} → {new}"
                    );
                }
            }
        }
        assert_eq!(
            verify_consistency(5, 4, &empty_root(), &empty_root(), &[]),
            Err(ProofError::Shrunk { old: 5, new: 4 })
        );
    }
}
