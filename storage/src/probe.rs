use imagesize::ImageType;

/// What upload validation learns from an image's header without decoding its pixels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    pub content_type: &'static str,
    pub width: u32,
    pub height: u32,
}

/// Why bytes were refused as an image.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProbeError {
    #[error("not a JPEG, PNG, WebP, GIF, BMP or TIFF image")]
    NotAnImage,
    #[error("the {0} header is truncated or corrupt")]
    Corrupt(&'static str),
    #[error("{width} x {height} pixels is above the limit of {MAX_SIDE} pixels a side and {MAX_PIXELS} pixels in all")]
    TooLarge { width: u32, height: u32 },
}

/// Largest accepted side, in pixels. Browsers cannot draw larger canvases, and refusing from the
/// header stops decompression bombs before anything decodes them.
pub const MAX_SIDE: u32 = 32_768;
/// Largest accepted pixel count (about 16 000 x 16 000 at full resolution in RGBA: 1 GiB).
pub const MAX_PIXELS: u64 = 268_435_456;

/// Identifies an image by its magic bytes and reads its dimensions from the header, as displayed
/// (EXIF orientation applied). The file name or the client's `Content-Type` are never trusted.
pub fn probe_image(bytes: &[u8]) -> Result<ImageInfo, ProbeError> {
    let kind = imagesize::image_type(bytes).map_err(|_| ProbeError::NotAnImage)?;
    let content_type = match kind {
        ImageType::Jpeg => "image/jpeg",
        ImageType::Png => "image/png",
        ImageType::Webp => "image/webp",
        ImageType::Gif => "image/gif",
        ImageType::Bmp => "image/bmp",
        ImageType::Tiff => "image/tiff",
        _ => return Err(ProbeError::NotAnImage),
    };
    let size = imagesize::blob_size(bytes).map_err(|_| ProbeError::Corrupt(content_type))?;
    let width = u32::try_from(size.width).map_err(|_| ProbeError::Corrupt(content_type))?;
    let height = u32::try_from(size.height).map_err(|_| ProbeError::Corrupt(content_type))?;
    if width == 0 || height == 0 {
        return Err(ProbeError::Corrupt(content_type));
    }
    // A PNG ends with its IEND chunk: without it the pixel data was cut off. (JPEG has no such
    // test: phones append data after the end marker.)
    if kind == ImageType::Png
        && !bytes[bytes.len().saturating_sub(64)..]
            .windows(4)
            .any(|w| w == b"IEND")
    {
        return Err(ProbeError::Corrupt(content_type));
    }
    if width > MAX_SIDE || height > MAX_SIDE || u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(ProbeError::TooLarge { width, height });
    }
    let (width, height) = if crate::exif::swaps_axes(crate::exif::orientation(bytes)) {
        (height, width)
    } else {
        (width, height)
    };
    Ok(ImageInfo {
        content_type,
        width,
        height,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal valid PNG header (signature + IHDR) for a 3x2 image.
    fn png_header() -> Vec<u8> {
        let mut b = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
        b.extend_from_slice(&13u32.to_be_bytes());
        b.extend_from_slice(b"IHDR");
        b.extend_from_slice(&3u32.to_be_bytes());
        b.extend_from_slice(&2u32.to_be_bytes());
        b.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
        b.extend_from_slice(&[0, 0, 0, 0]);
        b.extend_from_slice(b"IEND");
        b.extend_from_slice(&[0xae, 0x42, 0x60, 0x82]);
        b
    }

    #[test]
    fn reads_png_dimensions() {
        let info = probe_image(&png_header()).unwrap();
        assert_eq!(
            info,
            ImageInfo {
                content_type: "image/png",
                width: 3,
                height: 2
            }
        );
    }

    #[test]
    fn refuses_oversized_images_from_the_header() {
        let mut huge = png_header();
        huge[16..20].copy_from_slice(&60_000u32.to_be_bytes());
        huge[20..24].copy_from_slice(&60_000u32.to_be_bytes());
        assert_eq!(
            probe_image(&huge),
            Err(ProbeError::TooLarge {
                width: 60_000,
                height: 60_000
            })
        );
    }

    #[test]
    fn refuses_text_and_truncated_headers() {
        assert_eq!(
            probe_image(b"hello world, not an image"),
            Err(ProbeError::NotAnImage)
        );
        assert_eq!(probe_image(b""), Err(ProbeError::NotAnImage));
        assert!(probe_image(&png_header()[..14]).is_err());
        // Header intact, the rest (pixels and IEND) cut off.
        assert_eq!(
            probe_image(&png_header()[..33]),
            Err(ProbeError::Corrupt("image/png"))
        );
        // A JPEG start (SOI + JFIF APP0 segment) that ends before the frame header.
        let mut jpeg = vec![0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10];
        jpeg.extend_from_slice(b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0");
        assert_eq!(probe_image(&jpeg), Err(ProbeError::Corrupt("image/jpeg")));
    }
}
