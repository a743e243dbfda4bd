//! Who may use the MCP endpoints: API keys and bearer tokens, as the original proxy reads them. (Where
//! requests may come from and be addressed to is `hosts`.)

use crate::http::Request;

/// The configured secrets. With none configured, every request is let in.
pub struct Auth {
    keys: Vec<String>,
    tokens: Vec<String>,
}

impl Auth {
    pub fn new(keys: Vec<String>, tokens: Vec<String>) -> Auth {
        Auth { keys, tokens }
    }

    pub fn enabled(&self) -> bool {
        !self.keys.is_empty() || !self.tokens.is_empty()
    }

    /// True when auth is off, or the request carries a valid `Authorization: Bearer` token, `X-Api-Key`
    /// header or `?key=` query parameter.
    pub fn allows(&self, req: &Request) -> bool {
        !self.enabled() || self.identify(req).is_some()
    }

    /// The configured token or key the request carries, as `token #N` / `key #N` (never the secret
    /// itself), looked for in that order: the bearer token, the `X-Api-Key` header, `?key=`. It is
    /// both what lets a request in and the owner of a session, for the per-key session limit.
    pub fn identify(&self, req: &Request) -> Option<String> {
        let bearer = req.header("authorization").and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
        });
        let header_key = req.header("x-api-key").map(|k| k.trim().to_owned());
        let candidates = [(bearer, &self.tokens, "token"), (header_key, &self.keys, "key"), (req.query_param("key"), &self.keys, "key")];
        candidates
            .into_iter()
            .find_map(|(candidate, secrets, kind)| matching(&candidate?, secrets).map(|index| crate::event::owner_label(kind, index)))
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
