//! An annotation set's quality at a glance: per annotator and per task, their honeypot scores
//! and their agreement with the consensus; the images annotators agree on least.
//!
//! Built on request from the per-image records ([`crate::image_quality`]), which the quality
//! worker keeps current; `pending` says how many images are still waiting for it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::image_quality::{self, ImageQuality};
use crate::quality::score::Score;
use crate::quality::Policy;
use crate::tasks::Task;
use crate::{annotation_sets, ground_truth, DomainError, Records, Sha256};

/// Honeypot figures summed over images (ratios of the sums, not means of ratios).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HoneypotFigures {
    /// Honeypot images scored.
    pub images: u64,
    pub precision: f64,
    pub recall: f64,
    /// Mean IoU (or OKS) of the matched shapes.
    pub mean_similarity: f64,
    pub attribute_accuracy: f64,
    /// The one figure to rank by (`docs/quality.md`).
    pub score: f64,
}

impl HoneypotFigures {
    fn of(images: u64, s: &Score) -> HoneypotFigures {
        HoneypotFigures {
            images,
            precision: s.precision(),
            recall: s.recall(),
            mean_similarity: s.mean_similarity(),
            attribute_accuracy: s.attribute_accuracy(),
            score: s.overall(),
        }
    }
}

/// Sums for one annotator or one task.
#[derive(Clone, Debug, Default)]
struct Tally {
    honeypots: u64,
    score: Score,
    agreement_sum: f64,
    agreement_images: u64,
}

impl Tally {
    fn add(&mut self, assessed: &image_quality::Assessed) {
        if let Some(s) = &assessed.score {
            self.honeypots += 1;
            self.score.add(s);
        }
        if let Some(a) = assessed.with_consensus {
            self.agreement_sum += a;
            self.agreement_images += 1;
        }
    }

    fn honeypot_figures(&self) -> Option<HoneypotFigures> {
        (self.honeypots > 0).then(|| HoneypotFigures::of(self.honeypots, &self.score))
    }

    fn agreement(&self) -> Option<f64> {
        (self.agreement_images > 0).then(|| self.agreement_sum / self.agreement_images as f64)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AnnotatorQuality {
    pub annotator: String,
    pub honeypots: Option<HoneypotFigures>,
    /// Mean agreement of their versions with the consensus.
    pub agreement: Option<f64>,
    /// Images of theirs that have a consensus.
    pub consensus_images: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TaskQuality {
    pub task: u64,
    pub annotator: String,
    pub honeypots: Option<HoneypotFigures>,
    pub agreement: Option<f64>,
    /// The honeypot score is below the set's `review_below`: review this task first.
    pub review_first: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ImageAgreement {
    #[serde(with = "crate::sha::hex_text")]
    #[schemars(with = "String", regex(pattern = r"^[0-9a-f]{64}$"))]
    pub image: Sha256,
    pub chunk: u64,
    pub agreement: f64,
    pub versions: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Report {
    pub policy: Policy,
    /// Images with ground truth.
    pub references: u64,
    /// Images whose figures are being recomputed.
    pub pending: u64,
    /// Images with two or more versions, and their mean agreement.
    pub consensus_images: u64,
    pub mean_agreement: Option<f64>,
    pub annotators: Vec<AnnotatorQuality>,
    pub tasks: Vec<TaskQuality>,
    /// The images with the least agreement, lowest first (at most [`LOWEST`]).
    pub lowest_agreement: Vec<ImageAgreement>,
}

/// Images listed in [`Report::lowest_agreement`].
pub const LOWEST: usize = 20;

fn review_first(policy: &Policy, figures: &Option<HoneypotFigures>) -> bool {
    matches!((policy.review_below, figures), (Some(t), Some(f)) if f.score < t)
}

/// The report of set `set`; `None` when it does not exist.
pub fn report(r: &dyn Records, set: u64) -> Result<Option<Report>, DomainError> {
    let Some(annotation_set) = annotation_sets::annotation_set(r, set)? else {
        return Ok(None);
    };
    let policy = annotation_set.quality;
    let records = image_quality::records(r, set)?;
    let mut by_annotator: BTreeMap<String, Tally> = BTreeMap::new();
    let mut by_task: BTreeMap<u64, (String, Tally)> = BTreeMap::new();
    let mut agreed = Vec::new();
    for q in &records {
        for v in &q.versions {
            by_annotator.entry(v.annotator.clone()).or_default().add(v);
            let entry = by_task
                .entry(v.task)
                .or_insert_with(|| (v.annotator.clone(), Tally::default()));
            entry.1.add(v);
        }
        if let Some(a) = q.agreement {
            agreed.push(ImageAgreement {
                image: q.sha,
                chunk: q.chunk,
                agreement: a,
                versions: q.versions.len(),
            });
        }
    }
    let mean_agreement = (!agreed.is_empty())
        .then(|| agreed.iter().map(|a| a.agreement).sum::<f64>() / agreed.len() as f64);
    let consensus_images = agreed.len() as u64;
    agreed.sort_by(|a, b| {
        a.agreement
            .total_cmp(&b.agreement)
            .then(a.image.cmp(&b.image))
    });
    agreed.truncate(LOWEST);
    let annotators = by_annotator
        .into_iter()
        .map(|(annotator, t)| AnnotatorQuality {
            annotator,
            honeypots: t.honeypot_figures(),
            agreement: t.agreement(),
            consensus_images: t.agreement_images,
        })
        .collect();
    let tasks = by_task
        .into_iter()
        .map(|(task, (annotator, t))| {
            let honeypots = t.honeypot_figures();
            TaskQuality {
                task,
                annotator,
                review_first: review_first(&policy, &honeypots),
                honeypots,
                agreement: t.agreement(),
            }
        })
        .collect();
    Ok(Some(Report {
        references: ground_truth::images(r, set)?.len() as u64,
        pending: image_quality::pending(r, set)?,
        consensus_images,
        mean_agreement,
        annotators,
        tasks,
        lowest_agreement: agreed,
        policy,
    }))
}

/// One task's figures, read from its images' records (for the review queue).
pub fn of_task(r: &dyn Records, task: &Task, policy: &Policy) -> Result<TaskQuality, DomainError> {
    let mut tally = Tally::default();
    let mut annotator = task.assignee.clone().unwrap_or_default();
    for sha in &task.images {
        let Some(q): Option<ImageQuality> = image_quality::record(r, task.set_id, task.chunk, sha)?
        else {
            continue;
        };
        for v in q.versions.iter().filter(|v| v.task == task.id) {
            annotator = v.annotator.clone();
            tally.add(v);
        }
    }
    let honeypots = tally.honeypot_figures();
    Ok(TaskQuality {
        task: task.id,
        annotator,
        review_first: review_first(policy, &honeypots),
        honeypots,
        agreement: tally.agreement(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotation_sets::{AnnotationSetOp, AnnotationSetOutcome};
    use crate::annotations::{Save, SaveOutcome};
    use crate::catalog::{CatalogOp, CatalogOutcome, Role, TestReplica};
    use crate::datasets::{DatasetImage, DatasetOp};
    use crate::ground_truth::{Outcome, Source};
    use crate::quality_op::{QualityOp, QualityOutcome};
    use crate::tasks::{self, Action, TaskIndex, TaskOp, TaskOutcome};

    fn sha(i: u8) -> Sha256 {
        Sha256([i + 1; 32])
    }

    /// The box annotator quality wants on image `i`, moved right by `dx`.
    fn boxes(i: u8, dx: f64) -> String {
        let x = 10.0 + f64::from(i) + dx;
        format!(
            r#"[{{"label":"car","kind":"rectangle","points":[[{x},10],[{},40]]}}]"#,
            x + 30.0
        )
    }

    fn setup() -> TestReplica {
        let r = TestReplica::new();
        r.apply(CatalogOp::Dataset(DatasetOp::Create {
            name: "d".into(),
            created_by: "mgr".into(),
            created_ms: 0,
        }));
        let images = (0..20)
            .map(|i| DatasetImage {
                sha: sha(i),
                name: format!("{i:02}.jpg"),
                width: 200,
                height: 100,
                added_ms: 0,
            })
            .collect();
        r.apply(CatalogOp::Dataset(DatasetOp::AddImages { id: 1, images }));
        r.apply(CatalogOp::AnnotationSet(AnnotationSetOp::Create {
            dataset_id: 1,
            name: "s".into(),
            labels_json: r##"[{"name":"car","color":"#ff0000","kinds":["rectangle"]}]"##.into(),
            created_by: "mgr".into(),
            created_ms: 0,
        }));
        r
    }

    fn policy(r: &TestReplica, policy: Policy) -> AnnotationSetOutcome {
        match r.apply(CatalogOp::AnnotationSet(AnnotationSetOp::SetQuality {
            id: 1,
            policy,
        })) {
            CatalogOutcome::AnnotationSet(o) => o,
            other => panic!("{other:?}"),
        }
    }

    fn ground_truth(r: &TestReplica, images: Vec<(Sha256, String)>) -> Outcome {
        match r.apply(CatalogOp::Quality(QualityOp::SetGroundTruth {
            set: 1,
            source: Source::Shapes(images),
            by: "mgr".into(),
            at_ms: 5,
        })) {
            CatalogOutcome::Quality(QualityOutcome::GroundTruth(o)) => o,
            other => panic!("{other:?}"),
        }
    }

    fn save(r: &TestReplica, task: u64, image: Sha256, user: &str, shapes: String) -> SaveOutcome {
        let base = crate::annotations::current(&*r.store.borrow(), task, &image)
            .expect("read")
            .map_or(0, |v| v.version);
        match r.apply(CatalogOp::SaveAnnotation(Save {
            task,
            sha: image,
            base,
            shapes,
            user: user.into(),
            role: Role::Annotator,
            at_ms: 10,
        })) {
            CatalogOutcome::Annotation(o) => o,
            other => panic!("{other:?}"),
        }
    }

    /// One pass of the quality worker: assess every marked image, propose the records.
    fn recompute(r: &TestReplica) -> (u64, u64) {
        let (texts, _) = image_quality::assess_marked(&*r.store.borrow(), usize::MAX, usize::MAX)
            .expect("assess");
        match r.apply(CatalogOp::Quality(QualityOp::Record {
            records: texts,
            at_ms: 50,
        })) {
            CatalogOutcome::Quality(QualityOutcome::Recorded { kept, stale }) => (kept, stale),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn honeypots_and_consensus_single_out_the_careless_annotator() {
        let r = setup();
        // Images 18 and 19 are ground truth; 10 % of every task is honeypots.
        assert_eq!(
            ground_truth(
                &r,
                vec![(sha(18), boxes(18, 0.0)), (sha(19), boxes(19, 0.0))]
            ),
            Outcome::Done(vec![sha(18), sha(19)])
        );
        let p = Policy {
            honeypot_fraction: 0.1,
            review_below: Some(0.5),
            ..Policy::default()
        };
        assert!(matches!(policy(&r, p), AnnotationSetOutcome::Set(_)));
        let chunks = vec![(0..9).map(sha).collect(), (9..20).map(sha).collect()];
        let created = r.apply(CatalogOp::Task(TaskOp::Split {
            set_id: 1,
            chunks,
            overlap: 3,
            assignees: vec!["ann".into(), "bob".into(), "eve".into()],
            by: "mgr".into(),
            at_ms: 0,
        }));
        assert!(
            matches!(created, CatalogOutcome::Task(TaskOutcome::Created(ref ids)) if ids.len() == 6)
        );
        let all =
            tasks::tasks(&*r.store.borrow(), TaskIndex::All, None, 100, |_| true).expect("tasks");
        for t in &all {
            let lent = tasks::honeypots(&*r.store.borrow(), t.id).expect("honeypots");
            // 9 regular images (the references were taken out of the second chunk) + 1.
            assert_eq!((t.images.len(), lent.len()), (10, 1), "task {}", t.id);
            assert!(lent.iter().all(|h| *h == sha(18) || *h == sha(19)));
        }
        let held = tasks::tasked_images(&*r.store.borrow(), 1).expect("held");
        assert!(!held.contains(&sha(18)) && !held.contains(&sha(19)) && held.len() == 18);

        // ann draws exactly, bob a pixel off, eve 25 pixels off (IoU 0.09).
        for t in &all {
            let user = t.assignee.clone().expect("assigned");
            let dx = match user.as_str() {
                "ann" => 0.0,
                "bob" => 1.0,
                _ => 25.0,
            };
            r.apply(CatalogOp::Task(TaskOp::Act {
                id: t.id,
                action: Action::Start,
                user: user.clone(),
                role: Role::Annotator,
                reason: None,
                at_ms: 1,
            }));
            for (i, image) in t.images.iter().enumerate() {
                let n = image.0[0] - 1;
                assert_eq!(
                    save(&r, t.id, *image, &user, boxes(n, dx)),
                    SaveOutcome::Saved(1),
                    "{i}"
                );
            }
            r.apply(CatalogOp::Task(TaskOp::Act {
                id: t.id,
                action: Action::Submit,
                user,
                role: Role::Annotator,
                reason: None,
                at_ms: 2,
            }));
        }
        let before = image_quality::pending(&*r.store.borrow(), 1).expect("pending");
        // 18 regular images (one chunk each) + each chunk's honeypot.
        assert_eq!(before, 20);
        assert_eq!(recompute(&r), (20, 0));
        assert_eq!(
            image_quality::pending(&*r.store.borrow(), 1).expect("pending"),
            0
        );

        let report = report(&*r.store.borrow(), 1).expect("report").expect("set");
        let figures = |who: &str| {
            report
                .annotators
                .iter()
                .find(|a| a.annotator == who)
                .expect(who)
                .clone()
        };
        let (ann, bob, eve) = (figures("ann"), figures("bob"), figures("eve"));
        let hp = |a: &AnnotatorQuality| a.honeypots.clone().expect("scored");
        assert_eq!(hp(&ann).score, 1.0);
        assert!(hp(&bob).score > 0.9, "{bob:?}");
        assert_eq!(
            (hp(&eve).score, hp(&eve).recall, hp(&eve).images),
            (0.0, 0.0, 2)
        );
        assert!(ann.agreement > Some(0.95) && bob.agreement > Some(0.95));
        assert_eq!(eve.agreement, Some(0.0));
        assert_eq!(report.consensus_images, 20);
        assert!(report
            .tasks
            .iter()
            .all(|t| t.review_first == (t.annotator == "eve")));

        // The consensus of an image is the mean of the two who agree; eve's box is left out.
        let chunk = all[0].chunk;
        let q = image_quality::record(&*r.store.borrow(), 1, chunk, &sha(3))
            .expect("read")
            .expect("record");
        let consensus = q.consensus.expect("consensus");
        assert_eq!(consensus.len(), 1);
        assert_eq!(consensus[0].shape.points, vec![[13.5, 10.0], [43.5, 40.0]]);
        assert_eq!(consensus[0].from.len(), 2);
    }

    #[test]
    fn a_record_of_replaced_versions_is_dropped_and_the_image_stays_marked() {
        let r = setup();
        r.apply(CatalogOp::Task(TaskOp::Split {
            set_id: 1,
            chunks: vec![vec![sha(0)]],
            overlap: 2,
            assignees: vec!["ann".into(), "bob".into()],
            by: "mgr".into(),
            at_ms: 0,
        }));
        for (task, user) in [(1, "ann"), (2, "bob")] {
            r.apply(CatalogOp::Task(TaskOp::Act {
                id: task,
                action: Action::Start,
                user: user.into(),
                role: Role::Annotator,
                reason: None,
                at_ms: 1,
            }));
            save(&r, task, sha(0), user, boxes(0, 0.0));
        }
        let stale = {
            let store = r.store.borrow();
            let chunk = tasks::task(&*store, 1).expect("read").expect("task").chunk;
            image_quality::assess(&*store, 1, chunk, &sha(0))
                .expect("assess")
                .expect("set")
        };
        assert_eq!(stale.agreement, Some(1.0));
        save(&r, 2, sha(0), "bob", boxes(0, 25.0));
        let text = serde_json::to_string(&stale).expect("json");
        let outcome = r.apply(CatalogOp::Quality(QualityOp::Record {
            records: vec![text],
            at_ms: 50,
        }));
        assert_eq!(
            outcome,
            CatalogOutcome::Quality(QualityOutcome::Recorded { kept: 0, stale: 1 })
        );
        assert_eq!(
            image_quality::pending(&*r.store.borrow(), 1).expect("pending"),
            1
        );
        assert_eq!(recompute(&r), (1, 0));
        let report = report(&*r.store.borrow(), 1).expect("report").expect("set");
        assert_eq!(report.mean_agreement, Some(0.0));
        assert_eq!(report.lowest_agreement[0].image, sha(0));
    }

    #[test]
    fn bad_policies_and_references_are_refused_naming_the_problem() {
        let r = setup();
        let refused = |o: AnnotationSetOutcome, part: &str| {
            assert!(
                matches!(&o, AnnotationSetOutcome::Invalid(p) if p.contains(part)),
                "{o:?}"
            );
        };
        refused(
            policy(
                &r,
                Policy {
                    honeypot_fraction: 0.6,
                    ..Policy::default()
                },
            ),
            "honeypot_fraction",
        );
        refused(
            policy(
                &r,
                Policy {
                    min_similarity: 0.0,
                    ..Policy::default()
                },
            ),
            "min_similarity",
        );
        r.apply(CatalogOp::Task(TaskOp::Split {
            set_id: 1,
            chunks: vec![vec![sha(0)]],
            overlap: 3,
            assignees: Vec::new(),
            by: "mgr".into(),
            at_ms: 0,
        }));
        refused(
            policy(
                &r,
                Policy {
                    quorum: Some(4),
                    ..Policy::default()
                },
            ),
            "quorum",
        );
        assert!(matches!(
            policy(
                &r,
                Policy {
                    quorum: Some(3),
                    ..Policy::default()
                }
            ),
            AnnotationSetOutcome::Set(_)
        ));
        let split = r.apply(CatalogOp::Task(TaskOp::Split {
            set_id: 1,
            chunks: vec![vec![sha(1)]],
            overlap: 2,
            assignees: Vec::new(),
            by: "mgr".into(),
            at_ms: 0,
        }));
        assert!(
            matches!(split, CatalogOutcome::Task(TaskOutcome::Conflict(ref m)) if m.contains("quorum"))
        );

        let bus = r#"[{"label":"bus","kind":"rectangle","points":[[1,1],[5,5]]}]"#.to_string();
        let o = ground_truth(&r, vec![(sha(2), bus)]);
        assert!(
            matches!(&o, Outcome::Invalid(p) if p.contains("no label \"bus\"")),
            "{o:?}"
        );
        let o = ground_truth(&r, vec![(Sha256([99; 32]), "[]".into())]);
        assert!(
            matches!(&o, Outcome::Invalid(p) if p.contains("not in the set's dataset")),
            "{o:?}"
        );
        assert!(ground_truth::references(&*r.store.borrow(), 1)
            .expect("read")
            .is_empty());
    }
}
