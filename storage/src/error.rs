use std::io;

/// Failures of the local store. RocksDB and I/O errors are fatal for the operation at hand;
/// `Corrupt` means bytes on disk that this version cannot decode.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// A domain read or transition over this store failed.
    #[error(transparent)]
    Domain(#[from] tessera_domain::DomainError),
}

impl StorageError {
    /// Whether the error says bytes on disk are damaged (a RocksDB table or log failing its
    /// checksum, a record that does not decode), as opposed to a failing disk or a full one.
    pub fn is_corruption(&self) -> bool {
        match self {
            StorageError::Rocks(e) => e.kind() == rocksdb::ErrorKind::Corruption,
            StorageError::Corrupt(_) => true,
            StorageError::Io(_) | StorageError::Domain(_) => false,
        }
    }
}

impl From<bincode::Error> for StorageError {
    fn from(e: bincode::Error) -> Self {
        StorageError::Corrupt(e.to_string())
    }
}
