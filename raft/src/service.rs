//! The server side of the internal RPC.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use openraft::error::{InstallSnapshotError, RaftError};
use serde::Serialize;
use tessera_storage::Sha256;
use tonic::{Request, Response, Status};

use crate::cluster::{Cluster, CHUNK};
use crate::command::Command;
use crate::network::{INLINE_ENCODE, MAX_MESSAGE};
use crate::proto::internal_server::{Internal, InternalServer};
use crate::proto::{
    ElectReply, ElectRequest, InitGroupReply, InitGroupRequest, MembershipReply, MembershipRequest,
    MovesReply, MovesRequest, ProposeReply, ProposeRequest, RaftKind, RaftReply, RaftRequest,
    ReadChunk, ReadIndexReply, ReadIndexRequest, ReadRequest, ReconfigureReply, ReconfigureRequest,
    StatusReply, StatusRequest,
};
use crate::read::{ByteRange, ObjectBody, ReadSpec};
use crate::snapshot_receive::install_following;
use crate::types::NodeId;
use crate::types::TypeConfig;

/// Serves the internal RPC on `addr` until `shutdown` resolves, with mutual TLS: a connection
/// whose client presents no certificate of the cluster CA is dropped in the handshake, before
/// any request is read.
pub async fn serve_internal(
    cluster: Arc<Cluster>,
    addr: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let tls = cluster.rpc_tls().server();
    let service = InternalServer::new(InternalService { cluster })
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    tonic::transport::Server::builder()
        .tls_config(tls)?
        .tcp_nodelay(true)
        .initial_stream_window_size(8 << 20)
        .initial_connection_window_size(32 << 20)
        // Peers cancel many RPCs at once when a node stalls (every timed-out heartbeat and
        // forward is a reset stream); h2's default of 20 pending resets then drops the whole
        // connection, failing every RPC on it (found by the chaos campaign).
        .http2_max_pending_accept_reset_streams(Some(4096))
        .add_service(service)
        .serve_with_shutdown(addr, shutdown)
        .await
}

struct InternalService {
    cluster: Arc<Cluster>,
}

fn encode<T: Serialize>(value: &T) -> Result<Bytes, Status> {
    bincode::serialize(value)
        .map(Bytes::from)
        .map_err(|e| Status::internal(e.to_string()))
}

fn decode<T: serde::de::DeserializeOwned>(raw: &[u8]) -> Result<T, Status> {
    bincode::deserialize(raw)
        .map_err(|e| Status::invalid_argument(format!("undecodable request: {e}")))
}

/// Decodes a payload; large ones (entries with images, snapshot chunks) off the async threads.
async fn decode_blocking<T>(raw: Bytes) -> Result<T, Status>
where
    T: serde::de::DeserializeOwned + Send + 'static,
{
    if raw.len() as u64 <= INLINE_ENCODE {
        return decode(&raw);
    }
    tokio::task::spawn_blocking(move || decode(&raw))
        .await
        .map_err(|e| Status::internal(e.to_string()))?
}

type ReadStream = Pin<Box<dyn Stream<Item = Result<ReadChunk, Status>> + Send>>;

#[tonic::async_trait]
impl Internal for InternalService {
    async fn raft(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let req = request.into_inner();
        let raft = self
            .cluster
            .group(req.group)
            .ok_or_else(|| Status::not_found(format!("group {} is not hosted here", req.group)))?;
        let payload = match RaftKind::try_from(req.kind) {
            Ok(RaftKind::Append) => {
                let size = req.payload.len() as u64;
                let request: openraft::raft::AppendEntriesRequest<TypeConfig> =
                    decode_blocking(req.payload).await?;
                // Heartbeats go on; new entries wait while this node's disk is nearly full (the
                // leader retries), so that an append never meets ENOSPC (fatal in openraft).
                // An upload's bytes are written twice: in the log's WAL, then in a volume.
                if !request.entries.is_empty() {
                    self.cluster.refuse_entries(2 * size, 0)?;
                }
                self.cluster
                    .heard_leader(req.group, request.leader_commit.map(|l| l.index));
                let r: Result<_, RaftError<NodeId>> = raft.append_entries(request).await;
                encode(&r)?
            }
            Ok(RaftKind::Vote) if self.cluster.refuses_votes(req.group) => {
                // A replica rebuilt from an emptied database does not vote yet (`rejoin.rs`).
                // No log id in the refusal: the candidate need not wait for a longer log here.
                let vote = raft.metrics().borrow().vote;
                let r: Result<_, RaftError<NodeId>> =
                    Ok(openraft::raft::VoteResponse::new(vote, None, false));
                encode(&r)?
            }
            Ok(RaftKind::Vote) => {
                let r: Result<_, RaftError<NodeId>> = raft.vote(decode(&req.payload)?).await;
                encode(&r)?
            }
            Ok(RaftKind::Snapshot) => {
                // A snapshot is refused with more room to spare (as much as client writes
                // get): its install writes a whole shard's records at once.
                use tessera_storage::space::{FLOOR_BYTES, LOW_BYTES};
                let size = req.payload.len() as u64;
                self.cluster.refuse_entries(size, LOW_BYTES - FLOOR_BYTES)?;
                let request: openraft::raft::InstallSnapshotRequest<TypeConfig> =
                    decode_blocking(req.payload).await?;
                if request.done {
                    // The install copies the received file into place and writes its records
                    // into RocksDB (about twice its size, the received file already being on
                    // disk): refused, like a chunk, unless that leaves the headroom; the leader
                    // sends it again later. An ENOSPC during the install would stop the group.
                    let total = request.offset + request.data.len() as u64;
                    self.cluster
                        .refuse_entries(total.saturating_mul(2), LOW_BYTES - FLOOR_BYTES)?;
                }
                let r: Result<_, RaftError<NodeId, InstallSnapshotError>> =
                    install_following(&raft, request).await;
                encode(&r)?
            }
            Err(_) => return Err(Status::invalid_argument("unknown raft message kind")),
        };
        Ok(Response::new(RaftReply { payload }))
    }

    async fn propose(
        &self,
        request: Request<ProposeRequest>,
    ) -> Result<Response<ProposeReply>, Status> {
        let req = request.into_inner();
        let command: Command = decode_blocking(req.command).await?;
        let response = self
            .cluster
            .propose(req.group, command, req.hops)
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(ProposeReply {
            response: encode(&response)?,
        }))
    }

    type ReadObjectStream = ReadStream;

    async fn read_object(
        &self,
        request: Request<ReadRequest>,
    ) -> Result<Response<ReadStream>, Status> {
        let req = request.into_inner();
        let sha: [u8; 32] = req.sha256[..]
            .try_into()
            .map_err(|_| Status::invalid_argument("sha256 must be 32 bytes"))?;
        let range: Option<ByteRange> = decode(&req.range)?;
        let read = self
            .cluster
            .read_object(
                Sha256(sha),
                ReadSpec {
                    range,
                    meta_only: req.meta_only,
                    linearizable: req.linearizable,
                },
                req.hops,
            )
            .await
            .map_err(|e| e.to_status())?
            .ok_or_else(|| Status::not_found("no such object"))?;
        let head = encode(&read.head)?;
        let stream: ReadStream = match read.body {
            None => Box::pin(futures_util::stream::iter([Ok(ReadChunk {
                head,
                data: Bytes::new(),
            })])),
            Some(ObjectBody::Local(bytes)) => {
                let mut chunks: Vec<Bytes> = Vec::with_capacity(bytes.len() / CHUNK + 1);
                let mut rest = bytes;
                while rest.len() > CHUNK {
                    chunks.push(rest.split_to(CHUNK));
                }
                chunks.push(rest);
                let mut head = Some(head);
                Box::pin(futures_util::stream::iter(chunks.into_iter().map(
                    move |data| {
                        Ok(ReadChunk {
                            head: head.take().unwrap_or_default(),
                            data,
                        })
                    },
                )))
            }
            Some(ObjectBody::Remote(body)) => {
                let mut head = Some(head);
                Box::pin(body.map(move |chunk| match chunk {
                    Ok(data) => Ok(ReadChunk {
                        head: head.take().unwrap_or_default(),
                        data,
                    }),
                    Err(e) => Err(e.to_status()),
                }))
            }
        };
        Ok(Response::new(stream))
    }

    async fn init_group(
        &self,
        request: Request<InitGroupRequest>,
    ) -> Result<Response<InitGroupReply>, Status> {
        let req = request.into_inner();
        let initialized = self
            .cluster
            .init_group_local(req.group, &req.voters)
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(InitGroupReply { initialized }))
    }

    async fn read_index(
        &self,
        request: Request<ReadIndexRequest>,
    ) -> Result<Response<ReadIndexReply>, Status> {
        let group = request.into_inner().group;
        let index = self
            .cluster
            .local_read_index(group)
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(ReadIndexReply { index }))
    }

    async fn elect(&self, request: Request<ElectRequest>) -> Result<Response<ElectReply>, Status> {
        let group = request.into_inner().group;
        self.cluster
            .elect_here(group)
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(ElectReply {}))
    }

    async fn reconfigure(
        &self,
        request: Request<ReconfigureRequest>,
    ) -> Result<Response<ReconfigureReply>, Status> {
        let req = request.into_inner();
        self.cluster
            .reconfigure_here(req.group, req.voters, req.hops)
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(ReconfigureReply {}))
    }

    async fn membership(
        &self,
        request: Request<MembershipRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        let (leader, voters, learners) = self.cluster.group_membership(request.into_inner().group);
        Ok(Response::new(MembershipReply {
            leader,
            voters,
            learners,
        }))
    }

    async fn moves(&self, _: Request<MovesRequest>) -> Result<Response<MovesReply>, Status> {
        Ok(Response::new(MovesReply {
            report: encode(&self.cluster.moves.report())?,
        }))
    }

    async fn local_status(
        &self,
        _: Request<StatusRequest>,
    ) -> Result<Response<StatusReply>, Status> {
        Ok(Response::new(StatusReply {
            groups: encode(&self.cluster.local_status())?,
        }))
    }
}
