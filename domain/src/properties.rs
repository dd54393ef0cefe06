//! Property tests of the workflow: any sequence of task actions and annotation saves, by any
//! mix of users, keeps the task state machine's invariants, and the statistics kept
//! incrementally always equal statistics counted from scratch.

use std::collections::{BTreeMap, HashSet};

use proptest::prelude::*;
use serde_json::Value;

use crate::annotation_sets::{AnnotationSetOp, AnnotationSetOutcome};
use crate::annotations::{self, Save};
use crate::catalog::{CatalogOp, CatalogOutcome, Role, TestReplica};
use crate::datasets::{DatasetImage, DatasetOp};
use crate::stats;
use crate::tasks::{self, Action, Task, TaskIndex, TaskOp, TaskState};
use crate::Sha256;

const IMAGES: u8 = 4;
const USERS: [(&str, Role); 4] = [
    ("ann", Role::Annotator),
    ("bob", Role::Annotator),
    ("rev", Role::Reviewer),
    ("mgr", Role::Manager),
];

#[derive(Clone, Debug)]
enum Step {
    Act {
        task: u64,
        action: Action,
        user: usize,
    },
    ToPool {
        task: u64,
    },
    Save {
        task: u64,
        image: u8,
        user: usize,
        stale: bool,
        shapes: usize,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let action = prop_oneof![
        Just(Action::Claim),
        Just(Action::Start),
        Just(Action::Submit),
        Just(Action::Review),
        Just(Action::Accept),
        Just(Action::Reject),
    ];
    prop_oneof![
        4 => (1..=6u64, action, 0..USERS.len())
            .prop_map(|(task, action, user)| Step::Act { task, action, user }),
        1 => (1..=6u64).prop_map(|task| Step::ToPool { task }),
        3 => (1..=6u64, 0..IMAGES, 0..USERS.len(), any::<bool>(), 0..4usize).prop_map(
            |(task, image, user, stale, shapes)| Step::Save { task, image, user, stale, shapes }
        ),
    ]
}

fn sha(i: u8) -> Sha256 {
    Sha256([i + 1; 32])
}

/// A dataset of `IMAGES` images, a set with a reviewer, and 2 chunks × 3 copies in the pool.
fn replica() -> TestReplica {
    let r = TestReplica::new();
    r.apply(CatalogOp::Dataset(DatasetOp::Create {
        name: "d".into(),
        created_by: "mgr".into(),
        created_ms: 0,
    }));
    let images = (0..IMAGES)
        .map(|i| DatasetImage {
            sha: sha(i),
            name: format!("{i}.jpg"),
            width: 100,
            height: 100,
            added_ms: 0,
        })
        .collect();
    r.apply(CatalogOp::Dataset(DatasetOp::AddImages { id: 1, images }));
    let labels = r##"[{"name":"car","color":"#ff0000","kinds":["rectangle"]},
                      {"name":"tree","color":"#00ff00","kinds":["polygon","tag"]}]"##;
    let created = r.apply(CatalogOp::AnnotationSet(AnnotationSetOp::Create {
        dataset_id: 1,
        name: "s".into(),
        labels_json: labels.into(),
        created_by: "mgr".into(),
        created_ms: 0,
    }));
    assert!(matches!(
        created,
        CatalogOutcome::AnnotationSet(AnnotationSetOutcome::Set(_))
    ));
    r.apply(CatalogOp::AnnotationSet(AnnotationSetOp::SetReviewers {
        id: 1,
        reviewers: vec!["rev".into()],
    }));
    r.apply(CatalogOp::Task(TaskOp::Split {
        set_id: 1,
        chunks: vec![vec![sha(0), sha(1)], vec![sha(2), sha(3)]],
        overlap: 3,
        assignees: Vec::new(),
        by: "mgr".into(),
        at_ms: 0,
    }));
    r
}

/// Shape documents of growing size, some empty.
fn shapes(n: usize) -> String {
    let all = [
        r#"{"label":"car","kind":"rectangle","points":[[1,1],[5,5]]}"#,
        r#"{"label":"tree","kind":"polygon","points":[[1,1],[5,1],[3,4]]}"#,
        r#"{"label":"tree","kind":"tag","points":[]}"#,
    ];
    format!("[{}]", all[..n.min(all.len())].join(","))
}

fn all_tasks(r: &TestReplica) -> Vec<Task> {
    tasks::tasks(&*r.store.borrow(), TaskIndex::All, None, 100, |_| true).expect("tasks")
}

fn allowed(from: TaskState, to: TaskState) -> bool {
    use TaskState::*;
    from == to
        || matches!(
            (from, to),
            (New | Rejected, InProgress)
                | (InProgress, Submitted)
                | (Submitted, InReview)
                | (InReview, Accepted | Rejected)
                // Back to the pool: a manager's reassignment, or a rejected pool task.
                | (InProgress | Rejected | InReview, New)
        )
}

/// Shapes per label, then per kind.
type Census = BTreeMap<String, BTreeMap<String, u64>>;

/// Statistics counted from the records alone: tasks per state, annotated images, shapes.
fn recount(r: &TestReplica) -> (BTreeMap<String, u64>, u64, Census) {
    let store = r.store.borrow();
    let mut states = BTreeMap::new();
    let mut annotated = 0;
    let mut shapes = Census::new();
    for t in tasks::tasks(&*store, TaskIndex::All, None, 100, |_| true).expect("tasks") {
        let name = serde_json::to_value(t.state).expect("state");
        *states
            .entry(name.as_str().unwrap_or_default().to_string())
            .or_default() += 1;
        for image in &t.images {
            let Some(v) = annotations::current(&*store, t.id, image).expect("current") else {
                continue;
            };
            let parsed: Value = serde_json::from_str(&v.shapes).expect("json");
            let list = parsed.as_array().cloned().unwrap_or_default();
            if !list.is_empty() {
                annotated += 1;
            }
            for s in list {
                let field = |k: &str| s[k].as_str().unwrap_or_default().to_string();
                *shapes
                    .entry(field("label"))
                    .or_default()
                    .entry(field("kind"))
                    .or_default() += 1;
            }
        }
    }
    (states, annotated, shapes)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_sequence_keeps_the_workflow_invariants_and_exact_statistics(
        steps in proptest::collection::vec(step(), 1..60)
    ) {
        let r = replica();
        for (at_ms, step) in (2..).zip(steps) {
            let before = all_tasks(&r);
            match step {
                Step::Act { task, action, user } => {
                    let (name, role) = USERS[user];
                    let reason = (action == Action::Reject).then(|| "redo".to_string());
                    r.apply(CatalogOp::Task(TaskOp::Act {
                        id: task, action, user: name.into(), role, reason, at_ms,
                    }));
                }
                Step::ToPool { task } => {
                    r.apply(CatalogOp::Task(TaskOp::Reassign {
                        id: task, assignee: None, by: "mgr".into(), at_ms,
                    }));
                }
                Step::Save { task, image, user, stale, shapes: n } => {
                    let (name, role) = USERS[user];
                    let current = annotations::current(&*r.store.borrow(), task, &sha(image))
                        .expect("current")
                        .map_or(0, |v| v.version);
                    let base = if stale { current + 1 } else { current };
                    let outcome = r.apply(CatalogOp::SaveAnnotation(Save {
                        task, sha: sha(image), base, shapes: shapes(n),
                        user: name.into(), role, at_ms,
                    }));
                    if let CatalogOutcome::Annotation(annotations::SaveOutcome::Saved(v)) = outcome {
                        prop_assert!(!stale, "a save from a version that is not current won");
                        prop_assert_eq!(v, current + 1);
                    }
                }
            }
            let after = all_tasks(&r);
            let mut holders = HashSet::new();
            for (b, a) in before.iter().zip(&after) {
                prop_assert!(allowed(b.state, a.state), "{:?} -> {:?}", b.state, a.state);
                if matches!(a.state, TaskState::InProgress | TaskState::Rejected) {
                    prop_assert!(a.assignee.is_some(), "task {} stranded without an assignee", a.id);
                }
                if matches!(a.state, TaskState::InReview | TaskState::Accepted | TaskState::Rejected) {
                    prop_assert!(a.reviewer.is_some(), "task {} reviewed by nobody", a.id);
                }
                if let Some(user) = &a.assignee {
                    prop_assert!(
                        holders.insert((user.clone(), a.chunk)),
                        "{} holds two copies of chunk {}", user, a.chunk
                    );
                }
            }
            let kept = stats::load(&*r.store.borrow(), 1).expect("stats");
            let (states, annotated, shapes) = recount(&r);
            let kept_states: BTreeMap<String, u64> =
                kept.tasks.into_iter().filter(|(_, n)| *n > 0).collect();
            prop_assert_eq!(kept_states, states);
            prop_assert_eq!(kept.annotated, annotated);
            let kept_shapes: Census = kept
                .shapes
                .into_iter()
                .map(|(l, kinds)| (l, kinds.into_iter().filter(|(_, n)| *n > 0).collect()))
                .filter(|(_, kinds): &(String, BTreeMap<String, u64>)| !kinds.is_empty())
                .collect();
            prop_assert_eq!(kept_shapes, shapes);
        }
    }
}
