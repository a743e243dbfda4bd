//! The clients the dispatcher serves: who is connected, which HTTP session each one is, where its
//! messages go, whether it has finished its handshake, and the limits on sessions.
//!
//! Pure state. What clients send is handled in `client_messages.rs`.

use super::numbered::NumberedMap;
use crate::event::{ClientId, Era, STREAM_QUEUE};
use crate::jsonrpc::Message;
use crossbeam_channel::{Sender, TrySendError};
use serde_json::Value;
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub(super) struct Client {
    outbox: Option<Sender<Message>>,
    /// Which stream `outbox` feeds (Streamable HTTP streams come and go).
    stream: u64,
    /// True when the client lives only as long as its standing stream (stdio, legacy SSE); false for a
    /// Streamable HTTP session, which opens and closes streams as it likes and expires when idle.
    needs_stream: bool,
    session: Option<String>,
    /// The API key or token the session came with (an index, never the secret).
    owner: Option<String>,
    /// Answered its `initialize`: from then on it gets broadcast notifications (list changes, logs).
    initialized: bool,
    /// The era its messages came in (a stdio connection's first request decides it).
    era: Era,
    /// What it said it can do in its `initialize` (sampling, elicitation, roots).
    capabilities: Option<Value>,
    last_active: Instant,
}

impl Client {
    /// The transport label for metrics.
    fn transport(&self) -> &'static str {
        match (self.session.is_some(), self.needs_stream) {
            (false, _) => "stdio",
            (true, true) => "sse",
            (true, false) => "streamable_http",
        }
    }
}

/// What became of a message for a client's standing stream.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Sent {
    Queued,
    /// Dropped: the client has no stream open right now (a Streamable HTTP session between streams).
    NoStream,
    /// The client is not reading, or its stream is gone for good: it must be let go.
    ClientLost,
}

/// The session limits, from the settings.
#[derive(Debug, Clone, Copy)]
pub(super) struct SessionLimits {
    pub total: usize,
    /// Per API key or token; 0: none.
    pub per_key: usize,
}

#[derive(Default)]
pub(super) struct Clients {
    by_id: NumberedMap<ClientId, Client>,
    /// HTTP session ids to their clients.
    sessions: HashMap<String, ClientId>,
    /// The last `logging/setLevel` level, given again to backends that (re)start.
    pub log_level: Option<Value>,
}

impl Clients {
    pub fn connect(&mut self, client: ClientId, session: Option<String>, outbox: Option<Sender<Message>>, owner: Option<String>) {
        if let Some(session) = &session {
            self.sessions.insert(session.clone(), client);
        }
        let needs_stream = outbox.is_some();
        let record = Client {
            outbox,
            stream: 0,
            needs_stream,
            session,
            owner,
            initialized: false,
            era: Era::Handshake,
            capabilities: None,
            last_active: Instant::now(),
        };
        self.by_id.insert(client, record);
    }

    /// Why a new session cannot be had, if a limit says so: 503 when the proxy is full, 429 when this
    /// key or token holds its share.
    pub fn refusal(&self, owner: Option<&str>, limits: SessionLimits) -> Option<(u16, String)> {
        if self.sessions.len() >= limits.total {
            log::warn!("session limit ({}) reached; refusing a new session", limits.total);
            return Some((503, format!("too many sessions (limit {})", limits.total)));
        }
        let owner = owner?;
        let held = self.by_id.values().filter(|c| c.owner.as_deref() == Some(owner)).count();
        if limits.per_key > 0 && held >= limits.per_key {
            log::warn!("{owner} holds {held} sessions, its limit; refusing another");
            return Some((429, format!("too many sessions for this key (limit {})", limits.per_key)));
        }
        None
    }

    pub fn by_session(&self, session: &str) -> Option<ClientId> {
        self.sessions.get(session).copied()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// The one client connected, when there is exactly one.
    pub fn only(&self) -> Option<ClientId> {
        match self.by_id.len() {
            1 => self.by_id.keys().next().copied(),
            _ => None,
        }
    }

    /// Notes activity: an idle session's clock starts again.
    pub fn touch(&mut self, client: ClientId) {
        if let Some(c) = self.by_id.get_mut(&client) {
            c.last_active = Instant::now();
        }
    }

    /// Notes a message from the client, in the era it came in.
    pub fn heard(&mut self, client: ClientId, era: Era) {
        if let Some(c) = self.by_id.get_mut(&client) {
            c.last_active = Instant::now();
            c.era = era;
        }
    }

    /// Notes what a client said it can do in its `initialize`.
    pub fn set_capabilities(&mut self, client: ClientId, capabilities: Value) {
        if let Some(c) = self.by_id.get_mut(&client) {
            c.capabilities = Some(capabilities);
        }
    }

    /// What a client said it can do, if it said.
    pub fn capabilities(&self, client: ClientId) -> Option<&Value> {
        self.by_id.get(&client)?.capabilities.as_ref()
    }

    pub fn era(&self, client: ClientId) -> Option<Era> {
        self.by_id.get(&client).map(|c| c.era)
    }

    /// From here on the client hears broadcasts (list changes, log messages).
    pub fn mark_initialized(&mut self, client: ClientId) {
        if let Some(c) = self.by_id.get_mut(&client) {
            c.initialized = true;
        }
    }

    /// Whether a client has finished its handshake (a client the proxy does not know has none to do).
    pub fn is_initialized(&self, client: ClientId) -> bool {
        self.by_id.get(&client).is_none_or(|c| c.initialized || c.era == Era::Modern)
    }

    /// The clients that hear broadcasts.
    pub fn initialized(&self) -> Vec<ClientId> {
        self.by_id.iter().filter(|(_, c)| c.initialized).map(|(id, _)| *id).collect()
    }

    /// A session's new standing stream; false for an unknown session.
    pub fn open_stream(&mut self, session: &str, stream: u64, outbox: Sender<Message>) -> bool {
        let Some(c) = self.sessions.get(session).and_then(|id| self.by_id.get_mut(id)) else { return false };
        c.outbox = Some(outbox);
        c.stream = stream;
        true
    }

    /// A session's standing stream ended; a replaced stream's end changes nothing.
    pub fn stream_closed(&mut self, session: &str, stream: u64) {
        let client = self.sessions.get(session).and_then(|id| self.by_id.get_mut(id));
        if let Some(c) = client.filter(|c| c.stream == stream) {
            c.outbox = None;
            c.last_active = Instant::now();
        }
    }

    /// Streamable HTTP sessions with no stream and no message for `idle`.
    pub fn idle_sessions(&self, now: Instant, idle: Duration) -> Vec<ClientId> {
        self.by_id
            .iter()
            .filter(|(_, c)| !c.needs_stream && c.outbox.is_none() && now.duration_since(c.last_active) >= idle)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Forgets a client and its session; false when it was not known.
    pub fn remove(&mut self, client: ClientId) -> bool {
        let Some(record) = self.by_id.remove(&client) else { return false };
        if let Some(session) = &record.session {
            self.sessions.remove(session);
        }
        true
    }

    pub fn clear(&mut self) {
        self.by_id.clear();
        self.sessions.clear();
    }

    /// Open clients per transport label, for `/metrics`.
    pub fn count_by_transport(&self, transport: &str) -> usize {
        self.by_id.values().filter(|c| c.transport() == transport).count()
    }

    /// Queues a message on a client's standing stream. Streams are unbounded channels (a bounded one
    /// allocates all its slots up front, ~100 KiB per session); the cap is kept here instead, so one
    /// slow client never holds up the dispatcher. The stdio client is never dropped for being slow.
    pub fn send(&mut self, client: ClientId, msg: Message) -> Sent {
        let Some(c) = self.by_id.get_mut(&client) else { return Sent::NoStream };
        let Some(outbox) = &c.outbox else {
            log::debug!("client {} has no open stream; {} dropped", client.0, msg.method());
            return Sent::NoStream;
        };
        if c.session.is_some() && outbox.len() >= STREAM_QUEUE {
            log::warn!("client {} is not reading its messages; disconnecting it", client.0);
            return Sent::ClientLost;
        }
        match outbox.try_send(msg) {
            Ok(()) => Sent::Queued,
            // A Streamable HTTP session just loses its stream until it opens another.
            Err(TrySendError::Disconnected(_) | TrySendError::Full(_)) if !c.needs_stream => {
                c.outbox = None;
                Sent::NoStream
            }
            Err(_) => Sent::ClientLost,
        }
    }
}
