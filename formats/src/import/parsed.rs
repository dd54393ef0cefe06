//! What the format readers produce: images (as the annotation files name them) with shapes in
//! Tessera's terms, before they are matched to the dataset and checked against the schema.

/// One shape as read from a file: the domain's shape, not yet fitted to the schema or image.
pub use tessera_domain::shape::Shape as RawShape;

/// An image named by an annotation file.
#[derive(Debug, Default)]
pub struct RawImage {
    /// The file name or path the annotation file gives.
    pub file: String,
    /// Its size as the file states it (YOLO states none).
    pub size: Option<(u32, u32)>,
    /// Coordinates are fractions of the width and height (YOLO) until matched to an image.
    pub normalized: bool,
    pub shapes: Vec<RawShape>,
}

/// A label a file declares, with the keypoint names it gives.
#[derive(Clone, Debug, Default)]
pub struct RawLabel {
    pub name: String,
    pub keypoints: Vec<String>,
    pub skeleton: Vec<(usize, usize)>,
}

/// Everything read from an upload.
#[derive(Debug, Default)]
pub struct Parsed {
    pub labels: Vec<RawLabel>,
    pub images: Vec<RawImage>,
    /// Things read but not imported (RLE masks, unreadable lines), for the report.
    pub notes: Vec<String>,
}

impl Parsed {
    /// Declares `label` unless already declared.
    pub fn declare(&mut self, label: RawLabel) {
        if !self.labels.iter().any(|l| l.name == label.name) {
            self.labels.push(label);
        }
    }
}
