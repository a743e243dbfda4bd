//! `mcp_server.json`: the Claude Desktop style `{"mcpServers": {...}}` map the original proxy reads.
//!
//! The file is read as plain JSON and each server entry is checked on its own, so that one broken entry is
//! reported (naming the file, the server key and the problem) and skipped while the others still start. Only a
//! file that cannot be read at all, is not JSON, has no `mcpServers` object or has a profile that cannot be
//! used (`profile_config.rs`) stops start-up. Keys we do not
//! know are kept in [`ServerConfig::extra`] so a later save never drops them. `${VAR}` in `url`, `headers`,
//! `apiKey`, `bearerToken`, `args` and `env` is replaced by the variable's value from the environment.

use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The servers and profiles of one config file, in key order, and the server entries that had to be
/// skipped.
#[derive(Debug)]
pub struct ProxyConfig {
    pub servers: Vec<ServerConfig>,
    /// The named views of the aggregate (`profiles`), by name.
    pub profiles: Vec<crate::profile_config::Profile>,
    /// One line per entry that could not be used: `file: server 'key': problem`.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// The key under `mcpServers`: unique, used in tool names and install folders.
    pub key: String,
    /// Display name (admin UI only).
    pub name: Option<String>,
    pub active: bool,
    /// Prefix used instead of the key in exposed names; `Some("")` exposes names unprefixed.
    pub namespace: Option<String>,
    pub transport: Transport,
    /// Per-request timeout for this server, overriding the global default.
    pub timeout: Option<std::time::Duration>,
    /// Which protocol era to speak with it (`"protocol"`): detected unless pinned.
    pub protocol: Protocol,
    /// One backend for every client, or one per client session (`"isolation"`).
    pub isolation: Isolation,
    pub install_directory: Option<String>,
    pub install_commands: Vec<String>,
    /// Which of the backend's tools, prompts and resources are exposed at all.
    pub filters: Filters,
    /// Keys this version does not know, kept as they were.
    pub extra: Map<String, Value>,
}

/// The protocol era a server is spoken to in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Protocol {
    /// Probe: 2026-07-28 when the server answers `server/discover`, else the handshake.
    #[default]
    Auto,
    /// 2026-07-28 only.
    Modern,
    /// The `initialize` handshake only (2024-11-05 to 2025-11-25).
    Legacy,
}

/// Whether clients share a server's one connection or each client session gets its own instance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Isolation {
    /// One connection (one child process) for every client: right for stateless servers.
    #[default]
    Shared,
    /// An instance per client session (`"isolation": "session"`), for servers that keep state per
    /// client or ask clients questions (sampling, elicitation, roots).
    Session {
        /// Instances running at once at most (`maxInstances`).
        max_instances: usize,
        /// An instance with nothing to do for this long is stopped (`idleTimeout`, seconds).
        idle_timeout: std::time::Duration,
    },
}

/// Instances of one isolated server at once, unless `maxInstances` says otherwise.
pub const DEFAULT_MAX_INSTANCES: usize = 16;
/// An isolated instance idle this long is stopped, unless `idleTimeout` says otherwise.
pub const DEFAULT_INSTANCE_IDLE: std::time::Duration = std::time::Duration::from_secs(600);

/// `{"allow": [globs], "deny": [globs]}` per kind; matched against the backend's own tool and prompt
/// names and resource URIs. Deny wins; an empty allow list allows everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filters {
    pub tools: Filter,
    pub prompts: Filter,
    pub resources: Filter,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

impl Filter {
    pub fn admits(&self, name: &str) -> bool {
        let any = |globs: &[String]| globs.iter().any(|g| glob_match(g, name));
        (self.allow.is_empty() || any(&self.allow)) && !any(&self.deny)
    }
}

/// `*` matches any run of characters, `?` any one; everything else matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // Iterative matcher with one backtrack point for the last `*`: linear in practice, no recursion.
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        // `*` is a wildcard first, even against a `*` in the text.
        if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[derive(Debug, Clone, PartialEq)]
pub enum Transport {
    Stdio(StdioConfig),
    /// Legacy HTTP+SSE (protocol 2024-11-05).
    Sse(RemoteConfig),
    /// Streamable HTTP (2025-03-26 and later).
    StreamableHttp(RemoteConfig),
}

#[derive(Debug, Clone, PartialEq)]
pub struct StdioConfig {
    pub command: String,
    pub args: Vec<String>,
    /// Merged over the proxy's own environment.
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RemoteConfig {
    pub url: String,
    /// The `${VAR}` names the url was written with (their values are secrets).
    pub url_variables: Vec<String>,
    pub api_key: Option<String>,
    pub bearer_token: Option<String>,
    pub headers: BTreeMap<String, String>,
    /// `"auth": "oauth"` or an `"oauth"` object: log in to this server with OAuth (`login SERVER`).
    /// Without it, a server that answers 401 is found to need a login all the same.
    pub oauth: Option<OAuthClient>,
    /// Where the OAuth tokens of every remote server are kept: `oauth_tokens.json` beside the config.
    pub tokens_file: PathBuf,
}

impl RemoteConfig {
    /// True unless the config gives the server a static bearer token or `Authorization` header: then
    /// its tokens come from the OAuth token store (after `login`).
    pub fn uses_oauth(&self) -> bool {
        self.bearer_token.is_none() && !self.headers.keys().any(|name| name.eq_ignore_ascii_case("authorization"))
    }

    /// A server at `url` with nothing else configured (and no token store that exists).
    #[cfg(test)]
    pub fn for_url(url: String) -> RemoteConfig {
        RemoteConfig {
            url,
            url_variables: Vec::new(),
            api_key: None,
            bearer_token: None,
            headers: BTreeMap::new(),
            oauth: None,
            tokens_file: PathBuf::from("/nonexistent/oauth_tokens.json"),
        }
    }
}

/// `"oauth": {"clientId", "clientSecret", "scope"}`: a client registered at the authorization server
/// by hand, for servers that take no dynamic registration, and the scope to ask for when the server
/// does not say.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OAuthClient {
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub scope: Option<String>,
}

impl Transport {
    pub fn type_name(&self) -> &'static str {
        match self {
            Transport::Stdio(_) => "stdio",
            Transport::Sse(_) => "sse",
            Transport::StreamableHttp(_) => "http",
        }
    }
}

impl ServerConfig {
    /// Values that must not be shown: a remote server's `apiKey`, `bearerToken` and header values, and
    /// what `${VAR}` put into its `url` (a token in a query string, say).
    pub fn secrets(&self, env: Env) -> Vec<String> {
        let (Transport::Sse(remote) | Transport::StreamableHttp(remote)) = &self.transport else { return Vec::new() };
        let client_secret = remote.oauth.as_ref().and_then(|o| o.client_secret.as_ref());
        let mut secrets: Vec<String> = remote.api_key.iter().chain(&remote.bearer_token).chain(client_secret).cloned().collect();
        secrets.extend(remote.headers.values().cloned());
        secrets.extend(remote.url_variables.iter().filter_map(|name| env(name)));
        secrets
    }

    /// The prefix of this server's exposed names: its `namespace` if set, else its key.
    pub fn prefix(&self) -> &str {
        self.namespace.as_deref().unwrap_or(&self.key)
    }
}

/// Where OAuth tokens are kept, beside the server config (`oauth::store`).
pub const OAUTH_TOKENS_FILE: &str = "oauth_tokens.json";

/// A config file that cannot be used at all.
#[derive(Debug)]
pub enum ConfigError {
    Read { path: PathBuf, source: std::io::Error },
    Syntax { path: PathBuf, source: serde_json::Error },
    Shape { path: PathBuf, problem: String },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, source } => write!(f, "{}: cannot read: {source}", path.display()),
            ConfigError::Syntax { path, source } => write!(f, "{}: not valid JSON: {source}", path.display()),
            ConfigError::Shape { path, problem } => write!(f, "{}: {problem}", path.display()),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Looks up an environment variable (the process environment, or a map in tests).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Reads and checks a config file.
pub fn load(path: &Path, env: Env) -> Result<ProxyConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
    parse(&text, path, env)
}

/// Checks the text of a config file; `path` is only used in messages.
pub fn parse(text: &str, path: &Path, env: Env) -> Result<ProxyConfig, ConfigError> {
    let root: Value = serde_json::from_str(text).map_err(|source| ConfigError::Syntax { path: path.into(), source })?;
    let shape = |problem: &str| ConfigError::Shape { path: path.into(), problem: problem.into() };
    let servers = match root.as_object().map(|o| o.get("mcpServers")) {
        None => return Err(shape("the file must hold a JSON object")),
        Some(None) => return Err(shape("missing key 'mcpServers' (an object of server entries)")),
        Some(Some(Value::Object(servers))) => servers,
        Some(Some(_)) => return Err(shape("'mcpServers' must be an object of server entries")),
    };
    let mut config = ProxyConfig { servers: Vec::new(), profiles: Vec::new(), problems: Vec::new() };
    for (key, entry) in servers {
        match parse_server(key, entry, env, &path.with_file_name(OAUTH_TOKENS_FILE)) {
            Ok(server) => config.servers.push(server),
            Err(problem) => config.problems.push(format!("{}: server '{key}': {problem}", path.display())),
        }
    }
    // A profile that cannot be used stops everything: skipped, its keys would see every profile.
    let keys: Vec<&str> = servers.keys().map(String::as_str).collect();
    let (profiles, problems) = crate::profile_config::parse(root.get("profiles"), &keys, env);
    if !problems.is_empty() {
        return Err(shape(&problems.join("; ")));
    }
    config.profiles = profiles;
    Ok(config)
}

const KNOWN_KEYS: &[&str] = &[
    "type",
    "transport",
    "name",
    "active",
    "namespace",
    "command",
    "args",
    "env",
    "cwd",
    "url",
    "apiKey",
    "bearerToken",
    "headers",
    "auth",
    "oauth",
    "timeout",
    "protocol",
    "isolation",
    "maxInstances",
    "idleTimeout",
    "installDirectory",
    "installCommands",
    "tools",
    "prompts",
    "resources",
];

fn parse_server(key: &str, entry: &Value, env: Env, tokens_file: &Path) -> Result<ServerConfig, String> {
    let obj = entry.as_object().ok_or("the entry must be a JSON object")?;
    if key.is_empty() {
        return Err("the server key must not be empty".into());
    }
    let fields = Fields(obj);
    let extra = obj.iter().filter(|(k, _)| !KNOWN_KEYS.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone()));
    let transport = expand_transport(parse_transport(&fields, tokens_file)?, env)?;
    let protocol = fields.protocol()?;
    if protocol == Protocol::Modern && matches!(transport, Transport::Sse(_)) {
        return Err("'protocol': \"modern\" needs a stdio or Streamable HTTP server; legacy SSE speaks only the handshake era".into());
    }
    Ok(ServerConfig {
        key: key.to_owned(),
        name: fields.string("name")?,
        active: fields.active()?,
        namespace: fields.string("namespace")?,
        transport,
        timeout: fields.seconds("timeout")?,
        protocol,
        isolation: fields.isolation()?,
        install_directory: fields.string("installDirectory")?,
        install_commands: fields.string_list("installCommands")?,
        filters: Filters { tools: fields.filter("tools")?, prompts: fields.filter("prompts")?, resources: fields.filter("resources")? },
        extra: extra.collect(),
    })
}

fn parse_transport(fields: &Fields, tokens_file: &Path) -> Result<Transport, String> {
    let command = fields.string("command")?;
    let url = fields.string("url")?;
    // `transport` is what some other clients write for the same thing.
    let declared = match fields.string("type")? {
        Some(t) => Some(t),
        None => fields.string("transport")?,
    };
    let kind = match declared.as_deref() {
        Some(t) => t.to_owned(),
        None => match (&command, &url) {
            (Some(_), None) => "stdio".into(),
            (None, Some(_)) => "sse".into(),
            (Some(_), Some(_)) => return Err("has both 'command' and 'url': set 'type' to say which".into()),
            (None, None) => return Err("needs 'command' (stdio) or 'url' (sse/http)".into()),
        },
    };
    match kind.as_str() {
        "stdio" => Ok(Transport::Stdio(StdioConfig {
            command: command.ok_or("type 'stdio' needs 'command'")?,
            args: fields.string_list("args")?,
            env: fields.string_map("env")?,
            cwd: fields.string("cwd")?.map(PathBuf::from),
        })),
        "sse" => Ok(Transport::Sse(remote(fields, url, tokens_file)?)),
        "http" | "streamable-http" | "streamableHttp" | "streamable_http" => {
            Ok(Transport::StreamableHttp(remote(fields, url, tokens_file)?))
        }
        other => Err(format!("unknown type '{other}' (expected stdio, sse, http or streamable-http)")),
    }
}

fn remote(fields: &Fields, url: Option<String>, tokens_file: &Path) -> Result<RemoteConfig, String> {
    let bearer_token = fields.string("bearerToken")?;
    let oauth = oauth_client(fields)?;
    if oauth.is_some() && bearer_token.is_some() {
        return Err("has both 'bearerToken' and OAuth ('auth'/'oauth'): a server takes one or the other".into());
    }
    Ok(RemoteConfig {
        url_variables: Vec::new(),
        url: url.ok_or("a remote server needs 'url'")?,
        api_key: fields.string("apiKey")?,
        bearer_token,
        headers: fields.string_map("headers")?,
        oauth,
        tokens_file: tokens_file.to_path_buf(),
    })
}

/// `"auth": "oauth"` and `"oauth": {...}`.
fn oauth_client(fields: &Fields) -> Result<Option<OAuthClient>, String> {
    let declared = match fields.string("auth")?.as_deref() {
        None => false,
        Some("oauth") => true,
        Some(other) => {
            return Err(format!("'auth' must be \"oauth\", not '{other}' (static credentials go in 'bearerToken' or 'headers')"))
        }
    };
    let client = match fields.0.get("oauth") {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => {
            if let Some(unknown) = map.keys().find(|k| !["clientId", "clientSecret", "scope"].contains(&k.as_str())) {
                return Err(format!("'oauth.{unknown}' is not a setting (expected clientId, clientSecret, scope)"));
            }
            let oauth = Fields(map);
            let client = OAuthClient {
                client_id: oauth.string("clientId")?,
                client_secret: oauth.string("clientSecret")?,
                scope: oauth.string("scope")?,
            };
            if client.client_secret.is_some() && client.client_id.is_none() {
                return Err("'oauth.clientSecret' needs 'oauth.clientId'".into());
            }
            Some(client)
        }
        Some(other) => return Err(format!("'oauth' must be an object, not {}", type_of(other))),
    };
    Ok(client.or(declared.then(OAuthClient::default)))
}

fn expand_transport(transport: Transport, env: Env) -> Result<Transport, String> {
    let all = |items: Vec<String>| items.iter().map(|s| expand(s, env)).collect::<Result<Vec<_>, _>>();
    let values = |map: BTreeMap<String, String>| {
        map.into_iter().map(|(k, v)| expand(&v, env).map(|v| (k, v))).collect::<Result<BTreeMap<_, _>, _>>()
    };
    let optional = |value: Option<String>| value.map(|v| expand(&v, env)).transpose();
    let remote = |r: RemoteConfig| -> Result<RemoteConfig, String> {
        Ok(RemoteConfig {
            url_variables: variables(&r.url),
            url: expand(&r.url, env)?,
            api_key: optional(r.api_key)?,
            bearer_token: optional(r.bearer_token)?,
            headers: values(r.headers)?,
            oauth: r.oauth.map(|o| Ok::<_, String>(OAuthClient { client_secret: optional(o.client_secret)?, ..o })).transpose()?,
            tokens_file: r.tokens_file,
        })
    };
    Ok(match transport {
        Transport::Stdio(s) => Transport::Stdio(StdioConfig { args: all(s.args)?, env: values(s.env)?, ..s }),
        Transport::Sse(r) => Transport::Sse(remote(r)?),
        Transport::StreamableHttp(r) => Transport::StreamableHttp(remote(r)?),
    })
}

/// The names of the `${NAME}` references in a text.
fn variables(text: &str) -> Vec<String> {
    text.split("${").skip(1).filter_map(|rest| rest.split_once('}').map(|(name, _)| name.to_owned())).collect()
}

/// Replaces each `${NAME}` with the variable's value. An unset variable is an error, so a missing
/// secret is reported at start-up instead of being sent as an empty header.
pub fn expand(text: &str, env: Env) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let name = &after[..end];
        match env(name) {
            Some(value) => out.push_str(&value),
            None => return Err(format!("environment variable '{name}' (in \"{text}\") is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Typed reads of one entry's members, each failing with a message that names the key.
pub(crate) struct Fields<'a>(pub &'a Map<String, Value>);

impl Fields<'_> {
    pub(crate) fn string(&self, key: &str) -> Result<Option<String>, String> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!("'{key}' must be a string, not {}", type_of(other))),
        }
    }

    pub(crate) fn string_list(&self, key: &str) -> Result<Vec<String>, String> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => {
                items.iter().map(|v| v.as_str().map(str::to_owned).ok_or_else(|| format!("'{key}' must hold only strings"))).collect()
            }
            Some(other) => Err(format!("'{key}' must be a list of strings, not {}", type_of(other))),
        }
    }

    /// Objects of strings; numbers and booleans are accepted and written as JSON would print them,
    /// since hand-written `env` blocks often hold `"PORT": 8080`.
    pub(crate) fn string_map(&self, key: &str) -> Result<BTreeMap<String, String>, String> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(BTreeMap::new()),
            Some(Value::Object(map)) => map
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    Value::Number(_) | Value::Bool(_) => Ok((k.clone(), v.to_string())),
                    other => Err(format!("'{key}.{k}' must be a string, not {}", type_of(other))),
                })
                .collect(),
            Some(other) => Err(format!("'{key}' must be an object of strings, not {}", type_of(other))),
        }
    }

    pub(crate) fn filter(&self, key: &str) -> Result<Filter, String> {
        let obj = match self.0.get(key) {
            None | Some(Value::Null) => return Ok(Filter::default()),
            Some(Value::Object(obj)) => obj,
            Some(other) => {
                return Err(format!("'{key}' must be an object like {{\"allow\": [...], \"deny\": [...]}}, not {}", type_of(other)))
            }
        };
        if let Some(unknown) = obj.keys().find(|k| *k != "allow" && *k != "deny") {
            return Err(format!("'{key}.{unknown}' is not known (expected 'allow' and 'deny')"));
        }
        let inner = Fields(obj);
        let list = |name: &str| inner.string_list(name).map_err(|e| format!("'{key}.{}", &e[1..]));
        Ok(Filter { allow: list("allow")?, deny: list("deny")? })
    }

    /// `active` is a boolean, but the original's own example file writes `"active": "false"`.
    fn active(&self) -> Result<bool, String> {
        match self.0.get("active") {
            None | Some(Value::Null) => Ok(true),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
            Some(other) => Err(format!("'active' must be true or false, not {other}")),
        }
    }

    fn protocol(&self) -> Result<Protocol, String> {
        match self.0.get("protocol") {
            None | Some(Value::Null) => Ok(Protocol::Auto),
            Some(Value::String(s)) => match s.as_str() {
                "auto" => Ok(Protocol::Auto),
                "modern" | "2026-07-28" => Ok(Protocol::Modern),
                "legacy" | "handshake" => Ok(Protocol::Legacy),
                other => Err(format!("'protocol' must be \"auto\", \"modern\" or \"legacy\", not \"{other}\"")),
            },
            Some(other) => Err(format!("'protocol' must be a string, not {}", type_of(other))),
        }
    }

    /// A positive number of seconds.
    fn seconds(&self, key: &str) -> Result<Option<std::time::Duration>, String> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(secs) if secs > 0.0 && secs < 1e9 => Ok(Some(std::time::Duration::from_secs_f64(secs))),
                _ => Err(format!("'{key}' must be a positive number of seconds, not {n}")),
            },
            Some(other) => Err(format!("'{key}' must be a number of seconds, not {}", type_of(other))),
        }
    }

    /// `isolation`, with `maxInstances` and `idleTimeout`, which mean something only with `"session"`.
    fn isolation(&self) -> Result<Isolation, String> {
        let session = match self.0.get("isolation") {
            None | Some(Value::Null) => false,
            Some(Value::String(s)) if s == "shared" => false,
            Some(Value::String(s)) if s == "session" => true,
            Some(Value::String(other)) => return Err(format!("'isolation' must be \"shared\" or \"session\", not \"{other}\"")),
            Some(other) => return Err(format!("'isolation' must be a string, not {}", type_of(other))),
        };
        let max_instances = match self.0.get("maxInstances") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => match n.as_u64().filter(|n| (1..=100_000).contains(n)) {
                Some(n) => usize::try_from(n).ok(),
                None => return Err(format!("'maxInstances' must be a whole number from 1 to 100000, not {n}")),
            },
            Some(other) => return Err(format!("'maxInstances' must be a number, not {}", type_of(other))),
        };
        let idle_timeout = self.seconds("idleTimeout")?;
        if !session {
            return match (max_instances, idle_timeout) {
                (None, None) => Ok(Isolation::Shared),
                _ => Err("'maxInstances' and 'idleTimeout' apply only with \"isolation\": \"session\"".into()),
            };
        }
        Ok(Isolation::Session {
            max_instances: max_instances.unwrap_or(DEFAULT_MAX_INSTANCES),
            idle_timeout: idle_timeout.unwrap_or(DEFAULT_INSTANCE_IDLE),
        })
    }
}

pub(crate) fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> ProxyConfig {
        parse(text, Path::new("cfg.json"), &|name| (name == "TOKEN").then(|| "s3cret".to_owned())).unwrap()
    }

    fn one(entry: &str) -> Result<ServerConfig, String> {
        let config = parse_ok(&format!(r#"{{"mcpServers": {{"s": {entry}}}}}"#));
        match (config.servers.into_iter().next(), config.problems.into_iter().next()) {
            (Some(server), None) => Ok(server),
            (_, Some(problem)) => Err(problem),
            (None, None) => Err("nothing parsed".into()),
        }
    }

    #[test]
    fn entry_with_only_command_is_stdio() {
        let s = one(r#"{"command": "node", "args": ["x.js"], "env": {"A": "1", "PORT": 80}}"#).unwrap();
        let Transport::Stdio(stdio) = s.transport else { panic!("not stdio") };
        assert_eq!(stdio.command, "node");
        assert_eq!(stdio.args, ["x.js"]);
        assert_eq!(stdio.env["PORT"], "80");
    }

    fn remote_of(server: ServerConfig) -> RemoteConfig {
        match server.transport {
            Transport::Sse(remote) | Transport::StreamableHttp(remote) => remote,
            Transport::Stdio(_) => panic!("not remote"),
        }
    }

    #[test]
    fn a_remote_server_may_ask_for_oauth_and_name_a_registered_client() {
        let plain = remote_of(one(r#"{"type": "http", "url": "https://h/mcp"}"#).unwrap());
        assert_eq!((plain.oauth, plain.tokens_file), (None, PathBuf::from("oauth_tokens.json")));
        let declared = remote_of(one(r#"{"type": "http", "url": "https://h/mcp", "auth": "oauth"}"#).unwrap());
        assert_eq!(declared.oauth, Some(OAuthClient::default()));
        let entry = r#"{"type": "http", "url": "https://h/mcp", "oauth": {"clientId": "c", "clientSecret": "${TOKEN}", "scope": "read"}}"#;
        let client = remote_of(one(entry).unwrap()).oauth.unwrap();
        assert_eq!(
            (client.client_id.as_deref(), client.client_secret.as_deref(), client.scope.as_deref()),
            (Some("c"), Some("s3cret"), Some("read"))
        );
    }

    #[test]
    fn oauth_settings_that_cannot_work_are_refused_with_the_key_named() {
        let problem = |entry: &str| one(&format!(r#"{{"type": "http", "url": "https://h/mcp", {entry}}}"#)).unwrap_err();
        assert!(problem(r#""auth": "basic""#).contains("'auth' must be \"oauth\""));
        assert!(problem(r#""oauth": {"clientID": "c"}"#).contains("'oauth.clientID' is not a setting"));
        assert!(problem(r#""oauth": {"clientSecret": "x"}"#).contains("'oauth.clientSecret' needs 'oauth.clientId'"));
        assert!(problem(r#""auth": "oauth", "bearerToken": "t""#).contains("has both 'bearerToken' and OAuth"));
        assert!(problem(r#""oauth": "yes""#).contains("'oauth' must be an object"));
    }

    #[test]
    fn entry_with_only_url_is_sse() {
        assert_eq!(one(r#"{"url": "http://h/sse"}"#).unwrap().transport.type_name(), "sse");
    }

    #[test]
    fn streamable_http_spellings_are_accepted() {
        for t in ["http", "streamable-http", "streamableHttp"] {
            let s = one(&format!(r#"{{"type": "{t}", "url": "http://h/mcp"}}"#)).unwrap();
            assert_eq!(s.transport.type_name(), "http", "type {t}");
        }
    }

    #[test]
    fn active_accepts_the_string_false() {
        assert!(!one(r#"{"command": "x", "active": "false"}"#).unwrap().active);
        assert!(one(r#"{"command": "x"}"#).unwrap().active);
    }

    #[test]
    fn unknown_keys_are_kept() {
        let s = one(r#"{"command": "x", "autoApprove": ["a"], "disabled": false}"#).unwrap();
        assert_eq!(s.extra["autoApprove"], serde_json::json!(["a"]));
        assert!(s.extra.contains_key("disabled"));
        assert!(!s.extra.contains_key("command"));
    }

    #[test]
    fn broken_entry_names_file_key_and_problem_and_others_still_load() {
        let config = parse_ok(r#"{"mcpServers": {"bad": {"command": 5}, "good": {"command": "x"}}}"#);
        assert_eq!(config.servers.len(), 1);
        assert_eq!(config.servers[0].key, "good");
        assert_eq!(config.problems, ["cfg.json: server 'bad': 'command' must be a string, not a number"]);
    }

    #[test]
    fn unknown_type_is_reported() {
        let err = one(r#"{"type": "websocket", "url": "ws://h"}"#).unwrap_err();
        assert!(err.contains("unknown type 'websocket'"), "{err}");
    }

    #[test]
    fn command_and_url_without_type_is_ambiguous() {
        let err = one(r#"{"command": "x", "url": "http://h"}"#).unwrap_err();
        assert!(err.contains("set 'type'"), "{err}");
    }

    #[test]
    fn missing_mcp_servers_stops_the_load() {
        let err = parse(r#"{"servers": {}}"#, Path::new("cfg.json"), &|_| None).unwrap_err();
        assert_eq!(err.to_string(), "cfg.json: missing key 'mcpServers' (an object of server entries)");
    }

    #[test]
    fn invalid_json_names_the_file_and_position() {
        let err = parse("{\n  \"mcpServers\": {,}\n}", Path::new("cfg.json"), &|_| None).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("cfg.json: not valid JSON:") && text.contains("line 2"), "{text}");
    }

    #[test]
    fn namespace_replaces_the_key_as_prefix() {
        assert_eq!(one(r#"{"command": "x", "namespace": ""}"#).unwrap().prefix(), "");
        assert_eq!(one(r#"{"command": "x"}"#).unwrap().prefix(), "s");
    }

    #[test]
    fn variables_expand_in_url_headers_args_and_env() {
        let s = one(r#"{"type": "http", "url": "http://h/${TOKEN}/mcp", "headers": {"X-T": "Bearer ${TOKEN}"}}"#).unwrap();
        let Transport::StreamableHttp(r) = s.transport else { panic!("not http") };
        assert_eq!(r.url, "http://h/s3cret/mcp");
        assert_eq!(r.headers["X-T"], "Bearer s3cret");
        let s = one(r#"{"command": "x", "args": ["--t=${TOKEN}"], "env": {"T": "${TOKEN}"}}"#).unwrap();
        let Transport::Stdio(c) = s.transport else { panic!("not stdio") };
        assert_eq!((c.args[0].as_str(), c.env["T"].as_str()), ("--t=s3cret", "s3cret"));
    }

    #[test]
    fn credentials_and_url_variables_are_secrets() {
        let s = one(r#"{"type": "http", "url": "http://h/mcp?t=${TOKEN}", "apiKey": "key-1234", "headers": {"X-A": "hv-5678"}}"#).unwrap();
        let mut secrets = s.secrets(&|name| (name == "TOKEN").then(|| "s3cret".to_owned()));
        secrets.sort();
        assert_eq!(secrets, ["hv-5678", "key-1234", "s3cret"]);
    }

    #[test]
    fn unset_variable_is_an_entry_error() {
        let err = one(r#"{"url": "http://h/${NOPE}"}"#).unwrap_err();
        assert!(err.contains("'NOPE'") && err.contains("not set"), "{err}");
    }

    #[test]
    fn text_without_a_closing_brace_is_kept() {
        assert_eq!(expand("a${b", &|_| None).unwrap(), "a${b");
    }

    #[test]
    fn filters_are_read_and_deny_wins() {
        let s = one(r#"{"command": "x", "tools": {"allow": ["get_*"], "deny": ["get_secret"]}}"#).unwrap();
        assert!(s.filters.tools.admits("get_time"));
        assert!(!s.filters.tools.admits("get_secret"));
        assert!(!s.filters.tools.admits("set_time"));
        assert!(s.filters.prompts.admits("anything"));
    }

    #[test]
    fn filter_with_unknown_member_is_an_entry_error() {
        let err = one(r#"{"command": "x", "tools": {"alow": ["a"]}}"#).unwrap_err();
        assert!(err.contains("'tools.alow'"), "{err}");
        let err = one(r#"{"command": "x", "tools": {"deny": [1]}}"#).unwrap_err();
        assert!(err.contains("'tools.deny' must hold only strings"), "{err}");
    }

    #[test]
    fn globs_match_stars_and_question_marks() {
        assert!(glob_match("*", ""));
        assert!(glob_match("a*c", "abbbc"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("*_file*", "read_file_v2"));
        assert!(!glob_match("read", "read_file"));
        assert!(glob_match("*", "*b"));
        assert!(glob_match("delete_*", "delete_*x"));
    }

    #[test]
    fn timeout_must_be_positive() {
        assert!(one(r#"{"command": "x", "timeout": 0}"#).is_err());
        assert_eq!(one(r#"{"command": "x", "timeout": 2.5}"#).unwrap().timeout.unwrap().as_millis(), 2500);
    }

    #[test]
    fn isolation_is_shared_unless_asked_with_bounded_defaults() {
        assert_eq!(one(r#"{"command": "x"}"#).unwrap().isolation, Isolation::Shared);
        assert_eq!(one(r#"{"command": "x", "isolation": "shared"}"#).unwrap().isolation, Isolation::Shared);
        let s = one(r#"{"command": "x", "isolation": "session"}"#).unwrap();
        assert_eq!(s.isolation, Isolation::Session { max_instances: DEFAULT_MAX_INSTANCES, idle_timeout: DEFAULT_INSTANCE_IDLE });
        let s = one(r#"{"command": "x", "isolation": "session", "maxInstances": 3, "idleTimeout": 1.5}"#).unwrap();
        assert_eq!(s.isolation, Isolation::Session { max_instances: 3, idle_timeout: std::time::Duration::from_millis(1500) });
    }

    #[test]
    fn bad_isolation_settings_name_their_key() {
        assert!(one(r#"{"command": "x", "isolation": "client"}"#).unwrap_err().contains("'isolation' must be"));
        assert!(one(r#"{"command": "x", "isolation": "session", "maxInstances": 0}"#).unwrap_err().contains("'maxInstances'"));
        assert!(one(r#"{"command": "x", "isolation": "session", "maxInstances": 2.5}"#).unwrap_err().contains("'maxInstances'"));
        assert!(one(r#"{"command": "x", "isolation": "session", "idleTimeout": -1}"#).unwrap_err().contains("'idleTimeout'"));
        assert!(one(r#"{"command": "x", "maxInstances": 4}"#).unwrap_err().contains("only with"));
    }

    #[test]
    fn protocol_is_detected_unless_pinned_and_a_bad_value_names_the_key() {
        assert_eq!(one(r#"{"command": "x"}"#).unwrap().protocol, Protocol::Auto);
        assert_eq!(one(r#"{"command": "x", "protocol": "modern"}"#).unwrap().protocol, Protocol::Modern);
        assert_eq!(one(r#"{"command": "x", "protocol": "legacy"}"#).unwrap().protocol, Protocol::Legacy);
        assert!(one(r#"{"command": "x", "protocol": "2025"}"#).unwrap_err().contains("'protocol'"));
    }

    #[test]
    fn a_legacy_sse_server_cannot_be_pinned_to_2026_07_28() {
        assert!(one(r#"{"type": "sse", "url": "http://h/sse", "protocol": "modern"}"#).unwrap_err().contains("handshake era"));
    }
}
