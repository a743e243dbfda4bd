//! The 2026-07-28 protocol revision ("modern") at the proxy's edges: telling a modern request from a
//! handshake-era one, checking its envelope (`_meta` keys) and, over HTTP, its routing headers, and
//! dressing the answers a modern client gets (`resultType`, caching hints, the proxy's `serverInfo`).
//!
//! Pure functions, no I/O: the stdio and Streamable HTTP frontends call them, so the dispatcher sees one
//! internal form whatever era a client speaks. `docs/mcp-2026-07-28.md` digests the rules applied here.

use crate::jsonrpc::{code, raw, Message, Params};
use base64::Engine;
use serde_json::{json, Value};

/// Modern protocol versions the proxy speaks, newest first.
pub const VERSIONS: &[&str] = &["2026-07-28"];

/// The `_meta` keys of the modern envelope.
pub mod meta {
    pub const PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
    pub const CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
    /// The tasks extension's name under a party's `extensions` capability.
    pub const TASKS_EXTENSION: &str = "io.modelcontextprotocol/tasks";
    pub const CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
    pub const LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
    pub const SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
    pub const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";
}

/// The requests a modern client may send; anything else is "method not found" (404 over HTTP).
const METHODS: &[&str] = &[
    "server/discover",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "completion/complete",
    "subscriptions/listen",
    // The tasks extension's (`io.modelcontextprotocol/tasks`); its old `tasks/result` is not one.
    "tasks/get",
    "tasks/update",
    "tasks/cancel",
];

/// Results that carry caching hints (`ttlMs`, `cacheScope`).
const CACHEABLE: &[&str] =
    &["server/discover", "tools/list", "prompts/list", "resources/list", "resources/templates/list", "resources/read"];

/// The era a client's message belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Era {
    /// `initialize` first, then a session (2024-11-05 to 2025-11-25).
    #[default]
    Handshake,
    /// Stateless, every request carrying its protocol version (2026-07-28).
    Modern,
}

/// Why a modern request is refused before it is routed: a JSON-RPC error, with the HTTP status it
/// gets over Streamable HTTP.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

impl Refusal {
    pub fn new(code: i64, message: impl Into<String>) -> Refusal {
        Refusal { code, message: message.into(), data: None }
    }

    /// `UnsupportedProtocolVersionError`, naming every version the proxy speaks.
    fn unsupported_version(why: &str, requested: &str) -> Refusal {
        let data = json!({ "supported": supported_versions(), "requested": requested });
        Refusal { data: Some(data), ..Refusal::new(code::UNSUPPORTED_PROTOCOL_VERSION, why) }
    }

    /// The error response to the request `id`.
    pub fn to_message(&self, id: Value) -> Message {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(data) = &self.data {
            error["data"] = data.clone();
        }
        Message::error_response_raw(id, raw(&error))
    }

    /// The HTTP status the spec gives this error.
    pub fn status(&self) -> u16 {
        http_status(self.code)
    }
}

/// The HTTP status of a modern error response (404 for an unknown method, 400 for a malformed
/// request, 200 for everything else, which is the request's own outcome).
pub fn http_status(code: i64) -> u16 {
    match code {
        code::METHOD_NOT_FOUND => 404,
        code::PARSE_ERROR
        | code::INVALID_REQUEST
        | code::INVALID_PARAMS
        | code::HEADER_MISMATCH
        | code::MISSING_CLIENT_CAPABILITY
        | code::UNSUPPORTED_PROTOCOL_VERSION => 400,
        _ => 200,
    }
}

/// The protocol version a message's envelope names, if it has one: the mark of a modern request.
pub fn requested_version(msg: &Message) -> Option<String> {
    let meta: Value = serde_json::from_str(msg.param("_meta")?.get()).ok()?;
    meta.get(meta::PROTOCOL_VERSION)?.as_str().map(str::to_owned)
}

/// The client capabilities a request declares: an `initialize`'s, or a modern request's envelope's.
pub fn declared_capabilities(msg: &Message) -> Option<Value> {
    let params = msg.params().ok()?;
    match msg.method() {
        "initialize" => Some(params.value("capabilities").unwrap_or_else(|| json!({}))),
        _ => params.value("_meta")?.get(meta::CLIENT_CAPABILITIES).cloned(),
    }
}

/// Removes the modern envelope's keys (the reserved `io.modelcontextprotocol/` ones) from a request's
/// `_meta`, for a backend that speaks the handshake era.
pub fn strip_envelope(meta: &mut serde_json::Map<String, Value>) {
    meta.retain(|key, _| !key.starts_with("io.modelcontextprotocol/"));
}

/// Which era a connection speaks, judged by its first request (stdio, as the spec's backward
/// compatibility section says): modern when that request carries a protocol version in `_meta`.
pub fn era_of_first(msg: &Message) -> Era {
    match msg.method() != "initialize" && requested_version(msg).is_some() {
        true => Era::Modern,
        false => Era::Handshake,
    }
}

/// Checks a request on a connection of a known era. A modern connection takes only modern requests
/// with a valid envelope; a handshake-era one refuses requests that carry the modern envelope.
pub fn check(msg: &Message, era: Era) -> Result<(), Refusal> {
    match era {
        Era::Handshake if msg.method() != "initialize" && requested_version(msg).is_some() => Err(Refusal::new(
            code::INVALID_REQUEST,
            "this connection speaks the handshake era (it began with initialize); requests carrying the 2026-07-28 envelope are not accepted on it",
        )),
        Era::Handshake => Ok(()),
        Era::Modern => check_modern(msg),
    }
}

fn check_modern(msg: &Message) -> Result<(), Refusal> {
    if msg.method() == "initialize" {
        let why = "this connection speaks 2026-07-28: there is no initialize handshake";
        return Err(Refusal::unsupported_version(why, &requested_handshake_version(msg)));
    }
    let meta = msg.params().ok().and_then(|p| p.value("_meta")).unwrap_or(Value::Null);
    let version = meta.get(meta::PROTOCOL_VERSION).and_then(Value::as_str);
    let capabilities = meta.get(meta::CLIENT_CAPABILITIES);
    let missing: Vec<&str> =
        [(meta::PROTOCOL_VERSION, version.is_some()), (meta::CLIENT_CAPABILITIES, capabilities.is_some_and(Value::is_object))]
            .into_iter()
            .filter(|(_, present)| !present)
            .map(|(key, _)| key)
            .collect();
    if !missing.is_empty() {
        return Err(Refusal::new(code::INVALID_PARAMS, format!("params._meta is missing the required key(s): {}", missing.join(", "))));
    }
    if let Some(version) = version.filter(|v| !VERSIONS.contains(v)) {
        return Err(Refusal::unsupported_version(&format!("unsupported protocol version '{version}'"), version));
    }
    if !METHODS.contains(&msg.method()) {
        return Err(Refusal { data: Some(Value::from(msg.method())), ..Refusal::new(code::METHOD_NOT_FOUND, "Method not found") });
    }
    Ok(())
}

/// Every version the proxy speaks, modern first: a client that asked for another one learns it can
/// fall back to the handshake.
pub fn supported_versions() -> Vec<&'static str> {
    VERSIONS.iter().chain(crate::event::PROTOCOL_VERSIONS.iter().rev()).copied().collect()
}

fn requested_handshake_version(msg: &Message) -> String {
    msg.params().ok().and_then(|p| p.str("protocolVersion")).unwrap_or_default()
}

/// Checks a modern Streamable HTTP request's routing headers against its body, as the spec asks of
/// every server that reads the body: `MCP-Protocol-Version` (first of all, a version the proxy
/// speaks), `Mcp-Method` and, for the methods that name a target, `Mcp-Name`. `header` looks a header
/// up by name.
pub fn check_headers<'h>(msg: &Message, header: impl Fn(&str) -> Option<&'h str>) -> Result<(), Refusal> {
    if let Some(version) = header("mcp-protocol-version").map(str::trim).filter(|v| !VERSIONS.contains(v)) {
        return Err(Refusal::unsupported_version(&format!("unsupported protocol version '{version}'"), version));
    }
    let mismatch = |what: &str| Refusal::new(code::HEADER_MISMATCH, format!("the {what} header does not match the request body"));
    if header("mcp-protocol-version").map(str::trim) != requested_version(msg).as_deref() {
        return Err(mismatch("MCP-Protocol-Version"));
    }
    if header("mcp-method").map(decode_header) != Some(Some(msg.method().to_owned())) {
        return Err(mismatch("Mcp-Method"));
    }
    if let Some(member) = named_member(msg.method()) {
        let in_body = msg.params().ok().and_then(|p| p.str(member));
        if header("mcp-name").map(decode_header) != Some(in_body) {
            return Err(mismatch("Mcp-Name"));
        }
    }
    Ok(())
}

/// The params member a method's `Mcp-Name` header mirrors.
fn named_member(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        "tasks/get" | "tasks/update" | "tasks/cancel" => Some("taskId"),
        _ => None,
    }
}

/// A routing header's value: as it is, or decoded from the `=?base64?…?=` form used for values that
/// are not plain visible ASCII. `None` when the encoded form does not decode to UTF-8.
pub fn decode_header(value: &str) -> Option<String> {
    let value = value.trim();
    match value.strip_prefix("=?base64?").and_then(|v| v.strip_suffix("?=")) {
        Some(encoded) => {
            let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
            String::from_utf8(bytes).ok()
        }
        None => Some(value.to_owned()),
    }
}

/// A routing header's value as a sender writes it: as it is when it is plain visible ASCII with no
/// whitespace at its ends, else in the `=?base64?…?=` form.
pub fn encode_header(value: &str) -> String {
    let plain = value.bytes().all(|b| (0x20..=0x7e).contains(&b)) && value.trim() == value && !value.starts_with("=?base64?");
    match plain {
        true => value.to_owned(),
        false => format!("=?base64?{}?=", base64::engine::general_purpose::STANDARD.encode(value)),
    }
}

/// The routing headers a 2026-07-28 request needs over Streamable HTTP: `Mcp-Method`, and `Mcp-Name`
/// for the methods that name a target.
pub fn routing_headers(msg: &Message) -> Vec<(&'static str, String)> {
    let mut headers = vec![("MCP-Protocol-Version", VERSIONS[0].to_owned()), ("Mcp-Method", encode_header(msg.method()))];
    if let Some(name) = named_member(msg.method()).and_then(|m| msg.params().ok()?.str(m)) {
        headers.push(("Mcp-Name", encode_header(&name)));
    }
    headers
}

/// The proxy as an MCP implementation, for `serverInfo`.
pub fn server_info() -> Value {
    json!({ "name": "mcp-proxy-server", "title": "MCP Proxy Server", "version": env!("CARGO_PKG_VERSION") })
}

/// Dresses an answer to a modern client's request `method`: every result gets a `resultType`
/// (`"complete"` where a handshake-era backend gave none) and the proxy's `serverInfo` in `_meta`, the
/// cacheable ones `ttlMs` and `cacheScope`; the handshake era's "resource not found" (-32002) becomes
/// the modern -32602. Notifications pass unchanged.
pub fn dress(method: &str, mut msg: Message) -> Message {
    if let Some(result) = msg.result.take() {
        msg.result = Some(dress_result(method, result));
    } else if let Some(error) = msg.error.as_ref().filter(|e| is_old_not_found(e.get())) {
        let mut error: Value = serde_json::from_str(error.get()).unwrap_or_default();
        error["code"] = Value::from(code::INVALID_PARAMS);
        msg.error = Some(raw(&error));
    }
    msg
}

fn is_old_not_found(error: &str) -> bool {
    serde_json::from_str::<Value>(error).ok().and_then(|e| e.get("code").and_then(Value::as_i64)) == Some(code::RESOURCE_NOT_FOUND)
}

fn dress_result(method: &str, result: Box<serde_json::value::RawValue>) -> Box<serde_json::value::RawValue> {
    // A result that is not an object is passed on as it came: there is nothing to add it to.
    let Ok(mut members) = Params::parse(Some(&result)) else { return result };
    if members.get("resultType").is_none() {
        members.set("resultType", raw(&Value::from("complete")));
    }
    let complete = members.str("resultType").as_deref() == Some("complete");
    if complete && CACHEABLE.contains(&method) {
        // The aggregate changes when any backend's lists do, and may differ per credential (tool
        // filters, profiles): nothing here is safe to cache or to share.
        if members.get("ttlMs").is_none() {
            members.set("ttlMs", raw(&Value::from(0)));
        }
        if members.get("cacheScope").is_none() {
            members.set("cacheScope", raw(&Value::from("private")));
        }
    }
    let mut meta = members.value("_meta").filter(Value::is_object).unwrap_or_else(|| json!({}));
    meta[meta::SERVER_INFO] = server_info();
    members.set("_meta", raw(&meta));
    members.to_raw()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, params: Value) -> Message {
        Message::parse(&json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params }).to_string()).unwrap()
    }

    fn envelope(version: &str) -> Value {
        json!({ meta::PROTOCOL_VERSION: version, meta::CLIENT_CAPABILITIES: {} })
    }

    #[test]
    fn a_first_request_with_an_envelope_makes_the_connection_modern() {
        assert_eq!(era_of_first(&request("tools/list", json!({ "_meta": envelope("2026-07-28") }))), Era::Modern);
        assert_eq!(era_of_first(&request("tools/list", json!({}))), Era::Handshake);
        assert_eq!(era_of_first(&request("initialize", json!({ "_meta": envelope("2026-07-28") }))), Era::Handshake);
    }

    #[test]
    fn an_unsupported_version_is_refused_with_the_versions_the_proxy_speaks() {
        let refusal = check(&request("tools/list", json!({ "_meta": envelope("2099-01-01") })), Era::Modern).unwrap_err();
        assert_eq!((refusal.code, refusal.status()), (-32022, 400));
        assert_eq!(refusal.data.unwrap(), json!({ "supported": supported_versions(), "requested": "2099-01-01" }));
    }

    #[test]
    fn an_envelope_without_client_capabilities_is_invalid_params() {
        let meta = json!({ meta::PROTOCOL_VERSION: "2026-07-28" });
        let refusal = check(&request("tools/list", json!({ "_meta": meta })), Era::Modern).unwrap_err();
        assert_eq!(refusal.code, -32602);
        assert!(refusal.message.contains(meta::CLIENT_CAPABILITIES));
    }

    #[test]
    fn handshake_only_methods_are_not_found_for_a_modern_client() {
        for method in ["ping", "logging/setLevel", "resources/subscribe"] {
            let refusal = check(&request(method, json!({ "_meta": envelope("2026-07-28") })), Era::Modern).unwrap_err();
            assert_eq!((refusal.code, refusal.status()), (-32601, 404), "{method}");
        }
    }

    #[test]
    fn initialize_on_a_modern_connection_names_the_supported_versions() {
        let refusal = check(&request("initialize", json!({ "protocolVersion": "2025-11-25" })), Era::Modern).unwrap_err();
        assert_eq!(refusal.code, -32022);
        assert_eq!(refusal.data.unwrap()["requested"], "2025-11-25");
    }

    #[test]
    fn an_enveloped_request_on_a_handshake_connection_is_refused() {
        let refusal = check(&request("tools/list", json!({ "_meta": envelope("2026-07-28") })), Era::Handshake).unwrap_err();
        assert_eq!(refusal.code, -32600);
    }

    #[test]
    fn headers_must_mirror_the_body() {
        let msg = request("tools/call", json!({ "name": "a__x", "_meta": envelope("2026-07-28") }));
        let headers = |name: &str| match name {
            "mcp-protocol-version" => Some("2026-07-28"),
            "mcp-method" => Some("tools/call"),
            "mcp-name" => Some("a__x"),
            _ => None,
        };
        assert_eq!(check_headers(&msg, headers), Ok(()));
        let wrong_name = |name: &str| if name == "mcp-name" { Some("a__y") } else { headers(name) };
        assert_eq!(check_headers(&msg, wrong_name).unwrap_err().code, -32020);
        let no_method = |name: &str| if name == "mcp-method" { None } else { headers(name) };
        assert_eq!(check_headers(&msg, no_method).unwrap_err().code, -32020);
    }

    #[test]
    fn a_base64_header_value_is_decoded_before_it_is_compared() {
        let msg = request("resources/read", json!({ "uri": "file:///é", "_meta": envelope("2026-07-28") }));
        let encoded = format!("=?base64?{}?=", base64::engine::general_purpose::STANDARD.encode("file:///é"));
        let headers = |name: &str| match name {
            "mcp-protocol-version" => Some("2026-07-28"),
            "mcp-method" => Some("resources/read"),
            "mcp-name" => Some(encoded.as_str()),
            _ => None,
        };
        assert_eq!(check_headers(&msg, headers), Ok(()));
    }

    #[test]
    fn a_header_value_that_is_not_plain_ascii_is_sent_in_base64_and_reads_back() {
        assert_eq!(encode_header("a__x"), "a__x");
        let encoded = encode_header("file:///é ");
        assert!(encoded.starts_with("=?base64?"), "{encoded}");
        assert_eq!(decode_header(&encoded).as_deref(), Some("file:///é "));
    }

    #[test]
    fn a_handshake_era_list_result_is_dressed_as_complete_cacheable_and_signed() {
        let answer = Message::response(Value::from(1), raw(&json!({ "tools": [] })));
        let dressed: Value = serde_json::from_str(dress("tools/list", answer).result.unwrap().get()).unwrap();
        assert_eq!(dressed["resultType"], "complete");
        assert_eq!((dressed["ttlMs"].clone(), dressed["cacheScope"].clone()), (json!(0), json!("private")));
        assert_eq!(dressed["_meta"][meta::SERVER_INFO]["name"], "mcp-proxy-server");
    }

    #[test]
    fn a_tool_result_keeps_its_own_meta_and_gets_no_caching_hints() {
        let answer = Message::response(Value::from(1), raw(&json!({ "content": [], "_meta": { "x": 1 } })));
        let dressed: Value = serde_json::from_str(dress("tools/call", answer).result.unwrap().get()).unwrap();
        assert_eq!(dressed["_meta"]["x"], 1);
        assert!(dressed.get("ttlMs").is_none());
    }

    #[test]
    fn an_input_required_result_keeps_its_result_type() {
        let answer = Message::response(Value::from(1), raw(&json!({ "resultType": "input_required", "requestState": "s" })));
        let dressed: Value = serde_json::from_str(dress("tools/call", answer).result.unwrap().get()).unwrap();
        assert_eq!(dressed["resultType"], "input_required");
    }

    #[test]
    fn the_old_resource_not_found_code_becomes_invalid_params() {
        let answer = Message::error_response(Value::from(1), code::RESOURCE_NOT_FOUND, "Unknown resource: 'x'");
        let dressed: Value = serde_json::from_str(&dress("resources/read", answer).to_json()).unwrap();
        assert_eq!(dressed["error"]["code"], -32602);
    }
}
