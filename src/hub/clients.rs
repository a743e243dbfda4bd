//! The clients the dispatcher serves: who is connected, which HTTP session each one is, where its
//! messages go, whether it has finished its handshake, and the limits on sessions.
//!
//! Pure state. What clients send is handled in `client_messages.rs`.

use super::numbered::NumberedMap;
pub(super) use crate::event::{log_severity as severity, LOG_LEVELS};
use crate::event::{Access, ClientId, Era, ProfileId, STREAM_QUEUE};
use crate::jsonrpc::{Kind, Message};
use crossbeam_channel::{Sender, TrySendError};
use serde_json::Value;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A session whose stream holds this many messages (responses, backends' requests: notifications
/// stop at [`STREAM_QUEUE`]) is not reading at all and is let go. The stdio client never is: it is the
/// proxy's reason to live, and what it is owed besides notifications is bounded by its own requests.
const STREAM_HARD_CAP: usize = 4 * STREAM_QUEUE;

pub(super) struct Client {
    outbox: Option<Sender<Message>>,
    /// Which stream `outbox` feeds (Streamable HTTP streams come and go).
    stream: u64,
    /// True when the client lives only as long as its standing stream (stdio, legacy SSE); false for a
    /// Streamable HTTP session, which opens and closes streams as it likes and expires when idle.
    needs_stream: bool,
    session: Option<String>,
    /// The API key or token the session came with (an index, never the secret); the session is bound
    /// to it.
    owner: Option<String>,
    /// The address the session was opened from, for the per-address limit.
    address: Option<IpAddr>,
    /// Sent anything besides its `initialize` (and `notifications/initialized`), or opened a stream: a
    /// session never used expires after a few seconds instead of the idle timeout.
    used: bool,
    opened: Instant,
    /// Its notifications are being dropped (logged once per episode, not per message).
    lagging: bool,
    /// The severity it asked for with `logging/setLevel`: it hears no log message below it.
    log_level: Option<u8>,
    /// Answered its `initialize`: from then on it gets broadcast notifications (list changes, logs).
    initialized: bool,
    /// The era its messages came in (a stdio connection's first request decides it).
    era: Era,
    /// What it said it can do in its `initialize` (sampling, elicitation, roots).
    capabilities: Option<Value>,
    /// The profile it sees (`None`: the whole catalog).
    profile: Option<ProfileId>,
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
    /// A notification dropped because the client is not keeping up (counted in `/metrics`).
    Dropped,
    /// The client is not reading, or its stream is gone for good: it must be let go.
    ClientLost,
}

/// The session limits, from the settings.
#[derive(Debug, Clone, Copy)]
pub(super) struct SessionLimits {
    pub total: usize,
    /// Per API key or token; 0: none.
    pub per_key: usize,
    /// Per client address; 0: none.
    pub per_address: usize,
}

#[derive(Default)]
pub(super) struct Clients {
    by_id: NumberedMap<ClientId, Client>,
    /// HTTP session ids to their clients.
    sessions: HashMap<String, ClientId>,
    /// The level backends are set to: the lowest any client asked for, given again to backends that
    /// (re)start.
    pub log_level: Option<Value>,
    /// Notifications dropped for clients that did not keep up, since start.
    dropped: u64,
    /// Sessions refused by a limit, since start: a flood of refusals is logged at 1, 2, 4, 8... only.
    refused: u64,
}

impl Clients {
    /// The stdio client (or `--list-tools`).
    pub fn connect(&mut self, client: ClientId, outbox: Sender<Message>, profile: Option<ProfileId>) {
        self.add(client, None, Some(outbox), None, None, profile);
    }

    /// An HTTP session, bound to the credential it came with and the profile it resolved to.
    pub fn open_session(
        &mut self,
        client: ClientId,
        session: String,
        outbox: Option<Sender<Message>>,
        owner: Option<String>,
        address: Option<IpAddr>,
        profile: Option<ProfileId>,
    ) {
        self.add(client, Some(session), outbox, owner, address, profile);
    }

    fn add(
        &mut self,
        client: ClientId,
        session: Option<String>,
        outbox: Option<Sender<Message>>,
        owner: Option<String>,
        address: Option<IpAddr>,
        profile: Option<ProfileId>,
    ) {
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
            address,
            used: false,
            opened: Instant::now(),
            lagging: false,
            log_level: None,
            initialized: false,
            era: Era::Handshake,
            capabilities: None,
            profile,
            last_active: Instant::now(),
        };
        self.by_id.insert(client, record);
    }

    /// Why a new session cannot be had, if a limit says so: 503 when the proxy is full, 429 when this
    /// address, or this key or token, holds its share (checked first, so one client filling its share
    /// does not read as the proxy being full to everyone else).
    pub fn refusal(&mut self, owner: Option<&str>, address: Option<IpAddr>, limits: SessionLimits) -> Option<(u16, String)> {
        let refusal = self.limit_reached(owner, address, limits)?;
        self.refused += 1;
        if self.refused.is_power_of_two() {
            log::warn!("{} ({} sessions refused by a limit since start)", refusal.1, self.refused);
        }
        Some(refusal)
    }

    fn limit_reached(&self, owner: Option<&str>, address: Option<IpAddr>, limits: SessionLimits) -> Option<(u16, String)> {
        let held_by = |matches: &dyn Fn(&Client) -> bool| self.by_id.values().filter(|c| c.session.is_some() && matches(c)).count();
        if let Some(address) = address.filter(|_| limits.per_address > 0) {
            let held = held_by(&|c| c.address == Some(address));
            if held >= limits.per_address {
                return Some((429, format!("too many sessions from {address} (limit {})", limits.per_address)));
            }
        }
        if let Some(owner) = owner.filter(|_| limits.per_key > 0) {
            let held = held_by(&|c| c.owner.as_deref() == Some(owner));
            if held >= limits.per_key {
                return Some((429, format!("too many sessions for this key (limit {})", limits.per_key)));
            }
        }
        if self.sessions.len() >= limits.total {
            return Some((503, format!("too many sessions (limit {})", limits.total)));
        }
        None
    }

    /// The session's client, when the request's credential is the one that opened it and its path
    /// names the session's profile, if any: another key's request (or another profile's path) learns
    /// nothing of the session, not even that it exists.
    pub fn by_session(&self, session: &str, access: &Access, claimed: Option<ProfileId>) -> Option<ClientId> {
        let client = self.sessions.get(session)?;
        let claims = |c: &Client| access.profile.is_none() || c.profile.is_some() && c.profile == claimed;
        self.by_id.get(client).filter(|c| c.owner == access.owner && claims(c)).map(|_| *client)
    }

    /// The profile a client sees (`None`: the whole catalog).
    pub fn profile(&self, client: ClientId) -> Option<ProfileId> {
        self.by_id.get(&client)?.profile
    }

    /// The clients that have finished their handshake, with their profiles.
    pub fn initialized_with_profiles(&self) -> Vec<(ClientId, Option<ProfileId>)> {
        self.by_id.iter().filter(|(_, c)| c.initialized).map(|(id, c)| (*id, c.profile)).collect()
    }

    /// The session was used for more than its handshake.
    pub fn mark_used(&mut self, client: ClientId) {
        if let Some(c) = self.by_id.get_mut(&client) {
            c.used = true;
        }
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

    /// Notes a message from the client, in the era it came in; the profile it sees (found on the way,
    /// so a request costs one lookup of its client).
    pub fn heard(&mut self, client: ClientId, era: Era) -> Option<ProfileId> {
        let c = self.by_id.get_mut(&client)?;
        c.last_active = Instant::now();
        c.era = era;
        c.profile
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

    /// A session's new standing stream.
    pub fn open_stream(&mut self, client: ClientId, stream: u64, outbox: Sender<Message>) {
        if let Some(c) = self.by_id.get_mut(&client) {
            c.outbox = Some(outbox);
            c.stream = stream;
            c.used = true;
        }
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

    /// Streamable HTTP sessions that have done nothing since their `initialize`, `after` ago or more.
    pub fn unused_sessions(&self, now: Instant, after: Duration) -> Vec<ClientId> {
        self.by_id
            .iter()
            .filter(|(_, c)| c.session.is_some() && !c.needs_stream && !c.used && now.duration_since(c.opened) >= after)
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

    /// Notes the log level a client asked for; returns the level backends should now have (the
    /// lowest any client asked for), when that changed.
    pub fn set_log_level(&mut self, client: ClientId, severity: u8) -> Option<Value> {
        if let Some(c) = self.by_id.get_mut(&client) {
            c.log_level = Some(severity);
        }
        let lowest = self.by_id.values().filter_map(|c| c.log_level).min().map(|s| Value::from(LOG_LEVELS[usize::from(s)]));
        let changed = lowest != self.log_level;
        self.log_level = lowest;
        changed.then(|| self.log_level.clone()).flatten()
    }

    /// The level a client asked for, by name.
    pub fn log_level_of(&self, client: ClientId) -> Option<Value> {
        let severity = self.by_id.get(&client)?.log_level?;
        Some(Value::from(LOG_LEVELS[usize::from(severity)]))
    }

    /// Who hears a log message of `severity` that no one call can be blamed for: initialized clients
    /// that asked for logs at or below that severity; with no such client, the only client connected
    /// (the stdio client) as long as it asked for no level above it. `owner`, when given, narrows it to
    /// the sessions of that key or token (the message came from its calls).
    pub fn log_listeners(&self, severity: u8, owner: Option<Option<&str>>) -> Vec<ClientId> {
        let of_owner = |c: &Client| owner.is_none_or(|o| c.owner.as_deref() == o);
        let listeners: Vec<ClientId> = self
            .by_id
            .iter()
            .filter(|(_, c)| c.initialized && c.era == Era::Handshake && of_owner(c) && c.log_level.is_some_and(|l| l <= severity))
            .map(|(id, _)| *id)
            .collect();
        if !listeners.is_empty() {
            return listeners;
        }
        self.only()
            .filter(|id| self.by_id.get(id).is_some_and(|c| c.initialized && of_owner(c) && self.hears(*id, severity)))
            .into_iter()
            .collect()
    }

    /// Whether a handshake-era client that has finished its handshake hears a log message of
    /// `severity` meant for it alone.
    pub fn hears_logs(&self, client: ClientId, severity: u8) -> bool {
        self.by_id.get(&client).is_some_and(|c| c.initialized && c.era == Era::Handshake) && self.hears(client, severity)
    }

    /// Whether a client's own level lets a log message of `severity` through.
    pub fn hears(&self, client: ClientId, severity: u8) -> bool {
        self.by_id.get(&client).is_some_and(|c| c.log_level.is_none_or(|l| l <= severity))
    }

    /// The key or token a client's session belongs to (`None` inside for a client without one).
    pub fn owner(&self, client: ClientId) -> Option<Option<&str>> {
        self.by_id.get(&client).map(|c| c.owner.as_deref())
    }

    /// Notifications dropped for clients that did not keep up, since start.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Queues a message on a client's standing stream. Streams are unbounded channels (a bounded one
    /// allocates all its slots up front, ~100 KiB per session); the caps are kept here instead, so one
    /// slow client never holds up the dispatcher nor grows the proxy's memory: past [`STREAM_QUEUE`]
    /// messages its notifications are dropped (and counted), never its responses; a session past
    /// [`STREAM_HARD_CAP`] is let go. The stdio client is never let go for being slow.
    pub fn send(&mut self, client: ClientId, msg: Message) -> Sent {
        let Some(c) = self.by_id.get_mut(&client) else { return Sent::NoStream };
        let Some(outbox) = &c.outbox else {
            log::debug!("client {} has no open stream; {} dropped", client.0, msg.method());
            return Sent::NoStream;
        };
        if outbox.len() >= STREAM_QUEUE && msg.kind() == Kind::Notification {
            if !c.lagging {
                log::warn!("client {} is not keeping up with its messages; dropping its notifications", client.0);
                c.lagging = true;
            }
            self.dropped += 1;
            return Sent::Dropped;
        }
        if c.session.is_some() && outbox.len() >= STREAM_HARD_CAP {
            log::warn!("client {} is not reading its messages; disconnecting it", client.0);
            return Sent::ClientLost;
        }
        c.lagging &= outbox.len() >= STREAM_QUEUE / 2;
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
