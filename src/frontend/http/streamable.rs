//! Streamable HTTP (protocol 2025-03-26 and later) on `/mcp`.
//!
//! `POST` carries one message. `initialize` without a session starts one and the answer carries its
//! `Mcp-Session-Id`; other messages must name a live session (400 without, 404 for an unknown one, so the
//! client re-initializes). Notifications and responses get 202. A request's answer is plain JSON when it
//! is the first thing the dispatcher sends back; if progress or a server request comes first, the
//! response turns into an SSE stream that ends with the answer. `GET` opens the session's standing
//! stream, `DELETE` ends the session.
//!
//! A `POST` whose `MCP-Protocol-Version` names no handshake-era version is a 2026-07-28 request: no
//! session, its routing headers checked against its body, its answer dressed for its era, and closing
//! its connection cancels it.

use super::{parse_body, pump, rpc_error, Frontend, ACK_TIMEOUT, LIVENESS_CHECK};
use crate::event::{Access, ClientId, Era, Event, Reply, PROTOCOL_VERSIONS};
use crate::http::{EventStream, Exchange, Request, Response};
use crate::jsonrpc::{code, Kind, Message};
use crate::modern;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const SESSION_HEADER: &str = "Mcp-Session-Id";

pub(super) fn handle(fe: &Frontend, req: &Request, ex: &mut Exchange, access: &Access) {
    if fe.settings.stateless && req.method != "POST" {
        let why = "Method not allowed: this proxy runs stateless (no sessions, no GET stream)";
        return ex.respond(rpc_error(405, -32000, why).with_header("Allow", "POST"));
    }
    // A protocol version header that names no handshake-era version marks a 2026-07-28 request (or one
    // for a version the proxy does not speak, which the modern checks refuse with the versions it does).
    if req.header("mcp-protocol-version").is_some_and(|v| !PROTOCOL_VERSIONS.contains(&v.trim())) {
        return match req.method.as_str() {
            "POST" => modern_post(fe, req, ex, access),
            // 2026-07-28 has no sessions, so no standing stream to GET and nothing to DELETE.
            method => ex.respond(
                rpc_error(405, -32600, &format!("Method {method} not allowed: MCP 2026-07-28 has no sessions"))
                    .with_header("Allow", "POST"),
            ),
        };
    }
    match req.method.as_str() {
        "POST" => post(fe, req, ex, access),
        "GET" => get(fe, req, ex, access),
        "DELETE" => ex.respond(delete(fe, req, access)),
        other => {
            ex.respond(rpc_error(405, -32600, &format!("Method {other} not allowed on /mcp")).with_header("Allow", "GET, POST, DELETE"))
        }
    }
}

fn post(fe: &Frontend, req: &Request, ex: &mut Exchange, access: &Access) {
    let msg = match parse_body(req) {
        Ok(msg) => msg,
        Err(response) => return ex.respond(response),
    };
    let stateless = fe.settings.stateless;
    let (session, created) = match req.header("mcp-session-id") {
        Some(session) if !stateless => (session.to_owned(), false),
        // Stateless: every request is a session of its own, forgotten once answered.
        _ if stateless => match start_session(fe, req, access) {
            Ok(session) => (session, false),
            Err(response) => return ex.respond(response),
        },
        None if msg.kind() == Kind::Request && msg.method() == "initialize" => match start_session(fe, req, access) {
            Ok(session) => (session, true),
            Err(response) => return ex.respond(response),
        },
        _ => return ex.respond(rpc_error(400, -32000, "Bad Request: Mcp-Session-Id header is required")),
    };
    if stateless {
        let _guard = EndOnDrop(fe, session.clone(), access.clone());
        return exchange(fe, req, ex, msg, session, false, access);
    }
    exchange(fe, req, ex, msg, session, created, access);
}

/// Ends a stateless request's throwaway session however the request ends (with its owner).
struct EndOnDrop<'a>(&'a Frontend, String, Access);

impl Drop for EndOnDrop<'_> {
    fn drop(&mut self) {
        let (reply, _ack) = crossbeam_channel::bounded(1);
        let (session, access) = (std::mem::take(&mut self.1), std::mem::take(&mut self.2));
        let _ = self.0.events.send(Event::EndSession { session, access, reply });
    }
}

/// Hands one posted message to the dispatcher and writes what comes back.
fn exchange(fe: &Frontend, req: &Request, ex: &mut Exchange, msg: Message, session: String, created: bool, access: &Access) {
    let request_id = (msg.kind() == Kind::Request).then(|| msg.id.clone()).flatten();
    let (reply, replies) = crossbeam_channel::unbounded();
    if fe.events.send(Event::FromSession { session: session.clone(), access: access.clone(), msg, reply, inline: true }).is_err() {
        return ex.respond(Response::error(503, "shutting down"));
    }
    let first = if request_id.is_some() { replies.recv().ok() } else { replies.recv_timeout(ACK_TIMEOUT).ok() };
    let header = [(SESSION_HEADER, session.as_str())];
    let headers: &[(&str, &str)] = if created { &header } else { &[] };
    match first {
        Some(Reply::Accepted) => ex.respond(Response::empty(202)),
        Some(Reply::UnknownSession) => ex.respond(unknown_session(&session)),
        Some(Reply::Refused(status, why)) => ex.respond(Response::error(status, &why)),
        Some(Reply::Message(msg)) => {
            let style = Style { dress: &|m| m, error_statuses: false, keepalive: fe.settings.keepalive };
            answer(ex, req, headers, msg, &replies, request_id.as_ref(), &style);
        }
        None => ex.respond(Response::error(503, "the dispatcher did not answer")),
    }
}

/// A 2026-07-28 request: checked (routing headers against the body, the envelope, the method), then
/// handed to the dispatcher with no session, and answered on this connection alone. Notifications have
/// nothing to say to the proxy over this transport (a request is cancelled by closing its stream).
fn modern_post(fe: &Frontend, req: &Request, ex: &mut Exchange, access: &Access) {
    let msg = match parse_body(req) {
        Ok(msg) => msg,
        Err(response) => return ex.respond(response),
    };
    if msg.kind() != Kind::Request {
        return ex.respond(Response::empty(202));
    }
    let id = msg.id.clone().unwrap_or_default();
    let checked = modern::check_headers(&msg, |name| req.header(name)).and_then(|()| modern::check(&msg, Era::Modern));
    if let Err(refusal) = checked {
        return ex.respond(json_response(refusal.status(), &[], &refusal.to_message(id)));
    }
    if msg.method() == "subscriptions/listen" && !req.accepts("text/event-stream") {
        // A listen is a stream or nothing: without one it would only hold the connection.
        let refusal = modern::Refusal::new(code::INVALID_REQUEST, "subscriptions/listen answers with a text/event-stream");
        return ex.respond(json_response(406, &[], &refusal.to_message(id)));
    }
    let method = msg.method().to_owned();
    let client = ClientId::fresh();
    let (reply, replies) = crossbeam_channel::unbounded();
    let param_headers = req.headers_starting_with("mcp-param-");
    if fe.events.send(Event::Stateless { client, msg, reply, access: access.clone(), param_headers }).is_err() {
        return ex.respond(Response::error(503, "shutting down"));
    }
    let dress = |m: Message| modern::dress(&method, m);
    let style = Style { dress: &dress, error_statuses: true, keepalive: fe.settings.keepalive };
    let answered = first_reply(ex, &replies).map(|first| answer(ex, req, &[], first, &replies, Some(&id), &style));
    if answered != Some(Answered::Completely) {
        // The client went away first: the request is cancelled, as closing its stream means.
        let _ = fe.events.send(Event::ClientGone { client });
    }
}

/// The first message about a request, waited for as long as its client is there to read it.
fn first_reply(ex: &Exchange, replies: &Receiver<Reply>) -> Option<Message> {
    reply_while_connected(ex, replies, &|_| true)
}

fn start_session(fe: &Frontend, req: &Request, access: &Access) -> Result<String, Response> {
    let (client, session) = fe.open_session(req, access.clone(), None)?;
    let short = &session[..session.len().min(12)];
    if fe.settings.stateless {
        log::debug!("stateless request {short} (client {})", client.0);
    } else {
        log::info!("Streamable HTTP session {short} started (client {})", client.0);
    }
    Ok(session)
}

/// How the answer to a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answered {
    /// The response was written.
    Completely,
    /// The client went away, or the dispatcher let go of the request, before the response.
    Cut,
}

/// How a request's answer is written for its client's era.
struct Style<'a> {
    /// Prepares each message (a 2026-07-28 client's answers are dressed for it).
    dress: &'a dyn Fn(Message) -> Message,
    /// A 2026-07-28 client learns a malformed request from a 400 and an unknown method from a 404; a
    /// handshake-era client gets every JSON-RPC answer with 200.
    error_statuses: bool,
    keepalive: Duration,
}

/// Writes the answer to a request: JSON if the response is the first message, else an SSE stream of
/// every message about the request (kept alive with comments while it waits), ending with the response.
fn answer(
    ex: &mut Exchange,
    req: &Request,
    headers: &[(&str, &str)],
    first: Message,
    replies: &Receiver<Reply>,
    id: Option<&Value>,
    style: &Style,
) -> Answered {
    let (dress, keepalive) = (style.dress, style.keepalive);
    let is_response = |m: &Message| m.kind() == Kind::Response && m.id.as_ref() == id;
    if is_response(&first) {
        let first = dress(first);
        let status = first.error.as_ref().filter(|_| style.error_statuses).map_or(200, |e| error_status(e.get()));
        ex.respond(json_response(status, headers, &first));
        return Answered::Completely;
    }
    if !req.accepts("text/event-stream") {
        // The client cannot take a stream: only the response can reach it, while the client is there.
        return match reply_while_connected(ex, replies, &is_response) {
            Some(m) => {
                ex.respond(json_response(200, headers, &dress(m)));
                Answered::Completely
            }
            None if ex.peer_closed() => Answered::Cut,
            None => {
                ex.respond(Response::error(503, "the dispatcher did not answer"));
                Answered::Cut
            }
        };
    }
    let Ok(mut stream) = ex.stream(headers) else { return Answered::Cut };
    let mut next = Some(first);
    while let Some(msg) = next.take() {
        let done = is_response(&msg);
        if stream.event(Some("message"), None, &dress(msg).to_json()).is_err() {
            return Answered::Cut;
        }
        if done {
            ex.finish_stream(stream);
            return Answered::Completely;
        }
        next = next_message(&mut stream, replies, keepalive);
    }
    Answered::Cut
}

/// The first message about a request that `wanted` accepts, waited for as long as its client is connected.
fn reply_while_connected(ex: &Exchange, replies: &Receiver<Reply>, wanted: &dyn Fn(&Message) -> bool) -> Option<Message> {
    loop {
        match replies.recv_timeout(LIVENESS_CHECK) {
            Ok(Reply::Message(m)) if wanted(&m) => return Some(m),
            Ok(_) => continue,
            Err(RecvTimeoutError::Timeout) if ex.peer_closed() => return None,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return None,
        }
    }
}

/// The next message for a request's stream, with a comment every `keepalive` while there is none; `None`
/// once the client or the dispatcher has let go.
fn next_message(stream: &mut EventStream, replies: &Receiver<Reply>, keepalive: Duration) -> Option<Message> {
    let mut last_write = Instant::now();
    loop {
        match replies.recv_timeout(keepalive.min(LIVENESS_CHECK)) {
            Ok(Reply::Message(m)) => return Some(m),
            Ok(_) => continue,
            Err(RecvTimeoutError::Timeout) if stream.peer_closed() => return None,
            Err(RecvTimeoutError::Timeout) if last_write.elapsed() >= keepalive => {
                stream.comment("keepalive").ok()?;
                last_write = Instant::now();
            }
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return None,
        }
    }
}

/// The HTTP status of an error answer to a 2026-07-28 client: 400 for a malformed request, 404 for an
/// unknown method, 200 for any other error (the request's own outcome).
fn error_status(error: &str) -> u16 {
    let code = serde_json::from_str::<Value>(error).ok().and_then(|e| e.get("code").and_then(Value::as_i64));
    code.map_or(200, modern::http_status)
}

fn json_response(status: u16, headers: &[(&str, &str)], msg: &Message) -> Response {
    headers.iter().fold(Response::new(status, "application/json", msg.to_json()), |r, (k, v)| r.with_header(k, v))
}

fn unknown_session(session: &str) -> Response {
    rpc_error(404, -32001, &format!("Session not found: {session}"))
}

/// Opens the session's standing stream for messages that answer no request (list changes, logs,
/// requests from backends).
fn get(fe: &Frontend, req: &Request, ex: &mut Exchange, access: &Access) {
    let Some(session) = req.header("mcp-session-id").map(str::to_owned) else {
        return ex.respond(rpc_error(400, -32000, "Bad Request: Mcp-Session-Id header is required"));
    };
    if !req.accepts("text/event-stream") {
        return ex.respond(rpc_error(406, -32000, "Not Acceptable: GET /mcp is a text/event-stream"));
    }
    static NEXT_STREAM: AtomicU64 = AtomicU64::new(1);
    let stream_id = NEXT_STREAM.fetch_add(1, Ordering::Relaxed);
    let (outbox, inbox) = crossbeam_channel::unbounded();
    let (reply, ack) = crossbeam_channel::bounded(1);
    let open = Event::OpenStream { session: session.clone(), access: access.clone(), stream: stream_id, outbox, reply };
    if fe.events.send(open).is_err() {
        return ex.respond(Response::error(503, "shutting down"));
    }
    match ack.recv_timeout(ACK_TIMEOUT) {
        Ok(Reply::Accepted) => {}
        Ok(Reply::UnknownSession) => return ex.respond(unknown_session(&session)),
        Ok(_) | Err(_) => return ex.respond(Response::error(503, "the dispatcher did not answer")),
    }
    if let Ok(mut stream) = ex.stream(&[]) {
        // Replaced by a newer stream or the session ended: end this one properly.
        if pump(&mut stream, &inbox, fe.settings.keepalive).is_ok() {
            ex.finish_stream(stream);
        }
    }
    let _ = fe.events.send(Event::StreamClosed { session, stream: stream_id });
}

fn delete(fe: &Frontend, req: &Request, access: &Access) -> Response {
    let Some(session) = req.header("mcp-session-id").map(str::to_owned) else {
        return rpc_error(400, -32000, "Bad Request: Mcp-Session-Id header is required");
    };
    let (reply, ack) = crossbeam_channel::bounded(1);
    if fe.events.send(Event::EndSession { session: session.clone(), access: access.clone(), reply }).is_err() {
        return Response::error(503, "shutting down");
    }
    match ack.recv_timeout(ACK_TIMEOUT) {
        Ok(Reply::Accepted) => Response::empty(200),
        Ok(Reply::UnknownSession) => unknown_session(&session),
        Ok(_) | Err(_) => Response::error(503, "the dispatcher did not answer"),
    }
}
