//! Resource URIs in one spelling, so that what a filter denies cannot be read by spelling it differently.
//!
//! Servers normalise the URIs they are asked for (the official SDKs parse them as URLs), so a deny glob
//! matched against the raw string is bypassed by `DEMO://…`, `…/other/../secret/…`, `%73ecret` or a
//! leading space. [`normalize`] applies the equivalences of RFC 3986 §6.2.2 that such parsers apply:
//! surrounding whitespace dropped, the scheme and the host lower-cased, percent-encoded unreserved
//! characters decoded (other escapes upper-cased), and dot segments removed. The proxy routes, filters
//! and forwards the result; a URI it cannot bring to one spelling is refused rather than guessed at.
//! Pure, no I/O.

use std::fmt;

/// Why a URI was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UriError {
    Empty,
    /// No `scheme:` at the start.
    NoScheme,
    /// A character no URI contains (a control character, inner whitespace, a backslash).
    BadCharacter(char),
    /// A `%` not followed by two hexadecimal digits.
    BadEscape,
    /// `.` or `..` segments in a path that is not hierarchical, which have no defined meaning there.
    RelativeSegments,
}

impl fmt::Display for UriError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UriError::Empty => f.write_str("the URI is empty"),
            UriError::NoScheme => f.write_str("the URI has no scheme"),
            UriError::BadCharacter(c) => write!(f, "the URI contains {c:?}, which no URI may contain"),
            UriError::BadEscape => f.write_str("the URI has a '%' that is not followed by two hexadecimal digits"),
            UriError::RelativeSegments => f.write_str("the URI has '.' or '..' segments in a path without a root"),
        }
    }
}

impl std::error::Error for UriError {}

/// The one spelling of a URI that the proxy routes, filters and forwards.
pub fn normalize(uri: &str) -> Result<String, UriError> {
    let uri = uri.trim();
    if uri.is_empty() {
        return Err(UriError::Empty);
    }
    if let Some(c) = uri.chars().find(|c| c.is_control() || c.is_whitespace() || *c == '\\') {
        return Err(UriError::BadCharacter(c));
    }
    let uri = decode_unreserved(uri)?;
    let (scheme, rest) = split_scheme(&uri).ok_or(UriError::NoScheme)?;
    // The query and fragment are opaque: only the part before them is a path.
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let (hier, tail) = rest.split_at(end);
    let (authority, path) = match hier.strip_prefix("//") {
        Some(after) => {
            let split = after.find('/').unwrap_or(after.len());
            (Some(lower_host(&after[..split])), &after[split..])
        }
        None => (None, hier),
    };
    let path = if path.starts_with('/') || authority.is_some() {
        remove_dot_segments(path)
    } else if path.split('/').any(|s| s == "." || s == "..") {
        return Err(UriError::RelativeSegments);
    } else {
        path.to_owned()
    };
    let authority = authority.map(|a| format!("//{a}")).unwrap_or_default();
    Ok(format!("{}:{authority}{path}{tail}", scheme.to_ascii_lowercase()))
}

/// `scheme` and what follows its `:`, when the URI starts with a valid scheme (RFC 3986 §3.1).
fn split_scheme(uri: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = uri.split_once(':')?;
    let mut chars = scheme.chars();
    let valid =
        chars.next().is_some_and(|c| c.is_ascii_alphabetic()) && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some((scheme, rest))
}

/// The authority with its host lower-cased; user information keeps its case.
fn lower_host(authority: &str) -> String {
    match authority.rsplit_once('@') {
        Some((user, host)) => format!("{user}@{}", host.to_ascii_lowercase()),
        None => authority.to_ascii_lowercase(),
    }
}

/// Decodes `%XX` escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) and upper-cases the others.
fn decode_unreserved(uri: &str) -> Result<String, UriError> {
    let mut out = String::with_capacity(uri.len());
    let mut rest = uri;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let hex = rest.get(at + 1..at + 3).ok_or(UriError::BadEscape)?;
        let byte = u8::from_str_radix(hex, 16).map_err(|_| UriError::BadEscape)?;
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(UriError::BadEscape); // from_str_radix takes a leading '+'.
        }
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push_str(&hex.to_ascii_uppercase());
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// RFC 3986 §5.2.4 on a path: `.` segments dropped, `..` takes the segment before it away (never above
/// the root).
fn remove_dot_segments(path: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len() - 1;
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            "." | ".." => {
                if *segment == ".." && kept.len() > 1 {
                    kept.pop();
                }
                // A path that ends in a dot segment names a directory: it keeps its trailing slash.
                if i == last {
                    kept.push("");
                }
            }
            other => kept.push(other),
        }
    }
    kept.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(uri: &str) -> String {
        normalize(uri).unwrap_or_else(|e| panic!("{uri:?}: {e}"))
    }

    #[test]
    fn a_uri_already_in_its_one_spelling_is_unchanged() {
        for uri in ["demo://resource/static/document/a.md", "file:///tmp/x%20y?q=A#Frag", "urn:isbn:0451450523", "https://h:8080/"] {
            assert_eq!(n(uri), uri);
        }
    }

    #[test]
    fn surrounding_whitespace_is_dropped() {
        assert_eq!(n(" \tdemo://r/a\n"), "demo://r/a");
    }

    #[test]
    fn scheme_and_host_are_lower_cased_and_the_path_keeps_its_case() {
        assert_eq!(n("DEMO://Resource.Example/Static/A"), "demo://resource.example/Static/A");
    }

    #[test]
    fn user_information_keeps_its_case() {
        assert_eq!(n("ftp://Alice@HOST/x"), "ftp://Alice@host/x");
    }

    #[test]
    fn dot_segments_are_removed_and_never_climb_above_the_root() {
        assert_eq!(n("demo://r/dynamic/../static/./a"), "demo://r/static/a");
        assert_eq!(n("demo://r/../../static/a"), "demo://r/static/a");
        assert_eq!(n("file:///a/b/.."), "file:///a/");
    }

    #[test]
    fn escaped_unreserved_characters_are_decoded_before_dot_segments() {
        assert_eq!(n("demo://r/%73tatic/%41"), "demo://r/static/A");
        assert_eq!(n("demo://r/dynamic/%2e%2E/static/a"), "demo://r/static/a");
    }

    #[test]
    fn other_escapes_are_kept_and_upper_cased() {
        assert_eq!(n("demo://r/a%2fb%3a"), "demo://r/a%2Fb%3A");
    }

    #[test]
    fn the_query_and_fragment_are_not_treated_as_a_path() {
        assert_eq!(n("demo://r/a?x=/../b#/./c"), "demo://r/a?x=/../b#/./c");
    }

    #[test]
    fn a_uri_without_a_scheme_is_refused() {
        assert_eq!(normalize("/static/a"), Err(UriError::NoScheme));
        assert_eq!(normalize("1x://a"), Err(UriError::NoScheme));
        assert_eq!(normalize("   "), Err(UriError::Empty));
    }

    #[test]
    fn control_characters_inner_whitespace_and_backslashes_are_refused() {
        assert_eq!(normalize("demo://r/a\u{0}b"), Err(UriError::BadCharacter('\u{0}')));
        assert_eq!(normalize("demo://r/a b"), Err(UriError::BadCharacter(' ')));
        assert_eq!(normalize("demo://r/dynamic\\..\\static"), Err(UriError::BadCharacter('\\')));
    }

    #[test]
    fn a_broken_escape_is_refused() {
        for uri in ["demo://r/%", "demo://r/%4", "demo://r/%zz", "demo://r/%+1"] {
            assert_eq!(normalize(uri), Err(UriError::BadEscape), "{uri}");
        }
    }

    #[test]
    fn dot_segments_in_a_path_without_a_root_are_refused() {
        assert_eq!(normalize("demo:static/../secret"), Err(UriError::RelativeSegments));
    }
}
