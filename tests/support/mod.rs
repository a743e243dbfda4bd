//! The one harness of the integration tests: every test file says `mod support;` and uses the parts it
//! needs. Each test starts the real `mcp-proxy-server` binary and talks to it as a client would.
//!
//! - this module: what every part shares: the binary and the mock backend (`tests/fixtures/mock_server.py`),
//!   config entries, the one wait bound [`WAIT`], [`unique`] names and [`TempDir`]s, a child's stderr
//!   collected as it comes ([`StderrLog`]), a running proxy ([`ProxyProcess`]) in a clean environment,
//!   polling, signals, `/proc` (processes by marker, a process's children, its threads and sockets);
//! - [`stdio`]: the proxy over its stdin/stdout, JSON-RPC line by line;
//! - [`http`]: a raw HTTP/1.1 client, over TCP or TLS (requests, whole responses, server-sent event
//!   streams), and the proxy in HTTP mode ([`http::HttpProxy`]), serving HTTPS when asked;
//! - [`admin`]: the admin API and web terminal: login sessions and CSRF on top of [`http`];
//! - [`remote`]: remote MCP servers from the official Python SDK (`tests/fixtures/http_server.py`);
//! - [`toolctl`]: `tool_config.json` runs, atomic config writes, one-shot `--check` / `--list-tools`.
//!
//! Every wait has a deadline, so a misbehaving proxy fails a test instead of hanging it, and failures
//! print the proxy's stderr. Tests run in parallel: every temp dir and marker made here is unique to the
//! test process and call.

#![allow(dead_code)] // Each test file uses a different subset of the helpers.

pub mod admin;
pub mod http;
pub mod remote;
pub mod stdio;
pub mod toolctl;

use serde_json::{json, Value};
use std::cell::Cell;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// How long a test waits for any one thing the proxy should do (an answer, an event, a log line).
/// Generous because tests run in parallel on small machines; a passing test never waits this long.
pub const WAIT: Duration = Duration::from_secs(10);

pub const PROXY_BIN: &str = env!("CARGO_BIN_EXE_mcp-proxy-server");
pub const MOCK_SERVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mock_server.py");

/// The protocol version the test clients ask for.
pub const CLIENT_PROTOCOL: &str = "2025-06-18";

/// The sixteen tools every mock serves.
pub const MOCK_TOOLS: [&str; 16] = [
    "echo",
    "whoami",
    "sleep",
    "progress",
    "add_tool",
    "log",
    "stderr",
    "fail",
    "crash",
    "client_info",
    "cancellable",
    "cancelled_ids",
    "update_resource",
    "set_level_seen",
    "ask_roots",
    "count",
];

/// A name no other test (or test process) uses: `<label>-<pid>-<n>`.
pub fn unique(label: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("{label}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

// ----- configs ------------------------------------------------------------------------------------------

/// A config entry that runs the mock backend as `--name <name>`.
pub fn mock(name: &str) -> Value {
    mock_with(name, &[])
}

/// A config entry that runs the mock backend as `--name <name>` plus `flags` (`--tools-pages 3`, ...).
pub fn mock_with(name: &str, flags: &[&str]) -> Value {
    let mut args = vec![MOCK_SERVER, "--name", name];
    args.extend_from_slice(flags);
    json!({ "command": "python3", "args": args })
}

/// `{"mcpServers": {key: entry, ...}}`. The proxy orders servers by key.
pub fn config(servers: &[(&str, Value)]) -> Value {
    let servers: serde_json::Map<String, Value> = servers.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    json!({ "mcpServers": servers })
}

/// A copy of a config entry with `extra` members merged in (`{"namespace": ""}`, `{"timeout": 1}`).
pub fn with(entry: Value, extra: Value) -> Value {
    let mut entry = entry;
    for (k, v) in extra.as_object().expect("extra must be an object") {
        entry[k] = v.clone();
    }
    entry
}

// ----- reading messages ---------------------------------------------------------------------------------

/// The `name` of every item of a list result member (`result["tools"]`, `result["prompts"]`).
pub fn names(items: &Value) -> Vec<String> {
    let items = items.as_array().unwrap_or_else(|| panic!("not a list: {items}"));
    items.iter().map(|item| item["name"].as_str().unwrap_or_else(|| panic!("no name: {item}")).to_owned()).collect()
}

/// The error code of a response, or `None` for a result.
pub fn error_code(response: &Value) -> Option<i64> {
    response.pointer("/error/code").and_then(Value::as_i64)
}

/// The text of the first content item of a tool result response.
pub fn result_text(response: &Value) -> &str {
    response.pointer("/result/content/0/text").and_then(Value::as_str).unwrap_or_else(|| panic!("no text: {response}"))
}

// ----- temp dirs ----------------------------------------------------------------------------------------

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        TempDir::named("test")
    }

    /// A directory named `mcp-proxy-<label>-<pid>-<n>`.
    pub fn named(label: &str) -> TempDir {
        let path = std::env::temp_dir().join(unique(&format!("mcp-proxy-{label}")));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

/// A temp dir is used as the path it is (`dir.join("mcp_server.json")`).
impl Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ----- the proxy's environment and stderr ---------------------------------------------------------------

/// Removes every variable the proxy reads (src/settings.rs, the HTTP client's proxy variables) from
/// `command`, so the test runner's own environment changes nothing; a test sets what it means to.
pub fn clear_proxy_env(command: &mut Command) {
    const READ: [&str; 17] = [
        "LOGGING",
        "RUST_LOG",
        "HOST",
        "PORT",
        "SERVER_TOOLNAME_SEPERATOR",
        "SERVER_TOOLNAME_SEPARATOR",
        "ALLOWED_KEYS",
        "ALLOWED_TOKENS",
        "ENABLE_ADMIN_UI",
        "ADMIN_USERNAME",
        "ADMIN_PASSWORD",
        "ADMIN_COOKIE_SECURE",
        "NODE_ENV",
        "TOOLS_FOLDER",
        "ENABLE_WEB_TERMINAL",
        "TERMINAL_IDLE_TIMEOUT",
        "SHELL",
    ];
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if READ.contains(&name.as_ref())
            || name.starts_with("MCP_PROXY_")
            || name.contains("TOOL_CALL")
            || name.to_ascii_lowercase().ends_with("_proxy")
        {
            command.env_remove(name.as_ref());
        }
    }
}

/// A child's stderr, collected line by line on a thread of its own, so a test can wait for a line and
/// a failure can show everything the child said.
#[derive(Clone)]
pub struct StderrLog(Arc<(Mutex<Collected>, Condvar)>);

#[derive(Default)]
struct Collected {
    text: String,
    /// The stream has closed: nothing more will come.
    ended: bool,
}

impl StderrLog {
    pub fn collect(stream: impl Read + Send + 'static) -> StderrLog {
        let log = StderrLog(Arc::default());
        let collected = log.clone();
        thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                let mut shared = collected.lock();
                shared.text.push_str(&line);
                shared.text.push('\n');
                collected.0 .1.notify_all();
            }
            collected.lock().ended = true;
            collected.0 .1.notify_all();
        });
        log
    }

    fn lock(&self) -> MutexGuard<'_, Collected> {
        self.0 .0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Everything so far.
    pub fn text(&self) -> String {
        self.lock().text.clone()
    }

    /// Waits until the text contains `needle`: the whole text, or `None` once the stream has ended
    /// without it or after [`WAIT`].
    pub fn wait_for(&self, needle: &str) -> Option<String> {
        let deadline = Instant::now() + WAIT;
        let mut shared = self.lock();
        while !shared.text.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || shared.ended {
                return None;
            }
            shared = self.0 .1.wait_timeout(shared, left).unwrap_or_else(|poisoned| poisoned.into_inner()).0;
        }
        Some(shared.text.clone())
    }
}

/// A running proxy process and its stderr. Dropping it kills the process and, when the test is failing,
/// prints the stderr (unless a failure message has already shown it).
pub struct ProxyProcess {
    child: Child,
    log: StderrLog,
    stderr_shown: Cell<bool>,
}

impl ProxyProcess {
    /// Spawns `command` (its stderr piped here; stdin and stdout as the caller set them).
    pub fn spawn(mut command: Command) -> ProxyProcess {
        let mut child = command.stderr(Stdio::piped()).spawn().unwrap_or_else(|e| panic!("cannot start {PROXY_BIN}: {e}"));
        let log = StderrLog::collect(child.stderr.take().expect("piped stderr"));
        ProxyProcess { child, log, stderr_shown: Cell::new(false) }
    }

    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Everything the proxy wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.log.text()
    }

    /// Fails the test with `what` and the proxy's stderr.
    pub fn fail(&self, what: &str) -> ! {
        self.stderr_shown.set(true);
        panic!("{what}\n--- proxy stderr ---\n{}--- end of proxy stderr ---", self.stderr())
    }

    /// Waits until the proxy's stderr contains `needle`, and returns the whole stderr. Fails the test after
    /// [`WAIT`], or as soon as the proxy has exited and its stderr closed without it.
    pub fn wait_for_stderr(&mut self, needle: &str) -> String {
        match self.log.wait_for(needle) {
            Some(text) => text,
            None => {
                let status = self.child.try_wait().ok().flatten();
                self.fail(&format!("stderr did not show {needle:?} within {WAIT:?} (exit status {status:?})"))
            }
        }
    }

    /// In HTTP mode: the loopback address of the port the proxy listens on (from its `listening on
    /// http://HOST:PORT` or `https://` line; the tests come in over loopback whatever the host).
    pub fn listening_addr(&mut self) -> SocketAddr {
        let text = self.wait_for_stderr("listening on http");
        let bound = text.split("listening on http").nth(1).and_then(|after| after.split("://").nth(1)).unwrap_or_default();
        let bound = bound.split_whitespace().next().unwrap_or_default();
        match bound.rsplit(':').next().and_then(|port| port.parse::<u16>().ok()) {
            Some(port) => SocketAddr::from(([127, 0, 0, 1], port)),
            None => self.fail(&format!("cannot read the port of '{bound}'")),
        }
    }

    /// Waits for the process to exit, failing the test after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                Ok(None) => self.fail(&format!("the proxy did not exit within {timeout:?}")),
                Err(e) => self.fail(&format!("cannot wait for the proxy: {e}")),
            }
        }
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() && !self.stderr_shown.get() {
            eprintln!("--- proxy stderr ---\n{}--- end of proxy stderr ---", self.stderr());
        }
    }
}

// ----- polling, signals, processes ----------------------------------------------------------------------

/// Polls `check` every 20 ms until it returns `Some`, for at most `timeout`.
pub fn poll<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `check` until it returns `Some`; panics with `what` after `timeout`.
pub fn wait_until<T>(what: &str, timeout: Duration, check: impl FnMut() -> Option<T>) -> T {
    poll(timeout, check).unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// Sends `signal` to one process.
pub fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) touches no memory of ours.
    let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal}) failed: {}", std::io::Error::last_os_error());
}

/// Kills a process the test found still running (cleanup after a failed check), by pid.
pub fn kill_pid(pid: i32) {
    // SAFETY: kill(2) with a positive pid; no memory is touched.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

/// Processes whose command line contains `marker`, as `(pid, command line)` (zombies included).
pub fn processes_with(marker: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return found };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmdline.contains(marker) {
            found.push((pid, cmdline.trim_end().to_owned()));
        }
    }
    found
}

/// Live (non-zombie) processes whose command line contains `marker`, as `(pid, command line)`.
pub fn live_processes_with(marker: &str) -> Vec<(u32, String)> {
    processes_with(marker).into_iter().filter(|(pid, _)| !matches!(proc_state(*pid as i32), Some(('Z', _)))).collect()
}

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

/// The live (non-zombie) children of `parent`, by pid, from `/proc/*/stat`.
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut children: Vec<u32> = entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .filter(|pid| matches!(proc_state(*pid as i32), Some((state, ppid)) if state != 'Z' && ppid == parent as i32))
        .collect();
    children.sort_unstable();
    children
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

/// What a process holds: its threads (`/proc/<pid>/task`) and its open sockets (`/proc/<pid>/fd` links
/// to `socket:[…]`), for checks that stopping something leaves no thread or connection behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holdings {
    pub threads: usize,
    pub sockets: usize,
}

/// The threads and sockets `pid` holds right now.
pub fn holdings(pid: u32) -> Holdings {
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |entries| entries.count());
    let sockets = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |entries| {
        let links = entries.flatten().filter_map(|entry| std::fs::read_link(entry.path()).ok());
        links.filter(|target| target.to_string_lossy().starts_with("socket:")).count()
    });
    Holdings { threads, sockets }
}
