//! Per-client limits: rate limits on message posts and session creation, and caps on open
//! event streams.
//!
//! Rate limits are token buckets, one per client per kind: a client is the bearer token it
//! authenticated with, or its IP address when no tokens are configured. A bucket holds a
//! minute's allowance (`RATE_LIMIT_MESSAGES` / `RATE_LIMIT_SESSIONS`) and refills evenly over
//! the minute; an empty bucket answers 429 with the seconds until the next token. A full
//! bucket carries no information, so buckets idle long enough to have refilled are evicted,
//! and the table never holds more than [`MAX_BUCKETS`] (the stalest goes first).
//!
//! Stream slots count open SSE and event WebSocket streams in total and per session. A slot is
//! taken before the stream is answered and given back when its [`StreamSlot`] drops, which the
//! stream thread owns, so the count falls as soon as a stream ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tiny_http::Request;

use super::auth;
use super::error::{ApiError, ApiResult};
use crate::config::HttpConfig;

/// Most buckets kept at once (each is a few dozen bytes).
const MAX_BUCKETS: usize = 4096;

/// What a rate limit applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Rate {
    /// `POST /api/sessions/{id}/messages` and WebSocket `{"type":"message"}` frames.
    Messages,
    /// `POST /api/sessions`.
    Sessions,
}

/// Who a rate limit counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Client {
    /// The index of the configured token the request carried.
    Token(usize),
    /// The client's address (no tokens configured).
    Addr(IpAddr),
    /// Neither is known.
    Unknown,
}

impl Client {
    /// The client of an authenticated request.
    pub(crate) fn of(request: &Request, config: &HttpConfig) -> Client {
        if let Some(index) = auth::token_index(request, &config.api_tokens) {
            return Client::Token(index);
        }
        match request.remote_addr() {
            Some(addr) => Client::Addr(addr.ip()),
            None => Client::Unknown,
        }
    }
}

/// Every limit of one server. Shared by the pool threads and the stream threads.
pub(crate) struct Limits {
    messages: u32,
    sessions: u32,
    buckets: Mutex<HashMap<(Rate, Client), Bucket>>,
    max_streams: usize,
    max_per_session: usize,
    streams: Mutex<StreamCounts>,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

#[derive(Default)]
struct StreamCounts {
    total: usize,
    per_session: HashMap<String, usize>,
}

/// An open stream's slot; given back on drop.
pub(crate) struct StreamSlot {
    limits: Arc<Limits>,
    session_id: String,
}

/// A rate check bound to one client, for a stream thread (WebSocket message frames).
#[derive(Clone)]
pub(crate) struct RateCheck {
    limits: Arc<Limits>,
    client: Client,
}

impl RateCheck {
    /// Takes one token of `rate`, or says how long to wait.
    pub(crate) fn take(&self, rate: Rate) -> ApiResult<()> {
        self.limits.take(rate, self.client, Instant::now())
    }
}

impl Limits {
    pub(crate) fn new(config: &HttpConfig) -> Arc<Limits> {
        Arc::new(Limits {
            messages: config.rate_limit_messages,
            sessions: config.rate_limit_sessions,
            buckets: Mutex::new(HashMap::new()),
            max_streams: config.max_streams,
            max_per_session: config.max_streams_per_session,
            streams: Mutex::new(StreamCounts::default()),
        })
    }

    /// A check of `client` that a stream thread can keep.
    pub(crate) fn for_client(self: &Arc<Self>, client: Client) -> RateCheck {
        RateCheck {
            limits: self.clone(),
            client,
        }
    }

    fn per_minute(&self, rate: Rate) -> u32 {
        match rate {
            Rate::Messages => self.messages,
            Rate::Sessions => self.sessions,
        }
    }

    /// Takes one token from `client`'s bucket for `rate`; 429 with `Retry-After` when empty.
    pub(crate) fn take(&self, rate: Rate, client: Client, now: Instant) -> ApiResult<()> {
        let per_minute = self.per_minute(rate);
        if per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(per_minute);
        let per_second = capacity / 60.0;
        let mut buckets = lock(&self.buckets);
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(&(rate, client)) {
            evict(&mut buckets, now);
        }
        let bucket = buckets.entry((rate, client)).or_insert(Bucket {
            tokens: capacity,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - bucket.tokens) / per_second).ceil().max(1.0) as u64;
        Err(ApiError::rate_limited(rate_detail(rate, per_minute), wait))
    }

    /// Takes a stream slot for `session_id`; 503 `too_many_streams` when a cap is reached.
    pub(crate) fn open_stream(self: &Arc<Self>, session_id: &str) -> ApiResult<StreamSlot> {
        let mut counts = lock(&self.streams);
        if counts.total >= self.max_streams {
            return Err(too_many_streams(format!(
                "{} event streams are open, the most this server allows (MAX_STREAMS); \
                 close one or retry later",
                counts.total
            )));
        }
        let open = counts.per_session.get(session_id).copied().unwrap_or(0);
        if open >= self.max_per_session {
            return Err(too_many_streams(format!(
                "{open} event streams are open on this session, the most allowed \
                 (MAX_STREAMS_PER_SESSION); close one or retry later"
            )));
        }
        counts.total += 1;
        *counts
            .per_session
            .entry(session_id.to_string())
            .or_insert(0) += 1;
        Ok(StreamSlot {
            limits: self.clone(),
            session_id: session_id.to_string(),
        })
    }

    #[cfg(test)]
    fn bucket_count(&self) -> usize {
        lock(&self.buckets).len()
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut counts = lock(&self.limits.streams);
        counts.total = counts.total.saturating_sub(1);
        if let Some(open) = counts.per_session.get_mut(&self.session_id) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                counts.per_session.remove(&self.session_id);
            }
        }
    }
}

/// 431 when the request line and headers exceed `max` bytes. tiny_http reads a head whole
/// before we see it; one sent quickly is refused here, one still arriving by the sweeper
/// ([`super::heads`]).
pub(crate) fn check_head(request: &Request, max: usize) -> ApiResult<()> {
    let line = request.method().as_str().len() + request.url().len() + " HTTP/1.1\r\n".len() + 1;
    let headers: usize = request
        .headers()
        .iter()
        .map(|h| h.field.as_str().as_str().len() + h.value.as_str().len() + 4)
        .sum();
    if line + headers + 2 > max {
        return Err(ApiError::headers_too_large(max));
    }
    Ok(())
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Drops buckets idle for a minute (they have refilled: forgetting them changes nothing);
/// when that frees nothing, drops the stalest one.
fn evict(buckets: &mut HashMap<(Rate, Client), Bucket>, now: Instant) {
    let minute = Duration::from_secs(60);
    buckets.retain(|_, b| now.saturating_duration_since(b.updated) < minute);
    if buckets.len() < MAX_BUCKETS {
        return;
    }
    if let Some(stalest) = buckets
        .iter()
        .min_by_key(|(_, b)| b.updated)
        .map(|(k, _)| *k)
    {
        buckets.remove(&stalest);
    }
}

fn rate_detail(rate: Rate, per_minute: u32) -> String {
    let (what, var) = match rate {
        Rate::Messages => ("messages", "RATE_LIMIT_MESSAGES"),
        Rate::Sessions => ("session creations", "RATE_LIMIT_SESSIONS"),
    };
    format!("more than {per_minute} {what} per minute ({var}); retry after the delay given")
}

fn too_many_streams(detail: String) -> ApiError {
    ApiError::new(503, "too_many_streams", detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn limits(env: &[(&str, &str)]) -> Arc<Limits> {
        let config = Config::from_sources(&[], |name| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
        .unwrap();
        Limits::new(&config.http)
    }

    #[test]
    fn an_empty_bucket_says_when_the_next_token_comes() {
        let limits = limits(&[("RATE_LIMIT_SESSIONS", "3")]);
        let (client, start) = (Client::Token(0), Instant::now());
        for _ in 0..3 {
            limits.take(Rate::Sessions, client, start).unwrap();
        }
        let err = limits.take(Rate::Sessions, client, start).unwrap_err();
        assert_eq!(
            (err.status, err.code, err.retry_after),
            (429, "rate_limited", Some(20))
        );
        let later = start + Duration::from_secs(20);
        assert!(limits.take(Rate::Sessions, client, later).is_ok());
        assert!(limits.take(Rate::Sessions, Client::Token(1), start).is_ok());
        assert!(limits.take(Rate::Messages, client, start).is_ok());
    }

    #[test]
    fn zero_disables_and_the_table_stays_bounded() {
        let limits = limits(&[("RATE_LIMIT_MESSAGES", "0")]);
        let now = Instant::now();
        for _ in 0..1000 {
            assert!(limits.take(Rate::Messages, Client::Unknown, now).is_ok());
        }
        for n in 0..(MAX_BUCKETS as u32 + 100) {
            let client = Client::Addr(IpAddr::from(n.to_be_bytes()));
            limits.take(Rate::Sessions, client, now).unwrap();
        }
        assert!(limits.bucket_count() <= MAX_BUCKETS);
    }

    #[test]
    fn stream_slots_are_capped_and_given_back() {
        let limits = limits(&[("MAX_STREAMS", "3"), ("MAX_STREAMS_PER_SESSION", "2")]);
        let a1 = limits.open_stream("a").unwrap();
        let _a2 = limits.open_stream("a").unwrap();
        assert_eq!(
            limits.open_stream("a").err().unwrap().code,
            "too_many_streams"
        );
        let _b1 = limits.open_stream("b").unwrap();
        assert_eq!(limits.open_stream("c").err().unwrap().status, 503);
        drop(a1);
        assert!(limits.open_stream("a").is_ok());
    }
}
