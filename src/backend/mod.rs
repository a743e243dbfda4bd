//! Connections to backend MCP servers, one module per transport.
//!
//! A backend module knows how to move [`Message`]s to and from one server and how to stop it; it knows
//! nothing of clients, names or routing, which belong to the dispatcher (`hub`). Every transport reports
//! to the dispatcher through the same two events, [`Event::FromBackend`] and [`Event::BackendExited`].

pub mod stdio;

use crate::config::{ServerConfig, Transport};
use crate::hub::{BackendId, Event};
use crate::jsonrpc::Message;
use crossbeam_channel::Sender;
use std::fmt;

/// A backend connection's way back to the dispatcher. Every event carries the connection's generation,
/// so the dispatcher can drop what a replaced connection still says after a restart.
#[derive(Clone)]
pub struct Link {
    pub backend: BackendId,
    pub generation: u64,
    events: Sender<Event>,
}

impl Link {
    pub fn new(backend: BackendId, generation: u64, events: Sender<Event>) -> Link {
        Link { backend, generation, events }
    }

    /// Hands a message to the dispatcher; false when the dispatcher is gone (the proxy is exiting).
    pub fn message(&self, msg: Message) -> bool {
        let event = Event::FromBackend { backend: self.backend, generation: self.generation, msg };
        self.events.send(event).is_ok()
    }

    /// Reports that the connection has ended; `reason` is for the log.
    pub fn exited(&self, reason: String) {
        let _ = self.events.send(Event::BackendExited { backend: self.backend, generation: self.generation, reason });
    }
}

/// A live connection to one backend.
pub enum Connection {
    Stdio(stdio::StdioBackend),
}

/// Why a backend could not be started.
#[derive(Debug)]
pub enum StartError {
    Spawn { command: String, source: std::io::Error },
    Unsupported(&'static str),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Spawn { command, source } => write!(f, "cannot start '{command}': {source}"),
            StartError::Unsupported(kind) => {
                write!(f, "type '{kind}' backends are not supported by this version yet; only stdio")
            }
        }
    }
}

impl std::error::Error for StartError {}

impl Connection {
    pub fn start(server: &ServerConfig, link: Link) -> Result<Connection, StartError> {
        match &server.transport {
            Transport::Stdio(cfg) => stdio::StdioBackend::spawn(&server.key, cfg, link)
                .map(Connection::Stdio)
                .map_err(|source| StartError::Spawn { command: cfg.command.clone(), source }),
            other => Err(StartError::Unsupported(other.type_name())),
        }
    }

    /// Queues a message for the backend; false when the connection is already gone.
    pub fn send(&self, msg: Message) -> bool {
        match self {
            Connection::Stdio(b) => b.send(msg),
        }
    }

    /// Closes the way in; a stdio server takes that as the request to exit.
    pub fn close_input(&mut self) {
        match self {
            Connection::Stdio(b) => b.close_input(),
        }
    }

    /// Asks the backend to stop; it reports [`Event::BackendExited`] once it has.
    pub fn terminate(&self) {
        match self {
            Connection::Stdio(b) => b.terminate(),
        }
    }

    /// Stops the backend without waiting for it to agree.
    pub fn kill(&self) {
        match self {
            Connection::Stdio(b) => b.kill(),
        }
    }
}
