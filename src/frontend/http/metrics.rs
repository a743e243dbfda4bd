//! `GET /metrics` in the Prometheus text format: the dispatcher's counters plus what only the process
//! knows (bytes in and out, connections, resident memory, threads, open file descriptors from `/proc`).

use crate::event::Event;
use crate::http::{self, Response};
use crossbeam_channel::Sender;
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::time::Duration;

pub fn render(events: &Sender<Event>) -> Response {
    let (reply, answer) = crossbeam_channel::bounded(1);
    if events.send(Event::Metrics { reply }).is_err() {
        return Response::error(503, "shutting down");
    }
    let Ok(mut out) = answer.recv_timeout(Duration::from_secs(10)) else {
        return Response::error(503, "the dispatcher did not answer");
    };
    let mut gauge = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n");
    };
    gauge("mcp_proxy_http_received_bytes_total", "counter", "Bytes of HTTP requests read.", http::BYTES_IN.load(Ordering::Relaxed));
    gauge("mcp_proxy_http_sent_bytes_total", "counter", "Bytes of HTTP responses written.", http::BYTES_OUT.load(Ordering::Relaxed));
    gauge("mcp_proxy_http_connections", "gauge", "HTTP connections open now.", http::OPEN_CONNECTIONS.load(Ordering::Relaxed) as u64);
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field =
        |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok());
    gauge("process_resident_memory_bytes", "gauge", "Resident memory of the proxy process.", field("VmRSS:").unwrap_or(0) * 1024);
    gauge("process_threads", "gauge", "Threads of the proxy process.", field("Threads:").unwrap_or(0));
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    gauge("process_open_fds", "gauge", "Open file descriptors of the proxy process.", fds);
    Response::new(200, "text/plain; version=0.0.4; charset=utf-8", out)
}
