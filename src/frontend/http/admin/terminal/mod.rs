//! The web terminal: real PTYs running the user's shell, driven from the admin page.
//!
//! Off unless both `ENABLE_ADMIN_UI` and `ENABLE_WEB_TERMINAL` are set, and compiled out entirely without
//! the `web-terminal` cargo feature. Output goes to the browser over SSE (the same machinery as every
//! other stream here, so no WebSocket dependency), input and resizes come as POSTs. Each shell is a
//! session leader (`setsid`) with the PTY as its controlling terminal, so killing its process group ends
//! everything it started. Recent output is kept so a reloaded page sees what it missed; terminals idle
//! for too long are killed, and all of them when the proxy exits.
//!
//! The page uses xterm.js 6.0.0 (MIT, `XTERM-LICENSE` beside this file), embedded gzip-compressed.

mod pty;

use crate::http::{Exchange, Request, Response};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PAGE_HTML: &str = include_str!("terminal.html");
const PAGE_JS: &str = include_str!("terminal.js");
const XTERM_JS_GZ: &[u8] = include_bytes!("xterm.mjs.gz");
const FIT_JS: &str = include_str!("addon-fit.mjs");
const XTERM_CSS: &str = include_str!("xterm.css");

/// Output kept for a page that (re)attaches.
const REPLAY_BYTES: usize = 256 * 1024;
const STREAM_QUEUE: usize = 4096;

/// Every terminal of the process, so that exit can kill them all.
static ALL: OnceLock<Arc<Terminals>> = OnceLock::new();

pub struct Terminals {
    live: Mutex<HashMap<String, Arc<Terminal>>>,
    shell: String,
    cwd: PathBuf,
    idle_timeout: Duration,
}

struct Terminal {
    id: String,
    pid: i32,
    master: std::fs::File,
    state: Mutex<Output>,
    last_activity: Mutex<Instant>,
}

struct Output {
    replay: VecDeque<u8>,
    subscribers: Vec<crossbeam_channel::Sender<Chunk>>,
    exited: Option<Value>,
}

enum Chunk {
    Output(String),
    Exit(Value),
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Terminals {
    /// Creates the registry and its reaper thread; `shell` runs in `cwd`.
    pub fn start(shell: String, cwd: PathBuf, idle_timeout: Duration) -> Arc<Terminals> {
        let terminals = Arc::new(Terminals { live: Mutex::default(), shell, cwd, idle_timeout });
        let _ = ALL.set(terminals.clone());
        let reaper = terminals.clone();
        let check_every = (idle_timeout / 10).clamp(Duration::from_millis(200), Duration::from_secs(60));
        let _ = std::thread::Builder::new().name("terminal-reaper".into()).spawn(move || loop {
            std::thread::sleep(check_every);
            reaper.reap_idle();
        });
        terminals
    }

    /// Kills every terminal's process group: called when the proxy exits.
    pub fn kill_all() {
        if let Some(all) = ALL.get() {
            for terminal in locked(&all.live).drain().map(|(_, t)| t) {
                pty::kill_session(terminal.pid);
            }
        }
    }

    /// Serves `/admin/terminal...`; the caller has checked the session and CSRF token.
    pub fn handle(self: &Arc<Self>, req: &Request, ex: &mut Exchange) {
        let rest = req.path.trim_start_matches("/admin/terminal");
        let response = match (req.method.as_str(), rest) {
            ("GET", ".html") => Response::new(200, "text/html; charset=utf-8", PAGE_HTML),
            ("GET", "/terminal.js") => Response::new(200, "text/javascript; charset=utf-8", PAGE_JS),
            ("GET", "/xterm.mjs") => Response::new(200, "text/javascript; charset=utf-8", XTERM_JS_GZ)
                .with_header("Content-Encoding", "gzip")
                .with_header("Cache-Control", "max-age=86400"),
            ("GET", "/addon-fit.mjs") => Response::new(200, "text/javascript; charset=utf-8", FIT_JS),
            ("GET", "/xterm.css") => Response::new(200, "text/css; charset=utf-8", XTERM_CSS),
            ("POST", "/start") => self.open(req),
            ("GET", "/list") => self.list(),
            (method, path) => match path.trim_start_matches('/').split_once('/') {
                Some((id, "output")) if method == "GET" => return self.stream(id, ex),
                Some((id, "input")) if method == "POST" => self.with(id, |t| t.input(req)),
                Some((id, "resize")) if method == "POST" => self.with(id, |t| t.resize(req)),
                None if method == "DELETE" => self.kill(path.trim_start_matches('/')),
                _ => Response::error(404, &format!("no such terminal endpoint: {method} {}", req.path)),
            },
        };
        ex.respond(response);
    }

    fn open(self: &Arc<Self>, req: &Request) -> Response {
        let size = serde_json::from_slice::<Value>(&req.body).ok();
        let dim = |k: &str, default: u16| size.as_ref().and_then(|v| v.get(k)?.as_u64()).map_or(default, |n| n.clamp(2, 1000) as u16);
        let (cols, rows) = (dim("cols", 80), dim("rows", 30));
        let id = match crate::random::token_hex(16) {
            Ok(id) => id,
            Err(e) => return Response::error(500, &format!("cannot make a terminal id: {e}")),
        };
        let (master, pid) = match pty::spawn_shell(&self.shell, &self.cwd, cols, rows) {
            Ok(spawned) => spawned,
            Err(e) => {
                log::error!("terminal: cannot start {}: {e}", self.shell);
                return Response::error(500, "Failed to start terminal session.");
            }
        };
        let reader = match master.try_clone() {
            Ok(reader) => reader,
            Err(e) => {
                pty::kill_session(pid);
                return Response::error(500, &format!("Failed to start terminal session: {e}"));
            }
        };
        let terminal = Arc::new(Terminal {
            id: id.clone(),
            pid,
            master,
            state: Mutex::new(Output { replay: VecDeque::new(), subscribers: Vec::new(), exited: None }),
            last_activity: Mutex::new(Instant::now()),
        });
        locked(&self.live).insert(id.clone(), terminal.clone());
        log::info!("terminal {} started: {} (pid {pid})", &id[..8], self.shell);
        // The shell is reaped as soon as it exits, and whatever it left running is killed then, so
        // a background job cannot keep the terminal (and its PTY) alive after its shell is gone.
        let (exited, exit) = crossbeam_channel::bounded(1);
        let _ = std::thread::Builder::new().name("terminal-wait".into()).spawn(move || {
            let code = pty::reap(pid);
            pty::kill_session(pid);
            let _ = exited.send(code);
        });
        let registry = self.clone();
        let _ = std::thread::Builder::new().name("terminal".into()).spawn(move || {
            terminal.pump(reader, &exit);
            locked(&registry.live).remove(&terminal.id);
        });
        Response::json(200, &json!({ "termId": id }))
    }

    fn list(&self) -> Response {
        let terminals: Vec<Value> = locked(&self.live)
            .values()
            .map(|t| {
                let idle = locked(&t.last_activity).elapsed();
                let last = SystemTime::now().checked_sub(idle).unwrap_or(UNIX_EPOCH);
                let last_ms = last.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
                json!({ "id": t.id, "pid": t.pid, "lastActivity": last_ms, "bufferSize": locked(&t.state).replay.len() })
            })
            .collect();
        Response::json(200, &json!({ "terminals": terminals }))
    }

    fn find(&self, id: &str) -> Option<Arc<Terminal>> {
        locked(&self.live).get(id).cloned()
    }

    fn with(&self, id: &str, action: impl FnOnce(&Terminal) -> Response) -> Response {
        match self.find(id) {
            Some(terminal) => action(&terminal),
            None => Response::error(404, &format!("Terminal session not found: {id}")),
        }
    }

    fn kill(&self, id: &str) -> Response {
        match locked(&self.live).remove(id) {
            Some(terminal) => {
                pty::kill_session(terminal.pid);
                log::info!("terminal {} killed", &id[..id.len().min(8)]);
                Response::json(200, &json!({ "message": format!("Terminal session {id} killed.") }))
            }
            None => Response::error(404, &format!("Terminal session not found: {id}")),
        }
    }

    fn reap_idle(&self) {
        let idle: Vec<String> =
            locked(&self.live).values().filter(|t| locked(&t.last_activity).elapsed() >= self.idle_timeout).map(|t| t.id.clone()).collect();
        for id in idle {
            log::info!("terminal {} idle for {:?}; killing it", &id[..8], self.idle_timeout);
            self.kill(&id);
        }
    }

    /// Streams a terminal's output: what it printed recently, then everything new, then its exit.
    fn stream(&self, id: &str, ex: &mut Exchange) {
        let Some(terminal) = self.find(id) else {
            return ex.respond(Response::error(404, &format!("Terminal session not found: {id}")));
        };
        let (tx, rx) = crossbeam_channel::bounded(STREAM_QUEUE);
        let (replay, exited) = {
            let mut state = locked(&terminal.state);
            state.subscribers.push(tx);
            (String::from_utf8_lossy(&state.replay.iter().copied().collect::<Vec<u8>>()).into_owned(), state.exited.clone())
        };
        let Ok(mut stream) = ex.stream(&[]) else { return };
        let connected = json!({ "message": format!("Connected to terminal {id} output") }).to_string();
        let mut sent = stream.event(Some("connected"), None, &connected);
        if sent.is_ok() && !replay.is_empty() {
            sent = stream.event(Some("output"), None, &Value::String(replay).to_string());
        }
        if let (Ok(()), Some(exit)) = (&sent, exited) {
            let _ = stream.event(Some("exit"), None, &exit.to_string());
            return ex.finish_stream(stream);
        }
        while sent.is_ok() {
            sent = match rx.recv_timeout(Duration::from_secs(15)) {
                Ok(Chunk::Output(text)) => stream.event(Some("output"), None, &Value::String(text).to_string()),
                Ok(Chunk::Exit(exit)) => {
                    let _ = stream.event(Some("exit"), None, &exit.to_string());
                    return ex.finish_stream(stream);
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => stream.comment("keepalive"),
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
            };
        }
    }
}

impl Terminal {
    /// Reads the PTY until the shell is gone, keeping recent output and passing it on.
    fn pump(&self, mut reader: std::fs::File, exit: &crossbeam_channel::Receiver<Option<i32>>) {
        let mut buf = [0u8; 8192];
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) | Err(_) => break, // EIO once the last process holding the PTY is gone.
                Ok(n) => n,
            };
            *locked(&self.last_activity) = Instant::now();
            pending.extend_from_slice(&buf[..n]);
            // Send whole UTF-8 characters only; a split one waits for its other bytes.
            let complete = match std::str::from_utf8(&pending) {
                Ok(_) => pending.len(),
                Err(e) if e.error_len().is_none() => e.valid_up_to(),
                Err(_) => pending.len(),
            };
            let text = String::from_utf8_lossy(&pending[..complete]).into_owned();
            pending.drain(..complete);
            self.publish(&buf[..n], &text);
        }
        let code = exit.recv_timeout(Duration::from_secs(5)).ok().flatten();
        let exit = json!({ "exitCode": code, "signal": Value::Null });
        log::info!("terminal {} exited: {exit}", &self.id[..8]);
        let mut state = locked(&self.state);
        state.exited = Some(exit.clone());
        for subscriber in state.subscribers.drain(..) {
            let _ = subscriber.try_send(Chunk::Exit(exit.clone()));
        }
    }

    fn publish(&self, raw: &[u8], text: &str) {
        let mut state = locked(&self.state);
        state.replay.extend(raw);
        let excess = state.replay.len().saturating_sub(REPLAY_BYTES);
        state.replay.drain(..excess);
        // A page that does not read its stream is dropped; it can reattach and get the replay.
        state.subscribers.retain(|s| s.try_send(Chunk::Output(text.to_owned())).is_ok());
    }

    fn input(&self, req: &Request) -> Response {
        let Some(input) = serde_json::from_slice::<Value>(&req.body).ok().and_then(|v| v.get("input")?.as_str().map(str::to_owned)) else {
            return Response::error(400, "expected {\"input\": \"...\"}");
        };
        *locked(&self.last_activity) = Instant::now();
        match (&self.master).write_all(input.as_bytes()) {
            Ok(()) => Response::empty(200),
            Err(e) => Response::error(410, &format!("the terminal is gone: {e}")),
        }
    }

    fn resize(&self, req: &Request) -> Response {
        let body = serde_json::from_slice::<Value>(&req.body).unwrap_or_default();
        let dim = |k: &str| body.get(k).and_then(Value::as_u64).filter(|n| (1..=1000).contains(n)).map(|n| n as u16);
        let (Some(cols), Some(rows)) = (dim("cols"), dim("rows")) else {
            return Response::error(400, "expected {\"cols\": n, \"rows\": n} with numbers from 1 to 1000");
        };
        match pty::resize(&self.master, cols, rows) {
            Ok(()) => Response::empty(200),
            Err(e) => Response::error(500, &format!("resize failed: {e}")),
        }
    }
}
