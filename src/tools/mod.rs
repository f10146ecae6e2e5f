//! The tools the model can call, per tool version (reference §2, §3.8, §3.9, §6).
//!
//! A session's worker owns one [`ToolCollection`] for the session's life (the bash process
//! survives between turns). Every failure is data: a [`ToolResult`] with `error` set, which
//! becomes an `is_error` tool_result for the model; nothing a tool does aborts the loop.

mod bash;
mod computer;
mod edit;
mod version;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cancel::CancelToken;
use crate::desktop::DesktopAccess;
use crate::metrics::Metrics;

pub use self::bash::BashTool;
pub use self::computer::ComputerTool;
pub use self::edit::EditTool;
pub use self::version::ToolVersion;

/// Longest tool output sent to the model before it is clipped (reference §6).
pub const MAX_RESPONSE_LEN: usize = 16_000;

/// Appended to clipped output (reference §6, exact text).
pub const TRUNCATED_NOTE: &str = "<response clipped><NOTE>To save on context only part of this file has been shown to you. You should retry this tool after you have searched inside the file with `grep -n` in order to find the line numbers of what you are looking for.</NOTE>";

/// Clips `content` to `limit` characters (not bytes), appending [`TRUNCATED_NOTE`].
pub fn maybe_truncate(content: &str, limit: usize) -> String {
    match content.char_indices().nth(limit) {
        Some((byte, _)) => format!("{}{}", &content[..byte], TRUNCATED_NOTE),
        None => content.to_string(),
    }
}

/// What a tool call produced (reference §3.9). Empty strings count as absent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ToolResult {
    pub output: Option<String>,
    pub error: Option<String>,
    /// A base64 PNG.
    pub base64_image: Option<String>,
    pub system: Option<String>,
}

impl ToolResult {
    pub fn output(text: impl Into<String>) -> ToolResult {
        ToolResult {
            output: Some(text.into()),
            ..ToolResult::default()
        }
    }

    pub fn error(text: impl Into<String>) -> ToolResult {
        ToolResult {
            error: Some(text.into()),
            ..ToolResult::default()
        }
    }

    fn field(value: &Option<String>) -> Option<&str> {
        value.as_deref().filter(|s| !s.is_empty())
    }

    /// The API `tool_result` block (reference §3.9). An error sends only the (system-prefixed)
    /// error string. [REC] A result with only `system` (a bash restart) sends it as text, so
    /// the model is told what happened instead of receiving an empty list.
    pub fn to_api_block(&self, tool_use_id: &str) -> Value {
        let system = Self::field(&self.system);
        let prefix = system
            .map(|s| format!("<system>{s}</system>\n"))
            .unwrap_or_default();
        if let Some(error) = Self::field(&self.error) {
            return json!({"type": "tool_result", "tool_use_id": tool_use_id,
                          "content": format!("{prefix}{error}"), "is_error": true});
        }
        let mut content = Vec::new();
        match (Self::field(&self.output), system) {
            (Some(output), _) => {
                content.push(json!({"type": "text", "text": format!("{prefix}{output}")}))
            }
            (None, Some(system)) => {
                content.push(json!({"type": "text", "text": format!("<system>{system}</system>")}))
            }
            (None, None) => {}
        }
        if let Some(image) = Self::field(&self.base64_image) {
            content.push(json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": image}}));
        }
        json!({"type": "tool_result", "tool_use_id": tool_use_id, "content": content, "is_error": false})
    }
}

/// One tool the model can call.
pub trait Tool: Send {
    /// The name the model calls it by (`computer`, `bash`, `str_replace_editor`, …).
    fn name(&self) -> &str;
    /// The definition sent in the request's `tools` array.
    fn to_params(&self) -> Value;
    /// Runs one call. `input` is the model's input object; unknown keys are ignored. The tool
    /// must return promptly (with an error result) once `cancel` is cancelled.
    fn run(&mut self, input: &Value, cancel: &CancelToken) -> ToolResult;
    /// Ends any process the tool owns (session deleted, worker idle, shutdown).
    fn shutdown(&mut self) {}
}

/// What tools need from their environment.
#[derive(Clone)]
pub struct ToolEnv {
    pub bash_timeout: Duration,
    /// The session's desktop; `None` when desktops are disabled.
    pub desktop: Option<DesktopAccess>,
    /// Wait after a mouse/keyboard action before its screenshot.
    pub settle_delay: Duration,
}

/// The tools of one tool version, in the reference's order (computer, edit, bash).
pub struct ToolCollection {
    tools: Vec<Box<dyn Tool>>,
    metrics: Option<Metrics>,
}

impl ToolCollection {
    pub fn new(tools: Vec<Box<dyn Tool>>) -> ToolCollection {
        ToolCollection {
            tools,
            metrics: None,
        }
    }

    /// The collection, recording each execution (tool, outcome, duration) into `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> ToolCollection {
        self.metrics = Some(metrics);
        self
    }

    /// The reference group for `version`.
    pub fn for_version(version: ToolVersion, env: &ToolEnv) -> ToolCollection {
        let mut bash = BashTool::new(version, env.bash_timeout);
        if let Some(display) = env.desktop.as_ref().and_then(|d| d.display().ok()) {
            bash = bash.with_env("DISPLAY", &display.name());
        }
        ToolCollection::new(vec![
            Box::new(ComputerTool::new(
                version,
                env.desktop.clone(),
                env.settle_delay,
            )),
            Box::new(EditTool::new(version)),
            Box::new(bash),
        ])
    }

    /// The request's `tools` array.
    pub fn to_params(&self) -> Vec<Value> {
        self.tools.iter().map(|tool| tool.to_params()).collect()
    }

    /// Runs the tool called `name`; an unknown name is an error result (reference §3.8).
    /// Metrics label the tool by its own name, or `unknown` (the model's name is not a
    /// bounded label value).
    pub fn run(&mut self, name: &str, input: &Value, cancel: &CancelToken) -> ToolResult {
        let started = Instant::now();
        let (label, result) = match self.tools.iter_mut().find(|tool| tool.name() == name) {
            Some(tool) => (name, tool.run(input, cancel)),
            None => (
                "unknown",
                ToolResult::error(format!("Tool {name} is invalid")),
            ),
        };
        if let Some(metrics) = &self.metrics {
            let ok = ToolResult::field(&result.error).is_none();
            metrics.tool_run(label, ok, started.elapsed());
        }
        result
    }

    pub fn shutdown(&mut self) {
        for tool in &mut self.tools {
            tool.shutdown();
        }
    }
}

impl Drop for ToolCollection {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_result_is_a_prefixed_string_and_drops_output() {
        let result = ToolResult {
            output: Some("out".into()),
            error: Some("bash has exited with returncode 1".into()),
            system: Some("tool must be restarted".into()),
            base64_image: Some("AAAA".into()),
        };
        assert_eq!(
            result.to_api_block("t1"),
            json!({"type": "tool_result", "tool_use_id": "t1", "is_error": true,
                   "content": "<system>tool must be restarted</system>\nbash has exited with returncode 1"})
        );
    }

    #[test]
    fn success_result_lists_text_then_image() {
        let result = ToolResult {
            output: Some("hi".into()),
            base64_image: Some("AAAA".into()),
            ..Default::default()
        };
        let block = result.to_api_block("t2");
        assert_eq!(block["is_error"], false);
        assert_eq!(block["content"][0], json!({"type": "text", "text": "hi"}));
        assert_eq!(block["content"][1]["source"]["media_type"], "image/png");
        assert_eq!(
            ToolResult::default().to_api_block("t3")["content"],
            json!([])
        );
        let restarted = ToolResult {
            system: Some("tool has been restarted.".into()),
            ..Default::default()
        };
        assert_eq!(
            restarted.to_api_block("t4")["content"][0]["text"],
            "<system>tool has been restarted.</system>"
        );
    }

    #[test]
    fn truncation_counts_characters_and_appends_the_note() {
        assert_eq!(maybe_truncate("abc", 3), "abc");
        assert_eq!(maybe_truncate("ééé", 2), format!("éé{TRUNCATED_NOTE}"));
    }

    #[test]
    fn unknown_tool_name_is_an_error_result() {
        let mut tools = ToolCollection::new(Vec::new());
        let result = tools.run("nope", &json!({}), &CancelToken::new());
        assert_eq!(result.error.as_deref(), Some("Tool nope is invalid"));
    }

    #[test]
    fn executions_are_counted_by_tool_and_outcome_and_unknown_names_are_not_labels() {
        let metrics = Metrics::default();
        let mut tools = ToolCollection::new(Vec::new()).with_metrics(metrics.clone());
        tools.run("made\"up", &json!({}), &CancelToken::new());
        let page = metrics.render(&crate::metrics::Sampled::default());
        assert!(
            page.contains(
                "computer_use_tool_executions_total{tool=\"unknown\",outcome=\"error\"} 1\n"
            ),
            "{page}"
        );
        assert!(!page.contains("made"));
    }
}
