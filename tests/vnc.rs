//! The VNC proxy (`/ws/vnc`, `/ws/vnc/{id}`), `/api/vnc/info`, the session's `vnc` object and
//! the noVNC files, against real Xvfb + x11vnc and a TCP echo server standing in for VNC.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use computer_use_server::app::App;
use computer_use_server::config::Config;
use crossbeam_channel::{Receiver, Sender};
use support::xvfb::Xvfb;
use support::{TestServer, WAIT, raw_request, spawn_server};
use tungstenite::client::IntoClientRequest;
use tungstenite::{Bytes, Message, WebSocket};

const SECOND: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------- helpers: processes, echo

/// What the echo server saw.
#[derive(Debug, PartialEq)]
enum EchoEvent {
    Accepted,
    Eof,
}

/// A TCP echo server: every connection echoes on its own thread; `drop_all` cuts them.
struct Echo {
    addr: SocketAddr,
    events: Receiver<EchoEvent>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Echo {
    fn start() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, events) = crossbeam_channel::unbounded();
        let conns = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (conns.clone(), stop.clone());
        let acceptor = std::thread::spawn(move || accept_loop(&listener, &tx, &c, &s));
        Echo {
            addr,
            events,
            conns,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// Shuts every connection down, as a VNC server that goes away.
    fn drop_all(&self) {
        for conn in self.conns.lock().unwrap().iter() {
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Waits until every accepted connection has seen EOF; `false` on timeout.
    fn wait_all_closed(&self, open: &mut i32, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            while let Ok(event) = self.events.try_recv() {
                *open += if event == EchoEvent::Accepted { 1 } else { -1 };
            }
            if *open == 0 {
                return true;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            match self.events.recv_timeout(left) {
                Ok(EchoEvent::Accepted) => *open += 1,
                Ok(EchoEvent::Eof) => *open -= 1,
                Err(_) => return false,
            }
        }
    }

    /// Counts the connections opened so far (the desktop manager's probe included).
    fn drain_open(&self) -> i32 {
        let mut open = 0;
        while let Ok(event) = self.events.try_recv() {
            open += if event == EchoEvent::Accepted { 1 } else { -1 };
        }
        open
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        self.drop_all();
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept_loop(
    listener: &TcpListener,
    tx: &Sender<EchoEvent>,
    conns: &Mutex<Vec<TcpStream>>,
    stop: &AtomicBool,
) {
    let mut threads = Vec::new();
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(conn) = conn else { continue };
        conns.lock().unwrap().push(conn.try_clone().unwrap());
        let _ = tx.send(EchoEvent::Accepted);
        let tx = tx.clone();
        threads.push(std::thread::spawn(move || {
            echo(conn);
            let _ = tx.send(EchoEvent::Eof);
        }));
    }
    for thread in threads {
        let _ = thread.join();
    }
}

fn echo(mut conn: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if conn.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// A server in shared mode whose desktop is `xvfb` with its "VNC server" at `vnc_port`.
fn shared_server(xvfb: &Xvfb, vnc_port: u16) -> TestServer {
    spawn_server(&[
        ("DESKTOP_MODE", "shared"),
        ("DISPLAY_NUM", &xvfb.num().to_string()),
        ("VNC_HOST", "127.0.0.1"),
        ("VNC_PORT", &vnc_port.to_string()),
    ])
}

/// Waits until the server has no stream thread left (VNC links are streams).
fn assert_no_streams(server: &TestServer) {
    let deadline = Instant::now() + WAIT;
    while server.stream_count() > 0 {
        assert!(Instant::now() < deadline, "stream threads left behind");
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------- helpers: a binary WS client

/// A binary WebSocket client with a byte-stream view of what it receives.
struct VncWs {
    ws: WebSocket<TcpStream>,
    pending: Vec<u8>,
    protocol: Option<String>,
}

/// What a WebSocket connect got: the client, or the HTTP status and body of a refusal.
fn connect(addr: SocketAddr, path: &str, protocol: Option<&str>) -> Result<VncWs, (u16, String)> {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    if let Some(protocol) = protocol {
        let value = protocol.parse().unwrap();
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", value);
    }
    match tungstenite::client(request, stream) {
        Ok((ws, response)) => Ok(VncWs {
            ws,
            pending: Vec::new(),
            protocol: response
                .headers()
                .get("Sec-WebSocket-Protocol")
                .map(|v| v.to_str().unwrap().to_string()),
        }),
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into());
            Err((resp.status().as_u16(), body.unwrap_or_default()))
        }
        Err(err) => panic!("websocket handshake: {err}"),
    }
}

/// What `VncWs::next` saw besides data.
#[derive(Debug)]
enum Seen {
    Data,
    Close(Option<u16>),
    Ended,
    Timeout,
}

impl VncWs {
    fn send(&mut self, bytes: &[u8]) {
        let message = Message::Binary(Bytes::copy_from_slice(bytes));
        self.ws.send(message).expect("ws send");
    }

    /// Reads one frame within `timeout`: data is appended to `pending`.
    fn next(&mut self, timeout: Duration) -> Seen {
        let timeout = timeout.max(Duration::from_millis(1));
        self.ws.get_ref().set_read_timeout(Some(timeout)).unwrap();
        match self.ws.read() {
            Ok(Message::Binary(data)) => {
                self.pending.extend_from_slice(&data);
                Seen::Data
            }
            Ok(Message::Close(frame)) => Seen::Close(frame.map(|f| u16::from(f.code))),
            Ok(_) => Seen::Data,
            Err(tungstenite::Error::Io(err))
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Seen::Timeout
            }
            Err(_) => Seen::Ended,
        }
    }

    /// Exactly `n` received bytes (across frames).
    fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let deadline = Instant::now() + WAIT;
        while self.pending.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Seen::Data => {}
                other => panic!("wanted {n} bytes, have {}: {other:?}", self.pending.len()),
            }
        }
        self.pending.drain(..n).collect()
    }

    /// Waits for the server's close frame (answering it); its code.
    fn wait_close(&mut self, timeout: Duration) -> Seen {
        let deadline = Instant::now() + timeout;
        loop {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Seen::Timeout;
            };
            match self.next(left) {
                Seen::Data => {}
                other => return other,
            }
        }
    }
}

/// xorshift64*: deterministic pseudo-random bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(n);
        out
    }
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

// ---------------------------------------------------------------- RFB through the proxy

/// RFB 3.8 up to ServerInit; returns the framebuffer size the server announces.
fn rfb_handshake(client: &mut VncWs) -> (u16, u16) {
    assert_eq!(client.read_exact(12), b"RFB 003.008\n");
    client.send(b"RFB 003.008\n");
    let count = client.read_exact(1)[0] as usize;
    assert!(count > 0, "the server refused: no security types");
    let types = client.read_exact(count);
    assert!(types.contains(&1), "security None offered: {types:?}");
    client.send(&[1]);
    assert_eq!(client.read_exact(4), [0, 0, 0, 0], "SecurityResult OK");
    client.send(&[1]); // ClientInit: shared
    let init = client.read_exact(24);
    let name_len = u32::from_be_bytes([init[20], init[21], init[22], init[23]]) as usize;
    client.read_exact(name_len);
    (u16_at(&init, 0), u16_at(&init, 2))
}

/// Requests the whole screen and reads the header of the FramebufferUpdate that answers.
fn rfb_update(client: &mut VncWs, width: u16, height: u16) {
    let mut request = vec![3, 0, 0, 0, 0, 0];
    request.extend_from_slice(&width.to_be_bytes());
    request.extend_from_slice(&height.to_be_bytes());
    client.send(&request);
    let header = client.read_exact(4);
    assert_eq!(header[0], 0, "FramebufferUpdate");
    assert!(u16_at(&header, 2) > 0, "at least one rectangle");
}

#[test]
fn rfb_session_through_the_per_session_proxy_sees_the_display_size() {
    let server = spawn_server(&[
        ("DESKTOP_MODE", "per-session"),
        ("WIDTH", "800"),
        ("HEIGHT", "600"),
        ("VNC_PORT", "0"),
    ]);
    let id = server.create_session();
    let path = format!("/ws/vnc/{id}");
    let mut client = connect(server.addr(), &path, Some("binary")).expect("upgrade");
    assert_eq!(client.protocol.as_deref(), Some("binary"));
    assert_eq!(rfb_handshake(&mut client), (800, 600));
    rfb_update(&mut client, 800, 600);

    let session = server.get(&format!("/api/sessions/{id}")).json();
    let vnc = &session["vnc"];
    assert_eq!(vnc["available"], true, "{session}");
    assert_eq!(vnc["websocket_url"], path.as_str());
    assert_eq!(
        (vnc["width"].as_u64(), vnc["height"].as_u64()),
        (Some(800), Some(600))
    );
    assert!(vnc["display"].as_str().unwrap().starts_with(':'));
    let novnc = vnc["novnc_url"].as_str().unwrap();
    assert!(
        novnc.starts_with(&format!("/novnc/vnc.html?path=ws/vnc/{id}&")),
        "{novnc}"
    );
    let info = server.get(&format!("/api/vnc/info?session_id={id}")).json();
    assert_eq!(info["available"], true, "{info}");
    assert_eq!(info["display"], vnc["display"]);
    assert!(info["port"].as_u64().unwrap() > 0);

    drop(client);
    assert_no_streams(&server);
}

#[test]
fn rfb_session_through_the_shared_proxy_with_a_desktop_the_server_starts() {
    let server = spawn_server(&[
        ("DESKTOP_MODE", "shared"),
        ("WIDTH", "640"),
        ("HEIGHT", "480"),
        ("VNC_PORT", "0"),
    ]);
    let mut client = connect(server.addr(), "/ws/vnc", None).expect("upgrade");
    assert_eq!(client.protocol, None, "no subprotocol offered, none chosen");
    assert_eq!(rfb_handshake(&mut client), (640, 480));
    rfb_update(&mut client, 640, 480);
    let _ = client.ws.close(None);
    assert!(matches!(
        client.wait_close(WAIT),
        Seen::Close(_) | Seen::Ended
    ));
    assert_no_streams(&server);
}

// ---------------------------------------------------------------- data integrity and endings

#[test]
fn eight_mib_in_varied_frames_come_back_exactly() {
    let (xvfb, echo) = (Xvfb::start(320, 240), Echo::start());
    let server = shared_server(&xvfb, echo.addr.port());
    let mut client = connect(server.addr(), "/ws/vnc", Some("binary")).expect("upgrade");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let data = rng.bytes(8 << 20);
    let (mut sent, mut received) = (0, Vec::with_capacity(data.len()));
    while sent < data.len() {
        let size = match rng.next() % 4 {
            0 => 1 + (rng.next() % 16) as usize,
            1 => 1 + (rng.next() % 4096) as usize,
            2 => 1 + (rng.next() % 65_536) as usize,
            _ => 1 + (rng.next() % (1 << 20)) as usize,
        };
        let end = (sent + size).min(data.len());
        client.send(&data[sent..end]);
        sent = end;
        // Keep at most 2 MiB in flight so neither side's buffers fill while we only write.
        while sent - received.len() - client.pending.len() > 2 << 20 {
            assert!(matches!(client.next(WAIT), Seen::Data));
        }
        received.append(&mut client.pending);
    }
    received.append(&mut client.read_exact(data.len() - received.len()));
    assert!(received == data, "the echoed bytes differ");
    drop(client);
    assert_no_streams(&server);
}

#[test]
fn client_close_ends_the_vnc_connection_within_a_second() {
    let (xvfb, echo) = (Xvfb::start(320, 240), Echo::start());
    let server = shared_server(&xvfb, echo.addr.port());
    let mut client = connect(server.addr(), "/ws/vnc", Some("binary")).expect("upgrade");
    client.send(b"ping");
    assert_eq!(client.read_exact(4), b"ping");
    let mut open = echo.drain_open();
    assert!(open >= 1);
    let started = Instant::now();
    client.ws.close(None).unwrap();
    assert!(
        echo.wait_all_closed(&mut open, SECOND),
        "the VNC side is still open"
    );
    assert!(started.elapsed() < SECOND);
    assert!(matches!(client.wait_close(WAIT), Seen::Close(Some(1000))));
    assert_no_streams(&server);
}

#[test]
fn vnc_server_closing_ends_the_websocket_with_a_close_frame_within_a_second() {
    let (xvfb, echo) = (Xvfb::start(320, 240), Echo::start());
    let server = shared_server(&xvfb, echo.addr.port());
    let mut client = connect(server.addr(), "/ws/vnc", Some("binary")).expect("upgrade");
    client.send(b"hello");
    assert_eq!(client.read_exact(5), b"hello");
    let started = Instant::now();
    echo.drop_all();
    match client.wait_close(SECOND) {
        Seen::Close(Some(1000)) => {}
        other => panic!("expected close 1000 within a second, got {other:?}"),
    }
    assert!(started.elapsed() < SECOND);
    assert_no_streams(&server);
}

#[test]
fn text_frames_are_refused_with_1003() {
    let (xvfb, echo) = (Xvfb::start(320, 240), Echo::start());
    let server = shared_server(&xvfb, echo.addr.port());
    let mut client = connect(server.addr(), "/ws/vnc", Some("binary")).expect("upgrade");
    client.ws.send(Message::text("hello")).unwrap();
    assert!(matches!(client.wait_close(WAIT), Seen::Close(Some(1003))));
    assert_no_streams(&server);
}

#[test]
fn pings_are_answered() {
    let (xvfb, echo) = (Xvfb::start(320, 240), Echo::start());
    let server = shared_server(&xvfb, echo.addr.port());
    let mut client = connect(server.addr(), "/ws/vnc", Some("binary")).expect("upgrade");
    client
        .ws
        .send(Message::Ping(Bytes::from_static(b"p1")))
        .unwrap();
    client.ws.get_ref().set_read_timeout(Some(WAIT)).unwrap();
    match client.ws.read().unwrap() {
        Message::Pong(payload) => assert_eq!(&payload[..], b"p1"),
        other => panic!("expected a pong, got {other:?}"),
    }
    drop(client);
    assert_no_streams(&server);
}

#[test]
fn vnc_link_count_follows_open_links_and_shutdown_joins_them() {
    let (xvfb, echo) = (Xvfb::start(320, 240), Echo::start());
    let vars = [
        ("HOST", "127.0.0.1".to_string()),
        ("PORT", "0".to_string()),
        ("DATABASE_URL", "sqlite://:memory:".to_string()),
        ("ANTHROPIC_API_KEY", "sk-ant-test".to_string()),
        ("DESKTOP_MODE", "shared".to_string()),
        ("DISPLAY_NUM", xvfb.num().to_string()),
        ("VNC_PORT", echo.addr.port().to_string()),
    ];
    let get = |name: &str| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    };
    let app = App::build(Config::from_sources(&[], get).expect("config")).expect("app");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let handle = app.serve(listener).expect("serve");
    let mut clients: Vec<VncWs> = (0..3)
        .map(|_| connect(handle.addr(), "/ws/vnc", None).expect("upgrade"))
        .collect();
    for client in &mut clients {
        client.send(b"x");
        assert_eq!(client.read_exact(1), b"x");
    }
    assert_eq!(handle.vnc_link_count(), 3);
    assert_eq!(handle.stream_count(), 3);
    let _ = clients[0].ws.close(None);
    assert!(matches!(clients[0].wait_close(WAIT), Seen::Close(_)));
    let deadline = Instant::now() + WAIT;
    while handle.vnc_link_count() != 2 {
        assert!(Instant::now() < deadline, "a closed link is still counted");
        std::thread::sleep(Duration::from_millis(10));
    }
    app.shutdown();
    handle.shutdown();
    for client in &mut clients[1..] {
        assert!(matches!(
            client.wait_close(WAIT),
            Seen::Close(Some(1001)) | Seen::Ended
        ));
    }
}

// ---------------------------------------------------------------- refusals

#[test]
fn unknown_sessions_are_404_and_wrong_modes_say_why() {
    let server = spawn_server(&[("DESKTOP_MODE", "per-session")]);
    let unknown = format!("/ws/vnc/{}", uuid::Uuid::new_v4());
    assert_eq!(connect(server.addr(), &unknown, None).err().unwrap().0, 404);
    let (status, body) = connect(server.addr(), "/ws/vnc", None).err().unwrap();
    assert_eq!(status, 404);
    assert!(body.contains("per session"), "{body}");
    let info = server.get("/api/vnc/info").json();
    assert_eq!(info["available"], false);
    assert!(info["reason"].as_str().unwrap().contains("per session"));
    let missing = server.get(&format!(
        "/api/vnc/info?session_id={}",
        uuid::Uuid::new_v4()
    ));
    assert_eq!(missing.status, 404);

    let none = spawn_server(&[("DESKTOP_MODE", "none")]);
    let (status, body) = connect(none.addr(), "/ws/vnc", None).err().unwrap();
    assert_eq!(status, 404);
    assert!(body.contains("DESKTOP_MODE=none"), "{body}");
    let id = none.create_session();
    let (status, body) = connect(none.addr(), &format!("/ws/vnc/{id}"), None)
        .err()
        .unwrap();
    assert_eq!(status, 404);
    assert!(body.contains("desktop_disabled"), "{body}");
    let session = none.get(&format!("/api/sessions/{id}")).json();
    assert!(
        session.get("vnc").is_none(),
        "no vnc object outside per-session mode"
    );
    let info = none.get("/api/vnc/info").json();
    assert_eq!(info["available"], false);
    assert!(
        info["reason"]
            .as_str()
            .unwrap()
            .contains("DESKTOP_MODE=none")
    );
}

#[test]
fn a_plain_get_on_the_proxy_is_400_json() {
    let (xvfb, echo) = (Xvfb::start(320, 240), Echo::start());
    let server = shared_server(&xvfb, echo.addr.port());
    let resp = server.get("/ws/vnc");
    assert_eq!(resp.status, 400);
    assert!(
        resp.json()["detail"]
            .as_str()
            .unwrap()
            .contains("WebSocket")
    );
}

// ---------------------------------------------------------------- /api/vnc/info

#[test]
fn vnc_info_describes_the_shared_desktop_once_it_runs() {
    let (xvfb, echo) = (Xvfb::start(400, 300), Echo::start());
    let server = shared_server(&xvfb, echo.addr.port());
    let client = connect(server.addr(), "/ws/vnc", None).expect("upgrade");
    let info = server.get("/api/vnc/info").json();
    assert_eq!(info["available"], true, "{info}");
    assert_eq!(info["host"], "127.0.0.1");
    assert_eq!(info["port"].as_u64(), Some(u64::from(echo.addr.port())));
    assert_eq!(
        (info["width"].as_u64(), info["height"].as_u64()),
        (Some(400), Some(300))
    );
    assert_eq!(info["display"], format!(":{}", xvfb.num()));
    assert_eq!(info["websocket_url"], "/ws/vnc");
    assert_eq!(
        info["novnc_url"],
        "/novnc/vnc.html?path=ws/vnc&autoconnect=1&resize=scale&view_only=1"
    );
    drop(client);
    assert_no_streams(&server);
}

// ---------------------------------------------------------------- noVNC files

#[test]
fn novnc_files_are_served_with_types_validators_and_head() {
    let server = spawn_server(&[]);
    let html = server.get("/novnc/vnc.html");
    assert_eq!(html.status, 200);
    assert!(
        html.header("Content-Type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(html.body.contains("noVNC"));
    let index = server.get("/novnc/");
    assert_eq!((index.status, &index.body), (200, &html.body));
    let js = server.get("/novnc/core/rfb.js");
    assert_eq!(js.status, 200);
    assert!(
        js.header("Content-Type")
            .unwrap()
            .starts_with("text/javascript")
    );
    let etag = js.header("ETag").unwrap().to_string();
    assert!(js.header("Last-Modified").is_some());
    assert!(js.header("Cache-Control").is_some());
    let again = server.request(
        "GET",
        "/novnc/core/rfb.js",
        &[("If-None-Match", &etag)],
        None,
    );
    assert_eq!((again.status, again.body.as_str()), (304, ""));
    let head = server.request("HEAD", "/novnc/core/rfb.js", &[], None);
    assert_eq!((head.status, head.body.as_str()), (200, ""));
    assert_eq!(head.header("ETag"), Some(etag.as_str()));
    let linked = server.get("/novnc/vnc_auto.html");
    assert_eq!(
        linked.status, 200,
        "a symlink inside the directory is served"
    );
    let missing = server.get("/novnc/nope.js");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"], "not_found");
    let bare = raw_request(
        server.addr(),
        b"GET /novnc HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert!(bare.starts_with("HTTP/1.1 301"), "{bare}");
    assert!(bare.contains("Location: /novnc/"), "{bare}");
}

#[test]
fn novnc_refuses_traversal_with_json() {
    let server = spawn_server(&[]);
    for path in [
        "/novnc/../../etc/passwd",
        "/novnc/%2e%2e/%2e%2e/etc/passwd",
        "/novnc/app/%2E%2E%2F%2E%2E%2F..%2Fetc%2Fpasswd",
        "/novnc/%2fetc/passwd",
        "/novnc/..%5c..%5cetc%5cpasswd",
    ] {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let response = raw_request(server.addr(), request.as_bytes());
        let status: u16 = response[9..12].parse().unwrap();
        assert!(matches!(status, 400 | 404), "{path}: {response}");
        assert!(response.contains("application/json"), "{path}: {response}");
        assert!(!response.contains("root:"), "{path} leaked a file");
    }
}

#[test]
fn novnc_missing_directory_is_404_json() {
    let server = spawn_server(&[("NOVNC_DIR", "/nonexistent/novnc")]);
    let resp = server.get("/novnc/vnc.html");
    assert_eq!(resp.status, 404);
    assert!(
        resp.json()["detail"]
            .as_str()
            .unwrap()
            .contains("noVNC is not installed")
    );
    let info = spawn_server(&[
        ("DESKTOP_MODE", "per-session"),
        ("NOVNC_DIR", "/nonexistent"),
    ]);
    let id = info.create_session();
    let session = info.get(&format!("/api/sessions/{id}")).json();
    assert_eq!(session["vnc"]["novnc_url"], serde_json::Value::Null);
    assert_eq!(session["vnc"]["available"], false);
}
