//! `GET /openapi.json`: the OpenAPI 3.0.3 description of every route, built with serde_json
//! once per process and served from memory.
//!
//! - `schemas.rs`: request, response, event and WebSocket frame shapes.
//! - `paths.rs`: one operation per route, its parameters and statuses, and the error responses.
//!
//! Route patterns become OpenAPI paths by [`openapi_path`]: `{id}` is `{session_id}` (a UUID)
//! and a `{*}` tail is `{path}` (the rest of the URL, which may contain `/`). Tests here and in
//! `tests/openapi.rs` check that the document and the route table list the same (method, path)
//! pairs and agree on which routes are public (`security: []`).
//!
//! The document is public: it describes the API and holds no secrets (no token, no
//! configuration value but the version).

mod paths;
mod schemas;

use std::sync::{Arc, OnceLock};

use serde_json::{Value, json};
use tiny_http::Request;

use super::error::ApiResult;
use super::reply::Reply;
use super::router::Params;
use super::static_files::StaticFile;
use crate::app::App;

/// `GET /openapi.json` (revalidated by `ETag`: the document only changes with the binary).
pub(crate) fn get(_: &App, request: &mut Request, _: &Params) -> ApiResult<Reply> {
    let (bytes, etag) = served();
    let file = StaticFile {
        key: "openapi.json",
        content_type: "application/json",
        etag: etag.clone(),
        last_modified: None,
        cache_control: "no-cache",
    };
    file.reply(request, || Ok(bytes.clone()))
}

/// The document.
pub fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(build)
}

/// The serialised document and its `ETag`.
fn served() -> &'static (Arc<[u8]>, String) {
    static SERVED: OnceLock<(Arc<[u8]>, String)> = OnceLock::new();
    SERVED.get_or_init(|| {
        let bytes: Arc<[u8]> = serde_json::to_vec(document()).unwrap_or_default().into();
        let etag = format!("\"{:016x}\"", fnv1a(&bytes));
        (bytes, etag)
    })
}

/// FNV-1a: a content hash for the `ETag` (not security-relevant).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The OpenAPI path of a route pattern: `{id}` → `{session_id}`, `{*}` → `{path}`.
pub fn openapi_path(pattern: &str) -> String {
    pattern
        .replace("{id}", "{session_id}")
        .replace("{*}", "{path}")
}

fn build() -> Value {
    json!({
        "openapi": "3.0.3",
        "info": info(),
        "tags": tags(),
        "security": [{"bearerAuth": []}, {"tokenQuery": []}],
        "paths": paths::paths(),
        "components": {
            "securitySchemes": security_schemes(),
            "schemas": schemas::schemas(),
            "responses": paths::responses(),
        },
    })
}

const DESCRIPTION: &str = "A self-hosted backend for Claude computer-use agents: create a session, \
send a message, and the server runs the agent loop (model calls, computer/bash/editor tools), \
streaming every step over WebSocket and Server-Sent Events and storing the history.\n\n\
**Authentication.** With API_TOKEN set, every operation but the public ones (`/health`, \
`/openapi.json`, `/docs/`, the web UI at `/` and `/ui/…`, `/novnc/…`; marked with no lock) needs `Authorization: Bearer <token>`, or `?token=<token>` \
for browser EventSource/WebSocket clients. Without API_TOKEN the server listens on loopback \
only and answers only requests addressed to localhost (403 `forbidden_host` otherwise).\n\n\
**Errors** are always JSON `{\"error\": \"<code>\", \"detail\": \"<what and why>\"}` (schema \
`Error`). Any path answers 405 (with `Allow`) to a method it does not serve, and `OPTIONS` \
(204 with `Allow`, plus CORS preflight headers for origins in CORS_ORIGINS).\n\n\
**Events** (schema `Event`) are the same JSON objects in the stored log, on SSE and on \
WebSocket; stored ones carry `seq` (1, 2, 3… per session), which is how clients resume.\n\n\
**Paths.** `{session_id}` is a hyphenated UUID (the route table's `{id}`); `{path}` is the \
rest of the URL (the route table's `{*}` tail) and may contain `/`.";

fn info() -> Value {
    json!({
        "title": "computer-use-server",
        "version": env!("CARGO_PKG_VERSION"),
        "description": DESCRIPTION,
        "license": {"name": "MIT"},
    })
}

fn tags() -> Value {
    json!([
        {"name": "sessions", "description": "Create, inspect, cancel and delete sessions."},
        {"name": "messages", "description": "The conversation, and sending a message."},
        {"name": "events", "description": "The event log, live over SSE and WebSocket."},
        {"name": "desktop", "description": "The virtual X desktop: where to watch it, and the VNC proxy."},
        {"name": "health", "description": "Liveness and database check."},
        {"name": "docs", "description": "This document and its interactive page."},
        {"name": "static", "description": "Static files served by the server."},
    ])
}

fn security_schemes() -> Value {
    json!({
        "bearerAuth": {
            "type": "http",
            "scheme": "bearer",
            "description": "One of the comma-separated tokens of API_TOKEN. Not needed when API_TOKEN is unset.",
        },
        "tokenQuery": {
            "type": "apiKey",
            "in": "query",
            "name": "token",
            "description": "The same token as a query parameter, for EventSource and WebSocket clients that cannot set headers.",
        },
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::super::router::route_list;
    use super::*;

    /// (METHOD, openapi path, public) of every operation in the document.
    fn documented() -> BTreeSet<(String, String, bool)> {
        let mut out = BTreeSet::new();
        for (path, item) in document()["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let public = operation["security"] == json!([]);
                out.insert((method.to_uppercase(), path.clone(), public));
            }
        }
        out
    }

    #[test]
    fn every_route_is_documented_and_every_operation_is_a_route() {
        let routed: BTreeSet<_> = route_list()
            .iter()
            .map(|r| (r.method.to_string(), openapi_path(r.pattern), r.public))
            .collect();
        let documented = documented();
        let missing: Vec<_> = routed.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&routed).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "routes not documented (or public flag differs): {missing:?}\n\
             documented but not routed: {extra:?}"
        );
    }

    #[test]
    fn every_reference_resolves() {
        let text = document().to_string();
        for part in text.split("\"#/components/").skip(1) {
            let target = part.split('"').next().unwrap();
            let (section, name) = target.split_once('/').unwrap();
            assert!(
                !document()["components"][section][name].is_null(),
                "dangling reference #/components/{target}"
            );
        }
    }

    #[test]
    fn the_version_is_the_crate_version_and_paths_map_consistently() {
        assert_eq!(document()["info"]["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(
            openapi_path("/api/sessions/{id}/stream"),
            "/api/sessions/{session_id}/stream"
        );
        assert_eq!(openapi_path("/novnc/{*}"), "/novnc/{path}");
    }
}
