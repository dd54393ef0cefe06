//! How much annotators agree: on one image, between two versions, and with the consensus.
//!
//! The agreement of two versions is a soft F1: twice the summed similarity of their optimally
//! matched shapes over the number of shapes in both. Identical versions agree 1; a shape only
//! one annotator drew counts as a 0 (missing shapes are disagreement); two empty versions
//! agree 1 (both say "nothing here").

use crate::shape::Shape;

use super::matching::{match_shapes, Pair};
use super::Settings;

/// Agreement of two versions of one image, in `[0, 1]`.
pub fn between(a: &[Shape], b: &[Shape], settings: &Settings) -> f64 {
    from_matches(&match_shapes(a, b, settings), a.len() + b.len())
}

/// The agreement of two versions of `total` shapes in all whose optimal matching is `matched`.
pub fn from_matches(matched: &[Pair], total: usize) -> f64 {
    if total == 0 {
        return 1.0;
    }
    2.0 * matched.iter().map(|p| p.similarity).sum::<f64>() / total as f64
}

/// Mean agreement over every pair of versions of one image; `None` with fewer than two.
pub fn of_image(versions: &[&[Shape]], settings: &Settings) -> Option<f64> {
    let mut sum = 0.0;
    let mut pairs = 0usize;
    for (i, a) in versions.iter().enumerate() {
        for b in &versions[i + 1..] {
            sum += between(a, b, settings);
            pairs += 1;
        }
    }
    (pairs > 0).then(|| sum / pairs as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quality::boxed;

    #[test]
    fn identical_versions_agree_fully_and_missing_shapes_count() {
        let s = Settings::default();
        let v = vec![boxed("car", 0.0, 0.0), boxed("car", 40.0, 0.0)];
        assert_eq!(between(&v, &v, &s), 1.0);
        assert_eq!(between(&[], &[], &s), 1.0);
        assert_eq!(between(&v, &[], &s), 0.0);
        // One of two boxes found: F1 = 2·1 / 3.
        assert!((between(&v, &v[..1], &s) - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(of_image(&[&v, &v, &v], &s), Some(1.0));
        assert_eq!(of_image(&[&v], &s), None);
        // Shifted by 5 of 10 pixels: IoU 1/3 is below the threshold, so no match at all.
        assert_eq!(
            between(&[boxed("car", 0.0, 0.0)], &[boxed("car", 5.0, 0.0)], &s),
            0.0
        );
        let shifted = between(&[boxed("car", 0.0, 0.0)], &[boxed("car", 2.0, 0.0)], &s);
        assert!((shifted - 2.0 / 3.0).abs() < 1e-12);
    }
}
