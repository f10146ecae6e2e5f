//! A minimal W3C WebDriver client: drives the system's headless Chromium through ChromeDriver.
//!
//! [`Browser::start`] runs `chromedriver` on a free loopback port in its own process group and
//! opens a session with a fresh profile; dropping the `Browser` deletes the session, kills the
//! group and every process descended from ChromeDriver, and removes the profile. Waits poll the
//! DOM every 50 ms up to a bound; a timed-out wait fails with the page's text, the browser
//! console and a screenshot saved next to the test's artefacts.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use computer_use_server::util::base64;
use serde_json::{Value, json};

/// How long a wait lasts unless told otherwise.
pub const WAIT: Duration = Duration::from_secs(20);
/// How often waits look at the page.
const POLL: Duration = Duration::from_millis(50);
/// The key W3C WebDriver uses for element references.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// The CSS selector of a `data-testid`.
pub fn tid(testid: &str) -> String {
    format!("[data-testid=\"{testid}\"]")
}

/// An error answered by the WebDriver server (`no such element`, `stale element reference`…).
#[derive(Debug)]
pub struct WdError {
    pub error: String,
    pub message: String,
}

/// One browser session; see the module documentation.
pub struct Browser {
    agent: ureq::Agent,
    /// `http://127.0.0.1:PORT/session/ID`.
    session: String,
    artifacts: PathBuf,
    label: String,
    driver: Driver,
}

/// A reference to an element of the current page.
pub struct Element<'a> {
    browser: &'a Browser,
    id: String,
}

impl Browser {
    /// Starts ChromeDriver and a headless Chromium; failure screenshots go to `artifacts`,
    /// named after `label`.
    pub fn start(artifacts: &Path, label: &str) -> Browser {
        std::fs::create_dir_all(artifacts).expect("create the artefacts directory");
        let driver = Driver::spawn(&artifacts.join(format!("{label}-chromedriver.log")));
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(60)))
                .build(),
        );
        let base = format!("http://127.0.0.1:{}", driver.port);
        wait_ready(&agent, &base);
        let created = send(
            &agent,
            "POST",
            &format!("{base}/session"),
            Some(capabilities(&driver.profile)),
        )
        .unwrap_or_else(|e| panic!("cannot start Chromium through ChromeDriver: {e:?}"));
        let id = created["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        Browser {
            agent,
            session: format!("{base}/session/{id}"),
            artifacts: artifacts.to_path_buf(),
            label: label.to_string(),
            driver,
        }
    }

    /// Calls a session command (`path` after `/session/ID`).
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, WdError> {
        send(
            &self.agent,
            method,
            &format!("{}{path}", self.session),
            body,
        )
    }

    fn must(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, path, body)
            .unwrap_or_else(|e| self.fail(&format!("WebDriver {method} {path}: {e:?}")))
    }

    /// Navigates and waits for the document to load.
    pub fn goto(&self, url: &str) {
        self.must("POST", "/url", Some(json!({ "url": url })));
    }

    /// Reloads the page.
    pub fn refresh(&self) {
        self.must("POST", "/refresh", Some(json!({})));
    }

    /// Runs `source` in every document this session opens, before the page's own scripts
    /// (Chrome DevTools `Page.addScriptToEvaluateOnNewDocument`).
    pub fn add_init_script(&self, source: &str) {
        let params = json!({ "source": source });
        let body = json!({ "cmd": "Page.addScriptToEvaluateOnNewDocument", "params": params });
        self.must("POST", "/goog/cdp/execute", Some(body));
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) and returns its value.
    pub fn execute(&self, script: &str, args: Value) -> Value {
        let body = json!({ "script": script, "args": args });
        self.must("POST", "/execute/sync", Some(body))
    }

    /// Every element matching `css`, in document order.
    pub fn find_all(&self, css: &str) -> Vec<Element<'_>> {
        let body = json!({ "using": "css selector", "value": css });
        let found = self.must("POST", "/elements", Some(body));
        found
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e[ELEMENT_KEY].as_str())
            .map(|id| Element {
                browser: self,
                id: id.to_string(),
            })
            .collect()
    }

    /// The first element matching `css`, if any.
    pub fn find(&self, css: &str) -> Option<Element<'_>> {
        self.find_all(css).into_iter().next()
    }

    /// Waits for a displayed element matching `css`.
    pub fn wait_visible(&self, css: &str) -> Element<'_> {
        self.wait_until(&format!("{css} to be visible"), || {
            self.find_all(css).into_iter().find(|e| e.is_displayed())
        })
    }

    /// Clicks the first displayed element matching `css`, retrying while it is re-rendered
    /// or covered.
    pub fn click(&self, css: &str) {
        self.wait_result(WAIT, &format!("{css} to be clickable"), || {
            self.displayed(css)?
                .try_click()
                .map_err(|e| format!("{e:?}"))
        });
    }

    /// Types `text` into the first displayed element matching `css`.
    pub fn type_into(&self, css: &str, text: &str) {
        self.wait_result(WAIT, &format!("{css} to accept keys"), || {
            let element = self.displayed(css)?;
            element.try_send_keys(text).map_err(|e| format!("{e:?}"))
        });
    }

    fn displayed(&self, css: &str) -> Result<Element<'_>, String> {
        let all = self.find_all(css);
        let count = all.len();
        let found = all.into_iter().find(|e| e.is_displayed());
        found.ok_or_else(|| format!("{count} matching element(s), none displayed"))
    }

    /// The `innerText` of every element matching `css`.
    pub fn texts(&self, css: &str) -> Vec<String> {
        let script = "return [...document.querySelectorAll(arguments[0])].map(e => e.innerText);";
        let value = self.execute(script, json!([css]));
        serde_json::from_value(value).unwrap_or_default()
    }

    /// The `innerText` of the first element matching `css` (`None` when there is none).
    pub fn text(&self, css: &str) -> Option<String> {
        self.texts(css).into_iter().next()
    }

    /// Polls `probe` every 50 ms until it returns `Some`, for at most [`WAIT`].
    pub fn wait_until<T>(&self, what: &str, probe: impl FnMut() -> Option<T>) -> T {
        self.wait_within(WAIT, what, probe)
    }

    /// Polls `probe` every 50 ms until it returns `Some`, for at most `timeout`.
    pub fn wait_within<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut probe: impl FnMut() -> Option<T>,
    ) -> T {
        self.wait_result(timeout, what, || probe().ok_or_else(String::new))
    }

    /// Polls `probe` every 50 ms until it returns `Ok`, for at most `timeout`; a timeout
    /// reports the last error.
    pub fn wait_result<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut probe: impl FnMut() -> Result<T, String>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match probe() {
                Ok(value) => return value,
                Err(last) => last,
            };
            if Instant::now() >= deadline {
                let last = if last.is_empty() {
                    last
                } else {
                    format!(" (last: {last})")
                };
                self.fail(&format!(
                    "timed out after {timeout:?} waiting for {what}{last}"
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until the `innerText` of the first `css` element, trimmed, equals `expected`.
    pub fn wait_text(&self, css: &str, expected: &str) {
        let what = format!("{css} to read {expected:?}");
        self.wait_until(&what, || (self.text(css)?.trim() == expected).then_some(()));
    }

    /// Fails the test unless `condition` holds, with the page's state in the message.
    pub fn check(&self, condition: bool, what: impl FnOnce() -> String) {
        if !condition {
            self.fail(&what());
        }
    }

    /// Saves a PNG screenshot of the viewport to `path`.
    pub fn screenshot(&self, path: &Path) {
        let encoded = self.must("GET", "/screenshot", None);
        let png = base64::decode(encoded.as_str().unwrap_or_default()).expect("base64 PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create the screenshot directory");
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// The browser console since the last call (needs `goog:loggingPrefs`).
    pub fn console_logs(&self) -> Vec<String> {
        let Ok(entries) = self.call("POST", "/se/log", Some(json!({ "type": "browser" }))) else {
            return Vec::new();
        };
        let entries = entries.as_array().cloned().unwrap_or_default();
        let line = |e: &Value| format!("{} {}", e["level"].as_str().unwrap_or("?"), e["message"]);
        entries.iter().map(line).collect()
    }

    /// Panics with `message`, the page's URL and text, the console and a screenshot's path.
    pub fn fail(&self, message: &str) -> ! {
        let script =
            "return location.href + '\\n' + (document.body ? document.body.innerText : '');";
        let page = self
            .call(
                "POST",
                "/execute/sync",
                Some(json!({ "script": script, "args": [] })),
            )
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .unwrap_or_else(|e| format!("(unavailable: {e:?})"));
        let page: String = page.chars().take(6000).collect();
        let shot = self.artifacts.join(format!("{}-failure.png", self.label));
        let shot = match self.call("GET", "/screenshot", None) {
            Ok(encoded) => {
                let png = base64::decode(encoded.as_str().unwrap_or_default()).unwrap_or_default();
                std::fs::write(&shot, png)
                    .map_or("(not saved)".into(), |_| shot.display().to_string())
            }
            Err(e) => format!("(unavailable: {e:?})"),
        };
        let console = self.console_logs().join("\n");
        panic!(
            "{message}\n--- page ---\n{page}\n--- browser console ---\n{console}\n--- screenshot: {shot}"
        );
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Closes Chromium cleanly; the driver's Drop kills whatever is left.
        let _ = send(&self.agent, "DELETE", &self.session, None);
    }
}

impl Element<'_> {
    /// Whether the element is rendered (WebDriver's "element displayed" algorithm).
    pub fn is_displayed(&self) -> bool {
        self.call("GET", "/displayed", None)
            .map(|v| v.as_bool().unwrap_or(false))
            .unwrap_or(false)
    }

    /// Clicks as a user would (scrolls it into view; fails if another element is on top).
    pub fn try_click(&self) -> Result<Value, WdError> {
        self.call("POST", "/click", Some(json!({})))
    }

    /// Types `text` (WebDriver key codes such as `\u{E007}` for Enter are allowed).
    pub fn try_send_keys(&self, text: &str) -> Result<Value, WdError> {
        self.call("POST", "/value", Some(json!({ "text": text })))
    }

    /// The element's `innerText` as WebDriver renders it.
    pub fn text(&self) -> String {
        self.call("GET", "/text", None)
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    }

    /// An attribute's value (`None` when absent or the element went stale).
    pub fn attribute(&self, name: &str) -> Option<String> {
        let value = self.call("GET", &format!("/attribute/{name}"), None).ok()?;
        value.as_str().map(str::to_string)
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, WdError> {
        let path = format!("/element/{}{path}", self.id);
        self.browser.call(method, &path, body)
    }
}

/// Sends one WebDriver command; the answer's `value`, or the error it carries.
fn send(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    body: Option<Value>,
) -> Result<Value, WdError> {
    let request = ureq::http::Request::builder().method(method).uri(url);
    let result = match body {
        Some(body) => {
            let request = request.header("Content-Type", "application/json");
            agent.run(request.body(body.to_string().into_bytes()).unwrap())
        }
        None => agent.run(request.body(()).unwrap()),
    };
    let mut response = result.map_err(|e| WdError {
        error: "transport".into(),
        message: format!("{method} {url}: {e}"),
    })?;
    let text = response.body_mut().read_to_string().unwrap_or_default();
    let mut answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let value = answer["value"].take();
    match value["error"].as_str() {
        Some(error) => Err(WdError {
            error: error.to_string(),
            message: value["message"].as_str().unwrap_or_default().to_string(),
        }),
        None if response.status().is_success() => Ok(value),
        None => Err(WdError {
            error: format!("HTTP {}", response.status()),
            message: text,
        }),
    }
}

fn capabilities(profile: &Path) -> Value {
    let args = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,900",
    ];
    let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    json!({"capabilities": {"alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        "goog:loggingPrefs": {"browser": "ALL"},
        "timeouts": {"pageLoad": WAIT.as_millis() as u64, "script": WAIT.as_millis() as u64},
    }}})
}

/// Waits for ChromeDriver's `/status` to say it is ready.
fn wait_ready(agent: &ureq::Agent, base: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let status = send(agent, "GET", &format!("{base}/status"), None);
        if status.is_ok_and(|s| s["ready"].as_bool() == Some(true)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "chromedriver did not start on {base}"
        );
        std::thread::sleep(POLL);
    }
}

/// The ChromeDriver process (leader of its own process group) and the browser profile.
struct Driver {
    child: Child,
    port: u16,
    profile: PathBuf,
}

impl Driver {
    fn spawn(log: &Path) -> Driver {
        let port = free_port();
        let profile = std::env::temp_dir().join(format!("cus-chromium-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&profile).expect("create the browser profile");
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .arg("--log-level=WARNING")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {CHROMEDRIVER}: {e}"));
        Driver {
            child,
            port,
            profile,
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        let tree = descendants(pid);
        let mut targets = vec![-pid, pid];
        targets.extend(&tree);
        kill(&targets);
        let _ = self.child.wait();
        // Chromium's helpers are reparented when their parent dies; wait until they are gone.
        let deadline = Instant::now() + Duration::from_secs(5);
        while tree.iter().any(|&p| is_running(p)) && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// SIGKILL to these pids (negative: a process group) through `kill(1)`, so no `unsafe`.
fn kill(pids: &[i32]) {
    let _ = Command::new("kill")
        .arg("-KILL")
        .arg("--")
        .args(pids.iter().map(|p| p.to_string()))
        .stderr(Stdio::null())
        .status();
}

/// Whether `pid` exists and is not a zombie.
fn is_running(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next());
    state.is_some_and(|s| s != 'Z' && s != 'X')
}

/// Every live process whose parent chain leads to `root` (Chromium's helpers may leave the
/// group).
fn descendants(root: i32) -> Vec<i32> {
    let parents: Vec<(i32, i32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let ppid = stat
                .rsplit_once(") ")?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}
