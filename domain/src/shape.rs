//! The one model of a drawn shape: what the API validates on every save, what exports write and
//! what annotation imports produce. Saved versions keep the client's JSON text; everything that
//! reads it parses it into [`Shape`] so that a field means the same thing everywhere.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::annotation_sets::{AttributeKind, Label, ShapeKind};

/// Most shapes on one image.
pub const MAX_SHAPES: usize = 10_000;

/// COCO's keypoint visibility: the keypoint is not labelled (its point is a placeholder).
pub const NOT_LABELLED: u8 = 0;
/// COCO's keypoint visibility: labelled but occluded.
pub const OCCLUDED: u8 = 1;
/// COCO's keypoint visibility: labelled and visible (the default).
pub const VISIBLE: u8 = 2;

/// One shape. Coordinates are continuous pixels from the image's top-left corner (0-based), in
/// the image as displayed; rectangles are two opposite corners; rotated rectangles are the
/// unrotated box's corners plus a clockwise angle in degrees about its centre.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Shape {
    pub label: String,
    pub kind: ShapeKind,
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub points: Vec<[f64; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub angle: Option<f64>,
    /// Per keypoint of a `points` shape: [`NOT_LABELLED`], [`OCCLUDED`] or [`VISIBLE`]; absent
    /// means every keypoint is visible. Training code needs absent and occluded keypoints told
    /// apart from visible ones (COCO's `v`, YOLO pose's third value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub attributes: Map<String, Value>,
    /// The object is partly hidden behind another (CVAT's per-shape `occluded`; COCO and
    /// datumaro carry it as `attributes.occluded`). Left out of the JSON when false, so shapes
    /// saved before it existed read and write back byte for byte.
    #[serde(default, skip_serializing_if = "is_false")]
    pub occluded: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Tags may be saved with `"points": null` (accepted before this model existed).
fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<[f64; 2]>, D::Error> {
    Ok(Option::<Vec<[f64; 2]>>::deserialize(d)?.unwrap_or_default())
}

/// An axis-aligned box: `(x_min, y_min, x_max, y_max)`.
pub type Extent = (f64, f64, f64, f64);

impl Shape {
    pub fn new(label: &str, kind: ShapeKind, points: Vec<[f64; 2]>) -> Shape {
        Shape {
            label: label.to_string(),
            kind,
            points,
            angle: None,
            visibility: None,
            attributes: Map::new(),
            occluded: false,
        }
    }

    /// Parses the JSON text of a saved version (validated when it was saved); unreadable text
    /// gives no shapes.
    pub fn parse_all(text: &str) -> Vec<Shape> {
        serde_json::from_str(text).unwrap_or_default()
    }

    /// The visibility of keypoint `i` ([`VISIBLE`] unless the shape says otherwise).
    pub fn visibility_of(&self, i: usize) -> u8 {
        self.visibility
            .as_ref()
            .and_then(|v| v.get(i).copied())
            .unwrap_or(VISIBLE)
    }

    /// The points that mean something: all of them, except the keypoints that are not labelled.
    pub fn labelled_points(&self) -> Vec<[f64; 2]> {
        (0..self.points.len())
            .filter(|&i| self.kind != ShapeKind::Points || self.visibility_of(i) != NOT_LABELLED)
            .map(|i| self.points[i])
            .collect()
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

    /// The axis-aligned box around everything the shape covers (rotated corners included,
    /// keypoints that are not labelled left out).
    pub fn extent(&self) -> Option<Extent> {
        match self.kind {
            ShapeKind::RotatedRectangle => bounds(&self.rotated_corners()?),
            _ => bounds(&self.labelled_points()),
        }
    }

    /// The first problem of this shape against its label and the image, named by its path
    /// inside the shape (`points[1]: ...`).
    pub fn problem(&self, label: &Label, width: u32, height: u32) -> Option<String> {
        let name = &self.label;
        if !label.kinds.contains(&self.kind) {
            return Some(format!(
                "kind: label {name:?} is not drawn as {}",
                kind_name(self.kind)
            ));
        }
        for (j, &[x, y]) in self.points.iter().enumerate() {
            let inside =
                (0.0..=f64::from(width)).contains(&x) && (0.0..=f64::from(height)).contains(&y);
            if !inside {
                return Some(format!(
                    "points[{j}]: ({x}, {y}) is outside the {width}x{height} image"
                ));
            }
        }
        if let Some(p) = self.count_problem(label) {
            return Some(format!("points: {} needs {p}", kind_name(self.kind)));
        }
        if let Some(p) = self.visibility_problem() {
            return Some(p);
        }
        if self.occluded && self.kind == ShapeKind::Tag {
            return Some("occluded: a tag is image-level, it has no outline to hide".into());
        }
        match (self.kind, self.angle) {
            (ShapeKind::RotatedRectangle, Some(a)) if (0.0..360.0).contains(&a) => {}
            (ShapeKind::RotatedRectangle, _) => return Some("angle: degrees in [0, 360)".into()),
            (_, Some(_)) => return Some("angle: only rotated rectangles have an angle".into()),
            _ => {}
        }
        if let Some(unknown) = self
            .attributes
            .keys()
            .find(|k| !label.attributes.iter().any(|a| &a.name == *k))
        {
            return Some(format!(
                "attributes.{unknown}: label {name:?} has no such attribute"
            ));
        }
        for a in &label.attributes {
            match self.attributes.get(&a.name) {
                None if a.required => return Some(format!("attributes.{}: required", a.name)),
                None => {}
                Some(v) if !attribute_fits(&a.kind, v) => {
                    return Some(format!(
                        "attributes.{}: {v} does not fit the attribute",
                        a.name
                    ))
                }
                Some(_) => {}
            }
        }
        None
    }

    fn count_problem(&self, label: &Label) -> Option<&'static str> {
        let mut distinct = self.points.clone();
        distinct.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        distinct.dedup();
        let n = self.points.len();
        match self.kind {
            ShapeKind::Rectangle | ShapeKind::RotatedRectangle if n != 2 || distinct.len() != 2 => {
                Some("two distinct corners")
            }
            ShapeKind::Polygon if distinct.len() < 3 => Some("at least three distinct points"),
            ShapeKind::Polyline if distinct.len() < 2 => Some("at least two distinct points"),
            ShapeKind::Points if n == 0 => Some("at least one point"),
            ShapeKind::Points if !label.keypoints.is_empty() && n != label.keypoints.len() => Some(
                "one point per named keypoint (a keypoint that is not labelled: any point, \
                 e.g. [0, 0], with visibility 0)",
            ),
            ShapeKind::Tag if n != 0 => Some("no points (a tag is image-level)"),
            _ => None,
        }
    }

    fn visibility_problem(&self) -> Option<String> {
        let flags = self.visibility.as_ref()?;
        if self.kind != ShapeKind::Points {
            return Some("visibility: only keypoint sets (kind points) have a visibility".into());
        }
        if flags.len() != self.points.len() {
            return Some(format!(
                "visibility: one flag per point ({} points, {} flags)",
                self.points.len(),
                flags.len()
            ));
        }
        if let Some(j) = flags.iter().position(|v| *v > VISIBLE) {
            return Some(format!(
                "visibility[{j}]: 0 (not labelled), 1 (occluded) or 2 (visible), not {}",
                flags[j]
            ));
        }
        if flags.iter().all(|v| *v == NOT_LABELLED) {
            return Some(
                "visibility: at least one keypoint labelled (1 or 2); delete the set instead"
                    .into(),
            );
        }
        None
    }
}

/// The name the API uses for a kind (`rotated_rectangle`).
pub fn kind_name(kind: ShapeKind) -> &'static str {
    match kind {
        ShapeKind::Rectangle => "rectangle",
        ShapeKind::RotatedRectangle => "rotated_rectangle",
        ShapeKind::Polygon => "polygon",
        ShapeKind::Polyline => "polyline",
        ShapeKind::Points => "points",
        ShapeKind::Tag => "tag",
    }
}

/// Whether `value` is a value of an attribute of `kind`.
pub fn attribute_fits(kind: &AttributeKind, value: &Value) -> bool {
    match kind {
        AttributeKind::Select { options } => value
            .as_str()
            .is_some_and(|v| options.iter().any(|o| o == v)),
        AttributeKind::Checkbox => value.is_boolean(),
        AttributeKind::Number { min, max } => value
            .as_f64()
            .is_some_and(|n| min.is_none_or(|m| n >= m) && max.is_none_or(|m| n <= m)),
        AttributeKind::Text => value.as_str().is_some_and(|t| t.len() <= 10_000),
    }
}

/// Parses a shapes document and checks every shape against the schema and an image size.
/// The error names the first problem by its path (`shapes[3].points[1]: ...`).
pub fn parse_list(
    shapes: &Value,
    labels: &[Label],
    width: u32,
    height: u32,
) -> Result<Vec<Shape>, String> {
    let Some(list) = shapes.as_array() else {
        return Err("shapes: expected a list".into());
    };
    if list.len() > MAX_SHAPES {
        return Err(format!("shapes: at most {MAX_SHAPES} per image"));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, raw) in list.iter().enumerate() {
        let at = format!("shapes[{i}]");
        let shape = Shape::deserialize(raw).map_err(|e| format!("{at}: {e}"))?;
        let Some(label) = labels.iter().find(|l| l.name == shape.label) else {
            return Err(format!(
                "{at}.label: no label {:?} in the schema",
                shape.label
            ));
        };
        if let Some(p) = shape.problem(label, width, height) {
            return Err(format!("{at}.{p}"));
        }
        out.push(shape);
    }
    Ok(out)
}

/// The box around `points`.
pub fn bounds(points: &[[f64; 2]]) -> Option<Extent> {
    let first = points.first()?;
    Some(points.iter().fold(
        (first[0], first[1], first[0], first[1]),
        |(a, b, c, d), p| (a.min(p[0]), b.min(p[1]), c.max(p[0]), d.max(p[1])),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn person() -> Label {
        Label {
            name: "person".into(),
            color: "#00ff00".into(),
            kinds: vec![ShapeKind::Points],
            attributes: vec![],
            keypoints: vec!["head".into(), "hand".into(), "foot".into()],
            skeleton: vec![],
        }
    }

    fn check(shapes: Value) -> Result<Vec<Shape>, String> {
        parse_list(&shapes, &[person()], 64, 48)
    }

    #[test]
    fn keypoints_carry_visibility_per_point() {
        let ok = check(json!([{"label": "person", "kind": "points",
            "points": [[1, 2], [0, 0], [5, 6]], "visibility": [2, 0, 1]}]))
        .unwrap();
        assert_eq!(ok[0].visibility_of(1), NOT_LABELLED);
        assert_eq!(ok[0].labelled_points(), vec![[1.0, 2.0], [5.0, 6.0]]);
        assert_eq!(ok[0].extent(), Some((1.0, 2.0, 5.0, 6.0)));
        let plain = check(json!([{"label": "person", "kind": "points",
            "points": [[1, 2], [3, 4], [5, 6]]}]))
        .unwrap();
        assert_eq!(plain[0].visibility_of(2), VISIBLE);
    }

    #[test]
    fn problems_are_named_by_path() {
        let cases = [
            (
                json!([{"label": "person", "kind": "points", "points": [[1, 2], [0, 0], [5, 6]],
                     "visibility": [2, 3, 1]}]),
                "shapes[0].visibility[1]: 0 (not labelled)",
            ),
            (
                json!([{"label": "person", "kind": "points", "points": [[1, 2], [0, 0], [5, 6]],
                     "visibility": [2, 1]}]),
                "shapes[0].visibility: one flag per point",
            ),
            (
                json!([{"label": "person", "kind": "points", "points": [[1, 2], [0, 0], [5, 6]],
                     "visibility": [0, 0, 0]}]),
                "at least one keypoint labelled",
            ),
            (
                json!([{"label": "person", "kind": "points", "points": [[1, 2]]}]),
                "shapes[0].points: points needs one point per named keypoint",
            ),
            (
                json!([{"label": "person", "kind": "points", "points": [[1, 2], [3, 4], [99, 6]]}]),
                "shapes[0].points[2]: (99, 6) is outside the 64x48 image",
            ),
            (
                json!([{"label": "person", "kind": "points", "points": [], "colour": 1}]),
                "shapes[0]: unknown field `colour`",
            ),
            (
                json!([{"label": "car", "kind": "points"}]),
                "shapes[0].label: no label \"car\"",
            ),
            (
                json!([{"label": "person", "kind": "tag"}]),
                "shapes[0].kind: label \"person\" is not drawn as tag",
            ),
        ];
        for (shapes, needle) in cases {
            let err = check(shapes).unwrap_err();
            assert!(err.contains(needle), "{err} lacks {needle}");
        }
    }

    #[test]
    fn rotated_corners_turn_clockwise_about_the_centre() {
        let mut s = Shape::new(
            "x",
            ShapeKind::RotatedRectangle,
            vec![[0.0, 0.0], [4.0, 2.0]],
        );
        s.angle = Some(90.0);
        let c = s.rotated_corners().unwrap();
        // The top-left corner (-2, -1 from the centre (2, 1)) goes to (1, -2) from it.
        assert!((c[0][0] - 3.0).abs() < 1e-9 && (c[0][1] + 1.0).abs() < 1e-9);
        let e = s.extent().unwrap();
        assert!((e.0 - 1.0).abs() < 1e-9 && (e.2 - 3.0).abs() < 1e-9);
    }

    #[test]
    fn serialises_without_empty_fields() {
        let tag = Shape::new("sunny", ShapeKind::Tag, vec![]);
        assert_eq!(
            serde_json::to_value(&tag).unwrap(),
            json!({"label": "sunny", "kind": "tag"})
        );
        let parsed = Shape::parse_all(r#"[{"label":"sunny","kind":"tag","points":null}]"#);
        assert_eq!(parsed, vec![tag]);
    }

    #[test]
    fn occluded_is_written_only_when_set_and_read_back() {
        let old = r#"{"label":"person","kind":"points","points":[[1.0,2.0],[3.0,4.0],[5.0,6.0]]}"#;
        let shape: Shape = serde_json::from_str(old).unwrap();
        assert!(!shape.occluded);
        assert_eq!(serde_json::to_string(&shape).unwrap(), old);
        let ok = check(json!([{"label": "person", "kind": "points",
            "points": [[1, 2], [3, 4], [5, 6]], "occluded": true}]))
        .unwrap();
        assert!(ok[0].occluded);
        assert_eq!(
            serde_json::to_value(&ok[0]).unwrap()["occluded"],
            json!(true)
        );
        let mut tag = Shape::new("sunny", ShapeKind::Tag, vec![]);
        tag.occluded = true;
        let sunny = Label {
            name: "sunny".into(),
            kinds: vec![ShapeKind::Tag],
            ..person()
        };
        assert!(tag
            .problem(&sunny, 64, 48)
            .unwrap()
            .starts_with("occluded:"));
    }
}
