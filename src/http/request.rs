//! Reading one HTTP/1.1 request from a connection, within limits.
//!
//! The head is read line by line under a byte cap and parsed with `httparse`; the body, framed as
//! `framing` decides (RFC 9112, strictly), by `Content-Length` or chunked encoding under its own cap. The
//! whole request must arrive before a deadline, so a client that trickles bytes (slowloris) is cut off
//! instead of holding a thread; a new connection's first head has a shorter deadline still, so sockets
//! that never send a request give their slot back quickly.

use super::framing::{self, Framing};
use super::socket::Socket;
use std::io::{self, BufRead, BufReader, Read, Write};
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
    /// How long a new connection may take to send its first request's head, from accept.
    pub first_request_timeout: Duration,
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
    pub(super) http10: bool,
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

    /// The value of every field line with this (case-insensitive) name, in order.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.iter().filter(move |(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Every header whose (case-insensitive) name starts with `prefix`, the name lower-cased.
    pub fn headers_starting_with(&self, prefix: &str) -> Vec<(String, String)> {
        let starts = |k: &str| k.get(..prefix.len()).is_some_and(|p| p.eq_ignore_ascii_case(prefix));
        self.headers.iter().filter(|(k, _)| starts(k)).map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect()
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

    /// Whether the connection may serve another request after this one: by the `Connection` tokens
    /// (`close`, `keep-alive`), compared whole.
    pub fn keep_alive(&self) -> bool {
        let mut tokens = self.header_values("connection").flat_map(|v| v.split(',')).map(str::trim);
        if self.http10 {
            tokens.any(|t| t.eq_ignore_ascii_case("keep-alive"))
        } else {
            !tokens.any(|t| t.eq_ignore_ascii_case("close"))
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
/// requests (or of a new connection's wait for its first request), then the end of the request's own
/// time, so a client trickling one byte at a time (slowloris) is cut off. It borrows the connection's one
/// socket (a clone would be a second file descriptor per connection). The socket's read timeout bounds
/// each read: set when the connection opens to the shortest of the limits, lowered only when a deadline
/// comes closer than that (reads never overshoot a deadline by more than [`SLACK`]), and raised again
/// only after a read timed out early: not once per request, which cost a system call each. On a TLS
/// socket the deadlines bound every read of records (the handshake's too), not only those of plaintext.
pub struct Conn<'a> {
    socket: &'a Socket,
    deadline: Instant,
    /// The socket's read timeout now.
    timeout: Duration,
    /// The shortest of the limits: the longest the socket is ever set to wait.
    longest_wait: Duration,
}

/// The shortest socket timeout set (zero would mean none).
const MIN_WAIT: Duration = Duration::from_millis(1);
/// How far past its deadline a read may wait before the socket timeout is lowered to meet it.
const SLACK: Duration = Duration::from_millis(100);

impl<'a> Conn<'a> {
    pub fn new(socket: &'a Socket, limits: &Limits) -> io::Result<Conn<'a>> {
        let longest_wait = limits.idle_timeout.min(limits.read_timeout).min(limits.first_request_timeout).max(MIN_WAIT);
        socket.tcp().set_read_timeout(Some(longest_wait))?;
        Ok(Conn { socket, deadline: Instant::now() + longest_wait, timeout: longest_wait, longest_wait })
    }

    fn set_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        let timeout = timeout.clamp(MIN_WAIT, self.longest_wait);
        self.socket.tcp().set_read_timeout(Some(timeout))?;
        self.timeout = timeout;
        Ok(())
    }

    /// Reads the socket's own bytes, waiting no longer than the deadline.
    fn read_raw(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            if left + SLACK < self.timeout {
                self.set_timeout(left)?;
            }
            match self.socket.tcp().read(buf) {
                // The socket gave up before the deadline: wait out the rest, as long as it allows.
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    let left = self.deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(e);
                    }
                    self.set_timeout(left)?;
                }
                read => return read,
            }
        }
    }
}

impl Read for Conn<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let socket = self.socket;
        socket.read(&mut Raw(self), buf)
    }
}

/// The socket's own bytes, each read within the connection's deadline.
struct Raw<'c, 'a>(&'c mut Conn<'a>);

impl Read for Raw<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read_raw(buf)
    }
}

/// Reads the next request from a connection whose client is `peer`. `first_by` is the deadline of a
/// new connection's first head; later requests may be waited for for the idle timeout.
pub fn read(
    reader: &mut BufReader<Conn>,
    limits: &Limits,
    peer: Option<std::net::IpAddr>,
    first_by: Option<Instant>,
) -> Result<Request, ReadError> {
    // Waiting for a request to start is idleness, not slowness: it ends the connection quietly.
    reader.get_mut().deadline = first_by.unwrap_or_else(|| Instant::now() + limits.idle_timeout);
    match reader.fill_buf() {
        Ok([]) => return Err(ReadError::Closed),
        Ok(_) => {}
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => return Err(ReadError::Closed),
        Err(e) => return Err(ReadError::Io(e)),
    }
    // From the first byte on, the request's own deadline bounds the reads; a first head, the earlier
    // of that and the connection's first-request deadline.
    let request_deadline = Instant::now() + limits.read_timeout;
    reader.get_mut().deadline = first_by.map_or(request_deadline, |by| by.min(request_deadline));
    let head = read_head(reader, limits.max_head)?;
    reader.get_mut().deadline = request_deadline;
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
    let length = match framing::framing(req)? {
        Framing::None => return Ok(Vec::new()),
        Framing::Length(n) => Some(usize::try_from(n).ok().filter(|&n| n <= limits.max_body).ok_or(ReadError::BodyTooLarge)?),
        Framing::Chunked => None,
    };
    if req.header("expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue")) {
        reader.get_mut().socket.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let Some(length) = length else { return read_chunked(reader, limits.max_body) };
    let mut body = vec![0; length];
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
        let size = framing::chunk_size(&read_line(reader)?)?;
        if size == 0 {
            // Trailers, up to the empty line.
            while !read_line(reader)?.is_empty() {}
            return Ok(body);
        }
        // Compared without adding: a chunk size near u64::MAX must not wrap around the check.
        let size = usize::try_from(size).ok().filter(|&size| size <= max.saturating_sub(body.len())).ok_or(ReadError::BodyTooLarge)?;
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        if !read_line(reader)?.is_empty() {
            return Err(ReadError::Malformed("chunk not followed by CRLF".into()));
        }
    }
}

/// A short line of a chunked body (a chunk size, the end of a chunk, a trailer) without its CRLF. A
/// bare LF does not end a line here: readers that disagree on line ends disagree on where chunks end.
fn read_line(reader: &mut BufReader<Conn>) -> Result<Vec<u8>, ReadError> {
    let mut line = Vec::new();
    reader.by_ref().take(4096).read_until(b'\n', &mut line)?;
    match line.strip_suffix(b"\r\n") {
        Some(text) => Ok(text.to_vec()),
        None if line.last() == Some(&b'\n') => Err(ReadError::Malformed("a chunked body line must end with CRLF".into())),
        None => Err(ReadError::Malformed("chunk line too long or cut off".into())),
    }
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
    use std::net::{TcpListener, TcpStream};

    /// Reads one request on a loopback connection whose client runs `client`; how it went, and when.
    fn read_from(
        idle: Duration,
        read_timeout: Duration,
        client: impl FnOnce(TcpStream) + Send + 'static,
    ) -> (Result<Request, ReadError>, Duration) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = std::thread::spawn(move || client(TcpStream::connect(addr).unwrap()));
        let socket = Socket::plain(listener.accept().unwrap().0);
        let limits = Limits { max_head: 1024, max_body: 1024, read_timeout, idle_timeout: idle, first_request_timeout: idle };
        let mut reader = BufReader::new(Conn::new(&socket, &limits).unwrap());
        let start = Instant::now();
        let outcome = read(&mut reader, &limits, None, None);
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
        assert!(!request("", &[("Connection", "Upgrade, Close")]).keep_alive());
    }

    #[test]
    fn connection_tokens_are_compared_whole() {
        assert!(request("", &[("Connection", "xclose")]).keep_alive());
        let mut http10 = request("", &[("Connection", "not-keep-alive")]);
        http10.http10 = true;
        assert!(!http10.keep_alive());
    }
}
