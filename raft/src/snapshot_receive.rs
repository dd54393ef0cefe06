//! Receiving a snapshot without standing for election meanwhile.
//!
//! openraft 0.9 sends a follower nothing but snapshot chunks while a snapshot to it is in
//! flight (no heartbeats), and a received chunk does not reset the follower's election timer:
//! only the installed snapshot does. A transfer or an install longer than the election timeout
//! (a large shard at the paced rate, a catalogue snapshot installed under load: 12–21 s in a
//! debug build) made the follower stand for election with a higher term; its leader saw that
//! term in the next reply and stepped down, every few seconds, and the snapshot never finished
//! (docs/reliability.md, finding 2).
//!
//! So while a chunk is received, and the last one installed, the follower gives itself the
//! heartbeats its leader would have sent: an empty append carrying the leader's vote and no
//! previous log id. openraft takes it as a heartbeat (the vote's time is renewed; log and
//! commit are untouched) and refuses it like any append when it carries an older vote.

use std::time::Duration;

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, InstallSnapshotResponse};

use crate::types::{NodeId, Raft, TypeConfig};

/// Hands one snapshot chunk to `raft`, renewing the sender's leadership here every heartbeat
/// interval until the chunk is taken (for the last chunk: until the snapshot is installed).
pub(crate) async fn install_following(
    raft: &Raft,
    chunk: InstallSnapshotRequest<TypeConfig>,
) -> Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> {
    let heartbeat = AppendEntriesRequest {
        vote: chunk.vote,
        prev_log_id: None,
        entries: Vec::new(),
        leader_commit: None,
    };
    let every = Duration::from_millis(raft.config().heartbeat_interval);
    let install = raft.install_snapshot(chunk);
    tokio::pin!(install);
    loop {
        // A refusal (this node already follows a newer leader) renews nothing, rightly; the
        // chunk itself is then refused too.
        let _ = raft.append_entries(heartbeat.clone()).await;
        tokio::select! {
            taken = &mut install => return taken,
            () = tokio::time::sleep(every) => {}
        }
    }
}
