//! The table of requests in flight to backends, and the id rewriting that keeps them apart.
//!
//! Every request the proxy sends to a backend gets a fresh numeric id from one counter, so requests from
//! different clients (which all number theirs from 1) never collide at a backend. A client's progress
//! token is replaced by a fresh proxy token for the same reason. The table maps both back, keeps the
//! client's id for cancellation, and keeps each request's deadline in a heap for timeouts.

use super::numbered::NumberedMap;
use crate::event::{BackendId, Caller, ClientId, ReplyTo};
use crate::jsonrpc::Params;
use serde_json::Value;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

/// Who is waiting for a backend's answer.
#[derive(Debug)]
pub enum Origin<I> {
    Client {
        caller: Caller,
        progress_token: Option<Value>,
    },
    /// The proxy itself (handshake, list refresh); `I` says what to do with the answer.
    Internal(I),
}

#[derive(Debug)]
pub struct InFlight<I> {
    pub origin: Origin<I>,
    pub method: String,
    pub timeout: Duration,
    pub opened: Instant,
    /// A tool call's own params and attempt, kept so that it can be tried again if it turns out it
    /// never reached its backend.
    pub retry: Option<(Params, u32)>,
    /// The params as the backend got them, and the round, kept for a request a 2026-07-28 backend may
    /// answer with `input_required`: the proxy asks the client and sends them again with the answers.
    pub resend: Option<(Params, u32)>,
    deadline: Instant,
    token: Option<u64>,
}

/// A request's key at the backend: its backend and the id the proxy gave it there.
pub type Key = (BackendId, u64);

pub struct Routing<I> {
    next_id: u64,
    requests: NumberedMap<Key, InFlight<I>>,
    /// A client's own id to the key at the backend. Clients choose these ids: SipHash.
    by_client: HashMap<(ClientId, IdKey), Key>,
    /// Proxy progress token to the request it was issued for.
    tokens: NumberedMap<u64, Key>,
    deadlines: BinaryHeap<Reverse<(Instant, BackendId, u64)>>,
    /// Requests in flight per backend, kept as a count for the per-backend limit.
    per_backend: NumberedMap<BackendId, usize>,
    /// Requests in flight per client, kept as a count for the idle-session sweep.
    per_client: NumberedMap<ClientId, usize>,
}

/// A client's request id as a map key: an integer as it is, anything else (a string, another number)
/// as its JSON text, so that `9` and `"9"` stay apart and the common case costs no allocation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum IdKey {
    Int(i64),
    Text(String),
}

impl IdKey {
    fn of(id: &Value) -> IdKey {
        match id.as_i64() {
            Some(n) => IdKey::Int(n),
            None => IdKey::Text(id.to_string()),
        }
    }
}

impl<I> Default for Routing<I> {
    fn default() -> Self {
        Routing {
            next_id: 1,
            requests: NumberedMap::default(),
            by_client: HashMap::new(),
            tokens: NumberedMap::default(),
            deadlines: BinaryHeap::new(),
            per_backend: NumberedMap::default(),
            per_client: NumberedMap::default(),
        }
    }
}

impl<I> Routing<I> {
    /// Registers a request and returns the id to send to the backend, and the progress token to put in
    /// its `_meta` when the client asked for progress.
    pub fn open(&mut self, backend: BackendId, origin: Origin<I>, method: &str, timeout: Duration) -> (u64, Option<u64>) {
        let id = self.take_id();
        let key = (backend, id);
        let token = match &origin {
            Origin::Client { caller, progress_token } => {
                self.by_client.insert((caller.client, IdKey::of(&caller.id)), key);
                *self.per_client.entry(caller.client).or_default() += 1;
                progress_token.as_ref().map(|_| {
                    let token = self.take_id();
                    self.tokens.insert(token, key);
                    token
                })
            }
            Origin::Internal(_) => None,
        };
        let opened = Instant::now();
        let deadline = opened + timeout;
        self.deadlines.push(Reverse((deadline, backend, id)));
        let entry = InFlight { origin, method: method.to_owned(), timeout, opened, retry: None, resend: None, deadline, token };
        self.requests.insert(key, entry);
        *self.per_backend.entry(backend).or_default() += 1;
        (id, token)
    }

    /// Removes and returns the request a backend's response answers.
    pub fn close(&mut self, key: Key) -> Option<InFlight<I>> {
        let entry = self.requests.remove(&key)?;
        if let Some(count) = self.per_backend.get_mut(&key.0) {
            *count = count.saturating_sub(1);
        }
        if let Origin::Client { caller, .. } = &entry.origin {
            self.by_client.remove(&(caller.client, IdKey::of(&caller.id)));
            if let Some(count) = self.per_client.get_mut(&caller.client) {
                *count -= 1;
                if *count == 0 {
                    self.per_client.remove(&caller.client);
                }
            }
        }
        if let Some(token) = entry.token {
            self.tokens.remove(&token);
        }
        Some(entry)
    }

    /// Keeps a tool call's params with its entry, for a retry if it is reported undelivered.
    pub fn keep_for_retry(&mut self, key: Key, params: Params, attempt: u32) {
        if let Some(entry) = self.requests.get_mut(&key) {
            entry.retry = Some((params, attempt));
        }
    }

    /// A request in flight.
    pub fn get(&self, key: Key) -> Option<&InFlight<I>> {
        self.requests.get(&key)
    }

    /// Keeps the params a request was sent with, for another round of it (see [`InFlight::resend`]).
    pub fn keep_for_resend(&mut self, key: Key, params: Params, round: u32) {
        if let Some(entry) = self.requests.get_mut(&key) {
            entry.resend = Some((params, round));
        }
    }

    /// Hands a request in flight to another caller, with that caller's progress token, and gives it its
    /// whole timeout again: a 2026-07-28 client retrying a call the proxy answered with `input_required`
    /// while its backend kept working. False when the request is no longer in flight.
    pub fn rebind(&mut self, key: Key, caller: Caller, progress_token: Option<Value>) -> bool {
        let Some(entry) = self.requests.get_mut(&key) else { return false };
        let Origin::Client { caller: old, progress_token: old_token } = &mut entry.origin else { return false };
        let (old_client, old_id) = (old.client, IdKey::of(&old.id));
        self.by_client.remove(&(old_client, old_id));
        if let Some(count) = self.per_client.get_mut(&old_client) {
            *count -= 1;
            if *count == 0 {
                self.per_client.remove(&old_client);
            }
        }
        self.by_client.insert((caller.client, IdKey::of(&caller.id)), key);
        *self.per_client.entry(caller.client).or_default() += 1;
        *old = caller;
        *old_token = progress_token;
        let deadline = Instant::now() + entry.timeout;
        self.set_deadline(key, deadline);
        true
    }

    /// Moves a request's deadline (later: the heap entry follows when it comes up).
    pub fn set_deadline(&mut self, key: Key, at: Instant) {
        if let Some(entry) = self.requests.get_mut(&key) {
            entry.deadline = at;
            self.deadlines.push(Reverse((at, key.0, key.1)));
        }
    }

    /// A client's requests in flight to one backend.
    pub fn client_requests_to(&self, backend: BackendId, client: ClientId) -> Vec<Key> {
        self.by_client.iter().filter(|((c, _), (b, _))| *c == client && *b == backend).map(|(_, key)| *key).collect()
    }

    /// The key of a client's request, by the id the client gave it.
    pub fn find_client_request(&self, client: ClientId, id: &Value) -> Option<Key> {
        self.by_client.get(&(client, IdKey::of(id))).copied()
    }

    /// Where to send progress a backend reports for a proxy token, and the client's own token,
    /// pushing the request's deadline back: a backend that reports progress is alive. Only the backend
    /// the request went to may report on it. The heap is not touched here (a chatty backend would
    /// grow it): `next_deadline` moves the entry when it comes up.
    pub fn progress(&mut self, backend: BackendId, token: u64) -> Option<(ClientId, ReplyTo, Value)> {
        let key = *self.tokens.get(&token).filter(|(b, _)| *b == backend)?;
        let entry = self.requests.get_mut(&key)?;
        entry.deadline = Instant::now() + entry.timeout;
        match &entry.origin {
            Origin::Client { caller, progress_token: Some(t) } => Some((caller.client, caller.reply.clone(), t.clone())),
            _ => None,
        }
    }

    /// Every request waiting on a backend, for when that backend goes away.
    pub fn keys_for_backend(&self, backend: BackendId) -> Vec<Key> {
        self.requests.keys().filter(|(b, _)| *b == backend).copied().collect()
    }

    /// True while any client request is in flight (the proxy's own requests do not count).
    pub fn has_client_requests(&self) -> bool {
        !self.by_client.is_empty()
    }

    /// True while a request of this client is in flight.
    pub fn client_busy(&self, client: ClientId) -> bool {
        self.per_client.contains_key(&client)
    }

    /// Requests in flight to one backend.
    pub fn in_flight(&self, backend: BackendId) -> usize {
        self.per_backend.get(&backend).copied().unwrap_or(0)
    }

    /// Every request a client is waiting for, for when that client goes away.
    pub fn keys_for_client(&self, client: ClientId) -> Vec<Key> {
        self.by_client.iter().filter(|((c, _), _)| *c == client).map(|(_, key)| *key).collect()
    }

    /// The callers with requests in flight to a backend, one per client.
    pub fn callers_waiting_on(&self, backend: BackendId) -> Vec<&Caller> {
        let mut callers: Vec<&Caller> = self
            .requests
            .iter()
            .filter(|((b, _), _)| *b == backend)
            .filter_map(|(_, entry)| match &entry.origin {
                Origin::Client { caller, .. } => Some(caller),
                Origin::Internal(_) => None,
            })
            .collect();
        callers.sort_unstable_by_key(|c| c.client);
        callers.dedup_by_key(|c| c.client);
        callers
    }

    /// The earliest deadline still in force, to bound the dispatcher's wait.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, backend, id))) = self.deadlines.peek().copied() {
            match self.requests.get(&(backend, id)) {
                Some(entry) if entry.deadline == at => return Some(at),
                // Pushed back by progress: the entry moves to its new deadline.
                Some(entry) => {
                    let later = entry.deadline;
                    self.deadlines.pop();
                    self.deadlines.push(Reverse((later, backend, id)));
                }
                // Answered: a stale heap entry.
                None => {
                    self.deadlines.pop();
                }
            }
        }
        None
    }

    /// Removes and returns the requests whose deadline has passed.
    pub fn expire(&mut self, now: Instant) -> Vec<(Key, InFlight<I>)> {
        let mut expired = Vec::new();
        while let Some(at) = self.next_deadline() {
            if at > now {
                break;
            }
            if let Some(Reverse((_, backend, id))) = self.deadlines.pop() {
                if let Some(entry) = self.close((backend, id)) {
                    expired.push(((backend, id), entry));
                }
            }
        }
        expired
    }

    /// A fresh number from the one counter behind every backend-side id, progress token and id of a
    /// server request forwarded to a client.
    pub fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: BackendId = BackendId(0);
    const C1: ClientId = ClientId(1);
    const C2: ClientId = ClientId(2);
    const MINUTE: Duration = Duration::from_secs(60);

    fn client(client: ClientId, id: i64, token: Option<&str>) -> Origin<()> {
        let caller = Caller {
            client,
            id: Value::from(id),
            reply: ReplyTo::Outbox,
            era: crate::event::Era::Handshake,
            log_level: None,
            owner: None,
            answers: Default::default(),
            profile: None,
        };
        Origin::Client { caller, progress_token: token.map(Value::from) }
    }

    fn client_with(client: ClientId, id: Value) -> Origin<()> {
        let caller = Caller {
            client,
            id,
            reply: ReplyTo::Outbox,
            era: crate::event::Era::Handshake,
            log_level: None,
            owner: None,
            answers: Default::default(),
            profile: None,
        };
        Origin::Client { caller, progress_token: None }
    }

    #[test]
    fn same_client_ids_from_two_clients_get_distinct_backend_ids() {
        let mut r = Routing::default();
        let (a, _) = r.open(B, client(C1, 1, None), "tools/call", MINUTE);
        let (b, _) = r.open(B, client(C2, 1, None), "tools/call", MINUTE);
        assert_ne!(a, b);
        assert!(matches!(r.close((B, b)).unwrap().origin, Origin::Client { caller: Caller { client: C2, .. }, .. }));
        assert!(matches!(r.close((B, a)).unwrap().origin, Origin::Client { caller: Caller { client: C1, .. }, .. }));
    }

    #[test]
    fn progress_token_maps_back_to_the_clients_own_token() {
        let mut r = Routing::default();
        let (_, token) = r.open(B, client(C1, 5, Some("tok")), "tools/call", MINUTE);
        let (client, _, original) = r.progress(B, token.unwrap()).unwrap();
        assert_eq!((client, original), (C1, Value::from("tok")));
    }

    #[test]
    fn closing_a_request_forgets_its_token_and_client_id() {
        let mut r = Routing::default();
        let (id, token) = r.open(B, client(C1, 5, Some("tok")), "tools/call", MINUTE);
        r.close((B, id));
        assert!(r.progress(B, token.unwrap()).is_none());
        assert_eq!(r.find_client_request(C1, &Value::from(5)), None);
    }

    #[test]
    fn client_request_is_found_by_its_own_id() {
        let mut r = Routing::default();
        let (id, _) = r.open(B, client(C1, 9, None), "tools/call", MINUTE);
        assert_eq!(r.find_client_request(C1, &Value::from(9)), Some((B, id)));
        assert_eq!(r.find_client_request(C2, &Value::from(9)), None);
        // 9 and "9" are different ids.
        assert_eq!(r.find_client_request(C1, &Value::from("9")), None);
    }

    #[test]
    fn string_float_and_large_ids_are_found_and_kept_apart() {
        let mut r = Routing::default();
        let ids = [Value::from("a"), Value::from(1.5), Value::from(u64::MAX), Value::from(-3), Value::from("-3")];
        let keys: Vec<Key> = ids.iter().map(|id| r.open(B, client_with(C1, id.clone()), "tools/call", MINUTE).0).map(|n| (B, n)).collect();
        for (id, key) in ids.iter().zip(&keys) {
            assert_eq!(r.find_client_request(C1, id), Some(*key), "{id}");
        }
        r.close(keys[3]);
        assert_eq!(r.find_client_request(C1, &Value::from(-3)), None);
        assert_eq!(r.find_client_request(C1, &Value::from("-3")), Some(keys[4]));
    }

    #[test]
    fn in_flight_counts_follow_open_and_close() {
        let mut r = Routing::default();
        let (a, _) = r.open(B, client(C1, 1, None), "tools/call", MINUTE);
        r.open(B, client(C1, 2, None), "tools/call", MINUTE);
        assert_eq!(r.in_flight(B), 2);
        r.close((B, a));
        r.close((B, a));
        assert_eq!(r.in_flight(B), 1);
        assert!(r.has_client_requests() && r.client_busy(C1) && !r.client_busy(C2));
    }

    #[test]
    fn expired_requests_are_returned_once() {
        let mut r = Routing::default();
        let (id, _) = r.open(B, client(C1, 1, None), "tools/call", Duration::ZERO);
        r.open(B, client(C1, 2, None), "tools/call", MINUTE);
        let expired = r.expire(Instant::now());
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].0, (B, id));
        assert!(r.expire(Instant::now()).is_empty());
    }

    #[test]
    fn progress_pushes_the_deadline_back() {
        let mut r = Routing::default();
        let (_, token) = r.open(B, client(C1, 1, Some("t")), "tools/call", Duration::from_millis(50));
        let first = r.next_deadline().unwrap();
        std::thread::sleep(Duration::from_millis(5));
        r.progress(B, token.unwrap());
        assert!(r.next_deadline().unwrap() > first);
        assert!(r.expire(first).is_empty());
    }

    #[test]
    fn progress_from_another_backend_is_ignored() {
        let mut r = Routing::default();
        let (_, token) = r.open(B, client(C1, 5, Some("tok")), "tools/call", MINUTE);
        assert!(r.progress(BackendId(1), token.unwrap()).is_none());
    }

    #[test]
    fn a_flood_of_progress_does_not_grow_the_deadline_heap() {
        let mut r = Routing::default();
        let (_, token) = r.open(B, client(C1, 5, Some("tok")), "tools/call", MINUTE);
        for _ in 0..1000 {
            r.progress(B, token.unwrap());
        }
        assert_eq!(r.deadlines.len(), 1);
    }

    #[test]
    fn a_rebound_request_answers_its_new_caller_under_its_new_progress_token() {
        let mut r = Routing::default();
        let (id, token) = r.open(B, client(C1, 1, Some("old")), "tools/call", MINUTE);
        let Origin::Client { caller, .. } = client(C2, 7, None) else { unreachable!() };
        assert!(r.rebind((B, id), caller, Some(Value::from("new"))));
        assert_eq!(r.find_client_request(C1, &Value::from(1)), None);
        assert_eq!(r.find_client_request(C2, &Value::from(7)), Some((B, id)));
        let (to, _, original) = r.progress(B, token.unwrap()).unwrap();
        assert_eq!((to, original), (C2, Value::from("new")));
        assert!(!r.client_busy(C1) && r.client_busy(C2));
    }

    #[test]
    fn clients_waiting_on_a_backend_are_listed_once() {
        let mut r = Routing::default();
        r.open(B, client(C1, 1, None), "tools/call", MINUTE);
        r.open(B, client(C1, 2, None), "tools/call", MINUTE);
        r.open(BackendId(1), client(C2, 1, None), "tools/call", MINUTE);
        let clients = |r: &Routing<()>, b| r.callers_waiting_on(b).iter().map(|c| c.client).collect::<Vec<_>>();
        assert_eq!(clients(&r, B), [C1]);
        assert_eq!(clients(&r, BackendId(1)), [C2]);
    }
}
