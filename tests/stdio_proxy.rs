//! The proxy end to end over stdio: the real binary, real child processes, the mock backend of
//! `tests/fixtures/mock_server.py`. One behaviour per test, named for it.
//!
//! Most tests use two mocks, `alpha` and `beta` (the proxy orders servers by key, so `alpha` comes first).

mod support;

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::stdio::{start, start_initialized, Proxy, ProxyBuilder};
use support::{config, error_code, mock, mock_with, names, processes_with, result_text, unique, with, MOCK_SERVER, MOCK_TOOLS, WAIT};

const INVALID_PARAMS: i64 = -32602;
const BACKEND_UNAVAILABLE: i64 = -32000;
const REQUEST_TIMEOUT: i64 = -32001;

fn two_mocks() -> Value {
    config(&[("alpha", mock("alpha")), ("beta", mock("beta"))])
}

/// A config entry running the mock through `sh -c`, after `before` (a shell snippet).
fn mock_via_shell(name: &str, before: &str) -> Value {
    json!({ "command": "sh", "args": ["-c", format!("{before}\nexec python3 {MOCK_SERVER} --name {name}")] })
}

/// Calls `tool` until its text is `expected` (for state a backend updates in another thread).
fn eventually_text(proxy: &mut Proxy, tool: &str, expected: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = proxy.tool_text(tool, json!({}));
        if text == expected {
            return;
        }
        if Instant::now() > deadline {
            proxy.fail(&format!("{tool} still says {text:?}, not {expected:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits, one `notifications/tools/list_changed` at a time, until `tool` is listed.
fn wait_until_listed(proxy: &mut Proxy, tool: &str) {
    let deadline = Instant::now() + WAIT;
    while !proxy.tool_names().iter().any(|t| t == tool) {
        if Instant::now() > deadline {
            proxy.fail(&format!("{tool} was never listed"));
        }
        proxy.notification("notifications/tools/list_changed");
    }
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

// ----- handshake --------------------------------------------------------------------------------------

#[test]
fn initialize_answers_as_the_proxy_with_the_backends_capabilities() {
    let mut proxy = start(&two_mocks());
    let result = proxy.initialize();
    assert_eq!(result["protocolVersion"], "2025-06-18");
    assert_eq!(result["serverInfo"]["name"], "mcp-proxy-server");
    let caps = &result["capabilities"];
    assert_eq!(caps["tools"]["listChanged"], true, "{result}");
    assert!(caps["prompts"].is_object(), "{result}");
    assert_eq!(caps["resources"]["subscribe"], true, "{result}");
    assert!(caps["logging"].is_object(), "{result}");
    assert!(caps["completions"].is_object(), "{result}");
}

#[test]
fn initialize_omits_capabilities_no_backend_has() {
    let mut proxy = start(&config(&[("alpha", mock_with("alpha", &["--no-resources", "--no-prompts"]))]));
    let result = proxy.initialize();
    let caps = &result["capabilities"];
    assert!(caps.get("prompts").is_none(), "{result}");
    assert!(caps.get("resources").is_none(), "{result}");
    assert!(caps["tools"].is_object(), "{result}");
}

#[test]
fn ping_is_answered_even_before_initialize() {
    let mut proxy = start(&two_mocks());
    assert_eq!(proxy.request_ok("ping", json!({})), json!({}));
}

#[test]
fn backend_receives_the_proxys_client_info_and_initialized() {
    let mut proxy = start_initialized(&two_mocks());
    let info = parse(&proxy.tool_text("alpha__client_info", json!({})));
    assert_eq!(info["clientInfo"]["name"], "mcp-proxy-server", "{info}");
    assert_eq!(info["initialized"], true, "{info}");
    assert!(info["protocolVersion"].is_string(), "{info}");
    // The client declared roots, which the proxy can route back to it.
    assert_eq!(info["capabilities"]["roots"], json!({"listChanged": true}), "{info}");
}

#[test]
fn requests_wait_for_a_backend_that_is_slow_to_start() {
    let mut proxy = start(&config(&[("alpha", mock("alpha")), ("slow", mock_via_shell("slow", "sleep 0.7"))]));
    proxy.initialize();
    let tools = proxy.tool_names();
    assert!(tools.contains(&"slow__whoami".to_owned()), "{tools:?}");
    assert!(tools.contains(&"alpha__whoami".to_owned()), "{tools:?}");
}

#[test]
fn backend_ready_after_the_startup_timeout_is_announced_with_list_changed() {
    let cfg = config(&[("alpha", mock("alpha")), ("slow", mock_via_shell("slow", "sleep 2"))]);
    let mut proxy = ProxyBuilder::new(&cfg).env("MCP_PROXY_STARTUP_TIMEOUT", "0.3").spawn();
    let started = Instant::now();
    proxy.initialize();
    assert!(started.elapsed() < Duration::from_millis(1500), "initialize took {:?}", started.elapsed());
    assert!(!proxy.tool_names().contains(&"slow__whoami".to_owned()));
    proxy.wait_for_stderr("still starting");
    // Each backend that becomes ready later is announced; `alpha` may be one of them on a busy machine.
    wait_until_listed(&mut proxy, "slow__whoami");
    assert_eq!(proxy.tool_text("slow__whoami", json!({})), "slow");
}

// ----- tools ------------------------------------------------------------------------------------------

#[test]
fn tools_of_two_backends_are_listed_with_their_prefixes() {
    let mut proxy = start_initialized(&two_mocks());
    let result = proxy.request_ok("tools/list", json!({}));
    let mut listed = names(&result["tools"]);
    listed.sort();
    let mut expected: Vec<String> = ["alpha", "beta"].iter().flat_map(|s| MOCK_TOOLS.iter().map(move |t| format!("{s}__{t}"))).collect();
    expected.sort();
    assert_eq!(listed, expected);
    assert!(result.get("nextCursor").is_none(), "{result}");
}

#[test]
fn tool_definitions_keep_every_field_but_the_name() {
    let mut proxy = start_initialized(&two_mocks());
    let result = proxy.request_ok("tools/list", json!({}));
    let echo = result["tools"].as_array().unwrap().iter().find(|t| t["name"] == "beta__echo").unwrap();
    assert_eq!(
        echo,
        &json!({
            "name": "beta__echo",
            "title": "Echo",
            "description": "Echoes its text",
            "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
            "annotations": {"readOnlyHint": true},
            "outputSchema": {"type": "object", "properties": {"text": {"type": "string"}}},
            "_meta": {"mock/origin": "beta"},
        })
    );
}

#[test]
fn tools_list_follows_a_backends_pages() {
    let mut proxy = start_initialized(&config(&[("paged", mock_with("paged", &["--tools-pages", "3"]))]));
    let result = proxy.request_ok("tools/list", json!({}));
    let mut listed = names(&result["tools"]);
    listed.sort();
    let mut expected: Vec<String> = MOCK_TOOLS.iter().map(|t| format!("paged__{t}")).collect();
    expected.sort();
    assert_eq!(listed, expected);
}

#[test]
fn separator_comes_from_the_environment() {
    let mut proxy = ProxyBuilder::new(&two_mocks()).env("SERVER_TOOLNAME_SEPERATOR", "-x-").spawn();
    proxy.initialize();
    let tools = proxy.tool_names();
    assert!(tools.contains(&"alpha-x-whoami".to_owned()), "{tools:?}");
    assert_eq!(proxy.tool_text("beta-x-whoami", json!({})), "beta");
}

#[test]
fn tool_call_is_routed_to_the_backend_its_prefix_names() {
    let mut proxy = start_initialized(&two_mocks());
    assert_eq!(proxy.tool_text("alpha__whoami", json!({})), "alpha");
    assert_eq!(proxy.tool_text("beta__whoami", json!({})), "beta");
}

#[test]
fn tool_result_passes_through_whole() {
    let mut proxy = start_initialized(&two_mocks());
    let response = proxy.call_tool("alpha__echo", json!({"text": "héllo \"quoted\""}));
    assert_eq!(
        response["result"],
        json!({"content": [{"type": "text", "text": "héllo \"quoted\""}], "structuredContent": {"text": "héllo \"quoted\""}})
    );
}

#[test]
fn large_tool_result_passes_through_intact() {
    let mut proxy = start_initialized(&two_mocks());
    let text = format!("{}<end>", "0123456789abcdef".repeat(128 * 1024)); // 2 MiB
    assert!(proxy.tool_text("alpha__echo", json!({"text": text})) == text, "the 2 MiB echo came back changed");
}

#[test]
fn tool_error_result_is_a_result_not_a_jsonrpc_error() {
    let mut proxy = start_initialized(&two_mocks());
    let response = proxy.call_tool("beta__fail", json!({}));
    assert_eq!(response["result"]["isError"], true, "{response}");
    assert_eq!(result_text(&response), "failure from beta");
}

#[test]
fn unknown_tool_is_an_invalid_params_error() {
    let mut proxy = start_initialized(&two_mocks());
    for name in ["nope", "alpha__nope", "gamma__echo"] {
        let response = proxy.call_tool(name, json!({}));
        assert_eq!(error_code(&response), Some(INVALID_PARAMS), "{name}: {response}");
    }
}

#[test]
fn unknown_method_is_method_not_found() {
    let mut proxy = start_initialized(&two_mocks());
    let response = proxy.request("tools/frobnicate", json!({}));
    assert_eq!(error_code(&response), Some(-32601), "{response}");
}

#[test]
fn slow_call_sent_first_does_not_hold_up_or_cross_later_calls() {
    let mut proxy = start_initialized(&two_mocks());
    let call = |name: &str, arguments: Value| json!({"name": name, "arguments": arguments});
    let slow = proxy.start_request("tools/call", call("alpha__sleep", json!({"ms": 800, "text": "slow"})));
    let other_backend = proxy.start_request("tools/call", call("beta__echo", json!({"text": "fast beta"})));
    let same_backend = proxy.start_request("tools/call", call("alpha__echo", json!({"text": "fast alpha"})));

    let mut arrival = Vec::new();
    for _ in 0..3 {
        let response = proxy.wait_for("a response", WAIT, |m| m.get("method").is_none());
        arrival.push(response["id"].clone());
        let expected = if response["id"] == slow {
            "slept 800 slow"
        } else if response["id"] == other_backend {
            "fast beta"
        } else if response["id"] == same_backend {
            "fast alpha"
        } else {
            panic!("response to an unknown id: {response}")
        };
        assert_eq!(result_text(&response), expected, "{response}");
    }
    assert_eq!(arrival.last(), Some(&slow), "arrival order {arrival:?}");
}

#[test]
fn fifty_interleaved_calls_to_two_backends_are_all_matched() {
    let mut proxy = start_initialized(&two_mocks());
    let mut expected = Vec::new();
    for i in 0..50u64 {
        // Numbers and strings as ids, both backends, different delays so answers come back out of order.
        let id = if i % 2 == 0 { json!(1000 + i) } else { json!(format!("call-{i}")) };
        let server = if i % 3 == 0 { "alpha" } else { "beta" };
        let ms = (i * 7) % 40;
        let text = format!("{server}-{i}");
        let params = json!({"name": format!("{server}__sleep"), "arguments": {"ms": ms, "text": text}});
        proxy.start_request_with_id(id.clone(), "tools/call", params);
        expected.push((id, format!("slept {ms} {text}")));
    }
    for (id, text) in &expected {
        let response = proxy.response(id);
        assert_eq!(result_text(&response), text, "{response}");
    }
    proxy.request_ok("ping", json!({}));
    let left: Vec<Value> = proxy.drain(Duration::from_millis(50));
    assert!(left.is_empty(), "messages beyond the 50 answers: {left:?}");
}

#[test]
fn tool_added_at_run_time_is_announced_and_listed() {
    let mut proxy = start_initialized(&two_mocks());
    assert_eq!(proxy.tool_text("beta__add_tool", json!({"name": "fresh"})), "added fresh");
    proxy.notification("notifications/tools/list_changed");
    let tools = proxy.tool_names();
    assert!(tools.contains(&"beta__fresh".to_owned()), "{tools:?}");
    assert_eq!(tools.len(), 2 * MOCK_TOOLS.len() + 1, "{tools:?}");
    assert_eq!(proxy.tool_text("beta__fresh", json!({})), "dynamic fresh");
}

// ----- progress, cancellation, timeouts ---------------------------------------------------------------

fn progress_with_token(token: Value) {
    let mut proxy = start_initialized(&two_mocks());
    let params = json!({"name": "alpha__progress", "arguments": {"steps": 3, "ms": 10}, "_meta": {"progressToken": token}});
    let response = proxy.request("tools/call", params);
    assert_eq!(result_text(&response), "done 3");
    // The mock sends its progress before its answer, and the proxy keeps that order.
    let progress = proxy.take_notifications("notifications/progress");
    let seen: Vec<(Value, Value, Value)> = progress
        .iter()
        .map(|n| (n["params"]["progressToken"].clone(), n["params"]["progress"].clone(), n["params"]["total"].clone()))
        .collect();
    let expected: Vec<(Value, Value, Value)> = (1..=3).map(|step| (token.clone(), json!(step), json!(3))).collect();
    assert_eq!(seen, expected);
}

#[test]
fn progress_notifications_carry_the_clients_string_token() {
    progress_with_token(json!("my-token"));
}

#[test]
fn progress_notifications_carry_the_clients_number_token() {
    progress_with_token(json!(42));
}

#[test]
fn progress_keeps_a_call_alive_past_the_request_timeout() {
    let mut proxy = ProxyBuilder::new(&two_mocks()).env("MCP_PROXY_REQUEST_TIMEOUT", "1").spawn();
    proxy.initialize();
    // 5 steps of 300 ms: 1.5 s in all, never 1 s without progress.
    let params = json!({"name": "alpha__progress", "arguments": {"steps": 5, "ms": 300}, "_meta": {"progressToken": "t"}});
    let response = proxy.request("tools/call", params);
    assert_eq!(result_text(&response), "done 5", "{response}");
    assert_eq!(proxy.take_notifications("notifications/progress").len(), 5);
}

#[test]
fn client_cancellation_reaches_the_backend_under_the_backends_id() {
    let mut proxy = start_initialized(&two_mocks());
    let id = json!("cancel-me");
    proxy.start_request_with_id(id.clone(), "tools/call", json!({"name": "alpha__cancellable", "arguments": {"ms": 5000}}));
    proxy.notify("notifications/cancelled", json!({"requestId": id, "reason": "changed my mind"}));
    let ids = parse(&proxy.tool_text("alpha__cancelled_ids", json!({})));
    let ids = ids.as_array().unwrap();
    // The backend knows the request by the proxy's numeric id, not the client's "cancel-me".
    assert!(ids.len() == 1 && ids[0].is_u64(), "backend saw cancellations {ids:?}");
    assert_eq!(parse(&proxy.tool_text("beta__cancelled_ids", json!({}))), json!([]));
}

#[test]
fn request_timeout_fails_the_call_and_cancels_it_at_the_backend() {
    let mut proxy = ProxyBuilder::new(&two_mocks()).env("MCP_PROXY_REQUEST_TIMEOUT", "1").spawn();
    proxy.initialize();
    let started = Instant::now();
    let response = proxy.call_tool("alpha__cancellable", json!({"ms": 5000}));
    let took = started.elapsed();
    assert_eq!(error_code(&response), Some(REQUEST_TIMEOUT), "{response}");
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(3), "timed out after {took:?}");
    // The backend is still alive and was told to stop working on the request.
    let ids = parse(&proxy.tool_text("alpha__cancelled_ids", json!({})));
    assert!(ids.as_array().is_some_and(|ids| ids.len() == 1 && ids[0].is_u64()), "backend saw cancellations {ids}");
}

#[test]
fn per_server_timeout_applies_to_that_server_only() {
    let cfg = config(&[("alpha", with(mock("alpha"), json!({"timeout": 1}))), ("beta", mock("beta"))]);
    let mut proxy = start_initialized(&cfg);
    let call = |name: &str| json!({"name": name, "arguments": {"ms": 1500}});
    let on_alpha = proxy.start_request("tools/call", call("alpha__cancellable"));
    let on_beta = proxy.start_request("tools/call", call("beta__cancellable"));
    let alpha_response = proxy.response(&on_alpha);
    assert_eq!(error_code(&alpha_response), Some(REQUEST_TIMEOUT), "{alpha_response}");
    assert_eq!(result_text(&proxy.response(&on_beta)), "not cancelled");
}

// ----- backends coming and going ----------------------------------------------------------------------

#[test]
fn crashed_backend_fails_its_calls_at_once_and_its_tools_are_withdrawn() {
    // No restart during this test, so the withdrawn state can be observed.
    let mut proxy = ProxyBuilder::new(&two_mocks()).env("MCP_PROXY_RESTART_BACKOFF_MIN", "60").spawn();
    proxy.initialize();
    let sleeping = proxy.start_request("tools/call", json!({"name": "alpha__sleep", "arguments": {"ms": 20000}}));
    let started = Instant::now();
    let crash = proxy.call_tool("alpha__crash", json!({}));
    assert_eq!(error_code(&crash), Some(BACKEND_UNAVAILABLE), "{crash}");
    let sleep = proxy.response(&sleeping);
    assert_eq!(error_code(&sleep), Some(BACKEND_UNAVAILABLE), "{sleep}");
    assert!(started.elapsed() < Duration::from_secs(2), "errors took {:?}", started.elapsed());
    assert!(sleep["error"]["message"].as_str().unwrap_or_default().contains("alpha"), "{sleep}");

    proxy.notification("notifications/tools/list_changed");
    let tools = proxy.tool_names();
    assert!(tools.iter().all(|t| !t.starts_with("alpha__")), "{tools:?}");
    assert_eq!(tools.len(), MOCK_TOOLS.len(), "{tools:?}");
    assert_eq!(proxy.tool_text("beta__whoami", json!({})), "beta");
    proxy.wait_for_stderr("[alpha] exited");
}

#[test]
fn crashed_backend_is_restarted_and_its_tools_return() {
    let mut proxy = ProxyBuilder::new(&two_mocks()).env("MCP_PROXY_RESTART_BACKOFF_MIN", "0.1").spawn();
    proxy.initialize();
    assert_eq!(error_code(&proxy.call_tool("alpha__crash", json!({}))), Some(BACKEND_UNAVAILABLE));
    proxy.notification("notifications/tools/list_changed"); // alpha's tools are withdrawn...
    wait_until_listed(&mut proxy, "alpha__whoami"); // ...and come back
    assert_eq!(proxy.tool_text("alpha__whoami", json!({})), "alpha");
    proxy.wait_for_stderr("[alpha] restarting");
}

#[test]
fn tool_call_to_a_restarting_backend_is_retried_until_it_is_back() {
    let mut proxy = ProxyBuilder::new(&two_mocks())
        .env("MCP_PROXY_RESTART_BACKOFF_MIN", "0.2")
        .env("STDIO_TOOL_CALL_MAX_RETRIES", "6")
        .env("STDIO_TOOL_CALL_RETRY_DELAY_BASE_MS", "100")
        .spawn();
    proxy.initialize();
    assert_eq!(error_code(&proxy.call_tool("alpha__crash", json!({}))), Some(BACKEND_UNAVAILABLE));
    // alpha is down now; the call waits for the restart instead of failing.
    assert_eq!(proxy.tool_text("alpha__whoami", json!({})), "alpha");
}

#[test]
fn tool_call_to_a_backend_that_stays_down_fails_as_unavailable() {
    let mut proxy = ProxyBuilder::new(&two_mocks())
        .env("MCP_PROXY_RESTART_BACKOFF_MIN", "60")
        .env("STDIO_TOOL_CALL_MAX_RETRIES", "2")
        .env("STDIO_TOOL_CALL_RETRY_DELAY_BASE_MS", "50")
        .spawn();
    proxy.initialize();
    assert_eq!(error_code(&proxy.call_tool("alpha__crash", json!({}))), Some(BACKEND_UNAVAILABLE));
    let response = proxy.call_tool("alpha__whoami", json!({}));
    assert_eq!(error_code(&response), Some(BACKEND_UNAVAILABLE), "{response}");
}

/// A call the client cancelled while it waited for a retry is dropped: not sent later, not answered
/// (the receiver of a cancellation SHOULD NOT answer the request).
#[test]
fn cancelled_call_waiting_for_a_retry_gets_no_answer() {
    let mut proxy = ProxyBuilder::new(&two_mocks())
        .env("MCP_PROXY_RESTART_BACKOFF_MIN", "60")
        .env("STDIO_TOOL_CALL_MAX_RETRIES", "1")
        .env("STDIO_TOOL_CALL_RETRY_DELAY_BASE_MS", "100")
        .spawn();
    proxy.initialize();
    assert_eq!(error_code(&proxy.call_tool("alpha__crash", json!({}))), Some(BACKEND_UNAVAILABLE));
    // alpha is down: this call waits for a retry, and the client gives up on it meanwhile.
    let id = proxy.start_request("tools/call", json!({"name": "alpha__whoami", "arguments": {}}));
    proxy.notify("notifications/cancelled", json!({"requestId": id, "reason": "no longer needed"}));
    let late: Vec<Value> = proxy.drain(Duration::from_millis(800)).into_iter().filter(|m| m.get("id") == Some(&id)).collect();
    assert_eq!(late, Vec::<Value>::new(), "answers to the cancelled request");
}

/// The level the client set is part of its session: a backend started again gets it too.
#[test]
fn logging_level_is_reapplied_to_a_restarted_backend() {
    let mut proxy = ProxyBuilder::new(&two_mocks()).env("MCP_PROXY_RESTART_BACKOFF_MIN", "0.1").spawn();
    proxy.initialize();
    proxy.request_ok("logging/setLevel", json!({"level": "error"}));
    eventually_text(&mut proxy, "alpha__set_level_seen", "error");
    assert_eq!(error_code(&proxy.call_tool("alpha__crash", json!({}))), Some(BACKEND_UNAVAILABLE));
    proxy.notification("notifications/tools/list_changed"); // alpha's tools are withdrawn...
    wait_until_listed(&mut proxy, "alpha__whoami"); // ...and come back
    eventually_text(&mut proxy, "alpha__set_level_seen", "error");
}

/// Start-up is bounded by MCP_PROXY_STARTUP_TIMEOUT (default 20 s); the request timeout is for requests.
/// (`npx -y` or `uvx` servers take many seconds on their first start.)
#[test]
fn short_request_timeout_does_not_kill_a_backend_that_is_slow_to_start() {
    let cfg = config(&[("alpha", mock("alpha")), ("slow", mock_via_shell("slow", "sleep 1.5"))]);
    let mut proxy = ProxyBuilder::new(&cfg).env("MCP_PROXY_REQUEST_TIMEOUT", "1").spawn();
    proxy.initialize();
    let tools = proxy.tool_names();
    assert!(tools.contains(&"slow__whoami".to_owned()), "{tools:?}");
}

#[test]
fn backend_that_cannot_start_does_not_block_the_others() {
    let missing = format!("/nonexistent/{}", unique("no-such-command"));
    let cfg = config(&[("broken", json!({"command": missing})), ("good", mock("good"))]);
    let mut proxy = start_initialized(&cfg);
    assert_eq!(proxy.tool_text("good__whoami", json!({})), "good");
    let stderr = proxy.wait_for_stderr(&missing);
    assert!(stderr.lines().any(|l| l.contains("[broken]") && l.contains(&missing)), "{stderr}");
}

#[test]
fn backend_answering_an_unknown_protocol_version_is_dropped() {
    let cfg = config(&[("alpha", mock_with("alpha", &["--protocol", "1999-01-01"])), ("beta", mock("beta"))]);
    let mut proxy = start_initialized(&cfg);
    let tools = proxy.tool_names();
    assert_eq!(tools.len(), MOCK_TOOLS.len(), "{tools:?}");
    assert!(tools.iter().all(|t| t.starts_with("beta__")), "{tools:?}");
    let stderr = proxy.wait_for_stderr("1999-01-01");
    assert!(stderr.lines().any(|l| l.contains("[alpha]") && l.contains("1999-01-01")), "{stderr}");
}

#[test]
fn backend_stdout_noise_is_logged_and_ignored() {
    let cfg = config(&[("noisy", mock_via_shell("noisy", "echo 'Noisy server v1 starting up'"))]);
    let mut proxy = start_initialized(&cfg);
    assert_eq!(proxy.tool_text("noisy__whoami", json!({})), "noisy");
    let stderr = proxy.wait_for_stderr("Noisy server v1 starting up");
    assert!(stderr.lines().any(|l| l.contains("[noisy]") && l.contains("Noisy server v1")), "{stderr}");
}

#[test]
fn backend_stdout_line_that_is_not_utf8_is_logged_and_skipped_and_the_backend_keeps_serving() {
    let mut proxy = start_initialized(&two_mocks());
    // The mock writes b"caf\xe9\n" on its stdout, then its answer.
    assert_eq!(proxy.tool_text("alpha__echo", json!({ "text": "answered", "raw_line": "caf\u{e9}" })), "answered");
    proxy.wait_for_stderr("[alpha] dropped a 4-byte stdout line that is not UTF-8");
    assert_eq!(proxy.tool_text("alpha__whoami", json!({})), "alpha");
}

#[test]
fn config_env_and_cwd_reach_the_backend() {
    let cwd = support::TempDir::new();
    let dir_name = cwd.path().file_name().unwrap().to_str().unwrap().to_owned();
    let script = format!(r#"exec python3 {MOCK_SERVER} --name "$MOCK_NAME@$(basename "$PWD")""#);
    let entry = json!({"command": "sh", "args": ["-c", script], "env": {"MOCK_NAME": "from-env"}, "cwd": cwd.path()});
    let mut proxy = start_initialized(&config(&[("env", entry)]));
    assert_eq!(proxy.tool_text("env__whoami", json!({})), format!("from-env@{dir_name}"));
}

#[test]
fn backend_roots_request_is_answered_by_the_client() {
    let mut proxy = start_initialized(&two_mocks());
    let call = proxy.start_request("tools/call", json!({"name": "beta__ask_roots", "arguments": {}}));
    let ask = proxy.wait_for("roots/list request", WAIT, |m| m["method"] == "roots/list" && m.get("id").is_some());
    let roots = json!([{"uri": "file:///tmp/project", "name": "project"}]);
    proxy.send(json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"roots": roots}}));
    let answer = parse(result_text(&proxy.response(&call)));
    // The backend got the client's answer under its own request id.
    assert_eq!(answer["id"], "r-1", "{answer}");
    assert_eq!(answer["result"]["roots"], roots, "{answer}");
}

// ----- names: namespaces and clashes -------------------------------------------------------------------

#[test]
fn empty_namespace_passes_tool_names_through() {
    let cfg = config(&[("plain", with(mock("plain"), json!({"namespace": ""}))), ("beta", mock("beta"))]);
    let mut proxy = start_initialized(&cfg);
    let tools = proxy.tool_names();
    assert!(tools.contains(&"whoami".to_owned()) && tools.contains(&"beta__whoami".to_owned()), "{tools:?}");
    assert!(!tools.iter().any(|t| t.starts_with("plain")), "{tools:?}");
    assert_eq!(proxy.tool_text("whoami", json!({})), "plain");
}

#[test]
fn two_unprefixed_servers_with_the_same_tool_keep_the_first_and_log_both() {
    let unprefixed = |name| with(mock(name), json!({"namespace": ""}));
    let mut proxy = start_initialized(&config(&[("first", unprefixed("first")), ("second", unprefixed("second"))]));
    let tools = proxy.tool_names();
    assert_eq!(tools.iter().filter(|t| *t == "echo").count(), 1, "{tools:?}");
    assert_eq!(tools.len(), MOCK_TOOLS.len(), "{tools:?}");
    assert_eq!(proxy.tool_text("whoami", json!({})), "first");
    let stderr = proxy.wait_for_stderr("'second'");
    let names_both = |l: &&str| l.contains("'echo'") && l.contains("'first'") && l.contains("'second'");
    assert!(stderr.lines().any(|l| names_both(&l)), "{stderr}");
}

#[test]
fn clashing_prompt_is_exposed_with_the_second_servers_prefix() {
    let mut proxy = start_initialized(&two_mocks());
    let result = proxy.request_ok("prompts/list", json!({}));
    let mut prompts = names(&result["prompts"]);
    prompts.sort();
    assert_eq!(prompts, ["alpha_only", "beta__greet", "beta_only", "greet"]);
    for (name, from) in [("greet", "alpha"), ("beta__greet", "beta")] {
        let got = proxy.request_ok("prompts/get", json!({"name": name, "arguments": {"who": "ann"}}));
        assert_eq!(got["messages"][0]["content"]["text"], format!("hello ann from {from}"), "{name}: {got}");
    }
    let only = proxy.request_ok("prompts/get", json!({"name": "beta_only"}));
    assert_eq!(only["messages"][0]["content"]["text"], "only beta");
}

#[test]
fn completion_by_prompt_ref_is_forwarded() {
    let mut proxy = start_initialized(&two_mocks());
    let params = json!({"ref": {"type": "ref/prompt", "name": "beta__greet"}, "argument": {"name": "who", "value": "an"}});
    let result = proxy.request_ok("completion/complete", params);
    assert_eq!(result["completion"]["values"], json!(["an-1", "an-2"]), "{result}");
    let unknown = json!({"ref": {"type": "ref/prompt", "name": "nope"}, "argument": {"name": "who", "value": "x"}});
    assert_eq!(error_code(&proxy.request("completion/complete", unknown)), Some(INVALID_PARAMS));
}

// ----- resources --------------------------------------------------------------------------------------

fn read_text(proxy: &mut Proxy, uri: &str) -> String {
    let result = proxy.request_ok("resources/read", json!({"uri": uri}));
    result["contents"][0]["text"].as_str().unwrap_or_else(|| panic!("no text: {result}")).to_owned()
}

#[test]
fn resource_read_is_routed_by_uri() {
    let mut proxy = start_initialized(&two_mocks());
    let listed = proxy.request_ok("resources/list", json!({}));
    let mut uris: Vec<&str> = listed["resources"].as_array().unwrap().iter().filter_map(|r| r["uri"].as_str()).collect();
    uris.sort();
    assert_eq!(uris, ["mock://alpha/readme", "mock://beta/readme"]);
    assert_eq!(read_text(&mut proxy, "mock://beta/readme"), "content of mock://beta/readme from beta");
    assert_eq!(read_text(&mut proxy, "mock://alpha/readme"), "content of mock://alpha/readme from alpha");
}

#[test]
fn templated_resource_uri_is_routed_by_its_template() {
    let mut proxy = start_initialized(&two_mocks());
    let listed = proxy.request_ok("resources/templates/list", json!({}));
    assert_eq!(listed["resourceTemplates"].as_array().map(Vec::len), Some(2), "{listed}");
    assert_eq!(read_text(&mut proxy, "mock://beta/items/7"), "content of mock://beta/items/7 from beta");
    assert_eq!(read_text(&mut proxy, "mock://alpha/items/7"), "content of mock://alpha/items/7 from alpha");
}

#[test]
fn unsubscribed_resource_update_is_not_forwarded() {
    let mut proxy = start_initialized(&two_mocks());
    let uri = json!({"uri": "mock://beta/readme"});
    proxy.request_ok("resources/subscribe", uri.clone());
    proxy.request_ok("resources/unsubscribe", uri.clone());
    proxy.tool_text("beta__update_resource", uri);
    assert_eq!(proxy.take_notifications("notifications/resources/updated"), Vec::<Value>::new());
}

/// A subscribe that failed must not leave the client recorded as a subscriber.
#[test]
fn subscribing_to_an_unknown_uri_fails_every_time() {
    let mut proxy = start_initialized(&two_mocks());
    for attempt in 1..=2 {
        let response = proxy.request("resources/subscribe", json!({"uri": "mock://gamma/readme"}));
        assert_eq!(error_code(&response), Some(-32002), "attempt {attempt}: {response}");
    }
}

#[test]
fn unknown_resource_uri_is_resource_not_found() {
    let mut proxy = start_initialized(&two_mocks());
    let response = proxy.request("resources/read", json!({"uri": "mock://gamma/readme"}));
    assert_eq!(error_code(&response), Some(-32002), "{response}");
}

#[test]
fn subscribed_resource_update_reaches_the_client() {
    let mut proxy = start_initialized(&two_mocks());
    proxy.request_ok("resources/subscribe", json!({"uri": "mock://alpha/readme"}));
    proxy.tool_text("alpha__update_resource", json!({"uri": "mock://alpha/not-subscribed"}));
    proxy.tool_text("alpha__update_resource", json!({"uri": "mock://alpha/readme"}));
    // A backend's notifications precede its answer, so both would be here by now.
    let updates = proxy.take_notifications("notifications/resources/updated");
    let uris: Vec<&Value> = updates.iter().map(|n| &n["params"]["uri"]).collect();
    assert_eq!(uris, [&json!("mock://alpha/readme")]);
}

// ----- logging ----------------------------------------------------------------------------------------

#[test]
fn set_level_reaches_every_backend() {
    let mut proxy = start_initialized(&two_mocks());
    assert_eq!(proxy.tool_text("alpha__set_level_seen", json!({})), "none");
    assert_eq!(proxy.request_ok("logging/setLevel", json!({"level": "debug"})), json!({}));
    // The mock handles each request in a thread of its own: poll until the level has landed.
    eventually_text(&mut proxy, "alpha__set_level_seen", "debug");
    eventually_text(&mut proxy, "beta__set_level_seen", "debug");
}

#[test]
fn log_message_from_a_backend_reaches_the_client() {
    let mut proxy = start_initialized(&two_mocks());
    proxy.tool_text("beta__log", json!({"level": "warning", "text": "disk nearly full"}));
    let message = proxy.notification("notifications/message");
    assert_eq!(message["params"], json!({"level": "warning", "logger": "beta", "data": "disk nearly full"}));
}

#[test]
fn backend_stderr_is_logged_with_its_key() {
    let mut proxy = start_initialized(&two_mocks());
    proxy.wait_for_stderr("[alpha] mock server alpha starting");
    let text = unique("stderr-line");
    proxy.tool_text("beta__stderr", json!({"text": text}));
    proxy.wait_for_stderr(&format!("[beta] {text}"));
}

// ----- the client's stream ----------------------------------------------------------------------------

#[test]
fn invalid_json_line_gets_a_parse_error_and_the_proxy_keeps_serving() {
    let mut proxy = start_initialized(&two_mocks());
    proxy.send_line("{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\": ");
    let error = proxy.wait_for("parse error", WAIT, |m| m.get("error").is_some());
    assert_eq!(error["id"], Value::Null, "{error}");
    assert_eq!(error_code(&error), Some(-32700), "{error}");
    assert_eq!(proxy.tool_text("alpha__whoami", json!({})), "alpha");
}

#[test]
fn request_line_that_is_not_utf8_gets_a_parse_error_and_the_proxy_keeps_serving() {
    let mut proxy = start_initialized(&two_mocks());
    proxy.send_bytes(b"{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\": \"caf\xe9\"}\n");
    let error = proxy.wait_for("parse error", WAIT, |m| m.get("error").is_some());
    assert_eq!(error["id"], Value::Null, "{error}");
    assert_eq!(error_code(&error), Some(-32700), "{error}");
    assert!(error["error"]["message"].as_str().is_some_and(|m| m.contains("not UTF-8")), "{error}");
    assert_eq!(proxy.tool_text("alpha__whoami", json!({})), "alpha");
}

#[test]
fn request_line_over_the_length_limit_gets_a_parse_error_and_the_proxy_keeps_serving() {
    let mut proxy = start_initialized(&two_mocks());
    // One byte over the 64 MiB cap on a stdin line, written a MiB at a time.
    let mib = vec![b'x'; 1024 * 1024];
    for _ in 0..64 {
        proxy.send_bytes(&mib);
    }
    proxy.send_bytes(b"x\n");
    let error = proxy.wait_for("parse error", WAIT, |m| m.get("error").is_some());
    assert_eq!(error["id"], Value::Null, "{error}");
    assert_eq!(error_code(&error), Some(-32700), "{error}");
    let message = error["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("67108865-byte line") && message.contains("limit of 67108864"), "{error}");
    assert_eq!(proxy.tool_text("alpha__whoami", json!({})), "alpha");
}

#[test]
fn batch_is_rejected_as_invalid_request() {
    let mut proxy = start_initialized(&two_mocks());
    proxy.send_line(r#"[{"jsonrpc": "2.0", "id": 77, "method": "ping"}]"#);
    let error = proxy.wait_for("batch error", WAIT, |m| m.get("error").is_some());
    assert_eq!(error["id"], Value::Null, "{error}");
    assert_eq!(error_code(&error), Some(-32600), "{error}");
    assert_eq!(proxy.request_ok("ping", json!({})), json!({}));
}

#[test]
fn stdout_carries_only_json_messages() {
    let mut proxy = start_initialized(&two_mocks());
    proxy.tool_text("alpha__stderr", json!({"text": "this goes to stderr"}));
    proxy.tool_text("alpha__log", json!({"level": "info", "text": "a log message"}));
    proxy.request_ok("prompts/list", json!({}));
    proxy.send_line("not json");
    proxy.close_stdin();
    assert!(proxy.wait_exit(WAIT).success());
    proxy.drain(WAIT); // Until stdout closes: every line has been read.
    let lines = proxy.stdout_lines();
    assert!(lines.len() >= 5, "{lines:?}");
    for line in &lines {
        let message: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert_eq!(message["jsonrpc"], "2.0", "{line}");
    }
}

// ----- config ------------------------------------------------------------------------------------------

#[test]
fn broken_config_entry_is_reported_and_the_other_server_still_serves() {
    let cfg = config(&[("bad", json!({"command": 5})), ("good", mock("good"))]);
    let mut proxy = start_initialized(&cfg);
    assert_eq!(proxy.tool_names().len(), MOCK_TOOLS.len());
    assert_eq!(proxy.tool_text("good__whoami", json!({})), "good");
    let path = proxy.config_path().display().to_string();
    let stderr = proxy.wait_for_stderr("'bad'");
    let line = stderr.lines().find(|l| l.contains("'bad'")).unwrap();
    assert!(line.contains(&path) && line.contains("'command' must be a string"), "{line}");
}

#[test]
fn missing_config_file_exits_non_zero_naming_the_file() {
    let mut proxy = ProxyBuilder::without_config_file().spawn();
    let status = proxy.wait_exit(WAIT);
    assert!(!status.success(), "{status}");
    let path = proxy.config_path().display().to_string();
    proxy.wait_for_stderr(&path);
}

#[test]
fn invalid_json_config_exits_non_zero_naming_the_file() {
    let mut proxy = ProxyBuilder::with_config_text("{\"mcpServers\": {\"a\": {\"command\": \"x\",}}}").spawn();
    let status = proxy.wait_exit(WAIT);
    assert!(!status.success(), "{status}");
    let path = proxy.config_path().display().to_string();
    let stderr = proxy.wait_for_stderr(&path);
    assert!(stderr.contains("not valid JSON"), "{stderr}");
}

#[test]
fn inactive_server_is_not_started() {
    let marker = unique("inactive-marker");
    let cfg = config(&[("alpha", with(mock(&marker), json!({"active": "false"}))), ("beta", mock("beta"))]);
    let mut proxy = start_initialized(&cfg);
    let tools = proxy.tool_names();
    assert!(tools.iter().all(|t| t.starts_with("beta__")), "{tools:?}");
    assert_eq!(processes_with(&marker), []);
    proxy.wait_for_stderr("'alpha' is not active");
}

// ----- shutdown ---------------------------------------------------------------------------------------

#[test]
fn closing_stdin_exits_zero_and_stops_every_backend() {
    let (alpha, beta) = (unique("marker-alpha"), unique("marker-beta"));
    let mut proxy = start_initialized(&config(&[("alpha", mock(&alpha)), ("beta", mock(&beta))]));
    assert_eq!(proxy.tool_text("alpha__whoami", json!({})), alpha);
    assert_eq!(processes_with(&alpha).len(), 1, "{:?}", processes_with(&alpha));
    assert_eq!(processes_with(&beta).len(), 1, "{:?}", processes_with(&beta));
    // A call still in flight must not hold the exit up.
    proxy.start_request("tools/call", json!({"name": "beta__sleep", "arguments": {"ms": 30000}}));
    proxy.tool_text("beta__whoami", json!({}));

    let started = Instant::now();
    proxy.close_stdin();
    let status = proxy.wait_exit(Duration::from_secs(4));
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(started.elapsed() < Duration::from_secs(3), "exit took {:?}", started.elapsed());
    assert_eq!(processes_with(&alpha), []);
    assert_eq!(processes_with(&beta), []);
}

#[test]
fn sigterm_stops_the_backends_and_exits_zero() {
    let marker = unique("marker-sigterm");
    let mut proxy = start_initialized(&config(&[("alpha", mock(&marker))]));
    assert_eq!(processes_with(&marker).len(), 1);
    let killed = std::process::Command::new("kill").args(["-TERM", &proxy.pid().to_string()]).status().unwrap();
    assert!(killed.success());
    assert_eq!(proxy.wait_exit(Duration::from_secs(4)).code(), Some(0));
    assert_eq!(processes_with(&marker), []);
}

#[test]
fn closing_stdin_kills_a_backend_that_ignores_eof_and_sigterm() {
    let marker = unique("marker-stubborn");
    // The mock exits at EOF, but its shell lingers, holding stdout open and ignoring SIGTERM.
    let script = format!("trap '' TERM\npython3 {MOCK_SERVER} --name stubborn\npython3 -c 'import time; time.sleep(60)' {marker}");
    let entry = json!({"command": "sh", "args": ["-c", script]});
    let mut proxy = start_initialized(&config(&[("stubborn", entry), ("beta", mock("beta"))]));
    assert_eq!(proxy.tool_text("stubborn__whoami", json!({})), "stubborn");
    proxy.close_stdin();
    assert_eq!(proxy.wait_exit(Duration::from_secs(8)).code(), Some(0));
    assert_eq!(processes_with(&marker), []);
}

#[test]
fn closing_stdin_also_stops_a_backends_grandchildren() {
    let marker = unique("marker-grandchild");
    let before = format!("python3 -c 'import time; time.sleep(60)' {marker} </dev/null >/dev/null 2>&1 &");
    let mut proxy = start_initialized(&config(&[("wrapped", mock_via_shell("wrapped", &before))]));
    assert_eq!(proxy.tool_text("wrapped__whoami", json!({})), "wrapped");
    assert!(!processes_with(&marker).is_empty(), "the grandchild did not start");
    proxy.close_stdin();
    assert_eq!(proxy.wait_exit(Duration::from_secs(4)).code(), Some(0));
    assert_eq!(processes_with(&marker), []);
}

/// A client that writes requests and never reads its stdout: once it has a few thousand answers
/// unread, the proxy stops reading its requests (so its memory stays bounded), and goes on as soon as
/// the client reads.
#[test]
fn a_client_that_sends_and_never_reads_is_stopped_by_backpressure_and_served_once_it_reads() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    const PINGS: usize = 40_000;
    let dir = support::TempDir::new();
    let config_path = dir.path().join("mcp_server.json");
    std::fs::write(&config_path, config(&[]).to_string()).unwrap();
    let mut command = Command::new(support::PROXY_BIN);
    command.arg("--config").arg(&config_path).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null());
    support::clear_proxy_env(&mut command);
    let mut child = command.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let writer = std::thread::spawn(move || {
        for id in 0..PINGS {
            let line = format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"ping\"}}\n");
            if stdin.write_all(line.as_bytes()).is_err() {
                return;
            }
        }
        let _ = stdin.flush();
        drop(stdin);
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(!writer.is_finished(), "the proxy read every request though its client read none of the answers");
    let rss_kib = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let rss_kib: u64 =
        rss_kib.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap();
    assert!(rss_kib < 64 * 1024, "RSS {rss_kib} KiB while the client did not read");
    let answered = BufReader::new(stdout).lines().take(PINGS).filter(|l| l.as_ref().is_ok_and(|l| l.contains("\"result\""))).count();
    writer.join().unwrap();
    assert_eq!(answered, PINGS);
    let _ = child.kill();
    let _ = child.wait();
}
