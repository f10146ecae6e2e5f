//! Agent turn overhead: the server's own time per step (a model call answered with a tool_use,
//! the tool run, the next model call) against a fake Messages API in this process that
//! answers at once in the real streaming wire format. Per step, the fake notes when it
//! finished writing reply k and when request k+1 had fully arrived; the gap minus the tool's
//! own run time (the server's `tool_duration_seconds` histogram, read from `/metrics` around
//! each scenario) is the server's overhead. The tool is the text editor's `view` of a
//! ten-line file.
//!
//! Scenarios: one session with 10, 100 and 500 messages of history (seeded into SQLite), then
//! 1, 10, 100 and 200 sessions (100 messages each) running a turn at once. References,
//! measured in the same run: the per-step overhead at 10 messages and one session (the ratios),
//! and a bare HTTP round trip to the fake on a fresh connection (what any model call costs).
//!
//!   cargo build --release && cargo build --release --example bench_turns
//!   target/release/examples/bench_turns [--smoke] [--runs N]

mod bench_support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use bench_support::{Server, header, median, p50_p99, row, summary, verdict};

/// The editor tool of the seeded sessions' tool version.
const EDIT_TOOL: &str = "str_replace_editor";
const TOOL_VERSION: &str = "computer_use_20250124";
/// The posted message that starts a measured turn: `bench-turn <session id> <steps>`.
const TURN_PREFIX: &str = "bench-turn ";
/// Longest wait for one scenario's turns to finish.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(60);

struct Options {
    smoke: bool,
    runs: usize,
    /// History lengths of the single-session rows.
    histories: Vec<usize>,
    /// Sequential turns per single-session row and run.
    turns: usize,
    /// Tool steps per turn in the single-session rows.
    steps: usize,
    /// Sessions at once in the concurrency rows (100-message history).
    concurrency: Vec<usize>,
    /// Tool steps per turn in the concurrency rows.
    concurrent_steps: usize,
    concurrent_history: usize,
}

fn main() {
    let result = parse_args()
        .map_err(|why| (2, format!("{why}\nusage: bench_turns [--smoke] [--runs N]")))
        .and_then(|options| {
            let dir = ScratchDir::create().map_err(|why| (1, why))?;
            measure(&options, &dir.0).map_err(|why| (1, why))
        });
    if let Err((code, why)) = result {
        eprintln!("bench_turns: {why}");
        std::process::exit(code);
    }
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        smoke: false,
        runs: 5,
        histories: vec![10, 100, 500],
        turns: 4,
        steps: 10,
        concurrency: vec![1, 10, 100, 200],
        concurrent_steps: 5,
        concurrent_history: 100,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--smoke" => options.smoke = true,
            "--runs" => {
                let value = args.next().ok_or("--runs needs a value")?;
                options.runs = value
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or(format!("--runs {value}"))?;
            }
            _ => return Err(format!("unknown argument {arg}")),
        }
    }
    if options.smoke {
        options.runs = 1;
        options.histories = vec![10, 100];
        options.turns = 1;
        options.steps = 3;
        options.concurrency = vec![1, 10];
        options.concurrent_steps = 2;
    }
    Ok(options)
}

/// A scratch directory (the database, the file the tool views), removed on drop.
struct ScratchDir(std::path::PathBuf);

impl ScratchDir {
    fn create() -> Result<ScratchDir, String> {
        let path = std::env::temp_dir().join(format!("bench-turns-{}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(ScratchDir(path))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------- the measurement

/// One scenario's figures in one run.
#[derive(Default, Clone)]
struct Figures {
    /// Server overhead per step, ms.
    p50: f64,
    p99: f64,
    /// Model calls per second, first post to last reply.
    calls_per_s: f64,
    /// Server CPU per model call, ms.
    cpu_ms: f64,
    /// Mean tool run time, ms (subtracted from the gaps).
    tool_ms: f64,
}

/// Every run's figures per scenario name, in first-seen order.
#[derive(Default)]
struct Results {
    order: Vec<String>,
    runs: HashMap<String, Vec<Figures>>,
}

impl Results {
    fn add(&mut self, name: &str, figures: Figures) {
        if !self.runs.contains_key(name) {
            self.order.push(name.to_string());
        }
        self.runs.entry(name.to_string()).or_default().push(figures);
    }

    fn get(&self, name: &str, field: fn(&Figures) -> f64) -> Vec<f64> {
        self.runs
            .get(name)
            .map(|runs| runs.iter().map(field).collect())
            .unwrap_or_default()
    }
}

fn history_name(messages: usize) -> String {
    format!("{messages} messages, 1 session")
}

fn concurrency_name(sessions: usize, messages: usize) -> String {
    let plural = if sessions == 1 { "" } else { "s" };
    format!("{sessions} session{plural} at once, {messages} messages")
}

fn measure(options: &Options, dir: &Path) -> Result<(), String> {
    let file = dir.join("notes.txt");
    let lines: String = (1..=10)
        .map(|n| format!("line {n}: the quick brown fox\n"))
        .collect();
    std::fs::write(&file, lines).map_err(|e| e.to_string())?;
    let fake = Fake::start(file.display().to_string())?;
    let db = dir.join("turns.db");
    let plan = Plan::new(options);
    eprintln!("bench_turns: seeding {} sessions", plan.session_count());
    seed(&db, &plan)?;

    let mut results = Results::default();
    let mut bare_ms = Vec::new();
    for run in 0..options.runs {
        eprintln!("bench_turns: run {} of {}", run + 1, options.runs);
        bare_ms.push(bare_round_trip(
            &fake.addr,
            if options.smoke { 20 } else { 200 },
        )?);
        let server = start_server(&db, &fake.addr)?;
        if std::env::var_os("BENCH_DEBUG").is_some() {
            eprintln!("server pid {}", server.pid());
        }
        run_scenario(&server, &fake, &plan.warmup[run..=run], options.steps)?;
        for (messages, sessions) in &plan.histories[run] {
            let mut all = Measured::default();
            for session in sessions {
                all.merge(run_scenario(
                    &server,
                    &fake,
                    std::slice::from_ref(session),
                    options.steps,
                )?);
            }
            results.add(&history_name(*messages), all.figures());
        }
        for (count, sessions) in &plan.concurrent[run] {
            let measured = run_scenario(&server, &fake, sessions, options.concurrent_steps)?;
            let name = concurrency_name(*count, options.concurrent_history);
            results.add(&name, measured.figures());
        }
        server.stop();
    }
    let errors = fake.shared.errors.lock().unwrap().clone();
    if !errors.is_empty() {
        return Err(format!("the fake saw bad requests: {}", errors.join("; ")));
    }
    print_report(options, &results, &bare_ms);
    Ok(())
}

fn start_server(db: &Path, fake: &str) -> Result<Server, String> {
    let url = format!("sqlite://{}", db.display());
    let base = format!("http://{fake}");
    Server::start(&[
        ("DATABASE_URL", &url),
        ("ANTHROPIC_BASE_URL", &base),
        ("RUST_LOG", "warn"),
        ("MAX_ACTIVE_SESSIONS", "2000"),
        ("RATE_LIMIT_MESSAGES", "0"),
        ("RATE_LIMIT_SESSIONS", "0"),
        ("MODEL_MAX_RETRIES", "0"),
    ])
}

/// Which seeded sessions each run uses: [run] → (history or concurrency, session ids).
struct Plan {
    /// One 10-message session per run whose turn warms the server up, not measured.
    warmup: Vec<String>,
    histories: Vec<Vec<(usize, Vec<String>)>>,
    concurrent: Vec<Vec<(usize, Vec<String>)>>,
    history_of: HashMap<String, usize>,
}

impl Plan {
    fn new(options: &Options) -> Plan {
        let mut history_of = HashMap::new();
        let mut ids = |count: usize, messages: usize| -> Vec<String> {
            (0..count)
                .map(|_| {
                    let id = uuid::Uuid::new_v4().to_string();
                    history_of.insert(id.clone(), messages);
                    id
                })
                .collect()
        };
        let mut histories = Vec::new();
        let mut concurrent = Vec::new();
        let mut warmup = Vec::new();
        for _ in 0..options.runs {
            warmup.extend(ids(1, 10));
            histories.push(
                options
                    .histories
                    .iter()
                    .map(|&m| (m, ids(options.turns, m)))
                    .collect(),
            );
            concurrent.push(
                options
                    .concurrency
                    .iter()
                    .map(|&c| (c, ids(c, options.concurrent_history)))
                    .collect(),
            );
        }
        Plan {
            warmup,
            histories,
            concurrent,
            history_of,
        }
    }

    fn session_count(&self) -> usize {
        self.history_of.len()
    }
}

/// The raw gaps and counters of one or more scenario passes.
#[derive(Default)]
struct Measured {
    /// Per step: end of reply k → arrival of request k+1, ms.
    gaps_ms: Vec<f64>,
    tool_ms_total: f64,
    tool_runs: f64,
    calls: usize,
    wall_s: f64,
    cpu_s: f64,
}

impl Measured {
    fn merge(&mut self, other: Measured) {
        self.gaps_ms.extend(other.gaps_ms);
        self.tool_ms_total += other.tool_ms_total;
        self.tool_runs += other.tool_runs;
        self.calls += other.calls;
        self.wall_s += other.wall_s;
        self.cpu_s += other.cpu_s;
    }

    fn figures(mut self) -> Figures {
        let tool_ms = if self.tool_runs > 0.0 {
            self.tool_ms_total / self.tool_runs
        } else {
            0.0
        };
        let mut overhead: Vec<f64> = self.gaps_ms.iter().map(|g| g - tool_ms).collect();
        let (p50, p99) = p50_p99(&mut overhead);
        self.gaps_ms.clear();
        Figures {
            p50,
            p99,
            calls_per_s: self.calls as f64 / self.wall_s.max(1e-9),
            cpu_ms: 1000.0 * self.cpu_s / self.calls.max(1) as f64,
            tool_ms,
        }
    }
}

/// Posts one turn to each of `sessions` at once and waits for all of them to finish.
fn run_scenario(
    server: &Server,
    fake: &Fake,
    sessions: &[String],
    steps: usize,
) -> Result<Measured, String> {
    let agent = bench_support::agent();
    let tools_before = tool_metrics(&agent, server)?;
    let cpu_before = bench_support::run_time_seconds(server.pid());
    let started = Instant::now();
    let posters = sessions.len().clamp(1, 8);
    std::thread::scope(|scope| -> Result<(), String> {
        let handles: Vec<_> = (0..posters)
            .map(|p| {
                let agent = agent.clone();
                scope.spawn(move || -> Result<(), String> {
                    for id in sessions.iter().skip(p).step_by(posters) {
                        let body = json!({"content": format!("{TURN_PREFIX}{id} {steps}")});
                        let url = server.url(&format!("/api/sessions/{id}/messages"));
                        match bench_support::call(&agent, "POST", &url, Some(&body))? {
                            (202, _) => {}
                            (status, body) => return Err(format!("POST {url}: {status} {body}")),
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().map_err(|_| "a poster panicked".to_string())?)
    })?;
    let tracks = fake.wait_for(sessions, started + SCENARIO_TIMEOUT);
    let wall_s = started.elapsed().as_secs_f64();
    let Some(tracks) = tracks else {
        return Err(stuck_report(&agent, server, fake, sessions));
    };
    wait_idle(&agent, server, sessions)?;
    let cpu_s = bench_support::run_time_seconds(server.pid()) - cpu_before;
    let tools_after = tool_metrics(&agent, server)?;
    let mut measured = Measured {
        tool_ms_total: 1000.0 * (tools_after.0 - tools_before.0),
        tool_runs: tools_after.1 - tools_before.1,
        wall_s,
        cpu_s,
        ..Measured::default()
    };
    for track in tracks {
        measured.calls += track.arrivals.len();
        for k in 1..track.arrivals.len() {
            let gap = track.arrivals[k].duration_since(track.ends[k - 1]);
            measured.gaps_ms.push(gap.as_secs_f64() * 1000.0);
        }
    }
    if std::env::var_os("BENCH_DEBUG").is_some() {
        eprintln!("gaps {:?}", measured.gaps_ms);
    }
    Ok(measured)
}

/// (sum of seconds, count) of the editor tool's duration histogram.
fn tool_metrics(agent: &ureq::Agent, server: &Server) -> Result<(f64, f64), String> {
    let mut response = agent
        .get(server.url("/metrics"))
        .call()
        .map_err(|e| format!("GET /metrics: {e}"))?;
    let text = response
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    let value = |name: &str| -> f64 {
        let prefix = format!("computer_use_tool_duration_seconds_{name}{{tool=\"{EDIT_TOOL}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    Ok((value("sum"), value("count")))
}

/// Waits until the server reports every session idle (the turn's last writes are done).
fn wait_idle(agent: &ureq::Agent, server: &Server, sessions: &[String]) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    for id in sessions {
        loop {
            let url = server.url(&format!("/api/sessions/{id}"));
            if let (200, body) = bench_support::call(agent, "GET", &url, None)?
                && body["status"] == "idle"
            {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("session {id} did not become idle"));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    Ok(())
}

/// Why a scenario did not finish: the last events of a session whose turn the fake never ended.
fn stuck_report(agent: &ureq::Agent, server: &Server, fake: &Fake, sessions: &[String]) -> String {
    let tracks = fake.shared.tracks.lock().unwrap();
    let stuck = sessions
        .iter()
        .find(|id| tracks.get(*id).is_none_or(|t| !t.done));
    let Some(id) = stuck else {
        return "the scenario timed out".into();
    };
    let url = server.url(&format!("/api/sessions/{id}/events"));
    let events = bench_support::call(agent, "GET", &url, None)
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    let tail: String = events
        .chars()
        .rev()
        .take(600)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("session {id} did not finish its turn in time; its events end: {tail}")
}

/// Median ms of a small POST to the fake on a fresh connection (as the server makes its calls).
fn bare_round_trip(fake: &str, count: usize) -> Result<f64, String> {
    let body = vec![b'x'; 1024];
    let url = format!("http://{fake}/bare");
    let mut times = Vec::with_capacity(count);
    for _ in 0..count {
        let t0 = Instant::now();
        let agent = bench_support::agent();
        let started = Instant::now();
        if std::env::var_os("BENCH_DEBUG").is_some() {
            eprintln!("agent {:?}", started - t0);
        }
        let mut response = agent
            .post(&url)
            .send(&body[..])
            .map_err(|e| format!("POST {url}: {e}"))?;
        let _ = response.body_mut().read_to_vec();
        if std::env::var_os("BENCH_DEBUG").is_some() {
            eprintln!("req {:?}", started.elapsed());
        }
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(median(&times))
}

// ---------------------------------------------------------------- the report

fn print_report(options: &Options, results: &Results, bare_ms: &[f64]) {
    let reference = history_name(options.histories[0]);
    let reference_p50 = results.get(&reference, |f| f.p50);
    println!(
        "### Agent turn overhead (server time per model call + tool round trip, tool run time excluded)\n"
    );
    println!(
        "Fake Messages API in the bench process, answering at once (streamed, real wire format); \
         tool: `{EDIT_TOOL}` `view` of a 10-line file. {} runs, median (min–max) of each run's \
         figure; {} steps per turn alone, {} per turn at once. Server env: `MAX_ACTIVE_SESSIONS=2000 \
         RATE_LIMIT_MESSAGES=0 RATE_LIMIT_SESSIONS=0 MODEL_MAX_RETRIES=0 RUST_LOG=warn`. {}.\n",
        options.runs,
        options.steps,
        options.concurrent_steps,
        bench_support::machine(),
    );
    println!(
        "{}",
        header(&[
            "scenario",
            "overhead per step p50, ms",
            "p99, ms",
            "p50 vs reference",
            "server CPU per call, ms",
            "model calls/s",
            "target",
        ])
    );
    println!(
        "{}",
        row(&[
            "reference: bare HTTP round trip to the fake (fresh connection, 1 KiB)",
            &summary(bare_ms),
            "",
            "",
            "",
            "",
            "",
        ])
    );
    let single_cpu = results.get(&concurrency_name(1, options.concurrent_history), |f| {
        f.cpu_ms
    });
    let ten = concurrency_name(10, options.concurrent_history);
    for name in &results.order {
        let p50 = results.get(name, |f| f.p50);
        let target = if *name == reference {
            "reference (1×)".to_string()
        } else if *name == history_name(100) {
            format!("< 2 ms: {}", verdict(median(&p50) < 2.0))
        } else if name.starts_with("100 sessions") || name.starts_with("200 sessions") {
            // Ratios within each run (same load on a shared machine), then their median.
            let per_run = |a: &[f64], b: &[f64]| -> f64 {
                median(&a.iter().zip(b).map(|(x, y)| x / y).collect::<Vec<_>>())
            };
            let cpu_ratio = per_run(&results.get(name, |f| f.cpu_ms), &single_cpu);
            let rate_ratio = per_run(
                &results.get(name, |f| f.calls_per_s),
                &results.get(&ten, |f| f.calls_per_s),
            );
            let linear = cpu_ratio <= 1.5 && rate_ratio >= 0.67;
            format!(
                "linear: CPU/call {cpu_ratio:.2}× of 1 session (≤ 1.5×), calls/s {rate_ratio:.2}× \
                 of 10 sessions (≥ 0.67×): {}",
                verdict(linear)
            )
        } else {
            String::new()
        };
        println!(
            "{}",
            row(&[
                name,
                &summary(&p50),
                &summary(&results.get(name, |f| f.p99)),
                &bench_support::times(&p50, &reference_p50),
                &summary(&results.get(name, |f| f.cpu_ms)),
                &summary(&results.get(name, |f| f.calls_per_s)),
                &target,
            ])
        );
    }
    let tool = results
        .order
        .iter()
        .flat_map(|n| results.get(n, |f| f.tool_ms))
        .collect::<Vec<_>>();
    println!(
        "\nOverhead = end of reply k → request k+1 fully received, minus the mean tool run time \
         from `/metrics` ({} ms). With several sessions at once the overhead includes waiting \
         for a core (2 cores, the fake shares them).\n",
        summary_ms(&tool)
    );
    if options.smoke {
        println!("(smoke run: figures are not meaningful)\n");
    }
}

fn summary_ms(values: &[f64]) -> String {
    bench_support::summary_digits(values, 3)
}

// ---------------------------------------------------------------- seeding

/// Creates the schema through a first start of the server, then seeds every planned session
/// with its history: realistic turns of user text, assistant text + tool_use, user
/// tool_result, ending with an assistant text (every tool_use answered).
fn seed(db: &Path, plan: &Plan) -> Result<(), String> {
    let url = format!("sqlite://{}", db.display());
    Server::start(&[("DATABASE_URL", &url), ("RUST_LOG", "warn")])?.stop();
    let mut conn = rusqlite::Connection::open(db).map_err(|e| e.to_string())?;
    let tx = conn.transaction().map_err(|e| e.to_string())?;
    let now = "2026-11-25T00:00:00.000Z";
    let insert = |sql: &str, values: &[&dyn rusqlite::ToSql]| -> Result<(), String> {
        let mut statement = tx.prepare_cached(sql).map_err(|e| e.to_string())?;
        statement
            .execute(values)
            .map(drop)
            .map_err(|e| e.to_string())
    };
    let mut ids: Vec<(&String, &usize)> = plan.history_of.iter().collect();
    ids.sort();
    for (ord, (id, &count)) in ids.into_iter().enumerate() {
        let messages = history(count);
        let (ord, count) = (ord as i64 + 1, messages.len() as i64);
        insert(
            "INSERT INTO sessions (id, ord, title, model, provider, tool_version, \
             last_message_seq, last_message_arrival, created_at, updated_at) VALUES \
             (?1, ?2, 'bench', 'claude-sonnet-4-5-20250929', 'anthropic', ?3, ?4, ?4, ?5, ?5)",
            &[id, &ord, &TOOL_VERSION, &count, &now],
        )?;
        for (seq, (role, content)) in (1i64..).zip(&messages) {
            let message_id = uuid::Uuid::new_v4().to_string();
            insert(
                "INSERT INTO messages (id, session_id, seq, arrival, role, content, created_at) \
                 VALUES (?1, ?2, ?3, ?3, ?4, ?5, ?6)",
                &[&message_id, id, &seq, role, &content.to_string(), &now],
            )?;
        }
    }
    tx.commit().map_err(|e| e.to_string())
}

/// `count` messages (at least 2): a user request, then tool steps (assistant text + tool_use,
/// user tool_result; every tenth step a new user request after an assistant answer), ending
/// with an assistant text.
fn history(count: usize) -> Vec<(&'static str, Value)> {
    let mut messages = vec![(
        "user",
        json!([{"type": "text", "text": "Please look through the project notes and summarise what changed this week."}]),
    )];
    let mut step = 0;
    while messages.len() + 2 < count.max(2) {
        step += 1;
        if step % 10 == 0 {
            messages.push((
                "assistant",
                json!([{"type": "text", "text": format!("Done with part {}: the notes describe the build, the tests and the release steps.", step / 10)}]),
            ));
            messages.push((
                "user",
                json!([{"type": "text", "text": "Thanks. Now check the next directory the same way."}]),
            ));
            continue;
        }
        let id = format!("toolu_seed_{step:04}");
        let output: String = (1..=12)
            .map(|n| format!("{n:6}\tentry {step}.{n}: a line of the file being viewed\n"))
            .collect();
        messages.push((
            "assistant",
            json!([
                {"type": "text", "text": format!("I'll look at file {step} next.")},
                {"type": "tool_use", "id": id, "name": "bash",
                 "input": {"command": format!("cat -n /srv/notes/file-{step}.txt | head -12")}}
            ]),
        ));
        messages.push((
            "user",
            json!([{"type": "tool_result", "tool_use_id": id, "is_error": false,
                    "content": [{"type": "text", "text": output}]}]),
        ));
    }
    messages.push((
        "assistant",
        json!([{"type": "text", "text": "That is everything for now."}]),
    ));
    messages
}

// ---------------------------------------------------------------- the fake Messages API

/// What the fake saw of one session's measured turn.
#[derive(Default, Clone)]
struct Track {
    /// When request k had been read completely.
    arrivals: Vec<Instant>,
    /// When reply k had been written completely.
    ends: Vec<Instant>,
    done: bool,
}

#[derive(Default)]
struct FakeShared {
    tracks: Mutex<HashMap<String, Track>>,
    finished: Condvar,
    errors: Mutex<Vec<String>>,
    file: String,
}

struct Fake {
    addr: String,
    shared: Arc<FakeShared>,
}

impl Fake {
    fn start(file: String) -> Result<Fake, String> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let addr = listener
            .local_addr()
            .map_err(|e| e.to_string())?
            .to_string();
        let shared = Arc::new(FakeShared {
            file,
            ..FakeShared::default()
        });
        let accepting = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let shared = accepting.clone();
                std::thread::spawn(move || {
                    if let Err(err) = serve(stream, &shared) {
                        shared.note_error(format!("connection: {err}"));
                    }
                });
            }
        });
        Ok(Fake { addr, shared })
    }

    /// The tracks of `sessions` once every one is done, or `None` at `deadline`.
    fn wait_for(&self, sessions: &[String], deadline: Instant) -> Option<Vec<Track>> {
        let mut tracks = self.shared.tracks.lock().unwrap();
        loop {
            if sessions
                .iter()
                .all(|id| tracks.get(id).is_some_and(|t| t.done))
            {
                return Some(sessions.iter().map(|id| tracks[id].clone()).collect());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            tracks = self.shared.finished.wait_timeout(tracks, left).unwrap().0;
        }
    }
}

impl FakeShared {
    fn note_error(&self, error: String) {
        let mut errors = self.errors.lock().unwrap();
        if errors.len() < 5 {
            errors.push(error);
        }
    }
}

/// One connection: one request, one answer, close (the server opens one per call).
fn serve(stream: TcpStream, shared: &FakeShared) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let arrived = Instant::now();
    let mut stream = stream;
    if request_line.starts_with("POST /bare ") {
        stream.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
        )?;
        return stream.shutdown(Shutdown::Write);
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    let Some((session, steps, k, answered)) = read_turn(&request) else {
        shared.note_error(format!("an unexpected request: {request_line}"));
        stream.write_all(
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        )?;
        return Ok(());
    };
    if k > 0 && answered.as_deref() != Some(tool_use_id(&session, k - 1).as_str()) {
        shared.note_error(format!(
            "session {session}: call {k} does not answer the previous tool_use"
        ));
    }
    let blocks = if k < steps {
        json!([{"type": "tool_use", "id": tool_use_id(&session, k), "name": EDIT_TOOL,
                "input": {"command": "view", "path": shared.file}}])
    } else {
        json!([{"type": "text", "text": "All done: the file has ten lines."}])
    };
    let stop_reason = if k < steps { "tool_use" } else { "end_turn" };
    let model = request["model"].as_str().unwrap_or("claude");
    stream.write_all(&stream_reply(&blocks, stop_reason, &session, k, model))?;
    stream.flush()?;
    let ended = Instant::now();
    let _ = stream.shutdown(Shutdown::Write);
    let mut tracks = shared.tracks.lock().unwrap();
    let track = tracks.entry(session).or_default();
    track.arrivals.push(arrived);
    track.ends.push(ended);
    if k >= steps {
        track.done = true;
        shared.finished.notify_all();
    }
    Ok(())
}

fn tool_use_id(session: &str, k: usize) -> String {
    format!("toolu_bench_{}_{k:03}", session.replace('-', ""))
}

/// From a request: (session id, steps, how many model calls of the turn came before, the
/// tool_use_id the last user message answers).
fn read_turn(request: &Value) -> Option<(String, usize, usize, Option<String>)> {
    let messages = request["messages"].as_array()?;
    let blocks = |m: &Value| m["content"].as_array().cloned().unwrap_or_default();
    let (start, turn) = messages.iter().enumerate().rev().find_map(|(i, m)| {
        if m["role"] != "user" {
            return None;
        }
        blocks(m).iter().find_map(|b| {
            let text = b["text"].as_str()?.strip_prefix(TURN_PREFIX)?;
            Some((i, text.to_string()))
        })
    })?;
    let (session, steps) = turn.split_once(' ')?;
    let k = messages[start..]
        .iter()
        .filter(|m| m["role"] == "assistant")
        .count();
    let answered = messages.last().and_then(|m| {
        blocks(m)
            .iter()
            .find_map(|b| b["tool_use_id"].as_str().map(String::from))
    });
    Some((session.to_string(), steps.parse().ok()?, k, answered))
}

/// The whole streamed answer: head, then one chunk per SSE event, as the API sends it.
fn stream_reply(
    blocks: &Value,
    stop_reason: &str,
    session: &str,
    k: usize,
    model: &str,
) -> Vec<u8> {
    let mut events = vec![
        json!({"type": "message_start", "message": {
            "id": format!("msg_bench_{}_{k}", &session[..8]), "type": "message",
            "role": "assistant", "model": model, "content": [], "stop_reason": null,
            "stop_sequence": null, "usage": {"input_tokens": 1200, "output_tokens": 1,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": 1100}}}),
        json!({"type": "ping"}),
    ];
    for (index, block) in blocks.as_array().into_iter().flatten().enumerate() {
        let (start, deltas) = if block["type"] == "tool_use" {
            let input = block["input"].to_string();
            let mut start = block.clone();
            start["input"] = json!({});
            let pieces: Vec<Value> = std::iter::once(String::new())
                .chain(
                    input
                        .as_bytes()
                        .chunks(16)
                        .map(|c| String::from_utf8_lossy(c).into()),
                )
                .map(|p| json!({"type": "input_json_delta", "partial_json": p}))
                .collect();
            (start, pieces)
        } else {
            let text = block["text"].as_str().unwrap_or_default();
            let pieces = text
                .split_inclusive(' ')
                .map(|t| json!({"type": "text_delta", "text": t}))
                .collect();
            (json!({"type": "text", "text": ""}), pieces)
        };
        events.push(json!({"type": "content_block_start", "index": index, "content_block": start}));
        for delta in deltas {
            events.push(json!({"type": "content_block_delta", "index": index, "delta": delta}));
        }
        events.push(json!({"type": "content_block_stop", "index": index}));
    }
    events.push(json!({"type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": null},
        "usage": {"output_tokens": 40}}));
    events.push(json!({"type": "message_stop"}));
    let mut out = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n\
         request-id: req_bench_{k}\r\ncache-control: no-cache\r\nconnection: close\r\n\
         transfer-encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for event in events {
        let frame = format!(
            "event: {}\ndata: {event}\n\n",
            event["type"].as_str().unwrap()
        );
        out.extend_from_slice(format!("{:x}\r\n", frame.len()).as_bytes());
        out.extend_from_slice(frame.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}
