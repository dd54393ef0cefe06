//! Annotations: the shapes drawn on one image of one task, versioned.
//!
//! A save names the version it was made from; the state machine applies it only if that is still
//! the current version, so two tabs or two reviewers never silently overwrite each other (the
//! loser gets the current version back). Every version is kept with who saved it and when.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::annotation_sets::{self, AttributeKind, Label, ShapeKind};
use crate::catalog::Role;
use crate::records::{get, scan};
use crate::tasks::{self, TaskState};
use crate::{key, stats, DomainError, Records, Sha256, Tx};

/// Most shapes on one image.
pub const MAX_SHAPES: usize = 10_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub version: u64,
    /// The shapes as JSON text (see [`problem`] for their form).
    pub shapes: String,
    pub saved_by: String,
    pub saved_ms: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Save {
    pub task: u64,
    pub sha: Sha256,
    /// The version the client edited (0 for an image without annotations).
    pub base: u64,
    pub shapes: String,
    pub user: String,
    pub role: Role,
    pub at_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SaveOutcome {
    Saved(u64),
    /// The version was not the current one; carries the current one.
    Stale(u64),
    NoSuchTask(u64),
    NotInTask,
    Forbidden(String),
    Invalid(String),
}

fn current_key(task: u64, sha: &Sha256) -> Vec<u8> {
    key(&format!("annotation/{task:016x}/{sha}"))
}

fn history_prefix(task: u64, sha: &Sha256) -> Vec<u8> {
    key(&format!("annotation-history/{task:016x}/{sha}/"))
}

pub fn current(r: &dyn Records, task: u64, sha: &Sha256) -> Result<Option<Version>, DomainError> {
    get(r, &current_key(task, sha))
}

/// Every version of an image's annotations, oldest first.
pub fn history(r: &dyn Records, task: u64, sha: &Sha256) -> Result<Vec<Version>, DomainError> {
    scan(r, &history_prefix(task, sha), None).collect()
}

fn attribute_problem(at: &str, kind: &AttributeKind, value: &Value) -> Option<String> {
    let ok = match kind {
        AttributeKind::Select { options } => value
            .as_str()
            .is_some_and(|v| options.iter().any(|o| o == v)),
        AttributeKind::Checkbox => value.is_boolean(),
        AttributeKind::Number { min, max } => value
            .as_f64()
            .is_some_and(|n| min.is_none_or(|m| n >= m) && max.is_none_or(|m| n <= m)),
        AttributeKind::Text => value.as_str().is_some_and(|t| t.len() <= 10_000),
    };
    (!ok).then(|| format!("{at}: {value} does not fit the attribute"))
}

/// The first problem of `shapes` against a schema and an image size, named by its path
/// (`shapes[3].points[1]: ...`). Shapes are `{"label", "kind", "points": [[x, y], ...],
/// "angle"?, "attributes"?}`; rectangles take two corners, rotated rectangles two corners and an
/// angle in degrees, polygons three or more distinct points, polylines two or more, keypoints
/// one point per named keypoint (or any number), tags none.
pub fn problem(shapes: &Value, labels: &[Label], width: u32, height: u32) -> Option<String> {
    let Some(shapes) = shapes.as_array() else {
        return Some("shapes: expected a list".into());
    };
    if shapes.len() > MAX_SHAPES {
        return Some(format!("shapes: at most {MAX_SHAPES} per image"));
    }
    for (i, shape) in shapes.iter().enumerate() {
        let at = format!("shapes[{i}]");
        let Some(obj) = shape.as_object() else {
            return Some(format!("{at}: expected an object"));
        };
        if let Some(extra) = obj
            .keys()
            .find(|k| !["label", "kind", "points", "angle", "attributes"].contains(&k.as_str()))
        {
            return Some(format!("{at}.{extra}: unknown field"));
        }
        let Some(label_name) = obj.get("label").and_then(Value::as_str) else {
            return Some(format!("{at}.label: required"));
        };
        let Some(label) = labels.iter().find(|l| l.name == label_name) else {
            return Some(format!("{at}.label: no label {label_name:?} in the schema"));
        };
        let kind: ShapeKind = match obj.get("kind").map(|k| serde_json::from_value(k.clone())) {
            Some(Ok(k)) => k,
            _ => {
                return Some(format!(
                "{at}.kind: one of rectangle, rotated_rectangle, polygon, polyline, points, tag"
            ))
            }
        };
        if !label.kinds.contains(&kind) {
            return Some(
                format!("{at}.kind: label {label_name:?} is not drawn as {kind:?}").to_lowercase(),
            );
        }
        let empty = Vec::new();
        let points = obj
            .get("points")
            .and_then(Value::as_array)
            .unwrap_or(&empty);
        let mut coords = Vec::with_capacity(points.len());
        for (j, p) in points.iter().enumerate() {
            let xy = p
                .as_array()
                .filter(|a| a.len() == 2)
                .and_then(|a| Some((a[0].as_f64()?, a[1].as_f64()?)));
            let Some((x, y)) = xy else {
                return Some(format!("{at}.points[{j}]: expected [x, y]"));
            };
            if !(0.0..=f64::from(width)).contains(&x) || !(0.0..=f64::from(height)).contains(&y) {
                return Some(format!(
                    "{at}.points[{j}]: ({x}, {y}) is outside the {width}x{height} image"
                ));
            }
            coords.push((x, y));
        }
        let mut distinct = coords.clone();
        distinct.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        distinct.dedup();
        let count_problem = match kind {
            ShapeKind::Rectangle | ShapeKind::RotatedRectangle
                if coords.len() != 2 || distinct.len() != 2 =>
            {
                Some("two distinct corners")
            }
            ShapeKind::Polygon if distinct.len() < 3 => Some("at least three distinct points"),
            ShapeKind::Polyline if distinct.len() < 2 => Some("at least two distinct points"),
            ShapeKind::Points if coords.is_empty() => Some("at least one point"),
            ShapeKind::Points
                if !label.keypoints.is_empty() && coords.len() != label.keypoints.len() =>
            {
                Some("one point per named keypoint")
            }
            ShapeKind::Tag if !coords.is_empty() => Some("no points (a tag is image-level)"),
            _ => None,
        };
        if let Some(expected) = count_problem {
            return Some(format!("{at}.points: {kind:?} needs {expected}").to_lowercase());
        }
        match (kind, obj.get("angle")) {
            (ShapeKind::RotatedRectangle, Some(a))
                if a.as_f64().is_some_and(|a| (0.0..360.0).contains(&a)) => {}
            (ShapeKind::RotatedRectangle, _) => {
                return Some(format!("{at}.angle: degrees in [0, 360)"))
            }
            (_, Some(_)) => {
                return Some(format!("{at}.angle: only rotated rectangles have an angle"))
            }
            _ => {}
        }
        let no_attributes = serde_json::Map::new();
        let attributes = match obj.get("attributes") {
            None => &no_attributes,
            Some(Value::Object(m)) => m,
            Some(_) => return Some(format!("{at}.attributes: expected an object")),
        };
        if let Some(unknown) = attributes
            .keys()
            .find(|k| !label.attributes.iter().any(|a| &a.name == *k))
        {
            return Some(format!(
                "{at}.attributes.{unknown}: label {label_name:?} has no such attribute"
            ));
        }
        for a in &label.attributes {
            match attributes.get(&a.name) {
                None if a.required => return Some(format!("{at}.attributes.{}: required", a.name)),
                None => {}
                Some(v) => {
                    if let Some(p) =
                        attribute_problem(&format!("{at}.attributes.{}", a.name), &a.kind, v)
                    {
                        return Some(p);
                    }
                }
            }
        }
    }
    None
}

/// Decides and stages a save.
pub fn stage(tx: &mut Tx, save: &Save) -> Result<SaveOutcome, DomainError> {
    let Some(task) = tasks::task(tx, save.task)? else {
        return Ok(SaveOutcome::NoSuchTask(save.task));
    };
    if !task.images.contains(&save.sha) {
        return Ok(SaveOutcome::NotInTask);
    }
    let editing = match task.state {
        TaskState::InProgress => task.assignee.as_deref() == Some(save.user.as_str()),
        TaskState::InReview => {
            task.reviewer.as_deref() == Some(save.user.as_str()) || save.role >= Role::Manager
        }
        _ => false,
    };
    if !editing {
        return Ok(SaveOutcome::Forbidden(format!(
            "task {} is {:?}: only its assignee while in progress, or its reviewer while in review, may edit",
            task.id, task.state
        )));
    }
    let previous = current(tx, save.task, &save.sha)?;
    let current_version = previous.as_ref().map(|v| v.version).unwrap_or(0);
    if save.base != current_version {
        return Ok(SaveOutcome::Stale(current_version));
    }
    let Some(set) = annotation_sets::annotation_set(tx, task.set_id)? else {
        return Ok(SaveOutcome::Invalid(
            "the task's annotation set was deleted".into(),
        ));
    };
    let image = crate::datasets::image(tx, set.dataset_id, &save.sha)?;
    let (width, height) = image.map(|i| (i.width, i.height)).unwrap_or((0, 0));
    let shapes: Value = match serde_json::from_str(&save.shapes) {
        Ok(v) => v,
        Err(e) => return Ok(SaveOutcome::Invalid(format!("shapes: {e}"))),
    };
    if let Some(p) = problem(&shapes, &set.labels, width, height) {
        return Ok(SaveOutcome::Invalid(p));
    }
    let version = Version {
        version: current_version.saturating_add(1),
        shapes: save.shapes.clone(),
        saved_by: save.user.clone(),
        saved_ms: save.at_ms,
    };
    tx.put_record(current_key(save.task, &save.sha), &version)?;
    let mut hist = history_prefix(save.task, &save.sha);
    hist.extend_from_slice(format!("{:016x}", version.version).as_bytes());
    tx.put_record(hist, &version)?;
    let before = previous
        .as_ref()
        .map(|p| (p.shapes.as_str(), p.saved_by.as_str()));
    stats::annotation_saved(
        tx,
        task.set_id,
        before,
        &save.shapes,
        &save.user,
        save.at_ms,
    )?;
    Ok(SaveOutcome::Saved(version.version))
}

/// Shapes brought in from another tool (COCO, VOC, YOLO, CVAT) for an image of an annotation
/// set: the starting point of every task with that image until a version is saved there.
/// They are not anyone's work, so statistics do not count them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Imported {
    pub shapes: String,
    /// What they came from, e.g. "coco import (job 12)".
    pub source: String,
    pub imported_ms: u64,
}

/// Imported shapes for a batch of images; applied all or nothing.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Import {
    pub set: u64,
    /// `(image, shapes as JSON text)`.
    pub images: Vec<(Sha256, String)>,
    pub source: String,
    pub at_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImportOutcome {
    Imported(u64),
    NoSuchSet(u64),
    Invalid(String),
}

fn imported_key(set: u64, sha: &Sha256) -> Vec<u8> {
    key(&format!("annotation-imported/{set:016x}/{sha}"))
}

pub fn imported(r: &dyn Records, set: u64, sha: &Sha256) -> Result<Option<Imported>, DomainError> {
    get(r, &imported_key(set, sha))
}

/// Checks every image's shapes against the schema and the image, then stages them all.
pub fn stage_import(tx: &mut Tx, import: &Import) -> Result<ImportOutcome, DomainError> {
    let Some(set) = annotation_sets::annotation_set(tx, import.set)? else {
        return Ok(ImportOutcome::NoSuchSet(import.set));
    };
    for (sha, shapes) in &import.images {
        let Some(image) = crate::datasets::image(tx, set.dataset_id, sha)? else {
            return Ok(ImportOutcome::Invalid(format!(
                "image {sha} is not in the dataset"
            )));
        };
        let parsed: Value = match serde_json::from_str(shapes) {
            Ok(v) => v,
            Err(e) => return Ok(ImportOutcome::Invalid(format!("{sha}: shapes: {e}"))),
        };
        if let Some(p) = problem(&parsed, &set.labels, image.width, image.height) {
            return Ok(ImportOutcome::Invalid(format!("{sha}: {p}")));
        }
    }
    for (sha, shapes) in &import.images {
        let record = Imported {
            shapes: shapes.clone(),
            source: import.source.clone(),
            imported_ms: import.at_ms,
        };
        tx.put_record(imported_key(import.set, sha), &record)?;
    }
    Ok(ImportOutcome::Imported(import.images.len() as u64))
}

/// The labels saved on image `sha` in any of `tasks` (for filters such as "annotated with car").
pub fn saved_labels(
    r: &dyn Records,
    tasks: &[u64],
    sha: &Sha256,
) -> Result<std::collections::BTreeSet<String>, DomainError> {
    let mut labels = std::collections::BTreeSet::new();
    for task in tasks {
        if let Some(v) = current(r, *task, sha)? {
            let shapes: Value = serde_json::from_str(&v.shapes).unwrap_or(Value::Null);
            for shape in shapes.as_array().into_iter().flatten() {
                if let Some(label) = shape.get("label").and_then(Value::as_str) {
                    labels.insert(label.to_string());
                }
            }
        }
    }
    Ok(labels)
}
