//! Keeping backends running: starting them, noticing when one exits or fails, failing what was in
//! flight to it, restarting it after a backoff, and timing out requests it does not answer.
//!
//! A backend that exits is `Failed`: its tools are withdrawn (clients get `list_changed`), every
//! request in flight to it fails at once, and it is started again after a backoff.

use super::backends::State;
use super::requests::Internal;
use super::routing::{InFlight, Key, Origin};
use super::Hub;
use crate::backend::Link;
use crate::event::BackendId;
use crate::jsonrpc::{code, raw, Message};
use serde_json::{json, Value};
use std::time::Instant;

impl Hub {
    pub(super) fn start_backends(&mut self) {
        for id in self.backends.ids().collect::<Vec<_>>() {
            if self.backends.get(id).is_some_and(|b| b.state == State::Disabled) {
                log::info!("server '{}' is not active; skipped", self.backends.key(id));
                continue;
            }
            self.start_backend(id);
        }
    }

    pub(super) fn start_backend(&mut self, id: BackendId) {
        let timeout = self.backends.timeout(id, self.settings.request_timeout);
        let Some(b) = self.backends.get_mut(id) else { return };
        b.generation += 1;
        b.state = State::Starting;
        b.restart_at = None;
        match (self.connect)(&b.config, Link::new(id, b.generation, self.events.clone()), timeout) {
            Ok(connection) => {
                b.connection = Some(connection);
                self.begin_handshake(id);
            }
            // A missing command may be installed later: keep trying, with backoff.
            Err(e) => self.fail_backend(id, &e.to_string(), true),
        }
    }

    /// Servers that need a login are started again now: their tokens may be there.
    pub(super) fn retry_logins(&mut self) {
        let now = Instant::now();
        for b in self.backends.iter_mut_all().filter(|b| matches!(b.state, State::NeedsLogin(_)) && b.instance.is_none()) {
            b.restart_at = Some(now);
        }
    }

    /// Restarts the backends whose restart time has come.
    pub(super) fn restart_due(&mut self, now: Instant) {
        if self.shutdown.is_stopping() {
            return;
        }
        for id in self.backends.due_for_restart(now) {
            if let Some(b) = self.backends.get_mut(id) {
                b.restarts += 1;
                log::info!("[{}] restarting (restart {})", b.config.key, b.restarts);
            }
            self.start_backend(id);
        }
    }

    /// Plans a server's next start; an instance is started again by its client's next call instead.
    fn schedule_restart(&mut self, backend: BackendId) {
        let backoff = self.settings.restart_backoff;
        if let Some(b) = self.backends.get_mut(backend).filter(|b| b.instance.is_none()) {
            let delay = b.plan_restart(backoff);
            log::info!("[{}] next start in {:.1}s", b.config.key, delay.as_secs_f64());
        }
    }

    pub(super) fn backend_exited(&mut self, backend: BackendId, reason: &str, needs_login: bool) {
        let key = self.backends.key(backend).to_owned();
        let stopping = self.shutdown.is_stopping();
        let Some(b) = self.backends.get_mut(backend) else { return };
        b.connection = None;
        let was_ready = b.is_ready();
        if stopping {
            log::info!("[{key}] stopped ({reason})");
            b.state = State::Disabled;
            self.abandon_backend_requests(backend, &format!("server '{key}' stopped: {reason}"));
            return;
        }
        let instance = b.instance.as_ref().map(|i| i.owner);
        let whose = instance.map(|client| format!(" (client {}'s instance)", client.0)).unwrap_or_default();
        if needs_login {
            // The connection said why (a warning each try); the state says so until a login.
            b.state = State::NeedsLogin(reason.to_owned());
        } else {
            log::error!("[{key}] exited{whose}: {reason}");
            b.state = State::Failed(format!("exited: {reason}"));
        }
        self.abandon_backend_requests(backend, &format!("server '{key}' exited: {reason}"));
        if was_ready && instance.is_none() {
            self.refresh_catalog();
        }
        self.schedule_restart(backend);
    }

    /// Takes a backend down: its connection is killed, its requests fail, and it is started again
    /// later when `retry` is set.
    pub(super) fn fail_backend(&mut self, backend: BackendId, why: &str, retry: bool) {
        let Some(b) = self.backends.get_mut(backend) else { return };
        log::error!("[{}] failed: {why}", b.config.key);
        let was_ready = b.is_ready();
        b.state = State::Failed(why.to_owned());
        if let Some(connection) = b.connection.take() {
            connection.kill();
        }
        let instance = b.instance.is_some();
        self.abandon_backend_requests(backend, why);
        if was_ready && !instance {
            self.refresh_catalog();
        }
        if retry && !self.shutdown.is_stopping() {
            self.schedule_restart(backend);
        }
    }

    /// Fails every request in flight to a backend that is gone (or, for an instance, waiting for it),
    /// and forgets its requests to clients.
    pub(super) fn abandon_backend_requests(&mut self, backend: BackendId, why: &str) {
        self.fail_waiting(backend, why);
        // A child process's tasks died with it; a remote server keeps its own across a reconnection.
        if self.backends.get(backend).is_some_and(|b| matches!(b.config.transport, crate::config::Transport::Stdio(_))) {
            self.modern_tasks.forget_backend(backend);
        }
        for key in self.requests.table.keys_for_backend(backend) {
            self.fail_unanswerable(key, why);
        }
        self.requests.forget_upstream_of(backend);
    }

    /// Ends a request its backend will not answer. A call suspended on a 2026-07-28 client's answers
    /// was answered already (`input_required`): its failure waits for the client's retry.
    pub(super) fn fail_unanswerable(&mut self, key: Key, why: &str) {
        let Some(entry) = self.requests.table.close(key) else { return };
        if !self.hold_for_retry(key, &Message::error_response(Value::Null, code::BACKEND_UNAVAILABLE, why)) {
            self.fail_request(key.0, entry, code::BACKEND_UNAVAILABLE, why);
        }
    }

    pub(super) fn fail_request(&mut self, backend: BackendId, entry: InFlight<Internal>, code: i64, why: &str) {
        if let Origin::Client { caller, .. } = entry.origin {
            self.metrics.record(self.backends.server_of(backend), &entry.method, true, entry.opened.elapsed());
            self.answer_error(&caller, code, why);
        }
    }

    /// Fails the requests whose deadline passed, and tells their backends to stop working on them. A
    /// backend that does not finish its handshake in time is taken down and started again.
    pub(super) fn expire_requests(&mut self, now: Instant) {
        for ((backend, id), entry) in self.requests.table.expire(now) {
            let why = format!("server '{}' did not answer {} within {:?}", self.backends.key(backend), entry.method, entry.timeout);
            log::warn!("{why}");
            self.send_cancelled(backend, id, "timeout");
            match entry.origin {
                // A server that does not answer the probe at all is taken for a handshake-era one.
                Origin::Internal(Internal::Discover) => self.discovered(backend, Err(why)),
                Origin::Internal(Internal::Initialize | Internal::List(_)) => self.fail_backend(backend, &why, true),
                _ => self.fail_request(backend, entry, code::REQUEST_TIMEOUT, &why),
            }
        }
    }

    /// Cancels a request at its backend on behalf of a client that gave up on it.
    pub(super) fn cancel_at_backend(&mut self, key: Key, reason: &str) {
        if self.requests.table.close(key).is_some() {
            self.send_cancelled(key.0, key.1, reason);
        }
    }

    fn send_cancelled(&self, backend: BackendId, id: u64, reason: &str) {
        let params = json!({ "requestId": id, "reason": reason });
        self.backends.send(backend, Message::notification("notifications/cancelled", Some(raw(&params))));
    }
}
