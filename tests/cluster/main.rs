//! Cluster-level tests: every test starts real `tessera` processes (see the harness in
//! `tests/src/lib.rs`).

mod api_fuzz;
mod auth;
mod backup;
mod cli;
mod connection_hygiene;
mod datasets;
mod disk_full;
mod exports;
mod failures;
mod hostile;
mod https;
mod imports;
mod login_throttle;
mod objects;
mod quality;
mod rolling;
mod rpc_tls;
mod sessions;
mod snapshot;
mod support;
mod tasks;
mod thumbnails;
mod ui;
mod volumes;
mod webhooks;
