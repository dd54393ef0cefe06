//! The web UI in a real browser: a 3-node cluster serving the embedded UI, and the whole
//! crowdsourced workflow (`tests/ui/workflow.mjs`) driven in headless Debian chromium through
//! playwright-core — users, upload and import, label schema, split, drawing with real mouse
//! events, the edit-conflict dialog, review with comments, dashboard and COCO export.
//!
//! Needs `node`/`npm` and `/usr/bin/chromium` (Debian's `chromium` package); playwright-core and
//! axe-core (accessibility checks of every page) are installed into `tests/ui/node_modules` from
//! the lock file on first use. Screenshots of every
//! step go to `$TESSERA_ARTEFACTS` (default `target/ui-artefacts`). `TESSERA_UI_SKIP=import` or
//! `=export` (comma separated) leaves those steps out while working on a node without them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tessera_cluster_tests::{png, Options, TestCluster, ADMIN_PASSWORD};

/// The whole browser workflow takes well under a minute on loopback; this is the hang guard.
const WORKFLOW_DEADLINE: Duration = Duration::from_secs(300);

fn ui_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("ui")
}

fn workspace_root() -> PathBuf {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR"));
    tests.parent().unwrap_or(tests).to_path_buf()
}

fn chromium() -> PathBuf {
    let path =
        PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    assert!(
        path.is_file(),
        "{} is missing: install Debian's chromium (scripts/setup.sh chromium)",
        path.display()
    );
    path
}

/// `npm ci` from the lock file when playwright-core or axe-core is not installed yet.
fn playwright() {
    let dir = ui_dir();
    let installed = ["playwright-core", "axe-core"].iter().all(|p| {
        dir.join("node_modules")
            .join(p)
            .join("package.json")
            .is_file()
    });
    if installed {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .status()
        .expect("npm (node's package manager) is required for the UI tests");
    assert!(status.success(), "npm ci in {} failed", dir.display());
}

#[tokio::test]
async fn the_whole_workflow_works_in_a_real_browser() {
    let browser = chromium();
    playwright();
    let cluster = TestCluster::start(Options::default()).await;

    let images = tempfile::tempdir().expect("temp dir");
    for seed in 0..6u64 {
        let path = images.path().join(format!("street-{seed}.png"));
        std::fs::write(path, png(640, 480, 700 + seed)).expect("write image");
    }
    let artefacts = std::env::var("TESSERA_ARTEFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join("target/ui-artefacts"));

    let mut child = Command::new("node")
        .arg("workflow.mjs")
        .current_dir(ui_dir())
        .env("TESSERA_URL", format!("http://{}", cluster.node(1).http))
        .env("TESSERA_URL2", format!("http://{}", cluster.node(2).http))
        .env("TESSERA_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("TESSERA_IMAGES_DIR", images.path())
        .env("TESSERA_ARTEFACTS", &artefacts)
        .env("CHROMIUM", &browser)
        .stdin(Stdio::null())
        .spawn()
        .expect("node is required for the UI tests");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break status;
        }
        if started.elapsed() > WORKFLOW_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the browser workflow did not finish in {WORKFLOW_DEADLINE:?}; screenshots in {}",
                artefacts.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        status.success(),
        "the browser workflow failed ({status}); its output is above, screenshots in {}\nerrors logged by node 1:\n{}",
        artefacts.display(),
        errors(&cluster.log(1))
    );
}

/// The last few ERROR lines of a node's log.
fn errors(log: &str) -> String {
    let found: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    found[found.len().saturating_sub(20)..].join("\n")
}
