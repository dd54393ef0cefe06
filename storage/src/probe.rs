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

/// Every content type [`probe_image`] gives, so every type a record can hold: the index in
/// memory (`volume/memory_index.rs`) stores an object's type as its position here (one byte).
pub(crate) const CONTENT_TYPES: [&str; 6] = [
    "image/jpeg",
    "image/png",
    "image/webp",
    "image/gif",
    "image/bmp",
    "image/tiff",
];

/// Identifies an image by its magic bytes and reads its dimensions from the header, as displayed
/// (EXIF orientation applied). The file name or the client's `Content-Type` are never trusted.
pub fn probe_image(bytes: &[u8]) -> Result<ImageInfo, ProbeError> {
    let kind = imagesize::image_type(bytes).map_err(|_| ProbeError::NotAnImage)?;
    let content_type = CONTENT_TYPES[match kind {
        ImageType::Jpeg => 0,
        ImageType::Png => 1,
        ImageType::Webp => 2,
        ImageType::Gif => 3,
        ImageType::Bmp => 4,
        ImageType::Tiff => 5,
        _ => return Err(ProbeError::NotAnImage),
    }];
    let (width, height) = match kind {
        ImageType::Bmp => bmp_size(bytes).ok_or(ProbeError::Corrupt(content_type))?,
        _ => {
            let size =
                imagesize::blob_size(bytes).map_err(|_| ProbeError::Corrupt(content_type))?;
            (
                u32::try_from(size.width).map_err(|_| ProbeError::Corrupt(content_type))?,
                u32::try_from(size.height).map_err(|_| ProbeError::Corrupt(content_type))?,
            )
        }
    };
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
    // A GIF is walked block by block to its trailer: "GIF89a" followed by HTML is no image
    // (served as image/gif, such a polyglot is a script in browsers that sniff).
    if kind == ImageType::Gif && !gif_well_formed(bytes) {
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

/// A BMP's dimensions. The height is signed (negative: rows stored top-down), which is why this
/// is not left to `imagesize`; OS/2 `BITMAPCOREHEADER`s hold unsigned 16-bit sizes.
fn bmp_size(bytes: &[u8]) -> Option<(u32, u32)> {
    let le32 = |at: usize| Some(i32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
    let le16 = |at: usize| Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?));
    match le32(14)? {
        12 => Some((u32::from(le16(18)?), u32::from(le16(20)?))),
        40.. => {
            let (width, height) = (le32(18)?, le32(22)?);
            let width = u32::try_from(width).ok()?;
            Some((width, height.unsigned_abs()))
        }
        _ => None,
    }
}

/// Whether `bytes` is a GIF whose blocks run, well formed, from the header to the trailer with
/// at least one image. Reads structure only (no LZW decoding).
fn gif_well_formed(bytes: &[u8]) -> bool {
    /// Skips data sub-blocks (a length byte, then that many bytes, until a zero length).
    fn sub_blocks(bytes: &[u8], mut at: usize) -> Option<usize> {
        loop {
            let len = usize::from(*bytes.get(at)?);
            at += 1;
            if len == 0 {
                return Some(at);
            }
            at += len;
        }
    }
    fn colour_table(packed: u8) -> usize {
        if packed & 0x80 == 0 {
            0
        } else {
            3 << ((packed & 0x07) + 1)
        }
    }
    let walk = || -> Option<bool> {
        let mut at = 13 + colour_table(*bytes.get(10)?);
        let mut images = 0;
        loop {
            match *bytes.get(at)? {
                // Extension: a label, then data sub-blocks.
                0x21 => at = sub_blocks(bytes, at + 2)?,
                // Image descriptor (10 bytes), local colour table, LZW code size, image data.
                0x2c => {
                    let packed = *bytes.get(at + 9)?;
                    at += 10 + colour_table(packed);
                    bytes.get(at)?;
                    at = sub_blocks(bytes, at + 1)?;
                    images += 1;
                }
                0x3b => return Some(images > 0),
                _ => return Some(false),
            }
        }
    };
    walk().unwrap_or(false)
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

    /// A 2x1 GIF: header, screen descriptor with a 2-colour table, one image, trailer.
    fn gif() -> Vec<u8> {
        let mut b = b"GIF89a".to_vec();
        b.extend_from_slice(&[2, 0, 1, 0, 0x80, 0, 0]);
        b.extend_from_slice(&[0, 0, 0, 255, 255, 255]);
        b.extend_from_slice(&[0x21, 0xf9, 4, 0, 0, 0, 0, 0]);
        b.extend_from_slice(&[0x2c, 0, 0, 0, 0, 2, 0, 1, 0, 0]);
        b.extend_from_slice(&[2, 2, 0x4c, 0x01, 0]);
        b.push(0x3b);
        b
    }

    #[test]
    fn gifs_are_walked_to_their_trailer() {
        assert_eq!(
            probe_image(&gif()),
            Ok(ImageInfo {
                content_type: "image/gif",
                width: 2,
                height: 1
            })
        );
        // The header of a GIF, then a page: refused.
        let mut polyglot = b"GIF89a".to_vec();
        polyglot.extend_from_slice(&[2, 0, 1, 0, 0, 0, 0]);
        polyglot.extend_from_slice(b"<html><script>alert(1)</script></html>");
        assert_eq!(
            probe_image(&polyglot),
            Err(ProbeError::Corrupt("image/gif"))
        );
        let full = gif();
        assert!(probe_image(&full[..full.len() - 1]).is_err(), "no trailer");
        let mut no_image = full[..19].to_vec();
        no_image.push(0x3b);
        assert!(probe_image(&no_image).is_err(), "no image");
    }

    /// A BMP header (file header + BITMAPINFOHEADER) with the given signed height.
    fn bmp(width: i32, height: i32) -> Vec<u8> {
        let mut b = b"BM".to_vec();
        b.extend_from_slice(&70u32.to_le_bytes());
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&54u32.to_le_bytes());
        b.extend_from_slice(&40u32.to_le_bytes());
        b.extend_from_slice(&width.to_le_bytes());
        b.extend_from_slice(&height.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&24u16.to_le_bytes());
        b.extend_from_slice(&[0; 24]);
        b.extend_from_slice(&[0; 16]);
        b
    }

    #[test]
    fn top_down_bmps_have_positive_heights() {
        for height in [4, -4] {
            let info = probe_image(&bmp(10, height)).expect("bmp");
            assert_eq!(
                (info.content_type, info.width, info.height),
                ("image/bmp", 10, 4)
            );
        }
        assert!(probe_image(&bmp(-10, 4)).is_err());
        assert!(probe_image(&bmp(10, 0)).is_err());
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
