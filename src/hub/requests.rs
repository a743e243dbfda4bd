//! Every request the dispatcher is responsible for and has not answered yet: those in flight to backends
//! (the routing table), those held until start-up settles, tool calls waiting for a retry, and requests
//! from backends forwarded to clients.
//!
//! Pure state; the flows that open and close these live in `client_messages.rs` and
//! `backend_messages.rs`.

use super::handshake::ListFetch;
use super::routing::Routing;
use crate::event::{BackendId, Caller, ClientId, ReplyTo};
use crate::jsonrpc::{Message, Params};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::time::Instant;

/// The proxy's own requests to backends, and what to do with their answers.
#[derive(Debug)]
pub(super) enum Internal {
    /// The `server/discover` probe: does the backend speak 2026-07-28?
    Discover,
    Initialize,
    /// A backend's `subscriptions/listen` (2026-07-28): open until the backend ends it.
    Listen,
    List(ListFetch),
    /// A request whose answer only matters for the log (a broadcast `logging/setLevel`, an unsubscribe).
    Ignore,
}

/// A tool call waiting to be tried again because its backend was down.
pub(super) struct Retry {
    pub at: Instant,
    pub caller: Caller,
    pub params: Params,
    pub attempt: u32,
}

/// A request to a client (`sampling/createMessage`, `elicitation/create`, `roots/list`) waiting for
/// the client's answer, and who asked it.
pub(super) struct Upstream {
    pub client: ClientId,
    pub asker: Asker,
}

pub(super) enum Asker {
    /// A handshake-era backend's own request, under the id it gave it.
    Backend { backend: BackendId, backend_id: Value },
    /// One of the input requests a 2026-07-28 backend's `input_required` result made, by the bridge
    /// that holds the call and the key the backend gave the input.
    Bridge { bridge: u64, key: String },
}

#[derive(Default)]
pub(super) struct Requests {
    /// In flight to backends.
    pub table: Routing<Internal>,
    /// Requests from backends forwarded to clients, by the id the proxy gave them there.
    upstream: HashMap<u64, Upstream>,
    /// Client requests held until start-up settles (all backends ready or failed, or the timeout).
    held: Vec<(Caller, Message)>,
    retries: Vec<Retry>,
    /// Backends' requests to clients that have not finished their handshake yet (a server sends no
    /// request but ping before it), delivered once they have.
    before_initialize: Vec<(ClientId, ReplyTo, Message)>,
    /// Which client got a backend's URL elicitation, by backend and `elicitationId`, for the
    /// `notifications/elicitation/complete` that follows; the oldest are forgotten past a bound.
    elicitations: VecDeque<((BackendId, String), ClientId)>,
    /// Which backends asked a client for its roots, to hear when they change.
    roots_askers: HashMap<ClientId, Vec<BackendId>>,
}

/// URL elicitations remembered for their completion notice at most.
const MAX_ELICITATIONS: usize = 1024;

/// Backends' requests one client may have waiting for its handshake at most; more are refused.
pub(super) const MAX_BEFORE_INITIALIZE: usize = 16;

impl Requests {
    pub fn hold(&mut self, caller: Caller, msg: Message) {
        self.held.push((caller, msg));
    }

    pub fn take_held(&mut self) -> Vec<(Caller, Message)> {
        std::mem::take(&mut self.held)
    }

    /// Keeps a request to a client until its handshake is done; false when it already has its share.
    pub fn hold_until_initialized(&mut self, client: ClientId, reply: ReplyTo, msg: Message) -> bool {
        if self.before_initialize.iter().filter(|(c, _, _)| *c == client).count() >= MAX_BEFORE_INITIALIZE {
            return false;
        }
        self.before_initialize.push((client, reply, msg));
        true
    }

    /// The requests kept for a client until its handshake was done, in order.
    pub fn take_held_until_initialized(&mut self, client: ClientId) -> Vec<(ReplyTo, Message)> {
        let (theirs, others) = std::mem::take(&mut self.before_initialize).into_iter().partition(|(c, _, _)| *c == client);
        self.before_initialize = others;
        theirs.into_iter().map(|(_, reply, msg)| (reply, msg)).collect()
    }

    /// Notes what a backend's request to a client means for later notifications: a URL elicitation's
    /// id, and that the backend asked for the client's roots.
    pub fn note_asked(&mut self, backend: BackendId, client: ClientId, msg: &Message) {
        match msg.method() {
            "roots/list" => {
                let askers = self.roots_askers.entry(client).or_default();
                if !askers.contains(&backend) {
                    askers.push(backend);
                }
            }
            "elicitation/create" => {
                let Some(id) = msg.params().ok().and_then(|p| p.str("elicitationId")) else { return };
                if self.elicitations.len() >= MAX_ELICITATIONS {
                    self.elicitations.pop_front();
                }
                self.elicitations.push_back(((backend, id), client));
            }
            _ => {}
        }
    }

    /// The client a backend's URL elicitation went to, forgotten once its completion is relayed.
    pub fn elicitation_completed(&mut self, backend: BackendId, id: &str) -> Option<ClientId> {
        let at = self.elicitations.iter().position(|((b, e), _)| *b == backend && e == id)?;
        self.elicitations.remove(at).map(|(_, client)| client)
    }

    /// The backends that asked a client for its roots.
    pub fn roots_askers(&self, client: ClientId) -> Vec<BackendId> {
        self.roots_askers.get(&client).cloned().unwrap_or_default()
    }

    pub fn schedule_retry(&mut self, retry: Retry) {
        self.retries.push(retry);
    }

    /// The tool calls whose retry time has come.
    pub fn take_due_retries(&mut self, now: Instant) -> Vec<Retry> {
        let (due, later) = std::mem::take(&mut self.retries).into_iter().partition(|r| r.at <= now);
        self.retries = later;
        due
    }

    pub fn next_retry(&self) -> Option<Instant> {
        self.retries.iter().map(|r| r.at).min()
    }

    /// True while something of the client's is in flight, held or waiting for a retry.
    pub fn has_work_for(&self, client: ClientId) -> bool {
        self.table.client_busy(client)
            || self.held.iter().any(|(caller, _)| caller.client == client)
            || self.retries.iter().any(|r| r.caller.client == client)
    }

    /// Drops a client's request that was not sent yet (held, or waiting for a retry).
    pub fn drop_unsent(&mut self, client: ClientId, id: &Value) {
        let ours = |caller: &Caller| caller.client == client && &caller.id == id;
        self.held.retain(|(caller, _)| !ours(caller));
        self.retries.retain(|r| !ours(&r.caller));
    }

    /// Drops every request of a client that was not sent yet, and those kept for it.
    pub fn drop_unsent_of(&mut self, client: ClientId) {
        self.held.retain(|(caller, _)| caller.client != client);
        self.retries.retain(|r| r.caller.client != client);
        self.before_initialize.retain(|(c, _, _)| *c != client);
        self.elicitations.retain(|(_, c)| *c != client);
        self.roots_askers.remove(&client);
    }

    /// Takes every request not sent yet, to be answered now (shutdown).
    pub fn take_unsent(&mut self) -> Vec<Caller> {
        let held = std::mem::take(&mut self.held).into_iter().map(|(caller, _)| caller);
        held.chain(std::mem::take(&mut self.retries).into_iter().map(|r| r.caller)).collect()
    }

    /// Records a backend's request forwarded to a client; returns the id the client sees.
    pub fn forward_upstream(&mut self, upstream: Upstream) -> u64 {
        let id = self.table.take_id();
        self.upstream.insert(id, upstream);
        id
    }

    /// The forwarded request a client's response answers: only the client it was sent to may answer
    /// it (ids are sequential, so easy to guess).
    pub fn answered_upstream(&mut self, client: ClientId, id: Option<&Value>) -> Option<Upstream> {
        let id = id.and_then(Value::as_u64).filter(|id| self.upstream.get(id).is_some_and(|u| u.client == client))?;
        self.upstream.remove(&id)
    }

    /// A backend withdrew its request: the id the client knows it by, and that client.
    pub fn cancelled_upstream(&mut self, backend: BackendId, backend_id: &Value) -> Option<(u64, ClientId)> {
        let asked = |u: &Upstream| matches!(&u.asker, Asker::Backend { backend: b, backend_id: id } if *b == backend && id == backend_id);
        let (&id, upstream) = self.upstream.iter().find(|(_, u)| asked(u))?;
        let client = upstream.client;
        self.upstream.remove(&id);
        Some((id, client))
    }

    /// Takes the requests a bridge made to its client (it is done, or given up), by their ids.
    pub fn take_upstream_of_bridge(&mut self, bridge: u64) -> Vec<(u64, ClientId)> {
        let ids: Vec<u64> = self
            .upstream
            .iter()
            .filter(|(_, u)| matches!(u.asker, Asker::Bridge { bridge: b, .. } if b == bridge))
            .map(|(id, _)| *id)
            .collect();
        ids.into_iter().filter_map(|id| self.upstream.remove(&id).map(|u| (id, u.client))).collect()
    }

    /// Takes the forwarded requests a client will never answer now.
    pub fn take_upstream_of(&mut self, client: ClientId) -> Vec<Upstream> {
        let ids: Vec<u64> = self.upstream.iter().filter(|(_, u)| u.client == client).map(|(id, _)| *id).collect();
        ids.into_iter().filter_map(|id| self.upstream.remove(&id)).collect()
    }

    /// Forgets the forwarded requests of a backend that is gone.
    pub fn forget_upstream_of(&mut self, backend: BackendId) {
        self.upstream.retain(|_, u| !matches!(u.asker, Asker::Backend { backend: b, .. } if b == backend));
    }
}
