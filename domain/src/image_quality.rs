//! The quality record of one image in one chunk of tasks: the consensus of the chunk's
//! versions, their agreement, and each version's score against the image's ground truth.
//!
//! Computing it is kept off the save path: a save (or a submit, an archive, a new reference)
//! only writes a *dirty mark* for the images whose quality it changes, in the same batch. The
//! catalogue leader's quality worker (`tessera_api::quality`) reads marked images, computes
//! their records with [`assess`] on its own replica and proposes them in batches; the state
//! machine keeps a record only if the image's [`Basis`] — which versions, which reference — is
//! still what it was computed from ([`stage_record`]), and otherwise leaves the mark for the
//! next round. So every record on every replica describes exactly the versions it names, and a
//! crash between a save and its recompute loses nothing: the mark is replicated with the save.

use serde::{Deserialize, Serialize};

use crate::quality::consensus::{self, Merged, Version as Contribution};
use crate::quality::{agreement, score::Score};
use crate::shape::Shape;
use crate::tasks::{self, Task, TaskIndex, TaskState};
use crate::{annotation_sets, annotations, ground_truth, key, DomainError, Records, Sha256, Tx};

/// What a record was computed from: each contributing task's current version (0: none saved)
/// and whether the task was submitted (a submitted task without a version says "nothing
/// here"), and the reference's revision.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Basis {
    pub versions: Vec<(u64, u64, bool)>,
    pub reference: Option<u64>,
}

/// One version's figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Assessed {
    pub task: u64,
    pub annotator: String,
    pub version: u64,
    /// Agreement with the consensus (with two or more versions).
    pub with_consensus: Option<f64>,
    /// Score against the ground truth (when the image has one).
    pub score: Option<Score>,
}

/// The quality record of an image in a chunk.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageQuality {
    pub set: u64,
    pub chunk: u64,
    #[serde(with = "crate::sha::hex_text")]
    pub sha: Sha256,
    pub basis: Basis,
    pub versions: Vec<Assessed>,
    /// Mean pairwise agreement of the versions (two or more).
    pub agreement: Option<f64>,
    /// The consensus (two or more versions), never written over anyone's version.
    pub consensus: Option<Vec<Merged>>,
}

fn record_key(set: u64, chunk: u64, sha: &Sha256) -> Vec<u8> {
    key(&format!("image-quality/{set:016x}/{chunk:016x}/{sha}"))
}

fn dirty_key(set: u64, chunk: u64, sha: &Sha256) -> Vec<u8> {
    key(&format!(
        "image-quality-dirty/{set:016x}/{chunk:016x}/{sha}"
    ))
}

/// Parses `{set}/{chunk}/{sha}` after a prefix.
fn parse_tail(tail: &[u8]) -> Option<(u64, u64, Sha256)> {
    let text = std::str::from_utf8(tail).ok()?;
    let mut parts = text.split('/');
    let set = u64::from_str_radix(parts.next()?, 16).ok()?;
    let chunk = u64::from_str_radix(parts.next()?, 16).ok()?;
    let sha = Sha256::parse_hex(parts.next()?)?;
    Some((set, chunk, sha))
}

/// Marks an image of a chunk for recomputing.
pub fn mark(tx: &mut Tx, set: u64, chunk: u64, sha: &Sha256) {
    tx.put(dirty_key(set, chunk, sha), Vec::new());
}

/// Whether the images of `task` have anything to assess: another live copy of the chunk (a
/// consensus) or, per image, a reference.
fn shared_chunk(r: &dyn Records, task: &Task) -> Result<bool, DomainError> {
    let copies = tasks::tasks(r, TaskIndex::Chunk(task.chunk), None, 2, |_| true)?;
    Ok(copies.len() >= 2)
}

/// Marks what a save of `sha` in `task` changes.
pub fn mark_save(tx: &mut Tx, task: &Task, sha: &Sha256) -> Result<(), DomainError> {
    if shared_chunk(tx, task)? || ground_truth::reference(tx, task.set_id, sha)?.is_some() {
        mark(tx, task.set_id, task.chunk, sha);
    }
    Ok(())
}

/// Marks every image of `task` that has something to assess (after a submit or an archive).
pub fn mark_task(tx: &mut Tx, task: &Task) -> Result<(), DomainError> {
    let shared = shared_chunk(tx, task)?;
    for sha in &task.images {
        if shared || ground_truth::reference(tx, task.set_id, sha)?.is_some() {
            mark(tx, task.set_id, task.chunk, sha);
        }
    }
    Ok(())
}

/// Marks `images` in every chunk of set `set` that holds them (after their reference changed).
pub fn mark_everywhere(tx: &mut Tx, set: u64, images: &[Sha256]) -> Result<(), DomainError> {
    let wanted: std::collections::HashSet<&Sha256> = images.iter().collect();
    let mut marks = Vec::new();
    for t in tasks::tasks(tx, TaskIndex::Set(set), None, usize::MAX, |_| true)? {
        marks.extend(
            t.images
                .iter()
                .filter(|s| wanted.contains(s))
                .map(|s| (t.chunk, *s)),
        );
    }
    for (chunk, sha) in marks {
        mark(tx, set, chunk, &sha);
    }
    Ok(())
}

/// Up to `limit` marked images of every set, oldest set and chunk first.
pub fn dirty(r: &dyn Records, limit: usize) -> Result<Vec<(u64, u64, Sha256)>, DomainError> {
    let prefix = key("image-quality-dirty/");
    let mut out = Vec::new();
    for item in r.scan(&prefix, None).take(limit) {
        let (k, _) = item?;
        out.push(
            parse_tail(&k[prefix.len()..])
                .ok_or_else(|| DomainError::Corrupt("quality mark".into()))?,
        );
    }
    Ok(out)
}

/// How many images of set `set` wait for their quality to be recomputed.
pub fn pending(r: &dyn Records, set: u64) -> Result<u64, DomainError> {
    let prefix = key(&format!("image-quality-dirty/{set:016x}/"));
    let mut n = 0;
    for item in r.scan(&prefix, None) {
        item?;
        n += 1;
    }
    Ok(n)
}

/// The live tasks of `chunk` holding `sha`, with what each contributes.
fn contributors(
    r: &dyn Records,
    chunk: u64,
    sha: &Sha256,
) -> Result<Vec<(Task, Option<annotations::Version>)>, DomainError> {
    let mut out = Vec::new();
    for t in tasks::tasks(r, TaskIndex::Chunk(chunk), None, usize::MAX, |t| {
        t.state != TaskState::Archived && t.images.contains(sha)
    })? {
        let version = annotations::current(r, t.id, sha)?;
        if version.is_some() || submitted(&t) {
            out.push((t, version));
        }
    }
    Ok(out)
}

/// Whether the annotator has handed the task in (its images are their final word).
fn submitted(t: &Task) -> bool {
    matches!(
        t.state,
        TaskState::Submitted | TaskState::InReview | TaskState::Accepted
    )
}

/// The basis an image's record would have now.
pub fn basis(r: &dyn Records, set: u64, chunk: u64, sha: &Sha256) -> Result<Basis, DomainError> {
    let reference = ground_truth::reference(r, set, sha)?;
    Ok(basis_of(&contributors(r, chunk, sha)?, reference.as_ref()))
}

fn basis_of(
    found: &[(Task, Option<annotations::Version>)],
    reference: Option<&ground_truth::Reference>,
) -> Basis {
    let versions = found
        .iter()
        .map(|(t, v)| (t.id, v.as_ref().map_or(0, |v| v.version), submitted(t)))
        .collect();
    Basis {
        versions,
        reference: reference.map(|g| g.set_ms),
    }
}

/// Computes the record of `sha` in `chunk` from the records as they are; `None` when the set is
/// gone.
pub fn assess(
    r: &dyn Records,
    set: u64,
    chunk: u64,
    sha: &Sha256,
) -> Result<Option<ImageQuality>, DomainError> {
    let Some(annotation_set) = annotation_sets::annotation_set(r, set)? else {
        return Ok(None);
    };
    let policy = annotation_set.quality;
    let settings = policy.settings();
    let found = contributors(r, chunk, sha)?;
    let reference = ground_truth::reference(r, set, sha)?;
    let truth = reference.as_ref().map(|g| Shape::parse_all(&g.shapes));
    let shapes: Vec<Vec<Shape>> = found
        .iter()
        .map(|(_, v)| {
            v.as_ref()
                .map(|v| Shape::parse_all(&v.shapes))
                .unwrap_or_default()
        })
        .collect();
    let annotators: Vec<String> = found
        .iter()
        .map(|(t, v)| {
            v.as_ref()
                .map(|v| v.saved_by.clone())
                .or_else(|| t.assignee.clone())
                .unwrap_or_default()
        })
        .collect();
    let (agreement, consensus) = if shapes.len() >= 2 {
        let contributions: Vec<Contribution> = annotators
            .iter()
            .zip(&shapes)
            .map(|(a, s)| Contribution {
                annotator: a,
                shapes: s,
            })
            .collect();
        let (merged, agreement) = consensus::merge_with_agreement(
            &contributions,
            policy.quorum_for(shapes.len()),
            &settings,
        );
        (agreement, Some(merged))
    } else {
        (None, None)
    };
    let merged_shapes: Option<Vec<Shape>> = consensus
        .as_ref()
        .map(|m| m.iter().map(|m| m.shape.clone()).collect());
    let versions = found
        .iter()
        .zip(&shapes)
        .zip(&annotators)
        .map(|(((t, v), s), annotator)| Assessed {
            task: t.id,
            annotator: annotator.clone(),
            version: v.as_ref().map_or(0, |v| v.version),
            with_consensus: merged_shapes
                .as_ref()
                .map(|c| agreement::between(s, c, &settings)),
            score: truth.as_ref().map(|g| Score::of(s, g, &settings)),
        })
        .collect();
    Ok(Some(ImageQuality {
        set,
        chunk,
        sha: *sha,
        basis: basis_of(&found, reference.as_ref()),
        versions,
        agreement,
        consensus,
    }))
}

/// One round of the quality worker's reading: up to `limit` marked images assessed, as the
/// JSON text a `QualityOp::Record` carries, stopping early once the texts pass `max_bytes`
/// (a record holds an image's consensus shapes). Also says whether more may be waiting.
pub fn assess_marked(
    r: &dyn Records,
    limit: usize,
    max_bytes: usize,
) -> Result<(Vec<String>, bool), DomainError> {
    let marked = dirty(r, limit)?;
    let mut more = marked.len() == limit;
    let (mut texts, mut bytes) = (Vec::new(), 0);
    for (set, chunk, sha) in marked {
        let Some(record) = assess(r, set, chunk, &sha)? else {
            continue;
        };
        let text =
            serde_json::to_string(&record).map_err(|e| DomainError::Corrupt(e.to_string()))?;
        bytes += text.len();
        texts.push(text);
        if bytes >= max_bytes {
            more = true;
            break;
        }
    }
    Ok((texts, more))
}

/// Keeps `record` if its basis is still the image's; the image's mark goes with it. Returns
/// whether it was kept (a record computed from versions since replaced is dropped and the mark
/// stays for the next round).
pub fn stage_record(tx: &mut Tx, record: &ImageQuality, at_ms: u64) -> Result<bool, DomainError> {
    let (set, chunk, sha) = (record.set, record.chunk, &record.sha);
    if basis(tx, set, chunk, sha)? != record.basis {
        return Ok(false);
    }
    tx.delete(dirty_key(set, chunk, sha));
    announce_low_scores(tx, record, at_ms)?;
    if record.versions.is_empty() {
        tx.delete(record_key(set, chunk, sha));
    } else {
        let text = serde_json::to_vec(record).map_err(|e| DomainError::Corrupt(e.to_string()))?;
        tx.put(record_key(set, chunk, sha), text);
    }
    Ok(true)
}

/// Queues `quality.below_threshold` for each version that scores below its set's
/// `review_below` and was not scored in the image's previous record (a recompute for another
/// annotator's save does not announce it again).
fn announce_low_scores(tx: &mut Tx, record: &ImageQuality, at_ms: u64) -> Result<(), DomainError> {
    let Some(threshold) =
        annotation_sets::annotation_set(tx, record.set)?.and_then(|s| s.quality.review_below)
    else {
        return Ok(());
    };
    let before = self::record(tx, record.set, record.chunk, &record.sha)?;
    let known = |task: u64, version: u64| {
        before.as_ref().is_some_and(|b| {
            b.versions
                .iter()
                .any(|v| v.task == task && v.version == version && v.score.is_some())
        })
    };
    for v in &record.versions {
        let Some(score) = v.score.as_ref().map(Score::overall) else {
            continue;
        };
        if score < threshold && !known(v.task, v.version) {
            let data = serde_json::json!({
                "annotation_set": record.set,
                "task": v.task,
                "annotator": v.annotator,
                "image": record.sha.to_string(),
                "version": v.version,
                "score": score,
                "threshold": threshold,
            });
            crate::webhooks::stage_event(
                tx,
                Some(record.set),
                crate::webhooks::Event::QualityBelowThreshold,
                &data,
                at_ms,
            )?;
        }
    }
    Ok(())
}

/// The record of `sha` in `chunk`, if any.
pub fn record(
    r: &dyn Records,
    set: u64,
    chunk: u64,
    sha: &Sha256,
) -> Result<Option<ImageQuality>, DomainError> {
    r.get(&record_key(set, chunk, sha))?
        .map(|raw| serde_json::from_slice(&raw).map_err(|e| DomainError::Corrupt(e.to_string())))
        .transpose()
}

/// A reviewer's choice of consensus for an image in a chunk: kept apart from the computed one,
/// which it overrides in exports until it is removed (a choice is reversible, and the computed
/// consensus stays current underneath it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    /// The shapes as JSON text.
    pub shapes: String,
    /// What it came from: "ann's version", "edited".
    pub source: String,
    pub by: String,
    pub at_ms: u64,
}

fn pin_key(set: u64, chunk: u64, sha: &Sha256) -> Vec<u8> {
    key(&format!("consensus-pin/{set:016x}/{chunk:016x}/{sha}"))
}

/// The pinned consensus of `sha` in `chunk`, if a reviewer chose one.
pub fn pin(
    r: &dyn Records,
    set: u64,
    chunk: u64,
    sha: &Sha256,
) -> Result<Option<Pin>, DomainError> {
    crate::records::get(r, &pin_key(set, chunk, sha))
}

/// Pins `shapes` (validated against the set's schema and the image) as the consensus of `sha`
/// in `chunk`, or, with `None`, goes back to the computed one. `Err` names the problem.
pub fn stage_pin(
    tx: &mut Tx,
    set: u64,
    chunk: u64,
    sha: &Sha256,
    pinned: Option<&Pin>,
) -> Result<Result<(), String>, DomainError> {
    let Some(annotation_set) = annotation_sets::annotation_set(tx, set)? else {
        return Ok(Err(format!("no annotation set {set}")));
    };
    let held = tasks::tasks(tx, TaskIndex::Chunk(chunk), None, 1, |t| {
        t.set_id == set && t.images.contains(sha)
    })?;
    if held.is_empty() {
        return Ok(Err(format!(
            "chunk: no task of chunk {chunk} in annotation set {set} holds image {sha}"
        )));
    }
    let Some(pinned) = pinned else {
        tx.delete(pin_key(set, chunk, sha));
        return Ok(Ok(()));
    };
    let Some(image) = crate::datasets::image(tx, annotation_set.dataset_id, sha)? else {
        return Ok(Err(format!("image {sha} is not in the set's dataset")));
    };
    let parsed: serde_json::Value = match serde_json::from_str(&pinned.shapes) {
        Ok(v) => v,
        Err(e) => return Ok(Err(format!("shapes: {e}"))),
    };
    if let Some(p) =
        annotations::problem(&parsed, &annotation_set.labels, image.width, image.height)
    {
        return Ok(Err(p));
    }
    tx.put_record(pin_key(set, chunk, sha), pinned)?;
    Ok(Ok(()))
}

/// Every record of set `set`, in chunk and image order.
pub fn records(r: &dyn Records, set: u64) -> Result<Vec<ImageQuality>, DomainError> {
    let prefix = key(&format!("image-quality/{set:016x}/"));
    let mut out = Vec::new();
    for item in r.scan(&prefix, None) {
        let (_, v) = item?;
        out.push(serde_json::from_slice(&v).map_err(|e| DomainError::Corrupt(e.to_string()))?);
    }
    Ok(out)
}
