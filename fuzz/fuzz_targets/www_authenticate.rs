//! `www_authenticate::parse` on any text (a hostile server's 401 header): never panics, every challenge
//! has a non-empty scheme and lowercase parameter names, and a quoted value round-trips: a header
//! built from parsed parameters parses back to them.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_proxy_server::www_authenticate::{bearer, parse};

fn quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let challenges = parse(text);
    for challenge in &challenges {
        assert!(!challenge.scheme.is_empty());
        for (name, _) in &challenge.params {
            assert_eq!(name, &name.to_ascii_lowercase());
        }
    }
    let _ = bearer(text);
    // Round trip: a Bearer challenge whose parameter value is the input, quoted.
    let header = format!("Bearer resource_metadata={}, scope=\"a b\"", quoted(text));
    let parsed = bearer(&header).expect("a Bearer challenge");
    assert_eq!(parsed.param("resource_metadata"), Some(text), "{header:?}");
    assert_eq!(parsed.param("scope"), Some("a b"));
});
