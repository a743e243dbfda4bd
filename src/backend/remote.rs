//! What the two HTTP transports share: the ureq agent, the auth and custom headers sent on every
//! request, URL resolution, reading messages out of JSON and SSE bodies, and reporting the end of a
//! connection exactly once. Streams that stay open get an agent of their own, which can cut them
//! ([`Remote::abortable`], `abort.rs`).

use super::abort::Abort;
use super::Link;
use crate::config::RemoteConfig;
use crate::jsonrpc::{code, Message};
use crate::sse::SseReader;
use serde_json::value::RawValue;
use std::io::BufReader;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use ureq::http::Response;
use ureq::Body;

/// Largest message accepted from a remote backend.
pub const MAX_MESSAGE: usize = 64 * 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT_MARGIN: Duration = Duration::from_secs(10);
/// How long a server's own stream may stay silent before it is opened again.
pub const QUIET_STREAM: Duration = Duration::from_secs(600);

pub struct Remote {
    pub key: String,
    pub config: RemoteConfig,
    pub link: Link,
    agent: ureq::Agent,
    /// The OAuth access token, for a server with no static `bearerToken` or `Authorization` header.
    #[cfg(feature = "oauth")]
    credentials: Option<crate::oauth::credentials::Credentials>,
    /// Set once the connection is over, by whichever thread notices first.
    closed: AtomicBool,
}

/// What to do about a 401 answer.
pub enum Unauthorized {
    /// Send the request again: there is another access token.
    #[cfg_attr(not(feature = "oauth"), allow(dead_code))]
    Retry,
    /// No token will do until a person logs in; the text says how.
    NeedsLogin(String),
    /// A static credential was refused, or the token cannot be refreshed now: this request fails.
    Fail,
}

/// Why an HTTP exchange with the backend failed.
pub enum Failure {
    /// No connection could be made: nothing was sent, the server is down.
    Refused(String),
    /// The connection broke: the server is gone, and the message may or may not have arrived.
    Unreachable(String),
    /// This one request failed (bad status, bad body); others may still work.
    Request(String),
}

impl Remote {
    /// `request_timeout` is the dispatcher's: each wait for bytes of a response is bounded a little
    /// beyond it (the wait restarts with every read, so a long SSE response that keeps sending progress
    /// is not cut), so that the dispatcher's timeout, which also cancels the request, always comes first.
    pub fn new(key: &str, config: RemoteConfig, link: Link, request_timeout: Duration) -> Remote {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_per_read(Some(request_timeout + READ_TIMEOUT_MARGIN))
            .user_agent(concat!("mcp-proxy-server/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        #[cfg(feature = "oauth")]
        let credentials = config.uses_oauth().then(|| {
            let store = crate::oauth::store::TokenStore::at(config.tokens_file.clone());
            crate::oauth::credentials::Credentials::new(key, &config.url, store)
        });
        Remote {
            key: key.to_owned(),
            config,
            link,
            agent,
            #[cfg(feature = "oauth")]
            credentials,
            closed: AtomicBool::new(false),
        }
    }

    /// The agent for requests answered in their own time: their sockets are pooled and shared.
    pub fn agent(&self) -> &ureq::Agent {
        &self.agent
    }

    /// An agent of its own, with the same settings, for one stream that stays open: aborting it cuts
    /// that stream (a reader blocked on it returns) and nothing else.
    pub fn abortable(&self) -> Abort {
        Abort::new(self.agent.config())
    }

    /// Adds `apiKey`, `bearerToken` (or the OAuth access token) and `headers` from the config to a
    /// request.
    pub fn with_auth<B>(&self, mut req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        if let Some(key) = &self.config.api_key {
            req = req.header("X-Api-Key", key);
        }
        if let Some(token) = &self.config.bearer_token {
            req = req.header("Authorization", format!("Bearer {token}"));
        }
        #[cfg(feature = "oauth")]
        if let Some(token) = self.credentials.as_ref().and_then(|c| c.bearer()) {
            req = req.header("Authorization", format!("Bearer {token}"));
        }
        for (name, value) in &self.config.headers {
            req = req.header(name, value);
        }
        req
    }

    /// The server answered `response`, a 401, to a request sent at `sent_at`: what to do. Without a token to try next,
    /// the caller ends the connection as needing a login ([`Remote::needs_login`]), so the dispatcher
    /// says so and withdraws its tools.
    pub fn unauthorized(&self, response: &Response<Body>, sent_at: Instant) -> Unauthorized {
        // A 401 without a Bearer challenge (a wrong API key, say) is not a call for OAuth, unless the
        // config says the server takes OAuth.
        let bearer = response
            .headers()
            .get_all("www-authenticate")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| crate::www_authenticate::bearer(v).is_some());
        if !bearer && self.config.oauth.is_none() {
            return Unauthorized::Fail;
        }
        #[cfg(feature = "oauth")]
        if let Some(credentials) = &self.credentials {
            use crate::oauth::credentials::Next;
            return match credentials.rejected(sent_at) {
                Next::Retry => Unauthorized::Retry,
                Next::Login(why) => Unauthorized::NeedsLogin(why),
                Next::Later(why) => {
                    log::warn!("[{}] {why}", self.key);
                    Unauthorized::Fail
                }
            };
        }
        #[cfg(not(feature = "oauth"))]
        if self.config.uses_oauth() {
            let _ = sent_at; // Only a token could have been refused since.
            return Unauthorized::NeedsLogin("needs login: it asks for OAuth, which this build of mcp-proxy-server leaves out".into());
        }
        Unauthorized::Fail
    }

    /// A `403` whose challenge is `insufficient_scope` (the token lacks a scope this request needs):
    /// this request fails saying which scope and how to grant it, and the scope is remembered, so the
    /// next login asks for it with those granted (step-up). `None` for any other 403.
    pub fn insufficient_scope(&self, response: &Response<Body>) -> Option<String> {
        let challenge = response
            .headers()
            .get_all("www-authenticate")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(crate::www_authenticate::bearer)?;
        if challenge.param("error") != Some("insufficient_scope") {
            return None;
        }
        let scope = challenge.param("scope").unwrap_or_default().to_owned();
        #[cfg(feature = "oauth")]
        if let Some(credentials) = &self.credentials {
            credentials.want_scope(&scope);
        }
        Some(format!("the server wants the scope '{scope}' for this; run `mcp-proxy-server login {}` to grant it", self.key))
    }

    /// A request the server refused for want of a login: its caller may try again once logged in.
    pub fn needs_login(&self, msg: &Message, why: &str) {
        if let (Some(id), crate::jsonrpc::Kind::Request) = (&msg.id, msg.kind()) {
            self.link.undelivered(id.clone());
        }
        self.close_needing_login(why.to_owned());
    }

    /// Ends the connection as needing a login (once, however many threads find out).
    pub fn close_needing_login(&self, why: String) {
        if !self.closed.swap(true, Ordering::SeqCst) {
            log::warn!("[{}] {why}", self.key);
            self.link.needs_login(why);
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Marks the connection closed and tells the dispatcher, once, however many threads notice.
    pub fn close(&self, reason: String) {
        if !self.closed.swap(true, Ordering::SeqCst) {
            self.link.exited(reason);
        }
    }

    /// Hands every message in a response body (JSON object, JSON array, or SSE stream) to the dispatcher,
    /// as coming with the answer to the proxy's request `about` when the body is one. `on_message` sees
    /// each first, for the transport's own bookkeeping.
    pub fn deliver_body(
        &self,
        response: Response<Body>,
        about: Option<&serde_json::Value>,
        on_message: &mut dyn FnMut(&Message),
    ) -> Result<(), Failure> {
        let content_type = header(&response, "content-type").unwrap_or_default().to_ascii_lowercase();
        let mut body = response.into_body();
        if content_type.starts_with("text/event-stream") {
            let mut events = SseReader::new(BufReader::new(body.as_reader()), MAX_MESSAGE);
            while let Some(event) = events.next_event().map_err(|e| Failure::Request(format!("reading the stream: {e}")))? {
                // Servers that support resumption open with a "priming" event that has an id and no data.
                if event.event == "message" && !event.data.trim().is_empty() {
                    self.deliver_text(&event.data, about, on_message);
                }
            }
            return Ok(());
        }
        let text = body
            .with_config()
            .limit(MAX_MESSAGE as u64)
            .read_to_string()
            .map_err(|e| Failure::Request(format!("reading the response: {e}")))?;
        if !text.trim().is_empty() {
            self.deliver_text(&text, about, on_message);
        }
        Ok(())
    }

    fn deliver_text(&self, text: &str, about: Option<&serde_json::Value>, on_message: &mut dyn FnMut(&Message)) {
        let items: Vec<&RawValue> = if text.trim_start().starts_with('[') {
            serde_json::from_str(text).unwrap_or_default()
        } else {
            serde_json::from_str(text).map(|one| vec![one]).unwrap_or_default()
        };
        if items.is_empty() {
            log::warn!("[{}] ignoring a body that is not JSON-RPC: {}", self.key, super::preview(text, 300));
        }
        for item in items {
            match Message::parse(item.get()) {
                Ok(msg) => {
                    on_message(&msg);
                    self.link.message_about(msg, about.cloned());
                }
                Err(e) => log::warn!("[{}] ignoring a message that is not JSON-RPC ({e})", self.key),
            }
        }
    }

    /// Tells the dispatcher that a request never reached the server (no connection could be made), so
    /// it may be tried again; followed by the end of the connection.
    pub fn refused(&self, msg: &Message, why: &str) {
        log::warn!("[{}] cannot reach {}: {why}", self.key, self.config.url);
        if let (Some(id), crate::jsonrpc::Kind::Request) = (&msg.id, msg.kind()) {
            self.link.undelivered(id.clone());
        }
        self.close(format!("cannot reach {}: {why}", self.config.url));
    }

    /// Answers a request the backend could not be asked, so its caller gets an error instead of a wait.
    pub fn fail_request(&self, msg: &Message, why: &str) {
        log::warn!("[{}] {} failed: {why}", self.key, msg.method());
        if let Some(id) = &msg.id {
            let message = format!("server '{}': {why}", self.key);
            self.link.message(Message::error_response(id.clone(), code::BACKEND_UNAVAILABLE, &message));
        }
    }
}

/// Sorts a transport error into "the server is gone" or "this request went wrong".
/// Only a failure to connect says the server is gone; a slow answer (a read timeout while a long tool
/// call runs) is that request's problem, which the dispatcher's own timeout already reports.
pub fn classify(e: ureq::Error) -> Failure {
    use ureq::Timeout;
    match e {
        ureq::Error::ConnectionFailed | ureq::Error::HostNotFound | ureq::Error::Timeout(Timeout::Connect | Timeout::Resolve) => {
            Failure::Refused(e.to_string())
        }
        ureq::Error::Io(ref io) if io.kind() == std::io::ErrorKind::ConnectionRefused => Failure::Refused(e.to_string()),
        ureq::Error::Io(ref io) if io.kind() != std::io::ErrorKind::TimedOut && io.kind() != std::io::ErrorKind::WouldBlock => {
            Failure::Unreachable(e.to_string())
        }
        other => Failure::Request(other.to_string()),
    }
}

pub fn header(response: &Response<Body>, name: &str) -> Option<String> {
    response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// The status and the start of the body, for an error message.
pub fn status_error(response: Response<Body>) -> String {
    let status = response.status().as_u16();
    let body = response.into_body().with_config().limit(4096).read_to_string().unwrap_or_default();
    format!("HTTP {status}: {}", super::preview(body.trim(), 300))
}

/// Resolves the `endpoint` a legacy SSE server announces against the URL of its stream: absolute URLs
/// as they are, `/path` against the origin, anything else against the stream's directory.
pub fn resolve(base: &str, reference: &str) -> String {
    if reference.starts_with("http://") || reference.starts_with("https://") {
        return reference.to_owned();
    }
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[scheme_end..].find('/').map_or(base.len(), |i| scheme_end + i);
    if reference.starts_with('/') {
        return format!("{}{reference}", &base[..path_start]);
    }
    let path = &base[path_start..];
    let path = path.split(['?', '#']).next().unwrap_or("");
    let dir = path.rfind('/').map_or("/", |i| &path[..=i]);
    format!("{}{dir}{reference}", &base[..path_start])
}

#[cfg(test)]
mod tests {
    use super::resolve;

    #[test]
    fn endpoint_urls_resolve_like_a_browser() {
        assert_eq!(resolve("http://h:1/sse", "/message?sessionId=a"), "http://h:1/message?sessionId=a");
        assert_eq!(resolve("http://h:1/api/sse?x=1", "messages?s=1"), "http://h:1/api/messages?s=1");
        assert_eq!(resolve("http://h:1/sse", "https://other/m"), "https://other/m");
        assert_eq!(resolve("http://h:1", "/m"), "http://h:1/m");
    }
}
