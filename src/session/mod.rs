//! Sessions: the registry of active sessions, their worker threads, and events.
//!
//! - `manager.rs`: [`SessionManager`], the cheap-clone registry the HTTP layer talks to
//!   (create, post a message, cancel, delete, resume at start-up, shutdown).
//! - `worker.rs`: the per-session thread that owns the conversation, the tools and the turn.
//! - `events.rs`: the event protocol; `broadcast.rs`: storing and fanning events out.

pub mod broadcast;
pub mod events;
mod manager;
mod params;
mod worker;

use std::fmt;
use std::time::Duration;

pub use self::broadcast::{Broadcaster, CloseReason, EventSink, Received, Subscription};
pub use self::events::{EventKind, Published};
pub use self::manager::SessionManager;
pub use self::params::SessionParams;

use crate::store::StoreError;

/// Result alias of the session layer.
pub type Result<T> = std::result::Result<T, SessionError>;

/// What can go wrong managing sessions.
#[derive(Debug)]
pub enum SessionError {
    /// No session with that id.
    NotFound(String),
    /// A field failed validation: (field, why).
    Invalid { field: String, detail: String },
    /// The request conflicts with the session's state.
    Conflict(String),
    /// The server is shutting down and takes no new work.
    ShuttingDown,
    /// A resource the session needs is exhausted or failed (a worker thread, a desktop).
    Unavailable(String),
    /// `max` sessions already have a live worker; one retires after `idle_timeout` idle.
    TooManyActive { max: usize, idle_timeout: Duration },
    /// The store failed.
    Store(StoreError),
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::NotFound(id) => write!(f, "session {id} not found"),
            SessionError::Invalid { field, detail } => write!(f, "invalid {field}: {detail}"),
            SessionError::Conflict(why) => f.write_str(why),
            SessionError::ShuttingDown => f.write_str("the server is shutting down"),
            SessionError::Unavailable(why) => f.write_str(why),
            SessionError::TooManyActive { max, .. } => {
                write!(f, "{max} sessions already have a live worker")
            }
            SessionError::Store(err) => write!(f, "{err}"),
        }
    }
}

impl std::error::Error for SessionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SessionError::Store(err) => Some(err),
            _ => None,
        }
    }
}

impl From<StoreError> for SessionError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(id) => SessionError::NotFound(id),
            other => SessionError::Store(other),
        }
    }
}
