//! Request assembly (reference §2.3, §3.2–§3.6): the system prompt, cache breakpoints, image
//! truncation, thinking, and the merge of adjacent user turns.
//!
//! The stored conversation is kept clean; every request is assembled from a copy, so cache
//! breakpoints never accumulate in history (the reference mutates history and has to remove
//! the fourth-newest breakpoint again; on a fresh copy there is nothing to remove).

use serde_json::{Value, json};

use crate::agent::sampling::interrupted_result;
use crate::anthropic::MessageRequest;
use crate::session::SessionParams;
use crate::util::time::DateTime;

/// The prompt-caching beta the reference sends to the first-party API.
pub const PROMPT_CACHING_BETA: &str = "prompt-caching-2024-07-31";

/// Breakpoints placed on messages; the system block takes the fourth (the API maximum).
const MESSAGE_BREAKPOINTS: usize = 3;

/// The system prompt: the reference's ideas in order (§3.2), dated today, plus the suffix
/// after one space.
pub fn system_prompt(display_num: Option<u32>, date: &DateTime, suffix: &str) -> String {
    let arch = std::env::consts::ARCH;
    let display = display_num.unwrap_or(1);
    let mut prompt = format!(
        "<SYSTEM_CAPABILITY>\n\
* You are using a Linux virtual machine with {arch} architecture and internet access.\n\
* You can install Ubuntu/Debian applications with your bash tool. Use curl instead of wget.\n\
* To open Firefox, click the firefox icon; the installed browser is firefox-esr.\n\
* You can start GUI applications from the bash tool, but set DISPLAY=:{display} and use a subshell, for example \"(DISPLAY=:{display} xterm &)\". GUI applications can take a while to appear, so take a screenshot to confirm.\n\
* When a bash command would print a lot of output, redirect it to a temporary file and inspect it with str_replace_based_edit_tool or `grep -n -B <lines before> -A <lines after> <query> <filename>`.\n\
* When viewing a page, zoom out to see everything on it, or scroll down before deciding that something is not there.\n\
* Computer function calls take a while to run and send back to you. Where you can, chain several calls into one request.\n\
* The current date is {date}.\n\
</SYSTEM_CAPABILITY>\n\n\
<IMPORTANT>\n\
* If the Firefox start-up wizard appears, ignore it: do not even click \"skip this step\". Click the address bar where it says \"Search or enter address\" and type the search term or URL there.\n\
* To read a whole PDF, take one screenshot, note its URL, download it with curl, install and run pdftotext on it, and read the text file with str_replace_based_edit_tool.\n\
</IMPORTANT>",
        date = date.to_long_date()
    );
    if !suffix.is_empty() {
        prompt.push(' ');
        prompt.push_str(suffix);
    }
    prompt
}

/// Turns a stored content value into a list of blocks (a string becomes one text block).
fn blocks_of(content: &Value) -> Vec<Value> {
    match content {
        Value::Array(blocks) => blocks.clone(),
        Value::String(text) => vec![json!({"type": "text", "text": text})],
        other => vec![other.clone()],
    }
}

/// Merges adjacent messages of the same role so roles alternate. Adjacent user turns arise
/// when a turn was cancelled or failed before the model answered; the API would combine them
/// anyway, and sending them merged keeps every `tool_result` in the turn right after its
/// `tool_use`.
pub fn merge_adjacent_roles(messages: Vec<Value>) -> Vec<Value> {
    let mut merged: Vec<Value> = Vec::with_capacity(messages.len());
    for message in messages {
        let same_role = merged
            .last()
            .is_some_and(|last| last["role"] == message["role"]);
        if same_role {
            let last = merged.last_mut().expect("checked above");
            let mut blocks = blocks_of(&last["content"]);
            blocks.extend(blocks_of(&message["content"]));
            last["content"] = Value::Array(blocks);
        } else {
            merged.push(message);
        }
    }
    merged
}

/// Makes sure every assistant `tool_use` is answered by a `tool_result` at the front of the
/// next user message, as the API requires. The worker stores results before anything else,
/// but a failed write (database outage) could leave a call unanswered in the middle of the
/// history, and the session would then fail every later request; the missing results are
/// supplied here, on the request copy, as interrupted calls.
pub fn answer_every_tool_use(messages: &mut Vec<Value>) {
    let mut i = 0;
    while i < messages.len() {
        let ids = tool_use_ids(&messages[i]);
        if !ids.is_empty() {
            if messages
                .get(i + 1)
                .is_none_or(|next| next["role"] != "user")
            {
                messages.insert(i + 1, json!({"role": "user", "content": []}));
            }
            let next = &mut messages[i + 1];
            let mut blocks = blocks_of(&next["content"]);
            let answered: Vec<String> = blocks
                .iter()
                .filter(|b| b["type"] == "tool_result")
                .filter_map(|b| b["tool_use_id"].as_str().map(String::from))
                .collect();
            let missing = ids.iter().filter(|id| !answered.contains(id));
            let healed: Vec<Value> = missing.map(|id| interrupted_result(id)).collect();
            blocks.splice(0..0, healed);
            next["content"] = Value::Array(blocks);
        }
        i += 1;
    }
}

fn tool_use_ids(message: &Value) -> Vec<String> {
    if message["role"] != "assistant" {
        return Vec::new();
    }
    let blocks = message["content"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let uses = blocks.iter().filter(|b| b["type"] == "tool_use");
    uses.filter_map(|b| b["id"].as_str().map(String::from))
        .collect()
}

/// Puts `cache_control` on the last block of the newest three user messages with list
/// content (reference §3.5).
pub fn inject_cache_breakpoints(messages: &mut [Value]) {
    let user_lists = messages
        .iter_mut()
        .rev()
        .filter(|m| m["role"] == "user" && m["content"].is_array());
    for message in user_lists.take(MESSAGE_BREAKPOINTS) {
        if let Some(last) = message["content"].as_array_mut().and_then(|c| c.last_mut()) {
            last["cache_control"] = json!({"type": "ephemeral"});
        }
    }
}

/// How many tool-result images to drop so that about `keep` remain, removing in multiples
/// of `chunk` to spare the prompt cache (reference §3.6, with the [REC] clamp at zero).
pub fn images_to_remove(total: usize, keep: usize, chunk: usize) -> usize {
    let remove = total.saturating_sub(keep);
    if chunk == 0 {
        remove
    } else {
        remove - remove % chunk
    }
}

/// Drops the oldest tool-result images (reference §3.6). User images are never touched.
pub fn filter_recent_images(messages: &mut [Value], keep: usize, chunk: usize) {
    let is_image = |item: &Value| item["type"] == "image";
    let tool_results = || {
        messages
            .iter()
            .filter_map(|m| m["content"].as_array())
            .flatten()
            .filter(|b| b["type"] == "tool_result")
    };
    let total: usize = tool_results()
        .filter_map(|b| b["content"].as_array())
        .map(|items| items.iter().filter(|i| is_image(i)).count())
        .sum();
    let mut remove = images_to_remove(total, keep, chunk);
    let blocks = messages
        .iter_mut()
        .filter_map(|m| m["content"].as_array_mut())
        .flatten();
    for block in blocks.filter(|b| b["type"] == "tool_result") {
        let Some(items) = block["content"].as_array_mut() else {
            continue;
        };
        items.retain(|item| {
            let drop = remove > 0 && is_image(item);
            remove -= usize::from(drop);
            !drop
        });
    }
}

/// Everything a request is built from.
pub struct RequestInput<'a> {
    pub params: &'a SessionParams,
    /// The stored conversation as `{role, content}` objects.
    pub history: &'a [Value],
    pub tools: Vec<Value>,
    pub display_num: Option<u32>,
    pub date: DateTime,
}

/// Assembles the Messages API request for one model call.
pub fn build_request(input: RequestInput<'_>) -> MessageRequest {
    let params = input.params;
    let mut messages = merge_adjacent_roles(input.history.to_vec());
    answer_every_tool_use(&mut messages);
    if let Some(keep) = params.only_n_most_recent_images.filter(|n| *n > 0) {
        filter_recent_images(&mut messages, keep as usize, keep as usize);
    }
    inject_cache_breakpoints(&mut messages);
    let system = system_prompt(input.display_num, &input.date, &params.system_prompt_suffix);
    // Built field by field so the messages and tools are moved in: `json!` would serialize
    // them into a second deep copy of the whole history on every model call.
    let mut body = serde_json::Map::new();
    body.insert("model".into(), Value::String(params.model.clone()));
    body.insert("max_tokens".into(), json!(params.max_tokens));
    body.insert("messages".into(), Value::Array(messages));
    body.insert(
        "system".into(),
        json!([{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}]),
    );
    body.insert("tools".into(), Value::Array(input.tools));
    if let Some(budget) = params.thinking_budget {
        body.insert(
            "thinking".into(),
            json!({"type": "enabled", "budget_tokens": budget}),
        );
    }
    let body = Value::Object(body);
    let betas = vec![
        params.tool_version.beta_flag().to_string(),
        PROMPT_CACHING_BETA.to_string(),
    ];
    MessageRequest { body, betas }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::ToolVersion;

    fn params() -> SessionParams {
        SessionParams {
            title: None,
            model: "claude-sonnet-4-5-20250929".into(),
            provider: "anthropic".into(),
            system_prompt_suffix: String::new(),
            tool_version: ToolVersion::V20250124,
            max_tokens: 4096,
            thinking_budget: None,
            only_n_most_recent_images: None,
        }
    }

    fn user(text: &str) -> Value {
        json!({"role": "user", "content": [{"type": "text", "text": text}]})
    }

    fn image_result(id: &str, images: usize) -> Value {
        let content: Vec<Value> = (0..images)
            .map(|_| json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}))
            .collect();
        json!({"type": "tool_result", "tool_use_id": id, "content": content, "is_error": false})
    }

    fn count_breakpoints(value: &Value) -> usize {
        match value {
            Value::Object(map) => {
                usize::from(map.contains_key("cache_control"))
                    + map.values().map(count_breakpoints).sum::<usize>()
            }
            Value::Array(items) => items.iter().map(count_breakpoints).sum(),
            _ => 0,
        }
    }

    #[test]
    fn system_prompt_has_the_date_and_suffix_after_one_space() {
        let date = DateTime::from_unix_millis(1_749_027_901_123);
        let prompt = system_prompt(Some(1), &date, "Be brief.");
        assert!(prompt.contains("The current date is Wednesday, June 4, 2025."));
        assert!(prompt.contains("DISPLAY=:1"));
        assert!(prompt.ends_with("</IMPORTANT> Be brief."));
        assert!(system_prompt(None, &date, "").ends_with("</IMPORTANT>"));
    }

    #[test]
    fn image_chunking_matches_the_reference_arithmetic() {
        for total in 0..=5 {
            assert_eq!(images_to_remove(total, 3, 3), 0, "total {total}");
        }
        assert_eq!(images_to_remove(6, 3, 3), 3);
        assert_eq!(images_to_remove(8, 3, 3), 3);
        assert_eq!(images_to_remove(9, 3, 3), 6);
        assert_eq!(images_to_remove(2, 3, 3), 0);
    }

    #[test]
    fn oldest_tool_result_images_go_first_and_user_images_stay() {
        let user_image = json!({"role": "user", "content": [{"type": "image", "source": {}}]});
        let mut messages = vec![
            user_image.clone(),
            json!({"role": "user", "content": [image_result("a", 2), image_result("b", 2)]}),
            json!({"role": "user", "content": [image_result("c", 2)]}),
        ];
        filter_recent_images(&mut messages, 3, 3);
        assert_eq!(messages[0], user_image);
        let counts: Vec<usize> = messages[1..]
            .iter()
            .flat_map(|m| m["content"].as_array().unwrap().clone())
            .map(|b| b["content"].as_array().unwrap().len())
            .collect();
        assert_eq!(counts, vec![0, 1, 2]);
    }

    #[test]
    fn three_message_breakpoints_plus_the_system_one() {
        let history: Vec<Value> = (0..6)
            .flat_map(|i| {
                [
                    user(&format!("u{i}")),
                    json!({"role": "assistant", "content": [{"type": "text", "text": "a"}]}),
                ]
            })
            .collect();
        let request = build_request(RequestInput {
            params: &params(),
            history: &history,
            tools: vec![],
            display_num: None,
            date: DateTime::now(),
        });
        assert_eq!(count_breakpoints(&request.body), 4);
        let messages = request.body["messages"].as_array().unwrap();
        for (i, message) in messages.iter().enumerate() {
            let marked = message["content"][0].get("cache_control").is_some();
            assert_eq!(marked, message["role"] == "user" && i >= 6, "message {i}");
        }
        assert!(request.body["system"][0]["cache_control"].is_object());
        assert_eq!(
            request.betas,
            vec!["computer-use-2025-01-24", PROMPT_CACHING_BETA]
        );
    }

    #[test]
    fn adjacent_user_turns_are_merged_in_order() {
        let history = vec![
            user("one"),
            user("two"),
            json!({"role": "assistant", "content": "ok"}),
            user("three"),
        ];
        let merged = merge_adjacent_roles(history);
        assert_eq!(merged.len(), 3);
        let texts: Vec<&str> = merged[0]["content"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["text"].as_str().unwrap())
            .collect();
        assert_eq!(texts, vec!["one", "two"]);
    }

    #[test]
    fn an_unanswered_tool_use_mid_history_is_answered_first_in_the_next_user_turn() {
        let call = |id: &str| json!({"type": "tool_use", "id": id, "name": "bash", "input": {}});
        let history = vec![
            user("go"),
            json!({"role": "assistant", "content": [call("a"), call("b")]}),
            json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "b", "content": "ok"}]}),
            user("next"),
            json!({"role": "assistant", "content": [call("c")]}),
        ];
        let mut messages = merge_adjacent_roles(history);
        answer_every_tool_use(&mut messages);
        let ids = |m: &Value| -> Vec<String> {
            m["content"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| {
                    b["tool_use_id"]
                        .as_str()
                        .unwrap_or(b["type"].as_str().unwrap())
                        .to_string()
                })
                .collect()
        };
        assert_eq!(ids(&messages[2]), ["a", "b", "text"]);
        assert_eq!(messages[2]["content"][0]["is_error"], true);
        assert_eq!(
            ids(&messages[4]),
            ["c"],
            "a trailing call gets a user turn of its own"
        );
        assert_eq!(messages.len(), 5);
    }

    #[test]
    fn thinking_budget_adds_the_enabled_block() {
        let mut p = params();
        p.thinking_budget = Some(2048);
        let request = build_request(RequestInput {
            params: &p,
            history: &[user("hi")],
            tools: vec![],
            display_num: None,
            date: DateTime::now(),
        });
        assert_eq!(
            request.body["thinking"],
            json!({"type": "enabled", "budget_tokens": 2048})
        );
        assert_eq!(request.body["max_tokens"], 4096);
    }
}
