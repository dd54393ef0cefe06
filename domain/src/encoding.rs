//! Today's stored layout of every bincode record, pinned.
//!
//! Records are bincode without field names or a version, so a field added, removed or moved
//! in a stored struct makes every record of that type in existing data dirs undecodable (and a
//! variant inserted before others turns them into other values). These tests encode one value
//! of each stored type and compare the bytes' digest with the digest recorded when the layout
//! was last settled. If one fails, the change breaks data dirs written by today's code: keep
//! the stored struct as it is and add what is new under a new key or a new record type with a
//! one-time migration in apply (like `requests::PruneRequests` did for request records), then
//! record the new type here. Annotation sets are stored as JSON with `#[serde(default)]` on
//! their later fields, and op and outcome variants are pinned by `catalog`'s encoding test.

use serde::Serialize;
use sha2::{Digest, Sha256 as Hasher};

use crate::annotations::{Imported, Version};
use crate::catalog::{Account, Role, User};
use crate::comments::Comment;
use crate::datasets::{Dataset, DatasetImage};
use crate::jobs::{Job, JobKind, JobResult, JobState, Progress, Skip};
use crate::sessions::{Revocation, Session, SessionKind};
use crate::stats::{Annotator, Day, SetStats};
use crate::tasks::{Task, TaskEvent, TaskState};
use crate::Sha256;

fn digest<T: Serialize>(value: &T) -> String {
    let raw = bincode::serialize(value).expect("encode");
    hex::encode(&Hasher::digest(&raw)[..8])
}

fn user() -> User {
    User {
        username: "ann".into(),
        role: Role::Reviewer,
        password_hash: "$argon2id$x".into(),
        disabled: true,
        created_ms: 11,
        epoch: 12,
    }
}

fn task() -> Task {
    Task {
        id: 1,
        set_id: 2,
        chunk: 3,
        images: vec![Sha256([4; 32])],
        assignee: Some("ann".into()),
        reviewer: None,
        state: TaskState::Rejected,
        history: vec![TaskEvent {
            by: "rev".into(),
            action: "reject".into(),
            at_ms: 5,
            reason: Some("box too loose".into()),
        }],
    }
}

fn job() -> Job {
    Job {
        id: 1,
        kind: JobKind::AnnotationImport,
        state: JobState::Cancelled,
        dataset: Some(2),
        annotation_set: None,
        created_by: "mgr".into(),
        created_ms: 3,
        updated_ms: 4,
        node: 5,
        attempt: 6,
        beats: 7,
        params: "{}".into(),
        progress: Progress {
            bytes_received: 8,
            files_seen: 9,
            images_added: 10,
            duplicates: 11,
            skipped: 12,
            images_exported: 13,
            shapes_exported: 14,
            shapes_imported: 15,
        },
        skipped: vec![Skip {
            name: "a.pdf".into(),
            reason: "encrypted".into(),
        }],
        error: Some("boom".into()),
        result: Some(JobResult {
            file_name: Some("set.zip".into()),
            size: 16,
            report: vec!["line".into()],
        }),
    }
}

fn session() -> Session {
    Session {
        id: [1; 16],
        user_id: 2,
        username: "ann".into(),
        kind: SessionKind::ApiToken,
        epoch: 3,
        created_ms: 4,
        expires_ms: 5,
        last_used_ms: 6,
        refresh_seq: 7,
        client: "curl".into(),
        address: "10.0.0.1".into(),
        revoked: Some(Revocation {
            at_ms: 8,
            reason: "signed out".into(),
        }),
    }
}

fn stats() -> SetStats {
    let mut stats = SetStats::default();
    stats.tasks.insert("new".into(), 1);
    stats.annotated = 2;
    stats
        .shapes
        .entry("car".into())
        .or_default()
        .insert("rectangle".into(), 3);
    stats.annotators.insert(
        "ann".into(),
        Annotator {
            images: 4,
            shapes: 5,
            saves: 6,
            active_ms: 7,
            last_save_ms: 8,
        },
    );
    stats.days.insert(
        9,
        Day {
            saves: 10,
            shapes: -1,
        },
    );
    stats
}

#[test]
fn stored_records_keep_todays_layout() {
    let pinned = [
        ("User", digest(&user()), "c74ed8d8426934b6"),
        (
            "Account",
            digest(&Account {
                id: 1,
                user: user(),
            }),
            "f734eab9525f0c20",
        ),
        (
            "Dataset",
            digest(&Dataset {
                id: 1,
                name: "cars".into(),
                created_by: "mgr".into(),
                created_ms: 2,
                image_count: 3,
            }),
            "7732f687ef20d50e",
        ),
        (
            "DatasetImage",
            digest(&DatasetImage {
                sha: Sha256([1; 32]),
                name: "a.jpg".into(),
                width: 2,
                height: 3,
                added_ms: 4,
            }),
            "e807468555e41ad6",
        ),
        ("Task", digest(&task()), "8a113a8e96061dec"),
        (
            "Version",
            digest(&Version {
                version: 1,
                shapes: "[]".into(),
                saved_by: "ann".into(),
                saved_ms: 2,
            }),
            "c9a757308d10dc23",
        ),
        (
            "Imported",
            digest(&Imported {
                shapes: "[]".into(),
                source: "coco".into(),
                imported_ms: 1,
            }),
            "6a16caf5af6e0c1e",
        ),
        (
            "Comment",
            digest(&Comment {
                id: 1,
                task: 2,
                sha: Sha256([3; 32]),
                x: 4.5,
                y: 6.5,
                text: "here".into(),
                by: "rev".into(),
                at_ms: 7,
                parent: Some(8),
                resolved_by: None,
            }),
            "0865b74d21cea977",
        ),
        ("Job", digest(&job()), "9923497d3af60c0f"),
        ("Session", digest(&session()), "f631b562d69314f5"),
        ("SetStats", digest(&stats()), "b635a24c415a2f15"),
    ];
    let changed: Vec<String> = pinned
        .iter()
        .filter(|(_, now, then)| now != then)
        .map(|(name, now, then)| format!("{name}: {then} -> {now}"))
        .collect();
    assert!(
        changed.is_empty(),
        "stored layouts changed (see this file's doc comment before updating a digest): {changed:?}"
    );
}
