//! Where shards live: the mapping of object hashes to shards and of shards to nodes.
//!
//! * An object's shard is `floor(h * shards / 2^64)` where `h` is the first 8 bytes of its
//!   SHA-256: a stable function of the hash alone that splits the hash space into contiguous
//!   ranges, whatever the shard count.
//! * A shard's replicas are the `replication` nodes with the highest rendezvous (HRW) score
//!   `sha256("tessera-hrw" ++ shard ++ node)`. Removing a node moves only the shards it held and
//!   adding one moves only the shards it now wins: about 1/N of them.
//! * Shard `s` is Raft group `s + 1`; group 0 ([`META_GROUP`]) is the catalogue, replicated on up
//!   to five nodes, which stores the versioned placement and the live node set
//!   ([`Members`](crate::members::Members)).
//! * The placement stored in the catalogue says who *holds* each group now; the target
//!   computed from the members says who *should*. The two differ while replicas move (see
//!   `rebalance.rs`).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256 as Hasher};
use tessera_storage::Sha256;

use crate::types::NodeId;

/// The catalogue group: cluster-wide metadata, starting with the placement.
pub const META_GROUP: u32 = 0;

/// How many nodes replicate the catalogue group at most.
const META_REPLICAS: usize = 5;

/// A node as `cluster.toml` describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpec {
    pub id: NodeId,
    /// HTTP listen address (API, objects, UI).
    pub http: String,
    /// Internal RPC listen address.
    pub rpc: String,
}

/// The cluster as `cluster.toml` describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSpec {
    pub shards: u32,
    pub replication: usize,
    pub nodes: Vec<NodeSpec>,
}

impl ClusterSpec {
    pub fn node(&self, id: NodeId) -> Option<&NodeSpec> {
        self.nodes.iter().find(|n| n.id == id)
    }
}

/// The replicas of every group, in preference order (highest HRW score first).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// Bumped on every change of the node set; stored in the catalogue group.
    pub version: u64,
    pub shards: u32,
    /// `groups[g]` are the voters of Raft group `g` (index 0 is the catalogue).
    pub groups: Vec<Vec<NodeId>>,
}

impl Placement {
    /// Computes the placement of `spec` by rendezvous hashing.
    pub fn compute(spec: &ClusterSpec, version: u64) -> Placement {
        let ids: Vec<NodeId> = spec.nodes.iter().map(|n| n.id).collect();
        Placement::over(&ids, spec.shards, spec.replication, version)
    }

    /// The placement of `shards` shards with `replication` replicas over the nodes `ids`.
    pub fn over(ids: &[NodeId], shards: u32, replication: usize, version: u64) -> Placement {
        let mut groups = Vec::with_capacity(shards as usize + 1);
        groups.push(top_nodes(ids, u64::MAX, META_REPLICAS.min(ids.len())));
        for shard in 0..shards {
            groups.push(top_nodes(ids, u64::from(shard), replication.min(ids.len())));
        }
        Placement {
            version,
            shards,
            groups,
        }
    }

    /// Every node that holds a replica of some group.
    pub fn nodes(&self) -> BTreeSet<NodeId> {
        self.groups.iter().flatten().copied().collect()
    }

    /// Whether `node` holds a replica of `group`.
    pub fn holds(&self, group: u32, node: NodeId) -> bool {
        self.replicas(group).contains(&node)
    }

    /// The groups whose replica set differs from `target`'s (as sets).
    pub fn differing(&self, target: &Placement) -> Vec<u32> {
        (0..self.groups.len().max(target.groups.len()) as u32)
            .filter(|g| {
                let now: BTreeSet<_> = self.replicas(*g).iter().collect();
                let want: BTreeSet<_> = target.replicas(*g).iter().collect();
                now != want
            })
            .collect()
    }

    /// The group that owns `sha`.
    pub fn group_of(&self, sha: &Sha256) -> u32 {
        shard_of(sha, self.shards) + 1
    }

    /// The voters of `group` (empty for an unknown group).
    pub fn replicas(&self, group: u32) -> &[NodeId] {
        self.groups
            .get(group as usize)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The groups `node` is a voter of.
    pub fn groups_of(&self, node: NodeId) -> impl Iterator<Item = u32> + '_ {
        (0..self.groups.len() as u32).filter(move |g| self.replicas(*g).contains(&node))
    }
}

/// The shard of an object: the hash space split into `shards` contiguous ranges.
pub fn shard_of(sha: &Sha256, shards: u32) -> u32 {
    ((u128::from(sha.prefix_u64()) * u128::from(shards)) >> 64) as u32
}

fn top_nodes(ids: &[NodeId], key: u64, count: usize) -> Vec<NodeId> {
    let mut scored: Vec<(u64, NodeId)> = ids.iter().map(|&id| (hrw_score(key, id), id)).collect();
    scored.sort_unstable_by(|a, b| b.cmp(a));
    scored.into_iter().take(count).map(|(_, id)| id).collect()
}

fn hrw_score(key: u64, node: NodeId) -> u64 {
    let mut h = Hasher::new();
    h.update(b"tessera-hrw");
    h.update(key.to_be_bytes());
    h.update(node.to_be_bytes());
    let digest = h.finalize();
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(nodes: &[NodeId], shards: u32, replication: usize) -> ClusterSpec {
        ClusterSpec {
            shards,
            replication,
            nodes: nodes
                .iter()
                .map(|&id| NodeSpec {
                    id,
                    http: String::new(),
                    rpc: String::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn shards_cover_hash_space_in_order() {
        let lo = Sha256([0; 32]);
        let hi = Sha256([0xff; 32]);
        assert_eq!(shard_of(&lo, 64), 0);
        assert_eq!(shard_of(&hi, 64), 63);
        assert_eq!(shard_of(&hi, 7), 6);
        let mut mid = [0u8; 32];
        mid[0] = 0x80;
        assert_eq!(shard_of(&Sha256(mid), 64), 32);
    }

    #[test]
    fn replicas_are_distinct_and_balanced() {
        let p = Placement::compute(&spec(&[1, 2, 3, 4, 5], 64, 3), 1);
        let mut load = [0usize; 6];
        for g in 1..=64 {
            let r = p.replicas(g);
            assert_eq!(r.len(), 3);
            let mut sorted = r.to_vec();
            sorted.dedup();
            assert_eq!(sorted.len(), 3, "distinct replicas for group {g}");
            for n in r {
                load[*n as usize] += 1;
            }
        }
        // 192 replicas over 5 nodes: each node within a loose band around 38.
        for (n, held) in load.iter().enumerate().skip(1) {
            assert!((20..=60).contains(held), "node {n} holds {held}");
        }
        assert_eq!(p.replicas(META_GROUP).len(), 5);
    }

    #[test]
    fn removing_a_node_moves_only_its_shards() {
        let before = Placement::compute(&spec(&[1, 2, 3, 4, 5], 64, 3), 1);
        let after = Placement::compute(&spec(&[1, 2, 3, 4], 64, 3), 2);
        for g in 1..=64 {
            let old: Vec<_> = before.replicas(g).iter().filter(|n| **n != 5).collect();
            for n in &old {
                assert!(
                    after.replicas(g).contains(n),
                    "group {g} lost node {n} needlessly"
                );
            }
        }
    }

    #[test]
    fn adding_a_node_moves_about_one_nth_of_the_replicas() {
        for n in 3..8u64 {
            let ids: Vec<NodeId> = (1..=n).collect();
            let before = Placement::over(&ids, 64, 3, 1);
            let grown: Vec<NodeId> = (1..=n + 1).collect();
            let after = Placement::over(&grown, 64, 3, 2);
            let moved: usize = (1..=64)
                .map(|g| {
                    after
                        .replicas(g)
                        .iter()
                        .filter(|x| !before.holds(g, **x))
                        .count()
                })
                .sum();
            let share = moved as f64 / (64.0 * 3.0);
            let bound = 1.0 / (n + 1) as f64 + 0.10;
            assert!(
                share <= bound,
                "{n}+1 nodes: {moved} of 192 moved ({share:.3} > {bound:.3})"
            );
            assert!(moved > 0, "the new node got nothing");
            // Only the new node gains replicas.
            for g in 1..=64 {
                for x in after.replicas(g) {
                    assert!(before.holds(g, *x) || *x == n + 1);
                }
            }
        }
    }

    #[test]
    fn replication_is_capped_by_node_count() {
        let p = Placement::compute(&spec(&[9], 8, 3), 1);
        assert!(p.groups.iter().all(|r| r == &vec![9]));
        assert_eq!(p.groups_of(9).count(), 9);
    }
}
