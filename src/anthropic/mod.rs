//! The blocking Messages API client (reference §10): streamed requests parsed incrementally,
//! the SDK retry policy, cancellation, and one error enum.
//!
//! - `client.rs`: [`Client`], the HTTP exchange over ureq, retries and back-off.
//! - `retry.rs`: retry delays (server-requested waits, back-off with jitter).
//! - `stream.rs`: the incremental SSE parser and the accumulator that rebuilds a [`Message`]
//!   from `message_start` / `content_block_*` / `message_delta` events.

mod client;
mod retry;
mod stream;

use std::fmt;
use std::time::Duration;

use serde_json::Value;

use crate::store::Usage;

pub use self::client::Client;
pub use self::stream::{SseEvent, SseParser, StreamAccumulator};

/// Result alias of the Messages API layer.
pub type Result<T> = std::result::Result<T, AnthropicError>;

/// One request: the JSON body (without `stream`; the client adds `"stream": true`) and the
/// `anthropic-beta` flags, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct MessageRequest {
    pub body: Value,
    pub betas: Vec<String>,
}

/// A complete assistant message, rebuilt from the stream.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub id: String,
    /// Content blocks as the API sent them (tool_use `input` parsed from its JSON fragments).
    pub content: Vec<Value>,
    pub stop_reason: Option<String>,
    pub usage: Usage,
    /// The `request-id` response header.
    pub request_id: Option<String>,
}

/// Live progress reported while a call runs.
#[derive(Debug)]
pub enum StreamUpdate<'a> {
    /// A fragment of the text block at `index`.
    TextDelta { index: usize, text: &'a str },
    /// A fragment of the thinking block at `index`.
    ThinkingDelta { index: usize, text: &'a str },
    /// Attempt `attempt` failed with `error`; the next starts after `delay`.
    Retrying {
        attempt: u32,
        max_retries: u32,
        delay: Duration,
        error: &'a AnthropicError,
    },
}

/// What can go wrong talking to the Messages API.
#[derive(Debug)]
pub enum AnthropicError {
    /// No API key is configured.
    MissingApiKey,
    /// The API answered with an error: an HTTP status ≥ 400 with its error body, or an `error`
    /// event inside a 200 stream (`status` is then the status the error type corresponds to).
    Api {
        status: u16,
        error_type: String,
        message: String,
        request_id: Option<String>,
        /// Parsed `retry-after-ms` / `retry-after`, when present.
        retry_after: Option<Duration>,
        /// The `x-should-retry` header, when present.
        should_retry: Option<bool>,
    },
    /// The connection failed or broke.
    Connection(String),
    /// No data arrived within the read timeout.
    Timeout(String),
    /// The response was not valid JSON / SSE of the expected shape.
    InvalidResponse(String),
    /// The call was cancelled.
    Cancelled,
}

impl AnthropicError {
    /// Whether the SDK policy retries this error (reference §10.5).
    pub fn is_retryable(&self) -> bool {
        match self {
            AnthropicError::Api {
                status,
                should_retry,
                ..
            } => match should_retry {
                Some(explicit) => *explicit,
                None => matches!(status, 408 | 409 | 429) || *status >= 500,
            },
            AnthropicError::Connection(_) | AnthropicError::Timeout(_) => true,
            AnthropicError::MissingApiKey
            | AnthropicError::InvalidResponse(_)
            | AnthropicError::Cancelled => false,
        }
    }

    /// A short code for clients (`overloaded_error`, `connection_error`, …).
    pub fn kind(&self) -> &str {
        match self {
            AnthropicError::MissingApiKey => "missing_api_key",
            AnthropicError::Api { error_type, .. } => error_type,
            AnthropicError::Connection(_) => "connection_error",
            AnthropicError::Timeout(_) => "timeout_error",
            AnthropicError::InvalidResponse(_) => "invalid_response",
            AnthropicError::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for AnthropicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnthropicError::MissingApiKey => f.write_str(
                "no Anthropic API key is configured: set ANTHROPIC_API_KEY (or --anthropic-api-key) and restart",
            ),
            AnthropicError::Api { status, error_type, message, request_id, .. } => {
                write!(f, "Messages API error {status} {error_type}: {message}")?;
                match request_id {
                    Some(id) => write!(f, " (request-id {id})"),
                    None => Ok(()),
                }
            }
            AnthropicError::Connection(why) => write!(f, "connection to the Messages API failed: {why}"),
            AnthropicError::Timeout(why) => write!(f, "the Messages API timed out: {why}"),
            AnthropicError::InvalidResponse(why) => write!(f, "invalid response from the Messages API: {why}"),
            AnthropicError::Cancelled => f.write_str("cancelled"),
        }
    }
}

impl std::error::Error for AnthropicError {}
