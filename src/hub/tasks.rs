//! Tasks (MCP 2025-11-25): a tool call a client asks to run as a task (`params.task`) is answered at once
//! with the task its backend made; the client then polls it (`tasks/get`), waits for its outcome
//! (`tasks/result`) or cancels it (`tasks/cancel`). The proxy remembers which backend made each task and
//! for which client, so those requests go back to that backend, and only that client may make them;
//! `notifications/tasks/status` goes to that client alone. A task id is the backend's own, so it is
//! known per client (for its requests) and per backend (for its statuses): two backends that mint the
//! same id do not take each other's tasks.
//!
//! `tasks/list` is not offered: a backend's list holds every client's tasks. These tasks are not
//! bridged to 2026-07-28 clients (whose tasks extension is `modern_tasks.rs`, between 2026-07-28
//! parties), so those are not shown tools that can only run as 2025-11-25 tasks.

use super::Hub;
use crate::event::{BackendId, Caller, ClientId};
use crate::jsonrpc::{code, Message, Params};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};

/// Tasks remembered at most; the oldest are forgotten first (a backend forgets them too, by their ttl).
const MAX_TASKS: usize = 4096;

/// A task as the proxy knows it: the backend that made it, the client it is for, the backend's id.
type Task = (BackendId, ClientId, String);

#[derive(Default)]
pub(super) struct Tasks {
    /// Where a client's request about its task goes.
    backend_of: HashMap<(ClientId, String), BackendId>,
    /// Whose a backend's task status is.
    client_of: HashMap<(BackendId, String), ClientId>,
    order: VecDeque<Task>,
}

impl Tasks {
    fn record(&mut self, task: String, backend: BackendId, client: ClientId) {
        if self.order.len() >= MAX_TASKS {
            if let Some(oldest) = self.order.pop_front() {
                self.forget(&oldest);
            }
        }
        self.backend_of.insert((client, task.clone()), backend);
        self.client_of.insert((backend, task.clone()), client);
        self.order.push_back((backend, client, task));
    }

    /// Forgets a task, unless a newer one took its place.
    fn forget(&mut self, (backend, client, task): &Task) {
        let (client_key, backend_key) = ((*client, task.clone()), (*backend, task.clone()));
        if self.backend_of.get(&client_key) == Some(backend) {
            self.backend_of.remove(&client_key);
        }
        if self.client_of.get(&backend_key) == Some(client) {
            self.client_of.remove(&backend_key);
        }
    }

    pub fn forget_client(&mut self, client: ClientId) {
        self.backend_of.retain(|(c, _), _| *c != client);
        self.client_of.retain(|_, c| *c != client);
        self.order.retain(|(_, c, _)| *c != client);
    }
}

impl Hub {
    /// `tasks/get`, `tasks/result`, `tasks/cancel`: to the backend that made the task, for the client
    /// that asked for it.
    pub(super) fn task_request(&mut self, caller: Caller, method: &str, params: Params) {
        let task = params.str("taskId").unwrap_or_default();
        match self.tasks.backend_of.get(&(caller.client, task.clone())).copied() {
            Some(backend) => self.forward(caller, backend, method, params),
            None => self.answer_error(&caller, code::INVALID_PARAMS, &format!("Unknown task: '{task}'")),
        }
    }

    /// A tool call's answer that is a task (`{"task": {"taskId": ...}}`): remembered for its client.
    pub(super) fn note_task(&mut self, backend: BackendId, client: ClientId, answer: &Message) {
        // Most answers are not tasks: a look at the text spares a parse.
        let Some(result) = answer.result.as_ref().filter(|r| r.get().contains("\"taskId\"")) else { return };
        let result: Value = serde_json::from_str(result.get()).unwrap_or_default();
        if let Some(task) = result.pointer("/task/taskId").and_then(Value::as_str) {
            self.tasks.record(task.to_owned(), backend, client);
        }
    }

    /// A task's status goes to its client. A backend may report a task before the answer that made it
    /// reaches the proxy; it then goes to the client whose call is the only one in flight there.
    pub(super) fn task_status(&mut self, backend: BackendId, msg: Message) {
        let task = msg.params().ok().and_then(|p| p.str("taskId")).unwrap_or_default();
        let client = match self.tasks.client_of.get(&(backend, task.clone())) {
            Some(client) => Some(*client),
            None => match self.requests.table.callers_waiting_on(backend).as_slice() {
                [only] => Some(only.client),
                _ => None,
            },
        };
        match client {
            Some(client) => self.send_to_client(client, msg),
            None => log::debug!("[{}] status of task '{task}' not relayed: whose it is is unknown", self.backends.key(backend)),
        }
    }
}
