//! Tokens already checked, so a client sending the same access token on every request (sessionless
//! 2026-07-28 clients do) pays for one signature check or introspection, not one per request; and
//! tokens already refused, so one sending the same bad token again and again costs no more.
//!
//! Keyed by the token's SHA-256, so the cache holds no usable token. Each entry lasts until its own
//! deadline (an accepted token's expiry; for introspected ones sooner, so a revocation is seen).
//! Bounded: when full, expired entries go, and if none had expired, everything does.

use std::collections::HashMap;
use std::time::Instant;

/// Entries at most; an entry is ~200 bytes.
const CAPACITY: usize = 4096;

pub type TokenHash = [u8; 32];

pub struct TokenCache<V> {
    entries: HashMap<TokenHash, (V, Instant)>,
}

impl<V> Default for TokenCache<V> {
    fn default() -> Self {
        TokenCache { entries: HashMap::new() }
    }
}

pub fn hash(token: &str) -> TokenHash {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut hash = [0u8; 32];
    hash.copy_from_slice(digest.as_ref());
    hash
}

impl<V: Clone> TokenCache<V> {
    /// What was found when the token was checked, if that is still good at `now`.
    pub fn get(&mut self, token: &TokenHash, now: Instant) -> Option<V> {
        match self.entries.get(token) {
            Some((verified, until)) if *until > now => Some(verified.clone()),
            Some(_) => {
                self.entries.remove(token);
                None
            }
            None => None,
        }
    }

    pub fn insert(&mut self, token: TokenHash, verified: V, until: Instant, now: Instant) {
        if self.entries.len() >= CAPACITY {
            self.entries.retain(|_, (_, until)| *until > now);
            if self.entries.len() >= CAPACITY {
                self.entries.clear();
            }
        }
        self.entries.insert(token, (verified, until));
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::Verified;
    use std::time::Duration;

    fn verified(owner: &str) -> Verified {
        Verified { owner: owner.to_owned(), scopes: vec![] }
    }

    #[test]
    fn an_entry_is_found_until_its_deadline() {
        let (mut cache, now) = (TokenCache::<Verified>::default(), Instant::now());
        cache.insert(hash("t"), verified("a"), now + Duration::from_secs(5), now);
        assert_eq!(cache.get(&hash("t"), now).map(|v| v.owner), Some("a".to_owned()));
        assert!(cache.get(&hash("u"), now).is_none());
        assert!(cache.get(&hash("t"), now + Duration::from_secs(5)).is_none());
        assert_eq!(cache.len(), 0, "an expired entry is dropped when found");
    }

    #[test]
    fn a_full_cache_drops_expired_entries_first_and_else_everything() {
        let (mut cache, now) = (TokenCache::<Verified>::default(), Instant::now());
        let later = now + Duration::from_secs(60);
        cache.insert(hash("soon"), verified("s"), now + Duration::from_secs(1), now);
        for i in 1..CAPACITY {
            cache.insert(hash(&i.to_string()), verified("x"), later, now);
        }
        cache.insert(hash("new"), verified("n"), later, now + Duration::from_secs(2));
        assert_eq!(cache.len(), CAPACITY, "only the expired entry made room");
        cache.insert(hash("newer"), verified("n"), later, now + Duration::from_secs(2));
        assert_eq!(cache.len(), 1, "nothing had expired: all went");
    }
}
