//! `/openapi.json` and `/docs` through a real server: the document lists exactly the router's
//! routes, passes a real OpenAPI validator (PyPI's openapi-spec-validator), and live responses,
//! events and WebSocket frames validate against its schemas (openapi-schema-validator, which
//! that package installs).

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use computer_use_server::http::{openapi_path, route_list};
use serde_json::{Value, json};
use support::fake_anthropic::{FakeAnthropic, Reply};
use support::{TestServer, WAIT, raw_request, spawn_server};

/// Checks instances against named schemas of the document: argv = document, cases file of
/// `[[schema name, instance], …]`; prints every failure and exits 1 if any.
const SCHEMA_CHECK: &str = r#"
import json, sys
from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4
doc = json.load(open(sys.argv[1]))
registry = Registry().with_resource("urn:doc", Resource.from_contents(doc, default_specification=DRAFT4))
failed = 0
for name, instance in json.load(open(sys.argv[2])):
    validator = OAS30Validator({"$ref": "urn:doc#/components/schemas/" + name}, registry=registry)
    for error in validator.iter_errors(instance):
        failed += 1
        print(f"{name}: {error.message} at {list(error.absolute_path)}\n  instance: {json.dumps(instance)[:400]}")
sys.exit(1 if failed else 0)
"#;

fn temp_file(name: &str, contents: &[u8]) -> PathBuf {
    let path = std::env::temp_dir().join(format!("{}-{name}", uuid::Uuid::new_v4()));
    std::fs::write(&path, contents).expect("write temp file");
    path
}

/// Runs `python3 args…`; panics with its output unless it succeeds.
fn python(args: &[&str], what: &str) -> String {
    let output = Command::new("python3")
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("{what}: cannot run python3: {err}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{what} failed:\n{text}");
    text
}

fn fetch_document(server: &TestServer) -> Value {
    let resp = server.get("/openapi.json");
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.header("Content-Type"), Some("application/json"));
    resp.json()
}

/// Validates `(schema name, instance)` pairs against the document.
fn check_shapes(document: &Path, cases: &[(&str, Value)]) {
    let cases = serde_json::to_vec(&cases).unwrap();
    let cases_file = temp_file("cases.json", &cases);
    let script = temp_file("check.py", SCHEMA_CHECK.as_bytes());
    let args = [
        script.to_str().unwrap(),
        document.to_str().unwrap(),
        cases_file.to_str().unwrap(),
    ];
    python(&args, "schema check of live responses");
    let _ = std::fs::remove_file(cases_file);
    let _ = std::fs::remove_file(script);
}

#[test]
fn the_served_document_lists_exactly_the_routes_and_their_public_flags() {
    let server = spawn_server(&[("API_TOKEN", "s3cret")]);
    let document = fetch_document(&server);
    let mut documented = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let public = operation["security"] == json!([]);
            documented.insert((method.to_uppercase(), path.clone(), public));
        }
    }
    let routed: BTreeSet<_> = route_list()
        .iter()
        .map(|r| (r.method.to_string(), openapi_path(r.pattern), r.public))
        .collect();
    assert_eq!(
        documented, routed,
        "document (left) and router (right) differ"
    );
    assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn the_served_document_passes_openapi_spec_validator() {
    let server = spawn_server(&[]);
    let resp = server.get("/openapi.json");
    assert_eq!(resp.status, 200);
    let file = temp_file("openapi.json", resp.body.as_bytes());
    let output = python(
        &["-m", "openapi_spec_validator", file.to_str().unwrap()],
        "openapi-spec-validator",
    );
    assert!(output.contains("OK"), "{output}");
    let _ = std::fs::remove_file(file);
}

#[test]
fn the_document_and_docs_are_public_and_revalidated() {
    let server = spawn_server(&[("API_TOKEN", "s3cret")]);
    let first = server.get("/openapi.json");
    assert_eq!(first.status, 200);
    let etag = first.header("ETag").expect("ETag").to_string();
    let again = server.request("GET", "/openapi.json", &[("If-None-Match", &etag)], None);
    assert_eq!(again.status, 304);
    assert_eq!(server.get("/api/sessions").status, 401);

    let request = b"GET /docs HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let redirect = raw_request(server.addr(), request);
    assert!(redirect.starts_with("HTTP/1.1 301"), "{redirect}");
    assert!(redirect.contains("Location: /docs/\r\n"), "{redirect}");
    let page = server.get("/docs/");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("Content-Type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page.body.contains("swagger-ui"), "{}", page.body);
    assert!(
        !page.body.contains("https://"),
        "the page must work offline"
    );
    let init = server.get("/docs/swagger-initializer.js");
    assert!(init.body.contains("/openapi.json"), "{}", init.body);
    assert_eq!(init.header("Cache-Control"), Some("no-cache"));
    let bundle = server.get("/docs/swagger-ui-bundle.js");
    assert_eq!(bundle.status, 200);
    assert!(
        bundle
            .header("Content-Type")
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(bundle.header("Cache-Control").unwrap().contains("max-age"));
    assert_eq!(server.get("/docs/nope.js").json()["error"], "not_found");
}

/// One turn through the fake Messages API over WebSocket: every frame, the stored events,
/// the session, the messages and the errors must match the document's schemas.
#[test]
fn live_responses_events_and_frames_match_the_schemas() {
    let fake = FakeAnthropic::start();
    fake.push(
        Reply::tool_use("toolu_1", "bash", json!({"command": "echo hi"}))
            .with_leading_text("Let me run it."),
    );
    fake.push(Reply::text("It printed hi."));
    let server = spawn_server(&[("ANTHROPIC_BASE_URL", &fake.url())]);
    let document = fetch_document(&server);
    let created = server.post_json("/api/sessions", &json!({"title": "shapes"}));
    assert_eq!(created.status, 201);
    let session = created.json();
    for key in document["components"]["schemas"]["Session"]["required"]
        .as_array()
        .unwrap()
    {
        let key = key.as_str().unwrap();
        assert!(session.get(key).is_some(), "{key} missing from {session}");
    }
    let id = session["id"].as_str().unwrap();
    let mut cases = vec![("Session", session.clone())];
    cases.extend(turn_frames(&server, id));
    cases.extend(rest_shapes(&server, id));
    let document_file = temp_file("openapi.json", document.to_string().as_bytes());
    check_shapes(&document_file, &cases);
    let _ = std::fs::remove_file(document_file);
}

/// Posts a message and a bad command over WebSocket; every frame until the turn completes.
fn turn_frames(server: &TestServer, id: &str) -> Vec<(&'static str, Value)> {
    let mut ws = server.ws(&format!("/ws/{id}"));
    ws.send_json(&json!({"type": "bogus"}));
    ws.send_json(&json!({"type": "message", "content": "run echo hi"}));
    let mut frames = Vec::new();
    let mut kinds = BTreeSet::new();
    while let Some(frame) = ws.next_json(WAIT) {
        let done = frame["type"] == "status" && frame["status"] == "completed";
        kinds.insert(frame["type"].as_str().unwrap_or("").to_string());
        frames.push(("WsServerFrame", frame.clone()));
        if frame.get("seq").is_some() || frame["type"] == "text_delta" {
            frames.push(("Event", frame));
        }
        if done {
            break;
        }
    }
    for kind in [
        "ack",
        "error",
        "user_message",
        "text_delta",
        "tool_use",
        "tool_result",
        "usage",
    ] {
        assert!(kinds.contains(kind), "no {kind} frame in {kinds:?}");
    }
    ws.send_json(&json!({"type": "cancel"}));
    frames.push(("WsCancelAck", ws.next_json(WAIT).expect("cancel ack")));
    frames
}

/// The REST shapes after the turn, and a few errors.
fn rest_shapes(server: &TestServer, id: &str) -> Vec<(&'static str, Value)> {
    let mut cases = Vec::new();
    for event in server
        .get(&format!("/api/sessions/{id}/events"))
        .json()
        .as_array()
        .unwrap()
    {
        cases.push(("Event", event.clone()));
    }
    for message in server
        .get(&format!("/api/sessions/{id}/messages"))
        .json()
        .as_array()
        .unwrap()
    {
        cases.push(("Message", message.clone()));
    }
    let queued = server.post_json(
        &format!("/api/sessions/{id}/messages"),
        &json!({"content": "again"}),
    );
    assert_eq!(queued.status, 202);
    cases.push(("MessageQueued", queued.json()));
    cases.push(("Session", server.get(&format!("/api/sessions/{id}")).json()));
    cases.push(("Health", server.get("/health").json()));
    cases.push(("VncInfo", server.get("/api/vnc/info").json()));
    let cancel = server.post_json(&format!("/api/sessions/{id}/cancel"), &json!({}));
    cases.push(("CancelResult", cancel.json()));
    let invalid = server.post_json("/api/sessions", &json!({"max_tokens": 0}));
    assert_eq!(invalid.status, 422);
    cases.push(("Error", invalid.json()));
    let missing = server.get("/api/sessions/00000000-0000-4000-8000-000000000000");
    assert_eq!(missing.status, 404);
    cases.push(("Error", missing.json()));
    cases.push((
        "SessionDeleted",
        server.delete(&format!("/api/sessions/{id}")).json(),
    ));
    cases
}
