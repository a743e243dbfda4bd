//! The admin UI and its API under `/admin/` (docs/admin-api.md): login, config editing with validation
//! and atomic saves, live reload, status, tools, logs and installs with live output.
//!
//! The pages are three files embedded in the binary. Everything the API changes goes through the same
//! paths as a hand edit: files are validated as the watcher would, written atomically, and applied by a
//! reload, so clients keep their sessions.

#[cfg(feature = "oauth")]
mod authorize;
mod install;
mod secrets;
mod session;
#[cfg(feature = "web-terminal")]
pub mod terminal;

use super::rpc_error;
use crate::config;
use crate::config_watch::{self, Watch};
use crate::event::Event;
use crate::http::{EventStream, Exchange, Request, Response};
use crate::settings::{self, AdminSettings};
use crate::tool_config;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

const DISPATCHER_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Admin {
    settings: AdminSettings,
    sessions: session::Sessions,
    updates: Updates,
    watch: Watch,
    separator: String,
    events: Sender<Event>,
    keepalive: Duration,
    /// Servers with an install running.
    installing: Arc<Mutex<HashSet<String>>>,
    /// The admin page is served over HTTPS (the way back from an OAuth login is then https too).
    #[cfg_attr(not(feature = "oauth"), allow(dead_code))]
    https: bool,
    #[cfg(feature = "oauth")]
    authorizations: authorize::Authorizations,
    #[cfg(feature = "web-terminal")]
    terminals: Option<Arc<terminal::Terminals>>,
}

impl Admin {
    pub fn new(settings: AdminSettings, watch: Watch, separator: String, events: Sender<Event>, keepalive: Duration, https: bool) -> Admin {
        #[cfg(feature = "web-terminal")]
        let terminals = settings.terminal.clone().map(|t| terminal::Terminals::start(t.shell, t.cwd, t.idle_timeout));
        #[cfg(not(feature = "web-terminal"))]
        if settings.terminal.is_some() {
            log::warn!("ENABLE_WEB_TERMINAL is set, but this build has no web terminal (cargo feature web-terminal)");
        }
        Admin {
            #[cfg(feature = "web-terminal")]
            terminals,
            settings,
            sessions: session::Sessions::default(),
            updates: Updates::default(),
            watch,
            separator,
            events,
            keepalive,
            installing: Arc::default(),
            https,
            #[cfg(feature = "oauth")]
            authorizations: authorize::Authorizations::default(),
        }
    }

    pub fn handle(&self, req: &Request, ex: &mut Exchange) {
        let path = req.path.as_str();
        let method = req.method.as_str();
        match (method, path) {
            ("GET", "/admin" | "/admin/" | "/admin/index.html") => return ex.respond(asset("text/html; charset=utf-8", INDEX_HTML)),
            ("GET", "/admin/app.js") => return ex.respond(asset("text/javascript; charset=utf-8", APP_JS)),
            ("GET", "/admin/style.css") => return ex.respond(asset("text/css; charset=utf-8", STYLE_CSS)),
            ("POST", "/admin/login") => return ex.respond(self.login(req)),
            // Back from an OAuth login: no admin cookie comes with it (SameSite=Strict); its state is the key.
            #[cfg(feature = "oauth")]
            ("GET", "/admin/oauth/callback") => {
                return ex.respond(self.authorizations.callback(req, &self.watch.config_path, &self.events))
            }
            _ => {}
        }
        let Some(session) = self.sessions.find(req) else {
            if method == "GET" && path == "/admin/terminal.html" {
                return ex.respond(Response::empty(302).with_header("Location", "/admin/"));
            }
            return ex.respond(Response::error(401, "Unauthorized"));
        };
        let changes_state = matches!(method, "POST" | "DELETE" | "PUT");
        if changes_state && !session::csrf_ok(req, &session) {
            return ex.respond(Response::error(403, "Invalid CSRF token"));
        }
        if (method, path) == ("GET", "/admin/sse/updates") {
            return self.stream_updates(ex);
        }
        if path.starts_with("/admin/terminal") {
            return self.terminal(req, ex);
        }
        let response = match (method, path) {
            ("POST", "/admin/logout") => {
                self.sessions.logout(req);
                Response::json(200, &json!({ "success": true }))
                    .with_header("Set-Cookie", &session::cookie(None, self.settings.cookie_secure))
            }
            ("GET", "/admin/session") => Response::json(200, &json!({ "user": session.user, "csrfToken": session.csrf })),
            ("GET", "/admin/config") => read_config(&self.watch.config_path),
            ("POST", "/admin/config") => self.save_config(req),
            ("GET", "/admin/tools/config") => read_file(&self.watch.tool_config_path, Some("{\"tools\":{}}")),
            ("POST", "/admin/tools/config") => self.save_tool_config(req),
            ("POST", "/admin/server/reload") => self.reload(),
            ("GET", "/admin/environment") => Response::json(200, &self.environment()),
            ("GET", "/admin/status") => self.ask(|reply| Event::Health { detailed: true, reply }),
            ("GET", "/admin/tools/list") => self.tools_list(),
            ("GET", "/admin/logs") => Response::json(200, &json!({ "lines": crate::logging::recent() })),
            ("POST", p) if p.starts_with("/admin/server/install/") => self.install(&p["/admin/server/install/".len()..]),
            #[cfg(feature = "oauth")]
            ("POST", p) if p.starts_with("/admin/server/authorize/") => {
                self.authorizations.start(req, &p["/admin/server/authorize/".len()..], &self.watch.config_path, self.https)
            }
            _ => Response::error(404, &format!("no such admin endpoint: {method} {path}")),
        };
        ex.respond(response);
    }

    fn login(&self, req: &Request) -> Response {
        let Some((user, password)) = credentials(req) else {
            return Response::json(400, &json!({ "success": false, "error": "username and password are required" }));
        };
        match self.sessions.login(&self.settings, &user, &password, req.peer) {
            Ok((id, session)) => {
                log::info!("admin {user:?} logged in");
                Response::json(200, &json!({ "success": true, "csrfToken": session.csrf }))
                    .with_header("Set-Cookie", &session::cookie(Some(&id), self.settings.cookie_secure))
            }
            Err(session::LoginError::Invalid) => Response::json(401, &json!({ "success": false, "error": "Invalid credentials" })),
            Err(session::LoginError::RateLimited) => {
                Response::json(429, &json!({ "success": false, "error": "Too many login attempts; try again later" }))
            }
            Err(session::LoginError::Internal(why)) => Response::json(500, &json!({ "success": false, "error": why })),
        }
    }

    /// Saves a posted config; masked secrets in it (what `GET` showed) keep the values in the file.
    fn save_config(&self, req: &Request) -> Response {
        let mut value = match body_object(req) {
            Ok(value) => value,
            Err(response) => return response,
        };
        let path = &self.watch.config_path;
        let stored = std::fs::read_to_string(path).ok().and_then(|text| serde_json::from_str(&text).ok()).unwrap_or(Value::Null);
        if let Err(problems) = secrets::unmask(&mut value, &stored) {
            return invalid("Invalid configuration", problems);
        }
        let text = pretty(&value);
        let mut parsed = match config::parse(&text, path, &settings::env_lookup) {
            Ok(parsed) => parsed,
            Err(e) => return invalid("Invalid configuration", vec![e.to_string()]),
        };
        let mut problems = parsed.problems;
        problems.extend(config_watch::bind_profiles(&mut parsed.profiles, self.watch.credentials.as_ref()));
        match problems.is_empty() {
            true => write(path, &text, json!({ "success": true })),
            false => invalid("Invalid configuration", problems),
        }
    }

    fn save_tool_config(&self, req: &Request) -> Response {
        let value = match body_object(req) {
            Ok(value) => value,
            Err(response) => return response,
        };
        if !value.get("tools").is_some_and(Value::is_object) {
            return Response::error(400, "Invalid tool configuration format: Expected { \"tools\": { ... } }.");
        }
        let text = pretty(&value);
        let path = &self.watch.tool_config_path;
        let parsed = match tool_config::parse(&text, path) {
            Ok(parsed) => parsed,
            Err(e) => return invalid("Invalid tool configuration", vec![e.to_string()]),
        };
        let mut problems = parsed.problems;
        let mut seen = HashSet::new();
        for (key, o) in parsed.tools.iter().filter(|(_, o)| o.enabled) {
            let Some(name) = &o.exposed_name else { continue };
            if !tool_config::is_portable_name(name) {
                problems.push(format!("tool '{key}': exposedName '{name}' must be 1-64 letters, digits, '_' or '-'"));
            } else if !seen.insert(name.clone()) {
                problems.push(format!("tool '{key}': exposedName '{name}' is used by another tool too"));
            }
        }
        if problems.is_empty() {
            problems.extend(self.name_clashes(&parsed.tools));
        }
        if !problems.is_empty() {
            return invalid("Invalid tool configuration", problems);
        }
        write(path, &text, json!({ "success": true, "message": "Tool configuration saved." }))
    }

    /// Exposed names two enabled tools would share under these overrides, in today's catalog: the
    /// dispatcher answers by building it, so the rule is the catalog's own (renames, shortening).
    fn name_clashes(&self, overrides: &tool_config::Overrides) -> Vec<String> {
        self.query(|reply| Event::CheckOverrides { overrides: overrides.clone(), reply }).unwrap_or_default()
    }

    fn reload(&self) -> Response {
        match config_watch::read(&self.watch).map(|event| self.events.send(event).is_ok()) {
            Ok(true) => Response::json(200, &json!({ "success": true, "message": "Server configuration reloaded successfully." })),
            Ok(false) => Response::error(503, "shutting down"),
            Err(details) => {
                Response::json(400, &json!({ "success": false, "error": "Failed to reload server configuration.", "details": details }))
            }
        }
    }

    fn environment(&self) -> Value {
        let tools_folder = self.settings.tools_folder.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
        json!({ "toolsFolder": tools_folder, "serverToolnameSeparator": self.separator, "webTerminal": self.terminal_enabled() })
    }

    #[cfg(feature = "web-terminal")]
    fn terminal_enabled(&self) -> bool {
        self.terminals.is_some()
    }

    #[cfg(not(feature = "web-terminal"))]
    fn terminal_enabled(&self) -> bool {
        false
    }

    fn terminal(&self, req: &Request, ex: &mut Exchange) {
        #[cfg(feature = "web-terminal")]
        if let Some(terminals) = &self.terminals {
            return terminals.handle(req, ex);
        }
        let _ = req;
        ex.respond(Response::error(404, "the web terminal is disabled (set ENABLE_WEB_TERMINAL=true)"));
    }

    /// Asks the dispatcher something and answers with what it says.
    fn ask<T: serde::Serialize>(&self, event: impl FnOnce(Sender<T>) -> Event) -> Response {
        match self.query(event) {
            Some(value) => Response::json(200, &value),
            None => Response::error(503, "the dispatcher did not answer"),
        }
    }

    fn query<T>(&self, event: impl FnOnce(Sender<T>) -> Event) -> Option<T> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        self.events.send(event(reply)).ok()?;
        answer.recv_timeout(DISPATCHER_TIMEOUT).ok()
    }

    fn tools_list(&self) -> Response {
        let Some(inspection) = self.query(|reply| Event::Inspect { reply }) else {
            return Response::error(503, "the dispatcher did not answer");
        };
        Response::json(200, &json!({ "tools": inspection.all_tools, "problems": inspection.problems, "profiles": inspection.profiles }))
    }

    fn install(&self, key: &str) -> Response {
        let servers = match config::load(&self.watch.config_path, &settings::env_lookup) {
            Ok(servers) => servers,
            Err(e) => return Response::error(500, &e.to_string()),
        };
        let Some(server) = servers.servers.into_iter().find(|s| s.key == key) else {
            return Response::error(404, &format!("Server configuration not found for key: {key}"));
        };
        let target = match install::check(&server).and_then(|()| install::target(&server, self.settings.tools_folder.as_deref())) {
            Ok(target) => target,
            Err(refusal) => return Response::error(400, &refusal.message(key)),
        };
        if !self.installing.lock().map(|mut running| running.insert(key.to_owned())).unwrap_or(false) {
            return Response::error(409, &format!("An installation of '{key}' is already running."));
        }
        let (updates, installing, key_owned) = (self.updates.clone(), self.installing.clone(), key.to_owned());
        let started = std::thread::Builder::new().name(format!("install-{key}")).spawn(move || {
            install::run(&server, &target, &updates);
            if let Ok(mut running) = installing.lock() {
                running.remove(&key_owned);
            }
        });
        if let Err(e) = started {
            return Response::error(500, &format!("cannot start the installation: {e}"));
        }
        let message = format!("Installation process for '{key}' started. Check for live updates.");
        Response::json(200, &json!({ "success": true, "message": message }))
    }

    fn stream_updates(&self, ex: &mut Exchange) {
        let inbox = self.updates.subscribe();
        let Ok(mut stream) = ex.stream(&[]) else { return };
        let _ = stream
            .event(Some("connected"), None, &json!({ "message": "Admin SSE connected" }).to_string())
            .and_then(|()| pump_updates(&mut stream, &inbox, self.keepalive));
    }
}

fn pump_updates(stream: &mut EventStream, inbox: &Receiver<(String, String)>, keepalive: Duration) -> std::io::Result<()> {
    loop {
        match inbox.recv_timeout(keepalive) {
            Ok((event, data)) => stream.event(Some(&event), None, &data)?,
            Err(RecvTimeoutError::Timeout) => stream.comment("keepalive")?,
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        }
    }
}

/// Events for every open admin page (install output). The last lines of each server's latest install
/// are kept and replayed to a page that connects later, so a reload does not lose the output.
#[derive(Clone, Default)]
pub struct Updates {
    inner: Arc<Mutex<UpdatesInner>>,
}

#[derive(Default)]
struct UpdatesInner {
    streams: Vec<Sender<(String, String)>>,
    /// Server key → its latest install's events, oldest first.
    history: std::collections::HashMap<String, std::collections::VecDeque<(String, Value)>>,
}

/// Events kept per server for replay.
const HISTORY: usize = 500;
/// Events a page may have queued beyond the replay before it counts as not reading.
const UPDATES_QUEUE: usize = 1024;

impl Updates {
    fn lock(&self) -> std::sync::MutexGuard<'_, UpdatesInner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A new page's stream, starting with the kept history.
    fn subscribe(&self) -> Receiver<(String, String)> {
        let mut inner = self.lock();
        let kept: usize = inner.history.values().map(|h| h.len()).sum();
        let (tx, rx) = crossbeam_channel::bounded(UPDATES_QUEUE + kept);
        // Replayed events say so, so that a page shows them without announcing them as news.
        for (event, data) in inner.history.values().flatten() {
            let mut data = data.clone();
            data["replayed"] = Value::Bool(true);
            let _ = tx.try_send((event.clone(), data.to_string()));
        }
        inner.streams.push(tx);
        rx
    }

    /// Forgets a server's previous install output: a new one starts.
    pub fn begin(&self, server: &str) {
        self.lock().history.remove(server);
    }

    /// Sends to every page still listening, and keeps the event for pages that come later; pages
    /// that stopped reading are dropped.
    pub fn send(&self, event: &str, data: Value) {
        let item = (event.to_owned(), data.to_string());
        let mut inner = self.lock();
        if let Some(server) = data.get("serverKey").and_then(Value::as_str).map(str::to_owned) {
            let history = inner.history.entry(server).or_default();
            if history.len() == HISTORY {
                history.pop_front();
            }
            history.push_back((event.to_owned(), data));
        }
        inner.streams.retain(|s| s.try_send(item.clone()).is_ok());
    }
}

/// An embedded page or script; the pages load nothing from anywhere else, and the policy says so.
fn asset(content_type: &str, body: &str) -> Response {
    Response::new(200, content_type, body)
        .with_header("Cache-Control", "no-cache")
        .with_header("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
        .with_header("X-Content-Type-Options", "nosniff")
}

/// The login form's fields, from a JSON or a form-encoded body.
fn credentials(req: &Request) -> Option<(String, String)> {
    let text = std::str::from_utf8(&req.body).ok()?;
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        let field = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_owned);
        return Some((field("username")?, field("password")?));
    }
    let form = Request::form_fields(text);
    let field = |k: &str| form.iter().find(|(name, _)| name == k).map(|(_, v)| v.clone());
    Some((field("username")?, field("password")?))
}

fn body_object(req: &Request) -> Result<Value, Response> {
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(value) if value.is_object() => Ok(value),
        Ok(_) => Err(Response::error(400, "Invalid configuration format: Expected a JSON object.")),
        Err(e) => Err(rpc_error(400, -32700, &format!("body is not JSON: {e}"))),
    }
}

fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

fn invalid(error: &str, problems: Vec<String>) -> Response {
    Response::json(400, &json!({ "success": false, "error": error, "problems": problems }))
}

/// The config file as `GET /admin/config` shows it: as it is when it holds no secret, else with every
/// secret masked (`secrets`), re-serialised in the file's key order.
fn read_config(path: &Path) -> Response {
    let Some(mut config) = std::fs::read_to_string(path).ok().and_then(|text| serde_json::from_str::<Value>(&text).ok()) else {
        return read_file(path, None);
    };
    match secrets::mask(&mut config) {
        true => Response::new(200, "application/json", pretty(&config)),
        false => read_file(path, None),
    }
}

fn read_file(path: &Path, missing: Option<&str>) -> Response {
    match (std::fs::read_to_string(path), missing) {
        (Ok(text), _) => Response::new(200, "application/json", text),
        (Err(e), Some(default)) if e.kind() == std::io::ErrorKind::NotFound => Response::new(200, "application/json", default),
        (Err(e), None) if e.kind() == std::io::ErrorKind::NotFound => Response::error(404, "Configuration file not found."),
        (Err(e), _) => Response::error(500, &format!("Failed to read {}: {e}", path.display())),
    }
}

fn write(path: &Path, text: &str, ok: Value) -> Response {
    match crate::files::write_atomically(path, text.as_bytes()) {
        Ok(()) => {
            log::info!("admin: saved {}", path.display());
            Response::json(200, &ok)
        }
        Err(e) => Response::error(500, &format!("Failed to write {}: {e}", path.display())),
    }
}
