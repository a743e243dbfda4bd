//! HTTP: a raw HTTP/1.1 client, and the proxy in HTTP mode.
//!
//! [`ProxyBuilder`] writes a config (mock backends by key, or a whole config), starts the proxy with
//! `--sse --host 127.0.0.1 --port 0` (serving HTTPS with the test certificate of `tests/fixtures/tls/`
//! when asked) and reads the bound address from its stderr. [`Conn`] is one TCP connection (plain, or
//! TLS trusting the test CA) speaking HTTP/1.1 by hand: it sends [`Req`]s (or raw bytes), reads whole
//! [`Response`]s (`Content-Length`, chunked, or up to EOF) and can turn into an [`EventStream`] that
//! reads server-sent events one at a time as they arrive. Every read has a deadline.
//!
//! Dropping an [`HttpProxy`] kills the proxy (its mock backends then see EOF on stdin and exit) and, when
//! the test is panicking, prints the proxy's stderr.

use super::{clear_proxy_env, ProxyProcess, TempDir, CLIENT_PROTOCOL, MOCK_SERVER, PROXY_BIN, WAIT};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::FromRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// What a Streamable HTTP client sends as `Accept` on `POST /mcp`.
pub const MCP_ACCEPT: &str = "application/json, text/event-stream";

/// The test PKI (`tests/fixtures/tls/make.sh`): a CA, and certificates for 127.0.0.1 and localhost.
pub const TLS_FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");

// ----- starting the proxy -------------------------------------------------------------------------------

/// How to start the proxy: which backends and which environment.
pub struct ProxyBuilder {
    backends: Vec<String>,
    /// A whole config, instead of one mock backend per key of `backends`.
    config: Option<Value>,
    env: Vec<(String, String)>,
    /// Seconds every backend waits before it starts (through `sh -c 'sleep ...; exec python3 ...'`).
    start_delay: Option<f64>,
    /// The proxy's `RLIMIT_NOFILE`, when a test wants it small.
    nofile: Option<u64>,
    /// Serve HTTPS with the test certificate (`server.pem`), and connect with TLS.
    tls: bool,
}

impl Default for ProxyBuilder {
    fn default() -> Self {
        ProxyBuilder::new()
    }
}

impl ProxyBuilder {
    /// One mock backend, `mock`: its tools are exposed as `mock__echo`, `mock__sleep`, ...
    pub fn new() -> ProxyBuilder {
        ProxyBuilder { backends: vec!["mock".to_owned()], config: None, env: Vec::new(), start_delay: None, nofile: None, tls: false }
    }

    /// One mock backend per key, each run as `--name <key>`.
    pub fn backends(mut self, keys: &[&str]) -> ProxyBuilder {
        self.backends = keys.iter().map(|k| k.to_string()).collect();
        self
    }

    /// This whole config instead of mock backends.
    pub fn config(mut self, config: &Value) -> ProxyBuilder {
        self.config = Some(config.clone());
        self
    }

    /// Makes every backend take `seconds` to start.
    pub fn backend_start_delay(mut self, seconds: f64) -> ProxyBuilder {
        self.start_delay = Some(seconds);
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> ProxyBuilder {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Serves HTTPS with the test certificate; [`HttpProxy::connect`] and the requests then use TLS.
    pub fn tls(mut self) -> ProxyBuilder {
        self.tls = true;
        self.env("MCP_PROXY_TLS_CERT", &format!("{TLS_FIXTURES}/server.pem"))
            .env("MCP_PROXY_TLS_KEY", &format!("{TLS_FIXTURES}/server.key"))
    }

    /// Starts the proxy with this many file descriptors at most (soft and hard `RLIMIT_NOFILE`).
    pub fn nofile(mut self, limit: u64) -> ProxyBuilder {
        self.nofile = Some(limit);
        self
    }

    fn mock_config(&self) -> Value {
        let servers: serde_json::Map<String, Value> = self
            .backends
            .iter()
            .map(|key| {
                let entry = match self.start_delay {
                    None => json!({ "command": "python3", "args": [MOCK_SERVER, "--name", key] }),
                    Some(delay) => {
                        let script = format!("sleep {delay}; exec python3 \"$0\" --name \"$1\"");
                        json!({ "command": "sh", "args": ["-c", script, MOCK_SERVER, key] })
                    }
                };
                (key.clone(), entry)
            })
            .collect();
        json!({ "mcpServers": servers })
    }

    pub fn start(self) -> HttpProxy {
        let dir = TempDir::new();
        let config_path = dir.path().join("mcp_server.json");
        let config = self.config.clone().unwrap_or_else(|| self.mock_config());
        std::fs::write(&config_path, config.to_string()).expect("cannot write the config");

        let mut command = Command::new(PROXY_BIN);
        command.args(["--sse", "--config"]).arg(&config_path).args(["--host", "127.0.0.1", "--port", "0"]);
        clear_proxy_env(&mut command);
        command.env("LOGGING", "info");
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command.stdin(Stdio::null()).stdout(Stdio::null());
        if let Some(limit) = self.nofile {
            let limit = libc::rlimit { rlim_cur: limit as libc::rlim_t, rlim_max: limit as libc::rlim_t };
            // SAFETY: setrlimit is async-signal-safe, and `limit` is a plain value copied into the closure.
            unsafe {
                command.pre_exec(move || match libc::setrlimit(libc::RLIMIT_NOFILE, &limit) {
                    0 => Ok(()),
                    _ => Err(io::Error::last_os_error()),
                });
            }
        }
        let mut process = ProxyProcess::spawn(command);
        let addr = process.listening_addr();
        HttpProxy { process, addr, tls: self.tls, dir }
    }
}

/// Starts the proxy with one mock backend (`mock`) and no settings.
pub fn start() -> HttpProxy {
    ProxyBuilder::new().start()
}

/// A running proxy in HTTP mode. Fields drop in order: the process, then its temp dir.
pub struct HttpProxy {
    process: ProxyProcess,
    addr: SocketAddr,
    /// Whether it serves HTTPS.
    tls: bool,
    dir: TempDir,
}

impl HttpProxy {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The config file the proxy reads (a test rewrites it to reload).
    pub fn config_path(&self) -> std::path::PathBuf {
        self.dir.join("mcp_server.json")
    }

    /// Waits for the proxy to exit, failing the test after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        self.process.wait_exit(timeout)
    }

    /// The file descriptors the proxy has open now.
    pub fn open_fds(&self) -> usize {
        let dir = format!("/proc/{}/fd", self.process.pid());
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {dir}: {e}")).count()
    }

    /// Connects from `local` (any 127.0.0.0/8 address), for limits kept per client address.
    pub fn connect_from(&self, local: Ipv4Addr) -> Conn {
        Conn::wrap(Wire::Plain(
            connect_from(local, self.addr).unwrap_or_else(|e| panic!("cannot connect from {local} to {}: {e}", self.addr)),
        ))
    }

    /// Everything the proxy wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    /// Fails the test with `what` and the proxy's stderr.
    pub fn fail(&self, what: &str) -> ! {
        self.process.fail(what)
    }

    /// Waits until the proxy's stderr contains `needle`, and returns the whole stderr.
    pub fn wait_for_stderr(&mut self, needle: &str) -> String {
        self.process.wait_for_stderr(needle)
    }

    /// True while the proxy process runs.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// A new connection: TLS when the proxy serves HTTPS.
    pub fn connect(&self) -> Conn {
        match self.tls {
            true => Conn::open_tls(self.addr),
            false => Conn::open(self.addr),
        }
    }

    /// One request on a fresh connection; the whole response.
    pub fn request(&self, req: &Req) -> Response {
        self.connect().roundtrip(req)
    }

    /// `POST /mcp` with a JSON-RPC message, in the session given (if any).
    pub fn post_mcp(&self, session: Option<&str>, message: &Value) -> Response {
        self.request(&mcp_post(session, message))
    }

    /// `initialize` then `notifications/initialized` over Streamable HTTP; the new session's id.
    pub fn initialize(&self) -> String {
        initialize_on(&mut self.connect())
    }

    /// `GET /health` with extra headers; the JSON body (status must be 200).
    pub fn health(&self, headers: &[(&str, &str)]) -> Value {
        let response = self.request(&Req::get("/health").headers(headers));
        assert_eq!(response.status, 200, "GET /health: {response:?}");
        response.json()
    }

    /// Waits until `/health` (seen with `headers`) reports every backend `connected`; the health body.
    pub fn wait_backends_connected(&self, headers: &[(&str, &str)]) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let health = self.health(headers);
            let backends = health["backends"].as_array().unwrap_or_else(|| panic!("no backends in {health}"));
            if backends.iter().all(|b| b["state"] == "connected") {
                return health;
            }
            if Instant::now() > deadline {
                self.fail(&format!("backends not connected within {WAIT:?}: {health}"));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Opens a legacy SSE session (`GET /sse`) and reads its `endpoint` event.
    pub fn open_sse(&self, headers: &[(&str, &str)]) -> SseSession {
        open_sse_on(self.connect(), "/sse", headers)
    }

    /// Opens a legacy SSE session at `path` (`/sse/<profile>`) and reads its `endpoint` event.
    pub fn open_sse_at(&self, path: &str, headers: &[(&str, &str)]) -> SseSession {
        open_sse_on(self.connect(), path, headers)
    }
}

/// Opens a legacy SSE session (`GET /sse`) and reads its `endpoint` event.
pub fn open_sse(addr: SocketAddr, headers: &[(&str, &str)]) -> SseSession {
    open_sse_at(addr, "/sse", headers)
}

/// Opens a legacy SSE session at `path` and reads its `endpoint` event.
pub fn open_sse_at(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> SseSession {
    open_sse_on(Conn::open(addr), path, headers)
}

/// Opens a legacy SSE session at `path` on `conn` and reads its `endpoint` event.
fn open_sse_on(mut conn: Conn, path: &str, headers: &[(&str, &str)]) -> SseSession {
    conn.send(&Req::get(path).header("Accept", "text/event-stream").headers(headers));
    let head = conn.head();
    assert_eq!(head.status, 200, "GET {path}: {head:?}");
    let mut events = conn.into_events(&head);
    let first = events.next_event(WAIT);
    assert_eq!(first.event.as_deref(), Some("endpoint"), "first event of /sse: {first:?}");
    let endpoint = first.data.clone();
    let session = endpoint.split("sessionId=").nth(1).unwrap_or_default().to_owned();
    SseSession { head, events, endpoint, session }
}

/// An open legacy SSE session: its stream, the endpoint it named and the session id in it.
pub struct SseSession {
    pub head: Head,
    pub events: EventStream,
    pub endpoint: String,
    pub session: String,
}

// ----- JSON-RPC messages --------------------------------------------------------------------------------

pub fn rpc(id: impl Into<Value>, method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id.into(), "method": method, "params": params })
}

pub fn notification(method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "method": method, "params": params })
}

pub fn initialize_request(id: impl Into<Value>) -> Value {
    rpc(
        id,
        "initialize",
        json!({
            "protocolVersion": CLIENT_PROTOCOL,
            "capabilities": {},
            "clientInfo": { "name": "http-frontend-tests", "version": "0.0.0" },
        }),
    )
}

pub fn tool_call(id: impl Into<Value>, name: &str, arguments: Value) -> Value {
    rpc(id, "tools/call", json!({ "name": name, "arguments": arguments }))
}

/// `POST /mcp` with a JSON-RPC message, in the session given (if any).
pub fn mcp_post(session: Option<&str>, message: &Value) -> Req {
    let req = Req::post("/mcp").json(message).header("Accept", MCP_ACCEPT);
    match session {
        Some(session) => req.header("Mcp-Session-Id", session),
        None => req,
    }
}

/// `initialize` then `notifications/initialized` on a kept-alive connection; the new session's id.
pub fn initialize_on(conn: &mut Conn) -> String {
    let response = conn.roundtrip(&mcp_post(None, &initialize_request(0)));
    assert_eq!(response.status, 200, "initialize: {response:?}");
    let session = response.header("mcp-session-id").unwrap_or_else(|| panic!("no Mcp-Session-Id: {response:?}")).to_owned();
    let initialized = conn.roundtrip(&mcp_post(Some(&session), &notification("notifications/initialized", json!({}))));
    assert_eq!(initialized.status, 202, "notifications/initialized: {initialized:?}");
    session
}

// ----- requests -----------------------------------------------------------------------------------------

/// An HTTP/1.1 request. `Host` is always sent; `Content-Length` is added unless the headers name a
/// length or a transfer encoding.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Req {
    pub fn new(method: &str, target: &str) -> Req {
        Req { method: method.to_owned(), target: target.to_owned(), headers: Vec::new(), body: Vec::new() }
    }

    pub fn get(target: &str) -> Req {
        Req::new("GET", target)
    }

    pub fn post(target: &str) -> Req {
        Req::new("POST", target)
    }

    pub fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn headers(mut self, headers: &[(&str, &str)]) -> Req {
        for (name, value) in headers {
            self = self.header(name, value);
        }
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Req {
        self.body = body.into();
        self
    }

    /// A JSON body with `Content-Type: application/json`.
    pub fn json(self, value: &Value) -> Req {
        self.header("Content-Type", "application/json").body(value.to_string())
    }

    fn has_header(&self, name: &str) -> bool {
        self.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name))
    }

    /// The request as sent on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut head = format!("{} {} HTTP/1.1\r\n", self.method, self.target);
        if !self.has_header("host") {
            head.push_str("Host: 127.0.0.1\r\n");
        }
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        let sized = self.has_header("content-length") || self.has_header("transfer-encoding");
        if !sized && (!self.body.is_empty() || matches!(self.method.as_str(), "POST" | "PUT")) {
            head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

// ----- responses ----------------------------------------------------------------------------------------

/// A status line and headers.
#[derive(Debug, Clone)]
pub struct Head {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn content_type(&self) -> &str {
        self.header("content-type").unwrap_or("")
    }

    fn chunked(&self) -> bool {
        self.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }
}

/// A whole response.
#[derive(Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?} {:?}", self.status, self.headers, self.text())
    }
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn content_type(&self) -> &str {
        self.header("content-type").unwrap_or("")
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; fails the test if it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:?}"))
    }

    /// The body as server-sent events (for a `text/event-stream` response that has ended).
    pub fn events(&self) -> Vec<SseEvent> {
        let mut parser = SseParser::default();
        parser.push(&self.text());
        parser
            .items
            .into_iter()
            .filter_map(|item| match item {
                SseItem::Event(event) => Some(event),
                SseItem::Comment(_) => None,
            })
            .collect()
    }
}

// ----- connections --------------------------------------------------------------------------------------

/// What a [`Conn`] speaks over: TCP, or TLS over TCP.
pub enum Wire {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Wire {
    fn tcp(&self) -> &TcpStream {
        match self {
            Wire::Plain(tcp) => tcp,
            Wire::Tls(tls) => tls.get_ref(),
        }
    }
}

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Wire::Plain(tcp) => tcp.read(buf),
            Wire::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Wire::Plain(tcp) => tcp.write(buf),
            Wire::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Wire::Plain(tcp) => tcp.flush(),
            Wire::Tls(tls) => tls.flush(),
        }
    }
}

/// A TLS client that trusts the test CA only.
pub fn tls_client() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let mut roots = RootCertStore::empty();
        let ca = CertificateDer::from_pem_file(format!("{TLS_FIXTURES}/ca.pem")).expect("the test CA");
        roots.add(ca).expect("the test CA is a CA certificate");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions().expect("TLS 1.2 and 1.3");
        Arc::new(config.with_root_certificates(roots).with_no_client_auth())
    });
    Arc::clone(config)
}

/// One connection to the proxy, speaking HTTP/1.1 by hand. Reads time out after [`WAIT`].
pub struct Conn {
    reader: BufReader<Wire>,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Conn {
        Conn::wrap(Wire::Plain(tcp_to(addr)))
    }

    /// A TLS connection, checking the proxy's certificate against the test CA as 127.0.0.1. The
    /// handshake happens with the first request.
    pub fn open_tls(addr: SocketAddr) -> Conn {
        let session = ClientConnection::new(tls_client(), ServerName::from(addr.ip())).expect("a TLS client session");
        Conn::wrap(Wire::Tls(Box::new(StreamOwned::new(session, tcp_to(addr)))))
    }

    fn wrap(wire: Wire) -> Conn {
        let stream = wire.tcp();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        let _ = stream.set_nodelay(true);
        Conn { reader: BufReader::new(wire) }
    }

    /// The TCP connection underneath.
    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref().tcp()
    }

    /// Ends a TLS connection as polite clients do, with a close_notify alert (then a drop closes the TCP
    /// connection); nothing on plain TCP.
    pub fn close_notify(&mut self) {
        if let Wire::Tls(tls) = self.reader.get_mut() {
            tls.conn.send_close_notify();
            tls.flush().unwrap_or_else(|e| panic!("cannot send close_notify: {e}"));
        }
    }

    /// The certificate the server showed (the TLS handshake is completed first); `None` on plain TCP.
    pub fn peer_certificate(&mut self) -> Option<Vec<u8>> {
        let Wire::Tls(tls) = self.reader.get_mut() else { return None };
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).unwrap_or_else(|e| panic!("TLS handshake: {e}"));
        }
        tls.conn.peer_certificates().and_then(|chain| chain.first()).map(|cert| cert.to_vec())
    }

    /// Writes bytes as they are; the error, if any, is the caller's to judge.
    pub fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        let stream = self.reader.get_mut();
        stream.write_all(bytes)?;
        stream.flush()
    }

    pub fn send(&mut self, req: &Req) {
        let bytes = req.to_bytes();
        self.write_raw(&bytes).unwrap_or_else(|e| panic!("cannot send {} {}: {e}", req.method, req.target));
    }

    pub fn roundtrip(&mut self, req: &Req) -> Response {
        self.send(req);
        self.response()
    }

    fn line(&mut self, what: &str) -> String {
        let mut line = Vec::new();
        match self.reader.by_ref().take(64 * 1024).read_until(b'\n', &mut line) {
            Ok(0) => panic!("connection closed while reading {what}"),
            Ok(_) => String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_owned(),
            Err(e) => panic!("cannot read {what}: {e} (after {:?})", String::from_utf8_lossy(&line)),
        }
    }

    /// Reads one status line and its headers (an interim `1xx` head too).
    pub fn head(&mut self) -> Head {
        let status_line = self.line("a status line");
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        assert!(version.starts_with("HTTP/1."), "not an HTTP status line: {status_line:?}");
        let status = parts.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let line = self.line("a header line");
            if line.is_empty() {
                return Head { status, headers };
            }
            let (name, value) = line.split_once(':').unwrap_or_else(|| panic!("bad header line {line:?}"));
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }

    /// Reads a whole final response, skipping interim (`1xx`) ones.
    pub fn response(&mut self) -> Response {
        let mut head = self.head();
        while (100..200).contains(&head.status) {
            head = self.head();
        }
        let body = self.body(&head);
        Response { status: head.status, headers: head.headers, body }
    }

    fn body(&mut self, head: &Head) -> Vec<u8> {
        if head.chunked() {
            let mut body = Vec::new();
            while let Some(chunk) = self.chunk() {
                body.extend_from_slice(&chunk);
            }
            return body;
        }
        if let Some(length) = head.header("content-length") {
            let length: usize = length.parse().unwrap_or_else(|_| panic!("bad Content-Length in {head:?}"));
            let mut body = vec![0; length];
            self.reader.read_exact(&mut body).unwrap_or_else(|e| panic!("cannot read a {length}-byte body: {e}"));
            return body;
        }
        if matches!(head.status, 204 | 304) {
            return Vec::new();
        }
        let mut body = Vec::new();
        self.reader.read_to_end(&mut body).unwrap_or_else(|e| panic!("cannot read a body up to EOF: {e}"));
        body
    }

    /// The next chunk of a chunked body; `None` after the last (trailers are skipped).
    fn chunk(&mut self) -> Option<Vec<u8>> {
        let size_line = self.line("a chunk size");
        let size_hex = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16).unwrap_or_else(|_| panic!("bad chunk size line {size_line:?}"));
        if size == 0 {
            while !self.line("a trailer").is_empty() {}
            return None;
        }
        let mut data = vec![0; size];
        self.reader.read_exact(&mut data).unwrap_or_else(|e| panic!("cannot read a {size}-byte chunk: {e}"));
        let end = self.line("the end of a chunk");
        assert!(end.is_empty(), "chunk not followed by CRLF but {end:?}");
        Some(data)
    }

    /// After a `text/event-stream` head: the events as they come.
    pub fn into_events(self, head: &Head) -> EventStream {
        assert!(head.content_type().starts_with("text/event-stream"), "not an event stream: {head:?}");
        EventStream { conn: self, chunked: head.chunked(), parser: SseParser::default(), ended: false }
    }
}

// ----- server-sent events -------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub id: Option<String>,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("event data is not JSON ({e}): {self:?}"))
    }
}

/// What an event stream carries: events, and comments (`: keepalive`).
#[derive(Debug, Clone, PartialEq)]
pub enum SseItem {
    Event(SseEvent),
    Comment(String),
}

/// Splits SSE text into items at blank lines; text after the last blank line waits for more.
#[derive(Default)]
struct SseParser {
    buffer: String,
    items: VecDeque<SseItem>,
}

impl SseParser {
    fn push(&mut self, text: &str) {
        self.buffer.push_str(&text.replace("\r\n", "\n"));
        while let Some(end) = self.buffer.find("\n\n") {
            let block: String = self.buffer.drain(..end + 2).collect();
            self.block(&block);
        }
    }

    fn block(&mut self, block: &str) {
        let (mut event, mut id, mut data, mut fields) = (None, None, Vec::new(), false);
        for line in block.lines().filter(|l| !l.is_empty()) {
            if let Some(comment) = line.strip_prefix(':') {
                self.items.push_back(SseItem::Comment(comment.strip_prefix(' ').unwrap_or(comment).to_owned()));
                continue;
            }
            fields = true;
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
            match name {
                "event" => event = Some(value),
                "id" => id = Some(value),
                "data" => data.push(value),
                _ => {}
            }
        }
        if fields {
            self.items.push_back(SseItem::Event(SseEvent { event, id, data: data.join("\n") }));
        }
    }
}

/// A streaming `text/event-stream` response, read incrementally.
pub struct EventStream {
    conn: Conn,
    chunked: bool,
    parser: SseParser,
    ended: bool,
}

impl EventStream {
    pub fn tcp(&self) -> &TcpStream {
        self.conn.stream()
    }

    /// Sends TLS's close_notify, as a polite client leaving does (see [`Conn::close_notify`]).
    pub fn close_notify(&mut self) {
        self.conn.close_notify();
    }

    /// The next item, or `None` once the stream has ended. Fails the test after `timeout`.
    pub fn next_item(&mut self, timeout: Duration) -> Option<SseItem> {
        self.item_within(timeout).unwrap_or_else(|()| panic!("no server-sent event within {timeout:?}"))
    }

    /// The next event (comments skipped), or `None` if the stream ends or nothing comes within `timeout`.
    pub fn next_within(&mut self, timeout: Duration) -> Option<SseEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.item_within(deadline.saturating_duration_since(Instant::now())) {
                Ok(Some(SseItem::Event(event))) => return Some(event),
                Ok(Some(SseItem::Comment(_))) => {}
                Ok(None) | Err(()) => return None,
            }
        }
    }

    /// The next item: `Ok(None)` once the stream has ended, `Err(())` if nothing arrives within `timeout`.
    fn item_within(&mut self, timeout: Duration) -> Result<Option<SseItem>, ()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(item) = self.parser.items.pop_front() {
                return Ok(Some(item));
            }
            if self.ended {
                return Ok(None);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(());
            }
            self.conn.stream().set_read_timeout(Some(left)).unwrap();
            let at_eof = match self.conn.reader.fill_buf() {
                Ok(buffered) => buffered.is_empty(),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => return Err(()),
                Err(e) => panic!("cannot read the event stream: {e}"),
            };
            let data = if self.chunked {
                assert!(!at_eof, "the event stream was cut off: connection closed without the final zero-length chunk");
                self.conn.chunk()
            } else {
                let data = self.conn.reader.buffer().to_vec();
                self.conn.reader.consume(data.len());
                (!at_eof).then_some(data)
            };
            match data {
                Some(data) => self.parser.push(&String::from_utf8_lossy(&data)),
                None => self.ended = true,
            }
        }
    }

    /// The next event (comments skipped). Fails the test if the stream ends or nothing comes in time.
    pub fn next_event(&mut self, timeout: Duration) -> SseEvent {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_item(left) {
                Some(SseItem::Event(event)) => return event,
                Some(SseItem::Comment(_)) => {}
                None => panic!("the event stream ended while an event was awaited"),
            }
        }
    }

    /// The next `message` event's JSON.
    pub fn next_message(&mut self, timeout: Duration) -> Value {
        let event = self.next_event(timeout);
        assert_eq!(event.event.as_deref(), Some("message"), "not a message event: {event:?}");
        event.json()
    }

    /// Waits for a `message` event whose JSON matches `matches`; the others are returned beside it.
    pub fn wait_message(&mut self, timeout: Duration, matches: impl Fn(&Value) -> bool) -> (Value, Vec<Value>) {
        let deadline = Instant::now() + timeout;
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!("no matching message within {timeout:?}; seen: {skipped:?}");
            }
            let message = self.next_message(left);
            if matches(&message) {
                return (message, skipped);
            }
            skipped.push(message);
        }
    }
}

fn tcp_to(addr: SocketAddr) -> TcpStream {
    TcpStream::connect_timeout(&addr, WAIT).unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"))
}

/// A TCP connection to `addr` from the local address `local` (std cannot bind before connecting).
pub fn connect_from(local: Ipv4Addr, addr: SocketAddr) -> io::Result<TcpStream> {
    let SocketAddr::V4(remote) = addr else { return Err(io::Error::other("IPv4 only")) };
    let sockaddr = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(ip).to_be() },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: a fresh socket, owned by the TcpStream from here on; bind and connect read the
    // sockaddr_in values, which outlive the calls.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        let (here, there) = (sockaddr(local, 0), sockaddr(*remote.ip(), remote.port()));
        if libc::bind(fd, (&here as *const libc::sockaddr_in).cast(), len) != 0
            || libc::connect(fd, (&there as *const libc::sockaddr_in).cast(), len) != 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(stream)
    }
}
