//! `jsonrpc::Message::parse` on any text: never panics; what it accepts serialises back to a message
//! that parses again to the same kind, id and method, with `params`/`result`/`error` byte for byte.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_proxy_server::jsonrpc::{Kind, Message};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let msg = match Message::parse(text) {
        Ok(msg) => msg,
        Err(e) => {
            let _ = (e.code(), e.to_string());
            return;
        }
    };
    let kind = msg.kind();
    assert!(msg.method.is_some() || msg.result.is_some() || msg.error.is_some());
    if kind == Kind::Request {
        let id = msg.id.as_ref().unwrap();
        assert!(id.is_string() || id.is_number(), "request id {id:?}");
    }
    let _ = msg.params();
    let _ = msg.method();
    let json = msg.to_json();
    let again = Message::parse(&json).unwrap_or_else(|e| panic!("re-parse of {json:?} failed: {e}"));
    assert_eq!(again.kind(), kind);
    // Ids survive exactly, floats included (serde_json `float_roundtrip`, since 18503cf).
    assert_eq!(again.id, msg.id);
    let raw = |m: &Message| {
        [&m.params, &m.result, &m.error].map(|r| r.as_ref().map(|r| r.get().to_owned()))
    };
    assert_eq!(raw(&again), raw(&msg));
    assert_eq!(again.to_json(), json, "serialisation is not stable");
});
