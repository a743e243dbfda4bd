//! Supervision of backends, end to end: the real binary over stdio (and, for routing server requests,
//! over HTTP) in front of the mock backend of `tests/fixtures/mock_server.py`.
//!
//! A backend that dies mid-call (or whose process exits while a child holds its stdout), a call made
//! while a backend restarts, requests that time out (globally, per server, pushed back by progress),
//! processes left behind when the proxy exits (stdin EOF, SIGTERM, SIGINT, grandchildren behind `sh -c`,
//! one that ignores SIGTERM, a `setsid` daemon the proxy adopted), how long a shutdown takes and what it
//! lets finish, and a backend's request to a client routed to the client whose call it serves. One
//! behaviour per test, named for it.
//!
//! Backends are found in `/proc` by a unique `--name marker-...` argument.

mod support;

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::http::{self, mcp_post, Conn, EventStream, Req};
use support::stdio::{Proxy, ProxyBuilder};
use support::{config, error_code, live_processes_with, mock, mock_with, result_text, signal, unique, wait_until, with, MOCK_SERVER, WAIT};

const BACKEND_UNAVAILABLE: i64 = -32000;
const REQUEST_TIMEOUT: i64 = -32001;
const TOOLS_CHANGED: &str = "notifications/tools/list_changed";

/// A proxy on one mock backend keyed `alpha`, run as `--name <marker>`, with `env`; initialized.
fn proxy_on_alpha(marker: &str, env: &[(&str, &str)]) -> Proxy {
    let mut builder = ProxyBuilder::new(&config(&[("alpha", mock(marker))]));
    for (name, value) in env {
        builder = builder.env(name, value);
    }
    let mut proxy = builder.spawn();
    proxy.initialize();
    proxy
}

/// The pid of the one live process whose command line holds `marker`.
fn pid_of(marker: &str) -> u32 {
    let found = wait_until(&format!("a process with {marker}"), WAIT, || {
        let found = live_processes_with(marker);
        (!found.is_empty()).then_some(found)
    });
    assert_eq!(found.len(), 1, "more than one process holds {marker}: {found:?}");
    found[0].0
}

fn has_alpha_tools(proxy: &mut Proxy) -> bool {
    proxy.tool_names().iter().any(|n| n.starts_with("alpha__"))
}

/// The message of an error response.
fn error_message(response: &Value) -> &str {
    response.pointer("/error/message").and_then(Value::as_str).unwrap_or_default()
}

/// Waits until no live process holds `marker`, or fails listing those that do.
fn assert_none_left(proxy: &Proxy, marker: &str, after: &str) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let left = live_processes_with(marker);
        if left.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            proxy.fail(&format!("processes left 2 s after the proxy exited on {after}: {left:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ----- a backend that dies ------------------------------------------------------------------------------

#[test]
fn backend_killed_mid_call_fails_the_call_at_once_withdraws_its_tools_and_comes_back() {
    let marker = unique("marker-killed");
    // Restarts wait 0.75 to 1 s: long enough to see the tools withdrawn in between.
    let mut proxy = proxy_on_alpha(&marker, &[("MCP_PROXY_RESTART_BACKOFF_MIN", "1")]);
    let pid = pid_of(&marker);
    let call = proxy.start_request("tools/call", json!({ "name": "alpha__sleep", "arguments": { "ms": 3000 } }));
    // The backend reads its stdin in order: once a later call is answered, the sleep is under way.
    assert_eq!(proxy.tool_text("alpha__echo", json!({ "text": "up" })), "up");

    signal(pid, libc::SIGKILL);
    let killed = Instant::now();
    let response = proxy.response(&call);
    let waited = killed.elapsed();
    assert_eq!(error_code(&response), Some(BACKEND_UNAVAILABLE), "{response}");
    assert!(error_message(&response).contains("alpha"), "the error should name the server: {response}");
    assert!(waited < Duration::from_secs(1), "the error came {waited:?} after the kill");

    proxy.notification(TOOLS_CHANGED);
    assert!(!has_alpha_tools(&mut proxy), "the dead backend's tools are still listed");

    proxy.notification(TOOLS_CHANGED);
    assert!(has_alpha_tools(&mut proxy), "the restarted backend's tools are not listed");
    assert_eq!(proxy.tool_text("alpha__echo", json!({ "text": "back" })), "back");
    let new_pid = pid_of(&marker);
    assert_ne!(new_pid, pid, "the backend was not restarted");
}

#[test]
fn backend_whose_process_exits_while_a_child_holds_its_stdout_fails_its_calls_at_once_and_restarts() {
    let marker = unique("marker-leader");
    let holder = unique("stdout-holder");
    let mut proxy = proxy_on_alpha(&marker, &[("MCP_PROXY_RESTART_BACKOFF_MIN", "0.2")]);
    let pid = pid_of(&marker);
    let call = proxy.start_request("tools/call", json!({ "name": "alpha__sleep", "arguments": { "ms": 5000 } }));
    assert_eq!(proxy.tool_text("alpha__echo", json!({ "text": "up" })), "up");

    // The mock starts a child that keeps its stdout open, then exits without answering.
    let asked = Instant::now();
    let crashed = proxy.call_tool("alpha__crash", json!({ "child": holder }));
    let waited = asked.elapsed();
    assert_eq!(error_code(&crashed), Some(BACKEND_UNAVAILABLE), "{crashed}");
    assert!(waited < Duration::from_secs(1), "the error came {waited:?} after the call");
    let sleeping = proxy.response(&call);
    assert_eq!(error_code(&sleeping), Some(BACKEND_UNAVAILABLE), "the call in flight: {sleeping}");

    // The child went with the rest of the backend's process group, and the backend came back.
    wait_until("the stdout holder to be killed", WAIT, || live_processes_with(&holder).is_empty().then_some(()));
    proxy.notification(TOOLS_CHANGED);
    proxy.notification(TOOLS_CHANGED);
    assert_eq!(proxy.tool_text("alpha__echo", json!({ "text": "back" })), "back");
    assert_ne!(pid_of(&marker), pid, "the backend was not restarted");
    let exits = proxy.wait_for_stderr("[alpha] exited").matches("[alpha] exited").count();
    assert_eq!(exits, 1, "one exit, reported once:\n{}", proxy.stderr());
}

// ----- retries of calls to a backend that is down -------------------------------------------------------

#[test]
fn call_made_while_the_backend_restarts_is_retried_and_succeeds() {
    let marker = unique("marker-retry");
    let mut proxy = proxy_on_alpha(
        &marker,
        &[
            ("MCP_PROXY_RESTART_BACKOFF_MIN", "0.2"),
            ("RETRY_STDIO_TOOL_CALL", "true"),
            ("STDIO_TOOL_CALL_RETRY_DELAY_BASE_MS", "300"),
            ("STDIO_TOOL_CALL_MAX_RETRIES", "4"),
        ],
    );
    let crashed = proxy.call_tool("alpha__crash", json!({}));
    assert_eq!(error_code(&crashed), Some(BACKEND_UNAVAILABLE), "{crashed}");
    proxy.notification(TOOLS_CHANGED); // withdrawn: the backend is down, restarting in 0.15 to 0.2 s

    let asked = Instant::now();
    let response = proxy.call_tool("alpha__echo", json!({ "text": "retried" }));
    let took = asked.elapsed();
    assert_eq!(response.pointer("/result/content/0/text"), Some(&json!("retried")), "{response}");
    // Forwarded at once it would have failed; retried, it waited at least the base delay.
    assert!(took >= Duration::from_millis(250), "answered in {took:?}: was the call retried at all?");
}

#[test]
fn with_retries_off_a_call_to_a_restarting_backend_fails_fast_naming_the_server() {
    let marker = unique("marker-noretry");
    let mut proxy = proxy_on_alpha(&marker, &[("MCP_PROXY_RESTART_BACKOFF_MIN", "5"), ("RETRY_STDIO_TOOL_CALL", "false")]);
    let crashed = proxy.call_tool("alpha__crash", json!({}));
    assert_eq!(error_code(&crashed), Some(BACKEND_UNAVAILABLE), "{crashed}");
    proxy.notification(TOOLS_CHANGED);

    let asked = Instant::now();
    let response = proxy.call_tool("alpha__echo", json!({ "text": "no retry" }));
    let took = asked.elapsed();
    assert_eq!(error_code(&response), Some(BACKEND_UNAVAILABLE), "{response}");
    assert!(error_message(&response).contains("'alpha'"), "the error should name the server: {response}");
    assert!(took < Duration::from_millis(500), "failing took {took:?}");
}

// ----- timeouts -----------------------------------------------------------------------------------------

#[test]
fn request_outliving_the_global_timeout_fails_with_32001_and_the_backend_is_told_to_cancel() {
    let marker = unique("marker-timeout");
    let mut proxy = proxy_on_alpha(&marker, &[("MCP_PROXY_REQUEST_TIMEOUT", "1")]);
    let asked = Instant::now();
    let response = proxy.call_tool("alpha__cancellable", json!({ "ms": 10000 }));
    let took = asked.elapsed();
    assert_eq!(error_code(&response), Some(REQUEST_TIMEOUT), "{response}");
    assert!(error_message(&response).contains("alpha"), "the error should name the server: {response}");
    assert!(took >= Duration::from_millis(900) && took < Duration::from_millis(1500), "timed out after {took:?}");

    let cancelled: Value = serde_json::from_str(&proxy.tool_text("alpha__cancelled_ids", json!({}))).unwrap();
    assert_eq!(cancelled.as_array().map(Vec::len), Some(1), "the backend saw these cancellations: {cancelled}");
}

#[test]
fn per_server_timeout_overrides_the_global_one() {
    let strict = unique("marker-strict");
    let lenient = unique("marker-lenient");
    let servers = config(&[("alpha", with(mock(&strict), json!({ "timeout": 1 }))), ("beta", mock(&lenient))]);
    let mut proxy = ProxyBuilder::new(&servers).env("MCP_PROXY_REQUEST_TIMEOUT", "30").spawn();
    proxy.initialize();

    let asked = Instant::now();
    let alpha = proxy.start_request("tools/call", json!({ "name": "alpha__cancellable", "arguments": { "ms": 2500 } }));
    let beta = proxy.start_request("tools/call", json!({ "name": "beta__cancellable", "arguments": { "ms": 2500 } }));
    let alpha = proxy.response(&alpha);
    let alpha_took = asked.elapsed();
    let beta = proxy.response(&beta);
    assert_eq!(error_code(&alpha), Some(REQUEST_TIMEOUT), "alpha has \"timeout\": 1: {alpha}");
    assert!(alpha_took < Duration::from_millis(1500), "alpha timed out after {alpha_took:?}");
    assert_eq!(result_text(&beta), "not cancelled", "beta has the global 30 s: {beta}");
}

#[test]
fn progress_pushes_the_timeout_back() {
    let marker = unique("marker-progress");
    let mut proxy = proxy_on_alpha(&marker, &[("MCP_PROXY_REQUEST_TIMEOUT", "1")]);
    let asked = Instant::now();
    let params = json!({ "name": "alpha__progress", "arguments": { "steps": 6, "ms": 400 }, "_meta": { "progressToken": "p-1" } });
    let id = proxy.start_request("tools/call", params);
    let response = proxy.wait_for("the progress call's response", Duration::from_secs(10), |m| m["id"] == id);
    let took = asked.elapsed();
    assert_eq!(response.pointer("/result/content/0/text"), Some(&json!("done 6")), "{response}");
    assert!(took > Duration::from_secs(2), "done in {took:?}: 6 steps of 400 ms take 2.4 s");
    let progress = proxy.take_notifications("notifications/progress");
    assert_eq!(progress.len(), 6, "{progress:?}");
    assert!(progress.iter().all(|p| p["params"]["progressToken"] == "p-1"), "{progress:?}");
}

// ----- no process outlives the proxy --------------------------------------------------------------------

/// Two backends holding `marker`: the mock started directly, and the mock started in the background
/// of `sh -c '... & wait'` (a grandchild of the proxy). The background job gets the original stdin
/// back through fd 3, since `sh` gives background jobs /dev/null.
fn direct_and_wrapped(marker: &str) -> Value {
    let wrapped = format!("exec 3<&0; python3 {MOCK_SERVER} --name {marker}-wrapped <&3 3<&- & wait");
    config(&[("direct", mock(&format!("{marker}-direct"))), ("wrapped", json!({ "command": "sh", "args": ["-c", wrapped] }))])
}

/// Starts the proxy on [`direct_and_wrapped`] and checks that three processes hold the marker.
fn proxy_with_children(marker: &str) -> Proxy {
    let mut proxy = ProxyBuilder::new(&direct_and_wrapped(marker)).spawn();
    proxy.initialize();
    let tools = proxy.tool_names();
    assert!(tools.contains(&"direct__echo".to_owned()) && tools.contains(&"wrapped__echo".to_owned()), "{tools:?}");
    let running = live_processes_with(marker);
    // python3 (direct), sh, python3 (its child)
    assert_eq!(running.len(), 3, "{running:?}");
    proxy
}

#[test]
fn no_backend_process_is_left_after_stdin_eof() {
    let marker = unique("marker-eof");
    let mut proxy = proxy_with_children(&marker);
    proxy.close_stdin();
    proxy.wait_exit(Duration::from_secs(10));
    assert_none_left(&proxy, &marker, "stdin EOF");
}

#[test]
fn no_backend_process_is_left_after_sigterm() {
    let marker = unique("marker-term");
    let mut proxy = proxy_with_children(&marker);
    signal(proxy.pid(), libc::SIGTERM);
    proxy.wait_exit(Duration::from_secs(10));
    assert_none_left(&proxy, &marker, "SIGTERM");
}

#[test]
fn no_backend_process_is_left_after_sigint() {
    let marker = unique("marker-int");
    let mut proxy = proxy_with_children(&marker);
    signal(proxy.pid(), libc::SIGINT);
    proxy.wait_exit(Duration::from_secs(10));
    assert_none_left(&proxy, &marker, "SIGINT");
}

/// A proxy whose one backend, `wrapped`, is the mock behind `sh -c` next to a stubborn grandchild that
/// holds the backend's stdout open, ignores SIGTERM and never reads stdin; initialized.
fn proxy_with_stubborn_grandchild(marker: &str) -> Proxy {
    let stubborn =
        format!("python3 -c 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)' {marker}-stubborn");
    let script = format!("exec 3<&0; {stubborn} </dev/null & python3 {MOCK_SERVER} --name {marker}-mock <&3 3<&- & wait");
    let mut proxy = ProxyBuilder::new(&config(&[("wrapped", json!({ "command": "sh", "args": ["-c", script] }))])).spawn();
    proxy.initialize();
    assert_eq!(proxy.tool_text("wrapped__whoami", json!({})), format!("{marker}-mock"));
    let stubborn = format!("{marker}-stubborn");
    wait_until("the stubborn grandchild", WAIT, || (!live_processes_with(&stubborn).is_empty()).then_some(()));
    proxy
}

#[test]
fn grandchild_that_ignores_sigterm_and_stdin_is_killed_when_the_proxy_exits() {
    let marker = unique("marker-stubborn");
    let mut proxy = proxy_with_stubborn_grandchild(&marker);
    signal(proxy.pid(), libc::SIGTERM);
    proxy.wait_exit(Duration::from_secs(15));
    assert_none_left(&proxy, &marker, "SIGTERM");
}

#[test]
fn with_no_call_in_flight_sigterm_escalates_to_sigkill_without_waiting_for_the_drain_grace() {
    let marker = unique("marker-prompt");
    let mut proxy = proxy_with_stubborn_grandchild(&marker);
    signal(proxy.pid(), libc::SIGTERM);
    let signalled = Instant::now();
    proxy.wait_exit(Duration::from_secs(15));
    let took = signalled.elapsed();
    // Nothing to drain: stdin closed at once, SIGTERM 1 s later, SIGKILL 2 s after that.
    assert!(took < Duration::from_millis(4500), "the proxy took {took:?} to stop a backend that ignores SIGTERM");
}

#[test]
fn call_in_flight_on_sigterm_is_answered_before_the_proxy_exits() {
    let marker = unique("marker-drain");
    let mut proxy = proxy_on_alpha(&marker, &[]);
    let call = proxy.start_request("tools/call", json!({ "name": "alpha__sleep", "arguments": { "ms": 800 } }));
    // The backend reads its stdin in order: once a later call is answered, the sleep is under way.
    assert_eq!(proxy.tool_text("alpha__echo", json!({ "text": "up" })), "up");
    signal(proxy.pid(), libc::SIGTERM);
    let response = proxy.response(&call);
    assert_eq!(response.pointer("/result/content/0/text"), Some(&json!("slept 800 ")), "{response}");
    proxy.wait_exit(Duration::from_secs(10));
    assert_none_left(&proxy, &marker, "SIGTERM");
}

/// A proxy on one mock backend keyed `alpha` that starts a `setsid` daemon named `daemon` (orphaned at
/// once, see the mock's `--daemon`); initialized, with the daemon's pid.
fn proxy_with_daemon(marker: &str, daemon: &str) -> (Proxy, u32) {
    let mut proxy = ProxyBuilder::new(&config(&[("alpha", mock_with(marker, &["--daemon", daemon]))])).spawn();
    proxy.initialize();
    let pid = pid_of(&sleeper(daemon));
    (proxy, pid)
}

/// What only the command line of the mock's sleeper named `name` holds (the mock's own names it too).
fn sleeper(name: &str) -> String {
    format!("time.sleep(600) {name}")
}

/// The parent pid of a process, from `/proc/<pid>/stat`.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn setsid_daemon_started_by_a_backend_is_killed_when_the_proxy_exits() {
    let marker = unique("marker-daemon");
    let daemon = unique("daemon");
    let (mut proxy, _) = proxy_with_daemon(&marker, &daemon);
    proxy.close_stdin();
    proxy.wait_exit(Duration::from_secs(10));
    let left = live_processes_with(&sleeper(&daemon));
    for (pid, _) in &left {
        signal(*pid, libc::SIGKILL); // Not to linger for ten minutes after a failure.
    }
    assert!(left.is_empty(), "the daemon outlived the proxy: {left:?}");
    assert_none_left(&proxy, &marker, "stdin EOF");
}

#[test]
fn orphan_adopted_by_the_proxy_is_reaped_when_it_dies() {
    let marker = unique("marker-adopted");
    let daemon = unique("adopted");
    let (mut proxy, pid) = proxy_with_daemon(&marker, &daemon);
    let parent = parent_of(pid);
    signal(pid, libc::SIGKILL); // First, so that a failure leaves no sleeper behind.
    assert_eq!(parent, Some(proxy.pid()), "the orphan's parent should be the proxy, its subreaper");
    // Dead, it is a zombie until its parent, the proxy, collects it.
    wait_until("the dead orphan to be reaped", WAIT, || parent_of(pid).is_none().then_some(()));
    assert_eq!(proxy.tool_text("alpha__whoami", json!({})), marker, "the backend is untouched");
}

// ----- a backend's request goes to the client whose call it serves --------------------------------------

/// `initialize` and `notifications/initialized` over Streamable HTTP; the session id.
fn open_session(addr: std::net::SocketAddr, name: &str) -> String {
    let init = json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": { "roots": {}, "sampling": {} },
            "clientInfo": { "name": name, "version": "0.0.0" },
        },
    });
    let response = Conn::open(addr).roundtrip(&mcp_post(None, &init));
    assert_eq!(response.status, 200, "initialize of {name}: {:?}", response.headers);
    let session = response.header("mcp-session-id").unwrap_or_else(|| panic!("no session id for {name}")).to_owned();
    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    let accepted = Conn::open(addr).roundtrip(&mcp_post(Some(&session), &initialized));
    assert_eq!(accepted.status, 202, "notifications/initialized of {name}");
    session
}

/// Sends `req` and reads its answer as an event stream (status 200 required).
fn stream(addr: std::net::SocketAddr, req: &Req) -> EventStream {
    let mut conn = Conn::open(addr);
    conn.send(req);
    let head = conn.head();
    assert_eq!(head.status, 200, "{} {}: {head:?}", req.method, req.target);
    conn.into_events(&head)
}

/// Calls `mock__ask_roots` as `session` and answers the `roots/list` that arrives on the call's own
/// stream with `root`; the tool result text.
fn ask_roots_answering(addr: std::net::SocketAddr, session: &str, root: &str) -> String {
    let call = json!({ "jsonrpc": "2.0", "id": "ask", "method": "tools/call", "params": { "name": "mock__ask_roots", "arguments": {} } });
    let mut events = stream(addr, &mcp_post(Some(session), &call));
    let request = events.next_message(WAIT);
    assert_eq!(request["method"], "roots/list", "the first message on the call's stream: {request}");
    let answer = json!({ "jsonrpc": "2.0", "id": request["id"], "result": { "roots": [{ "uri": root, "name": "root" }] } });
    let accepted = Conn::open(addr).roundtrip(&mcp_post(Some(session), &answer));
    assert_eq!(accepted.status, 202, "the answer to roots/list");
    let result = events.next_message(WAIT);
    assert_eq!(result["id"], "ask", "{result}");
    result_text(&result).to_owned()
}

#[test]
fn backend_request_reaches_the_client_whose_call_it_serves_and_its_answer_reaches_the_backend() {
    let servers = config(&[("mock", mock("roots-mock")), ("other", mock("roots-other"))]);
    let proxy = http::ProxyBuilder::new().config(&servers).start();
    proxy.wait_backends_connected(&[]);
    let addr = proxy.addr();
    let a = open_session(addr, "client-a");
    let b = open_session(addr, "client-b");

    // A listens on its standing stream, where a misrouted request would show up, and has a call of
    // its own in flight, to the other backend.
    let mut a_stream = stream(addr, &Req::get("/mcp").headers(&[("Accept", "text/event-stream"), ("Mcp-Session-Id", &a)]));
    let a_call = std::thread::spawn(move || {
        let call = json!({ "jsonrpc": "2.0", "id": "a-sleep", "method": "tools/call", "params": { "name": "other__sleep", "arguments": { "ms": 1500 } } });
        let response = Conn::open(addr).roundtrip(&mcp_post(Some(&a), &call));
        (a, response.status, response.text())
    });

    let text = ask_roots_answering(addr, &b, "file:///client-b");
    let answer: Value = serde_json::from_str(&text).unwrap_or_else(|e| proxy.fail(&format!("not JSON ({e}): {text}")));
    assert_eq!(answer.pointer("/result/roots/0/uri"), Some(&json!("file:///client-b")), "{answer}");

    let (a, status, body) = a_call.join().unwrap();
    assert_eq!(status, 200, "A's own call: {body}");
    assert!(body.contains("slept 1500"), "A's own call: {body}");
    // Nothing for A meanwhile: no roots/list (A's call to the other backend was in flight all along).
    while let Some(event) = a_stream.next_within(Duration::from_millis(200)) {
        assert!(!event.data.contains("roots/list"), "A's stream got B's request: {event:?}");
    }

    // And the other way round: A asks, A answers.
    let text = ask_roots_answering(addr, &a, "file:///client-a");
    assert!(text.contains("file:///client-a") && !text.contains("client-b"), "{text}");
}
