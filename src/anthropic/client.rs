//! The Messages API client over ureq: streaming, retries, cancellation (reference §10).
//!
//! Each attempt builds its own ureq `Agent` and registers a cancel hook that shuts it down:
//! `Agent::shutdown` interrupts a blocked read at once but also refuses every later request on
//! that agent (and its clones), so an agent cannot outlive its attempt.
//!
//! Retry choices on top of the SDK policy (`AnthropicError::is_retryable`):
//! - an `error` event inside a 200 stream is retried like the HTTP error it stands for;
//! - a stream cut before `message_stop` (reset or read timeout mid-stream) is retried as a
//!   connection error, unlike the SDKs. Nothing of a failed attempt is kept: the caller stores
//!   blocks only from the returned [`Message`], and the live deltas it already showed are
//!   superseded by the next attempt, announced by [`StreamUpdate::Retrying`].

use std::io::{self, Read};
use std::time::{Instant, SystemTime};

use serde_json::Value;
use ureq::Agent;
use ureq::http::HeaderMap;

use super::retry::{self, Jitter};
use super::stream::{SseParser, StreamAccumulator};
use super::{AnthropicError, Message, MessageRequest, Result, StreamUpdate};
use crate::cancel::CancelToken;
use crate::config::ModelConfig;
use crate::metrics::Metrics;
use crate::store::Usage;

/// The API version every request pins.
const API_VERSION: &str = "2023-06-01";
/// The most of an error body (or unexpected non-SSE body) read.
const MAX_ERROR_BODY: u64 = 1 << 20;
/// How much of a non-JSON error body is quoted in the error message.
const BODY_SNIPPET: usize = 300;

/// A blocking Messages API client. Cheap to clone; one per session worker.
#[derive(Clone)]
pub struct Client {
    config: ModelConfig,
    metrics: Option<Metrics>,
}

impl Client {
    pub fn new(config: &ModelConfig) -> Client {
        Client {
            config: config.clone(),
            metrics: None,
        }
    }

    /// The client, recording calls, attempts, retries and tokens into `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Client {
        self.metrics = Some(metrics);
        self
    }

    /// Sends `request` streamed, reporting deltas and retries to `on_update`; retries per the
    /// SDK policy; returns `Cancelled` promptly once `cancel` fires.
    pub fn create_message(
        &self,
        request: &MessageRequest,
        cancel: &CancelToken,
        on_update: &mut dyn FnMut(StreamUpdate<'_>),
    ) -> Result<Message> {
        let started = Instant::now();
        let result = self.call_with_retries(request, cancel, on_update);
        if let Some(metrics) = &self.metrics {
            let outcome = match &result {
                Ok(message) => {
                    metrics.tokens(&message.usage);
                    "ok"
                }
                Err(AnthropicError::Cancelled) => "cancelled",
                Err(_) => "error",
            };
            metrics.model_call(outcome, started.elapsed());
        }
        result
    }

    fn call_with_retries(
        &self,
        request: &MessageRequest,
        cancel: &CancelToken,
        on_update: &mut dyn FnMut(StreamUpdate<'_>),
    ) -> Result<Message> {
        if self.config.api_key.is_empty() {
            return Err(AnthropicError::MissingApiKey);
        }
        let body = request_body(request)?;
        let max_retries = self.config.max_retries;
        let mut jitter = Jitter::from_time();
        let mut retries = 0;
        loop {
            if cancel.is_cancelled() {
                return Err(AnthropicError::Cancelled);
            }
            let attempt = self.attempt(request, &body, retries, cancel, on_update);
            if let Some(metrics) = &self.metrics {
                metrics.model_attempt(attempt_outcome(&attempt, cancel));
            }
            let error = match attempt {
                Ok(message) => return Ok(message),
                Err(_) if cancel.is_cancelled() => return Err(AnthropicError::Cancelled),
                Err(error) => error,
            };
            if !error.is_retryable() || retries >= max_retries {
                log::debug!(
                    "Messages API call failed after {} attempt(s): {error}",
                    retries + 1
                );
                return Err(error);
            }
            let delay = retry::delay_for(&error, retries, &mut jitter);
            log::debug!(
                "Messages API attempt {} failed ({error}); retrying in {delay:?}",
                retries + 1
            );
            on_update(StreamUpdate::Retrying {
                attempt: retries + 1,
                max_retries,
                delay,
                error: &error,
            });
            if let Some(metrics) = &self.metrics {
                metrics.model_retry();
            }
            if !cancel.sleep(delay) {
                return Err(AnthropicError::Cancelled);
            }
            retries += 1;
        }
    }

    /// One HTTP exchange on a fresh agent that `cancel` can shut down.
    fn attempt(
        &self,
        request: &MessageRequest,
        body: &[u8],
        retries: u32,
        cancel: &CancelToken,
        on_update: &mut dyn FnMut(StreamUpdate<'_>),
    ) -> Result<Message> {
        let agent = self.agent();
        let _hook = {
            let agent = agent.clone();
            cancel.on_cancel(move || agent.clone().shutdown())
        };
        let url = format!("{}/v1/messages", self.config.base_url);
        let mut builder = agent
            .post(&url)
            .header("x-api-key", self.config.api_key.expose())
            .header("anthropic-version", API_VERSION)
            .header("content-type", "application/json")
            .header("accept", "text/event-stream")
            .header("x-stainless-retry-count", retries.to_string());
        if !request.betas.is_empty() {
            builder = builder.header("anthropic-beta", request.betas.join(","));
        }
        log::debug!("POST {url} (retry {retries}, {} bytes)", body.len());
        let response = builder.send(body).map_err(from_ureq)?;
        let status = response.status().as_u16();
        let meta = ResponseMeta::from_headers(response.headers());
        let is_sse = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"));
        let body = response.into_body();
        match status {
            200..=299 if is_sse => read_stream(body, meta.request_id, on_update),
            200..=299 => read_whole_message(body, meta.request_id),
            _ => Err(api_error(status, meta, body)),
        }
    }

    fn agent(&self) -> Agent {
        Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(self.config.connect_timeout))
            .timeout_per_read(Some(self.config.read_timeout))
            .timeout_per_write(Some(self.config.read_timeout))
            .max_redirects(0)
            .build()
            .new_agent()
    }
}

/// An attempt's result as a bounded metrics label.
fn attempt_outcome(result: &Result<Message>, cancel: &CancelToken) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(_) if cancel.is_cancelled() => "cancelled",
        Err(AnthropicError::Api { status: 429, .. }) => "rate_limited",
        Err(AnthropicError::Api { status: 529, .. }) => "overloaded",
        Err(AnthropicError::Api { status: 500.., .. }) => "server_error",
        Err(AnthropicError::Api { .. }) => "client_error",
        Err(AnthropicError::Connection(_)) => "connection_error",
        Err(AnthropicError::Timeout(_)) => "timeout",
        Err(AnthropicError::InvalidResponse(_)) => "invalid_response",
        Err(AnthropicError::Cancelled) => "cancelled",
        Err(AnthropicError::MissingApiKey) => "other",
    }
}

/// The request body with `"stream": true`, serialised once for every attempt.
fn request_body(request: &MessageRequest) -> Result<Vec<u8>> {
    let Some(fields) = request.body.as_object() else {
        return Err(AnthropicError::InvalidResponse(
            "the request body must be a JSON object".into(),
        ));
    };
    serde_json::to_vec(&Streamed(fields))
        .map_err(|e| AnthropicError::InvalidResponse(e.to_string()))
}

/// A request body's fields with `"stream": true` set, serialized without copying the body
/// (which holds the whole history): the same bytes as inserting the field into a clone.
struct Streamed<'a>(&'a serde_json::Map<String, Value>);

impl serde::Serialize for Streamed<'_> {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        const STREAM: &str = "stream";
        let mut map = serializer.serialize_map(None)?;
        let mut written = false;
        for (key, value) in self.0 {
            // The map keeps its keys sorted: `stream` goes where an insert would put it.
            if !written && key.as_str() >= STREAM {
                map.serialize_entry(STREAM, &true)?;
                written = true;
            }
            if key != STREAM {
                map.serialize_entry(key, value)?;
            }
        }
        if !written {
            map.serialize_entry(STREAM, &true)?;
        }
        map.end()
    }
}

/// Parses the SSE body as it arrives.
fn read_stream(
    body: ureq::Body,
    request_id: Option<String>,
    on_update: &mut dyn FnMut(StreamUpdate<'_>),
) -> Result<Message> {
    let mut reader = body.into_reader();
    let mut parser = SseParser::new();
    let mut message = StreamAccumulator::new(request_id);
    let mut buf = vec![0u8; 16 * 1024];
    while !message.is_complete() {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(from_io(e)),
        };
        for event in parser.push(&buf[..n]) {
            message.apply(&event, on_update)?;
        }
    }
    message.into_message()
}

/// A 2xx answer that is not an event stream: accept a whole (non-streamed) message, else fail.
fn read_whole_message(body: ureq::Body, request_id: Option<String>) -> Result<Message> {
    let text = read_limited(body).map_err(from_ureq)?;
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if value["type"] != "message" {
        return Err(AnthropicError::InvalidResponse(format!(
            "expected an event stream, got: {}",
            snippet(&text)
        )));
    }
    let usage = &value["usage"];
    let count = |field: &str| usage[field].as_i64().unwrap_or(0);
    Ok(Message {
        id: value["id"].as_str().unwrap_or_default().to_string(),
        content: value["content"].as_array().cloned().unwrap_or_default(),
        stop_reason: value["stop_reason"].as_str().map(String::from),
        usage: Usage {
            input_tokens: count("input_tokens"),
            output_tokens: count("output_tokens"),
            cache_creation_input_tokens: count("cache_creation_input_tokens"),
            cache_read_input_tokens: count("cache_read_input_tokens"),
        },
        request_id,
    })
}

/// The headers of a response that matter to errors and retries.
struct ResponseMeta {
    request_id: Option<String>,
    retry_after: Option<std::time::Duration>,
    should_retry: Option<bool>,
}

impl ResponseMeta {
    fn from_headers(headers: &HeaderMap) -> ResponseMeta {
        let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        ResponseMeta {
            request_id: get("request-id").map(String::from),
            retry_after: retry::parse_retry_after(
                get("retry-after-ms"),
                get("retry-after"),
                SystemTime::now(),
            ),
            should_retry: match get("x-should-retry").map(str::trim) {
                Some("true") => Some(true),
                Some("false") => Some(false),
                _ => None,
            },
        }
    }
}

/// An HTTP error answer: `{"type":"error","error":{"type","message"},"request_id"}`, or
/// whatever a proxy put there instead.
fn api_error(status: u16, meta: ResponseMeta, body: ureq::Body) -> AnthropicError {
    let text = read_limited(body).unwrap_or_default();
    let parsed: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let error = &parsed["error"];
    let message = match error["message"].as_str() {
        Some(message) => message.to_string(),
        None if text.trim().is_empty() => format!("HTTP {status} with an empty body"),
        None => snippet(&text),
    };
    AnthropicError::Api {
        status,
        error_type: error["type"]
            .as_str()
            .unwrap_or_else(|| error_type_for_status(status))
            .to_string(),
        message,
        request_id: parsed["request_id"]
            .as_str()
            .map(String::from)
            .or(meta.request_id),
        retry_after: meta.retry_after,
        should_retry: meta.should_retry,
    }
}

/// The error `type` the API uses for `status` (reference §10.4), for bodies that lack one.
fn error_type_for_status(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        500.. => "api_error",
        _ => "invalid_request_error",
    }
}

fn read_limited(mut body: ureq::Body) -> std::result::Result<String, ureq::Error> {
    body.with_config().limit(MAX_ERROR_BODY).read_to_string()
}

fn snippet(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(BODY_SNIPPET) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// Maps a transport error: timeouts and broken connections are retryable, a request that
/// cannot be built is not.
fn from_ureq(error: ureq::Error) -> AnthropicError {
    match error {
        ureq::Error::Timeout(which) => {
            AnthropicError::Timeout(format!("no data within the {which} timeout"))
        }
        ureq::Error::Io(e) => from_io(e),
        ureq::Error::Http(_) | ureq::Error::BadUri(_) | ureq::Error::InvalidProxyUrl => {
            AnthropicError::InvalidResponse(format!("cannot send the request: {error}"))
        }
        other => AnthropicError::Connection(other.to_string()),
    }
}

/// Maps a body read error, which may wrap a `ureq::Error` (a timeout inside the body).
fn from_io(error: io::Error) -> AnthropicError {
    if error
        .get_ref()
        .is_some_and(|inner| inner.is::<ureq::Error>())
    {
        return from_ureq(ureq::Error::from(error));
    }
    match error.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            AnthropicError::Timeout(error.to_string())
        }
        _ => AnthropicError::Connection(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn body_gets_stream_true_and_non_objects_are_refused() {
        let request = MessageRequest {
            body: json!({"model":"m","max_tokens":5,"stream":false}),
            betas: vec![],
        };
        let body: Value = serde_json::from_slice(&request_body(&request).unwrap()).unwrap();
        assert_eq!(body, json!({"model":"m","max_tokens":5,"stream":true}));
        let bad = MessageRequest {
            body: json!([1]),
            betas: vec![],
        };
        assert!(request_body(&bad).is_err());
    }

    #[test]
    fn streamed_body_bytes_match_inserting_the_field_into_a_copy() {
        for body in [
            json!({"max_tokens": 5, "messages": [{"role": "user", "content": "hi"}],
                   "model": "m", "system": [], "tools": [], "thinking": {}}),
            json!({"a": 1}),
            json!({"z": 1}),
            json!({}),
            json!({"stream": false, "x": [1, 2]}),
        ] {
            let mut expected = body.clone();
            expected["stream"] = Value::Bool(true);
            let request = MessageRequest {
                body,
                betas: vec![],
            };
            assert_eq!(
                request_body(&request).unwrap(),
                serde_json::to_vec(&expected).unwrap()
            );
        }
    }

    #[test]
    fn statuses_without_a_typed_body_get_the_api_type() {
        assert_eq!(error_type_for_status(529), "overloaded_error");
        assert_eq!(error_type_for_status(503), "api_error");
        assert_eq!(error_type_for_status(422), "invalid_request_error");
    }

    #[test]
    fn a_wrapped_io_error_is_not_recursed_forever() {
        let e = io::Error::new(io::ErrorKind::ConnectionReset, "reset");
        assert!(matches!(from_io(e), AnthropicError::Connection(_)));
        let timed_out = io::Error::other(ureq::Error::Timeout(ureq::Timeout::PerRead));
        assert!(matches!(from_io(timed_out), AnthropicError::Timeout(_)));
    }
}
