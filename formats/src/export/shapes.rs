//! Shapes as exporters see them: parsed once from the saved JSON, with the geometry every
//! format needs (extents, the corners of rotated boxes, areas).

use serde::Deserialize;
use serde_json::{Map, Value};
use tessera_domain::annotation_sets::ShapeKind;

/// One saved shape. Coordinates are Tessera's: continuous pixels from the image's top-left
/// corner (0-based); rectangles are two opposite corners; rotated rectangles are the unrotated
/// box's corners plus a clockwise angle in degrees about its centre.
#[derive(Clone, Debug, Deserialize)]
pub struct Shape {
    pub label: String,
    pub kind: ShapeKind,
    #[serde(default)]
    pub points: Vec<[f64; 2]>,
    #[serde(default)]
    pub angle: Option<f64>,
    #[serde(default)]
    pub attributes: Map<String, Value>,
}

/// An axis-aligned box: `(x_min, y_min, x_max, y_max)`.
pub type Extent = (f64, f64, f64, f64);

impl Shape {
    /// Parses the JSON text of a saved version (already validated when it was saved).
    pub fn parse_all(text: &str) -> Vec<Shape> {
        serde_json::from_str(text).unwrap_or_default()
    }

    /// The outline a polygon-only format draws: polygon points, a rectangle's four corners, a
    /// rotated rectangle's rotated corners; `None` for the other kinds.
    pub fn outline(&self) -> Option<Vec<[f64; 2]>> {
        match self.kind {
            ShapeKind::Polygon => Some(self.points.clone()),
            ShapeKind::Rectangle => {
                let (x0, y0, x1, y1) = self.extent()?;
                Some(vec![[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
            }
            ShapeKind::RotatedRectangle => Some(self.rotated_corners()?.to_vec()),
            _ => None,
        }
    }

    /// The corners of a rotated rectangle after rotation, clockwise from the top-left one.
    pub fn rotated_corners(&self) -> Option<[[f64; 2]; 4]> {
        let (x0, y0, x1, y1) = bounds(&self.points)?;
        let (cx, cy) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
        let (sin, cos) = self.angle.unwrap_or(0.0).to_radians().sin_cos();
        // Image y grows downwards, so this rotation is clockwise on screen.
        let turn = |x: f64, y: f64| {
            let (dx, dy) = (x - cx, y - cy);
            [cx + dx * cos - dy * sin, cy + dx * sin + dy * cos]
        };
        Some([turn(x0, y0), turn(x1, y0), turn(x1, y1), turn(x0, y1)])
    }

    /// The axis-aligned box around everything the shape covers (rotated corners included).
    pub fn extent(&self) -> Option<Extent> {
        match self.kind {
            ShapeKind::RotatedRectangle => bounds(&self.rotated_corners()?),
            _ => bounds(&self.points),
        }
    }
}

/// The box around `points`.
pub fn bounds(points: &[[f64; 2]]) -> Option<Extent> {
    let first = points.first()?;
    Some(points.iter().fold(
        (first[0], first[1], first[0], first[1]),
        |(a, b, c, d), p| (a.min(p[0]), b.min(p[1]), c.max(p[0]), d.max(p[1])),
    ))
}

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

/// A number as exporters write it: at most two decimals, no exponent, no `-0`.
pub fn num(v: f64) -> String {
    let rounded = (v * 100.0).round() / 100.0;
    let text = format!("{:.2}", rounded + 0.0);
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(kind: ShapeKind, points: Vec<[f64; 2]>, angle: Option<f64>) -> Shape {
        Shape {
            label: "x".into(),
            kind,
            points,
            angle,
            attributes: Map::new(),
        }
    }

    #[test]
    fn rotated_corners_turn_clockwise_about_the_centre() {
        let s = shape(
            ShapeKind::RotatedRectangle,
            vec![[0.0, 0.0], [4.0, 2.0]],
            Some(90.0),
        );
        let c = s.rotated_corners().unwrap();
        // The top-left corner (-2, -1 from the centre (2, 1)) goes to (1, -2) from it.
        assert!((c[0][0] - 3.0).abs() < 1e-9 && (c[0][1] + 1.0).abs() < 1e-9);
        let e = s.extent().unwrap();
        assert!((e.0 - 1.0).abs() < 1e-9 && (e.2 - 3.0).abs() < 1e-9);
    }

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
}
