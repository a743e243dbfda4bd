//! Cutting a long-lived HTTP exchange with a remote backend from another thread.
//!
//! Some responses stay open as long as the server likes: a legacy SSE server's `GET` stream, a Streamable
//! HTTP server's `GET` stream, and a 2026-07-28 `subscriptions/listen`, whose answer is the stream of its
//! notifications. The thread reading one sits in a blocking socket read, and servers keep such streams
//! alive with pings (the Python SDK's every 15 s), so no read timeout ever ends it. When the proxy is
//! done with a stream (its connection closes or is stopped by a reload, an isolated instance ends, the
//! dispatcher cancels a listen, which over 2026-07-28 HTTP means closing its stream) something must cut
//! the socket under the reader, or the thread, the socket and the server's end of it stay for good.
//!
//! ureq 3.5 can: [`ureq::Agent::shutdown`] shuts down (`shutdown(2)`, both ways) every socket the agent
//! holds, in use or idle, and a read or write blocked on one returns at once; the agent makes no
//! connection after that. Its TCP connector registers each socket before TLS is layered on it, so this
//! works the same over HTTPS and over plain HTTP. An [`Abort`] is such an agent kept for one stream alone,
//! so that its shutdown cuts that stream and nothing else: its connection is never pooled for, or
//! borrowed from, other requests. That costs the stream a connection of its own, which it holds for its
//! whole life anyway. (A custom connector handing each socket's `try_clone()` to a slot would do the same
//! with more code, on ureq's `unversioned` transport API, which does not follow semver.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// One stream's own agent, and the way to cut it. Clones share both.
#[derive(Clone)]
pub struct Abort(Arc<Inner>);

struct Inner {
    agent: ureq::Agent,
    aborted: AtomicBool,
}

impl Abort {
    /// A fresh agent with `config`: the connection's own (timeouts, user agent, proxy, TLS).
    pub fn new(config: &ureq::config::Config) -> Abort {
        Abort(Arc::new(Inner { agent: ureq::Agent::new_with_config(config.clone()), aborted: AtomicBool::new(false) }))
    }

    /// The agent to make the stream's request with (and only that request: see the module docs).
    pub fn agent(&self) -> &ureq::Agent {
        &self.0.agent
    }

    /// Cuts the stream, from any thread, once however often it is called: a read blocked on it returns
    /// (an error, or what looks like the end of the body), and a request not made yet fails at once.
    pub fn abort(&self) {
        if !self.0.aborted.swap(true, Ordering::SeqCst) {
            self.0.agent.clone().shutdown();
        }
    }

    /// True once [`Abort::abort`] was called: what the reader sees then (an error, the end of the stream)
    /// is the proxy's doing, not the server's, and is not to be reported as the server's failure.
    pub fn is_aborted(&self) -> bool {
        self.0.aborted.load(Ordering::SeqCst)
    }
}

/// A loopback HTTP server for the remote transports' tests: it answers every request with the same bytes
/// and keeps the connection open until the client lets go.
#[cfg(test)]
pub(super) mod fake {
    use crossbeam_channel::{Receiver, Sender};
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::Arc;
    use std::thread;

    /// What the server saw.
    #[derive(Debug, PartialEq, Eq)]
    pub enum Seen {
        /// A request: its request line and body.
        Request(String, String),
        /// The client closed (or shut down) a connection.
        Closed,
    }

    /// The head of a `text/event-stream` response, chunked, and its first chunk: `event` (whole lines).
    pub fn event_stream(event: &str) -> String {
        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
        format!("{head}{:x}\r\n{event}\n\r\n", event.len() + 1)
    }

    /// Serves `answer` (a response head, maybe the start of a body) on 127.0.0.1; the URL, and what it saw.
    pub fn serve(answer: String) -> (String, Receiver<Seen>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let url = format!("http://{}", listener.local_addr().expect("a local address"));
        let (seen, saw) = crossbeam_channel::unbounded();
        let answer: Arc<str> = answer.into();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (seen, answer) = (seen.clone(), answer.clone());
                thread::spawn(move || answer_one(stream, &answer, &seen));
            }
        });
        (url, saw)
    }

    fn answer_one(stream: TcpStream, answer: &str, seen: &Sender<Seen>) {
        let Ok(mut writer) = stream.try_clone() else { return };
        let mut reader = BufReader::new(stream);
        let (mut line, mut length) = (String::new(), 0);
        if reader.read_line(&mut line).is_err() {
            return;
        }
        let request_line = line.trim_end().to_owned();
        loop {
            line.clear();
            if reader.read_line(&mut line).map_or(true, |n| n == 0) || line.trim_end().is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        let _ = reader.read_exact(&mut body);
        let _ = seen.send(Seen::Request(request_line, String::from_utf8_lossy(&body).into_owned()));
        let _ = writer.write_all(answer.as_bytes());
        // Holds the connection open, as a streaming server does, until the client closes it.
        let mut rest = [0; 1024];
        while reader.read(&mut rest).is_ok_and(|n| n > 0) {}
        let _ = seen.send(Seen::Closed);
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{event_stream, serve, Seen};
    use super::*;
    use std::io::Read;
    use std::thread;
    use std::time::Duration;

    const SOON: Duration = Duration::from_secs(2);

    /// No timeout could end a read: only the abort can. (No proxy from the environment either.)
    fn patient() -> ureq::config::Config {
        let hour = Some(Duration::from_secs(3600));
        ureq::Agent::config_builder().proxy(None).timeout_connect(hour).timeout_per_read(hour).build()
    }

    #[test]
    fn a_read_blocked_on_a_stream_returns_when_the_stream_is_aborted_and_the_connection_is_closed() {
        let (url, seen) = serve(event_stream(": hi\n"));
        let abort = Abort::new(&patient());
        let (read, first_bytes) = crossbeam_channel::unbounded();
        let reader = abort.clone();
        let (ended, end) = crossbeam_channel::unbounded();
        thread::spawn(move || {
            let result = reader.agent().get(&url).call().map_err(|e| e.to_string()).and_then(|response| {
                let mut body = response.into_body().into_reader();
                let mut buf = [0; 64];
                loop {
                    match body.read(&mut buf) {
                        Ok(0) => return Ok("the end"),
                        Ok(_) => {
                            let _ = read.send(());
                        }
                        Err(e) => return Err(e.to_string()),
                    }
                }
            });
            let _ = ended.send(result);
        });
        first_bytes.recv_timeout(SOON).expect("the start of the stream");
        assert!(matches!(seen.recv_timeout(SOON), Ok(Seen::Request(line, _)) if line.starts_with("GET ")));
        assert!(end.recv_timeout(Duration::from_millis(200)).is_err(), "the read should be blocked");
        assert!(!abort.is_aborted());

        abort.abort();
        assert!(abort.is_aborted());
        end.recv_timeout(SOON).expect("the read to return once aborted").expect_err("a chunked body cut short is an error");
        assert_eq!(seen.recv_timeout(SOON), Ok(Seen::Closed), "the server sees the connection closed");
        abort.abort(); // Again: nothing more happens.
    }

    #[test]
    fn an_aborted_stream_makes_no_connection() {
        let (url, seen) = serve(event_stream(": hi\n"));
        let abort = Abort::new(&patient());
        abort.abort();
        let error = abort.agent().get(&url).call().expect_err("no request after the abort");
        assert!(matches!(&error, ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::NotConnected), "{error}");
        assert!(seen.recv_timeout(Duration::from_millis(200)).is_err(), "nothing reached the server");
    }

    /// Over HTTPS the socket is cut under rustls: here during the handshake with a server that takes the
    /// ClientHello and never answers, the TLS read a test can make without a certificate.
    #[cfg(feature = "tls")]
    #[test]
    fn a_tls_handshake_blocked_on_a_silent_server_returns_when_aborted() {
        use std::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let url = format!("https://{}/", listener.local_addr().expect("a local address"));
        let (seen, hello) = crossbeam_channel::unbounded();
        thread::spawn(move || {
            let Ok((mut stream, _)) = listener.accept() else { return };
            let mut buf = [0; 4096];
            let _ = seen.send(stream.read(&mut buf).unwrap_or(0));
            while stream.read(&mut buf).is_ok_and(|n| n > 0) {}
            let _ = seen.send(0);
        });
        let abort = Abort::new(&patient());
        let caller = abort.clone();
        let (ended, end) = crossbeam_channel::unbounded();
        thread::spawn(move || {
            let _ = ended.send(caller.agent().get(&url).call().map(|_| ()).map_err(|e| e.to_string()));
        });
        assert!(hello.recv_timeout(SOON).is_ok_and(|bytes| bytes > 0), "no ClientHello reached the server");
        assert!(end.recv_timeout(Duration::from_millis(200)).is_err(), "the handshake should be blocked");
        abort.abort();
        end.recv_timeout(SOON).expect("the handshake to fail once aborted").expect_err("no response");
        assert_eq!(hello.recv_timeout(SOON), Ok(0), "the server sees the connection closed");
    }
}
