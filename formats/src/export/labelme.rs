//! LabelMe: one JSON file per image beside the image, under `<subset>/`. Rectangles and
//! polygons keep their kind, polylines become `linestrip`s, rotated rectangles polygons of
//! their corners, keypoint sets one `point` shape per keypoint sharing a `group_id`, and tags
//! image `flags`.

use std::io;

use serde_json::{json, Map, Value};
use tessera_domain::annotation_sets::ShapeKind;

use super::archive::{Archive, Format, Item};

/// LabelMe writer: one JSON file per image; `next_group` numbers the keypoint sets of the whole
/// export (from 1), so the points of one set share a `group_id` no other set uses.
pub struct LabelMe {
    next_group: u64,
}

impl Default for LabelMe {
    fn default() -> LabelMe {
        LabelMe::new()
    }
}

impl LabelMe {
    pub fn new() -> LabelMe {
        LabelMe { next_group: 1 }
    }
}

fn shape_json(
    label: &str,
    kind: &str,
    points: &[[f64; 2]],
    group: Option<u64>,
    extra: &Map<String, Value>,
) -> Value {
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
                ShapeKind::Rectangle => shapes.push(shape_json(
                    &shape.label,
                    "rectangle",
                    &shape.points,
                    None,
                    attrs,
                )),
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
                    let group = self.next_group;
                    self.next_group += 1;
                    for p in &shape.points {
                        shapes.push(shape_json(&shape.label, "point", &[*p], Some(group), attrs));
                    }
                }
                ShapeKind::Tag => {
                    flags.insert(shape.label.clone(), Value::Bool(true));
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
