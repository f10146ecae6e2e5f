//! Runs `xdotool` on one display: argv only (no shell), `DISPLAY=:N` in its environment, a
//! timeout, and prompt cancellation. [REC] A non-zero exit status is an error; a timeout is an
//! error result rather than the reference's loop-aborting exception.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::cancel::CancelToken;

/// The reference's per-command timeout (§4.1).
pub(super) const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// Shown when the user cancels the turn while an action runs.
pub(super) const CANCELLED: &str = "action cancelled";
/// How long to wait for the pipes to close once the process is gone.
const PIPE_GRACE: Duration = Duration::from_secs(1);
const MAX_POLL: Duration = Duration::from_millis(10);

/// What a finished xdotool printed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Output {
    pub stdout: String,
    pub stderr: String,
}

/// xdotool bound to one display.
#[derive(Clone, Debug)]
pub(super) struct Xdotool {
    /// `xdotool`, or a stand-in in unit tests (which have no X server).
    program: &'static str,
    display: String,
    timeout: Duration,
}

impl Xdotool {
    pub fn new(display: String, timeout: Duration) -> Xdotool {
        Xdotool {
            program: "xdotool",
            display,
            timeout,
        }
    }

    /// Runs `xdotool <args>`; `Err` is the message for the model (non-zero exit, timeout,
    /// cancellation, or xdotool missing).
    pub fn run(&self, args: &[String], cancel: &CancelToken) -> Result<Output, String> {
        if cancel.is_cancelled() {
            return Err(CANCELLED.into());
        }
        let mut child = Command::new(self.program)
            .args(args)
            .env("DISPLAY", &self.display)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| format!("failed to run {}: {err}", self.program))?;
        let stdout = read_in_background(child.stdout.take());
        let stderr = read_in_background(child.stderr.take());
        let ended = self.wait(&mut child, cancel);
        let output = Output {
            stdout: collect(&stdout),
            stderr: collect(&stderr),
        };
        match ended {
            Ended::Exited(status) if status.success() => Ok(output),
            Ended::Exited(status) => Err(failed(self.program, status, &output.stderr)),
            Ended::TimedOut => Err(format!(
                "Command '{}' timed out after {:.1} seconds",
                self.describe(args),
                self.timeout.as_secs_f64()
            )),
            Ended::Cancelled => Err(CANCELLED.into()),
            Ended::Lost(err) => Err(format!("failed to wait for {}: {err}", self.program)),
        }
    }

    /// Polls the child until it exits, the timeout passes or the turn is cancelled; kills it
    /// in the last two cases. `cancel.sleep` wakes at once on cancel, so the kill is prompt.
    fn wait(&self, child: &mut Child, cancel: &CancelToken) -> Ended {
        let deadline = Instant::now() + self.timeout;
        let mut poll = Duration::from_millis(1);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Ended::Exited(status),
                Ok(None) => {}
                Err(err) => return Ended::Lost(err.to_string()),
            }
            let now = Instant::now();
            let ended = if now >= deadline {
                Ended::TimedOut
            } else if !cancel.sleep(poll.min(deadline - now)) {
                Ended::Cancelled
            } else {
                poll = (poll * 2).min(MAX_POLL);
                continue;
            };
            let _ = child.kill();
            let _ = child.wait();
            return ended;
        }
    }

    fn describe(&self, args: &[String]) -> String {
        format!(
            "DISPLAY={} {} {}",
            self.display,
            self.program,
            args.join(" ")
        )
    }
}

enum Ended {
    Exited(ExitStatus),
    TimedOut,
    Cancelled,
    Lost(String),
}

fn failed(program: &str, status: ExitStatus, stderr: &str) -> String {
    let code = status
        .code()
        .map_or_else(|| "a signal".to_string(), |c| c.to_string());
    let stderr = stderr.trim();
    if stderr.is_empty() {
        format!("{program} exited with status {code}")
    } else {
        format!("{program} exited with status {code}: {stderr}")
    }
}

/// Reads a pipe to its end on a thread; the receiver gets the text once.
fn read_in_background(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    if let Some(mut pipe) = pipe {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            let _ = tx.send(String::from_utf8_lossy(&bytes).into_owned());
        });
    }
    rx
}

fn collect(text: &mpsc::Receiver<String>) -> String {
    text.recv_timeout(PIPE_GRACE).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The runner around `sh -c <script>` instead of xdotool.
    fn shell(timeout: Duration) -> Xdotool {
        Xdotool {
            program: "sh",
            display: ":0".into(),
            timeout,
        }
    }

    fn script(text: &str) -> Vec<String> {
        vec!["-c".into(), text.into()]
    }

    #[test]
    fn output_is_collected_and_display_is_set() {
        let out = shell(COMMAND_TIMEOUT)
            .run(&script("echo $DISPLAY; echo warn >&2"), &CancelToken::new())
            .unwrap();
        assert_eq!(
            (out.stdout.as_str(), out.stderr.as_str()),
            (":0\n", "warn\n")
        );
    }

    #[test]
    fn timeout_kills_and_names_the_command() {
        let started = Instant::now();
        let err = shell(Duration::from_millis(200))
            .run(&script("exec sleep 5"), &CancelToken::new())
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(
            err,
            "Command 'DISPLAY=:0 sh -c exec sleep 5' timed out after 0.2 seconds"
        );
    }

    #[test]
    fn cancel_kills_a_running_command_promptly() {
        let cancel = CancelToken::new();
        let other = cancel.clone();
        let canceller = thread::spawn(move || {
            thread::sleep(Duration::from_millis(100));
            other.cancel();
        });
        let started = Instant::now();
        let err = shell(COMMAND_TIMEOUT)
            .run(&script("exec sleep 30"), &cancel)
            .unwrap_err();
        canceller.join().unwrap();
        assert_eq!(err, CANCELLED);
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn non_zero_exit_is_an_error_with_stderr() {
        let err = shell(COMMAND_TIMEOUT)
            .run(&script("echo bad key >&2; exit 1"), &CancelToken::new())
            .unwrap_err();
        assert_eq!(err, "sh exited with status 1: bad key");
        let silent = shell(COMMAND_TIMEOUT)
            .run(&script("exit 3"), &CancelToken::new())
            .unwrap_err();
        assert_eq!(silent, "sh exited with status 3");
    }
}
