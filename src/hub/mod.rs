//! The dispatcher: one thread that owns every piece of routing state.
//!
//! Frontends (client connections) and backends (server connections) run in threads of their own and talk
//! to the dispatcher only through [`Event`]s on one channel; the dispatcher answers through each side's
//! own outbox channel. Because nothing else touches the catalog, the in-flight table or the client list,
//! none of them needs a lock, and the order of events is the order of truth.
//!
//! [`Hub`] composes the state, each part in the file that names it: `clients.rs` (clients and sessions),
//! `backends.rs` (backend records), `instances.rs` (per-client instances of isolated servers),
//! `requests.rs` (in flight, held, retried, forwarded upstream; the table itself is `routing.rs`),
//! `subscriptions.rs`, `listen.rs` (`subscriptions/listen` streams), `catalog.rs` (the aggregated view),
//! `views.rs` (each profile's view of it), `bridge.rs` (MRTR), `tasks.rs` and `modern_tasks.rs` (each
//! era's tasks), `metrics.rs` and `shutdown.rs`; `numbered.rs` hashes the maps keyed by the proxy's own
//! numbers. The flows between them: `client_messages.rs` (what clients send), `backend_messages.rs`
//! (what backends send), `handshake.rs` (from spawn to ready, list sync), `supervision.rs` (start, exit,
//! restart, timeouts), `isolation.rs` (which instance serves a client, starting and stopping them),
//! `reload.rs` (a new configuration) and `status.rs` (health, metrics, inspection).

mod backend_messages;
mod backends;
mod bridge;
pub mod catalog;
mod client_messages;
mod clients;
mod handshake;
mod instances;
mod isolation;
mod listen;
mod metrics;
mod modern_tasks;
mod numbered;
mod reload;
mod requests;
pub mod routing;
mod shutdown;
mod status;
mod subscriptions;
mod supervision;
mod tasks;
#[cfg(test)]
mod tests;
mod views;

use crate::backend::{Connection, Connector};
use crate::config::ServerConfig;
use crate::event::{Caller, ClientId, Event, Reply, ReplyTo, STREAM_QUEUE};
use crate::jsonrpc::{Kind, Message};
use crate::profile_config::Profile;
use crate::tool_config::Overrides;
use backends::Backends;
use catalog::{Catalog, Findings};
use clients::{Clients, Sent};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use requests::Requests;
use serde_json::value::RawValue;
use serde_json::Value;
use shutdown::Shutdown;
use std::time::{Duration, Instant};
use subscriptions::Subscriptions;

/// Events handled in a row, at most, before the timers get their turn (`Hub::tick`).
const BATCH: usize = 64;

/// What the dispatcher needs from the settings.
#[derive(Debug, Clone)]
pub struct HubSettings {
    pub separator: String,
    pub request_timeout: Duration,
    pub startup_timeout: Duration,
    /// Stop when the last client leaves (stdio mode: the client is the reason to live).
    pub exit_when_no_clients: bool,
    /// A session with no standing stream and no request in flight is forgotten after this long.
    pub session_idle_timeout: Duration,
    /// A Streamable HTTP session that sends nothing after its `initialize` is forgotten after this long.
    pub session_unused_timeout: Duration,
    /// First and longest delay before restarting a backend that went down.
    pub restart_backoff: (Duration, Duration),
    pub retries: crate::settings::Retries,
    /// The client capabilities (roots, sampling, elicitation) declared to backends. `None`: wait for
    /// the first client's `initialize` and declare what it has, right for stdio, whose one client
    /// arrives at once. HTTP clients come and go, so there the operator says what to declare.
    pub client_capabilities: Option<Value>,
    /// How long a shutdown lets requests in flight finish.
    pub shutdown_grace: Duration,
    /// Requests in flight to one backend at most; more are refused.
    pub max_in_flight: usize,
    /// Sessions (legacy SSE and Streamable HTTP) at most, in all, per API key or token and per client
    /// address (0: no limit).
    pub max_sessions: usize,
    pub max_sessions_per_key: usize,
    pub max_sessions_per_address: usize,
}

pub struct Hub {
    settings: HubSettings,
    /// Handed to each backend connection so it can report to us.
    events: Sender<Event>,
    /// Starts a backend's connection: the real transports, or an in-memory one in tests.
    connect: Connector,
    backends: Backends,
    catalog: Catalog,
    overrides: Overrides,
    /// What the last catalog build found (clashes, bad overrides); logged when new.
    findings: Findings,
    /// The profiles: each one's view of the catalog, and the credentials bound to them.
    views: views::Views,
    clients: Clients,
    subscriptions: Subscriptions,
    listeners: listen::Listeners,
    /// Calls waiting on a client's answers to its server's questions (MRTR, both eras).
    bridges: bridge::Bridges,
    /// Tasks made by backends, by id: which backend and which client (2025-11-25).
    tasks: tasks::Tasks,
    /// Tasks of the 2026-07-28 tasks extension, by the ids the proxy gave them.
    modern_tasks: modern_tasks::ModernTasks,
    requests: Requests,
    metrics: metrics::Metrics,
    shutdown: Shutdown,
    /// Until start-up settles, client requests are held; `None` once it has.
    settle_by: Option<Instant>,
    /// The first client's capabilities, declared (in part) to backends; `None` until known.
    client_capabilities: Option<Value>,
    /// When to look for idle sessions next.
    sweep_at: Instant,
}

/// What the dispatcher serves: the servers, the profiles (credentials bound) and the tool overrides.
pub struct Served {
    pub servers: Vec<ServerConfig>,
    pub profiles: Vec<Profile>,
    pub overrides: Overrides,
}

impl Hub {
    pub fn new(settings: HubSettings, served: Served, events: Sender<Event>) -> Hub {
        Hub::with_connector(settings, served, events, Box::new(Connection::start))
    }

    /// A dispatcher whose backend connections are made by `connect` (tests use in-memory ones).
    pub fn with_connector(settings: HubSettings, served: Served, events: Sender<Event>, connect: Connector) -> Hub {
        let Served { servers, profiles, overrides } = served;
        Hub {
            settle_by: Some(Instant::now() + settings.startup_timeout),
            client_capabilities: settings.client_capabilities.clone(),
            settings,
            events,
            connect,
            backends: Backends::new(servers),
            catalog: Catalog::default(),
            overrides,
            findings: Findings::default(),
            views: views::Views::new(profiles),
            clients: Clients::default(),
            subscriptions: Subscriptions::default(),
            listeners: listen::Listeners::default(),
            bridges: bridge::Bridges::default(),
            tasks: tasks::Tasks::default(),
            modern_tasks: modern_tasks::ModernTasks::default(),
            requests: Requests::default(),
            metrics: metrics::Metrics::default(),
            shutdown: Shutdown::default(),
            sweep_at: Instant::now(),
        }
    }

    /// Starts every backend and handles events until shutdown is complete.
    pub fn run(mut self, events: Receiver<Event>) {
        self.start();
        loop {
            let received = match self.next_wakeup() {
                Some(at) => events.recv_deadline(at),
                None => events.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match received {
                Ok(event) => {
                    self.handle(event);
                    // What queued meanwhile is handled before the timers: a burst costs one wake-up and
                    // one tick, and a bounded batch keeps a flood from holding timeouts back.
                    events.try_iter().take(BATCH - 1).for_each(|event| self.handle(event));
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            if self.tick(Instant::now()) {
                return;
            }
        }
    }

    fn start(&mut self) {
        self.start_backends();
        self.check_settled(Instant::now());
    }

    /// Does what is due at `now` (timeouts, the end of the start-up hold, idle sessions, restarts,
    /// retries, shutdown steps); true once a shutdown is complete.
    fn tick(&mut self, now: Instant) -> bool {
        self.expire_requests(now);
        self.expire_bridges(now);
        self.check_settled(now);
        self.sweep_sessions(now);
        self.expire_instances(now);
        self.restart_due(now);
        self.retry_due(now);
        self.shutdown.kill_overdue(now);
        self.advance_shutdown(now)
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::ClientConnected { client, outbox, profile } => {
                let profile = profile.map(|name| self.views.number(&name));
                self.clients.connect(client, outbox, profile);
            }
            Event::OpenSession { client, session, outbox, access, address, reply } => {
                let answer = self.open_session(client, session, outbox, access, address);
                let _ = reply.send(answer);
            }
            Event::FromClient { client, msg, era } => self.on_client_message(client, msg, ReplyTo::Outbox, era),
            Event::InvalidFromClient { client, error } => {
                self.send_to_client(client, Message::error_response(Value::Null, error.code(), &error.to_string()));
            }
            Event::Refused { client, answer } => self.send_to_client(client, answer),
            Event::FromSession { session, access, msg, reply, inline } => {
                self.on_session_message(&session, &access, msg, reply, inline);
            }
            Event::Stateless { client, msg, reply, access, param_headers } => {
                self.on_stateless_message(client, msg, reply, access, &param_headers);
            }
            Event::OpenStream { session, access, stream, outbox, reply } => {
                drop(reply.send(self.open_stream(&session, &access, stream, outbox)));
            }
            Event::StreamClosed { session, stream } => self.clients.stream_closed(&session, stream),
            Event::EndSession { session, access, reply } => drop(reply.send(self.end_session(&session, &access))),
            Event::ClientGone { client } => self.client_gone(client),
            Event::Health { detailed, reply } => drop(reply.send(self.health(detailed))),
            Event::Inspect { reply } => drop(reply.send(self.inspect())),
            Event::CheckOverrides { overrides, reply } => drop(reply.send(self.override_clashes(&overrides))),
            Event::Metrics { reply } => drop(reply.send(self.render_metrics())),
            Event::FromBackend { backend, generation, msg, about } if self.backends.is_current(backend, generation) => {
                self.on_backend_message(backend, msg, about);
            }
            Event::FromBackend { .. } => {} // From a connection since replaced.
            Event::Undelivered { backend, generation, id } if self.backends.is_current(backend, generation) => {
                self.undelivered(backend, &id);
            }
            Event::Undelivered { .. } => {}
            Event::BackendExited { backend, generation, reason, needs_login } if self.backends.is_current(backend, generation) => {
                self.backend_exited(backend, &reason, needs_login);
            }
            // A stopped (retired) connection is gone for good; anything else is from a replaced one.
            Event::BackendExited { backend, generation, .. } => drop(self.shutdown.retired_exited(backend, generation)),
            Event::Reload { servers, profiles, overrides } => self.apply_reload(Served { servers, profiles, overrides }),
            Event::TokensChanged => self.retry_logins(),
            Event::Shutdown => self.begin_shutdown(),
        }
    }

    fn next_wakeup(&mut self) -> Option<Instant> {
        let sweep = (self.clients.session_count() > 0).then_some(self.sweep_at);
        [
            self.requests.table.next_deadline(),
            self.settle_by,
            self.shutdown.next_wakeup(),
            sweep,
            self.backends.next_restart(),
            self.requests.next_retry(),
            self.bridges.next_deadline(),
            self.backends.instances.next_expiry(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Sends a message to a client's standing stream; a client that cannot take it is let go.
    fn send_to_client(&mut self, client: ClientId, msg: Message) {
        if self.clients.send(client, msg) == Sent::ClientLost {
            self.client_gone(client);
        }
    }

    /// Sends a message about one request where its caller waits for it.
    fn deliver(&mut self, client: ClientId, reply: &ReplyTo, msg: Message) {
        // An answer is activity too: an idle session's clock starts when its last call ends.
        self.clients.touch(client);
        match reply {
            ReplyTo::Outbox => self.send_to_client(client, msg),
            // A POST whose client reads slowly gets no more than a stream's worth of notifications
            // queued; the response itself always goes. If the request is gone, nothing is owed to it.
            ReplyTo::Request(tx) if tx.len() >= STREAM_QUEUE && msg.kind() != Kind::Response => {}
            ReplyTo::Request(tx) => drop(tx.send(Reply::Message(msg))),
        }
    }

    fn answer(&mut self, caller: &Caller, result: Box<RawValue>) {
        let msg = Message::response(caller.id.clone(), result);
        self.deliver(caller.client, &caller.reply, msg);
    }

    fn answer_error(&mut self, caller: &Caller, code: i64, message: &str) {
        let msg = Message::error_response(caller.id.clone(), code, message);
        self.deliver(caller.client, &caller.reply, msg);
    }
}
