//! Isolation per client session (`"isolation": "session"`): a server that keeps state per client, or
//! asks clients questions, gets an instance of its own for each client session that calls it.
//!
//! The server's own record is the template: it is started at start-up like any server and gives the
//! catalog, so listing tools starts nothing per client. A client's first request that needs the server
//! (a call, a read, a prompt, a completion, a subscription) starts the client's instance, and waits
//! for its handshake; every later request of that client goes to it. Whatever an instance says reaches
//! its own client only. An instance that crashes fails its client's calls, and is started again by that
//! client's next call; it is stopped when its client's session ends, when it has been idle for its
//! `idleTimeout`, and when its server's configuration changes. At most `maxInstances` run at once.
//!
//! A 2026-07-28 request over HTTP belongs to no session, so it has no instance to go to: it is refused
//! (an instance per request would start a process for every call and keep nothing between them).

use super::backends::{Backend, State};
use super::instances::{Instances, Waiting};
use super::Hub;
use crate::config::Isolation;
use crate::event::{BackendId, Caller, ClientId};
use crate::jsonrpc::{code, Params};
use serde_json::value::RawValue;
use serde_json::Value;
use std::time::Instant;

/// Where a client's request for a server goes.
pub(super) enum Target {
    /// To this backend, now: a shared server, or the client's instance, ready.
    Now(BackendId),
    /// To the client's instance once its handshake is done.
    Wait(BackendId),
    /// Nowhere: the error to answer with.
    Refused(String),
}

impl Hub {
    /// Where a client's request for `backend` goes: a shared server takes it itself; an isolated one's
    /// request goes to the client's instance, made and started when the client has none.
    pub(super) fn target(&mut self, caller: &Caller, backend: BackendId) -> Target {
        if Instances::is_instance(backend) || !self.backends.is_isolated(backend) {
            return Target::Now(backend);
        }
        let key = self.backends.key(backend).to_owned();
        if self.clients.era(caller.client).is_none() {
            return Target::Refused(format!(
                "server '{key}' runs an instance per client session (\"isolation\": \"session\"), and this request \
                 belongs to no session; use a session (stdio, Streamable HTTP with initialize, or SSE)"
            ));
        }
        let id = match self.backends.instances.find(backend, caller.client) {
            Some(id) => id,
            None => match self.new_instance(backend, caller.client) {
                Ok(id) => id,
                Err(why) => return Target::Refused(why),
            },
        };
        let Some(b) = self.backends.get_mut(id) else { return Target::Refused(format!("server '{key}' has no instance")) };
        if let Some(instance) = &mut b.instance {
            instance.last_used = Instant::now();
        }
        match b.state {
            State::Ready => Target::Now(id),
            State::Starting => Target::Wait(id),
            State::Failed(_) | State::NeedsLogin(_) | State::Disabled | State::Removed => {
                b.restarts += 1;
                log::info!("[{key}] starting client {}'s instance again (restart {})", caller.client.0, b.restarts);
                self.start_backend(id);
                self.started(id)
            }
        }
    }

    /// Makes a client's instance of an isolated server and starts it, within the server's limit.
    fn new_instance(&mut self, server: BackendId, client: ClientId) -> Result<BackendId, String> {
        let Some(template) = self.backends.get(server) else { return Err("no such server".into()) };
        let Isolation::Session { max_instances, .. } = template.config.isolation else { return Err("not isolated".into()) };
        let running = self.backends.instances.of_server(server).len();
        let key = template.config.key.clone();
        if running >= max_instances {
            // A flood of refusals is logged at 1, 2, 4, 8... only.
            let refused = self.backends.instances.refused();
            if refused.is_power_of_two() {
                log::warn!("[{key}] instance refused to client {}: {running} running, the limit ({refused} refused since start)", client.0);
            }
            return Err(format!(
                "server '{key}' has {running} instances running, its limit (\"maxInstances\": {max_instances}); \
                 try again when another session ends"
            ));
        }
        log::info!("[{key}] starting an instance for client {} ({} of {max_instances})", client.0, running + 1);
        let Some(config) = self.backends.get(server).map(|t| t.config.clone()) else { return Err("no such server".into()) };
        let id = self.backends.instances.add(Backend::instance(config, server, client));
        self.start_backend(id);
        match self.started(id) {
            Target::Refused(why) => Err(why),
            Target::Now(id) | Target::Wait(id) => Ok(id),
        }
    }

    /// What became of an instance just started: starting, or failed at once (a missing command).
    fn started(&self, id: BackendId) -> Target {
        match self.backends.get(id).map(|b| &b.state) {
            Some(State::Failed(why) | State::NeedsLogin(why)) => {
                Target::Refused(format!("server '{}' could not start: {why}", self.backends.key(id)))
            }
            Some(State::Ready) => Target::Now(id),
            _ => Target::Wait(id),
        }
    }

    /// Keeps a request until its instance is ready; a client cannot pile up more than the in-flight
    /// limit this way.
    pub(super) fn wait_for_instance(&mut self, id: BackendId, waiting: Waiting) {
        let limit = self.settings.max_in_flight;
        let key = self.backends.key(id).to_owned();
        let Some(instance) = self.backends.get_mut(id).and_then(|b| b.instance.as_mut()) else {
            return self.answer_error(&waiting.caller, code::BACKEND_UNAVAILABLE, &format!("server '{key}' has no instance"));
        };
        if instance.waiting.len() >= limit {
            let why = format!("server '{key}' has {limit} requests waiting for its instance to start, the limit");
            return self.answer_error(&waiting.caller, code::BACKEND_UNAVAILABLE, &why);
        }
        instance.waiting.push(waiting);
    }

    /// An instance finished its handshake: the requests that waited for it are sent.
    pub(super) fn instance_ready(&mut self, id: BackendId) {
        let waiting = self.backends.get_mut(id).and_then(|b| b.instance.as_mut()).map(|i| std::mem::take(&mut i.waiting));
        for w in waiting.unwrap_or_default() {
            self.forward_waiting(id, w);
        }
    }

    fn forward_waiting(&mut self, id: BackendId, w: Waiting) {
        match (self.try_forward(w.caller, id, &w.method, &w.params, w.name.as_deref()), w.attempt) {
            (Ok(Some(key)), Some(attempt)) => self.requests.table.keep_for_retry(key, w.params, attempt),
            (Ok(_), _) => {}
            // A tool call that could not be sent has not run: it is retried as any other.
            (Err(caller), Some(attempt)) => self.retry_or_fail(caller, w.params, self.backends.server_of(id), attempt),
            (Err(caller), None) => {
                let why = format!("server '{}' is not connected", self.backends.key(id));
                self.answer_error(&caller, code::BACKEND_UNAVAILABLE, &why);
            }
        }
    }

    /// Fails the requests waiting for an instance that will not be ready.
    pub(super) fn fail_waiting(&mut self, id: BackendId, why: &str) {
        let waiting = self.backends.get_mut(id).and_then(|b| b.instance.as_mut()).map(|i| std::mem::take(&mut i.waiting));
        for w in waiting.unwrap_or_default() {
            self.answer_error(&w.caller, code::BACKEND_UNAVAILABLE, why);
        }
    }

    /// Drops a client's request still waiting for its instance (the client cancelled it).
    pub(super) fn drop_waiting(&mut self, client: ClientId, id: &Value) {
        for instance in self.backends.instances.of_client(client) {
            if let Some(i) = self.backends.get_mut(instance).and_then(|b| b.instance.as_mut()) {
                i.waiting.retain(|w| &w.caller.id != id);
            }
        }
    }

    /// Whether a client has requests waiting for an instance.
    pub(super) fn has_waiting(&self, client: ClientId) -> bool {
        let waits = |id: &BackendId| self.backends.get(*id).and_then(|b| b.instance.as_ref()).is_some_and(|i| !i.waiting.is_empty());
        self.backends.instances.of_client(client).iter().any(waits)
    }

    /// Stops an instance for good and forgets it: what was in flight to it or waiting for it fails.
    pub(super) fn stop_instance(&mut self, id: BackendId, why: &str) {
        self.fail_waiting(id, &format!("server '{}' was stopped: {why}", self.backends.key(id)));
        self.retire(id, why);
        self.backends.instances.remove(id);
    }

    /// The waiting requests of an instance that subscribe to `uri` (its handshake need not).
    pub(super) fn subscribe_waits(&self, instance: BackendId, uri: &str) -> bool {
        let waiting = self.backends.get(instance).and_then(|b| b.instance.as_ref()).map_or(&[][..], |i| i.waiting.as_slice());
        waiting.iter().any(|w| w.method == "resources/subscribe" && w.params.str("uri").as_deref() == Some(uri))
    }

    /// A client's session ended: its instances end with it.
    pub(super) fn stop_instances_of(&mut self, client: ClientId) {
        for id in self.backends.instances.of_client(client) {
            self.stop_instance(id, "its client's session ended");
        }
    }

    /// A server's configuration changed or it was removed: its instances go (a client's next call
    /// starts a new one under the new configuration).
    pub(super) fn stop_instances_of_server(&mut self, server: BackendId, why: &str) {
        let ids: Vec<BackendId> = self.backends.instances.of_server(server).into_iter().map(|(id, _)| id).collect();
        for id in ids {
            self.stop_instance(id, why);
        }
    }

    /// Stops the instances idle for their timeout; one still busy (a call in flight, a request waiting,
    /// a resource its client subscribed to) counts as used now.
    pub(super) fn expire_instances(&mut self, now: Instant) {
        for id in self.backends.instances.expired(now) {
            // Subscriptions are work too: stopping the instance would end its client's updates.
            let busy = self.requests.table.in_flight(id) > 0 || !self.subscribed_uris(id).is_empty();
            let Some(instance) = self.backends.get_mut(id).and_then(|b| b.instance.as_mut()) else { continue };
            if busy || !instance.waiting.is_empty() {
                instance.last_used = now;
                continue;
            }
            let why = format!("idle for {:?}", instance.idle_timeout);
            self.stop_instance(id, &why);
        }
    }

    /// Sends a client's request where it goes: to `backend`, or, for an isolated server, to the
    /// client's instance (now, or once it is ready). Returns what [`Hub::try_forward`] does; a request
    /// kept for its instance, or refused, is `Ok(None)`.
    pub(super) fn route(
        &mut self,
        caller: Caller,
        backend: BackendId,
        method: &str,
        params: &Params,
        name: Option<&RawValue>,
        attempt: Option<u32>,
    ) -> Result<Option<super::routing::Key>, Caller> {
        match self.target(&caller, backend) {
            Target::Now(id) => self.try_forward(caller, id, method, params, name),
            Target::Wait(id) => {
                let waiting =
                    Waiting { caller, method: method.to_owned(), params: params.clone(), name: name.map(ToOwned::to_owned), attempt };
                self.wait_for_instance(id, waiting);
                Ok(None)
            }
            Target::Refused(why) => {
                self.answer_error(&caller, code::BACKEND_UNAVAILABLE, &why);
                Ok(None)
            }
        }
    }
}
