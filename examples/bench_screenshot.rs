//! Screenshot benchmark: capture, scale to the model's size and PNG encoding, with a bare X11
//! GetImage of the whole root window (the floor of any capture) measured in the same loop.
//!
//! `cargo run --release --example bench_screenshot -- [--display N] [--sizes 1024x768,1920x1080]
//! [--runs 30]`
//!
//! Without `--display` it starts its own desktop per size through the library's
//! [`DesktopManager`] in per-session mode and puts a few xterms full of text on it. Prints
//! markdown table rows, each `median (min–max)` over the runs. With `BENCH_PIDS=<file>` the
//! pids of the processes it starts are appended to that file for the wrapper's clean-up.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use computer_use_server::config::Config;
use computer_use_server::desktop::{DesktopManager, Display, screenshot};
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{ConnectionExt, ImageFormat};
use x11rb::rust_connection::RustConnection;

struct Options {
    display: Option<u32>,
    sizes: Vec<(u32, u32)>,
    runs: usize,
}

fn main() {
    let options = parse_args().unwrap_or_else(|why| {
        eprintln!("bench_screenshot: {why}");
        eprintln!("usage: bench_screenshot [--display N] [--sizes WxH[,WxH…]] [--runs N]");
        std::process::exit(2)
    });
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
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        display: None,
        sizes: vec![(1024, 768), (1920, 1080)],
        runs: 30,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} wants a value"))?;
        let bad = || format!("bad value for {flag}: {value}");
        match flag.as_str() {
            "--display" => options.display = Some(value.parse().map_err(|_| bad())?),
            "--sizes" => options.sizes = parse_sizes(&value).ok_or_else(bad)?,
            "--runs" => options.runs = value.parse().map_err(|_| bad())?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if options.runs == 0 {
        return Err("--runs must be positive".into());
    }
    Ok(options)
}

fn parse_sizes(value: &str) -> Option<Vec<(u32, u32)>> {
    value
        .split(',')
        .map(|size| {
            let (w, h) = size.split_once('x')?;
            Some((w.parse().ok()?, h.parse().ok()?))
        })
        .collect()
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
    let name = format!("screenshot {iw}×{ih}");
    let ratio = |a: &[f64], b: &[f64]| -> Vec<f64> {
        a.iter().zip(b).map(|(a, b)| a / b * 100.0).collect()
    };
    println!(
        "| {name} capture | {} ms | bare X11 GetImage {} ms | {} % |",
        summary(&times[1]),
        summary(&times[0]),
        summary_digits(&ratio(&times[1], &times[0]), 0)
    );
    println!(
        "| {name} scale to {w}×{h} | {} ms | — | — |",
        summary(&times[2])
    );
    println!("| {name} PNG encode | {} ms | — | — |", summary(&times[3]));
    println!(
        "| {name} total (capture+scale+encode) | {} ms | bare X11 GetImage {} ms | {} % |",
        summary(&times[4]),
        summary(&times[0]),
        summary_digits(&ratio(&times[4], &times[0]), 0)
    );
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

// ---------------------------------------------------------------- statistics

fn summary(values: &[f64]) -> String {
    let digits = if median(values) >= 10.0 { 1 } else { 2 };
    summary_digits(values, digits)
}

fn summary_digits(values: &[f64], digits: usize) -> String {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!(
        "{:.digits$} ({min:.digits$}–{max:.digits$})",
        median(values)
    )
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

// ---------------------------------------------------------------- screen content

/// A few xterms full of text (held open after their command), killed on drop.
struct Xterms(Vec<Child>);

impl Xterms {
    fn start(display: &Display) -> Result<Xterms, String> {
        let mut xterms = Xterms(Vec::new());
        for (x, y) in [(0, 0), (960, 0), (0, 540), (960, 540)] {
            let xterm = Command::new("xterm")
                .env("DISPLAY", display.name())
                .args(["-hold", "-geometry", &format!("158x40+{x}+{y}")])
                .args(["-e", "ls", "-la", "/usr/bin"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("xterm: {e}"))?;
            record_pids([xterm.id()]);
            xterms.0.push(xterm);
        }
        wait_for_windows(display, xterms.0.len())?;
        Ok(xterms)
    }
}

impl Drop for Xterms {
    fn drop(&mut self) {
        for xterm in &mut self.0 {
            let _ = xterm.kill();
            let _ = xterm.wait();
        }
    }
}

/// Waits (bounded) until `count` xterm windows are mapped, then lets them draw their text.
fn wait_for_windows(display: &Display, count: usize) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = Command::new("xdotool")
            .env("DISPLAY", display.name())
            .args(["search", "--onlyvisible", "--class", "xterm"])
            .output()
            .map_err(|e| format!("xdotool: {e}"))?;
        if String::from_utf8_lossy(&found.stdout).lines().count() >= count {
            break;
        }
        if Instant::now() > deadline {
            return Err("the xterms did not appear".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Mapped is not drawn: `ls` output is short, half a second is plenty.
    std::thread::sleep(Duration::from_millis(500));
    Ok(())
}

/// Appends pids to `$BENCH_PIDS` (if set) for the wrapper script's clean-up.
fn record_pids(pids: impl IntoIterator<Item = u32>) {
    let Some(path) = std::env::var_os("BENCH_PIDS") else {
        return;
    };
    let lines: String = pids.into_iter().map(|pid| format!("{pid}\n")).collect();
    let file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path);
    if let Err(err) = file.and_then(|mut f| f.write_all(lines.as_bytes())) {
        eprintln!("bench_screenshot: cannot record pids: {err}");
    }
}
