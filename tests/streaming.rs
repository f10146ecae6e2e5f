//! SSE and WebSocket streams: replay after a seq, live events, keepalives, fan-out, resume.
//! Events are emitted straight through `app.events`, so nothing here depends on the agent.

mod support;

use std::time::Duration;

use computer_use_server::session::EventKind;
use serde_json::{Value, json};
use support::{SseClient, SseItem, TestServer, WAIT, WsClient, WsItem, spawn_server};

fn text(n: usize) -> EventKind {
    EventKind::Text {
        text: format!("t{n}"),
    }
}

fn emit(server: &TestServer, id: &str, count: std::ops::Range<usize>) {
    for n in count {
        server.app.events.emit(id, text(n)).expect("emit");
    }
}

fn sse_seqs(client: &mut SseClient, n: usize) -> Vec<i64> {
    (0..n)
        .map(|_| {
            let (id, data) = client.next_event(WAIT).expect("event");
            assert_eq!(Some(data["seq"].as_i64().unwrap()), id, "{data}");
            id.unwrap()
        })
        .collect()
}

fn ws_seqs(client: &mut WsClient, n: usize) -> Vec<i64> {
    (0..n)
        .map(|_| {
            client.next_json(WAIT).expect("event")["seq"]
                .as_i64()
                .unwrap()
        })
        .collect()
}

#[test]
fn sse_replays_after_last_event_id_then_streams_live() {
    let server = spawn_server(&[]);
    let id = server.create_session();
    emit(&server, &id, 0..5);
    let mut client = server.sse(&format!("/api/sessions/{id}/stream"), Some(2));
    assert_eq!(client.status, 200);
    assert_eq!(client.header("Content-Type"), Some("text/event-stream"));
    assert_eq!(client.header("Cache-Control"), Some("no-cache"));
    assert_eq!(sse_seqs(&mut client, 3), [3, 4, 5]);
    emit(&server, &id, 5..7);
    assert_eq!(sse_seqs(&mut client, 2), [6, 7]);
}

#[test]
fn sse_after_query_and_live_only_deltas_without_id() {
    let server = spawn_server(&[]);
    let id = server.create_session();
    emit(&server, &id, 0..3);
    let mut client = server.sse(&format!("/api/sessions/{id}/stream?after=1"), None);
    assert_eq!(sse_seqs(&mut client, 2), [2, 3]);
    let delta = EventKind::TextDelta {
        index: 0,
        delta: "he".into(),
    };
    server.app.events.emit(&id, delta).unwrap();
    let (event_id, data) = client.next_event(WAIT).unwrap();
    assert_eq!(event_id, None);
    assert_eq!(data["type"], "text_delta");
    assert!(data.get("seq").is_none());
}

#[test]
fn sse_sends_keepalives() {
    let server = spawn_server(&[("SSE_HEARTBEAT", "0.2")]);
    let id = server.create_session();
    let mut client = server.sse(&format!("/api/sessions/{id}/stream"), None);
    assert!(client.wait_comment("keepalive", Duration::from_secs(3)));
}

#[test]
fn two_sse_clients_get_the_same_events_in_order() {
    let server = spawn_server(&[]);
    let id = server.create_session();
    let path = format!("/api/sessions/{id}/stream");
    let (mut a, mut b) = (server.sse(&path, None), server.sse(&path, None));
    wait_for_subscribers(&server, &id, 2);
    emit(&server, &id, 0..20);
    let expected: Vec<i64> = (1..=20).collect();
    assert_eq!(sse_seqs(&mut a, 20), expected);
    assert_eq!(sse_seqs(&mut b, 20), expected);
}

#[test]
fn sse_reconnect_with_last_event_id_gets_each_later_event_exactly_once() {
    let server = spawn_server(&[]);
    let id = server.create_session();
    let path = format!("/api/sessions/{id}/stream");
    let mut first = server.sse(&path, None);
    emit(&server, &id, 0..3);
    assert_eq!(sse_seqs(&mut first, 3), [1, 2, 3]);
    let last = first.last_id;
    drop(first);
    emit(&server, &id, 3..6);
    let mut second = server.sse(&path, last);
    emit(&server, &id, 6..8);
    assert_eq!(sse_seqs(&mut second, 5), [4, 5, 6, 7, 8]);
    assert!(second.next_event(Duration::from_millis(300)).is_none());
}

#[test]
fn sse_ends_with_a_reason_when_the_session_is_deleted() {
    let server = spawn_server(&[]);
    let id = server.create_session();
    let mut client = server.sse(&format!("/api/sessions/{id}/stream"), None);
    wait_for_subscribers(&server, &id, 1);
    server.app.events.broadcaster().close_session(&id);
    assert!(client.wait_comment("closed session deleted", WAIT));
    assert_eq!(client.next(WAIT), Some(SseItem::End));
}

#[test]
fn sse_and_ws_refuse_unknown_sessions_before_streaming() {
    let server = spawn_server(&[]);
    let unknown = "00000000-0000-4000-8000-000000000000";
    let client = server.sse(&format!("/api/sessions/{unknown}/stream"), None);
    assert_eq!(client.status, 404);
    let refused = WsClient::connect(server.addr(), &format!("/ws/{unknown}"), &[]);
    assert_eq!(refused.err(), Some(404));
}

#[test]
fn ws_replays_after_seq_then_streams_live() {
    let server = spawn_server(&[]);
    let id = server.create_session();
    emit(&server, &id, 0..4);
    let mut client = server.ws(&format!("/ws/{id}?after=2"));
    assert_eq!(ws_seqs(&mut client, 2), [3, 4]);
    emit(&server, &id, 4..6);
    assert_eq!(ws_seqs(&mut client, 2), [5, 6]);
}

#[test]
fn two_ws_clients_get_the_same_events_in_order() {
    let server = spawn_server(&[]);
    let id = server.create_session();
    let (mut a, mut b) = (
        server.ws(&format!("/ws/{id}")),
        server.ws(&format!("/ws/{id}")),
    );
    wait_for_subscribers(&server, &id, 2);
    emit(&server, &id, 0..20);
    let expected: Vec<i64> = (1..=20).collect();
    assert_eq!(ws_seqs(&mut a, 20), expected);
    assert_eq!(ws_seqs(&mut b, 20), expected);
}

#[test]
fn ws_reconnect_with_after_gets_each_later_event_exactly_once() {
    let server = spawn_server(&[]);
    let id = server.create_session();
    let mut first = server.ws(&format!("/ws/{id}"));
    emit(&server, &id, 0..3);
    assert_eq!(ws_seqs(&mut first, 3), [1, 2, 3]);
    first.close();
    emit(&server, &id, 3..5);
    let mut second = server.ws(&format!("/ws/{id}?after=3"));
    emit(&server, &id, 5..6);
    assert_eq!(ws_seqs(&mut second, 3), [4, 5, 6]);
    assert!(second.next_json(Duration::from_millis(300)).is_none());
}

#[test]
fn ws_bad_input_gets_an_error_frame_and_the_connection_survives() {
    let server = spawn_server(&[]);
    let id = server.create_session();
    let mut client = server.ws(&format!("/ws/{id}"));
    client.send_text("{not json");
    assert_eq!(client.next_json(WAIT).unwrap()["type"], "error");
    client.send_json(&json!({"type": "message", "content": ""}));
    let err = client.next_json(WAIT).unwrap();
    assert_eq!(
        (err["type"].clone(), err["error"].clone()),
        (json!("error"), json!("invalid_field"))
    );
    client.send_json(&json!({"type": "dance"}));
    assert_eq!(client.next_json(WAIT).unwrap()["type"], "error");
    client.send_json(&json!({"type": "cancel"}));
    let ack = client.next_json(WAIT).unwrap();
    assert_eq!(
        ack,
        json!({"type": "ack", "action": "cancel", "cancelled": false})
    );
}

#[test]
fn ws_message_is_acked_and_stored() {
    let server = spawn_server(&[]);
    let id = server.create_session();
    let mut client = server.ws(&format!("/ws/{id}"));
    client.send_json(&json!({"type": "message", "content": "hello"}));
    let ack = next_of_type(&mut client, "ack");
    assert_eq!(ack["status"], "queued");
    let messages = server.get(&format!("/api/sessions/{id}/messages")).json();
    assert!(
        messages
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == ack["message_id"]),
        "{messages}"
    );
}

#[test]
fn ws_answers_ping_and_echoes_close() {
    let server = spawn_server(&[]);
    let id = server.create_session();
    let mut client = server.ws(&format!("/ws/{id}"));
    client
        .ws
        .send(tungstenite::Message::Ping(b"hi".to_vec().into()))
        .unwrap();
    client.ws.get_ref().set_read_timeout(Some(WAIT)).unwrap();
    let pong = client.ws.read().unwrap();
    assert_eq!(pong, tungstenite::Message::Pong(b"hi".to_vec().into()));
    assert!(matches!(
        client.close(),
        Some(WsItem::Close(_)) | Some(WsItem::Ended)
    ));
    wait_for_subscribers(&server, &id, 0);
}

#[test]
fn ws_closes_a_lagging_client_with_a_resume_hint() {
    let server = spawn_server(&[("SUBSCRIBER_QUEUE", "1")]);
    let id = server.create_session();
    let mut client = server.ws(&format!("/ws/{id}"));
    wait_for_subscribers(&server, &id, 1);
    // The client reads nothing while ~5 MB are emitted: more than the kernel's socket
    // buffers hold, so the stream thread must block on a write and its one-slot queue
    // overflow, however fast it is.
    let big = "x".repeat(8 * 1024);
    for _ in 0..600 {
        let event = EventKind::Text { text: big.clone() };
        server.app.events.emit(&id, event).unwrap();
    }
    let close = loop {
        match client.next(WAIT).expect("a close") {
            WsItem::Json(_) => continue,
            other => break other,
        }
    };
    let WsItem::Close(Some((code, reason))) = close else {
        panic!("{close:?}")
    };
    assert_eq!(code, 4000);
    assert!(reason.contains("?after="), "{reason}");
}

#[test]
fn ws_closes_when_the_session_is_deleted() {
    let server = spawn_server(&[]);
    let id = server.create_session();
    let mut client = server.ws(&format!("/ws/{id}"));
    wait_for_subscribers(&server, &id, 1);
    server.app.events.broadcaster().close_session(&id);
    let Some(WsItem::Close(Some((code, _)))) = client.next(WAIT) else {
        panic!("no close frame")
    };
    assert_eq!(code, 4404);
}

#[test]
fn shutdown_ends_open_streams_and_joins_their_threads() {
    let mut server = spawn_server(&[]);
    let id = server.create_session();
    let mut sse = server.sse(&format!("/api/sessions/{id}/stream"), None);
    let mut ws = server.ws(&format!("/ws/{id}"));
    wait_for_subscribers(&server, &id, 2);
    assert_eq!(server.stream_count(), 2);
    server.stop();
    assert!(sse.next_event(WAIT).is_none());
    assert!(matches!(
        ws.next(WAIT),
        Some(WsItem::Close(_)) | Some(WsItem::Ended)
    ));
}

fn next_of_type(client: &mut WsClient, kind: &str) -> Value {
    loop {
        let frame = client.next_json(WAIT).expect("frame");
        if frame["type"] == kind {
            return frame;
        }
    }
}

/// Subscriptions are made on the stream thread; wait until they exist.
fn wait_for_subscribers(server: &TestServer, id: &str, n: usize) {
    let deadline = std::time::Instant::now() + WAIT;
    let broadcaster = server.app.events.broadcaster();
    while broadcaster.session_subscriber_count(id) != n {
        assert!(
            std::time::Instant::now() < deadline,
            "subscribers never reached {n}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn ws_server_pings_every_heartbeat() {
    let server = spawn_server(&[("SSE_HEARTBEAT", "0.2")]);
    let id = server.create_session();
    let mut client = server.ws(&format!("/ws/{id}"));
    client.ws.get_ref().set_read_timeout(Some(WAIT)).unwrap();
    let frame = client.ws.read().unwrap();
    assert!(matches!(frame, tungstenite::Message::Ping(_)), "{frame:?}");
}

#[test]
fn a_dead_websocket_client_is_found_by_heartbeats_and_closed() {
    // A client that vanished without closing (it neither reads nor answers pings) must not
    // keep a stream thread and a subscription forever.
    let server = spawn_server(&[("SSE_HEARTBEAT", "0.2")]);
    let id = server.create_session();
    let silent = server.ws(&format!("/ws/{id}"));
    let started = std::time::Instant::now();
    while server.stream_count() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the stream never started"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    while server.stream_count() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the silent client was never dropped"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "dropped before any heartbeat was missed"
    );
    assert_eq!(
        server
            .app
            .events
            .broadcaster()
            .session_subscriber_count(&id),
        0
    );
    drop(silent);
}

/// Streams keep their connection's thread, and tiny_http's pool can queue a connection of a
/// burst for a thread that already took another one. Every connection of bursts opened on
/// top of open streams must still be answered promptly (the server nudges its pool).
#[test]
fn bursts_of_new_streams_on_top_of_open_ones_are_all_answered() {
    let server = spawn_server(&[]);
    let id = server.create_session();
    let path = format!("/api/sessions/{id}/stream");
    let addr = server.addr();
    let mut open = Vec::new();
    for burst in 0..6 {
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(25));
        let threads: Vec<_> = (0..25)
            .map(|_| {
                let (path, barrier) = (path.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let started = std::time::Instant::now();
                    let client = SseClient::connect(addr, &path, None, &[]);
                    (client, started.elapsed())
                })
            })
            .collect();
        for thread in threads {
            let (client, took) = thread.join().expect("a stream of the burst got no answer");
            assert_eq!(client.status, 200, "burst {burst}");
            assert!(
                took < Duration::from_secs(5),
                "burst {burst}: answered after {took:?}"
            );
            open.push(client);
        }
    }
    wait_for_subscribers(&server, &id, open.len());
}
