//! The authorization server's signing keys (its JWKS), as the resource server holds them: parsed once
//! per fetch, looked up by `kid` and algorithm for each token.
//!
//! Keys in the set that cannot check an access token are left out here: encryption keys (`use: enc`),
//! HMAC secrets, and key types jsonwebtoken does not know. A key that names its `alg` checks only
//! tokens signed with that algorithm.

use super::jwt_ring;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use std::time::Instant;

/// One fetch of the key set.
pub struct KeySet {
    keys: Vec<SigningKey>,
    /// When it was fetched; `None` for the empty set held before the first fetch.
    pub fetched: Option<Instant>,
}

struct SigningKey {
    kid: Option<String>,
    alg: Option<Algorithm>,
    key: DecodingKey,
}

/// A JWKS document with each key kept raw, so one unusable key does not spoil the others.
#[derive(Deserialize)]
pub struct JwksDocument {
    keys: Vec<serde_json::Value>,
}

impl KeySet {
    /// The set held before the first fetch: it finds nothing.
    pub fn empty() -> KeySet {
        KeySet { keys: Vec::new(), fetched: None }
    }

    /// The usable keys of a fetched document.
    pub fn from_document(document: JwksDocument, fetched: Instant) -> KeySet {
        let keys =
            document.keys.into_iter().filter_map(|value| serde_json::from_value::<Jwk>(value).ok()).filter_map(signing_key).collect();
        KeySet { keys, fetched: Some(fetched) }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys that may have signed a token with `alg` whose header names `kid`: the one with that
    /// id, or, with no key id (servers with one key often leave it out), every key that fits the
    /// algorithm.
    pub fn candidates(&self, kid: Option<&str>, alg: Algorithm) -> Vec<&DecodingKey> {
        let fits = |k: &&SigningKey| {
            let kid_matches = kid.is_none_or(|kid| k.kid.as_deref() == Some(kid));
            kid_matches && k.alg.is_none_or(|a| a == alg) && k.key.family() == alg.family()
        };
        self.keys.iter().filter(fits).map(|k| &k.key).collect()
    }

    /// The first of [`KeySet::candidates`].
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<&DecodingKey> {
        self.candidates(kid, alg).into_iter().next()
    }
}

fn signing_key(jwk: Jwk) -> Option<SigningKey> {
    if jwk.common.public_key_use.as_ref().is_some_and(|u| *u != jsonwebtoken::jwk::PublicKeyUse::Signature) {
        return None;
    }
    let alg = match jwk.common.key_algorithm {
        Some(named) => Some(Algorithm::try_from(named).ok()?),
        None => None,
    };
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    if alg.is_some_and(|a| !jwt_ring::is_public_key_algorithm(a)) || key.family() == jsonwebtoken::AlgorithmFamily::Hmac {
        return None;
    }
    Some(SigningKey { kid: jwk.common.key_id, alg, key })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // A P-256 public key (the x and y of any valid point do; these are from RFC 7517 appendix A.1).
    fn ec_key(extra: serde_json::Value) -> serde_json::Value {
        let mut key = json!({"kty": "EC", "crv": "P-256",
            "x": "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4", "y": "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"});
        key.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        key
    }

    fn set(keys: Vec<serde_json::Value>) -> KeySet {
        KeySet::from_document(serde_json::from_value(json!({ "keys": keys })).unwrap(), Instant::now())
    }

    #[test]
    fn a_key_is_found_by_its_kid_and_algorithm_family() {
        let keys = set(vec![ec_key(json!({"kid": "a"})), ec_key(json!({"kid": "b"}))]);
        assert!(keys.find(Some("b"), Algorithm::ES256).is_some());
        assert!(keys.find(Some("c"), Algorithm::ES256).is_none());
        assert!(keys.find(Some("a"), Algorithm::RS256).is_none(), "an EC key never checks an RSA signature");
    }

    #[test]
    fn a_key_that_names_its_algorithm_checks_only_that_one() {
        let keys = set(vec![ec_key(json!({"kid": "a", "alg": "ES256"}))]);
        assert!(keys.find(Some("a"), Algorithm::ES384).is_none());
        assert!(keys.find(None, Algorithm::ES256).is_some());
    }

    #[test]
    fn encryption_keys_hmac_secrets_and_unknown_keys_are_left_out() {
        let keys = set(vec![
            ec_key(json!({"kid": "enc", "use": "enc"})),
            json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}),
            json!({"kty": "EC", "crv": "P-521", "kid": "odd", "x": "AA", "y": "AA", "alg": "ES512"}),
            json!("not a key"),
            ec_key(json!({"kid": "sig", "use": "sig"})),
        ]);
        assert_eq!(keys.len(), 1);
        assert!(keys.find(Some("sig"), Algorithm::ES256).is_some());
        assert!(keys.find(Some("hmac"), Algorithm::HS256).is_none());
    }
}
