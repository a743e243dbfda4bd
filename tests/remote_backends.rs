//! Remote backends, end to end: the real binary (stdio frontend) in front of MCP servers served over
//! legacy HTTP+SSE and Streamable HTTP by the official MCP Python SDK (`tests/fixtures/http_server.py`,
//! run with the pinned SDK in `.deps/venv`; `scripts/install-test-deps.sh` installs it).
//!
//! Tools of both kinds are listed and callable; `apiKey`, `bearerToken` and `headers` (with `${VAR}`
//! from the proxy's environment) go on every request; an SSE server that is killed and started again on
//! its port comes back; a Streamable HTTP server that forgets the session (a new process) gets a new
//! `initialize` and the call still succeeds. Also: calls in flight when a server dies, servers down at
//! start, timeouts (with servers that honour the cancellation and servers that do not), progress, retries,
//! a clean exit, and streams the proxy is done with (a removed backend's, a stopped instance's, a
//! cancelled listen's) leaving no thread or socket behind. One behaviour per test, named for it.
//!
//! The fixture records every HTTP request it receives (method, path, headers, JSON-RPC method) and
//! reports them through its `requests_seen` tool, so tests check what reached the server through the
//! proxy itself.

mod support;

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::remote::{RemoteServer, Transport};
use support::stdio::{Proxy, ProxyBuilder};
use support::{config, error_code, holdings, Holdings};

const BACKEND_UNAVAILABLE: i64 = -32000;
const REQUEST_TIMEOUT: i64 = -32001;

const TOOLS_CHANGED: &str = "notifications/tools/list_changed";

/// A config entry for a remote server, with `extra` members (auth, headers) merged in. The fixture
/// serves both protocol eras; the proxy is pinned to the handshake era, whose sessions these tests are
/// about, unless `extra` says otherwise (the 2026-07-28 tests at the end).
fn remote(server: &RemoteServer, transport: Transport, extra: Value) -> Value {
    let kind = match transport {
        Transport::Sse => "sse",
        Transport::StreamableHttp | Transport::StreamableHttpJson => "http",
    };
    support::with(json!({ "type": kind, "url": server.url(), "protocol": "legacy" }), extra)
}

fn start(servers: &[(&str, Value)], env: &[(&str, &str)]) -> Proxy {
    let mut builder = ProxyBuilder::new(&config(servers));
    for (name, value) in env {
        builder = builder.env(name, value);
    }
    let mut proxy = builder.spawn();
    proxy.initialize();
    proxy
}

/// The requests `<key>__requests_seen` reports.
fn requests_seen(proxy: &mut Proxy, key: &str) -> Vec<Value> {
    let text = proxy.tool_text(&format!("{key}__requests_seen"), json!({}));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn session_of(request: &Value) -> Option<&str> {
    request["headers"]["mcp-session-id"].as_str()
}

// ----- listing and calling ------------------------------------------------------------------------------

#[test]
fn tools_of_an_sse_and_a_streamable_http_backend_are_listed_and_callable() {
    let legacy = RemoteServer::start(Transport::Sse, "legacy-server");
    let modern = RemoteServer::start(Transport::StreamableHttp, "modern-server");
    let mut proxy = start(
        &[("legacy", remote(&legacy, Transport::Sse, json!({}))), ("modern", remote(&modern, Transport::StreamableHttp, json!({})))],
        &[],
    );
    let tools = proxy.tool_names();
    for name in ["legacy__whoami", "legacy__echo", "modern__whoami", "modern__echo"] {
        assert!(tools.contains(&name.to_owned()), "{name} is not listed: {tools:?}");
    }
    assert_eq!(proxy.tool_text("legacy__whoami", json!({})), "legacy-server");
    assert_eq!(proxy.tool_text("modern__whoami", json!({})), "modern-server");
    assert_eq!(proxy.tool_text("legacy__echo", json!({ "text": "over sse" })), "over sse");
    assert_eq!(proxy.tool_text("modern__echo", json!({ "text": "over http" })), "over http");
}

// ----- auth and headers ---------------------------------------------------------------------------------

/// The auth and custom headers every request to the backend must carry.
fn auth_config() -> Value {
    json!({
        "apiKey": "key-${REMOTE_TEST_SECRET}",
        "bearerToken": "token-${REMOTE_TEST_SECRET}",
        "headers": { "X-Custom-Header": "custom-${REMOTE_TEST_SECRET}", "X-Plain": "plain" },
    })
}

/// Calls `<key>__requests_seen` and checks that every request the server got carried the headers
/// of [`auth_config`] with `${REMOTE_TEST_SECRET}` expanded; returns the requests.
fn assert_every_request_authenticated(proxy: &mut Proxy, key: &str) -> Vec<Value> {
    let seen = requests_seen(proxy, key);
    assert!(seen.len() >= 3, "too few requests recorded: {seen:?}");
    for request in &seen {
        let headers = &request["headers"];
        let what = format!("{} {}", request["method"], request["path"]);
        assert_eq!(headers["x-api-key"], "key-s3cr3t", "{what}: {headers}");
        assert_eq!(headers["authorization"], "Bearer token-s3cr3t", "{what}: {headers}");
        assert_eq!(headers["x-custom-header"], "custom-s3cr3t", "{what}: {headers}");
        assert_eq!(headers["x-plain"], "plain", "{what}: {headers}");
    }
    seen
}

#[test]
fn api_key_bearer_token_and_headers_go_on_every_request_to_an_sse_backend() {
    let server = RemoteServer::start(Transport::Sse, "sse-auth");
    let mut proxy = start(&[("legacy", remote(&server, Transport::Sse, auth_config()))], &[("REMOTE_TEST_SECRET", "s3cr3t")]);
    assert_eq!(proxy.tool_text("legacy__echo", json!({ "text": "one" })), "one");
    let seen = assert_every_request_authenticated(&mut proxy, "legacy");
    let methods: Vec<&str> = seen.iter().filter_map(|r| r["method"].as_str()).collect();
    assert!(methods.contains(&"GET") && methods.contains(&"POST"), "the stream and the posts: {seen:?}");
}

#[test]
fn api_key_bearer_token_and_headers_go_on_every_request_to_a_streamable_http_backend() {
    let server = RemoteServer::start(Transport::StreamableHttp, "http-auth");
    let mut proxy = start(&[("modern", remote(&server, Transport::StreamableHttp, auth_config()))], &[("REMOTE_TEST_SECRET", "s3cr3t")]);
    assert_eq!(proxy.tool_text("modern__echo", json!({ "text": "one" })), "one");
    assert_eq!(proxy.tool_text("modern__echo", json!({ "text": "two" })), "two");
    let seen = assert_every_request_authenticated(&mut proxy, "modern");
    let posts = seen.iter().filter(|r| r["method"] == "POST").count();
    assert!(posts >= 4, "initialize, initialized, tools/list and the calls are POSTs: {seen:?}");
}

// ----- servers that go away ------------------------------------------------------------------------------

#[test]
fn sse_backend_whose_server_restarts_on_the_same_port_comes_back() {
    let mut server = RemoteServer::start(Transport::Sse, "sse-first");
    let mut proxy = start(
        &[("legacy", remote(&server, Transport::Sse, json!({})))],
        &[("MCP_PROXY_RESTART_BACKOFF_MIN", "0.2"), ("MCP_PROXY_RESTART_BACKOFF_MAX", "1")],
    );
    assert_eq!(proxy.tool_text("legacy__whoami", json!({})), "sse-first");

    server.kill();
    proxy.notification(TOOLS_CHANGED);
    let tools = proxy.tool_names();
    assert!(!tools.iter().any(|t| t.starts_with("legacy__")), "tools of a server that is gone: {tools:?}");

    server.restart_as("sse-second");
    proxy.notification(TOOLS_CHANGED);
    let tools = proxy.tool_names();
    assert!(tools.contains(&"legacy__whoami".to_owned()), "{tools:?}");
    assert_eq!(proxy.tool_text("legacy__whoami", json!({})), "sse-second");
}

#[test]
fn streamable_http_backend_that_forgets_the_session_is_initialized_again_and_the_call_succeeds() {
    let mut server = RemoteServer::start(Transport::StreamableHttp, "http-first");
    let mut proxy = start(&[("modern", remote(&server, Transport::StreamableHttp, json!({})))], &[]);
    assert_eq!(proxy.tool_text("modern__whoami", json!({})), "http-first");
    let first = requests_seen(&mut proxy, "modern");
    let old_session = first.iter().rev().find_map(session_of).expect("the proxy used no session").to_owned();

    // A new process knows no session: the proxy's next POST gets 404.
    server.restart_as("http-second");
    let response = proxy.call_tool("modern__whoami", json!({}));
    assert_eq!(
        response.pointer("/result/content/0/text"),
        Some(&json!("http-second")),
        "the first call after the server forgot the session: {response}"
    );
    assert_eq!(proxy.tool_text("modern__echo", json!({ "text": "still there" })), "still there");

    let seen = requests_seen(&mut proxy, "modern");
    assert!(seen.iter().any(|r| session_of(r) == Some(&old_session)), "the old session was never tried: {seen:?}");
    let initializes = seen.iter().filter(|r| r["rpc"] == "initialize").count();
    assert_eq!(initializes, 1, "one new initialize: {seen:?}");
    let new_session = seen.iter().rev().find_map(session_of).unwrap();
    assert_ne!(new_session, old_session, "the last request should use the new session: {seen:?}");
}

/// Kills `server` while a 5 s call to it is in flight; the call must fail at once, naming the server.
fn call_in_flight_fails_when_the_server_dies(transport: Transport) {
    let mut server = RemoteServer::start(transport, "dying");
    let mut proxy = start(&[("remote", remote(&server, transport, json!({})))], &[("MCP_PROXY_RESTART_BACKOFF_MIN", "5")]);
    let call = proxy.start_request("tools/call", json!({ "name": "remote__sleep", "arguments": { "ms": 5000 } }));
    // The server records a request before running it: once the call is recorded, it is under way.
    support::wait_until("the call to reach the server", Duration::from_secs(5), || {
        let seen = requests_seen(&mut proxy, "remote");
        seen.iter().any(|r| r["tool"] == "sleep").then_some(())
    });
    server.kill();
    let killed = Instant::now();
    let response = proxy.response(&call);
    let waited = killed.elapsed();
    assert_eq!(error_code(&response), Some(BACKEND_UNAVAILABLE), "{response}");
    assert!(response.to_string().contains("remote"), "the error should name the server: {response}");
    assert!(waited < Duration::from_secs(1), "the error came {waited:?} after the server died");
}

#[test]
fn call_in_flight_to_an_sse_backend_fails_at_once_when_its_server_dies() {
    call_in_flight_fails_when_the_server_dies(Transport::Sse);
}

#[test]
fn call_in_flight_to_a_streamable_http_backend_fails_at_once_when_its_server_dies() {
    call_in_flight_fails_when_the_server_dies(Transport::StreamableHttp);
}

/// The proxy starts while `transport`'s server is down; once it is up, its tools appear.
fn backend_down_at_start_is_connected_once_its_server_is_up(transport: Transport) {
    let mut server = RemoteServer::start(transport, "late");
    server.kill();
    let mut proxy = start(
        &[("remote", remote(&server, transport, json!({})))],
        &[("MCP_PROXY_RESTART_BACKOFF_MIN", "0.2"), ("MCP_PROXY_RESTART_BACKOFF_MAX", "0.5")],
    );
    let tools = proxy.tool_names();
    assert!(!tools.iter().any(|t| t.starts_with("remote__")), "{tools:?}");
    server.restart_as("late");
    proxy.notification(TOOLS_CHANGED);
    assert!(proxy.tool_names().contains(&"remote__whoami".to_owned()));
    assert_eq!(proxy.tool_text("remote__whoami", json!({})), "late");
}

#[test]
fn sse_backend_down_at_start_is_connected_once_its_server_is_up() {
    backend_down_at_start_is_connected_once_its_server_is_up(Transport::Sse);
}

#[test]
fn streamable_http_backend_down_at_start_is_connected_once_its_server_is_up() {
    backend_down_at_start_is_connected_once_its_server_is_up(Transport::StreamableHttp);
}

// ----- exit ---------------------------------------------------------------------------------------------

#[test]
fn proxy_with_remote_backends_exits_promptly_on_stdin_eof_and_ends_its_streamable_http_session() {
    let sse = RemoteServer::start(Transport::Sse, "exit-sse");
    let http = RemoteServer::start(Transport::StreamableHttp, "exit-http");
    let servers = [("legacy", remote(&sse, Transport::Sse, json!({}))), ("modern", remote(&http, Transport::StreamableHttp, json!({})))];
    let mut proxy = start(&servers, &[]);
    assert_eq!(proxy.tool_text("modern__whoami", json!({})), "exit-http");
    let session = requests_seen(&mut proxy, "modern").iter().rev().find_map(session_of).unwrap().to_owned();

    proxy.close_stdin();
    let closed = Instant::now();
    proxy.wait_exit(Duration::from_secs(10));
    let took = closed.elapsed();
    assert!(took < Duration::from_secs(2), "the proxy took {took:?} to exit");

    // A second proxy asks the server what the first one sent last.
    let mut second = start(&[("modern", remote(&http, Transport::StreamableHttp, json!({})))], &[]);
    let seen = requests_seen(&mut second, "modern");
    let deleted = seen.iter().any(|r| r["method"] == "DELETE" && session_of(r) == Some(&session));
    assert!(deleted, "no DELETE of session {session}: {seen:?}");
}

// ----- timeouts and progress -----------------------------------------------------------------------------

/// A call that outlives `MCP_PROXY_REQUEST_TIMEOUT` fails with -32001; the backend is told to
/// cancel it and stays connected: its tools stay listed and the next call works.
fn timed_out_call_leaves_the_backend_connected(transport: Transport, tool: &str) {
    let server = RemoteServer::start(transport, "slow");
    let mut proxy = start(&[("remote", remote(&server, transport, json!({})))], &[("MCP_PROXY_REQUEST_TIMEOUT", "1")]);
    let asked = Instant::now();
    let response = proxy.call_tool(&format!("remote__{tool}"), json!({ "ms": 3000 }));
    let took = asked.elapsed();
    assert_eq!(error_code(&response), Some(REQUEST_TIMEOUT), "{response}");
    assert!(took < Duration::from_millis(1500), "timed out after {took:?}");

    assert_eq!(proxy.tool_text("remote__echo", json!({ "text": "still connected" })), "still connected");
    let seen = requests_seen(&mut proxy, "remote");
    assert!(seen.iter().any(|r| r["rpc"] == "notifications/cancelled"), "no notifications/cancelled: {seen:?}");
    let changes = proxy.take_notifications(TOOLS_CHANGED);
    assert!(changes.is_empty(), "the tools were withdrawn after a timeout: {changes:?}");
    assert!(proxy.tool_names().contains(&"remote__sleep".to_owned()));
    assert_eq!(seen.iter().filter(|r| r["rpc"] == "initialize").count(), 1, "the proxy reconnected: {seen:?}");
}

#[test]
fn timed_out_call_to_an_sse_backend_fails_with_32001_and_the_backend_stays_connected() {
    timed_out_call_leaves_the_backend_connected(Transport::Sse, "sleep");
}

#[test]
fn timed_out_call_to_a_streamable_http_backend_fails_with_32001_and_the_backend_stays_connected() {
    timed_out_call_leaves_the_backend_connected(Transport::StreamableHttp, "sleep");
}

#[test]
fn timed_out_call_to_a_streamable_http_backend_that_ignores_the_cancellation_leaves_the_backend_connected() {
    timed_out_call_leaves_the_backend_connected(Transport::StreamableHttp, "stubborn_sleep");
}

#[test]
fn timed_out_call_to_a_json_streamable_http_backend_that_ignores_the_cancellation_leaves_the_backend_connected() {
    timed_out_call_leaves_the_backend_connected(Transport::StreamableHttpJson, "stubborn_sleep");
}

#[test]
fn timed_out_call_to_an_sse_backend_that_ignores_the_cancellation_leaves_the_backend_connected() {
    timed_out_call_leaves_the_backend_connected(Transport::Sse, "stubborn_sleep");
}

/// Progress notifications push the request timeout back, on remote backends too.
fn progress_pushes_the_timeout_back(transport: Transport) {
    let server = RemoteServer::start(transport, "progressing");
    let mut proxy = start(&[("remote", remote(&server, transport, json!({})))], &[("MCP_PROXY_REQUEST_TIMEOUT", "1")]);
    let asked = Instant::now();
    let params = json!({ "name": "remote__progress", "arguments": { "steps": 5, "ms": 400 }, "_meta": { "progressToken": "tok" } });
    let id = proxy.start_request("tools/call", params);
    let response = proxy.wait_for("the progress call's response", Duration::from_secs(10), |m| m["id"] == id);
    let took = asked.elapsed();
    assert_eq!(response.pointer("/result/content/0/text"), Some(&json!("done 5")), "{response}");
    assert!(took > Duration::from_millis(1800), "done in {took:?}: 5 steps of 400 ms take 2 s");
    let progress = proxy.take_notifications("notifications/progress");
    assert_eq!(progress.len(), 5, "{progress:?}");
    assert!(progress.iter().all(|p| p["params"]["progressToken"] == "tok"), "{progress:?}");
}

#[test]
fn progress_pushes_the_timeout_back_on_an_sse_backend() {
    progress_pushes_the_timeout_back(Transport::Sse);
}

#[test]
fn progress_pushes_the_timeout_back_on_a_streamable_http_backend() {
    progress_pushes_the_timeout_back(Transport::StreamableHttp);
}

// ----- retries ------------------------------------------------------------------------------------------

/// Retries on, generous enough for the Python server to start again (0.3 + 0.6 + ... + 4.8 s).
const RETRIES: [(&str, &str); 8] = [
    ("MCP_PROXY_RESTART_BACKOFF_MIN", "0.2"),
    ("MCP_PROXY_RESTART_BACKOFF_MAX", "0.5"),
    ("RETRY_SSE_TOOL_CALL", "true"),
    ("SSE_TOOL_CALL_MAX_RETRIES", "5"),
    ("SSE_TOOL_CALL_RETRY_DELAY_BASE_MS", "300"),
    ("RETRY_HTTP_TOOL_CALL", "true"),
    ("HTTP_TOOL_CALL_MAX_RETRIES", "5"),
    ("HTTP_TOOL_CALL_RETRY_DELAY_BASE_MS", "300"),
];

#[test]
fn call_made_while_an_sse_backend_reconnects_is_retried_and_succeeds() {
    let mut server = RemoteServer::start(Transport::Sse, "sse-retry");
    let mut proxy = start(&[("legacy", remote(&server, Transport::Sse, json!({})))], &RETRIES);
    server.kill();
    proxy.notification(TOOLS_CHANGED); // the proxy saw the stream end: the backend is down
    let call = proxy.start_request("tools/call", json!({ "name": "legacy__echo", "arguments": { "text": "retried" } }));
    server.restart_as("sse-retry");
    let response = proxy.wait_for("the retried call's response", Duration::from_secs(15), |m| m["id"] == call);
    assert_eq!(response.pointer("/result/content/0/text"), Some(&json!("retried")), "{response}");
}

/// A Streamable HTTP backend has no standing connection to tell the proxy it went down: the call itself
/// finds out, when its POST is refused. Nothing reached the tool, so the call is retried.
#[test]
fn call_to_a_streamable_http_backend_whose_server_is_briefly_down_is_retried_and_succeeds() {
    let mut server = RemoteServer::start(Transport::StreamableHttp, "http-retry");
    let mut proxy = start(&[("modern", remote(&server, Transport::StreamableHttp, json!({})))], &RETRIES);
    server.kill();
    let call = proxy.start_request("tools/call", json!({ "name": "modern__echo", "arguments": { "text": "retried" } }));
    server.restart_as("http-retry");
    let response = proxy.wait_for("the retried call's response", Duration::from_secs(15), |m| m["id"] == call);
    assert_eq!(response.pointer("/result/content/0/text"), Some(&json!("retried")), "{response}");
}

// ----- 2026-07-28 servers ---------------------------------------------------------------------------------

#[test]
fn a_streamable_http_server_that_answers_discover_is_spoken_to_in_2026_07_28_without_a_session() {
    let server = RemoteServer::start(Transport::StreamableHttp, "modern-http");
    let mut proxy = start(&[("modern", remote(&server, Transport::StreamableHttp, json!({ "protocol": "auto" })))], &[]);
    assert_eq!(proxy.tool_text("modern__whoami", json!({})), "modern-http");
    let seen = requests_seen(&mut proxy, "modern");
    assert!(seen.iter().all(|r| r["rpc"] != "initialize"), "the proxy made a handshake: {seen:?}");
    let call = seen.iter().find(|r| r["rpc"] == "tools/call").expect("a tools/call");
    assert_eq!(call["headers"]["mcp-protocol-version"], "2026-07-28", "{call}");
    assert_eq!((call["headers"]["mcp-method"].clone(), call["headers"]["mcp-name"].clone()), (json!("tools/call"), json!("whoami")));
    assert!(session_of(call).is_none(), "{call}");
}

#[test]
fn a_2026_07_28_servers_error_answer_is_the_calls_answer_not_a_transport_failure() {
    let server = RemoteServer::start(Transport::StreamableHttp, "modern-errors");
    let mut proxy = start(&[("modern", remote(&server, Transport::StreamableHttp, json!({ "protocol": "auto" })))], &[]);
    let response = proxy.request("resources/read", json!({ "uri": "nowhere://at-all" }));
    assert!(response.get("error").is_some(), "{response}");
    assert_eq!(proxy.tool_text("modern__whoami", json!({})), "modern-errors", "the backend is still connected");
}

// ----- isolation per client session ----------------------------------------------------------------------

/// The Mcp-Session-Id of the last request with this JSON-RPC method.
fn session_of_last(seen: &[Value], rpc: &str) -> String {
    let request = seen.iter().rev().find(|r| r["rpc"] == rpc).unwrap_or_else(|| panic!("no {rpc} in {seen:?}"));
    session_of(request).unwrap_or_else(|| panic!("{rpc} without a session: {request}")).to_owned()
}

#[test]
fn an_isolated_streamable_http_backend_serves_the_client_in_a_backend_session_of_its_own_ended_when_idle() {
    let http = RemoteServer::start(Transport::StreamableHttp, "isolated-http");
    let isolated = remote(&http, Transport::StreamableHttp, json!({ "isolation": "session", "idleTimeout": 0.5 }));
    let mut proxy = start(&[("modern", isolated)], &[]);
    let seen = requests_seen(&mut proxy, "modern");
    let (listed, called) = (session_of_last(&seen, "tools/list"), session_of_last(&seen, "tools/call"));
    assert_ne!(listed, called, "the call went through the client's own session, not the template's");

    std::thread::sleep(Duration::from_millis(1500));
    let seen = requests_seen(&mut proxy, "modern");
    let deleted = seen.iter().any(|r| r["method"] == "DELETE" && session_of(r) == Some(&called));
    assert!(deleted, "the idle instance's session {called} was not ended: {seen:?}");
    assert_ne!(session_of_last(&seen, "tools/call"), called, "the next call started a new instance, with a new session");
}

#[test]
fn an_isolated_legacy_sse_backend_serves_the_client_on_an_sse_stream_of_its_own() {
    let sse = RemoteServer::start(Transport::Sse, "isolated-sse");
    let mut proxy = start(&[("legacy", remote(&sse, Transport::Sse, json!({ "isolation": "session" })))], &[]);
    let seen = requests_seen(&mut proxy, "legacy");
    let streams = seen.iter().filter(|r| r["method"] == "GET").count();
    assert_eq!(streams, 2, "one stream for the template, one for the client's instance: {seen:?}");
}

// ----- streams the proxy stops ---------------------------------------------------------------------------

/// How long the proxy may take to let go of the threads and sockets of a stream it stopped.
const LET_GO: Duration = Duration::from_secs(3);

/// Rewrites the proxy's config to `servers` and has it reloaded.
fn reload(proxy: &Proxy, servers: &[(&str, Value)]) {
    std::fs::write(proxy.config_path(), config(servers).to_string()).expect("cannot rewrite the config");
    support::signal(proxy.pid(), libc::SIGHUP);
}

/// Waits until the proxy holds no more threads and sockets than `before` (at most [`LET_GO`]).
fn assert_lets_go(proxy: &Proxy, before: Holdings, what: &str) {
    let let_go = support::poll(LET_GO, || {
        let now = holdings(proxy.pid());
        (now.threads <= before.threads && now.sockets <= before.sockets).then_some(())
    });
    if let_go.is_none() {
        proxy.fail(&format!("{what}: {LET_GO:?} later the proxy holds {:?}; before: {before:?}", holdings(proxy.pid())));
    }
}

/// Adds a backend by a reload, calls it, removes it by a reload: the proxy holds what it held before.
/// The SDK's servers ping their streams every 15 s, so a reader the proxy does not stop stays blocked
/// for as long as the server runs, holding its thread, its socket and the server's end of the stream.
fn removed_backend_leaves_nothing_behind(transport: Transport, extra: Value) {
    let server = RemoteServer::start(transport, "removed");
    let mut proxy = start(&[], &[]);
    let before = holdings(proxy.pid());
    reload(&proxy, &[("remote", remote(&server, transport, extra))]);
    proxy.notification(TOOLS_CHANGED);
    assert_eq!(proxy.tool_text("remote__whoami", json!({})), "removed");
    let connected = holdings(proxy.pid());
    assert!(connected.threads > before.threads && connected.sockets > before.sockets, "{connected:?}, before: {before:?}");

    reload(&proxy, &[]);
    proxy.notification(TOOLS_CHANGED);
    assert_lets_go(&proxy, before, "the backend was removed");
}

#[test]
fn a_legacy_sse_backend_removed_by_a_reload_leaves_no_thread_or_socket_behind() {
    removed_backend_leaves_nothing_behind(Transport::Sse, json!({}));
}

#[test]
fn a_streamable_http_backend_removed_by_a_reload_leaves_no_thread_or_socket_behind() {
    removed_backend_leaves_nothing_behind(Transport::StreamableHttp, json!({}));
}

/// Its listen is the stream left open.
#[test]
fn a_2026_07_28_http_backend_removed_by_a_reload_leaves_no_thread_or_socket_behind() {
    removed_backend_leaves_nothing_behind(Transport::StreamableHttp, json!({ "protocol": "auto" }));
}

#[test]
fn isolated_legacy_sse_instances_stopped_when_idle_leave_no_thread_or_socket_behind() {
    let server = RemoteServer::start(Transport::Sse, "sse-instances");
    let isolated = remote(&server, Transport::Sse, json!({ "isolation": "session", "idleTimeout": 0.3 }));
    let mut proxy = start(&[("legacy", isolated)], &[]);
    let before = holdings(proxy.pid());
    for round in 1..=3 {
        // The call starts the client's own instance, with a stream of its own; idle, it is stopped.
        assert_eq!(proxy.tool_text("legacy__whoami", json!({})), "sse-instances");
        assert_lets_go(&proxy, before, &format!("round {round}: the idle instance was stopped"));
    }
}

/// A 2026-07-28 backend's listen cannot change its filter: each change of the resources clients
/// subscribe to opens a new listen and cancels the old one, which over HTTP means closing its stream.
#[test]
fn a_2026_07_28_http_backends_cancelled_listens_leave_no_thread_or_socket_behind() {
    let server = RemoteServer::start(Transport::StreamableHttp, "modern-listens");
    let mut proxy = start(&[("modern", remote(&server, Transport::StreamableHttp, json!({ "protocol": "auto" })))], &[]);
    let listens = |proxy: &mut Proxy| requests_seen(proxy, "modern").iter().filter(|r| r["rpc"] == "subscriptions/listen").count();
    let round = |proxy: &mut Proxy| {
        for method in ["resources/subscribe", "resources/unsubscribe"] {
            let opened = listens(proxy);
            proxy.request_ok(method, json!({ "uri": "note://fixture" }));
            support::wait_until("the backend's new listen", support::WAIT, || (listens(proxy) > opened).then_some(()));
        }
    };
    round(&mut proxy);
    let before = holdings(proxy.pid());
    for _ in 0..5 {
        round(&mut proxy);
    }
    assert_lets_go(&proxy, before, "ten listens were cancelled");
}
