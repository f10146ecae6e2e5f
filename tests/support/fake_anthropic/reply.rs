//! Scripted replies of the fake Messages API and their exact wire encoding (reference §10.3,
//! §10.4): SSE events for a streamed message, error bodies, raw bytes, stalls and resets.

use std::time::Duration;

use serde_json::{Value, json};

/// One scripted answer to one request. Build with the constructors, adjust with `with_*`.
#[derive(Clone, Debug)]
pub struct Reply {
    pub(super) kind: Kind,
    pub(super) headers: Vec<(String, String)>,
    /// Waited before the response head is written.
    pub(super) delay: Duration,
    /// Waited before each SSE event after the first.
    pub(super) event_delay: Duration,
    /// Each SSE event is written in pieces of this many bytes (one HTTP chunk each).
    pub(super) write_size: Option<usize>,
    pub(super) usage: Usage,
    pub(super) request_id: Option<String>,
}

#[derive(Clone, Debug)]
pub(super) enum Kind {
    /// A 200 event stream rebuilding `blocks`, ending as `end` says.
    Stream {
        blocks: Vec<Value>,
        stop_reason: String,
        end: StreamEnd,
    },
    /// An HTTP error with the API's error body.
    Error {
        status: u16,
        error_type: String,
        message: String,
    },
    /// Any status, content type and body bytes.
    Raw {
        status: u16,
        content_type: String,
        body: Vec<u8>,
    },
}

#[derive(Clone, Debug)]
pub(super) enum StreamEnd {
    /// `message_delta` + `message_stop`, then the terminating chunk.
    Complete,
    /// After this many events, an `error` event, then the stream ends.
    ErrorAfter {
        events: usize,
        error_type: String,
        message: String,
    },
    /// After this many events the connection is closed without finishing the body.
    ResetAfter(usize),
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Usage {
    input: i64,
    output: i64,
    cache_creation: i64,
    cache_read: i64,
}

/// A `text` content block.
pub fn text_block(text: &str) -> Value {
    json!({"type": "text", "text": text})
}

/// A `tool_use` content block.
pub fn tool_use_block(id: &str, name: &str, input: Value) -> Value {
    json!({"type": "tool_use", "id": id, "name": name, "input": input})
}

/// A `thinking` content block with its signature.
pub fn thinking_block(thinking: &str, signature: &str) -> Value {
    json!({"type": "thinking", "thinking": thinking, "signature": signature})
}

/// A `redacted_thinking` content block.
pub fn redacted_thinking_block(data: &str) -> Value {
    json!({"type": "redacted_thinking", "data": data})
}

impl Reply {
    fn new(kind: Kind) -> Reply {
        Reply {
            kind,
            headers: Vec::new(),
            delay: Duration::ZERO,
            event_delay: Duration::ZERO,
            write_size: None,
            usage: Usage {
                input: 25,
                output: 12,
                cache_creation: 0,
                cache_read: 0,
            },
            request_id: None,
        }
    }

    /// A streamed message of the final content `blocks` (as the client should rebuild them):
    /// text is sent as several `text_delta`s, tool input as several `input_json_delta`s,
    /// thinking as `thinking_delta`s plus a `signature_delta`; other blocks whole.
    pub fn blocks(blocks: Vec<Value>, stop_reason: &str) -> Reply {
        Reply::new(Kind::Stream {
            blocks,
            stop_reason: stop_reason.to_string(),
            end: StreamEnd::Complete,
        })
    }

    /// One text block, `end_turn`.
    pub fn text(text: &str) -> Reply {
        Reply::blocks(vec![text_block(text)], "end_turn")
    }

    /// One tool_use block, `tool_use`. Add a text block before it with `with_leading_text`.
    pub fn tool_use(id: &str, name: &str, input: Value) -> Reply {
        Reply::blocks(vec![tool_use_block(id, name, input)], "tool_use")
    }

    /// A thinking block (with `signature`) followed by a text block, `end_turn`.
    pub fn thinking(thinking: &str, signature: &str, text: &str) -> Reply {
        Reply::blocks(
            vec![thinking_block(thinking, signature), text_block(text)],
            "end_turn",
        )
    }

    /// An HTTP error: `{"type":"error","error":{"type","message"},"request_id"}`.
    pub fn error(status: u16, error_type: &str, message: &str) -> Reply {
        Reply::new(Kind::Error {
            status,
            error_type: error_type.to_string(),
            message: message.to_string(),
        })
    }

    /// A 200 stream that sends `message_start` and then an `error` event.
    pub fn stream_error(error_type: &str, message: &str) -> Reply {
        Reply::text("never sent").with_error_after(1, error_type, message)
    }

    /// Any status, content type and body (garbage bodies, HTML from a proxy…).
    pub fn raw(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
        Reply::new(Kind::Raw {
            status,
            content_type: content_type.to_string(),
            body: body.into(),
        })
    }

    /// A request that is read but never answered (until the fake is dropped, or 60 s).
    pub fn stall() -> Reply {
        Reply::text("too late").with_delay(Duration::from_secs(60))
    }

    /// Puts a text block before the existing blocks of a streamed reply.
    pub fn with_leading_text(mut self, text: &str) -> Reply {
        if let Kind::Stream { blocks, .. } = &mut self.kind {
            blocks.insert(0, text_block(text));
        }
        self
    }

    /// Adds a response header (`retry-after`, `retry-after-ms`, `x-should-retry`, …).
    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Waits `delay` before sending the response head.
    pub fn with_delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    /// Waits `delay` before each SSE event after the first.
    pub fn with_event_delay(mut self, delay: Duration) -> Reply {
        self.event_delay = delay;
        self
    }

    /// Writes each SSE event in pieces of `bytes` bytes, each its own HTTP chunk.
    pub fn with_write_size(mut self, bytes: usize) -> Reply {
        self.write_size = Some(bytes.max(1));
        self
    }

    /// Usage reported: input tokens in `message_start`, output tokens in `message_delta`.
    pub fn with_usage(mut self, input_tokens: i64, output_tokens: i64) -> Reply {
        self.usage.input = input_tokens;
        self.usage.output = output_tokens;
        self
    }

    /// Cache usage reported in `message_start`.
    pub fn with_cache_usage(mut self, creation: i64, read: i64) -> Reply {
        self.usage.cache_creation = creation;
        self.usage.cache_read = read;
        self
    }

    /// The `request-id` header (default: `req_fake_<n>`).
    pub fn with_request_id(mut self, id: &str) -> Reply {
        self.request_id = Some(id.to_string());
        self
    }

    /// Cuts a streamed reply: after `events` SSE events, an `error` event ends the stream.
    pub fn with_error_after(mut self, events: usize, error_type: &str, message: &str) -> Reply {
        if let Kind::Stream { end, .. } = &mut self.kind {
            *end = StreamEnd::ErrorAfter {
                events,
                error_type: error_type.to_string(),
                message: message.to_string(),
            };
        }
        self
    }

    /// Cuts a streamed reply: after `events` SSE events the connection closes mid-body.
    pub fn with_reset_after(mut self, events: usize) -> Reply {
        if let Kind::Stream { end, .. } = &mut self.kind {
            *end = StreamEnd::ResetAfter(events);
        }
        self
    }

    /// What the fake answers when its script is empty: a loud, non-retryable 500.
    pub(super) fn unscripted(number: usize) -> Reply {
        Reply::error(
            500,
            "api_error",
            &format!("fake Anthropic: no scripted reply left for request #{number}"),
        )
        .with_header("x-should-retry", "false")
    }
}

/// The SSE events (name, data) of a streamed reply, before any cut.
pub(super) fn stream_events(
    blocks: &[Value],
    stop_reason: &str,
    usage: Usage,
    message_id: &str,
    model: &str,
) -> Vec<(String, Value)> {
    let mut events = vec![(
        "message_start".to_string(),
        json!({"type": "message_start", "message": {
            "id": message_id, "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": usage.input, "output_tokens": 1,
                      "cache_creation_input_tokens": usage.cache_creation,
                      "cache_read_input_tokens": usage.cache_read}}}),
    )];
    events.push(ping());
    for (index, block) in blocks.iter().enumerate() {
        events.extend(block_events(index, block));
        if index == 0 {
            events.push(ping());
        }
    }
    events.push((
        "message_delta".into(),
        json!({"type": "message_delta",
               "delta": {"stop_reason": stop_reason, "stop_sequence": null},
               "usage": {"output_tokens": usage.output}}),
    ));
    events.push(("message_stop".into(), json!({"type": "message_stop"})));
    events
}

fn ping() -> (String, Value) {
    ("ping".into(), json!({"type": "ping"}))
}

/// `content_block_start`, the deltas and `content_block_stop` of one final block.
fn block_events(index: usize, block: &Value) -> Vec<(String, Value)> {
    let delta = |delta: Value| {
        (
            "content_block_delta".to_string(),
            json!({"type": "content_block_delta", "index": index, "delta": delta}),
        )
    };
    let (start, deltas): (Value, Vec<_>) = match block["type"].as_str().unwrap_or_default() {
        "text" => {
            let mut start = block.clone();
            start["text"] = json!("");
            let text = block["text"].as_str().unwrap_or_default();
            let pieces = split(text, text.chars().count().div_ceil(3).max(1));
            (
                start,
                pieces
                    .into_iter()
                    .map(|t| delta(json!({"type": "text_delta", "text": t})))
                    .collect(),
            )
        }
        "tool_use" | "server_tool_use" => {
            let mut start = block.clone();
            start["input"] = json!({});
            let input = block["input"].to_string();
            let mut pieces = vec![String::new()];
            pieces.extend(split(&input, 8));
            (
                start,
                pieces
                    .into_iter()
                    .map(|p| delta(json!({"type": "input_json_delta", "partial_json": p})))
                    .collect(),
            )
        }
        "thinking" => {
            let thinking = block["thinking"].as_str().unwrap_or_default();
            let signature = block["signature"].as_str().unwrap_or_default();
            let mut deltas: Vec<_> = split(thinking, thinking.chars().count().div_ceil(3).max(1))
                .into_iter()
                .map(|t| delta(json!({"type": "thinking_delta", "thinking": t})))
                .collect();
            deltas.push(delta(
                json!({"type": "signature_delta", "signature": signature}),
            ));
            (
                json!({"type": "thinking", "thinking": "", "signature": ""}),
                deltas,
            )
        }
        _ => (block.clone(), Vec::new()),
    };
    let mut events = vec![(
        "content_block_start".to_string(),
        json!({"type": "content_block_start", "index": index, "content_block": start}),
    )];
    events.extend(deltas);
    events.push((
        "content_block_stop".into(),
        json!({"type": "content_block_stop", "index": index}),
    ));
    events
}

/// Splits `text` into pieces of `size` characters (none for an empty text).
fn split(text: &str, size: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars
        .chunks(size)
        .map(|piece| piece.iter().collect())
        .collect()
}

/// `event: <name>\ndata: <json>\n\n`.
pub(super) fn sse_frame(name: &str, data: &Value) -> Vec<u8> {
    format!("event: {name}\ndata: {data}\n\n").into_bytes()
}

/// The error body of the real API.
pub(super) fn error_body(error_type: &str, message: &str, request_id: &str) -> Vec<u8> {
    json!({"type": "error", "error": {"type": error_type, "message": message},
           "request_id": request_id})
    .to_string()
    .into_bytes()
}

/// The `error` event of a failed stream.
pub(super) fn error_event(error_type: &str, message: &str) -> (String, Value) {
    (
        "error".into(),
        json!({"type": "error", "error": {"type": error_type, "message": message}}),
    )
}
