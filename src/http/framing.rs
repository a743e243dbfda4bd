//! Where a request's body ends, decided from its head by RFC 9112 §6, strictly.
//!
//! A proxy in front of us and we must agree on where one request ends and the next begins; where two
//! readers could differ (both `Content-Length` and `Transfer-Encoding`, two lengths, `+2`, codings other
//! than one final `chunked`), the request is refused with 400 and the connection closed rather than read
//! somehow, so nothing left over is ever served as a request of its own (request smuggling). The same
//! section of the RFC's message rules makes `Host` mandatory in HTTP/1.1 (§3.2), so that is checked here
//! too. Exact tokens and digits only: no substring matches, no `parse()` that takes a sign.

use super::request::{ReadError, Request};

/// How the body of a request is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (no `Content-Length`, or `Content-Length: 0`).
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// The framing of a request's body, or why its head cannot be trusted to delimit it. Public for the
/// fuzz target that checks it against a reference reading of the RFC.
pub fn framing(req: &Request) -> Result<Framing, ReadError> {
    let hosts = req.header_values("host").count();
    if hosts > 1 {
        return Err(malformed("more than one Host header"));
    }
    if hosts == 0 && !req.http10 {
        return Err(malformed("an HTTP/1.1 request must have a Host header"));
    }
    let lengths: Vec<&str> = req.header_values("content-length").collect();
    let codings: Vec<&str> = req.header_values("transfer-encoding").collect();
    if !codings.is_empty() {
        if req.http10 {
            return Err(malformed("Transfer-Encoding in an HTTP/1.0 request"));
        }
        if !lengths.is_empty() {
            return Err(malformed("both Content-Length and Transfer-Encoding"));
        }
        return only_chunked(&codings)
            .then_some(Framing::Chunked)
            .ok_or_else(|| malformed(&format!("Transfer-Encoding '{}' is not supported: only one 'chunked' is", codings.join(", "))));
    }
    match lengths[..] {
        [] => Ok(Framing::None),
        [value] => match decimal(trim_ows(value.as_bytes()))? {
            0 => Ok(Framing::None),
            n => Ok(Framing::Length(n)),
        },
        _ => Err(malformed("more than one Content-Length header")),
    }
}

/// The size on a chunk-size line (without its CRLF): hex digits, then nothing or chunk extensions,
/// which are ignored. RFC 9112 §7.1: `chunk-size [ BWS ";" ... ]`.
pub fn chunk_size(line: &[u8]) -> Result<u64, ReadError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    let (size, rest) = line.split_at(digits);
    let extension = rest.is_empty() || trim_ows(rest).first() == Some(&b';');
    if size.is_empty() || !extension || line.iter().any(|&b| b == b'\r' || b == b'\n') {
        return Err(malformed(&format!("bad chunk size line '{}'", String::from_utf8_lossy(line))));
    }
    size.iter().try_fold(0u64, |n, &digit| {
        let value = u64::from((digit as char).to_digit(16).unwrap_or(0));
        n.checked_mul(16).and_then(|n| n.checked_add(value)).ok_or(ReadError::BodyTooLarge)
    })
}

/// True when the `Transfer-Encoding` field lines, taken together, name exactly one coding: `chunked`.
/// Anything else (`gzip`, `chunked, gzip`, `chunked;q=1`, `chunked` twice) is not a framing we read.
fn only_chunked(values: &[&str]) -> bool {
    let mut codings = values.iter().flat_map(|v| v.split(','));
    codings.next().is_some_and(|c| trim_ows(c.as_bytes()).eq_ignore_ascii_case(b"chunked")) && codings.next().is_none()
}

/// `1*DIGIT` as a number; a value too big for 64 bits is a body too large, not a malformed one.
fn decimal(text: &[u8]) -> Result<u64, ReadError> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return Err(malformed(&format!("bad Content-Length '{}'", String::from_utf8_lossy(text))));
    }
    text.iter()
        .try_fold(0u64, |n, &digit| n.checked_mul(10).and_then(|n| n.checked_add(u64::from(digit - b'0'))))
        .ok_or(ReadError::BodyTooLarge)
}

/// Without leading and trailing spaces and tabs (optional whitespace, RFC 9110 §5.6.3).
fn trim_ows(text: &[u8]) -> &[u8] {
    let start = text.iter().position(|b| !matches!(b, b' ' | b'\t')).unwrap_or(text.len());
    let end = text.iter().rposition(|b| !matches!(b, b' ' | b'\t')).map_or(start, |i| i + 1);
    &text[start..end]
}

fn malformed(why: &str) -> ReadError {
    ReadError::Malformed(why.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse_head;

    fn framing_of(head_lines: &str) -> Result<Framing, ReadError> {
        let head = format!("POST /mcp HTTP/1.1\r\n{head_lines}\r\n");
        framing(&parse_head(head.as_bytes()).expect("a head httparse accepts"))
    }

    fn refused(head_lines: &str) -> bool {
        matches!(framing_of(head_lines), Err(ReadError::Malformed(_)))
    }

    #[test]
    fn content_length_and_chunked_are_read() {
        assert_eq!(framing_of("Host: h\r\nContent-Length: 12\r\n").unwrap(), Framing::Length(12));
        assert_eq!(framing_of("Host: h\r\nContent-Length: 0\r\n").unwrap(), Framing::None);
        assert_eq!(framing_of("Host: h\r\n").unwrap(), Framing::None);
        assert_eq!(framing_of("Host: h\r\nTransfer-Encoding: Chunked\r\n").unwrap(), Framing::Chunked);
    }

    #[test]
    fn content_length_with_transfer_encoding_is_refused() {
        assert!(refused("Host: h\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n"));
    }

    #[test]
    fn content_length_must_be_one_plain_decimal() {
        for bad in ["+2", "-1", "2 2", "0x10", "", "1_0"] {
            assert!(refused(&format!("Host: h\r\nContent-Length: {bad}\r\n")), "Content-Length: {bad:?}");
        }
        assert!(refused("Host: h\r\nContent-Length: 2\r\nContent-Length: 3\r\n"));
        assert!(refused("Host: h\r\nContent-Length: 2\r\nContent-Length: 2\r\n"));
        assert!(refused("Host: h\r\nContent-Length: 2, 2\r\n"));
    }

    #[test]
    fn a_length_beyond_64_bits_is_too_large() {
        assert!(matches!(framing_of("Host: h\r\nContent-Length: 99999999999999999999999\r\n"), Err(ReadError::BodyTooLarge)));
    }

    #[test]
    fn transfer_encoding_other_than_one_final_chunked_is_refused() {
        for bad in ["gzip", "xchunked", "chunkedx", "chunked, gzip", "gzip, chunked", "chunked;q=1", "chunked, chunked", ""] {
            assert!(refused(&format!("Host: h\r\nTransfer-Encoding: {bad}\r\n")), "Transfer-Encoding: {bad:?}");
        }
        assert!(refused("Host: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"));
    }

    #[test]
    fn transfer_encoding_in_http10_is_refused() {
        let req = parse_head(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        assert!(matches!(framing(&req), Err(ReadError::Malformed(_))));
    }

    #[test]
    fn http11_needs_exactly_one_host() {
        assert!(refused(""));
        assert!(refused("Host: a\r\nHost: b\r\n"));
        let http10 = parse_head(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!(framing(&http10).unwrap(), Framing::None);
    }

    #[test]
    fn chunk_sizes_are_strict_hex_with_optional_extensions() {
        assert_eq!(chunk_size(b"1a").unwrap(), 26);
        assert_eq!(chunk_size(b"0").unwrap(), 0);
        assert_eq!(chunk_size(b"10;name=value").unwrap(), 16);
        assert_eq!(chunk_size(b"10 ; ext").unwrap(), 16);
        for bad in [&b"+2"[..], b"", b" 2", b"2 x", b"0x2", b"2\r", b"-1", b";ext"] {
            assert!(matches!(chunk_size(bad), Err(ReadError::Malformed(_))), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(matches!(chunk_size(b"10000000000000000"), Err(ReadError::BodyTooLarge)));
    }
}
