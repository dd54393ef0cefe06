//! The on-disk layout of a Tessera node.
//!
//! One RocksDB instance per node holds every Raft group the node hosts: the Raft log and vote of
//! each group and the replicated state (object records and the index of their bytes); the bytes
//! themselves live in per-group append-only volume files (`volume/`). Keys are prefixed by
//! the group id so that one group's data is a contiguous key range: a snapshot is a range scan and
//! installing one is a range delete plus a sequential load.
//!
//! This crate knows nothing about Raft; it offers the column families, the key encoding, the
//! object records and the snapshot file format that `tessera-raft` builds on.

mod cache;
mod db;
mod error;
pub mod exif;
pub mod keys;
mod object;
mod probe;
mod records;
mod snapshot_file;
pub mod space;
mod table_check;
pub mod volume;

pub use cache::{Cached, ObjectCache};
pub use db::{Cf, Record, Store};
pub use error::StorageError;
pub use object::{ObjectMeta, PutOutcome, Sha256};
pub use probe::{probe_image, ImageInfo, ProbeError, MAX_PIXELS, MAX_SIDE};
pub use records::GroupRecords;
pub use snapshot_file::{export_group, import_group, GroupView};
pub use volume::ObjectSlice;
