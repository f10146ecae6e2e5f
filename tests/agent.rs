//! The agent end to end: a real server, the fake Messages API, real bash, real SQLite, and
//! clients watching over WebSocket and SSE, as a user would.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::db::TestDb;
use support::fake_anthropic::{FakeAnthropic, Reply, text_block, thinking_block, tool_use_block};
use support::{SseClient, TestServer, WsClient, spawn_server};

const WAIT: Duration = Duration::from_secs(15);

fn server_for(fake: &FakeAnthropic, extra: &[(&str, &str)]) -> TestServer {
    let url = fake.url();
    let mut env = vec![("ANTHROPIC_BASE_URL", url.as_str())];
    env.extend_from_slice(extra);
    spawn_server(&env)
}

fn create_session(server: &TestServer, body: Value) -> String {
    let resp = server.post_json("/api/sessions", &body);
    assert_eq!(resp.status, 201, "{}", resp.body);
    resp.json()["id"].as_str().unwrap().to_string()
}

fn post_message(server: &TestServer, id: &str, text: &str) -> String {
    let resp = server.post_json(
        &format!("/api/sessions/{id}/messages"),
        &json!({"content": text}),
    );
    assert_eq!(resp.status, 202, "{}", resp.body);
    resp.json()["message_id"].as_str().unwrap().to_string()
}

fn is_final_status(event: &Value) -> bool {
    event["type"] == "status" && event["status"] != "processing"
}

/// Events from a WebSocket until (and including) the `n`-th final status.
fn ws_until_final(ws: &mut WsClient, n: usize) -> Vec<Value> {
    let mut events = Vec::new();
    let deadline = Instant::now() + WAIT;
    while events.iter().filter(|e| is_final_status(e)).count() < n {
        let left = deadline
            .checked_duration_since(Instant::now())
            .expect("timed out waiting for the turn");
        let event = ws
            .next_json(left)
            .expect("the WebSocket ended before the turn did");
        if event.get("session_id").is_some() {
            events.push(event);
        }
    }
    events
}

/// Events from an SSE stream until (and including) the `n`-th final status.
fn sse_until_final(sse: &mut SseClient, n: usize) -> Vec<Value> {
    let mut events = Vec::new();
    let deadline = Instant::now() + WAIT;
    while events.iter().filter(|e| is_final_status(e)).count() < n {
        let left = deadline
            .checked_duration_since(Instant::now())
            .expect("timed out waiting for the turn");
        let (_, event) = sse
            .next_event(left)
            .expect("the SSE stream ended before the turn did");
        events.push(event);
    }
    events
}

/// Stored events (those with a `seq`) reduced to `type` or `type:status`.
fn stored_kinds(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.get("seq").is_some())
        .map(|e| match e["type"].as_str().unwrap() {
            "status" => format!("status:{}", e["status"].as_str().unwrap()),
            other => other.to_string(),
        })
        .collect()
}

fn messages(server: &TestServer, id: &str) -> Vec<Value> {
    let resp = server.get(&format!("/api/sessions/{id}/messages"));
    assert_eq!(resp.status, 200);
    resp.json().as_array().unwrap().clone()
}

/// Runs a turn to its end, watching over WebSocket; returns its events.
fn run_turn(server: &TestServer, id: &str, text: &str) -> Vec<Value> {
    let after = stored_count(server, id);
    let mut ws = server.ws(&format!("/ws/{id}?after={after}"));
    post_message(server, id, text);
    ws_until_final(&mut ws, 1)
}

fn stored_count(server: &TestServer, id: &str) -> usize {
    server
        .get(&format!("/api/sessions/{id}/events"))
        .json()
        .as_array()
        .unwrap()
        .len()
}

fn assert_no_violations(fake: &FakeAnthropic) {
    let violations = fake.violations();
    assert!(
        violations.is_empty(),
        "the real API would have rejected: {violations:#?}"
    );
}

#[test]
fn a_bash_turn_streams_in_order_to_ws_and_sse_and_is_stored_exactly_on_sqlite() {
    a_bash_turn_streams_in_order_to_ws_and_sse_and_is_stored_exactly(&TestDb::sqlite());
}

#[test]
fn a_bash_turn_streams_in_order_to_ws_and_sse_and_is_stored_exactly_on_postgres() {
    a_bash_turn_streams_in_order_to_ws_and_sse_and_is_stored_exactly(&TestDb::postgres());
}

fn a_bash_turn_streams_in_order_to_ws_and_sse_and_is_stored_exactly(db: &TestDb) {
    let fake = FakeAnthropic::start();
    fake.push(
        Reply::tool_use("toolu_ls", "bash", json!({"command": "ls /tmp"}))
            .with_leading_text("Let me look in /tmp."),
    );
    fake.push(Reply::text("These are the files in /tmp."));
    let server = server_for(&fake, &[("DATABASE_URL", &db.url_string())]);
    let id = create_session(&server, json!({"tool_version": "computer_use_20250124"}));
    let mut ws = server.ws(&format!("/ws/{id}"));
    let mut sse = server.sse(&format!("/api/sessions/{id}/stream"), None);
    let marker = std::env::temp_dir().join(format!("agent-marker-{}", uuid::Uuid::new_v4()));
    std::fs::write(&marker, "x").unwrap();

    post_message(&server, &id, "list the files in /tmp");
    let over_ws = ws_until_final(&mut ws, 1);
    let over_sse = sse_until_final(&mut sse, 1);

    let expected = [
        "user_message",
        "status:processing",
        "text",
        "tool_use",
        "tool_result",
        "text",
        "usage",
        "status:completed",
    ];
    assert_eq!(stored_kinds(&over_ws), expected);
    let seqs = |events: &[Value]| {
        events
            .iter()
            .filter_map(|e| e["seq"].as_i64())
            .collect::<Vec<_>>()
    };
    assert_eq!(seqs(&over_ws), (1..=8).collect::<Vec<i64>>());
    assert_eq!(seqs(&over_sse), seqs(&over_ws));
    for events in [&over_ws, &over_sse] {
        let first_text = events.iter().position(|e| e["type"] == "text").unwrap();
        let deltas: String = events[..first_text]
            .iter()
            .filter(|e| e["type"] == "text_delta")
            .map(|e| e["delta"].as_str().unwrap())
            .collect();
        assert_eq!(
            deltas, "Let me look in /tmp.",
            "text deltas stream in before the whole block"
        );
    }
    let result = over_ws.iter().find(|e| e["type"] == "tool_result").unwrap();
    let name = marker.file_name().unwrap().to_str().unwrap();
    assert!(
        result["output"].as_str().unwrap().contains(name),
        "{result}"
    );
    assert_eq!(result["tool_use_id"], "toolu_ls");

    let stored = messages(&server, &id);
    let shapes: Vec<(String, Vec<String>)> = stored
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_string(),
                m["content"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|b| b["type"].as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        shapes,
        vec![
            ("user".into(), vec!["text".into()]),
            ("assistant".into(), vec!["text".into(), "tool_use".into()]),
            ("user".into(), vec!["tool_result".into()]),
            ("assistant".into(), vec!["text".into()]),
        ]
    );
    assert_eq!(
        stored[1]["content"][1],
        tool_use_block("toolu_ls", "bash", json!({"command": "ls /tmp"}))
    );
    let second_request = &fake.requests()[1].body;
    assert_eq!(
        second_request["messages"][2]["content"][0]["tool_use_id"],
        "toolu_ls"
    );
    assert_no_violations(&fake);
    let _ = std::fs::remove_file(marker);
}

#[test]
fn turn_two_carries_turn_one_history_with_thinking_signatures_intact_on_sqlite() {
    turn_two_carries_turn_one_history_with_thinking_signatures_intact(&TestDb::sqlite());
}

#[test]
fn turn_two_carries_turn_one_history_with_thinking_signatures_intact_on_postgres() {
    turn_two_carries_turn_one_history_with_thinking_signatures_intact(&TestDb::postgres());
}

fn turn_two_carries_turn_one_history_with_thinking_signatures_intact(db: &TestDb) {
    let fake = FakeAnthropic::start();
    let thinking = thinking_block("The user wants a greeting.", "EqQBCkgIARABGAIiQL+sig/==");
    fake.push(Reply::blocks(
        vec![thinking.clone(), text_block("Hello!")],
        "end_turn",
    ));
    fake.push(Reply::text("You said hi."));
    let server = server_for(&fake, &[("DATABASE_URL", &db.url_string())]);
    let id = create_session(
        &server,
        json!({"thinking_budget": 2048, "max_tokens": 8192}),
    );

    let first = run_turn(&server, &id, "say hi");
    assert!(
        first
            .iter()
            .any(|e| e["type"] == "thinking" && e["thinking"] == "The user wants a greeting.")
    );
    run_turn(&server, &id, "what did I say?");

    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    let history = requests[1].body["messages"].as_array().unwrap();
    assert_eq!(history.len(), 3);
    assert_eq!(history[0]["content"][0]["text"], "say hi");
    assert_eq!(
        history[1]["content"],
        json!([thinking, text_block("Hello!")])
    );
    assert_eq!(history[2]["content"][0]["text"], "what did I say?");
    assert_eq!(
        requests[1].body["thinking"],
        json!({"type": "enabled", "budget_tokens": 2048})
    );
    assert_no_violations(&fake);
}

#[test]
fn overloaded_twice_then_success_completes_the_turn() {
    let fake = FakeAnthropic::start();
    for _ in 0..2 {
        fake.push(
            Reply::error(529, "overloaded_error", "Overloaded").with_header("retry-after-ms", "20"),
        );
    }
    fake.push(Reply::text("Done."));
    let server = server_for(&fake, &[]);
    let id = create_session(&server, json!({}));
    let events = run_turn(&server, &id, "hello");
    assert_eq!(events.last().unwrap()["status"], "completed");
    let retries = events
        .iter()
        .filter(|e| e["type"] == "status" && e["message"].as_str().unwrap().starts_with("retry"))
        .count();
    assert_eq!(retries, 2, "each retry is announced");
    let counts: Vec<String> = fake
        .requests()
        .iter()
        .map(|r| r.header("x-stainless-retry-count").unwrap())
        .collect();
    assert_eq!(counts, ["0", "1", "2"]);
    assert_eq!(messages(&server, &id)[1]["content"][0]["text"], "Done.");
}

#[test]
fn overloaded_every_time_ends_with_an_error_event_and_the_next_message_works() {
    let fake = FakeAnthropic::start();
    for _ in 0..5 {
        fake.push(
            Reply::error(529, "overloaded_error", "Overloaded").with_header("retry-after-ms", "10"),
        );
    }
    let server = server_for(&fake, &[]);
    let id = create_session(&server, json!({}));
    let events = run_turn(&server, &id, "first");
    assert_eq!(fake.requests().len(), 5, "one attempt plus four retries");
    let error = events
        .iter()
        .find(|e| e["type"] == "error")
        .expect("an error event");
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("overloaded_error"),
        "{error}"
    );
    assert_eq!(events.last().unwrap()["status"], "error");

    fake.push(Reply::text("Back again."));
    let events = run_turn(&server, &id, "second");
    assert_eq!(events.last().unwrap()["status"], "completed");
    let last = fake.requests().last().unwrap().body.clone();
    let texts: Vec<&str> = last["messages"][0]["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        ["first", "second"],
        "the unanswered message is kept, merged into one user turn"
    );
    assert_no_violations(&fake);
}

#[test]
fn retry_after_is_honoured() {
    let fake = FakeAnthropic::start();
    fake.push(Reply::error(429, "rate_limit_error", "Slow down").with_header("retry-after", "1"));
    fake.push(Reply::text("ok"));
    let server = server_for(&fake, &[]);
    let id = create_session(&server, json!({}));
    run_turn(&server, &id, "hi");
    let requests = fake.requests();
    let gap = requests[1].received_at - requests[0].received_at;
    assert!(gap >= Duration::from_millis(1000), "retried after {gap:?}");
    assert!(gap < Duration::from_millis(3000), "retried after {gap:?}");
}

#[test]
fn cancel_during_a_slow_model_call_ends_the_turn_within_a_second() {
    let fake = FakeAnthropic::start();
    fake.push(Reply::text("too late").with_delay(Duration::from_secs(30)));
    let server = server_for(&fake, &[]);
    let id = create_session(&server, json!({}));
    let mut ws = server.ws(&format!("/ws/{id}"));
    post_message(&server, &id, "take your time");
    assert!(fake.wait_for_requests(1, WAIT));

    let asked = Instant::now();
    let resp = server.post_json(&format!("/api/sessions/{id}/cancel"), &json!({}));
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.json()["cancelled"], true);
    let events = ws_until_final(&mut ws, 1);
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "cancelled after {:?}",
        asked.elapsed()
    );
    assert_eq!(events.last().unwrap()["status"], "cancelled");

    fake.push(Reply::text("Fresh answer."));
    let events = run_turn(&server, &id, "try again");
    assert_eq!(events.last().unwrap()["status"], "completed");
    assert_no_violations(&fake);
}

#[test]
fn cancel_during_sleep_30_in_bash_ends_the_turn_within_a_second_and_heals_history() {
    let fake = FakeAnthropic::start();
    fake.push(Reply::tool_use(
        "toolu_sleep",
        "bash",
        json!({"command": "sleep 30"}),
    ));
    let server = server_for(&fake, &[]);
    let id = create_session(&server, json!({}));
    let mut ws = server.ws(&format!("/ws/{id}"));
    post_message(&server, &id, "wait a while");
    let deadline = Instant::now() + WAIT;
    loop {
        let event = ws
            .next_json(deadline - Instant::now())
            .expect("tool_use event");
        if event["type"] == "tool_use" {
            break;
        }
    }

    let asked = Instant::now();
    ws.send_json(&json!({"type": "cancel"}));
    let events = ws_until_final(&mut ws, 1);
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "cancelled after {:?}",
        asked.elapsed()
    );
    assert_eq!(events.last().unwrap()["status"], "cancelled");
    let result = events.iter().find(|e| e["type"] == "tool_result").unwrap();
    assert!(result["error"].is_string(), "{result}");

    fake.push(Reply::tool_use(
        "toolu_echo",
        "bash",
        json!({"command": "echo still here"}),
    ));
    fake.push(Reply::text("The shell works."));
    let events = run_turn(&server, &id, "carry on");
    assert_eq!(events.last().unwrap()["status"], "completed");
    let echoed = events.iter().find(|e| e["type"] == "tool_result").unwrap();
    assert_eq!(echoed["output"], "still here");
    let request = &fake.requests()[1].body;
    let healed = &request["messages"][2]["content"][0];
    assert_eq!(
        (healed["tool_use_id"].as_str(), healed["is_error"].as_bool()),
        (Some("toolu_sleep"), Some(true))
    );
    assert_no_violations(&fake);
}

#[test]
fn a_message_queued_at_shutdown_is_answered_after_restart_on_sqlite() {
    a_message_queued_at_shutdown_is_answered_after_restart(&TestDb::sqlite());
}

#[test]
fn a_message_queued_at_shutdown_is_answered_after_restart_on_postgres() {
    a_message_queued_at_shutdown_is_answered_after_restart(&TestDb::postgres());
}

fn a_message_queued_at_shutdown_is_answered_after_restart(db: &TestDb) {
    let fake = FakeAnthropic::start();
    fake.push(Reply::text("never delivered").with_delay(Duration::from_secs(30)));
    let mut server = server_for(&fake, &[("DATABASE_URL", &db.url_string())]);
    let id = create_session(&server, json!({}));
    post_message(&server, &id, "first question");
    assert!(fake.wait_for_requests(1, WAIT));
    post_message(&server, &id, "second question");
    server.stop();

    fake.push(Reply::text("First answer."));
    fake.push(Reply::text("Second answer."));
    server.restart();
    let mut ws = server.ws(&format!("/ws/{id}"));
    let deadline = Instant::now() + WAIT;
    while messages(&server, &id).len() < 4 {
        let left = deadline
            .checked_duration_since(Instant::now())
            .expect("the queued messages were not answered");
        ws.next_json(left);
    }
    let texts: Vec<String> = messages(&server, &id)
        .iter()
        .map(|m| m["content"][0]["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        texts,
        [
            "first question",
            "First answer.",
            "second question",
            "Second answer."
        ]
    );
    assert_no_violations(&fake);
}

#[test]
fn messages_sent_while_a_turn_runs_are_answered_in_order() {
    let fake = FakeAnthropic::start();
    fake.push(Reply::text("one").with_delay(Duration::from_millis(300)));
    fake.push(Reply::text("two"));
    fake.push(Reply::text("three"));
    let server = server_for(&fake, &[]);
    let id = create_session(&server, json!({}));
    let mut ws = server.ws(&format!("/ws/{id}"));
    for text in ["1", "2", "3"] {
        post_message(&server, &id, text);
    }
    ws_until_final(&mut ws, 3);
    let texts: Vec<String> = messages(&server, &id)
        .iter()
        .map(|m| m["content"][0]["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts, ["1", "one", "2", "two", "3", "three"]);
    assert_no_violations(&fake);
}

#[test]
fn without_an_api_key_the_turn_ends_with_an_error_event_saying_so() {
    let fake = FakeAnthropic::start();
    let server = server_for(&fake, &[("ANTHROPIC_API_KEY", "")]);
    let id = create_session(&server, json!({}));
    let events = run_turn(&server, &id, "hello");
    let error = events
        .iter()
        .find(|e| e["type"] == "error")
        .expect("an error event");
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("ANTHROPIC_API_KEY"),
        "{error}"
    );
    assert_eq!(events.last().unwrap()["status"], "error");
    assert!(fake.requests().is_empty());
    assert_eq!(
        server.get("/health").status,
        200,
        "the server keeps serving"
    );
}

#[test]
fn every_tool_version_sends_its_tools_and_beta() {
    let fake = FakeAnthropic::start();
    let server = server_for(&fake, &[]);
    let cases = [
        (
            "computer_use_20241022",
            "computer-use-2024-10-22",
            ["computer_20241022", "text_editor_20241022", "bash_20241022"],
        ),
        (
            "computer_use_20250124",
            "computer-use-2025-01-24",
            ["computer_20250124", "text_editor_20250124", "bash_20250124"],
        ),
        (
            "computer_use_20250429",
            "computer-use-2025-01-24",
            ["computer_20250124", "text_editor_20250429", "bash_20250124"],
        ),
        (
            "computer_use_20251124",
            "computer-use-2025-11-24",
            ["computer_20251124", "text_editor_20250728", "bash_20250124"],
        ),
    ];
    for (n, (version, beta, types)) in cases.iter().enumerate() {
        fake.push(Reply::text("ok"));
        let id = create_session(&server, json!({"tool_version": version}));
        run_turn(&server, &id, "hi");
        let request = &fake.requests()[n];
        assert_eq!(
            request.header("anthropic-beta").unwrap(),
            format!("{beta},prompt-caching-2024-07-31")
        );
        let sent: Vec<&str> = request.body["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["type"].as_str().unwrap())
            .collect();
        assert_eq!(sent, types, "{version}");
        let computer = &request.body["tools"][0];
        assert_eq!(
            computer["enable_zoom"].as_bool(),
            (*version == "computer_use_20251124").then_some(true)
        );
    }
    assert_no_violations(&fake);
}

#[test]
fn token_usage_is_summed_per_session() {
    let fake = FakeAnthropic::start();
    fake.push(
        Reply::tool_use("toolu_1", "bash", json!({"command": "true"}))
            .with_usage(100, 10)
            .with_cache_usage(50, 0),
    );
    fake.push(
        Reply::text("done")
            .with_usage(200, 20)
            .with_cache_usage(0, 50),
    );
    let server = server_for(&fake, &[]);
    let id = create_session(&server, json!({}));
    let events = run_turn(&server, &id, "go");
    let usage = events.iter().find(|e| e["type"] == "usage").unwrap();
    assert_eq!(
        (
            usage["input_tokens"].as_i64(),
            usage["output_tokens"].as_i64()
        ),
        (Some(300), Some(30))
    );
    let session = server.get(&format!("/api/sessions/{id}")).json();
    assert_eq!(
        session["usage"],
        json!({"input_tokens": 300, "output_tokens": 30, "cache_creation_input_tokens": 50, "cache_read_input_tokens": 50})
    );
}

#[test]
fn the_editor_tool_edits_a_real_file_through_the_agent() {
    let fake = FakeAnthropic::start();
    let path = std::env::temp_dir().join(format!("agent-edit-{}.txt", uuid::Uuid::new_v4()));
    let path_str = path.to_str().unwrap();
    fake.push(Reply::tool_use(
        "toolu_c",
        "str_replace_based_edit_tool",
        json!({"command": "create", "path": path_str, "file_text": "hello world\n"}),
    ));
    fake.push(Reply::tool_use(
        "toolu_r",
        "str_replace_based_edit_tool",
        json!({"command": "str_replace", "path": path_str, "old_str": "world", "new_str": "agent"}),
    ));
    fake.push(Reply::text("Edited."));
    let server = server_for(&fake, &[]);
    let id = create_session(&server, json!({"tool_version": "computer_use_20251124"}));
    let events = run_turn(&server, &id, "edit a file");
    assert_eq!(events.last().unwrap()["status"], "completed");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "hello agent\n");
    let results: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "tool_result")
        .collect();
    assert!(
        results[0]["output"]
            .as_str()
            .unwrap()
            .contains("File created successfully")
    );
    assert!(
        results[1]["output"]
            .as_str()
            .unwrap()
            .contains("has been edited")
    );
    let _ = std::fs::remove_file(path);
}

#[test]
fn an_unknown_tool_and_a_computer_call_without_desktop_are_error_results_not_crashes() {
    let fake = FakeAnthropic::start();
    fake.push(Reply::blocks(
        vec![
            tool_use_block("toolu_a", "teleport", json!({})),
            tool_use_block("toolu_b", "computer", json!({"action": "screenshot"})),
        ],
        "tool_use",
    ));
    fake.push(Reply::text("I cannot do that here."));
    let server = server_for(&fake, &[]);
    let id = create_session(&server, json!({}));
    let events = run_turn(&server, &id, "do things");
    let errors: Vec<String> = events
        .iter()
        .filter(|e| e["type"] == "tool_result")
        .map(|e| e["error"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(errors[0], "Tool teleport is invalid");
    assert!(errors[1].contains("no desktop"), "{}", errors[1]);
    assert_eq!(events.last().unwrap()["status"], "completed");
    assert_no_violations(&fake);
}

#[test]
fn cancel_right_after_posting_cancels_that_turn_even_before_it_starts() {
    let fake = FakeAnthropic::start();
    for _ in 0..20 {
        fake.push(Reply::text("should not be needed").with_delay(Duration::from_secs(5)));
    }
    let server = server_for(&fake, &[]);
    for round in 0..20 {
        let id = create_session(&server, json!({}));
        let mut ws = server.ws(&format!("/ws/{id}"));
        post_message(&server, &id, "stop me");
        let asked = Instant::now();
        let resp = server.post_json(&format!("/api/sessions/{id}/cancel"), &json!({}));
        assert_eq!(resp.json()["cancelled"], true, "round {round}");
        let events = ws_until_final(&mut ws, 1);
        assert_eq!(
            events.last().unwrap()["status"],
            "cancelled",
            "round {round}"
        );
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "round {round}: {:?}",
            asked.elapsed()
        );
    }
}
