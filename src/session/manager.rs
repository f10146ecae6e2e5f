//! The session registry: creates sessions, queues messages, starts and stops workers.
//!
//! One worker thread per session with work; the registry maps session ids to their worker's
//! channel and shared state. Retiring an idle worker and handing it new work are both decided
//! under the registry lock, so a message is never sent to a worker that is about to exit
//! (sends are on unbounded channels and never block).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use serde_json::json;

use super::worker::{Command, Worker, WorkerState};
use super::{EventKind, EventSink, Result, SessionError, SessionParams};
use crate::config::Config;
use crate::config::DesktopMode;
use crate::desktop::{DesktopError, DesktopManager};
use crate::store::{MessageRecord, SessionRecord, Store};

/// Longest automatic title taken from a first message.
const TITLE_CHARS: usize = 80;

/// Cheap-clone handle to the registry of active sessions.
#[derive(Clone)]
pub struct SessionManager {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<Config>,
    store: Arc<dyn Store>,
    events: EventSink,
    desktops: DesktopManager,
    workers: Mutex<HashMap<String, WorkerHandle>>,
    /// Threads of workers that retired themselves; joined at shutdown.
    retired: Mutex<Vec<JoinHandle<()>>>,
    shutting_down: AtomicBool,
}

struct WorkerHandle {
    tx: Sender<Command>,
    state: WorkerState,
    thread: Option<JoinHandle<()>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl SessionManager {
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        events: EventSink,
        desktops: DesktopManager,
    ) -> SessionManager {
        let inner = Inner {
            config,
            store,
            events,
            desktops,
            workers: Mutex::new(HashMap::new()),
            retired: Mutex::new(Vec::new()),
            shutting_down: AtomicBool::new(false),
        };
        SessionManager {
            inner: Arc::new(inner),
        }
    }

    /// Creates a session with validated settings.
    pub fn create(&self, params: &SessionParams) -> Result<SessionRecord> {
        let id = uuid::Uuid::new_v4().to_string();
        Ok(self
            .inner
            .store
            .create_session(&params.to_new_session(&id))?)
    }

    /// Stores a user message (committed before this returns), emits `user_message`, and
    /// wakes the session's worker. Messages are answered in the order they were posted.
    pub fn post_message(&self, session_id: &str, text: &str) -> Result<MessageRecord> {
        if self.inner.shutting_down.load(Ordering::SeqCst) {
            return Err(SessionError::ShuttingDown);
        }
        if text.trim().is_empty() {
            return Err(SessionError::Invalid {
                field: "content".into(),
                detail: "must not be empty".into(),
            });
        }
        self.check_active_cap(session_id)?;
        let id = uuid::Uuid::new_v4().to_string();
        self.ensure_own_desktop(session_id)?;
        let content = json!([{"type": "text", "text": text}]);
        let store = &self.inner.store;
        let insert = || store.insert_message(session_id, &id, "user", &content, true);
        let user_message = |record: &MessageRecord| EventKind::UserMessage {
            message_id: record.id.clone(),
            content: json!(text),
        };
        let (record, event) = self
            .inner
            .events
            .emit_after(session_id, insert, user_message)?;
        // From here on the message is stored, so it is accepted: answering an error now would
        // make the client post it again. What follows is best effort.
        if let Err(err) = event {
            log::warn!("session {session_id}: the user_message event was not stored: {err}");
        }
        if let Err(err) = store.set_title_if_empty(session_id, &title_from(text)) {
            log::warn!("session {session_id}: the title was not set: {err}");
        }
        if let Err(err) = self.wake(session_id) {
            log::error!("session {session_id}: {err}; the message waits for the next wake-up");
        }
        Ok(record)
    }

    /// A session without a live worker would start one: refused (before anything is stored)
    /// when `MAX_ACTIVE_SESSIONS` workers are live. Posts racing for the last place may
    /// overshoot by a few; resuming at start-up is not capped.
    fn check_active_cap(&self, session_id: &str) -> Result<()> {
        let session = &self.inner.config.session;
        let workers = lock(&self.inner.workers);
        if workers.contains_key(session_id) || workers.len() < session.max_active {
            return Ok(());
        }
        Err(SessionError::TooManyActive {
            max: session.max_active,
            idle_timeout: session.idle_timeout,
        })
    }

    /// In per-session mode, a session's first message is its desktop's first need: starting it
    /// here makes a full house (`MAX_DESKTOPS`) a clear 503 before anything is queued.
    fn ensure_own_desktop(&self, session_id: &str) -> Result<()> {
        let desktops = &self.inner.desktops;
        if desktops.mode() != DesktopMode::PerSession {
            return Ok(());
        }
        if self.inner.store.get_session(session_id)?.is_none() {
            return Err(SessionError::NotFound(session_id.to_string()));
        }
        match desktops.for_session(session_id) {
            Ok(_) => Ok(()),
            Err(DesktopError::ShuttingDown) => Err(SessionError::ShuttingDown),
            Err(err) => Err(SessionError::Unavailable(err.to_string())),
        }
    }

    /// Cancels the running turn, or the next queued one if the worker has not started it
    /// yet (Stop pressed right after Send); `Ok(false)` when there is nothing to cancel.
    pub fn cancel(&self, session_id: &str) -> Result<bool> {
        if self.inner.store.get_session(session_id)?.is_none() {
            return Err(SessionError::NotFound(session_id.to_string()));
        }
        let queued = self.inner.store.queued_count(session_id)? > 0;
        let state = lock(&self.inner.workers)
            .get(session_id)
            .map(|w| w.state.clone());
        Ok(state.is_some_and(|state| state.cancel_turn(queued)))
    }

    /// Stops the worker and its tools, ends the streams, deletes the rows; `Ok(false)` if
    /// the session did not exist.
    pub fn delete(&self, session_id: &str) -> Result<bool> {
        let handle = lock(&self.inner.workers).remove(session_id);
        if let Some(handle) = handle {
            stop_and_join(handle);
        }
        self.inner.desktops.release(session_id);
        let deleted = self.inner.store.delete_session(session_id)?;
        self.inner.events.broadcaster().close_session(session_id);
        Ok(deleted)
    }

    /// Whether a turn is running for the session.
    pub fn is_running(&self, session_id: &str) -> bool {
        lock(&self.inner.workers)
            .get(session_id)
            .is_some_and(|w| w.state.is_running())
    }

    /// How many sessions have a live worker.
    pub fn active_count(&self) -> usize {
        lock(&self.inner.workers).len()
    }

    /// How many turns are running now.
    pub fn running_count(&self) -> usize {
        lock(&self.inner.workers)
            .values()
            .filter(|w| w.state.is_running())
            .count()
    }

    /// Starts workers for sessions interrupted by a restart (a turn was running, or messages
    /// are queued); returns how many.
    pub fn resume_all(&self) -> Result<usize> {
        let ids = self.inner.store.sessions_to_resume()?;
        for id in &ids {
            log::info!("session {id}: resuming after restart");
            self.wake(id)?;
        }
        Ok(ids.len())
    }

    /// Stops every worker at once: [`shutdown_within`](Self::shutdown_within) with no grace.
    pub fn shutdown(&self) {
        self.shutdown_within(Duration::ZERO);
    }

    /// Graceful shutdown. New messages are refused from now on; running turns get up to
    /// `grace` to finish (no new turn starts: queued messages stay queued for the next start);
    /// what still runs then is cancelled but left marked as running, so the next start resumes
    /// it. Joins every worker thread; returns how many turns were cancelled.
    pub fn shutdown_within(&self, grace: Duration) -> usize {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + grace;
        let handles: Vec<WorkerHandle> =
            lock(&self.inner.workers).drain().map(|(_, h)| h).collect();
        let mut workers = Vec::with_capacity(handles.len());
        for WorkerHandle { tx, state, thread } in handles {
            state.finish();
            // Without its sender a worker exits as soon as its turn (if any) has ended.
            drop(tx);
            workers.extend(thread.map(|thread| (state, thread)));
        }
        let running = workers.iter().filter(|(s, _)| s.is_running()).count();
        if running > 0 {
            log::info!("waiting up to {grace:?} for {running} running turn(s) to finish");
        }
        wait_for_exits(&workers, deadline);
        let mut cancelled = 0;
        for (state, _) in &workers {
            cancelled += usize::from(state.is_running());
            state.stop();
        }
        if cancelled > 0 {
            log::info!("cancelled {cancelled} turn(s); they resume at the next start");
        }
        for (_, thread) in workers {
            let _ = thread.join();
        }
        let retired: Vec<JoinHandle<()>> = lock(&self.inner.retired).drain(..).collect();
        for thread in retired {
            let _ = thread.join();
        }
        cancelled
    }

    /// Hands the session's worker a wake-up, starting the worker if it has none.
    fn wake(&self, session_id: &str) -> Result<()> {
        if self.inner.shutting_down.load(Ordering::SeqCst) {
            return Ok(());
        }
        let mut workers = lock(&self.inner.workers);
        if let Some(handle) = workers.get(session_id)
            && handle.tx.send(Command::Wake).is_ok()
        {
            return Ok(());
        }
        let handle = self.spawn_worker(session_id)?;
        let _ = handle.tx.send(Command::Wake);
        workers.insert(session_id.to_string(), handle);
        Ok(())
    }

    fn spawn_worker(&self, session_id: &str) -> Result<WorkerHandle> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let state = WorkerState::default();
        let inner = &self.inner;
        let worker = Worker::new(
            session_id,
            inner.config.clone(),
            inner.store.clone(),
            inner.events.clone(),
            inner.desktops.clone(),
            state.clone(),
        );
        let manager = self.clone();
        let thread = std::thread::Builder::new()
            .name(format!(
                "session-{}",
                &session_id[..session_id.len().min(8)]
            ))
            .spawn(move || worker.run(rx, manager))
            .map_err(|err| {
                log::error!("session {session_id}: cannot start a worker thread: {err}");
                SessionError::Unavailable(format!("cannot start a worker for the session: {err}"))
            })?;
        Ok(WorkerHandle {
            tx,
            state,
            thread: Some(thread),
        })
    }

    /// Called by an idle worker: agrees to its exit if no work arrived meanwhile. Decided
    /// under the registry lock, so no wake-up can slip in between the check and the removal.
    pub(super) fn try_retire(&self, session_id: &str, rx: &Receiver<Command>) -> bool {
        {
            let mut workers = lock(&self.inner.workers);
            if !rx.is_empty() {
                return false;
            }
            if let Some(thread) = workers.remove(session_id).and_then(|mut h| h.thread.take()) {
                self.reap_retired(thread);
            }
        }
        // An idle session gives its desktop back (outside the lock: stopping takes a moment);
        // the next message starts a fresh one.
        self.inner.desktops.release(session_id);
        true
    }

    /// Keeps the retiring worker's handle and joins those that have finished, so exited
    /// threads do not keep their stacks mapped until shutdown.
    fn reap_retired(&self, thread: JoinHandle<()>) {
        let mut retired = lock(&self.inner.retired);
        retired.push(thread);
        let (done, live): (Vec<_>, Vec<_>) = retired.drain(..).partition(|t| t.is_finished());
        *retired = live;
        for thread in done {
            let _ = thread.join();
        }
    }
}

/// How often a graceful shutdown looks whether the workers have exited.
const EXIT_POLL: Duration = Duration::from_millis(20);

/// Waits until every worker thread has exited or `deadline` passes (std has no timed join).
fn wait_for_exits(workers: &[(WorkerState, JoinHandle<()>)], deadline: Instant) {
    while workers.iter().any(|(_, t)| !t.is_finished()) && Instant::now() < deadline {
        std::thread::sleep(EXIT_POLL.min(deadline.saturating_duration_since(Instant::now())));
    }
}

/// Tells a worker to stop (cancelling its turn), closes its channel and joins it.
fn stop_and_join(mut handle: WorkerHandle) {
    handle.state.stop();
    drop(handle.tx);
    if let Some(thread) = handle.thread.take() {
        let _ = thread.join();
    }
}

/// A title from a first message: whitespace folded, at most [`TITLE_CHARS`] characters.
fn title_from(text: &str) -> String {
    let folded = text.split_whitespace().collect::<Vec<_>>().join(" ");
    folded.chars().take(TITLE_CHARS).collect()
}
