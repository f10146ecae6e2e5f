//! The cancellation token of a session's running turn.
//!
//! `cancel()` is called from another thread (an HTTP handler or a WebSocket reader) while the
//! session worker is blocked in a model call, a retry back-off or a tool. It sets a flag, wakes
//! every [`CancelToken::sleep`], and runs the hooks the blocked code registered (shut the HTTP
//! agent down, kill the shell's process group), so the worker unblocks within milliseconds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

type Hook = Box<dyn Fn() + Send + Sync>;

/// A cheap-clone cancellation flag with wake-ups and abort hooks.
#[derive(Clone, Default)]
pub struct CancelToken {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    cancelled: Mutex<bool>,
    wake: Condvar,
    hooks: Mutex<Vec<(u64, Arc<Hook>)>>,
    next_id: AtomicU64,
}

/// Removes its hook from the token when dropped.
pub struct HookGuard {
    token: CancelToken,
    id: u64,
}

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels: sets the flag, wakes sleepers and runs every registered hook once.
    pub fn cancel(&self) {
        *lock(&self.inner.cancelled) = true;
        self.inner.wake.notify_all();
        // Hooks run outside the lock: a hook may take a while (killing a process group).
        let hooks: Vec<Arc<Hook>> = lock(&self.inner.hooks)
            .iter()
            .map(|(_, hook)| hook.clone())
            .collect();
        for hook in hooks {
            hook();
        }
    }

    /// Clears the flag for the next turn. Registered hooks stay.
    pub fn reset(&self) {
        *lock(&self.inner.cancelled) = false;
    }

    pub fn is_cancelled(&self) -> bool {
        *lock(&self.inner.cancelled)
    }

    /// Sleeps up to `duration`; returns `false` at once if cancelled (before or during).
    pub fn sleep(&self, duration: Duration) -> bool {
        let deadline = Instant::now() + duration;
        let mut cancelled = lock(&self.inner.cancelled);
        loop {
            if *cancelled {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            cancelled = match self.inner.wake.wait_timeout(cancelled, deadline - now) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Registers `hook` to run on `cancel()` until the returned guard is dropped. If the token
    /// is already cancelled the hook also runs at once, so a late registration cannot miss it.
    pub fn on_cancel(&self, hook: impl Fn() + Send + Sync + 'static) -> HookGuard {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let hook: Arc<Hook> = Arc::new(Box::new(hook));
        lock(&self.inner.hooks).push((id, hook.clone()));
        if self.is_cancelled() {
            hook();
        }
        HookGuard {
            token: self.clone(),
            id,
        }
    }
}

impl Drop for HookGuard {
    fn drop(&mut self) {
        lock(&self.token.inner.hooks).retain(|(id, _)| *id != self.id);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn cancel_wakes_a_sleeper_early() {
        let token = CancelToken::new();
        let other = token.clone();
        let started = Instant::now();
        let handle = std::thread::spawn(move || other.sleep(Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(20));
        token.cancel();
        assert!(!handle.join().unwrap());
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn hooks_run_while_registered_and_not_after_drop() {
        let token = CancelToken::new();
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        let guard = token.on_cancel(move || {
            seen.fetch_add(1, Ordering::SeqCst);
        });
        token.cancel();
        assert_eq!(count.load(Ordering::SeqCst), 1);
        drop(guard);
        token.reset();
        token.cancel();
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn late_hook_on_cancelled_token_runs_immediately() {
        let token = CancelToken::new();
        token.cancel();
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        let _guard = token.on_cancel(move || {
            seen.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(count.load(Ordering::SeqCst), 1);
        assert!(!token.sleep(Duration::from_secs(1)));
    }
}
