//! The Prometheus text exposition format, version 0.0.4: `# HELP` and `# TYPE` lines, then
//! one sample per line (`name{label="value",…} value`), histograms as cumulative `_bucket`
//! lines ending with `le="+Inf"`, then `_sum` and `_count`.

use std::fmt::Write;

use super::primitives::HistogramSnapshot;

/// The `Content-Type` of the format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A document being written.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// `# HELP` and `# TYPE` for the metric `name`; `kind` is `counter`, `gauge` or `histogram`.
    pub fn describe(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// One sample line.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        write_labels(&mut self.out, labels);
        let _ = writeln!(self.out, " {}", number(value));
    }

    /// A histogram's bucket, sum and count lines.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], snapshot: &HistogramSnapshot) {
        let bucket = format!("{name}_bucket");
        let bounds = snapshot.bounds.iter().map(|b| number(*b));
        let les = bounds.chain(std::iter::once("+Inf".to_string()));
        for (le, count) in les.zip(&snapshot.cumulative) {
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket, &with_le, *count as f64);
        }
        self.sample(&format!("{name}_sum"), labels, snapshot.sum);
        self.sample(&format!("{name}_count"), labels, snapshot.count() as f64);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn write_labels(out: &mut String, labels: &[(&str, &str)]) {
    if labels.is_empty() {
        return;
    }
    out.push('{');
    for (n, (name, value)) in labels.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        let _ = write!(out, "{name}=\"{}\"", escape_label(value));
    }
    out.push('}');
}

/// A label value with `\`, `"` and newlines escaped.
pub fn escape_label(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// A sample value as the format spells it (`+Inf`, `-Inf`, `NaN`; integers without `.0`).
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_escape_label_values_and_spell_special_numbers() {
        let mut doc = Exposition::default();
        doc.describe("x_total", "counter", "Line one\nback\\slash");
        doc.sample("x_total", &[("a", "q\"uo\\te\nnl"), ("b", "2")], 3.0);
        doc.sample("y", &[], f64::INFINITY);
        doc.sample("z", &[], 0.25);
        assert_eq!(
            doc.finish(),
            "# HELP x_total Line one\\nback\\\\slash\n# TYPE x_total counter\n\
             x_total{a=\"q\\\"uo\\\\te\\nnl\",b=\"2\"} 3\ny +Inf\nz 0.25\n"
        );
    }

    #[test]
    fn histograms_list_cumulative_buckets_then_sum_and_count() {
        let snapshot = HistogramSnapshot {
            bounds: &[0.5, 1.0],
            cumulative: vec![1, 1, 3],
            sum: 4.5,
        };
        let mut doc = Exposition::default();
        doc.histogram("h", &[("route", "/r")], &snapshot);
        assert_eq!(
            doc.finish(),
            "h_bucket{route=\"/r\",le=\"0.5\"} 1\nh_bucket{route=\"/r\",le=\"1\"} 1\n\
             h_bucket{route=\"/r\",le=\"+Inf\"} 3\nh_sum{route=\"/r\"} 4.5\nh_count{route=\"/r\"} 3\n"
        );
    }
}
