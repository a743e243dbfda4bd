//! Inbound TLS: the server certificate (read from PEM files, swapped on SIGHUP) and the record layer of
//! one connection, driven by hand over its blocking socket.
//!
//! rustls's own `Stream` loops inside one `read` until plaintext arrives, so a client trickling a
//! handshake byte by byte would never meet the connection's deadlines. Here every byte rustls gets comes
//! from the caller's `raw` reader, which is the connection's deadline-bounded read of its socket: the
//! handshake is part of reading the first request and is cut off by the first-request timeout like any
//! slow request. Writes go straight to the socket (under its write timeout). One thread owns a
//! connection, so the session is never read and written at once.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// How many records a liveness check takes in at most before it answers "still there".
const LIVENESS_RECORDS: usize = 16;

/// The server's certificate and key, as files and as the configuration new connections get.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    config: RwLock<Arc<ServerConfig>>,
}

impl Tls {
    /// Reads the certificate chain and its key; the error names the file and what is wrong with it.
    pub fn load(cert: &Path, key: &Path) -> Result<Tls, String> {
        let config = server_config(cert, key)?;
        Ok(Tls { cert: cert.to_owned(), key: key.to_owned(), config: RwLock::new(config) })
    }

    /// Reads the files again: connections accepted from now on get the new certificate. On any problem
    /// the one in use stays, and the problem is logged.
    pub fn reload(&self) {
        match server_config(&self.cert, &self.key) {
            Ok(config) => {
                *self.config.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = config;
                log::info!("TLS certificate reloaded from {}", self.cert.display());
            }
            Err(e) => log::error!("{e}; the TLS certificate in use stays"),
        }
    }

    /// A new connection's TLS session.
    pub fn session(&self) -> io::Result<ServerConnection> {
        let config = Arc::clone(&self.config.read().unwrap_or_else(|poisoned| poisoned.into_inner()));
        ServerConnection::new(config).map_err(io::Error::other)
    }
}

fn server_config(cert_path: &Path, key_path: &Path) -> Result<Arc<ServerConfig>, String> {
    let problem = |path: &Path, what: String| format!("TLS: {}: {what}", path.display());
    let pem = |path: &Path| std::fs::read(path).map_err(|e| problem(path, format!("cannot read it: {e}")));
    let certs = CertificateDer::pem_slice_iter(&pem(cert_path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| problem(cert_path, format!("not a PEM certificate chain: {e}")))?;
    if certs.is_empty() {
        return Err(problem(cert_path, "no CERTIFICATE block in it".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(&pem(key_path)?)
        .map_err(|e| problem(key_path, format!("no PEM private key (PKCS#8, PKCS#1 or SEC1) in it: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                problem(key_path, format!("not the private key of the certificate in {}", cert_path.display()))
            }
            e => problem(key_path, format!("cannot be used with {}: {e}", cert_path.display())),
        })?;
    // HTTP/1.1 is all this server speaks; saying so makes an h2-only client fail at once, clearly.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Reads plaintext into `buf`, taking records from `raw` (the socket, under the caller's deadline) as
/// needed: the handshake first, on a new connection. `Ok(0)` at the end of the stream.
pub fn read(session: &mut ServerConnection, raw: &mut impl Read, tcp: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match session.reader().read(buf) {
            // The end without close_notify is an end too: requests are framed by their own lengths, so a
            // request cut short is seen as one anyway.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            read => return read,
        }
        // At the end of the stream the reader says, on the next turn, whether it ended cleanly.
        if session.read_tls(raw)? == 0 {
            continue;
        }
        if let Err(e) = session.process_new_packets() {
            return Err(refuse(session, tcp, e));
        }
        flush(session, tcp)?;
    }
}

/// Sends the alert for a TLS failure; the error to return. A client speaking plain HTTP to this port
/// gets a plain HTTP 400 instead, which it can show, where an alert would be gibberish to it.
fn refuse(session: &mut ServerConnection, mut tcp: &TcpStream, error: rustls::Error) -> io::Error {
    let plain_http = session.is_handshaking() && matches!(error, rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType));
    if plain_http {
        // The alert rustls queued would follow the answer as junk: it is dropped instead.
        while session.wants_write() && session.write_tls(&mut io::sink()).is_ok() {}
        let _ = super::Response::error(400, "this port speaks HTTPS: use an https:// URL").write_to(&mut tcp, false);
        return io::Error::new(io::ErrorKind::InvalidData, "plain HTTP on the HTTPS port");
    }
    let _ = flush(session, tcp);
    io::Error::new(io::ErrorKind::InvalidData, error)
}

/// Encrypts and sends some of `buf`.
pub fn write(session: &mut ServerConnection, tcp: &TcpStream, buf: &[u8]) -> io::Result<usize> {
    let n = session.writer().write(buf)?;
    flush(session, tcp)?;
    Ok(n)
}

/// Sends every record waiting to go.
pub fn flush(session: &mut ServerConnection, mut tcp: &TcpStream) -> io::Result<()> {
    while session.wants_write() {
        session.write_tls(&mut tcp)?;
    }
    tcp.flush()
}

/// Tells the client that nothing more comes (close_notify), so it can tell an end from a cut.
pub fn close(session: &mut ServerConnection, tcp: &TcpStream) -> io::Result<()> {
    session.send_close_notify();
    flush(session, tcp)
}

/// True when the client has closed: its close_notify, or the end of the TCP stream, is among what has
/// arrived. Records are taken in without waiting (`dont_wait` reads only what is there); plaintext they
/// carry stays buffered for the next request. A raw peek cannot tell: a close_notify is bytes to it.
pub fn peer_closed(session: &mut ServerConnection, dont_wait: &mut impl Read) -> bool {
    for _ in 0..LIVENESS_RECORDS {
        let state = match session.process_new_packets() {
            Ok(state) => state,
            Err(_) => return true,
        };
        if state.plaintext_bytes_to_read() > 0 {
            return false;
        }
        if state.peer_has_closed() {
            return true;
        }
        match session.read_tls(dont_wait) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) => return !matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted),
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::super::socket::Socket;
    use super::*;
    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
    use std::net::TcpListener;
    use std::time::{Duration, Instant};

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/");

    type Client = StreamOwned<ClientConnection, TcpStream>;

    /// A TLS connection to a server socket: the client, and the server's socket after the client's
    /// `hello` has been read on it (so the handshake is done).
    fn connected() -> (Client, Socket) {
        let tls = Tls::load(&Path::new(FIXTURES).join("server.pem"), &Path::new(FIXTURES).join("server.key")).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = std::thread::spawn(move || {
            let mut roots = RootCertStore::empty();
            roots.add(CertificateDer::from_pem_file(Path::new(FIXTURES).join("ca.pem")).unwrap()).unwrap();
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
            let session = ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap()).unwrap();
            let mut client = StreamOwned::new(session, TcpStream::connect(addr).unwrap());
            client.write_all(b"hello").unwrap();
            client
        });
        let socket = Socket::tls(listener.accept().unwrap().0, tls.session().unwrap());
        socket.tcp().set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut hello = [0u8; 5];
        let mut filled = 0;
        while filled < hello.len() {
            filled += socket.read(&mut socket.tcp(), &mut hello[filled..]).unwrap();
        }
        assert_eq!(&hello, b"hello");
        (client.join().unwrap(), socket)
    }

    /// Whether `peer_closed` says so within a second (what the client sent takes a moment to arrive).
    fn seen_closed(socket: &Socket) -> bool {
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            if socket.peer_closed() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    #[test]
    fn a_client_that_sent_close_notify_has_closed() {
        let (mut client, socket) = connected();
        client.conn.send_close_notify();
        client.flush().unwrap();
        assert!(seen_closed(&socket));
        drop(client);
    }

    #[test]
    fn a_client_that_closed_its_tcp_connection_without_close_notify_has_closed() {
        let (client, socket) = connected();
        drop(client);
        assert!(seen_closed(&socket));
    }

    #[test]
    fn a_connected_client_has_not_closed_and_what_it_sent_meanwhile_is_still_read() {
        let (mut client, socket) = connected();
        client.write_all(b"next").unwrap();
        assert!(!seen_closed(&socket));
        let mut next = [0u8; 4];
        assert_eq!(socket.read(&mut socket.tcp(), &mut next).unwrap(), 4);
        assert_eq!(&next, b"next");
        assert!(!socket.peer_closed());
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused_naming_the_key_file() {
        let error = Tls::load(&Path::new(FIXTURES).join("server.pem"), &Path::new(FIXTURES).join("other.key")).err().unwrap();
        assert!(error.contains("other.key: not the private key of the certificate in"), "{error}");
    }

    #[test]
    fn keys_are_read_in_pkcs8_and_pkcs1() {
        assert!(Tls::load(&Path::new(FIXTURES).join("server.pem"), &Path::new(FIXTURES).join("server.key")).is_ok());
        assert!(Tls::load(&Path::new(FIXTURES).join("renewed.pem"), &Path::new(FIXTURES).join("renewed.key")).is_ok());
    }
}
