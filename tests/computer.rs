//! The computer tool against real X servers: each test starts its own Xvfb (which picks a
//! free display number itself with `-displayfd`), so tests run in parallel.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use computer_use_server::cancel::CancelToken;
use computer_use_server::config::Config;
use computer_use_server::desktop::screenshot::{self, Image};
use computer_use_server::desktop::{DesktopAccess, DesktopManager, Display};
use computer_use_server::tools::{ComputerTool, Tool, ToolResult, ToolVersion};
use computer_use_server::util::base64;
use serde_json::{Value, json};
use support::xvfb::Xvfb;

/// How long an xterm may take to appear.
const START_TIMEOUT: Duration = Duration::from_secs(30);

impl Xvfb {
    fn tool(&self, version: ToolVersion) -> ComputerTool {
        ComputerTool::with_display(version, self.display.clone(), Duration::ZERO)
    }

    /// Runs xdotool directly (to check what the tool did, independently of it).
    fn xdotool(&self, args: &[&str]) -> String {
        let out = Command::new("xdotool")
            .args(args)
            .env("DISPLAY", self.display.name())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn pointer(&self) -> (u32, u32) {
        let text = self.xdotool(&["getmouselocation", "--shell"]);
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap()
                .parse()
                .unwrap()
        };
        (field("X="), field("Y="))
    }
}

/// An xterm whose input goes to `cat > file`, at the top-left corner; killed on drop.
struct Xterm {
    child: Child,
    file: PathBuf,
}

impl Xterm {
    /// Starts the xterm and waits for its window and file. Under load xterm sometimes exits
    /// at start-up with an Xt error (its text is withheld when running as root): retry.
    fn start(x: &Xvfb, name: &str) -> Xterm {
        let file =
            std::env::temp_dir().join(format!("computer-test-{}-{name}.txt", std::process::id()));
        let title = format!("computer-test-{}-{name}", std::process::id());
        for _ in 0..3 {
            if let Some(child) = Xterm::try_start(x, &title, &file) {
                return Xterm { child, file };
            }
        }
        panic!("xterm did not start");
    }

    fn try_start(x: &Xvfb, title: &str, file: &Path) -> Option<Child> {
        let _ = fs::remove_file(file);
        let script = format!("cat > '{}'", file.display());
        let mut child = Command::new("xterm")
            .args(["-geometry", "80x24+0+0", "-T", title, "-e", "sh", "-c"])
            .arg(&script)
            .env("DISPLAY", x.display.name())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("xterm is installed");
        let deadline = Instant::now() + START_TIMEOUT;
        while x.xdotool(&["search", "--name", title]).trim().is_empty() || !file.exists() {
            if let Ok(Some(_)) = child.try_wait() {
                return None;
            }
            assert!(Instant::now() < deadline, "xterm did not appear");
            thread::sleep(Duration::from_millis(50));
        }
        Some(child)
    }

    /// Waits until the file holds `expected`.
    fn expect_contents(&self, expected: &str) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let text = fs::read_to_string(&self.file).unwrap_or_default();
            if text == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "file holds {text:?}, not {expected:?}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Xterm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_file(&self.file);
    }
}

fn run(tool: &mut ComputerTool, input: Value) -> ToolResult {
    tool.run(&input, &CancelToken::new())
}

/// The result's image, decoded; panics if the result is an error or has no image.
fn image_of(result: &ToolResult) -> Image {
    assert_eq!(result.error, None, "{result:?}");
    let b64 = result.base64_image.as_deref().expect("an image");
    decode_png(&base64::decode(b64).unwrap())
}

fn decode_png(bytes: &[u8]) -> Image {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    pixels.truncate(info.buffer_size());
    Image {
        width: info.width,
        height: info.height,
        pixels,
    }
}

#[test]
fn screenshot_of_a_full_hd_display_is_a_png_scaled_to_fwxga() {
    let x = Xvfb::start(1920, 1080);
    for version in ToolVersion::ALL {
        let result = run(&mut x.tool(version), json!({"action": "screenshot"}));
        let image = image_of(&result);
        assert_eq!((image.width, image.height), (1366, 768));
        assert_eq!(result.output, None);
    }
}

#[test]
fn screenshot_of_an_xga_display_keeps_its_size() {
    let x = Xvfb::start(1024, 768);
    let result = run(
        &mut x.tool(ToolVersion::V20241022),
        json!({"action": "screenshot"}),
    );
    let image = image_of(&result);
    assert_eq!((image.width, image.height), (1024, 768));
}

#[test]
fn mouse_move_then_cursor_position_round_trips_through_scaling() {
    let x = Xvfb::start(1920, 1080);
    let mut tool = x.tool(ToolVersion::V20250124);
    let moved = run(
        &mut tool,
        json!({"action": "mouse_move", "coordinate": [683, 384]}),
    );
    assert_eq!(image_of(&moved).width, 1366);
    assert_eq!(x.pointer(), (960, 540));
    let position = run(&mut tool, json!({"action": "cursor_position"}));
    assert_eq!(position.output.as_deref(), Some("X=683,Y=384"));
    assert_eq!(position.base64_image, None);
}

#[test]
fn click_at_a_coordinate_moves_the_pointer_there_first() {
    let x = Xvfb::start(1920, 1200);
    let mut tool = x.tool(ToolVersion::V20251124);
    let result = run(
        &mut tool,
        json!({"action": "left_click", "coordinate": [640, 400], "text": "shift"}),
    );
    assert_eq!(image_of(&result).width, 1280);
    assert_eq!(x.pointer(), (960, 600));
}

#[test]
fn typing_into_an_xterm_lands_in_the_program_behind_it() {
    let x = Xvfb::start(1024, 768);
    let term = Xterm::start(&x, "type");
    let mut tool = x.tool(ToolVersion::V20250124);
    image_of(&run(
        &mut tool,
        json!({"action": "left_click", "coordinate": [100, 100]}),
    ));
    let typed = run(&mut tool, json!({"action": "type", "text": "hello\n"}));
    assert_eq!(image_of(&typed).height, 768);
    term.expect_contents("hello\n");
}

#[test]
fn long_text_is_typed_completely_across_chunks() {
    let x = Xvfb::start(1024, 768);
    let term = Xterm::start(&x, "chunks");
    let mut tool = x.tool(ToolVersion::V20241022);
    run(
        &mut tool,
        json!({"action": "mouse_move", "coordinate": [100, 100]}),
    );
    let text: String = (0..120)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    image_of(&run(
        &mut tool,
        json!({"action": "type", "text": format!("{text}\n")}),
    ));
    term.expect_contents(&format!("{text}\n"));
}

#[test]
fn key_with_a_modifier_reaches_the_window() {
    let x = Xvfb::start(1024, 768);
    let term = Xterm::start(&x, "key");
    let mut tool = x.tool(ToolVersion::V20241022);
    run(
        &mut tool,
        json!({"action": "mouse_move", "coordinate": [100, 100]}),
    );
    // ctrl+u erases the line in the terminal, so only what follows reaches `cat`.
    for input in [
        json!({"action": "type", "text": "abc"}),
        json!({"action": "key", "text": "ctrl+u"}),
        json!({"action": "type", "text": "xyz"}),
        json!({"action": "key", "text": "Return"}),
    ] {
        image_of(&run(&mut tool, input));
    }
    term.expect_contents("xyz\n");
}

#[test]
fn unknown_key_name_warning_is_sent_beside_the_screenshot() {
    let x = Xvfb::start(1024, 768);
    let result = run(
        &mut x.tool(ToolVersion::V20250124),
        json!({"action": "key", "text": "NoSuchKeyName"}),
    );
    assert_eq!(image_of(&result).width, 1024);
    let output = result.output.unwrap_or_default();
    assert!(output.contains("NoSuchKeyName"), "{output:?}");
}

#[test]
fn zoom_returns_the_screen_space_crop_at_full_resolution() {
    let x = Xvfb::start(1920, 1080);
    let mut tool = x.tool(ToolVersion::V20251124);
    // Put the pointer inside the region so the crop has something to compare.
    run(
        &mut tool,
        json!({"action": "mouse_move", "coordinate": [300, 200]}),
    );
    let result = run(
        &mut tool,
        json!({"action": "zoom", "region": [0, 0, 683, 384]}),
    );
    assert_eq!(
        (result.output.as_deref(), result.error.as_deref()),
        (None, None)
    );
    let zoomed = image_of(&result);
    assert_eq!((zoomed.width, zoomed.height), (960, 540));
    let full = screenshot::capture(&x.display).unwrap();
    assert_eq!(zoomed, screenshot::crop(&full, 0, 0, 960, 540));
}

#[test]
fn zoom_of_the_whole_screen_is_shrunk_to_the_api_limits() {
    let x = Xvfb::start(1920, 1080);
    let result = run(
        &mut x.tool(ToolVersion::V20251124),
        json!({"action": "zoom", "region": [0, 0, 1366, 768]}),
    );
    let zoomed = image_of(&result);
    assert_eq!((zoomed.width, zoomed.height), (1429, 804));
}

#[test]
fn scroll_drag_hold_key_and_mouse_buttons_answer_with_screenshots() {
    let x = Xvfb::start(1024, 768);
    let mut tool = x.tool(ToolVersion::V20250124);
    for input in [
        json!({"action": "scroll", "scroll_direction": "down", "scroll_amount": 3, "coordinate": [50, 60]}),
        json!({"action": "left_click_drag", "start_coordinate": [10, 10], "coordinate": [200, 150]}),
        json!({"action": "hold_key", "text": "shift", "duration": 0.1}),
        json!({"action": "left_mouse_down"}),
        json!({"action": "left_mouse_up"}),
        json!({"action": "triple_click"}),
        json!({"action": "wait", "duration": 0}),
    ] {
        let result = run(&mut tool, input.clone());
        assert_eq!(image_of(&result).width, 1024, "{input}");
    }
    assert_eq!(x.pointer(), (200, 150));
}

#[test]
fn cancel_during_a_long_wait_returns_within_a_second() {
    let x = Xvfb::start(1024, 768);
    let mut tool = x.tool(ToolVersion::V20250124);
    let cancel = CancelToken::new();
    let other = cancel.clone();
    let canceller = thread::spawn(move || {
        thread::sleep(Duration::from_millis(100));
        other.cancel();
    });
    let started = Instant::now();
    let result = tool.run(&json!({"action": "wait", "duration": 30}), &cancel);
    canceller.join().unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(result.error.as_deref(), Some("action cancelled"));
}

#[test]
fn settle_delay_is_waited_after_input_but_not_after_typing() {
    let x = Xvfb::start(1024, 768);
    let settle = Duration::from_millis(400);
    let mut tool = ComputerTool::with_display(ToolVersion::V20250124, x.display.clone(), settle);
    let started = Instant::now();
    image_of(&run(
        &mut tool,
        json!({"action": "mouse_move", "coordinate": [5, 5]}),
    ));
    assert!(started.elapsed() >= settle);
    let started = Instant::now();
    image_of(&run(&mut tool, json!({"action": "type", "text": "a"})));
    assert!(started.elapsed() < settle);
}

#[test]
fn a_display_that_is_not_running_gives_error_results_not_panics() {
    // Xvfb -displayfd hands out the lowest free numbers, so this one stays unused.
    let display = Display {
        display_num: 9_876,
        width: 1024,
        height: 768,
        vnc_addr: "127.0.0.1:0".parse().unwrap(),
    };
    let mut tool = ComputerTool::with_display(ToolVersion::V20250124, display, Duration::ZERO);
    let shot = run(&mut tool, json!({"action": "screenshot"}));
    assert!(
        shot.error
            .as_deref()
            .is_some_and(|e| e.starts_with("Failed to take screenshot: ")),
        "{shot:?}"
    );
    let click = run(&mut tool, json!({"action": "left_click"}));
    assert!(
        click
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("xdotool exited with status")),
        "{click:?}"
    );
}

#[test]
fn per_session_desktop_from_the_manager_drives_the_tool_at_the_scaled_size() {
    let vars = [
        ("DESKTOP_MODE", "per-session"),
        ("WIDTH", "1920"),
        ("HEIGHT", "1080"),
    ];
    let config = Config::from_sources(&[], |name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    })
    .unwrap();
    let manager = DesktopManager::new(&config.desktop);
    let access = DesktopAccess {
        manager: manager.clone(),
        session_id: "computer-test".into(),
    };
    let mut tool = ComputerTool::new(ToolVersion::V20251124, Some(access), Duration::ZERO);
    let result = run(&mut tool, json!({"action": "screenshot"}));
    let image = image_of(&result);
    assert_eq!((image.width, image.height), (1366, 768));
    let params = tool.to_params();
    let display = manager.running(Some("computer-test")).expect("started");
    assert_eq!(
        (
            &params["display_width_px"],
            &params["display_height_px"],
            &params["display_number"]
        ),
        (&json!(1366), &json!(768), &json!(display.display_num))
    );
    manager.shutdown();
}
