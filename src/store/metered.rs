//! [`MeteredStore`]: a [`Store`] decorator that times every operation and counts its errors
//! into [`Metrics`], labelled by the operation's name.

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use super::{
    EventRecord, MessagePage, MessageRecord, NewSession, Result, SessionRecord, Store, StoreError,
    Usage,
};
use crate::metrics::Metrics;

/// Wraps a store; behaves exactly like it.
pub struct MeteredStore {
    inner: Arc<dyn Store>,
    metrics: Metrics,
}

impl MeteredStore {
    /// `inner`, with every operation recorded into `metrics`.
    pub fn wrap(inner: Arc<dyn Store>, metrics: Metrics) -> Arc<dyn Store> {
        Arc::new(MeteredStore { inner, metrics })
    }

    fn timed<T>(
        &self,
        operation: &'static str,
        call: impl FnOnce(&dyn Store) -> Result<T>,
    ) -> Result<T> {
        let started = Instant::now();
        let result = call(self.inner.as_ref());
        let error = result.as_ref().err().map(error_kind);
        self.metrics.db_query(operation, started.elapsed(), error);
        result
    }
}

/// The error's kind as a label value.
fn error_kind(error: &StoreError) -> &'static str {
    match error {
        StoreError::Unavailable(_) => "unavailable",
        StoreError::NotFound(_) => "not_found",
        StoreError::Conflict(_) => "conflict",
        StoreError::Migration(_) => "migration",
        StoreError::Database(_) => "database",
    }
}

impl Store for MeteredStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn ping(&self) -> Result<()> {
        self.timed("ping", |s| s.ping())
    }

    fn create_session(&self, new: &NewSession) -> Result<SessionRecord> {
        self.timed("create_session", |s| s.create_session(new))
    }

    fn get_session(&self, id: &str) -> Result<Option<SessionRecord>> {
        self.timed("get_session", |s| s.get_session(id))
    }

    fn list_sessions(&self, skip: u64, limit: u64) -> Result<Vec<SessionRecord>> {
        self.timed("list_sessions", |s| s.list_sessions(skip, limit))
    }

    fn delete_session(&self, id: &str) -> Result<bool> {
        self.timed("delete_session", |s| s.delete_session(id))
    }

    fn set_session_status(&self, id: &str, status: &str) -> Result<()> {
        self.timed("set_session_status", |s| s.set_session_status(id, status))
    }

    fn add_usage(&self, id: &str, usage: &Usage) -> Result<()> {
        self.timed("add_usage", |s| s.add_usage(id, usage))
    }

    fn set_title_if_empty(&self, id: &str, title: &str) -> Result<()> {
        self.timed("set_title_if_empty", |s| s.set_title_if_empty(id, title))
    }

    fn insert_message(
        &self,
        session_id: &str,
        id: &str,
        role: &str,
        content: &Value,
        queued: bool,
    ) -> Result<MessageRecord> {
        self.timed("insert_message", |s| {
            s.insert_message(session_id, id, role, content, queued)
        })
    }

    fn claim_queued_message(&self, session_id: &str) -> Result<Option<MessageRecord>> {
        self.timed("claim_queued_message", |s| {
            s.claim_queued_message(session_id)
        })
    }

    fn conversation(&self, session_id: &str) -> Result<Vec<MessageRecord>> {
        self.timed("conversation", |s| s.conversation(session_id))
    }

    fn list_messages(&self, session_id: &str, skip: u64, limit: u64) -> Result<Vec<MessageRecord>> {
        self.timed("list_messages", |s| {
            s.list_messages(session_id, skip, limit)
        })
    }

    fn list_messages_page(&self, session_id: &str, skip: u64, limit: u64) -> Result<MessagePage> {
        self.timed("list_messages_page", |s| {
            s.list_messages_page(session_id, skip, limit)
        })
    }

    fn queued_count(&self, session_id: &str) -> Result<u64> {
        self.timed("queued_count", |s| s.queued_count(session_id))
    }

    fn append_event(&self, session_id: &str, kind: &str, payload: &Value) -> Result<i64> {
        self.timed("append_event", |s| {
            s.append_event(session_id, kind, payload)
        })
    }

    fn list_events(&self, session_id: &str, after: i64, limit: u64) -> Result<Vec<EventRecord>> {
        self.timed("list_events", |s| s.list_events(session_id, after, limit))
    }

    fn sessions_to_resume(&self) -> Result<Vec<String>> {
        self.timed("sessions_to_resume", |s| s.sessions_to_resume())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Sampled;

    /// A store whose every operation fails as unavailable.
    struct Down;

    impl Store for Down {
        fn backend(&self) -> &'static str {
            "sqlite"
        }
        fn ping(&self) -> Result<()> {
            Err(StoreError::Unavailable("down".into()))
        }
        fn create_session(&self, _: &NewSession) -> Result<SessionRecord> {
            unimplemented!()
        }
        fn get_session(&self, _: &str) -> Result<Option<SessionRecord>> {
            Ok(None)
        }
        fn list_sessions(&self, _: u64, _: u64) -> Result<Vec<SessionRecord>> {
            unimplemented!()
        }
        fn delete_session(&self, _: &str) -> Result<bool> {
            unimplemented!()
        }
        fn set_session_status(&self, _: &str, _: &str) -> Result<()> {
            unimplemented!()
        }
        fn add_usage(&self, _: &str, _: &Usage) -> Result<()> {
            unimplemented!()
        }
        fn set_title_if_empty(&self, _: &str, _: &str) -> Result<()> {
            unimplemented!()
        }
        fn insert_message(
            &self,
            _: &str,
            _: &str,
            _: &str,
            _: &Value,
            _: bool,
        ) -> Result<MessageRecord> {
            unimplemented!()
        }
        fn claim_queued_message(&self, _: &str) -> Result<Option<MessageRecord>> {
            unimplemented!()
        }
        fn conversation(&self, _: &str) -> Result<Vec<MessageRecord>> {
            unimplemented!()
        }
        fn list_messages(&self, _: &str, _: u64, _: u64) -> Result<Vec<MessageRecord>> {
            unimplemented!()
        }
        fn queued_count(&self, _: &str) -> Result<u64> {
            unimplemented!()
        }
        fn append_event(&self, _: &str, _: &str, _: &Value) -> Result<i64> {
            unimplemented!()
        }
        fn list_events(&self, _: &str, _: i64, _: u64) -> Result<Vec<EventRecord>> {
            unimplemented!()
        }
        fn sessions_to_resume(&self) -> Result<Vec<String>> {
            unimplemented!()
        }
    }

    #[test]
    fn operations_are_timed_and_errors_counted_by_kind() {
        let metrics = Metrics::default();
        let store = MeteredStore::wrap(Arc::new(Down), metrics.clone());
        assert!(store.ping().is_err());
        assert_eq!(store.get_session("x").unwrap(), None);
        assert_eq!(store.backend(), "sqlite");
        let page = metrics.render(&Sampled::default());
        for line in [
            "computer_use_db_query_duration_seconds_count{operation=\"ping\"} 1\n",
            "computer_use_db_query_duration_seconds_count{operation=\"get_session\"} 1\n",
            "computer_use_db_errors_total{operation=\"ping\",kind=\"unavailable\"} 1\n",
        ] {
            assert!(page.contains(line), "{line} missing from:\n{page}");
        }
        assert!(!page.contains("operation=\"get_session\",kind"));
    }
}
