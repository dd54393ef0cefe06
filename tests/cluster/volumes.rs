//! Object bytes in volume files: damage on one replica's disk is found by the scrub and
//! repaired from the others, and kill -9 in the middle of heavy ingest loses nothing that was
//! acknowledged.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tessera_cluster_tests::{eventually, Options, TestCluster, DEADLINE};

use crate::support::{assert_serves, counter, image, sha_hex, upload, wait_caught_up};

/// Bytes of a needle's header in a volume file (`storage/src/volume/needle.rs`).
const HEADER_LEN: u64 = 56;

/// The volume files of shard group `group` on `node`.
fn volumes(cluster: &TestCluster, node: u64, group: u32) -> Vec<PathBuf> {
    let dir = cluster
        .data_dir(node)
        .join("db")
        .join("volumes")
        .join(format!("g{group}"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "vol"))
        .collect();
    files.sort();
    files
}

/// Starts a cluster of `opts`, uploads twelve images from seed `seed` through node 1 and waits
/// until every replica has them; returns the cluster and the images.
async fn with_images(opts: Options, seed: u64) -> (TestCluster, Vec<Vec<u8>>) {
    let cluster = TestCluster::start(opts).await;
    let images: Vec<Vec<u8>> = (0..12).map(|i| image(seed + i)).collect();
    for bytes in &images {
        upload(&cluster.node(1).client(), bytes).await;
    }
    wait_caught_up(&cluster).await;
    (cluster, images)
}

/// Flips (XORs with 0x5a) `len` bytes of the file at `path` from offset `at`.
fn flip(path: &Path, at: u64, len: usize) {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open volume");
    let mut raw = vec![0u8; len];
    file.read_exact_at(&mut raw, at).expect("read");
    for b in &mut raw {
        *b ^= 0x5a;
    }
    file.write_all_at(&raw, at).expect("flip bytes");
}

/// Every node serves every one of `images`.
async fn every_node_serves(cluster: &TestCluster, images: &[Vec<u8>]) {
    for node in &cluster.nodes {
        for bytes in images {
            assert_serves(&node.client(), &sha_hex(bytes), bytes).await;
        }
    }
}

/// Damaged objects a node reports for group 1 in `GET /api/v1/cluster`.
async fn damaged(cluster: &TestCluster, node: u64) -> Option<u64> {
    let status = cluster.status().await;
    status["groups"][1]["replicas"][node.to_string()]["damaged"].as_u64()
}

#[tokio::test]
async fn scrub_finds_and_repairs_flipped_and_truncated_volume_bytes() {
    // One shard: every object is in the same volume files.
    let options = Options {
        shards: 1,
        scrub_interval_ms: Some(300),
        ..Options::default()
    };
    let (cluster, images) = with_images(options, 7000).await;

    // Node 2: bytes flipped in the middle of its volume. Node 3: its volume loses its tail.
    let flipped = &volumes(&cluster, 2, 1)[0];
    let middle = std::fs::metadata(flipped).expect("stat").len() / 2;
    flip(flipped, middle, 16);
    let truncated = volumes(&cluster, 3, 1);
    let file = OpenOptions::new()
        .write(true)
        .open(&truncated[0])
        .expect("open volume");
    let len = file.metadata().expect("stat").len();
    file.set_len(len - 500).expect("truncate");

    for node in [2, 3] {
        let client = cluster.node(node).client();
        eventually(
            &format!("node {node}'s scrub to report and repair the damage"),
            DEADLINE,
            || async {
                let found = counter(&client, "tessera_scrub_corrupt_total").await;
                let repaired = counter(&client, "tessera_scrub_repaired_total").await;
                let open = damaged(&cluster, node).await?;
                (found >= 1 && repaired >= found && open == 0).then_some(())
            },
        )
        .await;
    }
    every_node_serves(&cluster, &images).await;
}

/// Bytes damaged while a node is down (found by the chaos campaign, seed 2): the object fast
/// path sends bodies with `sendfile`, which does not look at them, so the node must check a
/// needle before its first send. It serves the right bytes (from another replica) and
/// reports the damage; no scrub runs here.
#[tokio::test]
async fn bytes_damaged_while_a_node_is_down_are_never_served() {
    // Snapshots every few entries and no log kept behind them: the damaged object's log entry
    // is purged, so nothing reads its bytes at start-up and only a client's read finds them.
    // One shard: every object is in the same volume files.
    let options = Options {
        shards: 1,
        snapshot_logs: 4,
        keep_logs: 0,
        ..Options::default()
    };
    let (mut cluster, images) = with_images(options, 7100).await;
    cluster.kill(2);
    // One byte inside the body of the volume's first needle (the first upload).
    flip(&volumes(&cluster, 2, 1)[0], HEADER_LEN + 1000, 1);
    cluster.restart(2).await;
    let client = cluster.node(2).client();
    // Twice: the first read of an object is sent from its volume file, the second from memory.
    for _ in 0..2 {
        for bytes in &images {
            assert_serves(&client, &sha_hex(bytes), bytes).await;
        }
    }
    assert!(counter(&client, "tessera_scrub_corrupt_total").await >= 1);
}

/// A needle damaged while its upload is still in the node's Raft log (found by the chaos
/// campaign): the log holds the applied upload as a stub pointing to that needle, and openraft
/// reads it at start-up and to replicate it. The node used to exit at start ("no intact copy
/// … is left") or stop the group when sending the entry. Here the damaged node leads the
/// group back with a follower that lacks the entry and the only intact copy is on a node that
/// is down: it must start, send what it has, never serve the bad bytes, and once the intact
/// copy is back every node serves every object.
#[tokio::test]
async fn a_damaged_needle_still_in_the_log_neither_stops_its_node_nor_is_served() {
    let mut cluster = TestCluster::start(Options {
        nodes: 3,
        shards: 1,
        replication: 3,
        ..Options::default()
    })
    .await;
    cluster.kill(3);
    let images: Vec<Vec<u8>> = (0..12).map(|i| image(7200 + i)).collect();
    for bytes in &images {
        upload(&cluster.node(1).client(), bytes).await;
    }
    wait_caught_up(&cluster).await;
    cluster.kill(2);
    cluster.kill(1);
    // One byte inside the body of node 2's newest needle: the last upload, the last entry of
    // its log, which openraft reads while loading the log at start-up.
    let last = images.last().expect("images");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(volumes(&cluster, 2, 1).last().expect("a volume"))
        .expect("open volume");
    let at = file.metadata().expect("stat").len() - last.len() as u64 / 2;
    let mut raw = [0u8; 1];
    file.read_exact_at(&mut raw, at).expect("read");
    raw[0] ^= 0x5a;
    file.write_all_at(&raw, at).expect("flip a byte");
    drop(file);

    // Node 2 (the longer log) leads node 3, which has none of the uploads.
    cluster.start_node(2);
    cluster.start_node(3);
    cluster.node(2).wait_ready().await;
    cluster.node(3).wait_ready().await;
    wait_caught_up(&cluster).await;
    let damaged_sha = sha_hex(last);
    for node in [2, 3] {
        let client = cluster.node(node).client();
        for bytes in &images[..images.len() - 1] {
            assert_serves(&client, &sha_hex(bytes), bytes).await;
        }
        // No intact copy is reachable: anything but other bytes.
        let reply = client
            .get(&format!("/objects/{damaged_sha}"))
            .await
            .expect("read request");
        assert!(
            reply.status != 200 || reply.body[..] == last[..],
            "node {node} served other bytes for {damaged_sha}"
        );
    }
    assert!(
        counter(
            &cluster.node(2).client(),
            "tessera_log_stub_without_bytes_total"
        )
        .await
            >= 1
    );

    // The intact copy comes back: nodes 2 and 3 fetch it.
    cluster.restart(1).await;
    for node in [2, 3] {
        eventually(
            &format!("node {node} to repair the object"),
            DEADLINE,
            || async { (damaged(&cluster, node).await? == 0).then_some(()) },
        )
        .await;
    }
    for node in &cluster.nodes {
        for bytes in &images {
            assert_serves(&node.client(), &sha_hex(bytes), bytes).await;
        }
    }
}

#[tokio::test]
async fn kill_9_during_heavy_ingest_loses_no_acknowledged_object() {
    let mut cluster = TestCluster::start(Options {
        nodes: 3,
        shards: 2,
        replication: 3,
        ..Options::default()
    })
    .await;
    let acknowledged: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..6u64 {
        let client = cluster.node(w % 3 + 1).client();
        let (acked, stop) = (acknowledged.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut seed = 100_000 * (w + 1);
            while !stop.load(Ordering::Relaxed) {
                let bytes = image(seed);
                seed += 1;
                match client.put_object(bytes::Bytes::from(bytes.clone())).await {
                    Ok(reply) if reply.status.is_success() => {
                        acked.lock().expect("lock").push(bytes)
                    }
                    _ => {}
                }
            }
        }));
    }
    eventually("uploads to be acknowledged", DEADLINE, || async {
        (acknowledged.lock().expect("lock").len() >= 150).then_some(())
    })
    .await;
    // Every node at once, with uploads in flight.
    for id in 1..=3 {
        cluster.kill(id);
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer task");
    }
    // All at once: no node is ready before a quorum of its groups is back.
    for id in 1..=3 {
        cluster.start_node(id);
    }
    cluster.wait_ready().await;
    let acknowledged = acknowledged.lock().expect("lock").clone();
    assert!(acknowledged.len() >= 150);
    every_node_serves(&cluster, &acknowledged).await;
}
