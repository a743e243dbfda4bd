//! A backend reached over legacy HTTP+SSE (protocol 2024-11-05).
//!
//! A reader thread holds the `GET` stream: its first `endpoint` event says where to post, every
//! `message` event after it is a message for the dispatcher, and the end of the stream is the end of
//! the connection (the dispatcher then reconnects with backoff). A writer thread posts the
//! dispatcher's messages to the endpoint in order; the server answers 202 and replies on the stream.

use super::remote::{classify, resolve, status_error, Failure, Remote, MAX_MESSAGE};
use super::Link;
use crate::config::RemoteConfig;
use crate::jsonrpc::Message;
use crate::sse::SseReader;
use crossbeam_channel::{Receiver, Sender};
use std::io::{self, BufReader};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

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
}

impl SseBackend {
    pub fn start(key: &str, config: RemoteConfig, link: Link, timeout: Duration) -> io::Result<SseBackend> {
        let shared =
            Arc::new(Shared { remote: Remote::new(key, config, link, timeout), endpoint: Mutex::new(None), announced: Condvar::new() });
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

    pub fn close_input(&mut self) {
        self.outbox = None;
    }
}

impl Shared {
    fn read_stream(&self) {
        let remote = &self.remote;
        // The stream may stay quiet for long, but not forever: after QUIET_STREAM the connection counts as
        // lost and the dispatcher connects again (which also ends this thread if it was closed meanwhile).
        let req = remote.with_auth(remote.agent().get(&remote.config.url)).header("Accept", "text/event-stream");
        let response = match req.config().timeout_per_read(Some(super::remote::QUIET_STREAM)).build().call() {
            Ok(response) if response.status().is_success() => response,
            Ok(response) => return remote.close(format!("GET {}: {}", remote.config.url, status_error(response))),
            Err(e) => return remote.close(format!("cannot reach {}: {e}", remote.config.url)),
        };
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
                Ok(None) => return remote.close("the SSE stream ended".into()),
                Err(e) => return remote.close(format!("the SSE stream failed: {e}")),
            }
            if remote.is_closed() {
                return;
            }
        }
    }

    fn write_loop(&self, inbox: &Receiver<Message>) {
        for msg in inbox {
            if self.remote.is_closed() {
                return;
            }
            let Some(endpoint) = self.wait_endpoint() else {
                return self.remote.close("the server announced no endpoint".into());
            };
            let req = self.remote.with_auth(self.remote.agent().post(&endpoint)).header("Content-Type", "application/json");
            match req.send(msg.to_json()) {
                Ok(response) if response.status().is_success() => {}
                Ok(response) => self.remote.fail_request(&msg, &status_error(response)),
                Err(e) => match classify(e) {
                    Failure::Refused(why) => return self.remote.refused(&msg, &why),
                    Failure::Unreachable(why) => return self.remote.close(format!("cannot reach {endpoint}: {why}")),
                    Failure::Request(why) => self.remote.fail_request(&msg, &why),
                },
            }
        }
        self.remote.close("closed".into());
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
