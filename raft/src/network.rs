//! The client side of the internal RPC: one lazily connected HTTP/2 channel per peer, shared by
//! every Raft group and every forwarded request of this node.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, EntryPayload};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

use crate::command::Command;
use crate::placement::{ClusterSpec, NodeSpec};
use crate::proto::internal_client::InternalClient;
use crate::proto::{RaftKind, RaftRequest};
use crate::rpc_tls::RpcTls;
use crate::types::{NodeId, TypeConfig};

/// Largest message on the internal RPC: a 64 MiB object plus framing.
pub const MAX_MESSAGE: usize = 80 << 20;

/// Messages up to this size are encoded and decoded on the async threads.
pub const INLINE_ENCODE: u64 = 64 << 10;

/// Most bytes of entries sent in one append: what fits in a message with room for framing.
const ENTRY_BUDGET: usize = MAX_MESSAGE - (4 << 20);

/// `None` if entries of `sizes` fit in `budget` together, else how many of them fit (at least
/// one: a single entry always fits, objects being capped well below the budget).
fn entries_within(sizes: impl Iterator<Item = usize>, budget: usize) -> Option<u64> {
    let mut total = 0;
    for (i, size) in sizes.enumerate() {
        total += size;
        if total > budget {
            return Some(i.max(1) as u64);
        }
    }
    None
}

/// The channels to every other node of the cluster, and the pace snapshots are sent at.
pub struct Peers {
    me: NodeId,
    tls: RpcTls,
    /// Per peer: the RPC address its channel goes to, and the channel.
    channels: RwLock<HashMap<NodeId, (String, Channel)>>,
    snapshots: Pacer,
}

impl Peers {
    /// Builds one lazily connecting channel per peer, with mutual TLS (the peer must present
    /// its own certificate of the cluster CA; this node presents its own). Channels reconnect
    /// by themselves after a peer restarts, so a peer's channel is built once for the life of
    /// the process (see [`Peers::learn`] for nodes that join later). Snapshot chunks to all
    /// peers together go out at most at `snapshot_bytes_per_s` (0: unlimited).
    pub fn new(
        spec: &ClusterSpec,
        me: NodeId,
        tls: &RpcTls,
        snapshot_bytes_per_s: u64,
    ) -> Result<Peers, tonic::transport::Error> {
        let peers = Peers {
            me,
            tls: tls.clone(),
            channels: RwLock::new(HashMap::new()),
            snapshots: Pacer::new(snapshot_bytes_per_s),
        };
        peers.learn(&spec.nodes)?;
        Ok(peers)
    }

    /// Builds channels to the nodes of `nodes` this node has none for yet (a node that joined),
    /// or whose address changed (a node asked to be added with another address first).
    pub fn learn(&self, nodes: &[NodeSpec]) -> Result<(), tonic::transport::Error> {
        let mut channels = self
            .channels
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for node in nodes.iter().filter(|n| n.id != self.me) {
            if channels
                .get(&node.id)
                .is_some_and(|(rpc, _)| *rpc == node.rpc)
            {
                continue;
            }
            let channel = Endpoint::from_shared(format!("https://{}", node.rpc))?
                .tls_config(self.tls.client(node.id))?
                .connect_timeout(Duration::from_secs(1))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(5))
                .keep_alive_timeout(Duration::from_secs(5))
                .initial_stream_window_size(8 << 20)
                .initial_connection_window_size(32 << 20)
                .connect_lazy();
            channels.insert(node.id, (node.rpc.clone(), channel));
        }
        Ok(())
    }

    /// A client for `node`, or `None` for this node itself or an unknown id.
    pub fn client(&self, node: NodeId) -> Option<InternalClient<Channel>> {
        let channels = self
            .channels
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        channels.get(&node).map(|(_, ch)| {
            InternalClient::new(ch.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE)
        })
    }
}

/// Spaces out snapshot chunks so that a replica being rebuilt (a node added, a node replaced)
/// never takes the disk and network that serving needs: chunks go one after another, in the
/// order they asked, each waiting until the previous one's share of the rate has passed.
struct Pacer {
    bytes_per_s: u64,
    /// When the next chunk may go. Held while a chunk waits for its turn: the lock is fair, so
    /// chunks go first come first served, and a chunk whose RPC times out while waiting (its
    /// future dropped) reserved nothing. Reserving turns up front once let cancelled waits push
    /// every later chunk past its own timeout, and a paced snapshot never arrived.
    next: tokio::sync::Mutex<tokio::time::Instant>,
}

impl Pacer {
    fn new(bytes_per_s: u64) -> Pacer {
        Pacer {
            bytes_per_s,
            next: tokio::sync::Mutex::new(tokio::time::Instant::now()),
        }
    }

    /// Waits for the turn of a chunk of `bytes`.
    async fn admit(&self, bytes: usize) {
        if self.bytes_per_s == 0 {
            return;
        }
        let cost = Duration::from_secs_f64(bytes as f64 / self.bytes_per_s as f64);
        let mut next = self.next.lock().await;
        tokio::time::sleep_until(*next).await;
        *next = tokio::time::Instant::now() + cost;
    }
}

/// Builds the network of one group.
pub struct GroupNetworkFactory {
    pub group: u32,
    pub peers: Arc<Peers>,
}

impl RaftNetworkFactory<TypeConfig> for GroupNetworkFactory {
    type Network = GroupNetwork;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> GroupNetwork {
        GroupNetwork {
            group: self.group,
            target,
            peers: self.peers.clone(),
        }
    }
}

/// One group's link to one peer: a view onto the peer's shared channel.
pub struct GroupNetwork {
    group: u32,
    target: NodeId,
    peers: Arc<Peers>,
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl GroupNetwork {
    async fn call<Req, Resp, E>(
        &self,
        kind: RaftKind,
        req: Req,
        ttl: Duration,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize + Send + 'static,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let mut client = self.peers.client(self.target).ok_or_else(|| {
            RPCError::Unreachable(Unreachable::new(&std::io::Error::other("unknown peer")))
        })?;
        // Appends with images and snapshot chunks are megabytes: those are encoded off the
        // async threads. Heartbeats and votes are tiny and encoded in place.
        let payload = if bincode::serialized_size(&req).unwrap_or(u64::MAX) > INLINE_ENCODE {
            tokio::task::spawn_blocking(move || bincode::serialize(&req))
                .await
                .map_err(|e| RPCError::Network(NetworkError::new(&e)))?
        } else {
            bincode::serialize(&req)
        }
        .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut request = tonic::Request::new(RaftRequest {
            group: self.group,
            kind: kind as i32,
            payload: payload.into(),
        });
        // Every RPC carries a deadline: a stuck peer must not stall replication to the others.
        request.set_timeout(ttl);
        let reply = client
            .raft(request)
            .await
            .map_err(|status| match status.code() {
                tonic::Code::Unavailable => RPCError::Unreachable(Unreachable::new(&status)),
                _ => RPCError::Network(NetworkError::new(&status)),
            })?;
        let result: Result<Resp, RaftError<NodeId, E>> =
            bincode::deserialize(&reply.into_inner().payload)
                .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for GroupNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        let sizes = rpc.entries.iter().map(|e| match &e.payload {
            EntryPayload::Normal(Command::PutObject { bytes, .. }) => bytes.len() + 256,
            _ => 256,
        });
        if let Some(fit) = entries_within(sizes, ENTRY_BUDGET) {
            // openraft retries with at most `fit` entries.
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(fit),
            ));
        }
        self.call(RaftKind::Append, rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.peers.snapshots.admit(rpc.data.len()).await;
        self.call(RaftKind::Snapshot, rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        self.call(RaftKind::Vote, rpc, option.hard_ttl()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_appends_are_split() {
        assert_eq!(entries_within([10, 10, 10].into_iter(), 30), None);
        assert_eq!(entries_within([10, 10, 10].into_iter(), 25), Some(2));
        assert_eq!(entries_within([40, 10].into_iter(), 25), Some(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_chunk_that_gives_up_waiting_leaves_its_turn_to_the_next() {
        // 100-byte chunks at 1 000 bytes/s: one every 100 ms.
        let pacer = Pacer::new(1000);
        let start = tokio::time::Instant::now();
        pacer.admit(100).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        // The second chunk's RPC times out while it waits for its turn.
        let gave_up = tokio::time::timeout(Duration::from_millis(50), pacer.admit(100)).await;
        assert!(gave_up.is_err());
        // The third goes at the second's turn, not one later.
        pacer.admit(100).await;
        assert_eq!(start.elapsed(), Duration::from_millis(100));
    }
}
