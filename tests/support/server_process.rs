//! The server binary as a separate process, for faults an in-process server cannot take:
//! `kill -9`, SIGTERM, resource limits. Its stderr is kept for failure messages; dropping it
//! kills the process.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use computer_use_server::config::OPTIONS;
use serde_json::Value;

/// How long the binary may take to report its address.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running server binary.
pub struct ServerProcess {
    child: Child,
    pub addr: String,
    log: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
    agent: ureq::Agent,
}

impl ServerProcess {
    /// Starts the binary in `dir` on port 0 with the desktop off, `RUST_LOG=info` and `env`.
    pub fn start(dir: &Path, env: &[(&str, &str)]) -> ServerProcess {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_computer-use-server"));
        for spec in OPTIONS {
            cmd.env_remove(spec.env);
        }
        cmd.current_dir(dir)
            .env("PORT", "0")
            .env("DESKTOP_MODE", "none")
            .env("RUST_LOG", "info")
            .env("ANTHROPIC_API_KEY", "sk-ant-test")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in env {
            cmd.env(name, value);
        }
        let mut child = cmd.spawn().expect("start the server binary");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
                }
                lines.lock().unwrap().push(line);
            }
        });
        let mut server = ServerProcess {
            child,
            addr: String::new(),
            log,
            reader: Some(reader),
            agent: agent(),
        };
        server.addr = rx
            .recv_timeout(START_TIMEOUT)
            .unwrap_or_else(|_| panic!("no address reported; log:\n{}", server.log_text()));
        server
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the server logged so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Any request with an optional JSON body: (status, JSON body or Null).
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr))
            .header("Content-Type", "application/json");
        let result = match body {
            Some(body) => self
                .agent
                .run(request.body(body.to_string().into_bytes()).unwrap()),
            None => self.agent.run(request.body(()).unwrap()),
        };
        let mut response = result.unwrap_or_else(|err| panic!("{method} {path}: {err}"));
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Creates a session; returns its id.
    pub fn create_session(&self) -> String {
        let (status, body) = self.call("POST", "/api/sessions", Some(&serde_json::json!({})));
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_string()
    }

    /// Posts a message that must be accepted (202).
    pub fn post_message(&self, session: &str, text: &str) {
        let path = format!("/api/sessions/{session}/messages");
        let (status, body) = self.call("POST", &path, Some(&serde_json::json!({"content": text})));
        assert_eq!(status, 202, "{body}");
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal})");
    }

    /// Waits for the exit (bounded); `None` if it is still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `kill -9`, then reaps the process.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The peak resident set size (`VmHWM`) in KiB, while it runs.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmHWM")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build();
    ureq::Agent::new_with_config(config)
}
