//! The dispatcher: one thread that owns every piece of routing state.
//!
//! Frontends (client connections) and backends (server connections) run in threads of their own and talk to
//! the dispatcher only through [`Event`]s on one channel; the dispatcher answers through each side's own
//! outbox channel. Because nothing else touches the catalog, the in-flight table or the client list, none
//! of them needs a lock, and the order of events is the order of truth.
//!
//! The work is split by side: `clients.rs` handles what clients send (and sessions), `backends.rs` starts
//! backends, runs their handshake, keeps their lists in sync and handles what they send; `reload.rs`
//! applies a new configuration; `catalog.rs`, `routing.rs` and `metrics.rs` are the pure data they share.

mod backends;
pub mod catalog;
mod clients;
mod metrics;
mod reload;
pub mod routing;

use crate::backend::Connection;
use crate::config::ServerConfig;
use crate::jsonrpc::Message;
use catalog::Catalog;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use routing::Routing;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A client connection (the stdio client, an HTTP session). Unique for the life of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u64);

impl ClientId {
    pub fn fresh() -> ClientId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        ClientId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// A backend slot: its index in the dispatcher's table, in config key order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendId(pub usize);

/// Everything the dispatcher reacts to.
pub enum Event {
    /// The stdio client (or `--list-tools`) is there; the dispatcher writes to it through `outbox`.
    ClientConnected {
        client: ClientId,
        outbox: Sender<Message>,
    },
    /// An HTTP client asks for a session. `outbox` is its standing stream for messages that answer no
    /// request of its own (a Streamable HTTP client has none yet); `owner` names the API key or token it
    /// came with, for the per-key limit. `reply` gets [`Reply::Accepted`] or [`Reply::Refused`].
    OpenSession {
        client: ClientId,
        session: String,
        outbox: Option<Sender<Message>>,
        owner: Option<String>,
        reply: Sender<Reply>,
    },
    FromClient {
        client: ClientId,
        msg: Message,
    },
    /// The client sent something that is not a JSON-RPC message; it gets an error with a null id.
    InvalidFromClient {
        client: ClientId,
        error: crate::jsonrpc::ParseError,
    },
    /// A message posted over HTTP for a session. `reply` first gets [`Reply::UnknownSession`] or, for a
    /// notification or a response, [`Reply::Accepted`]; for a request with `inline` set it then gets
    /// the messages about that request (progress, the response), else those go to the session's outbox.
    FromSession {
        session: String,
        msg: Message,
        reply: Sender<Reply>,
        inline: bool,
    },
    /// A new standing stream for a session (Streamable HTTP `GET`); replaces the previous one.
    /// `stream` is unique per stream, so the end of a replaced stream is not taken for the new one's.
    OpenStream {
        session: String,
        stream: u64,
        outbox: Sender<Message>,
        reply: Sender<Reply>,
    },
    /// A standing stream ended (its client went away); the session lives on until it expires.
    StreamClosed {
        session: String,
        stream: u64,
    },
    /// Streamable HTTP `DELETE`: the client ends its session.
    EndSession {
        session: String,
        reply: Sender<Reply>,
    },
    /// `GET /health`: the dispatcher answers with a JSON status; `detailed` adds the backends.
    Health {
        detailed: bool,
        reply: Sender<Value>,
    },
    /// `GET /metrics`: the dispatcher's counters in the Prometheus text format.
    Metrics {
        reply: Sender<String>,
    },
    /// The effective catalog: every exposed tool with its server and original name, the problems
    /// found building it, and the backends' states (`--check`, the admin API).
    Inspect {
        reply: Sender<Value>,
    },
    ClientGone {
        client: ClientId,
    },
    /// `generation` tells connections of one backend apart across restarts.
    FromBackend {
        backend: BackendId,
        generation: u64,
        msg: Message,
    },
    /// A request to a remote backend could not be sent at all (no connection): it may be retried.
    Undelivered {
        backend: BackendId,
        generation: u64,
        id: Value,
    },
    /// The backend's connection ended (process exited, stream closed); `reason` is for the log.
    BackendExited {
        backend: BackendId,
        generation: u64,
        reason: String,
    },
    /// A new, already validated configuration to apply without a restart.
    Reload {
        servers: Vec<ServerConfig>,
        overrides: catalog::Overrides,
    },
    /// SIGTERM, SIGINT: stop the backends and return.
    Shutdown,
}

/// Messages a session's stream may have queued before its client counts as not reading and is dropped.
pub const STREAM_QUEUE: usize = 1024;

/// Protocol versions the proxy speaks with clients and backends, oldest first.
pub const PROTOCOL_VERSIONS: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
pub const LATEST_PROTOCOL_VERSION: &str = "2025-11-25";

/// What an HTTP request thread hears back about a message it posted.
#[derive(Debug)]
pub enum Reply {
    Accepted,
    UnknownSession,
    /// A session refused by a limit: the HTTP status to answer with, and why.
    Refused(u16, String),
    Message(Message),
}

/// Where the messages about one client request go.
#[derive(Debug, Clone)]
pub enum ReplyTo {
    /// The client's standing stream (stdio, legacy SSE).
    Outbox,
    /// The HTTP request that carried it (Streamable HTTP `POST`).
    Request(Sender<Reply>),
}

/// A client request being served: who asked, under which id, and where the answer goes.
#[derive(Debug, Clone)]
pub struct Caller {
    pub client: ClientId,
    pub id: Value,
    pub reply: ReplyTo,
}

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
    /// Sessions (legacy SSE and Streamable HTTP) at most, in all and per API key or token.
    pub max_sessions: usize,
    pub max_sessions_per_key: usize,
}

/// The proxy's own requests to backends, and what to do with their answers.
#[derive(Debug)]
enum Internal {
    Initialize,
    List(backends::ListFetch),
    /// A request whose answer only matters for the log (a broadcast `logging/setLevel`, an unsubscribe).
    Ignore,
}

struct Client {
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

/// A connection stopped by a reload, kept until it has exited, so that SIGKILL can follow SIGTERM
/// and a shutdown can wait for it: its children must not outlive the proxy either.
struct Retiring {
    backend: BackendId,
    generation: u64,
    connection: Connection,
    /// When to send SIGKILL; `None` once sent.
    kill_at: Option<Instant>,
}

/// A tool call waiting to be tried again because its backend was down.
struct Retry {
    at: Instant,
    caller: Caller,
    params: serde_json::Map<String, Value>,
    attempt: u32,
}

/// A request from a backend forwarded to a client, waiting for the client's answer.
struct Upstream {
    backend: BackendId,
    backend_id: Value,
    client: ClientId,
}

pub struct Hub {
    settings: HubSettings,
    /// Handed to each backend connection so it can report to us.
    events: Sender<Event>,
    backends: Vec<backends::Backend>,
    catalog: Catalog,
    overrides: catalog::Overrides,
    /// What the last catalog build found (clashes, bad overrides); logged when new.
    findings: catalog::Findings,
    clients: HashMap<ClientId, Client>,
    /// HTTP session ids to their clients.
    sessions: HashMap<String, ClientId>,
    routing: Routing<Internal>,
    metrics: metrics::Metrics,
    /// Requests from backends forwarded to clients, by the id the proxy gave them there.
    upstream: HashMap<u64, Upstream>,
    /// Resource URI to the clients subscribed to it; the backend is subscribed while the list is non-empty.
    subscribers: HashMap<String, Vec<ClientId>>,
    /// The last `logging/setLevel` level, given again to backends that (re)start.
    log_level: Option<Value>,
    /// Client requests held until start-up settles (all backends ready or failed, or the timeout).
    held: Vec<(Caller, Message)>,
    retries: Vec<Retry>,
    retiring: Vec<Retiring>,
    settle_by: Option<Instant>,
    /// The first client's capabilities, declared (in part) to backends; `None` until known.
    client_capabilities: Option<Value>,
    /// When to look for idle sessions next.
    sweep_at: Instant,
    stopping: Option<backends::Shutdown>,
}

impl Hub {
    pub fn new(settings: HubSettings, servers: Vec<ServerConfig>, overrides: catalog::Overrides, events: Sender<Event>) -> Hub {
        let settle_by = Some(Instant::now() + settings.startup_timeout);
        let client_capabilities = settings.client_capabilities.clone();

        Hub {
            settings,
            events,
            backends: servers.into_iter().map(backends::Backend::new).collect(),
            catalog: Catalog::default(),
            overrides,
            findings: catalog::Findings::default(),
            clients: HashMap::new(),
            sessions: HashMap::new(),
            routing: Routing::default(),
            metrics: metrics::Metrics::default(),
            upstream: HashMap::new(),
            subscribers: HashMap::new(),
            log_level: None,
            held: Vec::new(),
            retries: Vec::new(),
            retiring: Vec::new(),
            settle_by,
            client_capabilities,
            sweep_at: Instant::now(),
            stopping: None,
        }
    }

    /// Starts every backend and handles events until shutdown is complete.
    pub fn run(mut self, events: Receiver<Event>) {
        self.start_backends();
        self.check_settled(Instant::now());
        loop {
            let received = match self.next_wakeup() {
                Some(at) => events.recv_deadline(at),
                None => events.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match received {
                Ok(event) => self.handle(event),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            let now = Instant::now();
            self.expire_requests(now);
            self.check_settled(now);
            self.sweep_sessions(now);
            self.restart_due(now);
            self.retry_due(now);
            self.kill_overdue(now);
            if self.advance_shutdown(now) {
                return;
            }
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::ClientConnected { client, outbox } => self.client_connected(client, None, Some(outbox), None),
            Event::OpenSession { client, session, outbox, owner, reply } => {
                let answer = match self.session_refusal(owner.as_deref()) {
                    Some((status, why)) => Reply::Refused(status, why),
                    None => {
                        self.client_connected(client, Some(session), outbox, owner);
                        Reply::Accepted
                    }
                };
                let _ = reply.send(answer);
            }
            Event::FromClient { client, msg } => self.on_client_message(client, msg, ReplyTo::Outbox),
            Event::InvalidFromClient { client, error } => {
                self.send_to_client(client, Message::error_response(Value::Null, error.code(), &error.to_string()));
            }
            Event::FromSession { session, msg, reply, inline } => self.on_session_message(&session, msg, reply, inline),
            Event::OpenStream { session, stream, outbox, reply } => self.open_stream(&session, stream, outbox, &reply),
            Event::StreamClosed { session, stream } => self.stream_closed(&session, stream),
            Event::EndSession { session, reply } => match self.sessions.get(&session).copied() {
                Some(client) => {
                    self.client_gone(client);
                    let _ = reply.send(Reply::Accepted);
                }
                None => drop(reply.send(Reply::UnknownSession)),
            },
            Event::Health { detailed, reply } => drop(reply.send(self.health(detailed))),
            Event::Inspect { reply } => drop(reply.send(self.inspect())),
            Event::Metrics { reply } => drop(reply.send(self.render_metrics())),
            Event::ClientGone { client } => self.client_gone(client),
            Event::FromBackend { backend, generation, msg } if self.is_current(backend, generation) => {
                self.on_backend_message(backend, msg);
            }
            Event::Undelivered { backend, generation, id } if self.is_current(backend, generation) => {
                self.undelivered(backend, &id);
            }
            Event::Undelivered { .. } => {}
            Event::BackendExited { backend, generation, reason } if self.is_current(backend, generation) => {
                self.backend_exited(backend, &reason);
            }
            Event::BackendExited { backend, generation, .. } => {
                // A stopped (retired) connection is gone for good; anything else is from a replaced one.
                self.retiring.retain(|r| (r.backend, r.generation) != (backend, generation));
            }
            Event::FromBackend { .. } => {} // From a connection since replaced.
            Event::Reload { servers, overrides } => self.apply_reload(servers, overrides),
            Event::Shutdown => self.begin_shutdown(),
        }
    }

    fn next_wakeup(&mut self) -> Option<Instant> {
        let sweep = (!self.sessions.is_empty()).then_some(self.sweep_at);
        let restart = self.next_restart();
        let retry =
            [self.retries.iter().map(|r| r.at).min(), self.retiring.iter().filter_map(|r| r.kill_at).min()].into_iter().flatten().min();
        [self.routing.next_deadline(), self.settle_by, self.stopping.as_ref().map(|s| s.next_step), sweep, restart, retry]
            .into_iter()
            .flatten()
            .min()
    }

    /// Sends a message to a client's standing stream. A client whose stream is full is dropped: one
    /// slow client must never hold up the dispatcher. A closed stream ends a client that has no session
    /// (stdio, legacy SSE); a Streamable HTTP session just loses its stream until it opens another.
    fn send_to_client(&mut self, client: ClientId, msg: Message) {
        let Some(c) = self.clients.get_mut(&client) else { return };
        let Some(outbox) = &c.outbox else {
            log::debug!("client {} has no open stream; {} dropped", client.0, msg.method());
            return;
        };
        // Streams are unbounded channels (a bounded one allocates all its slots up front, ~100 KiB per
        // session); the cap is kept here instead. The stdio client is never dropped.
        let full = c.session.is_some() && outbox.len() >= STREAM_QUEUE;
        match if full { Err(TrySendError::Full(msg)) } else { outbox.try_send(msg) } {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                log::warn!("client {} is not reading its messages; disconnecting it", client.0);
                self.client_gone(client);
            }
            Err(TrySendError::Disconnected(_)) if !c.needs_stream => c.outbox = None,
            Err(TrySendError::Disconnected(_)) => self.client_gone(client),
        }
    }

    /// Sends a message about one request where its caller waits for it.
    fn deliver(&mut self, client: ClientId, reply: &ReplyTo, msg: Message) {
        // An answer is activity too: an idle session's clock starts when its last call ends.
        if let Some(c) = self.clients.get_mut(&client) {
            c.last_active = Instant::now();
        }
        match reply {
            ReplyTo::Outbox => self.send_to_client(client, msg),
            // A POST whose client reads slowly gets no more than a stream's worth of notifications
            // queued; the response itself always goes. If the request is gone, nothing is owed to it.
            ReplyTo::Request(tx) if tx.len() >= STREAM_QUEUE && msg.kind() != crate::jsonrpc::Kind::Response => {}
            ReplyTo::Request(tx) => drop(tx.send(Reply::Message(msg))),
        }
    }

    fn answer(&mut self, caller: &Caller, result: &Value) {
        let msg = Message::response(caller.id.clone(), crate::jsonrpc::raw(result));
        self.deliver(caller.client, &caller.reply, msg);
    }

    fn answer_error(&mut self, caller: &Caller, code: i64, message: &str) {
        let msg = Message::error_response(caller.id.clone(), code, message);
        self.deliver(caller.client, &caller.reply, msg);
    }

    /// Sends a notification to every client that has finished its handshake.
    fn broadcast(&mut self, method: &str, params: Option<&Value>) {
        let targets: Vec<ClientId> = self.clients.iter().filter(|(_, c)| c.initialized).map(|(id, _)| *id).collect();
        for client in targets {
            self.send_to_client(client, Message::notification(method, params.map(crate::jsonrpc::raw)));
        }
    }

    fn connection(&self, backend: BackendId) -> Option<&Connection> {
        self.backends.get(backend.0).and_then(|b| b.connection.as_ref())
    }

    fn backend_key(&self, backend: BackendId) -> &str {
        self.backends.get(backend.0).map_or("?", |b| b.config.key.as_str())
    }
}
