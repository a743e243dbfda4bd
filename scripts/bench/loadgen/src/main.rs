//! The benchmark's MCP client (driven by scripts/bench.sh). One subcommand per measurement; each prints
//! one line of `key=value` pairs on stdout (diagnostics go to stderr). Every wait is bounded: sockets
//! have read/write timeouts, loops have counts and deadlines.
//!
//!   stdio   [--n N] [--warmup W] [--tool T] [--args JSON] [--idle-ms MS] -- CMD ARGS...
//!           spawns CMD as a stdio MCP server, initializes, then N sequential tools/call;
//!           reports latency percentiles and the child's RSS idle (after tools/list + MS) and after.
//!   pipeline [--n N] [--warmup W] [--depth D] [--tool T] [--args JSON] -- CMD ARGS...
//!           the same child, but D requests in flight at all times: throughput (calls/s) of one
//!           pipelined stdio client, and latency percentiles under that load.
//!   http    --url URL [--transport mcp|sse] [--n N] [--warmup W] [--tool T] [--args JSON] [--args-file F]
//!           the same over Streamable HTTP (one keep-alive connection, one session) or legacy SSE;
//!           with --args-file, call i takes the arguments on line i (mod the number of lines) of F.
//!   load    --url URL [--clients C] [--secs S] [--tool T] [--args JSON]
//!           C threads, each its own session and keep-alive connection, calling in a loop for S s.
//!   hold    --url BASE [--kind sse|mcp] [--sessions N] [--hold-ms MS] [--pid P] [--tool T]
//!           opens N sessions and keeps their SSE streams open (legacy GET /sse, or Streamable GET /mcp),
//!           checks each with one tools/call, reports P's RSS while they are held and after they close.
//!   startup [--runs R] [--timeout-ms MS] -- CMD ARGS...   ("{port}" in ARGS is replaced)
//!           time from spawn to the first successful TCP connect on the port.
//!   sessions --url URL [--sessions N] --pid P [--tool T] [--args JSON] [--settle-ms MS] [--release-wait-ms MS]
//!           opens N Streamable HTTP sessions, then each makes one tools/call, all at once (for a server
//!           isolated per session, each call starts that session's instance): the time until every call
//!           is answered, each call's latency, and the memory of P and of P with all its descendants
//!           (RSS, PSS, process count) before, once answered, and after every session is deleted.
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const IO_TIMEOUT: Duration = Duration::from_secs(15);
const PROTOCOL: &str = "2025-06-18";

// ---------------------------------------------------------------------------------------------------
// arguments, statistics, /proc

struct Args {
    opts: HashMap<String, String>,
    cmd: Vec<String>,
}

impl Args {
    fn parse(raw: &[String]) -> Args {
        let mut opts = HashMap::new();
        let mut cmd = Vec::new();
        let mut i = 0;
        while i < raw.len() {
            if raw[i] == "--" {
                cmd = raw[i + 1..].to_vec();
                break;
            }
            let key = raw[i].trim_start_matches("--").to_string();
            let val = raw.get(i + 1).cloned().unwrap_or_default();
            opts.insert(key, val);
            i += 2;
        }
        Args { opts, cmd }
    }
    fn str(&self, k: &str, default: &str) -> String {
        self.opts.get(k).cloned().unwrap_or_else(|| default.to_string())
    }
    fn num(&self, k: &str, default: u64) -> u64 {
        self.opts.get(k).map(|v| v.parse().unwrap_or_else(|_| die(&format!("--{k}: not a number")))).unwrap_or(default)
    }
    fn call_args(&self) -> Value {
        serde_json::from_str(&self.str("args", r#"{"message":"hello"}"#)).unwrap_or_else(|e| die(&format!("--args: {e}")))
    }
    /// The arguments of each call in turn: the lines of --args-file (one JSON object each), else --args.
    fn call_args_list(&self) -> Vec<Value> {
        let Some(path) = self.opts.get("args-file") else { return vec![self.call_args()] };
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| die(&format!("--args-file {path}: {e}")));
        let list: Vec<Value> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| die(&format!("--args-file {path}: {e}"))))
            .collect();
        if list.is_empty() {
            die(&format!("--args-file {path}: no lines"));
        }
        list
    }
}

fn die(msg: &str) -> ! {
    eprintln!("loadgen: {msg}");
    std::process::exit(2)
}

/// p50, p99, mean and max in microseconds.
fn summary(mut ns: Vec<u64>) -> String {
    if ns.is_empty() {
        return "p50_us=- p99_us=- mean_us=- max_us=-".into();
    }
    ns.sort_unstable();
    let n = ns.len();
    let at = |q: usize| ns[((n * q) / 100).min(n - 1)] as f64 / 1000.0;
    let mean = ns.iter().sum::<u64>() as f64 / n as f64 / 1000.0;
    format!("p50_us={:.1} p99_us={:.1} mean_us={:.1} max_us={:.1}", at(50), at(99), mean, ns[n - 1] as f64 / 1000.0)
}

fn proc_status(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn rss_kib(pid: u32) -> String {
    proc_status(pid, "VmRSS:").map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

fn call_msg(id: u64, tool: &str, args: &Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": args}}).to_string()
}

fn init_msg(id: u64) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {
        "protocolVersion": PROTOCOL, "capabilities": {},
        "clientInfo": {"name": "bench-loadgen", "version": "0.0.0"}}})
    .to_string()
}

const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

/// A tools/call answer is good when it is a result that is not a tool error.
fn call_ok(v: &Value) -> bool {
    v.get("result").is_some_and(|r| r.get("isError") != Some(&Value::Bool(true)))
}

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

/// SIGTERM, then SIGKILL after 3 s: proxies with stdio backends get to stop their children.
fn stop(child: &mut Child) {
    unsafe { kill(child.id() as i32, 15) };
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

// ---------------------------------------------------------------------------------------------------
// stdio

/// A stdio MCP server spawned by the client: newline-delimited JSON-RPC on its stdin and stdout.
struct StdioPeer {
    child: Child,
    to: ChildStdin,
    from: BufReader<ChildStdout>,
    line: String,
}

impl StdioPeer {
    /// Spawns `cmd`; a watchdog kills it if the whole run takes longer than `budget`.
    fn spawn(cmd: &[String], budget: Duration) -> StdioPeer {
        if cmd.is_empty() {
            die("stdio: no command after --");
        }
        let mut child = Command::new(&cmd[0])
            .args(&cmd[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| die(&format!("spawn {}: {e}", cmd[0])));
        let pid = child.id();
        std::thread::spawn(move || {
            std::thread::sleep(budget);
            eprintln!("loadgen: stdio run over its time budget, killing the child");
            unsafe { kill(pid as i32, 9) };
        });
        let to = child.stdin.take().unwrap();
        let from = BufReader::new(child.stdout.take().unwrap());
        StdioPeer { child, to, from, line: String::new() }
    }

    fn send(&mut self, msg: &str) -> Option<()> {
        self.to.write_all(msg.as_bytes()).ok()?;
        self.to.write_all(b"\n").ok()?;
        self.to.flush().ok()
    }

    /// The next JSON line from the server; `None` when its stdout closes.
    fn recv(&mut self) -> Option<Value> {
        loop {
            self.line.clear();
            if self.from.read_line(&mut self.line).ok()? == 0 {
                return None;
            }
            if let Ok(v) = serde_json::from_str::<Value>(&self.line) {
                return Some(v);
            }
        }
    }

    /// Sends `msg` and waits for the response to `id` (messages in between are skipped).
    fn rpc(&mut self, msg: &str, id: u64) -> Option<Value> {
        self.send(msg)?;
        loop {
            let v = self.recv()?;
            if v.get("id").and_then(Value::as_u64) == Some(id) && v.get("method").is_none() {
                return Some(v);
            }
        }
    }

    /// `initialize`, `notifications/initialized` and `tools/list`; the number of tools listed.
    fn handshake(&mut self) -> usize {
        let Some(init) = self.rpc(&init_msg(0), 0) else { die("stdio: no answer to initialize") };
        if init.get("result").is_none() {
            die(&format!("stdio: initialize failed: {init}"));
        }
        self.send(INITIALIZED);
        let list = self.rpc(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#, 1);
        list.as_ref().and_then(|v| v.pointer("/result/tools")).and_then(Value::as_array).map_or(0, |t| t.len())
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Closes stdin (a proxy then stops its backends), waits up to 5 s, then stops the child.
    fn finish(self) {
        let StdioPeer { mut child, to, .. } = self;
        drop(to);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && !matches!(child.try_wait(), Ok(Some(_))) {
            std::thread::sleep(Duration::from_millis(10));
        }
        stop(&mut child);
    }
}

fn cmd_stdio(a: &Args) {
    let (n, warmup, tool, args) = (a.num("n", 1000), a.num("warmup", 100), a.str("tool", "echo"), a.call_args());
    let mut peer = StdioPeer::spawn(&a.cmd, Duration::from_secs(60 + (n + warmup) / 100));
    let t0 = Instant::now();
    let tools = peer.handshake();
    let init_ms = t0.elapsed().as_secs_f64() * 1000.0;
    std::thread::sleep(Duration::from_millis(a.num("idle-ms", 300)));
    let rss_idle = rss_kib(peer.pid());
    let mut lat = Vec::with_capacity(n as usize);
    let mut errors = 0u64;
    let mut start = Instant::now();
    for i in 0..warmup + n {
        if i == warmup {
            lat.clear();
            start = Instant::now();
        }
        let t = Instant::now();
        match peer.rpc(&call_msg(10 + i, &tool, &args), 10 + i) {
            Some(v) if call_ok(&v) => lat.push(t.elapsed().as_nanos() as u64),
            Some(v) => {
                errors += 1;
                if errors == 1 {
                    eprintln!("loadgen: call failed: {v}");
                }
            }
            None => {
                errors += 1;
                eprintln!("loadgen: the child closed its stdout");
                break;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let rss_after = rss_kib(peer.pid());
    peer.finish();
    println!(
        "calls={} errors={errors} {} calls_per_s={:.0} tools={tools} init_ms={init_ms:.1} rss_idle_kib={rss_idle} rss_after_kib={rss_after}",
        lat.len(),
        summary(lat.clone()),
        lat.len() as f64 / secs
    );
}

/// Pipelined stdio: `depth` tools/call in flight at all times (a new one sent as each answer arrives),
/// `warmup` then `n` calls; reports calls/s and the latency of each call under that load. Requests are
/// small, so `depth` of them fit in the pipe and writing never waits for reading.
fn cmd_pipeline(a: &Args) {
    let (n, warmup, depth, tool, args) =
        (a.num("n", 20000), a.num("warmup", 1000), a.num("depth", 32), a.str("tool", "echo"), a.call_args());
    let total = warmup + n;
    let mut peer = StdioPeer::spawn(&a.cmd, Duration::from_secs(60 + total / 1000));
    let tools = peer.handshake();
    let mut sent_at: HashMap<u64, Instant> = HashMap::new();
    let (mut next, mut answered, mut errors) = (0u64, 0u64, 0u64);
    let mut lat = Vec::with_capacity(n as usize);
    let mut start = Instant::now();
    while answered < total {
        while next < total && (sent_at.len() as u64) < depth {
            sent_at.insert(10 + next, Instant::now());
            if peer.send(&call_msg(10 + next, &tool, &args)).is_none() {
                die("pipeline: cannot write to the child");
            }
            next += 1;
        }
        let Some(v) = peer.recv() else {
            eprintln!("loadgen: the child closed its stdout with {} calls unanswered", total - answered);
            errors += total - answered;
            break;
        };
        let Some(t) = v.get("id").and_then(Value::as_u64).and_then(|id| sent_at.remove(&id)) else { continue };
        answered += 1;
        if call_ok(&v) {
            lat.push(t.elapsed().as_nanos() as u64);
        } else {
            errors += 1;
            if errors == 1 {
                eprintln!("loadgen: call failed: {v}");
            }
        }
        if answered == warmup {
            (lat, errors, start) = (Vec::with_capacity(n as usize), 0, Instant::now());
        }
    }
    let secs = start.elapsed().as_secs_f64();
    peer.finish();
    println!(
        "calls={} errors={errors} depth={depth} {} calls_per_s={:.0} tools={tools}",
        lat.len(),
        summary(lat.clone()),
        lat.len() as f64 / secs
    );
}

// ---------------------------------------------------------------------------------------------------
// HTTP/1.1 client: keep-alive, Content-Length / chunked / until-close bodies, SSE

#[derive(Clone)]
struct Url {
    addr: String, // host:port
    path: String,
}

fn parse_url(u: &str) -> Url {
    let rest = u.strip_prefix("http://").unwrap_or_else(|| die(&format!("not an http:// URL: {u}")));
    let (addr, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Url { addr: addr.to_string(), path: path.to_string() }
}

struct Head {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Head {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    fn is_sse(&self) -> bool {
        self.get("content-type").is_some_and(|c| c.starts_with("text/event-stream"))
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Framing {
    Length,
    Chunked,
    Close,
}

struct BodyState {
    framing: Framing,
    remaining: u64,
    in_chunk: bool,
    done: bool,
}

impl BodyState {
    fn of(head: &Head, head_request: bool) -> BodyState {
        let no_body = head_request || head.status == 204 || head.status == 304 || (100..200).contains(&head.status);
        let (framing, remaining) = if no_body {
            (Framing::Length, 0)
        } else if head.get("transfer-encoding").is_some_and(|t| t.to_ascii_lowercase().contains("chunked")) {
            (Framing::Chunked, 0)
        } else if let Some(l) = head.get("content-length") {
            (Framing::Length, l.trim().parse().unwrap_or(0))
        } else {
            (Framing::Close, 0)
        };
        BodyState { framing, remaining, in_chunk: false, done: framing == Framing::Length && remaining == 0 }
    }
}

fn read_line_crlf(r: &mut impl BufRead) -> io::Result<String> {
    let mut s = String::new();
    if r.read_line(&mut s)? == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"));
    }
    Ok(s.trim_end_matches(['\r', '\n']).to_string())
}

fn body_read(r: &mut BufReader<TcpStream>, st: &mut BodyState, buf: &mut [u8]) -> io::Result<usize> {
    if st.done || buf.is_empty() {
        return Ok(0);
    }
    match st.framing {
        Framing::Close => {
            let n = r.read(buf)?;
            if n == 0 {
                st.done = true;
            }
            Ok(n)
        }
        Framing::Length => {
            let want = buf.len().min(st.remaining as usize);
            let n = r.read(&mut buf[..want])?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "body cut short"));
            }
            st.remaining -= n as u64;
            st.done = st.remaining == 0;
            Ok(n)
        }
        Framing::Chunked => {
            if st.remaining == 0 {
                if st.in_chunk {
                    read_line_crlf(r)?; // the CRLF after a chunk's data
                }
                let size_line = read_line_crlf(r)?;
                let size = u64::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("bad chunk size {size_line:?}")))?;
                if size == 0 {
                    while !read_line_crlf(r)?.is_empty() {} // trailers
                    st.done = true;
                    return Ok(0);
                }
                st.remaining = size;
                st.in_chunk = true;
            }
            let want = buf.len().min(st.remaining as usize);
            let n = r.read(&mut buf[..want])?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "chunk cut short"));
            }
            st.remaining -= n as u64;
            Ok(n)
        }
    }
}

/// A response body borrowed from a connection.
struct Body<'a> {
    r: &'a mut BufReader<TcpStream>,
    st: BodyState,
}

impl Read for Body<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        body_read(self.r, &mut self.st, buf)
    }
}

/// A response body that owns its connection (a held SSE stream).
struct OwnedBody {
    r: BufReader<TcpStream>,
    st: BodyState,
}

impl Read for OwnedBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        body_read(&mut self.r, &mut self.st, buf)
    }
}

/// The next SSE event (event name, data) or None at the end of the stream.
fn next_event(r: &mut impl BufRead) -> io::Result<Option<(String, String)>> {
    let (mut event, mut data, mut any) = (String::new(), String::new(), false);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(if any { Some((event, data)) } else { None });
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            if any {
                return Ok(Some((event, data)));
            }
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.find(':') {
            Some(i) => (&line[..i], line[i + 1..].strip_prefix(' ').unwrap_or(&line[i + 1..])),
            None => (line, ""),
        };
        match field {
            "event" => {
                event = value.to_string();
                any = true;
            }
            "data" => {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(value);
                any = true;
            }
            _ => {}
        }
    }
}

fn connect(addr: &str) -> io::Result<BufReader<TcpStream>> {
    let s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(BufReader::with_capacity(64 * 1024, s))
}

fn write_request(
    r: &mut BufReader<TcpStream>,
    method: &str,
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<()> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        req.push_str(k);
        req.push_str(": ");
        req.push_str(v);
        req.push_str("\r\n");
    }
    if method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    let s = r.get_mut();
    s.write_all(&bytes)?;
    s.flush()
}

fn read_head(r: &mut BufReader<TcpStream>) -> io::Result<Head> {
    loop {
        let status_line = read_line_crlf(r)?;
        let mut parts = status_line.splitn(3, ' ');
        let _version = parts.next();
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("bad status line {status_line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let l = read_line_crlf(r)?;
            if l.is_empty() {
                break;
            }
            if let Some(i) = l.find(':') {
                headers.push((l[..i].trim().to_string(), l[i + 1..].trim().to_string()));
            }
        }
        if status == 100 {
            continue;
        }
        return Ok(Head { status, headers });
    }
}

fn other(msg: String) -> io::Error {
    io::Error::other(msg)
}

/// One MCP client session over Streamable HTTP on one keep-alive connection.
struct McpHttp {
    url: Url,
    conn: Option<BufReader<TcpStream>>,
    session: Option<String>,
    initialized: bool,
}

impl McpHttp {
    fn new(url: &Url) -> McpHttp {
        McpHttp { url: url.clone(), conn: None, session: None, initialized: false }
    }

    /// POSTs one message; returns the JSON-RPC response with `id` (None for a notification).
    fn post(&mut self, msg: &str, id: Option<u64>) -> io::Result<Option<Value>> {
        let reused = self.conn.is_some();
        match self.post_once(msg, id) {
            Err(e) if reused => {
                // The server may have closed an idle keep-alive connection: one retry on a new one.
                self.conn = None;
                let _ = e;
                self.post_once(msg, id)
            }
            r => r,
        }
    }

    fn post_once(&mut self, msg: &str, id: Option<u64>) -> io::Result<Option<Value>> {
        if self.conn.is_none() {
            self.conn = Some(connect(&self.url.addr)?);
        }
        let r = self.conn.as_mut().unwrap();
        let mut headers: Vec<(&str, &str)> = vec![("Content-Type", "application/json"), ("Accept", "application/json, text/event-stream")];
        let sid = self.session.clone();
        if let Some(s) = &sid {
            headers.push(("Mcp-Session-Id", s));
        }
        if self.initialized {
            headers.push(("MCP-Protocol-Version", PROTOCOL));
        }
        let res = (|| {
            write_request(r, "POST", &self.url.addr, &self.url.path, &headers, msg.as_bytes())?;
            let head = read_head(r)?;
            let close = head.get("connection").is_some_and(|c| c.eq_ignore_ascii_case("close"));
            let st = BodyState::of(&head, false);
            let keep = !close && st.framing != Framing::Close;
            let mut body = Body { r, st };
            let answer = if !(200..300).contains(&head.status) {
                let mut text = Vec::new();
                let _ = body.read_to_end(&mut text);
                return Err(other(format!(
                    "HTTP {}: {}",
                    head.status,
                    String::from_utf8_lossy(&text).chars().take(200).collect::<String>()
                )));
            } else if head.is_sse() {
                let mut found = None;
                {
                    let mut sse = BufReader::new(&mut body);
                    while let Some((_, data)) = next_event(&mut sse)? {
                        if let Ok(v) = serde_json::from_str::<Value>(&data) {
                            if id.is_some() && v.get("id").and_then(Value::as_u64) == id && v.get("method").is_none() {
                                found = Some(v);
                                break;
                            }
                        }
                    }
                    // the rest of the stream (normally just its end)
                    io::copy(&mut sse, &mut io::sink())?;
                }
                found
            } else {
                let mut text = Vec::new();
                body.read_to_end(&mut text)?;
                if text.iter().all(u8::is_ascii_whitespace) {
                    None
                } else {
                    Some(serde_json::from_slice::<Value>(&text).map_err(|e| other(format!("bad JSON: {e}")))?)
                }
            };
            Ok((answer, keep, head.get("mcp-session-id").map(str::to_string)))
        })();
        match res {
            Ok((answer, keep, new_sid)) => {
                if new_sid.is_some() {
                    self.session = new_sid;
                }
                if !keep {
                    self.conn = None;
                }
                if id.is_some() && answer.is_none() {
                    return Err(other("no answer in the response".into()));
                }
                Ok(answer)
            }
            Err(e) => {
                self.conn = None;
                Err(e)
            }
        }
    }

    /// Ends the session (`DELETE` with its `Mcp-Session-Id`); the status.
    fn delete(&mut self) -> io::Result<u16> {
        let sid = self.session.clone().ok_or_else(|| other("no session to delete".into()))?;
        if self.conn.is_none() {
            self.conn = Some(connect(&self.url.addr)?);
        }
        let Some(r) = self.conn.as_mut() else { return Err(other("no connection".into())) };
        let headers = [("Mcp-Session-Id", sid.as_str()), ("MCP-Protocol-Version", PROTOCOL)];
        let res = (|| {
            write_request(r, "DELETE", &self.url.addr, &self.url.path, &headers, b"")?;
            let head = read_head(r)?;
            let st = BodyState::of(&head, false);
            io::copy(&mut Body { r, st }, &mut io::sink())?;
            Ok(head.status)
        })();
        self.conn = None;
        res
    }

    fn initialize(&mut self) -> io::Result<()> {
        let v = self.post(&init_msg(0), Some(0))?.unwrap_or_default();
        if v.get("result").is_none() {
            return Err(other(format!("initialize failed: {v}")));
        }
        self.initialized = true;
        self.post(INITIALIZED, None)?;
        Ok(())
    }
}

/// One MCP client session over legacy HTTP+SSE: the GET stream, and POSTs on another connection.
struct LegacySse {
    stream: BufReader<OwnedBody>,
    post: Option<BufReader<TcpStream>>, // opened on first use; `hold` passes one around
    addr: String,
    endpoint: String,
}

impl LegacySse {
    fn open(url: &Url) -> io::Result<LegacySse> {
        let mut r = connect(&url.addr)?;
        write_request(&mut r, "GET", &url.addr, &url.path, &[("Accept", "text/event-stream")], b"")?;
        let head = read_head(&mut r)?;
        if head.status != 200 || !head.is_sse() {
            return Err(other(format!("GET {}: HTTP {}", url.path, head.status)));
        }
        let st = BodyState::of(&head, false);
        let mut stream = BufReader::new(OwnedBody { r, st });
        let endpoint = loop {
            match next_event(&mut stream)? {
                Some((ev, data)) if ev == "endpoint" => break data,
                Some(_) => continue,
                None => return Err(other("stream ended before the endpoint event".into())),
            }
        };
        let endpoint = match endpoint.strip_prefix("http://") {
            Some(rest) => rest.find('/').map(|i| rest[i..].to_string()).unwrap_or_else(|| "/".into()),
            None => endpoint,
        };
        Ok(LegacySse { stream, post: None, addr: url.addr.clone(), endpoint })
    }

    fn send(&mut self, msg: &str) -> io::Result<()> {
        let headers = [("Content-Type", "application/json")];
        if self.post.is_none() {
            self.post = Some(connect(&self.addr)?);
        }
        let post = self.post.as_mut().unwrap();
        let res = (|| {
            write_request(post, "POST", &self.addr, &self.endpoint, &headers, msg.as_bytes())?;
            let head = read_head(post)?;
            let st = BodyState::of(&head, false);
            let keep = st.framing != Framing::Close && !head.get("connection").is_some_and(|c| c.eq_ignore_ascii_case("close"));
            io::copy(&mut Body { r: post, st }, &mut io::sink())?;
            if !(200..300).contains(&head.status) {
                return Err(other(format!("POST {}: HTTP {}", self.endpoint, head.status)));
            }
            Ok(keep)
        })();
        match res {
            Ok(true) => Ok(()),
            Ok(false) => {
                self.post = None;
                Ok(())
            }
            Err(e) => {
                self.post = None;
                Err(e)
            }
        }
    }

    fn request(&mut self, msg: &str, id: u64) -> io::Result<Value> {
        self.send(msg)?;
        loop {
            match next_event(&mut self.stream)? {
                Some((_, data)) => {
                    if let Ok(v) = serde_json::from_str::<Value>(&data) {
                        if v.get("id").and_then(Value::as_u64) == Some(id) && v.get("method").is_none() {
                            return Ok(v);
                        }
                    }
                }
                None => return Err(other("SSE stream ended".into())),
            }
        }
    }

    fn initialize(&mut self) -> io::Result<()> {
        let v = self.request(&init_msg(0), 0)?;
        if v.get("result").is_none() {
            return Err(other(format!("initialize failed: {v}")));
        }
        self.send(INITIALIZED)
    }
}

enum Session {
    Mcp(McpHttp),
    Sse(LegacySse),
}

impl Session {
    fn open(url: &Url, transport: &str) -> io::Result<Session> {
        let mut s = match transport {
            "mcp" => Session::Mcp(McpHttp::new(url)),
            "sse" => Session::Sse(LegacySse::open(url)?),
            t => die(&format!("unknown transport {t}")),
        };
        match &mut s {
            Session::Mcp(m) => m.initialize()?,
            Session::Sse(l) => l.initialize()?,
        }
        Ok(s)
    }
    fn call(&mut self, id: u64, tool: &str, args: &Value) -> io::Result<Value> {
        let msg = call_msg(id, tool, args);
        match self {
            Session::Mcp(m) => m.post(&msg, Some(id)).map(Option::unwrap_or_default),
            Session::Sse(l) => l.request(&msg, id),
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// http, load, hold, startup

fn cmd_http(a: &Args) {
    let url = parse_url(&a.str("url", ""));
    let (n, warmup, tool, args) = (a.num("n", 1000), a.num("warmup", 100), a.str("tool", "echo"), a.call_args_list());
    let mut s = Session::open(&url, &a.str("transport", "mcp")).unwrap_or_else(|e| die(&format!("session: {e}")));
    let mut lat = Vec::with_capacity(n as usize);
    let mut errors = 0u64;
    let deadline = Instant::now() + Duration::from_secs(60 + (n + warmup) / 100);
    let mut start = Instant::now();
    for i in 0..warmup + n {
        if i == warmup {
            lat.clear();
            start = Instant::now();
        }
        if Instant::now() > deadline {
            eprintln!("loadgen: http run over its time budget");
            break;
        }
        let t = Instant::now();
        match s.call(10 + i, &tool, &args[i as usize % args.len()]) {
            Ok(v) if call_ok(&v) => lat.push(t.elapsed().as_nanos() as u64),
            Ok(v) => {
                errors += 1;
                if errors == 1 {
                    eprintln!("loadgen: call failed: {v}");
                }
            }
            Err(e) => {
                errors += 1;
                if errors <= 3 {
                    eprintln!("loadgen: call failed: {e}");
                }
                if errors > 100 {
                    break;
                }
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!("calls={} errors={errors} {} calls_per_s={:.0}", lat.len(), summary(lat.clone()), lat.len() as f64 / secs);
}

fn cmd_load(a: &Args) {
    let url = parse_url(&a.str("url", ""));
    let (clients, secs, tool, args) = (a.num("clients", 32), a.num("secs", 5), a.str("tool", "echo"), a.call_args());
    let transport = a.str("transport", "mcp");
    let barrier = Arc::new(Barrier::new(clients as usize + 1));
    let mut handles = Vec::new();
    for c in 0..clients {
        let (url, tool, args, barrier, transport) = (url.clone(), tool.clone(), args.clone(), barrier.clone(), transport.clone());
        handles.push(
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let mut session = Session::open(&url, &transport);
                    if let Err(e) = &session {
                        eprintln!("loadgen: client {c}: {e}");
                    }
                    barrier.wait();
                    let end = Instant::now() + Duration::from_secs(secs);
                    let (mut lat, mut errors, mut id) = (Vec::new(), 0u64, 10u64);
                    while Instant::now() < end && errors < 1000 {
                        let s = match &mut session {
                            Ok(s) => s,
                            Err(_) => {
                                errors += 1;
                                std::thread::sleep(Duration::from_millis(50));
                                session = Session::open(&url, &transport);
                                continue;
                            }
                        };
                        id += 1;
                        let t = Instant::now();
                        match s.call(id, &tool, &args) {
                            Ok(v) if call_ok(&v) => lat.push(t.elapsed().as_nanos() as u64),
                            Ok(_) => errors += 1,
                            Err(e) => {
                                errors += 1;
                                if errors <= 2 {
                                    eprintln!("loadgen: client {c}: {e}");
                                }
                                session = Session::open(&url, &transport);
                            }
                        }
                    }
                    (lat, errors)
                })
                .unwrap(),
        );
    }
    barrier.wait();
    let start = Instant::now();
    let (mut lat, mut errors) = (Vec::new(), 0u64);
    for h in handles {
        let (l, e) = h.join().unwrap();
        lat.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!("calls={} errors={errors} calls_per_s={:.0} {}", lat.len(), lat.len() as f64 / elapsed, summary(lat));
}

fn cmd_hold(a: &Args) {
    let url = parse_url(&a.str("url", ""));
    let kind = a.str("kind", "sse");
    let sessions = a.num("sessions", 1000);
    let pid = a.num("pid", 0) as u32;
    let tool = a.str("tool", "echo");
    let args = a.call_args();
    let rss_before = rss_kib(pid);
    let deadline = Instant::now() + Duration::from_secs(120);
    let t0 = Instant::now();
    let (mut held_sse, mut held_mcp) = (Vec::new(), Vec::new());
    let mut errors = 0u64;
    let mut first_error = String::new();
    let mut note = |e: io::Error, errors: &mut u64| {
        *errors += 1;
        if first_error.is_empty() {
            first_error = e.to_string();
        }
    };
    // The POSTs of all sessions share one keep-alive connection, so the proxy holds one connection per
    // session (its stream) plus one.
    let mut shared: Option<BufReader<TcpStream>> = None;
    for _ in 0..sessions {
        if Instant::now() > deadline {
            break;
        }
        match kind.as_str() {
            "sse" => match LegacySse::open(&url).and_then(|mut s| {
                s.post = shared.take();
                let r = s.initialize();
                shared = s.post.take();
                r.map(|_| s)
            }) {
                Ok(s) => held_sse.push(s),
                Err(e) => note(e, &mut errors),
            },
            "mcp" => {
                // initialize a session, then open its GET stream and keep it (headers read, body unread)
                let mut m = McpHttp::new(&url);
                m.conn = shared.take();
                let init = m.initialize();
                shared = m.conn.take();
                let opened = init.and_then(|_| {
                    let mut r = connect(&url.addr)?;
                    let sid = m.session.clone().ok_or_else(|| other("no Mcp-Session-Id".into()))?;
                    write_request(
                        &mut r,
                        "GET",
                        &url.addr,
                        &url.path,
                        &[("Accept", "text/event-stream"), ("Mcp-Session-Id", &sid), ("MCP-Protocol-Version", PROTOCOL)],
                        b"",
                    )?;
                    let head = read_head(&mut r)?;
                    if head.status != 200 {
                        return Err(other(format!("GET stream: HTTP {}", head.status)));
                    }
                    Ok(r)
                });
                match opened {
                    Ok(r) => held_mcp.push((m, r)),
                    Err(e) => note(e, &mut errors),
                }
            }
            k => die(&format!("unknown kind {k}")),
        }
    }
    let open_s = t0.elapsed().as_secs_f64();
    let held = held_sse.len() + held_mcp.len();
    std::thread::sleep(Duration::from_millis(500));
    let rss_held = rss_kib(pid);
    let threads_held = proc_status(pid, "Threads:").map(|v| v.to_string()).unwrap_or_else(|| "-".into());
    // one tools/call per held session: each answer must come back on its own session
    let (mut calls_ok, mut call_errors) = (0u64, 0u64);
    for (i, s) in held_sse.iter_mut().enumerate() {
        if Instant::now() > deadline {
            break;
        }
        s.post = shared.take();
        match s.request(&call_msg(100 + i as u64, &tool, &args), 100 + i as u64) {
            Ok(v) if call_ok(&v) => calls_ok += 1,
            _ => call_errors += 1,
        }
        shared = s.post.take();
    }
    for (i, (m, _)) in held_mcp.iter_mut().enumerate() {
        if Instant::now() > deadline {
            break;
        }
        m.conn = shared.take();
        match m.post(&call_msg(100 + i as u64, &tool, &args), Some(100 + i as u64)) {
            Ok(Some(v)) if call_ok(&v) => calls_ok += 1,
            _ => call_errors += 1,
        }
        shared = m.conn.take();
    }
    let rss_calls = rss_kib(pid);
    std::thread::sleep(Duration::from_millis(a.num("hold-ms", 1000)));
    let hwm = proc_status(pid, "VmHWM:").map(|v| v.to_string()).unwrap_or_else(|| "-".into());
    drop(held_sse);
    drop(held_mcp);
    drop(shared);
    // A proxy may notice a silent client only when its next keep-alive write fails.
    std::thread::sleep(Duration::from_millis(a.num("release-wait-ms", 1500)));
    let rss_released = rss_kib(pid);
    let threads_released = proc_status(pid, "Threads:").map(|v| v.to_string()).unwrap_or_else(|| "-".into());
    if !first_error.is_empty() {
        eprintln!("loadgen: first error: {first_error}");
    }
    println!(
        "held={held} errors={errors} open_s={open_s:.2} calls_ok={calls_ok} call_errors={call_errors} rss_before_kib={rss_before} \
         rss_held_kib={rss_held} rss_after_calls_kib={rss_calls} hwm_kib={hwm} threads_held={threads_held} rss_released_kib={rss_released} threads_released={threads_released}"
    );
}

fn cmd_startup(a: &Args) {
    if a.cmd.is_empty() {
        die("startup: no command after --");
    }
    let runs = a.num("runs", 5);
    let timeout = Duration::from_millis(a.num("timeout-ms", 10_000));
    let mut times = Vec::new();
    let mut failures = 0;
    for _ in 0..runs {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0);
        let addr = format!("127.0.0.1:{port}");
        let argv: Vec<String> = a.cmd.iter().map(|s| s.replace("{port}", &port.to_string())).collect();
        let t0 = Instant::now();
        let mut child =
            match Command::new(&argv[0]).args(&argv[1..]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn() {
                Ok(c) => c,
                Err(e) => die(&format!("spawn {}: {e}", argv[0])),
            };
        let mut ok = false;
        while t0.elapsed() < timeout {
            if TcpStream::connect(&addr).is_ok() {
                ok = true;
                break;
            }
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        let elapsed = t0.elapsed();
        stop(&mut child);
        if ok {
            times.push(elapsed.as_nanos() as u64);
        } else {
            failures += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    times.sort_unstable();
    let ms = |ns: u64| ns as f64 / 1e6;
    if times.is_empty() {
        println!("runs={runs} failures={failures} median_ms=- min_ms=- max_ms=-");
    } else {
        println!(
            "runs={runs} failures={failures} median_ms={:.2} min_ms={:.2} max_ms={:.2}",
            ms(times[times.len() / 2]),
            ms(times[0]),
            ms(times[times.len() - 1])
        );
    }
}

/// `pid` and its live descendants (children, theirs, ...), from `/proc/*/stat`.
fn process_tree(pid: u32) -> Vec<u32> {
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else { continue };
        // "pid (comm) S ppid ...": comm may hold spaces and parentheses.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else { continue };
        let mut fields = rest.split_whitespace();
        let (state, ppid) = (fields.next(), fields.next().and_then(|f| f.parse::<u32>().ok()));
        if let (Some(state), Some(ppid)) = (state, ppid) {
            if state != "Z" {
                parents.push((p, ppid));
            }
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(parents.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
        i += 1;
    }
    tree
}

/// A `Key:   123 kB` line of a /proc file, in KiB.
fn proc_kib(path: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find(|l| l.starts_with(key))?.split_whitespace().nth(1)?.parse().ok()
}

/// `<prefix>_rss_kib` (P alone), `<prefix>_tree_rss_kib` and `<prefix>_tree_pss_kib` (P and every
/// descendant, summed: RSS counts shared pages once per process, PSS shares them out), and
/// `<prefix>_children` (descendants).
fn memory(pid: u32, prefix: &str) -> String {
    let tree = process_tree(pid);
    let rss: u64 = tree.iter().filter_map(|p| proc_kib(&format!("/proc/{p}/status"), "VmRSS:")).sum();
    let pss: u64 = tree.iter().filter_map(|p| proc_kib(&format!("/proc/{p}/smaps_rollup"), "Pss:")).sum();
    format!(
        "{prefix}_rss_kib={} {prefix}_tree_rss_kib={rss} {prefix}_tree_pss_kib={pss} {prefix}_children={}",
        rss_kib(pid),
        tree.len() - 1
    )
}

/// How long `sessions` waits for a first call's answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

fn cmd_sessions(a: &Args) {
    let url = parse_url(&a.str("url", ""));
    let (n, pid, tool, args) = (a.num("sessions", 100) as usize, a.num("pid", 0) as u32, a.str("tool", "echo"), a.call_args());
    if pid == 0 {
        die("sessions: --pid is required");
    }
    let before = memory(pid, "before");
    let t0 = Instant::now();
    let mut sessions = Vec::with_capacity(n);
    let mut open_errors = 0u64;
    for i in 0..n {
        let mut session = McpHttp::new(&url);
        match session.initialize() {
            Ok(()) => {
                // A first call waits for its instance to start, which may take long on a busy machine:
                // a longer read timeout, and no retry (a retry would reuse the id still in flight).
                if let Some(conn) = &session.conn {
                    let _ = conn.get_ref().set_read_timeout(Some(CALL_TIMEOUT));
                }
                sessions.push(session)
            }
            Err(e) => {
                open_errors += 1;
                if open_errors <= 3 {
                    eprintln!("loadgen: session {i}: {e}");
                }
            }
        }
    }
    let open_s = t0.elapsed().as_secs_f64();

    let barrier = Arc::new(Barrier::new(sessions.len() + 1));
    let mut handles = Vec::with_capacity(sessions.len());
    for (i, mut session) in sessions.into_iter().enumerate() {
        let (tool, args, barrier) = (tool.clone(), args.clone(), barrier.clone());
        let spawned = std::thread::Builder::new().stack_size(256 * 1024).spawn(move || {
            barrier.wait();
            let t = Instant::now();
            let answer = session.post_once(&call_msg(1, &tool, &args), Some(1));
            let ok = match &answer {
                Ok(Some(v)) if call_ok(v) => true,
                Ok(v) => {
                    eprintln!("loadgen: session {i}: call failed: {}", v.clone().unwrap_or_default());
                    false
                }
                Err(e) => {
                    eprintln!("loadgen: session {i}: call failed: {e}");
                    false
                }
            };
            (session, ok, t.elapsed().as_nanos() as u64, Instant::now())
        });
        match spawned {
            Ok(handle) => handles.push(handle),
            Err(e) => die(&format!("cannot start a client thread: {e}")),
        }
    }
    barrier.wait();
    let released = Instant::now();
    let (mut lat, mut errors, mut last) = (Vec::new(), 0u64, released);
    let mut sessions = Vec::with_capacity(handles.len());
    for handle in handles {
        match handle.join() {
            Ok((session, ok, took, done)) => {
                if ok {
                    lat.push(took);
                } else {
                    errors += 1;
                }
                last = last.max(done);
                sessions.push(session);
            }
            Err(_) => errors += 1,
        }
    }
    let all_ms = last.duration_since(released).as_secs_f64() * 1000.0;
    std::thread::sleep(Duration::from_millis(a.num("settle-ms", 500)));
    let after = memory(pid, "after");

    let mut delete_errors = 0u64;
    for session in &mut sessions {
        if !matches!(session.delete(), Ok(status) if (200..300).contains(&status)) {
            delete_errors += 1;
        }
    }
    std::thread::sleep(Duration::from_millis(a.num("release-wait-ms", 2000)));
    let deleted = memory(pid, "deleted");
    println!(
        "sessions={} open_errors={open_errors} open_s={open_s:.2} calls_ok={} errors={errors} all_answered_ms={all_ms:.0} {} \
         {before} {after} delete_errors={delete_errors} {deleted}",
        sessions.len(),
        lat.len(),
        summary(lat.clone())
    );
}

fn main() {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let Some(sub) = raw.first() else { die("usage: loadgen stdio|pipeline|http|load|hold|startup|sessions [options] [-- CMD...]") };
    let a = Args::parse(&raw[1..]);
    match sub.as_str() {
        "stdio" => cmd_stdio(&a),
        "pipeline" => cmd_pipeline(&a),
        "http" => cmd_http(&a),
        "load" => cmd_load(&a),
        "hold" => cmd_hold(&a),
        "startup" => cmd_startup(&a),
        "sessions" => cmd_sessions(&a),
        s => die(&format!("unknown subcommand {s}")),
    }
}
