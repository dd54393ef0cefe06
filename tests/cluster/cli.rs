//! The `tessera` command line as a user drives it: `up` on a fresh config, `put`, `get`,
//! `status`, a node dying under `up`, Ctrl-C, and `up` again on the same data.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tessera_cluster_tests::{binary, free_port, png};

use crate::support::{run_ok, sha_hex};

/// The pid in a line `node N started|restarted (pid P), ...`.
fn pid_in(line: &str) -> u32 {
    let pid = line.split("(pid ").nth(1).and_then(|r| r.split(')').next());
    pid.and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line:?}"))
}

/// `tessera up` with its stdout and stderr lines collected on a channel.
struct Up {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Up {
    fn start(config: &Path) -> Up {
        let mut child = Command::new(binary())
            .args(["up", "--config"])
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tessera up");
        let (tx, lines) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Up {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `needle`, returning it.
    fn expect(&mut self, needle: &str) -> String {
        self.wait_for_line(|l| l.contains(needle))
    }

    /// Waits for a line `accept` takes, returning it.
    fn wait_for_line(&mut self, accept: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(line) = self.seen.iter().find(|l| accept(l)) {
                return line.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!(
                    "`tessera up` never printed the line it waited for; it printed:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    fn node_pids(&mut self) -> Vec<u32> {
        (1..=3)
            .map(|id| pid_in(&self.expect(&format!("node {id} started (pid "))))
            .collect()
    }

    /// Sends `signal` (`INT`: Ctrl-C, `TERM`: what systemd and `kill` send), then waits for
    /// `up` to exit.
    fn stop(mut self, signal: &str) -> std::process::ExitStatus {
        Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for up") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "`tessera up` did not stop after SIG{signal}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A test that fails half-way must not leave `up` and its nodes running: SIGTERM (`up` stops
/// its nodes), then SIGKILL if it has not exited within 30 s.
impl Drop for Up {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tessera(config: &Path, args: &[&str]) -> std::process::Output {
    run_ok(
        Command::new(binary())
            .args(args)
            .arg("--config")
            .arg(config),
    )
}

fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[test]
fn up_put_get_status_and_stop_on_ctrl_c_or_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut toml = String::from("[cluster]\nshards = 8\nreplication = 3\n");
    for id in 1..=3 {
        toml.push_str(&format!(
            "\n[[node]]\nid = {id}\nhttp = \"127.0.0.1:{}\"\nrpc = \"127.0.0.1:{}\"\ndata = \"data/node-{id}\"\n",
            free_port(),
            free_port()
        ));
    }
    let config = dir.path().join("cluster.toml");
    std::fs::write(&config, toml).expect("config");

    let mut up = Up::start(&config);
    let pids = up.node_pids();
    up.expect("initialised a new cluster");
    up.expect("Tessera is ready");
    // `up` made the internal RPC's CA and certificates itself (no manual step).
    up.expect("created the cluster CA");
    up.expect("issued node 3 its internal RPC certificate");

    let files: Vec<_> = (0..3u64)
        .map(|seed| {
            let path = dir.path().join(format!("img-{seed}.png"));
            std::fs::write(&path, png(64, 48, seed)).expect("write image");
            path
        })
        .collect();
    let mut args = vec!["put"];
    args.extend(files.iter().map(|p| p.to_str().expect("utf-8 path")));
    let put = tessera(&config, &args);
    let printed = String::from_utf8_lossy(&put.stdout).into_owned();
    let shas: Vec<String> = files
        .iter()
        .map(|f| sha_hex(&std::fs::read(f).expect("read image")))
        .collect();
    for (sha, file) in shas.iter().zip(&files) {
        assert!(
            printed.contains(&format!("{sha}  {}", file.display())),
            "put printed:\n{printed}"
        );
    }
    let got = tessera(&config, &["get", &shas[1]]);
    assert_eq!(got.stdout, std::fs::read(&files[1]).expect("read image"));
    let status = String::from_utf8_lossy(&tessera(&config, &["status"]).stdout).into_owned();
    assert_eq!(nodes_up(&status), 3, "status:\n{status}");
    assert!(status.contains("moves: none to go"), "status:\n{status}");
    assert!(status.contains("meta"), "status:\n{status}");

    // A node dying under `up` is reported and restarted; the others keep serving meanwhile.
    // Killed again at once, it comes back after a back-off, and `up` says so.
    Command::new("kill")
        .args(["-9", &pids[2].to_string()])
        .status()
        .expect("kill -9");
    up.expect("node 3 exited");
    assert_eq!(
        tessera(&config, &["get", &shas[0]]).stdout,
        std::fs::read(&files[0]).expect("image")
    );
    let restarted = pid_in(&up.expect("node 3 restarted (pid "));
    Command::new("kill")
        .args(["-9", &restarted.to_string()])
        .status()
        .expect("kill -9");
    up.expect("restarting it in 1 s");
    let again_pid =
        up.wait_for_line(|l| l.contains("node 3 restarted (pid ") && pid_in(l) != restarted);
    assert!(is_alive(pid_in(&again_pid)));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = String::from_utf8_lossy(&tessera(&config, &["status"]).stdout).into_owned();
        if nodes_up(&status) == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 3 never came back:\n{status}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // `tessera node restart` stops node 2 gracefully and starts it again in the same process
    // (the supervisor sees no exit), and waits until it is ready.
    let restart = tessera(&config, &["node", "restart", "--id", "2"]);
    let said = String::from_utf8_lossy(&restart.stdout).into_owned();
    assert!(said.contains("node 2 restarted and ready in"), "{said}");
    assert!(is_alive(pids[1]), "node 2 runs on in its process");
    assert_eq!(
        tessera(&config, &["get", &shas[2]]).stdout,
        std::fs::read(&files[2]).expect("image")
    );
    let log =
        std::fs::read_to_string(dir.path().join("data/node-2/tessera.log")).unwrap_or_default();
    assert!(
        log.contains("handing off leaderships") && log.contains("restarting"),
        "node 2's log:\n{log}"
    );

    assert!(up.stop("INT").success());
    for pid in pids[..2].iter().chain([pid_in(&again_pid)].iter()) {
        assert!(!is_alive(*pid), "node process {pid} outlived `tessera up`");
    }

    // Again on the same data: no new initialisation, every object still there.
    let mut again = Up::start(&config);
    let again_pids = again.node_pids();
    again.expect("Tessera is ready");
    assert!(
        !again
            .seen
            .iter()
            .any(|l| l.contains("initialised a new cluster")),
        "re-initialised an existing cluster"
    );
    for (sha, file) in shas.iter().zip(&files) {
        assert_eq!(
            tessera(&config, &["get", sha]).stdout,
            std::fs::read(file).expect("image")
        );
    }
    // SIGTERM stops the nodes too (it used to leave them running as orphans).
    assert!(again.stop("TERM").success());
    for pid in again_pids {
        assert!(
            !is_alive(pid),
            "node process {pid} outlived `tessera up` after SIGTERM"
        );
    }
}

/// How many nodes `tessera status` lists as up in its node table (the second paragraph).
fn nodes_up(status: &str) -> usize {
    let table = status.split("\n\n").nth(1).unwrap_or_default();
    table.lines().filter(|l| l.ends_with(" up")).count()
}
