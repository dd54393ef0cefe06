//! The domain's records ([`tessera_domain::Records`]) on RocksDB: one group's range of the
//! catalogue column family, the domain's key names behind the group's prefix.

use std::collections::BTreeMap;

use rocksdb::WriteBatch;
use tessera_domain::{DomainError, Records, Scan};

use crate::db::{Cf, Store};
use crate::error::StorageError;
use crate::keys;

/// A read view of `group`'s domain records (the catalogue group's, in practice).
pub struct GroupRecords<'a> {
    store: &'a Store,
    group: u32,
}

impl Store {
    pub fn records(&self, group: u32) -> GroupRecords<'_> {
        GroupRecords { store: self, group }
    }

    /// Stages a domain transaction's writes for `group` in `batch`, so they land atomically
    /// with whatever else the batch holds (the entry's applied index).
    pub fn stage_writes(
        &self,
        batch: &mut WriteBatch,
        group: u32,
        writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    ) {
        let cf = self.cf(Cf::Catalog);
        for (name, value) in writes {
            let key = keys::named_bytes(group, &name);
            match value {
                Some(value) => batch.put_cf(cf, key, value),
                None => batch.delete_cf(cf, key),
            }
        }
    }
}

fn domain_error(e: StorageError) -> DomainError {
    match e {
        StorageError::Corrupt(what) => DomainError::Corrupt(what),
        other => DomainError::Storage(other.to_string()),
    }
}

impl Records for GroupRecords<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, DomainError> {
        self.store
            .get(Cf::Catalog, &keys::named_bytes(self.group, key))
            .map_err(domain_error)
    }

    fn scan<'a>(&'a self, prefix: &[u8], from: Option<&[u8]>) -> Scan<'a> {
        let prefix = keys::named_bytes(self.group, prefix);
        let from = from.map(|f| keys::named_bytes(self.group, f));
        let iter = self
            .store
            .scan_prefix(Cf::Catalog, &prefix, from.as_deref());
        Box::new(iter.map(|item| {
            let (k, v) = item.map_err(domain_error)?;
            Ok((k[keys::GROUP_LEN..].to_vec(), v.into_vec()))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_live_behind_their_group_prefix() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("db")).expect("open");
        let mut writes = BTreeMap::new();
        writes.insert(b"a/1".to_vec(), Some(b"one".to_vec()));
        writes.insert(b"a/2".to_vec(), Some(b"two".to_vec()));
        writes.insert(b"b/1".to_vec(), Some(b"other".to_vec()));
        let mut batch = WriteBatch::default();
        store.stage_writes(&mut batch, 0, writes.clone());
        store.stage_writes(&mut batch, 1, writes);
        store.write(batch, false).expect("write");
        let mut delete = BTreeMap::new();
        delete.insert(b"a/2".to_vec(), None);
        let mut batch = WriteBatch::default();
        store.stage_writes(&mut batch, 1, delete);
        store.write(batch, false).expect("write");
        assert_eq!(
            store.get(Cf::Catalog, &keys::named(0, "a/1")).expect("get"),
            Some(b"one".to_vec())
        );
        let zero: Vec<_> = store
            .records(0)
            .scan(b"a/", None)
            .map(|e| e.expect("scan").0)
            .collect();
        assert_eq!(zero, [b"a/1".to_vec(), b"a/2".to_vec()]);
        let one = store.records(1);
        assert_eq!(one.get(b"a/2").expect("get"), None);
        assert_eq!(one.get(b"b/1").expect("get"), Some(b"other".to_vec()));
        assert_eq!(one.scan(b"a/", Some(b"a/1")).count(), 1);
    }
}
