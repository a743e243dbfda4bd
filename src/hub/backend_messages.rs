//! What backends send: answers to requests (a client's, or the proxy's own), notifications (progress,
//! logs, list changes, resource updates, cancellations) and their own requests to clients (sampling,
//! roots, elicitation), each delivered to the client it belongs to.

use super::catalog::ListKind;
use super::requests::{Asker, Upstream};
use super::routing::{InFlight, Key, Origin};
use super::{bridge, Hub};
use crate::event::{BackendId, Caller, ClientId, Era, ReplyTo};
use crate::jsonrpc::{code, raw, Kind, Message};
use serde_json::{json, Value};

impl Hub {
    pub(super) fn on_backend_message(&mut self, backend: BackendId, msg: Message, about: Option<Value>) {
        match msg.kind() {
            Kind::Response => self.backend_response(backend, msg),
            Kind::Notification => self.backend_notification(backend, msg),
            Kind::Request => self.backend_request(backend, msg, about.as_ref().and_then(Value::as_u64)),
        }
    }

    fn backend_response(&mut self, backend: BackendId, mut msg: Message) {
        let Some(id) = msg.id.as_ref().and_then(Value::as_u64) else {
            log::warn!("[{}] response with an id the proxy never sent: {:?}", self.backends.key(backend), msg.id);
            return;
        };
        if self.hold_for_retry((backend, id), &msg) {
            // Answered: nothing else (an exit, a deadline) may end it now.
            self.requests.table.close((backend, id));
            return;
        }
        let Some(entry) = self.requests.table.close((backend, id)) else {
            log::debug!("[{}] late response to request {id} (cancelled or timed out)", self.backends.key(backend));
            return;
        };
        let Some(entry) = self.bridge_input_required(backend, entry, &msg) else { return };
        if let Some(instance) = self.backends.get_mut(backend).and_then(|b| b.instance.as_mut()) {
            instance.last_used = std::time::Instant::now();
        }
        match entry.origin {
            Origin::Client { caller, .. } => {
                self.metrics.record(self.backends.server_of(backend), &entry.method, msg.error.is_some(), entry.opened.elapsed());
                // Each era's tasks are its own (`tasks.rs`, `modern_tasks.rs`).
                match caller.era {
                    Era::Handshake if entry.method == "tools/call" => self.note_task(backend, caller.client, &msg),
                    Era::Modern if caller.answers.takes_tasks() && matches!(entry.method.as_str(), "tools/call" | "tasks/get") => {
                        msg = self.task_answer(backend, &caller, &entry.method, msg);
                    }
                    Era::Handshake | Era::Modern => {}
                }
                msg.id = Some(caller.id);
                self.deliver(caller.client, &caller.reply, msg);
            }
            Origin::Internal(op) => self.internal_response(backend, op, &entry.method, msg),
        }
    }

    fn backend_notification(&mut self, backend: BackendId, msg: Message) {
        match msg.method() {
            "notifications/progress" => self.backend_progress(backend, msg),
            "notifications/message" => self.route_log(backend, msg),
            // An instance's lists are its server's: the template, which gives the catalog, is asked again.
            "notifications/tools/list_changed" => self.refetch(self.backends.server_of(backend), &[ListKind::Tools]),
            "notifications/prompts/list_changed" => self.refetch(self.backends.server_of(backend), &[ListKind::Prompts]),
            "notifications/resources/list_changed" => {
                self.refetch(self.backends.server_of(backend), &[ListKind::Resources, ListKind::Templates]);
            }
            "notifications/resources/updated" => {
                let Ok(mut params) = msg.params() else { return };
                // Subscriptions are kept under the normalised spelling of their URI.
                let raw_uri = params.str("uri").unwrap_or_default();
                let uri = crate::uri::normalize(&raw_uri).unwrap_or(raw_uri);
                // A 2026-07-28 backend tags it with its listen's id, which is nobody else's business.
                params.remove("_meta");
                let update = Message::notification("notifications/resources/updated", Some(params.to_raw()));
                // An instance tells its own client only; an isolated server's template, nobody.
                let owner = self.backends.owner_of(backend);
                if owner.is_none() && self.backends.is_isolated(backend) {
                    return;
                }
                let subscribers = self.subscriptions.subscribers(&uri).iter().filter(|c| owner.is_none_or(|o| o == **c));
                for client in subscribers.copied().collect::<Vec<_>>() {
                    if !self.update_listeners(client, &uri, &update) {
                        self.send_to_client(client, update.clone());
                    }
                }
            }
            "notifications/cancelled" => self.backend_cancelled(backend, &msg),
            "notifications/tasks/status" => self.task_status(backend, msg),
            "notifications/elicitation/complete" => {
                // Goes to the client the URL elicitation went to, and to no other.
                let id = msg.params().ok().and_then(|p| p.str("elicitationId")).unwrap_or_default();
                if let Some(client) = self.requests.elicitation_completed(backend, &id) {
                    self.send_to_client(client, msg);
                }
            }
            other => log::debug!("[{}] notification {other} not relayed", self.backends.key(backend)),
        }
    }

    /// A backend's log message goes to the client whose call caused it, as far as the proxy can tell,
    /// never to a client of another key nor to one whose profile does not show the server: an
    /// instance's to its own client; when exactly one client has requests in flight to that
    /// backend, to that client (with its call's messages); else to the clients that set a log level
    /// (`logging/setLevel`), of the one key whose calls are in flight if there are any, and to nobody
    /// when calls of several keys are (the proxy cannot tell whose it is); with no call in flight, to
    /// the clients that set a level, or the only client connected. Each client hears only messages at
    /// or above its own level.
    fn route_log(&mut self, backend: BackendId, msg: Message) {
        let level = msg.params().ok().and_then(|p| p.str("level")).unwrap_or_default();
        // A level the proxy does not know is not filtered away: the client may know better.
        let severity = super::clients::severity(&level).unwrap_or(u8::MAX);
        let waiting: Vec<Caller> = self.requests.table.callers_waiting_on(backend).into_iter().cloned().collect();
        if let [caller] = waiting.as_slice() {
            // A 2026-07-28 client hears logs only with the answer to a request that asked for them, at
            // the level it asked.
            let hears = match caller.era {
                Era::Handshake => self.clients.hears(caller.client, severity),
                Era::Modern => caller.log_level.is_some_and(|least| severity >= least),
            };
            if hears {
                self.deliver(caller.client, &caller.reply, msg);
            }
            return;
        }
        if let Some(owner) = self.backends.owner_of(backend) {
            // Its one client hears it as the only client would: unless it asked for a higher level.
            if self.clients.hears_logs(owner, severity) {
                self.send_to_client(owner, msg);
            }
            return;
        }
        // A sessionless 2026-07-28 caller is not registered: its key came with its request.
        let mut owners: Vec<Option<&str>> = waiting.iter().map(|c| self.clients.owner(c.client).unwrap_or(c.owner.as_deref())).collect();
        owners.sort_unstable();
        owners.dedup();
        let listeners = match owners.as_slice() {
            [] => self.clients.log_listeners(severity, None),
            [owner] => self.clients.log_listeners(severity, Some(*owner)),
            _ => return log::debug!("[{}] log message of calls of several keys: not relayed", self.backends.key(backend)),
        };
        // Nor to a client whose profile does not show the server.
        let server = self.backends.server_of(backend);
        for client in listeners.into_iter().filter(|c| self.client_sees(*c, server)).collect::<Vec<_>>() {
            self.send_to_client(client, msg.clone());
        }
    }

    /// Progress goes to the client that asked for it, under its own token; only the backend the
    /// request went to may report on it.
    fn backend_progress(&mut self, backend: BackendId, msg: Message) {
        let Ok(mut params) = msg.params() else { return };
        let token = params.value("progressToken").and_then(|t| t.as_u64());
        let Some((client, reply, original)) = token.and_then(|t| self.requests.table.progress(backend, t)) else { return };
        params.set("progressToken", raw(&original));
        self.deliver(client, &reply, Message::notification("notifications/progress", Some(params.to_raw())));
    }

    /// A backend withdrew one of its own requests to a client.
    fn backend_cancelled(&mut self, backend: BackendId, msg: &Message) {
        let Ok(mut params) = msg.params() else { return };
        let Some(request_id) = params.value("requestId") else { return };
        let Some((proxy_id, client)) = self.requests.cancelled_upstream(backend, &request_id) else { return };
        params.set("requestId", raw(&Value::from(proxy_id)));
        self.send_to_client(client, Message::notification("notifications/cancelled", Some(params.to_raw())));
    }

    /// A backend asks something of a client (sampling, roots, elicitation, ping). It belongs to the call
    /// whose answer stream carried it (Streamable HTTP), else to the one call in flight to that backend
    /// of the only client with calls there, else to the only client connected; when no client can be
    /// determined the backend gets an error, never silence. A 2026-07-28 client is asked through an
    /// `input_required` answer to its call (`bridge.rs`).
    fn backend_request(&mut self, backend: BackendId, mut msg: Message, about: Option<u64>) {
        let Some(backend_id) = msg.id.clone() else { return };
        if msg.method() == "ping" {
            self.backends.send(backend, Message::response(backend_id, raw(&json!({}))));
            return;
        }
        let (client, reply) = match self.asked(backend, about) {
            Asked::Call(key, caller) if caller.era == Era::Modern && bridge::may_need_input(&self.call_method(key)) => {
                if caller.answers.includes(msg.method()) {
                    return self.ask_modern_client(key, backend_id, &msg);
                }
                let why = format!("the client did not declare that it can answer '{}'", msg.method());
                self.backends.send(backend, Message::error_response(backend_id, code::METHOD_NOT_FOUND, &why));
                return;
            }
            Asked::Call(_, caller) if caller.era == Era::Handshake => (caller.client, caller.reply),
            Asked::Client(client, reply, Era::Handshake) => (client, reply),
            Asked::Call(..) | Asked::Client(..) => {
                let why = format!("the client speaks MCP 2026-07-28 and has no call in flight that '{}' could belong to", msg.method());
                self.backends.send(backend, Message::error_response(backend_id, code::METHOD_NOT_FOUND, &why));
                return;
            }
            Asked::Nobody => {
                let why = format!(
                    "the proxy cannot tell which client should answer '{}': several clients are calling server '{}' at once; \
                     set \"isolation\": \"session\" on it to give each client session its own instance",
                    msg.method(),
                    self.backends.key(backend)
                );
                self.backends.send(backend, Message::error_response(backend_id, code::METHOD_NOT_FOUND, &why));
                return;
            }
        };
        self.requests.note_asked(backend, client, &msg);
        let proxy_id =
            self.requests.forward_upstream(Upstream { client, asker: Asker::Backend { backend, backend_id: backend_id.clone() } });
        msg.id = Some(Value::from(proxy_id));
        if self.clients.is_initialized(client) {
            return self.deliver(client, &reply, msg);
        }
        // Before its initialize is answered a client takes no request but ping: it waits until then.
        if !self.requests.hold_until_initialized(client, reply, msg) {
            self.requests.answered_upstream(client, Some(&Value::from(proxy_id)));
            let why = format!("the client has {} requests waiting for its handshake already", super::requests::MAX_BEFORE_INITIALIZE);
            self.backends.send(backend, Message::error_response(backend_id, code::INTERNAL_ERROR, &why));
        }
    }
}

/// Whom a backend's request is for.
enum Asked {
    /// A client's call in flight, and its caller.
    Call(Key, Caller),
    /// A client with no single call in flight there, where it hears requests, in the era it speaks.
    Client(ClientId, ReplyTo, Era),
    Nobody,
}

impl Hub {
    fn asked(&self, backend: BackendId, about: Option<u64>) -> Asked {
        let call = |key: Key| match self.requests.table.get(key) {
            Some(InFlight { origin: Origin::Client { caller, .. }, .. }) => Some(Asked::Call(key, caller.clone())),
            _ => None,
        };
        if let Some(asked) = about.and_then(|id| call((backend, id))) {
            return asked;
        }
        match self.requests.table.callers_waiting_on(backend).as_slice() {
            [only] => match self.requests.table.client_requests_to(backend, only.client).as_slice() {
                [key] => call(*key).unwrap_or(Asked::Nobody),
                // Several calls of one client: it hears the request where one of them is answered.
                _ => Asked::Client(only.client, only.reply.clone(), only.era),
            },
            // An instance's client, else the only client there is, if it sees the server; an isolated
            // server's template serves nobody.
            [] => {
                let server = self.backends.server_of(backend);
                let client = match self.backends.owner_of(backend) {
                    Some(owner) => Some(owner),
                    None if self.backends.is_isolated(server) => None,
                    None => self.clients.only().filter(|c| self.client_sees(*c, server)),
                };
                client.map_or(Asked::Nobody, |c| Asked::Client(c, ReplyTo::Outbox, self.clients.era(c).unwrap_or_default()))
            }
            _ => Asked::Nobody,
        }
    }

    fn call_method(&self, key: Key) -> String {
        self.requests.table.get(key).map(|e| e.method.clone()).unwrap_or_default()
    }
}
