//! CVAT for images 1.1: `annotations.xml` with `images/` next to it (with splits, one
//! `<subset>.xml` per subset: readers name a task file's subset after the file and drop images
//! whose `subset` attribute disagrees, so none is written). Every Tessera kind has a
//! CVAT element (`box` with `rotation` for rotated rectangles, `polygon`, `polyline`,
//! `points` — one element per keypoint set, which datumaro keeps together — and `tag`).
//! Rotated rectangles keep `rotation` even at 0 so that they come back as rotated rectangles.

use std::fs::File;
use std::io::{self, BufWriter, Write};

use serde_json::Value;
use tessera_domain::annotation_sets::{AttributeKind, Label, ShapeKind};

use super::archive::{Archive, Format, Item, Part};
use super::shapes::{clamp, num, Shape};
use crate::xml::escape;

/// The text attribute that carries a keypoint set's visibility flags (`2,0,1`): CVAT for images
/// has per-point visibility only in skeletons, which datumaro flattens. The `<points>` element
/// lists the labelled keypoints only, so every reader sees the right points; Tessera's import
/// puts the others back from the flags.
pub const VISIBILITY: &str = "keypoint_visibility";

pub struct Cvat {
    labels: Vec<Label>,
    name: String,
    /// Per subset: the `<image>` elements written so far, and how many.
    bodies: std::collections::BTreeMap<String, (BufWriter<File>, u64)>,
    next_id: u64,
}

impl Cvat {
    pub fn new(labels: Vec<Label>, name: String) -> Cvat {
        Cvat {
            labels,
            name,
            bodies: Default::default(),
            next_id: 0,
        }
    }

    fn meta(&self, size: u64) -> String {
        let mut labels = String::new();
        for l in &self.labels {
            labels.push_str(&format!(
                "        <label>\n          <name>{}</name>\n          <color>{}</color>\n          \
                 <type>any</type>\n          <attributes>\n",
                escape(&l.name),
                escape(&l.color)
            ));
            for a in &l.attributes {
                let (input, values) = match &a.kind {
                    AttributeKind::Select { options } => ("select", options.join("\n")),
                    AttributeKind::Checkbox => ("checkbox", "false\ntrue".to_string()),
                    AttributeKind::Number { min, max } => (
                        "number",
                        format!("{}\n{}\n1", min.unwrap_or(0.0), max.unwrap_or(1e9)),
                    ),
                    AttributeKind::Text => ("text", String::new()),
                };
                let default = a.default.as_ref().map(value_text).unwrap_or_default();
                labels.push_str(&format!(
                    "            <attribute>\n              <name>{}</name>\n              \
                     <mutable>False</mutable>\n              <input_type>{input}</input_type>\n              \
                     <default_value>{}</default_value>\n              <values>{}</values>\n            \
                     </attribute>\n",
                    escape(&a.name),
                    escape(&default),
                    escape(&values)
                ));
            }
            if l.kinds.contains(&ShapeKind::Points) {
                labels.push_str(&format!(
                    "            <attribute>\n              <name>{VISIBILITY}</name>\n              \
                     <mutable>False</mutable>\n              <input_type>text</input_type>\n              \
                     <default_value></default_value>\n              <values></values>\n            \
                     </attribute>\n"
                ));
            }
            labels.push_str("          </attributes>\n        </label>\n");
        }
        format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<annotations>\n  <version>1.1</version>\n  \
             <meta>\n    <task>\n      <name>{}</name>\n      <size>{size}</size>\n      \
             <mode>annotation</mode>\n      <labels>\n{labels}      \
             </labels>\n    </task>\n  </meta>\n",
            escape(&self.name),
        )
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn points_text(item: &Item, points: &[[f64; 2]]) -> String {
    let pairs: Vec<String> = points
        .iter()
        .map(|p| {
            format!(
                "{},{}",
                num(clamp(p[0], item.width)),
                num(clamp(p[1], item.height))
            )
        })
        .collect();
    pairs.join(";")
}

fn element(item: &Item, shape: &Shape) -> Option<String> {
    let label = escape(&shape.label);
    let occluded = u8::from(shape.occluded);
    let common =
        format!("label=\"{label}\" source=\"manual\" occluded=\"{occluded}\" z_order=\"0\"");
    let head = match shape.kind {
        ShapeKind::Rectangle | ShapeKind::RotatedRectangle => {
            let (x0, y0, x1, y1) = super::shapes::bounds(&shape.points)?;
            let rotation = match shape.kind {
                ShapeKind::RotatedRectangle => {
                    format!(" rotation=\"{}\"", num(shape.angle.unwrap_or(0.0)))
                }
                _ => String::new(),
            };
            format!(
                "<box {common} xtl=\"{}\" ytl=\"{}\" xbr=\"{}\" ybr=\"{}\"{rotation}",
                num(x0),
                num(y0),
                num(x1),
                num(y1)
            )
        }
        ShapeKind::Polygon => format!(
            "<polygon {common} points=\"{}\"",
            points_text(item, &shape.points)
        ),
        ShapeKind::Polyline => format!(
            "<polyline {common} points=\"{}\"",
            points_text(item, &shape.points)
        ),
        ShapeKind::Points => format!(
            "<points {common} points=\"{}\"",
            points_text(item, &shape.labelled_points())
        ),
        ShapeKind::Tag => format!("<tag label=\"{label}\" source=\"manual\""),
    };
    let tag = head[1..].split(' ').next().unwrap_or("box").to_string();
    let mut xml = format!("    {head}>\n");
    for (name, value) in &shape.attributes {
        xml.push_str(&format!(
            "      <attribute name=\"{}\">{}</attribute>\n",
            escape(name),
            escape(&value_text(value))
        ));
    }
    if let Some(flags) = &shape.visibility {
        let list: Vec<String> = flags.iter().map(u8::to_string).collect();
        xml.push_str(&format!(
            "      <attribute name=\"{VISIBILITY}\">{}</attribute>\n",
            list.join(",")
        ));
    }
    xml.push_str(&format!("    </{tag}>\n"));
    Some(xml)
}

impl Format for Cvat {
    fn image_path(&self, item: &Item) -> String {
        format!("images/{}", item.file_name())
    }

    fn item(&mut self, out: &mut Archive, item: &Item) -> io::Result<()> {
        if !self.bodies.contains_key(&item.subset) {
            self.bodies.insert(item.subset.clone(), (out.spool()?, 0));
        }
        let id = self.next_id;
        self.next_id += 1;
        let mut xml = format!(
            "  <image id=\"{id}\" name=\"{}\" width=\"{}\" height=\"{}\">\n",
            escape(&item.file_name()),
            item.width,
            item.height
        );
        for shape in &item.shapes {
            if let Some(e) = element(item, shape) {
                xml.push_str(&e);
            }
        }
        xml.push_str("  </image>\n");
        match self.bodies.get_mut(&item.subset) {
            Some((body, count)) => {
                *count += 1;
                body.write_all(xml.as_bytes())
            }
            None => Ok(()),
        }
    }

    fn finish(self: Box<Self>, out: &mut Archive) -> io::Result<()> {
        out.dir("images/")?;
        let single = self.bodies.len() <= 1;
        let mut this = *self;
        if this.bodies.is_empty() {
            let parts = vec![
                Part::Text(this.meta(0)),
                Part::Text("</annotations>\n".into()),
            ];
            return out.append("annotations.xml", parts);
        }
        for (subset, (body, count)) in std::mem::take(&mut this.bodies) {
            let file = if single {
                "annotations.xml".to_string()
            } else {
                format!("{subset}.xml")
            };
            let parts = vec![
                Part::Text(this.meta(count)),
                Part::Spool(body),
                Part::Text("</annotations>\n".into()),
            ];
            out.append(&file, parts)?;
        }
        Ok(())
    }
}
