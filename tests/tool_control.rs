//! Tool control end to end: `tool_config.json` overrides (disable, rename, redescribe, the README's
//! aliases), per-server allow/deny filters, names over 64 characters, live reload of both config files
//! (polling and SIGHUP), and the `--check` / `--list-tools` reports. The real binary over stdio in
//! front of the mock backend of `tests/fixtures/mock_server.py`. One behaviour per test, named for it.
//!
//! Reload tests poll the config files every 0.1 s (`MCP_PROXY_CONFIG_POLL`), and find backend processes
//! in `/proc` by a unique `--name marker-...` argument.

mod support;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};
use support::stdio::Proxy;
use support::toolctl::{run_cli, spawn_cli, spawn_with_tool_config, start_with_tool_config, wait_cli, write_atomically, ConfigDir};
use support::{config, error_code, mock, mock_with, names, processes_with, result_text, signal, unique, with, MOCK_TOOLS, WAIT};

const INVALID_PARAMS: i64 = -32602;
const TOOLS_CHANGED: &str = "notifications/tools/list_changed";
const POLL: (&str, &str) = ("MCP_PROXY_CONFIG_POLL", "0.1");
/// How long a one-shot `--check` or `--list-tools` run may take.
const CLI_WAIT: Duration = Duration::from_secs(15);

fn two_mocks() -> Value {
    config(&[("alpha", mock("alpha")), ("beta", mock("beta"))])
}

fn overrides(tools: Value) -> Value {
    json!({ "tools": tools })
}

fn tool_defs(proxy: &mut Proxy) -> Vec<Value> {
    proxy.request_ok("tools/list", json!({}))["tools"].as_array().cloned().unwrap_or_default()
}

fn tool_def(proxy: &mut Proxy, name: &str) -> Value {
    let defs = tool_defs(proxy);
    match defs.iter().find(|t| t["name"] == name) {
        Some(def) => def.clone(),
        None => proxy.fail(&format!("{name} is not listed: {:?}", names(&Value::Array(defs.clone())))),
    }
}

fn sorted(mut items: Vec<String>) -> Vec<String> {
    items.sort();
    items
}

/// `alpha__echo` etc.: the default names of `tools` on server `key`.
fn qualified(key: &str, tools: &[&str]) -> Vec<String> {
    tools.iter().map(|t| format!("{key}__{t}")).collect()
}

/// The error of a response that must be one, failing through `proxy` otherwise.
fn error_of(proxy: &Proxy, response: &Value) -> (i64, String) {
    match (error_code(response), response.pointer("/error/message").and_then(Value::as_str)) {
        (Some(code), Some(message)) => (code, message.to_owned()),
        _ => proxy.fail(&format!("expected an error, got {response}")),
    }
}

/// Asserts that calling `name` fails exactly as calling a tool that never existed does (same code, same
/// message but for the name itself).
fn assert_unknown_tool(proxy: &mut Proxy, name: &str) {
    let nonexistent = format!("{}_never_existed", unique("tool")).replace('-', "_");
    let response = proxy.call_tool(name, json!({"text": "x"}));
    let (code, message) = error_of(proxy, &response);
    let unknown = proxy.call_tool(&nonexistent, json!({"text": "x"}));
    let (unknown_code, unknown_message) = error_of(proxy, &unknown);
    assert_eq!(code, INVALID_PARAMS, "{response}");
    assert_eq!((code, message.replace(name, "<NAME>")), (unknown_code, unknown_message.replace(&nonexistent, "<NAME>")));
}

/// The pid of the one live backend process run with `marker`.
fn pid_of(proxy: &Proxy, marker: &str) -> u32 {
    proxy.wait_until(&format!("one process of {marker}"), WAIT, || match processes_with(marker).as_slice() {
        [(pid, _)] => Some(*pid),
        _ => None,
    })
}

fn wait_until_gone(proxy: &Proxy, marker: &str) {
    proxy.wait_until(&format!("the processes of {marker} to exit"), WAIT, || processes_with(marker).is_empty().then_some(()));
}

/// Waits, one `notifications/tools/list_changed` at a time, until `done` holds for the tool names.
fn wait_for_tools(proxy: &mut Proxy, what: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let tools = proxy.tool_names();
        if done(&tools) {
            return tools;
        }
        if Instant::now() > deadline {
            proxy.fail(&format!("tools never {what}: {tools:?}"));
        }
        proxy.notification(TOOLS_CHANGED);
    }
}

// ----- overrides ----------------------------------------------------------------------------------------

#[test]
fn disabled_tool_is_neither_listed_nor_callable_and_fails_like_an_unknown_tool() {
    let mut proxy = start_with_tool_config(&two_mocks(), &overrides(json!({"alpha__echo": {"enabled": false}})));
    let tools = proxy.tool_names();
    assert!(!tools.contains(&"alpha__echo".to_owned()), "{tools:?}");
    assert!(tools.contains(&"beta__echo".to_owned()), "only alpha's echo is disabled: {tools:?}");
    assert_eq!(tools.len(), 2 * MOCK_TOOLS.len() - 1, "{tools:?}");
    assert_unknown_tool(&mut proxy, "alpha__echo");
}

#[test]
fn renamed_tool_is_listed_and_called_by_its_exposed_name_with_its_exposed_description() {
    let tool_config = overrides(json!({"alpha__echo": {"exposedName": "speak", "exposedDescription": "Says it back"}}));
    let mut proxy = start_with_tool_config(&two_mocks(), &tool_config);
    let speak = tool_def(&mut proxy, "speak");
    assert_eq!(speak["description"], "Says it back", "{speak}");
    // Every other field is the backend's own.
    assert_eq!(speak["title"], "Echo", "{speak}");
    assert_eq!(speak["inputSchema"]["required"], json!(["text"]), "{speak}");
    // The mock echoes only when it is called by its own name "echo".
    let response = proxy.call_tool("speak", json!({"text": "renamed hello"}));
    assert_eq!(result_text(&response), "renamed hello", "{response}");
    assert_eq!(response["result"]["structuredContent"], json!({"text": "renamed hello"}), "{response}");
    let tools = proxy.tool_names();
    assert!(!tools.contains(&"alpha__echo".to_owned()), "{tools:?}");
    assert_unknown_tool(&mut proxy, "alpha__echo");
}

#[test]
fn readme_aliases_display_name_and_description_rename_and_redescribe() {
    let tool_config = overrides(json!({"alpha__whoami": {"displayName": "who", "description": "Names the server"}}));
    let mut proxy = start_with_tool_config(&two_mocks(), &tool_config);
    let who = tool_def(&mut proxy, "who");
    assert_eq!(who["description"], "Names the server", "{who}");
    assert_eq!(proxy.tool_text("who", json!({})), "alpha");
    assert!(!proxy.tool_names().contains(&"alpha__whoami".to_owned()));
}

#[test]
fn invalid_exposed_name_is_reported_with_its_key_and_the_tool_keeps_its_default_name() {
    let tool_config = overrides(json!({"alpha__whoami": {"exposedName": "who am i"}}));
    let mut proxy = start_with_tool_config(&two_mocks(), &tool_config);
    let tools = proxy.tool_names();
    assert!(tools.contains(&"alpha__whoami".to_owned()), "{tools:?}");
    assert!(!tools.iter().any(|t| t.contains(' ')), "{tools:?}");
    assert_eq!(proxy.tool_text("alpha__whoami", json!({})), "alpha");
    let stderr = proxy.wait_for_stderr("who am i");
    assert!(stderr.lines().any(|l| l.contains("who am i") && l.contains("alpha__whoami")), "{stderr}");
}

#[test]
fn two_overrides_with_the_same_exposed_name_expose_one_tool_and_the_clash_is_logged() {
    let tool_config = overrides(json!({"alpha__whoami": {"exposedName": "me"}, "beta__whoami": {"exposedName": "me"}}));
    let mut proxy = start_with_tool_config(&two_mocks(), &tool_config);
    let tools = proxy.tool_names();
    assert_eq!(tools.iter().filter(|t| *t == "me").count(), 1, "{tools:?}");
    // The first server in key order keeps the name.
    assert_eq!(proxy.tool_text("me", json!({})), "alpha");
    let stderr = proxy.wait_for_stderr("'me'");
    let line = stderr.lines().find(|l| l.contains("'me'")).unwrap();
    assert!(line.contains("alpha") && line.contains("beta"), "the clash should name both: {line}");
}

#[test]
fn override_for_a_tool_that_does_not_exist_is_reported() {
    let tool_config = overrides(json!({"alpha__no_such_tool": {"enabled": false}}));
    let mut proxy = start_with_tool_config(&two_mocks(), &tool_config);
    assert_eq!(proxy.tool_names().len(), 2 * MOCK_TOOLS.len());
    proxy.wait_for_stderr("alpha__no_such_tool");
}

#[test]
fn bad_tool_config_entry_is_reported_with_file_and_key_and_the_rest_still_applies() {
    let tool_config = overrides(json!({
        "alpha__echo": {"enabled": "no"},
        "alpha__whoami": {"exposedName": "who"},
        "beta__echo": {"enabled": false},
    }));
    let mut proxy = start_with_tool_config(&two_mocks(), &tool_config);
    let tools = proxy.tool_names();
    assert!(tools.contains(&"alpha__echo".to_owned()), "the bad entry is skipped, not applied: {tools:?}");
    assert!(tools.contains(&"who".to_owned()), "{tools:?}");
    assert!(!tools.contains(&"beta__echo".to_owned()), "{tools:?}");
    assert_eq!(proxy.tool_text("who", json!({})), "alpha");
    let file = proxy.tool_config.display().to_string();
    let stderr = proxy.wait_for_stderr("alpha__echo");
    assert!(stderr.lines().any(|l| l.contains(&file) && l.contains("alpha__echo") && l.contains("enabled")), "{stderr}");
}

#[test]
fn tool_config_that_is_not_json_stops_start_up_naming_the_file() {
    let mut proxy = spawn_with_tool_config(&two_mocks(), Some("{\"tools\": {"), &[]);
    let status = proxy.wait_exit(WAIT);
    assert!(!status.success(), "{status}");
    let file = proxy.tool_config.display().to_string();
    // The process has exited; its last stderr lines may still be on their way to the reader thread.
    let stderr = proxy.wait_for_stderr("not valid JSON");
    assert!(stderr.lines().any(|l| l.contains(&file) && l.contains("not valid JSON")), "{stderr}");
}

// ----- filters ------------------------------------------------------------------------------------------

#[test]
fn tool_filters_allow_globs_and_deny_wins_for_listing_and_calls() {
    let filtered = with(mock("alpha"), json!({"tools": {"allow": ["e*", "s*", "wh?ami"], "deny": ["sl*"]}}));
    let mut proxy = start_with_tool_config(&config(&[("alpha", filtered), ("beta", mock("beta"))]), &json!({}));
    let tools = proxy.tool_names();
    let alpha: Vec<String> = tools.iter().filter(|t| t.starts_with("alpha__")).cloned().collect();
    assert_eq!(sorted(alpha), sorted(qualified("alpha", &["echo", "stderr", "set_level_seen", "whoami"])));
    // Filters are per server.
    assert_eq!(tools.iter().filter(|t| t.starts_with("beta__")).count(), MOCK_TOOLS.len(), "{tools:?}");
    assert_eq!(proxy.tool_text("alpha__whoami", json!({})), "alpha");
    assert_unknown_tool(&mut proxy, "alpha__sleep"); // allowed by s*, denied by sl*
    assert_unknown_tool(&mut proxy, "alpha__progress"); // not allowed
}

#[test]
fn prompt_filters_apply_to_prompts_list_and_get() {
    let filtered = with(mock("alpha"), json!({"prompts": {"deny": ["gr*"]}}));
    let mut proxy = start_with_tool_config(&config(&[("alpha", filtered), ("beta", mock("beta"))]), &json!({}));
    let prompts = sorted(names(&proxy.request_ok("prompts/list", json!({}))["prompts"]));
    // alpha's greet is denied, so beta's is no longer a clash and keeps its plain name.
    assert_eq!(prompts, ["alpha_only", "beta_only", "greet"]);
    let greet = proxy.request_ok("prompts/get", json!({"name": "greet", "arguments": {"who": "x"}}));
    assert_eq!(greet["description"], "greets from beta", "{greet}");
}

#[test]
fn resource_filters_hide_denied_uris_and_templates_from_the_lists() {
    let filtered = with(mock("alpha"), json!({"resources": {"deny": ["*/readme", "mock://alpha/items/*"]}}));
    let mut proxy = start_with_tool_config(&config(&[("alpha", filtered), ("beta", mock("beta"))]), &json!({}));
    let listed = proxy.request_ok("resources/list", json!({}));
    let uris: Vec<&str> = listed["resources"].as_array().unwrap().iter().filter_map(|r| r["uri"].as_str()).collect();
    assert_eq!(uris, ["mock://beta/readme"], "{listed}");
    let templates = proxy.request_ok("resources/templates/list", json!({}));
    let patterns: Vec<&str> = templates["resourceTemplates"].as_array().unwrap().iter().filter_map(|t| t["uriTemplate"].as_str()).collect();
    assert_eq!(patterns, ["mock://beta/items/{id}"], "{templates}");
    let read = proxy.request_ok("resources/read", json!({"uri": "mock://beta/readme"}));
    assert_eq!(read["contents"][0]["text"], "content of mock://beta/readme from beta", "{read}");
}

/// The proxy routes a URI it has not seen listed by the resource templates, and failing that to the only
/// server offering resources; a URI the server's filter denies must not get through either way.
#[test]
fn reading_a_denied_resource_uri_is_refused() {
    let deny = json!({"resources": {"deny": ["mock://alpha/readme", "mock://alpha/items/secret"]}});
    let mut proxy = start_with_tool_config(&config(&[("alpha", with(mock("alpha"), deny))]), &json!({}));
    let listed = proxy.request_ok("resources/list", json!({}));
    assert_eq!(listed["resources"], json!([]), "{listed}");
    let read_through: Vec<Value> = ["mock://alpha/readme", "mock://alpha/items/secret"]
        .iter()
        .map(|uri| proxy.request("resources/read", json!({"uri": uri})))
        .filter(|response| response.get("error").is_none())
        .collect();
    assert!(read_through.is_empty(), "denied URIs were read through the proxy: {read_through:#?}");
    // An allowed URI of the same server still reads.
    let item = proxy.request_ok("resources/read", json!({"uri": "mock://alpha/items/7"}));
    assert_eq!(item["contents"][0]["text"], "content of mock://alpha/items/7 from alpha", "{item}");
}

// ----- long names ---------------------------------------------------------------------------------------

#[test]
fn tool_name_over_64_characters_is_shortened_callable_and_warned_about() {
    let key = "k".repeat(50); // `<key>__set_level_seen` is 66 characters, `<key>__client_info` 63.
    let cfg = config(&[(key.as_str(), mock("long"))]);
    let mut proxy = start_with_tool_config(&cfg, &json!({}));
    let defs = tool_defs(&mut proxy);
    let all = names(&Value::Array(defs.clone()));
    assert!(all.iter().all(|n| n.len() <= 64), "{all:?}");
    assert!(all.contains(&format!("{key}__client_info")), "names of 64 characters or fewer are kept: {all:?}");
    let long = format!("{key}__set_level_seen");
    let short = defs.iter().find(|d| d["title"] == "Level seen").map(|d| d["name"].as_str().unwrap().to_owned()).unwrap();
    assert_eq!(short.len(), 64, "{short}");
    assert!(short.starts_with(&long[..55]), "{short}");
    assert!(short.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'), "{short}");
    assert_eq!(proxy.tool_text(&short, json!({})), "none");
    let stderr = proxy.wait_for_stderr(&long);
    assert!(stderr.lines().any(|l| l.contains(&long) && l.contains(&short)), "{stderr}");
    // The same name on every start: clients and tool_config.json can rely on it.
    let mut again = start_with_tool_config(&cfg, &json!({}));
    assert_eq!(sorted(again.tool_names()), sorted(all));
}

// ----- live reload --------------------------------------------------------------------------------------

/// A proxy on `alpha` (left alone by the reload), `beta` (changed) and `gamma` (removed), each run
/// with a unique marker as its mock name; initialized, polling its config files every 0.1 s.
struct ReloadScene {
    proxy: support::toolctl::Controlled,
    alpha: String,
    beta: String,
    gamma: String,
    /// The mock name `beta` runs with after the reload, and the added server `delta`'s.
    beta_after: String,
    delta: String,
}

impl ReloadScene {
    fn start() -> ReloadScene {
        let [alpha, beta, gamma, beta_after, delta] =
            ["alpha", "beta", "gamma", "beta-after", "delta"].map(|s| unique(&format!("marker-{s}")));
        let cfg = config(&[("alpha", mock(&alpha)), ("beta", mock(&beta)), ("gamma", mock(&gamma))]);
        let mut proxy = spawn_with_tool_config(&cfg, None, &[POLL]);
        proxy.initialize();
        assert_eq!(proxy.tool_names().len(), 3 * MOCK_TOOLS.len());
        ReloadScene { proxy, alpha, beta, gamma, beta_after, delta }
    }

    /// Writes the new server config: alpha as it was, beta with another name, gamma gone, delta new.
    fn reload(&self) {
        let cfg = config(&[("alpha", mock(&self.alpha)), ("beta", mock(&self.beta_after)), ("delta", mock(&self.delta))]);
        write_atomically(self.proxy.config_path(), &serde_json::to_string_pretty(&cfg).unwrap());
    }
}

#[test]
fn reload_adds_a_new_server_and_tells_the_client_its_tools_changed() {
    let mut scene = ReloadScene::start();
    scene.proxy.drain(Duration::from_millis(100));
    scene.proxy.take_notifications(TOOLS_CHANGED);
    scene.reload();
    scene.proxy.notification(TOOLS_CHANGED);
    wait_for_tools(&mut scene.proxy, "included delta's", |tools| tools.contains(&"delta__whoami".to_owned()));
    let delta = scene.delta.clone();
    assert_eq!(scene.proxy.tool_text("delta__whoami", json!({})), delta);
}

#[test]
fn reload_stops_a_removed_server_and_withdraws_its_tools() {
    let mut scene = ReloadScene::start();
    pid_of(&scene.proxy, &scene.gamma);
    scene.reload();
    let tools = wait_for_tools(&mut scene.proxy, "dropped gamma's", |tools| !tools.iter().any(|t| t.starts_with("gamma__")));
    assert!(tools.contains(&"alpha__whoami".to_owned()), "{tools:?}");
    assert_unknown_tool(&mut scene.proxy, "gamma__whoami");
    wait_until_gone(&scene.proxy, &scene.gamma);
}

#[test]
fn reload_restarts_a_changed_server() {
    let mut scene = ReloadScene::start();
    pid_of(&scene.proxy, &scene.beta);
    scene.reload();
    let beta_after = scene.beta_after.clone();
    let deadline = Instant::now() + WAIT;
    while scene.proxy.call_tool("beta__whoami", json!({})).pointer("/result/content/0/text") != Some(&json!(beta_after)) {
        if Instant::now() > deadline {
            scene.proxy.fail("beta never answered as its new configuration");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_until_gone(&scene.proxy, &scene.beta);
    pid_of(&scene.proxy, &scene.beta_after);
    scene.proxy.wait_for_stderr("changed [\"beta\"]");
}

#[test]
fn reload_leaves_an_untouched_server_running_and_its_call_in_flight_completes() {
    let mut scene = ReloadScene::start();
    let alpha_pid = pid_of(&scene.proxy, &scene.alpha);
    let started = Instant::now();
    let id = scene.proxy.start_request("tools/call", json!({"name": "alpha__sleep", "arguments": {"ms": 1500, "text": "across"}}));
    scene.reload();
    scene.proxy.wait_for_stderr("configuration reloaded");
    let reloaded_after = started.elapsed();
    assert!(reloaded_after < Duration::from_millis(1400), "the reload came too late to test anything: {reloaded_after:?}");
    let response = scene.proxy.response(&id);
    assert_eq!(response.pointer("/result/content/0/text"), Some(&json!("slept 1500 across")), "{response}");
    assert_eq!(pid_of(&scene.proxy, &scene.alpha), alpha_pid, "alpha was restarted");
    let stderr = scene.proxy.stderr();
    let line = stderr.lines().find(|l| l.contains("configuration reloaded")).unwrap();
    assert!(!line.contains("\"alpha\""), "alpha is untouched: {line}");
}

#[test]
fn tool_config_change_applies_without_restarting_servers() {
    let marker = unique("marker-alpha");
    let mut proxy = spawn_with_tool_config(&config(&[("alpha", mock(&marker))]), Some("{}"), &[POLL]);
    proxy.initialize();
    assert!(proxy.tool_names().contains(&"alpha__echo".to_owned()));
    let pid = pid_of(&proxy, &marker);
    let path = proxy.tool_config.clone();
    write_atomically(&path, &overrides(json!({"alpha__echo": {"enabled": false}})).to_string());
    proxy.notification(TOOLS_CHANGED);
    wait_for_tools(&mut proxy, "dropped alpha__echo", |tools| !tools.contains(&"alpha__echo".to_owned()));
    assert_unknown_tool(&mut proxy, "alpha__echo");
    assert_eq!(pid_of(&proxy, &marker), pid, "the server was restarted");
}

#[test]
fn reload_of_an_invalid_server_config_keeps_the_old_one_and_says_why() {
    let mut scene = ReloadScene::start();
    let path = scene.proxy.config_path().to_owned();
    write_atomically(&path, "{\"mcpServers\": {");
    let stderr = scene.proxy.wait_for_stderr("keeping the running configuration");
    let file = path.display().to_string();
    assert!(stderr.lines().any(|l| l.contains(&file) && l.contains("not valid JSON")), "{stderr}");
    assert_eq!(scene.proxy.tool_names().len(), 3 * MOCK_TOOLS.len());
    let gamma = scene.gamma.clone();
    assert_eq!(scene.proxy.tool_text("gamma__whoami", json!({})), gamma);
    pid_of(&scene.proxy, &scene.gamma);
}

#[test]
fn reload_with_one_broken_entry_is_refused_as_a_whole() {
    let mut scene = ReloadScene::start();
    let path = scene.proxy.config_path().to_owned();
    let mut cfg = config(&[("alpha", mock(&scene.alpha)), ("delta", mock(&scene.delta))]);
    cfg["mcpServers"]["broken"] = json!({"command": 5});
    write_atomically(&path, &cfg.to_string());
    let stderr = scene.proxy.wait_for_stderr("keeping the running configuration");
    assert!(stderr.lines().any(|l| l.contains("'broken'") && l.contains("'command'")), "{stderr}");
    let tools = scene.proxy.tool_names();
    assert_eq!(tools.len(), 3 * MOCK_TOOLS.len(), "{tools:?}");
    assert!(tools.contains(&"gamma__whoami".to_owned()) && !tools.contains(&"delta__whoami".to_owned()), "{tools:?}");
    assert!(processes_with(&scene.delta).is_empty(), "delta was started");
    pid_of(&scene.proxy, &scene.gamma);
}

#[test]
fn sighup_reloads_with_polling_off() {
    let (alpha, beta) = (unique("marker-alpha"), unique("marker-beta"));
    let mut proxy = spawn_with_tool_config(&config(&[("alpha", mock(&alpha))]), None, &[("MCP_PROXY_CONFIG_POLL", "0")]);
    proxy.initialize();
    assert_eq!(proxy.tool_names().len(), MOCK_TOOLS.len());
    let cfg = config(&[("alpha", mock(&alpha)), ("beta", mock(&beta))]);
    write_atomically(proxy.config_path(), &cfg.to_string());
    std::thread::sleep(Duration::from_millis(400));
    assert!(!proxy.stderr().contains("configuration reloaded"), "reloaded with polling off:\n{}", proxy.stderr());
    signal(proxy.pid(), libc::SIGHUP);
    proxy.notification(TOOLS_CHANGED);
    wait_for_tools(&mut proxy, "included beta's", |tools| tools.contains(&"beta__whoami".to_owned()));
    assert_eq!(proxy.tool_text("beta__whoami", json!({})), beta);
}

// ----- --check and --list-tools ---------------------------------------------------------------------------

#[test]
fn check_on_a_good_config_prints_every_exposed_tool_with_its_server_and_original_name_and_exits_0() {
    // No prompt clash (see check_accepts_a_prompt_clash_resolved_by_the_documented_rule); tool_config.json
    // beside mcp_server.json is read by default.
    let cfg = config(&[("alpha", mock("alpha")), ("beta", mock_with("beta", &["--no-prompts"]))]);
    let dir = ConfigDir::new(&cfg, Some(&overrides(json!({"alpha__echo": {"exposedName": "speak"}}))));
    let run = run_cli(&dir, &["--check"], CLI_WAIT);
    if !run.status.success() {
        run.fail("--check failed on a good config");
    }
    let rows = run.check_rows();
    let mut expected: Vec<(String, String, String)> = ["alpha", "beta"]
        .iter()
        .flat_map(|s| MOCK_TOOLS.iter().map(move |t| (format!("{s}__{t}"), s.to_string(), t.to_string())))
        .collect();
    expected[0] = ("speak".into(), "alpha".into(), "echo".into());
    let (mut rows_sorted, mut expected_sorted) = (rows.clone(), expected);
    rows_sorted.sort();
    expected_sorted.sort();
    if rows_sorted != expected_sorted {
        run.fail(&format!("rows {rows:?}"));
    }
    for line in ["server alpha: connected", "server beta: connected"] {
        if !run.stdout.lines().any(|l| l == line) {
            run.fail(&format!("no line {line:?}"));
        }
    }
    if run.last_line() != format!("{} tools, 0 problems: ok", 2 * MOCK_TOOLS.len()) {
        run.fail("wrong summary line");
    }
}

/// Two servers offering the same prompt name is handled by a documented rule (the first in key order
/// keeps the name, the other is exposed as `<server>__<name>`); it is worth a warning, not a failed check.
#[test]
fn check_accepts_a_prompt_clash_resolved_by_the_documented_rule() {
    let dir = ConfigDir::new(&two_mocks(), None);
    let run = run_cli(&dir, &["--check"], CLI_WAIT);
    if !run.status.success() || run.last_line() != format!("{} tools, 0 problems: ok", 2 * MOCK_TOOLS.len()) {
        run.fail("--check failed on two servers that share a prompt name");
    }
}

#[test]
fn check_with_an_override_for_a_missing_tool_exits_1_and_prints_the_problem() {
    let dir = ConfigDir::new(&two_mocks(), None);
    // Given with --tool-config, at a path of its own.
    let path = dir.path("overrides.json");
    std::fs::write(&path, overrides(json!({"alpha__no_such_tool": {"enabled": false}})).to_string()).unwrap();
    let run = run_cli(&dir, &["--check", "--tool-config", path.to_str().unwrap()], CLI_WAIT);
    if run.status.code() != Some(1) {
        run.fail("--check should exit 1");
    }
    if !run.stdout.lines().any(|l| l.starts_with("problem: ") && l.contains("alpha__no_such_tool")) {
        run.fail("no problem line naming alpha__no_such_tool");
    }
    if !run.last_line().ends_with("NOT OK") || run.check_rows().len() != 2 * MOCK_TOOLS.len() {
        run.fail("wrong summary or tool rows");
    }
}

#[test]
fn check_with_a_server_whose_command_does_not_exist_exits_1_and_prints_the_problem() {
    let missing = format!("/nonexistent/{}", unique("no-such-command"));
    let dir = ConfigDir::new(&config(&[("alpha", mock("alpha")), ("broken", json!({"command": missing}))]), None);
    let run = run_cli(&dir, &["--check"], CLI_WAIT);
    if run.status.code() != Some(1) {
        run.fail("--check should exit 1");
    }
    if !run.stdout.lines().any(|l| l.starts_with("server broken: failed") && l.contains(&missing)) {
        run.fail("no line saying server broken failed and why");
    }
    if !run.last_line().ends_with("NOT OK") || run.check_rows().len() != MOCK_TOOLS.len() {
        run.fail("wrong summary or tool rows");
    }
}

#[test]
fn list_tools_prints_the_tools_and_a_count() {
    let dir = ConfigDir::new(&config(&[("alpha", mock("alpha"))]), None);
    let run = run_cli(&dir, &["--list-tools"], CLI_WAIT);
    if !run.status.success() {
        run.fail("--list-tools failed");
    }
    let listed: Vec<String> =
        run.stdout.lines().filter_map(|l| l.split_whitespace().next()).filter(|n| n.starts_with("alpha__")).map(str::to_owned).collect();
    if sorted(listed) != sorted(qualified("alpha", &MOCK_TOOLS)) {
        run.fail("not every tool is listed");
    }
    if !run.stdout.lines().any(|l| l.starts_with("alpha__echo") && l.contains("Echoes its text")) {
        run.fail("no description for alpha__echo");
    }
    if run.last_line() != format!("{} tools", MOCK_TOOLS.len()) {
        run.fail("wrong count line");
    }
}

/// `--list-tools | head -1`: a reader that stops early is no error. The listing is made longer than a
/// pipe holds (20 KB descriptions), so the proxy is still writing when the reader goes.
#[test]
fn list_tools_whose_reader_stops_early_exits_0_without_a_panic() {
    let long = "x".repeat(20_000);
    let tools: serde_json::Map<String, Value> =
        MOCK_TOOLS.iter().map(|t| (format!("alpha__{t}"), json!({"exposedDescription": long}))).collect();
    let dir = ConfigDir::new(&config(&[("alpha", mock("alpha"))]), Some(&overrides(Value::Object(tools))));
    let mut child = spawn_cli(&dir, &["--list-tools"]);
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut first = String::new();
    let read = stdout.read_line(&mut first);
    drop(stdout);
    let run = wait_cli(child, &["--list-tools"], CLI_WAIT);
    if !matches!(read, Ok(n) if n > 0) || !first.starts_with("alpha__") {
        run.fail(&format!("the first line is not a tool: {read:?} {:?}", &first[..first.len().min(80)]));
    }
    if run.status.code() != Some(0) || run.stderr.contains("panicked") {
        run.fail("--list-tools did not exit quietly with 0 when its reader went away");
    }
}
