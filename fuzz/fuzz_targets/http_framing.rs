//! `http::framing` (where a request's body ends, RFC 9112 §6) and `http::chunk_size` against a reference
//! reading of the RFC written here, separately and plainly: for heads built from field lines the fuzzer
//! picks (the framing fields and `Host` in any letter case, values from the pieces that matter to
//! framing plus any bytes), both must make the same decision: refuse, too large, no body, a length, or
//! chunked; and the same for chunk-size lines.
#![no_main]
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mcp_proxy_server::http::{chunk_size, framing, parse_head, Framing, ReadError};

#[derive(Arbitrary, Debug)]
enum Name {
    ContentLength,
    TransferEncoding,
    Host,
    Other,
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Piece {
    Chunked,
    Gzip,
    Comma,
    Space,
    Tab,
    Semicolon,
    Plus,
    Minus,
    Digit(u8),
    Zeros,
    Long,
    Byte(u8),
}

#[derive(Arbitrary, Debug)]
struct Field {
    name: Name,
    /// Bit i says whether letter i of the name is upper case.
    case: u32,
    value: Vec<Piece>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    http10: bool,
    fields: Vec<Field>,
    chunk_line: Vec<Piece>,
}

/// What a reader does with a request head.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Refuse,
    TooLarge,
    Empty,
    Length(u64),
    Chunked,
}

fn bytes(pieces: &[Piece]) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Chunked => out.extend_from_slice(b"chunked"),
            Piece::Gzip => out.extend_from_slice(b"gzip"),
            Piece::Comma => out.push(b','),
            Piece::Space => out.push(b' '),
            Piece::Tab => out.push(b'\t'),
            Piece::Semicolon => out.push(b';'),
            Piece::Plus => out.push(b'+'),
            Piece::Minus => out.push(b'-'),
            Piece::Digit(d) => out.push(b"0123456789abcdefABCDEF"[usize::from(*d) % 22]),
            Piece::Zeros => out.extend_from_slice(b"0000000000"),
            Piece::Long => out.extend_from_slice(b"18446744073709551615"),
            Piece::Byte(b) => out.push(*b),
        }
    }
    out
}

fn name(field: &Field) -> Vec<u8> {
    let base: &[u8] = match &field.name {
        Name::ContentLength => b"content-length",
        Name::TransferEncoding => b"transfer-encoding",
        Name::Host => b"host",
        Name::Other => b"x-other",
        Name::Raw(raw) => raw,
    };
    base.iter().enumerate().map(|(i, b)| if field.case >> (i % 32) & 1 == 1 { b.to_ascii_uppercase() } else { *b }).collect()
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trimmed(mut text: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = text {
        if !is_ows(*first) {
            break;
        }
        text = rest;
    }
    while let [rest @ .., last] = text {
        if !is_ows(*last) {
            break;
        }
        text = rest;
    }
    text
}

/// A run of digits in `radix` as a number, or TooLarge past 64 bits (leading zeros do not count).
fn number(digits: &[u8], radix: u32) -> Decision {
    let significant: Vec<u8> = digits.iter().copied().skip_while(|&d| d == b'0').collect();
    let max_digits = if radix == 10 { 20 } else { 16 };
    if significant.len() > max_digits {
        return Decision::TooLarge;
    }
    let text = std::str::from_utf8(&significant).unwrap_or("x");
    match u128::from_str_radix(if text.is_empty() { "0" } else { text }, radix) {
        Ok(n) if n > u128::from(u64::MAX) => Decision::TooLarge,
        Ok(0) => Decision::Empty,
        Ok(n) => Decision::Length(n as u64),
        Err(_) => Decision::Refuse,
    }
}

/// RFC 9112: §3.2 (exactly one Host in HTTP/1.1, at most one in 1.0), §6.1 (Transfer-Encoding: not in
/// 1.0, not with Content-Length; we read only a lone `chunked`), §6.3 (one Content-Length of 1*DIGIT).
fn reference(http10: bool, fields: &[(Vec<u8>, Vec<u8>)]) -> Decision {
    let values = |wanted: &[u8]| -> Vec<&[u8]> {
        fields.iter().filter(|(n, _)| n.eq_ignore_ascii_case(wanted)).map(|(_, v)| trimmed(v)).collect()
    };
    let (hosts, lengths, codings) = (values(b"host"), values(b"content-length"), values(b"transfer-encoding"));
    if hosts.len() > 1 || (hosts.is_empty() && !http10) {
        return Decision::Refuse;
    }
    if !codings.is_empty() {
        if http10 || !lengths.is_empty() {
            return Decision::Refuse;
        }
        let elements: Vec<Vec<u8>> =
            codings.iter().flat_map(|v| v.split(|&b| b == b',')).map(|e| trimmed(e).to_ascii_lowercase()).collect();
        return if elements == [b"chunked".to_vec()] { Decision::Chunked } else { Decision::Refuse };
    }
    match lengths[..] {
        [] => Decision::Empty,
        [value] if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => number(value, 10),
        _ => Decision::Refuse,
    }
}

/// RFC 9112 §7.1: `chunk-size [ chunk-ext ]`, chunk-size = 1*HEXDIG, chunk-ext = *( BWS ";" ... ).
fn reference_chunk(line: &[u8]) -> Decision {
    if line.contains(&b'\r') || line.contains(&b'\n') {
        return Decision::Refuse;
    }
    let digits = line.iter().position(|b| !b.is_ascii_hexdigit()).unwrap_or(line.len());
    let after: Vec<u8> = line[digits..].iter().copied().skip_while(|&b| is_ows(b)).collect();
    if digits == 0 || (digits < line.len() && after.first() != Some(&b';')) {
        return Decision::Refuse;
    }
    number(&line[..digits], 16)
}

fn decided(result: Result<Framing, ReadError>) -> Decision {
    match result {
        Ok(Framing::None) => Decision::Empty,
        Ok(Framing::Length(n)) => Decision::Length(n),
        Ok(Framing::Chunked) => Decision::Chunked,
        Err(ReadError::Malformed(_)) => Decision::Refuse,
        Err(ReadError::BodyTooLarge) => Decision::TooLarge,
        Err(other) => panic!("framing gave {other:?}"),
    }
}

fuzz_target!(|input: Input| {
    // One field per line: a CR or LF inside would end the line (or, alone, the head) somewhere else.
    let line_break = |text: &[u8]| text.iter().any(|&b| b == b'\r' || b == b'\n');
    let fields: Vec<(Vec<u8>, Vec<u8>)> = input
        .fields
        .iter()
        .take(12)
        .map(|f| (name(f), bytes(&f.value)))
        .filter(|(name, value)| !name.is_empty() && !line_break(name) && !line_break(value))
        .collect();
    let mut head = if input.http10 { b"POST / HTTP/1.0\r\n".to_vec() } else { b"POST / HTTP/1.1\r\n".to_vec() };
    for (name, value) in &fields {
        head.extend_from_slice(name);
        head.extend_from_slice(b": ");
        head.extend_from_slice(value);
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    // Heads httparse refuses (bad names, control bytes in values) never reach `framing`.
    if let Ok(req) = parse_head(&head) {
        assert_eq!(decided(framing(&req)), reference(input.http10, &fields), "head {:?}", String::from_utf8_lossy(&head));
    }
    let line = bytes(&input.chunk_line);
    let ours = match chunk_size(&line) {
        Ok(0) => Decision::Empty,
        Ok(n) => Decision::Length(n),
        Err(e) => decided(Err(e)),
    };
    assert_eq!(ours, reference_chunk(&line), "chunk line {:?}", String::from_utf8_lossy(&line));
});
