//! Tessera's annotation domain: datasets, annotation sets, tasks, annotations, comments, jobs,
//! users and sessions, as pure state transitions over a small record store.
//!
//! Nothing here knows RocksDB, Raft or an async runtime. The catalogue group's state machine
//! hands [`catalog::stage`] a [`Tx`] over its replica's records and writes the transaction's
//! writes in the batch that records the entry as applied; the API reads through the same
//! queries over a [`Records`] view of a replica. That keeps every transition testable in
//! process (see the unit tests of each module) and keeps the consensus crate free of the
//! domain.

pub mod annotation_sets;
pub mod annotations;
pub mod catalog;
pub mod comments;
pub mod datasets;
pub mod directory;
#[cfg(test)]
mod encoding;
mod error;
pub mod ground_truth;
pub mod image_quality;
pub mod jobs;
pub mod outcome;
#[cfg(test)]
mod properties;
pub mod quality;
pub mod quality_op;
pub mod quality_report;
mod records;
pub mod requests;
pub mod review_stats;
pub mod sessions;
mod sha;
pub mod shape;
pub mod stats;
pub mod tasks;
pub mod webhooks;

pub use error::DomainError;
pub use records::{get, prefix_end, scan, Entry, Records, Scan, Tx};
pub use sha::Sha256;

/// The key of a named catalogue record. Keys are the records' names; the store that holds
/// them decides where they live (the catalogue group's key range).
pub(crate) fn key(name: &str) -> Vec<u8> {
    name.as_bytes().to_vec()
}
