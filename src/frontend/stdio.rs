//! The proxy as an MCP server on its own stdin and stdout: one client, the process that started us.
//!
//! A reader thread turns stdin lines into [`Event::FromClient`]; a writer thread writes the dispatcher's
//! messages to stdout, one JSON object per line. stdout carries nothing else: logs go to stderr. A line
//! that is no message (not JSON, not UTF-8, over the length cap) gets a JSON-RPC error with a null id,
//! and reading goes on. When stdin closes the client is gone, and in stdio mode that ends the proxy.
//!
//! The client's first request decides the era the connection speaks, as the 2026-07-28 stdio transport
//! says: `initialize` (or anything without the modern envelope) keeps it in the handshake era, a request
//! carrying `io.modelcontextprotocol/protocolVersion` in `_meta` makes it modern. A request that does
//! not fit the connection's era is refused here; the answers to a modern client's requests are dressed
//! for it by the writer, which learns each request's method from the reader.

use crate::event::{ClientId, Era, Event};
use crate::jsonrpc::{Kind, Message, ParseError};
use crate::lines::{Line, LineReader};
use crate::modern;
use crossbeam_channel::{Receiver, Sender};
use std::collections::{HashMap, VecDeque};
use std::io::{self, BufReader};
use std::thread::{self, JoinHandle};

/// Longest line accepted from the client.
const MAX_LINE: usize = 64 * 1024 * 1024;

/// A modern client's request in flight, for the writer: its id (as JSON text) and method.
type Note = (String, String);

/// Connects stdin and stdout to the dispatcher. The returned thread ends once the dispatcher has let
/// go of the client and every queued message is written: join it before exiting.
/// `profile` is the profile the client sees (`--profile`).
pub fn serve(events: Sender<Event>, profile: Option<String>) -> io::Result<JoinHandle<()>> {
    let client = ClientId::fresh();
    let (outbox, inbox) = crossbeam_channel::unbounded();
    let (notes, noted) = crossbeam_channel::unbounded();
    // Connected before the reader starts, so the dispatcher knows the client before its first message.
    let _ = events.send(Event::ClientConnected { client, outbox, profile });
    let reader = Reader { client, events, notes, era: None, unwritten: inbox.clone() };
    thread::Builder::new().name("stdin".into()).stack_size(256 * 1024).spawn(move || reader.run())?;
    thread::Builder::new().name("stdout".into()).stack_size(64 * 1024).spawn(move || write_loop(&inbox, &noted))
}

struct Reader {
    client: ClientId,
    events: Sender<Event>,
    notes: Sender<Note>,
    /// Decided by the first request.
    era: Option<Era>,
    /// The writer's queue, watched (never read) for backpressure.
    unwritten: Receiver<Message>,
}

/// Messages waiting for stdout beyond which the client's requests are not read: a client that sends
/// and does not read must not make the proxy hold its answers without bound.
const UNWRITTEN_LIMIT: usize = 4 * crate::event::STREAM_QUEUE;

impl Reader {
    fn run(mut self) {
        let client = self.client;
        let mut lines = LineReader::new(BufReader::new(io::stdin().lock()), MAX_LINE);
        loop {
            self.wait_for_the_client_to_read();
            let event = match lines.next_line() {
                Ok(Some(Line::Text(text))) if text.trim().is_empty() => continue,
                Ok(Some(Line::Text(text))) => match Message::parse(text) {
                    Ok(msg) => self.admit(msg),
                    Err(error) => Event::InvalidFromClient { client, error },
                },
                // Not a message, but the client may be waiting for an answer: it gets an error, as for bad JSON.
                Ok(Some(Line::TooLong(len))) => Event::InvalidFromClient { client, error: ParseError::TooLong { len, max: MAX_LINE } },
                Ok(Some(Line::NotUtf8(len))) => Event::InvalidFromClient { client, error: ParseError::NotUtf8(len) },
                Ok(None) => break,
                Err(e) => {
                    log::error!("stdin: {e}");
                    break;
                }
            };
            if self.events.send(event).is_err() {
                return;
            }
        }
        let _ = self.events.send(Event::ClientGone { client: self.client });
    }

    /// Backpressure: while the client leaves too many messages unread, its next request waits (and its
    /// pipe fills, so it cannot send more either).
    fn wait_for_the_client_to_read(&self) {
        while self.unwritten.len() >= UNWRITTEN_LIMIT {
            thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Fixes the connection's era at its first request and checks each request against it; a request
    /// that does not fit is refused. A modern request's method is noted for the writer.
    fn admit(&mut self, msg: Message) -> Event {
        let client = self.client;
        if msg.kind() != Kind::Request {
            return Event::FromClient { client, msg, era: self.era.unwrap_or_default() };
        }
        let era = *self.era.get_or_insert_with(|| modern::era_of_first(&msg));
        let id = msg.id.clone().unwrap_or_default();
        if let Err(refusal) = modern::check(&msg, era) {
            return Event::Refused { client, answer: refusal.to_message(id) };
        }
        if era == Era::Modern {
            let _ = self.notes.send((id.to_string(), msg.method().to_owned()));
        }
        Event::FromClient { client, msg, era }
    }
}

fn write_loop(inbox: &Receiver<Message>, noted: &Receiver<Note>) {
    let mut pending: HashMap<String, VecDeque<String>> = HashMap::new();
    let dress = |msg: Message| {
        if msg.kind() != Kind::Response {
            return msg;
        }
        // A note is sent before its request reaches the dispatcher, so it is here before the answer.
        for (id, method) in noted.try_iter() {
            pending.entry(id).or_default().push_back(method);
        }
        if pending.is_empty() {
            return msg; // A handshake-era client: nothing to dress, no id to look up.
        }
        let id = msg.id.as_ref().map(|id| id.to_string()).unwrap_or_default();
        let method = pending.get_mut(&id).and_then(VecDeque::pop_front);
        if pending.get(&id).is_some_and(VecDeque::is_empty) {
            pending.remove(&id);
        }
        match method {
            Some(method) => modern::dress(&method, msg),
            None => msg,
        }
    };
    if let Err(e) = crate::lines::write_messages(io::stdout().lock(), inbox, dress) {
        log::error!("stdout: {e}; the client is gone");
    }
}
