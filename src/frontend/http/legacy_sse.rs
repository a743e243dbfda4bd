//! Legacy HTTP+SSE (protocol 2024-11-05): `GET /sse` opens a session's stream, whose first event names
//! the endpoint to post to; `POST /message?sessionId=...` takes one message and answers 202, and the
//! reply arrives on the stream. The session lives exactly as long as its stream. `GET /sse/<profile>` opens
//! a session of that profile; its posts go to the same `/message`.

use super::{parse_body, pump, Frontend, ACK_TIMEOUT};
use crate::event::{Access, Event, Reply};
use crate::http::{Exchange, Request, Response};

pub(super) fn open(fe: &Frontend, req: &Request, ex: &mut Exchange, access: Access) {
    let (outbox, inbox) = crossbeam_channel::unbounded();
    let (client, session) = match fe.open_session(req, access, Some(outbox)) {
        Ok(opened) => opened,
        Err(response) => return ex.respond(response),
    };
    log::info!("SSE session {} opened (client {})", &session[..8], client.0);
    let mut endpoint = format!("/message?sessionId={session}");
    // A client that authenticated with `?key=` (the original's documented URL) can send no header:
    // the endpoint carries its key on, since `/message` is checked too.
    if let Some(key) = req.query_param("key").filter(|_| fe.auth.enabled()) {
        endpoint.push_str("&key=");
        endpoint.push_str(&percent_encode(&key));
    }
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

pub(super) fn post(fe: &Frontend, req: &Request, access: Access) -> Response {
    let Some(session) = req.query_param("sessionId").filter(|s| !s.is_empty()) else {
        return Response::error(400, "Missing sessionId query parameter");
    };
    let msg = match parse_body(req) {
        Ok(msg) => msg,
        Err(response) => return response,
    };
    let (reply, ack) = crossbeam_channel::bounded(1);
    let event = Event::FromSession { session: session.clone(), access, msg, reply, inline: false };
    if fe.events.send(event).is_err() {
        return Response::error(503, "shutting down");
    }
    match ack.recv_timeout(ACK_TIMEOUT) {
        Ok(Reply::Accepted) => Response::new(202, "text/plain", "Accepted"),
        Ok(Reply::UnknownSession) => Response::error(404, &format!("No active session found for ID {session}")),
        Ok(_) | Err(_) => Response::error(503, "the dispatcher did not answer"),
    }
}

/// Escapes everything but unreserved URL characters.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_escaped_for_the_query_string() {
        assert_eq!(super::percent_encode("a b&c=d"), "a%20b%26c%3Dd");
        assert_eq!(super::percent_encode("k1-_.~"), "k1-_.~");
    }
}
