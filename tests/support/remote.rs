//! Remote MCP servers for the backend-side tests: [`RemoteServer`] runs `tests/fixtures/http_server.py`
//! (the official MCP Python SDK from `.deps/venv`) serving legacy SSE or Streamable HTTP on a port of its
//! own, which a test can kill and start again on the same port.

use super::{wait_until, StderrLog, WAIT};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

pub const HTTP_SERVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/http_server.py");
pub const VENV_PYTHON: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.deps/venv/bin/python");

/// A TCP port free right now on 127.0.0.1 (the kernel's pick; another process could take it later).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("cannot bind 127.0.0.1:0").port()
}

/// True once something accepts TCP connections on 127.0.0.1:`port`.
pub fn accepts_connections(port: u16) -> bool {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
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
    log: Option<StderrLog>,
    /// Stderr of earlier runs (before a restart), for failure messages.
    earlier: String,
}

impl RemoteServer {
    /// Starts a server named `name` on a free port and waits until it accepts connections.
    pub fn start(transport: Transport, name: &str) -> RemoteServer {
        require_venv();
        let mut server = RemoteServer { transport, port: 0, name: name.to_owned(), child: None, log: None, earlier: String::new() };
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
        if let Some(log) = self.log.take() {
            self.earlier.push_str(&log.text());
        }
        self.log = Some(StderrLog::collect(child.stderr.take().expect("piped stderr")));
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
        format!("{}{}", self.earlier, self.log.as_ref().map(StderrLog::text).unwrap_or_default())
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
