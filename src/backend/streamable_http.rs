//! A backend reached over Streamable HTTP (protocol 2025-03-26 and later).
//!
//! Every message is a `POST` to the server's URL; the answer comes back as JSON or as an SSE stream.
//! One ordered writer thread takes the dispatcher's messages in order: notifications and responses are
//! posted right there (they are quick and must not overtake each other), requests are handed to a pool
//! of worker threads so a slow tool call does not hold up the others. The session id the server gives
//! on `initialize` is sent on every later request; a 404 for it means the server forgot the session,
//! and the transport initializes again once, replays the request, and asks the dispatcher to refresh
//! the lists. When the server offers a `GET` stream for its own messages, a thread reads it.
//!
//! Streams that stay open are read through agents of their own ([`Abort`]), so they can be cut: the `GET`
//! stream, and each 2026-07-28 `subscriptions/listen`, whose answer is the stream of the notifications
//! it asked for. The dispatcher cancels a listen whose filter must change with `notifications/cancelled`;
//! a 2026-07-28 server takes no notifications over HTTP (a request is cancelled by closing its response
//! stream), so the writer cuts the listen's stream instead ([`Listens`]). When the connection is over
//! (the writer's end) or stopped (terminate, kill), every such stream is cut: otherwise each would keep a
//! thread blocked reading it, with its socket, for as long as the server pings it.

use super::abort::Abort;
use super::remote::{classify, header, status_error, Failure, Remote, Unauthorized};
use super::{Dialect, Link};
use crate::config::RemoteConfig;
use crate::jsonrpc::{Kind, Message};
use crate::modern;
use crossbeam_channel::{Receiver, Sender};
use serde_json::Value;
use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// Requests in flight to one backend at most; more wait in the queue.
const MAX_WORKERS: usize = 32;
const WORKER_STACK: usize = 256 * 1024;

pub struct StreamableHttpBackend {
    outbox: Option<Sender<Message>>,
    shared: Arc<Shared>,
}

struct Shared {
    remote: Remote,
    /// The era the server speaks: a 2026-07-28 server has no session and wants routing headers.
    dialect: Dialect,
    session: Mutex<Session>,
    /// Held while a new session is set up, so that workers hitting the same 404 set up only one.
    reinit: Mutex<()>,
    /// The `GET` stream's own agent.
    stream: Abort,
    listens: Listens,
}

/// The 2026-07-28 listens not yet over, by request id (as JSON text), each with its stream's own agent.
/// The writer enters a listen before a worker posts it, and the worker removes it when done: so a
/// cancellation, which the writer handles after the listen in the dispatcher's order, always finds it,
/// even before the worker has begun (the worker's request then fails at once, unreported).
#[derive(Default)]
struct Listens(Mutex<HashMap<String, Abort>>);

/// The workers that post requests. The writer thread owns it, so when that thread ends (the
/// connection closed) the job queue closes and every worker ends too.
struct Pool {
    jobs: Sender<Message>,
    queue: Receiver<Message>,
    workers: usize,
    idle: Arc<AtomicUsize>,
}

#[derive(Default)]
struct Session {
    id: Option<String>,
    protocol_version: Option<String>,
    /// The dispatcher's `initialize` request, replayed when the server forgets the session.
    initialize: Option<Message>,
    listening: bool,
}

impl StreamableHttpBackend {
    pub fn start(key: &str, config: RemoteConfig, link: Link, timeout: Duration, dialect: Dialect) -> io::Result<StreamableHttpBackend> {
        let remote = Remote::new(key, config, link, timeout);
        let stream = remote.abortable();
        let shared =
            Arc::new(Shared { remote, dialect, session: Mutex::default(), reinit: Mutex::new(()), stream, listens: Listens::default() });
        let (outbox, inbox) = crossbeam_channel::unbounded();
        let writer = shared.clone();
        thread::Builder::new().name(format!("{key}-http")).stack_size(WORKER_STACK).spawn(move || writer.write_loop(&inbox))?;
        Ok(StreamableHttpBackend { outbox: Some(outbox), shared })
    }

    pub fn send(&self, msg: Message) -> bool {
        !self.shared.remote.is_closed() && self.outbox.as_ref().is_some_and(|o| o.send(msg).is_ok())
    }

    /// Ends the session: queued messages are still posted, then the streams are cut and the session is
    /// deleted.
    pub fn close_input(&mut self) {
        self.outbox = None;
    }

    /// Cuts the streams at once (terminate and kill: the server is not ours to stop). Messages still
    /// queued are posted; the session ends when the input is closed.
    pub fn stop(&self) {
        self.shared.cut_streams();
    }
}

impl Listens {
    fn key(id: Option<&Value>) -> Option<String> {
        id.map(Value::to_string)
    }

    /// Enters a listen request, with a new agent for its stream.
    fn enter(&self, msg: &Message, remote: &Remote) {
        if let Some(key) = Self::key(msg.id.as_ref()) {
            self.lock().insert(key, remote.abortable());
        }
    }

    /// The agent of a listen entered before; `None` for any other request.
    fn get(&self, msg: &Message) -> Option<Abort> {
        Self::key(msg.id.as_ref()).and_then(|key| self.lock().get(&key).cloned())
    }

    fn remove(&self, msg: &Message) {
        if let Some(key) = Self::key(msg.id.as_ref()) {
            self.lock().remove(&key);
        }
    }

    /// Cuts the listen a `notifications/cancelled` names; false when it names no listen of ours.
    fn cancel(&self, cancelled: &Message) -> bool {
        let id = cancelled.params().ok().and_then(|params| params.value("requestId"));
        let listen = Self::key(id.as_ref()).and_then(|key| self.lock().get(&key).cloned());
        listen.inspect(Abort::abort).is_some()
    }

    fn cut_all(&self) {
        self.lock().values().for_each(Abort::abort);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Abort>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Pool {
    /// Queues a request for a worker, starting another worker when the idle ones are all spoken for by
    /// requests already queued (a worker counted idle may be about to take one of them; a request
    /// queued behind a long call or a 2026-07-28 listen would wait for it).
    fn submit(&mut self, shared: &Arc<Shared>, msg: Message) {
        if self.idle.load(Ordering::SeqCst) <= self.queue.len() && self.workers < MAX_WORKERS {
            let (shared, queue, idle) = (shared.clone(), self.queue.clone(), self.idle.clone());
            let spawned = thread::Builder::new()
                .name(format!("{}-post", shared.remote.key))
                .stack_size(WORKER_STACK)
                .spawn(move || work(&shared, &queue, &idle));
            self.workers += usize::from(spawned.is_ok());
        }
        let _ = self.jobs.send(msg);
    }
}

fn work(shared: &Arc<Shared>, queue: &Receiver<Message>, idle: &AtomicUsize) {
    loop {
        idle.fetch_add(1, Ordering::SeqCst);
        let job = queue.recv();
        idle.fetch_sub(1, Ordering::SeqCst);
        match job {
            Ok(msg) if !shared.remote.is_closed() => shared.post(msg, true),
            _ => return,
        }
    }
}

impl Shared {
    fn write_loop(self: &Arc<Self>, inbox: &Receiver<Message>) {
        let (jobs, queue) = crossbeam_channel::unbounded();
        let mut pool = Pool { jobs, queue, workers: 0, idle: Arc::default() };
        for msg in inbox {
            if self.remote.is_closed() {
                break;
            }
            if msg.kind() == Kind::Request && msg.method() != "initialize" {
                if msg.method() == "subscriptions/listen" && self.dialect.is_modern() {
                    self.listens.enter(&msg, &self.remote);
                }
                pool.submit(self, msg);
            } else {
                self.post(msg, true);
            }
        }
        drop(pool);
        // Nothing more goes to the server, so nothing more will be said on its streams.
        self.cut_streams();
        self.end_session();
        self.remote.close("session closed".into());
    }

    fn cut_streams(&self) {
        self.stream.abort();
        self.listens.cut_all();
    }

    fn session(&self) -> MutexGuard<'_, Session> {
        // A worker that panicked holding the lock left consistent data: the fields are set whole.
        self.session.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Posts one message and delivers whatever the server answers. `may_retry` allows one more try:
    /// with a new session when the server says it forgot ours, or with a new access token when it
    /// refused the one sent.
    fn post(self: &Arc<Self>, msg: Message, may_retry: bool) {
        let msg = self.dialect.translate(msg);
        if modern::requested_version(&msg).is_some() {
            return self.post_modern(&msg);
        }
        if self.dialect.is_modern() {
            // 2026-07-28 has no client notifications over HTTP (a request is cancelled by closing its
            // stream, which the proxy can do for a listen) and no requests from the server to answer.
            if msg.method() == "notifications/cancelled" && self.listens.cancel(&msg) {
                return log::debug!("[{}] closed the stream of a cancelled listen", self.remote.key);
            }
            return log::debug!("[{}] {} not sent: the server speaks 2026-07-28", self.remote.key, msg.method());
        }
        let is_initialize = msg.method() == "initialize";
        if is_initialize {
            self.session().initialize = Some(msg.clone());
        }
        let (session_id, version) = {
            let s = self.session();
            (s.id.clone(), s.protocol_version.clone())
        };
        // Before the token is read: a refresh after this moment gives a token the server has not refused.
        let sent_at = Instant::now();
        let mut req = self
            .remote
            .with_auth(self.remote.agent().post(&self.remote.config.url))
            .header("Content-Type", "application/json")
            .header("Accept", "application/json, text/event-stream");
        if let Some(id) = &session_id {
            req = req.header("Mcp-Session-Id", id);
        }
        if let Some(version) = &version {
            req = req.header("MCP-Protocol-Version", version);
        }
        let response = match req.send(msg.to_json()) {
            Ok(response) => response,
            Err(e) => return self.failed(&msg, classify(e)),
        };
        let status = response.status().as_u16();
        if status == 401 {
            match self.remote.unauthorized(&response, sent_at) {
                Unauthorized::Retry if may_retry => return self.post(msg, false),
                Unauthorized::NeedsLogin(why) => return self.remote.needs_login(&msg, &why),
                Unauthorized::Retry | Unauthorized::Fail => {}
            }
        }
        if let Some(why) = (status == 403).then(|| self.remote.insufficient_scope(&response)).flatten() {
            return self.remote.fail_request(&msg, &why);
        }
        if status == 404 && session_id.is_some() && !is_initialize {
            if !may_retry {
                return self.failed(&msg, Failure::Request("session not found after a new initialize".into()));
            }
            return match self.renew_session(session_id.as_deref()) {
                Ok(()) => self.post(msg, false),
                Err(why) => self.failed(&msg, Failure::Unreachable(why)),
            };
        }
        if !(200..300).contains(&status) {
            return self.failed(&msg, Failure::Request(status_error(response)));
        }
        if is_initialize {
            self.session().id = header(&response, "mcp-session-id");
        }
        let mut saw_initialize_result = false;
        let delivered = self.remote.deliver_body(response, msg.id.as_ref(), &mut |reply| {
            if is_initialize && reply.kind() == Kind::Response && reply.id == msg.id {
                self.session().protocol_version = protocol_version(reply);
                saw_initialize_result = true;
            }
        });
        if let Err(failure) = delivered {
            self.failed(&msg, failure);
        }
        if saw_initialize_result {
            self.listen();
        }
    }

    /// Posts a 2026-07-28 request: no session, the routing headers, and an error answer (4xx with a
    /// JSON-RPC body) delivered as the request's answer, not taken for a broken session. A listen goes
    /// through its own agent, and once cut (cancelled) its failure is nobody's: a cancelled request gets
    /// no answer, and the connection is fine.
    fn post_modern(&self, msg: &Message) {
        let Some(listen) = self.listens.get(msg) else {
            return self.exchange_modern(msg, self.remote.agent(), &|failure| self.failed(msg, failure), true);
        };
        let failed = |failure| {
            if !listen.is_aborted() {
                self.failed(msg, failure);
            }
        };
        self.exchange_modern(msg, listen.agent(), &failed, true);
        self.listens.remove(msg);
    }

    /// `may_retry`: one more try with a new access token when the server refused the one sent.
    fn exchange_modern(&self, msg: &Message, agent: &ureq::Agent, failed: &dyn Fn(Failure), may_retry: bool) {
        // Before the token is read: a refresh after this moment gives a token the server has not refused.
        let sent_at = Instant::now();
        let mut req = self
            .remote
            .with_auth(agent.post(&self.remote.config.url))
            .header("Content-Type", "application/json")
            .header("Accept", "application/json, text/event-stream");
        for (name, value) in modern::routing_headers(msg) {
            req = req.header(name, &value);
        }
        for (name, value) in self.dialect.param_headers(msg) {
            req = req.header(&name, &value);
        }
        let response = match req.send(msg.to_json()) {
            Ok(response) => response,
            Err(e) => return failed(classify(e)),
        };
        let status = response.status().as_u16();
        if status == 401 {
            match self.remote.unauthorized(&response, sent_at) {
                Unauthorized::Retry if may_retry => return self.exchange_modern(msg, agent, failed, false),
                Unauthorized::NeedsLogin(why) => return self.remote.needs_login(msg, &why),
                Unauthorized::Retry | Unauthorized::Fail => {}
            }
        }
        if let Some(why) = (status == 403).then(|| self.remote.insufficient_scope(&response)).flatten() {
            return failed(Failure::Request(why));
        }
        if (200..300).contains(&status) {
            if let Err(failure) = self.remote.deliver_body(response, msg.id.as_ref(), &mut |_| {}) {
                failed(failure);
            }
            return;
        }
        let body = response.into_body().with_config().limit(super::remote::MAX_MESSAGE as u64).read_to_string().unwrap_or_default();
        match Message::parse(&body) {
            Ok(mut answer) if answer.error.is_some() => {
                // Some servers answer a request they could not read with a null id: it is still this one's.
                answer.id = msg.id.clone();
                self.remote.link.message(answer);
            }
            _ => failed(Failure::Request(format!("HTTP {status}: {}", super::preview(body.trim(), 300)))),
        }
    }

    fn failed(&self, msg: &Message, failure: Failure) {
        match failure {
            Failure::Refused(why) => self.remote.refused(msg, &why),
            Failure::Unreachable(why) => {
                log::warn!("[{}] cannot reach {}: {why}", self.remote.key, self.remote.config.url);
                self.remote.close(format!("cannot reach {}: {why}", self.remote.config.url));
            }
            Failure::Request(why) => self.remote.fail_request(msg, &why),
        }
    }

    /// Replaces a session the server forgot, once however many workers found out: a worker that waited
    /// for the lock while another set up a new session just uses that one.
    fn renew_session(self: &Arc<Self>, forgotten: Option<&str>) -> Result<(), String> {
        let _one_at_a_time = self.reinit.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if self.session().id.as_deref() != forgotten {
            return Ok(());
        }
        log::warn!("[{}] the server forgot the session; initializing again", self.remote.key);
        self.reinitialize()
    }

    /// Starts a new session with the dispatcher's original `initialize`, then asks the dispatcher to
    /// refresh every list, since a new session may offer different ones.
    fn reinitialize(self: &Arc<Self>) -> Result<(), String> {
        let Some(init) = self.session().initialize.clone() else {
            return Err("no initialize to replay".into());
        };
        let mut req = self
            .remote
            .with_auth(self.remote.agent().post(&self.remote.config.url))
            .header("Content-Type", "application/json")
            .header("Accept", "application/json, text/event-stream");
        if let Some(version) = self.session().protocol_version.clone() {
            req = req.header("MCP-Protocol-Version", version);
        }
        let response = req.send(init.to_json()).map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(status_error(response));
        }
        self.session().id = header(&response, "mcp-session-id");
        // The new initialize result is ours, not the dispatcher's: read it and drop it.
        let _ = response.into_body().with_config().limit(super::remote::MAX_MESSAGE as u64).read_to_string();
        self.post(Message::notification("notifications/initialized", None), false);
        for kind in ["tools", "prompts", "resources"] {
            let note = Message::notification(&format!("notifications/{kind}/list_changed"), None);
            self.remote.link.message(note);
        }
        Ok(())
    }

    /// Opens the `GET` stream for the server's own messages, once per connection, if the server has one.
    fn listen(self: &Arc<Self>) {
        if std::mem::replace(&mut self.session().listening, true) {
            return;
        }
        let shared = self.clone();
        let name = format!("{}-listen", self.remote.key);
        let _ = thread::Builder::new().name(name).stack_size(WORKER_STACK).spawn(move || shared.listen_loop());
    }

    fn listen_loop(&self) {
        let mut failures = 0u32;
        while !self.remote.is_closed() && !self.stream.is_aborted() && failures < 5 {
            let Some(session_id) = self.session().id.clone() else { return };
            // A silent stream is normal, but not forever: after a long quiet spell (not even a ping) the
            // stream is opened again. When the connection is over, the stream is cut (`cut_streams`).
            let req = self
                .remote
                .with_auth(self.stream.agent().get(&self.remote.config.url))
                .header("Accept", "text/event-stream")
                .header("Mcp-Session-Id", &session_id)
                .config()
                .timeout_per_read(Some(super::remote::QUIET_STREAM))
                .build();
            match req.call() {
                Ok(response) if response.status().as_u16() == 200 => {
                    failures = 0;
                    let _ = self.remote.deliver_body(response, None, &mut |_| {});
                }
                Ok(response) if response.status().as_u16() == 405 => {
                    log::debug!("[{}] the server offers no GET stream", self.remote.key);
                    return;
                }
                Ok(_) | Err(_) => failures += 1,
            }
            if self.stream.is_aborted() {
                return;
            }
            thread::sleep(Duration::from_secs(1));
        }
    }

    fn end_session(&self) {
        let Some(id) = self.session().id.clone() else { return };
        let req = self.remote.with_auth(self.remote.agent().delete(&self.remote.config.url)).header("Mcp-Session-Id", &id);
        let req = req.config().timeout_global(Some(Duration::from_secs(2))).build();
        if let Err(e) = req.call() {
            log::debug!("[{}] DELETE of the session failed: {e}", self.remote.key);
        }
    }
}

fn protocol_version(reply: &Message) -> Option<String> {
    let result: Value = serde_json::from_str(reply.result.as_ref()?.get()).ok()?;
    result.get("protocolVersion")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::super::abort::fake::{event_stream, serve, Seen};
    use super::*;
    use crate::event::{BackendId, Event};
    use crate::jsonrpc::raw;
    use serde_json::json;

    const SOON: Duration = Duration::from_secs(2);

    /// A 2026-07-28 backend on the fake server, with a listen (id 7) open; the backend, its events, and
    /// what the server saw.
    fn listening() -> (StreamableHttpBackend, Receiver<Event>, Receiver<Seen>) {
        // The listen's answer: its stream, acknowledged, then quiet.
        let ack = json!({ "jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged", "params": {} });
        let (url, seen) = serve(event_stream(&format!("data: {ack}\n")));
        let config = RemoteConfig::for_url(format!("{url}/mcp"));
        let (events, heard) = crossbeam_channel::unbounded();
        let dialect = Dialect::default();
        dialect.speak_modern(serde_json::Map::new());
        let link = Link::new(BackendId(0), 1, events);
        let backend = StreamableHttpBackend::start("modern", config, link, Duration::from_secs(3600), dialect).expect("a thread");
        backend.send(Message::request(
            json!(7),
            "subscriptions/listen",
            Some(raw(&json!({ "notifications": { "toolsListChanged": true } }))),
        ));
        assert!(
            matches!(seen.recv_timeout(SOON), Ok(Seen::Request(line, body)) if line.starts_with("POST /mcp") && body.contains("subscriptions/listen"))
        );
        match heard.recv_timeout(SOON) {
            Ok(Event::FromBackend { msg, .. }) => assert_eq!(msg.method(), "notifications/subscriptions/acknowledged"),
            _ => panic!("expected the listen's acknowledgement"),
        }
        (backend, heard, seen)
    }

    /// A handshake-era backend on a fake server that answers every request with `answer`.
    fn answering(answer: &str) -> (StreamableHttpBackend, Receiver<Event>) {
        let (url, _seen) = serve(answer.to_owned());
        let (events, heard) = crossbeam_channel::unbounded();
        let link = Link::new(BackendId(0), 1, events);
        let config = RemoteConfig::for_url(format!("{url}/mcp"));
        let backend =
            StreamableHttpBackend::start("remote", config, link, Duration::from_secs(3600), Dialect::default()).expect("a thread");
        (backend, heard)
    }

    #[test]
    fn a_server_that_answers_401_with_no_token_to_try_ends_the_connection_as_needing_a_login() {
        let (backend, heard) = answering("HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\nContent-Length: 0\r\n\r\n");
        backend.send(Message::request(json!(1), "initialize", Some(raw(&json!({ "protocolVersion": "2025-11-25" })))));
        match heard.recv_timeout(SOON) {
            Ok(Event::Undelivered { id, .. }) => assert_eq!(id, json!(1), "the request may be tried again later"),
            Ok(Event::FromBackend { msg, .. }) => panic!("the backend answered {}", msg.to_json()),
            Ok(Event::BackendExited { reason, .. }) => panic!("the connection ended first: {reason}"),
            _ => panic!("expected the request back, undelivered"),
        }
        match heard.recv_timeout(SOON) {
            Ok(Event::BackendExited { needs_login, reason, .. }) => {
                assert!(needs_login, "{reason}");
                assert!(reason.contains("login"), "{reason}");
            }
            _ => panic!("expected the connection's end"),
        }
    }

    #[test]
    fn a_401_without_a_bearer_challenge_fails_that_request_and_asks_for_no_login() {
        let (backend, heard) =
            answering("HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: ApiKey header=\"X-Api-Key\"\r\nContent-Length: 0\r\n\r\n");
        backend.send(Message::request(json!(3), "tools/list", None));
        match heard.recv_timeout(SOON) {
            Ok(Event::FromBackend { msg, .. }) => {
                let error = msg.error.map(|e| e.get().to_owned()).unwrap_or_default();
                assert!(error.contains("HTTP 401") && !error.contains("login"), "{error}");
            }
            _ => panic!("expected the request's error"),
        }
        assert!(heard.recv_timeout(Duration::from_millis(300)).is_err(), "the connection stays up");
    }

    #[test]
    fn a_403_for_want_of_a_scope_fails_that_request_naming_the_scope() {
        let forbidden = "HTTP/1.1 403 Forbidden\r\nWWW-Authenticate: Bearer error=\"insufficient_scope\", scope=\"mcp:admin\"\r\nContent-Length: 0\r\n\r\n";
        let (backend, heard) = answering(forbidden);
        backend.send(Message::request(json!(2), "tools/call", Some(raw(&json!({ "name": "drop_table" })))));
        match heard.recv_timeout(SOON) {
            Ok(Event::FromBackend { msg, .. }) => {
                let error = msg.error.map(|e| e.get().to_owned()).unwrap_or_default();
                assert!(error.contains("the server wants the scope 'mcp:admin' for this; run `mcp-proxy-server login remote`"), "{error}");
            }
            _ => panic!("expected the request's error"),
        }
        assert!(heard.recv_timeout(Duration::from_millis(300)).is_err(), "the connection stays up");
    }

    #[test]
    fn a_cancelled_listen_has_its_stream_closed_and_no_answer() {
        let (backend, heard, seen) = listening();
        backend.send(Message::notification("notifications/cancelled", Some(raw(&json!({ "requestId": 8 })))));
        assert!(seen.recv_timeout(Duration::from_millis(200)).is_err(), "another request's cancellation leaves the listen open");
        backend.send(Message::notification("notifications/cancelled", Some(raw(&json!({ "requestId": 7, "reason": "changed" })))));
        assert_eq!(seen.recv_timeout(SOON), Ok(Seen::Closed), "the listen's stream is closed");
        // A cancelled request gets no answer, and the connection is not taken for broken.
        assert!(heard.recv_timeout(Duration::from_millis(300)).is_err(), "the cut stream was reported");
        assert!(backend.shared.listens.lock().is_empty(), "the listen is forgotten");
    }

    #[test]
    fn stopping_the_connection_cuts_its_listens() {
        let (backend, heard, seen) = listening();
        backend.stop();
        assert_eq!(seen.recv_timeout(SOON), Ok(Seen::Closed), "the listen's stream is closed");
        assert!(heard.recv_timeout(Duration::from_millis(300)).is_err(), "the cut stream was reported");
    }
}
