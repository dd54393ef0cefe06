//! Elections for the groups a node led before a start that found its WAL's tail damaged.
//!
//! Such a node reads its vote back uncommitted (`LogStore::read_vote`): it may have lost entries
//! its followers acknowledged, so it must not lead its old term again. Its followers still hold
//! a committed vote for it, and openraft 0.9 lets a follower with a committed vote stand only
//! after the leader lease (`election_timeout_max`) *and* an election timeout since the last
//! heartbeat — 9–12 s with production timing, 6 s of which may come after this node is back
//! (chaos seed 313, cycle 81: a leader killed in the middle of a WAL write, its group without a
//! leader for 11 s). This node knows at once that the group needs an election, so it calls one.
//! It asks the other voters how long their logs are: the longest, if longer than its own, is
//! asked to stand (`Elect`) and wins with this node's vote, since an uncommitted vote holds no
//! lease; otherwise this node stands itself, again every second, until its followers' lease
//! has run out. Each is an ordinary election: which candidate wins is still decided by Raft's
//! vote rules, so a wrong guess costs an election round, never a write.

use std::collections::{BTreeSet, HashMap};
use std::sync::Weak;
use std::time::{Duration, Instant};

use crate::cluster::Cluster;
use crate::proto::ElectRequest;
use crate::types::{NodeId, Raft};

/// How long one Elect RPC may take, and the pause between two rounds.
const ROUND: Duration = Duration::from_secs(1);

/// Calls elections for the groups this node led before its start, while they have no leader;
/// gives up once openraft's own timers would have (twice the longest election timeout).
pub(crate) async fn call_elections(cluster: Weak<Cluster>) {
    let (groups, give_up) = {
        let Some(c) = cluster.upgrade() else { return };
        if c.is_rebuilding() {
            return;
        }
        let longest = Duration::from_millis(c.election_timeout_max_ms());
        (c.led_before_start().await, Instant::now() + 2 * longest)
    };
    if groups.is_empty() {
        return;
    }
    tracing::warn!(
        ?groups,
        "the WAL lost its tail: calling elections in the groups this node led"
    );
    while Instant::now() < give_up {
        let Some(c) = cluster.upgrade() else { return };
        if c.is_draining() {
            return;
        }
        let leaderless: Vec<u32> = groups
            .iter()
            .copied()
            .filter(|g| {
                c.group(*g)
                    .is_some_and(|raft| raft.metrics().borrow().current_leader.is_none())
            })
            .collect();
        if leaderless.is_empty() {
            return;
        }
        let logs = peer_logs(&c, &leaderless).await;
        for group in leaderless {
            call_one(&c, group, &logs).await;
        }
        drop(c);
        tokio::time::sleep(ROUND).await;
    }
}

/// The last log index each other voter of `groups` reports for each of its replicas: one
/// status RPC per node and round, however many groups wait for an election.
async fn peer_logs(c: &Cluster, groups: &[u32]) -> HashMap<(u32, NodeId), u64> {
    let peers: BTreeSet<NodeId> = groups
        .iter()
        .filter_map(|g| c.group(*g))
        .flat_map(|raft| other_voters(c, &raft))
        .collect();
    let mut logs = HashMap::new();
    for peer in peers {
        let Ok(status) = c.node_status(peer).await else {
            continue;
        };
        for replica in status {
            if let Some(index) = replica.last_log {
                logs.insert((replica.group, peer), index);
            }
        }
    }
    logs
}

/// The voters of `raft`'s group other than this node.
fn other_voters(c: &Cluster, raft: &Raft) -> Vec<NodeId> {
    raft.metrics()
        .borrow()
        .membership_config
        .voter_ids()
        .filter(|id| *id != c.me())
        .collect()
}

/// One round for `group`: the voter with the longest log stands, this node if none is longer.
async fn call_one(c: &Cluster, group: u32, logs: &HashMap<(u32, NodeId), u64>) {
    let Some(raft) = c.group(group) else { return };
    let mine = raft.metrics().borrow().last_log_index;
    let longest = other_voters(c, &raft)
        .into_iter()
        .filter_map(|voter| Some((*logs.get(&(group, voter))?, voter)))
        .max();
    match longest {
        Some((index, voter)) if Some(index) > mine => {
            let asked = c
                .ask(
                    voter,
                    ROUND,
                    ElectRequest { group },
                    |mut client, r| async move { client.elect(r).await },
                )
                .await;
            if let Err(e) = asked {
                tracing::debug!(group, voter, error = %e, "asking for an election failed");
            }
        }
        _ => {
            if let Err(e) = raft.trigger().elect().await {
                tracing::debug!(group, error = %e, "standing for election failed");
            }
        }
    }
}
