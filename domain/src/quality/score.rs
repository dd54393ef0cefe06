//! An annotator's shapes scored against reference shapes (ground truth).
//!
//! Shapes are matched optimally per label ([`match_shapes`]); a matched pair is a true positive,
//! an unmatched annotator shape a false positive, an unmatched reference shape a miss. Tags and
//! attributes must match exactly: a tag is matched only by a tag of its label, and a matched
//! pair's attributes count as right only when every attribute of the two shapes is equal.

use serde::{Deserialize, Serialize};

use crate::shape::Shape;

use super::matching::match_shapes;
use super::Settings;

/// How one version scored against its reference. Counts add up across images
/// ([`Score::add`]); the ratios are computed from the counts, so a set's score is not a mean of
/// means.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// Shapes the annotator drew.
    pub drawn: u64,
    /// Shapes of the reference.
    pub reference: u64,
    /// Drawn shapes matched to a reference shape.
    pub matched: u64,
    /// Sum of the matched pairs' similarities (IoU or OKS).
    pub similarity_sum: f64,
    /// Matched pairs whose attributes are all equal.
    pub attributes_equal: u64,
}

impl Score {
    /// Scores `drawn` against `reference` on one image.
    pub fn of(drawn: &[Shape], reference: &[Shape], settings: &Settings) -> Score {
        let pairs = match_shapes(drawn, reference, settings);
        Score {
            drawn: drawn.len() as u64,
            reference: reference.len() as u64,
            matched: pairs.len() as u64,
            similarity_sum: pairs.iter().map(|p| p.similarity).sum(),
            attributes_equal: pairs
                .iter()
                .filter(|p| drawn[p.left].attributes == reference[p.right].attributes)
                .count() as u64,
        }
    }

    pub fn add(&mut self, other: &Score) {
        self.drawn += other.drawn;
        self.reference += other.reference;
        self.matched += other.matched;
        self.similarity_sum += other.similarity_sum;
        self.attributes_equal += other.attributes_equal;
    }

    /// Matched drawn shapes over drawn shapes (1 when nothing was drawn).
    pub fn precision(&self) -> f64 {
        ratio(self.matched, self.drawn)
    }

    /// Matched reference shapes over reference shapes (1 when the reference is empty).
    pub fn recall(&self) -> f64 {
        ratio(self.matched, self.reference)
    }

    /// Mean similarity of the matched pairs (1 when nothing matched: there is no error to
    /// average; precision and recall carry the misses).
    pub fn mean_similarity(&self) -> f64 {
        if self.matched == 0 {
            1.0
        } else {
            self.similarity_sum / self.matched as f64
        }
    }

    /// Matched pairs with equal attributes over matched pairs.
    pub fn attribute_accuracy(&self) -> f64 {
        ratio(self.attributes_equal, self.matched)
    }

    /// One figure to rank by and to compare with a set's threshold: the harmonic mean of
    /// precision and recall, each match weighted by its similarity (so a box drawn loosely
    /// scores lower than one drawn tightly). 1 for an empty reference left empty.
    pub fn overall(&self) -> f64 {
        let total = self.drawn + self.reference;
        if total == 0 {
            1.0
        } else {
            2.0 * self.similarity_sum / total as f64
        }
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        1.0
    } else {
        part as f64 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotation_sets::ShapeKind;
    use crate::quality::boxed;
    use serde_json::json;

    #[test]
    fn a_perfect_copy_scores_one_everywhere() {
        let day = Shape::new("day", ShapeKind::Tag, vec![]);
        let reference = vec![boxed("car", 0.0, 0.0), boxed("bus", 50.0, 0.0), day];
        let s = Score::of(&reference, &reference, &Settings::default());
        assert_eq!(
            (s.precision(), s.recall(), s.mean_similarity()),
            (1.0, 1.0, 1.0)
        );
        assert_eq!((s.attribute_accuracy(), s.overall()), (1.0, 1.0));
        let empty = Score::of(&[], &[], &Settings::default());
        assert_eq!(empty.overall(), 1.0);
    }

    #[test]
    fn a_miss_an_extra_and_a_loose_box_lower_the_right_figures() {
        let reference = vec![boxed("car", 0.0, 0.0), boxed("car", 100.0, 0.0)];
        let mut loose = boxed("car", 2.0, 0.0);
        loose.attributes.insert("parked".into(), json!(true));
        let drawn = vec![loose, boxed("bus", 300.0, 0.0)];
        let s = Score::of(&drawn, &reference, &Settings::default());
        assert_eq!((s.drawn, s.reference, s.matched), (2, 2, 1));
        assert_eq!((s.precision(), s.recall()), (0.5, 0.5));
        assert!((s.mean_similarity() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(s.attribute_accuracy(), 0.0);
        assert!((s.overall() - 1.0 / 3.0).abs() < 1e-12);
        let mut total = s.clone();
        total.add(&Score::of(&reference, &reference, &Settings::default()));
        assert_eq!((total.matched, total.drawn), (3, 4));
        assert_eq!(total.precision(), 0.75);
    }
}
