//! `lines::LineReader` against a reference model (split on `\n`, cap, strip one `\r`, UTF-8 check), for
//! any input, line cap and read-buffer size (pipes deliver lines in arbitrary pieces).
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_proxy_server::lines::{Line, LineReader};
use std::io::BufReader;

/// A line as the model sees it: the reader lends its lines, so each is copied out as it comes.
#[derive(Debug, PartialEq, Eq)]
enum Owned {
    Text(String),
    TooLong(usize),
    NotUtf8(usize),
}

impl From<Line<'_>> for Owned {
    fn from(line: Line<'_>) -> Owned {
        match line {
            Line::Text(text) => Owned::Text(text.to_owned()),
            Line::TooLong(n) => Owned::TooLong(n),
            Line::NotUtf8(n) => Owned::NotUtf8(n),
        }
    }
}

fn model(input: &[u8], max: usize) -> Vec<Owned> {
    let mut out = Vec::new();
    let mut segments: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
    if segments.last().is_some_and(|s| s.is_empty()) {
        segments.pop(); // the input ended with a newline (or was empty): no last partial line
    }
    for seg in segments {
        if seg.len() > max {
            out.push(Owned::TooLong(seg.len()));
            continue;
        }
        let seg = seg.strip_suffix(b"\r").unwrap_or(seg);
        out.push(match std::str::from_utf8(seg) {
            Ok(s) => Owned::Text(s.to_owned()),
            Err(_) => Owned::NotUtf8(seg.len()),
        });
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let [max, cap, input @ ..] = data else { return };
    let max = usize::from(*max % 80);
    let cap = usize::from(*cap % 16) + 1;
    let mut reader = LineReader::new(BufReader::with_capacity(cap, input), max);
    let mut got = Vec::new();
    while let Some(line) = reader.next_line().expect("reading a slice cannot fail") {
        if let Line::Text(t) = &line {
            assert!(t.len() <= max && !t.contains('\n'));
        }
        got.push(Owned::from(line));
        assert!(got.len() <= input.len() + 1, "more lines than bytes");
    }
    assert_eq!(got, model(input, max), "max {max} cap {cap}");
    // Once at the end, it stays at the end.
    assert!(reader.next_line().unwrap().is_none());
});
