//! `GET /api/sessions/{id}/events?after=SEQ&limit=`: the stored event log, for replay.

use serde_json::Value;
use tiny_http::Request;

use super::error::ApiResult;
use super::reply::Reply;
use super::request::query_u64;
use super::router::Params;
use super::sessions::existing;
use crate::app::App;
use crate::session::Published;
use crate::store::EventRecord;

/// Stored events with `seq > after` (default 0), at most `limit` (default and max 1000).
pub(crate) fn list(app: &App, request: &mut Request, params: &Params) -> ApiResult<Reply> {
    let after = query_u64(request.url(), "after", 0, i64::MAX as u64)? as i64;
    let limit = query_u64(request.url(), "limit", 1000, 1000)?.max(1);
    existing(app, &params.id)?;
    let records = app.store.list_events(&params.id, after, limit)?;
    Ok(Reply::ok(Value::Array(
        records.iter().map(event_json).collect(),
    )))
}

/// The event as streamed: its payload with `seq`.
pub(crate) fn event_json(record: &EventRecord) -> Value {
    let mut payload = record.payload.clone();
    if let Value::Object(map) = &mut payload {
        map.insert("seq".into(), Value::from(record.seq));
    }
    payload
}

/// The stored event in its wire form.
pub(crate) fn published(record: &EventRecord) -> Published {
    Published::new(Some(record.seq), record.payload.clone())
}
