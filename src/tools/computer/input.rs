//! Validates the model's input into an [`Action`], in the reference's order and with its
//! exact error texts (reference §4.3–§4.6). Coordinates come out in screen space.

use serde_json::Value;

use super::repr;
use super::scaling::Scaler;
use crate::tools::ToolVersion;

/// A screen-space point.
pub(super) type Point = (u32, u32);

/// One validated action.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Action {
    MouseMove(Point),
    /// `start: None` drags from the current pointer (computer_20241022 without a start).
    Drag {
        start: Option<Point>,
        end: Point,
    },
    Key(String),
    Type(String),
    Click {
        button: Button,
        at: Option<Point>,
        modifier: Option<String>,
    },
    Screenshot,
    CursorPosition,
    LeftMouse {
        down: bool,
    },
    Scroll {
        button: u8,
        amount: u64,
        at: Option<Point>,
        modifier: Option<String>,
    },
    /// `seconds` as the model wrote it (xdotool's `sleep` takes it verbatim).
    HoldKey {
        key: String,
        seconds: String,
    },
    Wait(f64),
    /// Corners in screen space, top-left inclusive, bottom-right exclusive.
    Zoom {
        from: Point,
        to: Point,
    },
}

/// Mouse clicks and their xdotool `click` arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Button {
    Left,
    Right,
    Middle,
    Double,
    Triple,
}

impl Button {
    fn parse(action: &str) -> Option<Button> {
        Some(match action {
            "left_click" => Button::Left,
            "right_click" => Button::Right,
            "middle_click" => Button::Middle,
            "double_click" => Button::Double,
            "triple_click" => Button::Triple,
            _ => return None,
        })
    }

    pub fn click_args(self) -> &'static [&'static str] {
        match self {
            Button::Left => &["1"],
            Button::Right => &["3"],
            Button::Middle => &["2"],
            Button::Double => &["--repeat", "2", "--delay", "10", "1"],
            Button::Triple => &["--repeat", "3", "--delay", "10", "1"],
        }
    }
}

/// The input object with JSON `null` read as absent (Python's `None` default).
#[derive(Clone, Copy)]
struct Args<'a>(&'a Value);

impl<'a> Args<'a> {
    fn get(self, key: &str) -> Option<&'a Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }
}

/// Validates `input` for the computer tool of `version` on a screen scaled by `scaler`.
pub(super) fn parse(
    version: ToolVersion,
    input: &Value,
    scaler: &Scaler,
) -> Result<Action, String> {
    let args = Args(input);
    let action = match args.get("action") {
        Some(Value::String(action)) => action.as_str(),
        other => return Err(format!("Invalid action: {}", repr::str(other))),
    };
    let parser = Parser {
        version,
        args,
        scaler,
    };
    match version {
        ToolVersion::V20241022 => parser.base(action),
        ToolVersion::V20250124 | ToolVersion::V20250429 => parser.v20250124(action),
        ToolVersion::V20251124 => parser.v20251124(action),
    }
}

struct Parser<'a> {
    version: ToolVersion,
    args: Args<'a>,
    scaler: &'a Scaler,
}

impl Parser<'_> {
    /// computer_20251124: `zoom`, then everything of computer_20250124.
    fn v20251124(&self, action: &str) -> Result<Action, String> {
        if action == "zoom" {
            return self.zoom();
        }
        self.v20250124(action)
    }

    /// computer_20250124: mouse buttons, scroll, hold_key, wait and modifier clicks, then the
    /// base actions.
    fn v20250124(&self, action: &str) -> Result<Action, String> {
        match action {
            "left_mouse_down" | "left_mouse_up" => {
                if self.args.get("coordinate").is_some() {
                    return Err(format!("coordinate is not accepted for action='{action}'."));
                }
                Ok(Action::LeftMouse {
                    down: action == "left_mouse_down",
                })
            }
            "scroll" => self.scroll(),
            "hold_key" | "wait" => self.timed(action),
            _ => match Button::parse(action) {
                Some(button) => self.modifier_click(button),
                None => self.base(action),
            },
        }
    }

    /// computer_20241022's actions (the fallback of every later version).
    fn base(&self, action: &str) -> Result<Action, String> {
        match action {
            "mouse_move" | "left_click_drag" => self.move_or_drag(action),
            "key" | "type" => {
                let text = self.require_text(action)?;
                self.reject("coordinate", action)?;
                let text = as_string(text)?;
                Ok(match action {
                    "key" => Action::Key(text),
                    _ => Action::Type(text),
                })
            }
            "left_click" | "right_click" | "double_click" | "middle_click" | "screenshot"
            | "cursor_position" => {
                self.reject("text", action)?;
                self.reject("coordinate", action)?;
                Ok(match action {
                    "screenshot" => Action::Screenshot,
                    "cursor_position" => Action::CursorPosition,
                    _ => Action::Click {
                        button: Button::parse(action).expect("a click action"),
                        at: None,
                        modifier: None,
                    },
                })
            }
            _ => Err(format!("Invalid action: {action}")),
        }
    }

    fn move_or_drag(&self, action: &str) -> Result<Action, String> {
        let coordinate = self
            .args
            .get("coordinate")
            .ok_or_else(|| format!("coordinate is required for {action}"))?;
        self.reject("text", action)?;
        let end = self.point(coordinate)?;
        if action == "mouse_move" {
            return Ok(Action::MouseMove(end));
        }
        let start = match self.args.get("start_coordinate") {
            Some(start) => Some(self.point(start)?),
            // The 20241022 schema has no start: drag from the pointer (Snapshot A).
            None if self.version == ToolVersion::V20241022 => None,
            None => return Err(format!("start_coordinate is required for {action}")),
        };
        Ok(Action::Drag { start, end })
    }

    fn modifier_click(&self, button: Button) -> Result<Action, String> {
        let modifier = self.modifier()?;
        let at = self.optional_point()?;
        Ok(Action::Click {
            button,
            at,
            modifier,
        })
    }

    fn scroll(&self) -> Result<Action, String> {
        let direction = self.args.get("scroll_direction");
        let button = match direction.and_then(Value::as_str) {
            Some("up") => 4,
            Some("down") => 5,
            Some("left") => 6,
            Some("right") => 7,
            _ => {
                return Err(format!(
                    "scroll_direction={} must be 'up', 'down', 'left', or 'right'",
                    repr::repr(direction)
                ));
            }
        };
        let amount = self.args.get("scroll_amount");
        let Some(count) = amount.and_then(Value::as_u64) else {
            return Err(format!(
                "scroll_amount={} must be a non-negative int",
                repr::repr(amount)
            ));
        };
        let at = self.optional_point()?;
        let modifier = self.modifier()?;
        Ok(Action::Scroll {
            button,
            amount: count,
            at,
            modifier,
        })
    }

    /// `hold_key` and `wait`: the duration first, then (hold_key) the key.
    fn timed(&self, action: &str) -> Result<Action, String> {
        let duration = self.args.get("duration");
        let (seconds, written) = match duration {
            Some(Value::Number(n)) => (n.as_f64().unwrap_or(f64::NAN), n.to_string()),
            other => {
                return Err(format!("duration={} must be a number", repr::repr(other)));
            }
        };
        let shown = repr::repr(duration);
        if seconds < 0.0 {
            return Err(format!("duration={shown} must be non-negative"));
        }
        if seconds > 100.0 {
            return Err(format!("duration={shown} is too long."));
        }
        if action == "wait" {
            return Ok(Action::Wait(seconds));
        }
        let key = as_string(self.require_text(action)?)?;
        Ok(Action::HoldKey {
            key,
            seconds: written,
        })
    }

    fn zoom(&self) -> Result<Action, String> {
        let region = self.args.get("region");
        let shown = repr::repr(region);
        let values = match region {
            Some(Value::Array(values)) if values.len() == 4 => values,
            _ => {
                return Err(format!(
                    "region={shown} must be a tuple of 4 coordinates (x0, y0, x1, y1)"
                ));
            }
        };
        let Some(c) = non_negative_ints(values) else {
            return Err(format!("region={shown} must contain non-negative integers"));
        };
        if c[2] <= c[0] || c[3] <= c[1] {
            return Err(format!("region={shown} must have x0 < x1 and y0 < y1"));
        }
        let from = self.scaler.to_screen(c[0], c[1])?;
        let to = self.scaler.to_screen(c[2], c[3])?;
        Ok(Action::Zoom { from, to })
    }

    /// [REC] The click/scroll modifier: `text` as the official schema says, else the
    /// reference's `key`. Empty means none.
    fn modifier(&self) -> Result<Option<String>, String> {
        let value = self.args.get("text").or_else(|| self.args.get("key"));
        let Some(value) = value else { return Ok(None) };
        let text = as_string(value)?;
        Ok(Some(text.trim().to_string()).filter(|t| !t.is_empty()))
    }

    fn require_text(&self, action: &str) -> Result<&Value, String> {
        self.args
            .get("text")
            .ok_or_else(|| format!("text is required for {action}"))
    }

    fn reject(&self, key: &str, action: &str) -> Result<(), String> {
        match self.args.get(key) {
            Some(_) => Err(format!("{key} is not accepted for {action}")),
            None => Ok(()),
        }
    }

    fn optional_point(&self) -> Result<Option<Point>, String> {
        self.args
            .get("coordinate")
            .map(|c| self.point(c))
            .transpose()
    }

    /// `validate_and_get_coordinates`: a list of two non-negative ints, scaled to the screen.
    fn point(&self, value: &Value) -> Result<Point, String> {
        let shown = repr::str(Some(value));
        let values = match value {
            Value::Array(values) if values.len() == 2 => values,
            _ => return Err(format!("{shown} must be a tuple of length 2")),
        };
        let Some(c) = non_negative_ints(values) else {
            return Err(format!("{shown} must be a tuple of non-negative ints"));
        };
        self.scaler.to_screen(c[0], c[1])
    }
}

/// The values as integers if every one is a JSON integer ≥ 0 (floats such as `100.0` and,
/// unlike Python, booleans are refused).
fn non_negative_ints(values: &[Value]) -> Option<Vec<u64>> {
    values.iter().map(Value::as_u64).collect()
}

/// [REC] A string, or the error `<value> must be a string` (the reference crashes here).
fn as_string(value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        other => Err(format!("{} must be a string", repr::str(Some(other)))),
    }
}
