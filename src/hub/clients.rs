//! The client side of the dispatcher: what clients send, answered from the catalog or forwarded to the
//! backend that owns the tool, prompt or resource.
//!
//! Until start-up settles (every backend ready or failed, or the start-up timeout) requests other than
//! `ping` are held, so a client's first `initialize` and `tools/list` see every backend that could start
//! in time instead of an empty proxy.

use super::backends::State;
use super::routing::{Key, Origin};
use super::{BackendId, Caller, Client, ClientId, Hub, Internal, Reply, ReplyTo, Retry, LATEST_PROTOCOL_VERSION, PROTOCOL_VERSIONS};
use crate::jsonrpc::{code, raw, Kind, Message};
use crossbeam_channel::Sender;
use serde_json::{json, Map, Value};
use std::time::{Duration, Instant};

type Params = Map<String, Value>;

impl Hub {
    pub(super) fn client_connected(
        &mut self,
        client: ClientId,
        session: Option<String>,
        outbox: Option<Sender<Message>>,
        owner: Option<String>,
    ) {
        if let Some(session) = &session {
            self.sessions.insert(session.clone(), client);
        }
        let needs_stream = outbox.is_some();
        let last_active = Instant::now();
        let record = Client { outbox, stream: 0, needs_stream, session, owner, initialized: false, last_active };
        self.clients.insert(client, record);
    }

    /// Why a new session cannot be had, if a limit says so: 503 when the proxy is full, 429 when
    /// this key or token holds its share.
    pub(super) fn session_refusal(&self, owner: Option<&str>) -> Option<(u16, String)> {
        if self.stopping.is_some() {
            return Some((503, "the proxy is shutting down".into()));
        }
        let limit = self.settings.max_sessions;
        if self.sessions.len() >= limit {
            log::warn!("session limit ({limit}) reached; refusing a new session");
            return Some((503, format!("too many sessions (limit {limit})")));
        }
        let per_key = self.settings.max_sessions_per_key;
        let owner = owner?;
        let held = self.clients.values().filter(|c| c.owner.as_deref() == Some(owner)).count();
        if per_key > 0 && held >= per_key {
            log::warn!("{owner} holds {held} sessions, its limit; refusing another");
            return Some((429, format!("too many sessions for this key (limit {per_key})")));
        }
        None
    }

    pub(super) fn on_client_message(&mut self, client: ClientId, msg: Message, reply: ReplyTo) {
        if let Some(c) = self.clients.get_mut(&client) {
            c.last_active = Instant::now();
        }
        match msg.kind() {
            Kind::Request => {
                if msg.method() == "initialize" {
                    let params = msg.params_object().unwrap_or_default();
                    self.set_client_capabilities(params.get("capabilities").cloned().unwrap_or_else(|| json!({})));
                }
                let caller = Caller { client, id: msg.id.clone().unwrap_or(Value::Null), reply };
                self.client_request(caller, msg);
            }
            Kind::Notification => self.client_notification(client, &msg),
            Kind::Response => self.client_response(client, msg),
        }
    }

    /// A message posted over HTTP: accepted for a known session, else refused so the client starts anew.
    pub(super) fn on_session_message(&mut self, session: &str, msg: Message, reply: Sender<Reply>, inline: bool) {
        let Some(client) = self.sessions.get(session).copied() else {
            let _ = reply.send(Reply::UnknownSession);
            return;
        };
        if msg.kind() == Kind::Request && inline {
            self.on_client_message(client, msg, ReplyTo::Request(reply));
        } else {
            let _ = reply.send(Reply::Accepted);
            self.on_client_message(client, msg, ReplyTo::Outbox);
        }
    }

    pub(super) fn open_stream(&mut self, session: &str, stream: u64, outbox: Sender<Message>, reply: &Sender<Reply>) {
        match self.session_client(session) {
            Some(c) => {
                c.outbox = Some(outbox);
                c.stream = stream;
                let _ = reply.send(Reply::Accepted);
            }
            None => drop(reply.send(Reply::UnknownSession)),
        }
    }

    pub(super) fn stream_closed(&mut self, session: &str, stream: u64) {
        if let Some(c) = self.session_client(session).filter(|c| c.stream == stream) {
            c.outbox = None;
            c.last_active = Instant::now();
        }
    }

    fn session_client(&mut self, session: &str) -> Option<&mut Client> {
        let client = self.sessions.get(session)?;
        self.clients.get_mut(client)
    }

    /// Forgets Streamable HTTP sessions with no stream, no request in flight and no message for the
    /// idle timeout, with everything they held (subscriptions, in-flight requests).
    pub(super) fn sweep_sessions(&mut self, now: Instant) {
        if now < self.sweep_at {
            return;
        }
        let idle = self.settings.session_idle_timeout;
        self.sweep_at = now + (idle / 10).clamp(Duration::from_millis(100), Duration::from_secs(30));
        let expired: Vec<ClientId> = self
            .clients
            .iter()
            .filter(|(_, c)| !c.needs_stream && c.outbox.is_none() && now.duration_since(c.last_active) >= idle)
            .map(|(id, _)| *id)
            .filter(|id| !self.has_work_for(*id))
            .collect();
        for client in expired {
            log::info!("session of client {} expired after {idle:?} idle", client.0);
            self.client_gone(client);
        }
    }

    /// True while something of the client's is in flight, held or waiting for a retry.
    fn has_work_for(&self, client: ClientId) -> bool {
        self.routing.client_busy(client)
            || self.held.iter().any(|(caller, _)| caller.client == client)
            || self.retries.iter().any(|r| r.caller.client == client)
    }

    fn client_request(&mut self, caller: Caller, msg: Message) {
        if self.stopping.is_some() {
            return self.answer_error(&caller, code::BACKEND_UNAVAILABLE, "the proxy is shutting down");
        }
        if self.settle_by.is_some() && msg.method() != "ping" {
            self.held.push((caller, msg));
            return;
        }
        let params = match msg.params_object() {
            Ok(params) => params,
            Err(why) => return self.answer_error(&caller, code::INVALID_PARAMS, &why),
        };
        match msg.method() {
            "initialize" => {
                let result = self.initialize_result(&params);
                self.answer(&caller, &result);
                // From here on the client hears about list changes: the spec only holds back *requests*
                // until `notifications/initialized`, and waiting for it would lose changes in between.
                if let Some(c) = self.clients.get_mut(&caller.client) {
                    c.initialized = true;
                }
            }
            "ping" => self.answer(&caller, &json!({})),
            "tools/list" => self.answer(&caller, &json!({ "tools": self.catalog.tools })),
            "prompts/list" => self.answer(&caller, &json!({ "prompts": self.catalog.prompts })),
            "resources/list" => self.answer(&caller, &json!({ "resources": self.catalog.resources })),
            "resources/templates/list" => self.answer(&caller, &json!({ "resourceTemplates": self.catalog.templates })),
            "tools/call" => self.call_tool(caller, params),
            "prompts/get" => self.get_prompt(caller, params),
            "resources/read" => self.by_uri(caller, "resources/read", params),
            "resources/subscribe" => self.subscribe(caller, params),
            "resources/unsubscribe" => self.unsubscribe(caller, params),
            "completion/complete" => self.complete(caller, params),
            "logging/setLevel" => self.set_level(caller, params),
            other => {
                let why = format!("method '{other}' is not supported by the proxy");
                self.answer_error(&caller, code::METHOD_NOT_FOUND, &why);
            }
        }
    }

    fn initialize_result(&self, params: &Params) -> Value {
        let asked = params.get("protocolVersion").and_then(Value::as_str).unwrap_or_default();
        let version = if PROTOCOL_VERSIONS.contains(&asked) { asked } else { LATEST_PROTOCOL_VERSION };
        let ready = || self.backends.iter().filter(|b| b.state == State::Ready);
        let any = |cap: &str| ready().any(|b| b.has_capability(cap));
        let mut capabilities = json!({ "tools": { "listChanged": true } });
        if any("prompts") {
            capabilities["prompts"] = json!({ "listChanged": true });
        }
        if any("resources") {
            let subscribe = ready().any(|b| b.capability_flag("resources", "subscribe"));
            capabilities["resources"] = json!({ "listChanged": true, "subscribe": subscribe });
        }
        if any("logging") {
            capabilities["logging"] = json!({});
        }
        if any("completions") {
            capabilities["completions"] = json!({});
        }
        let mut result = json!({
            "protocolVersion": version,
            "capabilities": capabilities,
            "serverInfo": { "name": "mcp-proxy-server", "title": "MCP Proxy Server", "version": env!("CARGO_PKG_VERSION") },
        });
        let instructions: Vec<String> =
            ready().filter_map(|b| b.instructions().map(|text| format!("## {}\n{text}", b.config.key))).collect();
        if !instructions.is_empty() {
            result["instructions"] = Value::String(instructions.join("\n\n"));
        }
        result
    }

    fn call_tool(&mut self, caller: Caller, params: Params) {
        self.try_call_tool(caller, params, 0);
    }

    /// Routes a tool call. A call to a tool whose backend is down (or whose backend cannot be written
    /// to) has not reached the tool, so it is tried again later within the retry policy.
    fn try_call_tool(&mut self, caller: Caller, params: Params, attempt: u32) {
        let name = params.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
        let backend = match self.catalog.tool(&name).cloned() {
            Some(route) => {
                let mut forwarded = params.clone();
                forwarded.insert("name".into(), Value::String(route.name));
                match self.try_forward(caller, route.backend, "tools/call", forwarded) {
                    Ok(Some(key)) => return self.routing.keep_for_retry(key, params, attempt),
                    Ok(None) => return,
                    Err(caller) => return self.retry_or_fail(caller, params, route.backend, attempt),
                }
            }
            None => self.catalog.withdrawn_tool(&name),
        };
        match backend {
            Some(backend) => self.retry_or_fail(caller, params, backend, attempt),
            None => self.answer_error(&caller, code::INVALID_PARAMS, &format!("Unknown tool: '{name}'")),
        }
    }

    /// A request that a remote backend could not be sent: a tool call is tried again within its retry
    /// policy (it cannot have run); anything else fails at once.
    pub(super) fn undelivered(&mut self, backend: BackendId, id: &Value) {
        let Some(entry) = id.as_u64().and_then(|id| self.routing.close((backend, id))) else { return };
        match (entry.origin, entry.retry) {
            (Origin::Client { caller, .. }, Some((params, attempt))) => self.retry_or_fail(caller, params, backend, attempt),
            (Origin::Client { caller, .. }, None) => {
                let why = format!("server '{}' cannot be reached", self.backend_key(backend));
                self.answer_error(&caller, code::BACKEND_UNAVAILABLE, &why);
            }
            (Origin::Internal(_), _) => {} // The connection's end follows, and with it a restart.
        }
    }

    fn retry_or_fail(&mut self, caller: Caller, params: Params, backend: BackendId, attempt: u32) {
        let policy = self.retry_policy(backend);
        if attempt < policy.max_retries {
            let base = policy.base_delay;
            let delay = base.saturating_mul(1 << attempt.min(16)) + base.mul_f64(0.5 * crate::random::unit());
            self.retries.push(Retry { at: Instant::now() + delay, caller, params, attempt: attempt + 1 });
            return;
        }
        let b = &self.backends[backend.0];
        let why = match &b.state {
            State::Failed(why) => why.clone(),
            State::Starting => "starting".to_owned(),
            State::Ready | State::Disabled | State::Removed => "not connected".to_owned(),
        };
        let tries = if attempt > 0 { format!(" (tried {} times)", attempt + 1) } else { String::new() };
        let message = format!("server '{}' is unavailable: {why}{tries}", b.config.key);
        // Counted like any failed call, so an outage shows in the error rate.
        self.metrics.record(backend, "tools/call", true, std::time::Duration::ZERO);
        self.answer_error(&caller, code::BACKEND_UNAVAILABLE, &message);
    }

    fn retry_policy(&self, backend: BackendId) -> crate::settings::RetryPolicy {
        let retries = &self.settings.retries;
        match self.backends[backend.0].config.transport {
            crate::config::Transport::Stdio(_) => retries.stdio,
            crate::config::Transport::Sse(_) => retries.sse,
            crate::config::Transport::StreamableHttp(_) => retries.http,
        }
    }

    /// Tries the tool calls whose retry time has come.
    pub(super) fn retry_due(&mut self, now: Instant) {
        let (due, later): (Vec<Retry>, Vec<Retry>) = std::mem::take(&mut self.retries).into_iter().partition(|r| r.at <= now);
        self.retries = later;
        for retry in due {
            self.try_call_tool(retry.caller, retry.params, retry.attempt);
        }
    }

    fn get_prompt(&mut self, caller: Caller, mut params: Params) {
        let name = params.get("name").and_then(Value::as_str).unwrap_or_default();
        let Some(route) = self.catalog.prompt(name).cloned() else {
            return self.answer_error(&caller, code::INVALID_PARAMS, &format!("Unknown prompt: '{name}'"));
        };
        params.insert("name".into(), Value::String(route.name));
        self.forward(caller, route.backend, "prompts/get", params);
    }

    /// Forwards a request about one resource URI to the backend that serves it.
    fn by_uri(&mut self, caller: Caller, method: &str, params: Params) {
        match self.uri_owner(&params) {
            Ok(backend) => self.forward(caller, backend, method, params),
            Err(why) => self.answer_error(&caller, code::RESOURCE_NOT_FOUND, &why),
        }
    }

    fn uri_owner(&self, params: &Params) -> Result<BackendId, String> {
        let uri = params.get("uri").and_then(Value::as_str).unwrap_or_default();
        self.catalog.resource_owner(uri).ok_or_else(|| format!("Unknown resource: '{uri}'"))
    }

    /// Several clients may subscribe to one URI: the backend is subscribed by the first and
    /// unsubscribed after the last, and the others are answered by the proxy.
    fn subscribe(&mut self, caller: Caller, params: Params) {
        if let Err(why) = self.uri_owner(&params) {
            return self.answer_error(&caller, code::RESOURCE_NOT_FOUND, &why);
        }
        let uri = params.get("uri").and_then(Value::as_str).unwrap_or_default().to_owned();
        let subscribers = self.subscribers.entry(uri).or_default();
        let first = subscribers.is_empty();
        if !subscribers.contains(&caller.client) {
            subscribers.push(caller.client);
        }
        if first {
            self.by_uri(caller, "resources/subscribe", params);
        } else {
            self.answer(&caller, &json!({}));
        }
    }

    fn unsubscribe(&mut self, caller: Caller, params: Params) {
        let uri = params.get("uri").and_then(Value::as_str).unwrap_or_default();
        let last = match self.subscribers.get_mut(uri) {
            Some(subscribers) => {
                subscribers.retain(|c| *c != caller.client);
                subscribers.is_empty()
            }
            None => false,
        };
        if last {
            self.subscribers.remove(uri);
            self.by_uri(caller, "resources/unsubscribe", params);
        } else {
            self.answer(&caller, &json!({}));
        }
    }

    /// `completion/complete` names a prompt or a resource in `ref`; it goes where that one lives.
    fn complete(&mut self, caller: Caller, mut params: Params) {
        let reference = params.get("ref").cloned().unwrap_or_default();
        let target = match reference.get("type").and_then(Value::as_str) {
            Some("ref/prompt") => {
                let name = reference.get("name").and_then(Value::as_str).unwrap_or_default();
                self.catalog.prompt(name).cloned().map(|route| {
                    params.insert("ref".into(), json!({ "type": "ref/prompt", "name": route.name }));
                    route.backend
                })
            }
            Some("ref/resource") => {
                let uri = reference.get("uri").and_then(Value::as_str).unwrap_or_default();
                self.catalog.resource_owner(uri)
            }
            _ => None,
        };
        match target {
            Some(backend) => self.forward(caller, backend, "completion/complete", params),
            None => self.answer_error(&caller, code::INVALID_PARAMS, &format!("Unknown completion ref: {reference}")),
        }
    }

    /// The level is set on every backend that logs, and on any that starts later; the last client to
    /// set it wins.
    fn set_level(&mut self, caller: Caller, params: Params) {
        self.log_level = params.get("level").cloned();
        let targets: Vec<BackendId> = (0..self.backends.len())
            .map(BackendId)
            .filter(|b| self.backends[b.0].state == State::Ready && self.backends[b.0].has_capability("logging"))
            .collect();
        for backend in targets {
            self.request_internal(backend, Internal::Ignore, "logging/setLevel", Some(Value::Object(params.clone())));
        }
        self.answer(&caller, &json!({}));
    }

    /// Sends a client's request to its backend, or answers with an error when the backend is gone.
    fn forward(&mut self, caller: Caller, backend: BackendId, method: &str, params: Params) {
        if let Err(caller) = self.try_forward(caller, backend, method, params) {
            let why = format!("server '{}' is not connected", self.backend_key(backend));
            self.answer_error(&caller, code::BACKEND_UNAVAILABLE, &why);
        }
    }

    /// Sends a client's request to a backend under a fresh id, with the client's progress token
    /// swapped for one of the proxy's. Returns the request's key when it was sent, nothing when it was
    /// answered here (a limit), and gives the caller back when the backend cannot be written to.
    fn try_forward(&mut self, caller: Caller, backend: BackendId, method: &str, mut params: Params) -> Result<Option<Key>, Caller> {
        // A second request under an id still in flight would make the two indistinguishable (for
        // cancellation, and for the answer's way back).
        if self.routing.find_client_request(caller.client, &caller.id).is_some() {
            self.answer_error(&caller, code::INVALID_REQUEST, &format!("request id {} is already in use", caller.id));
            return Ok(None);
        }
        let limit = self.settings.max_in_flight;
        if self.routing.in_flight(backend) >= limit {
            let why = format!("server '{}' has {limit} requests in flight, the limit; try again later", self.backend_key(backend));
            log::warn!("{why}");
            self.metrics.record(backend, method, true, std::time::Duration::ZERO);
            self.answer_error(&caller, code::BACKEND_UNAVAILABLE, &why);
            return Ok(None);
        }
        let progress_token = params.get("_meta").and_then(|m| m.get("progressToken")).cloned();
        let origin = Origin::Client { caller: caller.clone(), progress_token };
        let timeout = self.timeout_for(backend);
        let (backend_id, token) = self.routing.open(backend, origin, method, timeout);
        if let (Some(token), Some(Value::Object(meta))) = (token, params.get_mut("_meta")) {
            meta.insert("progressToken".into(), Value::from(token));
        }
        let msg = Message::request(Value::from(backend_id), method, Some(raw(&Value::Object(params))));
        if self.send_to_backend(backend, msg) {
            Ok(Some((backend, backend_id)))
        } else {
            self.routing.close((backend, backend_id));
            Err(caller)
        }
    }

    fn client_notification(&mut self, client: ClientId, msg: &Message) {
        match msg.method() {
            "notifications/initialized" => {
                if let Some(c) = self.clients.get_mut(&client) {
                    c.initialized = true;
                }
            }
            "notifications/cancelled" => {
                let params = msg.params_object().unwrap_or_default();
                let Some(request_id) = params.get("requestId") else { return };
                // Not sent yet (held for start-up, waiting for a retry): it is simply dropped.
                let ours = |caller: &Caller| caller.client == client && &caller.id == request_id;
                self.held.retain(|(caller, _)| !ours(caller));
                self.retries.retain(|r| !ours(&r.caller));
                if let Some(key) = self.routing.find_client_request(client, request_id) {
                    let reason = params.get("reason").and_then(Value::as_str).unwrap_or("cancelled by the client");
                    self.cancel_at_backend(key, reason);
                }
            }
            other => log::debug!("client {}: notification {other} not relayed", client.0),
        }
    }

    /// A client's answer to a request a backend sent it through the proxy.
    fn client_response(&mut self, client: ClientId, mut msg: Message) {
        // Only the client a request was sent to may answer it: ids are sequential, so easy to guess.
        let proxy_id = msg.id.as_ref().and_then(Value::as_u64).filter(|id| self.upstream.get(id).is_some_and(|u| u.client == client));
        let Some(upstream) = proxy_id.and_then(|id| self.upstream.remove(&id)) else {
            log::debug!("client {}: response to an unknown request {:?}", client.0, msg.id);
            return;
        };
        msg.id = Some(upstream.backend_id);
        self.send_to_backend(upstream.backend, msg);
    }

    pub(super) fn client_gone(&mut self, client: ClientId) {
        let Some(record) = self.clients.remove(&client) else { return };
        if let Some(session) = &record.session {
            self.sessions.remove(session);
        }
        log::debug!("client {} gone", client.0);
        self.held.retain(|(caller, _)| caller.client != client);
        self.retries.retain(|r| r.caller.client != client);
        for key in self.routing.keys_for_client(client) {
            self.cancel_at_backend(key, "the client disconnected");
        }
        let orphaned: Vec<u64> = self.upstream.iter().filter(|(_, u)| u.client == client).map(|(id, _)| *id).collect();
        for id in orphaned {
            if let Some(u) = self.upstream.remove(&id) {
                let msg = Message::error_response(u.backend_id, code::INTERNAL_ERROR, "the client disconnected");
                self.send_to_backend(u.backend, msg);
            }
        }
        self.drop_subscriptions(client);
        if self.clients.is_empty() && self.settings.exit_when_no_clients {
            self.begin_shutdown();
        }
    }

    fn drop_subscriptions(&mut self, client: ClientId) {
        let mut emptied = Vec::new();
        for (uri, subscribers) in &mut self.subscribers {
            subscribers.retain(|c| *c != client);
            if subscribers.is_empty() {
                emptied.push(uri.clone());
            }
        }
        for uri in emptied {
            self.subscribers.remove(&uri);
            if let Some(backend) = self.catalog.resource_owner(&uri) {
                self.request_internal(backend, Internal::Ignore, "resources/unsubscribe", Some(json!({ "uri": uri })));
            }
        }
    }

    /// Ends the start-up wait once no backend is starting or the timeout has passed, and answers the
    /// requests held meanwhile.
    pub(super) fn check_settled(&mut self, now: Instant) {
        let Some(deadline) = self.settle_by else { return };
        let starting: Vec<&str> = self.backends.iter().filter(|b| b.state == State::Starting).map(|b| b.config.key.as_str()).collect();
        if !starting.is_empty() && now < deadline {
            return;
        }
        if !starting.is_empty() {
            log::warn!("serving without servers still starting after {:?}: {}", self.settings.startup_timeout, starting.join(", "));
        }
        // No client said what it can do in time: backends go on without client capabilities.
        self.set_client_capabilities(json!({}));
        self.settle_by = None;
        for (caller, msg) in std::mem::take(&mut self.held) {
            self.client_request(caller, msg);
        }
    }
}
