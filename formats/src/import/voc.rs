//! Pascal VOC `Annotations/*.xml`: every object's box becomes a rectangle, occluded when its
//! `<occluded>` is 1. Coordinates are taken as written (Tessera writes VOC 0-based; see
//! docs/formats.md).

use tessera_domain::annotation_sets::ShapeKind;

use super::parsed::{Parsed, RawImage, RawLabel, RawShape};
use crate::xml;

/// Adds the contents of one VOC annotation file.
pub fn read(text: &str, out: &mut Parsed) -> Result<(), String> {
    let root = xml::parse(text)?;
    if root.name != "annotation" {
        return Err(format!(
            "VOC: root element is <{}>, not <annotation>",
            root.name
        ));
    }
    let file = root.text_of("filename").unwrap_or("").to_string();
    let number = |e: Option<&str>| e.and_then(|t| t.trim().parse::<f64>().ok());
    let size = root.child("size").and_then(|s| {
        Some((
            number(s.text_of("width"))? as u32,
            number(s.text_of("height"))? as u32,
        ))
    });
    let mut image = RawImage {
        file,
        size,
        ..RawImage::default()
    };
    for object in root.children("object") {
        let Some(label) = object.text_of("name") else {
            continue;
        };
        out.declare(RawLabel {
            name: label.to_string(),
            ..RawLabel::default()
        });
        let Some(b) = object.child("bndbox") else {
            continue;
        };
        let corner = |x: &str, y: &str| Some([number(b.text_of(x))?, number(b.text_of(y))?]);
        let (Some(a), Some(c)) = (corner("xmin", "ymin"), corner("xmax", "ymax")) else {
            out.notes
                .push(format!("VOC {}: a box without four numbers", image.file));
            continue;
        };
        let mut shape = RawShape::new(label, ShapeKind::Rectangle, vec![a, c]);
        shape.occluded = object.text_of("occluded").map(str::trim) == Some("1");
        image.shapes.push(shape);
    }
    out.images.push(image);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn occluded_objects_come_back_occluded() {
        let xml = r#"<annotation><filename>a.png</filename>
          <object><name>car</name><occluded>1</occluded>
            <bndbox><xmin>1</xmin><ymin>2</ymin><xmax>10</xmax><ymax>20</ymax></bndbox></object>
          <object><name>car</name><occluded>0</occluded>
            <bndbox><xmin>1</xmin><ymin>2</ymin><xmax>10</xmax><ymax>20</ymax></bndbox></object>
        </annotation>"#;
        let mut out = Parsed::default();
        read(xml, &mut out).unwrap();
        let flags: Vec<bool> = out.images[0].shapes.iter().map(|s| s.occluded).collect();
        assert_eq!(flags, vec![true, false]);
    }
}
