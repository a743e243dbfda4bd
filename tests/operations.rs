//! Running the proxy in production, end to end with the real binary in `--sse` mode and the mock backend
//! of `tests/fixtures/mock_server.py` (key `mock`, tools `mock__echo`, `mock__crash`, ...):
//!
//! - `GET /metrics`: a well-formed Prometheus text page whose numbers move with what happens (calls,
//!   errors, timeouts, a crashed backend and its restart, sessions opened and closed) and which needs
//!   the API key when keys are set;
//! - `--log-format json` / `MCP_PROXY_LOG_FORMAT=json`: every stderr line is one JSON object, and a
//!   backend's lines name it;
//! - `--stateless` / `MCP_PROXY_STATELESS=true`: Streamable HTTP without sessions;
//! - `MCP_PROXY_INSTANCE_ID`: session ids start with the instance id, for load balancers.
//!
//! Scale-out behind a real nginx is tested in `tests/interop/test_scale_out.py`.

mod support;

use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};
use support::http::{initialize_request, mcp_post, notification, rpc, tool_call, HttpProxy, ProxyBuilder, Req, MCP_ACCEPT};
use support::{http, result_text, PROXY_BIN, WAIT};

const BACKEND_UNAVAILABLE: i64 = -32000;
const REQUEST_TIMEOUT: i64 = -32001;

// ----- /metrics -----------------------------------------------------------------------------------------

/// One scrape of `/metrics`, parsed: every sample by name and labels.
#[derive(Debug)]
struct Metrics {
    text: String,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Metrics {
    /// The value of the sample `name{labels}` (exactly these labels), if present.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.samples.iter().find(|(n, l, _)| n == name && *l == wanted).map(|(_, _, v)| *v)
    }

    /// Like [`Metrics::get`], with a counter that has not been created yet counting as 0.
    fn count(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }

    /// The value of a sample that must be there.
    fn must(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or_else(|| panic!("no sample {name}{labels:?} in\n{}", self.text))
    }
}

/// Parses the Prometheus text format (0.0.4) strictly enough to catch a malformed page: every line is
/// a `# HELP`, a `# TYPE` or a sample; each family is typed once, before its samples; histogram samples
/// (`_bucket`, `_sum`, `_count`) belong to a histogram family; values are numbers.
fn parse_metrics(text: &str) -> Metrics {
    assert!(text.ends_with('\n'), "the page must end with a newline:\n{text}");
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helps: HashSet<String> = HashSet::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(helps.insert(name.to_owned()), "HELP of {name} given twice:\n{text}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("bad TYPE line {line:?}"));
            assert!(matches!(kind, "counter" | "gauge" | "histogram" | "summary" | "untyped"), "bad type in {line:?}");
            assert!(types.insert(name.to_owned(), kind.to_owned()).is_none(), "TYPE of {name} given twice:\n{text}");
            continue;
        }
        assert!(!line.is_empty() && !line.starts_with('#'), "unexpected line {line:?} in\n{text}");
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("sample without a value: {line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("sample value is not a number: {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels: {line:?}"));
                (name.to_owned(), parse_labels(body, line))
            }
        };
        assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':'), "bad metric name {name:?} in {line:?}");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix).filter(|base| types.get(*base).is_some_and(|k| k == "histogram")))
            .unwrap_or(&name);
        assert!(types.contains_key(family), "sample {name} comes before (or without) its TYPE line:\n{text}");
        samples.push((name, labels, value));
    }
    Metrics { text: text.to_owned(), samples }
}

/// `a="x",b="y\"z"` → {a: x, b: y"z}.
fn parse_labels(body: &str, line: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("bad labels in {line:?}"));
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => panic!("bad escape in {line:?}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value in {line:?}"),
            }
        };
        labels.insert(key.to_owned(), value);
        rest = after[end + 1..].strip_prefix(',').unwrap_or(&after[end + 1..]);
    }
    labels
}

/// `GET /metrics` with `headers`; the parsed page (status must be 200).
fn scrape_with(proxy: &HttpProxy, headers: &[(&str, &str)]) -> Metrics {
    let response = proxy.request(&Req::get("/metrics").headers(headers));
    assert_eq!(response.status, 200, "GET /metrics: {response:?}");
    assert!(response.content_type().starts_with("text/plain; version=0.0.4"), "content type: {response:?}");
    parse_metrics(&response.text())
}

fn scrape(proxy: &HttpProxy) -> Metrics {
    scrape_with(proxy, &[])
}

/// Scrapes until `ready` holds (the dispatcher applies some changes a moment after the answer that
/// caused them); the last scrape.
fn scrape_until(proxy: &HttpProxy, what: &str, ready: impl Fn(&Metrics) -> bool) -> Metrics {
    let deadline = Instant::now() + WAIT;
    loop {
        let metrics = scrape(proxy);
        if ready(&metrics) {
            return metrics;
        }
        if Instant::now() > deadline {
            proxy.fail(&format!("/metrics never showed {what} within {WAIT:?}; last page:\n{}", metrics.text));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

const CALLS: [(&str, &str); 2] = [("backend", "mock"), ("method", "tools/call")];
const MOCK: [(&str, &str); 1] = [("backend", "mock")];

fn requests(m: &Metrics) -> f64 {
    m.count("mcp_proxy_backend_requests_total", &CALLS)
}

fn errors(m: &Metrics) -> f64 {
    m.count("mcp_proxy_backend_errors_total", &CALLS)
}

fn histogram_count(m: &Metrics) -> f64 {
    m.count("mcp_proxy_tool_call_seconds_count", &MOCK)
}

fn sessions(m: &Metrics, transport: &str) -> f64 {
    m.must("mcp_proxy_sessions", &[("transport", transport)])
}

/// A started proxy whose backends are ready, and an initialized Streamable HTTP session on it.
fn ready(builder: ProxyBuilder) -> (HttpProxy, String) {
    let proxy = builder.start();
    proxy.wait_backends_connected(&[]);
    let session = proxy.initialize();
    (proxy, session)
}

/// `tools/call` in `session`; the JSON-RPC response (HTTP status must be 200).
fn call(proxy: &HttpProxy, session: Option<&str>, id: i64, tool: &str, args: Value) -> Value {
    let response = proxy.post_mcp(session, &tool_call(id, tool, args));
    assert_eq!(response.status, 200, "tools/call {tool}: {response:?}");
    response.json()
}

#[test]
fn metrics_page_is_well_formed_and_has_every_family() {
    let (proxy, _session) = ready(ProxyBuilder::new());
    let m = scrape(&proxy);
    for family in [
        "mcp_proxy_backend_requests_total",
        "mcp_proxy_backend_errors_total",
        "mcp_proxy_tool_call_seconds",
        "mcp_proxy_backend_up",
        "mcp_proxy_backend_restarts_total",
        "mcp_proxy_sessions",
        "mcp_proxy_http_received_bytes_total",
        "mcp_proxy_http_sent_bytes_total",
        "mcp_proxy_http_connections",
        "process_resident_memory_bytes",
        "process_threads",
        "process_open_fds",
    ] {
        assert!(m.text.contains(&format!("# TYPE {family} ")), "no TYPE line for {family}:\n{}", m.text);
    }
    assert_eq!(m.must("mcp_proxy_backend_up", &MOCK), 1.0);
    assert_eq!(m.must("mcp_proxy_backend_restarts_total", &MOCK), 0.0);
    assert_eq!(sessions(&m, "streamable_http"), 1.0);
    assert_eq!(sessions(&m, "sse"), 0.0);
    assert!(m.must("mcp_proxy_http_received_bytes_total", &[]) > 0.0, "{}", m.text);
    assert!(m.must("mcp_proxy_http_sent_bytes_total", &[]) > 0.0, "{}", m.text);
    assert!(m.must("mcp_proxy_http_connections", &[]) >= 1.0, "the scrape's own connection is open: {}", m.text);
    assert!(m.must("process_resident_memory_bytes", &[]) > 1024.0 * 1024.0, "{}", m.text);
    assert!(m.must("process_threads", &[]) >= 2.0, "{}", m.text);
    assert!(m.must("process_open_fds", &[]) >= 3.0, "{}", m.text);
}

#[test]
fn calls_move_the_request_counter_and_the_latency_histogram() {
    let (proxy, session) = ready(ProxyBuilder::new());
    let before = scrape(&proxy);
    let bytes_in = before.must("mcp_proxy_http_received_bytes_total", &[]);
    let bytes_out = before.must("mcp_proxy_http_sent_bytes_total", &[]);
    const N: i64 = 7;
    for i in 0..N {
        let answer = call(&proxy, Some(&session), i, "mock__echo", json!({ "text": format!("m{i}") }));
        assert_eq!(result_text(&answer), format!("m{i}"));
    }
    // A tool that reports a failure in its result is a successful request, not an error.
    let failed = call(&proxy, Some(&session), 100, "mock__fail", json!({}));
    assert_eq!(failed.pointer("/result/isError"), Some(&json!(true)), "{failed}");
    // One slower call, to land in a higher bucket.
    call(&proxy, Some(&session), 101, "mock__sleep", json!({ "ms": 300 }));

    let after = scrape_until(&proxy, "the calls counted", |m| requests(m) >= requests(&before) + N as f64 + 2.0);
    let calls = N as f64 + 2.0;
    assert_eq!(requests(&after) - requests(&before), calls, "{}", after.text);
    assert_eq!(errors(&after) - errors(&before), 0.0, "{}", after.text);
    assert_eq!(histogram_count(&after) - histogram_count(&before), calls, "{}", after.text);
    let inf = [("backend", "mock"), ("le", "+Inf")];
    assert_eq!(after.must("mcp_proxy_tool_call_seconds_bucket", &inf), histogram_count(&after), "{}", after.text);
    let sum = after.must("mcp_proxy_tool_call_seconds_sum", &MOCK) - before.count("mcp_proxy_tool_call_seconds_sum", &MOCK);
    assert!((0.3..30.0).contains(&sum), "the sum holds the 300 ms sleep: {sum}\n{}", after.text);
    // Buckets are cumulative: never decreasing with `le`, the 0.25 s bucket misses the sleep, 0.5 s has it.
    let buckets: Vec<(f64, f64)> = after
        .samples
        .iter()
        .filter(|(n, l, _)| n == "mcp_proxy_tool_call_seconds_bucket" && l["backend"] == "mock")
        .map(|(_, l, v)| (if l["le"] == "+Inf" { f64::INFINITY } else { l["le"].parse().unwrap() }, *v))
        .collect();
    assert!(buckets.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1), "buckets not cumulative: {buckets:?}");
    let bucket = |le: &str| after.must("mcp_proxy_tool_call_seconds_bucket", &[("backend", "mock"), ("le", le)]);
    assert_eq!(bucket("0.5") - bucket("0.25"), 1.0, "{}", after.text);
    // Other methods are counted under their own name.
    let listed = proxy.post_mcp(Some(&session), &rpc(200, "prompts/get", json!({ "name": "greet", "arguments": { "who": "x" } })));
    assert_eq!(listed.status, 200, "{listed:?}");
    let prompts = scrape_until(&proxy, "prompts/get counted", |m| {
        m.get("mcp_proxy_backend_requests_total", &[("backend", "mock"), ("method", "prompts/get")]).is_some()
    });
    assert_eq!(requests(&prompts), requests(&after), "prompts/get is not a tools/call");
    assert!(prompts.must("mcp_proxy_http_received_bytes_total", &[]) > bytes_in);
    assert!(prompts.must("mcp_proxy_http_sent_bytes_total", &[]) > bytes_out);
}

#[test]
fn a_timed_out_call_counts_as_an_error() {
    let (proxy, session) = ready(ProxyBuilder::new().env("MCP_PROXY_REQUEST_TIMEOUT", "1"));
    let before = scrape(&proxy);
    let answer = call(&proxy, Some(&session), 1, "mock__sleep", json!({ "ms": 3000 }));
    assert_eq!(answer.pointer("/error/code").and_then(Value::as_i64), Some(REQUEST_TIMEOUT), "{answer}");
    let after = scrape_until(&proxy, "the timeout counted", |m| errors(m) > errors(&before));
    assert_eq!(requests(&after) - requests(&before), 1.0, "{}", after.text);
    assert_eq!(errors(&after) - errors(&before), 1.0, "{}", after.text);
    assert_eq!(histogram_count(&after) - histogram_count(&before), 1.0, "{}", after.text);
    let sum = after.must("mcp_proxy_tool_call_seconds_sum", &MOCK) - before.count("mcp_proxy_tool_call_seconds_sum", &MOCK);
    assert!(sum >= 0.9, "the timed-out call took about 1 s: {sum}");
    assert_eq!(after.must("mcp_proxy_backend_up", &MOCK), 1.0, "a timeout does not take the backend down");
}

#[test]
fn a_crash_counts_as_an_error_and_the_backend_stays_down_during_a_long_backoff() {
    let builder = ProxyBuilder::new().env("MCP_PROXY_RESTART_BACKOFF_MIN", "60").env("MCP_PROXY_RESTART_BACKOFF_MAX", "60");
    let (proxy, session) = ready(builder);
    let before = scrape(&proxy);
    let answer = call(&proxy, Some(&session), 1, "mock__crash", json!({}));
    assert_eq!(answer.pointer("/error/code").and_then(Value::as_i64), Some(BACKEND_UNAVAILABLE), "{answer}");
    let down = scrape_until(&proxy, "mock down", |m| m.get("mcp_proxy_backend_up", &MOCK) == Some(0.0));
    assert_eq!(errors(&down) - errors(&before), 1.0, "{}", down.text);
    assert_eq!(requests(&down) - requests(&before), 1.0, "{}", down.text);
    assert_eq!(down.must("mcp_proxy_backend_restarts_total", &MOCK), 0.0, "{}", down.text);
    // Still down a moment later: the restart is 45-60 s away.
    thread::sleep(Duration::from_millis(500));
    let later = scrape(&proxy);
    assert_eq!(later.must("mcp_proxy_backend_up", &MOCK), 0.0, "{}", later.text);
    assert_eq!(later.must("mcp_proxy_backend_restarts_total", &MOCK), 0.0, "{}", later.text);
}

/// While a backend is down, every call to its tools fails (after the retries) with "server unavailable".
/// Those failures are what an error-rate alert is for, so they must show in the backend's counters,
/// not only the call that crashed it.
#[test]
fn calls_refused_while_the_backend_is_down_count_as_errors() {
    let builder = ProxyBuilder::new()
        .env("MCP_PROXY_RESTART_BACKOFF_MIN", "60")
        .env("MCP_PROXY_RESTART_BACKOFF_MAX", "60")
        .env("STDIO_TOOL_CALL_RETRY_DELAY_BASE_MS", "10");
    let (proxy, session) = ready(builder);
    call(&proxy, Some(&session), 1, "mock__crash", json!({}));
    let down = scrape_until(&proxy, "mock down", |m| m.get("mcp_proxy_backend_up", &MOCK) == Some(0.0));
    for id in 2..5 {
        let answer = call(&proxy, Some(&session), id, "mock__echo", json!({ "text": "x" }));
        assert_eq!(answer.pointer("/error/code").and_then(Value::as_i64), Some(BACKEND_UNAVAILABLE), "{answer}");
    }
    let after = scrape(&proxy);
    assert_eq!(
        errors(&after) - errors(&down),
        3.0,
        "3 calls to mock failed with -32000 while it was down, but mcp_proxy_backend_errors_total did not move:\n{}",
        after.text
    );
    assert_eq!(requests(&after) - requests(&down), 3.0, "{}", after.text);
}

#[test]
fn a_restarted_backend_is_up_again_and_its_restart_is_counted() {
    let builder = ProxyBuilder::new().env("MCP_PROXY_RESTART_BACKOFF_MIN", "0.2").env("MCP_PROXY_RESTART_BACKOFF_MAX", "0.5");
    let (proxy, session) = ready(builder);
    let answer = call(&proxy, Some(&session), 1, "mock__crash", json!({}));
    assert!(answer.get("error").is_some(), "{answer}");
    let back = scrape_until(&proxy, "mock restarted and up", |m| {
        m.get("mcp_proxy_backend_restarts_total", &MOCK) == Some(1.0) && m.get("mcp_proxy_backend_up", &MOCK) == Some(1.0)
    });
    assert_eq!(errors(&back), 1.0, "{}", back.text);
    // The counters survive the restart and go on counting.
    let echo = call(&proxy, Some(&session), 2, "mock__echo", json!({ "text": "back" }));
    assert_eq!(result_text(&echo), "back");
    let after = scrape_until(&proxy, "the call after the restart", |m| requests(m) == 2.0);
    assert_eq!(histogram_count(&after), 2.0, "{}", after.text);
    assert_eq!(errors(&after), 1.0, "{}", after.text);
}

#[test]
fn the_sessions_gauge_follows_sessions_opened_and_closed() {
    // A closed SSE stream is noticed when the next keep-alive comment cannot be written: make that soon.
    let (proxy, first) = ready(ProxyBuilder::new().env("MCP_PROXY_SSE_KEEPALIVE", "0.3"));
    assert_eq!(sessions(&scrape(&proxy), "streamable_http"), 1.0);
    let second = proxy.initialize();
    assert_eq!(sessions(&scrape(&proxy), "streamable_http"), 2.0);

    let deleted = proxy.request(&Req::new("DELETE", "/mcp").header("Mcp-Session-Id", &first));
    assert!((200..300).contains(&deleted.status), "DELETE: {deleted:?}");
    scrape_until(&proxy, "one Streamable HTTP session", |m| sessions(m, "streamable_http") == 1.0);

    // Legacy SSE: a session lives as long as its stream.
    let sse = proxy.open_sse(&[]);
    let open = scrape_until(&proxy, "one SSE session", |m| sessions(m, "sse") == 1.0);
    assert_eq!(sessions(&open, "streamable_http"), 1.0);
    drop(sse);
    scrape_until(&proxy, "the SSE session gone", |m| sessions(m, "sse") == 0.0);

    let deleted = proxy.request(&Req::new("DELETE", "/mcp").header("Mcp-Session-Id", &second));
    assert!((200..300).contains(&deleted.status), "DELETE: {deleted:?}");
    let none = scrape_until(&proxy, "no session", |m| sessions(m, "streamable_http") == 0.0);
    assert_eq!(sessions(&none, "stdio"), 0.0);
}

#[test]
fn an_idle_session_that_expires_leaves_the_sessions_gauge() {
    let (proxy, _session) = ready(ProxyBuilder::new().env("MCP_PROXY_SESSION_IDLE_TIMEOUT", "1"));
    assert_eq!(sessions(&scrape(&proxy), "streamable_http"), 1.0);
    scrape_until(&proxy, "the idle session expired", |m| sessions(m, "streamable_http") == 0.0);
}

#[test]
fn metrics_need_a_key_or_token_when_keys_are_set() {
    let builder = ProxyBuilder::new().env("ALLOWED_KEYS", "metrics-key-1").env("ALLOWED_TOKENS", "metrics-token-1");
    let proxy = builder.start();
    for headers in [&[][..], &[("X-Api-Key", "wrong-key")][..], &[("Authorization", "Bearer wrong-token")][..]] {
        let refused = proxy.request(&Req::get("/metrics").headers(headers));
        assert_eq!(refused.status, 401, "GET /metrics with {headers:?}: {refused:?}");
        assert!(refused.header("www-authenticate").is_some(), "401 without WWW-Authenticate: {refused:?}");
        assert!(!refused.text().contains("mcp_proxy_"), "a refusal must not leak metrics: {refused:?}");
    }
    let refused = proxy.request(&Req::get("/metrics?key=wrong-key"));
    assert_eq!(refused.status, 401, "{refused:?}");
    scrape_with(&proxy, &[("X-Api-Key", "metrics-key-1")]);
    scrape_with(&proxy, &[("Authorization", "Bearer metrics-token-1")]);
    let by_query = proxy.request(&Req::get("/metrics?key=metrics-key-1"));
    assert_eq!(by_query.status, 200, "{by_query:?}");
    // Liveness stays open to anyone (load balancers, orchestrators).
    assert_eq!(proxy.request(&Req::get("/health")).status, 200);
}

#[test]
fn metrics_are_open_when_no_key_is_set() {
    let proxy = ProxyBuilder::new().start();
    scrape(&proxy);
}

// ----- JSON logs ----------------------------------------------------------------------------------------

/// Every non-empty stderr line as a JSON object with `ts`, `level` and `msg` (fails on any other line).
fn json_lines(stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line:?}"));
            let ts = value["ts"].as_str().unwrap_or_else(|| panic!("no ts: {line}"));
            let ts_ok = ts.len() == 20
                && ts.bytes().enumerate().all(|(i, b)| match i {
                    4 | 7 => b == b'-',
                    10 => b == b'T',
                    13 | 16 => b == b':',
                    19 => b == b'Z',
                    _ => b.is_ascii_digit(),
                });
            assert!(ts_ok, "ts is not YYYY-MM-DDTHH:MM:SSZ: {line}");
            let level = value["level"].as_str().unwrap_or_else(|| panic!("no level: {line}"));
            assert!(["ERROR", "WARN", "INFO", "DEBUG", "TRACE"].contains(&level), "bad level: {line}");
            assert!(value["msg"].is_string(), "no msg: {line}");
            value
        })
        .collect()
}

#[test]
fn json_log_lines_all_parse_and_a_backends_stderr_names_it() {
    let builder = ProxyBuilder::new().env("MCP_PROXY_LOG_FORMAT", "json").env("LOGGING", "debug").env("ALLOWED_KEYS", "log-secret-key");
    let (mut proxy, session) = {
        let proxy = builder.start();
        proxy.wait_backends_connected(&[("X-Api-Key", "log-secret-key")]);
        let response = proxy.request(&mcp_post(None, &initialize_request(0)).header("X-Api-Key", "log-secret-key"));
        assert_eq!(response.status, 200, "{response:?}");
        let session = response.header("mcp-session-id").unwrap().to_owned();
        (proxy, session)
    };
    // Quotes, a backslash, a tab, non-ASCII and a secret: the line must stay one valid JSON object.
    let text = "marker-7f3a \"quoted\" back\\slash\ttab ünïcödé log-secret-key";
    let req = mcp_post(Some(&session), &tool_call(1, "mock__stderr", json!({ "text": text }))).header("X-Api-Key", "log-secret-key");
    let response = proxy.request(&req);
    assert_eq!(response.status, 200, "{response:?}");
    let stderr = proxy.wait_for_stderr("marker-7f3a");
    let lines = json_lines(&stderr);
    let line = lines
        .iter()
        .find(|l| l["msg"].as_str().unwrap().contains("marker-7f3a"))
        .unwrap_or_else(|| panic!("no JSON line with the backend's stderr:\n{stderr}"));
    assert_eq!(line["backend"], "mock", "{line}");
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["msg"], "[mock] marker-7f3a \"quoted\" back\\slash\ttab ünïcödé ***", "{line}");
    assert!(!stderr.contains("log-secret-key"), "a secret reached the log:\n{stderr}");
    // The backend's own start-up line names it too; the proxy's own lines carry no backend.
    assert!(lines.iter().any(|l| l["backend"] == "mock" && l["msg"].as_str().unwrap().contains("mock server mock starting")), "{stderr}");
    let listening = lines.iter().find(|l| l["msg"].as_str().unwrap().starts_with("listening on")).expect("listening line");
    assert!(listening.get("backend").is_none(), "{listening}");
}

/// Runs the binary to completion with `args` and a config of one mock backend; (status, stdout, stderr).
fn run_once(args: &[&str], env: &[(&str, &str)]) -> (std::process::ExitStatus, String, String) {
    let dir = std::env::temp_dir().join(support::unique("mcp-proxy-ops-test"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("mcp_server.json");
    let mock = support::MOCK_SERVER;
    std::fs::write(&config, json!({ "mcpServers": { "mock": { "command": "python3", "args": [mock, "--name", "mock"] } } }).to_string())
        .unwrap();
    let mut command = Command::new(PROXY_BIN);
    command.arg("--config").arg(&config).args(args);
    for name in ["LOGGING", "RUST_LOG", "MCP_PROXY_LOG_FORMAT", "MCP_PROXY_CONFIG"] {
        command.env_remove(name);
    }
    command.envs(env.iter().copied()).stdin(Stdio::null());
    let output = command.output().expect("run the proxy");
    let _ = std::fs::remove_dir_all(&dir);
    (output.status, String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn log_format_flag_gives_json_lines_and_text_is_the_default() {
    let (status, stdout, stderr) = run_once(&["--log-format", "json", "--list-tools"], &[]);
    assert!(status.success(), "{status:?}\n{stderr}");
    assert!(stdout.contains("mock__echo"), "stdout: {stdout}");
    let lines = json_lines(&stderr);
    assert!(lines.iter().any(|l| l["backend"] == "mock"), "no line names the backend:\n{stderr}");

    let (status, _, stderr) = run_once(&["--list-tools"], &[]);
    assert!(status.success(), "{status:?}\n{stderr}");
    assert!(stderr.lines().any(|l| !l.is_empty()) && stderr.lines().all(|l| !l.starts_with('{')), "text by default:\n{stderr}");

    // The flag wins over the environment.
    let (status, _, stderr) = run_once(&["--log-format", "text", "--list-tools"], &[("MCP_PROXY_LOG_FORMAT", "json")]);
    assert!(status.success(), "{status:?}\n{stderr}");
    assert!(stderr.lines().all(|l| !l.starts_with('{')), "--log-format text must win:\n{stderr}");
}

#[test]
fn an_unknown_log_format_is_a_usage_error() {
    let (status, _, stderr) = run_once(&["--log-format", "xml", "--list-tools"], &[]);
    assert!(!status.success(), "{status:?}");
    assert!(stderr.contains("xml"), "{stderr}");
}

#[test]
fn an_oauth_issuer_without_a_resource_is_a_usage_error() {
    let (status, _, stderr) = run_once(&["--sse"], &[("MCP_PROXY_OAUTH_ISSUER", "https://as.example")]);
    assert_eq!(status.code(), Some(2), "{status:?}\n{stderr}");
    assert!(stderr.contains("MCP_PROXY_OAUTH_ISSUER needs MCP_PROXY_OAUTH_RESOURCE"), "{stderr}");
}

// ----- stateless mode -----------------------------------------------------------------------------------

fn stateless() -> HttpProxy {
    let proxy = ProxyBuilder::new().env("MCP_PROXY_STATELESS", "true").start();
    proxy.wait_backends_connected(&[]);
    proxy
}

#[test]
fn stateless_answers_a_tool_call_without_any_session() {
    let proxy = stateless();
    // No initialize at all: a request stands alone.
    let response = proxy.post_mcp(None, &tool_call(1, "mock__echo", json!({ "text": "alone" })));
    assert_eq!(response.status, 200, "{response:?}");
    assert!(response.header("mcp-session-id").is_none(), "no session in stateless mode: {response:?}");
    assert_eq!(result_text(&response.json()), "alone");

    let init = proxy.post_mcp(None, &initialize_request(2));
    assert_eq!(init.status, 200, "{init:?}");
    assert!(init.header("mcp-session-id").is_none(), "initialize opens no session: {init:?}");
    assert!(init.json().pointer("/result/protocolVersion").is_some(), "{init:?}");

    let initialized = proxy.post_mcp(None, &notification("notifications/initialized", json!({})));
    assert_eq!(initialized.status, 202, "{initialized:?}");

    let listed = proxy.post_mcp(None, &rpc(3, "tools/list", json!({})));
    assert_eq!(listed.status, 200, "{listed:?}");
    assert!(listed.json()["result"]["tools"].as_array().is_some_and(|t| t.iter().any(|t| t["name"] == "mock__echo")), "{listed:?}");

    // A session id some client still sends is ignored, never a 404.
    let stale = proxy.post_mcp(Some("i9-0123456789abcdef0123456789abcdef"), &tool_call(4, "mock__echo", json!({ "text": "stale" })));
    assert_eq!(stale.status, 200, "{stale:?}");
    assert_eq!(result_text(&stale.json()), "stale");
}

#[test]
fn stateless_refuses_get_and_delete_with_405() {
    let proxy = stateless();
    let get = proxy.request(&Req::get("/mcp").header("Accept", "text/event-stream"));
    assert_eq!(get.status, 405, "{get:?}");
    assert!(get.header("allow").is_some_and(|a| a.contains("POST")), "{get:?}");
    let get = proxy.request(&Req::get("/mcp").header("Accept", "text/event-stream").header("Mcp-Session-Id", "x"));
    assert_eq!(get.status, 405, "{get:?}");
    let delete = proxy.request(&Req::new("DELETE", "/mcp").header("Mcp-Session-Id", "x"));
    assert_eq!(delete.status, 405, "{delete:?}");
}

#[test]
fn stateless_requests_leave_no_session_behind() {
    let proxy = stateless();
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let addr = proxy.addr();
            thread::spawn(move || {
                let mut conn = http::Conn::open(addr);
                let response = conn.roundtrip(&mcp_post(None, &tool_call(i, "mock__sleep", json!({ "ms": 100, "text": format!("t{i}") }))));
                assert_eq!(response.status, 200, "{response:?}");
                let body = response.json();
                assert_eq!(body["id"], i, "each POST gets its own answer: {body}");
                assert_eq!(result_text(&body), format!("slept 100 t{i}"));
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("a stateless call failed");
    }
    let m = scrape_until(&proxy, "no session left", |m| sessions(m, "streamable_http") == 0.0);
    assert_eq!(requests(&m), 8.0, "{}", m.text);
}

#[test]
fn stateless_streams_progress_before_the_answer() {
    let proxy = stateless();
    let call = json!({ "jsonrpc": "2.0", "id": 9, "method": "tools/call",
        "params": { "name": "mock__progress", "arguments": { "steps": 3, "ms": 10 }, "_meta": { "progressToken": "p-1" } } });
    let response = proxy.request(&Req::post("/mcp").json(&call).header("Accept", MCP_ACCEPT));
    assert_eq!(response.status, 200, "{response:?}");
    assert!(response.content_type().starts_with("text/event-stream"), "{response:?}");
    let messages: Vec<Value> = response.events().iter().map(|e| e.json()).collect();
    let progress: Vec<&Value> = messages.iter().filter(|m| m["method"] == "notifications/progress").collect();
    assert_eq!(progress.len(), 3, "{messages:?}");
    assert!(progress.iter().all(|p| p["params"]["progressToken"] == "p-1"), "the client's token comes back: {messages:?}");
    assert_eq!(messages.last().unwrap()["id"], 9, "the stream ends with the answer: {messages:?}");
}

// ----- instance ids -------------------------------------------------------------------------------------

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[test]
fn the_instance_id_prefixes_every_session_id() {
    let (proxy, session) = ready(ProxyBuilder::new().env("MCP_PROXY_INSTANCE_ID", "node-7"));
    let random = session.strip_prefix("node-7-").unwrap_or_else(|| panic!("session id {session:?} lacks the prefix"));
    assert!(is_hex(random) && random.len() >= 32, "128 random bits after the prefix: {session}");
    // The prefixed session is a normal session.
    assert_eq!(result_text(&call(&proxy, Some(&session), 1, "mock__echo", json!({ "text": "hi" }))), "hi");
    let other = proxy.initialize();
    assert!(other.starts_with("node-7-") && other != session, "{other} vs {session}");
    // Legacy SSE session ids carry it too (nginx routes /message?sessionId= by it).
    let sse = proxy.open_sse(&[]);
    assert!(sse.session.starts_with("node-7-"), "SSE session {:?} (endpoint {:?})", sse.session, sse.endpoint);
    let deleted = proxy.request(&Req::new("DELETE", "/mcp").header("Mcp-Session-Id", &session));
    assert!((200..300).contains(&deleted.status), "{deleted:?}");
}

#[test]
fn without_an_instance_id_session_ids_are_plain_random_hex() {
    let (_proxy, session) = ready(ProxyBuilder::new());
    assert!(is_hex(&session) && session.len() >= 32, "{session}");
}

/// An instance id that cannot go into a header unquoted (here with a `/`) is not used. The operator
/// must be told, since a load balancer routing on the prefix would then spread sessions at random.
#[test]
fn an_invalid_instance_id_is_not_used_and_is_reported() {
    let (proxy, session) = ready(ProxyBuilder::new().env("MCP_PROXY_INSTANCE_ID", "bad/id"));
    assert!(is_hex(&session), "an invalid instance id must not reach the session id: {session}");
    let stderr = proxy.stderr();
    assert!(
        stderr.lines().any(|l| l.contains("MCP_PROXY_INSTANCE_ID")),
        "no warning names MCP_PROXY_INSTANCE_ID 'bad/id' (it was silently ignored):\n{stderr}"
    );
}

#[test]
fn stateless_mode_with_an_instance_id_still_sends_no_session_id() {
    let proxy = ProxyBuilder::new().env("MCP_PROXY_STATELESS", "true").env("MCP_PROXY_INSTANCE_ID", "i1").start();
    let init = proxy.post_mcp(None, &initialize_request(1));
    assert_eq!(init.status, 200, "{init:?}");
    assert!(init.header("mcp-session-id").is_none(), "{init:?}");
}
