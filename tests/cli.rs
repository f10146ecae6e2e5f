//! The binary as a newcomer runs it: `--help`, start-up on defaults, refusal to expose itself.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use computer_use_server::config::OPTIONS;
use serde_json::json;
use support::fake_anthropic::{FakeAnthropic, Reply};

fn binary() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_computer-use-server"));
    for spec in OPTIONS {
        cmd.env_remove(spec.env);
    }
    // These tests are about the server core; the desktop has tests of its own.
    cmd.env("DESKTOP_MODE", "none");
    cmd
}

#[test]
fn help_lists_every_flag_with_its_environment_variable_and_default() {
    let out = binary().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for spec in OPTIONS {
        assert!(
            text.contains(&format!("--{}", spec.flag)),
            "missing --{}",
            spec.flag
        );
        assert!(text.contains(spec.env), "missing {}", spec.env);
    }
    assert!(text.contains("default 8000") && text.contains("default 127.0.0.1"));
}

#[test]
fn a_bad_value_stops_start_up_naming_the_variable() {
    let out = binary().env("PORT", "eighty").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("PORT=\"eighty\" is invalid"));
}

#[test]
fn public_bind_without_token_is_refused_with_the_reason() {
    let out = binary()
        .env("HOST", "0.0.0.0")
        .env("PORT", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("API_TOKEN") && stderr.contains("--allow-unauthenticated"),
        "{stderr}"
    );
}

#[test]
fn defaults_create_the_sqlite_file_under_data_and_serve_health() {
    let dir = std::env::temp_dir().join(format!("cus-cli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    // The address is logged only once the listener is serving, so one call must succeed.
    let health = start_binary(&dir, &[]).get("/health");
    assert_eq!(health["database"]["backend"], "sqlite");
    assert!(dir.join("data/computer-use.db").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A running binary and the address it reported.
struct Running {
    child: std::process::Child,
    addr: String,
    reader: Option<std::thread::JoinHandle<()>>,
}

fn start_binary(dir: &std::path::Path, env: &[(&str, &str)]) -> Running {
    let mut cmd = binary();
    cmd.current_dir(dir)
        .env("PORT", "0")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped());
    for (name, value) in env {
        cmd.env(name, value);
    }
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("server did not report its address");
    Running {
        child,
        addr,
        reader: Some(reader),
    }
}

impl Running {
    fn post(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let mut resp = ureq::post(&format!("http://{}{path}", self.addr))
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .unwrap();
        serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap()
    }

    fn get(&self, path: &str) -> serde_json::Value {
        let mut resp = ureq::get(&format!("http://{}{path}", self.addr))
            .call()
            .unwrap();
        serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap()
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let _ = self.reader.take().map(|r| r.join());
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the server ignored SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for_file(path: &std::path::Path) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && text.ends_with('\n')
        {
            return text.trim().to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_mid_tool_exits_cleanly_kills_the_shell_and_the_restart_resumes_the_turn() {
    let dir = std::env::temp_dir().join(format!("cus-cli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let pidfile = dir.join("bash.pid");
    let command = format!("echo $$ > {}; sleep 30", pidfile.display());
    let fake = FakeAnthropic::start();
    fake.push(Reply::tool_use(
        "toolu_sleep",
        "bash",
        json!({"command": command}),
    ));
    // A short grace: the 30 s tool outlasts it, so the turn is cancelled and resumed.
    let env = [
        ("ANTHROPIC_BASE_URL", fake.url()),
        ("ANTHROPIC_API_KEY", "sk-ant-test".to_string()),
        ("SHUTDOWN_GRACE", "1".to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    let server = start_binary(&dir, &env);
    let session = server.post("/api/sessions", json!({}));
    let id = session["id"].as_str().unwrap().to_string();
    server.post(
        &format!("/api/sessions/{id}/messages"),
        json!({"content": "nap"}),
    );
    let shell_pid = wait_for_file(&pidfile);
    let status = server.terminate();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        !std::path::Path::new(&format!("/proc/{shell_pid}")).exists(),
        "bash {shell_pid} outlived the server"
    );

    fake.push(Reply::text("Resumed after the restart."));
    let server = start_binary(&dir, &env);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let history = loop {
        let history = server.get(&format!("/api/sessions/{id}/messages"));
        if history.as_array().unwrap().len() == 4 {
            break history;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the turn was not resumed: {history}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(history[2]["content"][0]["tool_use_id"], "toolu_sleep");
    assert_eq!(history[2]["content"][0]["is_error"], true);
    assert_eq!(
        history[3]["content"][0]["text"],
        "Resumed after the restart."
    );
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_agents_shell_does_not_inherit_the_servers_secrets() {
    let dir = std::env::temp_dir().join(format!("cus-cli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let fake = FakeAnthropic::start();
    let probe = "echo key=${ANTHROPIC_API_KEY:-unset} token=${API_TOKEN:-unset} db=${DATABASE_URL:-unset} home=${HOME:+set}";
    fake.push(Reply::tool_use(
        "toolu_env",
        "bash",
        json!({"command": probe}),
    ));
    fake.push(Reply::text("ok"));
    let db = format!("sqlite://{}/x.db", dir.display());
    let env = [
        ("ANTHROPIC_BASE_URL", fake.url()),
        ("ANTHROPIC_API_KEY", "sk-ant-secret-key-123".to_string()),
        ("API_TOKEN", "secret-token-456".to_string()),
        ("DATABASE_URL", db),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = start_binary(&dir, &env);
    let auth = "Bearer secret-token-456";
    let create = ureq::post(&format!("http://{}/api/sessions", server.addr))
        .header("Authorization", auth)
        .header("Content-Type", "application/json")
        .send("{}")
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let id = serde_json::from_str::<serde_json::Value>(&create).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    ureq::post(&format!(
        "http://{}/api/sessions/{id}/messages",
        server.addr
    ))
    .header("Authorization", auth)
    .header("Content-Type", "application/json")
    .send(r#"{"content":"env"}"#)
    .unwrap();
    assert!(
        fake.wait_for_requests(2, Duration::from_secs(10)),
        "the turn did not run its tool"
    );
    let second = &fake.requests()[1].body;
    let result = second["messages"][2]["content"][0]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(result, "key=unset token=unset db=unset home=set");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
