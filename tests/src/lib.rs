//! Harness for cluster-level tests: real `tessera run` processes on loopback ports with
//! temporary data dirs, killed and restarted for real. Tests poll with deadlines; nothing here
//! sleeps to synchronise.

pub mod chaos;
mod images;

use std::future::Future;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tessera_client::{Client, Method};

pub use images::png;

/// Generous deadline for anything a healthy cluster does in seconds.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Polls `check` until it returns `Some`, panicking with `what` at the deadline.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Says `error` as `program` (a test binary) and gives its exit code 2: the check itself could
/// not run.
pub fn could_not_run(program: &str, error: impl std::fmt::Display) -> std::process::ExitCode {
    eprintln!("{program}: {error}");
    std::process::ExitCode::from(2)
}

/// The runtime of a test binary's `main`; where it cannot be built, `program`'s exit code
/// (see [`could_not_run`]).
pub fn runtime(program: &str) -> Result<tokio::runtime::Runtime, std::process::ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| could_not_run(program, e))
}

/// A loopback port that was free a moment ago, and never handed out before by this process:
/// the kernel may give the same ephemeral port to two binds in a row, and two nodes of one
/// cluster on one port would never come up.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("no free port");
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// The `tessera` binary of the same build profile: `$TESSERA_BIN`, else `tessera` next to the
/// running executable (a binary) or one directory up (a test in `deps/`).
pub fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("TESSERA_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("executable path");
    let candidates: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|d| d.join("tessera"))
        .collect();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "{} is missing: build it first (cargo build --bins)",
                candidates[0].display()
            )
        })
}

/// The password the harness gives the `admin` user of every test cluster.
pub const ADMIN_PASSWORD: &str = "harness-admin-password";

pub struct Node {
    pub id: u64,
    pub http: String,
    pub rpc: String,
    process: Option<Child>,
    token: Option<String>,
}

impl Node {
    /// A client that authenticates as `admin`.
    pub fn client(&self) -> Client {
        let client = Client::new(&self.http).with_timeout(Duration::from_secs(30));
        match &self.token {
            Some(token) => client.with_token(token.clone()),
            None => client,
        }
    }

    /// The admin token the harness logged in with.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Polls `/readyz` until the node reports every group it hosts has a leader.
    pub async fn wait_ready(&self) {
        let client = self.client();
        eventually(
            &format!("node {} to be ready", self.id),
            DEADLINE,
            || async {
                client
                    .get("/readyz")
                    .await
                    .ok()
                    .filter(|r| r.status.is_success())
            },
        )
        .await;
    }

    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }
}

/// A cluster of real node processes.
pub struct TestCluster {
    dir: tempfile::TempDir,
    config: PathBuf,
    bin: PathBuf,
    uid_base: Option<u32>,
    pub nodes: Vec<Node>,
}

/// Shape of a test cluster.
pub struct Options {
    pub nodes: usize,
    pub shards: u32,
    pub replication: usize,
    pub max_object_mb: u64,
    pub snapshot_logs: u64,
    pub keep_logs: u64,
    /// Short heartbeats and election timeouts, so failover tests run quickly. Benchmarks turn
    /// this off to measure the production defaults.
    pub fast_failover: bool,
    pub access_token_ttl_s: u64,
    /// `[raft] scrub_interval_ms`: how often a scrub pass over every volume starts.
    pub scrub_interval_ms: Option<u64>,
    /// HTTPS on every node's HTTP port, with a certificate for 127.0.0.1 from the cluster CA
    /// (`<node data>/https.pem`; the CA's certificate is [`TestCluster::ca_cert`]). The
    /// harness's own clients keep speaking plain HTTP, which loopback clients may.
    pub https: bool,
    /// Runs node `id` as uid and gid `base + id` (the harness must be root): the chaos harness
    /// tells the nodes' traffic apart by its owner to cut the network between them.
    pub uid_base: Option<u32>,
    /// `[raft] snapshot_bytes_per_s`: how fast a node sends snapshots to new replicas.
    pub snapshot_bytes_per_s: Option<u64>,
    /// `[cluster] cache_mb`: each node's object cache (the node's default when `None`).
    pub cache_mb: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            nodes: 3,
            shards: 8,
            replication: 3,
            max_object_mb: 64,
            snapshot_logs: 2000,
            keep_logs: 500,
            fast_failover: true,
            access_token_ttl_s: 3600,
            scrub_interval_ms: None,
            https: false,
            uid_base: None,
            snapshot_bytes_per_s: None,
            cache_mb: None,
        }
    }
}

impl Options {
    /// The defaults with the production Raft timing a deployment runs with: for benchmarks and
    /// for tests of what depends on that timing.
    pub fn production() -> Options {
        Options {
            fast_failover: false,
            ..Options::default()
        }
    }

    /// One node holding the only replica of everything: for what a single node answers.
    pub fn single_node() -> Options {
        Options {
            nodes: 1,
            replication: 1,
            ..Options::default()
        }
    }
}

impl TestCluster {
    /// Starts every node, initialises the cluster and waits until it is ready.
    pub async fn start(opts: Options) -> TestCluster {
        let mut cluster = TestCluster::create(&opts);
        cluster.boot().await;
        cluster
    }

    /// Writes the configuration and creates every node's (empty) data dir, starting nothing:
    /// the caller may prepare the data dirs (mounts, owners) before [`TestCluster::boot`].
    pub fn create(opts: &Options) -> TestCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut toml = format!(
            "[cluster]\nshards = {}\nreplication = {}\nmax_object_mb = {}\naccess_token_ttl_s = {}\n{}\n\
             [raft]\nsnapshot_logs = {}\nkeep_logs = {}\n",
            opts.shards,
            opts.replication,
            opts.max_object_mb,
            opts.access_token_ttl_s,
            opts
                .cache_mb
                .map(|mb| format!("cache_mb = {mb}\n"))
                .unwrap_or_default(),
            opts.snapshot_logs,
            opts.keep_logs
        );
        if opts.fast_failover {
            toml.push_str("heartbeat_ms = 100\nelection_timeout_ms = 800\n");
        }
        if let Some(ms) = opts.scrub_interval_ms {
            toml.push_str(&format!("scrub_interval_ms = {ms}\n"));
        }
        if let Some(rate) = opts.snapshot_bytes_per_s {
            toml.push_str(&format!("snapshot_bytes_per_s = {rate}\n"));
        }
        let mut nodes = Vec::new();
        for id in 1..=opts.nodes as u64 {
            let http = format!("127.0.0.1:{}", free_port());
            let rpc = format!("127.0.0.1:{}", free_port());
            toml.push_str(&format!(
                "\n[[node]]\nid = {id}\nhttp = \"{http}\"\nrpc = \"{rpc}\"\ndata = \"node-{id}\"\n"
            ));
            if opts.https {
                toml.push_str(&format!(
                    "tls_cert = \"node-{id}/https.pem\"\ntls_key = \"node-{id}/https.key\"\n"
                ));
            }
            nodes.push(Node {
                id,
                http,
                rpc,
                process: None,
                token: None,
            });
        }
        let config = dir.path().join("cluster.toml");
        std::fs::write(&config, toml).expect("write config");
        if opts.https {
            let (ca, _) =
                tessera_raft::cluster_ca::ClusterCa::open_or_create(&dir.path().join("data/ca"))
                    .expect("the cluster CA");
            for id in 1..=opts.nodes as u64 {
                let cert = ca
                    .issue_server(&["127.0.0.1".to_string()])
                    .expect("HTTPS certificate");
                let node_dir = dir.path().join(format!("node-{id}"));
                std::fs::create_dir_all(&node_dir).expect("node dir");
                std::fs::write(node_dir.join("https.pem"), cert.cert_pem).expect("cert");
                std::fs::write(node_dir.join("https.key"), cert.key_pem).expect("key");
            }
        }
        let cluster = TestCluster {
            dir,
            config,
            bin: binary(),
            uid_base: opts.uid_base,
            nodes,
        };
        for node in &cluster.nodes {
            std::fs::create_dir_all(cluster.data_dir(node.id)).expect("data dir");
        }
        cluster
    }

    /// The cluster CA and every node's certificate for the internal RPC's mutual TLS, as
    /// `tessera up` makes them, in the nodes' data dirs (after whatever was mounted there), and
    /// owned by the nodes' own users when they run as other users.
    pub fn issue_certificates(&self) {
        let issued = Command::new(&self.bin)
            .args(["ca", "--config"])
            .arg(&self.config)
            .stdout(Stdio::null())
            .status()
            .expect("tessera ca");
        assert!(issued.success(), "tessera ca failed");
        let Some(base) = self.uid_base else {
            return;
        };
        for node in &self.nodes {
            let uid = base + node.id as u32;
            let owned = Command::new("chown")
                .args(["-R", &format!("{uid}:{uid}")])
                .arg(self.data_dir(node.id).join("tls"))
                .status()
                .expect("chown");
            assert!(
                owned.success(),
                "chown of node {}'s certificates failed",
                node.id
            );
        }
    }

    /// Starts every node, initialises the cluster, waits until it is ready and logs in.
    pub async fn boot(&mut self) {
        self.issue_certificates();
        self.boot_without_certificates().await;
    }

    /// [`TestCluster::boot`] without issuing certificates first: for a binary from before the
    /// internal RPC's mutual TLS, which has no `tessera ca` (the upgrade check).
    pub async fn boot_without_certificates(&mut self) {
        let ids: Vec<u64> = self.nodes.iter().map(|n| n.id).collect();
        for id in &ids {
            self.spawn(*id);
        }
        let cluster = self;
        let first = cluster.node(1).client();
        let token_file = cluster.data_dir(1).join("init-token");
        // Polled like `eventually`, but a failure says what the last attempt got and what the
        // nodes logged: a cluster that does not come up is otherwise hard to diagnose.
        let deadline = Instant::now() + DEADLINE;
        loop {
            let token = std::fs::read_to_string(&token_file).unwrap_or_default();
            let reply = first
                .send(
                    Method::POST,
                    "/api/v1/cluster/init",
                    &[("authorization", &format!("Bearer {}", token.trim()))],
                    bytes::Bytes::new(),
                )
                .await;
            let last = match reply {
                Ok(r) if r.status.is_success() => break,
                Ok(r) => format!("{} {}", r.status, String::from_utf8_lossy(&r.body)),
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                panic!(
                    "the cluster did not initialise: last attempt: {last}\n{}",
                    cluster.log_tails(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        cluster.wait_ready().await;
        let token = first
            .login("admin", ADMIN_PASSWORD)
            .await
            .expect("admin login");
        for node in &mut cluster.nodes {
            node.token = Some(token.clone());
        }
    }

    /// A new node for a running cluster, as an operator makes one: its `[[node]]` entry added
    /// to the config, a certificate from the cluster CA (`tessera ca --id N`) and the process
    /// started with `tessera run`. It is not a member until added (`tessera node add`), so it
    /// is only waited for until it answers `/healthz`. Returns its id.
    pub async fn start_new_node(&mut self) -> u64 {
        let id = self.nodes.iter().map(|n| n.id).max().unwrap_or(0) + 1;
        let http = format!("127.0.0.1:{}", free_port());
        let rpc = format!("127.0.0.1:{}", free_port());
        let mut toml = std::fs::read_to_string(&self.config).expect("read config");
        toml.push_str(&format!(
            "\n[[node]]\nid = {id}\nhttp = \"{http}\"\nrpc = \"{rpc}\"\ndata = \"node-{id}\"\n"
        ));
        std::fs::write(&self.config, toml).expect("write config");
        std::fs::create_dir_all(self.data_dir(id)).expect("data dir");
        let issued = Command::new(&self.bin)
            .args(["ca", "--id", &id.to_string(), "--config"])
            .arg(&self.config)
            .stdout(Stdio::null())
            .status()
            .expect("tessera ca");
        assert!(issued.success(), "tessera ca --id {id} failed");
        let token = self.nodes.first().and_then(|n| n.token.clone());
        self.nodes.push(Node {
            id,
            http,
            rpc,
            process: None,
            token,
        });
        self.spawn(id);
        let probe = Client::new(&self.node(id).http).with_timeout(Duration::from_secs(2));
        eventually(&format!("node {id} to answer"), DEADLINE, || async {
            probe
                .get("/healthz")
                .await
                .ok()
                .filter(|r| r.status.is_success())
        })
        .await;
        id
    }

    /// The `tessera` binary that later node starts (and [`TestCluster::issue_certificates`])
    /// run: [`binary`] is read once, when the cluster is created, so an upgrade check starts a
    /// cluster on an old binary and swaps in the new one between a kill and a start.
    pub fn set_binary(&mut self, bin: PathBuf) {
        self.bin = bin;
    }

    /// The cluster.toml the nodes run with (for CLI tests).
    pub fn config_path(&self) -> &std::path::Path {
        &self.config
    }

    pub fn node(&self, id: u64) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .expect("no such node")
    }

    /// Starts a stopped node without waiting for it (see [`TestCluster::restart`]).
    pub fn start_node(&mut self, id: u64) {
        assert!(!self.node(id).is_running(), "node {id} is running");
        self.spawn(id);
    }

    fn spawn(&mut self, id: u64) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("node-{id}.log")))
            .expect("log file");
        let mut command = Command::new(&self.bin);
        command
            .args(["run", "--id", &id.to_string(), "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info,openraft=warn")
            .env("TESSERA_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        if let Some(base) = self.uid_base {
            let uid = base + id as u32;
            command.uid(uid).gid(uid);
        }
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent. A harness
        // that dies (a panic, SIGKILL) then takes its nodes with it instead of leaving them
        // running. Linux sends the signal when the spawning *thread* ends: nodes are started
        // from runtime threads, never from short-lived blocking-pool ones. Set after the uid
        // change, which would clear it.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let child = command.spawn().expect("spawn tessera");
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.id == id)
            .expect("no such node");
        node.process = Some(child);
    }

    /// Restarts a stopped node and waits until it is ready.
    pub async fn restart(&mut self, id: u64) {
        assert!(!self.node(id).is_running(), "node {id} is running");
        self.spawn(id);
        self.node(id).wait_ready().await;
    }

    /// SIGTERM, as systemd or an operator stops a node, and waits (up to [`DEADLINE`]) until it
    /// has exited by itself: it hands off its leaderships and finishes its requests first.
    pub async fn terminate(&mut self, id: u64) {
        let mut child = self.take_process(id);
        let pid = libc::pid_t::try_from(child.id()).expect("pid");
        // SAFETY: kill(2) with the pid of a child this harness spawned and has not reaped.
        let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(sent, 0, "SIGTERM to node {id}");
        let deadline = std::time::Instant::now() + DEADLINE;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                assert!(status.success(), "node {id} stopped with {status}");
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "node {id} did not stop after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `kill -9`: no chance to flush or say goodbye.
    pub fn kill(&mut self, id: u64) {
        let mut child = self.take_process(id);
        child.kill().expect("kill -9");
        child.wait().expect("reap");
    }

    /// The running process of node `id`, which counts as stopped from now on.
    fn take_process(&mut self, id: u64) -> Child {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.id == id)
            .expect("no such node");
        node.process.take().expect("node is not running")
    }

    /// Whether a node that should be running has exited by itself (a crash, a panic), with its
    /// exit status; it then counts as stopped.
    pub fn exited(&mut self, id: u64) -> Option<std::process::ExitStatus> {
        let node = self.nodes.iter_mut().find(|n| n.id == id)?;
        let status = node.process.as_mut()?.try_wait().ok()??;
        node.process = None;
        Some(status)
    }

    /// `SIGSTOP`: the node is frozen as a stalled machine would be (its sockets stay open), until
    /// [`TestCluster::resume`].
    pub fn pause(&self, id: u64) {
        self.signal(id, "STOP");
    }

    /// `SIGCONT` after [`TestCluster::pause`].
    pub fn resume(&self, id: u64) {
        self.signal(id, "CONT");
    }

    fn signal(&self, id: u64, signal: &str) {
        let pid = self.pid(id).expect("node is not running");
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// Waits until every running node reports every group it hosts has a leader.
    pub async fn wait_ready(&self) {
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            node.wait_ready().await;
        }
    }

    /// `/api/v1/cluster` as seen from a running node.
    pub async fn status(&self) -> Value {
        let node = self
            .nodes
            .iter()
            .find(|n| n.is_running())
            .expect("a running node");
        let reply = node
            .client()
            .get("/api/v1/cluster")
            .await
            .expect("cluster status");
        reply.json()
    }

    /// The process id of a running node (for /proc measurements).
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.node(id).process.as_ref().map(Child::id)
    }

    /// The cluster CA's certificate (which signed the HTTPS certificates of `Options::https`).
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.path().join("data/ca/ca.pem")
    }

    /// The data directory of a node.
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node-{id}"))
    }

    /// The last `lines` lines each node logged.
    pub fn log_tails(&self, lines: usize) -> String {
        let tails: Vec<String> = self
            .nodes
            .iter()
            .map(|node| {
                let log = self.log(node.id);
                let tail: Vec<&str> = log.lines().rev().take(lines).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- node {} log:\n{}", node.id, tail.join("\n"))
            })
            .collect();
        tails.join("\n")
    }

    /// The log of a node, for assertion messages.
    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("node-{id}.log"))).unwrap_or_default()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        // A failing test's cluster tells what its nodes logged last before it goes.
        if std::thread::panicking() {
            eprintln!("{}", self.log_tails(40));
        }
        for node in &mut self.nodes {
            if let Some(mut child) = node.process.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
