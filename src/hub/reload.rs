//! Applying a new configuration to a running dispatcher, server by server.
//!
//! Servers are matched by key: an unchanged server is left alone (its sessions and in-flight calls go
//! on), a changed one is stopped and started again, a new one is started and a removed one stopped.
//! Slots are never reused for another key, so a `BackendId` always means the same server.

use super::backends::{Backend, State};
use super::{catalog, BackendId, Hub};
use crate::config::ServerConfig;
use std::time::{Duration, Instant};

/// How long a stopped backend has to exit after SIGTERM before SIGKILL.
const RETIRE_GRACE: Duration = Duration::from_secs(3);

impl Hub {
    pub(super) fn apply_reload(&mut self, servers: Vec<ServerConfig>, overrides: catalog::Overrides) {
        if self.stopping.is_some() {
            return;
        }
        let (mut added, mut changed, mut removed) = (Vec::new(), Vec::new(), Vec::new());
        for index in 0..self.backends.len() {
            let b = &self.backends[index];
            if b.state != State::Removed && !servers.iter().any(|s| s.key == b.config.key) {
                removed.push(b.config.key.clone());
                self.retire(BackendId(index), "removed from the configuration");
                self.backends[index].state = State::Removed;
            }
        }
        for server in servers {
            match self.backends.iter().position(|b| b.config.key == server.key) {
                Some(index) if self.backends[index].config == server && self.backends[index].state != State::Removed => {}
                Some(index) => {
                    changed.push(server.key.clone());
                    self.retire(BackendId(index), "its configuration changed");
                    self.backends[index].reset(server);
                    self.start_if_active(BackendId(index));
                }
                None => {
                    added.push(server.key.clone());
                    self.backends.push(Backend::new(server));
                    self.start_if_active(BackendId(self.backends.len() - 1));
                }
            }
        }
        let overrides_changed = self.overrides != overrides;
        self.overrides = overrides;
        log::info!(
            "configuration reloaded: added {added:?}, changed {changed:?}, removed {removed:?}{}",
            if overrides_changed { ", tool overrides changed" } else { "" }
        );
        self.refresh_catalog();
    }

    /// Stops a backend's connection for good and fails what was waiting on it.
    fn retire(&mut self, backend: BackendId, why: &str) {
        let key = self.backend_key(backend).to_owned();
        if let Some(mut connection) = self.backends[backend.0].connection.take() {
            log::info!("[{key}] stopping: {why}");
            connection.close_input();
            connection.terminate();
            let generation = self.backends[backend.0].generation;
            let kill_at = Some(Instant::now() + RETIRE_GRACE);
            self.retiring.push(super::Retiring { backend, generation, connection, kill_at });
        }
        self.backends[backend.0].restart_at = None;
        self.abandon_backend_requests(backend, &format!("server '{key}' was stopped: {why}"));
        self.backends[backend.0].state = State::Disabled;
    }

    /// Escalates to SIGKILL for stopped backends that outlived their grace period.
    pub(super) fn kill_overdue(&mut self, now: Instant) {
        for retiring in self.retiring.iter_mut().filter(|r| r.kill_at.is_some_and(|at| at <= now)) {
            retiring.connection.kill();
            retiring.kill_at = None;
        }
    }

    fn start_if_active(&mut self, backend: BackendId) {
        if self.backends[backend.0].config.active {
            self.start_backend(backend);
        }
    }
}
