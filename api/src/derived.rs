//! Thumbnails and previews: `GET /objects/<sha>?size=thumb|preview`.
//!
//! A dataset page of full originals costs megabytes, and a workspace decoding an 8000-pixel
//! image on the main thread stutters. A *derived object* is a small version of an image in its
//! displayed frame (EXIF orientation applied, as browsers draw the original), generated once
//! per object and size on the first request, and stored as an ordinary content-addressed
//! object: replicated, cached and served like any other, so every node serves it after the
//! first generation. The original's shard group records which derived object belongs to
//! (original, size) (`Command::SetDerived`); the first record wins.
//!
//! Generation reads the original, decodes and scales it on a low-priority pool of its own
//! ([`RENDER`]: never on the async threads, never on the blocking pool that runs Raft's fsyncs,
//! never queued behind an export on the job pool), at most [`RENDERS`] at once per node, and
//! only for images within the upload limits (`MAX_SIDE`, `MAX_PIXELS`): memory is bounded by
//! two originals and two decoded images. Requests for the same
//! (original, size) on one node wait for one generation.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use image::metadata::Orientation;
use image::{DynamicImage, ImageFormat, ImageReader, Limits};
use sha2::Digest;
use tessera_raft::storage::{exif, probe_image, ObjectMeta, Sha256, MAX_PIXELS, MAX_SIDE};
use tessera_raft::{ObjectBody, ReadSpec};
use tokio::sync::{OnceCell, Semaphore};

use crate::error::{internal, ApiError};
use crate::long_work;
use crate::objects::no_such_object;
use crate::AppState;

/// Generations at once per node: each holds an original and its decoded pixels.
pub const RENDERS: usize = 2;

/// The threads that decode, scale and encode (nice 10, like job work).
static RENDER: long_work::Pool = long_work::Pool::new("tessera-thumb", RENDERS);

/// The forms an image can be asked for in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Size {
    /// Longest side at most 256 pixels: grids and strips.
    Thumb,
    /// Longest side at most 1280 pixels: the workspace until zoom asks for more.
    Preview,
}

impl Size {
    /// The value of `?size=`; anything else is a 400 naming the accepted values.
    pub fn parse(value: &str) -> Result<Size, ApiError> {
        match value {
            "thumb" => Ok(Size::Thumb),
            "preview" => Ok(Size::Preview),
            _ => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_size",
                "size must be \"thumb\" (longest side 256 px) or \"preview\" (1280 px)",
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Size::Thumb => "thumb",
            Size::Preview => "preview",
        }
    }

    /// The longest side of the derived image, in pixels.
    pub fn max_side(self) -> u32 {
        match self {
            Size::Thumb => 256,
            Size::Preview => 1280,
        }
    }
}

/// One generation that every request for the same (original, size) at this node waits for.
type Flight = Arc<OnceCell<Sha256>>;

/// Derived objects this node remembers, at most; past that the memory starts again.
const KNOWN_MAX: usize = 65_536;

/// A node's generations in flight and its bound on concurrent decodes.
pub struct Derived {
    /// Records already looked up or made here: a record never changes once made (the first
    /// wins), and a node that holds no replica of the original's group cannot read it locally.
    known: Mutex<HashMap<(Sha256, Size), Sha256>>,
    flights: Mutex<HashMap<(Sha256, Size), Flight>>,
    /// Held from reading the original until its derived object is stored, so that at most
    /// this many originals and decoded images are in memory at once.
    decodes: Semaphore,
}

impl Default for Derived {
    fn default() -> Derived {
        Derived {
            known: Mutex::default(),
            flights: Mutex::default(),
            decodes: Semaphore::new(RENDERS),
        }
    }
}

/// Why an image could not be turned into a derived one (a 422 to the client).
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot decode this {0} image for a thumbnail")]
    Unsupported(String),
    #[error("the image could not be decoded: {0}")]
    Decode(#[from] image::ImageError),
}

/// What [`render`] made of an original.
#[derive(Debug)]
pub enum Rendered {
    /// The original already fits and needs no turning: it is its own thumbnail or preview.
    AsIs,
    /// Encoded bytes: JPEG, or PNG when the image has an alpha channel.
    Image(Vec<u8>),
}

fn unprocessable(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
}

/// The derived object serving `sha` in `size`, generated (once per node at a time) when the
/// original's shard group records none yet.
pub async fn resolve(state: &AppState, sha: Sha256, size: Size) -> Result<Sha256, ApiError> {
    let known = state
        .derived
        .known
        .lock()
        .map_err(internal)?
        .get(&(sha, size))
        .copied();
    if let Some(derived) = known {
        return Ok(derived);
    }
    let derived = match state.cluster.derived(&sha, size.name()).await? {
        Some(derived) => derived,
        None => generate_once(state, sha, size).await?,
    };
    let mut known = state.derived.known.lock().map_err(internal)?;
    if known.len() >= KNOWN_MAX {
        known.clear();
    }
    known.insert((sha, size), derived);
    Ok(derived)
}

/// Generates the derived object unless a generation of it is in flight at this node already;
/// then waits for that one.
async fn generate_once(state: &AppState, sha: Sha256, size: Size) -> Result<Sha256, ApiError> {
    let flight = {
        let mut flights = state.derived.flights.lock().map_err(internal)?;
        flights.entry((sha, size)).or_default().clone()
    };
    let result = flight
        .get_or_try_init(|| generate(state, sha, size))
        .await
        .copied();
    if let Ok(mut flights) = state.derived.flights.lock() {
        // Later requests find the record in the shard group; a failure may be tried again.
        if flights
            .get(&(sha, size))
            .is_some_and(|f| Arc::ptr_eq(f, &flight))
        {
            flights.remove(&(sha, size));
        }
    }
    result
}

async fn generate(state: &AppState, sha: Sha256, size: Size) -> Result<Sha256, ApiError> {
    let _permit = state.derived.decodes.acquire().await.map_err(internal)?;
    let spec = ReadSpec {
        range: None,
        meta_only: false,
        linearizable: false,
    };
    let read = state
        .cluster
        .read_object(sha, spec, 0)
        .await?
        .ok_or_else(no_such_object)?;
    let meta = read.head.meta;
    if meta.width > MAX_SIDE
        || meta.height > MAX_SIDE
        || u64::from(meta.width) * u64::from(meta.height) > MAX_PIXELS
    {
        return Err(unprocessable(
            "image_too_large",
            format!(
                "{} x {} pixels is above the limit for thumbnails",
                meta.width, meta.height
            ),
        ));
    }
    let original = match read.body {
        Some(ObjectBody::Local(bytes)) => bytes,
        Some(ObjectBody::Remote(mut stream)) => {
            let mut buf = BytesMut::with_capacity(meta.size as usize);
            while let Some(chunk) = stream.next().await {
                buf.extend_from_slice(&chunk?);
            }
            buf.freeze()
        }
        None => return Err(internal("object read returned no body")),
    };
    let rendered = RENDER
        .run(move || render(&original, size.max_side()))
        .await
        .map_err(internal)?
        .map_err(|e| unprocessable("not_decodable", e.to_string()))?;
    let derived = match rendered {
        Rendered::AsIs => sha,
        Rendered::Image(bytes) => store(state, Bytes::from(bytes)).await?,
    };
    let recorded = state.cluster.set_derived(sha, size.name(), derived).await?;
    metrics::counter!("tessera_derived_generated_total", "size" => size.name()).increment(1);
    Ok(recorded)
}

/// Stores generated bytes as an object (one reference, held by the derived record).
async fn store(state: &AppState, bytes: Bytes) -> Result<Sha256, ApiError> {
    let info = probe_image(&bytes).map_err(internal)?;
    let sha = Sha256(sha2::Sha256::digest(&bytes).into());
    let meta = ObjectMeta::for_upload(bytes.len() as u64, &info, crate::token::now_ms());
    state.cluster.put_object(sha, meta, bytes).await?;
    Ok(sha)
}

/// Decodes `bytes`, scales it to fit `max_side` pixels a side in its displayed frame and
/// encodes it. CPU-heavy: runs on the long-work pool.
pub fn render(bytes: &[u8], max_side: u32) -> Result<Rendered, RenderError> {
    let format = image::guess_format(bytes)?;
    if !matches!(
        format,
        ImageFormat::Jpeg
            | ImageFormat::Png
            | ImageFormat::WebP
            | ImageFormat::Gif
            | ImageFormat::Bmp
    ) {
        return Err(RenderError::Unsupported(format!("{format:?}")));
    }
    let orientation = exif::orientation(bytes)
        .and_then(|o| u8::try_from(o).ok())
        .and_then(Orientation::from_exif)
        .unwrap_or(Orientation::NoTransforms);
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    // Four bytes a pixel at the pixel limit, plus the scaled copy.
    limits.max_alloc = Some(MAX_PIXELS * 4 + (64 << 20));
    reader.limits(limits.clone());
    let (width, height) = reader.into_dimensions()?;
    if width.max(height) <= max_side && orientation == Orientation::NoTransforms {
        return Ok(Rendered::AsIs);
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits);
    let decoded = reader.decode()?;
    // Scaling first and turning the small result is cheaper than turning the full image, and
    // the bound is the same on both axes.
    let mut small = if width.max(height) > max_side {
        decoded.thumbnail(max_side, max_side)
    } else {
        decoded
    };
    small.apply_orientation(orientation);
    encode(&small).map(Rendered::Image)
}

/// JPEG (quality 85) for opaque images; PNG keeps an alpha channel, which JPEG cannot.
fn encode(image: &DynamicImage) -> Result<Vec<u8>, RenderError> {
    let mut out = Cursor::new(Vec::new());
    if image.color().has_alpha() {
        image.to_rgba8().write_to(&mut out, ImageFormat::Png)?;
    } else {
        let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85);
        image.to_rgb8().write_with_encoder(encoder)?;
    }
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32, alpha: bool) -> Vec<u8> {
        let image = if alpha {
            DynamicImage::ImageRgba8(image::RgbaImage::new(width, height))
        } else {
            DynamicImage::ImageRgb8(image::RgbImage::new(width, height))
        };
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    fn dimensions(rendered: Rendered) -> (u32, u32, ImageFormat) {
        let Rendered::Image(bytes) = rendered else {
            panic!("expected a rendered image");
        };
        let format = image::guess_format(&bytes).unwrap();
        let image = image::load_from_memory(&bytes).unwrap();
        (image.width(), image.height(), format)
    }

    #[test]
    fn scales_to_the_longest_side_and_keeps_alpha_as_png() {
        assert_eq!(
            dimensions(render(&png(1000, 500, false), 256).unwrap()),
            (256, 128, ImageFormat::Jpeg)
        );
        assert_eq!(
            dimensions(render(&png(400, 800, true), 256).unwrap()),
            (128, 256, ImageFormat::Png)
        );
    }

    #[test]
    fn a_small_image_is_its_own_thumbnail_and_garbage_is_refused() {
        assert!(matches!(
            render(&png(100, 80, false), 256),
            Ok(Rendered::AsIs)
        ));
        assert!(render(b"not an image at all", 256).is_err());
        assert!(Size::parse("huge").is_err());
        assert_eq!(Size::parse("thumb").unwrap().max_side(), 256);
    }
}
