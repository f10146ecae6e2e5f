//! The HTTP layer: a fixed pool of request threads over tiny_http, the route table, REST
//! handlers, SSE and WebSocket streams.
//!
//! - `mod.rs`: the pool, dispatch (auth, CORS, routing), panic → 500, one log line per request.
//! - `router.rs`: the route table. `error.rs`: `ApiError` → status + JSON. `reply.rs`: responses.
//! - `request.rs`: query string and capped JSON bodies. `auth.rs`, `cors.rs`, `host.rs` (the
//!   DNS-rebinding guard), `limits.rs` (rate limits and stream caps).
//! - `connections.rs` (idle keep-alive sweeper, body timeouts) and `heads.rs` (slow or oversized
//!   request heads): the timeouts tiny_http does not have.
//! - `sessions.rs`, `messages.rs`, `events.rs`, `health.rs`: REST resources; `metrics.rs`
//!   (`/metrics`, Prometheus text). `handle` records every request into the app's metrics.
//! - `streams.rs` (stream thread registry), `feed.rs` (replay + live), `sse.rs`, `ws.rs`,
//!   `socket.rs` (an owned duplicate of a connection's socket).
//! - `vnc_proxy.rs` (`/ws/vnc[/{id}]`: WebSocket ⇄ VNC), `vnc_info.rs` (`/api/vnc/info`),
//!   `novnc.rs` (the noVNC client under `/novnc/`).
//! - `openapi/` (`/openapi.json`, checked against the route table), `docs.rs` (Swagger UI at
//!   `/docs/`).
//! - `ui.rs` (the web page at `/` and `/ui/…`, embedded), `static_files.rs` (what serving any
//!   static file needs: path checks, types, validators and 304s, gzip).

mod auth;
mod connections;
mod cors;
mod docs;
mod error;
mod events;
mod feed;
mod heads;
mod health;
mod host;
mod limits;
mod messages;
mod metrics;
mod novnc;
mod openapi;
mod reply;
mod request;
mod router;
mod sessions;
mod socket;
mod sse;
mod static_files;
mod streams;
mod ui;
mod vnc_info;
mod vnc_proxy;
mod ws;

use std::net::{Shutdown, SocketAddr, TcpListener};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tiny_http::{Method, Request, Server};

use self::connections::{Connections, Sweeper};
pub use self::error::ApiError;
use self::limits::{Client, Limits, StreamSlot};
pub use self::openapi::{document as openapi_document, openapi_path};
use self::reply::Reply;
use self::router::{Handler, Match};
pub use self::router::{RouteInfo, route_list};
use self::streams::{POLL, StreamStart, Streams};
use self::vnc_proxy::LinkCount;
use crate::app::App;

/// How long a refused (413) body may take to drain before the connection is dropped.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// A declared body beyond this is not drained at all (see [`refuse_huge_body`]).
const DRAIN_LIMIT: usize = 64 << 20;

/// A running HTTP server. Dropping it shuts it down too.
pub struct ServerHandle {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    pool: Vec<JoinHandle<()>>,
    streams: Streams,
    vnc_links: LinkCount,
    /// Closes idle keep-alive connections; stopped after the pool.
    sweeper: Option<Sweeper>,
}

impl ServerHandle {
    /// The bound address (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many SSE/WebSocket streams are open.
    pub fn stream_count(&self) -> usize {
        self.streams.count()
    }

    /// How many VNC proxy links are open (each is also one of the streams).
    pub fn vnc_link_count(&self) -> usize {
        self.vnc_links.get()
    }

    /// Stops accepting, ends streams and joins every pool and stream thread.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.pool.drain(..) {
            if thread.join().is_err() {
                log::error!("an HTTP pool thread panicked");
            }
        }
        self.streams.shutdown();
        drop(self.sweeper.take());
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// What every pool thread shares.
struct Ctx {
    app: App,
    streams: Streams,
    vnc_links: LinkCount,
    connections: Arc<Connections>,
    local_port: u16,
    limits: Arc<Limits>,
}

/// Serves `app` on an already bound listener with the configured pool size.
pub fn serve(listener: TcpListener, app: App) -> std::io::Result<ServerHandle> {
    let addr = listener.local_addr()?;
    let server = Arc::new(Server::from_listener(listener, None).map_err(std::io::Error::other)?);
    let stop = Arc::new(AtomicBool::new(false));
    let threads = app.config.http.threads;
    let http = &app.config.http;
    let connections = Connections::new(addr, http);
    let limits = Limits::new(http);
    let sweeper = connections.start_sweeper()?;
    let vnc_links = LinkCount::new(app.metrics.streams().vnc.clone());
    let ctx = Arc::new(Ctx {
        app,
        streams: Streams::default(),
        vnc_links,
        connections,
        local_port: addr.port(),
        limits,
    });
    let mut pool = Vec::with_capacity(threads);
    for n in 0..threads {
        let (server, stop, ctx) = (server.clone(), stop.clone(), ctx.clone());
        let thread = std::thread::Builder::new()
            .name(format!("http-{n}"))
            .spawn(move || pool_loop(&server, &stop, &ctx))?;
        pool.push(thread);
    }
    Ok(ServerHandle {
        addr,
        stop,
        pool,
        streams: ctx.streams.clone(),
        vnc_links: ctx.vnc_links.clone(),
        sweeper: Some(sweeper),
    })
}

/// One pool thread: takes requests until the stop flag is set. The last thread to leave
/// drops the server, which closes the listener.
fn pool_loop(server: &Server, stop: &AtomicBool, ctx: &Ctx) {
    while !stop.load(Ordering::SeqCst) {
        match server.recv_timeout(POLL) {
            Ok(Some(request)) => handle(ctx, request),
            Ok(None) => {}
            Err(err) => {
                log::error!("http: accepting failed: {err}");
                std::thread::sleep(POLL);
            }
        }
    }
}

/// What dispatch decided.
enum Outcome {
    Reply(Reply),
    Stream(StreamStart),
}

/// Answers one request, logs it (the path without its query string: tokens live there) and
/// records it by route pattern (never the raw path: label values must stay bounded).
fn handle(ctx: &Ctx, mut request: Request) {
    let started = Instant::now();
    let method = request.method().clone();
    let path: String = request::path(request.url()).chars().take(200).collect();
    let route = router::pattern_for(&path).unwrap_or("unmatched");
    let record = |status| {
        let took = started.elapsed();
        ctx.app
            .metrics
            .http_request(method.as_str(), route, status, took);
    };
    let origin = cors::allowed_origin(&request, &ctx.app.config.http.cors_origins);
    let _in_use = ctx.connections.on_request(&request);
    if refuse_huge_body(ctx, &request) {
        std::mem::forget(request);
        log_request(&method, &path, 413, started);
        record(413);
        return;
    }
    let outcome = catch_unwind(AssertUnwindSafe(|| dispatch(ctx, &mut request)));
    let status = match outcome {
        Ok(Outcome::Reply(reply)) => respond(ctx, request, reply, origin.as_deref()),
        Ok(Outcome::Stream(start)) => start_stream(ctx, request, start, origin),
        Err(_) => {
            log::error!("http: handler for {method} {path} panicked");
            respond(ctx, request, ApiError::internal().into(), origin.as_deref())
        }
    };
    log_request(&method, &path, status, started);
    record(status);
}

fn log_request(method: &Method, path: &str, status: u16, started: Instant) {
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    log::info!("{method} {} {status} {ms:.1}ms", path.escape_debug());
}

/// Auth, CORS preflight and routing, then the handler.
fn dispatch(ctx: &Ctx, request: &mut Request) -> Outcome {
    match try_dispatch(ctx, request) {
        Ok(outcome) => outcome,
        Err(err) => Outcome::Reply(err.into()),
    }
}

fn try_dispatch(ctx: &Ctx, request: &mut Request) -> Result<Outcome, ApiError> {
    let config = &ctx.app.config.http;
    limits::check_head(request, config.max_header_bytes)?;
    host::check(request, &ctx.app.config)?;
    let path = request::path(request.url()).to_string();
    if *request.method() == Method::Options {
        return cors::preflight(request, &path, &config.cors_origins)
            .map(Outcome::Reply)
            .ok_or_else(|| ApiError::not_found(format!("no route for {path}")));
    }
    let found = router::find(request.method(), &path);
    let public = matches!(found, Ok(Match::Found { public: true, .. }));
    if !public {
        auth::check(request, &config.api_tokens)?;
    }
    if let Ok(Match::Found {
        rate: Some(rate), ..
    }) = &found
    {
        let client = Client::of(request, config);
        ctx.limits.take(*rate, client, Instant::now())?;
    }
    match found? {
        Match::WrongMethod(allow) => Err(ApiError::method_not_allowed(
            request.method().as_str(),
            &allow,
        )),
        Match::Found {
            handler: Handler::Rest(handler),
            params,
            ..
        } => Ok(Outcome::Reply(handler(&ctx.app, request, &params)?)),
        Match::Found {
            handler: Handler::Stream(handler),
            params,
            ..
        } => Ok(Outcome::Stream(handler(&ctx.app, request, &params)?)),
    }
}

/// Sends a JSON reply; returns its status. A refused body gets a bounded drain time.
fn respond(ctx: &Ctx, mut request: Request, reply: Reply, origin: Option<&str>) -> u16 {
    let status = reply.status;
    if !drain_chunked_body(ctx, &mut request) {
        // More body than we accept: the connection cannot be reused; close it after replying.
        if let Some(socket) = connection_socket(ctx, &request) {
            let _ = socket.shutdown(Shutdown::Read);
        }
    }
    if let Some(socket) = (status == 413)
        .then(|| connection_socket(ctx, &request))
        .flatten()
    {
        let _ = socket.set_read_timeout(Some(DRAIN_TIMEOUT));
    }
    // The whole body is in memory: send it with its length. (tiny_http would chunk one of
    // 32 KiB or more, which costs a send per chunk and the chunk framing, for nothing.)
    let response = cors::decorate(reply, origin)
        .into_response()
        .with_chunked_threshold(usize::MAX);
    if let Err(err) = request.respond(response) {
        log::debug!("http: response not sent: {err}");
    }
    status
}

/// Reads what a handler left of a chunked body (one refused before reading it: 401, 404, 405…).
/// tiny_http drains a sized body when the request drops, but not a chunked one: its rest would
/// be parsed as the connection's next request (a bare 400, and the next real request lost).
/// `false` when more than MAX_BODY_BYTES remained.
fn drain_chunked_body(ctx: &Ctx, request: &mut Request) -> bool {
    let chunked = request.headers().iter().any(|h| {
        h.field.equiv("Transfer-Encoding")
            && h.value.as_str().to_ascii_lowercase().contains("chunked")
    });
    if !chunked || request.body_length().is_some() {
        return true;
    }
    let limit = ctx.app.config.http.max_body_bytes as u64;
    let mut rest = std::io::Read::take(request.as_reader(), limit + 1);
    matches!(std::io::copy(&mut rest, &mut std::io::sink()), Ok(n) if n <= limit)
}

/// tiny_http drains an unread body on drop into one buffer of the declared size, which for an
/// absurd `Content-Length` could abort the process. Such a request is answered 413 on the raw
/// socket, the connection is shut, and the request is leaked instead of dropped (its
/// connection thread stays parked; a bounded cost per abusive request, logged).
fn refuse_huge_body(ctx: &Ctx, request: &Request) -> bool {
    if request.body_length().is_none_or(|len| len <= DRAIN_LIMIT) {
        return false;
    }
    let Some(mut socket) = connection_socket(ctx, request) else {
        return false;
    };
    log::warn!("http: refusing a {:?}-byte body", request.body_length());
    let body = ApiError::too_large(ctx.app.config.http.max_body_bytes)
        .body()
        .to_string();
    let head = format!(
        "HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = socket.set_write_timeout(Some(DRAIN_TIMEOUT));
    let _ = std::io::Write::write_all(&mut socket, (head + &body).as_bytes());
    let _ = socket.shutdown(Shutdown::Both);
    true
}

fn connection_socket(ctx: &Ctx, request: &Request) -> Option<std::net::TcpStream> {
    socket::duplicate(*request.remote_addr()?, ctx.local_port)
}

/// Hands a validated stream request to its own thread; returns the status sent.
fn start_stream(ctx: &Ctx, request: Request, start: StreamStart, origin: Option<String>) -> u16 {
    let slot = match stream_slot(ctx, &start) {
        Ok(slot) => slot,
        Err(err) => return respond(ctx, request, err.into(), origin.as_deref()),
    };
    let sockets = connection_socket(ctx, &request).and_then(|s| Some((s.try_clone().ok()?, s)));
    let Some((handle_socket, socket)) = sockets else {
        log::error!("http: could not duplicate the connection socket for a stream");
        return respond(ctx, request, ApiError::internal().into(), origin.as_deref());
    };
    ctx.connections.hand_off(request.remote_addr().copied());
    let (app, stop) = (ctx.app.clone(), ctx.streams.stop_flag());
    let gauges = ctx.app.metrics.streams();
    let (name, status, spawned) = match start {
        StreamStart::Sse(plan) => {
            let writer = request.into_writer();
            let stream = sse::SseStream {
                app,
                plan,
                writer,
                socket,
                cors_origin: origin,
                stop,
            };
            let open = gauges.sse.track();
            let spawned = ctx.streams.spawn("sse", handle_socket, move || {
                let _open = (open, slot);
                stream.run()
            });
            ("sse", 200, spawned)
        }
        StreamStart::Ws(plan) => {
            // VNC links count themselves (`LinkCount`) once bridged.
            let open =
                matches!(plan.kind, ws::WsKind::Events { .. }).then(|| gauges.websocket.track());
            let rate = ctx
                .limits
                .for_client(Client::of(&request, &ctx.app.config.http));
            let response = ws::accept_response(&plan);
            let upgraded = request.upgrade("websocket", response);
            let stream = ws::WsStream {
                app,
                plan,
                upgraded,
                socket,
                stop,
                vnc_links: ctx.vnc_links.clone(),
                rate,
            };
            let spawned = ctx.streams.spawn("ws", handle_socket, move || {
                let _open = (open, slot);
                stream.run()
            });
            ("ws", 101, spawned)
        }
    };
    if let Err(err) = spawned {
        log::warn!("http: {name} stream not started: {err}");
    }
    status
}

/// The slot an event stream (SSE or event WebSocket) takes; VNC links take none.
fn stream_slot(ctx: &Ctx, start: &StreamStart) -> Result<Option<StreamSlot>, ApiError> {
    let session_id = match start {
        StreamStart::Sse(plan) => &plan.session_id,
        StreamStart::Ws(ws::WsPlan {
            kind: ws::WsKind::Events { session_id, .. },
            ..
        }) => session_id,
        StreamStart::Ws(_) => return Ok(None),
    };
    ctx.limits.open_stream(session_id).map(Some)
}
