//! Which images an export writes and where each one's shapes come from: a ground-truth
//! reference, the consensus of overlapping annotators, one task's version, or imported shapes
//! — as the export's [`Pick`] asks.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use tessera_domain::annotation_sets::{self, Label};
use tessera_domain::tasks::{self, TaskIndex, TaskState};
use tessera_domain::{annotations, datasets, ground_truth, image_quality};
use tessera_domain::{DomainError, Records};
use tessera_formats::export::shapes::Shape;
use tessera_raft::storage::Sha256;

/// Which version of an image an export takes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Pick {
    /// The image's ground truth if it has one, else the consensus where several annotators
    /// labelled it, else the version of the task furthest along.
    #[default]
    Auto,
    /// The consensus where there is one, else the task furthest along (references ignored).
    Consensus,
    /// The version of the task furthest along, as before consensus existed.
    Tasks,
    /// One annotator's versions only (`annotator`); images they have none of are left out.
    Annotator,
}

/// Where an image's shapes come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Task(u64),
    /// Shapes imported from another tool, not yet worked on in a task.
    Imported,
    /// The image's ground truth.
    Reference,
    /// The consensus of the image in this chunk: a reviewer's pin, else the computed one.
    Consensus(u64),
}

pub struct Entry {
    pub sha: Sha256,
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub source: Option<Source>,
    /// Versions and their mean pairwise agreement, where the image has two or more.
    pub agreement: Option<(usize, f64)>,
}

pub struct Plan {
    pub set_name: String,
    pub labels: Vec<Label>,
    pub entries: Vec<Entry>,
    /// Images left out because they have no accepted task (`only_accepted`).
    pub left_out: u64,
    /// Images left out because the chosen annotator has no version of them.
    pub not_by_annotator: u64,
    /// Images whose consensus was being recomputed when the plan was made.
    pub pending: u64,
}

/// What a plan takes from an export's options.
pub struct Wanted {
    pub only_accepted: bool,
    pub pick: Pick,
    pub annotator: Option<String>,
}

/// An archived task's work is used only where no live task has the image.
fn rank(s: TaskState) -> u8 {
    match s {
        TaskState::Archived => 0,
        TaskState::Accepted => 3,
        TaskState::Submitted | TaskState::InReview => 2,
        _ => 1,
    }
}

/// The images to export and where each one's shapes come from (see [`Pick`]).
pub fn plan(
    store: &dyn Records,
    set_id: u64,
    wanted: &Wanted,
) -> Result<Option<Plan>, DomainError> {
    let Some(set) = annotation_sets::annotation_set(store, set_id)? else {
        return Ok(None);
    };
    // Per image: the task furthest along (ties: the latest) and its chunk; per chunk, its
    // live copies; per image, the chosen annotator's task.
    let mut best: HashMap<Sha256, (u8, u64, u64)> = HashMap::new();
    let mut copies: HashMap<u64, u32> = HashMap::new();
    let mut mine: HashMap<Sha256, (u8, u64)> = HashMap::new();
    for task in tasks::tasks(store, TaskIndex::Set(set_id), None, usize::MAX, |_| true)? {
        let r = rank(task.state);
        if task.state != TaskState::Archived {
            *copies.entry(task.chunk).or_default() += 1;
        }
        let by_annotator = wanted.annotator.is_some() && task.assignee == wanted.annotator;
        for sha in &task.images {
            let slot = best.entry(*sha).or_insert((r, task.id, task.chunk));
            if (r, task.id) > (slot.0, slot.1) {
                *slot = (r, task.id, task.chunk);
            }
            if by_annotator {
                let slot = mine.entry(*sha).or_insert((r, task.id));
                if (r, task.id) > *slot {
                    *slot = (r, task.id);
                }
            }
        }
    }
    let references: HashSet<Sha256> = match wanted.pick {
        Pick::Auto => ground_truth::images(store, set_id)?.into_iter().collect(),
        _ => HashSet::new(),
    };
    let mut entries = Vec::new();
    let (mut left_out, mut not_by_annotator) = (0, 0);
    let mut after = None;
    loop {
        let page = datasets::images(store, set.dataset_id, after.as_ref(), 1000)?;
        let Some(last) = page.last().map(|i| i.sha) else {
            break;
        };
        for image in page {
            let task = best.get(&image.sha).copied();
            let accepted = task.is_some_and(|(r, _, _)| r == 3);
            if wanted.only_accepted && !accepted {
                left_out += 1;
                continue;
            }
            let record = match task {
                Some((_, _, chunk)) if copies.get(&chunk).copied().unwrap_or(0) >= 2 => {
                    image_quality::record(store, set_id, chunk, &image.sha)?
                }
                _ => None,
            };
            let agreement = record
                .as_ref()
                .and_then(|q| q.agreement.map(|a| (q.versions.len(), a)));
            let saved = |id: u64| -> Result<bool, DomainError> {
                Ok(annotations::current(store, id, &image.sha)?.is_some())
            };
            let source = match wanted.pick {
                Pick::Annotator => match mine.get(&image.sha) {
                    Some(&(_, id)) if saved(id)? => Some(Source::Task(id)),
                    _ => {
                        not_by_annotator += 1;
                        continue;
                    }
                },
                Pick::Auto if references.contains(&image.sha) => Some(Source::Reference),
                Pick::Auto | Pick::Consensus
                    if record.as_ref().is_some_and(|q| q.consensus.is_some()) =>
                {
                    record.as_ref().map(|q| Source::Consensus(q.chunk))
                }
                _ => match task {
                    Some((_, id, _)) if saved(id)? => Some(Source::Task(id)),
                    _ if !wanted.only_accepted => Some(Source::Imported),
                    _ => None,
                },
            };
            entries.push(Entry {
                sha: image.sha,
                name: image.name,
                width: image.width,
                height: image.height,
                source,
                agreement,
            });
        }
        after = Some(last);
    }
    let pending = match wanted.pick {
        Pick::Auto | Pick::Consensus => image_quality::pending(store, set_id)?,
        _ => 0,
    };
    Ok(Some(Plan {
        set_name: set.name,
        labels: set.labels,
        entries,
        left_out,
        not_by_annotator,
        pending,
    }))
}

/// The shapes of a batch of entries, read in one go from the local catalogue replica.
pub fn shapes_of(
    store: &dyn Records,
    set_id: u64,
    batch: &[(Sha256, Option<Source>)],
) -> Result<Vec<Vec<Shape>>, DomainError> {
    let mut out = Vec::with_capacity(batch.len());
    for (sha, source) in batch {
        let shapes = match source {
            Some(Source::Task(task)) => {
                annotations::current(store, *task, sha)?.map(|v| Shape::parse_all(&v.shapes))
            }
            Some(Source::Imported) => {
                annotations::imported(store, set_id, sha)?.map(|v| Shape::parse_all(&v.shapes))
            }
            Some(Source::Reference) => {
                ground_truth::reference(store, set_id, sha)?.map(|g| Shape::parse_all(&g.shapes))
            }
            Some(Source::Consensus(chunk)) => match image_quality::pin(store, set_id, *chunk, sha)?
            {
                Some(pin) => Some(Shape::parse_all(&pin.shapes)),
                None => image_quality::record(store, set_id, *chunk, sha)?
                    .and_then(|q| q.consensus)
                    .map(|merged| merged.into_iter().map(|m| m.shape).collect()),
            },
            None => None,
        };
        out.push(shapes.unwrap_or_default());
    }
    Ok(out)
}

/// `quality.csv`: per image its name, where its shapes came from, and its versions and their
/// agreement where it has several.
pub fn agreement_csv(entries: &[Entry]) -> String {
    let mut out = String::from("image,sha256,source,versions,agreement\n");
    for e in entries {
        let source = match e.source {
            Some(Source::Task(id)) => format!("task {id}"),
            Some(Source::Imported) => "imported".into(),
            Some(Source::Reference) => "ground truth".into(),
            Some(Source::Consensus(_)) => "consensus".into(),
            None => String::new(),
        };
        let (versions, agreement) = match e.agreement {
            Some((n, a)) => (n.to_string(), format!("{a:.4}")),
            None => (String::new(), String::new()),
        };
        out.push_str(&format!(
            "{},{},{source},{versions},{agreement}\n",
            tessera_formats::export::csv::field(&e.name),
            e.sha
        ));
    }
    out
}
