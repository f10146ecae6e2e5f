//! Screenshot benchmark: capture, scale to the model's size and PNG encoding, with a bare X11
//! GetImage of the whole root window (the floor of any capture) measured in the same loop.
//!
//! `cargo run --release --example bench_screenshot -- [--display N] [--sizes 1024x768,1920x1080]
//! [--runs 30]`
//!
//! Without `--display` it starts its own desktop per size through the library's
//! [`DesktopManager`] in per-session mode and puts a few xterms full of text on it. Prints a
//! markdown section (`### Screenshot …`) on stdout: each figure is `median (min–max)` over the
//! runs, each ratio the median (min–max) of the per-run ratios to the bare GetImage of the
//! same run. With `BENCH_PIDS=<file>` the pids of the processes it starts are appended to that
//! file for the wrapper's clean-up.

mod bench_support;
#[path = "bench_support/desktop.rs"]
mod desktop_support;

use std::time::{Duration, Instant};

use bench_support::{header, record_pids, row, summary, summary_digits, verdict};
use computer_use_server::config::Config;
use computer_use_server::desktop::{DesktopManager, Display, screenshot};
use desktop_support::{Xterms, paired_ratios, parse_flags, parse_sizes, parse_value};
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{ConnectionExt, ImageFormat};
use x11rb::rust_connection::RustConnection;

/// The target: a whole screenshot action under this at 1024×768.
const TARGET_MS: f64 = 100.0;
const TARGET_SIZE: (u32, u32) = (1024, 768);

struct Options {
    display: Option<u32>,
    sizes: Vec<(u32, u32)>,
    runs: usize,
}

fn main() {
    let mut options = Options {
        display: None,
        sizes: vec![(1024, 768), (1920, 1080)],
        runs: 30,
    };
    let usage = "[--display N] [--sizes WxH[,WxH…]] [--runs N]";
    parse_flags("bench_screenshot", usage, |flag, value| {
        match flag {
            "--display" => options.display = Some(parse_value(flag, value)?),
            "--sizes" => options.sizes = parse_sizes(flag, value)?,
            "--runs" => options.runs = parse_value(flag, value)?,
            _ => return Err(format!("unknown flag {flag}")),
        }
        if options.runs == 0 {
            return Err("--runs must be positive".into());
        }
        Ok(())
    });
    println!("### Screenshot action latency (capture, scale, PNG encode)\n");
    println!(
        "{}",
        header(&[
            "measurement",
            "value (median, min–max)",
            "reference: bare X11 GetImage, same run",
            "ratio (median, min–max)",
            "target",
        ])
    );
    let result = match options.display {
        Some(num) => bench(&existing(num), options.runs),
        None => options
            .sizes
            .iter()
            .try_for_each(|&(w, h)| bench_own(w, h, options.runs)),
    };
    if let Err(why) = result {
        eprintln!("bench_screenshot: {why}");
        std::process::exit(1);
    }
    println!(
        "\n{} run(s) per size after one warm-up; desktop: Xvfb + openbox with four xterms of text; \
         scaled to the computer tool's target size, PNG as the tool sends it.\n",
        options.runs
    );
}

/// A display someone else runs (its size is read by the capture).
fn existing(display_num: u32) -> Display {
    Display {
        display_num,
        width: 0,
        height: 0,
        vnc_addr: "127.0.0.1:0".parse().expect("a socket address"),
    }
}

/// A per-session desktop of `width`×`height` from the library's manager, xterms on it.
fn bench_own(width: u32, height: u32, runs: usize) -> Result<(), String> {
    let vars = [
        ("DESKTOP_MODE", "per-session".to_string()),
        ("WIDTH", width.to_string()),
        ("HEIGHT", height.to_string()),
        ("DATABASE_URL", "sqlite://:memory:".to_string()),
    ];
    let get = |name: &str| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    };
    let config = Config::from_sources(&[], get).map_err(|e| format!("config: {e}"))?;
    let manager = DesktopManager::new(&config.desktop);
    let result = manager.for_session("bench").map_err(|e| e.to_string());
    record_pids(manager.processes(Some("bench")).iter().map(|p| p.pid));
    let result = result.and_then(|display| {
        let _xterms = Xterms::start(&display)?;
        bench(&display, runs)
    });
    manager.shutdown();
    result
}

/// Per run, in this order: bare GetImage, capture, scale, encode.
fn bench(display: &Display, runs: usize) -> Result<(), String> {
    let bare = BareCapture::connect(display.display_num)?;
    let mut times: [Vec<f64>; 5] = Default::default();
    let mut sizes = (0, 0, 0, 0);
    for _ in 0..=runs {
        let floor = bare.time()?;
        let started = Instant::now();
        let image = screenshot::capture(display).map_err(|e| format!("capture: {e}"))?;
        let captured = started.elapsed();
        let (w, h) = target(image.width, image.height);
        let scaled = screenshot::scale_to(&image, w, h);
        let resized = started.elapsed();
        let png = screenshot::encode_png(&scaled).map_err(|e| format!("encode: {e}"))?;
        let encoded = started.elapsed();
        std::hint::black_box(png);
        // The first run warms caches and connections; it is not counted.
        if sizes.0 != 0 {
            let laps = [
                floor,
                captured,
                resized - captured,
                encoded - resized,
                encoded,
            ];
            for (lap, series) in laps.into_iter().zip(&mut times) {
                series.push(lap.as_secs_f64() * 1e3);
            }
        }
        sizes = (image.width, image.height, w, h);
    }
    print_rows(sizes, &times);
    Ok(())
}

fn print_rows((iw, ih, w, h): (u32, u32, u32, u32), times: &[Vec<f64>; 5]) {
    let ms = |values: &[f64]| format!("{} ms", summary(values));
    let ratio =
        |values: &[f64]| format!("{} %", summary_digits(&paired_ratios(values, &times[0]), 0));
    let bare = ms(&times[0]);
    let scale = if (w, h) == (iw, ih) {
        format!("{iw}×{ih} scale (none needed)")
    } else {
        format!("{iw}×{ih} scale to {w}×{h}")
    };
    let target = if (iw, ih) == TARGET_SIZE {
        let met = bench_support::median(&times[4]) < TARGET_MS;
        format!("< {TARGET_MS} ms: {}", verdict(met))
    } else {
        "—".to_string()
    };
    let rows = [
        (
            format!("{iw}×{ih} capture"),
            ms(&times[1]),
            bare.as_str(),
            ratio(&times[1]),
            "—",
        ),
        (scale, ms(&times[2]), "—", "—".to_string(), "—"),
        (
            format!("{iw}×{ih} PNG encode"),
            ms(&times[3]),
            "—",
            "—".to_string(),
            "—",
        ),
        (
            format!("**{iw}×{ih} total** (capture + scale + encode)"),
            ms(&times[4]),
            bare.as_str(),
            ratio(&times[4]),
            target.as_str(),
        ),
    ];
    for (name, value, reference, ratio, target) in &rows {
        println!("{}", row(&[name, value, reference, ratio, target]));
    }
}

/// The reference's scaling target (§4.3), as the computer tool uses it.
fn target(width: u32, height: u32) -> (u32, u32) {
    let ratio = f64::from(width) / f64::from(height);
    [(1024, 768), (1280, 800), (1366, 768)]
        .into_iter()
        .find(|&(tw, th)| (f64::from(tw) / f64::from(th) - ratio).abs() < 0.02)
        .filter(|&(tw, _)| tw < width)
        .unwrap_or((width, height))
}

// ---------------------------------------------------------------- the reference

/// Its own X connection for one plain GetImage of the root window: no pointer, no conversion.
struct BareCapture {
    conn: RustConnection,
    root: u32,
    size: (u16, u16),
}

impl BareCapture {
    fn connect(display_num: u32) -> Result<BareCapture, String> {
        let (conn, screen) = x11rb::connect(Some(&format!(":{display_num}")))
            .map_err(|e| format!("X connect: {e}"))?;
        let screen = &conn.setup().roots[screen];
        let (root, size) = (
            screen.root,
            (screen.width_in_pixels, screen.height_in_pixels),
        );
        Ok(BareCapture { conn, root, size })
    }

    fn time(&self) -> Result<Duration, String> {
        let started = Instant::now();
        let (w, h) = self.size;
        let reply = self
            .conn
            .get_image(ImageFormat::Z_PIXMAP, self.root, 0, 0, w, h, !0)
            .map(|cookie| cookie.reply())
            .map_err(|e| format!("GetImage: {e}"))?
            .map_err(|e| format!("GetImage: {e}"))?;
        std::hint::black_box(reply.data);
        Ok(started.elapsed())
    }
}
