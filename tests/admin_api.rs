//! The admin API (docs/admin-api.md) end to end on the real binary in `--sse` mode, with the mock backend
//! of `tests/fixtures/mock_server.py`: when the admin UI is served at all, login, the session cookie,
//! CSRF, the login rate limit, config and tool config editing (validation, atomic writes; profiles, their
//! keys and tokens masked), live reload under an open MCP session, status (an isolated server's instances
//! too), tools (and what each profile shows), logs (secrets masked) and installs with live output.
//!
//! One behaviour per test; each test starts its own proxy (tests/support/admin.rs).

mod support;

use serde_json::{json, Value};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, Instant};
use support::admin::{backend, events_until, file_names, Admin, AdminBuilder, AdminProxy, PASSWORD, USER};
use support::http::{initialize_on, mcp_post, rpc, tool_call, Conn, EventStream, Req, SseEvent};
use support::{mock, result_text, wait_until, TempDir, MOCK_SERVER, WAIT};

const INSTALL_WAIT: Duration = Duration::from_secs(20);

fn start() -> AdminProxy {
    AdminBuilder::new("api").start()
}

/// The GET data routes of the API; each needs a session.
const DATA_ROUTES: [&str; 8] = [
    "/admin/session",
    "/admin/config",
    "/admin/tools/config",
    "/admin/environment",
    "/admin/status",
    "/admin/tools/list",
    "/admin/logs",
    "/admin/sse/updates",
];

// ----- when the admin UI is served ---------------------------------------------------------------------

#[test]
fn admin_routes_are_404_when_the_admin_ui_is_off() {
    let proxy = AdminBuilder::new("off").unset("ENABLE_ADMIN_UI").start();
    for req in [
        Req::get("/admin"),
        Req::get("/admin/"),
        Req::get("/admin/app.js"),
        Req::post("/admin/login").json(&json!({ "username": USER, "password": PASSWORD })),
        Req::get("/admin/config"),
        Req::post("/admin/server/reload"),
        Req::get("/admin/terminal.html"),
    ] {
        let response = proxy.request(&req);
        assert_eq!(response.status, 404, "{} {} with the admin UI off: {response:?}", req.method, req.target);
    }
    assert_eq!(proxy.request(&Req::get("/health")).status, 200, "the proxy itself still serves");
}

/// The generated password from the proxy's stderr.
fn printed_password(proxy: &mut AdminProxy) -> String {
    let stderr = proxy.wait_for_stderr("admin UI login for this run");
    let line = stderr.lines().find(|l| l.contains("admin UI login for this run")).unwrap_or_default();
    let password = line.split("password ").nth(1).and_then(|rest| rest.split_whitespace().next()).unwrap_or_default();
    assert!(password.len() >= 32, "a long random password: {line:?}");
    password.to_owned()
}

#[test]
fn unset_admin_password_is_replaced_by_a_random_one_printed_once() {
    let mut proxy = AdminBuilder::new("generated-pw").unset("ADMIN_PASSWORD").host("0.0.0.0").start();
    let password = printed_password(&mut proxy);
    let admin = proxy.login_as("admin", &password);
    assert_eq!(admin.get_json("/admin/session")["user"], "admin");
    let logs = admin.get_json("/admin/logs").to_string();
    assert!(!logs.contains(&password), "the password is not in the admin UI's log: {logs}");
    assert_eq!(proxy.stderr().matches(&password).count(), 1, "printed once, masked everywhere else");
}

#[test]
fn the_originals_default_password_never_logs_in() {
    let mut proxy = AdminBuilder::new("default-pw").unset("ADMIN_PASSWORD").start();
    proxy.wait_for_stderr("admin UI on /admin/");
    let response = proxy.login_response("admin", "password");
    assert_eq!(response.status, 401, "{response:?}");
}

#[test]
fn admin_password_set_to_the_originals_default_turns_the_admin_ui_off_but_serves_mcp() {
    let mut proxy = AdminBuilder::new("default-pw-set").env("ADMIN_PASSWORD", "password").start();
    let stderr = proxy.wait_for_stderr("refusing to serve the admin UI");
    assert!(stderr.contains("ERROR"), "the refusal is logged as an error: {stderr}");
    for req in [Req::get("/admin/"), Req::post("/admin/login").json(&json!({ "username": "admin", "password": "password" }))] {
        let response = proxy.request(&req);
        assert_eq!(response.status, 404, "{} {}: {response:?}", req.method, req.target);
    }
    let mut conn = proxy.connect();
    let session = initialize_on(&mut conn);
    let response = conn.roundtrip(&mcp_post(Some(&session), &tool_call(1, "mock__echo", json!({ "text": "still here" }))));
    assert_eq!(result_text(&response.json()), "still here");
}

// ----- DNS rebinding and cross-site requests -----------------------------------------------------------

/// A page on `rebound.example` whose name now resolves to 127.0.0.1: its requests carry its own name
/// as `Host` and `Origin`. It must not get as far as a login, let alone a config save and a reload.
#[test]
fn a_dns_rebound_page_cannot_reach_the_admin_ui() {
    let proxy = start();
    let origin_host = format!("rebound.example:{}", proxy.addr().port());
    let origin = format!("http://{origin_host}");
    let page = |req: Req| proxy.request(&req.header("Host", &origin_host).header("Origin", &origin));
    let login = page(Req::post("/admin/login").json(&json!({ "username": USER, "password": PASSWORD })));
    assert_eq!(login.status, 403, "{login:?}");
    assert!(login.header("set-cookie").is_none(), "{login:?}");
    let save = page(Req::post("/admin/config").json(&json!({ "mcpServers": {} })));
    assert_eq!(save.status, 403, "{save:?}");
    assert_eq!(page(Req::get("/admin/")).status, 403);
}

#[test]
fn an_admin_change_from_another_origin_is_refused_even_with_session_and_csrf_token() {
    let proxy = start();
    let admin = proxy.login();
    let response = admin.send(&admin.req("POST", "/admin/server/reload").header("Origin", "http://evil.example"));
    assert_eq!(response.status, 403, "{response:?}");
    let own = format!("http://127.0.0.1:{}", proxy.addr().port());
    let response = admin.send(&admin.req("POST", "/admin/server/reload").header("Origin", &own));
    assert_eq!(response.status, 200, "the admin UI's own origin: {response:?}");
}

// ----- login, session, CSRF ----------------------------------------------------------------------------

#[test]
fn login_with_wrong_credentials_is_401() {
    let proxy = start();
    for (user, password) in [(USER, "wrong"), ("root", PASSWORD), ("", "")] {
        let response = proxy.login_response(user, password);
        assert_eq!(response.status, 401, "login {user:?}/{password:?}: {response:?}");
        assert_eq!(response.json(), json!({ "success": false, "error": "Invalid credentials" }));
        assert!(response.header("set-cookie").is_none(), "no cookie on a failed login: {response:?}");
    }
}

#[test]
fn login_sets_an_httponly_strict_cookie_scoped_to_admin() {
    let proxy = start();
    let response = proxy.login_response(USER, PASSWORD);
    assert_eq!(response.status, 200, "{response:?}");
    let body = response.json();
    assert_eq!(body["success"], true);
    let csrf = body["csrfToken"].as_str().expect("csrfToken");
    assert!(csrf.len() >= 32, "a long random CSRF token: {csrf:?}");
    let cookie = response.header("set-cookie").expect("Set-Cookie");
    let attributes: Vec<&str> = cookie.split(';').map(str::trim).collect();
    let (name, value) = attributes[0].split_once('=').expect("name=value");
    assert_eq!(name, "mcp_admin");
    assert!(value.len() >= 32 && value.chars().all(|c| c.is_ascii_alphanumeric()), "a random session id: {value:?}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/admin"] {
        assert!(attributes.iter().any(|a| a.eq_ignore_ascii_case(attribute)), "cookie lacks {attribute}: {cookie}");
    }
    assert!(!attributes.iter().any(|a| a.eq_ignore_ascii_case("Secure")), "not Secure by default: {cookie}");
    assert_ne!(value, csrf, "the CSRF token is not the session id");
    // The cookie is the session.
    let session = proxy.request(&Req::get("/admin/session").header("Cookie", attributes[0]));
    assert_eq!(session.status, 200, "{session:?}");
    assert_eq!(session.json(), json!({ "user": USER, "csrfToken": csrf }));
}

#[test]
fn login_accepts_a_form_body() {
    let proxy = start();
    let body = format!("username={USER}&password={PASSWORD}");
    let req = Req::post("/admin/login").header("Content-Type", "application/x-www-form-urlencoded").body(body);
    let response = proxy.request(&req);
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.json()["success"], true);
}

#[test]
fn cookie_is_secure_with_admin_cookie_secure() {
    let proxy = AdminBuilder::new("secure").env("ADMIN_COOKIE_SECURE", "true").start();
    let response = proxy.login_response(USER, PASSWORD);
    assert_eq!(response.status, 200, "{response:?}");
    let cookie = response.header("set-cookie").expect("Set-Cookie");
    let attributes: Vec<&str> = cookie.split(';').map(str::trim).collect();
    for attribute in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/admin"] {
        assert!(attributes.iter().any(|a| a.eq_ignore_ascii_case(attribute)), "cookie lacks {attribute}: {cookie}");
    }
}

#[test]
fn data_routes_without_a_session_are_401() {
    let proxy = start();
    let stale = "mcp_admin=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    for cookie in [None, Some(stale)] {
        let with = |req: Req| match cookie {
            Some(c) => req.header("Cookie", c),
            None => req,
        };
        for path in DATA_ROUTES {
            let response = proxy.request(&with(Req::get(path)));
            assert_eq!(response.status, 401, "GET {path} with cookie {cookie:?}: {response:?}");
            assert_eq!(response.json(), json!({ "error": "Unauthorized" }), "GET {path}");
        }
        for path in ["/admin/config", "/admin/tools/config", "/admin/server/reload", "/admin/logout", "/admin/server/install/mock"] {
            let response = proxy.request(&with(Req::post(path).header("X-CSRF-Token", "x").json(&json!({ "mcpServers": {} }))));
            assert_eq!(response.status, 401, "POST {path} with cookie {cookie:?}: {response:?}");
        }
    }
    // The pages themselves are public (they show the login form).
    assert_eq!(proxy.request(&Req::get("/admin/")).status, 200);
}

#[test]
fn state_changing_calls_without_the_csrf_token_are_403() {
    let proxy = start();
    let admin = proxy.login();
    let before = std::fs::read_to_string(&proxy.config_path).unwrap();
    let new_config = json!({ "mcpServers": { "mock": mock("mock"), "other": mock("other") } });
    for token in [None, Some("wrong-token"), Some("")] {
        for (path, body) in [
            ("/admin/config", new_config.clone()),
            ("/admin/tools/config", json!({ "tools": {} })),
            ("/admin/server/reload", json!({})),
            ("/admin/logout", json!({})),
        ] {
            let mut req = Req::post(path).header("Cookie", &admin.cookie).json(&body);
            if let Some(token) = token {
                req = req.header("X-CSRF-Token", token);
            }
            let response = admin.send(&req);
            assert_eq!(response.status, 403, "POST {path} with token {token:?}: {response:?}");
            assert_eq!(response.json(), json!({ "error": "Invalid CSRF token" }));
        }
    }
    // Another session's token is no good either.
    let other = proxy.login();
    let req = Req::post("/admin/config").header("Cookie", &admin.cookie).header("X-CSRF-Token", &other.csrf).json(&new_config);
    assert_eq!(admin.send(&req).status, 403, "a token from another session");
    assert_eq!(std::fs::read_to_string(&proxy.config_path).unwrap(), before, "nothing was written");
    assert!(!proxy.dir.join("tool_config.json").exists(), "no tool config was written");
    assert_eq!(admin.get("/admin/session").status, 200, "the refused logout did not end the session");
}

#[test]
fn sixth_failed_login_within_a_minute_is_429() {
    let proxy = start();
    for attempt in 1..=5 {
        let response = proxy.login_response(USER, &format!("wrong-{attempt}"));
        assert_eq!(response.status, 401, "failed attempt {attempt}: {response:?}");
    }
    let response = proxy.login_response(USER, "wrong-6");
    assert_eq!(response.status, 429, "6th failed attempt: {response:?}");
    assert_eq!(response.json(), json!({ "success": false, "error": "Too many login attempts; try again later" }));
    // While limited, even the right password is refused: guessing cannot go on.
    let response = proxy.login_response(USER, PASSWORD);
    assert_eq!(response.status, 429, "right password while rate limited: {response:?}");
}

#[test]
fn logout_ends_the_session() {
    let proxy = start();
    let admin = proxy.login();
    let other = proxy.login();
    assert_eq!(admin.get("/admin/status").status, 200);
    let response = admin.post("/admin/logout", &json!({}));
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.json(), json!({ "success": true }));
    let cleared = response.header("set-cookie").expect("a Set-Cookie clearing the cookie");
    assert!(cleared.starts_with("mcp_admin=;"), "the cookie is emptied: {cleared}");
    assert!(cleared.contains("Max-Age=0") && cleared.contains("Path=/admin"), "and expired: {cleared}");
    for path in ["/admin/session", "/admin/status", "/admin/config"] {
        assert_eq!(admin.get(path).status, 401, "GET {path} after logout");
    }
    assert_eq!(admin.post("/admin/server/reload", &json!({})).status, 401, "POST after logout");
    assert_eq!(other.get("/admin/session").status, 200, "other sessions live on");
}

// ----- configuration -----------------------------------------------------------------------------------

#[test]
fn get_config_returns_the_file_text() {
    let text = format!(
        "{{\n  \"mcpServers\": {{\n    \"mock\": {{ \"command\": \"python3\", \"args\": [{:?}, \"--name\", \"mock\"] }}\n  }},\n  \"comment\": \"kept\"\n}}\n",
        MOCK_SERVER
    );
    let proxy = AdminBuilder::new("get-config").config_text(&text).start();
    let admin = proxy.login();
    let response = admin.get("/admin/config");
    assert_eq!(response.status, 200, "{response:?}");
    assert!(response.content_type().starts_with("application/json"), "{response:?}");
    assert_eq!(response.text(), text, "the file as it is, formatting included");
    // No tool config yet: an empty one.
    assert_eq!(admin.get_json("/admin/tools/config"), json!({ "tools": {} }));
}

#[test]
fn get_config_masks_secrets_and_saving_them_back_keeps_the_stored_values() {
    let config = json!({ "mcpServers": {
        "mock": { "command": "python3", "args": [MOCK_SERVER, "--name", "mock"], "env": { "API_TOKEN": "env-secret-1" } },
        "remote": { "type": "http", "url": "http://127.0.0.1:9/mcp", "active": false, "apiKey": "key-secret-2", "headers": { "X-Auth": "header-secret-3" } },
    } });
    let proxy = AdminBuilder::new("mask").config_text(&config.to_string()).start();
    let admin = proxy.login();
    let shown = admin.get("/admin/config");
    assert_eq!(shown.status, 200, "{shown:?}");
    for secret in ["env-secret-1", "key-secret-2", "header-secret-3"] {
        assert!(!shown.text().contains(secret), "{secret} shown: {}", shown.text());
    }
    let mut edited = shown.json();
    edited["mcpServers"]["remote"]["url"] = json!("http://127.0.0.1:10/mcp");
    let response = admin.post("/admin/config", &edited);
    assert_eq!(response.status, 200, "{response:?}");
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&proxy.config_path).unwrap()).unwrap();
    let mut expected = config.clone();
    expected["mcpServers"]["remote"]["url"] = json!("http://127.0.0.1:10/mcp");
    assert_eq!(saved, expected, "the stored secrets kept, the edit saved");
}

#[test]
fn invalid_config_is_400_with_problems_naming_file_and_key_and_nothing_is_written() {
    let proxy = start();
    let admin = proxy.login();
    let before = std::fs::read_to_string(&proxy.config_path).unwrap();
    let files_before = file_names(&proxy.dir);
    let invalid = json!({ "mcpServers": {
        "mock": mock("mock"),
        "broken": { "type": "stdio", "args": ["x"] },
        "badurl": { "type": "http" },
    } });
    let response = admin.post("/admin/config", &invalid);
    assert_eq!(response.status, 400, "{response:?}");
    let body = response.json();
    assert_eq!(body["error"], "Invalid configuration", "{body}");
    let problems: Vec<&str> = body["problems"].as_array().expect("problems").iter().filter_map(Value::as_str).collect();
    assert!(!problems.is_empty(), "{body}");
    let about = |key: &str| problems.iter().find(|p| p.contains(&format!("'{key}'"))).copied();
    for key in ["broken", "badurl"] {
        let problem = about(key).unwrap_or_else(|| panic!("no problem names server '{key}': {problems:?}"));
        assert!(problem.contains("mcp_server.json"), "the problem names the file: {problem}");
    }
    assert!(about("mock").is_none(), "the valid entry has no problem: {problems:?}");
    for bad in [json!([1, 2]), json!("text"), json!({ "mcpServers": "nope" })] {
        let response = admin.post("/admin/config", &bad);
        assert_eq!(response.status, 400, "POST {bad}: {response:?}");
    }
    let response = admin.send(&admin.req("POST", "/admin/config").header("Content-Type", "application/json").body("{not json"));
    assert_eq!(response.status, 400, "a body that is not JSON: {response:?}");
    assert_eq!(std::fs::read_to_string(&proxy.config_path).unwrap(), before, "the file is unchanged");
    assert_eq!(file_names(&proxy.dir), files_before, "no backup and no temporary file");
}

/// What the admin UI's editor writes for isolation is checked by the same validation as a hand edit:
/// a bad value is refused with a problem naming the server and the key, a good one is written as sent.
#[test]
fn isolation_settings_are_validated_on_save_and_written_as_sent() {
    let proxy = start();
    let admin = proxy.login();
    let before = std::fs::read_to_string(&proxy.config_path).unwrap();
    let with = |extra: Value| {
        let mut entry = mock("iso");
        entry.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json!({ "mcpServers": { "mock": mock("mock"), "iso": entry } })
    };
    for (extra, key) in [
        (json!({ "isolation": "client" }), "'isolation'"),
        (json!({ "isolation": "session", "maxInstances": 0 }), "'maxInstances'"),
        (json!({ "isolation": "session", "maxInstances": 100001 }), "'maxInstances'"),
        (json!({ "isolation": "session", "maxInstances": 2.5 }), "'maxInstances'"),
        (json!({ "isolation": "session", "idleTimeout": 0 }), "'idleTimeout'"),
        (json!({ "isolation": "session", "idleTimeout": "600" }), "'idleTimeout'"),
        (json!({ "maxInstances": 4 }), "'maxInstances'"),
        (json!({ "isolation": "shared", "idleTimeout": 60 }), "'idleTimeout'"),
    ] {
        let response = admin.post("/admin/config", &with(extra.clone()));
        assert_eq!(response.status, 400, "{extra}: {response:?}");
        let body = response.json();
        let problems: Vec<&str> = body["problems"].as_array().expect("problems").iter().filter_map(Value::as_str).collect();
        assert!(problems.iter().any(|p| p.contains("'iso'") && p.contains(key)), "{extra}: a problem naming 'iso' and {key}: {problems:?}");
    }
    assert_eq!(std::fs::read_to_string(&proxy.config_path).unwrap(), before, "nothing written");

    let good = with(json!({ "isolation": "session", "maxInstances": 3, "idleTimeout": 1.5, "x-note": "kept" }));
    let response = admin.post("/admin/config", &good);
    assert_eq!(response.status, 200, "{response:?}");
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&proxy.config_path).unwrap()).unwrap();
    assert_eq!(written, good, "written as sent");
}

/// The problems of a refused save, as text.
fn problems(response: &support::http::Response) -> Vec<String> {
    let body = response.json();
    assert_eq!(body["error"], "Invalid configuration", "{body}");
    body["problems"]
        .as_array()
        .unwrap_or_else(|| panic!("no problems: {body}"))
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

/// What the admin UI's Profiles page saves is checked as start-up checks it: each mistake is refused
/// with a problem naming the profile (never a key), and nothing is written; a good one is written as sent.
#[test]
fn profiles_are_validated_on_save_naming_the_profile_and_a_good_one_is_written_as_sent() {
    let proxy = AdminBuilder::new("profiles-save").env("ALLOWED_KEYS", "k-one,k-two").start();
    let admin = proxy.login();
    let before = std::fs::read_to_string(&proxy.config_path).unwrap();
    let files_before = file_names(&proxy.dir);
    let with = |profiles: Value| json!({ "mcpServers": { "mock": mock("mock") }, "profiles": profiles });
    for (profiles, name, about) in [
        (json!({ "a b": {} }), "a b", "a profile name is 1 to 64 letters"),
        (json!({ "..": {} }), "..", "a profile name is 1 to 64 letters"),
        (json!({ "team": { "servers": ["mock", "nope"] } }), "team", "'servers' names 'nope'"),
        (json!({ "team": { "tool": { "allow": ["*"] } } }), "team", "'tool' is not known"),
        (json!({ "team": { "tools": { "allow": "mock__*" } } }), "team", "'tools.allow'"),
        (json!({ "team": { "keys": ["k-one", "k-unknown"] } }), "team", "key 2 of 2 is not in ALLOWED_KEYS"),
        (json!({ "team": { "tokens": ["t-unknown"] } }), "team", "token 1 of 1 is not in ALLOWED_TOKENS"),
        (json!({ "team": { "rename": { "mock__echo": "say it" } } }), "team", "not a tool name"),
        (json!({ "team": { "rename": { "mock__echo": "x", "mock__whoami": "x" } } }), "team", "two tools the name 'x'"),
        (json!({ "team": { "toolSearch": "yes" } }), "team", "'toolSearch' must be true or false"),
        (json!({ "team": { "keys": ["k-one"] }, "other": { "keys": ["k-one"] } }), "team", "bind the same key"),
    ] {
        let response = admin.post("/admin/config", &with(profiles.clone()));
        assert_eq!(response.status, 400, "{profiles}: {response:?}");
        let problems = problems(&response);
        assert!(
            problems
                .iter()
                .any(|p| (p.contains(&format!("profile '{name}'")) || p.contains(&format!("profiles '{name}'"))) && p.contains(about)),
            "{profiles}: a problem naming profile '{name}' and {about:?}: {problems:?}"
        );
        assert!(!problems.iter().any(|p| p.contains("k-unknown") || p.contains("t-unknown")), "no key shown: {problems:?}");
    }
    assert_eq!(std::fs::read_to_string(&proxy.config_path).unwrap(), before, "nothing written");
    assert_eq!(file_names(&proxy.dir), files_before, "no backup and no temporary file");

    let good = with(json!({
        "team": { "servers": ["mock"], "tools": { "allow": ["mock__*"], "deny": ["mock__crash"] }, "rename": { "mock__echo": "say" }, "keys": ["k-two"] },
        "team.v2-lean": { "toolSearch": true },
    }));
    let response = admin.post("/admin/config", &good);
    assert_eq!(response.status, 200, "{response:?}");
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&proxy.config_path).unwrap()).unwrap();
    assert_eq!(written, good, "written as sent");
}

/// Profile keys and tokens are secrets: shown masked with their number in the list (a `${VAR}` reference
/// as it is), and a masked value saved back keeps the stored one it names, wherever it moved. A mask with
/// nothing stored behind it (a renamed profile) is refused.
#[test]
fn get_config_masks_profile_keys_and_tokens_and_a_masked_save_keeps_them() {
    let config = json!({ "mcpServers": { "mock": mock("mock") }, "profiles": {
        "team": { "keys": ["k-secret-1", "${TEAM_KEY}"], "tokens": ["t-secret-2"] },
    } });
    let proxy = AdminBuilder::new("profile-mask")
        .config_text(&config.to_string())
        .env("ALLOWED_KEYS", "k-secret-1,k-from-env")
        .env("ALLOWED_TOKENS", "t-secret-2")
        .env("TEAM_KEY", "k-from-env")
        .start();
    let admin = proxy.login();
    let shown = admin.get("/admin/config");
    assert_eq!(shown.status, 200, "{shown:?}");
    for secret in ["k-secret-1", "t-secret-2", "k-from-env"] {
        assert!(!shown.text().contains(secret), "{secret} shown: {}", shown.text());
    }
    let shown = shown.json();
    assert_eq!(shown["profiles"]["team"], json!({ "keys": ["********1", "${TEAM_KEY}"], "tokens": ["********1"] }));

    let mut edited = shown.clone();
    edited["profiles"]["team"]["servers"] = json!(["mock"]);
    let response = admin.post("/admin/config", &edited);
    assert_eq!(response.status, 200, "{response:?}");
    let mut expected = config.clone();
    expected["profiles"]["team"]["servers"] = json!(["mock"]);
    let saved = || serde_json::from_str::<Value>(&std::fs::read_to_string(&proxy.config_path).unwrap()).unwrap();
    assert_eq!(saved(), expected, "the stored key and token kept, the edit saved");

    let mut renamed = shown.clone();
    let team = renamed["profiles"].as_object_mut().unwrap().remove("team").unwrap();
    renamed["profiles"]["renamed"] = team;
    let response = admin.post("/admin/config", &renamed);
    assert_eq!(response.status, 400, "{response:?}");
    let problems = problems(&response);
    assert!(problems.iter().any(|p| p.contains("profiles.renamed.keys.0")), "{problems:?}");
    assert_eq!(saved(), expected, "nothing written");

    // A key before a kept one is removed: the kept one's mask still names it.
    let mut removed = shown.clone();
    removed["profiles"]["team"]["keys"] = json!(["${TEAM_KEY}"]);
    removed["profiles"]["team"]["tokens"] = json!(["********1"]);
    let mut reordered = shown.clone();
    reordered["profiles"]["team"]["keys"] = json!(["${TEAM_KEY}", "********1"]);
    let response = admin.post("/admin/config", &reordered);
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(saved()["profiles"]["team"]["keys"], json!(["${TEAM_KEY}", "k-secret-1"]));
    let response = admin.post("/admin/config", &removed);
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(saved()["profiles"]["team"], json!({ "keys": ["${TEAM_KEY}"], "tokens": ["t-secret-2"] }));
}

#[test]
fn valid_config_replaces_the_file_atomically_keeps_a_backup_and_preserves_keys_and_order() {
    let proxy = start();
    let admin = proxy.login();
    let before = std::fs::read_to_string(&proxy.config_path).unwrap();
    let old_inode = std::fs::metadata(&proxy.config_path).unwrap().ino();
    // A reader holding the old file open keeps reading the old file: the new one is a new file renamed over it.
    let held = std::fs::File::open(&proxy.config_path).unwrap();
    // Keys in an order no sorting gives, and keys the proxy does not know, at every level.
    let text = format!(
        r#"{{
  "zzz_comment": "first, though it sorts last",
  "mcpServers": {{
    "zeta": {{ "args": [{mock:?}, "--name", "zeta"], "command": "python3", "x-owner": "ops", "active": false }},
    "mock": {{ "command": "python3", "args": [{mock:?}, "--name", "mock"], "customField": {{ "b": 1, "a": 2 }} }},
    "alpha": {{ "url": "http://127.0.0.1:9/mcp", "type": "http", "active": false, "note": null }}
  }},
  "aaa_trailer": [3, 2, 1]
}}"#,
        mock = MOCK_SERVER
    );
    let posted: Value = serde_json::from_str(&text).unwrap();
    let response = admin.send(&admin.req("POST", "/admin/config").header("Content-Type", "application/json").body(text.clone()));
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.json(), json!({ "success": true }));

    let written = std::fs::read_to_string(&proxy.config_path).unwrap();
    let parsed: Value = serde_json::from_str(&written).unwrap_or_else(|e| panic!("the file is not JSON ({e}): {written}"));
    assert_eq!(parsed, posted, "every key and value kept");
    let order = |needles: &[&str]| {
        let at: Vec<usize> = needles.iter().map(|n| written.find(n).unwrap_or_else(|| panic!("{n} not in {written}"))).collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "keys out of order {needles:?} in:\n{written}");
    };
    order(&["\"zzz_comment\"", "\"mcpServers\"", "\"aaa_trailer\""]);
    order(&["\"zeta\"", "\"mock\"", "\"alpha\""]);
    order(&["\"args\"", "\"command\"", "\"x-owner\"", "\"active\""]);
    order(&["\"b\"", "\"a\""]);

    assert_eq!(std::fs::read_to_string(proxy.dir.join("mcp_server.json.bak")).unwrap(), before, "the previous version is kept");
    let meta = std::fs::metadata(&proxy.config_path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "mode 0600");
    assert_ne!(meta.ino(), old_inode, "a new file renamed into place, not the old one rewritten");
    assert_eq!(std::io::read_to_string(held).unwrap(), before, "a reader of the old file sees it whole");
    let leftovers: Vec<String> = file_names(&proxy.dir).into_iter().filter(|n| n.contains("tmp")).collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    assert_eq!(admin.get("/admin/config").text(), written, "GET returns what was saved");
}

#[test]
fn saving_a_symlinked_config_writes_through_to_its_target_and_keeps_the_link() {
    let proxy = start();
    let admin = proxy.login();
    // The config path becomes a link into another folder, as with a dotfiles repository.
    let real = proxy.dir.join("dotfiles");
    std::fs::create_dir_all(&real).unwrap();
    let target = real.join("servers.json");
    std::fs::rename(&proxy.config_path, &target).unwrap();
    std::os::unix::fs::symlink(&target, &proxy.config_path).unwrap();
    let before = std::fs::read_to_string(&target).unwrap();

    let mut posted: Value = serde_json::from_str(&before).unwrap();
    posted["comment"] = json!("saved through the link");
    let response = admin.post("/admin/config", &posted);
    assert_eq!(response.status, 200, "{response:?}");

    let link = std::fs::symlink_metadata(&proxy.config_path).unwrap();
    assert!(link.file_type().is_symlink(), "the config path was replaced by a regular file");
    assert_eq!(std::fs::read_link(&proxy.config_path).unwrap(), target, "the link points where it did");
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&target).unwrap()).unwrap();
    assert_eq!(written, posted, "the target holds the new config");
    assert_eq!(std::fs::read_to_string(real.join("servers.json.bak")).unwrap(), before, "the backup sits beside the target");
    assert!(!proxy.dir.join("mcp_server.json.bak").exists(), "no backup beside the link");
    let leftovers: Vec<String> = [file_names(&proxy.dir), file_names(&real)].concat().into_iter().filter(|n| n.contains("tmp")).collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn tool_config_with_an_invalid_exposed_name_is_400_and_not_written() {
    let proxy = start();
    let admin = proxy.login();
    let too_long = "x".repeat(65);
    // (An empty name means "no override", as in the original's files.)
    for name in ["has space", "dots.not.allowed", too_long.as_str(), "ünïcode"] {
        let response = admin.post("/admin/tools/config", &json!({ "tools": { "mock__echo": { "exposedName": name } } }));
        assert_eq!(response.status, 400, "exposedName {name:?}: {response:?}");
        let body = response.json();
        let problems = body["problems"].as_array().unwrap_or_else(|| panic!("no problems in {body}"));
        assert!(problems.iter().any(|p| p.as_str().is_some_and(|p| p.contains("mock__echo"))), "the problem names the tool: {body}");
    }
    for bad in [json!({ "tools": [] }), json!({ "nottools": {} }), json!({ "tools": { "mock__echo": { "enabled": "no" } } })] {
        let response = admin.post("/admin/tools/config", &bad);
        assert_eq!(response.status, 400, "{bad}: {response:?}");
    }
    assert!(!proxy.tool_config_path().exists(), "nothing written");
    // The longest valid name is fine.
    let ok = "y".repeat(64);
    let response = admin.post("/admin/tools/config", &json!({ "tools": { "mock__echo": { "exposedName": ok } } }));
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.json(), json!({ "success": true, "message": "Tool configuration saved." }));
    let meta = std::fs::metadata(proxy.tool_config_path()).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "mode 0600");
}

#[test]
fn tool_config_with_a_duplicate_exposed_name_is_400_and_not_written() {
    let proxy = start();
    let admin = proxy.login();
    let config = json!({ "tools": {
        "mock__echo": { "exposedName": "same" },
        "mock__whoami": { "exposedName": "same" },
    } });
    let response = admin.post("/admin/tools/config", &config);
    assert_eq!(response.status, 400, "{response:?}");
    let body = response.json();
    let problems = body["problems"].as_array().unwrap_or_else(|| panic!("no problems in {body}"));
    assert!(problems.iter().any(|p| p.as_str().is_some_and(|p| p.contains("same"))), "the problem names the name: {body}");
    assert!(!proxy.tool_config_path().exists(), "nothing written");
}

/// Doc: "no two tools with one exposed name". An override that takes the name another tool is exposed
/// under by default makes two tools with one name just as well as two overrides do.
#[test]
fn tool_config_renaming_a_tool_to_another_tools_default_name_is_400() {
    let proxy = start();
    let admin = proxy.login();
    admin.wait_connected();
    let config = json!({ "tools": { "mock__echo": { "exposedName": "mock__whoami" } } });
    let response = admin.post("/admin/tools/config", &config);
    assert_eq!(response.status, 400, "mock__echo renamed to mock__whoami, the name of another tool: {response:?}");
    assert!(!proxy.tool_config_path().exists(), "nothing written");
}

// ----- reload ------------------------------------------------------------------------------------------

fn tool_names(conn: &mut Conn, session: &str, id: i64) -> Vec<String> {
    let response = conn.roundtrip(&mcp_post(Some(session), &rpc(id, "tools/list", json!({}))));
    assert_eq!(response.status, 200, "tools/list: {response:?}");
    let body = response.json();
    let tools = body.pointer("/result/tools").and_then(Value::as_array).unwrap_or_else(|| panic!("tools/list: {body}"));
    tools.iter().filter_map(|t| t["name"].as_str().map(str::to_owned)).collect()
}

fn open_mcp_stream(proxy: &AdminProxy, session: &str) -> EventStream {
    let mut conn = proxy.connect();
    conn.send(&Req::get("/mcp").header("Accept", "text/event-stream").header("Mcp-Session-Id", session));
    let head = conn.head();
    assert_eq!(head.status, 200, "GET /mcp: {head:?}");
    conn.into_events(&head)
}

#[test]
fn reload_applies_a_new_server_and_keeps_open_mcp_sessions() {
    let proxy = start();
    let admin = proxy.login();
    admin.wait_connected();
    let mut conn = proxy.connect();
    let session = initialize_on(&mut conn);
    let mut stream = open_mcp_stream(&proxy, &session);
    let before = tool_names(&mut conn, &session, 1);
    assert!(before.contains(&"mock__echo".to_owned()) && !before.iter().any(|n| n.starts_with("extra__")), "{before:?}");

    let config = json!({ "mcpServers": { "mock": mock("mock"), "extra": mock("extra") } });
    assert_eq!(admin.post("/admin/config", &config).status, 200);
    let response = admin.post("/admin/server/reload", &json!({}));
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.json(), json!({ "success": true, "message": "Server configuration reloaded successfully." }));

    let status = admin.wait_status("extra connected", |s| {
        s["backends"].as_array().is_some_and(|b| b.iter().any(|b| b["key"] == "extra" && b["state"] == "connected"))
    });
    assert_eq!(backend(&status, "mock")["restarts"], 0, "the unchanged server was left alone: {status}");
    // The session opened before the reload: told about the change, and it sees and calls the new tools.
    stream.wait_message(WAIT, |m| m["method"] == "notifications/tools/list_changed");
    let after = wait_until("extra__echo listed", WAIT, || {
        let names = tool_names(&mut conn, &session, 2);
        names.contains(&"extra__echo".to_owned()).then_some(names)
    });
    assert!(after.contains(&"mock__echo".to_owned()), "{after:?}");
    for (id, tool) in [(3, "extra__whoami"), (4, "mock__whoami")] {
        let response = conn.roundtrip(&mcp_post(Some(&session), &tool_call(id, tool, json!({}))));
        assert_eq!(response.status, 200, "{tool} in the old session: {response:?}");
        let body = response.json();
        assert!(body.get("error").is_none(), "{tool}: {body}");
        assert!(result_text(&body).contains(tool.split("__").next().unwrap()), "{tool}: {body}");
    }
}

#[test]
fn reload_of_a_broken_file_is_400_with_details_and_keeps_the_running_config() {
    let proxy = start();
    let admin = proxy.login();
    admin.wait_connected();
    // Broken by hand: the API would not have written it.
    std::fs::write(&proxy.config_path, r#"{"mcpServers": {"mock": {"type": "stdio"}}}"#).unwrap();
    let response = admin.post("/admin/server/reload", &json!({}));
    assert_eq!(response.status, 400, "{response:?}");
    let body = response.json();
    assert_eq!(body["success"], false);
    assert_eq!(body["error"], "Failed to reload server configuration.");
    let details = body["details"].as_array().unwrap_or_else(|| panic!("no details: {body}"));
    assert!(details.iter().any(|d| d.as_str().is_some_and(|d| d.contains("mock"))), "{body}");
    let status = admin.get_json("/admin/status");
    assert_eq!(backend(&status, "mock")["state"], "connected", "still running: {status}");
}

// ----- status, tools, logs -----------------------------------------------------------------------------

#[test]
fn tools_list_includes_disabled_tools_with_enabled_false() {
    let proxy = AdminBuilder::new("tools-list")
        .tool_config(json!({ "tools": {
            "mock__echo": { "enabled": false },
            "mock__whoami": { "exposedName": "who", "exposedDescription": "Says who." },
        } }))
        .start();
    let admin = proxy.login();
    admin.wait_connected();
    let body = admin.get_json("/admin/tools/list");
    let tools = body["tools"].as_array().unwrap_or_else(|| panic!("no tools: {body}"));
    let find = |key: &str| tools.iter().find(|t| t["key"] == key).unwrap_or_else(|| panic!("no {key} in {body}"));
    let echo = find("mock__echo");
    assert_eq!(echo["enabled"], false, "{echo}");
    assert_eq!(echo["name"], "echo");
    assert_eq!(echo["serverName"], "mock");
    assert_eq!(echo["description"], "Echoes its text");
    let whoami = find("mock__whoami");
    assert_eq!(whoami["enabled"], true, "{whoami}");
    assert_eq!(whoami["exposedName"], "who");
    assert_eq!(whoami["exposedDescription"], "Says who.");
    assert_eq!(find("mock__sleep")["enabled"], true);
    assert!(body["problems"].is_array(), "{body}");
    // MCP clients do not see the disabled one.
    let mut conn = proxy.connect();
    let session = initialize_on(&mut conn);
    let names = tool_names(&mut conn, &session, 1);
    assert!(!names.contains(&"mock__echo".to_owned()) && names.contains(&"who".to_owned()), "{names:?}");
}

/// `/admin/tools/list` says what each profile shows now (its tool names, renamed), whether it serves
/// them through search, and which credentials are bound to it, by label only.
#[test]
fn tools_list_returns_what_each_profile_shows_and_its_credentials_by_label() {
    let config = json!({ "mcpServers": { "mock": mock("mock"), "other": mock("other") }, "profiles": {
        "team": { "servers": ["mock"], "tools": { "allow": ["mock__echo", "mock__whoami", "other__*"] }, "rename": { "mock__echo": "say" }, "keys": ["k-two"] },
        "lean": { "toolSearch": true, "tokens": ["t-one"] },
    } });
    let proxy = AdminBuilder::new("tools-list-profiles")
        .config_text(&config.to_string())
        .env("ALLOWED_KEYS", "k-one,k-two")
        .env("ALLOWED_TOKENS", "t-one")
        .start();
    let admin = proxy.login();
    admin.wait_connected();
    let body = admin.get_json("/admin/tools/list");
    let text = body.to_string();
    assert!(!text.contains("k-two") && !text.contains("t-one"), "no credential shown: {text}");
    let profiles = body["profiles"].as_array().unwrap_or_else(|| panic!("no profiles: {body}"));
    let find = |name: &str| profiles.iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("no profile {name} in {body}"));
    assert_eq!(profiles.len(), 2, "{body}");
    assert_eq!(*find("team"), json!({ "name": "team", "tools": ["mock__whoami", "say"], "toolSearch": false, "credentials": ["key #2"] }));
    let lean = find("lean");
    assert_eq!((&lean["toolSearch"], &lean["credentials"]), (&json!(true), &json!(["token #1"])), "{lean}");
    let tools: Vec<&str> = lean["tools"].as_array().expect("tools").iter().filter_map(Value::as_str).collect();
    assert!(tools.contains(&"mock__echo") && tools.contains(&"other__echo"), "every tool, behind search: {tools:?}");
    assert!(tools.windows(2).all(|w| w[0] < w[1]), "sorted: {tools:?}");

    // Saved without profiles (and reloaded): none.
    let response = admin.post("/admin/config", &json!({ "mcpServers": { "mock": mock("mock"), "other": mock("other") } }));
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(admin.post("/admin/server/reload", &json!({})).status, 200);
    assert_eq!(admin.get_json("/admin/tools/list")["profiles"], json!([]));
}

#[test]
fn status_shows_each_backends_state() {
    let proxy = AdminBuilder::new("status")
        .servers(&[
            ("mock", mock("mock")),
            ("broken", json!({ "command": "/nonexistent/mcp-server-binary" })),
            ("off", json!({ "command": "python3", "args": [MOCK_SERVER], "active": false })),
        ])
        .env("MCP_PROXY_RESTART_BACKOFF_MIN", "30")
        .env("MCP_PROXY_RESTART_BACKOFF_MAX", "30")
        .start();
    let admin = proxy.login();
    let status = admin.wait_status("mock connected and broken failed", |s| {
        let state = |k: &str| s["backends"].as_array().and_then(|b| b.iter().find(|b| b["key"] == k)).map(|b| b["state"].clone());
        state("mock") == Some(json!("connected")) && state("broken") == Some(json!("failed"))
    });
    assert_eq!(status["status"], "ok");
    assert!(status["version"].as_str().is_some_and(|v| !v.is_empty()), "{status}");
    assert!(status["sessions"].is_u64(), "{status}");
    let mock = backend(&status, "mock");
    assert_eq!(mock["type"], "stdio");
    assert!(mock["tools"].as_u64().is_some_and(|n| n >= 10), "{mock}");
    assert!(mock["lastError"].is_null(), "{mock}");
    let broken = backend(&status, "broken");
    assert!(broken["lastError"].as_str().is_some_and(|e| !e.is_empty()), "a failed backend says why: {broken}");
    assert_eq!(broken["tools"], 0);
    // An inactive server is listed as such, if listed at all.
    if let Some(off) = status["backends"].as_array().unwrap().iter().find(|b| b["key"] == "off") {
        assert_eq!(off["state"], "inactive", "{status}");
    }
}

/// The instances of an isolated server, as the admin UI's server cards show them.
fn instances(status: &Value, key: &str) -> Vec<Value> {
    backend(status, key)["instances"].as_array().unwrap_or_else(|| panic!("no instances for {key}: {status}")).clone()
}

#[test]
fn status_lists_an_isolated_servers_instances_per_client_session() {
    let mut isolated = mock("iso");
    isolated["isolation"] = json!("session");
    let proxy = AdminBuilder::new("instances").servers(&[("mock", mock("mock")), ("iso", isolated)]).start();
    let admin = proxy.login();
    let status = admin.wait_connected();
    assert!(backend(&status, "mock").get("instances").is_none(), "a shared server lists no instances: {status}");
    assert_eq!(instances(&status, "iso"), Vec::<Value>::new(), "no instance before a client calls: {status}");

    // Two client sessions call the isolated server: an instance each.
    let call =
        |session: &str, id: i64, tool: &str| proxy.connect().roundtrip(&mcp_post(Some(session), &tool_call(id, tool, json!({})))).json();
    let sessions: Vec<String> = (0..2).map(|_| initialize_on(&mut proxy.connect())).collect();
    for session in &sessions {
        assert_eq!(result_text(&call(session, 1, "iso__whoami")), "iso");
    }
    let listed = instances(&admin.get_json("/admin/status"), "iso");
    assert_eq!(listed.len(), 2, "{listed:?}");
    for instance in &listed {
        assert_eq!(instance["state"], "connected", "{instance}");
        assert_eq!(instance["restarts"], 0, "{instance}");
        assert!(instance["ageSecs"].is_u64() && instance["client"].is_u64(), "{instance}");
    }
    assert_ne!(listed[0]["client"], listed[1]["client"], "one instance per client: {listed:?}");

    // The first client's instance crashes; its next call starts it again: one restart, for it only.
    let crashed = call(&sessions[0], 2, "iso__crash");
    assert!(crashed.get("error").is_some(), "the crashing call fails: {crashed}");
    assert_eq!(result_text(&call(&sessions[0], 3, "iso__whoami")), "iso");
    let listed = instances(&admin.get_json("/admin/status"), "iso");
    let restarts: Vec<&Value> = listed.iter().map(|i| &i["restarts"]).collect();
    assert_eq!(restarts.iter().filter(|r| **r == 1).count(), 1, "one instance restarted once: {listed:?}");
    assert_eq!(restarts.iter().filter(|r| **r == 0).count(), 1, "the other never: {listed:?}");

    // A session that ends takes its instance with it.
    let deleted = proxy.request(&Req::new("DELETE", "/mcp").header("Mcp-Session-Id", &sessions[0]));
    assert!(deleted.status < 300, "{deleted:?}");
    admin.wait_status("one instance left", |s| instances(s, "iso").len() == 1);
}

#[test]
fn logs_return_recent_lines_and_never_a_secret() {
    let api_keys = ["first-api-key-1234", "second-api-key-5678"];
    let proxy = AdminBuilder::new("logs").env("ALLOWED_KEYS", &api_keys.join(",")).start();
    // Failed logins whose username is the password or an API key: logged, masked.
    for user in [PASSWORD, api_keys[0], api_keys[1]] {
        assert_eq!(proxy.login_response(user, "nope").status, 401);
    }
    let admin = proxy.login();
    let body = admin.get_json("/admin/logs");
    let lines: Vec<&str> =
        body["lines"].as_array().unwrap_or_else(|| panic!("no lines: {body}")).iter().filter_map(Value::as_str).collect();
    assert!(lines.iter().any(|l| l.contains("listening on http://")), "recent lines are kept: {lines:#?}");
    let failed: Vec<&&str> = lines.iter().filter(|l| l.contains("login failed")).collect();
    assert_eq!(failed.len(), 3, "each failed login logged: {lines:#?}");
    assert!(lines.iter().all(|l| l.len() > 21 && l.as_bytes()[4] == b'-' && l.as_bytes()[19] == b'Z'), "timestamped: {lines:#?}");
    let text = lines.join("\n");
    for secret in [PASSWORD, api_keys[0], api_keys[1]] {
        assert!(!text.contains(secret), "GET /admin/logs shows the secret {secret:?}:\n{text}");
        assert!(!proxy.stderr().contains(secret), "stderr shows the secret {secret:?}");
    }
    assert!(failed.iter().all(|l| l.contains("unknown user") || l.contains("wrong password")), "says why: {failed:#?}");
}

/// A password typed into the username field must not reach the log, whatever characters it holds
/// (an escaped form would slip past the mask, which looks for the password as it is).
#[test]
fn logs_never_show_a_password_holding_quotes_or_backslashes() {
    let password = r#"pa"ss\word-42"#;
    let proxy = AdminBuilder::new("logs-escape").env("ADMIN_PASSWORD", password).start();
    assert_eq!(proxy.login_response(password, "nope").status, 401);
    let admin = proxy.login_as(USER, password);
    let text = admin.get_json("/admin/logs")["lines"].as_array().unwrap().iter().filter_map(Value::as_str).collect::<Vec<_>>().join("\n");
    let escaped = format!("{password:?}");
    let escaped = escaped.trim_matches('"');
    for form in [password, escaped] {
        assert!(!text.contains(form), "GET /admin/logs shows the password as {form:?}:\n{text}");
        assert!(!proxy.stderr().contains(form), "stderr shows the password as {form:?}:\n{}", proxy.stderr());
    }
}

// ----- installs ----------------------------------------------------------------------------------------

/// An installable stdio server: the mock backend, with these install commands.
fn installable(key: &str, commands: &[&str]) -> Value {
    let mut entry = mock(key);
    entry["installCommands"] = json!(commands);
    entry
}

fn install_events_until_done(stream: &mut EventStream, key: &str) -> Vec<SseEvent> {
    let events = events_until(stream, INSTALL_WAIT, |e| {
        matches!(e.event.as_deref(), Some("install_complete" | "install_error")) && e.json()["serverKey"] == key
    });
    events.into_iter().filter(|e| e.json()["serverKey"] == key).collect()
}

fn of_kind(events: &[SseEvent], kind: &str) -> Vec<Value> {
    events.iter().filter(|e| e.event.as_deref() == Some(kind)).map(SseEvent::json).collect()
}

fn tools_folder_proxy(label: &str, servers: &[(&str, Value)]) -> (AdminProxy, Admin, TempDir) {
    let tools = TempDir::named(&format!("admin-{label}-tools"));
    let proxy = AdminBuilder::new(label).servers(servers).env("TOOLS_FOLDER", tools.to_str().unwrap()).start();
    let admin = proxy.login();
    (proxy, admin, tools)
}

fn start_install(admin: &Admin, key: &str) {
    let response = admin.post(&format!("/admin/server/install/{key}"), &json!({}));
    assert_eq!(response.status, 200, "install {key}: {response:?}");
    let message = format!("Installation process for '{key}' started. Check for live updates.");
    assert_eq!(response.json(), json!({ "success": true, "message": message }));
}

#[test]
fn install_streams_info_stdout_stderr_and_complete() {
    let commands = ["echo \"out from $(pwd)\"", "echo err-line >&2", "mkdir pkg && touch pkg/installed"];
    let (_proxy, admin, tools) = tools_folder_proxy("install", &[("pkg", installable("pkg", &commands))]);
    let mut updates = admin.events("/admin/sse/updates");
    start_install(&admin, "pkg");
    let events = install_events_until_done(&mut updates, "pkg");
    let complete = of_kind(&events, "install_complete");
    assert_eq!(
        complete,
        vec![json!({ "serverKey": "pkg", "code": 0, "message": "Installation process completed successfully." })],
        "{events:#?}"
    );
    assert!(of_kind(&events, "install_error").is_empty(), "{events:#?}");
    let info: Vec<String> = of_kind(&events, "install_info").iter().map(|e| e["message"].as_str().unwrap().to_owned()).collect();
    let target = tools.join("pkg");
    assert!(info.iter().any(|m| m.contains(target.to_str().unwrap())), "names the target: {info:?}");
    for command in commands {
        assert!(info.iter().any(|m| m.contains(command)), "announces {command:?}: {info:?}");
    }
    // The commands run in the target's parent folder.
    let canonical = tools.canonicalize().unwrap();
    let stdout = of_kind(&events, "install_stdout");
    assert_eq!(stdout, vec![json!({ "serverKey": "pkg", "output": format!("out from {}\n", canonical.display()) })], "{events:#?}");
    assert_eq!(of_kind(&events, "install_stderr"), vec![json!({ "serverKey": "pkg", "output": "err-line\n" })]);
    assert!(target.join("installed").exists(), "the commands ran");
    let order: Vec<&str> = events.iter().filter_map(|e| e.event.as_deref()).collect();
    assert_eq!(order.first(), Some(&"install_info"), "{order:?}");
    assert_eq!(order.last(), Some(&"install_complete"), "{order:?}");
}

#[test]
fn install_output_that_is_not_utf8_is_shown_lossily_and_the_command_runs_to_the_end() {
    // A Latin-1 "café", then more output after a pause (so it comes after the bad line has been read).
    let commands = ["printf 'caf\\351\\n'; sleep 0.3; echo after", "mkdir pkg"];
    let (_proxy, admin, tools) = tools_folder_proxy("install-latin1", &[("pkg", installable("pkg", &commands))]);
    let mut updates = admin.events("/admin/sse/updates");
    start_install(&admin, "pkg");
    let events = install_events_until_done(&mut updates, "pkg");
    assert!(of_kind(&events, "install_error").is_empty(), "the command was cut short: {events:#?}");
    assert_eq!(of_kind(&events, "install_complete").len(), 1, "{events:#?}");
    let output: Vec<Value> = of_kind(&events, "install_stdout").into_iter().map(|e| e["output"].clone()).collect();
    assert_eq!(output, [json!("caf\u{FFFD}\n"), json!("after\n")], "{events:#?}");
    assert!(tools.join("pkg").exists(), "the second command ran");
}

#[test]
fn install_skips_an_existing_target() {
    let (_proxy, admin, tools) = tools_folder_proxy("install-skip", &[("pkg", installable("pkg", &["touch ran-anyway"]))]);
    std::fs::create_dir_all(tools.join("pkg")).unwrap();
    let mut updates = admin.events("/admin/sse/updates");
    start_install(&admin, "pkg");
    let events = install_events_until_done(&mut updates, "pkg");
    assert_eq!(of_kind(&events, "install_complete"), vec![json!({ "serverKey": "pkg", "code": 0, "message": "Already installed." })]);
    let info = of_kind(&events, "install_info");
    assert!(info.iter().any(|i| i["message"].as_str().unwrap().contains("already exists")), "{info:?}");
    assert!(of_kind(&events, "install_stdout").is_empty() && of_kind(&events, "install_stderr").is_empty(), "{events:#?}");
    assert!(!tools.join("ran-anyway").exists(), "no command ran");
}

#[test]
fn install_stops_at_the_first_failing_command() {
    let commands = ["echo step-one", "echo failing >&2; exit 7", "touch should-not-exist"];
    let (_proxy, admin, tools) = tools_folder_proxy("install-fail", &[("pkg", installable("pkg", &commands))]);
    let mut updates = admin.events("/admin/sse/updates");
    start_install(&admin, "pkg");
    let events = install_events_until_done(&mut updates, "pkg");
    let errors = of_kind(&events, "install_error");
    assert_eq!(errors.len(), 1, "{events:#?}");
    assert_eq!(errors[0]["exitCode"], 7, "{errors:?}");
    assert_eq!(errors[0]["command"], commands[1], "{errors:?}");
    assert!(errors[0]["error"].as_str().is_some_and(|e| e.contains('7')), "{errors:?}");
    assert!(of_kind(&events, "install_complete").is_empty(), "no success reported: {events:#?}");
    assert_eq!(of_kind(&events, "install_stdout"), vec![json!({ "serverKey": "pkg", "output": "step-one\n" })]);
    // Nothing after the failure ran, and the failed install left no target behind to be taken as "installed".
    std::thread::sleep(Duration::from_millis(300));
    assert!(!tools.join("should-not-exist").exists(), "the third command ran");
    assert!(!tools.join("pkg").exists(), "a failed install created the target folder");
}

#[test]
fn install_refuses_non_stdio_unknown_and_commandless_servers() {
    let (_proxy, admin, tools) = tools_folder_proxy(
        "install-refuse",
        &[
            ("mock", mock("mock")),
            ("remote", json!({ "type": "http", "url": "http://127.0.0.1:9/mcp", "installCommands": ["true"], "active": false })),
        ],
    );
    let response = admin.post("/admin/server/install/remote", &json!({}));
    assert_eq!(response.status, 400, "non-stdio: {response:?}");
    assert!(response.text().contains("stdio"), "{response:?}");
    let response = admin.post("/admin/server/install/nosuch", &json!({}));
    assert_eq!(response.status, 404, "unknown key: {response:?}");
    assert!(response.text().contains("nosuch"), "{response:?}");
    let response = admin.post("/admin/server/install/mock", &json!({}));
    assert_eq!(response.status, 400, "no installCommands: {response:?}");
    assert!(file_names(&tools).is_empty(), "nothing created: {:?}", file_names(&tools));
}

#[test]
fn second_install_while_one_runs_is_409() {
    let (_proxy, admin, _tools) = tools_folder_proxy("install-409", &[("pkg", installable("pkg", &["sleep 2", "mkdir pkg"]))]);
    let mut updates = admin.events("/admin/sse/updates");
    start_install(&admin, "pkg");
    let response = admin.post("/admin/server/install/pkg", &json!({}));
    assert_eq!(response.status, 409, "second install while the first runs: {response:?}");
    let events = install_events_until_done(&mut updates, "pkg");
    assert_eq!(of_kind(&events, "install_complete").len(), 1, "{events:#?}");
    // Once it is over, installing again is allowed (and finds the target).
    let started = Instant::now();
    let response = wait_until("the install to be released", WAIT, || {
        let response = admin.post("/admin/server/install/pkg", &json!({}));
        (response.status != 409).then_some(response)
    });
    assert_eq!(response.status, 200, "after {:?}: {response:?}", started.elapsed());
    let events = install_events_until_done(&mut updates, "pkg");
    assert_eq!(of_kind(&events, "install_complete")[0]["message"], "Already installed.");
}

#[test]
fn install_of_a_key_with_a_slash_under_tools_folder_is_400() {
    let (_proxy, admin, tools) = tools_folder_proxy("install-slash", &[("a/b", installable("a/b", &["touch escaped"]))]);
    let response = admin.post("/admin/server/install/a/b", &json!({}));
    assert_eq!(response.status, 400, "{response:?}");
    assert!(response.text().contains("a/b"), "{response:?}");
    assert!(file_names(&tools).is_empty(), "nothing created");
    assert!(!tools.join("a").exists());
}

/// The output survives a page reload: a stream opened after the install replays it, marked as replayed.
#[test]
fn install_output_is_replayed_to_a_page_that_connects_later() {
    let (_proxy, admin, _tools) = tools_folder_proxy("replay", &[("pkg", installable("pkg", &["echo first-line", "mkdir pkg"]))]);
    let mut updates = admin.events("/admin/sse/updates");
    start_install(&admin, "pkg");
    install_events_until_done(&mut updates, "pkg");

    let mut later = admin.events("/admin/sse/updates");
    let replayed = install_events_until_done(&mut later, "pkg");
    let stdout = of_kind(&replayed, "install_stdout");
    assert_eq!(stdout, vec![json!({ "serverKey": "pkg", "output": "first-line\n", "replayed": true })], "{replayed:#?}");
    assert_eq!(of_kind(&replayed, "install_complete").len(), 1, "{replayed:#?}");
}
