//! From a started connection to a ready backend, and keeping it in sync afterwards: the MCP handshake,
//! fetching each list the backend offers (page by page), and rebuilding the catalog when a list changes.
//!
//! A backend is `Starting` from spawn until its `initialize` answer and every list it offers have arrived,
//! then `Ready`; only ready backends contribute to the catalog. The proxy's own requests to a backend
//! (handshake, list pages, log level, subscriptions it restores) are sent by [`Hub::request_internal`] and
//! answered in [`Hub::internal_response`].

use super::backends::State;
use super::catalog::{Catalog, ListKind, Source};
use super::requests::Internal;
use super::routing::Origin;
use super::Hub;
use crate::config::Protocol;
use crate::event::{BackendId, LATEST_PROTOCOL_VERSION, PROTOCOL_VERSIONS};
use crate::jsonrpc::{raw, Message};
use crate::modern::{self, meta};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// How long a backend's `subscriptions/listen` may stay open: as long as the backend keeps it.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// A list fetch beyond this many pages is taken as a backend that loops on its cursor.
const MAX_PAGES: u32 = 1000;

/// The client capabilities the proxy can route from a backend to a client.
const ROUTABLE_CAPABILITIES: [&str; 3] = ["roots", "sampling", "elicitation"];

/// A list being fetched page by page.
#[derive(Debug)]
pub(super) struct ListFetch {
    kind: ListKind,
    generation: u64,
    items: Vec<Value>,
    pages: u32,
}

impl Hub {
    /// Starts the handshake once the client capabilities to declare are known (until then, in stdio
    /// mode, the backend waits): a `server/discover` probe first unless the server is pinned to the
    /// handshake era or its transport (legacy SSE) cannot speak 2026-07-28, else `initialize`.
    pub(super) fn begin_handshake(&mut self, id: BackendId) {
        let Some(b) = self.backends.get_mut(id) else { return };
        // An instance is started by its client's request, so that client's capabilities are known.
        if self.client_capabilities.is_none() && b.instance.is_none() {
            b.awaiting_initialize = true;
            return;
        }
        b.awaiting_initialize = false;
        let can_probe = b.connection.as_ref().is_some_and(|c| c.can_speak_modern());
        match (b.config.protocol, can_probe) {
            (Protocol::Legacy, _) | (Protocol::Auto, false) => self.send_initialize(id),
            (Protocol::Modern | Protocol::Auto, _) => {
                let params = json!({ "_meta": self.envelope(id) });
                self.request_internal(id, Internal::Discover, "server/discover", Some(raw(&params)));
            }
        }
    }

    /// The client capabilities declared to a backend: those the proxy can route that its client has
    /// (an instance's own client; for a shared backend, the first client, or the operator's setting).
    fn declared_capabilities(&self, backend: BackendId) -> serde_json::Map<String, Value> {
        let owner = self.backends.owner_of(backend).and_then(|client| self.clients.capabilities(client));
        let caps = owner.or(self.client_capabilities.as_ref()).and_then(Value::as_object);
        caps.map(|caps| {
            caps.iter().filter(|(k, _)| ROUTABLE_CAPABILITIES.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect()
        })
        .unwrap_or_default()
    }

    /// The 2026-07-28 envelope of the proxy's own requests to a backend, and the defaults for client
    /// requests that come without one.
    fn envelope(&self, backend: BackendId) -> serde_json::Map<String, Value> {
        let mut envelope = serde_json::Map::new();
        envelope.insert(meta::PROTOCOL_VERSION.into(), Value::from(modern::VERSIONS[0]));
        envelope.insert(meta::CLIENT_CAPABILITIES.into(), Value::Object(self.declared_capabilities(backend)));
        envelope.insert(meta::CLIENT_INFO.into(), json!({ "name": "mcp-proxy-server", "version": env!("CARGO_PKG_VERSION") }));
        envelope
    }

    fn send_initialize(&mut self, id: BackendId) {
        if let Some(connection) = self.backends.get(id).and_then(|b| b.connection.as_ref()) {
            connection.dialect().speak_handshake();
        }
        let params = json!({
            "protocolVersion": LATEST_PROTOCOL_VERSION,
            "capabilities": self.declared_capabilities(id),
            "clientInfo": { "name": "mcp-proxy-server", "version": env!("CARGO_PKG_VERSION") },
        });
        self.request_internal(id, Internal::Initialize, "initialize", Some(raw(&params)));
    }

    /// The answer to the `server/discover` probe: a server that speaks 2026-07-28 is spoken to in it from
    /// now on; any other answer (an error, a result without that version) means the handshake era,
    /// unless the server is pinned to 2026-07-28, which then fails.
    pub(super) fn discovered(&mut self, backend: BackendId, outcome: Result<Value, String>) {
        let pinned = self.backends.get(backend).is_some_and(|b| b.config.protocol == Protocol::Modern);
        let versions = outcome.as_ref().ok().and_then(|r| r.get("supportedVersions")).and_then(Value::as_array);
        let modern = versions.is_some_and(|v| v.iter().any(|v| v.as_str() == Some(modern::VERSIONS[0])));
        match (modern, pinned) {
            (true, _) => {
                let Ok(result) = outcome else { return };
                if let Some(connection) = self.backends.get(backend).and_then(|b| b.connection.as_ref()) {
                    connection.dialect().speak_modern(self.envelope(backend));
                }
                log::info!("[{}] speaks {}", self.backends.key(backend), modern::VERSIONS[0]);
                let info = result.pointer(&format!("/_meta/{}", meta::SERVER_INFO.replace('/', "~1"))).cloned();
                let mut init = json!({ "protocolVersion": modern::VERSIONS[0], "capabilities": result.get("capabilities").cloned().unwrap_or_default() });
                if let Some(info) = info {
                    init["serverInfo"] = info;
                }
                if let Some(instructions) = result.get("instructions") {
                    init["instructions"] = instructions.clone();
                }
                self.adopt(backend, init);
            }
            (false, true) => {
                let why = outcome.err().unwrap_or_else(|| "its server/discover names no version the proxy speaks".into());
                self.fail_backend(backend, &format!("pinned to {}, but: {why}", modern::VERSIONS[0]), true);
            }
            (false, false) => {
                log::debug!("[{}] no 2026-07-28 ({}); using the handshake", self.backends.key(backend), outcome.err().unwrap_or_default());
                self.send_initialize(backend);
            }
        }
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
        let waiting: Vec<BackendId> =
            self.backends.iter().filter(|(_, b)| b.awaiting_initialize && b.connection.is_some()).map(|(id, _)| id).collect();
        for id in waiting {
            self.begin_handshake(id);
        }
    }

    /// Sends one of the proxy's own requests to a backend; the id it was given, when it could be sent.
    pub(super) fn request_internal(
        &mut self,
        backend: BackendId,
        op: Internal,
        method: &str,
        params: Option<Box<RawValue>>,
    ) -> Option<u64> {
        // A backend may take long to start (`npx -y` downloads first): the handshake gets the start-up
        // timeout when that is the longer one.
        let timeout = self.backends.timeout(backend, self.settings.request_timeout);
        let timeout = match op {
            Internal::Initialize | Internal::Discover | Internal::List(_) => timeout.max(self.settings.startup_timeout),
            // A listen stays open as long as the backend lets it.
            Internal::Listen => LISTEN_TIMEOUT,
            Internal::Ignore => timeout,
        };
        let (id, _) = self.requests.table.open(backend, Origin::Internal(op), method, timeout);
        let msg = Message::request(Value::from(id), method, params);
        if !self.backends.send(backend, msg) {
            self.requests.table.close((backend, id));
            return None;
        }
        Some(id)
    }

    pub(super) fn internal_response(&mut self, backend: BackendId, op: Internal, method: &str, msg: Message) {
        let outcome = match (&msg.result, &msg.error) {
            (Some(result), _) => serde_json::from_str::<Value>(result.get()).map_err(|e| e.to_string()),
            (None, Some(error)) => Err(error.get().to_owned()),
            (None, None) => Err("empty response".to_owned()),
        };
        match (op, outcome) {
            (Internal::Discover, outcome) => self.discovered(backend, outcome),
            (Internal::Listen, outcome) => self.listen_ended(backend, msg_id(&msg), outcome.err()),
            (Internal::Initialize, Ok(result)) => self.initialized(backend, result),
            (Internal::Initialize, Err(e)) => self.fail_backend(backend, &format!("initialize failed: {e}"), true),
            (Internal::List(fetch), Ok(result)) => self.list_page(backend, fetch, &result),
            (Internal::List(fetch), Err(e)) => {
                log::warn!("[{}] {} failed: {e}", self.backends.key(backend), fetch.kind.method());
                self.list_done(backend, ListFetch { items: Vec::new(), ..fetch });
            }
            (Internal::Ignore, Ok(_)) => {}
            (Internal::Ignore, Err(e)) => log::warn!("[{}] {method} failed: {e}", self.backends.key(backend)),
        }
    }

    fn initialized(&mut self, backend: BackendId, result: Value) {
        let version = result.get("protocolVersion").and_then(Value::as_str).unwrap_or_default().to_owned();
        if !PROTOCOL_VERSIONS.contains(&version.as_str()) {
            let why = format!("it answered protocol version '{version}'; the proxy speaks {PROTOCOL_VERSIONS:?}");
            return self.fail_backend(backend, &why, false);
        }
        self.backends.send(backend, Message::notification("notifications/initialized", None));
        self.adopt(backend, result);
    }

    /// Takes a backend's handshake result (or the one made of its `server/discover`) and fetches the
    /// lists it offers; it is ready once they are in.
    fn adopt(&mut self, backend: BackendId, result: Value) {
        let name = result.pointer("/serverInfo/name").and_then(Value::as_str).unwrap_or("?").to_owned();
        let version = result.get("protocolVersion").and_then(Value::as_str).unwrap_or_default().to_owned();
        log::info!("[{}] connected: {name}, protocol {version}", self.backends.key(backend));
        let Some(b) = self.backends.get_mut(backend) else { return };
        b.init = Some(result);
        if b.instance.is_some() {
            return self.instance_adopted(backend);
        }
        let offered: Vec<ListKind> = ListKind::ALL.into_iter().filter(|k| b.has_capability(k.capability())).collect();
        b.fetching = offered.len();
        if offered.is_empty() {
            self.mark_ready(backend);
        }
        for kind in offered {
            self.fetch_list(backend, kind);
        }
    }

    /// Fetches the lists of these kinds again, those the backend offers (it said one changed).
    pub(super) fn refetch(&mut self, backend: BackendId, kinds: &[ListKind]) {
        for &kind in kinds {
            if self.backends.get(backend).is_some_and(|b| b.has_capability(kind.capability())) {
                self.fetch_list(backend, kind);
            }
        }
    }

    fn fetch_list(&mut self, backend: BackendId, kind: ListKind) {
        let Some(b) = self.backends.get_mut(backend) else { return };
        b.list_generations[kind as usize] += 1;
        let fetch = ListFetch { kind, generation: b.list_generations[kind as usize], items: Vec::new(), pages: 0 };
        self.request_page(backend, fetch, None);
    }

    fn request_page(&mut self, backend: BackendId, fetch: ListFetch, cursor: Option<&str>) {
        let method = fetch.kind.method();
        let params = cursor.map(|c| raw(&json!({ "cursor": c })));
        self.request_internal(backend, Internal::List(fetch), method, params);
    }

    fn list_page(&mut self, backend: BackendId, mut fetch: ListFetch, result: &Value) {
        if let Some(items) = result.get(fetch.kind.member()).and_then(Value::as_array) {
            fetch.items.extend(items.iter().cloned());
        }
        fetch.pages += 1;
        match result.get("nextCursor").and_then(Value::as_str).filter(|c| !c.is_empty()) {
            Some(_) if fetch.pages >= MAX_PAGES => {
                log::warn!("[{}] {} still paging after {MAX_PAGES} pages; stopped", self.backends.key(backend), fetch.kind.method());
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
        let Some(b) = self.backends.get_mut(backend) else { return };
        if fetch.generation != b.list_generations[kind as usize] {
            return; // A newer fetch of the same list is under way.
        }
        b.lists[kind as usize] = fetch.items;
        if kind == ListKind::Tools {
            if let Some(connection) = b.connection.as_ref().filter(|c| c.dialect().is_modern()) {
                connection.dialect().set_mirrored(mirrored_arguments(b.list(ListKind::Tools)));
            }
        }
        match b.state {
            State::Starting => {
                b.fetching = b.fetching.saturating_sub(1);
                if b.fetching == 0 {
                    self.mark_ready(backend);
                }
            }
            State::Ready => self.refresh_catalog(),
            State::Failed(_) | State::NeedsLogin(_) | State::Disabled | State::Removed => {}
        }
    }

    /// An instance needs no lists of its own (its server's template gives the catalog), only the
    /// arguments its tools mirror into headers, which are the template's.
    fn instance_adopted(&mut self, instance: BackendId) {
        let server = self.backends.server_of(instance);
        let mirrored = self.backends.get(server).map(|t| mirrored_arguments(t.list(ListKind::Tools))).unwrap_or_default();
        let Some(b) = self.backends.get_mut(instance) else { return };
        if let Some(connection) = b.connection.as_ref().filter(|c| c.dialect().is_modern()) {
            connection.dialect().set_mirrored(mirrored);
        }
        b.state = State::Ready;
        b.ready_since = Some(Instant::now());
        log::info!("[{}] instance for client {} ready", b.config.key, b.instance.as_ref().map_or(0, |i| i.owner.0));
        self.restore_client_state(instance);
        self.instance_ready(instance);
    }

    fn mark_ready(&mut self, backend: BackendId) {
        let Some(b) = self.backends.get_mut(backend) else { return };
        b.state = State::Ready;
        b.ready_since = Some(Instant::now());
        let [tools, prompts, resources, templates] = ListKind::ALL.map(|kind| b.list(kind).len());
        log::info!("[{}] ready: {tools} tools, {prompts} prompts, {resources} resources, {templates} resource templates", b.config.key);
        self.refresh_catalog();
        self.restore_client_state(backend);
    }

    /// Gives a (re)started backend what clients asked of its predecessor: the logging level and the
    /// resource subscriptions (an instance: what its own client asked).
    fn restore_client_state(&mut self, backend: BackendId) {
        if self.backends.get(backend).is_some_and(|b| b.is_modern()) {
            return self.listen_at_backend(backend);
        }
        let logs = self.backends.get(backend).is_some_and(|b| b.has_capability("logging"));
        let level = match self.backends.owner_of(backend) {
            Some(owner) => self.clients.log_level_of(owner),
            None => self.clients.log_level.clone(),
        };
        if let Some(level) = level.filter(|_| logs) {
            self.request_internal(backend, Internal::Ignore, "logging/setLevel", Some(raw(&json!({ "level": level }))));
        }
        // A subscribe that waited for this instance is about to be sent as the client asked it.
        let uris: Vec<String> = self.subscribed_uris(backend).into_iter().filter(|uri| !self.subscribe_waits(backend, uri)).collect();
        for uri in uris {
            self.request_internal(backend, Internal::Ignore, "resources/subscribe", Some(raw(&json!({ "uri": uri }))));
        }
    }

    /// Rebuilds the catalog and the profiles' views of it, and tells each client about each kind of
    /// list that changed in what it sees (and only those: a client that re-lists on a notification
    /// always finds something new).
    pub(super) fn refresh_catalog(&mut self) {
        let (catalog, mut found) = self.build_catalog(&self.overrides);
        let old = std::mem::replace(&mut self.catalog, catalog);
        let whole = old.changes_to(&self.catalog);
        let complete = self.backends.configured().all(|b| b.state != State::Starting);
        let backends = &self.backends;
        let (in_views, problems) = self.views.rebuild(&self.catalog, &|id| backends.key(id).to_owned(), complete);
        found.problems.extend(problems);
        self.note_findings(found);
        self.announce_list_changes(&|profile| match profile {
            None => whole.clone(),
            Some(id) => in_views.get(&id).cloned().unwrap_or_default(),
        });
    }

    /// Logs what a catalog build found that the last one did not, and keeps it.
    fn note_findings(&mut self, found: super::catalog::Findings) {
        for problem in found.problems.iter().filter(|p| !self.findings.problems.contains(p)) {
            log::warn!("{problem}");
        }
        for note in found.notes.iter().filter(|n| !self.findings.notes.contains(n)) {
            log::info!("{note}");
        }
        self.findings = found;
    }

    /// Tells every client (and every listen) about the kinds of list that changed in what it sees, by
    /// its profile.
    fn announce_list_changes(&mut self, changed: &dyn Fn(Option<crate::event::ProfileId>) -> Vec<ListKind>) {
        for (client, profile) in self.clients.initialized_with_profiles() {
            for kind in changed(profile) {
                self.send_to_client(client, Message::notification(kind.changed_notification(), None));
            }
        }
        self.announce_to_listeners(changed);
    }

    /// The catalog today's backends give under these overrides, and what building it found.
    pub(super) fn build_catalog(&self, overrides: &crate::tool_config::Overrides) -> (Catalog, super::catalog::Findings) {
        let mut sources: Vec<Source> = self
            .backends
            .iter()
            .filter(|(_, b)| !matches!(b.state, State::Disabled | State::Removed))
            .map(|(id, b)| Source {
                id,
                key: &b.config.key,
                prefix: b.config.prefix(),
                ready: b.is_ready(),
                filters: &b.config.filters,
                tools: b.list(ListKind::Tools),
                prompts: b.list(ListKind::Prompts),
                resources: b.list(ListKind::Resources),
                templates: b.list(ListKind::Templates),
            })
            .collect();
        // Key order decides every clash, whatever order the servers were added in.
        sources.sort_by(|a, b| a.key.cmp(b.key));
        Catalog::build(&sources, &self.settings.separator, overrides)
    }
}

/// The id of a message the proxy sent, as the number it is.
fn msg_id(msg: &Message) -> Option<u64> {
    msg.id.as_ref().and_then(Value::as_u64)
}

/// What each tool mirrors into `Mcp-Param-*` headers, by its name, for the tools that mirror anything
/// (tools with invalid annotations are not listed, so they need none).
fn mirrored_arguments(tools: &[Value]) -> std::collections::HashMap<String, Vec<crate::mcp_param::Mirrored>> {
    tools
        .iter()
        .filter_map(|tool| {
            let mirrored = crate::mcp_param::annotations(tool.get("inputSchema")?).ok().filter(|m| !m.is_empty())?;
            Some((tool.get("name")?.as_str()?.to_owned(), mirrored))
        })
        .collect()
}
