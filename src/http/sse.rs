//! `GET /api/sessions/{id}/stream`: Server-Sent Events.
//!
//! tiny_http buffers a streamed `respond()` entirely, so the stream thread writes the response
//! head itself and sends each event as one chunk (`id: <seq>` + `data: <json>`, no `event:`
//! line; live-only events carry no `id:`), flushing each. `: keepalive` comments every
//! heartbeat are what reveal a gone client. Writes have a timeout (set on the socket's
//! duplicate), so a client that stops reading cannot hold the thread forever.

use std::io::{self, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tiny_http::Request;

use super::error::{ApiError, ApiResult};
use super::feed::{BATCH, Feed, Next, ReplayError, close_text};
use super::request::{header, query_u64};
use super::router::Params;
use super::sessions::existing;
use super::streams::{POLL, StreamStart};
use crate::app::App;
use crate::session::Published;

/// A write that takes longer than this ends the stream.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// A validated SSE request.
pub(crate) struct SsePlan {
    pub session_id: String,
    pub after: i64,
}

/// Validates the session and the resume point (`Last-Event-ID`, else `?after=`, else 0).
pub(crate) fn start(app: &App, request: &mut Request, params: &Params) -> ApiResult<StreamStart> {
    existing(app, &params.id)?;
    let after = match header(request, "Last-Event-ID").map(str::trim) {
        Some(raw) if !raw.is_empty() => raw
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| ApiError::invalid("Last-Event-ID", "must be an event seq"))?,
        _ => query_u64(request.url(), "after", 0, i64::MAX as u64)? as i64,
    };
    Ok(StreamStart::Sse(SsePlan {
        session_id: params.id.clone(),
        after,
    }))
}

/// Everything the stream thread owns.
pub(crate) struct SseStream {
    pub app: App,
    pub plan: SsePlan,
    pub writer: Box<dyn Write + Send>,
    pub socket: TcpStream,
    pub cors_origin: Option<String>,
    pub stop: Arc<AtomicBool>,
}

impl SseStream {
    /// Runs the stream until the client goes, the subscription closes or the server stops.
    pub(crate) fn run(mut self) {
        let _ = self.socket.set_write_timeout(Some(WRITE_TIMEOUT));
        // Each flush is a whole batch of events: send it now, not after the previous ACK.
        let _ = self.socket.set_nodelay(true);
        let mut feed = Feed::open(&self.app, &self.plan.session_id, self.plan.after);
        let ending = self.stream(&mut feed);
        if let Ok(Some(comment)) = ending {
            let _ = self.chunk(&format!(": {comment}\n\n"));
            let _ = self.finish();
        }
        let _ = self.socket.shutdown(Shutdown::Both);
    }

    /// `Ok(Some(why))` when the server ends the stream; `Err` when the client is gone.
    fn stream(&mut self, feed: &mut Feed) -> io::Result<Option<String>> {
        self.head()?;
        match feed.replay(|event| self.event(event)) {
            Ok(()) => {}
            Err(ReplayError::Write(err)) => return Err(err),
            Err(ReplayError::Store(err)) => {
                log::warn!("sse replay failed: {err}");
                return Ok(Some("closed: store unavailable, reconnect later".into()));
            }
        }
        self.live(feed)
    }

    fn live(&mut self, feed: &mut Feed) -> io::Result<Option<String>> {
        let heartbeat = self.app.config.http.heartbeat;
        let mut last_write = Instant::now();
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return Ok(Some("closed: server shutting down".into()));
            }
            match feed.next(POLL.min(heartbeat)) {
                Next::Event(event) => {
                    // Whatever else is already queued goes out in the same write: a client
                    // that fell behind catches up in one syscall, not one per event.
                    self.write_chunk(&frame(&event))?;
                    let closed =
                        feed.drain_ready(BATCH, |event| self.write_chunk(&frame(event)))?;
                    self.writer.flush()?;
                    if let Some(reason) = closed {
                        let why = close_text(reason, feed.last_seq());
                        return Ok(Some(format!("closed {why}, resume with Last-Event-ID")));
                    }
                }
                Next::Idle if last_write.elapsed() >= heartbeat => self.chunk(": keepalive\n\n")?,
                Next::Idle => continue,
                Next::Closed(reason) => {
                    let why = close_text(reason, feed.last_seq());
                    return Ok(Some(format!("closed {why}, resume with Last-Event-ID")));
                }
            }
            last_write = Instant::now();
        }
    }

    fn head(&mut self) -> io::Result<()> {
        let mut head = String::from(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\nX-Accel-Buffering: no\r\n",
        );
        if let Some(origin) = &self.cors_origin {
            head.push_str(&format!(
                "Access-Control-Allow-Origin: {origin}\r\nVary: Origin\r\n"
            ));
        }
        head.push_str("\r\n");
        self.writer.write_all(head.as_bytes())?;
        // A comment first, so clients see the stream open before the first event.
        self.chunk(": connected\n\n")
    }

    fn event(&mut self, event: &Published) -> io::Result<()> {
        self.chunk(&frame(event))
    }

    fn chunk(&mut self, data: &str) -> io::Result<()> {
        self.write_chunk(data)?;
        self.writer.flush()
    }

    /// One chunk into the writer's buffer, not flushed.
    fn write_chunk(&mut self, data: &str) -> io::Result<()> {
        write!(self.writer, "{:x}\r\n{data}\r\n", data.len())
    }

    fn finish(&mut self) -> io::Result<()> {
        self.writer.write_all(b"0\r\n\r\n")?;
        self.writer.flush()
    }
}

/// One event as an SSE frame.
pub(crate) fn frame(event: &Published) -> String {
    match event.seq {
        Some(seq) => format!("id: {seq}\ndata: {}\n\n", event.json),
        None => format!("data: {}\n\n", event.json),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stored_events_carry_an_id_and_deltas_do_not() {
        let stored = Published::new(Some(3), json!({"type": "text"}));
        let text = frame(&stored);
        assert!(
            text.starts_with("id: 3\ndata: {") && text.ends_with("}\n\n"),
            "{text}"
        );
        let delta = Published::new(None, json!({"type": "text_delta"}));
        assert_eq!(frame(&delta), "data: {\"type\":\"text_delta\"}\n\n");
    }
}
