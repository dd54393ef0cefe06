//! The EXIF orientation of JPEG and TIFF images. Browsers draw images rotated by it, so the
//! width and height annotators see (and their coordinates) are the rotated ones.

/// Reads a TIFF structure's IFD0 for tag 0x0112 (Orientation).
fn tiff_orientation(tiff: &[u8]) -> Option<u16> {
    let little = match tiff.get(0..2)? {
        b"II" => true,
        b"MM" => false,
        _ => return None,
    };
    // The unsigned integer of `len` (2 or 4) bytes at `at`, in the structure's byte order.
    let uint_at = |at: usize, len: usize| -> Option<u32> {
        let b = tiff.get(at..at + len)?;
        let byte = |i: usize| u32::from(if little { b[len - 1 - i] } else { b[i] });
        Some((0..len).fold(0, |n, i| n << 8 | byte(i)))
    };
    let u16_at = |at: usize| uint_at(at, 2).map(|v| v as u16);
    if u16_at(2)? != 42 {
        return None;
    }
    let ifd = uint_at(4, 4)? as usize;
    let count = u16_at(ifd)? as usize;
    (0..count.min(512))
        .map(|i| ifd + 2 + i * 12)
        .find(|&entry| u16_at(entry) == Some(0x0112))
        .and_then(|entry| u16_at(entry + 8))
}

/// The EXIF orientation (1-8) of a JPEG or TIFF, if it has one.
pub fn orientation(bytes: &[u8]) -> Option<u16> {
    if bytes.starts_with(b"II") || bytes.starts_with(b"MM") {
        return tiff_orientation(bytes);
    }
    if !bytes.starts_with(&[0xff, 0xd8]) {
        return None;
    }
    // Walk the JPEG segments up to the start of scan, looking for APP1 "Exif\0\0".
    let mut at = 2;
    while at + 4 <= bytes.len() && bytes[at] == 0xff {
        let marker = bytes[at + 1];
        if marker == 0xda || marker == 0xd9 {
            break;
        }
        let len = u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]) as usize;
        let body = bytes.get(at + 4..at + 2 + len)?;
        if marker == 0xe1 && body.starts_with(b"Exif\0\0") {
            return tiff_orientation(&body[6..]);
        }
        at += 2 + len;
    }
    None
}

/// Orientations 5-8 turn the image by 90 degrees: width and height swap.
pub fn swaps_axes(orientation: Option<u16>) -> bool {
    matches!(orientation, Some(5..=8))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A JPEG start with an APP1 Exif segment holding one IFD0 entry: Orientation = `value`.
    fn jpeg_with_orientation(value: u16, little: bool) -> Vec<u8> {
        let mut tiff = Vec::new();
        let w16 = |v: u16| {
            if little {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            }
        };
        let w32 = |v: u32| {
            if little {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            }
        };
        tiff.extend_from_slice(if little { b"II" } else { b"MM" });
        tiff.extend_from_slice(&w16(42));
        tiff.extend_from_slice(&w32(8));
        tiff.extend_from_slice(&w16(1));
        tiff.extend_from_slice(&w16(0x0112));
        tiff.extend_from_slice(&w16(3));
        tiff.extend_from_slice(&w32(1));
        tiff.extend_from_slice(&w16(value));
        tiff.extend_from_slice(&[0, 0]);
        tiff.extend_from_slice(&w32(0));
        let mut jpeg = vec![0xff, 0xd8, 0xff, 0xe1];
        let len = (2 + 6 + tiff.len()) as u16;
        jpeg.extend_from_slice(&len.to_be_bytes());
        jpeg.extend_from_slice(b"Exif\0\0");
        jpeg.extend_from_slice(&tiff);
        jpeg.extend_from_slice(&[0xff, 0xda]);
        jpeg
    }

    #[test]
    fn reads_orientation_in_both_byte_orders() {
        assert_eq!(orientation(&jpeg_with_orientation(6, true)), Some(6));
        assert_eq!(orientation(&jpeg_with_orientation(8, false)), Some(8));
        assert!(swaps_axes(Some(6)) && !swaps_axes(Some(3)) && !swaps_axes(None));
    }

    #[test]
    fn survives_garbage() {
        assert_eq!(orientation(b"\xff\xd8\xff\xe1\xff\xff"), None);
        assert_eq!(orientation(b"MM\0*\xff\xff\xff\xff"), None);
        assert_eq!(orientation(b"plain text"), None);
    }
}
