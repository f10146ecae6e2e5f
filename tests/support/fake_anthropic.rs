//! A fake Anthropic Messages API speaking the real wire format, scripted per test.
//!
//! A real HTTP/1.1 server on `127.0.0.1:0` (raw `TcpListener`, one thread per connection, one
//! request per connection) that answers each `POST /v1/messages` with the next [`Reply`] of
//! its FIFO script, records every request, and validates it like the real API would: an
//! invalid request is answered with the real API's 400 (or 401) and recorded in
//! [`FakeAnthropic::violations`] without consuming a scripted reply.
//!
//! ```ignore
//! let fake = FakeAnthropic::start();
//! fake.push(Reply::error(529, "overloaded_error", "Overloaded"))
//!     .push(Reply::tool_use("toolu_1", "bash", json!({"command": "ls"})).with_leading_text("Sure."));
//! // point ANTHROPIC_BASE_URL (ModelConfig::base_url) at fake.url(), run the code under test…
//! assert!(fake.wait_for_requests(2, Duration::from_secs(5)));
//! assert_eq!(fake.requests()[1].header("x-stainless-retry-count").as_deref(), Some("1"));
//! assert!(fake.violations().is_empty(), "{:?}", fake.violations());
//! ```

mod reply;
mod validate;

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

// Not every test crate that includes `support` uses every builder.
#[allow(unused_imports)]
pub use self::reply::{Reply, redacted_thinking_block, text_block, thinking_block, tool_use_block};
#[allow(unused_imports)]
pub use self::validate::Violation;

use self::reply::{Kind, StreamEnd};

/// How long the fake waits for a request's bytes, and to write, before giving up.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// Header names in lower case, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The parsed JSON body (`Value::Null` if it was not JSON).
    pub body: Value,
    pub received_at: Instant,
    /// What the validation found wrong (empty: the real API would have accepted it).
    pub violations: Vec<Violation>,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }
}

/// The fake server. Dropping it stops the server and every connection it still holds.
pub struct FakeAnthropic {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when a request is recorded or the fake stops.
    changed: Condvar,
}

#[derive(Default)]
struct State {
    script: VecDeque<Reply>,
    requests: Vec<RecordedRequest>,
    validate: bool,
    stopped: bool,
    connections: Vec<JoinHandle<()>>,
}

impl FakeAnthropic {
    /// Starts a fake on a free loopback port.
    pub fn start() -> FakeAnthropic {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake Messages API");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                validate: true,
                ..State::default()
            }),
            changed: Condvar::new(),
        });
        let acceptor = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("fake-anthropic".into())
                .spawn(move || accept_loop(listener, shared))
                .expect("spawn the fake's thread")
        };
        FakeAnthropic {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// The base URL (`http://127.0.0.1:PORT`), for `ANTHROPIC_BASE_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Appends a reply to the script.
    pub fn push(&self, reply: Reply) -> &FakeAnthropic {
        self.shared.lock().script.push_back(reply);
        self
    }

    /// Scripted replies not yet used.
    pub fn pending(&self) -> usize {
        self.shared.lock().script.len()
    }

    /// Turns request validation on (the default) or off.
    pub fn set_validation(&self, on: bool) {
        self.shared.lock().validate = on;
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// Every validation failure so far, as `request #n: message`.
    pub fn violations(&self) -> Vec<String> {
        let state = self.shared.lock();
        state
            .requests
            .iter()
            .enumerate()
            .flat_map(|(n, r)| {
                r.violations
                    .iter()
                    .map(move |v| format!("request #{n}: {}", v.message))
            })
            .collect()
    }

    /// Waits until at least `n` requests arrived; `false` on timeout.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        while state.requests.len() < n {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = match self.shared.changed.wait_timeout(state, deadline - now) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        true
    }
}

impl Drop for FakeAnthropic {
    fn drop(&mut self) {
        self.shared.lock().stopped = true;
        self.shared.changed.notify_all();
        // Wake the blocking accept() so the acceptor sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let connections = std::mem::take(&mut self.shared.lock().connections);
        for connection in connections {
            let _ = connection.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits `duration` unless the fake stops first; `false` if it stopped.
    fn pause(&self, duration: Duration) -> bool {
        let deadline = Instant::now() + duration;
        let mut state = self.lock();
        loop {
            if state.stopped {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            state = match self.changed.wait_timeout(state, deadline - now) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.lock().stopped {
            return;
        }
        let Ok(stream) = stream else { continue };
        let handler = {
            let shared = shared.clone();
            std::thread::spawn(move || {
                if let Err(e) = serve(stream, &shared) {
                    eprintln!("fake Anthropic: connection ended: {e}");
                }
            })
        };
        let mut state = shared.lock();
        state.connections.retain(|h| !h.is_finished());
        state.connections.push(handler);
    }
}

/// The parsed head and body of one HTTP request.
struct Incoming {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn read_request(stream: &TcpStream) -> io::Result<Option<Incoming>> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None); // a wake-up connection, or a client that gave up
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(Some(Incoming {
        method,
        path,
        headers,
        body,
    }))
}

fn serve(mut stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let Some(incoming) = read_request(&stream)? else {
        return Ok(());
    };
    let (number, reply, violation, model) = record(shared, incoming);
    let request_id = format!("req_fake_{number:04}");
    if let Some(violation) = violation {
        return write_error(
            &mut stream,
            violation.status,
            violation.error_type,
            &violation.message,
            &request_id,
            &[],
        );
    }
    let request_id = reply.request_id.clone().unwrap_or(request_id);
    if !shared.pause(reply.delay) {
        return Ok(());
    }
    match &reply.kind {
        Kind::Error {
            status,
            error_type,
            message,
        } => write_error(
            &mut stream,
            *status,
            error_type,
            message,
            &request_id,
            &reply.headers,
        ),
        Kind::Raw {
            status,
            content_type,
            body,
        } => {
            let mut head = head(*status, content_type, &request_id, &reply.headers);
            head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
            stream.write_all(head.as_bytes())?;
            stream.write_all(body)?;
            stream.flush()
        }
        Kind::Stream { .. } => {
            write_stream(&mut stream, shared, &reply, number, &request_id, &model)
        }
    }
}

/// Records the request; picks the reply (an invalid request consumes none).
fn record(shared: &Shared, incoming: Incoming) -> (usize, Reply, Option<Violation>, String) {
    let body: Value = serde_json::from_slice(&incoming.body).unwrap_or(Value::Null);
    let mut state = shared.lock();
    let number = state.requests.len();
    let violations = if state.validate {
        route_violations(&incoming).unwrap_or_else(|| {
            validate::validate(&|name| header_of(&incoming.headers, name), &body)
        })
    } else {
        Vec::new()
    };
    let violation = violations.first().cloned();
    let reply = match violation {
        Some(_) => Reply::text("unused"),
        None => state
            .script
            .pop_front()
            .unwrap_or_else(|| Reply::unscripted(number)),
    };
    let model = body["model"].as_str().unwrap_or("claude-fake").to_string();
    state.requests.push(RecordedRequest {
        method: incoming.method,
        path: incoming.path,
        headers: incoming.headers,
        body,
        received_at: Instant::now(),
        violations,
    });
    drop(state);
    shared.changed.notify_all();
    (number, reply, violation, model)
}

fn route_violations(incoming: &Incoming) -> Option<Vec<Violation>> {
    let path = incoming.path.split('?').next().unwrap_or_default();
    if incoming.method == "POST" && path == "/v1/messages" {
        return None;
    }
    Some(vec![Violation {
        status: 404,
        error_type: "not_found_error",
        message: format!("Not found: {} {}", incoming.method, incoming.path),
    }])
}

fn header_of(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

fn head(status: u16, content_type: &str, request_id: &str, extra: &[(String, String)]) -> String {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\nrequest-id: {request_id}\r\nconnection: close\r\n",
        reason(status)
    );
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        529 => "Overloaded",
        _ => "Status",
    }
}

fn write_error(
    stream: &mut TcpStream,
    status: u16,
    error_type: &str,
    message: &str,
    request_id: &str,
    extra: &[(String, String)],
) -> io::Result<()> {
    let body = reply::error_body(error_type, message, request_id);
    let mut head = head(status, "application/json", request_id, extra);
    head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes())?;
    stream.write_all(&body)?;
    stream.flush()
}

/// A chunked `text/event-stream` body, one HTTP chunk per event (or per `write_size` piece).
fn write_stream(
    stream: &mut TcpStream,
    shared: &Shared,
    reply: &Reply,
    number: usize,
    request_id: &str,
    model: &str,
) -> io::Result<()> {
    let Kind::Stream {
        blocks,
        stop_reason,
        end,
    } = &reply.kind
    else {
        unreachable!("only streams are written here");
    };
    let mut events = reply::stream_events(
        blocks,
        stop_reason,
        reply.usage,
        &format!("msg_fake_{number:04}"),
        model,
    );
    let cut = match end {
        StreamEnd::Complete => None,
        StreamEnd::ErrorAfter {
            events: n,
            error_type,
            message,
        } => {
            events.truncate(*n);
            events.push(reply::error_event(error_type, message));
            None
        }
        StreamEnd::ResetAfter(n) => Some(*n),
    };
    let mut head = head(
        200,
        "text/event-stream; charset=utf-8",
        request_id,
        &reply.headers,
    );
    head.push_str("cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n");
    stream.write_all(head.as_bytes())?;
    stream.flush()?;
    for (i, (name, data)) in events.iter().enumerate() {
        if cut == Some(i) {
            return stream.shutdown(Shutdown::Both);
        }
        if i > 0 && !shared.pause(reply.event_delay) {
            return Ok(());
        }
        let frame = reply::sse_frame(name, data);
        for piece in frame.chunks(reply.write_size.unwrap_or(frame.len())) {
            write!(stream, "{:x}\r\n", piece.len())?;
            stream.write_all(piece)?;
            stream.write_all(b"\r\n")?;
            stream.flush()?;
        }
    }
    if cut.is_some() {
        return stream.shutdown(Shutdown::Both);
    }
    stream.write_all(b"0\r\n\r\n")?;
    stream.flush()
}
