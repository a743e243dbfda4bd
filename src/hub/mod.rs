//! The dispatcher: one thread that owns every piece of routing state.
//!
//! Frontends (client connections) and backends (server connections) run in threads of their own and talk to
//! the dispatcher only through [`Event`]s on one channel; the dispatcher answers through each side's own
//! outbox channel. Because nothing else touches the catalog, the in-flight table or the client list, none
//! of them needs a lock, and the order of events is the order of truth.
//!
//! The work is split by side: `clients.rs` handles what clients send, `backends.rs` starts backends, runs
//! their handshake, keeps their lists in sync and handles what they send.

mod backends;
pub mod catalog;
mod clients;
pub mod routing;

use crate::backend::Connection;
use crate::config::ServerConfig;
use crate::jsonrpc::Message;
use catalog::Catalog;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use routing::Routing;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
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
    /// A client is there; the dispatcher sends it messages through `outbox`.
    ClientConnected { client: ClientId, outbox: Sender<Message> },
    FromClient { client: ClientId, msg: Message },
    /// The client sent something that is not a JSON-RPC message; it gets an error with a null id.
    InvalidFromClient { client: ClientId, error: crate::jsonrpc::ParseError },
    ClientGone { client: ClientId },
    FromBackend { backend: BackendId, msg: Message },
    /// The backend's connection ended (process exited, stream closed); `reason` is for the log.
    BackendExited { backend: BackendId, reason: String },
    /// SIGTERM, SIGINT: stop the backends and return.
    Shutdown,
}

/// Protocol versions the proxy speaks with clients and backends, oldest first.
pub const PROTOCOL_VERSIONS: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
pub const LATEST_PROTOCOL_VERSION: &str = "2025-11-25";

/// What the dispatcher needs from the settings.
#[derive(Debug, Clone)]
pub struct HubSettings {
    pub separator: String,
    pub request_timeout: Duration,
    pub startup_timeout: Duration,
    /// Stop when the last client leaves (stdio mode: the client is the reason to live).
    pub exit_when_no_clients: bool,
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
    outbox: Sender<Message>,
    initialized: bool,
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
    /// Catalog problems already logged, so a rebuild does not repeat them.
    logged_problems: HashSet<String>,
    clients: HashMap<ClientId, Client>,
    routing: Routing<Internal>,
    /// Requests from backends forwarded to clients, by the id the proxy gave them there.
    upstream: HashMap<u64, Upstream>,
    /// Resource URI to the clients subscribed to it; the backend is subscribed while the list is non-empty.
    subscribers: HashMap<String, Vec<ClientId>>,
    /// Client requests held until start-up settles (all backends ready or failed, or the timeout).
    held: Vec<(ClientId, Message)>,
    settle_by: Option<Instant>,
    stopping: Option<backends::Shutdown>,
}

impl Hub {
    pub fn new(settings: HubSettings, servers: Vec<ServerConfig>, events: Sender<Event>) -> Hub {
        let settle_by = Some(Instant::now() + settings.startup_timeout);
        Hub {
            settings,
            events,
            backends: servers.into_iter().map(backends::Backend::new).collect(),
            catalog: Catalog::default(),
            logged_problems: HashSet::new(),
            clients: HashMap::new(),
            routing: Routing::default(),
            upstream: HashMap::new(),
            subscribers: HashMap::new(),
            held: Vec::new(),
            settle_by,
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
            if self.advance_shutdown(now) {
                return;
            }
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::ClientConnected { client, outbox } => {
                self.clients.insert(client, Client { outbox, initialized: false });
            }
            Event::FromClient { client, msg } => self.from_client(client, msg),
            Event::InvalidFromClient { client, error } => {
                self.reply_error(client, Value::Null, error.code(), &error.to_string());
            }
            Event::ClientGone { client } => self.client_gone(client),
            Event::FromBackend { backend, msg } => self.from_backend(backend, msg),
            Event::BackendExited { backend, reason } => self.backend_exited(backend, &reason),
            Event::Shutdown => self.begin_shutdown(),
        }
    }

    fn next_wakeup(&mut self) -> Option<Instant> {
        [self.routing.next_deadline(), self.settle_by, self.stopping.as_ref().map(|s| s.next_step)]
            .into_iter()
            .flatten()
            .min()
    }

    /// Sends a message to a client. A client whose outbox is full or closed is dropped: one slow
    /// client must never hold up the dispatcher.
    fn send_to_client(&mut self, client: ClientId, msg: Message) {
        let Some(c) = self.clients.get(&client) else { return };
        match c.outbox.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                log::warn!("client {} is not reading its messages; disconnecting it", client.0);
                self.client_gone(client);
            }
            Err(TrySendError::Disconnected(_)) => self.client_gone(client),
        }
    }

    fn reply(&mut self, client: ClientId, id: Value, result: &Value) {
        self.send_to_client(client, Message::response(id, crate::jsonrpc::raw(result)));
    }

    fn reply_error(&mut self, client: ClientId, id: Value, code: i64, message: &str) {
        self.send_to_client(client, Message::error_response(id, code, message));
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
