//! The bash and text-editor tools through their public surface: a real `/bin/bash`, real
//! temporary files (reference §11.3, §11.5, plus the [REC] behaviours we added).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use computer_use_server::cancel::CancelToken;
use computer_use_server::tools::{
    BashTool, ComputerTool, EditTool, MAX_RESPONSE_LEN, TRUNCATED_NOTE, Tool, ToolResult,
    ToolVersion,
};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(30);

fn call(tool: &mut dyn Tool, input: Value) -> ToolResult {
    tool.run(&input, &CancelToken::new())
}

fn bash(command: &str) -> Value {
    json!({ "command": command })
}

fn output(result: &ToolResult) -> &str {
    result.output.as_deref().unwrap_or("")
}

fn error(result: &ToolResult) -> &str {
    result.error.as_deref().unwrap_or("")
}

/// The shell's process group id (bash leads its own group).
fn shell_pgid(tool: &mut BashTool) -> i32 {
    let result = call(tool, bash("echo $$"));
    output(&result).parse().expect("a pid")
}

/// Whether any live process belongs to process group `pgid` (read from /proc).
fn group_alive(pgid: i32) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // Fields after the `(comm)`: state, ppid, pgrp, …; a zombie (Z) is already dead.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields.len() > 2 && fields[2] == pgid.to_string() && fields[0] != "Z"
    })
}

fn wait_until(condition: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    condition()
}

// ---- bash (reference §5, §11.3) ----

#[test]
fn bash_restart_reports_restarted_and_the_new_shell_works() {
    for version in ToolVersion::ALL {
        let mut tool = BashTool::new(version, LONG);
        let result = call(&mut tool, json!({"restart": true}));
        assert_eq!(result.system.as_deref(), Some("tool has been restarted."));
        assert_eq!(result.error, None);
        let result = call(&mut tool, bash("echo 'Hello, World!'"));
        assert_eq!(output(&result), "Hello, World!");
    }
}

#[test]
fn bash_echo_gives_stripped_output_and_empty_error() {
    for version in ToolVersion::ALL {
        let mut tool = BashTool::new(version, LONG);
        let result = call(&mut tool, bash("echo 'Hello, World!'"));
        assert_eq!(result.output.as_deref(), Some("Hello, World!"));
        assert_eq!(result.error.as_deref(), Some(""));
    }
}

#[test]
fn bash_without_command_answers_no_command_provided() {
    let mut tool = BashTool::new(ToolVersion::V20250124, LONG);
    assert_eq!(error(&call(&mut tool, json!({}))), "no command provided.");
    let result = call(&mut tool, json!({"restart": false}));
    assert_eq!(error(&result), "no command provided.");
    let result = call(&mut tool, json!({"command": 5}));
    assert!(error(&result).starts_with("Invalid `command` parameter"));
}

#[test]
fn bash_session_persists_between_commands() {
    let mut tool = BashTool::new(ToolVersion::V20241022, LONG);
    assert_eq!(output(&call(&mut tool, bash("X=kept; cd /tmp"))), "");
    assert_eq!(output(&call(&mut tool, bash("echo $X $PWD"))), "kept /tmp");
}

#[test]
fn bash_unknown_command_reports_command_not_found_on_stderr() {
    let mut tool = BashTool::new(ToolVersion::V20250124, LONG);
    let result = call(&mut tool, bash("definitely_not_a_command_xyz"));
    assert!(error(&result).contains("command not found"), "{result:?}");
}

#[test]
fn bash_exit_codes_are_not_reported() {
    let mut tool = BashTool::new(ToolVersion::V20250124, LONG);
    let result = call(&mut tool, bash("bash -c 'exit 1'"));
    assert_eq!(result.output.as_deref(), Some(""));
    assert_eq!(result.error.as_deref(), Some(""));
}

#[test]
fn bash_separates_stdout_and_stderr() {
    let mut tool = BashTool::new(ToolVersion::V20250124, LONG);
    let result = call(&mut tool, bash("echo out; echo err >&2; echo out2"));
    assert_eq!(output(&result), "out\nout2");
    assert_eq!(error(&result), "err");
}

#[test]
fn bash_background_job_and_trailing_comment_do_not_hide_the_sentinel() {
    let mut tool = BashTool::new(ToolVersion::V20250124, Duration::from_secs(5));
    let started = Instant::now();
    let result = call(&mut tool, bash("sleep 1 &"));
    assert_eq!(result.error.as_deref(), Some(""));
    assert!(started.elapsed() < Duration::from_millis(900));
    let result = call(&mut tool, bash("echo hi # a trailing comment"));
    assert_eq!(output(&result), "hi");
    let result = call(&mut tool, bash("printf 'no newline'"));
    assert_eq!(output(&result), "no newline");
}

#[test]
fn bash_timeout_message_names_the_timeout_and_sticks_until_restart() {
    let mut tool = BashTool::new(ToolVersion::V20250124, Duration::from_millis(100));
    let expected = "timed out: bash has not returned in 0.1 seconds and must be restarted";
    assert_eq!(error(&call(&mut tool, bash("sleep 1"))), expected);
    assert_eq!(error(&call(&mut tool, bash("echo again"))), expected);
    call(&mut tool, json!({"restart": true}));
    assert_eq!(output(&call(&mut tool, bash("echo fresh"))), "fresh");
}

#[test]
fn bash_default_style_timeout_prints_as_python_float() {
    let mut tool = BashTool::new(ToolVersion::V20250124, Duration::from_secs(1));
    let result = call(&mut tool, bash("sleep 3"));
    assert_eq!(
        error(&result),
        "timed out: bash has not returned in 1.0 seconds and must be restarted"
    );
}

#[test]
fn bash_command_reading_stdin_times_out_instead_of_hanging() {
    let mut tool = BashTool::new(ToolVersion::V20250124, Duration::from_millis(500));
    let started = Instant::now();
    let result = call(&mut tool, bash("cat"));
    assert!(error(&result).starts_with("timed out: bash has not returned in 0.5 seconds"));
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn bash_exit_reports_returncode_until_restart() {
    let mut tool = BashTool::new(ToolVersion::V20250124, LONG);
    let result = call(&mut tool, bash("exit 3"));
    assert_eq!(result.system.as_deref(), Some("tool must be restarted"));
    assert_eq!(error(&result), "bash has exited with returncode 3");
    let again = call(&mut tool, bash("echo hi"));
    assert_eq!(error(&again), "bash has exited with returncode 3");
    call(&mut tool, json!({"restart": 1}));
    assert_eq!(output(&call(&mut tool, bash("echo hi"))), "hi");
}

#[test]
fn bash_long_output_is_clipped_with_the_note() {
    let mut tool = BashTool::new(ToolVersion::V20250124, LONG);
    let result = call(&mut tool, bash("head -c 20000 /dev/zero | tr '\\0' 'a'"));
    let text = output(&result);
    assert!(text.ends_with(TRUNCATED_NOTE));
    assert_eq!(
        text.chars().count(),
        MAX_RESPONSE_LEN + TRUNCATED_NOTE.len()
    );
}

#[test]
fn bash_output_flood_is_capped_and_the_shell_survives() {
    let mut tool = BashTool::new(ToolVersion::V20250124, LONG);
    let result = call(
        &mut tool,
        bash("head -c 50000000 /dev/zero | tr '\\0' 'y'; head -c 5000000 /dev/zero >&2"),
    );
    assert!(output(&result).ends_with(TRUNCATED_NOTE));
    assert!(error(&result).ends_with(TRUNCATED_NOTE));
    assert!(output(&result).len() < MAX_RESPONSE_LEN + TRUNCATED_NOTE.len() + 1);
    assert_eq!(output(&call(&mut tool, bash("echo ok"))), "ok");
}

#[test]
fn bash_cancel_kills_the_command_promptly_and_next_call_gets_a_fresh_shell() {
    let mut tool = BashTool::new(ToolVersion::V20250124, LONG);
    let old_pgid = shell_pgid(&mut tool);
    let cancel = CancelToken::new();
    let (started_tx, started_rx) = mpsc::channel();
    let canceller = cancel.clone();
    let handle = thread::spawn(move || {
        started_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        thread::sleep(Duration::from_millis(200));
        let at = Instant::now();
        canceller.cancel();
        at
    });
    started_tx.send(()).unwrap();
    let result = tool.run(&bash("sleep 30"), &cancel);
    let returned = Instant::now();
    let cancelled_at = handle.join().unwrap();
    assert_eq!(error(&result), "command cancelled");
    assert!(returned.duration_since(cancelled_at) < Duration::from_secs(1));
    assert!(wait_until(|| !group_alive(old_pgid)));
    cancel.reset();
    let result = tool.run(&bash("echo $$"), &cancel);
    let new_pgid: i32 = output(&result).parse().unwrap();
    assert_ne!(new_pgid, old_pgid);
}

#[test]
fn bash_already_cancelled_token_runs_nothing() {
    let mut tool = BashTool::new(ToolVersion::V20250124, LONG);
    let cancel = CancelToken::new();
    cancel.cancel();
    let result = tool.run(&bash("echo never"), &cancel);
    assert_eq!(error(&result), "command cancelled");
}

#[test]
fn bash_shutdown_and_drop_leave_no_process_behind() {
    let mut tool = BashTool::new(ToolVersion::V20250124, LONG);
    call(&mut tool, bash("sleep 300 &"));
    let pgid = shell_pgid(&mut tool);
    assert!(group_alive(pgid));
    tool.shutdown();
    assert!(wait_until(|| !group_alive(pgid)));

    let mut dropped = BashTool::new(ToolVersion::V20250124, LONG);
    call(&mut dropped, bash("sleep 300 &"));
    let pgid = shell_pgid(&mut dropped);
    drop(dropped);
    assert!(wait_until(|| !group_alive(pgid)));
}

#[test]
fn bash_restart_kills_the_old_process_group() {
    let mut tool = BashTool::new(ToolVersion::V20250124, LONG);
    call(&mut tool, bash("sleep 300 &"));
    let pgid = shell_pgid(&mut tool);
    call(&mut tool, json!({"restart": true}));
    assert!(wait_until(|| !group_alive(pgid)));
    assert_ne!(shell_pgid(&mut tool), pgid);
}

// ---- computer (placeholder until the desktop lands) ----

#[test]
fn computer_without_desktop_answers_a_clear_error() {
    let mut tool = ComputerTool::new(ToolVersion::V20250124, None, Duration::ZERO);
    let result = call(&mut tool, json!({"action": "screenshot"}));
    assert_eq!(
        error(&result),
        "the computer tool is unavailable: no desktop is configured (DESKTOP_MODE=none)"
    );
}

// ---- text editor (reference §7, §11.5) ----

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!("cus-edit-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&dir).unwrap();
        TempDir(dir)
    }

    fn file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn edit(tool: &mut EditTool, command: &str, path: &Path, extra: Value) -> ToolResult {
    let mut input = json!({"command": command, "path": path.to_str().unwrap()});
    for (key, value) in extra.as_object().unwrap() {
        input[key] = value.clone();
    }
    call(tool, input)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

const UNDO_VERSIONS: [ToolVersion; 2] = [ToolVersion::V20241022, ToolVersion::V20250124];

#[test]
fn editor_names_and_types_follow_the_version() {
    let names: Vec<Value> = ToolVersion::ALL
        .iter()
        .map(|v| EditTool::new(*v).to_params())
        .collect();
    assert_eq!(
        names,
        [
            json!({"name": "str_replace_editor", "type": "text_editor_20241022"}),
            json!({"name": "str_replace_editor", "type": "text_editor_20250124"}),
            json!({"name": "str_replace_based_edit_tool", "type": "text_editor_20250429"}),
            json!({"name": "str_replace_based_edit_tool", "type": "text_editor_20250728"}),
        ]
    );
}

#[test]
fn view_shows_the_whole_file_numbered() {
    let dir = TempDir::new();
    let path = dir.file("f.txt", "File content\n\tindented");
    for version in ToolVersion::ALL {
        let result = edit(&mut EditTool::new(version), "view", &path, json!({}));
        assert_eq!(
            output(&result),
            format!(
                "Here's the result of running `cat -n` on {}:\n     1\tFile content\n     2\t        indented\n",
                path.display()
            )
        );
    }
}

#[test]
fn view_of_a_directory_lists_two_levels_without_hidden_entries() {
    let dir = TempDir::new();
    dir.file("visible.txt", "");
    dir.file(".hidden", "");
    std::fs::create_dir_all(dir.0.join("sub/deeper/deepest")).unwrap();
    for version in ToolVersion::ALL {
        let result = edit(&mut EditTool::new(version), "view", &dir.0, json!({}));
        let text = output(&result);
        let root = dir.0.display();
        assert!(text.starts_with(&format!(
            "Here's the files and directories up to 2 levels deep in {root}, excluding hidden items:\n"
        )));
        assert!(text.contains(&format!("{root}/visible.txt\n")));
        assert!(text.contains(&format!("{root}/sub/deeper\n")));
        assert!(!text.contains("deepest") && !text.contains(".hidden"));
        assert!(text.ends_with("\n\n"));
    }
}

#[test]
fn view_of_a_directory_with_a_trailing_slash_names_the_normalised_path() {
    let dir = TempDir::new();
    let mut tool = EditTool::new(ToolVersion::V20250124);
    let input = json!({"command": "view", "path": format!("{}/", dir.0.display())});
    let result = call(&mut tool, input);
    assert!(output(&result).contains(&format!(
        "up to 2 levels deep in {}, excluding",
        dir.0.display()
    )));
}

#[test]
fn view_range_shows_only_the_requested_lines() {
    let dir = TempDir::new();
    let path = dir.file("f.txt", "Line 1\nLine 2\nLine 3\nLine 4");
    for version in ToolVersion::ALL {
        let mut tool = EditTool::new(version);
        let result = edit(&mut tool, "view", &path, json!({"view_range": [2, 3]}));
        assert!(output(&result).contains("\n     2\tLine 2\n     3\tLine 3\n"));
        assert!(!output(&result).contains("Line 4"));
        let result = edit(&mut tool, "view", &path, json!({"view_range": [3, -1]}));
        assert!(output(&result).ends_with(":\n     3\tLine 3\n     4\tLine 4\n"));
        let result = edit(&mut tool, "view", &path, json!({"view_range": []}));
        assert!(output(&result).contains("     1\tLine 1"));
    }
}

#[test]
fn view_range_errors_use_the_reference_messages() {
    let dir = TempDir::new();
    let path = dir.file("f.txt", "Line 1\nLine 2\nLine 3\nLine 4");
    let mut tool = EditTool::new(ToolVersion::V20250124);
    let cases = [
        (
            json!([3, 2]),
            "Invalid `view_range`: [3, 2]. Its second element `2` should be larger or equal than its first `3`",
        ),
        (
            json!([0, 2]),
            "Invalid `view_range`: [0, 2]. Its first element `0` should be within the range of lines of the file: [1, 4]",
        ),
        (
            json!([1, 100]),
            "Invalid `view_range`: [1, 100]. Its second element `100` should be smaller than the number of lines in the file: `4`",
        ),
        (
            json!([1, "x"]),
            "Invalid `view_range`. It should be a list of two integers.",
        ),
        (
            json!([1]),
            "Invalid `view_range`. It should be a list of two integers.",
        ),
    ];
    for (range, message) in cases {
        let result = edit(&mut tool, "view", &path, json!({"view_range": range}));
        assert_eq!(error(&result), message);
    }
}

#[test]
fn view_errors_for_missing_path_and_directory_with_range() {
    let dir = TempDir::new();
    let missing = dir.0.join("missing.txt");
    for version in ToolVersion::ALL {
        let mut tool = EditTool::new(version);
        let result = edit(&mut tool, "view", &missing, json!({}));
        assert_eq!(
            error(&result),
            format!(
                "The path {} does not exist. Please provide a valid path.",
                missing.display()
            )
        );
        let result = edit(&mut tool, "view", &dir.0, json!({"view_range": [1, 2]}));
        assert_eq!(
            error(&result),
            "The `view_range` parameter is not allowed when `path` points to a directory."
        );
    }
}

#[test]
fn view_of_a_non_utf8_file_reports_the_read_error() {
    let dir = TempDir::new();
    let path = dir.0.join("bin");
    std::fs::write(&path, [0xff, 0xfe, 0x00]).unwrap();
    let result = edit(
        &mut EditTool::new(ToolVersion::V20250429),
        "view",
        &path,
        json!({}),
    );
    assert!(error(&result).starts_with("Ran into "));
    assert!(error(&result).ends_with(&format!(" while trying to read {}", path.display())));
}

#[test]
fn view_clips_long_files_with_the_note_before_numbering() {
    let dir = TempDir::new();
    let path = dir.file("big.txt", &"x".repeat(20_000));
    let result = edit(
        &mut EditTool::new(ToolVersion::V20250124),
        "view",
        &path,
        json!({}),
    );
    let text = output(&result);
    assert!(text.ends_with(&format!("{TRUNCATED_NOTE}\n")));
    assert!(text.contains(&format!(
        "     1\t{}<response clipped>",
        "x".repeat(MAX_RESPONSE_LEN)
    )));
}

#[test]
fn max_characters_clips_viewed_content_on_20250728_only() {
    let dir = TempDir::new();
    let path = dir.file("f.txt", "abcdefghij\nklmnop");
    let mut tool = EditTool::new(ToolVersion::V20251124).with_max_characters(5);
    assert_eq!(tool.to_params()["max_characters"], 5);
    let result = edit(&mut tool, "view", &path, json!({}));
    assert_eq!(
        output(&result),
        format!(
            "Here's the result of running `cat -n` on {}:\n     1\tabcde{TRUNCATED_NOTE}\n",
            path.display()
        )
    );
    let mut older = EditTool::new(ToolVersion::V20250429).with_max_characters(5);
    assert!(older.to_params().get("max_characters").is_none());
    let result = edit(&mut older, "view", &path, json!({}));
    assert!(output(&result).contains("     2\tklmnop"));
}

#[test]
fn create_writes_exactly_the_text() {
    let dir = TempDir::new();
    for version in ToolVersion::ALL {
        let path = dir.0.join(format!("new-{version}.txt"));
        let mut tool = EditTool::new(version);
        let result = edit(
            &mut tool,
            "create",
            &path,
            json!({"file_text": "New file content"}),
        );
        assert_eq!(
            output(&result),
            format!("File created successfully at: {}", path.display())
        );
        assert_eq!(read(&path), "New file content");
    }
}

#[test]
fn create_errors_use_the_reference_messages() {
    let dir = TempDir::new();
    let existing = dir.file("exists.txt", "old");
    let mut tool = EditTool::new(ToolVersion::V20250124);
    let result = edit(&mut tool, "create", &dir.0.join("a.txt"), json!({}));
    assert_eq!(
        error(&result),
        "Parameter `file_text` is required for command: create"
    );
    let result = edit(&mut tool, "create", &existing, json!({"file_text": "x"}));
    assert_eq!(
        error(&result),
        format!(
            "File already exists at: {}. Cannot overwrite files using command `create`.",
            existing.display()
        )
    );
    assert_eq!(read(&existing), "old");
    let nested = dir.0.join("no/such/dir.txt");
    let result = edit(&mut tool, "create", &nested, json!({"file_text": "x"}));
    assert!(error(&result).starts_with("Ran into "));
    assert!(error(&result).ends_with(&format!(" while trying to write to {}", nested.display())));
    let result = edit(
        &mut tool,
        "create",
        &dir.0.join("b.txt"),
        json!({"file_text": 7}),
    );
    assert_eq!(
        error(&result),
        "Invalid `file_text` parameter: 7. It should be a string"
    );
}

#[test]
fn str_replace_edits_and_shows_the_snippet() {
    let dir = TempDir::new();
    for version in ToolVersion::ALL {
        let path = dir.file("f.txt", "Original content");
        let mut tool = EditTool::new(version);
        let result = edit(
            &mut tool,
            "str_replace",
            &path,
            json!({"old_str": "Original", "new_str": "New"}),
        );
        assert_eq!(read(&path), "New content");
        assert_eq!(
            output(&result),
            format!(
                "The file {0} has been edited. Here's the result of running `cat -n` on a snippet of {0}:\n     1\tNew content\nReview the changes and make sure they are as expected. Edit the file again if necessary.",
                path.display()
            )
        );
    }
}

#[test]
fn str_replace_without_new_str_deletes_and_expands_tabs_in_the_file() {
    let dir = TempDir::new();
    let path = dir.file("f.txt", "keep\tthis drop");
    let mut tool = EditTool::new(ToolVersion::V20250429);
    edit(&mut tool, "str_replace", &path, json!({"old_str": " drop"}));
    assert_eq!(read(&path), "keep    this");
}

#[test]
fn str_replace_errors_use_the_reference_messages() {
    let dir = TempDir::new();
    let path = dir.file("f.txt", "Test test test\nsecond test");
    for version in ToolVersion::ALL {
        let mut tool = EditTool::new(version);
        let result = edit(
            &mut tool,
            "str_replace",
            &path,
            json!({"old_str": "absent", "new_str": "x"}),
        );
        assert_eq!(
            error(&result),
            format!(
                "No replacement was performed, old_str `absent` did not appear verbatim in {}.",
                path.display()
            )
        );
        let result = edit(
            &mut tool,
            "str_replace",
            &path,
            json!({"old_str": "test", "new_str": "x"}),
        );
        assert_eq!(
            error(&result),
            "No replacement was performed. Multiple occurrences of old_str `test` in lines [1, 2]. Please ensure it is unique"
        );
        let result = edit(&mut tool, "str_replace", &path, json!({"new_str": "x"}));
        assert_eq!(
            error(&result),
            "Parameter `old_str` is required for command: str_replace"
        );
        assert_eq!(read(&path), "Test test test\nsecond test");
    }
}

#[test]
fn insert_places_lines_after_the_given_line() {
    let dir = TempDir::new();
    for version in ToolVersion::ALL {
        let key = if version.edit_uses_insert_text() {
            "insert_text"
        } else {
            "new_str"
        };
        let mut tool = EditTool::new(version);
        let path = dir.file("three.txt", "Line 1\nLine 2\nLine 3");
        let result = edit(
            &mut tool,
            "insert",
            &path,
            json!({"insert_line": 2, key: "New Line"}),
        );
        assert_eq!(read(&path), "Line 1\nLine 2\nNew Line\nLine 3");
        assert_eq!(
            output(&result),
            format!(
                "The file {} has been edited. Here's the result of running `cat -n` on a snippet of the edited file:\n     1\tLine 1\n     2\tLine 2\n     3\tNew Line\n     4\tLine 3\nReview the changes and make sure they are as expected (correct indentation, no duplicate lines, etc). Edit the file again if necessary.",
                path.display()
            )
        );
        let path = dir.file("two.txt", "Line 1\nLine 2");
        edit(
            &mut tool,
            "insert",
            &path,
            json!({"insert_line": 0, key: "Top"}),
        );
        assert_eq!(read(&path), "Top\nLine 1\nLine 2");
        let path = dir.file("two.txt", "Line 1\nLine 2");
        edit(
            &mut tool,
            "insert",
            &path,
            json!({"insert_line": 2, key: "End"}),
        );
        assert_eq!(read(&path), "Line 1\nLine 2\nEnd");
    }
}

#[test]
fn insert_errors_use_the_reference_messages() {
    let dir = TempDir::new();
    let path = dir.file("f.txt", "Line 1\nLine 2");
    for version in ToolVersion::ALL {
        let (key, missing) = if version.edit_uses_insert_text() {
            (
                "insert_text",
                "Parameter `insert_text` is required for command: insert",
            )
        } else {
            (
                "new_str",
                "Parameter `new_str` is required for command: insert",
            )
        };
        let mut tool = EditTool::new(version);
        let result = edit(
            &mut tool,
            "insert",
            &path,
            json!({"insert_line": 5, key: "x"}),
        );
        assert_eq!(
            error(&result),
            "Invalid `insert_line` parameter: 5. It should be within the range of lines of the file: [0, 2]"
        );
        let result = edit(
            &mut tool,
            "insert",
            &path,
            json!({"insert_line": -1, key: "x"}),
        );
        assert!(error(&result).starts_with("Invalid `insert_line` parameter: -1."));
        let result = edit(&mut tool, "insert", &path, json!({key: "x"}));
        assert_eq!(
            error(&result),
            "Parameter `insert_line` is required for command: insert"
        );
        let result = edit(&mut tool, "insert", &path, json!({"insert_line": 1}));
        assert_eq!(error(&result), missing);
        let result = edit(
            &mut tool,
            "insert",
            &path,
            json!({"insert_line": "one", key: "x"}),
        );
        assert_eq!(
            error(&result),
            "Invalid `insert_line` parameter: \"one\". It should be an integer"
        );
        assert_eq!(read(&path), "Line 1\nLine 2");
    }
}

#[test]
fn insert_on_20250728_prefers_insert_text_and_falls_back_to_new_str() {
    let dir = TempDir::new();
    let path = dir.file("f.txt", "a\nb");
    let mut tool = EditTool::new(ToolVersion::V20251124);
    edit(
        &mut tool,
        "insert",
        &path,
        json!({"insert_line": 1, "insert_text": "first", "new_str": "ignored"}),
    );
    assert_eq!(read(&path), "a\nfirst\nb");
    edit(
        &mut tool,
        "insert",
        &path,
        json!({"insert_line": 0, "new_str": "fallback"}),
    );
    assert_eq!(read(&path), "fallback\na\nfirst\nb");
}

#[test]
fn undo_edit_restores_the_content_before_str_replace_and_insert() {
    let dir = TempDir::new();
    for version in UNDO_VERSIONS {
        let path = dir.file("f.txt", "Original content");
        let mut tool = EditTool::new(version);
        edit(
            &mut tool,
            "str_replace",
            &path,
            json!({"old_str": "Original", "new_str": "New"}),
        );
        edit(
            &mut tool,
            "insert",
            &path,
            json!({"insert_line": 1, "new_str": "more"}),
        );
        assert_eq!(read(&path), "New content\nmore");
        let result = edit(&mut tool, "undo_edit", &path, json!({}));
        assert_eq!(read(&path), "New content");
        assert_eq!(
            output(&result),
            format!(
                "Last edit to {0} undone successfully. Here's the result of running `cat -n` on {0}:\n     1\tNew content\n",
                path.display()
            )
        );
        let result = edit(&mut tool, "undo_edit", &path, json!({}));
        assert!(output(&result).contains(&format!(
            "Last edit to {} undone successfully",
            path.display()
        )));
        assert_eq!(read(&path), "Original content");
        let result = edit(&mut tool, "undo_edit", &path, json!({}));
        assert_eq!(
            error(&result),
            format!("No edit history found for {}.", path.display())
        );
    }
}

#[test]
fn undo_edit_after_create_rewrites_the_created_text() {
    let dir = TempDir::new();
    let path = dir.0.join("created.txt");
    let mut tool = EditTool::new(ToolVersion::V20241022);
    edit(&mut tool, "create", &path, json!({"file_text": "made"}));
    std::fs::write(&path, "changed outside").unwrap();
    edit(&mut tool, "undo_edit", &path, json!({}));
    assert_eq!(read(&path), "made");
}

#[test]
fn failed_edits_leave_no_undo_history() {
    let dir = TempDir::new();
    let path = dir.file("f.txt", "Test test test");
    let mut tool = EditTool::new(ToolVersion::V20250124);
    edit(
        &mut tool,
        "str_replace",
        &path,
        json!({"old_str": "test", "new_str": "x"}),
    );
    let result = edit(&mut tool, "undo_edit", &path, json!({}));
    assert_eq!(
        error(&result),
        format!("No edit history found for {}.", path.display())
    );
}

#[test]
fn unknown_commands_list_the_commands_of_the_version() {
    let dir = TempDir::new();
    let path = dir.file("f.txt", "x");
    let cases = [
        (
            ToolVersion::V20241022,
            "frobnicate",
            "Unrecognized command frobnicate. The allowed commands for the str_replace_editor tool are: view, create, str_replace, insert, undo_edit",
        ),
        (
            ToolVersion::V20250124,
            "frobnicate",
            "Unrecognized command frobnicate. The allowed commands for the str_replace_editor tool are: view, create, str_replace, insert, undo_edit",
        ),
        (
            ToolVersion::V20250429,
            "undo_edit",
            "Unrecognized command undo_edit. The allowed commands for the str_replace_based_edit_tool tool are: view, create, str_replace, insert",
        ),
        (
            ToolVersion::V20251124,
            "undo_edit",
            "Unrecognized command undo_edit. The allowed commands for the str_replace_based_edit_tool tool are: view, create, str_replace, insert",
        ),
    ];
    for (version, command, message) in cases {
        let result = edit(&mut EditTool::new(version), command, &path, json!({}));
        assert_eq!(error(&result), message);
    }
    let missing = dir.0.join("missing");
    let result = edit(
        &mut EditTool::new(ToolVersion::V20250124),
        "frobnicate",
        &missing,
        json!({}),
    );
    assert!(error(&result).contains("does not exist"));
}

#[test]
fn path_validation_runs_in_the_reference_order() {
    let dir = TempDir::new();
    let file = dir.file("f.txt", "x");
    for version in ToolVersion::ALL {
        let mut tool = EditTool::new(version);
        let result = call(
            &mut tool,
            json!({"command": "view", "path": "relative/file.txt"}),
        );
        assert_eq!(
            error(&result),
            "The path relative/file.txt is not an absolute path, it should start with `/`. Maybe you meant /relative/file.txt?"
        );
        let result = edit(&mut tool, "create", &file, json!({"file_text": "y"}));
        assert!(error(&result).starts_with("File already exists at:"));
        let result = edit(&mut tool, "str_replace", &dir.0, json!({"old_str": "a"}));
        assert_eq!(
            error(&result),
            format!(
                "The path {} is a directory and only the `view` command can be used on directories",
                dir.0.display()
            )
        );
        assert_eq!(edit(&mut tool, "view", &dir.0, json!({})).error, None);
    }
}

#[test]
fn missing_or_wrongly_typed_command_and_path_are_error_results() {
    let mut tool = EditTool::new(ToolVersion::V20250124);
    assert_eq!(
        error(&call(&mut tool, json!({"path": "/tmp"}))),
        "Parameter `command` is required"
    );
    assert_eq!(
        error(&call(&mut tool, json!({"command": "view"}))),
        "Parameter `path` is required"
    );
    let result = call(&mut tool, json!({"command": "view", "path": ["/tmp"]}));
    assert_eq!(
        error(&result),
        "Invalid `path` parameter: [\"/tmp\"]. It should be a string"
    );
}

#[test]
fn crlf_files_are_read_with_universal_newlines() {
    let dir = TempDir::new();
    let path = dir.file("f.txt", "one\r\ntwo\r\n");
    let mut tool = EditTool::new(ToolVersion::V20250124);
    let result = edit(
        &mut tool,
        "str_replace",
        &path,
        json!({"old_str": "one\ntwo", "new_str": "1\n2"}),
    );
    assert_eq!(result.error, None);
    assert_eq!(read(&path), "1\n2\n");
}

#[test]
fn bash_shells_get_the_variables_set_with_with_env_including_after_restart() {
    let mut tool = BashTool::new(ToolVersion::V20250124, LONG).with_env("DISPLAY", ":42");
    assert_eq!(output(&call(&mut tool, bash("echo $DISPLAY"))), ":42");
    call(&mut tool, json!({"restart": true}));
    assert_eq!(output(&call(&mut tool, bash("echo $DISPLAY"))), ":42");
}

#[test]
fn editor_refuses_fifos_and_devices_instead_of_blocking_or_filling_memory() {
    let dir = TempDir::new();
    let fifo = dir.0.join("pipe");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let mut tool = EditTool::new(ToolVersion::V20251124);
    let started = Instant::now();
    let viewed = call(
        &mut tool,
        json!({"command": "view", "path": fifo.to_str().unwrap()}),
    );
    assert!(error(&viewed).contains("not a regular file"), "{viewed:?}");
    let zero = call(&mut tool, json!({"command": "view", "path": "/dev/zero"}));
    assert!(error(&zero).contains("not a regular file"), "{zero:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
}
