//! `WS /ws/{session_id}[?after=SEQ]`: events out (replay, then live), commands in.
//!
//! Full duplex over tiny_http (DESIGN §7): the upgraded stream cannot be split or given a
//! timeout, so a reader thread reads frames from it (its own writes are discarded), while
//! every frame we send goes through one locked writer over a duplicate of the socket. The
//! event thread owns the reader thread and joins it; either side ending ends both.
//!
//! The upgrade itself ([`Handshake`], [`accept_response`]), the locked [`Writer`] and the
//! write-discarding [`ReadOnly`] reader are shared with the VNC proxy (`vnc_proxy.rs`), whose
//! connections take the same path through the stream registry ([`WsKind::Vnc`]).
//!
//! Close codes: 1000 normal, 1001 server shutting down or heartbeat timeout, 1009 message too
//! big, 4000 too slow a consumer (reason says `resume with ?after=<seq>`), 4404 session deleted.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tiny_http::{ReadWrite, Request, Response};
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use super::error::{ApiError, ApiResult};
use super::feed::{BATCH, Feed, Next, ReplayError};
use super::limits::{Rate, RateCheck};
use super::messages::{content_of, queued_json};
use super::reply::make_header;
use super::request::{header, query_u64};
use super::router::Params;
use super::sessions::existing;
use super::streams::{POLL, StreamStart};
use super::vnc_proxy::{LinkCount, VncLink};
use crate::app::App;
use crate::session::CloseReason;

const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long we wait for the client's reply to our close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// A validated WebSocket upgrade: the handshake and what the connection will carry.
pub(crate) struct WsPlan {
    pub handshake: Handshake,
    pub kind: WsKind,
}

/// What an upgraded connection runs.
pub(crate) enum WsKind {
    /// Session events out, commands in (this module).
    Events { session_id: String, after: i64 },
    /// Binary frames bridged to a desktop's VNC server ([`super::vnc_proxy`]).
    Vnc(VncLink),
}

/// The client's handshake headers, checked.
pub(crate) struct Handshake {
    key: String,
    /// The subprotocol we agreed to (echoed in `Sec-WebSocket-Protocol`).
    protocol: Option<&'static str>,
}

impl Handshake {
    /// Checks the upgrade headers (400 when it is not a WebSocket upgrade) and picks the
    /// first of `supported` subprotocols the client offers, if any.
    pub(crate) fn from_request(request: &Request, supported: &[&'static str]) -> ApiResult<Self> {
        let upgrade = header(request, "Upgrade").unwrap_or("");
        if !upgrade.eq_ignore_ascii_case("websocket") {
            return Err(ApiError::bad_request(
                "expected a WebSocket upgrade request",
            ));
        }
        if header(request, "Sec-WebSocket-Version").map(str::trim) != Some("13") {
            return Err(ApiError::bad_request("Sec-WebSocket-Version must be 13"));
        }
        let key = header(request, "Sec-WebSocket-Key")
            .map(|k| k.trim().to_string())
            .ok_or_else(|| ApiError::bad_request("missing Sec-WebSocket-Key"))?;
        let offered = header(request, "Sec-WebSocket-Protocol").unwrap_or("");
        let protocol = supported
            .iter()
            .copied()
            .find(|p| offered.split(',').any(|o| o.trim() == *p));
        Ok(Handshake { key, protocol })
    }
}

/// Validates the session and the handshake headers (400 when it is not a WS upgrade).
pub(crate) fn start(app: &App, request: &mut Request, params: &Params) -> ApiResult<StreamStart> {
    existing(app, &params.id)?;
    let handshake = Handshake::from_request(request, &[])?;
    let after = query_u64(request.url(), "after", 0, i64::MAX as u64)? as i64;
    Ok(StreamStart::Ws(WsPlan {
        handshake,
        kind: WsKind::Events {
            session_id: params.id.clone(),
            after,
        },
    }))
}

/// The 101 response (tiny_http adds `Connection` and `Upgrade`).
pub(crate) fn accept_response(plan: &WsPlan) -> Response<io::Empty> {
    let accept = tungstenite::handshake::derive_accept_key(plan.handshake.key.as_bytes());
    let response = Response::new_empty(tiny_http::StatusCode(101))
        .with_header(make_header("Sec-WebSocket-Accept", &accept));
    match plan.handshake.protocol {
        Some(protocol) => response.with_header(make_header("Sec-WebSocket-Protocol", protocol)),
        None => response,
    }
}

/// Everything the stream thread owns.
pub(crate) struct WsStream {
    pub app: App,
    pub plan: WsPlan,
    pub upgraded: Box<dyn ReadWrite + Send>,
    pub socket: TcpStream,
    pub stop: Arc<AtomicBool>,
    /// Open VNC links of this server.
    pub vnc_links: LinkCount,
    /// The client's message rate limit.
    pub rate: RateCheck,
}

impl WsStream {
    /// Runs the connection until either side ends it.
    pub(crate) fn run(self) {
        match self.plan.kind {
            WsKind::Events { session_id, after } => EventStream {
                app: self.app,
                session_id,
                after,
                upgraded: self.upgraded,
                socket: self.socket,
                stop: self.stop,
                rate: self.rate,
            }
            .run(),
            WsKind::Vnc(link) => {
                let _open = self.vnc_links.enter();
                let heartbeat = self.app.config.http.heartbeat;
                link.run(self.upgraded, self.socket, &self.stop, heartbeat);
            }
        }
    }
}

/// Everything the event thread owns.
struct EventStream {
    app: App,
    session_id: String,
    after: i64,
    upgraded: Box<dyn ReadWrite + Send>,
    socket: TcpStream,
    stop: Arc<AtomicBool>,
    rate: RateCheck,
}

/// The one writer: every outgoing frame, from either thread, goes through this lock.
pub(crate) struct Writer(Mutex<WebSocket<TcpStream>>);

impl Writer {
    /// A server-side writer over (a duplicate of) the connection's socket.
    pub(crate) fn new(socket: TcpStream) -> Writer {
        Writer(Mutex::new(WebSocket::from_raw_socket(
            socket,
            Role::Server,
            None,
        )))
    }

    /// Sends one whole frame; `false` when the connection is gone or already closing.
    pub(crate) fn send(&self, message: Message) -> bool {
        let mut ws = self.0.lock().unwrap_or_else(|p| p.into_inner());
        ws.send(message).is_ok()
    }

    /// Sends frames with a single flush (one write for the lot, when they fit tungstenite's
    /// write buffer); `false` when the connection is gone or closing.
    pub(crate) fn send_batch(&self, messages: Vec<Message>) -> bool {
        let mut ws = self.0.lock().unwrap_or_else(|p| p.into_inner());
        messages.into_iter().all(|m| ws.write(m).is_ok()) && ws.flush().is_ok()
    }

    /// Writes a frame the caller encoded itself (the VNC proxy builds binary frames in place
    /// around the data it read, sparing two copies); `false` when the connection is gone or
    /// closing. Sound beside [`Writer::send`]: tungstenite's buffer is empty after every
    /// successful send, and a failed one ends the connection.
    pub(crate) fn send_encoded(&self, frame: &[u8]) -> bool {
        let mut ws = self.0.lock().unwrap_or_else(|p| p.into_inner());
        ws.can_write() && ws.get_mut().write_all(frame).is_ok()
    }

    fn json(&self, value: &Value) -> bool {
        self.send(Message::text(value.to_string()))
    }

    /// Sends a close frame (only the first one is sent; later ones return `false`).
    pub(crate) fn close(&self, code: u16, reason: &str) -> bool {
        self.send(Message::Close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: reason.to_string().into(),
        })))
    }
}

/// State both threads see.
struct Shared {
    /// Set by whichever side ends first.
    done: AtomicBool,
    /// Milliseconds since `epoch` when the client last sent anything.
    last_seen_ms: AtomicU64,
    epoch: Instant,
}

impl Shared {
    fn touch(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last_seen_ms.store(now, Ordering::SeqCst);
    }

    fn silent_for(&self) -> Duration {
        let last = self.last_seen_ms.load(Ordering::SeqCst);
        self.epoch.elapsed() - Duration::from_millis(last)
    }

    fn is_done(&self) -> bool {
        self.done.load(Ordering::SeqCst)
    }
}

impl EventStream {
    /// Runs the connection: starts the reader, streams events, then joins the reader.
    fn run(self) {
        let _ = self.socket.set_read_timeout(Some(POLL));
        let _ = self.socket.set_write_timeout(Some(WRITE_TIMEOUT));
        // Each flush is a whole batch of frames: send it now, not after the previous ACK.
        let _ = self.socket.set_nodelay(true);
        let Ok(write_socket) = self.socket.try_clone() else {
            return;
        };
        let writer = Arc::new(Writer::new(write_socket));
        let shared = Arc::new(Shared {
            done: AtomicBool::new(false),
            last_seen_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        });
        let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
        let reader = Reader {
            app: self.app.clone(),
            session_id: self.session_id.clone(),
            writer: writer.clone(),
            shared: shared.clone(),
            stop: self.stop.clone(),
            rate: self.rate.clone(),
        };
        let config = self.app.config.http.max_ws_message_bytes;
        let upgraded = self.upgraded;
        let spawned = std::thread::Builder::new()
            .name("ws-reader".into())
            .spawn(move || {
                reader.run(upgraded, config);
                let _ = done_tx.send(());
            });
        let Ok(reader_thread) = spawned else {
            let _ = self.socket.shutdown(Shutdown::Both);
            return;
        };
        let events = EventLoop {
            app: &self.app,
            writer: &writer,
            shared: &shared,
            stop: &self.stop,
        };
        if events.run(&self.session_id, self.after) {
            let _ = done_rx.recv_timeout(CLOSE_GRACE);
        }
        shared.done.store(true, Ordering::SeqCst);
        let _ = self.socket.shutdown(Shutdown::Both);
        let _ = reader_thread.join();
    }
}

/// The event side: replay, live events, heartbeats.
struct EventLoop<'a> {
    app: &'a App,
    writer: &'a Writer,
    shared: &'a Shared,
    stop: &'a AtomicBool,
}

impl EventLoop<'_> {
    /// Streams until something ends it; `true` when we sent a close frame (and should give
    /// the client a moment to answer it).
    fn run(&self, session_id: &str, after: i64) -> bool {
        let mut feed = Feed::open(self.app, session_id, after);
        let replayed = feed.replay(
            |event| match self.writer.send(Message::text(&*event.json)) {
                true => Ok(()),
                false => Err(()),
            },
        );
        match replayed {
            Ok(()) => self.live(&mut feed),
            Err(ReplayError::Write(())) => false,
            Err(ReplayError::Store(err)) => {
                log::warn!("ws replay failed: {err}");
                self.writer
                    .close(1011, "store unavailable; reconnect later")
            }
        }
    }

    fn live(&self, feed: &mut Feed) -> bool {
        let heartbeat = self.app.config.http.heartbeat;
        let mut last_ping = Instant::now();
        loop {
            if self.shared.is_done() {
                return false;
            }
            if self.stop.load(Ordering::SeqCst) {
                return self.writer.close(1001, "server shutting down");
            }
            if self.shared.silent_for() > heartbeat * 3 {
                return self
                    .writer
                    .close(1001, "heartbeat timeout: no frame from the client");
            }
            if last_ping.elapsed() >= heartbeat {
                last_ping = Instant::now();
                if !self.writer.send(Message::Ping(Vec::new().into())) {
                    return false;
                }
            }
            match feed.next(POLL.min(heartbeat)) {
                Next::Event(event) => {
                    // Whatever else is already queued goes out with it in one write: a client
                    // that fell behind catches up in one syscall, not one per event.
                    let mut batch = vec![Message::text(&*event.json)];
                    let closed = feed.drain_ready(BATCH, |event| {
                        batch.push(Message::text(&*event.json));
                        Ok::<(), ()>(())
                    });
                    if !self.writer.send_batch(batch) {
                        return false;
                    }
                    if let Ok(Some(reason)) = closed {
                        return self.closed(reason, feed.last_seq());
                    }
                }
                Next::Idle => {}
                Next::Closed(reason) => return self.closed(reason, feed.last_seq()),
            }
        }
    }

    fn closed(&self, reason: CloseReason, last_seq: i64) -> bool {
        match reason {
            CloseReason::Lagged => self.writer.close(
                4000,
                &format!("lagged: too slow; resume with ?after={last_seq}"),
            ),
            CloseReason::SessionDeleted => self.writer.close(4404, "session deleted"),
            CloseReason::Shutdown => self.writer.close(1001, "server shutting down"),
            CloseReason::Open => self.writer.close(1000, "closed"),
        }
    }
}

/// The upgraded stream with its writes discarded: tungstenite answers pings and closes on the
/// stream it reads from, but every frame must go through the one locked [`Writer`].
pub(crate) struct ReadOnly(pub Box<dyn ReadWrite + Send>);

impl Read for ReadOnly {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for ReadOnly {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The reading side: client frames in, acks and errors out through the writer.
struct Reader {
    app: App,
    session_id: String,
    writer: Arc<Writer>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    rate: RateCheck,
}

impl Reader {
    fn run(self, upgraded: Box<dyn ReadWrite + Send>, max_size: usize) {
        // Clients send small commands and pongs: a small read buffer (tungstenite's default is
        // 128 KiB, resident once touched) keeps a thousand open streams cheap; larger messages
        // still arrive, in more reads.
        let config = WebSocketConfig::default()
            .max_message_size(Some(max_size))
            .max_frame_size(Some(max_size))
            .read_buffer_size(8 * 1024);
        let mut ws = WebSocket::from_raw_socket(ReadOnly(upgraded), Role::Server, Some(config));
        while !self.shared.is_done() && !self.stop.load(Ordering::SeqCst) {
            match ws.read() {
                Ok(message) => {
                    self.shared.touch();
                    if !self.handle(message) {
                        break;
                    }
                }
                Err(tungstenite::Error::Io(err)) if is_timeout(&err) => {}
                Err(tungstenite::Error::Capacity(_)) => {
                    self.writer.close(1009, "message too big");
                    break;
                }
                Err(_) => break,
            }
        }
        self.shared.done.store(true, Ordering::SeqCst);
    }

    /// Handles one client frame; `false` ends the connection.
    fn handle(&self, message: Message) -> bool {
        match message {
            Message::Text(text) => self.writer.json(&self.command(text.as_str())),
            Message::Binary(_) => self.writer.json(&error_frame(&ApiError::bad_request(
                "binary frames are not accepted; send JSON text",
            ))),
            Message::Ping(payload) => self.writer.send(Message::Pong(payload)),
            Message::Pong(_) | Message::Frame(_) => true,
            Message::Close(frame) => {
                let code = frame.map_or(1000, |f| u16::from(f.code));
                let code = if code == 1005 { 1000 } else { code };
                self.writer.close(code, "");
                false
            }
        }
    }

    /// The reply to a text command (never an error that ends the connection).
    fn command(&self, text: &str) -> Value {
        match self.try_command(text) {
            Ok(reply) => reply,
            Err(err) => error_frame(&err),
        }
    }

    fn try_command(&self, text: &str) -> ApiResult<Value> {
        let mut body: Value = serde_json::from_str(text)
            .map_err(|err| ApiError::bad_request(format!("malformed JSON: {err}")))?;
        let kind = body
            .as_object_mut()
            .and_then(|map| map.remove("type"))
            .and_then(|t| t.as_str().map(String::from))
            .ok_or_else(|| ApiError::invalid("type", "must be \"message\" or \"cancel\""))?;
        match kind.as_str() {
            "message" => {
                let content = content_of(Some(&body))?;
                self.rate.take(Rate::Messages)?;
                let record = self.app.sessions.post_message(&self.session_id, &content)?;
                let mut ack = queued_json(&record);
                ack["type"] = json!("ack");
                Ok(ack)
            }
            "cancel" => {
                let cancelled = self.app.sessions.cancel(&self.session_id)?;
                Ok(json!({"type": "ack", "action": "cancel", "cancelled": cancelled}))
            }
            other => Err(ApiError::invalid(
                "type",
                format!("unknown type {other:?}; expected \"message\" or \"cancel\""),
            )),
        }
    }
}

/// A read or write that timed out (or was interrupted): a polling point, not an error.
pub(crate) fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// `{"type":"error","error":<code>,"detail":<why>}`, plus `retry_after` (seconds) when rate
/// limited.
fn error_frame(err: &ApiError) -> Value {
    let mut frame = json!({"type": "error", "error": err.code, "detail": err.detail});
    if let Some(seconds) = err.retry_after {
        frame["retry_after"] = json!(seconds);
    }
    frame
}
