//! Configuration: the only place that reads command-line flags and environment variables.
//!
//! Precedence: flag (`--port 9000` or `--port=9000`) over environment variable (`PORT=9000`)
//! over default. Every option is one row of [`OPTIONS`], which also renders `--help`. A bad
//! value stops start-up with an error naming the variable.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// One configurable option: its flag, environment variable, default and help line.
pub struct OptionSpec {
    pub flag: &'static str,
    pub env: &'static str,
    pub default: &'static str,
    pub help: &'static str,
}

/// Every option the server understands, in `--help` order.
pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        flag: "host",
        env: "HOST",
        default: "127.0.0.1",
        help: "address to bind",
    },
    OptionSpec {
        flag: "port",
        env: "PORT",
        default: "8000",
        help: "TCP port to bind (0 picks a free one)",
    },
    OptionSpec {
        flag: "database-url",
        env: "DATABASE_URL",
        default: "",
        help: "sqlite://PATH or postgres://…; empty: SQLite file ./data/computer-use.db",
    },
    OptionSpec {
        flag: "data-dir",
        env: "DATA_DIR",
        default: "./data",
        help: "directory for the default SQLite file",
    },
    OptionSpec {
        flag: "anthropic-api-key",
        env: "ANTHROPIC_API_KEY",
        default: "",
        help: "Messages API key (never logged)",
    },
    OptionSpec {
        flag: "anthropic-base-url",
        env: "ANTHROPIC_BASE_URL",
        default: "https://api.anthropic.com",
        help: "Messages API base URL",
    },
    OptionSpec {
        flag: "default-model",
        env: "DEFAULT_MODEL",
        default: "claude-sonnet-4-5-20250929",
        help: "model for sessions created without one",
    },
    OptionSpec {
        flag: "api-token",
        env: "API_TOKEN",
        default: "",
        help: "bearer token(s), comma-separated, required on every route but /health",
    },
    OptionSpec {
        flag: "allow-unauthenticated",
        env: "ALLOW_UNAUTHENTICATED",
        default: "false",
        help: "allow binding beyond loopback without API_TOKEN",
    },
    OptionSpec {
        flag: "cors-origins",
        env: "CORS_ORIGINS",
        default: "",
        help: "comma-separated origins allowed by CORS (empty: CORS off)",
    },
    OptionSpec {
        flag: "http-threads",
        env: "HTTP_THREADS",
        default: "8",
        help: "request pool size",
    },
    OptionSpec {
        flag: "max-body-bytes",
        env: "MAX_BODY_BYTES",
        default: "1048576",
        help: "largest accepted request body (413 beyond)",
    },
    OptionSpec {
        flag: "keepalive-timeout",
        env: "KEEPALIVE_TIMEOUT",
        default: "1",
        help: "seconds an idle keep-alive connection stays open between requests",
    },
    OptionSpec {
        flag: "body-timeout",
        env: "BODY_TIMEOUT",
        default: "30",
        help: "seconds a client may take between reads or writes of a request body",
    },
    OptionSpec {
        flag: "header-timeout",
        env: "HEADER_TIMEOUT",
        default: "10",
        help: "seconds a new connection may take to send its first request line and headers",
    },
    OptionSpec {
        flag: "max-header-bytes",
        env: "MAX_HEADER_BYTES",
        default: "16384",
        help: "largest accepted request head (request line + headers; 431 beyond)",
    },
    OptionSpec {
        flag: "max-ws-message-bytes",
        env: "MAX_WS_MESSAGE_BYTES",
        default: "1048576",
        help: "largest WebSocket message accepted from a client (close 1009 beyond)",
    },
    OptionSpec {
        flag: "max-streams",
        env: "MAX_STREAMS",
        default: "2000",
        help: "open SSE + WebSocket event streams in total (503 beyond)",
    },
    OptionSpec {
        flag: "max-streams-per-session",
        env: "MAX_STREAMS_PER_SESSION",
        default: "1000",
        help: "open SSE + WebSocket event streams per session (503 beyond)",
    },
    OptionSpec {
        flag: "max-active-sessions",
        env: "MAX_ACTIVE_SESSIONS",
        default: "256",
        help: "sessions with a live worker at once (503 on a new one's message beyond)",
    },
    OptionSpec {
        flag: "rate-limit-messages",
        env: "RATE_LIMIT_MESSAGES",
        default: "120",
        help: "message posts allowed per minute per token (or per client address without tokens); 0 disables",
    },
    OptionSpec {
        flag: "rate-limit-sessions",
        env: "RATE_LIMIT_SESSIONS",
        default: "60",
        help: "session creations allowed per minute per token (or per client address); 0 disables",
    },
    OptionSpec {
        flag: "shutdown-grace",
        env: "SHUTDOWN_GRACE",
        default: "10",
        help: "seconds running turns get to finish on SIGTERM/SIGINT before they are cancelled",
    },
    OptionSpec {
        flag: "model-connect-timeout",
        env: "MODEL_CONNECT_TIMEOUT",
        default: "10",
        help: "seconds to connect to the Messages API",
    },
    OptionSpec {
        flag: "model-read-timeout",
        env: "MODEL_READ_TIMEOUT",
        default: "120",
        help: "seconds of silence tolerated on a Messages API response",
    },
    OptionSpec {
        flag: "model-max-retries",
        env: "MODEL_MAX_RETRIES",
        default: "4",
        help: "retries of a failed Messages API call",
    },
    OptionSpec {
        flag: "max-iterations",
        env: "MAX_ITERATIONS",
        default: "100",
        help: "model calls allowed in one turn",
    },
    OptionSpec {
        flag: "bash-timeout",
        env: "BASH_TIMEOUT",
        default: "120",
        help: "seconds a bash command may run before the shell must be restarted",
    },
    OptionSpec {
        flag: "worker-idle-timeout",
        env: "WORKER_IDLE_TIMEOUT",
        default: "300",
        help: "seconds an idle session worker (and its shell) lives",
    },
    OptionSpec {
        flag: "sse-heartbeat",
        env: "SSE_HEARTBEAT",
        default: "15",
        help: "seconds between keepalives on SSE and WebSocket streams",
    },
    OptionSpec {
        flag: "subscriber-queue",
        env: "SUBSCRIBER_QUEUE",
        default: "1024",
        help: "events buffered per stream client before it is dropped",
    },
    OptionSpec {
        flag: "desktop-mode",
        env: "DESKTOP_MODE",
        default: "auto",
        help: "shared, per-session, none, or auto (shared when Xvfb is installed or the display is up)",
    },
    OptionSpec {
        flag: "display-num",
        env: "DISPLAY_NUM",
        default: "",
        help: "X display number of the shared desktop (unset: the server starts one on a free number)",
    },
    OptionSpec {
        flag: "width",
        env: "WIDTH",
        default: "1024",
        help: "desktop width in pixels",
    },
    OptionSpec {
        flag: "height",
        env: "HEIGHT",
        default: "768",
        help: "desktop height in pixels",
    },
    OptionSpec {
        flag: "vnc-host",
        env: "VNC_HOST",
        default: "127.0.0.1",
        help: "VNC server of the shared desktop",
    },
    OptionSpec {
        flag: "vnc-port",
        env: "VNC_PORT",
        default: "5900",
        help: "VNC port of the shared desktop (0: any free port for the one the server starts)",
    },
    OptionSpec {
        flag: "settle-delay",
        env: "SETTLE_DELAY",
        default: "0.5",
        help: "seconds to wait after a mouse/keyboard action before its screenshot (the reference waits 2)",
    },
    OptionSpec {
        flag: "max-desktops",
        env: "MAX_DESKTOPS",
        default: "4",
        help: "per-session desktops that may run at once (503 beyond)",
    },
    OptionSpec {
        flag: "novnc-dir",
        env: "NOVNC_DIR",
        default: "/usr/share/novnc",
        help: "noVNC client served under /novnc/ when present",
    },
];

/// Environment variables holding secrets. They are removed from the environment of every
/// process the agent runs (its bash shell above all), so a prompt-injected `env` cannot read
/// the server's API key, token or database password.
pub const SECRET_ENV: &[&str] = &["ANTHROPIC_API_KEY", "API_TOKEN", "DATABASE_URL"];

/// Where sessions are stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// An SQLite file (created with its directory on first start).
    Sqlite(PathBuf),
    /// A PostgreSQL connection string (`postgres://…`).
    Postgres(String),
}

/// How the computer tool gets a desktop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DesktopMode {
    Shared,
    PerSession,
    None,
}

/// A secret string whose `Debug`/`Display` never show the value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

/// Settings of the Messages API client.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    pub api_key: Secret,
    pub base_url: String,
    pub default_model: String,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub max_retries: u32,
    pub max_iterations: u32,
}

/// Settings of the desktop the computer tool drives.
#[derive(Clone, Debug)]
pub struct DesktopConfig {
    pub mode: DesktopMode,
    pub display_num: Option<u32>,
    pub width: u32,
    pub height: u32,
    pub vnc_host: String,
    pub vnc_port: u16,
    /// Wait after an action before its screenshot.
    pub settle_delay: Duration,
    /// Per-session desktops allowed at once.
    pub max_desktops: usize,
    /// Where the noVNC client lives (served under `/novnc/` if it exists).
    pub novnc_dir: PathBuf,
}

/// Settings of the HTTP layer.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    pub host: String,
    pub port: u16,
    pub threads: usize,
    pub max_body_bytes: usize,
    pub api_tokens: Vec<Secret>,
    pub allow_unauthenticated: bool,
    pub cors_origins: Vec<String>,
    pub heartbeat: Duration,
    pub subscriber_queue: usize,
    /// Read/write timeout on a connection that sends a body.
    pub body_timeout: Duration,
    /// How long an idle keep-alive connection is kept.
    pub keepalive_timeout: Duration,
    /// How long a new connection may take to send its request head.
    pub header_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_ws_message_bytes: usize,
    /// Open event streams (SSE + WebSocket) allowed in total and per session.
    pub max_streams: usize,
    pub max_streams_per_session: usize,
    /// Requests allowed per minute per token (or client address); 0 disables.
    pub rate_limit_messages: u32,
    pub rate_limit_sessions: u32,
}

/// Settings of session workers and their tools.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    pub bash_timeout: Duration,
    pub idle_timeout: Duration,
    /// Sessions with a live worker at once.
    pub max_active: usize,
    /// Time running turns get to finish at shutdown before they are cancelled.
    pub shutdown_grace: Duration,
}

/// The whole configuration, loaded once at start-up and passed down.
#[derive(Clone, Debug)]
pub struct Config {
    pub database: DatabaseUrl,
    pub http: HttpConfig,
    pub model: ModelConfig,
    pub desktop: DesktopConfig,
    pub session: SessionConfig,
}

/// A configuration problem, naming the variable at fault.
#[derive(Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// `--help` was asked for; the text to print.
    Help(String),
    /// A flag that is not in [`OPTIONS`].
    UnknownFlag(String),
    /// A flag given without a value.
    MissingValue(String),
    /// A value that does not parse: (environment variable, value, what was expected).
    Invalid {
        var: &'static str,
        value: String,
        expected: &'static str,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Help(text) => f.write_str(text),
            ConfigError::UnknownFlag(flag) => write!(f, "unknown flag {flag} (see --help)"),
            ConfigError::MissingValue(flag) => write!(f, "flag --{flag} needs a value"),
            ConfigError::Invalid {
                var,
                value,
                expected,
            } => {
                write!(f, "{var}={value:?} is invalid: expected {expected}")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Loads from the process's arguments and environment.
    pub fn load() -> Result<Config, ConfigError> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        Config::from_sources(&args, |name| std::env::var(name).ok())
    }

    /// Loads from explicit arguments and an environment lookup (testable).
    pub fn from_sources(
        args: &[String],
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let flags = parse_flags(args)?;
        let raw = |spec: &OptionSpec| -> String {
            flags
                .get(spec.flag)
                .cloned()
                .or_else(|| env(spec.env))
                .unwrap_or_else(|| spec.default.to_string())
        };
        let mut values: HashMap<&'static str, String> =
            OPTIONS.iter().map(|spec| (spec.env, raw(spec))).collect();
        // Read for DESKTOP_MODE=auto (is Xvfb installed?), not an option of ours.
        values.insert("PATH", env("PATH").unwrap_or_default());
        Values(values).into_config()
    }

    /// The `--help` text.
    pub fn help() -> String {
        let mut out = String::from(
            "computer-use-server: a self-hosted backend for Claude computer-use agents\n\n\
             usage: computer-use-server [--flag value]...\n\n\
             Flags override environment variables, which override defaults.\n\n",
        );
        for spec in OPTIONS {
            let default = if spec.default.is_empty() {
                "(unset)"
            } else {
                spec.default
            };
            out.push_str(&format!(
                "  --{:<24} env {:<22} default {}\n  {:26}{}\n",
                spec.flag, spec.env, default, "", spec.help
            ));
        }
        out.push_str("  --help                     print this help\n");
        out
    }

    /// Refuses to serve beyond loopback without a token unless explicitly allowed: the bash
    /// tool makes this server remote code execution by design.
    pub fn check_exposure(&self) -> Result<(), String> {
        if self.binds_loopback()
            || !self.http.api_tokens.is_empty()
            || self.http.allow_unauthenticated
        {
            return Ok(());
        }
        Err(format!(
            "refusing to listen on {} without API_TOKEN: anyone who can reach this port could run \
             shell commands through the bash tool. Set API_TOKEN (or --api-token), bind to \
             127.0.0.1, or pass --allow-unauthenticated if the network is trusted.",
            self.http.host
        ))
    }

    /// Whether the bind address is a loopback address.
    pub fn binds_loopback(&self) -> bool {
        let host = self.http.host.trim_matches(|c| c == '[' || c == ']');
        host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .map(|ip| ip.is_loopback())
                .unwrap_or(false)
    }
}

fn parse_flags(args: &[String]) -> Result<HashMap<&'static str, String>, ConfigError> {
    let mut flags = HashMap::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--help" || arg == "-h" {
            return Err(ConfigError::Help(Config::help()));
        }
        let Some(body) = arg.strip_prefix("--") else {
            return Err(ConfigError::UnknownFlag(arg.clone()));
        };
        let (name, inline) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (body, None),
        };
        let spec = OPTIONS
            .iter()
            .find(|spec| spec.flag == name)
            .ok_or_else(|| ConfigError::UnknownFlag(arg.clone()))?;
        let value = match inline {
            Some(value) => value,
            None if spec.default == "false" => "true".to_string(),
            None => iter
                .next()
                .cloned()
                .ok_or_else(|| ConfigError::MissingValue(name.to_string()))?,
        };
        flags.insert(spec.flag, value);
    }
    Ok(flags)
}

/// Raw values keyed by environment variable name, turned into typed settings.
struct Values(HashMap<&'static str, String>);

impl Values {
    fn get(&self, var: &'static str) -> &str {
        self.0.get(var).map(String::as_str).unwrap_or("")
    }

    fn parse<T: std::str::FromStr>(
        &self,
        var: &'static str,
        expected: &'static str,
    ) -> Result<T, ConfigError> {
        let value = self.get(var).trim();
        value.parse().map_err(|_| ConfigError::Invalid {
            var,
            value: value.to_string(),
            expected,
        })
    }

    fn seconds(&self, var: &'static str) -> Result<Duration, ConfigError> {
        let secs: f64 = self.parse(var, "a number of seconds")?;
        if !(secs > 0.0 && secs.is_finite()) {
            return Err(ConfigError::Invalid {
                var,
                value: self.get(var).to_string(),
                expected: "a positive number of seconds",
            });
        }
        Ok(Duration::from_secs_f64(secs))
    }

    fn positive(&self, var: &'static str) -> Result<usize, ConfigError> {
        match self.parse::<usize>(var, "a positive integer")? {
            0 => Err(ConfigError::Invalid {
                var,
                value: "0".into(),
                expected: "a positive integer",
            }),
            n => Ok(n),
        }
    }

    fn flag(&self, var: &'static str) -> Result<bool, ConfigError> {
        match self.get(var).trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "" | "0" | "false" | "no" | "off" => Ok(false),
            other => Err(ConfigError::Invalid {
                var,
                value: other.to_string(),
                expected: "true or false",
            }),
        }
    }

    fn list(&self, var: &'static str) -> Vec<String> {
        self.get(var)
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    }

    fn database(&self) -> Result<DatabaseUrl, ConfigError> {
        let url = self.get("DATABASE_URL").trim();
        if url.is_empty() {
            let dir = PathBuf::from(self.get("DATA_DIR"));
            return Ok(DatabaseUrl::Sqlite(dir.join("computer-use.db")));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(url.to_string()));
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"));
        if let Some(path) = path.filter(|p| !p.is_empty()) {
            return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
        }
        Err(ConfigError::Invalid {
            var: "DATABASE_URL",
            value: url.to_string(),
            expected: "sqlite://PATH or postgres://…",
        })
    }

    /// `auto`: a shared desktop when one is reachable (the display's socket exists) or can be
    /// started (Xvfb is on PATH), else none.
    fn auto_desktop_mode(&self) -> DesktopMode {
        let display = self.get("DISPLAY_NUM").trim();
        let socket_up = !display.is_empty()
            && std::path::Path::new(&format!("/tmp/.X11-unix/X{display}")).exists();
        let xvfb = std::env::split_paths(self.get("PATH")).any(|dir| dir.join("Xvfb").is_file());
        if socket_up || xvfb {
            DesktopMode::Shared
        } else {
            DesktopMode::None
        }
    }

    fn non_negative_seconds(&self, var: &'static str) -> Result<Duration, ConfigError> {
        let secs: f64 = self.parse(var, "a number of seconds")?;
        if !(secs >= 0.0 && secs.is_finite()) {
            return Err(ConfigError::Invalid {
                var,
                value: self.get(var).to_string(),
                expected: "a non-negative number of seconds",
            });
        }
        Ok(Duration::from_secs_f64(secs))
    }

    fn desktop_mode(&self) -> Result<DesktopMode, ConfigError> {
        match self.get("DESKTOP_MODE").trim() {
            "shared" => Ok(DesktopMode::Shared),
            "per-session" => Ok(DesktopMode::PerSession),
            "none" => Ok(DesktopMode::None),
            "auto" | "" => Ok(self.auto_desktop_mode()),
            other => Err(ConfigError::Invalid {
                var: "DESKTOP_MODE",
                value: other.to_string(),
                expected: "shared, per-session, none or auto",
            }),
        }
    }

    fn into_config(self) -> Result<Config, ConfigError> {
        let display_num = match self.get("DISPLAY_NUM").trim() {
            "" => None,
            _ => Some(self.parse("DISPLAY_NUM", "a display number")?),
        };
        Ok(Config {
            database: self.database()?,
            http: HttpConfig {
                host: self.get("HOST").trim().to_string(),
                port: self.parse("PORT", "a port number")?,
                threads: self.positive("HTTP_THREADS")?,
                max_body_bytes: self.positive("MAX_BODY_BYTES")?,
                api_tokens: self
                    .list("API_TOKEN")
                    .into_iter()
                    .map(Secret::new)
                    .collect(),
                allow_unauthenticated: self.flag("ALLOW_UNAUTHENTICATED")?,
                cors_origins: self.list("CORS_ORIGINS"),
                heartbeat: self.seconds("SSE_HEARTBEAT")?,
                subscriber_queue: self.positive("SUBSCRIBER_QUEUE")?,
                body_timeout: self.seconds("BODY_TIMEOUT")?,
                keepalive_timeout: self.seconds("KEEPALIVE_TIMEOUT")?,
                header_timeout: self.seconds("HEADER_TIMEOUT")?,
                max_header_bytes: self.positive("MAX_HEADER_BYTES")?,
                max_ws_message_bytes: self.positive("MAX_WS_MESSAGE_BYTES")?,
                max_streams: self.positive("MAX_STREAMS")?,
                max_streams_per_session: self.positive("MAX_STREAMS_PER_SESSION")?,
                rate_limit_messages: self
                    .parse("RATE_LIMIT_MESSAGES", "a number of requests per minute")?,
                rate_limit_sessions: self
                    .parse("RATE_LIMIT_SESSIONS", "a number of requests per minute")?,
            },
            model: ModelConfig {
                api_key: Secret::new(self.get("ANTHROPIC_API_KEY").trim()),
                base_url: self
                    .get("ANTHROPIC_BASE_URL")
                    .trim()
                    .trim_end_matches('/')
                    .to_string(),
                default_model: self.get("DEFAULT_MODEL").trim().to_string(),
                connect_timeout: self.seconds("MODEL_CONNECT_TIMEOUT")?,
                read_timeout: self.seconds("MODEL_READ_TIMEOUT")?,
                max_retries: self.parse("MODEL_MAX_RETRIES", "a number of retries")?,
                max_iterations: self.positive("MAX_ITERATIONS")? as u32,
            },
            desktop: DesktopConfig {
                mode: self.desktop_mode()?,
                display_num,
                width: self.positive("WIDTH")? as u32,
                height: self.positive("HEIGHT")? as u32,
                vnc_host: self.get("VNC_HOST").trim().to_string(),
                vnc_port: self.parse("VNC_PORT", "a port number")?,
                settle_delay: self.non_negative_seconds("SETTLE_DELAY")?,
                max_desktops: self.positive("MAX_DESKTOPS")?,
                novnc_dir: PathBuf::from(self.get("NOVNC_DIR").trim()),
            },
            session: SessionConfig {
                bash_timeout: self.seconds("BASH_TIMEOUT")?,
                idle_timeout: self.seconds("WORKER_IDLE_TIMEOUT")?,
                max_active: self.positive("MAX_ACTIVE_SESSIONS")?,
                shutdown_grace: self.non_negative_seconds("SHUTDOWN_GRACE")?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_sources(&args, |name| env.get(name).cloned())
    }

    #[test]
    fn defaults_bind_loopback_8000_and_sqlite_under_data() {
        let config = load(&[], &[]).unwrap();
        assert_eq!(config.http.host, "127.0.0.1");
        assert_eq!(config.http.port, 8000);
        assert!(config.binds_loopback());
        assert_eq!(
            config.database,
            DatabaseUrl::Sqlite(PathBuf::from("./data/computer-use.db"))
        );
        assert_eq!(config.http.max_body_bytes, 1 << 20);
    }

    #[test]
    fn flag_overrides_env_which_overrides_default() {
        let config = load(
            &["--port", "9001"],
            &[("PORT", "9000"), ("HOST", "0.0.0.0")],
        )
        .unwrap();
        assert_eq!(config.http.port, 9001);
        assert_eq!(config.http.host, "0.0.0.0");
        assert!(!config.binds_loopback());
        let config = load(&["--port=9002"], &[]).unwrap();
        assert_eq!(config.http.port, 9002);
    }

    #[test]
    fn bad_value_names_the_variable() {
        let err = load(&[], &[("PORT", "eighty")]).unwrap_err();
        assert!(
            err.to_string().starts_with("PORT=\"eighty\" is invalid"),
            "{err}"
        );
        let err = load(&[], &[("DATABASE_URL", "mysql://x")]).unwrap_err();
        assert!(err.to_string().contains("DATABASE_URL"), "{err}");
    }

    #[test]
    fn database_urls_select_the_backend() {
        let pg = load(&[], &[("DATABASE_URL", "postgres://localhost/test")]).unwrap();
        assert_eq!(
            pg.database,
            DatabaseUrl::Postgres("postgres://localhost/test".into())
        );
        let lite = load(&["--database-url", "sqlite:///tmp/x.db"], &[]).unwrap();
        assert_eq!(
            lite.database,
            DatabaseUrl::Sqlite(PathBuf::from("/tmp/x.db"))
        );
    }

    #[test]
    fn help_lists_every_flag_with_its_variable() {
        let Err(ConfigError::Help(text)) = load(&["--help"], &[]) else {
            panic!("no help")
        };
        for spec in OPTIONS {
            assert!(text.contains(&format!("--{}", spec.flag)) && text.contains(spec.env));
        }
    }

    #[test]
    fn public_bind_needs_a_token_or_an_explicit_opt_out() {
        let public = load(&[], &[("HOST", "0.0.0.0")]).unwrap();
        assert!(public.check_exposure().unwrap_err().contains("API_TOKEN"));
        assert!(
            load(&[], &[("HOST", "0.0.0.0"), ("API_TOKEN", "t")])
                .unwrap()
                .check_exposure()
                .is_ok()
        );
        assert!(
            load(&["--allow-unauthenticated"], &[("HOST", "0.0.0.0")])
                .unwrap()
                .check_exposure()
                .is_ok()
        );
        assert!(load(&[], &[]).unwrap().check_exposure().is_ok());
    }

    #[test]
    fn unknown_flag_and_secret_redaction() {
        assert_eq!(
            load(&["--nope"], &[]).unwrap_err(),
            ConfigError::UnknownFlag("--nope".into())
        );
        let config = load(&[], &[("ANTHROPIC_API_KEY", "sk-ant-secret")]).unwrap();
        assert!(!format!("{config:?}").contains("sk-ant-secret"));
        assert_eq!(config.model.api_key.expose(), "sk-ant-secret");
    }
}
