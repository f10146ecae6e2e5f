//! `components.schemas`: the JSON shapes of requests, responses, events and frames.
//!
//! Shapes follow the code that produces them: `sessions::session_json`, `messages.rs`,
//! `session/params.rs` (create-session limits), `session/events.rs` (`EventKind`),
//! `health.rs`, `vnc_info.rs`, `ws.rs` (commands and acks) and `error.rs`.

use serde_json::{Map, Value, json};

/// Every named schema.
pub(super) fn schemas() -> Value {
    let mut all = Map::new();
    for (name, schema) in resources().into_iter().chain(events()).chain(frames()) {
        all.insert(name.to_string(), schema);
    }
    Value::Object(all)
}

/// `{"$ref": "#/components/schemas/<name>"}`.
pub(super) fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn string(description: &str) -> Value {
    json!({"type": "string", "description": description})
}

fn nullable_string(description: &str) -> Value {
    json!({"type": "string", "nullable": true, "description": description})
}

fn integer(description: &str) -> Value {
    json!({"type": "integer", "format": "int64", "description": description})
}

fn timestamp(description: &str) -> Value {
    json!({"type": "string", "format": "date-time", "description": description,
           "example": "2025-06-04T09:05:01.123Z"})
}

fn uuid(description: &str) -> Value {
    json!({"type": "string", "format": "uuid", "description": description})
}

/// An object whose every listed property is required.
fn object(description: &str, properties: Value) -> Value {
    let required: Vec<&String> = properties
        .as_object()
        .map_or(vec![], |p| p.keys().collect());
    json!({"type": "object", "description": description,
           "required": required, "properties": properties})
}

fn resources() -> Vec<(&'static str, Value)> {
    vec![
        ("Error", error()),
        ("CreateSession", create_session()),
        ("Session", session()),
        ("Usage", usage()),
        ("SessionVnc", session_vnc()),
        (
            "SessionDeleted",
            object(
                "The session and its history are gone.",
                json!({"message": {"type": "string", "example": "Session deleted successfully"}}),
            ),
        ),
        (
            "CancelResult",
            object(
                "Whether a running turn was stopped.",
                json!({
                    "session_id": uuid("The session."),
                    "cancelled": {"type": "boolean", "description": "`true` when a turn was running and is being stopped; `false` when the session was idle."},
                }),
            ),
        ),
        ("PostMessage", post_message()),
        ("MessageQueued", message_queued()),
        ("Message", message()),
        ("ContentBlock", content_block()),
        ("Health", health()),
        ("VncInfo", vnc_info()),
    ]
}

fn error() -> Value {
    let codes = "bad_request (400), unauthorized (401), forbidden_host (403), not_found (404), \
                 desktop_disabled (404), method_not_allowed (405), conflict (409), \
                 payload_too_large (413), unsupported_media_type (415), invalid_field (422), \
                 internal_error (500), store_unavailable (503), shutting_down (503), \
                 unavailable (503), desktop_limit_reached (503), desktop_unavailable (503), \
                 vnc_unavailable (503)";
    object(
        "Every failure: a short machine-readable code and a sentence for people. Never a stack \
         trace or an HTML page.",
        json!({
            "error": {"type": "string", "example": "invalid_field",
                      "description": format!("Short code, one of: {codes}.")},
            "detail": {"type": "string", "example": "max_tokens: must be an integer from 1 to 128000",
                       "description": "What went wrong and why; for 422 it starts with the field's name."},
        }),
    )
}

fn create_session() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "description": "Every field is optional; an empty or missing body takes every default. \
                        Unknown fields are refused (422 naming the field); `null` means the default.",
        "properties": {
            "model": {"type": "string", "maxLength": 200, "nullable": true,
                      "description": "Model name. Default: the server's DEFAULT_MODEL (claude-sonnet-4-5-20250929 unless configured). Blank means the default.",
                      "example": "claude-sonnet-4-5-20250929"},
            "provider": {"type": "string", "enum": ["anthropic", null], "default": "anthropic", "nullable": true,
                         "description": "Only the first-party API is supported."},
            "system_prompt_suffix": {"type": "string", "maxLength": 20000, "default": "", "nullable": true,
                                     "description": "Appended to the system prompt (characters, not bytes)."},
            "tool_version": {"type": "string", "nullable": true,
                             "enum": ["computer_use_20241022", "computer_use_20250124", "computer_use_20250429", "computer_use_20251124", null],
                             "description": "Tool group. Default: the model's (computer_use_20250429 for Sonnet 4.5, computer_use_20251124 for Opus 4.5 and unknown models)."},
            "max_tokens": {"type": "integer", "minimum": 1, "maximum": 128000, "nullable": true,
                           "description": "Output tokens per model call. Default: the model's (16384; 4096 for Haiku 4.5 and Claude 3.5 Sonnet)."},
            "thinking_budget": {"type": "integer", "minimum": 1024, "maximum": 128000, "nullable": true,
                                "description": "Extended thinking budget; must be less than max_tokens. Default: no thinking."},
            "only_n_most_recent_images": {"type": "integer", "minimum": 0, "maximum": 1000, "nullable": true,
                                          "description": "Keep only this many most recent screenshots in requests. Default: keep all."},
            "title": {"type": "string", "maxLength": 200, "nullable": true,
                      "description": "Display title. Default: set from the first message."},
        },
        "example": {"title": "demo", "max_tokens": 4096},
    })
}

fn session() -> Value {
    let mut schema = object(
        "A session: its settings, whether a turn is running, and token totals.",
        json!({
            "id": uuid("Session id (lowercase hyphenated UUID)."),
            "title": nullable_string("Title; set from the first message when created without one."),
            "model": string("Model name."),
            "provider": {"type": "string", "enum": ["anthropic"]},
            "system_prompt_suffix": string("Appended to the system prompt."),
            "tool_version": string("Tool group, e.g. computer_use_20250429."),
            "max_tokens": {"type": "integer", "description": "Output tokens per model call."},
            "thinking_budget": {"type": "integer", "nullable": true, "description": "Thinking budget, or null."},
            "only_n_most_recent_images": {"type": "integer", "nullable": true, "description": "Image truncation, or null (keep all)."},
            "status": {"type": "string", "enum": ["idle", "running"], "description": "`running` while a turn is in progress."},
            "usage": schema_ref("Usage"),
            "created_at": timestamp("Creation time (UTC)."),
            "updated_at": timestamp("Last change (UTC)."),
        }),
    );
    schema["properties"]["vnc"] = schema_ref("SessionVnc");
    schema
}

fn usage() -> Value {
    object(
        "Token counts (a session's totals, or one turn's in a `usage` event).",
        json!({
            "input_tokens": integer("Uncached input tokens."),
            "output_tokens": integer("Output tokens."),
            "cache_creation_input_tokens": integer("Input tokens written to the prompt cache."),
            "cache_read_input_tokens": integer("Input tokens read from the prompt cache."),
        }),
    )
}

fn session_vnc() -> Value {
    object(
        "Only with DESKTOP_MODE=per-session: the session's own desktop. Reading it never starts \
         the desktop; connecting to `websocket_url` does.",
        json!({
            "available": {"type": "boolean", "description": "Whether the desktop is running."},
            "display": nullable_string("X display, e.g. `:11`, when running."),
            "width": {"type": "integer"},
            "height": {"type": "integer"},
            "websocket_url": string("Path of the VNC WebSocket, `/ws/vnc/{session_id}` (add `?token=` when API_TOKEN is set)."),
            "novnc_url": nullable_string("Path of a noVNC page connected to it, or null when noVNC is not installed."),
        }),
    )
}

fn post_message() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["content"],
        "description": "A user message; `content` is the only field accepted.",
        "properties": {
            "content": {"type": "string", "minLength": 1,
                        "description": "The text; must not be blank. The body as a whole is limited by MAX_BODY_BYTES (1 MiB by default).",
                        "example": "list the files in /tmp"},
        },
    })
}

fn message_queued() -> Value {
    object(
        "The message is stored and queued; the session's worker answers messages in order.",
        json!({
            "message_id": uuid("The new message."),
            "session_id": uuid("Its session."),
            "status": {"type": "string", "enum": ["queued"]},
        }),
    )
}

fn message() -> Value {
    object(
        "One message of the conversation exactly as sent to the model, or a queued user \
         message not yet part of it.",
        json!({
            "id": uuid("Message id."),
            "session_id": uuid("Its session."),
            "role": {"type": "string", "enum": ["user", "assistant"]},
            "content": {"type": "array", "items": schema_ref("ContentBlock"),
                        "description": "Messages API content blocks."},
            "timestamp": timestamp("When it was stored (UTC)."),
            "seq": {"type": "integer", "nullable": true,
                    "description": "Position in the conversation; null while queued."},
            "queued": {"type": "boolean", "description": "`true` while the message waits for the worker (seq is null)."},
        }),
    )
}

fn content_block() -> Value {
    let block = |kind: &str, properties: Value| {
        let mut schema = object(&format!("A `{kind}` block."), properties);
        schema["properties"]["type"] = json!({"type": "string", "enum": [kind]});
        if let Some(required) = schema["required"].as_array_mut() {
            required.insert(0, json!("type"));
        }
        schema
    };
    let image_source = object(
        "The image data.",
        json!({
            "type": {"type": "string", "enum": ["base64"]},
            "media_type": {"type": "string", "example": "image/png"},
            "data": {"type": "string", "format": "byte"},
        }),
    );
    json!({
        "description": "A Messages API content block. These are the types this server stores; \
                        blocks of other types the API returns are stored unchanged.",
        "anyOf": [
            block("text", json!({"text": {"type": "string"}})),
            block("image", json!({"source": image_source})),
            block("tool_use", json!({"id": string("Tool use id (toolu_…)."), "name": string("Tool name: computer, bash, str_replace_editor or str_replace_based_edit_tool."),
                                     "input": {"type": "object", "additionalProperties": true}})),
            block("tool_result", json!({"tool_use_id": {"type": "string"}, "is_error": {"type": "boolean"},
                                        "content": {"description": "The error text, or text and image blocks.",
                                                    "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]}})),
            block("thinking", json!({"thinking": {"type": "string"}, "signature": {"type": "string"}})),
            block("redacted_thinking", json!({"data": {"type": "string"}})),
        ],
    })
}

fn health() -> Value {
    object(
        "Liveness and a database round trip. `status` is `degraded` (with HTTP 503) when the \
         database does not answer.",
        json!({
            "status": {"type": "string", "enum": ["ok", "degraded"]},
            "timestamp": timestamp("Now (UTC)."),
            "version": string("Server version."),
            "uptime_s": integer("Seconds since start-up."),
            "active_sessions": integer("Sessions with a live worker."),
            "database": object("The database check.", json!({
                "ok": {"type": "boolean"},
                "backend": {"type": "string", "enum": ["sqlite", "postgres"]},
                "latency_ms": {"type": "number", "description": "Round-trip time of the ping."},
            })),
            "system": object("Process figures.", json!({
                "stream_clients": integer("Open SSE and WebSocket event streams."),
                "http_threads": integer("Request pool size."),
                "pid": integer("Process id."),
            })),
            "desktops": object("X desktops.", json!({
                "mode": {"type": "string", "enum": ["shared", "per-session", "none"],
                         "description": "DESKTOP_MODE."},
                "running": integer("Desktops this server has running."),
            })),
            "workers": object("Session workers.", json!({
                "active": integer("Sessions with a live worker thread."),
                "running_turns": integer("Turns running now."),
            })),
            "streams": object("Open long-lived connections.", json!({
                "websocket": integer("Event WebSockets (`/ws/{session_id}`)."),
                "sse": integer("Server-Sent Events streams."),
                "vnc": integer("VNC proxy links (`/ws/vnc`, `/ws/vnc/{session_id}`)."),
            })),
        }),
    )
}

fn vnc_info() -> Value {
    let mut schema = object(
        "What a VNC viewer needs. Describing a desktop never starts one: one not running yet is \
         `available: false` with a `reason` and the `websocket_url` whose connection starts it. \
         URLs are paths relative to the server; add `?token=` when API_TOKEN is set.",
        json!({
            "available": {"type": "boolean"},
            "host": nullable_string("VNC server address (loopback), when running."),
            "port": {"type": "integer", "nullable": true, "description": "VNC server port, when running."},
            "width": {"type": "integer", "nullable": true, "description": "Desktop width (null when no desktop is configured)."},
            "height": {"type": "integer", "nullable": true, "description": "Desktop height."},
            "display": nullable_string("X display, e.g. `:1`, when running."),
            "websocket_url": nullable_string("`/ws/vnc` or `/ws/vnc/{session_id}`; null when no desktop is configured."),
            "novnc_url": nullable_string("A noVNC page connected to it; null when noVNC is not installed."),
        }),
    );
    schema["properties"]["reason"] = string("Why `available` is false.");
    schema["properties"]["session_id"] = uuid("Echoed in per-session mode.");
    schema
}

/// The events of DESIGN §3: `Event` is `oneOf` by `type`, each variant `EventCommon` plus its
/// own fields (`session/events.rs`).
fn events() -> Vec<(&'static str, Value)> {
    let variants = event_variants();
    let mapping: Map<String, Value> = variants
        .iter()
        .map(|(kind, name, _, _)| {
            (
                kind.to_string(),
                json!(format!("#/components/schemas/{name}")),
            )
        })
        .collect();
    let refs: Vec<Value> = variants
        .iter()
        .map(|(_, name, _, _)| schema_ref(name))
        .collect();
    let mut out = vec![
        ("EventCommon", event_common()),
        (
            "Event",
            json!({
                "description": "A session event, as stored (`GET …/events`), streamed over SSE and \
                                sent over WebSocket. Stored events carry `seq`; `text_delta` and \
                                `thinking_delta` are live only (no `seq`), and the whole block follows \
                                as a stored `text`/`thinking` event.",
                "oneOf": refs,
                "discriminator": {"propertyName": "type", "mapping": mapping},
            }),
        ),
    ];
    for (kind, name, description, properties) in variants {
        out.push((name, event_variant(kind, description, properties)));
    }
    out
}

fn event_common() -> Value {
    json!({
        "type": "object",
        "required": ["type", "session_id", "timestamp"],
        "properties": {
            "type": string("The event type."),
            "session_id": uuid("The session."),
            "timestamp": timestamp("When it happened (UTC)."),
            "seq": {"type": "integer", "format": "int64", "minimum": 1,
                    "description": "1, 2, 3… per session; present on every stored event, absent on live-only deltas. Resume with `after`/`Last-Event-ID` = the last seq seen."},
        },
    })
}

fn event_variant(kind: &str, description: &str, properties: Value) -> Value {
    let mut own = object(description, properties);
    own["properties"]["type"] = json!({"type": "string", "enum": [kind]});
    json!({"description": description, "allOf": [schema_ref("EventCommon"), own]})
}

type Variant = (&'static str, &'static str, &'static str, Value);

fn event_variants() -> Vec<Variant> {
    let index = || integer("Content block index within the model response.");
    vec![
        (
            "user_message",
            "UserMessageEvent",
            "A user message was accepted (posted over REST or WebSocket).",
            json!({"message_id": uuid("The stored message."), "content": string("Its text.")}),
        ),
        (
            "status",
            "StatusEvent",
            "The turn's state. Retries are announced as `processing` with the reason.",
            json!({"status": {"type": "string", "enum": ["processing", "completed", "cancelled", "error"]},
                "message": string("Human-readable reason.")}),
        ),
        (
            "text",
            "TextEvent",
            "A whole text block of the model's answer.",
            json!({"text": {"type": "string"}}),
        ),
        (
            "text_delta",
            "TextDeltaEvent",
            "Live only (no seq): a piece of a text block as it streams.",
            json!({"index": index(), "delta": {"type": "string"}}),
        ),
        (
            "thinking",
            "ThinkingEvent",
            "A whole thinking block.",
            json!({"thinking": {"type": "string"}}),
        ),
        (
            "thinking_delta",
            "ThinkingDeltaEvent",
            "Live only (no seq): a piece of a thinking block.",
            json!({"index": index(), "delta": {"type": "string"}}),
        ),
        (
            "tool_use",
            "ToolUseEvent",
            "The model asked for a tool.",
            json!({"tool_name": string("computer, bash, str_replace_editor or str_replace_based_edit_tool."),
                "tool_input": {"type": "object", "additionalProperties": true, "description": "The tool's input as the model sent it."},
                "tool_use_id": string("toolu_… id; the matching tool_result carries it.")}),
        ),
        (
            "tool_result",
            "ToolResultEvent",
            "A tool finished.",
            json!({"tool_use_id": {"type": "string"},
                "output": nullable_string("Output text."),
                "error": nullable_string("Error text (the model sees it as an error result)."),
                "base64_image": {"type": "string", "format": "byte", "nullable": true, "description": "A PNG screenshot, base64."}}),
        ),
        (
            "usage",
            "UsageEvent",
            "Token counts of one turn.",
            json!({"input_tokens": integer("Uncached input tokens."), "output_tokens": integer("Output tokens."),
                "cache_creation_input_tokens": integer("Written to the prompt cache."),
                "cache_read_input_tokens": integer("Read from the prompt cache.")}),
        ),
        (
            "error",
            "ErrorEvent",
            "The turn failed (API error, refusal, max_tokens, iteration cap…).",
            json!({"error": string("What failed."), "details": nullable_string("More about it.")}),
        ),
    ]
}

/// WebSocket frames of `/ws/{session_id}` besides events.
fn frames() -> Vec<(&'static str, Value)> {
    vec![
        (
            "WsCommand",
            json!({
                "description": "A text frame a client sends on `/ws/{session_id}` (JSON).",
                "oneOf": [schema_ref("WsMessageCommand"), schema_ref("WsCancelCommand")],
                "discriminator": {"propertyName": "type", "mapping": {
                    "message": "#/components/schemas/WsMessageCommand",
                    "cancel": "#/components/schemas/WsCancelCommand"}},
            }),
        ),
        (
            "WsMessageCommand",
            object(
                "Post a message (as `POST …/messages`); answered by a `WsMessageAck`.",
                json!({
                    "type": {"type": "string", "enum": ["message"]},
                    "content": {"type": "string", "minLength": 1},
                }),
            ),
        ),
        (
            "WsCancelCommand",
            object(
                "Stop the running turn; answered by a `WsCancelAck`.",
                json!({
                    "type": {"type": "string", "enum": ["cancel"]},
                }),
            ),
        ),
        (
            "WsMessageAck",
            object(
                "The message is stored and queued.",
                json!({
                    "type": {"type": "string", "enum": ["ack"]},
                    "message_id": uuid("The new message."),
                    "session_id": uuid("The session."),
                    "status": {"type": "string", "enum": ["queued"]},
                }),
            ),
        ),
        (
            "WsCancelAck",
            object(
                "The cancel was handled.",
                json!({
                    "type": {"type": "string", "enum": ["ack"]},
                    "action": {"type": "string", "enum": ["cancel"]},
                    "cancelled": {"type": "boolean", "description": "Whether a turn was running."},
                }),
            ),
        ),
        ("WsErrorFrame", {
            let mut frame = object(
                "A command was refused (malformed JSON, unknown type, invalid content, binary frame). \
             The connection stays open. Unlike the `error` event it has no `session_id` and says \
             `detail`, with the codes of `Error`.",
                json!({
                    "type": {"type": "string", "enum": ["error"]},
                    "error": string("Short code (bad_request, invalid_field, …)."),
                    "detail": string("What and why."),
                }),
            );
            frame["properties"]["retry_after"] = integer(
                "Rate limited (`rate_limited`) only: whole seconds until a message is allowed.",
            );
            frame
        }),
        (
            "WsServerFrame",
            json!({
                "description": "A text frame the server sends on `/ws/{session_id}`: an event, an ack or an error frame.",
                "anyOf": [schema_ref("Event"), schema_ref("WsMessageAck"), schema_ref("WsCancelAck"), schema_ref("WsErrorFrame")],
            }),
        ),
    ]
}
