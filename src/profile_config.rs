//! The `profiles` object of `mcp_server.json`: named views of the aggregate, each with the servers,
//! tools, prompts and resources it shows, renames, the API keys and bearer tokens bound to it, and
//! whether it serves its tools through search.
//!
//! Checked here as far as the file alone allows (names, shapes, servers that exist, a credential bound
//! twice); what a profile ends up exposing depends on the backends, and is checked once the catalog is
//! built (`hub/views.rs`). Keys and tokens are secrets: they may be `${VAR}` references, and once bound
//! ([`bind`]) a profile holds only the labels (`key #N`) the HTTP frontend knows requests by.

use crate::config::{expand, type_of, Env, Fields, Filter};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The members a profile may have.
const KNOWN: [&str; 8] = ["servers", "tools", "prompts", "resources", "rename", "keys", "tokens", "toolSearch"];

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Profile {
    /// The key under `profiles`: served at `/mcp/<name>` and `/sse/<name>`, chosen with `--profile`.
    pub name: String,
    /// The servers it shows, by key; `None`: all of them.
    pub servers: Option<Vec<String>>,
    /// Globs on exposed tool and prompt names and resource URIs.
    pub tools: Filter,
    pub prompts: Filter,
    pub resources: Filter,
    /// Exposed tool name to the name this profile shows it under.
    pub rename: BTreeMap<String, String>,
    /// API keys and bearer tokens (secrets) that see this profile and nothing else.
    pub keys: Vec<String>,
    pub tokens: Vec<String>,
    /// The labels of the bound credentials (`key #N`, `token #N`), once [`bind`] has run.
    pub owners: Vec<String>,
    /// Serve search and call meta-tools instead of the tool list.
    pub tool_search: bool,
}

impl Profile {
    /// Whether it shows a server's tools, prompts and resources at all.
    pub fn shows_server(&self, key: &str) -> bool {
        self.servers.as_ref().is_none_or(|servers| servers.iter().any(|s| s == key))
    }

    /// The name a tool is shown under here.
    pub fn tool_name<'a>(&'a self, exposed: &'a str) -> &'a str {
        self.rename.get(exposed).map_or(exposed, String::as_str)
    }
}

/// Whether a profile name can be a path segment and a flag value: 1 to 64 letters, digits, `_`, `-`, `.`.
pub fn is_valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name != "." && name != ".." && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
}

/// Reads the `profiles` member (absent: none); `servers` are the configured server keys. A profile with
/// a problem is left out, and the problem (naming it) returned.
pub fn parse(profiles: Option<&Value>, servers: &[&str], env: Env) -> (Vec<Profile>, Vec<String>) {
    let entries = match profiles {
        None | Some(Value::Null) => return (Vec::new(), Vec::new()),
        Some(Value::Object(entries)) => entries,
        Some(other) => return (Vec::new(), vec![format!("'profiles' must be an object of named profiles, not {}", type_of(other))]),
    };
    let (mut parsed, mut problems) = (Vec::new(), Vec::new());
    for (name, entry) in entries {
        match parse_one(name, entry, servers, env) {
            Ok(profile) => parsed.push(profile),
            Err(problem) => problems.push(format!("profile '{name}': {problem}")),
        }
    }
    problems.extend(bound_twice(&parsed));
    (parsed, problems)
}

fn parse_one(name: &str, entry: &Value, servers: &[&str], env: Env) -> Result<Profile, String> {
    if !is_valid_name(name) {
        return Err("a profile name is 1 to 64 letters, digits, '_', '-' or '.' (it is part of the URL)".into());
    }
    let obj = entry.as_object().ok_or("a profile must be a JSON object")?;
    if let Some(unknown) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(format!("'{unknown}' is not known (expected one of {})", KNOWN.join(", ")));
    }
    let fields = Fields(obj);
    let listed = match obj.get("servers") {
        None | Some(Value::Null) => None,
        Some(_) => Some(fields.string_list("servers")?),
    };
    if let Some(unknown) = listed.iter().flatten().find(|key| !servers.contains(&key.as_str())) {
        return Err(format!("'servers' names '{unknown}', which is not a server in 'mcpServers'"));
    }
    let secrets = |key: &str| fields.string_list(key)?.iter().map(|s| expand(s, env)).collect::<Result<Vec<_>, _>>();
    Ok(Profile {
        name: name.to_owned(),
        servers: listed,
        tools: fields.filter("tools")?,
        prompts: fields.filter("prompts")?,
        resources: fields.filter("resources")?,
        rename: renames(obj)?,
        keys: secrets("keys")?,
        tokens: secrets("tokens")?,
        owners: Vec::new(),
        tool_search: match obj.get("toolSearch") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => return Err(format!("'toolSearch' must be true or false, not {}", type_of(other))),
        },
    })
}

/// `rename`: exposed tool names to new ones, each a valid tool name and none given twice.
fn renames(obj: &Map<String, Value>) -> Result<BTreeMap<String, String>, String> {
    let renames = Fields(obj).string_map("rename")?;
    let mut targets: Vec<&String> = renames.values().collect();
    if let Some(bad) = targets.iter().find(|name| !crate::tool_config::is_portable_name(name)) {
        return Err(format!("'rename' gives '{bad}', which is not a tool name (1 to 64 letters, digits, '_' or '-')"));
    }
    targets.sort();
    if let Some(twice) = targets.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(format!("'rename' gives two tools the name '{}'", twice[0]));
    }
    Ok(renames)
}

/// A key or token bound to two profiles would leave its profile undecided.
fn bound_twice(profiles: &[Profile]) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, a) in profiles.iter().enumerate() {
        for b in &profiles[i + 1..] {
            let shared = a.keys.iter().filter(|k| b.keys.contains(k)).count() + a.tokens.iter().filter(|t| b.tokens.contains(t)).count();
            if shared > 0 {
                problems.push(format!("profiles '{}' and '{}' bind the same key or token: a credential sees one profile", a.name, b.name));
            }
        }
    }
    problems
}

/// The credentials the HTTP frontend accepts (`ALLOWED_KEYS`, `ALLOWED_TOKENS`), which profiles bind.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub keys: Vec<String>,
    pub tokens: Vec<String>,
}

/// Binds the profiles' keys and tokens to the proxy's credentials, setting each profile's `owners`; a
/// secret that is none of them is a problem naming the profile (not the secret).
pub fn bind(profiles: &mut [Profile], credentials: &Credentials) -> Vec<String> {
    let mut problems = Vec::new();
    for profile in profiles.iter_mut() {
        let mut owners = Vec::new();
        for (secrets, known, kind, setting) in
            [(&profile.keys, &credentials.keys, "key", "ALLOWED_KEYS"), (&profile.tokens, &credentials.tokens, "token", "ALLOWED_TOKENS")]
        {
            for (n, secret) in secrets.iter().enumerate() {
                match known.iter().position(|k| k == secret) {
                    Some(index) => owners.push(crate::event::owner_label(kind, index)),
                    None => problems.push(format!("profile '{}': {kind} {} of {} is not in {setting}", profile.name, n + 1, secrets.len())),
                }
            }
        }
        profile.owners = owners;
    }
    problems
}

/// Every secret the profiles hold, for masking in logs.
pub fn secrets(profiles: &[Profile]) -> impl Iterator<Item = String> + '_ {
    profiles.iter().flat_map(|p| p.keys.iter().chain(&p.tokens).cloned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(profiles: Value) -> (Vec<Profile>, Vec<String>) {
        parse(Some(&profiles), &["time", "everything"], &|name| (name == "SECRET").then(|| "s3cret".to_owned()))
    }

    fn one(entry: Value) -> Result<Profile, String> {
        let (mut profiles, mut problems) = read(json!({ "p": entry }));
        match (profiles.pop(), problems.pop()) {
            (Some(profile), None) => Ok(profile),
            (_, Some(problem)) => Err(problem),
            (None, None) => Err("nothing".into()),
        }
    }

    #[test]
    fn the_issues_example_is_read() {
        let (profiles, problems) = read(json!({
            "research": { "servers": ["time", "everything"], "tools": { "allow": ["time__*", "everything__echo"] }, "keys": ["k-research"] },
            "lean": { "toolSearch": true }
        }));
        assert!(problems.is_empty(), "{problems:?}");
        let research = profiles.iter().find(|p| p.name == "research").unwrap();
        assert_eq!(research.servers.as_deref(), Some(&["time".to_owned(), "everything".to_owned()][..]));
        assert!(research.tools.admits("time__now") && !research.tools.admits("everything__add"));
        assert_eq!(research.keys, ["k-research"]);
        let lean = profiles.iter().find(|p| p.name == "lean").unwrap();
        assert!(lean.tool_search && lean.servers.is_none() && lean.shows_server("anything"));
    }

    #[test]
    fn a_profile_naming_an_unknown_server_is_a_problem_naming_both() {
        let problem = one(json!({ "servers": ["tme"] })).unwrap_err();
        assert!(problem.contains("profile 'p'") && problem.contains("'tme'"), "{problem}");
    }

    #[test]
    fn unknown_members_and_bad_names_are_problems() {
        assert!(one(json!({ "tool": {} })).unwrap_err().contains("'tool' is not known"));
        let (_, problems) = read(json!({ "a/b": {} }));
        assert!(problems[0].contains("profile 'a/b'"), "{problems:?}");
        assert!(!is_valid_name("..") && !is_valid_name("") && is_valid_name("team-a.v2"));
    }

    #[test]
    fn renames_must_be_tool_names_and_distinct() {
        assert_eq!(one(json!({ "rename": { "time__get_current_time": "now" } })).unwrap().tool_name("time__get_current_time"), "now");
        assert!(one(json!({ "rename": { "a": "bad name" } })).unwrap_err().contains("not a tool name"));
        assert!(one(json!({ "rename": { "a": "x", "b": "x" } })).unwrap_err().contains("two tools the name 'x'"));
    }

    #[test]
    fn a_key_bound_to_two_profiles_is_a_problem() {
        let (_, problems) = read(json!({ "a": { "keys": ["k"] }, "b": { "keys": ["k"] } }));
        assert!(problems.iter().any(|p| p.contains("'a' and 'b'")), "{problems:?}");
    }

    #[test]
    fn keys_may_come_from_the_environment_and_are_bound_to_credential_labels() {
        let mut profiles = vec![one(json!({ "keys": ["${SECRET}"], "tokens": ["t"] })).unwrap()];
        assert_eq!(profiles[0].keys, ["s3cret"]);
        let credentials = Credentials { keys: vec!["other".into(), "s3cret".into()], tokens: vec!["t".into()] };
        assert!(bind(&mut profiles, &credentials).is_empty());
        assert_eq!(profiles[0].owners, ["key #2", "token #1"]);
    }

    #[test]
    fn a_secret_that_is_no_credential_is_a_problem_that_does_not_show_it() {
        let mut profiles = vec![one(json!({ "keys": ["k-unknown"] })).unwrap()];
        let problems = bind(&mut profiles, &Credentials { keys: vec!["k".into()], tokens: Vec::new() });
        assert_eq!(problems, ["profile 'p': key 1 of 1 is not in ALLOWED_KEYS"]);
    }
}
