//! COCO instances/keypoints JSON: boxes become rectangles, polygon segmentations polygons, and
//! keypoints keypoint sets. RLE masks are not imported (noted in the report).

use std::collections::HashMap;

use serde_json::Value;
use tessera_domain::annotation_sets::ShapeKind;

use super::parsed::{Parsed, RawImage, RawLabel, RawShape};

fn pairs(flat: &[Value]) -> Vec<[f64; 2]> {
    flat.chunks_exact(2)
        .map(|c| [c[0].as_f64().unwrap_or(0.0), c[1].as_f64().unwrap_or(0.0)])
        .collect()
}

/// Adds the contents of one COCO JSON document.
pub fn read(doc: &Value, out: &mut Parsed) -> Result<(), String> {
    let list = |key: &str| -> Result<&Vec<Value>, String> {
        doc[key]
            .as_array()
            .ok_or_else(|| format!("COCO: \"{key}\" is missing or not a list"))
    };
    let mut categories: HashMap<u64, String> = HashMap::new();
    for c in list("categories")? {
        let (Some(id), Some(name)) = (c["id"].as_u64(), c["name"].as_str()) else {
            return Err("COCO: a category without id or name".into());
        };
        let keypoints: Vec<String> = c["keypoints"]
            .as_array()
            .map(|k| {
                k.iter()
                    .filter_map(|n| n.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let skeleton: Vec<(usize, usize)> = c["skeleton"]
            .as_array()
            .map(|s| {
                s.iter()
                    .filter_map(|e| {
                        let a = e.get(0)?.as_u64()?.checked_sub(1)? as usize;
                        let b = e.get(1)?.as_u64()?.checked_sub(1)? as usize;
                        Some((a, b))
                    })
                    .collect()
            })
            .unwrap_or_default();
        categories.insert(id, name.to_string());
        out.declare(RawLabel {
            name: name.to_string(),
            keypoints,
            skeleton,
        });
    }
    let first = out.images.len();
    let mut by_id: HashMap<u64, usize> = HashMap::new();
    for image in list("images")? {
        let (Some(id), Some(file)) = (image["id"].as_u64(), image["file_name"].as_str()) else {
            return Err("COCO: an image without id or file_name".into());
        };
        let size = match (image["width"].as_u64(), image["height"].as_u64()) {
            (Some(w), Some(h)) => Some((w as u32, h as u32)),
            _ => None,
        };
        by_id.insert(id, out.images.len());
        out.images.push(RawImage {
            file: file.to_string(),
            size,
            ..RawImage::default()
        });
    }
    let mut rle = 0;
    for a in doc["annotations"].as_array().into_iter().flatten() {
        let Some(&index) = a["image_id"].as_u64().and_then(|id| by_id.get(&id)) else {
            out.notes.push(format!(
                "COCO annotation {} names an unknown image",
                a["id"]
            ));
            continue;
        };
        let Some(label) = a["category_id"].as_u64().and_then(|c| categories.get(&c)) else {
            out.notes.push(format!(
                "COCO annotation {} names an unknown category",
                a["id"]
            ));
            continue;
        };
        let mut shapes = Vec::new();
        let keypoints = a["keypoints"].as_array().filter(|k| !k.is_empty());
        let segmentation = &a["segmentation"];
        if let Some(k) = keypoints {
            let points = k
                .chunks_exact(3)
                .map(|t| [t[0].as_f64().unwrap_or(0.0), t[1].as_f64().unwrap_or(0.0)])
                .collect();
            let mut shape = RawShape::new(label, ShapeKind::Points, points);
            shape.visibility =
                super::yolo::visibility(k.chunks_exact(3).map(|t| t[2].as_f64().unwrap_or(2.0)));
            shapes.push(shape);
        } else if let Some(rings) = segmentation.as_array().filter(|r| !r.is_empty()) {
            for ring in rings {
                let points = pairs(ring.as_array().map(Vec::as_slice).unwrap_or(&[]));
                shapes.push(RawShape::new(label, ShapeKind::Polygon, points));
            }
        } else if segmentation.is_object() {
            rle += 1;
            continue;
        } else if let Some(b) = a["bbox"].as_array().filter(|b| b.len() == 4) {
            let v: Vec<f64> = b.iter().map(|x| x.as_f64().unwrap_or(0.0)).collect();
            let points = vec![[v[0], v[1]], [v[0] + v[2], v[1] + v[3]]];
            shapes.push(RawShape::new(label, ShapeKind::Rectangle, points));
        }
        if let Some(attrs) = a["attributes"].as_object() {
            // datumaro's (and Tessera's) place for the flag; a schema attribute of that name
            // keeps it too, the import's fit drops it otherwise.
            let occluded = attrs.get("occluded") == Some(&Value::Bool(true));
            for s in &mut shapes {
                s.attributes = attrs.clone();
                s.occluded = occluded;
            }
        }
        out.images[index].shapes.extend(shapes);
    }
    if rle > 0 {
        out.notes.push(format!(
            "{rle} COCO RLE masks were not imported (no mask shapes)"
        ));
    }
    debug_assert!(out.images.len() >= first);
    Ok(())
}
