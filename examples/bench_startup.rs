//! Start-up time: from spawning the release binary to its first 200 from `/health`, with an
//! empty SQLite database and with one holding 10 000 idle sessions (two messages each).
//! Reference, measured in
//! the same run: spawning `/bin/true` and the same polling loop against a port nobody opened
//! (what process creation and our measuring cost by themselves).
//!
//!   cargo run --release --example bench_startup -- [--smoke] [--runs N] [--sessions N]

mod bench_support;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use bench_support::{Server, header, row, summary, verdict};

struct Options {
    runs: usize,
    sessions: usize,
}

fn main() {
    let options = match parse_args() {
        Ok(options) => options,
        Err(why) => {
            eprintln!(
                "bench_startup: {why}\nusage: bench_startup [--smoke] [--runs N] [--sessions N]"
            );
            std::process::exit(2);
        }
    };
    if let Err(why) = run(&options) {
        eprintln!("bench_startup: {why}");
        std::process::exit(1);
    }
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        runs: 10,
        sessions: 10_000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--smoke" {
            options.runs = 1;
            options.sessions = 1000;
            continue;
        }
        let value = args.next().ok_or(format!("{arg} needs a value"))?;
        let n: usize = value.parse().map_err(|_| format!("{arg} {value}"))?;
        match arg.as_str() {
            "--runs" if n > 0 => options.runs = n,
            "--sessions" => options.sessions = n,
            _ => return Err(format!("unknown or bad argument {arg} {value}")),
        }
    }
    Ok(options)
}

fn run(options: &Options) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("bench-startup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let result = measure(options, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn measure(options: &Options, dir: &Path) -> Result<(), String> {
    let empty = dir.join("empty.db");
    let full = dir.join("full.db");
    seed(&full, options.sessions)?;

    let mut spawn_ms = Vec::new();
    let mut empty_ms = Vec::new();
    let mut full_ms = Vec::new();
    let mut full_rss = Vec::new();
    for _ in 0..options.runs {
        spawn_ms.push(spawn_reference()?);
        // A new empty database each run: creating and migrating it is part of a first start.
        let _ = std::fs::remove_file(&empty);
        empty_ms.push(start_once(&empty, None)?);
        let mut rss = 0;
        full_ms.push(start_once(&full, Some(&mut rss))?);
        full_rss.push(rss as f64 / 1024.0);
    }
    println!("### Start-up (process start → first 200 from /health)\n");
    println!(
        "{}",
        header(&["database", "ms, median (min–max)", "vs reference", "target"])
    );
    println!(
        "{}",
        row(&[
            "reference: spawn `/bin/true` + one refused poll",
            &summary(&spawn_ms),
            "1×",
            "",
        ])
    );
    let empty_median = bench_support::median(&empty_ms);
    println!(
        "{}",
        row(&[
            "empty SQLite (created and migrated)",
            &summary(&empty_ms),
            &bench_support::times(&empty_ms, &spawn_ms),
            &format!("< 100 ms: {}", verdict(empty_median < 100.0)),
        ])
    );
    println!(
        "{}",
        row(&[
            &format!("SQLite with {} sessions", options.sessions),
            &summary(&full_ms),
            &bench_support::times(&full_ms, &spawn_ms),
            &format!("RSS after start {} MB", summary(&full_rss)),
        ])
    );
    println!();
    Ok(())
}

/// Spawns `/bin/true`, waits for it and makes one connection attempt to a closed port: what
/// starting any process and our polling cost, in ms.
fn spawn_reference() -> Result<f64, String> {
    let port = bench_support::free_port();
    let started = Instant::now();
    Command::new("/bin/true")
        .status()
        .map_err(|e| format!("/bin/true: {e}"))?;
    let _ = std::net::TcpStream::connect(("127.0.0.1", port));
    Ok(started.elapsed().as_secs_f64() * 1000.0)
}

/// Starts the server on `db`, returns ms to the first healthy answer (and its RSS then).
fn start_once(db: &Path, rss_kib: Option<&mut u64>) -> Result<f64, String> {
    let url = format!("sqlite://{}", db.display());
    let server = Server::start(&[("DATABASE_URL", &url), ("RUST_LOG", "warn")])?;
    let ms = server.started_in.as_secs_f64() * 1000.0;
    if let Some(rss) = rss_kib {
        *rss = server.rss_kib();
    }
    server.stop();
    Ok(ms)
}

/// Creates `db` through a first start of the server (so the schema is the server's own), then
/// fills it with `sessions` sessions in one transaction.
fn seed(db: &Path, sessions: usize) -> Result<(), String> {
    let _ = std::fs::remove_file(db);
    start_once(db, None)?;
    let mut conn = rusqlite::Connection::open(db).map_err(|e| e.to_string())?;
    let tx = conn.transaction().map_err(|e| e.to_string())?;
    {
        let mut session = tx
            .prepare(
                "INSERT INTO sessions (id, ord, title, model, provider, tool_version, \
                 last_message_seq, last_message_arrival, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, 'claude-sonnet-4-5-20250929', 'anthropic', \
                 'computer_use_20250124', 2, 2, ?4, ?4)",
            )
            .map_err(|e| e.to_string())?;
        let mut message = tx
            .prepare(
                "INSERT INTO messages (id, session_id, seq, arrival, role, content, created_at) \
                 VALUES (?1, ?2, ?3, ?3, ?4, ?5, ?6)",
            )
            .map_err(|e| e.to_string())?;
        for n in 0..sessions {
            let id = uuid::Uuid::new_v4().to_string();
            let now = format!("2026-11-25T00:{:02}:{:02}.000Z", n / 60 % 60, n % 60);
            session
                .execute(rusqlite::params![
                    id,
                    n as i64 + 1,
                    format!("session {n}"),
                    now
                ])
                .map_err(|e| e.to_string())?;
            for (seq, role, text) in [
                (1, "user", "hello"),
                (2, "assistant", "Hi! How can I help?"),
            ] {
                let content = serde_json::json!([{"type": "text", "text": text}]);
                message
                    .execute(rusqlite::params![
                        uuid::Uuid::new_v4().to_string(),
                        id,
                        seq,
                        role,
                        content.to_string(),
                        now
                    ])
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    tx.commit().map_err(|e| e.to_string())
}
