//! Starting the programs of a desktop, each with its arguments and its readiness signal.
//!
//! - Xvfb: `-displayfd 1` writes the display number to stdout once the server accepts clients,
//!   so there is no polling; without a number it also picks a free display (atomically, via the
//!   abstract socket). `-screen 0 WxHx24 -dpi 96` as the reference; `-nolisten tcp` keeps it
//!   off the network while the Unix socket stays (xdotool and x11rb use it). No `-ac`: the
//!   default host list admits local (Unix socket) clients, which is all we need, and leaving
//!   access control on means a TCP listener could never be opened to everyone by accident.
//!   `-noreset`: an X server otherwise resets when its last client leaves (a probe, a
//!   screenshot connection), dropping connections that arrive meanwhile.
//!   Ready means the number was reported and the socket file answers an X11 handshake.
//! - Window manager: `openbox --sm-disable`, not waited for; a missing openbox is a warning.
//! - x11vnc: `-localhost -no6` (loopback only: viewers come through our proxy), `-forever
//!   -shared -nopw` as the reference; ready when it prints `PORT=<n>`. A port taken in the
//!   meantime makes it exit, and it is retried on a fresh free port.

use std::io;
use std::time::Duration;

use super::DesktopError;
use super::probe;
use super::process::{LineError, Process};

/// How long each program gets to become ready.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts at a VNC port before giving up (only a lost race for the port is retried).
const VNC_ATTEMPTS: usize = 3;
/// Attempts at an Xvfb whose socket file answers (only a lost race for the file is retried).
const XVFB_ATTEMPTS: usize = 3;

const INSTALL_HINT: &str = "run scripts/install-desktop.sh";

/// Starts Xvfb on display `num` (or a free one) and returns it with the display number, once
/// its socket file answers.
pub(crate) fn xvfb(
    num: Option<u32>,
    width: u32,
    height: u32,
) -> Result<(Process, u32), DesktopError> {
    // `-displayfd` turns off X lock files, leaving the socket files unguarded against another
    // X server starting at the same moment; a server whose socket file does not answer the
    // X11 handshake is not used.
    let mut last = None;
    for _ in 0..XVFB_ATTEMPTS {
        let (process, started) = try_xvfb(num, width, height)?;
        if probe::x_root_size(started).is_some() {
            return Ok((process, started));
        }
        log::warn!("Xvfb :{started} reported ready but its socket does not answer; retrying");
        last = Some(started);
        drop(process);
    }
    Err(failed(format!(
        "Xvfb started but its socket {} did not answer",
        probe::x_socket(last.unwrap_or_default()).display()
    )))
}

fn try_xvfb(num: Option<u32>, width: u32, height: u32) -> Result<(Process, u32), DesktopError> {
    let mut args: Vec<String> = num.map(|n| format!(":{n}")).into_iter().collect();
    args.extend(
        [
            "-displayfd",
            "1",
            "-screen",
            "0",
            &format!("{width}x{height}x24"),
            "-nolisten",
            "tcp",
            "-dpi",
            "96",
            "-noreset",
        ]
        .map(String::from),
    );
    let process = spawn("Xvfb", &args, None)?;
    match process.wait_line(START_TIMEOUT, |line| line.parse::<u32>().ok()) {
        Ok(num) => Ok((process, num)),
        Err(err) => Err(not_ready(process, err)),
    }
}

/// Starts the window manager on display `num`; `None` (with a warning) if it cannot run.
pub(crate) fn window_manager(num: u32) -> Option<Process> {
    match Process::spawn("openbox", &["--sm-disable".to_string()], Some(num)) {
        Ok(process) => Some(process),
        Err(err) => {
            log::warn!(
                "desktop :{num}: no window manager ({}); windows will lack decorations and focus \
                 handling",
                describe_spawn_error("openbox", &err)
            );
            None
        }
    }
}

/// Starts x11vnc for display `num` on `port` (0: a free one); returns it with its port.
pub(crate) fn x11vnc(num: u32, port: u16) -> Result<(Process, u16), DesktopError> {
    let mut port = port;
    let mut last = None;
    for _ in 0..VNC_ATTEMPTS {
        if port == 0 {
            port =
                probe::free_port().map_err(|e| failed(format!("no free port for x11vnc: {e}")))?;
        }
        match try_x11vnc(num, port)? {
            Ok(started) => return Ok(started),
            Err(taken) => {
                log::warn!("x11vnc for :{num}: port {port} is taken; trying a free one");
                last = Some(taken);
            }
        }
        port = 0;
    }
    Err(last.unwrap_or_else(|| failed("x11vnc could not get a port".into())))
}

/// One x11vnc attempt: `Ok(Err(_))` when it lost the port to someone else (worth a retry).
fn try_x11vnc(num: u32, port: u16) -> Result<Result<(Process, u16), DesktopError>, DesktopError> {
    let args = [
        "-display".to_string(),
        format!(":{num}"),
        "-localhost".into(),
        "-no6".into(),
        "-forever".into(),
        "-shared".into(),
        "-nopw".into(),
        "-rfbport".into(),
        port.to_string(),
    ];
    let process = spawn("x11vnc", &args, Some(num))?;
    let ready = process.wait_line(START_TIMEOUT, |line| {
        line.strip_prefix("PORT=")?.parse::<u16>().ok()
    });
    match ready {
        Ok(port) => Ok(Ok((process, port))),
        Err(err) => {
            let error = not_ready(process, err);
            let lost_port =
                matches!(&error, DesktopError::StartFailed(why) if why.contains("listening port"));
            if lost_port {
                Ok(Err(error))
            } else {
                Err(error)
            }
        }
    }
}

fn spawn(
    program: &'static str,
    args: &[String],
    display: Option<u32>,
) -> Result<Process, DesktopError> {
    Process::spawn(program, args, display)
        .map_err(|err| failed(describe_spawn_error(program, &err)))
}

fn describe_spawn_error(program: &str, err: &io::Error) -> String {
    if err.kind() == io::ErrorKind::NotFound {
        format!("{program} is not installed: {INSTALL_HINT}")
    } else {
        format!("{program} could not be started: {err}")
    }
}

/// Stops a program that did not become ready and says why, with its stderr tail.
fn not_ready(mut process: Process, err: LineError) -> DesktopError {
    let program = process.program();
    process.stop();
    let tail = process.stderr_tail();
    let what = match err {
        LineError::Exited => format!("{program} exited before it was ready"),
        LineError::TimedOut => format!(
            "{program} was not ready within {}s",
            START_TIMEOUT.as_secs()
        ),
    };
    if tail.is_empty() {
        failed(what)
    } else {
        failed(format!("{what}: {tail}"))
    }
}

fn failed(why: String) -> DesktopError {
    DesktopError::StartFailed(why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_is_reported_with_the_install_script() {
        let err = spawn("no-such-program-for-desktops", &[], None)
            .err()
            .unwrap();
        assert_eq!(
            err,
            DesktopError::StartFailed(
                "no-such-program-for-desktops is not installed: run scripts/install-desktop.sh"
                    .into()
            )
        );
    }
}
