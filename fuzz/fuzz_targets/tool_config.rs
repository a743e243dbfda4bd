//! `tool_config::parse` on any text, and `shorten` on every key: never panics, shortened names are at
//! most 64 bytes, stable, and portable when the input was.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_proxy_server::tool_config::{self, is_portable_name, shorten};
use std::path::Path;

fn check_shorten(name: &str) {
    let short = shorten(name);
    assert!(short.len() <= 64, "{short:?}");
    assert_eq!(short, shorten(name));
    let portable_chars = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if portable_chars {
        assert!(is_portable_name(&short), "{short:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    check_shorten(text);
    let Ok(parsed) = tool_config::parse(text, Path::new("tool_config.json")) else { return };
    for (key, over) in &parsed.tools {
        check_shorten(key);
        if let Some(name) = &over.exposed_name {
            assert!(!name.trim().is_empty());
        }
    }
});
