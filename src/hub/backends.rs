//! The backend side of the dispatcher: start-up, the MCP handshake, list synchronisation, and what
//! backends send (responses, notifications, their own requests).
//!
//! A backend is `Starting` from spawn until its `initialize` answer and every list it offers have arrived,
//! then `Ready`; only ready backends contribute to the catalog. A backend that exits is `Failed`: its tools
//! are withdrawn (clients get `list_changed`), every request in flight to it fails at once, and it is
//! started again after a backoff.

use super::catalog::{Catalog, Source};
use super::routing::{InFlight, Key, Origin};
use super::{BackendId, Hub, Internal, Upstream, LATEST_PROTOCOL_VERSION, PROTOCOL_VERSIONS};
use crate::backend::{Connection, Link};
use crate::config::ServerConfig;
use crate::jsonrpc::{code, raw, Kind, Message};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A list fetch beyond this many pages is taken as a backend that loops on its cursor.
const MAX_PAGES: u32 = 1000;
/// A backend that stayed ready this long before going down is restarted without the backoff it had.
const STABLE_UPTIME: Duration = Duration::from_secs(30);

pub(super) struct Backend {
    pub config: ServerConfig,
    pub state: State,
    pub connection: Option<Connection>,
    /// Counts connections, so events from a replaced one can be told apart.
    pub generation: u64,
    /// Restarts so far, for `/health`.
    restarts: u32,
    /// Failed starts in a row; sets the next restart's delay.
    attempt: u32,
    pub restart_at: Option<Instant>,
    ready_since: Option<Instant>,
    /// Spawned, but `initialize` waits for the client's capabilities.
    awaiting_initialize: bool,
    /// The backend's `initialize` result, once it has answered.
    pub init: Option<Value>,
    lists: [Vec<Value>; 4],
    /// Bumped per fetch of each list, so an older fetch that finishes late is dropped.
    generations: [u64; 4],
    /// Lists still being fetched during start-up.
    fetching: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum State {
    Starting,
    Ready,
    Failed(String),
    Disabled,
    /// Taken out of the configuration by a reload; the slot stays so ids keep their meaning.
    Removed,
}

/// The four lists a backend may offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ListKind {
    Tools = 0,
    Prompts = 1,
    Resources = 2,
    Templates = 3,
}

impl ListKind {
    pub(super) const ALL: [ListKind; 4] = [ListKind::Tools, ListKind::Prompts, ListKind::Resources, ListKind::Templates];

    fn method(self) -> &'static str {
        match self {
            ListKind::Tools => "tools/list",
            ListKind::Prompts => "prompts/list",
            ListKind::Resources => "resources/list",
            ListKind::Templates => "resources/templates/list",
        }
    }

    /// The member of the list result that holds the items.
    fn member(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources => "resources",
            ListKind::Templates => "resourceTemplates",
        }
    }

    /// The capability a backend declares when it offers this list.
    fn capability(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources | ListKind::Templates => "resources",
        }
    }

    pub(super) fn changed_notification(self) -> &'static str {
        match self {
            ListKind::Tools => "notifications/tools/list_changed",
            ListKind::Prompts => "notifications/prompts/list_changed",
            ListKind::Resources | ListKind::Templates => "notifications/resources/list_changed",
        }
    }
}

/// A list being fetched page by page.
#[derive(Debug)]
pub(super) struct ListFetch {
    kind: ListKind,
    generation: u64,
    items: Vec<Value>,
    pages: u32,
}

/// The steps of a clean stop: let requests in flight finish, close the backends' stdin, SIGTERM,
/// SIGKILL, then give up waiting.
pub(super) struct Shutdown {
    phase: Phase,
    pub next_step: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Draining,
    ClosingInput,
    Terminating,
    Killing,
}

impl Backend {
    pub fn new(config: ServerConfig) -> Backend {
        let state = if config.active { State::Starting } else { State::Disabled };
        Backend {
            config,
            state,
            connection: None,
            generation: 0,
            restarts: 0,
            attempt: 0,
            restart_at: None,
            ready_since: None,
            awaiting_initialize: false,
            init: None,
            lists: Default::default(),
            generations: [0; 4],
            fetching: 0,
        }
    }

    /// Takes a new configuration for the same key; the slot starts over, keeping its generation count.
    pub fn reset(&mut self, config: ServerConfig) {
        let generation = self.generation;
        *self = Backend::new(config);
        self.generation = generation;
    }

    fn capability(&self, name: &str) -> Option<&Value> {
        self.init.as_ref()?.get("capabilities")?.get(name).filter(|v| !v.is_null())
    }

    pub fn has_capability(&self, name: &str) -> bool {
        self.capability(name).is_some()
    }

    /// A boolean flag inside a capability, such as `resources.subscribe`.
    pub fn capability_flag(&self, name: &str, flag: &str) -> bool {
        self.capability(name).and_then(|c| c.get(flag)).and_then(Value::as_bool).unwrap_or(false)
    }

    fn health(&self) -> Value {
        let (state, error) = match &self.state {
            State::Starting => ("connecting", None),
            State::Ready => ("connected", None),
            State::Failed(why) => ("failed", Some(crate::logging::mask(why))),
            State::Disabled | State::Removed => ("inactive", None),
        };
        json!({
            "key": self.config.key,
            "type": self.config.transport.type_name(),
            "state": state,
            "lastError": error,
            "restarts": self.restarts,
            "tools": if self.state == State::Ready { self.lists[ListKind::Tools as usize].len() } else { 0 },
        })
    }

    pub fn instructions(&self) -> Option<&str> {
        self.init.as_ref()?.get("instructions")?.as_str()
    }
}

impl Hub {
    pub(super) fn start_backends(&mut self) {
        for index in 0..self.backends.len() {
            let id = BackendId(index);
            if self.backends[index].state == State::Disabled {
                log::info!("server '{}' is not active; skipped", self.backend_key(id));
                continue;
            }
            self.start_backend(id);
        }
    }

    pub(super) fn start_backend(&mut self, id: BackendId) {
        let b = &mut self.backends[id.0];
        b.generation += 1;
        b.state = State::Starting;
        b.restart_at = None;
        let timeout = b.config.timeout.unwrap_or(self.settings.request_timeout);
        match Connection::start(&b.config, Link::new(id, b.generation, self.events.clone()), timeout) {
            Ok(connection) => {
                b.connection = Some(connection);
                self.send_initialize(id);
            }
            // A missing command may be installed later: keep trying, with backoff.
            Err(e) => self.fail_backend(id, &e.to_string(), true),
        }
    }

    /// True for events from the backend's live connection.
    pub(super) fn is_current(&self, backend: BackendId, generation: u64) -> bool {
        self.backends.get(backend.0).is_some_and(|b| b.generation == generation && b.connection.is_some())
    }

    /// Restarts the backends whose restart time has come.
    pub(super) fn restart_due(&mut self, now: Instant) {
        if self.stopping.is_some() {
            return;
        }
        for index in 0..self.backends.len() {
            if self.backends[index].restart_at.is_some_and(|at| at <= now) {
                self.backends[index].restarts += 1;
                log::info!("[{}] restarting (restart {})", self.backends[index].config.key, self.backends[index].restarts);
                self.start_backend(BackendId(index));
            }
        }
    }

    pub(super) fn next_restart(&self) -> Option<Instant> {
        self.backends.iter().filter_map(|b| b.restart_at).min()
    }

    /// Plans the next start of a backend that went down: exponential backoff with jitter, starting over
    /// once the backend had stayed up for a while.
    fn schedule_restart(&mut self, backend: BackendId) {
        let (min, max) = self.settings.restart_backoff;
        let b = &mut self.backends[backend.0];
        if b.ready_since.take().is_some_and(|since| since.elapsed() >= STABLE_UPTIME) {
            b.attempt = 0;
        }
        let delay = backoff(min, max, b.attempt);
        b.attempt = b.attempt.saturating_add(1);
        b.restart_at = Some(Instant::now() + delay);
        log::info!("[{}] next start in {:.1}s", b.config.key, delay.as_secs_f64());
    }

    /// Sends `initialize`, declaring the client capabilities the proxy can route (roots, sampling,
    /// elicitation) that its client has. Until that client is known (stdio mode) the backend waits.
    fn send_initialize(&mut self, id: BackendId) {
        let Some(client_capabilities) = &self.client_capabilities else {
            self.backends[id.0].awaiting_initialize = true;
            return;
        };
        self.backends[id.0].awaiting_initialize = false;
        let routable = ["roots", "sampling", "elicitation"];
        let declared: serde_json::Map<String, Value> = client_capabilities
            .as_object()
            .map(|caps| caps.iter().filter(|(k, _)| routable.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let params = json!({
            "protocolVersion": LATEST_PROTOCOL_VERSION,
            "capabilities": declared,
            "clientInfo": { "name": "mcp-proxy-server", "version": env!("CARGO_PKG_VERSION") },
        });
        self.request_internal(id, Internal::Initialize, "initialize", Some(params));
    }

    /// Learns which client capabilities to declare to backends, and lets waiting backends initialize.
    pub(super) fn set_client_capabilities(&mut self, capabilities: Value) {
        if self.client_capabilities.is_some() {
            return;
        }
        self.client_capabilities = Some(capabilities);
        // Backends start their handshake only now: they get the whole start-up time from here.
        if let Some(settle_by) = &mut self.settle_by {
            *settle_by = (*settle_by).max(Instant::now() + self.settings.startup_timeout);
        }
        for index in 0..self.backends.len() {
            if self.backends[index].awaiting_initialize && self.backends[index].connection.is_some() {
                self.send_initialize(BackendId(index));
            }
        }
    }

    /// Sends one of the proxy's own requests to a backend.
    pub(super) fn request_internal(&mut self, backend: BackendId, op: Internal, method: &str, params: Option<Value>) {
        // A backend may take long to start (`npx -y` downloads first): the handshake gets the start-up
        // timeout when that is the longer one.
        let handshake = matches!(op, Internal::Initialize | Internal::List(_));
        let timeout = match handshake {
            true => self.timeout_for(backend).max(self.settings.startup_timeout),
            false => self.timeout_for(backend),
        };
        let (id, _) = self.routing.open(backend, Origin::Internal(op), method, timeout);
        let msg = Message::request(Value::from(id), method, params.as_ref().map(raw));
        if !self.send_to_backend(backend, msg) {
            self.routing.close((backend, id));
        }
    }

    pub(super) fn send_to_backend(&self, backend: BackendId, msg: Message) -> bool {
        self.connection(backend).is_some_and(|c| c.send(msg))
    }

    pub(super) fn timeout_for(&self, backend: BackendId) -> Duration {
        self.backends.get(backend.0).and_then(|b| b.config.timeout).unwrap_or(self.settings.request_timeout)
    }

    pub(super) fn on_backend_message(&mut self, backend: BackendId, msg: Message) {
        match msg.kind() {
            Kind::Response => self.backend_response(backend, msg),
            Kind::Notification => self.backend_notification(backend, msg),
            Kind::Request => self.backend_request(backend, msg),
        }
    }

    fn backend_response(&mut self, backend: BackendId, mut msg: Message) {
        let Some(id) = msg.id.as_ref().and_then(Value::as_u64) else {
            log::warn!("[{}] response with an id the proxy never sent: {:?}", self.backend_key(backend), msg.id);
            return;
        };
        let Some(entry) = self.routing.close((backend, id)) else {
            log::debug!("[{}] late response to request {id} (cancelled or timed out)", self.backend_key(backend));
            return;
        };
        match entry.origin {
            Origin::Client { caller, .. } => {
                self.metrics.record(backend, &entry.method, msg.error.is_some(), entry.opened.elapsed());
                msg.id = Some(caller.id);
                self.deliver(caller.client, &caller.reply, msg);
            }
            Origin::Internal(op) => self.internal_response(backend, op, &entry.method, msg),
        }
    }

    fn internal_response(&mut self, backend: BackendId, op: Internal, method: &str, msg: Message) {
        let outcome = match (&msg.result, &msg.error) {
            (Some(result), _) => serde_json::from_str::<Value>(result.get()).map_err(|e| e.to_string()),
            (None, Some(error)) => Err(error.get().to_owned()),
            (None, None) => Err("empty response".to_owned()),
        };
        match (op, outcome) {
            (Internal::Initialize, Ok(result)) => self.initialized(backend, result),
            (Internal::Initialize, Err(e)) => self.fail_backend(backend, &format!("initialize failed: {e}"), true),
            (Internal::List(fetch), Ok(result)) => self.list_page(backend, fetch, &result),
            (Internal::List(fetch), Err(e)) => {
                log::warn!("[{}] {} failed: {e}", self.backend_key(backend), fetch.kind.method());
                self.list_done(backend, ListFetch { items: Vec::new(), ..fetch });
            }
            (Internal::Ignore, Ok(_)) => {}
            (Internal::Ignore, Err(e)) => log::warn!("[{}] {method} failed: {e}", self.backend_key(backend)),
        }
    }

    fn initialized(&mut self, backend: BackendId, result: Value) {
        let version = result.get("protocolVersion").and_then(Value::as_str).unwrap_or_default().to_owned();
        if !PROTOCOL_VERSIONS.contains(&version.as_str()) {
            let why = format!("it answered protocol version '{version}'; the proxy speaks {PROTOCOL_VERSIONS:?}");
            return self.fail_backend(backend, &why, false);
        }
        let name = result.pointer("/serverInfo/name").and_then(Value::as_str).unwrap_or("?").to_owned();
        log::info!("[{}] connected: {name}, protocol {version}", self.backend_key(backend));
        self.send_to_backend(backend, Message::notification("notifications/initialized", None));
        let b = &mut self.backends[backend.0];
        b.init = Some(result);
        let offered: Vec<ListKind> = ListKind::ALL.into_iter().filter(|k| b.has_capability(k.capability())).collect();
        b.fetching = offered.len();
        if offered.is_empty() {
            self.mark_ready(backend);
        }
        for kind in offered {
            self.fetch_list(backend, kind);
        }
    }

    fn fetch_list(&mut self, backend: BackendId, kind: ListKind) {
        let b = &mut self.backends[backend.0];
        b.generations[kind as usize] += 1;
        let fetch = ListFetch { kind, generation: b.generations[kind as usize], items: Vec::new(), pages: 0 };
        self.request_page(backend, fetch, None);
    }

    fn request_page(&mut self, backend: BackendId, fetch: ListFetch, cursor: Option<&str>) {
        let method = fetch.kind.method();
        let params = cursor.map(|c| json!({ "cursor": c }));
        self.request_internal(backend, Internal::List(fetch), method, params);
    }

    fn list_page(&mut self, backend: BackendId, mut fetch: ListFetch, result: &Value) {
        if let Some(items) = result.get(fetch.kind.member()).and_then(Value::as_array) {
            fetch.items.extend(items.iter().cloned());
        }
        fetch.pages += 1;
        match result.get("nextCursor").and_then(Value::as_str).filter(|c| !c.is_empty()) {
            Some(_) if fetch.pages >= MAX_PAGES => {
                log::warn!("[{}] {} still paging after {MAX_PAGES} pages; stopped", self.backend_key(backend), fetch.kind.method());
                self.list_done(backend, fetch);
            }
            Some(cursor) => {
                let cursor = cursor.to_owned();
                self.request_page(backend, fetch, Some(&cursor));
            }
            None => self.list_done(backend, fetch),
        }
    }

    fn list_done(&mut self, backend: BackendId, fetch: ListFetch) {
        let kind = fetch.kind;
        let b = &mut self.backends[backend.0];
        if fetch.generation != b.generations[kind as usize] {
            return; // A newer fetch of the same list is under way.
        }
        b.lists[kind as usize] = fetch.items;
        match b.state {
            State::Starting => {
                b.fetching = b.fetching.saturating_sub(1);
                if b.fetching == 0 {
                    self.mark_ready(backend);
                }
            }
            State::Ready => {
                self.refresh_catalog();
            }
            State::Failed(_) | State::Disabled | State::Removed => {}
        }
    }

    fn mark_ready(&mut self, backend: BackendId) {
        let b = &mut self.backends[backend.0];
        b.state = State::Ready;
        b.ready_since = Some(Instant::now());
        let [tools, prompts, resources, templates] = b.lists.each_ref().map(Vec::len);
        log::info!("[{}] ready: {tools} tools, {prompts} prompts, {resources} resources, {templates} resource templates", b.config.key);
        self.refresh_catalog();
        self.restore_client_state(backend);
    }

    /// Gives a (re)started backend what clients asked of its predecessor: the logging level and the
    /// resource subscriptions.
    fn restore_client_state(&mut self, backend: BackendId) {
        if let Some(level) = self.log_level.clone().filter(|_| self.backends[backend.0].has_capability("logging")) {
            self.request_internal(backend, Internal::Ignore, "logging/setLevel", Some(json!({ "level": level })));
        }
        let uris: Vec<String> = self.subscribers.keys().filter(|uri| self.catalog.resource_owner(uri) == Some(backend)).cloned().collect();
        for uri in uris {
            self.request_internal(backend, Internal::Ignore, "resources/subscribe", Some(json!({ "uri": uri })));
        }
    }

    /// Rebuilds the catalog and tells clients about each kind of list that changed (and only those:
    /// a client that re-lists on a notification always finds something new).
    pub(super) fn refresh_catalog(&mut self) {
        let old = std::mem::take(&mut self.catalog);
        self.rebuild_catalog();
        let new = &self.catalog;
        let changed = [
            (old.tools != new.tools, ListKind::Tools),
            (old.prompts != new.prompts, ListKind::Prompts),
            (old.resources != new.resources || old.templates != new.templates, ListKind::Resources),
        ];
        for (_, kind) in changed.into_iter().filter(|(changed, _)| *changed) {
            self.broadcast(kind.changed_notification(), None);
        }
    }

    fn rebuild_catalog(&mut self) {
        let mut sources: Vec<Source> = self
            .backends
            .iter()
            .enumerate()
            .filter(|(_, b)| !matches!(b.state, State::Disabled | State::Removed))
            .map(|(i, b)| Source {
                id: BackendId(i),
                key: &b.config.key,
                prefix: b.config.prefix(),
                ready: b.state == State::Ready,
                filters: &b.config.filters,
                tools: &b.lists[ListKind::Tools as usize],
                prompts: &b.lists[ListKind::Prompts as usize],
                resources: &b.lists[ListKind::Resources as usize],
                templates: &b.lists[ListKind::Templates as usize],
            })
            .collect();
        // Key order decides every clash, whatever order the servers were added in.
        sources.sort_by(|a, b| a.key.cmp(b.key));
        let (catalog, found) = Catalog::build(&sources, &self.settings.separator, &self.overrides);
        for problem in found.problems.iter().filter(|p| !self.findings.problems.contains(p)) {
            log::warn!("{problem}");
        }
        for note in found.notes.iter().filter(|n| !self.findings.notes.contains(n)) {
            log::info!("{note}");
        }
        self.findings = found;
        self.catalog = catalog;
    }

    fn backend_notification(&mut self, backend: BackendId, msg: Message) {
        let params = msg.params_object().unwrap_or_default();
        match msg.method() {
            "notifications/progress" => {
                let token = params.get("progressToken").and_then(Value::as_u64);
                if let Some((client, reply, original)) = token.and_then(|t| self.routing.progress(backend, t)) {
                    let mut params = params;
                    params.insert("progressToken".into(), original);
                    let msg = Message::notification("notifications/progress", Some(raw(&Value::Object(params))));
                    self.deliver(client, &reply, msg);
                }
            }
            "notifications/message" => self.broadcast("notifications/message", Some(&Value::Object(params))),
            "notifications/tools/list_changed" => self.refresh(backend, &[ListKind::Tools]),
            "notifications/prompts/list_changed" => self.refresh(backend, &[ListKind::Prompts]),
            "notifications/resources/list_changed" => self.refresh(backend, &[ListKind::Resources, ListKind::Templates]),
            "notifications/resources/updated" => {
                let uri = params.get("uri").and_then(Value::as_str).unwrap_or_default();
                let targets = self.subscribers.get(uri).cloned().unwrap_or_default();
                for client in targets {
                    let params = Some(raw(&Value::Object(params.clone())));
                    self.send_to_client(client, Message::notification("notifications/resources/updated", params));
                }
            }
            "notifications/cancelled" => self.backend_cancelled(backend, params),
            other => log::debug!("[{}] notification {other} not relayed", self.backend_key(backend)),
        }
    }

    fn refresh(&mut self, backend: BackendId, kinds: &[ListKind]) {
        for &kind in kinds {
            if self.backends[backend.0].has_capability(kind.capability()) {
                self.fetch_list(backend, kind);
            }
        }
    }

    /// A backend withdrew one of its own requests to a client.
    fn backend_cancelled(&mut self, backend: BackendId, mut params: serde_json::Map<String, Value>) {
        let Some(request_id) = params.get("requestId").cloned() else { return };
        let found = self.upstream.iter().find(|(_, u)| u.backend == backend && u.backend_id == request_id);
        let Some((&proxy_id, upstream)) = found else { return };
        let client = upstream.client;
        self.upstream.remove(&proxy_id);
        params.insert("requestId".into(), Value::from(proxy_id));
        let msg = Message::notification("notifications/cancelled", Some(raw(&Value::Object(params))));
        self.send_to_client(client, msg);
    }

    /// A backend asks something of a client (sampling, roots, elicitation, ping). It goes to the client
    /// whose requests are in flight to that backend when there is exactly one, else to the only client
    /// connected; when no client can be determined the backend gets an error, never silence.
    fn backend_request(&mut self, backend: BackendId, mut msg: Message) {
        let Some(backend_id) = msg.id.clone() else { return };
        if msg.method() == "ping" {
            self.send_to_backend(backend, Message::response(backend_id, raw(&json!({}))));
            return;
        }
        let waiting = self.routing.callers_waiting_on(backend);
        let target = match (waiting.as_slice(), self.clients.len()) {
            ([only], _) => Some((only.client, only.reply.clone())),
            ([], 1) => self.clients.keys().next().map(|c| (*c, super::ReplyTo::Outbox)),
            _ => None,
        };
        let Some((client, reply)) = target else {
            let why = format!("the proxy cannot tell which client should answer '{}'", msg.method());
            self.send_to_backend(backend, Message::error_response(backend_id, code::METHOD_NOT_FOUND, &why));
            return;
        };
        let proxy_id = self.routing.take_id();
        self.upstream.insert(proxy_id, Upstream { backend, backend_id, client });
        msg.id = Some(Value::from(proxy_id));
        self.deliver(client, &reply, msg);
    }

    pub(super) fn backend_exited(&mut self, backend: BackendId, reason: &str) {
        let key = self.backend_key(backend).to_owned();
        let Some(b) = self.backends.get_mut(backend.0) else { return };
        b.connection = None;
        let was_ready = b.state == State::Ready;
        if self.stopping.is_some() {
            log::info!("[{key}] stopped ({reason})");
            b.state = State::Disabled;
            self.abandon_backend_requests(backend, &format!("server '{key}' stopped: {reason}"));
            return;
        }
        log::error!("[{key}] exited: {reason}");
        b.state = State::Failed(format!("exited: {reason}"));
        self.abandon_backend_requests(backend, &format!("server '{key}' exited: {reason}"));
        if was_ready {
            self.refresh_catalog();
        }
        self.schedule_restart(backend);
    }

    /// Takes a backend down: its connection is killed, its requests fail, and it is started again
    /// later when `retry` is set.
    fn fail_backend(&mut self, backend: BackendId, why: &str, retry: bool) {
        let b = &mut self.backends[backend.0];
        log::error!("[{}] failed: {why}", b.config.key);
        let was_ready = b.state == State::Ready;
        b.state = State::Failed(why.to_owned());
        if let Some(connection) = b.connection.take() {
            connection.kill();
        }
        self.abandon_backend_requests(backend, why);
        if was_ready {
            self.refresh_catalog();
        }
        if retry && self.stopping.is_none() {
            self.schedule_restart(backend);
        }
    }

    /// Fails every request in flight to a backend that is gone, and forgets its requests to clients.
    pub(super) fn abandon_backend_requests(&mut self, backend: BackendId, why: &str) {
        for key in self.routing.keys_for_backend(backend) {
            if let Some(entry) = self.routing.close(key) {
                self.fail_request(backend, entry, code::BACKEND_UNAVAILABLE, why);
            }
        }
        self.upstream.retain(|_, u| u.backend != backend);
    }

    fn fail_request(&mut self, backend: BackendId, entry: InFlight<Internal>, code: i64, why: &str) {
        if let Origin::Client { caller, .. } = entry.origin {
            self.metrics.record(backend, &entry.method, true, entry.opened.elapsed());
            self.answer_error(&caller, code, why);
        }
    }

    /// Fails the requests whose deadline passed, and tells their backends to stop working on them.
    pub(super) fn expire_requests(&mut self, now: Instant) {
        for ((backend, id), entry) in self.routing.expire(now) {
            let key = self.backend_key(backend).to_owned();
            let why = format!("server '{key}' did not answer {} within {:?}", entry.method, entry.timeout);
            log::warn!("{why}");
            let params = json!({ "requestId": id, "reason": "timeout" });
            self.send_to_backend(backend, Message::notification("notifications/cancelled", Some(raw(&params))));
            if matches!(entry.origin, Origin::Internal(Internal::Initialize | Internal::List(_))) {
                self.fail_backend(backend, &why, true);
            } else {
                self.fail_request(backend, entry, code::REQUEST_TIMEOUT, &why);
            }
        }
    }

    /// Cancels a request at its backend on behalf of a client that gave up on it.
    pub(super) fn cancel_at_backend(&mut self, key: Key, reason: &str) {
        if self.routing.close(key).is_some() {
            let params = json!({ "requestId": key.1, "reason": reason });
            self.send_to_backend(key.0, Message::notification("notifications/cancelled", Some(raw(&params))));
        }
    }

    /// The proxy's status for `GET /health`: always the version; with `detailed`, every backend's state.
    pub(super) fn health(&self, detailed: bool) -> Value {
        let mut status = json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") });
        if detailed {
            let backends: Vec<Value> = self.backends.iter().filter(|b| b.state != State::Removed).map(Backend::health).collect();
            status["backends"] = Value::Array(backends);
            status["sessions"] = Value::from(self.sessions.len());
        }
        status
    }

    /// The dispatcher's part of `GET /metrics`: requests, errors and latencies per backend, backend
    /// states and restarts, and open client sessions per transport.
    pub(super) fn render_metrics(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        self.metrics.render(&mut out, &|id| self.backend_key(id).to_owned());
        let live = || self.backends.iter().filter(|b| b.state != State::Removed);
        out.push_str("# HELP mcp_proxy_backend_up 1 when the backend is connected and ready.\n# TYPE mcp_proxy_backend_up gauge\n");
        for b in live() {
            let (key, up) = (super::metrics::label(&b.config.key), u8::from(b.state == State::Ready));
            let _ = writeln!(out, "mcp_proxy_backend_up{{backend=\"{key}\"}} {up}");
        }
        out.push_str("# HELP mcp_proxy_backend_restarts_total Restarts since the proxy started.\n");
        out.push_str("# TYPE mcp_proxy_backend_restarts_total counter\n");
        for b in live() {
            let key = super::metrics::label(&b.config.key);
            let _ = writeln!(out, "mcp_proxy_backend_restarts_total{{backend=\"{key}\"}} {}", b.restarts);
        }
        out.push_str("# HELP mcp_proxy_sessions Open client sessions by transport.\n# TYPE mcp_proxy_sessions gauge\n");
        for transport in ["stdio", "sse", "streamable_http"] {
            let open = self.clients.values().filter(|c| c.transport() == transport).count();
            let _ = writeln!(out, "mcp_proxy_sessions{{transport=\"{transport}\"}} {open}");
        }
        out
    }

    pub(super) fn inspect(&self) -> Value {
        let tools: Vec<Value> = self
            .catalog
            .tools
            .iter()
            .filter_map(|def| {
                let name = def.get("name")?.as_str()?;
                let route = self.catalog.tool(name)?;
                Some(json!({
                    "name": name,
                    "server": self.backend_key(route.backend),
                    "original": route.name,
                    "description": def.get("description"),
                }))
            })
            .collect();
        let backends: Vec<Value> = self.backends.iter().filter(|b| b.state != State::Removed).map(Backend::health).collect();
        let found = &self.findings;
        json!({ "tools": tools, "allTools": self.all_tools(), "problems": found.problems, "notes": found.notes, "backends": backends })
    }

    /// Every tool of every ready backend that its filters let through, disabled ones included, with
    /// the name it is exposed under and its override: what the admin Tools page edits.
    fn all_tools(&self) -> Vec<Value> {
        let sep = &self.settings.separator;
        let mut rows = Vec::new();
        for (index, b) in self.backends.iter().enumerate().filter(|(_, b)| b.state == State::Ready) {
            for tool in &b.lists[ListKind::Tools as usize] {
                let Some(name) = tool.get("name").and_then(Value::as_str) else { continue };
                if !b.config.filters.tools.admits(name) {
                    continue;
                }
                let key = super::catalog::qualify(&b.config.key, sep, name);
                let over = self.overrides.get(&key);
                let exposed = self.catalog.exposed_name(BackendId(index), name);
                rows.push(json!({
                    "name": name,
                    "serverName": b.config.key,
                    "key": key,
                    "exposedName": exposed.map_or_else(|| super::catalog::qualify(b.config.prefix(), sep, name), str::to_owned),
                    "defaultName": super::catalog::qualify(b.config.prefix(), sep, name),
                    "description": tool.get("description"),
                    "exposedDescription": over.and_then(|o| o.exposed_description.as_deref()),
                    "enabled": over.is_none_or(|o| o.enabled),
                }));
            }
        }
        rows
    }

    /// Starts a clean stop: new requests are refused at once, requests in flight get up to the drain
    /// time to finish, then the backends are stopped (stdin closed, SIGTERM, SIGKILL).
    pub(super) fn begin_shutdown(&mut self) {
        if self.stopping.is_some() {
            return;
        }
        // Requests not sent yet (held for start-up, waiting for a retry) will not be: they are answered now.
        let unsent = std::mem::take(&mut self.held).into_iter().map(|(caller, _)| caller);
        let unsent: Vec<super::Caller> = unsent.chain(std::mem::take(&mut self.retries).into_iter().map(|r| r.caller)).collect();
        for caller in unsent {
            self.answer_error(&caller, code::BACKEND_UNAVAILABLE, "the proxy is shutting down");
        }
        log::info!("shutting down: finishing requests in flight (up to {:?})", self.settings.shutdown_grace);
        self.stopping = Some(Shutdown { phase: Phase::Draining, next_step: Instant::now() + self.settings.shutdown_grace });
    }

    /// Moves the shutdown along; true once every backend has stopped or the last step has passed.
    pub(super) fn advance_shutdown(&mut self, now: Instant) -> bool {
        let Some(stopping) = &self.stopping else { return false };
        if stopping.phase == Phase::Draining {
            if self.routing.has_client_requests() && now < stopping.next_step {
                return false;
            }
            self.stop_backends();
            self.stopping = Some(Shutdown { phase: Phase::ClosingInput, next_step: now + Duration::from_secs(1) });
        }
        if self.backends.iter().all(|b| b.connection.is_none()) && self.retiring.is_empty() {
            return true;
        }
        let Some(stopping) = &mut self.stopping else { return false };
        if now < stopping.next_step {
            return false;
        }
        let (next, wait) = match stopping.phase {
            Phase::Draining | Phase::ClosingInput => (Phase::Terminating, Duration::from_secs(2)),
            Phase::Terminating => (Phase::Killing, Duration::from_secs(1)),
            Phase::Killing => {
                log::warn!("some servers did not stop in time; leaving them to the kernel");
                return true;
            }
        };
        *stopping = Shutdown { phase: next, next_step: now + wait };
        let retiring = self.retiring.iter().map(|r| &r.connection);
        for connection in self.backends.iter().filter_map(|b| b.connection.as_ref()).chain(retiring) {
            match next {
                Phase::Terminating => connection.terminate(),
                Phase::Killing => connection.kill(),
                Phase::Draining | Phase::ClosingInput => {}
            }
        }
        false
    }

    /// The end of the drain: what is still in flight fails, clients are let go (their streams end),
    /// and every backend is asked to exit by closing its input.
    fn stop_backends(&mut self) {
        for backend in (0..self.backends.len()).map(BackendId) {
            for key in self.routing.keys_for_backend(backend) {
                if let Some(entry) = self.routing.close(key) {
                    self.fail_request(backend, entry, code::BACKEND_UNAVAILABLE, "the proxy is shutting down");
                }
            }
        }
        self.clients.clear();
        self.sessions.clear();
        for b in &mut self.backends {
            if let Some(connection) = &mut b.connection {
                connection.close_input();
            }
        }
    }
}

/// `min * 2^attempt`, capped at `max`, less up to a quarter at random so that backends that failed
/// together do not all come back in the same instant.
fn backoff(min: Duration, max: Duration, attempt: u32) -> Duration {
    let full = min.saturating_mul(2u32.saturating_pow(attempt.min(31))).min(max);
    full.mul_f64(1.0 - 0.25 * crate::random::unit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(2));
        let within = |d: Duration, full: u64| d <= Duration::from_millis(full) && d >= Duration::from_millis(full * 3 / 4);
        assert!(within(backoff(min, max, 0), 100));
        assert!(within(backoff(min, max, 3), 800));
        assert!(within(backoff(min, max, 10), 2000));
        assert!(within(backoff(min, max, 1000), 2000));
    }
}
