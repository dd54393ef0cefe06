//! Label quality: how alike two annotators' shapes are, how an annotator's work scores against
//! ground truth, and what K overlapping annotators agree on (consensus).
//!
//! All of it is pure functions of shape lists, so every rule is tested in process and every
//! replica or node computes the same numbers. `docs/quality.md` explains the rules with a
//! worked example.

pub mod agreement;
mod assignment;
pub mod consensus;
pub mod matching;
mod region;
pub mod score;
pub mod similarity;

use serde::{Deserialize, Serialize};

/// A 10 × 10 box of `label` with its top-left corner at `(x, y)`: the tests' unit object.
#[cfg(test)]
pub(crate) fn boxed(label: &str, x: f64, y: f64) -> crate::shape::Shape {
    crate::shape::Shape::new(
        label,
        crate::annotation_sets::ShapeKind::Rectangle,
        vec![[x, y], [x + 10.0, y + 10.0]],
    )
}

/// The knobs of matching, as a set's quality settings carry them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The least similarity (IoU for regions, OKS for keypoints and lines) at which two shapes
    /// are the same object.
    pub min_similarity: f64,
    /// COCO's per-keypoint tolerance `k`, as a fraction of the object's scale.
    pub oks_sigma: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            min_similarity: 0.5,
            oks_sigma: 0.1,
        }
    }
}

/// An annotation set's quality rules, set by its managers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// The share of every new task made of ground-truth images (honeypots), 0 to 0.5.
    #[schemars(range(min = 0.0, max = 0.5))]
    pub honeypot_fraction: f64,
    /// Annotators that must agree on a shape for the consensus to keep it; `None`: a majority
    /// of the versions of the image. At most the overlap of the set's tasks.
    #[schemars(range(min = 1))]
    pub quorum: Option<u32>,
    /// The least IoU (regions) or OKS (keypoints, lines) at which two shapes are one object;
    /// above 0.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_similarity: f64,
    /// COCO's per-keypoint tolerance as a fraction of the object's size; above 0.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub oks_sigma: f64,
    /// Submitted tasks whose honeypot score is below this go to the front of the review queue.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub review_below: Option<f64>,
}

impl Default for Policy {
    fn default() -> Self {
        let s = Settings::default();
        Policy {
            honeypot_fraction: 0.0,
            quorum: None,
            min_similarity: s.min_similarity,
            oks_sigma: s.oks_sigma,
            review_below: None,
        }
    }
}

/// The most of a task that may be honeypots: beyond half, annotators would mostly be redoing
/// the reference.
pub const MAX_HONEYPOT_FRACTION: f64 = 0.5;

impl Policy {
    pub fn settings(&self) -> Settings {
        Settings {
            min_similarity: self.min_similarity,
            oks_sigma: self.oks_sigma,
        }
    }

    /// The quorum for an image with `versions` versions.
    pub fn quorum_for(&self, versions: usize) -> usize {
        self.quorum
            .map_or_else(|| consensus::majority(versions), |q| q as usize)
    }

    /// The first problem of the policy on its own, named by its field.
    pub fn problem(&self) -> Option<String> {
        let unit = |v: f64| v.is_finite() && (0.0..=1.0).contains(&v);
        if !(self.honeypot_fraction.is_finite()
            && (0.0..=MAX_HONEYPOT_FRACTION).contains(&self.honeypot_fraction))
        {
            return Some(format!(
                "honeypot_fraction: {} is outside 0 to {MAX_HONEYPOT_FRACTION} (0 % to 50 % of a task)",
                self.honeypot_fraction
            ));
        }
        if self.quorum == Some(0) {
            return Some("quorum: at least 1 annotator".into());
        }
        if !(unit(self.min_similarity) && self.min_similarity > 0.0) {
            return Some("min_similarity: above 0 and at most 1 (an IoU or OKS)".into());
        }
        if !(self.oks_sigma.is_finite() && self.oks_sigma > 0.0 && self.oks_sigma <= 1.0) {
            return Some(
                "oks_sigma: above 0 and at most 1 (a fraction of the object's size)".into(),
            );
        }
        if self.review_below.is_some_and(|v| !unit(v)) {
            return Some("review_below: a score from 0 to 1".into());
        }
        None
    }
}
