//! Newline-delimited framing for stdio streams, with a cap on line length.
//!
//! MCP over stdio is one JSON message per line. A peer that prints a huge line (a runaway log, a binary
//! dump) must not make the proxy buffer it all: a line over the cap is skipped up to its newline and
//! reported as [`Line::TooLong`], and reading goes on with the next line. Writing is
//! [`write_messages`]: one JSON object per line.

use crate::jsonrpc::Message;
use crossbeam_channel::Receiver;
use std::io::{self, BufRead, BufWriter, Write};

/// One read from a [`LineReader`], borrowed from it until the next read.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// A complete line without its `\n` (and without a `\r` before it).
    Text(&'a str),
    /// A line longer than the cap, skipped; holds its length in bytes.
    TooLong(usize),
    /// Bytes that are not UTF-8; holds their length.
    NotUtf8(usize),
}

pub struct LineReader<R> {
    inner: R,
    max: usize,
    /// The line being read, reused from line to line: no allocation per message.
    buf: Vec<u8>,
}

/// A line buffer grown past this is let go after its line rather than kept for the next: one huge
/// message must not hold its memory for the rest of the connection.
const KEEP_CAPACITY: usize = 64 * 1024;

impl<R: BufRead> LineReader<R> {
    pub fn new(inner: R, max: usize) -> LineReader<R> {
        LineReader { inner, max, buf: Vec::new() }
    }

    /// The next line, or `None` at end of stream. A last line without a newline still counts.
    pub fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        if self.buf.capacity() > KEEP_CAPACITY {
            self.buf = Vec::new();
        }
        self.buf.clear();
        let mut total = 0usize;
        loop {
            let chunk = match self.inner.fill_buf() {
                Ok(chunk) => chunk,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                return Ok((total > 0).then(|| self.finish(total)));
            }
            let (used, done) = match memchr_newline(chunk) {
                Some(pos) => (pos + 1, true),
                None => (chunk.len(), false),
            };
            let content = if done { &chunk[..used - 1] } else { chunk };
            total += content.len();
            if total <= self.max {
                self.buf.extend_from_slice(content);
            }
            self.inner.consume(used);
            if done {
                return Ok(Some(self.finish(total)));
            }
        }
    }

    fn finish(&mut self, total: usize) -> Line<'_> {
        if total > self.max {
            return Line::TooLong(total);
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        match std::str::from_utf8(&self.buf) {
            Ok(text) => Line::Text(text),
            Err(_) => Line::NotUtf8(self.buf.len()),
        }
    }
}

/// Writes each message from `inbox` as one line until the channel closes, after `prepare` (a frontend
/// dresses answers for its client's protocol era there). A message is serialised straight into the
/// buffer, and the buffer is flushed only when no other message is waiting: one write per burst, with no
/// added latency.
pub fn write_messages(out: impl Write, inbox: &Receiver<Message>, mut prepare: impl FnMut(Message) -> Message) -> io::Result<()> {
    let mut out = BufWriter::new(out);
    for msg in inbox {
        prepare(msg).write_json(&mut out)?;
        out.write_all(b"\n")?;
        if inbox.is_empty() {
            out.flush()?;
        }
    }
    out.flush()
}

/// Where the first newline is: libc's memchr scans a word or a vector at a time, where a byte loop
/// (as the release profile's opt-level "z" leaves it) costs several instructions per byte of every line.
fn memchr_newline(bytes: &[u8]) -> Option<usize> {
    // SAFETY: memchr reads at most `bytes.len()` bytes from the start of a live slice, and what it
    // returns is null or a pointer into that slice.
    let found = unsafe { libc::memchr(bytes.as_ptr().cast(), libc::c_int::from(b'\n'), bytes.len()) };
    (!found.is_null()).then(|| found as usize - bytes.as_ptr() as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each line as owned text, or what it was instead.
    fn read_all(input: &[u8], max: usize) -> Vec<Result<String, Line<'static>>> {
        // A tiny buffer makes lines span many fill_buf calls, as pipes do.
        let mut reader = LineReader::new(io::BufReader::with_capacity(4, input), max);
        let mut lines = Vec::new();
        while let Some(line) = reader.next_line().unwrap() {
            lines.push(match line {
                Line::Text(text) => Ok(text.to_owned()),
                Line::TooLong(len) => Err(Line::TooLong(len)),
                Line::NotUtf8(len) => Err(Line::NotUtf8(len)),
            });
        }
        lines
    }

    #[test]
    fn splits_lines_and_strips_carriage_returns() {
        assert_eq!(read_all(b"one\r\ntwo\nthree", 100), [Ok("one".into()), Ok("two".into()), Ok("three".into())]);
    }

    #[test]
    fn empty_lines_are_kept_as_empty_text() {
        assert_eq!(read_all(b"\na\n", 100), [Ok("".into()), Ok("a".into())]);
    }

    #[test]
    fn over_long_line_is_skipped_and_the_next_one_read() {
        let mut input = vec![b'x'; 50];
        input.extend_from_slice(b"\nok\n");
        assert_eq!(read_all(&input, 10), [Err(Line::TooLong(50)), Ok("ok".into())]);
    }

    #[test]
    fn invalid_utf8_is_reported_not_fatal() {
        assert_eq!(read_all(b"\xff\xfe\nok\n", 100), [Err(Line::NotUtf8(2)), Ok("ok".into())]);
    }

    #[test]
    fn a_long_lines_buffer_is_let_go_and_a_short_ones_kept() {
        let mut input = vec![b'x'; 2 * KEEP_CAPACITY];
        input.extend_from_slice(b"\nshort\nnext\n");
        let mut reader = LineReader::new(io::Cursor::new(input), usize::MAX);
        assert!(matches!(reader.next_line().unwrap(), Some(Line::Text(text)) if text.len() == 2 * KEEP_CAPACITY));
        assert_eq!(reader.next_line().unwrap(), Some(Line::Text("short")));
        assert!(reader.buf.capacity() <= KEEP_CAPACITY, "the long line's buffer went");
        let kept = reader.buf.as_ptr();
        assert_eq!(reader.next_line().unwrap(), Some(Line::Text("next")));
        assert_eq!(reader.buf.as_ptr(), kept, "the short line's buffer is reused");
    }
}
