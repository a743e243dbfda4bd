//! Applying a new configuration to a running dispatcher, server by server.
//!
//! Servers are matched by key: an unchanged server is left alone (its sessions and in-flight calls go
//! on), a changed one is stopped and started again, a new one is started and a removed one stopped; a
//! changed or removed server's per-client instances are stopped with it.
//! Slots are never reused for another key, so a `BackendId` always means the same server.

use super::backends::State;
use super::{Hub, Served};
use crate::event::BackendId;

impl Hub {
    pub(super) fn apply_reload(&mut self, served: Served) {
        if self.shutdown.is_stopping() {
            return;
        }
        let Served { servers, profiles, overrides } = served;
        let profiles_changed = self.views.set_profiles(profiles);
        let (mut added, mut changed, mut removed) = (Vec::new(), Vec::new(), Vec::new());
        let gone: Vec<BackendId> = self
            .backends
            .iter()
            .filter(|(_, b)| b.state != State::Removed && !servers.iter().any(|s| s.key == b.config.key))
            .map(|(id, _)| id)
            .collect();
        for id in gone {
            removed.push(self.backends.key(id).to_owned());
            self.stop_instances_of_server(id, "removed from the configuration");
            self.retire(id, "removed from the configuration");
            if let Some(b) = self.backends.get_mut(id) {
                b.state = State::Removed;
            }
        }
        for server in servers {
            match self.backends.find(&server.key) {
                Some(id) if self.backends.get(id).is_some_and(|b| b.config == server && b.state != State::Removed) => {}
                Some(id) => {
                    changed.push(server.key.clone());
                    self.stop_instances_of_server(id, "its configuration changed");
                    self.retire(id, "its configuration changed");
                    if let Some(b) = self.backends.get_mut(id) {
                        b.reset(server);
                    }
                    self.start_if_active(id);
                }
                None => {
                    added.push(server.key.clone());
                    let id = self.backends.add(server);
                    self.start_if_active(id);
                }
            }
        }
        let overrides_changed = self.overrides != overrides;
        self.overrides = overrides;
        log::info!(
            "configuration reloaded: added {added:?}, changed {changed:?}, removed {removed:?}{}{}",
            if overrides_changed { ", tool overrides changed" } else { "" },
            if profiles_changed { ", profiles changed" } else { "" }
        );
        self.refresh_catalog();
    }

    /// Stops a backend's connection for good and fails what was waiting on it.
    pub(super) fn retire(&mut self, backend: BackendId, why: &str) {
        let key = self.backends.key(backend).to_owned();
        let Some(b) = self.backends.get_mut(backend) else { return };
        b.restart_at = None;
        b.state = State::Disabled;
        if let Some(mut connection) = b.connection.take() {
            log::info!("[{key}] stopping: {why}");
            connection.close_input();
            connection.terminate();
            self.shutdown.retire(backend, b.generation, connection);
        }
        self.abandon_backend_requests(backend, &format!("server '{key}' was stopped: {why}"));
        self.modern_tasks.forget_backend(backend);
    }

    fn start_if_active(&mut self, backend: BackendId) {
        if self.backends.get(backend).is_some_and(|b| b.config.active) {
            self.start_backend(backend);
        }
    }
}
