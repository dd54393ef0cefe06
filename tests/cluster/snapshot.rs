//! Test 7: a node that was down while the leader compacted its log catches up through a
//! streamed snapshot, while writes continue.

use tessera_cluster_tests::{eventually, Options, TestCluster, DEADLINE};

use crate::support::{assert_serves, images_in_shard, sha_hex, upload, wait_caught_up};

#[tokio::test]
async fn lagging_node_catches_up_through_a_snapshot() {
    let shards = 2;
    let mut cluster = TestCluster::start(Options {
        nodes: 3,
        shards: shards as u32,
        snapshot_logs: 10,
        keep_logs: 2,
        ..Options::default()
    })
    .await;
    let lagging = 3;
    let images: Vec<Vec<u8>> = (0..shards)
        .flat_map(|s| images_in_shard(s, shards, 40, 5000))
        .collect();
    let (before, rest) = images.split_at(10);
    let (while_down, during_catch_up) = rest.split_at(50);
    let client = cluster.node(1).client();
    for bytes in before {
        upload(&client, bytes).await;
    }
    cluster.kill(lagging);
    for bytes in while_down {
        upload(&client, bytes).await;
    }
    // The leaders must have purged entries the lagging node never received.
    eventually("the live nodes to purge their logs", DEADLINE, || async {
        let status = cluster.status().await;
        let groups = status["groups"].as_array()?.clone();
        groups[1..]
            .iter()
            .all(|g| {
                g["replicas"]["1"]["snapshot"]
                    .as_u64()
                    .is_some_and(|s| s >= 12)
            })
            .then_some(())
    })
    .await;

    let writer = {
        let client = cluster.node(2).client();
        let batch = during_catch_up.to_vec();
        tokio::spawn(async move {
            for bytes in &batch {
                upload(&client, bytes).await;
            }
        })
    };
    cluster.restart(lagging).await;
    writer.await.expect("uploads during catch-up");
    wait_caught_up(&cluster).await;

    let status = cluster.status().await;
    for g in &status["groups"].as_array().expect("groups")[1..] {
        assert!(
            g["replicas"]["3"]["snapshot"].as_u64().is_some(),
            "node 3 did not install a snapshot for group {}: {g}\n{}",
            g["group"],
            cluster.log(lagging)
        );
    }
    cluster.kill(1);
    cluster.kill(2);
    let lone = cluster.node(lagging).client();
    for bytes in &images {
        assert_serves(&lone, &sha_hex(bytes), bytes).await;
    }
}
