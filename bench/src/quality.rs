//! What label quality costs: saves with the quality marks against saves without, and the
//! quality worker's recompute of every image, then of a few re-saved ones.
//!
//! Runs in process through the catalogue's own apply path ([`Catalogue::apply`]: a domain
//! transaction over group 0's RocksDB records, committed in one batch per op), so it measures
//! the work a replica does for each entry, without the Raft round trip that is the same with or
//! without quality. The worker's part is measured as the worker does it: find marked images,
//! assess each from the records, apply the batch of records.

use std::time::Instant;

use tessera_domain::annotation_sets::AnnotationSetOp;
use tessera_domain::annotations::Save;
use tessera_domain::catalog::{CatalogOp, CatalogOutcome, Role};
use tessera_domain::datasets::{DatasetImage, DatasetOp};
use tessera_domain::image_quality;
use tessera_domain::quality_op::{QualityOp, QualityOutcome};
use tessera_domain::tasks::{Action, TaskOp, TaskOutcome};
use tessera_domain::Sha256;

use crate::catalogue::Catalogue;

/// Images per task.
const CHUNK: usize = 20;
/// Images the control set (overlap 1, nothing marked) saves, at most.
const CONTROL: usize = 10_000;
/// Share of images re-saved to measure an incremental recompute.
const RESAVED: f64 = 0.01;

/// A run's figures; times of single applies in µs.
#[derive(Debug)]
pub struct Run {
    pub images: usize,
    pub shapes: usize,
    pub saves: usize,
    pub with_marks_p50_us: f64,
    pub with_marks_p99_us: f64,
    pub control_saves: usize,
    pub without_marks_p50_us: f64,
    pub without_marks_p99_us: f64,
    pub full_seconds: f64,
    pub assessed: u64,
    pub incremental_images: u64,
    pub incremental_seconds: f64,
    /// Mean agreement over the images, as a sanity figure (the careless annotator lowers it).
    pub mean_agreement: f64,
}

fn sha(i: usize) -> Sha256 {
    Sha256::of(&(i as u64).to_be_bytes())
}

/// A cheap deterministic jitter in [-3, 3] px.
fn jitter(seed: u64) -> f64 {
    let h = Sha256::of(&seed.to_be_bytes()).prefix_u64();
    (h % 7) as f64 - 3.0
}

/// Annotator `who`'s `shapes` boxes on image `i` (a grid on a 2000 × 2000 image). Annotator 2
/// is careless: it misses every fifth box and draws one where there is nothing.
fn drawing(i: usize, who: usize, shapes: usize, round: u64) -> String {
    let mut out = Vec::with_capacity(shapes + 1);
    for s in 0..shapes {
        if who == 2 && s % 5 == 0 {
            continue;
        }
        let (col, row) = ((s % 5) as f64, (s / 5) as f64);
        let seed = ((i * 31 + s) * 7 + who) as u64 ^ (round << 40);
        let (x, y) = (
            50.0 + col * 380.0 + jitter(seed),
            50.0 + row * 90.0 + jitter(seed + 1),
        );
        out.push(format!(
            r#"{{"label":"car","kind":"rectangle","points":[[{x},{y}],[{},{}]]}}"#,
            x + 300.0,
            y + 70.0
        ));
    }
    if who == 2 {
        out.push(r#"{"label":"car","kind":"rectangle","points":[[1900,1900],[1990,1990]]}"#.into());
    }
    format!("[{}]", out.join(","))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

struct Bench {
    c: Catalogue,
    clock: u64,
}

impl Bench {
    fn apply(&mut self, op: CatalogOp) -> anyhow::Result<CatalogOutcome> {
        self.clock += 1;
        self.c.apply(self.clock, op)
    }

    /// Splits set `set` into tasks of [`CHUNK`] with `overlap`, assigned round-robin to
    /// `annotators`, starts them, and returns `(task, annotator index, images)`.
    fn tasks(
        &mut self,
        set: u64,
        images: usize,
        overlap: u32,
        annotators: &[String],
    ) -> anyhow::Result<Vec<(u64, usize, Vec<usize>)>> {
        let chunks: Vec<Vec<usize>> = (0..images)
            .collect::<Vec<_>>()
            .chunks(CHUNK)
            .map(<[usize]>::to_vec)
            .collect();
        let op = CatalogOp::Task(TaskOp::Split {
            set_id: set,
            chunks: chunks
                .iter()
                .map(|c| c.iter().map(|&i| sha(i)).collect())
                .collect(),
            overlap,
            assignees: annotators.to_vec(),
            by: "mgr".into(),
            at_ms: 0,
        });
        let CatalogOutcome::Task(TaskOutcome::Created(ids)) = self.apply(op)? else {
            anyhow::bail!("the split was refused");
        };
        let mut out = Vec::with_capacity(ids.len());
        for (n, id) in ids.into_iter().enumerate() {
            let who = n % annotators.len();
            let images = chunks[n / overlap as usize].clone();
            self.apply(CatalogOp::Task(TaskOp::Act {
                id,
                action: Action::Start,
                user: annotators[who].clone(),
                role: Role::Annotator,
                reason: None,
                at_ms: self.clock,
            }))?;
            out.push((id, who, images));
        }
        Ok(out)
    }

    /// Saves `shapes` on image `i` of `task` as `user` at version `base`; the apply's µs.
    fn save(
        &mut self,
        task: u64,
        i: usize,
        user: &str,
        base: u64,
        shapes: String,
    ) -> anyhow::Result<f64> {
        let op = CatalogOp::SaveAnnotation(Save {
            task,
            sha: sha(i),
            base,
            shapes,
            user: user.to_string(),
            role: Role::Annotator,
            at_ms: self.clock,
        });
        let started = Instant::now();
        let outcome = self.apply(op)?;
        let us = started.elapsed().as_secs_f64() * 1e6;
        anyhow::ensure!(
            matches!(
                outcome,
                CatalogOutcome::Annotation(tessera_domain::annotations::SaveOutcome::Saved(_))
            ),
            "save refused: {outcome:?}"
        );
        Ok(us)
    }

    /// The worker's rounds until nothing is marked: images assessed.
    fn recompute(&mut self) -> anyhow::Result<u64> {
        let mut assessed = 0;
        loop {
            let (texts, _) = image_quality::assess_marked(&self.c.records(), 256, 1 << 20)?;
            if texts.is_empty() {
                return Ok(assessed);
            }
            assessed += texts.len() as u64;
            let outcome = self.apply(CatalogOp::Quality(QualityOp::Record {
                records: texts,
                at_ms: self.clock,
            }))?;
            anyhow::ensure!(
                matches!(
                    outcome,
                    CatalogOutcome::Quality(QualityOutcome::Recorded { stale: 0, .. })
                ),
                "records dropped: {outcome:?}"
            );
        }
    }
}

/// Runs the scenario over `images` images, 3 annotators with `shapes` boxes each per image.
pub fn run(dir: &std::path::Path, images: usize, shapes: usize) -> anyhow::Result<Run> {
    let mut b = Bench {
        c: Catalogue::open(dir)?,
        clock: 1_000_000,
    };
    b.apply(CatalogOp::Dataset(DatasetOp::Create {
        name: "q".into(),
        created_by: "mgr".into(),
        created_ms: 0,
    }))?;
    let list = (0..images)
        .map(|i| DatasetImage {
            sha: sha(i),
            name: format!("{i:07}.jpg"),
            width: 2000,
            height: 2000,
            added_ms: 0,
        })
        .collect();
    b.apply(CatalogOp::Dataset(DatasetOp::AddImages {
        id: 1,
        images: list,
    }))?;
    for name in ["consensus", "control"] {
        b.apply(CatalogOp::AnnotationSet(AnnotationSetOp::Create {
            dataset_id: 1,
            name: name.into(),
            labels_json: r##"[{"name":"car","color":"#ff0000","kinds":["rectangle"]}]"##.into(),
            created_by: "mgr".into(),
            created_ms: 0,
        }))?;
    }
    let annotators: Vec<String> = ["ann", "bob", "eve"]
        .iter()
        .map(|s| s.to_string())
        .collect();

    // Overlap 3, where every save writes a mark, and the control set (overlap 1, no ground
    // truth, nothing marked), interleaved so that both see the same database size and the same
    // machine.
    let mut marked = Vec::new();
    for (task, who, list) in b.tasks(1, images, 3, &annotators)? {
        marked.extend(list.into_iter().map(|i| (task, who, i)));
    }
    let mut control = Vec::new();
    for (task, _, list) in b.tasks(2, images.min(CONTROL), 1, &annotators[..1])? {
        control.extend(list.into_iter().map(|i| (task, i)));
    }
    let every = (marked.len() / control.len().max(1)).max(1);
    let (mut with, mut without) = (Vec::new(), Vec::new());
    let mut pending_control = control.into_iter();
    for (n, (task, who, i)) in marked.into_iter().enumerate() {
        with.push(b.save(task, i, &annotators[who], 0, drawing(i, who, shapes, 0))?);
        if n % every == 0 {
            if let Some((task, i)) = pending_control.next() {
                without.push(b.save(task, i, "ann", 0, drawing(i, 0, shapes, 0))?);
            }
        }
    }
    for (task, i) in pending_control {
        without.push(b.save(task, i, "ann", 0, drawing(i, 0, shapes, 0))?);
    }
    with.sort_by(f64::total_cmp);
    without.sort_by(f64::total_cmp);

    let started = Instant::now();
    let assessed = b.recompute()?;
    let full_seconds = started.elapsed().as_secs_f64();

    // bob re-saves 1 % of the images (version 2); only those are assessed again.
    let step = ((1.0 / RESAVED) as usize).max(1);
    let index: std::collections::HashMap<Sha256, usize> =
        (0..images).map(|i| (sha(i), i)).collect();
    let bob_tasks: Vec<(u64, Vec<usize>)> = {
        let records = b.c.records();
        let bob = tessera_domain::tasks::TaskIndex::Assignee("bob".into());
        tessera_domain::tasks::tasks(&records, bob, None, usize::MAX, |t| t.set_id == 1)?
            .into_iter()
            .map(|t| {
                (
                    t.id,
                    t.images
                        .iter()
                        .filter_map(|s| index.get(s).copied())
                        .collect(),
                )
            })
            .collect()
    };
    for (task, list) in bob_tasks {
        for i in list.into_iter().filter(|i| i % step == 0) {
            b.save(task, i, "bob", 1, drawing(i, 1, shapes, 1))?;
        }
    }
    let started = Instant::now();
    let incremental_images = b.recompute()?;
    let incremental_seconds = started.elapsed().as_secs_f64();

    let report = tessera_domain::quality_report::report(&b.c.records(), 1)?
        .ok_or_else(|| anyhow::anyhow!("the set is gone"))?;
    Ok(Run {
        images,
        shapes,
        saves: with.len(),
        with_marks_p50_us: percentile(&with, 0.5),
        with_marks_p99_us: percentile(&with, 0.99),
        control_saves: without.len(),
        without_marks_p50_us: percentile(&without, 0.5),
        without_marks_p99_us: percentile(&without, 0.99),
        full_seconds,
        assessed,
        incremental_images,
        incremental_seconds,
        mean_agreement: report.mean_agreement.unwrap_or(0.0),
    })
}
