//! The internal RPC talks only to nodes of its cluster. Before mutual TLS, anything that
//! reached a node's RPC port could send Raft messages (append entries, votes, snapshots) and
//! forwarded writes. Here a raw gRPC client tries every way in without the cluster's
//! credentials against a real cluster, and a peer with them shows the check is real.

use std::time::Duration;

use tessera_cluster_tests::{Options, TestCluster};
use tessera_raft::cluster_ca::ClusterCa;
use tessera_raft::proto::internal_client::InternalClient;
use tessera_raft::proto::{RaftKind, RaftRequest, StatusRequest};
use tessera_raft::rpc_tls::{files, peer_name};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::support::{image, upload};

/// What a `LocalStatus` call and an append for the catalogue group get through `endpoint`:
/// `Ok` when the node answered them (the append with openraft's own verdict, or a refusal of
/// the payload, which also means the node read it).
async fn attempt(endpoint: Endpoint) -> Result<(), String> {
    let channel = endpoint
        .timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    let mut client = InternalClient::new(channel);
    client
        .local_status(StatusRequest {})
        .await
        .map_err(|s| format!("local_status: {s:?}"))?;
    let append = RaftRequest {
        group: 0,
        kind: RaftKind::Append as i32,
        payload: vec![0xff; 64].into(),
    };
    match client.raft(append).await {
        Ok(_) => Ok(()),
        Err(s) if s.code() == tonic::Code::InvalidArgument => Ok(()),
        Err(s) => Err(format!("raft: {s:?}")),
    }
}

fn tls_endpoint(rpc: &str, tls: ClientTlsConfig) -> Endpoint {
    Endpoint::from_shared(format!("https://{rpc}"))
        .expect("endpoint")
        .tls_config(tls)
        .expect("tls config")
}

#[tokio::test]
async fn the_internal_rpc_refuses_peers_without_a_cluster_certificate() {
    let cluster = TestCluster::start(Options::default()).await;
    let target = cluster.node(1);
    // Node 2's credentials, read from its data dir where `tessera ca` put them.
    let own = files(&cluster.data_dir(2));
    let read = |p: &std::path::Path| std::fs::read(p).expect("node 2's TLS files");
    let ca = Certificate::from_pem(read(&own.ca));
    let identity = Identity::from_pem(read(&own.cert), read(&own.key));

    // Plaintext gRPC, as any host on the network could before.
    let plain = Endpoint::from_shared(format!("http://{}", target.rpc)).expect("endpoint");
    let refused = attempt(plain).await;
    assert!(refused.is_err(), "plaintext client was served");

    // TLS that trusts the cluster CA but presents no certificate.
    let anonymous = ClientTlsConfig::new()
        .ca_certificate(ca.clone())
        .domain_name(peer_name(1));
    let refused = attempt(tls_endpoint(&target.rpc, anonymous)).await;
    assert!(refused.is_err(), "client without a certificate was served");

    // A certificate for the right node name, from another cluster's CA.
    let stranger = ClusterCa::generate().expect("CA");
    let forged = stranger.issue(2).expect("certificate");
    let foreign = ClientTlsConfig::new()
        .ca_certificate(ca.clone())
        .identity(Identity::from_pem(&forged.cert_pem, &forged.key_pem))
        .domain_name(peer_name(1));
    let refused = attempt(tls_endpoint(&target.rpc, foreign)).await;
    assert!(refused.is_err(), "another CA's certificate was accepted");

    // Node 1 does not pass for node 3: a client expecting node 3 refuses its certificate.
    let wrong_name = ClientTlsConfig::new()
        .ca_certificate(ca.clone())
        .identity(identity.clone())
        .domain_name(peer_name(3));
    let refused = attempt(tls_endpoint(&target.rpc, wrong_name)).await;
    assert!(refused.is_err(), "node 1 was accepted as node 3");

    // A member's credentials are served: the refusals above are the TLS checks, not a dead port.
    let member = ClientTlsConfig::new()
        .ca_certificate(ca)
        .identity(identity)
        .domain_name(peer_name(1));
    attempt(tls_endpoint(&target.rpc, member))
        .await
        .expect("node 2's credentials are accepted");

    // The cluster replicates and serves as before.
    cluster.wait_ready().await;
    let admin = cluster.node(3).client();
    upload(&admin, &image(31)).await;
}
