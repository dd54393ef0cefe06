//! The annotation formats Tessera exports to and imports from, as plain functions over
//! files and the domain's records.
//!
//! Nothing here knows the cluster, HTTP or an async runtime: the API's export and import jobs
//! gather images and shapes from the catalogue and hand them to these writers and readers,
//! which is what lets every format be tested in process against the consumer tools' rules
//! (`docs/formats.md`).

pub mod export;
pub mod import;
pub mod xml;
