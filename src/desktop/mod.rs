//! Desktops: the X displays the computer tool drives and VNC viewers watch (reference §8).
//!
//! - `manager.rs`: [`DesktopManager`], which finds or starts the shared desktop, starts and
//!   stops per-session desktops (Xvfb + window manager + x11vnc), and enforces the limit.
//! - `instance.rs`: one desktop, its display and the processes we started for it.
//! - `launch.rs`: starting Xvfb, the window manager and x11vnc, and their readiness signals.
//! - `process.rs`: a supervised child (own process group, drained output, TERM then KILL).
//! - `probe.rs`: is a display or VNC server already there; free ports.
//! - `screenshot.rs`: in-process capture from the X server, scaling, PNG encoding.

mod instance;
mod launch;
mod manager;
mod probe;
mod process;
pub mod screenshot;

use std::fmt;
use std::net::SocketAddr;

pub use self::manager::{DesktopManager, DesktopProcess};

/// A running desktop: an X display and the VNC server that exports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Display {
    /// The X display number (`:N`).
    pub display_num: u32,
    pub width: u32,
    pub height: u32,
    /// Where its VNC server listens (loopback).
    pub vnc_addr: SocketAddr,
}

impl Display {
    /// The `DISPLAY` value, `:N`.
    pub fn name(&self) -> String {
        format!(":{}", self.display_num)
    }
}

/// What can go wrong getting a desktop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DesktopError {
    /// `DESKTOP_MODE=none`.
    Disabled,
    /// Every per-session desktop slot is taken (`MAX_DESKTOPS`).
    LimitReached { max: usize },
    /// Xvfb, the window manager or x11vnc could not be started; says which and why.
    StartFailed(String),
    /// The server is shutting down.
    ShuttingDown,
}

impl fmt::Display for DesktopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DesktopError::Disabled => f.write_str("no desktop is configured (DESKTOP_MODE=none)"),
            DesktopError::LimitReached { max } => write!(
                f,
                "all {max} desktops are in use (MAX_DESKTOPS); delete an idle session or raise the limit"
            ),
            DesktopError::StartFailed(why) => write!(f, "the desktop could not be started: {why}"),
            DesktopError::ShuttingDown => f.write_str("the server is shutting down"),
        }
    }
}

impl std::error::Error for DesktopError {}

/// A session's way to its desktop, handed to the computer tool.
#[derive(Clone)]
pub struct DesktopAccess {
    pub manager: DesktopManager,
    pub session_id: String,
}

impl DesktopAccess {
    /// The session's desktop, started if needed.
    pub fn display(&self) -> Result<Display, DesktopError> {
        self.manager.for_session(&self.session_id)
    }
}
