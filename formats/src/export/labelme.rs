//! LabelMe: one JSON file per image beside the image, under `<subset>/`. Rectangles and
//! polygons keep their kind, polylines become `linestrip`s, rotated rectangles polygons of
//! their corners, keypoint sets one `point` shape per labelled keypoint sharing a `group_id`
//! (the keypoint's name in `description`, `flags.occluded` when occluded), and tags image
//! `flags`. An occluded shape has `flags.occluded` too (a keypoint set's own flag does not
//! travel: its points' flags are the keypoints'). Rectangles are written top-left corner first.

use std::io;

use serde_json::{json, Map, Value};
use tessera_domain::annotation_sets::{Label, ShapeKind};
use tessera_domain::shape::{NOT_LABELLED, OCCLUDED};

use super::archive::{Archive, Format, Item};
use super::shapes::round2;

/// LabelMe writer: one JSON file per image; `next_group` numbers the keypoint sets of the whole
/// export (from 1), so the points of one set share a `group_id` no other set uses.
pub struct LabelMe {
    labels: Vec<Label>,
    next_group: u64,
}

impl LabelMe {
    pub fn new(labels: Vec<Label>) -> LabelMe {
        LabelMe {
            labels,
            next_group: 1,
        }
    }
}

/// A LabelMe shape. `description` names a keypoint; `flags` mark an occluded one.
fn shape_json(
    label: &str,
    kind: &str,
    points: &[[f64; 2]],
    group: Option<u64>,
    extra: &Map<String, Value>,
) -> Value {
    let points: Vec<[f64; 2]> = points
        .iter()
        .map(|p| [round2(p[0]), round2(p[1])])
        .collect();
    json!({
        "label": label,
        "points": points,
        "group_id": group,
        "description": "",
        "shape_type": kind,
        "flags": {},
        "attributes": extra,
    })
}

impl Format for LabelMe {
    fn image_path(&self, item: &Item) -> String {
        format!("{}/{}", item.subset, item.file_name())
    }

    fn item(&mut self, out: &mut Archive, item: &Item) -> io::Result<()> {
        let mut shapes = Vec::new();
        let mut flags = Map::new();
        for shape in &item.shapes {
            let attrs = &shape.attributes;
            match shape.kind {
                ShapeKind::Rectangle => {
                    // Top-left corner first, whichever way it was drawn.
                    let (x0, y0, x1, y1) = shape.extent().unwrap_or_default();
                    let corners = [[x0, y0], [x1, y1]];
                    shapes.push(shape_json(&shape.label, "rectangle", &corners, None, attrs));
                }
                ShapeKind::Polygon => shapes.push(shape_json(
                    &shape.label,
                    "polygon",
                    &shape.points,
                    None,
                    attrs,
                )),
                ShapeKind::Polyline => shapes.push(shape_json(
                    &shape.label,
                    "linestrip",
                    &shape.points,
                    None,
                    attrs,
                )),
                ShapeKind::RotatedRectangle => {
                    out.report.loss(
                        "rotated rectangles exported to LabelMe as polygons of their corners",
                    );
                    let corners = shape.outline().unwrap_or_default();
                    shapes.push(shape_json(&shape.label, "polygon", &corners, None, attrs));
                }
                ShapeKind::Points => {
                    if shape.occluded {
                        out.report.loss(
                            "the occluded flag of keypoint sets left out of LabelMe (a point's \
                             flags.occluded marks an occluded keypoint)",
                        );
                    }
                    let group = self.next_group;
                    self.next_group += 1;
                    let names = self
                        .labels
                        .iter()
                        .find(|l| l.name == shape.label)
                        .map(|l| l.keypoints.clone())
                        .unwrap_or_default();
                    for (i, p) in shape.points.iter().enumerate() {
                        let v = shape.visibility_of(i);
                        if v == NOT_LABELLED {
                            continue;
                        }
                        let mut point =
                            shape_json(&shape.label, "point", &[*p], Some(group), attrs);
                        let name = names.get(i).cloned().unwrap_or_else(|| (i + 1).to_string());
                        point["description"] = Value::String(name);
                        if v == OCCLUDED {
                            point["flags"] = json!({"occluded": true});
                        }
                        shapes.push(point);
                    }
                }
                ShapeKind::Tag => {
                    flags.insert(shape.label.clone(), Value::Bool(true));
                }
            }
            let outlined = !matches!(shape.kind, ShapeKind::Points | ShapeKind::Tag);
            if outlined && shape.occluded {
                if let Some(last) = shapes.last_mut() {
                    last["flags"] = json!({"occluded": true});
                }
            }
        }
        let doc = json!({
            "version": "5.2.1",
            "flags": flags,
            "shapes": shapes,
            "imagePath": item.file_name(),
            "imageData": null,
            "imageHeight": item.height,
            "imageWidth": item.width,
        });
        let text = serde_json::to_vec_pretty(&doc)?;
        out.file(&format!("{}/{}.json", item.subset, item.stem), &text, true)
    }

    fn finish(self: Box<Self>, _out: &mut Archive) -> io::Result<()> {
        Ok(())
    }
}
