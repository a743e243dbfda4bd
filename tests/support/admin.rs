//! The admin UI's API (docs/admin-api.md) and the web terminal, on the real binary.
//!
//! [`AdminBuilder`] writes a config (mock backends, or any entry), starts `mcp-proxy-server --sse --host
//! 127.0.0.1 --port 0 --config PATH` with `ENABLE_ADMIN_UI=true` and a test password, and reads the port
//! from stderr. [`AdminProxy::login`] gives an [`Admin`]: the session cookie and CSRF token, sent with
//! every request. HTTP itself (requests, responses, event streams) is [`super::http`]'s client.
//!
//! Dropping an [`AdminProxy`] kills the proxy, prints its stderr when the test is panicking, and removes
//! its folder.

use super::http::{Conn, EventStream, Req, Response, SseEvent};
use super::{clear_proxy_env, mock, signal, wait_until, ProxyProcess, TempDir, PROXY_BIN, WAIT};
use serde_json::{json, Map, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The admin password the tests use unless they say otherwise.
pub const PASSWORD: &str = "Adm1n-test-pa55word";
pub const USER: &str = "admin";

/// How to start the proxy.
pub struct AdminBuilder {
    servers: Map<String, Value>,
    /// The config file's text, when a test wants it exact (unknown keys, order, formatting).
    config_text: Option<String>,
    tool_config: Option<Value>,
    env: Vec<(String, String)>,
    removed: Vec<String>,
    host: String,
    label: String,
}

impl AdminBuilder {
    /// One mock backend (`mock`), the admin UI on with [`USER`] / [`PASSWORD`], no config polling.
    pub fn new(label: &str) -> AdminBuilder {
        let mut servers = Map::new();
        servers.insert("mock".into(), mock("mock"));
        AdminBuilder {
            servers,
            config_text: None,
            tool_config: None,
            env: vec![
                ("ENABLE_ADMIN_UI".into(), "true".into()),
                ("ADMIN_USERNAME".into(), USER.into()),
                ("ADMIN_PASSWORD".into(), PASSWORD.into()),
                ("MCP_PROXY_CONFIG_POLL".into(), "0".into()),
                ("MCP_PROXY_SHUTDOWN_GRACE".into(), "1".into()),
            ],
            removed: Vec::new(),
            host: "127.0.0.1".into(),
            label: label.into(),
        }
    }

    /// Replaces the servers with these entries (in this order).
    pub fn servers(mut self, entries: &[(&str, Value)]) -> AdminBuilder {
        self.servers = entries.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        self
    }

    /// The config file's exact text (overrides `servers`).
    pub fn config_text(mut self, text: &str) -> AdminBuilder {
        self.config_text = Some(text.to_owned());
        self
    }

    pub fn tool_config(mut self, value: Value) -> AdminBuilder {
        self.tool_config = Some(value);
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> AdminBuilder {
        self.env.retain(|(k, _)| k != name);
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Leaves a variable unset (for instance `ADMIN_PASSWORD`, to get a generated password).
    pub fn unset(mut self, name: &str) -> AdminBuilder {
        self.env.retain(|(k, _)| k != name);
        self.removed.push(name.to_owned());
        self
    }

    pub fn host(mut self, host: &str) -> AdminBuilder {
        self.host = host.to_owned();
        self
    }

    pub fn start(self) -> AdminProxy {
        let dir = TempDir::named(&format!("admin-{}", self.label));
        let config_path = dir.join("mcp_server.json");
        let text = self
            .config_text
            .clone()
            .unwrap_or_else(|| serde_json::to_string_pretty(&json!({ "mcpServers": Value::Object(self.servers.clone()) })).unwrap() + "\n");
        std::fs::write(&config_path, text).expect("cannot write the config");
        if let Some(tools) = &self.tool_config {
            std::fs::write(dir.join("tool_config.json"), serde_json::to_string_pretty(tools).unwrap()).unwrap();
        }
        let mut command = Command::new(PROXY_BIN);
        command.args(["--sse", "--host", &self.host, "--port", "0", "--config"]).arg(&config_path);
        clear_proxy_env(&mut command);
        for name in &self.removed {
            command.env_remove(name);
        }
        command.env("LOGGING", "info").env("HOME", dir.path());
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command.current_dir(dir.path());
        command.stdin(Stdio::null()).stdout(Stdio::null());
        let mut process = ProxyProcess::spawn(command);
        let addr = process.listening_addr();
        AdminProxy { process, addr, dir, config_path }
    }
}

/// A running proxy with the admin UI. Fields drop in order: the process, then its folder.
pub struct AdminProxy {
    process: ProxyProcess,
    addr: SocketAddr,
    /// The proxy's folder: its config files, its working directory and `HOME`.
    pub dir: TempDir,
    pub config_path: PathBuf,
}

impl AdminProxy {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> i32 {
        self.process.pid() as i32
    }

    pub fn tool_config_path(&self) -> PathBuf {
        self.dir.join("tool_config.json")
    }

    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    /// Fails the test with `what` and the proxy's stderr.
    pub fn fail(&self, what: &str) -> ! {
        self.process.fail(what)
    }

    /// Waits until the proxy's stderr contains `needle`; the whole stderr.
    pub fn wait_for_stderr(&mut self, needle: &str) -> String {
        self.process.wait_for_stderr(needle)
    }

    /// Sends a signal to the proxy.
    pub fn signal(&self, sig: libc::c_int) {
        signal(self.process.pid(), sig);
    }

    /// Waits (up to `timeout`) for the proxy to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        self.process.wait_exit(timeout)
    }

    pub fn connect(&self) -> Conn {
        Conn::open(self.addr)
    }

    /// One request on a fresh connection, without any session.
    pub fn request(&self, req: &Req) -> Response {
        self.connect().roundtrip(req)
    }

    /// `POST /admin/login` with a JSON body; the whole response.
    pub fn login_response(&self, user: &str, password: &str) -> Response {
        self.request(&Req::post("/admin/login").json(&json!({ "username": user, "password": password })))
    }

    /// Logs in with the test credentials.
    pub fn login(&self) -> Admin {
        self.login_as(USER, PASSWORD)
    }

    pub fn login_as(&self, user: &str, password: &str) -> Admin {
        let response = self.login_response(user, password);
        if response.status != 200 {
            self.fail(&format!("login failed: {response:?}"));
        }
        let cookie = response.header("set-cookie").unwrap_or_else(|| self.fail(&format!("no Set-Cookie: {response:?}")));
        let pair = cookie.split(';').next().unwrap_or_default().trim().to_owned();
        let csrf = response.json()["csrfToken"].as_str().unwrap_or_else(|| self.fail("no csrfToken")).to_owned();
        Admin { addr: self.addr, cookie: pair, csrf }
    }
}

/// A logged-in admin: every request carries the session cookie, and state-changing ones the CSRF token.
#[derive(Clone)]
pub struct Admin {
    addr: SocketAddr,
    /// `mcp_admin=<id>`.
    pub cookie: String,
    pub csrf: String,
}

impl Admin {
    /// A request with the cookie (and, for POST/PUT/DELETE, the CSRF token).
    pub fn req(&self, method: &str, path: &str) -> Req {
        let req = Req::new(method, path).header("Cookie", &self.cookie);
        if matches!(method, "POST" | "PUT" | "DELETE") {
            req.header("X-CSRF-Token", &self.csrf)
        } else {
            req
        }
    }

    pub fn send(&self, req: &Req) -> Response {
        Conn::open(self.addr).roundtrip(req)
    }

    pub fn get(&self, path: &str) -> Response {
        self.send(&self.req("GET", path))
    }

    pub fn post(&self, path: &str, body: &Value) -> Response {
        self.send(&self.req("POST", path).json(body))
    }

    pub fn delete(&self, path: &str) -> Response {
        self.send(&self.req("DELETE", path))
    }

    /// `GET path` that must answer 200 with JSON.
    pub fn get_json(&self, path: &str) -> Value {
        let response = self.get(path);
        assert_eq!(response.status, 200, "GET {path}: {response:?}");
        response.json()
    }

    /// Opens an event stream (`GET path`) and reads its first event, which must be `connected`.
    pub fn events(&self, path: &str) -> EventStream {
        let mut conn = Conn::open(self.addr);
        conn.send(&self.req("GET", path).header("Accept", "text/event-stream"));
        let head = conn.head();
        assert_eq!(head.status, 200, "GET {path}: {head:?}");
        let mut events = conn.into_events(&head);
        let first = events.next_event(WAIT);
        assert_eq!(first.event.as_deref(), Some("connected"), "first event of {path}: {first:?}");
        events
    }

    /// Polls `GET /admin/status` until `done` holds for its body; the body.
    pub fn wait_status(&self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        wait_until(what, Duration::from_secs(20), || {
            let status = self.get_json("/admin/status");
            done(&status).then_some(status)
        })
    }

    /// Waits until every backend in `/admin/status` is `connected`.
    pub fn wait_connected(&self) -> Value {
        self.wait_status("every backend connected", |s| {
            s["backends"].as_array().is_some_and(|b| !b.is_empty() && b.iter().all(|b| b["state"] == "connected"))
        })
    }
}

/// The state of a backend in a status body.
pub fn backend<'a>(status: &'a Value, key: &str) -> &'a Value {
    status["backends"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["key"] == key))
        .unwrap_or_else(|| panic!("no backend {key:?} in {status}"))
}

/// Reads events until one matches `done`; every event read, the matching one last.
pub fn events_until(stream: &mut EventStream, timeout: Duration, done: impl Fn(&SseEvent) -> bool) -> Vec<SseEvent> {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no matching event within {timeout:?}; seen: {seen:#?}");
        let event = stream.next_event(left);
        let last = done(&event);
        seen.push(event);
        if last {
            return seen;
        }
    }
}

/// The files in a folder, by name, sorted.
pub fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}
