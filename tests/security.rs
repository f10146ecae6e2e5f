//! Security properties through real sockets and the real binary: every protected route refuses
//! a missing or wrong token (enumerated from the route table, so a new route is covered the day
//! it is added), the public ones are exactly the harmless ones, the server will not listen
//! publicly without a token, and no secret ever reaches the log, a response or `/health`.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use computer_use_server::config::OPTIONS;
use computer_use_server::http::{RouteInfo, openapi_document, openapi_path, route_list};
use serde_json::{Value, json};
use support::fake_anthropic::{FakeAnthropic, Reply};
use support::{Resp, SseClient, SseItem, TestServer, WAIT, WsClient, spawn_server};

const TOKEN_A: &str = "tokA-Pq7Zx9Kf3Rt";
const TOKEN_B: &str = "tokB-Lm4Vw2Hs8Yn";
const TOKENS: &str = "tokA-Pq7Zx9Kf3Rt, tokB-Lm4Vw2Hs8Yn";

/// What may be reached without a token: health, the API's description and page, the web page
/// and its assets, the noVNC client's static files. Anything else public is a mistake.
const PUBLIC: &[&str] = &[
    "/health",
    "/openapi.json",
    "/docs/{*}",
    "/",
    "/ui/{*}",
    "/novnc/{*}",
];

/// How a route is spoken to, read from the OpenAPI document (itself checked against the
/// route table by tests/openapi.rs): a 101 response is a WebSocket, an event-stream body SSE.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Rest,
    Sse,
    WebSocket,
}

fn kind_of(route: &RouteInfo) -> Kind {
    let path = openapi_path(route.pattern);
    let method = route.method.to_ascii_lowercase();
    let responses = &openapi_document()["paths"][&path][&method]["responses"];
    assert!(
        responses.is_object(),
        "{} {} is not in the OpenAPI document",
        route.method,
        route.pattern
    );
    if responses.get("101").is_some() {
        Kind::WebSocket
    } else if responses["200"]["content"]
        .get("text/event-stream")
        .is_some()
    {
        Kind::Sse
    } else {
        Kind::Rest
    }
}

/// The route's pattern with a real session id for `{id}` and a file name for `{*}`.
fn concrete(route: &RouteInfo, id: &str) -> String {
    route.pattern.replace("{id}", id).replace("{*}", "x.js")
}

fn protected() -> Vec<RouteInfo> {
    route_list().into_iter().filter(|r| !r.public).collect()
}

fn with_query(path: &str, query: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}{query}")
}

/// A plain request with the route's method (a valid JSON body for POST and PUT).
///
/// PUT is sent with a sized body: ureq sends a bodiless PUT/PATCH as an empty *chunked* body,
/// and under load the next keep-alive request on that connection is then intermittently
/// answered tiny_http's bare 400 (a server-side problem of its own, not about auth).
fn rest(server: &TestServer, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut all = headers.to_vec();
    let body = matches!(method, "POST" | "PUT" | "PATCH").then(|| {
        all.push(("Content-Type", "application/json"));
        let route = path.split('?').next().unwrap_or(path);
        if route.ends_with("/messages") {
            br#"{"content":"hi"}"#.as_slice()
        } else {
            b"{}".as_slice()
        }
    });
    server.request(method, path, &all, body)
}

/// The status the route answers with these credentials, spoken to as its kind requires.
fn status_of(server: &TestServer, route: &RouteInfo, path: &str, headers: &[(&str, &str)]) -> u16 {
    match kind_of(route) {
        Kind::Rest => rest(server, route.method, path, headers).status,
        Kind::Sse => SseClient::connect(server.addr(), path, None, headers).status,
        Kind::WebSocket => match WsClient::connect(server.addr(), path, headers) {
            Ok(mut ws) => {
                ws.close();
                101
            }
            Err(status) => status,
        },
    }
}

fn assert_unauthorized(resp: &Resp, what: &str) {
    assert_eq!(resp.status, 401, "{what}: {}", resp.body);
    assert_eq!(resp.header("WWW-Authenticate"), Some("Bearer"), "{what}");
    let body = resp.json();
    assert_eq!(body["error"], "unauthorized", "{what}: {body}");
    assert!(body["detail"].is_string(), "{what}: {body}");
}

fn token_server() -> (TestServer, String) {
    let server = spawn_server(&[
        ("API_TOKEN", TOKENS),
        ("RATE_LIMIT_SESSIONS", "0"),
        ("RATE_LIMIT_MESSAGES", "0"),
    ]);
    let auth = format!("Bearer {TOKEN_A}");
    let resp = server.request(
        "POST",
        "/api/sessions",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        Some(b"{}"),
    );
    assert_eq!(resp.status, 201, "{}", resp.body);
    let id = resp.json()["id"].as_str().unwrap().to_string();
    (server, id)
}

#[test]
fn only_the_harmless_routes_are_public() {
    let public: Vec<&str> = route_list()
        .iter()
        .filter(|r| r.public)
        .map(|r| r.pattern)
        .collect();
    for pattern in &public {
        assert!(
            PUBLIC.contains(pattern),
            "{pattern} is public: add it to PUBLIC only if it can never reveal or do anything"
        );
    }
    assert!(public.contains(&"/health"));
    assert!(protected().iter().all(|r| r.pattern != "/health"));
}

#[test]
fn every_protected_route_refuses_a_request_without_a_token() {
    let (server, id) = token_server();
    let routes = protected();
    assert!(routes.len() >= 10, "{routes:?}");
    for route in routes {
        let path = concrete(&route, &id);
        let what = format!("{} {path} ({:?})", route.method, kind_of(&route));
        // The plain request shows the body; the stream handshake shows what a client sees.
        assert_unauthorized(&rest(&server, route.method, &path, &[]), &what);
        assert_eq!(status_of(&server, &route, &path, &[]), 401, "{what}");
    }
    // Before routing too: an unknown path, a wrong method or a malformed id says nothing more.
    for (method, path) in [
        ("GET", "/nope"),
        ("PUT", "/api/sessions"),
        ("GET", "/api/sessions/not-a-uuid"),
        ("POST", "/health"),
    ] {
        assert_unauthorized(&rest(&server, method, path, &[]), path);
    }
}

#[test]
fn a_wrong_token_is_refused_on_every_protected_route() {
    let (server, id) = token_server();
    let wrong_headers = [
        "Bearer wrong-token".to_string(),
        format!("Bearer {TOKENS}"),
        format!("Bearer {}", &TOKEN_A[..TOKEN_A.len() - 1]),
        format!("Bearer {TOKEN_A}x"),
        format!("Bearer {}", TOKEN_A.to_uppercase()),
        format!("Basic {TOKEN_A}"),
        TOKEN_A.to_string(),
        "Bearer ".to_string(),
    ];
    let wrong_queries = [
        "token=".to_string(),
        "token=wrong-token".to_string(),
        format!("token={}", TOKEN_B.to_lowercase()),
        format!("token={TOKEN_A}%20"),
        format!("token=tokA-Pq7Zx9Kf3Rt,{TOKEN_B}"),
    ];
    for route in protected() {
        let path = concrete(&route, &id);
        for value in &wrong_headers {
            let headers = [("Authorization", value.as_str())];
            let what = format!("{} {path} with Authorization: {value}", route.method);
            assert_unauthorized(&rest(&server, route.method, &path, &headers), &what);
            assert_eq!(status_of(&server, &route, &path, &headers), 401, "{what}");
        }
        for query in &wrong_queries {
            let path = with_query(&path, query);
            let what = format!("{} {path}", route.method);
            assert_unauthorized(&rest(&server, route.method, &path, &[]), &what);
            assert_eq!(status_of(&server, &route, &path, &[]), 401, "{what}");
        }
    }
}

#[test]
fn the_right_token_by_header_or_query_opens_every_protected_route() {
    let (server, _) = token_server();
    let bearer_b = format!("Bearer {TOKEN_B}");
    let lower_scheme = format!("bearer {TOKEN_A}");
    let (query_a, query_b) = (format!("token={TOKEN_A}"), format!("token={TOKEN_B}"));
    let cases = [
        (None, vec![("Authorization", bearer_b.as_str())]),
        (None, vec![("Authorization", lower_scheme.as_str())]),
        (Some(&query_a), vec![]),
        (Some(&query_b), vec![]),
    ];
    for route in protected() {
        for (query, headers) in &cases {
            // A fresh session each time: one of the routes deletes it.
            let path = concrete(&route, &fresh_session(&server));
            let path = query.map_or(path.clone(), |q| with_query(&path, q));
            let status = status_of(&server, &route, &path, headers);
            let what = format!("{} {path} {headers:?}", route.method);
            assert!(status != 401 && status != 403, "{what}: {status}");
        }
    }
}

fn fresh_session(server: &TestServer) -> String {
    let auth = format!("Bearer {TOKEN_B}");
    let resp = server.request(
        "POST",
        "/api/sessions",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        Some(b"{}"),
    );
    assert_eq!(resp.status, 201, "{}", resp.body);
    resp.json()["id"].as_str().unwrap().to_string()
}

#[test]
fn public_routes_answer_without_a_token() {
    let (server, id) = token_server();
    for route in route_list().into_iter().filter(|r| r.public) {
        let path = concrete(&route, &id);
        let status = status_of(&server, &route, &path, &[]);
        assert_ne!(status, 401, "{} {path}", route.method);
    }
    for path in ["/health", "/", "/openapi.json", "/docs", "/docs/"] {
        let resp = server.get(path);
        assert_eq!(resp.status, 200, "{path}: {}", resp.body);
    }
    // A wrong token on a public route is not an error either (the page may hold a stale one).
    let stale = [("Authorization", "Bearer stale")];
    assert_eq!(server.request("GET", "/health", &stale, None).status, 200);
}

// ---------------------------------------------------------------------------------------------
// The binary.

fn binary() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_computer-use-server"));
    for spec in OPTIONS {
        cmd.env_remove(spec.env);
    }
    cmd.env_remove("RUST_LOG").env("DESKTOP_MODE", "none");
    cmd
}

fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cus-security-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A running binary whose whole stderr is kept.
struct Running {
    child: Child,
    addr: String,
    log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn start(cmd: &mut Command) -> Running {
        let mut child = cmd
            .env("PORT", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let kept = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
                }
                let mut log = kept.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = wait_addr(&rx, &log);
        Running {
            child,
            addr,
            log,
            reader: Some(reader),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// SIGTERM, a bounded wait, and everything the process wrote to stderr.
    fn stop(mut self) -> String {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + WAIT;
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("the server ignored SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.reader.take().map(|r| r.join());
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_addr(rx: &Receiver<String>, log: &Mutex<String>) -> String {
    rx.recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| {
            panic!(
                "the server did not report its address:\n{}",
                log.lock().unwrap()
            )
        })
}

#[test]
fn a_public_bind_without_a_token_exits_1_naming_the_fixes() {
    for tokens in [None, Some(""), Some(" , ")] {
        let mut cmd = binary();
        cmd.env("HOST", "0.0.0.0").env("PORT", "0");
        if let Some(tokens) = tokens {
            cmd.env("API_TOKEN", tokens);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(1), "API_TOKEN={tokens:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("API_TOKEN") && stderr.contains("--allow-unauthenticated"),
            "{stderr}"
        );
    }
}

#[test]
fn a_public_bind_starts_with_allow_unauthenticated_or_a_token() {
    let dir = temp_dir();
    let db = format!("sqlite://{}/x.db", dir.display());
    let mut flag = binary();
    flag.arg("--allow-unauthenticated");
    let mut env = binary();
    env.env("ALLOW_UNAUTHENTICATED", "true");
    let mut token = binary();
    token.env("API_TOKEN", TOKEN_A);
    for mut cmd in [flag, env, token] {
        cmd.env("HOST", "0.0.0.0")
            .env("RUST_LOG", "info")
            .env("DATABASE_URL", &db);
        let server = Running::start(&mut cmd);
        let port = server.addr.rsplit(':').next().unwrap().to_string();
        let health = ureq::get(&format!("http://127.0.0.1:{port}/health"))
            .call()
            .map(|resp| resp.status().as_u16());
        let log = server.stop();
        assert_eq!(health.ok(), Some(200), "{log}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// Secrets.

const API_KEY: &str = "sk-ant-api03-KeyS3cr3t-Zq81Vb";
const WRONG: &str = "wrong-Gy5Tb0Nc";

/// Every secret, and the distinctive part of each (a leak of a fragment is a leak too).
fn secrets() -> Vec<&'static str> {
    vec![
        API_KEY,
        "KeyS3cr3t-Zq81Vb",
        TOKEN_A,
        "Pq7Zx9Kf3Rt",
        TOKEN_B,
        "Lm4Vw2Hs8Yn",
        WRONG,
        "Gy5Tb0Nc",
    ]
}

/// An HTTP client that keeps every response body it sees.
struct Recorder {
    base: String,
    agent: ureq::Agent,
    bodies: Vec<(String, String)>,
}

impl Recorder {
    fn new(base: String) -> Recorder {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(WAIT))
            .build();
        Recorder {
            base,
            agent: ureq::Agent::new_with_config(config),
            bodies: Vec::new(),
        }
    }

    fn call(&mut self, method: &str, path: &str, auth: Option<&str>, body: Option<&str>) -> Resp {
        let mut builder = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(token) = auth {
            builder = builder.header("Authorization", format!("Bearer {token}"));
        }
        if body.is_some() {
            builder = builder.header("Content-Type", "application/json");
        }
        let request = builder.body(body.unwrap_or("").to_string()).unwrap();
        let resp = Resp::from(self.agent.run(request).expect("request"));
        let headers = format!("{:?}", resp.headers);
        self.bodies.push((
            format!("{method} {path}"),
            format!("{headers}\n{}", resp.body),
        ));
        resp
    }
}

/// Waits on an SSE stream for a `status` event with one of `statuses`; returns what it saw.
fn wait_status(sse: &mut SseClient, statuses: &[&str]) -> String {
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match sse.next(left) {
            Some(SseItem::Event { data, .. }) => {
                seen.push_str(&format!("{data}\n"));
                let status = data["status"].as_str().unwrap_or_default();
                if data["type"] == "status" && statuses.contains(&status) {
                    return seen;
                }
            }
            Some(SseItem::Comment(_)) => {}
            Some(SseItem::End) | None => break,
        }
    }
    panic!("no status {statuses:?} arrived; saw:\n{seen}");
}

/// Drives a token server through authentication failures, bad requests, a refused model call
/// and a retried one; returns the recorder (every body) and the SSE transcript.
fn drive(server: &Running, fake: &FakeAnthropic) -> (Recorder, String) {
    let mut http = Recorder::new(server.url(""));
    let created = http.call("POST", "/api/sessions", Some(TOKEN_A), Some("{}"));
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["id"].as_str().unwrap().to_string();
    let one = format!("/api/sessions/{id}");
    let messages = format!("{one}/messages");
    for (path, auth) in [
        ("/api/sessions".to_string(), Some(WRONG)),
        (format!("/api/sessions?token={WRONG}"), None),
        (format!("/api/sessions?token={TOKEN_B}"), None),
        (format!("{one}?token={TOKEN_A}"), Some(WRONG)),
        (format!("{one}/events?after=0&token={WRONG}"), None),
        ("/api/sessions/not-a-uuid".to_string(), Some(TOKEN_A)),
        (format!("/api/nope?token={TOKEN_A}"), None),
        (format!("/health?token={WRONG}"), Some(WRONG)),
    ] {
        http.call("GET", &path, auth, None);
    }
    let bad = http.call("POST", &messages, Some(TOKEN_B), Some("{not json"));
    assert_eq!(bad.status, 400, "{}", bad.body);
    let invalid = http.call(
        "POST",
        &format!("{messages}?token={TOKEN_A}"),
        None,
        Some(r#"{"content": 5}"#),
    );
    assert_eq!(invalid.status, 422, "{}", invalid.body);
    let ws = WsClient::connect(
        server.addr.parse().unwrap(),
        &format!("/ws/{id}?token={WRONG}"),
        &[],
    );
    assert_eq!(ws.err(), Some(401));

    let stream = format!("/api/sessions/{id}/stream?token={TOKEN_B}");
    let mut sse = SseClient::connect(server.addr.parse().unwrap(), &stream, None, &[]);
    assert_eq!(sse.status, 200);
    fake.push(Reply::error(
        401,
        "authentication_error",
        "invalid x-api-key",
    ));
    let hello = json!({"content": "hello"}).to_string();
    assert_eq!(
        http.call("POST", &messages, Some(TOKEN_A), Some(&hello))
            .status,
        202
    );
    let mut transcript = wait_status(&mut sse, &["error", "completed"]);
    fake.push(
        Reply::error(529, "overloaded_error", "Overloaded").with_header("retry-after-ms", "10"),
    );
    fake.push(Reply::text("Done."));
    let again = format!("{messages}?token={TOKEN_B}");
    assert_eq!(http.call("POST", &again, None, Some(&hello)).status, 202);
    transcript += &wait_status(&mut sse, &["completed", "error"]);
    assert!(transcript.contains("Done."), "{transcript}");
    for path in ["/health".to_string(), format!("{one}/events?after=0")] {
        http.call("GET", &path, Some(TOKEN_A), None);
    }
    let metrics = http.call("GET", "/metrics", Some(TOKEN_A), None);
    assert!(
        metrics.status == 200 || metrics.status == 404,
        "{}",
        metrics.body
    );
    (http, transcript)
}

#[test]
fn no_secret_reaches_the_log_a_response_or_health_even_at_trace_level() {
    let dir = temp_dir();
    let fake = FakeAnthropic::start();
    let mut cmd = binary();
    cmd.env("RUST_LOG", "trace")
        .env("ANTHROPIC_API_KEY", API_KEY)
        .env("ANTHROPIC_BASE_URL", fake.url())
        .env("API_TOKEN", TOKENS)
        .env("DATABASE_URL", format!("sqlite://{}/x.db", dir.display()))
        .env("MODEL_MAX_RETRIES", "2")
        .env("RATE_LIMIT_MESSAGES", "0")
        .env("RATE_LIMIT_SESSIONS", "0");
    let server = Running::start(&mut cmd);
    let (http, transcript) = drive(&server, &fake);
    let log = server.stop();

    // The secrets were really in play: the model was called with the key, three times.
    let calls = fake.requests();
    assert_eq!(calls.len(), 3, "{log}");
    assert_eq!(calls[0].header("x-api-key").as_deref(), Some(API_KEY));
    assert!(
        log.contains("GET /api/sessions 401"),
        "no request lines:\n{log}"
    );
    for secret in secrets() {
        assert!(!log.contains(secret), "the log holds {secret:?}:\n{log}");
        assert!(!transcript.contains(secret), "an event holds {secret:?}");
        for (request, body) in &http.bodies {
            assert!(
                !body.contains(secret),
                "{request} answered {secret:?}: {body}"
            );
        }
    }
    for (request, body) in &http.bodies {
        for trace in [
            "panicked",
            "RUST_BACKTRACE",
            "stack backtrace",
            "src/",
            ".rs:",
        ] {
            assert!(
                !body.contains(trace),
                "{request} answered {trace:?}: {body}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sends one bad request with the token; the answer must be a 4xx JSON error, no internals.
fn assert_clean_refusal(server: &TestServer, method: &str, path: &str, body: Option<&[u8]>) {
    let auth = format!("Bearer {TOKEN_A}");
    let mut headers = vec![("Authorization", auth.as_str())];
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    let resp = server.request(method, path, &headers, body);
    let what = format!("{method} {path}");
    assert!(
        (400..500).contains(&resp.status),
        "{what}: {} {}",
        resp.status,
        resp.body
    );
    let value: Value =
        serde_json::from_str(&resp.body).unwrap_or_else(|err| panic!("{what}: {err}: {resp:?}"));
    assert!(
        value["error"].is_string() && value["detail"].is_string(),
        "{what}: {value}"
    );
    for trace in ["panicked", "backtrace", "src/", ".rs:", "Error {", "Some("] {
        assert!(
            !resp.body.contains(trace),
            "{what} answered {trace:?}: {}",
            resp.body
        );
    }
}

#[test]
fn error_bodies_are_json_without_internals() {
    let (server, id) = token_server();
    for (method, path) in [
        ("GET", "/nope"),
        ("GET", "/api/sessions/zzz"),
        ("GET", "/api/sessions?limit=-1"),
        ("GET", "/api/sessions?skip=1e99"),
    ] {
        assert_clean_refusal(&server, method, path, None);
    }
    // Sized, not an empty chunked body (see `rest`).
    assert_clean_refusal(&server, "PATCH", "/api/sessions", Some(b"{}"));
    let bodies: [&[u8]; 4] = [
        b"{\"max_tokens\":",
        b"[1,2,3]",
        b"{\"title\":\"\\ud800\"}",
        b"{\"nope\":1}",
    ];
    for body in bodies {
        assert_clean_refusal(&server, "POST", "/api/sessions", Some(body));
    }
    let messages = format!("/api/sessions/{id}/messages");
    assert_clean_refusal(&server, "POST", &messages, Some(b"\xff\xfe"));
    assert_clean_refusal(&server, "POST", &messages, Some(b"{\"content\": [1]}"));
    let events = format!("/api/sessions/{id}/events?after=x");
    assert_clean_refusal(&server, "GET", &events, None);
}
