//! Writing HTTP/1.1 responses: whole ones with `Content-Length`, and event streams (SSE) in chunked
//! encoding with every event flushed as it is written, so a stream can end and the connection be reused.

use super::socket::Socket;
use std::io::{self, Write};

/// A complete response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response { status, headers: vec![("Content-Type".into(), content_type.into())], body: body.into() }
    }

    pub fn json(status: u16, value: &impl serde::Serialize) -> Response {
        // The proxy's own answers always serialise (string keys, no failing Serialize impls).
        Response::new(status, "application/json", serde_json::to_string(value).unwrap_or_default())
    }

    /// `{"error": message}`: the original proxy's shape for transport-level errors.
    pub fn error(status: u16, message: &str) -> Response {
        Response::json(status, &serde_json::json!({ "error": message }))
    }

    pub fn empty(status: u16) -> Response {
        Response { status, headers: Vec::new(), body: Vec::new() }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub(super) fn write_to(&self, out: &mut impl Write, keep_alive: bool) -> io::Result<()> {
        let mut head = status_line(self.status);
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        head.push_str(if keep_alive { "\r\n" } else { "Connection: close\r\n\r\n" });
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&self.body);
        out.write_all(&bytes)?;
        count_out(bytes.len());
        out.flush()
    }
}

/// An open `text/event-stream` response.
pub struct EventStream<'a> {
    out: &'a Socket,
}

impl<'a> EventStream<'a> {
    pub(super) fn start(out: &'a Socket, headers: &[(&str, &str)]) -> io::Result<EventStream<'a>> {
        let mut head = status_line(200);
        head.push_str("Content-Type: text/event-stream\r\nCache-Control: no-cache, no-transform\r\n");
        // nginx and other reverse proxies would otherwise buffer the stream.
        head.push_str("X-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        (&mut &*out).write_all(head.as_bytes())?;
        count_out(head.len());
        Ok(EventStream { out })
    }

    /// Writes one event. `data` may hold newlines; each line becomes a `data:` field.
    pub fn event(&mut self, name: Option<&str>, id: Option<&str>, data: &str) -> io::Result<()> {
        let mut text = String::with_capacity(data.len() + 32);
        if let Some(id) = id {
            text.push_str(&format!("id: {id}\n"));
        }
        if let Some(name) = name {
            text.push_str(&format!("event: {name}\n"));
        }
        for line in data.split('\n') {
            text.push_str("data: ");
            text.push_str(line);
            text.push('\n');
        }
        text.push('\n');
        self.chunk(text.as_bytes())
    }

    /// A comment line: keeps idle connections (and the proxies between) from timing out.
    pub fn comment(&mut self, text: &str) -> io::Result<()> {
        self.chunk(format!(": {text}\n\n").as_bytes())
    }

    /// True when the client has closed its end. A write to a closed connection often succeeds (the
    /// kernel buffers it), so without this a dead stream is only noticed at the second keep-alive.
    pub fn peer_closed(&self) -> bool {
        self.out.peer_closed()
    }

    /// Ends the stream cleanly; the connection may then serve another request.
    pub(super) fn finish(self) -> io::Result<()> {
        (&mut &*self.out).write_all(b"0\r\n\r\n")
    }

    fn chunk(&mut self, data: &[u8]) -> io::Result<()> {
        let mut framed = format!("{:x}\r\n", data.len()).into_bytes();
        framed.extend_from_slice(data);
        framed.extend_from_slice(b"\r\n");
        (&mut &*self.out).write_all(&framed)?;
        count_out(framed.len());
        Ok(())
    }
}

fn count_out(bytes: usize) {
    super::BYTES_OUT.fetch_add(bytes as u64, std::sync::atomic::Ordering::Relaxed);
}

fn status_line(status: u16) -> String {
    format!("HTTP/1.1 {status} {}\r\n", reason(status))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_response_has_length_and_body() {
        let mut out = Vec::new();
        Response::error(404, "nope").with_header("X-A", "1").write_to(&mut out, true).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"), "{text}");
        assert!(text.contains("X-A: 1\r\n") && text.contains("Content-Length: 16\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n{\"error\":\"nope\"}"), "{text}");
    }

    #[test]
    fn closing_response_says_so() {
        let mut out = Vec::new();
        Response::empty(202).write_to(&mut out, false).unwrap();
        assert!(String::from_utf8(out).unwrap().contains("Connection: close\r\n"));
    }
}
