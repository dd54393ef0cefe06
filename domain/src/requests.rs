//! The catalogue's memory of applied requests: what makes a retried request return its first
//! outcome instead of applying twice.
//!
//! Records: `request/<id hex>` -> the op's outcome, and `request-at/<ms>/<id hex>` -> empty, a
//! time index the catalogue leader prunes by ([`CatalogOp::PruneRequests`]) once a request is
//! older than [`RETENTION_MS`]: a retry comes within seconds or minutes, never a day later, so
//! the catalogue holds a day of requests instead of every request ever made. Heartbeats and the
//! leader's housekeeping ops are not recorded at all (see [`remembers`]): applying one of those
//! twice changes nothing that matters.
//!
//! Requests recorded before the time index existed (data dirs from before) have no index
//! entry; the first prune notes the time, and the first prune a full retention period later
//! drops every unindexed record, once.
//!
//! [`CatalogOp::PruneRequests`]: crate::catalog::CatalogOp::PruneRequests

use std::collections::HashSet;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::catalog::CatalogOp;
use crate::jobs::JobOp;
use crate::records::get;
use crate::{key, DomainError, Records, Tx};

/// How long a request's outcome is remembered: a retry after this applies as a new request.
pub const RETENTION_MS: u64 = 24 * 60 * 60 * 1000;

const INDEX: &str = "request-at/";
/// When unindexed (older) records may go: set by the first prune.
const LEGACY_UNTIL: &str = "request-legacy-until";
/// Present once unindexed records were dropped.
const LEGACY_DONE: &str = "request-legacy-pruned";

fn record_key(id: &[u8; 16]) -> Vec<u8> {
    key(&format!("request/{}", hex::encode(id)))
}

fn index_key(at_ms: u64, id: &[u8; 16]) -> Vec<u8> {
    key(&format!("{INDEX}{at_ms:016x}/{}", hex::encode(id)))
}

/// Whether an op's outcome is kept for retries. Not for job heartbeats (one a second per
/// running job; a repeated one only bumps the beat count again) nor for the leader's own
/// housekeeping, which is idempotent by construction.
pub fn remembers(op: &CatalogOp) -> bool {
    !matches!(
        op,
        CatalogOp::Job(JobOp::Progress { .. })
            | CatalogOp::PruneRevoked { .. }
            | CatalogOp::PruneRequests { .. }
            | CatalogOp::AssignUserIds
    )
}

/// The outcome of request `id`, if it was applied (and not yet forgotten).
pub fn first_outcome<T: DeserializeOwned>(
    r: &dyn Records,
    id: &[u8; 16],
) -> Result<Option<T>, DomainError> {
    get(r, &record_key(id))
}

/// Remembers request `id`'s outcome; `at_ms` (the proposer's clock) indexes it for pruning.
/// Without a time (entries from before times were proposed) it is kept until the legacy sweep.
pub fn remember<T: Serialize>(
    tx: &mut Tx,
    id: &[u8; 16],
    at_ms: Option<u64>,
    outcome: &T,
) -> Result<(), DomainError> {
    tx.put_record(record_key(id), outcome)?;
    if let Some(at_ms) = at_ms {
        tx.put(index_key(at_ms, id), Vec::new());
    }
    Ok(())
}

/// Forgets requests made before `before_ms`; returns how many.
pub fn prune(tx: &mut Tx, before_ms: u64) -> Result<u64, DomainError> {
    let end = key(&format!("{INDEX}{before_ms:016x}"));
    let mut old = Vec::new();
    for item in tx.scan(&key(INDEX), None) {
        let (k, _) = item?;
        if k >= end {
            break;
        }
        old.push(k);
    }
    let mut forgotten = 0;
    for k in old {
        let id = id_at_end(&k)?;
        tx.delete(record_key(&id));
        tx.delete(k);
        forgotten += 1;
    }
    Ok(forgotten + prune_legacy(tx, before_ms)?)
}

/// Drops the records without an index entry once a retention period has passed since the
/// first prune (every such record is older than that).
fn prune_legacy(tx: &mut Tx, before_ms: u64) -> Result<u64, DomainError> {
    if tx.get(&key(LEGACY_DONE))?.is_some() {
        return Ok(0);
    }
    let Some(until) = get::<u64>(tx, &key(LEGACY_UNTIL))? else {
        tx.put_record(key(LEGACY_UNTIL), &before_ms.saturating_add(RETENTION_MS))?;
        return Ok(0);
    };
    if before_ms < until {
        return Ok(0);
    }
    let mut indexed = HashSet::new();
    for item in tx.scan(&key(INDEX), None) {
        indexed.insert(id_at_end(&item?.0)?);
    }
    let mut legacy = Vec::new();
    let prefix = key("request/");
    for item in tx.scan(&prefix, None) {
        let (k, _) = item?;
        if !indexed.contains(&id_at_end(&k)?) {
            legacy.push(k);
        }
    }
    let dropped = legacy.len() as u64;
    for k in legacy {
        tx.delete(k);
    }
    tx.put(key(LEGACY_DONE), Vec::new());
    Ok(dropped)
}

/// The request id whose hex ends a record or index key.
fn id_at_end(k: &[u8]) -> Result<[u8; 16], DomainError> {
    let mut id = [0u8; 16];
    k.len()
        .checked_sub(32)
        .and_then(|at| hex::decode_to_slice(&k[at..], &mut id).ok())
        .ok_or_else(|| DomainError::Corrupt("request record key".into()))?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{CatalogOutcome, TestReplica};
    use crate::datasets::DatasetOp;
    use crate::jobs::{JobKind, Progress};

    fn create(name: &str) -> CatalogOp {
        CatalogOp::Dataset(DatasetOp::Create {
            name: name.into(),
            created_by: "mgr".into(),
            created_ms: 1,
        })
    }

    fn records(r: &TestReplica, prefix: &str) -> usize {
        r.store.borrow().scan(&key(prefix), None).count()
    }

    #[test]
    fn outcomes_are_remembered_for_the_retention_period_then_forgotten() {
        let r = TestReplica::new();
        r.now_ms.set(10_000);
        let first = r.apply_with_id([1; 16], create("cars"));
        r.now_ms.set(20_000);
        r.apply_with_id([2; 16], create("bikes"));
        assert_eq!(records(&r, "request/"), 2);
        // A prune that covers only the first request forgets only it.
        r.apply(CatalogOp::PruneRequests { before_ms: 15_000 });
        assert_eq!(records(&r, "request/"), 1);
        assert_eq!(records(&r, INDEX), 1);
        // Within retention a retry is answered from memory...
        assert!(matches!(
            r.apply_with_id([2; 16], create("bikes")),
            CatalogOutcome::Dataset(crate::datasets::DatasetOutcome::Dataset(_))
        ));
        // ...after it, the same id is a new request (the name is now taken).
        assert_ne!(r.apply_with_id([1; 16], create("cars")), first);
    }

    #[test]
    fn heartbeats_and_housekeeping_leave_no_records() {
        let r = TestReplica::new();
        let CatalogOutcome::Job(crate::jobs::JobOutcome::Job(job)) =
            r.apply(CatalogOp::Job(JobOp::Create {
                kind: JobKind::Export,
                dataset: None,
                annotation_set: None,
                created_by: "mgr".into(),
                at_ms: 1,
                node: 1,
                params: String::new(),
            }))
        else {
            panic!("job created");
        };
        let before = records(&r, "request/");
        for beat in 0..100 {
            r.apply(CatalogOp::Job(JobOp::Progress {
                id: job.id,
                node: 1,
                attempt: 1,
                progress: Progress::default(),
                skipped: Vec::new(),
                at_ms: 2 + beat,
            }));
        }
        r.apply(CatalogOp::PruneRevoked { before_ms: 0 });
        r.apply(CatalogOp::PruneRequests { before_ms: 0 });
        assert_eq!(records(&r, "request/"), before);
        assert_eq!(
            crate::jobs::job(&*r.store.borrow(), job.id)
                .expect("read")
                .map(|j| j.beats),
            Some(100)
        );
    }

    #[test]
    fn records_from_before_the_index_go_one_retention_period_after_the_first_prune() {
        let r = TestReplica::new();
        // As entries from before times were proposed wrote them: no index entry.
        let mut tx_store = r.store.borrow_mut();
        let mut tx = Tx::new(&*tx_store);
        remember(&mut tx, &[9; 16], None, &CatalogOutcome::Done).expect("remember");
        let writes = tx.into_writes();
        tx_store.commit(writes);
        drop(tx_store);
        r.apply(CatalogOp::PruneRequests { before_ms: 1_000 });
        assert_eq!(
            records(&r, "request/"),
            1,
            "kept until a retention period passed"
        );
        r.apply(CatalogOp::PruneRequests {
            before_ms: 1_000 + RETENTION_MS - 1,
        });
        assert_eq!(records(&r, "request/"), 1);
        r.apply(CatalogOp::PruneRequests {
            before_ms: 1_000 + RETENTION_MS,
        });
        assert_eq!(records(&r, "request/"), 0);
    }
}
