//! What the desktop benchmarks (`bench_screenshot`, `bench_vnc`) share beyond
//! [`bench_support`](super::bench_support): their command lines, screen sizes, and a screen
//! full of text to capture or stream.
//!
//! Include it with `#[path = "bench_support/desktop.rs"] mod desktop_support;` next to
//! `mod bench_support;`.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use computer_use_server::desktop::Display;

use crate::bench_support::record_pids;

/// How long a desktop or its windows may take to appear before the benchmark gives up.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Parses `--flag value` pairs, handing each to `apply`; on a bad command line prints why
/// and `usage` on stderr and exits with status 2.
pub fn parse_flags(
    program: &str,
    usage: &str,
    mut apply: impl FnMut(&str, &str) -> Result<(), String>,
) {
    let mut args = std::env::args().skip(1);
    let result = (|| -> Result<(), String> {
        while let Some(flag) = args.next() {
            let value = args.next().ok_or(format!("{flag} wants a value"))?;
            apply(&flag, &value)?;
        }
        Ok(())
    })();
    if let Err(why) = result {
        eprintln!("{program}: {why}");
        eprintln!("usage: {program} {usage}");
        std::process::exit(2);
    }
}

/// `value` parsed, or "bad value for `flag`".
pub fn parse_value<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("bad value for {flag}: {value}"))
}

/// `1024x768,1920x1080` → `[(1024, 768), (1920, 1080)]`.
pub fn parse_sizes(flag: &str, value: &str) -> Result<Vec<(u32, u32)>, String> {
    value
        .split(',')
        .map(|size| {
            let (w, h) = size.split_once('x')?;
            Some((w.parse().ok()?, h.parse().ok()?))
        })
        .collect::<Option<Vec<_>>>()
        .filter(|sizes| !sizes.is_empty())
        .ok_or_else(|| format!("bad value for {flag}: {value} (want WxH[,WxH…])"))
}

/// Per-run ratios of paired runs in percent, `values[i] / refs[i]`.
pub fn paired_ratios(values: &[f64], refs: &[f64]) -> Vec<f64> {
    values
        .iter()
        .zip(refs)
        .map(|(v, r)| v / r * 100.0)
        .collect()
}

/// Spawns `command` with no stdin or stderr and `stdout` as given, and records its pid for
/// the wrapper script's clean-up.
pub fn spawn_recorded(command: &mut Command, stdout: Stdio) -> Result<Child, String> {
    let child = command
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", command.get_program().to_string_lossy()))?;
    record_pids([child.id()]);
    Ok(child)
}

/// A few xterms full of text (held open after their command), killed on drop: screen
/// content that neither compresses to nothing nor changes while it is measured.
pub struct Xterms(Vec<Child>);

impl Xterms {
    /// Opens four xterms listing `/usr/bin` on `display` and waits until they are drawn.
    pub fn start(display: &Display) -> Result<Xterms, String> {
        let mut xterms = Xterms(Vec::new());
        for (x, y) in [(0, 0), (960, 0), (0, 540), (960, 540)] {
            let mut xterm = Command::new("xterm");
            xterm
                .env("DISPLAY", display.name())
                .args(["-hold", "-geometry", &format!("158x40+{x}+{y}")])
                .args(["-e", "ls", "-la", "/usr/bin"]);
            xterms.0.push(spawn_recorded(&mut xterm, Stdio::null())?);
        }
        wait_for_windows(display, xterms.0.len())?;
        Ok(xterms)
    }
}

impl Drop for Xterms {
    fn drop(&mut self) {
        for xterm in &mut self.0 {
            let _ = xterm.kill();
            let _ = xterm.wait();
        }
    }
}

/// Waits (bounded) until `count` xterm windows are mapped, then lets them draw their text.
fn wait_for_windows(display: &Display, count: usize) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let found = Command::new("xdotool")
            .env("DISPLAY", display.name())
            .args(["search", "--onlyvisible", "--class", "xterm"])
            .output()
            .map_err(|e| format!("xdotool: {e}"))?;
        if String::from_utf8_lossy(&found.stdout).lines().count() >= count {
            break;
        }
        if Instant::now() > deadline {
            return Err("the xterms did not appear".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Mapped is not drawn: `ls` output is short, half a second is plenty.
    std::thread::sleep(Duration::from_millis(500));
    Ok(())
}
