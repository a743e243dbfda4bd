//! `config::parse` (mcp_server.json) on any text, with an environment where some `${VAR}`s are set and
//! some are not: never panics, and every accepted server is usable (non-empty key, a transport).
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_proxy_server::config::{self, Transport};
use std::path::Path;

fn env(name: &str) -> Option<String> {
    name.len().is_multiple_of(2).then(|| format!("v-{name}"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = config::expand(text, &env);
    let Ok(parsed) = config::parse(text, Path::new("mcp_server.json"), &env) else { return };
    for server in &parsed.servers {
        assert!(!server.key.is_empty());
        let _ = server.prefix();
        match &server.transport {
            Transport::Stdio(s) => {
                let _ = (&s.command, &s.args, &s.env, &s.cwd);
            }
            Transport::Sse(r) | Transport::StreamableHttp(r) => {
                let _ = (&r.url, &r.headers);
            }
        }
        for filter in [&server.filters.tools, &server.filters.prompts, &server.filters.resources] {
            let _ = filter.admits("echo");
        }
    }
    for problem in &parsed.problems {
        assert!(problem.starts_with("mcp_server.json: server '"), "{problem}");
    }
});
