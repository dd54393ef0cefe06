//! CSV: `annotations.csv`, one row per shape (`image,width,height,label,kind,angle,points,
//! visibility,occluded`, points as a JSON list of `[x, y]`, visibility as the keypoints' JSON
//! list of flags when the set has one, occluded `1` or `0`), and one row with empty label and
//! kind for an image without shapes, so every image is listed. Images go to `images/`.

use std::fs::File;
use std::io::{self, BufWriter, Write};

use super::archive::{Archive, Format, Item, Part};
use super::shapes::num;

#[derive(Default)]
pub struct Csv {
    rows: Option<BufWriter<File>>,
}

impl Csv {
    pub fn new() -> Csv {
        Csv { rows: None }
    }
}

/// A text field: quoted when it holds a comma, quote or line break (RFC 4180), and, when it
/// starts with a character a spreadsheet reads as a formula (`=`, `+`, `-`, `@`, tab, CR), prefixed
/// with `'` and quoted, as OWASP advises against CSV injection: a label named
/// `=HYPERLINK(...)` stays text when a manager opens the file.
pub fn field(text: &str) -> String {
    let formula = text.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if formula {
        format!("\"'{}\"", text.replace('"', "\"\""))
    } else if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

impl Format for Csv {
    fn image_path(&self, item: &Item) -> String {
        format!("images/{}", item.file_name())
    }

    fn item(&mut self, out: &mut Archive, item: &Item) -> io::Result<()> {
        if self.rows.is_none() {
            self.rows = Some(out.spool()?);
        }
        let Some(rows) = self.rows.as_mut() else {
            return Ok(());
        };
        let image = field(&item.file_name());
        if item.shapes.is_empty() {
            writeln!(rows, "{image},{},{},,,,[],,", item.width, item.height)?;
        }
        for shape in &item.shapes {
            let kind = serde_json::to_value(shape.kind)?;
            let points: Vec<String> = shape
                .points
                .iter()
                .map(|p| format!("[{},{}]", num(p[0]), num(p[1])))
                .collect();
            let visibility = shape
                .visibility
                .as_ref()
                .map(|v| serde_json::to_string(v).unwrap_or_default())
                .unwrap_or_default();
            writeln!(
                rows,
                "{image},{},{},{},{},{},{},{},{}",
                item.width,
                item.height,
                field(&shape.label),
                kind.as_str().unwrap_or(""),
                shape.angle.map(num).unwrap_or_default(),
                field(&format!("[{}]", points.join(","))),
                field(&visibility),
                u8::from(shape.occluded)
            )?;
        }
        Ok(())
    }

    fn finish(self: Box<Self>, out: &mut Archive) -> io::Result<()> {
        let mut parts = vec![Part::Text(
            "image,width,height,label,kind,angle,points,visibility,occluded\n".into(),
        )];
        if let Some(rows) = self.rows {
            parts.push(Part::Spool(rows));
        }
        out.append("annotations.csv", parts)
    }
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn formulas_stay_text_and_separators_are_quoted() {
        assert_eq!(field("car"), "car");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        for cell in ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(field(cell), format!("\"'{}\"", cell), "{cell:?}");
        }
        assert_eq!(
            field("=HYPERLINK(\"http://x\",\"y\")"),
            "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\""
        );
    }
}
