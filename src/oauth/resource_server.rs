//! The proxy as an OAuth 2.1 resource server: which access tokens let a client in, and what the proxy
//! tells clients that have none (RFC 9728 protected resource metadata and the `WWW-Authenticate`
//! challenge the MCP authorization spec asks for).
//!
//! A JWT access token is checked here: its signature against the authorization server's published keys
//! (fetched when first needed, again when a token names a key not seen yet or the set is ten minutes
//! old, never more than once per [`MIN_REFETCH`]), then `iss`, `aud` (this proxy's resource URL), `exp`,
//! `nbf` and `sub`. (A token accepted before its key was withdrawn stays accepted until it expires.) Any other token is introspected at the authorization server (RFC 7662) when the proxy has
//! credentials for that. Accepted tokens are remembered ([`TokenCache`]). All of it runs on the HTTP
//! connection thread of the request: a slow authorization server delays only requests that bring a new
//! token, and never the dispatcher.
//!
//! The token is never passed on to backends (they have their own credentials) and never logged.

use super::discovery::{self, FetchError, ServerMetadata};
use super::jwt_ring;
use super::keys::{JwksDocument, KeySet};
use super::token_cache::{self, TokenCache};
use super::{instant_at, unix_now};
use crate::settings::OAuthSettings;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Network lookups (metadata, keys) at most this often, so tokens naming unknown keys cannot make the
/// proxy hammer the authorization server.
const MIN_REFETCH: Duration = Duration::from_secs(5);
/// Keys older than this are fetched again when a token is checked, so a withdrawn key stops working.
const KEYS_MAX_AGE: Duration = Duration::from_secs(600);
/// How long an introspected token is believed without asking again: a revocation takes this long.
const INTROSPECTION_CACHE: Duration = Duration::from_secs(30);
/// How long a refused token stays refused without being checked again.
const REFUSAL_CACHE: Duration = Duration::from_secs(30);
/// Introspections in flight at most: past it a new token waits for another request (503), so that
/// requests with made-up tokens cannot turn the proxy into a flood on the authorization server.
const MAX_INTROSPECTIONS: usize = 8;
const UNPUBLISHED_KEY: &str = "signed with a key the authorization server does not publish";
/// The longest bearer token looked at; a JWT of a large authorization server is 1-2 KB.
const MAX_TOKEN: usize = 8 * 1024;

/// What an accepted token says about its holder.
#[derive(Debug, Clone)]
pub struct Verified {
    /// `oauth:<hash>` of issuer, subject and client: the same for every token of one user in one
    /// client, so a refreshed token still owns the sessions its predecessor opened.
    pub owner: String,
    pub scopes: Vec<String>,
}

/// Why a token does not let its request in.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not a token of this authorization server for this resource, or no longer good: 401.
    Invalid(String),
    /// A good token without all the scopes needed: 403.
    InsufficientScope,
    /// The token cannot be checked now (the authorization server is unreachable): 503.
    Unavailable(String),
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Invalid(_) => 401,
            Refusal::InsufficientScope => 403,
            Refusal::Unavailable(_) => 503,
        }
    }
}

pub struct ResourceServer {
    settings: OAuthSettings,
    agent: ureq::Agent,
    keys: Mutex<Arc<KeySet>>,
    /// Held while fetching, so concurrent requests make one fetch.
    lookups: Mutex<Lookups>,
    accepted: Mutex<TokenCache<Verified>>,
    refused: Mutex<TokenCache<String>>,
    introspecting: AtomicUsize,
}

#[derive(Default)]
struct Lookups {
    metadata: Option<ServerMetadata>,
    last_fetch: Option<Instant>,
    last_error: Option<String>,
}

impl ResourceServer {
    pub fn new(settings: OAuthSettings) -> ResourceServer {
        jwt_ring::install();
        ResourceServer {
            settings,
            agent: discovery::agent(),
            keys: Mutex::new(Arc::new(KeySet::empty())),
            lookups: Mutex::new(Lookups::default()),
            accepted: Mutex::new(TokenCache::default()),
            refused: Mutex::new(TokenCache::default()),
            introspecting: AtomicUsize::new(0),
        }
    }

    /// Fetches what checking tokens needs now rather than on the first token, so a misconfiguration
    /// shows in the log at start-up. Returns a line saying what was found.
    pub fn prepare(&self) -> Result<String, String> {
        let introspection = match self.settings.introspection {
            Some(_) => {
                let endpoint = self.metadata()?.introspection_endpoint;
                format!(", opaque tokens introspected at {}", endpoint.as_deref().unwrap_or("(none: the metadata names no endpoint)"))
            }
            None => String::new(),
        };
        let keys = self.refresh_keys(&self.current_keys())?;
        Ok(format!(
            "OAuth: accepting tokens from {} for {}: {} signing keys{introspection}",
            self.settings.issuer,
            self.settings.resource,
            keys.len()
        ))
    }

    /// Checks a bearer token; what it says about its holder, or why it is refused.
    pub fn verify(&self, token: &str) -> Result<Verified, Refusal> {
        if token.len() > MAX_TOKEN || !token.bytes().all(is_token68) {
            return Err(Refusal::Invalid("not a bearer token (RFC 6750: at most 8 KiB of base64url characters)".into()));
        }
        let now = Instant::now();
        let hash = token_cache::hash(token);
        if let Some(why) = lock(&self.refused).get(&hash, now) {
            return Err(Refusal::Invalid(why));
        }
        let cached = lock(&self.accepted).get(&hash, now);
        let verified = match cached {
            Some(verified) => verified,
            None => {
                let checked = if is_jwt(token) { self.check_jwt(token) } else { self.introspect(token) };
                let (verified, until) = match checked {
                    Ok(found) => found,
                    Err(Refusal::Invalid(why)) => {
                        // A key not seen yet may be published in a moment (keys are fetched at most
                        // every MIN_REFETCH): that refusal is not remembered.
                        if why != UNPUBLISHED_KEY {
                            lock(&self.refused).insert(hash, why.clone(), now + REFUSAL_CACHE, now);
                        }
                        return Err(Refusal::Invalid(why));
                    }
                    Err(other) => return Err(other),
                };
                lock(&self.accepted).insert(hash, verified.clone(), until, now);
                verified
            }
        };
        match self.settings.scopes.iter().all(|needed| verified.scopes.contains(needed)) {
            true => Ok(verified),
            false => Err(Refusal::InsufficientScope),
        }
    }

    /// The URL of this resource's metadata document: the well-known path inserted before the resource
    /// URL's path (RFC 9728 section 3.1).
    pub fn metadata_url(&self) -> String {
        let (origin, path) = discovery::split_origin(&self.settings.resource);
        format!("{origin}/.well-known/oauth-protected-resource{}", path.trim_end_matches('/'))
    }

    /// The protected resource metadata document (RFC 9728).
    pub fn metadata_document(&self) -> Value {
        let mut document = json!({
            "resource": self.settings.resource,
            "authorization_servers": [self.settings.issuer],
            "bearer_methods_supported": ["header"],
        });
        if !self.settings.scopes.is_empty() {
            document["scopes_supported"] = json!(self.settings.scopes);
        }
        document
    }

    /// The `WWW-Authenticate` challenge for a request without a token (`None`) or refused for `why`.
    pub fn challenge(&self, why: Option<&Refusal>) -> String {
        let metadata = format!("resource_metadata=\"{}\"", self.metadata_url());
        let scope = match self.settings.scopes.is_empty() {
            true => String::new(),
            false => format!(", scope=\"{}\"", self.settings.scopes.join(" ")),
        };
        match why {
            None | Some(Refusal::Unavailable(_)) => format!("Bearer {metadata}{scope}"),
            Some(Refusal::Invalid(reason)) => {
                format!("Bearer error=\"invalid_token\", error_description=\"{}\", {metadata}", quotable(reason))
            }
            Some(Refusal::InsufficientScope) => format!("Bearer error=\"insufficient_scope\"{scope}, {metadata}"),
        }
    }

    fn check_jwt(&self, token: &str) -> Result<(Verified, Instant), Refusal> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| Refusal::Invalid(format!("not a readable JWT: {e}")))?;
        let typ = header.typ.as_deref().map(str::to_ascii_lowercase);
        if !matches!(typ.as_deref(), None | Some("jwt" | "at+jwt" | "application/at+jwt")) {
            return Err(Refusal::Invalid(format!("a JWT of type '{}' is not an access token", typ.unwrap_or_default())));
        }
        if !jwt_ring::is_public_key_algorithm(header.alg) {
            return Err(Refusal::Invalid(format!("signed with {:?}: only public-key signatures are accepted", header.alg)));
        }
        let kid = header.kid.as_deref();
        let keys = self.keys_for(kid, header.alg)?;
        let candidates = keys.candidates(kid, header.alg);
        if candidates.is_empty() {
            return Err(Refusal::Invalid(UNPUBLISHED_KEY.into()));
        }
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.resource]);
        // RFC 9068 access tokens name their holder: without `sub`, tokens of different holders would
        // share one owner (and so each other's sessions).
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = self.settings.leeway.as_secs();
        // A token without `kid` is tried with each key that fits its algorithm; one with a `kid` has one.
        let mut decoded = candidates.iter().map(|key| jsonwebtoken::decode::<Claims>(token, key, &validation));
        let first = decoded.next().ok_or_else(|| Refusal::Invalid(UNPUBLISHED_KEY.into()))?;
        let claims = match first {
            Err(e) if *e.kind() == ErrorKind::InvalidSignature => decoded.find(|d| d.is_ok()).unwrap_or(Err(e)),
            other => other,
        }
        .map_err(|e| Refusal::Invalid(describe(e.kind())))?
        .claims;
        let issuer = claims.iss.as_deref().unwrap_or(&self.settings.issuer);
        let verified = Verified { owner: principal(issuer, claims.sub.as_deref(), claims.client()), scopes: claims.scopes() };
        Ok((verified, claims.exp.map_or_else(Instant::now, instant_at)))
    }

    /// Keys that may hold the one for `kid` and `alg`: the current set if it has it and is fresh, else a
    /// newly fetched one (or the current one if fetching fails but it has the key).
    fn keys_for(&self, kid: Option<&str>, alg: Algorithm) -> Result<Arc<KeySet>, Refusal> {
        let current = self.current_keys();
        let fresh = current.fetched.is_some_and(|at| at.elapsed() < KEYS_MAX_AGE);
        if fresh && current.find(kid, alg).is_some() {
            return Ok(current);
        }
        match self.refresh_keys(&current) {
            Ok(keys) => Ok(keys),
            Err(e) if current.find(kid, alg).is_some() => {
                log::warn!("OAuth: keeping the signing keys fetched before: {e}");
                Ok(current)
            }
            Err(e) => Err(Refusal::Unavailable(e)),
        }
    }

    fn current_keys(&self) -> Arc<KeySet> {
        Arc::clone(&lock(&self.keys))
    }

    /// Fetches the key set unless another thread did since `seen` was current, or a fetch was made
    /// within [`MIN_REFETCH`].
    fn refresh_keys(&self, seen: &Arc<KeySet>) -> Result<Arc<KeySet>, String> {
        let mut lookups = lock(&self.lookups);
        let current = self.current_keys();
        if !Arc::ptr_eq(&current, seen) {
            return Ok(current);
        }
        if lookups.last_fetch.is_some_and(|at| at.elapsed() < MIN_REFETCH) {
            return match (&lookups.last_error, current.is_empty()) {
                (Some(e), true) => Err(e.clone()),
                _ => Ok(current),
            };
        }
        let fetched = self.fetch_keys(&mut lookups);
        lookups.last_fetch = Some(Instant::now());
        lookups.last_error = fetched.as_ref().err().map(ToString::to_string);
        let keys = Arc::new(fetched.map_err(|e| e.to_string())?);
        *lock(&self.keys) = Arc::clone(&keys);
        Ok(keys)
    }

    fn fetch_keys(&self, lookups: &mut Lookups) -> Result<KeySet, FetchError> {
        let jwks_uri = match &self.settings.jwks_uri {
            Some(uri) => uri.clone(),
            None => self.discover(lookups)?.jwks_uri.ok_or_else(|| FetchError::Missing(self.settings.issuer.clone(), "jwks_uri"))?,
        };
        let document: JwksDocument = discovery::get_json(&self.agent, &jwks_uri)?;
        Ok(KeySet::from_document(document, Instant::now()))
    }

    fn discover(&self, lookups: &mut Lookups) -> Result<ServerMetadata, FetchError> {
        if let Some(metadata) = &lookups.metadata {
            return Ok(metadata.clone());
        }
        let metadata = discovery::server_metadata(&self.agent, &self.settings.issuer)?;
        lookups.metadata = Some(metadata.clone());
        Ok(metadata)
    }

    /// The authorization server's metadata, fetched if not yet known (and not tried within
    /// [`MIN_REFETCH`]).
    fn metadata(&self) -> Result<ServerMetadata, String> {
        let mut lookups = lock(&self.lookups);
        if lookups.metadata.is_none() && lookups.last_fetch.is_some_and(|at| at.elapsed() < MIN_REFETCH) {
            return Err(lookups.last_error.clone().unwrap_or_else(|| "the authorization server's metadata is not known yet".into()));
        }
        let found = self.discover(&mut lookups);
        if let Err(e) = &found {
            lookups.last_fetch = Some(Instant::now());
            lookups.last_error = Some(e.to_string());
        }
        found.map_err(|e| e.to_string())
    }

    fn introspect(&self, token: &str) -> Result<(Verified, Instant), Refusal> {
        let Some(credentials) = &self.settings.introspection else {
            return Err(Refusal::Invalid("not a JWT, and no introspection is configured".into()));
        };
        let endpoint =
            self.metadata().map_err(Refusal::Unavailable)?.introspection_endpoint.ok_or_else(|| {
                Refusal::Unavailable(FetchError::Missing(self.settings.issuer.clone(), "introspection_endpoint").to_string())
            })?;
        let form = [("token", token), ("token_type_hint", "access_token")];
        let basic = (credentials.client_id.as_str(), credentials.client_secret.as_str());
        let _slot = IntrospectionSlot::take(&self.introspecting)?;
        let answer: Introspection =
            discovery::post_form(&self.agent, &endpoint, Some(basic), &form).map_err(|e| Refusal::Unavailable(e.to_string()))?;
        answer.check(&self.settings)?;
        let until = Instant::now() + INTROSPECTION_CACHE;
        let until = answer.exp.map_or(until, |exp| until.min(instant_at(exp)));
        let iss = answer.iss.as_deref().unwrap_or(&self.settings.issuer);
        Ok((
            Verified { owner: principal(iss, answer.sub.as_deref(), answer.client_id.as_deref()), scopes: split_scopes(&answer.scope) },
            until,
        ))
    }
}

/// The claims of an access token the proxy reads (RFC 9068).
#[derive(Deserialize)]
struct Claims {
    // Optional here so that a token without them is refused as such (jsonwebtoken requires them by
    // `set_required_spec_claims` after reading the claims).
    iss: Option<String>,
    sub: Option<String>,
    client_id: Option<String>,
    /// OpenID Connect's "authorized party": the client, for servers that do not send `client_id`.
    azp: Option<String>,
    scope: Option<String>,
    /// Some servers (Azure AD, Okta) list scopes here instead.
    scp: Option<ScopeList>,
    exp: Option<u64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ScopeList {
    Spaced(String),
    Listed(Vec<String>),
}

impl Claims {
    fn client(&self) -> Option<&str> {
        self.client_id.as_deref().or(self.azp.as_deref())
    }

    fn scopes(&self) -> Vec<String> {
        let mut scopes = split_scopes(&self.scope);
        match &self.scp {
            Some(ScopeList::Spaced(spaced)) => scopes.extend(spaced.split_whitespace().map(str::to_owned)),
            Some(ScopeList::Listed(listed)) => scopes.extend(listed.iter().cloned()),
            None => {}
        }
        scopes
    }
}

/// An introspection answer (RFC 7662 section 2.2).
#[derive(Deserialize)]
struct Introspection {
    active: bool,
    iss: Option<String>,
    aud: Option<Audience>,
    exp: Option<u64>,
    sub: Option<String>,
    client_id: Option<String>,
    scope: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Introspection {
    /// An active token of this issuer for this resource, not past its expiry.
    fn check(&self, settings: &OAuthSettings) -> Result<(), Refusal> {
        let refused = |why: &str| Err(Refusal::Invalid(why.to_owned()));
        if !self.active {
            return refused("the authorization server says the token is not active (expired or revoked)");
        }
        if self.iss.as_ref().is_some_and(|iss| *iss != settings.issuer) {
            return refused("issued by another issuer");
        }
        let for_us = match &self.aud {
            Some(Audience::One(aud)) => *aud == settings.resource,
            Some(Audience::Many(auds)) => auds.contains(&settings.resource),
            None => false,
        };
        if !for_us {
            return refused("not made out to this resource (aud)");
        }
        if self.exp.is_some_and(|exp| exp.saturating_add(settings.leeway.as_secs()) <= unix_now()) {
            return refused("expired");
        }
        Ok(())
    }
}

/// One of at most [`MAX_INTROSPECTIONS`] introspections in flight, given back when dropped.
struct IntrospectionSlot<'a>(&'a AtomicUsize);

impl<'a> IntrospectionSlot<'a> {
    fn take(in_flight: &'a AtomicUsize) -> Result<IntrospectionSlot<'a>, Refusal> {
        if in_flight.fetch_add(1, Ordering::SeqCst) >= MAX_INTROSPECTIONS {
            in_flight.fetch_sub(1, Ordering::SeqCst);
            return Err(Refusal::Unavailable(format!("{MAX_INTROSPECTIONS} introspections are in flight already")));
        }
        Ok(IntrospectionSlot(in_flight))
    }
}

impl Drop for IntrospectionSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The characters of an RFC 6750 `b64token`.
fn is_token68(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~+/=".contains(&byte)
}

/// A compact JWS has three dot-separated parts; opaque tokens (base64url, hex) have no dots.
fn is_jwt(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}

fn split_scopes(scope: &Option<String>) -> Vec<String> {
    scope.as_deref().unwrap_or_default().split_whitespace().map(str::to_owned).collect()
}

/// The stable name of a token's holder: a hash, so logs and status pages do not carry user ids.
fn principal(issuer: &str, subject: Option<&str>, client: Option<&str>) -> String {
    let text = format!("{issuer}\0{}\0{}", subject.unwrap_or_default(), client.unwrap_or_default());
    format!("oauth:{}", super::short_hash(&text))
}

/// What jsonwebtoken's refusal means, in words a client's developer can act on.
fn describe(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "expired".into(),
        ErrorKind::ImmatureSignature => "not valid yet (nbf)".into(),
        ErrorKind::InvalidAudience => "not made out to this resource (aud)".into(),
        ErrorKind::InvalidIssuer => "issued by another issuer".into(),
        ErrorKind::InvalidSignature => "bad signature".into(),
        ErrorKind::InvalidAlgorithm => "the algorithm does not fit the key".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("no '{claim}' claim"),
        ErrorKind::Json(e) => format!("not made of the claims an access token has: {e}"),
        other => format!("refused: {other:?}"),
    }
}

/// Text safe inside a quoted-string of a header: no quotes, backslashes or control characters.
fn quotable(text: &str) -> String {
    let safe = |c: char| match c {
        '"' | '\\' => '\'',
        c if c.is_control() => ' ',
        c => c,
    };
    text.chars().map(safe).collect()
}

/// The guarded value even if another thread panicked holding the lock: every value here is whole
/// between statements.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

    const ISSUER: &str = "https://as.example";
    const RESOURCE: &str = "https://hub.lan/mcp";

    /// An authorization server's signing key, to make tokens as it would.
    struct Signer {
        pair: EcdsaKeyPair,
        kid: &'static str,
    }

    impl Signer {
        fn new(kid: &'static str) -> Signer {
            let rng = SystemRandom::new();
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
            Signer { pair: EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap(), kid }
        }

        fn jwk(&self) -> Value {
            let point = self.pair.public_key().as_ref(); // 0x04 | x | y
            json!({"kty": "EC", "crv": "P-256", "kid": self.kid, "use": "sig",
                   "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..])})
        }

        fn token_with_header(&self, header: Value, claims: Value) -> String {
            let message = format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
            let signature = self.pair.sign(&SystemRandom::new(), message.as_bytes()).unwrap();
            format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
        }

        fn token(&self, claims: Value) -> String {
            self.token_with_header(json!({"alg": "ES256", "typ": "at+jwt", "kid": self.kid}), claims)
        }
    }

    fn claims() -> Value {
        json!({"iss": ISSUER, "aud": RESOURCE, "sub": "alice", "client_id": "c1", "scope": "mcp:tools", "exp": unix_now() + 300})
    }

    fn with(mut claims: Value, changes: Value) -> Value {
        claims.as_object_mut().unwrap().extend(changes.as_object().unwrap().clone());
        claims
    }

    fn settings(scopes: &[&str]) -> OAuthSettings {
        OAuthSettings {
            issuer: ISSUER.into(),
            resource: RESOURCE.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            leeway: Duration::ZERO,
            jwks_uri: None,
            introspection: None,
        }
    }

    /// A resource server holding `signer`'s key as if just fetched; fetching again is not due.
    fn server(signer: &Signer, scopes: &[&str]) -> ResourceServer {
        let server = ResourceServer::new(settings(scopes));
        let document = serde_json::from_value(json!({ "keys": [signer.jwk()] })).unwrap();
        *lock(&server.keys) = Arc::new(KeySet::from_document(document, Instant::now()));
        lock(&server.lookups).last_fetch = Some(Instant::now());
        server
    }

    fn refusal(server: &ResourceServer, token: &str) -> String {
        match server.verify(token) {
            Err(Refusal::Invalid(why)) => why,
            other => panic!("expected an invalid token, got {other:?}"),
        }
    }

    #[test]
    fn a_token_signed_with_a_published_key_for_this_resource_is_accepted() {
        let signer = Signer::new("k1");
        let verified = server(&signer, &["mcp:tools"]).verify(&signer.token(claims())).unwrap();
        assert!(verified.owner.starts_with("oauth:") && verified.owner.len() == 22, "{}", verified.owner);
        assert_eq!(verified.scopes, ["mcp:tools"]);
    }

    #[test]
    fn a_token_for_another_resource_is_refused() {
        let signer = Signer::new("k1");
        let token = signer.token(with(claims(), json!({"aud": "https://other.example/mcp"})));
        assert_eq!(refusal(&server(&signer, &[]), &token), "not made out to this resource (aud)");
    }

    #[test]
    fn a_token_from_another_issuer_is_refused() {
        let signer = Signer::new("k1");
        let token = signer.token(with(claims(), json!({"iss": "https://evil.example"})));
        assert_eq!(refusal(&server(&signer, &[]), &token), "issued by another issuer");
    }

    #[test]
    fn an_expired_token_is_refused() {
        let signer = Signer::new("k1");
        let token = signer.token(with(claims(), json!({"exp": unix_now() - 5})));
        assert_eq!(refusal(&server(&signer, &[]), &token), "expired");
    }

    #[test]
    fn a_token_not_valid_yet_is_refused() {
        let signer = Signer::new("k1");
        let token = signer.token(with(claims(), json!({"nbf": unix_now() + 60})));
        assert_eq!(refusal(&server(&signer, &[]), &token), "not valid yet (nbf)");
    }

    #[test]
    fn a_token_whose_expiry_is_not_a_number_is_refused() {
        // CVE-2026-25537: jsonwebtoken < 10.3 took a malformed exp for no exp at all.
        let signer = Signer::new("k1");
        let token = signer.token(with(claims(), json!({"exp": "tomorrow"})));
        assert!(refusal(&server(&signer, &[]), &token).starts_with("not made of the claims"));
    }

    #[test]
    fn a_token_without_an_expiry_or_audience_is_refused() {
        let signer = Signer::new("k1");
        let mut no_exp = claims();
        no_exp.as_object_mut().unwrap().remove("exp");
        assert_eq!(refusal(&server(&signer, &[]), &signer.token(no_exp)), "no 'exp' claim");
        let mut no_aud = claims();
        no_aud.as_object_mut().unwrap().remove("aud");
        assert_eq!(refusal(&server(&signer, &[]), &signer.token(no_aud)), "no 'aud' claim");
    }

    #[test]
    fn a_token_without_a_kid_is_checked_with_every_key_of_its_algorithm() {
        let (first, second, stranger) = (Signer::new("k1"), Signer::new("k2"), Signer::new("k3"));
        let server = server(&first, &[]);
        let document = serde_json::from_value(json!({ "keys": [first.jwk(), second.jwk()] })).unwrap();
        *lock(&server.keys) = Arc::new(KeySet::from_document(document, Instant::now()));
        let no_kid = json!({"alg": "ES256", "typ": "at+jwt"});
        assert!(server.verify(&second.token_with_header(no_kid.clone(), claims())).is_ok(), "the second key signed it");
        assert_eq!(refusal(&server, &stranger.token_with_header(no_kid, claims())), "bad signature");
    }

    #[test]
    fn a_tampered_token_is_refused() {
        let signer = Signer::new("k1");
        let token = signer.token(claims());
        let (message, signature) = token.rsplit_once('.').unwrap();
        let (header, _) = message.split_once('.').unwrap();
        let forged = URL_SAFE_NO_PAD.encode(with(claims(), json!({"sub": "root"})).to_string());
        assert_eq!(refusal(&server(&signer, &[]), &format!("{header}.{forged}.{signature}")), "bad signature");
    }

    #[test]
    fn a_token_signed_by_another_key_under_a_published_kid_is_refused() {
        let (published, impostor) = (Signer::new("k1"), Signer::new("k1"));
        assert_eq!(refusal(&server(&published, &[]), &impostor.token(claims())), "bad signature");
    }

    #[test]
    fn a_token_naming_an_unpublished_key_is_refused_without_fetching_again_at_once() {
        let (published, other) = (Signer::new("k1"), Signer::new("k2"));
        let why = refusal(&server(&published, &[]), &other.token(claims()));
        assert_eq!(why, "signed with a key the authorization server does not publish");
    }

    #[test]
    fn unsigned_and_shared_secret_tokens_are_refused() {
        let signer = Signer::new("k1");
        let server = server(&signer, &[]);
        let body = URL_SAFE_NO_PAD.encode(claims().to_string());
        let none = format!("{}.{body}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#));
        assert!(refusal(&server, &none).starts_with("not a readable JWT"));
        // HS256 "signed" with the public key as the secret: the classic confusion attack.
        let hs256 = signer.token_with_header(json!({"alg": "HS256", "kid": "k1"}), claims());
        assert_eq!(refusal(&server, &hs256), "signed with HS256: only public-key signatures are accepted");
    }

    #[test]
    fn a_jwt_of_another_type_is_not_an_access_token() {
        let signer = Signer::new("k1");
        let token = signer.token_with_header(json!({"alg": "ES256", "typ": "logout+jwt", "kid": "k1"}), claims());
        assert_eq!(refusal(&server(&signer, &[]), &token), "a JWT of type 'logout+jwt' is not an access token");
    }

    #[test]
    fn a_token_without_a_needed_scope_is_refused_as_insufficient() {
        let signer = Signer::new("k1");
        let server = server(&signer, &["mcp:tools", "mcp:admin"]);
        assert_eq!(server.verify(&signer.token(claims())).unwrap_err(), Refusal::InsufficientScope);
        let listed = signer.token(with(claims(), json!({"scope": null, "scp": ["mcp:admin", "mcp:tools"]})));
        assert!(server.verify(&listed).is_ok(), "scopes listed in scp count");
    }

    #[test]
    fn a_refreshed_token_of_the_same_user_and_client_has_the_same_owner() {
        let signer = Signer::new("k1");
        let server = server(&signer, &[]);
        let first = server.verify(&signer.token(claims())).unwrap().owner;
        let refreshed = server.verify(&signer.token(with(claims(), json!({"exp": unix_now() + 600})))).unwrap().owner;
        let other_client = server.verify(&signer.token(with(claims(), json!({"client_id": "c2"})))).unwrap().owner;
        assert_eq!(first, refreshed);
        assert_ne!(first, other_client);
    }

    #[test]
    fn an_accepted_token_is_not_checked_again_while_it_is_good() {
        let signer = Signer::new("k1");
        let server = server(&signer, &[]);
        let token = signer.token(claims());
        server.verify(&token).unwrap();
        *lock(&server.keys) = Arc::new(KeySet::empty());
        assert!(server.verify(&token).is_ok(), "remembered");
        assert!(server.verify(&signer.token(with(claims(), json!({"sub": "bob"})))).is_err(), "a new token is checked");
    }

    #[test]
    fn a_refused_token_stays_refused_without_being_checked_again() {
        let signer = Signer::new("k1");
        let server = server(&signer, &[]);
        let forged = signer.token(with(claims(), json!({"aud": "https://other.example/mcp"})));
        assert_eq!(refusal(&server, &forged), "not made out to this resource (aud)");
        *lock(&server.keys) = Arc::new(KeySet::empty()); // a second check would now say something else
        assert_eq!(refusal(&server, &forged), "not made out to this resource (aud)", "the refusal is remembered");
    }

    #[test]
    fn what_is_not_a_bearer_token_is_refused_unread() {
        let server = server(&Signer::new("k1"), &[]);
        assert!(refusal(&server, "a b").starts_with("not a bearer token"));
        assert!(refusal(&server, &"x".repeat(MAX_TOKEN + 1)).starts_with("not a bearer token"));
    }

    #[test]
    fn a_token_expiring_in_the_far_future_is_remembered_without_overflowing_the_clock() {
        let signer = Signer::new("k1");
        let token = signer.token(with(claims(), json!({"exp": u64::MAX / 2})));
        assert!(server(&signer, &[]).verify(&token).is_ok());
    }

    #[test]
    fn introspections_in_flight_are_bounded() {
        let in_flight = AtomicUsize::new(0);
        let slots: Vec<_> = (0..MAX_INTROSPECTIONS).map(|_| IntrospectionSlot::take(&in_flight).unwrap()).collect();
        assert!(matches!(IntrospectionSlot::take(&in_flight), Err(Refusal::Unavailable(_))));
        drop(slots);
        assert!(IntrospectionSlot::take(&in_flight).is_ok(), "slots are given back");
    }

    #[test]
    fn an_opaque_token_is_refused_without_introspection() {
        let signer = Signer::new("k1");
        assert_eq!(refusal(&server(&signer, &[]), "3q2-7w"), "not a JWT, and no introspection is configured");
    }

    #[test]
    fn the_metadata_url_puts_the_well_known_path_before_the_resource_path() {
        let server = ResourceServer::new(settings(&[]));
        assert_eq!(server.metadata_url(), "https://hub.lan/.well-known/oauth-protected-resource/mcp");
        let root = ResourceServer::new(OAuthSettings { resource: "https://hub.lan:8443".into(), ..settings(&[]) });
        assert_eq!(root.metadata_url(), "https://hub.lan:8443/.well-known/oauth-protected-resource");
    }

    #[test]
    fn the_metadata_document_names_the_resource_its_issuer_and_scopes() {
        let document = ResourceServer::new(settings(&["mcp:tools"])).metadata_document();
        assert_eq!(document["resource"], RESOURCE);
        assert_eq!(document["authorization_servers"], json!([ISSUER]));
        assert_eq!(document["scopes_supported"], json!(["mcp:tools"]));
        assert!(ResourceServer::new(settings(&[])).metadata_document().get("scopes_supported").is_none());
    }

    #[test]
    fn challenges_name_the_metadata_and_say_what_was_wrong() {
        let server = ResourceServer::new(settings(&["mcp:tools"]));
        let metadata = "resource_metadata=\"https://hub.lan/.well-known/oauth-protected-resource/mcp\"";
        assert_eq!(server.challenge(None), format!("Bearer {metadata}, scope=\"mcp:tools\""));
        let invalid = server.challenge(Some(&Refusal::Invalid("a \"bad\"\nthing".into())));
        assert_eq!(invalid, format!("Bearer error=\"invalid_token\", error_description=\"a 'bad' thing\", {metadata}"));
        let scope = server.challenge(Some(&Refusal::InsufficientScope));
        assert_eq!(scope, format!("Bearer error=\"insufficient_scope\", scope=\"mcp:tools\", {metadata}"));
    }

    fn introspection(answer: Value) -> Result<(), Refusal> {
        serde_json::from_value::<Introspection>(answer).unwrap().check(&settings(&[]))
    }

    #[test]
    fn an_introspected_token_must_be_active_ours_and_for_this_resource() {
        let good = json!({"active": true, "iss": ISSUER, "aud": [RESOURCE, "x"], "exp": unix_now() + 60});
        assert_eq!(introspection(good.clone()), Ok(()));
        let refused = |changes: Value| match introspection(with(good.clone(), changes)) {
            Err(Refusal::Invalid(why)) => why,
            other => panic!("{other:?}"),
        };
        assert!(refused(json!({"active": false})).contains("not active"));
        assert_eq!(refused(json!({"iss": "https://evil.example"})), "issued by another issuer");
        assert_eq!(refused(json!({"aud": "https://other.example"})), "not made out to this resource (aud)");
        assert_eq!(refused(json!({"aud": null})), "not made out to this resource (aud)");
        assert_eq!(refused(json!({"exp": unix_now() - 1})), "expired");
    }
}
