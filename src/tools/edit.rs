//! The text editor tool (reference §7): view, create, str_replace, insert and, for the
//! `str_replace_editor` generations, undo_edit, with the reference's exact messages.
//!
//! Files are read as UTF-8 with Python's universal newlines (`\r\n` and `\r` become `\n`),
//! like the reference's `Path.read_text()`, so an edited CRLF file is written back with `\n`.
//! Every failure, including a wrongly typed input, is an error result for the model.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::bash::is_truthy;
use super::{MAX_RESPONSE_LEN, Tool, ToolResult, ToolVersion, maybe_truncate};
use crate::cancel::CancelToken;

/// Lines of context shown around an edit (reference `SNIPPET_LINES`).
const SNIPPET_LINES: usize = 4;
/// How long a directory listing may take.
const FIND_TIMEOUT: Duration = Duration::from_secs(30);
/// The editor type that honours the `max_characters` tool parameter.
const MAX_CHARACTERS_TYPE: &str = "text_editor_20250728";

/// A failed call: the message the model sees.
type Outcome = Result<ToolResult, String>;

/// `str_replace_editor` / `str_replace_based_edit_tool`.
pub struct EditTool {
    version: ToolVersion,
    max_characters: Option<usize>,
    /// Pre-edit contents per path, for `undo_edit`; lives as long as the tool (the session).
    history: HashMap<PathBuf, Vec<String>>,
}

impl EditTool {
    pub fn new(version: ToolVersion) -> EditTool {
        EditTool {
            version,
            max_characters: None,
            history: HashMap::new(),
        }
    }

    /// Sets the `max_characters` tool parameter: `text_editor_20250728` sends it with the tool
    /// definition and clips viewed file content to it. Other versions ignore it.
    pub fn with_max_characters(mut self, limit: usize) -> EditTool {
        self.max_characters = Some(limit);
        self
    }

    fn view_limit(&self) -> Option<usize> {
        self.max_characters
            .filter(|_| self.version.edit_type() == MAX_CHARACTERS_TYPE)
    }

    fn commands(&self) -> &'static str {
        if self.version.edit_has_undo() {
            "view, create, str_replace, insert, undo_edit"
        } else {
            "view, create, str_replace, insert"
        }
    }

    fn dispatch(&mut self, input: &Input, cancel: &CancelToken) -> Outcome {
        let command = input
            .string("command")?
            .ok_or("Parameter `command` is required")?;
        let raw = input
            .string("path")?
            .ok_or("Parameter `path` is required")?;
        let path = normalize(raw);
        validate_path(command, &path)?;
        match command {
            "view" => self.view(&path, input.get("view_range"), cancel),
            "create" => self.create(&path, input),
            "str_replace" => self.str_replace(&path, input),
            "insert" => self.insert(&path, input),
            "undo_edit" if self.version.edit_has_undo() => self.undo_edit(&path),
            _ => Err(format!(
                "Unrecognized command {command}. The allowed commands for the {} tool are: {}",
                self.version.edit_name(),
                self.commands()
            )),
        }
    }

    fn view(&self, path: &Path, view_range: Option<&Value>, cancel: &CancelToken) -> Outcome {
        let view_range = view_range.filter(|range| is_truthy(range));
        if path.is_dir() {
            if view_range.is_some() {
                return Err(
                    "The `view_range` parameter is not allowed when `path` points to a directory."
                        .into(),
                );
            }
            return list_directory(path, cancel);
        }
        let content = read_file(path)?;
        let (content, init_line) = match view_range {
            Some(range) => slice_lines(&content, parse_view_range(range)?)?,
            None => (content, 1),
        };
        let content = match self.view_limit() {
            Some(limit) => maybe_truncate(&content, limit),
            None => content,
        };
        let descriptor = path.display().to_string();
        Ok(ToolResult::output(make_output(
            &content,
            &descriptor,
            init_line,
        )))
    }

    fn create(&mut self, path: &Path, input: &Input) -> Outcome {
        let text = input
            .string("file_text")?
            .ok_or("Parameter `file_text` is required for command: create")?;
        write_file(path, text)?;
        self.remember(path, text.to_string());
        Ok(ToolResult::output(format!(
            "File created successfully at: {}",
            path.display()
        )))
    }

    fn str_replace(&mut self, path: &Path, input: &Input) -> Outcome {
        let old_str = input
            .string("old_str")?
            .ok_or("Parameter `old_str` is required for command: str_replace")?;
        let new_str = expand_tabs(input.string("new_str")?.unwrap_or(""));
        let old_str = expand_tabs(old_str);
        let content = expand_tabs(&read_file(path)?);
        let replaced = replace_unique(&content, &old_str, &new_str, path)?;
        write_file(path, &replaced.text)?;
        self.remember(path, content);
        let snippet = replaced.snippet(&new_str);
        Ok(ToolResult::output(format!(
            "The file {} has been edited. {}Review the changes and make sure they are as expected. Edit the file again if necessary.",
            path.display(),
            make_output(
                &snippet.text,
                &format!("a snippet of {}", path.display()),
                snippet.first_line
            )
        )))
    }

    fn insert(&mut self, path: &Path, input: &Input) -> Outcome {
        let insert_line = input
            .integer("insert_line")?
            .ok_or("Parameter `insert_line` is required for command: insert")?;
        let text = if self.version.edit_uses_insert_text() {
            let text = input.string("insert_text")?;
            match text {
                Some(text) => Some(text),
                None => input.string("new_str")?,
            }
            .ok_or("Parameter `insert_text` is required for command: insert")?
        } else {
            input
                .string("new_str")?
                .ok_or("Parameter `new_str` is required for command: insert")?
        };
        let content = expand_tabs(&read_file(path)?);
        let inserted = insert_lines(&content, insert_line, &expand_tabs(text))?;
        write_file(path, &inserted.text)?;
        self.remember(path, content);
        Ok(ToolResult::output(format!(
            "The file {} has been edited. {}Review the changes and make sure they are as expected (correct indentation, no duplicate lines, etc). Edit the file again if necessary.",
            path.display(),
            make_output(
                &inserted.snippet.text,
                "a snippet of the edited file",
                inserted.snippet.first_line
            )
        )))
    }

    fn undo_edit(&mut self, path: &Path) -> Outcome {
        let old_text = self
            .history
            .get_mut(path)
            .and_then(Vec::pop)
            .ok_or_else(|| format!("No edit history found for {}.", path.display()))?;
        write_file(path, &old_text)?;
        let descriptor = path.display().to_string();
        Ok(ToolResult::output(format!(
            "Last edit to {descriptor} undone successfully. {}",
            make_output(&old_text, &descriptor, 1)
        )))
    }

    /// Keeps `content` for `undo_edit`; versions without undo keep nothing.
    fn remember(&mut self, path: &Path, content: String) {
        if self.version.edit_has_undo() {
            self.history
                .entry(path.to_path_buf())
                .or_default()
                .push(content);
        }
    }
}

impl Tool for EditTool {
    fn name(&self) -> &str {
        self.version.edit_name()
    }

    fn to_params(&self) -> Value {
        let mut params =
            json!({"name": self.version.edit_name(), "type": self.version.edit_type()});
        if let Some(limit) = self.view_limit() {
            params["max_characters"] = json!(limit);
        }
        params
    }

    fn run(&mut self, input: &Value, cancel: &CancelToken) -> ToolResult {
        self.dispatch(&Input(input), cancel)
            .unwrap_or_else(ToolResult::error)
    }
}

/// The model's input object, with typed access that reports wrong types as messages.
struct Input<'a>(&'a Value);

impl Input<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|value| !value.is_null())
    }

    fn string(&self, key: &str) -> Result<Option<&str>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(other) => Err(format!(
                "Invalid `{key}` parameter: {other}. It should be a string"
            )),
        }
    }

    fn integer(&self, key: &str) -> Result<Option<i64>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(value) => value.as_i64().map(Some).ok_or_else(|| {
                format!("Invalid `{key}` parameter: {value}. It should be an integer")
            }),
        }
    }
}

/// Python's `Path(path)`: repeated slashes, `.` parts and a trailing slash removed.
fn normalize(raw: &str) -> PathBuf {
    let path: PathBuf = Path::new(raw).components().collect();
    if path.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        path
    }
}

/// Reference §7.1, in its order.
fn validate_path(command: &str, path: &Path) -> Result<(), String> {
    let shown = path.display();
    if !path.is_absolute() {
        let suggestion = normalize(&format!("/{}", path.display()));
        return Err(format!(
            "The path {shown} is not an absolute path, it should start with `/`. Maybe you meant {}?",
            suggestion.display()
        ));
    }
    let exists = path.exists();
    if !exists && command != "create" {
        return Err(format!(
            "The path {shown} does not exist. Please provide a valid path."
        ));
    }
    if exists && command == "create" {
        return Err(format!(
            "File already exists at: {shown}. Cannot overwrite files using command `create`."
        ));
    }
    if path.is_dir() && command != "view" {
        return Err(format!(
            "The path {shown} is a directory and only the `view` command can be used on directories"
        ));
    }
    Ok(())
}

/// Largest file the editor reads: it shows at most 16 000 characters and writes whole files
/// back, so anything bigger is a log or a blob better searched with grep from bash.
const MAX_FILE_BYTES: u64 = 16 << 20;

fn read_file(path: &Path) -> Result<String, String> {
    let failed = |why: String| format!("Ran into {why} while trying to read {}", path.display());
    // Checked before opening: opening a FIFO blocks until a writer appears, and a device such
    // as /dev/zero never ends; neither could be cancelled.
    let meta = fs::metadata(path).map_err(|err| failed(err.to_string()))?;
    if !meta.is_file() {
        return Err(failed(
            "a path that is not a regular file (a device, FIFO or socket)".into(),
        ));
    }
    if meta.len() > MAX_FILE_BYTES {
        let why = format!(
            "a file of {} bytes, over the editor's {MAX_FILE_BYTES}-byte limit (use grep or sed from bash)",
            meta.len()
        );
        return Err(failed(why));
    }
    let text = fs::read_to_string(path).map_err(|err| failed(err.to_string()))?;
    Ok(universal_newlines(text))
}

fn universal_newlines(text: String) -> String {
    if text.contains('\r') {
        text.replace("\r\n", "\n").replace('\r', "\n")
    } else {
        text
    }
}

fn write_file(path: &Path, content: &str) -> Result<(), String> {
    fs::write(path, content)
        .map_err(|err| format!("Ran into {err} while trying to write to {}", path.display()))
}

/// Python's `str.expandtabs()`: stops every 8 columns, the column restarting at `\n`/`\r`.
fn expand_tabs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut column = 0;
    for c in text.chars() {
        match c {
            '\t' => {
                let spaces = 8 - column % 8;
                out.extend(std::iter::repeat_n(' ', spaces));
                column += spaces;
            }
            '\n' | '\r' => {
                out.push(c);
                column = 0;
            }
            _ => {
                out.push(c);
                column += 1;
            }
        }
    }
    out
}

/// The reference `_make_output`: clip, expand tabs, number lines like `cat -n`.
fn make_output(content: &str, descriptor: &str, init_line: i64) -> String {
    let content = expand_tabs(&maybe_truncate(content, MAX_RESPONSE_LEN));
    let numbered: Vec<String> = content
        .split('\n')
        .enumerate()
        .map(|(i, line)| format!("{:>6}\t{line}", init_line + i as i64))
        .collect();
    format!(
        "Here's the result of running `cat -n` on {descriptor}:\n{}\n",
        numbered.join("\n")
    )
}

fn parse_view_range(range: &Value) -> Result<(i64, i64), String> {
    let invalid = || "Invalid `view_range`. It should be a list of two integers.".to_string();
    match range.as_array().map(Vec::as_slice) {
        Some([start, end]) => Ok((
            start.as_i64().ok_or_else(invalid)?,
            end.as_i64().ok_or_else(invalid)?,
        )),
        _ => Err(invalid()),
    }
}

/// The lines `start..=end` (1-based; `end == -1` means to the end) and the first number.
fn slice_lines(content: &str, (start, end): (i64, i64)) -> Result<(String, i64), String> {
    let lines: Vec<&str> = content.split('\n').collect();
    let n = lines.len() as i64;
    let prefix = format!("Invalid `view_range`: [{start}, {end}].");
    if start < 1 || start > n {
        return Err(format!(
            "{prefix} Its first element `{start}` should be within the range of lines of the file: [1, {n}]"
        ));
    }
    if end > n {
        return Err(format!(
            "{prefix} Its second element `{end}` should be smaller than the number of lines in the file: `{n}`"
        ));
    }
    if end != -1 && end < start {
        return Err(format!(
            "{prefix} Its second element `{end}` should be larger or equal than its first `{start}`"
        ));
    }
    let to = if end == -1 { lines.len() } else { end as usize };
    Ok((lines[start as usize - 1..to].join("\n"), start))
}

/// Lines of the edited file to show, numbered from `first_line`.
struct Snippet {
    text: String,
    first_line: i64,
}

/// A file after a unique replacement.
struct Replaced {
    text: String,
    /// Newlines before the replaced occurrence.
    line: usize,
}

impl Replaced {
    fn snippet(&self, new_str: &str) -> Snippet {
        let start = self.line.saturating_sub(SNIPPET_LINES);
        let end = self.line + SNIPPET_LINES + new_str.matches('\n').count();
        let lines: Vec<&str> = self.text.split('\n').collect();
        let end = end.min(lines.len().saturating_sub(1));
        Snippet {
            text: lines[start..=end].join("\n"),
            first_line: start as i64 + 1,
        }
    }
}

/// Replaces the only occurrence of `old` (reference §7.5, quirks included: an empty `old`
/// occurs len+1 times, and a multi-line one is reported on no line).
fn replace_unique(content: &str, old: &str, new: &str, path: &Path) -> Result<Replaced, String> {
    match content.matches(old).count() {
        0 => Err(format!(
            "No replacement was performed, old_str `{old}` did not appear verbatim in {}.",
            path.display()
        )),
        1 => {
            let at = content.find(old).expect("counted once");
            Ok(Replaced {
                text: content.replacen(old, new, 1),
                line: content[..at].matches('\n').count(),
            })
        }
        _ => {
            let lines: Vec<String> = content
                .split('\n')
                .enumerate()
                .filter(|(_, line)| line.contains(old))
                .map(|(i, _)| (i + 1).to_string())
                .collect();
            Err(format!(
                "No replacement was performed. Multiple occurrences of old_str `{old}` in lines [{}]. Please ensure it is unique",
                lines.join(", ")
            ))
        }
    }
}

/// A file after an insert, and the snippet around it.
struct Inserted {
    text: String,
    snippet: Snippet,
}

/// Inserts `text` after line `at` (0 = top); reference §7.6.
fn insert_lines(content: &str, at: i64, text: &str) -> Result<Inserted, String> {
    let lines: Vec<&str> = content.split('\n').collect();
    let n = lines.len();
    if at < 0 || at > n as i64 {
        return Err(format!(
            "Invalid `insert_line` parameter: {at}. It should be within the range of lines of the file: [0, {n}]"
        ));
    }
    let at = at as usize;
    let new_lines: Vec<&str> = text.split('\n').collect();
    let joined = |parts: [&[&str]; 3]| parts.concat().join("\n");
    let before = &lines[at.saturating_sub(SNIPPET_LINES)..at];
    let after = &lines[at..(at + SNIPPET_LINES).min(n)];
    Ok(Inserted {
        text: joined([&lines[..at], &new_lines, &lines[at..]]),
        snippet: Snippet {
            text: joined([before, &new_lines, after]),
            first_line: (at as i64 - SNIPPET_LINES as i64 + 1).max(1),
        },
    })
}

/// `find <path> -maxdepth 2 -not -path '*/\.*'`, argv-style, bounded by [`FIND_TIMEOUT`].
fn list_directory(path: &Path, cancel: &CancelToken) -> Outcome {
    let (stdout, stderr) = run_find(path, cancel)?;
    let stdout = maybe_truncate(&stdout, MAX_RESPONSE_LEN);
    let stderr = maybe_truncate(&stderr, MAX_RESPONSE_LEN);
    if !stderr.is_empty() {
        return Ok(ToolResult {
            output: Some(stdout),
            error: Some(stderr),
            ..ToolResult::default()
        });
    }
    Ok(ToolResult::output(format!(
        "Here's the files and directories up to 2 levels deep in {}, excluding hidden items:\n{stdout}\n",
        path.display()
    )))
}

enum FindEvent {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Cancelled,
}

fn run_find(path: &Path, cancel: &CancelToken) -> Result<(String, String), String> {
    let shown = format!("find {} -maxdepth 2 -not -path '*/\\.*'", path.display());
    let mut child = Command::new("find")
        .arg(path)
        .args(["-maxdepth", "2", "-not", "-path", r"*/\.*"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| format!("Ran into {err} while trying to run `{shown}`"))?;
    let (events, received) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let result = thread::scope(|scope| {
        let to_stdout = events.clone();
        scope.spawn(move || to_stdout.send(FindEvent::Stdout(read_all(stdout))));
        let to_stderr = events.clone();
        scope.spawn(move || to_stderr.send(FindEvent::Stderr(read_all(stderr))));
        let _hook = cancel.on_cancel(move || {
            let _ = events.send(FindEvent::Cancelled);
        });
        let outcome = collect_find(&received, &shown);
        if outcome.is_err() {
            // Ends the readers too: the pipes close with the process.
            let _ = child.kill();
        }
        outcome
    });
    let _ = child.wait();
    result
}

fn collect_find(
    received: &mpsc::Receiver<FindEvent>,
    shown: &str,
) -> Result<(String, String), String> {
    let deadline = Instant::now() + FIND_TIMEOUT;
    let (mut stdout, mut stderr) = (None, None);
    while stdout.is_none() || stderr.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        match received.recv_timeout(left) {
            Ok(FindEvent::Stdout(bytes)) => stdout = Some(bytes),
            Ok(FindEvent::Stderr(bytes)) => stderr = Some(bytes),
            Ok(FindEvent::Cancelled) => return Err("command cancelled".into()),
            Err(_) => {
                return Err(format!(
                    "Command '{shown}' timed out after {} seconds",
                    FIND_TIMEOUT.as_secs()
                ));
            }
        }
    }
    let text =
        |bytes: Option<Vec<u8>>| String::from_utf8_lossy(&bytes.unwrap_or_default()).into_owned();
    Ok((text(stdout), text(stderr)))
}

fn read_all(mut from: impl Read) -> Vec<u8> {
    let mut bytes = Vec::new();
    let _ = from.read_to_end(&mut bytes);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tabs_expand_to_eight_column_stops_resetting_at_line_breaks() {
        assert_eq!(expand_tabs("a\tb"), "a       b");
        assert_eq!(expand_tabs("\t"), " ".repeat(8));
        assert_eq!(
            expand_tabs("abcdefgh\tx"),
            format!("abcdefgh{}x", " ".repeat(8))
        );
        assert_eq!(
            expand_tabs("abc\n\tx\r\ty"),
            format!("abc\n{0}x\r{0}y", " ".repeat(8))
        );
        assert_eq!(expand_tabs("é\t"), format!("é{}", " ".repeat(7)));
    }

    #[test]
    fn output_is_numbered_like_cat_n() {
        assert_eq!(
            make_output("Line 2\nLine 3", "/f", 2),
            "Here's the result of running `cat -n` on /f:\n     2\tLine 2\n     3\tLine 3\n"
        );
        assert_eq!(
            make_output("", "/f", 1),
            "Here's the result of running `cat -n` on /f:\n     1\t\n"
        );
    }

    #[test]
    fn paths_normalise_like_python_pathlib() {
        assert_eq!(normalize("/tmp/dir/"), PathBuf::from("/tmp/dir"));
        assert_eq!(normalize("/tmp//./x"), PathBuf::from("/tmp/x"));
        assert_eq!(normalize(""), PathBuf::from("."));
    }

    #[test]
    fn view_range_slices_inclusively_and_minus_one_reads_to_the_end() {
        let content = "a\nb\nc\nd";
        assert_eq!(slice_lines(content, (2, 3)).unwrap(), ("b\nc".into(), 2));
        assert_eq!(slice_lines(content, (3, -1)).unwrap(), ("c\nd".into(), 3));
        assert_eq!(slice_lines(content, (4, 4)).unwrap(), ("d".into(), 4));
        assert!(slice_lines(content, (0, 2)).is_err());
        assert!(
            slice_lines(content, (2, -5))
                .unwrap_err()
                .contains("larger or equal")
        );
    }

    #[test]
    fn replacement_counts_and_reports_lines_like_the_reference() {
        let path = Path::new("/f");
        let err = replace_unique("x a\nb\na a", "a", "z", path).err().unwrap();
        assert!(
            err.ends_with("in lines [1, 3]. Please ensure it is unique"),
            "{err}"
        );
        let err = replace_unique("a\nb\na\nb", "a\nb", "z", path)
            .err()
            .unwrap();
        assert!(err.contains("in lines []."), "{err}");
        let err = replace_unique("ab", "", "z", path).err().unwrap();
        assert!(err.contains("in lines [1]."), "{err}");
        let done = replace_unique("", "", "new", path).unwrap();
        assert_eq!((done.text.as_str(), done.line), ("new", 0));
    }

    #[test]
    fn replacement_snippet_spans_four_lines_around_the_edit() {
        let content: Vec<String> = (1..=20).map(|i| format!("l{i}")).collect();
        let done = replace_unique(&content.join("\n"), "l10", "X\nY", Path::new("/f")).unwrap();
        let snippet = done.snippet("X\nY");
        assert_eq!(snippet.first_line, 6);
        assert_eq!(snippet.text, "l6\nl7\nl8\nl9\nX\nY\nl11\nl12\nl13\nl14");
    }

    #[test]
    fn insert_snippet_starts_at_most_four_lines_before() {
        let content: Vec<String> = (1..=10).map(|i| format!("l{i}")).collect();
        let done = insert_lines(&content.join("\n"), 6, "new").unwrap();
        assert_eq!(done.snippet.first_line, 3);
        assert_eq!(done.snippet.text, "l3\nl4\nl5\nl6\nnew\nl7\nl8\nl9\nl10");
        let top = insert_lines("a", 0, "new").unwrap();
        assert_eq!((top.text.as_str(), top.snippet.first_line), ("new\na", 1));
    }

    #[test]
    fn wrong_input_types_are_messages() {
        let input = json!({"insert_line": "2", "file_text": 3, "view_range": [1, "x"]});
        let input = Input(&input);
        assert_eq!(
            input.integer("insert_line").unwrap_err(),
            "Invalid `insert_line` parameter: \"2\". It should be an integer"
        );
        assert!(input.string("file_text").is_err());
        assert!(parse_view_range(&json!([1, "x"])).is_err());
        assert!(parse_view_range(&json!([1, 2, 3])).is_err());
        assert!(parse_view_range(&json!("12")).is_err());
    }
}
