//! Review and rework statistics of an annotation set, derived from its tasks' histories.
//!
//! Unlike [`crate::stats`], nothing here is maintained by the state machine: every figure is a
//! pure function of the tasks' [`TaskEvent`] histories, so a reading is always consistent with
//! the history it came from and the rules below can change without migrating records. The API
//! computes it on request (one pass over the set's tasks); the dashboard asks only when the
//! set's statistics changed.
//!
//! Attribution rules (decided here, documented in docs/architecture.md, "Tasks"):
//! - A review decision (accept or reject) counts for the annotator who made the submission it
//!   decided, i.e. the last submitter before it, even if the task was reassigned since: the
//!   rejection judges that person's work.
//! - A rework is a submission following a rejection; it and its rework time (rejection to that
//!   submission, including any wait for a reassignment or a claim) count for whoever made that
//!   submission, i.e. whoever held the task when it was resubmitted.
//! - Time to first submission runs from the moment the task became the annotator's (its
//!   creation, their claim, or the last reassignment before their first submission) to that
//!   submission.
//! - A decision counts for the reviewer who made it (a manager may decide a review someone else
//!   started); review time runs from the latest `review` of the task to the decision.
//! - Archived tasks count: everything in their history before archiving happened and was
//!   reviewed. A submission or review still pending when a task was archived is counted as
//!   neither awaiting review nor in review, since nobody will decide it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::tasks::{Task, TaskEvent, TaskState};

/// One annotator's figures. Durations are milliseconds; medians are `None` without samples.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AnnotatorReview {
    pub annotator: String,
    /// Distinct tasks this annotator submitted at least once.
    pub tasks_submitted: u64,
    /// Every submission, first ones and reworks.
    pub submissions: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// `rejected / (accepted + rejected)`; `None` until a review of their work was decided.
    pub rejection_rate: Option<f64>,
    /// Submissions of live tasks not decided yet (submitted or in review).
    pub awaiting_review: u64,
    /// Submissions that followed a rejection.
    pub reworks: u64,
    pub rework_median_ms: Option<u64>,
    pub rework_total_ms: u64,
    pub first_submission_median_ms: Option<u64>,
}

/// One reviewer's figures.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewerReview {
    pub reviewer: String,
    /// Distinct tasks on which this reviewer decided at least once.
    pub tasks_reviewed: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// Live tasks this reviewer has in review now (no decision yet).
    pub in_review: u64,
    /// From the task's `review` to the decision.
    pub review_median_ms: Option<u64>,
}

/// A set's review statistics; annotators and reviewers sorted by name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReviewStats {
    /// Tasks considered, archived ones included.
    pub tasks: u64,
    pub archived_tasks: u64,
    pub annotators: Vec<AnnotatorReview>,
    pub reviewers: Vec<ReviewerReview>,
}

#[derive(Default)]
struct AnnotatorAcc {
    tasks_submitted: u64,
    submissions: u64,
    accepted: u64,
    rejected: u64,
    awaiting_review: u64,
    rework_ms: Vec<u64>,
    first_submission_ms: Vec<u64>,
}

#[derive(Default)]
struct ReviewerAcc {
    tasks: BTreeSet<u64>,
    accepted: u64,
    rejected: u64,
    in_review: u64,
    review_ms: Vec<u64>,
}

/// The median of `values` (the mean of the two middle ones, rounded down, for an even count).
fn median(values: &[u64]) -> Option<u64> {
    let mut v = values.to_vec();
    v.sort_unstable();
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some(v[n / 2 - 1] / 2 + v[n / 2] / 2 + (v[n / 2 - 1] % 2 + v[n / 2] % 2) / 2),
    }
}

/// Walks one task's history into the accumulators.
fn walk(
    task: &Task,
    annotators: &mut BTreeMap<String, AnnotatorAcc>,
    reviewers: &mut BTreeMap<String, ReviewerAcc>,
) {
    // When the task last became someone's: creation, a claim or a reassignment.
    let mut owned_since: Option<u64> = None;
    // The submission waiting for a decision, by whom.
    let mut pending: Option<String> = None;
    // The last rejection not yet followed by a submission.
    let mut rejected_at: Option<u64> = None;
    // The latest review start, by whom.
    let mut review: Option<(String, u64)> = None;
    let mut submitted_by: BTreeSet<&str> = BTreeSet::new();
    for TaskEvent {
        by, action, at_ms, ..
    } in &task.history
    {
        let at = *at_ms;
        match action.as_str() {
            "created" | "claim" | "reassign" => owned_since = Some(at),
            "submit" => {
                let a = annotators.entry(by.clone()).or_default();
                a.submissions += 1;
                if submitted_by.insert(by.as_str()) {
                    a.tasks_submitted += 1;
                    if let Some(since) = owned_since {
                        a.first_submission_ms.push(at.saturating_sub(since));
                    }
                }
                if let Some(r) = rejected_at.take() {
                    a.rework_ms.push(at.saturating_sub(r));
                }
                pending = Some(by.clone());
            }
            "review" => review = Some((by.clone(), at)),
            decision @ ("accept" | "reject") => {
                let accepted = decision == "accept";
                let r = reviewers.entry(by.clone()).or_default();
                r.tasks.insert(task.id);
                if accepted {
                    r.accepted += 1;
                } else {
                    r.rejected += 1;
                }
                if let Some((_, started)) = review.take() {
                    r.review_ms.push(at.saturating_sub(started));
                }
                if let Some(submitter) = pending.take() {
                    let a = annotators.entry(submitter).or_default();
                    if accepted {
                        a.accepted += 1;
                    } else {
                        a.rejected += 1;
                    }
                }
                if !accepted {
                    rejected_at = Some(at);
                }
            }
            // Nothing is decided or resubmitted after archiving.
            "archive" => return,
            _ => {}
        }
    }
    if task.state == TaskState::Archived {
        return;
    }
    if let Some(submitter) = pending {
        annotators.entry(submitter).or_default().awaiting_review += 1;
    }
    if let (TaskState::InReview, Some((reviewer, _))) = (task.state, review) {
        reviewers.entry(reviewer).or_default().in_review += 1;
    }
}

/// The review statistics of a set's tasks (all of them, archived included; see the module doc).
pub fn review_stats(tasks: &[Task]) -> ReviewStats {
    let mut annotators = BTreeMap::new();
    let mut reviewers = BTreeMap::new();
    for t in tasks {
        walk(t, &mut annotators, &mut reviewers);
    }
    ReviewStats {
        tasks: tasks.len() as u64,
        archived_tasks: tasks
            .iter()
            .filter(|t| t.state == TaskState::Archived)
            .count() as u64,
        annotators: annotators
            .into_iter()
            .map(|(annotator, a)| {
                let decided = a.accepted + a.rejected;
                AnnotatorReview {
                    annotator,
                    tasks_submitted: a.tasks_submitted,
                    submissions: a.submissions,
                    accepted: a.accepted,
                    rejected: a.rejected,
                    rejection_rate: (decided > 0).then(|| a.rejected as f64 / decided as f64),
                    awaiting_review: a.awaiting_review,
                    reworks: a.rework_ms.len() as u64,
                    rework_median_ms: median(&a.rework_ms),
                    rework_total_ms: a.rework_ms.iter().sum(),
                    first_submission_median_ms: median(&a.first_submission_ms),
                }
            })
            .collect(),
        reviewers: reviewers
            .into_iter()
            .map(|(reviewer, r)| ReviewerReview {
                reviewer,
                tasks_reviewed: r.tasks.len() as u64,
                accepted: r.accepted,
                rejected: r.rejected,
                in_review: r.in_review,
                review_median_ms: median(&r.review_ms),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(by: &str, action: &str, at_ms: u64) -> TaskEvent {
        TaskEvent {
            by: by.into(),
            action: action.into(),
            at_ms,
            reason: (action == "reject").then(|| "redo".to_string()),
        }
    }

    fn task(id: u64, state: TaskState, history: Vec<TaskEvent>) -> Task {
        Task {
            id,
            set_id: 1,
            chunk: id,
            images: Vec::new(),
            assignee: Some("ann".into()),
            reviewer: None,
            state,
            history,
        }
    }

    fn annotator<'a>(s: &'a ReviewStats, name: &str) -> &'a AnnotatorReview {
        s.annotators
            .iter()
            .find(|a| a.annotator == name)
            .unwrap_or_else(|| panic!("no annotator {name} in {s:?}"))
    }

    fn reviewer<'a>(s: &'a ReviewStats, name: &str) -> &'a ReviewerReview {
        s.reviewers
            .iter()
            .find(|r| r.reviewer == name)
            .unwrap_or_else(|| panic!("no reviewer {name} in {s:?}"))
    }

    #[test]
    fn no_tasks_no_figures() {
        assert_eq!(review_stats(&[]), ReviewStats::default());
    }

    #[test]
    fn a_task_rejected_twice_then_accepted() {
        let t = task(
            1,
            TaskState::Accepted,
            vec![
                ev("mgr", "created", 0),
                ev("ann", "start", 100),
                ev("ann", "submit", 1_000),
                ev("rev", "review", 1_500),
                ev("rev", "reject", 2_000),
                ev("ann", "start", 2_100),
                ev("ann", "submit", 5_000),
                ev("rev", "review", 5_000),
                ev("rev", "reject", 6_000),
                ev("ann", "start", 6_500),
                ev("ann", "submit", 7_000),
                ev("rev", "review", 7_000),
                ev("rev", "accept", 10_000),
            ],
        );
        let s = review_stats(&[t]);
        assert_eq!((s.tasks, s.archived_tasks), (1, 0));
        let a = annotator(&s, "ann");
        assert_eq!(a.tasks_submitted, 1);
        assert_eq!(a.submissions, 3);
        assert_eq!((a.accepted, a.rejected), (1, 2));
        assert_eq!(a.rejection_rate, Some(2.0 / 3.0));
        assert_eq!(a.reworks, 2);
        // Reworks took 3000 (2000 → 5000) and 1000 (6000 → 7000).
        assert_eq!(a.rework_total_ms, 4_000);
        assert_eq!(a.rework_median_ms, Some(2_000));
        assert_eq!(a.first_submission_median_ms, Some(1_000));
        assert_eq!(a.awaiting_review, 0);
        let r = reviewer(&s, "rev");
        assert_eq!(r.tasks_reviewed, 1);
        assert_eq!((r.accepted, r.rejected, r.in_review), (1, 2, 0));
        // Review times 500, 1000, 3000.
        assert_eq!(r.review_median_ms, Some(1_000));
        assert_eq!(s.annotators.len(), 1, "reviewers are not annotators");
    }

    #[test]
    fn a_reassigned_task_blames_the_rejected_submitter_and_credits_the_reworker() {
        let t = task(
            1,
            TaskState::Submitted,
            vec![
                ev("mgr", "created", 0),
                ev("ann", "start", 0),
                ev("ann", "submit", 1_000),
                ev("rev", "review", 1_000),
                ev("rev", "reject", 2_000),
                ev("mgr", "reassign", 3_000),
                ev("bob", "start", 3_500),
                ev("bob", "submit", 6_000),
            ],
        );
        let s = review_stats(&[t]);
        let ann = annotator(&s, "ann");
        assert_eq!((ann.rejected, ann.reworks, ann.awaiting_review), (1, 0, 0));
        assert_eq!(ann.rejection_rate, Some(1.0));
        let bob = annotator(&s, "bob");
        assert_eq!((bob.rejected, bob.accepted, bob.reworks), (0, 0, 1));
        assert_eq!(bob.rejection_rate, None, "nothing of bob's decided yet");
        assert_eq!(
            bob.rework_total_ms, 4_000,
            "from the rejection, wait included"
        );
        assert_eq!(
            bob.first_submission_median_ms,
            Some(3_000),
            "from the reassignment"
        );
        assert_eq!(bob.awaiting_review, 1);
    }

    #[test]
    fn archived_tasks_keep_their_history_but_nothing_pending() {
        let decided = task(
            1,
            TaskState::Archived,
            vec![
                ev("mgr", "created", 0),
                ev("ann", "submit", 1_000),
                ev("rev", "review", 1_000),
                ev("rev", "reject", 1_200),
                ev("mgr", "archive", 9_000),
            ],
        );
        let pending = task(
            2,
            TaskState::Archived,
            vec![
                ev("mgr", "created", 0),
                ev("ann", "submit", 1_000),
                ev("rev", "review", 1_000),
                ev("mgr", "archive", 2_000),
            ],
        );
        let s = review_stats(&[decided, pending]);
        assert_eq!((s.tasks, s.archived_tasks), (2, 2));
        let a = annotator(&s, "ann");
        assert_eq!((a.tasks_submitted, a.rejected, a.reworks), (2, 1, 0));
        assert_eq!(a.awaiting_review, 0);
        let r = reviewer(&s, "rev");
        assert_eq!((r.rejected, r.in_review), (1, 0));
        assert_eq!(r.review_median_ms, Some(200));
    }

    #[test]
    fn tasks_still_in_review_are_pending_not_decided() {
        let t = task(
            1,
            TaskState::InReview,
            vec![
                ev("mgr", "created", 0),
                ev("ann", "claim", 100),
                ev("ann", "submit", 400),
                ev("rev", "review", 500),
            ],
        );
        let s = review_stats(&[t]);
        let a = annotator(&s, "ann");
        assert_eq!((a.accepted, a.rejected, a.awaiting_review), (0, 0, 1));
        assert_eq!(a.rejection_rate, None);
        assert_eq!(a.first_submission_median_ms, Some(300), "from the claim");
        let r = reviewer(&s, "rev");
        assert_eq!((r.tasks_reviewed, r.in_review), (0, 1));
        assert_eq!(r.review_median_ms, None);
    }

    /// Through the real state machine, so the event names read here are the ones it records.
    #[test]
    fn histories_recorded_by_the_state_machine() {
        use crate::annotation_sets::AnnotationSetOp;
        use crate::catalog::{CatalogOp, Role, TestReplica};
        use crate::datasets::DatasetOp;
        use crate::tasks::{tasks, Action, TaskIndex, TaskOp};
        let r = TestReplica::new();
        r.apply(CatalogOp::Dataset(DatasetOp::Create {
            name: "d".into(),
            created_by: "mgr".into(),
            created_ms: 0,
        }));
        r.apply(CatalogOp::AnnotationSet(AnnotationSetOp::Create {
            dataset_id: 1,
            name: "s".into(),
            labels_json: r##"[{"name":"car","color":"#ff0000","kinds":["rectangle"]}]"##.into(),
            created_by: "mgr".into(),
            created_ms: 0,
        }));
        r.apply(CatalogOp::Task(TaskOp::Split {
            set_id: 1,
            chunks: vec![vec![crate::Sha256([1; 32])]],
            overlap: 1,
            assignees: vec!["ann".into()],
            by: "mgr".into(),
            at_ms: 0,
        }));
        let act = |action, user: &str, role, at_ms| {
            let reason = (action == Action::Reject).then(|| "redo".to_string());
            r.apply(CatalogOp::Task(TaskOp::Act {
                id: 1,
                action,
                user: user.into(),
                role,
                reason,
                at_ms,
            }));
        };
        act(Action::Start, "ann", Role::Annotator, 10);
        act(Action::Submit, "ann", Role::Annotator, 100);
        act(Action::Review, "mgr", Role::Manager, 150);
        act(Action::Reject, "mgr", Role::Manager, 200);
        r.apply(CatalogOp::Task(TaskOp::Reassign {
            id: 1,
            assignee: Some("bob".into()),
            by: "mgr".into(),
            at_ms: 300,
        }));
        act(Action::Start, "bob", Role::Annotator, 400);
        act(Action::Submit, "bob", Role::Annotator, 700);
        act(Action::Review, "mgr", Role::Manager, 800);
        act(Action::Accept, "mgr", Role::Manager, 1_000);
        let all = tasks(&*r.store.borrow(), TaskIndex::Set(1), None, 10, |_| true).expect("tasks");
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].state, TaskState::Accepted, "{:?}", all[0].history);
        let s = review_stats(&all);
        let ann = annotator(&s, "ann");
        assert_eq!((ann.rejected, ann.accepted, ann.reworks), (1, 0, 0));
        assert_eq!(ann.first_submission_median_ms, Some(100));
        let bob = annotator(&s, "bob");
        assert_eq!((bob.rejected, bob.accepted, bob.reworks), (0, 1, 1));
        assert_eq!(bob.rework_total_ms, 500);
        assert_eq!(bob.first_submission_median_ms, Some(400));
        let mgr = reviewer(&s, "mgr");
        assert_eq!((mgr.tasks_reviewed, mgr.accepted, mgr.rejected), (1, 1, 1));
        // Review times 50 and 200.
        assert_eq!(mgr.review_median_ms, Some(125));
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3, 1, 2]), Some(2));
        assert_eq!(median(&[1, 4]), Some(2));
        assert_eq!(median(&[u64::MAX, u64::MAX]), Some(u64::MAX));
    }
}
