//! Validation of every action and version with the reference's exact error texts, and the
//! tool's params; nothing here needs an X server.

use serde_json::{Value, json};

use super::input::{Action, Button, parse};
use super::scaling::Scaler;
use super::*;

const ALL: [ToolVersion; 4] = ToolVersion::ALL;
const LATER: [ToolVersion; 3] = [
    ToolVersion::V20250124,
    ToolVersion::V20250429,
    ToolVersion::V20251124,
];

fn xga() -> Scaler {
    Scaler::new(1024, 768)
}

fn error(version: ToolVersion, input: Value) -> String {
    parse(version, &input, &xga()).expect_err(&input.to_string())
}

fn ok(version: ToolVersion, input: Value) -> Action {
    parse(version, &input, &xga()).unwrap_or_else(|e| panic!("{input}: {e}"))
}

fn display(width: u32, height: u32) -> Display {
    Display {
        display_num: 42,
        width,
        height,
        vnc_addr: "127.0.0.1:5900".parse().unwrap(),
    }
}

#[test]
fn unknown_or_missing_action_is_invalid_in_every_version() {
    for v in ALL {
        assert_eq!(
            error(v, json!({"action": "invalid_action"})),
            "Invalid action: invalid_action"
        );
        assert_eq!(error(v, json!({})), "Invalid action: None");
        assert_eq!(error(v, json!({"action": 5})), "Invalid action: 5");
    }
    for action in [
        "scroll",
        "triple_click",
        "hold_key",
        "wait",
        "left_mouse_down",
        "zoom",
    ] {
        assert_eq!(
            error(ToolVersion::V20241022, json!({"action": action})),
            format!("Invalid action: {action}")
        );
    }
    for v in [ToolVersion::V20250124, ToolVersion::V20250429] {
        assert_eq!(
            error(v, json!({"action": "zoom", "region": [0, 0, 1, 1]})),
            "Invalid action: zoom"
        );
    }
}

#[test]
fn mouse_move_and_drag_require_a_coordinate_and_refuse_text() {
    for v in ALL {
        for action in ["mouse_move", "left_click_drag"] {
            assert_eq!(
                error(v, json!({"action": action})),
                format!("coordinate is required for {action}")
            );
            assert_eq!(
                error(
                    v,
                    json!({"action": action, "coordinate": [1, 2], "text": "a"})
                ),
                format!("text is not accepted for {action}")
            );
        }
        assert_eq!(
            ok(v, json!({"action": "mouse_move", "coordinate": [100, 200]})),
            Action::MouseMove((100, 200))
        );
    }
}

#[test]
fn drag_needs_a_start_from_20250124_on_and_drags_from_the_pointer_before() {
    let drag = json!({"action": "left_click_drag", "coordinate": [30, 40]});
    for v in LATER {
        assert_eq!(
            error(v, drag.clone()),
            "start_coordinate is required for left_click_drag"
        );
        let with_start = json!({"action": "left_click_drag", "coordinate": [30, 40], "start_coordinate": [1, 2]});
        assert_eq!(
            ok(v, with_start),
            Action::Drag {
                start: Some((1, 2)),
                end: (30, 40)
            }
        );
    }
    assert_eq!(
        ok(ToolVersion::V20241022, drag),
        Action::Drag {
            start: None,
            end: (30, 40)
        }
    );
    // The end coordinate is validated before the start is looked at.
    assert_eq!(
        error(
            ToolVersion::V20250124,
            json!({"action": "left_click_drag", "coordinate": [1]})
        ),
        "[1] must be a tuple of length 2"
    );
}

#[test]
fn coordinates_must_be_two_non_negative_ints_shown_as_python_values() {
    let cases = [
        (json!([1, 2, 3]), "[1, 2, 3] must be a tuple of length 2"),
        (json!("100,200"), "100,200 must be a tuple of length 2"),
        (json!({"x": 1}), "{'x': 1} must be a tuple of length 2"),
        (json!(5), "5 must be a tuple of length 2"),
        (
            json!([100.0, 200]),
            "[100.0, 200] must be a tuple of non-negative ints",
        ),
        (
            json!([-1, 2]),
            "[-1, 2] must be a tuple of non-negative ints",
        ),
        (
            json!(["1", 2]),
            "['1', 2] must be a tuple of non-negative ints",
        ),
        (
            json!([true, 2]),
            "[True, 2] must be a tuple of non-negative ints",
        ),
        (json!([1025, 2]), "Coordinates 1025, 2 are out of bounds"),
    ];
    for v in ALL {
        for (coordinate, message) in &cases {
            let input = json!({"action": "mouse_move", "coordinate": coordinate});
            assert_eq!(error(v, input), *message);
        }
    }
}

#[test]
fn coordinates_are_scaled_to_the_screen_and_checked_against_it() {
    let hd = Scaler::new(1920, 1080);
    let input = json!({"action": "mouse_move", "coordinate": [1366, 768]});
    assert_eq!(
        parse(ToolVersion::V20250124, &input, &hd),
        Ok(Action::MouseMove((1920, 1080)))
    );
    let far = json!({"action": "mouse_move", "coordinate": [2000, 1500]});
    assert_eq!(
        parse(ToolVersion::V20250124, &far, &hd),
        Err("Coordinates 2000, 1500 are out of bounds".to_string())
    );
}

#[test]
fn key_and_type_require_string_text_and_refuse_coordinates() {
    for v in ALL {
        for action in ["key", "type"] {
            assert_eq!(
                error(v, json!({"action": action})),
                format!("text is required for {action}")
            );
            assert_eq!(
                error(
                    v,
                    json!({"action": action, "text": "a", "coordinate": [1, 2]})
                ),
                format!("coordinate is not accepted for {action}")
            );
            assert_eq!(
                error(v, json!({"action": action, "text": 123})),
                "123 must be a string"
            );
            assert_eq!(
                error(v, json!({"action": action, "text": ["a"]})),
                "['a'] must be a string"
            );
        }
        assert_eq!(
            ok(v, json!({"action": "type", "text": "Hello, World!"})),
            Action::Type("Hello, World!".into())
        );
        assert_eq!(
            ok(v, json!({"action": "key", "text": "ctrl+s"})),
            Action::Key("ctrl+s".into())
        );
    }
}

#[test]
fn base_clicks_screenshot_and_cursor_position_refuse_text_and_coordinate() {
    for action in [
        "left_click",
        "right_click",
        "middle_click",
        "double_click",
        "screenshot",
        "cursor_position",
    ] {
        let v = ToolVersion::V20241022;
        assert_eq!(
            error(v, json!({"action": action, "text": "shift"})),
            format!("text is not accepted for {action}")
        );
        assert_eq!(
            error(v, json!({"action": action, "coordinate": [1, 2]})),
            format!("coordinate is not accepted for {action}")
        );
    }
    for action in ["screenshot", "cursor_position"] {
        for v in LATER {
            assert_eq!(
                error(v, json!({"action": action, "coordinate": [1, 2]})),
                format!("coordinate is not accepted for {action}")
            );
        }
    }
    assert_eq!(
        ok(ToolVersion::V20241022, json!({"action": "right_click"})),
        Action::Click {
            button: Button::Right,
            at: None,
            modifier: None
        }
    );
}

#[test]
fn later_clicks_take_a_coordinate_and_a_text_or_key_modifier() {
    for v in LATER {
        for (action, button) in [
            ("left_click", Button::Left),
            ("right_click", Button::Right),
            ("middle_click", Button::Middle),
            ("double_click", Button::Double),
            ("triple_click", Button::Triple),
        ] {
            let input = json!({"action": action, "coordinate": [10, 20], "text": "shift"});
            assert_eq!(
                ok(v, input),
                Action::Click {
                    button,
                    at: Some((10, 20)),
                    modifier: Some("shift".into())
                }
            );
        }
        let legacy = json!({"action": "left_click", "key": "ctrl"});
        assert!(
            matches!(ok(v, legacy), Action::Click { modifier: Some(m), at: None, .. } if m == "ctrl")
        );
        assert_eq!(
            error(v, json!({"action": "left_click", "text": 7})),
            "7 must be a string"
        );
        assert_eq!(
            error(v, json!({"action": "left_click", "coordinate": [1]})),
            "[1] must be a tuple of length 2"
        );
        let empty = json!({"action": "left_click", "text": ""});
        assert!(matches!(ok(v, empty), Action::Click { modifier: None, .. }));
    }
}

#[test]
fn left_mouse_down_and_up_refuse_a_coordinate_in_python_equals_form() {
    for v in LATER {
        for action in ["left_mouse_down", "left_mouse_up"] {
            assert_eq!(
                error(v, json!({"action": action, "coordinate": [1, 2]})),
                format!("coordinate is not accepted for action='{action}'.")
            );
        }
        assert_eq!(
            ok(v, json!({"action": "left_mouse_down"})),
            Action::LeftMouse { down: true }
        );
        assert_eq!(
            ok(v, json!({"action": "left_mouse_up"})),
            Action::LeftMouse { down: false }
        );
    }
}

#[test]
fn scroll_checks_direction_then_amount_then_coordinate() {
    for v in LATER {
        let cases = [
            (
                json!({"action": "scroll"}),
                "scroll_direction=None must be 'up', 'down', 'left', or 'right'",
            ),
            (
                json!({"action": "scroll", "scroll_direction": "sideways", "scroll_amount": 1}),
                "scroll_direction='sideways' must be 'up', 'down', 'left', or 'right'",
            ),
            (
                json!({"action": "scroll", "scroll_direction": "up"}),
                "scroll_amount=None must be a non-negative int",
            ),
            (
                json!({"action": "scroll", "scroll_direction": "up", "scroll_amount": -1}),
                "scroll_amount=-1 must be a non-negative int",
            ),
            (
                json!({"action": "scroll", "scroll_direction": "up", "scroll_amount": 2.0}),
                "scroll_amount=2.0 must be a non-negative int",
            ),
            (
                json!({"action": "scroll", "scroll_direction": "up", "scroll_amount": 1, "coordinate": [1, 2, 3]}),
                "[1, 2, 3] must be a tuple of length 2",
            ),
        ];
        for (input, message) in cases {
            assert_eq!(error(v, input), message);
        }
        for (direction, button) in [("up", 4), ("down", 5), ("left", 6), ("right", 7)] {
            let input = json!({"action": "scroll", "scroll_direction": direction,
                "scroll_amount": 3, "coordinate": [5, 6], "text": "shift"});
            assert_eq!(
                ok(v, input),
                Action::Scroll {
                    button,
                    amount: 3,
                    at: Some((5, 6)),
                    modifier: Some("shift".into())
                }
            );
        }
    }
}

#[test]
fn hold_key_and_wait_check_the_duration_then_the_text() {
    for v in LATER {
        for action in ["hold_key", "wait"] {
            let cases = [
                (json!(null), "duration=None must be a number"),
                (json!("5"), "duration='5' must be a number"),
                (json!(true), "duration=True must be a number"),
                (json!(-1), "duration=-1 must be non-negative"),
                (json!(-0.5), "duration=-0.5 must be non-negative"),
                (json!(100.5), "duration=100.5 is too long."),
                (json!(101), "duration=101 is too long."),
            ];
            for (duration, message) in cases {
                let input = json!({"action": action, "duration": duration, "text": "a"});
                assert_eq!(error(v, input), message);
            }
        }
        assert_eq!(
            error(v, json!({"action": "hold_key", "duration": 1})),
            "text is required for hold_key"
        );
        assert_eq!(
            error(v, json!({"action": "hold_key", "duration": 1, "text": 3})),
            "3 must be a string"
        );
        assert_eq!(
            ok(
                v,
                json!({"action": "hold_key", "duration": 1.5, "text": "shift"})
            ),
            Action::HoldKey {
                key: "shift".into(),
                seconds: "1.5".into()
            }
        );
        assert_eq!(
            ok(v, json!({"action": "wait", "duration": 100})),
            Action::Wait(100.0)
        );
        assert_eq!(
            ok(v, json!({"action": "wait", "duration": 0})),
            Action::Wait(0.0)
        );
    }
}

#[test]
fn zoom_region_must_be_four_ordered_non_negative_ints() {
    let v = ToolVersion::V20251124;
    let cases = [
        (
            json!({"action": "zoom"}),
            "region=None must be a tuple of 4 coordinates (x0, y0, x1, y1)",
        ),
        (
            json!({"action": "zoom", "region": [1, 2, 3]}),
            "region=[1, 2, 3] must be a tuple of 4 coordinates (x0, y0, x1, y1)",
        ),
        (
            json!({"action": "zoom", "region": "0,0,1,1"}),
            "region='0,0,1,1' must be a tuple of 4 coordinates (x0, y0, x1, y1)",
        ),
        (
            json!({"action": "zoom", "region": [0, 0, 1.5, 1]}),
            "region=[0, 0, 1.5, 1] must contain non-negative integers",
        ),
        (
            json!({"action": "zoom", "region": [0, -1, 1, 1]}),
            "region=[0, -1, 1, 1] must contain non-negative integers",
        ),
        (
            json!({"action": "zoom", "region": [400, 300, 100, 350]}),
            "region=[400, 300, 100, 350] must have x0 < x1 and y0 < y1",
        ),
        (
            json!({"action": "zoom", "region": [10, 10, 20, 10]}),
            "region=[10, 10, 20, 10] must have x0 < x1 and y0 < y1",
        ),
        (
            json!({"action": "zoom", "region": [0, 0, 2000, 10]}),
            "Coordinates 2000, 10 are out of bounds",
        ),
    ];
    for (input, message) in cases {
        assert_eq!(error(v, input), message);
    }
    let hd = Scaler::new(1920, 1080);
    let input = json!({"action": "zoom", "region": [0, 0, 683, 384]});
    assert_eq!(
        parse(v, &input, &hd),
        Ok(Action::Zoom {
            from: (0, 0),
            to: (960, 540)
        })
    );
}

#[test]
fn params_send_the_scaled_size_display_number_and_zoom_flag() {
    let tool =
        ComputerTool::with_display(ToolVersion::V20251124, display(1920, 1080), Duration::ZERO);
    assert_eq!(
        tool.to_params(),
        json!({"name": "computer", "type": "computer_20251124", "display_width_px": 1366,
               "display_height_px": 768, "display_number": 42, "enable_zoom": true})
    );
    let old =
        ComputerTool::with_display(ToolVersion::V20241022, display(1024, 768), Duration::ZERO);
    assert_eq!(old.to_params()["type"], "computer_20241022");
    assert_eq!(old.to_params()["display_width_px"], 1024);
    assert!(old.to_params().get("enable_zoom").is_none());
    let none = ComputerTool::new(ToolVersion::V20250429, None, Duration::ZERO);
    assert_eq!(
        none.to_params(),
        json!({"name": "computer", "type": "computer_20250124", "display_width_px": 1024,
               "display_height_px": 768, "display_number": null})
    );
}

#[test]
fn without_a_desktop_every_call_is_a_clear_error() {
    let mut tool = ComputerTool::new(ToolVersion::V20250124, None, Duration::ZERO);
    let result = tool.run(&json!({"action": "screenshot"}), &CancelToken::new());
    assert_eq!(
        result.error.as_deref(),
        Some("the computer tool is unavailable: no desktop is configured (DESKTOP_MODE=none)")
    );
}
