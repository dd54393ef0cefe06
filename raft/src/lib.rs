//! Multi-Raft for Tessera, built on openraft 0.9 (kept behind this crate).
//!
//! A node hosts one Raft group per shard it replicates plus the catalogue group (group 0) that
//! holds the versioned placement. All groups share the node's RocksDB ([`tessera_storage::Store`])
//! and one tonic connection per peer. [`Cluster`] is what the rest of Tessera talks to: it routes
//! a write to its shard's leader and a read to a local replica, forwarding over the internal RPC
//! when this node holds no replica.

mod absent;
pub mod backup;
mod blocking;
mod cluster;
pub mod cluster_ca;
mod command;
mod error;
mod handoff;
mod log_store;
mod maintenance;
pub mod members;
pub mod membership;
mod network;
pub mod placement;
mod random;
mod read;
mod rebalance;
mod rejoin;
pub mod rpc_tls;
mod service;
mod snapshot_receive;
mod snapshot_store;
mod state_machine;
mod succession;
mod types;

/// Generated from `proto/internal.proto`.
pub mod proto {
    tonic::include_proto!("tessera.internal");
}

pub use absent::Absent;
pub use cluster::{Cluster, GroupStatus, Layout, RaftTuning};
pub use command::{Command, Response};
pub use error::ClusterError;
pub use log_store::LogStore;
pub use members::{Members, MembersError};
pub use placement::{ClusterSpec, NodeSpec, Placement, META_GROUP};
pub use random::random;
pub use read::{ByteRange, ObjectBody, ObjectRead, RangeOutcome, ReadHead, ReadSpec, RemoteBody};
pub use rebalance::{MoveStatus, MovesReport};
pub use rpc_tls::RpcTls;
pub use service::serve_internal;
pub use state_machine::StateMachine;
pub use tessera_storage as storage;
pub use types::{NodeId, TypeConfig};
