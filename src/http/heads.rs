//! Connections that have not yet delivered a request head: cut off after `HEADER_TIMEOUT`
//! (slowloris) or once they have sent more than `MAX_HEADER_BYTES` of head (431).
//!
//! tiny_http reads request heads on its own threads with no timeout and no size limit, and we
//! only see a connection once its head is complete. So the sweeper lists the server's accepted
//! sockets itself ([`socket::accepted`]: every descriptor whose local port is ours and that
//! has a peer), remembers when each was first seen, and shuts down those that have produced no
//! request in time. A connection that produced a request is left to the keep-alive sweep (an
//! idle connection between requests is closed after `KEEPALIVE_TIMEOUT`, which bounds a slow
//! second head too) or is a stream. A connection whose complete head waits unread in the
//! kernel is waiting for a tiny_http thread (a thread reads at once), so its clock only starts
//! once a thread takes it: a burst of connections is never cut for the server's own delay,
//! while a slow head is cut on time whether or not a thread has reached it yet. Such a connection
//! may also be stranded in tiny_http's queue for good ([`Heads::unstick`] gets it out). The
//! size check reads how many bytes tiny_http has taken from the socket so far, so a head can
//! overshoot the limit by what arrives within one scan.
//!
//! A scan costs one directory read and one or two `getsockname`/`getpeername` calls per open
//! descriptor, and runs four times per `HEADER_TIMEOUT`, at least every 250 ms and at most ten
//! times a second, not on every keep-alive sweep.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::error::ApiError;
use super::socket;
use crate::config::HttpConfig;

/// How long bytes may wait unread before their connection counts as stranded: a thread of
/// tiny_http's reads a connection it serves at once (a false alarm costs one connection).
const STUCK: Duration = Duration::from_millis(20);

/// Bytes tiny_http may read past a head (its connection buffer).
const READ_AHEAD: u64 = 1024;

pub(crate) struct Heads {
    local_port: u16,
    /// Where a connection to ourselves reaches our listener (see [`Heads::unstick`]).
    kick_addr: SocketAddr,
    timeout: Duration,
    max_bytes: u64,
    period: Duration,
    state: Mutex<State>,
}

struct State {
    seen: HashMap<SocketAddr, Seen>,
    last_scan: Instant,
}

#[derive(Clone, Copy)]
struct Seen {
    first: Instant,
    /// The connection delivered a request (it is no longer ours to time).
    requested: bool,
}

/// Why a connection is cut.
enum Cut {
    Slow,
    TooLarge,
}

impl Heads {
    pub(crate) fn new(local: SocketAddr, config: &HttpConfig) -> Heads {
        let period = (config.header_timeout / 4)
            .clamp(Duration::from_millis(100), Duration::from_millis(250));
        let kick_ip = match local.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        Heads {
            local_port: local.port(),
            kick_addr: SocketAddr::new(kick_ip, local.port()),
            timeout: config.header_timeout,
            max_bytes: config.max_header_bytes as u64,
            period,
            state: Mutex::new(State {
                seen: HashMap::new(),
                last_scan: Instant::now(),
            }),
        }
    }

    /// How often [`Heads::scan_if_due`] scans.
    pub(crate) fn period(&self) -> Duration {
        self.period
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connection delivered a request head.
    pub(crate) fn requested(&self, remote: SocketAddr) {
        let mut state = self.state();
        let seen = state.seen.entry(remote).or_insert(Seen {
            first: Instant::now(),
            requested: true,
        });
        seen.requested = true;
    }

    /// Scans when a period has passed since the last scan; returns how many were cut.
    pub(crate) fn scan_if_due(&self) -> usize {
        {
            let mut state = self.state();
            if state.last_scan.elapsed() < self.period {
                return 0;
            }
            state.last_scan = Instant::now();
        }
        self.scan()
    }

    /// Lists the accepted sockets (outside the lock: it walks every descriptor), forgets the
    /// closed ones, and cuts those past the timeout or the size limit.
    fn scan(&self) -> usize {
        let listed_at = Instant::now();
        let live = socket::accepted(self.local_port);
        let now = Instant::now();
        let mut doomed = Vec::new();
        let mut stranded = 0;
        {
            let mut state = self.state();
            let mut current: HashMap<SocketAddr, Seen> = HashMap::with_capacity(live.len());
            for &(fd, remote) in &live {
                let mut seen = state.seen.get(&remote).copied().unwrap_or(Seen {
                    first: now,
                    requested: false,
                });
                if seen.requested {
                    current.insert(remote, seen);
                    continue;
                }
                let received = socket::received(fd);
                let waiting = received.is_some_and(|r| r.read == 0 && r.queued > 0);
                if received.is_some_and(|r| r.read == 0 && r.queued > 0 && r.since_data >= STUCK) {
                    stranded += 1;
                }
                if waiting && socket::queued_head_complete(fd, self.max_bytes as usize) {
                    // The client sent a whole head and nobody has read it yet: the connection
                    // waits for one of tiny_http's threads, which is our delay, not the
                    // client's. Its clock starts once a thread takes it.
                    seen.first = now;
                }
                current.insert(remote, seen);
                if now.duration_since(seen.first) >= self.timeout {
                    doomed.push((fd, remote, Cut::Slow));
                } else if received.is_some_and(|r| r.read > self.max_bytes + READ_AHEAD) {
                    doomed.push((fd, remote, Cut::TooLarge));
                }
            }
            for (_, remote, _) in &doomed {
                current.remove(remote);
            }
            // A connection accepted after the listing may already have sent its request.
            let newer = state.seen.iter().filter(|(_, s)| s.first >= listed_at);
            let newer: Vec<(SocketAddr, Seen)> = newer.map(|(r, s)| (*r, *s)).collect();
            for (remote, seen) in newer {
                current.entry(remote).or_insert(seen);
            }
            state.seen = current;
        }
        for (fd, remote, why) in &doomed {
            self.cut(*fd, *remote, why);
        }
        if stranded > 0 {
            self.unstick(stranded);
        }
        doomed.len()
    }

    /// Gets connections out of tiny_http's queue. Its connection pool counts a thread it has
    /// just woken as still idle, so in a burst a connection can be queued for a thread that
    /// already took another one; it then waits until some connection ends, which for a
    /// stream (it keeps its thread) may be never. A connection that finds no idle thread
    /// makes the pool start one, and that thread, once done with it, takes the queued ones.
    /// So we open a connection to ourselves and close it at once: its thread reads the end
    /// straight away and moves on to a stranded connection, which (a stream) may keep it; so
    /// one such connection per stranded one.
    fn unstick(&self, stranded: usize) {
        log::debug!("http: {stranded} connection(s) wait for a thread; nudging the pool");
        for _ in 0..stranded {
            match TcpStream::connect_timeout(&self.kick_addr, Duration::from_secs(1)) {
                Ok(stream) => drop(stream),
                Err(err) => {
                    log::warn!("http: cannot reach our own listener: {err}");
                    return;
                }
            }
        }
    }

    fn cut(&self, fd: std::os::fd::RawFd, remote: SocketAddr, why: &Cut) {
        let response = match why {
            Cut::Slow => {
                log::warn!(
                    "http: {remote} sent no complete request head within {:?}",
                    self.timeout
                );
                Vec::new()
            }
            Cut::TooLarge => {
                log::warn!(
                    "http: {remote} sent a request head over {} bytes",
                    self.max_bytes
                );
                too_large_response(self.max_bytes)
            }
        };
        socket::refuse(fd, remote, self.local_port, &response);
    }
}

/// A complete 431 response (JSON body, connection closed).
fn too_large_response(max: u64) -> Vec<u8> {
    let body = ApiError::headers_too_large(max as usize).body().to_string();
    format!(
        "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
