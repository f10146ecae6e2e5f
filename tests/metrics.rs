//! `/metrics` and the `/health` additions through a real server: what a scripted turn leaves in
//! the counters, the connection gauges while clients are connected, the token, and a strict
//! check of the text format.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::fake_anthropic::{FakeAnthropic, Reply};
use support::{TestServer, spawn_server};

const WAIT: Duration = Duration::from_secs(15);

/// One sample line: its metric name, labels in order, and value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: Labels,
    value: f64,
}

impl Sample {
    fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Label names and values, in order.
type Labels = Vec<(String, String)>;

/// A parsed page: the samples, and each metric's `# TYPE`.
struct Page {
    samples: Vec<Sample>,
    types: HashMap<String, String>,
}

impl Page {
    /// The value of the one sample named `name` with exactly these labels (in any order).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| {
                s.name == name
                    && s.labels.len() == labels.len()
                    && labels.iter().all(|(n, v)| s.label(n) == Some(v))
            })
            .map(|s| s.value)
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
    }
}

/// Parses the text exposition format 0.0.4 strictly: every line is a `# HELP`, a `# TYPE`
/// (before the metric's samples, once) or a sample whose name, labels and value are well
/// formed. Panics on the first bad line.
fn parse(text: &str) -> Page {
    assert!(text.ends_with('\n'), "the page must end with a newline");
    let mut page = Page {
        samples: Vec::new(),
        types: HashMap::new(),
    };
    for (n, line) in text.lines().enumerate() {
        let context = format!("line {}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect(&context);
            assert!(is_metric_name(name), "{context}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{context}"
            );
            let fresh = page.types.insert(name.into(), kind.into()).is_none();
            assert!(fresh, "TYPE given twice, {context}");
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(is_metric_name(name), "{context}");
        } else if line.starts_with('#') {
            continue;
        } else {
            let sample = parse_sample(line).unwrap_or_else(|why| panic!("{why}, {context}"));
            assert!(
                family_type(&page, &sample.name).is_some(),
                "no TYPE before {context}"
            );
            page.samples.push(sample);
        }
    }
    page
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(['{', ' '])
        .ok_or("no value after the metric name")?;
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inner)?;
        labels = parsed;
        rest = after;
    }
    let rest = rest.strip_prefix(' ').ok_or("no space before the value")?;
    let mut fields = rest.split(' ');
    let value = parse_value(fields.next().unwrap_or(""))?;
    if let Some(timestamp) = fields.next() {
        timestamp
            .parse::<i64>()
            .map_err(|_| format!("bad timestamp {timestamp:?}"))?;
    }
    if fields.next().is_some() {
        return Err("trailing fields".into());
    }
    Ok(Sample {
        name: name.into(),
        labels,
        value,
    })
}

/// `name="value",…}`: the labels and what follows the closing brace.
fn parse_labels(mut text: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    loop {
        if let Some(after) = text.strip_prefix('}') {
            return Ok((labels, after));
        }
        let (name, after) = text.split_once("=\"").ok_or("a label without =\"")?;
        let ok_name = is_metric_name(name) && !name.contains(':');
        if !ok_name {
            return Err(format!("bad label name {name:?}"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().ok_or("unterminated label value")? {
                (i, '"') => break i,
                (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    other => return Err(format!("bad escape \\{other}")),
                },
                (_, '\n') => return Err("raw newline in a label value".into()),
                (_, c) => value.push(c),
            }
        };
        if labels.iter().any(|(n, _)| n == name) {
            return Err(format!("label {name} repeated"));
        }
        labels.push((name.to_string(), value));
        text = &after[end + 1..];
        text = text.strip_prefix(',').unwrap_or(text);
    }
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ if text.contains(char::is_alphabetic) && !text.contains(['e', 'E']) => {
            Err(format!("bad value {text:?}"))
        }
        _ => text.parse().map_err(|_| format!("bad value {text:?}")),
    }
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The declared type of the metric a sample belongs to (histogram samples carry suffixes).
fn family_type<'a>(page: &'a Page, sample_name: &str) -> Option<&'a str> {
    if let Some(kind) = page.types.get(sample_name) {
        return Some(kind);
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = sample_name.strip_suffix(suffix)?;
        page.types
            .get(base)
            .filter(|kind| *kind == "histogram")
            .map(String::as_str)
    })
}

/// Every counter is named `…_total`; every histogram series has cumulative buckets with
/// ascending `le` ending at `+Inf`, whose count equals `_count`, and a `_sum`.
fn check_semantics(page: &Page) {
    for (name, kind) in &page.types {
        if kind == "counter" {
            assert!(
                name.ends_with("_total"),
                "counter {name} must end with _total"
            );
        }
    }
    let mut series: HashMap<(String, Labels), Vec<(f64, f64)>> = HashMap::new();
    for sample in &page.samples {
        let Some(base) = sample.name.strip_suffix("_bucket") else {
            continue;
        };
        let le = sample.label("le").expect("a bucket without le");
        let others: Vec<_> = sample
            .labels
            .iter()
            .filter(|(n, _)| n != "le")
            .cloned()
            .collect();
        let bound = parse_value(le).expect("le is a number");
        series
            .entry((base.to_string(), others))
            .or_default()
            .push((bound, sample.value));
    }
    for ((base, labels), buckets) in &series {
        let pairs: Vec<(&str, &str)> = labels
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        for pair in buckets.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{base} {labels:?}: le not ascending");
            assert!(pair[0].1 <= pair[1].1, "{base} {labels:?}: not cumulative");
        }
        let (last_le, last_count) = *buckets.last().unwrap();
        assert_eq!(last_le, f64::INFINITY, "{base} {labels:?}: no +Inf bucket");
        let count = page.get(&format!("{base}_count"), &pairs);
        assert_eq!(last_count, count, "{base} {labels:?}: +Inf != _count");
        page.get(&format!("{base}_sum"), &pairs);
    }
}

/// GET /metrics, checked for type and syntax.
fn scrape(server: &TestServer) -> Page {
    let resp = server.get("/metrics");
    assert_eq!(resp.status, 200, "{}", resp.body);
    let content_type = resp.header("Content-Type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let page = parse(&resp.body);
    check_semantics(&page);
    page
}

/// Scrapes until `done` holds for the page; panics after `WAIT`.
fn scrape_until(server: &TestServer, what: &str, done: impl Fn(&Page) -> bool) -> Page {
    let deadline = Instant::now() + WAIT;
    loop {
        let page = scrape(server);
        if done(&page) {
            return page;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn connections(page: &Page, kind: &str) -> f64 {
    page.get("computer_use_open_connections", &[("kind", kind)])
}

/// Runs a turn watched over WebSocket, until its final status.
fn run_turn(server: &TestServer, id: &str, text: &str) {
    let mut ws = server.ws(&format!("/ws/{id}"));
    let resp = server.post_json(
        &format!("/api/sessions/{id}/messages"),
        &json!({"content": text}),
    );
    assert_eq!(resp.status, 202, "{}", resp.body);
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline
            .checked_duration_since(Instant::now())
            .expect("timed out waiting for the turn");
        let event = ws.next_json(left).expect("the WebSocket ended early");
        if event["type"] == "status" && event["status"] != "processing" {
            assert_eq!(event["status"], "completed", "{event}");
            return;
        }
    }
}

#[test]
fn a_turn_with_a_retry_and_a_bash_call_is_counted_by_route_model_tool_and_store() {
    let fake = FakeAnthropic::start();
    fake.push(
        Reply::error(529, "overloaded_error", "Overloaded").with_header("retry-after-ms", "20"),
    );
    fake.push(
        Reply::tool_use("toolu_1", "bash", json!({"command": "echo hi"}))
            .with_usage(100, 10)
            .with_cache_usage(50, 0),
    );
    fake.push(
        Reply::text("It printed hi.")
            .with_usage(200, 20)
            .with_cache_usage(0, 50),
    );
    let server = spawn_server(&[("ANTHROPIC_BASE_URL", &fake.url())]);
    let id = server.create_session();
    run_turn(&server, &id, "run echo hi");
    let unknown = "00000000-0000-4000-8000-000000000000";
    assert_eq!(server.get(&format!("/api/sessions/{unknown}")).status, 404);
    assert_eq!(server.get("/no/such/route").status, 404);

    // The turn's last records (tokens, the tool) precede its final status; the 404 above
    // is recorded after its response was sent, so wait for it.
    let requests = "computer_use_http_requests_total";
    let page = scrape_until(&server, "the 404s to be recorded", |page| {
        let not_found = |route| {
            let labels = [("method", "GET"), ("route", route), ("status", "404")];
            page.value(requests, &labels) == Some(1.0)
        };
        not_found("unmatched") && not_found("/api/sessions/{id}")
    });
    let route = |method, route, status| {
        page.get(
            requests,
            &[("method", method), ("route", route), ("status", status)],
        )
    };
    assert_eq!(route("POST", "/api/sessions", "201"), 1.0);
    assert_eq!(route("POST", "/api/sessions/{id}/messages", "202"), 1.0);
    assert_eq!(route("GET", "/ws/{id}", "101"), 1.0);
    assert_eq!(route("GET", "/api/sessions/{id}", "404"), 1.0);
    let raw_paths = page
        .samples
        .iter()
        .filter(|s| {
            s.labels
                .iter()
                .any(|(_, v)| v.contains(&id) || v.contains(unknown))
        })
        .count();
    assert_eq!(raw_paths, 0, "raw paths must never be label values");
    let latency = "computer_use_http_request_duration_seconds_count";
    let labels = [("method", "POST"), ("route", "/api/sessions")];
    assert_eq!(page.get(latency, &labels), 1.0);

    let calls = "computer_use_model_call_duration_seconds_count";
    assert_eq!(
        page.get(calls, &[]),
        2.0,
        "two model calls, one with a retry"
    );
    let ok_calls = page.get("computer_use_model_calls_total", &[("outcome", "ok")]);
    assert_eq!(ok_calls, 2.0);
    assert_eq!(page.get("computer_use_model_retries_total", &[]), 1.0);
    let attempts = "computer_use_model_attempts_total";
    assert_eq!(page.get(attempts, &[("outcome", "overloaded")]), 1.0);
    assert_eq!(page.get(attempts, &[("outcome", "ok")]), 2.0);
    let tokens = "computer_use_model_tokens_total";
    for (kind, count) in [
        ("input", 300.0),
        ("output", 30.0),
        ("cache_creation", 50.0),
        ("cache_read", 50.0),
    ] {
        assert_eq!(page.get(tokens, &[("type", kind)]), count, "{kind} tokens");
    }

    let tools = "computer_use_tool_executions_total";
    let bash_ok = page.get(tools, &[("tool", "bash"), ("outcome", "ok")]);
    assert_eq!(bash_ok, 1.0);
    assert_eq!(
        page.value(tools, &[("tool", "bash"), ("outcome", "error")]),
        None
    );
    let tool_time = "computer_use_tool_duration_seconds_count";
    assert_eq!(page.get(tool_time, &[("tool", "bash")]), 1.0);

    let queries = "computer_use_db_query_duration_seconds_count";
    assert_eq!(page.get(queries, &[("operation", "create_session")]), 1.0);
    let inserts = page.get(queries, &[("operation", "insert_message")]);
    assert!(
        inserts >= 4.0,
        "user, assistant, tool results, assistant: {inserts}"
    );
    assert!(page.get(queries, &[("operation", "append_event")]) >= 5.0);
    assert_eq!(page.get(queries, &[("operation", "add_usage")]), 2.0);
    let db_errors = page
        .samples
        .iter()
        .filter(|s| s.name == "computer_use_db_errors_total")
        .count();
    assert_eq!(db_errors, 0, "no store operation failed");

    assert_eq!(page.get("computer_use_sessions_active", &[]), 1.0);
    assert_eq!(page.get("computer_use_desktops_running", &[]), 0.0);
    assert!(page.get("computer_use_process_resident_memory_bytes", &[]) > 0.0);
    assert!(page.get("computer_use_process_threads", &[]) >= 4.0);
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[test]
fn connection_gauges_rise_while_a_websocket_and_an_sse_client_are_connected_and_fall_after() {
    let server = spawn_server(&[("SSE_HEARTBEAT", "0.2")]);
    let id = server.create_session();
    let before = scrape(&server);
    assert_eq!(connections(&before, "websocket"), 0.0);
    assert_eq!(connections(&before, "sse"), 0.0);

    let mut ws = server.ws(&format!("/ws/{id}"));
    let sse = server.sse(&format!("/api/sessions/{id}/stream"), None);
    assert_eq!(sse.status, 200);
    let open = scrape(&server);
    assert_eq!(connections(&open, "websocket"), 1.0);
    assert_eq!(connections(&open, "sse"), 1.0);
    assert_eq!(connections(&open, "vnc"), 0.0);
    let health = server.get("/health").json();
    assert_eq!(
        health["streams"],
        json!({"websocket": 1, "sse": 1, "vnc": 0})
    );

    ws.close();
    drop(ws);
    drop(sse);
    scrape_until(&server, "the gauges to fall back to 0", |page| {
        connections(page, "websocket") == 0.0 && connections(page, "sse") == 0.0
    });
    let health = server.get("/health").json();
    assert_eq!(
        health["streams"],
        json!({"websocket": 0, "sse": 0, "vnc": 0})
    );
}

#[test]
fn metrics_needs_the_token_like_the_api() {
    let server = spawn_server(&[("API_TOKEN", "s3cret")]);
    let refused = server.get("/metrics");
    assert_eq!(refused.status, 401);
    assert_eq!(refused.json()["error"], "unauthorized");
    let bearer = [("Authorization", "Bearer s3cret")];
    let allowed = server.request("GET", "/metrics", &bearer, None);
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    check_semantics(&parse(&allowed.body));
    assert!(!allowed.body.contains("s3cret"));
    // The refused scrape was counted, by pattern and status.
    assert!(allowed.body.contains(
        "computer_use_http_requests_total{method=\"GET\",route=\"/metrics\",status=\"401\"} 1\n"
    ));
}

#[test]
fn health_reports_desktops_workers_and_streams_without_secrets() {
    let server = spawn_server(&[("API_TOKEN", "s3cret-token")]);
    let resp = server.get("/health");
    assert_eq!(resp.status, 200, "{}", resp.body);
    let body: Value = resp.json();
    assert_eq!(body["desktops"], json!({"mode": "none", "running": 0}));
    assert_eq!(body["workers"], json!({"active": 0, "running_turns": 0}));
    assert_eq!(body["streams"], json!({"websocket": 0, "sse": 0, "vnc": 0}));
    assert_eq!(body["database"]["ok"], true);
    for secret in ["s3cret-token", "sk-ant-test", "sqlite://", "test.db"] {
        assert!(!resp.body.contains(secret), "{secret} in {}", resp.body);
    }
}
