//! A small HTTP/1.1 server on `std::net`: one thread per connection, keep-alive, limits on everything.
//!
//! Our own rather than tiny_http, which was measured leaving keep-alive connections unserved under a
//! burst of SSE clients and has no read timeouts or header limits (see ARCHITECTURE.md). This module knows
//! HTTP only; what the paths mean is the frontend's business (`frontend/http`). A handler gets each request
//! and an [`Exchange`] to answer it with, either a whole [`Response`] or an [`EventStream`]. With a
//! certificate ([`Transport::Tls`]) every connection is HTTPS: a TLS session lives with the connection's
//! socket (`socket.rs`, `tls.rs`), and its handshake is read on the connection's thread within the first request's deadline.

mod framing;
mod request;
mod response;
mod slots;
mod socket;
#[cfg(feature = "tls")]
mod tls;

pub use framing::{chunk_size, framing, Framing};
pub use request::{parse_head, Limits, ReadError, Request};
pub use response::{EventStream, Response};
pub use slots::{descriptor_limit, descriptor_reserve, Capacity};
#[cfg(feature = "tls")]
pub use tls::Tls;

use slots::{Refusal, Slots};
use socket::Socket;
use std::io::{self, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Connection threads parse JSON bodies, so they get the stack that needs (see rust-stack-notes).
const CONNECTION_STACK: usize = 256 * 1024;
/// A client that does not read what we write is given up on after this long.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// The first and longest pause after a failed accept (EMFILE and friends), doubling in between.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));
/// After refusing a request, how long and how much of what the client still sends is read and dropped
/// before closing, so the refusal is not lost to a reset (closing with unread input sends RST).
const LINGER: (Duration, u64) = (Duration::from_millis(500), 256 * 1024);

pub type Handler = dyn Fn(&Request, &mut Exchange) + Send + Sync;

/// Bytes read from and written to HTTP clients since start, for `/metrics`.
pub static BYTES_IN: AtomicU64 = AtomicU64::new(0);
pub static BYTES_OUT: AtomicU64 = AtomicU64::new(0);
/// Connections open now, for `/metrics`.
pub static OPEN_CONNECTIONS: AtomicUsize = AtomicUsize::new(0);

/// How the server's connections are carried.
#[derive(Clone)]
pub enum Transport {
    Plain,
    /// HTTPS with this certificate (which SIGHUP can swap).
    #[cfg(feature = "tls")]
    Tls(Arc<Tls>),
}

impl Transport {
    /// The URL scheme of the server.
    pub fn scheme(&self) -> &'static str {
        match self {
            Transport::Plain => "http",
            #[cfg(feature = "tls")]
            Transport::Tls(_) => "https",
        }
    }

    /// Rereads the certificate, if there is one (SIGHUP): connections accepted from now on get it.
    pub fn reload(&self) {
        match self {
            Transport::Plain => {}
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => tls.reload(),
        }
    }

    /// A new connection's socket. A TLS one starts its handshake when the first request is read, on the
    /// connection's thread.
    fn socket(&self, tcp: TcpStream) -> io::Result<Socket> {
        match self {
            Transport::Plain => Ok(Socket::plain(tcp)),
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => Ok(Socket::tls(tcp, tls.session()?)),
        }
    }
}

/// One request's answer, written at most once.
pub struct Exchange<'a> {
    socket: &'a Socket,
    keep_alive: bool,
    /// Whether the connection can serve another request after this exchange.
    reusable: bool,
}

impl<'a> Exchange<'a> {
    /// Writes a whole response. A write error means the client is gone; the connection then closes.
    pub fn respond(&mut self, response: Response) {
        let written = response.write_to(&mut &*self.socket, self.keep_alive);
        self.reusable = self.keep_alive && written.is_ok();
    }

    /// Starts a `text/event-stream` response. The connection is reusable only if the stream is ended
    /// with [`Exchange::finish_stream`] rather than dropped.
    pub fn stream(&mut self, headers: &[(&str, &str)]) -> io::Result<EventStream<'a>> {
        self.reusable = false;
        EventStream::start(self.socket, headers)
    }

    /// True when the client has closed the connection: a request it no longer waits for can be dropped.
    pub fn peer_closed(&self) -> bool {
        self.socket.peer_closed()
    }

    /// Ends a stream cleanly, so the connection can serve another request.
    pub fn finish_stream(&mut self, stream: EventStream<'a>) {
        self.reusable = self.keep_alive && stream.finish().is_ok();
    }
}

/// Accepts connections forever, each on a thread of its own, within `capacity`.
pub fn serve(listener: TcpListener, transport: Transport, limits: Limits, capacity: Capacity, handler: Arc<Handler>) {
    let slots = Slots::new(capacity);
    let mut backoff = ACCEPT_BACKOFF.0;
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors, most likely: retrying at once would spin on the same error.
                if backoff == ACCEPT_BACKOFF.0 {
                    log::warn!("accept failed: {e}; retrying with back-off");
                }
                thread::sleep(backoff);
                backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
                continue;
            }
        };
        backoff = ACCEPT_BACKOFF.0;
        let accepted = Instant::now();
        let slot = match slots.take(peer.ip()) {
            Ok(slot) => slot,
            Err(refusal) => {
                refuse_connection(&stream, refusal, &capacity, &transport);
                continue;
            }
        };
        let (transport, limits, handler) = (transport.clone(), limits.clone(), handler.clone());
        let spawned = thread::Builder::new().name("http".into()).stack_size(CONNECTION_STACK).spawn(move || {
            let _slot = slot;
            match transport.socket(stream) {
                Ok(socket) => {
                    serve_connection(&socket, peer.ip(), accepted, &limits, &*handler);
                    socket.close();
                }
                Err(e) => log::error!("cannot start a TLS session: {e}"),
            }
        });
        if let Err(e) = spawned {
            log::error!("cannot start a connection thread: {e}");
        }
    }
}

/// Answers a connection there is no slot for, and closes it. Over TLS it is only closed: an answer would
/// need a handshake, which takes a thread and a slot.
fn refuse_connection(stream: &TcpStream, refusal: Refusal, capacity: &Capacity, transport: &Transport) {
    let (status, message) = match refusal {
        Refusal::Full => (503, format!("too many connections (the limit is {})", capacity.total)),
        Refusal::AddressFull => (429, format!("too many connections from your address (the limit is {})", capacity.per_address)),
    };
    log::warn!("refusing a connection: {message}");
    if matches!(transport, Transport::Plain) {
        let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
        Response::error(status, &message).write_to(&mut &*stream, false).ok();
    }
}

fn serve_connection(socket: &Socket, peer: std::net::IpAddr, accepted: Instant, limits: &Limits, handler: &Handler) {
    let _ = socket.tcp().set_nodelay(true);
    let _ = socket.tcp().set_write_timeout(Some(WRITE_TIMEOUT));
    let Ok(conn) = request::Conn::new(socket, limits) else { return };
    let mut reader = BufReader::new(conn);
    let mut first_by = Some(accepted + limits.first_request_timeout);
    loop {
        let request = match request::read(&mut reader, limits, Some(peer), first_by.take()) {
            Ok(request) => request,
            Err(ReadError::Closed) => return,
            Err(ReadError::Io(e)) => return log::debug!("connection dropped: {e}"),
            Err(e) => return refuse(socket, &e),
        };
        let mut exchange = Exchange { socket, keep_alive: request.keep_alive(), reusable: false };
        handler(&request, &mut exchange);
        if !exchange.reusable {
            return;
        }
    }
}

/// Answers a request that could not be read, then closes the connection.
fn refuse(socket: &Socket, error: &ReadError) {
    let (status, message) = match error {
        ReadError::Timeout => (408, "request not received in time".to_owned()),
        ReadError::HeadTooLarge => (431, "request head too large".to_owned()),
        ReadError::BodyTooLarge => (413, "request body too large".to_owned()),
        ReadError::Malformed(why) => (400, format!("malformed request: {why}")),
        ReadError::Closed | ReadError::Io(_) => return,
    };
    log::debug!("refusing a request: {status} {message}");
    if Response::error(status, &message).write_to(&mut &*socket, false).is_ok() {
        linger(socket);
    }
}

/// Closes our side for writing, then reads and drops what the client still sends, within bounds.
fn linger(socket: &Socket) {
    socket.end_writing();
    let _ = socket.tcp().set_read_timeout(Some(LINGER.0));
    let _ = io::copy(&mut socket.tcp().take(LINGER.1), &mut io::sink());
}
