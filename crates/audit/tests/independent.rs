//! The log's roots and proofs against an independent RFC 6962 implementation (the `ct-merkle`
//! crate): same roots for every size, and each side's proofs verify with the other's code.

use std::collections::HashMap;

use ct_merkle::mem_backed_tree::MemoryBackedTree;
use ct_merkle::{ConsistencyProof, InclusionProof, RootHash};
use sha2::Sha256;
use signoff_audit::merkle::{self, Frontier, Hash, Node};

fn data(i: u64) -> Vec<u8> {
    signoff_audit::leaf_data(
        &format!("req_{i:04}"),
        i % 7 + 1,
        &format!("sha256:{i:064x}"),
    )
}

fn hashes(bytes: &[u8]) -> Vec<Hash> {
    bytes.chunks(32).map(|c| c.try_into().unwrap()).collect()
}

#[test]
fn roots_and_proofs_match_an_independent_implementation() {
    const N: u64 = 70;
    let mut theirs: MemoryBackedTree<Sha256, Vec<u8>> = MemoryBackedTree::new();
    let mut ours = Frontier::default();
    let mut nodes: HashMap<Node, Hash> = HashMap::new();
    let mut their_roots: Vec<RootHash<Sha256>> = vec![];
    for i in 0..N {
        theirs.push(data(i));
        nodes.extend(ours.append(merkle::leaf_hash(&data(i))));
        let root: Hash = (*theirs.root().as_bytes()).into();
        assert_eq!(ours.root(), root, "root of {} leaves", i + 1);
        their_roots.push(theirs.root());
        // Every leaf's inclusion proof, both ways, in the tree of this size.
        let size = i + 1;
        for index in 0..size {
            let proof = merkle::inclusion_proof(index, size).build(&nodes);
            let digests: Vec<_> = proof.iter().map(|h| (*h).into()).collect();
            let as_theirs = InclusionProof::<Sha256>::from_digests(digests.iter());
            theirs
                .root()
                .verify_inclusion(&data(index), index, &as_theirs)
                .unwrap_or_else(|e| panic!("{index} of {size}: {e:?}"));
            let their_proof = hashes(theirs.prove_inclusion(index as usize).as_bytes());
            assert_eq!(their_proof, proof, "{index} of {size}");
            assert_eq!(
                merkle::verify_inclusion(
                    &merkle::leaf_hash(&data(index)),
                    index,
                    size,
                    &their_proof,
                    &ours.root()
                ),
                Ok(())
            );
        }
    }
    // Consistency from every earlier size to the full tree.
    for old in 1..N {
        let proof = merkle::consistency_proof(old, N).build(&nodes);
        let digests: Vec<_> = proof.iter().map(|h| (*h).into()).collect();
        let as_theirs = ConsistencyProof::<Sha256>::from_digests(digests.iter());
        theirs
            .root()
            .verify_consistency(&their_roots[old as usize - 1], &as_theirs)
            .unwrap_or_else(|e| panic!("{old} → {N}: {e:?}"));
        let their_proof = hashes(theirs.prove_consistency((N - old) as usize).as_bytes());
        assert_eq!(their_proof, proof, "{old} → {N}");
    }
}
