//! The API fuzz run: schemathesis (pinned in tests/api/requirements.txt, configured by
//! tests/api/schemathesis.toml) generates requests from the served OpenAPI document, valid and
//! invalid, sends them signed in as the admin and checks every answer against the document.
//! The bar is no server error and no answer the document does not describe.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use tessera_client::Method;
use tessera_cluster_tests::{png, Options, TestCluster};

use crate::support::{
    add_images, api_token, create_annotation_set, create_user, new_dataset, send_json, upload,
};

/// Operations left out of the run, each because it defeats the run itself rather than because
/// it fails a check:
/// - `DELETE /api/v1/me/sessions` signs the fuzzer's own token out, after which every request
///   is answered 401 and nothing else is tested. Signing in again does not help for long: the
///   run's failed password grants soon throttle its address (`login_throttle`), as they should.
/// - `POST /api/v1/cluster/restart` restarts the node under test (its own test is
///   in `cli::up_put_get_status_and_stop_on_ctrl_c_or_sigterm`).
const EXCLUDED: [&str; 2] = ["delete_me_sessions", "post_cluster_restart"];

/// The schemathesis of the venv scripts/test.sh builds from tests/api/requirements.txt.
fn schemathesis() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = std::env::var("TESSERA_SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target/api-fuzz-venv/bin/schemathesis"));
    assert!(
        path.exists(),
        "{} is missing: scripts/test.sh creates it (python3 -m venv target/api-fuzz-venv && \
         target/api-fuzz-venv/bin/pip install -r tests/api/requirements.txt)",
        path.display()
    );
    path
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    let cluster = TestCluster::start(Options::single_node()).await;
    let node = cluster.node(1);
    let admin = node.client();
    // Fixtures: a dataset with an image, an annotation set and a task, so that lists answer
    // records (checked against their schemas) and some generated ids reach real ones.
    let dataset = new_dataset(&admin, "fuzz").await;
    let sha = upload(&admin, &png(32, 24, 7)).await;
    let added = add_images(&admin, dataset, json!([{"sha256": sha, "name": "a.png"}])).await;
    assert_eq!(added.status, 200, "{:?}", added.json());
    let labels = json!([{"name": "car", "color": "#ff0000", "kinds": ["rectangle"]}]);
    let set = create_annotation_set(&admin, dataset, "fuzz", &labels).await;
    assert_eq!(set.status, 201, "{:?}", set.json());
    let set = set.json()["id"].as_u64().expect("set id");
    // A task in the pool, so that task lists answer records (checked against their schema).
    let split = send_json(
        &admin,
        Method::POST,
        &format!("/api/v1/annotation-sets/{set}/tasks/split"),
        json!({"chunk_size": 1}),
    )
    .await;
    assert_eq!(split.status, 201, "{:?}", split.json());

    // What the operations on a user by name are fuzzed on, and the session that
    // DELETE /api/v1/me/sessions/{id} ends (see schemathesis.toml).
    create_user(&admin, "fuzz-target", "annotator").await;
    create_user(&admin, "fuzz-doomed", "annotator").await;
    let session = api_token(&admin).await["session"]
        .as_str()
        .expect("session id")
        .to_string();
    let token = node.token().expect("the harness signs the admin in");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("api/schemathesis.toml");
    // schemathesis keeps caches (crashes to replay) in its working directory: a fresh one, so
    // that every run starts from nothing and nothing lands in the tree.
    let workdir = tempfile::tempdir().expect("a working directory");
    let mut command = Command::new(schemathesis());
    command
        .current_dir(workdir.path())
        .arg("--config-file")
        .arg(config)
        .arg("run")
        .arg(format!("http://{}/api/v1/openapi.json", node.http))
        .args(["--checks", "all"])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--max-examples", "50", "--seed", "1", "--workers", "1"])
        .args(["--request-timeout", "30"])
        .env("TESSERA_FUZZ_SESSION", session)
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false");
    for operation in EXCLUDED {
        command.args(["--exclude-operation-id", operation]);
    }
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis failed ({}):\n{stdout}\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        cluster.log_tails(40)
    );
    eprintln!("{stdout}");
}
