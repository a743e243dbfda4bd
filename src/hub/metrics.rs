//! Request counters and latency histograms per backend, kept by the dispatcher (which sees every
//! request and answer anyway, so counting costs a hash lookup and no lock), rendered in the Prometheus
//! text format. Hand-written: the format is a few lines of text and needs no crate.

use crate::event::BackendId;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

/// Upper bounds (seconds) of the `tools/call` latency buckets.
const BUCKETS: [f64; 13] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0];

#[derive(Default)]
pub struct Metrics {
    /// backend → method → (requests, errors); by backend first, so that counting a call needs no
    /// owned copy of its method to look it up.
    requests: BTreeMap<BackendId, BTreeMap<String, (u64, u64)>>,
    calls: BTreeMap<BackendId, Histogram>,
}

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Metrics {
    /// Counts one answered client request; `tools/call` latencies also go into the histogram.
    pub fn record(&mut self, backend: BackendId, method: &str, error: bool, elapsed: Duration) {
        let methods = self.requests.entry(backend).or_default();
        let entry = match methods.get_mut(method) {
            Some(entry) => entry,
            None => methods.entry(method.to_owned()).or_default(),
        };
        entry.0 += 1;
        entry.1 += u64::from(error);
        if method == "tools/call" {
            let h = self.calls.entry(backend).or_default();
            let secs = elapsed.as_secs_f64();
            for (i, bound) in BUCKETS.iter().enumerate() {
                if secs <= *bound {
                    h.counts[i] += 1;
                }
            }
            h.count += 1;
            h.sum += secs;
        }
    }

    /// Appends the request counters and histograms; `key` names a backend.
    pub fn render(&self, out: &mut String, key: &dyn Fn(BackendId) -> String) {
        out.push_str("# HELP mcp_proxy_backend_requests_total Client requests forwarded to a backend, by method.\n");
        out.push_str("# TYPE mcp_proxy_backend_requests_total counter\n");
        for (backend, method, (count, _)) in self.counters() {
            let _ = writeln!(
                out,
                "mcp_proxy_backend_requests_total{{backend=\"{}\",method=\"{}\"}} {count}",
                label(&key(backend)),
                label(method)
            );
        }
        out.push_str("# HELP mcp_proxy_backend_errors_total Forwarded requests answered with a JSON-RPC error.\n");
        out.push_str("# TYPE mcp_proxy_backend_errors_total counter\n");
        for (backend, method, (_, errors)) in self.counters() {
            let _ = writeln!(
                out,
                "mcp_proxy_backend_errors_total{{backend=\"{}\",method=\"{}\"}} {errors}",
                label(&key(backend)),
                label(method)
            );
        }
        out.push_str("# HELP mcp_proxy_tool_call_seconds Time from forwarding a tools/call to its answer.\n");
        out.push_str("# TYPE mcp_proxy_tool_call_seconds histogram\n");
        for (backend, h) in &self.calls {
            let name = label(&key(*backend));
            for (bound, count) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(out, "mcp_proxy_tool_call_seconds_bucket{{backend=\"{name}\",le=\"{bound}\"}} {count}");
            }
            let _ = writeln!(out, "mcp_proxy_tool_call_seconds_bucket{{backend=\"{name}\",le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "mcp_proxy_tool_call_seconds_sum{{backend=\"{name}\"}} {}", h.sum);
            let _ = writeln!(out, "mcp_proxy_tool_call_seconds_count{{backend=\"{name}\"}} {}", h.count);
        }
    }

    /// Every (backend, method) counter pair, in backend then method order.
    fn counters(&self) -> impl Iterator<Item = (BackendId, &str, (u64, u64))> {
        self.requests.iter().flat_map(|(backend, methods)| methods.iter().map(|(method, counts)| (*backend, method.as_str(), *counts)))
    }
}

/// Escapes a label value as the text format requires.
pub fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_counted_bucketed_and_rendered() {
        let mut m = Metrics::default();
        m.record(BackendId(0), "tools/call", false, Duration::from_millis(3));
        m.record(BackendId(0), "tools/call", true, Duration::from_millis(300));
        m.record(BackendId(0), "prompts/get", false, Duration::from_millis(1));
        let mut out = String::new();
        m.render(&mut out, &|_| "a\"b".to_owned());
        assert!(out.contains("mcp_proxy_backend_requests_total{backend=\"a\\\"b\",method=\"tools/call\"} 2"), "{out}");
        assert!(out.contains("mcp_proxy_backend_errors_total{backend=\"a\\\"b\",method=\"tools/call\"} 1"), "{out}");
        assert!(out.contains("mcp_proxy_tool_call_seconds_bucket{backend=\"a\\\"b\",le=\"0.005\"} 1"), "{out}");
        assert!(out.contains("mcp_proxy_tool_call_seconds_bucket{backend=\"a\\\"b\",le=\"0.5\"} 2"), "{out}");
        assert!(out.contains("mcp_proxy_tool_call_seconds_count{backend=\"a\\\"b\"} 2"), "{out}");
    }
}
