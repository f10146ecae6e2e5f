//! The computer tool (reference §4): mouse, keyboard and screenshots on the session's desktop.
//!
//! - `input.rs`: validation of the model's input into an action, per version, exact errors.
//! - `scaling.rs`: model ↔ screen coordinates (XGA/WXGA/FWXGA targets).
//! - `actions.rs`: the xdotool argv of each action, settle delay, screenshots and zoom.
//! - `xdotool.rs`: running xdotool with a timeout and cancellation.
//! - `repr.rs`: Python `str`/`repr` of JSON values for error messages.

mod actions;
mod input;
mod repr;
mod scaling;
mod xdotool;

use std::time::Duration;

use serde_json::{Value, json};

use self::actions::Desk;
use self::scaling::Scaler;
use super::{Tool, ToolResult, ToolVersion};
use crate::cancel::CancelToken;
use crate::desktop::{DesktopAccess, DesktopError, Display};

/// The screen size advertised when there is no desktop (the reference's recommended XGA).
const NO_DESKTOP_SIZE: (u32, u32) = (1024, 768);

/// Where the tool's desktop comes from.
enum Source {
    /// The session's desktop, started on first need.
    Session(DesktopAccess),
    /// A display that is already running (tests, embedding).
    Fixed(Display),
    /// Desktops are disabled.
    None,
}

/// The computer tool of one tool version.
pub struct ComputerTool {
    version: ToolVersion,
    source: Source,
    settle_delay: Duration,
    timeout: Duration,
}

impl ComputerTool {
    /// The tool on the session's desktop (`None` when desktops are disabled). `settle_delay`
    /// replaces the reference's 2 s wait between an action and its screenshot.
    pub fn new(
        version: ToolVersion,
        desktop: Option<DesktopAccess>,
        settle_delay: Duration,
    ) -> ComputerTool {
        let source = desktop.map_or(Source::None, Source::Session);
        ComputerTool::from_source(version, source, settle_delay)
    }

    /// The tool on a display that is already running.
    pub fn with_display(
        version: ToolVersion,
        display: Display,
        settle_delay: Duration,
    ) -> ComputerTool {
        ComputerTool::from_source(version, Source::Fixed(display), settle_delay)
    }

    fn from_source(version: ToolVersion, source: Source, settle_delay: Duration) -> ComputerTool {
        ComputerTool {
            version,
            source,
            settle_delay,
            timeout: xdotool::COMMAND_TIMEOUT,
        }
    }

    fn display(&self) -> Result<Display, DesktopError> {
        match &self.source {
            Source::Session(access) => access.display(),
            Source::Fixed(display) => Ok(display.clone()),
            Source::None => Err(DesktopError::Disabled),
        }
    }
}

impl Tool for ComputerTool {
    fn name(&self) -> &str {
        "computer"
    }

    /// `display_width_px`/`display_height_px` are the scaled size the model sees (§2.1).
    fn to_params(&self) -> Value {
        let display = self.display().ok();
        let (w, h) = display.as_ref().map_or(NO_DESKTOP_SIZE, |d| {
            Scaler::new(d.width, d.height).api_size()
        });
        let number = display.as_ref().map(|d| d.display_num);
        let mut params = json!({"name": "computer", "type": self.version.computer_type(),
            "display_width_px": w, "display_height_px": h, "display_number": number});
        if self.version == ToolVersion::V20251124 {
            params["enable_zoom"] = json!(true);
        }
        params
    }

    fn run(&mut self, input: &Value, cancel: &CancelToken) -> ToolResult {
        let display = match self.display() {
            Ok(display) => display,
            Err(err) => {
                return ToolResult::error(format!("the computer tool is unavailable: {err}"));
            }
        };
        let desk = Desk::new(display, self.settle_delay, self.timeout);
        match input::parse(self.version, input, desk.scaler()) {
            Ok(action) => desk.perform(action, cancel),
            Err(message) => ToolResult::error(message),
        }
    }
}

#[cfg(test)]
mod tests;
