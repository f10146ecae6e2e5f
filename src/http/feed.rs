//! The event feed shared by SSE and WebSocket: subscribe first, replay stored events after the
//! client's `seq`, then live events, dropping live stored events already replayed.

use std::collections::VecDeque;
use std::time::Duration;

use super::events::published;
use crate::app::App;
use crate::session::{CloseReason, Published, Received, Subscription};
use crate::store::StoreError;

/// Stored events read per page while replaying.
const PAGE: u64 = 200;

/// Most live events a stream writes in one go (see [`Feed::drain_ready`]).
pub(crate) const BATCH: usize = 64;

/// One session's events for one client.
pub(crate) struct Feed {
    app: App,
    subscription: Subscription,
    last_seq: i64,
    /// Live events that were queued while replaying, minus stale deltas.
    pending: VecDeque<Published>,
}

/// What waiting on the feed yields.
pub(crate) enum Next {
    Event(Published),
    Idle,
    Closed(CloseReason),
}

/// Why a replay stopped early.
pub(crate) enum ReplayError<E> {
    Store(StoreError),
    Write(E),
}

impl Feed {
    /// Subscribes before anything is read, so no event falls between replay and live.
    pub(crate) fn open(app: &App, session_id: &str, after: i64) -> Feed {
        Feed {
            app: app.clone(),
            subscription: app.events.broadcaster().subscribe(session_id),
            last_seq: after,
            pending: VecDeque::new(),
        }
    }

    /// The last `seq` delivered (or the `after` the client asked for).
    pub(crate) fn last_seq(&self) -> i64 {
        self.last_seq
    }

    /// Sends every stored event with `seq > after` to `out`, page by page.
    pub(crate) fn replay<E>(
        &mut self,
        mut out: impl FnMut(&Published) -> Result<(), E>,
    ) -> Result<(), ReplayError<E>> {
        let session_id = self.subscription.session_id().to_string();
        loop {
            let page = self
                .app
                .store
                .list_events(&session_id, self.last_seq, PAGE)
                .map_err(ReplayError::Store)?;
            for record in &page {
                out(&published(record)).map_err(ReplayError::Write)?;
                self.last_seq = record.seq;
            }
            if (page.len() as u64) < PAGE {
                let ready = self.subscription.drain_ready();
                self.pending = without_stale_deltas(ready, self.last_seq);
                return Ok(());
            }
        }
    }

    /// Waits up to `timeout` for the next live event not already replayed.
    pub(crate) fn next(&mut self, timeout: Duration) -> Next {
        loop {
            let received = match self.pending.pop_front() {
                Some(event) => Received::Event(event),
                None => self.subscription.recv_timeout(timeout),
            };
            match received {
                Received::Event(event) => match event.seq {
                    Some(seq) if seq <= self.last_seq => continue,
                    Some(seq) => {
                        self.last_seq = seq;
                        return Next::Event(event);
                    }
                    None => return Next::Event(event),
                },
                Received::Idle => return Next::Idle,
                Received::Closed(reason) => return Next::Closed(reason),
            }
        }
    }
}

impl Feed {
    /// Hands up to `max` live events that are already waiting to `out`, without blocking, so a
    /// stream can write them with the one it just received and flush once. `Ok(Some(reason))`
    /// when the subscription turned out to be closed (after every event before the close).
    pub(crate) fn drain_ready<E>(
        &mut self,
        max: usize,
        mut out: impl FnMut(&Published) -> Result<(), E>,
    ) -> Result<Option<CloseReason>, E> {
        for _ in 0..max {
            match self.next(Duration::ZERO) {
                Next::Event(event) => out(&event)?,
                Next::Idle => return Ok(None),
                Next::Closed(reason) => return Ok(Some(reason)),
            }
        }
        Ok(None)
    }
}

/// Live events queued while the replay ran, in publish order. A delta queued before a stored
/// event the replay already sent belongs to a block the client has in full: it is dropped, so
/// text is not shown twice. Deltas after the last replayed event are for a block still
/// streaming and are kept.
fn without_stale_deltas(ready: Vec<Published>, replayed: i64) -> VecDeque<Published> {
    let is_replayed = |e: &Published| e.seq.is_some_and(|seq| seq <= replayed);
    let cut = ready.iter().rposition(is_replayed).map_or(0, |i| i + 1);
    let fresh = |(i, e): &(usize, Published)| *i >= cut || e.seq.is_some();
    ready
        .into_iter()
        .enumerate()
        .filter(fresh)
        .map(|(_, e)| e)
        .collect()
}

/// The words a client sees when its stream is closed.
pub(crate) fn close_text(reason: CloseReason, last_seq: i64) -> String {
    match reason {
        CloseReason::Lagged => {
            format!("lagged: too slow a consumer; resume after seq {last_seq}")
        }
        CloseReason::SessionDeleted => "session deleted".to_string(),
        CloseReason::Shutdown => "server shutting down".to_string(),
        CloseReason::Open => "closed".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stored(seq: i64) -> Published {
        Published::new(Some(seq), json!({"type": "text", "text": "x"}))
    }

    fn delta(text: &str) -> Published {
        Published::new(
            None,
            json!({"type": "text_delta", "index": 0, "delta": text}),
        )
    }

    #[test]
    fn deltas_of_an_already_replayed_block_are_dropped_and_later_ones_kept() {
        let ready = vec![
            delta("old-a"),
            delta("old-b"),
            stored(5),
            stored(6),
            delta("new"),
            stored(7),
        ];
        let kept: Vec<String> = without_stale_deltas(ready, 6)
            .iter()
            .map(|e| e.json.to_string())
            .collect();
        assert_eq!(kept.len(), 4, "{kept:?}");
        assert!(kept.iter().all(|e| !e.contains("old-")), "{kept:?}");
        assert!(kept.iter().any(|e| e.contains("\"new\"")));
    }

    #[test]
    fn with_nothing_replayed_in_the_queue_every_delta_is_kept() {
        let ready = vec![delta("a"), stored(9), delta("b")];
        assert_eq!(without_stale_deltas(ready, 8).len(), 3);
    }
}
