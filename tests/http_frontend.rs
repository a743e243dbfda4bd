//! The proxy's HTTP frontend end to end: the real binary in `--sse` mode, a raw HTTP/1.1 client over
//! `std::net::TcpStream`, and the mock backend of `tests/fixtures/mock_server.py` (key `mock`, so its
//! tools are exposed as `mock__echo`, `mock__sleep`, ...). One behaviour per test, named for it.

mod support;

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::http::{
    initialize_on, initialize_request, mcp_post, notification, rpc, start, tool_call, HttpProxy, ProxyBuilder, Req, SseItem, MCP_ACCEPT,
};
use support::{http, result_text, WAIT};

const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;

fn error_code(body: &Value) -> Option<i64> {
    body.pointer("/error/code").and_then(Value::as_i64)
}

/// A small xorshift generator: short "random" sleeps without a crate.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos() as u64;
        Rng((seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ nanos) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Runs `work(i)` on `count` threads at once; fails with the first panic message.
fn run_concurrently(count: usize, work: impl Fn(usize) + Send + Sync + Clone + 'static) {
    let handles: Vec<_> = (0..count)
        .map(|i| {
            let work = work.clone();
            thread::Builder::new().name(format!("client-{i}")).spawn(move || work(i)).expect("cannot start a thread")
        })
        .collect();
    let failures: Vec<String> = handles
        .into_iter()
        .enumerate()
        .filter_map(|(i, h)| {
            h.join().err().map(|e| {
                let why = e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
                format!("client {i}: {}", why.unwrap_or_default())
            })
        })
        .collect();
    assert!(failures.is_empty(), "{} of {count} clients failed; first: {}", failures.len(), failures[0]);
}

// ----- legacy HTTP+SSE ----------------------------------------------------------------------------------

#[test]
fn legacy_sse_first_event_is_the_message_endpoint_with_a_session_id() {
    let proxy = start();
    let sse = proxy.open_sse(&[]);
    assert!(sse.head.content_type().starts_with("text/event-stream"), "{:?}", sse.head);
    assert!(sse.endpoint.starts_with("/message?sessionId="), "endpoint: {}", sse.endpoint);
    assert!(sse.session.len() >= 16, "session id too short: {:?}", sse.session);
    assert!(sse.session.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'), "session id: {:?}", sse.session);
}

#[test]
fn legacy_sse_post_is_accepted_and_the_reply_arrives_on_the_stream() {
    let proxy = start();
    let mut sse = proxy.open_sse(&[]);
    let response = proxy.request(&Req::post(&sse.endpoint).json(&initialize_request(1)));
    assert_eq!(response.status, 202, "{response:?}");
    let event = sse.events.next_event(WAIT);
    assert_eq!(event.event.as_deref(), Some("message"), "{event:?}");
    let reply = event.json();
    assert_eq!(reply["id"], 1, "{reply}");
    assert_eq!(reply["result"]["serverInfo"]["name"], "mcp-proxy-server", "{reply}");

    let accepted = proxy.request(&Req::post(&sse.endpoint).json(&notification("notifications/initialized", json!({}))));
    assert_eq!(accepted.status, 202, "{accepted:?}");
    let call = proxy.request(&Req::post(&sse.endpoint).json(&tool_call("c", "mock__echo", json!({ "text": "via sse" }))));
    assert_eq!(call.status, 202, "{call:?}");
    let reply = sse.events.next_message(WAIT);
    assert_eq!((reply["id"].clone(), result_text(&reply)), (json!("c"), "via sse"), "{reply}");
}

#[test]
fn legacy_sse_post_without_session_id_is_400_naming_it() {
    let proxy = start();
    let response = proxy.request(&Req::post("/message").json(&initialize_request(1)));
    assert_eq!(response.status, 400, "{response:?}");
    assert!(response.content_type().starts_with("application/json"), "{response:?}");
    assert!(response.json().to_string().contains("sessionId"), "{response:?}");
}

#[test]
fn legacy_sse_post_to_an_unknown_session_is_404() {
    let proxy = start();
    let response = proxy.request(&Req::post("/message?sessionId=0123456789abcdef").json(&initialize_request(1)));
    assert_eq!(response.status, 404, "{response:?}");
    let body = response.json();
    assert!(body.to_string().contains("0123456789abcdef"), "{body}");
}

// ----- Streamable HTTP ----------------------------------------------------------------------------------

#[test]
fn streamable_initialize_without_session_returns_a_session_id() {
    let proxy = start();
    let response = proxy.post_mcp(None, &initialize_request(1));
    assert_eq!(response.status, 200, "{response:?}");
    assert!(response.content_type().starts_with("application/json"), "{response:?}");
    let session = response.header("Mcp-Session-Id").unwrap_or_else(|| panic!("no Mcp-Session-Id: {response:?}"));
    assert!(session.len() >= 16, "session id: {session:?}");
    let body = response.json();
    assert_eq!(body["id"], 1, "{body}");
    assert_eq!(body["result"]["protocolVersion"], "2025-06-18", "{body}");
}

#[test]
fn streamable_tools_list_in_a_session_is_answered_with_json() {
    let proxy = start();
    let session = proxy.initialize();
    let response = proxy.post_mcp(Some(&session), &rpc(2, "tools/list", json!({})));
    assert_eq!(response.status, 200, "{response:?}");
    assert!(response.content_type().starts_with("application/json"), "{response:?}");
    let body = response.json();
    assert_eq!(body["id"], 2, "{body}");
    let names: Vec<&str> = body["result"]["tools"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
    assert!(names.contains(&"mock__echo") && names.contains(&"mock__sleep"), "{names:?}");
}

#[test]
fn streamable_request_without_session_header_is_400() {
    let proxy = start();
    let response = proxy.post_mcp(None, &rpc(2, "tools/list", json!({})));
    assert_eq!(response.status, 400, "{response:?}");
    assert!(response.json()["error"]["message"].as_str().unwrap_or_default().contains("Mcp-Session-Id"), "{response:?}");
}

#[test]
fn streamable_request_in_an_unknown_session_is_404() {
    let proxy = start();
    let response = proxy.post_mcp(Some("feedfacefeedfacefeedfacefeedface"), &rpc(2, "tools/list", json!({})));
    assert_eq!(response.status, 404, "{response:?}");
    assert!(response.json().get("error").is_some(), "{response:?}");
}

#[test]
fn streamable_notification_is_202() {
    let proxy = start();
    let response = proxy.post_mcp(None, &initialize_request(1));
    let session = response.header("Mcp-Session-Id").unwrap().to_owned();
    let accepted = proxy.post_mcp(Some(&session), &notification("notifications/initialized", json!({})));
    assert_eq!(accepted.status, 202, "{accepted:?}");
    assert!(accepted.body.is_empty(), "{accepted:?}");
}

#[test]
fn streamable_delete_ends_the_session() {
    let proxy = start();
    let session = proxy.initialize();
    let deleted = proxy.request(&Req::new("DELETE", "/mcp").header("Mcp-Session-Id", &session));
    assert_eq!(deleted.status, 200, "{deleted:?}");
    let after = proxy.post_mcp(Some(&session), &rpc(2, "tools/list", json!({})));
    assert_eq!(after.status, 404, "{after:?}");
    let again = proxy.request(&Req::new("DELETE", "/mcp").header("Mcp-Session-Id", &session));
    assert_eq!(again.status, 404, "{again:?}");
}

#[test]
fn streamable_get_stream_receives_tools_list_changed() {
    let proxy = start();
    let session = proxy.initialize();
    let mut conn = proxy.connect();
    conn.send(&Req::get("/mcp").header("Accept", "text/event-stream").header("Mcp-Session-Id", &session));
    let head = conn.head();
    assert_eq!(head.status, 200, "{head:?}");
    let mut stream = conn.into_events(&head);

    let added = proxy.post_mcp(Some(&session), &tool_call(3, "mock__add_tool", json!({ "name": "fresh" })));
    assert_eq!(added.status, 200, "{added:?}");
    assert_eq!(result_text(&added.json()), "added fresh");
    let (changed, _) = stream.wait_message(WAIT, |m| m["method"] == "notifications/tools/list_changed");
    assert!(changed.get("id").is_none(), "{changed}");

    let listed = proxy.post_mcp(Some(&session), &rpc(4, "tools/list", json!({}))).json();
    assert!(listed.to_string().contains("mock__fresh"), "{listed}");
}

#[test]
fn streamable_call_with_progress_token_is_answered_as_an_event_stream() {
    let proxy = start();
    let session = proxy.initialize();
    let call = rpc(
        5,
        "tools/call",
        json!({ "name": "mock__progress", "arguments": { "steps": 3, "ms": 20 }, "_meta": { "progressToken": "tok-1" } }),
    );
    let response = proxy.post_mcp(Some(&session), &call);
    assert_eq!(response.status, 200, "{response:?}");
    assert!(response.content_type().starts_with("text/event-stream"), "{response:?}");
    let messages: Vec<Value> = response.events().iter().map(|e| e.json()).collect();
    assert_eq!(messages.len(), 4, "{messages:?}");
    for (step, progress) in messages[..3].iter().enumerate() {
        assert_eq!(progress["method"], "notifications/progress", "{progress}");
        assert_eq!(progress["params"]["progressToken"], "tok-1", "{progress}");
        assert_eq!(progress["params"]["progress"], step as u64 + 1, "{progress}");
    }
    assert_eq!(messages[3]["id"], 5, "{}", messages[3]);
    assert_eq!(result_text(&messages[3]), "done 3");
}

#[test]
fn streamable_connection_is_reused_after_an_answer_sent_as_an_event_stream() {
    let proxy = start();
    let mut conn = proxy.connect();
    let session = initialize_on(&mut conn);
    let call =
        rpc(5, "tools/call", json!({ "name": "mock__progress", "arguments": { "steps": 2, "ms": 10 }, "_meta": { "progressToken": 1 } }));
    let streamed = conn.roundtrip(&mcp_post(Some(&session), &call));
    assert!(streamed.content_type().starts_with("text/event-stream"), "{streamed:?}");
    let next = conn.roundtrip(&mcp_post(Some(&session), &rpc(6, "tools/list", json!({}))));
    assert_eq!(next.status, 200, "{next:?}");
    assert_eq!(next.json()["id"], 6, "{next:?}");
}

#[test]
fn streamable_get_stream_ends_cleanly_when_the_session_is_deleted() {
    let proxy = start();
    let session = proxy.initialize();
    let mut conn = proxy.connect();
    conn.send(&Req::get("/mcp").header("Accept", "text/event-stream").header("Mcp-Session-Id", &session));
    let head = conn.head();
    assert_eq!(head.status, 200, "{head:?}");
    let mut stream = conn.into_events(&head);
    let deleted = proxy.request(&Req::new("DELETE", "/mcp").header("Mcp-Session-Id", &session));
    assert_eq!(deleted.status, 200, "{deleted:?}");
    // The chunked response must end with its last (zero-length) chunk, not a bare close: HTTP clients
    // report a body cut short as an error ("incomplete chunked read", "terminated").
    assert_eq!(stream.next_item(Duration::from_secs(3)), None);
}

#[test]
fn streamable_unsupported_protocol_version_header_is_400() {
    let proxy = start();
    let session = proxy.initialize();
    let req = mcp_post(Some(&session), &rpc(2, "tools/list", json!({}))).header("MCP-Protocol-Version", "1999-01-01");
    let response = proxy.request(&req);
    assert_eq!(response.status, 400, "{response:?}");
    assert!(response.text().contains("1999-01-01"), "{response:?}");
}

#[test]
fn streamable_put_is_405() {
    let proxy = start();
    let response = proxy.request(&Req::new("PUT", "/mcp").json(&initialize_request(1)));
    assert_eq!(response.status, 405, "{response:?}");
    assert!(response.header("Allow").is_some_and(|a| a.contains("POST")), "{response:?}");
}

// ----- independent sessions -----------------------------------------------------------------------------

/// One Streamable HTTP session: rounds of an echo and a sleep sent at once on two connections, with the
/// same request ids every session uses; each answer must be this session's.
fn streamable_client(addr: SocketAddr, index: usize) {
    let mut rng = Rng::new(index as u64);
    let (mut a, mut b) = (http::Conn::open(addr), http::Conn::open(addr));
    let session = initialize_on(&mut a);
    for round in 0..3u64 {
        let text = format!("client {index} round {round}");
        let ms = rng.below(40);
        let (echo_id, sleep_id) = (2 * round + 1, 2 * round + 2);
        // Alternate which connection carries which call, so both kinds share connections.
        let (echo_conn, sleep_conn) = if round % 2 == 0 { (&mut a, &mut b) } else { (&mut b, &mut a) };
        sleep_conn.send(&mcp_post(Some(&session), &tool_call(sleep_id, "mock__sleep", json!({ "ms": ms, "text": text }))));
        echo_conn.send(&mcp_post(Some(&session), &tool_call(echo_id, "mock__echo", json!({ "text": text }))));
        let echo = echo_conn.response();
        let slept = sleep_conn.response();
        assert_eq!(echo.status, 200, "echo: {echo:?}");
        assert_eq!(slept.status, 200, "sleep: {slept:?}");
        let (echo, slept) = (echo.json(), slept.json());
        assert_eq!(echo["id"], echo_id, "{echo}");
        assert_eq!(result_text(&echo), text, "{echo}");
        assert_eq!(echo["result"]["structuredContent"]["text"], text.as_str(), "{echo}");
        assert_eq!(slept["id"], sleep_id, "{slept}");
        assert_eq!(result_text(&slept), format!("slept {ms} {text}"), "{slept}");
    }
}

#[test]
fn hundred_concurrent_streamable_sessions_each_get_only_their_own_replies() {
    let proxy = start();
    let addr = proxy.addr();
    run_concurrently(100, move |i| streamable_client(addr, i));
    assert_eq!(proxy.health(&[])["sessions"], 100);
}

/// One legacy SSE session: echoes and sleeps posted back to back, answered on the stream in any order.
fn legacy_client(proxy_addr: SocketAddr, index: usize) {
    let mut rng = Rng::new(1000 + index as u64);
    let mut sse = http::open_sse(proxy_addr, &[]);
    let mut post = http::Conn::open(proxy_addr);
    let accepted = post.roundtrip(&Req::post(&sse.endpoint).json(&initialize_request(0)));
    assert_eq!(accepted.status, 202, "initialize: {accepted:?}");
    let (init, _) = sse.events.wait_message(WAIT, |m| m["id"] == 0);
    assert!(init.get("result").is_some(), "{init}");
    let accepted = post.roundtrip(&Req::post(&sse.endpoint).json(&notification("notifications/initialized", json!({}))));
    assert_eq!(accepted.status, 202, "initialized: {accepted:?}");

    let mut expected = std::collections::HashMap::new();
    for round in 0..3u64 {
        let text = format!("sse client {index} round {round}");
        let ms = rng.below(40);
        let (echo_id, sleep_id) = (2 * round + 1, 2 * round + 2);
        for (id, call) in [
            (sleep_id, tool_call(sleep_id, "mock__sleep", json!({ "ms": ms, "text": text }))),
            (echo_id, tool_call(echo_id, "mock__echo", json!({ "text": text }))),
        ] {
            let accepted = post.roundtrip(&Req::post(&sse.endpoint).json(&call));
            assert_eq!(accepted.status, 202, "call {id}: {accepted:?}");
        }
        expected.insert(echo_id, text.clone());
        expected.insert(sleep_id, format!("slept {ms} {text}"));
    }
    while !expected.is_empty() {
        let reply = sse.events.next_message(WAIT);
        let Some(id) = reply["id"].as_u64() else { continue }; // a notification
        let want = expected.remove(&id).unwrap_or_else(|| panic!("reply to an id not awaited: {reply}"));
        assert_eq!(result_text(&reply), want, "{reply}");
    }
}

#[test]
fn twenty_concurrent_legacy_sse_sessions_each_get_only_their_own_replies() {
    let proxy = start();
    let addr = proxy.addr();
    run_concurrently(20, move |i| legacy_client(addr, i));
}

// ----- robustness ---------------------------------------------------------------------------------------

#[test]
fn client_disconnecting_mid_call_does_not_disturb_the_proxy() {
    let mut proxy = start();
    let first = proxy.initialize();
    let mut conn = proxy.connect();
    conn.send(&mcp_post(Some(&first), &tool_call(1, "mock__sleep", json!({ "ms": 500 }))));
    thread::sleep(Duration::from_millis(150));
    drop(conn);

    let second = proxy.initialize();
    let echo = proxy.post_mcp(Some(&second), &tool_call(1, "mock__echo", json!({ "text": "still here" })));
    assert_eq!(echo.status, 200, "{echo:?}");
    assert_eq!(result_text(&echo.json()), "still here");

    // After the abandoned call's answer has come back and found no one to take it.
    thread::sleep(Duration::from_millis(600));
    assert!(proxy.is_running(), "the proxy has exited");
    assert_eq!(proxy.health(&[])["status"], "ok");
    for session in [&second, &first] {
        let echo = proxy.post_mcp(Some(session), &tool_call(2, "mock__echo", json!({ "text": "after" })));
        assert_eq!(echo.status, 200, "{echo:?}");
        assert_eq!(result_text(&echo.json()), "after");
    }
}

#[test]
fn idle_streamable_session_expires() {
    let proxy = ProxyBuilder::new().env("MCP_PROXY_SESSION_IDLE_TIMEOUT", "1").start();
    // Start-up on a loaded machine can outlast the idle timeout; that case has a test of its own.
    proxy.wait_backends_connected(&[]);
    let session = proxy.initialize();
    let listed = proxy.post_mcp(Some(&session), &rpc(1, "tools/list", json!({})));
    assert_eq!(listed.status, 200, "{listed:?}");
    thread::sleep(Duration::from_millis(2000));
    let expired = proxy.post_mcp(Some(&session), &rpc(2, "tools/list", json!({})));
    assert_eq!(expired.status, 404, "{expired:?}");
}

#[test]
fn session_whose_request_waits_for_backends_to_start_is_not_expired() {
    // The backend takes 2 s to start, the idle timeout is 1 s: initialize is held until start-up
    // settles, and meanwhile its session must not count as idle.
    let proxy = ProxyBuilder::new().backend_start_delay(2.0).env("MCP_PROXY_SESSION_IDLE_TIMEOUT", "1").start();
    let response = proxy.post_mcp(None, &initialize_request(1));
    assert_eq!(response.status, 200, "{response:?}");
    let session = response.header("Mcp-Session-Id").unwrap().to_owned();
    let listed = proxy.post_mcp(Some(&session), &rpc(2, "tools/list", json!({})));
    assert_eq!(listed.status, 200, "{listed:?}");
}

#[test]
fn session_is_not_expired_right_after_a_call_longer_than_the_idle_timeout() {
    let proxy = ProxyBuilder::new().env("MCP_PROXY_SESSION_IDLE_TIMEOUT", "1").start();
    proxy.wait_backends_connected(&[]);
    let session = proxy.initialize();
    let slept = proxy.post_mcp(Some(&session), &tool_call(1, "mock__sleep", json!({ "ms": 1500 })));
    assert_eq!(slept.status, 200, "{slept:?}");
    // The answer came 0.3 s ago: the session has not been idle for 1 s.
    thread::sleep(Duration::from_millis(300));
    let listed = proxy.post_mcp(Some(&session), &rpc(2, "tools/list", json!({})));
    assert_eq!(listed.status, 200, "{listed:?}");
}

#[test]
fn idle_sse_stream_gets_keepalive_comments_and_is_not_buffered() {
    let proxy = ProxyBuilder::new().env("MCP_PROXY_SSE_KEEPALIVE", "0.2").start();
    let mut sse = proxy.open_sse(&[]);
    assert_eq!(sse.head.header("X-Accel-Buffering"), Some("no"), "{:?}", sse.head);
    let started = Instant::now();
    let item = sse.events.next_item(Duration::from_secs(3));
    assert_eq!(item, Some(SseItem::Comment("keepalive".into())));
    assert!(started.elapsed() < Duration::from_secs(2), "first keep-alive after {:?}", started.elapsed());
    assert_eq!(sse.events.next_item(Duration::from_secs(3)), Some(SseItem::Comment("keepalive".into())));
}

// ----- auth ---------------------------------------------------------------------------------------------

fn keyed_proxy() -> HttpProxy {
    ProxyBuilder::new().env("ALLOWED_KEYS", "k1,k2").start()
}

#[test]
fn mcp_without_key_is_401_with_a_challenge() {
    let proxy = keyed_proxy();
    let response = proxy.post_mcp(None, &initialize_request(1));
    assert_eq!(response.status, 401, "{response:?}");
    assert!(response.header("WWW-Authenticate").is_some_and(|v| !v.is_empty()), "{response:?}");
}

#[test]
fn mcp_with_api_key_header_is_served() {
    let proxy = keyed_proxy();
    let response = proxy.request(&mcp_post(None, &initialize_request(1)).header("X-Api-Key", "k2"));
    assert_eq!(response.status, 200, "{response:?}");
    assert!(response.header("Mcp-Session-Id").is_some(), "{response:?}");
}

#[test]
fn mcp_with_key_query_parameter_is_served() {
    let proxy = keyed_proxy();
    let mut req = mcp_post(None, &initialize_request(1));
    req.target = "/mcp?key=k1".into();
    let response = proxy.request(&req);
    assert_eq!(response.status, 200, "{response:?}");
    let wrong = proxy.request(&Req { target: "/mcp?key=k3".into(), ..req });
    assert_eq!(wrong.status, 401, "{wrong:?}");
}

#[test]
fn the_protected_resource_metadata_is_not_found_without_oauth() {
    let proxy = keyed_proxy();
    let response = proxy.request(&Req::get("/.well-known/oauth-protected-resource/mcp"));
    assert_eq!(response.status, 404, "{response:?}");
    assert!(response.text().contains("MCP_PROXY_OAUTH_ISSUER is not set"), "{response:?}");
}

/// OAuth on, its authorization server unreachable (nothing listens on port 9): what a proxy can say
/// about tokens without asking it. (Tokens from a real one: tests/interop/test_oauth_frontend.py.)
#[cfg(feature = "oauth")]
fn oauth_proxy() -> HttpProxy {
    ProxyBuilder::new()
        .env("MCP_PROXY_OAUTH_ISSUER", "http://127.0.0.1:9")
        .env("MCP_PROXY_OAUTH_RESOURCE", "https://hub.lan/mcp")
        .env("MCP_PROXY_OAUTH_SCOPES", "mcp:tools")
        .env("ALLOWED_KEYS", "k1")
        .start()
}

#[cfg(feature = "oauth")]
#[test]
fn with_oauth_a_request_without_a_token_is_told_where_the_resource_metadata_is() {
    let response = oauth_proxy().post_mcp(None, &initialize_request(1));
    assert_eq!(response.status, 401, "{response:?}");
    let challenge = response.header("WWW-Authenticate").unwrap_or_default();
    let expected = r#"Bearer resource_metadata="https://hub.lan/.well-known/oauth-protected-resource/mcp", scope="mcp:tools""#;
    assert!(challenge.starts_with(expected), "{challenge}");
    assert!(challenge.ends_with(r#"ApiKey header="X-Api-Key""#), "the static key is offered too: {challenge}");
}

#[cfg(feature = "oauth")]
#[test]
fn with_oauth_the_resource_metadata_is_public_at_the_root_and_under_each_endpoint() {
    let proxy = oauth_proxy();
    for path in
        ["/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource/sse"]
    {
        let response = proxy.request(&Req::get(path));
        assert_eq!(response.status, 200, "{path}: {response:?}");
        assert_eq!(response.header("Access-Control-Allow-Origin"), Some("*"), "{path}");
        let document = response.json();
        assert_eq!(
            (document["resource"].as_str(), document["authorization_servers"][0].as_str()),
            (Some("https://hub.lan/mcp"), Some("http://127.0.0.1:9"))
        );
    }
    assert_eq!(proxy.request(&Req::get("/.well-known/oauth-protected-resource/admin")).status, 404);
}

#[cfg(feature = "oauth")]
#[test]
fn with_oauth_a_token_that_cannot_be_checked_now_is_503_not_401() {
    // A JWT whose keys are at an authorization server that does not answer: refusing it as invalid
    // would send the client to log in again for nothing.
    let jwt = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJhIn0.c2ln";
    let response = oauth_proxy().request(&mcp_post(None, &initialize_request(1)).header("Authorization", &format!("Bearer {jwt}")));
    assert_eq!(response.status, 503, "{response:?}");
    assert!(response.text().contains("cannot check the access token now"), "{response:?}");
}

#[cfg(feature = "oauth")]
#[test]
fn with_oauth_an_opaque_token_without_introspection_is_invalid() {
    let response = oauth_proxy().request(&mcp_post(None, &initialize_request(1)).header("Authorization", "Bearer opaque-token"));
    assert_eq!(response.status, 401, "{response:?}");
    let challenge = response.header("WWW-Authenticate").unwrap_or_default();
    assert!(
        challenge.contains(r#"error="invalid_token", error_description="not a JWT, and no introspection is configured""#),
        "{challenge}"
    );
}

#[cfg(feature = "oauth")]
#[test]
fn with_oauth_static_keys_still_work() {
    let response = oauth_proxy().request(&mcp_post(None, &initialize_request(1)).header("X-Api-Key", "k1"));
    assert_eq!(response.status, 200, "{response:?}");
}

#[test]
fn legacy_message_without_key_is_401() {
    let proxy = keyed_proxy();
    let sse = proxy.open_sse(&[("X-Api-Key", "k1")]);
    let response = proxy.request(&Req::post(&sse.endpoint).json(&initialize_request(1)));
    assert_eq!(response.status, 401, "{response:?}");
    let unkeyed_stream = proxy.request(&Req::get("/sse"));
    assert_eq!(unkeyed_stream.status, 401, "{unkeyed_stream:?}");
}

#[test]
fn bearer_token_is_checked() {
    let proxy = ProxyBuilder::new().env("ALLOWED_TOKENS", "t").start();
    let ok = proxy.request(&mcp_post(None, &initialize_request(1)).header("Authorization", "Bearer t"));
    assert_eq!(ok.status, 200, "{ok:?}");
    let wrong = proxy.request(&mcp_post(None, &initialize_request(1)).header("Authorization", "Bearer x"));
    assert_eq!(wrong.status, 401, "{wrong:?}");
    assert!(wrong.header("WWW-Authenticate").is_some(), "{wrong:?}");
}

#[test]
fn health_without_key_shows_only_status_and_version() {
    let proxy = keyed_proxy();
    let health = proxy.health(&[]);
    let mut keys: Vec<&str> = health.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["status", "version"], "{health}");
    assert_eq!(health["status"], "ok");
}

#[test]
fn health_with_key_shows_each_backends_state() {
    let proxy = ProxyBuilder::new().backends(&["alpha", "beta"]).env("ALLOWED_KEYS", "k1,k2").start();
    let health = proxy.wait_backends_connected(&[("X-Api-Key", "k1")]);
    let backends = health["backends"].as_array().unwrap();
    let states: Vec<(&str, &str)> =
        backends.iter().map(|b| (b["key"].as_str().unwrap_or("?"), b["state"].as_str().unwrap_or("?"))).collect();
    assert_eq!(states, [("alpha", "connected"), ("beta", "connected")], "{health}");
}

// ----- Origin -------------------------------------------------------------------------------------------

#[test]
fn foreign_origin_is_403() {
    let proxy = start();
    let response = proxy.request(&mcp_post(None, &initialize_request(1)).header("Origin", "http://evil.example"));
    assert_eq!(response.status, 403, "{response:?}");
}

#[test]
fn localhost_origin_is_allowed() {
    let proxy = start();
    let response = proxy.request(&mcp_post(None, &initialize_request(1)).header("Origin", "http://localhost:1234"));
    assert_eq!(response.status, 200, "{response:?}");
}

#[test]
fn configured_origin_is_allowed() {
    let proxy = ProxyBuilder::new().env("MCP_PROXY_ALLOWED_ORIGINS", "http://evil.example").start();
    let response = proxy.request(&mcp_post(None, &initialize_request(1)).header("Origin", "http://evil.example"));
    assert_eq!(response.status, 200, "{response:?}");
    let other = proxy.request(&mcp_post(None, &initialize_request(1)).header("Origin", "http://other.example"));
    assert_eq!(other.status, 403, "{other:?}");
}

// ----- HTTP limits and framing --------------------------------------------------------------------------

#[test]
fn body_over_the_limit_is_413_and_others_are_still_served() {
    let proxy = ProxyBuilder::new().env("MCP_PROXY_MAX_BODY_BYTES", "1000").start();
    let padding = "x".repeat(2000);
    let big = rpc(1, "initialize", json!({ "protocolVersion": "2025-06-18", "padding": padding }));
    let mut conn = proxy.connect();
    // The proxy may refuse before reading the body: a failed write is not the test's concern.
    let _ = conn.write_raw(&mcp_post(None, &big).to_bytes());
    let response = conn.response();
    assert_eq!(response.status, 413, "{response:?}");

    let small = proxy.post_mcp(None, &initialize_request(2));
    assert_eq!(small.status, 200, "{small:?}");
}

#[test]
fn chunked_body_over_the_limit_is_413() {
    let proxy = ProxyBuilder::new().env("MCP_PROXY_MAX_BODY_BYTES", "1000").start();
    let mut bytes =
        String::from("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
    for _ in 0..3 {
        bytes.push_str(&format!("{:x}\r\n{}\r\n", 600, "a".repeat(600)));
    }
    bytes.push_str("0\r\n\r\n");
    let mut conn = proxy.connect();
    let _ = conn.write_raw(bytes.as_bytes());
    let response = conn.response();
    assert_eq!(response.status, 413, "{response:?}");
}

/// A chunk size near `usize::MAX` once wrapped the size check around and crashed the proxy.
#[test]
fn chunk_size_near_the_integer_limit_is_413_and_the_proxy_lives_on() {
    let proxy = start();
    let bytes = "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\nffffffffffffffff\r\n";
    let mut conn = proxy.connect();
    let _ = conn.write_raw(bytes.as_bytes());
    assert_eq!(conn.response().status, 413);
    assert_eq!(proxy.health(&[])["status"], "ok");
}

#[test]
fn expect_100_continue_with_a_body_over_the_limit_is_413_without_continue() {
    let proxy = ProxyBuilder::new().env("MCP_PROXY_MAX_BODY_BYTES", "1000").start();
    let mut conn = proxy.connect();
    let head = "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\
                Expect: 100-continue\r\n\r\n";
    conn.write_raw(head.as_bytes()).unwrap();
    let response = conn.head();
    assert_eq!(response.status, 413, "{response:?}");
}

#[test]
fn malformed_json_body_is_400_parse_error() {
    let proxy = start();
    let session = proxy.initialize();
    for session in [None, Some(session.as_str())] {
        let req = mcp_post(session, &json!(null)).body("{\"jsonrpc\": \"2.0\", \"id\": 1, ");
        let response = proxy.request(&req);
        assert_eq!(response.status, 400, "{response:?}");
        assert_eq!(error_code(&response.json()), Some(PARSE_ERROR), "{response:?}");
    }
}

#[test]
fn json_array_body_is_400_invalid_request() {
    let proxy = start();
    let response = proxy.post_mcp(None, &json!([initialize_request(1)]));
    assert_eq!(response.status, 400, "{response:?}");
    assert_eq!(error_code(&response.json()), Some(INVALID_REQUEST), "{response:?}");
}

#[test]
fn request_head_over_32_kib_is_431() {
    let proxy = start();
    let mut conn = proxy.connect();
    let req = Req::get("/health").header("X-Padding", &"a".repeat(33 * 1024));
    let _ = conn.write_raw(&req.to_bytes());
    let response = conn.response();
    assert_eq!(response.status, 431, "{response:?}");
    assert_eq!(proxy.health(&[])["status"], "ok");
}

#[test]
fn chunked_request_body_is_read() {
    let proxy = start();
    let body = initialize_request(7).to_string();
    let (one, rest) = body.split_at(10);
    let (two, three) = rest.split_at(rest.len() / 2);
    let mut bytes = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: {MCP_ACCEPT}\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    );
    for part in [one, two, three] {
        bytes.push_str(&format!("{:x};ext=1\r\n{part}\r\n", part.len()));
    }
    bytes.push_str("0\r\n\r\n");
    let mut conn = proxy.connect();
    conn.write_raw(bytes.as_bytes()).unwrap();
    let response = conn.response();
    assert_eq!(response.status, 200, "{response:?}");
    assert!(response.header("Mcp-Session-Id").is_some(), "{response:?}");
    assert_eq!(response.json()["id"], 7, "{response:?}");
}

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let proxy = start();
    let body = initialize_request(8).to_string();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: {MCP_ACCEPT}\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    let mut conn = proxy.connect();
    conn.write_raw(head.as_bytes()).unwrap();
    let interim = conn.head();
    assert_eq!(interim.status, 100, "{interim:?}");
    conn.write_raw(body.as_bytes()).unwrap();
    let response = conn.response();
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.json()["id"], 8, "{response:?}");
}

#[test]
fn two_requests_on_one_keep_alive_connection_are_both_answered() {
    let proxy = start();
    let mut conn = proxy.connect();
    let first = conn.roundtrip(&mcp_post(None, &initialize_request(1)));
    assert_eq!(first.status, 200, "{first:?}");
    assert_ne!(first.header("Connection").map(str::to_ascii_lowercase).as_deref(), Some("close"), "{first:?}");
    let session = first.header("Mcp-Session-Id").unwrap().to_owned();
    let second = conn.roundtrip(&mcp_post(Some(&session), &rpc(2, "tools/list", json!({}))));
    assert_eq!(second.status, 200, "{second:?}");
    assert_eq!(second.json()["id"], 2, "{second:?}");
}

#[test]
fn unknown_path_is_404() {
    let proxy = start();
    let response = proxy.request(&Req::get("/nowhere"));
    assert_eq!(response.status, 404, "{response:?}");
    assert!(response.json().get("error").is_some(), "{response:?}");
}

#[test]
fn http_mode_declares_no_client_capabilities_to_backends_by_default() {
    let proxy = start();
    let session = proxy.initialize();
    let info = proxy.post_mcp(Some(&session), &tool_call(2, "mock__client_info", json!({})));
    let reported: Value = serde_json::from_str(result_text(&info.json())).unwrap_or_default();
    assert_eq!(reported["capabilities"], json!({}), "{reported}");
}

#[test]
fn client_capabilities_setting_is_declared_to_backends_in_http_mode() {
    let proxy = ProxyBuilder::new().env("MCP_PROXY_CLIENT_CAPABILITIES", "sampling, roots").start();
    let session = proxy.initialize();
    let info = proxy.post_mcp(Some(&session), &tool_call(2, "mock__client_info", json!({})));
    let reported: Value = serde_json::from_str(result_text(&info.json())).unwrap_or_default();
    assert_eq!(reported["capabilities"], json!({ "sampling": {}, "roots": {} }), "{reported}");
}

// ----- request smuggling (RFC 9112 §6) ------------------------------------------------------------------

/// Writes `bytes` on a fresh connection and reads until the proxy closes it (or 3 s pass); returns what
/// came back and whether the connection was closed.
fn exchange_raw(proxy: &HttpProxy, bytes: &[u8]) -> (String, bool) {
    let mut stream = TcpStream::connect(proxy.addr()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    stream.write_all(bytes).unwrap();
    let mut reply = Vec::new();
    let closed = stream.read_to_end(&mut reply).is_ok();
    (String::from_utf8_lossy(&reply).into_owned(), closed)
}

/// Heads whose body length two readers could see differently. Each is followed by a second request,
/// `GET /health`, which a server that read the first one "somehow" would serve as a request of its own.
#[test]
fn ambiguous_framing_is_refused_with_400_and_nothing_after_it_is_served() {
    let proxy = start();
    let smuggled = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    let post = "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n";
    let shapes = [
        format!("{post}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        format!("{post}Content-Length: 0\r\nContent-Length: 5\r\n\r\n"),
        format!("{post}Content-Length: +0\r\n\r\n"),
        format!("{post}Transfer-Encoding: chunked\r\n\r\n+0\r\n\r\n"),
        format!("{post}Transfer-Encoding: chunked\r\n\r\n0\n\r\n"),
        format!("{post}Transfer-Encoding: gzip\r\n\r\n"),
        format!("{post}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"),
        format!("{post}Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"),
        format!("{post}Transfer-Encoding: chunked;q=1\r\n\r\n0\r\n\r\n"),
        format!("{post}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        "POST /mcp HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n".to_owned(),
    ];
    for shape in shapes {
        let (reply, closed) = exchange_raw(&proxy, format!("{shape}{smuggled}").as_bytes());
        assert!(reply.starts_with("HTTP/1.1 400"), "{shape:?} got {reply:?}");
        assert_eq!(reply.matches("\r\n\r\n").count(), 1, "{shape:?}: the rest was served as a request: {reply:?}");
        assert!(closed, "{shape:?}: the connection stays open after {reply:?}");
    }
    assert_eq!(proxy.health(&[])["status"], "ok");
}

// ----- DNS rebinding: Host -----------------------------------------------------------------------------

#[test]
fn requests_for_a_foreign_host_name_are_refused_on_every_route() {
    let proxy = start();
    let host = format!("rebound.example:{}", proxy.addr().port());
    for req in [Req::get("/health"), Req::get("/metrics"), mcp_post(None, &initialize_request(1)), Req::get("/sse"), Req::get("/admin/")] {
        let (method, target) = (req.method.clone(), req.target.clone());
        let response = proxy.request(&req.header("Host", &host));
        assert_eq!(response.status, 403, "{method} {target} for {host}: {response:?}");
        assert!(response.text().contains("MCP_PROXY_ALLOWED_HOSTS"), "the refusal says what to do: {response:?}");
    }
}

#[test]
fn loopback_names_and_ip_literals_are_served_as_hosts() {
    let proxy = start();
    let port = proxy.addr().port();
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}"), "[::1]".to_owned(), format!("192.0.2.7:{port}")] {
        let response = proxy.request(&Req::get("/health").header("Host", &host));
        assert_eq!(response.status, 200, "Host: {host}: {response:?}");
    }
}

#[test]
fn allowed_hosts_setting_admits_a_lan_name() {
    let proxy = ProxyBuilder::new().env("MCP_PROXY_ALLOWED_HOSTS", "mcp.lan").start();
    let response = proxy.request(&Req::get("/health").header("Host", "MCP.lan:3663"));
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(proxy.request(&Req::get("/health").header("Host", "other.lan")).status, 403);
}

// ----- idle connections --------------------------------------------------------------------------------

#[test]
fn a_connection_that_sends_nothing_is_closed_at_the_first_request_deadline() {
    let proxy = ProxyBuilder::new().env("MCP_PROXY_FIRST_REQUEST_TIMEOUT", "1").start();
    let mut idle = TcpStream::connect(proxy.addr()).unwrap();
    idle.set_read_timeout(Some(WAIT)).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 64];
    let read = idle.read(&mut buf);
    assert!(matches!(read, Ok(0)), "closed without an answer: {read:?}");
    assert!(start.elapsed() < Duration::from_secs(3), "closed after {:?}", start.elapsed());
    assert_eq!(proxy.health(&[])["status"], "ok");
}

#[test]
fn one_address_cannot_take_every_connection_slot() {
    let proxy = ProxyBuilder::new().env("MCP_PROXY_MAX_CONNECTIONS_PER_ADDRESS", "10").start();
    let flooder = Ipv4Addr::new(127, 0, 0, 2);
    let _idle: Vec<_> = (0..10).map(|_| proxy.connect_from(flooder)).collect();
    let over = proxy.connect_from(flooder).roundtrip(&Req::get("/health"));
    assert_eq!(over.status, 429, "the 11th connection from {flooder}: {over:?}");
    let other = proxy.connect_from(Ipv4Addr::new(127, 0, 0, 3)).roundtrip(&Req::get("/health"));
    assert_eq!(other.status, 200, "a client from another address is served: {other:?}");
}

#[test]
fn each_connection_holds_one_descriptor() {
    let proxy = start();
    // Counted once the backend has started (spawning it opens pipes for a moment).
    proxy.wait_backends_connected(&[]);
    thread::sleep(Duration::from_millis(300));
    let before = proxy.open_fds();
    let conns: Vec<_> = (0..40).map(|_| proxy.connect()).collect();
    // Accepted connections show up as their threads start; wait until the count stops growing.
    let deadline = Instant::now() + WAIT;
    let mut now = proxy.open_fds();
    while now < before + conns.len() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
        now = proxy.open_fds();
    }
    thread::sleep(Duration::from_millis(300));
    let held = proxy.open_fds() - before;
    assert!((conns.len()..conns.len() + 5).contains(&held), "{} connections hold {held} descriptors", conns.len());
}

/// With `RLIMIT_NOFILE` 128, 200 idle connections from eight addresses once took every descriptor: a
/// crashed stdio backend could not be restarted ("Too many open files"). The connection cap is sized
/// to leave a reserve, so the backend comes back while the flood holds its connections.
#[test]
fn a_connection_flood_leaves_descriptors_to_restart_a_backend() {
    let proxy = ProxyBuilder::new().nofile(128).start();
    let mut client = proxy.connect();
    let session = initialize_on(&mut client);
    let flood: Vec<TcpStream> =
        (0..200).filter_map(|i| support::http::connect_from(Ipv4Addr::new(127, 0, 1, 1 + (i % 8) as u8), proxy.addr()).ok()).collect();
    thread::sleep(Duration::from_millis(500));
    let crash = client.roundtrip(&mcp_post(Some(&session), &tool_call(1, "mock__crash", json!({}))));
    assert_eq!(crash.status, 200, "{crash:?}");
    let deadline = Instant::now() + WAIT;
    loop {
        let echo = client.roundtrip(&mcp_post(Some(&session), &tool_call(2, "mock__echo", json!({ "text": "back" }))));
        if echo.status == 200 && echo.json().pointer("/result/content/0/text") == Some(&json!("back")) {
            break;
        }
        assert!(Instant::now() < deadline, "the backend was not restarted with {} flood connections open: {echo:?}", flood.len());
        thread::sleep(Duration::from_millis(200));
    }
    assert!(!proxy.stderr().contains("Too many open files"), "descriptors ran out");
}
