//! Key encoding. Every key starts with the big-endian group id, so one group's records form a
//! contiguous, ordered range in each column family.

/// Length of the group prefix.
pub const GROUP_LEN: usize = 4;

/// The first key of `group`'s range.
pub fn group_start(group: u32) -> [u8; GROUP_LEN] {
    group.to_be_bytes()
}

/// The first key after `group`'s range (exclusive upper bound for scans and range deletes).
/// Group ids are small (shards + 1); `u32::MAX` is reserved so that this bound always exists.
pub fn group_end(group: u32) -> [u8; GROUP_LEN] {
    group.saturating_add(1).to_be_bytes()
}

/// Key of a Raft log entry: group ++ index, so entries sort by index.
pub fn log(group: u32, index: u64) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..4].copy_from_slice(&group.to_be_bytes());
    k[4..].copy_from_slice(&index.to_be_bytes());
    k
}

/// The log index encoded in a key made by [`log`].
pub fn log_index(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(4..12)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

/// Key of a named per-group record (vote, committed, applied state, ...).
pub fn named(group: u32, name: &str) -> Vec<u8> {
    named_bytes(group, name.as_bytes())
}

/// [`named`] for a name that is not text (the domain's record keys are bytes).
pub fn named_bytes(group: u32, name: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(GROUP_LEN + name.len());
    k.extend_from_slice(&group.to_be_bytes());
    k.extend_from_slice(name);
    k
}

/// Key of an object record: group ++ sha256.
pub fn object(group: u32, sha: &[u8; 32]) -> [u8; 36] {
    let mut k = [0u8; 36];
    k[..4].copy_from_slice(&group.to_be_bytes());
    k[4..].copy_from_slice(sha);
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_keys_sort_by_group_then_index() {
        assert!(log(1, 9) < log(1, 10));
        assert!(log(1, u64::MAX) < log(2, 0));
        assert_eq!(log_index(&log(7, 42)), Some(42));
        assert!(group_end(1).as_slice() > &log(1, u64::MAX)[..]);
        assert!(group_end(3).as_slice() > &object(3, &[0xff; 32])[..]);
        assert!(group_start(4).as_slice() > &object(3, &[0xff; 32])[..]);
    }
}
