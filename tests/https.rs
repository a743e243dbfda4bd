//! The proxy serving HTTPS (`--tls-cert`/`--tls-key`): the real binary with the test certificate of
//! `tests/fixtures/tls/`, the harness's raw HTTP/1.1 client over a TLS connection that trusts the test CA
//! only, and the mock backend (`mock__echo`, `mock__cancellable`, ...). One behaviour per test.

#![cfg(feature = "tls")]

mod support;

use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::http::{mcp_post, tool_call, HttpProxy, ProxyBuilder, Req, TLS_FIXTURES};
use support::{clear_proxy_env, result_text, TempDir, PROXY_BIN, WAIT};

fn https_proxy() -> HttpProxy {
    ProxyBuilder::new().tls().start()
}

/// The DER of the first certificate in a PEM file of the test PKI.
fn der(pem_file: &Path) -> Vec<u8> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    CertificateDer::from_pem_file(pem_file).unwrap_or_else(|e| panic!("{}: {e}", pem_file.display())).to_vec()
}

/// Everything the server sends on `stream` until it closes the connection; fails the test if that takes
/// longer than `within`.
fn read_until_closed(mut stream: TcpStream, within: Duration) -> Vec<u8> {
    stream.set_read_timeout(Some(within)).unwrap();
    let start = Instant::now();
    let mut received = Vec::new();
    match stream.read_to_end(&mut received) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the connection was still open after {:?}: {e}", start.elapsed()),
    }
    received
}

#[test]
fn initialize_and_a_tool_call_work_over_https() {
    let proxy = https_proxy();
    let session = proxy.initialize();
    let echo = proxy.post_mcp(Some(&session), &tool_call(1, "mock__echo", json!({ "text": "over TLS" })));
    assert_eq!(echo.status, 200, "{echo:?}");
    assert_eq!(result_text(&echo.json()), "over TLS");
}

#[test]
fn the_start_up_line_says_https() {
    let mut proxy = https_proxy();
    let stderr = proxy.wait_for_stderr("listening on ");
    assert!(stderr.contains("listening on https://127.0.0.1:"), "{stderr}");
}

#[test]
fn a_legacy_sse_session_works_over_https() {
    let proxy = https_proxy();
    let mut sse = proxy.open_sse(&[]);
    let posted = proxy.request(&Req::post(&sse.endpoint).json(&tool_call(7, "mock__echo", json!({ "text": "legacy" }))));
    assert_eq!(posted.status, 202, "{posted:?}");
    let answer = sse.events.next_message(WAIT);
    assert_eq!((answer["id"].clone(), result_text(&answer)), (json!(7), "legacy"), "{answer}");
}

#[test]
fn a_legacy_sse_session_whose_https_client_leaves_with_close_notify_ends() {
    let proxy = https_proxy();
    let mut sse = proxy.open_sse(&[]);
    assert_eq!(proxy.health(&[])["sessions"], 1);
    sse.events.close_notify();
    drop(sse);
    // The stream checks its client every 5 s while it has nothing to send.
    support::wait_until("the session to end", WAIT, || (proxy.health(&[])["sessions"] == 0).then_some(()));
}

#[test]
fn many_requests_share_one_kept_alive_https_connection() {
    let proxy = https_proxy();
    let session = proxy.initialize();
    let mut conn = proxy.connect();
    for id in 1..=5 {
        let echo = conn.roundtrip(&mcp_post(Some(&session), &tool_call(id, "mock__echo", json!({ "text": format!("n{id}") }))));
        assert_eq!(result_text(&echo.json()), format!("n{id}"));
    }
}

#[test]
fn a_request_and_an_answer_many_tls_records_long_arrive_whole() {
    let proxy = https_proxy();
    let session = proxy.initialize();
    // Over a TLS record's 16 KiB, and over rustls's 64 KiB of records waiting to be sent.
    let text: String = (0..300_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let echo = proxy.post_mcp(Some(&session), &tool_call(1, "mock__echo", json!({ "text": text })));
    assert_eq!(echo.status, 200);
    assert!(result_text(&echo.json()) == text, "the echo differs from what was sent");
}

#[test]
fn the_admin_session_cookie_is_secure_over_https() {
    let proxy = ProxyBuilder::new().tls().env("ENABLE_ADMIN_UI", "true").env("ADMIN_PASSWORD", "s3cret-admin").start();
    let login = proxy.request(&Req::post("/admin/login").json(&json!({ "username": "admin", "password": "s3cret-admin" })));
    assert_eq!(login.status, 200, "{login:?}");
    let cookie = login.header("set-cookie").unwrap_or_default();
    assert!(cookie.starts_with("mcp_admin=") && cookie.ends_with("; Secure"), "{cookie}");
}

#[test]
fn plain_http_to_the_https_port_gets_a_400_that_says_so_and_the_connection_closes() {
    let proxy = https_proxy();
    let mut plain = TcpStream::connect(proxy.addr()).unwrap();
    plain.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let answer = String::from_utf8_lossy(&read_until_closed(plain, WAIT)).into_owned();
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer:?}");
    assert!(answer.contains("this port speaks HTTPS"), "{answer:?}");
    assert!(answer.ends_with("https:// URL\"}"), "nothing (no TLS alert) after the answer: {answer:?}");
    assert_eq!(proxy.request(&Req::get("/health")).status, 200, "the proxy still serves HTTPS");
}

#[test]
fn a_client_that_trickles_its_tls_handshake_is_dropped_at_the_first_request_timeout() {
    let proxy = ProxyBuilder::new().tls().env("MCP_PROXY_FIRST_REQUEST_TIMEOUT", "1").start();
    let stream = TcpStream::connect(proxy.addr()).unwrap();
    let mut writer = stream.try_clone().unwrap();
    // A record header announcing a 512-byte handshake message, then a byte every 100 ms: each read the
    // server makes gets something, but the handshake never completes.
    let trickle = std::thread::spawn(move || {
        let mut record = vec![0x16, 0x03, 0x01, 0x02, 0x00];
        record.resize(5 + 512, 0);
        for byte in record {
            if writer.write_all(&[byte]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let start = Instant::now();
    read_until_closed(stream, Duration::from_secs(5));
    let took = start.elapsed();
    assert!(took < Duration::from_millis(2500), "dropped only after {took:?}");
    trickle.join().unwrap();
    assert_eq!(proxy.request(&Req::get("/health")).status, 200);
}

#[test]
fn a_request_head_stalled_after_the_handshake_gets_its_408_over_tls() {
    let proxy = ProxyBuilder::new().tls().env("MCP_PROXY_FIRST_REQUEST_TIMEOUT", "1").start();
    let mut conn = proxy.connect();
    let start = Instant::now();
    conn.write_raw(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n").unwrap();
    let response = conn.response();
    assert_eq!(response.status, 408, "{response:?}");
    assert!(start.elapsed() < Duration::from_secs(3), "answered after {:?}", start.elapsed());
}

#[test]
fn a_call_whose_https_client_goes_away_is_cancelled_at_the_backend() {
    // One request in flight per backend: the call has to give its place back before another can run.
    let mut proxy = ProxyBuilder::new().tls().env("MCP_PROXY_MAX_IN_FLIGHT", "1").start();
    proxy.wait_backends_connected(&[]);
    // A 2026-07-28 request (no session: nothing else waits for its answer) from a client that takes
    // plain JSON only, so nothing at all comes back before the answer.
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": { "name": "https-test", "version": "1" },
    });
    let call = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": { "name": "mock__cancellable", "arguments": { "ms": 60_000 }, "_meta": meta } });
    let headers = [
        ("Accept", "application/json"),
        ("MCP-Protocol-Version", "2026-07-28"),
        ("Mcp-Method", "tools/call"),
        ("Mcp-Name", "mock__cancellable"),
    ];
    let mut conn = proxy.connect();
    conn.send(&Req::post("/mcp").headers(&headers).json(&call));
    proxy.wait_for_stderr("[mock] cancellable waiting");
    // Its close_notify comes before the end of the TCP stream: a peek at the socket would see data.
    conn.close_notify();
    drop(conn);
    // The proxy notices the closed connection within its liveness check (5 s).
    proxy.wait_for_stderr("[mock] cancellable cancelled");
    let session = proxy.initialize();
    let echo = proxy.post_mcp(Some(&session), &tool_call(2, "mock__echo", json!({ "text": "still here" })));
    assert_eq!(result_text(&echo.json()), "still here");
}

#[test]
fn sighup_rereads_the_certificate_for_new_connections_and_a_bad_one_leaves_the_old_in_use() {
    let dir = TempDir::named("tls-reload");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let install = |name: &str| {
        std::fs::copy(format!("{TLS_FIXTURES}/{name}.pem"), &cert).unwrap();
        std::fs::copy(format!("{TLS_FIXTURES}/{name}.key"), &key).unwrap();
    };
    install("server");
    let mut proxy =
        ProxyBuilder::new().tls().env("MCP_PROXY_TLS_CERT", cert.to_str().unwrap()).env("MCP_PROXY_TLS_KEY", key.to_str().unwrap()).start();
    let (first, renewed) = (der(Path::new(&format!("{TLS_FIXTURES}/server.pem"))), der(Path::new(&format!("{TLS_FIXTURES}/renewed.pem"))));
    assert_eq!(proxy.connect().peer_certificate(), Some(first));

    install("renewed");
    support::signal(proxy.pid(), libc::SIGHUP);
    proxy.wait_for_stderr("TLS certificate reloaded");
    assert_eq!(proxy.connect().peer_certificate(), Some(renewed.clone()));

    std::fs::write(&key, "not a key").unwrap();
    support::signal(proxy.pid(), libc::SIGHUP);
    proxy.wait_for_stderr("the TLS certificate in use stays");
    assert_eq!(proxy.connect().peer_certificate(), Some(renewed));
}

/// Starts the proxy in HTTP mode with these TLS files; its exit status and stderr.
fn start_with_tls_files(cert: &str, key: &str) -> (std::process::ExitStatus, String) {
    let dir = TempDir::new();
    let config = dir.join("mcp_server.json");
    std::fs::write(&config, r#"{"mcpServers": {}}"#).unwrap();
    let mut command = Command::new(PROXY_BIN);
    clear_proxy_env(&mut command);
    command.args(["--sse", "--port", "0", "--tls-cert", cert, "--tls-key", key, "--config"]).arg(&config);
    let output = command.stdin(Stdio::null()).output().expect("the proxy runs");
    (output.status, String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn a_certificate_file_that_cannot_be_read_stops_the_start_up_naming_it() {
    let (status, stderr) = start_with_tls_files("/nonexistent/cert.pem", &format!("{TLS_FIXTURES}/server.key"));
    assert!(!status.success());
    assert!(stderr.contains("TLS: /nonexistent/cert.pem: cannot read it"), "{stderr}");
}

#[test]
fn a_key_that_is_not_the_certificates_stops_the_start_up_naming_both() {
    let (status, stderr) = start_with_tls_files(&format!("{TLS_FIXTURES}/server.pem"), &format!("{TLS_FIXTURES}/other.key"));
    assert!(!status.success());
    assert!(stderr.contains("other.key: not the private key of the certificate in"), "{stderr}");
    assert!(stderr.contains("server.pem"), "{stderr}");
}

#[test]
fn a_certificate_file_without_a_certificate_stops_the_start_up_naming_it() {
    let key = format!("{TLS_FIXTURES}/server.key");
    let (status, stderr) = start_with_tls_files(&key, &key);
    assert!(!status.success());
    assert!(stderr.contains("server.key: no CERTIFICATE block in it"), "{stderr}");
}
