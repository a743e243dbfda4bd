//! A small harness for driving the real `mcp-proxy-server` binary over stdio.
//!
//! A test writes a config naming mock backends (`tests/fixtures/mock_server.py`), starts the proxy with
//! [`start`] or a [`ProxyBuilder`], and speaks JSON-RPC to it line by line. Two threads read the proxy's
//! stdout (one message per line, into a channel) and stderr (collected, so tests can assert on log lines).
//!
//! Every wait has a timeout, so a misbehaving proxy fails a test instead of hanging it, and every failure
//! caused here prints the proxy's stderr. Dropping a [`Proxy`] closes its stdin, waits briefly for it to
//! exit and kills it if it has not; when the test is already panicking it also prints the proxy's stderr.
//!
//! Tests run in parallel: every temp dir and marker made here is unique to the test process and call.

#![allow(dead_code)] // Each test crate uses a different subset of the helpers.

use serde_json::{json, Value};
use std::cell::Cell;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long a test waits for any one thing the proxy should do (an answer, a notification, a log line).
/// Generous because tests run in parallel on small machines; a passing test never waits this long.
pub const WAIT: Duration = Duration::from_secs(5);

pub const PROXY_BIN: &str = env!("CARGO_BIN_EXE_mcp-proxy-server");
pub const MOCK_SERVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mock_server.py");

/// The protocol version the test client asks for.
pub const CLIENT_PROTOCOL: &str = "2025-06-18";

/// The fifteen tools every mock serves.
pub const MOCK_TOOLS: [&str; 15] = [
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

// ----- temp dirs ----------------------------------------------------------------------------------------

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let path = std::env::temp_dir().join(unique("mcp-proxy-test"));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ----- starting the proxy -------------------------------------------------------------------------------

/// Starts the proxy on `config` with the default environment.
pub fn start(config: &Value) -> Proxy {
    ProxyBuilder::new(config).spawn()
}

/// Starts the proxy on `config` and completes the MCP handshake.
pub fn start_initialized(config: &Value) -> Proxy {
    let mut proxy = start(config);
    proxy.initialize();
    proxy
}

/// How to start the proxy: which config file and which environment variables.
pub struct ProxyBuilder {
    dir: TempDir,
    config_path: PathBuf,
    env: Vec<(String, String)>,
}

impl ProxyBuilder {
    /// A proxy reading `config` from a fresh temp file.
    pub fn new(config: &Value) -> ProxyBuilder {
        ProxyBuilder::with_config_text(&serde_json::to_string_pretty(config).unwrap())
    }

    /// A proxy reading a config file holding exactly `text` (which need not be valid).
    pub fn with_config_text(text: &str) -> ProxyBuilder {
        let builder = ProxyBuilder::without_config_file();
        std::fs::write(&builder.config_path, text).expect("cannot write the config file");
        builder
    }

    /// A proxy pointed at a config file that does not exist.
    pub fn without_config_file() -> ProxyBuilder {
        let dir = TempDir::new();
        let config_path = dir.path().join("mcp_server.json");
        ProxyBuilder { dir, config_path, env: Vec::new() }
    }

    pub fn env(mut self, name: &str, value: &str) -> ProxyBuilder {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn spawn(self) -> Proxy {
        let mut command = Command::new(PROXY_BIN);
        command.arg("--config").arg(&self.config_path);
        // The test runner's own environment must not change what the proxy does.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            let ours = ["LOGGING", "RUST_LOG", "SERVER_TOOLNAME_SEPERATOR", "SERVER_TOOLNAME_SEPARATOR"];
            if ours.contains(&name.as_ref()) || name.starts_with("MCP_PROXY_") || name.contains("TOOL_CALL") {
                command.env_remove(name.as_ref());
            }
        }
        command.env("LOGGING", "info");
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot start {PROXY_BIN}: {e}"));

        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");

        let (lines, messages) = mpsc::channel();
        let stdout_lines = Arc::new(Mutex::new(Vec::new()));
        let all_lines = Arc::clone(&stdout_lines);
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                all_lines.lock().unwrap().push(line.clone());
                if lines.send(line).is_err() {
                    break;
                }
            }
        });

        let stderr_text = Arc::new((Mutex::new(String::new()), Condvar::new()));
        let collected = Arc::clone(&stderr_text);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let (text, changed) = &*collected;
                let mut text = text.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
                changed.notify_all();
            }
        });

        Proxy {
            child,
            stdin,
            messages,
            stdout_lines,
            stderr: stderr_text,
            unclaimed: VecDeque::new(),
            next_id: 0,
            config_path: self.config_path,
            stderr_shown: Cell::new(false),
            _dir: self.dir,
        }
    }
}

// ----- talking to the proxy -----------------------------------------------------------------------------

/// A running proxy and the client end of its stdio.
pub struct Proxy {
    child: Child,
    stdin: Option<ChildStdin>,
    messages: Receiver<String>,
    /// Every stdout line so far, raw, for checks on the stream itself.
    stdout_lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<(Mutex<String>, Condvar)>,
    /// Messages read while waiting for something else, oldest first, not yet taken by a test.
    unclaimed: VecDeque<Value>,
    next_id: u64,
    config_path: PathBuf,
    /// Set once a failure message has included the stderr, so Drop does not print it again.
    stderr_shown: Cell<bool>,
    _dir: TempDir,
}

impl Proxy {
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the proxy wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.0.lock().unwrap().clone()
    }

    /// Every line the proxy wrote to stdout so far, as written.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout_lines.lock().unwrap().clone()
    }

    /// Fails the test with `what` and the proxy's stderr.
    pub fn fail(&self, what: &str) -> ! {
        self.stderr_shown.set(true);
        panic!("{what}\n--- proxy stderr ---\n{}--- end of proxy stderr ---", self.stderr())
    }

    /// Waits until the proxy's stderr contains `needle`, and returns the whole stderr.
    pub fn wait_for_stderr(&self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        let (text, changed) = &*self.stderr;
        let mut text = text.lock().unwrap();
        while !text.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                drop(text);
                self.fail(&format!("stderr did not show {needle:?} within {WAIT:?}"));
            }
            text = changed.wait_timeout(text, left).unwrap().0;
        }
        text.clone()
    }

    // ----- sending -----

    /// Writes one raw line (a newline is added).
    pub fn send_line(&mut self, line: &str) {
        self.send_bytes(format!("{line}\n").as_bytes());
    }

    /// Writes raw bytes, which need not be UTF-8 nor end a line.
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        let Some(stdin) = self.stdin.as_mut() else { self.fail("stdin is already closed") };
        let written = stdin.write_all(bytes).and_then(|_| stdin.flush());
        if let Err(e) = written {
            self.fail(&format!("cannot write to the proxy's stdin: {e}"));
        }
    }

    /// Writes one message.
    pub fn send(&mut self, message: Value) {
        self.send_line(&message.to_string());
    }

    pub fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({ "jsonrpc": "2.0", "method": method, "params": params }));
    }

    /// Sends a request under a fresh numeric id without waiting; returns the id.
    pub fn start_request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = json!(self.next_id);
        self.start_request_with_id(id.clone(), method, params);
        id
    }

    /// Sends a request under the id given (a number or a string) without waiting.
    pub fn start_request_with_id(&mut self, id: Value, method: &str, params: Value) {
        self.send(json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }));
    }

    /// Sends a request and returns the whole response message (result or error).
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.start_request(method, params);
        self.response(&id)
    }

    /// Sends a request and returns its `result`, failing the test on an error response.
    pub fn request_ok(&mut self, method: &str, params: Value) -> Value {
        let response = self.request(method, params);
        match response.get("result") {
            Some(result) => result.clone(),
            None => self.fail(&format!("{method} failed: {response}")),
        }
    }

    /// `tools/call` of `name` with `arguments`; the whole response message.
    pub fn call_tool(&mut self, name: &str, arguments: Value) -> Value {
        self.request("tools/call", json!({ "name": name, "arguments": arguments }))
    }

    /// `tools/call` that must succeed; the text of its first content item.
    pub fn tool_text(&mut self, name: &str, arguments: Value) -> String {
        let response = self.call_tool(name, arguments);
        match response.pointer("/result/content/0/text").and_then(Value::as_str) {
            Some(text) if response["result"]["isError"] != json!(true) => text.to_owned(),
            _ => self.fail(&format!("tools/call {name} did not return text: {response}")),
        }
    }

    /// The exposed tool names, in the order the proxy lists them.
    pub fn tool_names(&mut self) -> Vec<String> {
        let result = self.request_ok("tools/list", json!({}));
        names(&result["tools"])
    }

    /// `initialize` then `notifications/initialized`; returns the initialize result.
    pub fn initialize(&mut self) -> Value {
        let result = self.request_ok(
            "initialize",
            json!({
                "protocolVersion": CLIENT_PROTOCOL,
                "capabilities": { "roots": { "listChanged": true } },
                "clientInfo": { "name": "stdio-proxy-tests", "version": "0.0.0" },
            }),
        );
        self.notify("notifications/initialized", json!({}));
        result
    }

    /// Closes the proxy's stdin: the client has gone.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    // ----- receiving -----

    /// The next message: an unclaimed one if any, else the next line from stdout. `None` if nothing
    /// arrives within `timeout` or stdout has closed.
    pub fn next_message(&mut self, timeout: Duration) -> Option<Value> {
        if let Some(message) = self.unclaimed.pop_front() {
            return Some(message);
        }
        self.read_message(timeout)
    }

    /// Reads one line from stdout, failing the test if it is not JSON.
    fn read_message(&mut self, timeout: Duration) -> Option<Value> {
        match self.messages.recv_timeout(timeout) {
            Ok(line) => match serde_json::from_str(&line) {
                Ok(message) => Some(message),
                Err(e) => self.fail(&format!("stdout line is not JSON ({e}): {line}")),
            },
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Waits for a message matching `matches`, keeping every other message read meanwhile (notifications,
    /// other responses) for later calls. Unclaimed messages are checked first, oldest first.
    pub fn wait_for(&mut self, what: &str, timeout: Duration, matches: impl Fn(&Value) -> bool) -> Value {
        if let Some(index) = self.unclaimed.iter().position(&matches) {
            return self.unclaimed.remove(index).unwrap();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_message(left) {
                Some(message) if matches(&message) => return message,
                Some(message) => self.unclaimed.push_back(message),
                None => {
                    let seen: Vec<String> = self.unclaimed.iter().map(Value::to_string).collect();
                    let status = match self.child.try_wait() {
                        Ok(Some(status)) => format!("the proxy has exited ({status})"),
                        _ => "the proxy is still running".to_owned(),
                    };
                    self.fail(&format!("no {what} within {timeout:?}; {status}; unclaimed messages:\n  {}", seen.join("\n  ")));
                }
            }
        }
    }

    /// The response to request `id`.
    pub fn response(&mut self, id: &Value) -> Value {
        let what = format!("response to request {id}");
        self.wait_for(&what, WAIT, |m| m.get("id") == Some(id) && m.get("method").is_none())
    }

    /// The next notification `method` (an unclaimed one first).
    pub fn notification(&mut self, method: &str) -> Value {
        let what = format!("notification {method}");
        self.wait_for(&what, WAIT, |m| m["method"] == method && m.get("id").is_none())
    }

    /// Takes every unclaimed notification `method` read so far, oldest first.
    pub fn take_notifications(&mut self, method: &str) -> Vec<Value> {
        let (taken, kept): (VecDeque<Value>, VecDeque<Value>) =
            self.unclaimed.drain(..).partition(|m| m["method"] == method && m.get("id").is_none());
        self.unclaimed = kept;
        taken.into()
    }

    /// Reads whatever arrives within `quiet` into the unclaimed messages and returns a copy of them.
    pub fn drain(&mut self, quiet: Duration) -> Vec<Value> {
        while let Some(message) = self.read_message(quiet) {
            self.unclaimed.push_back(message);
        }
        self.unclaimed.iter().cloned().collect()
    }

    // ----- exit -----

    /// Waits for the proxy to exit, failing the test after `timeout`.
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

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stdin = None;
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() && !self.stderr_shown.get() {
            eprintln!("--- proxy stderr ---\n{}--- end of proxy stderr ---", self.stderr());
        }
    }
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

// ----- processes ----------------------------------------------------------------------------------------

/// Live processes whose command line contains `marker`, as `(pid, command line)`.
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
