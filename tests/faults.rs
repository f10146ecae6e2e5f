//! Fault tolerance: each test breaks one thing the server depends on (the Messages API, a
//! tool, a worker thread, the process itself, the database) and proves the server answers
//! clearly, keeps serving, recovers, and loses nothing: every accepted message is stored
//! exactly once, answered, and the history stays one the API accepts (checked in the database).

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use computer_use_server::store::Store;
use serde_json::{Value, json};
use support::fake_anthropic::{FakeAnthropic, Reply};
use support::history::{assert_nothing_lost, assistant_texts, open_store, turn_ends};
use support::postgres_cluster::PgCluster;
use support::server_process::ServerProcess;
use support::{SseClient, TestServer, WsClient, WsItem, spawn_server};

/// The longest any test waits for the server to reach a state.
const PATIENCE: Duration = Duration::from_secs(30);

/// The text that makes a worker panic inside its turn (feature `fault-injection`).
const PANIC_MESSAGE: &str = "fault-injection: panic in the worker";

/// Polls `ready` every 50 ms until it holds; panics with `what` after [`PATIENCE`].
fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `n` turns of `session` have ended; returns how each ended.
fn wait_turn_ends(store: &dyn Store, session: &str, n: usize) -> Vec<String> {
    wait_until(&format!("{n} turn(s) of {session} to end"), || {
        turn_ends(store, session).len() >= n
    });
    turn_ends(store, session)
}

/// Waits until nothing is queued and the conversation ends with the model's answer.
fn wait_all_answered(store: &dyn Store, session: &str, messages: usize) {
    wait_until("every message answered", || {
        let all = store.list_messages(session, 0, 100_000).unwrap_or_default();
        let posted = all
            .iter()
            .filter(|m| m.role == "user" && is_posted(&m.content))
            .count();
        let queued = all.iter().any(|m| m.seq.is_none());
        let last = store
            .conversation(session)
            .ok()
            .and_then(|c| c.last().cloned());
        posted == messages && !queued && last.is_some_and(|m| m.role == "assistant")
    });
}

fn is_posted(content: &Value) -> bool {
    content[0]["type"] == "text" && content.as_array().is_some_and(|a| a.len() == 1)
}

fn error_events(store: &dyn Store, session: &str) -> Vec<Value> {
    let events = store.list_events(session, 0, 100_000).unwrap();
    events
        .into_iter()
        .filter(|e| e.kind == "error")
        .map(|e| e.payload)
        .collect()
}

fn post(server: &TestServer, session: &str, text: &str) -> support::Resp {
    let path = format!("/api/sessions/{session}/messages");
    server.post_json(&path, &json!({ "content": text }))
}

fn fake_env(fake: &FakeAnthropic) -> String {
    fake.url()
}

// ---------------------------------------------------------------------------------------------
// The Messages API misbehaves.

/// Runs "fault → error, then a normal message → answered" on a fresh server.
fn model_fault_ends_the_turn_and_the_next_message_works(faults: Vec<Reply>, env: &[(&str, &str)]) {
    let fake = FakeAnthropic::start();
    for reply in faults {
        fake.push(reply);
    }
    fake.push(Reply::text("Recovered."));
    let url = fake_env(&fake);
    let mut vars = vec![
        ("ANTHROPIC_BASE_URL", url.as_str()),
        ("MODEL_MAX_RETRIES", "0"),
    ];
    vars.extend_from_slice(env);
    let server = spawn_server(&vars);
    let store = server.app.store.clone();
    let id = server.create_session();

    assert_eq!(post(&server, &id, "first").status, 202);
    assert_eq!(wait_turn_ends(store.as_ref(), &id, 1), ["error"]);
    assert!(
        !error_events(store.as_ref(), &id).is_empty(),
        "an error event"
    );
    assert_eq!(
        server.get("/health").status,
        200,
        "the server keeps serving"
    );

    assert_eq!(post(&server, &id, "second").status, 202);
    assert_eq!(
        wait_turn_ends(store.as_ref(), &id, 2),
        ["error", "completed"]
    );
    let conversation = assert_nothing_lost(store.as_ref(), &id, &["first", "second"]);
    assert_eq!(assistant_texts(&conversation), ["Recovered."]);
}

#[test]
fn a_model_call_that_stalls_times_out_with_an_error_and_the_next_message_works() {
    let started = Instant::now();
    model_fault_ends_the_turn_and_the_next_message_works(
        vec![Reply::stall()],
        &[("MODEL_READ_TIMEOUT", "1")],
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "bounded by MODEL_READ_TIMEOUT"
    );
}

#[test]
fn a_stream_reset_mid_message_ends_the_turn_with_an_error_and_the_next_message_works() {
    let reset = Reply::text("This answer is cut off half way").with_reset_after(4);
    model_fault_ends_the_turn_and_the_next_message_works(vec![reset], &[]);
}

#[test]
fn a_200_with_a_body_that_is_not_sse_ends_the_turn_with_an_error() {
    let html = Reply::raw(
        200,
        "text/html",
        "<html><body>502 from a proxy</body></html>",
    );
    model_fault_ends_the_turn_and_the_next_message_works(vec![html], &[]);
}

#[test]
fn malformed_json_in_an_sse_event_ends_the_turn_with_an_error() {
    let body = "event: message_start\ndata: {\"type\": \"message_start\", \"message\": {\n\n\
                event: content_block_delta\ndata: not json at all\n\n";
    let garbage = Reply::raw(200, "text/event-stream", body);
    model_fault_ends_the_turn_and_the_next_message_works(vec![garbage], &[]);
}

#[test]
fn a_storm_of_5xx_fails_the_turn_after_the_retries_and_a_shorter_one_is_ridden_out() {
    let fake = FakeAnthropic::start();
    let overloaded =
        || Reply::error(529, "overloaded_error", "Overloaded").with_header("retry-after-ms", "20");
    let failing = || {
        Reply::error(500, "api_error", "Internal server error").with_header("retry-after-ms", "20")
    };
    // Seven failures in a row, then an answer.
    for _ in 0..3 {
        fake.push(overloaded()).push(failing());
    }
    fake.push(overloaded());
    fake.push(Reply::text("Made it through the storm."));
    let url = fake.url();
    let server = spawn_server(&[("ANTHROPIC_BASE_URL", &url), ("MODEL_MAX_RETRIES", "3")]);
    let store = server.app.store.clone();
    let id = server.create_session();

    // One call makes 1 + 3 attempts: four failures fail the turn…
    assert_eq!(post(&server, &id, "during the storm").status, 202);
    assert_eq!(wait_turn_ends(store.as_ref(), &id, 1), ["error"]);
    assert_eq!(fake.requests().len(), 4);
    assert_eq!(server.get("/health").status, 200);
    // …the next turn meets the storm's last three failures, then succeeds on its last try.
    assert_eq!(post(&server, &id, "after the storm").status, 202);
    assert_eq!(
        wait_turn_ends(store.as_ref(), &id, 2),
        ["error", "completed"]
    );
    assert_eq!(fake.requests().len(), 8);
    let conversation = assert_nothing_lost(
        store.as_ref(),
        &id,
        &["during the storm", "after the storm"],
    );
    assert_eq!(
        assistant_texts(&conversation),
        ["Made it through the storm."]
    );
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

// ---------------------------------------------------------------------------------------------
// A tool misbehaves.

/// Whether a process whose command line contains `needle` is alive.
fn process_alive(needle: &str) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.filter_map(|e| e.ok()).any(|entry| {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        String::from_utf8_lossy(&cmdline)
            .replace('\0', " ")
            .contains(needle)
    })
}

#[test]
fn a_bash_command_that_hangs_is_cut_at_bash_timeout_and_the_turn_completes() {
    // A unique duration finds this test's sleep among the machine's processes.
    let nap = format!("1000.{}", std::process::id());
    let fake = FakeAnthropic::start();
    fake.push(Reply::tool_use(
        "toolu_hang",
        "bash",
        json!({"command": format!("sleep {nap}")}),
    ));
    fake.push(Reply::text("The command hung; I stopped it."));
    let url = fake.url();
    let server = spawn_server(&[("ANTHROPIC_BASE_URL", &url), ("BASH_TIMEOUT", "1")]);
    let store = server.app.store.clone();
    let id = server.create_session();

    let started = Instant::now();
    assert_eq!(post(&server, &id, "hang").status, 202);
    assert_eq!(wait_turn_ends(store.as_ref(), &id, 1), ["completed"]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let conversation = assert_nothing_lost(store.as_ref(), &id, &["hang"]);
    let result = &conversation[2].content[0];
    assert_eq!(result["is_error"], true, "{result}");
    assert!(result.to_string().contains("timed out"), "{result}");
    drop(server);
    wait_until("the hung command to be killed", || {
        !process_alive(&format!("sleep {nap}"))
    });
}

#[test]
fn a_bash_command_that_floods_output_is_truncated_with_the_note_in_bounded_memory() {
    let dir = temp_dir("flood");
    let fake = FakeAnthropic::start();
    let flood = json!({"command": "yes | head -c 50000000"});
    fake.push(Reply::tool_use("toolu_flood", "bash", flood));
    fake.push(Reply::text("That was a lot of output."));
    let url = fake.url();
    let db = format!("sqlite://{}/flood.db", dir.display());
    let server = ServerProcess::start(&dir, &[("ANTHROPIC_BASE_URL", &url), ("DATABASE_URL", &db)]);
    let id = server.create_session();

    server.post_message(&id, "flood");
    let store = open_store(&db);
    assert_eq!(wait_turn_ends(store.as_ref(), &id, 1), ["completed"]);
    let peak_mib = server.peak_rss_kib() / 1024;
    let conversation = assert_nothing_lost(store.as_ref(), &id, &["flood"]);
    let output = conversation[2].content[0]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(output.len() < 20_000, "{} bytes kept", output.len());
    assert!(output.contains("<response clipped>"), "the truncation note");
    // 50 MB went through the shell; the server holds a bounded window of it.
    assert!(peak_mib < 100, "peak RSS {peak_mib} MiB");
    eprintln!(
        "flood: peak RSS {peak_mib} MiB, {} bytes kept",
        output.len()
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// A worker thread panics.

#[test]
fn a_worker_that_panics_reports_an_error_answers_the_next_message_and_spares_other_sessions() {
    let fake = FakeAnthropic::start();
    fake.push(Reply::text("B finished undisturbed.").with_delay(Duration::from_secs(2)));
    fake.push(Reply::text("A works again."));
    let url = fake.url();
    let server = spawn_server(&[("ANTHROPIC_BASE_URL", &url)]);
    let store = server.app.store.clone();
    let (a, b) = (server.create_session(), server.create_session());

    assert_eq!(post(&server, &b, "slow work").status, 202);
    assert!(
        fake.wait_for_requests(1, PATIENCE),
        "B's turn is in its model call"
    );
    assert_eq!(post(&server, &a, PANIC_MESSAGE).status, 202);
    assert_eq!(wait_turn_ends(store.as_ref(), &a, 1), ["error"]);
    let errors = error_events(store.as_ref(), &a);
    assert!(
        errors[0]["error"].as_str().unwrap().contains("panicked"),
        "{errors:?}"
    );
    assert!(server.app.sessions.is_running(&b), "B's turn still runs");

    assert_eq!(post(&server, &a, "are you there?").status, 202);
    assert_eq!(
        wait_turn_ends(store.as_ref(), &a, 2),
        ["error", "completed"]
    );
    assert_eq!(wait_turn_ends(store.as_ref(), &b, 1), ["completed"]);
    let conversation = assert_nothing_lost(store.as_ref(), &a, &[PANIC_MESSAGE, "are you there?"]);
    assert_eq!(assistant_texts(&conversation), ["A works again."]);
    let conversation = assert_nothing_lost(store.as_ref(), &b, &["slow work"]);
    assert_eq!(assistant_texts(&conversation), ["B finished undisturbed."]);
}

// ---------------------------------------------------------------------------------------------
// The process is killed (kill -9) or stopped (SIGTERM).

fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cus-faults-{what}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A binary's environment: the fake API and a SQLite file in `dir`.
fn binary_env(
    fake: &FakeAnthropic,
    dir: &Path,
    extra: &[(&'static str, &'static str)],
) -> Vec<(String, String)> {
    let mut env = vec![
        ("ANTHROPIC_BASE_URL".to_string(), fake.url()),
        ("DATABASE_URL".to_string(), sqlite_url(dir)),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}/server.db", dir.display())
}

fn start(dir: &Path, env: &[(String, String)]) -> ServerProcess {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    ServerProcess::start(dir, &env)
}

#[test]
fn kill_9_during_a_model_call_then_a_restart_answers_every_message_once_in_order() {
    let dir = temp_dir("kill-model");
    let fake = FakeAnthropic::start();
    fake.push(Reply::text("never delivered").with_delay(Duration::from_secs(30)));
    let env = binary_env(&fake, &dir, &[]);
    let server = start(&dir, &env);
    let id = server.create_session();
    server.post_message(&id, "one");
    assert!(
        fake.wait_for_requests(1, PATIENCE),
        "the model call started"
    );
    server.post_message(&id, "two");
    server.post_message(&id, "three");
    server.kill9();

    fake.push(Reply::text("Answer one."))
        .push(Reply::text("Answer two."))
        .push(Reply::text("Answer three."));
    let server = start(&dir, &env);
    let store = open_store(&sqlite_url(&dir));
    wait_all_answered(store.as_ref(), &id, 3);
    let conversation = assert_nothing_lost(store.as_ref(), &id, &["one", "two", "three"]);
    assert_eq!(
        assistant_texts(&conversation),
        ["Answer one.", "Answer two.", "Answer three."]
    );
    let roles: Vec<&str> = conversation.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(
        roles,
        [
            "user",
            "assistant",
            "user",
            "assistant",
            "user",
            "assistant"
        ]
    );
    assert_eq!(fake.requests().len(), 4);
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn kill_9_during_a_bash_tool_then_a_restart_heals_the_tool_call_and_answers_the_queue() {
    let dir = temp_dir("kill-tool");
    let pidfile = dir.join("shell.pid");
    let command = format!("echo $$ > {}; sleep 30", pidfile.display());
    let fake = FakeAnthropic::start();
    fake.push(Reply::tool_use(
        "toolu_slow",
        "bash",
        json!({"command": command}),
    ));
    let env = binary_env(&fake, &dir, &[]);
    let server = start(&dir, &env);
    let id = server.create_session();
    server.post_message(&id, "run it");
    wait_until("the tool's shell to start", || {
        std::fs::read_to_string(&pidfile).is_ok_and(|t| t.ends_with('\n'))
    });
    server.post_message(&id, "and then this");
    server.kill9();
    // The orphaned shell is ours to clean up (its process group: bash and the sleep).
    let shell: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = Command::new("kill")
        .args(["-9", "--", &format!("-{shell}")])
        .status();

    fake.push(Reply::text("The command was interrupted."))
        .push(Reply::text("Done with the second."));
    let server = start(&dir, &env);
    let store = open_store(&sqlite_url(&dir));
    wait_all_answered(store.as_ref(), &id, 2);
    let conversation = assert_nothing_lost(store.as_ref(), &id, &["run it", "and then this"]);
    let healed = &conversation[2].content[0];
    assert_eq!(healed["tool_use_id"], "toolu_slow");
    assert_eq!(healed["is_error"], true);
    assert_eq!(
        assistant_texts(&conversation),
        ["The command was interrupted.", "Done with the second."]
    );
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

fn socket_addr(server: &ServerProcess) -> SocketAddr {
    server.addr.parse().unwrap()
}

#[test]
fn sigterm_lets_a_turn_finish_within_the_grace_then_closes_streams_and_exits_0() {
    let dir = temp_dir("term-grace");
    let fake = FakeAnthropic::start();
    fake.push(Reply::text("Finished before the exit.").with_delay(Duration::from_millis(1500)));
    let env = binary_env(&fake, &dir, &[("SHUTDOWN_GRACE", "10")]);
    let mut server = start(&dir, &env);
    let id = server.create_session();
    let mut sse = SseClient::connect(
        socket_addr(&server),
        &format!("/api/sessions/{id}/stream"),
        None,
        &[],
    );
    let mut ws = WsClient::connect(socket_addr(&server), &format!("/ws/{id}"), &[]).unwrap();
    server.post_message(&id, "finish this");
    assert!(
        fake.wait_for_requests(1, PATIENCE),
        "the model call started"
    );

    let started = Instant::now();
    server.signal(libc::SIGTERM);
    // During the grace the server still answers, but takes no new work.
    let (status, body) = server.call(
        "POST",
        &format!("/api/sessions/{id}/messages"),
        Some(&json!({"content": "too late"})),
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("shutting_down")),
        "{body}"
    );
    let exit = server
        .wait_exit(Duration::from_secs(12))
        .expect("exited within the grace");
    assert!(exit.success(), "{exit:?}\n{}", server.log_text());
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );

    // The SSE client saw the turn complete, then the closing comment.
    let mut completed = false;
    let mut closed = false;
    while let Some(item) = sse.next(Duration::from_secs(5)) {
        match item {
            support::SseItem::Event { data, .. } => completed |= data["status"] == "completed",
            support::SseItem::Comment(c) => closed |= c.contains("server shutting down"),
            support::SseItem::End => break,
        }
    }
    assert!(
        completed && closed,
        "completed {completed}, closed {closed}"
    );
    let close = loop {
        match ws.next(Duration::from_secs(5)) {
            Some(WsItem::Json(_)) => continue,
            other => break other,
        }
    };
    assert!(
        matches!(close, Some(WsItem::Close(Some((1001, _))))),
        "{close:?}"
    );

    let store = open_store(&sqlite_url(&dir));
    assert_eq!(turn_ends(store.as_ref(), &id), ["completed"]);
    assert_eq!(store.get_session(&id).unwrap().unwrap().status, "idle");
    let conversation = assert_nothing_lost(store.as_ref(), &id, &["finish this"]);
    assert_eq!(
        assistant_texts(&conversation),
        ["Finished before the exit."]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigterm_cancels_a_turn_longer_than_the_grace_exits_0_and_the_restart_completes_it() {
    let dir = temp_dir("term-late");
    let fake = FakeAnthropic::start();
    fake.push(Reply::text("never delivered").with_delay(Duration::from_secs(30)));
    let env = binary_env(&fake, &dir, &[("SHUTDOWN_GRACE", "1")]);
    let mut server = start(&dir, &env);
    let id = server.create_session();
    server.post_message(&id, "slow one");
    assert!(
        fake.wait_for_requests(1, PATIENCE),
        "the model call started"
    );
    server.post_message(&id, "queued one");

    let started = Instant::now();
    server.signal(libc::SIGTERM);
    let exit = server.wait_exit(Duration::from_secs(10)).expect("exited");
    let took = started.elapsed();
    assert!(exit.success(), "{exit:?}\n{}", server.log_text());
    assert!(
        took < Duration::from_secs(4),
        "grace 1 s, exit after {took:?}"
    );
    eprintln!("SIGTERM with SHUTDOWN_GRACE=1 during a 30 s model call: exit after {took:?}");
    {
        let store = open_store(&sqlite_url(&dir));
        let session = store.get_session(&id).unwrap().unwrap();
        assert_eq!(session.status, "running", "left to resume");
        assert_eq!(
            store.queued_count(&id).unwrap(),
            1,
            "the queued message stays queued"
        );
    }

    fake.push(Reply::text("Slow one done."))
        .push(Reply::text("Queued one done."));
    let server = start(&dir, &env);
    let store = open_store(&sqlite_url(&dir));
    wait_all_answered(store.as_ref(), &id, 2);
    let conversation = assert_nothing_lost(store.as_ref(), &id, &["slow one", "queued one"]);
    assert_eq!(
        assistant_texts(&conversation),
        ["Slow one done.", "Queued one done."]
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// The database fails.

/// Posts until accepted (bounded); returns how many 503s came first.
fn post_until_accepted(server: &TestServer, session: &str, text: &str) -> usize {
    let mut refused = 0;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let resp = post(server, session, text);
        if resp.status == 202 {
            return refused;
        }
        assert_eq!(resp.status, 503, "{}", resp.body);
        refused += 1;
        assert!(Instant::now() < deadline, "still refused: {}", resp.body);
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn postgres_restarted_mid_turn_gives_quick_503s_then_recovers_without_losing_anything() {
    let cluster = PgCluster::start();
    let fake = FakeAnthropic::start();
    fake.push(Reply::text("Answered before the outage."));
    fake.push(Reply::text("Answered across the outage.").with_delay(Duration::from_secs(2)));
    for _ in 0..3 {
        fake.push(Reply::text("Answered after the outage."));
    }
    let (url, db) = (fake.url(), cluster.url());
    let server = spawn_server(&[("ANTHROPIC_BASE_URL", &url), ("DATABASE_URL", &db)]);
    let store: Arc<dyn Store> = server.app.store.clone();
    let id = server.create_session();
    assert_eq!(post(&server, &id, "before").status, 202);
    assert_eq!(wait_turn_ends(store.as_ref(), &id, 1), ["completed"]);

    assert_eq!(post(&server, &id, "during").status, 202);
    assert!(
        fake.wait_for_requests(2, PATIENCE),
        "the second turn is in its model call"
    );
    cluster.stop();
    let mut latencies = Vec::new();
    for n in 0..3 {
        let started = Instant::now();
        let resp = post(&server, &id, &format!("refused {n}"));
        latencies.push(started.elapsed());
        assert_eq!(resp.status, 503, "{}", resp.body);
        assert_eq!(resp.json()["error"], "store_unavailable");
    }
    let started = Instant::now();
    assert_eq!(server.get(&format!("/api/sessions/{id}")).status, 503);
    latencies.push(started.elapsed());
    // The outage outlasts the model call in flight: its answer arrives while the database is
    // down, so the worker's writes fail and it must catch up once the database is back.
    std::thread::sleep(Duration::from_secs(3));
    let started = Instant::now();
    assert_eq!(post(&server, &id, "refused late").status, 503);
    latencies.push(started.elapsed());
    eprintln!("PostgreSQL down: 503 after {latencies:?}");
    // The pool waits at most its 5 s timeout for a connection.
    assert!(
        latencies.iter().all(|l| *l < Duration::from_secs(7)),
        "{latencies:?}"
    );
    cluster.start_again();

    let refused = post_until_accepted(&server, &id, "after");
    eprintln!("PostgreSQL back: {refused} request(s) refused before the first success");
    // Dead pooled connections are retried on a fresh one: once the server is back, nothing
    // is refused.
    assert_eq!(refused, 0, "requests refused after PostgreSQL was back");
    wait_all_answered(store.as_ref(), &id, 3);
    let conversation = assert_nothing_lost(store.as_ref(), &id, &["before", "during", "after"]);
    assert!(
        assistant_texts(&conversation).len() >= 2,
        "{conversation:?}"
    );
    assert_eq!(server.get("/health").status, 200);
}

/// A tmpfs of `size` mounted for one test (unmounted and removed on drop).
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = temp_dir("tmpfs");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "mount a tmpfs (the disk-full test needs root)"
        );
        Tmpfs { dir }
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.dir)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn sqlite_disk_full_gives_a_clear_503_and_the_server_works_once_space_is_back() {
    let disk = Tmpfs::mount("1m");
    let fake = FakeAnthropic::start();
    for _ in 0..20 {
        fake.push(Reply::text("Noted."));
    }
    let db = format!("sqlite://{}/full.db", disk.dir.display());
    let url = fake.url();
    let server = spawn_server(&[("ANTHROPIC_BASE_URL", &url), ("DATABASE_URL", &db)]);
    let store = server.app.store.clone();
    let id = server.create_session();
    let big = "x".repeat(100_000);
    let mut accepted = Vec::new();
    let refusal = loop {
        let text = format!("{} {big}", accepted.len());
        let started = Instant::now();
        let resp = post(&server, &id, &text);
        if resp.status != 202 {
            break (resp, started.elapsed());
        }
        accepted.push(text);
        assert!(accepted.len() < 20, "the disk never filled");
    };
    let (resp, took) = refusal;
    eprintln!(
        "disk full after {} messages: {} {} in {took:?}",
        accepted.len(),
        resp.status,
        resp.body
    );
    assert_eq!(resp.status, 503, "{}", resp.body);
    assert!(resp.json()["detail"].is_string());
    assert!(took < Duration::from_secs(7), "{took:?}");
    assert!(
        server.get(&format!("/api/sessions/{id}")).status < 600,
        "still serving"
    );

    disk.resize("64m");
    let after = "after space is back".to_string();
    post_until_accepted(&server, &id, &after);
    accepted.push(after);
    wait_all_answered(store.as_ref(), &id, accepted.len());
    let texts: Vec<&str> = accepted.iter().map(String::as_str).collect();
    assert_nothing_lost(store.as_ref(), &id, &texts);
}

/// `chattr +i` (root cannot write an immutable file either) on the database and its WAL.
fn set_immutable(paths: &[PathBuf], on: bool) {
    for path in paths.iter().filter(|p| p.exists()) {
        let flag = if on { "+i" } else { "-i" };
        let status = Command::new("chattr").arg(flag).arg(path).status().unwrap();
        assert!(
            status.success(),
            "chattr {flag} {} (needs ext4 or similar)",
            path.display()
        );
    }
}

#[test]
fn a_read_only_sqlite_database_gives_a_clear_503_and_writes_resume_when_writable() {
    let dir = temp_dir("readonly");
    let fake = FakeAnthropic::start();
    fake.push(Reply::text("First answer."))
        .push(Reply::text("Second answer."));
    let file = dir.join("ro.db");
    let db = format!("sqlite://{}", file.display());
    let url = fake.url();
    let server = spawn_server(&[("ANTHROPIC_BASE_URL", &url), ("DATABASE_URL", &db)]);
    let store = server.app.store.clone();
    let id = server.create_session();
    assert_eq!(post(&server, &id, "first").status, 202);
    assert_eq!(wait_turn_ends(store.as_ref(), &id, 1), ["completed"]);

    let files = vec![file.clone(), dir.join("ro.db-wal")];
    set_immutable(&files, true);
    let started = Instant::now();
    let resp = post(&server, &id, "refused");
    let took = started.elapsed();
    set_immutable(&files, false);
    eprintln!(
        "read-only database: {} {} in {took:?}",
        resp.status, resp.body
    );
    assert_eq!(resp.status, 503, "{}", resp.body);
    assert!(took < Duration::from_secs(7), "{took:?}");

    post_until_accepted(&server, &id, "second");
    wait_all_answered(store.as_ref(), &id, 2);
    let conversation = assert_nothing_lost(store.as_ref(), &id, &["first", "second"]);
    assert_eq!(
        assistant_texts(&conversation),
        ["First answer.", "Second answer."]
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
