//! JSON-RPC 2.0 messages as the proxy sees them, with no I/O.
//!
//! A [`Message`] keeps `params`, `result` and `error` as raw JSON text: the proxy looks inside only the
//! few messages it must rewrite (a `tools/call` name, a progress token) and passes everything else through
//! byte for byte, which saves a parse and a re-serialisation per message on the hot path.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;
use std::fmt;
use std::io;

/// Standard JSON-RPC error codes, and the MCP ones the proxy uses.
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
    /// The backend that owns the target is down, or went away while the request was in flight.
    pub const BACKEND_UNAVAILABLE: i64 = -32000;
    /// The backend did not answer within the request timeout.
    pub const REQUEST_TIMEOUT: i64 = -32001;
    /// MCP (handshake era): the resource URI is not known to any backend. 2026-07-28 uses INVALID_PARAMS.
    pub const RESOURCE_NOT_FOUND: i64 = -32002;
    /// MCP 2026-07-28: an HTTP routing header does not match the request body.
    pub const HEADER_MISMATCH: i64 = -32020;
    /// MCP 2026-07-28: answering needs a client capability the request did not declare.
    pub const MISSING_CLIENT_CAPABILITY: i64 = -32021;
    /// MCP 2026-07-28: the request's protocol version is not one the proxy speaks (`data.supported`).
    pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
}

/// One JSON-RPC message: a request, a notification or a response. Written out by
/// [`Message::write_json`], not by serde: every line the proxy writes goes through it.
#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    /// Checked when a message is read; [`Message::write_json`] writes it.
    #[serde(rename = "jsonrpc")]
    _version: Version,
    /// `None` when absent (a notification); `Some(Value::Null)` when present as `null`.
    #[serde(default, deserialize_with = "present")]
    pub id: Option<Value>,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub params: Option<Box<RawValue>>,
    #[serde(default)]
    pub result: Option<Box<RawValue>>,
    #[serde(default)]
    pub error: Option<Box<RawValue>>,
}

/// What a [`Message`] is, judged by which members it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Notification,
    Response,
}

/// Why a line of input is not a JSON-RPC message.
#[derive(Debug)]
pub enum ParseError {
    /// Not JSON at all.
    Syntax(serde_json::Error),
    /// An array: batches were removed from MCP in 2025-06-18 and no client we know sends them.
    Batch,
    /// JSON, but not a JSON-RPC 2.0 object (wrong `jsonrpc`, members of the wrong type, no method nor result).
    Invalid(String),
    /// A line of bytes that are not UTF-8, so not JSON either; holds its length.
    NotUtf8(usize),
    /// A line longer than the reader accepts, skipped unread; holds its length and the limit.
    TooLong { len: usize, max: usize },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Syntax(e) => write!(f, "parse error: {e}"),
            ParseError::Batch => f.write_str("invalid request: JSON-RPC batches are not supported"),
            ParseError::Invalid(why) => write!(f, "invalid request: {why}"),
            ParseError::NotUtf8(len) => write!(f, "parse error: a {len}-byte line that is not UTF-8"),
            ParseError::TooLong { len, max } => write!(f, "parse error: a {len}-byte line, over the limit of {max} bytes"),
        }
    }
}

impl std::error::Error for ParseError {}

impl ParseError {
    pub fn code(&self) -> i64 {
        match self {
            ParseError::Syntax(_) | ParseError::NotUtf8(_) | ParseError::TooLong { .. } => code::PARSE_ERROR,
            ParseError::Batch | ParseError::Invalid(_) => code::INVALID_REQUEST,
        }
    }
}

impl Message {
    /// Parses one message (one line of a stdio stream, one HTTP body, one SSE `data`).
    pub fn parse(text: &str) -> Result<Message, ParseError> {
        let trimmed = text.trim_start();
        if trimmed.starts_with('[') {
            // Distinguish a batch from broken JSON so the sender gets the right error code.
            return match serde_json::from_str::<Value>(trimmed) {
                Ok(_) => Err(ParseError::Batch),
                Err(e) => Err(ParseError::Syntax(e)),
            };
        }
        let msg: Message =
            serde_json::from_str(text).map_err(|e| if e.is_data() { ParseError::Invalid(e.to_string()) } else { ParseError::Syntax(e) })?;
        if msg.method.is_none() && msg.result.is_none() && msg.error.is_none() {
            return Err(ParseError::Invalid("neither method nor result nor error".into()));
        }
        if let Some(id) = &msg.id {
            if !(id.is_string() || id.is_number() || (id.is_null() && msg.method.is_none())) {
                return Err(ParseError::Invalid("id must be a string or a number".into()));
            }
        }
        Ok(msg)
    }

    pub fn kind(&self) -> Kind {
        match (&self.method, &self.id) {
            (Some(_), Some(_)) => Kind::Request,
            (Some(_), None) => Kind::Notification,
            (None, _) => Kind::Response,
        }
    }

    pub fn method(&self) -> &str {
        self.method.as_deref().unwrap_or("")
    }

    pub fn request(id: Value, method: &str, params: Option<Box<RawValue>>) -> Message {
        Message { id: Some(id), method: Some(method.to_owned()), params, ..Message::empty() }
    }

    pub fn notification(method: &str, params: Option<Box<RawValue>>) -> Message {
        Message { method: Some(method.to_owned()), params, ..Message::empty() }
    }

    pub fn response(id: Value, result: Box<RawValue>) -> Message {
        Message { id: Some(id), result: Some(result), ..Message::empty() }
    }

    pub fn error_response(id: Value, code: i64, message: &str) -> Message {
        Message::error_response_raw(id, raw(&serde_json::json!({ "code": code, "message": message })))
    }

    /// An error response with a whole error object (one that carries `data`).
    pub fn error_response_raw(id: Value, error: Box<RawValue>) -> Message {
        Message { id: Some(id), error: Some(error), ..Message::empty() }
    }

    /// Reads `params` one level deep (absent params read as an empty object): enough to route a
    /// request and rewrite a member, while tool arguments stay raw text.
    pub fn params(&self) -> Result<Params, String> {
        Params::parse(self.params.as_deref())
    }

    /// One member of `params`, found without reading the others into memory: cheaper than
    /// [`Message::params`] for a look at one member. `None` when absent, or when params are not an object.
    pub fn param(&self, key: &str) -> Option<&RawValue> {
        let text = self.params.as_deref()?.get();
        // Without a backslash every key is spelt as it reads, so a text that does not contain `key`
        // has no such member: most requests are answered without a parse (every request's `_meta` is
        // looked for on the reader thread).
        if !text.contains('\\') && !text.contains(key) {
            return None;
        }
        let mut de = serde_json::Deserializer::from_str(text);
        serde::de::DeserializeSeed::deserialize(Member(key), &mut de).ok().flatten()
    }

    /// Serialises the message as one line of JSON, without the trailing newline.
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(64 + self.raw_len());
        // Writing to a Vec cannot fail, and every piece written is valid UTF-8 (JSON text).
        let _ = self.write_json(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Writes the message as one line of JSON (no trailing newline): members in a fixed order, absent
    /// ones left out, `params`, `result` and `error` copied as the raw text they are. By hand rather
    /// than through serde's serializer, which costs a write and an escape scan per key: this runs for
    /// every message on every writer thread.
    pub fn write_json(&self, out: &mut impl io::Write) -> io::Result<()> {
        out.write_all(br#"{"jsonrpc":"2.0""#)?;
        if let Some(id) = &self.id {
            out.write_all(br#","id":"#)?;
            serde_json::to_writer(&mut *out, id)?;
        }
        if let Some(method) = &self.method {
            out.write_all(br#","method":"#)?;
            serde_json::to_writer(&mut *out, method)?;
        }
        let raw_members = [(&br#","params":"#[..], &self.params), (br#","result":"#, &self.result), (br#","error":"#, &self.error)];
        for (key, value) in raw_members {
            if let Some(value) = value {
                out.write_all(key)?;
                out.write_all(value.get().as_bytes())?;
            }
        }
        out.write_all(b"}")
    }

    /// The length of the raw members' text, to size a buffer.
    fn raw_len(&self) -> usize {
        [&self.params, &self.result, &self.error].into_iter().flatten().map(|v| v.get().len()).sum()
    }

    fn empty() -> Message {
        Message { _version: Version, id: None, method: None, params: None, result: None, error: None }
    }
}

/// A request's `params` object read one level deep: each member keeps its value as raw JSON text, in
/// the order it came. The dispatcher reads and rewrites a few small members (`name`, `uri`, `_meta`)
/// and never builds a tree of the rest (a tool's arguments may be megabytes).
#[derive(Debug, Clone, Default)]
pub struct Params(Vec<(String, Box<RawValue>)>);

impl Params {
    /// Reads a params member; `None` reads as an empty object.
    pub fn parse(raw: Option<&RawValue>) -> Result<Params, String> {
        let Some(raw) = raw else { return Ok(Params::default()) };
        serde_json::from_str::<Params>(raw.get()).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => "params must be an object".to_owned(),
            _ => format!("params: {e}"),
        })
    }

    /// A member's raw JSON text.
    pub fn get(&self, key: &str) -> Option<&RawValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| &**v)
    }

    /// A member that is a JSON string, unescaped; `None` when absent or not a string.
    pub fn str(&self, key: &str) -> Option<String> {
        serde_json::from_str(self.get(key)?.get()).ok()
    }

    /// A member parsed into a tree, for the small members the proxy looks inside (`_meta`, `ref`).
    pub fn value(&self, key: &str) -> Option<Value> {
        serde_json::from_str(self.get(key)?.get()).ok()
    }

    /// Sets a member, in place when it exists, else at the end.
    pub fn set(&mut self, key: &str, value: Box<RawValue>) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => self.0.push((key.to_owned(), value)),
        }
    }

    /// Removes a member, if it is there.
    pub fn remove(&mut self, key: &str) {
        self.0.retain(|(k, _)| k != key);
    }

    /// Sets a member that is a string.
    pub fn set_str(&mut self, key: &str, value: &str) {
        self.set(key, raw_str(value));
    }

    /// The object as raw JSON text again, members in their order.
    pub fn to_raw(&self) -> Box<RawValue> {
        self.to_raw_with(&[])
    }

    /// The object as raw JSON text with some members replaced (or added at the end), leaving `self`
    /// as it is: a tool call keeps the client's own params for a retry without copying them.
    pub fn to_raw_with(&self, replaced: &[(&str, &RawValue)]) -> Box<RawValue> {
        // Serialising raw members cannot fail, and the text is not parsed again (to_raw_value trusts
        // the serialiser, so a megabyte of tool arguments is copied once and never re-validated).
        serde_json::value::to_raw_value(&Replaced { params: self, replaced })
            .unwrap_or_else(|_| raw(&Value::Object(serde_json::Map::new())))
    }
}

/// [`Params`] seen with some members replaced, serialised in one pass.
struct Replaced<'a> {
    params: &'a Params,
    replaced: &'a [(&'a str, &'a RawValue)],
}

impl Serialize for Replaced<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let replacement = |key: &str| self.replaced.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        let added = self.replaced.iter().filter(|(k, _)| self.params.get(k).is_none());
        let mut map = s.serialize_map(None)?;
        for (key, value) in &self.params.0 {
            map.serialize_entry(key, replacement(key).unwrap_or(value))?;
        }
        for (key, value) in added {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Params {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Params, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = Params;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Params, A::Error> {
                let mut params = Params::default();
                // A repeated member: the last one counts, as when the object is read into a map.
                while let Some((key, value)) = map.next_entry::<String, Box<RawValue>>()? {
                    params.set(&key, value);
                }
                Ok(params)
            }
        }
        d.deserialize_map(Members)
    }
}

/// Reads one member of an object by its key, skipping the others unread; the last one counts if the
/// key is repeated, as in [`Params`]. Keys are compared unescaped, so `"\u005fmeta"` is `_meta`.
struct Member<'k>(&'k str);

impl<'de> serde::de::DeserializeSeed<'de> for Member<'_> {
    type Value = Option<&'de RawValue>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Member<'_> {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == self.0 {
                found = Some(map.next_value::<&'de RawValue>()?);
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// A string as raw JSON text (quoted and escaped), without building a [`Value`] first.
pub fn raw_str(text: &str) -> Box<RawValue> {
    // A str always serialises; the fallback only keeps the signature total.
    serde_json::value::to_raw_value(text).unwrap_or_else(|_| raw(&Value::Null))
}

/// Turns a JSON value into raw JSON text for a [`Message`] member.
pub fn raw(value: &Value) -> Box<RawValue> {
    // A Value always serialises; the fallback only keeps the signature total.
    serde_json::value::to_raw_value(value).unwrap_or_else(|_| RawValue::from_string("null".into()).unwrap_or_default())
}

/// The `"jsonrpc": "2.0"` member: checked on the way in, always written on the way out (`write_json`).
#[derive(Debug, Clone)]
struct Version;

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Version, D::Error> {
        let v = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        if v == "2.0" {
            Ok(Version)
        } else {
            Err(serde::de::Error::custom(format!("jsonrpc must be \"2.0\", not {v:?}")))
        }
    }
}

/// Keeps an explicit `null` apart from an absent member (serde folds both into `None`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_notification_and_response_are_told_apart() {
        let req = Message::parse(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#).unwrap();
        let note = Message::parse(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        let resp = Message::parse(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#).unwrap();
        assert_eq!(req.kind(), Kind::Request);
        assert_eq!(note.kind(), Kind::Notification);
        assert_eq!(resp.kind(), Kind::Response);
    }

    #[test]
    fn result_passes_through_byte_for_byte() {
        let text = r#"{"jsonrpc":"2.0","id":7,"result":{"b":1,  "a":[1.50,"x"]}}"#;
        let msg = Message::parse(text).unwrap();
        assert_eq!(msg.result.as_ref().unwrap().get(), r#"{"b":1,  "a":[1.50,"x"]}"#);
    }

    #[test]
    fn explicit_null_id_survives_a_round_trip() {
        let msg = Message::parse(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#).unwrap();
        assert_eq!(msg.id, Some(Value::Null));
        assert!(msg.to_json().contains(r#""id":null"#));
    }

    #[test]
    fn broken_json_is_a_parse_error() {
        let err = Message::parse("{not json").unwrap_err();
        assert_eq!(err.code(), code::PARSE_ERROR);
    }

    #[test]
    fn batch_is_rejected_as_invalid_request() {
        let err = Message::parse(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#).unwrap_err();
        assert!(matches!(err, ParseError::Batch));
        assert_eq!(err.code(), code::INVALID_REQUEST);
    }

    #[test]
    fn wrong_version_is_invalid_request() {
        let err = Message::parse(r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#).unwrap_err();
        assert_eq!(err.code(), code::INVALID_REQUEST);
    }

    #[test]
    fn object_id_is_invalid_request() {
        let err = Message::parse(r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#).unwrap_err();
        assert_eq!(err.code(), code::INVALID_REQUEST);
    }

    #[test]
    fn message_with_no_method_nor_result_is_invalid() {
        let err = Message::parse(r#"{"jsonrpc":"2.0","id":1}"#).unwrap_err();
        assert_eq!(err.code(), code::INVALID_REQUEST);
    }

    #[test]
    fn params_keep_nested_members_as_raw_text_and_rewrite_one_in_place() {
        let msg = Message::parse(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a__x","arguments":{"b": [1.50, 2]}}}"#)
            .unwrap();
        let mut params = msg.params().unwrap();
        assert_eq!(params.str("name").as_deref(), Some("a__x"));
        params.set_str("name", "x\"y");
        assert_eq!(params.to_raw().get(), r#"{"name":"x\"y","arguments":{"b": [1.50, 2]}}"#);
    }

    #[test]
    fn params_with_replaced_members_leave_the_original_untouched() {
        let msg =
            Message::parse(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a__x","arguments":{"b": 1}}}"#).unwrap();
        let params = msg.params().unwrap();
        let name = raw(&Value::from("x"));
        let meta = raw(&serde_json::json!({ "progressToken": 7 }));
        let forwarded = params.to_raw_with(&[("name", &name), ("_meta", &meta)]);
        assert_eq!(forwarded.get(), r#"{"name":"x","arguments":{"b": 1},"_meta":{"progressToken":7}}"#);
        assert_eq!(params.to_raw().get(), r#"{"name":"a__x","arguments":{"b": 1}}"#);
    }

    #[test]
    fn one_param_is_found_by_its_unescaped_key_and_the_last_of_repeats_counts() {
        let msg = Message::parse(r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"a":{"x":[1]},"\u005fmeta":{"k":1},"_meta":{"k":2}}}"#)
            .unwrap();
        assert_eq!(msg.param("_meta").map(RawValue::get), Some(r#"{"k":2}"#));
        assert_eq!(msg.param("a").map(RawValue::get), Some(r#"{"x":[1]}"#));
        assert!(msg.param("b").is_none());
    }

    #[test]
    fn one_param_spelt_only_with_escapes_is_found() {
        let msg = Message::parse(r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"\u005f\u006deta":{"k":1}}}"#).unwrap();
        assert_eq!(msg.param("_meta").map(RawValue::get), Some(r#"{"k":1}"#));
    }

    #[test]
    fn one_param_of_absent_or_non_object_params_is_none() {
        let absent = Message::parse(r#"{"jsonrpc":"2.0","id":1,"method":"m"}"#).unwrap();
        let array = Message::parse(r#"{"jsonrpc":"2.0","id":1,"method":"m","params":[{"_meta":1}]}"#).unwrap();
        assert!(absent.param("_meta").is_none() && array.param("_meta").is_none());
    }

    #[test]
    fn params_that_are_not_an_object_are_refused() {
        let msg = Message::parse(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[1]}"#).unwrap();
        assert_eq!(msg.params().unwrap_err(), "params must be an object");
    }

    #[test]
    fn absent_params_read_as_an_empty_object() {
        let msg = Message::parse(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).unwrap();
        assert_eq!(msg.params().unwrap().to_raw().get(), "{}");
    }

    #[test]
    fn a_message_is_written_as_compact_json_in_a_fixed_order_with_its_raw_members_verbatim() {
        let written = |text: &str| Message::parse(text).unwrap().to_json();
        let request = r#"{"jsonrpc":"2.0","id":"a\"b","method":"x\ny","params":{"k": [1.50, "\u00e9"]}}"#;
        assert_eq!(written(request), request);
        assert_eq!(written(r#"{"params":{},"method":"m","id":1,"jsonrpc":"2.0"}"#), r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{}}"#);
        assert_eq!(written(r#"{"jsonrpc":"2.0","method":"n"}"#), r#"{"jsonrpc":"2.0","method":"n"}"#);
        let error = r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700, "message":"x"}}"#;
        assert_eq!(written(error), error);
        let mut line = Vec::new();
        Message::parse(r#"{"jsonrpc":"2.0","id":7,"result":{ }}"#).unwrap().write_json(&mut line).unwrap();
        assert_eq!(line, br#"{"jsonrpc":"2.0","id":7,"result":{ }}"#);
    }

    #[test]
    fn error_response_serialises_code_and_message() {
        let json = Message::error_response(Value::from(3), code::METHOD_NOT_FOUND, "nope").to_json();
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["jsonrpc"], "2.0");
        assert_eq!(v["id"], 3);
        assert_eq!(v["error"]["code"], -32601);
        assert_eq!(v["error"]["message"], "nope");
    }
}
