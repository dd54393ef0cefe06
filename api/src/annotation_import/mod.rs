//! Annotation imports: a COCO, VOC, YOLO or CVAT dataset (a zip, with or without its images,
//! or a bare COCO JSON / CVAT XML file) becomes pre-annotations of an annotation set, which
//! annotators then correct in their tasks.
//!
//! Images are matched by content hash when the upload carries them, else by name (the name in
//! the dataset, its file name, its stem, or the stem an export gave it). Labels the schema
//! lacks are created (`create_labels=true`) or their shapes dropped; either way the job's report
//! lists unmatched images, unknown labels and every shape that could not be imported.

use tessera_formats::import::{coco, cvat, parsed, voc, yolo};

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path as FsPath, PathBuf};

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::Digest;
use tessera_domain::annotation_sets::{
    self, AnnotationSet, AnnotationSetOp, AnnotationSetOutcome, AttributeKind, Label, ShapeKind,
};
use tessera_domain::annotations::{Import, ImportOutcome};
use tessera_domain::catalog::{CatalogOp, CatalogOutcome};
use tessera_domain::datasets;
use tessera_domain::jobs::{JobKind, JobResult};
use tessera_domain::shape::{NOT_LABELLED, VISIBLE};
use tessera_raft::storage::{probe_image, Sha256};

use crate::auth::Principal;
use crate::error::{internal, invalid, ApiError};
use crate::export::pixels;
use crate::jobs::{self, Runner, Stop};
use crate::token::now_ms;
use crate::AppState;
use parsed::{Parsed, RawImage, RawLabel, RawShape};
use tessera_formats::export::archive::clean_stem;

/// Most bytes an annotation upload may expand to (annotation files are read whole).
const MAX_EXPANDED: u64 = 4 << 30;
/// Images per proposal.
const BATCH: usize = 100;
/// Lines of each kind listed in the report before the rest is only counted.
const REPORT_LINES: usize = 20;

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// `coco`, `voc`, `yolo` or `cvat`.
    #[schemars(extend("enum" = ["coco", "voc", "yolo", "cvat"]))]
    pub format: String,
    /// Add labels (and shape kinds) the schema lacks instead of dropping their shapes.
    #[serde(default)]
    pub create_labels: bool,
}

/// `POST /api/v1/annotation-sets/{id}/annotation-imports?format=&create_labels=`.
pub async fn start(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u64>,
    options: Result<Query<Options>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let checked = check_start(&state, id, options).await;
    let (options, set) = match checked {
        Ok(ok) => ok,
        Err(refusal) => {
            // The upload is read to its end first, so that the client sees the error rather
            // than a broken pipe (unless it asked to hear first with `Expect: 100-continue`).
            if !crate::access::expects_continue(&headers) {
                crate::access::discard(&mut body.into_data_stream()).await;
            }
            return Err(refusal);
        }
    };
    let params = serde_json::to_value(&options).map_err(internal)?;
    let job = jobs::create(
        &state,
        JobKind::AnnotationImport,
        Some(set.dataset_id),
        Some(id),
        &principal.username,
        &params,
    )
    .await?;
    let runner = Runner::start(&state, job);
    crate::import::accept_upload(
        state,
        runner,
        body,
        move |state, runner, spool| async move { run(&state, &runner, &spool, options).await },
    )
    .await
}

/// The options and the annotation set of an import, or why it cannot start.
async fn check_start(
    state: &AppState,
    id: u64,
    options: Result<Query<Options>, QueryRejection>,
) -> Result<(Options, AnnotationSet), ApiError> {
    let Query(options) = options.map_err(|e| {
        invalid(format!(
            "{}; add ?format=coco, voc, yolo or cvat (and &create_labels=true to add labels the \
             schema lacks)",
            e.body_text()
        ))
    })?;
    if !["coco", "voc", "yolo", "cvat"].contains(&options.format.as_str()) {
        return Err(invalid(format!(
            "format: one of coco, voc, yolo, cvat, not {:?}",
            options.format
        )));
    }
    let set = crate::annotation_sets::load(state, id).await?;
    Ok((options, set))
}

/// The upload's files: a zip is extracted (safe names only); a bare document is kept as is.
/// Image files are hashed for matching. Returns `(annotation files, image hashes by path)`.
fn extract(spool: &FsPath) -> Result<(Vec<PathBuf>, HashMap<String, Sha256>), String> {
    let upload = spool.join("upload");
    let mut head = [0u8; 4];
    let n = std::fs::File::open(&upload)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|e| e.to_string())?;
    if &head[..n.min(4)] != b"PK\x03\x04" {
        return Ok((vec![upload], HashMap::new()));
    }
    let root = spool.join("files");
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(
        std::fs::File::open(&upload).map_err(|e| e.to_string())?,
    ))
    .map_err(|e| format!("corrupt zip: {e}"))?;
    let (mut files, mut images, mut total) = (Vec::new(), HashMap::new(), 0u64);
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| format!("zip entry {i}: {e}"))?;
        if entry.is_dir() || entry.is_symlink() {
            continue;
        }
        let raw = String::from_utf8_lossy(entry.name_raw()).into_owned();
        let Some(name) = crate::import::unpack::safe_name(&raw) else {
            return Err(format!("unsafe path {raw:?} in the zip: refused"));
        };
        let path = root.join(&name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        let mut out = std::fs::File::create(&path).map_err(|e| e.to_string())?;
        let limit = MAX_EXPANDED - total;
        total += std::io::copy(&mut (&mut entry).take(limit + 1), &mut out)
            .map_err(|e| format!("{raw}: {e}"))?;
        if total > MAX_EXPANDED {
            return Err(format!(
                "the upload expands beyond {MAX_EXPANDED} bytes: refused"
            ));
        }
        drop(out);
        let bytes = std::fs::read(&path).map_err(|e| e.to_string())?;
        if probe_image(&bytes).is_ok() {
            images.insert(name, Sha256(sha2::Sha256::digest(&bytes).into()));
            std::fs::remove_file(&path).map_err(|e| e.to_string())?;
        } else {
            files.push(path);
        }
    }
    files.sort();
    Ok((files, images))
}

/// How a file of the upload is named to the client: its path inside the upload, never where the
/// node keeps it.
fn shown(spool: &FsPath, path: &FsPath) -> String {
    match path.strip_prefix(spool.join("files")) {
        Ok(inside) => inside.display().to_string(),
        Err(_) => "the upload".into(),
    }
}

/// Reads every annotation file of `format` among `files` (all under `spool`).
fn parse(format: &str, spool: &FsPath, files: &[PathBuf]) -> Result<Parsed, String> {
    let read_text = |path: &FsPath| {
        std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", shown(spool, path)))
    };
    let mut out = Parsed::default();
    let ext = |p: &PathBuf, e: &str| p.extension().is_some_and(|x| x.eq_ignore_ascii_case(e));
    let bare = files.len() == 1 && files[0].file_name().is_some_and(|n| n == "upload");
    match format {
        "coco" => {
            for f in files.iter().filter(|f| bare || ext(f, "json")) {
                let doc: Value = serde_json::from_str(&read_text(f)?)
                    .map_err(|e| format!("{}: {e}", shown(spool, f)))?;
                if doc.get("annotations").is_some() || doc.get("images").is_some() {
                    coco::read(&doc, &mut out)?;
                }
            }
        }
        "voc" => {
            let in_annotations =
                |f: &&PathBuf| f.components().any(|c| c.as_os_str() == "Annotations");
            for f in files
                .iter()
                .filter(|f| ext(f, "xml"))
                .filter(in_annotations)
            {
                voc::read(&read_text(f)?, &mut out)?;
            }
            if let Some(map) = files.iter().find(|f| f.ends_with("labelmap.txt")) {
                for line in read_text(map)?.lines().filter(|l| !l.starts_with('#')) {
                    if let Some(name) = line.split(':').next().filter(|n| !n.trim().is_empty()) {
                        out.declare(RawLabel {
                            name: name.trim().to_string(),
                            ..RawLabel::default()
                        });
                    }
                }
            }
        }
        "cvat" => {
            for f in files.iter().filter(|f| bare || ext(f, "xml")) {
                cvat::read(&read_text(f)?, &mut out)?;
            }
        }
        _ => {
            let (names, keypoints) = match files.iter().find(|f| f.ends_with("data.yaml")) {
                Some(yaml) => yolo::names_from_yaml(&read_text(yaml)?)?,
                None => match files.iter().find(|f| f.ends_with("obj.names")) {
                    Some(n) => (
                        read_text(n)?
                            .lines()
                            .map(str::trim)
                            .filter(|l| !l.is_empty())
                            .map(String::from)
                            .collect(),
                        None,
                    ),
                    None => return Err("YOLO: no data.yaml or obj.names".into()),
                },
            };
            yolo::declare(&names, &mut out);
            let is_label_file = |f: &&PathBuf| {
                ext(f, "txt")
                    && f.components().any(|c| {
                        let c = c.as_os_str().to_string_lossy();
                        c == "labels" || (c.starts_with("obj_") && c.ends_with("_data"))
                    })
            };
            for f in files.iter().filter(is_label_file) {
                let text = read_text(f)?;
                yolo::read_labels(f, &shown(spool, f), &text, &names, keypoints, &mut out);
            }
        }
    }
    if out.images.is_empty() {
        return Err(format!("no {format} annotations found in the upload"));
    }
    Ok(out)
}

/// Dataset images by every name an annotation file may use for them.
struct Names {
    by_name: HashMap<String, Option<Sha256>>,
    sizes: HashMap<Sha256, (u32, u32)>,
}

impl Names {
    fn insert(&mut self, key: String, sha: Sha256) {
        insert_unique(&mut self.by_name, key, sha);
    }

    /// The image `file` names: an image of the upload first (by path, file name or stem),
    /// then dataset names.
    fn find(&self, file: &str, uploaded: &HashMap<String, Option<Sha256>>) -> Option<Sha256> {
        let base = file.rsplit('/').next().unwrap_or(file);
        let by_hash = [file.to_string(), base.to_string(), clean_stem(base)]
            .iter()
            .find_map(|k| uploaded.get(k).copied().flatten())
            .filter(|sha| self.sizes.contains_key(sha));
        by_hash.or_else(|| {
            [
                file.to_string(),
                base.to_string(),
                clean_stem(base),
                clean_stem(file),
            ]
            .iter()
            .find_map(|k| self.by_name.get(k).copied().flatten())
        })
    }
}

/// The images of an upload by path, file name and stem (a name two images share maps to none).
fn uploaded_names(hashes: &HashMap<String, Sha256>) -> HashMap<String, Option<Sha256>> {
    let mut out: HashMap<String, Option<Sha256>> = HashMap::new();
    for (path, sha) in hashes {
        let base = path.rsplit('/').next().unwrap_or(path);
        for key in [path.clone(), base.to_string(), clean_stem(base)] {
            insert_unique(&mut out, key, *sha);
        }
    }
    out
}

/// Maps `key` to `sha`, or to nothing once two different images claim it.
fn insert_unique(map: &mut HashMap<String, Option<Sha256>>, key: String, sha: Sha256) {
    map.entry(key)
        .and_modify(|v| {
            if *v != Some(sha) {
                *v = None;
            }
        })
        .or_insert(Some(sha));
}

fn names(
    store: &dyn tessera_domain::Records,
    dataset: u64,
) -> Result<Names, tessera_domain::DomainError> {
    let mut names = Names {
        by_name: HashMap::new(),
        sizes: HashMap::new(),
    };
    let mut after = None;
    loop {
        let page = datasets::images(store, dataset, after.as_ref(), 1000)?;
        let Some(last) = page.last().map(|i| i.sha) else {
            return Ok(names);
        };
        for image in page {
            let base = image
                .name
                .rsplit('/')
                .next()
                .unwrap_or(&image.name)
                .to_string();
            names.insert(image.name.clone(), image.sha);
            names.insert(base.clone(), image.sha);
            names.insert(clean_stem(&base), image.sha);
            names.insert(clean_stem(&image.name), image.sha);
            names.insert(image.sha.to_string(), image.sha);
            names.sizes.insert(image.sha, (image.width, image.height));
        }
        after = Some(last);
    }
}

/// Lines for the report, at most [`REPORT_LINES`] of each kind.
#[derive(Default)]
struct Report {
    lines: BTreeMap<&'static str, (Vec<String>, u64)>,
}

impl Report {
    fn add(&mut self, kind: &'static str, line: String) {
        let (list, count) = self.lines.entry(kind).or_default();
        *count += 1;
        if list.len() < REPORT_LINES {
            list.push(line);
        }
    }

    fn into_lines(self, head: String) -> Vec<String> {
        let mut out = vec![head];
        for (kind, (list, count)) in self.lines {
            out.push(format!("{count} {kind}:"));
            out.extend(list.into_iter().map(|l| format!("  {l}")));
            if count as usize > REPORT_LINES {
                out.push(format!("  ... and {} more", count as usize - REPORT_LINES));
            }
        }
        out
    }
}

const PALETTE: [&str; 8] = [
    "#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
];

/// Adds the labels and kinds `used` needs to `labels`; returns whether anything changed.
fn widen(
    labels: &mut Vec<Label>,
    used: &BTreeMap<String, Vec<ShapeKind>>,
    declared: &[RawLabel],
) -> bool {
    let mut changed = false;
    for (name, kinds) in used {
        match labels.iter_mut().find(|l| &l.name == name) {
            Some(label) => {
                for k in kinds {
                    if !label.kinds.contains(k) {
                        label.kinds.push(*k);
                        changed = true;
                    }
                }
            }
            None => {
                let raw = declared.iter().find(|l| &l.name == name);
                let keypoints = raw.map(|r| r.keypoints.clone()).unwrap_or_default();
                let skeleton = raw.map(|r| r.skeleton.clone()).unwrap_or_default();
                labels.push(Label {
                    name: name.clone(),
                    color: PALETTE[labels.len() % PALETTE.len()].to_string(),
                    kinds: kinds.clone(),
                    attributes: Vec::new(),
                    keypoints,
                    skeleton,
                });
                changed = true;
            }
        }
    }
    changed
}

/// A read attribute value in the type the schema wants, or `None` when it does not fit.
fn coerce(kind: &AttributeKind, value: &Value) -> Option<Value> {
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match kind {
        AttributeKind::Select { options } => options.contains(&text).then_some(Value::String(text)),
        AttributeKind::Checkbox => match text.as_str() {
            "true" | "True" | "1" => Some(Value::Bool(true)),
            "false" | "False" | "0" => Some(Value::Bool(false)),
            _ => None,
        },
        AttributeKind::Number { .. } => text.parse::<f64>().ok().map(|n| json!(n)),
        AttributeKind::Text => Some(Value::String(text)),
    }
}

/// A rectangle of a label drawn only as rotated rectangles becomes one at 0°, and a rotated
/// rectangle at 0° of a label drawn only as rectangles a rectangle (CVAT writes `rotation="0"`
/// and other tools leave it out): the same box either way, so nothing is lost or dropped.
fn adapt_kind(shape: &mut RawShape, label: &Label) {
    let allows = |k: ShapeKind| label.kinds.contains(&k);
    match shape.kind {
        ShapeKind::Rectangle
            if !allows(ShapeKind::Rectangle) && allows(ShapeKind::RotatedRectangle) =>
        {
            shape.kind = ShapeKind::RotatedRectangle;
            shape.angle = Some(0.0);
        }
        ShapeKind::RotatedRectangle
            if !allows(ShapeKind::RotatedRectangle)
                && allows(ShapeKind::Rectangle)
                && shape.angle.unwrap_or(0.0).rem_euclid(360.0) == 0.0 =>
        {
            shape.kind = ShapeKind::Rectangle;
            shape.angle = None;
        }
        ShapeKind::RotatedRectangle => {
            shape.angle = Some(shape.angle.unwrap_or(0.0).rem_euclid(360.0));
        }
        _ => {}
    }
}

/// The shape as Tessera stores it, fitted to `label` and the image (coordinates within a
/// pixel outside are pulled in; keypoint padding beyond the label's named keypoints, as
/// YOLO pose and COCO write it, dropped), or why it cannot be imported.
fn fit(shape: &RawShape, label: &Label, width: u32, height: u32) -> Result<RawShape, String> {
    let (w, h) = (f64::from(width), f64::from(height));
    let mut out = shape.clone();
    for p in &mut out.points {
        if p[0] < -1.0 || p[1] < -1.0 || p[0] > w + 1.0 || p[1] > h + 1.0 {
            return Err(format!(
                "({}, {}) is outside the {width}x{height} image",
                p[0], p[1]
            ));
        }
        *p = [p[0].clamp(0.0, w), p[1].clamp(0.0, h)];
    }
    let named = label.keypoints.len();
    if shape.kind == ShapeKind::Points
        && named > 0
        && shape.points.len() > named
        && (named..shape.points.len()).all(|i| shape.visibility_of(i) == NOT_LABELLED)
    {
        out.points.truncate(named);
        if let Some(v) = &mut out.visibility {
            v.truncate(named);
        }
    }
    if out
        .visibility
        .as_ref()
        .is_some_and(|v| v.iter().all(|f| *f == VISIBLE))
    {
        out.visibility = None;
    }
    out.attributes = Map::new();
    for a in &label.attributes {
        let value = shape
            .attributes
            .get(&a.name)
            .and_then(|v| coerce(&a.kind, v))
            .or_else(|| a.default.clone());
        if let Some(v) = value {
            out.attributes.insert(a.name.clone(), v);
        }
    }
    match out.problem(label, width, height) {
        Some(problem) => Err(format!("shape.{problem}")),
        None => Ok(out),
    }
}

async fn load_set(state: &AppState, id: u64) -> Result<AnnotationSet, Stop> {
    state
        .cluster
        .read_catalog(move |s| annotation_sets::annotation_set(s, id))
        .await
        .map_err(|e| Stop::Failed(e.to_string()))?
        .ok_or_else(|| Stop::Failed(format!("annotation set {id} was deleted")))
}

async fn run(
    state: &AppState,
    runner: &Runner,
    spool: &FsPath,
    options: Options,
) -> Result<JobResult, Stop> {
    let set_id = runner
        .job
        .annotation_set
        .ok_or_else(|| Stop::Failed("the job names no annotation set".into()))?;
    let spool_dir = spool.to_path_buf();
    let format = options.format.clone();
    let (parsed, hashes) = crate::long_work::run(move || -> Result<_, String> {
        let (files, hashes) = extract(&spool_dir)?;
        Ok((parse(&format, &spool_dir, &files)?, hashes))
    })
    .await
    .map_err(|e| Stop::Failed(e.to_string()))?
    .map_err(Stop::Failed)?;
    runner.update(|p| p.files_seen = parsed.images.len() as u64);
    let set = load_set(state, set_id).await?;
    let dataset = set.dataset_id;
    let names = state
        .cluster
        .read_catalog(move |s| names(s, dataset))
        .await
        .map_err(|e| Stop::Failed(e.to_string()))?;
    let uploaded = uploaded_names(&hashes);
    let mut report = Report::default();
    for note in &parsed.notes {
        report.add("notes", note.clone());
    }
    // Match images and resolve normalised coordinates.
    let mut matched: Vec<(Sha256, (u32, u32), RawImage)> = Vec::new();
    for mut image in parsed.images {
        let Some(sha) = names.find(&image.file, &uploaded) else {
            report.add("images not in the dataset (unmatched)", image.file.clone());
            continue;
        };
        let size = names.sizes[&sha];
        // Files are in the stored pixel frame, as exports write them (see export/pixels.rs).
        let (_, head) = crate::export::fetch(state, sha, false).await?;
        let orientation = pixels::orientation(&head);
        let stored = orientation.map_or(size, |o| pixels::stored_size(o, size.0, size.1));
        if image.normalized {
            let (w, h) = (f64::from(stored.0), f64::from(stored.1));
            for s in &mut image.shapes {
                for p in &mut s.points {
                    *p = [p[0] * w, p[1] * h];
                }
            }
        } else if let Some(stated) = image.size.filter(|s| *s != stored) {
            report.add(
                "images whose stated size differs from the stored image",
                format!(
                    "{}: {}x{} (stored {}x{})",
                    image.file, stated.0, stated.1, stored.0, stored.1
                ),
            );
        }
        if let Some(o) = orientation {
            for s in &mut image.shapes {
                *s = pixels::shape_to_displayed(o, size.0, size.1, s);
            }
        }
        matched.push((sha, size, image));
    }
    // Labels and kinds the schema lacks.
    let mut used: BTreeMap<String, Vec<ShapeKind>> = BTreeMap::new();
    for (_, _, image) in &matched {
        for s in &image.shapes {
            let kinds = used.entry(s.label.clone()).or_default();
            if !kinds.contains(&s.kind) {
                kinds.push(s.kind);
            }
        }
    }
    // Names no export could write back (line breaks, NUL) are never added to the schema.
    used.retain(|name, _| {
        let Some(c) = tessera_domain::annotation_sets::control_character(name) else {
            return true;
        };
        report.add(
            "labels with control characters (not created; their shapes are dropped)",
            format!("{name:?}: {c}"),
        );
        false
    });
    let mut labels = set.labels.clone();
    if options.create_labels && widen(&mut labels, &used, &parsed.labels) {
        let labels_json =
            serde_json::to_string(&labels).map_err(|e| Stop::Failed(e.to_string()))?;
        let op = AnnotationSetOp::Update {
            id: set_id,
            name: None,
            labels_json: Some(labels_json),
        };
        match crate::idempotency::catalog(state, CatalogOp::AnnotationSet(op)).await {
            Ok(CatalogOutcome::AnnotationSet(AnnotationSetOutcome::Set(text))) => {
                // The schema as the update left it (this node's replica may not have it yet).
                let updated: AnnotationSet = serde_json::from_str(&text)
                    .map_err(|e| Stop::Failed(format!("reading the updated schema: {e}")))?;
                labels = updated.labels;
                report.add(
                    "labels or shape kinds added to the schema",
                    used.keys().cloned().collect::<Vec<_>>().join(", "),
                );
            }
            Ok(other) => return Err(Stop::Failed(format!("updating the schema: {other:?}"))),
            Err(e) => return Err(Stop::Failed(format!("updating the schema: {e}"))),
        }
    }
    // Fit every shape; propose in batches.
    let mut batch: Vec<(Sha256, String)> = Vec::new();
    let (mut images_done, mut shapes_done) = (0u64, 0u64);
    let source = format!("{} import (job {})", options.format, runner.job.id);
    for (sha, (w, h), image) in matched {
        runner.check()?;
        let mut shapes = Vec::new();
        for shape in &image.shapes {
            let Some(label) = labels.iter().find(|l| l.name == shape.label) else {
                report.add(
                    "shapes with labels the schema lacks (use create_labels=true)",
                    format!("{}: {}", image.file, shape.label),
                );
                continue;
            };
            let mut shape = shape.clone();
            adapt_kind(&mut shape, label);
            if !label.kinds.contains(&shape.kind) {
                report.add(
                    "shapes of kinds their label does not allow",
                    format!("{}: {} as {:?}", image.file, shape.label, shape.kind),
                );
                continue;
            }
            match fit(&shape, label, w, h) {
                Ok(v) => shapes.push(v),
                Err(why) => report.add(
                    "shapes that do not fit the schema or the image",
                    format!("{}: {why}", image.file),
                ),
            }
        }
        shapes_done += shapes.len() as u64;
        images_done += 1;
        let text = serde_json::to_string(&shapes).map_err(|e| Stop::Failed(e.to_string()))?;
        batch.push((sha, text));
        if batch.len() == BATCH {
            propose(state, set_id, std::mem::take(&mut batch), &source).await?;
            runner.update(|p| p.shapes_imported = shapes_done);
        }
    }
    if !batch.is_empty() {
        propose(state, set_id, batch, &source).await?;
    }
    runner.update(|p| p.shapes_imported = shapes_done);
    let head = format!("{images_done} images matched, {shapes_done} shapes imported");
    Ok(JobResult {
        file_name: None,
        size: 0,
        report: report.into_lines(head),
    })
}

async fn propose(
    state: &AppState,
    set: u64,
    images: Vec<(Sha256, String)>,
    source: &str,
) -> Result<(), Stop> {
    let op = CatalogOp::ImportAnnotations(Import {
        set,
        images,
        source: source.to_string(),
        at_ms: now_ms(),
    });
    match crate::idempotency::catalog(state, op).await {
        Ok(CatalogOutcome::Imported(ImportOutcome::Imported(_))) => Ok(()),
        Ok(CatalogOutcome::Imported(ImportOutcome::Invalid(why))) => Err(Stop::Failed(why)),
        Ok(other) => Err(Stop::Failed(crate::error::unexpected(other).message)),
        Err(e) => Err(Stop::Failed(e.to_string())),
    }
}
