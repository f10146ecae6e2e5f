//! In-process screenshots (reference §4.2, without scrot/convert): capture the root window of
//! an X display with the pointer drawn on top, scale it, crop it and encode it as PNG.
//!
//! - `screenshot/capture.rs`: one cached X connection per display, GetImage and pixel formats.
//! - `screenshot/cursor.rs`: the XFixes pointer image blended onto the capture (`scrot -p`).
//! - `screenshot/resize.rs`: area-averaging (box filter) resampling.

mod capture;
mod cursor;
mod resize;

use std::fmt;

pub use self::capture::{capture, forget};
pub use self::resize::scale_to;

/// An RGB8 image, rows top to bottom, no padding.
#[derive(Clone, PartialEq, Eq)]
pub struct Image {
    pub width: u32,
    pub height: u32,
    /// `width * height * 3` bytes.
    pub pixels: Vec<u8>,
}

impl Image {
    /// A `width`×`height` image filled with one colour.
    pub fn filled(width: u32, height: u32, rgb: [u8; 3]) -> Image {
        let pixels = rgb.repeat(width as usize * height as usize);
        Image {
            width,
            height,
            pixels,
        }
    }

    /// The pixel at (`x`, `y`); panics outside the image.
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]]
    }
}

impl fmt::Debug for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Image({}x{})", self.width, self.height)
    }
}

/// What can go wrong taking a screenshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScreenshotError {
    /// The X server could not be reached (not running, refused, bad display name).
    Connect(String),
    /// The X connection failed or the server answered with an error.
    X11(String),
    /// The server's pixel format is one we cannot convert (e.g. an 8-bit colormapped screen).
    UnsupportedFormat(String),
    /// The X server did not answer within the capture timeout.
    TimedOut,
    /// The PNG encoder refused the image (an empty image).
    Encode(String),
}

impl fmt::Display for ScreenshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScreenshotError::Connect(why) => write!(f, "cannot connect to the X server: {why}"),
            ScreenshotError::X11(why) => write!(f, "X11 error: {why}"),
            ScreenshotError::UnsupportedFormat(why) => {
                write!(f, "unsupported pixel format: {why}")
            }
            ScreenshotError::TimedOut => f.write_str("the X server did not answer in time"),
            ScreenshotError::Encode(why) => write!(f, "cannot encode PNG: {why}"),
        }
    }
}

impl std::error::Error for ScreenshotError {}

/// The part of `image` at (`x`, `y`) of size `width`×`height`, clipped to the image (so the
/// result may be smaller, or empty).
pub fn crop(image: &Image, x: u32, y: u32, width: u32, height: u32) -> Image {
    let x0 = x.min(image.width) as usize;
    let y0 = y.min(image.height) as usize;
    let x1 = x.saturating_add(width).min(image.width) as usize;
    let y1 = y.saturating_add(height).min(image.height) as usize;
    let stride = image.width as usize * 3;
    let mut pixels = Vec::with_capacity((x1 - x0) * (y1 - y0) * 3);
    for row in y0..y1 {
        pixels.extend_from_slice(&image.pixels[row * stride + x0 * 3..row * stride + x1 * 3]);
    }
    Image {
        width: (x1 - x0) as u32,
        height: (y1 - y0) as u32,
        pixels,
    }
}

/// Encodes `image` as an RGB8 PNG with a fast compression setting (screenshots are sent once).
pub fn encode_png(image: &Image) -> Result<Vec<u8>, ScreenshotError> {
    let mut out = Vec::with_capacity(image.pixels.len() / 4);
    let mut encoder = png::Encoder::new(&mut out, image.width, image.height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    let encode_error = |err: png::EncodingError| ScreenshotError::Encode(err.to_string());
    let mut writer = encoder.write_header().map_err(encode_error)?;
    writer
        .write_image_data(&image.pixels)
        .map_err(encode_error)?;
    writer.finish().map_err(encode_error)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(width: u32, height: u32) -> Image {
        let mut pixels = Vec::new();
        for y in 0..height {
            for x in 0..width {
                pixels.extend_from_slice(&[x as u8, y as u8, (x + y) as u8]);
            }
        }
        Image {
            width,
            height,
            pixels,
        }
    }

    fn decode(bytes: &[u8]) -> Image {
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut pixels).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb);
        pixels.truncate(info.buffer_size());
        Image {
            width: info.width,
            height: info.height,
            pixels,
        }
    }

    #[test]
    fn png_round_trip_keeps_every_pixel() {
        let image = gradient(37, 21);
        let bytes = encode_png(&image).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(decode(&bytes), image);
    }

    #[test]
    fn crop_takes_the_requested_rectangle() {
        let image = gradient(10, 8);
        let part = crop(&image, 2, 3, 4, 2);
        assert_eq!((part.width, part.height), (4, 2));
        assert_eq!(part.pixel(0, 0), image.pixel(2, 3));
        assert_eq!(part.pixel(3, 1), image.pixel(5, 4));
    }

    #[test]
    fn crop_is_clipped_to_the_image() {
        let image = gradient(10, 8);
        let part = crop(&image, 7, 6, 100, 100);
        assert_eq!((part.width, part.height), (3, 2));
        assert_eq!(part.pixel(2, 1), image.pixel(9, 7));
        let empty = crop(&image, 20, 20, 5, 5);
        assert_eq!((empty.width, empty.height, empty.pixels.len()), (0, 0, 0));
        assert!(matches!(
            encode_png(&empty),
            Err(ScreenshotError::Encode(_))
        ));
    }
}
