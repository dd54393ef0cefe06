//! Stopping a node without leaving its groups leaderless: before it stops, a node says it is
//! not ready (load balancers take it out), and for every group it leads asks a voter whose log
//! has caught up with its own to stand for election now. The leader grants that vote (openraft
//! grants a higher-term vote once its own election is `election_timeout_max` old, and the
//! candidate's log is as long as its own), so the group is led again within a round trip
//! instead of after an election timeout, and writes proposed through any node go on.
//!
//! A voter that has not caught up is never asked: a candidate with a shorter log would lose the
//! vote and only cost the group an election. A leader elected too recently to grant a vote
//! keeps its group until it stops; its followers then elect after their timeout, as after a
//! crash. Either way no acknowledged write is at risk: this only ever starts an ordinary
//! election.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::cluster::Cluster;
use crate::error::ClusterError;
use crate::proto::ElectRequest;
use crate::types::NodeId;

/// How long one Elect RPC may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the hand-off looks at its groups again.
const POLL: Duration = Duration::from_millis(50);

impl Cluster {
    /// Starts an election for `group` on this node (asked by its leader, see the module). A
    /// node that is stopping itself refuses: the leader then asks another voter.
    pub(crate) async fn elect_here(&self, group: u32) -> Result<(), ClusterError> {
        if self.is_draining() {
            return Err(ClusterError::Unavailable(
                "this node is stopping; ask another voter".into(),
            ));
        }
        let raft = self.group(group).ok_or_else(|| {
            ClusterError::Unavailable(format!("group {group} is not hosted here"))
        })?;
        raft.trigger()
            .elect()
            .await
            .map_err(|e| ClusterError::Internal(format!("group {group}: {e}")))
    }

    /// Marks the node not ready and hands off the leadership of every group it leads, waiting
    /// at most `within`. Returns the groups it still leads (they elect anew after it stops).
    pub async fn hand_off(&self, within: Duration) -> Vec<u32> {
        self.draining.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + within;
        let mut asked: std::collections::HashMap<u32, Instant> = Default::default();
        // How many times each group's successors were asked: the next ask goes to the next
        // caught-up voter, so one that refuses (it is stopping too) is not asked forever.
        let mut attempts: std::collections::HashMap<u32, usize> = Default::default();
        loop {
            let led: Vec<u32> = self.led_groups();
            if led.is_empty() || Instant::now() >= deadline {
                return led;
            }
            for group in led {
                // One election per group at a time: ask again only after a quiet second.
                if asked
                    .get(&group)
                    .is_some_and(|at| at.elapsed() < Duration::from_secs(1))
                {
                    continue;
                }
                let turn = attempts.entry(group).or_default();
                let Some(successor) = self.caught_up_voter(group, *turn) else {
                    continue;
                };
                *turn += 1;
                asked.insert(group, Instant::now());
                let request = ElectRequest { group };
                let result = self
                    .ask(successor, ASK_TIMEOUT, request, |mut c, r| async move {
                        c.elect(r).await
                    })
                    .await;
                if let Err(e) = result {
                    tracing::debug!(group, successor, error = %e, "asking for an election failed");
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Whether the node is stopping (see [`Cluster::hand_off`]).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    fn led_groups(&self) -> Vec<u32> {
        let mut led: Vec<u32> = self
            .group_ids()
            .into_iter()
            .filter(|g| self.leads(*g))
            .collect();
        led.sort_unstable();
        led
    }

    /// A voter of `group` (not this node) whose replicated log reaches this leader's last
    /// entry, if one does: the `turn`-th of them, round robin.
    fn caught_up_voter(&self, group: u32, turn: usize) -> Option<NodeId> {
        let raft = self.group(group)?;
        let voters: Vec<NodeId> = raft
            .metrics()
            .borrow()
            .membership_config
            .voter_ids()
            .filter(|id| *id != self.me())
            .collect();
        let caught_up: Vec<NodeId> = voters
            .into_iter()
            .filter(|id| self.caught_up_within(group, *id, 0))
            .collect();
        (!caught_up.is_empty()).then(|| caught_up[turn % caught_up.len()])
    }
}
