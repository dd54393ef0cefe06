//! Exports: an annotation set written as a dataset in a format training code reads, as a zip
//! built by a background job.
//!
//! The job reads the image list and the task each image's shapes come from once, then streams
//! images one at a time from the cluster into a writer thread that owns the zip; memory stays
//! bounded by one image and a few buffers however large the set is (whole-dataset documents are
//! spooled to disk, see `archive.rs`). What each format does with each kind of shape is in
//! docs/formats.md, and every shape a format cannot carry is counted in the export's report.

pub(crate) mod pixels;
mod plan;

use tessera_formats::export::{
    archive, coco, csv, cvat, labelme, reserved, shapes, splits, voc, yolo,
};

use std::collections::{BTreeMap, HashMap};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tessera_domain::annotation_sets::Label;
use tessera_domain::jobs::{Job, JobKind, JobResult};
use tessera_raft::storage::Sha256;
use tessera_raft::{ByteRange, ObjectBody, ReadSpec};

use crate::auth::Principal;
use crate::error::{internal, invalid, ApiError};
use crate::jobs::{self, Runner, Stop};
use crate::json_body::JsonBody;
use crate::AppState;
use archive::{Archive, Format, Item, Stems};
use plan::Pick;

/// The formats, by the names the API takes.
pub const FORMATS: [&str; 9] = [
    "coco",
    "voc",
    "yolo",
    "yolo-segment",
    "yolo-pose",
    "yolo-darknet",
    "cvat",
    "labelme",
    "csv",
];

/// What an export was asked for (kept as the job's params).
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ExportOptions")]
pub struct Options {
    #[schemars(extend("enum" = FORMATS))]
    pub format: String,
    #[serde(default = "yes")]
    pub include_images: bool,
    /// Only images of accepted tasks, with the accepted shapes.
    #[serde(default)]
    pub only_accepted: bool,
    /// Subset names and their shares (`{"train": 0.8, "val": 0.2}`); one subset by default.
    #[serde(default)]
    #[schemars(extend("minProperties" = 1, "maxProperties" = 10, "propertyNames" = {"pattern": "^[a-z0-9]{1,32}$"}, "additionalProperties" = {"type": "number", "exclusiveMinimum": 0}))]
    pub splits: Option<BTreeMap<String, f64>>,
    /// Seeds the assignment of images to splits (the same seed gives the same splits).
    #[serde(default)]
    pub seed: u64,
    /// Which version of each image: `auto` (ground truth, else the consensus of overlapping
    /// annotators, else the task furthest along), `consensus`, `tasks` or `annotator`.
    #[serde(default)]
    pub source: Pick,
    /// The annotator whose versions `source: annotator` exports.
    #[serde(default)]
    pub annotator: Option<String>,
    /// Adds `quality.csv`: each image's source, versions and their agreement.
    #[serde(default)]
    pub include_agreement: bool,
}

fn yes() -> bool {
    true
}

impl Options {
    fn check(&self) -> Result<(), ApiError> {
        if !FORMATS.contains(&self.format.as_str()) {
            return Err(invalid(format!(
                "format: one of {}, not {:?}",
                FORMATS.join(", "),
                self.format
            )));
        }
        match (self.source, &self.annotator) {
            (Pick::Annotator, None) => {
                return Err(invalid(
                    "annotator: name the annotator whose versions to export (source annotator)",
                ))
            }
            (Pick::Annotator, Some(_)) | (_, None) => {}
            (_, Some(_)) => return Err(invalid(
                "annotator: only with \"source\": \"annotator\" (the other sources merge or pick \
                     among every annotator's versions)",
            )),
        }
        if let Some(splits) = &self.splits {
            if splits.is_empty() || splits.len() > 10 {
                return Err(invalid("splits: one to ten subsets"));
            }
            for (name, share) in splits {
                let ok_name = !name.is_empty()
                    && name.len() <= 32
                    && name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
                if !ok_name {
                    return Err(invalid(format!(
                        "splits.{name}: subset names are 1-32 lowercase letters and digits \
                         (VOC readers split names on '_')"
                    )));
                }
                if !(share.is_finite() && *share > 0.0) {
                    return Err(invalid(format!("splits.{name}: a share above 0")));
                }
            }
        }
        Ok(())
    }

    /// The subset of every image, and the subsets' counts (see `splits`); without splits,
    /// every image is in the format's one default subset.
    fn subsets(&self, images: &[Sha256]) -> (HashMap<Sha256, String>, Vec<(String, usize)>) {
        match &self.splits {
            Some(shares) => splits::assign(shares, self.seed, images),
            None => {
                let default = if self.format.starts_with("yolo") {
                    "train"
                } else {
                    "default"
                };
                let all = images.iter().map(|sha| (*sha, default.to_string()));
                (all.collect(), vec![(default.to_string(), images.len())])
            }
        }
    }
}

/// `POST /api/v1/annotation-sets/{id}/exports`: starts an export job (202).
pub async fn start(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u64>,
    JsonBody(options): JsonBody<Options>,
) -> Result<Response, ApiError> {
    options.check()?;
    let set = crate::annotation_sets::load(&state, id).await?;
    if let Some(problem) = reserved::problem(&options.format, &set.labels) {
        return Err(invalid(problem));
    }
    let params = serde_json::to_value(&options).map_err(internal)?;
    let job = jobs::create(
        &state,
        JobKind::Export,
        Some(set.dataset_id),
        Some(id),
        &principal.username,
        &params,
    )
    .await?;
    let body = jobs::view(&state, &job);
    spawn(state, job.clone());
    let location = format!("/api/v1/jobs/{}", job.id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(body),
    )
        .into_response())
}

/// Runs `job` (an export this node owns) in the background.
pub fn spawn(state: AppState, job: Job) {
    tokio::spawn(async move {
        let runner = Runner::start(&state, job);
        let outcome = run(&state, &runner).await;
        if outcome.is_err() {
            let _ = tokio::fs::remove_file(jobs::export_path(&state, &runner.job)).await;
        }
        if let Err(Stop::Failed(e)) = &outcome {
            tracing::warn!(job = runner.job.id, error = %e, "export failed");
        }
        runner.finish(&state, outcome).await;
    });
}

/// The report's lines on where shapes came from.
fn source_notes(plan: &plan::Plan, options: &Options) -> Vec<String> {
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for e in &plan.entries {
        let what = match e.source {
            Some(plan::Source::Reference) => "ground truth",
            Some(plan::Source::Consensus(_)) => "consensus",
            Some(plan::Source::Task(_)) => "one task's version",
            Some(plan::Source::Imported) => "imported",
            None => "none",
        };
        *counts.entry(what).or_default() += 1;
    }
    let listed: Vec<String> = counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let mut notes =
        vec![format!("shapes from ({:?}): {}", options.source, listed.join(", ")).to_lowercase()];
    if plan.not_by_annotator > 0 {
        notes.push(format!(
            "{} images without a version by {} were left out",
            plan.not_by_annotator,
            options.annotator.as_deref().unwrap_or_default()
        ));
    }
    if plan.pending > 0 {
        notes.push(format!(
            "{} images' consensus was being recomputed after recent saves: they carry the last \
             consensus computed (export again for the newest)",
            plan.pending
        ));
    }
    notes
}

fn format_for(options: &Options, labels: Vec<Label>, set_name: &str) -> Box<dyn Format> {
    match options.format.as_str() {
        "coco" => Box::new(coco::Coco::new(labels)),
        "voc" => Box::new(voc::Voc::new(labels)),
        "yolo" => Box::new(yolo::Yolo::new(yolo::Variant::Detect, labels)),
        "yolo-segment" => Box::new(yolo::Yolo::new(yolo::Variant::Segment, labels)),
        "yolo-pose" => Box::new(yolo::Yolo::new(yolo::Variant::Pose, labels)),
        "yolo-darknet" => Box::new(yolo::Yolo::new(yolo::Variant::Darknet, labels)),
        "cvat" => Box::new(cvat::Cvat::new(labels, set_name.to_string())),
        "labelme" => Box::new(labelme::LabelMe::new(labels)),
        _ => Box::new(csv::Csv::new()),
    }
}

/// Reads an object wherever it lives: whole, or only its first [`pixels::HEAD`] bytes (for
/// what its headers say) when `whole` is false.
pub(crate) async fn fetch(
    state: &AppState,
    sha: Sha256,
    whole: bool,
) -> Result<(String, Bytes), Stop> {
    let spec = ReadSpec {
        range: (!whole).then_some(ByteRange::Inclusive(0, pixels::HEAD - 1)),
        ..ReadSpec::default()
    };
    let read = state
        .cluster
        .read_object(sha, spec, 0)
        .await
        .map_err(|e| Stop::Failed(format!("reading image {sha}: {e}")))?
        .ok_or_else(|| Stop::Failed(format!("image {sha} is missing from the object store")))?;
    let content_type = read.head.meta.content_type.clone();
    let bytes = match read.body {
        Some(ObjectBody::Local(bytes)) => bytes,
        Some(ObjectBody::Remote(mut stream)) => {
            let expected = if whole {
                read.head.meta.size
            } else {
                pixels::HEAD
            };
            let mut buf =
                bytes::BytesMut::with_capacity(expected.min(read.head.meta.size) as usize);
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| Stop::Failed(format!("reading image {sha}: {e}")))?;
                buf.extend_from_slice(&chunk);
            }
            buf.freeze()
        }
        None => return Err(Stop::Failed(format!("image {sha} came back without bytes"))),
    };
    Ok((content_type, bytes))
}

/// Moves an item whose image has an EXIF orientation into the stored pixel frame (see
/// `pixels`): sizes and shapes, and the tag in its bytes set to 1.
fn to_stored_frame(item: &mut Item, orientation: u16) {
    let (width, height) = (item.width, item.height);
    for shape in &mut item.shapes {
        *shape = pixels::shape_to_stored(orientation, width, height, shape);
    }
    (item.width, item.height) = pixels::stored_size(orientation, width, height);
    if let Some(bytes) = item.bytes.take() {
        let mut upright = bytes.to_vec();
        tessera_raft::storage::exif::clear_orientation(&mut upright);
        item.bytes = Some(Bytes::from(upright));
    }
    item.turned = Some(orientation);
}

/// Images read ahead of the writer.
const PIPELINE: usize = 4;
/// Entries whose shapes are read per catalogue read.
const SHAPE_BATCH: usize = 64;

async fn run(state: &AppState, runner: &Runner) -> Result<JobResult, Stop> {
    let job = runner.job.clone();
    let options: Options = serde_json::from_str(&job.params)
        .map_err(|e| Stop::Failed(format!("bad export options: {e}")))?;
    let set_id = job
        .annotation_set
        .ok_or_else(|| Stop::Failed("no annotation set".into()))?;
    let wanted = plan::Wanted {
        only_accepted: options.only_accepted,
        pick: options.source,
        annotator: options.annotator.clone(),
    };
    let plan = state
        .cluster
        .read_catalog(move |s| plan::plan(s, set_id, &wanted))
        .await
        .map_err(|e| Stop::Failed(e.to_string()))?
        .ok_or_else(|| Stop::Failed(format!("annotation set {set_id} was deleted")))?;
    let path = jobs::export_path(state, &job);
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| Stop::Failed(format!("creating the export's directory: {e}")))?;
    }
    let mut format = format_for(&options, plan.labels.clone(), &plan.set_name);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Item>(PIPELINE);
    let writer_path = path.clone();
    let left_out = plan.left_out;
    let notes = source_notes(&plan, &options);
    let agreement = options
        .include_agreement
        .then(|| plan::agreement_csv(&plan.entries));
    let images: Vec<Sha256> = plan.entries.iter().map(|e| e.sha).collect();
    let (subsets, subset_counts) = options.subsets(&images);
    let writer = crate::long_work::run(move || -> std::io::Result<Vec<String>> {
        let mut archive = Archive::create(&writer_path)?;
        if left_out > 0 {
            archive.report.note(format!(
                "{left_out} images without an accepted task were left out (only_accepted)"
            ));
        }
        let listed: Vec<String> = subset_counts
            .iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect();
        archive
            .report
            .note(format!("images per subset: {}", listed.join(", ")));
        for note in notes {
            archive.report.note(note);
        }
        if let Some(text) = &agreement {
            archive.file("quality.csv", text.as_bytes(), true)?;
        }
        while let Some(item) = rx.blocking_recv() {
            if let Some(bytes) = &item.bytes {
                archive.file(&format.image_path(&item), bytes, false)?;
            }
            if let Some(orientation) = item.turned {
                archive.report.loss(format!(
                    "images with EXIF orientation {orientation} written in their stored pixel frame \
                     (orientation tag set to 1; sizes and coordinates in that frame)"
                ));
            }
            format.item(&mut archive, &item)?;
        }
        format.finish(&mut archive)?;
        archive.finish()
    });
    let mut stems = Stems::new();
    for chunk in plan.entries.chunks(SHAPE_BATCH) {
        runner.check()?;
        let keys: Vec<(Sha256, Option<plan::Source>)> =
            chunk.iter().map(|e| (e.sha, e.source)).collect();
        let shapes = state
            .cluster
            .read_catalog(move |s| plan::shapes_of(s, set_id, &keys))
            .await
            .map_err(|e| Stop::Failed(e.to_string()))?;
        for (entry, shapes) in chunk.iter().zip(shapes) {
            let (content_type, bytes) = fetch(state, entry.sha, options.include_images).await?;
            let count = shapes.len() as u64;
            let mut item = Item {
                stem: stems.stem(&entry.name, &entry.sha),
                ext: archive::extension(&content_type),
                subset: subsets.get(&entry.sha).cloned().unwrap_or_default(),
                width: entry.width,
                height: entry.height,
                channels: pixels::channels(&bytes),
                shapes,
                turned: None,
                bytes: options.include_images.then(|| bytes.clone()),
            };
            if let Some(orientation) = pixels::orientation(&bytes) {
                to_stored_frame(&mut item, orientation);
            }
            if tx.send(item).await.is_err() {
                break;
            }
            runner.update(|p| {
                p.images_exported += 1;
                p.shapes_exported += count;
            });
        }
    }
    drop(tx);
    let report = writer
        .await
        .map_err(|e| Stop::Failed(e.to_string()))?
        .map_err(|e| Stop::Failed(format!("writing the archive: {e}")))?;
    runner.check()?;
    let size = tokio::fs::metadata(&path)
        .await
        .map_err(|e| Stop::Failed(e.to_string()))?
        .len();
    let clean: String = plan
        .set_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok(JobResult {
        file_name: Some(format!("{clean}-{}.zip", options.format)),
        size,
        report,
    })
}
