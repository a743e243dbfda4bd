//! Isolation per client session (`"isolation": "session"`), end to end: the real binary in front of the
//! mock backend of `tests/fixtures/mock_server.py`, keyed `iso` (isolated) and, for contrast, `shared`.
//!
//! Each client session (a Streamable HTTP session, a legacy SSE session, the stdio client) gets its own
//! process of an isolated server, started by its first call (the template, started with the proxy,
//! answers `tools/list`); the mock's `count` tool (a counter of its process, with its pid) shows whose
//! process answered. What is checked: state kept per session, a crash that stays with its session,
//! `maxInstances`, instances stopped with their session (DELETE, SSE stream closed, session expiry,
//! stdin EOF) or when idle, `/health` and `/metrics`, and no process left after the proxy exits.
//! Processes are counted as the proxy's live children in `/proc`. One behaviour per test, named for it.

mod support;

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::http::{self, mcp_post, rpc, tool_call, Conn, HttpProxy, Req};
use support::stdio;
use support::{children_of, config, error_code, live_processes_with, mock, poll, result_text, running, signal, unique, with, WAIT};

const BACKEND_UNAVAILABLE: i64 = -32000;

// ----- helpers ------------------------------------------------------------------------------------------

/// The mock run as `--name <marker>`, one instance per client session, with `extra` settings
/// (`maxInstances`, `idleTimeout`).
fn isolated(marker: &str, extra: Value) -> Value {
    with(with(mock(marker), json!({ "isolation": "session" })), extra)
}

/// The proxy in HTTP mode on `servers`, with `env`, once every server (template) is connected.
fn http_proxy(servers: &[(&str, Value)], env: &[(&str, &str)]) -> HttpProxy {
    let mut builder = http::ProxyBuilder::new().config(&config(servers));
    for (name, value) in env {
        builder = builder.env(name, value);
    }
    let proxy = builder.start();
    proxy.wait_backends_connected(&[]);
    proxy
}

/// The proxy in HTTP mode with one isolated server, `iso`, run as `--name <marker>`.
fn iso_proxy(marker: &str, extra: Value, env: &[(&str, &str)]) -> HttpProxy {
    http_proxy(&[("iso", isolated(marker, extra))], env)
}

/// A `tools/call` in a Streamable HTTP session: the JSON-RPC response (from a JSON body, or from the
/// event stream the answer came on).
fn call(proxy: &HttpProxy, session: &str, name: &str, arguments: Value) -> Value {
    let response = proxy.post_mcp(Some(session), &tool_call("call", name, arguments));
    if response.status != 200 {
        proxy.fail(&format!("tools/call {name}: {response:?}"));
    }
    if !response.content_type().starts_with("text/event-stream") {
        return response.json();
    }
    let answer = response.events().into_iter().map(|e| e.json()).find(|m| m["id"] == "call" && m.get("method").is_none());
    answer.unwrap_or_else(|| proxy.fail(&format!("no answer on the stream of tools/call {name}: {response:?}")))
}

/// `tool` (a mock's `count`) called in `session`: the count and the pid of the process that answered.
fn count(proxy: &HttpProxy, session: &str, tool: &str) -> (u64, u64) {
    let response = call(proxy, session, tool, json!({}));
    let counted = response.pointer("/result/structuredContent/count").and_then(Value::as_u64);
    let pid = response.pointer("/result/structuredContent/pid").and_then(Value::as_u64);
    match (counted, pid) {
        (Some(counted), Some(pid)) => (counted, pid),
        _ => proxy.fail(&format!("{tool} in session {session} did not count: {response}")),
    }
}

/// The message of an error response.
fn error_message(response: &Value) -> &str {
    response.pointer("/error/message").and_then(Value::as_str).unwrap_or_default()
}

/// Waits until the proxy has `n` live children; fails naming `what` and the children it has.
fn wait_children(proxy: &HttpProxy, n: usize, what: &str) {
    let pid = proxy.pid();
    if poll(WAIT, || (children_of(pid).len() == n).then_some(())).is_none() {
        proxy.fail(&format!("{what}: expected {n} children of the proxy, found {:?}", children_of(pid)));
    }
}

/// `/health`'s instances of the isolated server `iso`.
fn instances(proxy: &HttpProxy) -> Vec<Value> {
    let health = proxy.health(&[]);
    let iso = health["backends"].as_array().and_then(|all| all.iter().find(|b| b["key"] == "iso")).cloned();
    match iso.as_ref().and_then(|b| b["instances"].as_array()) {
        Some(instances) => instances.clone(),
        None => proxy.fail(&format!("no instances of 'iso' in /health: {health}")),
    }
}

/// `mcp_proxy_backend_instances{backend="iso"}` from `/metrics`.
fn instances_metric(proxy: &HttpProxy) -> String {
    let page = proxy.request(&Req::get("/metrics")).text();
    let line = page.lines().find_map(|l| l.strip_prefix("mcp_proxy_backend_instances{backend=\"iso\"} "));
    line.map(str::to_owned).unwrap_or_else(|| proxy.fail(&format!("no instances gauge for 'iso' in /metrics:\n{page}")))
}

fn delete_session(proxy: &HttpProxy, session: &str) {
    let deleted = proxy.request(&Req::new("DELETE", "/mcp").header("Mcp-Session-Id", session));
    assert!((200..300).contains(&deleted.status), "DELETE: {deleted:?}");
}

// ----- state per session --------------------------------------------------------------------------------

#[test]
fn sessions_never_see_each_others_count_on_an_isolated_server_but_share_it_on_a_shared_one() {
    let marker = unique("iso-count");
    let proxy = http_proxy(&[("iso", isolated(&marker, json!({}))), ("shared", mock(&format!("{marker}-shared")))], &[]);
    let (a, b) = (proxy.initialize(), proxy.initialize());

    let (first, a_pid) = count(&proxy, &a, "iso__count");
    assert_eq!(first, 1);
    assert_eq!(count(&proxy, &a, "iso__count"), (2, a_pid));
    let (b_first, b_pid) = count(&proxy, &b, "iso__count");
    assert_eq!(b_first, 1, "B saw A's count");
    assert_ne!(b_pid, a_pid, "A and B were answered by one process");
    assert_eq!(count(&proxy, &a, "iso__count"), (3, a_pid), "A saw B's count");

    let (shared_a, shared_pid) = count(&proxy, &a, "shared__count");
    let (shared_b, shared_b_pid) = count(&proxy, &b, "shared__count");
    assert_eq!((shared_a, shared_b), (1, 2), "the shared server counts for everyone");
    assert_eq!(shared_b_pid, shared_pid);
}

// ----- a crash stays with its session -------------------------------------------------------------------

#[test]
fn crashed_instance_fails_its_sessions_calls_leaves_other_sessions_alone_and_restarts_on_the_next_call() {
    let marker = unique("iso-crash");
    let proxy = iso_proxy(&marker, json!({}), &[]);
    let (a, b) = (proxy.initialize(), proxy.initialize());
    let (_, a_pid) = count(&proxy, &a, "iso__count");
    assert_eq!(count(&proxy, &b, "iso__count").0, 1);

    // A has a call in flight (its first progress event shows it is under way) when its instance crashes.
    let long = rpc(
        "long",
        "tools/call",
        json!({ "name": "iso__progress", "arguments": { "steps": 50, "ms": 100 }, "_meta": { "progressToken": "p" } }),
    );
    let mut conn = Conn::open(proxy.addr());
    conn.send(&mcp_post(Some(&a), &long));
    let head = conn.head();
    assert_eq!(head.status, 200, "{head:?}");
    let mut in_flight = conn.into_events(&head);
    let progress = in_flight.next_message(WAIT);
    assert_eq!(progress["method"], "notifications/progress", "{progress}");

    let asked = Instant::now();
    let crashed = call(&proxy, &a, "iso__crash", json!({}));
    assert!(asked.elapsed() < Duration::from_secs(2), "the crash was answered after {:?}", asked.elapsed());
    assert_eq!(error_code(&crashed), Some(BACKEND_UNAVAILABLE), "{crashed}");
    assert!(error_message(&crashed).contains("server 'iso' exited"), "the error should say the server exited: {crashed}");
    let (failed, _) = in_flight.wait_message(WAIT, |m| m["id"] == "long");
    assert_eq!(error_code(&failed), Some(BACKEND_UNAVAILABLE), "A's call in flight: {failed}");
    assert!(error_message(&failed).contains("'iso'"), "{failed}");

    // B's instance never noticed: same process, same count.
    assert_eq!(count(&proxy, &b, "iso__count").0, 2);
    // A's next call starts a new process, with a new count.
    let (again, new_pid) = count(&proxy, &a, "iso__count");
    assert_eq!(again, 1, "A's count should start over in a new process");
    assert_ne!(new_pid, a_pid, "A's instance was not restarted");
    let restarts: Vec<u64> = instances(&proxy).iter().filter_map(|i| i["restarts"].as_u64()).collect();
    assert_eq!(restarts.iter().sum::<u64>(), 1, "one restart, A's: {restarts:?}");
    wait_children(&proxy, 3, "the template and the two instances");
}

// ----- limits -------------------------------------------------------------------------------------------

#[test]
fn session_past_max_instances_is_refused_naming_the_server_and_limit_until_another_session_ends() {
    let marker = unique("iso-max");
    let proxy = iso_proxy(&marker, json!({ "maxInstances": 2 }), &[]);
    let sessions = [proxy.initialize(), proxy.initialize(), proxy.initialize()];
    assert_eq!(count(&proxy, &sessions[0], "iso__count").0, 1);
    assert_eq!(count(&proxy, &sessions[1], "iso__count").0, 1);

    let refused = call(&proxy, &sessions[2], "iso__count", json!({}));
    assert_eq!(error_code(&refused), Some(BACKEND_UNAVAILABLE), "{refused}");
    let message = error_message(&refused);
    assert!(message.contains("'iso'") && message.contains("\"maxInstances\": 2"), "the error should name the server and limit: {refused}");
    wait_children(&proxy, 3, "no third instance");

    delete_session(&proxy, &sessions[0]);
    assert_eq!(count(&proxy, &sessions[2], "iso__count").0, 1, "the freed place should go to the waiting session");
}

// ----- instances stop ------------------------------------------------------------------------------------

#[test]
fn instance_starts_on_its_sessions_first_call_and_stops_when_the_session_is_deleted() {
    let marker = unique("iso-delete");
    let proxy = iso_proxy(&marker, json!({}), &[]);
    wait_children(&proxy, 1, "the template alone");
    let (a, b) = (proxy.initialize(), proxy.initialize());
    let listed = proxy.post_mcp(Some(&a), &rpc(1, "tools/list", json!({}))).json();
    assert!(listed.to_string().contains("iso__count"), "{listed}");
    wait_children(&proxy, 1, "nothing started by initialize or tools/list");
    assert!(instances(&proxy).is_empty());

    count(&proxy, &a, "iso__count");
    let (_, b_pid) = count(&proxy, &b, "iso__count");
    wait_children(&proxy, 3, "the template and two instances");
    let running = instances(&proxy);
    assert_eq!(running.len(), 2, "{running:?}");
    assert!(running.iter().all(|i| i["state"] == "connected" && i["restarts"] == 0 && i["ageSecs"].is_u64()), "{running:?}");
    assert_eq!(instances_metric(&proxy), "2");

    delete_session(&proxy, &a);
    wait_children(&proxy, 2, "A's instance stopped with its session");
    assert_eq!(instances(&proxy).len(), 1);
    assert_eq!(instances_metric(&proxy), "1");
    assert_eq!(count(&proxy, &b, "iso__count"), (2, b_pid), "B's instance should be untouched");
}

#[test]
fn idle_instance_stops_after_its_idle_timeout_and_the_next_call_starts_a_new_one() {
    let marker = unique("iso-idle");
    let proxy = iso_proxy(&marker, json!({ "idleTimeout": 0.5 }), &[]);
    let a = proxy.initialize();
    assert_eq!(count(&proxy, &a, "iso__count").0, 1);
    let answered = Instant::now();
    assert_eq!(instances(&proxy).len(), 1);

    wait_children(&proxy, 1, "the idle instance stopped");
    let idle = answered.elapsed();
    assert!(idle >= Duration::from_millis(450), "stopped after {idle:?}, before its idle timeout");
    assert!(instances(&proxy).is_empty());
    assert_eq!(count(&proxy, &a, "iso__count").0, 1, "the session lives on; its next call gets a new instance");
    wait_children(&proxy, 2, "the new instance");
}

#[test]
fn instance_busy_with_a_call_is_not_stopped_by_its_idle_timeout() {
    let marker = unique("iso-busy");
    let proxy = iso_proxy(&marker, json!({ "idleTimeout": 0.3 }), &[]);
    let a = proxy.initialize();
    let response = call(&proxy, &a, "iso__sleep", json!({ "ms": 1200 }));
    assert_eq!(result_text(&response), "slept 1200 ", "{response}");
}

#[test]
fn instance_stops_when_its_session_expires_idle() {
    let marker = unique("iso-expiry");
    let proxy = iso_proxy(&marker, json!({}), &[("MCP_PROXY_SESSION_IDLE_TIMEOUT", "1")]);
    let a = proxy.initialize();
    count(&proxy, &a, "iso__count");
    wait_children(&proxy, 2, "the template and A's instance");

    wait_children(&proxy, 1, "A's instance stopped with its expired session");
    assert!(instances(&proxy).is_empty());
    let gone = proxy.post_mcp(Some(&a), &tool_call(2, "iso__count", json!({})));
    assert_eq!(gone.status, 404, "the session should have expired: {gone:?}");
}

#[test]
fn legacy_sse_session_gets_its_own_instance_which_stops_when_its_stream_closes() {
    let marker = unique("iso-sse");
    let proxy = iso_proxy(&marker, json!({}), &[("MCP_PROXY_SSE_KEEPALIVE", "0.2")]);
    let mut sse = proxy.open_sse(&[]);
    let post = |message: &Value| {
        let accepted = proxy.request(&Req::post(&sse.endpoint).json(message));
        assert_eq!(accepted.status, 202, "{accepted:?}");
    };
    post(&http::initialize_request(0));
    assert_eq!(sse.events.next_message(WAIT)["id"], 0);
    post(&http::notification("notifications/initialized", json!({})));
    for expected in ["1", "2"] {
        post(&tool_call(expected, "iso__count", json!({})));
        let (answer, _) = sse.events.wait_message(WAIT, |m| m["id"] == expected);
        assert_eq!(result_text(&answer), expected, "{answer}");
    }
    wait_children(&proxy, 2, "the template and the SSE session's instance");

    drop(sse);
    wait_children(&proxy, 1, "the instance stopped with the SSE stream");
    assert!(instances(&proxy).is_empty());
}

// ----- no process outlives the proxy --------------------------------------------------------------------

/// Waits until none of `pids` runs and no live process holds `marker`.
fn assert_all_gone(pids: &[u32], marker: &str, after: &str) {
    let gone = poll(WAIT, || {
        let left: Vec<u32> = pids.iter().copied().filter(|pid| running(*pid as i32, None)).collect();
        (left.is_empty() && live_processes_with(marker).is_empty()).then_some(())
    });
    if gone.is_none() {
        let left = live_processes_with(marker);
        for (pid, _) in &left {
            signal(*pid, libc::SIGKILL); // Not to linger after a failure.
        }
        panic!("processes left after {after}: {left:?} (children before: {pids:?})");
    }
}

#[test]
fn no_instance_process_is_left_after_the_proxy_exits() {
    let marker = unique("iso-exit");
    let mut proxy = iso_proxy(&marker, json!({}), &[]);
    for _ in 0..3 {
        let session = proxy.initialize();
        count(&proxy, &session, "iso__count");
    }
    wait_children(&proxy, 4, "the template and three instances");
    let children = children_of(proxy.pid());
    signal(proxy.pid(), libc::SIGTERM);
    proxy.wait_exit(WAIT);
    assert_all_gone(&children, &marker, "SIGTERM");
}

// ----- over stdio ---------------------------------------------------------------------------------------

/// The proxy over stdio with one isolated server, `iso`, run as `--name <marker>`; initialized.
fn stdio_proxy(marker: &str) -> stdio::Proxy {
    let mut proxy = stdio::start_initialized(&config(&[("iso", isolated(marker, json!({})))]));
    assert!(proxy.tool_names().contains(&"iso__count".to_owned()));
    proxy
}

fn stdio_count(proxy: &mut stdio::Proxy) -> u64 {
    let response = proxy.call_tool("iso__count", json!({}));
    let counted = response.pointer("/result/structuredContent/count").and_then(Value::as_u64);
    counted.unwrap_or_else(|| proxy.fail(&format!("iso__count did not count: {response}")))
}

fn stdio_children(proxy: &stdio::Proxy, n: usize, what: &str) -> Vec<u32> {
    let pid = proxy.pid();
    proxy.wait_until(what, WAIT, || Some(children_of(pid)).filter(|c| c.len() == n))
}

#[test]
fn over_stdio_the_clients_first_call_starts_its_instance_beside_the_template() {
    let marker = unique("iso-stdio");
    let mut proxy = stdio_proxy(&marker);
    stdio_children(&proxy, 1, "the template alone after initialize and tools/list");
    assert_eq!(stdio_count(&mut proxy), 1);
    stdio_children(&proxy, 2, "the template and the client's instance");
    assert_eq!(stdio_count(&mut proxy), 2);
    stdio_children(&proxy, 2, "still one instance");
}

#[test]
fn over_stdio_no_process_is_left_after_stdin_eof() {
    let marker = unique("iso-stdio-eof");
    let mut proxy = stdio_proxy(&marker);
    stdio_count(&mut proxy);
    let children = stdio_children(&proxy, 2, "the template and the client's instance");
    proxy.close_stdin();
    proxy.wait_exit(WAIT);
    assert_all_gone(&children, &marker, "stdin EOF");
}

// ----- reload -------------------------------------------------------------------------------------------

#[test]
fn instances_stop_when_a_reload_changes_their_server_and_the_next_call_starts_one_under_the_new_config() {
    let marker = unique("iso-reload");
    let proxy = iso_proxy(&marker, json!({}), &[]);
    let (a, b) = (proxy.initialize(), proxy.initialize());
    count(&proxy, &a, "iso__count");
    count(&proxy, &b, "iso__count");
    wait_children(&proxy, 3, "the template and two instances");
    let before = children_of(proxy.pid());

    let renamed = format!("{marker}-v2");
    std::fs::write(proxy.config_path(), config(&[("iso", isolated(&renamed, json!({})))]).to_string()).expect("cannot rewrite the config");
    signal(proxy.pid(), libc::SIGHUP);
    let replaced = poll(WAIT, || {
        let now = children_of(proxy.pid());
        (now.len() == 1 && !before.contains(&now[0])).then_some(())
    });
    if replaced.is_none() {
        proxy.fail(&format!("expected the new template alone, found {:?} (before: {before:?})", children_of(proxy.pid())));
    }
    assert!(instances(&proxy).is_empty());
    proxy.wait_backends_connected(&[]);
    let whoami = call(&proxy, &a, "iso__whoami", json!({}));
    assert_eq!(result_text(&whoami), renamed, "A's next call should reach an instance of the new config: {whoami}");
    wait_children(&proxy, 2, "the new template and A's new instance");
}
