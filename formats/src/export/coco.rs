//! COCO: one `annotations/person_keypoints_<subset>.json` per subset (the single task file
//! datumaro reads when boxes, polygons and keypoints travel together; see docs/formats.md),
//! images in `images/<subset>/`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};

use serde_json::{json, Value};
use tessera_domain::annotation_sets::{Label, ShapeKind};

use super::archive::{Archive, Format, Item, Part};
use super::shapes::{clamp, polygon_area, Shape};

struct Subset {
    images: BufWriter<File>,
    annotations: BufWriter<File>,
    image_count: u64,
    annotation_count: u64,
}

pub struct Coco {
    labels: Vec<Label>,
    subsets: BTreeMap<String, Subset>,
    /// Ids are global so that merged subsets never collide.
    next_image: u64,
    next_annotation: u64,
    /// The most keypoints seen on a label without named keypoints.
    unnamed_points: BTreeMap<usize, usize>,
}

impl Coco {
    pub fn new(labels: Vec<Label>) -> Coco {
        Coco {
            labels,
            subsets: BTreeMap::new(),
            next_image: 1,
            next_annotation: 1,
            unnamed_points: BTreeMap::new(),
        }
    }

    /// The COCO annotation for `shape`, or `None` with a report line when COCO cannot carry it.
    fn annotation(&mut self, out: &mut Archive, item: &Item, shape: &Shape) -> Option<Value> {
        let category = self.labels.iter().position(|l| l.name == shape.label)?;
        let clamp_xy = |p: &[f64; 2]| [clamp(p[0], item.width), clamp(p[1], item.height)];
        let (segmentation, keypoints, points) = match shape.kind {
            ShapeKind::Rectangle => {
                let (x0, y0, x1, y1) = shape.extent()?;
                let points = vec![clamp_xy(&[x0, y0]), clamp_xy(&[x1, y1])];
                (json!([]), Vec::new(), points)
            }
            ShapeKind::Polygon | ShapeKind::RotatedRectangle => {
                let outline: Vec<[f64; 2]> = shape.outline()?.iter().map(clamp_xy).collect();
                let flat: Vec<f64> = outline.iter().flat_map(|p| [p[0], p[1]]).collect();
                (json!([flat]), Vec::new(), outline)
            }
            ShapeKind::Points => {
                let points: Vec<[f64; 2]> = shape.points.iter().map(clamp_xy).collect();
                let flat: Vec<f64> = points.iter().flat_map(|p| [p[0], p[1], 2.0]).collect();
                if self.labels[category].keypoints.is_empty() {
                    let most = self.unnamed_points.entry(category).or_default();
                    *most = (*most).max(points.len());
                }
                (json!([]), flat, points)
            }
            ShapeKind::Polyline => {
                out.report
                    .loss("polylines left out of COCO (it has no open lines)");
                return None;
            }
            ShapeKind::Tag => {
                out.report
                    .loss("image tags left out of COCO (it has no image-level labels)");
                return None;
            }
        };
        let (x0, y0, x1, y1) = super::shapes::bounds(&points)?;
        let area = match shape.kind {
            ShapeKind::Rectangle | ShapeKind::Points => (x1 - x0) * (y1 - y0),
            _ => polygon_area(&points),
        };
        let num_keypoints = keypoints.len() / 3;
        let id = self.next_annotation;
        self.next_annotation += 1;
        Some(json!({
            "id": id,
            "image_id": self.next_image,
            "category_id": category + 1,
            "segmentation": segmentation,
            "area": area,
            "bbox": [x0, y0, x1 - x0, y1 - y0],
            "iscrowd": 0,
            "keypoints": keypoints,
            "num_keypoints": num_keypoints,
            "attributes": shape.attributes,
        }))
    }

    fn categories(&self) -> Value {
        let list: Vec<Value> = self
            .labels
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let names: Vec<String> = if l.keypoints.is_empty() {
                    let n = self.unnamed_points.get(&i).copied().unwrap_or(0);
                    (1..=n).map(|k| k.to_string()).collect()
                } else {
                    l.keypoints.clone()
                };
                // COCO numbers keypoints from 1 in skeletons.
                let skeleton: Vec<[usize; 2]> =
                    l.skeleton.iter().map(|&(a, b)| [a + 1, b + 1]).collect();
                json!({ "id": i + 1, "name": l.name, "supercategory": "", "keypoints": names, "skeleton": skeleton })
            })
            .collect();
        Value::Array(list)
    }
}

fn comma(w: &mut BufWriter<File>, first: bool) -> io::Result<()> {
    if !first {
        w.write_all(b",")?;
    }
    Ok(())
}

impl Format for Coco {
    fn image_path(&self, item: &Item) -> String {
        format!("images/{}/{}", item.subset, item.file_name())
    }

    fn item(&mut self, out: &mut Archive, item: &Item) -> io::Result<()> {
        if !self.subsets.contains_key(&item.subset) {
            let subset = Subset {
                images: out.spool()?,
                annotations: out.spool()?,
                image_count: 0,
                annotation_count: 0,
            };
            self.subsets.insert(item.subset.clone(), subset);
        }
        let mut annotations = Vec::new();
        for shape in &item.shapes {
            if let Some(a) = self.annotation(out, item, shape) {
                annotations.push(a);
            }
        }
        let image = json!({
            "id": self.next_image,
            "file_name": item.file_name(),
            "width": item.width,
            "height": item.height,
            "license": 0,
            "coco_url": "",
            "flickr_url": "",
            "date_captured": 0,
        });
        self.next_image += 1;
        let Some(subset) = self.subsets.get_mut(&item.subset) else {
            return Ok(());
        };
        comma(&mut subset.images, subset.image_count == 0)?;
        serde_json::to_writer(&mut subset.images, &image)?;
        subset.image_count += 1;
        for a in annotations {
            comma(&mut subset.annotations, subset.annotation_count == 0)?;
            serde_json::to_writer(&mut subset.annotations, &a)?;
            subset.annotation_count += 1;
        }
        Ok(())
    }

    fn finish(self: Box<Self>, out: &mut Archive) -> io::Result<()> {
        let categories = self.categories().to_string();
        let this = *self;
        if this.subsets.is_empty() {
            out.dir("images/")?;
        }
        for (name, subset) in this.subsets {
            let head = format!(
                "{{\"info\":{{\"description\":\"Exported by Tessera\",\"version\":\"1.0\"}},\
                 \"licenses\":[{{\"id\":0,\"name\":\"\",\"url\":\"\"}}],\
                 \"categories\":{categories},\"images\":["
            );
            out.dir(&format!("images/{name}/"))?;
            out.append(
                &format!("annotations/person_keypoints_{name}.json"),
                vec![
                    Part::Text(head),
                    Part::Spool(subset.images),
                    Part::Text("],\"annotations\":[".into()),
                    Part::Spool(subset.annotations),
                    Part::Text("]}".into()),
                ],
            )?;
        }
        Ok(())
    }
}
