//! YOLO, in Ultralytics' layout (`data.yaml`, `images/<split>/`, `labels/<split>/`) as detect,
//! segment and pose variants, and in Darknet's (`obj.data`, `obj.names`, `<split>.txt`,
//! `obj_<split>_data/`). One label file per image, empty when it has no objects (an image
//! without one is dropped by readers). Coordinates are normalised to [0, 1] and written as
//! plain decimals (`%.6f`): a line with an exponent makes datumaro skip the whole file.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use std::io;

use tessera_domain::annotation_sets::{Label, ShapeKind};

use super::archive::{Archive, Format, Item};
use super::shapes::{box_of, Shape, WIDENED};
use super::voc::kind_plural;
use tessera_domain::shape::NOT_LABELLED;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    Detect,
    Segment,
    Pose,
    Darknet,
}

pub struct Yolo {
    variant: Variant,
    labels: Vec<Label>,
    splits: BTreeSet<String>,
    /// Keypoints per object in the pose variant (the most any label names).
    keypoints: usize,
    /// Darknet's image lists, one per split.
    lists: BTreeMap<String, String>,
}

/// A normalised coordinate: clamped into [0, 1], six decimals.
fn norm(v: f64, size: u32) -> String {
    format!("{:.6}", (v / f64::from(size.max(1))).clamp(0.0, 1.0))
}

impl Yolo {
    pub fn new(variant: Variant, labels: Vec<Label>) -> Yolo {
        let keypoints = labels.iter().map(|l| l.keypoints.len()).max().unwrap_or(0);
        Yolo {
            variant,
            labels,
            splits: BTreeSet::new(),
            keypoints,
            lists: Default::default(),
        }
    }

    fn box_fields(out: &mut Archive, item: &Item, shape: &Shape) -> Option<String> {
        let ((x0, y0, x1, y1), widened) = box_of(shape, item.width, item.height)?;
        if widened {
            out.report.loss(WIDENED);
        }
        Some(format!(
            "{} {} {} {}",
            norm((x0 + x1) / 2.0, item.width),
            norm((y0 + y1) / 2.0, item.height),
            norm(x1 - x0, item.width),
            norm(y1 - y0, item.height)
        ))
    }

    /// The label line of one shape, or `None` (counted in the report) when this variant
    /// cannot carry it.
    fn line(&self, out: &mut Archive, item: &Item, shape: &Shape) -> Option<String> {
        let class = self.labels.iter().position(|l| l.name == shape.label)?;
        let name = match self.variant {
            Variant::Detect => "YOLO detect",
            Variant::Segment => "YOLO segment",
            Variant::Pose => "YOLO pose",
            Variant::Darknet => "YOLO Darknet",
        };
        let left_out = |out: &mut Archive| {
            out.report
                .loss(format!("{} left out of {name}", kind_plural(shape.kind)));
            None
        };
        match (self.variant, shape.kind) {
            (_, ShapeKind::Tag) => left_out(out),
            (Variant::Detect | Variant::Darknet, ShapeKind::Points) => left_out(out),
            (Variant::Detect | Variant::Darknet, kind) => {
                if kind != ShapeKind::Rectangle {
                    out.report.loss(format!(
                        "{} exported to {name} as their bounding boxes",
                        kind_plural(kind)
                    ));
                }
                Some(format!("{class} {}", Self::box_fields(out, item, shape)?))
            }
            (Variant::Segment, ShapeKind::Points | ShapeKind::Polyline) => left_out(out),
            (Variant::Segment, _) => {
                let outline = shape.outline()?;
                let coords: Vec<String> = outline
                    .iter()
                    .map(|p| format!("{} {}", norm(p[0], item.width), norm(p[1], item.height)))
                    .collect();
                Some(format!("{class} {}", coords.join(" ")))
            }
            (Variant::Pose, ShapeKind::Points) => {
                let named = self.labels[class].keypoints.len();
                if named == 0 {
                    out.report.loss(
                        "keypoint sets of labels without named keypoints left out of YOLO pose",
                    );
                    return None;
                }
                let mut text = format!("{class} {}", Self::box_fields(out, item, shape)?);
                // A keypoint that is not labelled (and padding up to kpt_shape) is `0 0 0`, as
                // Ultralytics writes it.
                for i in 0..self.keypoints {
                    match shape.points.get(i) {
                        Some(p) if i < named && shape.visibility_of(i) != NOT_LABELLED => text
                            .push_str(&format!(
                                " {} {} {}",
                                norm(p[0], item.width),
                                norm(p[1], item.height),
                                shape.visibility_of(i)
                            )),
                        _ => text.push_str(" 0.000000 0.000000 0"),
                    }
                }
                Some(text)
            }
            // A pose dataset's objects are keypoint sets; boxes and outlines belong in detect
            // or segment exports.
            (Variant::Pose, _) => left_out(out),
        }
    }

    fn data_dir(split: &str) -> String {
        format!("obj_{split}_data")
    }
}

impl Format for Yolo {
    fn image_path(&self, item: &Item) -> String {
        match self.variant {
            Variant::Darknet => format!("{}/{}", Self::data_dir(&item.subset), item.file_name()),
            _ => format!("images/{}/{}", item.subset, item.file_name()),
        }
    }

    fn item(&mut self, out: &mut Archive, item: &Item) -> io::Result<()> {
        self.splits.insert(item.subset.clone());
        let mut text = String::new();
        for shape in &item.shapes {
            if let Some(line) = self.line(out, item, shape) {
                text.push_str(&line);
                text.push('\n');
            }
        }
        let path = match self.variant {
            Variant::Darknet => {
                let line = format!("data/{}\n", self.image_path(item));
                self.lists
                    .entry(item.subset.clone())
                    .or_default()
                    .push_str(&line);
                format!("{}/{}.txt", Self::data_dir(&item.subset), item.stem)
            }
            _ => format!("labels/{}/{}.txt", item.subset, item.stem),
        };
        out.file(&path, text.as_bytes(), true)
    }

    fn finish(self: Box<Self>, out: &mut Archive) -> io::Result<()> {
        if self.variant == Variant::Darknet {
            let mut names = String::new();
            for l in &self.labels {
                names.push_str(&l.name);
                names.push('\n');
            }
            out.file("obj.names", names.as_bytes(), true)?;
            let mut data = format!("classes = {}\n", self.labels.len());
            for (split, list) in &self.lists {
                data.push_str(&format!("{split} = data/{split}.txt\n"));
                out.file(&format!("{split}.txt"), list.as_bytes(), true)?;
            }
            data.push_str("names = data/obj.names\nbackup = backup/\n");
            return out.file("obj.data", data.as_bytes(), true);
        }
        let first = self.splits.iter().next().cloned().unwrap_or("train".into());
        let split_of = |name: &str| {
            let split = if self.splits.contains(name) {
                name
            } else {
                &first
            };
            format!("images/{split}")
        };
        let config = DataYaml {
            train: split_of("train"),
            val: split_of("val"),
            test: self
                .splits
                .contains("test")
                .then(|| "images/test".to_string()),
            kpt_shape: (self.variant == Variant::Pose).then_some([self.keypoints, 3]),
            names: self
                .labels
                .iter()
                .map(|l| l.name.clone())
                .enumerate()
                .collect(),
        };
        let yaml = yaml_serde::to_string(&config).map_err(io::Error::other)?;
        let text = format!("# Exported by Tessera (Ultralytics dataset layout)\n{yaml}");
        out.file("data.yaml", text.as_bytes(), true)
    }
}

/// Ultralytics' `data.yaml`. No `path:`: Ultralytics then resolves the splits against this
/// file's folder.
#[derive(Serialize)]
struct DataYaml {
    train: String,
    val: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    test: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kpt_shape: Option<[usize; 2]>,
    names: BTreeMap<usize, String>,
}
