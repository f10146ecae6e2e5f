//! One supervised child process of a desktop (Xvfb, the window manager, x11vnc).
//!
//! Each child runs in its own process group so that stopping it also stops anything it
//! spawned. Its stdout lines are offered on a channel (readiness: Xvfb's `-displayfd` number,
//! x11vnc's `PORT=`), its stderr is drained into a short tail kept for error messages; both
//! pipes are read by threads this handle owns and joins, so a child never blocks on a full pipe.
//! Stopping is SIGTERM to the group, then SIGKILL after [`STOP_GRACE`], then reaping; `Drop`
//! stops too, so no child outlives its handle.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

/// How long a child gets to exit after SIGTERM before SIGKILL.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(1);
/// How long to wait for the pipe readers to finish once the group is dead.
const READER_GRACE: Duration = Duration::from_secs(1);
/// Stderr lines kept for error messages.
const TAIL_LINES: usize = 12;
/// Stdout lines buffered for [`Process::wait_line`]; later lines are dropped, not blocked on.
const LINE_QUEUE: usize = 64;

/// What waiting for a line of a child's output can end with.
#[derive(Debug)]
pub(crate) enum LineError {
    /// The child closed its stdout (it exited) before printing a matching line.
    Exited,
    /// No matching line within the timeout.
    TimedOut,
}

/// A running child in its own process group, with its output drained.
pub(crate) struct Process {
    program: &'static str,
    child: Option<Child>,
    lines: Receiver<String>,
    tail: Arc<Mutex<VecDeque<String>>>,
    readers: Vec<JoinHandle<()>>,
}

impl Process {
    /// Starts `program` with `args` (and `DISPLAY` if given) in a new process group.
    pub(crate) fn spawn(
        program: &'static str,
        args: &[String],
        display: Option<u32>,
    ) -> io::Result<Process> {
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some(num) = display {
            command.env("DISPLAY", format!(":{num}"));
        }
        let mut child = command.spawn()?;
        let (tx, lines) = crossbeam_channel::bounded(LINE_QUEUE);
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let readers = vec![
            read_lines(program, child.stdout.take(), move |line| {
                let _ = tx.try_send(line);
            }),
            read_lines(program, child.stderr.take(), keep_in(tail.clone())),
        ];
        Ok(Process {
            program,
            child: Some(child),
            lines,
            tail,
            readers,
        })
    }

    pub(crate) fn program(&self) -> &'static str {
        self.program
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Waits for the first stdout line that `parse` accepts.
    pub(crate) fn wait_line<T>(
        &self,
        timeout: Duration,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<T, LineError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(value) = parse(line.trim()) {
                        return Ok(value);
                    }
                }
                Err(RecvTimeoutError::Timeout) => return Err(LineError::TimedOut),
                Err(RecvTimeoutError::Disconnected) => return Err(LineError::Exited),
            }
        }
    }

    /// The last lines the child wrote to stderr, joined (complete once it is stopped).
    pub(crate) fn stderr_tail(&self) -> String {
        let tail = self.tail.lock().unwrap_or_else(|e| e.into_inner());
        tail.iter().cloned().collect::<Vec<_>>().join(" | ")
    }

    /// Whether the child is still running (not exited, not stopped). Reads `/proc` rather than
    /// reaping, so the pid stays ours until [`Process::stop`]; without `/proc`, assumes so.
    pub(crate) fn is_running(&self) -> bool {
        self.child.is_some() && has_exited(self.pid()) != Some(true)
    }

    /// Stops the child and its group; returns false if SIGKILL was needed. Idempotent.
    pub(crate) fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let pid = child.id();
        signal_group(pid, libc::SIGTERM);
        let exited = wait_exited(pid, &mut child, STOP_GRACE);
        if exited != Exit::Reaped {
            // The leader is not reaped (at most a zombie holding the pid), so the group id
            // cannot have been reused: this reaches only our group's stragglers.
            signal_group(pid, libc::SIGKILL);
        }
        if let Err(err) = child.wait() {
            log::warn!("{} (pid {pid}): could not reap: {err}", self.program);
        }
        self.join_readers();
        exited != Exit::Running
    }

    fn join_readers(&mut self) {
        let deadline = Instant::now() + READER_GRACE;
        for reader in self.readers.drain(..) {
            while !reader.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            if reader.is_finished() {
                let _ = reader.join();
            } else {
                // Only a process that left our group can hold the pipe open this long.
                log::warn!("{}: an output pipe is still open after stop", self.program);
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A thread that reads `pipe` line by line into `sink` until it closes.
fn read_lines(
    program: &'static str,
    pipe: Option<impl Read + Send + 'static>,
    mut sink: impl FnMut(String) + Send + 'static,
) -> JoinHandle<()> {
    thread::Builder::new()
        .name(format!("{program}-output"))
        .spawn(move || {
            let Some(pipe) = pipe else { return };
            for line in BufReader::new(pipe).split(b'\n') {
                let Ok(line) = line else { break };
                let line = String::from_utf8_lossy(&line).trim_end().to_string();
                log::debug!("{program}: {line}");
                sink(line);
            }
        })
        .expect("spawning a pipe reader thread")
}

/// A sink keeping the last [`TAIL_LINES`] non-empty lines.
fn keep_in(tail: Arc<Mutex<VecDeque<String>>>) -> impl FnMut(String) + Send + 'static {
    move |line: String| {
        if line.trim().is_empty() {
            return;
        }
        let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}

/// Where a child is after SIGTERM.
#[derive(Debug, PartialEq, Eq)]
enum Exit {
    /// Still running after the grace period.
    Running,
    /// Exited, not reaped: a zombie holds its pid.
    Zombie,
    /// Exited and reaped (only without `/proc`).
    Reaped,
}

/// Waits up to `timeout` for the child to exit; reaps it only where `/proc` is missing.
fn wait_exited(pid: u32, child: &mut Child, timeout: Duration) -> Exit {
    let deadline = Instant::now() + timeout;
    loop {
        match has_exited(pid) {
            Some(true) => return Exit::Zombie,
            Some(false) => {}
            None if matches!(child.try_wait(), Ok(Some(_))) => return Exit::Reaped,
            None => {}
        }
        if Instant::now() >= deadline {
            return Exit::Running;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Whether our (unreaped) child `pid` has exited, from `/proc/<pid>/stat`; `None` without /proc.
fn has_exited(pid: u32) -> Option<bool> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ...": comm may contain ')', the state follows the last one.
    let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
    Some(matches!(state, 'Z' | 'X'))
}

/// Sends `signal` to the process group led by our child `pid`.
#[allow(unsafe_code)]
fn signal_group(pid: u32, signal: libc::c_int) {
    let Ok(pgid) = libc::pid_t::try_from(pid) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours. The target is the
    // process group our child leads (spawned with process_group(0)), and the child is not yet
    // reaped, so its pid, and with it the group id, cannot belong to anyone else.
    let _ = unsafe { libc::kill(-pgid, signal) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_printed_by_the_child_is_seen_and_stop_reaps_it() {
        let args = ["-c".to_string(), "echo ready; exec sleep 30".to_string()];
        let mut process = Process::spawn("sh", &args, None).unwrap();
        let seen = process.wait_line(Duration::from_secs(5), |l| (l == "ready").then_some(()));
        assert!(seen.is_ok());
        let pid = process.pid();
        assert!(process.stop(), "sleep should end on SIGTERM");
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }

    #[test]
    fn a_child_ignoring_sigterm_is_killed_after_the_grace_period() {
        let args = [
            "-c".to_string(),
            "trap '' TERM; echo ready; while :; do sleep 0.05; done".to_string(),
        ];
        let mut process = Process::spawn("sh", &args, None).unwrap();
        process
            .wait_line(Duration::from_secs(5), |l| (l == "ready").then_some(()))
            .unwrap();
        let started = Instant::now();
        assert!(!process.stop());
        assert!(started.elapsed() < STOP_GRACE + Duration::from_secs(1));
        assert!(!process.is_running());
    }

    #[test]
    fn the_stderr_tail_and_an_early_exit_are_reported() {
        let args = ["-c".to_string(), "echo oops >&2; exit 3".to_string()];
        let mut process = Process::spawn("sh", &args, None).unwrap();
        let waited = process.wait_line(Duration::from_secs(5), |_| Some(()));
        assert!(matches!(waited, Err(LineError::Exited)));
        process.stop();
        assert_eq!(process.stderr_tail(), "oops");
    }
}
