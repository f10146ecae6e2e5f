//! `GET /health`: liveness plus a database round trip; 503 `degraded` when the store fails.
//! Also what runs: desktops, workers and open streams. Never a secret (no URLs, no tokens).

use std::time::Instant;

use serde_json::{Value, json};
use tiny_http::Request;

use super::error::ApiResult;
use super::reply::Reply;
use super::router::Params;
use crate::app::App;
use crate::config::DesktopMode;
use crate::util::time::now_rfc3339;

/// Always answers (the store's pool has a connection timeout, so `ping` cannot hang).
pub(crate) fn get(app: &App, _: &mut Request, _: &Params) -> ApiResult<Reply> {
    let started = Instant::now();
    let ping = app.store.ping();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    if let Err(err) = &ping {
        log::warn!("health: database ping failed: {err}");
    }
    let ok = ping.is_ok();
    let body = json!({
        "status": if ok { "ok" } else { "degraded" },
        "timestamp": now_rfc3339(),
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": app.started_at.elapsed().as_secs(),
        "active_sessions": app.sessions.active_count(),
        "database": {
            "ok": ok,
            "backend": app.store.backend(),
            "latency_ms": (latency_ms * 100.0).round() / 100.0,
        },
        "system": {
            "stream_clients": app.events.broadcaster().subscriber_count(),
            "http_threads": app.config.http.threads,
            "pid": std::process::id(),
        },
        "desktops": {
            "mode": mode_name(app.desktops.mode()),
            "running": app.desktops.running_count(),
        },
        "workers": {
            "active": app.sessions.active_count(),
            "running_turns": app.sessions.running_count(),
        },
        "streams": streams(app),
    });
    Ok(Reply::with_status(if ok { 200 } else { 503 }, body))
}

/// Open connections by kind, as `/metrics` counts them.
fn streams(app: &App) -> Value {
    let gauges = app.metrics.streams();
    json!({
        "websocket": gauges.websocket.get().max(0),
        "sse": gauges.sse.get().max(0),
        "vnc": gauges.vnc.get().max(0),
    })
}

/// The mode as `DESKTOP_MODE` spells it.
fn mode_name(mode: DesktopMode) -> &'static str {
    match mode {
        DesktopMode::Shared => "shared",
        DesktopMode::PerSession => "per-session",
        DesktopMode::None => "none",
    }
}
