//! Performs validated actions on one display: xdotool argv per action (reference §4.4–§4.6),
//! the settle delay, and the screenshot that ends most actions.

use std::time::Duration;

use super::input::{Action, Point};
use super::scaling::Scaler;
use super::xdotool::{CANCELLED, Output, Xdotool};
use crate::cancel::CancelToken;
use crate::desktop::Display;
use crate::desktop::screenshot;
use crate::tools::{MAX_RESPONSE_LEN, ToolResult, maybe_truncate};
use crate::util::base64;

/// Characters per `xdotool type` call and the delay between keystrokes (reference §4.4).
const TYPING_GROUP_SIZE: usize = 50;
const TYPING_DELAY_MS: &str = "12";
/// The API's image limits: zoomed crops are shrunk to fit (reference §4.3, docs guidance).
const MAX_LONG_EDGE: f64 = 1568.0;
const MAX_PIXELS: f64 = 1_150_000.0;

/// One display as the computer tool drives it.
pub(super) struct Desk {
    display: Display,
    scaler: Scaler,
    xdotool: Xdotool,
    settle: Duration,
}

impl Desk {
    pub fn new(display: Display, settle: Duration, timeout: Duration) -> Desk {
        Desk {
            scaler: Scaler::new(display.width, display.height),
            xdotool: Xdotool::new(display.name(), timeout),
            display,
            settle,
        }
    }

    pub fn scaler(&self) -> &Scaler {
        &self.scaler
    }

    pub fn perform(&self, action: Action, cancel: &CancelToken) -> ToolResult {
        match action {
            Action::Screenshot => self.screenshot(String::new()),
            Action::CursorPosition => self.cursor_position(cancel),
            Action::Type(text) => self.type_text(&text, cancel),
            Action::Wait(seconds) => match cancel.sleep(Duration::from_secs_f64(seconds)) {
                true => self.screenshot(String::new()),
                false => ToolResult::error(CANCELLED),
            },
            Action::Zoom { from, to } => self.zoom(from, to),
            Action::HoldKey { key, seconds } => {
                let args = words(&[&["keydown", &key, "sleep", &seconds, "keyup", &key]]);
                // A killed hold would leave the key pressed.
                self.input(&args, &words(&[&["keyup", &key]]), cancel)
            }
            other => {
                let (args, release) = command(&other);
                self.input(&args, &release, cancel)
            }
        }
    }

    /// Runs a mouse/keyboard command, waits the settle delay, then takes a screenshot. If the
    /// command fails (or is cancelled) `release` is run to lift keys and buttons it may hold.
    fn input(&self, args: &[String], release: &[String], cancel: &CancelToken) -> ToolResult {
        let output = match self.xdotool.run(args, cancel) {
            Ok(output) => output,
            Err(error) => {
                if !release.is_empty() {
                    let _ = self.xdotool.run(release, &CancelToken::new());
                }
                return ToolResult::error(maybe_truncate(&error, MAX_RESPONSE_LEN));
            }
        };
        if !cancel.sleep(self.settle) {
            return ToolResult::error(CANCELLED);
        }
        self.screenshot(joined(&[output]))
    }

    /// `type`: 50-character chunks, then one screenshot without the settle delay.
    fn type_text(&self, text: &str, cancel: &CancelToken) -> ToolResult {
        let chars: Vec<char> = text.chars().collect();
        let mut outputs = Vec::new();
        for chunk in chars.chunks(TYPING_GROUP_SIZE) {
            let chunk: String = chunk.iter().collect();
            let args = words(&[&["type", "--delay", TYPING_DELAY_MS, "--", &chunk]]);
            match self.xdotool.run(&args, cancel) {
                Ok(output) => outputs.push(output),
                Err(error) => return ToolResult::error(maybe_truncate(&error, MAX_RESPONSE_LEN)),
            }
        }
        self.screenshot(joined(&outputs))
    }

    fn cursor_position(&self, cancel: &CancelToken) -> ToolResult {
        let args = words(&[&["getmouselocation", "--shell"]]);
        let output = match self.xdotool.run(&args, cancel) {
            Ok(output) => output,
            Err(error) => return ToolResult::error(maybe_truncate(&error, MAX_RESPONSE_LEN)),
        };
        let Some((x, y)) = parse_location(&output.stdout) else {
            return ToolResult::error(format!(
                "could not read the pointer position from xdotool: {:?}",
                output.stdout
            ));
        };
        let (x, y) = self.scaler.to_api(x, y);
        let mut text = format!("X={x},Y={y}");
        if !output.stderr.trim().is_empty() {
            text = format!("{text}\n{}", output.stderr.trim_end());
        }
        ToolResult::output(maybe_truncate(&text, MAX_RESPONSE_LEN))
    }

    /// The screen scaled to what the model sees, with `output` (xdotool's text) alongside.
    fn screenshot(&self, output: String) -> ToolResult {
        let (width, height) = self.scaler.api_size();
        let image = match screenshot::capture(&self.display) {
            Ok(image) => screenshot::scale_to(&image, width, height),
            Err(err) => return ToolResult::error(format!("Failed to take screenshot: {err}")),
        };
        match screenshot::encode_png(&image) {
            Ok(png) => ToolResult {
                output: Some(maybe_truncate(&output, MAX_RESPONSE_LEN)).filter(|s| !s.is_empty()),
                base64_image: Some(base64::encode(&png)),
                ..ToolResult::default()
            },
            Err(err) => ToolResult::error(format!("Failed to take screenshot: {err}")),
        }
    }

    /// [REC] zoom: crop the full-resolution screen in screen space, shrink to the API limits.
    fn zoom(&self, from: Point, to: Point) -> ToolResult {
        let full = match screenshot::capture(&self.display) {
            Ok(image) => image,
            Err(err) => {
                return ToolResult::error(format!("Failed to take screenshot for zoom: {err}"));
            }
        };
        let crop = screenshot::crop(&full, from.0, from.1, to.0 - from.0, to.1 - from.1);
        let (width, height) = fit_within_limits(crop.width, crop.height);
        match screenshot::encode_png(&screenshot::scale_to(&crop, width, height)) {
            Ok(png) => ToolResult {
                base64_image: Some(base64::encode(&png)),
                ..ToolResult::default()
            },
            Err(err) => ToolResult::error(format!("Failed to crop screenshot for zoom: {err}")),
        }
    }
}

/// The xdotool argv of a mouse/keyboard action, and the argv that releases what it holds.
fn command(action: &Action) -> (Vec<String>, Vec<String>) {
    match action {
        Action::MouseMove(to) => (move_to(*to), Vec::new()),
        Action::Drag { start, end } => {
            let mut args = start.map(move_to).unwrap_or_default();
            args.extend(words(&[&["mousedown", "1"]]));
            args.extend(move_to(*end));
            args.extend(words(&[&["mouseup", "1"]]));
            (args, words(&[&["mouseup", "1"]]))
        }
        // The reference passes the key text unquoted, so the shell splits it into sequences.
        Action::Key(text) => {
            let keys: Vec<&str> = text.split_whitespace().collect();
            (words(&[&["key", "--"], &keys]), Vec::new())
        }
        Action::Click {
            button,
            at,
            modifier,
        } => with_modifier(*at, modifier, &[&["click"], button.click_args()]),
        Action::Scroll {
            button,
            amount,
            at,
            modifier,
        } => {
            let (amount, button) = (amount.to_string(), button.to_string());
            with_modifier(*at, modifier, &[&["click", "--repeat", &amount, &button]])
        }
        Action::LeftMouse { down: true } => (words(&[&["mousedown", "1"]]), Vec::new()),
        Action::LeftMouse { down: false } => (words(&[&["mouseup", "1"]]), Vec::new()),
        other => unreachable!("{other:?} is not an xdotool input action"),
    }
}

/// `[mousemove --sync X Y] [keydown M] <click…> [keyup M]`.
fn with_modifier(
    at: Option<Point>,
    modifier: &Option<String>,
    click: &[&[&str]],
) -> (Vec<String>, Vec<String>) {
    let mut args = at.map(move_to).unwrap_or_default();
    let Some(key) = modifier else {
        args.extend(words(click));
        return (args, Vec::new());
    };
    args.extend(words(&[&["keydown", key]]));
    args.extend(words(click));
    args.extend(words(&[&["keyup", key]]));
    (args, words(&[&["keyup", key]]))
}

fn move_to((x, y): Point) -> Vec<String> {
    words(&[&["mousemove", "--sync", &x.to_string(), &y.to_string()]])
}

fn words(parts: &[&[&str]]) -> Vec<String> {
    parts
        .iter()
        .flat_map(|part| part.iter().map(|s| s.to_string()))
        .collect()
}

/// stdout of every run, then [REC] stderr of the successful runs (sent beside the image).
fn joined(outputs: &[Output]) -> String {
    let stdout: String = outputs.iter().map(|o| o.stdout.as_str()).collect();
    let stderr: String = outputs.iter().map(|o| o.stderr.as_str()).collect();
    match (stdout.is_empty(), stderr.is_empty()) {
        (_, true) => stdout,
        (true, false) => stderr,
        (false, false) => format!("{stdout}\n{stderr}"),
    }
}

/// `X=` and `Y=` of `xdotool getmouselocation --shell`.
fn parse_location(text: &str) -> Option<(u32, u32)> {
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
    };
    Some((field("X=")?, field("Y=")?))
}

/// The largest size with the same aspect that fits the API's image limits (never enlarged).
pub(super) fn fit_within_limits(width: u32, height: u32) -> (u32, u32) {
    let (w, h) = (f64::from(width), f64::from(height));
    let scale = 1f64
        .min(MAX_LONG_EDGE / w.max(h))
        .min((MAX_PIXELS / (w * h)).sqrt());
    if scale >= 1.0 {
        return (width, height);
    }
    let fit = |v: f64| ((v * scale).floor() as u32).max(1);
    (fit(w), fit(h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::computer::input::Button;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn mouse_move_is_one_synced_move() {
        let (args, release) = command(&Action::MouseMove((100, 200)));
        assert_eq!(args, strings(&["mousemove", "--sync", "100", "200"]));
        assert!(release.is_empty());
    }

    #[test]
    fn drag_moves_presses_moves_and_releases() {
        let (args, release) = command(&Action::Drag {
            start: Some((1, 2)),
            end: (3, 4),
        });
        assert_eq!(
            args.join(" "),
            "mousemove --sync 1 2 mousedown 1 mousemove --sync 3 4 mouseup 1"
        );
        assert_eq!(release, strings(&["mouseup", "1"]));
        let (from_pointer, _) = command(&Action::Drag {
            start: None,
            end: (3, 4),
        });
        assert_eq!(
            from_pointer.join(" "),
            "mousedown 1 mousemove --sync 3 4 mouseup 1"
        );
    }

    #[test]
    fn key_text_is_split_into_sequences_like_the_unquoted_shell() {
        let (args, _) = command(&Action::Key("ctrl+a  BackSpace".into()));
        assert_eq!(args, strings(&["key", "--", "ctrl+a", "BackSpace"]));
    }

    #[test]
    fn clicks_move_then_hold_the_modifier_around_the_click() {
        let (args, release) = command(&Action::Click {
            button: Button::Triple,
            at: Some((5, 6)),
            modifier: Some("shift".into()),
        });
        assert_eq!(
            args.join(" "),
            "mousemove --sync 5 6 keydown shift click --repeat 3 --delay 10 1 keyup shift"
        );
        assert_eq!(release, strings(&["keyup", "shift"]));
        let (plain, _) = command(&Action::Click {
            button: Button::Double,
            at: None,
            modifier: None,
        });
        assert_eq!(plain.join(" "), "click --repeat 2 --delay 10 1");
    }

    #[test]
    fn scroll_repeats_the_wheel_button() {
        let (args, _) = command(&Action::Scroll {
            button: 5,
            amount: 3,
            at: Some((10, 20)),
            modifier: None,
        });
        assert_eq!(args.join(" "), "mousemove --sync 10 20 click --repeat 3 5");
    }

    #[test]
    fn mouse_location_is_parsed_from_shell_output() {
        let text = "X=12\nY=34\nSCREEN=0\nWINDOW=5\n";
        assert_eq!(parse_location(text), Some((12, 34)));
        assert_eq!(parse_location("garbage"), None);
    }

    #[test]
    fn stderr_of_a_successful_run_follows_stdout() {
        let out = |o: &str, e: &str| Output {
            stdout: o.into(),
            stderr: e.into(),
        };
        assert_eq!(joined(&[out("a", ""), out("b", "")]), "ab");
        assert_eq!(joined(&[out("", "warn")]), "warn");
        assert_eq!(joined(&[out("a", "warn")]), "a\nwarn");
    }

    #[test]
    fn zoom_crops_shrink_to_the_api_limits_keeping_aspect() {
        assert_eq!(fit_within_limits(960, 540), (960, 540));
        assert_eq!(fit_within_limits(2000, 100), (1568, 78));
        let (w, h) = fit_within_limits(1920, 1080);
        assert!(f64::from(w * h) <= MAX_PIXELS && w <= 1568, "{w}x{h}");
        assert_eq!((w, h), (1429, 804));
    }
}
