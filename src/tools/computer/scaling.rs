//! Coordinate scaling between the model's ("API") space and the real screen (reference §4.3).
//!
//! The model sees screenshots scaled down to XGA, WXGA or FWXGA when the screen's aspect ratio
//! matches one within 0.02 and the target is smaller; its coordinates are scaled back up.
//! Rounding is Python's banker's rounding (`f64::round_ties_even`) for parity.

/// Scaling targets, checked in this order; the first with a matching aspect decides.
const TARGETS: [(u32, u32); 3] = [(1024, 768), (1280, 800), (1366, 768)];

/// The scaling of one screen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Scaler {
    width: u32,
    height: u32,
    /// The size the model sees, when it differs from the screen.
    target: Option<(u32, u32)>,
}

impl Scaler {
    pub fn new(width: u32, height: u32) -> Scaler {
        Scaler {
            width,
            height,
            target: target_for(width, height),
        }
    }

    /// The size of the screenshots the model sees (`display_width_px`/`display_height_px`).
    pub fn api_size(self) -> (u32, u32) {
        self.target.unwrap_or((self.width, self.height))
    }

    /// Model coordinates to screen coordinates. [REC] The bounds check (against the real
    /// screen, as the reference does) also applies when no scaling is active.
    pub fn to_screen(self, x: u64, y: u64) -> Result<(u32, u32), String> {
        if x > u64::from(self.width) || y > u64::from(self.height) {
            return Err(format!("Coordinates {x}, {y} are out of bounds"));
        }
        let Some((fx, fy)) = self.factors() else {
            return Ok((x as u32, y as u32));
        };
        Ok((round(x as f64 / fx), round(y as f64 / fy)))
    }

    /// Screen coordinates to model coordinates.
    pub fn to_api(self, x: u32, y: u32) -> (u32, u32) {
        match self.factors() {
            Some((fx, fy)) => (round(f64::from(x) * fx), round(f64::from(y) * fy)),
            None => (x, y),
        }
    }

    /// `target / screen` per axis, as the reference computes them.
    fn factors(self) -> Option<(f64, f64)> {
        let (tw, th) = self.target?;
        Some((
            f64::from(tw) / f64::from(self.width),
            f64::from(th) / f64::from(self.height),
        ))
    }
}

fn target_for(width: u32, height: u32) -> Option<(u32, u32)> {
    if width == 0 || height == 0 {
        return None;
    }
    let ratio = f64::from(width) / f64::from(height);
    let (tw, th) = TARGETS
        .into_iter()
        .find(|&(tw, th)| (f64::from(tw) / f64::from(th) - ratio).abs() < 0.02)?;
    (tw < width).then_some((tw, th))
}

fn round(value: f64) -> u32 {
    value.round_ties_even() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_hd_scales_to_fwxga_both_ways() {
        let s = Scaler::new(1920, 1080);
        assert_eq!(s.api_size(), (1366, 768));
        assert_eq!(s.to_screen(1366, 768), Ok((1920, 1080)));
        assert_eq!(s.to_api(1920, 1080), (1366, 768));
        assert_eq!(s.to_screen(683, 384), Ok((960, 540)));
    }

    #[test]
    fn wuxga_scales_to_wxga_both_ways() {
        let s = Scaler::new(1920, 1200);
        assert_eq!(s.api_size(), (1280, 800));
        assert_eq!(s.to_screen(1280, 800), Ok((1920, 1200)));
        assert_eq!(s.to_api(1920, 1200), (1280, 800));
    }

    #[test]
    fn unmatched_or_not_larger_screens_are_identity() {
        for (w, h) in [(4096, 2160), (1024, 768), (1280, 720)] {
            let s = Scaler::new(w, h);
            assert_eq!(s.api_size(), (w, h));
            assert_eq!(s.to_screen(u64::from(w), u64::from(h)), Ok((w, h)));
            assert_eq!(s.to_api(w, h), (w, h));
            assert_eq!(s.to_screen(100, 200), Ok((100, 200)));
        }
    }

    #[test]
    fn xga_aspect_screens_scale_to_xga() {
        let s = Scaler::new(2048, 1536);
        assert_eq!(s.api_size(), (1024, 768));
        assert_eq!(s.to_screen(512, 384), Ok((1024, 768)));
    }

    #[test]
    fn rounding_is_ties_to_even() {
        // 1920×1200 → 1280×800 is a factor 1.5: 1 → 1.5 → 2, 3 → 4.5 → 4.
        let s = Scaler::new(1920, 1200);
        assert_eq!(s.to_screen(1, 3), Ok((2, 4)));
        // 1 × (2/3) = 0.667 → 1, 3 × (2/3) = 2.0 → 2.
        assert_eq!(s.to_api(1, 3), (1, 2));
    }

    #[test]
    fn out_of_bounds_is_checked_against_the_real_screen() {
        let s = Scaler::new(1920, 1080);
        assert_eq!(
            s.to_screen(2000, 1500),
            Err("Coordinates 2000, 1500 are out of bounds".to_string())
        );
        // Inside the real screen but beyond the scaled one passes, as in the reference.
        assert!(s.to_screen(1900, 1000).is_ok());
        let unscaled = Scaler::new(1024, 768);
        assert_eq!(
            unscaled.to_screen(1025, 0),
            Err("Coordinates 1025, 0 are out of bounds".to_string())
        );
        assert_eq!(unscaled.to_screen(1024, 768), Ok((1024, 768)));
    }
}
