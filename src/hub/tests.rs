//! The dispatcher driven event by event: in-memory backends (what the hub sends them arrives on a
//! channel, and the test answers for them through their `Link`) and in-memory clients (their outboxes
//! are plain channels). No threads, no processes, no sleeping: time moves when a test calls
//! [`Harness::later`], which from then on runs the dispatcher's timers as if that much more time had
//! passed (so a timer it sets meanwhile, from the real clock, is due as soon as it is shorter).

use super::{Hub, HubSettings};
use crate::backend::{Connection, Link};
use crate::config::ServerConfig;
use crate::event::{Access, BackendState, ClientId, Era, Event, Reply};
use crate::jsonrpc::Message;
use crate::settings::{Retries, RetryPolicy};
use crate::tool_config::{Overrides, ToolOverride};
use crossbeam_channel::{Receiver, Sender};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(10);

fn settings() -> HubSettings {
    let no_retry = RetryPolicy { max_retries: 0, base_delay: Duration::from_millis(10) };
    HubSettings {
        separator: "__".into(),
        request_timeout: TIMEOUT,
        startup_timeout: Duration::from_secs(5),
        exit_when_no_clients: false,
        session_idle_timeout: Duration::from_secs(60),
        session_unused_timeout: Duration::from_secs(60),
        restart_backoff: (Duration::from_millis(100), Duration::from_secs(1)),
        retries: Retries { stdio: no_retry, sse: no_retry, http: no_retry },
        client_capabilities: Some(json!({})),
        shutdown_grace: Duration::from_secs(5),
        max_in_flight: 100,
        max_sessions: 10,
        max_sessions_per_key: 0,
        max_sessions_per_address: 0,
    }
}

/// Stdio servers by key, in the config file's format.
fn servers(keys: &[&str]) -> Vec<ServerConfig> {
    let entries: serde_json::Map<String, Value> = keys.iter().map(|k| (k.to_string(), json!({ "command": "unused" }))).collect();
    let text = json!({ "mcpServers": entries }).to_string();
    crate::config::parse(&text, Path::new("test.json"), &|_| None).expect("a valid config").servers
}

/// A stdio server isolated per client session, with these extra config keys.
fn isolated(key: &str, extra: Value) -> Vec<ServerConfig> {
    let mut entry = json!({ "command": "unused", "isolation": "session" });
    entry.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
    let text = json!({ "mcpServers": { key: entry } }).to_string();
    crate::config::parse(&text, Path::new("test.json"), &|_| None).expect("a valid config").servers
}

/// A backend connection the dispatcher started: its way back, and what it was sent.
struct Wire {
    link: Link,
    sent: Receiver<Message>,
}

struct Harness {
    hub: Hub,
    /// What links report, pumped into the hub after every step.
    events: Receiver<Event>,
    started: Receiver<(String, Wire)>,
    wires: HashMap<String, Wire>,
    /// How many connections each backend has had.
    starts: HashMap<String, u32>,
    /// How far the test has moved time forward.
    elapsed: Duration,
    /// The dispatcher said its shutdown is complete.
    finished: bool,
}

struct TestClient {
    id: ClientId,
    inbox: Receiver<Message>,
}

impl Harness {
    fn new(keys: &[&str]) -> Harness {
        Harness::with(settings(), servers(keys))
    }

    fn with(settings: HubSettings, servers: Vec<ServerConfig>) -> Harness {
        Harness::serving(settings, super::Served { servers, profiles: Vec::new(), overrides: Overrides::new() })
    }

    fn serving(settings: HubSettings, served: super::Served) -> Harness {
        let (events_tx, events) = crossbeam_channel::unbounded();
        let (started_tx, started): (Sender<(String, Wire)>, _) = crossbeam_channel::unbounded();
        // A server's record is its wire's key; its instances are `key#2`, `key#3`... in the order made.
        let mut records: HashMap<String, Vec<crate::event::BackendId>> = HashMap::new();
        let connect = Box::new(move |server: &ServerConfig, link: Link, _timeout: Duration| {
            let (tx, sent) = crossbeam_channel::unbounded();
            let ids = records.entry(server.key.clone()).or_default();
            let n = ids.iter().position(|id| *id == link.backend).unwrap_or_else(|| {
                ids.push(link.backend);
                ids.len() - 1
            });
            let name = if n == 0 { server.key.clone() } else { format!("{}#{}", server.key, n + 1) };
            let _ = started_tx.send((name, Wire { link, sent }));
            Ok(Connection::memory(tx))
        });
        let hub = Hub::with_connector(settings, served, events_tx, connect);
        let mut h =
            Harness { hub, events, started, wires: HashMap::new(), starts: HashMap::new(), elapsed: Duration::ZERO, finished: false };
        h.hub.start();
        h.pump();
        h
    }

    /// Hands the hub what links reported, running its timers after each event as its loop does, and
    /// notes the connections it started.
    fn pump(&mut self) {
        self.tick();
        while let Ok(event) = self.events.try_recv() {
            self.hub.handle(event);
            self.tick();
        }
        while let Ok((key, wire)) = self.started.try_recv() {
            *self.starts.entry(key.clone()).or_default() += 1;
            self.wires.insert(key, wire);
        }
    }

    fn tick(&mut self) {
        self.finished |= self.hub.tick(Instant::now() + self.elapsed);
    }

    fn event(&mut self, event: Event) {
        self.hub.handle(event);
        self.pump();
    }

    /// Runs the timers as if `by` more time had passed.
    fn later(&mut self, by: Duration) {
        self.elapsed += by;
        self.pump();
    }

    fn wire(&self, key: &str) -> &Wire {
        self.wires.get(key).unwrap_or_else(|| panic!("backend '{key}' was never started"))
    }

    /// The next message the hub sent to a backend.
    fn sent_to(&mut self, key: &str) -> Message {
        self.pump();
        self.wire(key).sent.try_recv().unwrap_or_else(|_| panic!("nothing was sent to '{key}'"))
    }

    fn nothing_to_backend(&mut self, key: &str) {
        self.pump();
        if let Ok(msg) = self.wire(key).sent.try_recv() {
            panic!("'{key}' was sent {}", msg.to_json());
        }
    }

    /// The backend says something.
    fn backend_says(&mut self, key: &str, msg: Value) {
        let msg = Message::parse(&msg.to_string()).expect("a valid message");
        self.wire(key).link.message(msg);
        self.pump();
    }

    /// The backend answers a request it was sent.
    fn answer(&mut self, key: &str, request: &Message, result: Value) {
        self.backend_says(key, json!({ "jsonrpc": "2.0", "id": request.id, "result": result }));
    }

    fn exits(&mut self, key: &str) {
        self.wire(key).link.exited("killed by the test".into());
        self.pump();
    }

    /// Takes a handshake-era backend through its handshake with these tools: it does not know the
    /// `server/discover` probe.
    fn ready(&mut self, key: &str, tools: &[&str]) {
        let probe = self.sent_to(key);
        assert_eq!(probe.method(), "server/discover");
        self.backend_says(key, json!({ "jsonrpc": "2.0", "id": probe.id, "error": { "code": -32601, "message": "Method not found" } }));
        let init = self.sent_to(key);
        assert_eq!(init.method(), "initialize");
        let capabilities = json!({ "tools": { "listChanged": true }, "logging": {} });
        self.answer(key, &init, json!({ "protocolVersion": "2025-06-18", "capabilities": capabilities, "serverInfo": { "name": key } }));
        assert_eq!(self.sent_to(key).method(), "notifications/initialized");
        let list = self.sent_to(key);
        assert_eq!(list.method(), "tools/list");
        let tools: Vec<Value> = tools.iter().map(|t| json!({ "name": t, "inputSchema": { "type": "object" } })).collect();
        self.answer(key, &list, json!({ "tools": tools }));
    }

    /// Takes an instance (`key#N`) of a handshake-era server through its handshake: it is asked for no
    /// lists (its server's template gives them).
    fn ready_instance(&mut self, name: &str) {
        let probe = self.sent_to(name);
        assert_eq!(probe.method(), "server/discover");
        self.backend_says(name, json!({ "jsonrpc": "2.0", "id": probe.id, "error": { "code": -32601, "message": "Method not found" } }));
        let init = self.sent_to(name);
        assert_eq!(init.method(), "initialize");
        let capabilities = json!({ "tools": { "listChanged": true }, "logging": {} });
        self.answer(name, &init, json!({ "protocolVersion": "2025-06-18", "capabilities": capabilities, "serverInfo": { "name": name } }));
        assert_eq!(self.sent_to(name).method(), "notifications/initialized");
    }

    /// The running instances of a server, by `/health`.
    fn instances(&mut self, key: &str) -> Vec<crate::event::InstanceStatus> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        self.event(Event::Health { detailed: true, reply });
        let health = answer.try_recv().expect("an answer");
        let server = health.backends.unwrap_or_default().into_iter().find(|b| b.key == key).expect("a known backend");
        server.instances.expect("an isolated server")
    }

    /// Takes a handshake-era backend through its handshake with these capabilities, answering each
    /// list request it is sent with the result given for its method.
    fn ready_offering(&mut self, key: &str, capabilities: Value, lists: &[(&str, Value)]) {
        let probe = self.sent_to(key);
        self.backend_says(key, json!({ "jsonrpc": "2.0", "id": probe.id, "error": { "code": -32601, "message": "Method not found" } }));
        let init = self.sent_to(key);
        self.answer(key, &init, json!({ "protocolVersion": "2025-06-18", "capabilities": capabilities, "serverInfo": { "name": key } }));
        assert_eq!(self.sent_to(key).method(), "notifications/initialized");
        while let Ok(request) = self.wire(key).sent.try_recv() {
            let result = lists.iter().find(|(method, _)| *method == request.method()).map(|(_, r)| r.clone());
            self.answer(key, &request, result.unwrap_or_else(|| panic!("no answer for {}", request.method())));
        }
    }

    /// Takes a 2026-07-28 backend through discovery with these tools; it offers list changes, so the
    /// proxy opens a listen, whose request is returned.
    fn ready_modern(&mut self, key: &str, tools: &[&str]) -> Message {
        let probe = self.sent_to(key);
        assert_eq!(probe.method(), "server/discover");
        let result = json!({ "supportedVersions": ["2026-07-28"], "capabilities": { "tools": { "listChanged": true } }, "resultType": "complete", "ttlMs": 0, "cacheScope": "private" });
        self.answer(key, &probe, result);
        let list = self.sent_to(key);
        assert_eq!(list.method(), "tools/list");
        let tools: Vec<Value> = tools.iter().map(|t| json!({ "name": t, "inputSchema": { "type": "object" } })).collect();
        self.answer(key, &list, json!({ "tools": tools, "resultType": "complete" }));
        let listen = self.sent_to(key);
        assert_eq!(listen.method(), "subscriptions/listen");
        listen
    }

    fn client(&mut self) -> TestClient {
        self.client_of(None)
    }

    /// A client (stdio-like) that sees a profile.
    fn client_of(&mut self, profile: Option<&str>) -> TestClient {
        let (outbox, inbox) = crossbeam_channel::unbounded();
        let id = ClientId::fresh();
        self.event(Event::ClientConnected { client: id, outbox, profile: profile.map(str::to_owned) });
        TestClient { id, inbox }
    }

    /// An initialized client of a profile.
    fn profile_client(&mut self, profile: &str) -> TestClient {
        let client = self.client_of(Some(profile));
        let params = json!({ "protocolVersion": "2025-06-18", "capabilities": {} });
        self.send(&client, json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params }));
        assert!(client.next().get("result").is_some());
        client
    }

    /// The names a client gets from `tools/list`.
    fn tool_names(&mut self, client: &TestClient) -> Vec<String> {
        self.send(client, json!({ "jsonrpc": "2.0", "id": "list", "method": "tools/list" }));
        let tools = client.next()["result"]["tools"].as_array().cloned().unwrap_or_default();
        tools.iter().map(|t| t["name"].as_str().unwrap_or_default().to_owned()).collect()
    }

    /// An initialized client.
    fn ready_client(&mut self) -> TestClient {
        self.ready_client_with(json!({}))
    }

    /// An initialized client that can do what `capabilities` say.
    fn ready_client_with(&mut self, capabilities: Value) -> TestClient {
        let client = self.client();
        let params = json!({ "protocolVersion": "2025-06-18", "capabilities": capabilities });
        self.send(&client, json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params }));
        assert!(client.next().get("result").is_some());
        client
    }

    fn send(&mut self, client: &TestClient, msg: Value) {
        let msg = Message::parse(&msg.to_string()).expect("a valid message");
        self.event(Event::FromClient { client: client.id, msg, era: Era::Handshake });
    }

    /// A message from a client whose connection speaks 2026-07-28.
    fn send_modern(&mut self, client: &TestClient, msg: Value) {
        let msg = Message::parse(&msg.to_string()).expect("a valid message");
        self.event(Event::FromClient { client: client.id, msg, era: Era::Modern });
    }

    fn call(&mut self, client: &TestClient, id: i64, tool: &str) {
        self.send(
            client,
            json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": { "name": tool, "arguments": { "x": 1 } } }),
        );
    }

    fn state(&mut self, key: &str) -> BackendState {
        let (reply, answer) = crossbeam_channel::bounded(1);
        self.event(Event::Health { detailed: true, reply });
        let health = answer.try_recv().expect("an answer");
        health.backends.unwrap_or_default().into_iter().find(|b| b.key == key).map(|b| b.state).expect("a known backend")
    }
}

impl TestClient {
    /// The next message the client was sent, as JSON.
    fn next(&self) -> Value {
        let msg = self.inbox.try_recv().expect("a message for the client");
        serde_json::from_str(&msg.to_json()).expect("JSON")
    }

    fn nothing(&self) {
        if let Ok(msg) = self.inbox.try_recv() {
            panic!("the client was sent {}", msg.to_json());
        }
    }
}

fn params(msg: &Message) -> Value {
    msg.params.as_ref().map_or(Value::Null, |p| serde_json::from_str(p.get()).expect("JSON params"))
}

// ----- start-up ------------------------------------------------------------------------------------

#[test]
fn requests_are_held_until_start_up_settles_and_then_see_every_backend() {
    let mut h = Harness::new(&["a", "b"]);
    let client = h.client();
    h.send(&client, json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" }));
    h.ready("a", &["x"]);
    client.nothing();
    h.ready("b", &["y"]);
    let names: Vec<Value> = client.next()["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].clone()).collect();
    assert_eq!(names, [json!("a__x"), json!("b__y")]);
}

#[test]
fn ping_is_answered_during_the_start_up_hold() {
    let mut h = Harness::new(&["a"]);
    let client = h.client();
    h.send(&client, json!({ "jsonrpc": "2.0", "id": 7, "method": "ping" }));
    assert_eq!(client.next(), json!({ "jsonrpc": "2.0", "id": 7, "result": {} }));
}

#[test]
fn start_up_hold_ends_at_the_start_up_timeout_without_a_slow_backend() {
    let mut h = Harness::new(&["a", "slow"]);
    h.ready("a", &["x"]);
    let client = h.client();
    h.send(&client, json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" }));
    client.nothing();
    h.later(Duration::from_secs(6));
    assert_eq!(client.next()["result"]["tools"][0]["name"], "a__x");
}

#[test]
fn backends_wait_for_the_first_clients_capabilities_before_initializing() {
    let mut h = Harness::with(HubSettings { client_capabilities: None, ..settings() }, servers(&["a"]));
    h.nothing_to_backend("a");
    let client = h.client();
    h.send(
        &client,
        json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": { "capabilities": { "sampling": {}, "experimental": {} } } }),
    );
    let probe = h.sent_to("a");
    assert_eq!(
        params(&probe)["_meta"]["io.modelcontextprotocol/clientCapabilities"],
        json!({ "sampling": {} }),
        "only what the proxy can route is declared"
    );
}

// ----- calls ---------------------------------------------------------------------------------------

#[test]
fn a_tool_call_reaches_its_backend_under_the_original_name_and_returns_under_the_clients_id() {
    let mut h = Harness::new(&["a"]);
    h.ready("a", &["x"]);
    let client = h.ready_client();
    h.call(&client, 42, "a__x");
    let forwarded = h.sent_to("a");
    assert_eq!(params(&forwarded), json!({ "name": "x", "arguments": { "x": 1 } }));
    assert_ne!(forwarded.id, Some(json!(42)), "the backend sees the proxy's own id");
    h.answer("a", &forwarded, json!({ "content": [] }));
    assert_eq!(client.next(), json!({ "jsonrpc": "2.0", "id": 42, "result": { "content": [] } }));
}

#[test]
fn two_clients_using_the_same_request_id_each_get_their_own_answer() {
    let mut h = Harness::new(&["a"]);
    h.ready("a", &["x"]);
    let (one, two) = (h.ready_client(), h.ready_client());
    h.call(&one, 1, "a__x");
    h.call(&two, 1, "a__x");
    let (first, second) = (h.sent_to("a"), h.sent_to("a"));
    h.answer("a", &second, json!({ "for": "two" }));
    h.answer("a", &first, json!({ "for": "one" }));
    assert_eq!(one.next()["result"]["for"], "one");
    assert_eq!(two.next()["result"]["for"], "two");
}

#[test]
fn a_second_request_under_an_id_still_in_flight_is_refused() {
    let mut h = Harness::new(&["a"]);
    h.ready("a", &["x"]);
    let client = h.ready_client();
    h.call(&client, 5, "a__x");
    h.call(&client, 5, "a__x");
    assert_eq!(client.next()["error"]["code"], -32600);
    h.sent_to("a");
    h.nothing_to_backend("a");
}

#[test]
fn an_unknown_tool_is_an_invalid_params_error_naming_it() {
    let mut h = Harness::new(&["a"]);
    h.ready("a", &["x"]);
    let client = h.ready_client();
    h.call(&client, 1, "a__nope");
    let error = &client.next()["error"];
    assert_eq!(error["code"], -32602);
    assert!(error["message"].as_str().unwrap().contains("a__nope"));
}

#[test]
fn progress_reaches_the_client_under_its_own_token() {
    let mut h = Harness::new(&["a"]);
    h.ready("a", &["x"]);
    let client = h.ready_client();
    let call =
        json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": "a__x", "_meta": { "progressToken": "mine" } } });
    h.send(&client, call);
    let forwarded = h.sent_to("a");
    let token = params(&forwarded)["_meta"]["progressToken"].clone();
    assert!(token.is_u64(), "the backend sees a proxy token, not {token}");
    let progress = json!({ "progressToken": token, "progress": 1 });
    h.backend_says("a", json!({ "jsonrpc": "2.0", "method": "notifications/progress", "params": progress }));
    assert_eq!(client.next()["params"], json!({ "progressToken": "mine", "progress": 1 }));
}

#[test]
fn a_clients_cancellation_reaches_the_backend_under_the_backends_id_and_the_late_answer_is_dropped() {
    let mut h = Harness::new(&["a"]);
    h.ready("a", &["x"]);
    let client = h.ready_client();
    h.call(&client, 3, "a__x");
    let forwarded = h.sent_to("a");
    h.send(&client, json!({ "jsonrpc": "2.0", "method": "notifications/cancelled", "params": { "requestId": 3, "reason": "bored" } }));
    let cancel = h.sent_to("a");
    assert_eq!(cancel.method(), "notifications/cancelled");
    assert_eq!(params(&cancel), json!({ "requestId": forwarded.id, "reason": "bored" }));
    h.answer("a", &forwarded, json!({}));
    client.nothing();
}

#[test]
fn a_call_not_answered_in_time_fails_with_a_timeout_and_is_cancelled_at_the_backend() {
    let mut h = Harness::new(&["a"]);
    h.ready("a", &["x"]);
    let client = h.ready_client();
    h.call(&client, 1, "a__x");
    let forwarded = h.sent_to("a");
    h.later(TIMEOUT + Duration::from_secs(1));
    assert_eq!(client.next()["error"]["code"], -32001);
    let cancel = h.sent_to("a");
    assert_eq!(params(&cancel)["requestId"], forwarded.id.unwrap());
}

#[test]
fn a_call_in_flight_to_a_backend_that_exits_fails_at_once() {
    let mut h = Harness::new(&["a"]);
    h.ready("a", &["x"]);
    let client = h.ready_client();
    h.call(&client, 1, "a__x");
    h.sent_to("a");
    h.exits("a");
    let error = &client.next()["error"];
    assert_eq!(error["code"], -32000);
    assert!(error["message"].as_str().unwrap().contains("'a' exited"), "{error}");
}

#[test]
fn a_call_to_a_tool_of_a_backend_that_is_down_is_retried_when_it_is_back() {
    let retry = RetryPolicy { max_retries: 3, base_delay: Duration::from_secs(5) };
    let settings = HubSettings { retries: Retries { stdio: retry, sse: retry, http: retry }, ..settings() };
    let mut h = Harness::with(settings, servers(&["a"]));
    h.ready("a", &["x"]);
    let client = h.ready_client();
    h.exits("a");
    assert_eq!(client.next()["method"], "notifications/tools/list_changed");
    h.call(&client, 1, "a__x");
    client.nothing();
    h.later(Duration::from_secs(1)); // the restart
    h.ready("a", &["x"]);
    assert_eq!(client.next()["method"], "notifications/tools/list_changed");
    h.later(Duration::from_secs(7)); // the first retry
    let forwarded = h.sent_to("a");
    assert_eq!(params(&forwarded)["name"], "x");
}

#[test]
fn a_call_to_a_tool_of_a_backend_that_is_down_fails_naming_the_server_without_retries() {
    let mut h = Harness::new(&["a"]);
    h.ready("a", &["x"]);
    let client = h.ready_client();
    h.exits("a");
    client.next();
    h.call(&client, 1, "a__x");
    let error = &client.next()["error"];
    assert_eq!(error["code"], -32000);
    assert!(error["message"].as_str().unwrap().starts_with("server 'a' is unavailable"), "{error}");
}

#[test]
fn requests_beyond_the_in_flight_limit_are_refused() {
    let mut h = Harness::with(HubSettings { max_in_flight: 1, ..settings() }, servers(&["a"]));
    h.ready("a", &["x"]);
    let client = h.ready_client();
    h.call(&client, 1, "a__x");
    h.call(&client, 2, "a__x");
    let refused = client.next();
    assert_eq!((refused["id"].clone(), refused["error"]["code"].clone()), (json!(2), json!(-32000)));
}

// ----- 2026-07-28 backends -------------------------------------------------------------------------

#[test]
fn a_backend_that_answers_the_probe_gets_no_handshake_and_every_request_carries_the_envelope() {
    let mut h = Harness::new(&["a"]);
    let listen = h.ready_modern("a", &["x"]);
    assert_eq!(params(&listen)["notifications"], json!({ "toolsListChanged": true }));
    let client = h.ready_client();
    h.call(&client, 1, "a__x");
    let forwarded = h.sent_to("a");
    let meta = params(&forwarded)["_meta"].clone();
    assert_eq!(meta["io.modelcontextprotocol/protocolVersion"], "2026-07-28");
    assert_eq!(meta["io.modelcontextprotocol/clientInfo"]["name"], "mcp-proxy-server");
    h.answer("a", &forwarded, json!({ "content": [], "resultType": "complete" }));
    assert_eq!(client.next()["result"]["content"], json!([]));
}

#[test]
fn a_handshake_clients_log_level_goes_to_a_modern_backend_in_each_requests_envelope() {
    let mut h = Harness::new(&["a"]);
    h.ready_modern("a", &["x"]);
    let client = h.ready_client();
    h.send(&client, json!({ "jsonrpc": "2.0", "id": 1, "method": "logging/setLevel", "params": { "level": "info" } }));
    assert_eq!(client.next()["id"], 1);
    h.nothing_to_backend("a");
    h.call(&client, 2, "a__x");
    assert_eq!(params(&h.sent_to("a"))["_meta"]["io.modelcontextprotocol/logLevel"], "info");
}

#[test]
fn a_modern_backends_list_change_comes_through_its_listen() {
    let mut h = Harness::new(&["a"]);
    let listen = h.ready_modern("a", &["x"]);
    let client = h.ready_client();
    let tag = json!({ "io.modelcontextprotocol/subscriptionId": listen.id });
    h.backend_says("a", json!({ "jsonrpc": "2.0", "method": "notifications/tools/list_changed", "params": { "_meta": tag } }));
    let list = h.sent_to("a");
    h.answer("a", &list, json!({ "tools": [{ "name": "x" }, { "name": "y" }] }));
    assert_eq!(client.next()["method"], "notifications/tools/list_changed");
}

#[test]
fn a_modern_backend_that_ends_its_listen_is_listened_to_again() {
    let mut h = Harness::new(&["a"]);
    let listen = h.ready_modern("a", &["x"]);
    h.answer("a", &listen, json!({ "resultType": "complete" }));
    assert_eq!(h.sent_to("a").method(), "subscriptions/listen");
}

#[test]
fn a_server_pinned_to_2026_07_28_that_does_not_speak_it_fails() {
    let mut servers = servers(&["a"]);
    servers[0].protocol = crate::config::Protocol::Modern;
    let mut h = Harness::with(settings(), servers);
    let probe = h.sent_to("a");
    h.backend_says("a", json!({ "jsonrpc": "2.0", "id": probe.id, "error": { "code": -32601, "message": "Method not found" } }));
    assert_eq!(h.state("a"), BackendState::Failed);
}

// ----- input from clients: MRTR bridges ------------------------------------------------------------

fn elicitation() -> Value {
    json!({ "method": "elicitation/create", "params": { "message": "Your name?", "requestedSchema": { "type": "object" } } })
}

/// A handshake-era client's call of a 2026-07-28 backend that answers `input_required`: the client, the
/// call as the backend first got it, and the question as the client got it.
fn handshake_call_asked(h: &mut Harness) -> (TestClient, Message, Value) {
    h.ready_modern("a", &["x"]);
    let client = h.ready_client_with(json!({ "elicitation": {} }));
    h.call(&client, 1, "a__x");
    let first = h.sent_to("a");
    h.answer("a", &first, json!({ "resultType": "input_required", "inputRequests": { "k": elicitation() }, "requestState": "s1" }));
    let asked = client.next();
    assert_eq!(asked["method"], "elicitation/create");
    (client, first, asked)
}

#[test]
fn a_modern_backends_input_required_reaches_a_handshake_client_as_requests_and_the_call_is_sent_again_with_the_answers() {
    let mut h = Harness::new(&["a"]);
    let (client, first, asked) = handshake_call_asked(&mut h);
    h.send(&client, json!({ "jsonrpc": "2.0", "id": asked["id"], "result": { "action": "accept", "content": { "name": "Ada" } } }));
    let again = h.sent_to("a");
    assert_ne!(again.id, first.id);
    let params = params(&again);
    assert_eq!((params["name"].clone(), params["requestState"].clone()), (json!("x"), json!("s1")));
    assert_eq!(params["inputResponses"]["k"]["content"]["name"], "Ada");
    h.answer("a", &again, json!({ "content": [{ "type": "text", "text": "Hello, Ada" }], "resultType": "complete" }));
    let done = client.next();
    assert_eq!((done["id"].clone(), done["result"]["content"][0]["text"].clone()), (json!(1), json!("Hello, Ada")));
}

#[test]
fn a_call_cancelled_while_its_client_answers_questions_withdraws_them_and_gets_no_answer() {
    let mut h = Harness::new(&["a"]);
    let (client, _, asked) = handshake_call_asked(&mut h);
    h.send(&client, json!({ "jsonrpc": "2.0", "method": "notifications/cancelled", "params": { "requestId": 1 } }));
    let withdrawn = client.next();
    assert_eq!(
        (withdrawn["method"].clone(), withdrawn["params"]["requestId"].clone()),
        (json!("notifications/cancelled"), asked["id"].clone())
    );
    h.later(TIMEOUT + Duration::from_secs(1));
    client.nothing();
    h.nothing_to_backend("a");
}

#[test]
fn input_a_handshake_client_did_not_declare_it_can_give_fails_the_call() {
    let mut h = Harness::new(&["a"]);
    h.ready_modern("a", &["x"]);
    let client = h.ready_client();
    h.call(&client, 1, "a__x");
    let first = h.sent_to("a");
    h.answer("a", &first, json!({ "resultType": "input_required", "inputRequests": { "k": elicitation() } }));
    let failed = client.next();
    assert!(failed["error"]["message"].as_str().unwrap().contains("elicitation/create"), "{failed}");
}

/// A 2026-07-28 client's call of `a__x`, from a client with these capabilities.
fn modern_call(capabilities: Value) -> Value {
    let meta = json!({ "io.modelcontextprotocol/clientCapabilities": capabilities });
    json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": "a__x", "arguments": {}, "_meta": meta } })
}

#[test]
fn a_handshake_backends_question_the_modern_client_did_not_declare_it_can_answer_gets_an_error() {
    let mut h = Harness::new(&["a"]);
    let client = h.client();
    h.ready("a", &["x"]);
    h.send_modern(&client, modern_call(json!({ "sampling": {} })));
    h.sent_to("a");
    h.backend_says("a", json!({ "jsonrpc": "2.0", "id": "e1", "method": "elicitation/create", "params": elicitation()["params"] }));
    let refused: Value = serde_json::from_str(&h.sent_to("a").to_json()).unwrap();
    assert_eq!((refused["id"].clone(), refused["error"]["code"].clone()), (json!("e1"), json!(-32601)));
    client.nothing();
}

/// A 2026-07-28 client's call to a handshake-era backend that asks it something: the client's answer
/// (`input_required`) and the call as the backend got it.
fn modern_call_asked(h: &mut Harness, client: &TestClient) -> (Value, Message) {
    h.ready("a", &["x"]);
    h.send_modern(client, modern_call(json!({ "elicitation": {} })));
    let call = h.sent_to("a");
    h.backend_says("a", json!({ "jsonrpc": "2.0", "id": "e1", "method": "elicitation/create", "params": elicitation()["params"] }));
    (client.next(), call)
}

#[test]
fn a_handshake_backends_request_reaches_a_modern_client_as_input_required_and_its_retry_gets_the_result() {
    let mut h = Harness::new(&["a"]);
    let client = h.client();
    let (answer, call) = modern_call_asked(&mut h, &client);
    let result = &answer["result"];
    assert_eq!((answer["id"].clone(), result["resultType"].clone()), (json!(1), json!("input_required")));
    let (key, asked) = result["inputRequests"].as_object().unwrap().iter().next().unwrap();
    assert_eq!(asked["method"], "elicitation/create");
    let retry = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "a__x", "arguments": {}, "requestState": result["requestState"], "inputResponses": { key: { "action": "accept", "content": { "name": "Ada" } } } } });
    h.send_modern(&client, retry);
    let answered = h.sent_to("a");
    assert_eq!(answered.id, Some(json!("e1")));
    h.nothing_to_backend("a");
    h.answer("a", &call, json!({ "content": [] }));
    let final_answer = client.next();
    assert_eq!(final_answer["id"], 2, "{final_answer}");
}

#[test]
fn a_forged_request_state_is_refused() {
    let mut h = Harness::new(&["a"]);
    let client = h.client();
    let (answer, _) = modern_call_asked(&mut h, &client);
    let state = answer["result"]["requestState"].as_str().unwrap();
    let forged = format!("{}zzzz", &state[..state.len() - 4]);
    let retry = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": { "name": "a__x", "requestState": forged, "inputResponses": {} } });
    h.send_modern(&client, retry);
    assert_eq!(client.next()["error"]["code"], -32602);
}

#[test]
fn a_request_state_made_by_another_proxy_passes_through_to_the_backend() {
    let mut h = Harness::new(&["a"]);
    let client = h.client();
    modern_call_asked(&mut h, &client);
    let mut behind = Harness::new(&["a"]);
    let behind_client = behind.client();
    let (asked_behind, _) = modern_call_asked(&mut behind, &behind_client);
    let state = &asked_behind["result"]["requestState"];
    let retry = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": { "name": "a__x", "requestState": state, "inputResponses": {} } });
    h.send_modern(&client, retry);
    let call = h.sent_to("a");
    assert_eq!((call.method(), params(&call)["requestState"].clone()), ("tools/call", state.clone()));
}

#[test]
fn another_clients_retry_with_the_request_state_is_refused() {
    let mut h = Harness::new(&["a"]);
    let (owner, other) = (h.client(), h.client());
    let (answer, _) = modern_call_asked(&mut h, &owner);
    let retry = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": { "name": "a__x", "requestState": answer["result"]["requestState"], "inputResponses": {} } });
    h.send_modern(&other, retry);
    assert_eq!(other.next()["error"]["code"], -32602);
}

/// A sessionless (2026-07-28 HTTP) request from the credential `owner`; what came back on its channel.
fn stateless(h: &mut Harness, owner: &str, msg: Value) -> Vec<Reply> {
    let (reply, replies) = crossbeam_channel::unbounded();
    let msg = Message::parse(&msg.to_string()).unwrap();
    h.event(Event::Stateless {
        client: ClientId::fresh(),
        msg,
        reply,
        access: Access { owner: Some(owner.into()), profile: None },
        param_headers: Vec::new(),
    });
    replies.try_iter().collect()
}

fn answer_of(replies: &[Reply]) -> Value {
    match replies.last() {
        Some(Reply::Message(msg)) => serde_json::from_str(&msg.to_json()).unwrap(),
        other => panic!("no answer: {other:?}"),
    }
}

#[test]
fn a_sessionless_retry_must_bring_the_credential_its_question_went_to() {
    let mut h = Harness::new(&["a"]);
    h.ready("a", &["x"]);
    let call = modern_call(json!({ "elicitation": {} }));
    let (reply, replies) = crossbeam_channel::unbounded();
    let msg = Message::parse(&call.to_string()).unwrap();
    h.event(Event::Stateless {
        client: ClientId::fresh(),
        msg,
        reply,
        access: Access { owner: Some("key #1".into()), profile: None },
        param_headers: Vec::new(),
    });
    h.sent_to("a");
    h.backend_says("a", json!({ "jsonrpc": "2.0", "id": "e1", "method": "elicitation/create", "params": elicitation()["params"] }));
    let asked: Vec<Reply> = replies.try_iter().collect();
    let result = answer_of(&asked)["result"].clone();
    let key = result["inputRequests"].as_object().unwrap().keys().next().unwrap().clone();
    let answers = json!({ key: { "action": "accept", "content": { "name": "Ada" } } });
    let retry = |id: i64| json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": { "name": "a__x", "requestState": result["requestState"], "inputResponses": answers } });
    assert_eq!(answer_of(&stateless(&mut h, "key #2", retry(2)))["error"]["code"], -32602, "another key's retry");
    h.nothing_to_backend("a");
    stateless(&mut h, "key #1", retry(3));
    assert_eq!(h.sent_to("a").id, Some(json!("e1")), "the right key's retry, on another connection, answers the backend");
}

#[test]
fn a_retry_that_never_comes_fails_the_backends_request_and_cancels_its_call() {
    let mut h = Harness::new(&["a"]);
    let client = h.client();
    modern_call_asked(&mut h, &client);
    h.later(TIMEOUT + Duration::from_secs(1));
    let refused: Value = serde_json::from_str(&h.sent_to("a").to_json()).unwrap();
    assert_eq!((refused["id"].clone(), refused["error"]["code"].clone()), (json!("e1"), json!(-32603)));
    assert_eq!(h.sent_to("a").method(), "notifications/cancelled");
}

#[test]
fn a_suspended_calls_result_waits_for_the_retry_even_if_its_backend_exits_meanwhile() {
    let mut h = Harness::new(&["a"]);
    let client = h.client();
    let (answer, call) = modern_call_asked(&mut h, &client);
    h.answer("a", &call, json!({ "content": [], "isError": false }));
    h.exits("a");
    let retry = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": { "name": "a__x", "requestState": answer["result"]["requestState"], "inputResponses": {} } });
    h.send_modern(&client, retry);
    let result = client.next();
    assert_eq!((result["id"].clone(), result["result"]["isError"].clone()), (json!(2), json!(false)), "{result}");
}

#[test]
fn a_suspended_call_whose_backend_dies_fails_on_the_clients_retry_and_only_then() {
    let mut h = Harness::new(&["a"]);
    let client = h.client();
    let (answer, _) = modern_call_asked(&mut h, &client);
    h.exits("a");
    client.nothing();
    let retry = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": { "name": "a__x", "requestState": answer["result"]["requestState"], "inputResponses": {} } });
    h.send_modern(&client, retry);
    let failed = client.next();
    assert_eq!((failed["id"].clone(), failed["error"]["code"].clone()), (json!(2), json!(-32000)), "{failed}");
}

// ----- tasks -----------------------------------------------------------------------------------

#[test]
fn a_task_made_by_a_backend_is_polled_there_by_its_client_only() {
    let mut h = Harness::new(&["a"]);
    h.ready("a", &["x"]);
    let (owner, other) = (h.ready_client(), h.ready_client());
    h.send(&owner, json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": "a__x", "task": { "ttl": 60000 } } }));
    let call = h.sent_to("a");
    h.answer("a", &call, json!({ "task": { "taskId": "t-1", "status": "working", "ttl": 60000 } }));
    assert_eq!(owner.next()["result"]["task"]["taskId"], "t-1");
    h.backend_says(
        "a",
        json!({ "jsonrpc": "2.0", "method": "notifications/tasks/status", "params": { "taskId": "t-1", "status": "completed" } }),
    );
    assert_eq!(owner.next()["method"], "notifications/tasks/status");
    other.nothing();
    h.send(&other, json!({ "jsonrpc": "2.0", "id": 2, "method": "tasks/get", "params": { "taskId": "t-1" } }));
    assert_eq!(other.next()["error"]["code"], -32602, "another client's task is unknown to it");
    h.send(&owner, json!({ "jsonrpc": "2.0", "id": 3, "method": "tasks/result", "params": { "taskId": "t-1" } }));
    let asked = h.sent_to("a");
    assert_eq!((asked.method(), params(&asked)["taskId"].clone()), ("tasks/result", json!("t-1")));
}

/// The `_meta` of a 2026-07-28 request.
fn modern_meta() -> Value {
    json!({ "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {} })
}

#[test]
fn a_2026_clients_call_reaches_the_backend_without_the_2025_task_member() {
    let mut h = Harness::new(&["a"]);
    h.ready("a", &["x"]);
    let client = h.client();
    let call = json!({ "name": "a__x", "arguments": {}, "task": { "ttl": 60000 }, "_meta": modern_meta() });
    h.send_modern(&client, json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": call }));
    assert_eq!(params(&h.sent_to("a")).get("task"), None);
}

#[test]
fn server_discover_names_no_2025_tasks_capability() {
    let mut h = Harness::new(&["a"]);
    let caps = json!({ "tools": {}, "tasks": { "requests": { "tools": { "call": {} } } } });
    h.ready_offering("a", caps, &[("tools/list", json!({ "tools": [] }))]);
    let client = h.client();
    h.send_modern(&client, json!({ "jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": { "_meta": modern_meta() } }));
    assert_eq!(client.next()["result"]["capabilities"].get("tasks"), None);
    h.send(
        &client,
        json!({ "jsonrpc": "2.0", "id": 2, "method": "initialize", "params": { "protocolVersion": "2025-11-25", "capabilities": {} } }),
    );
    assert!(client.next()["result"]["capabilities"].get("tasks").is_some(), "the handshake era keeps it");
}

#[test]
fn two_backends_that_mint_the_same_task_id_keep_their_tasks_apart() {
    let mut h = Harness::new(&["a", "b"]);
    h.ready("a", &["x"]);
    h.ready("b", &["x"]);
    let (of_a, of_b) = (h.ready_client(), h.ready_client());
    for (client, backend) in [(&of_a, "a"), (&of_b, "b")] {
        let tool = format!("{backend}__x");
        h.send(client, json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": tool, "task": { "ttl": 60000 } } }));
        let call = h.sent_to(backend);
        h.answer(backend, &call, json!({ "task": { "taskId": "t-1", "status": "working", "ttl": 60000 } }));
        assert_eq!(client.next()["result"]["task"]["taskId"], "t-1");
    }
    let status = json!({ "jsonrpc": "2.0", "method": "notifications/tasks/status", "params": { "taskId": "t-1", "status": "completed" } });
    h.backend_says("a", status);
    assert_eq!(of_a.next()["method"], "notifications/tasks/status");
    of_b.nothing();
    h.send(&of_a, json!({ "jsonrpc": "2.0", "id": 2, "method": "tasks/result", "params": { "taskId": "t-1" } }));
    assert_eq!(h.sent_to("a").method(), "tasks/result");
    h.nothing_to_backend("b");
}

// ----- requests from backends ----------------------------------------------------------------------

#[test]
fn a_backend_request_goes_to_the_client_whose_call_is_in_flight_and_its_answer_comes_back() {
    let mut h = Harness::new(&["a"]);
    h.ready("a", &["x"]);
    let (caller, other) = (h.ready_client(), h.ready_client());
    h.call(&caller, 1, "a__x");
    h.sent_to("a");
    h.backend_says("a", json!({ "jsonrpc": "2.0", "id": "s1", "method": "sampling/createMessage", "params": {} }));
    let request = caller.next();
    other.nothing();
    assert_eq!(request["method"], "sampling/createMessage");
    h.send(&caller, json!({ "jsonrpc": "2.0", "id": request["id"], "result": { "content": "hi" } }));
    let answer = h.sent_to("a");
    assert_eq!(answer.id, Some(json!("s1")));
}

#[test]
fn a_backend_request_that_no_one_client_can_answer_gets_an_error() {
    let mut h = Harness::new(&["a"]);
    h.ready("a", &["x"]);
    let (one, two) = (h.ready_client(), h.ready_client());
    h.call(&one, 1, "a__x");
    h.call(&two, 1, "a__x");
    h.sent_to("a");
    h.sent_to("a");
    h.backend_says("a", json!({ "jsonrpc": "2.0", "id": 9, "method": "roots/list" }));
    let refused: Value = serde_json::from_str(&h.sent_to("a").to_json()).unwrap();
    assert_eq!(refused["id"], 9);
    assert!(refused["error"]["message"].as_str().unwrap().contains("cannot tell which client"));
}

#[test]
fn a_backends_request_waits_until_its_clients_initialize_is_answered() {
    let mut h = Harness::with(HubSettings { client_capabilities: None, ..settings() }, servers(&["a"]));
    let client = h.client();
    h.send(&client, json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": { "capabilities": { "roots": {} } } }));
    let probe = h.sent_to("a");
    h.backend_says("a", json!({ "jsonrpc": "2.0", "id": probe.id, "error": { "code": -32601, "message": "Method not found" } }));
    let init = h.sent_to("a");
    h.answer("a", &init, json!({ "protocolVersion": "2025-06-18", "capabilities": { "tools": {} }, "serverInfo": { "name": "a" } }));
    h.sent_to("a"); // notifications/initialized
    let list = h.sent_to("a");
    h.backend_says("a", json!({ "jsonrpc": "2.0", "id": "r1", "method": "roots/list" }));
    client.nothing();
    h.answer("a", &list, json!({ "tools": [] }));
    assert_eq!(client.next()["id"], 0, "the initialize answer comes first");
    assert_eq!(client.next()["method"], "roots/list");
}

#[test]
fn a_backend_request_on_a_calls_answer_stream_goes_to_that_calls_client_exactly() {
    let mut h = Harness::new(&["a"]);
    h.ready("a", &["x"]);
    let (one, two) = (h.ready_client(), h.ready_client());
    h.call(&one, 1, "a__x");
    h.call(&two, 1, "a__x");
    let (_, second) = (h.sent_to("a"), h.sent_to("a"));
    let ask = Message::parse(r#"{"jsonrpc":"2.0","id":9,"method":"roots/list"}"#).unwrap();
    h.wire("a").link.message_about(ask, second.id.clone());
    h.pump();
    assert_eq!(two.next()["method"], "roots/list");
    one.nothing();
}

#[test]
fn a_url_elicitations_completion_reaches_only_the_client_it_went_to() {
    let mut h = Harness::new(&["a"]);
    h.ready("a", &["x"]);
    let (asked, other) = (h.ready_client(), h.ready_client());
    h.call(&asked, 1, "a__x");
    h.sent_to("a");
    let url = json!({ "mode": "url", "message": "Log in", "url": "https://example.com", "elicitationId": "el-1" });
    h.backend_says("a", json!({ "jsonrpc": "2.0", "id": 5, "method": "elicitation/create", "params": url }));
    asked.next();
    h.backend_says("a", json!({ "jsonrpc": "2.0", "method": "notifications/elicitation/complete", "params": { "elicitationId": "el-1" } }));
    assert_eq!(asked.next()["method"], "notifications/elicitation/complete");
    other.nothing();
}

#[test]
fn a_clients_roots_change_reaches_the_backends_that_asked_for_its_roots() {
    let mut h = Harness::new(&["a", "b"]);
    h.ready("a", &["x"]);
    h.ready("b", &["y"]);
    let client = h.ready_client();
    h.call(&client, 1, "a__x");
    h.sent_to("a");
    h.backend_says("a", json!({ "jsonrpc": "2.0", "id": 5, "method": "roots/list" }));
    client.next();
    h.send(&client, json!({ "jsonrpc": "2.0", "method": "notifications/roots/list_changed" }));
    assert_eq!(h.sent_to("a").method(), "notifications/roots/list_changed");
    h.nothing_to_backend("b");
}

#[test]
fn only_the_client_a_backend_request_went_to_may_answer_it() {
    let mut h = Harness::new(&["a"]);
    h.ready("a", &["x"]);
    let (caller, intruder) = (h.ready_client(), h.ready_client());
    h.call(&caller, 1, "a__x");
    h.sent_to("a");
    h.backend_says("a", json!({ "jsonrpc": "2.0", "id": 9, "method": "roots/list" }));
    let request = caller.next();
    h.send(&intruder, json!({ "jsonrpc": "2.0", "id": request["id"], "result": { "roots": [] } }));
    h.nothing_to_backend("a");
}

// ----- list changes --------------------------------------------------------------------------------

#[test]
fn a_backends_list_change_refreshes_the_catalog_and_tells_initialized_clients_once() {
    let mut h = Harness::new(&["a"]);
    h.ready("a", &["x"]);
    let (initialized, fresh) = (h.ready_client(), h.client());
    h.backend_says("a", json!({ "jsonrpc": "2.0", "method": "notifications/tools/list_changed" }));
    let list = h.sent_to("a");
    assert_eq!(list.method(), "tools/list");
    h.answer("a", &list, json!({ "tools": [{ "name": "x" }, { "name": "y" }] }));
    assert_eq!(initialized.next()["method"], "notifications/tools/list_changed");
    initialized.nothing();
    fresh.nothing();
    h.send(&initialized, json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list" }));
    assert_eq!(initialized.next()["result"]["tools"][1]["name"], "a__y");
}

#[test]
fn a_list_change_that_changes_nothing_is_not_announced() {
    let mut h = Harness::new(&["a"]);
    h.ready("a", &["x"]);
    let client = h.ready_client();
    h.backend_says("a", json!({ "jsonrpc": "2.0", "method": "notifications/tools/list_changed" }));
    let list = h.sent_to("a");
    h.answer("a", &list, json!({ "tools": [{ "name": "x", "inputSchema": { "type": "object" } }] }));
    client.nothing();
}

// ----- supervision ---------------------------------------------------------------------------------

#[test]
fn a_backend_that_exits_is_withdrawn_and_started_again_after_its_backoff() {
    let mut h = Harness::new(&["a"]);
    h.ready("a", &["x"]);
    h.exits("a");
    assert_eq!(h.state("a"), BackendState::Failed);
    assert_eq!(h.starts["a"], 1);
    h.later(Duration::from_secs(2));
    assert_eq!(h.starts["a"], 2);
    h.ready("a", &["x"]);
    assert_eq!(h.state("a"), BackendState::Connected);
}

#[test]
fn a_server_that_wants_a_login_needs_login_and_is_tried_again_at_once_when_tokens_come() {
    let mut h = Harness::new(&["a"]);
    h.wire("a").link.needs_login("needs login: run `mcp-proxy-server login a`".into());
    h.pump();
    assert_eq!(h.state("a"), BackendState::NeedsLogin);
    assert_eq!(h.starts["a"], 1, "not before its back-off");
    h.event(Event::TokensChanged);
    assert_eq!(h.starts["a"], 2, "tried again at once");
    h.ready("a", &["x"]);
    assert_eq!(h.state("a"), BackendState::Connected);
    h.event(Event::TokensChanged);
    assert_eq!(h.starts["a"], 2, "a connected server is left alone");
}

#[test]
fn a_call_to_a_tool_of_a_server_that_needs_a_login_says_so() {
    let mut h = Harness::new(&["a"]);
    h.wire("a").link.needs_login("needs login: run `mcp-proxy-server login a`".into());
    h.pump();
    let client = h.ready_client();
    h.call(&client, 1, "a__x");
    let answer = client.next();
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert_eq!(message, "Unknown tool: 'a__x' (server 'a' is not connected: needs login: run `mcp-proxy-server login a`)");
}

#[test]
fn a_backend_that_does_not_answer_the_probe_is_spoken_to_in_the_handshake_era() {
    let mut h = Harness::new(&["a"]);
    assert_eq!(h.sent_to("a").method(), "server/discover");
    let first_connection = h.wire("a").sent.clone();
    h.later(TIMEOUT + Duration::from_secs(1));
    let methods: Vec<String> = first_connection.try_iter().map(|m| m.method().to_owned()).collect();
    assert_eq!(methods.first().map(String::as_str), Some("notifications/cancelled"), "{methods:?}");
    assert_eq!(methods.get(1).map(String::as_str), Some("initialize"), "{methods:?}");
}

#[test]
fn a_backend_that_does_not_answer_initialize_in_time_is_started_again() {
    let mut h = Harness::new(&["a"]);
    let probe = h.sent_to("a");
    h.backend_says("a", json!({ "jsonrpc": "2.0", "id": probe.id, "error": { "code": -32601, "message": "Method not found" } }));
    assert_eq!(h.sent_to("a").method(), "initialize");
    h.later(TIMEOUT + Duration::from_secs(1));
    assert_eq!(h.starts["a"], 2);
}

#[test]
fn events_from_a_replaced_connection_are_ignored() {
    let mut h = Harness::new(&["a"]);
    h.ready("a", &["x"]);
    let old = h.wire("a").link.clone();
    h.exits("a");
    h.later(Duration::from_secs(2));
    old.exited("late words".into());
    h.pump();
    assert_eq!(h.state("a"), BackendState::Connecting);
}

// ----- reload --------------------------------------------------------------------------------------

#[test]
fn reload_leaves_an_unchanged_server_and_its_call_in_flight_alone() {
    let mut h = Harness::new(&["a"]);
    h.ready("a", &["x"]);
    let client = h.ready_client();
    h.call(&client, 1, "a__x");
    let forwarded = h.sent_to("a");
    h.event(Event::Reload { servers: servers(&["a", "b"]), profiles: Vec::new(), overrides: Overrides::new() });
    assert_eq!(h.starts.get("b"), Some(&1));
    h.answer("a", &forwarded, json!({ "ok": true }));
    assert_eq!(client.next()["result"]["ok"], true);
}

#[test]
fn reload_that_removes_a_server_fails_its_calls_and_withdraws_its_tools() {
    let mut h = Harness::new(&["a", "b"]);
    h.ready("a", &["x"]);
    h.ready("b", &["y"]);
    let client = h.ready_client();
    h.call(&client, 1, "b__y");
    h.sent_to("b");
    h.event(Event::Reload { servers: servers(&["a"]), profiles: Vec::new(), overrides: Overrides::new() });
    let failed = client.next();
    assert!(failed["error"]["message"].as_str().unwrap().contains("was stopped"), "{failed}");
    assert_eq!(client.next()["method"], "notifications/tools/list_changed");
    h.send(&client, json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list" }));
    assert_eq!(client.next()["result"]["tools"].as_array().unwrap().len(), 1);
}

#[test]
fn a_call_while_a_changed_server_restarts_is_retried_and_reaches_its_new_connection() {
    let retry = RetryPolicy { max_retries: 5, base_delay: Duration::from_millis(100) };
    let mut h = Harness::with(HubSettings { retries: Retries { stdio: retry, sse: retry, http: retry }, ..settings() }, servers(&["a"]));
    h.ready("a", &["x"]);
    let client = h.ready_client();
    let mut changed = servers(&["a"]);
    changed[0].timeout = Some(Duration::from_secs(5));
    h.event(Event::Reload { servers: changed, profiles: Vec::new(), overrides: Overrides::new() });
    assert_eq!(client.next()["method"], "notifications/tools/list_changed", "its tools are withdrawn meanwhile");
    h.call(&client, 1, "a__x");
    client.nothing();
    h.ready("a", &["x"]);
    h.later(Duration::from_millis(500));
    assert_eq!(params(&h.sent_to("a"))["name"], "x", "the call waited for the new connection, not refused as unknown");
}

#[test]
fn reload_with_new_overrides_renames_a_tool_and_announces_it() {
    let mut h = Harness::new(&["a"]);
    h.ready("a", &["x"]);
    let client = h.ready_client();
    let rename = ToolOverride { exposed_name: Some("better".into()), ..ToolOverride::default() };
    h.event(Event::Reload { servers: servers(&["a"]), profiles: Vec::new(), overrides: Overrides::from([("a__x".to_owned(), rename)]) });
    assert_eq!(client.next()["method"], "notifications/tools/list_changed");
    h.call(&client, 1, "better");
    assert_eq!(params(&h.sent_to("a"))["name"], "x");
}

#[test]
fn override_clashes_are_checked_by_the_catalogs_own_naming_rule() {
    let mut h = Harness::new(&["a", "b"]);
    h.ready("a", &["x"]);
    h.ready("b", &["y"]);
    let take = ToolOverride { exposed_name: Some("a__x".into()), ..ToolOverride::default() };
    let (reply, answer) = crossbeam_channel::bounded(1);
    h.event(Event::CheckOverrides { overrides: Overrides::from([("b__y".to_owned(), take)]), reply });
    let clashes = answer.try_recv().unwrap();
    assert_eq!(clashes.len(), 1);
    assert!(clashes[0].contains("'a__x' is exposed twice"), "{clashes:?}");
}

// ----- resources -----------------------------------------------------------------------------------

/// A server `a` offering a resource template under `demo://resource/`, with `demo://resource/static/*`
/// denied by its filter.
fn resource_harness() -> Harness {
    let text = json!({ "mcpServers": { "a": { "command": "unused", "resources": { "deny": ["demo://resource/static/*"] } } } });
    let servers = crate::config::parse(&text.to_string(), Path::new("test.json"), &|_| None).expect("a valid config").servers;
    let mut h = Harness::with(settings(), servers);
    let capabilities = json!({ "tools": {}, "resources": { "subscribe": true } });
    let template = json!({ "resourceTemplates": [{ "uriTemplate": "demo://resource/{kind}/{name}", "name": "any" }] });
    h.ready_offering(
        "a",
        capabilities,
        &[("tools/list", json!({ "tools": [] })), ("resources/list", json!({ "resources": [] })), ("resources/templates/list", template)],
    );
    h
}

#[test]
fn a_denied_resource_spelled_differently_is_refused_without_reaching_its_server() {
    let mut h = resource_harness();
    let client = h.ready_client();
    let spellings =
        ["DEMO://resource/static/document/a", "demo://resource/dynamic/../static/document/a", " demo://resource/static/document/a"];
    for (id, uri) in spellings.iter().enumerate() {
        h.send(&client, json!({ "jsonrpc": "2.0", "id": id, "method": "resources/read", "params": { "uri": uri } }));
        assert_eq!(client.next()["error"]["code"], -32002, "{uri}");
    }
    h.nothing_to_backend("a");
}

#[test]
fn a_resource_uri_is_forwarded_in_its_normalised_spelling() {
    let mut h = resource_harness();
    let client = h.ready_client();
    h.send(
        &client,
        json!({ "jsonrpc": "2.0", "id": 1, "method": "resources/read", "params": { "uri": " DEMO://Resource/dynamic/./%41" } }),
    );
    assert_eq!(params(&h.sent_to("a"))["uri"], "demo://resource/dynamic/A");
}

#[test]
fn a_resource_uri_that_cannot_be_normalised_is_invalid_params() {
    let mut h = resource_harness();
    let client = h.ready_client();
    h.send(
        &client,
        json!({ "jsonrpc": "2.0", "id": 1, "method": "resources/subscribe", "params": { "uri": "demo://resource/dynamic/%zz" } }),
    );
    let answer = client.next();
    assert_eq!(answer["error"]["code"], -32602);
    assert!(answer["error"]["message"].as_str().unwrap().contains("two hexadecimal digits"), "{answer}");
    h.nothing_to_backend("a");
}

// ----- sessions and clients ------------------------------------------------------------------------

#[test]
fn sessions_beyond_the_limit_are_refused_with_503() {
    let mut h = Harness::with(HubSettings { max_sessions: 1, ..settings() }, servers(&["a"]));
    let open = |h: &mut Harness, session: &str| {
        let (reply, answer) = crossbeam_channel::bounded(1);
        h.event(Event::OpenSession {
            client: ClientId::fresh(),
            session: session.into(),
            outbox: None,
            access: Access::default(),
            address: None,
            reply,
        });
        answer.try_recv().unwrap()
    };
    assert!(matches!(open(&mut h, "s1"), Reply::Accepted));
    assert!(matches!(open(&mut h, "s2"), Reply::Refused(503, _)));
}

fn open_session(h: &mut Harness, session: &str, owner: Option<&str>, address: &str) -> Reply {
    let (reply, answer) = crossbeam_channel::bounded(1);
    let address = Some(address.parse().expect("an IP address"));
    let owner = owner.map(str::to_owned);
    h.event(Event::OpenSession {
        client: ClientId::fresh(),
        session: session.into(),
        outbox: None,
        access: Access { owner, profile: None },
        address,
        reply,
    });
    answer.try_recv().expect("an answer")
}

/// Posts a message for a session as its Streamable HTTP request would; the first reply.
fn post(h: &mut Harness, session: &str, owner: Option<&str>, msg: Value) -> Reply {
    let (reply, answers) = crossbeam_channel::unbounded();
    let msg = Message::parse(&msg.to_string()).expect("a valid message");
    h.event(Event::FromSession {
        session: session.into(),
        access: Access { owner: owner.map(str::to_owned), profile: None },
        msg,
        reply,
        inline: true,
    });
    answers.try_recv().expect("a reply")
}

fn initialize() -> Value {
    json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": { "protocolVersion": "2025-06-18", "capabilities": {} } })
}

#[test]
fn sessions_beyond_the_per_address_limit_are_refused_with_429_and_other_addresses_still_get_one() {
    let mut h = Harness::with(HubSettings { max_sessions_per_address: 2, ..settings() }, servers(&["a"]));
    assert!(matches!(open_session(&mut h, "s1", None, "10.0.0.1"), Reply::Accepted));
    assert!(matches!(open_session(&mut h, "s2", None, "10.0.0.1"), Reply::Accepted));
    assert!(matches!(open_session(&mut h, "s3", None, "10.0.0.1"), Reply::Refused(429, _)));
    assert!(matches!(open_session(&mut h, "s4", None, "10.0.0.2"), Reply::Accepted));
}

#[test]
fn a_session_never_used_after_its_initialize_expires_in_seconds_not_at_the_idle_timeout() {
    let unused = Duration::from_secs(5);
    let mut h = Harness::with(HubSettings { session_unused_timeout: unused, ..settings() }, servers(&["a"]));
    h.ready("a", &["x"]);
    open_session(&mut h, "idle", None, "10.0.0.1");
    assert!(matches!(post(&mut h, "idle", None, initialize()), Reply::Message(_)));
    h.later(Duration::from_secs(6));
    assert!(matches!(post(&mut h, "idle", None, json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" })), Reply::UnknownSession));
}

#[test]
fn a_session_used_after_its_initialize_outlives_the_unused_timeout() {
    let unused = Duration::from_secs(5);
    let mut h = Harness::with(HubSettings { session_unused_timeout: unused, ..settings() }, servers(&["a"]));
    h.ready("a", &["x"]);
    open_session(&mut h, "busy", None, "10.0.0.1");
    post(&mut h, "busy", None, initialize());
    post(&mut h, "busy", None, json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" }));
    h.later(Duration::from_secs(6));
    assert!(matches!(post(&mut h, "busy", None, json!({ "jsonrpc": "2.0", "id": 2, "method": "ping" })), Reply::Message(_)));
}

#[test]
fn a_client_that_does_not_read_has_its_notifications_dropped_and_counted_but_gets_its_answer() {
    let mut h = Harness::new(&["a"]);
    h.ready("a", &["x"]);
    let client = h.ready_client();
    h.call(&client, 1, "a__x");
    let forwarded = h.sent_to("a");
    for i in 0..crate::event::STREAM_QUEUE + 500 {
        h.backend_says("a", json!({ "jsonrpc": "2.0", "method": "notifications/message", "params": { "level": "info", "data": i } }));
    }
    h.answer("a", &forwarded, json!({ "done": true }));
    let received: Vec<Value> = client.inbox.try_iter().map(|m| serde_json::from_str(&m.to_json()).unwrap()).collect();
    assert_eq!(received.len(), crate::event::STREAM_QUEUE + 1, "the queue's worth of notifications, then the answer");
    assert_eq!(received.last().unwrap()["result"]["done"], true);
    let (reply, metrics) = crossbeam_channel::bounded(1);
    h.event(Event::Metrics { reply });
    assert!(metrics.try_recv().unwrap().contains("mcp_proxy_notifications_dropped_total{stage=\"client\"} 500"));
}

#[test]
fn a_session_is_unknown_to_a_request_with_another_key() {
    let mut h = Harness::new(&["a"]);
    h.ready("a", &["x"]);
    open_session(&mut h, "s", Some("key #1"), "10.0.0.1");
    assert!(matches!(post(&mut h, "s", Some("key #2"), initialize()), Reply::UnknownSession));
    assert!(matches!(post(&mut h, "s", None, initialize()), Reply::UnknownSession));
    assert!(matches!(post(&mut h, "s", Some("key #1"), initialize()), Reply::Message(_)));
}

// ----- log messages --------------------------------------------------------------------------------

/// An initialized session of `owner` with a standing stream (as legacy SSE has), its answers there.
fn session_client(h: &mut Harness, session: &str, owner: &str) -> TestClient {
    let (outbox, inbox) = crossbeam_channel::unbounded();
    let (reply, _) = crossbeam_channel::bounded(1);
    let id = ClientId::fresh();
    let owner = Some(owner.to_owned());
    h.event(Event::OpenSession {
        client: id,
        session: session.into(),
        outbox: Some(outbox),
        access: Access { owner: owner.clone(), profile: None },
        address: None,
        reply,
    });
    let (reply, _) = crossbeam_channel::unbounded();
    let msg = Message::parse(&initialize().to_string()).unwrap();
    h.event(Event::FromSession { session: session.into(), access: Access { owner, profile: None }, msg, reply, inline: false });
    let client = TestClient { id, inbox };
    assert!(client.next().get("result").is_some());
    client
}

fn set_level(h: &mut Harness, client: &TestClient, level: &str) {
    h.send(client, json!({ "jsonrpc": "2.0", "id": "lvl", "method": "logging/setLevel", "params": { "level": level } }));
    assert_eq!(client.next()["id"], "lvl");
}

fn log(h: &mut Harness, level: &str) {
    h.backend_says("a", json!({ "jsonrpc": "2.0", "method": "notifications/message", "params": { "level": level, "data": "hi" } }));
}

#[test]
fn a_log_message_during_one_clients_call_reaches_that_client_only() {
    let mut h = Harness::new(&["a"]);
    h.ready("a", &["x"]);
    let (caller, other) = (h.ready_client(), h.ready_client());
    h.call(&caller, 1, "a__x");
    h.sent_to("a");
    log(&mut h, "info");
    assert_eq!(caller.next()["method"], "notifications/message");
    other.nothing();
}

#[test]
fn a_log_message_never_reaches_a_client_of_another_key() {
    let mut h = Harness::new(&["a"]);
    h.ready("a", &["x"]);
    let (one, one_too, two) =
        (session_client(&mut h, "s1", "key #1"), session_client(&mut h, "s2", "key #1"), session_client(&mut h, "s3", "key #2"));
    for client in [&one, &one_too, &two] {
        set_level(&mut h, client, "debug");
    }
    h.call(&one, 1, "a__x");
    h.call(&one_too, 2, "a__x");
    log(&mut h, "info");
    assert_eq!(one.next()["method"], "notifications/message");
    assert_eq!(one_too.next()["method"], "notifications/message");
    two.nothing();
}

#[test]
fn a_log_message_while_another_keys_sessionless_call_is_in_flight_reaches_no_listener() {
    let mut h = Harness::new(&["a"]);
    h.ready("a", &["x"]);
    let two = session_client(&mut h, "s2", "key #2");
    set_level(&mut h, &two, "debug");
    h.call(&two, 1, "a__x");
    h.sent_to("a");
    stateless(&mut h, "key #1", modern_call(json!({})));
    h.sent_to("a");
    log(&mut h, "info");
    two.nothing();
}

#[test]
fn each_client_hears_log_messages_from_its_own_level_and_backends_get_the_lowest_level() {
    let mut h = Harness::new(&["a"]);
    h.ready("a", &["x"]);
    let (quiet, verbose) = (h.ready_client(), h.ready_client());
    set_level(&mut h, &quiet, "error");
    assert_eq!(params(&h.sent_to("a"))["level"], "error");
    set_level(&mut h, &verbose, "debug");
    assert_eq!(params(&h.sent_to("a"))["level"], "debug");
    log(&mut h, "info");
    assert_eq!(verbose.next()["params"]["level"], "info");
    quiet.nothing();
    log(&mut h, "error");
    assert_eq!(quiet.next()["params"]["level"], "error");
}

#[test]
fn an_unknown_log_level_is_invalid_params() {
    let mut h = Harness::new(&["a"]);
    h.ready("a", &["x"]);
    let client = h.ready_client();
    h.send(&client, json!({ "jsonrpc": "2.0", "id": 1, "method": "logging/setLevel", "params": { "level": "loud" } }));
    assert_eq!(client.next()["error"]["code"], -32602);
    h.nothing_to_backend("a");
}

#[test]
fn a_client_that_leaves_has_its_calls_cancelled_at_the_backend() {
    let mut h = Harness::new(&["a"]);
    h.ready("a", &["x"]);
    let client = h.ready_client();
    h.call(&client, 1, "a__x");
    let forwarded = h.sent_to("a");
    h.event(Event::ClientGone { client: client.id });
    let cancel = h.sent_to("a");
    assert_eq!((cancel.method(), params(&cancel)["requestId"].clone()), ("notifications/cancelled", forwarded.id.unwrap()));
}

#[test]
fn an_http_request_gets_its_answer_on_its_own_reply_channel() {
    let mut h = Harness::new(&["a"]);
    h.ready("a", &["x"]);
    let (reply, answers) = crossbeam_channel::unbounded();
    let (open, _) = crossbeam_channel::bounded(1);
    h.event(Event::OpenSession {
        client: ClientId::fresh(),
        session: "s".into(),
        outbox: None,
        access: Access::default(),
        address: None,
        reply: open,
    });
    let msg = Message::parse(r#"{"jsonrpc":"2.0","id":"q","method":"tools/list"}"#).unwrap();
    h.event(Event::FromSession { session: "s".into(), access: Access::default(), msg, reply, inline: true });
    let Ok(Reply::Message(answer)) = answers.try_recv() else { panic!("no answer on the request's channel") };
    assert_eq!(answer.id, Some(json!("q")));
}

// ----- shutdown ------------------------------------------------------------------------------------

#[test]
fn shutdown_lets_a_call_in_flight_finish_then_closes_the_backends_input() {
    let mut h = Harness::new(&["a"]);
    h.ready("a", &["x"]);
    let client = h.ready_client();
    h.call(&client, 1, "a__x");
    let forwarded = h.sent_to("a");
    h.event(Event::Shutdown);
    h.call(&client, 2, "a__x");
    assert_eq!(client.next()["error"]["message"], "the proxy is shutting down");
    h.answer("a", &forwarded, json!({ "done": true }));
    assert_eq!(client.next()["result"]["done"], true);
    assert!(!h.finished, "the backend has not exited yet");
    assert!(matches!(h.wire("a").sent.try_recv(), Err(crossbeam_channel::TryRecvError::Disconnected)), "its input is closed");
    h.exits("a");
    assert!(h.finished, "done once every backend has exited");
}

#[test]
fn a_call_whose_client_is_still_answering_questions_when_the_grace_ends_is_answered_with_an_error() {
    let mut h = Harness::new(&["a"]);
    let (client, _, _) = handshake_call_asked(&mut h);
    h.event(Event::Shutdown);
    h.later(Duration::from_secs(1));
    client.nothing();
    h.later(Duration::from_secs(5));
    assert_eq!(client.next()["method"], "notifications/cancelled", "the question is withdrawn");
    let failed = client.next();
    assert_eq!((failed["id"].clone(), failed["error"]["message"].clone()), (json!(1), json!("the proxy is shutting down")));
}

#[test]
fn requests_held_at_shutdown_are_answered_with_an_error() {
    let mut h = Harness::new(&["a"]);
    let client = h.client();
    h.send(&client, json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" }));
    client.nothing();
    h.event(Event::Shutdown);
    assert_eq!(client.next()["error"]["code"], -32000);
}

// ----- isolation per client session ---------------------------------------------------------------

/// An isolated server `s` with tool `x`, ready, and a client whose call to it is in flight at its own
/// instance (`instance`, ready): what each isolation test starts from.
fn isolated_call(h: &mut Harness, instance: &str, capabilities: Value) -> (TestClient, Message) {
    let client = h.ready_client_with(capabilities);
    h.call(&client, 1, "s__x");
    h.ready_instance(instance);
    let forwarded = h.sent_to(instance);
    assert_eq!(forwarded.method(), "tools/call");
    (client, forwarded)
}

#[test]
fn listing_an_isolated_servers_tools_starts_no_instance() {
    let mut h = Harness::with(settings(), isolated("s", json!({})));
    h.ready("s", &["x"]);
    let client = h.ready_client();
    h.send(&client, json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" }));
    assert_eq!(client.next()["result"]["tools"][0]["name"], "s__x");
    assert_eq!(h.starts.len(), 1, "only the template runs");
    assert!(h.instances("s").is_empty());
}

#[test]
fn a_clients_first_call_starts_its_instance_and_is_sent_once_the_instance_is_ready() {
    let mut h = Harness::with(settings(), isolated("s", json!({})));
    h.ready("s", &["x"]);
    let client = h.ready_client();
    h.call(&client, 1, "s__x");
    client.nothing();
    h.nothing_to_backend("s");
    h.ready_instance("s#2");
    let forwarded = h.sent_to("s#2");
    assert_eq!(params(&forwarded)["name"], "x");
    h.answer("s#2", &forwarded, json!({ "content": [] }));
    assert_eq!(client.next()["id"], 1);
    h.nothing_to_backend("s");
}

#[test]
fn each_client_session_gets_its_own_instance_and_keeps_it() {
    let mut h = Harness::with(settings(), isolated("s", json!({})));
    h.ready("s", &["x"]);
    let (a, call_a) = isolated_call(&mut h, "s#2", json!({}));
    let (b, call_b) = isolated_call(&mut h, "s#3", json!({}));
    h.answer("s#3", &call_b, json!({ "content": [{ "type": "text", "text": "b" }] }));
    h.answer("s#2", &call_a, json!({ "content": [{ "type": "text", "text": "a" }] }));
    assert_eq!(a.next()["result"]["content"][0]["text"], "a");
    assert_eq!(b.next()["result"]["content"][0]["text"], "b");
    h.call(&a, 2, "s__x");
    assert_eq!(h.sent_to("s#2").method(), "tools/call", "a's second call goes to a's instance, already running");
    assert_eq!(h.starts.get("s#2"), Some(&1));
    assert_eq!(h.instances("s").len(), 2);
}

#[test]
fn an_instances_question_goes_to_its_own_client_while_another_client_calls_too() {
    let mut h = Harness::with(settings(), isolated("s", json!({})));
    h.ready("s", &["x"]);
    let (a, _) = isolated_call(&mut h, "s#2", json!({ "sampling": {} }));
    let (b, _) = isolated_call(&mut h, "s#3", json!({ "sampling": {} }));
    h.backend_says("s#3", json!({ "jsonrpc": "2.0", "id": "q", "method": "sampling/createMessage", "params": { "messages": [] } }));
    let asked = b.next();
    assert_eq!(asked["method"], "sampling/createMessage");
    a.nothing();
    h.send(&b, json!({ "jsonrpc": "2.0", "id": asked["id"], "result": { "role": "assistant" } }));
    let answered = h.sent_to("s#3");
    assert_eq!((answered.id, answered.result.map(|r| r.get().to_owned())), (Some(json!("q")), Some(r#"{"role":"assistant"}"#.into())));
    h.nothing_to_backend("s#2");
}

#[test]
fn an_instance_declares_its_own_clients_capabilities() {
    let mut h = Harness::with(settings(), isolated("s", json!({})));
    h.ready("s", &["x"]);
    let client = h.ready_client_with(json!({ "elicitation": {}, "experimental": {} }));
    h.call(&client, 1, "s__x");
    let probe = h.sent_to("s#2");
    assert_eq!(params(&probe)["_meta"]["io.modelcontextprotocol/clientCapabilities"], json!({ "elicitation": {} }));
}

#[test]
fn a_shared_servers_question_during_two_clients_calls_is_refused_naming_isolation() {
    let mut h = Harness::new(&["a"]);
    h.ready("a", &["x"]);
    let (one, two) = (h.ready_client_with(json!({ "sampling": {} })), h.ready_client_with(json!({ "sampling": {} })));
    h.call(&one, 1, "a__x");
    h.call(&two, 1, "a__x");
    let _ = (h.sent_to("a"), h.sent_to("a"));
    h.backend_says("a", json!({ "jsonrpc": "2.0", "id": "q", "method": "sampling/createMessage", "params": { "messages": [] } }));
    let refused = h.sent_to("a");
    let message = refused.error.map(|e| e.get().to_owned()).unwrap_or_default();
    assert!(message.contains(r#"\"isolation\": \"session\""#), "{message}");
    one.nothing();
    two.nothing();
}

#[test]
fn an_instance_that_crashes_fails_only_its_clients_call_and_starts_again_on_its_next_call() {
    let mut h = Harness::with(settings(), isolated("s", json!({})));
    h.ready("s", &["x"]);
    let (a, _) = isolated_call(&mut h, "s#2", json!({}));
    let (b, call_b) = isolated_call(&mut h, "s#3", json!({}));
    h.exits("s#2");
    let failed = a.next();
    assert!(failed["error"]["message"].as_str().unwrap().contains("server 's' exited"), "{failed}");
    h.later(Duration::from_secs(5));
    assert_eq!(h.starts.get("s#2"), Some(&1), "not restarted on a timer");
    h.answer("s#3", &call_b, json!({ "content": [] }));
    assert_eq!(b.next()["id"], 1, "the other client's call is untouched");
    assert_eq!(h.state("s"), BackendState::Connected, "the catalog stays");
    h.call(&a, 2, "s__x");
    h.ready_instance("s#2");
    assert_eq!(h.sent_to("s#2").method(), "tools/call");
    assert_eq!(h.starts.get("s#2"), Some(&2));
    assert_eq!(h.instances("s").iter().map(|i| i.restarts).collect::<Vec<_>>(), [1, 0]);
}

#[test]
fn a_client_past_max_instances_is_refused_naming_the_server_and_the_limit() {
    let mut h = Harness::with(settings(), isolated("s", json!({ "maxInstances": 1 })));
    h.ready("s", &["x"]);
    let _first = isolated_call(&mut h, "s#2", json!({}));
    let second = h.ready_client();
    h.call(&second, 1, "s__x");
    let refused = second.next();
    assert_eq!(refused["error"]["code"], -32000);
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("server 's'") && message.contains("\"maxInstances\": 1"), "{message}");
    assert!(!h.wires.contains_key("s#3"), "no instance was started");
}

#[test]
fn an_instance_stops_when_its_clients_session_ends() {
    let mut h = Harness::with(settings(), isolated("s", json!({})));
    h.ready("s", &["x"]);
    let (a, _) = isolated_call(&mut h, "s#2", json!({}));
    h.event(Event::ClientGone { client: a.id });
    let _cancelled = h.sent_to("s#2");
    assert!(matches!(h.wire("s#2").sent.try_recv(), Err(crossbeam_channel::TryRecvError::Disconnected)), "its input is closed");
    assert!(h.instances("s").is_empty());
}

#[test]
fn an_idle_instance_stops_after_its_idle_timeout_and_a_busy_one_does_not() {
    let mut h = Harness::with(settings(), isolated("s", json!({ "idleTimeout": 2 })));
    h.ready("s", &["x"]);
    let (a, call) = isolated_call(&mut h, "s#2", json!({}));
    h.later(Duration::from_secs(3));
    assert_eq!(h.instances("s").len(), 1, "a call is in flight");
    h.answer("s#2", &call, json!({ "content": [] }));
    assert_eq!(a.next()["id"], 1);
    h.later(Duration::from_secs(3));
    assert!(h.instances("s").is_empty());
    assert!(matches!(h.wire("s#2").sent.try_recv(), Err(crossbeam_channel::TryRecvError::Disconnected)));
}

#[test]
fn an_instances_log_message_reaches_its_own_client_only() {
    let mut h = Harness::with(settings(), isolated("s", json!({})));
    h.ready("s", &["x"]);
    let (a, call_a) = isolated_call(&mut h, "s#2", json!({}));
    let (b, call_b) = isolated_call(&mut h, "s#3", json!({}));
    h.answer("s#2", &call_a, json!({ "content": [] }));
    h.answer("s#3", &call_b, json!({ "content": [] }));
    let _ = (a.next(), b.next());
    let log = json!({ "jsonrpc": "2.0", "method": "notifications/message", "params": { "level": "info", "data": "a's" } });
    h.backend_says("s#2", log);
    assert_eq!(a.next()["params"]["data"], "a's");
    b.nothing();
}

#[test]
fn an_instances_list_change_refreshes_the_catalog_from_the_template() {
    let mut h = Harness::with(settings(), isolated("s", json!({})));
    h.ready("s", &["x"]);
    let (_a, _) = isolated_call(&mut h, "s#2", json!({}));
    h.backend_says("s#2", json!({ "jsonrpc": "2.0", "method": "notifications/tools/list_changed" }));
    assert_eq!(h.sent_to("s").method(), "tools/list");
    h.nothing_to_backend("s#2");
}

#[test]
fn a_sessionless_request_for_an_isolated_server_is_refused_with_the_reason() {
    let mut h = Harness::with(settings(), isolated("s", json!({})));
    h.ready("s", &["x"]);
    let (reply, answer) = crossbeam_channel::unbounded();
    let call = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": "s__x", "arguments": {},
        "_meta": { "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {} } } });
    let msg = Message::parse(&call.to_string()).unwrap();
    h.event(Event::Stateless { client: ClientId::fresh(), msg, reply, access: Access::default(), param_headers: Vec::new() });
    let Ok(Reply::Message(refused)) = answer.try_recv() else { panic!("no answer") };
    assert!(refused.error.unwrap().get().contains("belongs to no session"));
    assert!(h.instances("s").is_empty());
}

#[test]
fn a_call_cancelled_while_its_instance_starts_is_never_sent() {
    let mut h = Harness::with(settings(), isolated("s", json!({})));
    h.ready("s", &["x"]);
    let client = h.ready_client();
    h.call(&client, 1, "s__x");
    h.send(&client, json!({ "jsonrpc": "2.0", "method": "notifications/cancelled", "params": { "requestId": 1 } }));
    h.ready_instance("s#2");
    h.nothing_to_backend("s#2");
    client.nothing();
}

#[test]
fn a_reload_that_changes_an_isolated_server_stops_its_instances() {
    let mut h = Harness::with(settings(), isolated("s", json!({})));
    h.ready("s", &["x"]);
    let (a, _) = isolated_call(&mut h, "s#2", json!({}));
    h.event(Event::Reload { servers: isolated("s", json!({ "timeout": 5 })), profiles: Vec::new(), overrides: Overrides::new() });
    assert!(a.next()["error"]["message"].as_str().unwrap().contains("configuration changed"));
    assert!(h.instances("s").is_empty());
}

#[test]
fn an_instance_that_fails_to_start_fails_the_calls_waiting_for_it() {
    let mut h = Harness::with(settings(), isolated("s", json!({})));
    h.ready("s", &["x"]);
    let client = h.ready_client();
    h.call(&client, 1, "s__x");
    let probe = h.sent_to("s#2");
    h.backend_says("s#2", json!({ "jsonrpc": "2.0", "id": probe.id, "error": { "code": -32601, "message": "no" } }));
    let init = h.sent_to("s#2");
    h.backend_says("s#2", json!({ "jsonrpc": "2.0", "id": init.id, "error": { "code": -32603, "message": "broken" } }));
    let failed = client.next();
    assert!(failed["error"]["message"].as_str().unwrap().contains("initialize failed"), "{failed}");
}

#[test]
fn a_clients_log_level_is_set_on_its_own_instance_only() {
    let mut h = Harness::with(settings(), isolated("s", json!({})));
    h.ready("s", &["x"]);
    let (a, call_a) = isolated_call(&mut h, "s#2", json!({}));
    let (_b, _) = isolated_call(&mut h, "s#3", json!({}));
    h.answer("s#2", &call_a, json!({ "content": [] }));
    let _ = a.next();
    h.send(&a, json!({ "jsonrpc": "2.0", "id": 5, "method": "logging/setLevel", "params": { "level": "error" } }));
    let set = h.sent_to("s#2");
    assert_eq!((set.method(), params(&set)["level"].clone()), ("logging/setLevel", json!("error")));
    h.nothing_to_backend("s#3");
}

// ----- profiles ----------------------------------------------------------------------------------------

/// Stdio servers by key with these profiles (the config file's format), started but not ready yet;
/// key #1 and token #1 are the credentials profiles may bind.
fn with_profiles(keys: &[&str], profiles: Value) -> Harness {
    let entries: serde_json::Map<String, Value> = keys.iter().map(|k| (k.to_string(), json!({ "command": "unused" }))).collect();
    let text = json!({ "mcpServers": entries, "profiles": profiles }).to_string();
    let mut config = crate::config::parse(&text, Path::new("test.json"), &|_| None).expect("a valid config");
    let credentials = crate::profile_config::Credentials { keys: vec!["k1".into()], tokens: vec!["t1".into()] };
    assert!(crate::profile_config::bind(&mut config.profiles, &credentials).is_empty());
    Harness::serving(settings(), super::Served { servers: config.servers, profiles: config.profiles, overrides: Overrides::new() })
}

/// Servers `a` (tools x, y) and `b` (tool z), ready, with these profiles.
fn profiled(profiles: Value) -> Harness {
    let mut h = with_profiles(&["a", "b"], profiles);
    h.ready("a", &["x", "y"]);
    h.ready("b", &["z"]);
    h
}

/// A reply that is a message, as JSON.
fn answered(reply: Reply) -> Value {
    let Reply::Message(msg) = reply else { panic!("not a message") };
    serde_json::from_str(&msg.to_json()).expect("JSON")
}

fn open_profile_session(h: &mut Harness, session: &str, owner: Option<&str>, profile: Option<&str>) -> Reply {
    let (reply, answer) = crossbeam_channel::bounded(1);
    let access = Access { owner: owner.map(str::to_owned), profile: profile.map(str::to_owned) };
    h.event(Event::OpenSession { client: ClientId::fresh(), session: session.into(), outbox: None, access, address: None, reply });
    answer.try_recv().expect("an answer")
}

#[test]
fn a_profiles_client_lists_only_the_tools_of_its_servers_that_its_globs_allow() {
    let mut h = profiled(json!({ "p": { "servers": ["a"], "tools": { "allow": ["a__x"] } } }));
    let client = h.profile_client("p");
    assert_eq!(h.tool_names(&client), ["a__x"]);
    let whole = h.ready_client();
    assert_eq!(h.tool_names(&whole), ["a__x", "a__y", "b__z"], "a client without a profile sees everything");
}

#[test]
fn a_tool_outside_the_profile_is_unknown_and_never_reaches_its_server() {
    let mut h = profiled(json!({ "p": { "servers": ["a"] } }));
    let client = h.profile_client("p");
    h.call(&client, 1, "b__z");
    assert_eq!(client.next()["error"]["message"], "Unknown tool: 'b__z'");
    h.nothing_to_backend("b");
    h.call(&client, 2, "a__y");
    assert_eq!(params(&h.sent_to("a"))["name"], "y");
}

#[test]
fn a_renamed_tool_is_listed_and_called_under_its_profile_name() {
    let mut h = profiled(json!({ "p": { "servers": ["a"], "rename": { "a__x": "ex" } } }));
    let client = h.profile_client("p");
    assert_eq!(h.tool_names(&client), ["a__y", "ex"], "sorted by the names shown");
    h.call(&client, 1, "ex");
    assert_eq!(params(&h.sent_to("a"))["name"], "x");
    h.call(&client, 2, "a__x");
    assert_eq!(client.next()["error"]["message"], "Unknown tool: 'a__x'", "the old name is not shown, so not callable");
}

#[test]
fn a_bound_key_gets_its_profile_on_the_default_path_and_403_on_another_profiles_path() {
    let mut h = profiled(json!({ "p": { "servers": ["a"], "keys": ["k1"] }, "q": { "servers": ["b"] } }));
    assert!(matches!(open_profile_session(&mut h, "s1", Some("key #1"), None), Reply::Accepted));
    assert_eq!(answered(post(&mut h, "s1", Some("key #1"), initialize()))["result"]["protocolVersion"], "2025-06-18");
    let listed = answered(post(&mut h, "s1", Some("key #1"), json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" })));
    assert_eq!(listed["result"]["tools"].as_array().map(Vec::len), Some(2), "{listed}");
    assert!(matches!(open_profile_session(&mut h, "s2", Some("key #1"), Some("q")), Reply::Refused(403, _)));
    assert!(matches!(open_profile_session(&mut h, "s3", Some("key #1"), Some("p")), Reply::Accepted));
    assert!(matches!(open_profile_session(&mut h, "s4", None, Some("nope")), Reply::Refused(404, _)));
    assert!(matches!(open_profile_session(&mut h, "s5", None, Some("q")), Reply::Accepted), "an unbound credential may use any profile");
}

#[test]
fn a_session_is_unknown_on_another_profiles_path() {
    let mut h = profiled(json!({ "p": { "servers": ["a"] }, "q": { "servers": ["b"] } }));
    assert!(matches!(open_profile_session(&mut h, "s1", None, Some("p")), Reply::Accepted));
    let (reply, answers) = crossbeam_channel::unbounded();
    let msg = Message::parse(&initialize().to_string()).unwrap();
    h.event(Event::FromSession {
        session: "s1".into(),
        access: Access { owner: None, profile: Some("q".into()) },
        msg,
        reply,
        inline: true,
    });
    assert!(matches!(answers.try_recv(), Ok(Reply::UnknownSession)));
}

#[test]
fn a_list_change_is_announced_only_to_clients_whose_view_changed() {
    let mut h = profiled(json!({ "p": { "servers": ["a"] } }));
    let (profiled, whole) = (h.profile_client("p"), h.ready_client());
    h.backend_says("b", json!({ "jsonrpc": "2.0", "method": "notifications/tools/list_changed" }));
    let list = h.sent_to("b");
    h.answer("b", &list, json!({ "tools": [{ "name": "z2", "inputSchema": { "type": "object" } }] }));
    assert_eq!(whole.next()["method"], "notifications/tools/list_changed");
    profiled.nothing();
}

#[test]
fn prompts_resources_and_completions_outside_the_profile_are_unknown() {
    let mut h = with_profiles(&["a", "b"], json!({ "p": { "servers": ["a"] } }));
    let caps = json!({ "prompts": {}, "resources": {}, "completions": {} });
    let offering = |prompt: &str, uri: &str| {
        [
            ("tools/list", json!({ "tools": [] })),
            ("prompts/list", json!({ "prompts": [{ "name": prompt }] })),
            ("resources/list", json!({ "resources": [{ "uri": uri, "name": uri }] })),
            ("resources/templates/list", json!({ "resourceTemplates": [] })),
        ]
    };
    h.ready_offering("a", caps.clone(), &offering("pa", "file:///a"));
    h.ready_offering("b", caps, &offering("pb", "file:///b"));
    let client = h.profile_client("p");
    h.send(&client, json!({ "jsonrpc": "2.0", "id": 1, "method": "prompts/get", "params": { "name": "pb" } }));
    assert_eq!(client.next()["error"]["message"], "Unknown prompt: 'pb'");
    h.send(&client, json!({ "jsonrpc": "2.0", "id": 2, "method": "resources/read", "params": { "uri": "file:///b" } }));
    assert_eq!(client.next()["error"]["code"], -32002);
    let complete = json!({ "ref": { "type": "ref/prompt", "name": "pb" }, "argument": { "name": "x", "value": "" } });
    h.send(&client, json!({ "jsonrpc": "2.0", "id": 3, "method": "completion/complete", "params": complete }));
    assert_eq!(client.next()["error"]["code"], -32602);
    h.nothing_to_backend("b");
    h.send(&client, json!({ "jsonrpc": "2.0", "id": 4, "method": "resources/list" }));
    assert_eq!(client.next()["result"]["resources"], json!([{ "uri": "file:///a", "name": "file:///a" }]));
    h.send(&client, json!({ "jsonrpc": "2.0", "id": 5, "method": "resources/read", "params": { "uri": "file:///a" } }));
    assert_eq!(h.sent_to("a").method(), "resources/read");
}

#[test]
fn a_tool_search_profile_lists_the_meta_tools_and_searches_calls_and_lists_servers() {
    let mut h = profiled(json!({ "lean": { "toolSearch": true } }));
    let client = h.profile_client("lean");
    assert_eq!(h.tool_names(&client), ["search_tools", "call_tool", "list_servers"]);
    let search = json!({ "name": "search_tools", "arguments": { "query": "z" } });
    h.send(&client, json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": search }));
    let found = client.next()["result"]["structuredContent"]["tools"].clone();
    assert_eq!(found[0]["name"], "b__z");
    assert_eq!(found[0]["server"], "b");
    let call = json!({ "name": "call_tool", "arguments": { "name": "b__z", "arguments": { "n": 1 } } });
    h.send(&client, json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": call }));
    assert_eq!(params(&h.sent_to("b")), json!({ "name": "z", "arguments": { "n": 1 } }));
    h.send(&client, json!({ "jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": { "name": "list_servers", "arguments": {} } }));
    assert_eq!(client.next()["result"]["structuredContent"]["servers"], json!([{ "name": "a", "tools": 2 }, { "name": "b", "tools": 1 }]));
}

#[test]
fn a_bad_search_is_a_tool_error_the_model_can_read() {
    let mut h = profiled(json!({ "lean": { "toolSearch": true } }));
    let client = h.profile_client("lean");
    h.send(
        &client,
        json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": "search_tools", "arguments": { "limit": 0 } } }),
    );
    let result = client.next()["result"].clone();
    assert_eq!((result["isError"].clone(), result["content"][0]["text"].clone()), (json!(true), json!("'query' (text) is required")));
}

#[test]
fn a_reload_that_changes_a_profile_tells_its_clients_only_and_serves_the_new_view() {
    let mut h = profiled(json!({ "p": { "servers": ["a"] }, "q": { "servers": ["b"] } }));
    let (p, q) = (h.profile_client("p"), h.profile_client("q"));
    let text = json!({ "mcpServers": { "a": { "command": "unused" }, "b": { "command": "unused" } },
                       "profiles": { "p": { "servers": ["a"], "tools": { "deny": ["a__y"] } }, "q": { "servers": ["b"] } } })
    .to_string();
    let config = crate::config::parse(&text, Path::new("test.json"), &|_| None).unwrap();
    h.event(Event::Reload { servers: config.servers, profiles: config.profiles, overrides: Overrides::new() });
    assert_eq!(p.next()["method"], "notifications/tools/list_changed");
    q.nothing();
    assert_eq!(h.tool_names(&p), ["a__x"]);
}

#[test]
fn a_client_whose_profile_is_gone_is_refused_rather_than_shown_everything() {
    let mut h = profiled(json!({ "p": { "servers": ["a"] } }));
    let client = h.client_of(Some("gone"));
    h.send(&client, json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" }));
    assert_eq!(client.next()["error"]["message"], "this client's profile is no longer served");
}

#[test]
fn a_profiles_client_is_given_only_its_servers_instructions() {
    let mut h = with_profiles(&["a", "b"], json!({ "p": { "servers": ["a"] } }));
    for key in ["a", "b"] {
        let probe = h.sent_to(key);
        h.backend_says(key, json!({ "jsonrpc": "2.0", "id": probe.id, "error": { "code": -32601, "message": "no" } }));
        let init = h.sent_to(key);
        let result = json!({ "protocolVersion": "2025-06-18", "capabilities": { "tools": {} }, "instructions": format!("use {key} well") });
        h.answer(key, &init, result);
        let _initialized = h.sent_to(key);
        let list = h.sent_to(key);
        h.answer(key, &list, json!({ "tools": [{ "name": "x", "inputSchema": { "type": "object" } }] }));
    }
    let client = h.client_of(Some("p"));
    h.send(
        &client,
        json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": { "protocolVersion": "2025-06-18", "capabilities": {} } }),
    );
    assert_eq!(client.next()["result"]["instructions"], "## a\nuse a well");
}

#[test]
fn a_log_message_no_call_explains_reaches_no_client_whose_profile_hides_its_server() {
    let mut h = profiled(json!({ "p": { "servers": ["a"] } }));
    let (hidden, seeing) = (h.profile_client("p"), h.ready_client());
    for client in [&hidden, &seeing] {
        h.send(client, json!({ "jsonrpc": "2.0", "id": 9, "method": "logging/setLevel", "params": { "level": "debug" } }));
        assert!(client.next().get("result").is_some());
    }
    h.backend_says("b", json!({ "jsonrpc": "2.0", "method": "notifications/message", "params": { "level": "info", "data": "b's" } }));
    assert_eq!(seeing.next()["params"]["data"], "b's");
    hidden.nothing();
}

#[test]
fn a_listen_under_a_profile_is_acknowledged_only_for_the_resources_the_profile_shows() {
    let mut h = with_profiles(&["a", "b"], json!({ "p": { "servers": ["a"] } }));
    let caps = json!({ "resources": { "subscribe": true } });
    for (key, uri) in [("a", "file:///a"), ("b", "file:///b")] {
        let lists = [
            ("resources/list", json!({ "resources": [{ "uri": uri, "name": uri }] })),
            ("resources/templates/list", json!({ "resourceTemplates": [] })),
        ];
        h.ready_offering(key, caps.clone(), &lists);
    }
    let client = h.client_of(Some("p"));
    let envelope = json!({ "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {} });
    let listen = json!({ "notifications": { "resourceSubscriptions": ["file:///a", "file:///b"] }, "_meta": envelope });
    h.send_modern(&client, json!({ "jsonrpc": "2.0", "id": 1, "method": "subscriptions/listen", "params": listen }));
    let ack = client.next();
    assert_eq!(ack["params"]["notifications"]["resourceSubscriptions"], json!(["file:///a"]), "{ack}");
    h.nothing_to_backend("b");
}

#[test]
fn call_tool_naming_no_tool_answers_with_a_tool_error_the_model_can_act_on() {
    let mut h = profiled(json!({ "lean": { "toolSearch": true } }));
    let client = h.profile_client("lean");
    let call = json!({ "name": "call_tool", "arguments": { "name": "nope", "arguments": {} } });
    h.send(&client, json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": call }));
    let result = client.next()["result"].clone();
    assert_eq!(result["isError"], true);
    assert!(result["content"][0]["text"].as_str().unwrap().starts_with("Unknown tool: 'nope'"), "{result}");
}

#[test]
fn a_2026_client_is_not_offered_tools_it_could_only_run_as_tasks() {
    let mut h = with_profiles(&["a"], json!({ "lean": { "toolSearch": true } }));
    let tools = json!({ "tools": [
        { "name": "report", "description": "a report", "inputSchema": { "type": "object" } },
        { "name": "report_task", "description": "a report", "inputSchema": { "type": "object" }, "execution": { "taskSupport": "required" } }
    ] });
    h.ready_offering("a", json!({ "tools": {} }), &[("tools/list", tools)]);
    let search = |era_meta: Value| json!({ "name": "search_tools", "arguments": { "query": "report" }, "_meta": era_meta });
    let handshake = h.profile_client("lean");
    h.send(&handshake, json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": search(json!({})) }));
    assert_eq!(handshake.next()["result"]["structuredContent"]["tools"].as_array().map(Vec::len), Some(2));
    let modern = h.client_of(Some("lean"));
    let envelope = json!({ "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {} });
    h.send_modern(&modern, json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": search(envelope) }));
    assert_eq!(
        modern.next()["result"]["structuredContent"]["tools"],
        json!([{ "name": "a__report", "server": "a", "description": "a report", "inputSchema": { "type": "object" } }])
    );
}

// ----- the 2026-07-28 tasks extension ---------------------------------------------------------------

/// The `_meta` of a 2026-07-28 request whose client takes tasks.
fn tasks_meta() -> Value {
    json!({ "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": { "extensions": { "io.modelcontextprotocol/tasks": {} } } })
}

/// A 2026-07-28 backend `a` that takes tasks, with tool `x`, ready.
fn task_backend() -> Harness {
    let mut h = Harness::new(&["a"]);
    let probe = h.sent_to("a");
    let caps = json!({ "tools": {}, "extensions": { "io.modelcontextprotocol/tasks": {} } });
    h.answer("a", &probe, json!({ "supportedVersions": ["2026-07-28"], "capabilities": caps, "resultType": "complete" }));
    let list = h.sent_to("a");
    h.answer("a", &list, json!({ "tools": [{ "name": "x", "inputSchema": { "type": "object" } }], "resultType": "complete" }));
    h
}

/// A 2026-07-28 client that takes tasks calls `a__x`, and the backend makes task `t-1`: the client and
/// the id the proxy gave the task.
fn task_made(h: &mut Harness) -> (TestClient, String) {
    let client = h.client();
    let call = json!({ "name": "a__x", "arguments": {}, "_meta": tasks_meta() });
    h.send_modern(&client, json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": call }));
    let forwarded = h.sent_to("a");
    let caps = &params(&forwarded)["_meta"]["io.modelcontextprotocol/clientCapabilities"];
    assert!(caps["extensions"].get("io.modelcontextprotocol/tasks").is_some(), "the backend is told the client takes tasks: {caps}");
    let task = json!({ "resultType": "task", "taskId": "t-1", "status": "working", "createdAt": "2026-11-30T00:00:00Z",
                       "lastUpdatedAt": "2026-11-30T00:00:00Z", "ttlMs": 60000, "pollIntervalMs": 100 });
    h.answer("a", &forwarded, task);
    let answer = client.next();
    assert_eq!(answer["result"]["resultType"], "task");
    let id = answer["result"]["taskId"].as_str().unwrap().to_owned();
    (client, id)
}

#[test]
fn a_task_made_for_a_2026_client_is_given_an_id_of_the_proxys_own() {
    let mut h = task_backend();
    let (_, id) = task_made(&mut h);
    assert!(id.starts_with("mcp-proxy-") && id.len() > 40, "{id}");
}

#[test]
fn a_2026_clients_task_is_polled_at_its_backend_under_the_backends_id_and_answered_under_the_proxys() {
    let mut h = task_backend();
    let (client, id) = task_made(&mut h);
    h.send_modern(&client, json!({ "jsonrpc": "2.0", "id": 2, "method": "tasks/get", "params": { "taskId": id, "_meta": tasks_meta() } }));
    let get = h.sent_to("a");
    assert_eq!((get.method(), params(&get)["taskId"].clone()), ("tasks/get", json!("t-1")));
    let done = json!({ "resultType": "complete", "taskId": "t-1", "status": "completed", "result": { "content": [] } });
    h.answer("a", &get, done);
    let answer = client.next();
    assert_eq!((answer["result"]["taskId"].clone(), answer["result"]["status"].clone()), (json!(id), json!("completed")));
    let update = json!({ "taskId": id, "inputResponses": { "k": { "action": "accept" } }, "_meta": tasks_meta() });
    h.send_modern(&client, json!({ "jsonrpc": "2.0", "id": 3, "method": "tasks/update", "params": update }));
    let forwarded = params(&h.sent_to("a"));
    assert_eq!((forwarded["taskId"].clone(), forwarded["inputResponses"].clone()), (json!("t-1"), json!({ "k": { "action": "accept" } })));
}

#[test]
fn a_2026_task_is_unknown_to_other_clients_and_by_its_backends_own_id() {
    let mut h = task_backend();
    let (owner, id) = task_made(&mut h);
    let other = h.client();
    h.send_modern(&other, json!({ "jsonrpc": "2.0", "id": 2, "method": "tasks/get", "params": { "taskId": id, "_meta": tasks_meta() } }));
    assert_eq!(other.next()["error"]["code"], -32602);
    h.send_modern(
        &owner,
        json!({ "jsonrpc": "2.0", "id": 3, "method": "tasks/cancel", "params": { "taskId": "t-1", "_meta": tasks_meta() } }),
    );
    assert_eq!(owner.next()["error"]["code"], -32602);
    h.nothing_to_backend("a");
}

#[test]
fn a_2026_client_that_does_not_declare_the_tasks_extension_may_not_use_it() {
    let mut h = task_backend();
    let (client, id) = task_made(&mut h);
    h.send_modern(&client, json!({ "jsonrpc": "2.0", "id": 2, "method": "tasks/get", "params": { "taskId": id, "_meta": modern_meta() } }));
    let refused = client.next();
    assert_eq!(refused["error"]["code"], -32021);
    assert!(refused["error"]["data"]["requiredCapabilities"]["extensions"].get("io.modelcontextprotocol/tasks").is_some(), "{refused}");
    let listen = json!({ "notifications": { "taskIds": [id] }, "_meta": modern_meta() });
    h.send_modern(&client, json!({ "jsonrpc": "2.0", "id": 3, "method": "subscriptions/listen", "params": listen }));
    assert_eq!(client.next()["error"]["code"], -32021);
}

#[test]
fn server_discover_names_the_tasks_extension_when_a_backend_takes_it() {
    let mut h = task_backend();
    let client = h.client();
    h.send_modern(&client, json!({ "jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": { "_meta": modern_meta() } }));
    assert_eq!(client.next()["result"]["capabilities"]["extensions"], json!({ "io.modelcontextprotocol/tasks": {} }));
}

#[test]
fn a_2026_backends_tasks_are_forgotten_when_it_exits() {
    let mut h = task_backend();
    let (client, id) = task_made(&mut h);
    h.exits("a");
    h.send_modern(&client, json!({ "jsonrpc": "2.0", "id": 2, "method": "tasks/get", "params": { "taskId": id, "_meta": tasks_meta() } }));
    assert_eq!(client.next()["error"]["code"], -32602);
}

// ----- found on review -------------------------------------------------------------------------------

/// Reloads `h` with servers `a` and `b` and these profiles, credentials bound.
fn reload_profiles(h: &mut Harness, profiles: Value) {
    let text = json!({ "mcpServers": { "a": { "command": "unused" }, "b": { "command": "unused" } }, "profiles": profiles }).to_string();
    let mut config = crate::config::parse(&text, Path::new("test.json"), &|_| None).expect("a valid config");
    let credentials = crate::profile_config::Credentials { keys: vec!["k1".into()], tokens: vec!["t1".into()] };
    assert!(crate::profile_config::bind(&mut config.profiles, &credentials).is_empty());
    h.event(Event::Reload { servers: config.servers, profiles: config.profiles, overrides: Overrides::new() });
}

#[test]
fn a_server_the_profile_hides_cannot_ask_its_only_client_anything() {
    let mut h = profiled(json!({ "p": { "servers": ["a"] } }));
    let client = h.profile_client("p");
    h.backend_says("b", json!({ "jsonrpc": "2.0", "id": "q", "method": "roots/list" }));
    client.nothing();
    assert!(h.sent_to("b").error.is_some(), "the server is told nobody can answer");
}

#[test]
fn turning_tool_search_on_tells_the_profiles_clients_their_tools_changed() {
    let mut h = profiled(json!({ "p": { "servers": ["a"] } }));
    let client = h.profile_client("p");
    reload_profiles(&mut h, json!({ "p": { "servers": ["a"], "toolSearch": true } }));
    assert_eq!(client.next()["method"], "notifications/tools/list_changed");
    assert_eq!(h.tool_names(&client), ["search_tools", "call_tool", "list_servers"]);
}

#[test]
fn a_session_of_a_key_bound_to_a_profile_by_a_reload_is_unknown_so_its_client_starts_anew() {
    let mut h = profiled(json!({ "p": { "servers": ["a"] } }));
    assert!(matches!(open_profile_session(&mut h, "s1", Some("key #1"), None), Reply::Accepted));
    assert!(answered(post(&mut h, "s1", Some("key #1"), initialize())).get("result").is_some());
    reload_profiles(&mut h, json!({ "p": { "servers": ["a"], "keys": ["k1"] } }));
    let list = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" });
    assert!(matches!(post(&mut h, "s1", Some("key #1"), list), Reply::UnknownSession));
    assert!(matches!(open_profile_session(&mut h, "s2", Some("key #1"), None), Reply::Accepted));
    assert!(answered(post(&mut h, "s2", Some("key #1"), initialize())).get("result").is_some());
    let listed = answered(post(&mut h, "s2", Some("key #1"), json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" })));
    assert_eq!(listed["result"]["tools"].as_array().map(Vec::len), Some(2), "{listed}");
}

/// An isolated server `s` offering a subscribable resource, and a client subscribed to it through its
/// instance (`s#2`, ready): the client.
fn subscribed_to_an_instance(h: &mut Harness) -> TestClient {
    let resources = [
        ("resources/list", json!({ "resources": [{ "uri": "file:///a", "name": "a" }] })),
        ("resources/templates/list", json!({ "resourceTemplates": [] })),
    ];
    h.ready_offering("s", json!({ "resources": { "subscribe": true } }), &resources);
    let client = h.ready_client();
    h.send(&client, json!({ "jsonrpc": "2.0", "id": 1, "method": "resources/subscribe", "params": { "uri": "file:///a" } }));
    let probe = h.sent_to("s#2");
    h.backend_says("s#2", json!({ "jsonrpc": "2.0", "id": probe.id, "error": { "code": -32601, "message": "Method not found" } }));
    let init = h.sent_to("s#2");
    let caps = json!({ "resources": { "subscribe": true } });
    h.answer("s#2", &init, json!({ "protocolVersion": "2025-06-18", "capabilities": caps, "serverInfo": { "name": "s" } }));
    assert_eq!(h.sent_to("s#2").method(), "notifications/initialized");
    let subscribe = h.sent_to("s#2");
    assert_eq!((subscribe.method(), params(&subscribe)["uri"].clone()), ("resources/subscribe", json!("file:///a")));
    h.nothing_to_backend("s#2");
    h.answer("s#2", &subscribe, json!({}));
    assert_eq!(client.next()["id"], 1);
    client
}

#[test]
fn an_instance_that_starts_for_a_subscribe_is_subscribed_once() {
    let mut h = Harness::with(settings(), isolated("s", json!({})));
    let _client = subscribed_to_an_instance(&mut h);
}

#[test]
fn an_instance_its_client_is_subscribed_to_is_not_stopped_for_idleness() {
    let mut h = Harness::with(settings(), isolated("s", json!({ "idleTimeout": 2 })));
    let _client = subscribed_to_an_instance(&mut h);
    h.later(Duration::from_secs(3));
    assert_eq!(h.instances("s").len(), 1);
}

#[test]
fn a_profiles_tool_whose_server_is_down_is_unavailable_not_unknown() {
    let mut h = profiled(json!({ "p": { "servers": ["a"], "rename": { "a__x": "ex" } } }));
    let client = h.profile_client("p");
    h.exits("a");
    let _ = client.next(); // its tools are withdrawn: list_changed
    h.call(&client, 1, "ex");
    let failed = client.next();
    assert!(failed["error"]["message"].as_str().unwrap().contains("server 'a' is unavailable"), "{failed}");
}
