//! Legacy HTTP+SSE (protocol 2024-11-05): `GET /sse` opens a session's stream, whose first event names
//! the endpoint to post to; `POST /message?sessionId=...` takes one message and answers 202, and the
//! reply arrives on the stream. The session lives exactly as long as its stream.

use super::{new_session_id, parse_body, pump, Frontend, ACK_TIMEOUT, STREAM_QUEUE};
use crate::http::{Exchange, Request, Response};
use crate::hub::{ClientId, Event, Reply};

pub(super) fn open(fe: &Frontend, ex: &mut Exchange) {
    let session = match new_session_id() {
        Ok(session) => session,
        Err(e) => return ex.respond(Response::error(500, &format!("cannot make a session id: {e}"))),
    };
    let client = ClientId::fresh();
    let (outbox, inbox) = crossbeam_channel::bounded(STREAM_QUEUE);
    let connected = Event::ClientConnected { client, session: Some(session.clone()), outbox: Some(outbox) };
    if fe.events.send(connected).is_err() {
        return ex.respond(Response::error(503, "shutting down"));
    }
    log::info!("SSE session {} opened (client {})", &session[..8], client.0);
    let endpoint = format!("/message?sessionId={session}");
    if let Ok(mut stream) = ex.stream(&[]) {
        let pumped = stream.event(Some("endpoint"), None, &endpoint).and_then(|()| pump(&mut stream, &inbox, fe.settings.keepalive));
        // The dispatcher ended the session: end the stream properly, so clients see a clean close.
        if pumped.is_ok() {
            ex.finish_stream(stream);
        }
    }
    log::info!("SSE session {} closed", &session[..8]);
    let _ = fe.events.send(Event::ClientGone { client });
}

pub(super) fn post(fe: &Frontend, req: &Request) -> Response {
    let Some(session) = req.query_param("sessionId").filter(|s| !s.is_empty()) else {
        return Response::error(400, "Missing sessionId query parameter");
    };
    let msg = match parse_body(req) {
        Ok(msg) => msg,
        Err(response) => return response,
    };
    let (reply, ack) = crossbeam_channel::bounded(1);
    let event = Event::FromSession { session: session.clone(), msg, reply, inline: false };
    if fe.events.send(event).is_err() {
        return Response::error(503, "shutting down");
    }
    match ack.recv_timeout(ACK_TIMEOUT) {
        Ok(Reply::Accepted) => Response::new(202, "text/plain", "Accepted"),
        Ok(Reply::UnknownSession) => Response::error(404, &format!("No active session found for ID {session}")),
        Ok(Reply::Message(_)) | Err(_) => Response::error(503, "the dispatcher did not answer"),
    }
}
