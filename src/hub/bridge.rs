//! Bridges between the two ways a server asks its client something while serving one of its requests:
//! the handshake era's server-to-client requests (`sampling/createMessage`, `elicitation/create`,
//! `roots/list`) and 2026-07-28's `input_required` results (the client answers by retrying with
//! `inputResponses`). The only module of the dispatcher that knows both eras.
//!
//! - A handshake-era client and a 2026-07-28 backend ([`Asking`]): the backend answers a call with
//!   `input_required`; each input request goes to the client as a request of its own, and once every
//!   answer is in, the call is sent to the backend again with them (bounded rounds). The client sees one
//!   request and one answer, with requests from its server in between, as in its own era.
//! - A 2026-07-28 client and a handshake-era backend ([`Suspended`]): the backend sends a request while
//!   serving the client's call; the client gets an `input_required` answer carrying it, while the
//!   backend's call stays open. The client's retry (with `inputResponses` and the `requestState` the
//!   proxy gave it) answers the backend's request and takes over the open call, whose result it gets.
//!   The `requestState` is a random 128-bit token, single-use, bound to the client that got it and
//!   kept here with everything it stands for: it needs no MAC, since nothing it could say is trusted.
//!   A retry that does not come in time fails the backend's request and cancels its call.

use super::requests::{Asker, Internal, Upstream};
use super::routing::{InFlight, Key, Origin};
use super::Hub;
use crate::event::{Answerable, BackendId, Caller, ClientId, Requester};
use crate::jsonrpc::{code, raw, Message, Params};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Rounds of `input_required` one call may take before the proxy gives up, as the SDKs do.
const MAX_ROUNDS: u32 = 10;
/// How far out a suspended call's own deadline is put: its bridge's deadline governs it.
const SUSPENDED: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// The requests whose answers may come as `input_required`.
pub(super) fn may_need_input(method: &str) -> bool {
    matches!(method, "tools/call" | "prompts/get" | "resources/read")
}

/// A handshake-era client's call that a 2026-07-28 backend answered with `input_required`, while the
/// client answers the questions.
struct Asking {
    caller: Caller,
    /// The client's own progress token, for the next round.
    progress_token: Option<Value>,
    backend: BackendId,
    method: String,
    /// The params as the backend got them (without the last round's answers).
    params: Params,
    round: u32,
    request_state: Option<Box<RawValue>>,
    answers: Map<String, Value>,
    waiting: usize,
    deadline: Instant,
}

/// A 2026-07-28 client's call, answered with `input_required` while its handshake-era backend goes on.
struct Suspended {
    key: Key,
    /// Whose call it is: only its retry may resume it.
    requester: Requester,
    /// The backend's requests the client is to answer.
    asks: Vec<Ask>,
    /// The call's answer, if the backend gave it before the client retried.
    answer: Option<Message>,
    deadline: Instant,
}

/// A handshake-era backend's request, as a 2026-07-28 client sees it in `inputRequests`.
struct Ask {
    /// Its key in `inputRequests` and `inputResponses`.
    key: String,
    backend_id: Value,
    request: Value,
}

pub(super) struct Bridges {
    asking: HashMap<u64, Asking>,
    /// By `requestState`.
    suspended: HashMap<String, Suspended>,
    next_ask: u64,
    /// Begins every `requestState` this proxy makes, so a retry carrying one is known to be its own. It
    /// differs from process to process: another proxy's states (behind this one) pass through.
    state_prefix: String,
}

impl Default for Bridges {
    fn default() -> Bridges {
        let instance = crate::random::token_hex(4).unwrap_or_else(|_| format!("{:08x}", std::process::id()));
        Bridges { asking: HashMap::new(), suspended: HashMap::new(), next_ask: 0, state_prefix: format!("mcp-proxy-{instance}:") }
    }
}

impl Bridges {
    /// What every `requestState` (and task id) this process makes begins with.
    pub fn state_prefix(&self) -> &str {
        &self.state_prefix
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let asking = self.asking.values().map(|a| a.deadline);
        asking.chain(self.suspended.values().map(|s| s.deadline)).min()
    }

    /// Whether a handshake-era client is answering a backend's questions (its call is in no table).
    pub fn is_asking(&self) -> bool {
        !self.asking.is_empty()
    }

    fn suspended_call(&mut self, key: Key) -> Option<&mut Suspended> {
        self.suspended.values_mut().find(|s| s.key == key)
    }
}

impl Hub {
    /// Keeps the answer to a suspended call for the client's retry; true when `key` is one.
    pub(super) fn hold_for_retry(&mut self, key: Key, msg: &Message) -> bool {
        match self.bridges.suspended_call(key) {
            Some(suspended) => {
                suspended.answer = Some(msg.clone());
                // The call is over: its questions need no answers (and its backend may be a new process).
                suspended.asks.clear();
                true
            }
            None => false,
        }
    }

    /// An answer for a handshake-era client that is `input_required`: its questions go to the client
    /// (see [`Asking`]) and the entry is the bridge's. Any other answer gives the entry back.
    pub(super) fn bridge_input_required(
        &mut self,
        backend: BackendId,
        entry: InFlight<Internal>,
        msg: &Message,
    ) -> Option<InFlight<Internal>> {
        let handshake_caller = matches!(&entry.origin, Origin::Client { caller, .. } if caller.era == crate::event::Era::Handshake);
        if !handshake_caller || !is_input_required(msg) {
            return Some(entry);
        }
        self.ask_handshake_client(backend, entry, msg);
        None
    }

    fn ask_handshake_client(&mut self, backend: BackendId, entry: InFlight<Internal>, msg: &Message) {
        let Origin::Client { caller, progress_token } = entry.origin else { return };
        let result: Value = msg.result.as_ref().and_then(|r| serde_json::from_str(r.get()).ok()).unwrap_or_default();
        let Some((params, round)) = entry.resend else {
            return self.answer_error(&caller, code::INTERNAL_ERROR, "the server asked for input the proxy cannot relay");
        };
        if round + 1 >= MAX_ROUNDS {
            let why = format!("server '{}' asked for input {MAX_ROUNDS} times; the proxy gave up", self.backends.key(backend));
            return self.answer_error(&caller, code::INTERNAL_ERROR, &why);
        }
        let inputs: Vec<(String, Value)> =
            result.get("inputRequests").and_then(Value::as_object).map(|m| m.clone().into_iter().collect()).unwrap_or_default();
        if let Some(missing) =
            inputs.iter().filter_map(|(_, r)| r.get("method")?.as_str()).find(|m| !self.client_can_answer(caller.client, m))
        {
            let why = format!(
                "server '{}' asks '{missing}' of the client, which did not declare that it can answer it",
                self.backends.key(backend)
            );
            return self.answer_error(&caller, code::INVALID_REQUEST, &why);
        }
        let asking = Asking {
            deadline: Instant::now() + self.backends.timeout(backend, self.settings.request_timeout),
            request_state: result.get("requestState").map(raw),
            waiting: inputs.len(),
            answers: Map::new(),
            caller,
            progress_token,
            backend,
            method: entry.method,
            params,
            round: round + 1,
        };
        let bridge = self.requests.table.take_id();
        let (client, reply) = (asking.caller.client, asking.caller.reply.clone());
        self.bridges.asking.insert(bridge, asking);
        if inputs.is_empty() {
            return self.resend(bridge); // Only state to give back: the server wants the call again.
        }
        for (key, request) in inputs {
            let method = request.get("method").and_then(Value::as_str).unwrap_or_default().to_owned();
            let proxy_id = self.requests.forward_upstream(Upstream { client, asker: Asker::Bridge { bridge, key } });
            let params = request.get("params").map(raw);
            self.deliver(client, &reply, Message::request(Value::from(proxy_id), &method, params));
        }
    }

    /// Whether a client said it can answer a request a server wants to make (in its `initialize`; a
    /// client the proxy has no word from is judged by what the proxy declares for its clients).
    fn client_can_answer(&self, client: ClientId, method: &str) -> bool {
        Answerable::declared(self.clients.capabilities(client).or(self.client_capabilities.as_ref())).includes(method)
    }

    /// A handshake-era client answered one input request of a bridge.
    pub(super) fn input_answered(&mut self, bridge: u64, key: String, msg: Message) {
        let Some(asking) = self.bridges.asking.get_mut(&bridge) else { return };
        if let Some(error) = &msg.error {
            // The client declined to answer: the call ends with its error, as it would have at the server.
            let caller = asking.caller.clone();
            self.forget_bridge(bridge);
            return self.deliver(caller.client, &caller.reply, Message::error_response_raw(caller.id.clone(), error.clone()));
        }
        let result = msg.result.as_ref().and_then(|r| serde_json::from_str(r.get()).ok()).unwrap_or_default();
        if asking.answers.insert(key, result).is_none() {
            asking.waiting = asking.waiting.saturating_sub(1);
        }
        if asking.waiting == 0 {
            self.resend(bridge);
        }
    }

    /// Sends a bridged call to its backend again, with the client's answers and the backend's state.
    fn resend(&mut self, bridge: u64) {
        let Some(asking) = self.bridges.asking.remove(&bridge) else { return };
        self.requests.take_upstream_of_bridge(bridge);
        let mut params = asking.params.clone();
        params.set("inputResponses", raw(&Value::Object(asking.answers)));
        if let Some(state) = asking.request_state {
            params.set("requestState", state);
        }
        // The progress token goes back to the client's own, for the routing table to swap again.
        if let Some(Value::Object(mut meta)) = params.value("_meta") {
            match asking.progress_token {
                Some(token) => meta.insert("progressToken".into(), token),
                None => meta.remove("progressToken"),
            };
            params.set("_meta", raw(&Value::Object(meta)));
        }
        match self.try_forward(asking.caller.clone(), asking.backend, &asking.method, &params, None) {
            Ok(Some(key)) => self.requests.table.keep_for_resend(key, asking.params, asking.round),
            Ok(None) => {} // Refused by a limit, and answered.
            Err(caller) => {
                let why = format!("server '{}' is not connected", self.backends.key(asking.backend));
                self.answer_error(&caller, code::BACKEND_UNAVAILABLE, &why);
            }
        }
    }

    /// A handshake-era backend asks something of a 2026-07-28 client while serving its call `key`: the
    /// client gets it in an `input_required` answer, and the call waits for the client's retry.
    pub(super) fn ask_modern_client(&mut self, key: Key, backend_id: Value, request: &Message) {
        let Some(InFlight { origin: Origin::Client { caller, .. }, timeout, .. }) = self.requests.table.get(key) else { return };
        let (caller, timeout) = (caller.clone(), *timeout);
        self.bridges.next_ask += 1;
        let params = request.params.as_deref().map(raw_value);
        let mut asked = json!({ "method": request.method() });
        if let Some(params) = params {
            asked["params"] = params;
        }
        let ask = Ask { key: format!("{}-{}", request.method().replace('/', "-"), self.bridges.next_ask), backend_id, request: asked };
        if let Some(suspended) = self.bridges.suspended_call(key) {
            // Asked again before the client retried: the retry will be asked this one too.
            suspended.asks.push(ask);
            return;
        }
        self.requests.table.set_deadline(key, Instant::now() + SUSPENDED);
        let suspended = Suspended { key, requester: caller.requester(), asks: vec![ask], answer: None, deadline: Instant::now() + timeout };
        self.suspend(caller, suspended);
    }

    /// Answers the caller with `input_required` for the suspended call's questions, under a fresh
    /// `requestState`.
    fn suspend(&mut self, caller: Caller, suspended: Suspended) {
        let token = match crate::random::token_hex(16) {
            Ok(hex) => format!("{}{hex}", self.bridges.state_prefix),
            Err(e) => {
                log::error!("cannot make a requestState: {e}");
                self.abandon_suspended(suspended, "the proxy could not relay the request");
                return self.answer_error(&caller, code::INTERNAL_ERROR, "the proxy could not relay the server's request");
            }
        };
        let inputs: Map<String, Value> = suspended.asks.iter().map(|a| (a.key.clone(), a.request.clone())).collect();
        let result = json!({ "resultType": "input_required", "inputRequests": inputs, "requestState": token });
        self.bridges.suspended.insert(token, suspended);
        self.answer(&caller, raw(&result));
    }

    /// A request of a 2026-07-28 client that carries a `requestState`: when it is one of the proxy's,
    /// the retry of a suspended call, which it answers and takes over. False when the state is not the
    /// proxy's (it is a backend's, passed through).
    pub(super) fn resume(&mut self, caller: &Caller, params: &Params) -> bool {
        let Some(token) = params.str("requestState").filter(|s| s.starts_with(&self.bridges.state_prefix)) else { return false };
        // A retry from anyone else leaves the call waiting for its own client's.
        let ours = self.bridges.suspended.get(&token).is_some_and(|s| s.requester.admits(caller));
        let Some(mut suspended) = ours.then(|| self.bridges.suspended.remove(&token)).flatten() else {
            self.answer_error(caller, code::INVALID_PARAMS, "Invalid or expired requestState");
            return true;
        };
        let answers = params.value("inputResponses").unwrap_or_default();
        let backend = suspended.key.0;
        suspended.asks.retain(|ask| match answers.get(&ask.key) {
            Some(result) => {
                self.backends.send(backend, Message::response(ask.backend_id.clone(), raw(result)));
                false
            }
            None => true,
        });
        let progress_token = params.value("_meta").and_then(|m| m.get("progressToken").cloned());
        if let Some(answer) = suspended.answer.take() {
            self.requests.table.close(suspended.key);
            let mut answer = answer;
            answer.id = Some(caller.id.clone());
            self.deliver(caller.client, &caller.reply, answer);
            return true;
        }
        if !self.requests.table.rebind(suspended.key, caller.clone(), progress_token) {
            self.answer_error(caller, code::BACKEND_UNAVAILABLE, "the call ended while the client was answering");
            return true;
        }
        if !suspended.asks.is_empty() {
            // Questions left unanswered (or asked since): asked again, under a new state.
            suspended.requester = caller.requester();
            // The client has a fresh while to answer, as it had for the first questions.
            if let Some(call) = self.requests.table.get(suspended.key) {
                suspended.deadline = Instant::now() + call.timeout;
            }
            self.requests.table.set_deadline(suspended.key, Instant::now() + SUSPENDED);
            self.suspend(caller.clone(), suspended);
        }
        true
    }

    /// Gives up on bridges whose client did not answer (or retry) in time.
    pub(super) fn expire_bridges(&mut self, now: Instant) {
        let late: Vec<u64> = self.bridges.asking.iter().filter(|(_, a)| a.deadline <= now).map(|(id, _)| *id).collect();
        for bridge in late {
            self.fail_bridge(bridge, code::REQUEST_TIMEOUT, "the client did not answer the server's questions in time");
        }
        let late: Vec<String> = self.bridges.suspended.iter().filter(|(_, s)| s.deadline <= now).map(|(t, _)| t.clone()).collect();
        for token in late {
            if let Some(suspended) = self.bridges.suspended.remove(&token) {
                self.abandon_suspended(suspended, "the client did not answer in time");
            }
        }
    }

    /// A handshake-era client cancelled its call while answering the backend's questions: they are
    /// withdrawn, and the call is not answered. True when `request_id` was such a call.
    pub(super) fn cancel_bridge(&mut self, client: ClientId, request_id: &Value) -> bool {
        let found = self.bridges.asking.iter().find(|(_, a)| a.caller.client == client && a.caller.id == *request_id);
        let Some(bridge) = found.map(|(bridge, _)| *bridge) else { return false };
        self.forget_bridge(bridge);
        true
    }

    /// Forgets a client's bridges (it is gone): its suspended calls fail at their backends.
    pub(super) fn forget_bridges_of(&mut self, client: ClientId) {
        let asking: Vec<u64> = self.bridges.asking.iter().filter(|(_, a)| a.caller.client == client).map(|(id, _)| *id).collect();
        for bridge in asking {
            self.forget_bridge(bridge);
        }
        let tokens: Vec<String> =
            self.bridges.suspended.iter().filter(|(_, s)| s.requester.client() == client).map(|(t, _)| t.clone()).collect();
        for token in tokens {
            if let Some(suspended) = self.bridges.suspended.remove(&token) {
                self.abandon_suspended(suspended, "the client disconnected");
            }
        }
    }

    /// Fails the calls whose clients are answering their backends' questions (the proxy is stopping).
    pub(super) fn fail_bridges(&mut self, why: &str) {
        for bridge in self.bridges.asking.keys().copied().collect::<Vec<_>>() {
            self.fail_bridge(bridge, code::BACKEND_UNAVAILABLE, why);
        }
    }

    fn fail_bridge(&mut self, bridge: u64, code: i64, why: &str) {
        let Some(caller) = self.bridges.asking.get(&bridge).map(|a| a.caller.clone()) else { return };
        self.forget_bridge(bridge);
        self.answer_error(&caller, code, why);
    }

    fn forget_bridge(&mut self, bridge: u64) {
        self.bridges.asking.remove(&bridge);
        for (proxy_id, client) in self.requests.take_upstream_of_bridge(bridge) {
            let params = json!({ "requestId": proxy_id, "reason": "no longer needed" });
            self.send_to_client(client, Message::notification("notifications/cancelled", Some(raw(&params))));
        }
    }

    fn abandon_suspended(&mut self, suspended: Suspended, why: &str) {
        for ask in suspended.asks {
            self.backends.send(suspended.key.0, Message::error_response(ask.backend_id, code::INTERNAL_ERROR, why));
        }
        self.cancel_at_backend(suspended.key, why);
    }
}

fn is_input_required(msg: &Message) -> bool {
    let Some(result) = &msg.result else { return false };
    // Most results are not: a look at the text spares a parse.
    result.get().contains("input_required")
        && serde_json::from_str::<Value>(result.get()).ok().and_then(|r| r.get("resultType").cloned())
            == Some(Value::from("input_required"))
}

fn raw_value(raw: &RawValue) -> Value {
    serde_json::from_str(raw.get()).unwrap_or_default()
}
