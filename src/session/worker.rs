//! The per-session worker thread: owns the conversation, the tools and the running turn.
//!
//! It sleeps on its command channel; a `Wake` makes it drain the session's queue: resume an
//! interrupted turn if the store says one was running, then claim queued user messages one by
//! one (FIFO) and run a turn for each. It ends when its sender is dropped (delete, shutdown)
//! or after an idle timeout (the manager agrees, see `SessionManager::try_retire`); its tools,
//! and so the bash process, end with it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::manager::SessionManager;
use super::{EventKind, EventSink, SessionParams};
use crate::agent::{Turn, TurnOutcome};
use crate::anthropic::Client;
use crate::cancel::CancelToken;
use crate::config::{Config, DesktopMode};
use crate::desktop::{DesktopAccess, DesktopManager};
use crate::store::{Store, StoreError};
use crate::tools::{ToolCollection, ToolEnv};

/// What the worker is told.
#[derive(Debug)]
pub enum Command {
    /// There may be queued work.
    Wake,
}

/// Shared between the worker and the registry. Starting a turn, ending it and cancelling
/// happen under one lock, so a cancel can neither be wiped by the next turn's reset nor
/// land on a turn that started after it was asked for.
#[derive(Clone, Default)]
pub struct WorkerState {
    pub cancel: CancelToken,
    turn: Arc<Mutex<TurnFlags>>,
    /// Set when the worker must stop at the next safe point (delete, shutdown).
    stopping: Arc<AtomicBool>,
}

#[derive(Default)]
struct TurnFlags {
    running: bool,
    /// Cancel the next turn as soon as it starts (cancel asked while a message was queued).
    cancel_next: bool,
}

impl WorkerState {
    fn flags(&self) -> MutexGuard<'_, TurnFlags> {
        self.turn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn begin_turn(&self) {
        let mut flags = self.flags();
        self.cancel.reset();
        flags.running = true;
        if std::mem::take(&mut flags.cancel_next) || self.is_stopping() {
            self.cancel.cancel();
        }
    }

    fn end_turn(&self) {
        self.flags().running = false;
    }

    pub fn is_running(&self) -> bool {
        self.flags().running
    }

    /// Cancels the running turn, or, if none runs but `queued` work waits, the next one.
    /// Returns whether anything will be cancelled.
    pub fn cancel_turn(&self, queued: bool) -> bool {
        let mut flags = self.flags();
        if flags.running {
            self.cancel.cancel();
        } else if queued {
            flags.cancel_next = true;
        }
        flags.running || queued
    }

    /// Asks the worker to stop once the running turn (if any) has ended, without cancelling
    /// it: no new turn starts, queued messages stay queued (graceful shutdown).
    pub fn finish(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Asks the worker to stop at its next safe point, cancelling any running turn.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _flags = self.flags();
        self.cancel.cancel();
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
}

/// How a pass over the queue ended.
enum Drained {
    /// Nothing left to do.
    Done,
    /// The store failed; try again after a pause.
    Retry,
    /// The session no longer exists.
    Gone,
}

/// Pause before retrying a pass over the queue after a store error.
const STORE_RETRY: Duration = Duration::from_secs(2);

pub struct Worker {
    session_id: String,
    config: Arc<Config>,
    store: Arc<dyn Store>,
    events: EventSink,
    desktops: DesktopManager,
    state: WorkerState,
    client: Client,
    tools: Option<(String, ToolCollection)>,
}

impl Worker {
    pub fn new(
        session_id: &str,
        config: Arc<Config>,
        store: Arc<dyn Store>,
        events: EventSink,
        desktops: DesktopManager,
        state: WorkerState,
    ) -> Worker {
        let client = Client::new(&config.model).with_metrics(events.metrics().clone());
        Worker {
            session_id: session_id.to_string(),
            config,
            store,
            events,
            desktops,
            state,
            client,
            tools: None,
        }
    }

    /// The thread body.
    pub fn run(mut self, rx: Receiver<Command>, manager: SessionManager) {
        let idle = self.config.session.idle_timeout;
        let mut retry = false;
        loop {
            let wait = if retry { STORE_RETRY } else { idle };
            let drained = match rx.recv_timeout(wait) {
                Ok(Command::Wake) => self.drain(),
                Err(RecvTimeoutError::Timeout) if retry => self.drain(),
                Err(RecvTimeoutError::Timeout) if manager.try_retire(&self.session_id, &rx) => {
                    break;
                }
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            retry = matches!(drained, Drained::Retry);
            if matches!(drained, Drained::Gone) && manager.try_retire(&self.session_id, &rx) {
                break;
            }
        }
        if let Some((_, mut tools)) = self.tools.take() {
            tools.shutdown();
        }
        log::debug!("session {}: worker stopped", self.session_id);
    }

    /// Runs queued work until there is none (or the worker must stop).
    fn drain(&mut self) -> Drained {
        match self.try_drain() {
            Ok(drained) => drained,
            Err(err) => {
                log::error!("session {}: {err}; retrying", self.session_id);
                Drained::Retry
            }
        }
    }

    fn try_drain(&mut self) -> Result<Drained, StoreError> {
        let Some(session) = self.store.get_session(&self.session_id)? else {
            return Ok(Drained::Gone);
        };
        if session.status == "running" && !self.state.is_stopping() {
            self.state.begin_turn();
            if !self.turn("resuming the interrupted turn") {
                return Ok(Drained::Retry);
            }
        }
        while !self.state.is_stopping() {
            // The turn begins before the claim, so a cancel that arrives in between is kept.
            self.state.begin_turn();
            let claimed = self.store.claim_queued_message(&self.session_id);
            let Ok(Some(message)) = claimed else {
                self.state.end_turn();
                return claimed.map(|_| Drained::Done);
            };
            log::debug!(
                "session {}: processing message {}",
                self.session_id,
                message.id
            );
            if !self.turn("processing") {
                return Ok(Drained::Retry);
            }
        }
        Ok(Drained::Done)
    }

    /// Runs one turn with status bookkeeping; a panic inside becomes an error event.
    /// `begin_turn` has been called. `false` when the store failed mid-turn: the session stays
    /// `running` and the turn is resumed when the queue is drained again.
    fn turn(&mut self, message: &str) -> bool {
        // Also the proof that the store takes writes: no model call is made (and paid for)
        // when its answer could not be stored.
        if let Err(err) = self.store.set_session_status(&self.session_id, "running") {
            log::warn!("session {}: cannot start a turn: {err}", self.session_id);
            self.state.end_turn();
            return false;
        }
        self.emit(EventKind::status("processing", message));
        let outcome = catch_unwind(AssertUnwindSafe(|| self.run_turn())).unwrap_or_else(|_| {
            let why = "internal error: the turn panicked";
            self.emit(EventKind::error(why, Some("see the server log".into())));
            TurnOutcome::Failed(why.into())
        });
        self.state.end_turn();
        if self.state.is_stopping() && outcome == TurnOutcome::Cancelled {
            // Interrupted by shutdown, not by the user: leave `running` so a restart resumes it.
            return true;
        }
        if let TurnOutcome::StorageFailed(why) = &outcome {
            log::warn!(
                "session {}: {why}; the turn resumes when storage works",
                self.session_id
            );
            return false;
        }
        let _ = self.store.set_session_status(&self.session_id, "idle");
        self.emit(match outcome {
            TurnOutcome::Completed => EventKind::status("completed", "turn completed"),
            TurnOutcome::Cancelled => EventKind::status("cancelled", "turn cancelled"),
            TurnOutcome::Failed(why) => EventKind::status("error", why),
            TurnOutcome::StorageFailed(_) => unreachable!("returned above"),
        });
        true
    }

    fn run_turn(&mut self) -> TurnOutcome {
        let session = match self.store.get_session(&self.session_id) {
            Ok(Some(session)) => session,
            Ok(None) => return TurnOutcome::Failed("the session was deleted".into()),
            Err(err) => return TurnOutcome::StorageFailed(format!("storage failed: {err}")),
        };
        let params = SessionParams::from_record(&session);
        #[cfg(feature = "fault-injection")]
        panic_if_asked(self.store.as_ref(), &self.session_id);
        self.ensure_tools(&params);
        let display_num = self.display_num();
        let Some((_, tools)) = self.tools.as_mut() else {
            return TurnOutcome::Failed("internal error: no tools".into());
        };
        let mut turn = Turn {
            session_id: &self.session_id,
            params: &params,
            store: self.store.as_ref(),
            events: &self.events,
            client: &self.client,
            tools,
            cancel: &self.state.cancel,
            max_iterations: self.config.model.max_iterations,
            display_num,
        };
        turn.run()
    }

    /// The display the session's GUI programs go to (for the system prompt), starting the
    /// desktop if it is not running: a turn is a desktop's first need.
    fn display_num(&self) -> Option<u32> {
        if self.desktops.mode() == DesktopMode::None {
            return self.config.desktop.display_num;
        }
        match self.desktops.for_session(&self.session_id) {
            Ok(display) => Some(display.display_num),
            Err(err) => {
                log::warn!("session {}: no desktop: {err}", self.session_id);
                None
            }
        }
    }

    /// The session's tools, created on first use and kept for the worker's life (so the bash
    /// process survives between turns); rebuilt only if the tool version changed.
    fn ensure_tools(&mut self, params: &SessionParams) {
        let version = params.tool_version.as_str();
        if self.tools.as_ref().is_none_or(|(v, _)| v != version) {
            let desktop = (self.desktops.mode() != DesktopMode::None).then(|| DesktopAccess {
                manager: self.desktops.clone(),
                session_id: self.session_id.clone(),
            });
            let env = ToolEnv {
                bash_timeout: self.config.session.bash_timeout,
                desktop,
                settle_delay: self.config.desktop.settle_delay,
            };
            let tools = ToolCollection::for_version(params.tool_version, &env)
                .with_metrics(self.events.metrics().clone());
            self.tools = Some((version.to_string(), tools));
        }
    }

    fn emit(&self, kind: EventKind) {
        if let Err(err) = self.events.emit(&self.session_id, kind) {
            log::warn!(
                "session {}: could not store an event: {err}",
                self.session_id
            );
        }
    }
}

/// Test-only (feature `fault-injection`, never in a normal build): a turn whose last message
/// is this user text panics inside the worker, to prove a panic stays within its turn.
#[cfg(feature = "fault-injection")]
const PANIC_MESSAGE: &str = "fault-injection: panic in the worker";

#[cfg(feature = "fault-injection")]
fn panic_if_asked(store: &dyn Store, session_id: &str) {
    let conversation = store.conversation(session_id).unwrap_or_default();
    let last = conversation.last();
    if last.is_some_and(|m| m.role == "user" && m.content[0]["text"] == PANIC_MESSAGE) {
        panic!("fault injection: the worker panics as asked");
    }
}
