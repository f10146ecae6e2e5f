//! The Messages API client against the fake API: streaming, retries, errors, cancel, timeouts;
//! and the fake's own request validation.

mod support;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use computer_use_server::anthropic::{
    AnthropicError, Client, Message, MessageRequest, StreamUpdate,
};
use computer_use_server::cancel::CancelToken;
use computer_use_server::config::{ModelConfig, Secret};
use serde_json::{Value, json};

use support::fake_anthropic::{
    FakeAnthropic, Reply, redacted_thinking_block, text_block, thinking_block, tool_use_block,
};

const KEY: &str = "sk-ant-test-key";

fn config(fake: &FakeAnthropic) -> ModelConfig {
    ModelConfig {
        api_key: Secret::new(KEY),
        base_url: fake.url(),
        default_model: "claude-sonnet-4-5-20250929".into(),
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(5),
        max_retries: 4,
        max_iterations: 10,
    }
}

fn request() -> MessageRequest {
    MessageRequest {
        body: json!({
            "model": "claude-sonnet-4-5-20250929",
            "max_tokens": 4096,
            "messages": [{"role": "user", "content": "hi"}],
        }),
        betas: vec![],
    }
}

/// What `on_update` saw, one string per update.
type Seen = Vec<String>;

fn call(config: &ModelConfig, request: &MessageRequest) -> (Result<Message, AnthropicError>, Seen) {
    call_with(config, request, &CancelToken::new())
}

fn call_with(
    config: &ModelConfig,
    request: &MessageRequest,
    cancel: &CancelToken,
) -> (Result<Message, AnthropicError>, Seen) {
    let mut seen = Vec::new();
    let result = Client::new(config).create_message(request, cancel, &mut |update| {
        seen.push(match update {
            StreamUpdate::TextDelta { index, text } => format!("text {index} {text}"),
            StreamUpdate::ThinkingDelta { index, text } => format!("thinking {index} {text}"),
            StreamUpdate::Retrying {
                attempt,
                max_retries,
                error,
                ..
            } => format!("retrying {attempt}/{max_retries} {}", error.kind()),
        })
    });
    (result, seen)
}

fn retry_counts(fake: &FakeAnthropic) -> Vec<String> {
    fake.requests()
        .iter()
        .map(|r| r.header("x-stainless-retry-count").unwrap_or_default())
        .collect()
}

fn gap(fake: &FakeAnthropic, first: usize) -> Duration {
    let requests = fake.requests();
    requests[first + 1].received_at - requests[first].received_at
}

fn api_status(result: &Result<Message, AnthropicError>) -> Option<u16> {
    match result {
        Err(AnthropicError::Api { status, .. }) => Some(*status),
        _ => None,
    }
}

#[test]
fn text_streams_deltas_in_order_and_returns_the_whole_message() {
    let fake = FakeAnthropic::start();
    fake.push(
        Reply::text("Hello from the fake!")
            .with_usage(321, 17)
            .with_cache_usage(5, 7)
            .with_write_size(5),
    );
    let (result, seen) = call(&config(&fake), &request());
    let message = result.unwrap();
    assert!(seen.len() >= 3, "{seen:?}");
    let streamed: String = seen
        .iter()
        .map(|s| s.strip_prefix("text 0 ").expect("only text deltas"))
        .collect();
    assert_eq!(streamed, "Hello from the fake!");
    assert_eq!(message.content, vec![text_block("Hello from the fake!")]);
    assert_eq!(message.stop_reason.as_deref(), Some("end_turn"));
    assert_eq!(message.id, "msg_fake_0000");
    assert_eq!(message.request_id.as_deref(), Some("req_fake_0000"));
    let usage = message.usage;
    assert_eq!(
        (
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_creation_input_tokens,
            usage.cache_read_input_tokens
        ),
        (321, 17, 5, 7)
    );
}

#[test]
fn tool_use_input_is_assembled_from_json_fragments() {
    let fake = FakeAnthropic::start();
    let input = json!({"command": "ls -la /tmp && echo \"done\"", "restart": false});
    fake.push(Reply::tool_use("toolu_1", "bash", input.clone()).with_leading_text("Let me look."));
    let (result, _) = call(&config(&fake), &request());
    let message = result.unwrap();
    assert_eq!(message.stop_reason.as_deref(), Some("tool_use"));
    assert_eq!(
        message.content,
        vec![
            text_block("Let me look."),
            tool_use_block("toolu_1", "bash", input)
        ]
    );
}

#[test]
fn thinking_signature_and_redacted_thinking_are_kept_byte_for_byte() {
    let fake = FakeAnthropic::start();
    let signature = "EqQBCkYIBxgCKkB+/9z3=\u{e9}ok==";
    let blocks = vec![
        thinking_block("Let me think… about ünïcode", signature),
        redacted_thinking_block("EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIw=="),
        text_block("Done."),
        json!({"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "x"}}),
    ];
    fake.push(Reply::blocks(blocks.clone(), "end_turn").with_write_size(7));
    let (result, seen) = call(&config(&fake), &request());
    let message = result.unwrap();
    assert_eq!(message.content, blocks);
    assert_eq!(message.content[0]["signature"].as_str(), Some(signature));
    assert!(
        seen.iter().any(|s| s.starts_with("thinking 0 ")),
        "{seen:?}"
    );
    let text: String = seen
        .iter()
        .filter_map(|s| s.strip_prefix("text 2 "))
        .collect();
    assert_eq!(text, "Done.");
}

#[test]
fn request_carries_headers_betas_and_stream_true() {
    let fake = FakeAnthropic::start();
    fake.push(Reply::text("a")).push(Reply::text("b"));
    let mut with_betas = request();
    with_betas.betas = vec![
        "computer-use-2025-01-24".into(),
        "token-efficient-tools-2025-02-19".into(),
    ];
    call(&config(&fake), &with_betas).0.unwrap();
    call(&config(&fake), &request()).0.unwrap();
    let requests = fake.requests();
    let first = &requests[0];
    assert_eq!(
        (first.method.as_str(), first.path.as_str()),
        ("POST", "/v1/messages")
    );
    assert_eq!(first.header("x-api-key").as_deref(), Some(KEY));
    assert_eq!(
        first.header("anthropic-version").as_deref(),
        Some("2023-06-01")
    );
    assert_eq!(
        first.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        first.header("anthropic-beta").as_deref(),
        Some("computer-use-2025-01-24,token-efficient-tools-2025-02-19")
    );
    assert_eq!(
        first.header("x-stainless-retry-count").as_deref(),
        Some("0")
    );
    let mut expected = request().body;
    expected["stream"] = Value::Bool(true);
    assert_eq!(first.body, expected);
    assert_eq!(requests[1].header("anthropic-beta"), None);
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[test]
fn overloaded_twice_then_success_backs_off_and_counts_retries() {
    let fake = FakeAnthropic::start();
    fake.push(Reply::error(529, "overloaded_error", "Overloaded"))
        .push(Reply::error(529, "overloaded_error", "Overloaded"))
        .push(Reply::text("finally"));
    let (result, seen) = call(&config(&fake), &request());
    assert_eq!(result.unwrap().content, vec![text_block("finally")]);
    assert_eq!(retry_counts(&fake), ["0", "1", "2"]);
    assert_eq!(
        seen[..2],
        [
            "retrying 1/4 overloaded_error",
            "retrying 2/4 overloaded_error"
        ]
    );
    // Back-off without retry-after: 0.5 s then 1 s, each times a jitter in (0.75, 1].
    assert!(
        gap(&fake, 0) >= Duration::from_millis(370),
        "{:?}",
        gap(&fake, 0)
    );
    assert!(
        gap(&fake, 1) >= Duration::from_millis(740),
        "{:?}",
        gap(&fake, 1)
    );
    assert!(gap(&fake, 1) < Duration::from_millis(1500));
}

#[test]
fn always_overloaded_fails_after_max_retries_plus_one_attempts() {
    let fake = FakeAnthropic::start();
    for _ in 0..3 {
        fake.push(
            Reply::error(529, "overloaded_error", "Overloaded").with_header("retry-after-ms", "10"),
        );
    }
    let mut config = config(&fake);
    config.max_retries = 2;
    let (result, seen) = call(&config, &request());
    match result {
        Err(AnthropicError::Api {
            status,
            error_type,
            message,
            request_id,
            ..
        }) => {
            assert_eq!(
                (status, error_type.as_str(), message.as_str()),
                (529, "overloaded_error", "Overloaded")
            );
            assert_eq!(request_id.as_deref(), Some("req_fake_0002"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.requests().len(), 3);
    assert_eq!(seen.len(), 2);
}

#[test]
fn retry_after_seconds_is_honoured() {
    let fake = FakeAnthropic::start();
    fake.push(
        Reply::error(429, "rate_limit_error", "Rate limited").with_header("retry-after", "1"),
    )
    .push(Reply::text("ok"));
    call(&config(&fake), &request()).0.unwrap();
    // The default first back-off is at most 0.5 s, so this gap proves the header won.
    assert!(
        gap(&fake, 0) >= Duration::from_secs(1),
        "{:?}",
        gap(&fake, 0)
    );
}

#[test]
fn retry_after_ms_is_honoured_and_preferred() {
    let fake = FakeAnthropic::start();
    fake.push(
        Reply::error(500, "api_error", "Internal server error")
            .with_header("retry-after-ms", "700")
            .with_header("retry-after", "30"),
    )
    .push(Reply::text("ok"));
    call(&config(&fake), &request()).0.unwrap();
    let waited = gap(&fake, 0);
    assert!(
        waited >= Duration::from_millis(700) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
}

#[test]
fn x_should_retry_overrides_the_status() {
    let fake = FakeAnthropic::start();
    fake.push(
        Reply::error(500, "api_error", "Internal server error")
            .with_header("x-should-retry", "false"),
    );
    let (result, seen) = call(&config(&fake), &request());
    assert_eq!(api_status(&result), Some(500));
    assert_eq!(fake.requests().len(), 1);
    assert!(seen.is_empty());

    let fake = FakeAnthropic::start();
    fake.push(
        Reply::error(400, "invalid_request_error", "try again")
            .with_header("x-should-retry", "true")
            .with_header("retry-after-ms", "10"),
    )
    .push(Reply::text("ok"));
    call(&config(&fake), &request()).0.unwrap();
    assert_eq!(fake.requests().len(), 2);
}

#[test]
fn bad_request_is_not_retried_and_keeps_the_api_message() {
    let fake = FakeAnthropic::start();
    fake.push(Reply::error(
        400,
        "invalid_request_error",
        "messages: text content blocks must be non-empty",
    ));
    let (result, _) = call(&config(&fake), &request());
    let error = result.unwrap_err();
    assert!(!error.is_retryable());
    assert_eq!(error.kind(), "invalid_request_error");
    let text = error.to_string();
    assert!(
        text.contains("text content blocks must be non-empty") && text.contains("req_fake_0000"),
        "{text}"
    );
    assert_eq!(fake.requests().len(), 1);
}

#[test]
fn authentication_error_is_reported_and_the_key_never_appears() {
    let fake = FakeAnthropic::start();
    fake.push(Reply::error(
        401,
        "authentication_error",
        "invalid x-api-key",
    ));
    let (result, _) = call(&config(&fake), &request());
    assert_eq!(api_status(&result), Some(401));
    assert_eq!(fake.requests().len(), 1);
    let shown = format!("{result:?} {:?}", config(&fake));
    assert!(!shown.contains(KEY), "{shown}");
}

#[test]
fn error_event_inside_a_200_stream_is_retried_like_its_status() {
    let fake = FakeAnthropic::start();
    fake.push(Reply::stream_error("overloaded_error", "Overloaded"))
        .push(Reply::text("second try"));
    let (result, seen) = call(&config(&fake), &request());
    assert_eq!(result.unwrap().content, vec![text_block("second try")]);
    assert_eq!(seen[0], "retrying 1/4 overloaded_error");

    let fake = FakeAnthropic::start();
    fake.push(Reply::text("partial answer").with_error_after(4, "invalid_request_error", "bad"));
    let (result, seen) = call(&config(&fake), &request());
    assert_eq!(api_status(&result), Some(400));
    assert_eq!(
        seen,
        ["text 0 parti"],
        "the delta before the error was live"
    );
    assert_eq!(fake.requests().len(), 1);
}

#[test]
fn reset_mid_stream_is_a_connection_error_and_retried() {
    let fake = FakeAnthropic::start();
    fake.push(Reply::text("Hello there, world").with_reset_after(5))
        .push(Reply::text("Hello again"));
    let (result, seen) = call(&config(&fake), &request());
    assert_eq!(result.unwrap().content, vec![text_block("Hello again")]);
    assert!(
        seen.iter().any(|s| s == "retrying 1/4 connection_error"),
        "{seen:?}"
    );

    let fake = FakeAnthropic::start();
    fake.push(Reply::text("cut").with_reset_after(3));
    let mut config = config(&fake);
    config.max_retries = 0;
    let (result, _) = call(&config, &request());
    assert!(
        matches!(result, Err(AnthropicError::Connection(_))),
        "{result:?}"
    );
}

#[test]
fn missing_api_key_fails_without_touching_the_network() {
    let fake = FakeAnthropic::start();
    let mut config = config(&fake);
    config.api_key = Secret::new("");
    let (result, _) = call(&config, &request());
    assert!(matches!(result, Err(AnthropicError::MissingApiKey)));
    assert!(!fake.wait_for_requests(1, Duration::from_millis(100)));
}

/// Runs a call on another thread, cancels it once the fake saw `requests` requests (plus
/// `after`), and returns the result with how long the cancel took.
fn cancel_after(
    fake: &FakeAnthropic,
    requests: usize,
    after: Duration,
) -> (Result<Message, AnthropicError>, Duration) {
    let cancel = CancelToken::new();
    let (tx, rx) = mpsc::channel();
    let config = config(fake);
    let token = cancel.clone();
    std::thread::spawn(move || {
        let _ = tx.send(call_with(&config, &request(), &token).0);
    });
    assert!(fake.wait_for_requests(requests, Duration::from_secs(5)));
    std::thread::sleep(after);
    let started = Instant::now();
    cancel.cancel();
    let result = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the call returns");
    (result, started.elapsed())
}

#[test]
fn cancel_during_a_stalled_response_returns_promptly() {
    let fake = FakeAnthropic::start();
    fake.push(Reply::stall());
    let (result, took) = cancel_after(&fake, 1, Duration::from_millis(50));
    assert!(
        matches!(result, Err(AnthropicError::Cancelled)),
        "{result:?}"
    );
    assert!(took < Duration::from_millis(500), "{took:?}");
}

#[test]
fn cancel_mid_stream_and_during_back_off_returns_promptly() {
    let fake = FakeAnthropic::start();
    fake.push(Reply::text("slow words arrive").with_event_delay(Duration::from_secs(2)));
    let (result, took) = cancel_after(&fake, 1, Duration::from_millis(50));
    assert!(
        matches!(result, Err(AnthropicError::Cancelled)),
        "{result:?}"
    );
    assert!(took < Duration::from_millis(500), "{took:?}");

    let fake = FakeAnthropic::start();
    fake.push(Reply::error(529, "overloaded_error", "Overloaded").with_header("retry-after", "30"));
    let (result, took) = cancel_after(&fake, 1, Duration::from_millis(100));
    assert!(
        matches!(result, Err(AnthropicError::Cancelled)),
        "{result:?}"
    );
    assert!(took < Duration::from_millis(500), "{took:?}");
    assert_eq!(fake.requests().len(), 1);
}

#[test]
fn read_timeout_before_headers_and_between_events_is_a_timeout_error() {
    for reply in [
        Reply::text("late").with_delay(Duration::from_secs(3)),
        Reply::text("one two three").with_event_delay(Duration::from_secs(3)),
    ] {
        let fake = FakeAnthropic::start();
        fake.push(reply);
        let mut config = config(&fake);
        config.read_timeout = Duration::from_millis(300);
        config.max_retries = 0;
        let started = Instant::now();
        let (result, _) = call(&config, &request());
        assert!(
            matches!(result, Err(AnthropicError::Timeout(_))),
            "{result:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
}

#[test]
fn garbage_bodies_are_invalid_responses_or_typed_http_errors() {
    let fake = FakeAnthropic::start();
    fake.push(Reply::raw(200, "text/html", "<html>captive portal</html>"));
    let (result, _) = call(&config(&fake), &request());
    assert!(
        matches!(result, Err(AnthropicError::InvalidResponse(_))),
        "{result:?}"
    );
    assert_eq!(fake.requests().len(), 1);

    let fake = FakeAnthropic::start();
    fake.push(Reply::raw(
        200,
        "text/event-stream",
        "event: message_start\ndata: {oops\n\n",
    ));
    let (result, _) = call(&config(&fake), &request());
    assert!(
        matches!(result, Err(AnthropicError::InvalidResponse(_))),
        "{result:?}"
    );

    let fake = FakeAnthropic::start();
    fake.push(
        Reply::raw(502, "text/html", "<html>Bad Gateway</html>")
            .with_header("x-should-retry", "false"),
    );
    match call(&config(&fake), &request()).0 {
        Err(AnthropicError::Api {
            status,
            error_type,
            message,
            ..
        }) => {
            assert_eq!((status, error_type.as_str()), (502, "api_error"));
            assert!(message.contains("Bad Gateway"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn empty_script_answers_a_loud_non_retryable_500() {
    let fake = FakeAnthropic::start();
    let (result, _) = call(&config(&fake), &request());
    let text = result.unwrap_err().to_string();
    assert!(text.contains("no scripted reply left"), "{text}");
    assert_eq!(fake.requests().len(), 1);
}

// ---- the fake's validation, as the real API would answer ----

fn rejected(body: Value, betas: &[&str]) -> String {
    let fake = FakeAnthropic::start();
    fake.push(Reply::text("should not be used"));
    let request = MessageRequest {
        body,
        betas: betas.iter().map(|b| b.to_string()).collect(),
    };
    let (result, _) = call(&config(&fake), &request);
    assert_eq!(api_status(&result), Some(400), "{result:?}");
    assert_eq!(fake.pending(), 1, "an invalid request consumes no reply");
    let violations = fake.violations();
    assert!(!violations.is_empty());
    violations.join("\n")
}

fn with(field: &str, value: Value) -> Value {
    let mut body = request().body;
    body[field] = value;
    body
}

#[test]
fn fake_rejects_unanswered_tool_use_and_broken_alternation() {
    let messages = json!([
        {"role": "user", "content": "list files"},
        {"role": "assistant", "content": [tool_use_block("toolu_9", "bash", json!({"command": "ls"}))]},
        {"role": "user", "content": [{"type": "text", "text": "well?"}]},
    ]);
    let text = rejected(with("messages", messages), &[]);
    assert!(text.contains("messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_9"), "{text}");

    let messages = json!([
        {"role": "user", "content": "a"},
        {"role": "user", "content": "b"},
    ]);
    assert!(rejected(with("messages", messages), &[]).contains("roles must alternate"));
    let messages = json!([{"role": "assistant", "content": "a"}]);
    assert!(
        rejected(with("messages", messages), &[])
            .contains("first message must use the \"user\" role")
    );
}

#[test]
fn fake_rejects_bad_thinking_budgets_and_too_many_cache_breakpoints() {
    let text = rejected(
        with(
            "thinking",
            json!({"type": "enabled", "budget_tokens": 8192}),
        ),
        &[],
    );
    assert!(
        text.contains("`max_tokens` must be greater than `thinking.budget_tokens`"),
        "{text}"
    );
    let text = rejected(
        with("thinking", json!({"type": "enabled", "budget_tokens": 512})),
        &[],
    );
    assert!(text.contains("greater than or equal to 1024"), "{text}");

    let cached = json!({"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}});
    let mut body = with("system", json!([cached.clone()]));
    body["messages"] = json!([{"role": "user", "content": [cached.clone(), cached.clone(), cached.clone(), cached]}]);
    let text = rejected(body, &[]);
    assert!(
        text.contains("A maximum of 4 blocks with cache_control may be provided. Found 5."),
        "{text}"
    );
}

#[test]
fn fake_checks_computer_use_tools_against_the_beta_flag() {
    let tools = json!([
        {"name": "computer", "type": "computer_20250124", "display_width_px": 1024, "display_height_px": 768, "display_number": null},
        {"name": "str_replace_editor", "type": "text_editor_20250124"},
        {"name": "bash", "type": "bash_20250124"},
    ]);
    let fake = FakeAnthropic::start();
    fake.push(Reply::text("ok"));
    let mut good = request();
    good.body["tools"] = tools.clone();
    good.betas = vec!["computer-use-2025-01-24".into()];
    call(&config(&fake), &good).0.unwrap();
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());

    let text = rejected(with("tools", tools.clone()), &["computer-use-2025-11-24"]);
    assert!(text.contains("tools.0"), "{text}");
    let mut wrong = tools;
    wrong[1]["name"] = json!("str_replace_based_edit_tool");
    let text = rejected(with("tools", wrong), &["computer-use-2025-01-24"]);
    assert!(text.contains("tools.1"), "{text}");
}

#[test]
fn fake_rejects_missing_fields_and_wrong_routes() {
    let mut body = request().body;
    body.as_object_mut().unwrap().remove("max_tokens");
    assert!(rejected(body, &[]).contains("max_tokens: Field required"));

    let fake = FakeAnthropic::start();
    let mut config = config(&fake);
    config.base_url = format!("{}/elsewhere", fake.url());
    let (result, _) = call(&config, &request());
    assert_eq!(api_status(&result), Some(404));
}
