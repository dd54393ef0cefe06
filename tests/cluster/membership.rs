//! Growing and shrinking a running cluster: nodes added, removed and decommissioned while
//! uploads, reads and annotation saves go on, as a load balancer sends them to the members.
//! Replicas move learner → caught up → voter → old replica removed; no client request fails,
//! only about 1/N of the replicas move, and every acknowledged object and annotation version
//! is there afterwards on every node.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use tessera_client::{Client, Method};
use tessera_cluster_tests::{eventually, Options, TestCluster, DEADLINE};

use crate::load::{annotation_job, check_everything, Load};

/// Moves of a node set change can take a while on two cores: snapshots of every moving shard.
const SETTLE: Duration = Duration::from_secs(180);
use crate::support::{image, leader_of, run_ok, send_json, upload};

/// The voters of every group, from the cluster status.
async fn holders(cluster: &TestCluster) -> Vec<BTreeSet<u64>> {
    cluster.status().await["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| {
            g["voters"]
                .as_array()
                .expect("voters")
                .iter()
                .filter_map(Value::as_u64)
                .collect()
        })
        .collect()
}

/// Waits until no replica has to move any more and no node is leaving; returns the node set.
/// On a timeout it says where every group stands.
async fn settled(cluster: &TestCluster, admin: &Client) -> Value {
    let deadline = std::time::Instant::now() + SETTLE;
    loop {
        if let Ok(reply) = admin.get("/api/v1/cluster/nodes").await {
            let nodes = reply.json();
            let done = reply.status == 200
                && nodes["moves"]["to_go"]
                    .as_array()
                    .is_some_and(Vec::is_empty)
                && nodes["nodes"]
                    .as_array()
                    .is_some_and(|all| all.iter().all(|n| n["state"] == "active"));
            if done {
                return nodes;
            }
            if std::time::Instant::now() > deadline {
                let status = cluster.status().await;
                panic!(
                    "the replica moves did not finish: {nodes}\ngroups: {}",
                    status["groups"]
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Replicas that moved onto other nodes between two placements, over the shard groups.
fn moved(before: &[BTreeSet<u64>], after: &[BTreeSet<u64>]) -> (usize, usize) {
    let mut moved = 0;
    let mut total = 0;
    for (old, new) in before.iter().zip(after).skip(1) {
        moved += new.difference(old).count();
        total += new.len();
    }
    (moved, total)
}

/// Waits until every group is hosted only by its voters: removed replicas deleted themselves.
async fn only_voters_host(cluster: &TestCluster) {
    eventually("removed replicas to be deleted", SETTLE, || async {
        let status = cluster.status().await;
        let clean = status["groups"].as_array()?.iter().skip(1).all(|g| {
            let voters: BTreeSet<String> = g["voters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| v.to_string())
                .collect();
            let hosting: BTreeSet<String> = g["replicas"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(id, _)| id.clone())
                .collect();
            voters == hosting
        });
        clean.then_some(())
    })
    .await;
}

#[tokio::test]
async fn adding_two_nodes_under_load_moves_about_one_nth_and_fails_no_request() {
    let mut cluster = TestCluster::start(Options {
        shards: 12,
        // Short logs: new replicas catch up from snapshots, not only from the log.
        snapshot_logs: 40,
        keep_logs: 10,
        ..Options::default()
    })
    .await;
    let admin = cluster.node(1).client();
    let job = annotation_job(&admin, 6).await;
    let (task, annotator) = (job.task, job.annotator.clone());
    for seed in 0..40 {
        upload(&admin, &image(700_000 + seed)).await;
    }
    let members: Vec<Client> = cluster.nodes.iter().map(|n| n.client()).collect();
    let load = Load::start(members, job);
    let before = holders(&cluster).await;

    // Node 4 with the CLI, as an operator adds one.
    let four = cluster.start_new_node().await;
    let token = cluster.node(1).token().expect("admin token").to_string();
    let added = run_ok(
        Command::new(tessera_cluster_tests::binary())
            .args([
                "node",
                "add",
                "--id",
                &four.to_string(),
                "--wait",
                "--config",
            ])
            .arg(cluster.config_path())
            .env("TESSERA_TOKEN", &token),
    );
    let said = String::from_utf8_lossy(&added.stdout).to_string();
    assert!(said.contains("done"), "tessera node add said: {said}");
    cluster.node(four).wait_ready().await;
    load.admit(cluster.node(four).client());
    let nodes = settled(&cluster, &admin).await;
    let after_four = holders(&cluster).await;
    let (moved4, total) = moved(&before, &after_four);
    eprintln!("adding node 4 moved {moved4} of {total} shard replicas");
    assert!(moved4 > 0, "node 4 received nothing: {nodes}");
    assert!(
        moved4 as f64 <= (0.25 + 0.10) * total as f64,
        "{moved4} of {total} replicas moved for a 4th node"
    );
    assert!(after_four.iter().skip(1).all(|g| g.len() == 3));
    assert!(
        after_four[0].contains(&four),
        "node 4 is not a catalogue voter"
    );

    // Node 5 through the API.
    let five = cluster.start_new_node().await;
    let node = cluster.node(five);
    let reply = send_json(
        &admin,
        Method::POST,
        "/api/v1/cluster/nodes",
        json!({"id": five, "http": node.http, "rpc": node.rpc}),
    )
    .await;
    assert_eq!(reply.status, 202, "{:?}", reply.json());
    cluster.node(five).wait_ready().await;
    load.admit(cluster.node(five).client());
    settled(&cluster, &admin).await;
    let after_five = holders(&cluster).await;
    let (moved5, total) = moved(&after_four, &after_five);
    eprintln!("adding node 5 moved {moved5} of {total} shard replicas");
    assert!(
        moved5 > 0 && moved5 as f64 <= (0.20 + 0.10) * total as f64,
        "{moved5} of {total}"
    );
    assert_eq!(after_five[0].len(), 5, "the catalogue has five voters");
    only_voters_host(&cluster).await;
    check_everything(&cluster, &[1, 2, 3, 4, 5], load, task, &annotator).await;
}

#[tokio::test]
async fn removing_a_node_and_decommissioning_a_dead_one_keep_every_object() {
    let mut cluster = TestCluster::start(Options {
        nodes: 5,
        shards: 8,
        snapshot_logs: 40,
        keep_logs: 10,
        ..Options::default()
    })
    .await;
    let admin = cluster.node(1).client();
    let job = annotation_job(&admin, 4).await;
    let (task, annotator) = (job.task, job.annotator.clone());
    let members: Vec<Client> = cluster.nodes.iter().map(|n| n.client()).collect();
    let load = Load::start(members, job);
    for seed in 0..30 {
        upload(&admin, &image(600_000 + seed)).await;
    }

    // Node 2 drained: it keeps serving while its replicas move, then leaves.
    let reply = admin
        .send(Method::DELETE, "/api/v1/cluster/nodes/2", &[], Bytes::new())
        .await
        .expect("remove");
    assert_eq!(reply.status, 202, "{:?}", reply.json());
    let nodes = settled(&cluster, &admin).await;
    load.withdraw(cluster.node(2).client().base()).await;
    let ids: Vec<u64> = nodes["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| n["id"].as_u64())
        .collect();
    assert_eq!(ids, vec![1, 3, 4, 5], "{nodes}");
    assert!(holders(&cluster).await.iter().all(|g| !g.contains(&2)));

    // Node 3 dies; it is decommissioned and its replicas rebuilt from the survivors.
    load.withdraw(cluster.node(3).client().base()).await;
    cluster.kill(3);
    let refused = admin
        .send(Method::DELETE, "/api/v1/cluster/nodes/3", &[], Bytes::new())
        .await
        .expect("remove");
    assert_eq!(
        refused.status,
        409,
        "removing a dead node must say to decommission it: {:?}",
        refused.json()
    );
    assert!(refused.json()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("decommission"));
    let reply = admin
        .send(
            Method::DELETE,
            "/api/v1/cluster/nodes/3?decommission=true",
            &[],
            Bytes::new(),
        )
        .await
        .expect("decommission");
    assert_eq!(reply.status, 202, "{:?}", reply.json());
    settled(&cluster, &admin).await;
    let after = holders(&cluster).await;
    assert!(
        after.iter().all(|g| !g.contains(&3) && !g.contains(&2)),
        "{after:?}"
    );
    assert!(after.iter().skip(1).all(|g| g.len() == 3), "{after:?}");
    // Three nodes left for three replicas: one more removal is refused.
    let refused = admin
        .send(
            Method::DELETE,
            "/api/v1/cluster/nodes/4?decommission=true",
            &[],
            Bytes::new(),
        )
        .await
        .expect("remove");
    assert_eq!(refused.status, 409, "{:?}", refused.json());
    check_everything(&cluster, &[1, 4, 5], load, task, &annotator).await;
    // The drained node deleted its replicas' data (only its catalogue replica is left).
    eventually("node 2 to hold no shard replica", SETTLE, || async {
        let status = cluster.status().await;
        let hosting = status["groups"]
            .as_array()?
            .iter()
            .skip(1)
            .any(|g| g["replicas"].get("2").is_some());
        (!hosting).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_move_survives_its_leader_and_the_new_node_being_killed() {
    let mut cluster = TestCluster::start(Options {
        shards: 6,
        snapshot_logs: 20,
        keep_logs: 5,
        // Slow snapshots, so that the kills land while replicas are on their way.
        snapshot_bytes_per_s: Some(1 << 20),
        ..Options::default()
    })
    .await;
    let admin = cluster.node(1).client();
    let job = annotation_job(&admin, 3).await;
    let (task, annotator) = (job.task, job.annotator.clone());
    // 40 objects of 190 KB: each shard's snapshot takes about a second or more at 1 MiB/s.
    for seed in 0..40 {
        upload(
            &admin,
            &tessera_cluster_tests::png(256, 256, 800_000 + seed),
        )
        .await;
    }
    let members: Vec<Client> = cluster.nodes.iter().map(|n| n.client()).collect();
    // Uploads paced well below the snapshot rate: a group written faster than its snapshot
    // travels is never caught up (unpaced, a debug build adds ~2 MB/s and the move never ends).
    let load = Load::paced(members, job, Duration::from_millis(250));
    let four = cluster.start_new_node().await;
    let node = cluster.node(four);
    let reply = send_json(
        &admin,
        Method::POST,
        "/api/v1/cluster/nodes",
        json!({"id": four, "http": node.http, "rpc": node.rpc}),
    )
    .await;
    assert_eq!(reply.status, 202, "{:?}", reply.json());
    // A move under way: kill -9 the leader of its group (the planner's too, if it leads the
    // catalogue as well), then the new node, mid-snapshot.
    // The node set says what is moving and how much is left to copy.
    let moving = eventually("a move to start", DEADLINE, || async {
        let nodes = admin.get("/api/v1/cluster/nodes").await.ok()?.json();
        if nodes["moves"]["bytes_to_go"].as_u64()? < 1 << 20 {
            return None;
        }
        nodes["moves"]["running"].as_array()?.iter().find_map(|m| {
            let sized = m["bytes"].as_u64()? > 0;
            m["group"].as_u64().filter(|g| *g > 0 && sized)
        })
    })
    .await;
    let leader = leader_of(&cluster, moving as usize).await;
    load.withdraw(cluster.node(leader).client().base()).await;
    cluster.kill(leader);
    let admin = cluster.node(if leader == 1 { 2 } else { 1 }).client();
    eventually("node 4 to receive a snapshot", DEADLINE, || async {
        cluster
            .log(four)
            .contains("receiving a snapshot")
            .then_some(())
    })
    .await;
    cluster.kill(four);
    cluster.start_node(four);
    cluster.restart(leader).await;
    load.admit(cluster.node(leader).client());
    settled(&cluster, &admin).await;
    cluster.node(four).wait_ready().await;
    let after = holders(&cluster).await;
    assert!(after.iter().skip(1).all(|g| g.len() == 3), "{after:?}");
    assert!(
        after.iter().any(|g| g.contains(&four)),
        "node 4 holds nothing: {after:?}"
    );
    only_voters_host(&cluster).await;
    check_everything(&cluster, &[1, 2, 3, 4], load, task, &annotator).await;
}
