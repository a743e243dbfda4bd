//! Resource subscriptions: which clients asked to hear about which URI.
//!
//! Several clients may subscribe to one URI while the backend is subscribed once: by the first client,
//! and unsubscribed after the last. Pure state; `client_messages.rs` talks to the backends.

use crate::event::ClientId;
use std::collections::HashMap;

#[derive(Default)]
pub(super) struct Subscriptions {
    by_uri: HashMap<String, Vec<ClientId>>,
}

impl Subscriptions {
    /// Adds a subscriber; true when it is the URI's first, so the backend must be subscribed.
    pub fn add(&mut self, uri: &str, client: ClientId) -> bool {
        let subscribers = self.by_uri.entry(uri.to_owned()).or_default();
        let first = subscribers.is_empty();
        if !subscribers.contains(&client) {
            subscribers.push(client);
        }
        first
    }

    /// Removes a subscriber; true when it was the URI's last, so the backend must be unsubscribed.
    pub fn remove(&mut self, uri: &str, client: ClientId) -> bool {
        let Some(subscribers) = self.by_uri.get_mut(uri) else { return false };
        subscribers.retain(|c| *c != client);
        let last = subscribers.is_empty();
        if last {
            self.by_uri.remove(uri);
        }
        last
    }

    /// Removes a client everywhere; returns the URIs it was the last subscriber of.
    pub fn remove_client(&mut self, client: ClientId) -> Vec<String> {
        let mut emptied = Vec::new();
        self.by_uri.retain(|uri, subscribers| {
            subscribers.retain(|c| *c != client);
            if subscribers.is_empty() {
                emptied.push(uri.clone());
            }
            !subscribers.is_empty()
        });
        emptied
    }

    pub fn subscribers(&self, uri: &str) -> &[ClientId] {
        self.by_uri.get(uri).map_or(&[], Vec::as_slice)
    }

    pub fn uris(&self) -> impl Iterator<Item = &str> {
        self.by_uri.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ClientId = ClientId(1);
    const B: ClientId = ClientId(2);

    #[test]
    fn only_the_first_subscriber_subscribes_the_backend() {
        let mut s = Subscriptions::default();
        assert!(s.add("x://1", A));
        assert!(!s.add("x://1", B));
        assert!(!s.add("x://1", A));
        assert_eq!(s.subscribers("x://1"), [A, B]);
    }

    #[test]
    fn only_the_last_subscriber_unsubscribes_the_backend() {
        let mut s = Subscriptions::default();
        s.add("x://1", A);
        s.add("x://1", B);
        assert!(!s.remove("x://1", A));
        assert!(s.remove("x://1", B));
        assert!(!s.remove("x://1", B));
    }

    #[test]
    fn a_client_that_leaves_gives_up_the_uris_it_alone_held() {
        let mut s = Subscriptions::default();
        s.add("x://1", A);
        s.add("x://2", A);
        s.add("x://2", B);
        assert_eq!(s.remove_client(A), ["x://1"]);
        assert_eq!(s.subscribers("x://2"), [B]);
    }
}
