//! The node's view of the cluster: its local Raft groups and the routing of every request to a
//! replica or leader, forwarding over the internal RPC when needed.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::StreamExt;
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, Config, ServerState, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use tessera_storage::volume::Resident;
use tessera_storage::{
    keys, Cached, Cf, ObjectCache, ObjectMeta, ObjectSlice, PutOutcome, Sha256, Store,
};

use crate::absent::Absent;
use crate::command::{Command, Response};
use crate::error::ClusterError;
use crate::log_store::{repair_purged_past_applied, LogStore};
use crate::members::Members;
use crate::network::{GroupNetworkFactory, Peers};
use crate::placement::{ClusterSpec, Placement, META_GROUP};
use crate::proto::internal_client::InternalClient;
use crate::proto::{
    InitGroupRequest, ProposeRequest, ReadIndexRequest, ReadRequest, StatusRequest,
};
use crate::read::{ObjectBody, ObjectRead, RangeOutcome, ReadHead, ReadSpec};
use crate::rpc_tls::RpcTls;
use crate::state_machine::{StateMachine, PLACEMENT_KEY};
use crate::types::{NodeId, Raft};
use tessera_domain::catalog::{CatalogOp, CatalogOutcome};
use tessera_domain::directory::Directory;
use tessera_domain::{DomainError, Records};
use tonic::transport::Channel;

/// How long a request keeps retrying while a group has no leader or a peer is unreachable.
const RETRY_DEADLINE: Duration = Duration::from_secs(15);
/// Deadline of one forwarded request.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// A request is forwarded at most this many times (member -> leader -> new leader).
const MAX_HOPS: u32 = 3;
/// Objects up to this size read through a node without a replica are cached there as well.
const FORWARD_CACHE_MAX: u64 = 4 << 20;
/// Size of the chunks a forwarded body is streamed in.
pub const CHUNK: usize = 256 << 10;

/// Raft timing and log retention, and the pace of volume upkeep, from `cluster.toml`'s `[raft]`
/// table.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftTuning {
    pub heartbeat_ms: u64,
    pub election_timeout_ms: u64,
    /// Build a snapshot after this many applied entries.
    pub snapshot_logs: u64,
    /// Entries kept in the log behind a snapshot, for followers that are only a little behind.
    pub keep_logs: u64,
    /// A scrub pass over every local needle starts this often (0: never).
    pub scrub_interval_ms: u64,
    /// How fast a scrub reads, so it never competes with serving.
    pub scrub_bytes_per_s: u64,
    /// Volumes are checked for garbage this often (0: never).
    pub compact_interval_ms: u64,
    /// How fast a node sends snapshots to new replicas, over all its groups together, so that
    /// rebuilding a replica never starves serving (0: unlimited).
    pub snapshot_bytes_per_s: u64,
    /// How many replica moves the cluster runs at once when nodes are added or removed.
    pub max_moves: usize,
}

impl Default for RaftTuning {
    fn default() -> Self {
        // 64+ groups per node: heartbeats are spaced out so that an idle cluster costs little CPU.
        RaftTuning {
            heartbeat_ms: 500,
            election_timeout_ms: 3000,
            snapshot_logs: 2000,
            // Applied uploads stay in the log as stubs, so a long log is cheap; a follower
            // down for a while (or busy installing a snapshot) then catches up from the log
            // instead of needing one snapshot after another: the catalogue takes hundreds of
            // entries per second under load (a chaos campaign with 100 kept entries saw
            // followers need a second catalogue snapshot right after installing the first).
            keep_logs: 10_000,
            scrub_interval_ms: 24 * 3600 * 1000,
            scrub_bytes_per_s: 32 << 20,
            compact_interval_ms: 10 * 60 * 1000,
            snapshot_bytes_per_s: 64 << 20,
            max_moves: 2,
        }
    }
}

impl RaftTuning {
    /// Snapshot chunks of one heartbeat interval at the snapshot pace (4 KiB to 4 MiB). The
    /// follower hears nothing else from its leader while a snapshot comes (openraft 0.9 sends no
    /// heartbeats then; `snapshot_receive.rs` covers the time a chunk is being received), so
    /// between two chunks it must not wait an election timeout; and a chunk's wait for its
    /// turn counts against the RPC's timeout. 4 MiB chunks at 64 KiB/s never arrived.
    fn snapshot_chunk_bytes(&self) -> u64 {
        match self.snapshot_bytes_per_s {
            0 => 4 << 20,
            pace => (pace.saturating_mul(self.heartbeat_ms) / 1000).clamp(4 << 10, 4 << 20),
        }
    }

    fn config(&self) -> Result<Config, ClusterError> {
        Config {
            cluster_name: "tessera".into(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_timeout_ms,
            election_timeout_max: self.election_timeout_ms * 2,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_logs),
            max_in_snapshot_log_to_keep: self.keep_logs,
            // Entries carry whole images: keep one append RPC to a few tens of MB.
            max_payload_entries: 32,
            snapshot_max_chunk_size: self.snapshot_chunk_bytes(),
            // Per chunk: its turn at the pace, the transfer, and for the last one the install
            // (a catalogue snapshot took 12–21 s to install in a debug build under load); a
            // timed-out snapshot is sent again from its start.
            install_snapshot_timeout: 30_000,
            ..Default::default()
        }
        .validate()
        .map_err(|e| ClusterError::Internal(format!("raft config: {e}")))
    }
}

/// The Raft state of one group as seen by one node.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GroupStatus {
    pub group: u32,
    pub reporter: NodeId,
    pub state: String,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub last_log: Option<u64>,
    pub applied: Option<u64>,
    pub snapshot: Option<u64>,
    /// Objects whose local bytes failed their checksum and are not repaired yet.
    #[serde(default)]
    pub damaged: u64,
    /// Bytes of the group's volume files on this replica (what moving it sends, roughly).
    #[serde(default)]
    pub bytes: u64,
}

/// This node's term if it leads `raft`'s group, asked of RaftCore: ordered with the votes it
/// grants (metrics are published later and may be stale).
async fn leading_term(raft: &Raft) -> Option<u64> {
    raft.with_raft_state(|st| {
        (st.server_state == ServerState::Leader).then(|| st.vote_ref().leader_id().get_term())
    })
    .await
    .ok()
    .flatten()
}

/// Measures the free disk space every 250 ms (see `tessera_storage::space`): writes are
/// refused while it is low and accepted again, without a restart, once it is back.
async fn watch_disk_space(cluster: std::sync::Weak<Cluster>) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(store) = cluster.upgrade().map(|c| c.store.clone()) else {
            return;
        };
        let _ = tokio::task::spawn_blocking(move || store.space().check()).await;
    }
}

/// A running node: its groups, its peers and the placement it routes by.
pub struct Cluster {
    me: NodeId,
    /// The node set and placement this node routes by: read from its catalogue replica, and
    /// replaced when that replica applies newer ones (see `membership.rs`).
    layout: RwLock<Arc<Layout>>,
    /// The shard count, fixed when the cluster is created (the hot paths read it lock-free).
    shards: u32,
    /// `cluster.toml`'s description of the cluster: the shard count, the replication factor,
    /// and the node set a cluster starts with.
    config_spec: ClusterSpec,
    store: Arc<Store>,
    peers: Arc<Peers>,
    /// This node's credentials on the internal RPC (its server and its channels to peers).
    rpc_tls: RpcTls,
    /// The groups hosted here; replicas come and go as the placement changes.
    groups: RwLock<HashMap<u32, Hosted>>,
    /// What opening a group needs.
    opener: GroupOpener,
    /// Whole objects recently read from local replicas.
    cache: Arc<ObjectCache>,
    /// The catalogue records this node serves hot paths from.
    directory: Arc<Directory>,
    /// How long a leader counts as one for readiness without a quorum's acknowledgement: an
    /// election timeout, after which the followers it lost may have elected another.
    leader_lease_ms: u64,
    /// Set when the node starts stopping: it says it is not ready and hands off its
    /// leaderships (`handoff.rs`).
    pub(crate) draining: std::sync::atomic::AtomicBool,
    /// The replica moves this node runs while it leads the catalogue (`rebalance.rs`).
    pub(crate) moves: crate::rebalance::Moves,
    /// Set when the node started over from an emptied database (`rejoin.rs`).
    rejoin: Option<crate::rejoin::Rejoin>,
    /// The node's data directory.
    data_dir: std::path::PathBuf,
    /// Signalled when a group stopped on a checksum failure: the node must restart and rebuild
    /// its database (`rejoin.rs`).
    damaged: tokio::sync::Notify,
}

/// The node set and the placement a node routes by.
#[derive(Clone, Debug)]
pub struct Layout {
    /// The live node set (from the catalogue once it has one, else `cluster.toml`'s).
    pub spec: Arc<ClusterSpec>,
    /// Who holds each group now.
    pub placement: Arc<Placement>,
    /// The node set as stored in the catalogue, with the nodes being removed.
    pub members: Option<Members>,
    /// [`Layout::target`], computed once per layout: forwards consult it on every request.
    target: std::sync::OnceLock<Placement>,
}

impl Layout {
    pub(crate) fn new(
        spec: Arc<ClusterSpec>,
        placement: Arc<Placement>,
        members: Option<Members>,
    ) -> Layout {
        Layout {
            spec,
            placement,
            members,
            target: std::sync::OnceLock::new(),
        }
    }

    /// Where every group should be; equal to the placement when no replica has to move.
    pub fn target(&self) -> &Placement {
        self.target.get_or_init(|| match &self.members {
            Some(m) => m.target(self.placement.shards, self.spec.replication),
            None => Placement::clone(&self.placement),
        })
    }
}

/// One group hosted on this node.
#[derive(Clone)]
pub(crate) struct Hosted {
    pub(crate) raft: Raft,
    /// The hashes this node found absent as the group's leader (see `absent.rs`).
    pub(crate) absent: Arc<Absent>,
    /// The highest commit index a leader of the group sent here (0: none yet), for readiness.
    leader_commit: Arc<std::sync::atomic::AtomicU64>,
}

/// A follower further behind its leader's commit than this many entries is not ready: it is
/// catching up (by snapshot, perhaps one after another) and cannot answer reads and token
/// checks that must see the group's latest state.
const READY_LAG: u64 = 1000;

impl Hosted {
    /// Whether this replica, at `applied`, has heard from no leader since it started or is
    /// more than [`READY_LAG`] entries behind the commit one sent. A replica back from a
    /// restart can know its leader from the refusal of a vote or append of its own and still
    /// lack everything since.
    fn behind_leader(&self, applied: Option<u64>) -> bool {
        let heard = self
            .leader_commit
            .load(std::sync::atomic::Ordering::Relaxed);
        heard == 0 || heard.saturating_sub(applied.unwrap_or(0)) > READY_LAG
    }
}

/// What opening a group on this node needs.
struct GroupOpener {
    config: Arc<Config>,
    snapshot_dir: std::path::PathBuf,
    /// How long a leader's quorum check keeps a hash known absent (see `absent.rs`).
    lease: Duration,
}

impl Cluster {
    /// Opens the node's database and starts a Raft group for every group placed on it. Peers
    /// are reached, and the internal RPC served, with mutual TLS under `rpc_tls`.
    pub async fn start(
        me: NodeId,
        spec: ClusterSpec,
        data_dir: &Path,
        tuning: &RaftTuning,
        cache_bytes: usize,
        rpc_tls: RpcTls,
    ) -> Result<Arc<Cluster>, ClusterError> {
        // A previous run found a damaged block while it ran and asked for a rebuild.
        let asked = data_dir.join(crate::rejoin::REBUILD_MARKER).exists();
        // A previous run emptied the database and stopped before every replica caught up.
        let rejoining = data_dir.join(crate::rejoin::REJOIN_MARKER).exists();
        let wait = Duration::from_millis(2 * tuning.election_timeout_ms * 2);
        let start = |rejoining: bool| {
            let rejoin = rejoining.then(|| crate::rejoin::Rejoin::new(wait));
            let (spec, tls) = (spec.clone(), rpc_tls.clone());
            Cluster::start_once(me, spec, data_dir, tuning, cache_bytes, tls, rejoin)
        };
        let first = if asked {
            Err(ClusterError::Storage(
                tessera_storage::StorageError::Corrupt(
                    "a damaged block was read while the node ran (see db-damaged)".into(),
                ),
            ))
        } else {
            start(rejoining).await
        };
        match first {
            Err(e) if e.is_corruption() => {
                let data = data_dir.to_path_buf();
                let aside = tokio::task::spawn_blocking(move || crate::rejoin::quarantine(&data))
                    .await
                    .map_err(|e| ClusterError::Internal(e.to_string()))?
                    .map_err(|io| {
                        ClusterError::Internal(format!("moving the damaged database aside: {io}"))
                    })?;
                tracing::error!(error = %e, moved_to = %aside.display(), "the database is damaged: moved aside; rebuilding every replica from its peers (votes refused until caught up)");
                metrics::counter!("tessera_database_quarantined_total").increment(1);
                // The failed start's groups may hold the old database a moment longer (RocksDB
                // locks its path per process): try again until they let go.
                let mut attempts = 0;
                loop {
                    match start(true).await {
                        Err(e) if attempts < 100 && e.to_string().contains("lock hold by") => {
                            attempts += 1;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        other => return other,
                    }
                }
            }
            other => other,
        }
    }

    /// [`Cluster::start`] once; `rejoin` when the database was emptied (see `rejoin.rs`).
    async fn start_once(
        me: NodeId,
        spec: ClusterSpec,
        data_dir: &Path,
        tuning: &RaftTuning,
        cache_bytes: usize,
        rpc_tls: RpcTls,
        rejoin: Option<crate::rejoin::Rejoin>,
    ) -> Result<Arc<Cluster>, ClusterError> {
        let db_path = data_dir.join("db");
        let store = tokio::task::spawn_blocking(move || Store::open(&db_path))
            .await
            .map_err(|e| ClusterError::Internal(e.to_string()))??;
        let store = Arc::new(store);
        let layout = crate::membership::stored_layout(&store, &spec).await?;
        let peers = Arc::new(
            Peers::new(&layout.spec, me, &rpc_tls, tuning.snapshot_bytes_per_s)
                .map_err(|e| ClusterError::Internal(format!("peers: {e}")))?,
        );
        let config = Arc::new(tuning.config()?);
        // No other leader can be elected for `election_timeout_max` after a quorum acknowledged
        // a heartbeat; half of it leaves a margin for clock-rate differences.
        let lease = Duration::from_millis(config.election_timeout_max / 2);
        let hosted = crate::membership::groups_to_host(&store, &layout, me).await?;
        let cluster = Arc::new(Cluster {
            me,
            shards: layout.placement.shards,
            layout: RwLock::new(Arc::new(layout)),
            config_spec: spec,
            store,
            peers,
            rpc_tls,
            groups: RwLock::new(HashMap::new()),
            opener: GroupOpener {
                config,
                snapshot_dir: data_dir.join("snapshots"),
                lease,
            },
            cache: Arc::new(ObjectCache::new(cache_bytes)),
            directory: Arc::new(Directory::default()),
            leader_lease_ms: tuning.election_timeout_ms,
            draining: Default::default(),
            moves: crate::rebalance::Moves::new(tuning.max_moves),
            rejoin,
            data_dir: data_dir.to_path_buf(),
            damaged: tokio::sync::Notify::new(),
        });
        for group in hosted {
            if let Err(e) = cluster.open_group(group).await {
                // Nothing of a node that did not start may keep running (a group already
                // open would go on voting and replicating from a database being moved aside).
                cluster.shutdown().await;
                return Err(e);
            }
        }
        tokio::spawn(watch_disk_space(Arc::downgrade(&cluster)));
        tokio::spawn(keep_catalogue_learners(Arc::downgrade(&cluster)));
        tokio::spawn(keep_directory_current(Arc::downgrade(&cluster)));
        crate::maintenance::spawn(Arc::downgrade(&cluster), tuning, cluster.is_rebuilding());
        crate::membership::spawn(Arc::downgrade(&cluster));
        crate::rebalance::spawn(Arc::downgrade(&cluster));
        tokio::spawn(crate::succession::call_elections(Arc::downgrade(&cluster)));
        Ok(cluster)
    }

    /// Starts `group`'s Raft on this node from whatever state it has here (none for a new
    /// replica: it then waits, uninitialised, for its leader to add it). Every node follows the
    /// catalogue: as a voter when placed so, else as a learner (see `keep_catalogue_learners`),
    /// so that any node can check tokens and serve the domain.
    pub(crate) async fn open_group(&self, group: u32) -> Result<(), ClusterError> {
        if self.hosts(group) {
            return Ok(());
        }
        let s = self.store.clone();
        let reset = tokio::task::spawn_blocking(move || repair_purged_past_applied(&s, group))
            .await
            .map_err(|e| ClusterError::Internal(e.to_string()))??;
        if reset {
            tracing::warn!(group, "log was purged past the applied state by a crash during a snapshot install; rejoining from the leader");
        }
        let log = LogStore::new(self.store.clone(), group);
        let view = (group == META_GROUP).then(|| self.directory.clone());
        let absent = Arc::new(Absent::new(self.opener.lease));
        let sm = StateMachine::open(
            self.store.clone(),
            group,
            &self.opener.snapshot_dir,
            view,
            absent.clone(),
        )
        .await
        .map_err(|e| ClusterError::Internal(e.to_string()))?;
        let network = GroupNetworkFactory {
            group,
            peers: self.peers.clone(),
        };
        let raft = Raft::new(self.me, self.opener.config.clone(), network, log, sm)
            .await
            .map_err(|e| ClusterError::Internal(format!("group {group}: {e}")))?;
        let leader_commit = Arc::default();
        self.groups_mut().insert(
            group,
            Hosted {
                raft,
                absent,
                leader_commit,
            },
        );
        Ok(())
    }

    /// Stops `group`'s Raft here and forgets it (its data is deleted by the caller).
    pub(crate) async fn close_group(&self, group: u32) -> Option<Raft> {
        let hosted = self.groups_mut().remove(&group)?;
        let _ = hosted.raft.shutdown().await;
        Some(hosted.raft)
    }

    fn groups_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<u32, Hosted>> {
        self.groups
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn groups_ref(&self) -> std::sync::RwLockReadGuard<'_, HashMap<u32, Hosted>> {
        self.groups
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The node set and placement this node routes by now.
    pub fn layout(&self) -> Arc<Layout> {
        self.layout
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub(crate) fn set_layout(&self, layout: Layout) {
        *self
            .layout
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(layout);
    }

    /// Resolves when a group of this node stopped on a checksum failure and the node has asked
    /// its next start to rebuild the database: the caller restarts the process.
    pub async fn database_damaged(&self) {
        self.damaged.notified().await;
    }

    /// Asks for a rebuild if a group's Raft stopped on a checksum failure (a damaged block read
    /// while running: openraft stops the group, which then serves nothing here). Returns
    /// whether it did.
    pub(crate) async fn check_damage(&self) -> bool {
        let stopped: Option<String> = self.groups_ref().iter().find_map(|(group, h)| {
            let metrics = h.raft.metrics();
            let m = metrics.borrow();
            match &m.running_state {
                Err(e) if e.to_string().contains("Corruption:") => {
                    Some(format!("group {group}: {e}"))
                }
                _ => None,
            }
        });
        let Some(why) = stopped else {
            return false;
        };
        self.ask_rebuild(format!("a group stopped on a damaged block: {why}"))
            .await
    }

    /// Records `why` for the next start, which rebuilds the database from the peers
    /// (`rejoin.rs`), and makes [`Cluster::database_damaged`] resolve so that the process
    /// restarts. Returns whether the request was recorded.
    pub(crate) async fn ask_rebuild(&self, why: String) -> bool {
        let data = self.data_dir.clone();
        let written = tokio::task::spawn_blocking({
            let why = why.clone();
            move || crate::rejoin::ask_rebuild(&data, &why)
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|written| written);
        match written {
            Ok(()) => {
                tracing::error!(%why, "restarting to rebuild the database from the peers");
                self.damaged.notify_one();
                true
            }
            Err(e) => {
                tracing::error!(%why, error = %e, "asking for a rebuild of the database failed");
                false
            }
        }
    }

    /// Whether this node's database was emptied to be rebuilt from the peers (see `rejoin.rs`).
    pub(crate) fn is_rebuilding(&self) -> bool {
        self.rejoin.is_some()
    }

    /// The longest election timeout of this node's groups, in milliseconds.
    pub(crate) fn election_timeout_max_ms(&self) -> u64 {
        self.opener.config.election_timeout_max
    }

    /// The groups this node led (its own vote saved committed) if this start found the WAL's
    /// tail damaged: they start with the vote uncommitted and need an election (see
    /// `succession.rs`). Read from storage, not from openraft's metrics, which a group may not
    /// have published yet.
    pub(crate) async fn led_before_start(&self) -> Vec<u32> {
        if !self.store.lost_wal_tail() {
            return Vec::new();
        }
        let (store, me, groups) = (self.store.clone(), self.me, self.group_ids());
        let led = tokio::task::spawn_blocking(move || {
            groups
                .into_iter()
                .filter(|&group| match crate::log_store::saved_vote(&store, group) {
                    Ok(Some(vote)) => {
                        vote.is_committed() && vote.leader_id().voted_for() == Some(me)
                    }
                    Ok(None) => false,
                    Err(e) => {
                        tracing::warn!(group, error = %e, "reading the saved vote failed");
                        false
                    }
                })
                .collect::<Vec<u32>>()
        })
        .await;
        let mut led = led.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "reading the saved votes failed");
            Vec::new()
        });
        led.sort_unstable();
        led
    }

    /// Ends rejoining once no hosted replica refuses votes any more: the marker that makes a
    /// restart rejoin too is removed (see `rejoin.rs`).
    pub(crate) async fn finish_rejoin(&self) {
        if self.rejoin.is_none() || !self.data_dir.join(crate::rejoin::REJOIN_MARKER).exists() {
            return;
        }
        if self.group_ids().into_iter().any(|g| self.refuses_votes(g)) {
            return;
        }
        let marker = self.data_dir.join(crate::rejoin::REJOIN_MARKER);
        let removed = tokio::task::spawn_blocking(move || std::fs::remove_file(marker))
            .await
            .map_err(std::io::Error::other)
            .and_then(|removed| removed);
        match removed {
            Ok(()) => tracing::info!("every replica caught up: votes as usual again"),
            Err(e) => tracing::warn!(error = %e, "removing the rejoin marker"),
        }
    }

    /// Whether this replica of `group` must refuse vote requests (see `rejoin.rs`).
    pub(crate) fn refuses_votes(&self, group: u32) -> bool {
        let applied = self
            .group(group)
            .and_then(|raft| raft.metrics().borrow().last_applied.map(|l| l.index));
        self.rebuilding(group, applied)
    }

    /// Whether this replica of `group`, having applied up to `applied`, is still being rebuilt
    /// from its peers after damage (`rejoin.rs`).
    fn rebuilding(&self, group: u32, applied: Option<u64>) -> bool {
        self.rejoin
            .as_ref()
            .is_some_and(|r| r.refuses(group, applied))
    }

    /// A leader of `group` sent an append with `leader_commit` (for readiness, and while
    /// rejoining). Snapshot chunks do not count: their last entry can be far behind the commit.
    pub(crate) fn heard_leader(&self, group: u32, leader_commit: Option<u64>) {
        let Some(commit) = leader_commit else {
            return;
        };
        if let Some(hosted) = self.groups_ref().get(&group) {
            hosted
                .leader_commit
                .fetch_max(commit, std::sync::atomic::Ordering::Relaxed);
        }
        if let Some(rejoin) = &self.rejoin {
            rejoin.heard(group, commit);
        }
    }

    pub(crate) fn snapshot_dir(&self) -> &Path {
        &self.opener.snapshot_dir
    }

    pub(crate) fn peers(&self) -> &Peers {
        &self.peers
    }

    /// `cluster.toml`'s description of the cluster.
    pub(crate) fn config_spec(&self) -> &ClusterSpec {
        &self.config_spec
    }

    pub fn me(&self) -> NodeId {
        self.me
    }

    pub(crate) fn rpc_tls(&self) -> &RpcTls {
        &self.rpc_tls
    }

    /// The live node set, shard count and replication factor.
    pub fn spec(&self) -> Arc<ClusterSpec> {
        self.layout().spec.clone()
    }

    /// Who holds each group now.
    pub fn placement(&self) -> Arc<Placement> {
        self.layout().placement.clone()
    }

    /// The group that owns `sha` (the shard count never changes: no lock).
    pub fn group_of(&self, sha: &Sha256) -> u32 {
        crate::placement::shard_of(sha, self.shards) + 1
    }

    /// The other nodes to forward `group`'s requests to: its holders now, then (while a replica
    /// moves) the nodes it moves to. Never this node: one that is about to receive a replica
    /// (it opens it within a refresh) has nothing to forward to itself.
    pub(crate) fn replicas_of(&self, group: u32) -> Vec<NodeId> {
        let layout = self.layout();
        let mut replicas: Vec<NodeId> = layout
            .placement
            .replicas(group)
            .iter()
            .copied()
            .filter(|n| *n != self.me)
            .collect();
        if layout.members.is_some() {
            for n in layout.target().replicas(group) {
                if *n != self.me && !replicas.contains(n) {
                    replicas.push(*n);
                }
            }
        }
        replicas
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub(crate) fn group(&self, group: u32) -> Option<Raft> {
        self.groups_ref().get(&group).map(|h| h.raft.clone())
    }

    /// Whether this node hosts a replica of `group`.
    pub(crate) fn hosts(&self, group: u32) -> bool {
        self.groups_ref().contains_key(&group)
    }

    fn absent(&self, group: u32) -> Option<Arc<Absent>> {
        self.groups_ref().get(&group).map(|h| h.absent.clone())
    }

    /// The groups hosted here.
    pub(crate) fn group_ids(&self) -> Vec<u32> {
        self.groups_ref().keys().copied().collect()
    }

    /// Whether this node currently leads `group` (as far as it knows).
    pub fn leads(&self, group: u32) -> bool {
        self.group(group).is_some_and(|raft| {
            let m = raft.metrics().borrow().clone();
            m.state == ServerState::Leader
        })
    }

    /// The error writes get while this node's disk is (almost) full (see
    /// `tessera_storage::space`); `None` while there is room.
    fn disk_full_error(&self) -> Option<ClusterError> {
        let space = self.store.space();
        space.is_low().then(|| {
            ClusterError::DiskFull(format!(
                "node {} has {} MiB of disk space left; writes resume above {} MiB",
                self.me,
                space.free_bytes() >> 20,
                (tessera_storage::space::LOW_BYTES + tessera_storage::space::RESERVE_BYTES) >> 20
            ))
        })
    }

    /// For the internal RPC: refuses `bytes` of new Raft entries (or of a snapshot) from a
    /// leader when they would leave less than `FLOOR_BYTES` and `headroom` free (see
    /// `tessera_storage::space`).
    pub(crate) fn refuse_entries(&self, bytes: u64, headroom: u64) -> Result<(), tonic::Status> {
        let space = self.store.space();
        if space.take(bytes, headroom) {
            return Ok(());
        }
        Err(tonic::Status::unavailable(format!(
            "node {}: disk full ({} MiB free), cannot take {} KiB of entries",
            self.me,
            space.free_bytes() >> 20,
            bytes >> 10
        )))
    }

    /// Stops every local group (used on clean shutdown).
    pub async fn shutdown(&self) {
        let rafts: Vec<Raft> = self.groups_ref().values().map(|h| h.raft.clone()).collect();
        for raft in rafts {
            let _ = raft.shutdown().await;
        }
    }

    /// Whether every local group runs and has a leader. A group whose Raft stopped (a storage
    /// error) is not led here; a leader counts only while a quorum acknowledged it within an
    /// election timeout: a leader cut off from its followers keeps believing it leads (openraft
    /// 0.9 has no check-quorum step-down), and a node whose own groups' leader is gone must not
    /// tell a load balancer it is ready. A replica rebuilding from its peers after damage
    /// (`rejoin.rs`) is not ready until it caught up: an empty catalogue replica cannot check
    /// a token (a campaign saw such a node "ready" for minutes while every request timed out);
    /// nor is a voting follower that has not heard from a leader since it started, or is more
    /// than [`READY_LAG`] entries behind the commit its leader sent. (A learner — a replica
    /// moving here, the catalogue on a node not placed for it — serves what it holds and
    /// forwards the rest; a node taking a new replica stays ready while its snapshot comes.)
    pub fn is_ready(&self) -> bool {
        !self.draining.load(std::sync::atomic::Ordering::Relaxed)
            && !self.groups_ref().is_empty()
            && self.groups_ref().iter().all(|(group, h)| {
                let metrics = h.raft.metrics();
                let m = metrics.borrow();
                let applied = m.last_applied.map(|l| l.index);
                m.running_state.is_ok()
                    && !self.rebuilding(*group, applied)
                    && (m.state != ServerState::Follower || !h.behind_leader(applied))
                    && match m.state {
                        ServerState::Leader => m
                            .millis_since_quorum_ack
                            .is_some_and(|ms| ms <= self.leader_lease_ms),
                        ServerState::Shutdown => false,
                        _ => m.current_leader.is_some(),
                    }
            })
    }

    /// Initialises every group of the cluster on its first replica (and the placement in the
    /// catalogue). Safe to repeat: a group that already has state refuses initialisation, so an
    /// existing cluster is never re-initialised. Returns how many groups were initialised now.
    pub async fn init_cluster(&self) -> Result<usize, ClusterError> {
        let placement = self.placement();
        let mut fresh = 0;
        for group in 0..placement.groups.len() as u32 {
            let voters = placement.replicas(group).to_vec();
            let Some(&first) = voters.first() else {
                continue;
            };
            let attempt = || self.init_group_on(first, group, voters.clone());
            let initialized = retry(ClusterError::is_transient, attempt).await?;
            fresh += usize::from(initialized);
            if group == META_GROUP && !initialized && self.initialised_before().await? {
                // An existing cluster: its groups were all created before its placement was
                // recorded. A node that joined later (or has not joined yet) computes a
                // placement of its own from its config, which must never create groups.
                return Ok(0);
            }
        }
        // Recorded unless a newer version is (versions only move forward).
        self.propose(
            META_GROUP,
            Command::SetPlacement(Placement::clone(&placement)),
            0,
        )
        .await?;
        Ok(fresh)
    }

    /// Whether the catalogue has a placement recorded: the last step of an `init` that ran to
    /// its end. Asked after a barrier, so an existing cluster is never mistaken for a new one;
    /// a node that is not (yet) a member of the catalogue cannot pass it.
    async fn initialised_before(&self) -> Result<bool, ClusterError> {
        self.catalog_barrier().await.map_err(|e| {
            ClusterError::Unavailable(format!(
                "this node does not follow the cluster's catalogue (not added yet? see `tessera node add`): {e}"
            ))
        })?;
        let store = self.store.clone();
        let stored = tokio::task::spawn_blocking(move || {
            store.get(Cf::Catalog, &keys::named(META_GROUP, PLACEMENT_KEY))
        })
        .await
        .map_err(|e| ClusterError::Internal(e.to_string()))??;
        Ok(stored.is_some())
    }

    async fn init_group_on(
        &self,
        node: NodeId,
        group: u32,
        voters: Vec<NodeId>,
    ) -> Result<bool, ClusterError> {
        if node == self.me {
            return self.init_group_local(group, &voters).await;
        }
        let request = InitGroupRequest { group, voters };
        let reply = self
            .ask(node, FORWARD_TIMEOUT, request, |mut c, r| async move {
                c.init_group(r).await
            })
            .await?;
        Ok(reply.initialized)
    }

    /// Initialises `group` here with `voters`; `false` if it already had state.
    pub async fn init_group_local(
        &self,
        group: u32,
        voters: &[NodeId],
    ) -> Result<bool, ClusterError> {
        let raft = self
            .group(group)
            .ok_or_else(|| ClusterError::Internal(format!("group {group} is not hosted here")))?;
        let spec = self.spec();
        let members: BTreeMap<NodeId, BasicNode> = voters
            .iter()
            .filter_map(|id| {
                spec.node(*id).map(|n| {
                    (
                        *id,
                        BasicNode {
                            addr: n.rpc.clone(),
                        },
                    )
                })
            })
            .collect();
        match raft.initialize(members).await {
            Ok(()) => Ok(true),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(false),
            Err(e) => Err(ClusterError::Internal(format!(
                "initialise group {group}: {e}"
            ))),
        }
    }

    /// The catalogue records as this node's replica knows them.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// Applies a catalogue change with a fresh request id.
    pub async fn catalog(&self, op: CatalogOp) -> Result<CatalogOutcome, ClusterError> {
        let request_id = crate::random().map_err(|e| ClusterError::Internal(e.to_string()))?;
        self.catalog_with_id(request_id, op).await
    }

    /// Applies a catalogue change; the same `request_id` never applies twice.
    pub async fn catalog_with_id(
        &self,
        request_id: [u8; 16],
        op: CatalogOp,
    ) -> Result<CatalogOutcome, ClusterError> {
        match self
            .propose(
                META_GROUP,
                Command::CatalogAt {
                    request_id,
                    at_ms: SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64),
                    op,
                },
                0,
            )
            .await?
        {
            Response::Catalog(outcome) => Ok(outcome),
            other => Err(ClusterError::Internal(format!(
                "unexpected response {other:?}"
            ))),
        }
    }

    /// Waits until this node's catalogue replica has applied every change acknowledged before
    /// the call (read-your-writes for reads served from [`Cluster::directory`]), and renews the
    /// directory's lease on being current (see [`VIEW_LEASE`](tessera_domain::directory::VIEW_LEASE)).
    pub async fn catalog_barrier(&self) -> Result<(), ClusterError> {
        let Some(raft) = self.group(META_GROUP) else {
            return Err(ClusterError::Internal(
                "this node holds no catalogue replica".into(),
            ));
        };
        // Taken before asking: everything committed before this instant is applied once the
        // wait below returns.
        let since = Instant::now();
        let index = retry(ClusterError::is_transient, || {
            self.read_index(&raft, META_GROUP)
        })
        .await?;
        raft.wait(Some(RETRY_DEADLINE))
            .applied_index_at_least(Some(index), "catalogue barrier")
            .await
            .map_err(|e| ClusterError::Unavailable(format!("catalogue barrier: {e}")))?;
        self.directory.confirmed_current(since);
        Ok(())
    }

    /// The read index of `group`'s leader (`raft` is this node's replica), asked of the leader.
    pub(crate) async fn read_index(&self, raft: &Raft, group: u32) -> Result<u64, ClusterError> {
        let leader = raft.metrics().borrow().current_leader;
        match leader {
            Some(leader) if leader == self.me => self.local_read_index(group).await,
            Some(leader) => {
                let request = ReadIndexRequest { group };
                let reply = self
                    .ask(leader, FORWARD_TIMEOUT, request, |mut c, r| async move {
                        c.read_index(r).await
                    })
                    .await?;
                Ok(reply.index)
            }
            None => Err(ClusterError::Unavailable(format!(
                "group {group} has no leader"
            ))),
        }
    }

    /// This node's read index for `group`, which it must lead.
    pub async fn local_read_index(&self, group: u32) -> Result<u64, ClusterError> {
        let raft = self.group(group).ok_or_else(|| {
            ClusterError::Unavailable(format!("group {group} is not hosted here"))
        })?;
        let read = raft
            .ensure_linearizable()
            .await
            .map_err(|e| ClusterError::Unavailable(format!("group {group}: {e}")))?;
        Ok(read.map(|l| l.index).unwrap_or(0))
    }

    /// Adds (or drops) a reference to an object in its shard group; `None` if the object does
    /// not exist. The same `request_id` never applies twice.
    pub async fn reference(
        &self,
        request_id: [u8; 16],
        sha: Sha256,
        add: bool,
    ) -> Result<Option<u64>, ClusterError> {
        let group = self.group_of(&sha);
        match self
            .propose(
                group,
                Command::Reference {
                    request_id,
                    sha,
                    add,
                },
                0,
            )
            .await?
        {
            Response::References(count) => Ok(count),
            other => Err(ClusterError::Internal(format!(
                "unexpected response {other:?}"
            ))),
        }
    }

    /// Records `derived` as `original`'s form `size` in the original's shard group and returns
    /// the derived object recorded there: an earlier one if another node got there first.
    pub async fn set_derived(
        &self,
        original: Sha256,
        size: &str,
        derived: Sha256,
    ) -> Result<Sha256, ClusterError> {
        let group = self.group_of(&original);
        let command = Command::SetDerived {
            original,
            size: size.to_owned(),
            derived,
        };
        match self.propose(group, command, 0).await? {
            Response::Derived(sha) => Ok(sha),
            other => Err(ClusterError::Internal(format!(
                "unexpected response {other:?}"
            ))),
        }
    }

    /// The derived object recorded for (`original`, `size`) in this node's replica of the
    /// original's shard group, read on the blocking pool; `None` when there is none or this
    /// node holds no replica (the caller then generates it, and `set_derived` tells it which
    /// one the group recorded). A local miss is read again after this replica has applied
    /// everything the group's leader had committed, so a record another node just made is
    /// found instead of generated again.
    pub async fn derived(
        &self,
        original: &Sha256,
        size: &str,
    ) -> Result<Option<Sha256>, ClusterError> {
        let group = self.group_of(original);
        let Some(raft) = self.group(group) else {
            return Ok(None);
        };
        if let Some(found) = self.local_derived(group, original, size).await? {
            return Ok(Some(found));
        }
        let index = retry(ClusterError::is_transient, || self.read_index(&raft, group)).await?;
        raft.wait(Some(RETRY_DEADLINE))
            .applied_index_at_least(Some(index), "derived record")
            .await
            .map_err(|e| ClusterError::Unavailable(format!("group {group}: {e}")))?;
        self.local_derived(group, original, size).await
    }

    async fn local_derived(
        &self,
        group: u32,
        original: &Sha256,
        size: &str,
    ) -> Result<Option<Sha256>, ClusterError> {
        let key = crate::command::derived_key(group, original, size);
        let store = self.store.clone();
        let raw = tokio::task::spawn_blocking(move || store.get(Cf::Catalog, &key))
            .await
            .map_err(|e| ClusterError::Internal(e.to_string()))??;
        Ok(raw.and_then(|raw| raw.try_into().ok()).map(Sha256))
    }

    /// Runs a blocking read of this node's catalogue replica (after `catalog_barrier` when the
    /// caller needs its own writes).
    pub async fn read_catalog<T, F>(&self, read: F) -> Result<T, ClusterError>
    where
        F: FnOnce(&dyn Records) -> Result<T, DomainError> + Send + 'static,
        T: Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || read(&store.records(META_GROUP)))
            .await
            .map_err(|e| ClusterError::Internal(e.to_string()))?
            .map_err(|e| ClusterError::Storage(e.into()))
    }

    /// Stores an object through its shard's leader; acknowledged once a majority of the shard
    /// has the entry durably and the leader has applied it.
    pub async fn put_object(
        &self,
        sha: Sha256,
        meta: ObjectMeta,
        bytes: Bytes,
    ) -> Result<PutOutcome, ClusterError> {
        let group = self.group_of(&sha);
        match self
            .propose(group, Command::PutObject { sha, meta, bytes }, 0)
            .await?
        {
            Response::Object(outcome) => Ok(outcome),
            other => Err(ClusterError::Internal(format!(
                "unexpected response {other:?}"
            ))),
        }
    }

    /// Proposes `command` to `group`, forwarding to its leader, retrying transient failures.
    pub async fn propose(
        &self,
        group: u32,
        command: Command,
        hops: u32,
    ) -> Result<Response, ClusterError> {
        if hops > 0 {
            // Forwarded: the node the client talks to owns the retries.
            return self.propose_once(group, &command, hops).await;
        }
        // The node a client writes through refuses while its own disk is full, even for
        // groups it does not host: the client hears it at once and can go elsewhere.
        self.disk_full_error().map_or(Ok(()), Err)?;
        retry(ClusterError::is_transient, || {
            self.propose_once(group, &command, hops)
        })
        .await
    }

    async fn propose_once(
        &self,
        group: u32,
        command: &Command,
        hops: u32,
    ) -> Result<Response, ClusterError> {
        if let Some(raft) = self.group(group) {
            // A leader whose disk is full would append the entry and then wait for space: it
            // refuses instead, and the group takes writes again once space is back.
            if self.leads(group) {
                self.disk_full_error().map_or(Ok(()), Err)?;
            }
            return match raft.client_write(command.clone()).await {
                Ok(reply) => Ok(reply.data),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(fwd))) => {
                    match fwd.leader_id {
                        Some(leader) if leader != self.me => {
                            self.forward_propose(leader, group, command, hops).await
                        }
                        _ => Err(ClusterError::Unavailable(format!(
                            "group {group} has no leader"
                        ))),
                    }
                }
                Err(e) => Err(ClusterError::Unavailable(format!("group {group}: {e}"))),
            };
        }
        let mut last = ClusterError::Unavailable(format!("group {group} has no replicas"));
        for replica in self.replicas_of(group) {
            match self.forward_propose(replica, group, command, hops).await {
                Err(e) if e.is_transient() => last = e,
                other => return other,
            }
        }
        Err(last)
    }

    async fn forward_propose(
        &self,
        node: NodeId,
        group: u32,
        command: &Command,
        hops: u32,
    ) -> Result<Response, ClusterError> {
        if hops >= MAX_HOPS {
            return Err(ClusterError::Unavailable(format!(
                "group {group}: leader is moving"
            )));
        }
        // A command may carry a 64 MiB image: encode it off the async threads.
        let owned = command.clone();
        let raw = tokio::task::spawn_blocking(move || bincode::serialize(&owned))
            .await
            .map_err(|e| ClusterError::Internal(e.to_string()))?
            .map_err(|e| ClusterError::Internal(e.to_string()))?;
        let request = ProposeRequest {
            group,
            command: raw.into(),
            hops: hops + 1,
        };
        let reply = self
            .ask(node, FORWARD_TIMEOUT, request, |mut c, r| async move {
                c.propose(r).await
            })
            .await?;
        bincode::deserialize(&reply.response).map_err(|e| ClusterError::Internal(e.to_string()))
    }

    /// Reads an object. A local replica answers directly (no Raft round trip); on a local miss
    /// the shard leader confirms with a linearizable read, so an acknowledged object is never
    /// reported missing while its shard has a majority. Nodes without a replica forward.
    /// With `spec.linearizable` the leader answers, so the record (reference count) is current.
    pub async fn read_object(
        &self,
        sha: Sha256,
        spec: ReadSpec,
        hops: u32,
    ) -> Result<Option<ObjectRead>, ClusterError> {
        let group = self.group_of(&sha);
        if hops > 0 {
            return self.read_once(group, sha, spec, hops).await;
        }
        // Reads are idempotent: a timed-out attempt is retried too.
        let retryable =
            |e: &ClusterError| e.is_transient() || matches!(e, ClusterError::Timeout(_));
        retry(retryable, || self.read_once(group, sha, spec, hops)).await
    }

    async fn read_once(
        &self,
        group: u32,
        sha: Sha256,
        spec: ReadSpec,
        hops: u32,
    ) -> Result<Option<ObjectRead>, ClusterError> {
        let Some(raft) = self.group(group) else {
            return self.read_elsewhere(group, sha, spec, hops).await;
        };
        if !spec.linearizable {
            match self.read_here(group, sha, spec).await? {
                Local::Found(found) => return Ok(Some(found)),
                Local::NoBytes => {
                    if let Some(found) = self.read_from_peers(group, sha, spec, hops).await {
                        return Ok(Some(found));
                    }
                }
                Local::NoRecord => {}
            }
        }
        let leader = raft.metrics().borrow().current_leader;
        match leader {
            Some(leader) if leader == self.me => {
                let absent = self.absent(group);
                let absent = absent.as_deref();
                let term = leading_term(&raft).await;
                if let (Some(absent), Some(term)) = (absent, term) {
                    if absent.knows_absent(&sha, term, Instant::now()) {
                        metrics::counter!("tessera_negative_cache_hits_total").increment(1);
                        return Ok(None);
                    }
                }
                let ticket = absent.map(|a| a.ticket());
                raft.ensure_linearizable()
                    .await
                    .map_err(|e| ClusterError::Unavailable(format!("group {group}: {e}")))?;
                let found = self.read_here(group, sha, spec).await?;
                // Leader in the same term before and after the quorum check: it confirmed this
                // term's leadership, from a moment after the ticket was taken.
                if let (Some(absent), Some(ticket), Some(term)) = (absent, ticket, term) {
                    if leading_term(&raft).await == Some(term) {
                        let missing = matches!(found, Local::NoRecord).then_some(&sha);
                        absent.confirmed(&ticket, term, missing);
                    }
                }
                match found {
                    Local::Found(found) => Ok(Some(found)),
                    Local::NoRecord => Ok(None),
                    Local::NoBytes => match self.read_from_peers(group, sha, spec, hops).await {
                        Some(found) => Ok(Some(found)),
                        None => Err(ClusterError::Unavailable(format!(
                            "no intact replica of {sha} answered"
                        ))),
                    },
                }
            }
            Some(leader) => self.forward_read(leader, sha, spec, hops).await,
            None => Err(ClusterError::Unavailable(format!(
                "group {group} has no leader"
            ))),
        }
    }

    /// Reads from the other replicas of a group whose local bytes are missing or damaged.
    pub(crate) async fn read_from_peers(
        &self,
        group: u32,
        sha: Sha256,
        spec: ReadSpec,
        hops: u32,
    ) -> Option<ObjectRead> {
        let spec = ReadSpec {
            linearizable: false,
            ..spec
        };
        for replica in self.replicas_of(group) {
            if replica == self.me {
                continue;
            }
            match self.forward_read(replica, sha, spec, hops).await {
                Ok(Some(found)) => return Some(found),
                Ok(None) => {}
                Err(e) => tracing::debug!(replica, %sha, error = %e, "peer read failed"),
            }
        }
        None
    }

    /// The answer from the object cache, unless the read must be linearizable.
    fn cached(&self, sha: &Sha256, spec: ReadSpec) -> Option<ObjectRead> {
        if spec.linearizable {
            return None;
        }
        let hit = self.cache.get(sha)?;
        Some(answer(hit.meta, Some(hit.bytes), spec))
    }

    /// Reads an object of a group this node holds no replica of, from one of its replicas.
    /// Small objects read whole are kept in this node's cache too (objects are immutable, so any
    /// node may cache any object): a hot object then costs a forwarded read only once.
    async fn read_elsewhere(
        &self,
        group: u32,
        sha: Sha256,
        spec: ReadSpec,
        hops: u32,
    ) -> Result<Option<ObjectRead>, ClusterError> {
        if let Some(hit) = self.cached(&sha, spec) {
            return Ok(Some(hit));
        }
        let cacheable = !spec.meta_only && !spec.linearizable && spec.range.is_none();
        let mut last = ClusterError::Unavailable(format!("group {group} has no replicas"));
        for replica in self.replicas_of(group) {
            match self.forward_read(replica, sha, spec, hops).await {
                Err(e) if e.is_transient() => last = e,
                Ok(Some(read)) if cacheable => return Ok(Some(self.cache_forwarded(sha, read))),
                other => return other,
            }
        }
        Err(last)
    }

    /// Passes a forwarded object's chunks on as they arrive and, if the object is small, keeps a
    /// copy: once the last byte has gone by, the whole object enters the cache. The client gets
    /// its first byte after one chunk, not after the whole object. A stream that fails or ends
    /// short is not cached (and, its head already sent, ends the client's response early).
    fn cache_forwarded(&self, sha: Sha256, read: ObjectRead) -> ObjectRead {
        let ObjectRead { head, body } = read;
        let Some(ObjectBody::Remote(stream)) = body else {
            return ObjectRead { head, body };
        };
        if head.meta.size > FORWARD_CACHE_MAX {
            return ObjectRead {
                head,
                body: Some(ObjectBody::Remote(stream)),
            };
        }
        let (cache, meta) = (self.cache.clone(), head.meta.clone());
        let mut copy = bytes::BytesMut::with_capacity(meta.size as usize);
        let tee = stream.map(move |chunk| {
            if let Ok(bytes) = &chunk {
                copy.extend_from_slice(bytes);
                if copy.len() as u64 == meta.size {
                    let bytes = copy.split().freeze();
                    cache.insert(
                        sha,
                        Cached {
                            meta: meta.clone(),
                            bytes,
                        },
                    );
                }
            }
            chunk
        });
        ObjectRead {
            head,
            body: Some(ObjectBody::Remote(Box::pin(tee))),
        }
    }

    /// Reads from this node's replica of `group` only, through the object cache unless the
    /// read must be linearizable. A record without intact bytes (a snapshot being installed,
    /// damaged bytes) counts as a miss.
    pub async fn read_local(
        &self,
        group: u32,
        sha: Sha256,
        spec: ReadSpec,
    ) -> Result<Option<ObjectRead>, ClusterError> {
        Ok(match self.read_here(group, sha, spec).await? {
            Local::Found(found) => Some(found),
            Local::NoRecord | Local::NoBytes => None,
        })
    }

    async fn read_here(
        &self,
        group: u32,
        sha: Sha256,
        spec: ReadSpec,
    ) -> Result<Local, ClusterError> {
        if let Some(hit) = self.cached(&sha, spec) {
            return Ok(Local::Found(hit));
        }
        let store = self.store.clone();
        let found = tokio::task::spawn_blocking(move || {
            let Some(meta) = store.object_meta(group, &sha)? else {
                return Ok(None);
            };
            if spec.meta_only {
                return Ok(Some((meta, None)));
            }
            Ok(Some((meta, store.object_bytes(group, &sha)?)))
        })
        .await
        .map_err(|e| ClusterError::Internal(e.to_string()))?
        .map_err(ClusterError::Storage)?;
        let Some((meta, bytes)) = found else {
            return Ok(Local::NoRecord);
        };
        match bytes {
            Some(bytes) => {
                self.cache.insert(
                    sha,
                    Cached {
                        meta: meta.clone(),
                        bytes: bytes.clone(),
                    },
                );
                Ok(Local::Found(answer(meta, Some(bytes), spec)))
            }
            None if spec.meta_only => Ok(Local::Found(answer(meta, None, spec))),
            None => Ok(Local::NoBytes),
        }
    }

    /// The record of a locally stored object and its body's place in a volume file, for
    /// serving with `sendfile(2)`. `None` when this node holds no replica of the object's shard,
    /// or its replica has no intact bytes for it: the caller then uses [`Cluster::read_object`].
    /// The lookup (two RocksDB point reads) runs on the blocking pool.
    pub async fn local_object_file(
        &self,
        sha: &Sha256,
    ) -> Result<Option<(ObjectMeta, ObjectSlice)>, ClusterError> {
        let group = self.group_of(sha);
        if !self.hosts(group) {
            return Ok(None);
        }
        let (store, sha) = (self.store.clone(), *sha);
        tokio::task::spawn_blocking(move || store.object_slice(group, &sha))
            .await
            .map_err(|e| ClusterError::Internal(e.to_string()))?
            .map_err(ClusterError::Storage)
    }

    /// The body of a locally stored object found in its group's index in memory (see
    /// `tessera_storage::volume::MemoryIndex`): no thread hop and no RocksDB read, one
    /// positioned read of the needle header. `None` when this node holds no replica of the
    /// object's shard or the index in memory does not have it: the caller then uses
    /// [`Cluster::local_object_file`] or [`Cluster::read_object`].
    pub fn resident_object(&self, sha: &Sha256) -> Option<Resident> {
        let group = self.group_of(sha);
        if !self.hosts(group) {
            return None;
        }
        self.store.resident_object(group, sha)
    }

    /// An object from this node's object cache, if it is there: no I/O and no thread hop, so
    /// the HTTP fast path asks here before it looks for the object's volume file.
    pub fn cached_object(&self, sha: &Sha256) -> Option<(ObjectMeta, Bytes)> {
        self.cache.get(sha).map(|hit| (hit.meta, hit.bytes))
    }

    /// Whether this node's object cache takes objects of `size` bytes.
    pub fn cache_admits(&self, size: u64) -> bool {
        self.cache.admits(size)
    }

    /// What this node's object cache would evict first to take `size` bytes of `sha`, or
    /// `None` while it has room (for the fast path's admission policy).
    pub fn cache_victim(&self, sha: &Sha256, size: u64) -> Option<Sha256> {
        self.cache.first_victim(sha, size)
    }

    /// Object cache hits, misses and current size in bytes.
    pub fn cache_stats(&self) -> (u64, u64, usize) {
        let (hits, misses) = self.cache.stats();
        (hits, misses, self.cache.size())
    }

    async fn forward_read(
        &self,
        node: NodeId,
        sha: Sha256,
        spec: ReadSpec,
        hops: u32,
    ) -> Result<Option<ObjectRead>, ClusterError> {
        if hops >= MAX_HOPS {
            return Err(ClusterError::Unavailable("leader is moving".into()));
        }
        let mut client = self.client(node)?;
        let range =
            bincode::serialize(&spec.range).map_err(|e| ClusterError::Internal(e.to_string()))?;
        let req = tonic::Request::new(ReadRequest {
            sha256: Bytes::copy_from_slice(&sha.0),
            hops: hops + 1,
            meta_only: spec.meta_only,
            range: range.into(),
            linearizable: spec.linearizable,
        });
        // The deadline covers the first message only: a large body may take longer to stream,
        // and each later chunk gets its own idle deadline instead.
        let opened = tokio::time::timeout(FORWARD_TIMEOUT, async {
            let mut stream = match client.read_object(req).await {
                Ok(reply) => reply.into_inner(),
                Err(s) if s.code() == tonic::Code::NotFound => return Ok(None),
                Err(s) => return Err(ClusterError::from_status(&s)),
            };
            let first = stream
                .message()
                .await
                .map_err(|s| ClusterError::from_status(&s))?
                .ok_or_else(|| ClusterError::Unavailable("read stream ended early".into()))?;
            Ok(Some((stream, first)))
        })
        .await
        .map_err(|_| ClusterError::Timeout(format!("node {node} did not answer a read")))??;
        let Some((stream, first)) = opened else {
            return Ok(None);
        };
        let head: ReadHead =
            bincode::deserialize(&first.head).map_err(|e| ClusterError::Internal(e.to_string()))?;
        let body = if spec.meta_only || head.range == RangeOutcome::Unsatisfiable {
            None
        } else {
            let rest = futures_util::stream::unfold(Some(stream), |stream| async move {
                let mut stream = stream?;
                match tokio::time::timeout(FORWARD_TIMEOUT, stream.message()).await {
                    Ok(Ok(Some(chunk))) => Some((Ok(chunk.data), Some(stream))),
                    Ok(Ok(None)) => None,
                    Ok(Err(s)) => Some((Err(ClusterError::from_status(&s)), None)),
                    Err(_) => Some((
                        Err(ClusterError::Timeout("read stream stalled".into())),
                        None,
                    )),
                }
            });
            let body = futures_util::stream::iter([Ok(first.data)]).chain(rest);
            Some(ObjectBody::Remote(Box::pin(body)))
        };
        Ok(Some(ObjectRead { head, body }))
    }

    /// The Raft state of the groups hosted here.
    pub fn local_status(&self) -> Vec<GroupStatus> {
        let mut out: Vec<GroupStatus> = self
            .groups_ref()
            .iter()
            .map(|(&group, hosted)| {
                let m = hosted.raft.metrics().borrow().clone();
                GroupStatus {
                    group,
                    reporter: self.me,
                    state: match m.state {
                        ServerState::Leader => "leader",
                        ServerState::Follower => "follower",
                        ServerState::Candidate => "candidate",
                        ServerState::Learner => "learner",
                        ServerState::Shutdown => "shutdown",
                    }
                    .to_string(),
                    leader: m.current_leader,
                    term: m.current_term,
                    last_log: m.last_log_index,
                    applied: m.last_applied.map(|l| l.index),
                    snapshot: m.snapshot.map(|l| l.index),
                    damaged: self.store.damaged_objects(group) as u64,
                    bytes: self.store.volume_bytes(group),
                }
            })
            .collect();
        out.sort_by_key(|s| s.group);
        out
    }

    /// The Raft state reported by `node` (this node answers locally).
    pub async fn node_status(&self, node: NodeId) -> Result<Vec<GroupStatus>, ClusterError> {
        if node == self.me {
            return Ok(self.local_status());
        }
        let timeout = Duration::from_secs(2);
        let reply = self
            .ask(node, timeout, StatusRequest {}, |mut c, r| async move {
                c.local_status(r).await
            })
            .await?;
        bincode::deserialize(&reply.groups).map_err(|e| ClusterError::Internal(e.to_string()))
    }

    /// Sends `message` to `node` over the internal RPC with `call` (which names the method),
    /// giving up after `timeout`; returns the answer's message.
    pub(crate) async fn ask<Q, A, Fut>(
        &self,
        node: NodeId,
        timeout: Duration,
        message: Q,
        call: impl FnOnce(InternalClient<Channel>, tonic::Request<Q>) -> Fut,
    ) -> Result<A, ClusterError>
    where
        Fut: std::future::Future<Output = Result<tonic::Response<A>, tonic::Status>>,
    {
        let mut request = tonic::Request::new(message);
        request.set_timeout(timeout);
        let reply = call(self.client(node)?, request)
            .await
            .map_err(|s| ClusterError::from_status(&s))?;
        Ok(reply.into_inner())
    }

    fn client(&self, node: NodeId) -> Result<InternalClient<Channel>, ClusterError> {
        self.peers
            .client(node)
            .ok_or_else(|| ClusterError::Internal(format!("no channel to node {node}")))
    }
}

/// What this node's own replica holds of an object.
enum Local {
    Found(ObjectRead),
    NoRecord,
    /// The record without intact bytes: another replica must serve them.
    NoBytes,
}

/// Shapes a read's answer: the record, and the requested part of the body.
fn answer(meta: ObjectMeta, bytes: Option<Bytes>, spec: ReadSpec) -> ObjectRead {
    let range = RangeOutcome::of(spec.range, meta.size);
    let body = match (bytes, range) {
        _ if spec.meta_only => None,
        (None, _) | (_, RangeOutcome::Unsatisfiable) => None,
        (Some(b), RangeOutcome::Full) => Some(ObjectBody::Local(b)),
        (Some(b), RangeOutcome::Partial { offset, length }) => Some(ObjectBody::Local(
            b.slice(offset as usize..(offset + length) as usize),
        )),
    };
    ObjectRead {
        head: ReadHead { meta, range },
        body,
    }
}

/// Retries failures that `retryable` accepts, with backoff, until [`RETRY_DEADLINE`].
async fn retry<T, F, Fut>(
    retryable: impl Fn(&ClusterError) -> bool,
    mut attempt: F,
) -> Result<T, ClusterError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClusterError>>,
{
    let deadline = Instant::now() + RETRY_DEADLINE;
    let mut pause = Duration::from_millis(20);
    loop {
        match attempt().await {
            Err(e) if retryable(&e) && Instant::now() + pause < deadline => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
            other => return other,
        }
    }
}

/// While this node leads the catalogue, adds every node of the cluster that is not one of
/// its voters as a learner: learners receive the catalogue's log without voting, so nodes
/// beyond the catalogue's five replicas still hold the users, keys and the annotation domain
/// locally (reads after a barrier, token checks in microseconds).
/// Renews the directory's lease on being current with a catalogue barrier twice a second, so
/// that token checks on a healthy node never wait, while a node cut off from the catalogue
/// leader (paused, partitioned) stops trusting its view within [`VIEW_LEASE`](tessera_domain::directory::VIEW_LEASE).
async fn keep_directory_current(cluster: std::sync::Weak<Cluster>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(this) = cluster.upgrade() else {
            return;
        };
        if let Err(e) = this.catalog_barrier().await {
            tracing::debug!(error = %e, "renewing the catalogue view");
        }
    }
}

async fn keep_catalogue_learners(cluster: std::sync::Weak<Cluster>) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        let Some(this) = cluster.upgrade() else {
            return;
        };
        let Some(raft) = this.group(META_GROUP) else {
            return;
        };
        if !this.leads(META_GROUP) {
            continue;
        }
        if this.directory.has_users_without_ids() {
            match this.catalog(CatalogOp::AssignUserIds).await {
                Ok(CatalogOutcome::UserIds(given)) => {
                    tracing::info!(
                        users = given.len(),
                        "gave ids to users from before user ids"
                    )
                }
                Ok(other) => tracing::warn!(?other, "assigning user ids"),
                Err(e) => tracing::warn!(error = %e, "assigning user ids"),
            }
        }
        let membership = raft.metrics().borrow().membership_config.clone();
        let known: Vec<NodeId> = membership.membership().nodes().map(|(id, _)| *id).collect();
        let spec = this.spec();
        for node in spec.nodes.iter().filter(|n| !known.contains(&n.id)) {
            let address = BasicNode {
                addr: node.rpc.clone(),
            };
            match raft.add_learner(node.id, address, false).await {
                Ok(_) => tracing::info!(node = node.id, "added as a catalogue learner"),
                Err(e) => {
                    tracing::debug!(node = node.id, error = %e, "adding a catalogue learner");
                    break;
                }
            }
        }
    }
}
