//! `Request::form_fields` (query strings, form bodies) and `query_param` on any text, plus a round trip:
//! fields percent-encoded and joined decode back to themselves.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_proxy_server::http::Request;

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else if b == b' ' {
            out.push('+');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let fields = Request::form_fields(text);
    assert_eq!(fields.len(), text.split('&').filter(|p| !p.is_empty()).count());
    if !text.contains(['%', '+']) {
        for ((k, v), pair) in fields.iter().zip(text.split('&').filter(|p| !p.is_empty())) {
            let (pk, pv) = pair.split_once('=').unwrap_or((pair, ""));
            assert_eq!((k.as_str(), v.as_str()), (pk, pv));
        }
    }
    // Round trip: treat the input as `key\0value\0key\0value...`.
    let parts: Vec<&str> = text.split('\0').collect();
    let pairs: Vec<(&str, &str)> = parts.chunks(2).map(|c| (c[0], c.get(1).copied().unwrap_or(""))).collect();
    let query = pairs.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&");
    let decoded = Request::form_fields(&query);
    let want: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    assert_eq!(decoded, want, "query {query:?}");
});
