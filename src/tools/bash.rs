//! The bash tool (reference §5): a persistent shell per session.
//!
//! One `/bin/bash` per tool instance, started lazily in its own process group. Two reader
//! threads append the shell's stdout and stderr into capped buffers; a writer thread feeds its
//! stdin so a shell that stops reading can never block the session worker. A command is
//! written followed, on its own line, by echoes of a fresh random sentinel to stderr and then
//! stdout; the stdout reader spots the sentinel and wakes the waiting worker through a Condvar.
//! Cancellation kills the whole process group and the next call starts a fresh shell.

use std::io::{self, Read, Write};
use std::mem;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{MAX_RESPONSE_LEN, Tool, ToolResult, ToolVersion, maybe_truncate};
use crate::cancel::CancelToken;
use crate::config::SECRET_ENV;

/// Bytes kept from the start of a stream: far more than the [`MAX_RESPONSE_LEN`] characters
/// the model is shown, so dropping what follows is never visible.
const HEAD_KEEP: usize = 256 * 1024;
/// Bytes kept from the end of a flooding stream, where the sentinel will appear.
const TAIL_KEEP: usize = 64 * 1024;
const READ_CHUNK: usize = 8 * 1024;
/// How long stderr may lag behind stdout once the stdout sentinel arrived. The stderr
/// sentinel is written first, so this only matters when the command redirected stderr.
const STDERR_GRACE: Duration = Duration::from_millis(200);
/// How long to wait for the shell to exit once its stdout closed.
const EXIT_GRACE: Duration = Duration::from_secs(1);
/// How long shutdown waits for the killed shell and its pipe threads.
const REAP_GRACE: Duration = Duration::from_secs(1);
const JOIN_GRACE: Duration = Duration::from_millis(250);
const POLL: Duration = Duration::from_millis(5);

/// Shown when the user cancels the turn while a command runs.
const CANCELLED: &str = "command cancelled";

/// A persistent `/bin/bash` in its own process group.
pub struct BashTool {
    version: ToolVersion,
    timeout: Duration,
    /// Variables set for every shell on top of the server's environment.
    env: Vec<(String, String)>,
    shell: Option<Shell>,
}

impl BashTool {
    /// Sets a variable for every shell this tool starts (e.g. `DISPLAY` of the session's
    /// desktop, so GUI programs started from bash appear where the agent can see them).
    pub fn with_env(mut self, name: &str, value: &str) -> BashTool {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    pub fn new(version: ToolVersion, timeout: Duration) -> BashTool {
        BashTool {
            version,
            timeout,
            env: Vec::new(),
            shell: None,
        }
    }

    fn restart(&mut self) -> ToolResult {
        self.shell = None;
        match Shell::start(&self.env) {
            Ok(shell) => {
                self.shell = Some(shell);
                ToolResult {
                    system: Some("tool has been restarted.".into()),
                    ..ToolResult::default()
                }
            }
            Err(err) => start_failed(&err),
        }
    }

    fn run_command(&mut self, command: &str, cancel: &CancelToken) -> ToolResult {
        if self.shell.is_none() {
            match Shell::start(&self.env) {
                Ok(shell) => self.shell = Some(shell),
                Err(err) => return start_failed(&err),
            }
        }
        let shell = self.shell.as_mut().expect("started above");
        if let Some(rc) = shell.exit_code() {
            return exited(rc);
        }
        if shell.timed_out {
            return timed_out(self.timeout);
        }
        match shell.run(command, self.timeout, cancel) {
            Outcome::Done { output, error } => ToolResult {
                output: Some(maybe_truncate(&output, MAX_RESPONSE_LEN)),
                error: Some(maybe_truncate(&error, MAX_RESPONSE_LEN)),
                ..ToolResult::default()
            },
            Outcome::Exited(rc) => exited(rc),
            Outcome::TimedOut => {
                shell.timed_out = true;
                timed_out(self.timeout)
            }
            Outcome::Cancelled => {
                // The user stopped the turn, not the model: drop the killed shell so the next
                // call transparently gets a fresh one.
                self.shell = None;
                ToolResult::error(CANCELLED)
            }
        }
    }
}

impl Tool for BashTool {
    fn name(&self) -> &str {
        "bash"
    }

    fn to_params(&self) -> Value {
        json!({"type": self.version.bash_type(), "name": "bash"})
    }

    fn run(&mut self, input: &Value, cancel: &CancelToken) -> ToolResult {
        if input.get("restart").is_some_and(is_truthy) {
            return self.restart();
        }
        let command = match input.get("command") {
            None | Some(Value::Null) => return ToolResult::error("no command provided."),
            Some(Value::String(command)) => command,
            Some(other) => {
                return ToolResult::error(format!(
                    "Invalid `command` parameter: {other}. It should be a string"
                ));
            }
        };
        if cancel.is_cancelled() {
            return ToolResult::error(CANCELLED);
        }
        self.run_command(command, cancel)
    }

    fn shutdown(&mut self) {
        self.shell = None;
    }
}

impl Drop for BashTool {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn start_failed(err: &io::Error) -> ToolResult {
    ToolResult::error(format!("failed to start /bin/bash: {err}"))
}

fn exited(rc: i32) -> ToolResult {
    ToolResult {
        system: Some("tool must be restarted".into()),
        error: Some(format!("bash has exited with returncode {rc}")),
        ..ToolResult::default()
    }
}

fn timed_out(timeout: Duration) -> ToolResult {
    ToolResult::error(format!(
        "timed out: bash has not returned in {} seconds and must be restarted",
        python_float(timeout.as_secs_f64())
    ))
}

/// Formats seconds the way Python's `str(float)` does for ordinary values (`120.0`, `0.1`).
fn python_float(value: f64) -> String {
    if value.is_finite() && value.fract() == 0.0 {
        format!("{value:.1}")
    } else {
        format!("{value}")
    }
}

/// Python truthiness of a JSON value (the reference tests `if restart:`).
pub(super) fn is_truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Python's `returncode`: the exit code, or minus the signal that killed the process.
fn return_code(status: ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| -status.signal().unwrap_or(0))
}

/// How one command ended.
enum Outcome {
    Done { output: String, error: String },
    Exited(i32),
    TimedOut,
    Cancelled,
}

/// One running `/bin/bash` and the threads serving its pipes.
struct Shell {
    child: Child,
    group: ProcessGroup,
    pipes: Arc<Pipes>,
    input: Option<mpsc::Sender<Vec<u8>>>,
    threads: Vec<JoinHandle<()>>,
    /// A command outlived the timeout; the shell stays unusable until restarted (reference).
    timed_out: bool,
}

impl Shell {
    fn start(env: &[(String, String)]) -> io::Result<Shell> {
        let mut command = Command::new("/bin/bash");
        for secret in SECRET_ENV {
            command.env_remove(secret);
        }
        let mut child = command
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let stdin = child.stdin.take().expect("stdin is piped");
        let (input, commands) = mpsc::channel::<Vec<u8>>();
        let group = ProcessGroup::new(child.id());
        // From here on, dropping `shell` (e.g. a failed thread spawn) kills the group.
        let mut shell = Shell {
            child,
            group,
            pipes: Arc::new(Pipes::default()),
            input: Some(input),
            threads: Vec::new(),
            timed_out: false,
        };
        let pipes = shell.pipes.clone();
        shell.spawn("bash-stdout", move || pump(stdout, &pipes, Which::Stdout))?;
        let pipes = shell.pipes.clone();
        shell.spawn("bash-stderr", move || pump(stderr, &pipes, Which::Stderr))?;
        shell.spawn("bash-stdin", move || feed(stdin, commands))?;
        Ok(shell)
    }

    fn spawn(&mut self, name: &str, body: impl FnOnce() + Send + 'static) -> io::Result<()> {
        let handle = thread::Builder::new().name(name.into()).spawn(body)?;
        self.threads.push(handle);
        Ok(())
    }

    /// The shell's return code if it has exited. Reaping it also kills what is left of its
    /// group, and forgets the group id so a reused pid can never be signalled.
    fn exit_code(&mut self) -> Option<i32> {
        let status = self.child.try_wait().ok().flatten()?;
        self.group.kill_and_forget();
        Some(return_code(status))
    }

    fn run(&mut self, command: &str, timeout: Duration, cancel: &CancelToken) -> Outcome {
        let id = uuid::Uuid::new_v4().simple();
        self.pipes
            .arm(format!("__computer_use_done_{id}__").as_bytes());
        // On its own line, so `cmd &`, a trailing comment or a missing newline cannot swallow
        // it. Quoted in two pieces, so a command echoing its stdin (`cat`) cannot print the
        // sentinel. stderr's copy goes first: by the time stdout's arrives, stderr is complete.
        let echo = format!("echo '__computer_use_''done_{id}__'");
        let script = format!("{command}\n{echo} >&2; {echo}\n");
        let sent = self
            .input
            .as_ref()
            .is_some_and(|input| input.send(script.into_bytes()).is_ok());
        if !sent {
            return self.exited_or_timed_out(Instant::now() + EXIT_GRACE, cancel);
        }
        let group = self.group.clone();
        let pipes = self.pipes.clone();
        let _hook = cancel.on_cancel(move || {
            group.kill();
            pipes.cancel();
        });
        let deadline = Instant::now() + timeout;
        match self.pipes.wait_for_stdout(deadline, false) {
            Wait::Sentinel => self.collect(),
            Wait::Cancelled => Outcome::Cancelled,
            Wait::Deadline => Outcome::TimedOut,
            Wait::Eof => self.after_eof(deadline, cancel),
        }
    }

    /// stdout closed: the shell most likely exited; if it did not (it closed its own stdout),
    /// keep waiting for the deadline like the reference.
    fn after_eof(&mut self, deadline: Instant, cancel: &CancelToken) -> Outcome {
        match self.exited_or_timed_out(deadline.min(Instant::now() + EXIT_GRACE), cancel) {
            Outcome::TimedOut => match self.pipes.wait_for_stdout(deadline, true) {
                Wait::Sentinel => self.collect(),
                Wait::Cancelled => Outcome::Cancelled,
                Wait::Deadline | Wait::Eof => Outcome::TimedOut,
            },
            other => other,
        }
    }

    fn exited_or_timed_out(&mut self, until: Instant, cancel: &CancelToken) -> Outcome {
        loop {
            if let Some(rc) = self.exit_code() {
                return Outcome::Exited(rc);
            }
            if Instant::now() >= until {
                return Outcome::TimedOut;
            }
            if !cancel.sleep(POLL) {
                return Outcome::Cancelled;
            }
        }
    }

    fn collect(&mut self) -> Outcome {
        self.pipes.wait_for_stderr(Instant::now() + STDERR_GRACE);
        let mut state = self.pipes.lock();
        let output = decode(state.stdout.take());
        let error = decode(state.stderr.take());
        Outcome::Done { output, error }
    }

    fn stop(&mut self) {
        self.group.kill_and_forget();
        self.input = None;
        let deadline = Instant::now() + REAP_GRACE;
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            thread::sleep(POLL);
        }
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        join_within(mem::take(&mut self.threads), JOIN_GRACE);
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Joins the threads that finish within `grace`; the others (a pipe held open by a process
/// that escaped the group) are left detached, they end when that process exits.
fn join_within(threads: Vec<JoinHandle<()>>, grace: Duration) {
    let deadline = Instant::now() + grace;
    while threads.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
        thread::sleep(POLL);
    }
    for thread in threads {
        if thread.is_finished() {
            let _ = thread.join();
        } else {
            log::warn!("bash pipe thread still busy after shutdown; leaving it detached");
        }
    }
}

/// Lossy UTF-8 with one trailing newline removed (reference).
fn decode(bytes: Vec<u8>) -> String {
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if text.ends_with('\n') {
        text.pop();
    }
    text
}

/// The shell's process group; `None` once the shell is reaped.
#[derive(Clone)]
struct ProcessGroup(Arc<Mutex<Option<i32>>>);

impl ProcessGroup {
    fn new(pid: u32) -> ProcessGroup {
        ProcessGroup(Arc::new(Mutex::new(i32::try_from(pid).ok())))
    }

    fn kill(&self) {
        if let Some(pgid) = *lock(&self.0) {
            kill_group(pgid);
        }
    }

    fn kill_and_forget(&self) {
        if let Some(pgid) = lock(&self.0).take() {
            kill_group(pgid);
        }
    }
}

/// SIGKILLs every process in group `pgid`.
#[allow(unsafe_code)]
fn kill_group(pgid: i32) {
    // 0 would mean our own group and 1 is init: never signal those.
    if pgid <= 1 {
        return;
    }
    // SAFETY: killpg takes two plain integers and reads or writes no memory of ours; the only
    // effect is the signal. The group leader is not reaped while its id is stored (see
    // `ProcessGroup`), so the id cannot name another process group.
    unsafe {
        libc::killpg(pgid, libc::SIGKILL);
    }
}

/// Writes queued commands to the shell's stdin until the queue closes or the pipe breaks.
fn feed(mut stdin: impl Write, commands: mpsc::Receiver<Vec<u8>>) {
    for bytes in commands {
        if stdin
            .write_all(&bytes)
            .and_then(|()| stdin.flush())
            .is_err()
        {
            return;
        }
    }
}

/// Copies one pipe into its buffer until EOF.
fn pump(mut from: impl Read, pipes: &Pipes, which: Which) {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        pipes.lock().stream(which).push(&buf[..n]);
        pipes.changed.notify_all();
    }
    pipes.lock().stream(which).eof = true;
    pipes.changed.notify_all();
}

#[derive(Clone, Copy)]
enum Which {
    Stdout,
    Stderr,
}

/// Why waiting for stdout stopped.
enum Wait {
    Sentinel,
    Cancelled,
    Deadline,
    Eof,
}

/// The buffers both reader threads fill, and the Condvar that announces every change.
#[derive(Default)]
struct Pipes {
    state: Mutex<PipeState>,
    changed: Condvar,
}

#[derive(Default)]
struct PipeState {
    stdout: Stream,
    stderr: Stream,
    cancelled: bool,
}

impl PipeState {
    fn stream(&mut self, which: Which) -> &mut Stream {
        match which {
            Which::Stdout => &mut self.stdout,
            Which::Stderr => &mut self.stderr,
        }
    }
}

impl Pipes {
    fn lock(&self) -> MutexGuard<'_, PipeState> {
        lock(&self.state)
    }

    fn arm(&self, sentinel: &[u8]) {
        let mut state = self.lock();
        state.stdout.arm(sentinel);
        state.stderr.arm(sentinel);
        state.cancelled = false;
    }

    fn cancel(&self) {
        self.lock().cancelled = true;
        self.changed.notify_all();
    }

    /// Waits for the stdout sentinel; `ignore_eof` once a closed stdout was already seen.
    fn wait_for_stdout(&self, deadline: Instant, ignore_eof: bool) -> Wait {
        let mut state = self.lock();
        loop {
            if state.cancelled {
                return Wait::Cancelled;
            }
            if state.stdout.done.is_some() {
                return Wait::Sentinel;
            }
            if state.stdout.eof && !ignore_eof {
                return Wait::Eof;
            }
            let now = Instant::now();
            if now >= deadline {
                return Wait::Deadline;
            }
            state = wait(&self.changed, state, deadline - now);
        }
    }

    fn wait_for_stderr(&self, deadline: Instant) {
        let mut state = self.lock();
        loop {
            let now = Instant::now();
            if state.stderr.done.is_some() || state.stderr.eof || state.cancelled || now >= deadline
            {
                return;
            }
            state = wait(&self.changed, state, deadline - now);
        }
    }
}

/// One pipe's bytes since the last command, capped at [`HEAD_KEEP`] + [`TAIL_KEEP`].
#[derive(Default)]
struct Stream {
    data: Vec<u8>,
    /// Bytes dropped between head and tail since the last command.
    dropped: u64,
    /// The sentinel being waited for.
    sentinel: Option<Vec<u8>>,
    /// What preceded the sentinel, once seen.
    done: Option<Vec<u8>>,
    eof: bool,
}

impl Stream {
    fn arm(&mut self, sentinel: &[u8]) {
        self.sentinel = Some(sentinel.to_vec());
        self.done = None;
    }

    /// Appends a chunk, splitting off what preceded the sentinel if the chunk completed it.
    /// The search overlaps the previous data by the sentinel's length, so a sentinel split
    /// across reads is still found, and it runs before capping, so capping never cuts it.
    fn push(&mut self, chunk: &[u8]) {
        let old_len = self.data.len();
        self.data.extend_from_slice(chunk);
        if let Some(sentinel) = &self.sentinel {
            let from = old_len.saturating_sub(sentinel.len().saturating_sub(1));
            if let Some(at) = find(&self.data[from..], sentinel) {
                let mut rest = self.data.split_off(from + at);
                let after = rest.split_off(sentinel.len());
                self.done = Some(mem::replace(&mut self.data, after));
                self.sentinel = None;
            }
        }
        self.cap();
    }

    fn cap(&mut self) {
        if self.data.len() > HEAD_KEEP + TAIL_KEEP {
            let cut = self.data.len() - TAIL_KEEP;
            self.data.drain(HEAD_KEEP..cut);
            self.dropped += (cut - HEAD_KEEP) as u64;
        }
    }

    /// The command's bytes (before the sentinel, or all if it never came); clears the stream.
    fn take(&mut self) -> Vec<u8> {
        if self.dropped > 0 {
            log::debug!(
                "bash output capped: {} bytes not kept in memory",
                self.dropped
            );
        }
        self.dropped = 0;
        self.sentinel = None;
        let data = mem::take(&mut self.data);
        self.done.take().unwrap_or(data)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn wait<'a, T>(
    changed: &Condvar,
    guard: MutexGuard<'a, T>,
    timeout: Duration,
) -> MutexGuard<'a, T> {
    match changed.wait_timeout(guard, timeout) {
        Ok((guard, _)) => guard,
        Err(poisoned) => poisoned.into_inner().0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_print_like_python_floats() {
        assert_eq!(python_float(120.0), "120.0");
        assert_eq!(python_float(0.1), "0.1");
        assert_eq!(
            python_float(Duration::from_millis(500).as_secs_f64()),
            "0.5"
        );
    }

    #[test]
    fn restart_follows_python_truthiness() {
        for value in [json!(true), json!(1), json!("yes"), json!([0])] {
            assert!(is_truthy(&value), "{value}");
        }
        for value in [json!(false), json!(0), json!(""), json!(null), json!({})] {
            assert!(!is_truthy(&value), "{value}");
        }
    }

    #[test]
    fn sentinel_split_across_reads_is_found_and_rest_is_kept_apart() {
        let mut stream = Stream::default();
        stream.arm(b"<<END>>");
        stream.push(b"hello\n<<E");
        assert!(stream.done.is_none());
        stream.push(b"ND>>\nlater");
        assert_eq!(stream.done.as_deref(), Some(&b"hello\n"[..]));
        assert_eq!(stream.data, b"\nlater");
        assert_eq!(stream.take(), b"hello\n");
        assert!(stream.data.is_empty());
    }

    #[test]
    fn flooded_stream_stays_capped_and_still_sees_the_sentinel() {
        let mut stream = Stream::default();
        stream.arm(b"<<END>>");
        let chunk = vec![b'y'; READ_CHUNK];
        for _ in 0..2_000 {
            stream.push(&chunk);
            assert!(stream.data.len() <= HEAD_KEEP + TAIL_KEEP);
        }
        assert!(stream.dropped > 0);
        stream.push(b"tail<<END>>\n");
        let output = stream.done.as_ref().expect("sentinel found");
        assert!(output.ends_with(b"ytail"));
        assert!(output.len() <= HEAD_KEEP + TAIL_KEEP + 4);
    }

    #[test]
    fn one_trailing_newline_is_stripped() {
        assert_eq!(decode(b"a\n\n".to_vec()), "a\n");
        assert_eq!(decode(b"a".to_vec()), "a");
    }
}
