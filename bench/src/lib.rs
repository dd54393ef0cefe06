//! Load benchmarks for Tessera. Every figure is reported next to nginx serving the same files in
//! the same run, because absolute numbers on shared machines drift while side-by-side ratios hold.

pub mod catalogue;
pub mod catchup;
pub mod corpus;
pub mod disk;
pub mod export;
pub mod load;
pub mod nginx;
pub mod procstat;
pub mod quality;
pub mod rebalance;
pub mod report;
pub mod scale;
pub mod serve;
