//! The client side of the internal RPC: one lazily connected HTTP/2 channel per peer, shared by
//! every Raft group and every forwarded request of this node.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

use crate::placement::ClusterSpec;
use crate::proto::internal_client::InternalClient;
use crate::proto::{RaftKind, RaftRequest};
use crate::types::{NodeId, TypeConfig};

/// Largest message on the internal RPC: a 64 MiB object plus framing.
pub const MAX_MESSAGE: usize = 80 << 20;

/// The channels to every other node of the cluster.
pub struct Peers {
    channels: HashMap<NodeId, Channel>,
}

impl Peers {
    /// Builds one lazily connecting channel per peer. Channels reconnect by themselves after a
    /// peer restarts, so they are built once for the life of the process.
    pub fn new(spec: &ClusterSpec, me: NodeId) -> Result<Peers, tonic::transport::Error> {
        let mut channels = HashMap::new();
        for node in spec.nodes.iter().filter(|n| n.id != me) {
            let channel = Endpoint::from_shared(format!("http://{}", node.rpc))?
                .connect_timeout(Duration::from_secs(1))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(5))
                .keep_alive_timeout(Duration::from_secs(5))
                .initial_stream_window_size(8 << 20)
                .initial_connection_window_size(32 << 20)
                .connect_lazy();
            channels.insert(node.id, channel);
        }
        Ok(Peers { channels })
    }

    /// A client for `node`, or `None` for this node itself or an unknown id.
    pub fn client(&self, node: NodeId) -> Option<InternalClient<Channel>> {
        self.channels.get(&node).map(|ch| {
            InternalClient::new(ch.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE)
        })
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
        req: &Req,
        ttl: Duration,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let mut client = self.peers.client(self.target).ok_or_else(|| {
            RPCError::Unreachable(Unreachable::new(&std::io::Error::other("unknown peer")))
        })?;
        let payload =
            bincode::serialize(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
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
        self.call(RaftKind::Append, &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call(RaftKind::Snapshot, &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        self.call(RaftKind::Vote, &rpc, option.hard_ttl()).await
    }
}
