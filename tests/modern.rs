//! MCP 2026-07-28 ("modern") clients on the wire, over stdio and Streamable HTTP, in front of
//! handshake-era mock backends: how a connection's era is decided, what a modern request must carry,
//! what its answers carry, `server/discover`, `subscriptions/listen`, and what stays as it was for
//! handshake-era clients. The official SDK's view of the same is tests/interop/test_modern_sdk.py.

mod support;

use serde_json::{json, Map, Value};
use std::thread;
use std::time::Duration;
use support::http::{self, Req};
use support::stdio::{self as stdio_proxy, Proxy};
use support::{config, error_code, mock, mock_with, names, result_text, WAIT};

const MODERN: &str = "2026-07-28";
const SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";

fn envelope() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": { "name": "wire-test", "version": "1" },
    })
}

/// A modern request: `params` with the envelope in `_meta`.
fn modern(id: i64, method: &str, mut params: Value) -> Value {
    params["_meta"] = envelope();
    json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })
}

fn stdio() -> Proxy {
    stdio_proxy::start(&config(&[("mock", mock("mock"))]))
}

/// Sends a request and waits for its answer.
fn ask(proxy: &mut Proxy, request: Value) -> Value {
    let id = request["id"].clone();
    proxy.send(request);
    proxy.response(&id)
}

// ----- stdio -------------------------------------------------------------------------------------------

#[test]
fn a_modern_stdio_client_lists_tools_without_a_handshake() {
    let mut proxy = stdio();
    let answer = ask(&mut proxy, modern(1, "tools/list", json!({})));
    assert!(names(&answer["result"]["tools"]).contains(&"mock__echo".to_owned()), "{answer}");
}

#[test]
fn list_results_for_a_modern_client_carry_result_type_caching_hints_and_server_info() {
    let mut proxy = stdio();
    let result = ask(&mut proxy, modern(1, "tools/list", json!({})))["result"].clone();
    assert_eq!(result["resultType"], "complete");
    assert_eq!((result["ttlMs"].clone(), result["cacheScope"].clone()), (json!(0), json!("private")));
    assert_eq!(result["_meta"][SERVER_INFO]["name"], "mcp-proxy-server");
}

#[test]
fn a_tool_result_for_a_modern_client_is_complete_and_has_no_caching_hints() {
    let mut proxy = stdio();
    let result = ask(&mut proxy, modern(1, "tools/call", json!({ "name": "mock__echo", "arguments": { "text": "hi" } })))["result"].clone();
    assert_eq!(result["resultType"], "complete");
    assert_eq!(result["content"][0]["text"], "hi");
    assert!(result.get("ttlMs").is_none(), "{result}");
}

#[test]
fn server_discover_names_the_modern_version_and_the_aggregates_capabilities() {
    let mut proxy = stdio();
    let result = ask(&mut proxy, modern(1, "server/discover", json!({})))["result"].clone();
    assert_eq!(result["supportedVersions"], json!([MODERN]));
    assert_eq!(result["capabilities"]["tools"]["listChanged"], true);
    assert_eq!(result["resultType"], "complete");
    assert!(result["ttlMs"].is_u64() && result["cacheScope"].is_string(), "{result}");
}

#[test]
fn server_discover_is_answered_while_a_backend_is_still_starting() {
    let slow = json!({ "command": "sh", "args": ["-c", "sleep 3; exec python3 \"$0\" --name slow", support::MOCK_SERVER] });
    let mut proxy = stdio_proxy::start(&config(&[("slow", slow)]));
    let started = std::time::Instant::now();
    let answer = ask(&mut proxy, modern(1, "server/discover", json!({})));
    assert!(answer.get("result").is_some(), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(2), "held for {:?}", started.elapsed());
}

#[test]
fn an_unknown_protocol_version_is_refused_with_the_versions_the_proxy_speaks() {
    let mut proxy = stdio();
    let mut request = modern(1, "tools/list", json!({}));
    request["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2099-01-01");
    let error = ask(&mut proxy, request)["error"].clone();
    assert_eq!(error["code"], -32022);
    assert_eq!(error["data"]["requested"], "2099-01-01");
    let supported = error["data"]["supported"].as_array().unwrap().clone();
    assert!(supported.contains(&json!(MODERN)) && supported.contains(&json!("2025-11-25")), "{error}");
}

#[test]
fn a_modern_request_without_client_capabilities_is_invalid_params() {
    let mut proxy = stdio();
    let mut request = modern(1, "tools/list", json!({}));
    request["params"]["_meta"].as_object_mut().unwrap().remove("io.modelcontextprotocol/clientCapabilities");
    let answer = ask(&mut proxy, request);
    assert_eq!(error_code(&answer), Some(-32602), "{answer}");
}

#[test]
fn ping_and_set_level_are_not_found_for_a_modern_client() {
    let mut proxy = stdio();
    assert_eq!(error_code(&ask(&mut proxy, modern(1, "ping", json!({})))), Some(-32601));
    assert_eq!(error_code(&ask(&mut proxy, modern(2, "logging/setLevel", json!({ "level": "info" })))), Some(-32601));
}

#[test]
fn initialize_on_a_modern_connection_is_refused_naming_the_versions() {
    let mut proxy = stdio();
    ask(&mut proxy, modern(1, "tools/list", json!({})));
    let init =
        json!({ "jsonrpc": "2.0", "id": 2, "method": "initialize", "params": { "protocolVersion": "2025-11-25", "capabilities": {} } });
    let error = ask(&mut proxy, init)["error"].clone();
    assert_eq!(error["code"], -32022);
    assert_eq!(error["data"]["requested"], "2025-11-25");
}

#[test]
fn a_request_carrying_the_envelope_on_a_handshake_connection_is_refused() {
    let mut proxy = stdio();
    proxy.initialize();
    let answer = ask(&mut proxy, modern(5, "tools/list", json!({})));
    assert_eq!(error_code(&answer), Some(-32600), "{answer}");
}

#[test]
fn a_handshake_era_client_gets_its_answers_undressed() {
    let mut proxy = stdio();
    proxy.initialize();
    let result = proxy.request_ok("tools/list", json!({}));
    assert!(result.get("resultType").is_none() && result.get("ttlMs").is_none(), "{result}");
}

#[test]
fn an_unknown_resource_is_invalid_params_for_a_modern_client() {
    let mut proxy = stdio();
    let answer = ask(&mut proxy, modern(1, "resources/read", json!({ "uri": "nowhere://x" })));
    assert_eq!(error_code(&answer), Some(-32602), "{answer}");
}

#[test]
fn a_backends_request_during_a_modern_clients_call_comes_back_as_input_required() {
    let mut proxy = stdio();
    let mut call = modern(1, "tools/call", json!({ "name": "mock__ask_roots", "arguments": {} }));
    call["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"] = json!({ "roots": {} });
    let result = ask(&mut proxy, call)["result"].clone();
    assert_eq!(result["resultType"], "input_required", "{result}");
    let asked: Vec<&Value> = result["inputRequests"].as_object().unwrap().values().collect();
    assert_eq!(asked[0]["method"], "roots/list", "{result}");
    assert!(result["requestState"].as_str().unwrap().starts_with("mcp-proxy-"), "{result}");
}

#[test]
fn listen_is_acknowledged_then_hears_a_tools_list_change_tagged_with_its_id() {
    let mut proxy = stdio();
    proxy.send(modern(7, "subscriptions/listen", json!({ "notifications": { "toolsListChanged": true, "promptsListChanged": false } })));
    let ack = proxy.notification("notifications/subscriptions/acknowledged");
    assert_eq!(ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], 7);
    assert_eq!(ack["params"]["notifications"], json!({ "toolsListChanged": true }));
    ask(&mut proxy, modern(8, "tools/call", json!({ "name": "mock__add_tool", "arguments": { "name": "fresh" } })));
    let changed = proxy.notification("notifications/tools/list_changed");
    assert_eq!(changed["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], 7);
}

#[test]
fn a_modern_client_without_a_listen_hears_no_list_change() {
    let mut proxy = stdio();
    ask(&mut proxy, modern(1, "tools/call", json!({ "name": "mock__add_tool", "arguments": { "name": "fresh" } })));
    let heard = proxy.drain(Duration::from_millis(500));
    assert!(heard.iter().all(|m| m["method"] != "notifications/tools/list_changed"), "{heard:?}");
}

#[test]
fn listen_hears_updates_of_the_resources_it_named_and_a_cancelled_listen_hears_nothing() {
    let mut proxy = stdio_proxy::start(&config(&[("mock", mock_with("mock", &[]))]));
    let uri = "mock://mock/readme";
    proxy.send(modern(7, "subscriptions/listen", json!({ "notifications": { "resourceSubscriptions": [uri] } })));
    let ack = proxy.notification("notifications/subscriptions/acknowledged");
    assert_eq!(ack["params"]["notifications"]["resourceSubscriptions"], json!([uri]), "{ack}");
    ask(&mut proxy, modern(8, "tools/call", json!({ "name": "mock__update_resource", "arguments": { "uri": uri } })));
    let updated = proxy.notification("notifications/resources/updated");
    assert_eq!(
        (updated["params"]["uri"].clone(), updated["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"].clone()),
        (json!(uri), json!(7))
    );
    proxy.notify("notifications/cancelled", json!({ "requestId": 7 }));
    ask(&mut proxy, modern(9, "tools/call", json!({ "name": "mock__update_resource", "arguments": { "uri": uri } })));
    let heard = proxy.drain(Duration::from_millis(500));
    assert!(heard.iter().all(|m| m["method"] != "notifications/resources/updated"), "{heard:?}");
}

#[test]
fn a_modern_request_that_asks_for_log_messages_gets_those_at_its_level_with_its_answer() {
    let mut proxy = stdio();
    let mut request = modern(1, "tools/call", json!({ "name": "mock__log", "arguments": { "level": "warning", "text": "heard" } }));
    request["params"]["_meta"]["io.modelcontextprotocol/logLevel"] = json!("info");
    proxy.send(request);
    let logged = proxy.notification("notifications/message");
    assert_eq!(logged["params"]["data"], "heard");
    proxy.response(&json!(1));
}

#[test]
fn a_modern_request_that_does_not_ask_for_log_messages_gets_none() {
    let mut proxy = stdio();
    let quiet =
        ask(&mut proxy, modern(1, "tools/call", json!({ "name": "mock__log", "arguments": { "level": "warning", "text": "unheard" } })));
    assert!(quiet.get("result").is_some(), "{quiet}");
    let mut below = modern(2, "tools/call", json!({ "name": "mock__log", "arguments": { "level": "info", "text": "below" } }));
    below["params"]["_meta"]["io.modelcontextprotocol/logLevel"] = json!("error");
    ask(&mut proxy, below);
    let heard = proxy.drain(Duration::from_millis(300));
    assert!(heard.iter().all(|m| m["method"] != "notifications/message"), "{heard:?}");
}

// ----- a call waiting for its client's answers, and its deadline --------------------------------------
//
// A handshake-era backend that asks its client something while serving a 2026-07-28 client's call: the
// client gets `input_required`, the backend's call stays open, and the client's retry (with its
// `inputResponses`) takes it over (src/hub/bridge.rs). The request timeout is 2 s; the client, and the
// tool after its answers, each take STEP: within the timeout, but not two of them.

const TIMEOUT_SECONDS: &str = "2";
const STEP: Duration = Duration::from_millis(1300);
const REQUEST_TIMEOUT: i64 = -32001;

/// The proxy over stdio in front of the mock, with a request timeout of [`TIMEOUT_SECONDS`].
fn stdio_with_timeout() -> Proxy {
    stdio_proxy::ProxyBuilder::new(&config(&[("mock", mock("mock"))])).env("MCP_PROXY_REQUEST_TIMEOUT", TIMEOUT_SECONDS).spawn()
}

/// A modern call of the mock's `ask_roots`, from a client that can answer `roots/list`.
fn ask_roots(id: i64, arguments: Value) -> Value {
    let mut call = modern(id, "tools/call", json!({ "name": "mock__ask_roots", "arguments": arguments }));
    call["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"] = json!({ "roots": {} });
    call
}

/// The `input_required` result of a response; fails the test on any other answer.
fn input_required(response: &Value) -> Value {
    let result = &response["result"];
    assert_eq!(result["resultType"], "input_required", "{response}");
    result.clone()
}

/// `call` retried under `id`, answering every question of `asked` (an `input_required` result) with
/// one root, `root`.
fn retry_answering(call: &Value, id: i64, asked: &Value, root: &str) -> Value {
    let questions = asked["inputRequests"].as_object().unwrap_or_else(|| panic!("no inputRequests: {asked}"));
    let answers: Map<String, Value> = questions.keys().map(|key| (key.clone(), json!({ "roots": [{ "uri": root }] }))).collect();
    let mut retry = call.clone();
    retry["id"] = json!(id);
    retry["params"]["inputResponses"] = Value::Object(answers);
    retry["params"]["requestState"] = asked["requestState"].clone();
    retry
}

#[test]
fn a_retry_with_input_responses_gives_the_call_its_whole_timeout_again() {
    let mut proxy = stdio_with_timeout();
    // The tool answers STEP after getting its roots, which come STEP after it asked: past the 2 s the
    // call had from its start, within the 2 s it has again from the retry.
    let call = ask_roots(1, json!({ "then_ms": STEP.as_millis() }));
    let asked = input_required(&ask(&mut proxy, call.clone()));
    thread::sleep(STEP);
    let answer = ask(&mut proxy, retry_answering(&call, 2, &asked, "file:///answered-late"));
    assert_eq!(answer["result"]["resultType"], "complete", "{answer}");
    assert!(result_text(&answer).contains("file:///answered-late"), "{answer}");
}

#[test]
fn a_retried_call_whose_backend_never_answers_still_times_out() {
    let mut proxy = stdio_with_timeout();
    // The tool takes far longer than the call's timeout after its answer: the retry gets the timeout
    // error, counted from the retry, not a wait without end.
    let call = ask_roots(1, json!({ "then_ms": 8000 }));
    let asked = input_required(&ask(&mut proxy, call.clone()));
    let answer = ask(&mut proxy, retry_answering(&call, 2, &asked, "file:///answered"));
    assert_eq!(answer["error"]["code"], REQUEST_TIMEOUT, "{answer}");
}

#[test]
fn questions_asked_again_give_the_client_a_fresh_timeout_to_answer() {
    let mut proxy = stdio_with_timeout();
    // The tool asks two questions at once: the call is answered with the first, and the second, asked
    // while the client answers the first, is asked again when its retry answers only that one.
    let call = ask_roots(1, json!({ "asks": 2 }));
    let first = input_required(&ask(&mut proxy, call.clone()));
    assert_eq!(first["inputRequests"].as_object().map(Map::len), Some(1), "{first}");
    thread::sleep(STEP);
    let second = input_required(&ask(&mut proxy, retry_answering(&call, 2, &first, "file:///first")));
    assert_ne!(second["inputRequests"], first["inputRequests"], "{second}");
    // Answered past the deadline of the first round's questions (2 s after they were asked), within
    // the 2 s the client has again from the second round.
    thread::sleep(STEP);
    let answer = ask(&mut proxy, retry_answering(&call, 3, &second, "file:///second"));
    assert_eq!(answer["result"]["resultType"], "complete", "{answer}");
    let text = result_text(&answer);
    assert!(text.contains("file:///first") && text.contains("file:///second"), "{answer}");
}

// ----- Streamable HTTP ---------------------------------------------------------------------------------

/// A modern POST with the routing headers the body calls for.
fn modern_post(message: &Value) -> Req {
    let mut req = Req::post("/mcp").header("Accept", http::MCP_ACCEPT).header("MCP-Protocol-Version", MODERN).json(message);
    req = req.header("Mcp-Method", message["method"].as_str().unwrap_or_default());
    if let Some(name) = message["params"]["name"].as_str().or(message["params"]["uri"].as_str()) {
        req = req.header("Mcp-Name", name);
    }
    req
}

#[test]
fn a_modern_http_request_needs_no_session_and_gets_none() {
    let proxy = http::start();
    let response = proxy.request(&modern_post(&modern(1, "tools/call", json!({ "name": "mock__echo", "arguments": { "text": "hi" } }))));
    assert_eq!(response.status, 200, "{response:?}");
    assert!(response.header("mcp-session-id").is_none(), "{response:?}");
    assert_eq!(response.json()["result"]["resultType"], "complete");
}

#[test]
fn an_mcp_name_header_that_does_not_match_the_body_is_a_400_header_mismatch() {
    let proxy = http::start();
    let message = modern(1, "tools/call", json!({ "name": "mock__echo", "arguments": { "text": "hi" } }));
    let headers =
        [("Accept", http::MCP_ACCEPT), ("MCP-Protocol-Version", MODERN), ("Mcp-Method", "tools/call"), ("Mcp-Name", "mock__whoami")];
    let response = proxy.request(&Req::post("/mcp").headers(&headers).json(&message));
    assert_eq!(response.status, 400, "{response:?}");
    assert_eq!(response.json()["error"]["code"], -32020);
}

#[test]
fn a_missing_mcp_method_header_is_a_400_header_mismatch() {
    let proxy = http::start();
    let message = modern(1, "tools/list", json!({}));
    let req = Req::post("/mcp").header("Accept", http::MCP_ACCEPT).header("MCP-Protocol-Version", MODERN).json(&message);
    let response = proxy.request(&req);
    assert_eq!((response.status, response.json()["error"]["code"].clone()), (400, json!(-32020)), "{response:?}");
}

#[test]
fn a_method_a_modern_client_may_not_call_is_a_404_method_not_found() {
    let proxy = http::start();
    let response = proxy.request(&modern_post(&modern(1, "ping", json!({}))));
    assert_eq!((response.status, response.json()["error"]["code"].clone()), (404, json!(-32601)), "{response:?}");
}

#[test]
fn an_unknown_tool_is_a_400_for_a_modern_http_client() {
    let proxy = http::start();
    let response = proxy.request(&modern_post(&modern(1, "tools/call", json!({ "name": "nope", "arguments": {} }))));
    assert_eq!((response.status, response.json()["error"]["code"].clone()), (400, json!(-32602)), "{response:?}");
}

#[test]
fn a_listen_from_a_client_that_does_not_take_event_streams_is_406() {
    let proxy = http::start();
    let message = modern(1, "subscriptions/listen", json!({ "notifications": { "toolsListChanged": true } }));
    let headers = [("Accept", "application/json"), ("MCP-Protocol-Version", MODERN), ("Mcp-Method", "subscriptions/listen")];
    let response = proxy.request(&Req::post("/mcp").headers(&headers).json(&message));
    assert_eq!((response.status, response.json()["error"]["code"].clone()), (406, json!(-32600)), "{response:?}");
}

#[test]
fn get_and_delete_with_a_modern_version_header_are_405() {
    let proxy = http::start();
    for method in ["GET", "DELETE"] {
        let response =
            proxy.request(&Req::new(method, "/mcp").header("MCP-Protocol-Version", MODERN).header("Accept", "text/event-stream"));
        assert_eq!(response.status, 405, "{method}: {response:?}");
    }
}

#[test]
fn progress_of_a_modern_http_request_comes_on_its_own_stream_before_the_result() {
    let proxy = http::start();
    let mut message = modern(1, "tools/call", json!({ "name": "mock__progress", "arguments": { "steps": 2 } }));
    message["params"]["_meta"]["progressToken"] = json!("p");
    let mut conn = proxy.connect();
    conn.send(&modern_post(&message));
    let head = conn.head();
    assert_eq!(head.status, 200);
    let mut events = conn.into_events(&head);
    let first: Value = serde_json::from_str(&events.next_event(WAIT).data).unwrap();
    assert_eq!((first["method"].clone(), first["params"]["progressToken"].clone()), (json!("notifications/progress"), json!("p")));
    let last = loop {
        let msg: Value = serde_json::from_str(&events.next_event(WAIT).data).unwrap();
        if msg.get("id").is_some() {
            break msg;
        }
    };
    assert_eq!(last["result"]["resultType"], "complete");
}

#[test]
fn a_modern_http_client_that_goes_away_before_its_json_answer_has_its_call_cancelled_at_the_backend() {
    // One request in flight per backend: the call has to give its place back before another can run.
    let mut proxy = http::ProxyBuilder::new().env("MCP_PROXY_MAX_IN_FLIGHT", "1").start();
    proxy.wait_backends_connected(&[]);
    let call = modern(1, "tools/call", json!({ "name": "mock__cancellable", "arguments": { "ms": 60_000 } }));
    // A client that takes no event stream: its answer could only be plain JSON (and nothing comes
    // before it anyway).
    let headers =
        [("Accept", "application/json"), ("MCP-Protocol-Version", MODERN), ("Mcp-Method", "tools/call"), ("Mcp-Name", "mock__cancellable")];
    let mut conn = proxy.connect();
    conn.send(&Req::post("/mcp").headers(&headers).json(&call));
    proxy.wait_for_stderr("[mock] cancellable waiting");
    drop(conn);
    // The proxy notices the closed connection within its liveness check (5 s).
    proxy.wait_for_stderr("[mock] cancellable cancelled");
    let cancelled_ids = modern(2, "tools/call", json!({ "name": "mock__cancelled_ids", "arguments": {} }));
    let answer = proxy.request(&modern_post(&cancelled_ids)).json();
    let cancelled: Vec<Value> = serde_json::from_str(result_text(&answer)).unwrap_or_else(|e| panic!("{e}: {answer}"));
    assert_eq!(cancelled.len(), 1, "{answer}");
    let echo = modern(3, "tools/call", json!({ "name": "mock__echo", "arguments": { "text": "still here" } }));
    assert_eq!(result_text(&proxy.request(&modern_post(&echo)).json()), "still here");
}

#[test]
fn a_handshake_era_http_clients_error_answer_still_comes_with_200() {
    let proxy = http::start();
    let session = proxy.initialize();
    let response = proxy.post_mcp(Some(&session), &http::tool_call(2, "nope", json!({})));
    assert_eq!((response.status, response.json()["error"]["code"].clone()), (200, json!(-32602)), "{response:?}");
}

#[test]
fn a_handshake_era_http_client_keeps_its_session_and_undressed_answers() {
    let proxy = http::start();
    let session = proxy.initialize();
    let response = proxy.post_mcp(Some(&session), &http::rpc(2, "tools/list", json!({})));
    assert_eq!(response.status, 200, "{response:?}");
    assert!(response.json()["result"].get("resultType").is_none(), "{response:?}");
}

// ----- Mcp-Param-* headers (x-mcp-header) --------------------------------------------------------------

/// The proxy over HTTP in front of tests/fixtures/modern_server.py, whose `locate` tool mirrors its
/// `region` argument into `Mcp-Param-Region`.
fn modern_fixture_proxy() -> http::HttpProxy {
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/.deps/venv/bin/python");
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/modern_server.py");
    let proxy = http::ProxyBuilder::new().config(&config(&[("modern", json!({ "command": python, "args": [fixture] }))])).start();
    proxy.wait_backends_connected(&[]);
    proxy
}

fn locate(region: &str) -> Value {
    modern(1, "tools/call", json!({ "name": "modern__locate", "arguments": { "region": region, "query": "rain" } }))
}

#[test]
fn a_tool_call_whose_mirrored_argument_comes_without_its_header_is_a_400_header_mismatch() {
    let proxy = modern_fixture_proxy();
    let response = proxy.request(&modern_post(&locate("eu")));
    assert_eq!((response.status, response.json()["error"]["code"].clone()), (400, json!(-32020)), "{response:?}");
}

#[test]
fn a_tool_call_whose_header_mirrors_its_argument_reaches_the_tool() {
    let proxy = modern_fixture_proxy();
    let response = proxy.request(&modern_post(&locate("eu")).header("Mcp-Param-Region", "eu"));
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.json()["result"]["content"][0]["text"], "rain in eu");
}

#[test]
fn a_header_that_differs_from_its_argument_is_a_400_header_mismatch() {
    let proxy = modern_fixture_proxy();
    let response = proxy.request(&modern_post(&locate("eu")).header("Mcp-Param-Region", "us"));
    assert_eq!((response.status, response.json()["error"]["code"].clone()), (400, json!(-32020)), "{response:?}");
}
