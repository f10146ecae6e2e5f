//! Event fan-out and memory (issue 6, sections 2 and 4), against the release server binary
//! run as a child process, on loopback.
//!
//! **Fan-out.** One session streams a model reply whose text arrives as `text_delta`s at
//! 200 per second (a fake Messages API in this process speaks the real streaming wire format,
//! and each delta's text is the time it was sent, in microseconds of this process's clock).
//! The server broadcasts each delta as a live `text_delta` event, one per delta (no
//! coalescing), to 1, 100 and 1000 WebSocket subscribers, and the same with SSE; every
//! subscriber reads the stamp and records publish-to-receive latency. References, measured in
//! the same run: latency with 1 subscriber (the ratio of the p99s), and the server's CPU while
//! the same stream runs with no subscriber.
//!
//! **Memory.** The server's RSS (from `/proc`) at idle after start, then per idle session
//! (1000 created), per idle WebSocket and per idle SSE client (1000 open on one session), per
//! running worker (100 sessions with a turn blocked on a stalled model reply), and with 1000
//! subscribers open. Each per-item figure is the RSS increase over the baseline measured just
//! before adding the items, divided by their count; each uses a fresh server.
//!
//! Caps and rate limits are raised for the run (printed with the results).
//!
//!   cargo build --release --examples && target/release/examples/bench_events
//!       [--smoke] [--runs N] [--seconds S] [--only fanout|memory]

mod bench_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bench_support::{Server, call, header, median, p50_p99, row, summary, verdict};
use serde_json::{Value, json};

/// Deltas per second the fake model streams.
const RATE: u32 = 200;
/// Client thread stacks: a thousand of them should cost little.
const CLIENT_STACK: usize = 128 * 1024;
/// How long a client read blocks before it looks at its stop flag.
const READ_POLL: Duration = Duration::from_millis(100);
/// Bound on connecting, settling and turns ending.
const SETTLE: Duration = Duration::from_secs(30);
/// Issue 6 targets.
const TARGET_P99_MS: f64 = 20.0;
const TARGET_IDLE_BYTES: f64 = 15e6;
const TARGET_SUBSCRIBER_BYTES: f64 = 100e3;

/// What the server is started with, beyond the support module's defaults.
const SERVER_ENV: &[(&str, &str)] = &[
    ("RATE_LIMIT_SESSIONS", "0"),
    ("RATE_LIMIT_MESSAGES", "0"),
    ("MAX_STREAMS", "10000"),
    ("MAX_STREAMS_PER_SESSION", "5000"),
    ("MAX_ACTIVE_SESSIONS", "1000"),
    ("MODEL_MAX_RETRIES", "0"),
    ("SHUTDOWN_GRACE", "1"),
    ("RUST_LOG", "warn"),
];

struct Options {
    smoke: bool,
    runs: usize,
    /// Seconds each fan-out stream lasts.
    seconds: f64,
    fanout: bool,
    memory: bool,
    /// Subscriber counts of the fan-out rows.
    sizes: Vec<usize>,
    /// Sessions and clients added for the memory rows.
    items: usize,
    workers: usize,
}

fn main() {
    let options = match parse_args() {
        Ok(options) => options,
        Err(why) => {
            eprintln!(
                "bench_events: {why}\nusage: bench_events [--smoke] [--runs N] [--seconds S] \
                 [--only fanout|memory]"
            );
            std::process::exit(2);
        }
    };
    let dir = std::env::temp_dir().join(format!("bench-events-{}", std::process::id()));
    let result = std::fs::create_dir_all(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))
        .and_then(|()| run(&options, &dir));
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(why) = result {
        eprintln!("bench_events: {why}");
        std::process::exit(1);
    }
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        smoke: false,
        runs: 3,
        seconds: 2.0,
        fanout: true,
        memory: true,
        sizes: vec![1, 100, 1000],
        items: 1000,
        workers: 100,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--smoke" {
            options.smoke = true;
            options.runs = 1;
            options.seconds = 0.3;
            options.sizes = vec![1, 10];
            options.items = 20;
            options.workers = 5;
            continue;
        }
        let value = args.next().ok_or(format!("{arg} needs a value"))?;
        let bad = || format!("bad value for {arg}: {value}");
        match arg.as_str() {
            "--runs" => options.runs = value.parse().ok().filter(|n| *n > 0).ok_or_else(bad)?,
            "--seconds" => {
                options.seconds = value.parse().ok().filter(|s| *s > 0.0).ok_or_else(bad)?
            }
            "--only" => match value.as_str() {
                "fanout" => options.memory = false,
                "memory" => options.fanout = false,
                _ => return Err(bad()),
            },
            _ => return Err(format!("unknown argument {arg}")),
        }
    }
    Ok(options)
}

fn run(options: &Options, dir: &Path) -> Result<(), String> {
    let fake = FakeModel::start()?;
    println!("Server started with ANTHROPIC_BASE_URL pointing at a fake streaming Messages API in");
    println!("the bench process, and caps raised: {}.", env_line());
    if options.smoke {
        println!("(smoke run: one short pass with few clients; the figures mean nothing)");
    }
    if options.fanout {
        fanout(options, &fake, &dir.join("fanout"))?;
    }
    if options.memory {
        memory(options, &fake, dir)?;
    }
    Ok(())
}

fn env_line() -> String {
    let pairs: Vec<String> = SERVER_ENV.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.join(" ")
}

/// Starts the server with the bench's environment, the fake model and its own data directory.
fn start_server(fake: &FakeModel, dir: &Path) -> Result<Server, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let base_url = format!("http://{}", fake.addr);
    let data_dir = dir.to_string_lossy().into_owned();
    let mut env: Vec<(&str, &str)> = SERVER_ENV.to_vec();
    env.push(("ANTHROPIC_BASE_URL", &base_url));
    env.push(("DATA_DIR", &data_dir));
    Server::start(&env)
}

// ---------------------------------------------------------------- clock and stamps

/// Microseconds since the first call: the fake model stamps deltas with it, clients subtract.
fn now_micros() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_micros() as u64
}

/// The stamp of a `text_delta` event (`"delta":"t<micros>."`), if `frame` holds one.
fn stamp_of(frame: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"delta\":\"t";
    let at = find(frame, KEY)? + KEY.len();
    let digits = frame[at..].iter().take_while(|b| b.is_ascii_digit());
    let mut value: u64 = 0;
    let mut any = false;
    for digit in digits {
        value = value * 10 + u64::from(digit - b'0');
        any = true;
    }
    any.then_some(value)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------- the fake Messages API

/// What the fake model does with the next requests.
#[derive(Clone, Copy)]
enum Script {
    /// One text block whose deltas come at `RATE` per second for this long.
    Stream(Duration),
    /// The reply starts, then stalls until released (or the connection dies).
    Stall,
}

/// A streamed reply as it went out.
struct Streamed {
    deltas: u64,
}

struct FakeModel {
    addr: String,
    script: Arc<Mutex<Script>>,
    /// Replies stalled right now.
    stalled: Arc<AtomicUsize>,
    /// Set to let stalled replies finish.
    release: Arc<AtomicBool>,
    done: Mutex<mpsc::Receiver<Streamed>>,
}

impl FakeModel {
    fn start() -> Result<FakeModel, String> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("fake: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| e.to_string())?
            .to_string();
        let script = Arc::new(Mutex::new(Script::Stall));
        let stalled = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let (s, st, rel) = (script.clone(), stalled.clone(), release.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let (s, st, rel, tx) = (s.clone(), st.clone(), rel.clone(), tx.clone());
                let _ = std::thread::Builder::new()
                    .stack_size(CLIENT_STACK)
                    .spawn(move || {
                        let reply = Reply {
                            stalled: &st,
                            release: &rel,
                        };
                        if let Ok(Some(streamed)) = reply.serve(stream, &s) {
                            let _ = tx.send(streamed);
                        }
                    });
            }
        });
        Ok(FakeModel {
            addr,
            script,
            stalled,
            release,
            done: Mutex::new(rx),
        })
    }

    fn set(&self, script: Script) {
        *self.script.lock().unwrap() = script;
        self.release.store(false, Ordering::SeqCst);
    }

    /// Waits for the next streamed reply to have been sent in full.
    fn wait_streamed(&self, limit: Duration) -> Result<Streamed, String> {
        let done = self.done.lock().unwrap();
        done.recv_timeout(limit)
            .map_err(|_| "the fake model's stream never ended (no model call?)".to_string())
    }
}

/// One connection of the fake model.
struct Reply<'a> {
    stalled: &'a AtomicUsize,
    release: &'a AtomicBool,
}

impl Reply<'_> {
    /// Reads one request and answers it as the script says (one request per connection).
    fn serve(
        &self,
        stream: TcpStream,
        script: &Mutex<Script>,
    ) -> std::io::Result<Option<Streamed>> {
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            if reader.read_until(b'\n', &mut head)? == 0 {
                return Ok(None);
            }
        }
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        let length: usize = head
            .split("\r\n")
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body)?;
        let script = *script.lock().unwrap();
        let mut out = stream;
        out.set_nodelay(true)?;
        out.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n\
              request-id: req_bench\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
        )?;
        send(
            &mut out,
            "message_start",
            &json!({"type": "message_start", "message": {
            "id": "msg_bench", "type": "message", "role": "assistant", "model": "claude-bench",
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 10, "output_tokens": 1,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}}),
        )?;
        send(
            &mut out,
            "content_block_start",
            &json!({"type": "content_block_start",
            "index": 0, "content_block": {"type": "text", "text": ""}}),
        )?;
        send(&mut out, "ping", &json!({"type": "ping"}))?;
        let deltas = match script {
            Script::Stream(length) => stream_deltas(&mut out, length)?,
            Script::Stall => {
                self.stalled.fetch_add(1, Ordering::SeqCst);
                while !self.release.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                self.stalled.fetch_sub(1, Ordering::SeqCst);
                delta(&mut out, "released")?;
                1
            }
        };
        send(
            &mut out,
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": 0}),
        )?;
        send(
            &mut out,
            "message_delta",
            &json!({"type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"output_tokens": deltas}}),
        )?;
        send(&mut out, "message_stop", &json!({"type": "message_stop"}))?;
        out.write_all(b"0\r\n\r\n")?;
        Ok(matches!(script, Script::Stream(_)).then_some(Streamed { deltas }))
    }
}

/// `RATE` stamped deltas per second for `length`, on a fixed schedule (no drift).
fn stream_deltas(out: &mut TcpStream, length: Duration) -> std::io::Result<u64> {
    let period = Duration::from_secs(1) / RATE;
    let count = (length.as_secs_f64() * f64::from(RATE)).round().max(1.0) as u32;
    let start = Instant::now();
    for i in 0..count {
        let due = start + period * i;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        delta(out, &format!("t{}.", now_micros()))?;
    }
    Ok(u64::from(count))
}

fn delta(out: &mut TcpStream, text: &str) -> std::io::Result<()> {
    send(
        out,
        "content_block_delta",
        &json!({"type": "content_block_delta", "index": 0,
        "delta": {"type": "text_delta", "text": text}}),
    )
}

/// One SSE event as one HTTP chunk.
fn send(out: &mut TcpStream, name: &str, data: &Value) -> std::io::Result<()> {
    let event = format!("event: {name}\ndata: {data}\n\n");
    out.write_all(format!("{:x}\r\n{event}\r\n", event.len()).as_bytes())
}

// ---------------------------------------------------------------- REST helpers

/// A REST client that closes each connection after its request. A kept-alive connection
/// holds one of tiny_http's pool threads, and a new connection (a subscriber's) can be queued
/// behind it until it ends (see `src/http/connections.rs`): polling `/health` over one
/// connection while subscribers connect delayed some of them by the whole polling time.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(SETTLE))
        .proxy(None)
        .max_idle_connections(0)
        .build()
        .into()
}

fn create_session(server: &Server, agent: &ureq::Agent) -> Result<String, String> {
    let (status, body) = call(
        agent,
        "POST",
        &server.url("/api/sessions"),
        Some(&json!({})),
    )?;
    match (status, body["id"].as_str()) {
        (201, Some(id)) => Ok(id.to_string()),
        _ => Err(format!("POST /api/sessions: {status} {body}")),
    }
}

fn post_message(server: &Server, agent: &ureq::Agent, id: &str) -> Result<(), String> {
    let url = server.url(&format!("/api/sessions/{id}/messages"));
    let (status, body) = call(agent, "POST", &url, Some(&json!({"content": "go"})))?;
    match status {
        202 => Ok(()),
        _ => Err(format!("POST messages: {status} {body}")),
    }
}

fn health(server: &Server, agent: &ureq::Agent) -> Value {
    call(agent, "GET", &server.url("/health"), None)
        .map(|(_, body)| body)
        .unwrap_or_default()
}

/// Open event streams of either kind, as `/health` counts them.
fn open_streams(server: &Server, agent: &ureq::Agent) -> u64 {
    let streams = &health(server, agent)["streams"];
    streams["websocket"].as_u64().unwrap_or(0) + streams["sse"].as_u64().unwrap_or(0)
}

fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

// ---------------------------------------------------------------- clients

#[derive(Clone, Copy, PartialEq)]
enum Transport {
    WebSocket,
    Sse,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::WebSocket => "WebSocket",
            Transport::Sse => "SSE",
        }
    }
}

/// A WebSocket client, handshake done.
fn connect_ws(addr: &str, id: &str) -> Result<tungstenite::WebSocket<TcpStream>, String> {
    let stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    let (ws, _) = tungstenite::client(format!("ws://{addr}/ws/{id}"), stream)
        .map_err(|e| format!("WebSocket handshake: {e}"))?;
    Ok(ws)
}

/// An SSE client whose stream is open (its `: connected` comment read): (socket, bytes read
/// past the comment).
fn connect_sse(addr: &str, id: &str) -> Result<(TcpStream, Vec<u8>), String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    let request = format!(
        "GET /api/sessions/{id}/stream HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("SSE request: {e}"))?;
    stream
        .set_read_timeout(Some(SETTLE))
        .map_err(|e| e.to_string())?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream
            .read(&mut buf)
            .map_err(|e| format!("SSE head: {e}"))?;
        if n == 0 {
            return Err(format!("SSE: closed: {}", String::from_utf8_lossy(&seen)));
        }
        seen.extend_from_slice(&buf[..n]);
        if !seen.starts_with(b"HTTP/1.1 200") && seen.len() >= 12 {
            return Err(format!("SSE: {}", String::from_utf8_lossy(&seen)));
        }
        if let Some(at) = find(&seen, b": connected\n\n") {
            return Ok((stream, seen.split_off(at)));
        }
    }
}

/// A subscriber's open stream.
enum Connected {
    Ws(Box<tungstenite::WebSocket<TcpStream>>),
    Sse(TcpStream, Vec<u8>),
}

/// Opens a subscriber's stream. Subscribers connect one after the other: connections opened
/// in a burst can sit in tiny_http's pool queue until some other connection ends (see the
/// report: `TaskPool::spawn` counts waiting threads before they have woken).
fn connect(transport: Transport, addr: &str, id: &str) -> Result<Connected, String> {
    let (socket, connected) = match transport {
        Transport::WebSocket => {
            let ws = connect_ws(addr, id)?;
            (ws.get_ref().try_clone(), Connected::Ws(Box::new(ws)))
        }
        Transport::Sse => {
            let (stream, rest) = connect_sse(addr, id)?;
            (stream.try_clone(), Connected::Sse(stream, rest))
        }
    };
    socket
        .and_then(|s| s.set_read_timeout(Some(READ_POLL)))
        .map_err(|e| e.to_string())?;
    Ok(connected)
}

/// Reads the stream on its own thread until `stop`: the latencies of every stamped delta
/// received, in microseconds.
fn spawn_subscriber(
    connected: Connected,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<Vec<u32>>> {
    std::thread::Builder::new()
        .stack_size(CLIENT_STACK)
        .spawn(move || match connected {
            Connected::Ws(ws) => follow_ws(*ws, &stop),
            Connected::Sse(stream, rest) => follow_sse(stream, rest, &stop),
        })
}

fn latency(stamp: u64) -> u32 {
    now_micros().saturating_sub(stamp).min(u64::from(u32::MAX)) as u32
}

fn follow_ws(mut ws: tungstenite::WebSocket<TcpStream>, stop: &AtomicBool) -> Vec<u32> {
    let mut latencies = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match ws.read() {
            Ok(tungstenite::Message::Text(text)) => {
                if let Some(stamp) = stamp_of(text.as_bytes()) {
                    latencies.push(latency(stamp));
                }
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    latencies
}

fn follow_sse(mut stream: TcpStream, mut pending: Vec<u8>, stop: &AtomicBool) -> Vec<u32> {
    let mut latencies = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    while !stop.load(Ordering::Relaxed) {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(_) => break,
        };
        let now = now_micros();
        pending.extend_from_slice(&buf[..n]);
        // Every event is one chunk ending in a blank line: cut after the last one complete.
        let Some(end) = pending.windows(2).rposition(|w| w == b"\n\n") else {
            continue;
        };
        for frame in pending[..end].split(|b| *b == b'\n') {
            if let Some(stamp) = stamp_of(frame) {
                latencies.push(now.saturating_sub(stamp).min(u64::from(u32::MAX)) as u32);
            }
        }
        pending.drain(..end + 2);
    }
    latencies
}

// ---------------------------------------------------------------- fan-out

/// One fan-out measurement.
struct Fanout {
    p50_ms: f64,
    p99_ms: f64,
    cpu_percent: f64,
    /// Deltas received over deltas sent × subscribers.
    received: f64,
}

fn fanout(options: &Options, fake: &FakeModel, dir: &Path) -> Result<(), String> {
    let server = start_server(fake, dir)?;
    let agent = agent();
    let transports = [Transport::WebSocket, Transport::Sse];
    let mut reference: Vec<Fanout> = Vec::new();
    let mut results: Vec<Vec<Vec<Fanout>>> = transports
        .iter()
        .map(|_| options.sizes.iter().map(|_| Vec::new()).collect())
        .collect();
    for run in 0..options.runs {
        eprintln!("bench_events: fan-out run {}/{}", run + 1, options.runs);
        reference.push(fanout_once(
            options,
            fake,
            &server,
            &agent,
            Transport::Sse,
            0,
        )?);
        for (t, transport) in transports.iter().enumerate() {
            for (s, size) in options.sizes.iter().enumerate() {
                let measured = fanout_once(options, fake, &server, &agent, *transport, *size)?;
                results[t][s].push(measured);
            }
        }
    }
    server.stop();
    print_fanout(options, &reference, &transports, &results);
    Ok(())
}

fn fanout_once(
    options: &Options,
    fake: &FakeModel,
    server: &Server,
    agent: &ureq::Agent,
    transport: Transport,
    size: usize,
) -> Result<Fanout, String> {
    let id = create_session(server, agent)?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::with_capacity(size);
    let connected = (0..size).try_for_each(|_| {
        let connected = connect(transport, &server.addr, &id)?;
        let client = spawn_subscriber(connected, stop.clone());
        clients.push(client.map_err(|e| format!("client thread: {e}"))?);
        Ok(())
    });
    let counted = connected.and_then(|()| {
        wait_until(SETTLE, "the server to count the streams", || {
            open_streams(server, agent) >= size as u64
        })
    });
    if let Err(why) = counted {
        stop.store(true, Ordering::SeqCst);
        return Err(format!("{} subscribers: {why}", transport.name()));
    }
    // A WebSocket subscribes just after its handshake: give the last ones a moment.
    std::thread::sleep(Duration::from_millis(200));
    fake.set(Script::Stream(Duration::from_secs_f64(options.seconds)));
    let pid = server.pid();
    let started = Instant::now();
    let cpu_before = bench_support::cpu_seconds(pid).unwrap_or(0.0);
    post_message(server, agent, &id)?;
    let streamed = fake.wait_streamed(SETTLE + Duration::from_secs_f64(options.seconds))?;
    std::thread::sleep(Duration::from_millis(50));
    let cpu = bench_support::cpu_seconds(pid).unwrap_or(0.0) - cpu_before;
    let cpu_percent = 100.0 * cpu / started.elapsed().as_secs_f64();
    let url = server.url(&format!("/api/sessions/{id}"));
    wait_until(SETTLE, "the turn to end", || {
        call(agent, "GET", &url, None).is_ok_and(|(_, s)| s["status"] == "idle")
    })?;
    stop.store(true, Ordering::SeqCst);
    let mut latencies: Vec<f64> = Vec::new();
    for client in clients {
        let got = client.join().map_err(|_| "a client panicked".to_string())?;
        latencies.extend(got.into_iter().map(|us| f64::from(us) / 1000.0));
    }
    let received = latencies.len() as f64 / (streamed.deltas as f64 * size.max(1) as f64);
    let (p50_ms, p99_ms) = p50_p99(&mut latencies);
    call(agent, "DELETE", &url, None)?;
    wait_until(SETTLE, "the streams to close", || {
        open_streams(server, agent) == 0
    })?;
    Ok(Fanout {
        p50_ms,
        p99_ms,
        cpu_percent,
        received: if size == 0 { 1.0 } else { received },
    })
}

fn print_fanout(
    options: &Options,
    reference: &[Fanout],
    transports: &[Transport],
    results: &[Vec<Vec<Fanout>>],
) {
    let cpu_ref: Vec<f64> = reference.iter().map(|f| f.cpu_percent).collect();
    println!(
        "\n### Event fan-out: one session, {RATE} text deltas/s, {:.1} s per stream, median \
         (min–max) of {} runs\n",
        options.seconds, options.runs
    );
    println!(
        "Each model delta reaches subscribers as one live `text_delta` event (not coalesced); \
         latency is from the fake model writing the delta to the subscriber reading it \
         (through the server's model client, broadcaster and stream thread). Reference: \
         latency with 1 subscriber of the same transport; server CPU with no subscriber \
         while the same stream runs: {} % of a core.\n",
        summary(&cpu_ref)
    );
    println!(
        "{}",
        header(&[
            "transport",
            "subscribers",
            "p50 latency (ms)",
            "p99 latency (ms)",
            "p99 vs 1 subscriber",
            "server CPU (% of a core)",
            "CPU vs no subscriber",
            "deltas received",
            "target: p99 < 20 ms at 1000",
        ])
    );
    for (t, transport) in transports.iter().enumerate() {
        let one: Vec<f64> = results[t][0].iter().map(|f| f.p99_ms).collect();
        for (s, size) in options.sizes.iter().enumerate() {
            let runs = &results[t][s];
            let p50: Vec<f64> = runs.iter().map(|f| f.p50_ms).collect();
            let p99: Vec<f64> = runs.iter().map(|f| f.p99_ms).collect();
            let cpu: Vec<f64> = runs.iter().map(|f| f.cpu_percent).collect();
            let got: Vec<f64> = runs.iter().map(|f| 100.0 * f.received).collect();
            let target = if *size == 1000 {
                verdict(median(&p99) < TARGET_P99_MS)
            } else {
                "–"
            };
            println!(
                "{}",
                row(&[
                    transport.name(),
                    &size.to_string(),
                    &summary(&p50),
                    &summary(&p99),
                    &bench_support::times(&p99, &one),
                    &summary(&cpu),
                    &bench_support::times(&cpu, &cpu_ref),
                    &format!("{} %", summary(&got)),
                    target,
                ])
            );
        }
    }
}

// ---------------------------------------------------------------- memory

/// One memory measurement: KiB figures.
#[derive(Default)]
struct Memory {
    idle: f64,
    per_session: f64,
    sessions_base: f64,
    per_ws: f64,
    ws_base: f64,
    ws_total: f64,
    per_sse: f64,
    sse_base: f64,
    sse_total: f64,
    per_worker: f64,
    workers_base: f64,
}

fn memory(options: &Options, fake: &FakeModel, dir: &Path) -> Result<(), String> {
    let mut runs = Vec::new();
    for run in 0..options.runs {
        eprintln!("bench_events: memory run {}/{}", run + 1, options.runs);
        let mut m = Memory::default();
        let run_dir = |part: &str| dir.join(format!("memory-{run}-{part}"));
        let items = options.items;
        (m.idle, m.per_session) = with_server(fake, &run_dir("sessions"), |server, agent| {
            memory_sessions(server, agent, items)
        })?;
        m.sessions_base = m.idle;
        (m.ws_base, m.ws_total) = with_server(fake, &run_dir("ws"), |server, agent| {
            memory_streams(server, agent, items, Transport::WebSocket)
        })?;
        m.per_ws = (m.ws_total - m.ws_base) / items as f64;
        (m.sse_base, m.sse_total) = with_server(fake, &run_dir("sse"), |server, agent| {
            memory_streams(server, agent, items, Transport::Sse)
        })?;
        m.per_sse = (m.sse_total - m.sse_base) / items as f64;
        (m.workers_base, m.per_worker) =
            with_server(fake, &run_dir("workers"), |server, agent| {
                memory_workers(server, agent, fake, options.workers)
            })?;
        runs.push(m);
    }
    print_memory(options, &runs);
    Ok(())
}

/// RSS in KiB once it has settled a moment.
fn settled_rss(server: &Server) -> f64 {
    std::thread::sleep(Duration::from_millis(500));
    server.rss_kib() as f64
}

/// Starts a fresh server, runs `body` against it, stops it.
fn with_server<T>(
    fake: &FakeModel,
    dir: &Path,
    body: impl FnOnce(&Server, &ureq::Agent) -> Result<T, String>,
) -> Result<T, String> {
    let server = start_server(fake, dir)?;
    let result = body(&server, &agent());
    server.stop();
    result
}

/// (idle RSS, KiB per idle session).
fn memory_sessions(
    server: &Server,
    agent: &ureq::Agent,
    items: usize,
) -> Result<(f64, f64), String> {
    // Idle: started, one health check answered (what any supervisor does).
    health(server, agent);
    let idle = settled_rss(server);
    for _ in 0..items {
        create_session(server, agent)?;
    }
    Ok((idle, (settled_rss(server) - idle) / items as f64))
}

/// (RSS before, RSS with `items` idle clients open on one session), KiB.
fn memory_streams(
    server: &Server,
    agent: &ureq::Agent,
    items: usize,
    transport: Transport,
) -> Result<(f64, f64), String> {
    let id = create_session(server, agent)?;
    // One client stays open through the baseline, so first-use costs are in it.
    let mut ws_clients = Vec::new();
    let mut sse_clients = Vec::new();
    let mut open_one = || -> Result<(), String> {
        match transport {
            Transport::WebSocket => ws_clients.push(connect_ws(&server.addr, &id)?),
            Transport::Sse => sse_clients.push(connect_sse(&server.addr, &id)?.0),
        }
        Ok(())
    };
    open_one()?;
    wait_until(SETTLE, "the server to count the first stream", || {
        open_streams(server, agent) >= 1
    })?;
    let base = settled_rss(server);
    for _ in 0..items {
        open_one()?;
    }
    wait_until(SETTLE, "the server to count the streams", || {
        open_streams(server, agent) > items as u64
    })?;
    let total = settled_rss(server);
    drop(ws_clients);
    drop(sse_clients);
    Ok((base, total))
}

/// (RSS before, KiB per running worker): `workers` turns stalled on the model.
fn memory_workers(
    server: &Server,
    agent: &ureq::Agent,
    fake: &FakeModel,
    workers: usize,
) -> Result<(f64, f64), String> {
    fake.set(Script::Stall);
    let mut ids = Vec::new();
    for _ in 0..workers {
        ids.push(create_session(server, agent)?);
    }
    let base = settled_rss(server);
    for id in &ids {
        post_message(server, agent, id)?;
    }
    wait_until(SETTLE, "every turn to reach the model", || {
        fake.stalled.load(Ordering::SeqCst) >= workers
    })?;
    let running = health(server, agent)["workers"]["running_turns"]
        .as_u64()
        .unwrap_or(0);
    if running < workers as u64 {
        return Err(format!("only {running} turns running"));
    }
    let per = (settled_rss(server) - base) / workers as f64;
    fake.release.store(true, Ordering::SeqCst);
    wait_until(SETTLE, "the stalled turns to end", || {
        fake.stalled.load(Ordering::SeqCst) == 0
    })?;
    Ok((base, per))
}

fn print_memory(options: &Options, runs: &[Memory]) {
    let items = options.items;
    let get = |f: fn(&Memory) -> f64| -> Vec<f64> { runs.iter().map(f).collect() };
    println!(
        "\n### Memory: server RSS from /proc, median (min–max) of {} runs, fresh server per \
         row group\n",
        options.runs
    );
    println!(
        "Per-item figures: RSS increase over the baseline just before the items were added, \
         divided by their count ({items} sessions, {items} clients, {} workers). KiB = 1024 \
         bytes; targets in decimal units (15 MB = 15 000 000 bytes, 100 KB = 100 000 bytes).\n",
        options.workers
    );
    println!(
        "{}",
        header(&["measure", "value", "reference", "ratio", "target"])
    );
    let idle = get(|m| m.idle);
    let kib = |v: &[f64]| format!("{} KiB", summary(v));
    let mib = |v: &[f64]| {
        let mib: Vec<f64> = v.iter().map(|k| k / 1024.0).collect();
        format!("{} MiB", summary(&mib))
    };
    let bytes_under = |v: &[f64], limit: f64| verdict(median(v) * 1024.0 < limit);
    println!(
        "{}",
        row(&[
            "RSS at idle (after start)",
            &mib(&idle),
            "–",
            "–",
            &format!("< 15 MB: {}", bytes_under(&idle, TARGET_IDLE_BYTES)),
        ])
    );
    let per_item = |name: &str, per: Vec<f64>, base: Vec<f64>, target: Option<f64>| {
        let increase: Vec<f64> = per.iter().map(|p| p * items as f64).collect();
        let target = match target {
            Some(limit) => format!("< 100 KB: {}", bytes_under(&per, limit)),
            None => "–".into(),
        };
        let ratio = match median(&base) {
            b if b > 0.0 => format!("+{:.0} % over baseline", 100.0 * median(&increase) / b),
            _ => "–".into(),
        };
        println!(
            "{}",
            row(&[
                name,
                &kib(&per),
                &format!("baseline {}", mib(&base)),
                &ratio,
                &target
            ])
        );
    };
    per_item(
        "per idle session",
        get(|m| m.per_session),
        get(|m| m.sessions_base),
        None,
    );
    per_item(
        "per idle WebSocket client",
        get(|m| m.per_ws),
        get(|m| m.ws_base),
        Some(TARGET_SUBSCRIBER_BYTES),
    );
    per_item(
        "per idle SSE client",
        get(|m| m.per_sse),
        get(|m| m.sse_base),
        Some(TARGET_SUBSCRIBER_BYTES),
    );
    let workers = options.workers;
    let per_worker = get(|m| m.per_worker);
    let worker_base = get(|m| m.workers_base);
    let increase: Vec<f64> = per_worker.iter().map(|p| p * workers as f64).collect();
    println!(
        "{}",
        row(&[
            "per running worker (turn stalled on the model)",
            &kib(&per_worker),
            &format!("baseline {}", mib(&worker_base)),
            &format!(
                "+{:.0} % over baseline",
                100.0 * median(&increase) / median(&worker_base).max(1.0)
            ),
            "–",
        ])
    );
    for (name, total) in [
        (
            "RSS with {items} WebSocket subscribers",
            get(|m| m.ws_total),
        ),
        ("RSS with {items} SSE subscribers", get(|m| m.sse_total)),
    ] {
        println!(
            "{}",
            row(&[
                &name.replace("{items}", &items.to_string()),
                &mib(&total),
                &format!("idle {}", mib(&idle)),
                &bench_support::times(&total, &idle),
                "–",
            ])
        );
    }
}
