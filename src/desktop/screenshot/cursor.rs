//! Draws the mouse pointer onto a capture, as `scrot -p` does: the XFixes cursor image
//! (premultiplied ARGB) composited at the pointer position minus the hotspot, clipped to
//! the screen.

use x11rb::protocol::xfixes::ConnectionExt as _;
use x11rb::rust_connection::RustConnection;

use super::Image;

/// Negotiates XFixes on `conn` (required before its requests); `false` if it is missing.
pub(super) fn init(conn: &RustConnection) -> bool {
    // A missing extension fails the request with `UnsupportedExtension`.
    conn.xfixes_query_version(4, 0)
        .ok()
        .and_then(|cookie| cookie.reply().ok())
        .is_some()
}

/// Composites the current pointer onto `image`; a failure leaves the image unchanged (a
/// screenshot without pointer is better than none).
pub(super) fn draw(conn: &RustConnection, image: &mut Image) {
    let reply = match conn.xfixes_get_cursor_image().map(|c| c.reply()) {
        Ok(Ok(reply)) => reply,
        Ok(Err(err)) => return log::debug!("no cursor image: {err}"),
        Err(err) => return log::debug!("no cursor image: {err}"),
    };
    let sprite = Sprite {
        x: i32::from(reply.x) - i32::from(reply.xhot),
        y: i32::from(reply.y) - i32::from(reply.yhot),
        width: u32::from(reply.width),
        height: u32::from(reply.height),
        argb: &reply.cursor_image,
    };
    sprite.blend_onto(image);
}

/// A premultiplied-ARGB image placed at (`x`, `y`) in screen space.
pub(super) struct Sprite<'a> {
    pub x: i32,
    pub y: i32,
    pub width: u32,
    pub height: u32,
    pub argb: &'a [u32],
}

impl Sprite<'_> {
    /// "Over" compositing of the sprite onto `image`, clipped at the edges.
    pub fn blend_onto(&self, image: &mut Image) {
        if self.argb.len() < self.width as usize * self.height as usize {
            return;
        }
        for sy in 0..self.height {
            let y = self.y + sy as i32;
            if y < 0 || y >= image.height as i32 {
                continue;
            }
            for sx in 0..self.width {
                let x = self.x + sx as i32;
                if x < 0 || x >= image.width as i32 {
                    continue;
                }
                let pixel = self.argb[(sy * self.width + sx) as usize];
                let at = (y as usize * image.width as usize + x as usize) * 3;
                blend(&mut image.pixels[at..at + 3], pixel);
            }
        }
    }
}

/// `dst = src + dst × (1 − α)` for one premultiplied ARGB pixel.
fn blend(dst: &mut [u8], argb: u32) {
    let alpha = argb >> 24;
    if alpha == 0 {
        return;
    }
    for (c, d) in dst.iter_mut().enumerate() {
        let src = (argb >> (16 - 8 * c as u32)) & 0xff;
        let under = (u32::from(*d) * (255 - alpha) + 127) / 255;
        *d = (src + under).min(255) as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaque_pixels_replace_and_transparent_pixels_keep() {
        let mut image = Image::filled(3, 1, [100, 100, 100]);
        let argb = [0xff_ff_00_00, 0x00_00_00_00, 0x80_40_00_00];
        Sprite {
            x: 0,
            y: 0,
            width: 3,
            height: 1,
            argb: &argb,
        }
        .blend_onto(&mut image);
        assert_eq!(image.pixel(0, 0), [255, 0, 0]);
        assert_eq!(image.pixel(1, 0), [100, 100, 100]);
        // Half-transparent premultiplied red over grey: 0x40 + 100 × 127/255.
        assert_eq!(image.pixel(2, 0), [64 + 50, 50, 50]);
    }

    #[test]
    fn sprite_is_clipped_at_every_edge() {
        let mut image = Image::filled(2, 2, [0, 0, 0]);
        let argb = [0xff_ff_ff_ff; 9];
        let sprite = |x, y| Sprite {
            x,
            y,
            width: 3,
            height: 3,
            argb: &argb,
        };
        sprite(-2, -2).blend_onto(&mut image);
        assert_eq!(image.pixel(0, 0), [255, 255, 255]);
        assert_eq!(image.pixel(1, 1), [0, 0, 0]);
        sprite(1, 1).blend_onto(&mut image);
        assert_eq!(image.pixel(1, 1), [255, 255, 255]);
        assert_eq!(image.pixel(1, 0), [0, 0, 0]);
    }
}
