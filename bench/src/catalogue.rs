//! How big the catalogue grows, and how long a node takes to load it at start-up, after a long
//! import job (one heartbeat a second) and many annotation saves.
//!
//! The ops go through the catalogue's own apply path, in process: a domain transaction over the
//! RocksDB records of group 0, its writes committed in one batch per op, as the state machine
//! commits an entry (without the Raft log, which is purged after snapshots and is not what
//! grows). "Kept before" is what the previous code stored for the same ops: every op's outcome
//! under its request id, forever, heartbeats included; it is measured by encoding those
//! outcomes, not estimated.

use std::time::Instant;

use anyhow::Context;
use rocksdb::WriteBatch;
use tessera_domain::annotation_sets::AnnotationSetOp;
use tessera_domain::annotations::Save;
use tessera_domain::catalog::{self, CatalogOp, CatalogOutcome, Role};
use tessera_domain::datasets::{DatasetImage, DatasetOp};
use tessera_domain::directory::Directory;
use tessera_domain::jobs::{JobKind, JobOp, Progress, Skip};
use tessera_domain::tasks::{Action, TaskOp};
use tessera_domain::{tasks, Records, Sha256, Tx};
use tessera_storage::{keys, Cf, Store};

/// The catalogue group.
const GROUP: u32 = 0;
const IMAGES: u64 = 1000;
const CHUNK: usize = 10;

pub struct Catalogue {
    store: Store,
    next_request: u64,
    /// Bytes of the request records the previous code kept (every outcome, forever).
    pub kept_before: u64,
    pub ops: u64,
}

/// A run's measurements.
pub struct Run {
    pub snapshots: Vec<Snapshot>,
    /// Bytes of the request records the previous code would hold after the same ops.
    pub kept_before: u64,
    pub ops: u64,
}

/// Sizes and start-up times at one point of the run.
pub struct Snapshot {
    pub label: String,
    pub total_bytes: u64,
    pub request_bytes: u64,
    pub records: u64,
    pub load_ms_prefixes: f64,
    pub load_ms_full_scan: f64,
}

impl Catalogue {
    pub fn open(dir: &std::path::Path) -> anyhow::Result<Catalogue> {
        Ok(Catalogue {
            store: Store::open(&dir.join("db")).context("open the store")?,
            next_request: 1,
            kept_before: 0,
            ops: 0,
        })
    }

    /// The catalogue's records, as the state machine and the API read them.
    pub fn records(&self) -> impl Records + '_ {
        self.store.records(GROUP)
    }

    /// Applies one op as the state machine does; `at_ms` is the proposer's clock.
    pub fn apply(&mut self, at_ms: u64, op: CatalogOp) -> anyhow::Result<CatalogOutcome> {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.next_request.to_be_bytes());
        self.next_request += 1;
        let records = self.store.records(GROUP);
        let mut tx = Tx::new(&records);
        let outcome = catalog::stage(&mut tx, &id, Some(at_ms), &op)?;
        let writes = tx.into_writes();
        let mut batch = WriteBatch::default();
        self.store.stage_writes(&mut batch, GROUP, writes);
        self.store.write(batch, false)?;
        let key = format!("request/{}", hex::encode(id));
        self.kept_before +=
            (keys::GROUP_LEN + key.len()) as u64 + bincode_len(&outcome).context("encode")?;
        self.ops += 1;
        Ok(outcome)
    }

    /// The catalogue's size and the time a node takes to load what it keeps in memory.
    pub fn measure(&self, label: &str) -> anyhow::Result<Snapshot> {
        let mut total_bytes = 0;
        let mut request_bytes = 0;
        let mut records = 0;
        for item in self.store.records(GROUP).scan(b"", None) {
            let (k, v) = item?;
            let size = (keys::GROUP_LEN + k.len() + v.len()) as u64;
            total_bytes += size;
            records += 1;
            if k.starts_with(b"request") {
                request_bytes += size;
            }
        }
        let started = Instant::now();
        let directory = Directory::default();
        directory.reload(&self.store.records(GROUP))?;
        let tx_records = self.store.records(GROUP);
        let mut tx = Tx::new(&tx_records);
        tasks::backfill_indexes(&mut tx)?;
        let load_ms_prefixes = started.elapsed().as_secs_f64() * 1e3;
        // What a start-up read before: the whole range, every record decoded or skipped.
        let started = Instant::now();
        let mut seen = 0u64;
        for item in self
            .store
            .scan_prefix(Cf::Catalog, &keys::group_start(GROUP), None)
        {
            let (k, v) = item?;
            seen += (k.len() + v.len()) as u64;
        }
        let load_ms_full_scan = started.elapsed().as_secs_f64() * 1e3;
        anyhow::ensure!(seen > 0, "the catalogue is empty");
        Ok(Snapshot {
            label: label.to_string(),
            total_bytes,
            request_bytes,
            records,
            load_ms_prefixes,
            load_ms_full_scan,
        })
    }
}

fn bincode_len<T: serde::Serialize>(value: &T) -> anyhow::Result<u64> {
    Ok(bincode::serialized_size(value)?)
}

fn sha(i: u64) -> Sha256 {
    Sha256::of(&i.to_be_bytes())
}

/// Runs the scenario: a set of `IMAGES` images in tasks of `CHUNK`, an import job beating
/// `beats` times with skipped files, then `saves` annotation saves; measured after the job,
/// after the saves, and after the leader's prune a day later.
pub fn run(dir: &std::path::Path, beats: u64, saves: u64) -> anyhow::Result<Run> {
    let mut c = Catalogue::open(dir)?;
    let mut clock = 1_000_000u64;
    let mut tick = |c: &mut Catalogue, op| {
        clock += 1;
        c.apply(clock, op)
    };
    tick(
        &mut c,
        CatalogOp::Dataset(DatasetOp::Create {
            name: "bench".into(),
            created_by: "mgr".into(),
            created_ms: 0,
        }),
    )?;
    let images: Vec<DatasetImage> = (0..IMAGES)
        .map(|i| DatasetImage {
            sha: sha(i),
            name: format!("{i}.jpg"),
            width: 1000,
            height: 1000,
            added_ms: 0,
        })
        .collect();
    tick(
        &mut c,
        CatalogOp::Dataset(DatasetOp::AddImages { id: 1, images }),
    )?;
    let labels = r##"[{"name":"car","color":"#ff0000","kinds":["rectangle","polygon"]}]"##;
    tick(
        &mut c,
        CatalogOp::AnnotationSet(AnnotationSetOp::Create {
            dataset_id: 1,
            name: "bench".into(),
            labels_json: labels.into(),
            created_by: "mgr".into(),
            created_ms: 0,
        }),
    )?;
    let chunks: Vec<Vec<Sha256>> = (0..IMAGES)
        .map(sha)
        .collect::<Vec<_>>()
        .chunks(CHUNK)
        .map(<[Sha256]>::to_vec)
        .collect();
    let annotators: Vec<String> = (0..10).map(|i| format!("ann{i}")).collect();
    let tasks = chunks.len() as u64;
    tick(
        &mut c,
        CatalogOp::Task(TaskOp::Split {
            set_id: 1,
            chunks,
            overlap: 1,
            assignees: annotators.clone(),
            by: "mgr".into(),
            at_ms: 0,
        }),
    )?;
    for task in 1..=tasks {
        let user = annotators[((task - 1) % 10) as usize].clone();
        tick(
            &mut c,
            CatalogOp::Task(TaskOp::Act {
                id: task,
                action: Action::Start,
                user,
                role: Role::Annotator,
                reason: None,
                at_ms: 0,
            }),
        )?;
    }
    let CatalogOutcome::Job(tessera_domain::jobs::JobOutcome::Job(job)) = tick(
        &mut c,
        CatalogOp::Job(JobOp::Create {
            kind: JobKind::Import,
            dataset: Some(1),
            annotation_set: None,
            created_by: "mgr".into(),
            at_ms: 0,
            node: 1,
            params: String::new(),
        }),
    )?
    else {
        anyhow::bail!("the job was not created");
    };
    for beat in 0..beats {
        let skipped = (0..2)
            .map(|k| Skip {
                name: format!("folder/file-{beat}-{k}.txt"),
                reason: "not an image".into(),
            })
            .collect();
        tick(
            &mut c,
            CatalogOp::Job(JobOp::Progress {
                id: job.id,
                node: 1,
                attempt: 1,
                progress: Progress::default(),
                skipped,
                at_ms: beat,
            }),
        )?;
    }
    let mut out = vec![c.measure(&format!("after a job of {beats} heartbeats"))?];
    let shapes = r#"[{"label":"car","kind":"rectangle","points":[[10,10],[200,150]]},{"label":"car","kind":"polygon","points":[[300,300],[400,300],[350,400]]}]"#;
    let mut versions = vec![0u64; IMAGES as usize];
    for n in 0..saves {
        let image = n % IMAGES;
        let task = image / CHUNK as u64 + 1;
        let outcome = tick(
            &mut c,
            CatalogOp::SaveAnnotation(Save {
                task,
                sha: sha(image),
                base: versions[image as usize],
                shapes: shapes.into(),
                user: annotators[((task - 1) % 10) as usize].clone(),
                role: Role::Annotator,
                at_ms: n,
            }),
        )?;
        anyhow::ensure!(
            matches!(
                outcome,
                CatalogOutcome::Annotation(tessera_domain::annotations::SaveOutcome::Saved(_))
            ),
            "save {n}: {outcome:?}"
        );
        versions[image as usize] += 1;
    }
    out.push(c.measure(&format!("after {saves} saves"))?);
    // A day later the catalogue leader prunes what it need not remember.
    let day_later = clock + tessera_domain::requests::RETENTION_MS + 1;
    let before_ms = day_later - tessera_domain::requests::RETENTION_MS;
    c.apply(day_later, CatalogOp::PruneRequests { before_ms })?;
    out.push(c.measure("after the leader's prune, a day later")?);
    Ok(Run {
        snapshots: out,
        kept_before: c.kept_before,
        ops: c.ops,
    })
}
