//! Persistence: one [`Store`] trait with SQLite and PostgreSQL implementations.
//!
//! What it owns: sessions, the conversation (`messages`, the exact API-format history plus
//! queued user messages) and the event log (`events`, with a per-session `seq`). All SQL lives
//! in this module and in `sql/<backend>/NNNN_*.sql` migrations.
//!
//! The message queue is the `messages` table itself: a posted user message is inserted with
//! `seq = NULL` ("queued") and committed before the API answers; the session worker claims the
//! oldest queued message by giving it the next `seq`, which places it in the conversation. So a
//! restart loses nothing, and the conversation order is the order the worker saw things.

mod metered;
mod migrate;
mod postgres;
mod sqlite;

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::config::DatabaseUrl;

pub use self::metered::MeteredStore;
pub use self::postgres::PostgresStore;
pub use self::sqlite::SqliteStore;

/// Result alias of the store layer.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Token usage totals of a session (or of one model call).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_creation_input_tokens: i64,
    pub cache_read_input_tokens: i64,
}

/// What a new session is created with.
#[derive(Clone, Debug, PartialEq)]
pub struct NewSession {
    pub id: String,
    pub title: Option<String>,
    pub model: String,
    pub provider: String,
    pub system_prompt_suffix: String,
    pub tool_version: String,
    /// Everything else (`max_tokens`, `thinking_budget`, `only_n_most_recent_images`, …).
    pub settings: Value,
}

/// A stored session.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionRecord {
    pub id: String,
    pub title: Option<String>,
    pub model: String,
    pub provider: String,
    pub system_prompt_suffix: String,
    pub tool_version: String,
    pub settings: Value,
    /// `idle`, `running` (a turn was in progress) or `error`.
    pub status: String,
    pub usage: Usage,
    pub created_at: String,
    pub updated_at: String,
}

/// A stored message: part of the conversation (`seq` set) or still queued (`seq` unset).
#[derive(Clone, Debug, PartialEq)]
pub struct MessageRecord {
    pub id: String,
    pub session_id: String,
    pub seq: Option<i64>,
    /// `user` or `assistant`.
    pub role: String,
    /// The API content: a JSON array of content blocks.
    pub content: Value,
    pub created_at: String,
}

/// A message as the HTTP API lists it: like [`MessageRecord`], but `content` is the stored
/// JSON text passed through as is (validated, never parsed into a `Value` and serialised
/// again).
#[derive(Clone, Debug)]
pub struct MessageListing {
    pub id: String,
    pub session_id: String,
    pub seq: Option<i64>,
    pub role: String,
    pub content: Box<RawValue>,
    pub created_at: String,
}

impl From<MessageRecord> for MessageListing {
    fn from(record: MessageRecord) -> MessageListing {
        MessageListing {
            content: serde_json::value::to_raw_value(&record.content)
                .expect("a JSON value serialises"),
            id: record.id,
            session_id: record.session_id,
            seq: record.seq,
            role: record.role,
            created_at: record.created_at,
        }
    }
}

/// A page of [`MessageListing`]s, or `None` when the session does not exist.
pub type MessagePage = Option<Vec<MessageListing>>;

/// A stored event. `payload` is the full event JSON without `seq`.
#[derive(Clone, Debug, PartialEq)]
pub struct EventRecord {
    pub session_id: String,
    pub seq: i64,
    pub kind: String,
    pub payload: Value,
    pub created_at: String,
}

/// What can go wrong in the store.
#[derive(Debug)]
pub enum StoreError {
    /// The database could not be reached or a connection could not be taken from the pool.
    Unavailable(String),
    /// The session does not exist (for operations that require it).
    NotFound(String),
    /// A constraint was violated (duplicate id, …).
    Conflict(String),
    /// A migration failed; the message names the file.
    Migration(String),
    /// Any other database error.
    Database(Box<dyn std::error::Error + Send + Sync>),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unavailable(why) => write!(f, "database unavailable: {why}"),
            StoreError::NotFound(what) => write!(f, "not found: {what}"),
            StoreError::Conflict(what) => write!(f, "conflict: {what}"),
            StoreError::Migration(why) => write!(f, "migration failed: {why}"),
            StoreError::Database(err) => write!(f, "database error: {err}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Database(err) => Some(err.as_ref()),
            _ => None,
        }
    }
}

/// The persistence contract. Every method is one transaction; implementations are
/// `Send + Sync` and pool their connections, so any thread may call them.
pub trait Store: Send + Sync {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    /// A trivial round trip to the database (for `/health`).
    fn ping(&self) -> Result<()>;

    fn create_session(&self, new: &NewSession) -> Result<SessionRecord>;
    fn get_session(&self, id: &str) -> Result<Option<SessionRecord>>;
    /// Newest first.
    fn list_sessions(&self, skip: u64, limit: u64) -> Result<Vec<SessionRecord>>;
    /// Deletes the session with its messages and events; `false` if it did not exist.
    fn delete_session(&self, id: &str) -> Result<bool>;
    /// Sets `status` (and `updated_at`). `NotFound` if the session is gone.
    fn set_session_status(&self, id: &str, status: &str) -> Result<()>;
    /// Adds a model call's usage to the session's totals.
    fn add_usage(&self, id: &str, usage: &Usage) -> Result<()>;
    /// Sets the title if the session has none yet.
    fn set_title_if_empty(&self, id: &str, title: &str) -> Result<()>;

    /// Inserts a message. `queued = true` stores it with `seq = NULL` (a user message waiting
    /// for the worker); otherwise it gets the session's next `seq` and joins the conversation.
    fn insert_message(
        &self,
        session_id: &str,
        id: &str,
        role: &str,
        content: &Value,
        queued: bool,
    ) -> Result<MessageRecord>;
    /// Claims the oldest queued message of the session by giving it the next `seq`, and marks
    /// the session `running` in the same transaction: a crash right after the claim then still
    /// resumes the turn at the next start (the message is no longer queued).
    fn claim_queued_message(&self, session_id: &str) -> Result<Option<MessageRecord>>;
    /// The conversation: messages with a `seq`, in `seq` order.
    fn conversation(&self, session_id: &str) -> Result<Vec<MessageRecord>>;
    /// Conversation messages in `seq` order followed by queued ones in arrival order, paged.
    fn list_messages(&self, session_id: &str, skip: u64, limit: u64) -> Result<Vec<MessageRecord>>;
    /// What `GET /api/sessions/{id}/messages` lists: the page of [`Store::list_messages`] with
    /// the content as stored JSON text, or `None` when the session does not exist (one round
    /// trip where the backend allows).
    fn list_messages_page(&self, session_id: &str, skip: u64, limit: u64) -> Result<MessagePage> {
        if self.get_session(session_id)?.is_none() {
            return Ok(None);
        }
        let records = self.list_messages(session_id, skip, limit)?;
        Ok(Some(
            records.into_iter().map(MessageListing::from).collect(),
        ))
    }
    /// How many messages are queued for the session.
    fn queued_count(&self, session_id: &str) -> Result<u64>;

    /// Appends an event, assigning the session's next event `seq` (1, 2, 3…); returns it.
    fn append_event(&self, session_id: &str, kind: &str, payload: &Value) -> Result<i64>;
    /// Stored events with `seq > after`, in order, at most `limit`.
    fn list_events(&self, session_id: &str, after: i64, limit: u64) -> Result<Vec<EventRecord>>;

    /// Sessions that need a worker at start-up: status `running` or with queued messages.
    fn sessions_to_resume(&self) -> Result<Vec<String>>;
}

/// Opens the configured backend, creating the SQLite file and applying migrations.
pub fn open(url: &DatabaseUrl, pool_size: u32) -> Result<Arc<dyn Store>> {
    match url {
        DatabaseUrl::Sqlite(path) => Ok(Arc::new(SqliteStore::open(path, pool_size)?)),
        DatabaseUrl::Postgres(url) => Ok(Arc::new(PostgresStore::open(url, pool_size)?)),
    }
}
