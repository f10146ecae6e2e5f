//! Metrics: an in-process registry rendered as Prometheus text at `GET /metrics`.
//!
//! [`Metrics`] is a cheap-clone handle on [`App`](crate::app::App); the HTTP layer, the
//! Messages API client, the tools and the metered store record into it. Counters and gauges
//! are single atomics; histograms have fixed buckets; labelled families are a small map whose
//! label values come from bounded sets only (route patterns, tool names, outcomes), so the
//! registry cannot grow with traffic. Figures the app already knows (live workers, running
//! turns, desktops, process memory) are sampled when the page is rendered ([`Sampled`]).
//!
//! - `primitives.rs`: [`Counter`], [`Gauge`], [`Histogram`], [`Family`].
//! - `text.rs`: the exposition format. `process.rs`: `/proc/self/status`.

mod primitives;
mod process;
mod text;

use std::sync::Arc;
use std::time::Duration;

pub use self::primitives::{Counter, Family, Gauge, GaugeGuard, Histogram, HistogramSnapshot};
pub use self::process::ProcessStats;
pub use self::text::CONTENT_TYPE;
use self::text::Exposition;
use crate::store::Usage;

/// Metric names start with this.
const PREFIX: &str = "computer_use";

/// HTTP request latency, seconds.
const HTTP_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// A Messages API call, retries included, seconds.
const MODEL_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];
/// One tool execution, seconds.
const TOOL_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
/// One store operation, seconds.
const DB_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// The registry of one app. Cheap to clone.
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Arc<Registry>,
}

/// Open long-lived connections; the HTTP layer holds a [`GaugeGuard`] per connection.
#[derive(Default)]
pub struct StreamGauges {
    /// Event WebSockets (`/ws/{id}`); VNC links are counted apart.
    pub websocket: Arc<Gauge>,
    /// Server-Sent Events streams.
    pub sse: Arc<Gauge>,
    /// VNC proxy links (WebSockets on `/ws/vnc[/{id}]`).
    pub vnc: Arc<Gauge>,
}

struct Registry {
    streams: StreamGauges,
    /// (method, route pattern, status).
    http_requests: Family<(&'static str, &'static str, u16), Counter>,
    /// (method, route pattern).
    http_duration: Family<(&'static str, &'static str), Histogram>,
    /// Outcome of each `create_message` (retries included).
    model_calls: Family<&'static str, Counter>,
    model_duration: Histogram,
    /// Outcome of each HTTP attempt.
    model_attempts: Family<&'static str, Counter>,
    model_retries: Counter,
    /// By token type.
    tokens: Family<&'static str, Counter>,
    /// (tool, outcome).
    tool_runs: Family<(String, &'static str), Counter>,
    tool_duration: Family<String, Histogram>,
    db_duration: Family<&'static str, Histogram>,
    /// (operation, error kind).
    db_errors: Family<(&'static str, &'static str), Counter>,
}

impl Default for Registry {
    fn default() -> Registry {
        Registry {
            streams: StreamGauges::default(),
            http_requests: Family::new(Counter::default),
            http_duration: Family::new(|| Histogram::new(HTTP_BUCKETS)),
            model_calls: Family::new(Counter::default),
            model_duration: Histogram::new(MODEL_BUCKETS),
            model_attempts: Family::new(Counter::default),
            model_retries: Counter::default(),
            tokens: Family::new(Counter::default),
            tool_runs: Family::new(Counter::default),
            tool_duration: Family::new(|| Histogram::new(TOOL_BUCKETS)),
            db_duration: Family::new(|| Histogram::new(DB_BUCKETS)),
            db_errors: Family::new(Counter::default),
        }
    }
}

/// Figures read from the app when the page is rendered.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sampled {
    pub sessions_active: usize,
    pub turns_running: usize,
    pub desktops_running: usize,
    pub process: ProcessStats,
    pub uptime: Duration,
}

impl Metrics {
    /// The open-connection gauges.
    pub fn streams(&self) -> &StreamGauges {
        &self.inner.streams
    }

    /// One answered HTTP request; `route` is its pattern from the route table.
    pub fn http_request(&self, method: &str, route: &'static str, status: u16, took: Duration) {
        let method = method_label(method);
        let registry = &self.inner;
        registry
            .http_requests
            .with((method, route, status), Counter::inc);
        registry
            .http_duration
            .with((method, route), |h| h.observe(took.as_secs_f64()));
    }

    /// One Messages API call ended (`ok`, `error` or `cancelled`), retries included.
    pub fn model_call(&self, outcome: &'static str, took: Duration) {
        self.inner.model_calls.with(outcome, Counter::inc);
        self.inner.model_duration.observe(took.as_secs_f64());
    }

    /// One HTTP attempt of a call ended; `outcome` names the class of its result.
    pub fn model_attempt(&self, outcome: &'static str) {
        self.inner.model_attempts.with(outcome, Counter::inc);
    }

    /// A failed attempt will be retried.
    pub fn model_retry(&self) {
        self.inner.model_retries.inc();
    }

    /// A model call's token usage.
    pub fn tokens(&self, usage: &Usage) {
        let counts = [
            ("input", usage.input_tokens),
            ("output", usage.output_tokens),
            ("cache_creation", usage.cache_creation_input_tokens),
            ("cache_read", usage.cache_read_input_tokens),
        ];
        for (kind, count) in counts {
            self.inner
                .tokens
                .with(kind, |c| c.add(u64::try_from(count).unwrap_or(0)));
        }
    }

    /// One tool execution; `tool` must be a tool's own name (not the model's input).
    pub fn tool_run(&self, tool: &str, ok: bool, took: Duration) {
        let outcome = if ok { "ok" } else { "error" };
        let registry = &self.inner;
        registry
            .tool_runs
            .with((tool.to_string(), outcome), Counter::inc);
        registry
            .tool_duration
            .with(tool.to_string(), |h| h.observe(took.as_secs_f64()));
    }

    /// One store operation; `error` is the kind of error it ended with, if any.
    pub fn db_query(&self, operation: &'static str, took: Duration, error: Option<&'static str>) {
        let registry = &self.inner;
        registry
            .db_duration
            .with(operation, |h| h.observe(took.as_secs_f64()));
        if let Some(kind) = error {
            registry.db_errors.with((operation, kind), Counter::inc);
        }
    }

    /// The whole page in the text exposition format.
    pub fn render(&self, sampled: &Sampled) -> String {
        let mut doc = Exposition::default();
        render_sampled(&mut doc, sampled);
        self.render_streams(&mut doc);
        self.render_http(&mut doc);
        self.render_model(&mut doc);
        self.render_tools_and_db(&mut doc);
        doc.finish()
    }

    fn render_streams(&self, doc: &mut Exposition) {
        let name = format!("{PREFIX}_open_connections");
        doc.describe(
            &name,
            "gauge",
            "Open long-lived connections by kind (websocket: event WebSockets; sse; vnc: VNC proxy links).",
        );
        let streams = &self.inner.streams;
        for (kind, gauge) in [
            ("sse", &streams.sse),
            ("vnc", &streams.vnc),
            ("websocket", &streams.websocket),
        ] {
            doc.sample(&name, &[("kind", kind)], gauge.get() as f64);
        }
    }

    fn render_http(&self, doc: &mut Exposition) {
        let registry = &self.inner;
        counters(
            doc,
            "http_requests_total",
            "HTTP requests answered, by method, route pattern and status.",
            &["method", "route", "status"],
            &registry.http_requests,
        );
        histograms(
            doc,
            "http_request_duration_seconds",
            "Time to answer an HTTP request (for streams: until the stream is handed to its thread).",
            &["method", "route"],
            &registry.http_duration,
        );
    }

    fn render_model(&self, doc: &mut Exposition) {
        let registry = &self.inner;
        counters(
            doc,
            "model_calls_total",
            "Messages API calls (retries included) by outcome: ok, error, cancelled.",
            &["outcome"],
            &registry.model_calls,
        );
        let name = format!("{PREFIX}_model_call_duration_seconds");
        doc.describe(
            &name,
            "histogram",
            "Duration of a Messages API call, retries and back-off included.",
        );
        doc.histogram(&name, &[], &registry.model_duration.snapshot());
        counters(
            doc,
            "model_attempts_total",
            "Messages API HTTP attempts by outcome (ok, rate_limited, overloaded, server_error, client_error, connection_error, timeout, invalid_response, cancelled, other).",
            &["outcome"],
            &registry.model_attempts,
        );
        let name = format!("{PREFIX}_model_retries_total");
        doc.describe(
            &name,
            "counter",
            "Failed Messages API attempts that were retried.",
        );
        doc.sample(&name, &[], registry.model_retries.get() as f64);
        counters(
            doc,
            "model_tokens_total",
            "Tokens reported by the Messages API by type: input, output, cache_creation, cache_read.",
            &["type"],
            &registry.tokens,
        );
    }

    fn render_tools_and_db(&self, doc: &mut Exposition) {
        let registry = &self.inner;
        counters(
            doc,
            "tool_executions_total",
            "Tool executions by tool and outcome (ok, or error: the model got an error result).",
            &["tool", "outcome"],
            &registry.tool_runs,
        );
        histograms(
            doc,
            "tool_duration_seconds",
            "Duration of a tool execution.",
            &["tool"],
            &registry.tool_duration,
        );
        histograms(
            doc,
            "db_query_duration_seconds",
            "Duration of a store operation (one transaction), by operation.",
            &["operation"],
            &registry.db_duration,
        );
        counters(
            doc,
            "db_errors_total",
            "Store operations that failed, by operation and error kind.",
            &["operation", "kind"],
            &registry.db_errors,
        );
    }
}

/// The figures sampled from the app and the process.
fn render_sampled(doc: &mut Exposition, sampled: &Sampled) {
    let gauges = [
        (
            "sessions_active",
            "Sessions with a live worker thread.",
            Some(sampled.sessions_active as u64),
        ),
        (
            "turns_running",
            "Turns running now.",
            Some(sampled.turns_running as u64),
        ),
        (
            "desktops_running",
            "X desktops this server has running.",
            Some(sampled.desktops_running as u64),
        ),
        (
            "process_resident_memory_bytes",
            "Resident set size of the process (VmRSS).",
            sampled.process.resident_bytes,
        ),
        (
            "process_threads",
            "OS threads of the process.",
            sampled.process.threads,
        ),
    ];
    for (suffix, help, value) in gauges {
        let Some(value) = value else { continue };
        let name = format!("{PREFIX}_{suffix}");
        doc.describe(&name, "gauge", help);
        doc.sample(&name, &[], value as f64);
    }
    let name = format!("{PREFIX}_uptime_seconds");
    doc.describe(&name, "gauge", "Seconds since the app was built.");
    doc.sample(&name, &[], sampled.uptime.as_secs_f64().floor());
}

fn counters<K: primitives::Labels>(
    doc: &mut Exposition,
    suffix: &str,
    help: &str,
    label_names: &[&str],
    family: &Family<K, Counter>,
) {
    let name = format!("{PREFIX}_{suffix}");
    doc.describe(&name, "counter", help);
    for (values, count) in family.collect(Counter::get) {
        doc.sample(&name, &zip(label_names, &values), count as f64);
    }
}

fn histograms<K: primitives::Labels>(
    doc: &mut Exposition,
    suffix: &str,
    help: &str,
    label_names: &[&str],
    family: &Family<K, Histogram>,
) {
    let name = format!("{PREFIX}_{suffix}");
    doc.describe(&name, "histogram", help);
    for (values, snapshot) in family.collect(Histogram::snapshot) {
        doc.histogram(&name, &zip(label_names, &values), &snapshot);
    }
}

fn zip<'a>(names: &[&'a str], values: &'a [String]) -> Vec<(&'a str, &'a str)> {
    names
        .iter()
        .zip(values)
        .map(|(n, v)| (*n, v.as_str()))
        .collect()
}

/// A method as a bounded label value.
fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_method_pattern_and_status_with_latency() {
        let metrics = Metrics::default();
        let took = Duration::from_millis(3);
        metrics.http_request("GET", "/api/sessions/{id}", 200, took);
        metrics.http_request("GET", "/api/sessions/{id}", 200, took);
        metrics.http_request("BREW", "/api/sessions/{id}", 405, took);
        let page = metrics.render(&Sampled::default());
        assert!(page.contains(
            "computer_use_http_requests_total{method=\"GET\",route=\"/api/sessions/{id}\",status=\"200\"} 2\n"
        ), "{page}");
        assert!(page.contains("method=\"other\",route=\"/api/sessions/{id}\",status=\"405\"} 1\n"));
        assert!(page.contains(
            "computer_use_http_request_duration_seconds_bucket{method=\"GET\",route=\"/api/sessions/{id}\",le=\"0.005\"} 2\n"
        ));
        assert!(page.contains(
            "computer_use_http_request_duration_seconds_count{method=\"GET\",route=\"/api/sessions/{id}\"} 2\n"
        ));
    }

    #[test]
    fn model_tools_and_store_are_rendered_with_their_labels() {
        let metrics = Metrics::default();
        metrics.model_attempt("overloaded");
        metrics.model_retry();
        metrics.model_attempt("ok");
        metrics.model_call("ok", Duration::from_millis(1500));
        metrics.tokens(&Usage {
            input_tokens: 10,
            output_tokens: 5,
            cache_creation_input_tokens: 0,
            cache_read_input_tokens: 7,
        });
        metrics.tool_run("bash", true, Duration::from_millis(20));
        metrics.db_query("get_session", Duration::from_micros(300), None);
        metrics.db_query(
            "get_session",
            Duration::from_micros(300),
            Some("unavailable"),
        );
        let page = metrics.render(&Sampled::default());
        for line in [
            "computer_use_model_calls_total{outcome=\"ok\"} 1",
            "computer_use_model_call_duration_seconds_bucket{le=\"2.5\"} 1",
            "computer_use_model_call_duration_seconds_count 1",
            "computer_use_model_attempts_total{outcome=\"overloaded\"} 1",
            "computer_use_model_retries_total 1",
            "computer_use_model_tokens_total{type=\"cache_read\"} 7",
            "computer_use_model_tokens_total{type=\"input\"} 10",
            "computer_use_tool_executions_total{tool=\"bash\",outcome=\"ok\"} 1",
            "computer_use_tool_duration_seconds_count{tool=\"bash\"} 1",
            "computer_use_db_query_duration_seconds_count{operation=\"get_session\"} 2",
            "computer_use_db_errors_total{operation=\"get_session\",kind=\"unavailable\"} 1",
        ] {
            assert!(
                page.contains(&format!("{line}\n")),
                "{line} missing from:\n{page}"
            );
        }
    }

    #[test]
    fn sampled_figures_and_stream_gauges_are_rendered() {
        let metrics = Metrics::default();
        let _sse = metrics.streams().sse.track();
        let sampled = Sampled {
            sessions_active: 3,
            turns_running: 1,
            desktops_running: 2,
            process: ProcessStats {
                resident_bytes: Some(4096),
                threads: None,
            },
            uptime: Duration::from_millis(2500),
        };
        let page = metrics.render(&sampled);
        for line in [
            "computer_use_sessions_active 3",
            "computer_use_turns_running 1",
            "computer_use_desktops_running 2",
            "computer_use_process_resident_memory_bytes 4096",
            "computer_use_uptime_seconds 2",
            "computer_use_open_connections{kind=\"sse\"} 1",
            "computer_use_open_connections{kind=\"websocket\"} 0",
        ] {
            assert!(
                page.contains(&format!("{line}\n")),
                "{line} missing from:\n{page}"
            );
        }
        assert!(
            !page.contains("process_threads"),
            "unknown figures are left out"
        );
    }

    #[test]
    fn every_metric_is_described_once_before_its_samples() {
        let metrics = Metrics::default();
        metrics.http_request("GET", "/health", 200, Duration::ZERO);
        let page = metrics.render(&Sampled::default());
        let mut described = std::collections::HashSet::new();
        for line in page.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(described.insert(name.to_string()), "{name} described twice");
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|b| described.contains(*b)))
                    .unwrap_or(name);
                assert!(described.contains(base), "{name} has no # TYPE before it");
            }
        }
    }
}
