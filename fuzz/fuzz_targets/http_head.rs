//! `http::parse_head` on any bytes (what a client sends before the empty line), and every accessor the
//! frontend uses on what it returns.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_proxy_server::http::parse_head;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = parse_head(data) else { return };
    assert!(!req.path.contains('?'));
    assert!(req.body.is_empty());
    for name in ["mcp-session-id", "content-length", "transfer-encoding", "x-api-key", "authorization", "origin", "host"] {
        let _ = req.header(name);
    }
    let _ = req.keep_alive();
    let _ = req.accepts("text/event-stream");
    let _ = req.accepts("application/json");
    let _ = req.cookie("mcp_admin");
    let _ = req.query_param("sessionId");
    let _ = req.query_param("key");
});
