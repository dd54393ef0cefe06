//! The disk's own sequential write bandwidth with the data flushed, measured next to the ingest
//! in the same run: what ingest × replication × write amplification should be compared with.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};

/// MB/s (10^6 bytes) of `dd if=/dev/zero bs=1M count=mib conv=fdatasync` into a file in `dir`
/// (which must be on the filesystem of the data directories); the file is removed afterwards.
/// `conv=fdatasync` makes dd's time include the flush, as Tessera's fsynced writes do.
pub fn fdatasync_mb_per_s(dir: &Path, mib: u64) -> anyhow::Result<f64> {
    let file = dir.join("dd-bandwidth.tmp");
    let out = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", file.display()))
        .args(["bs=1M", &format!("count={mib}"), "conv=fdatasync"])
        .output()
        .context("running dd")?;
    let _ = std::fs::remove_file(&file);
    if !out.status.success() {
        bail!("dd failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stderr);
    parse_dd(&text).with_context(|| format!("unreadable dd report: {text}"))
}

/// Bytes and seconds from dd's last line, e.g. `268435456 bytes (268 MB, 256 MiB) copied,
/// 1.2 s, 224 MB/s` (computed here rather than taken from dd's rounded, unit-varying rate).
fn parse_dd(text: &str) -> Option<f64> {
    let line = text.lines().rev().find(|l| l.contains(" copied, "))?;
    let bytes: f64 = line.split_whitespace().next()?.parse().ok()?;
    let seconds: f64 = line
        .split(" copied, ")
        .nth(1)?
        .split_whitespace()
        .next()?
        .replace(',', ".")
        .parse()
        .ok()?;
    (seconds > 0.0).then(|| bytes / 1e6 / seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_dd_reports() {
        let text = "256+0 records in\n256+0 records out\n268435456 bytes (268 MB, 256 MiB) copied, 1.34217 s, 200 MB/s\n";
        let rate = parse_dd(text).unwrap();
        assert!((rate - 200.0).abs() < 0.01, "{rate}");
        assert_eq!(parse_dd("dd: error writing"), None);
    }
}
