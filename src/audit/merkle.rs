//! RFC 6962 Merkle trees: hashing, proofs from stored subtree hashes, and proof verification
//! (RFC 9162 §2.1.3.2 and §2.1.4.2). Verification needs nothing but hashes, so the client uses
//! the same functions to check what the appliance sends.
//!
//! Hashes: a leaf is `SHA-256(0x00 ‖ entry)`, an interior node `SHA-256(0x01 ‖ left ‖ right)`,
//! the empty tree `SHA-256("")`. A tree of `n` leaves splits at `k`, the largest power of two
//! below `n`. Every *perfect* subtree (`2^level` leaves starting at a multiple of `2^level`) is
//! stored once, when it completes; any other subtree hash is combined from those.

use sha2::{Digest as _, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// Proof failures: what was sent does not prove what it claims.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("index {index} is not in a tree of {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("a hash is not 32 bytes")]
    HashLength,
    #[error("the proof has the wrong number of hashes")]
    ProofLength,
    #[error("the proof does not lead to the root")]
    RootMismatch,
    #[error("sizes {0} and {1} admit no consistency proof")]
    Sizes(u64, u64),
}

pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(entry);
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

/// The largest power of two strictly below `n` (`n` ≥ 2).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// Where subtree hashes come from: the store, or a list of leaves in tests.
pub trait Nodes {
    type Error: From<ProofError>;
    /// The hash of the perfect subtree of `2^level` leaves starting at leaf `index << level`.
    fn node(&self, level: u32, index: u64) -> Result<Hash, Self::Error>;
}

/// `MTH(D[start..end])`, combined from perfect subtrees.
pub fn subtree_hash<N: Nodes>(nodes: &N, start: u64, end: u64) -> Result<Hash, N::Error> {
    let n = end - start;
    if n == 0 {
        return Ok(empty_root());
    }
    if n.is_power_of_two() && start.is_multiple_of(n) {
        return nodes.node(n.trailing_zeros(), start >> n.trailing_zeros());
    }
    let k = split(n);
    let left = subtree_hash(nodes, start, start + k)?;
    let right = subtree_hash(nodes, start + k, end)?;
    Ok(node_hash(&left, &right))
}

/// The audit path of leaf `index` in the tree of the first `size` leaves (RFC 6962 `PATH`).
pub fn inclusion_proof<N: Nodes>(nodes: &N, index: u64, size: u64) -> Result<Vec<Hash>, N::Error> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size }.into());
    }
    let mut proof = Vec::new();
    path(nodes, index, 0, size, &mut proof)?;
    Ok(proof)
}

fn path<N: Nodes>(
    nodes: &N,
    m: u64,
    start: u64,
    end: u64,
    proof: &mut Vec<Hash>,
) -> Result<(), N::Error> {
    let n = end - start;
    if n <= 1 {
        return Ok(());
    }
    let k = split(n);
    if m < k {
        path(nodes, m, start, start + k, proof)?;
        proof.push(subtree_hash(nodes, start + k, end)?);
    } else {
        path(nodes, m - k, start + k, end, proof)?;
        proof.push(subtree_hash(nodes, start, start + k)?);
    }
    Ok(())
}

/// The proof that the tree of `old` leaves is a prefix of the tree of `new` (RFC 6962 `PROOF`).
pub fn consistency_proof<N: Nodes>(nodes: &N, old: u64, new: u64) -> Result<Vec<Hash>, N::Error> {
    if old == 0 || old > new {
        return Err(ProofError::Sizes(old, new).into());
    }
    let mut proof = Vec::new();
    subproof(nodes, old, 0, new, true, &mut proof)?;
    Ok(proof)
}

fn subproof<N: Nodes>(
    nodes: &N,
    m: u64,
    start: u64,
    end: u64,
    whole: bool,
    proof: &mut Vec<Hash>,
) -> Result<(), N::Error> {
    let n = end - start;
    if m == n {
        if !whole {
            proof.push(subtree_hash(nodes, start, end)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(nodes, m, start, start + k, whole, proof)?;
        proof.push(subtree_hash(nodes, start + k, end)?);
    } else {
        subproof(nodes, m - k, start + k, end, false, proof)?;
        proof.push(subtree_hash(nodes, start, start + k)?);
    }
    Ok(())
}

fn hash(bytes: &[u8]) -> Result<Hash, ProofError> {
    bytes.try_into().map_err(|_| ProofError::HashLength)
}

/// Checks that `leaf` is leaf `index` of the tree of `size` leaves whose root is `root`.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &[u8],
    proof: &[Vec<u8>],
    root: &[u8],
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (leaf, root) = (hash(leaf)?, hash(root)?);
    let (mut f, mut s) = (index, size - 1);
    let mut r = leaf;
    for p in proof {
        let p = hash(p)?;
        if s == 0 {
            return Err(ProofError::ProofLength);
        }
        if f & 1 == 1 || f == s {
            r = node_hash(&p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, &p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::ProofLength);
    }
    if r != root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Checks that the tree of `old` leaves with root `old_root` is a prefix of the tree of `new`
/// leaves with root `new_root`. A consistency proof from the empty tree proves nothing and is
/// refused; equal sizes need equal roots and an empty proof.
pub fn verify_consistency(
    old: u64,
    new: u64,
    proof: &[Vec<u8>],
    old_root: &[u8],
    new_root: &[u8],
) -> Result<(), ProofError> {
    if old == 0 || old > new {
        return Err(ProofError::Sizes(old, new));
    }
    if old == new {
        if !proof.is_empty() {
            return Err(ProofError::ProofLength);
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    let (old_root, new_root) = (hash(old_root)?, hash(new_root)?);
    let mut path: Vec<Hash> = proof.iter().map(|p| hash(p)).collect::<Result<_, _>>()?;
    if path.is_empty() {
        return Err(ProofError::ProofLength);
    }
    if old.is_power_of_two() {
        path.insert(0, old_root);
    }
    let (mut f, mut s) = (old - 1, new - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if s == 0 {
            return Err(ProofError::ProofLength);
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
        return Err(ProofError::ProofLength);
    }
    if fr != old_root || sr != new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// The right edge of a tree: the perfect subtrees its size decomposes into, largest first, as
/// `(level, hash)`. Appending a leaf merges equal levels; the root folds the edge from the right.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    edge: Vec<(u32, Hash)>,
    size: u64,
}

impl Frontier {
    /// The frontier of a tree of `size` leaves, read from stored perfect subtrees.
    pub fn load<N: Nodes>(nodes: &N, size: u64) -> Result<Self, N::Error> {
        let mut edge = Vec::new();
        let mut start = 0;
        for level in (0..64).rev() {
            if size & (1 << level) != 0 {
                edge.push((level, nodes.node(level, start >> level)?));
                start += 1 << level;
            }
        }
        Ok(Frontier { edge, size })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf; calls `completed(level, index, hash)` for every perfect subtree it
    /// completes, the leaf itself included.
    pub fn push(&mut self, leaf: Hash, mut completed: impl FnMut(u32, u64, Hash)) {
        let index = self.size;
        let mut current = (0, leaf);
        completed(0, index, leaf);
        while let Some(&(level, left)) = self.edge.last() {
            if level != current.0 {
                break;
            }
            self.edge.pop();
            let merged = (level + 1, node_hash(&left, &current.1));
            completed(merged.0, index >> merged.0, merged.1);
            current = merged;
        }
        self.edge.push(current);
        self.size += 1;
    }

    pub fn root(&self) -> Hash {
        let mut iter = self.edge.iter().rev();
        let Some(&(_, mut root)) = iter.next() else {
            return empty_root();
        };
        for (_, left) in iter {
            root = node_hash(left, &root);
        }
        root
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// All perfect subtree hashes of a list of leaves, computed directly.
    struct Leaves(Vec<Hash>);

    impl Nodes for Leaves {
        type Error = ProofError;
        fn node(&self, level: u32, index: u64) -> Result<Hash, ProofError> {
            let width = 1u64 << level;
            let start = (index * width) as usize;
            let leaves = self
                .0
                .get(start..start + width as usize)
                .ok_or(ProofError::ProofLength)?;
            Ok(reference_root(leaves))
        }
    }

    /// RFC 6962 MTH, straight from the definition.
    fn reference_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
            }
        }
    }

    fn leaves(n: u64) -> Leaves {
        Leaves((0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect())
    }

    #[test]
    fn frontier_root_matches_the_definition_and_records_every_node() {
        let all = leaves(70);
        let mut frontier = Frontier::default();
        let mut stored = std::collections::HashMap::new();
        for (n, leaf) in all.0.iter().enumerate() {
            frontier.push(*leaf, |level, index, hash| {
                stored.insert((level, index), hash);
            });
            assert_eq!(
                frontier.root(),
                reference_root(&all.0[..=n]),
                "size {}",
                n + 1
            );
        }
        for ((level, index), hash) in &stored {
            assert_eq!(*hash, all.node(*level, *index).unwrap());
        }
        assert_eq!(Frontier::load(&all, 70).unwrap().root(), frontier.root());
    }

    #[test]
    fn proofs_round_trip_for_every_small_tree() {
        let all = leaves(33);
        for size in 1..=33u64 {
            let prefix = Leaves(all.0[..size as usize].to_vec());
            let root = reference_root(&prefix.0);
            for index in 0..size {
                let proof = inclusion_proof(&prefix, index, size).unwrap();
                let proof: Vec<Vec<u8>> = proof.iter().map(|h| h.to_vec()).collect();
                verify_inclusion(index, size, &prefix.0[index as usize], &proof, &root).unwrap();
                if index + 1 < size {
                    let other = &prefix.0[index as usize + 1];
                    assert!(verify_inclusion(index, size, other, &proof, &root).is_err());
                }
            }
            for old in 1..=size {
                let old_root = reference_root(&prefix.0[..old as usize]);
                let proof: Vec<Vec<u8>> = consistency_proof(&prefix, old, size)
                    .unwrap()
                    .iter()
                    .map(|h| h.to_vec())
                    .collect();
                verify_consistency(old, size, &proof, &old_root, &root).unwrap();
                if old < size {
                    assert!(verify_consistency(old, size, &proof, &root, &root).is_err());
                }
            }
        }
    }
}
