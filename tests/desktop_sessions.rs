//! The desktop as the agent and its users meet it, through the server: per-session desktops on
//! real Xvfb + x11vnc, a scripted agent that takes screenshots and types into a real window.

mod support;

use std::time::{Duration, Instant};

use computer_use_server::util::base64;
use serde_json::{Value, json};
use support::fake_anthropic::{FakeAnthropic, Reply};
use support::{TestServer, WsClient, spawn_server};

const WAIT: Duration = Duration::from_secs(20);

fn desktop_server(fake: &FakeAnthropic, extra: &[(&str, &str)]) -> TestServer {
    let url = fake.url();
    let mut env = vec![
        ("ANTHROPIC_BASE_URL", url.as_str()),
        ("DESKTOP_MODE", "per-session"),
        ("SETTLE_DELAY", "0.2"),
        ("VNC_PORT", "0"),
    ];
    env.extend_from_slice(extra);
    spawn_server(&env)
}

fn create_session(server: &TestServer) -> String {
    let resp = server.post_json(
        "/api/sessions",
        &json!({"tool_version": "computer_use_20250124"}),
    );
    assert_eq!(resp.status, 201, "{}", resp.body);
    resp.json()["id"].as_str().unwrap().to_string()
}

/// Posts a message and returns the turn's events (until its final status).
fn run_turn(server: &TestServer, id: &str, text: &str) -> Vec<Value> {
    let after = server
        .get(&format!("/api/sessions/{id}/events"))
        .json()
        .as_array()
        .unwrap()
        .len();
    let mut ws = server.ws(&format!("/ws/{id}?after={after}"));
    let resp = server.post_json(
        &format!("/api/sessions/{id}/messages"),
        &json!({"content": text}),
    );
    assert_eq!(resp.status, 202, "{}", resp.body);
    until_final(&mut ws)
}

fn until_final(ws: &mut WsClient) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    let mut events = Vec::new();
    loop {
        let left = deadline
            .checked_duration_since(Instant::now())
            .expect("the turn did not end");
        let event = ws
            .next_json(left)
            .expect("the stream ended before the turn");
        let done = event["type"] == "status" && event["status"] != "processing";
        events.push(event);
        if done {
            return events;
        }
    }
}

fn tool_results(events: &[Value]) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| e["type"] == "tool_result")
        .collect()
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(b64: &str) -> (u32, u32) {
    let png = base64::decode(b64).expect("base64");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let be = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

/// The session's display number, from its `vnc.display` (`":N"`).
fn display_of(server: &TestServer, id: &str) -> u64 {
    let session = server.get(&format!("/api/sessions/{id}")).json();
    let display = session["vnc"]["display"]
        .as_str()
        .and_then(|d| d.strip_prefix(':'));
    display
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no vnc display in {session}"))
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[test]
fn a_scripted_turn_takes_a_screenshot_of_the_scaled_size() {
    let fake = FakeAnthropic::start();
    fake.push(Reply::tool_use(
        "toolu_shot",
        "computer",
        json!({"action": "screenshot"}),
    ));
    fake.push(Reply::text("I see the desktop."));
    let server = desktop_server(&fake, &[("WIDTH", "1920"), ("HEIGHT", "1080")]);
    let id = create_session(&server);
    let events = run_turn(&server, &id, "take a screenshot");
    let results = tool_results(&events);
    let image = results[0]["base64_image"].as_str().expect("a screenshot");
    assert_eq!(png_size(image), (1366, 768), "1920x1080 is scaled to FWXGA");
    let requests = fake.requests();
    let computer = &requests[0].body["tools"][0];
    assert_eq!(
        (
            computer["display_width_px"].as_u64(),
            computer["display_height_px"].as_u64()
        ),
        (Some(1366), Some(768))
    );
    assert_eq!(
        computer["display_number"].as_u64(),
        Some(display_of(&server, &id))
    );
    let sent = &requests[1].body["messages"][2]["content"][0]["content"][0];
    assert_eq!(sent["type"], "image");
    assert_eq!(
        sent["source"]["data"].as_str(),
        Some(image),
        "the model gets the same PNG"
    );
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[test]
fn a_scripted_turn_clicks_and_types_into_a_real_xterm() {
    let dir = std::env::temp_dir().join(format!("cus-xterm-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let typed = dir.join("typed.txt");
    let start_xterm = format!(
        "(xterm -geometry 80x12+0+0 -e sh -c 'cat > {}' &) ; xdotool search --sync --onlyvisible --class xterm >/dev/null && echo up",
        typed.display()
    );
    let fake = FakeAnthropic::start();
    fake.push(Reply::tool_use(
        "toolu_x",
        "bash",
        json!({"command": start_xterm}),
    ));
    fake.push(Reply::tool_use(
        "toolu_c",
        "computer",
        json!({"action": "left_click", "coordinate": [60, 60]}),
    ));
    fake.push(Reply::tool_use(
        "toolu_t",
        "computer",
        json!({"action": "type", "text": "hello from the agent\n"}),
    ));
    fake.push(Reply::text("Typed it."));
    let server = desktop_server(&fake, &[]);
    let id = create_session(&server);
    let events = run_turn(&server, &id, "type into the terminal");
    assert_eq!(events.last().unwrap()["status"], "completed", "{events:#?}");
    let results = tool_results(&events);
    assert_eq!(results[0]["output"], "up", "{:?}", results[0]);
    assert!(results[1]["base64_image"].is_string() && results[2]["base64_image"].is_string());
    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = std::fs::read_to_string(&typed).unwrap_or_default();
        if text.ends_with('\n') || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(text, "hello from the agent\n");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn two_sessions_get_two_displays_and_one_cannot_change_the_others_screen() {
    let fake = FakeAnthropic::start();
    let server = desktop_server(&fake, &[]);
    let (a, b) = (create_session(&server), create_session(&server));
    let shot = || Reply::tool_use("toolu_s", "computer", json!({"action": "screenshot"}));
    fake.push(shot()).push(Reply::text("b before"));
    let before = run_turn(&server, &b, "look");
    fake.push(Reply::tool_use(
        "toolu_m",
        "computer",
        json!({"action": "mouse_move", "coordinate": [700, 500]}),
    ));
    fake.push(Reply::tool_use("toolu_x", "bash", json!({"command": "(xterm -geometry 80x24+100+100 &) ; xdotool search --sync --onlyvisible --class xterm >/dev/null"})));
    fake.push(shot()).push(Reply::text("a changed its screen"));
    let changed = run_turn(&server, &a, "change things");
    fake.push(shot()).push(Reply::text("b after"));
    let after = run_turn(&server, &b, "look again");

    assert_ne!(display_of(&server, &a), display_of(&server, &b));
    let image = |events: &[Value]| {
        tool_results(events).last().unwrap()["base64_image"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        image(&before),
        image(&after),
        "session b's screen did not change"
    );
    assert_ne!(
        image(&changed),
        image(&before),
        "session a's screen did change"
    );
}

#[test]
fn deleting_a_session_stops_its_xvfb_window_manager_and_x11vnc() {
    let fake = FakeAnthropic::start();
    fake.push(Reply::text("hi"));
    let server = desktop_server(&fake, &[]);
    let id = create_session(&server);
    run_turn(&server, &id, "hello");
    let processes = server.app.desktops.processes(Some(&id));
    let programs: Vec<&str> = processes.iter().map(|p| p.program).collect();
    assert!(
        programs.contains(&"Xvfb") && programs.contains(&"x11vnc"),
        "{programs:?}"
    );
    assert!(processes.iter().all(|p| alive(p.pid)));
    let info = server.get(&format!("/api/vnc/info?session_id={id}")).json();
    let vnc_port = info["port"].as_u64();
    assert!(
        vnc_port.is_some(),
        "the running desktop's VNC port is reported: {info}"
    );

    assert_eq!(server.delete(&format!("/api/sessions/{id}")).status, 200);
    for process in &processes {
        assert!(
            !alive(process.pid),
            "{} ({}) outlived its session",
            process.program,
            process.pid
        );
    }
    if let Some(port) = vnc_port {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port as u16)).is_err(),
            "VNC still listening"
        );
    }
    assert_eq!(server.app.desktops.running_count(), 0);
}

#[test]
fn a_desktop_beyond_max_desktops_is_a_clear_503_until_one_is_freed() {
    let fake = FakeAnthropic::start();
    fake.push(Reply::text("one")).push(Reply::text("two"));
    let server = desktop_server(&fake, &[("MAX_DESKTOPS", "1")]);
    let (a, b) = (create_session(&server), create_session(&server));
    run_turn(&server, &a, "first");
    let refused = server.post_json(
        &format!("/api/sessions/{b}/messages"),
        &json!({"content": "second"}),
    );
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(
        refused.json()["detail"]
            .as_str()
            .unwrap()
            .contains("MAX_DESKTOPS"),
        "{}",
        refused.body
    );
    assert!(
        server
            .get(&format!("/api/sessions/{b}/messages"))
            .json()
            .as_array()
            .unwrap()
            .is_empty(),
        "nothing was queued"
    );

    assert_eq!(server.delete(&format!("/api/sessions/{a}")).status, 200);
    let events = run_turn(&server, &b, "second");
    assert_eq!(events.last().unwrap()["status"], "completed");
}
