//! The live node set: which nodes make up the cluster, where they listen, and which are
//! leaving. Stored in the catalogue (versioned, see `state_machine.rs`); `cluster.toml` only
//! seeds it, and `tessera node add/remove/decommission` change it.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::placement::{ClusterSpec, NodeSpec, Placement};
use crate::types::NodeId;

/// Why a change of the node set is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum MembersError {
    #[error("node {0} is a member already, with other addresses ({1})")]
    OtherAddresses(NodeId, String),
    #[error("address {address} is node {owner}'s already")]
    AddressInUse { address: String, owner: NodeId },
    #[error("node {0} is leaving the cluster; it can join again once it has left")]
    StillLeaving(NodeId),
    #[error("node {0} is not a member of the cluster")]
    Unknown(NodeId),
    #[error(
        "removing node {node} would leave {left} node(s) for {replication} replicas per shard"
    )]
    TooFew {
        node: NodeId,
        left: usize,
        replication: usize,
    },
    #[error("node id 0 is reserved")]
    ZeroId,
    #[error("node {node} does not answer at {rpc} ({error}); start it first with `tessera run --id {node}` (with a certificate from `tessera ca --id {node}`)")]
    NotRunning {
        node: NodeId,
        rpc: String,
        error: String,
    },
    #[error("node {node} does not answer at {rpc} ({error}); to take out a node that is gone for good, decommission it")]
    Unreachable {
        node: NodeId,
        rpc: String,
        error: String,
    },
}

/// The live node set, stored in the catalogue: the nodes of the cluster with their addresses,
/// and those being removed. `cluster.toml` only seeds it; `tessera node add/remove` change it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Members {
    /// Bumped on every change.
    pub version: u64,
    pub nodes: Vec<NodeSpec>,
    /// Nodes whose replicas are being moved away (removed or decommissioned): they hold no
    /// replica in the target placement and leave the node set once they hold none at all.
    pub leaving: BTreeSet<NodeId>,
}

impl Members {
    /// The node set with `node` added; `None` when it is a member already with the same
    /// addresses (adding is idempotent).
    pub fn adding(&self, node: &NodeSpec) -> Result<Option<Members>, MembersError> {
        if node.id == 0 {
            return Err(MembersError::ZeroId);
        }
        if let Some(known) = self.node(node.id) {
            if self.leaving.contains(&node.id) {
                return Err(MembersError::StillLeaving(node.id));
            }
            if known == node {
                return Ok(None);
            }
            return Err(MembersError::OtherAddresses(
                node.id,
                format!("http {}, rpc {}", known.http, known.rpc),
            ));
        }
        for other in &self.nodes {
            for address in [&node.http, &node.rpc] {
                if *address == other.http || *address == other.rpc {
                    return Err(MembersError::AddressInUse {
                        address: address.clone(),
                        owner: other.id,
                    });
                }
            }
        }
        let mut next = self.clone();
        next.version += 1;
        next.nodes.push(node.clone());
        next.nodes.sort_by_key(|n| n.id);
        Ok(Some(next))
    }

    /// The node set with `node` leaving (its replicas move to the others first); `None` when
    /// it is leaving already.
    pub fn removing(
        &self,
        node: NodeId,
        replication: usize,
    ) -> Result<Option<Members>, MembersError> {
        if self.node(node).is_none() {
            return Err(MembersError::Unknown(node));
        }
        if self.leaving.contains(&node) {
            return Ok(None);
        }
        let left = self.active().len() - 1;
        if left < replication.max(1) {
            return Err(MembersError::TooFew {
                node,
                left,
                replication,
            });
        }
        let mut next = self.clone();
        next.version += 1;
        next.leaving.insert(node);
        Ok(Some(next))
    }

    /// The node set as `spec` describes it, restricted to `holding` (the nodes the stored
    /// placement uses), so that a node only listed in a newer `cluster.toml` is not taken in
    /// without `tessera node add`.
    pub fn seed(spec: &ClusterSpec, holding: &BTreeSet<NodeId>) -> Members {
        Members {
            version: 1,
            nodes: spec
                .nodes
                .iter()
                .filter(|n| holding.contains(&n.id))
                .cloned()
                .collect(),
            leaving: BTreeSet::new(),
        }
    }

    pub fn node(&self, id: NodeId) -> Option<&NodeSpec> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The nodes that keep or receive replicas.
    pub fn active(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .map(|n| n.id)
            .filter(|id| !self.leaving.contains(id))
            .collect()
    }

    /// Where every group should be: rendezvous hashing over the active nodes. Adding the N-th
    /// node makes it win about 1/N of the replicas, and nothing else moves.
    pub fn target(&self, shards: u32, replication: usize) -> Placement {
        Placement::over(&self.active(), shards, replication, 0)
    }

    /// The members as a [`ClusterSpec`] (the node set routing and status use).
    pub fn spec(&self, shards: u32, replication: usize) -> ClusterSpec {
        ClusterSpec {
            shards,
            replication,
            nodes: self.nodes.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::META_GROUP;

    fn spec(nodes: &[NodeId], shards: u32, replication: usize) -> ClusterSpec {
        ClusterSpec {
            shards,
            replication,
            nodes: nodes
                .iter()
                .map(|&id| NodeSpec {
                    id,
                    http: format!("127.0.0.1:{}", 8080 + id),
                    rpc: format!("127.0.0.1:{}", 9080 + id),
                })
                .collect(),
        }
    }

    #[test]
    fn leaving_members_are_out_of_the_target() {
        let spec = spec(&[1, 2, 3, 4], 16, 3);
        let mut members = Members::seed(&spec, &[1, 2, 3, 4].into_iter().collect());
        members.leaving.insert(2);
        let target = members.target(16, 3);
        assert!(!target.nodes().contains(&2));
        assert_eq!(target.replicas(META_GROUP).len(), 3);
        let unseeded = Members::seed(&spec, &[1, 2, 3].into_iter().collect());
        assert!(unseeded.node(4).is_none());
    }

    #[test]
    fn adding_is_idempotent_and_refuses_clashes() {
        let three = spec(&[1, 2, 3], 8, 3);
        let members = Members::seed(&three, &[1, 2, 3].into_iter().collect());
        let four = spec(&[4], 8, 3).nodes[0].clone();
        let added = members.adding(&four).expect("add").expect("changed");
        assert_eq!(added.version, 2);
        assert_eq!(added.adding(&four), Ok(None));
        let moved = NodeSpec {
            rpc: "127.0.0.1:1".into(),
            ..four.clone()
        };
        assert!(matches!(
            added.adding(&moved),
            Err(MembersError::OtherAddresses(4, _))
        ));
        let squatter = NodeSpec { id: 5, ..four };
        assert!(matches!(
            added.adding(&squatter),
            Err(MembersError::AddressInUse { owner: 4, .. })
        ));
    }

    #[test]
    fn removing_keeps_enough_nodes_for_the_replicas() {
        let four = spec(&[1, 2, 3, 4], 8, 3);
        let members = Members::seed(&four, &[1, 2, 3, 4].into_iter().collect());
        let leaving = members.removing(2, 3).expect("remove").expect("changed");
        assert_eq!(leaving.removing(2, 3), Ok(None));
        assert!(matches!(
            leaving.removing(3, 3),
            Err(MembersError::TooFew { left: 2, .. })
        ));
        assert_eq!(leaving.removing(9, 3), Err(MembersError::Unknown(9)));
        assert_eq!(
            leaving.adding(&four.nodes[1]),
            Err(MembersError::StillLeaving(2))
        );
    }
}
