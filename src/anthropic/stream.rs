//! Incremental SSE parsing and message accumulation for streamed Messages API responses
//! (reference §10.3).
//!
//! [`SseParser`] turns bytes, in whatever pieces the socket delivers them, into whole events;
//! [`StreamAccumulator`] applies those events to rebuild the final [`Message`] and reports text
//! and thinking deltas as they arrive.

use serde_json::{Map, Value};

use super::{AnthropicError, Message, Result, StreamUpdate};
use crate::store::Usage;

/// One SSE event: its `event:` name and `data:` payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
}

/// Feeds bytes in, gets complete events out.
///
/// Lines may end in `\n`, `\r\n` or `\r`; `data:` lines of one event are joined with `\n`;
/// comment lines (`: …`) and `id:` / `retry:` fields are ignored. An event is dispatched at the
/// blank line that ends it, so an event split across reads comes out whole.
#[derive(Default)]
pub struct SseParser {
    /// Bytes of the line being received (no terminator yet).
    line: Vec<u8>,
    /// The previous chunk ended in `\r`: a leading `\n` of the next one belongs to it.
    skip_lf: bool,
    event: String,
    data: String,
    has_data: bool,
}

impl SseParser {
    pub fn new() -> SseParser {
        SseParser::default()
    }

    /// Consumes `bytes` and returns the events they complete, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        let mut rest = bytes;
        if self.skip_lf && !rest.is_empty() {
            self.skip_lf = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        while let Some(pos) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.line.extend_from_slice(&rest[..pos]);
            let line = std::mem::take(&mut self.line);
            events.extend(self.take_line(&line));
            if rest[pos] == b'\r' {
                match rest.get(pos + 1) {
                    Some(b'\n') => rest = &rest[pos + 2..],
                    Some(_) => rest = &rest[pos + 1..],
                    None => {
                        self.skip_lf = true;
                        rest = &[];
                    }
                }
            } else {
                rest = &rest[pos + 1..];
            }
        }
        self.line.extend_from_slice(rest);
        events
    }

    /// Applies one complete line; a blank line dispatches the pending event.
    fn take_line(&mut self, line: &[u8]) -> Option<SseEvent> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line[0] == b':' {
            return None;
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "event" => self.event = value.to_string(),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = std::mem::take(&mut self.event);
        let data = std::mem::take(&mut self.data);
        if !std::mem::take(&mut self.has_data) {
            return None;
        }
        let event = if event.is_empty() {
            "message".to_string()
        } else {
            event
        };
        Some(SseEvent { event, data })
    }
}

/// Rebuilds a message from stream events.
#[derive(Default)]
pub struct StreamAccumulator {
    id: String,
    request_id: Option<String>,
    blocks: Vec<Value>,
    /// Concatenated `input_json_delta` fragments per block index, parsed at block stop.
    partial_json: Vec<Option<String>>,
    stop_reason: Option<String>,
    usage: Usage,
    stopped: bool,
}

impl StreamAccumulator {
    /// An accumulator for a response whose `request-id` header was `request_id`.
    pub fn new(request_id: Option<String>) -> StreamAccumulator {
        StreamAccumulator {
            request_id,
            ..StreamAccumulator::default()
        }
    }

    /// Whether `message_stop` has arrived.
    pub fn is_complete(&self) -> bool {
        self.stopped
    }

    /// Whether any content has arrived (a failure now loses live deltas already reported).
    pub fn has_content(&self) -> bool {
        !self.blocks.is_empty()
    }

    /// Applies one event. An `error` event becomes [`AnthropicError::Api`]; malformed JSON
    /// becomes [`AnthropicError::InvalidResponse`]; unknown events are ignored.
    pub fn apply(
        &mut self,
        event: &SseEvent,
        on_update: &mut dyn FnMut(StreamUpdate<'_>),
    ) -> Result<()> {
        let name = match event.event.as_str() {
            "" | "message" => event_type_of(&event.data)?,
            name => name.to_string(),
        };
        match name.as_str() {
            "message_start" => self.message_start(&parse(event)?),
            "content_block_start" => self.block_start(&parse(event)?),
            "content_block_delta" => self.block_delta(&parse(event)?, on_update),
            "content_block_stop" => self.block_stop(&parse(event)?),
            "message_delta" => self.message_delta(&parse(event)?),
            "message_stop" => {
                self.stopped = true;
                Ok(())
            }
            "error" => Err(self.stream_error(&parse(event)?)),
            _ => Ok(()), // ping and event types added after this client was written
        }
    }

    /// The finished message; a stream cut before `message_stop` is a connection error.
    pub fn into_message(mut self) -> Result<Message> {
        if !self.stopped {
            return Err(AnthropicError::Connection(
                "the stream ended before message_stop (connection reset mid-stream)".into(),
            ));
        }
        for index in 0..self.blocks.len() {
            self.finish_block(index)?;
        }
        Ok(Message {
            id: self.id,
            content: self.blocks,
            stop_reason: self.stop_reason,
            usage: self.usage,
            request_id: self.request_id,
        })
    }

    fn message_start(&mut self, data: &Value) -> Result<()> {
        let message = &data["message"];
        self.id = message["id"].as_str().unwrap_or_default().to_string();
        let usage = &message["usage"];
        self.usage = Usage {
            input_tokens: count(usage, "input_tokens").unwrap_or(0),
            output_tokens: count(usage, "output_tokens").unwrap_or(0),
            cache_creation_input_tokens: count(usage, "cache_creation_input_tokens").unwrap_or(0),
            cache_read_input_tokens: count(usage, "cache_read_input_tokens").unwrap_or(0),
        };
        if let Some(reason) = message["stop_reason"].as_str() {
            self.stop_reason = Some(reason.to_string());
        }
        Ok(())
    }

    fn block_start(&mut self, data: &Value) -> Result<()> {
        let index = index_of(data)?;
        let block = data["content_block"].clone();
        if !block.is_object() {
            return Err(invalid(
                "content_block_start without a content_block object",
            ));
        }
        if self.blocks.len() <= index {
            self.blocks.resize(index + 1, Value::Null);
            self.partial_json.resize(index + 1, None);
        }
        self.blocks[index] = block;
        self.partial_json[index] = None;
        Ok(())
    }

    fn block_delta(
        &mut self,
        data: &Value,
        on_update: &mut dyn FnMut(StreamUpdate<'_>),
    ) -> Result<()> {
        let index = index_of(data)?;
        let delta = &data["delta"];
        let block = self
            .blocks
            .get_mut(index)
            .filter(|block| block.is_object())
            .ok_or_else(|| invalid(format!("content_block_delta for unknown block {index}")))?;
        match delta["type"].as_str().unwrap_or_default() {
            "text_delta" => {
                let text = delta_str(delta, "text")?;
                append(block, "text", text);
                on_update(StreamUpdate::TextDelta { index, text });
            }
            "thinking_delta" => {
                let text = delta_str(delta, "thinking")?;
                append(block, "thinking", text);
                on_update(StreamUpdate::ThinkingDelta { index, text });
            }
            "signature_delta" => append(block, "signature", delta_str(delta, "signature")?),
            "input_json_delta" => {
                let fragment = delta_str(delta, "partial_json")?;
                self.partial_json[index]
                    .get_or_insert_with(String::new)
                    .push_str(fragment);
            }
            _ => {} // citations_delta and newer delta types
        }
        Ok(())
    }

    fn block_stop(&mut self, data: &Value) -> Result<()> {
        let index = index_of(data)?;
        if index >= self.blocks.len() {
            return Err(invalid(format!(
                "content_block_stop for unknown block {index}"
            )));
        }
        self.finish_block(index)
    }

    /// Parses the block's concatenated JSON fragments into its `input` (empty means `{}`).
    fn finish_block(&mut self, index: usize) -> Result<()> {
        let Some(json) = self.partial_json[index].take() else {
            return Ok(());
        };
        let input = if json.trim().is_empty() {
            Value::Object(Map::new())
        } else {
            serde_json::from_str(&json)
                .map_err(|e| invalid(format!("tool input of block {index} is not JSON: {e}")))?
        };
        if let Some(block) = self.blocks[index].as_object_mut() {
            block.insert("input".into(), input);
        }
        Ok(())
    }

    fn message_delta(&mut self, data: &Value) -> Result<()> {
        if let Some(reason) = data["delta"]["stop_reason"].as_str() {
            self.stop_reason = Some(reason.to_string());
        }
        // Usage here is cumulative: it replaces, never adds.
        let usage = &data["usage"];
        let fields = [
            ("output_tokens", &mut self.usage.output_tokens),
            ("input_tokens", &mut self.usage.input_tokens),
            (
                "cache_creation_input_tokens",
                &mut self.usage.cache_creation_input_tokens,
            ),
            (
                "cache_read_input_tokens",
                &mut self.usage.cache_read_input_tokens,
            ),
        ];
        for (name, slot) in fields {
            if let Some(n) = count(usage, name) {
                *slot = n;
            }
        }
        Ok(())
    }

    fn stream_error(&self, data: &Value) -> AnthropicError {
        let error = &data["error"];
        let error_type = error["type"].as_str().unwrap_or("api_error").to_string();
        AnthropicError::Api {
            status: status_for_error_type(&error_type),
            message: error["message"].as_str().unwrap_or_default().to_string(),
            error_type,
            request_id: data["request_id"]
                .as_str()
                .map(String::from)
                .or_else(|| self.request_id.clone()),
            retry_after: None,
            should_retry: None,
        }
    }
}

/// The HTTP status an error `type` is returned with (reference §10.4); unknown types count as
/// server errors.
pub(crate) fn status_for_error_type(error_type: &str) -> u16 {
    match error_type {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 500,
    }
}

fn parse(event: &SseEvent) -> Result<Value> {
    serde_json::from_str(&event.data)
        .map_err(|e| invalid(format!("{} event data is not JSON: {e}", event.event)))
}

fn event_type_of(data: &str) -> Result<String> {
    let value: Value =
        serde_json::from_str(data).map_err(|e| invalid(format!("event data is not JSON: {e}")))?;
    Ok(value["type"].as_str().unwrap_or_default().to_string())
}

fn index_of(data: &Value) -> Result<usize> {
    data["index"]
        .as_u64()
        .map(|i| i as usize)
        .ok_or_else(|| invalid(format!("{} without an index", data["type"])))
}

fn delta_str<'a>(delta: &'a Value, field: &str) -> Result<&'a str> {
    delta[field]
        .as_str()
        .ok_or_else(|| invalid(format!("{} without {field}", delta["type"])))
}

fn count(usage: &Value, field: &str) -> Option<i64> {
    usage.get(field).and_then(Value::as_i64)
}

fn append(block: &mut Value, field: &str, text: &str) {
    let Some(block) = block.as_object_mut() else {
        return;
    };
    match block.get_mut(field) {
        Some(Value::String(existing)) => existing.push_str(text),
        _ => {
            block.insert(field.to_string(), Value::String(text.to_string()));
        }
    }
}

fn invalid(why: impl Into<String>) -> AnthropicError {
    AnthropicError::InvalidResponse(why.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn events(parser: &mut SseParser, chunks: &[&[u8]]) -> Vec<SseEvent> {
        chunks.iter().flat_map(|chunk| parser.push(chunk)).collect()
    }

    fn sse(event: &str, data: &str) -> SseEvent {
        SseEvent {
            event: event.into(),
            data: data.into(),
        }
    }

    #[test]
    fn parser_reassembles_events_split_at_every_byte() {
        let wire = b"event: ping\ndata: {\"type\":\"ping\"}\n\nevent: message_stop\ndata: {}\n\n";
        let mut parser = SseParser::new();
        let chunks: Vec<&[u8]> = wire.chunks(1).collect();
        assert_eq!(
            events(&mut parser, &chunks),
            vec![
                sse("ping", "{\"type\":\"ping\"}"),
                sse("message_stop", "{}")
            ]
        );
    }

    #[test]
    fn parser_handles_crlf_split_between_cr_and_lf_and_bare_cr() {
        let mut parser = SseParser::new();
        let got = events(
            &mut parser,
            &[
                b"event: a\r",
                b"\ndata: 1\r\n\r",
                b"\nevent: b\rdata: 2\r\r",
            ],
        );
        assert_eq!(got, vec![sse("a", "1"), sse("b", "2")]);
    }

    #[test]
    fn parser_skips_comments_joins_data_lines_and_defaults_the_name() {
        let mut parser = SseParser::new();
        let got = parser.push(
            b": keepalive\n\nid: 7\ndata: first\ndata:second\nretry: 10\n\n: x\nevent: e\n\n",
        );
        // The last event has no data, so nothing is dispatched for it.
        assert_eq!(got, vec![sse("message", "first\nsecond")]);
    }

    #[test]
    fn parser_keeps_an_unfinished_event_until_its_blank_line() {
        let mut parser = SseParser::new();
        assert!(parser.push(b"event: x\ndata: {\"a\":").is_empty());
        assert_eq!(parser.push(b"1}\n\n"), vec![sse("x", "{\"a\":1}")]);
    }

    fn feed(acc: &mut StreamAccumulator, list: &[Value]) -> Vec<String> {
        let mut seen = Vec::new();
        for data in list {
            let name = data["type"].as_str().unwrap().to_string();
            let event = sse(&name, &data.to_string());
            acc.apply(&event, &mut |update| match update {
                StreamUpdate::TextDelta { index, text } => seen.push(format!("t{index}:{text}")),
                StreamUpdate::ThinkingDelta { index, text } => {
                    seen.push(format!("k{index}:{text}"))
                }
                StreamUpdate::Retrying { .. } => {}
            })
            .unwrap();
        }
        seen
    }

    #[test]
    fn accumulator_rebuilds_thinking_text_and_tool_use() {
        let mut acc = StreamAccumulator::new(Some("req_1".into()));
        let seen = feed(
            &mut acc,
            &[
                json!({"type":"message_start","message":{"id":"msg_1","content":[],"usage":{"input_tokens":10,"cache_read_input_tokens":3,"output_tokens":1}}}),
                json!({"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}),
                json!({"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Hm"}}),
                json!({"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"c2ln"}}),
                json!({"type":"content_block_stop","index":0}),
                json!({"type":"ping"}),
                json!({"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}),
                json!({"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Hel"}}),
                json!({"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"lo"}}),
                json!({"type":"content_block_stop","index":1}),
                json!({"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_1","name":"bash","input":{}}}),
                json!({"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"comm"}}),
                json!({"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"and\":\"ls\"}"}}),
                json!({"type":"content_block_stop","index":2}),
                json!({"type":"content_block_start","index":3,"content_block":{"type":"tool_use","id":"toolu_2","name":"computer","input":{}}}),
                json!({"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta","partial_json":""}}),
                json!({"type":"content_block_stop","index":3}),
                json!({"type":"some_future_event","x":1}),
                json!({"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":42}}),
                json!({"type":"message_stop"}),
            ],
        );
        assert_eq!(seen, vec!["k0:Hm", "t1:Hel", "t1:lo"]);
        let message = acc.into_message().unwrap();
        assert_eq!(message.id, "msg_1");
        assert_eq!(message.request_id.as_deref(), Some("req_1"));
        assert_eq!(message.stop_reason.as_deref(), Some("tool_use"));
        assert_eq!(
            message.usage,
            Usage {
                input_tokens: 10,
                output_tokens: 42,
                cache_creation_input_tokens: 0,
                cache_read_input_tokens: 3
            }
        );
        assert_eq!(
            message.content,
            vec![
                json!({"type":"thinking","thinking":"Hm","signature":"c2ln"}),
                json!({"type":"text","text":"Hello"}),
                json!({"type":"tool_use","id":"toolu_1","name":"bash","input":{"command":"ls"}}),
                json!({"type":"tool_use","id":"toolu_2","name":"computer","input":{}}),
            ]
        );
    }

    #[test]
    fn accumulator_maps_error_events_and_malformed_data() {
        let mut acc = StreamAccumulator::new(Some("req_2".into()));
        let error =
            json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}});
        let err = acc
            .apply(&sse("error", &error.to_string()), &mut |_| {})
            .unwrap_err();
        match err {
            AnthropicError::Api {
                status,
                error_type,
                request_id,
                ..
            } => {
                assert_eq!((status, error_type.as_str()), (529, "overloaded_error"));
                assert_eq!(request_id.as_deref(), Some("req_2"));
            }
            other => panic!("{other:?}"),
        }
        let err = acc
            .apply(&sse("message_start", "{not json"), &mut |_| {})
            .unwrap_err();
        assert!(matches!(err, AnthropicError::InvalidResponse(_)), "{err:?}");
    }

    #[test]
    fn accumulator_without_message_stop_is_a_connection_error() {
        let mut acc = StreamAccumulator::new(None);
        feed(
            &mut acc,
            &[json!({"type":"message_start","message":{"id":"m","usage":{}}})],
        );
        assert!(matches!(
            acc.into_message(),
            Err(AnthropicError::Connection(_))
        ));
    }

    #[test]
    fn message_delta_replaces_cumulative_usage_including_input_counts() {
        let mut acc = StreamAccumulator::new(None);
        feed(
            &mut acc,
            &[
                json!({"type":"message_start","message":{"id":"m","usage":{"input_tokens":5,"output_tokens":1}}}),
                json!({"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":7,"input_tokens":9,"cache_creation_input_tokens":2}}),
                json!({"type":"message_stop"}),
            ],
        );
        let usage = acc.into_message().unwrap().usage;
        assert_eq!(
            (
                usage.input_tokens,
                usage.output_tokens,
                usage.cache_creation_input_tokens
            ),
            (9, 7, 2)
        );
    }
}
