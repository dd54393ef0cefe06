//! Frames of videos and pages of PDFs, rendered by the tools that do it best: `ffmpeg` and
//! poppler's `pdftoppm` (both installed by the README's commands). Called from the long-work
//! pool only (`crate::long_work`), whose low priority the tools inherit.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Most frames taken from one video.
const MAX_FRAMES: u32 = 100_000;
/// Most pages rendered from one PDF.
const MAX_PAGES: u32 = 10_000;

fn run(command: &mut Command) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|e| format!("cannot run {:?}: {e}", command.get_program()))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().last().unwrap_or("").trim().to_string();
    // Tools name their input by the path given; where the node keeps files is none of the
    // client's business (job errors are shown to managers).
    let last = command
        .get_args()
        .filter_map(|a| a.to_str())
        .filter(|a| a.starts_with('/'))
        .fold(last, |text, path| text.replace(path, "<file>"));
    Err(format!(
        "{:?} failed ({}): {last}",
        command.get_program(),
        output.status
    ))
}

/// The files in `dir` with the number a tool put in their names (after the last `-`, or the
/// whole stem), in order.
fn numbered(dir: &Path) -> Result<Vec<(u64, PathBuf)>, String> {
    let mut out: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .flatten()
        .filter_map(|e| {
            let path = e.path();
            let stem = path.file_stem()?.to_str()?;
            let digits = stem.rsplit('-').next()?;
            Some((digits.parse().ok()?, path))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Renders every page of `pdf` at `dpi` as PNG into `out`: `(page number from 1, file)`.
pub fn pdf_pages(pdf: &Path, out: &Path, dpi: u32) -> Result<Vec<(u64, PathBuf)>, String> {
    run(Command::new("pdftoppm")
        .args(["-r", &dpi.to_string(), "-l", &MAX_PAGES.to_string(), "-png"])
        .arg(pdf)
        .arg(out.join("page")))?;
    numbered(out)
}

/// Takes `fps` frames per second of `video` as PNG into `out`: `(frame index from 0, file)`.
pub fn video_frames(video: &Path, out: &Path, fps: f64) -> Result<Vec<(u64, PathBuf)>, String> {
    run(Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(video)
        .args([
            "-vf",
            &format!("fps={fps}"),
            "-frames:v",
            &MAX_FRAMES.to_string(),
        ])
        .arg(out.join("%08d.png")))?;
    // ffmpeg numbers its output from 1.
    Ok(numbered(out)?
        .into_iter()
        .map(|(n, path)| (n.saturating_sub(1), path))
        .collect())
}
