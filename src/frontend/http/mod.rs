//! The proxy as an MCP server over HTTP: legacy HTTP+SSE (`/sse`, `/message`) and Streamable HTTP
//! (`/mcp`) on one port, each also as `/sse/<profile>` and `/mcp/<profile>`, plus `/health`.
//!
//! Each request runs on its HTTP connection thread. Messages go to the dispatcher as
//! [`Event::FromSession`], which owns the sessions and answers through a per-request channel; streams
//! (`GET /sse`, `GET /mcp`, a `POST /mcp` that turns into SSE) are pumped from a channel by the
//! connection's own thread (the dispatcher drops a client whose queue passes `event::STREAM_QUEUE`), so a
//! slow client only ever blocks itself.

pub mod admin;
mod auth;
mod hosts;
mod legacy_sse;
mod metrics;
mod streamable;

use crate::event::{Access, ClientId, Event, Reply};
use crate::http::{self, EventStream, Exchange, Request, Response};
use crate::jsonrpc::Message;
use crate::settings::HttpSettings;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use serde_json::json;
use std::io;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the protected resource metadata is (RFC 9728 section 3).
const PROTECTED_RESOURCE: &str = "/.well-known/oauth-protected-resource";
/// How often an idle stream checks whether its client is still there.
const LIVENESS_CHECK: Duration = Duration::from_secs(5);
/// How long a request thread waits for the dispatcher to acknowledge a message.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

struct Frontend {
    events: Sender<Event>,
    auth: auth::Auth,
    hosts: hosts::AllowedHosts,
    settings: HttpSettings,
    admin: Option<admin::Admin>,
}

/// How connections are carried: HTTPS when the settings name a certificate. The error names the file
/// that cannot be used and why.
pub fn transport(settings: &HttpSettings) -> Result<http::Transport, String> {
    match &settings.tls {
        #[cfg(feature = "tls")]
        Some(files) => Ok(http::Transport::Tls(Arc::new(http::Tls::load(&files.cert, &files.key)?))),
        // Without the `tls` feature the settings refuse TLS files.
        _ => Ok(http::Transport::Plain),
    }
}

/// Serves HTTP on `listener` until the process exits; `admin` adds the admin UI under `/admin/`.
pub fn serve(
    listener: TcpListener,
    transport: http::Transport,
    settings: HttpSettings,
    events: Sender<Event>,
    admin: Option<admin::Admin>,
) {
    let limits = http::Limits {
        max_head: settings.max_head,
        max_body: settings.max_body,
        read_timeout: settings.request_read_timeout,
        idle_timeout: settings.idle_connection_timeout,
        first_request_timeout: settings.first_request_timeout,
    };
    let capacity = connection_capacity(&settings);
    let auth = auth::Auth::new(settings.keys.clone(), settings.tokens.clone());
    #[cfg(feature = "oauth")]
    let auth = match &settings.oauth {
        Some(oauth) => auth.with_oauth(resource_server(oauth)),
        None => auth,
    };
    let hosts = hosts::AllowedHosts::new(&settings.allowed_hosts, &settings.host);
    let frontend = Frontend { events, auth, hosts, settings, admin };
    let handler = Arc::new(move |req: &Request, ex: &mut Exchange| frontend.route(req, ex));
    http::serve(listener, transport, limits, capacity, handler);
}

/// The OAuth token checker, with its keys fetched on a thread of its own so that a misconfigured or
/// unreachable authorization server shows in the log at start-up, without delaying it.
#[cfg(feature = "oauth")]
fn resource_server(settings: &crate::settings::OAuthSettings) -> Arc<crate::oauth::ResourceServer> {
    let oauth = Arc::new(crate::oauth::ResourceServer::new(settings.clone()));
    let preparing = Arc::clone(&oauth);
    let prepare = move || match preparing.prepare() {
        Ok(found) => log::info!("{found}"),
        Err(e) => log::warn!("OAuth: cannot check tokens yet (tried again when a token comes): {e}"),
    };
    if let Err(e) = std::thread::Builder::new().name("oauth-prepare".into()).spawn(prepare) {
        log::warn!("OAuth: keys will be fetched with the first token: {e}");
    }
    oauth
}

/// The connection limits asked for, the total lowered to leave descriptors for backends.
fn connection_capacity(settings: &HttpSettings) -> http::Capacity {
    let wanted = http::Capacity { total: settings.max_connections, per_address: settings.max_connections_per_address };
    let nofile = http::descriptor_limit();
    let capacity = http::Capacity::within(wanted, nofile);
    if let (Some(nofile), true) = (nofile, capacity.total < wanted.total) {
        log::warn!(
            "HTTP connections at most {} (not {}): RLIMIT_NOFILE is {nofile} and {} descriptors are kept for backends; \
             raise the limit (ulimit -n, LimitNOFILE=) for more",
            capacity.total,
            wanted.total,
            http::descriptor_reserve(nofile)
        );
    }
    let per_address = match capacity.per_address {
        0 => "no limit".to_owned(),
        n => n.to_string(),
    };
    log::info!("HTTP connections at most {} ({per_address} from one address)", capacity.total);
    capacity
}

impl Frontend {
    fn route(&self, req: &Request, ex: &mut Exchange) {
        if !self.hosts.allow(req) {
            let host = req.header("host").unwrap_or_default();
            log::warn!("refused a request for host {host:?} (DNS rebinding?)");
            let why = format!("host '{host}' is not served here: add it to MCP_PROXY_ALLOWED_HOSTS if it names this proxy");
            return ex.respond(Response::error(403, &why));
        }
        let path = req.path.trim_end_matches('/');
        if let Some(resource) = path.strip_prefix(PROTECTED_RESOURCE) {
            return ex.respond(self.protected_resource(resource));
        }
        #[cfg(feature = "oauth")]
        if let Some(url) = self.settings.client_metadata_url.as_deref().filter(|url| url_path(url) == Some(path)) {
            let document = crate::oauth::login::metadata_document(url);
            return ex.respond(Response::json(200, &document).with_header("Access-Control-Allow-Origin", "*"));
        }
        if path == "/health" {
            return ex.respond(self.health(req));
        }
        if path == "/metrics" {
            return ex.respond(match self.auth.check(req) {
                Ok(_) => metrics::render(&self.events),
                Err(refusal) => refusal,
            });
        }
        if path == "/admin" || path.starts_with("/admin/") {
            if !hosts::admin_origin_allowed(req, &self.settings.allowed_origins) {
                log::warn!("refused an admin request from origin {:?}", req.header("origin"));
                return ex.respond(Response::error(403, "origin not allowed: the admin UI only answers its own pages"));
            }
            return match &self.admin {
                Some(admin) => admin.handle(req, ex),
                None => ex.respond(Response::error(404, "the admin UI is disabled (set ENABLE_ADMIN_UI=true)")),
            };
        }
        let Some((endpoint, profile)) = mcp_endpoint(path) else {
            return ex.respond(Response::error(404, &format!("no such endpoint: {}", req.path)));
        };
        if !hosts::origin_allowed(req, &self.settings.allowed_origins) {
            log::warn!("refused a request from origin {:?}", req.header("origin"));
            return ex.respond(Response::error(403, "origin not allowed"));
        }
        let owner = match self.auth.check(req) {
            Ok(owner) => owner,
            Err(refusal) => return ex.respond(refusal),
        };
        let access = Access { owner, profile: profile.map(str::to_owned) };
        match (req.method.as_str(), endpoint) {
            ("GET", "/sse") => legacy_sse::open(self, req, ex, access),
            ("POST", "/message" | "/messages") => ex.respond(legacy_sse::post(self, req, access)),
            (_, "/mcp") => streamable::handle(self, req, ex, &access),
            (method, _) => ex.respond(Response::error(405, &format!("{method} is not allowed on {path}"))),
        }
    }

    /// The protected resource metadata (RFC 9728) at the well-known path, alone or followed by the
    /// path of an MCP endpoint (clients look there first): public, and readable from any web page.
    fn protected_resource(&self, endpoint_path: &str) -> Response {
        #[cfg(feature = "oauth")]
        if let Some(oauth) = self.auth.oauth() {
            return match endpoint_path.is_empty() || mcp_endpoint(endpoint_path).is_some() {
                true => Response::json(200, &oauth.metadata_document()).with_header("Access-Control-Allow-Origin", "*"),
                false => Response::error(404, &format!("{endpoint_path} is not an MCP endpoint of this proxy")),
            };
        }
        Response::error(
            404,
            &format!("no {PROTECTED_RESOURCE}{endpoint_path}: this proxy takes no OAuth tokens (MCP_PROXY_OAUTH_ISSUER is not set)"),
        )
    }

    /// Liveness for anyone; backend details only for those who may use the proxy.
    fn health(&self, req: &Request) -> Response {
        let (reply, answer) = crossbeam_channel::bounded(1);
        let detailed = self.auth.allows(req);
        if self.events.send(Event::Health { detailed, reply }).is_err() {
            return Response::error(503, "shutting down");
        }
        match answer.recv_timeout(ACK_TIMEOUT) {
            Ok(status) => Response::json(200, &status),
            Err(_) => Response::error(503, "the dispatcher did not answer"),
        }
    }
}

impl Frontend {
    /// Asks the dispatcher for a new session (it may refuse: session limits) and returns its client
    /// id and session id, or the response that says why not.
    fn open_session(&self, req: &Request, access: Access, outbox: Option<Sender<Message>>) -> Result<(ClientId, String), Response> {
        let session = new_session_id(self.settings.instance_id.as_deref())
            .map_err(|e| Response::error(500, &format!("cannot make a session id: {e}")))?;
        let client = ClientId::fresh();
        let (reply, answer) = crossbeam_channel::bounded(1);
        let open = Event::OpenSession { client, session: session.clone(), outbox, access, address: req.peer, reply };
        self.events.send(open).map_err(|_| Response::error(503, "shutting down"))?;
        match answer.recv_timeout(ACK_TIMEOUT) {
            Ok(Reply::Accepted) => Ok((client, session)),
            Ok(Reply::Refused(status, why)) => Err(Response::error(status, &why)),
            Ok(_) | Err(_) => Err(Response::error(503, "the dispatcher did not answer")),
        }
    }
}

/// The MCP endpoint a path names and the profile it names with it: `/mcp`, `/sse` and their
/// `/mcp/<profile>`, `/sse/<profile>`, and `/message` (a legacy session already has its profile).
fn mcp_endpoint(path: &str) -> Option<(&'static str, Option<&str>)> {
    let (endpoint, profile) = match path.split_once('/').map(|(_, rest)| rest.split_once('/').unwrap_or((rest, ""))) {
        Some((first, profile)) => (first, (!profile.is_empty()).then_some(profile)),
        None => return None,
    };
    let endpoint = match (endpoint, profile) {
        ("mcp", _) => "/mcp",
        ("sse", _) => "/sse",
        ("message", None) => "/message",
        ("messages", None) => "/messages",
        _ => return None,
    };
    match profile {
        Some(name) if !crate::profile_config::is_valid_name(name) => None,
        _ => Some((endpoint, profile)),
    }
}

/// The path of an absolute URL (`/x` of `https://host/x`).
#[cfg(feature = "oauth")]
fn url_path(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    rest.find('/').map(|slash| &rest[slash..])
}

/// Parses a request body as one JSON-RPC message, or says why not in a JSON-RPC error response.
fn parse_body(req: &Request) -> Result<Message, Response> {
    let text = std::str::from_utf8(&req.body).map_err(|_| rpc_error(400, -32700, "body is not UTF-8"))?;
    Message::parse(text).map_err(|e| rpc_error(400, e.code(), &e.to_string()))
}

/// A transport-level error in JSON-RPC form (id null), as Streamable HTTP clients expect.
fn rpc_error(status: u16, code: i64, message: &str) -> Response {
    Response::json(status, &json!({ "jsonrpc": "2.0", "id": null, "error": { "code": code, "message": message } }))
}

/// Writes a stream's messages as `message` events until the dispatcher lets go of it, with a comment
/// every `keepalive` so idle connections (and proxies between) stay open and dead clients are noticed.
fn pump(stream: &mut EventStream, inbox: &Receiver<Message>, keepalive: Duration) -> io::Result<()> {
    let mut last_write = Instant::now();
    loop {
        match inbox.recv_timeout(keepalive.min(LIVENESS_CHECK)) {
            Ok(msg) => {
                stream.event(Some("message"), None, &msg.to_json())?;
                last_write = Instant::now();
            }
            Err(RecvTimeoutError::Timeout) if stream.peer_closed() => {
                return Err(io::Error::new(io::ErrorKind::ConnectionAborted, "the client closed the stream"));
            }
            Err(RecvTimeoutError::Timeout) if last_write.elapsed() >= keepalive => {
                stream.comment("keepalive")?;
                last_write = Instant::now();
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        }
    }
}

/// A fresh session id: 128 random bits, after the instance id when one is set, so a load balancer can
/// route a session to the instance that holds it.
fn new_session_id(instance: Option<&str>) -> io::Result<String> {
    let random = crate::random::token_hex(16)?;
    Ok(match instance {
        Some(instance) => format!("{instance}-{random}"),
        None => random,
    })
}
