//! What every benchmark in `examples/bench_*.rs` shares: summaries (median with min–max),
//! markdown rows, `/proc` readings (RSS, CPU time, threads), the release server binary as a
//! child process, and the pid list that `scripts/bench*.sh` cleans up from.
//!
//! Include it with `mod bench_support;` (Cargo does not build a directory without `main.rs`
//! as an example of its own). Not every benchmark uses every item.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- summaries

/// The median (the mean of the middle two for an even count); 0 for none.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// The `p`-th percentile (0–100) of already sorted values, nearest rank; 0 for none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Sorts in place and returns (p50, p99).
pub fn p50_p99(values: &mut [f64]) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    (percentile(values, 50.0), percentile(values, 99.0))
}

/// How many decimals suit a value of this size.
fn digits_for(value: f64) -> usize {
    match value.abs() {
        v if v >= 100.0 => 0,
        v if v >= 10.0 => 1,
        _ => 2,
    }
}

/// "median (min–max)" with the digits the median calls for.
pub fn summary(values: &[f64]) -> String {
    summary_digits(values, digits_for(median(values)))
}

/// "median (min–max)"; just the value when there is one run.
pub fn summary_digits(values: &[f64], digits: usize) -> String {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if values.len() <= 1 || min == max {
        return format!("{:.digits$}", median(values));
    }
    format!(
        "{:.digits$} ({min:.digits$}–{max:.digits$})",
        median(values)
    )
}

/// The ratio of medians as a percentage ("87 %"), or "–" without a reference.
pub fn ratio_percent(values: &[f64], reference: &[f64]) -> String {
    let reference = median(reference);
    if reference == 0.0 {
        return "–".into();
    }
    format!("{:.0} %", 100.0 * median(values) / reference)
}

/// The ratio of medians as a factor ("2.5×"), or "–" without a reference.
pub fn times(values: &[f64], reference: &[f64]) -> String {
    let reference = median(reference);
    if reference <= 0.0 {
        return "–".into();
    }
    format!("{:.1}×", median(values) / reference)
}

/// "met" / "MISSED" for a target check.
pub fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

/// One markdown table row.
pub fn row(cells: &[&str]) -> String {
    format!("| {} |", cells.join(" | "))
}

/// A markdown table header row and its separator.
pub fn header(cells: &[&str]) -> String {
    let rule: Vec<&str> = cells.iter().map(|_| "---").collect();
    format!("{}\n{}", row(cells), row(&rule))
}

// ---------------------------------------------------------------- /proc

/// Resident set size of `pid` in KiB (`VmRSS`), if it is alive.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_field(pid, "VmRSS:")
}

/// Threads of `pid`.
pub fn threads(pid: u32) -> Option<u64> {
    status_field(pid, "Threads:")
}

fn status_field(pid: u32, name: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(name))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User + system CPU time `pid` has used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / clock_ticks_per_second())
}

/// CPU time all threads of `pid` have used so far, in seconds, to the nanosecond
/// (`/proc/PID/task/*/schedstat`; threads that already ended are not counted), or
/// [`cpu_seconds`]'s 10 ms ticks where schedstat is missing.
pub fn run_time_seconds(pid: u32) -> f64 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"));
    let mut total_ns = 0u64;
    for task in tasks.into_iter().flatten().flatten() {
        let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        match stat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
        {
            Some(ns) => total_ns += ns,
            None => return cpu_seconds(pid).unwrap_or(0.0),
        }
    }
    total_ns as f64 / 1e9
}

#[allow(unsafe_code)]
fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a constant of the system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// CPU use of `pid` over `window` as a percentage of one core (may exceed 100).
pub fn cpu_percent_over(pid: u32, window: impl FnOnce()) -> Option<f64> {
    let started = Instant::now();
    let before = cpu_seconds(pid)?;
    window();
    let after = cpu_seconds(pid)?;
    Some(100.0 * (after - before) / started.elapsed().as_secs_f64())
}

// ---------------------------------------------------------------- clean-up

/// Appends pids to `$BENCH_PIDS` (if set) so the wrapper script can stop them if the run is
/// killed or times out.
pub fn record_pids(pids: impl IntoIterator<Item = u32>) {
    let Some(path) = std::env::var_os("BENCH_PIDS") else {
        return;
    };
    let lines: String = pids.into_iter().map(|pid| format!("{pid}\n")).collect();
    let file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path);
    if let Err(err) = file.and_then(|mut f| f.write_all(lines.as_bytes())) {
        eprintln!("bench: cannot record pids: {err}");
    }
}

// ---------------------------------------------------------------- the server binary

/// The release server binary next to this example (`target/release/computer-use-server`),
/// or `$BENCH_SERVER_BIN`.
pub fn server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("BENCH_SERVER_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/examples/<name> → target/<profile>/computer-use-server
    exe.parent()
        .and_then(|examples| examples.parent())
        .map(|profile| profile.join("computer-use-server"))
        .expect("the example's directory")
}

/// A free loopback port (bound, read and released: good enough on a quiet machine).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The server binary as a child process: desktop off, quiet log, stopped on drop.
pub struct Server {
    child: Child,
    /// `127.0.0.1:port`
    pub addr: String,
    /// From spawn to the first 200 from `/health`.
    pub started_in: Duration,
}

impl Server {
    /// Starts the binary on a free port with `env` (which may override any default here:
    /// the log level is the default, `info`, with its line per request) and polls `/health`
    /// until it answers 200 (up to 60 s).
    pub fn start(env: &[(&str, &str)]) -> Result<Server, String> {
        let binary = server_binary();
        let port = free_port();
        let mut cmd = Command::new(&binary);
        cmd.env("PORT", port.to_string())
            .env("DESKTOP_MODE", "none")
            .env("ANTHROPIC_API_KEY", "sk-ant-bench")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in env {
            cmd.env(name, value);
        }
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("{}: {e}", binary.display()))?;
        record_pids([child.id()]);
        // Drain the log (a full pipe would stall the server); keep the last lines for errors.
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("BENCH_VERBOSE").is_some() {
                    eprintln!("server: {line}");
                }
                if line.contains("ERROR") {
                    let _ = tx.send(line);
                }
            }
        });
        let addr = format!("127.0.0.1:{port}");
        let health = format!("http://{addr}/health");
        let agent = agent();
        let deadline = started + Duration::from_secs(60);
        loop {
            if let Ok((200, _)) = call(&agent, "GET", &health, None) {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                let why: Vec<String> = rx.try_iter().collect();
                return Err(format!("the server exited ({status}): {}", why.join("; ")));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err("the server did not answer /health within 60 s".into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(Server {
            child,
            addr,
            started_in: started.elapsed(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid()).unwrap_or(0)
    }

    /// Stops the server (SIGTERM, then SIGKILL after 10 s) and waits for it.
    pub fn stop(mut self) {
        self.shut_down();
    }

    #[allow(unsafe_code)]
    fn shut_down(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own child's pid; no memory is involved.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.shut_down();
        }
    }
}

/// A ureq agent for driving a server: no proxy, errors as values, bounded.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .proxy(None)
        .build()
        .into()
}

/// A request with an optional JSON body: (status, body as JSON or Null).
pub fn call(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    body: Option<&serde_json::Value>,
) -> Result<(u16, serde_json::Value), String> {
    let request = ureq::http::Request::builder()
        .method(method)
        .uri(url)
        .header("Content-Type", "application/json");
    let result = match body {
        Some(body) => agent.run(request.body(body.to_string().into_bytes()).unwrap()),
        None => agent.run(request.body(()).unwrap()),
    };
    let mut response = result.map_err(|e| format!("{method} {url}: {e}"))?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    Ok((status, serde_json::from_str(&text).unwrap_or_default()))
}

/// A short description of this machine for the report's heading.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(str::trim)
        .unwrap_or("unknown CPU");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {cpu}")
}
