//! `mcp-proxy-server login SERVER` and `logout SERVER`: a person authorizes the proxy at a protected
//! remote server's authorization server, once; the running proxy then uses and refreshes the tokens.
//!
//! The login runs in its own short-lived process, beside a running proxy or not: it asks the server
//! for its 401 (the challenge names the metadata), discovers and registers (`client.rs`), prints the
//! authorization URL (or opens a browser), and takes the redirect on a loopback port, as RFC 8252 has
//! native apps do: `http://127.0.0.1:<port>/callback`, any port matching the registered loopback URI.
//! The tokens go to the store; a running proxy retries a server that needs a login, and finds them.

use super::client::{self, ClientError, Pkce};
use super::discovery;
use super::store::{Registration, TokenStore};
use crate::config::{RemoteConfig, ServerConfig, Transport};
use crate::www_authenticate;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// How long the person has to log in.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a connection to the loopback listener may take to send its request.
const CALLBACK_READ_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_CALLBACK_HEAD: usize = 16 * 1024;

/// Logs in to `server`, storing the tokens in `store`; `open_browser` runs `xdg-open` on the URL;
/// `metadata_document` is the URL of the proxy's client metadata document, if it has one.
pub fn login(
    server: &ServerConfig,
    store: &TokenStore,
    open_browser: bool,
    metadata_document: Option<&str>,
) -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let redirect_uri = format!("http://127.0.0.1:{}/callback", listener.local_addr()?.port());
    let started = Started::begin(server, store, redirect_uri, Registering::Native, metadata_document)?;
    let key = &server.key;
    eprintln!("To log in to '{key}' at {}, open this URL in a browser:\n\n  {}\n", started.issuer(), started.url);
    if open_browser {
        open(&started.url);
    }
    let (mut browser, params) = wait_for_callback(&listener, Instant::now() + LOGIN_TIMEOUT, &started.state)?;
    let outcome = started.complete(&params, store);
    let page = match &outcome {
        Ok(()) => format!("Logged in to '{key}'. You can close this page."),
        Err(e) => format!("The login to '{key}' failed: {e}"),
    };
    let _ = respond(&mut browser, if outcome.is_ok() { 200 } else { 400 }, &page);
    outcome?;
    eprintln!("Logged in to '{key}'; the tokens are in {} (a running proxy picks them up).", store.path().display());
    Ok(())
}

/// The proxy's client metadata document (CIMD), served at `url`: a native app, as `login` is, with its
/// loopback redirect (any port, RFC 8252). (The admin UI's Authorize registers a web client of its own.)
pub fn metadata_document(url: &str) -> serde_json::Value {
    serde_json::json!({
        "client_id": url,
        "client_name": "mcp-proxy-server",
        "redirect_uris": ["http://127.0.0.1/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "application_type": "native",
    })
}

/// How the proxy registers when it has no client at the authorization server yet.
pub enum Registering {
    /// `login`: a native app with a loopback redirect (any port), registered once per issuer.
    Native,
    /// The admin UI: a web app whose redirect is the admin page's own URL, registered for this login.
    Web,
}

/// A login under way: the URL the person opens, and what checking and using the answer needs.
pub struct Started {
    pub url: String,
    /// The `state` sent: the answer must carry it back.
    pub state: String,
    server: String,
    redirect_uri: String,
    pkce: Pkce,
    found: client::Discovered,
    registration: Registration,
    remember: bool,
}

impl Started {
    /// Asks `server` how to log in (its 401, its metadata, its authorization server's), finds or makes a
    /// client there, and makes the authorization URL with the answer going to `redirect_uri`.
    /// `metadata_document`: the URL of the proxy's client metadata document, if it has one.
    pub fn begin(
        server: &ServerConfig,
        store: &TokenStore,
        redirect_uri: String,
        registering: Registering,
        metadata_document: Option<&str>,
    ) -> Result<Started, Box<dyn std::error::Error>> {
        let key = &server.key;
        let (Transport::Sse(remote) | Transport::StreamableHttp(remote)) = &server.transport else {
            return Err(format!("'{key}' is a stdio server: only remote (sse, http) servers log in").into());
        };
        if !remote.uses_oauth() {
            return Err(format!("'{key}' has a static bearerToken or Authorization header: remove it to use OAuth").into());
        }
        let agent = discovery::agent();
        let challenge = probe(&agent, server)?;
        let configured_scope = remote.oauth.as_ref().and_then(|o| o.scope.as_deref());
        let mut found = client::discover(&agent, &remote.url, challenge.as_ref(), configured_scope)?;
        let stored = store.read()?;
        // Step-up: what was granted before and what the server asked for since, with what it asks now.
        if let Some(held) = stored.servers.get(key).filter(|t| t.issuer == found.metadata.issuer) {
            found.scope = client::union_scopes([found.scope.as_deref(), held.scope.as_deref(), held.wanted_scope.as_deref()]);
        }
        let remembered = match registering {
            Registering::Native => stored.registrations.get(&found.metadata.issuer).cloned(),
            Registering::Web => None,
        };
        let kind = match registering {
            Registering::Native => "native",
            Registering::Web => "web",
        };
        let known = client::Identities { configured: configured_client(remote), metadata_document, remembered };
        let (registration, remember) = client::client(&agent, &found.metadata, known, &redirect_uri, kind)?;
        let remember = remember && matches!(registering, Registering::Native);
        let (pkce, state) = (Pkce::new()?, crate::random::token_hex(16)?);
        let url = client::authorization_url(&found, &registration.client_id, &redirect_uri, &pkce, &state);
        Ok(Started { url, state, server: key.clone(), redirect_uri, pkce, found, registration, remember })
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    pub fn issuer(&self) -> &str {
        &self.found.metadata.issuer
    }

    /// Checks the authorization response's `params` (state, `iss`), exchanges its code and stores the
    /// tokens (and the registration, for a native login).
    pub fn complete(self, params: &[(String, String)], store: &TokenStore) -> Result<(), Box<dyn std::error::Error>> {
        let agent = discovery::agent();
        let code = client::code_from(params, &self.state, &self.found.metadata)?;
        let tokens = client::exchange(&agent, &self.found, self.registration.clone(), &code, &self.redirect_uri, &self.pkce.verifier)?;
        let Started { server, found, registration, remember, .. } = self;
        store.update(|stored| {
            if remember {
                stored.registrations.insert(found.metadata.issuer.clone(), registration);
            }
            stored.servers.insert(server, tokens);
        })?;
        Ok(())
    }
}

/// Forgets `key`'s tokens. (The grant stays at the authorization server until it expires or is
/// revoked there.)
pub fn logout(key: &str, store: &TokenStore) -> Result<(), Box<dyn std::error::Error>> {
    match store.update(|stored| stored.servers.remove(key))? {
        Some(_) => eprintln!("Forgot the OAuth tokens of '{key}'."),
        None => eprintln!("'{key}' had no OAuth tokens in {}.", store.path().display()),
    }
    Ok(())
}

fn configured_client(remote: &RemoteConfig) -> Option<Registration> {
    let oauth = remote.oauth.as_ref()?;
    Some(Registration { client_id: oauth.client_id.clone()?, client_secret: oauth.client_secret.clone() })
}

/// Asks the server, without a token, for the challenge of its 401 (an `initialize` for Streamable
/// HTTP, the stream for legacy SSE). `None` when it does not answer 401 or names no `Bearer` challenge:
/// discovery then tries the well-known metadata URLs.
fn probe(agent: &ureq::Agent, server: &ServerConfig) -> Result<Option<www_authenticate::Challenge>, ClientError> {
    let (Transport::Sse(remote) | Transport::StreamableHttp(remote)) = &server.transport else { return Ok(None) };
    let unreachable = |e| ClientError::Fetch(discovery::FetchError::Unreachable(remote.url.clone(), e));
    let response = match &server.transport {
        Transport::Sse(_) => agent.get(&remote.url).header("Accept", "text/event-stream").call().map_err(unreachable)?,
        _ => {
            let initialize = serde_json::json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "mcp-proxy-server", "version": env!("CARGO_PKG_VERSION")}}});
            agent
                .post(&remote.url)
                .header("Content-Type", "application/json")
                .header("Accept", "application/json, text/event-stream")
                .send(initialize.to_string())
                .map_err(unreachable)?
        }
    };
    if response.status() != 401 {
        return Ok(None);
    }
    let challenges = response.headers().get_all("www-authenticate").iter().filter_map(|v| v.to_str().ok());
    Ok(challenges.filter_map(www_authenticate::bearer).next())
}

/// Waits for the browser's redirect to `/callback` carrying `state` and returns the connection (to
/// answer it) and the query's parameters. Anything else (a favicon, a stray request with another
/// state) is answered and the wait goes on.
fn wait_for_callback(listener: &TcpListener, deadline: Instant, state: &str) -> io::Result<(TcpStream, Vec<(String, String)>)> {
    listener.set_nonblocking(true)?;
    loop {
        let mut stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "nobody logged in within 10 minutes"))
            }
            Err(e) => return Err(e),
        };
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(CALLBACK_READ_TIMEOUT))?;
        match request_target(&mut stream) {
            Some(target) if target.split('?').next() == Some("/callback") => {
                let params = crate::http::Request::form_fields(target.split_once('?').map_or("", |(_, query)| query));
                if params.iter().any(|(k, v)| k == "state" && v == state) {
                    return Ok((stream, params));
                }
                let _ = respond(&mut stream, 400, "Not the answer to this login.");
            }
            _ => {
                let _ = respond(&mut stream, 404, "Not the login callback.");
            }
        }
    }
}

/// The target of a GET request read from `stream`, if it sends one within [`CALLBACK_READ_TIMEOUT`].
fn request_target(stream: &mut TcpStream) -> Option<String> {
    let deadline = Instant::now() + CALLBACK_READ_TIMEOUT;
    let mut head = Vec::new();
    let mut chunk = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_CALLBACK_HEAD {
        if Instant::now() >= deadline {
            return None;
        }
        let n = stream.read(&mut chunk).ok().filter(|n| *n > 0)?;
        head.extend_from_slice(&chunk[..n]);
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    request.parse(&head).ok()?;
    (request.method == Some("GET")).then(|| request.path.map(str::to_owned))?
}

/// A small HTML page saying `text`, with a link back when given (`href`, words).
pub fn page(text: &str, back: Option<(&str, &str)>) -> String {
    let link = back.map(|(href, words)| format!("<p><a href=\"{}\">{}</a></p>", escape_html(href), escape_html(words))).unwrap_or_default();
    format!("<!doctype html><meta charset=utf-8><title>mcp-proxy-server</title><p>{}</p>{link}\n", escape_html(text))
}

fn respond(stream: &mut TcpStream, status: u16, text: &str) -> io::Result<()> {
    let body = page(text, None);
    let reason = if status == 200 { "OK" } else { "Bad Request" };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Opens `url` in the desktop's browser, if there is one; the URL is printed either way.
fn open(url: &str) {
    let opened = std::process::Command::new("xdg-open")
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    if !opened.is_ok_and(|status| status.success()) {
        eprintln!("(could not open a browser: open the URL above by hand)");
    }
}
