//! One turn of the sampling loop (reference §3.3 with its [REC] improvements): call the model
//! (streamed), store and announce the assistant's blocks, run each tool in order, store the
//! results, and repeat until the model stops asking for tools.
//!
//! Every step is persisted before it is announced, so a crash at any point leaves a history
//! that [`heal`] can make valid again. Stop reasons are handled explicitly, the number of model
//! calls per turn is capped, and cancellation is checked between every step (the model call
//! and the tools also watch the token while they block).

use serde_json::{Value, json};

use super::prompt::{self, RequestInput};
use crate::anthropic::{AnthropicError, Client, Message, StreamUpdate};
use crate::cancel::CancelToken;
use crate::session::{EventKind, EventSink, SessionParams};
use crate::store::{Store, StoreError, Usage};
use crate::tools::{ToolCollection, ToolResult};
use crate::util::time::DateTime;

/// The text of the error result given to a tool call that was interrupted.
pub const INTERRUPTED: &str = "human stopped or interrupted tool execution";

/// How a turn ended.
#[derive(Debug, PartialEq, Eq)]
pub enum TurnOutcome {
    /// The model finished (or there was nothing to do).
    Completed,
    /// The turn was cancelled.
    Cancelled,
    /// The turn failed; an `error` event says why. The string is the status message.
    Failed(String),
    /// The store failed mid-turn (database down, disk full): the turn is not over, it is to
    /// be resumed once the store works again. The string says what failed.
    StorageFailed(String),
}

/// Everything one turn needs; the worker owns all of it.
pub struct Turn<'a> {
    pub session_id: &'a str,
    pub params: &'a SessionParams,
    pub store: &'a dyn Store,
    pub events: &'a EventSink,
    pub client: &'a Client,
    pub tools: &'a mut ToolCollection,
    pub cancel: &'a CancelToken,
    pub max_iterations: u32,
    pub display_num: Option<u32>,
}

/// Why a step stopped the loop early.
enum Stop {
    Cancelled,
    Failed(String),
    Storage(String),
}

impl From<StoreError> for Stop {
    fn from(err: StoreError) -> Stop {
        Stop::Storage(format!("storage failed: {err}"))
    }
}

impl Turn<'_> {
    /// Runs the turn to its end. The conversation must end with a user message (or an
    /// interrupted assistant turn, which is healed first).
    pub fn run(&mut self) -> TurnOutcome {
        let mut usage = Usage::default();
        let result = self.run_loop(&mut usage);
        if usage != Usage::default() {
            self.emit(EventKind::usage(&usage));
        }
        match result {
            Ok(()) => TurnOutcome::Completed,
            Err(Stop::Cancelled) => TurnOutcome::Cancelled,
            Err(Stop::Failed(message)) => TurnOutcome::Failed(message),
            Err(Stop::Storage(message)) => TurnOutcome::StorageFailed(message),
        }
    }

    fn run_loop(&mut self, usage: &mut Usage) -> Result<(), Stop> {
        let mut history = self.load_history()?;
        if !self.needs_model_call(&history) {
            return Ok(());
        }
        for _ in 0..self.max_iterations {
            self.check_cancel()?;
            let message = self.call_model(&history)?;
            add_usage(usage, &message.usage);
            self.store.add_usage(self.session_id, &message.usage)?;
            let content = normalize_blocks(message.content);
            if content.is_empty() {
                return Ok(());
            }
            self.store_message("assistant", &content, &mut history)?;
            self.announce_blocks(&content);
            let results = self.run_tools(&content);
            if !results.is_empty() {
                self.store_message("user", &results, &mut history)?;
            }
            self.check_cancel()?;
            if !self.should_continue(message.stop_reason.as_deref(), !results.is_empty()) {
                return Ok(());
            }
        }
        let error = format!(
            "the turn reached the limit of {} model calls",
            self.max_iterations
        );
        self.emit(EventKind::error(
            error.clone(),
            Some("raise MAX_ITERATIONS to allow longer turns".into()),
        ));
        Err(Stop::Failed(error))
    }

    /// Loads the conversation as `{role, content}` values, healing an interrupted tool turn.
    fn load_history(&mut self) -> Result<Vec<Value>, Stop> {
        let records = self.store.conversation(self.session_id)?;
        let mut history: Vec<Value> = records
            .into_iter()
            .map(|r| json!({"role": r.role, "content": r.content}))
            .collect();
        let unanswered = history.last().map(unanswered_tool_uses).unwrap_or_default();
        if !unanswered.is_empty() {
            let results: Vec<Value> = unanswered.iter().map(|id| interrupted_result(id)).collect();
            self.store_message("user", &results, &mut history)?;
        }
        Ok(history)
    }

    /// A turn needs a model call unless the conversation already ends with the model's answer.
    fn needs_model_call(&self, history: &[Value]) -> bool {
        history.last().is_some_and(|m| m["role"] == "user")
    }

    fn check_cancel(&self) -> Result<(), Stop> {
        if self.cancel.is_cancelled() {
            Err(Stop::Cancelled)
        } else {
            Ok(())
        }
    }

    fn call_model(&self, history: &[Value]) -> Result<Message, Stop> {
        let request = prompt::build_request(RequestInput {
            params: self.params,
            history,
            tools: self.tools.to_params(),
            display_num: self.display_num,
            date: DateTime::now(),
        });
        let mut on_update = |update: StreamUpdate<'_>| self.on_stream_update(update);
        match self
            .client
            .create_message(&request, self.cancel, &mut on_update)
        {
            Ok(message) => Ok(message),
            Err(AnthropicError::Cancelled) => Err(Stop::Cancelled),
            Err(_) if self.cancel.is_cancelled() => Err(Stop::Cancelled),
            Err(err) => {
                self.emit(EventKind::error(
                    err.to_string(),
                    Some(err.kind().to_string()),
                ));
                Err(Stop::Failed(format!(
                    "the model call failed: {}",
                    err.kind()
                )))
            }
        }
    }

    fn on_stream_update(&self, update: StreamUpdate<'_>) {
        let kind = match update {
            StreamUpdate::TextDelta { index, text } => EventKind::TextDelta {
                index,
                delta: text.to_string(),
            },
            StreamUpdate::ThinkingDelta { index, text } => EventKind::ThinkingDelta {
                index,
                delta: text.to_string(),
            },
            StreamUpdate::Retrying {
                attempt,
                max_retries,
                delay,
                error,
            } => EventKind::status(
                "processing",
                format!(
                    "retry {attempt} of {max_retries} in {:.1} s after: {error}",
                    delay.as_secs_f64()
                ),
            ),
        };
        self.emit(kind);
    }

    fn store_message(
        &self,
        role: &str,
        content: &[Value],
        history: &mut Vec<Value>,
    ) -> Result<(), Stop> {
        let content = Value::Array(content.to_vec());
        let id = uuid::Uuid::new_v4().to_string();
        self.store
            .insert_message(self.session_id, &id, role, &content, false)?;
        history.push(json!({"role": role, "content": content}));
        Ok(())
    }

    fn announce_blocks(&self, content: &[Value]) {
        for block in content {
            let kind = match block["type"].as_str() {
                Some("text") => EventKind::Text {
                    text: str_field(block, "text"),
                },
                Some("thinking") => EventKind::Thinking {
                    thinking: str_field(block, "thinking"),
                },
                Some("tool_use") => EventKind::ToolUse {
                    tool_name: str_field(block, "name"),
                    tool_input: block["input"].clone(),
                    tool_use_id: str_field(block, "id"),
                },
                _ => continue,
            };
            self.emit(kind);
        }
    }

    /// Runs every tool_use block in order. After a cancel, the remaining calls are answered
    /// with the interruption error so the stored turn stays valid for the API.
    fn run_tools(&mut self, content: &[Value]) -> Vec<Value> {
        let tool_uses = content.iter().filter(|b| b["type"] == "tool_use");
        let mut results = Vec::new();
        for block in tool_uses {
            let id = str_field(block, "id");
            let result = if self.cancel.is_cancelled() {
                ToolResult::error(INTERRUPTED)
            } else {
                let name = str_field(block, "name");
                let result = self.tools.run(&name, &block["input"], self.cancel);
                if self.cancel.is_cancelled() && result.error.is_none() {
                    ToolResult::error(INTERRUPTED)
                } else {
                    result
                }
            };
            self.emit(EventKind::ToolResult {
                tool_use_id: id.clone(),
                output: result.output.clone(),
                error: result.error.clone(),
                base64_image: result.base64_image.clone(),
            });
            results.push(result.to_api_block(&id));
        }
        results
    }

    /// Explicit stop-reason handling ([REC] §3.3).
    fn should_continue(&self, stop_reason: Option<&str>, ran_tools: bool) -> bool {
        match stop_reason {
            Some("pause_turn") => true,
            Some("refusal") => {
                self.emit(EventKind::error(
                    "the model declined to continue (stop_reason: refusal)",
                    None,
                ));
                false
            }
            Some("max_tokens") if !ran_tools => {
                self.emit(EventKind::error(
                    "the reply was cut off at max_tokens",
                    Some("raise max_tokens for this session to allow longer replies".into()),
                ));
                false
            }
            _ => ran_tools,
        }
    }

    fn emit(&self, kind: EventKind) {
        if let Err(err) = self.events.emit(self.session_id, kind) {
            log::warn!(
                "session {}: could not store an event: {err}",
                self.session_id
            );
        }
    }
}

fn str_field(block: &Value, field: &str) -> String {
    block[field].as_str().unwrap_or_default().to_string()
}

fn add_usage(total: &mut Usage, call: &Usage) {
    total.input_tokens += call.input_tokens;
    total.output_tokens += call.output_tokens;
    total.cache_creation_input_tokens += call.cache_creation_input_tokens;
    total.cache_read_input_tokens += call.cache_read_input_tokens;
}

/// The error tool_result given to a call that never finished.
pub fn interrupted_result(tool_use_id: &str) -> Value {
    ToolResult::error(INTERRUPTED).to_api_block(tool_use_id)
}

/// The ids of an assistant message's tool_use blocks (all of them are unanswered when the
/// message is the last of the conversation).
pub fn unanswered_tool_uses(message: &Value) -> Vec<String> {
    if message["role"] != "assistant" {
        return Vec::new();
    }
    let blocks = message["content"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    blocks
        .iter()
        .filter(|b| b["type"] == "tool_use")
        .map(|b| str_field(b, "id"))
        .collect()
}

/// Response blocks → history blocks (reference §3.7, [REC]): empty text is dropped, text loses
/// its response-only `citations` field, everything else is kept byte-faithful (thinking
/// signatures, redacted thinking, tool_use input).
pub fn normalize_blocks(blocks: Vec<Value>) -> Vec<Value> {
    blocks
        .into_iter()
        .filter_map(|block| match block["type"].as_str() {
            Some("text") => {
                let text = block["text"].as_str().unwrap_or_default();
                (!text.is_empty()).then(|| json!({"type": "text", "text": text}))
            }
            _ => Some(block),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_text_is_dropped_and_thinking_kept_verbatim() {
        let thinking = json!({"type": "thinking", "thinking": "hmm", "signature": "sig=="});
        let blocks = vec![
            json!({"type": "text", "text": "", "citations": null}),
            thinking.clone(),
            json!({"type": "text", "text": "hi", "citations": null}),
        ];
        assert_eq!(
            normalize_blocks(blocks),
            vec![thinking, json!({"type": "text", "text": "hi"})]
        );
    }

    #[test]
    fn every_tool_use_of_a_trailing_assistant_turn_is_unanswered() {
        let message = json!({"role": "assistant", "content": [
            {"type": "text", "text": "x"},
            {"type": "tool_use", "id": "a", "name": "bash", "input": {}},
            {"type": "tool_use", "id": "b", "name": "bash", "input": {}}]});
        assert_eq!(unanswered_tool_uses(&message), vec!["a", "b"]);
        assert!(unanswered_tool_uses(&json!({"role": "user", "content": []})).is_empty());
        let healed = interrupted_result("a");
        assert_eq!(healed["is_error"], true);
        assert_eq!(healed["content"], INTERRUPTED);
    }
}
