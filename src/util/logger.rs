//! A minimal `log` backend: `RUST_LOG` level (error, warn, info, debug, trace; default info),
//! one line per record to stderr with a UTC timestamp.

use log::{LevelFilter, Log, Metadata, Record};

struct StderrLogger {
    level: LevelFilter,
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        // ureq's trace output is the raw wire traffic, API key header included: never show it.
        let level = if metadata.target().starts_with("ureq") {
            self.level.min(LevelFilter::Debug)
        } else {
            self.level
        };
        metadata.level() <= level
    }

    fn log(&self, record: &Record) {
        if self.enabled(record.metadata()) {
            eprintln!(
                "{} {:<5} {}: {}",
                super::time::now_rfc3339(),
                record.level(),
                record.target(),
                record.args()
            );
        }
    }

    fn flush(&self) {}
}

/// Parses a `RUST_LOG`-style level; unknown values fall back to `info`.
pub fn parse_level(value: &str) -> LevelFilter {
    // Accept `module=level,…` forms by taking the last bare level mentioned.
    let bare = value
        .split(',')
        .map(|part| part.rsplit('=').next().unwrap_or(part))
        .next_back();
    match bare.unwrap_or("").trim().to_ascii_lowercase().as_str() {
        "off" => LevelFilter::Off,
        "error" => LevelFilter::Error,
        "warn" => LevelFilter::Warn,
        "debug" => LevelFilter::Debug,
        "trace" => LevelFilter::Trace,
        _ => LevelFilter::Info,
    }
}

/// Installs the logger once; later calls are no-ops.
pub fn init(level: LevelFilter) {
    let logger = Box::new(StderrLogger { level });
    if log::set_boxed_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}
