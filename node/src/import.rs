//! `tessera import --dataset NAME PATH...`: files, folders and archives into a dataset, with a
//! progress bar.
//!
//! Images are hashed here and uploaded only when the cluster does not have them yet, then
//! added to the dataset in batches (adding is idempotent), so running the same command again
//! after an interruption skips what is done. Everything else (archives, videos, PDFs, office
//! documents, and GIFs, which may be animated) goes to the server's import jobs, whose progress
//! is shown until they end.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use hyper::Method;
use serde_json::{json, Value};
use sha2::Digest;
use tessera_client::{Client, Reply};
use tessera_storage::probe_image;

use crate::commands::check;

/// Images added to the dataset per request.
const BATCH: usize = 200;

/// One file to import, under the name it gets in the dataset.
struct Item {
    path: PathBuf,
    name: String,
    size: u64,
}

/// Every file under `paths`: a folder's files are named by their path inside it.
fn collect(paths: &[PathBuf]) -> anyhow::Result<Vec<Item>> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<Item>) -> anyhow::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            let kind = entry.file_type()?;
            if kind.is_dir() {
                walk(&entry.path(), &format!("{name}/"), out)?;
            } else if kind.is_file() {
                out.push(Item {
                    path: entry.path(),
                    name,
                    size: entry.metadata()?.len(),
                });
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
        if meta.is_dir() {
            walk(path, "", &mut out)?;
        } else {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.display().to_string());
            out.push(Item {
                path: path.clone(),
                name,
                size: meta.len(),
            });
        }
    }
    Ok(out)
}

/// The dataset called `name`, created if there is none.
async fn dataset(client: &Client, name: &str) -> anyhow::Result<u64> {
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/datasets?limit=1000&cursor={c}"),
            None => "/api/v1/datasets?limit=1000".into(),
        };
        let reply = client.get(&path).await?;
        check(&reply)?;
        let page = reply.json();
        for d in page["items"].as_array().into_iter().flatten() {
            if d["name"] == name {
                return d["id"].as_u64().context("dataset id");
            }
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let reply = send_json(client, "/api/v1/datasets", json!({ "name": name })).await?;
    check(&reply)?;
    reply.json()["id"].as_u64().context("dataset id")
}

async fn send_json(client: &Client, path: &str, body: Value) -> anyhow::Result<Reply> {
    Ok(client
        .send(
            Method::POST,
            path,
            &[("content-type", "application/json")],
            Bytes::from(body.to_string()),
        )
        .await?)
}

/// Draws the progress line on stderr.
struct Bar {
    files: usize,
    bytes: u64,
}

impl Bar {
    fn draw(&self, done_files: usize, done_bytes: u64, note: &str) {
        let width = 30;
        let filled = (done_bytes.min(self.bytes) * width as u64)
            .checked_div(self.bytes)
            .map_or(width, |f| f as usize);
        eprint!(
            "\r[{}{}] {done_files}/{} files  {:.1}/{:.1} MB  {note:<40.40}",
            "=".repeat(filled),
            " ".repeat(width - filled),
            self.files,
            done_bytes as f64 / 1e6,
            self.bytes as f64 / 1e6,
        );
        let _ = std::io::stderr().flush();
    }
}

pub async fn import(client: &Client, name: &str, paths: &[PathBuf]) -> anyhow::Result<()> {
    if paths.is_empty() {
        bail!("usage: tessera import --dataset NAME PATH...");
    }
    let items = collect(paths)?;
    let id = dataset(client, name).await?;
    let bar = Bar {
        files: items.len(),
        bytes: items.iter().map(|i| i.size).sum(),
    };
    let (mut done_files, mut done_bytes) = (0, 0u64);
    let (mut uploaded, mut present, mut added, mut skipped) = (0u64, 0u64, 0u64, 0u64);
    let mut batch: Vec<Value> = Vec::new();
    for item in &items {
        bar.draw(done_files, done_bytes, &item.name);
        let bytes = tokio::fs::read(&item.path)
            .await
            .with_context(|| format!("reading {}", item.path.display()))?;
        // GIFs go through the server's import, which keeps an animation's first frame.
        if probe_image(&bytes).is_ok() && !bytes.starts_with(b"GIF8") {
            let sha = hex::encode(sha2::Sha256::digest(&bytes));
            let head = client
                .send(Method::HEAD, &format!("/objects/{sha}"), &[], Bytes::new())
                .await?;
            if head.status == 404 {
                let reply = client.put_object(Bytes::from(bytes)).await?;
                check(&reply).with_context(|| format!("uploading {}", item.name))?;
                uploaded += 1;
            } else {
                check(&head)?;
                present += 1;
            }
            batch.push(json!({ "sha256": sha, "name": item.name }));
            if batch.len() == BATCH {
                added += add(client, id, std::mem::take(&mut batch)).await?;
            }
        } else {
            let job = server_import(client, id, item, bytes, &bar, done_files, done_bytes).await?;
            added += job["progress"]["images_added"].as_u64().unwrap_or(0);
            skipped += job["progress"]["skipped"].as_u64().unwrap_or(0);
        }
        done_files += 1;
        done_bytes += item.size;
    }
    if !batch.is_empty() {
        added += add(client, id, batch).await?;
    }
    bar.draw(done_files, done_bytes, "done");
    eprintln!();
    println!(
        "dataset {name} (id {id}): {added} images added; {uploaded} uploaded, {present} already \
         stored, {skipped} files skipped"
    );
    Ok(())
}

/// Adds a batch of uploaded images; returns how many were new to the dataset.
async fn add(client: &Client, id: u64, images: Vec<Value>) -> anyhow::Result<u64> {
    let reply = send_json(
        client,
        &format!("/api/v1/datasets/{id}/images"),
        json!({ "images": images }),
    )
    .await?;
    check(&reply)?;
    Ok(reply.json()["added"]
        .as_array()
        .map(|a| a.len() as u64)
        .unwrap_or(0))
}

/// Runs a server-side import of one file and follows its job to the end.
async fn server_import(
    client: &Client,
    id: u64,
    item: &Item,
    bytes: Vec<u8>,
    bar: &Bar,
    done_files: usize,
    done_bytes: u64,
) -> anyhow::Result<Value> {
    let file_name: String = item
        .name
        .rsplit('/')
        .next()
        .unwrap_or("upload")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let path = format!("/api/v1/datasets/{id}/imports?filename={file_name}");
    let reply = client
        .send(Method::POST, &path, &[], Bytes::from(bytes))
        .await?;
    check(&reply).with_context(|| format!("importing {}", item.name))?;
    let job_id = reply.json()["id"].as_u64().context("job id")?;
    loop {
        let job = client.get(&format!("/api/v1/jobs/{job_id}")).await?;
        check(&job)?;
        let job = job.json();
        let p = &job["progress"];
        bar.draw(
            done_files,
            done_bytes,
            &format!(
                "{}: {} images, {} skipped",
                item.name, p["images_added"], p["skipped"]
            ),
        );
        match job["state"].as_str() {
            Some("running") => tokio::time::sleep(Duration::from_millis(500)).await,
            Some("succeeded") => return Ok(job),
            other => bail!(
                "import of {} ended {}: {}",
                item.name,
                other.unwrap_or("?"),
                job["error"].as_str().unwrap_or("")
            ),
        }
    }
}
