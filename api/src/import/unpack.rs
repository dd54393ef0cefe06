//! Turns an upload into image files on local disk: containers are opened, videos and PDFs
//! rendered, office documents searched for pictures, everything decided by content, never by
//! file name. Runs on the blocking pool; every byte goes through the staging directory, so
//! memory stays bounded however large the upload.
//!
//! Hostile input is refused before anything is stored (the store phase starts only after this
//! one finished): entries with unsafe paths, links, encryption, compression ratios above
//! [`Limits::max_ratio`] or nesting deeper than [`Limits::max_depth`] are skipped with a reason;
//! an upload expanding beyond [`Limits::max_total`] refuses the whole import.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use super::media;
use crate::jobs::{Runner, Stop};

/// Bounds on what one import may expand to.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Archives inside archives, counting the upload as level 0.
    pub max_depth: u32,
    /// Bytes written to the staging directory, in all.
    pub max_total: u64,
    /// Largest uncompressed/compressed ratio of an entry bigger than [`RATIO_FLOOR`].
    pub max_ratio: u64,
    /// Largest image file (the object size limit).
    pub max_image: u64,
    pub video_fps: f64,
    pub pdf_dpi: u32,
}

/// Entries smaller than this are never ratio bombs worth refusing.
const RATIO_FLOOR: u64 = 1 << 20;

/// What the content of a file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Image,
    Zip,
    Gzip,
    Zstd,
    Tar,
    Pdf,
    Video,
    Other,
}

fn sniff(head: &[u8]) -> Kind {
    if tessera_raft::storage::probe_image(head).is_ok()
        || matches!(
            tessera_raft::storage::probe_image(head),
            Err(tessera_raft::storage::ProbeError::Corrupt(_)
                | tessera_raft::storage::ProbeError::TooLarge { .. })
        )
    {
        return Kind::Image;
    }
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    if at(0, b"PK\x03\x04") || at(0, b"PK\x05\x06") {
        Kind::Zip
    } else if at(0, &[0x1f, 0x8b]) {
        Kind::Gzip
    } else if at(0, &[0x28, 0xb5, 0x2f, 0xfd]) {
        Kind::Zstd
    } else if at(257, b"ustar") {
        Kind::Tar
    } else if at(0, b"%PDF-") {
        Kind::Pdf
    } else if at(4, b"ftyp")
        || at(0, &[0x1a, 0x45, 0xdf, 0xa3])
        || (at(0, b"RIFF") && at(8, b"AVI "))
    {
        Kind::Video
    } else {
        Kind::Other
    }
}

/// An image file ready to be stored, under the name it gets in the dataset.
pub struct Staged {
    pub name: String,
    pub path: PathBuf,
}

/// Walks an upload.
pub struct Unpacker<'a> {
    pub limits: Limits,
    dir: PathBuf,
    runner: &'a Runner,
    written: u64,
    next_file: u64,
    pub staged: Vec<Staged>,
}

/// Why one file was passed over (the walk goes on).
struct Skip(String);

impl From<io::Error> for Skip {
    fn from(e: io::Error) -> Skip {
        Skip(format!("unreadable: {e}"))
    }
}

/// The walk stops: the import is refused, or it was cancelled.
enum Halt {
    Stop(Stop),
    Skip(Skip),
}

impl From<Skip> for Halt {
    fn from(s: Skip) -> Halt {
        Halt::Skip(s)
    }
}

impl From<Stop> for Halt {
    fn from(s: Stop) -> Halt {
        Halt::Stop(s)
    }
}

impl From<io::Error> for Halt {
    fn from(e: io::Error) -> Halt {
        Halt::Skip(e.into())
    }
}

/// A path inside an archive that is safe to use as a name: relative, no `..`, no root.
pub(crate) fn safe_name(raw: &str) -> Option<String> {
    let path = Path::new(raw);
    let parts: Option<Vec<&str>> = path
        .components()
        .map(|c| match c {
            Component::Normal(p) => p.to_str(),
            Component::CurDir => Some(""),
            _ => None,
        })
        .collect();
    let parts: Vec<&str> = parts?.into_iter().filter(|p| !p.is_empty()).collect();
    (!parts.is_empty() && !raw.starts_with('/') && !raw.contains('\\')).then(|| parts.join("/"))
}

impl<'a> Unpacker<'a> {
    pub fn new(limits: Limits, dir: PathBuf, runner: &'a Runner) -> Unpacker<'a> {
        Unpacker {
            limits,
            dir,
            runner,
            written: 0,
            next_file: 0,
            staged: Vec::new(),
        }
    }

    /// Walks `path` (named `name` in the dataset). `Err` refuses the whole import.
    pub fn walk(&mut self, path: &Path, name: &str) -> Result<(), Stop> {
        match self.file(path, name, 0) {
            Ok(()) => Ok(()),
            Err(Halt::Stop(stop)) => Err(stop),
            Err(Halt::Skip(Skip(reason))) => {
                self.runner.skip(name, reason);
                Ok(())
            }
        }
    }

    fn fresh_path(&mut self) -> PathBuf {
        self.next_file += 1;
        self.dir.join(format!("f{:08}", self.next_file))
    }

    /// Copies at most `limit` bytes of `from` into a new staging file; `None` (and nothing
    /// kept) if there were more. With `consumed` (the compressed bytes a decoder has read so
    /// far), the ratio is checked as the bytes come, before each chunk is written: a bomb is
    /// refused after about [`RATIO_FLOOR`] bytes, not after its whole allowance hit the disk.
    /// The upload's total is checked the same way.
    fn stage(
        &mut self,
        from: &mut dyn Read,
        limit: u64,
        consumed: Option<&Cell<u64>>,
    ) -> Result<Option<PathBuf>, Halt> {
        let path = self.fresh_path();
        let mut out = io::BufWriter::new(File::create(&path)?);
        let mut buf = vec![0u8; 64 << 10];
        let mut copied = 0u64;
        let refused = loop {
            let n = match from.read(&mut buf) {
                Ok(0) => break None,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            copied += n as u64;
            let bomb = consumed.is_some_and(|c| {
                copied > RATIO_FLOOR
                    && copied > c.get().max(1).saturating_mul(self.limits.max_ratio)
            });
            if copied > limit || bomb {
                break Some(None);
            }
            if self.written + copied > self.limits.max_total {
                break Some(Some(Stop::Failed(format!(
                    "the upload expands to more than {} bytes: refused, nothing was imported",
                    self.limits.max_total
                ))));
            }
            out.write_all(&buf[..n])?;
        };
        out.flush()?;
        drop(out);
        match refused {
            None => {
                self.written += copied;
                Ok(Some(path))
            }
            Some(stop) => {
                std::fs::remove_file(&path)?;
                match stop {
                    Some(stop) => Err(Halt::Stop(stop)),
                    None => Ok(None),
                }
            }
        }
    }

    fn file(&mut self, path: &Path, name: &str, depth: u32) -> Result<(), Halt> {
        self.runner.check()?;
        self.runner.update(|p| p.files_seen += 1);
        let mut head = Vec::with_capacity(1024);
        File::open(path)?.take(1024).read_to_end(&mut head)?;
        let kind = sniff(&head);
        let nested = matches!(kind, Kind::Zip | Kind::Tar | Kind::Gzip | Kind::Zstd);
        if nested && depth >= self.limits.max_depth {
            return Err(Skip(format!(
                "archive nested deeper than {} levels",
                self.limits.max_depth
            ))
            .into());
        }
        match kind {
            Kind::Image => {
                let size = std::fs::metadata(path)?.len();
                if size > self.limits.max_image {
                    return Err(Skip(format!(
                        "{size} bytes is above the {}-byte object limit",
                        self.limits.max_image
                    ))
                    .into());
                }
                self.staged.push(Staged {
                    name: name.to_string(),
                    path: path.to_path_buf(),
                });
                Ok(())
            }
            Kind::Zip => self.zip(path, name, depth),
            Kind::Tar => self.tar(File::open(path)?, name, depth),
            Kind::Gzip | Kind::Zstd => {
                let compressed = std::fs::metadata(path)?.len().max(1);
                let consumed = Rc::new(Cell::new(0));
                let file = io::BufReader::new(Counted {
                    inner: File::open(path)?,
                    count: consumed.clone(),
                });
                let mut reader: Box<dyn Read> = if kind == Kind::Gzip {
                    Box::new(flate2::read::MultiGzDecoder::new(file))
                } else {
                    Box::new(
                        ruzstd::decoding::StreamingDecoder::new(file)
                            .map_err(|e| Skip(format!("corrupt zstd stream: {e}")))?,
                    )
                };
                let limit = self.ratio_limit(compressed);
                let Some(inner) = self.stage(&mut reader, limit, Some(&consumed))? else {
                    return Err(Skip(self.ratio_reason(compressed)).into());
                };
                // A compression layer is not a level of nesting: `x.tar.gz` is one archive.
                self.file(&inner, name, depth)
            }
            Kind::Pdf => {
                let out = self.fresh_path();
                std::fs::create_dir(&out)?;
                let pages = media::pdf_pages(path, &out, self.limits.pdf_dpi)
                    .map_err(|e| Skip(format!("PDF could not be rendered: {e}")))?;
                for (page, file) in pages {
                    self.image_file(&file, &format!("{name}#{page}"))?;
                }
                Ok(())
            }
            Kind::Video => {
                let out = self.fresh_path();
                std::fs::create_dir(&out)?;
                let frames = media::video_frames(path, &out, self.limits.video_fps)
                    .map_err(|e| Skip(format!("video could not be decoded: {e}")))?;
                for (frame, file) in frames {
                    self.image_file(&file, &format!("{name}#{frame}"))?;
                }
                Ok(())
            }
            Kind::Other => {
                Err(Skip("not an image, archive, video, PDF or office document".into()).into())
            }
        }
    }

    /// A file a tool produced (a page, a frame): counted against the total like the rest.
    fn image_file(&mut self, path: &Path, name: &str) -> Result<(), Halt> {
        self.written += std::fs::metadata(path)?.len();
        if self.written > self.limits.max_total {
            return Err(Halt::Stop(Stop::Failed(format!(
                "the upload expands to more than {} bytes: refused, nothing was imported",
                self.limits.max_total
            ))));
        }
        self.runner.update(|p| p.files_seen += 1);
        self.staged.push(Staged {
            name: name.to_string(),
            path: path.to_path_buf(),
        });
        Ok(())
    }

    fn ratio_limit(&self, compressed: u64) -> u64 {
        compressed
            .saturating_mul(self.limits.max_ratio)
            .max(RATIO_FLOOR)
            .min(self.limits.max_total)
    }

    fn ratio_reason(&self, compressed: u64) -> String {
        format!(
            "expands beyond {} bytes from {compressed} (compression ratio above {}:1, a \
             decompression bomb?)",
            self.ratio_limit(compressed),
            self.limits.max_ratio
        )
    }

    /// Runs `step` for one archive entry; a skipped entry is recorded and the walk goes on.
    fn entry(
        &mut self,
        name: String,
        step: impl FnOnce(&mut Self) -> Result<(), Halt>,
    ) -> Result<(), Halt> {
        match step(self) {
            Err(Halt::Skip(Skip(reason))) => {
                self.runner.skip(name, reason);
                Ok(())
            }
            other => other,
        }
    }

    fn zip(&mut self, path: &Path, name: &str, depth: u32) -> Result<(), Halt> {
        let mut archive = zip::ZipArchive::new(io::BufReader::new(File::open(path)?))
            .map_err(|e| Skip(format!("corrupt zip: {e}")))?;
        let office = office_kind(&mut archive);
        for i in 0..archive.len() {
            let (raw_name, is_dir, link, encrypted, size, compressed) = {
                let meta = archive
                    .by_index_raw(i)
                    .map_err(|e| Skip(format!("corrupt zip: {e}")))?;
                (
                    String::from_utf8_lossy(meta.name_raw()).into_owned(),
                    meta.is_dir(),
                    meta.is_symlink(),
                    meta.encrypted(),
                    meta.size(),
                    meta.compressed_size(),
                )
            };
            if is_dir {
                continue;
            }
            let entry_name = match (office, depth) {
                (Some(_), _) => format!("{name}#{raw_name}"),
                (None, 0) => raw_name.clone(),
                (None, _) => format!("{name}/{raw_name}"),
            };
            if office.is_some_and(|media_dir| !is_office_picture(&raw_name, media_dir)) {
                continue;
            }
            self.entry(entry_name.clone(), |this| {
                this.runner.check()?;
                if safe_name(&raw_name).is_none() {
                    return Err(Skip("unsafe path (absolute or with ..): refused".into()).into());
                }
                if link {
                    return Err(Skip("symbolic link: refused".into()).into());
                }
                if encrypted {
                    return Err(Skip("encrypted entry: refused (no passwords)".into()).into());
                }
                let limit = this.ratio_limit(compressed.max(1));
                if size > limit {
                    return Err(Skip(this.ratio_reason(compressed)).into());
                }
                let mut file = archive
                    .by_index(i)
                    .map_err(|e| Skip(format!("unreadable entry: {e}")))?;
                let Some(staged) = this.stage(&mut file, limit, None)? else {
                    return Err(Skip(this.ratio_reason(compressed)).into());
                };
                drop(file);
                this.file(&staged, &entry_name, depth + 1)
            })?;
        }
        Ok(())
    }

    fn tar(&mut self, file: File, name: &str, depth: u32) -> Result<(), Halt> {
        let mut archive = tar::Archive::new(io::BufReader::new(file));
        let entries = archive
            .entries()
            .map_err(|e| Skip(format!("corrupt tar: {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| Skip(format!("corrupt tar: {e}")))?;
            let raw_name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let kind = entry.header().entry_type();
            if kind.is_dir() || kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
                continue;
            }
            let entry_name = if depth == 0 {
                raw_name.clone()
            } else {
                format!("{name}/{raw_name}")
            };
            self.entry(entry_name.clone(), |this| {
                this.runner.check()?;
                if safe_name(&raw_name).is_none() {
                    return Err(Skip("unsafe path (absolute or with ..): refused".into()).into());
                }
                if kind.is_symlink() || kind.is_hard_link() {
                    return Err(Skip("link: refused".into()).into());
                }
                if !kind.is_file() {
                    return Err(Skip("not a regular file".into()).into());
                }
                let limit = this.limits.max_total;
                let Some(staged) = this.stage(&mut entry, limit, None)? else {
                    return Err(Skip("larger than the import limit".into()).into());
                };
                this.file(&staged, &entry_name, depth + 1)
            })?;
        }
        Ok(())
    }
}

/// Counts the bytes read through it: the compressed side of a decoder.
struct Counted<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// `Some(media folder)` when a zip is an OpenDocument or OOXML file (their pictures are what an
/// import takes from them).
fn office_kind<R: Read + io::Seek>(archive: &mut zip::ZipArchive<R>) -> Option<&'static str> {
    if let Ok(mut mimetype) = archive.by_name("mimetype") {
        let mut text = String::new();
        let _ = mimetype.by_ref().take(200).read_to_string(&mut text);
        if text.starts_with("application/vnd.oasis.opendocument") {
            return Some("Pictures/");
        }
    }
    archive
        .by_name("[Content_Types].xml")
        .is_ok()
        .then_some("media/")
}

fn is_office_picture(name: &str, media_dir: &str) -> bool {
    match media_dir {
        "Pictures/" => name.starts_with("Pictures/"),
        _ => name.contains("/media/"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_inside_archives_must_stay_inside() {
        assert_eq!(safe_name("cam1/a.jpg").as_deref(), Some("cam1/a.jpg"));
        assert_eq!(safe_name("./b.png").as_deref(), Some("b.png"));
        assert_eq!(safe_name("../../evil.png"), None);
        assert_eq!(safe_name("/abs.png"), None);
        assert_eq!(safe_name("a/../../b"), None);
        assert_eq!(safe_name("a\\..\\b"), None);
    }

    #[test]
    fn sniffs_containers_by_content() {
        assert_eq!(sniff(b"PK\x03\x04rest"), Kind::Zip);
        assert_eq!(sniff(&[0x1f, 0x8b, 8, 0]), Kind::Gzip);
        assert_eq!(sniff(b"%PDF-1.7"), Kind::Pdf);
        assert_eq!(sniff(b"\0\0\0\x20ftypisom"), Kind::Video);
        let mut tar = vec![0u8; 512];
        tar[257..262].copy_from_slice(b"ustar");
        assert_eq!(sniff(&tar), Kind::Tar);
        assert_eq!(sniff(b"just some text"), Kind::Other);
    }
}
