//! The proxy as an MCP server on its own stdin and stdout: one client, the process that started us.
//!
//! A reader thread turns stdin lines into [`Event::FromClient`]; a writer thread writes the dispatcher's
//! messages to stdout, one JSON object per line. stdout carries nothing else: logs go to stderr. A line
//! that is no message (not JSON, not UTF-8, over the length cap) gets a JSON-RPC error with a null id,
//! and reading goes on. When stdin closes the client is gone, and in stdio mode that ends the proxy.

use crate::hub::{ClientId, Event};
use crate::jsonrpc::{Message, ParseError};
use crate::lines::{Line, LineReader};
use crossbeam_channel::{Receiver, Sender};
use std::io::{self, BufReader};
use std::thread::{self, JoinHandle};

/// Longest line accepted from the client.
const MAX_LINE: usize = 64 * 1024 * 1024;

/// Connects stdin and stdout to the dispatcher. The returned thread ends once the dispatcher has let
/// go of the client and every queued message is written: join it before exiting.
pub fn serve(events: Sender<Event>) -> io::Result<JoinHandle<()>> {
    let client = ClientId::fresh();
    let (outbox, inbox) = crossbeam_channel::unbounded();
    // Connected before the reader starts, so the dispatcher knows the client before its first message.
    let _ = events.send(Event::ClientConnected { client, outbox });
    thread::Builder::new().name("stdin".into()).stack_size(256 * 1024).spawn(move || read_loop(client, &events))?;
    thread::Builder::new().name("stdout".into()).stack_size(64 * 1024).spawn(move || write_loop(&inbox))
}

fn read_loop(client: ClientId, events: &Sender<Event>) {
    let mut lines = LineReader::new(BufReader::new(io::stdin().lock()), MAX_LINE);
    loop {
        let event = match lines.next_line() {
            Ok(Some(Line::Text(text))) if text.trim().is_empty() => continue,
            Ok(Some(Line::Text(text))) => match Message::parse(&text) {
                Ok(msg) => Event::FromClient { client, msg },
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
        if events.send(event).is_err() {
            return;
        }
    }
    let _ = events.send(Event::ClientGone { client });
}

fn write_loop(inbox: &Receiver<Message>) {
    if let Err(e) = crate::lines::write_messages(io::stdout().lock(), inbox) {
        log::error!("stdout: {e}; the client is gone");
    }
}
