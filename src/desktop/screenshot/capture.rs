//! Captures the root window of a display over one cached X connection per display.
//!
//! Each display gets a capture thread that owns its connection and serves requests from a
//! channel; a caller waits at most [`CAPTURE_TIMEOUT`] for the answer, so a wedged X server
//! cannot block a session (x11rb's blocking reads have no timeout of their own). A timed-out
//! thread is abandoned and the next capture starts a fresh one. A broken connection (the
//! display restarted) is replaced once per capture.

use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::Duration;

use x11rb::connection::Connection;
use x11rb::protocol::xproto::{ConnectionExt as _, ImageFormat, ImageOrder, Screen, Visualtype};
use x11rb::rust_connection::RustConnection;

use super::{Image, ScreenshotError, cursor};
use crate::desktop::Display;

/// Longest wait for one capture (connect, GetImage, cursor).
const CAPTURE_TIMEOUT: Duration = Duration::from_secs(10);

type Answer = Result<Image, ScreenshotError>;

/// Request channels of the capture threads, by display number.
fn workers() -> MutexGuard<'static, HashMap<u32, Sender<Sender<Answer>>>> {
    static WORKERS: OnceLock<Mutex<HashMap<u32, Sender<Sender<Answer>>>>> = OnceLock::new();
    WORKERS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The screen of `display` as RGB, with the mouse pointer drawn on top.
pub fn capture(display: &Display) -> Result<Image, ScreenshotError> {
    let (answer_tx, answer_rx) = mpsc::channel();
    let mut request = answer_tx;
    // A send fails only if the thread is gone; retry once with a new thread.
    for _ in 0..2 {
        let sender = worker(display.display_num);
        match sender.send(request) {
            Ok(()) => return wait(display.display_num, &answer_rx),
            Err(mpsc::SendError(back)) => {
                request = back;
                workers().remove(&display.display_num);
            }
        }
    }
    Err(ScreenshotError::Connect(
        "the capture thread could not be started".into(),
    ))
}

/// Closes the cached connection to display `display_num` (call when the display stops).
pub fn forget(display_num: u32) {
    workers().remove(&display_num);
}

fn wait(display_num: u32, answers: &Receiver<Answer>) -> Answer {
    match answers.recv_timeout(CAPTURE_TIMEOUT) {
        Ok(answer) => answer,
        Err(_) => {
            workers().remove(&display_num);
            Err(ScreenshotError::TimedOut)
        }
    }
}

/// The request channel of `display_num`'s capture thread, started if needed.
fn worker(display_num: u32) -> Sender<Sender<Answer>> {
    let mut workers = workers();
    if let Some(sender) = workers.get(&display_num) {
        return sender.clone();
    }
    let (tx, rx) = mpsc::channel::<Sender<Answer>>();
    let spawned = thread::Builder::new()
        .name(format!("screenshot-{display_num}"))
        .spawn(move || serve(display_num, rx));
    if spawned.is_ok() {
        workers.insert(display_num, tx.clone());
    }
    tx
}

/// The capture thread: answers requests until every sender is dropped.
fn serve(display_num: u32, requests: Receiver<Sender<Answer>>) {
    let mut session: Option<XSession> = None;
    for answer in requests {
        let mut result = capture_with(&mut session, display_num);
        if result.is_err() {
            // The server may have been restarted under the same number: reconnect once.
            session = None;
            result = capture_with(&mut session, display_num);
        }
        if result.is_err() {
            session = None;
        }
        let _ = answer.send(result);
    }
}

fn capture_with(session: &mut Option<XSession>, display_num: u32) -> Answer {
    if session.is_none() {
        *session = Some(XSession::connect(display_num)?);
    }
    session.as_ref().expect("connected above").capture()
}

/// One connection to a display and what capture needs to know about it.
struct XSession {
    conn: RustConnection,
    screen: usize,
    has_xfixes: bool,
}

impl XSession {
    fn connect(display_num: u32) -> Result<XSession, ScreenshotError> {
        let name = format!(":{display_num}");
        let (conn, screen) = RustConnection::connect(Some(&name))
            .map_err(|err| ScreenshotError::Connect(format!("{name}: {err}")))?;
        let has_xfixes = cursor::init(&conn);
        Ok(XSession {
            conn,
            screen,
            has_xfixes,
        })
    }

    fn root(&self) -> &Screen {
        &self.conn.setup().roots[self.screen]
    }

    fn capture(&self) -> Answer {
        let root = self.root();
        let (width, height) = (root.width_in_pixels, root.height_in_pixels);
        let reply = self
            .conn
            .get_image(ImageFormat::Z_PIXMAP, root.root, 0, 0, width, height, !0)
            .map_err(x11_error)?
            .reply()
            .map_err(x11_error)?;
        let layout = self.layout(reply.depth, reply.visual)?;
        let mut image = layout.convert(&reply.data, u32::from(width), u32::from(height))?;
        if self.has_xfixes {
            cursor::draw(&self.conn, &mut image);
        }
        Ok(image)
    }

    /// How the server lays out pixels of `depth` on `visual`.
    fn layout(&self, depth: u8, visual: u32) -> Result<Layout, ScreenshotError> {
        let setup = self.conn.setup();
        let format = setup
            .pixmap_formats
            .iter()
            .find(|f| f.depth == depth)
            .ok_or_else(|| unsupported(format!("no pixmap format for depth {depth}")))?;
        let visual = find_visual(self.root(), visual)
            .ok_or_else(|| unsupported(format!("unknown visual {visual:#x}")))?;
        Ok(Layout {
            bits_per_pixel: format.bits_per_pixel,
            scanline_pad: format.scanline_pad,
            msb_first: setup.image_byte_order == ImageOrder::MSB_FIRST,
            masks: [visual.red_mask, visual.green_mask, visual.blue_mask],
        })
    }
}

fn find_visual(screen: &Screen, id: u32) -> Option<&Visualtype> {
    screen
        .allowed_depths
        .iter()
        .flat_map(|depth| depth.visuals.iter())
        .find(|visual| visual.visual_id == id)
}

fn x11_error(err: impl std::fmt::Display) -> ScreenshotError {
    ScreenshotError::X11(err.to_string())
}

fn unsupported(why: String) -> ScreenshotError {
    ScreenshotError::UnsupportedFormat(why)
}

/// A ZPixmap layout: bits per pixel, row padding, byte order and channel masks.
#[derive(Clone, Copy, Debug)]
pub(super) struct Layout {
    pub bits_per_pixel: u8,
    pub scanline_pad: u8,
    pub msb_first: bool,
    /// Red, green, blue.
    pub masks: [u32; 3],
}

impl Layout {
    /// Converts ZPixmap `data` of a `width`×`height` image to RGB8.
    pub fn convert(&self, data: &[u8], width: u32, height: u32) -> Result<Image, ScreenshotError> {
        let bpp = usize::from(self.bits_per_pixel);
        if !matches!(bpp, 16 | 24 | 32) || self.masks.contains(&0) {
            return Err(unsupported(format!(
                "{bpp} bits per pixel with masks {:x?}",
                self.masks
            )));
        }
        let pad = usize::from(self.scanline_pad.max(8));
        let stride = (width as usize * bpp).div_ceil(pad) * pad / 8;
        if data.len() < stride * height as usize {
            return Err(ScreenshotError::X11(format!(
                "GetImage returned {} bytes for {width}x{height}",
                data.len()
            )));
        }
        let mut pixels = Vec::with_capacity(width as usize * height as usize * 3);
        for row in data.chunks_exact(stride).take(height as usize) {
            let row = &row[..width as usize * bpp / 8];
            if self.is_bgrx() {
                for p in row.chunks_exact(4) {
                    pixels.extend_from_slice(&[p[2], p[1], p[0]]);
                }
            } else {
                self.convert_row(row, bpp / 8, &mut pixels);
            }
        }
        Ok(Image {
            width,
            height,
            pixels,
        })
    }

    /// The common case: 32-bit little-endian with 8-bit channels (blue, green, red, pad).
    fn is_bgrx(&self) -> bool {
        self.bits_per_pixel == 32 && !self.msb_first && self.masks == [0xff0000, 0xff00, 0xff]
    }

    fn convert_row(&self, row: &[u8], bytes: usize, out: &mut Vec<u8>) {
        let channels = self.masks.map(Channel::from_mask);
        for p in row.chunks_exact(bytes) {
            let value = if self.msb_first {
                p.iter().fold(0u32, |v, &b| (v << 8) | u32::from(b))
            } else {
                p.iter().rev().fold(0u32, |v, &b| (v << 8) | u32::from(b))
            };
            out.extend(channels.iter().map(|c| c.extract(value)));
        }
    }
}

/// One colour channel of a pixel value: where it sits and how wide it is.
#[derive(Clone, Copy, Debug)]
struct Channel {
    shift: u32,
    max: u32,
}

impl Channel {
    fn from_mask(mask: u32) -> Channel {
        let shift = mask.trailing_zeros().min(31);
        Channel {
            shift,
            max: mask >> shift,
        }
    }

    fn extract(self, value: u32) -> u8 {
        let v = (value >> self.shift) & self.max;
        if self.max == 255 {
            v as u8
        } else {
            ((v * 255 + self.max / 2) / self.max.max(1)) as u8
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BGRX: Layout = Layout {
        bits_per_pixel: 32,
        scanline_pad: 32,
        msb_first: false,
        masks: [0xff0000, 0xff00, 0xff],
    };

    #[test]
    fn bgrx_little_endian_converts_to_rgb() {
        let data = [3, 2, 1, 0, 30, 20, 10, 0];
        let image = BGRX.convert(&data, 2, 1).unwrap();
        assert_eq!(image.pixels, [1, 2, 3, 10, 20, 30]);
    }

    #[test]
    fn big_endian_32_bit_converts_to_rgb() {
        let layout = Layout {
            msb_first: true,
            ..BGRX
        };
        let image = layout.convert(&[0, 1, 2, 3], 1, 1).unwrap();
        assert_eq!(image.pixels, [1, 2, 3]);
    }

    #[test]
    fn packed_24_bit_rows_honour_scanline_padding() {
        let layout = Layout {
            bits_per_pixel: 24,
            ..BGRX
        };
        // One pixel per row: 3 bytes of pixel plus 1 byte of padding to 32 bits.
        let data = [3, 2, 1, 0, 6, 5, 4, 0];
        let image = layout.convert(&data, 1, 2).unwrap();
        assert_eq!(image.pixels, [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn rgb565_expands_to_full_range() {
        let layout = Layout {
            bits_per_pixel: 16,
            masks: [0xf800, 0x07e0, 0x001f],
            ..BGRX
        };
        // White and pure red, little endian.
        let image = layout.convert(&[0xff, 0xff, 0x00, 0xf8], 2, 1).unwrap();
        assert_eq!(image.pixels, [255, 255, 255, 255, 0, 0]);
    }

    #[test]
    fn colormapped_and_short_data_are_errors() {
        let layout = Layout {
            bits_per_pixel: 8,
            ..BGRX
        };
        assert!(matches!(
            layout.convert(&[0; 4], 2, 2),
            Err(ScreenshotError::UnsupportedFormat(_))
        ));
        assert!(matches!(
            BGRX.convert(&[0; 4], 2, 1),
            Err(ScreenshotError::X11(_))
        ));
    }
}
