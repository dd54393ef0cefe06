//! Mutual TLS on the internal RPC: every connection between nodes is encrypted, and each side
//! proves it holds a certificate of the cluster's CA ([`crate::cluster_ca`]). Raft messages,
//! snapshots and forwarded requests therefore come only from nodes of this cluster: a host that
//! merely reaches the RPC port cannot complete a handshake, let alone append entries.
//!
//! A client checks that the server's certificate names the node it meant to reach
//! ([`peer_name`]), not its address: certificates survive address changes, and a node cannot
//! pose as another one. The server accepts any certificate of the CA (every holder is a node).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::types::NodeId;

/// A handshake must finish within this, or the connection is dropped (a client that opens
/// connections and never speaks must not hold the server's handshake slots).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The name in node `id`'s certificate, which peers verify.
pub fn peer_name(id: NodeId) -> String {
    format!("node-{id}.tessera")
}

/// Where a node keeps its TLS files: `<data>/tls/`.
pub struct TlsFiles {
    /// The cluster CA's certificate.
    pub ca: PathBuf,
    /// This node's certificate.
    pub cert: PathBuf,
    /// This node's private key (mode 0600).
    pub key: PathBuf,
}

/// The TLS files of the node whose data dir is `data`.
pub fn files(data: &Path) -> TlsFiles {
    let dir = data.join("tls");
    TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join("node.pem"),
        key: dir.join("node.key"),
    }
}

/// A node's credentials on the internal RPC.
#[derive(Clone)]
pub struct RpcTls {
    ca: Certificate,
    identity: Identity,
}

impl RpcTls {
    /// From PEM text (checked when the server or a channel is built).
    pub fn from_pem(ca: &[u8], cert: &[u8], key: &[u8]) -> RpcTls {
        RpcTls {
            ca: Certificate::from_pem(ca),
            identity: Identity::from_pem(cert, key),
        }
    }

    /// Reads the files of the node whose data dir is `data`.
    pub fn load(data: &Path) -> std::io::Result<RpcTls> {
        let files = files(data);
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!(
                        "{}: {e} (`tessera ca` issues the internal RPC's certificates; `tessera up` runs it)",
                        path.display()
                    ),
                )
            })
        };
        Ok(RpcTls::from_pem(
            &read(&files.ca)?,
            &read(&files.cert)?,
            &read(&files.key)?,
        ))
    }

    /// The server side: this node's certificate, and a client certificate of the CA required.
    pub(crate) fn server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity.clone())
            .client_ca_root(self.ca.clone())
            .timeout(HANDSHAKE_TIMEOUT)
    }

    /// The client side towards node `peer`: only the CA is trusted, and the server must be
    /// `peer`.
    pub(crate) fn client(&self, peer: NodeId) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(self.ca.clone())
            .identity(self.identity.clone())
            .domain_name(peer_name(peer))
            .timeout(HANDSHAKE_TIMEOUT)
    }
}
