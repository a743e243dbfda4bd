//! Finding an authorization server's endpoints from its issuer identifier: the metadata documents of
//! RFC 8414 and OpenID Connect Discovery, tried in the order the MCP authorization spec gives, and the
//! JSON fetches both sides of OAuth make (bounded in time and size, https unless on this machine).

use crate::settings::is_loopback_url;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::fmt;
use std::time::Duration;

/// How long one metadata, key set or introspection request may take in all.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest metadata or key set document read.
const MAX_DOCUMENT: u64 = 256 * 1024;

/// What went wrong talking to an authorization server; the URL is in every message.
#[derive(Debug)]
pub enum FetchError {
    /// The URL is plain http to another machine.
    NotHttps(String),
    /// No answer: refused, timed out, TLS failed.
    Unreachable(String, ureq::Error),
    Status(String, u16),
    /// The answer is not the JSON expected.
    BadJson(String, String),
    /// RFC 8414 section 3.3: the document's `issuer` differs from the one the URL was made from.
    IssuerMismatch {
        url: String,
        found: String,
    },
    /// No metadata document at any of the well-known URLs.
    NoMetadata(String),
    /// The issuer's metadata lacks a member the proxy needs.
    Missing(String, &'static str),
    /// An OAuth error answer (RFC 6749 5.2): `invalid_grant`, `invalid_client`, ...
    Denied {
        url: String,
        error: String,
        description: Option<String>,
    },
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::NotHttps(url) => write!(f, "{url}: authorization server endpoints must be https (plain http only to localhost)"),
            FetchError::Unreachable(url, e) => write!(f, "{url}: {e}"),
            FetchError::Status(url, status) => write!(f, "{url}: HTTP {status}"),
            FetchError::BadJson(url, e) => write!(f, "{url}: not the JSON expected: {e}"),
            FetchError::IssuerMismatch { url, found } => {
                write!(f, "{url}: the document is for issuer '{found}', not the one asked for (RFC 8414 3.3): refused")
            }
            FetchError::NoMetadata(issuer) => write!(f, "no authorization server metadata found for issuer '{issuer}'"),
            FetchError::Missing(issuer, member) => write!(f, "the metadata of issuer '{issuer}' has no {member}"),
            FetchError::Denied { url, error, description } => match description {
                Some(description) => write!(f, "{url}: {error}: {description}"),
                None => write!(f, "{url}: {error}"),
            },
        }
    }
}

impl std::error::Error for FetchError {}

/// The parts of an authorization server's metadata the proxy uses, as a resource server (keys,
/// introspection) and as a client (the rest).
#[derive(Debug, Clone, Deserialize)]
pub struct ServerMetadata {
    pub issuer: String,
    pub jwks_uri: Option<String>,
    pub introspection_endpoint: Option<String>,
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
    pub registration_endpoint: Option<String>,
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
    /// RFC 9207: the server puts `iss` in every authorization response.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
    /// The server takes a client id that is the URL of the client's metadata document (CIMD).
    #[serde(default)]
    pub client_id_metadata_document_supported: bool,
}

/// An HTTP agent for authorization servers: statuses are answers, not errors, nothing waits long, and
/// no redirect is followed (each URL is checked for https before it is fetched; a redirect would not be).
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(FETCH_TIMEOUT)).max_redirects(0).build().into()
}

/// The well-known metadata URLs for `issuer`, in the order to try them: RFC 8414's, then OpenID
/// Connect's inserted after the host, then OpenID Connect's appended to the path.
pub fn metadata_urls(issuer: &str) -> Vec<String> {
    let (origin, path) = split_origin(issuer);
    let path = path.trim_end_matches('/');
    let mut urls =
        vec![format!("{origin}/.well-known/oauth-authorization-server{path}"), format!("{origin}/.well-known/openid-configuration{path}")];
    if !path.is_empty() {
        urls.push(format!("{origin}{path}/.well-known/openid-configuration"));
    }
    urls
}

/// `https://host:port` and the rest (`/path`, or empty) of an absolute URL without query or fragment.
pub fn split_origin(url: &str) -> (&str, &str) {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(slash) => url.split_at(after_scheme + slash),
        None => (url, ""),
    }
}

/// The first metadata document found for `issuer`, checked to be for that issuer exactly.
pub fn server_metadata(agent: &ureq::Agent, issuer: &str) -> Result<ServerMetadata, FetchError> {
    for url in metadata_urls(issuer) {
        match get_json::<ServerMetadata>(agent, &url) {
            Ok(meta) if meta.issuer == issuer => return Ok(meta),
            Ok(meta) => return Err(FetchError::IssuerMismatch { url, found: meta.issuer }),
            // Not at this well-known URL: try the next; anything else is the answer.
            Err(FetchError::Status(_, 404 | 405 | 410)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(FetchError::NoMetadata(issuer.to_owned()))
}

/// GETs `url` and parses its JSON body as `T`.
pub fn get_json<T: DeserializeOwned>(agent: &ureq::Agent, url: &str) -> Result<T, FetchError> {
    require_https(url)?;
    let response = agent.get(url).header("Accept", "application/json").call().map_err(|e| FetchError::Unreachable(url.to_owned(), e))?;
    json_body(url, response)
}

/// POSTs `form` to `url`, with HTTP Basic client authentication (RFC 6749 2.3.1) when `basic` is
/// given, and parses the answer.
pub fn post_form<T: DeserializeOwned>(
    agent: &ureq::Agent,
    url: &str,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> Result<T, FetchError> {
    require_https(url)?;
    let mut request = agent.post(url).header("Accept", "application/json");
    if let Some((id, secret)) = basic {
        request = request.header("Authorization", &basic_auth(id, secret));
    }
    let response = request.send_form(form.iter().copied()).map_err(|e| FetchError::Unreachable(url.to_owned(), e))?;
    json_body(url, response)
}

/// POSTs a JSON document to `url` (dynamic client registration) and parses the answer.
pub fn post_json<T: DeserializeOwned>(agent: &ureq::Agent, url: &str, body: &serde_json::Value) -> Result<T, FetchError> {
    require_https(url)?;
    let response = agent
        .post(url)
        .header("Accept", "application/json")
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .map_err(|e| FetchError::Unreachable(url.to_owned(), e))?;
    json_body(url, response)
}

/// An OAuth error answer's members.
#[derive(Deserialize)]
struct ErrorAnswer {
    error: String,
    error_description: Option<String>,
}

fn json_body<T: DeserializeOwned>(url: &str, response: ureq::http::Response<ureq::Body>) -> Result<T, FetchError> {
    let status = response.status().as_u16();
    let text = response.into_body().with_config().limit(MAX_DOCUMENT).read_to_string();
    if !(200..300).contains(&status) {
        let answer = text.ok().and_then(|text| serde_json::from_str::<ErrorAnswer>(&text).ok());
        return Err(match answer {
            Some(a) => FetchError::Denied { url: url.to_owned(), error: a.error, description: a.error_description },
            None => FetchError::Status(url.to_owned(), status),
        });
    }
    let text = text.map_err(|e| FetchError::BadJson(url.to_owned(), e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| FetchError::BadJson(url.to_owned(), e.to_string()))
}

fn require_https(url: &str) -> Result<(), FetchError> {
    match url.starts_with("https://") || (url.starts_with("http://") && is_loopback_url(url)) {
        true => Ok(()),
        false => Err(FetchError::NotHttps(url.to_owned())),
    }
}

/// `Basic base64(id:secret)`, each part form-encoded first as RFC 6749 2.3.1 asks.
fn basic_auth(id: &str, secret: &str) -> String {
    use base64::Engine;
    let pair = format!("{}:{}", form_encode(id), form_encode(secret));
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
}

/// `application/x-www-form-urlencoded` encoding of one value.
pub fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => char::from(b).to_string(),
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issuer_without_a_path_has_two_metadata_urls() {
        assert_eq!(
            metadata_urls("https://as.example"),
            ["https://as.example/.well-known/oauth-authorization-server", "https://as.example/.well-known/openid-configuration"]
        );
    }

    #[test]
    fn an_issuer_with_a_path_has_the_path_after_the_well_known_part_then_openid_appended() {
        assert_eq!(
            metadata_urls("https://as.example:8443/realms/lan"),
            [
                "https://as.example:8443/.well-known/oauth-authorization-server/realms/lan",
                "https://as.example:8443/.well-known/openid-configuration/realms/lan",
                "https://as.example:8443/realms/lan/.well-known/openid-configuration",
            ]
        );
    }

    #[test]
    fn origin_and_path_are_split_at_the_first_slash_after_the_host() {
        assert_eq!(split_origin("https://hub.lan:8443/mcp/work"), ("https://hub.lan:8443", "/mcp/work"));
        assert_eq!(split_origin("http://127.0.0.1:4444"), ("http://127.0.0.1:4444", ""));
    }

    #[test]
    fn client_credentials_are_form_encoded_before_base64() {
        // "a b:c/d" -> "a+b" ":" "c%2Fd"
        assert_eq!(basic_auth("a b", "c/d"), format!("Basic {}", base64_of("a+b:c%2Fd")));
    }

    fn base64_of(text: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    #[test]
    fn plain_http_is_refused_unless_to_this_machine() {
        assert!(matches!(require_https("http://as.example/jwks"), Err(FetchError::NotHttps(_))));
        assert!(require_https("http://127.0.0.1:4444/jwks").is_ok());
        assert!(require_https("https://as.example/jwks").is_ok());
    }
}
