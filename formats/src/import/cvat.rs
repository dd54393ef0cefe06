//! CVAT for images 1.1 XML: boxes (rotated when they have a `rotation`), polygons, polylines,
//! points and tags, with their attributes and `occluded` flags.

use serde_json::Value;
use tessera_domain::annotation_sets::ShapeKind;
use tessera_domain::shape::{NOT_LABELLED, VISIBLE};

use crate::export::cvat::VISIBILITY;

use super::parsed::{Parsed, RawImage, RawLabel, RawShape};
use crate::xml;

fn points(text: &str) -> Vec<[f64; 2]> {
    text.split(';')
        .filter_map(|pair| {
            let (x, y) = pair.split_once(',')?;
            Some([x.trim().parse().ok()?, y.trim().parse().ok()?])
        })
        .collect()
}

/// Puts the keypoints that are not labelled back into a set, from the flags Tessera's CVAT
/// export writes (`2,0,1`; the element lists only the labelled points). Flags that do not
/// match the points are ignored.
fn restore_hidden(shape: &mut RawShape, flags: &str) {
    let Ok(flags) = flags
        .split(',')
        .map(|f| f.trim().parse::<u8>())
        .collect::<Result<Vec<u8>, _>>()
    else {
        return;
    };
    let labelled = flags.iter().filter(|v| **v != NOT_LABELLED).count();
    if labelled != shape.points.len() || flags.iter().any(|v| *v > VISIBLE) {
        return;
    }
    let mut given = shape.points.iter();
    shape.points = flags
        .iter()
        .map(|v| match v {
            &NOT_LABELLED => Some([0.0, 0.0]),
            _ => given.next().copied(),
        })
        .collect::<Option<Vec<_>>>()
        .unwrap_or_default();
    shape.visibility = Some(flags);
}

/// Adds the contents of one CVAT XML document.
pub fn read(text: &str, out: &mut Parsed) -> Result<(), String> {
    let root = xml::parse(text)?;
    if root.name != "annotations" {
        return Err(format!(
            "CVAT: root element is <{}>, not <annotations>",
            root.name
        ));
    }
    let labels = root
        .child("meta")
        .and_then(|m| m.child("task").or_else(|| m.child("project")))
        .and_then(|t| t.child("labels"));
    for label in labels.into_iter().flat_map(|l| l.children.iter()) {
        if let Some(name) = label.text_of("name") {
            out.declare(RawLabel {
                name: name.to_string(),
                ..RawLabel::default()
            });
        }
    }
    for image in root.children("image") {
        let number = |name: &str| image.attr(name).and_then(|v| v.parse::<f64>().ok());
        let mut raw = RawImage {
            file: image.attr("name").unwrap_or("").to_string(),
            size: number("width")
                .zip(number("height"))
                .map(|(w, h)| (w as u32, h as u32)),
            ..RawImage::default()
        };
        for e in &image.children {
            let Some(label) = e.attr("label") else {
                continue;
            };
            let get = |name: &str| e.attr(name).and_then(|v| v.parse::<f64>().ok());
            let mut shape = match e.name.as_str() {
                "box" => {
                    let (Some(x0), Some(y0), Some(x1), Some(y1)) =
                        (get("xtl"), get("ytl"), get("xbr"), get("ybr"))
                    else {
                        continue;
                    };
                    // A `rotation` attribute, even 0, makes a rotated rectangle (Tessera writes
                    // one for every rotated rectangle); the schema fit turns it back into a
                    // rectangle when its label has no rotated ones and the angle is 0.
                    let rotation = get("rotation");
                    let kind = if rotation.is_some() {
                        ShapeKind::RotatedRectangle
                    } else {
                        ShapeKind::Rectangle
                    };
                    let mut s = RawShape::new(label, kind, vec![[x0, y0], [x1, y1]]);
                    s.angle = rotation.map(|r| r.rem_euclid(360.0));
                    s
                }
                "polygon" => RawShape::new(
                    label,
                    ShapeKind::Polygon,
                    points(e.attr("points").unwrap_or("")),
                ),
                "polyline" => RawShape::new(
                    label,
                    ShapeKind::Polyline,
                    points(e.attr("points").unwrap_or("")),
                ),
                "points" => RawShape::new(
                    label,
                    ShapeKind::Points,
                    points(e.attr("points").unwrap_or("")),
                ),
                "tag" => RawShape::new(label, ShapeKind::Tag, Vec::new()),
                other => {
                    out.notes
                        .push(format!("CVAT <{other}> elements are not imported"));
                    continue;
                }
            };
            shape.occluded = e.attr("occluded") == Some("1");
            for a in e.children("attribute") {
                match a.attr("name") {
                    Some(VISIBILITY) if shape.kind == ShapeKind::Points => {
                        restore_hidden(&mut shape, a.text.trim());
                    }
                    Some(name) => {
                        shape
                            .attributes
                            .insert(name.to_string(), Value::String(a.text.trim().to_string()));
                    }
                    None => {}
                }
            }
            out.declare(RawLabel {
                name: label.to_string(),
                ..RawLabel::default()
            });
            raw.shapes.push(shape);
        }
        out.images.push(raw);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_zero_and_keypoint_visibility_come_back() {
        let xml = r#"<annotations><version>1.1</version>
          <image id="0" name="a.png" width="64" height="48">
            <box label="car" xtl="1" ytl="2" xbr="10" ybr="20" rotation="0"></box>
            <box label="car" xtl="1" ytl="2" xbr="10" ybr="20"></box>
            <points label="person" points="1,2;5,6" occluded="1">
              <attribute name="keypoint_visibility">2,0,1</attribute>
            </points>
          </image></annotations>"#;
        let mut out = Parsed::default();
        read(xml, &mut out).unwrap();
        let shapes = &out.images[0].shapes;
        assert_eq!(shapes[0].kind, ShapeKind::RotatedRectangle);
        assert_eq!(shapes[0].angle, Some(0.0));
        assert_eq!(shapes[1].kind, ShapeKind::Rectangle);
        assert_eq!(shapes[2].points, vec![[1.0, 2.0], [0.0, 0.0], [5.0, 6.0]]);
        assert_eq!(shapes[2].visibility, Some(vec![2, 0, 1]));
        assert!(shapes[2].attributes.is_empty());
        assert!(shapes[2].occluded && !shapes[0].occluded);
    }
}
