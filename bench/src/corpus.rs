//! A deterministic corpus of realistic JPEGs: several resolutions from 640x480 to 1280x960,
//! smooth structure plus sensor-like noise, so that they compress like photographs (100-200 KB).

use std::path::{Path, PathBuf};

use jpeg_encoder::{ColorType, Encoder};
use sha2::Digest;

const RESOLUTIONS: [(u16, u16); 4] = [(640, 480), (800, 600), (1024, 768), (1280, 960)];
const QUALITY: u8 = 85;
const MIN_BYTES: usize = 100_000;
const MAX_BYTES: usize = 200_000;

/// One image of the corpus.
pub struct Image {
    /// File name under the corpus directory (also its URL path under nginx).
    pub name: String,
    pub path: PathBuf,
    pub sha256: String,
    pub size: usize,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

fn render(width: u16, height: u16, noise: f32, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let (fx, fy, phase) = (
        rng.unit() * 0.05 + 0.005,
        rng.unit() * 0.05 + 0.005,
        rng.unit() * std::f32::consts::TAU,
    );
    let tint = [rng.unit(), rng.unit(), rng.unit()];
    let mut pixels = Vec::with_capacity(usize::from(width) * usize::from(height) * 3);
    for y in 0..height {
        for x in 0..width {
            let (xf, yf) = (f32::from(x), f32::from(y));
            let base = 0.5 + 0.25 * (xf * fx + phase).sin() + 0.25 * (yf * fy - phase).cos();
            for t in tint {
                let grain = (rng.unit() - 0.5) * noise;
                let v = (base * (0.4 + 0.6 * t) * 255.0 + grain).clamp(0.0, 255.0);
                pixels.push(v as u8);
            }
        }
    }
    pixels
}

fn encode(width: u16, height: u16, noise: f32, seed: u64) -> anyhow::Result<Vec<u8>> {
    let pixels = render(width, height, noise, seed);
    let mut out = Vec::new();
    Encoder::new(&mut out, QUALITY).encode(&pixels, width, height, ColorType::Rgb)?;
    Ok(out)
}

/// Generates `count` images into `dir` (reusing files already there from the same seed).
pub fn generate(dir: &Path, count: usize, seed: u64) -> anyhow::Result<Vec<Image>> {
    std::fs::create_dir_all(dir)?;
    // Per resolution, the noise level that lands near the middle of the size band.
    let mut noise_for = Vec::new();
    for &(w, h) in &RESOLUTIONS {
        let (mut lo, mut hi) = (0.0f32, 160.0f32);
        for _ in 0..7 {
            let mid = (lo + hi) / 2.0;
            if encode(w, h, mid, seed)?.len() < (MIN_BYTES + MAX_BYTES) / 2 {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        noise_for.push((lo + hi) / 2.0);
    }
    // Two encoders at once: a 2 GB corpus is ~14 000 JPEGs.
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4);
    let noise_for = &noise_for;
    let mut images: Vec<Image> = std::thread::scope(|scope| {
        let tasks: Vec<_> = (0..workers)
            .map(|w| {
                scope.spawn(move || {
                    (w..count)
                        .step_by(workers)
                        .map(|i| image(dir, i, seed, noise_for))
                        .collect::<anyhow::Result<Vec<Image>>>()
                })
            })
            .collect();
        tasks
            .into_iter()
            .map(|t| {
                t.join()
                    .map_err(|_| anyhow::anyhow!("a corpus encoder panicked"))?
            })
            .collect::<anyhow::Result<Vec<Vec<Image>>>>()
    })?
    .into_iter()
    .flatten()
    .collect();
    images.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(images)
}

/// Image `i` of the corpus: read back if it is there, else encoded and written.
fn image(dir: &Path, i: usize, seed: u64, noise_for: &[f32]) -> anyhow::Result<Image> {
    let name = format!("img-{seed}-{i:05}.jpg");
    let path = dir.join(&name);
    let bytes = match std::fs::read(&path) {
        Ok(existing) => existing,
        Err(_) => {
            let r = i % RESOLUTIONS.len();
            let (w, h) = RESOLUTIONS[r];
            let image_seed = seed ^ (i as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03);
            let spread = 0.75 + 0.5 * Rng(image_seed | 1).unit();
            let mut noise = noise_for[r] * spread;
            let mut bytes = encode(w, h, noise, image_seed)?;
            for _ in 0..4 {
                if bytes.len() < MIN_BYTES {
                    noise *= 1.3;
                } else if bytes.len() > MAX_BYTES {
                    noise *= 0.75;
                } else {
                    break;
                }
                bytes = encode(w, h, noise, image_seed)?;
            }
            std::fs::write(&path, &bytes)?;
            bytes
        }
    };
    let sha256 = hex::encode(sha2::Sha256::digest(&bytes));
    Ok(Image {
        name,
        path,
        sha256,
        size: bytes.len(),
    })
}

/// The image whose size is the median of the corpus.
pub fn median(images: &[Image]) -> &Image {
    let mut by_size: Vec<&Image> = images.iter().collect();
    by_size.sort_by_key(|i| i.size);
    by_size[by_size.len() / 2]
}
