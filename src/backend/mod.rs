//! Connections to backend MCP servers, one module per transport.
//!
//! A backend module knows how to move [`Message`]s to and from one server and how to stop it; it knows
//! nothing of clients, names or routing, which belong to the dispatcher (`hub`). Every transport reports
//! to the dispatcher through the same two events, [`Event::FromBackend`] and [`Event::BackendExited`].

mod abort;
mod dialect;
mod remote;
pub mod sse;
pub mod stdio;
pub mod streamable_http;

pub use dialect::Dialect;

use crate::config::{ServerConfig, Transport};
use crate::event::{BackendId, Event};
use crate::jsonrpc::Message;
use crossbeam_channel::Sender;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Events waiting for the dispatcher beyond which backends' notifications are dropped at the door.
/// The channel is shared by every connection and client and stays unbounded, so answers are never
/// lost or held up; but a backend that floods notifications faster than the dispatcher hands them on
/// must not grow the queue (and the proxy's memory) without bound. ~2 MiB of log messages.
pub const INTAKE_QUEUE: usize = 4096;

/// Notifications from backends dropped at [`INTAKE_QUEUE`], since start.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Notifications from backends dropped because the dispatcher was behind, since start (`/metrics`).
pub fn notifications_dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

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

    /// Hands a message to the dispatcher; false when the dispatcher is gone (the proxy is exiting). A
    /// notification is dropped (and counted) while the dispatcher has [`INTAKE_QUEUE`] events waiting;
    /// responses and requests always go.
    pub fn message(&self, msg: Message) -> bool {
        self.message_about(msg, None)
    }

    /// Hands a message to the dispatcher that came with the answer to the proxy's request `about`; a
    /// notification is dropped as [`Link::message`] says.
    pub fn message_about(&self, msg: Message, about: Option<serde_json::Value>) -> bool {
        if self.events.len() >= INTAKE_QUEUE && msg.kind() == crate::jsonrpc::Kind::Notification {
            if DROPPED.fetch_add(1, Ordering::Relaxed).is_multiple_of(100_000) {
                log::warn!("the dispatcher is {INTAKE_QUEUE} events behind; dropping backends' notifications (see /metrics)");
            }
            return true;
        }
        let event = Event::FromBackend { backend: self.backend, generation: self.generation, msg, about };
        self.events.send(event).is_ok()
    }

    /// Reports that a request (by the id the proxy gave it) was never delivered.
    pub fn undelivered(&self, id: serde_json::Value) {
        let _ = self.events.send(Event::Undelivered { backend: self.backend, generation: self.generation, id });
    }

    /// Reports that the connection has ended; `reason` is for the log.
    pub fn exited(&self, reason: String) {
        let _ = self.events.send(Event::BackendExited { backend: self.backend, generation: self.generation, reason, needs_login: false });
    }

    /// Reports that the connection has ended because the server wants an OAuth login first.
    pub fn needs_login(&self, reason: String) {
        let _ = self.events.send(Event::BackendExited { backend: self.backend, generation: self.generation, reason, needs_login: true });
    }
}

/// A live connection to one backend: its transport, and the protocol era it speaks once known.
pub struct Connection {
    wire: Wire,
    dialect: Dialect,
}

enum Wire {
    Stdio(stdio::StdioBackend),
    Sse(sse::SseBackend),
    StreamableHttp(streamable_http::StreamableHttpBackend),
    /// A backend in the test's hands: what the dispatcher sends it arrives on the other end of the
    /// channel, and the test reports for it through its [`Link`]. Closing its input drops the sender.
    #[cfg(test)]
    Memory(Option<crossbeam_channel::Sender<Message>>),
}

/// How the dispatcher starts a backend's connection: [`Connection::start`], or an in-memory one in tests.
pub type Connector = Box<dyn FnMut(&ServerConfig, Link, std::time::Duration) -> Result<Connection, StartError> + Send>;

/// Why a backend could not be started.
#[derive(Debug)]
pub enum StartError {
    Spawn {
        command: String,
        source: std::io::Error,
    },
    /// A thread for a remote connection could not be started.
    Thread(std::io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Spawn { command, source } => write!(f, "cannot start '{command}': {source}"),
            StartError::Thread(source) => write!(f, "cannot start a connection thread: {source}"),
        }
    }
}

impl std::error::Error for StartError {}

impl Connection {
    /// `timeout` is the request timeout, used by remote transports to bound each wait for a response.
    pub fn start(server: &ServerConfig, link: Link, timeout: std::time::Duration) -> Result<Connection, StartError> {
        let key = &server.key;
        let dialect = Dialect::default();
        let wire = match &server.transport {
            Transport::Stdio(cfg) => stdio::StdioBackend::spawn(key, cfg, link, dialect.clone())
                .map(Wire::Stdio)
                .map_err(|source| StartError::Spawn { command: cfg.command.clone(), source })?,
            Transport::Sse(cfg) => sse::SseBackend::start(key, cfg.clone(), link, timeout).map(Wire::Sse).map_err(StartError::Thread)?,
            Transport::StreamableHttp(cfg) => {
                streamable_http::StreamableHttpBackend::start(key, cfg.clone(), link, timeout, dialect.clone())
                    .map(Wire::StreamableHttp)
                    .map_err(StartError::Thread)?
            }
        };
        Ok(Connection { wire, dialect })
    }

    /// A connection whose messages arrive on the other end of `outbox` (tests drive the dispatcher so).
    #[cfg(test)]
    pub fn memory(outbox: crossbeam_channel::Sender<Message>) -> Connection {
        Connection { wire: Wire::Memory(Some(outbox)), dialect: Dialect::default() }
    }

    /// The era the connection speaks; the dispatcher sets it once it knows.
    pub fn dialect(&self) -> &Dialect {
        &self.dialect
    }

    /// Whether the transport can carry 2026-07-28 requests (the legacy HTTP+SSE transport cannot).
    pub fn can_speak_modern(&self) -> bool {
        !matches!(self.wire, Wire::Sse(_))
    }

    /// Queues a message for the backend; false when the connection is already gone.
    pub fn send(&self, msg: Message) -> bool {
        match &self.wire {
            Wire::Stdio(b) => b.send(msg),
            Wire::Sse(b) => b.send(msg),
            Wire::StreamableHttp(b) => b.send(msg),
            #[cfg(test)]
            Wire::Memory(tx) => tx.as_ref().is_some_and(|tx| tx.send(self.dialect.translate(msg)).is_ok()),
        }
    }

    /// Closes the way in; a stdio server takes that as the request to exit.
    pub fn close_input(&mut self) {
        match &mut self.wire {
            Wire::Stdio(b) => b.close_input(),
            Wire::Sse(b) => b.close_input(),
            Wire::StreamableHttp(b) => b.close_input(),
            #[cfg(test)]
            Wire::Memory(tx) => *tx = None,
        }
    }

    /// Asks the backend to stop; it reports [`Event::BackendExited`] once it has. A remote server is
    /// not ours to stop: closing its input ends our session with it, and this cuts the streams it keeps
    /// open to us, so that no thread stays blocked reading one (`abort.rs`).
    pub fn terminate(&self) {
        match &self.wire {
            Wire::Stdio(b) => b.terminate(),
            Wire::Sse(b) => b.stop(),
            Wire::StreamableHttp(b) => b.stop(),
            #[cfg(test)]
            Wire::Memory(_) => {}
        }
    }

    /// Stops the backend without waiting for it to agree (remote: see [`Connection::terminate`]).
    pub fn kill(&self) {
        match &self.wire {
            Wire::Stdio(b) => b.kill(),
            Wire::Sse(b) => b.stop(),
            Wire::StreamableHttp(b) => b.stop(),
            #[cfg(test)]
            Wire::Memory(_) => {}
        }
    }
}

/// The start of a text, at most `chars` characters, for a log line about it.
fn preview(text: &str, chars: usize) -> &str {
    let end = text.char_indices().nth(chars).map_or(text.len(), |(i, _)| i);
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backends_notifications_are_dropped_while_the_dispatcher_is_behind_and_its_answers_are_not() {
        let (events, queue) = crossbeam_channel::unbounded();
        let link = Link::new(BackendId(0), 1, events);
        let parse = |text: &str| Message::parse(text).expect("a valid message");
        for _ in 0..INTAKE_QUEUE {
            link.message(parse(r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}"#));
        }
        let before = notifications_dropped();
        link.message(parse(r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"y"}}"#));
        assert_eq!(queue.len(), INTAKE_QUEUE, "the notification was dropped");
        assert!(notifications_dropped() > before, "and counted");
        link.message(parse(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#));
        assert_eq!(queue.len(), INTAKE_QUEUE + 1, "an answer always goes");
    }
}
