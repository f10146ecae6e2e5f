//! Shared test support: the fake Messages API, an in-process server, WS/SSE/HTTP clients.
#![allow(dead_code)]

pub mod db;
pub mod fake_anthropic;
pub mod history;
pub mod postgres_cluster;
pub mod server_process;
pub mod webdriver;
pub mod xvfb;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use computer_use_server::app::App;
use computer_use_server::config::Config;
use computer_use_server::http::ServerHandle;
use serde_json::Value;

/// How long helpers wait for the server before failing a test.
pub const WAIT: Duration = Duration::from_secs(10);

/// A server running in this process on 127.0.0.1 with a fresh SQLite file.
pub struct TestServer {
    pub app: App,
    pub base: String,
    handle: Option<ServerHandle>,
    addr: SocketAddr,
    env: HashMap<String, String>,
    dir: PathBuf,
    agent: ureq::Agent,
}

/// Starts a server. `env` overrides configuration variables by name (e.g.
/// `("ANTHROPIC_BASE_URL", &fake.url())`, `("API_TOKEN", "s3cret")`); the database is a fresh
/// SQLite file in a temp directory removed on drop; the port is picked by the OS.
pub fn spawn_server(env: &[(&str, &str)]) -> TestServer {
    let dir = std::env::temp_dir().join(format!("cus-test-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut vars: HashMap<String, String> = [
        ("HOST", "127.0.0.1".to_string()),
        ("PORT", "0".to_string()),
        (
            "DATABASE_URL",
            format!("sqlite://{}", dir.join("test.db").display()),
        ),
        ("ANTHROPIC_API_KEY", "sk-ant-test".to_string()),
        ("ANTHROPIC_BASE_URL", "http://127.0.0.1:9".to_string()),
        ("DESKTOP_MODE", "none".to_string()),
        ("HTTP_THREADS", "4".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (k, v) in env {
        vars.insert(k.to_string(), v.to_string());
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    let (app, handle) = start(&vars, listener);
    TestServer {
        app,
        base: format!("http://{addr}"),
        handle: Some(handle),
        addr,
        env: vars,
        dir,
        agent: agent(),
    }
}

fn start(vars: &HashMap<String, String>, listener: TcpListener) -> (App, ServerHandle) {
    let config = Config::from_sources(&[], |name| vars.get(name).cloned()).expect("config");
    let app = App::build(config).expect("App::build");
    let handle = app.serve(listener).expect("serve");
    (app, handle)
}

fn agent() -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(WAIT))
        .build();
    ureq::Agent::new_with_config(config)
}

impl TestServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops the HTTP server and the app (workers, streams).
    pub fn stop(&mut self) {
        if let Some(handle) = self.handle.take() {
            self.app.shutdown();
            handle.shutdown();
        }
    }

    /// Stops, then serves a new App on the same database file and the same port.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + WAIT;
        let listener = loop {
            match TcpListener::bind(self.addr) {
                Ok(listener) => break listener,
                Err(err) if Instant::now() > deadline => panic!("rebind {}: {err}", self.addr),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        let (app, handle) = start(&self.env, listener);
        self.app = app;
        self.handle = Some(handle);
        self.agent = agent();
    }

    /// How many SSE/WebSocket streams the server has open.
    pub fn stream_count(&self) -> usize {
        self.handle.as_ref().map_or(0, |h| h.stream_count())
    }

    /// Any request; `body` is sent as is (no Content-Type unless given in `headers`).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Resp {
        let mut builder = ureq::http::Request::builder()
            .method(method)
            .uri(self.url(path));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let result = match body {
            Some(body) => self.agent.run(builder.body(body.to_vec()).unwrap()),
            None => self.agent.run(builder.body(()).unwrap()),
        };
        Resp::from(result.unwrap_or_else(|err| panic!("{method} {path}: {err}")))
    }

    pub fn get(&self, path: &str) -> Resp {
        self.request("GET", path, &[], None)
    }

    pub fn delete(&self, path: &str) -> Resp {
        self.request("DELETE", path, &[], None)
    }

    /// POST with `Content-Type: application/json`.
    pub fn post_json(&self, path: &str, body: &Value) -> Resp {
        let body = body.to_string();
        let headers = [("Content-Type", "application/json")];
        self.request("POST", path, &headers, Some(body.as_bytes()))
    }

    /// Creates a session with default settings and returns its id.
    pub fn create_session(&self) -> String {
        let resp = self.post_json("/api/sessions", &serde_json::json!({}));
        assert_eq!(resp.status, 201, "{}", resp.body);
        resp.json()["id"].as_str().unwrap().to_string()
    }

    /// Opens an SSE stream on `path` (optionally with `Last-Event-ID`).
    pub fn sse(&self, path: &str, last_event_id: Option<i64>) -> SseClient {
        SseClient::connect(self.addr, path, last_event_id, &[])
    }

    /// Opens a WebSocket on `path` (e.g. `/ws/{id}?after=3`).
    pub fn ws(&self, path: &str) -> WsClient {
        WsClient::connect(self.addr, path, &[]).expect("websocket handshake")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A response read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    /// The body as JSON (panics with the body when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {:?}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl From<ureq::http::Response<ureq::Body>> for Resp {
    fn from(mut response: ureq::http::Response<ureq::Body>) -> Resp {
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().unwrap_or_default();
        Resp {
            status,
            headers,
            body,
        }
    }
}

/// Sends a raw HTTP/1.1 request and reads the response until the server closes or `WAIT`.
pub fn raw_request(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let _ = stream.write_all(request);
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// What an SSE stream yields.
#[derive(Debug, Clone, PartialEq)]
pub enum SseItem {
    /// An event: its `id:` (absent for live-only events) and its `data:` JSON.
    Event { id: Option<i64>, data: Value },
    /// A `: comment` line (keepalives, the closing reason).
    Comment(String),
    /// The chunked body ended or the connection closed.
    End,
}

/// A minimal SSE client over a raw socket: reads the chunked body and splits frames.
pub struct SseClient {
    reader: BufReader<TcpStream>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pending: String,
    /// The last `id:` seen (for reconnecting with `Last-Event-ID`).
    pub last_id: Option<i64>,
}

impl SseClient {
    /// Connects and reads the response head; extra request headers may be given.
    pub fn connect(
        addr: SocketAddr,
        path: &str,
        last_event_id: Option<i64>,
        headers: &[(&str, &str)],
    ) -> SseClient {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut head =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        if let Some(id) = last_event_id {
            head.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).expect("send request");
        let mut reader = BufReader::new(stream);
        let (status, headers) = read_head(&mut reader);
        SseClient {
            reader,
            status,
            headers,
            pending: String::new(),
            last_id: last_event_id,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The next item, or `None` if nothing arrived within `timeout`.
    pub fn next(&mut self, timeout: Duration) -> Option<SseItem> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(item) = self.take_frame() {
                return Some(item);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            self.reader
                .get_ref()
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match read_chunk(&mut self.reader) {
                Ok(Some(chunk)) => self.pending.push_str(&chunk),
                Ok(None) => return Some(SseItem::End),
                Err(err) if is_timeout(&err) => return None,
                Err(_) => return Some(SseItem::End),
            }
        }
    }

    /// The next event (skipping comments); `None` on timeout or end.
    pub fn next_event(&mut self, timeout: Duration) -> Option<(Option<i64>, Value)> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.next(left)? {
                SseItem::Event { id, data } => return Some((id, data)),
                SseItem::Comment(_) => continue,
                SseItem::End => return None,
            }
        }
    }

    /// Waits for a comment containing `text`; `false` on timeout or end.
    pub fn wait_comment(&mut self, text: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.next(left) {
                Some(SseItem::Comment(c)) if c.contains(text) => return true,
                Some(SseItem::End) | None => return false,
                Some(_) => {}
            }
        }
        false
    }

    fn take_frame(&mut self) -> Option<SseItem> {
        let end = self.pending.find("\n\n")?;
        let frame: String = self.pending.drain(..end + 2).collect();
        let (mut id, mut data, mut comment) = (None, None, None);
        for line in frame.lines() {
            if let Some(rest) = line.strip_prefix("id: ") {
                id = rest.trim().parse::<i64>().ok();
            } else if let Some(rest) = line.strip_prefix("data: ") {
                data = Some(serde_json::from_str(rest).expect("data is JSON"));
            } else if let Some(rest) = line.strip_prefix(':') {
                comment = Some(rest.trim().to_string());
            }
        }
        if id.is_some() {
            self.last_id = id;
        }
        match (data, comment) {
            (Some(data), _) => Some(SseItem::Event { id, data }),
            (None, Some(comment)) => Some(SseItem::Comment(comment)),
            (None, None) => self.take_frame(),
        }
    }
}

fn read_head(reader: &mut BufReader<TcpStream>) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    reader.read_line(&mut line).expect("status line");
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).expect("header line");
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            return (status, headers);
        }
        if let Some((k, v)) = trimmed.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
}

/// One chunk of a chunked body; `None` at the terminating chunk or EOF.
fn read_chunk(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<String>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let size = usize::from_str_radix(line.trim(), 16)
        .map_err(|_| std::io::Error::other(format!("bad chunk size {line:?}")))?;
    let mut data = vec![0; size + 2];
    reader.read_exact(&mut data)?;
    if size == 0 {
        return Ok(None);
    }
    data.truncate(size);
    Ok(Some(String::from_utf8_lossy(&data).into_owned()))
}

fn is_timeout(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// A WebSocket client (tungstenite over a TcpStream with read timeouts).
pub struct WsClient {
    pub ws: tungstenite::WebSocket<TcpStream>,
}

/// What a WebSocket read yields.
#[derive(Debug)]
pub enum WsItem {
    Json(Value),
    Close(Option<(u16, String)>),
    Ended,
}

impl WsClient {
    /// Performs the handshake; `Err` carries the HTTP status when the server refused.
    pub fn connect(
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<WsClient, u16> {
        use tungstenite::client::IntoClientRequest;
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
        for (name, value) in headers {
            let name = tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap();
            request
                .headers_mut()
                .insert(name, value.parse().expect("header value"));
        }
        match tungstenite::client(request, stream) {
            Ok((ws, _)) => Ok(WsClient { ws }),
            Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
                Err(resp.status().as_u16())
            }
            Err(err) => panic!("websocket handshake: {err}"),
        }
    }

    pub fn send_json(&mut self, value: &Value) {
        self.ws
            .send(tungstenite::Message::text(value.to_string()))
            .expect("ws send");
    }

    pub fn send_text(&mut self, text: &str) {
        self.ws
            .send(tungstenite::Message::text(text))
            .expect("ws send");
    }

    /// The next text frame as JSON, or a close; `None` on timeout. Pings are answered.
    pub fn next(&mut self, timeout: Duration) -> Option<WsItem> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            self.ws
                .get_ref()
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match self.ws.read() {
                Ok(tungstenite::Message::Text(text)) => {
                    return Some(WsItem::Json(serde_json::from_str(&text).expect("JSON")));
                }
                Ok(tungstenite::Message::Close(frame)) => {
                    let frame = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                    return Some(WsItem::Close(frame));
                }
                Ok(_) => continue,
                Err(tungstenite::Error::Io(err)) if is_timeout(&err) => return None,
                Err(_) => return Some(WsItem::Ended),
            }
        }
    }

    /// The next JSON frame; `None` on timeout, close or end.
    pub fn next_json(&mut self, timeout: Duration) -> Option<Value> {
        match self.next(timeout)? {
            WsItem::Json(value) => Some(value),
            _ => None,
        }
    }

    /// Starts the closing handshake and waits for the server's close frame.
    pub fn close(&mut self) -> Option<WsItem> {
        let _ = self.ws.close(None);
        loop {
            match self.next(WAIT)? {
                WsItem::Json(_) => continue,
                other => return Some(other),
            }
        }
    }
}
