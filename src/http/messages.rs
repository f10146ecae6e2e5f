//! `/api/sessions/{id}/messages`: the conversation (plus queued messages) and posting one.

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use tiny_http::Request;

use super::error::{ApiError, ApiResult};
use super::reply::Reply;
use super::request::{json_body, paging};
use super::router::Params;
use super::sessions::{existing, not_found};
use crate::app::App;
use crate::store::{MessageListing, MessageRecord};

/// `GET /api/sessions/{id}/messages?skip=&limit=`: the stored content JSON is passed through
/// as is, and the page is serialised straight to bytes.
pub(crate) fn list(app: &App, request: &mut Request, params: &Params) -> ApiResult<Reply> {
    let (skip, limit) = paging(request.url())?;
    let listings = app
        .store
        .list_messages_page(&params.id, skip, limit)?
        .ok_or_else(|| not_found(&params.id))?;
    let page: Vec<MessageJson<'_>> = listings.iter().map(MessageJson::from).collect();
    let body = serde_json::to_vec(&page).map_err(|_| ApiError::internal())?;
    Ok(Reply::json_bytes(body))
}

/// `POST /api/sessions/{id}/messages` `{"content": "..."}`: stored, queued, 202.
pub(crate) fn post(app: &App, request: &mut Request, params: &Params) -> ApiResult<Reply> {
    let body = json_body(request, app.config.http.max_body_bytes)?;
    let content = content_of(body.as_ref())?;
    existing(app, &params.id)?;
    let record = app.sessions.post_message(&params.id, &content)?;
    Ok(Reply::with_status(202, queued_json(&record)))
}

/// The `content` of a message body: a non-empty string, and no other field.
pub(crate) fn content_of(body: Option<&Value>) -> ApiResult<String> {
    let Some(Value::Object(body)) = body else {
        return Err(ApiError::invalid(
            "body",
            "must be a JSON object {\"content\": \"...\"}",
        ));
    };
    reject_unknown(body, &["content"])?;
    match body.get("content") {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => Err(ApiError::invalid("content", "must not be empty")),
        None => Err(ApiError::invalid("content", "is required")),
        Some(_) => Err(ApiError::invalid("content", "must be a string")),
    }
}

fn reject_unknown(body: &Map<String, Value>, known: &[&str]) -> ApiResult<()> {
    match body.keys().find(|k| !known.contains(&k.as_str())) {
        Some(key) => Err(ApiError::invalid(
            key,
            format!("unknown field; accepted: {}", known.join(", ")),
        )),
        None => Ok(()),
    }
}

/// `{message_id, session_id, status: "queued"}`.
pub(crate) fn queued_json(record: &MessageRecord) -> Value {
    json!({"message_id": record.id, "session_id": record.session_id, "status": "queued"})
}

/// A listed message as clients see it. The fields are in the alphabetical order a `Value`
/// object has, so the output is byte for byte what building a `json!` object gave.
#[derive(Serialize)]
struct MessageJson<'a> {
    content: &'a RawValue,
    id: &'a str,
    queued: bool,
    role: &'a str,
    seq: Option<i64>,
    session_id: &'a str,
    timestamp: &'a str,
}

impl<'a> From<&'a MessageListing> for MessageJson<'a> {
    fn from(listing: &'a MessageListing) -> MessageJson<'a> {
        MessageJson {
            content: &listing.content,
            id: &listing.id,
            queued: listing.seq.is_none(),
            role: &listing.role,
            seq: listing.seq,
            session_id: &listing.session_id,
            timestamp: &listing.created_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_must_be_a_lone_non_empty_string() {
        assert_eq!(content_of(Some(&json!({"content": "hi"}))).unwrap(), "hi");
        let cases = [
            (json!({"content": ""}), "content"),
            (json!({"content": 5}), "content"),
            (json!({}), "content"),
            (json!({"content": "x", "role": "user"}), "role"),
            (json!([1]), "body"),
        ];
        for (body, field) in cases {
            let err = content_of(Some(&body)).unwrap_err();
            assert_eq!(err.status, 422);
            assert!(err.detail.starts_with(field), "{body}: {}", err.detail);
        }
        assert_eq!(content_of(None).unwrap_err().status, 422);
    }
}
