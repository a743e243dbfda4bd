//! Where a request says it is going (`Host`) and coming from (`Origin`): the checks that keep web pages
//! away from a proxy they can reach only through the visitor's browser.
//!
//! DNS rebinding: a page on `evil.example` makes its name resolve to 127.0.0.1, and the browser then
//! sends the page's requests to us with `Host: evil.example` and `Origin: http://evil.example`, as the
//! page's own. So every route checks `Host` against an allow-list: loopback names, IP literals (an
//! address cannot be rebound, so any literal is safe, whatever address we are bound to), the `--host`
//! name and `MCP_PROXY_ALLOWED_HOSTS`. The port in `Host` is ignored: the name is what a rebinding page
//! cannot fake. Browser requests to the MCP endpoints must come from a loopback or listed origin; to the
//! admin UI, from the admin UI itself (the origin of the request's own `Host`) or a listed origin.

use crate::http::Request;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The host names requests may be addressed to.
pub struct AllowedHosts {
    names: Vec<String>,
    any: bool,
}

impl AllowedHosts {
    /// Loopback names and IP literals, plus `configured` names (`*`: any) and `bound`, the listen
    /// address, when that is a name.
    pub fn new(configured: &[String], bound: &str) -> AllowedHosts {
        let names = configured.iter().map(|n| n.to_ascii_lowercase()).chain([bound.to_ascii_lowercase()]).collect();
        AllowedHosts { names, any: configured.iter().any(|n| n == "*") }
    }

    /// True when the request's `Host` is allowed. A request without one is not from a browser (which
    /// always sends it), and HTTP/1.1 without `Host` was refused as malformed before it got here.
    pub fn allow(&self, req: &Request) -> bool {
        let Some(value) = req.header("host") else { return true };
        self.any || authority(value).is_some_and(|(host, _)| self.allows_name(&host))
    }

    fn allows_name(&self, host: &str) -> bool {
        is_ip_literal(host) || host == "localhost" || host.ends_with(".localhost") || self.names.iter().any(|n| n == host)
    }
}

/// True when a browser request to the MCP endpoints may come from where it says. Requests without
/// `Origin` (not from a browser) are allowed; browser origins must be loopback, or listed in `allowed`
/// (`*` allows any).
pub fn origin_allowed(req: &Request, allowed: &[String]) -> bool {
    let Some(origin) = req.header("origin") else { return true };
    if allowed.iter().any(|a| a == "*" || a.eq_ignore_ascii_case(origin)) {
        return true;
    }
    origin_authority(origin).is_some_and(|(host, _)| matches!(host.as_str(), "localhost" | "127.0.0.1" | "[::1]"))
}

/// True when a browser request to the admin UI comes from the admin UI itself: the `Origin` names the
/// host the request was sent to (and its port, when `Host` has one), or is listed exactly in `allowed`
/// (`*` does not count here: the admin UI is never meant to be driven by other sites). Requests without
/// `Origin` are allowed; the session cookie is `SameSite=Strict` and changes need the CSRF token.
pub fn admin_origin_allowed(req: &Request, allowed: &[String]) -> bool {
    let Some(origin) = req.header("origin") else { return true };
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
        return true;
    }
    let (Some((origin_host, origin_port)), Some((host, port))) = (origin_authority(origin), req.header("host").and_then(authority)) else {
        return false;
    };
    origin_host == host && port.is_none_or(|port| port == origin_port)
}

/// The host (lowercase) and port of an origin, `scheme://host[:port]`; the port defaults by scheme.
fn origin_authority(origin: &str) -> Option<(String, u16)> {
    let (scheme, rest) = origin.split_once("://")?;
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let (host, port) = authority(rest)?;
    Some((host, port.unwrap_or(default_port)))
}

/// The host (lowercase; IPv6 in brackets) and port of `host[:port]`, if it is well-formed: a name of
/// letters, digits, `-`, `_` and `.`, an IPv4 address or a bracketed IPv6 address.
fn authority(text: &str) -> Option<(String, Option<u16>)> {
    let split = if text.starts_with('[') { text.find(']').map(|end| end + 1) } else { text.find(':') };
    let (host, port) = text.split_at(split.unwrap_or(text.len()));
    let port = match port.strip_prefix(':') {
        None if port.is_empty() => None,
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => Some(digits.parse().ok()?),
        _ => return None,
    };
    let host = host.to_ascii_lowercase();
    let name = !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    (name || is_ip_literal(&host)).then_some((host, port))
}

/// An IPv4 address or a bracketed IPv6 address.
fn is_ip_literal(host: &str) -> bool {
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<Ipv6Addr>().is_ok(),
        None => host.parse::<Ipv4Addr>().is_ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse_head;

    fn request(headers: &str) -> Request {
        parse_head(format!("GET /admin/ HTTP/1.1\r\n{headers}\r\n").as_bytes()).expect("a valid head")
    }

    fn host_allowed(hosts: &AllowedHosts, host: &str) -> bool {
        hosts.allow(&request(&format!("Host: {host}\r\n")))
    }

    #[test]
    fn loopback_names_and_ip_literals_are_allowed_with_any_port() {
        let hosts = AllowedHosts::new(&[], "127.0.0.1");
        for host in
            ["localhost", "LOCALHOST:3663", "app.localhost", "127.0.0.1", "127.0.0.1:80", "[::1]:3663", "192.168.1.20:3663", "[fe80::1]"]
        {
            assert!(host_allowed(&hosts, host), "{host}");
        }
    }

    #[test]
    fn other_names_are_refused_unless_listed_or_bound() {
        let hosts = AllowedHosts::new(&[], "0.0.0.0");
        for host in
            ["evil.example", "evil.example:3663", "localhost.evil.example", "localhost.", "127.0.0.1.nip.io", "", ":80", "a b", "[::1"]
        {
            assert!(!host_allowed(&hosts, host), "{host:?}");
        }
        let hosts = AllowedHosts::new(&["Proxy.LAN".into()], "mcp-box");
        assert!(host_allowed(&hosts, "proxy.lan:8080") && host_allowed(&hosts, "MCP-BOX"));
        assert!(!host_allowed(&hosts, "evil.example"));
        assert!(host_allowed(&AllowedHosts::new(&["*".into()], "127.0.0.1"), "anything.example"));
    }

    #[test]
    fn mcp_origins_must_be_loopback_or_listed() {
        let allowed = ["https://app.example".to_owned()];
        for (origin, ok) in [
            ("http://localhost:5173", true),
            ("http://127.0.0.1", true),
            ("http://[::1]:8080", true),
            ("https://app.example", true),
            ("http://evil.example", false),
            ("http://localhost.evil.example", false),
            ("null", false),
        ] {
            assert_eq!(origin_allowed(&request(&format!("Host: h\r\nOrigin: {origin}\r\n")), &allowed), ok, "{origin}");
        }
    }

    #[test]
    fn admin_origins_must_be_the_admin_uis_own() {
        let allowed = ["https://admin.example".to_owned()];
        for (host, origin, ok) in [
            ("127.0.0.1:3663", "http://127.0.0.1:3663", true),
            ("localhost:3663", "http://LOCALHOST:3663", true),
            ("mcp.example", "https://mcp.example", true),
            ("mcp.example:443", "https://mcp.example", true),
            ("127.0.0.1:3663", "https://admin.example", true),
            ("127.0.0.1:3663", "http://127.0.0.1:8000", false),
            ("127.0.0.1:3663", "http://localhost:3663", false),
            ("127.0.0.1:3663", "http://evil.example", false),
            ("127.0.0.1:3663", "null", false),
        ] {
            let req = request(&format!("Host: {host}\r\nOrigin: {origin}\r\n"));
            assert_eq!(admin_origin_allowed(&req, &allowed), ok, "Host {host}, Origin {origin}");
        }
        assert!(admin_origin_allowed(&request("Host: 127.0.0.1\r\n"), &[]), "no Origin: not a browser's cross-site request");
        assert!(!admin_origin_allowed(&request("Host: 127.0.0.1\r\nOrigin: http://evil.example\r\n"), &["*".into()]));
    }
}
