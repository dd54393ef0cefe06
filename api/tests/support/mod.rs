//! A real single-node cluster in the test process (RocksDB, Raft, the internal RPC), served on
//! two ports: the node's listener (fast path, hand-off to the router) and plain `axum::serve`
//! of the same router, so that both HTTP paths can be asked the same thing. Raw HTTP/1.1 over
//! `TcpStream` for what a client library would hide (pipelining, partial heads, closes).

#![allow(dead_code)]

use std::net::SocketAddr;

use bytes::Bytes;
use tessera_api::{fastpath, AppState, Limits};
use tessera_client::{Client, Method};
use tessera_raft::{Cluster, ClusterSpec, NodeSpec, RaftTuning};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub use tessera_cluster_tests::{eventually, png, DEADLINE};

pub struct Node {
    pub state: AppState,
    /// The node's listener: the fast path.
    pub fast: SocketAddr,
    /// `axum::serve` of the router alone: the slow path.
    pub slow: SocketAddr,
    /// An admin token.
    pub admin: String,
    stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

impl Node {
    /// `cache_bytes` 0 turns the object cache off: object GETs on the fast path then send
    /// bodies from the volume files with `sendfile(2)`.
    pub async fn start(config: fastpath::Config, cache_bytes: usize) -> Node {
        let dir = tempfile::tempdir().expect("temp dir");
        let fast_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let slow_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let rpc_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let (fast, slow) = (
            fast_listener.local_addr().expect("addr"),
            slow_listener.local_addr().expect("addr"),
        );
        let rpc = rpc_listener.local_addr().expect("addr");
        drop(rpc_listener);
        let spec = ClusterSpec {
            shards: 2,
            replication: 1,
            nodes: vec![NodeSpec {
                id: 1,
                http: fast.to_string(),
                rpc: rpc.to_string(),
            }],
        };
        let tuning = RaftTuning {
            heartbeat_ms: 100,
            election_timeout_ms: 800,
            snapshot_logs: 2000,
            keep_logs: 500,
            ..RaftTuning::default()
        };
        let ca = tessera_raft::cluster_ca::ClusterCa::generate().expect("cluster CA");
        let creds = ca.issue(1).expect("node certificate");
        let tls = tessera_raft::RpcTls::from_pem(
            ca.cert_pem().as_bytes(),
            creds.cert_pem.as_bytes(),
            creds.key_pem.as_bytes(),
        );
        let cluster = Cluster::start(1, spec, dir.path(), &tuning, cache_bytes, tls)
            .await
            .expect("cluster");
        let (stop, stop_rx) = watch::channel(false);
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        tokio::spawn(tessera_raft::serve_internal(
            cluster.clone(),
            rpc,
            stopped(stop_rx.clone()),
        ));
        let state = AppState {
            cluster,
            limits: Limits::default(),
            metrics: metrics_exporter_prometheus::PrometheusBuilder::new()
                .build_recorder()
                .handle(),
            data_dir: dir.path().to_path_buf(),
            login_throttle: Default::default(),
            derived: Default::default(),
            restart: Default::default(),
            started_ms: 0,
        };
        tokio::spawn(fastpath::serve(
            fast_listener,
            state.clone(),
            config,
            stopped(stop_rx.clone()),
        ));
        let router =
            tessera_api::router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(slow_listener, router).await });

        tessera_api::cluster_routes::ensure_init_token(dir.path()).expect("init token");
        let init = std::fs::read_to_string(
            dir.path()
                .join(tessera_api::cluster_routes::INIT_TOKEN_FILE),
        )
        .expect("init token");
        let init = format!("Bearer {}", init.trim());
        let client = Client::new(&fast.to_string());
        eventually("the cluster to initialise", DEADLINE, || async {
            let reply = client
                .send(
                    Method::POST,
                    "/api/v1/cluster/init",
                    &[("authorization", &init)],
                    Bytes::new(),
                )
                .await
                .ok()?;
            reply.status.is_success().then_some(())
        })
        .await;
        eventually("the node to be ready", DEADLINE, || async {
            let reply = client.get("/readyz").await.ok()?;
            reply.status.is_success().then_some(())
        })
        .await;
        let password = std::fs::read_to_string(dir.path().join("initial-admin-password"))
            .expect("generated admin password");
        let admin = client
            .login("admin", password.trim())
            .await
            .expect("admin login");
        Node {
            state,
            fast,
            slow,
            admin,
            stop,
            _dir: dir,
        }
    }

    /// A client of the fast listener, signed in as admin.
    pub fn client(&self) -> Client {
        Client::new(&self.fast.to_string()).with_token(self.admin.clone())
    }

    /// Uploads `bytes`; returns the object's hash.
    pub async fn upload(&self, bytes: &[u8]) -> String {
        let reply = self
            .client()
            .put_object(Bytes::copy_from_slice(bytes))
            .await
            .expect("upload");
        assert!(reply.status.is_success(), "upload: {:?}", reply.json());
        reply.json()["sha256"].as_str().expect("sha256").to_owned()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// One response read off a raw connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raw {
    pub status: u16,
    /// Lowercase names, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Raw {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// A raw HTTP/1.1 connection: writes what it is given, reads responses one by one.
pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> Conn {
        Conn {
            stream: TcpStream::connect(addr).await.expect("connect"),
            buf: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// The next response (`head_only` for answers to HEAD), or `None` if the server closed
    /// the connection first.
    pub async fn response(&mut self, head_only: bool) -> Option<Raw> {
        loop {
            if let Some(raw) = self.take(head_only) {
                return Some(raw);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// Whether the server closes the connection (EOF or reset) before sending anything more.
    pub async fn closed(&mut self) -> bool {
        let before = self.buf.len();
        while self.fill().await {}
        self.buf.len() == before
    }

    /// Reads once more; false on EOF or error.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 << 10];
        match tokio::time::timeout(DEADLINE, self.stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => false,
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(_) => panic!("no response within {DEADLINE:?}"),
        }
    }

    fn take(&mut self, head_only: bool) -> Option<Raw> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        let len = match resp.parse(&self.buf).expect("a valid response") {
            httparse::Status::Complete(len) => len,
            httparse::Status::Partial => return None,
        };
        let status = resp.code.expect("status");
        let headers: Vec<(String, String)> = resp
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        let body_len = if head_only || status == 304 {
            0
        } else {
            headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .map(|(_, v)| v.parse::<usize>().expect("content-length"))
                .unwrap_or(0)
        };
        if self.buf.len() < len + body_len {
            return None;
        }
        let body = self.buf[len..len + body_len].to_vec();
        self.buf.drain(..len + body_len);
        Some(Raw {
            status,
            headers,
            body,
        })
    }
}

/// `GET`/`HEAD` of `path` with extra header lines, as one request on a fresh connection.
pub async fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Raw {
    let mut conn = Conn::open(addr).await;
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    conn.send(text.as_bytes()).await;
    conn.response(method == "HEAD")
        .await
        .expect("a response before the connection closed")
}
