//! How alike two shapes of one label are, from 0 (nothing in common) to 1 (the same).
//!
//! - Regions (rectangles, rotated rectangles, polygons, in any mix): intersection over union
//!   ([`super::region`]).
//! - Keypoint sets: COCO's object keypoint similarity (OKS), each labelled keypoint scoring
//!   `exp(-d² / (2·s²·k²))` with `d` the distance between the two placements, `s²` the object's
//!   scale and `k` the per-keypoint tolerance ([`Settings::oks_sigma`]); a keypoint labelled in
//!   only one of the two scores 0.
//! - Polylines: both resampled to [`LINE_SAMPLES`] points evenly spaced along their length and
//!   scored like keypoints (in the better of the two directions: a line drawn backwards is the
//!   same line).
//! - Tags: 1 (the label is the whole of a tag; matching is per label).
//!
//! The scale `s²` is `(w² + h²) / 2` of the box around both shapes: the box's area for a square
//! object, as COCO uses, but also defined for a horizontal line or a single keypoint, floored at
//! [`MIN_SCALE`]² so that two clicks a pixel apart on a one-point label still mostly agree.

use crate::annotation_sets::ShapeKind;
use crate::shape::Shape;

use super::region::{box_iou, outline_iou};
use super::Settings;

/// Points a polyline is resampled to before comparing.
pub const LINE_SAMPLES: usize = 32;

/// The smallest object scale in pixels.
pub const MIN_SCALE: f64 = 16.0;

/// The similarity of two shapes (of the same label) in `[0, 1]`.
pub fn similarity(a: &Shape, b: &Shape, settings: &Settings) -> f64 {
    use ShapeKind::*;
    match (a.kind, b.kind) {
        (Tag, Tag) => 1.0,
        (Rectangle, Rectangle) => match (a.points.as_slice(), b.points.as_slice()) {
            ([p, q], [r, s]) => box_iou([p[0], p[1], q[0], q[1]], [r[0], r[1], s[0], s[1]]),
            _ => 0.0,
        },
        (Points, Points) => keypoints(a, b, settings.oks_sigma),
        (Polyline, Polyline) => polylines(&a.points, &b.points, settings.oks_sigma),
        _ => match (a.outline(), b.outline()) {
            (Some(p), Some(q)) => outline_iou(&p, &q),
            _ => 0.0,
        },
    }
}

/// Whether two shapes could score above zero: their boxes, widened for keypoints and lines by
/// ten tolerances, touch. Cheap, so that big images only compare neighbours.
pub fn may_overlap(a: &Shape, b: &Shape, settings: &Settings) -> bool {
    let (Some(ea), Some(eb)) = (a.extent(), b.extent()) else {
        return a.kind == ShapeKind::Tag && b.kind == ShapeKind::Tag;
    };
    // Keypoints and lines score above zero at any distance, but ten tolerances away a point
    // scores exp(-50), far below any threshold.
    let margin = match a.kind {
        ShapeKind::Points | ShapeKind::Polyline => 10.0 * scale(&[ea, eb]) * settings.oks_sigma,
        _ => 0.0,
    };
    ea.0 <= eb.2 + margin && eb.0 <= ea.2 + margin && ea.1 <= eb.3 + margin && eb.1 <= ea.3 + margin
}

/// `s` of the box around the given boxes: `sqrt((w² + h²) / 2)`, at least [`MIN_SCALE`].
fn scale(extents: &[(f64, f64, f64, f64)]) -> f64 {
    let (x0, y0, x1, y1) = extents.iter().fold(
        (f64::MAX, f64::MAX, f64::MIN, f64::MIN),
        |(a, b, c, d), e| (a.min(e.0), b.min(e.1), c.max(e.2), d.max(e.3)),
    );
    let (w, h) = (x1 - x0, y1 - y0);
    ((w * w + h * h) / 2.0).sqrt().max(MIN_SCALE)
}

/// One keypoint's score at distance² `d2`.
fn closeness(d2: f64, s: f64, sigma: f64) -> f64 {
    (-d2 / (2.0 * s * s * sigma * sigma)).exp()
}

fn distance2(p: [f64; 2], q: [f64; 2]) -> f64 {
    (p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)
}

fn keypoints(a: &Shape, b: &Shape, sigma: f64) -> f64 {
    if a.points.len() != b.points.len() {
        return 0.0;
    }
    let (Some(ea), Some(eb)) = (a.extent(), b.extent()) else {
        return 0.0;
    };
    let s = scale(&[ea, eb]);
    let (mut sum, mut counted) = (0.0, 0usize);
    for i in 0..a.points.len() {
        let (va, vb) = (a.visibility_of(i), b.visibility_of(i));
        match (va > 0, vb > 0) {
            (true, true) => {
                sum += closeness(distance2(a.points[i], b.points[i]), s, sigma);
                counted += 1;
            }
            (false, false) => {}
            _ => counted += 1,
        }
    }
    if counted == 0 {
        0.0
    } else {
        sum / counted as f64
    }
}

fn polylines(a: &[[f64; 2]], b: &[[f64; 2]], sigma: f64) -> f64 {
    let (Some(ra), Some(rb)) = (resample(a), resample(b)) else {
        return 0.0;
    };
    let box_of = |p: &[[f64; 2]]| {
        p.iter()
            .fold((f64::MAX, f64::MAX, f64::MIN, f64::MIN), |e, q| {
                (e.0.min(q[0]), e.1.min(q[1]), e.2.max(q[0]), e.3.max(q[1]))
            })
    };
    let s = scale(&[box_of(&ra), box_of(&rb)]);
    let along = |reverse: bool| {
        (0..LINE_SAMPLES)
            .map(|i| {
                let j = if reverse { LINE_SAMPLES - 1 - i } else { i };
                closeness(distance2(ra[i], rb[j]), s, sigma)
            })
            .sum::<f64>()
            / LINE_SAMPLES as f64
    };
    along(false).max(along(true))
}

/// [`LINE_SAMPLES`] points evenly spaced along a polyline; `None` for a line of no length.
fn resample(line: &[[f64; 2]]) -> Option<Vec<[f64; 2]>> {
    let lengths: Vec<f64> = line
        .windows(2)
        .map(|w| distance2(w[0], w[1]).sqrt())
        .collect();
    let total: f64 = lengths.iter().sum();
    if total <= 0.0 || !total.is_finite() {
        return None;
    }
    let mut out = Vec::with_capacity(LINE_SAMPLES);
    let (mut segment, mut start) = (0, 0.0);
    for i in 0..LINE_SAMPLES {
        let at = total * i as f64 / (LINE_SAMPLES - 1) as f64;
        while segment + 1 < lengths.len() && start + lengths[segment] < at {
            start += lengths[segment];
            segment += 1;
        }
        let t = if lengths[segment] > 0.0 {
            ((at - start) / lengths[segment]).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let (p, q) = (line[segment], line[segment + 1]);
        out.push([p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(kind: ShapeKind, points: &[[f64; 2]]) -> Shape {
        Shape::new("car", kind, points.to_vec())
    }

    #[test]
    fn a_shifted_box_scores_its_iou_whatever_kind_draws_it() {
        let s = Settings::default();
        let a = shape(ShapeKind::Rectangle, &[[0.0, 0.0], [10.0, 10.0]]);
        let b = shape(ShapeKind::Rectangle, &[[5.0, 0.0], [15.0, 10.0]]);
        assert!((similarity(&a, &b, &s) - 1.0 / 3.0).abs() < 1e-12);
        let polygon = shape(
            ShapeKind::Polygon,
            &[[5.0, 0.0], [15.0, 0.0], [15.0, 10.0], [5.0, 10.0]],
        );
        assert!((similarity(&a, &polygon, &s) - 1.0 / 3.0).abs() < 1e-9);
        let mut turned = shape(ShapeKind::RotatedRectangle, &[[0.0, 0.0], [10.0, 10.0]]);
        turned.angle = Some(90.0);
        assert!((similarity(&a, &turned, &s) - 1.0).abs() < 1e-3);
        turned.angle = Some(45.0);
        // A square and its turn by 45° meet in a regular octagon: IoU 1/√2.
        let expected = 1.0 / 2f64.sqrt();
        assert!((similarity(&a, &turned, &s) - expected).abs() < 2e-3);
    }

    #[test]
    fn keypoints_score_like_coco_oks_and_count_unlabelled_points() {
        let s = Settings::default();
        let a = shape(ShapeKind::Points, &[[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]]);
        assert_eq!(similarity(&a, &a, &s), 1.0);
        let mut b = a.clone();
        b.points[0] = [0.0, 10.0];
        let scale2 = (100f64.powi(2) * 2.0) / 2.0;
        let first = (-100.0 / (2.0 * scale2 * 0.01)).exp();
        assert!((similarity(&a, &b, &s) - (first + 2.0) / 3.0).abs() < 1e-12);
        b.visibility = Some(vec![0, 2, 2]);
        b.points[0] = [0.0, 0.0];
        assert!((similarity(&a, &b, &s) - 2.0 / 3.0).abs() < 1e-12);
        let one = shape(ShapeKind::Points, &[[0.0, 0.0]]);
        assert_eq!(similarity(&a, &one, &s), 0.0);
    }

    #[test]
    fn a_polyline_drawn_backwards_or_with_more_vertices_is_the_same_line() {
        let s = Settings::default();
        let a = shape(ShapeKind::Polyline, &[[0.0, 0.0], [100.0, 0.0]]);
        let b = shape(
            ShapeKind::Polyline,
            &[[100.0, 0.0], [60.0, 0.0], [30.0, 0.0], [0.0, 0.0]],
        );
        assert!((similarity(&a, &b, &s) - 1.0).abs() < 1e-12);
        let far = shape(ShapeKind::Polyline, &[[0.0, 50.0], [100.0, 50.0]]);
        assert!(similarity(&a, &far, &s) < 0.01);
        let distant = shape(ShapeKind::Polyline, &[[0.0, 900.0], [100.0, 900.0]]);
        assert!(!may_overlap(&a, &distant, &s));
        assert!(may_overlap(&a, &far, &s));
    }

    #[test]
    fn kinds_without_a_common_measure_score_zero() {
        let s = Settings::default();
        let tag = shape(ShapeKind::Tag, &[]);
        let points = shape(ShapeKind::Points, &[[1.0, 1.0]]);
        let bbox = shape(ShapeKind::Rectangle, &[[0.0, 0.0], [2.0, 2.0]]);
        assert_eq!(similarity(&tag, &tag, &s), 1.0);
        assert_eq!(similarity(&tag, &bbox, &s), 0.0);
        assert_eq!(similarity(&points, &bbox, &s), 0.0);
        assert!(may_overlap(&tag, &tag, &s));
    }
}
