//! The backends the dispatcher knows: one record per configured server, holding its state, its live
//! connection, what it said in its handshake, its lists, and when it is due to be started again.
//!
//! Pure state and the questions asked of it. What moves a backend from one state to another lives in
//! `supervision.rs` (start, exit, restart, timeouts) and `handshake.rs` (from `initialize` to ready).
//! A slot is never reused for another server, so a [`BackendId`] always means the same key.

use super::catalog::ListKind;
use super::instances::{Instance, Instances};
use crate::backend::Connection;
use crate::config::{Isolation, ServerConfig, Transport};
use crate::event::{BackendId, BackendState, BackendStatus, ClientId, InstanceStatus};
use crate::jsonrpc::Message;
use crate::settings::{Retries, RetryPolicy};
use serde_json::Value;
use std::time::{Duration, Instant};

/// A backend that stayed ready this long before going down is restarted without the backoff it had.
const STABLE_UPTIME: Duration = Duration::from_secs(30);

pub(super) struct Backend {
    pub config: ServerConfig,
    pub state: State,
    pub connection: Option<Connection>,
    /// Counts connections, so events from a replaced one can be told apart.
    pub generation: u64,
    /// Restarts so far, for `/health`.
    pub restarts: u32,
    /// Failed starts in a row; sets the next restart's delay.
    attempt: u32,
    pub restart_at: Option<Instant>,
    pub ready_since: Option<Instant>,
    /// Spawned, but `initialize` waits for the client's capabilities.
    pub awaiting_initialize: bool,
    /// The backend's `initialize` result (or one made of its `server/discover`), once it has answered.
    pub init: Option<Value>,
    /// Its open `subscriptions/listen` (2026-07-28), by the id the proxy gave it.
    pub listen: Option<u64>,
    pub lists: [Vec<Value>; 4],
    /// Bumped per fetch of each list, so an older fetch that finishes late is dropped.
    pub list_generations: [u64; 4],
    /// Lists still being fetched during start-up.
    pub fetching: usize,
    /// Set when this is one client's instance of an isolated server.
    pub instance: Option<Instance>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum State {
    Starting,
    Ready,
    Failed(String),
    /// A remote server that refuses the proxy until a person logs in (`mcp-proxy-server login`); the
    /// text says so. Started again like a failed one, so a login is noticed.
    NeedsLogin(String),
    Disabled,
    /// Taken out of the configuration by a reload; the slot stays so ids keep their meaning.
    Removed,
}

impl Backend {
    pub fn new(config: ServerConfig) -> Backend {
        let state = if config.active { State::Starting } else { State::Disabled };
        Backend {
            config,
            state,
            connection: None,
            generation: 0,
            restarts: 0,
            attempt: 0,
            restart_at: None,
            ready_since: None,
            awaiting_initialize: false,
            init: None,
            listen: None,
            lists: Default::default(),
            list_generations: [0; 4],
            fetching: 0,
            instance: None,
        }
    }

    /// The record of a new instance of an isolated server for one client, to be started.
    pub fn instance(config: ServerConfig, server: BackendId, owner: ClientId) -> Backend {
        let idle_timeout = match config.isolation {
            Isolation::Session { idle_timeout, .. } => idle_timeout,
            Isolation::Shared => crate::config::DEFAULT_INSTANCE_IDLE,
        };
        let now = Instant::now();
        let instance = Instance { server, owner, created: now, last_used: now, idle_timeout, waiting: Vec::new() };
        Backend { instance: Some(instance), ..Backend::new(config) }
    }

    /// Takes a new configuration for the same key; the slot starts over, keeping its generation count
    /// and its last lists: until its new connection lists its tools, their names are known as withdrawn,
    /// so a call to one meanwhile is retried (a backend restarting), not refused as an unknown tool.
    pub fn reset(&mut self, config: ServerConfig) {
        let (generation, lists) = (self.generation, std::mem::take(&mut self.lists));
        *self = Backend::new(config);
        self.generation = generation;
        self.lists = lists;
    }

    fn capability(&self, name: &str) -> Option<&Value> {
        self.init.as_ref()?.get("capabilities")?.get(name).filter(|v| !v.is_null())
    }

    pub fn has_capability(&self, name: &str) -> bool {
        self.capability(name).is_some()
    }

    /// A boolean flag inside a capability, such as `resources.subscribe`.
    pub fn capability_flag(&self, name: &str, flag: &str) -> bool {
        self.capability(name).and_then(|c| c.get(flag)).and_then(Value::as_bool).unwrap_or(false)
    }

    /// Whether a capability declares the object at this path (`tasks.requests.tools.call`).
    pub fn capability_flag_path(&self, path: &[&str]) -> bool {
        let Some((first, rest)) = path.split_first() else { return false };
        let mut at = self.capability(first);
        for key in rest {
            at = at.and_then(|v| v.get(key));
        }
        at.is_some_and(|v| !v.is_null())
    }

    pub fn instructions(&self) -> Option<&str> {
        self.init.as_ref()?.get("instructions")?.as_str()
    }

    pub fn list(&self, kind: ListKind) -> &[Value] {
        &self.lists[kind as usize]
    }

    pub fn is_ready(&self) -> bool {
        self.state == State::Ready
    }

    /// Whether its connection speaks 2026-07-28 (known once its handshake is done).
    pub fn is_modern(&self) -> bool {
        self.connection.as_ref().is_some_and(|c| c.dialect().is_modern())
    }

    /// Plans the next start after going down: exponential backoff with jitter, starting over once the
    /// backend had stayed up for a while. Returns the delay.
    pub fn plan_restart(&mut self, (min, max): (Duration, Duration)) -> Duration {
        if self.ready_since.take().is_some_and(|since| since.elapsed() >= STABLE_UPTIME) {
            self.attempt = 0;
        }
        let delay = backoff(min, max, self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        self.restart_at = Some(Instant::now() + delay);
        delay
    }

    fn reported_state(&self) -> (BackendState, Option<String>) {
        match &self.state {
            State::Starting => (BackendState::Connecting, None),
            State::Ready => (BackendState::Connected, None),
            State::Failed(why) => (BackendState::Failed, Some(crate::logging::mask(why))),
            State::NeedsLogin(why) => (BackendState::NeedsLogin, Some(crate::logging::mask(why))),
            State::Disabled | State::Removed => (BackendState::Inactive, None),
        }
    }

    fn status(&self, instances: Option<Vec<InstanceStatus>>) -> BackendStatus {
        let (state, last_error) = self.reported_state();
        BackendStatus {
            key: self.config.key.clone(),
            transport: self.config.transport.type_name(),
            state,
            last_error,
            restarts: self.restarts,
            tools: if self.is_ready() { self.list(ListKind::Tools).len() } else { 0 },
            instances,
        }
    }

    fn instance_status(&self) -> Option<InstanceStatus> {
        let instance = self.instance.as_ref()?;
        Some(InstanceStatus {
            client: instance.owner.0,
            state: self.reported_state().0,
            age_secs: instance.created.elapsed().as_secs(),
            restarts: self.restarts,
        })
    }
}

/// Every backend record, by [`BackendId`]: one slot per configured server, and the instances of
/// isolated servers. Iterating goes over the servers only; instances are reached through their server
/// or their client, or by id.
#[derive(Default)]
pub(super) struct Backends {
    servers: Vec<Backend>,
    pub instances: Instances,
}

impl Backends {
    pub fn new(servers: Vec<ServerConfig>) -> Backends {
        Backends { servers: servers.into_iter().map(Backend::new).collect(), instances: Instances::default() }
    }

    pub fn get(&self, id: BackendId) -> Option<&Backend> {
        match Instances::is_instance(id) {
            true => self.instances.get(id),
            false => self.servers.get(id.0),
        }
    }

    pub fn get_mut(&mut self, id: BackendId) -> Option<&mut Backend> {
        match Instances::is_instance(id) {
            true => self.instances.get_mut(id),
            false => self.servers.get_mut(id.0),
        }
    }

    /// The server a backend record belongs to: its own id for a server, its server for an instance.
    pub fn server_of(&self, id: BackendId) -> BackendId {
        self.get(id).and_then(|b| b.instance.as_ref()).map_or(id, |i| i.server)
    }

    /// The client an instance serves (`None` for a server, which serves everyone).
    pub fn owner_of(&self, id: BackendId) -> Option<ClientId> {
        self.get(id).and_then(|b| b.instance.as_ref()).map(|i| i.owner)
    }

    /// Whether a server gives each client session an instance of its own.
    pub fn is_isolated(&self, id: BackendId) -> bool {
        self.get(id).is_some_and(|b| matches!(b.config.isolation, Isolation::Session { .. }))
    }

    pub fn ids(&self) -> impl Iterator<Item = BackendId> {
        (0..self.servers.len()).map(BackendId)
    }

    /// Every record's id, instances included.
    pub fn all_ids(&self) -> Vec<BackendId> {
        self.ids().chain(self.instances.iter().map(|(id, _)| id)).collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = (BackendId, &Backend)> {
        self.servers.iter().enumerate().map(|(i, b)| (BackendId(i), b))
    }

    /// Every record, instances included.
    pub fn iter_mut_all(&mut self) -> impl Iterator<Item = &mut Backend> {
        self.servers.iter_mut().chain(self.instances.iter_mut())
    }

    /// Every backend still configured (removed slots are kept only for their ids).
    pub fn configured(&self) -> impl Iterator<Item = &Backend> {
        self.servers.iter().filter(|b| b.state != State::Removed)
    }

    pub fn find(&self, key: &str) -> Option<BackendId> {
        self.servers.iter().position(|b| b.config.key == key).map(BackendId)
    }

    pub fn add(&mut self, config: ServerConfig) -> BackendId {
        self.servers.push(Backend::new(config));
        BackendId(self.servers.len() - 1)
    }

    /// The server's key, for logs and messages.
    pub fn key(&self, id: BackendId) -> &str {
        self.get(id).map_or("?", |b| b.config.key.as_str())
    }

    /// True for events from the backend's live connection.
    pub fn is_current(&self, id: BackendId, generation: u64) -> bool {
        self.get(id).is_some_and(|b| b.generation == generation && b.connection.is_some())
    }

    /// Queues a message for a backend; false when it has no live connection.
    pub fn send(&self, id: BackendId, msg: Message) -> bool {
        self.get(id).and_then(|b| b.connection.as_ref()).is_some_and(|c| c.send(msg))
    }

    /// The backend's own request timeout, else the proxy's.
    pub fn timeout(&self, id: BackendId, default: Duration) -> Duration {
        self.get(id).and_then(|b| b.config.timeout).unwrap_or(default)
    }

    /// The tool-call retry policy for the backend's transport.
    pub fn retry_policy(&self, id: BackendId, retries: &Retries) -> RetryPolicy {
        match self.get(id).map(|b| &b.config.transport) {
            Some(Transport::Stdio(_)) | None => retries.stdio,
            Some(Transport::Sse(_)) => retries.sse,
            Some(Transport::StreamableHttp(_)) => retries.http,
        }
    }

    /// Why a backend cannot take a call right now, in words for an error message.
    pub fn unavailable_reason(&self, id: BackendId) -> String {
        match self.get(id).map(|b| &b.state) {
            Some(State::Failed(why) | State::NeedsLogin(why)) => why.clone(),
            Some(State::Starting) => "starting".to_owned(),
            _ => "not connected".to_owned(),
        }
    }

    pub fn next_restart(&self) -> Option<Instant> {
        self.servers.iter().filter_map(|b| b.restart_at).min()
    }

    /// The backends whose restart time has come.
    pub fn due_for_restart(&self, now: Instant) -> Vec<BackendId> {
        self.iter().filter(|(_, b)| b.restart_at.is_some_and(|at| at <= now)).map(|(id, _)| id).collect()
    }

    /// The ready handshake-era backends that declared a capability (the ones `logging/setLevel` and
    /// `resources/subscribe` are for).
    pub fn ready_handshake_with(&self, capability: &str) -> Vec<BackendId> {
        self.iter().filter(|(_, b)| b.is_ready() && !b.is_modern() && b.has_capability(capability)).map(|(id, _)| id).collect()
    }

    pub fn statuses(&self) -> Vec<BackendStatus> {
        self.iter()
            .filter(|(_, b)| b.state != State::Removed)
            .map(|(id, b)| {
                let instances = matches!(b.config.isolation, Isolation::Session { .. })
                    .then(|| self.instances.of_server(id).iter().filter_map(|(_, i)| i.instance_status()).collect());
                b.status(instances)
            })
            .collect()
    }

    pub fn all_stopped(&self) -> bool {
        self.servers.iter().chain(self.instances.iter().map(|(_, b)| b)).all(|b| b.connection.is_none())
    }

    /// Every live connection, instances' included.
    pub fn connections(&self) -> impl Iterator<Item = &Connection> {
        self.servers.iter().chain(self.instances.iter().map(|(_, b)| b)).filter_map(|b| b.connection.as_ref())
    }
}

/// `min * 2^attempt`, capped at `max`, less up to a quarter at random so that backends that failed
/// together do not all come back in the same instant.
fn backoff(min: Duration, max: Duration, attempt: u32) -> Duration {
    let full = min.saturating_mul(2u32.saturating_pow(attempt.min(31))).min(max);
    full.mul_f64(1.0 - 0.25 * crate::random::unit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(2));
        let within = |d: Duration, full: u64| d <= Duration::from_millis(full) && d >= Duration::from_millis(full * 3 / 4);
        assert!(within(backoff(min, max, 0), 100));
        assert!(within(backoff(min, max, 3), 800));
        assert!(within(backoff(min, max, 10), 2000));
        assert!(within(backoff(min, max, 1000), 2000));
    }
}
