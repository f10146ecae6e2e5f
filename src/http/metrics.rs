//! `GET /metrics`: the app's metrics in the Prometheus text format (needs the token, like
//! every API route).

use tiny_http::Request;

use super::error::ApiResult;
use super::reply::Reply;
use super::router::Params;
use crate::app::App;
use crate::metrics::{CONTENT_TYPE, ProcessStats, Sampled};

pub(crate) fn get(app: &App, _: &mut Request, _: &Params) -> ApiResult<Reply> {
    let sampled = Sampled {
        sessions_active: app.sessions.active_count(),
        turns_running: app.sessions.running_count(),
        desktops_running: app.desktops.running_count(),
        process: ProcessStats::read(),
        uptime: app.started_at.elapsed(),
    };
    let page = app.metrics.render(&sampled);
    Ok(Reply::bytes(200, CONTENT_TYPE, page.into_bytes()).header("Cache-Control", "no-store"))
}
