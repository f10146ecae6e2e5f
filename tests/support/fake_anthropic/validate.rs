//! The checks the real Messages API applies to a request (reference §10.1, §3.4, §2.1), with
//! error texts modelled on the real ones, plus our own contract (`"stream": true`).

use std::collections::HashSet;

use computer_use_server::tools::ToolVersion;
use serde_json::Value;

/// A rejected request: the status, error type and message the fake answers with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub status: u16,
    pub error_type: &'static str,
    pub message: String,
}

fn invalid(message: impl Into<String>) -> Violation {
    Violation {
        status: 400,
        error_type: "invalid_request_error",
        message: message.into(),
    }
}

/// Every violation of one request (empty when the real API would accept it).
pub(super) fn validate(header: &dyn Fn(&str) -> Option<String>, body: &Value) -> Vec<Violation> {
    let mut found = check_headers(header);
    let Some(fields) = body.as_object() else {
        found.push(invalid("request body must be a JSON object"));
        return found;
    };
    if fields.get("stream") != Some(&Value::Bool(true)) {
        found.push(invalid("fake: this client must send \"stream\": true"));
    }
    if !fields.get("model").is_some_and(Value::is_string) {
        found.push(invalid("model: Field required"));
    }
    match fields.get("max_tokens").and_then(Value::as_i64) {
        Some(n) if n > 0 => {}
        Some(_) => found.push(invalid(
            "max_tokens: Input should be greater than or equal to 1",
        )),
        None => found.push(invalid("max_tokens: Field required")),
    }
    found.extend(check_messages(&body["messages"]));
    found.extend(check_cache_control(body));
    found.extend(check_thinking(body));
    let betas = header("anthropic-beta").unwrap_or_default();
    found.extend(check_tools(&body["tools"], &betas));
    found
}

fn check_headers(header: &dyn Fn(&str) -> Option<String>) -> Vec<Violation> {
    let mut found = Vec::new();
    if header("x-api-key").is_none_or(|key| key.is_empty()) {
        found.push(Violation {
            status: 401,
            error_type: "authentication_error",
            message: "x-api-key header is required".into(),
        });
    }
    match header("anthropic-version").as_deref() {
        Some("2023-06-01") => {}
        None => found.push(invalid("anthropic-version: header is required")),
        Some(other) => found.push(invalid(format!(
            "anthropic-version: invalid version '{other}'"
        ))),
    }
    if !header("content-type").is_some_and(|ct| ct.starts_with("application/json")) {
        found.push(invalid("content-type must be application/json"));
    }
    found
}

fn check_messages(messages: &Value) -> Vec<Violation> {
    let Some(messages) = messages.as_array() else {
        return vec![invalid("messages: Field required")];
    };
    if messages.is_empty() {
        return vec![invalid("messages: at least one message is required")];
    }
    let mut found = Vec::new();
    let mut previous = None;
    for (n, message) in messages.iter().enumerate() {
        let role = message["role"].as_str().unwrap_or_default();
        if role != "user" && role != "assistant" {
            found.push(invalid(format!(
                "messages.{n}.role: Input should be 'user' or 'assistant'"
            )));
        } else if n == 0 && role != "user" {
            found.push(invalid(
                "messages: first message must use the \"user\" role",
            ));
        } else if previous == Some(role) {
            found.push(invalid(format!(
                "messages: roles must alternate between \"user\" and \"assistant\", but found multiple \"{role}\" roles in a row"
            )));
        }
        previous = Some(role);
    }
    found.extend(check_tool_pairs(messages));
    found
}

/// Every assistant `tool_use` is answered in the next (user) message, and every `tool_result`
/// answers a `tool_use` of the previous message.
fn check_tool_pairs(messages: &[Value]) -> Vec<Violation> {
    let mut found = Vec::new();
    for (n, message) in messages.iter().enumerate() {
        if message["role"] == "assistant" {
            let used = ids(message, "tool_use", "id");
            let answered: HashSet<String> = messages
                .get(n + 1)
                .filter(|next| next["role"] == "user")
                .map(|next| {
                    ids(next, "tool_result", "tool_use_id")
                        .into_iter()
                        .collect()
                })
                .unwrap_or_default();
            let missing: Vec<&str> = used
                .iter()
                .filter(|id| !answered.contains(*id))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                found.push(invalid(format!(
                    "messages.{n}: `tool_use` ids were found without `tool_result` blocks immediately after: {}. Each `tool_use` block must have a corresponding `tool_result` block in the next message.",
                    missing.join(", ")
                )));
            }
        }
        if message["role"] == "user" {
            let offered: HashSet<String> = match n.checked_sub(1).map(|p| &messages[p]) {
                Some(prev) if prev["role"] == "assistant" => {
                    ids(prev, "tool_use", "id").into_iter().collect()
                }
                _ => HashSet::new(),
            };
            for id in ids(message, "tool_result", "tool_use_id") {
                if !offered.contains(&id) {
                    found.push(invalid(format!(
                        "messages.{n}.content: unexpected `tool_use_id` found in `tool_result` blocks: {id}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                    )));
                }
            }
        }
    }
    found
}

/// The `field` of every block of `kind` in a message's content.
fn ids(message: &Value, kind: &str, field: &str) -> Vec<String> {
    message["content"]
        .as_array()
        .map(|blocks| {
            blocks
                .iter()
                .filter(|b| b["type"] == kind)
                .filter_map(|b| b[field].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn check_cache_control(body: &Value) -> Vec<Violation> {
    let total: usize = ["system", "messages", "tools"]
        .iter()
        .map(|field| count_cache_control(&body[*field]))
        .sum();
    if total > 4 {
        vec![invalid(format!(
            "A maximum of 4 blocks with cache_control may be provided. Found {total}."
        ))]
    } else {
        Vec::new()
    }
}

fn count_cache_control(value: &Value) -> usize {
    match value {
        Value::Object(map) => {
            usize::from(map.contains_key("cache_control"))
                + map.values().map(count_cache_control).sum::<usize>()
        }
        Value::Array(items) => items.iter().map(count_cache_control).sum(),
        _ => 0,
    }
}

fn check_thinking(body: &Value) -> Vec<Violation> {
    let thinking = &body["thinking"];
    if thinking.is_null() || thinking["type"] != "enabled" {
        return Vec::new();
    }
    let Some(budget) = thinking["budget_tokens"].as_i64() else {
        return vec![invalid("thinking.enabled.budget_tokens: Field required")];
    };
    let mut found = Vec::new();
    if budget < 1024 {
        found.push(invalid(
            "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024",
        ));
    }
    if body["max_tokens"].as_i64().is_some_and(|max| budget >= max) {
        found.push(invalid(
            "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-window-size",
        ));
    }
    found
}

/// Computer-use tools must match a tool group of a computer-use beta the request carries.
fn check_tools(tools: &Value, betas: &str) -> Vec<Violation> {
    if tools.is_null() {
        return Vec::new();
    }
    let Some(tools) = tools.as_array() else {
        return vec![invalid("tools: Input should be a valid list")];
    };
    let groups: Vec<ToolVersion> = ToolVersion::ALL
        .into_iter()
        .filter(|v| betas.split(',').any(|b| b.trim() == v.beta_flag()))
        .collect();
    let mut found = Vec::new();
    let mut names = HashSet::new();
    for (n, tool) in tools.iter().enumerate() {
        let name = tool["name"].as_str().unwrap_or_default();
        if name.is_empty() {
            found.push(invalid(format!("tools.{n}.name: Field required")));
        } else if !names.insert(name.to_string()) {
            found.push(invalid(format!(
                "tools: Tool names must be unique. ({name})"
            )));
        }
        match tool["type"].as_str() {
            None | Some("custom") => {
                if !tool["input_schema"].is_object() {
                    found.push(invalid(format!(
                        "tools.{n}.custom.input_schema: Field required"
                    )));
                }
            }
            Some(kind) => found.extend(check_typed_tool(n, tool, kind, &groups)),
        }
    }
    found
}

fn check_typed_tool(n: usize, tool: &Value, kind: &str, groups: &[ToolVersion]) -> Vec<Violation> {
    let name = tool["name"].as_str().unwrap_or_default();
    let computer = |v: &ToolVersion| v.computer_type() == kind && name == "computer";
    let edit = |v: &ToolVersion| v.edit_type() == kind && v.edit_name() == name;
    let bash = |v: &ToolVersion| v.bash_type() == kind && name == "bash";
    let known = ToolVersion::ALL
        .iter()
        .any(|v| computer(v) || edit(v) || bash(v));
    if !known {
        return vec![invalid(format!(
            "tools.{n}: Input tag '{kind}' found using 'type' with name '{name}' does not match any of the expected tool types"
        ))];
    }
    if !groups.iter().any(|v| computer(v) || edit(v) || bash(v)) {
        return vec![invalid(format!(
            "tools.{n}: tool type '{kind}' requires a matching computer-use beta in anthropic-beta"
        ))];
    }
    let mut found = Vec::new();
    if kind.starts_with("computer_") {
        for field in ["display_width_px", "display_height_px"] {
            if tool[field].as_u64().is_none_or(|px| px == 0) {
                found.push(invalid(format!("tools.{n}.{kind}.{field}: Field required")));
            }
        }
    }
    found
}
