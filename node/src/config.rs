//! `cluster.toml`: the nodes of a cluster, its shard count and replication factor.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;
use tessera_raft::{ClusterSpec, NodeSpec, RaftTuning};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    cluster: ClusterSection,
    #[serde(default)]
    raft: Option<RaftTuning>,
    #[serde(default)]
    rpc_tls: RpcTlsSection,
    #[serde(rename = "node")]
    nodes: Vec<NodeSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterSection {
    shards: u32,
    #[serde(default = "default_replication")]
    replication: usize,
    /// Largest accepted upload in MiB.
    #[serde(default = "default_max_object_mb")]
    max_object_mb: u64,
    /// Memory per node for caching hot objects, in MiB (0 disables the cache).
    #[serde(default = "default_cache_mb")]
    cache_mb: u64,
    /// Lifetime of access tokens issued by /oauth/token, in seconds.
    #[serde(default = "default_access_token_ttl_s")]
    access_token_ttl_s: u64,
    /// Client connections a node keeps open at once (more are answered 503 and closed).
    #[serde(default = "default_max_connections")]
    max_connections: usize,
}

fn default_max_connections() -> usize {
    16_384
}

fn default_access_token_ttl_s() -> u64 {
    3600
}

fn default_cache_mb() -> u64 {
    128
}

fn default_replication() -> usize {
    3
}

fn default_max_object_mb() -> u64 {
    64
}

/// `[rpc_tls]`: where the cluster CA lives. Nodes keep their own certificate, key and the CA's
/// certificate in `<data>/tls/` (see `tessera_raft::rpc_tls`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RpcTlsSection {
    /// The CA's certificate and private key (`ca.pem`, `ca.key`), relative to the config file.
    /// Only the machine that issues node certificates needs this directory.
    #[serde(default = "default_ca_dir")]
    ca_dir: PathBuf,
}

impl Default for RpcTlsSection {
    fn default() -> Self {
        RpcTlsSection {
            ca_dir: default_ca_dir(),
        }
    }
}

fn default_ca_dir() -> PathBuf {
    PathBuf::from("data/ca")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeSection {
    id: u64,
    http: String,
    rpc: String,
    /// Data directory, relative to the config file.
    data: PathBuf,
    /// HTTPS on the `http` address: the certificate chain (PEM, leaf first) and its private key
    /// (PEM), relative to the config file. Both or neither.
    #[serde(default)]
    tls_cert: Option<PathBuf>,
    #[serde(default)]
    tls_key: Option<PathBuf>,
}

/// A parsed and checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub spec: ClusterSpec,
    pub tuning: RaftTuning,
    pub max_object_bytes: u64,
    pub cache_bytes: usize,
    pub access_token_ttl_ms: u64,
    pub max_connections: usize,
    /// Where the cluster CA's certificate and key are kept (`tessera ca`).
    pub ca_dir: PathBuf,
    data_dirs: Vec<(u64, PathBuf)>,
    /// Nodes that serve HTTPS: id, certificate chain, key.
    https: Vec<(u64, PathBuf, PathBuf)>,
}

impl Config {
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let file: File =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let c = &file.cluster;
        if c.shards == 0 || c.shards > 4096 {
            bail!(
                "cluster.shards must be between 1 and 4096, not {}",
                c.shards
            );
        }
        if c.replication == 0 {
            bail!("cluster.replication must be at least 1");
        }
        if c.max_object_mb == 0 || c.max_object_mb > 64 {
            bail!(
                "cluster.max_object_mb must be between 1 and 64, not {}",
                c.max_object_mb
            );
        }
        if file.nodes.is_empty() {
            bail!("the config lists no [[node]]");
        }
        if c.replication > file.nodes.len() {
            bail!(
                "cluster.replication = {} but only {} nodes are listed",
                c.replication,
                file.nodes.len()
            );
        }
        let mut ids: Vec<u64> = file.nodes.iter().map(|n| n.id).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != file.nodes.len() {
            bail!("node ids must be unique");
        }
        let spec = ClusterSpec {
            shards: c.shards,
            replication: c.replication,
            nodes: file
                .nodes
                .iter()
                .map(|n| NodeSpec {
                    id: n.id,
                    http: n.http.clone(),
                    rpc: n.rpc.clone(),
                })
                .collect(),
        };
        let data_dirs = file
            .nodes
            .iter()
            .map(|n| (n.id, base.join(&n.data)))
            .collect();
        let mut https = Vec::new();
        for n in &file.nodes {
            match (&n.tls_cert, &n.tls_key) {
                (Some(cert), Some(key)) => https.push((n.id, base.join(cert), base.join(key))),
                (None, None) => {}
                _ => bail!("node {}: tls_cert and tls_key go together", n.id),
            }
        }
        Ok(Config {
            path: path.to_path_buf(),
            spec,
            tuning: file.raft.unwrap_or_default(),
            max_object_bytes: c.max_object_mb << 20,
            cache_bytes: (c.cache_mb << 20) as usize,
            access_token_ttl_ms: c.access_token_ttl_s.max(1) * 1000,
            max_connections: c.max_connections.max(1),
            ca_dir: base.join(&file.rpc_tls.ca_dir),
            data_dirs,
            https,
        })
    }

    /// The certificate chain and key node `id` serves HTTPS with, if it does.
    pub fn https(&self, id: u64) -> Option<(&Path, &Path)> {
        self.https
            .iter()
            .find(|(n, _, _)| *n == id)
            .map(|(_, cert, key)| (cert.as_path(), key.as_path()))
    }

    pub fn data_dir(&self, id: u64) -> anyhow::Result<&Path> {
        self.data_dirs
            .iter()
            .find(|(n, _)| *n == id)
            .map(|(_, p)| p.as_path())
            .with_context(|| format!("node {id} is not in {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_the_default_cluster_file() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cluster.toml");
        let config = Config::load(&path).unwrap();
        assert_eq!(config.spec.nodes.len(), 3);
        assert_eq!(config.spec.replication, 3);
        assert!(config.data_dir(1).unwrap().ends_with("data/node-1"));
    }

    #[test]
    fn refuses_more_replicas_than_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[cluster]\nshards = 4\nreplication = 2\n[[node]]\nid = 1\nhttp = \"a:1\"\nrpc = \"a:2\"\ndata = \"d\"\n",
        )
        .unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(err.contains("replication"), "{err}");
    }
}
