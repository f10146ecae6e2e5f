//! The event protocol (DESIGN §3): what a session tells its watchers.
//!
//! Every event is a JSON object with `type`, `session_id`, `timestamp` and, once stored, `seq`.
//! Deltas (`text_delta`, `thinking_delta`) are live-only: never stored, no `seq`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::store::Usage;

/// The payload of an event, tagged by `type`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    UserMessage {
        message_id: String,
        content: Value,
    },
    /// `status`: `processing`, `completed`, `cancelled` or `error`.
    Status {
        status: String,
        message: String,
    },
    Text {
        text: String,
    },
    TextDelta {
        index: usize,
        delta: String,
    },
    Thinking {
        thinking: String,
    },
    ThinkingDelta {
        index: usize,
        delta: String,
    },
    ToolUse {
        tool_name: String,
        tool_input: Value,
        tool_use_id: String,
    },
    ToolResult {
        tool_use_id: String,
        output: Option<String>,
        error: Option<String>,
        base64_image: Option<String>,
    },
    Usage {
        input_tokens: i64,
        output_tokens: i64,
        cache_creation_input_tokens: i64,
        cache_read_input_tokens: i64,
    },
    Error {
        error: String,
        details: Option<String>,
    },
}

impl EventKind {
    /// The `type` string.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::UserMessage { .. } => "user_message",
            EventKind::Status { .. } => "status",
            EventKind::Text { .. } => "text",
            EventKind::TextDelta { .. } => "text_delta",
            EventKind::Thinking { .. } => "thinking",
            EventKind::ThinkingDelta { .. } => "thinking_delta",
            EventKind::ToolUse { .. } => "tool_use",
            EventKind::ToolResult { .. } => "tool_result",
            EventKind::Usage { .. } => "usage",
            EventKind::Error { .. } => "error",
        }
    }

    /// Whether the event is live-only (not stored, no `seq`).
    pub fn is_live_only(&self) -> bool {
        matches!(
            self,
            EventKind::TextDelta { .. } | EventKind::ThinkingDelta { .. }
        )
    }

    pub fn status(status: &str, message: impl Into<String>) -> EventKind {
        EventKind::Status {
            status: status.to_string(),
            message: message.into(),
        }
    }

    pub fn error(error: impl Into<String>, details: Option<String>) -> EventKind {
        EventKind::Error {
            error: error.into(),
            details,
        }
    }

    pub fn usage(usage: &Usage) -> EventKind {
        EventKind::Usage {
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            cache_creation_input_tokens: usage.cache_creation_input_tokens,
            cache_read_input_tokens: usage.cache_read_input_tokens,
        }
    }

    /// The JSON object stored in the event log: the kind's fields plus `session_id` and
    /// `timestamp` (no `seq`; that is a column).
    pub fn to_payload(&self, session_id: &str, timestamp: &str) -> Value {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut value {
            map.insert("session_id".into(), Value::String(session_id.to_string()));
            map.insert("timestamp".into(), Value::String(timestamp.to_string()));
        }
        value
    }
}

/// An event as delivered to subscribers: serialised once, shared by every subscriber.
#[derive(Clone, Debug, PartialEq)]
pub struct Published {
    /// `None` for live-only events.
    pub seq: Option<i64>,
    /// The complete event JSON (with `seq` when stored).
    pub json: Arc<str>,
}

impl Published {
    /// Builds the wire form from a stored payload and its `seq`.
    pub fn new(seq: Option<i64>, mut payload: Value) -> Published {
        if let (Some(seq), Value::Object(map)) = (seq, &mut payload) {
            map.insert("seq".into(), Value::from(seq));
        }
        Published {
            seq,
            json: Arc::from(payload.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn payload_carries_type_session_and_timestamp() {
        let kind = EventKind::ToolUse {
            tool_name: "bash".into(),
            tool_input: json!({"command": "ls"}),
            tool_use_id: "toolu_1".into(),
        };
        let payload = kind.to_payload("s1", "2025-01-01T00:00:00.000Z");
        assert_eq!(
            payload,
            json!({"type": "tool_use", "tool_name": "bash", "tool_input": {"command": "ls"},
                   "tool_use_id": "toolu_1", "session_id": "s1",
                   "timestamp": "2025-01-01T00:00:00.000Z"})
        );
        let published = Published::new(Some(7), payload);
        let back: Value = serde_json::from_str(&published.json).unwrap();
        assert_eq!(back["seq"], 7);
        assert_eq!(serde_json::from_value::<EventKind>(back).unwrap(), kind);
    }

    #[test]
    fn deltas_are_live_only() {
        assert!(
            EventKind::TextDelta {
                index: 0,
                delta: "a".into()
            }
            .is_live_only()
        );
        assert!(!EventKind::Text { text: "a".into() }.is_live_only());
    }
}
