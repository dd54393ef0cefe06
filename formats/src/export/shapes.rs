//! Shapes as exporters see them: the domain's [`Shape`] plus what writers need on top (boxes
//! readers accept, areas, numbers as written).

pub use tessera_domain::shape::{bounds, Extent, Shape};

/// The box a box-only format writes for `shape`: its extent clamped into the image and, when
/// that is less than a pixel wide or high (a horizontal polyline, a single keypoint, a
/// rectangle of zero height), widened to 1 px about its centre, as readers reject empty boxes.
/// The second value says whether it was widened (formats count that in their report).
pub fn box_of(shape: &Shape, width: u32, height: u32) -> Option<(Extent, bool)> {
    let (x0, y0, x1, y1) = shape.extent()?;
    let (x0, x1, wide) = at_least_a_pixel(clamp(x0, width), clamp(x1, width), width);
    let (y0, y1, high) = at_least_a_pixel(clamp(y0, height), clamp(y1, height), height);
    Some(((x0, y0, x1, y1), !(wide && high)))
}

/// `(lo, hi)` widened to 1 px about its middle (kept inside `[0, limit]`) when narrower; the
/// flag is false when it was widened.
fn at_least_a_pixel(lo: f64, hi: f64, limit: u32) -> (f64, f64, bool) {
    let limit = f64::from(limit);
    if hi - lo >= 1.0 || limit < 1.0 {
        return (lo, hi, true);
    }
    let lo = ((lo + hi) / 2.0 - 0.5).clamp(0.0, limit - 1.0);
    (lo, lo + 1.0, false)
}

/// The report line of a widened box.
pub const WIDENED: &str =
    "boxes less than 1 px wide or high widened to 1 px about their centre (readers reject empty boxes)";

/// The area enclosed by a polygon (shoelace formula).
pub fn polygon_area(points: &[[f64; 2]]) -> f64 {
    let n = points.len();
    let twice: f64 = (0..n)
        .map(|i| {
            let (p, q) = (points[i], points[(i + 1) % n]);
            p[0] * q[1] - q[0] * p[1]
        })
        .sum();
    twice.abs() / 2.0
}

/// A coordinate clamped into `[0, limit]`: rotated corners may poke out of the image, and no
/// consumer accepts that.
pub fn clamp(v: f64, limit: u32) -> f64 {
    v.clamp(0.0, f64::from(limit))
}

/// A coordinate as JSON formats write it: rounded to two decimals (`num` for text formats).
pub fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0 + 0.0
}

/// A number as exporters write it: at most two decimals, no exponent, no `-0`.
pub fn num(v: f64) -> String {
    let rounded = (v * 100.0).round() / 100.0;
    let text = format!("{:.2}", rounded + 0.0);
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_domain::annotation_sets::ShapeKind;

    #[test]
    fn areas_and_numbers() {
        let square = [[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [0.0, 2.0]];
        assert_eq!(polygon_area(&square), 4.0);
        assert_eq!(num(1.0), "1");
        assert_eq!(num(1.256), "1.26");
        assert_eq!(num(-0.0001), "0");
        assert_eq!(num(1e-7), "0");
        assert_eq!(num(12345678.5), "12345678.5");
    }

    #[test]
    fn empty_boxes_are_widened_to_a_pixel_inside_the_image() {
        let line = Shape::new("x", ShapeKind::Polyline, vec![[5.0, 40.0], [30.0, 40.0]]);
        assert_eq!(box_of(&line, 64, 48), Some(((5.0, 39.5, 30.0, 40.5), true)));
        let edge = Shape::new("x", ShapeKind::Polyline, vec![[5.0, 48.0], [30.0, 48.0]]);
        assert_eq!(box_of(&edge, 64, 48), Some(((5.0, 47.0, 30.0, 48.0), true)));
        let rect = Shape::new("x", ShapeKind::Rectangle, vec![[1.0, 1.0], [3.0, 4.0]]);
        assert_eq!(box_of(&rect, 64, 48), Some(((1.0, 1.0, 3.0, 4.0), false)));
    }
}
