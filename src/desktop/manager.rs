//! Finds or starts desktops and stops the ones it started.
//!
//! Every desktop has an owner (the shared desktop, or one session) and a slot that is either
//! `Starting` or `Running`. The first caller for an owner marks the slot `Starting` and starts
//! the desktop without holding the lock; other callers for that owner wait on a condition
//! variable (bounded) instead of starting a second one. Shutdown refuses new starts, lets
//! starts in flight finish (they stop what they started when they see it), then stops the rest.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::instance::Instance;
use super::launch::START_TIMEOUT;
use super::{DesktopError, Display};
use crate::config::{DesktopConfig, DesktopMode};

/// How long a caller waits for a desktop another caller is starting (Xvfb plus x11vnc with its
/// retries, with margin).
const WAIT_FOR_START: Duration = Duration::from_secs(START_TIMEOUT.as_secs() * 5);

/// A process this server started for a desktop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesktopProcess {
    /// `Xvfb`, `openbox` or `x11vnc`.
    pub program: &'static str,
    pub pid: u32,
}

/// Cheap-clone handle to the desktops of this server.
#[derive(Clone)]
pub struct DesktopManager {
    inner: Arc<Inner>,
}

struct Inner {
    config: DesktopConfig,
    state: Mutex<State>,
    /// Notified whenever a slot changes or shutdown begins.
    changed: Condvar,
    /// The warm-up thread, joined at shutdown.
    warm_up: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Default)]
struct State {
    shutting_down: bool,
    slots: HashMap<Owner, Slot>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Owner {
    Shared,
    Session(String),
}

enum Slot {
    Starting,
    Running(Box<Instance>),
}

/// What a caller of [`DesktopManager::get_or_start`] found.
enum Claim {
    Running(Display),
    /// The slot is ours to start; `dead` holds a desktop that died, to be stopped.
    Start {
        dead: Option<Slot>,
    },
}

impl DesktopManager {
    pub fn new(config: &DesktopConfig) -> DesktopManager {
        DesktopManager {
            inner: Arc::new(Inner {
                config: config.clone(),
                state: Mutex::new(State::default()),
                changed: Condvar::new(),
                warm_up: Mutex::new(None),
            }),
        }
    }

    pub fn mode(&self) -> DesktopMode {
        self.inner.config.mode
    }

    pub fn config(&self) -> &DesktopConfig {
        &self.inner.config
    }

    /// The desktop a session uses, started if it is not running: the shared one, or the
    /// session's own in per-session mode (subject to `MAX_DESKTOPS`).
    pub fn for_session(&self, session_id: &str) -> Result<Display, DesktopError> {
        match self.mode() {
            DesktopMode::None => Err(DesktopError::Disabled),
            DesktopMode::Shared => self.get_or_start(Owner::Shared),
            DesktopMode::PerSession => self.get_or_start(Owner::Session(session_id.to_string())),
        }
    }

    /// The shared desktop, started if it is not running (`Disabled` unless in shared mode).
    pub fn shared(&self) -> Result<Display, DesktopError> {
        match self.mode() {
            DesktopMode::Shared => self.get_or_start(Owner::Shared),
            _ => Err(DesktopError::Disabled),
        }
    }

    /// Starts the shared desktop in the background so that it is ready before the first
    /// action (shared mode only; the thread is joined at shutdown).
    pub fn warm_up(&self) {
        if self.mode() != DesktopMode::Shared {
            return;
        }
        let mut slot = lock(&self.inner.warm_up);
        if slot.is_some() {
            return;
        }
        let manager = self.clone();
        let spawned = thread::Builder::new()
            .name("desktop-warm-up".into())
            .spawn(move || {
                if let Err(err) = manager.shared() {
                    log::warn!("the shared desktop could not be started ahead of use: {err}");
                }
            });
        match spawned {
            Ok(handle) => *slot = Some(handle),
            Err(err) => log::warn!("desktop warm-up thread: {err}"),
        }
    }

    /// The desktop a session would use, if it is running (never starts one). `None` as the
    /// session means the shared desktop.
    pub fn running(&self, session_id: Option<&str>) -> Option<Display> {
        let owner = self.owner_of(session_id)?;
        match lock(&self.inner.state).slots.get(&owner) {
            Some(Slot::Running(instance)) => Some(instance.display().clone()),
            _ => None,
        }
    }

    /// The processes this server started for a desktop (empty if it started none).
    pub fn processes(&self, session_id: Option<&str>) -> Vec<DesktopProcess> {
        let Some(owner) = self.owner_of(session_id) else {
            return Vec::new();
        };
        match lock(&self.inner.state).slots.get(&owner) {
            Some(Slot::Running(instance)) => instance
                .processes()
                .into_iter()
                .map(|(program, pid)| DesktopProcess { program, pid })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Stops a session's own desktop (per-session mode; no-op otherwise). Returns once its
    /// processes are gone; a desktop still starting is waited for, then stopped.
    pub fn release(&self, session_id: &str) {
        if self.mode() != DesktopMode::PerSession {
            return;
        }
        let owner = Owner::Session(session_id.to_string());
        let instance = self.take_when_started(&owner);
        if let Some(mut instance) = instance {
            instance.stop();
        }
    }

    /// How many desktops this server has running.
    pub fn running_count(&self) -> usize {
        let state = lock(&self.inner.state);
        state
            .slots
            .values()
            .filter(|slot| matches!(slot, Slot::Running(_)))
            .count()
    }

    /// Stops every desktop this server started and refuses new ones.
    pub fn shutdown(&self) {
        {
            lock(&self.inner.state).shutting_down = true;
            self.inner.changed.notify_all();
        }
        if let Some(handle) = lock(&self.inner.warm_up).take() {
            let _ = handle.join();
        }
        for mut instance in self.take_all() {
            instance.stop();
        }
    }

    /// Whose desktop `session_id` (None: the shared one) uses in this mode.
    fn owner_of(&self, session_id: Option<&str>) -> Option<Owner> {
        match (self.mode(), session_id) {
            (DesktopMode::None, _) => None,
            (DesktopMode::Shared, _) | (DesktopMode::PerSession, None) => Some(Owner::Shared),
            (DesktopMode::PerSession, Some(id)) => Some(Owner::Session(id.to_string())),
        }
    }

    /// The owner's running desktop; else waits for one being started; else starts it.
    fn get_or_start(&self, owner: Owner) -> Result<Display, DesktopError> {
        let dead = match self.claim(&owner)? {
            Claim::Running(display) => return Ok(display),
            Claim::Start { dead } => dead,
        };
        drop(dead); // stops what is left of a desktop that died, outside the lock
        let started = match owner {
            Owner::Shared => Instance::start_shared(&self.inner.config),
            Owner::Session(_) => Instance::start_own(&self.inner.config),
        };
        self.finish_start(owner, started)
    }

    /// Under the lock: the owner's running desktop, or the slot marked `Starting` for us.
    fn claim(&self, owner: &Owner) -> Result<Claim, DesktopError> {
        let deadline = Instant::now() + WAIT_FOR_START;
        let mut state = lock(&self.inner.state);
        loop {
            if state.shutting_down {
                return Err(DesktopError::ShuttingDown);
            }
            let died = match state.slots.get_mut(owner) {
                Some(Slot::Running(instance)) if instance.is_alive() => {
                    return Ok(Claim::Running(instance.display().clone()));
                }
                Some(Slot::Running(_)) => true,
                Some(Slot::Starting) => false,
                None => break,
            };
            if died {
                log::warn!("the desktop of {owner:?} died; starting a new one");
                let dead = state.slots.insert(owner.clone(), Slot::Starting);
                return Ok(Claim::Start { dead });
            }
            let (next, waited) = self.wait(state, deadline);
            state = next;
            if !waited {
                return Err(wait_timed_out());
            }
        }
        self.check_limit(&state, owner)?;
        state.slots.insert(owner.clone(), Slot::Starting);
        Ok(Claim::Start { dead: None })
    }

    /// Per-session desktops (running or starting) may not exceed `MAX_DESKTOPS`.
    fn check_limit(&self, state: &State, owner: &Owner) -> Result<(), DesktopError> {
        let max = self.inner.config.max_desktops;
        let in_use = state
            .slots
            .keys()
            .filter(|o| matches!(o, Owner::Session(_)))
            .count();
        match owner {
            Owner::Session(_) if in_use >= max => Err(DesktopError::LimitReached { max }),
            _ => Ok(()),
        }
    }

    /// Publishes a start's outcome, or undoes it if shutdown began meanwhile.
    fn finish_start(
        &self,
        owner: Owner,
        started: Result<Instance, DesktopError>,
    ) -> Result<Display, DesktopError> {
        let mut state = lock(&self.inner.state);
        let outcome = match started {
            Ok(instance) if state.shutting_down => {
                Err((Some(instance), DesktopError::ShuttingDown))
            }
            Ok(instance) => Ok(instance),
            Err(err) => Err((None, err)),
        };
        let result = match outcome {
            Ok(instance) => {
                let display = instance.display().clone();
                state.slots.insert(owner, Slot::Running(Box::new(instance)));
                Ok(display)
            }
            Err((instance, err)) => {
                state.slots.remove(&owner);
                drop(state);
                // Dropping stops it, outside the lock.
                drop(instance);
                Err(err)
            }
        };
        self.inner.changed.notify_all();
        result
    }

    /// Removes the owner's desktop from the table once it is not starting any more.
    fn take_when_started(&self, owner: &Owner) -> Option<Instance> {
        let deadline = Instant::now() + WAIT_FOR_START;
        let mut state = lock(&self.inner.state);
        while let Some(Slot::Starting) = state.slots.get(owner) {
            let (next, waited) = self.wait(state, deadline);
            state = next;
            if !waited {
                log::warn!("desktop of {owner:?} not released: {}", wait_timed_out());
                return None;
            }
        }
        let taken = match state.slots.remove(owner) {
            Some(Slot::Running(instance)) => Some(*instance),
            _ => None,
        };
        self.inner.changed.notify_all();
        taken
    }

    /// Waits for starts in flight to end (they see the shutdown), then takes every desktop.
    fn take_all(&self) -> Vec<Instance> {
        let deadline = Instant::now() + WAIT_FOR_START;
        let mut state = lock(&self.inner.state);
        while state
            .slots
            .values()
            .any(|slot| matches!(slot, Slot::Starting))
        {
            let (next, waited) = self.wait(state, deadline);
            state = next;
            if !waited {
                log::warn!("shutdown: {}", wait_timed_out());
                break;
            }
        }
        let slots = std::mem::take(&mut state.slots);
        slots
            .into_values()
            .filter_map(|slot| match slot {
                Slot::Running(instance) => Some(*instance),
                Slot::Starting => None,
            })
            .collect()
    }

    /// Waits for a slot change; false (without waiting) once `deadline` has passed.
    fn wait<'a>(
        &self,
        state: MutexGuard<'a, State>,
        deadline: Instant,
    ) -> (MutexGuard<'a, State>, bool) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (state, false);
        }
        let (state, _) = self
            .inner
            .changed
            .wait_timeout(state, left)
            .unwrap_or_else(|e| e.into_inner());
        (state, true)
    }
}

fn wait_timed_out() -> DesktopError {
    DesktopError::StartFailed(format!(
        "the desktop being started by another request was not ready within {}s",
        WAIT_FOR_START.as_secs()
    ))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn manager(mode: &str) -> DesktopManager {
        let config = Config::from_sources(&[], |name| match name {
            "DESKTOP_MODE" => Some(mode.to_string()),
            _ => None,
        })
        .unwrap();
        DesktopManager::new(&config.desktop)
    }

    #[test]
    fn mode_none_is_disabled_and_runs_nothing() {
        let desktops = manager("none");
        assert_eq!(desktops.for_session("s"), Err(DesktopError::Disabled));
        assert_eq!(desktops.shared(), Err(DesktopError::Disabled));
        assert_eq!(desktops.running(None), None);
        desktops.release("s");
        assert_eq!(desktops.running_count(), 0);
    }

    #[test]
    fn after_shutdown_nothing_starts() {
        let desktops = manager("per-session");
        desktops.shutdown();
        assert_eq!(desktops.for_session("s"), Err(DesktopError::ShuttingDown));
        assert_eq!(desktops.running(Some("s")), None);
    }

    #[test]
    fn per_session_mode_has_no_shared_desktop() {
        assert_eq!(manager("per-session").shared(), Err(DesktopError::Disabled));
    }
}
