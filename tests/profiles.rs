//! Profiles end to end: the real binary, over stdio (`--profile`, `MCP_PROXY_PROFILE`) and HTTP
//! (`/mcp/<profile>`, `/sse/<profile>`, keys bound to profiles), in front of two mock backends (see
//! `tests/fixtures/mock_server.py`). Start-up refuses a profile that cannot be used, and `--check`
//! shows what each profile exposes and to whom. One behaviour per test, named for it. (The official
//! SDK clients drive profiles in `tests/interop/test_profiles_sdk.py`; what a profile shows, tool by
//! tool, is specified by the dispatcher's unit tests.)

mod support;

use serde_json::{json, Value};
use std::time::Duration;
use support::http::{initialize_request, mcp_post, notification, tool_call, HttpProxy, ProxyBuilder, Req, MCP_ACCEPT};
use support::stdio;
use support::toolctl::{run_cli, ConfigDir};
use support::{config, mock, names, WAIT};

const INVALID_PARAMS: i64 = -32602;

/// `alpha` and `beta` (mock backends), a profile for each bound to its own key, and a tool-search
/// profile bound to none.
fn profiled() -> Value {
    let mut cfg = config(&[("alpha", mock("alpha")), ("beta", mock("beta"))]);
    cfg["profiles"] = json!({
        "alpha-only": { "servers": ["alpha"], "keys": ["k-alpha"] },
        "beta-echo": { "servers": ["beta"], "tools": { "allow": ["beta__echo"] }, "rename": { "beta__echo": "say" }, "keys": ["k-beta"] },
        "lean": { "toolSearch": true }
    });
    cfg
}

fn http_proxy() -> HttpProxy {
    let proxy = ProxyBuilder::new().config(&profiled()).env("ALLOWED_KEYS", "k-alpha,k-beta,k-any").start();
    proxy.wait_backends_connected(&[("X-Api-Key", "k-any")]);
    proxy
}

/// `initialize` at `path` with `key`; the session id.
fn session(proxy: &HttpProxy, path: &str, key: &str) -> String {
    let response = proxy.request(&Req::post(path).json(&initialize_request(0)).header("Accept", MCP_ACCEPT).header("X-Api-Key", key));
    assert_eq!(response.status, 200, "initialize at {path}: {response:?}");
    response.header("mcp-session-id").expect("a session id").to_owned()
}

/// A request in a session at `path` with `key`; the JSON-RPC answer.
fn ask(proxy: &HttpProxy, path: &str, key: &str, session: &str, message: &Value) -> Value {
    let req = Req::post(path).json(message).header("Accept", MCP_ACCEPT).header("X-Api-Key", key).header("Mcp-Session-Id", session);
    let response = proxy.request(&req);
    assert_eq!(response.status, 200, "{message} at {path}: {response:?}");
    match response.content_type() {
        t if t.starts_with("text/event-stream") => response.events().last().expect("an event").json(),
        _ => response.json(),
    }
}

fn listed_tools(proxy: &HttpProxy, path: &str, key: &str) -> Vec<String> {
    let session = session(proxy, path, key);
    names(&ask(proxy, path, key, &session, &json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" }))["result"]["tools"])
}

#[test]
fn two_keys_bound_to_two_profiles_see_their_own_tools_on_the_default_path() {
    let proxy = http_proxy();
    let alpha = listed_tools(&proxy, "/mcp", "k-alpha");
    assert!(!alpha.is_empty() && alpha.iter().all(|t| t.starts_with("alpha__")), "{alpha:?}");
    assert_eq!(listed_tools(&proxy, "/mcp", "k-beta"), ["say"]);
    let any = listed_tools(&proxy, "/mcp", "k-any");
    assert!(
        any.iter().any(|t| t.starts_with("alpha__")) && any.iter().any(|t| t.starts_with("beta__")),
        "an unbound key sees all: {any:?}"
    );
}

#[test]
fn a_bound_key_calling_outside_its_profile_gets_unknown_tool_and_inside_it_the_tool() {
    let proxy = http_proxy();
    let session = session(&proxy, "/mcp", "k-beta");
    let outside = ask(&proxy, "/mcp", "k-beta", &session, &tool_call(1, "alpha__echo", json!({ "text": "x" })));
    assert_eq!(
        (outside["error"]["code"].clone(), outside["error"]["message"].clone()),
        (json!(INVALID_PARAMS), json!("Unknown tool: 'alpha__echo'"))
    );
    let inside = ask(&proxy, "/mcp", "k-beta", &session, &tool_call(2, "say", json!({ "text": "renamed" })));
    assert_eq!(inside["result"]["content"][0]["text"], "renamed", "{inside}");
}

#[test]
fn a_profile_path_is_403_for_a_key_bound_to_another_and_404_when_no_such_profile() {
    let proxy = http_proxy();
    let post = |path: &str, key: &str| {
        proxy.request(&Req::post(path).json(&initialize_request(0)).header("Accept", MCP_ACCEPT).header("X-Api-Key", key))
    };
    let refused = post("/mcp/beta-echo", "k-alpha");
    assert_eq!(refused.status, 403, "{refused:?}");
    assert!(refused.text().contains("bound to profile 'alpha-only'"), "{}", refused.text());
    assert_eq!(post("/mcp/nope", "k-any").status, 404);
    assert_eq!(post("/mcp/alpha-only", "k-alpha").status, 200);
    assert_eq!(listed_tools(&proxy, "/mcp/beta-echo", "k-any"), ["say"], "an unbound key may use any profile");
}

#[test]
fn a_legacy_sse_session_of_a_profile_path_sees_that_profile() {
    let proxy = http_proxy();
    let mut sse = proxy.open_sse_at("/sse/beta-echo", &[("X-Api-Key", "k-any")]);
    let post = |message: &Value| proxy.request(&Req::post(&sse.endpoint).json(message).header("X-Api-Key", "k-any"));
    assert_eq!(post(&initialize_request(1)).status, 202);
    assert_eq!(sse.events.next_message(WAIT)["id"], 1);
    assert_eq!(post(&notification("notifications/initialized", json!({}))).status, 202);
    assert_eq!(post(&json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list" })).status, 202);
    assert_eq!(names(&sse.events.next_message(WAIT)["result"]["tools"]), ["say"]);
    let refused = proxy.request(&Req::get("/sse/beta-echo").header("Accept", "text/event-stream").header("X-Api-Key", "k-alpha"));
    assert_eq!(refused.status, 403, "{refused:?}");
}

#[test]
fn a_session_opened_on_one_profile_path_is_unknown_on_another() {
    let proxy = http_proxy();
    let session = session(&proxy, "/mcp/alpha-only", "k-any");
    let list = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" });
    let req = |path: &str| {
        Req::post(path).json(&list).header("Accept", MCP_ACCEPT).header("X-Api-Key", "k-any").header("Mcp-Session-Id", &session)
    };
    assert_eq!(proxy.request(&req("/mcp/beta-echo")).status, 404);
    assert_eq!(proxy.request(&req("/mcp/alpha-only")).status, 200);
    assert_eq!(proxy.request(&req("/mcp")).status, 200, "the default path names no profile, so the session's own holds");
}

#[test]
fn the_stdio_client_sees_the_profile_it_was_started_with() {
    let mut proxy = stdio::ProxyBuilder::new(&profiled()).env("MCP_PROXY_PROFILE", "beta-echo").spawn();
    proxy.initialize();
    assert_eq!(proxy.tool_names(), ["say"]);
    assert_eq!(proxy.tool_text("say", json!({ "text": "hi" })), "hi");
    let outside = proxy.request("tools/call", json!({ "name": "beta__whoami", "arguments": {} }));
    assert_eq!(outside["error"]["message"], "Unknown tool: 'beta__whoami'", "{outside}");
}

#[test]
fn a_tool_search_profile_over_stdio_finds_a_tool_and_calls_it_as_a_direct_call_would() {
    let mut proxy = stdio::ProxyBuilder::new(&profiled()).env("MCP_PROXY_PROFILE", "lean").spawn();
    proxy.initialize();
    assert_eq!(proxy.tool_names(), ["search_tools", "call_tool", "list_servers"]);
    let found = proxy.call_tool("search_tools", json!({ "query": "echo text back", "limit": 2 }));
    let first = found["result"]["structuredContent"]["tools"][0]["name"].as_str().unwrap_or_default().to_owned();
    assert!(first.ends_with("__echo"), "{found}");
    let through = proxy.call_tool("call_tool", json!({ "name": first, "arguments": { "text": "same" } }));
    let direct = proxy.call_tool(&first, json!({ "text": "same" }));
    assert_eq!(through["result"], direct["result"]);
    assert_eq!(through["result"]["content"][0]["text"], "same");
}

#[test]
fn a_profile_that_does_not_exist_stops_start_up_naming_it() {
    let mut proxy = stdio::ProxyBuilder::new(&profiled()).env("MCP_PROXY_PROFILE", "nope").spawn();
    assert!(!proxy.wait_exit(WAIT).success());
    proxy.wait_for_stderr("--profile 'nope': ");
}

#[test]
fn a_profile_key_that_is_not_an_allowed_key_stops_http_start_up_without_showing_it() {
    let dir = ConfigDir::new(&profiled(), None);
    let mut command = std::process::Command::new(support::PROXY_BIN);
    command.args(["--sse", "--port", "0", "--config"]).arg(&dir.config_path).env("ALLOWED_KEYS", "k-alpha");
    let output = command.stdin(std::process::Stdio::null()).output().expect("the proxy runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("profile 'beta-echo': key 1 of 1 is not in ALLOWED_KEYS"), "{stderr}");
    assert!(!stderr.contains("k-beta"), "the secret is not shown: {stderr}");
}

#[test]
fn check_shows_what_each_profile_exposes_and_to_whom() {
    let dir = ConfigDir::new(&profiled(), None);
    let run = run_cli(&dir, &["--check"], Duration::from_secs(15));
    let line = run.stdout.lines().find(|l| l.starts_with("profile beta-echo:")).unwrap_or_else(|| run.fail("no profile line"));
    assert_eq!(line, "profile beta-echo: 1 tools: say");
    assert!(run.stdout.lines().any(|l| l.starts_with("profile lean: ") && l.contains("through tool search")), "{}", run.stdout);
}

#[test]
fn a_bad_profile_in_the_file_stops_start_up_naming_the_profile() {
    let mut cfg = profiled();
    cfg["profiles"]["broken"] = json!({ "servers": ["gamma"] });
    let mut proxy = stdio::ProxyBuilder::new(&cfg).spawn();
    assert!(!proxy.wait_exit(WAIT).success());
    proxy.wait_for_stderr("profile 'broken': 'servers' names 'gamma'");
}

#[test]
fn an_unbound_default_path_without_profiles_is_as_before() {
    let proxy = ProxyBuilder::new().start();
    proxy.wait_backends_connected(&[]);
    let response = proxy.request(&mcp_post(None, &initialize_request(0)));
    assert_eq!(response.status, 200, "{response:?}");
}

#[test]
fn list_tools_with_a_profile_prints_that_profiles_tools() {
    let dir = ConfigDir::new(&profiled(), None);
    let run = run_cli(&dir, &["--list-tools", "--profile", "beta-echo"], Duration::from_secs(15));
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(run.last_line(), "1 tools");
    assert!(run.stdout.lines().next().is_some_and(|l| l.starts_with("say ")), "{}", run.stdout);
}
