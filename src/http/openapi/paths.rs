//! `paths` and `components.responses`: one operation per route of `router.rs`, with the
//! parameters, bodies and statuses its handler really has.
//!
//! Every operation gets 403 (`forbidden_host`: the DNS-rebinding guard runs before routing),
//! 431 (the head size check runs before it) and 500; every operation that is not public (`security: []`) also gets 401.

use serde_json::{Map, Value, json};

use super::schemas::schema_ref;

/// The `paths` object.
pub(super) fn paths() -> Value {
    let mut paths = Map::new();
    for (path, method, operation) in operations() {
        let entry = paths.entry(path).or_insert_with(|| json!({}));
        entry[method] = finish(operation);
    }
    Value::Object(paths)
}

/// `components.responses`: the error statuses, each with the `Error` body.
pub(super) fn responses() -> Value {
    let mut all = Map::new();
    for (name, _, description, example) in ERRORS {
        let mut response = json!({
            "description": description,
            "content": {"application/json": {
                "schema": schema_ref("Error"),
                "example": {"error": example.0, "detail": example.1},
            }},
        });
        if *name == "Unauthorized" {
            response["headers"] =
                json!({"WWW-Authenticate": {"schema": {"type": "string", "example": "Bearer"}}});
        }
        if *name == "TooManyRequests" {
            response["headers"] = json!({"Retry-After": {"description": "Whole seconds until the next request is allowed (1–60).",
                                                       "schema": {"type": "integer", "minimum": 1, "maximum": 60, "example": 20}}});
        }
        if *name == "MethodNotAllowed" {
            response["headers"] = json!({"Allow": {"description": "The methods the path accepts.",
                                                   "schema": {"type": "string", "example": "GET, POST, OPTIONS"}}});
        }
        all.insert(name.to_string(), response);
    }
    Value::Object(all)
}

/// (name, status, description, example code and detail).
type ErrorRow = (
    &'static str,
    u16,
    &'static str,
    (&'static str, &'static str),
);

const ERRORS: &[ErrorRow] = &[
    (
        "BadRequest",
        400,
        "Malformed request: the body is not valid JSON, or a WebSocket route got no valid upgrade.",
        (
            "bad_request",
            "malformed JSON body: expected value at line 1 column 1",
        ),
    ),
    (
        "Unauthorized",
        401,
        "API_TOKEN is set and the request carries no valid `Authorization: Bearer <token>` (or `?token=`).",
        (
            "unauthorized",
            "send Authorization: Bearer <token> (or ?token= for EventSource/WebSocket)",
        ),
    ),
    (
        "Forbidden",
        403,
        "Without API_TOKEN on a loopback address, the server answers only requests whose `Host` is localhost or a loopback IP (DNS-rebinding guard).",
        (
            "forbidden_host",
            "Host \"evil.example\" is not this machine; …",
        ),
    ),
    (
        "NotFound",
        404,
        "Unknown route, unknown session, or an id that is not a UUID.",
        (
            "not_found",
            "session 00000000-0000-4000-8000-000000000000 not found",
        ),
    ),
    (
        "MethodNotAllowed",
        405,
        "The path exists but not with this method; `Allow` lists the methods it accepts.",
        (
            "method_not_allowed",
            "PUT is not allowed here; allowed: GET, POST, OPTIONS",
        ),
    ),
    (
        "Conflict",
        409,
        "A concurrent change collided in the database (e.g. the session was deleted meanwhile).",
        ("conflict", "UNIQUE constraint failed"),
    ),
    (
        "PayloadTooLarge",
        413,
        "The body exceeds MAX_BODY_BYTES (1 MiB by default).",
        (
            "payload_too_large",
            "request body exceeds 1048576 bytes (MAX_BODY_BYTES)",
        ),
    ),
    (
        "UnsupportedMediaType",
        415,
        "The body is not sent as `Content-Type: application/json` (a missing Content-Type is accepted).",
        (
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json (got \"text/plain\"; …)",
        ),
    ),
    (
        "InvalidField",
        422,
        "A body field, query parameter or header failed validation; `detail` starts with its name.",
        (
            "invalid_field",
            "limit: must be an integer from 0 to 1000, got \"5000\"",
        ),
    ),
    (
        "TooManyRequests",
        429,
        "The token (or, without API_TOKEN, the client address) exceeded its rate limit: RATE_LIMIT_SESSIONS session creations or RATE_LIMIT_MESSAGES message posts (REST and WebSocket together) per minute. `Retry-After` says when to retry.",
        (
            "rate_limited",
            "more than 60 session creations per minute (RATE_LIMIT_SESSIONS); retry after the delay given",
        ),
    ),
    (
        "HeaderFieldsTooLarge",
        431,
        "The request line and headers exceed MAX_HEADER_BYTES (16 KiB by default). A head still arriving past the limit may instead get this answer on a closed connection.",
        (
            "headers_too_large",
            "request line and headers exceed 16384 bytes (MAX_HEADER_BYTES)",
        ),
    ),
    (
        "InternalError",
        500,
        "A bug; the cause is in the server log, never in the response.",
        ("internal_error", "the server failed; see its log"),
    ),
    (
        "Unavailable",
        503,
        "The database is unavailable (`store_unavailable`), the server is shutting down (`shutting_down`), a desktop cannot be had (`desktop_limit_reached`, `desktop_unavailable`, `vnc_unavailable`, `unavailable`), MAX_ACTIVE_SESSIONS sessions already have a live worker (`too_many_active_sessions`), or MAX_STREAMS / MAX_STREAMS_PER_SESSION event streams are open (`too_many_streams`).",
        ("store_unavailable", "the database is unavailable"),
    ),
];

/// The `$ref` of an error response by status.
fn error(status: u16) -> Value {
    let name = ERRORS
        .iter()
        .find(|row| row.1 == status)
        .map_or("InternalError", |row| row.0);
    json!({"$ref": format!("#/components/responses/{name}")})
}

/// Adds the statuses every operation can answer.
fn finish(mut operation: Value) -> Value {
    let public = operation["security"].as_array().is_some_and(Vec::is_empty);
    let responses = &mut operation["responses"];
    if !public {
        responses["401"] = error(401);
    }
    responses["403"] = error(403);
    responses["431"] = error(431);
    responses["500"] = error(500);
    operation
}

/// An operation with its success responses; `errors` are statuses of `ERRORS`.
fn op(id: &str, tag: &str, summary: &str, description: &str, ok: Value, errors: &[u16]) -> Value {
    let mut responses = ok;
    for status in errors {
        responses[status.to_string()] = error(*status);
    }
    json!({"operationId": id, "tags": [tag], "summary": summary,
           "description": description, "responses": responses})
}

fn public(mut operation: Value) -> Value {
    operation["security"] = json!([]);
    operation
}

fn with_params(mut operation: Value, params: Vec<Value>) -> Value {
    operation["parameters"] = Value::Array(params);
    operation
}

fn with_body(mut operation: Value, schema: &str, required: bool, description: &str) -> Value {
    operation["requestBody"] = json!({
        "required": required,
        "description": description,
        "content": {"application/json": {"schema": schema_ref(schema)}},
    });
    operation
}

fn json_response(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn array_of(name: &str) -> Value {
    json!({"type": "array", "items": schema_ref(name)})
}

fn session_id() -> Value {
    json!({"name": "session_id", "in": "path", "required": true,
           "description": "Session id: a hyphenated UUID (any case; anything else is 404).",
           "schema": {"type": "string", "format": "uuid"}})
}

fn query(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
}

fn paging() -> Vec<Value> {
    vec![
        query(
            "skip",
            "Items to skip.",
            json!({"type": "integer", "format": "int64", "minimum": 0, "maximum": i64::MAX, "default": 0}),
        ),
        query(
            "limit",
            "Items to return.",
            json!({"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}),
        ),
    ]
}

fn after(description: &str) -> Value {
    query(
        "after",
        description,
        json!({"type": "integer", "format": "int64", "minimum": 0, "maximum": i64::MAX, "default": 0}),
    )
}

fn operations() -> Vec<(String, &'static str, Value)> {
    let mut all = Vec::new();
    for group in [
        session_operations(),
        stream_operations(),
        desktop_operations(),
        meta_operations(),
    ] {
        all.extend(
            group
                .into_iter()
                .map(|(path, method, op)| (path.to_string(), method, op)),
        );
    }
    all
}

type Operation = (&'static str, &'static str, Value);

fn session_operations() -> Vec<Operation> {
    let one = "/api/sessions/{session_id}";
    vec![
        (
            "/api/sessions",
            "get",
            with_params(
                op(
                    "listSessions",
                    "sessions",
                    "List sessions, newest first",
                    "",
                    json!({"200": json_response("A page of sessions.", array_of("Session"))}),
                    &[422, 503],
                ),
                paging(),
            ),
        ),
        (
            "/api/sessions",
            "post",
            with_body(
                op(
                    "createSession",
                    "sessions",
                    "Create a session",
                    "Validates the settings (422 naming the first bad field) and stores the session. Nothing starts until its first message. Rate limited per token: RATE_LIMIT_SESSIONS per minute (429 with `Retry-After`).",
                    json!({"201": json_response("The new session.", schema_ref("Session"))}),
                    &[400, 409, 413, 415, 422, 429, 503],
                ),
                "CreateSession",
                false,
                "Optional; an empty body takes every default.",
            ),
        ),
        (
            one,
            "get",
            with_params(
                op(
                    "getSession",
                    "sessions",
                    "Get a session",
                    "",
                    json!({"200": json_response("The session.", schema_ref("Session"))}),
                    &[404, 503],
                ),
                vec![session_id()],
            ),
        ),
        (
            one,
            "delete",
            with_params(
                op(
                    "deleteSession",
                    "sessions",
                    "Delete a session",
                    "Cancels the running turn, stops the worker, its shell and (per-session mode) its desktop, closes its streams (WebSocket close 4404) and deletes its history.",
                    json!({"200": json_response("Deleted.", schema_ref("SessionDeleted"))}),
                    &[404, 503],
                ),
                vec![session_id()],
            ),
        ),
        (
            "/api/sessions/{session_id}/cancel",
            "post",
            with_params(
                op(
                    "cancelTurn",
                    "sessions",
                    "Stop the running turn",
                    "Stops the in-flight model call and tool within about a second; a `status: cancelled` event follows. Queued messages stay queued. Any body is ignored.",
                    json!({"200": json_response("Whether a turn was running.", schema_ref("CancelResult"))}),
                    &[404, 503],
                ),
                vec![session_id()],
            ),
        ),
        (
            "/api/sessions/{session_id}/messages",
            "get",
            with_params(
                op(
                    "listMessages",
                    "messages",
                    "List the conversation",
                    "The messages exactly as sent to the model, oldest first, then queued messages (`queued: true`, `seq: null`).",
                    json!({"200": json_response("A page of messages.", array_of("Message"))}),
                    &[404, 422, 503],
                ),
                [vec![session_id()], paging()].concat(),
            ),
        ),
        (
            "/api/sessions/{session_id}/messages",
            "post",
            with_body(
                with_params(
                    op(
                        "postMessage",
                        "messages",
                        "Send a message",
                        "The message is committed, a `user_message` event is emitted, and the session's worker answers messages in order (FIFO). In per-session desktop mode the session's desktop starts here (503 `unavailable` when MAX_DESKTOPS are running). A session without a live worker is refused with 503 `too_many_active_sessions` (nothing stored) while MAX_ACTIVE_SESSIONS workers are live; idle workers retire after WORKER_IDLE_TIMEOUT. Rate limited per token: RATE_LIMIT_MESSAGES per minute, shared with WebSocket `message` frames (429 with `Retry-After`).",
                        json!({"202": json_response("Stored and queued.", schema_ref("MessageQueued"))}),
                        &[400, 404, 409, 413, 415, 422, 429, 503],
                    ),
                    vec![session_id()],
                ),
                "PostMessage",
                true,
                "The message text.",
            ),
        ),
        (
            "/api/sessions/{session_id}/events",
            "get",
            with_params(
                op(
                    "listEvents",
                    "events",
                    "List stored events",
                    "The stored event log after `after`, oldest first: every item has `seq` (deltas are never stored). Replay it, then follow the stream from the last `seq`.",
                    json!({"200": json_response("Stored events.", array_of("Event"))}),
                    &[404, 422, 503],
                ),
                vec![
                    session_id(),
                    after("Return events with `seq` greater than this."),
                    query(
                        "limit",
                        "Events to return (0 counts as 1).",
                        json!({"type": "integer", "minimum": 0, "maximum": 1000, "default": 1000}),
                    ),
                ],
            ),
        ),
    ]
}

fn stream_operations() -> Vec<Operation> {
    vec![
        (
            "/api/sessions/{session_id}/stream",
            "get",
            with_params(
                op(
                    "streamEvents",
                    "events",
                    "Stream events (Server-Sent Events)",
                    SSE,
                    json!({"200": {"description": "An endless `text/event-stream` (chunked). Each frame's `data:` is one `Event` as JSON.",
                           "headers": {"Cache-Control": {"schema": {"type": "string", "example": "no-cache"}}},
                           "content": {"text/event-stream": {
                               "schema": {"type": "string", "description": "SSE frames; each `data:` line holds an `Event` (see components.schemas.Event)."},
                               "example": "id: 1\ndata: {\"type\":\"user_message\",\"message_id\":\"…\",\"content\":\"hi\",\"session_id\":\"…\",\"timestamp\":\"…\",\"seq\":1}\n\ndata: {\"type\":\"text_delta\",\"index\":0,\"delta\":\"Hel\",\"session_id\":\"…\",\"timestamp\":\"…\"}\n\n: keepalive\n\n"}},
                           "x-sse-data-schema": "#/components/schemas/Event"}}),
                    &[404, 422, 503],
                ),
                vec![
                    session_id(),
                    after(
                        "Replay stored events after this `seq` (used when `Last-Event-ID` is absent).",
                    ),
                    json!({"name": "Last-Event-ID", "in": "header", "required": false,
                        "description": "The last `seq` received; takes precedence over `after` (EventSource sends it when it reconnects). Not a non-negative integer: 422.",
                        "schema": {"type": "integer", "format": "int64", "minimum": 0, "maximum": i64::MAX}}),
                ],
            ),
        ),
        (
            "/ws/{session_id}",
            "get",
            websocket(
                op(
                    "connectEvents",
                    "events",
                    "Events and commands (WebSocket)",
                    WS_EVENTS,
                    switching(),
                    &[400, 404, 422, 503],
                ),
                vec![
                    session_id(),
                    after("Replay stored events after this `seq` first."),
                ],
                json!({"subprotocols": [], "client_frames": {"format": "text, JSON", "schema": "#/components/schemas/WsCommand"},
                   "server_frames": {"format": "text, JSON", "schema": "#/components/schemas/WsServerFrame"},
                   "ping": "the server pings every SSE_HEARTBEAT seconds and closes (1001) a client silent for three heartbeats",
                   "close_codes": close_codes()}),
            ),
        ),
    ]
}

const SSE: &str = "Replays stored events after the resume point (`Last-Event-ID`, else `after`, else 0), then \
sends live events. Frames have no `event:` line, so `EventSource.onmessage` sees them all:\n\n\
* a stored event: `id: <seq>` + `data: <Event JSON>` + blank line;\n\
* a live-only delta (`text_delta`, `thinking_delta`): `data: <Event JSON>` only, no `id:`;\n\
* comments: `: connected` first, `: keepalive` every SSE_HEARTBEAT seconds (15 s), and a last `: closed …` \
saying why the server ended the stream (`lagged` when the client read too slowly: reconnect with `Last-Event-ID`; \
`session deleted`; `server shutting down`).\n\n\
Reconnecting with the last `id` seen misses nothing and repeats nothing. Browsers pass the token as `?token=`. \
With MAX_STREAMS (or MAX_STREAMS_PER_SESSION) event streams open the request is refused: 503 `too_many_streams`.";

const WS_EVENTS: &str = "After the upgrade the server replays stored events after `after`, then sends live events, \
one JSON text frame each (`Event`). The client may send JSON text frames (`WsCommand`): \
`{\"type\":\"message\",\"content\":\"…\"}` (answered `WsMessageAck`) or `{\"type\":\"cancel\"}` (answered `WsCancelAck`); \
a bad command is answered with a `WsErrorFrame` and the connection stays open; a `message` over RATE_LIMIT_MESSAGES \
(shared with REST posts) is answered `{\"type\":\"error\",\"error\":\"rate_limited\",\"detail\":…,\"retry_after\":N}`. \
Messages larger than MAX_WS_MESSAGE_BYTES close with 1009. With MAX_STREAMS (or MAX_STREAMS_PER_SESSION) event streams \
open the upgrade is refused: 503 `too_many_streams`.\n\n\
Close codes: 1000 normal, 1001 server shutting down or heartbeat timeout, 1009 message too big, 1011 store unavailable, \
4000 too slow a consumer (the reason says `resume with ?after=<seq>`), 4404 session deleted. Browsers pass the token as `?token=`.";

fn close_codes() -> Value {
    json!({"1000": "normal", "1001": "server shutting down, or heartbeat timeout", "1009": "message too big",
           "1011": "store unavailable during replay", "4000": "too slow a consumer; resume with ?after=<seq>",
           "4404": "session deleted"})
}

fn switching() -> Value {
    json!({"101": {"description": "Switching Protocols: the connection is a WebSocket from here on (no body).",
                   "headers": {
                       "Upgrade": {"schema": {"type": "string", "enum": ["websocket"]}},
                       "Connection": {"schema": {"type": "string", "example": "Upgrade"}},
                       "Sec-WebSocket-Accept": {"schema": {"type": "string"}, "description": "RFC 6455 accept key."}}}})
}

/// A WebSocket upgrade: the handshake headers as parameters and `x-websocket` describing frames.
fn websocket(operation: Value, mut params: Vec<Value>, extension: Value) -> Value {
    let header = |name: &str, required: bool, description: &str, schema: Value| json!({"name": name, "in": "header", "required": required, "description": description, "schema": schema});
    params.extend([
        header(
            "Upgrade",
            true,
            "Must be `websocket` (400 otherwise).",
            json!({"type": "string", "enum": ["websocket"]}),
        ),
        header(
            "Connection",
            true,
            "Must include `Upgrade`.",
            json!({"type": "string", "example": "Upgrade"}),
        ),
        header(
            "Sec-WebSocket-Version",
            true,
            "Must be 13 (400 otherwise).",
            json!({"type": "string", "enum": ["13"]}),
        ),
        header(
            "Sec-WebSocket-Key",
            true,
            "RFC 6455 handshake key (400 when missing).",
            json!({"type": "string"}),
        ),
    ]);
    let mut operation = with_params(operation, params);
    operation["x-websocket"] = extension;
    operation
}

fn desktop_operations() -> Vec<Operation> {
    let vnc_ext = |which: &str| {
        json!({"subprotocols": ["binary"],
        "frames": format!("binary both ways: the RFB byte stream of {which}; text frames are refused (close 1003)"),
        "close_codes": {"1000": "normal (either side ended)", "1001": "server shutting down", "1003": "text frame received", "1009": "message over 16 MiB"}})
    };
    let vnc_errors = &[400, 404, 503];
    vec![
        (
            "/api/vnc/info",
            "get",
            with_params(
                op(
                    "getVncInfo",
                    "desktop",
                    "Where a VNC viewer connects",
                    "The shared desktop, or with DESKTOP_MODE=per-session the desktop of `session_id`. Never starts a desktop.",
                    json!({"200": json_response("The desktop's description.", schema_ref("VncInfo"))}),
                    &[404, 503],
                ),
                vec![query(
                    "session_id",
                    "Per-session mode: whose desktop (404 when unknown). Ignored in other modes.",
                    json!({"type": "string", "format": "uuid"}),
                )],
            ),
        ),
        (
            "/ws/vnc",
            "get",
            websocket(
                op(
                    "connectSharedVnc",
                    "desktop",
                    "The shared desktop's VNC (WebSocket)",
                    "Bridges binary WebSocket frames to the shared desktop's VNC server, starting the desktop if needed. The VNC server is connected before the upgrade is answered, so an unavailable desktop is an HTTP error: 404 `desktop_disabled` (DESKTOP_MODE=none) or `not_found` (per-session mode: use `/ws/vnc/{session_id}`), 503 when it cannot be started or reached. noVNC: `/novnc/vnc.html?path=ws/vnc`.",
                    switching(),
                    vnc_errors,
                ),
                vec![],
                vnc_ext("the shared desktop"),
            ),
        ),
        (
            "/ws/vnc/{session_id}",
            "get",
            websocket(
                op(
                    "connectSessionVnc",
                    "desktop",
                    "A session's desktop VNC (WebSocket)",
                    "Per-session mode: the session's own desktop, started if needed (503 `desktop_limit_reached` beyond MAX_DESKTOPS). In shared mode: the shared desktop.",
                    switching(),
                    vnc_errors,
                ),
                vec![session_id()],
                vnc_ext("the session's desktop"),
            ),
        ),
        ("/novnc/{path}", "get", novnc("getNovncFile")),
        ("/novnc/{path}", "head", novnc("headNovncFile")),
    ]
}

fn novnc(id: &str) -> Value {
    let file = json!({"description": "The file, with `ETag`, `Last-Modified` and `Cache-Control: public, max-age=600`.",
                      "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}});
    let operation = op(
        id,
        "static",
        "The noVNC client (static files)",
        "Files of NOVNC_DIR (default /usr/share/novnc). Public: a browser does not add `?token=` to the scripts a page loads; the VNC WebSocket still needs the token. `/novnc` redirects to `/novnc/`, which serves `vnc.html`.",
        json!({"200": file, "301": {"description": "`/novnc` → `/novnc/`."},
               "304": {"description": "Not modified (`If-None-Match` / `If-Modified-Since`)."}}),
        &[400, 404],
    );
    public(with_params(
        operation,
        vec![tail(
            "The file's path under NOVNC_DIR, may contain `/`; empty serves `vnc.html`. `.`/`..` segments, backslashes and NUL are refused (400).",
        )],
    ))
}

fn ui_page(id: &str) -> Value {
    public(op(
        id,
        "static",
        "The web UI",
        "The single-page client (embedded in the binary). Public: a browser loads it before it can ask for the token; every API call it makes needs the token.",
        static_ok("text/html"),
        &[],
    ))
}

fn ui_file(id: &str) -> Value {
    let operation = op(
        id,
        "static",
        "The web UI's files",
        "Scripts, styles and icons of the web UI.",
        static_ok("*/*"),
        &[400, 404],
    );
    public(with_params(
        operation,
        vec![tail("A file of the page, e.g. `app.js`.")],
    ))
}

/// 200 with a file (`ETag`, `Cache-Control: no-cache`) or 304.
fn static_ok(media_type: &str) -> Value {
    json!({"200": {"description": "The file, with `ETag` and `Cache-Control: no-cache` (gzip when accepted).",
                   "content": {media_type: {"schema": {"type": "string", "format": "binary"}}}},
           "304": {"description": "Not modified (`If-None-Match`)."}})
}

fn tail(description: &str) -> Value {
    json!({"name": "path", "in": "path", "required": true, "description": description,
           "schema": {"type": "string"}, "allowReserved": true})
}

fn meta_operations() -> Vec<Operation> {
    vec![
        ("/", "get", ui_page("getUi")),
        ("/", "head", ui_page("headUi")),
        ("/ui/{path}", "get", ui_file("getUiFile")),
        ("/ui/{path}", "head", ui_file("headUiFile")),
        (
            "/health",
            "get",
            public(op(
                "getHealth",
                "health",
                "Health",
                "Liveness plus a database round trip. Never needs a token.",
                json!({"200": json_response("Healthy.", schema_ref("Health")),
                   "503": json_response("Degraded: the database did not answer.", schema_ref("Health"))}),
                &[],
            )),
        ),
        ("/metrics", "get", metrics()),
        (
            "/openapi.json",
            "get",
            public(op(
                "getOpenApi",
                "docs",
                "This document",
                "The OpenAPI 3.0.3 description of every route, generated once per process. Public: it holds no secrets (no tokens, no configuration values).",
                json!({"200": json_response("The document.", json!({"type": "object"})),
                   "304": {"description": "Not modified (`If-None-Match`)."}}),
                &[],
            )),
        ),
        (
            "/docs/{path}",
            "get",
            public(with_params(
                op(
                    "getDocs",
                    "docs",
                    "Interactive API documentation (Swagger UI)",
                    "`/docs/` serves Swagger UI for `/openapi.json`, embedded in the binary (works offline); `/docs` redirects there, and `/docs/{path}` serves the page's scripts, styles and icons. Use **Authorize** to enter the API token for *Try it out*.",
                    json!({"200": {"description": "The page or file, with `ETag`; `Cache-Control: no-cache` for the page and its configuration, an hour for the rest.",
                                   "content": {"text/html": {"schema": {"type": "string"}},
                                               "*/*": {"schema": {"type": "string", "format": "binary"}}}},
                           "301": {"description": "`/docs` → `/docs/`."},
                           "304": {"description": "Not modified (`If-None-Match`)."}}),
                    &[404],
                ),
                vec![tail(
                    "A Swagger UI file, e.g. `swagger-ui-bundle.js`; empty (`/docs/`) serves `index.html`.",
                )],
            )),
        ),
    ]
}

/// `/metrics`: Prometheus text, behind the token like the API.
fn metrics() -> Value {
    op(
        "getMetrics",
        "health",
        "Metrics (Prometheus text format)",
        "Counters, gauges and histograms in the Prometheus text exposition format 0.0.4: \
         HTTP requests by method, route pattern and status with latency; open WebSocket, SSE and \
         VNC connections; live workers and running turns; Messages API calls, attempts, retries \
         and tokens; tool executions by tool and outcome; store operation latency and errors; \
         desktops running; process memory and threads. Needs the token when API_TOKEN is set \
         (scrapers send `Authorization: Bearer <token>`).",
        json!({"200": {"description": "The metrics.",
                       "content": {"text/plain": {"schema": {"type": "string"},
                                                  "example": "# HELP computer_use_sessions_active Sessions with a live worker thread.\n# TYPE computer_use_sessions_active gauge\ncomputer_use_sessions_active 1\n"}}}}),
        &[],
    )
}
