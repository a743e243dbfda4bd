//! A harness for the admin UI's API (docs/admin-api.md) and the web terminal, on the real binary.
//!
//! [`AdminBuilder`] writes a config (mock backends from `tests/fixtures/mock_server.py`, or any entry),
//! starts `mcp-proxy-server --sse --host 127.0.0.1 --port 0 --config PATH` with `ENABLE_ADMIN_UI=true`
//! and a test password, and reads the port from stderr. [`AdminProxy::login`] gives an [`Admin`]: the
//! session cookie and CSRF token, sent with every request. HTTP itself (requests, responses, event
//! streams) is `tests/http_support`'s raw HTTP/1.1 client.
//!
//! Every wait has a deadline, so a misbehaving proxy fails a test instead of hanging it. Dropping an
//! [`AdminProxy`] kills the proxy and, when the test is panicking, prints its stderr.

#![allow(dead_code)] // Not every helper is used by every test file.

use crate::http_support::{Conn, EventStream, Req, Response, SseEvent, MOCK_SERVER, PROXY_BIN, WAIT};
use serde_json::{json, Map, Value};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The admin password the tests use unless they say otherwise.
pub const PASSWORD: &str = "Adm1n-test-pa55word";
pub const USER: &str = "admin";

/// Environment variables the proxy reads: cleared so the test runner's environment changes nothing.
const PROXY_ENV: &[&str] = &[
    "LOGGING",
    "RUST_LOG",
    "HOST",
    "PORT",
    "MCP_PROXY_CONFIG",
    "MCP_PROXY_TOOL_CONFIG",
    "MCP_PROXY_CONFIG_POLL",
    "MCP_PROXY_REQUEST_TIMEOUT",
    "MCP_PROXY_STARTUP_TIMEOUT",
    "MCP_PROXY_LOG_FORMAT",
    "MCP_PROXY_STATELESS",
    "MCP_PROXY_SHUTDOWN_GRACE",
    "SERVER_TOOLNAME_SEPERATOR",
    "SERVER_TOOLNAME_SEPARATOR",
    "ALLOWED_KEYS",
    "MCP_PROXY_SSE_ALLOWED_KEYS",
    "ALLOWED_TOKENS",
    "MCP_PROXY_ALLOWED_ORIGINS",
    "MCP_PROXY_ALLOWED_HOSTS",
    "MCP_PROXY_SSE_KEEPALIVE",
    "ENABLE_ADMIN_UI",
    "ADMIN_USERNAME",
    "ADMIN_PASSWORD",
    "ADMIN_COOKIE_SECURE",
    "NODE_ENV",
    "TOOLS_FOLDER",
    "ENABLE_WEB_TERMINAL",
    "TERMINAL_IDLE_TIMEOUT",
    "SHELL",
    "http_proxy",
    "https_proxy",
    "no_proxy",
];

/// A fresh folder no other test (or test process) uses.
pub fn temp_dir(label: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!("mcp-admin-{label}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// A config entry running the mock backend as `--name <key>`.
pub fn mock_entry(key: &str) -> Value {
    json!({ "command": "python3", "args": [MOCK_SERVER, "--name", key] })
}

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
        servers.insert("mock".into(), mock_entry("mock"));
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
        let dir = temp_dir(&self.label);
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
        for name in PROXY_ENV.iter().copied().chain(self.removed.iter().map(String::as_str)) {
            command.env_remove(name);
        }
        command.env("LOGGING", "info").env("HOME", &dir);
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command.current_dir(&dir);
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot start {PROXY_BIN}: {e}"));
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new((Mutex::new(String::new()), Condvar::new()));
        let collected = Arc::clone(&log);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let (text, changed) = &*collected;
                let mut text = text.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                text.push_str(&line);
                text.push('\n');
                changed.notify_all();
            }
        });
        let mut proxy = AdminProxy { child, addr: "127.0.0.1:0".parse().unwrap(), log, dir, config_path };
        let text = proxy.wait_for_stderr("listening on http://");
        let after = text.split("listening on http://").nth(1).unwrap_or_default();
        let bound = after.split_whitespace().next().unwrap_or_default();
        let port = bound.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
        let port = port.unwrap_or_else(|| proxy.fail(&format!("cannot read the port of '{bound}'")));
        // Whatever the listen address (127.0.0.1 or 0.0.0.0), the tests come in over loopback.
        proxy.addr = SocketAddr::from(([127, 0, 0, 1], port));
        proxy
    }
}

/// A running proxy with the admin UI.
pub struct AdminProxy {
    child: Child,
    addr: SocketAddr,
    log: Arc<(Mutex<String>, Condvar)>,
    pub dir: PathBuf,
    pub config_path: PathBuf,
}

impl AdminProxy {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn tool_config_path(&self) -> PathBuf {
        self.dir.join("tool_config.json")
    }

    pub fn stderr(&self) -> String {
        self.log.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Fails the test with `what` and the proxy's stderr.
    pub fn fail(&self, what: &str) -> ! {
        panic!("{what}\n--- proxy stderr ---\n{}--- end of proxy stderr ---", self.stderr())
    }

    /// Waits until the proxy's stderr contains `needle`; the whole stderr.
    pub fn wait_for_stderr(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        let (text, changed) = &*self.log;
        let mut text = text.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        while !text.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || matches!(self.child.try_wait(), Ok(Some(_))) {
                let status = self.child.try_wait().ok().flatten();
                let seen = text.clone();
                drop(text);
                panic!("stderr did not show {needle:?} (exit status {status:?})\n--- proxy stderr ---\n{seen}--- end ---");
            }
            text = changed.wait_timeout(text, left.min(Duration::from_millis(100))).unwrap().0;
        }
        text.clone()
    }

    /// Sends a signal to the proxy.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid; no memory is touched.
        let rc = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(rc, 0, "kill({}, {signal}) failed", self.pid());
    }

    /// Waits (up to `timeout`) for the proxy to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                self.fail(&format!("the proxy did not exit within {timeout:?}"));
            }
            thread::sleep(Duration::from_millis(50));
        }
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

impl Drop for AdminProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("--- proxy stderr ---\n{}--- end of proxy stderr ---", self.stderr());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
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
        wait_for(what, Duration::from_secs(20), || {
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

/// Polls `probe` every 50 ms until it returns something; fails after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
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

// ----- processes ----------------------------------------------------------------------------------------

/// `/proc/<pid>/stat`'s state letter and parent pid, if the process exists (zombies included).
pub fn proc_state(pid: i32) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid ...": comm may hold spaces and parentheses, so split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// `/proc/<pid>/stat`'s process group and session ids, if the process exists.
pub fn proc_group(pid: i32) -> Option<(i32, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace().skip(2);
    Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
}

/// True while `pid` runs (a zombie whose parent is not `reaper` counts as gone: it is dead, and only
/// init has yet to collect it).
pub fn running(pid: i32, reaper: Option<i32>) -> bool {
    match proc_state(pid) {
        None => false,
        Some(('Z', ppid)) => Some(ppid) == reaper,
        Some(_) => true,
    }
}

/// Waits until `pid` no longer runs; fails with what `/proc` says after `timeout`.
pub fn wait_gone(pid: i32, reaper: Option<i32>, what: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while running(pid, reaper) {
        if Instant::now() > deadline {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            panic!("{what} (pid {pid}) still runs after {timeout:?}: state {:?}, command {cmdline:?}", proc_state(pid));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Kills a process the test found still running (cleanup after a failed check), by pid.
pub fn kill_pid(pid: i32) {
    // SAFETY: kill(2) with a positive pid; no memory is touched.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
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
