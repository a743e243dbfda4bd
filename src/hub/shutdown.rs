//! Stopping backends: the steps of a clean shutdown, and the connections a reload stopped, kept until
//! they have exited so that SIGKILL can follow SIGTERM and no child outlives the proxy.
//!
//! A shutdown lets requests in flight finish (up to the grace time), then closes every backend's input,
//! then sends SIGTERM, then SIGKILL, then gives up waiting.

use super::Hub;
use crate::backend::Connection;
use crate::event::BackendId;
use crate::jsonrpc::code;
use std::time::{Duration, Instant};

/// How long a connection stopped by a reload has to exit after SIGTERM before SIGKILL.
const RETIRE_GRACE: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Draining,
    ClosingInput,
    Terminating,
    Killing,
}

/// A connection stopped by a reload, kept until it has exited.
struct Retiring {
    backend: BackendId,
    generation: u64,
    connection: Connection,
    /// When to send SIGKILL; `None` once sent.
    kill_at: Option<Instant>,
}

#[derive(Default)]
pub(super) struct Shutdown {
    /// The step a shutdown is at, and when the next one is due; `None` while running normally.
    step: Option<(Phase, Instant)>,
    retiring: Vec<Retiring>,
}

impl Shutdown {
    pub fn is_stopping(&self) -> bool {
        self.step.is_some()
    }

    /// Keeps a stopped connection (already told to exit) until it reports its exit.
    pub fn retire(&mut self, backend: BackendId, generation: u64, connection: Connection) {
        self.retiring.push(Retiring { backend, generation, connection, kill_at: Some(Instant::now() + RETIRE_GRACE) });
    }

    /// A retired connection has exited; true when it was one.
    pub fn retired_exited(&mut self, backend: BackendId, generation: u64) -> bool {
        let before = self.retiring.len();
        self.retiring.retain(|r| (r.backend, r.generation) != (backend, generation));
        self.retiring.len() < before
    }

    /// Escalates to SIGKILL for retired connections that outlived their grace period.
    pub fn kill_overdue(&mut self, now: Instant) {
        for retiring in self.retiring.iter_mut().filter(|r| r.kill_at.is_some_and(|at| at <= now)) {
            retiring.connection.kill();
            retiring.kill_at = None;
        }
    }

    pub fn next_wakeup(&self) -> Option<Instant> {
        let kill = self.retiring.iter().filter_map(|r| r.kill_at).min();
        [kill, self.step.map(|(_, at)| at)].into_iter().flatten().min()
    }
}

impl Hub {
    /// Starts a clean stop: new requests are refused at once, requests in flight get up to the drain
    /// time to finish, then the backends are stopped (stdin closed, SIGTERM, SIGKILL).
    pub(super) fn begin_shutdown(&mut self) {
        if self.shutdown.is_stopping() {
            return;
        }
        // Requests not sent yet (held for start-up, waiting for a retry) will not be: they are answered now.
        for caller in self.requests.take_unsent() {
            self.answer_error(&caller, code::BACKEND_UNAVAILABLE, "the proxy is shutting down");
        }
        for instance in self.backends.all_ids() {
            self.fail_waiting(instance, "the proxy is shutting down");
        }
        self.close_listens();
        log::info!("shutting down: finishing requests in flight (up to {:?})", self.settings.shutdown_grace);
        self.shutdown.step = Some((Phase::Draining, Instant::now() + self.settings.shutdown_grace));
    }

    /// Moves the shutdown along; true once every backend has stopped or the last step has passed.
    pub(super) fn advance_shutdown(&mut self, now: Instant) -> bool {
        let Some((phase, due)) = self.shutdown.step else { return false };
        if phase == Phase::Draining {
            if (self.requests.table.has_client_requests() || self.bridges.is_asking()) && now < due {
                return false;
            }
            self.stop_backends();
            self.shutdown.step = Some((Phase::ClosingInput, now + Duration::from_secs(1)));
        }
        if self.backends.all_stopped() && self.shutdown.retiring.is_empty() {
            return true;
        }
        let Some((phase, due)) = self.shutdown.step else { return false };
        if now < due {
            return false;
        }
        let (next, wait) = match phase {
            Phase::Draining | Phase::ClosingInput => (Phase::Terminating, Duration::from_secs(2)),
            Phase::Terminating => (Phase::Killing, Duration::from_secs(1)),
            Phase::Killing => {
                log::warn!("some servers did not stop in time; leaving them to the kernel");
                return true;
            }
        };
        self.shutdown.step = Some((next, now + wait));
        let retiring = self.shutdown.retiring.iter().map(|r| &r.connection);
        for connection in self.backends.connections().chain(retiring) {
            match next {
                Phase::Terminating => connection.terminate(),
                Phase::Killing => connection.kill(),
                Phase::Draining | Phase::ClosingInput => {}
            }
        }
        false
    }

    /// The end of the drain: what is still in flight fails, clients are let go (their streams end),
    /// and every backend is asked to exit by closing its input.
    fn stop_backends(&mut self) {
        for backend in self.backends.all_ids() {
            for key in self.requests.table.keys_for_backend(backend) {
                self.fail_unanswerable(key, "the proxy is shutting down");
            }
        }
        self.fail_bridges("the proxy is shutting down");
        self.clients.clear();
        for b in self.backends.iter_mut_all() {
            if let Some(connection) = &mut b.connection {
                connection.close_input();
            }
        }
    }
}
