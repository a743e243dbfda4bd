//! The client side of the dispatcher: what clients send, answered from the catalog or forwarded to the
//! backend that owns the tool, prompt or resource.
//!
//! Until start-up settles (every backend ready or failed, or the start-up timeout) requests other than
//! `ping` are held, so a client's first `initialize` and `tools/list` see every backend that could start
//! in time instead of an empty proxy.

use super::backends::State;
use super::routing::Origin;
use super::{BackendId, ClientId, Hub, Internal, LATEST_PROTOCOL_VERSION, PROTOCOL_VERSIONS};
use crate::jsonrpc::{code, raw, Kind, Message};
use serde_json::{json, Map, Value};
use std::time::Instant;

type Params = Map<String, Value>;

impl Hub {
    pub(super) fn from_client(&mut self, client: ClientId, msg: Message) {
        match msg.kind() {
            Kind::Request => self.client_request(client, msg),
            Kind::Notification => self.client_notification(client, &msg),
            Kind::Response => self.client_response(client, msg),
        }
    }

    fn client_request(&mut self, client: ClientId, msg: Message) {
        if self.settle_by.is_some() && msg.method() != "ping" {
            self.held.push((client, msg));
            return;
        }
        let id = msg.id.clone().unwrap_or(Value::Null);
        let params = match msg.params_object() {
            Ok(params) => params,
            Err(why) => return self.reply_error(client, id, code::INVALID_PARAMS, &why),
        };
        match msg.method() {
            "initialize" => {
                let result = self.initialize_result(&params);
                self.reply(client, id, &result);
            }
            "ping" => self.reply(client, id, &json!({})),
            "tools/list" => self.reply(client, id, &json!({ "tools": self.catalog.tools })),
            "prompts/list" => self.reply(client, id, &json!({ "prompts": self.catalog.prompts })),
            "resources/list" => self.reply(client, id, &json!({ "resources": self.catalog.resources })),
            "resources/templates/list" => {
                self.reply(client, id, &json!({ "resourceTemplates": self.catalog.templates }))
            }
            "tools/call" => self.call_tool(client, id, params),
            "prompts/get" => self.get_prompt(client, id, params),
            "resources/read" => self.by_uri(client, id, "resources/read", params),
            "resources/subscribe" => self.subscribe(client, id, params),
            "resources/unsubscribe" => self.unsubscribe(client, id, params),
            "completion/complete" => self.complete(client, id, params),
            "logging/setLevel" => self.set_level(client, id, params),
            other => {
                let why = format!("method '{other}' is not supported by the proxy");
                self.reply_error(client, id, code::METHOD_NOT_FOUND, &why);
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
        let instructions: Vec<String> = ready()
            .filter_map(|b| b.instructions().map(|text| format!("## {}\n{text}", b.config.key)))
            .collect();
        if !instructions.is_empty() {
            result["instructions"] = Value::String(instructions.join("\n\n"));
        }
        result
    }

    fn call_tool(&mut self, client: ClientId, id: Value, mut params: Params) {
        let name = params.get("name").and_then(Value::as_str).unwrap_or_default();
        let Some(route) = self.catalog.tool(name).cloned() else {
            return self.reply_error(client, id, code::INVALID_PARAMS, &format!("Unknown tool: '{name}'"));
        };
        params.insert("name".into(), Value::String(route.name));
        self.forward(client, id, route.backend, "tools/call", params);
    }

    fn get_prompt(&mut self, client: ClientId, id: Value, mut params: Params) {
        let name = params.get("name").and_then(Value::as_str).unwrap_or_default();
        let Some(route) = self.catalog.prompt(name).cloned() else {
            return self.reply_error(client, id, code::INVALID_PARAMS, &format!("Unknown prompt: '{name}'"));
        };
        params.insert("name".into(), Value::String(route.name));
        self.forward(client, id, route.backend, "prompts/get", params);
    }

    /// Forwards a request about one resource URI to the backend that serves it.
    fn by_uri(&mut self, client: ClientId, id: Value, method: &str, params: Params) {
        match self.uri_owner(&params) {
            Ok(backend) => self.forward(client, id, backend, method, params),
            Err(why) => self.reply_error(client, id, code::RESOURCE_NOT_FOUND, &why),
        }
    }

    fn uri_owner(&self, params: &Params) -> Result<BackendId, String> {
        let uri = params.get("uri").and_then(Value::as_str).unwrap_or_default();
        self.catalog.resource_owner(uri).ok_or_else(|| format!("Unknown resource: '{uri}'"))
    }

    /// Several clients may subscribe to one URI: the backend is subscribed by the first and
    /// unsubscribed after the last, and the others are answered by the proxy.
    fn subscribe(&mut self, client: ClientId, id: Value, params: Params) {
        let uri = params.get("uri").and_then(Value::as_str).unwrap_or_default().to_owned();
        let subscribers = self.subscribers.entry(uri).or_default();
        let first = subscribers.is_empty();
        if !subscribers.contains(&client) {
            subscribers.push(client);
        }
        if first {
            self.by_uri(client, id, "resources/subscribe", params);
        } else {
            self.reply(client, id, &json!({}));
        }
    }

    fn unsubscribe(&mut self, client: ClientId, id: Value, params: Params) {
        let uri = params.get("uri").and_then(Value::as_str).unwrap_or_default();
        let last = match self.subscribers.get_mut(uri) {
            Some(subscribers) => {
                subscribers.retain(|c| *c != client);
                subscribers.is_empty()
            }
            None => false,
        };
        if last {
            self.subscribers.remove(uri);
            self.by_uri(client, id, "resources/unsubscribe", params);
        } else {
            self.reply(client, id, &json!({}));
        }
    }

    /// `completion/complete` names a prompt or a resource in `ref`; it goes where that one lives.
    fn complete(&mut self, client: ClientId, id: Value, mut params: Params) {
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
            Some(backend) => self.forward(client, id, backend, "completion/complete", params),
            None => self.reply_error(client, id, code::INVALID_PARAMS, &format!("Unknown completion ref: {reference}")),
        }
    }

    /// The level is set on every backend that logs; the last client to set it wins.
    fn set_level(&mut self, client: ClientId, id: Value, params: Params) {
        let targets: Vec<BackendId> = (0..self.backends.len())
            .map(BackendId)
            .filter(|b| self.backends[b.0].state == State::Ready && self.backends[b.0].has_capability("logging"))
            .collect();
        for backend in targets {
            self.request_internal(backend, Internal::Ignore, "logging/setLevel", Some(Value::Object(params.clone())));
        }
        self.reply(client, id, &json!({}));
    }

    /// Sends a client's request to a backend under a fresh id, with the client's progress token
    /// swapped for one of the proxy's.
    fn forward(&mut self, client: ClientId, id: Value, backend: BackendId, method: &str, mut params: Params) {
        let progress_token = params.get("_meta").and_then(|m| m.get("progressToken")).cloned();
        let origin = Origin::Client { client, id: id.clone(), progress_token };
        let timeout = self.timeout_for(backend);
        let (backend_id, token) = self.routing.open(backend, origin, method, timeout);
        if let (Some(token), Some(Value::Object(meta))) = (token, params.get_mut("_meta")) {
            meta.insert("progressToken".into(), Value::from(token));
        }
        let msg = Message::request(Value::from(backend_id), method, Some(raw(&Value::Object(params))));
        if !self.send_to_backend(backend, msg) {
            self.routing.close((backend, backend_id));
            let why = format!("server '{}' is not connected", self.backend_key(backend));
            self.reply_error(client, id, code::BACKEND_UNAVAILABLE, &why);
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
        let proxy_id = msg.id.as_ref().and_then(Value::as_u64);
        let Some(upstream) = proxy_id.and_then(|id| self.upstream.remove(&id)) else {
            log::debug!("client {}: response to an unknown request {:?}", client.0, msg.id);
            return;
        };
        msg.id = Some(upstream.backend_id);
        self.send_to_backend(upstream.backend, msg);
    }

    pub(super) fn client_gone(&mut self, client: ClientId) {
        if self.clients.remove(&client).is_none() {
            return;
        }
        log::debug!("client {} gone", client.0);
        self.held.retain(|(c, _)| *c != client);
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
        let starting: Vec<&str> =
            self.backends.iter().filter(|b| b.state == State::Starting).map(|b| b.config.key.as_str()).collect();
        if !starting.is_empty() && now < deadline {
            return;
        }
        if !starting.is_empty() {
            log::warn!("serving without servers still starting after {:?}: {}", self.settings.startup_timeout, starting.join(", "));
        }
        self.settle_by = None;
        for (client, msg) in std::mem::take(&mut self.held) {
            self.client_request(client, msg);
        }
    }
}
