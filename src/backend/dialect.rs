//! The protocol era a backend connection speaks, and how its writer turns the dispatcher's requests into
//! that era. The dispatcher forwards requests as clients sent them (a 2026-07-28 client's with its
//! envelope in `_meta`, a handshake-era client's without); once it has learnt the backend's era it sets
//! the connection's dialect, and from then on the writer thread strips the envelope for a handshake-era
//! backend (a dual-era server refuses it on a handshake connection) or completes it for a 2026-07-28
//! one (every request must carry its protocol version and client capabilities).
//!
//! Until the era is known (the handshake itself) messages pass as they are.

use crate::jsonrpc::{raw, Kind, Message};
use crate::mcp_param::Mirrored;
use crate::modern::{self, meta};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// Shared by the dispatcher, which decides the era once per connection, and the connection's writer.
#[derive(Clone, Default)]
pub struct Dialect(Arc<Shared>);

#[derive(Default)]
struct Shared {
    era: OnceLock<Era>,
    /// The arguments each of the backend's tools mirrors into `Mcp-Param-*` headers (2026-07-28 over
    /// HTTP), by the backend's own tool name; the dispatcher updates it when the tools list changes.
    mirrored: Mutex<HashMap<String, Vec<Mirrored>>>,
}

enum Era {
    Handshake,
    /// The envelope keys to give a request that lacks them (a handshake-era client's request, the
    /// proxy's own).
    Modern(Map<String, Value>),
}

impl Dialect {
    /// The backend speaks the handshake era. The first decision stands.
    pub fn speak_handshake(&self) {
        let _ = self.0.era.set(Era::Handshake);
    }

    /// The backend speaks 2026-07-28; `defaults` are the envelope keys for requests that bring none.
    pub fn speak_modern(&self, defaults: Map<String, Value>) {
        let _ = self.0.era.set(Era::Modern(defaults));
    }

    pub fn is_modern(&self) -> bool {
        matches!(self.0.era.get(), Some(Era::Modern(_)))
    }

    /// Takes the backend's tools' `x-mcp-header` annotations (from its latest tools list).
    pub fn set_mirrored(&self, mirrored: HashMap<String, Vec<Mirrored>>) {
        *self.0.mirrored.lock().unwrap_or_else(PoisonError::into_inner) = mirrored;
    }

    /// The `Mcp-Param-*` headers a tool call to the backend carries.
    pub fn param_headers(&self, msg: &Message) -> Vec<(String, String)> {
        let Some(params) = msg.params().ok().filter(|_| msg.method() == "tools/call") else { return Vec::new() };
        let mirrored = self.0.mirrored.lock().unwrap_or_else(PoisonError::into_inner);
        match mirrored.get(&params.str("name").unwrap_or_default()) {
            Some(tool) => crate::mcp_param::headers(tool, &params.value("arguments").unwrap_or_default()),
            None => Vec::new(),
        }
    }

    /// A request as the backend's era wants it; anything else as it is.
    pub fn translate(&self, msg: Message) -> Message {
        match self.0.era.get() {
            Some(era) if msg.kind() == Kind::Request => era.translate(msg),
            _ => msg,
        }
    }
}

impl Era {
    fn translate(&self, mut msg: Message) -> Message {
        // Most requests to a handshake-era backend carry no envelope: a look at the text spares a parse.
        let mentions_envelope = msg.params.as_ref().is_some_and(|p| p.get().contains("io.modelcontextprotocol/"));
        if matches!(self, Era::Handshake) && !mentions_envelope {
            return msg;
        }
        let Ok(mut params) = msg.params() else { return msg };
        let mut envelope = match params.value("_meta") {
            Some(Value::Object(meta)) => meta,
            _ => Map::new(),
        };
        match self {
            Era::Handshake => {
                modern::strip_envelope(&mut envelope);
            }
            Era::Modern(defaults) => {
                for (key, value) in defaults {
                    envelope.entry(key.clone()).or_insert_with(|| value.clone());
                }
                // The backend speaks the proxy's version, whatever the client asked of the proxy. The
                // client's capabilities pass as it declared them: the tasks extension too, whose tasks
                // the proxy relays (`hub/modern_tasks.rs`).
                envelope.insert(meta::PROTOCOL_VERSION.into(), Value::from(modern::VERSIONS[0]));
            }
        }
        params.set("_meta", raw(&Value::Object(envelope)));
        msg.params = Some(params.to_raw());
        msg
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(params: Value) -> Message {
        Message::request(Value::from(1), "tools/call", Some(raw(&params)))
    }

    fn params_of(msg: &Message) -> Value {
        serde_json::from_str(msg.params.as_ref().unwrap().get()).unwrap()
    }

    fn defaults() -> Map<String, Value> {
        let envelope =
            json!({ meta::PROTOCOL_VERSION: "2026-07-28", meta::CLIENT_CAPABILITIES: {}, meta::CLIENT_INFO: { "name": "proxy" } });
        envelope.as_object().unwrap().clone()
    }

    #[test]
    fn until_the_era_is_known_requests_pass_as_they_are() {
        let msg = request(json!({ "_meta": { meta::PROTOCOL_VERSION: "2026-07-28" } }));
        assert_eq!(Dialect::default().translate(msg.clone()).to_json(), msg.to_json());
    }

    #[test]
    fn a_handshake_era_backend_gets_no_envelope_and_keeps_the_progress_token() {
        let dialect = Dialect::default();
        dialect.speak_handshake();
        let msg = request(json!({ "name": "x", "_meta": { meta::PROTOCOL_VERSION: "2026-07-28", "progressToken": 4 } }));
        assert_eq!(params_of(&dialect.translate(msg)), json!({ "name": "x", "_meta": { "progressToken": 4 } }));
    }

    #[test]
    fn a_modern_backend_is_told_the_clients_extensions_as_it_declared_them() {
        let dialect = Dialect::default();
        dialect.speak_modern(defaults());
        let caps = json!({ "elicitation": {}, "extensions": { meta::TASKS_EXTENSION: {}, "com.example/other": {} } });
        let msg = request(json!({ "name": "x", "_meta": { meta::CLIENT_CAPABILITIES: caps.clone() } }));
        let meta = params_of(&dialect.translate(msg))["_meta"].clone();
        assert_eq!(meta[meta::CLIENT_CAPABILITIES], caps);
    }

    #[test]
    fn a_modern_backend_gets_the_defaults_under_the_clients_own_capabilities() {
        let dialect = Dialect::default();
        dialect.speak_modern(defaults());
        let caps = json!({ "elicitation": {} });
        let msg = request(json!({ "name": "x", "_meta": { meta::CLIENT_CAPABILITIES: caps } }));
        let meta = params_of(&dialect.translate(msg))["_meta"].clone();
        assert_eq!(meta[meta::CLIENT_CAPABILITIES], caps);
        assert_eq!(meta[meta::PROTOCOL_VERSION], "2026-07-28");
        assert_eq!(meta[meta::CLIENT_INFO]["name"], "proxy");
    }

    #[test]
    fn a_tool_call_to_a_modern_backend_carries_the_headers_its_tool_mirrors() {
        let dialect = Dialect::default();
        let schema = json!({ "properties": { "region": { "type": "string", "x-mcp-header": "Region" } } });
        dialect.set_mirrored(HashMap::from([("locate".to_owned(), crate::mcp_param::annotations(&schema).unwrap())]));
        let call = Message::request(Value::from(1), "tools/call", Some(raw(&json!({ "name": "locate", "arguments": { "region": "eu" } }))));
        assert_eq!(dialect.param_headers(&call), [("Mcp-Param-Region".to_owned(), "eu".to_owned())]);
        let other = Message::request(Value::from(2), "tools/call", Some(raw(&json!({ "name": "echo", "arguments": { "region": "eu" } }))));
        assert!(dialect.param_headers(&other).is_empty());
    }

    #[test]
    fn the_first_decision_stands() {
        let dialect = Dialect::default();
        dialect.speak_handshake();
        dialect.speak_modern(defaults());
        assert!(!dialect.is_modern());
    }
}
