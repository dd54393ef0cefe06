//! Label names a format cannot hold. Tessera accepts any 1-100 characters without control
//! characters; a few formats give some characters a meaning no escaping removes, and their
//! readers then refuse the whole dataset (datumaro and VOC's `labelmap.txt`) or silently
//! change the name (line-based name files trim spaces). Such an export is refused up front,
//! naming the label, rather than written wrong or renamed behind the user's back.

use tessera_domain::annotation_sets::Label;

/// Why `format` cannot hold `name`, if it cannot.
fn reason(format: &str, name: &str) -> Option<&'static str> {
    let padded = name.trim() != name;
    match format {
        "voc" if name.contains(':') => {
            Some("VOC's labelmap.txt separates its fields with ':' (no escape exists)")
        }
        "voc" if name.starts_with('#') => {
            Some("a labelmap.txt line starting with '#' is a comment")
        }
        "voc" | "yolo-darknet" if padded => {
            Some("readers trim the lines of the name file, so leading or trailing spaces are lost")
        }
        _ => None,
    }
}

/// The first label of `labels` that `format` cannot hold, as an error message saying what to
/// do instead.
pub fn problem(format: &str, labels: &[Label]) -> Option<String> {
    labels.iter().find_map(|l| {
        let why = reason(format, &l.name)?;
        Some(format!(
            "labels[{:?}]: {format} cannot hold this name: {why}; rename the label (PATCH the \
             annotation set) or export as coco, cvat, yolo, labelme or csv, which hold any name",
            l.name
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_domain::annotation_sets::ShapeKind;

    fn labels(names: &[&str]) -> Vec<Label> {
        names
            .iter()
            .map(|n| Label {
                name: n.to_string(),
                color: "#000000".into(),
                kinds: vec![ShapeKind::Rectangle],
                attributes: vec![],
                keypoints: vec![],
                skeleton: vec![],
            })
            .collect()
    }

    #[test]
    fn each_format_names_the_label_it_cannot_hold() {
        let odd = labels(&["car", "vehicle:truck", "say \"hi\" <&>", "Straße"]);
        let voc = problem("voc", &odd).unwrap();
        assert!(
            voc.contains("\"vehicle:truck\"") && voc.contains("':'"),
            "{voc}"
        );
        for format in ["coco", "cvat", "yolo", "yolo-darknet", "labelme", "csv"] {
            assert_eq!(problem(format, &odd), None, "{format}");
        }
        assert!(problem("voc", &labels(&["#1"])).is_some());
        assert!(problem("yolo-darknet", &labels(&[" car"])).is_some());
        assert_eq!(problem("yolo", &labels(&[" car"])), None);
    }
}
