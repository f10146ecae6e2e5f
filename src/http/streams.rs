//! Stream threads (SSE and WebSocket): started from a pool thread, owned by the server.
//!
//! Each stream runs on its own thread so open streams never hold a pool thread. The registry
//! keeps each thread's handle with a duplicate of its socket: shutting the server down sets
//! the stop flag (stream loops poll it at least every [`POLL`]), shuts every socket down (so
//! a blocked write or read returns at once) and joins every thread.

use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use super::sse::SsePlan;
use super::ws::WsPlan;

/// The longest a stream thread waits before looking at the stop flag.
pub(crate) const POLL: Duration = Duration::from_millis(200);

/// A validated stream request, ready to take over its connection.
pub(crate) enum StreamStart {
    Sse(SsePlan),
    Ws(WsPlan),
}

/// The registry of stream threads. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Streams {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    stopping: Arc<AtomicBool>,
    threads: Mutex<Vec<(TcpStream, JoinHandle<()>)>>,
}

impl Streams {
    /// The flag stream loops poll; set once at shutdown.
    pub(crate) fn stop_flag(&self) -> Arc<AtomicBool> {
        self.inner.stopping.clone()
    }

    fn threads(&self) -> MutexGuard<'_, Vec<(TcpStream, JoinHandle<()>)>> {
        self.inner.threads.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `body` on a new named thread that owns the stream whose socket `socket` duplicates
    /// (kept to shut the stream down).
    pub(crate) fn spawn(
        &self,
        name: &str,
        socket: TcpStream,
        body: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<()> {
        let mut threads = self.threads();
        if self.inner.stopping.load(Ordering::SeqCst) {
            let _ = socket.shutdown(Shutdown::Both);
            return Err(std::io::Error::other("the server is shutting down"));
        }
        threads.retain(|(_, handle)| !handle.is_finished());
        let handle = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(body)?;
        threads.push((socket, handle));
        Ok(())
    }

    /// How many stream threads are running.
    pub(crate) fn count(&self) -> usize {
        self.threads()
            .iter()
            .filter(|(_, h)| !h.is_finished())
            .count()
    }

    /// Stops every stream and joins its thread.
    pub(crate) fn shutdown(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        let threads = std::mem::take(&mut *self.threads());
        for (socket, _) in &threads {
            let _ = socket.shutdown(Shutdown::Both);
        }
        for (_, handle) in threads {
            if handle.join().is_err() {
                log::error!("a stream thread panicked");
            }
        }
    }
}
