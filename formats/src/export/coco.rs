//! COCO: one `annotations/person_keypoints_<subset>.json` per subset (the single task file
//! datumaro reads when boxes, polygons and keypoints travel together; see docs/formats.md),
//! images in `images/<subset>/`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};

use serde_json::{json, Value};
use tessera_domain::annotation_sets::{Label, ShapeKind};

use super::archive::{Archive, Format, Item, Part};
use super::shapes::{box_of, clamp, polygon_area, round2, Shape, WIDENED};
use tessera_domain::shape::NOT_LABELLED;

/// A shape's attributes as COCO carries them: with `occluded: true` when the shape is occluded
/// (datumaro reads and writes the flag there; absent means not occluded).
fn attributes(shape: &Shape) -> Value {
    let mut attributes = shape.attributes.clone();
    if shape.occluded {
        attributes.insert("occluded".into(), Value::Bool(true));
    }
    Value::Object(attributes)
}

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
    /// Coordinates are rounded to two decimals; keypoints are `x, y, v` triplets with integer
    /// `v`, one per keypoint the category declares (`0, 0, 0` for those not labelled or
    /// missing).
    fn annotation(&mut self, out: &mut Archive, item: &Item, shape: &Shape) -> Option<Value> {
        let category = self.labels.iter().position(|l| l.name == shape.label)?;
        let clamp_xy = |p: &[f64; 2]| {
            [
                round2(clamp(p[0], item.width)),
                round2(clamp(p[1], item.height)),
            ]
        };
        let (segmentation, keypoints, bbox) = match shape.kind {
            ShapeKind::Rectangle | ShapeKind::Points => {
                let ((x0, y0, x1, y1), widened) = box_of(shape, item.width, item.height)?;
                if widened {
                    out.report.loss(WIDENED);
                }
                let keypoints = match shape.kind {
                    ShapeKind::Points => self.keypoints(category, item, shape),
                    _ => Vec::new(),
                };
                (json!([]), keypoints, (x0, y0, x1, y1))
            }
            ShapeKind::Polygon | ShapeKind::RotatedRectangle => {
                let outline: Vec<[f64; 2]> = shape.outline()?.iter().map(clamp_xy).collect();
                let flat: Vec<f64> = outline.iter().flat_map(|p| [p[0], p[1]]).collect();
                (json!([flat]), Vec::new(), super::shapes::bounds(&outline)?)
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
        let (x0, y0, x1, y1) = (
            round2(bbox.0),
            round2(bbox.1),
            round2(bbox.2),
            round2(bbox.3),
        );
        let area = match shape.kind {
            ShapeKind::Polygon | ShapeKind::RotatedRectangle => {
                polygon_area(&shape.outline()?.iter().map(clamp_xy).collect::<Vec<_>>())
            }
            _ => (x1 - x0) * (y1 - y0),
        };
        let num_keypoints = keypoints.chunks(3).filter(|t| t[2] != json!(0)).count();
        let id = self.next_annotation;
        self.next_annotation += 1;
        Some(json!({
            "id": id,
            "image_id": self.next_image,
            "category_id": category + 1,
            "segmentation": segmentation,
            "area": round2(area),
            "bbox": [x0, y0, round2(x1 - x0), round2(y1 - y0)],
            "iscrowd": 0,
            "keypoints": keypoints,
            "num_keypoints": num_keypoints,
            "attributes": attributes(shape),
        }))
    }

    /// The keypoint triplets of a set: as many as its label names (a set saved before the
    /// label gained a keypoint is padded); for a label without names, as many as the set has
    /// (padded to the most of any set when the document is finished).
    fn keypoints(&mut self, category: usize, item: &Item, shape: &Shape) -> Vec<Value> {
        let named = self.labels[category].keypoints.len();
        let count = if named == 0 {
            let most = self.unnamed_points.entry(category).or_default();
            *most = (*most).max(shape.points.len());
            shape.points.len()
        } else {
            named
        };
        (0..count)
            .flat_map(|i| match shape.points.get(i) {
                Some(p) if shape.visibility_of(i) != NOT_LABELLED => [
                    json!(round2(clamp(p[0], item.width))),
                    json!(round2(clamp(p[1], item.height))),
                    json!(shape.visibility_of(i)),
                ],
                _ => [json!(0), json!(0), json!(0)],
            })
            .collect()
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

impl Coco {
    /// The annotations spool with the keypoints of labels without named keypoints padded with
    /// `0, 0, 0` to the most any of their sets has (COCO wants 3 × K values, K the category's
    /// keypoint count, which is known only once every set was seen). Streams line by line.
    fn pad_unnamed(&self, out: &Archive, spool: BufWriter<File>) -> io::Result<BufWriter<File>> {
        if self.unnamed_points.is_empty() {
            return Ok(spool);
        }
        let mut file = spool.into_inner().map_err(|e| e.into_error())?;
        file.seek(SeekFrom::Start(0))?;
        let mut padded = out.spool()?;
        for (n, line) in BufReader::new(file).lines().enumerate() {
            let line = line?;
            let mut a: Value = serde_json::from_str(line.trim_start_matches(','))?;
            let category = a["category_id"].as_u64().unwrap_or(0) as usize;
            let most = category
                .checked_sub(1)
                .and_then(|c| self.unnamed_points.get(&c));
            if let (Some(most), Some(list)) = (most, a["keypoints"].as_array_mut()) {
                if !list.is_empty() {
                    list.resize(most * 3, json!(0));
                }
            }
            comma(&mut padded, n == 0)?;
            serde_json::to_writer(&mut padded, &a)?;
            padded.write_all(b"\n")?;
        }
        Ok(padded)
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
            // One annotation per line, so that `pad_unnamed` can stream them.
            comma(&mut subset.annotations, subset.annotation_count == 0)?;
            serde_json::to_writer(&mut subset.annotations, &a)?;
            subset.annotations.write_all(b"\n")?;
            subset.annotation_count += 1;
        }
        Ok(())
    }

    fn finish(self: Box<Self>, out: &mut Archive) -> io::Result<()> {
        let categories = self.categories().to_string();
        let mut this = *self;
        if this.subsets.is_empty() {
            out.dir("images/")?;
        }
        for (name, subset) in std::mem::take(&mut this.subsets) {
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
                    Part::Spool(this.pad_unnamed(out, subset.annotations)?),
                    Part::Text("]}".into()),
                ],
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::export::archive::Item;
    use tessera_domain::annotation_sets::ShapeKind;

    fn label(name: &str, keypoints: &[&str]) -> Label {
        Label {
            name: name.into(),
            color: "#000000".into(),
            kinds: vec![ShapeKind::Points],
            attributes: vec![],
            keypoints: keypoints.iter().map(|k| k.to_string()).collect(),
            skeleton: vec![],
        }
    }

    fn item(shapes: Vec<Shape>) -> Item {
        Item {
            stem: "a".into(),
            ext: "png",
            subset: "default".into(),
            width: 64,
            height: 48,
            channels: 3,
            shapes,
            turned: None,
            bytes: None,
        }
    }

    /// Every keypoint list is 3 x K with integer flags: named labels pad sets saved before
    /// the label gained a keypoint, unnamed labels pad to their longest set.
    #[test]
    fn keypoints_are_three_per_declared_keypoint_with_integer_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.zip");
        let mut archive = Archive::create(&path).unwrap();
        let mut format: Box<dyn Format> = Box::new(Coco::new(vec![
            label("person", &["head", "hand", "foot"]),
            label("dots", &[]),
        ]));
        let mut two = Shape::new("person", ShapeKind::Points, vec![[1.0, 2.0], [3.0, 4.0]]);
        two.visibility = Some(vec![1, 2]);
        let mut hidden = Shape::new(
            "person",
            ShapeKind::Points,
            vec![[1.0, 2.0], [0.0, 0.0], [5.0, 6.0]],
        );
        hidden.visibility = Some(vec![2, 0, 1]);
        hidden.occluded = true;
        let short = Shape::new("dots", ShapeKind::Points, vec![[7.0, 8.0]]);
        let long = Shape::new("dots", ShapeKind::Points, vec![[1.0, 1.0], [2.0, 2.0]]);
        format
            .item(&mut archive, &item(vec![two, hidden, short, long]))
            .unwrap();
        format.finish(&mut archive).unwrap();
        archive.finish().unwrap();

        let mut zip = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
        let mut text = String::new();
        zip.by_name("annotations/person_keypoints_default.json")
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        let doc: Value = serde_json::from_str(&text).unwrap();
        let lists: Vec<(Value, Value)> = doc["annotations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["keypoints"].clone(), a["num_keypoints"].clone()))
            .collect();
        assert_eq!(
            lists,
            vec![
                (json!([1.0, 2.0, 1, 3.0, 4.0, 2, 0, 0, 0]), json!(2)),
                (json!([1.0, 2.0, 2, 0, 0, 0, 5.0, 6.0, 1]), json!(2)),
                (json!([7.0, 8.0, 2, 0, 0, 0]), json!(1)),
                (json!([1.0, 1.0, 2, 2.0, 2.0, 2]), json!(2)),
            ]
        );
        assert_eq!(doc["categories"][1]["keypoints"], json!(["1", "2"]));
        // A single keypoint's box is widened to a pixel.
        assert_eq!(doc["annotations"][2]["bbox"], json!([6.5, 7.5, 1.0, 1.0]));
        // The occluded set says so where datumaro reads it, and Tessera's import reads it back.
        assert_eq!(
            doc["annotations"][1]["attributes"],
            json!({"occluded": true})
        );
        assert_eq!(doc["annotations"][0]["attributes"], json!({}));
        let mut parsed = crate::import::parsed::Parsed::default();
        crate::import::coco::read(&doc, &mut parsed).unwrap();
        let back: Vec<bool> = parsed.images[0].shapes.iter().map(|s| s.occluded).collect();
        assert_eq!(back, vec![false, true, false, false]);
    }
}
