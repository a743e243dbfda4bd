//! `subscriptions/listen` (MCP 2026-07-28): a request that stays open and carries the notifications its
//! client asked for (list changes of the aggregate, updates of named resources), each tagged with the
//! listen request's id, until the client cancels it (stdio `notifications/cancelled`, HTTP: closing the
//! stream) or the proxy stops, which answers it.
//!
//! Resource URIs are subscribed at their backends through the same [`super::subscriptions`] table as
//! the handshake era's `resources/subscribe`, so one backend subscription serves every kind of client.

use super::catalog::ListKind;
use super::requests::Internal;
use super::Hub;
use crate::event::{BackendId, Caller, ClientId};
use crate::jsonrpc::{raw, Message, Params};
use crate::modern::meta::SUBSCRIPTION_ID;
use serde_json::{json, Value};
use std::collections::HashMap;

/// One open `subscriptions/listen` request and what it asked for.
pub(super) struct Listener {
    caller: Caller,
    tools: bool,
    prompts: bool,
    resources: bool,
    /// Resource URIs whose updates it hears.
    uris: Vec<String>,
}

impl Listener {
    fn wants(&self, kind: ListKind) -> bool {
        match kind {
            ListKind::Tools => self.tools,
            ListKind::Prompts => self.prompts,
            ListKind::Resources | ListKind::Templates => self.resources,
        }
    }

    /// A notification on this listen stream: `params` with the subscription id in `_meta`.
    fn tagged(&self, method: &str, params: Option<Params>) -> Message {
        let mut params = params.unwrap_or_default();
        let mut meta = params.value("_meta").filter(Value::is_object).unwrap_or_else(|| json!({}));
        meta[SUBSCRIPTION_ID] = self.caller.id.clone();
        params.set("_meta", raw(&meta));
        Message::notification(method, Some(params.to_raw()))
    }
}

/// Open listen requests, by client and request id (as JSON text: ids may be numbers or strings).
#[derive(Default)]
pub(super) struct Listeners(HashMap<(ClientId, String), Listener>);

impl Listeners {
    fn key(client: ClientId, id: &Value) -> (ClientId, String) {
        (client, id.to_string())
    }

    /// Whether another listen of this client still wants the URI.
    fn client_wants(&self, client: ClientId, uri: &str) -> bool {
        self.0.iter().any(|((c, _), l)| *c == client && l.uris.iter().any(|u| u == uri))
    }
}

impl Hub {
    /// Opens a listen stream: acknowledges what it will deliver (list changes always; resource updates
    /// for URIs whose backend can subscribe and that the client's profile shows), subscribes those URIs at their backends, and keeps the
    /// request open.
    pub(super) fn listen(&mut self, caller: Caller, params: &Params) {
        let asked = params.value("notifications").unwrap_or_default();
        // Task notifications are the tasks extension's, for clients that declare it; the proxy relays
        // tasks by polling only, so it acknowledges none.
        if asked.get("taskIds").is_some() && !caller.answers.takes_tasks() {
            return self.missing_tasks_extension(&caller, "subscriptions/listen with taskIds");
        }
        let flag = |name: &str| asked.get(name).and_then(Value::as_bool).unwrap_or(false);
        let uris: Vec<String> = asked
            .get("resourceSubscriptions")
            .and_then(Value::as_array)
            .map(|uris| {
                // Subscribed, and acknowledged, in the normalised spelling the catalog routes by.
                let normal = uris.iter().filter_map(Value::as_str).filter_map(|uri| crate::uri::normalize(uri).ok());
                normal.filter(|uri| self.can_subscribe(uri) && self.profile_shows_uri(caller.profile, uri)).collect()
            })
            .unwrap_or_default();
        let listener = Listener {
            caller,
            tools: flag("toolsListChanged"),
            prompts: flag("promptsListChanged"),
            resources: flag("resourcesListChanged"),
            uris,
        };
        let mut honored = json!({});
        for (name, on) in
            [("toolsListChanged", listener.tools), ("promptsListChanged", listener.prompts), ("resourcesListChanged", listener.resources)]
        {
            if on {
                honored[name] = Value::Bool(true);
            }
        }
        if !listener.uris.is_empty() {
            honored["resourceSubscriptions"] = json!(listener.uris);
        }
        let ack = listener.tagged("notifications/subscriptions/acknowledged", Some(params_of(json!({ "notifications": honored }))));
        // An isolated server's resources are the client's own instance's: it is started for them.
        let isolated: Vec<BackendId> =
            listener.uris.iter().filter_map(|uri| self.catalog.resource_owner(uri)).filter(|s| self.backends.is_isolated(*s)).collect();
        for server in isolated {
            if let super::isolation::Target::Refused(why) = self.target(&listener.caller, server) {
                log::debug!("[{}] no instance for a listen: {why}", self.backends.key(server));
            }
        }
        let (client, reply) = (listener.caller.client, listener.caller.reply.clone());
        for uri in &listener.uris {
            let first = self.subscriptions.add(uri, client);
            self.subscribe_at_backend(uri, client, first);
        }
        self.deliver(client, &reply, ack);
        self.listeners.0.insert(Listeners::key(client, &listener.caller.id), listener);
    }

    fn can_subscribe(&self, uri: &str) -> bool {
        let owner = self.catalog.resource_owner(uri).and_then(|b| self.backends.get(b));
        owner.is_some_and(|b| b.capability_flag("resources", "subscribe"))
    }

    /// Subscribes a URI at its backend for a client: `resources/subscribe` for a handshake-era one, a
    /// new listen with the URI in it for a 2026-07-28 one. A shared backend is subscribed once, for the
    /// `first` subscriber; an isolated server's instance for its own client (one that has no instance
    /// yet is subscribed when it starts).
    pub(super) fn subscribe_at_backend(&mut self, uri: &str, client: ClientId, first: bool) {
        self.change_backend_subscription(uri, "resources/subscribe", client, first);
    }

    /// The reverse of [`Hub::subscribe_at_backend`]; `last`: the URI's last subscriber left.
    pub(super) fn unsubscribe_at_backend(&mut self, uri: &str, client: ClientId, last: bool) {
        self.change_backend_subscription(uri, "resources/unsubscribe", client, last);
    }

    fn change_backend_subscription(&mut self, uri: &str, method: &str, client: ClientId, first_or_last: bool) {
        let Some(server) = self.catalog.resource_owner(uri) else { return };
        let backend = match self.backends.is_isolated(server) {
            // An instance still starting is subscribed once it is ready (`restore_client_state`).
            true => match self.backends.instances.find(server, client).filter(|i| self.backends.get(*i).is_some_and(|b| b.is_ready())) {
                Some(instance) => instance,
                None => return,
            },
            false if first_or_last => server,
            false => return,
        };
        if self.backends.get(backend).is_some_and(|b| b.is_modern()) {
            self.listen_at_backend(backend);
        } else {
            self.request_internal(backend, Internal::Ignore, method, Some(raw(&json!({ "uri": uri }))));
        }
    }

    /// (Re)opens a 2026-07-28 backend's listen: list changes of every kind it offers, and updates of
    /// every URI of its that a client subscribed to. A listen's filter cannot change, so the old one is
    /// cancelled first (over HTTP the transport does that by closing the old listen's stream).
    pub(super) fn listen_at_backend(&mut self, backend: BackendId) {
        let Some(b) = self.backends.get_mut(backend) else { return };
        if let Some(old) = b.listen.take() {
            self.requests.table.close((backend, old));
            let cancel = json!({ "requestId": old, "reason": "the subscriptions changed" });
            self.backends.send(backend, Message::notification("notifications/cancelled", Some(raw(&cancel))));
        }
        let Some(b) = self.backends.get(backend).filter(|b| b.is_ready()) else { return };
        let mut filter = json!({});
        for (capability, flag) in [("tools", "toolsListChanged"), ("prompts", "promptsListChanged"), ("resources", "resourcesListChanged")]
        {
            if b.capability_flag(capability, "listChanged") {
                filter[flag] = Value::Bool(true);
            }
        }
        let uris = self.subscribed_uris(backend);
        if !uris.is_empty() && b.capability_flag("resources", "subscribe") {
            filter["resourceSubscriptions"] = json!(uris);
        }
        if filter.as_object().is_some_and(serde_json::Map::is_empty) {
            return; // Nothing it could tell.
        }
        let id = self.request_internal(backend, Internal::Listen, "subscriptions/listen", Some(raw(&json!({ "notifications": filter }))));
        if let Some(b) = self.backends.get_mut(backend) {
            b.listen = id;
        }
    }

    /// The URIs a backend is to be subscribed to: those of its server that clients subscribed to; for
    /// an instance, those its own client did; for an isolated server's template, none (it serves nobody).
    pub(super) fn subscribed_uris(&self, backend: BackendId) -> Vec<String> {
        let (server, owner) = (self.backends.server_of(backend), self.backends.owner_of(backend));
        if owner.is_none() && self.backends.is_isolated(server) {
            return Vec::new();
        }
        self.subscriptions
            .uris()
            .filter(|uri| self.catalog.resource_owner(uri) == Some(server))
            .filter(|uri| owner.is_none_or(|client| self.subscriptions.subscribers(uri).contains(&client)))
            .map(str::to_owned)
            .collect()
    }

    /// A backend answered its listen: it ended it (a result) or never took it (an error). A listen that
    /// ended is opened again; one refused is not asked for again on this connection.
    pub(super) fn listen_ended(&mut self, backend: BackendId, id: Option<u64>, error: Option<String>) {
        let Some(b) = self.backends.get_mut(backend) else { return };
        if b.listen != id {
            return; // An old listen, replaced since.
        }
        b.listen = None;
        match error {
            Some(why) => log::warn!("[{}] subscriptions/listen refused: {why}; its changes will not be heard", b.config.key),
            None => self.listen_at_backend(backend),
        }
    }

    /// The client cancelled one of its listen requests; true when `id` was one. A cancelled request
    /// gets no answer.
    pub(super) fn end_listen(&mut self, client: ClientId, id: &Value) -> bool {
        let Some(listener) = self.listeners.0.remove(&Listeners::key(client, id)) else { return false };
        for uri in &listener.uris {
            if !self.listeners.client_wants(client, uri) {
                let last = self.subscriptions.remove(uri, client);
                self.unsubscribe_at_backend(uri, client, last);
            }
        }
        true
    }

    /// Forgets the listen requests of a client that is gone (its subscriptions go with the client).
    pub(super) fn end_listens_of(&mut self, client: ClientId) {
        self.listeners.0.retain(|(c, _), _| *c != client);
    }

    /// Tells every listener about the kinds of list that changed in what it sees (`changed`, by its
    /// profile) and that it asked to hear about.
    pub(super) fn announce_to_listeners(&mut self, changed: &dyn Fn(Option<crate::event::ProfileId>) -> Vec<ListKind>) {
        let notices: Vec<(Caller, Message)> = self
            .listeners
            .0
            .values()
            .flat_map(|l| {
                let kinds = changed(l.caller.profile).into_iter().filter(|kind| l.wants(*kind));
                kinds.map(|kind| (l.caller.clone(), l.tagged(kind.changed_notification(), None))).collect::<Vec<_>>()
            })
            .collect();
        for (caller, msg) in notices {
            self.deliver(caller.client, &caller.reply, msg);
        }
    }

    pub(super) fn update_listeners(&mut self, client: ClientId, uri: &str, update: &Message) -> bool {
        let params = update.params().unwrap_or_default();
        let notices: Vec<(Caller, Message)> = self
            .listeners
            .0
            .iter()
            .filter(|((c, _), l)| *c == client && l.uris.iter().any(|u| u == uri))
            .map(|(_, l)| (l.caller.clone(), l.tagged("notifications/resources/updated", Some(params.clone()))))
            .collect();
        let any = !notices.is_empty();
        for (caller, msg) in notices {
            self.deliver(caller.client, &caller.reply, msg);
        }
        any
    }

    /// Ends every listen stream with its answer, as the spec's graceful end (the proxy is stopping).
    pub(super) fn close_listens(&mut self) {
        for (_, listener) in std::mem::take(&mut self.listeners.0) {
            let result = json!({ "_meta": { SUBSCRIPTION_ID: listener.caller.id } });
            self.answer(&listener.caller, raw(&result));
        }
    }
}

/// An object's members as [`Params`].
fn params_of(object: Value) -> Params {
    Params::parse(Some(&raw(&object))).unwrap_or_default()
}
