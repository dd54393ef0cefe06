//! Datasets: named sets of images, kept in the catalogue.
//!
//! A dataset's images are references to content-addressed objects. The reference counts live
//! with the objects, in their shard groups, so adding and removing images spans two groups.
//! The API orders the two steps so that a crash in between can only leave a count too high
//! (an object kept longer than needed), never too low: references are added before the
//! membership is recorded, and dropped after it is removed.

use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};
use tessera_storage::{keys, Cf, Sha256, StorageError, Store};

use crate::placement::META_GROUP;

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
    keys::named(META_GROUP, &format!("dataset/{id:016x}"))
}

fn name_key(name: &str) -> Vec<u8> {
    keys::named(META_GROUP, &format!("dataset-name/{name}"))
}

fn image_prefix(id: u64) -> Vec<u8> {
    keys::named(META_GROUP, &format!("dataset-image/{id:016x}/"))
}

fn image_key(id: u64, sha: &Sha256) -> Vec<u8> {
    let mut k = image_prefix(id);
    k.extend_from_slice(sha.to_string().as_bytes());
    k
}

pub(crate) fn get<T: serde::de::DeserializeOwned>(
    store: &Store,
    key: &[u8],
) -> Result<Option<T>, StorageError> {
    match store.get(Cf::Catalog, key)? {
        Some(raw) => Ok(Some(bincode::deserialize(&raw)?)),
        None => Ok(None),
    }
}

/// Stages a dataset op. Reads see the state before this entry.
pub fn stage(
    store: &Store,
    batch: &mut WriteBatch,
    op: &DatasetOp,
) -> Result<DatasetOutcome, StorageError> {
    let cf = store.cf(Cf::Catalog);
    let put = |batch: &mut WriteBatch, dataset: &Dataset| -> Result<(), StorageError> {
        batch.put_cf(cf, dataset_key(dataset.id), bincode::serialize(dataset)?);
        Ok(())
    };
    if let DatasetOp::Create {
        name,
        created_by,
        created_ms,
    } = op
    {
        if store.get(Cf::Catalog, &name_key(name))?.is_some() {
            return Ok(DatasetOutcome::NameTaken(name.clone()));
        }
        let id = get::<u64>(store, &keys::named(META_GROUP, NEXT_ID))?.unwrap_or(1);
        batch.put_cf(
            cf,
            keys::named(META_GROUP, NEXT_ID),
            bincode::serialize(&(id + 1))?,
        );
        batch.put_cf(cf, name_key(name), bincode::serialize(&id)?);
        let dataset = Dataset {
            id,
            name: name.clone(),
            created_by: created_by.clone(),
            created_ms: *created_ms,
            image_count: 0,
        };
        put(batch, &dataset)?;
        return Ok(DatasetOutcome::Dataset(dataset));
    }
    let id = match op {
        DatasetOp::Rename { id, .. }
        | DatasetOp::Delete { id }
        | DatasetOp::AddImages { id, .. }
        | DatasetOp::RemoveImages { id, .. } => *id,
        DatasetOp::Create { .. } => unreachable!("handled above"),
    };
    let Some(mut dataset) = get::<Dataset>(store, &dataset_key(id))? else {
        return Ok(DatasetOutcome::NoSuchDataset(id));
    };
    let outcome = match op {
        DatasetOp::Rename { name, .. } => {
            if *name != dataset.name {
                if store.get(Cf::Catalog, &name_key(name))?.is_some() {
                    return Ok(DatasetOutcome::NameTaken(name.clone()));
                }
                batch.delete_cf(cf, name_key(&dataset.name));
                batch.put_cf(cf, name_key(name), bincode::serialize(&id)?);
                dataset.name = name.clone();
                put(batch, &dataset)?;
            }
            DatasetOutcome::Dataset(dataset)
        }
        DatasetOp::Delete { .. } => {
            if dataset.image_count > 0 {
                return Ok(DatasetOutcome::NotEmpty(dataset.image_count));
            }
            batch.delete_cf(cf, dataset_key(id));
            batch.delete_cf(cf, name_key(&dataset.name));
            DatasetOutcome::Deleted
        }
        DatasetOp::AddImages { images, .. } => {
            let mut added = Vec::new();
            for image in images {
                let key = image_key(id, &image.sha);
                if store.get(Cf::Catalog, &key)?.is_none() && !added.contains(&image.sha) {
                    batch.put_cf(cf, key, bincode::serialize(image)?);
                    added.push(image.sha);
                }
            }
            dataset.image_count += added.len() as u64;
            put(batch, &dataset)?;
            DatasetOutcome::Images(added)
        }
        DatasetOp::RemoveImages { shas, .. } => {
            let mut removed = Vec::new();
            for sha in shas {
                let key = image_key(id, sha);
                if store.get(Cf::Catalog, &key)?.is_some() && !removed.contains(sha) {
                    batch.delete_cf(cf, key);
                    removed.push(*sha);
                }
            }
            dataset.image_count -= removed.len() as u64;
            put(batch, &dataset)?;
            DatasetOutcome::Images(removed)
        }
        DatasetOp::Create { .. } => unreachable!("handled above"),
    };
    Ok(outcome)
}

/// Reads of this node's catalogue replica (call `Cluster::catalog_barrier` first for
/// read-your-writes).
pub fn dataset(store: &Store, id: u64) -> Result<Option<Dataset>, StorageError> {
    get(store, &dataset_key(id))
}

pub(crate) fn scan<T: serde::de::DeserializeOwned>(
    store: &Store,
    prefix: &[u8],
    after: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<T>, StorageError> {
    let start = after.map(|a| {
        let mut k = prefix.to_vec();
        k.extend_from_slice(a);
        k.push(0);
        k
    });
    let iter = store.scan_prefix(Cf::Catalog, prefix, start.as_deref());
    let mut out = Vec::new();
    for item in iter.take(limit) {
        let (_, v) = item?;
        out.push(bincode::deserialize(&v)?);
    }
    Ok(out)
}

/// One image of a dataset.
pub fn image(store: &Store, id: u64, sha: &Sha256) -> Result<Option<DatasetImage>, StorageError> {
    get(store, &image_key(id, sha))
}

/// Datasets in id order after `after`.
pub fn datasets(
    store: &Store,
    after: Option<u64>,
    limit: usize,
) -> Result<Vec<Dataset>, StorageError> {
    let prefix = keys::named(META_GROUP, "dataset/");
    let after = after.map(|a| format!("{a:016x}"));
    scan(store, &prefix, after.as_deref().map(str::as_bytes), limit)
}

/// A dataset's images in hash order after `after`.
pub fn images(
    store: &Store,
    id: u64,
    after: Option<&Sha256>,
    limit: usize,
) -> Result<Vec<DatasetImage>, StorageError> {
    let after = after.map(|s| s.to_string());
    scan(
        store,
        &image_prefix(id),
        after.as_deref().map(str::as_bytes),
        limit,
    )
}
