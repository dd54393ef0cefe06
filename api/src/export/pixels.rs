//! What exports need to know of an image's pixels beyond its size: its colour channels (VOC's
//! `<depth>`) and its EXIF orientation, and the move of shapes from the frame annotators see
//! (orientation applied, as Tessera stores coordinates) to the stored pixel frame exports write.
//!
//! Why the stored frame: most training readers ignore EXIF (PIL's `.size` and pixel data,
//! OpenCV's `IMREAD_UNCHANGED`, datumaro), so an export whose coordinates are in the displayed
//! frame puts every box of a turned photo in the wrong place for them. Exports keep the
//! original pixels (no re-encoding), set the orientation tag to 1 and write sizes and
//! coordinates in the stored frame, so EXIF-aware and EXIF-blind readers see the same thing.

use tessera_domain::annotation_sets::ShapeKind;
use tessera_raft::storage::exif;

use tessera_formats::export::shapes::Shape;

/// Bytes read from the start of an image when the export does not include it: enough for
/// the headers (the EXIF block of a JPEG is at most 64 KiB).
pub const HEAD: u64 = 128 * 1024;

/// Colour channels from the image header: 1 grey, 2 grey and alpha, 3 colour, 4 colour and
/// alpha (or CMYK); 3 when the header does not say.
pub fn channels(bytes: &[u8]) -> u8 {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        // IHDR's colour type: 0 grey, 2 RGB, 3 palette, 4 grey + alpha, 6 RGBA.
        return match bytes.get(25) {
            Some(0) => 1,
            Some(4) => 2,
            Some(6) => 4,
            _ => 3,
        };
    }
    if bytes.starts_with(&[0xff, 0xd8]) {
        return jpeg_components(bytes).unwrap_or(3);
    }
    if bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        // VP8X's flags carry alpha (bit 4); VP8L's header has an alpha hint bit.
        return match bytes.get(12..16) {
            Some(b"VP8X") if bytes.get(20).is_some_and(|f| f & 0x10 != 0) => 4,
            Some(b"VP8L") if bytes.get(24).is_some_and(|b| b & 0x10 != 0) => 4,
            _ => 3,
        };
    }
    if bytes.starts_with(b"BM") {
        let bits = bytes.get(28..30).map(|b| u16::from_le_bytes([b[0], b[1]]));
        return if bits == Some(32) { 4 } else { 3 };
    }
    3
}

/// The component count of a JPEG's start-of-frame segment.
fn jpeg_components(bytes: &[u8]) -> Option<u8> {
    let mut at = 2;
    while at + 4 <= bytes.len() && bytes[at] == 0xff {
        let marker = bytes[at + 1];
        let len = u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]) as usize;
        // SOF0-SOF15 except DHT (c4), JPG (c8) and DAC (cc).
        if (0xc0..=0xcf).contains(&marker) && ![0xc4, 0xc8, 0xcc].contains(&marker) {
            return bytes.get(at + 9).copied();
        }
        if marker == 0xda || marker == 0xd9 {
            return None;
        }
        at += 2 + len;
    }
    None
}

/// The EXIF orientation when it is not the identity.
pub fn orientation(bytes: &[u8]) -> Option<u16> {
    exif::orientation(bytes).filter(|o| (2..=8).contains(o))
}

/// The stored frame's size for an image displayed as `width` x `height`.
pub fn stored_size(orientation: u16, width: u32, height: u32) -> (u32, u32) {
    if exif::swaps_axes(Some(orientation)) {
        (height, width)
    } else {
        (width, height)
    }
}

/// A point of the displayed frame (`width` x `height`) in the stored frame.
fn to_stored(orientation: u16, width: u32, height: u32, [x, y]: [f64; 2]) -> [f64; 2] {
    let (w, h) = (f64::from(width), f64::from(height));
    match orientation {
        2 => [w - x, y],
        3 => [w - x, h - y],
        4 => [x, h - y],
        5 => [y, x],
        6 => [y, w - x],
        7 => [h - y, w - x],
        8 => [h - y, x],
        _ => [x, y],
    }
}

/// A point of the stored frame in the displayed frame (`width` x `height`): the inverse of
/// [`to_stored`], which is the displayed-to-stored map of the inverse orientation (6 and 8 undo
/// each other, the others undo themselves) over the stored frame.
fn to_displayed(orientation: u16, width: u32, height: u32, point: [f64; 2]) -> [f64; 2] {
    let inverse = match orientation {
        6 => 8,
        8 => 6,
        o => o,
    };
    let (stored_width, stored_height) = stored_size(orientation, width, height);
    to_stored(inverse, stored_width, stored_height, point)
}

/// `shape` (drawn on the displayed `width` x `height` image) in the stored frame.
pub fn shape_to_stored(orientation: u16, width: u32, height: u32, shape: &Shape) -> Shape {
    map_shape(shape, |p| to_stored(orientation, width, height, p))
}

/// `shape` (read from a file in the stored frame) on the displayed `width` x `height` image:
/// annotation imports read files in the frame exports write.
pub fn shape_to_displayed(orientation: u16, width: u32, height: u32, shape: &Shape) -> Shape {
    map_shape(shape, |p| to_displayed(orientation, width, height, p))
}

/// `shape` with every point moved by `map` (a turn or mirror of the image). Rectangles stay
/// axis-aligned; a rotated rectangle keeps its size and gets the angle its turned first side
/// has.
fn map_shape(shape: &Shape, map: impl Fn([f64; 2]) -> [f64; 2]) -> Shape {
    let mut out = shape.clone();
    match shape.kind {
        ShapeKind::RotatedRectangle => {
            let Some(corners) = shape.rotated_corners() else {
                return out;
            };
            let c: Vec<[f64; 2]> = corners.iter().map(|p| map(*p)).collect();
            let (cx, cy) = ((c[0][0] + c[2][0]) / 2.0, (c[0][1] + c[2][1]) / 2.0);
            let w = (c[1][0] - c[0][0]).hypot(c[1][1] - c[0][1]);
            let h = (c[2][0] - c[1][0]).hypot(c[2][1] - c[1][1]);
            let angle = (c[1][1] - c[0][1])
                .atan2(c[1][0] - c[0][0])
                .to_degrees()
                .rem_euclid(360.0);
            // Rounding can give exactly 360.
            out.angle = Some(if angle >= 360.0 { 0.0 } else { angle });
            out.points = vec![[cx - w / 2.0, cy - h / 2.0], [cx + w / 2.0, cy + h / 2.0]];
        }
        ShapeKind::Rectangle => {
            let mapped: Vec<[f64; 2]> = shape.points.iter().map(|p| map(*p)).collect();
            if let Some((x0, y0, x1, y1)) = super::shapes::bounds(&mapped) {
                out.points = vec![[x0, y0], [x1, y1]];
            }
        }
        _ => out.points = shape.points.iter().map(|p| map(*p)).collect(),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_orientation_maps_the_displayed_corners_onto_the_stored_ones() {
        // Stored 40 x 30; displayed 30 x 40 for 5-8. The displayed top-left corner is the
        // stored corner EXIF says it shows.
        let cases = [
            (2, (40, 30), [40.0, 0.0]),
            (3, (40, 30), [40.0, 30.0]),
            (4, (40, 30), [0.0, 30.0]),
            (5, (30, 40), [0.0, 0.0]),
            (6, (30, 40), [0.0, 30.0]),
            (7, (30, 40), [40.0, 30.0]),
            (8, (30, 40), [40.0, 0.0]),
        ];
        for (o, (w, h), corner) in cases {
            assert_eq!(to_stored(o, w, h, [0.0, 0.0]), corner, "orientation {o}");
            assert_eq!(stored_size(o, w, h), (40, 30), "orientation {o}");
            let p = [3.0, 7.0];
            assert_eq!(
                to_displayed(o, w, h, to_stored(o, w, h, p)),
                p,
                "orientation {o}"
            );
        }
    }

    #[test]
    fn rotated_rectangles_keep_their_size_and_turn_with_the_image() {
        let mut s = Shape::new(
            "x",
            ShapeKind::RotatedRectangle,
            vec![[2.0, 4.0], [12.0, 8.0]],
        );
        s.angle = Some(30.0);
        let t = shape_to_stored(6, 30, 40, &s);
        let before = s.rotated_corners().unwrap();
        let after = t.rotated_corners().unwrap();
        for p in before.iter().map(|p| to_stored(6, 30, 40, *p)) {
            let near = after
                .iter()
                .any(|q| (q[0] - p[0]).abs() < 1e-9 && (q[1] - p[1]).abs() < 1e-9);
            assert!(near, "{p:?} not among {after:?}");
        }
    }

    #[test]
    fn channels_from_headers() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08".to_vec();
        for (colour, want) in [(0u8, 1u8), (2, 3), (4, 2), (6, 4)] {
            png.truncate(25);
            png.push(colour);
            assert_eq!(channels(&png), want);
        }
        let grey_jpeg = [0xff, 0xd8, 0xff, 0xc0, 0, 11, 8, 0, 1, 0, 1, 1, 1, 0x11, 0];
        assert_eq!(channels(&grey_jpeg), 1);
    }
}
