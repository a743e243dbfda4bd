//! Helpers for the backend-side tests (`tests/supervision.rs`, `tests/remote_backends.rs`), on top of
//! the stdio harness in `tests/support/mod.rs`:
//!
//! - processes: signalling by pid, polling `/proc` until a condition holds;
//! - [`RemoteServer`], `tests/fixtures/http_server.py` (the official MCP Python SDK from `.deps/venv`)
//!   serving legacy SSE or Streamable HTTP on a port of its own, which a test can kill and start again
//!   on the same port;
//! - [`HttpProxy`]: the proxy in HTTP mode (`--sse --port 0`), with [`http`] a raw HTTP/1.1 client that
//!   reads JSON responses and server-sent event streams as they arrive.
//!
//! Every wait has a deadline, so a misbehaving proxy or server fails the test instead of hanging it.

#![allow(dead_code)] // Each test crate uses a different subset.

use serde_json::Value;
use std::io::{self, BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub const PROXY_BIN: &str = env!("CARGO_BIN_EXE_mcp-proxy-server");
pub const MOCK_SERVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mock_server.py");
pub const HTTP_SERVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/http_server.py");
pub const VENV_PYTHON: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.deps/venv/bin/python");

/// How long a test waits for any one thing. A passing test never waits this long.
pub const WAIT: Duration = Duration::from_secs(10);

/// A name no other test (or test process) uses: `<label>-<pid>-<n>`.
pub fn unique(label: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("{label}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

// ----- polling and processes ----------------------------------------------------------------------------

/// Polls `check` every 20 ms until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Live (non-zombie) processes whose command line contains `marker`, as `(pid, command line)`.
pub fn live_processes_with(marker: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return found };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if !cmdline.contains(marker) {
            continue;
        }
        let zombie = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|stat| stat.rsplit(')').next().map(|rest| rest.trim_start().starts_with('Z')))
            .unwrap_or(false);
        if !zombie {
            found.push((pid, cmdline.trim_end().to_owned()));
        }
    }
    found
}

/// Sends `signal` to one process.
pub fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) touches no memory of ours.
    let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal}) failed: {}", io::Error::last_os_error());
}

/// A TCP port free right now on 127.0.0.1 (the kernel's pick; another process could take it later).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("cannot bind 127.0.0.1:0").port()
}

/// True once something accepts TCP connections on 127.0.0.1:`port`.
pub fn accepts_connections(port: u16) -> bool {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Collects a child's stderr in the background, so it can be shown when a test fails.
fn collect(stream: impl Read + Send + 'static) -> Arc<(Mutex<String>, Condvar)> {
    let log = Arc::new((Mutex::new(String::new()), Condvar::new()));
    let collected = Arc::clone(&log);
    thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let (text, changed) = &*collected;
            let mut text = text.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
            changed.notify_all();
        }
    });
    log
}

// ----- remote MCP servers (official Python SDK) ---------------------------------------------------------

/// Which transport a [`RemoteServer`] speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Legacy HTTP+SSE: `GET /sse`, `POST /messages/`.
    Sse,
    /// Streamable HTTP: `/mcp`, answers as SSE streams.
    StreamableHttp,
    /// Streamable HTTP: `/mcp`, answers as single JSON bodies (`--json-response`).
    StreamableHttpJson,
}

/// Fails the test (no skipping) when the pinned Python SDK is not installed.
pub fn require_venv() {
    let ok = Path::new(VENV_PYTHON).is_file()
        && Command::new(VENV_PYTHON)
            .args(["-c", "import mcp.server.mcpserver, uvicorn"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    assert!(ok, "{VENV_PYTHON} cannot import the MCP Python SDK: run scripts/install-test-deps.sh");
}

/// `tests/fixtures/http_server.py` running on 127.0.0.1. Killed on drop.
pub struct RemoteServer {
    transport: Transport,
    port: u16,
    name: String,
    child: Option<Child>,
    log: Arc<(Mutex<String>, Condvar)>,
    /// Stderr of earlier runs (before a restart), for failure messages.
    earlier: String,
}

impl RemoteServer {
    /// Starts a server named `name` on a free port and waits until it accepts connections.
    pub fn start(transport: Transport, name: &str) -> RemoteServer {
        require_venv();
        let mut server = RemoteServer {
            transport,
            port: 0,
            name: name.to_owned(),
            child: None,
            log: Arc::new((Mutex::new(String::new()), Condvar::new())),
            earlier: String::new(),
        };
        // The port is free when picked but another process may take it first: try a few.
        for _ in 0..5 {
            server.port = free_port();
            if server.spawn() {
                return server;
            }
        }
        panic!("{name}: the server did not start on any of 5 ports:\n{}", server.stderr());
    }

    /// Starts the process on `self.port`; true once it accepts connections, false if it exited first.
    fn spawn(&mut self) -> bool {
        let port = self.port.to_string();
        let mut args = vec![HTTP_SERVER, "--port", &port, "--name", &self.name, "--transport"];
        args.extend_from_slice(match self.transport {
            Transport::Sse => &["sse"],
            Transport::StreamableHttp => &["streamable-http"],
            Transport::StreamableHttpJson => &["streamable-http", "--json-response"],
        });
        let mut child = Command::new(VENV_PYTHON)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {VENV_PYTHON} {HTTP_SERVER}: {e}"));
        self.earlier.push_str(&self.stderr());
        self.log = collect(child.stderr.take().expect("piped stderr"));
        let deadline = Instant::now() + WAIT;
        loop {
            if accepts_connections(self.port) {
                // Ours, not a stranger's: ours is still running.
                if matches!(child.try_wait(), Ok(None)) {
                    self.child = Some(child);
                    return true;
                }
            }
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{}: not listening on port {} within {WAIT:?}:\n{}", self.name, self.port, self.stderr());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL a proxy config names: `.../sse` or `.../mcp`.
    pub fn url(&self) -> String {
        match self.transport {
            Transport::Sse => format!("http://127.0.0.1:{}/sse", self.port),
            Transport::StreamableHttp | Transport::StreamableHttpJson => format!("http://127.0.0.1:{}/mcp", self.port),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the server wrote to stderr (this run and earlier ones).
    pub fn stderr(&self) -> String {
        format!("{}{}", self.earlier, self.log.0.lock().unwrap())
    }

    /// Kills the server (SIGKILL: its connections are cut at once) and waits until the port is closed.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let port = self.port;
        wait_until(&format!("port {port} to close"), WAIT, || (!accepts_connections(port)).then_some(()));
    }

    /// Starts the server again on the same port, as `name` (a new process: no session survives).
    pub fn restart_as(&mut self, name: &str) {
        self.kill();
        self.name = name.to_owned();
        let deadline = Instant::now() + WAIT;
        // The old socket may linger a moment in the kernel; uvicorn then fails to bind and exits.
        while !self.spawn() {
            assert!(Instant::now() < deadline, "{name}: cannot listen on port {} again:\n{}", self.port, self.stderr());
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for RemoteServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if thread::panicking() {
            eprintln!("--- stderr of remote server {} ---\n{}--- end ---", self.name, self.stderr());
        }
    }
}

// ----- the proxy in HTTP mode ---------------------------------------------------------------------------

/// Environment variables the proxy reads, cleared so the test runner's environment changes nothing.
fn clear_proxy_env(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let ours = ["LOGGING", "RUST_LOG", "HOST", "PORT", "SERVER_TOOLNAME_SEPERATOR", "SERVER_TOOLNAME_SEPARATOR"];
        if ours.contains(&name.as_ref())
            || name.starts_with("MCP_PROXY_")
            || name.contains("TOOL_CALL")
            || name.starts_with("ALLOWED_")
            || name.to_ascii_lowercase().ends_with("_proxy")
        {
            command.env_remove(name.as_ref());
        }
    }
}

/// The proxy serving HTTP on 127.0.0.1 (a port of the kernel's choice). Killed on drop.
pub struct HttpProxy {
    child: Child,
    addr: SocketAddr,
    log: Arc<(Mutex<String>, Condvar)>,
    dir: PathBuf,
}

impl HttpProxy {
    /// Starts `mcp-proxy-server --sse` on `config` with `env`, and reads the address it listens on.
    pub fn start(config: &Value, env: &[(&str, &str)]) -> HttpProxy {
        let dir = std::env::temp_dir().join(unique("mcp-proxy-backend-test"));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let config_path = dir.join("mcp_server.json");
        std::fs::write(&config_path, config.to_string()).expect("cannot write the config");
        let mut command = Command::new(PROXY_BIN);
        command.args(["--sse", "--config"]).arg(&config_path).args(["--host", "127.0.0.1", "--port", "0"]);
        clear_proxy_env(&mut command);
        command.env("LOGGING", "info");
        command.envs(env.iter().copied());
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot start {PROXY_BIN}: {e}"));
        let log = collect(child.stderr.take().expect("piped stderr"));
        let mut proxy = HttpProxy { child, addr: ([127, 0, 0, 1], 0).into(), log, dir };
        let text = proxy.wait_for_stderr("listening on http://");
        let after = text.split("listening on http://").nth(1).unwrap_or_default();
        let addr = after.split_whitespace().next().unwrap_or_default();
        proxy.addr = addr.parse().unwrap_or_else(|e| proxy.fail(&format!("cannot read the address '{addr}': {e}")));
        proxy
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stderr(&self) -> String {
        self.log.0.lock().unwrap().clone()
    }

    pub fn fail(&self, what: &str) -> ! {
        panic!("{what}\n--- proxy stderr ---\n{}--- end of proxy stderr ---", self.stderr())
    }

    /// Waits until the proxy's stderr contains `needle`; the whole stderr.
    pub fn wait_for_stderr(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        let (text, changed) = &*self.log;
        let mut text = text.lock().unwrap();
        while !text.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || matches!(self.child.try_wait(), Ok(Some(_))) {
                let status = self.child.try_wait().ok().flatten();
                panic!("stderr did not show {needle:?} (exit status {status:?})\n--- proxy stderr ---\n{text}--- end ---");
            }
            text = changed.wait_timeout(text, left.min(Duration::from_millis(100))).unwrap().0;
        }
        text.clone()
    }

    /// Waits until `/health` reports every backend `connected`.
    pub fn wait_backends_connected(&self) {
        let deadline = Instant::now() + WAIT;
        loop {
            let health = http::request(self.addr, "GET", "/health", &[], None).json();
            let backends = health["backends"].as_array().cloned().unwrap_or_default();
            if !backends.is_empty() && backends.iter().all(|b| b["state"] == "connected") {
                return;
            }
            if Instant::now() > deadline {
                self.fail(&format!("backends not connected within {WAIT:?}: {health}"));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for HttpProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("--- proxy stderr ---\n{}--- end of proxy stderr ---", self.stderr());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ----- a raw HTTP/1.1 client ----------------------------------------------------------------------------

pub mod http {
    //! One request per connection (`Connection: close`). A response is read head first; its body is
    //! then taken whole ([`Response::json`]) or as server-sent events ([`Response::events`]), each
    //! read bounded by a deadline.

    use super::WAIT;
    use serde_json::Value;
    use std::io::{self, BufRead, BufReader, Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::time::{Duration, Instant};

    pub struct Response {
        pub status: u16,
        pub headers: Vec<(String, String)>,
        body: Body,
        socket: TcpStream,
    }

    /// Sends one request and reads the response head.
    pub fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&Value>) -> Response {
        let socket = TcpStream::connect_timeout(&addr, WAIT).unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
        socket.set_read_timeout(Some(WAIT)).unwrap();
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        (&socket).write_all(head.as_bytes()).and_then(|_| (&socket).write_all(body.as_bytes())).unwrap_or_else(|e| {
            panic!("cannot send {method} {path}: {e}");
        });
        let mut reader = BufReader::new(socket.try_clone().unwrap());
        let mut status_line = String::new();
        reader.read_line(&mut status_line).unwrap_or_else(|e| panic!("{method} {path}: no response: {e}"));
        let status = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            panic!("{method} {path}: bad status line {status_line:?}");
        });
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap_or_else(|e| panic!("{method} {path}: reading the head: {e}"));
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        let find = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        let body = if find("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked")) {
            Body::Chunked { inner: reader, left: 0, done: false }
        } else if let Some(length) = find("content-length").and_then(|l| l.parse::<u64>().ok()) {
            Body::Plain(Box::new(reader.take(length)))
        } else {
            Body::Plain(Box::new(reader))
        };
        Response { status, headers, body, socket }
    }

    /// `POST path` with a JSON body, as a Streamable HTTP client sends it.
    pub fn post_mcp(addr: SocketAddr, session: Option<&str>, message: &Value) -> Response {
        let mut headers = vec![("Accept", "application/json, text/event-stream")];
        if let Some(session) = session {
            headers.push(("Mcp-Session-Id", session));
        }
        request(addr, "POST", "/mcp", &headers, Some(message))
    }

    impl Response {
        pub fn header(&self, name: &str) -> Option<&str> {
            let name = name.to_ascii_lowercase();
            self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
        }

        pub fn content_type(&self) -> &str {
            self.header("content-type").unwrap_or_default()
        }

        /// The whole body as text.
        pub fn text(mut self) -> String {
            let mut bytes = Vec::new();
            self.body.read_to_end(&mut bytes).unwrap_or_else(|e| panic!("reading the body (status {}): {e}", self.status));
            String::from_utf8_lossy(&bytes).into_owned()
        }

        /// The whole body as JSON.
        pub fn json(self) -> Value {
            let status = self.status;
            let text = self.text();
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("body of a {status} is not JSON ({e}): {text}"))
        }

        /// The body as a stream of server-sent events.
        pub fn events(self) -> Events {
            assert!(self.content_type().starts_with("text/event-stream"), "not an event stream: {:?}", self.headers);
            Events { reader: BufReader::new(self.body), socket: self.socket, pending: Vec::new() }
        }
    }

    enum Body {
        Plain(Box<dyn Read + Send>),
        Chunked { inner: BufReader<TcpStream>, left: usize, done: bool },
    }

    impl Read for Body {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self {
                Body::Plain(reader) => reader.read(buf),
                Body::Chunked { inner, left, done } => {
                    if *done || buf.is_empty() {
                        return Ok(0);
                    }
                    while *left == 0 {
                        let mut line = String::new();
                        if inner.read_line(&mut line)? == 0 {
                            *done = true;
                            return Ok(0);
                        }
                        let size = line.trim().split(';').next().unwrap_or_default();
                        if size.is_empty() {
                            continue; // the CRLF after the previous chunk
                        }
                        *left = usize::from_str_radix(size, 16)
                            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("bad chunk size {line:?}")))?;
                        if *left == 0 {
                            *done = true;
                            return Ok(0);
                        }
                    }
                    let want = buf.len().min(*left);
                    let n = inner.read(&mut buf[..want])?;
                    if n == 0 {
                        *done = true;
                    }
                    *left -= n;
                    Ok(n)
                }
            }
        }
    }

    /// One server-sent event.
    #[derive(Debug, Clone, Default)]
    pub struct Event {
        pub event: Option<String>,
        pub data: String,
    }

    impl Event {
        pub fn json(&self) -> Value {
            serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("event data is not JSON ({e}): {:?}", self.data))
        }
    }

    pub struct Events {
        reader: BufReader<Body>,
        socket: TcpStream,
        /// A line read in part when a read timed out.
        pending: Vec<u8>,
    }

    impl Events {
        /// The next event, or `None` if none arrives within `timeout` or the stream ends.
        pub fn next_within(&mut self, timeout: Duration) -> Option<Event> {
            let deadline = Instant::now() + timeout;
            let mut event = Event::default();
            let mut has_data = false;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return None;
                }
                self.socket.set_read_timeout(Some(left)).unwrap();
                match self.reader.read_until(b'\n', &mut self.pending) {
                    Ok(0) => return None,
                    Ok(_) if !self.pending.ends_with(b"\n") => return None, // the stream ended mid-line
                    Ok(_) => {}
                    Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => return None,
                    Err(_) => return None,
                }
                let line = String::from_utf8_lossy(&self.pending).trim_end_matches(['\r', '\n']).to_owned();
                self.pending.clear();
                if line.is_empty() {
                    if has_data || event.event.is_some() {
                        return Some(event);
                    }
                    continue;
                }
                if line.starts_with(':') {
                    continue; // a comment (keep-alive)
                }
                let (field, value) = line.split_once(':').map_or((line.as_str(), ""), |(f, v)| (f, v.strip_prefix(' ').unwrap_or(v)));
                match field {
                    "event" => event.event = Some(value.to_owned()),
                    "data" => {
                        if has_data {
                            event.data.push('\n');
                        }
                        event.data.push_str(value);
                        has_data = true;
                    }
                    _ => {}
                }
            }
        }

        /// The next `message` event's JSON, failing the test after `timeout`.
        pub fn next_message(&mut self, timeout: Duration) -> Value {
            loop {
                let Some(event) = self.next_within(timeout) else {
                    panic!("no event within {timeout:?}");
                };
                if event.event.as_deref().unwrap_or("message") == "message" && !event.data.trim().is_empty() {
                    return event.json();
                }
            }
        }
    }
}
