//! REST throughput and latency: `GET /api/sessions/{id}`, `GET /api/sessions/{id}/messages`
//! (a session of 100 messages) and `POST /api/sessions`, at 1, 16, 64 and 256 keep-alive
//! connections, on SQLite and on PostgreSQL, driven by `wrk` on loopback.
//!
//! Reference, measured in the same run and interleaved with the server's cells (each round
//! measures every cell once, references first, so slow phases of a noisy machine hit both): a
//! bare tiny_http server with the server's pool size (`HTTP_THREADS`, 8 threads calling
//! `recv`) answering fixed JSON bodies: the very bytes the server answered for the session
//! object and for the messages page (captured from the SQLite server after seeding), each on
//! a path of its own. Each GET route is compared with the reference serving a body of the
//! same size, so the ratio is what routing, auth, the store and serialisation cost on top of
//! the HTTP layer moving the same bytes. It is this binary again, started with a hidden flag
//! as a process of its own.
//!
//!   cargo build --release --example bench_rest && target/release/examples/bench_rest
//!   target/release/examples/bench_rest --smoke          (one short round of a few cells)
//!   target/release/examples/bench_rest --runs 5 --seconds 3
//!
//! PostgreSQL: a throwaway database `bench_rest_<pid>` created from the database `test` on
//! `BENCH_PG` (default `postgres://postgres@127.0.0.1:5432`), dropped afterwards; without a
//! reachable server the PostgreSQL rows are left out with a note.

mod bench_support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bench_support::{Server, header, median, ratio_percent, record_pids, row, summary, verdict};
use serde_json::{Value, json};

/// The hidden flag that makes this binary the bare reference server.
const BARE_FLAG: &str = "--bare-tiny-http";
/// The server's default `HTTP_THREADS`; the reference uses the same.
const POOL: usize = 8;
/// Messages in the seeded session (the `GET …/messages` default page is 100).
const MESSAGES: usize = 100;
const DEFAULT_PG: &str = "postgres://postgres@127.0.0.1:5432";
/// The targets of issue 6.
const TARGET_RATIO: f64 = 50.0;
const TARGET_P99_MS: f64 = 5.0;
const TARGET_P99_AT: usize = 64;

struct Options {
    runs: usize,
    seconds: u32,
    connections: Vec<usize>,
    postgres: bool,
    routes: Vec<Route>,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Route {
    Session,
    Messages,
    Create,
}

impl Route {
    const ALL: [Route; 3] = [Route::Session, Route::Messages, Route::Create];

    fn label(self) -> &'static str {
        match self {
            Route::Session => "`GET /api/sessions/{id}`",
            Route::Messages => "`GET /api/sessions/{id}/messages` (100)",
            Route::Create => "`POST /api/sessions`",
        }
    }

    fn is_get(self) -> bool {
        self != Route::Create
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Target {
    Bare,
    Sqlite,
    Postgres,
}

impl Target {
    fn label(self) -> &'static str {
        match self {
            Target::Bare => "bare tiny_http",
            Target::Sqlite => "SQLite",
            Target::Postgres => "PostgreSQL",
        }
    }
}

/// One wrk run.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Socket errors (connect, read, write, timeout) wrk counted.
    errors: u64,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(BARE_FLAG) {
        let port = args.get(1).and_then(|p| p.parse().ok()).unwrap_or(0);
        let body = |i: usize| {
            let path = args.get(i).map(PathBuf::from).unwrap_or_default();
            std::fs::read(&path).unwrap_or_else(|err| {
                eprintln!("bench_rest: bare server body {}: {err}", path.display());
                std::process::exit(1)
            })
        };
        bare_server(port, body(2), body(3));
        return;
    }
    let options = parse_args(&args).unwrap_or_else(|why| {
        eprintln!("bench_rest: {why}");
        eprintln!("usage: bench_rest [--smoke] [--runs N] [--seconds S] [--no-postgres]");
        std::process::exit(2)
    });
    if let Err(why) = run(&options) {
        eprintln!("bench_rest: {why}");
        std::process::exit(1);
    }
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        runs: 3,
        seconds: 2,
        connections: vec![1, 16, 64, 256],
        postgres: true,
        routes: Route::ALL.to_vec(),
    };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--smoke" => {
                options.runs = 1;
                options.seconds = 1;
                options.connections = vec![16];
                options.postgres = false;
                options.routes = vec![Route::Session, Route::Create];
            }
            "--no-postgres" => options.postgres = false,
            "--runs" | "--seconds" => {
                let value = args.next().ok_or(format!("{flag} wants a value"))?;
                let n: u32 = value
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or(format!("bad value for {flag}: {value}"))?;
                if flag == "--runs" {
                    options.runs = n as usize;
                } else {
                    options.seconds = n;
                }
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(options)
}

// ---------------------------------------------------------------- the reference server

/// The bare reference's path for the large body (any other path gets the small one).
const BARE_LARGE_PATH: &str = "/api/sessions/bench/messages";
const BARE_SMALL_PATH: &str = "/api/sessions/bench";

/// The bare reference: `POOL` threads calling tiny_http's `recv`, each answering a fixed body:
/// `large` on [`BARE_LARGE_PATH`], `small` on any other path. Like the server, it sends a
/// body whole with its length (no chunking of bodies of 32 KiB or more). Runs until killed.
fn bare_server(port: u16, small: Vec<u8>, large: Vec<u8>) {
    let server = match nodelay_listener(port)
        .and_then(|listener| tiny_http::Server::from_listener(listener, None))
    {
        Ok(server) => Arc::new(server),
        Err(err) => {
            eprintln!("bench_rest: bare server on port {port}: {err}");
            std::process::exit(1);
        }
    };
    let bodies = Arc::new((small, large));
    let content_type =
        tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..])
            .expect("a valid header");
    let threads: Vec<_> = (0..POOL)
        .map(|_| {
            let (server, bodies, content_type) =
                (server.clone(), bodies.clone(), content_type.clone());
            std::thread::spawn(move || {
                while let Ok(request) = server.recv() {
                    let body = match request.url() == BARE_LARGE_PATH {
                        true => &bodies.1,
                        false => &bodies.0,
                    };
                    let response = tiny_http::Response::from_data(body.to_vec())
                        .with_header(content_type.clone())
                        .with_chunked_threshold(usize::MAX);
                    let _ = request.respond(response);
                }
            })
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
}

/// A listener whose accepted connections have `TCP_NODELAY` (Linux copies it from the
/// listening socket), like the server's: tiny_http writes a response of more than its 1 KiB
/// buffer in two parts, and with Nagle's algorithm the second would wait for the client's
/// delayed ACK of the first (40 ms).
fn nodelay_listener(
    port: u16,
) -> Result<std::net::TcpListener, Box<dyn std::error::Error + Send + Sync>> {
    use std::os::fd::AsRawFd;
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
    let one: libc::c_int = 1;
    // SAFETY: a valid socket descriptor and a pointer to a c_int of the size given.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(listener)
}

/// The reference server as a child process; killed on drop.
struct Bare {
    child: Child,
    addr: String,
}

impl Bare {
    /// Serves the bytes of the file `small` and of the file `large`.
    fn start(small: &Path, large: &Path) -> Result<Bare, String> {
        let port = bench_support::free_port();
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let child = Command::new(exe)
            .arg(BARE_FLAG)
            .arg(port.to_string())
            .arg(small)
            .arg(large)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("the bare server: {e}"))?;
        record_pids([child.id()]);
        let mut bare = Bare {
            child,
            addr: format!("127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(&bare.addr).is_err() {
            if Instant::now() > deadline || matches!(bare.child.try_wait(), Ok(Some(_))) {
                return Err("the bare server did not start".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(bare)
    }
}

impl Drop for Bare {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- PostgreSQL

/// A throwaway database, dropped (connections and all) on drop.
struct PgDatabase {
    base: String,
    name: String,
}

impl PgDatabase {
    fn create(base: &str) -> Result<PgDatabase, String> {
        let name = format!("bench_rest_{}", std::process::id());
        let mut admin = pg_connect(&format!("{base}/test"))?;
        // One statement per call: CREATE DATABASE cannot run in the implicit transaction of
        // a multi-statement query.
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            admin
                .batch_execute(&sql)
                .map_err(|e| format!("{sql}: {}", pg_error(&e)))?;
        }
        Ok(PgDatabase {
            base: base.to_string(),
            name,
        })
    }

    fn url(&self) -> String {
        format!("{}/{}", self.base, self.name)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let dropped = pg_connect(&format!("{}/test", self.base)).and_then(|mut admin| {
            admin
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ))
                .map_err(|e| pg_error(&e))
        });
        if let Err(why) = dropped {
            eprintln!("bench_rest: could not drop database {}: {why}", self.name);
        }
    }
}

fn pg_connect(url: &str) -> Result<postgres::Client, String> {
    postgres::Client::connect(url, postgres::NoTls).map_err(|e| format!("{url}: {}", pg_error(&e)))
}

/// The server's own message when there is one (the error's `Display` is just "db error").
fn pg_error(err: &postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{err}: {}", db.message()),
        None => err.to_string(),
    }
}

// ---------------------------------------------------------------- seeding

/// `MESSAGES` messages of a plausible conversation, alternating user and assistant.
fn seed_messages() -> Vec<(i64, &'static str, Value)> {
    (1..=MESSAGES as i64)
        .map(|seq| {
            let role = if seq % 2 == 1 { "user" } else { "assistant" };
            let text = format!(
                "Message {seq}: open the browser, search for the weather in Paris and \
                 summarise the forecast for the next three days in a short table."
            );
            (seq, role, json!([{"type": "text", "text": text}]))
        })
        .collect()
}

fn seed_sqlite(db: &Path, session_id: &str) -> Result<(), String> {
    let mut conn = rusqlite::Connection::open(db).map_err(|e| e.to_string())?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    let tx = conn.transaction().map_err(|e| e.to_string())?;
    {
        let mut insert = tx
            .prepare(
                "INSERT INTO messages (id, session_id, seq, arrival, role, content, created_at) \
                 VALUES (?1, ?2, ?3, ?3, ?4, ?5, '2026-11-25T00:00:00.000Z')",
            )
            .map_err(|e| e.to_string())?;
        for (seq, role, content) in seed_messages() {
            let id = uuid::Uuid::new_v4().to_string();
            insert
                .execute(rusqlite::params![
                    id,
                    session_id,
                    seq,
                    role,
                    content.to_string()
                ])
                .map_err(|e| e.to_string())?;
        }
        tx.execute(
            "UPDATE sessions SET last_message_seq = ?2, last_message_arrival = ?2 WHERE id = ?1",
            rusqlite::params![session_id, MESSAGES as i64],
        )
        .map_err(|e| e.to_string())?;
    }
    tx.commit().map_err(|e| e.to_string())
}

fn seed_postgres(url: &str, session_id: &str) -> Result<(), String> {
    let mut client = pg_connect(url)?;
    let mut tx = client.transaction().map_err(|e| pg_error(&e))?;
    let insert = tx
        .prepare(
            "INSERT INTO messages (id, session_id, seq, arrival, role, content, created_at) \
             VALUES ($1, $2, $3, $3, $4, $5, '2026-11-25T00:00:00.000Z')",
        )
        .map_err(|e| pg_error(&e))?;
    for (seq, role, content) in seed_messages() {
        let id = uuid::Uuid::new_v4().to_string();
        tx.execute(&insert, &[&id, &session_id, &seq, &role, &content])
            .map_err(|e| pg_error(&e))?;
    }
    tx.execute(
        "UPDATE sessions SET last_message_seq = $2, last_message_arrival = $2 WHERE id = $1",
        &[&session_id, &(MESSAGES as i64)],
    )
    .map_err(|e| pg_error(&e))?;
    tx.commit().map_err(|e| pg_error(&e))
}

/// The server under test on one backend, with a seeded session.
struct Subject {
    server: Server,
    session_id: String,
    /// The bodies the server answered: the session object and the messages page.
    session_body: Vec<u8>,
    messages_body: Vec<u8>,
}

/// A GET's status and raw body bytes.
fn get_bytes(agent: &ureq::Agent, url: &str) -> Result<(u16, Vec<u8>), String> {
    let request = ureq::http::Request::builder()
        .method("GET")
        .uri(url)
        .body(())
        .map_err(|e| format!("GET {url}: {e}"))?;
    let mut response = agent.run(request).map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .map_err(|e| format!("GET {url}: {e}"))?;
    Ok((status, body))
}

/// Starts the server on `database_url` (rate limits off), creates a session through the API
/// and gives it `MESSAGES` messages with `seed`; checks both GET routes answer as expected.
fn start_subject(
    database_url: &str,
    seed: impl FnOnce(&str) -> Result<(), String>,
) -> Result<Subject, String> {
    let threads = POOL.to_string();
    let server = Server::start(&[
        ("DATABASE_URL", database_url),
        ("HTTP_THREADS", &threads),
        ("RATE_LIMIT_SESSIONS", "0"),
        ("RATE_LIMIT_MESSAGES", "0"),
        ("RUST_LOG", "warn"),
    ])?;
    let agent = bench_support::agent();
    let body = json!({"title": "bench"});
    let (status, session) =
        bench_support::call(&agent, "POST", &server.url("/api/sessions"), Some(&body))?;
    let session_id = session["id"].as_str().unwrap_or_default().to_string();
    if status != 201 || session_id.is_empty() {
        return Err(format!("creating the session: {status} {session}"));
    }
    seed(&session_id)?;
    let url = server.url(&format!("/api/sessions/{session_id}/messages"));
    let messages_body = match get_bytes(&agent, &url)? {
        (200, body) => body,
        (status, body) => {
            let text = String::from_utf8_lossy(&body);
            return Err(format!("GET messages after seeding: {status} {text:.200}"));
        }
    };
    match serde_json::from_slice::<Value>(&messages_body) {
        Ok(Value::Array(list)) if list.len() == MESSAGES => {}
        _ => {
            return Err(format!(
                "GET messages after seeding: not {MESSAGES} messages"
            ));
        }
    }
    let url = server.url(&format!("/api/sessions/{session_id}"));
    let session_body = match get_bytes(&agent, &url)? {
        (200, body) => body,
        (status, _) => return Err(format!("GET the session after seeding: {status}")),
    };
    eprintln!(
        "bench_rest: {database_url}: the session object is {} bytes, the messages page {} \
         bytes of JSON",
        session_body.len(),
        messages_body.len()
    );
    Ok(Subject {
        server,
        session_id,
        session_body,
        messages_body,
    })
}

// ---------------------------------------------------------------- wrk

/// The Lua script that makes wrk POST a JSON body.
fn post_script(dir: &Path) -> Result<PathBuf, String> {
    let path = dir.join("post.lua");
    let script = "wrk.method = \"POST\"\n\
                  wrk.body = '{\"title\": \"bench\"}'\n\
                  wrk.headers[\"Content-Type\"] = \"application/json\"\n";
    std::fs::write(&path, script).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// One wrk run of `seconds` against `url`; fails on any non-2xx answer.
fn wrk(
    url: &str,
    connections: usize,
    seconds: u32,
    script: Option<&Path>,
) -> Result<Sample, String> {
    let mut cmd = Command::new("wrk");
    cmd.arg(format!("-t{}", connections.min(2)))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{seconds}s"))
        .arg("--latency");
    if let Some(script) = script {
        cmd.arg("-s").arg(script);
    }
    let child = cmd
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("wrk: {e} (apt install wrk)"))?;
    record_pids([child.id()]);
    let output = child.wait_with_output().map_err(|e| format!("wrk: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let err = String::from_utf8_lossy(&output.stderr);
        return Err(format!("wrk failed ({}): {err}{text}", output.status));
    }
    parse_wrk(&text).ok_or_else(|| format!("unexpected wrk output for {url}:\n{text}"))
}

fn parse_wrk(text: &str) -> Option<Sample> {
    let mut sample = Sample::default();
    let (mut rps, mut p50, mut p99) = (None, None, None);
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("Requests/sec:") {
            rps = rest.trim().parse().ok();
        } else if let Some(rest) = line.strip_prefix("50%") {
            p50 = duration_ms(rest.trim());
        } else if let Some(rest) = line.strip_prefix("99%") {
            p99 = duration_ms(rest.trim());
        } else if line.starts_with("Non-2xx") {
            // A benchmark of error answers would measure the wrong thing.
            return None;
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            sample.errors = rest
                .split(',')
                .filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum();
        }
    }
    sample.rps = rps?;
    sample.p50_ms = p50?;
    sample.p99_ms = p99?;
    Some(sample)
}

/// wrk's "123.45us" / "1.23ms" / "1.02s" / "1.5m" in ms.
fn duration_ms(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let scale = match unit {
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => return None,
    };
    Some(value * scale)
}

// ---------------------------------------------------------------- the run

type Cell = (Target, Route, usize);

/// A scratch directory (the SQLite file, the Lua script), removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(options: &Options) -> Result<(), String> {
    let scratch = Scratch(std::env::temp_dir().join(format!("bench-rest-{}", std::process::id())));
    let dir = scratch.0.as_path();
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let script = post_script(dir)?;
    let mut notes = Vec::new();
    // Declared before the servers so that it drops after them.
    let pg_database = if options.postgres {
        let base = std::env::var("BENCH_PG").unwrap_or_else(|_| DEFAULT_PG.to_string());
        match PgDatabase::create(&base) {
            Ok(db) => Some(db),
            Err(why) => {
                notes.push(format!("PostgreSQL rows left out: {why}"));
                None
            }
        }
    } else {
        None
    };
    let db = dir.join("bench.db");
    let sqlite_url = format!("sqlite://{}", db.display());
    let mut subjects = vec![(
        Target::Sqlite,
        start_subject(&sqlite_url, |id| seed_sqlite(&db, id))?,
    )];
    if let Some(pg) = &pg_database {
        let url = pg.url();
        let subject = start_subject(&url, |id| seed_postgres(&url, id))?;
        subjects.push((Target::Postgres, subject));
    }
    // The reference serves the SQLite server's own answers, byte for byte.
    let (small, large) = (dir.join("session.json"), dir.join("messages.json"));
    let sizes = Sizes {
        small: subjects[0].1.session_body.len(),
        large: subjects[0].1.messages_body.len(),
    };
    for (path, body) in [
        (&small, &subjects[0].1.session_body),
        (&large, &subjects[0].1.messages_body),
    ] {
        std::fs::write(path, body).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let bare = Bare::start(&small, &large)?;

    notes.push(format!(
        "The SQLite file lives in {} (the temp directory; set TMPDIR to move it): a write \
         commits to its WAL there, and checkpoints sync it.",
        dir.display()
    ));
    let started = Instant::now();
    let mut results: HashMap<Cell, Vec<Sample>> = HashMap::new();
    for round in 0..options.runs {
        eprintln!("bench_rest: round {} of {}", round + 1, options.runs);
        for &connections in &options.connections {
            // The small body always (POST is shown against it too), the large one if a route
            // is compared with it.
            let mut references = vec![(Route::Session, BARE_SMALL_PATH)];
            if options.routes.contains(&Route::Messages) {
                references.push((Route::Messages, BARE_LARGE_PATH));
            }
            for (route, path) in references {
                let url = format!("http://{}{path}", bare.addr);
                let sample = wrk(&url, connections, options.seconds, None)?;
                let cell = (Target::Bare, route, connections);
                results.entry(cell).or_default().push(sample);
            }
            for (target, subject) in &subjects {
                for &route in &options.routes {
                    let id = &subject.session_id;
                    let (path, lua) = match route {
                        Route::Session => (format!("/api/sessions/{id}"), None),
                        Route::Messages => (format!("/api/sessions/{id}/messages"), None),
                        Route::Create => ("/api/sessions".to_string(), Some(script.as_path())),
                    };
                    let url = subject.server.url(&path);
                    let sample = wrk(&url, connections, options.seconds, lua)
                        .map_err(|e| format!("{} on {}: {e}", route.label(), target.label()))?;
                    results
                        .entry((*target, route, connections))
                        .or_default()
                        .push(sample);
                }
            }
        }
    }
    let took = started.elapsed();
    for (_, subject) in subjects {
        subject.server.stop();
    }
    drop(bare);
    drop(pg_database);
    print_report(options, &results, &notes, took, sizes);
    Ok(())
}

/// The sizes of the reference's two bodies.
#[derive(Clone, Copy)]
struct Sizes {
    small: usize,
    large: usize,
}

impl Route {
    /// The reference cell this route is compared with: the bare server answering a body of
    /// the same size (POST, which has no ratio target, is shown against the small one).
    fn reference(self) -> Route {
        match self {
            Route::Messages => Route::Messages,
            Route::Session | Route::Create => Route::Session,
        }
    }
}

fn print_report(
    options: &Options,
    results: &HashMap<Cell, Vec<Sample>>,
    notes: &[String],
    took: Duration,
    sizes: Sizes,
) {
    println!("### REST throughput and latency\n");
    println!(
        "{} on loopback, wrk -t2 (-t1 at one connection), keep-alive; {} run(s) of {} s per \
         cell, rounds interleaved (each round measures the reference first), figures are the \
         median (min–max) over the runs; measuring took {:.0} s. \
         The server: release binary, HTTP_THREADS={POOL}, RUST_LOG=warn (no log line per \
         request), RATE_LIMIT_SESSIONS=0 and RATE_LIMIT_MESSAGES=0 (rate limits off, so POST \
         is not answered 429), DESKTOP_MODE=none. Reference: a bare tiny_http server (a \
         process of its own, {POOL} threads calling `recv`, bodies sent whole with their \
         length like the server's) answering fixed JSON bodies, the server's own answers \
         byte for byte: the {}-byte session object, and the {}-byte messages page (a session \
         of {MESSAGES} text messages). Each GET route is compared with the reference serving \
         the body of the same size; POST with the small one. \
         Targets: ≥ {TARGET_RATIO:.0} % of the reference's req/s on the GET routes; p99 < \
         {TARGET_P99_MS:.0} ms at {TARGET_P99_AT} connections (every route).\n",
        bench_support::machine(),
        options.runs,
        options.seconds,
        took.as_secs_f64(),
        sizes.small,
        sizes.large,
    );
    println!(
        "{}",
        header(&[
            "route",
            "backend",
            "connections",
            "req/s",
            "vs bare tiny_http (same body size)",
            "p50 ms",
            "p99 ms",
            "target"
        ])
    );
    let column =
        |samples: &[Sample], f: fn(&Sample) -> f64| -> Vec<f64> { samples.iter().map(f).collect() };
    let mut errors = 0;
    for (route, size) in [
        (Route::Session, sizes.small),
        (Route::Messages, sizes.large),
    ] {
        let label = match route {
            Route::Messages => format!("reference: fixed {size}-byte JSON body (messages page)"),
            _ => format!("reference: fixed {size}-byte JSON body (session object)"),
        };
        for &connections in &options.connections {
            let Some(reference) = results.get(&(Target::Bare, route, connections)) else {
                continue;
            };
            let reference_rps = column(reference, |s| s.rps);
            errors += reference.iter().map(|s| s.errors).sum::<u64>();
            println!(
                "{}",
                row(&[
                    &label,
                    Target::Bare.label(),
                    &connections.to_string(),
                    &summary(&reference_rps),
                    "100 %",
                    &summary(&column(reference, |s| s.p50_ms)),
                    &summary(&column(reference, |s| s.p99_ms)),
                    "",
                ])
            );
        }
    }
    for route in &options.routes {
        for target in [Target::Sqlite, Target::Postgres] {
            for &connections in &options.connections {
                let Some(samples) = results.get(&(target, *route, connections)) else {
                    continue;
                };
                errors += samples.iter().map(|s| s.errors).sum::<u64>();
                let reference = results
                    .get(&(Target::Bare, route.reference(), connections))
                    .map(|r| column(r, |s| s.rps))
                    .unwrap_or_default();
                let rps = column(samples, |s| s.rps);
                let p99 = column(samples, |s| s.p99_ms);
                let mut checks = Vec::new();
                if route.is_get() {
                    let ratio = 100.0 * median(&rps) / median(&reference).max(f64::MIN_POSITIVE);
                    checks.push(format!(
                        "≥ {TARGET_RATIO:.0} %: {}",
                        verdict(ratio >= TARGET_RATIO)
                    ));
                }
                if connections == TARGET_P99_AT {
                    checks.push(format!(
                        "p99 < {TARGET_P99_MS:.0} ms: {}",
                        verdict(median(&p99) < TARGET_P99_MS)
                    ));
                }
                println!(
                    "{}",
                    row(&[
                        route.label(),
                        target.label(),
                        &connections.to_string(),
                        &summary(&rps),
                        &ratio_percent(&rps, &reference),
                        &summary(&column(samples, |s| s.p50_ms)),
                        &summary(&p99),
                        &checks.join("; "),
                    ])
                );
            }
        }
    }
    println!();
    if errors > 0 {
        println!(
            "wrk counted {errors} socket errors (connect/read/write/timeout) over all runs.\n"
        );
    }
    for note in notes {
        println!("{note}\n");
    }
}
