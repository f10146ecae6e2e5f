//! Area-averaging (box filter) resampling: every output pixel is the mean of the source area
//! it covers, weighted by overlap. Separable: a horizontal pass into an intermediate image,
//! then a vertical pass, both in fixed point.

use super::Image;

/// Fixed-point precision of the weights (their sum per output pixel).
const ONE: u32 = 1 << 14;

/// The source pixels contributing to one output pixel and their weights (summing to [`ONE`]).
struct Taps {
    start: usize,
    weights: Vec<u32>,
}

/// `image` resampled to exactly `width`×`height` (aspect not kept). An empty target gives an
/// empty image; an identical size gives a copy.
pub fn scale_to(image: &Image, width: u32, height: u32) -> Image {
    if (width, height) == (image.width, image.height) {
        return image.clone();
    }
    if width == 0 || height == 0 || image.width == 0 || image.height == 0 {
        return Image {
            width: 0,
            height: 0,
            pixels: Vec::new(),
        };
    }
    let columns = taps(image.width, width);
    let rows = taps(image.height, height);
    let narrow = horizontal(image, width, &columns);
    vertical(&narrow, height, &rows)
}

/// For each of `to` output positions, the overlapping source positions among `from`.
fn taps(from: u32, to: u32) -> Vec<Taps> {
    let step = f64::from(from) / f64::from(to);
    (0..to)
        .map(|i| {
            let lo = f64::from(i) * step;
            let hi = (f64::from(i + 1) * step).min(f64::from(from));
            let start = lo.floor() as usize;
            let end = (hi.ceil() as usize).max(start + 1);
            // Weights from the rounded cumulative coverage, so they sum to exactly ONE.
            let covered = |j: usize| {
                let upto = (hi.min(j as f64 + 1.0) - lo) / (hi - lo);
                (upto.clamp(0.0, 1.0) * f64::from(ONE)).round() as u32
            };
            let weights = (start..end)
                .map(|j| {
                    let before = if j == start { 0 } else { covered(j - 1) };
                    let upto = if j + 1 == end { ONE } else { covered(j) };
                    upto - before
                })
                .collect();
            Taps { start, weights }
        })
        .collect()
}

fn horizontal(image: &Image, width: u32, columns: &[Taps]) -> Image {
    let src_stride = image.width as usize * 3;
    let mut pixels = Vec::with_capacity(width as usize * image.height as usize * 3);
    for row in image.pixels.chunks_exact(src_stride) {
        for tap in columns {
            let mut acc = [ONE / 2; 3];
            for (k, &w) in tap.weights.iter().enumerate() {
                let p = &row[(tap.start + k) * 3..(tap.start + k) * 3 + 3];
                for c in 0..3 {
                    acc[c] += u32::from(p[c]) * w;
                }
            }
            pixels.extend(acc.iter().map(|&v| (v / ONE).min(255) as u8));
        }
    }
    Image {
        width,
        height: image.height,
        pixels,
    }
}

fn vertical(image: &Image, height: u32, rows: &[Taps]) -> Image {
    let stride = image.width as usize * 3;
    let mut pixels = Vec::with_capacity(stride * height as usize);
    let mut acc = vec![0u32; stride];
    for tap in rows {
        acc.fill(ONE / 2);
        for (k, &w) in tap.weights.iter().enumerate() {
            let row = &image.pixels[(tap.start + k) * stride..(tap.start + k + 1) * stride];
            for (a, &p) in acc.iter_mut().zip(row) {
                *a += u32::from(p) * w;
            }
        }
        pixels.extend(acc.iter().map(|&v| (v / ONE).min(255) as u8));
    }
    Image {
        width: image.width,
        height,
        pixels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn uniform_image_stays_uniform_at_every_target_size() {
        let image = Image::filled(1920, 1080, [10, 200, 77]);
        for (w, h) in [(1366, 768), (1280, 800), (1024, 768), (7, 3), (2000, 1200)] {
            let scaled = scale_to(&image, w, h);
            assert_eq!((scaled.width, scaled.height), (w, h));
            let bad = scaled.pixels.chunks(3).position(|p| p != [10, 200, 77]);
            assert_eq!(
                bad,
                None,
                "{w}x{h} {:?}",
                bad.map(|i| &scaled.pixels[i * 3..i * 3 + 3])
            );
        }
    }

    #[test]
    fn halving_averages_each_two_by_two_block() {
        let mut image = Image::filled(4, 2, [0, 0, 0]);
        // Top-left block: one white pixel out of four.
        image.pixels[..3].copy_from_slice(&[255, 255, 255]);
        let scaled = scale_to(&image, 2, 1);
        assert_eq!(scaled.pixel(0, 0), [64, 64, 64]);
        assert_eq!(scaled.pixel(1, 0), [0, 0, 0]);
    }

    #[test]
    fn fractional_ratio_weights_by_overlap() {
        // 3 → 2: output 0 covers source 0 fully and half of source 1.
        let image = Image {
            width: 3,
            height: 1,
            pixels: vec![0, 0, 0, 90, 90, 90, 180, 180, 180],
        };
        let scaled = scale_to(&image, 2, 1);
        assert_eq!(scaled.pixel(0, 0), [30, 30, 30]);
        assert_eq!(scaled.pixel(1, 0), [150, 150, 150]);
    }

    #[test]
    fn same_size_is_a_copy_and_empty_target_is_empty() {
        let image = Image::filled(5, 4, [1, 2, 3]);
        assert_eq!(scale_to(&image, 5, 4), image);
        assert_eq!(scale_to(&image, 0, 4).pixels.len(), 0);
    }

    #[test]
    fn full_hd_to_fwxga_is_fast_enough() {
        let image = Image::filled(1920, 1080, [1, 2, 3]);
        let started = Instant::now();
        let scaled = scale_to(&image, 1366, 768);
        let took = started.elapsed();
        assert_eq!((scaled.width, scaled.height), (1366, 768));
        // Generous for debug builds; release takes a few milliseconds.
        assert!(took.as_secs() < 2, "scaling took {took:?}");
    }
}
