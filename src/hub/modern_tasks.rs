//! Tasks of MCP 2026-07-28 (the `io.modelcontextprotocol/tasks` extension), between a 2026-07-28 client
//! and a 2026-07-28 backend that both take it. (2025-11-25's tasks, which it does not speak to, are
//! `tasks.rs`.)
//!
//! A backend may answer a tool call with a task (`resultType: "task"`) only when the client declared the
//! extension on that very call, and the client's declaration reaches the backend as it sent it; a
//! handshake-era client declares nothing, so it is never given one. The client is then given the task
//! under an id of the proxy's own: random, so no other client can guess it, and bound to the client
//! that made the call (or, for sessionless requests, to its credential), so no other can poll, answer or
//! cancel it; two backends that mint the same id cannot be confused. `tasks/get`, `tasks/update` and
//! `tasks/cancel` go to the backend that made the task, under its own id, and a `tasks/get` answer comes
//! back under the proxy's. Tasks are remembered for their `ttlMs` (at most [`MAX_TASKS`] of them, the
//! oldest forgotten first): a task the proxy no longer knows is unknown (`-32602`), as the extension
//! allows for an expired one.

use super::Hub;
use crate::event::{BackendId, Caller, ClientId, Requester};
use crate::jsonrpc::{code, raw, Message, Params};
use crate::modern::meta;
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Tasks remembered at most.
const MAX_TASKS: usize = 4096;

/// How long a task whose backend gave no `ttlMs` is remembered.
const UNBOUNDED_TTL: Duration = Duration::from_secs(24 * 3600);

/// A backend's task, as the proxy knows it.
struct Task {
    backend: BackendId,
    /// The backend's own id for it.
    id: String,
    /// Who may ask about it.
    requester: Requester,
    expires: Instant,
}

#[derive(Default)]
pub(super) struct ModernTasks {
    /// By the id the client knows.
    by_id: HashMap<String, Task>,
    /// The backend's id to the client's, for the answers that name a task.
    by_backend: HashMap<(BackendId, String), String>,
    /// Ids in the order they were made, for forgetting the oldest.
    order: VecDeque<String>,
}

impl ModernTasks {
    fn record(&mut self, proxy_id: String, task: Task, now: Instant) {
        while self.order.len() >= MAX_TASKS || self.order.front().is_some_and(|id| self.by_id.get(id).is_none_or(|t| t.expires <= now)) {
            let Some(oldest) = self.order.pop_front() else { break };
            if let Some(task) = self.by_id.remove(&oldest) {
                self.by_backend.remove(&(task.backend, task.id));
            }
        }
        self.by_backend.insert((task.backend, task.id.clone()), proxy_id.clone());
        self.by_id.insert(proxy_id.clone(), task);
        self.order.push_back(proxy_id);
    }

    /// A task `caller` may ask about, by the id it knows.
    fn of(&self, id: &str, caller: &Caller, now: Instant) -> Option<&Task> {
        self.by_id.get(id).filter(|t| t.expires > now && t.requester.admits(caller))
    }

    /// Forgets the tasks of a backend that took them with it (its process exited, it was stopped).
    pub fn forget_backend(&mut self, backend: BackendId) {
        self.forget(|t| t.backend == backend);
    }

    /// Forgets the tasks of a client whose session ended.
    pub fn forget_client(&mut self, client: ClientId) {
        self.forget(|t| t.requester.client() == client);
    }

    fn forget(&mut self, gone: impl Fn(&Task) -> bool) {
        self.by_id.retain(|_, t| !gone(t));
        let by_id = &self.by_id;
        self.by_backend.retain(|_, id| by_id.contains_key(id));
        self.order.retain(|id| by_id.contains_key(id));
    }
}

impl Hub {
    /// `tasks/get`, `tasks/update`, `tasks/cancel` of a 2026-07-28 client: to the backend that made the
    /// task, for the requester it was made for. A client that did not declare the extension on this
    /// request may not use it (`-32021`, as the extension says).
    pub(super) fn modern_task_request(&mut self, caller: Caller, method: &str, mut params: Params) {
        if !caller.answers.takes_tasks() {
            return self.missing_tasks_extension(&caller, method);
        }
        let id = params.str("taskId").unwrap_or_default();
        let Some(task) = self.modern_tasks.of(&id, &caller, Instant::now()) else {
            return self.answer_error(&caller, code::INVALID_PARAMS, &format!("Unknown task: '{id}'"));
        };
        let backend = task.backend;
        params.set_str("taskId", &task.id);
        self.forward(caller, backend, method, params);
    }

    /// Refuses what only a client that declares the tasks extension may ask (`-32021`, naming it).
    pub(super) fn missing_tasks_extension(&mut self, caller: &Caller, what: &str) {
        let error = json!({
            "code": code::MISSING_CLIENT_CAPABILITY,
            "message": format!("{what} needs the {} extension, which the request does not declare", meta::TASKS_EXTENSION),
            "data": { "requiredCapabilities": { "extensions": { meta::TASKS_EXTENSION: {} } } },
        });
        self.deliver(caller.client, &caller.reply, Message::error_response_raw(caller.id.clone(), raw(&error)));
    }

    /// A backend's answer that names one of its tasks, for a 2026-07-28 client: a tool call answered
    /// with a new task (remembered, and given the proxy's id), or a `tasks/get` answer (given the id the
    /// client knows). Any other answer passes as it is.
    pub(super) fn task_answer(&mut self, backend: BackendId, caller: &Caller, method: &str, mut msg: Message) -> Message {
        // Most answers name no task: a look at the text spares a parse.
        let Some(result) = msg.result.as_ref().filter(|r| r.get().contains("\"taskId\"")) else { return msg };
        let Ok(mut result) = Params::parse(Some(result)) else { return msg };
        let Some(backend_id) = result.str("taskId") else { return msg };
        let known = match method {
            "tools/call" if result.str("resultType").as_deref() == Some("task") => self.new_task(backend, backend_id, caller, &result),
            "tasks/get" => self.modern_tasks.by_backend.get(&(backend, backend_id)).cloned(),
            _ => None,
        };
        if let Some(id) = known {
            result.set_str("taskId", &id);
            msg.result = Some(result.to_raw());
        }
        msg
    }

    /// Remembers a task a backend made for `caller`; the id the client is to know it by.
    fn new_task(&mut self, backend: BackendId, backend_id: String, caller: &Caller, result: &Params) -> Option<String> {
        let random = match crate::random::token_hex(16) {
            Ok(random) => random,
            Err(e) => {
                log::error!("cannot make a task id: {e}; the backend's own is passed on");
                return None;
            }
        };
        let id = format!("{}{random}", self.bridges.state_prefix());
        let ttl = result.value("ttlMs").and_then(|ttl| ttl.as_u64()).map_or(UNBOUNDED_TTL, Duration::from_millis);
        let now = Instant::now();
        let task = Task { backend, id: backend_id, requester: caller.requester(), expires: now + ttl };
        self.modern_tasks.record(id.clone(), task, now);
        Some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ClientId, Era, ReplyTo};
    use serde_json::Value;

    fn caller(client: u64) -> Caller {
        let msg = Message::request(Value::from(1), "tasks/get", None);
        Caller::of(&msg, ClientId(client), ReplyTo::Outbox, Era::Modern)
    }

    fn task(backend: usize, id: &str, client: u64, expires: Instant) -> Task {
        Task { backend: BackendId(backend), id: id.into(), requester: caller(client).requester(), expires }
    }

    #[test]
    fn a_task_is_known_to_its_requester_only_until_it_expires() {
        let now = Instant::now();
        let mut tasks = ModernTasks::default();
        tasks.record("p-1".into(), task(0, "t", 1, now + Duration::from_secs(5)), now);
        assert!(tasks.of("p-1", &caller(1), now).is_some());
        assert!(tasks.of("p-1", &caller(2), now).is_none());
        assert!(tasks.of("p-1", &caller(1), now + Duration::from_secs(5)).is_none());
        assert_eq!(tasks.by_backend.get(&(BackendId(0), "t".into())).map(String::as_str), Some("p-1"));
    }

    #[test]
    fn the_oldest_and_the_expired_are_forgotten_first() {
        let now = Instant::now();
        let mut tasks = ModernTasks::default();
        tasks.record("old".into(), task(0, "a", 1, now + Duration::from_millis(1)), now);
        for n in 0..MAX_TASKS {
            tasks.record(format!("p-{n}"), task(1, &n.to_string(), 1, now + Duration::from_secs(60)), now + Duration::from_millis(2));
        }
        assert!(!tasks.by_id.contains_key("old") && tasks.by_id.len() == MAX_TASKS);
        assert!(!tasks.by_backend.contains_key(&(BackendId(0), "a".into())));
    }

    #[test]
    fn a_clients_tasks_go_with_its_session() {
        let now = Instant::now();
        let mut tasks = ModernTasks::default();
        tasks.record("p-1".into(), task(0, "t", 1, now + Duration::from_secs(5)), now);
        tasks.record("p-2".into(), task(0, "u", 2, now + Duration::from_secs(5)), now);
        tasks.forget_client(ClientId(1));
        assert!(tasks.of("p-1", &caller(1), now).is_none() && tasks.of("p-2", &caller(2), now).is_some());
        assert_eq!((tasks.by_backend.len(), tasks.order.len()), (1, 1));
    }

    #[test]
    fn a_backends_tasks_go_with_it() {
        let now = Instant::now();
        let mut tasks = ModernTasks::default();
        tasks.record("p-1".into(), task(0, "t", 1, now + Duration::from_secs(5)), now);
        tasks.record("p-2".into(), task(1, "t", 1, now + Duration::from_secs(5)), now);
        tasks.forget_backend(BackendId(0));
        assert!(tasks.of("p-1", &caller(1), now).is_none() && tasks.of("p-2", &caller(1), now).is_some());
    }
}
