//! One hostile request never takes a node down or fills it: deep XML, decompression bombs,
//! spreadsheet formulas and control characters in names, polyglot uploads — each tried with a
//! manager's account against a real cluster, every node asked `/readyz` after each.

use std::io::{Read, Write};

use bytes::Bytes;
use serde_json::{json, Value};
use tessera_client::{Client, Method};
use tessera_cluster_tests::{Options, TestCluster};

use crate::exports::{download, exported, import_annotations};
use crate::imports::import;
use crate::support::{
    add_images, cluster_with_manager, cluster_with_user, counter, create_annotation_set,
    error_message, new_dataset, upload,
};

async fn all_ready(cluster: &TestCluster, after: &str) {
    for node in &cluster.nodes {
        let ready = node.client().get("/readyz").await.expect("readyz");
        assert!(ready.status.is_success(), "node {} after {after}", node.id);
    }
}

/// Bytes the process `pid` has written to storage so far (`/proc/<pid>/io`).
fn written(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).expect("/proc/<pid>/io");
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("write_bytes")
}

/// A gzip file of `members` concatenated members, each 16 MiB of zeros: about 16 KiB each
/// compressed, a ratio of about 1000:1 (gzip readers read every member, as Tessera does).
fn gzip_bomb(members: usize) -> Vec<u8> {
    let mut one = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    one.write_all(&vec![0u8; 16 << 20]).expect("compress");
    let one = one.finish().expect("gzip");
    one.repeat(members)
}

/// A 10x4 BMP stored top-down (negative height), 24 bits per pixel.
fn top_down_bmp() -> Vec<u8> {
    let row = 32; // 10 pixels x 3 bytes, padded to 4
    let pixels = row * 4;
    let mut b = b"BM".to_vec();
    b.extend_from_slice(&(54 + pixels as u32).to_le_bytes());
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&54u32.to_le_bytes());
    b.extend_from_slice(&40u32.to_le_bytes());
    b.extend_from_slice(&10i32.to_le_bytes());
    b.extend_from_slice(&(-4i32).to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&24u16.to_le_bytes());
    b.extend_from_slice(&[0; 24]);
    b.extend(std::iter::repeat_n(0x7f, pixels));
    b
}

async fn labels_refused(manager: &Client, dataset: u64, name: &str, character: &str) {
    let labels = json!([{"name": name, "color": "#00ff00", "kinds": ["rectangle"]}]);
    let reply = create_annotation_set(manager, dataset, "s", &labels).await;
    assert_eq!(reply.status, 422, "{name:?}: {:?}", reply.json());
    let message = error_message(&reply);
    assert!(message.contains(character), "{name:?}: {message}");
}

#[tokio::test]
async fn one_hostile_request_never_takes_a_node_down_or_fills_it() {
    let (cluster, manager) = cluster_with_manager(Options::default()).await;
    let dataset = new_dataset(&manager, "hostile").await;

    // Polyglots are no images; a top-down BMP is one.
    let mut polyglot = b"GIF89a".to_vec();
    polyglot.extend_from_slice(&[1, 0, 1, 0, 0, 0, 0]);
    polyglot.extend_from_slice(b"<html><script>alert(document.cookie)</script></html>");
    let refused = manager
        .put_object(Bytes::from(polyglot))
        .await
        .expect("upload");
    assert_eq!(refused.status, 400, "{:?}", refused.json());
    assert_eq!(refused.json()["error"]["code"], "corrupt_image");
    for path in ["/api/v1/me", "/", "/api/v1/nothing-here"] {
        let reply = manager.get(path).await.expect("get");
        assert_eq!(
            reply.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        // The UI's policy (which the browser test checks the UI satisfies): no inline script,
        // no framing by other sites, no referrer to other sites.
        assert_eq!(
            reply.header("content-security-policy"),
            Some(
                "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                 connect-src 'self'; font-src 'self'; manifest-src 'self'; form-action 'self'; \
                 base-uri 'none'; object-src 'none'; frame-ancestors 'none'"
            ),
            "{path}"
        );
        assert_eq!(reply.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(
            reply.header("referrer-policy"),
            Some("no-referrer"),
            "{path}"
        );
        assert_eq!(reply.header("set-cookie"), None, "{path}");
    }
    let bmp = upload(&manager, &top_down_bmp()).await;
    // Object bytes are untrusted: served inert, through the fast path and the router alike.
    for method in [Method::GET, Method::HEAD] {
        let path = format!("/objects/{bmp}");
        let reply = manager
            .send(method.clone(), &path, &[], Bytes::new())
            .await
            .expect("object");
        assert_eq!(reply.status, 200, "{method}");
        assert_eq!(
            reply.header("x-content-type-options"),
            Some("nosniff"),
            "{method}"
        );
        assert_eq!(
            reply.header("content-security-policy"),
            Some("sandbox"),
            "{method}"
        );
    }
    let record = manager
        .get(&format!("/api/v1/objects/{bmp}"))
        .await
        .expect("record")
        .json();
    assert_eq!(
        (record["width"].clone(), record["height"].clone()),
        (json!(10), json!(4)),
        "{record}"
    );
    all_ready(&cluster, "uploads").await;

    // Names that would forge lines in obj.names or labelmap.txt are refused, naming the character.
    labels_refused(&manager, dataset, "car\ntruck", "U+000A").await;
    labels_refused(&manager, dataset, "nul\0", "U+0000").await;
    labels_refused(&manager, dataset, "cr\rx", "U+000D").await;

    // Labels a spreadsheet would run as formulas stay text in annotations.csv; a label with a
    // line break in an imported file is never created.
    let sha = upload(&manager, &tessera_cluster_tests::png(32, 24, 77)).await;
    let added = add_images(&manager, dataset, json!([{"sha256": sha, "name": "a.png"}])).await;
    assert_eq!(added.status, 200, "{:?}", added.json());
    let labels = json!([{"name": "car", "color": "#00ff00", "kinds": ["rectangle"]}]);
    let set = create_annotation_set(&manager, dataset, "formulas", &labels).await;
    let set = set.json()["id"].as_u64().expect("set id");
    let formula = "=HYPERLINK(\"http://evil.example\",\"x\")";
    let coco = json!({
        "images": [{"id": 1, "file_name": "a.png", "width": 32, "height": 24}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "area": 25, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [2, 2, 5, 5], "area": 25, "iscrowd": 0},
            {"id": 3, "image_id": 1, "category_id": 3, "bbox": [3, 3, 5, 5], "area": 25, "iscrowd": 0}
        ],
        "categories": [{"id": 1, "name": formula}, {"id": 2, "name": "@SUM(1)"}, {"id": 3, "name": "two\nlines"}]
    });
    let job = import_annotations(
        &manager,
        set,
        "format=coco&create_labels=true",
        coco.to_string().into_bytes(),
    )
    .await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert!(job.to_string().contains("control characters"), "{job}");
    let schema = manager
        .get(&format!("/api/v1/annotation-sets/{set}"))
        .await
        .expect("set")
        .json();
    let names: Vec<&str> = schema["labels"]
        .as_array()
        .expect("labels")
        .iter()
        .filter_map(|l| l["name"].as_str())
        .collect();
    assert!(!names.iter().any(|n| n.contains('\n')), "{names:?}");
    let job = exported(
        &manager,
        set,
        json!({"format": "csv", "include_images": false}),
    )
    .await;
    let zip = download(&manager, &cluster, &job).await;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).expect("zip");
    let mut csv = String::new();
    archive
        .by_name("annotations.csv")
        .expect("annotations.csv")
        .read_to_string(&mut csv)
        .expect("csv");
    assert!(
        csv.contains("\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"x\"\")\""),
        "{csv}"
    );
    assert!(csv.contains("\"'@SUM(1)\""), "{csv}");
    assert!(
        !csv.lines().any(|l| l
            .split(',')
            .nth(3)
            .is_some_and(|c| c.starts_with(['=', '@']))),
        "{csv}"
    );
    all_ready(&cluster, "formulas and control characters").await;

    // 100,000 nested elements: a failed job naming the limit, and the node keeps serving.
    let deep = format!(
        "<annotations>{}{}</annotations>",
        "<a>".repeat(100_000),
        "</a>".repeat(100_000)
    );
    let job = import_annotations(&manager, set, "format=cvat", deep.into_bytes()).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert!(
        job["error"]
            .to_string()
            .contains("nested deeper than 64 levels"),
        "{job}"
    );
    all_ready(&cluster, "deep XML").await;

    // A 1 MB gzip that expands to 1 GiB is refused after about a megabyte hit the disk, not
    // after its 100:1 allowance (about 100 MB) did.
    let pid = cluster.pid(1).expect("node 1 pid");
    let before = written(pid);
    let bomb = gzip_bomb(64);
    let compressed = bomb.len() as u64;
    let job = import(&manager, dataset, "zeros.gz", bomb).await;
    let said = format!("{} {}", job["skipped"], job["error"]);
    assert!(said.contains("compression ratio"), "{said}");
    let delta = written(pid) - before;
    assert!(
        delta < 24 << 20,
        "the import wrote {delta} bytes for a {compressed}-byte bomb"
    );
    all_ready(&cluster, "a gzip bomb").await;

    // A file that looks like a video but is not: the reason names no server path.
    let mut fake = vec![0x1a, 0x45, 0xdf, 0xa3];
    fake.extend_from_slice(&[0x42; 4096]);
    let job = import(&manager, dataset, "clip.webm", fake).await;
    let said = job.to_string();
    assert!(said.contains("video could not be decoded"), "{said}");
    let data = cluster.data_dir(1);
    let root = data
        .parent()
        .expect("test dir")
        .to_string_lossy()
        .into_owned();
    assert!(
        !said.contains(&root) && !said.contains("/jobs/"),
        "a server path in {said}"
    );
    let images: Value = manager
        .get(&format!("/api/v1/datasets/{dataset}/images"))
        .await
        .expect("images")
        .json();
    assert_eq!(
        images["items"].as_array().map(Vec::len),
        Some(1),
        "nothing of the bomb stored"
    );
}

#[tokio::test]
async fn cluster_init_needs_credentials_and_repeats_quietly() {
    let (cluster, annotator) = cluster_with_user(Options::default(), "ann", "annotator").await;
    let admin = cluster.node(1).client();
    let init = |client: &Client| {
        let client = client.clone();
        async move {
            client
                .send(Method::POST, "/api/v1/cluster/init", &[], Bytes::new())
                .await
                .expect("init")
        }
    };
    let errors = |id: u64| cluster.log(id).matches("ERROR").count();
    let before: Vec<usize> = (1..=3).map(errors).collect();
    for node in &cluster.nodes {
        let anonymous = node.client().anonymous();
        let reply = init(&anonymous).await;
        assert_eq!(reply.status, 401, "node {}: {:?}", node.id, reply.json());
        assert!(error_message(&reply).contains("init token"));
        let forged = init(&anonymous.with_token("0".repeat(64))).await;
        assert_eq!(forged.status, 401, "node {}", node.id);
        let other = std::fs::read_to_string(cluster.data_dir(node.id % 3 + 1).join("init-token"))
            .expect("another node's init token");
        let foreign = init(&anonymous.with_token(other.trim().to_string())).await;
        assert_eq!(
            foreign.status, 401,
            "node {}: another node's init token",
            node.id
        );
        let own = std::fs::read_to_string(cluster.data_dir(node.id).join("init-token"))
            .expect("init token");
        let reply = init(&anonymous.with_token(own.trim().to_string())).await;
        assert_eq!(reply.status, 200, "node {}: {:?}", node.id, reply.json());
        assert_eq!(reply.json()["initialized_groups"], 0);
        assert_eq!(reply.json()["admin_created"], false);
    }
    assert_eq!(init(&annotator).await.status, 403);
    for _ in 0..5 {
        assert_eq!(init(&admin).await.status, 200);
    }
    let after: Vec<usize> = (1..=3).map(errors).collect();
    assert_eq!(before, after, "repeated inits logged errors");
    all_ready(&cluster, "init calls").await;
}

/// Resident memory of a process, from `/proc/<pid>/status`.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

#[tokio::test]
async fn slow_readers_of_a_large_object_cost_the_node_no_memory() {
    use tokio::io::AsyncWriteExt;

    let cluster = TestCluster::start(Options::default()).await;
    let admin = cluster.node(1).client();
    let image = tessera_cluster_tests::png(3000, 2000, 91);
    let size = image.len() as u64;
    let sha = upload(&admin, &image).await;
    let pid = cluster.pid(1).expect("node 1");
    let token = cluster.node(1).token().expect("admin token").to_string();
    let served_before = counter(&admin, "tessera_served_bytes_total").await;
    let before = rss_bytes(pid);
    // 300 clients ask for the 18 MB object and never read a byte of the answer.
    let readers = 300u64;
    let mut held = Vec::new();
    for _ in 0..readers {
        let addr = cluster.node(1).http.clone();
        let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let head = format!(
            "GET /objects/{sha} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
        );
        conn.write_all(head.as_bytes()).await.expect("request");
        held.push(conn);
    }
    // Every answer has started (its bytes are counted when the answer is decided).
    tessera_cluster_tests::eventually(
        "every slow reader to be answered",
        tessera_cluster_tests::DEADLINE,
        || async {
            let served = counter(&admin, "tessera_served_bytes_total").await;
            (served >= served_before + readers * size).then_some(())
        },
    )
    .await;
    let grown = rss_bytes(pid).saturating_sub(before);
    assert!(
        grown < 160 << 20,
        "{readers} slow readers of a {size}-byte object grew the node by {grown} bytes"
    );
    // The node serves everyone else meanwhile.
    let small = upload(&admin, &tessera_cluster_tests::png(40, 30, 92)).await;
    let reply = admin.get(&format!("/objects/{small}")).await.expect("get");
    assert_eq!(reply.status, 200);
    drop(held);
    all_ready(&cluster, "slow readers").await;
}
