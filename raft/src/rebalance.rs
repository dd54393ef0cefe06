//! Moving replicas when nodes join or leave: the planner on the catalogue leader and the
//! executor on each group's leader.
//!
//! **Planner.** While a node leads the catalogue it compares, once a second, the placement
//! (who holds each group) with the target computed from the members (who should). For each
//! group that differs it starts a move, at most `max_moves` at once over the whole cluster
//! (there is one planner: the catalogue leader). A move asks the group's leader to reach the
//! target voters (`Reconfigure`), and once it has, records the group's new holders in a new
//! placement version. A planner that loses the catalogue's leadership stops; the next leader
//! finds the same differences and asks again: the executor's steps are idempotent.
//!
//! **Executor** (`Cluster::reconfigure_here`, on the group's leader), one step at a time:
//! 1. every new node is added as a **learner** and the executor waits until the learner's log
//!    reaches the leader's (a snapshot of the group, then the log), with no deadline while it
//!    makes progress;
//! 2. the voters are replaced by the target with openraft's joint consensus (`change_membership`:
//!    a joint configuration, then the new one, each committed by majorities of old and new);
//! 3. a leader that is not in the target first makes the new voters voters *beside* itself, then
//!    asks a caught-up one to take over (`Elect`, as a stopping node does) and lets the new
//!    leader finish, so writes never wait for an election timeout.
//!
//! Removed replicas delete their data on their own once the leader's membership no longer
//! lists them (`membership.rs`). Reads and writes go on during a move: every node routes to
//! the holders in its placement and then to the target's nodes (`Cluster::replicas_of`), each
//! of which forwards to the group's leader.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use openraft::ChangeMembers;
use serde::{Deserialize, Serialize};

use crate::cluster::Cluster;
use crate::command::Command;
use crate::error::ClusterError;
use crate::members::Members;
use crate::placement::{Placement, META_GROUP};
use crate::proto::{ElectRequest, ReconfigureRequest};
use crate::types::NodeId;

/// How often the planner compares the placement with the target.
const PLAN_EVERY: Duration = Duration::from_secs(1);
/// How long a move may go without its learners' logs advancing before it gives up (the
/// planner then starts it again).
const STALL: Duration = Duration::from_secs(60);
/// How long one `Reconfigure` call may take (a snapshot of a large shard takes a while).
const RECONFIGURE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How long one attempt of a move may go on before it is made again.
const ATTEMPT: Duration = Duration::from_secs(90);
/// How long asking a voter to take over may take.
const ELECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A learner within this many entries of its leader counts as caught up: under a steady write
/// load replication is always a few entries in flight, and a voter slightly behind only
/// catches up as one (it is not needed for the first commits).
const CAUGHT_UP_SLACK: u64 = 64;

/// A replica move in flight, as `tessera status` and the admin API show it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MoveStatus {
    pub group: u32,
    pub from: Vec<NodeId>,
    pub to: Vec<NodeId>,
    /// How long the move has been running, in milliseconds.
    pub elapsed_ms: u64,
    /// Attempts that failed and were retried (leader changes, unreachable nodes).
    pub retries: u32,
}

/// The moves the planner runs, and how long finished ones took (for the ETA).
pub struct Moves {
    limit: usize,
    state: Mutex<MovesState>,
    /// Serialises placement updates: each reads the stored placement and writes the next one.
    record: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct MovesState {
    running: BTreeMap<u32, (MoveStatus, Instant)>,
    done: u64,
    done_ms: u64,
}

/// The planner's view for status pages.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MovesReport {
    pub running: Vec<MoveStatus>,
    /// Moves finished since this node became the planner.
    pub done: u64,
    /// Mean duration of those, in milliseconds.
    pub mean_ms: Option<u64>,
    pub limit: usize,
}

impl Moves {
    pub fn new(limit: usize) -> Moves {
        Moves {
            limit: limit.max(1),
            state: Mutex::new(MovesState::default()),
            record: tokio::sync::Mutex::new(()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, MovesState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The moves running now and the mean time of finished ones.
    pub fn report(&self) -> MovesReport {
        let state = self.state();
        MovesReport {
            running: state
                .running
                .values()
                .map(|(status, started)| MoveStatus {
                    elapsed_ms: started.elapsed().as_millis() as u64,
                    ..status.clone()
                })
                .collect(),
            done: state.done,
            mean_ms: (state.done > 0).then(|| state.done_ms / state.done),
            limit: self.limit,
        }
    }

    /// Claims a slot for a move of `group`; `false` if it runs already or the limit is reached.
    fn start(&self, group: u32, from: Vec<NodeId>, to: Vec<NodeId>) -> bool {
        let mut state = self.state();
        if state.running.contains_key(&group) || state.running.len() >= self.limit {
            return false;
        }
        let status = MoveStatus {
            group,
            from,
            to,
            elapsed_ms: 0,
            retries: 0,
        };
        state.running.insert(group, (status, Instant::now()));
        true
    }

    /// Counts a failed attempt of `group`'s move; returns how many there were.
    fn retried(&self, group: u32) -> u32 {
        match self.state().running.get_mut(&group) {
            Some((status, _)) => {
                status.retries += 1;
                status.retries
            }
            None => 0,
        }
    }

    fn finish(&self, group: u32, moved: bool) {
        let mut state = self.state();
        if let Some((_, started)) = state.running.remove(&group) {
            if moved {
                state.done += 1;
                state.done_ms += started.elapsed().as_millis() as u64;
            }
        }
    }
}

/// Starts the planner loop (it only acts while this node leads the catalogue).
pub(crate) fn spawn(cluster: Weak<Cluster>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PLAN_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(this) = cluster.upgrade() else {
                return;
            };
            if this.is_draining() || !this.leads(META_GROUP) {
                continue;
            }
            if let Err(e) = this.plan().await {
                tracing::debug!(error = %e, "planning replica moves");
            }
        }
    });
}

impl Cluster {
    /// One planner round (see the module).
    async fn plan(self: &Arc<Self>) -> Result<(), ClusterError> {
        let layout = self.layout();
        // No node set recorded yet: nothing was ever added or removed, so the placement is the
        // target. The first change records it (`membership.rs`).
        let Some(members) = layout.members.clone() else {
            return Ok(());
        };
        let target = layout.target();
        for group in layout.placement.differing(target) {
            let from = layout.placement.replicas(group).to_vec();
            let to = target.replicas(group).to_vec();
            if to.is_empty() || !self.moves.start(group, from, to.clone()) {
                continue;
            }
            let this = self.clone();
            tokio::spawn(async move {
                let moved = this.run_move(group, to).await;
                this.moves.finish(group, moved);
            });
        }
        self.retire_left_nodes(&members, &layout.placement, target)
            .await
    }

    /// Drives one move until the group's voters are `to` and the placement says so; gives up
    /// (the planner starts it again) when this node stops leading the catalogue or the target
    /// changed meanwhile.
    async fn run_move(self: &Arc<Self>, group: u32, to: Vec<NodeId>) -> bool {
        tracing::info!(group, ?to, "moving replicas");
        loop {
            if !self.leads(META_GROUP) || self.is_draining() {
                return false;
            }
            if self.layout().target().replicas(group) != to.as_slice() {
                return false;
            }
            // An attempt that hangs (a peer killed mid-call) is given up and made again: every
            // step is re-derived from the group's state.
            let attempt = tokio::time::timeout(ATTEMPT, self.reconfigure(group, &to)).await;
            let outcome = match attempt {
                Ok(Ok(())) => self.record_holders(group, &to).await,
                Ok(Err(e)) => Err(e),
                Err(_) => Err(ClusterError::Timeout(format!(
                    "group {group}: no answer in {} s",
                    ATTEMPT.as_secs()
                ))),
            };
            match outcome {
                Ok(()) => {
                    metrics::counter!("tessera_replica_moves_total").increment(1);
                    tracing::info!(group, ?to, "replicas moved");
                    return true;
                }
                Err(e) => {
                    let retries = self.moves.retried(group);
                    // Said at first and then every 30th time: a move waiting for an election
                    // or a node would otherwise fill the log.
                    if retries % 30 == 1 {
                        tracing::info!(group, retries, error = %e, "replica move not done yet; trying again");
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Asks `group`'s leader (through any of its replicas) to make `voters` its voters. A
    /// replica here is asked first, but it may be one the group left behind (not deleted yet),
    /// so the others are asked too.
    async fn reconfigure(&self, group: u32, voters: &[NodeId]) -> Result<(), ClusterError> {
        let mut last = ClusterError::Unavailable(format!("group {group} has no replicas"));
        if self.hosts(group) {
            match self.reconfigure_here(group, voters.to_vec(), 0).await {
                Err(e) if e.is_transient() => last = e,
                done => return done,
            }
        }
        for node in self.replicas_of(group) {
            if node == self.me() {
                continue;
            }
            let request = ReconfigureRequest {
                group,
                voters: voters.to_vec(),
                hops: 1,
            };
            let reply = self
                .ask(node, RECONFIGURE_TIMEOUT, request, |mut c, r| async move {
                    c.reconfigure(r).await
                })
                .await;
            match reply {
                Ok(_) => return Ok(()),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Records in a new placement version that `group` is held by `voters`.
    async fn record_holders(&self, group: u32, voters: &[NodeId]) -> Result<(), ClusterError> {
        let _one_at_a_time = self.moves.record.lock().await;
        self.catalog_barrier().await?;
        let stored = crate::membership::stored_layout(self.store(), self.config_spec()).await?;
        let mut next = Placement::clone(&stored.placement);
        let Some(slot) = next.groups.get_mut(group as usize) else {
            return Err(ClusterError::Internal(format!(
                "no group {group} in the placement"
            )));
        };
        if slot.as_slice() == voters {
            return Ok(());
        }
        *slot = voters.to_vec();
        next.version += 1;
        self.propose(META_GROUP, Command::SetPlacement(next), 0)
            .await?;
        Ok(())
    }

    /// Takes nodes that finished leaving out of the catalogue's membership and the node set.
    async fn retire_left_nodes(
        &self,
        members: &Members,
        placement: &Placement,
        target: &Placement,
    ) -> Result<(), ClusterError> {
        let (placed, targeted) = (placement.nodes(), target.nodes());
        let done: BTreeSet<NodeId> = members
            .leaving
            .iter()
            .copied()
            .filter(|n| !placed.contains(n) && !targeted.contains(n))
            .collect();
        if done.is_empty() {
            return Ok(());
        }
        let raft = self
            .group(META_GROUP)
            .ok_or_else(|| ClusterError::Internal("no catalogue replica".into()))?;
        let (_, _, learners) = self.group_membership(META_GROUP);
        let learning: BTreeSet<NodeId> = done
            .iter()
            .copied()
            .filter(|n| learners.contains(n))
            .collect();
        if !learning.is_empty() {
            raft.change_membership(ChangeMembers::RemoveNodes(learning), false)
                .await
                .map_err(|e| ClusterError::Unavailable(format!("catalogue membership: {e}")))?;
        }
        let mut next = members.clone();
        next.version += 1;
        next.nodes.retain(|n| !done.contains(&n.id));
        next.leaving.retain(|n| !done.contains(n));
        self.propose(META_GROUP, Command::SetMembers(next), 0)
            .await?;
        tracing::info!(nodes = ?done, "nodes left the cluster");
        Ok(())
    }

    /// The executor: makes `voters` the voters of `group`, which this node must lead (else the
    /// request goes to the leader it knows). Returns once the group's membership is exactly
    /// `voters`; an error when it is not (yet): the planner asks again.
    pub(crate) async fn reconfigure_here(
        &self,
        group: u32,
        voters: Vec<NodeId>,
        hops: u32,
    ) -> Result<(), ClusterError> {
        let raft = self.group(group).ok_or_else(|| {
            ClusterError::Unavailable(format!("group {group} is not hosted here"))
        })?;
        if !self.leads(group) {
            let leader = raft.metrics().borrow().current_leader;
            return match leader {
                Some(leader) if leader != self.me() && hops < 3 => {
                    let request = ReconfigureRequest {
                        group,
                        voters,
                        hops: hops + 1,
                    };
                    self.ask(
                        leader,
                        RECONFIGURE_TIMEOUT,
                        request,
                        |mut c, r| async move { c.reconfigure(r).await },
                    )
                    .await
                    .map(|_| ())
                }
                _ => Err(ClusterError::Unavailable(format!(
                    "group {group} has no leader"
                ))),
            };
        }
        let want: BTreeSet<NodeId> = voters.iter().copied().collect();
        let (_, now, learners) = self.group_membership(group);
        let joint = raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_joint_config()
            .len()
            > 1;
        let now: BTreeSet<NodeId> = now.into_iter().collect();
        if now == want && !joint {
            return Ok(());
        }
        for node in want.difference(&now) {
            if !learners.contains(node) {
                let address = self.raft_address(*node).ok_or_else(|| {
                    ClusterError::Internal(format!("node {node} is not a member of the cluster"))
                })?;
                raft.add_learner(*node, address, false)
                    .await
                    .map_err(|e| ClusterError::Unavailable(format!("group {group}: {e}")))?;
                tracing::info!(group, node, "added a learner");
            }
        }
        let new: Vec<NodeId> = want.difference(&now).copied().collect();
        self.wait_caught_up(group, &new).await?;
        let me = self.me();
        // The catalogue keeps every node as a learner (every node serves the domain).
        let retain = group == META_GROUP;
        if want.contains(&me) {
            raft.change_membership(ChangeMembers::ReplaceAllVoters(want), retain)
                .await
                .map_err(|e| ClusterError::Unavailable(format!("group {group}: {e}")))?;
            return Ok(());
        }
        // Leaving: the new voters join beside this leader, then one of them takes over and
        // finishes the move (this node is then removed by its successor).
        let mut beside = want.clone();
        beside.insert(me);
        if now != beside || joint {
            raft.change_membership(ChangeMembers::ReplaceAllVoters(beside), retain)
                .await
                .map_err(|e| ClusterError::Unavailable(format!("group {group}: {e}")))?;
        }
        // Only a voter whose log is as long as this leader's can win the election at once.
        let successor = want
            .iter()
            .copied()
            .find(|n| self.caught_up_within(group, *n, 0))
            .ok_or_else(|| {
                ClusterError::Unavailable(format!("group {group}: no caught-up successor yet"))
            })?;
        self.ask(
            successor,
            ELECT_TIMEOUT,
            ElectRequest { group },
            |mut c, r| async move { c.elect(r).await },
        )
        .await?;
        // openraft 0.9 leaves a leader's replication streams running after it steps down, and
        // right after a membership change they kept the followers' leader lease fresh: no one
        // could be elected, for minutes (seen in `membership::removing_…` under CPU load).
        // Restarting this replica ends them; it rejoins as a follower from its own storage, as
        // after a process restart, and the group elects within a lease.
        self.close_group(group).await;
        self.open_group(group).await?;
        Err(ClusterError::Unavailable(format!(
            "group {group}: node {successor} takes over before node {me} leaves"
        )))
    }

    /// Waits until every node of `nodes` has replicated `group`'s log up to this leader's last
    /// entry; gives up when one of them has not advanced for [`STALL`].
    async fn wait_caught_up(&self, group: u32, nodes: &[NodeId]) -> Result<(), ClusterError> {
        let mut progress: BTreeMap<NodeId, (Option<u64>, Instant)> = BTreeMap::new();
        loop {
            let mut behind = false;
            for node in nodes {
                if self.caught_up(group, *node) {
                    continue;
                }
                behind = true;
                let matched = self.matched(group, *node);
                let entry = progress.entry(*node).or_insert((matched, Instant::now()));
                if entry.0 != matched {
                    *entry = (matched, Instant::now());
                } else if entry.1.elapsed() > STALL {
                    return Err(ClusterError::Unavailable(format!(
                        "group {group}: node {node} made no progress for {} s",
                        STALL.as_secs()
                    )));
                }
            }
            if !behind {
                return Ok(());
            }
            if !self.leads(group) {
                return Err(ClusterError::Unavailable(format!(
                    "group {group}: lost the leadership while a learner caught up"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The log index `node` has replicated of `group` (this node leads it).
    fn matched(&self, group: u32, node: NodeId) -> Option<u64> {
        let raft = self.group(group)?;
        let metrics = raft.metrics();
        let m = metrics.borrow();
        m.replication
            .as_ref()?
            .get(&node)
            .and_then(|matched| matched.as_ref())
            .map(|log_id| log_id.index)
    }

    /// Whether `node` has replicated `group`'s log up to (nearly) this leader's last entry.
    fn caught_up(&self, group: u32, node: NodeId) -> bool {
        self.caught_up_within(group, node, CAUGHT_UP_SLACK)
    }

    /// Whether `node` has replicated `group`'s log up to `slack` entries short of this leader's
    /// last entry.
    pub(crate) fn caught_up_within(&self, group: u32, node: NodeId, slack: u64) -> bool {
        let Some(raft) = self.group(group) else {
            return false;
        };
        let last = raft.metrics().borrow().last_log_index;
        match (self.matched(group, node), last) {
            (Some(matched), Some(last)) => matched + slack >= last,
            _ => false,
        }
    }
}
