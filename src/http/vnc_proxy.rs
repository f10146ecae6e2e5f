//! `WS /ws/vnc` (the shared desktop) and `WS /ws/vnc/{session_id}` (a session's desktop):
//! binary WebSocket frames bridged to the desktop's VNC server over TCP.
//!
//! The proxy connects only to the address the [`DesktopManager`](crate::desktop::DesktopManager)
//! returns, never to one a client names. It connects before answering the upgrade, so a desktop
//! that cannot be had is an HTTP error (404/503 JSON), not a WebSocket that closes at once.
//!
//! The pump is full duplex on two threads (DESIGN §7). The stream thread reads the VNC socket
//! (up to [`CHUNK`] at a time, one binary frame per read, its header written in place before
//! the data) and writes through the locked [`Writer`] over a duplicate of the client's socket; a second thread it owns reads client frames from the
//! upgraded stream and writes their payload to the VNC socket. Whichever side ends first marks
//! the link done and shuts the VNC socket down; the stream thread then sends a close frame if
//! none was sent, gives the client [`CLOSE_GRACE`] to answer it, shuts the client's socket
//! down (so a blocked read returns) and joins the reader. Text frames are refused with 1003.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tiny_http::{ReadWrite, Request};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Bytes, Message, WebSocket};

use super::error::{ApiError, ApiResult};
use super::router::Params;
use super::sessions::existing;
use super::streams::{POLL, StreamStart};
use super::ws::{Handshake, ReadOnly, Writer, WsKind, WsPlan, is_timeout};
use crate::app::App;
use crate::config::DesktopMode;
use crate::desktop::{DesktopError, Display};
use crate::metrics::{Gauge, GaugeGuard};

/// Subprotocols we agree to; noVNC offers `binary`.
const SUBPROTOCOLS: &[&str] = &["binary"];
/// Connecting to the VNC server (loopback: anything slower means it is not there).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A write to either side that takes longer ends the link.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long we wait for the client's reply to our close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Bytes read from the VNC server per binary frame.
const CHUNK: usize = 64 * 1024;
/// The largest client message accepted (RFB client messages are small; 1009 beyond).
const MAX_MESSAGE: usize = 16 << 20;

/// `WS /ws/vnc`: the shared desktop (started if needed).
pub(crate) fn start_shared(app: &App, request: &mut Request, _: &Params) -> ApiResult<StreamStart> {
    match app.desktops.mode() {
        DesktopMode::PerSession => Err(ApiError::not_found(
            "desktops are per session (DESKTOP_MODE=per-session): connect to /ws/vnc/<session_id>",
        )),
        DesktopMode::None => Err(desktop_error(DesktopError::Disabled)),
        DesktopMode::Shared => {
            let handshake = Handshake::from_request(request, SUBPROTOCOLS)?;
            let display = app.desktops.shared().map_err(desktop_error)?;
            plan(handshake, display)
        }
    }
}

/// `WS /ws/vnc/{session_id}`: that session's desktop (started if needed), or the shared one.
pub(crate) fn start_session(
    app: &App,
    request: &mut Request,
    params: &Params,
) -> ApiResult<StreamStart> {
    existing(app, &params.id)?;
    let handshake = Handshake::from_request(request, SUBPROTOCOLS)?;
    let display = app
        .desktops
        .for_session(&params.id)
        .map_err(desktop_error)?;
    plan(handshake, display)
}

/// Connects to the desktop's VNC server; the link is ready to take over the connection.
fn plan(handshake: Handshake, display: Display) -> ApiResult<StreamStart> {
    let vnc = TcpStream::connect_timeout(&display.vnc_addr, CONNECT_TIMEOUT).map_err(|err| {
        log::warn!("vnc: connecting to {} failed: {err}", display.vnc_addr);
        ApiError::new(
            503,
            "vnc_unavailable",
            format!(
                "the VNC server of display {} is not reachable",
                display.name()
            ),
        )
    })?;
    Ok(StreamStart::Ws(WsPlan {
        handshake,
        kind: WsKind::Vnc(VncLink { vnc, display }),
    }))
}

/// A desktop that cannot be had, as the client sees it.
pub(crate) fn desktop_error(err: DesktopError) -> ApiError {
    let detail = err.to_string();
    match err {
        DesktopError::Disabled => ApiError::new(
            404,
            "desktop_disabled",
            format!("{detail}; start the server with DESKTOP_MODE=shared or per-session"),
        ),
        DesktopError::LimitReached { .. } => ApiError::new(503, "desktop_limit_reached", detail),
        DesktopError::StartFailed(_) => ApiError::new(503, "desktop_unavailable", detail),
        DesktopError::ShuttingDown => ApiError::new(503, "shutting_down", detail),
    }
}

/// The number of open VNC links of one server: the app's `vnc` connection gauge, so
/// `/metrics` and `/health` see it. Cheap to clone.
#[derive(Clone)]
pub(crate) struct LinkCount(Arc<Gauge>);

impl LinkCount {
    pub(crate) fn new(gauge: Arc<Gauge>) -> LinkCount {
        LinkCount(gauge)
    }

    pub(crate) fn get(&self) -> usize {
        usize::try_from(self.0.get()).unwrap_or(0)
    }

    /// Counts a link until the guard drops.
    pub(crate) fn enter(&self) -> GaugeGuard {
        self.0.track()
    }
}

/// A connected VNC server, waiting for the WebSocket it will be bridged to.
pub(crate) struct VncLink {
    vnc: TcpStream,
    display: Display,
}

/// State both pump threads see.
struct Shared {
    /// Set by whichever side ends first.
    done: AtomicBool,
    /// Milliseconds since `epoch` when the client last sent a frame.
    last_seen_ms: AtomicU64,
    epoch: Instant,
}

impl Shared {
    fn is_done(&self) -> bool {
        self.done.load(Ordering::SeqCst)
    }

    fn touch(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last_seen_ms.store(now, Ordering::Relaxed);
    }

    fn silent_for(&self) -> Duration {
        let last = self.last_seen_ms.load(Ordering::Relaxed);
        self.epoch
            .elapsed()
            .saturating_sub(Duration::from_millis(last))
    }
}

/// Why the VNC → client side stopped.
enum End {
    /// The client side ended first (it answered or sent the close itself).
    Peer,
    /// We end the link with this close frame.
    Close(u16, &'static str),
}

impl VncLink {
    /// Bridges until either side ends; returns with both sockets shut and the reader joined.
    /// `socket` duplicates the client's connection; `heartbeat` paces pings to the client.
    pub(crate) fn run(
        self,
        upgraded: Box<dyn ReadWrite + Send>,
        socket: TcpStream,
        stop: &AtomicBool,
        heartbeat: Duration,
    ) {
        log::info!("vnc: link to display {} opened", self.display.name());
        let (vnc_in, writer) = match self.prepare(&socket) {
            Ok(parts) => parts,
            Err(err) => {
                log::warn!("vnc: link not started: {err}");
                let _ = self.vnc.shutdown(Shutdown::Both);
                let _ = socket.shutdown(Shutdown::Both);
                return;
            }
        };
        let writer = Arc::new(writer);
        let shared = Arc::new(Shared {
            done: AtomicBool::new(false),
            last_seen_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        });
        let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
        let up = Upstream {
            vnc: vnc_in,
            writer: writer.clone(),
            shared: shared.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name("vnc-up".into())
            .spawn(move || {
                up.run(upgraded);
                let _ = done_tx.send(());
            });
        let Ok(up_thread) = spawned else {
            let _ = self.vnc.shutdown(Shutdown::Both);
            let _ = socket.shutdown(Shutdown::Both);
            return;
        };
        let end = self.pump_down(&writer, &shared, stop, heartbeat);
        if let End::Close(code, reason) = end {
            writer.close(code, reason);
        }
        shared.done.store(true, Ordering::SeqCst);
        let _ = self.vnc.shutdown(Shutdown::Both);
        let _ = done_rx.recv_timeout(CLOSE_GRACE);
        let _ = socket.shutdown(Shutdown::Both);
        let _ = up_thread.join();
        log::info!("vnc: link to display {} closed", self.display.name());
    }

    /// Timeouts and `TCP_NODELAY` on both sockets; the VNC socket's clone for the reader and
    /// the client's writer.
    fn prepare(&self, socket: &TcpStream) -> io::Result<(TcpStream, Writer)> {
        self.vnc.set_nodelay(true)?;
        self.vnc.set_read_timeout(Some(POLL))?;
        self.vnc.set_write_timeout(Some(WRITE_TIMEOUT))?;
        socket.set_nodelay(true)?;
        socket.set_read_timeout(Some(POLL))?;
        socket.set_write_timeout(Some(WRITE_TIMEOUT))?;
        Ok((self.vnc.try_clone()?, Writer::new(socket.try_clone()?)))
    }

    /// VNC server → client: one binary frame per read, pings every heartbeat.
    fn pump_down(
        &self,
        writer: &Writer,
        shared: &Shared,
        stop: &AtomicBool,
        heartbeat: Duration,
    ) -> End {
        // Room for the longest frame header before the data, so a frame is one write.
        let mut buf = vec![0u8; MAX_HEADER + CHUNK];
        let mut vnc = &self.vnc;
        let mut last_ping = Instant::now();
        loop {
            if shared.is_done() {
                return End::Peer;
            }
            if stop.load(Ordering::SeqCst) {
                return End::Close(1001, "server shutting down");
            }
            if shared.silent_for() > heartbeat * 3 {
                return End::Close(1001, "heartbeat timeout: no frame from the client");
            }
            if last_ping.elapsed() >= heartbeat {
                last_ping = Instant::now();
                if !writer.send(Message::Ping(Bytes::new())) {
                    return End::Peer;
                }
            }
            match vnc.read(&mut buf[MAX_HEADER..]) {
                Ok(0) => return End::Close(1000, "the VNC server closed the connection"),
                Ok(n) => {
                    if !writer.send_encoded(binary_frame(&mut buf, n)) {
                        return End::Peer;
                    }
                }
                Err(err) if is_timeout(&err) => {}
                Err(_) if shared.is_done() => return End::Peer,
                Err(err) => {
                    log::debug!("vnc: reading from the VNC server failed: {err}");
                    return End::Close(1011, "the VNC connection failed");
                }
            }
        }
    }
}

/// The longest server frame header: opcode byte, 127, 64-bit length (no mask).
const MAX_HEADER: usize = 10;

/// Writes the header of an unmasked final binary frame just before the `len` data bytes at
/// `buf[MAX_HEADER..]`; the whole frame.
fn binary_frame(buf: &mut [u8], len: usize) -> &[u8] {
    let start = match len {
        0..=125 => {
            buf[MAX_HEADER - 1] = len as u8;
            MAX_HEADER - 2
        }
        126..=0xFFFF => {
            buf[MAX_HEADER - 3] = 126;
            buf[MAX_HEADER - 2..MAX_HEADER].copy_from_slice(&(len as u16).to_be_bytes());
            MAX_HEADER - 4
        }
        _ => {
            buf[1] = 127;
            buf[2..MAX_HEADER].copy_from_slice(&(len as u64).to_be_bytes());
            0
        }
    };
    buf[start] = 0x82; // FIN + binary
    &buf[start..MAX_HEADER + len]
}

/// Client → VNC server: binary payloads forwarded as they are; pings answered.
struct Upstream {
    vnc: TcpStream,
    writer: Arc<Writer>,
    shared: Arc<Shared>,
}

impl Upstream {
    fn run(mut self, upgraded: Box<dyn ReadWrite + Send>) {
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE))
            .read_buffer_size(4 * CHUNK);
        let mut ws = WebSocket::from_raw_socket(ReadOnly(upgraded), Role::Server, Some(config));
        loop {
            match ws.read() {
                Ok(message) => {
                    self.shared.touch();
                    if !self.forward(message) {
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
        let _ = self.vnc.shutdown(Shutdown::Both);
    }

    /// Handles one client frame; `false` ends the link.
    fn forward(&mut self, message: Message) -> bool {
        match message {
            Message::Binary(data) => self.vnc.write_all(&data).is_ok(),
            Message::Text(_) => {
                self.writer.close(
                    u16::from(CloseCode::Unsupported),
                    "text frames are not accepted; send binary RFB data",
                );
                false
            }
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_frames_are_encoded_in_place_as_tungstenite_reads_them() {
        for len in [0, 1, 125, 126, 0xFFFF, 0x10000, CHUNK] {
            let mut buf = vec![0u8; MAX_HEADER + len];
            buf[MAX_HEADER..]
                .iter_mut()
                .enumerate()
                .for_each(|(i, b)| *b = i as u8);
            let frame = binary_frame(&mut buf, len).to_vec();
            let mut ws = WebSocket::from_raw_socket(io::Cursor::new(frame), Role::Client, None);
            match ws.read().unwrap() {
                Message::Binary(data) => assert_eq!(&data[..], &buf[MAX_HEADER..], "{len}"),
                other => panic!("{len}: {other:?}"),
            }
        }
    }
}
