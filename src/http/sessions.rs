//! `/api/sessions` and `/api/sessions/{id}`: create, list, get, delete, cancel.

use serde_json::{Value, json};
use tiny_http::Request;

use super::error::{ApiError, ApiResult};
use super::reply::Reply;
use super::request::{json_body, paging};
use super::router::Params;
use super::vnc_info::session_vnc;
use crate::app::App;
use crate::session::SessionParams;
use crate::store::SessionRecord;

/// `POST /api/sessions`: an empty or missing body takes every default.
pub(crate) fn create(app: &App, request: &mut Request, _: &Params) -> ApiResult<Reply> {
    let body = json_body(request, app.config.http.max_body_bytes)?.unwrap_or(json!({}));
    let params = SessionParams::from_json(&body, &app.config.model.default_model)?;
    let record = app.sessions.create(&params)?;
    Ok(Reply::with_status(201, session_json(app, &record)))
}

/// `GET /api/sessions?skip=&limit=`: newest first.
pub(crate) fn list(app: &App, request: &mut Request, _: &Params) -> ApiResult<Reply> {
    let (skip, limit) = paging(request.url())?;
    let records = app.store.list_sessions(skip, limit)?;
    let list: Vec<Value> = records.iter().map(|r| session_json(app, r)).collect();
    Ok(Reply::ok(Value::Array(list)))
}

/// `GET /api/sessions/{id}`.
pub(crate) fn get(app: &App, _: &mut Request, params: &Params) -> ApiResult<Reply> {
    let record = existing(app, &params.id)?;
    Ok(Reply::ok(session_json(app, &record)))
}

/// `DELETE /api/sessions/{id}`.
pub(crate) fn delete(app: &App, _: &mut Request, params: &Params) -> ApiResult<Reply> {
    if !app.sessions.delete(&params.id)? {
        return Err(not_found(&params.id));
    }
    Ok(Reply::ok(
        json!({"message": "Session deleted successfully"}),
    ))
}

/// `POST /api/sessions/{id}/cancel`: `cancelled` says whether a turn was running.
pub(crate) fn cancel(app: &App, _: &mut Request, params: &Params) -> ApiResult<Reply> {
    existing(app, &params.id)?;
    let cancelled = app.sessions.cancel(&params.id)?;
    Ok(Reply::ok(
        json!({"session_id": params.id, "cancelled": cancelled}),
    ))
}

/// The stored session, or 404.
pub(crate) fn existing(app: &App, id: &str) -> ApiResult<SessionRecord> {
    app.store.get_session(id)?.ok_or_else(|| not_found(id))
}

pub(crate) fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("session {id} not found"))
}

/// The session as clients see it (the seed's field names plus `status` and `usage`, and in
/// per-session desktop mode its `vnc` desktop).
pub(crate) fn session_json(app: &App, record: &SessionRecord) -> Value {
    let running = app.sessions.is_running(&record.id);
    let setting = |key: &str| record.settings.get(key).cloned().unwrap_or(Value::Null);
    let mut session = json!({
        "id": record.id,
        "title": record.title,
        "model": record.model,
        "provider": record.provider,
        "system_prompt_suffix": record.system_prompt_suffix,
        "tool_version": record.tool_version,
        "max_tokens": setting("max_tokens"),
        "thinking_budget": setting("thinking_budget"),
        "only_n_most_recent_images": setting("only_n_most_recent_images"),
        "status": if running { "running" } else { "idle" },
        "usage": {
            "input_tokens": record.usage.input_tokens,
            "output_tokens": record.usage.output_tokens,
            "cache_creation_input_tokens": record.usage.cache_creation_input_tokens,
            "cache_read_input_tokens": record.usage.cache_read_input_tokens,
        },
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    });
    if let Some(vnc) = session_vnc(app, &record.id) {
        session["vnc"] = vnc;
    }
    session
}
