//! The zip an export writes, the items formats are fed, and the report of what a format could
//! not carry.
//!
//! Formats write per-image files straight into the zip and whole-dataset files (COCO's JSON,
//! CVAT's XML) into spool files in a temporary directory first, appended at the end: a zip
//! entry must be written in one go, and images arrive interleaved with annotations. Memory
//! stays bounded by one image plus a few buffers however large the annotation set is.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

use bytes::Bytes;
use tessera_domain::Sha256;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use super::shapes::Shape;

/// One image on its way into an export.
pub struct Item {
    /// A file name without extension, unique in the export (see [`stems`]).
    pub stem: String,
    /// File extension for its content type.
    pub ext: &'static str,
    pub subset: String,
    pub width: u32,
    pub height: u32,
    /// Colour channels of the pixels (1 grey, 2 grey + alpha, 3 colour, 4 with alpha), as
    /// the image header says (3 when it says nothing).
    pub channels: u8,
    pub shapes: Vec<Shape>,
    /// The EXIF orientation the image had, when the export moved it into the stored frame.
    pub turned: Option<u16>,
    /// The image bytes when the export includes images.
    pub bytes: Option<Bytes>,
}

impl Item {
    pub fn file_name(&self) -> String {
        format!("{}.{}", self.stem, self.ext)
    }
}

/// What a format could not carry, counted per kind of loss; written as `REPORT.txt` in the
/// archive and into the job's result.
#[derive(Default)]
pub struct Report {
    losses: BTreeMap<String, u64>,
    notes: Vec<String>,
}

impl Report {
    /// Counts one shape (or image) a format handled lossily, described by `what`.
    pub fn loss(&mut self, what: impl Into<String>) {
        *self.losses.entry(what.into()).or_default() += 1;
    }

    pub fn note(&mut self, line: impl Into<String>) {
        self.notes.push(line.into());
    }

    pub fn lines(&self) -> Vec<String> {
        let mut out = self.notes.clone();
        out.extend(self.losses.iter().map(|(what, n)| format!("{n} × {what}")));
        out
    }
}

/// The archive under construction.
pub struct Archive {
    zip: ZipWriter<BufWriter<File>>,
    spool_dir: tempfile::TempDir,
    pub report: Report,
}

fn zip_err(e: zip::result::ZipError) -> io::Error {
    io::Error::other(e)
}

impl Archive {
    /// Starts a zip at `path`; spool files go to a fresh directory beside it.
    pub fn create(path: &Path) -> io::Result<Archive> {
        let dir = path.parent().unwrap_or(Path::new("."));
        Ok(Archive {
            zip: ZipWriter::new(BufWriter::new(File::create(path)?)),
            spool_dir: tempfile::tempdir_in(dir)?,
            report: Report::default(),
        })
    }

    /// Adds a file. Images are stored as they are (they are compressed already); text is
    /// deflated.
    pub fn file(&mut self, path: &str, bytes: &[u8], compress: bool) -> io::Result<()> {
        let method = if compress {
            CompressionMethod::Deflated
        } else {
            CompressionMethod::Stored
        };
        let options = SimpleFileOptions::default()
            .compression_method(method)
            .large_file(bytes.len() as u64 >= u32::MAX as u64);
        self.zip.start_file(path, options).map_err(zip_err)?;
        self.zip.write_all(bytes)
    }

    /// Adds an empty directory entry (COCO's `images/` must exist even without images).
    pub fn dir(&mut self, path: &str) -> io::Result<()> {
        self.zip
            .add_directory(path, SimpleFileOptions::default())
            .map_err(zip_err)
    }

    /// A scratch file for a whole-dataset document, appended later with [`Archive::append`].
    pub fn spool(&self) -> io::Result<BufWriter<File>> {
        Ok(BufWriter::new(tempfile::tempfile_in(
            self.spool_dir.path(),
        )?))
    }

    /// Adds the concatenation of `parts` (text and spool files) as one deflated entry.
    pub fn append(&mut self, path: &str, parts: Vec<Part>) -> io::Result<()> {
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .large_file(true);
        self.zip.start_file(path, options).map_err(zip_err)?;
        for part in parts {
            match part {
                Part::Text(text) => self.zip.write_all(text.as_bytes())?,
                Part::Spool(spool) => {
                    let mut file = spool.into_inner().map_err(|e| e.into_error())?;
                    file.seek(SeekFrom::Start(0))?;
                    io::copy(&mut file, &mut self.zip)?;
                }
            }
        }
        Ok(())
    }

    /// Writes the report and the central directory; returns the report's lines.
    pub fn finish(mut self) -> io::Result<Vec<String>> {
        let lines = self.report.lines();
        let mut text = String::from("Tessera export report\n\n");
        if self.report.losses.is_empty() {
            text.push_str("Every shape was exported as drawn.\n");
        }
        for line in &lines {
            text.push_str(line);
            text.push('\n');
        }
        self.file("REPORT.txt", text.as_bytes(), true)?;
        let mut out = self.zip.finish().map_err(zip_err)?;
        out.flush()?;
        out.get_ref().sync_all()?;
        Ok(lines)
    }
}

/// A piece of a document assembled by [`Archive::append`].
pub enum Part {
    Text(String),
    Spool(BufWriter<File>),
}

/// What every format does with the items of an export.
pub trait Format: Send {
    /// Where the image file of `item` goes in the archive.
    fn image_path(&self, item: &Item) -> String;
    /// Writes what `item` contributes (its image is written by the caller).
    fn item(&mut self, out: &mut Archive, item: &Item) -> io::Result<()>;
    /// Writes the whole-dataset files.
    fn finish(self: Box<Self>, out: &mut Archive) -> io::Result<()>;
}

/// The extension for a content type.
pub fn extension(content_type: &str) -> &'static str {
    match content_type {
        "image/png" => "png",
        "image/webp" => "webp",
        "image/gif" => "gif",
        "image/bmp" => "bmp",
        "image/tiff" => "tiff",
        _ => "jpg",
    }
}

/// File stems for image names, unique within an export: the name without its extension,
/// with path separators and characters that trouble some tool replaced by `_`; a clash gets
/// the first 8 hex digits of the hash appended.
#[derive(Default)]
pub struct Stems {
    taken: std::collections::HashSet<String>,
}

impl Stems {
    pub fn new() -> Stems {
        Stems {
            taken: std::collections::HashSet::new(),
        }
    }

    pub fn stem(&mut self, name: &str, sha: &Sha256) -> String {
        let mut clean = clean_stem(name);
        if clean.is_empty() || clean.len() > 150 {
            clean = sha.to_string();
        }
        if !self.taken.insert(clean.clone()) {
            clean = format!("{clean}-{}", &sha.to_string()[..8]);
            self.taken.insert(clean.clone());
        }
        clean
    }
}

/// An image name as an export names its file (without extension): path separators and
/// characters some tools trip on become `_`. Annotation imports match exported files back to
/// dataset images with it.
pub fn clean_stem(name: &str) -> String {
    let base = match name.rsplit_once('.') {
        Some((stem, ext)) if !ext.contains('/') && ext.len() <= 5 && !stem.is_empty() => stem,
        _ => name,
    };
    let clean: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    clean.trim_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_are_clean_and_unique() {
        let mut stems = Stems::new();
        let a = Sha256([1; 32]);
        let b = Sha256([2; 32]);
        assert_eq!(stems.stem("cam1/0001.jpg", &a), "cam1_0001");
        assert_eq!(stems.stem("cam1/0001.png", &b), "cam1_0001-02020202");
        assert_eq!(stems.stem("clip.mp4#12", &a), "clip.mp4_12");
        assert_eq!(stems.stem("../x", &b), "_x");
    }
}
