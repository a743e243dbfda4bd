//! Per-client instances of isolated servers (`"isolation": "session"`): which instance serves which
//! client, the requests that wait for an instance to be ready, and when each was last used.
//!
//! Pure state. An instance is a [`Backend`] record like any other (connection, state, handshake),
//! reached through `Backends` by its own [`BackendId`], so routing, timeouts and supervision need
//! nothing new; what makes it an instance is its [`Instance`] part. Instance ids come from a range of
//! their own and are never reused, so a stopped instance's late events match nothing. The flows live
//! in `isolation.rs`.

use super::backends::Backend;
use super::numbered::NumberedMap;
use crate::event::{BackendId, Caller, ClientId};
use crate::jsonrpc::Params;
use serde_json::value::RawValue;
use std::time::{Duration, Instant};

/// The first instance id: far above any server slot, and within a 32-bit `usize`.
const FIRST_ID: usize = 1 << 30;

/// What makes a backend record an instance: whose it is and of which server.
#[derive(Debug)]
pub(super) struct Instance {
    /// The server (its record is the template that gives the catalog).
    pub server: BackendId,
    /// The client session it serves, and no other.
    pub owner: ClientId,
    pub created: Instant,
    /// Its last request, or answer.
    pub last_used: Instant,
    pub idle_timeout: Duration,
    /// Requests that wait for it to finish its handshake.
    pub waiting: Vec<Waiting>,
}

/// A client's request for an instance that is still starting, as it is to be sent.
#[derive(Debug)]
pub(super) struct Waiting {
    pub caller: Caller,
    pub method: String,
    pub params: Params,
    /// The backend's own name for the tool, for a `tools/call`.
    pub name: Option<Box<RawValue>>,
    /// For a tool call: its attempt, so it is kept for a retry once sent.
    pub attempt: Option<u32>,
}

#[derive(Default)]
pub(super) struct Instances {
    by_id: NumberedMap<BackendId, Backend>,
    /// (server, client) to the client's instance of that server.
    of: NumberedMap<(BackendId, ClientId), BackendId>,
    /// Instances handed out so far.
    issued: usize,
    /// Instances refused by a server's `maxInstances`, since start.
    refused: u64,
}

impl Instances {
    pub fn is_instance(id: BackendId) -> bool {
        id.0 >= FIRST_ID
    }

    pub fn get(&self, id: BackendId) -> Option<&Backend> {
        self.by_id.get(&id)
    }

    pub fn get_mut(&mut self, id: BackendId) -> Option<&mut Backend> {
        self.by_id.get_mut(&id)
    }

    /// Adds the record of a new instance; its id.
    pub fn add(&mut self, backend: Backend) -> BackendId {
        let id = BackendId(FIRST_ID + self.issued % FIRST_ID);
        self.issued += 1;
        if let Some(instance) = &backend.instance {
            self.of.insert((instance.server, instance.owner), id);
        }
        self.by_id.insert(id, backend);
        id
    }

    pub fn remove(&mut self, id: BackendId) -> Option<Backend> {
        let backend = self.by_id.remove(&id)?;
        if let Some(instance) = &backend.instance {
            self.of.remove(&(instance.server, instance.owner));
        }
        Some(backend)
    }

    /// The client's instance of a server, if it has one.
    pub fn find(&self, server: BackendId, client: ClientId) -> Option<BackendId> {
        self.of.get(&(server, client)).copied()
    }

    /// Every instance a client has.
    pub fn of_client(&self, client: ClientId) -> Vec<BackendId> {
        self.of.iter().filter(|((_, owner), _)| *owner == client).map(|(_, id)| *id).collect()
    }

    /// Every instance of a server, oldest first.
    pub fn of_server(&self, server: BackendId) -> Vec<(BackendId, &Backend)> {
        let mut instances: Vec<(BackendId, &Backend)> =
            self.iter().filter(|(_, b)| b.instance.as_ref().is_some_and(|i| i.server == server)).collect();
        instances.sort_by_key(|(id, _)| *id);
        instances
    }

    pub fn iter(&self) -> impl Iterator<Item = (BackendId, &Backend)> {
        self.by_id.iter().map(|(id, b)| (*id, b))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Backend> {
        self.by_id.values_mut()
    }

    /// Counts one more instance refused by a limit; the count so far.
    pub fn refused(&mut self) -> u64 {
        self.refused += 1;
        self.refused
    }

    /// When the next instance may have been idle long enough to be stopped.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.by_id.values().filter_map(|b| b.instance.as_ref()).map(|i| i.last_used + i.idle_timeout).min()
    }

    /// The instances idle for their timeout at `now` (whether they have work left is for the caller).
    pub fn expired(&self, now: Instant) -> Vec<BackendId> {
        let expired = |i: &Instance| now.duration_since(i.last_used) >= i.idle_timeout;
        self.iter().filter(|(_, b)| b.instance.as_ref().is_some_and(expired)).map(|(id, _)| id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServerConfig;

    fn record(server: usize, owner: u64) -> Backend {
        let text = r#"{"mcpServers": {"s": {"command": "x", "isolation": "session"}}}"#;
        let config: ServerConfig = crate::config::parse(text, std::path::Path::new("t.json"), &|_| None).unwrap().servers.remove(0);
        Backend::instance(config, BackendId(server), ClientId(owner))
    }

    #[test]
    fn an_instance_is_found_by_server_and_client_until_removed() {
        let mut instances = Instances::default();
        let a = instances.add(record(0, 1));
        let b = instances.add(record(0, 2));
        assert!(Instances::is_instance(a) && a != b);
        assert_eq!(instances.find(BackendId(0), ClientId(1)), Some(a));
        assert_eq!(instances.find(BackendId(1), ClientId(1)), None);
        assert_eq!(instances.of_client(ClientId(2)), [b]);
        assert_eq!(instances.of_server(BackendId(0)).len(), 2);
        assert!(instances.remove(a).is_some());
        assert_eq!(instances.find(BackendId(0), ClientId(1)), None);
        assert!(instances.get(a).is_none());
    }

    #[test]
    fn instance_ids_are_not_reused() {
        let mut instances = Instances::default();
        let a = instances.add(record(0, 1));
        instances.remove(a);
        assert_ne!(instances.add(record(0, 1)), a);
    }

    #[test]
    fn an_instance_expires_after_its_idle_timeout() {
        let mut instances = Instances::default();
        let a = instances.add(record(0, 1));
        let used = instances.get(a).and_then(|b| b.instance.as_ref()).map(|i| i.last_used).unwrap();
        assert!(instances.expired(used).is_empty());
        assert_eq!(instances.next_expiry(), Some(used + crate::config::DEFAULT_INSTANCE_IDLE));
        assert_eq!(instances.expired(used + crate::config::DEFAULT_INSTANCE_IDLE), [a]);
    }
}
