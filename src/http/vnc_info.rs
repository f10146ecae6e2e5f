//! `GET /api/vnc/info[?session_id=]` and the `vnc` object of a session's JSON: where a viewer
//! finds a desktop.
//!
//! Describing a desktop never starts one: a desktop that is not running is reported
//! `available: false` with a `reason`, its configured size, and the `websocket_url` that would
//! start it (connecting to `/ws/vnc[/<id>]` starts the desktop). URLs are paths, relative to
//! whichever host the client reached us by. With `API_TOKEN` set, clients add `?token=` to
//! `websocket_url` themselves (the token is never echoed in a response).

use serde_json::{Value, json};
use tiny_http::Request;

use super::error::{ApiError, ApiResult};
use super::reply::Reply;
use super::request::query_param;
use super::router::Params;
use super::sessions::existing;
use crate::app::App;
use crate::config::DesktopMode;
use crate::desktop::Display;

/// `GET /api/vnc/info`: the shared desktop, or in per-session mode the desktop of
/// `?session_id=` (404 when that session does not exist).
pub(crate) fn get(app: &App, request: &mut Request, _: &Params) -> ApiResult<Reply> {
    let session_id = query_param(request.url(), "session_id").filter(|id| !id.is_empty());
    let info = match (app.desktops.mode(), session_id) {
        (DesktopMode::None, _) => unavailable("no desktop is configured (DESKTOP_MODE=none)"),
        (DesktopMode::Shared, _) => shared_info(app),
        (DesktopMode::PerSession, None) => unavailable(
            "desktops are per session (DESKTOP_MODE=per-session): pass ?session_id=<id>, \
             or see the vnc object of GET /api/sessions/<id>",
        ),
        (DesktopMode::PerSession, Some(id)) => session_info(app, &id)?,
    };
    Ok(Reply::ok(info))
}

/// The `vnc` object of a session's JSON in per-session mode (`None` in other modes).
pub(crate) fn session_vnc(app: &App, session_id: &str) -> Option<Value> {
    if app.desktops.mode() != DesktopMode::PerSession {
        return None;
    }
    let running = app.desktops.running(Some(session_id));
    let path = session_path(session_id);
    let (width, height) = size(app, running.as_ref());
    Some(json!({
        "available": running.is_some(),
        "display": running.as_ref().map(Display::name),
        "width": width,
        "height": height,
        "websocket_url": format!("/{path}"),
        "novnc_url": novnc_url(app, &path),
    }))
}

fn shared_info(app: &App) -> Value {
    describe(app, app.desktops.running(None), "ws/vnc")
}

fn session_info(app: &App, id: &str) -> ApiResult<Value> {
    let id = uuid::Uuid::try_parse(id)
        .map_err(|_| ApiError::not_found(format!("{id:?} is not a session id (ids are UUIDs)")))?
        .hyphenated()
        .to_string();
    existing(app, &id)?;
    let mut info = describe(app, app.desktops.running(Some(&id)), &session_path(&id));
    info["session_id"] = json!(id);
    Ok(info)
}

/// The info object of a desktop; `path` is its WebSocket path without the leading slash.
fn describe(app: &App, running: Option<Display>, path: &str) -> Value {
    let (width, height) = size(app, running.as_ref());
    let mut info = json!({
        "available": running.is_some(),
        "host": running.as_ref().map(|d| d.vnc_addr.ip().to_string()),
        "port": running.as_ref().map(|d| d.vnc_addr.port()),
        "width": width,
        "height": height,
        "display": running.as_ref().map(Display::name),
        "websocket_url": format!("/{path}"),
        "novnc_url": novnc_url(app, path),
    });
    if running.is_none() {
        info["reason"] = json!(
            "the desktop is not running yet; it starts when the computer tool first needs it \
             or a viewer connects to websocket_url"
        );
    }
    info
}

/// No desktop to describe.
fn unavailable(reason: &str) -> Value {
    json!({
        "available": false,
        "reason": reason,
        "host": null,
        "port": null,
        "width": null,
        "height": null,
        "display": null,
        "websocket_url": null,
        "novnc_url": null,
    })
}

fn size(app: &App, running: Option<&Display>) -> (u32, u32) {
    let config = app.desktops.config();
    running.map_or((config.width, config.height), |d| (d.width, d.height))
}

fn session_path(session_id: &str) -> String {
    format!("ws/vnc/{session_id}")
}

/// The noVNC page connected to `path`, or `None` when noVNC is not installed.
fn novnc_url(app: &App, path: &str) -> Option<String> {
    let installed = app.desktops.config().novnc_dir.join("vnc.html").is_file();
    installed.then(|| format!("/novnc/vnc.html?path={path}&autoconnect=1&resize=scale&view_only=1"))
}
