//! Reading a `WWW-Authenticate` header (RFC 9110 section 11.6.1) for what the MCP authorization spec
//! needs from a protected server's 401 or 403: the `Bearer` challenge's `resource_metadata`, `scope`
//! and `error`.
//!
//! The grammar is awkward (commas separate both challenges and their parameters, values may be quoted
//! with escapes, `token68` values end in `=`), and the header comes from a server the proxy does not
//! trust: this reads what it can and never fails, and a fuzz target feeds it anything.

/// One challenge: its scheme and its parameters in order (names lowercased, values unquoted).
#[derive(Debug, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// The challenges of a header value, in order.
pub fn parse(header: &str) -> Vec<Challenge> {
    let mut challenges: Vec<Challenge> = Vec::new();
    let mut rest = header;
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_ascii_whitespace());
        if rest.is_empty() {
            return challenges;
        }
        let (word, after) = split_token(rest);
        if word.is_empty() {
            // Not a token (a stray quote or '='): skip the character.
            rest = &rest[rest.chars().next().map_or(1, char::len_utf8)..];
            continue;
        }
        let after_spaces = after.trim_start_matches([' ', '\t']);
        match after_spaces.strip_prefix('=') {
            Some(value) if !value.starts_with('=') => {
                let (value, remaining) = read_value(value.trim_start_matches([' ', '\t']));
                if let Some(current) = challenges.last_mut() {
                    current.params.push((word.to_ascii_lowercase(), value));
                }
                rest = remaining;
            }
            // A token68 (`Basic dXNlcg==`) or a scheme alone.
            Some(_) => rest = after_spaces.trim_start_matches('='),
            None => {
                challenges.push(Challenge { scheme: word.to_owned(), params: Vec::new() });
                rest = after;
            }
        }
    }
}

/// The `Bearer` challenge of a header value, if it has one.
pub fn bearer(header: &str) -> Option<Challenge> {
    parse(header).into_iter().find(|c| c.scheme.eq_ignore_ascii_case("bearer"))
}

/// A token (RFC 9110 `tchar`s, plus `/` and `+` so a token68 reads as one word) and what follows it.
fn split_token(text: &str) -> (&str, &str) {
    let end = text.find(|c: char| !(c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~/".contains(c))).unwrap_or(text.len());
    text.split_at(end)
}

/// A parameter value, quoted (with `\` escapes) or a token, and the text after it.
fn read_value(text: &str) -> (String, &str) {
    let Some(quoted) = text.strip_prefix('"') else {
        let end = text.find([',', ' ', '\t']).unwrap_or(text.len());
        return (text[..end].to_owned(), &text[end..]);
    };
    let mut value = String::new();
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (value, &quoted[i + 1..]),
            '\\' => value.extend(chars.next().map(|(_, escaped)| escaped)),
            c => value.push(c),
        }
    }
    (value, "") // Unterminated: what there is.
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bearer_challenge_gives_its_resource_metadata_and_scope() {
        let header = r#"Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp", scope="files:read files:write""#;
        let bearer = bearer(header).unwrap();
        assert_eq!(bearer.param("resource_metadata"), Some("https://mcp.example.com/.well-known/oauth-protected-resource/mcp"));
        assert_eq!(bearer.param("scope"), Some("files:read files:write"));
    }

    #[test]
    fn several_challenges_are_told_apart() {
        let header = r#"Basic realm="x", Bearer error=invalid_token, error_description="a \"quoted\" word", ApiKey header="X-Api-Key""#;
        let challenges = parse(header);
        let schemes: Vec<&str> = challenges.iter().map(|c| c.scheme.as_str()).collect();
        assert_eq!(schemes, ["Basic", "Bearer", "ApiKey"]);
        assert_eq!(challenges[1].param("error"), Some("invalid_token"));
        assert_eq!(challenges[1].param("error_description"), Some(r#"a "quoted" word"#));
    }

    #[test]
    fn a_token68_is_not_taken_for_a_parameter() {
        let challenges = parse("Negotiate dXNlcjpwYXNz==, Bearer scope=\"a\"");
        assert_eq!(challenges.len(), 2, "{challenges:?}");
        assert_eq!(challenges[1].param("scope"), Some("a"));
    }

    #[test]
    fn parameter_names_are_case_insensitive_and_the_scheme_too() {
        let bearer = bearer("bearer Resource_Metadata = \"u\"").unwrap();
        assert_eq!(bearer.param("resource_metadata"), Some("u"));
    }

    #[test]
    fn garbage_gives_what_can_be_read_and_never_fails() {
        for header in ["", "=", "\"", "Bearer \"", "Bearer scope=\"unterminated", ",,,", "Bearer =x", "é Bearer a=b", "Bearer a=\"\\"] {
            let _ = parse(header);
        }
        assert_eq!(bearer("Bearer scope=\"unterminated").unwrap().param("scope"), Some("unterminated"));
    }
}
