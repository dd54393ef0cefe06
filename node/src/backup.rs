//! `tessera backup --to DIR` and `tessera restore --from DIR` (see "Backup and restore" in
//! `docs/architecture.md`).
//!
//! A backup directory holds objects by hash, shared by every backup written into it, and one
//! folder per backup; a backup counts only once its manifest and then `LATEST` are written:
//!
//! ```text
//! DIR/objects/ab/<sha256>            the bytes of every object, content-addressed
//! DIR/backups/<id>/catalog.bin       the catalogue dump (frames of key, value)
//! DIR/backups/<id>/objects.jsonl     one object record per line (hash, metadata, references)
//! DIR/backups/<id>/manifest.json     what the backup holds, with the files' SHA-256
//! DIR/LATEST                         the id of the newest complete backup
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use bytes::{Bytes, BytesMut};
use futures_util::{stream, StreamExt, TryStreamExt};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use tessera_client::{form_encode, Client, Method, Reply};
use tessera_raft::backup::{put_frame, take_frames, MAX_RECORD};
use tessera_raft::storage::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::commands::{check, connect};
use crate::config::Config;

/// Objects fetched or restored at once.
const PARALLEL: usize = 8;
/// Object records asked for per page.
const PAGE: usize = 1000;
/// Catalogue records sent per restore request (one Raft entry each).
const CATALOG_BATCH: usize = 4 << 20;
/// Attempts of a request answered 503 (no leader yet, a peer restarting) before giving up.
const ATTEMPTS: u32 = 8;

/// What a backup holds; written last, so a backup without one is incomplete.
#[derive(Serialize, Deserialize)]
struct Manifest {
    format: u32,
    id: String,
    created_ms: u64,
    /// The catalogue log index the dump reflects: every write acknowledged before the backup
    /// started is in it.
    catalog_index: u64,
    shards: u32,
    catalog: FileSum,
    objects: FileSum,
    object_count: u64,
    object_bytes: u64,
}

/// A file of a backup and the SHA-256 of its contents.
#[derive(Serialize, Deserialize)]
struct FileSum {
    file: String,
    sha256: String,
    bytes: u64,
    records: u64,
}

/// One line of `objects.jsonl`: an object's record as the cluster lists it.
type ObjectLine = tessera_api::backup::BackupObject;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn object_path(dir: &Path, sha: &str) -> PathBuf {
    dir.join("objects").join(&sha[..2]).join(sha)
}

/// Sends a request, retrying while the cluster answers 503 or cannot be reached.
async fn send(client: &Client, method: Method, path: &str, body: Bytes) -> anyhow::Result<Reply> {
    let mut pause = Duration::from_millis(200);
    let mut attempt = 1;
    loop {
        let result = client.send(method.clone(), path, &[], body.clone()).await;
        let transient = match &result {
            Ok(reply) => reply.status == hyper::StatusCode::SERVICE_UNAVAILABLE,
            Err(_) => true,
        };
        if !transient || attempt == ATTEMPTS {
            return result.with_context(|| format!("{method} {path}"));
        }
        attempt += 1;
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(3));
    }
}

/// The SHA-256 and length of a file, read on the blocking pool; `None` if it does not exist.
async fn hash_file(path: &Path) -> anyhow::Result<Option<(Sha256, u64)>> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
        };
        let mut hasher = sha2::Sha256::new();
        let n = std::io::copy(&mut file, &mut hasher)
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(Some((Sha256(hasher.finalize().into()), n)))
    })
    .await?
}

/// Writes `bytes` to `path` through a temporary file, fsynced, then renamed into place.
async fn write_atomically(path: &Path, bytes: Bytes) -> anyhow::Result<()> {
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let path = owned;
        use std::io::Write;
        let parent = path.parent().context("a path without a folder")?;
        std::fs::create_dir_all(parent)?;
        let tmp = path.with_extension("tmp");
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        Ok::<_, anyhow::Error>(())
    })
    .await?
    .with_context(|| format!("writing {}", path.display()))
}

/// The nodes holding each shard, leader first, from `GET /api/v1/cluster`.
async fn shard_replicas(client: &Client) -> anyhow::Result<Vec<Vec<String>>> {
    let reply = send(client, Method::GET, "/api/v1/cluster", Bytes::new()).await?;
    check(&reply).context("reading the cluster's status")?;
    let status = reply.json();
    let http_of = |id: u64| {
        status["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["id"].as_u64() == Some(id))
            .and_then(|n| n["http"].as_str())
            .map(str::to_owned)
    };
    let shards = status["shards"].as_u64().context("status without shards")? as usize;
    let mut out = vec![Vec::new(); shards];
    for group in status["groups"].as_array().into_iter().flatten() {
        let Some(shard) = group["shard"].as_u64().map(|s| s as usize) else {
            continue;
        };
        let Some(nodes) = out.get_mut(shard) else {
            continue;
        };
        let leader = group["leader"].as_u64();
        let mut ids: Vec<u64> = group["voters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_u64())
            .collect();
        ids.sort_by_key(|id| Some(*id) != leader);
        nodes.extend(ids.into_iter().filter_map(http_of));
    }
    Ok(out)
}

/// `tessera backup --to DIR`.
pub async fn backup(config: &Config, node: Option<&str>, dir: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let client = connect(config, node)
        .await?
        .with_timeout(Duration::from_secs(300));
    let id = now_ms().to_string();
    let folder = dir.join("backups").join(&id);
    tokio::fs::create_dir_all(&folder)
        .await
        .with_context(|| format!("creating {}", folder.display()))?;

    // 1. The catalogue, as of one point T.
    let (catalog_index, catalog) = dump_catalog(&client, &folder.join("catalog.bin")).await?;
    eprintln!(
        "catalogue: {} records ({} bytes) at index {catalog_index}",
        catalog.records, catalog.bytes
    );

    // 2. Every shard's objects, listed after T. Shards are contiguous hash ranges and pages
    //    come in hash order, so the listed hashes arrive sorted.
    let replicas = shard_replicas(&client).await?;
    let partial = folder.join("objects.partial");
    let mut lines = Lines::create(&partial).await?;
    let mut listed: Vec<Held> = Vec::new();
    let mut tally = Tally::default();
    for (shard, nodes) in replicas.iter().enumerate() {
        let mut cursor: Option<String> = None;
        loop {
            let page = list_page(&client, nodes, shard, cursor.as_deref()).await?;
            let items: Vec<ObjectLine> = serde_json::from_value(page["items"].clone())
                .context("a page of object records")?;
            let saved: Vec<Option<(ObjectLine, Fetched)>> = stream::iter(items)
                .map(|item| save_object(&client, dir, item))
                .buffered(PARALLEL)
                .try_collect()
                .await?;
            for saved in saved {
                let Some((item, fetched)) = saved else {
                    tally.vanished += 1;
                    continue;
                };
                tally.count(&fetched, item.size);
                listed.push(Held {
                    sha: Sha256::parse_hex(&item.sha256).context("a listed hash")?,
                    in_datasets: 0,
                });
                lines.push(&item).await?;
            }
            cursor = page["next_cursor"].as_str().map(str::to_owned);
            if cursor.is_none() {
                break;
            }
        }
    }
    lines.finish("objects.partial", 0).await?;
    listed.sort_unstable_by_key(|h| h.sha);

    // 3. Every object a dataset holds at T must be in the backup: one deleted after T and
    //    before it was listed (or fetched) is taken as it is now, or the backup fails. And no
    //    count may be below the dataset references at T (an image removed from a dataset
    //    after T), or the restored cluster could delete an object a restored dataset holds.
    let unlisted = count_dataset_references(&folder.join("catalog.bin"), &mut listed).await?;
    let lines_path = folder.join("objects.jsonl");
    let mut lines = Lines::create(&lines_path).await?;
    let mut raised = 0;
    let mut listed_lines = Box::pin(object_lines_of(&partial).await?);
    while let Some(item) = listed_lines.next().await {
        let mut item = item?;
        let sha = Sha256::parse_hex(&item.sha256).context("a listed hash")?;
        if let Ok(i) = listed.binary_search_by_key(&sha, |h| h.sha) {
            if u64::from(listed[i].in_datasets) > item.refcount {
                item.refcount = u64::from(listed[i].in_datasets);
                raised += 1;
            }
        }
        lines.push(&item).await?;
    }
    for (sha, in_datasets) in unlisted {
        let gone = || {
            format!("object {sha} is in a dataset at catalogue index {catalog_index} but was deleted while the backup ran; run the backup again")
        };
        let line = current_record(&client, &sha).await?.with_context(gone)?;
        let (mut item, fetched) = save_object(&client, dir, line).await?.with_context(gone)?;
        item.refcount = item.refcount.max(u64::from(in_datasets));
        tally.count(&fetched, item.size);
        lines.push(&item).await?;
    }
    let objects = lines.finish("objects.jsonl", tally.objects).await?;
    tokio::fs::remove_file(&partial).await?;
    if raised > 0 {
        eprintln!("{raised} reference count(s) raised to the datasets holding the object at T");
    }

    // 4. The manifest, then LATEST: only now does the backup count.
    let manifest = Manifest {
        format: 1,
        id: id.clone(),
        created_ms: now_ms(),
        catalog_index,
        shards: replicas.len() as u32,
        catalog,
        objects,
        object_count: tally.objects,
        object_bytes: tally.bytes,
    };
    write_atomically(
        &folder.join("manifest.json"),
        serde_json::to_vec_pretty(&manifest)?.into(),
    )
    .await?;
    write_atomically(&dir.join("LATEST"), Bytes::from(format!("{id}\n"))).await?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "backup {id} in {}: catalogue {} records at index {catalog_index}; objects {} ({} new, {} reused, {} vanished while listed), {:.1} MB, {:.1} MB written; {secs:.1} s ({:.1} MB/s)",
        dir.display(),
        manifest.catalog.records,
        tally.objects,
        tally.new,
        tally.reused,
        tally.vanished,
        tally.bytes as f64 / 1e6,
        tally.written as f64 / 1e6,
        tally.bytes as f64 / 1e6 / secs.max(1e-3),
    );
    Ok(())
}

/// What a backup did with the objects.
#[derive(Default)]
struct Tally {
    objects: u64,
    new: u64,
    reused: u64,
    vanished: u64,
    bytes: u64,
    written: u64,
}

impl Tally {
    fn count(&mut self, fetched: &Fetched, size: u64) {
        self.objects += 1;
        self.bytes += size;
        match fetched {
            Fetched::New => {
                self.new += 1;
                self.written += size;
            }
            Fetched::Reused => self.reused += 1,
        }
    }
}

enum Fetched {
    New,
    Reused,
}

/// Streams the catalogue dump into `path`; its log index and the file's sum.
async fn dump_catalog(client: &Client, path: &Path) -> anyhow::Result<(u64, FileSum)> {
    let (status, headers, mut body) = client
        .get_streaming("/api/v1/backup/catalog")
        .await
        .context("asking for the catalogue")?;
    if !status.is_success() {
        let raw = body.collect().await?.to_bytes();
        let reply = Reply {
            status,
            headers,
            body: raw,
        };
        check(&reply).context("dumping the catalogue")?;
        bail!("dumping the catalogue: {status}");
    }
    let index = headers
        .get(tessera_api::backup::CATALOG_INDEX_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .context("the catalogue dump names no index")?;
    // Password hashes and sessions are in it: readable by its owner only.
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .await
        .with_context(|| format!("creating {}", path.display()))?;
    let mut hasher = sha2::Sha256::new();
    let (mut bytes, mut records) = (0u64, 0u64);
    let mut pending = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.context("reading the catalogue dump")?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        hasher.update(&data);
        bytes += data.len() as u64;
        file.write_all(&data).await?;
        pending.extend_from_slice(&data);
        records += take_frames(&mut pending, MAX_RECORD)
            .map_err(anyhow::Error::msg)?
            .len() as u64;
    }
    if !pending.is_empty() {
        bail!("the catalogue dump was cut off inside a record");
    }
    file.sync_all().await?;
    Ok((
        index,
        FileSum {
            file: "catalog.bin".into(),
            sha256: hex::encode(hasher.finalize()),
            bytes,
            records,
        },
    ))
}

/// One page of a shard's object records from the first of `nodes` that answers.
async fn list_page(
    client: &Client,
    nodes: &[String],
    shard: usize,
    cursor: Option<&str>,
) -> anyhow::Result<serde_json::Value> {
    let mut path = format!("/api/v1/backup/objects?shard={shard}&limit={PAGE}");
    if let Some(cursor) = cursor {
        path.push_str(&format!("&cursor={cursor}"));
    }
    let mut last = None;
    for node in nodes {
        match send(&client.with_base(node), Method::GET, &path, Bytes::new()).await {
            Ok(reply) if reply.status.is_success() => return Ok(reply.json()),
            Ok(reply) => last = Some(check(&reply).err().unwrap_or_else(|| anyhow::anyhow!("?"))),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no node holds shard {shard}")))
        .with_context(|| format!("listing the objects of shard {shard}"))
}

/// Makes sure `DIR/objects/../<sha>` holds the object's bytes: kept if already there and
/// intact, else fetched and checked. `None` if the object was deleted since it was listed.
async fn save_object(
    client: &Client,
    dir: &Path,
    item: ObjectLine,
) -> anyhow::Result<Option<(ObjectLine, Fetched)>> {
    let sha = Sha256::parse_hex(&item.sha256).context("a listed hash")?;
    let path = object_path(dir, &item.sha256);
    if let Some((got, len)) = hash_file(&path).await? {
        if got == sha && len == item.size {
            return Ok(Some((item, Fetched::Reused)));
        }
    }
    let mut pause = Duration::from_millis(200);
    let mut attempt = 0;
    loop {
        attempt += 1;
        match fetch_once(client, &sha, &path).await? {
            Fetch::Stored => return Ok(Some((item, Fetched::New))),
            Fetch::Missing => return Ok(None),
            Fetch::Retry(why) if attempt < ATTEMPTS => {
                tracing::debug!(%sha, why, "fetching again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(3));
            }
            Fetch::Retry(why) => bail!("fetching object {sha}: {why}"),
        }
    }
}

/// How one attempt at fetching an object ended.
enum Fetch {
    Stored,
    Missing,
    /// The cluster answered 503 or the transfer broke: worth another attempt.
    Retry(String),
}

/// Streams object `sha` into `path` through a temporary file (fsynced, then renamed), checking
/// its hash on the way: one object never sits in memory whole.
async fn fetch_once(client: &Client, sha: &Sha256, path: &Path) -> anyhow::Result<Fetch> {
    let (status, headers, mut body) = match client.get_streaming(&format!("/objects/{sha}")).await {
        Ok(answer) => answer,
        Err(e) => return Ok(Fetch::Retry(e.to_string())),
    };
    if status == hyper::StatusCode::NOT_FOUND {
        return Ok(Fetch::Missing);
    }
    if status == hyper::StatusCode::SERVICE_UNAVAILABLE {
        return Ok(Fetch::Retry(status.to_string()));
    }
    if !status.is_success() {
        let body = body.collect().await?.to_bytes();
        check(&Reply {
            status,
            headers,
            body,
        })
        .with_context(|| format!("fetching object {sha}"))?;
        bail!("fetching object {sha}: {status}");
    }
    let parent = path.parent().context("a path without a folder")?;
    tokio::fs::create_dir_all(parent).await?;
    let tmp = path.with_extension("tmp");
    let mut file = tokio::fs::File::create(&tmp)
        .await
        .with_context(|| format!("creating {}", tmp.display()))?;
    let mut hasher = sha2::Sha256::new();
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => return Ok(Fetch::Retry(e.to_string())),
        };
        if let Ok(data) = frame.into_data() {
            hasher.update(&data);
            file.write_all(&data).await?;
        }
    }
    let got = Sha256(hasher.finalize().into());
    if got != *sha {
        bail!("object {sha} came back with bytes that hash to {got}");
    }
    file.sync_all().await?;
    tokio::fs::rename(&tmp, path)
        .await
        .with_context(|| format!("renaming {}", tmp.display()))?;
    Ok(Fetch::Stored)
}

/// The record of an object as the cluster holds it now; `None` if it does not exist.
async fn current_record(client: &Client, sha: &Sha256) -> anyhow::Result<Option<ObjectLine>> {
    let reply = send(
        client,
        Method::GET,
        &format!("/api/v1/objects/{sha}"),
        Bytes::new(),
    )
    .await?;
    if reply.status == hyper::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    check(&reply)?;
    Ok(Some(
        serde_json::from_slice(&reply.body)
            .with_context(|| format!("the record of object {sha}"))?,
    ))
}

/// A listed object and how many dataset images of the catalogue dump hold it.
struct Held {
    sha: Sha256,
    in_datasets: u32,
}

/// Counts the dataset images of a catalogue dump (the references that hold objects; their keys
/// end in the hash) into `listed` (sorted by hash); returns the objects they hold that are not
/// listed, with their counts, by hash.
async fn count_dataset_references(
    catalog: &Path,
    listed: &mut [Held],
) -> anyhow::Result<Vec<(Sha256, u32)>> {
    let mut unlisted = Vec::new();
    read_frames(catalog, |key, _| {
        if let Some(rest) = key.strip_prefix(b"dataset-image/") {
            let hex = rest.get(rest.len().saturating_sub(64)..).unwrap_or(rest);
            if let Some(sha) = std::str::from_utf8(hex).ok().and_then(Sha256::parse_hex) {
                match listed.binary_search_by_key(&sha, |h| h.sha) {
                    Ok(i) => listed[i].in_datasets += 1,
                    Err(_) => unlisted.push(sha),
                }
            }
        }
        Ok(())
    })
    .await?;
    unlisted.sort_unstable();
    let mut counted: Vec<(Sha256, u32)> = Vec::new();
    for sha in unlisted {
        match counted.last_mut() {
            Some((last, n)) if *last == sha => *n += 1,
            _ => counted.push((sha, 1)),
        }
    }
    Ok(counted)
}

/// `objects.jsonl` as a backup writes it, summed as it goes.
struct Lines {
    file: tokio::fs::File,
    hasher: sha2::Sha256,
    bytes: u64,
}

impl Lines {
    async fn create(path: &Path) -> anyhow::Result<Lines> {
        let file = tokio::fs::File::create(path)
            .await
            .with_context(|| format!("creating {}", path.display()))?;
        Ok(Lines {
            file,
            hasher: sha2::Sha256::new(),
            bytes: 0,
        })
    }

    async fn push(&mut self, item: &ObjectLine) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(item)?;
        line.push(b'\n');
        self.hasher.update(&line);
        self.bytes += line.len() as u64;
        self.file.write_all(&line).await?;
        Ok(())
    }

    async fn finish(mut self, name: &str, records: u64) -> anyhow::Result<FileSum> {
        self.file.flush().await?;
        self.file.sync_all().await?;
        Ok(FileSum {
            file: name.into(),
            sha256: hex::encode(self.hasher.finalize()),
            bytes: self.bytes,
            records,
        })
    }
}

/// Calls `each` with every record of a dump file, reading it in pieces.
async fn read_frames(
    path: &Path,
    mut each: impl FnMut(&[u8], &[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    let mut pending = BytesMut::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        pending.extend_from_slice(&buf[..n]);
        for (key, value) in take_frames(&mut pending, MAX_RECORD)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        {
            each(&key, &value)?;
        }
    }
    if !pending.is_empty() {
        bail!("{} ends inside a record", path.display());
    }
    Ok(())
}

/// The id in `DIR/LATEST` and that backup's manifest.
async fn latest(dir: &Path) -> anyhow::Result<(PathBuf, Manifest)> {
    let latest = dir.join("LATEST");
    let id = tokio::fs::read_to_string(&latest)
        .await
        .with_context(|| format!("no complete backup in {} (reading LATEST)", dir.display()))?;
    let folder = dir.join("backups").join(id.trim());
    let raw = tokio::fs::read(folder.join("manifest.json"))
        .await
        .with_context(|| format!("reading {}", folder.join("manifest.json").display()))?;
    let manifest: Manifest = serde_json::from_slice(&raw).context("manifest.json")?;
    if manifest.format != 1 {
        bail!("backup format {} is not known here", manifest.format);
    }
    Ok((folder, manifest))
}

/// Checks a backup file against the sum its manifest recorded.
async fn verify_file(folder: &Path, sum: &FileSum) -> anyhow::Result<()> {
    let path = folder.join(&sum.file);
    match hash_file(&path).await? {
        Some((sha, len)) if sha.to_string() == sum.sha256 && len == sum.bytes => Ok(()),
        Some(_) => bail!(
            "{} is damaged (its SHA-256 differs from the manifest's); nothing was restored",
            path.display()
        ),
        None => bail!("{} is missing; nothing was restored", path.display()),
    }
}

/// The object records of a backup, read line by line.
async fn object_lines(
    folder: &Path,
) -> anyhow::Result<impl futures_util::Stream<Item = anyhow::Result<ObjectLine>>> {
    object_lines_of(&folder.join("objects.jsonl")).await
}

/// The object records of a file of them, read line by line.
async fn object_lines_of(
    path: &Path,
) -> anyhow::Result<impl futures_util::Stream<Item = anyhow::Result<ObjectLine>>> {
    use tokio::io::AsyncBufReadExt;
    let file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    let lines = tokio::io::BufReader::new(file).lines();
    Ok(stream::try_unfold(lines, |mut lines| async move {
        loop {
            match lines.next_line().await? {
                Some(line) if line.is_empty() => continue,
                Some(line) => {
                    let item = serde_json::from_str(&line).context("a line of objects.jsonl")?;
                    return Ok(Some((item, lines)));
                }
                None => return Ok(None),
            }
        }
    }))
}

/// Damaged or missing object files a restore found: how many, and the first few.
#[derive(Default)]
struct Damaged {
    count: usize,
    first: Vec<String>,
}

/// `tessera restore --from DIR`: the latest complete backup of DIR into a new cluster.
pub async fn restore(config: &Config, node: Option<&str>, dir: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let (folder, manifest) = latest(dir).await?;
    verify_file(&folder, &manifest.catalog).await?;
    verify_file(&folder, &manifest.objects).await?;
    // Every object file is checked before anything is written: a damaged backup restores
    // nothing rather than a cluster with holes.
    let damaged = object_lines(&folder)
        .await?
        .map_ok(|line| async move {
            let path = object_path(dir, &line.sha256);
            let ok = matches!(hash_file(&path).await?, Some((sha, len)) if sha.to_string() == line.sha256 && len == line.size);
            Ok::<_, anyhow::Error>((!ok).then(|| path.display().to_string()))
        })
        .try_buffer_unordered(PARALLEL)
        .try_fold(Damaged::default(), |mut d, bad| async move {
            if let Some(path) = bad {
                d.count += 1;
                if d.first.len() < 5 {
                    d.first.push(path);
                }
            }
            Ok(d)
        })
        .await?;
    if damaged.count > 0 {
        bail!(
            "{} object file(s) are missing or damaged (content does not match the hash): {}; nothing was restored",
            damaged.count,
            damaged.first.join(", ")
        );
    }
    let verified = started.elapsed();

    let client = connect(config, node)
        .await?
        .with_timeout(Duration::from_secs(300));
    // Claims the cluster for this backup (or finds it refused) before any object is written.
    post_catalog(&client, &manifest.id, Bytes::new(), false).await?;

    let (objects, already) = object_lines(&folder)
        .await?
        .map_ok(|line| {
            let client = &client;
            async move { restore_object(client, dir, &line).await }
        })
        .try_buffer_unordered(PARALLEL)
        .try_fold((0u64, 0u64), |(n, already), sent| async move {
            Ok((n + 1, already + u64::from(!sent)))
        })
        .await?;

    let sent = send_catalog(&client, &manifest.id, &folder.join("catalog.bin")).await?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "restored backup {} (catalogue index {}) from {}: {} objects ({} already there), {:.1} MB; {sent} catalogue records; {secs:.1} s ({:.1} s verifying, {:.1} MB/s)",
        manifest.id,
        manifest.catalog_index,
        dir.display(),
        objects,
        already,
        manifest.object_bytes as f64 / 1e6,
        verified.as_secs_f64(),
        manifest.object_bytes as f64 / 1e6 / secs.max(1e-3),
    );
    Ok(())
}

/// Sends the records of a dump file in batches of about [`CATALOG_BATCH`], reading it in
/// pieces; the last batch says `done`. How many records were written.
async fn send_catalog(client: &Client, backup: &str, path: &Path) -> anyhow::Result<u64> {
    let mut file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    let (mut pending, mut batch) = (BytesMut::new(), BytesMut::new());
    let mut full: Option<Bytes> = None;
    let mut buf = vec![0u8; 1 << 20];
    let mut sent = 0;
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        pending.extend_from_slice(&buf[..n]);
        for (key, value) in take_frames(&mut pending, MAX_RECORD)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        {
            put_frame(&mut batch, &key, &value);
            if batch.len() >= CATALOG_BATCH {
                // One batch is held back, so that the last one sent can say `done`.
                if let Some(ready) = full.replace(std::mem::take(&mut batch).freeze()) {
                    sent += post_catalog(client, backup, ready, false).await?;
                }
            }
        }
    }
    if !pending.is_empty() {
        bail!("{} ends inside a record", path.display());
    }
    if !batch.is_empty() || full.is_none() {
        if let Some(ready) = full.replace(batch.freeze()) {
            sent += post_catalog(client, backup, ready, false).await?;
        }
    }
    if let Some(last) = full {
        sent += post_catalog(client, backup, last, true).await?;
    }
    Ok(sent)
}

/// Sends one chunk of catalogue records; how many were written.
async fn post_catalog(
    client: &Client,
    backup: &str,
    chunk: Bytes,
    done: bool,
) -> anyhow::Result<u64> {
    let path = format!(
        "/api/v1/backup/catalog?backup={}&done={done}",
        form_encode(backup)
    );
    let reply = send(client, Method::POST, &path, chunk).await?;
    check(&reply).context("restoring the catalogue")?;
    Ok(reply.json()["written"].as_u64().unwrap_or(0))
}

/// Restores one object unless the cluster holds it with its count already; whether it sent it.
async fn restore_object(client: &Client, dir: &Path, line: &ObjectLine) -> anyhow::Result<bool> {
    let sha = Sha256::parse_hex(&line.sha256).context("a hash in objects.jsonl")?;
    if let Some(now) = current_record(client, &sha).await? {
        if now.refcount >= line.refcount {
            return Ok(false);
        }
    }
    let path = object_path(dir, &line.sha256);
    let bytes = tokio::fs::read(&path)
        .await
        .with_context(|| format!("reading {}", path.display()))?;
    let query = format!(
        "content_type={}&width={}&height={}&refcount={}&created_ms={}",
        form_encode(&line.content_type),
        line.width,
        line.height,
        line.refcount,
        line.created_ms
    );
    let reply = send(
        client,
        Method::PUT,
        &format!("/api/v1/backup/objects/{sha}?{query}"),
        Bytes::from(bytes),
    )
    .await?;
    check(&reply).with_context(|| format!("restoring object {sha}"))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dataset_references_are_counted_per_object() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (a, b, c) = (Sha256([1; 32]), Sha256([2; 32]), Sha256([3; 32]));
        let mut dump = BytesMut::new();
        for (dataset, sha) in [(1, a), (1, c), (2, a), (3, c), (4, c)] {
            let key = format!("dataset-image/{dataset:016x}/{sha}");
            put_frame(&mut dump, key.as_bytes(), b"");
        }
        put_frame(&mut dump, format!("task/{b}").as_bytes(), b"");
        let path = dir.path().join("catalog.bin");
        std::fs::write(&path, &dump).expect("write");
        let mut listed = vec![
            Held {
                sha: a,
                in_datasets: 0,
            },
            Held {
                sha: b,
                in_datasets: 0,
            },
        ];
        let unlisted = count_dataset_references(&path, &mut listed)
            .await
            .expect("count");
        assert_eq!(
            listed.iter().map(|h| h.in_datasets).collect::<Vec<_>>(),
            [2, 0]
        );
        assert_eq!(unlisted, [(c, 3)]);
    }
}
