//! "Nothing lost", checked against the database itself: every accepted message is stored
//! exactly once and in order, nothing is left queued, and the history is one the Messages API
//! accepts (roles alternate after merging adjacent turns, every tool_use answered once).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use computer_use_server::config::DatabaseUrl;
use computer_use_server::store::{self, MessageRecord, Store};
use serde_json::Value;

/// Opens the store behind a `DATABASE_URL` value (`sqlite://…` or `postgres://…`).
pub fn open_store(url: &str) -> Arc<dyn Store> {
    let url = match url.strip_prefix("sqlite://") {
        Some(path) => DatabaseUrl::Sqlite(PathBuf::from(path)),
        None => DatabaseUrl::Postgres(url.to_string()),
    };
    store::open(&url, 2).unwrap_or_else(|err| panic!("open the store to check it: {err}"))
}

/// The plain text of a user message posted through the API, if it is one.
fn posted_text(message: &MessageRecord) -> Option<&str> {
    let blocks = message.content.as_array()?;
    match blocks.as_slice() {
        [block] if message.role == "user" && block["type"] == "text" => block["text"].as_str(),
        _ => None,
    }
}

/// Asserts nothing was lost or duplicated for `session`, given the texts the API accepted (in
/// posting order), and that the conversation ends with the model's answer. Returns the
/// conversation (stored messages in `seq` order).
pub fn assert_nothing_lost(
    store: &dyn Store,
    session: &str,
    accepted: &[&str],
) -> Vec<MessageRecord> {
    let all = store.list_messages(session, 0, 100_000).unwrap();
    let queued: Vec<_> = all.iter().filter(|m| m.seq.is_none()).collect();
    assert!(queued.is_empty(), "messages left queued: {queued:?}");
    let conversation = store.conversation(session).unwrap();
    let posted: Vec<&str> = conversation.iter().filter_map(posted_text).collect();
    assert_eq!(
        posted, accepted,
        "accepted messages stored exactly once, in order"
    );
    assert_valid_history(&conversation);
    let last = conversation.last().expect("a conversation");
    assert_eq!(
        last.role, "assistant",
        "the last message is answered: {last:?}"
    );
    conversation
}

/// Roles alternate once adjacent turns are merged (never two assistant turns in a row, which
/// would be a duplicated answer), every tool_use is answered by exactly one tool_result in the
/// next turn, and every tool_result answers the turn before it.
pub fn assert_valid_history(conversation: &[MessageRecord]) {
    for pair in conversation.windows(2) {
        assert!(
            !(pair[0].role == "assistant" && pair[1].role == "assistant"),
            "two assistant turns in a row (a duplicated answer): {pair:?}"
        );
    }
    let merged = merge(conversation);
    assert_eq!(merged.first().map(|m| m.0.as_str()), Some("user"));
    let mut seen_ids = HashSet::new();
    for (i, (role, blocks)) in merged.iter().enumerate() {
        let expected = if i % 2 == 0 { "user" } else { "assistant" };
        assert_eq!(role, expected, "roles alternate after merging (turn {i})");
        let results = ids(blocks, "tool_result", "tool_use_id");
        let asked = match i.checked_sub(1) {
            Some(prev) if role == "user" => ids(&merged[prev].1, "tool_use", "id"),
            _ => Vec::new(),
        };
        if role == "user" {
            assert_eq!(
                results, asked,
                "every tool_use answered once, in order (turn {i})"
            );
        } else {
            for id in ids(blocks, "tool_use", "id") {
                assert!(seen_ids.insert(id.clone()), "tool_use {id} appears twice");
            }
        }
    }
}

fn merge(conversation: &[MessageRecord]) -> Vec<(String, Vec<Value>)> {
    let mut merged: Vec<(String, Vec<Value>)> = Vec::new();
    for message in conversation {
        let blocks = message.content.as_array().cloned().unwrap_or_default();
        match merged.last_mut() {
            Some((role, existing)) if *role == message.role => existing.extend(blocks),
            _ => merged.push((message.role.clone(), blocks)),
        }
    }
    merged
}

fn ids(blocks: &[Value], kind: &str, field: &str) -> Vec<String> {
    blocks
        .iter()
        .filter(|b| b["type"] == kind)
        .map(|b| b[field].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Every text block the model wrote, in order.
pub fn assistant_texts(conversation: &[MessageRecord]) -> Vec<String> {
    conversation
        .iter()
        .filter(|m| m.role == "assistant")
        .flat_map(|m| m.content.as_array().cloned().unwrap_or_default())
        .filter(|b| b["type"] == "text")
        .map(|b| b["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The `status` values of the stored `status` events that end a turn, in order.
pub fn turn_ends(store: &dyn Store, session: &str) -> Vec<String> {
    let events = store.list_events(session, 0, 100_000).unwrap();
    events
        .iter()
        .filter(|e| e.kind == "status")
        .filter_map(|e| e.payload["status"].as_str())
        .filter(|s| matches!(*s, "completed" | "error" | "cancelled"))
        .map(str::to_string)
        .collect()
}
