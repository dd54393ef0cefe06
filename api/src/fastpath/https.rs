//! Optional HTTPS on the public port (`tls_cert` and `tls_key` of a node in `cluster.toml`).
//!
//! A TLS connection goes straight to hyper and the router: the object fast path writes bodies
//! with `sendfile(2)` from the page cache to the socket, which cannot pass through TLS (the
//! kernel would send plaintext), so objects are read into user space and encrypted there —
//! the router's object handler, with the object cache, streams them. HTTPS therefore costs the
//! fast path's savings on object reads, plus the encryption.
//!
//! Plain HTTP stays open to loopback clients only (`tessera up`'s supervision, the CLI and the
//! test harness on the node's machine): traffic that never leaves the machine gains nothing
//! from TLS. Plain HTTP from anywhere else is answered 400 `https_required` and closed.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

use super::socket::Socket;
use super::{connection, handoff, Shared};

/// First byte of a TLS record carrying a handshake (a ClientHello); no HTTP method starts so.
const TLS_HANDSHAKE: u8 = 0x16;

/// Why the certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum HttpsError {
    #[error("{path}: {source}")]
    Pem {
        path: String,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{0}")]
    Tls(#[from] rustls::Error),
}

/// The server configuration for `cert` (PEM, the chain with the leaf first) and `key` (PEM).
pub fn load(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, HttpsError> {
    let pem = |path: &Path, source| HttpsError::Pem {
        path: path.display().to_string(),
        source,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem(cert, e))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem(key, e))?;
    // The process's provider: ring, the only one built in (see Cargo.toml).
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Whether a client at `ip` may speak plain HTTP to an HTTPS listener.
fn plain_allowed(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

const PLAIN_REFUSED: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n\
x-content-type-options: nosniff\r\nconnection: close\r\ncontent-length: 84\r\n\r\n\
{\"error\":{\"code\":\"https_required\",\"message\":\"this port speaks HTTPS: use https://\"}}";

/// Serves one connection of an HTTPS listener: TLS (handshake within the head timeout), or plain
/// HTTP from a loopback client, or a refusal.
pub(super) async fn serve(
    mut socket: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    tls: Arc<ServerConfig>,
    stop: watch::Receiver<bool>,
) {
    let config = &shared.config;
    let mut first = [0u8; 1];
    match tokio::time::timeout(config.idle_timeout, socket.peek(&mut first)).await {
        Ok(Ok(1)) => {}
        _ => return,
    }
    if first[0] != TLS_HANDSHAKE {
        if plain_allowed(peer.ip()) {
            if let Ok(socket) = Socket::from_tokio(socket) {
                connection::run(socket, shared, stop).await;
            }
            return;
        }
        let _ = tokio::time::timeout(config.write_timeout, socket.write_all(PLAIN_REFUSED)).await;
        return;
    }
    let accepted =
        tokio::time::timeout(config.header_timeout, TlsAcceptor::from(tls).accept(socket)).await;
    let stream = match accepted {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => return,
    };
    let router = shared.router.clone();
    let timeout = config.idle_timeout;
    handoff::serve(stream, peer, BytesMut::new(), router, timeout, stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_from_loopback() {
        assert!(plain_allowed("127.0.0.1".parse().unwrap()));
        assert!(plain_allowed("127.0.0.9".parse().unwrap()));
        assert!(plain_allowed("::1".parse().unwrap()));
        assert!(plain_allowed("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!plain_allowed("10.0.0.1".parse().unwrap()));
        assert!(!plain_allowed("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn the_refusal_is_complete_json() {
        let text = std::str::from_utf8(PLAIN_REFUSED).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.ends_with(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "https_required");
    }
}
