//! A small HTTP/1.1 server on `std::net`: one thread per connection, keep-alive, limits on everything.
//!
//! Our own rather than tiny_http, which was measured leaving keep-alive connections unserved under a
//! burst of SSE clients and has no read timeouts or header limits (see ARCHITECTURE.md). This module knows
//! HTTP only; what the paths mean is the frontend's business (`frontend/http`). A handler gets each request
//! and an [`Exchange`] to answer it with, either a whole [`Response`] or an [`EventStream`].

mod request;
mod response;

pub use request::{parse_head, Limits, ReadError, Request};
pub use response::{EventStream, Response};

use std::io::{self, BufReader};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// Connection threads parse JSON bodies, so they get the stack that needs (see rust-stack-notes).
const CONNECTION_STACK: usize = 256 * 1024;
/// A client that does not read what we write is given up on after this long.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

pub type Handler = dyn Fn(&Request, &mut Exchange) + Send + Sync;

/// Bytes read from and written to HTTP clients since start, for `/metrics`.
pub static BYTES_IN: AtomicU64 = AtomicU64::new(0);
pub static BYTES_OUT: AtomicU64 = AtomicU64::new(0);
/// Connections open now, for `/metrics`.
pub static OPEN_CONNECTIONS: AtomicUsize = AtomicUsize::new(0);

/// One request's answer, written at most once.
pub struct Exchange<'a> {
    stream: &'a TcpStream,
    keep_alive: bool,
    /// Whether the connection can serve another request after this exchange.
    reusable: bool,
}

impl<'a> Exchange<'a> {
    /// Writes a whole response. A write error means the client is gone; the connection then closes.
    pub fn respond(&mut self, response: Response) {
        let written = response.write_to(&mut &*self.stream, self.keep_alive);
        self.reusable = self.keep_alive && written.is_ok();
    }

    /// Starts a `text/event-stream` response. The connection is reusable only if the stream is ended
    /// with [`Exchange::finish_stream`] rather than dropped.
    pub fn stream(&mut self, headers: &[(&str, &str)]) -> io::Result<EventStream<'a>> {
        self.reusable = false;
        EventStream::start(self.stream, headers)
    }

    /// True when the client has closed the connection: a request it no longer waits for can be dropped.
    pub fn peer_closed(&self) -> bool {
        response::peer_closed(self.stream)
    }

    /// Ends a stream cleanly, so the connection can serve another request.
    pub fn finish_stream(&mut self, stream: EventStream<'a>) {
        self.reusable = self.keep_alive && stream.finish().is_ok();
    }
}

/// Accepts connections forever, each on a thread of its own, at most `max_connections` at once.
pub fn serve(listener: TcpListener, limits: Limits, max_connections: usize, handler: Arc<Handler>) {
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                log::warn!("accept failed: {e}");
                // EMFILE and friends: back off instead of spinning.
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if OPEN_CONNECTIONS.fetch_add(1, Ordering::SeqCst) >= max_connections {
            OPEN_CONNECTIONS.fetch_sub(1, Ordering::SeqCst);
            log::warn!("connection limit ({max_connections}) reached; refusing a connection");
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            Response::error(503, "too many connections").write_to(&mut &stream, false).ok();
            continue;
        }
        let (limits, handler, guard) = (limits.clone(), handler.clone(), OpenGuard);
        let spawned = thread::Builder::new().name("http".into()).stack_size(CONNECTION_STACK).spawn(move || {
            let _guard = guard;
            serve_connection(stream, &limits, &*handler);
        });
        if let Err(e) = spawned {
            log::error!("cannot start a connection thread: {e}");
        }
    }
}

/// Counts a connection as open until its thread ends, however it ends.
struct OpenGuard;

impl Drop for OpenGuard {
    fn drop(&mut self) {
        OPEN_CONNECTIONS.fetch_sub(1, Ordering::SeqCst);
    }
}

fn serve_connection(stream: TcpStream, limits: &Limits, handler: &Handler) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let Ok(conn) = stream.try_clone().and_then(|read_half| request::Conn::new(read_half, limits)) else { return };
    let peer = stream.peer_addr().ok().map(|a| a.ip());
    let mut reader = BufReader::new(conn);
    loop {
        let request = match request::read(&mut reader, limits, peer) {
            Ok(request) => request,
            Err(ReadError::Closed) => return,
            Err(ReadError::Io(e)) => return log::debug!("connection dropped: {e}"),
            Err(e) => return refuse(&stream, &e),
        };
        let mut exchange = Exchange { stream: &stream, keep_alive: request.keep_alive(), reusable: false };
        handler(&request, &mut exchange);
        if !exchange.reusable {
            return;
        }
    }
}

/// Answers a request that could not be read, then closes the connection.
fn refuse(stream: &TcpStream, error: &ReadError) {
    let (status, message) = match error {
        ReadError::Timeout => (408, "request not received in time".to_owned()),
        ReadError::HeadTooLarge => (431, "request head too large".to_owned()),
        ReadError::BodyTooLarge => (413, "request body too large".to_owned()),
        ReadError::Malformed(why) => (400, format!("malformed request: {why}")),
        ReadError::Closed | ReadError::Io(_) => return,
    };
    log::debug!("refusing a request: {status} {message}");
    let _ = Response::error(status, &message).write_to(&mut &*stream, false);
}
