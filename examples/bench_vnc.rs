//! VNC proxy benchmark: full-frame throughput and small-update round trips through
//! `WS /ws/vnc`, each against a direct TCP connection to the same x11vnc in the same run.
//!
//! `cargo run --release --example bench_vnc -- [--sizes 1024x768,1920x1080] [--runs 5]
//! [--seconds 0.8] [--pings 200] [--x11vnc "-defer 0"]`
//!
//! The server runs in this process on 127.0.0.1:0 in shared mode and starts its own Xvfb and
//! x11vnc; a few xterms full of text make the frames non-empty. Our RFB 3.8 client asks for
//! 32 bpp true colour and the Raw encoding only, so every update carries the same large,
//! comparable bytes whichever way it travels. Direct and proxied runs alternate (the order
//! flips every run) and each figure is the median of the runs with their min–max; the ratio
//! is the median of the per-run proxy/direct ratios. Prints a markdown section (`### VNC
//! proxy …`) with its table on stdout.
//! With `BENCH_PIDS=<file>`, the pids of every process it starts are appended to that file so
//! that a wrapper script can stop them if this process is killed.

mod bench_support;
#[path = "bench_support/desktop.rs"]
mod desktop_support;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bench_support::{header, median, p50_p99, record_pids, row, summary, summary_digits};
use computer_use_server::app::App;
use computer_use_server::config::Config;
use computer_use_server::desktop::Display;
use computer_use_server::http::ServerHandle;
use desktop_support::{
    START_TIMEOUT, Xterms, paired_ratios, parse_flags, parse_sizes, parse_value, spawn_recorded,
};
use tungstenite::client::IntoClientRequest;
use tungstenite::{Bytes, Message, WebSocket};

/// Socket reads and writes that take longer mean something is wedged: fail, do not hang.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// The region of the round-trip probe (16×16 at 32 bpp: 1 KiB of pixels).
const PROBE: u16 = 16;
/// The target: proxied throughput at least this share of direct.
const TARGET_PERCENT: f64 = 70.0;

struct Options {
    sizes: Vec<(u32, u32)>,
    runs: usize,
    /// How long each throughput measurement lasts (at least [`MIN_UPDATES`] updates).
    seconds: f64,
    /// Round trips per latency measurement.
    pings: usize,
    /// Extra x11vnc flags (e.g. `-defer 0`): then this program starts Xvfb and x11vnc itself
    /// (with the server's flags plus these) and the server adopts them; else the server's
    /// desktop manager starts them.
    x11vnc_extra: Option<String>,
}

const MIN_UPDATES: usize = 3;

fn main() {
    let mut options = Options {
        sizes: vec![(1024, 768), (1920, 1080)],
        runs: 5,
        seconds: 0.8,
        pings: 200,
        x11vnc_extra: None,
    };
    let usage = "[--sizes WxH[,WxH…]] [--runs N] [--seconds S] [--pings N] [--x11vnc FLAGS]";
    parse_flags("bench_vnc", usage, |flag, value| {
        match flag {
            "--sizes" => options.sizes = parse_sizes(flag, value)?,
            "--runs" => options.runs = parse_value(flag, value)?,
            "--seconds" => options.seconds = parse_value(flag, value)?,
            "--pings" => options.pings = parse_value(flag, value)?,
            "--x11vnc" => options.x11vnc_extra = Some(value.to_string()),
            _ => return Err(format!("unknown flag {flag}")),
        }
        if options.runs == 0 || options.pings == 0 {
            return Err("--runs and --pings must be positive".into());
        }
        Ok(())
    });
    println!("### VNC proxy (`/ws/vnc`) against a direct TCP connection to x11vnc\n");
    println!(
        "{}",
        header(&[
            "measurement",
            "via /ws/vnc (median, min–max)",
            "reference: direct to x11vnc, same run",
            "ratio (median, min–max)",
            "target",
        ])
    );
    for &(width, height) in &options.sizes {
        if let Err(err) = bench_size(&options, width, height) {
            eprintln!("bench_vnc {width}x{height}: {err}");
            std::process::exit(1);
        }
    }
    let flags = options
        .x11vnc_extra
        .as_deref()
        .map_or("as the server starts it".to_string(), |f| {
            format!("with `{f}`")
        });
    println!(
        "\n{} run(s) per size, direct and proxied alternating, each {} s of full-frame updates \
         then {} {PROBE}×{PROBE} round trips; Raw encoding, 32 bpp; x11vnc {flags}.\n",
        options.runs, options.seconds, options.pings
    );
}

// ---------------------------------------------------------------- one screen size

/// What one run measured over one connection.
struct Sample {
    bytes_per_s: f64,
    /// CPU time per GB of pixels: the proxy's threads when proxied, the client's (every byte
    /// read from a socket once) when direct.
    cpu_ms_per_gb: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn bench_size(options: &Options, width: u32, height: u32) -> Result<(), String> {
    let own = match &options.x11vnc_extra {
        Some(extra) => Some(OwnDesktop::start(width, height, extra)?),
        None => None,
    };
    let server = Server::start(width, height, own.as_ref())?;
    let display = server.app.desktops.shared().map_err(|e| e.to_string())?;
    let pids = server.app.desktops.processes(None);
    record_pids(pids.iter().map(|p| p.pid));
    let _content = Xterms::start(&display)?;
    warm_up(&display)?;
    let (mut direct, mut proxied) = (Vec::new(), Vec::new());
    for run in 0..options.runs {
        let mut measure_direct = || -> Result<(), String> {
            let link = direct_link(display.vnc_addr).map_err(|e| e.to_string())?;
            direct.push(measure(link, options).map_err(|e| format!("direct: {e}"))?);
            Ok(())
        };
        let mut measure_proxied = || -> Result<(), String> {
            let link = WsLink::connect(server.addr)?;
            proxied.push(measure(link, options).map_err(|e| format!("proxy: {e}"))?);
            Ok(())
        };
        if run % 2 == 0 {
            measure_direct()?;
            measure_proxied()?;
        } else {
            measure_proxied()?;
            measure_direct()?;
        }
    }
    print_rows(&format!("{width}×{height}"), &direct, &proxied);
    server.stop();
    Ok(())
}

/// x11vnc answers its first client differently from later ones (slower round trips): one
/// throwaway client first, so that every measured run meets the same server state.
fn warm_up(display: &Display) -> Result<(), String> {
    let link = direct_link(display.vnc_addr).map_err(|e| e.to_string())?;
    let mut rfb = Rfb::handshake(link).map_err(|e| format!("warm-up: {e}"))?;
    let (w, h) = (rfb.width, rfb.height);
    for _ in 0..MIN_UPDATES {
        rfb.update(0, 0, w, h)
            .map_err(|e| format!("warm-up: {e}"))?;
    }
    Ok(())
}

/// Handshake, one warm-up frame, then throughput and round trips on the same connection.
fn measure<L: Link>(link: L, options: &Options) -> io::Result<Sample> {
    let mut rfb = Rfb::handshake(link)?;
    let (w, h) = (rfb.width, rfb.height);
    rfb.update(0, 0, w, h)?;
    let budget = Duration::from_secs_f64(options.seconds);
    let (mut bytes, mut updates) = (0, 0);
    let cpu_before = L::cpu_seconds();
    let started = Instant::now();
    while updates < MIN_UPDATES || started.elapsed() < budget {
        bytes += rfb.update(0, 0, w, h)?;
        updates += 1;
    }
    let bytes_per_s = bytes as f64 / started.elapsed().as_secs_f64();
    let cpu_ms_per_gb = (L::cpu_seconds() - cpu_before) * 1e3 / (bytes as f64 / 1e9);
    let mut times = Vec::with_capacity(options.pings);
    for i in 0..options.pings {
        // Move the probe around so no two consecutive requests ask for the same pixels.
        let x = (i as u16 * 37) % (w - PROBE);
        let y = (i as u16 * 23) % (h - PROBE);
        let sent = Instant::now();
        rfb.update(x, y, PROBE, PROBE)?;
        times.push(sent.elapsed().as_secs_f64() * 1e3);
    }
    let (p50_ms, p99_ms) = p50_p99(&mut times);
    Ok(Sample {
        bytes_per_s,
        cpu_ms_per_gb,
        p50_ms,
        p99_ms,
    })
}

// ---------------------------------------------------------------- the table

fn print_rows(size: &str, direct: &[Sample], proxied: &[Sample]) {
    let mb = |samples: &[Sample]| {
        samples
            .iter()
            .map(|s| s.bytes_per_s / 1e6)
            .collect::<Vec<_>>()
    };
    let (mb_proxied, mb_direct) = (mb(proxied), mb(direct));
    let ratios = paired_ratios(&mb_proxied, &mb_direct);
    let met = median(&ratios) >= TARGET_PERCENT;
    let target = format!(
        "≥ {TARGET_PERCENT} % of direct: {}",
        bench_support::verdict(met)
    );
    let cells = |name: String, unit: &str, values: &[f64], refs: &[f64], target: &str| {
        let ratio = format!("{} %", summary_digits(&paired_ratios(values, refs), 0));
        let (value, reference) = (summary(values), summary(refs));
        let (value, reference) = (format!("{value} {unit}"), format!("{reference} {unit}"));
        println!("{}", row(&[&name, &value, &reference, &ratio, target]));
    };
    cells(
        format!("**{size} full-frame throughput**, Raw"),
        "MB/s",
        &mb_proxied,
        &mb_direct,
        &target,
    );
    let cpu = |samples: &[Sample]| samples.iter().map(|s| s.cpu_ms_per_gb).collect::<Vec<_>>();
    cells(
        format!("{size} CPU per GB: proxy threads vs the direct client reading it"),
        "ms",
        &cpu(proxied),
        &cpu(direct),
        "—",
    );
    let p50 = |samples: &[Sample]| samples.iter().map(|s| s.p50_ms).collect::<Vec<_>>();
    let p99 = |samples: &[Sample]| samples.iter().map(|s| s.p99_ms).collect::<Vec<_>>();
    let what = format!("{size} {PROBE}×{PROBE} update round trip");
    cells(
        format!("{what} p50"),
        "ms",
        &p50(proxied),
        &p50(direct),
        "—",
    );
    cells(
        format!("{what} p99"),
        "ms",
        &p99(proxied),
        &p99(direct),
        "—",
    );
}

// ---------------------------------------------------------------- the server and the screen

/// The server in this process, shared mode, its own Xvfb + x11vnc, a temp SQLite file.
struct Server {
    app: App,
    handle: ServerHandle,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Server {
    fn start(width: u32, height: u32, own: Option<&OwnDesktop>) -> Result<Server, String> {
        let dir = std::env::temp_dir().join(format!("bench-vnc-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("temp dir: {e}"))?;
        let mut vars = vec![
            ("HOST", "127.0.0.1".to_string()),
            ("PORT", "0".to_string()),
            (
                "DATABASE_URL",
                format!("sqlite://{}", dir.join("bench.db").display()),
            ),
            ("ANTHROPIC_API_KEY", "sk-ant-bench".to_string()),
            ("ANTHROPIC_BASE_URL", "http://127.0.0.1:9".to_string()),
            ("DESKTOP_MODE", "shared".to_string()),
            ("WIDTH", width.to_string()),
            ("HEIGHT", height.to_string()),
            ("VNC_PORT", "0".to_string()),
            ("HTTP_THREADS", "4".to_string()),
        ];
        if let Some(own) = own {
            vars.push(("DISPLAY_NUM", own.display_num.to_string()));
            vars.push(("VNC_PORT", own.vnc_port.to_string()));
        }
        let get = |name: &str| {
            vars.iter()
                .rev()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        };
        let config = Config::from_sources(&[], get).map_err(|e| format!("config: {e}"))?;
        let app = App::build(config).map_err(|e| format!("app: {e}"))?;
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let handle = app.serve(listener).map_err(|e| format!("serve: {e}"))?;
        Ok(Server {
            app,
            handle,
            addr,
            dir,
        })
    }

    fn stop(self) {
        self.app.shutdown();
        self.handle.shutdown();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Xvfb and x11vnc started here rather than by the server (see `--x11vnc`); killed on drop.
struct OwnDesktop {
    children: Vec<Child>,
    display_num: u32,
    vnc_port: u16,
}

impl OwnDesktop {
    fn start(width: u32, height: u32, extra: &str) -> Result<OwnDesktop, String> {
        let mut own = OwnDesktop {
            children: Vec::new(),
            display_num: 0,
            vnc_port: 0,
        };
        let screen = format!("{width}x{height}x24");
        let xvfb = [
            "-displayfd",
            "1",
            "-screen",
            "0",
            &screen,
            "-nolisten",
            "tcp",
            "-noreset",
        ];
        let line = own.spawn("Xvfb", &xvfb, |_| true)?;
        own.display_num = line
            .trim()
            .parse()
            .map_err(|_| format!("Xvfb said {line:?}"))?;
        let display = format!(":{}", own.display_num);
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port()
            .to_string();
        let mut args = vec![
            "-display",
            &display,
            "-localhost",
            "-no6",
            "-forever",
            "-shared",
        ];
        args.extend(["-nopw", "-rfbport", &port]);
        args.extend(extra.split_whitespace());
        let line = own.spawn("x11vnc", &args, |line| line.starts_with("PORT="))?;
        own.vnc_port = line[5..]
            .trim()
            .parse()
            .map_err(|_| format!("x11vnc said {line:?}"))?;
        Ok(own)
    }

    /// Starts `program` and returns the first stdout line `ready` accepts (bounded wait).
    fn spawn(
        &mut self,
        program: &str,
        args: &[&str],
        ready: fn(&str) -> bool,
    ) -> Result<String, String> {
        let mut child = spawn_recorded(Command::new(program).args(args), Stdio::piped())?;
        let stdout = child.stdout.take().expect("piped stdout");
        self.children.push(child);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in io::BufRead::lines(io::BufReader::new(stdout)).map_while(Result::ok) {
                if ready(&line) {
                    let _ = tx.send(line);
                }
            }
        });
        rx.recv_timeout(START_TIMEOUT)
            .map_err(|_| format!("{program} did not report ready"))
    }
}

impl Drop for OwnDesktop {
    fn drop(&mut self) {
        for child in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------- byte links

/// A byte stream to an RFB server: direct TCP, or binary WebSocket frames.
trait Link {
    fn send(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Fills `buf` completely.
    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()>;
    /// Reads and discards `n` bytes (the pixels).
    fn skip(&mut self, n: usize) -> io::Result<()>;
    /// CPU time used so far by what moves the bytes on this kind of link, in seconds.
    fn cpu_seconds() -> f64;
}

/// CPU time of this process's threads that `pick` chooses by (thread id, name), in seconds:
/// their run time in nanoseconds from `schedstat` (exact, unlike the 10 ms ticks of `stat`).
fn threads_cpu_seconds(pick: impl Fn(u32, &str) -> bool) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let run_ns = |task: std::fs::DirEntry| -> Option<f64> {
        let tid = task.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
        if !pick(tid, comm.trim()) {
            return None;
        }
        let schedstat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
        schedstat.split_whitespace().next()?.parse().ok()
    };
    tasks.filter_map(|task| run_ns(task.ok()?)).sum::<f64>() / 1e9
}

impl Link for TcpStream {
    /// The bench client: this program's main thread.
    fn cpu_seconds() -> f64 {
        threads_cpu_seconds(|tid, _| tid == std::process::id())
    }

    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write_all(bytes)
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        Read::read_exact(self, buf)
    }

    fn skip(&mut self, mut n: usize) -> io::Result<()> {
        let mut scratch = [0u8; 64 * 1024];
        while n > 0 {
            let want = n.min(scratch.len());
            let got = self.read(&mut scratch[..want])?;
            if got == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            n -= got;
        }
        Ok(())
    }
}

/// A TCP connection straight to x11vnc, with the same socket options as the proxied one.
fn direct_link(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

/// A WebSocket to the proxy; `frame[at..]` is what is left of the last binary frame.
struct WsLink {
    ws: WebSocket<TcpStream>,
    frame: Bytes,
    at: usize,
}

impl WsLink {
    fn connect(addr: SocketAddr) -> Result<WsLink, String> {
        let stream = direct_link(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        let request = format!("ws://{addr}/ws/vnc").into_client_request();
        let request = request.map_err(|e| e.to_string())?;
        let (ws, _) = tungstenite::client(request, stream).map_err(|e| format!("upgrade: {e}"))?;
        Ok(WsLink {
            ws,
            frame: Bytes::new(),
            at: 0,
        })
    }

    /// The unread part of the current frame, reading the next binary frame when it is empty.
    fn available(&mut self) -> io::Result<&[u8]> {
        while self.at == self.frame.len() {
            match self.ws.read().map_err(io::Error::other)? {
                Message::Binary(data) => (self.frame, self.at) = (data, 0),
                Message::Close(_) => return Err(io::ErrorKind::UnexpectedEof.into()),
                _ => {}
            }
        }
        Ok(&self.frame[self.at..])
    }
}

impl Link for WsLink {
    /// The proxy's two threads per link: the stream thread (`ws`) and its reader (`vnc-up`).
    fn cpu_seconds() -> f64 {
        threads_cpu_seconds(|_, name| name == "ws" || name == "vnc-up")
    }

    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        let message = Message::Binary(Bytes::copy_from_slice(bytes));
        self.ws.send(message).map_err(io::Error::other)
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let mut filled = 0;
        while filled < buf.len() {
            let chunk = self.available()?;
            let n = chunk.len().min(buf.len() - filled);
            buf[filled..filled + n].copy_from_slice(&chunk[..n]);
            filled += n;
            self.at += n;
        }
        Ok(())
    }

    fn skip(&mut self, mut n: usize) -> io::Result<()> {
        while n > 0 {
            let step = self.available()?.len().min(n);
            self.at += step;
            n -= step;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- a minimal RFB 3.8 client

/// An RFB session past initialisation: 32 bpp true colour, Raw encoding only.
struct Rfb<L> {
    link: L,
    width: u16,
    height: u16,
}

impl<L: Link> Rfb<L> {
    /// Version 3.8, security None, shared ClientInit, then our pixel format and encodings.
    fn handshake(mut link: L) -> io::Result<Rfb<L>> {
        let mut version = [0u8; 12];
        link.read_exact(&mut version)?;
        if &version != b"RFB 003.008\n" {
            return Err(protocol(format!("server version {version:?}")));
        }
        link.send(b"RFB 003.008\n")?;
        let count = read_u8(&mut link)?;
        let types = read_vec(&mut link, usize::from(count))?;
        if !types.contains(&1) {
            return Err(protocol(format!("no security type None in {types:?}")));
        }
        link.send(&[1])?;
        if read_vec(&mut link, 4)? != [0, 0, 0, 0] {
            return Err(protocol("security handshake failed".into()));
        }
        link.send(&[1])?; // ClientInit: shared
        let init = read_vec(&mut link, 24)?;
        let name_len = u32::from_be_bytes([init[20], init[21], init[22], init[23]]);
        link.skip(name_len as usize)?;
        link.send(&SET_PIXEL_FORMAT)?;
        link.send(&[2, 0, 0, 1, 0, 0, 0, 0])?; // SetEncodings: Raw
        Ok(Rfb {
            width: u16::from_be_bytes([init[0], init[1]]),
            height: u16::from_be_bytes([init[2], init[3]]),
            link,
        })
    }

    /// Requests the region (non-incremental) and reads the whole update; its pixel bytes.
    fn update(&mut self, x: u16, y: u16, w: u16, h: u16) -> io::Result<usize> {
        let mut request = vec![3, 0];
        for v in [x, y, w, h] {
            request.extend_from_slice(&v.to_be_bytes());
        }
        self.link.send(&request)?;
        self.skip_until_update()?;
        let mut header = [0u8; 3];
        self.link.read_exact(&mut header)?;
        let rects = u16::from_be_bytes([header[1], header[2]]);
        let mut bytes = 0;
        for _ in 0..rects {
            let rect = read_vec(&mut self.link, 12)?;
            let (rw, rh) = (u16_at(&rect, 4) as usize, u16_at(&rect, 6) as usize);
            let encoding = i32::from_be_bytes([rect[8], rect[9], rect[10], rect[11]]);
            if encoding != 0 {
                return Err(protocol(format!("encoding {encoding}, asked for Raw only")));
            }
            self.link.skip(rw * rh * 4)?;
            bytes += rw * rh * 4;
        }
        Ok(bytes)
    }

    /// Reads server messages until a FramebufferUpdate's type byte, skipping bells and cut text.
    fn skip_until_update(&mut self) -> io::Result<()> {
        loop {
            match read_u8(&mut self.link)? {
                0 => return Ok(()),
                2 => {} // Bell
                3 => {
                    let head = read_vec(&mut self.link, 7)?;
                    self.link
                        .skip(u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as usize)?;
                }
                other => return Err(protocol(format!("unexpected server message {other}"))),
            }
        }
    }
}

/// SetPixelFormat: 32 bpp, depth 24, little endian, true colour, 8 bits per channel.
const SET_PIXEL_FORMAT: [u8; 20] = [
    0, 0, 0, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0,
];

fn read_u8(link: &mut impl Link) -> io::Result<u8> {
    let mut byte = [0u8];
    link.read_exact(&mut byte)?;
    Ok(byte[0])
}

fn read_vec(link: &mut impl Link, n: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    link.read_exact(&mut buf)?;
    Ok(buf)
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

fn protocol(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}
