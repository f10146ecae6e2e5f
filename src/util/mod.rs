//! Small helpers with no better home: time formatting, base64, the logger, shutdown signals.

pub mod base64;
pub mod logger;
pub mod signals;
pub mod time;
