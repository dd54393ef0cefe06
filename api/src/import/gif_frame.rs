//! Animated GIFs are imported as their first frame: annotators draw on one still picture, and a
//! browser would animate the original under their shapes. The frame is composited on the GIF's
//! logical screen (transparent elsewhere) and re-encoded as PNG.

/// Largest screen converted (pixels); larger animated GIFs are skipped with a reason.
const MAX_PIXELS: u64 = 64 << 20;

/// `Some(png)` when `bytes` is an animated GIF (two frames or more), `None` for a still GIF.
pub fn first_frame_png(bytes: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut options = gif::DecodeOptions::new();
    options.set_color_output(gif::ColorOutput::RGBA);
    let mut decoder = options
        .read_info(bytes)
        .map_err(|e| format!("corrupt GIF: {e}"))?;
    let (width, height) = (u32::from(decoder.width()), u32::from(decoder.height()));
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(format!(
            "animated GIF of {width}x{height} is too large to convert"
        ));
    }
    let mut canvas = vec![0u8; width as usize * height as usize * 4];
    let Some(frame) = decoder
        .read_next_frame()
        .map_err(|e| format!("corrupt GIF: {e}"))?
    else {
        return Err("GIF without frames".into());
    };
    let (left, top) = (usize::from(frame.left), usize::from(frame.top));
    let frame_width = usize::from(frame.width);
    for (row, line) in frame.buffer.chunks_exact(frame_width * 4).enumerate() {
        let y = top + row;
        if y >= height as usize || left >= width as usize {
            continue;
        }
        let visible = frame_width.min(width as usize - left);
        let start = (y * width as usize + left) * 4;
        canvas[start..start + visible * 4].copy_from_slice(&line[..visible * 4]);
    }
    let animated = decoder
        .next_frame_info()
        .map_err(|e| format!("corrupt GIF: {e}"))?
        .is_some();
    if !animated {
        return Ok(None);
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
    writer
        .write_image_data(&canvas)
        .map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 4x2 GIF with `frames` frames; frame k paints every pixel with palette colour k.
    fn gif(frames: u8) -> Vec<u8> {
        let palette = [255, 0, 0, 0, 255, 0, 0, 0, 255];
        let mut out = Vec::new();
        let mut encoder = gif::Encoder::new(&mut out, 4, 2, &palette).unwrap();
        for k in 0..frames {
            let pixels = vec![k; 8];
            let frame = gif::Frame {
                width: 4,
                height: 2,
                buffer: std::borrow::Cow::Owned(pixels),
                ..gif::Frame::default()
            };
            encoder.write_frame(&frame).unwrap();
        }
        drop(encoder);
        out
    }

    #[test]
    fn animated_gifs_become_their_first_frame_and_still_ones_stay() {
        assert_eq!(first_frame_png(&gif(1)).unwrap(), None);
        let png = first_frame_png(&gif(2)).unwrap().expect("converted");
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let mut reader = decoder.read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut pixels).unwrap();
        assert_eq!((info.width, info.height), (4, 2));
        // Every pixel is the first frame's red, opaque.
        assert!(pixels.chunks_exact(4).all(|p| p == [255, 0, 0, 255]));
        assert!(first_frame_png(b"GIF89a broken").is_err());
    }
}
