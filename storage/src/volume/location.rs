//! Where an object's bytes are: the value of the `needles` index.

use crate::error::StorageError;

/// The body of one needle: volume id, byte offset of the body in that file, body length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub volume: u32,
    pub offset: u64,
    pub len: u64,
}

const ENCODED_LEN: usize = 20;

impl Location {
    /// No needle: volume ids start at 1. A log stub pointing here stands for an upload whose
    /// bytes this replica did not get with it.
    pub const NOWHERE: Location = Location {
        volume: 0,
        offset: 0,
        len: 0,
    };

    /// The location a log stub's fields name, unless it is [`Location::NOWHERE`].
    pub fn of_stub(volume: u32, offset: u64, len: u64) -> Option<Location> {
        (volume != 0).then_some(Location {
            volume,
            offset,
            len,
        })
    }

    /// Fixed 20-byte form stored in RocksDB (no serde framing: millions of these are scanned).
    pub fn encode(&self) -> [u8; ENCODED_LEN] {
        let mut out = [0u8; ENCODED_LEN];
        out[..4].copy_from_slice(&self.volume.to_le_bytes());
        out[4..12].copy_from_slice(&self.offset.to_le_bytes());
        out[12..].copy_from_slice(&self.len.to_le_bytes());
        out
    }

    pub fn decode(raw: &[u8]) -> Result<Location, StorageError> {
        let raw: &[u8; ENCODED_LEN] = raw
            .try_into()
            .map_err(|_| StorageError::Corrupt("needle location length".into()))?;
        let mut volume = [0u8; 4];
        volume.copy_from_slice(&raw[..4]);
        let mut offset = [0u8; 8];
        offset.copy_from_slice(&raw[4..12]);
        let mut len = [0u8; 8];
        len.copy_from_slice(&raw[12..]);
        Ok(Location {
            volume: u32::from_le_bytes(volume),
            offset: u64::from_le_bytes(offset),
            len: u64::from_le_bytes(len),
        })
    }
}
