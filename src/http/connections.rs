//! Keep-alive connections that tiny_http would keep forever.
//!
//! tiny_http serves each connection on a thread of its internal pool until the client closes
//! it, and sets no timeouts. Its pool can queue a new connection while counting a thread that
//! is already taken as free (it happens in a burst, as when a browser opens several
//! connections to load a page), and the queued connection then waits until some keep-alive
//! connection ends, which a browser may put off indefinitely. A socket timeout cannot help:
//! tiny_http is already blocked reading the next request when a request reaches us, and a
//! blocked read keeps the timeout it started with. So we keep a duplicate of every connection's
//! socket and a sweeper shuts down those idle for longer than `KEEPALIVE_TIMEOUT`, which frees
//! their threads; the parked connection then waits at most about that long. Connections that
//! become streams (SSE, WebSocket) are handed off and never swept.
//!
//! The duplicate also carries `BODY_TIMEOUT` (and `TCP_NODELAY`, see [`Connections::track`]), so a client that declares a body and never sends
//! it cannot hold a thread either. The same sweeper also cuts connections that never deliver a
//! request head ([`Heads`]: `HEADER_TIMEOUT`, `MAX_HEADER_BYTES`), and gets connections out
//! of tiny_http's queue when that race strands them behind streams, which keep their threads.

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, Sender};
use tiny_http::Request;

use super::heads::Heads;
use super::socket;
use crate::config::HttpConfig;

pub(crate) struct Connections {
    local_port: u16,
    keepalive: Duration,
    body: Duration,
    tracked: Mutex<HashMap<SocketAddr, Tracked>>,
    heads: Heads,
}

struct Tracked {
    socket: TcpStream,
    last_active: Instant,
    /// Requests of this connection being handled now.
    busy: usize,
}

/// Marks its connection busy until dropped (the request has been answered).
pub(crate) struct InUse {
    connections: Arc<Connections>,
    remote: Option<SocketAddr>,
}

/// The sweeper thread; stops and is joined on drop.
pub(crate) struct Sweeper {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Connections {
    pub(crate) fn new(local: SocketAddr, config: &HttpConfig) -> Arc<Connections> {
        Arc::new(Connections {
            local_port: local.port(),
            keepalive: config.keepalive_timeout,
            body: config.body_timeout,
            tracked: Mutex::new(HashMap::new()),
            heads: Heads::new(local, config),
        })
    }

    fn tracked(&self) -> MutexGuard<'_, HashMap<SocketAddr, Tracked>> {
        self.tracked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Called before anything reads the request: the connection is busy until the returned
    /// guard drops.
    pub(crate) fn on_request(self: &Arc<Self>, request: &Request) -> InUse {
        let remote = request.remote_addr().copied();
        if let Some(remote) = remote {
            self.heads.requested(remote);
            if !self.mark_busy(remote) {
                self.track(remote);
            }
        }
        InUse {
            connections: self.clone(),
            remote,
        }
    }

    fn mark_busy(&self, remote: SocketAddr) -> bool {
        let mut tracked = self.tracked();
        let Some(entry) = tracked.get_mut(&remote) else {
            return false;
        };
        entry.busy += 1;
        entry.last_active = Instant::now();
        true
    }

    /// Duplicates a new connection's socket (outside the lock: it scans descriptors).
    fn track(&self, remote: SocketAddr) {
        let Some(socket) = socket::duplicate(remote, self.local_port) else {
            log::debug!("http: connection from {remote} not found");
            return;
        };
        let _ = socket.set_read_timeout(Some(self.body));
        let _ = socket.set_write_timeout(Some(self.body));
        // tiny_http writes a response in two parts when the body outgrows its 1 KiB buffer
        // (the head, then the body); with Nagle's algorithm the body's last segment then
        // waits for the ACK of the head, which the client delays (40 ms on Linux) as it
        // waits for the rest. Every response is complete when written, so send at once.
        let _ = socket.set_nodelay(true);
        let entry = Tracked {
            socket,
            last_active: Instant::now(),
            busy: 1,
        };
        self.tracked().insert(remote, entry);
    }

    /// A stream took the connection over: it is no longer swept.
    pub(crate) fn hand_off(&self, remote: Option<SocketAddr>) {
        if let Some(remote) = remote {
            self.tracked().remove(&remote);
        }
    }

    /// Shuts down connections idle past the keep-alive timeout; returns how many.
    fn sweep(&self) -> usize {
        let mut tracked = self.tracked();
        let idle: Vec<SocketAddr> = tracked
            .iter()
            .filter(|(_, t)| t.busy == 0 && t.last_active.elapsed() >= self.keepalive)
            .map(|(remote, _)| *remote)
            .collect();
        for remote in &idle {
            // Only the read side: tiny_http's read loop sees the end and frees its thread,
            // while a request it read just before (not yet marked busy here) can still be
            // answered; the connection closes once no response is pending.
            if let Some(entry) = tracked.remove(remote) {
                let _ = entry.socket.shutdown(Shutdown::Read);
            }
        }
        idle.len()
    }

    /// Starts the sweeper, which runs a few times per keep-alive period (and scans for
    /// unfinished heads a few times per header timeout).
    pub(crate) fn start_sweeper(self: &Arc<Self>) -> std::io::Result<Sweeper> {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let period = (self.keepalive / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(1))
            .min(self.heads.period());
        let connections = self.clone();
        let thread = std::thread::Builder::new()
            .name("http-keepalive".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(period) {
                    connections.sweep();
                    connections.heads.scan_if_due();
                }
            })?;
        Ok(Sweeper {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for InUse {
    fn drop(&mut self) {
        let Some(remote) = self.remote else { return };
        if let Some(entry) = self.connections.tracked().get_mut(&remote) {
            entry.busy = entry.busy.saturating_sub(1);
            entry.last_active = Instant::now();
        }
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
