//! What clients send: requests answered from the catalog or forwarded to the backend that owns the tool,
//! prompt or resource; notifications (cancellation); answers to backends' requests; and a client's end.
//!
//! Until start-up settles (every backend ready or failed, or the start-up timeout) requests other than
//! `ping` are held, so a client's first `initialize` and `tools/list` see every backend that could start
//! in time instead of an empty proxy. A tool call whose backend is down is retried within the
//! `RETRY_*` policy, since it cannot have run.

use super::backends::State;
use super::catalog::ListKind;
use super::clients::SessionLimits;
use super::requests::{Asker, Internal, Retry};
use super::routing::{Key, Origin};
use super::views::Checked;
use super::{bridge, Hub};
use crate::event::{Access, BackendId, Caller, ClientId, Era, ProfileId, Reply, ReplyTo, LATEST_PROTOCOL_VERSION, PROTOCOL_VERSIONS};
use crate::jsonrpc::{code, raw, raw_str, Kind, Message, Params};
use crate::modern;
use crossbeam_channel::Sender;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::time::{Duration, Instant};

impl Hub {
    /// An HTTP client asks for a session: refused by a limit, or accepted and bound to its owner.
    pub(super) fn open_session(
        &mut self,
        client: ClientId,
        session: String,
        outbox: Option<Sender<Message>>,
        access: Access,
        address: Option<IpAddr>,
    ) -> Reply {
        if self.shutdown.is_stopping() {
            return Reply::Refused(503, "the proxy is shutting down".into());
        }
        let profile = match self.views.resolve(access.profile.as_deref(), access.owner.as_deref()) {
            Ok(profile) => profile,
            Err((status, why)) => return Reply::Refused(status, why),
        };
        let owner = access.owner;
        let limits = SessionLimits {
            total: self.settings.max_sessions,
            per_key: self.settings.max_sessions_per_key,
            per_address: self.settings.max_sessions_per_address,
        };
        match self.clients.refusal(owner.as_deref(), address, limits) {
            Some((status, why)) => Reply::Refused(status, why),
            None => {
                self.clients.open_session(client, session, outbox, owner, address, profile);
                Reply::Accepted
            }
        }
    }

    /// The profile a request's path names, if it is one (a session of another is unknown there).
    fn claimed(&self, access: &Access) -> Option<ProfileId> {
        access.profile.as_deref().and_then(|name| self.views.id_of(name))
    }

    /// The client of a session, for a request that may use it: the credential that opened it, on its
    /// profile's path or the default one. A credential bound to a profile since the session began (a
    /// reload) may use none of its sessions of another profile: the client starts anew, under its binding.
    fn session_client(&self, session: &str, access: &Access) -> Option<ClientId> {
        let client = self.clients.by_session(session, access, self.claimed(access))?;
        match self.views.resolve(None, access.owner.as_deref()) {
            Ok(Some(bound)) if self.clients.profile(client) != Some(bound) => None,
            _ => Some(client),
        }
    }

    /// A session's new standing stream (Streamable HTTP `GET`), for its owner only.
    pub(super) fn open_stream(&mut self, session: &str, access: &Access, stream: u64, outbox: Sender<Message>) -> Reply {
        match self.session_client(session, access) {
            Some(client) => {
                self.clients.open_stream(client, stream, outbox);
                Reply::Accepted
            }
            None => Reply::UnknownSession,
        }
    }

    /// Streamable HTTP `DELETE`: its owner ends a session.
    pub(super) fn end_session(&mut self, session: &str, access: &Access) -> Reply {
        match self.session_client(session, access) {
            Some(client) => {
                self.client_gone(client);
                Reply::Accepted
            }
            None => Reply::UnknownSession,
        }
    }

    pub(super) fn on_client_message(&mut self, client: ClientId, msg: Message, reply: ReplyTo, era: Era) {
        let profile = self.clients.heard(client, era);
        match msg.kind() {
            Kind::Request => {
                if self.client_capabilities.is_none() {
                    if let Some(capabilities) = modern::declared_capabilities(&msg) {
                        self.set_client_capabilities(capabilities);
                    }
                }
                let caller = Caller { profile, ..Caller::of(&msg, client, reply, era) };
                self.client_request(caller, msg);
            }
            Kind::Notification => self.client_notification(client, &msg),
            Kind::Response => self.client_response(client, msg),
        }
    }

    /// A message posted over HTTP: accepted for a known session of the credential it came with, else
    /// refused so the client starts anew (another key's session is as unknown as a made-up one).
    pub(super) fn on_session_message(&mut self, session: &str, access: &Access, msg: Message, reply: Sender<Reply>, inline: bool) {
        let Some(client) = self.session_client(session, access) else {
            let _ = reply.send(Reply::UnknownSession);
            return;
        };
        if !matches!(msg.method(), "initialize" | "notifications/initialized") {
            self.clients.mark_used(client);
        }
        if msg.kind() == Kind::Request && inline {
            self.on_client_message(client, msg, ReplyTo::Request(reply), Era::Handshake);
        } else {
            let _ = reply.send(Reply::Accepted);
            self.on_client_message(client, msg, ReplyTo::Outbox, Era::Handshake);
        }
    }

    /// A request that belongs to no session: its client exists only for it, and hears everything on
    /// the request's own channel. Anything but a request has nobody to be about.
    pub(super) fn on_stateless_message(
        &mut self,
        client: ClientId,
        msg: Message,
        reply: Sender<Reply>,
        access: Access,
        param_headers: &[(String, String)],
    ) {
        match msg.kind() {
            Kind::Request => {
                let profile = match self.views.resolve(access.profile.as_deref(), access.owner.as_deref()) {
                    Ok(profile) => profile,
                    Err((status, why)) => return drop(reply.send(Reply::Refused(status, why))),
                };
                let owner = access.owner.map(std::sync::Arc::from);
                let caller = Caller { owner, profile, ..Caller::of(&msg, client, ReplyTo::Request(reply), Era::Modern) };
                if let Err(why) = self.check_param_headers(&msg, caller.profile, param_headers) {
                    return self.answer_error(&caller, code::HEADER_MISMATCH, &why);
                }
                self.client_request(caller, msg);
            }
            Kind::Notification | Kind::Response => drop(reply.send(Reply::Accepted)),
        }
    }

    /// A 2026-07-28 HTTP tool call's `Mcp-Param-*` headers must mirror the arguments its tool annotates
    /// (the spec asks it of every server that reads the body).
    fn check_param_headers(
        &self,
        msg: &Message,
        profile: Option<crate::event::ProfileId>,
        sent: &[(String, String)],
    ) -> Result<(), String> {
        if msg.method() != "tools/call" {
            return Ok(());
        }
        let Ok(params) = msg.params() else { return Ok(()) };
        let Some(name) = self.tool_in_profile(profile, &params.str("name").unwrap_or_default()) else { return Ok(()) };
        let mirrored = self.catalog.mirrored(&name);
        if mirrored.is_empty() {
            return Ok(());
        }
        let arguments = params.value("arguments").unwrap_or_default();
        crate::mcp_param::check(mirrored, &arguments, |name| sent.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()))
    }

    /// Forgets Streamable HTTP sessions with no stream, no request in flight and no message for the
    /// idle timeout, with everything they held (subscriptions, in-flight requests); and, much sooner,
    /// sessions never used after their `initialize` (a client opening sessions by the thousand must
    /// not hold the table for the idle timeout).
    pub(super) fn sweep_sessions(&mut self, now: Instant) {
        if now < self.sweep_at {
            return;
        }
        let (idle, unused) = (self.settings.session_idle_timeout, self.settings.session_unused_timeout);
        self.sweep_at = now + (idle.min(unused) / 10).clamp(Duration::from_millis(100), Duration::from_secs(30));
        let unused_sessions = self.clients.unused_sessions(now, unused);
        if !unused_sessions.is_empty() {
            log::info!("{} sessions expired unused {unused:?} after their initialize", unused_sessions.len());
        }
        for client in unused_sessions {
            self.client_gone(client);
        }
        for client in self.clients.idle_sessions(now, idle) {
            if !self.requests.has_work_for(client) && !self.has_waiting(client) {
                log::info!("session of client {} expired after {idle:?} idle", client.0);
                self.client_gone(client);
            }
        }
    }

    pub(super) fn client_request(&mut self, caller: Caller, msg: Message) {
        if self.shutdown.is_stopping() {
            return self.answer_error(&caller, code::BACKEND_UNAVAILABLE, "the proxy is shutting down");
        }
        if self.settle_by.is_some() && waits_for_backends(msg.method()) {
            return self.requests.hold(caller, msg);
        }
        let mut params = match msg.params() {
            Ok(params) => params,
            Err(why) => return self.answer_error(&caller, code::INVALID_PARAMS, &why),
        };
        if let Some(profile) = caller.profile {
            match self.through_profile(&caller, profile, msg.method(), &mut params) {
                Checked::Route => {}
                Checked::Answer(result) => return self.answer(&caller, result),
                Checked::Refuse(code, why) => return self.answer_error(&caller, code, &why),
            }
        }
        if bridge::may_need_input(msg.method()) && self.resume(&caller, &params) {
            return; // The retry of a call that was waiting for the client's input.
        }
        match msg.method() {
            "initialize" => {
                self.clients.set_capabilities(caller.client, params.value("capabilities").unwrap_or_default());
                let result = self.initialize_result(&params, caller.profile);
                self.answer(&caller, raw(&result));
                // From here on the client hears about list changes: the spec only holds back *requests*
                // until `notifications/initialized`, and waiting for it would lose changes in between.
                self.client_initialized(caller.client);
            }
            "ping" => self.answer(&caller, raw(&json!({}))),
            "server/discover" => self.answer(&caller, raw(&self.discover_result(caller.profile))),
            "subscriptions/listen" => self.listen(caller, &params),
            // Tasks are relayed in the handshake era only: a 2026-07-28 client is not shown tools it
            // could only call as tasks.
            "tools/list" if caller.era == Era::Modern => self.answer(&caller, self.catalog.tools_without_tasks()),
            "tools/list" => self.answer(&caller, self.catalog.list_result(ListKind::Tools)),
            // 2026-07-28 made tasks an extension, not wire-compatible with 2025-11-25's tasks (which have
            // `tasks/result` and no `tasks/update`); each era's other methods are unknown to it.
            "tasks/get" | "tasks/update" | "tasks/cancel" if caller.era == Era::Modern => {
                self.modern_task_request(caller, msg.method(), params);
            }
            "tasks/get" | "tasks/result" | "tasks/cancel" if caller.era == Era::Handshake => {
                self.task_request(caller, msg.method(), params);
            }
            "prompts/list" => self.answer(&caller, self.catalog.list_result(ListKind::Prompts)),
            "resources/list" => self.answer(&caller, self.catalog.list_result(ListKind::Resources)),
            "resources/templates/list" => self.answer(&caller, self.catalog.list_result(ListKind::Templates)),
            // A 2026-07-28 server must ignore the 2025-11-25 `task` member: a backend must not see it.
            "tools/call" if caller.era == Era::Modern => {
                params.remove("task");
                self.call_tool(caller, params, 0);
            }
            "tools/call" => self.call_tool(caller, params, 0),
            "prompts/get" => self.get_prompt(caller, params),
            "resources/read" => self.by_uri(caller, "resources/read", params),
            "resources/subscribe" => self.subscribe(caller, params),
            "resources/unsubscribe" => self.unsubscribe(caller, params),
            "completion/complete" => self.complete(caller, params),
            "logging/setLevel" => self.set_level(caller, &params),
            other => {
                let why = format!("method '{other}' is not supported by the proxy");
                self.answer_error(&caller, code::METHOD_NOT_FOUND, &why);
            }
        }
    }

    fn initialize_result(&self, params: &Params, profile: Option<ProfileId>) -> Value {
        let asked = params.str("protocolVersion").unwrap_or_default();
        let version = PROTOCOL_VERSIONS.iter().find(|v| **v == asked).copied().unwrap_or(LATEST_PROTOCOL_VERSION);
        let capabilities = self.capabilities(profile);
        let mut result = json!({ "protocolVersion": version, "capabilities": capabilities, "serverInfo": modern::server_info() });
        if let Some(instructions) = self.instructions(profile) {
            result["instructions"] = Value::String(instructions);
        }
        result
    }

    /// The answer to `server/discover` (the frontend adds `resultType`, caching hints and `serverInfo`).
    /// It is never held for start-up: clients probe with a short timeout. While backends are still
    /// starting it names every capability the proxy can serve, since it cannot know yet which it will.
    fn discover_result(&self, profile: Option<ProfileId>) -> Value {
        let mut capabilities = match self.settle_by {
            Some(_) => json!({
                "tools": { "listChanged": true },
                "prompts": { "listChanged": true },
                "resources": { "listChanged": true, "subscribe": true },
                "completions": {},
            }),
            None => self.capabilities(profile),
        };
        // The 2025-11-25 tasks capability has no place in 2026-07-28's: tasks became an extension,
        // relayed where a 2026-07-28 backend takes it.
        if let Some(capabilities) = capabilities.as_object_mut() {
            capabilities.remove("tasks");
        }
        let task_extension = ["extensions", modern::meta::TASKS_EXTENSION];
        if self.shown_backends(profile).iter().any(|b| b.is_modern() && b.capability_flag_path(&task_extension)) {
            capabilities["extensions"] = json!({ modern::meta::TASKS_EXTENSION: {} });
        }
        let mut result = json!({ "supportedVersions": modern::VERSIONS, "capabilities": capabilities });
        if let Some(instructions) = self.instructions(profile) {
            result["instructions"] = Value::String(instructions);
        }
        result
    }

    /// What the aggregate (or a profile's part of it) can do: the union of the ready backends'
    /// capabilities, as the proxy serves them.
    fn capabilities(&self, profile: Option<ProfileId>) -> Value {
        let shown = self.shown_backends(profile);
        let any = |cap: &str| shown.iter().any(|b| b.has_capability(cap));
        let mut capabilities = json!({ "tools": { "listChanged": true } });
        if any("prompts") {
            capabilities["prompts"] = json!({ "listChanged": true });
        }
        if any("resources") {
            let subscribe = shown.iter().any(|b| b.capability_flag("resources", "subscribe"));
            capabilities["resources"] = json!({ "listChanged": true, "subscribe": subscribe });
        }
        if any("logging") {
            capabilities["logging"] = json!({});
        }
        if any("completions") {
            capabilities["completions"] = json!({});
        }
        // Tool calls run as tasks are relayed (without tasks/list: a backend's list holds every client's).
        if shown.iter().any(|b| b.capability_flag_path(&["tasks", "requests", "tools", "call"])) {
            capabilities["tasks"] = json!({ "cancel": {}, "requests": { "tools": { "call": {} } } });
        }
        capabilities
    }

    /// The ready backends' instructions (those a profile shows), each under its server's name.
    fn instructions(&self, profile: Option<ProfileId>) -> Option<String> {
        let parts: Vec<String> = self
            .shown_backends(profile)
            .iter()
            .filter_map(|b| b.instructions().map(|text| format!("## {}\n{text}", b.config.key)))
            .collect();
        (!parts.is_empty()).then(|| parts.join("\n\n"))
    }

    /// The ready servers a client sees: all, or those its profile shows.
    fn shown_backends(&self, profile: Option<ProfileId>) -> Vec<&super::backends::Backend> {
        self.backends.iter().filter(|(id, b)| b.is_ready() && self.views.shows(profile, *id)).map(|(_, b)| b).collect()
    }

    /// "Unknown tool", and when the name has the prefix of a configured server that is not connected
    /// (so its tools are not known yet), why that server is not.
    fn unknown_tool(&self, name: &str) -> String {
        let separator = &self.settings.separator;
        let down = self.backends.iter().find(|(_, b)| {
            matches!(b.state, State::Starting | State::Failed(_) | State::NeedsLogin(_))
                && b.instance.is_none()
                && name.strip_prefix(b.config.prefix()).is_some_and(|rest| rest.starts_with(separator.as_str()))
        });
        match down {
            Some((id, b)) => {
                format!("Unknown tool: '{name}' (server '{}' is not connected: {})", b.config.key, self.backends.unavailable_reason(id))
            }
            None => format!("Unknown tool: '{name}'"),
        }
    }

    /// Routes a tool call. A call to a tool whose backend is down (or whose backend cannot be written
    /// to) has not reached the tool, so it is tried again later within the retry policy.
    fn call_tool(&mut self, caller: Caller, params: Params, attempt: u32) {
        let name = params.str("name").unwrap_or_default();
        let Some((backend, renamed)) = self.catalog.tool(&name).map(|route| (route.backend, raw_str(&route.name))) else {
            return match self.catalog.withdrawn_tool(&name) {
                Some(backend) => self.retry_or_fail(caller, params, backend, attempt),
                None => self.answer_error(&caller, code::INVALID_PARAMS, &self.unknown_tool(&name)),
            };
        };
        // The backend gets its own name for the tool; the client's params (raw text, one level parsed)
        // stay as they are, kept for a retry.
        match self.route(caller, backend, "tools/call", &params, Some(&renamed), Some(attempt)) {
            Ok(Some(key)) => self.requests.table.keep_for_retry(key, params, attempt),
            Ok(None) => {}
            Err(caller) => self.retry_or_fail(caller, params, backend, attempt),
        }
    }

    /// A client finished its handshake: backends' requests kept for it are delivered now.
    fn client_initialized(&mut self, client: ClientId) {
        self.clients.mark_initialized(client);
        for (reply, msg) in self.requests.take_held_until_initialized(client) {
            self.deliver(client, &reply, msg);
        }
    }

    /// A request that a remote backend could not be sent: a tool call is tried again within its retry
    /// policy (it cannot have run); anything else fails at once.
    pub(super) fn undelivered(&mut self, backend: BackendId, id: &Value) {
        let Some(entry) = id.as_u64().and_then(|id| self.requests.table.close((backend, id))) else { return };
        match (entry.origin, entry.retry) {
            (Origin::Client { caller, .. }, Some((params, attempt))) => self.retry_or_fail(caller, params, backend, attempt),
            (Origin::Client { caller, .. }, None) => {
                let why = format!("server '{}' cannot be reached", self.backends.key(backend));
                self.answer_error(&caller, code::BACKEND_UNAVAILABLE, &why);
            }
            (Origin::Internal(_), _) => {} // The connection's end follows, and with it a restart.
        }
    }

    pub(super) fn retry_or_fail(&mut self, caller: Caller, params: Params, backend: BackendId, attempt: u32) {
        let policy = self.backends.retry_policy(backend, &self.settings.retries);
        if attempt < policy.max_retries {
            let base = policy.base_delay;
            let delay = base.saturating_mul(1 << attempt.min(16)) + base.mul_f64(0.5 * crate::random::unit());
            return self.requests.schedule_retry(Retry { at: Instant::now() + delay, caller, params, attempt: attempt + 1 });
        }
        let tries = if attempt > 0 { format!(" (tried {} times)", attempt + 1) } else { String::new() };
        let message =
            format!("server '{}' is unavailable: {}{tries}", self.backends.key(backend), self.backends.unavailable_reason(backend));
        // Counted like any failed call, so an outage shows in the error rate.
        self.metrics.record(backend, "tools/call", true, Duration::ZERO);
        self.answer_error(&caller, code::BACKEND_UNAVAILABLE, &message);
    }

    /// Tries the tool calls whose retry time has come.
    pub(super) fn retry_due(&mut self, now: Instant) {
        for retry in self.requests.take_due_retries(now) {
            self.call_tool(retry.caller, retry.params, retry.attempt);
        }
    }

    fn get_prompt(&mut self, caller: Caller, mut params: Params) {
        let name = params.str("name").unwrap_or_default();
        let Some(route) = self.catalog.prompt(&name).cloned() else {
            return self.answer_error(&caller, code::INVALID_PARAMS, &format!("Unknown prompt: '{name}'"));
        };
        params.set_str("name", &route.name);
        self.forward(caller, route.backend, "prompts/get", params);
    }

    /// Forwards a request about one resource URI to the backend that serves it, in the URI's
    /// normalised spelling: the one its server's filter was matched against.
    fn by_uri(&mut self, caller: Caller, method: &str, mut params: Params) {
        match self.uri_owner(&mut params) {
            Ok((backend, _)) => self.forward(caller, backend, method, params),
            Err((code, why)) => self.answer_error(&caller, code, &why),
        }
    }

    /// The backend that serves `params.uri` and the URI normalised, which replaces the client's
    /// spelling in `params`; or the error to answer with (a URI that cannot be normalised is invalid).
    fn uri_owner(&self, params: &mut Params) -> Result<(BackendId, String), (i64, String)> {
        let uri = params.str("uri").unwrap_or_default();
        let normal = crate::uri::normalize(&uri).map_err(|e| (code::INVALID_PARAMS, format!("Invalid resource URI '{uri}': {e}")))?;
        let backend =
            self.catalog.resource_owner(&normal).ok_or_else(|| (code::RESOURCE_NOT_FOUND, format!("Unknown resource: '{uri}'")))?;
        params.set_str("uri", &normal);
        Ok((backend, normal))
    }

    /// Several clients may subscribe to one URI: a shared backend is subscribed by the first and
    /// unsubscribed after the last, and the others are answered by the proxy; an isolated server's
    /// instance is subscribed for its own client.
    fn subscribe(&mut self, caller: Caller, mut params: Params) {
        let (server, uri) = match self.uri_owner(&mut params) {
            Ok(owner) => owner,
            Err((code, why)) => return self.answer_error(&caller, code, &why),
        };
        let first = self.subscriptions.add(&uri, caller.client);
        if (first || self.backends.is_isolated(server)) && !self.owned_by_modern(&uri) {
            // The backend's own answer goes to the client that subscribed.
            return self.by_uri(caller, "resources/subscribe", params);
        }
        self.subscribe_at_backend(&uri, caller.client, first);
        self.answer(&caller, raw(&json!({})));
    }

    fn unsubscribe(&mut self, caller: Caller, mut params: Params) {
        let raw_uri = params.str("uri").unwrap_or_default();
        // Subscriptions are kept by normalised URI; one that cannot be normalised was never subscribed.
        let uri = crate::uri::normalize(&raw_uri).unwrap_or(raw_uri);
        params.set_str("uri", &uri);
        let last = self.subscriptions.remove(&uri, caller.client);
        // An isolated server's instance is asked by its own client, if it has one; a shared backend, by
        // the last subscriber.
        let forward = match self.catalog.resource_owner(&uri).filter(|server| self.backends.is_isolated(*server)) {
            Some(server) => self.backends.instances.find(server, caller.client).is_some(),
            None => last,
        };
        if forward && !self.owned_by_modern(&uri) {
            return self.by_uri(caller, "resources/unsubscribe", params);
        }
        self.unsubscribe_at_backend(&uri, caller.client, last);
        self.answer(&caller, raw(&json!({})));
    }

    /// Whether a URI's backend speaks 2026-07-28, which subscribes through a listen, not a request.
    fn owned_by_modern(&self, uri: &str) -> bool {
        self.catalog.resource_owner(uri).and_then(|b| self.backends.get(b)).is_some_and(|b| b.is_modern())
    }

    /// `completion/complete` names a prompt or a resource in `ref`; it goes where that one lives.
    fn complete(&mut self, caller: Caller, mut params: Params) {
        let reference = params.value("ref").unwrap_or_default();
        let target = match reference.get("type").and_then(Value::as_str) {
            Some("ref/prompt") => {
                let name = reference.get("name").and_then(Value::as_str).unwrap_or_default();
                self.catalog.prompt(name).cloned().map(|route| {
                    params.set("ref", raw(&json!({ "type": "ref/prompt", "name": route.name })));
                    route.backend
                })
            }
            Some("ref/resource") => {
                let uri = reference.get("uri").and_then(Value::as_str).unwrap_or_default();
                crate::uri::normalize(uri).ok().and_then(|uri| {
                    let backend = self.catalog.resource_owner(&uri)?;
                    params.set("ref", raw(&json!({ "type": "ref/resource", "uri": uri })));
                    Some(backend)
                })
            }
            _ => None,
        };
        match target {
            Some(backend) => self.forward(caller, backend, "completion/complete", params),
            None => self.answer_error(&caller, code::INVALID_PARAMS, &format!("Unknown completion ref: {reference}")),
        }
    }

    /// Each client has its own level: it hears no log message below it. Shared backends that log (and
    /// any that start later) are set to the lowest level any client asked for, so every client hears
    /// what it asked for; a client's own instances, to its own level.
    fn set_level(&mut self, caller: Caller, params: &Params) {
        let level = params.str("level").unwrap_or_default();
        let Some(severity) = super::clients::severity(&level) else {
            let why = format!("'{level}' is not a log level (expected one of {})", super::clients::LOG_LEVELS.join(", "));
            return self.answer_error(&caller, code::INVALID_PARAMS, &why);
        };
        if let Some(lowest) = self.clients.set_log_level(caller.client, severity) {
            for backend in self.backends.ready_handshake_with("logging") {
                self.request_internal(backend, Internal::Ignore, "logging/setLevel", Some(raw(&json!({ "level": lowest }))));
            }
        }
        // The client's own instances are set to its own level.
        for instance in self.backends.instances.of_client(caller.client) {
            if self.backends.get(instance).is_some_and(|b| b.is_ready() && !b.is_modern() && b.has_capability("logging")) {
                self.request_internal(instance, Internal::Ignore, "logging/setLevel", Some(raw(&json!({ "level": level }))));
            }
        }
        self.answer(&caller, raw(&json!({})));
    }

    /// Sends a client's request to its backend, or answers with an error when the backend is gone.
    pub(super) fn forward(&mut self, caller: Caller, backend: BackendId, method: &str, params: Params) {
        if let Err(caller) = self.route(caller, backend, method, &params, None, None) {
            let why = format!("server '{}' is not connected", self.backends.key(backend));
            self.answer_error(&caller, code::BACKEND_UNAVAILABLE, &why);
        }
    }

    /// Sends a client's request to a backend under a fresh id, with the client's progress token
    /// swapped for one of the proxy's and `name` replaced when given. Returns the request's key when it
    /// was sent, nothing when it was answered here (a limit), and gives the caller back when the backend
    /// cannot be written to.
    pub(super) fn try_forward(
        &mut self,
        caller: Caller,
        backend: BackendId,
        method: &str,
        params: &Params,
        name: Option<&RawValue>,
    ) -> Result<Option<Key>, Caller> {
        // A second request under an id still in flight would make the two indistinguishable (for
        // cancellation, and for the answer's way back).
        if self.requests.table.find_client_request(caller.client, &caller.id).is_some() {
            self.answer_error(&caller, code::INVALID_REQUEST, &format!("request id {} is already in use", caller.id));
            return Ok(None);
        }
        let limit = self.settings.max_in_flight;
        if self.requests.table.in_flight(backend) >= limit {
            let why = format!("server '{}' has {limit} requests in flight, the limit; try again later", self.backends.key(backend));
            log::warn!("{why}");
            self.metrics.record(self.backends.server_of(backend), method, true, Duration::ZERO);
            self.answer_error(&caller, code::BACKEND_UNAVAILABLE, &why);
            return Ok(None);
        }
        let mut meta = params.value("_meta");
        let progress_token = meta.as_ref().and_then(|m| m.get("progressToken")).cloned();
        let origin = Origin::Client { caller: caller.clone(), progress_token };
        let timeout = self.backends.timeout(backend, self.settings.request_timeout);
        let (backend_id, token) = self.requests.table.open(backend, origin, method, timeout);
        // The envelope is the backend connection's business (`backend::Dialect`); here only the progress
        // token is swapped, and a 2026-07-28 backend is given the log level clients set the handshake way.
        let log_level = self.clients.log_level.as_ref().filter(|_| self.backends.get(backend).is_some_and(|b| b.is_modern()));
        let mut new_meta = None;
        if token.is_some() || log_level.is_some() {
            let mut meta = match meta.take() {
                Some(Value::Object(meta)) => meta,
                _ => serde_json::Map::new(),
            };
            if let Some(token) = token {
                meta.insert("progressToken".into(), Value::from(token));
            }
            if let Some(level) = log_level {
                meta.entry(modern::meta::LOG_LEVEL).or_insert_with(|| level.clone());
            }
            new_meta = Some(raw(&Value::Object(meta)));
        }
        let replaced: Vec<(&str, &RawValue)> =
            [name.map(|n| ("name", n)), new_meta.as_deref().map(|m| ("_meta", m))].into_iter().flatten().collect();
        let msg = Message::request(Value::from(backend_id), method, Some(params.to_raw_with(&replaced)));
        // A 2026-07-28 backend may answer with input_required: the call may have to be sent again as
        // the backend got it.
        let resend = (bridge::may_need_input(method) && self.backends.get(backend).is_some_and(|b| b.is_modern())).then(|| {
            let mut forwarded = params.clone();
            for (key, value) in &replaced {
                forwarded.set(key, (*value).to_owned());
            }
            forwarded
        });
        if self.backends.send(backend, msg) {
            if let Some(forwarded) = resend {
                self.requests.table.keep_for_resend((backend, backend_id), forwarded, 0);
            }
            Ok(Some((backend, backend_id)))
        } else {
            self.requests.table.close((backend, backend_id));
            Err(caller)
        }
    }

    fn client_notification(&mut self, client: ClientId, msg: &Message) {
        match msg.method() {
            "notifications/initialized" => self.client_initialized(client),
            "notifications/cancelled" => {
                let params = msg.params().unwrap_or_default();
                let Some(request_id) = params.value("requestId") else { return };
                if self.end_listen(client, &request_id) || self.cancel_bridge(client, &request_id) {
                    return;
                }
                // Not sent yet (held for start-up, waiting for a retry or an instance): it is simply dropped.
                self.requests.drop_unsent(client, &request_id);
                self.drop_waiting(client, &request_id);
                if let Some(key) = self.requests.table.find_client_request(client, &request_id) {
                    let reason = params.str("reason").unwrap_or_else(|| "cancelled by the client".to_owned());
                    self.cancel_at_backend(key, &reason);
                }
            }
            // The backends that asked this client for its roots want to know they changed.
            "notifications/roots/list_changed" => {
                for backend in self.requests.roots_askers(client) {
                    self.backends.send(backend, Message::notification("notifications/roots/list_changed", None));
                }
            }
            other => log::debug!("client {}: notification {other} not relayed", client.0),
        }
    }

    /// A client's answer to a request a backend sent it through the proxy.
    fn client_response(&mut self, client: ClientId, mut msg: Message) {
        let Some(upstream) = self.requests.answered_upstream(client, msg.id.as_ref()) else {
            log::debug!("client {}: response to an unknown request {:?}", client.0, msg.id);
            return;
        };
        match upstream.asker {
            Asker::Backend { backend, backend_id } => {
                msg.id = Some(backend_id);
                self.backends.send(backend, msg);
            }
            Asker::Bridge { bridge, key } => self.input_answered(bridge, key, msg),
        }
    }

    /// A client is gone: what it was waiting for is cancelled at the backends, what backends were
    /// waiting for from it fails, and its subscriptions end.
    pub(super) fn client_gone(&mut self, client: ClientId) {
        // A client of one stateless request was never registered; its request is cancelled all the same.
        let known = self.clients.remove(client);
        log::debug!("client {} gone", client.0);
        // A session's tasks go with it; a sessionless request's stay for its credential's next request.
        if known {
            self.modern_tasks.forget_client(client);
        }
        self.end_listens_of(client);
        self.tasks.forget_client(client);
        self.requests.drop_unsent_of(client);
        for key in self.requests.table.keys_for_client(client) {
            self.cancel_at_backend(key, "the client disconnected");
        }
        for upstream in self.requests.take_upstream_of(client) {
            if let Asker::Backend { backend, backend_id } = upstream.asker {
                self.backends.send(backend, Message::error_response(backend_id, code::INTERNAL_ERROR, "the client disconnected"));
            }
        }
        self.forget_bridges_of(client);
        self.stop_instances_of(client);
        for uri in self.subscriptions.remove_client(client) {
            self.unsubscribe_at_backend(&uri, client, true);
        }
        if known && self.clients.is_empty() && self.settings.exit_when_no_clients {
            self.begin_shutdown();
        }
    }

    /// Ends the start-up wait once no backend is starting or the timeout has passed, and answers the
    /// requests held meanwhile.
    pub(super) fn check_settled(&mut self, now: Instant) {
        let Some(deadline) = self.settle_by else { return };
        let starting: Vec<&str> =
            self.backends.iter().filter(|(_, b)| b.state == super::backends::State::Starting).map(|(_, b)| b.config.key.as_str()).collect();
        if !starting.is_empty() && now < deadline {
            return;
        }
        if !starting.is_empty() {
            log::warn!("serving without servers still starting after {:?}: {}", self.settings.startup_timeout, starting.join(", "));
        }
        // No client said what it can do in time: backends go on without client capabilities.
        self.set_client_capabilities(json!({}));
        self.settle_by = None;
        for (caller, msg) in self.requests.take_held() {
            self.client_request(caller, msg);
        }
    }
}

/// Whether a request's answer depends on the backends, so it waits for start-up to settle. Requests the
/// proxy answers from its own state (`ping`, `server/discover`, unknown methods) never wait.
fn waits_for_backends(method: &str) -> bool {
    matches!(
        method,
        "initialize"
            | "tools/list"
            | "tools/call"
            | "prompts/list"
            | "prompts/get"
            | "resources/list"
            | "resources/templates/list"
            | "resources/read"
            | "resources/subscribe"
            | "resources/unsubscribe"
            | "completion/complete"
            | "logging/setLevel"
            | "subscriptions/listen"
            | "tasks/get"
            | "tasks/result"
            | "tasks/update"
            | "tasks/cancel"
    )
}
