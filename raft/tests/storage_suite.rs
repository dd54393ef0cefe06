//! openraft's storage conformance suite against the RocksDB log store and state machine.

use std::sync::Arc;
use std::time::Duration;

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use tempfile::TempDir;
use tessera_raft::storage::Store;
use tessera_raft::{Absent, LogStore, NodeId, StateMachine, TypeConfig};

struct RocksBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for RocksBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<NodeId>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(Store::open(&dir.path().join("db")).expect("open rocksdb"));
        // A non-zero group id checks that nothing assumes group 0.
        let log = LogStore::new(store.clone(), 7);
        let sm = StateMachine::open(
            store,
            7,
            &dir.path().join("snapshots"),
            None,
            Arc::new(Absent::new(Duration::from_secs(1))),
        )
        .await?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    if let Err(e) = Suite::test_all(RocksBuilder) {
        panic!("storage suite failed: {e}");
    }
}
