//! Background care of the node's volumes: the scrub (every needle checked against its
//! checksum), the repair of objects whose local bytes are damaged or missing (fetched from
//! another replica), and compaction.

use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use tessera_storage::volume::GARBAGE_RATIO;
use tessera_storage::{Cf, Sha256, StorageError};
use tokio::time::{Instant, Interval, MissedTickBehavior};

use crate::cluster::{Cluster, RaftTuning};
use crate::error::ClusterError;
use crate::placement::META_GROUP;
use crate::read::{ObjectBody, ReadSpec};

/// A scrub checks this many bytes per blocking call, then sleeps to keep to its rate.
const SCRUB_SLICE: u64 = 4 << 20;

/// How often the repair loop looks for damaged or missing objects to fetch.
const REPAIR_EVERY: Duration = Duration::from_secs(2);

/// Starts the repair loop, and the scrub and compaction loops (each disabled by a zero
/// interval).
pub(crate) fn spawn(cluster: Weak<Cluster>, tuning: &RaftTuning, rebuilding: bool) {
    tokio::spawn(repair_loop(cluster.clone()));
    let rate = tuning.scrub_bytes_per_s.max(1);
    // A database just emptied for a rebuild has nothing old to check.
    if !rebuilding {
        tokio::spawn(check_tables(cluster.clone(), rate));
    }
    if tuning.scrub_interval_ms > 0 {
        let every = Duration::from_millis(tuning.scrub_interval_ms);
        tokio::spawn(scrub_loop(cluster.clone(), every, rate));
    }
    if tuning.compact_interval_ms > 0 {
        let every = Duration::from_millis(tuning.compact_interval_ms);
        tokio::spawn(compact_loop(cluster, every));
    }
}

/// Runs `pass` on every tick of `tick` (a late tick is delayed, not made up) for as long as the
/// cluster lives.
async fn every_tick<F, Fut>(cluster: Weak<Cluster>, mut tick: Interval, mut pass: F)
where
    F: FnMut(Arc<Cluster>) -> Fut,
    Fut: Future<Output = ()>,
{
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(this) = cluster.upgrade() else {
            return;
        };
        pass(this).await;
    }
}

async fn scrub_loop(cluster: Weak<Cluster>, every: Duration, rate: u64) {
    let tick = tokio::time::interval_at(Instant::now() + every, every);
    every_tick(cluster, tick, |this| async move {
        for group in this.shard_groups() {
            if let Err(e) = scrub_group(&this, group, rate).await {
                tracing::warn!(group, error = %e, "scrub pass failed");
            }
        }
    })
    .await
}

/// Reads every table of the node's database once, at about `rate` bytes per second, soon
/// after start-up (`table_check.rs` in the storage crate says why). A damaged block asks for
/// the same rebuild as one a group stops on while running.
async fn check_tables(cluster: Weak<Cluster>, rate: u64) {
    let started = Instant::now();
    let mut total = 0u64;
    for cf in Cf::ALL {
        let mut from: Option<Vec<u8>> = None;
        loop {
            let Some(this) = cluster.upgrade() else {
                return;
            };
            let store = this.store().clone();
            let checked = tokio::task::spawn_blocking(move || {
                store.check_tables(cf, from.as_deref(), SCRUB_SLICE)
            })
            .await
            .map_err(|e| StorageError::Io(std::io::Error::other(e)))
            .and_then(|checked| checked);
            let (read, next) = match checked {
                Ok(slice) => slice,
                Err(e) if e.is_corruption() => {
                    metrics::counter!("tessera_table_check_damaged_total").increment(1);
                    let why = format!(
                        "the table check found a damaged block in {}: {e}",
                        cf.name()
                    );
                    this.ask_rebuild(why).await;
                    return;
                }
                Err(e) => {
                    tracing::warn!(cf = cf.name(), error = %e, "table check stopped");
                    return;
                }
            };
            drop(this);
            total += read;
            let Some(next) = next else {
                break;
            };
            from = Some(next);
            tokio::time::sleep(Duration::from_secs_f64(read as f64 / rate as f64)).await;
        }
    }
    tracing::info!(
        bytes = total,
        seconds = started.elapsed().as_secs_f64(),
        "table check: every table of the database read back intact"
    );
}

/// Fetches every object found damaged or missing (by a read, the scrub, the log store or a
/// snapshot install) from another replica soon after, not at the next scrub; objects no
/// replica serves yet are tried again on the next round.
async fn repair_loop(cluster: Weak<Cluster>) {
    let tick = tokio::time::interval(REPAIR_EVERY);
    every_tick(cluster, tick, |this| async move {
        for group in this.shard_groups() {
            for sha in this.store().awaiting_repair(group) {
                if let Err(e) = repair(&this, group, sha).await {
                    tracing::debug!(group, %sha, error = %e, "could not repair object yet");
                }
            }
        }
    })
    .await
}

/// One pass over `group`'s needles at about `rate` bytes per second.
async fn scrub_group(cluster: &Cluster, group: u32, rate: u64) -> Result<(), ClusterError> {
    let mut from = None;
    loop {
        let store = cluster.store().clone();
        let slice =
            tokio::task::spawn_blocking(move || store.scrub_slice(group, from, SCRUB_SLICE))
                .await
                .map_err(|e| ClusterError::Internal(e.to_string()))??;
        for sha in &slice.damaged {
            if let Err(e) = repair(cluster, group, *sha).await {
                tracing::warn!(group, %sha, error = %e, "could not repair damaged object yet");
            }
        }
        let Some(next) = slice.next else {
            return Ok(());
        };
        from = Some(next);
        tokio::time::sleep(Duration::from_secs_f64(slice.bytes as f64 / rate as f64)).await;
    }
}

/// Fetches an intact copy of `sha` from another replica of `group` and rewrites it here.
async fn repair(cluster: &Cluster, group: u32, sha: Sha256) -> Result<(), ClusterError> {
    let Some(read) = cluster
        .read_from_peers(group, sha, ReadSpec::default(), 0)
        .await
    else {
        return Err(ClusterError::Unavailable(format!(
            "no other replica served {sha}"
        )));
    };
    let body = match read.body {
        Some(ObjectBody::Local(bytes)) => bytes.to_vec(),
        Some(ObjectBody::Remote(mut stream)) => {
            let mut body = Vec::with_capacity(read.head.meta.size as usize);
            while let Some(chunk) = stream.next().await {
                body.extend_from_slice(&chunk?);
            }
            body
        }
        None => return Err(ClusterError::Unavailable(format!("empty read of {sha}"))),
    };
    let store = cluster.store().clone();
    tokio::task::spawn_blocking(move || store.repair_object(group, &sha, &body))
        .await
        .map_err(|e| ClusterError::Internal(e.to_string()))??;
    Ok(())
}

async fn compact_loop(cluster: Weak<Cluster>, every: Duration) {
    let tick = tokio::time::interval_at(Instant::now() + every, every);
    every_tick(cluster, tick, |this| async move {
        for group in this.shard_groups() {
            let Some(raft) = this.group(group) else {
                continue;
            };
            // Volumes that unpurged log stubs point into stay in place.
            let purged = raft.metrics().borrow().purged.map(|l| l.index).unwrap_or(0);
            let store = this.store().clone();
            let done = tokio::task::spawn_blocking(move || {
                store.compact_volumes(group, GARBAGE_RATIO, purged)
            })
            .await;
            match done {
                Ok(Ok(done)) if done.volumes > 0 => {
                    tracing::info!(
                        group,
                        volumes = done.volumes,
                        reclaimed = done.reclaimed_bytes,
                        "compacted volumes"
                    );
                    metrics::counter!("tessera_volume_reclaimed_bytes_total")
                        .increment(done.reclaimed_bytes);
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(group, error = %e, "compaction failed"),
                Err(e) => tracing::warn!(group, error = %e, "compaction task failed"),
            }
        }
    })
    .await
}

impl Cluster {
    /// The shard groups hosted here (groups whose state holds objects).
    pub(crate) fn shard_groups(&self) -> Vec<u32> {
        let mut groups: Vec<u32> = self
            .group_ids()
            .into_iter()
            .filter(|g| *g != META_GROUP)
            .collect();
        groups.sort_unstable();
        groups
    }
}
