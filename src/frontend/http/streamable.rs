//! Streamable HTTP (protocol 2025-03-26 and later) on `/mcp`.
//!
//! `POST` carries one message. `initialize` without a session starts one and the answer carries its
//! `Mcp-Session-Id`; other messages must name a live session (400 without, 404 for an unknown one, so the
//! client re-initializes). Notifications and responses get 202. A request's answer is plain JSON when it
//! is the first thing the dispatcher sends back; if progress or a server request comes first, the
//! response turns into an SSE stream that ends with the answer. `GET` opens the session's standing
//! stream, `DELETE` ends the session.

use super::{parse_body, pump, rpc_error, Frontend, ACK_TIMEOUT};
use crate::event::{Event, Reply, PROTOCOL_VERSIONS};
use crate::http::{Exchange, Request, Response};
use crate::jsonrpc::{Kind, Message};
use crossbeam_channel::Receiver;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};

const SESSION_HEADER: &str = "Mcp-Session-Id";

pub(super) fn handle(fe: &Frontend, req: &Request, ex: &mut Exchange) {
    if fe.settings.stateless && req.method != "POST" {
        let why = "Method not allowed: this proxy runs stateless (no sessions, no GET stream)";
        return ex.respond(rpc_error(405, -32000, why).with_header("Allow", "POST"));
    }
    if let Some(version) = req.header("mcp-protocol-version") {
        if !PROTOCOL_VERSIONS.contains(&version.trim()) {
            let why = format!("Bad Request: unsupported MCP-Protocol-Version '{version}' (supported: {PROTOCOL_VERSIONS:?})");
            return ex.respond(rpc_error(400, -32600, &why));
        }
    }
    match req.method.as_str() {
        "POST" => post(fe, req, ex),
        "GET" => get(fe, req, ex),
        "DELETE" => ex.respond(delete(fe, req)),
        other => {
            ex.respond(rpc_error(405, -32600, &format!("Method {other} not allowed on /mcp")).with_header("Allow", "GET, POST, DELETE"))
        }
    }
}

fn post(fe: &Frontend, req: &Request, ex: &mut Exchange) {
    let msg = match parse_body(req) {
        Ok(msg) => msg,
        Err(response) => return ex.respond(response),
    };
    let stateless = fe.settings.stateless;
    let (session, created) = match req.header("mcp-session-id") {
        Some(session) if !stateless => (session.to_owned(), false),
        // Stateless: every request is a session of its own, forgotten once answered.
        _ if stateless => match start_session(fe, req) {
            Ok(session) => (session, false),
            Err(response) => return ex.respond(response),
        },
        None if msg.kind() == Kind::Request && msg.method() == "initialize" => match start_session(fe, req) {
            Ok(session) => (session, true),
            Err(response) => return ex.respond(response),
        },
        _ => return ex.respond(rpc_error(400, -32000, "Bad Request: Mcp-Session-Id header is required")),
    };
    if stateless {
        let _guard = EndOnDrop(fe, session.clone());
        return exchange(fe, req, ex, msg, session, false);
    }
    exchange(fe, req, ex, msg, session, created);
}

/// Ends a stateless request's throwaway session however the request ends.
struct EndOnDrop<'a>(&'a Frontend, String);

impl Drop for EndOnDrop<'_> {
    fn drop(&mut self) {
        let (reply, _ack) = crossbeam_channel::bounded(1);
        let _ = self.0.events.send(Event::EndSession { session: std::mem::take(&mut self.1), reply });
    }
}

/// Hands one posted message to the dispatcher and writes what comes back.
fn exchange(fe: &Frontend, req: &Request, ex: &mut Exchange, msg: Message, session: String, created: bool) {
    let request_id = (msg.kind() == Kind::Request).then(|| msg.id.clone()).flatten();
    let (reply, replies) = crossbeam_channel::unbounded();
    if fe.events.send(Event::FromSession { session: session.clone(), msg, reply, inline: true }).is_err() {
        return ex.respond(Response::error(503, "shutting down"));
    }
    let first = if request_id.is_some() { replies.recv().ok() } else { replies.recv_timeout(ACK_TIMEOUT).ok() };
    let header = [(SESSION_HEADER, session.as_str())];
    let headers: &[(&str, &str)] = if created { &header } else { &[] };
    match first {
        Some(Reply::Accepted) => ex.respond(Response::empty(202)),
        Some(Reply::UnknownSession) => ex.respond(unknown_session(&session)),
        Some(Reply::Refused(status, why)) => ex.respond(Response::error(status, &why)),
        Some(Reply::Message(msg)) => answer(ex, req, headers, msg, &replies, request_id.as_ref()),
        None => ex.respond(Response::error(503, "the dispatcher did not answer")),
    }
}

fn start_session(fe: &Frontend, req: &Request) -> Result<String, Response> {
    let (client, session) = fe.open_session(req, None)?;
    let short = &session[..session.len().min(12)];
    if fe.settings.stateless {
        log::debug!("stateless request {short} (client {})", client.0);
    } else {
        log::info!("Streamable HTTP session {short} started (client {})", client.0);
    }
    Ok(session)
}

/// Writes the answer to a request: JSON if the response is the first message, else an SSE stream of
/// every message about the request, ending with the response.
fn answer(ex: &mut Exchange, req: &Request, headers: &[(&str, &str)], first: Message, replies: &Receiver<Reply>, id: Option<&Value>) {
    let is_response = |m: &Message| m.kind() == Kind::Response && m.id.as_ref() == id;
    if is_response(&first) {
        return ex.respond(json_response(headers, &first));
    }
    if !req.accepts("text/event-stream") {
        // The client cannot take a stream: only the response can reach it.
        let response = replies.iter().find_map(|r| match r {
            Reply::Message(m) if is_response(&m) => Some(m),
            _ => None,
        });
        return match response {
            Some(m) => ex.respond(json_response(headers, &m)),
            None => ex.respond(Response::error(503, "the dispatcher did not answer")),
        };
    }
    let Ok(mut stream) = ex.stream(headers) else { return };
    let mut next = Some(first);
    while let Some(msg) = next.take() {
        let done = is_response(&msg);
        if stream.event(Some("message"), None, &msg.to_json()).is_err() {
            return;
        }
        if done {
            return ex.finish_stream(stream);
        }
        next = replies.iter().find_map(|r| match r {
            Reply::Message(m) => Some(m),
            _ => None,
        });
    }
}

fn json_response(headers: &[(&str, &str)], msg: &Message) -> Response {
    headers.iter().fold(Response::new(200, "application/json", msg.to_json()), |r, (k, v)| r.with_header(k, v))
}

fn unknown_session(session: &str) -> Response {
    rpc_error(404, -32001, &format!("Session not found: {session}"))
}

/// Opens the session's standing stream for messages that answer no request (list changes, logs,
/// requests from backends).
fn get(fe: &Frontend, req: &Request, ex: &mut Exchange) {
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
    let open = Event::OpenStream { session: session.clone(), stream: stream_id, outbox, reply };
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

fn delete(fe: &Frontend, req: &Request) -> Response {
    let Some(session) = req.header("mcp-session-id").map(str::to_owned) else {
        return rpc_error(400, -32000, "Bad Request: Mcp-Session-Id header is required");
    };
    let (reply, ack) = crossbeam_channel::bounded(1);
    if fe.events.send(Event::EndSession { session: session.clone(), reply }).is_err() {
        return Response::error(503, "shutting down");
    }
    match ack.recv_timeout(ACK_TIMEOUT) {
        Ok(Reply::Accepted) => Response::empty(200),
        Ok(Reply::UnknownSession) => unknown_session(&session),
        Ok(_) | Err(_) => Response::error(503, "the dispatcher did not answer"),
    }
}
