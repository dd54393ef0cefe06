//! The node set and the groups a node hosts, as they change while the cluster runs.
//!
//! The catalogue stores two versioned records: the **members** (the live node set with
//! addresses, and the nodes being removed) and the **placement** (who holds each group now).
//! Each node reads both from its own catalogue replica four times a second and
//!
//! * routes by them (a node that joined is reachable as soon as its replica has the members),
//! * opens a replica of every group it holds or should hold (the target computed from the
//!   members): an empty, uninitialised Raft that waits for the group's leader to add it as a
//!   learner (`rebalance.rs`),
//! * and forgets a replica it neither holds nor should hold, but only once the group's leader
//!   says this node is no longer in the group's membership: a replica is deleted only after
//!   the group has stopped counting on it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use openraft::BasicNode;
use serde::{Deserialize, Serialize};
use tessera_storage::{keys, Cf, Store};

use crate::cluster::{Cluster, Layout};
use crate::command::Command;
use crate::error::ClusterError;
use crate::members::{Members, MembersError};
use crate::placement::{ClusterSpec, NodeSpec, Placement, META_GROUP};
use crate::proto::{MembershipRequest, MovesRequest};
use crate::rebalance::MovesReport;
use crate::state_machine::{MEMBERS_KEY, PLACEMENT_KEY};
use crate::types::NodeId;

/// How often a node looks at its catalogue replica for a new node set or placement.
const REFRESH: Duration = Duration::from_millis(250);
/// How long asking a group's member about its membership may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// The layout stored in `store`'s catalogue replica; before the catalogue has one (a new
/// cluster, a node that has not joined yet) the placement `spec` gives.
pub(crate) async fn stored_layout(
    store: &Arc<Store>,
    spec: &ClusterSpec,
) -> Result<Layout, ClusterError> {
    let store = store.clone();
    let (placement, members) = tokio::task::spawn_blocking(move || {
        let read = |name: &str| store.get(Cf::Catalog, &keys::named(META_GROUP, name));
        Ok::<_, ClusterError>((read(PLACEMENT_KEY)?, read(MEMBERS_KEY)?))
    })
    .await
    .map_err(|e| ClusterError::Internal(e.to_string()))??;
    let decode = |e: bincode::Error| ClusterError::Internal(format!("catalogue layout: {e}"));
    let placement = match placement {
        Some(raw) => bincode::deserialize::<Placement>(&raw).map_err(decode)?,
        None => Placement::compute(spec, 1),
    };
    let members = match members {
        Some(raw) => Some(bincode::deserialize::<Members>(&raw).map_err(decode)?),
        None => None,
    };
    let live = match &members {
        Some(m) => m.spec(placement.shards, spec.replication),
        None => spec.clone(),
    };
    Ok(Layout::new(Arc::new(live), Arc::new(placement), members))
}

/// The groups `me` opens at start-up: the catalogue, the groups it holds or should hold, and
/// any group it has Raft state of (a replica that was being added or removed when the node
/// stopped: the refresh loop settles it).
pub(crate) async fn groups_to_host(
    store: &Arc<Store>,
    layout: &Layout,
    me: NodeId,
) -> Result<Vec<u32>, ClusterError> {
    let mut groups = wanted(layout, me);
    let store = store.clone();
    let with_state = tokio::task::spawn_blocking(move || store.groups_with(Cf::RaftMeta))
        .await
        .map_err(|e| ClusterError::Internal(e.to_string()))??;
    groups.extend(with_state);
    Ok(groups.into_iter().collect())
}

/// The groups `me` holds now or should hold, and always the catalogue.
fn wanted(layout: &Layout, me: NodeId) -> BTreeSet<u32> {
    let mut groups: BTreeSet<u32> = layout.placement.groups_of(me).collect();
    groups.extend(layout.target().groups_of(me));
    groups.insert(META_GROUP);
    groups
}

/// Starts the loop that keeps this node's layout and hosted groups in step with its catalogue
/// replica.
pub(crate) fn spawn(cluster: Weak<Cluster>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(REFRESH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(this) = cluster.upgrade() else {
                return;
            };
            if this.is_draining() {
                continue;
            }
            if this.check_damage().await {
                return;
            }
            this.finish_rejoin().await;
            if let Err(e) = this.follow_layout().await {
                tracing::debug!(error = %e, "following the catalogue's layout");
            }
        }
    });
}

/// Why a change of the node set did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The change makes no sense for this node set (the API's 409).
    #[error(transparent)]
    Refused(#[from] MembersError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

/// The node set, the moves to go and those under way, for `tessera status` and the admin API.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MembershipReport {
    pub members: Members,
    pub placement_version: u64,
    /// Groups whose holders differ from the target: moves still to make.
    pub to_go: Vec<u32>,
    /// Per group to go: how many replicas it gains (each receives a copy of the group).
    pub incoming: BTreeMap<u32, usize>,
    /// Per node: groups held now, and in the target.
    pub held: BTreeMap<NodeId, (usize, usize)>,
    /// The planner's moves (`None` when the catalogue leader did not answer).
    pub moves: Option<MovesReport>,
}

impl Cluster {
    /// Adds `node` to the cluster (it must be running and reachable with a certificate of the
    /// cluster CA); the planner then moves about 1/N of the replicas to it.
    pub async fn add_node(&self, node: NodeSpec) -> Result<Members, ChangeError> {
        // A member's channel is never replaced by a request: the node set decides (adding a
        // member again is a no-op, with other addresses a refusal).
        if self.spec().node(node.id).is_none() {
            self.peers()
                .learn(std::slice::from_ref(&node))
                .map_err(|e| ClusterError::Internal(format!("peers: {e}")))?;
            if let Err(e) = self.node_status(node.id).await {
                return Err(MembersError::NotRunning {
                    node: node.id,
                    rpc: node.rpc.clone(),
                    error: e.to_string(),
                }
                .into());
            }
        }
        self.change_members(|m| m.adding(&node)).await
    }

    /// Takes `node` out of the cluster: its replicas move to the other nodes, then it leaves
    /// the catalogue. `decommission` is for a node that is gone for good (its replicas are
    /// rebuilt from the others); otherwise the node must answer, and serves until its
    /// replicas have moved.
    pub async fn remove_node(
        &self,
        node: NodeId,
        decommission: bool,
    ) -> Result<Members, ChangeError> {
        if !decommission {
            if let Err(e) = self.node_status(node).await {
                let rpc = self
                    .spec()
                    .node(node)
                    .map(|n| n.rpc.clone())
                    .unwrap_or_default();
                return Err(MembersError::Unreachable {
                    node,
                    rpc,
                    error: e.to_string(),
                }
                .into());
            }
        }
        let replication = self.spec().replication;
        self.change_members(|m| m.removing(node, replication)).await
    }

    /// Applies `change` to the stored node set (read after a barrier) and proposes the result,
    /// until it is the stored one: two changes made at once through different nodes get the
    /// same next version, and the one applied second is a no-op, so it is made again on top.
    async fn change_members(
        &self,
        change: impl Fn(&Members) -> Result<Option<Members>, MembersError>,
    ) -> Result<Members, ChangeError> {
        for _ in 0..5 {
            let (_, current) = self.current_members().await?;
            let Some(next) = change(&current)? else {
                return Ok(current);
            };
            self.check_versions(&current).await?;
            self.propose(META_GROUP, Command::SetMembers(next.clone()), 0)
                .await?;
            self.catalog_barrier().await?;
            let stored = stored_layout(self.store(), self.config_spec()).await?;
            if stored.members.as_ref() == Some(&next) {
                tracing::info!(version = next.version, "node set changed");
                return Ok(next);
            }
        }
        Err(
            ClusterError::Unavailable("the node set kept changing meanwhile; try again".into())
                .into(),
        )
    }

    /// Refuses a change while a member that answers runs a version that could not apply a
    /// `SetMembers` entry (it has no `Moves` RPC): during a rolling upgrade its Raft would stop
    /// on the entry. A member that does not answer is not asked (it may be the one being
    /// decommissioned); it must run this version when it comes back.
    async fn check_versions(&self, members: &Members) -> Result<(), ChangeError> {
        for node in members.nodes.iter().filter(|n| n.id != self.me()) {
            let reply = self
                .ask(
                    node.id,
                    ASK_TIMEOUT,
                    MovesRequest {},
                    |mut c, r| async move { c.moves(r).await },
                )
                .await;
            if let Err(ClusterError::Internal(m)) = &reply {
                if m.starts_with("Unimplemented") {
                    return Err(MembersError::OldVersion(node.id).into());
                }
            }
        }
        Ok(())
    }

    /// The stored layout after a catalogue barrier, and its node set — before the first change,
    /// the nodes the placement uses with their addresses from `cluster.toml`.
    async fn current_members(&self) -> Result<(Layout, Members), ClusterError> {
        self.catalog_barrier().await?;
        let layout = stored_layout(self.store(), self.config_spec()).await?;
        let members = layout
            .members
            .clone()
            .unwrap_or_else(|| Members::seed(self.config_spec(), &layout.placement.nodes()));
        Ok((layout, members))
    }

    /// The node set and the state of the moves (see [`MembershipReport`]).
    pub async fn membership_report(&self) -> Result<MembershipReport, ClusterError> {
        let (layout, members) = self.current_members().await?;
        let target = layout.target();
        let mut held: BTreeMap<NodeId, (usize, usize)> = BTreeMap::new();
        for node in &members.nodes {
            held.insert(
                node.id,
                (
                    layout.placement.groups_of(node.id).count(),
                    target.groups_of(node.id).count(),
                ),
            );
        }
        let to_go = layout.placement.differing(target);
        let incoming = to_go
            .iter()
            .map(|g| {
                let new = target
                    .replicas(*g)
                    .iter()
                    .filter(|n| !layout.placement.holds(*g, **n))
                    .count();
                (*g, new)
            })
            .collect();
        Ok(MembershipReport {
            placement_version: layout.placement.version,
            to_go,
            incoming,
            held,
            moves: self.planner_moves().await,
            members,
        })
    }

    /// The moves of the planner (the catalogue leader), asked of it.
    async fn planner_moves(&self) -> Option<MovesReport> {
        if self.leads(META_GROUP) {
            return Some(self.moves.report());
        }
        let leader = self.group(META_GROUP)?.metrics().borrow().current_leader?;
        let reply = self
            .ask(
                leader,
                ASK_TIMEOUT,
                MovesRequest {},
                |mut c, r| async move { c.moves(r).await },
            )
            .await
            .ok()?;
        bincode::deserialize(&reply.report).ok()
    }

    /// One round of the refresh loop (see the module).
    async fn follow_layout(&self) -> Result<(), ClusterError> {
        let fresh = stored_layout(self.store(), self.config_spec()).await?;
        let old = self.layout();
        let changed = fresh.placement.version != old.placement.version
            || fresh.members.as_ref().map(|m| m.version) != old.members.as_ref().map(|m| m.version);
        if changed {
            self.peers()
                .learn(&fresh.spec.nodes)
                .map_err(|e| ClusterError::Internal(format!("peers: {e}")))?;
            tracing::info!(
                placement = fresh.placement.version,
                members = fresh.members.as_ref().map(|m| m.version),
                "layout changed"
            );
            self.set_layout(fresh);
        }
        let layout = self.layout();
        let wanted = wanted(&layout, self.me());
        for group in &wanted {
            if !self.hosts(*group) {
                self.open_group(*group).await?;
                tracing::info!(group, "opened a replica (placed or moving here)");
            }
        }
        let surplus: Vec<u32> = self
            .group_ids()
            .into_iter()
            .filter(|g| !wanted.contains(g))
            .collect();
        // The catalogue may be behind: a replica is only forgotten on a current view.
        if surplus.is_empty() || layout.members.is_none() {
            return Ok(());
        }
        self.catalog_barrier().await?;
        for group in surplus {
            if self.left(group).await {
                self.forget(group).await?;
            }
        }
        Ok(())
    }

    /// Whether the leader of `group` (found among its holders) says this node is neither a
    /// voter nor a learner of it.
    async fn left(&self, group: u32) -> bool {
        for node in self.replicas_of(group) {
            if node == self.me() {
                continue;
            }
            let request = MembershipRequest { group };
            let reply = self
                .ask(node, ASK_TIMEOUT, request, |mut c, r| async move {
                    c.membership(r).await
                })
                .await;
            match reply {
                Ok(r) if r.leader => {
                    return !r.voters.contains(&self.me()) && !r.learners.contains(&self.me())
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(group, node, error = %e, "asking for a membership"),
            }
        }
        false
    }

    /// Stops this node's replica of `group` and deletes its data (see
    /// [`Store::forget_group`]).
    async fn forget(&self, group: u32) -> Result<(), ClusterError> {
        self.close_group(group).await;
        let store = self.store().clone();
        let snapshots = self.snapshot_dir().to_path_buf();
        tokio::task::spawn_blocking(move || {
            store.forget_group(group)?;
            crate::snapshot_store::forget_group(&snapshots, group)
                .map_err(|e| ClusterError::Internal(format!("snapshots of group {group}: {e}")))?;
            Ok::<_, ClusterError>(())
        })
        .await
        .map_err(|e| ClusterError::Internal(e.to_string()))??;
        metrics::counter!("tessera_replicas_removed_total").increment(1);
        tracing::info!(group, "left the group: replica deleted");
        Ok(())
    }

    /// The membership of `group` as this node's replica sees it: whether it leads, its voters
    /// and its learners.
    pub(crate) fn group_membership(&self, group: u32) -> (bool, Vec<NodeId>, Vec<NodeId>) {
        let Some(raft) = self.group(group) else {
            return (false, Vec::new(), Vec::new());
        };
        let m = raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let learners: Vec<NodeId> = membership.learner_ids().collect();
        (m.state == openraft::ServerState::Leader, voters, learners)
    }

    /// The address other nodes reach `node`'s Raft groups at.
    pub(crate) fn raft_address(&self, node: NodeId) -> Option<BasicNode> {
        self.spec().node(node).map(|n| BasicNode {
            addr: n.rpc.clone(),
        })
    }
}
