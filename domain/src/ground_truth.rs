//! Ground truth: reference shapes for some images of an annotation set, set by its managers.
//!
//! A reference comes from shapes a manager drew (or sent through the API), from an accepted
//! task's versions, or from an annotation import. Images with a reference are the set's
//! honeypots (mixed into new tasks, see [`crate::tasks`]) and every version saved on them in
//! any task is scored against the reference ([`crate::image_quality`]). References are read
//! only by the set's managers and reviewers: annotators never learn which images they are.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::annotation_sets::{self, AnnotationSet};
use crate::records::get;
use crate::tasks::{self, TaskState};
use crate::{annotations, key, DomainError, Records, Sha256, Tx};

/// One image's reference.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    /// The shapes as JSON text (a list of [`crate::shape::Shape`]).
    pub shapes: String,
    /// Where they came from: "drawn by ann", "task 12", "annotation import".
    pub source: String,
    pub set_by: String,
    /// When it was set; also its revision (scores remember which reference they used).
    pub set_ms: u64,
}

/// Where new references come from.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Source {
    /// `(image, shapes as JSON text)`, validated against the schema and each image's size.
    Shapes(Vec<(Sha256, String)>),
    /// Every image of an accepted task, with the task's current version (an image without a
    /// version becomes an empty reference: the annotator and reviewer said "nothing here").
    Task(u64),
    /// The set's imported annotations of these images.
    Import(Vec<Sha256>),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// References set (or cleared), and the images concerned.
    Done(Vec<Sha256>),
    NoSuchSet(u64),
    NotFound(String),
    Invalid(String),
}

fn reference_key(set: u64, sha: &Sha256) -> Vec<u8> {
    let mut k = prefix(set);
    k.extend_from_slice(sha.to_string().as_bytes());
    k
}

fn prefix(set: u64) -> Vec<u8> {
    key(&format!("ground-truth/{set:016x}/"))
}

pub fn reference(
    r: &dyn Records,
    set: u64,
    sha: &Sha256,
) -> Result<Option<Reference>, DomainError> {
    get(r, &reference_key(set, sha))
}

/// Every reference of a set, in image order.
pub fn references(r: &dyn Records, set: u64) -> Result<Vec<(Sha256, Reference)>, DomainError> {
    let p = prefix(set);
    let mut out = Vec::new();
    for item in r.scan(&p, None) {
        let (k, v) = item?;
        out.push((image_of(&k[p.len()..])?, bincode::deserialize(&v)?));
    }
    Ok(out)
}

/// The images with a reference, in image order (from the keys: splits and reports need no
/// shapes).
pub fn images(r: &dyn Records, set: u64) -> Result<Vec<Sha256>, DomainError> {
    let p = prefix(set);
    r.scan(&p, None)
        .map(|item| {
            let (k, _) = item?;
            image_of(&k[p.len()..])
        })
        .collect()
}

fn image_of(key_tail: &[u8]) -> Result<Sha256, DomainError> {
    std::str::from_utf8(key_tail)
        .ok()
        .and_then(Sha256::parse_hex)
        .ok_or_else(|| DomainError::Corrupt("ground-truth key".into()))
}

/// Resolves `source` and stages the references it gives, all or nothing.
pub fn stage_set(
    tx: &mut Tx,
    set_id: u64,
    source: &Source,
    by: &str,
    at_ms: u64,
) -> Result<Outcome, DomainError> {
    let Some(set) = annotation_sets::annotation_set(tx, set_id)? else {
        return Ok(Outcome::NoSuchSet(set_id));
    };
    let (given, origin) = match resolve(tx, &set, source)? {
        Ok(found) => found,
        Err(refusal) => return Ok(refusal),
    };
    for (sha, shapes) in &given {
        if let Some(p) = problem(tx, &set, sha, shapes)? {
            return Ok(Outcome::Invalid(p));
        }
    }
    for (sha, shapes) in &given {
        let record = Reference {
            shapes: shapes.clone(),
            source: origin.clone(),
            set_by: by.to_string(),
            set_ms: at_ms,
        };
        tx.put_record(reference_key(set_id, sha), &record)?;
    }
    let images: Vec<Sha256> = given.into_iter().map(|(s, _)| s).collect();
    crate::image_quality::mark_everywhere(tx, set_id, &images)?;
    Ok(Outcome::Done(images))
}

/// Removes the reference of `sha` (its scores go with it; the image stays in its tasks).
pub fn stage_clear(tx: &mut Tx, set_id: u64, sha: &Sha256) -> Result<Outcome, DomainError> {
    if annotation_sets::annotation_set(tx, set_id)?.is_none() {
        return Ok(Outcome::NoSuchSet(set_id));
    }
    if reference(tx, set_id, sha)?.is_none() {
        return Ok(Outcome::NotFound(format!(
            "image {sha} has no ground truth in annotation set {set_id}"
        )));
    }
    tx.delete(reference_key(set_id, sha));
    crate::image_quality::mark_everywhere(tx, set_id, std::slice::from_ref(sha))?;
    Ok(Outcome::Done(vec![*sha]))
}

type Resolved = Result<(Vec<(Sha256, String)>, String), Outcome>;

fn resolve(r: &dyn Records, set: &AnnotationSet, source: &Source) -> Result<Resolved, DomainError> {
    Ok(match source {
        Source::Shapes(given) if given.is_empty() => {
            Err(Outcome::Invalid("images: at least one image".into()))
        }
        Source::Shapes(given) => Ok((given.clone(), "drawn".into())),
        Source::Task(id) => match tasks::task(r, *id)? {
            Some(t) if t.set_id != set.id => Err(Outcome::Invalid(format!(
                "task: task {id} belongs to annotation set {}, not {}",
                t.set_id, set.id
            ))),
            Some(t) if t.state != TaskState::Accepted => Err(Outcome::Invalid(format!(
                "task: task {id} is {:?}; only an accepted task's work can be ground truth",
                t.state
            ))),
            Some(t) => {
                let honeypots = tasks::honeypots(r, t.id)?;
                let mut out = Vec::new();
                for sha in t.images.iter().filter(|s| !honeypots.contains(s)) {
                    let shapes = annotations::current(r, t.id, sha)?
                        .map_or_else(|| "[]".to_string(), |v| v.shapes);
                    out.push((*sha, shapes));
                }
                Ok((out, format!("task {id}")))
            }
            None => Err(Outcome::NotFound(format!("no task {id}"))),
        },
        Source::Import(images) if images.is_empty() => {
            Err(Outcome::Invalid("images: at least one image".into()))
        }
        Source::Import(images) => {
            let mut out = Vec::new();
            for sha in images {
                match annotations::imported(r, set.id, sha)? {
                    Some(i) => out.push((*sha, i.shapes)),
                    None => {
                        return Ok(Err(Outcome::Invalid(format!(
                            "images: image {sha} has no imported annotations in this set"
                        ))))
                    }
                }
            }
            Ok((out, "annotation import".into()))
        }
    })
}

/// The first problem of a reference for `sha`, naming the image.
fn problem(
    r: &dyn Records,
    set: &AnnotationSet,
    sha: &Sha256,
    shapes: &str,
) -> Result<Option<String>, DomainError> {
    let Some(image) = crate::datasets::image(r, set.dataset_id, sha)? else {
        return Ok(Some(format!("image {sha} is not in the set's dataset")));
    };
    let parsed: Value = match serde_json::from_str(shapes) {
        Ok(v) => v,
        Err(e) => return Ok(Some(format!("{sha}: shapes: {e}"))),
    };
    Ok(
        annotations::problem(&parsed, &set.labels, image.width, image.height)
            .map(|p| format!("{sha}: {p}")),
    )
}
