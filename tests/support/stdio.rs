//! The proxy over stdio: a test writes a config naming mock backends, starts the proxy with [`start`] or
//! a [`ProxyBuilder`], and speaks JSON-RPC to it line by line. A thread reads the proxy's stdout (one
//! message per line, into a channel); its stderr is collected for assertions on log lines.
//!
//! Dropping a [`Proxy`] closes its stdin, waits briefly for it to exit and kills it if it has not; when
//! the test is already panicking it also prints the proxy's stderr.

use super::{clear_proxy_env, names, poll, ProxyProcess, TempDir, CLIENT_PROTOCOL, PROXY_BIN, WAIT};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

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
        clear_proxy_env(&mut command);
        command.env("LOGGING", "info");
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command.stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut process = ProxyProcess::spawn(command);
        let stdin = process.child().stdin.take();
        let stdout = process.child().stdout.take().expect("piped stdout");

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

        Proxy {
            process,
            stdin,
            messages,
            stdout_lines,
            unclaimed: VecDeque::new(),
            next_id: 0,
            config_path: self.config_path,
            _dir: self.dir,
        }
    }
}

// ----- talking to the proxy -----------------------------------------------------------------------------

/// A running proxy and the client end of its stdio. Fields drop in order: the process, then its temp dir.
pub struct Proxy {
    process: ProxyProcess,
    stdin: Option<ChildStdin>,
    messages: Receiver<String>,
    /// Every stdout line so far, raw, for checks on the stream itself.
    stdout_lines: Arc<Mutex<Vec<String>>>,
    /// Messages read while waiting for something else, oldest first, not yet taken by a test.
    unclaimed: VecDeque<Value>,
    next_id: u64,
    config_path: PathBuf,
    _dir: TempDir,
}

impl Proxy {
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Everything the proxy wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    /// Every line the proxy wrote to stdout so far, as written.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout_lines.lock().unwrap().clone()
    }

    /// Fails the test with `what` and the proxy's stderr.
    pub fn fail(&self, what: &str) -> ! {
        self.process.fail(what)
    }

    /// Waits until the proxy's stderr contains `needle`, and returns the whole stderr.
    pub fn wait_for_stderr(&mut self, needle: &str) -> String {
        self.process.wait_for_stderr(needle)
    }

    /// Polls `check` until it returns `Some`; fails the test (with the proxy's stderr) after `timeout`.
    pub fn wait_until<T>(&self, what: &str, timeout: Duration, check: impl FnMut() -> Option<T>) -> T {
        poll(timeout, check).unwrap_or_else(|| self.fail(&format!("timed out after {timeout:?} waiting for {what}")))
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
                    let status = match self.process.is_running() {
                        false => "the proxy has exited".to_owned(),
                        true => "the proxy is still running".to_owned(),
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
        self.process.wait_exit(timeout)
    }
}

impl Drop for Proxy {
    /// A client that goes away closes stdin; the proxy should then exit by itself (the process is killed
    /// after 5 s if it does not).
    fn drop(&mut self) {
        self.stdin = None;
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.process.is_running() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
    }
}
