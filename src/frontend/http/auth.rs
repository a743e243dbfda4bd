//! Who may use the MCP endpoints: API keys and bearer tokens, as the original proxy reads them, and,
//! with `MCP_PROXY_OAUTH_ISSUER`, OAuth access tokens (checked by `oauth::ResourceServer`). (Where
//! requests may come from and be addressed to is `hosts`.)

use crate::http::{Request, Response};
#[cfg(feature = "oauth")]
use crate::oauth::{Refusal, ResourceServer};
#[cfg(feature = "oauth")]
use std::sync::Arc;

/// The static challenge: a bearer token or an API key.
const STATIC_CHALLENGE: &str = "Bearer realm=\"mcp-proxy-server\"";
const API_KEY_CHALLENGE: &str = "ApiKey header=\"X-Api-Key\"";

/// The configured secrets and token checker. With none configured, every request is let in.
pub struct Auth {
    keys: Vec<String>,
    tokens: Vec<String>,
    #[cfg(feature = "oauth")]
    oauth: Option<Arc<ResourceServer>>,
}

impl Auth {
    pub fn new(keys: Vec<String>, tokens: Vec<String>) -> Auth {
        Auth {
            keys,
            tokens,
            #[cfg(feature = "oauth")]
            oauth: None,
        }
    }

    /// Also lets in OAuth access tokens that `oauth` accepts.
    #[cfg(feature = "oauth")]
    pub fn with_oauth(self, oauth: Arc<ResourceServer>) -> Auth {
        Auth { oauth: Some(oauth), ..self }
    }

    #[cfg(feature = "oauth")]
    pub fn oauth(&self) -> Option<&ResourceServer> {
        self.oauth.as_deref()
    }

    pub fn enabled(&self) -> bool {
        !self.keys.is_empty() || !self.tokens.is_empty() || self.has_oauth()
    }

    fn has_oauth(&self) -> bool {
        #[cfg(feature = "oauth")]
        return self.oauth.is_some();
        #[cfg(not(feature = "oauth"))]
        false
    }

    /// True when auth is off, or the request carries a credential that lets it in.
    pub fn allows(&self, req: &Request) -> bool {
        self.check(req).is_ok()
    }

    /// Who the request's credential names: a configured token or key as `token #N` / `key #N` (never
    /// the secret itself), looked for in that order (the bearer token, the `X-Api-Key` header, `?key=`),
    /// then an OAuth access token as `oauth:<hash>`. It is both what lets a request in and the owner of
    /// a session, for the per-key session limit. `Ok(None)` when auth is off; `Err` is the response
    /// that refuses the request (401, 403 for too few OAuth scopes, 503 when a token cannot be checked).
    pub fn check(&self, req: &Request) -> Result<Option<String>, Response> {
        if !self.enabled() {
            return Ok(None);
        }
        let bearer = req.header("authorization").and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
        });
        if let Some(known) = self.static_owner(req, bearer.clone()) {
            return Ok(Some(known));
        }
        #[cfg(feature = "oauth")]
        if let Some(oauth) = &self.oauth {
            return match bearer.as_deref().map(|token| oauth.verify(token)) {
                Some(Ok(verified)) => Ok(Some(verified.owner)),
                Some(Err(why)) => Err(self.oauth_refusal(oauth, Some(&why))),
                None => Err(self.oauth_refusal(oauth, None)),
            };
        }
        Err(self.static_refusal())
    }

    fn static_owner(&self, req: &Request, bearer: Option<String>) -> Option<String> {
        let header_key = req.header("x-api-key").map(|k| k.trim().to_owned());
        let candidates = [(bearer, &self.tokens, "token"), (header_key, &self.keys, "key"), (req.query_param("key"), &self.keys, "key")];
        candidates
            .into_iter()
            .find_map(|(candidate, secrets, kind)| matching(&candidate?, secrets).map(|index| crate::event::owner_label(kind, index)))
    }

    /// The refusal of a request without a usable credential when OAuth is on: its status and the
    /// `WWW-Authenticate` challenges that say what would do (the OAuth one names the resource
    /// metadata, RFC 9728).
    #[cfg(feature = "oauth")]
    fn oauth_refusal(&self, oauth: &ResourceServer, why: Option<&Refusal>) -> Response {
        let message = match why {
            None => "Unauthorized".to_owned(),
            Some(Refusal::Invalid(reason)) => format!("Unauthorized: the access token is {reason}"),
            Some(Refusal::InsufficientScope) => "Forbidden: the access token lacks a scope this proxy needs".to_owned(),
            Some(Refusal::Unavailable(reason)) => {
                // The details name the authorization server's insides: for the log, not the client.
                log::warn!("OAuth: cannot check an access token: {reason}");
                "cannot check the access token now; try again later".to_owned()
            }
        };
        let status = why.map_or(401, Refusal::status);
        let bearer = oauth.challenge(why);
        let challenge = match self.keys.is_empty() {
            true => bearer,
            false => format!("{bearer}, {API_KEY_CHALLENGE}"),
        };
        Response::error(status, &message).with_header("WWW-Authenticate", &challenge)
    }

    fn static_refusal(&self) -> Response {
        let challenge = match self.keys.is_empty() {
            true => STATIC_CHALLENGE.to_owned(),
            false => format!("{STATIC_CHALLENGE}, {API_KEY_CHALLENGE}"),
        };
        Response::error(401, "Unauthorized").with_header("WWW-Authenticate", &challenge)
    }
}

/// The index of the secret a candidate equals. Every secret is compared, so the time taken does not
/// say which one matched.
fn matching(candidate: &str, secrets: &[String]) -> Option<usize> {
    secrets.iter().enumerate().fold(None, |found, (index, secret)| {
        let equal = constant_time_eq(candidate.as_bytes(), secret.as_bytes());
        found.or(equal.then_some(index))
    })
}

/// Compares without an early exit, so timing does not reveal how much of a secret was guessed right.
/// (The length of the secret is not hidden; it is not the secret.)
pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_matching_secret_is_found_by_index() {
        let secrets = vec!["a1".to_owned(), "b2".to_owned()];
        assert_eq!(matching("b2", &secrets), Some(1));
        assert_eq!(matching("c3", &secrets), None);
    }

    #[test]
    fn equal_and_unequal_secrets() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
