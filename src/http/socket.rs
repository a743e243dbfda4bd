//! A connection's one socket, plain or TLS: what the request reader, the responses and the event streams
//! read from and write to, and ask whether the client is still there.
//!
//! The connection's thread is its only user: it reads a request, then writes the answer, and a stream
//! it writes checks the client between writes; nothing reads and writes at once. So the TLS session sits
//! in a `RefCell`, borrowed for one call at a time.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;

/// How long a TLS close_notify may take to write.
#[cfg(feature = "tls")]
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

pub struct Socket {
    tcp: TcpStream,
    #[cfg(feature = "tls")]
    tls: Option<std::cell::RefCell<rustls::ServerConnection>>,
}

impl Socket {
    pub fn plain(tcp: TcpStream) -> Socket {
        Socket {
            tcp,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// A socket whose bytes are TLS records of `session`; its handshake happens as the first request is read.
    #[cfg(feature = "tls")]
    pub fn tls(tcp: TcpStream, session: rustls::ServerConnection) -> Socket {
        Socket { tcp, tls: Some(std::cell::RefCell::new(session)) }
    }

    /// The TCP connection underneath, for its timeouts.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Reads what the client sent: the bytes `raw` reads from [`Socket::tcp`] (under the caller's
    /// deadlines), decrypted on a TLS socket.
    pub fn read(&self, raw: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
        #[cfg(feature = "tls")]
        if let Some(session) = &self.tls {
            return super::tls::read(&mut session.borrow_mut(), raw, &self.tcp, buf);
        }
        raw.read(buf)
    }

    /// True when the client has closed its end of the connection (a request it no longer waits for can
    /// be dropped). Never waits.
    pub fn peer_closed(&self) -> bool {
        #[cfg(feature = "tls")]
        if let Some(session) = &self.tls {
            return super::tls::peer_closed(&mut session.borrow_mut(), &mut DontWait(&self.tcp));
        }
        let mut byte = [0u8; 1];
        found_end(recv(&self.tcp, &mut byte, libc::MSG_PEEK | libc::MSG_DONTWAIT))
    }

    /// On TLS, tells the client that nothing more comes (close_notify), so it can tell the end from a
    /// cut. Best effort and brief: the client may be gone, or not reading.
    pub fn close(&self) {
        #[cfg(feature = "tls")]
        if let Some(session) = &self.tls {
            let _ = self.tcp.set_write_timeout(Some(CLOSE_TIMEOUT));
            let _ = super::tls::close(&mut session.borrow_mut(), &self.tcp);
        }
    }

    /// Says that nothing more will be written: [`Socket::close`], then a TCP half-close.
    pub fn end_writing(&self) {
        self.close();
        let _ = self.tcp.shutdown(Shutdown::Write);
    }
}

impl Write for &Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        #[cfg(feature = "tls")]
        if let Some(session) = &self.tls {
            return super::tls::write(&mut session.borrow_mut(), &self.tcp, buf);
        }
        (&self.tcp).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        #[cfg(feature = "tls")]
        if let Some(session) = &self.tls {
            return super::tls::flush(&mut session.borrow_mut(), &self.tcp);
        }
        (&self.tcp).flush()
    }
}

/// `recv(2)` on the socket with `flags`.
fn recv(tcp: &TcpStream, buf: &mut [u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: recv writes at most `buf.len()` bytes into `buf`, which outlives the call.
    let n = unsafe { libc::recv(tcp.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), flags) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// Whether a look at the socket that does not wait found the end of the stream.
fn found_end(outcome: io::Result<usize>) -> bool {
    match outcome {
        Ok(n) => n == 0,
        Err(e) => !matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted),
    }
}

/// Reads only what has already arrived (`WouldBlock` when nothing has).
#[cfg(feature = "tls")]
struct DontWait<'a>(&'a TcpStream);

#[cfg(feature = "tls")]
impl Read for DontWait<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        recv(self.0, buf, libc::MSG_DONTWAIT)
    }
}
