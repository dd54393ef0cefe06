//! YOLO label files, in Ultralytics' layout (`data.yaml`, `labels/<split>/*.txt`) or Darknet's
//! (`obj.names`, `obj_*_data/*.txt`): `class cx cy w h` lines become rectangles, longer lines
//! polygons (segment) or keypoint sets (pose, when `data.yaml` has `kpt_shape`). Coordinates are
//! fractions of the image size, resolved once the image is matched.

use std::path::Path;

use tessera_domain::annotation_sets::ShapeKind;
use tessera_domain::shape::VISIBLE;

use super::parsed::{Parsed, RawImage, RawLabel, RawShape};

/// Class names from `data.yaml` (`names:` as a list or a map from class index) and its
/// `kpt_shape`'s keypoint count; `Err` names what is wrong with the file.
pub fn names_from_yaml(text: &str) -> Result<(Vec<String>, Option<usize>), String> {
    let doc: yaml_serde::Value =
        yaml_serde::from_str(text).map_err(|e| format!("data.yaml: {e}"))?;
    let scalar = |v: &yaml_serde::Value| match v {
        yaml_serde::Value::String(s) => Some(s.clone()),
        yaml_serde::Value::Number(n) => Some(n.to_string()),
        yaml_serde::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    let names = match doc.get("names") {
        Some(yaml_serde::Value::Sequence(list)) => list.iter().filter_map(scalar).collect(),
        Some(yaml_serde::Value::Mapping(map)) => {
            let mut indexed: Vec<(u64, String)> = map
                .iter()
                .filter_map(|(k, v)| Some((k.as_u64()?, scalar(v)?)))
                .collect();
            indexed.sort();
            indexed.into_iter().map(|(_, name)| name).collect()
        }
        _ => return Err("data.yaml: no names list or map".into()),
    };
    let keypoints = doc
        .get("kpt_shape")
        .and_then(|k| k.get(0))
        .and_then(yaml_serde::Value::as_u64)
        .map(|k| k as usize);
    Ok((names, keypoints))
}

/// Adds the label file `path` (its stem names the image; `shown` is how notes name the file).
pub fn read_labels(
    path: &Path,
    shown: &str,
    text: &str,
    names: &[String],
    keypoints: Option<usize>,
    out: &mut Parsed,
) {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut image = RawImage {
        file: stem,
        normalized: true,
        ..RawImage::default()
    };
    for (n, line) in text.lines().enumerate() {
        let fields: Vec<f64> = match line.split_whitespace().map(str::parse).collect() {
            Ok(f) => f,
            Err(_) => {
                out.notes
                    .push(format!("{shown}: line {} is not numbers", n + 1));
                continue;
            }
        };
        if fields.is_empty() {
            continue;
        }
        let Some(label) = names.get(fields[0] as usize) else {
            out.notes
                .push(format!("{shown}: line {}: unknown class", n + 1));
            continue;
        };
        let v = &fields[1..];
        let shape = match (v.len(), keypoints) {
            (4, _) => RawShape::new(
                label,
                ShapeKind::Rectangle,
                vec![
                    [v[0] - v[2] / 2.0, v[1] - v[3] / 2.0],
                    [v[0] + v[2] / 2.0, v[1] + v[3] / 2.0],
                ],
            ),
            (len, Some(k)) if len == 4 + 3 * k || len == 4 + 2 * k => {
                let dims = (len - 4) / k.max(1);
                let points = v[4..].chunks_exact(dims).map(|c| [c[0], c[1]]).collect();
                let mut shape = RawShape::new(label, ShapeKind::Points, points);
                if dims == 3 {
                    shape.visibility = visibility(v[4..].chunks_exact(3).map(|c| c[2]));
                }
                shape
            }
            (len, None) if len >= 6 && len % 2 == 0 => RawShape::new(
                label,
                ShapeKind::Polygon,
                v.chunks_exact(2).map(|c| [c[0], c[1]]).collect(),
            ),
            _ => {
                out.notes.push(format!(
                    "{shown}: line {} has {} values",
                    n + 1,
                    fields.len()
                ));
                continue;
            }
        };
        image.shapes.push(shape);
    }
    out.images.push(image);
}

/// Visibility flags as a shape keeps them: `None` when every keypoint is visible.
pub fn visibility(flags: impl Iterator<Item = f64>) -> Option<Vec<u8>> {
    let flags: Vec<u8> = flags.map(|v| v.clamp(0.0, 2.0).round() as u8).collect();
    flags.iter().any(|v| *v != VISIBLE).then_some(flags)
}

/// Declares the class names as labels.
pub fn declare(names: &[String], out: &mut Parsed) {
    for name in names {
        out.declare(RawLabel {
            name: name.clone(),
            ..RawLabel::default()
        });
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_names_in_every_yaml_form() {
        let (n, k) =
            super::names_from_yaml("path: .\nnames:\n  1: \"a: b\"\n  0: car\nkpt_shape: [2, 3]\n")
                .unwrap();
        assert_eq!(
            (n, k),
            (vec!["car".to_string(), "a: b".to_string()], Some(2))
        );
        let (n, _) = super::names_from_yaml("names:\n- car\n- person\n").unwrap();
        assert_eq!(n, vec!["car", "person"]);
        let (n, _) = super::names_from_yaml("names: ['car', person]\n").unwrap();
        assert_eq!(n, vec!["car", "person"]);
        assert!(super::names_from_yaml("names: [car\n").is_err());
    }

    #[test]
    fn pose_lines_keep_each_keypoints_visibility() {
        let mut out = super::Parsed::default();
        let names = vec!["person".to_string()];
        let line = "0 0.5 0.5 0.2 0.2 0.4 0.4 2 0 0 0 0.6 0.6 1\n";
        super::read_labels(
            std::path::Path::new("a.txt"),
            "a.txt",
            line,
            &names,
            Some(3),
            &mut out,
        );
        let shape = &out.images[0].shapes[0];
        assert_eq!(shape.points.len(), 3);
        assert_eq!(shape.visibility, Some(vec![2, 0, 1]));
    }
}
