//! Reading one HTTP/1.1 request from a connection, within limits.
//!
//! The head is read line by line under a byte cap and parsed with `httparse`; the body by
//! `Content-Length` or chunked encoding under its own cap. The whole request must arrive before a
//! deadline, so a client that trickles bytes (slowloris) is cut off instead of holding a thread.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Limits on what one request may take.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_head: usize,
    pub max_body: usize,
    /// From the first byte of a request to its last.
    pub read_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
}

#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// The path without the query string, e.g. `/message`.
    pub path: String,
    /// The raw query string without `?`, e.g. `sessionId=abc&key=k`.
    pub query: String,
    headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The client's address (for rate limits).
    pub peer: Option<std::net::IpAddr>,
    /// HTTP/1.0 closes after each response unless asked otherwise.
    http10: bool,
}

/// Why no request could be read.
#[derive(Debug)]
pub enum ReadError {
    /// The peer closed the connection, or stayed idle too long, between requests: not an error.
    Closed,
    /// The request did not arrive in time.
    Timeout,
    HeadTooLarge,
    BodyTooLarge,
    Malformed(String),
    Io(io::Error),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> ReadError {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ReadError::Timeout,
            io::ErrorKind::UnexpectedEof => ReadError::Malformed("connection closed mid-request".into()),
            _ => ReadError::Io(e),
        }
    }
}

impl Request {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The first value of a query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        Request::form_fields(&self.query).into_iter().find_map(|(k, v)| (k == name).then_some(v))
    }

    /// The fields of a query string or an `application/x-www-form-urlencoded` body, decoded.
    pub fn form_fields(text: &str) -> Vec<(String, String)> {
        text.split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .map(|(k, v)| (percent_decode(k), percent_decode(v)))
            .collect()
    }

    /// Whether the connection may serve another request after this one.
    pub fn keep_alive(&self) -> bool {
        let connection = self.header("connection").unwrap_or("").to_ascii_lowercase();
        if self.http10 {
            connection.contains("keep-alive")
        } else {
            !connection.contains("close")
        }
    }

    /// The value of one cookie.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("cookie"))
            .flat_map(|(_, v)| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find_map(|(k, v)| (k == name).then_some(v))
    }

    /// True when the client lists `media` in its `Accept` header (or sends none, or `*/*`).
    pub fn accepts(&self, media: &str) -> bool {
        match self.header("accept") {
            None => true,
            Some(accept) => accept.split(',').any(|part| {
                let part = part.split(';').next().unwrap_or("").trim();
                part == media || part == "*/*"
            }),
        }
    }
}

/// A connection's read side that will not read past a deadline: the end of the idle wait between
/// requests, then the end of the request's own time. The socket's timeout bounds each read and is never
/// longer than the shorter of the two limits, so it is set when the connection opens and again only
/// after a read timed out early, never per request; the deadline bounds the reads' sum, so a client
/// trickling one byte at a time (slowloris) is cut off too.
pub struct Conn {
    stream: TcpStream,
    deadline: Instant,
    /// The socket's read timeout at most: the shorter of the idle and the request limit.
    longest_wait: Duration,
}

impl Conn {
    pub fn new(stream: TcpStream, limits: &Limits) -> io::Result<Conn> {
        let longest_wait = limits.idle_timeout.min(limits.read_timeout).max(MIN_WAIT);
        stream.set_read_timeout(Some(longest_wait))?;
        Ok(Conn { stream, deadline: Instant::now() + longest_wait, longest_wait })
    }
}

/// The shortest socket timeout set (zero would mean none).
const MIN_WAIT: Duration = Duration::from_millis(1);

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            match self.stream.read(buf) {
                // The socket gave up before the deadline: wait out the rest, no longer than it allows.
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    let left = self.deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(e);
                    }
                    self.stream.set_read_timeout(Some(left.clamp(MIN_WAIT, self.longest_wait)))?;
                }
                read => return read,
            }
        }
    }
}

/// Reads the next request from a kept-alive connection whose client is `peer`.
pub fn read(reader: &mut BufReader<Conn>, limits: &Limits, peer: Option<std::net::IpAddr>) -> Result<Request, ReadError> {
    // Waiting for a request to start is idleness, not slowness.
    reader.get_mut().deadline = Instant::now() + limits.idle_timeout;
    match reader.fill_buf() {
        Ok([]) => return Err(ReadError::Closed),
        Ok(_) => {}
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => return Err(ReadError::Closed),
        Err(e) => return Err(ReadError::Io(e)),
    }
    // From the first byte on, the request's own deadline bounds the reads (not the idle timeout).
    reader.get_mut().deadline = Instant::now() + limits.read_timeout;
    let head = read_head(reader, limits.max_head)?;
    let mut request = parse_head(&head)?;
    request.peer = peer;
    request.body = read_body(reader, &request, limits)?;
    super::BYTES_IN.fetch_add((head.len() + request.body.len()) as u64, std::sync::atomic::Ordering::Relaxed);
    Ok(request)
}

fn read_head(reader: &mut BufReader<Conn>, max: usize) -> Result<Vec<u8>, ReadError> {
    let mut head = Vec::with_capacity(1024);
    loop {
        let room = (max + 1).saturating_sub(head.len()) as u64;
        let before = head.len();
        let n = reader.by_ref().take(room).read_until(b'\n', &mut head)?;
        if n == 0 {
            return Err(ReadError::Malformed("connection closed mid-request".into()));
        }
        if head.len() > max {
            return Err(ReadError::HeadTooLarge);
        }
        let line = &head[before..];
        if line == b"\r\n" || line == b"\n" {
            return Ok(head);
        }
    }
}

/// Parses a complete request head (up to and including the empty line); public for the fuzz targets.
pub fn parse_head(head: &[u8]) -> Result<Request, ReadError> {
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut slots);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(ReadError::Malformed("incomplete request head".into())),
        Err(httparse::Error::TooManyHeaders) => return Err(ReadError::HeadTooLarge),
        Err(e) => return Err(ReadError::Malformed(e.to_string())),
    }
    let target = parsed.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let headers = parsed.headers.iter().map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).into_owned())).collect();
    Ok(Request {
        method: parsed.method.unwrap_or("GET").to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers,
        body: Vec::new(),
        peer: None,
        http10: parsed.version == Some(0),
    })
}

fn read_body(reader: &mut BufReader<Conn>, req: &Request, limits: &Limits) -> Result<Vec<u8>, ReadError> {
    let chunked = req.header("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    let length = match req.header("content-length") {
        Some(v) => Some(v.trim().parse::<usize>().map_err(|_| ReadError::Malformed(format!("bad Content-Length '{v}'")))?),
        None => None,
    };
    if !chunked && length.unwrap_or(0) == 0 {
        return Ok(Vec::new());
    }
    if length.is_some_and(|n| n > limits.max_body) {
        return Err(ReadError::BodyTooLarge);
    }
    if req.header("expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue")) {
        reader.get_mut().stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    if chunked {
        return read_chunked(reader, limits.max_body);
    }
    let mut body = vec![0; length.unwrap_or(0)];
    let mut filled = 0;
    while filled < body.len() {
        match reader.read(&mut body[filled..])? {
            0 => return Err(ReadError::Malformed("connection closed mid-body".into())),
            n => filled += n,
        }
    }
    Ok(body)
}

fn read_chunked(reader: &mut BufReader<Conn>, max: usize) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    loop {
        let size_line = read_line(reader)?;
        let size_hex = size_line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| ReadError::Malformed(format!("bad chunk size '{size_hex}'")))?;
        if size == 0 {
            // Trailers, up to the empty line.
            while !read_line(reader)?.is_empty() {}
            return Ok(body);
        }
        // Compared without adding: a chunk size near usize::MAX must not wrap around the check.
        if size > max.saturating_sub(body.len()) {
            return Err(ReadError::BodyTooLarge);
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        if !read_line(reader)?.is_empty() {
            return Err(ReadError::Malformed("chunk not followed by CRLF".into()));
        }
    }
}

/// A short line (chunk sizes, trailers) without its line ending.
fn read_line(reader: &mut BufReader<Conn>) -> Result<String, ReadError> {
    let mut line = Vec::new();
    reader.by_ref().take(4096).read_until(b'\n', &mut line)?;
    if line.last() != Some(&b'\n') {
        return Err(ReadError::Malformed("chunk line too long or cut off".into()));
    }
    Ok(String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_owned())
}

/// Decodes `%XX` escapes and `+` (as a space), as query strings use them.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Reads one request on a loopback connection whose client runs `client`; how it went, and when.
    fn read_from(
        idle: Duration,
        read_timeout: Duration,
        client: impl FnOnce(TcpStream) + Send + 'static,
    ) -> (Result<Request, ReadError>, Duration) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = std::thread::spawn(move || client(TcpStream::connect(addr).unwrap()));
        let (stream, _) = listener.accept().unwrap();
        let limits = Limits { max_head: 1024, max_body: 1024, read_timeout, idle_timeout: idle };
        let mut reader = BufReader::new(Conn::new(stream, &limits).unwrap());
        let start = Instant::now();
        let outcome = read(&mut reader, &limits, None);
        let took = start.elapsed();
        client.join().unwrap();
        (outcome, took)
    }

    #[test]
    fn an_idle_wait_longer_than_the_request_limit_still_gets_its_request() {
        let (read, _) = read_from(Duration::from_millis(900), Duration::from_millis(150), |mut s| {
            std::thread::sleep(Duration::from_millis(450));
            s.write_all(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        });
        assert_eq!(read.map(|r| r.path).ok().as_deref(), Some("/x"));
    }

    #[test]
    fn a_request_stalled_past_its_limit_times_out_though_the_idle_limit_is_longer() {
        let (read, took) = read_from(Duration::from_secs(5), Duration::from_millis(200), |mut s| {
            s.write_all(b"GET /x HTTP/1.1\r\n").unwrap();
            std::thread::sleep(Duration::from_millis(1200));
        });
        assert!(matches!(read, Err(ReadError::Timeout)), "{read:?}");
        assert!(took < Duration::from_millis(1000), "{took:?}");
    }

    #[test]
    fn a_connection_idle_past_its_limit_is_closed_though_the_request_limit_is_longer() {
        let (read, took) =
            read_from(Duration::from_millis(200), Duration::from_secs(5), |_s| std::thread::sleep(Duration::from_millis(1200)));
        assert!(matches!(read, Err(ReadError::Closed)), "{read:?}");
        assert!(took < Duration::from_millis(1000), "{took:?}");
    }

    fn request(query: &str, headers: &[(&str, &str)]) -> Request {
        Request {
            method: "GET".into(),
            path: "/".into(),
            query: query.into(),
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: Vec::new(),
            peer: None,
            http10: false,
        }
    }

    #[test]
    fn query_params_are_percent_decoded() {
        let req = request("sessionId=a%2Fb&key=x+y&flag", &[]);
        assert_eq!(req.query_param("sessionId").as_deref(), Some("a/b"));
        assert_eq!(req.query_param("key").as_deref(), Some("x y"));
        assert_eq!(req.query_param("flag").as_deref(), Some(""));
        assert_eq!(req.query_param("missing"), None);
    }

    #[test]
    fn broken_percent_escape_is_kept_literally() {
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%é1"), "%é1");
    }

    #[test]
    fn header_lookup_ignores_case() {
        let req = request("", &[("Mcp-Session-Id", "s1")]);
        assert_eq!(req.header("mcp-session-id"), Some("s1"));
    }

    #[test]
    fn accept_lists_are_matched_by_media_type() {
        assert!(request("", &[("Accept", "application/json, text/event-stream")]).accepts("text/event-stream"));
        assert!(!request("", &[("Accept", "application/json")]).accepts("text/event-stream"));
        assert!(request("", &[("Accept", "*/*;q=0.8")]).accepts("text/event-stream"));
        assert!(request("", &[]).accepts("application/json"));
    }

    #[test]
    fn cookies_are_found_by_name() {
        let req = request("", &[("Cookie", "a=1; mcp_admin=xyz; b=2")]);
        assert_eq!(req.cookie("mcp_admin"), Some("xyz"));
        assert_eq!(req.cookie("c"), None);
    }

    #[test]
    fn connection_close_ends_keep_alive() {
        assert!(request("", &[]).keep_alive());
        assert!(!request("", &[("Connection", "close")]).keep_alive());
    }
}
