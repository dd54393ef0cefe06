//! `tessera ca`: the cluster CA of the internal RPC's mutual TLS, and node certificates.
//!
//! Creates the CA in `[rpc_tls] ca_dir` if it is not there, then gives every node of the config
//! whose address is on this machine (or only node `--id N`) a certificate in its data dir, unless
//! it already has one from this CA (`--renew` issues new ones anyway). `tessera up` runs it
//! first, so a local cluster needs no manual step. For a node on another machine:
//! `tessera ca --id N`, then copy `<data of N>/tls/` there (the CA's key stays here).

use anyhow::Context;
use tessera_raft::cluster_ca::ClusterCa;

use crate::config::Config;

/// Issues what the chosen nodes need, printing only what it created.
pub fn provision(config: &Config, only: Option<u64>, renew: bool) -> anyhow::Result<()> {
    let (ca, created) = ClusterCa::open_or_create(&config.ca_dir)
        .with_context(|| format!("the cluster CA in {}", config.ca_dir.display()))?;
    if created {
        println!("created the cluster CA in {}", config.ca_dir.display());
    }
    let nodes: Vec<u64> = match only {
        Some(id) => {
            config.data_dir(id)?;
            vec![id]
        }
        None => config
            .spec
            .nodes
            .iter()
            .filter(|n| crate::up::is_local(&n.http))
            .map(|n| n.id)
            .collect(),
    };
    for id in nodes {
        let data = config.data_dir(id)?;
        if ca
            .provision(id, data, renew)
            .with_context(|| format!("issuing node {id}'s certificate"))?
        {
            println!(
                "issued node {id} its internal RPC certificate in {}",
                tessera_raft::rpc_tls::files(data).cert.display()
            );
        }
    }
    Ok(())
}
