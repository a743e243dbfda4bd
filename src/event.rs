//! The contract between the dispatcher and the threads around it: the [`Event`]s they send it, the ids
//! that name clients and backends, and the typed answers it gives back.
//!
//! Frontends (client connections), backends (server connections), the signal and config-watch threads
//! and the dispatcher (`hub`) all import this module and none of them imports another: a backend knows
//! nothing of clients, a frontend nothing of backends, and the dispatcher nothing of sockets or pipes.

use crate::config::ServerConfig;
use crate::jsonrpc::{Message, ParseError};
pub use crate::modern::Era;
use crate::tool_config::Overrides;
use crossbeam_channel::Sender;
use serde::Serialize;
use serde_json::Value;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

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

/// A profile, as the dispatcher numbers it (small, so that a [`Caller`] stays small); a name keeps its
/// number across reloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProfileId(pub std::num::NonZeroU32);

/// How a credential is named outside the secret itself: `key #N` (the N-th of `ALLOWED_KEYS`) or
/// `token #N`. Sessions are bound to it, and profiles to the credentials they list.
pub fn owner_label(kind: &str, index: usize) -> String {
    format!("{kind} #{}", index + 1)
}

/// Who an HTTP request comes from, as far as routing cares: the credential it carries (`owner`, a
/// label from [`owner_label`], never the secret) and the profile its path names (`/mcp/<profile>`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    pub owner: Option<String>,
    pub profile: Option<String>,
}

/// Everything the dispatcher reacts to.
pub enum Event {
    /// The stdio client (or `--list-tools`) is there; the dispatcher writes to it through `outbox`.
    /// `profile` is the one `--profile` chose (none: the whole catalog).
    ClientConnected {
        client: ClientId,
        outbox: Sender<Message>,
        profile: Option<String>,
    },
    /// An HTTP client asks for a session. `outbox` is its standing stream for messages that answer no
    /// request of its own (a Streamable HTTP client has none yet); `access.owner` names the API key or
    /// token it came with and `address` the address it came from, for the per-key and per-address
    /// limits; the session is bound to its owner and to the profile it resolves to (refused for a profile
    /// that does not exist or that its credential may not use). `reply` gets [`Reply::Accepted`] or
    /// [`Reply::Refused`].
    OpenSession {
        client: ClientId,
        session: String,
        outbox: Option<Sender<Message>>,
        access: Access,
        address: Option<IpAddr>,
        reply: Sender<Reply>,
    },
    /// A message from a connected client (stdio); `era` is the one its connection speaks.
    FromClient {
        client: ClientId,
        msg: Message,
        era: Era,
    },
    /// The client sent something that is not a JSON-RPC message; it gets an error with a null id.
    InvalidFromClient {
        client: ClientId,
        error: ParseError,
    },
    /// A request its frontend refused before routing (it does not fit the era its connection speaks):
    /// the dispatcher only writes the answer, in order with the client's other messages.
    Refused {
        client: ClientId,
        answer: Message,
    },
    /// A message posted over HTTP for a session. `reply` first gets [`Reply::UnknownSession`] (also
    /// when the credential it came with is not the one that opened the session, or its path names
    /// another profile than the session's) or, for a
    /// notification or a response, [`Reply::Accepted`]; for a request with `inline` set it then gets
    /// the messages about that request (progress, the response), else those go to the session's outbox.
    FromSession {
        session: String,
        access: Access,
        msg: Message,
        reply: Sender<Reply>,
        inline: bool,
    },
    /// A request that belongs to no session (a
    /// 2026-07-28 request over Streamable HTTP): `client` is made up for it alone, and everything about
    /// it goes to `reply`.
    /// `ClientGone` for that client means its connection closed: the request is cancelled.
    Stateless {
        client: ClientId,
        msg: Message,
        reply: Sender<Reply>,
        /// The credential it came with and the profile its path names.
        access: Access,
        /// Its `Mcp-Param-*` headers (names lower-cased), to check against a tool call's arguments.
        param_headers: Vec<(String, String)>,
    },
    /// A new standing stream for a session (Streamable HTTP `GET`); replaces the previous one.
    /// `stream` is unique per stream, so the end of a replaced stream is not taken for the new one's.
    /// Only the credential that opened the session may open one.
    OpenStream {
        session: String,
        access: Access,
        stream: u64,
        outbox: Sender<Message>,
        reply: Sender<Reply>,
    },
    /// A standing stream ended (its client went away); the session lives on until it expires.
    StreamClosed {
        session: String,
        stream: u64,
    },
    /// Streamable HTTP `DELETE`: the client ends its session (only with the credential that opened it).
    EndSession {
        session: String,
        access: Access,
        reply: Sender<Reply>,
    },
    ClientGone {
        client: ClientId,
    },
    /// `GET /health`: the proxy's status; `detailed` adds the backends.
    Health {
        detailed: bool,
        reply: Sender<Health>,
    },
    /// `GET /metrics`: the dispatcher's counters in the Prometheus text format.
    Metrics {
        reply: Sender<String>,
    },
    /// The effective catalog (`--check`, the admin API).
    Inspect {
        reply: Sender<Inspection>,
    },
    /// The name clashes these tool overrides would cause in today's catalog (the admin API checks a
    /// `tool_config.json` before saving it, by the catalog's own naming rule).
    CheckOverrides {
        overrides: Overrides,
        reply: Sender<Vec<String>>,
    },
    /// `generation` tells connections of one backend apart across restarts. `about` is the id of the
    /// proxy's request whose answer carried the message (a Streamable HTTP response stream), when it
    /// came that way: a request from the server there belongs to that request's client.
    FromBackend {
        backend: BackendId,
        generation: u64,
        msg: Message,
        about: Option<Value>,
    },
    /// A request to a remote backend could not be sent at all (no connection): it may be retried.
    Undelivered {
        backend: BackendId,
        generation: u64,
        id: Value,
    },
    /// The backend's connection ended (process exited, stream closed); `reason` is for the log.
    /// `needs_login`: a remote server refused the proxy until a person logs in to it (OAuth).
    BackendExited {
        backend: BackendId,
        generation: u64,
        reason: String,
        needs_login: bool,
    },
    /// OAuth tokens were stored (a `login`, the admin UI's Authorize): servers that need a login are
    /// tried again now rather than at their next back-off.
    TokensChanged,
    /// A new, already validated configuration to apply without a restart.
    Reload {
        servers: Vec<ServerConfig>,
        profiles: Vec<crate::profile_config::Profile>,
        overrides: Overrides,
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

/// A client request being served: who asked, under which id, where the answer goes, and the era
/// its client speaks (which decides how a backend's question during the request can reach it).
#[derive(Debug, Clone)]
pub struct Caller {
    pub client: ClientId,
    pub id: Value,
    pub reply: ReplyTo,
    pub era: Era,
    /// A 2026-07-28 request's `io.modelcontextprotocol/logLevel`, as a severity: it hears log messages
    /// at and above it (none when absent).
    pub log_level: Option<u8>,
    /// The credential a sessionless request came with (an index, never the secret): what binds it to
    /// its retries, which may come on other connections.
    pub owner: Option<std::sync::Arc<str>>,
    /// What a 2026-07-28 request's client can be asked while it is served (its `clientCapabilities`).
    pub answers: Answerable,
    /// The profile whose view of the catalog it sees (`None`: the whole catalog).
    pub profile: Option<ProfileId>,
}

/// The kinds of server requests a client said it can answer, by method, with the capability that says so.
const ANSWERABLE: [(&str, &str); 3] =
    [("sampling/createMessage", "sampling"), ("elicitation/create", "elicitation"), ("roots/list", "roots")];

/// The bit of [`Answerable`] that says the client takes the 2026-07-28 tasks extension.
const TAKES_TASKS: u8 = 1 << 7;

/// Which server requests (sampling, elicitation, roots) a 2026-07-28 client declared it can answer, and
/// whether it takes tasks (the `io.modelcontextprotocol/tasks` extension).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Answerable(u8);

impl Answerable {
    pub fn declared(capabilities: Option<&Value>) -> Answerable {
        let declared = |(_, capability): &(&str, &str)| capabilities.is_some_and(|c| c.get(capability).is_some());
        let answers = ANSWERABLE.iter().enumerate().filter(|(_, kind)| declared(kind)).fold(0, |bits, (i, _)| bits | 1 << i);
        let tasks = capabilities.and_then(|c| c.get("extensions")).and_then(|e| e.get(crate::modern::meta::TASKS_EXTENSION)).is_some();
        Answerable(answers | if tasks { TAKES_TASKS } else { 0 })
    }

    pub fn includes(self, method: &str) -> bool {
        ANSWERABLE.iter().position(|(m, _)| *m == method).is_some_and(|i| self.0 & 1 << i != 0)
    }

    /// Whether the client declared the tasks extension on this request.
    pub fn takes_tasks(self) -> bool {
        self.0 & TAKES_TASKS != 0
    }
}

/// MCP log levels (RFC 5424 severities), least severe first: a level's index is its severity.
pub const LOG_LEVELS: [&str; 8] = ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"];

/// The severity of a log level's name, if it is one.
pub fn log_severity(level: &str) -> Option<u8> {
    LOG_LEVELS.iter().position(|l| *l == level).and_then(|i| u8::try_from(i).ok())
}

/// Who made a request, as far as a later request may claim to be the same one: its client, or, since
/// every sessionless 2026-07-28 request is a client of its own, the credential it came with.
#[derive(Debug, Clone, PartialEq)]
pub struct Requester {
    client: ClientId,
    owner: Option<std::sync::Arc<str>>,
}

impl Requester {
    pub fn client(&self) -> ClientId {
        self.client
    }

    /// Whether `caller` is the same requester: the same connection (stdio, a session), or, for a
    /// sessionless request (whose retry or poll comes as another request), the same credential; what
    /// it claims (a `requestState`, a task id) is unguessable besides.
    pub fn admits(&self, caller: &Caller) -> bool {
        let sessionless = matches!(caller.reply, ReplyTo::Request(_)) && caller.era == Era::Modern;
        self.client == caller.client || (sessionless && self.owner == caller.owner)
    }
}

impl Caller {
    /// Who made this request, for later requests that claim to be the same requester.
    pub fn requester(&self) -> Requester {
        Requester { client: self.client, owner: self.owner.clone() }
    }

    /// The caller of a request `msg` from `client`, whose answers go to `reply`.
    pub fn of(msg: &Message, client: ClientId, reply: ReplyTo, era: Era) -> Caller {
        let (log_level, answers) = match era {
            Era::Modern => {
                // One look at the envelope for both.
                let envelope = msg.params().ok().and_then(|p| p.value("_meta")).unwrap_or_default();
                let level = envelope.get(crate::modern::meta::LOG_LEVEL).and_then(Value::as_str).and_then(log_severity);
                (level, Answerable::declared(envelope.get(crate::modern::meta::CLIENT_CAPABILITIES)))
            }
            Era::Handshake => (None, Answerable::default()),
        };
        Caller { client, id: msg.id.clone().unwrap_or(Value::Null), reply, era, log_level, owner: None, answers, profile: None }
    }
}

/// The answer to [`Event::Health`], served as JSON by `GET /health` and `GET /admin/status`.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    pub status: &'static str,
    pub version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backends: Option<Vec<BackendStatus>>,
    /// Open HTTP sessions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sessions: Option<usize>,
}

/// One backend as `/health`, `--check` and the admin UI show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendStatus {
    pub key: String,
    #[serde(rename = "type")]
    pub transport: &'static str,
    pub state: BackendState,
    /// Why it failed, with credentials masked.
    pub last_error: Option<String>,
    pub restarts: u32,
    /// Tools it offers while ready.
    pub tools: usize,
    /// For a server isolated per client session: its running instances, oldest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instances: Option<Vec<InstanceStatus>>,
}

/// One per-client instance of an isolated server.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStatus {
    /// The proxy's number for the client session it serves.
    pub client: u64,
    pub state: BackendState,
    /// Seconds since it was made for its client.
    pub age_secs: u64,
    /// Starts after its first (each after a crash, on its client's next call).
    pub restarts: u32,
}

/// A backend's state as reported outside the dispatcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendState {
    Connecting,
    Connected,
    Failed,
    /// A remote server waiting for `mcp-proxy-server login`.
    #[serde(rename = "needs_login")]
    NeedsLogin,
    Inactive,
}

impl std::fmt::Display for BackendState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackendState::Connecting => "connecting",
            BackendState::Connected => "connected",
            BackendState::Failed => "failed",
            BackendState::NeedsLogin => "needs login",
            BackendState::Inactive => "inactive",
        })
    }
}

/// The answer to [`Event::Inspect`]: what clients are offered and why.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inspection {
    /// Every exposed tool and where it leads.
    pub tools: Vec<ExposedTool>,
    /// Every tool of every ready backend that its filters let through, disabled ones included: what
    /// the admin Tools page edits.
    pub all_tools: Vec<ToolRow>,
    /// Something configured is not served as asked: `--check` fails on these.
    pub problems: Vec<String>,
    /// A clash or a long name resolved by a documented rule.
    pub notes: Vec<String>,
    pub backends: Vec<BackendStatus>,
    /// Each profile: what it shows and who is bound to it.
    pub profiles: Vec<ProfileSummary>,
}

/// A profile as `--check` and the admin UI show it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileSummary {
    pub name: String,
    /// The tools it shows, under the names it shows them (sorted).
    pub tools: Vec<String>,
    /// Its tools are served through search meta-tools.
    pub tool_search: bool,
    /// The credentials bound to it (`key #N`, `token #N`).
    pub credentials: Vec<String>,
}

/// An exposed tool: its name, its server and the name that server knows it by.
#[derive(Debug, Clone, Serialize)]
pub struct ExposedTool {
    pub name: String,
    pub server: String,
    pub original: String,
    pub description: Option<Value>,
}

/// A backend's tool with the override `tool_config.json` gives it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolRow {
    /// The tool's own name at its server.
    pub name: String,
    pub server_name: String,
    /// `<serverKey><sep><name>`: its key in `tool_config.json`.
    pub key: String,
    pub exposed_name: String,
    /// The name it has without an override.
    pub default_name: String,
    pub description: Option<Value>,
    pub exposed_description: Option<String>,
    pub enabled: bool,
}
