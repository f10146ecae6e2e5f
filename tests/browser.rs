//! The web page end to end in a real headless Chromium (through ChromeDriver): the real server
//! with the fake Messages API and a real shared desktop (Xvfb + x11vnc), driven as a user
//! would, by the page's `data-testid`s. Screenshots of key steps are saved under
//! `target/test-artifacts/browser/`; with `UPDATE_README_SCREENSHOT=1` the completed turn with
//! the live desktop is also written to `tests/screenshots/page.png`, the README's picture.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::fake_anthropic::{FakeAnthropic, Reply};
use support::webdriver::{Browser, tid};
use support::{TestServer, spawn_server};

const STREAMED: &str = "Let me look at the shell first, then at the screen.";
const FINAL: &str = "Done: the shell said hello and an xterm is open on the desktop.";
const XTERM: &str = "(xterm -geometry 60x10+10+10 -e sh -c 'echo hello from the agent; exec sh' &) ; timeout 10 xdotool search --sync --onlyvisible --class xterm >/dev/null && echo xterm-up";
/// Records the URL of every WebSocket the page opens, in `window.__sockets`.
const RECORD_SOCKETS: &str = "window.__sockets = []; const Native = window.WebSocket; \
    window.WebSocket = function (url, protocols) { window.__sockets.push(String(url)); \
    return new Native(url, protocols); }; window.WebSocket.prototype = Native.prototype; \
    Object.assign(window.WebSocket, {CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3});";

fn artifacts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts/browser")
}

/// The status of `GET /api/sessions/{id}`.
fn session_status(server: &TestServer, id: &str) -> u16 {
    server.get(&format!("/api/sessions/{id}")).status
}

/// The conversation as the page shows it: roles, texts and tool cards, for comparisons.
fn conversation(browser: &Browser) -> Value {
    browser.execute(
        r#"
        const all = (sel, root = document) => [...root.querySelectorAll(sel)];
        const conv = document.querySelector('[data-testid="conversation"]');
        if (!conv) return null;
        return {
          roles: all('[data-testid="message"]', conv).map(m => m.getAttribute('data-role')),
          texts: all('[data-testid="assistant-text"]', conv).map(t => t.innerText.trim()),
          tools: all('[data-testid="tool-card"]', conv).map(c => ({
            id: c.getAttribute('data-tool-use-id'),
            name: (c.querySelector('[data-testid="tool-name"]') || {}).innerText,
            output: (c.querySelector('[data-testid="tool-output"]') || {}).innerText,
            images: c.querySelectorAll('[data-testid="tool-image"]').length,
          })),
        };
        "#,
        json!([]),
    )
}

/// The tool card of `tool_use_id`, as [`conversation`] reports it.
fn tool_card<'a>(conversation: &'a Value, tool_use_id: &str) -> Option<&'a Value> {
    conversation["tools"]
        .as_array()?
        .iter()
        .find(|c| c["id"] == tool_use_id)
}

/// What the noVNC canvas in `desktop-screen` shows: its size and how many distinct colours
/// a copy of it has (1 for a blank or not-yet-drawn canvas).
fn desktop_pixels(browser: &Browser) -> Value {
    browser.execute(
        r#"
        const canvas = document.querySelector('[data-testid="desktop-screen"] canvas');
        if (!canvas) return {found: false};
        const w = canvas.width, h = canvas.height;
        if (!w || !h) return {found: true, w, h, colours: 0};
        const copy = document.createElement('canvas');
        copy.width = w; copy.height = h;
        const ctx = copy.getContext('2d');
        ctx.drawImage(canvas, 0, 0);
        const data = ctx.getImageData(0, 0, w, h).data;
        const colours = new Set();
        for (let i = 0; i < data.length && colours.size < 64; i += 4 * 7) {
          colours.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
        }
        return {found: true, w, h, colours: colours.size};
        "#,
        json!([]),
    )
}

/// Waits until the live desktop's canvas is drawn with more than one colour, and checks the
/// page opened the shared desktop's VNC WebSocket.
fn wait_desktop_drawn(browser: &Browser) -> Value {
    let pixels = browser.wait_until("the noVNC canvas to draw the remote screen", || {
        let pixels = desktop_pixels(browser);
        (pixels["colours"].as_u64().unwrap_or(0) > 1).then_some(pixels)
    });
    let sockets = browser.execute("return window.__sockets || [];", json!([]));
    let vnc = sockets
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .any(|url| {
            url.split('?')
                .next()
                .is_some_and(|u| u.ends_with("/ws/vnc"))
        });
    browser.check(vnc, || format!("no WebSocket to /ws/vnc among {sockets}"));
    pixels
}

/// Creates a session through the new-session form; returns its id once it is selected.
fn create_session_in_ui(browser: &Browser) -> String {
    browser.click(&tid("new-session-button"));
    browser.wait_visible(&tid("new-session-form"));
    browser.click(&tid("new-session-submit"));
    let id = browser.wait_until("the new session in the list", || {
        let item = browser.find(&tid("session-item"))?;
        item.attribute("data-session-id")
    });
    let item = format!("{}[data-session-id=\"{id}\"]", tid("session-item"));
    browser.wait_until(
        "the new session to be selected (URL, active item, title)",
        || {
            let hash = browser.execute("return location.hash;", json!([]));
            let in_url = hash.as_str() == Some(&format!("#/sessions/{id}"));
            let active = browser.find(&format!("{item}.active")).is_some();
            (in_url && active && browser.find(&tid("session-title")).is_some()).then_some(())
        },
    );
    id
}

/// Types `text` into the composer and sends it with the button.
fn send_message(browser: &Browser, text: &str) {
    browser.type_into(&tid("message-input"), text);
    browser.click(&tid("send-button"));
}

/// Waits for the streamed text to be complete; returns every distinct text seen on the way.
fn watch_streamed_text(browser: &Browser, full: &str) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    browser.wait_until(&format!("assistant-text to read {full:?}"), || {
        let texts = browser.texts(&tid("assistant-text"));
        let first = texts.first().map(|t| t.trim().to_string())?;
        if seen.last() != Some(&first) {
            seen.push(first.clone());
        }
        (first == full).then_some(())
    });
    seen
}

fn script_the_agent_turn(fake: &FakeAnthropic) {
    let echo = json!({"command": "echo hello-from-bash"});
    fake.push(
        Reply::tool_use("toolu_echo", "bash", echo)
            .with_leading_text(STREAMED)
            .with_event_delay(Duration::from_millis(150)),
    );
    fake.push(Reply::tool_use(
        "toolu_xterm",
        "bash",
        json!({"command": XTERM}),
    ));
    fake.push(Reply::tool_use(
        "toolu_shot",
        "computer",
        json!({"action": "screenshot"}),
    ));
    fake.push(Reply::text(FINAL).with_event_delay(Duration::from_millis(150)));
}

/// Step 2: the scripted turn as the page shows it, streamed and then complete.
fn run_the_agent_turn(browser: &Browser, fake: &FakeAnthropic) {
    script_the_agent_turn(fake);
    send_message(
        browser,
        "Say hello from bash, open an xterm, look at the screen.",
    );
    let seen = watch_streamed_text(browser, STREAMED);
    println!("streamed text as seen: {seen:?}");
    browser.check(
        seen.iter()
            .any(|t| !t.is_empty() && t.len() < STREAMED.len() && STREAMED.starts_with(t)),
        || format!("the text was not streamed progressively; seen: {seen:?}"),
    );
    browser.wait_until("the final text", || {
        let texts = browser.texts(&tid("assistant-text"));
        texts.iter().any(|t| t.trim() == FINAL).then_some(())
    });
    browser.wait_text(&tid("turn-status"), "idle");
    let conv = conversation(browser);
    let echo = tool_card(&conv, "toolu_echo");
    browser.check(
        echo.is_some_and(|c| {
            c["name"].as_str().is_some_and(|n| n.contains("bash"))
                && c["output"]
                    .as_str()
                    .is_some_and(|o| o.contains("hello-from-bash"))
        }),
        || format!("no bash card with hello-from-bash: {conv:#}"),
    );
    browser.wait_until("the screenshot's tool-image to load", || {
        let loaded = browser.execute(
            r#"const img = document.querySelector('[data-testid="tool-card"][data-tool-use-id="toolu_shot"] [data-testid="tool-image"]');
               return !!img && img.complete && img.naturalWidth > 0;"#,
            json!([]),
        );
        (loaded == json!(true)).then_some(())
    });
}

/// Step 3: after a reload the same conversation is shown, once, and stays so.
fn reload_shows_the_same_conversation(browser: &Browser, before: &Value) {
    let tools = before["tools"].as_array().map_or(0, Vec::len);
    let texts = before["texts"].to_string();
    browser.check(
        tools == 3 && texts.contains(STREAMED) && texts.contains(FINAL),
        || format!("the conversation before reload is not the whole turn: {before:#}"),
    );
    let url = browser.execute(
        "window.__before_reload = true; return location.href;",
        json!([]),
    );
    browser.refresh();
    let reloaded = browser.execute(
        "return [location.href, window.__before_reload === undefined];",
        json!([]),
    );
    browser.check(reloaded == json!([url, true]), || {
        format!("not reloaded at the same URL {url}: {reloaded}")
    });
    browser.wait_until("the reloaded page to show the same conversation", || {
        (conversation(browser) == *before).then_some(())
    });
    let stable_until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < stable_until {
        let now = conversation(browser);
        browser.check(now == *before, || {
            format!("the conversation changed after reload:\nbefore {before:#}\nnow {now:#}")
        });
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Step 4: a slow turn is cancelled with the button within a few seconds.
fn cancel_a_slow_turn(browser: &Browser, fake: &FakeAnthropic) {
    fake.push(Reply::text("too late").with_delay(Duration::from_secs(30)));
    send_message(browser, "Take your time.");
    browser.wait_text(&tid("turn-status"), "running");
    let running = format!("{}[data-status=\"running\"]", tid("session-item"));
    browser.wait_visible(&running);
    browser.wait_visible(&tid("cancel-button"));
    let clicked = Instant::now();
    browser.click(&tid("cancel-button"));
    browser.wait_within(
        Duration::from_secs(5),
        "turn-status idle after cancel",
        || (browser.text(&tid("turn-status"))?.trim() == "idle").then_some(()),
    );
    browser.wait_within(Duration::from_secs(5), "a cancelled indication", || {
        let text = browser.text(&tid("conversation"))?.to_lowercase();
        text.contains("cancel").then_some(())
    });
    println!("cancelled in {:?}", clicked.elapsed());
}

/// Step 6: delete through the confirm dialog.
fn delete_in_ui(browser: &Browser, server: &TestServer, id: &str) {
    browser.click(&tid("delete-session-button"));
    browser.wait_visible(&tid("confirm-dialog"));
    browser.click(&tid("confirm-yes"));
    let item = format!("{}[data-session-id=\"{id}\"]", tid("session-item"));
    browser.wait_until("the session to leave the list", || {
        browser.find(&item).is_none().then_some(())
    });
    assert_eq!(session_status(server, id), 404, "the session is deleted");
}

#[test]
fn a_user_runs_watches_reloads_cancels_and_deletes_a_session_in_the_page() {
    let started = Instant::now();
    let dir = artifacts();
    let fake = FakeAnthropic::start();
    let url = fake.url();
    let server = spawn_server(&[
        ("ANTHROPIC_BASE_URL", url.as_str()),
        ("DESKTOP_MODE", "shared"),
        ("SETTLE_DELAY", "0.2"),
        ("VNC_PORT", "0"),
        ("WIDTH", "1024"),
        ("HEIGHT", "768"),
    ]);
    let browser = Browser::start(&dir, "session");
    let step = |name: &str| println!("{:>6.1?}  {name}", started.elapsed());
    step("browser started");
    browser.add_init_script(RECORD_SOCKETS);
    browser.goto(&server.url("/"));
    browser.wait_text(&tid("connection-status"), "connected");
    let id = create_session_in_ui(&browser);
    browser.screenshot(&dir.join("01-new-session.png"));
    step("01-new-session");

    run_the_agent_turn(&browser, &fake);
    let pixels = wait_desktop_drawn(&browser);
    println!("desktop canvas after the turn: {pixels}");
    browser.screenshot(&dir.join("02-turn-complete.png"));
    step("02-turn-complete");
    // The README's picture: refreshed on request, so ordinary runs leave the tree clean.
    if std::env::var_os("UPDATE_README_SCREENSHOT").is_some() {
        let readme = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/screenshots/page.png");
        browser.screenshot(&readme);
    }

    let before = conversation(&browser);
    reload_shows_the_same_conversation(&browser, &before);
    browser.screenshot(&dir.join("03-reloaded.png"));
    step("03-reloaded");

    cancel_a_slow_turn(&browser, &fake);
    browser.screenshot(&dir.join("04-cancelled.png"));
    step("04-cancelled");

    let pixels = wait_desktop_drawn(&browser);
    println!("desktop canvas after reload and cancel: {pixels}");
    browser.screenshot(&dir.join("05-desktop.png"));
    step("05-desktop");

    delete_in_ui(&browser, &server, &id);
    browser.screenshot(&dir.join("06-deleted.png"));
    step("06-deleted");
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
    let uncaught: Vec<String> = browser
        .console_logs()
        .into_iter()
        .filter(|line| line.contains("Uncaught"))
        .collect();
    assert!(uncaught.is_empty(), "the page threw: {uncaught:#?}");
    println!("browser scenario took {:?}", started.elapsed());
}

#[test]
fn with_a_token_the_page_asks_for_it_and_then_lists_sessions() {
    let server = spawn_server(&[("API_TOKEN", "s3cret-token")]);
    let created = server.request(
        "POST",
        "/api/sessions",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", "Bearer s3cret-token"),
        ],
        Some(b"{}"),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["id"].as_str().unwrap().to_string();
    let browser = Browser::start(&artifacts(), "token");
    browser.goto(&server.url("/"));
    browser.wait_visible(&tid("token-form"));
    browser.type_into(&tid("token-input"), "wrong-token");
    browser.click(&tid("token-submit"));
    browser.wait_until("the token form to ask again after a refused token", || {
        let shown = browser.find(&tid("token-form"))?.is_displayed();
        let input = browser.execute(
            "return document.querySelector(arguments[0]).value;",
            json!([tid("token-input")]),
        );
        (shown && input == json!("")).then_some(())
    });
    browser.type_into(&tid("token-input"), "s3cret-token");
    browser.click(&tid("token-submit"));
    let item = format!("{}[data-session-id=\"{id}\"]", tid("session-item"));
    browser.wait_visible(&item);
    let form_shown = browser
        .find(&tid("token-form"))
        .is_some_and(|f| f.is_displayed());
    browser.check(!form_shown, || "the token form is still shown".into());
    browser.screenshot(&artifacts().join("token-accepted.png"));

    browser.refresh();
    browser.wait_visible(&item);
    let form_shown = browser
        .find(&tid("token-form"))
        .is_some_and(|f| f.is_displayed());
    browser.check(!form_shown, || "the kept token was asked for again".into());
}
