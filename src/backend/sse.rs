//! A backend reached over legacy HTTP+SSE (protocol 2024-11-05).
//!
//! A reader thread holds the `GET` stream: its first `endpoint` event says where to post, every
//! `message` event after it is a message for the dispatcher, and the end of the stream is the end of
//! the connection (the dispatcher then reconnects with backoff). A writer thread posts the
//! dispatcher's messages to the endpoint in order; the server answers 202 and replies on the stream.
//!
//! The stream is read through an agent of its own ([`Abort`]), cut when the connection is over: once the
//! writer has posted what was queued when the input was closed (or the connection was dropped), or at
//! once when the dispatcher terminates or kills the connection. Servers ping a quiet stream, so without
//! that the reader would stay blocked, with its socket and the server's session, for as long as the
//! server runs.

use super::abort::Abort;
use super::remote::{classify, resolve, status_error, Failure, Remote, Unauthorized, MAX_MESSAGE};
use super::Link;
use crate::config::RemoteConfig;
use crate::jsonrpc::Message;
use crate::sse::SseReader;
use crossbeam_channel::{Receiver, Sender};
use std::io::{self, BufReader};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};
use ureq::http::Response;
use ureq::Body;

/// How long the first message waits for the server to announce its endpoint.
const ENDPOINT_TIMEOUT: Duration = Duration::from_secs(30);
const THREAD_STACK: usize = 256 * 1024;

pub struct SseBackend {
    outbox: Option<Sender<Message>>,
    shared: Arc<Shared>,
}

struct Shared {
    remote: Remote,
    endpoint: Mutex<Option<String>>,
    announced: Condvar,
    /// The `GET` stream's own agent.
    stream: Abort,
}

impl SseBackend {
    pub fn start(key: &str, config: RemoteConfig, link: Link, timeout: Duration) -> io::Result<SseBackend> {
        let remote = Remote::new(key, config, link, timeout);
        let stream = remote.abortable();
        let shared = Arc::new(Shared { remote, endpoint: Mutex::new(None), announced: Condvar::new(), stream });
        let (outbox, inbox) = crossbeam_channel::unbounded();
        let reader = shared.clone();
        thread::Builder::new().name(format!("{key}-sse")).stack_size(THREAD_STACK).spawn(move || reader.read_stream())?;
        let writer = shared.clone();
        thread::Builder::new().name(format!("{key}-post")).stack_size(THREAD_STACK).spawn(move || writer.write_loop(&inbox))?;
        Ok(SseBackend { outbox: Some(outbox), shared })
    }

    pub fn send(&self, msg: Message) -> bool {
        !self.shared.remote.is_closed() && self.outbox.as_ref().is_some_and(|o| o.send(msg).is_ok())
    }

    /// Closes the way in: queued messages are still posted, then the stream is cut.
    pub fn close_input(&mut self) {
        self.outbox = None;
    }

    /// Cuts the stream at once, which ends the session (terminate and kill: the server is not ours to stop).
    pub fn stop(&self) {
        self.shared.stream.abort();
    }
}

impl Shared {
    fn read_stream(&self) {
        self.read_events();
        // A writer waiting for the endpoint learns that none will come.
        drop(self.endpoint.lock().unwrap_or_else(|p| p.into_inner()));
        self.announced.notify_all();
    }

    /// The server's event stream, or `None` when the connection ended instead (reported). A 401 is
    /// tried once more with a new access token, if there is one.
    fn open_stream(&self) -> Option<Response<Body>> {
        let remote = &self.remote;
        let end = |why: String| remote.close(if self.stream.is_aborted() { "closed".into() } else { why });
        for may_retry in [true, false] {
            // Before the token is read: a refresh after this moment gives a token the server has not refused.
            let sent_at = Instant::now();
            let req = remote.with_auth(self.stream.agent().get(&remote.config.url)).header("Accept", "text/event-stream");
            match req.config().timeout_per_read(Some(super::remote::QUIET_STREAM)).build().call() {
                Ok(response) if response.status().is_success() => return Some(response),
                Ok(response) if response.status() == 401 => match remote.unauthorized(&response, sent_at) {
                    Unauthorized::Retry if may_retry => continue,
                    Unauthorized::NeedsLogin(why) => remote.close_needing_login(why),
                    Unauthorized::Retry | Unauthorized::Fail => end(format!("GET {}: {}", remote.config.url, status_error(response))),
                },
                Ok(response) => end(format!("GET {}: {}", remote.config.url, status_error(response))),
                Err(e) => end(format!("cannot reach {}: {e}", remote.config.url)),
            }
            return None;
        }
        None
    }

    fn read_events(&self) {
        let remote = &self.remote;
        // The end of a stream the proxy cut is not the server's failure.
        let end = |why: String| remote.close(if self.stream.is_aborted() { "closed".into() } else { why });
        // The stream may stay quiet for long, but not forever: after QUIET_STREAM (with no ping) the
        // connection counts as lost and the dispatcher connects again.
        let Some(response) = self.open_stream() else { return };
        let mut body = response.into_body();
        let mut events = SseReader::new(BufReader::new(body.as_reader()), MAX_MESSAGE);
        loop {
            match events.next_event() {
                Ok(Some(event)) if event.event == "endpoint" => {
                    let url = resolve(&remote.config.url, event.data.trim());
                    log::debug!("[{}] posting to {url}", remote.key);
                    *self.endpoint.lock().unwrap_or_else(|p| p.into_inner()) = Some(url);
                    self.announced.notify_all();
                }
                Ok(Some(event)) if event.event == "message" && event.data.trim().is_empty() => {}
                Ok(Some(event)) if event.event == "message" => match Message::parse(&event.data) {
                    Ok(msg) => {
                        if !remote.link.message(msg) {
                            return;
                        }
                    }
                    Err(e) => log::warn!("[{}] ignoring an event that is not JSON-RPC ({e})", remote.key),
                },
                Ok(Some(_)) => {}
                Ok(None) => return end("the SSE stream ended".into()),
                Err(e) => return end(format!("the SSE stream failed: {e}")),
            }
            if remote.is_closed() {
                return;
            }
        }
    }

    /// Posts the dispatcher's messages until the input is closed or the connection is over, then cuts the
    /// stream: however the connection ended, its reader must not outlive it.
    fn write_loop(&self, inbox: &Receiver<Message>) {
        self.post_all(inbox);
        self.stream.abort();
    }

    fn post_all(&self, inbox: &Receiver<Message>) {
        for msg in inbox {
            if self.remote.is_closed() {
                return;
            }
            let Some(endpoint) = self.wait_endpoint() else {
                return self.remote.close("the server announced no endpoint".into());
            };
            match self.send(&endpoint, &msg, true) {
                Ok(None) => {}
                Ok(Some(response)) if response.status().is_success() => {}
                Ok(Some(response)) => self.remote.fail_request(&msg, &status_error(response)),
                Err(e) => match classify(e) {
                    Failure::Refused(why) => return self.remote.refused(&msg, &why),
                    Failure::Unreachable(why) => return self.remote.close(format!("cannot reach {endpoint}: {why}")),
                    Failure::Request(why) => self.remote.fail_request(&msg, &why),
                },
            }
        }
        self.remote.close("closed".into());
    }

    /// Posts `msg`. A 401 is tried once more with a new access token if there is one; otherwise it is
    /// dealt with here (the request fails, or the connection ends as needing a login): `Ok(None)`.
    fn send(&self, endpoint: &str, msg: &Message, may_retry: bool) -> Result<Option<Response<Body>>, ureq::Error> {
        let sent_at = Instant::now(); // Before the token is read, as in `open_stream`.
        let req = self.remote.with_auth(self.remote.agent().post(endpoint)).header("Content-Type", "application/json");
        let response = req.send(msg.to_json())?;
        if let Some(why) = (response.status() == 403).then(|| self.remote.insufficient_scope(&response)).flatten() {
            self.remote.fail_request(msg, &why);
            return Ok(None);
        }
        if response.status() != 401 {
            return Ok(Some(response));
        }
        match self.remote.unauthorized(&response, sent_at) {
            Unauthorized::Retry if may_retry => self.send(endpoint, msg, false),
            Unauthorized::NeedsLogin(why) => {
                self.remote.needs_login(msg, &why);
                Ok(None)
            }
            Unauthorized::Retry | Unauthorized::Fail => {
                self.remote.fail_request(msg, &status_error(response));
                Ok(None)
            }
        }
    }

    fn wait_endpoint(&self) -> Option<String> {
        let guard = self.endpoint.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = self
            .announced
            .wait_timeout_while(guard, ENDPOINT_TIMEOUT, |e| e.is_none() && !self.remote.is_closed())
            .unwrap_or_else(|p| p.into_inner());
        guard.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::super::abort::fake::{event_stream, serve, Seen};
    use super::*;
    use crate::event::{BackendId, Event};
    use std::time::Duration;

    const SOON: Duration = Duration::from_secs(2);

    /// Starts a backend on the fake server; the backend, its events, and what the server saw.
    fn connect() -> (SseBackend, crossbeam_channel::Receiver<Event>, crossbeam_channel::Receiver<Seen>) {
        // A stream that announces its endpoint, says one thing, and then stays open, as a quiet server's does.
        let note = r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"hi"}}"#;
        let (url, seen) = serve(event_stream(&format!("event: endpoint\ndata: /messages/x\n\ndata: {note}\n")));
        let config = RemoteConfig::for_url(format!("{url}/sse"));
        let (events, heard) = crossbeam_channel::unbounded();
        let backend = SseBackend::start("sse", config, Link::new(BackendId(0), 1, events), Duration::from_secs(3600)).expect("threads");
        assert!(matches!(seen.recv_timeout(SOON), Ok(Seen::Request(line, _)) if line.starts_with("GET /sse")));
        // Once the message is heard, the reader waits for more.
        assert!(matches!(heard.recv_timeout(SOON), Ok(Event::FromBackend { msg, .. }) if msg.method() == "notifications/message"));
        (backend, heard, seen)
    }

    fn assert_ended(heard: &crossbeam_channel::Receiver<Event>, seen: &crossbeam_channel::Receiver<Seen>) {
        match heard.recv_timeout(SOON) {
            Ok(Event::BackendExited { reason, .. }) => assert_eq!(reason, "closed", "the proxy's own doing, not a failure"),
            Ok(_) => panic!("expected the connection's end, got another event"),
            Err(e) => panic!("expected the connection's end: {e}"),
        }
        assert_eq!(seen.recv_timeout(SOON), Ok(Seen::Closed), "the stream's socket is closed");
    }

    #[test]
    fn stopping_the_connection_cuts_its_stream_at_once() {
        let (backend, heard, seen) = connect();
        backend.stop();
        assert_ended(&heard, &seen);
    }

    #[test]
    fn closing_the_input_cuts_the_stream_once_the_writer_is_done() {
        let (mut backend, heard, seen) = connect();
        backend.close_input();
        assert_ended(&heard, &seen);
    }
}
