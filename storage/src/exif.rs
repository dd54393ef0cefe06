//! The EXIF orientation of JPEG and TIFF images. Browsers draw images rotated by it, so the
//! width and height annotators see (and their coordinates) are the rotated ones.

/// Reads a TIFF structure's IFD0 for tag 0x0112 (Orientation): its value and the offset of
/// the value's two bytes in `tiff`.
fn tiff_orientation(tiff: &[u8]) -> Option<(u16, usize)> {
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
        .and_then(|entry| Some((u16_at(entry + 8)?, entry + 8)))
}

/// The EXIF orientation (1-8) of a JPEG or TIFF, if it has one.
pub fn orientation(bytes: &[u8]) -> Option<u16> {
    orientation_at(bytes).map(|(value, _)| value)
}

/// Sets the EXIF orientation to 1 (as stored) in place, keeping every other byte: exports
/// write coordinates in the stored pixel frame, and a tag left behind would make EXIF-aware
/// readers turn the pixels away from them. Returns whether there was a tag to change.
pub fn clear_orientation(bytes: &mut [u8]) -> bool {
    let Some((_, at)) = orientation_at(bytes) else {
        return false;
    };
    let little = bytes[tiff_start(bytes).unwrap_or(0)] == b'I';
    let one: [u8; 2] = if little {
        1u16.to_le_bytes()
    } else {
        1u16.to_be_bytes()
    };
    bytes[at..at + 2].copy_from_slice(&one);
    true
}

/// Where the TIFF structure holding the EXIF tags starts: at 0 in a TIFF, after APP1's
/// `Exif\0\0` in a JPEG.
fn tiff_start(bytes: &[u8]) -> Option<usize> {
    if bytes.starts_with(b"II") || bytes.starts_with(b"MM") {
        return Some(0);
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
            return Some(at + 10);
        }
        at += 2 + len;
    }
    None
}

/// The orientation and the offset of its value in `bytes`.
fn orientation_at(bytes: &[u8]) -> Option<(u16, usize)> {
    let start = tiff_start(bytes)?;
    let (value, at) = tiff_orientation(&bytes[start..])?;
    Some((value, start + at))
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
    fn clearing_sets_orientation_one_and_keeps_the_rest() {
        for little in [true, false] {
            let mut jpeg = jpeg_with_orientation(6, little);
            let before = jpeg.clone();
            assert!(clear_orientation(&mut jpeg));
            assert_eq!(orientation(&jpeg), Some(1));
            assert_eq!(jpeg.len(), before.len());
            let changed = jpeg.iter().zip(&before).filter(|(a, b)| a != b).count();
            assert_eq!(changed, 1);
        }
        assert!(!clear_orientation(&mut b"plain text".to_vec()));
    }

    #[test]
    fn survives_garbage() {
        assert_eq!(orientation(b"\xff\xd8\xff\xe1\xff\xff"), None);
        assert_eq!(orientation(b"MM\0*\xff\xff\xff\xff"), None);
        assert_eq!(orientation(b"plain text"), None);
    }
}
