//! Limits, through real sockets: rate limits (REST and WebSocket), stream caps, the active
//! session cap, head and WebSocket message sizes, and slow request heads (slowloris).

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{SseClient, TestServer, WAIT, WsClient, WsItem, raw_request, spawn_server};

fn post_as(server: &TestServer, token: &str, path: &str, body: &Value) -> support::Resp {
    let auth = format!("Bearer {token}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    server.request("POST", path, &headers, Some(body.to_string().as_bytes()))
}

fn create_as(server: &TestServer, token: &str) -> support::Resp {
    post_as(server, token, "/api/sessions", &json!({}))
}

/// A 429 with a JSON body and a `Retry-After` of 1–60 whole seconds.
fn assert_rate_limited(resp: &support::Resp) {
    assert_eq!(resp.status, 429, "{}", resp.body);
    assert_eq!(resp.json()["error"], "rate_limited", "{}", resp.body);
    let retry: u64 = resp
        .header("Retry-After")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After: {retry}");
}

fn assert_healthy(server: &TestServer) {
    let resp = server.get("/health");
    assert_eq!(resp.status, 200, "{}", resp.body);
}

/// Polls `cond` until it holds or `WAIT` passes.
fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn the_fourth_session_creation_within_a_minute_is_429_for_that_token_only() {
    let server = spawn_server(&[("API_TOKEN", "a,b"), ("RATE_LIMIT_SESSIONS", "3")]);
    for _ in 0..3 {
        assert_eq!(create_as(&server, "a").status, 201);
    }
    assert_rate_limited(&create_as(&server, "a"));
    assert_eq!(create_as(&server, "b").status, 201, "token b is unaffected");
    let auth = [("Authorization", "Bearer a")];
    let list = server.request("GET", "/api/sessions", &auth, None);
    assert_eq!(list.status, 200, "other routes still serve token a");
    assert_healthy(&server);
}

#[test]
fn message_posts_over_rest_are_rate_limited_per_token() {
    let env = [
        ("API_TOKEN", "a,b"),
        ("RATE_LIMIT_MESSAGES", "2"),
        ("MODEL_MAX_RETRIES", "0"),
    ];
    let server = spawn_server(&env);
    let id = create_as(&server, "a").json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/api/sessions/{id}/messages");
    let message = json!({"content": "hi"});
    for _ in 0..2 {
        assert_eq!(post_as(&server, "a", &path, &message).status, 202);
    }
    assert_rate_limited(&post_as(&server, "a", &path, &message));
    assert_eq!(post_as(&server, "b", &path, &message).status, 202);
    assert_healthy(&server);
}

#[test]
fn websocket_messages_share_the_limit_and_an_error_frame_keeps_the_connection() {
    let env = [
        ("API_TOKEN", "a,b"),
        ("RATE_LIMIT_MESSAGES", "2"),
        ("MODEL_MAX_RETRIES", "0"),
    ];
    let server = spawn_server(&env);
    let id = create_as(&server, "a").json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut ws = WsClient::connect(server.addr(), &format!("/ws/{id}?token=a"), &[]).unwrap();
    let message = json!({"type": "message", "content": "hi"});
    for _ in 0..2 {
        assert_eq!(reply_to(&mut ws, message.clone())["type"], "ack");
    }
    let refused = reply_to(&mut ws, message.clone());
    assert_eq!(
        (&refused["type"], &refused["error"]),
        (&json!("error"), &json!("rate_limited")),
        "{refused}"
    );
    let retry = refused["retry_after"].as_u64().expect("retry_after");
    assert!((1..=60).contains(&retry), "{refused}");
    let cancel = reply_to(&mut ws, json!({"type": "cancel"}));
    assert_eq!(cancel["type"], "ack", "the connection survives: {cancel}");
    let path = format!("/api/sessions/{id}/messages");
    let rest = post_as(&server, "a", &path, &json!({"content": "x"}));
    assert_rate_limited(&rest);
    assert_eq!(
        post_as(&server, "b", &path, &json!({"content": "x"})).status,
        202
    );
    assert_healthy(&server);
}

/// Sends a command frame and returns its `ack` or error reply (skipping session events).
fn reply_to(ws: &mut WsClient, frame: Value) -> Value {
    ws.send_json(&frame);
    loop {
        let reply = ws.next_json(WAIT).expect("a reply");
        // Session `error` events (the fake model is unreachable) carry `details`, not `detail`.
        let is_error_reply = reply["type"] == "error" && reply.get("detail").is_some();
        if reply["type"] == "ack" || is_error_reply {
            return reply;
        }
    }
}

/// Opens an SSE stream and says whether it was accepted; a refusal must be a JSON 503.
fn sse_status(server: &TestServer, id: &str) -> (u16, Option<SseClient>) {
    let path = format!("/api/sessions/{id}/stream");
    let client = server.sse(&path, None);
    if client.status == 200 {
        return (200, Some(client));
    }
    (client.status, None)
}

fn assert_refused_stream(server: &TestServer, id: &str) {
    let head = format!(
        "GET /api/sessions/{id}/stream HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        server.addr()
    );
    let response = raw_request(server.addr(), head.as_bytes());
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    assert!(response.contains("\"too_many_streams\""), "{response}");
    let ws = WsClient::connect(server.addr(), &format!("/ws/{id}"), &[]);
    assert_eq!(ws.err(), Some(503), "a WebSocket is refused too");
}

#[test]
fn a_session_past_its_stream_cap_is_refused_until_a_stream_closes() {
    let server = spawn_server(&[("MAX_STREAMS_PER_SESSION", "2"), ("SSE_HEARTBEAT", "1")]);
    let (a, b) = (server.create_session(), server.create_session());
    let (status, first) = sse_status(&server, &a);
    assert_eq!(status, 200);
    let mut second = server.ws(&format!("/ws/{a}"));
    assert_refused_stream(&server, &a);
    let (status, _other) = sse_status(&server, &b);
    assert_eq!(status, 200, "another session still streams");
    drop(first);
    let mut third = None;
    assert!(
        eventually(|| {
            third = sse_status(&server, &a).1;
            third.is_some()
        }),
        "a closed SSE stream gives its place back"
    );
    assert!(matches!(second.close(), Some(WsItem::Close(_))));
    assert!(eventually(|| sse_status(&server, &a).0 == 200));
    assert_healthy(&server);
}

#[test]
fn the_server_wide_stream_cap_refuses_every_session_until_one_closes() {
    let server = spawn_server(&[("MAX_STREAMS", "2")]);
    let ids: Vec<String> = (0..3).map(|_| server.create_session()).collect();
    let (status, _sse) = sse_status(&server, &ids[0]);
    assert_eq!(status, 200);
    let mut ws = server.ws(&format!("/ws/{}", ids[1]));
    assert_refused_stream(&server, &ids[2]);
    assert!(matches!(ws.close(), Some(WsItem::Close(_))));
    assert!(eventually(|| WsClient::connect(
        server.addr(),
        &format!("/ws/{}", ids[2]),
        &[]
    )
    .is_ok()));
    assert_healthy(&server);
}

#[test]
fn past_max_active_sessions_a_new_sessions_message_is_503_and_not_stored() {
    let env = [("MAX_ACTIVE_SESSIONS", "1"), ("MODEL_MAX_RETRIES", "0")];
    let server = spawn_server(&env);
    let (a, b) = (server.create_session(), server.create_session());
    let message = json!({"content": "hi"});
    let post = |id: &str| server.post_json(&format!("/api/sessions/{id}/messages"), &message);
    assert_eq!(post(&a).status, 202);
    let refused = post(&b);
    assert_eq!(refused.status, 503, "{}", refused.body);
    let body = refused.json();
    assert_eq!(body["error"], "too_many_active_sessions");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("WORKER_IDLE_TIMEOUT")
    );
    let stored = server.get(&format!("/api/sessions/{b}/messages"));
    assert_eq!(stored.json(), json!([]), "nothing was stored");
    assert_eq!(
        post(&a).status,
        202,
        "the live session still takes messages"
    );
    assert_healthy(&server);
}

#[test]
fn a_64_kib_header_is_431_or_a_closed_connection_and_the_server_keeps_serving() {
    let server = spawn_server(&[("MAX_HEADER_BYTES", "8192")]);
    let big = "x".repeat(64 << 10);
    let head = format!(
        "GET /health HTTP/1.1\r\nHost: {}\r\nX-Big: {big}\r\nConnection: close\r\n\r\n",
        server.addr()
    );
    let response = raw_request(server.addr(), head.as_bytes());
    assert!(
        response.is_empty() || response.starts_with("HTTP/1.1 431"),
        "{response:.200}"
    );
    if !response.is_empty() {
        assert!(response.contains("\"headers_too_large\""), "{response}");
    }
    assert_healthy(&server);
}

#[test]
fn a_websocket_message_over_the_cap_is_closed_with_1009() {
    let server = spawn_server(&[("MAX_WS_MESSAGE_BYTES", "1024")]);
    let id = server.create_session();
    let mut ws = server.ws(&format!("/ws/{id}"));
    ws.send_text(&"x".repeat(4096));
    let close = loop {
        match ws.next(WAIT).expect("a close frame") {
            WsItem::Json(_) => continue,
            other => break other,
        }
    };
    assert!(matches!(close, WsItem::Close(Some((1009, _)))), "{close:?}");
    let mut again = server.ws(&format!("/ws/{id}"));
    again.send_json(&json!({"type": "cancel"}));
    let ack = again.next_json(WAIT).expect("an ack");
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_healthy(&server);
}

/// Sends one byte of a request head per second until the server closes the connection;
/// returns how long that took (`None`: still open after `WAIT`).
fn trickle_until_closed(addr: std::net::SocketAddr) -> Option<Duration> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).expect("connect");
    let head = b"GET /health HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    for byte in head.iter().cycle() {
        if started.elapsed() > WAIT {
            return None;
        }
        if stream.write_all(&[*byte]).is_err() {
            return Some(started.elapsed());
        }
        let mut buf = [0; 64];
        match stream.read(&mut buf) {
            Ok(_) => return Some(started.elapsed()),
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Some(started.elapsed()),
        }
    }
    None
}

#[test]
fn slow_request_heads_are_cut_after_header_timeout_while_health_stays_fast() {
    let server = spawn_server(&[("HEADER_TIMEOUT", "1")]);
    let addr = server.addr();
    let attackers: Vec<_> = (0..20)
        .map(|_| std::thread::spawn(move || trickle_until_closed(addr)))
        .collect();
    let mut worst = Duration::ZERO;
    while attackers.iter().any(|t| !t.is_finished()) {
        let started = Instant::now();
        assert_healthy(&server);
        worst = worst.max(started.elapsed());
        std::thread::sleep(Duration::from_millis(50));
    }
    let closed: Vec<Option<Duration>> = attackers.into_iter().map(|t| t.join().unwrap()).collect();
    println!("slowloris: /health worst latency {worst:?}; connections closed after {closed:?}");
    for after in &closed {
        let after = after.expect("a slow connection was never closed");
        assert!(after < Duration::from_secs(3), "closed after {after:?}");
    }
    assert!(worst < Duration::from_secs(1), "/health took {worst:?}");
    assert_healthy(&server);
}
