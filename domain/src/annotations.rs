//! Annotations: the shapes drawn on one image of one task, versioned.
//!
//! A save names the version it was made from; the state machine applies it only if that is still
//! the current version, so two tabs or two reviewers never silently overwrite each other (the
//! loser gets the current version back). Every version is kept with who saved it and when.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::annotation_sets::{self, Label};
use crate::catalog::Role;
use crate::records::{get, scan};
use crate::shape::{self, Shape};
use crate::tasks::{self, TaskState};
use crate::{key, stats, DomainError, Records, Sha256, Tx};

pub use crate::shape::MAX_SHAPES;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub version: u64,
    /// The shapes as JSON text (a list of [`Shape`]).
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

/// The first problem of `shapes` against a schema and an image size, named by its path
/// (`shapes[3].points[1]: ...`); the form of a shape is [`Shape`].
pub fn problem(shapes: &Value, labels: &[Label], width: u32, height: u32) -> Option<String> {
    shape::parse_list(shapes, labels, width, height).err()
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
    crate::image_quality::mark_save(tx, &task, &save.sha)?;
    let announced = serde_json::json!({
        "task": task.id,
        "image": save.sha.to_string(),
        "version": version.version,
        "by": save.user,
        "at_ms": save.at_ms,
    });
    crate::webhooks::stage_saved(tx, task.set_id, &announced, save.at_ms)?;
    Ok(SaveOutcome::Saved(version.version))
}

/// A change to a saved list of shapes: at index `at` of that list, `remove` shapes replaced by
/// `insert` (JSON shapes, checked with the result as a whole).
pub type Splice = (usize, usize, Vec<Value>);

/// The shapes of a version (`base`, JSON text of `base_len` shapes) with `splices` applied, as
/// JSON text. Splices index the base list, in order and without overlapping: a save that sends
/// only what changed names shapes by position, which is unambiguous because the save is made
/// on exactly that version (`If-Match`). The error says what does not fit.
pub fn splice(base: &str, base_len: usize, splices: Vec<Splice>) -> Result<String, String> {
    let list: Vec<Value> =
        serde_json::from_str(base).map_err(|e| format!("the saved version is unreadable: {e}"))?;
    if list.len() != base_len {
        return Err(format!(
            "base_len: the edited version has {} shapes, not {base_len}",
            list.len()
        ));
    }
    let mut out = Vec::with_capacity(list.len());
    let mut rest = list.into_iter();
    let mut cursor = 0;
    for (i, (at, remove, insert)) in splices.into_iter().enumerate() {
        let end = at.checked_add(remove).filter(|&end| end <= base_len);
        let Some(end) = end.filter(|_| at >= cursor) else {
            return Err(format!(
                "splices[{i}]: [{at}, {remove}] is out of order, overlaps the one before or \
                 reaches past the {base_len} shapes"
            ));
        };
        out.extend(rest.by_ref().take(at - cursor));
        rest.by_ref().take(remove).for_each(drop);
        out.extend(insert);
        cursor = end;
    }
    out.extend(rest);
    if out.len() > MAX_SHAPES {
        return Err(format!("shapes: at most {MAX_SHAPES} per image"));
    }
    Ok(Value::Array(out).to_string())
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
            labels.extend(Shape::parse_all(&v.shapes).into_iter().map(|s| s.label));
        }
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn splices_replace_insert_and_remove_by_base_position() {
        let base = json!([{"n": 0}, {"n": 1}, {"n": 2}, {"n": 3}]).to_string();
        let text = splice(
            &base,
            4,
            vec![
                (0, 0, vec![json!({"n": "new"})]),
                (1, 1, vec![json!({"n": "1'"})]),
                (3, 1, vec![]),
            ],
        )
        .unwrap();
        let want = json!([{"n": "new"}, {"n": 0}, {"n": "1'"}, {"n": 2}]);
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), want);
        assert_eq!(splice(&base, 4, vec![]).unwrap(), base);
    }

    #[test]
    fn splices_that_do_not_fit_the_base_are_refused() {
        let base = json!([{"n": 0}, {"n": 1}]).to_string();
        let err = splice(&base, 3, vec![]).unwrap_err();
        assert!(err.starts_with("base_len:"), "{err}");
        for bad in [
            vec![(1, 2, vec![])],
            vec![(1, 0, vec![]), (0, 1, vec![])],
            vec![(0, 2, vec![]), (1, 0, vec![])],
            vec![(usize::MAX, 1, vec![])],
        ] {
            let err = splice(&base, 2, bad).unwrap_err();
            assert!(err.starts_with("splices["), "{err}");
        }
    }
}
