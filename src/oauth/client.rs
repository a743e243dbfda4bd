//! The proxy as an OAuth client of a protected remote server, step by step as the MCP authorization
//! spec orders them: the server's protected resource metadata (from its 401's `resource_metadata`, else
//! the well-known URLs), its authorization server's metadata (issuer checked), the client's
//! registration (configured, else remembered for that issuer, else dynamic, `application_type: native`),
//! an authorization code with PKCE S256 and `resource` (RFC 8707), the response's `iss` checked (RFC
//! 9207) before the code is used, and the code exchanged; later, refreshes. Nothing here listens or
//! prompts: `login.rs` is the person's side.

use super::discovery::{self, form_encode, FetchError, ServerMetadata};
use super::store::{Registration, ServerTokens};
use super::unix_now;
use crate::settings::is_loopback_url;
use crate::www_authenticate::Challenge;
use serde::Deserialize;
use serde_json::json;
use std::fmt;

/// Why logging in or refreshing failed.
#[derive(Debug)]
pub enum ClientError {
    Fetch(FetchError),
    /// An answer the spec says to refuse, or a step that cannot be made; the text says which.
    Refused(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Fetch(e) => e.fmt(f),
            ClientError::Refused(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<FetchError> for ClientError {
    fn from(e: FetchError) -> ClientError {
        ClientError::Fetch(e)
    }
}

fn refused<T>(why: String) -> Result<T, ClientError> {
    Err(ClientError::Refused(why))
}

/// What a protected server's metadata says about logging in to it.
#[derive(Debug, Clone)]
pub struct Discovered {
    pub resource: String,
    pub metadata: ServerMetadata,
    pub scope: Option<String>,
}

/// RFC 9728 protected resource metadata.
#[derive(Deserialize)]
struct ProtectedResource {
    resource: String,
    #[serde(default)]
    authorization_servers: Vec<String>,
    scopes_supported: Option<Vec<String>>,
}

/// Finds how to log in to the server at `server_url`, whose 401 carried `challenge` (if any).
pub fn discover(
    agent: &ureq::Agent,
    server_url: &str,
    challenge: Option<&Challenge>,
    scope: Option<&str>,
) -> Result<Discovered, ClientError> {
    let resource_metadata = fetch_resource_metadata(agent, server_url, challenge)?;
    let resource = resource_metadata.resource;
    if !covers(&resource, server_url) {
        return refused(format!("{server_url}: its metadata names the resource '{resource}', which is not this server: refused"));
    }
    let Some(issuer) = resource_metadata.authorization_servers.first() else {
        return refused(format!("{server_url}: its metadata names no authorization server"));
    };
    let metadata = discovery::server_metadata(agent, issuer)?;
    if !metadata.code_challenge_methods_supported.iter().any(|m| m == "S256") {
        return refused(format!("the authorization server '{issuer}' does not offer PKCE with S256: refused, as the MCP spec asks"));
    }
    for (member, value) in [("authorization_endpoint", &metadata.authorization_endpoint), ("token_endpoint", &metadata.token_endpoint)] {
        if value.is_none() {
            return Err(FetchError::Missing(issuer.clone(), member).into());
        }
    }
    let scope = challenge
        .and_then(|c| c.param("scope"))
        .map(str::to_owned)
        .or_else(|| resource_metadata.scopes_supported.filter(|s| !s.is_empty()).map(|s| s.join(" ")))
        .or_else(|| scope.map(str::to_owned));
    Ok(Discovered { resource, metadata, scope })
}

fn fetch_resource_metadata(agent: &ureq::Agent, server_url: &str, challenge: Option<&Challenge>) -> Result<ProtectedResource, ClientError> {
    if let Some(url) = challenge.and_then(|c| c.param("resource_metadata")) {
        // A remote server may not send the proxy to probe this machine's own services.
        if is_loopback_url(url) && !is_loopback_url(server_url) {
            return refused(format!("{server_url}: its 401 names metadata on this machine ({url}): refused"));
        }
        return Ok(discovery::get_json(agent, url)?);
    }
    let (origin, path) = discovery::split_origin(server_url);
    let path = path.split(['?', '#']).next().unwrap_or_default().trim_end_matches('/');
    let mut urls = vec![format!("{origin}/.well-known/oauth-protected-resource{path}")];
    if !path.is_empty() {
        urls.push(format!("{origin}/.well-known/oauth-protected-resource"));
    }
    let mut last = None;
    for url in urls {
        match discovery::get_json(agent, &url) {
            Ok(found) => return Ok(found),
            Err(e @ FetchError::Status(..)) => last = Some(e),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.map_or_else(|| ClientError::Refused(format!("{server_url}: no protected resource metadata")), ClientError::Fetch))
}

/// True when `resource` is `url` or a parent of it: the same origin, and a path that is a prefix of
/// `url`'s at a segment boundary.
pub fn covers(resource: &str, url: &str) -> bool {
    let (r_origin, r_path) = discovery::split_origin(resource.trim_end_matches('/'));
    let (u_origin, u_path) = discovery::split_origin(url);
    let u_path = u_path.split(['?', '#']).next().unwrap_or_default();
    r_origin.eq_ignore_ascii_case(u_origin) && (u_path == r_path || u_path.starts_with(&format!("{r_path}/")) || r_path.is_empty())
}

/// How the proxy may be known to an authorization server, in the spec's order of preference.
pub struct Identities<'a> {
    /// Config `oauth.clientId` (and secret): registered by hand.
    pub configured: Option<Registration>,
    /// The URL of the proxy's client metadata document, used where the server takes one (CIMD).
    pub metadata_document: Option<&'a str>,
    /// Registered at this issuer before.
    pub remembered: Option<Registration>,
}

/// The client to log in as: configured, else the metadata document's URL where the server takes one,
/// else one registered at this issuer before, else a new dynamic registration for `redirect_uri` as an
/// `application_type` (`native` for a loopback redirect, `web` for the admin page). The second value is
/// true when the registration is new or remembered (and so belongs in the store).
pub fn client(
    agent: &ureq::Agent,
    metadata: &ServerMetadata,
    known: Identities,
    redirect_uri: &str,
    application_type: &str,
) -> Result<(Registration, bool), ClientError> {
    if let Some(configured) = known.configured {
        return Ok((configured, false));
    }
    if let Some(url) = known.metadata_document.filter(|_| metadata.client_id_metadata_document_supported) {
        return Ok((Registration { client_id: url.to_owned(), client_secret: None }, false));
    }
    let remembered = known.remembered;
    if let Some(remembered) = remembered {
        return Ok((remembered, true));
    }
    let Some(endpoint) = &metadata.registration_endpoint else {
        return refused(format!(
            "the authorization server '{}' takes no dynamic registration: register a client there and set \"oauth\": {{\"clientId\": ...}} for this server",
            metadata.issuer
        ));
    };
    let request = json!({
        "client_name": "mcp-proxy-server",
        "redirect_uris": [redirect_uri],
        "application_type": application_type,
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
    });
    let registered: Registration = discovery::post_json(agent, endpoint, &request)?;
    Ok((registered, true))
}

/// PKCE (RFC 7636): a fresh verifier and its S256 challenge.
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    pub fn new() -> std::io::Result<Pkce> {
        use base64::Engine;
        let verifier = crate::random::token_hex(32)?;
        let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
        Ok(Pkce { challenge: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref()), verifier })
    }
}

/// The URL the person opens to log in and consent.
pub fn authorization_url(found: &Discovered, client_id: &str, redirect_uri: &str, pkce: &Pkce, state: &str) -> String {
    let endpoint = found.metadata.authorization_endpoint.as_deref().unwrap_or_default();
    let mut params = vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("code_challenge", &pkce.challenge),
        ("code_challenge_method", "S256"),
        ("state", state),
        ("resource", &found.resource),
    ];
    if let Some(scope) = &found.scope {
        params.push(("scope", scope));
    }
    let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={}", form_encode(v))).collect();
    let joiner = if endpoint.contains('?') { '&' } else { '?' };
    format!("{endpoint}{joiner}{}", query.join("&"))
}

/// The code of an authorization response, once it is shown to be the answer to this login: `state`
/// as sent, and `iss` (RFC 9207) equal to the issuer, or absent where the server does not promise it.
/// On an `iss` mismatch even an `error` is not believed.
pub fn code_from(params: &[(String, String)], state: &str, metadata: &ServerMetadata) -> Result<String, ClientError> {
    let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    match get("iss") {
        Some(iss) if iss != metadata.issuer => {
            return refused(format!("the authorization response came from '{iss}', not '{}' (RFC 9207): refused", metadata.issuer))
        }
        None if metadata.authorization_response_iss_parameter_supported => {
            return refused("the authorization response has no 'iss' although its server promises one (RFC 9207): refused".into())
        }
        _ => {}
    }
    if get("state") != Some(state) {
        return refused("the authorization response is not for this login (its 'state' differs): refused".into());
    }
    if let Some(error) = get("error") {
        let description = get("error_description").map(|d| format!(": {d}")).unwrap_or_default();
        return refused(format!("the authorization server said {error}{description}"));
    }
    get("code").map(str::to_owned).ok_or_else(|| ClientError::Refused("the authorization response has no code".into()))
}

/// A token endpoint's answer (RFC 6749 5.1).
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    token_type: String,
    expires_in: Option<u64>,
    refresh_token: Option<String>,
    scope: Option<String>,
}

/// Exchanges an authorization code for tokens.
pub fn exchange(
    agent: &ureq::Agent,
    found: &Discovered,
    client: Registration,
    code: &str,
    redirect_uri: &str,
    verifier: &str,
) -> Result<ServerTokens, ClientError> {
    let token_endpoint = found.metadata.token_endpoint.clone().unwrap_or_default();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("client_id", &client.client_id),
        ("code_verifier", verifier),
        ("resource", &found.resource),
    ];
    let answer: TokenAnswer = discovery::post_form(agent, &token_endpoint, basic(&client), &form)?;
    let previous = ServerTokens {
        issuer: found.metadata.issuer.clone(),
        resource: found.resource.clone(),
        token_endpoint,
        client,
        access_token: String::new(),
        refresh_token: None,
        expires_at: None,
        lifetime: None,
        scope: found.scope.clone(),
        wanted_scope: None,
    };
    apply(previous, answer)
}

/// New tokens for old, by the refresh token. A `FetchError::Denied` with `invalid_grant` means the
/// grant is over (revoked, expired, already used): the person must log in again.
pub fn refresh(agent: &ureq::Agent, tokens: &ServerTokens) -> Result<ServerTokens, ClientError> {
    let Some(refresh_token) = &tokens.refresh_token else {
        return refused("the access token expired and there is no refresh token".into());
    };
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token.as_str()),
        ("client_id", &tokens.client.client_id),
        ("resource", &tokens.resource),
    ];
    let answer: TokenAnswer = discovery::post_form(agent, &tokens.token_endpoint, basic(&tokens.client), &form)?;
    apply(tokens.clone(), answer)
}

fn basic(client: &Registration) -> Option<(&str, &str)> {
    client.client_secret.as_deref().map(|secret| (client.client_id.as_str(), secret))
}

fn apply(previous: ServerTokens, answer: TokenAnswer) -> Result<ServerTokens, ClientError> {
    if !answer.token_type.eq_ignore_ascii_case("bearer") {
        return refused(format!("the token endpoint gave a '{}' token; only bearer tokens are used", answer.token_type));
    }
    Ok(ServerTokens {
        access_token: answer.access_token,
        // A server that does not rotate refresh tokens sends none with a refresh: the old one stays good.
        refresh_token: answer.refresh_token.or(previous.refresh_token),
        expires_at: answer.expires_in.map(|lifetime| unix_now().saturating_add(lifetime)),
        lifetime: answer.expires_in,
        scope: answer.scope.or(previous.scope),
        ..previous
    })
}

/// The scopes of every part, each once, in order of appearance (step-up asks for the union of what was
/// granted and what is wanted).
pub fn union_scopes<'a>(parts: impl IntoIterator<Item = Option<&'a str>>) -> Option<String> {
    let mut scopes: Vec<&str> = Vec::new();
    for scope in parts.into_iter().flatten().flat_map(str::split_whitespace) {
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    (!scopes.is_empty()).then(|| scopes.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(iss_promised: bool) -> ServerMetadata {
        serde_json::from_value(json!({
            "issuer": "https://as.example",
            "authorization_endpoint": "https://as.example/auth?tenant=1",
            "token_endpoint": "https://as.example/token",
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": iss_promised,
        }))
        .unwrap()
    }

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_resource_covers_its_own_url_and_those_below_it_only() {
        assert!(covers("https://mcp.example/mcp", "https://mcp.example/mcp"));
        assert!(covers("https://mcp.example/", "https://mcp.example/mcp"));
        assert!(covers("https://mcp.example/mcp", "https://mcp.example/mcp/work?x=1"));
        assert!(!covers("https://mcp.example/mc", "https://mcp.example/mcp"));
        assert!(!covers("https://evil.example/mcp", "https://mcp.example/mcp"));
        assert!(!covers("https://mcp.example/other", "https://mcp.example/mcp"));
    }

    #[test]
    fn the_authorization_url_carries_pkce_state_resource_and_scope() {
        let found = Discovered { resource: "https://mcp.example/mcp".into(), metadata: metadata(true), scope: Some("a b".into()) };
        let pkce = Pkce { verifier: "v".into(), challenge: "c".into() };
        let url = authorization_url(&found, "client 1", "http://127.0.0.1:5000/callback", &pkce, "s1");
        assert_eq!(
            url,
            "https://as.example/auth?tenant=1&response_type=code&client_id=client+1&redirect_uri=http%3A%2F%2F127.0.0.1%3A5000%2Fcallback\
             &code_challenge=c&code_challenge_method=S256&state=s1&resource=https%3A%2F%2Fmcp.example%2Fmcp&scope=a+b"
        );
    }

    #[test]
    fn a_pkce_challenge_is_the_base64url_sha256_of_its_verifier() {
        let pkce = Pkce::new().unwrap();
        assert_eq!(pkce.verifier.len(), 64);
        assert_eq!(pkce.challenge.len(), 43, "32 bytes, base64url without padding");
        assert!(!pkce.challenge.contains(['=', '+', '/']));
    }

    #[test]
    fn the_code_is_taken_only_from_the_right_issuer_and_state() {
        let good = params(&[("code", "k"), ("state", "s1"), ("iss", "https://as.example")]);
        assert_eq!(code_from(&good, "s1", &metadata(true)).unwrap(), "k");
        let other_iss = params(&[("code", "k"), ("state", "s1"), ("iss", "https://evil.example")]);
        assert!(code_from(&other_iss, "s1", &metadata(false)).unwrap_err().to_string().contains("RFC 9207"));
        let no_iss = params(&[("code", "k"), ("state", "s1")]);
        assert!(code_from(&no_iss, "s1", &metadata(true)).is_err(), "iss promised, absent: refused");
        assert_eq!(code_from(&no_iss, "s1", &metadata(false)).unwrap(), "k", "iss not promised: not needed");
        assert!(code_from(&good, "s2", &metadata(true)).unwrap_err().to_string().contains("state"));
    }

    #[test]
    fn an_error_response_is_reported_but_only_from_the_right_issuer() {
        let denied = params(&[("error", "access_denied"), ("state", "s1"), ("iss", "https://as.example")]);
        assert_eq!(code_from(&denied, "s1", &metadata(true)).unwrap_err().to_string(), "the authorization server said access_denied");
        let spoofed = params(&[("error", "access_denied"), ("state", "s1"), ("iss", "https://evil.example")]);
        assert!(code_from(&spoofed, "s1", &metadata(true)).unwrap_err().to_string().contains("RFC 9207"));
    }

    #[test]
    fn scopes_are_united_each_once_in_order() {
        assert_eq!(union_scopes([Some("a b"), None, Some("b  c"), Some("")]).as_deref(), Some("a b c"));
        assert_eq!(union_scopes([None, Some(" ")]), None);
    }

    #[test]
    fn a_refresh_without_a_new_refresh_token_keeps_the_old_one() {
        let previous = ServerTokens {
            issuer: "https://as.example".into(),
            resource: "r".into(),
            token_endpoint: "t".into(),
            client: Registration { client_id: "c".into(), client_secret: None },
            access_token: "a1".into(),
            refresh_token: Some("r1".into()),
            expires_at: None,
            lifetime: None,
            scope: Some("s".into()),
            wanted_scope: None,
        };
        let answer =
            TokenAnswer { access_token: "a2".into(), token_type: "Bearer".into(), expires_in: Some(60), refresh_token: None, scope: None };
        let next = apply(previous.clone(), answer).unwrap();
        assert_eq!((next.access_token.as_str(), next.refresh_token.as_deref(), next.lifetime), ("a2", Some("r1"), Some(60)));
        let mac = TokenAnswer { access_token: "a3".into(), token_type: "mac".into(), expires_in: None, refresh_token: None, scope: None };
        assert!(apply(previous, mac).is_err());
    }
}
