//! Datasets: named sets of images, kept in the catalogue.
//!
//! A dataset's images are references to content-addressed objects. The reference counts live
//! with the objects, in their shard groups, so adding and removing images spans two groups.
//! The API orders the two steps so that a crash in between can only leave a count too high
//! (an object kept longer than needed), never too low: references are added before the
//! membership is recorded, and dropped after it is removed.

use serde::{Deserialize, Serialize};

use crate::records::{get, next_id, page};
use crate::{key, DomainError, Records, Sha256, Tx};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dataset {
    pub id: u64,
    pub name: String,
    pub created_by: String,
    pub created_ms: u64,
    pub image_count: u64,
}

/// One image of a dataset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetImage {
    pub sha: Sha256,
    /// The name the image was added under (its original path, for imports).
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub added_ms: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum DatasetOp {
    Create {
        name: String,
        created_by: String,
        created_ms: u64,
    },
    Rename {
        id: u64,
        name: String,
    },
    /// Only an empty dataset can be deleted (the API removes the images first).
    Delete {
        id: u64,
    },
    /// Adds the images not in the dataset yet.
    AddImages {
        id: u64,
        images: Vec<DatasetImage>,
    },
    /// Removes the images that are in the dataset.
    RemoveImages {
        id: u64,
        shas: Vec<Sha256>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DatasetOutcome {
    Dataset(Dataset),
    /// The images the op actually added or removed.
    Images(Vec<Sha256>),
    Deleted,
    NameTaken(String),
    NotEmpty(u64),
    NoSuchDataset(u64),
}

const NEXT_ID: &str = "dataset-next-id";

fn dataset_key(id: u64) -> Vec<u8> {
    key(&format!("dataset/{id:016x}"))
}

fn name_key(name: &str) -> Vec<u8> {
    key(&format!("dataset-name/{name}"))
}

fn image_prefix(id: u64) -> Vec<u8> {
    key(&format!("dataset-image/{id:016x}/"))
}

fn image_key(id: u64, sha: &Sha256) -> Vec<u8> {
    let mut k = image_prefix(id);
    k.extend_from_slice(sha.to_string().as_bytes());
    k
}

/// Stages a dataset op.
pub fn stage(tx: &mut Tx, op: &DatasetOp) -> Result<DatasetOutcome, DomainError> {
    let id = match op {
        DatasetOp::Create {
            name,
            created_by,
            created_ms,
        } => {
            if tx.get(&name_key(name))?.is_some() {
                return Ok(DatasetOutcome::NameTaken(name.clone()));
            }
            let id = next_id(tx, NEXT_ID)?;
            tx.put_record(name_key(name), &id)?;
            let dataset = Dataset {
                id,
                name: name.clone(),
                created_by: created_by.clone(),
                created_ms: *created_ms,
                image_count: 0,
            };
            tx.put_record(dataset_key(id), &dataset)?;
            return Ok(DatasetOutcome::Dataset(dataset));
        }
        DatasetOp::Rename { id, .. }
        | DatasetOp::Delete { id }
        | DatasetOp::AddImages { id, .. }
        | DatasetOp::RemoveImages { id, .. } => *id,
    };
    let Some(mut dataset) = get::<Dataset>(tx, &dataset_key(id))? else {
        return Ok(DatasetOutcome::NoSuchDataset(id));
    };
    let outcome = match op {
        DatasetOp::Create { .. } => return Ok(DatasetOutcome::NoSuchDataset(id)),
        DatasetOp::Rename { name, .. } => {
            if *name != dataset.name {
                if tx.get(&name_key(name))?.is_some() {
                    return Ok(DatasetOutcome::NameTaken(name.clone()));
                }
                tx.delete(name_key(&dataset.name));
                tx.put_record(name_key(name), &id)?;
                dataset.name = name.clone();
                tx.put_record(dataset_key(id), &dataset)?;
            }
            DatasetOutcome::Dataset(dataset)
        }
        DatasetOp::Delete { .. } => {
            if dataset.image_count > 0 {
                return Ok(DatasetOutcome::NotEmpty(dataset.image_count));
            }
            tx.delete(dataset_key(id));
            tx.delete(name_key(&dataset.name));
            DatasetOutcome::Deleted
        }
        DatasetOp::AddImages { images, .. } => {
            let mut added = Vec::new();
            for image in images {
                // The transaction sees its own writes, so an image listed twice is added once.
                let key = image_key(id, &image.sha);
                if tx.get(&key)?.is_none() {
                    tx.put_record(key, image)?;
                    added.push(image.sha);
                }
            }
            dataset.image_count = dataset.image_count.saturating_add(added.len() as u64);
            tx.put_record(dataset_key(id), &dataset)?;
            DatasetOutcome::Images(added)
        }
        DatasetOp::RemoveImages { shas, .. } => {
            let mut removed = Vec::new();
            for sha in shas {
                let key = image_key(id, sha);
                if tx.get(&key)?.is_some() {
                    tx.delete(key);
                    removed.push(*sha);
                }
            }
            dataset.image_count = dataset.image_count.saturating_sub(removed.len() as u64);
            tx.put_record(dataset_key(id), &dataset)?;
            DatasetOutcome::Images(removed)
        }
    };
    Ok(outcome)
}

/// Reads of this node's catalogue replica (call `Cluster::catalog_barrier` first for
/// read-your-writes).
pub fn dataset(r: &dyn Records, id: u64) -> Result<Option<Dataset>, DomainError> {
    get(r, &dataset_key(id))
}

/// One image of a dataset.
pub fn image(r: &dyn Records, id: u64, sha: &Sha256) -> Result<Option<DatasetImage>, DomainError> {
    get(r, &image_key(id, sha))
}

/// Datasets in id order after `after`.
pub fn datasets(
    r: &dyn Records,
    after: Option<u64>,
    limit: usize,
) -> Result<Vec<Dataset>, DomainError> {
    let prefix = key("dataset/");
    let after = after.map(|a| format!("{a:016x}"));
    page(r, &prefix, after.as_deref().map(str::as_bytes), limit)
}

/// A dataset's images in hash order after `after`.
pub fn images(
    r: &dyn Records,
    id: u64,
    after: Option<&Sha256>,
    limit: usize,
) -> Result<Vec<DatasetImage>, DomainError> {
    let after = after.map(|s| s.to_string());
    page(
        r,
        &image_prefix(id),
        after.as_deref().map(str::as_bytes),
        limit,
    )
}
