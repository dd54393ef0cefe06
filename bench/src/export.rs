//! Export memory at scale: an annotation set with `images` images and `shapes` shapes on each
//! (1 000 000 shapes over 100 000 images by default) is exported in several formats while the
//! resident memory of the node running the export is sampled. The claim under test: exports
//! stream, so RSS grows by a bounded amount however large the set is.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use futures_util::{stream, StreamExt};
use serde::Serialize;
use serde_json::{json, Value};
use tessera_client::{Client, Method};
use tessera_cluster_tests::{png, Options, TestCluster};

#[derive(Clone, Debug, Serialize)]
pub struct ExportRun {
    pub format: String,
    pub seconds: f64,
    pub zip_mb: f64,
    pub baseline_rss_mib: f64,
    pub peak_rss_mib: f64,
    pub growth_mib: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ExportBench {
    pub images: usize,
    pub shapes: usize,
    pub setup_seconds: f64,
    pub runs: Vec<ExportRun>,
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}

async fn post_json(client: &Client, path: &str, body: Value) -> anyhow::Result<Value> {
    let reply = client
        .send(
            Method::POST,
            path,
            &[("content-type", "application/json")],
            Bytes::from(body.to_string()),
        )
        .await?;
    if !reply.status.is_success() {
        bail!("{path}: {} {}", reply.status, reply.json());
    }
    Ok(reply.json())
}

async fn wait_job(client: &Client, id: u64) -> anyhow::Result<Value> {
    loop {
        let job = client.get(&format!("/api/v1/jobs/{id}")).await?.json();
        match job["state"].as_str() {
            Some("running") => tokio::time::sleep(Duration::from_millis(20)).await,
            Some("succeeded") => return Ok(job),
            _ => bail!("job {id} ended: {job}"),
        }
    }
}

/// Builds the set, then exports it in each format from node 2 (the set was imported through
/// node 1, so node 2's memory holds no trace of the import's parsing).
pub async fn run(images: usize, shapes: usize) -> anyhow::Result<ExportBench> {
    let cluster = TestCluster::start(Options::production()).await;
    let setup = Instant::now();
    let admin = cluster
        .node(1)
        .client()
        .with_timeout(Duration::from_secs(600));
    let dataset = post_json(&admin, "/api/v1/datasets", json!({"name": "big"})).await?["id"]
        .as_u64()
        .context("dataset id")?;
    // Tiny distinct images, uploaded and added 1000 at a time, 16 requests in flight.
    let batches: Vec<Vec<u64>> = (0..images as u64)
        .collect::<Vec<_>>()
        .chunks(1000)
        .map(<[u64]>::to_vec)
        .collect();
    let mut added = stream::iter(batches)
        .map(|seeds| {
            let client = admin.clone();
            async move {
                let mut list = Vec::with_capacity(seeds.len());
                for seed in seeds {
                    let reply = client.put_object(Bytes::from(png(16, 12, seed))).await?;
                    if !reply.status.is_success() {
                        bail!("upload: {}", reply.status);
                    }
                    let sha = reply.json()["sha256"].as_str().unwrap_or("").to_string();
                    list.push(json!({"sha256": sha, "name": format!("img-{seed:07}.png")}));
                }
                post_json(
                    &client,
                    &format!("/api/v1/datasets/{dataset}/images"),
                    json!({"images": list}),
                )
                .await?;
                Ok::<usize, anyhow::Error>(list.len())
            }
        })
        .buffer_unordered(16);
    let mut count = 0;
    while let Some(n) = added.next().await {
        count += n?;
        eprint!("\rimages added: {count}/{images}");
    }
    eprintln!();
    let labels = json!([{"name": "car", "color": "#ff0000", "kinds": ["rectangle", "polygon"]}]);
    let set = post_json(
        &admin,
        &format!("/api/v1/datasets/{dataset}/annotation-sets"),
        json!({"name": "big", "labels": labels}),
    )
    .await?["id"]
        .as_u64()
        .context("set id")?;
    // The shapes arrive as one COCO import: boxes and polygons, alternating.
    let mut coco_images = Vec::with_capacity(images);
    let mut annotations = Vec::with_capacity(images * shapes);
    for i in 0..images {
        coco_images.push(
            json!({"id": i + 1, "file_name": format!("img-{i:07}.png"), "width": 16, "height": 12}),
        );
        for k in 0..shapes {
            let x = (k % 8) as f64;
            let id = annotations.len() + 1;
            let a = if k % 2 == 0 {
                json!({"id": id, "image_id": i + 1, "category_id": 1, "bbox": [x, 1.0, 6.5, 8.25], "segmentation": [], "area": 53.6, "iscrowd": 0})
            } else {
                json!({"id": id, "image_id": i + 1, "category_id": 1, "bbox": [x, 0.0, 7.0, 10.0],
                       "segmentation": [[x, 0.0, x + 7.0, 5.0, x + 3.5, 10.0]], "area": 35.0, "iscrowd": 0})
            };
            annotations.push(a);
        }
    }
    let coco = json!({"images": coco_images, "categories": [{"id": 1, "name": "car"}], "annotations": annotations});
    let body = Bytes::from(serde_json::to_vec(&coco)?);
    drop(coco);
    let reply = admin
        .send(
            Method::POST,
            &format!("/api/v1/annotation-sets/{set}/annotation-imports?format=coco"),
            &[],
            body,
        )
        .await?;
    if reply.status != 202 {
        bail!("annotation import: {} {}", reply.status, reply.json());
    }
    let job = wait_job(&admin, reply.json()["id"].as_u64().context("job")?).await?;
    eprintln!("imported: {}", job["result"]["report"]);
    let setup_seconds = setup.elapsed().as_secs_f64();

    let runner = cluster
        .node(2)
        .client()
        .with_timeout(Duration::from_secs(600));
    let pid = cluster.pid(2).context("node 2 pid")?;
    let mut runs = Vec::new();
    for format in ["coco", "cvat", "yolo-segment", "voc"] {
        let baseline = rss_mib(pid);
        let started = Instant::now();
        let job = post_json(
            &runner,
            &format!("/api/v1/annotation-sets/{set}/exports"),
            json!({"format": format, "include_images": false}),
        )
        .await?;
        let id = job["id"].as_u64().context("job id")?;
        let mut peak = baseline;
        let job = loop {
            peak = peak.max(rss_mib(pid));
            let job = runner.get(&format!("/api/v1/jobs/{id}")).await?.json();
            match job["state"].as_str() {
                Some("running") => tokio::time::sleep(Duration::from_millis(20)).await,
                Some("succeeded") => break job,
                _ => bail!("export {format} ended: {job}"),
            }
        };
        let seconds = started.elapsed().as_secs_f64();
        if job["progress"]["shapes_exported"].as_u64() != Some((images * shapes) as u64) {
            bail!(
                "export {format} carried {} shapes",
                job["progress"]["shapes_exported"]
            );
        }
        let run = ExportRun {
            format: format.to_string(),
            seconds,
            zip_mb: job["result"]["size"].as_f64().unwrap_or(0.0) / 1e6,
            baseline_rss_mib: baseline,
            peak_rss_mib: peak,
            growth_mib: peak - baseline,
        };
        eprintln!("{run:?}");
        runs.push(run);
    }
    Ok(ExportBench {
        images,
        shapes: images * shapes,
        setup_seconds,
        runs,
    })
}
