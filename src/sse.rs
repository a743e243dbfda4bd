//! Reading Server-Sent Events (the `text/event-stream` format) from a byte stream.
//!
//! Used for the streams remote backends send: a legacy SSE backend's `GET` stream, and a Streamable HTTP
//! backend's `GET` stream and `POST` responses. Field rules follow the WHATWG spec: `data` lines join with
//! `\n`, comment lines start with `:`, an empty line ends an event; lines end with LF or CRLF.

use crate::lines::{Line, LineReader};
use std::io::{self, BufRead};

/// One dispatched event.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// `message` when the stream names none.
    pub event: String,
    pub data: String,
    pub id: Option<String>,
}

pub struct SseReader<R> {
    lines: LineReader<R>,
    max_event: usize,
}

impl<R: BufRead> SseReader<R> {
    /// `max_event` caps one event's data; a longer event is skipped with an error line in the log.
    pub fn new(inner: R, max_event: usize) -> SseReader<R> {
        SseReader { lines: LineReader::new(inner, max_event), max_event }
    }

    /// The next event, or `None` when the stream ends. An event over the cap (or not UTF-8) is
    /// skipped whole, and its data is not kept while it is read.
    pub fn next_event(&mut self) -> io::Result<Option<SseEvent>> {
        let mut event = SseEvent::default();
        let mut has_data = false;
        let mut oversized = false;
        loop {
            let line = match self.lines.next_line()? {
                None => return Ok(None),
                Some(Line::Text(text)) => text,
                Some(Line::TooLong(_) | Line::NotUtf8(_)) => {
                    oversized = true;
                    continue;
                }
            };
            if line.is_empty() {
                if oversized {
                    log::warn!("dropped an SSE event over {} bytes or not UTF-8", self.max_event);
                } else if has_data {
                    if event.event.is_empty() {
                        event.event = "message".into();
                    }
                    return Ok(Some(event));
                }
                (event, has_data, oversized) = (SseEvent::default(), false, false);
                continue;
            }
            if line.starts_with(':') || oversized {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "data" if event.data.len() + value.len() + 1 > self.max_event => {
                    oversized = true;
                    event.data = String::new();
                }
                "data" => {
                    if has_data {
                        event.data.push('\n');
                    }
                    event.data.push_str(value);
                    has_data = true;
                }
                "event" => event.event = value.to_owned(),
                "id" => event.id = Some(value.to_owned()),
                _ => {} // `retry` and unknown fields.
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(text: &str) -> Vec<SseEvent> {
        let mut reader = SseReader::new(text.as_bytes(), 1024);
        std::iter::from_fn(|| reader.next_event().unwrap()).collect()
    }

    #[test]
    fn named_and_unnamed_events() {
        let got = events("event: endpoint\ndata: /message?sessionId=1\n\ndata: {\"a\":1}\nid: 7\n\n");
        assert_eq!(got[0], SseEvent { event: "endpoint".into(), data: "/message?sessionId=1".into(), id: None });
        assert_eq!(got[1], SseEvent { event: "message".into(), data: "{\"a\":1}".into(), id: Some("7".into()) });
    }

    #[test]
    fn multi_line_data_joins_with_newlines_and_comments_are_skipped() {
        let got = events(": keepalive\n\ndata: a\r\ndata:b\r\n\r\n");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].data, "a\nb");
    }

    #[test]
    fn event_without_data_is_not_dispatched() {
        assert!(events("event: ping\n\n").is_empty());
    }

    #[test]
    fn unterminated_last_event_is_dropped() {
        assert!(events("data: partial").is_empty());
    }

    #[test]
    fn many_bad_events_in_a_row_do_not_exhaust_the_stack() {
        let junk = "data: \u{fffd}\n\n".replace('\u{fffd}', "x".repeat(2000).as_str()).repeat(20_000);
        let got = events(&format!("{junk}data: ok\n\n"));
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn data_lines_past_the_cap_are_not_accumulated() {
        let line = format!("data: {}\n", "y".repeat(100));
        let got = events(&format!("{}\ndata: ok\n\n", line.repeat(1000)));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].data, "ok");
    }

    #[test]
    fn oversized_event_is_skipped_and_the_next_one_read() {
        let big = "x".repeat(2000);
        let got = events(&format!("data: {big}\n\ndata: ok\n\n"));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].data, "ok");
    }
}
