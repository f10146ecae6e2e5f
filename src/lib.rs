//! computer-use-server: a self-hosted backend that runs Claude computer-use agents.
//!
//! Module map (each module's own `//!` says more):
//! - [`config`]: the only place that reads flags and environment variables.
//! - [`app`]: the cheap-clone handle every component receives (config, store, sessions).
//! - [`http`]: the tiny_http request pool, the route table, REST handlers, SSE and WebSocket.
//! - [`session`]: the session registry, one worker thread per active session, events and fan-out.
//! - [`agent`]: the sampling loop and request assembly (system prompt, caching, images).
//! - [`anthropic`]: the blocking Messages API client (streaming, retries).
//! - [`desktop`]: X displays (Xvfb, window manager, x11vnc) and in-process screenshots.
//! - [`tools`]: the tools the model can call (computer, bash, text editor) per tool version.
//! - [`store`]: persistence behind one trait, SQLite and PostgreSQL.
//! - [`metrics`]: the in-process metrics registry, rendered as Prometheus text at `/metrics`.
//! - [`cancel`]: the cancellation token that stops a running turn.
//! - [`util`]: small helpers (time formatting, base64, logging).
#![deny(unsafe_code)]

pub mod agent;
pub mod anthropic;
pub mod app;
pub mod cancel;
pub mod config;
pub mod desktop;
pub mod http;
pub mod metrics;
pub mod session;
pub mod store;
pub mod tools;
pub mod util;
