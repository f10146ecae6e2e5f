//! `WS /ws/vnc` (the shared desktop) and `WS /ws/vnc/{session_id}` (a session's desktop):
//! binary WebSocket frames bridged to the desktop's VNC server over TCP.
//!
//! The proxy connects only to the address the [`DesktopManager`](crate::desktop::DesktopManager)
//! returns, never to one a client names. It connects before answering the upgrade, so a desktop
//! that cannot be had is an HTTP error (404/503 JSON), not a WebSocket that closes at once.
//!
//! The pump is full duplex on two threads (DESIGN §7). The stream thread moves the VNC
//! server's bytes to the client, up to [`CHUNK`] per binary frame: on Linux with `splice(2)`
//! through a kernel pipe, so the pixels never pass through our memory (see [`Mover`]), else
//! by reading into a buffer with room for the frame header before the data. Every write to
//! the client goes through [`Out`], which keeps a frame sent in pieces whole. A second thread
//! it owns reads client frames from the upgraded stream and writes their payload to the VNC
//! socket. Whichever side ends first marks the link done and shuts the VNC socket down; the
//! stream thread then sends a close frame if none was sent, gives the client [`CLOSE_GRACE`]
//! to answer it, shuts the client's socket down (so a blocked read returns) and joins the
//! reader. Text frames are refused with 1003.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
/// The most VNC server bytes per binary frame to the client (and the splice pipe's size).
const CHUNK: usize = 256 * 1024;
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
        let (vnc_in, out) = match self.prepare(&socket) {
            Ok(parts) => parts,
            Err(err) => {
                log::warn!("vnc: link not started: {err}");
                let _ = self.vnc.shutdown(Shutdown::Both);
                let _ = socket.shutdown(Shutdown::Both);
                return;
            }
        };
        let out = Arc::new(out);
        let shared = Arc::new(Shared {
            done: AtomicBool::new(false),
            last_seen_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        });
        let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
        let up = Upstream {
            vnc: vnc_in,
            out: out.clone(),
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
        let end = self.pump_down(&out, &shared, stop, heartbeat);
        if let End::Close(code, reason) = end {
            out.close(code, reason);
        }
        shared.done.store(true, Ordering::SeqCst);
        let _ = self.vnc.shutdown(Shutdown::Both);
        let _ = done_rx.recv_timeout(CLOSE_GRACE);
        let _ = socket.shutdown(Shutdown::Both);
        let _ = up_thread.join();
        log::info!("vnc: link to display {} closed", self.display.name());
    }

    /// Timeouts and `TCP_NODELAY` on both sockets; the VNC socket's clone for the reader and
    /// the client's side.
    fn prepare(&self, socket: &TcpStream) -> io::Result<(TcpStream, Out)> {
        self.vnc.set_nodelay(true)?;
        self.vnc.set_read_timeout(Some(POLL))?;
        self.vnc.set_write_timeout(Some(WRITE_TIMEOUT))?;
        socket.set_nodelay(true)?;
        socket.set_read_timeout(Some(POLL))?;
        socket.set_write_timeout(Some(WRITE_TIMEOUT))?;
        let out = Out {
            order: Mutex::new(()),
            writer: Writer::new(socket.try_clone()?),
            socket: socket.try_clone()?,
        };
        Ok((self.vnc.try_clone()?, out))
    }

    /// VNC server → client: one binary frame per read, pings every heartbeat.
    fn pump_down(&self, out: &Out, shared: &Shared, stop: &AtomicBool, heartbeat: Duration) -> End {
        let mut mover = Mover::new();
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
                if !out.send(Message::Ping(Bytes::new())) {
                    return End::Peer;
                }
            }
            match mover.read(&self.vnc) {
                Ok(0) => return End::Close(1000, "the VNC server closed the connection"),
                Ok(n) => {
                    if !mover.forward(out, n) {
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

/// Every write to the client. The WebSocket [`Writer`] sends whole messages under its own
/// lock; spliced data frames are written in two pieces (header, then the bytes from the pipe)
/// straight to a duplicate of the socket, so `order` is held around every write of either
/// kind: no ping, pong or close frame can land inside a data frame.
struct Out {
    order: Mutex<()>,
    writer: Writer,
    socket: TcpStream,
}

impl Out {
    fn ordered(&self) -> std::sync::MutexGuard<'_, ()> {
        self.order.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One whole message; `false` when the connection is gone or closing.
    fn send(&self, message: Message) -> bool {
        let _order = self.ordered();
        self.writer.send(message)
    }

    /// Our close frame (only the first one goes out).
    fn close(&self, code: u16, reason: &str) -> bool {
        let _order = self.ordered();
        self.writer.close(code, reason)
    }

    /// A binary frame encoded by the caller, written as it is.
    fn encoded(&self, frame: &[u8]) -> bool {
        let _order = self.ordered();
        self.writer.send_encoded(frame)
    }

    /// A binary frame of the `len` bytes waiting in `pipe`: its header (held back with
    /// `MSG_MORE` so it leaves in the same segment as the data), then the bytes.
    #[cfg(target_os = "linux")]
    fn spliced(&self, pipe: &splice::Pipe, len: usize) -> bool {
        let _order = self.ordered();
        // An empty write through the writer: its own check that no close frame went out.
        if !self.writer.send_encoded(&[]) {
            return false;
        }
        let (header, used) = frame_header(len);
        let sent = splice::send_more(&self.socket, &header[..used]);
        sent.and_then(|()| pipe.drain(&self.socket, len)).is_ok()
    }
}

/// How the VNC server's bytes reach the client: spliced through a kernel pipe (Linux), or
/// copied through a buffer with room for the frame header before the data.
///
/// With full-screen Raw updates the proxy moves megabytes per frame; copying each byte in
/// from one socket and out to the other made the proxy thread cost about as much CPU as the
/// viewer reading the bytes, which on a busy two-core machine cost a third or more of the
/// direct throughput. Spliced, the pages only change hands inside the kernel.
enum Mover {
    #[cfg(target_os = "linux")]
    Splice(splice::Pipe),
    Copy(Vec<u8>),
}

impl Mover {
    /// Splice when a pipe can be had, else copy.
    fn new() -> Mover {
        #[cfg(target_os = "linux")]
        match splice::Pipe::new(CHUNK) {
            Ok(pipe) => return Mover::Splice(pipe),
            Err(err) => log::debug!("vnc: no splice pipe ({err}); copying"),
        }
        Mover::copying()
    }

    fn copying() -> Mover {
        Mover::Copy(vec![0u8; MAX_HEADER + CHUNK])
    }

    /// Takes up to [`CHUNK`] bytes from the VNC server (blocking within its read timeout);
    /// 0 at the end of its stream. A socket that cannot be spliced switches to copying.
    fn read(&mut self, vnc: &TcpStream) -> io::Result<usize> {
        match self {
            #[cfg(target_os = "linux")]
            Mover::Splice(pipe) => match pipe.fill(vnc, CHUNK) {
                Err(err) if err.raw_os_error() == Some(libc::EINVAL) => {
                    log::debug!("vnc: splice refused ({err}); copying");
                    *self = Mover::copying();
                    self.read(vnc)
                }
                result => result,
            },
            Mover::Copy(buf) => (&*vnc).read(&mut buf[MAX_HEADER..]),
        }
    }

    /// Sends the `n` bytes just read as one binary frame; `false` ends the link.
    fn forward(&mut self, out: &Out, n: usize) -> bool {
        match self {
            #[cfg(target_os = "linux")]
            Mover::Splice(pipe) => out.spliced(pipe, n),
            Mover::Copy(buf) => out.encoded(binary_frame(buf, n)),
        }
    }
}

/// The longest server frame header: opcode byte, 127, 64-bit length (no mask).
const MAX_HEADER: usize = 10;

/// The header of an unmasked final binary frame of `len` bytes, and how many of its bytes
/// are used.
fn frame_header(len: usize) -> ([u8; MAX_HEADER], usize) {
    let mut header = [0u8; MAX_HEADER];
    header[0] = 0x82; // FIN + binary
    let used = match len {
        0..=125 => {
            header[1] = len as u8;
            2
        }
        126..=0xFFFF => {
            header[1] = 126;
            header[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            4
        }
        _ => {
            header[1] = 127;
            header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        }
    };
    (header, used)
}

/// Writes the frame header just before the `len` data bytes at `buf[MAX_HEADER..]`; the
/// whole frame.
fn binary_frame(buf: &mut [u8], len: usize) -> &[u8] {
    let (header, used) = frame_header(len);
    let start = MAX_HEADER - used;
    buf[start..MAX_HEADER].copy_from_slice(&header[..used]);
    &buf[start..MAX_HEADER + len]
}

/// Linux `splice(2)` between the two sockets through a pipe of our own.
#[cfg(target_os = "linux")]
mod splice {
    use std::io;
    use std::net::TcpStream;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

    /// A pipe that is empty between frames: each frame drains what was filled.
    pub(super) struct Pipe {
        read: OwnedFd,
        write: OwnedFd,
    }

    impl Pipe {
        /// A pipe of (asking for) `size` bytes; the default size also works, in more calls.
        #[allow(unsafe_code)]
        pub(super) fn new(size: usize) -> io::Result<Pipe> {
            let mut fds: [libc::c_int; 2] = [-1, -1];
            // SAFETY: pipe2 writes two descriptors into the array we own.
            if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: both descriptors were just created and nothing else owns them.
            let (read, write) =
                unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
            let size = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
            // SAFETY: fcntl on our own descriptor; no memory is involved. A refusal (a
            // smaller pipe-max-size) leaves the default size.
            unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, size) };
            Ok(Pipe { read, write })
        }

        /// Up to `max` bytes from `from` into the pipe, blocking as a read of `from` would
        /// (its read timeout applies); 0 at the end of its stream.
        pub(super) fn fill(&self, from: &TcpStream, max: usize) -> io::Result<usize> {
            splice(from.as_raw_fd(), self.write.as_raw_fd(), max)
        }

        /// Exactly `len` bytes from the pipe to `to` (its write timeout applies).
        pub(super) fn drain(&self, to: &TcpStream, mut len: usize) -> io::Result<()> {
            while len > 0 {
                match splice(self.read.as_raw_fd(), to.as_raw_fd(), len) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(moved) => len -= moved,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(err) => return Err(err),
                }
            }
            Ok(())
        }
    }

    #[allow(unsafe_code)]
    fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
        let (no_offset, flags) = (std::ptr::null_mut(), libc::SPLICE_F_MOVE);
        // SAFETY: no memory of ours is involved (null offsets: both ends are a socket or a
        // pipe); the kernel moves bytes between two descriptors we hold open.
        let moved = unsafe { libc::splice(from, no_offset, to, no_offset, len, flags) };
        usize::try_from(moved).map_err(|_| io::Error::last_os_error())
    }

    /// All of `bytes` with `MSG_MORE` (the data that follows completes the segment) and
    /// without SIGPIPE.
    #[allow(unsafe_code)]
    pub(super) fn send_more(socket: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
        let flags = libc::MSG_MORE | libc::MSG_NOSIGNAL;
        while !bytes.is_empty() {
            // SAFETY: send reads at most `bytes.len()` bytes from the slice we borrow.
            let sent = unsafe {
                libc::send(
                    socket.as_raw_fd(),
                    bytes.as_ptr().cast(),
                    bytes.len(),
                    flags,
                )
            };
            match usize::try_from(sent) {
                Ok(n) => bytes = &bytes[n..],
                Err(_) => {
                    let err = io::Error::last_os_error();
                    if err.kind() != io::ErrorKind::Interrupted {
                        return Err(err);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Client → VNC server: binary payloads forwarded as they are; pings answered.
struct Upstream {
    vnc: TcpStream,
    out: Arc<Out>,
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
                    self.out.close(1009, "message too big");
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
                self.out.close(
                    u16::from(CloseCode::Unsupported),
                    "text frames are not accepted; send binary RFB data",
                );
                false
            }
            Message::Ping(payload) => self.out.send(Message::Pong(payload)),
            Message::Pong(_) | Message::Frame(_) => true,
            Message::Close(frame) => {
                let code = frame.map_or(1000, |f| u16::from(f.code));
                let code = if code == 1005 { 1000 } else { code };
                self.out.close(code, "");
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

    /// A connected pair of loopback sockets.
    fn socket_pair() -> (TcpStream, TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let near = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        (near, listener.accept().unwrap().0)
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn spliced_frames_carry_the_bytes_and_stay_whole_beside_messages() {
        let (mut vnc_server, vnc) = socket_pair();
        let (client, socket) = socket_pair();
        let out = Out {
            order: Mutex::new(()),
            writer: Writer::new(socket.try_clone().unwrap()),
            socket,
        };
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let writer = std::thread::spawn(move || vnc_server.write_all(&data).map(|()| data));
        let mut mover = Mover::new();
        assert!(matches!(mover, Mover::Splice(_)));
        let mut ws = WebSocket::from_raw_socket(client, Role::Client, None);
        let mut received = Vec::new();
        let mut sent = 0;
        while sent < 300_000 {
            let n = mover.read(&vnc).unwrap();
            assert!(n > 0 && n <= CHUNK);
            assert!(mover.forward(&out, n));
            assert!(out.send(Message::Ping(Bytes::new())));
            sent += n;
        }
        let data = writer.join().unwrap().unwrap();
        while received.len() < data.len() {
            match ws.read().unwrap() {
                Message::Binary(bytes) => received.extend_from_slice(&bytes),
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(received, data);
        // After our close frame, data frames are refused like every other write.
        assert!(out.close(1000, ""));
        assert!(!mover.forward(&out, 0));
    }
}
