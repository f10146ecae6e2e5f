//! The agent: the sampling loop (reference §3) and everything that shapes a request.
//!
//! - `models.rs`: model → default tool version and output tokens (data, not code).
//! - `prompt.rs`: system prompt, cache breakpoints, image truncation, request assembly.
//! - `sampling.rs`: one turn: call the model, run the tools, repeat until done.

pub mod models;
pub mod prompt;
pub mod sampling;

pub use self::sampling::{Turn, TurnOutcome};
