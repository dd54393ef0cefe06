//! Pascal VOC: `Annotations/<stem>.xml`, `ImageSets/Main/<subset>.txt`, `JPEGImages/`,
//! `labelmap.txt`. Boxes only: other outlines travel as their bounding boxes, keypoints and
//! tags are left out, each counted in the report. Coordinates are written as Tessera stores
//! them (0-based, decimals kept), not shifted to VOC's historical 1-based pixels (see
//! docs/formats.md).

use std::collections::BTreeMap;
use std::io;

use tessera_domain::annotation_sets::{Label, ShapeKind};

use super::archive::{Archive, Format, Item};
use super::shapes::{box_of, num, WIDENED};
use crate::xml::escape;

pub struct Voc {
    labels: Vec<Label>,
    subsets: BTreeMap<String, String>,
}

impl Voc {
    pub fn new(labels: Vec<Label>) -> Voc {
        Voc {
            labels,
            subsets: BTreeMap::new(),
        }
    }
}

impl Format for Voc {
    fn image_path(&self, item: &Item) -> String {
        format!("JPEGImages/{}", item.file_name())
    }

    fn item(&mut self, out: &mut Archive, item: &Item) -> io::Result<()> {
        let mut xml = format!(
            "<annotation>\n  <folder>JPEGImages</folder>\n  <filename>{}</filename>\n  \
             <source><database>Tessera</database></source>\n  \
             <size><width>{}</width><height>{}</height><depth>{}</depth></size>\n  \
             <segmented>0</segmented>\n",
            escape(&item.file_name()),
            item.width,
            item.height,
            item.channels
        );
        for shape in &item.shapes {
            match shape.kind {
                ShapeKind::Rectangle => {}
                ShapeKind::Polygon | ShapeKind::Polyline | ShapeKind::RotatedRectangle => {
                    out.report.loss(format!(
                        "{} exported to VOC as their bounding boxes",
                        kind_plural(shape.kind)
                    ));
                }
                ShapeKind::Points | ShapeKind::Tag => {
                    out.report
                        .loss(format!("{} left out of VOC", kind_plural(shape.kind)));
                    continue;
                }
            }
            let Some(((x0, y0, x1, y1), widened)) = box_of(shape, item.width, item.height) else {
                continue;
            };
            if widened {
                out.report.loss(WIDENED);
            }
            xml.push_str(&format!(
                "  <object>\n    <name>{}</name>\n    <pose>Unspecified</pose>\n    \
                 <truncated>0</truncated>\n    <difficult>0</difficult>\n    <occluded>{}</occluded>\n    \
                 <bndbox><xmin>{}</xmin><ymin>{}</ymin><xmax>{}</xmax><ymax>{}</ymax></bndbox>\n  \
                 </object>\n",
                escape(&shape.label),
                u8::from(shape.occluded),
                num(x0),
                num(y0),
                num(x1),
                num(y1),
            ));
        }
        xml.push_str("</annotation>\n");
        out.file(
            &format!("Annotations/{}.xml", item.stem),
            xml.as_bytes(),
            true,
        )?;
        let list = self.subsets.entry(item.subset.clone()).or_default();
        list.push_str(&item.stem);
        list.push('\n');
        Ok(())
    }

    fn finish(self: Box<Self>, out: &mut Archive) -> io::Result<()> {
        let mut labelmap = String::from("# label:color_rgb:parts:actions\n");
        for label in &self.labels {
            let (r, g, b) = rgb(&label.color);
            labelmap.push_str(&format!("{}:{r},{g},{b}::\n", label.name));
        }
        out.file("labelmap.txt", labelmap.as_bytes(), true)?;
        for (subset, list) in &self.subsets {
            out.file(
                &format!("ImageSets/Main/{subset}.txt"),
                list.as_bytes(),
                true,
            )?;
        }
        Ok(())
    }
}

/// "rectangles", "rotated rectangles", ... for report lines.
pub fn kind_plural(kind: ShapeKind) -> &'static str {
    match kind {
        ShapeKind::Rectangle => "rectangles",
        ShapeKind::RotatedRectangle => "rotated rectangles",
        ShapeKind::Polygon => "polygons",
        ShapeKind::Polyline => "polylines",
        ShapeKind::Points => "keypoint sets",
        ShapeKind::Tag => "image tags",
    }
}

/// `#rrggbb` as numbers (black when malformed; the schema check keeps it well-formed).
pub fn rgb(color: &str) -> (u8, u8, u8) {
    let hex = color.trim_start_matches('#');
    let part = |i: usize| {
        hex.get(i..i + 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .unwrap_or(0)
    };
    (part(0), part(2), part(4))
}
