//! A full disk (issue 11): the node refuses writes with 507 `disk_full` and `Retry-After`,
//! keeps serving reads, restarts with the disk still full, and takes writes again by itself
//! once space is freed; no Raft group of it stops. Each node needs a small file system of its
//! own to fill, which the chaos harness provides (tmpfs mounts in a mount namespace of its
//! own, so nothing outlives the run): this test runs its `disk-full` fault, whose checks are
//! those promises, and fails on any finding. Needs root, like the harness.

use std::process::Command;

use tessera_cluster_tests::binary;

#[test]
fn a_full_disk_refuses_writes_serves_reads_restarts_and_resumes() {
    let chaos = binary().with_file_name("chaos");
    let out = tempfile::tempdir().expect("temp dir");
    let run = Command::new(&chaos)
        .args([
            "--seed",
            "3",
            "--cycles",
            "3",
            "--nodes",
            "3",
            "--shards",
            "2",
            "--faults",
            "disk-full",
            "--hold-ms",
            "2000-3000",
            "--quiet-ms",
            "300",
            "--fail-on-findings",
            "--out",
        ])
        .arg(out.path())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (cargo build --bins first)", chaos.display()));
    assert!(
        run.status.success(),
        "chaos --faults disk-full: {}\n{}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
}
