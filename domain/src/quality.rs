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
