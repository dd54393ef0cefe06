//! The domain's view of storage: ordered key/value records, and a transaction overlay that
//! collects one op's writes.
//!
//! The domain never names RocksDB: `storage` implements [`Records`] for the catalogue group's
//! key range, and the state machine writes a [`Tx`]'s [`Tx::into_writes`] into the same batch
//! as the entry's applied index, so an op's writes land atomically with it.

use std::collections::BTreeMap;
use std::iter::Peekable;
use std::ops::Bound;

use serde::de::DeserializeOwned;

use crate::error::DomainError;

/// A key and its value, as a scan yields them.
pub type Entry = (Vec<u8>, Vec<u8>);

/// What a scan yields: entries in key order, or the error that stopped it.
pub type Scan<'a> = Box<dyn Iterator<Item = Result<Entry, DomainError>> + 'a>;

/// Read access to the domain's records, as of one point in the log.
pub trait Records {
    /// The value stored under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, DomainError>;

    /// Every record whose key starts with `prefix`, in key order, starting at `from` (inclusive)
    /// when given, else at `prefix`.
    fn scan<'a>(&'a self, prefix: &[u8], from: Option<&[u8]>) -> Scan<'a>;
}

/// Reads and decodes one record.
pub fn get<T: DeserializeOwned>(r: &dyn Records, key: &[u8]) -> Result<Option<T>, DomainError> {
    r.get(key)?
        .map(|raw| bincode::deserialize(&raw).map_err(DomainError::from))
        .transpose()
}

/// Decodes every record under `prefix` (from `from` on), in key order.
pub fn scan<'a, T: DeserializeOwned + 'a>(
    r: &'a dyn Records,
    prefix: &[u8],
    from: Option<&[u8]>,
) -> impl Iterator<Item = Result<T, DomainError>> + 'a {
    r.scan(prefix, from)
        .map(|item| item.and_then(|(_, v)| Ok(bincode::deserialize(&v)?)))
}

/// Up to `limit` decoded records under `prefix` whose key suffix sorts after `after`: one page
/// of a listing.
pub fn page<T: DeserializeOwned>(
    r: &dyn Records,
    prefix: &[u8],
    after: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<T>, DomainError> {
    let start = after.map(|a| {
        let mut k = prefix.to_vec();
        k.extend_from_slice(a);
        k.push(0);
        k
    });
    scan(r, prefix, start.as_deref()).take(limit).collect()
}

/// Takes the next id of the counter stored (bincode `u64`) under `name`; ids start at 1.
pub fn next_id(tx: &mut Tx, name: &str) -> Result<u64, DomainError> {
    let key = crate::key(name);
    let id = get::<u64>(tx, &key)?.unwrap_or(1);
    tx.put_record(key, &id.saturating_add(1))?;
    Ok(id)
}

/// The exclusive upper bound of the keys starting with `prefix`; `None` when every key from
/// `prefix` on starts with it (all bytes 0xff).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// One op's writes over a base view. Reads see the writes made so far in this transaction
/// (so a transition never has to remember what it already staged), then the base.
pub struct Tx<'a> {
    base: &'a dyn Records,
    /// `None` marks a deletion.
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl<'a> Tx<'a> {
    pub fn new(base: &'a dyn Records) -> Tx<'a> {
        Tx {
            base,
            writes: BTreeMap::new(),
        }
    }

    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes.insert(key, Some(value));
    }

    /// Encodes and stores a record.
    pub fn put_record<T: serde::Serialize>(
        &mut self,
        key: Vec<u8>,
        value: &T,
    ) -> Result<(), DomainError> {
        self.put(key, bincode::serialize(value)?);
        Ok(())
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.writes.insert(key, None);
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// The writes in key order; `None` values are deletions.
    pub fn into_writes(self) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
        self.writes
    }
}

impl Records for Tx<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, DomainError> {
        match self.writes.get(key) {
            Some(staged) => Ok(staged.clone()),
            None => self.base.get(key),
        }
    }

    fn scan<'b>(&'b self, prefix: &[u8], from: Option<&[u8]>) -> Scan<'b> {
        let start = from.unwrap_or(prefix).to_vec();
        let end = match prefix_end(prefix) {
            Some(end) => Bound::Excluded(end),
            None => Bound::Unbounded,
        };
        let staged = self
            .writes
            .range::<Vec<u8>, _>((Bound::Included(start), end))
            .peekable();
        Box::new(Merge {
            base: self.base.scan(prefix, from).peekable(),
            staged,
        })
    }
}

/// Merges a base scan with the staged writes of the same range, staged ones winning.
struct Merge<'b, S: Iterator<Item = (&'b Vec<u8>, &'b Option<Vec<u8>>)>> {
    base: Peekable<Scan<'b>>,
    staged: Peekable<S>,
}

impl<'b, S: Iterator<Item = (&'b Vec<u8>, &'b Option<Vec<u8>>)>> Iterator for Merge<'b, S> {
    type Item = Result<Entry, DomainError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let take_staged = match (self.base.peek(), self.staged.peek()) {
                (None, None) => return None,
                (Some(Err(_)), _) => return self.base.next(),
                (None, Some(_)) => true,
                (Some(_), None) => false,
                (Some(Ok((base_key, _))), Some((staged_key, _))) => {
                    if base_key == *staged_key {
                        // The staged write replaces the stored record.
                        self.base.next();
                        true
                    } else {
                        *staged_key < base_key
                    }
                }
            };
            if !take_staged {
                return self.base.next();
            }
            let (key, value) = self.staged.next()?;
            if let Some(value) = value {
                return Some(Ok((key.clone(), value.clone())));
            }
        }
    }
}

/// An in-memory record store: the base of domain unit tests, and of nothing else.
#[cfg(test)]
#[derive(Default)]
pub struct MemRecords(pub BTreeMap<Vec<u8>, Vec<u8>>);

#[cfg(test)]
impl MemRecords {
    /// Applies a transaction's writes, as the state machine does.
    pub fn commit(&mut self, writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>) {
        for (k, v) in writes {
            match v {
                Some(v) => self.0.insert(k, v),
                None => self.0.remove(&k),
            };
        }
    }
}

#[cfg(test)]
impl Records for MemRecords {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, DomainError> {
        Ok(self.0.get(key).cloned())
    }

    fn scan<'a>(&'a self, prefix: &[u8], from: Option<&[u8]>) -> Scan<'a> {
        let start = from.unwrap_or(prefix).to_vec();
        let prefix = prefix.to_vec();
        Box::new(
            self.0
                .range(start..)
                .take_while(move |(k, _)| k.starts_with(&prefix))
                .map(|(k, v)| Ok((k.clone(), v.clone()))),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(r: &dyn Records, prefix: &[u8], from: Option<&[u8]>) -> Vec<String> {
        r.scan(prefix, from)
            .map(|e| String::from_utf8(e.expect("scan").0).expect("utf8"))
            .collect()
    }

    #[test]
    fn a_transaction_reads_its_own_writes_and_deletions() {
        let mut base = MemRecords::default();
        for k in ["a/1", "a/3", "a/5", "b/1"] {
            base.0.insert(k.as_bytes().to_vec(), b"old".to_vec());
        }
        let mut tx = Tx::new(&base);
        tx.put(b"a/2".to_vec(), b"new".to_vec());
        tx.put(b"a/3".to_vec(), b"new".to_vec());
        tx.delete(b"a/5".to_vec());
        tx.put(b"c/1".to_vec(), b"new".to_vec());
        assert_eq!(tx.get(b"a/3").expect("get"), Some(b"new".to_vec()));
        assert_eq!(tx.get(b"a/5").expect("get"), None);
        assert_eq!(tx.get(b"a/1").expect("get"), Some(b"old".to_vec()));
        assert_eq!(keys(&tx, b"a/", None), ["a/1", "a/2", "a/3"]);
        assert_eq!(keys(&tx, b"a/", Some(b"a/2")), ["a/2", "a/3"]);
        assert_eq!(keys(&tx, b"c/", None), ["c/1"]);
        let values: Vec<Vec<u8>> = tx.scan(b"a/", None).map(|e| e.expect("scan").1).collect();
        assert_eq!(values, [b"old".to_vec(), b"new".to_vec(), b"new".to_vec()]);
        let writes = tx.into_writes();
        base.commit(writes);
        assert_eq!(keys(&base, b"a/", None), ["a/1", "a/2", "a/3"]);
    }

    #[test]
    fn prefix_end_is_the_first_key_after_the_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
    }
}
