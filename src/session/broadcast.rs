//! Fan-out of a session's events to its live subscribers (WebSocket and SSE clients).
//!
//! Slow-consumer policy: each subscriber has a bounded queue (`SUBSCRIBER_QUEUE`). Publishing
//! never blocks: a subscriber whose queue is full is dropped at once, with reason
//! [`CloseReason::Lagged`]; its stream thread drains what is queued, closes the connection, and
//! the client resumes from its last `seq` (a stored event is never lost, only live deltas).
//!
//! Ordering: [`EventSink::emit`] stores and publishes a session's events under that session's
//! emit lock, so subscribers see `seq` strictly increasing even when an HTTP handler (a
//! `user_message`) and the worker emit at the same time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::events::{EventKind, Published};
use crate::metrics::Metrics;
use crate::store::{self, Store};
use crate::util::time::now_rfc3339;

/// Why a subscription ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// Still open (or ended for no recorded reason).
    Open = 0,
    /// The subscriber fell too far behind; it should resume from its last `seq`.
    Lagged = 1,
    /// The session was deleted.
    SessionDeleted = 2,
    /// The server is shutting down.
    Shutdown = 3,
}

/// What a subscriber's receive returns.
#[derive(Debug, PartialEq)]
pub enum Received {
    Event(Published),
    /// Nothing arrived within the timeout (time for a heartbeat).
    Idle,
    Closed(CloseReason),
}

struct Subscriber {
    id: u64,
    /// Unbounded: the bound is kept by [`Broadcaster::publish`] (see [`Broadcaster::subscribe`]).
    tx: Sender<Published>,
    reason: Arc<AtomicU8>,
}

#[derive(Default)]
struct Channel {
    subscribers: Vec<Subscriber>,
    emit_lock: Arc<Mutex<()>>,
}

/// The registry of subscribers, keyed by session id. Cheap to clone.
#[derive(Clone)]
pub struct Broadcaster {
    inner: Arc<Inner>,
}

struct Inner {
    channels: Mutex<HashMap<String, Channel>>,
    queue: usize,
    next_id: AtomicU64,
}

/// A live subscription; dropping it unsubscribes.
pub struct Subscription {
    session_id: String,
    id: u64,
    rx: Receiver<Published>,
    reason: Arc<AtomicU8>,
    broadcaster: Broadcaster,
}

impl Broadcaster {
    /// `queue`: events buffered per subscriber before it is dropped as too slow.
    pub fn new(queue: usize) -> Broadcaster {
        Broadcaster {
            inner: Arc::new(Inner {
                channels: Mutex::new(HashMap::new()),
                queue: queue.max(1),
                next_id: AtomicU64::new(1),
            }),
        }
    }

    fn channels(&self) -> MutexGuard<'_, HashMap<String, Channel>> {
        self.inner
            .channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Subscribes to a session's future events.
    ///
    /// The queue is an unbounded channel whose length `publish` checks: a bounded one
    /// allocates (and touches) all `SUBSCRIBER_QUEUE` slots up front, 40 KiB per subscriber
    /// at the default 1024, while an idle subscriber's queue is empty. Only `publish` sends,
    /// under the registry lock, so the check and the send cannot race.
    pub fn subscribe(&self, session_id: &str) -> Subscription {
        let (tx, rx) = crossbeam_channel::unbounded();
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let reason = Arc::new(AtomicU8::new(CloseReason::Open as u8));
        let subscriber = Subscriber {
            id,
            tx,
            reason: reason.clone(),
        };
        self.channels()
            .entry(session_id.to_string())
            .or_default()
            .subscribers
            .push(subscriber);
        Subscription {
            session_id: session_id.to_string(),
            id,
            rx,
            reason,
            broadcaster: self.clone(),
        }
    }

    /// Delivers an event to every subscriber of the session without blocking; subscribers
    /// whose queue is full are dropped (see the module's slow-consumer policy).
    pub fn publish(&self, session_id: &str, event: &Published) {
        let mut channels = self.channels();
        let Some(channel) = channels.get_mut(session_id) else {
            return;
        };
        let queue = self.inner.queue;
        channel.subscribers.retain(|sub| {
            if sub.tx.len() >= queue {
                sub.reason
                    .store(CloseReason::Lagged as u8, Ordering::SeqCst);
                return false;
            }
            sub.tx.send(event.clone()).is_ok()
        });
    }

    /// Ends every subscription of a session (it was deleted).
    pub fn close_session(&self, session_id: &str) {
        let removed = self.channels().remove(session_id);
        if let Some(channel) = removed {
            for sub in channel.subscribers {
                sub.reason
                    .store(CloseReason::SessionDeleted as u8, Ordering::SeqCst);
            }
        }
    }

    /// Ends every subscription (server shutdown).
    pub fn close_all(&self) {
        let all: Vec<Channel> = self.channels().drain().map(|(_, c)| c).collect();
        for sub in all.into_iter().flat_map(|c| c.subscribers) {
            sub.reason
                .store(CloseReason::Shutdown as u8, Ordering::SeqCst);
        }
    }

    /// How many subscriptions are open, over all sessions.
    pub fn subscriber_count(&self) -> usize {
        self.channels().values().map(|c| c.subscribers.len()).sum()
    }

    /// How many subscriptions a session has.
    pub fn session_subscriber_count(&self, session_id: &str) -> usize {
        self.channels()
            .get(session_id)
            .map_or(0, |c| c.subscribers.len())
    }

    fn emit_lock(&self, session_id: &str) -> Arc<Mutex<()>> {
        self.channels()
            .entry(session_id.to_string())
            .or_default()
            .emit_lock
            .clone()
    }

    fn unsubscribe(&self, session_id: &str, id: u64) {
        let mut channels = self.channels();
        if let Some(channel) = channels.get_mut(session_id) {
            channel.subscribers.retain(|sub| sub.id != id);
        }
    }
}

impl Subscription {
    /// Waits up to `timeout` for the next event.
    pub fn recv_timeout(&self, timeout: Duration) -> Received {
        match self.rx.recv_timeout(timeout) {
            Ok(event) => Received::Event(event),
            Err(RecvTimeoutError::Timeout) => Received::Idle,
            Err(RecvTimeoutError::Disconnected) => Received::Closed(self.reason()),
        }
    }

    /// Every event already queued, without waiting.
    pub fn drain_ready(&self) -> Vec<Published> {
        self.rx.try_iter().collect()
    }

    /// Why the subscription ended (`Open` while it has not).
    pub fn reason(&self) -> CloseReason {
        match self.reason.load(Ordering::SeqCst) {
            1 => CloseReason::Lagged,
            2 => CloseReason::SessionDeleted,
            3 => CloseReason::Shutdown,
            _ => CloseReason::Open,
        }
    }

    pub fn session_id(&self) -> &str {
        &self.session_id
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.broadcaster.unsubscribe(&self.session_id, self.id);
    }
}

/// Stores and publishes events: the one way events enter the system. It also carries the
/// app's [`Metrics`], so a session worker reports its figures where it reports its events.
#[derive(Clone)]
pub struct EventSink {
    store: Arc<dyn Store>,
    broadcaster: Broadcaster,
    metrics: Metrics,
}

impl EventSink {
    pub fn new(store: Arc<dyn Store>, broadcaster: Broadcaster) -> EventSink {
        EventSink {
            store,
            broadcaster,
            metrics: Metrics::default(),
        }
    }

    /// The sink, recording into `metrics` (instead of a registry of its own).
    pub fn with_metrics(mut self, metrics: Metrics) -> EventSink {
        self.metrics = metrics;
        self
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn broadcaster(&self) -> &Broadcaster {
        &self.broadcaster
    }

    /// Persists the event (unless live-only), then publishes it. Returns its `seq`.
    pub fn emit(&self, session_id: &str, kind: EventKind) -> store::Result<Option<i64>> {
        if kind.is_live_only() {
            let payload = kind.to_payload(session_id, &now_rfc3339());
            self.broadcaster
                .publish(session_id, &Published::new(None, payload));
            return Ok(None);
        }
        let ((), stored) = self.emit_after(session_id, || Ok(()), |_| kind)?;
        stored.map(Some)
    }

    /// Runs `before`, then stores and publishes the event built from its result, all under
    /// the session's emit lock: no other event of the session can be stored between the two.
    /// (A posted message becomes claimable by the worker when `before` inserts it; the worker's
    /// first event then waits for the `user_message` event, so clients see the question first.)
    ///
    /// `Err` only when `before` fails. Once it has succeeded its result stands, whatever
    /// happens to the event: the inner result says whether the event was stored (if not, it
    /// is still published, live only).
    pub fn emit_after<T>(
        &self,
        session_id: &str,
        before: impl FnOnce() -> store::Result<T>,
        kind: impl FnOnce(&T) -> EventKind,
    ) -> store::Result<(T, store::Result<i64>)> {
        let lock = self.broadcaster.emit_lock(session_id);
        let _ordered = lock.lock().unwrap_or_else(|p| p.into_inner());
        let value = before()?;
        let kind = kind(&value);
        let payload = kind.to_payload(session_id, &now_rfc3339());
        let stored = self.store.append_event(session_id, kind.name(), &payload);
        let seq = stored.as_ref().ok().copied();
        self.broadcaster
            .publish(session_id, &Published::new(seq, payload));
        Ok((value, stored))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(seq: i64) -> Published {
        Published::new(Some(seq), json!({"type": "text", "text": "x"}))
    }

    #[test]
    fn every_subscriber_gets_every_event_in_order() {
        let b = Broadcaster::new(8);
        let (s1, s2) = (b.subscribe("a"), b.subscribe("a"));
        let other = b.subscribe("b");
        for seq in 1..=3 {
            b.publish("a", &event(seq));
        }
        for sub in [&s1, &s2] {
            for seq in 1..=3 {
                let Received::Event(e) = sub.recv_timeout(Duration::from_millis(10)) else {
                    panic!("missing event {seq}")
                };
                assert_eq!(e.seq, Some(seq));
            }
        }
        assert_eq!(other.recv_timeout(Duration::from_millis(5)), Received::Idle);
    }

    #[test]
    fn a_full_queue_drops_the_subscriber_as_lagged_without_blocking() {
        let b = Broadcaster::new(2);
        let slow = b.subscribe("a");
        let fast = b.subscribe("a");
        for seq in 1..=3 {
            b.publish("a", &event(seq));
            if let Received::Event(_) = fast.recv_timeout(Duration::from_millis(10)) {}
        }
        assert_eq!(b.session_subscriber_count("a"), 1);
        assert!(matches!(
            slow.recv_timeout(Duration::from_millis(5)),
            Received::Event(_)
        ));
        assert!(matches!(
            slow.recv_timeout(Duration::from_millis(5)),
            Received::Event(_)
        ));
        assert_eq!(
            slow.recv_timeout(Duration::from_millis(5)),
            Received::Closed(CloseReason::Lagged)
        );
    }

    #[test]
    fn dropping_a_subscription_unsubscribes_and_delete_closes() {
        let b = Broadcaster::new(4);
        let sub = b.subscribe("a");
        drop(b.subscribe("a"));
        assert_eq!(b.subscriber_count(), 1);
        b.close_session("a");
        assert_eq!(
            sub.recv_timeout(Duration::from_millis(5)),
            Received::Closed(CloseReason::SessionDeleted)
        );
    }
}
