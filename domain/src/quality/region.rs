//! Overlap of two regions (rectangles, rotated rectangles, polygons) as intersection over union.
//!
//! Axis-aligned boxes are exact. Everything else is measured the way COCO's evaluation measures
//! polygons — by rasterising — but along one axis only: the union's height is cut at every
//! vertex's height into bands, the bands into about [`ROWS`] rows in all, and on each row's
//! centre line the exact x-intervals inside each outline are found (even-odd rule, so
//! self-crossing polygons are measured as a renderer fills them). Inside a band every span end
//! moves linearly, so the midpoint rule is exact except in the few rows where an edge of one
//! outline crosses an edge of the other; axis-aligned boxes come out exact to rounding. No
//! clipping, so no special cases for collinear edges or touching corners.

/// Rows the union's height is cut into.
const ROWS: usize = 512;

/// A region as the outline of a polygon, in image pixels.
pub type Outline = [[f64; 2]];

/// Intersection over union of two axis-aligned boxes `(x0, y0, x1, y1)` (corners in any order).
/// Two identical boxes of zero area overlap fully; other zero-area unions overlap by 0.
pub fn box_iou(a: [f64; 4], b: [f64; 4]) -> f64 {
    let a = normalised(a);
    let b = normalised(b);
    if a == b {
        return 1.0;
    }
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let union = area(a) + area(b) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

fn normalised([x0, y0, x1, y1]: [f64; 4]) -> [f64; 4] {
    [x0.min(x1), y0.min(y1), x0.max(x1), y0.max(y1)]
}

fn area([x0, y0, x1, y1]: [f64; 4]) -> f64 {
    (x1 - x0) * (y1 - y0)
}

/// Intersection over union of two polygon outlines (even-odd fill). Identical outlines overlap
/// fully, whatever their area.
pub fn outline_iou(a: &Outline, b: &Outline) -> f64 {
    if a == b {
        return 1.0;
    }
    let (Some(ea), Some(eb)) = (extent(a), extent(b)) else {
        return 0.0;
    };
    let disjoint = ea[2] <= eb[0] || eb[2] <= ea[0] || ea[3] <= eb[1] || eb[3] <= ea[1];
    if disjoint {
        return 0.0;
    }
    let (top, bottom) = (ea[1].min(eb[1]), ea[3].max(eb[3]));
    // Bands between the vertices' heights: inside one, every span end moves linearly.
    let mut cuts: Vec<f64> = a.iter().chain(b).map(|p| p[1]).collect();
    cuts.sort_by(f64::total_cmp);
    cuts.dedup();
    let (mut inter, mut union) = (0.0, 0.0);
    let (mut sa, mut sb) = (Vec::new(), Vec::new());
    for band in cuts.windows(2) {
        let height = band[1] - band[0];
        let rows = ((ROWS as f64 * height / (bottom - top)).ceil() as usize).max(1);
        let step = height / rows as f64;
        for row in 0..rows {
            let y = band[0] + (row as f64 + 0.5) * step;
            spans(a, y, &mut sa);
            spans(b, y, &mut sb);
            let (i, u) = overlap(&sa, &sb);
            inter += i * step;
            union += u * step;
        }
    }
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// `(x_min, y_min, x_max, y_max)` of an outline.
fn extent(points: &Outline) -> Option<[f64; 4]> {
    let first = points.first()?;
    Some(points.iter().fold(
        [first[0], first[1], first[0], first[1]],
        |[x0, y0, x1, y1], &[x, y]| [x0.min(x), y0.min(y), x1.max(x), y1.max(y)],
    ))
}

/// The x-intervals of the line at height `y` inside `outline`, sorted, as `[start, end]` pairs.
fn spans(outline: &Outline, y: f64, out: &mut Vec<f64>) {
    out.clear();
    let n = outline.len();
    for i in 0..n {
        let [x0, y0] = outline[i];
        let [x1, y1] = outline[(i + 1) % n];
        // Half-open in y so that a vertex on the line is counted by exactly one of its edges.
        if (y0 <= y) != (y1 <= y) {
            out.push(x0 + (y - y0) / (y1 - y0) * (x1 - x0));
        }
    }
    out.sort_by(f64::total_cmp);
}

/// Lengths of the intersection and of the union of two sorted span lists (pairs of crossings).
fn overlap(a: &[f64], b: &[f64]) -> (f64, f64) {
    let total = |s: &[f64]| s.chunks_exact(2).map(|p| p[1] - p[0]).sum::<f64>();
    let mut inter = 0.0;
    let (mut i, mut j) = (0, 0);
    while i + 1 < a.len() && j + 1 < b.len() {
        let lo = a[i].max(b[j]);
        let hi = a[i + 1].min(b[j + 1]);
        inter += (hi - lo).max(0.0);
        if a[i + 1] < b[j + 1] {
            i += 2;
        } else {
            j += 2;
        }
    }
    (inter, total(a) + total(b) - inter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(x: f64, y: f64, side: f64) -> Vec<[f64; 2]> {
        vec![[x, y], [x + side, y], [x + side, y + side], [x, y + side]]
    }

    #[test]
    fn a_box_shifted_by_half_its_width_overlaps_by_a_third() {
        let iou = box_iou([0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0]);
        assert!((iou - 1.0 / 3.0).abs() < 1e-12, "{iou}");
        assert_eq!(box_iou([0.0, 0.0, 10.0, 10.0], [10.0, 10.0, 0.0, 0.0]), 1.0);
        assert_eq!(box_iou([0.0, 0.0, 1.0, 1.0], [2.0, 2.0, 3.0, 3.0]), 0.0);
        assert_eq!(box_iou([0.0, 0.0, 0.0, 5.0], [0.0, 0.0, 0.0, 5.0]), 1.0);
        assert_eq!(box_iou([0.0, 0.0, 0.0, 5.0], [1.0, 0.0, 1.0, 5.0]), 0.0);
    }

    #[test]
    fn outlines_agree_with_the_exact_box_formula() {
        let cases = [
            (0.0, 0.0, 10.0),
            (3.0, 4.0, 10.0),
            (9.0, 9.5, 7.0),
            (-2.5, 1.0, 30.0),
        ];
        for (x, y, side) in cases {
            let a = square(0.0, 0.0, 10.0);
            let b = square(x, y, side);
            let exact = box_iou([0.0, 0.0, 10.0, 10.0], [x, y, x + side, y + side]);
            let measured = outline_iou(&a, &b);
            assert!(
                (measured - exact).abs() < 1e-9,
                "{x},{y},{side}: {measured} vs {exact}"
            );
        }
    }

    #[test]
    fn a_triangle_covers_half_its_box_and_a_rotated_square_its_known_share() {
        let triangle = vec![[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]];
        let iou = outline_iou(&triangle, &square(0.0, 0.0, 10.0));
        assert!((iou - 0.5).abs() < 1e-3, "{iou}");
        // A diamond inscribed in a square covers half of it.
        let diamond = vec![[5.0, 0.0], [10.0, 5.0], [5.0, 10.0], [0.0, 5.0]];
        let iou = outline_iou(&diamond, &square(0.0, 0.0, 10.0));
        assert!((iou - 0.5).abs() < 1e-3, "{iou}");
    }

    #[test]
    fn order_and_winding_do_not_matter_and_self_crossings_fill_even_odd() {
        let a = square(0.0, 0.0, 10.0);
        let mut reversed = a.clone();
        reversed.reverse();
        assert!((outline_iou(&a, &reversed) - 1.0).abs() < 1e-9);
        let b = square(4.0, 2.0, 10.0);
        assert_eq!(outline_iou(&a, &b), outline_iou(&b, &a));
        // A bow tie covers two triangles of a quarter of its box each.
        let bow_tie = vec![[0.0, 0.0], [10.0, 10.0], [10.0, 0.0], [0.0, 10.0]];
        let iou = outline_iou(&bow_tie, &square(0.0, 0.0, 10.0));
        assert!((iou - 0.5).abs() < 1e-3, "{iou}");
    }

    #[test]
    fn degenerate_outlines_do_not_divide_by_zero() {
        let line = vec![[0.0, 0.0], [10.0, 0.0], [5.0, 0.0]];
        assert_eq!(outline_iou(&line, &line), 1.0);
        assert_eq!(outline_iou(&line, &square(0.0, -5.0, 10.0)), 0.0);
        assert_eq!(outline_iou(&[], &square(0.0, 0.0, 1.0)), 0.0);
    }
}
