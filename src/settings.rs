//! The one place that reads command-line flags and environment variables.
//!
//! Everything else receives a [`Settings`] value, so behaviour never depends on reading the environment
//! deep inside a module, and tests can build settings from a plain map. Variable names follow the original
//! Node proxy where it had one (including its `SERVER_TOOLNAME_SEPERATOR` spelling); new ones are
//! prefixed `MCP_PROXY_`.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_CONFIG: &str = "config/mcp_server.json";
pub const DEFAULT_SEPARATOR: &str = "__";

pub const USAGE: &str = "\
mcp-proxy-server: many MCP servers served as one

USAGE:
    mcp-proxy-server [--config PATH]        serve the aggregate over stdin/stdout
    mcp-proxy-server --sse [--host H] [--port P]
                                            serve it over HTTP: legacy SSE (/sse, /message) and
                                            Streamable HTTP (/mcp) on one port (--http is the same)
    mcp-proxy-server --list-tools           connect to every backend, print the aggregated tools, exit
    mcp-proxy-server --check                validate both config files, connect, print every exposed
                                            tool with its server and original name; exit 1 on any problem
    mcp-proxy-server login SERVER [--open]  log in to a remote server that asks for OAuth: prints the
                                            URL to open (--open: opens a browser) and keeps the tokens
                                            in oauth_tokens.json beside the config
    mcp-proxy-server logout SERVER          forget SERVER's OAuth tokens

OPTIONS:
    --config PATH    server config (default: config/mcp_server.json; env MCP_PROXY_CONFIG)
    --tool-config PATH
                     tool overrides (default: tool_config.json beside the server config;
                     env MCP_PROXY_TOOL_CONFIG)
    --host HOST      HTTP listen address (default 127.0.0.1; env HOST)
    --port PORT      HTTP port (default 3663; env PORT)
    --stateless      Streamable HTTP without sessions (env MCP_PROXY_STATELESS)
    --tls-cert FILE, --tls-key FILE
                     HTTP mode: serve HTTPS with this PEM certificate chain and its PEM private
                     key (env MCP_PROXY_TLS_CERT, MCP_PROXY_TLS_KEY; both or neither; SIGHUP
                     rereads them)
    --profile NAME   stdio, --list-tools: serve only the profile NAME of mcp_server.json's
                     \"profiles\" (env MCP_PROXY_PROFILE); over HTTP: /mcp/NAME, /sse/NAME
    --log-format F   text (default) or json
    -h, --help       this text
    -V, --version    the version

ENVIRONMENT:
    SERVER_TOOLNAME_SEPERATOR   separator between server key and tool name (default __)
    LOGGING / RUST_LOG          log level: error, warn, info, debug (logs go to stderr)
    MCP_PROXY_REQUEST_TIMEOUT   seconds before a backend request fails (default 60)
    MCP_PROXY_STARTUP_TIMEOUT   seconds the first answers wait for backends to start (default 20)
    MCP_PROXY_CONFIG_POLL       seconds between checks of the config files for changes (default 2;
                                0 turns polling off; SIGHUP always reloads)
    MCP_PROXY_RESTART_BACKOFF_MIN, MCP_PROXY_RESTART_BACKOFF_MAX
                                seconds before restarting a backend that went down: first and
                                longest delay (default 0.5 and 30)
    RETRY_{STDIO,SSE,HTTP}_TOOL_CALL, {STDIO,SSE,HTTP}_TOOL_CALL_MAX_RETRIES,
    {STDIO,SSE,HTTP}_TOOL_CALL_RETRY_DELAY_BASE_MS
                                retry tool calls that could not reach their backend (default true, 2, 300)
    ALLOWED_KEYS, MCP_PROXY_SSE_ALLOWED_KEYS
                                API keys accepted as X-Api-Key or ?key= (comma-separated)
    ALLOWED_TOKENS              bearer tokens accepted as Authorization: Bearer (comma-separated)
    MCP_PROXY_ALLOWED_ORIGINS   browser origins allowed besides localhost (comma-separated, * for any)
    MCP_PROXY_ALLOWED_HOSTS     host names (Host header) served besides localhost, IP addresses and
                                --host (comma-separated, * for any); others get 403 (DNS rebinding)
    MCP_PROXY_MAX_BODY_BYTES    largest HTTP request body (default 4194304)
    MCP_PROXY_SSE_KEEPALIVE     seconds between SSE keep-alive comments (default 15)
    MCP_PROXY_SESSION_IDLE_TIMEOUT
                                seconds before an idle Streamable HTTP session is forgotten (default 1800)
    MCP_PROXY_SESSION_UNUSED_TIMEOUT
                                seconds before a Streamable HTTP session that sent nothing after its
                                initialize (no request, no GET stream) is forgotten (default 10)
    MCP_PROXY_STATELESS         true: Streamable HTTP without sessions (each POST stands alone; no GET
                                stream): any instance behind a load balancer can answer any request
    MCP_PROXY_CLIENT_CAPABILITIES
                                HTTP mode: client capabilities to declare to backends, from roots,
                                sampling, elicitation (comma-separated; default none)
    MCP_PROXY_INSTANCE_ID       prefix of session ids (`<id>-<random>`), for load balancers to route on
    MCP_PROXY_LOG_FORMAT        `json` for one JSON object per log line (also --log-format json)
    MCP_PROXY_SHUTDOWN_GRACE    seconds a shutdown lets calls in flight finish (default 5)
    MCP_PROXY_MAX_IN_FLIGHT     requests in flight to one backend at most (default 1024)
    MCP_PROXY_MAX_SESSIONS, MCP_PROXY_MAX_SESSIONS_PER_KEY, MCP_PROXY_MAX_SESSIONS_PER_ADDRESS
                                HTTP sessions at most, in all (default 4096), per key or token (default
                                1024) and per client address (default 256); 0: no per-key/address limit
    MCP_PROXY_MAX_CONNECTIONS   open HTTP connections at most (default 8192, lowered to fit
                                RLIMIT_NOFILE with descriptors kept for backends)
    MCP_PROXY_MAX_CONNECTIONS_PER_ADDRESS
                                open HTTP connections from one client address at most (default 256;
                                0: no limit, e.g. behind a reverse proxy)
    MCP_PROXY_FIRST_REQUEST_TIMEOUT
                                seconds a new connection has to send its first request head (default 10)
    ENABLE_ADMIN_UI             true/1/yes: serve the admin UI and API under /admin/ (HTTP mode)
    ADMIN_USERNAME, ADMIN_PASSWORD
                                admin login (default user admin; without ADMIN_PASSWORD a random
                                password is made at start-up and printed once to stderr)
    MCP_PROXY_OAUTH_ISSUER, MCP_PROXY_OAUTH_RESOURCE
                                accept OAuth access tokens from this authorization server (its issuer
                                URL) made out to this proxy (its public URL, e.g. https://hub.lan/mcp);
                                static keys and tokens keep working beside them
    MCP_PROXY_OAUTH_SCOPES      scopes a token must carry (space-separated; default none)
    MCP_PROXY_OAUTH_LEEWAY      seconds of clock difference allowed on exp and nbf (default 60)
    MCP_PROXY_OAUTH_JWKS_URI    the authorization server's keys (default: from its metadata)
    MCP_PROXY_OAUTH_INTROSPECTION_CLIENT_ID, MCP_PROXY_OAUTH_INTROSPECTION_CLIENT_SECRET
                                check tokens that are not JWTs at the server's introspection endpoint
    MCP_PROXY_OAUTH_CLIENT_METADATA_URL
                                login: the proxy's client id at authorization servers that take client
                                ID metadata documents; an https URL the proxy serves the document at
    ADMIN_COOKIE_SECURE         true: mark the admin session cookie Secure (default: true with
                                --tls-cert or NODE_ENV=production, else false)
    ENABLE_WEB_TERMINAL         true/1/yes: a shell in the admin UI (needs ENABLE_ADMIN_UI; use with care)
    TERMINAL_IDLE_TIMEOUT       seconds before an idle web terminal is killed (default 3600)
    TOOLS_FOLDER                where installs go when a server has no installDirectory (default ./tools)
";

/// What the process was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Be an MCP server on stdin/stdout.
    Stdio,
    /// Be an MCP server over HTTP (legacy SSE and Streamable HTTP).
    Http,
    /// Start the backends, print the aggregated tools, exit.
    ListTools,
    /// Validate the config files and print the effective catalog; fail on any problem.
    Check,
    /// Log in to a remote server with OAuth (`open`: run a browser on the URL), then exit.
    Login {
        server: String,
        open: bool,
    },
    /// Forget a remote server's OAuth tokens, then exit.
    Logout {
        server: String,
    },
    Help,
    Version,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub mode: Mode,
    pub config_path: PathBuf,
    /// `tool_config.json`: per-tool enable, rename and description overrides.
    pub tool_config_path: PathBuf,
    /// The profile the stdio client (and `--list-tools`) sees; `None`: the whole aggregate.
    pub profile: Option<String>,
    /// Between a server's prefix and a tool name in exposed names.
    pub separator: String,
    /// A filter for env_logger (`info`, `debug`, `mcp_proxy_server=debug`, ...).
    pub log_filter: String,
    /// One JSON object per log line instead of text.
    pub log_json: bool,
    pub request_timeout: Duration,
    /// How long `initialize` and list requests wait for backends still starting before answering with
    /// what is ready.
    pub startup_timeout: Duration,
    /// First and longest delay before restarting a backend that went down.
    pub restart_backoff: (Duration, Duration),
    pub retries: Retries,
    /// How often the config files are checked for changes; `None` turns polling off.
    pub config_poll: Option<Duration>,
    /// How long a shutdown lets requests in flight finish.
    pub shutdown_grace: Duration,
    /// Requests in flight to one backend at most.
    pub max_in_flight: usize,
    /// HTTP sessions at most, in all, per API key or token and per client address (0: no per-key or
    /// per-address limit).
    pub max_sessions: usize,
    pub max_sessions_per_key: usize,
    pub max_sessions_per_address: usize,
    pub http: HttpSettings,
    /// Problems found while reading the settings that fell back to a default; logged once logging is up.
    pub warnings: Vec<String>,
}

/// Retrying a tool call that could not reach its backend (down, restarting), per backend transport,
/// with the original proxy's variables. A call that may have reached the tool is never retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub max_retries: u32,
    /// Attempt n (from 1) waits `base * 2^(n-1)` plus up to half of `base` at random.
    pub base_delay: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retries {
    pub stdio: RetryPolicy,
    pub sse: RetryPolicy,
    pub http: RetryPolicy,
}

/// The HTTP frontend's settings.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub host: String,
    pub port: u16,
    /// API keys (`X-Api-Key` or `?key=`); with `tokens`, auth is on when either is non-empty.
    pub keys: Vec<String>,
    /// Bearer tokens (`Authorization: Bearer`).
    pub tokens: Vec<String>,
    /// Origins allowed besides loopback ones; `*` allows any.
    pub allowed_origins: Vec<String>,
    /// Host names requests may be addressed to besides loopback names, IP literals and `host`; `*`
    /// allows any.
    pub allowed_hosts: Vec<String>,
    pub max_body: usize,
    pub max_head: usize,
    /// Open connections at most; more get 503. The server lowers it to what `RLIMIT_NOFILE` allows.
    pub max_connections: usize,
    /// Open connections from one client address at most (0: no limit); more get 429.
    pub max_connections_per_address: usize,
    pub keepalive: Duration,
    pub session_idle_timeout: Duration,
    /// A Streamable HTTP session that sends nothing after its `initialize` is forgotten after this.
    pub session_unused_timeout: Duration,
    /// How long a client may take to send a request's head and body.
    pub request_read_timeout: Duration,
    /// How long an idle keep-alive connection is kept open.
    pub idle_connection_timeout: Duration,
    /// How long a new connection may take to send its first request head.
    pub first_request_timeout: Duration,
    /// The admin UI and API, when enabled.
    pub admin: Option<AdminSettings>,
    /// Streamable HTTP without sessions: every POST is answered on its own.
    pub stateless: bool,
    /// Put in front of session ids, for load balancers.
    pub instance_id: Option<String>,
    /// Client capabilities declared to backends in HTTP mode (`roots`, `sampling`, `elicitation`).
    pub declared_capabilities: Vec<String>,
    /// OAuth access tokens accepted beside the static keys and tokens, when configured.
    pub oauth: Option<OAuthSettings>,
    /// The https URL of the proxy's OAuth client metadata document (CIMD): its client id at
    /// authorization servers that take one, served by the proxy at that URL's path.
    pub client_metadata_url: Option<String>,
    /// HTTPS: the certificate and key files, when given.
    pub tls: Option<TlsFiles>,
}

/// The proxy as an OAuth resource server: whose tokens it accepts, and for what.
#[derive(Debug, Clone)]
pub struct OAuthSettings {
    /// The authorization server's issuer identifier, compared as a plain string.
    pub issuer: String,
    /// This proxy's public URL: the audience its tokens must name, and the resource clients ask for.
    pub resource: String,
    /// Scopes every token must carry; also advertised as `scopes_supported`.
    pub scopes: Vec<String>,
    /// Clock difference allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// Where the signing keys are, if not from the authorization server's metadata.
    pub jwks_uri: Option<String>,
    /// Credentials for introspecting tokens that are not JWTs (RFC 7662).
    pub introspection: Option<ClientCredentials>,
}

#[derive(Debug, Clone)]
pub struct ClientCredentials {
    pub client_id: String,
    pub client_secret: String,
}

/// A PEM certificate chain (the server's first) and its PEM private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct AdminSettings {
    pub username: String,
    /// `ADMIN_PASSWORD`; `None` when unset, and then the HTTP mode makes a random one at start-up.
    pub password: Option<String>,
    pub cookie_secure: bool,
    /// Base folder for installs of servers without `installDirectory`; `None`: `./tools`.
    pub tools_folder: Option<PathBuf>,
    /// The web terminal, when enabled.
    pub terminal: Option<TerminalSettings>,
}

#[derive(Debug, Clone)]
pub struct TerminalSettings {
    /// `SHELL`, else `/bin/sh`.
    pub shell: String,
    /// `HOME`, else the tools folder, else the current folder.
    pub cwd: PathBuf,
    pub idle_timeout: Duration,
}

impl HttpSettings {
    /// The `capabilities` object declared to backends in HTTP mode.
    pub fn client_capabilities(&self) -> serde_json::Value {
        let caps: serde_json::Map<String, serde_json::Value> =
            self.declared_capabilities.iter().map(|c| (c.clone(), serde_json::json!({}))).collect();
        serde_json::Value::Object(caps)
    }
}

/// The Node original's default admin password: public knowledge, so it never guards the admin UI.
pub const ORIGINAL_DEFAULT_PASSWORD: &str = "password";

impl AdminSettings {
    /// True when `ADMIN_PASSWORD` is the original's well-known default.
    pub fn has_default_password(&self) -> bool {
        self.password.as_deref() == Some(ORIGINAL_DEFAULT_PASSWORD)
    }
}

impl Settings {
    /// Values that must never appear in logs or status output.
    pub fn secrets(&self) -> Vec<String> {
        // The default password is public knowledge, and masking the word would garble every message.
        let admin = self.http.admin.iter().filter(|a| !a.has_default_password()).filter_map(|a| a.password.clone());
        let introspection = self.http.oauth.iter().filter_map(|o| o.introspection.as_ref()).map(|c| c.client_secret.clone());
        self.http.keys.iter().chain(&self.http.tokens).cloned().chain(admin).chain(introspection).collect()
    }
}

/// A command line that cannot be obeyed.
#[derive(Debug)]
pub struct UsageError(String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\n\nTry 'mcp-proxy-server --help'.", self.0)
    }
}

impl std::error::Error for UsageError {}

/// The environment lookup: the value of variable `name`, if it is set and valid UTF-8. Settings are read
/// once at start-up, but `${VAR}` in config values is expanded each time a config file is read (at start,
/// on every reload, when the admin API validates a save), so config expansion calls this at that moment.
pub fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Settings {
    /// Reads the real command line and environment.
    pub fn from_process() -> Result<Settings, UsageError> {
        let args = std::env::args_os().skip(1).collect();
        Settings::parse(args, &env_lookup)
    }

    pub fn parse(args: Vec<OsString>, env: &dyn Fn(&str) -> Option<String>) -> Result<Settings, UsageError> {
        let mut args = pico_args::Arguments::from_vec(args);
        let flag = |args: &mut pico_args::Arguments, names: [&'static str; 2]| args.contains(names);
        let mode = if flag(&mut args, ["-h", "--help"]) {
            Mode::Help
        } else if flag(&mut args, ["-V", "--version"]) {
            Mode::Version
        } else if args.contains("--list-tools") {
            Mode::ListTools
        } else if args.contains("--check") {
            Mode::Check
        } else if args.contains("--sse") | args.contains("--http") {
            Mode::Http
        } else {
            Mode::Stdio
        };
        let config_flag: Option<PathBuf> = args.opt_value_from_os_str("--config", |s| Ok::<_, String>(PathBuf::from(s))).map_err(usage)?;
        let tool_config_flag: Option<PathBuf> =
            args.opt_value_from_os_str("--tool-config", |s| Ok::<_, String>(PathBuf::from(s))).map_err(usage)?;
        let host_flag: Option<String> = args.opt_value_from_str("--host").map_err(usage)?;
        let args_stateless = args.contains("--stateless");
        let log_format_flag: Option<String> = args.opt_value_from_str("--log-format").map_err(usage)?;
        let port_flag: Option<String> = args.opt_value_from_str("--port").map_err(usage)?;
        let profile_flag: Option<String> = args.opt_value_from_str("--profile").map_err(usage)?;
        let tls_cert_flag: Option<PathBuf> =
            args.opt_value_from_os_str("--tls-cert", |s| Ok::<_, String>(PathBuf::from(s))).map_err(usage)?;
        let tls_key_flag: Option<PathBuf> =
            args.opt_value_from_os_str("--tls-key", |s| Ok::<_, String>(PathBuf::from(s))).map_err(usage)?;
        let open_flag = args.contains("--open");
        let rest: Vec<String> = args.finish().into_iter().map(|a| a.to_string_lossy().into_owned()).collect();
        let mode = match (rest.iter().map(String::as_str).collect::<Vec<_>>().as_slice(), mode) {
            (["login", server], Mode::Stdio) => Mode::Login { server: server.to_string(), open: open_flag },
            (_, _) if open_flag => return Err(UsageError("--open goes with login SERVER".into())),
            ([], mode) => mode,
            (["logout", server], Mode::Stdio) => Mode::Logout { server: server.to_string() },
            (["login" | "logout"], _) => return Err(UsageError(format!("{} needs the key of a server in the config", rest[0]))),
            (_, _) => return Err(UsageError(format!("unexpected argument '{}'", rest[0]))),
        };

        let mut warnings = Vec::new();
        let non_empty = |name: &str| env(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let config_path =
            config_flag.or_else(|| non_empty("MCP_PROXY_CONFIG").map(PathBuf::from)).unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
        let tool_config_path = tool_config_flag
            .or_else(|| non_empty("MCP_PROXY_TOOL_CONFIG").map(PathBuf::from))
            .unwrap_or_else(|| config_path.with_file_name("tool_config.json"));
        let profile = profile_flag.or_else(|| non_empty("MCP_PROXY_PROFILE"));
        let tls = tls_files(
            tls_cert_flag.or_else(|| non_empty("MCP_PROXY_TLS_CERT").map(PathBuf::from)),
            tls_key_flag.or_else(|| non_empty("MCP_PROXY_TLS_KEY").map(PathBuf::from)),
        )?;
        let https = tls.is_some();
        if let Some(bad) = profile.as_deref().filter(|p| !crate::profile_config::is_valid_name(p)) {
            return Err(UsageError(format!("--profile '{bad}': a profile name is 1 to 64 letters, digits, '_', '-' or '.'")));
        }
        let separator = match non_empty("SERVER_TOOLNAME_SEPERATOR").or_else(|| non_empty("SERVER_TOOLNAME_SEPARATOR")) {
            None => DEFAULT_SEPARATOR.to_owned(),
            Some(sep) if sep.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') => sep,
            Some(sep) => {
                warnings.push(format!(
                    "SERVER_TOOLNAME_SEPERATOR '{sep}' may only hold letters, digits, '_' and '-'; using '{DEFAULT_SEPARATOR}'"
                ));
                DEFAULT_SEPARATOR.to_owned()
            }
        };
        let log_filter = non_empty("LOGGING")
            .map(|level| level.to_ascii_lowercase())
            .or_else(|| non_empty("RUST_LOG"))
            .unwrap_or_else(|| "info".to_owned());
        let mut seconds = |name: &str, default: f64| match non_empty(name) {
            None => Duration::from_secs_f64(default),
            Some(v) => match v.parse::<f64>() {
                Ok(secs) if secs > 0.0 && secs < 1e9 => Duration::from_secs_f64(secs),
                _ => {
                    warnings.push(format!("{name} '{v}' is not a positive number of seconds; using {default}"));
                    Duration::from_secs_f64(default)
                }
            },
        };
        let log_json = match log_format_flag.or_else(|| non_empty("MCP_PROXY_LOG_FORMAT")).as_deref() {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => return Err(UsageError(format!("log format '{other}' is not 'text' or 'json'"))),
        };
        let request_timeout = seconds("MCP_PROXY_REQUEST_TIMEOUT", 60.0);
        let startup_timeout = seconds("MCP_PROXY_STARTUP_TIMEOUT", 20.0);
        let restart_backoff = (seconds("MCP_PROXY_RESTART_BACKOFF_MIN", 0.5), seconds("MCP_PROXY_RESTART_BACKOFF_MAX", 30.0));
        let keepalive = seconds("MCP_PROXY_SSE_KEEPALIVE", 15.0);
        let config_poll = match non_empty("MCP_PROXY_CONFIG_POLL").as_deref() {
            Some("0") => None,
            _ => Some(seconds("MCP_PROXY_CONFIG_POLL", 2.0)),
        };
        let session_idle_timeout = seconds("MCP_PROXY_SESSION_IDLE_TIMEOUT", 1800.0);
        let session_unused_timeout = seconds("MCP_PROXY_SESSION_UNUSED_TIMEOUT", 10.0);
        let terminal_idle = seconds("TERMINAL_IDLE_TIMEOUT", 3600.0);
        let first_request_timeout = seconds("MCP_PROXY_FIRST_REQUEST_TIMEOUT", 10.0);
        let port = match port_flag.or_else(|| non_empty("PORT")) {
            None => 3663,
            Some(p) => p.parse().map_err(|_| UsageError(format!("port '{p}' is not a number from 0 to 65535")))?,
        };
        let list = |names: &[&str]| -> Vec<String> {
            let values = names.iter().filter_map(|name| non_empty(name));
            values.flat_map(|v| v.split(',').map(|s| s.trim().to_owned()).collect::<Vec<_>>()).filter(|s| !s.is_empty()).collect()
        };
        let shutdown_grace = seconds("MCP_PROXY_SHUTDOWN_GRACE", 5.0);
        let mut count = |name: &str, default: usize| match non_empty(name) {
            None => default,
            Some(v) => v.parse().unwrap_or_else(|_| {
                warnings.push(format!("{name} '{v}' is not a whole number; using {default}"));
                default
            }),
        };
        let max_body = count("MCP_PROXY_MAX_BODY_BYTES", 4 * 1024 * 1024);
        let max_in_flight = count("MCP_PROXY_MAX_IN_FLIGHT", 1024);
        let max_sessions = count("MCP_PROXY_MAX_SESSIONS", 4096);
        let max_sessions_per_key = count("MCP_PROXY_MAX_SESSIONS_PER_KEY", 1024);
        let max_sessions_per_address = count("MCP_PROXY_MAX_SESSIONS_PER_ADDRESS", 256);
        let max_connections = count("MCP_PROXY_MAX_CONNECTIONS", 8192);
        let max_connections_per_address = count("MCP_PROXY_MAX_CONNECTIONS_PER_ADDRESS", 256);
        let instance_id = non_empty("MCP_PROXY_INSTANCE_ID").filter(|id| {
            let usable = id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !usable {
                warnings.push(format!("MCP_PROXY_INSTANCE_ID '{id}' may only hold letters, digits, '-' and '_'; not used"));
            }
            usable
        });
        let declared_capabilities: Vec<String> = list(&["MCP_PROXY_CLIENT_CAPABILITIES"])
            .into_iter()
            .filter(|cap| {
                let known = ["roots", "sampling", "elicitation"].contains(&cap.as_str());
                if !known {
                    warnings.push(format!("MCP_PROXY_CLIENT_CAPABILITIES: '{cap}' is not roots, sampling or elicitation; ignored"));
                }
                known
            })
            .collect();
        let oauth = oauth_settings(&non_empty, &mut warnings)?;
        let client_metadata_url = client_metadata_url(&non_empty)?;
        let http = HttpSettings {
            host: host_flag.or_else(|| non_empty("HOST")).unwrap_or_else(|| "127.0.0.1".to_owned()),
            port,
            keys: list(&["MCP_PROXY_SSE_ALLOWED_KEYS", "ALLOWED_KEYS"]),
            tokens: list(&["ALLOWED_TOKENS"]),
            allowed_origins: list(&["MCP_PROXY_ALLOWED_ORIGINS"]),
            allowed_hosts: list(&["MCP_PROXY_ALLOWED_HOSTS"]),
            max_body,
            max_head: 32 * 1024,
            max_connections,
            max_connections_per_address,
            keepalive,
            session_idle_timeout,
            session_unused_timeout,
            request_read_timeout: Duration::from_secs(30),
            idle_connection_timeout: Duration::from_secs(120),
            first_request_timeout,
            stateless: args_stateless || truthy(non_empty("MCP_PROXY_STATELESS")),
            instance_id,
            declared_capabilities,
            oauth,
            client_metadata_url,
            tls,
            admin: truthy(non_empty("ENABLE_ADMIN_UI")).then(|| AdminSettings {
                username: non_empty("ADMIN_USERNAME").unwrap_or_else(|| "admin".into()),
                password: env("ADMIN_PASSWORD").filter(|p| !p.is_empty()),
                cookie_secure: match non_empty("ADMIN_COOKIE_SECURE") {
                    Some(value) => truthy(Some(value)),
                    None => https || non_empty("NODE_ENV").as_deref() == Some("production"),
                },
                tools_folder: non_empty("TOOLS_FOLDER").map(PathBuf::from),
                terminal: truthy(non_empty("ENABLE_WEB_TERMINAL")).then(|| TerminalSettings {
                    shell: non_empty("SHELL").unwrap_or_else(|| "/bin/sh".into()),
                    cwd: non_empty("HOME").or_else(|| non_empty("TOOLS_FOLDER")).map_or_else(|| PathBuf::from("."), PathBuf::from),
                    idle_timeout: terminal_idle,
                }),
            }),
        };
        let mut retry = |kind: &str| retry_policy(kind, &non_empty, &mut warnings);
        let retries = Retries { stdio: retry("STDIO"), sse: retry("SSE"), http: retry("HTTP") };
        Ok(Settings {
            mode,
            config_path,
            tool_config_path,
            profile,
            separator,
            log_filter,
            log_json,
            request_timeout,
            startup_timeout,
            restart_backoff,
            retries,
            config_poll,
            shutdown_grace,
            max_in_flight,
            max_sessions,
            max_sessions_per_key,
            max_sessions_per_address,
            http,
            warnings,
        })
    }
}

/// The TLS files, given both or neither, and only to a build that has TLS.
fn tls_files(cert: Option<PathBuf>, key: Option<PathBuf>) -> Result<Option<TlsFiles>, UsageError> {
    let files = match (cert, key) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => TlsFiles { cert, key },
        (Some(_), None) => return Err(UsageError("--tls-cert needs --tls-key (MCP_PROXY_TLS_KEY): the certificate's private key".into())),
        (None, Some(_)) => return Err(UsageError("--tls-key needs --tls-cert (MCP_PROXY_TLS_CERT): the certificate it belongs to".into())),
    };
    if !cfg!(feature = "tls") {
        let why = "--tls-cert: this mcp-proxy-server was built without TLS (cargo feature `tls`); \
                   use a build with it, or a TLS-terminating reverse proxy in front";
        return Err(UsageError(why.into()));
    }
    Ok(Some(files))
}

/// `true`, `1` or `yes` (any case), as the original reads `ENABLE_ADMIN_UI`.
fn truthy(value: Option<String>) -> bool {
    value.is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1" || v.eq_ignore_ascii_case("yes"))
}

/// `RETRY_<KIND>_TOOL_CALL` is on unless set to something other than `true`, as in the original.
fn retry_policy(kind: &str, env: &dyn Fn(&str) -> Option<String>, warnings: &mut Vec<String>) -> RetryPolicy {
    let enabled = env(&format!("RETRY_{kind}_TOOL_CALL")).is_none_or(|v| v.eq_ignore_ascii_case("true"));
    let mut number = |name: String, default: u32| match env(&name) {
        None => default,
        Some(v) => v.parse().unwrap_or_else(|_| {
            warnings.push(format!("{name} '{v}' is not a whole number; using {default}"));
            default
        }),
    };
    let max_retries = number(format!("{kind}_TOOL_CALL_MAX_RETRIES"), 2);
    let base_ms = number(format!("{kind}_TOOL_CALL_RETRY_DELAY_BASE_MS"), 300);
    RetryPolicy { max_retries: if enabled { max_retries } else { 0 }, base_delay: Duration::from_millis(u64::from(base_ms)) }
}

/// `MCP_PROXY_OAUTH_*`: the issuer and resource go together, and both must be absolute URLs; an
/// authorization server is https unless it is on this machine (its keys decide who gets in).
fn oauth_settings(env: &dyn Fn(&str) -> Option<String>, warnings: &mut Vec<String>) -> Result<Option<OAuthSettings>, UsageError> {
    let (issuer, resource) = match (env("MCP_PROXY_OAUTH_ISSUER"), env("MCP_PROXY_OAUTH_RESOURCE")) {
        (None, None) => return Ok(None),
        (Some(issuer), Some(resource)) => (issuer, resource),
        (Some(_), None) => return Err(UsageError("MCP_PROXY_OAUTH_ISSUER needs MCP_PROXY_OAUTH_RESOURCE: this proxy's public URL".into())),
        (None, Some(_)) => {
            return Err(UsageError("MCP_PROXY_OAUTH_RESOURCE needs MCP_PROXY_OAUTH_ISSUER: the authorization server".into()))
        }
    };
    if !cfg!(feature = "oauth") {
        return Err(UsageError("MCP_PROXY_OAUTH_ISSUER: this build has no OAuth support (cargo feature `oauth`)".into()));
    }
    let issuer = checked_url("MCP_PROXY_OAUTH_ISSUER", issuer, true)?;
    let resource = checked_url("MCP_PROXY_OAUTH_RESOURCE", resource, false)?;
    if resource.starts_with("http:") && !is_loopback_url(&resource) {
        warnings.push(format!(
            "MCP_PROXY_OAUTH_RESOURCE '{resource}' is not https: OAuth clients will not send tokens to it, or send them in the clear"
        ));
    }
    let jwks_uri = env("MCP_PROXY_OAUTH_JWKS_URI").map(|uri| checked_url("MCP_PROXY_OAUTH_JWKS_URI", uri, true)).transpose()?;
    let introspection = match (env("MCP_PROXY_OAUTH_INTROSPECTION_CLIENT_ID"), env("MCP_PROXY_OAUTH_INTROSPECTION_CLIENT_SECRET")) {
        (None, None) => None,
        (Some(client_id), Some(client_secret)) => Some(ClientCredentials { client_id, client_secret }),
        _ => {
            return Err(UsageError(
                "MCP_PROXY_OAUTH_INTROSPECTION_CLIENT_ID and MCP_PROXY_OAUTH_INTROSPECTION_CLIENT_SECRET go together".into(),
            ))
        }
    };
    let leeway = match env("MCP_PROXY_OAUTH_LEEWAY") {
        None => Duration::from_secs(60),
        Some(v) => Duration::from_secs(
            v.parse().map_err(|_| UsageError(format!("MCP_PROXY_OAUTH_LEEWAY '{v}' is not a whole number of seconds")))?,
        ),
    };
    let scopes = env("MCP_PROXY_OAUTH_SCOPES").map(|s| s.split_whitespace().map(str::to_owned).collect()).unwrap_or_default();
    Ok(Some(OAuthSettings { issuer, resource, scopes, leeway, jwks_uri, introspection }))
}

/// `MCP_PROXY_OAUTH_CLIENT_METADATA_URL`: a client id must be an https URL with a path (the document's
/// place), and the proxy serves it there, so that path must not be one of its own.
fn client_metadata_url(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<String>, UsageError> {
    const NAME: &str = "MCP_PROXY_OAUTH_CLIENT_METADATA_URL";
    let Some(url) = env(NAME) else { return Ok(None) };
    if !cfg!(feature = "oauth") {
        return Err(UsageError(format!("{NAME}: this build has no OAuth support (cargo feature `oauth`)")));
    }
    let url = checked_url(NAME, url, false)?;
    let path = url.splitn(4, '/').nth(3).unwrap_or_default();
    if !url.starts_with("https://") || path.is_empty() {
        return Err(UsageError(format!("{NAME} '{url}' must be an https URL with a path, e.g. https://hub.example.com/oauth-client.json")));
    }
    if ["mcp", "sse", "message", "messages", "admin", "health", "metrics", ".well-known"]
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")))
    {
        return Err(UsageError(format!("{NAME} '{url}': its path is one the proxy already serves; choose another")));
    }
    Ok(Some(url))
}

/// `value` if it is an absolute http(s) URL with a host and no query or fragment (OAuth identifiers
/// may not have them); with `https_unless_loopback`, plain http only to this machine.
fn checked_url(name: &str, value: String, https_unless_loopback: bool) -> Result<String, UsageError> {
    let uri: ureq::http::Uri = value.parse().map_err(|_| UsageError(format!("{name} '{value}' is not a URL")))?;
    let scheme = uri.scheme_str().unwrap_or_default();
    if !matches!(scheme, "http" | "https") || uri.host().is_none_or(str::is_empty) {
        return Err(UsageError(format!("{name} '{value}' is not an absolute http(s) URL")));
    }
    if uri.query().is_some() || value.contains('#') {
        return Err(UsageError(format!("{name} '{value}' may not have a query or fragment")));
    }
    if https_unless_loopback && scheme == "http" && !is_loopback_url(&value) {
        return Err(UsageError(format!("{name} '{value}' must be https (plain http only to localhost)")));
    }
    Ok(value)
}

/// True when an http(s) URL names this machine: `localhost`, 127.0.0.0/8 or `[::1]`.
pub fn is_loopback_url(url: &str) -> bool {
    let Ok(uri) = url.parse::<ureq::http::Uri>() else { return false };
    match uri.host() {
        Some("localhost") => true,
        Some(host) => host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

fn usage(e: pico_args::Error) -> UsageError {
    UsageError(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Settings, UsageError> {
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::parse(args.iter().map(OsString::from).collect(), &|name| env.get(name).cloned())
    }

    #[test]
    fn defaults_without_flags_or_environment() {
        let s = parse(&[], &[]).unwrap();
        assert_eq!(s.mode, Mode::Stdio);
        assert_eq!(s.config_path, PathBuf::from(DEFAULT_CONFIG));
        assert_eq!(s.separator, "__");
        assert_eq!(s.log_filter, "info");
        assert_eq!(s.request_timeout, Duration::from_secs(60));
    }

    #[test]
    fn config_flag_wins_over_environment() {
        let s = parse(&["--config", "a.json"], &[("MCP_PROXY_CONFIG", "b.json")]).unwrap();
        assert_eq!(s.config_path, PathBuf::from("a.json"));
        assert_eq!(parse(&[], &[("MCP_PROXY_CONFIG", "b.json")]).unwrap().config_path, PathBuf::from("b.json"));
    }

    #[test]
    fn tool_config_defaults_to_the_server_configs_folder() {
        let s = parse(&["--config", "/etc/mcp/servers.json"], &[]).unwrap();
        assert_eq!(s.tool_config_path, PathBuf::from("/etc/mcp/tool_config.json"));
        let s = parse(&["--tool-config", "t.json"], &[]).unwrap();
        assert_eq!(s.tool_config_path, PathBuf::from("t.json"));
    }

    #[test]
    fn separator_reads_the_original_misspelling_and_the_correct_one() {
        assert_eq!(parse(&[], &[("SERVER_TOOLNAME_SEPERATOR", "--")]).unwrap().separator, "--");
        assert_eq!(parse(&[], &[("SERVER_TOOLNAME_SEPARATOR", "_x_")]).unwrap().separator, "_x_");
    }

    #[test]
    fn invalid_separator_falls_back_with_a_warning() {
        let s = parse(&[], &[("SERVER_TOOLNAME_SEPERATOR", "a b")]).unwrap();
        assert_eq!(s.separator, "__");
        assert_eq!(s.warnings.len(), 1);
    }

    #[test]
    fn logging_wins_over_rust_log() {
        assert_eq!(parse(&[], &[("LOGGING", "DEBUG"), ("RUST_LOG", "warn")]).unwrap().log_filter, "debug");
        assert_eq!(parse(&[], &[("RUST_LOG", "warn")]).unwrap().log_filter, "warn");
    }

    #[test]
    fn bad_timeout_falls_back_with_a_warning() {
        let s = parse(&[], &[("MCP_PROXY_REQUEST_TIMEOUT", "soon")]).unwrap();
        assert_eq!(s.request_timeout, Duration::from_secs(60));
        assert_eq!(s.warnings.len(), 1);
    }

    #[test]
    fn unknown_argument_is_a_usage_error() {
        let err = parse(&["--frobnicate"], &[]).unwrap_err();
        assert!(err.to_string().contains("unexpected argument '--frobnicate'"));
    }

    #[test]
    fn http_mode_reads_host_port_keys_and_tokens() {
        let s = parse(
            &["--sse", "--port", "4000"],
            &[("HOST", "0.0.0.0"), ("ALLOWED_KEYS", "a, b,"), ("MCP_PROXY_SSE_ALLOWED_KEYS", "c"), ("ALLOWED_TOKENS", "t")],
        )
        .unwrap();
        assert_eq!(s.mode, Mode::Http);
        assert_eq!((s.http.host.as_str(), s.http.port), ("0.0.0.0", 4000));
        assert_eq!(s.http.keys, ["c", "a", "b"]);
        assert_eq!(s.http.tokens, ["t"]);
    }

    #[test]
    fn http_defaults_to_loopback_on_the_originals_port() {
        let s = parse(&["--http"], &[]).unwrap();
        assert_eq!((s.http.host.as_str(), s.http.port), ("127.0.0.1", 3663));
        assert!(s.http.keys.is_empty() && s.http.tokens.is_empty());
    }

    #[test]
    fn bad_port_is_a_usage_error() {
        assert!(parse(&["--sse", "--port", "http"], &[]).is_err());
    }

    #[test]
    fn retries_follow_the_originals_variables() {
        let s = parse(
            &[],
            &[("RETRY_SSE_TOOL_CALL", "false"), ("HTTP_TOOL_CALL_MAX_RETRIES", "5"), ("STDIO_TOOL_CALL_RETRY_DELAY_BASE_MS", "50")],
        )
        .unwrap();
        assert_eq!(s.retries.sse.max_retries, 0);
        assert_eq!(s.retries.http.max_retries, 5);
        assert_eq!(s.retries.stdio, RetryPolicy { max_retries: 2, base_delay: Duration::from_millis(50) });
    }

    #[test]
    fn admin_ui_is_off_unless_enabled_and_has_no_default_password() {
        assert!(parse(&["--sse"], &[]).unwrap().http.admin.is_none());
        let admin = parse(&["--sse"], &[("ENABLE_ADMIN_UI", "YES"), ("ADMIN_PASSWORD", "")]).unwrap().http.admin.unwrap();
        assert_eq!((admin.username.as_str(), admin.password.as_deref()), ("admin", None));
        assert!(!admin.has_default_password() && !admin.cookie_secure);
        let admin =
            parse(&[], &[("ENABLE_ADMIN_UI", "1"), ("NODE_ENV", "production"), ("ADMIN_PASSWORD", "s")]).unwrap().http.admin.unwrap();
        assert!(admin.cookie_secure && admin.password.as_deref() == Some("s"));
        let admin = parse(&[], &[("ENABLE_ADMIN_UI", "1"), ("ADMIN_PASSWORD", "password")]).unwrap().http.admin.unwrap();
        assert!(admin.has_default_password());
    }

    #[test]
    fn connection_limits_default_and_read_their_variables() {
        let http = parse(&["--sse"], &[]).unwrap().http;
        assert_eq!((http.max_connections, http.max_connections_per_address), (8192, 256));
        assert_eq!(http.first_request_timeout, Duration::from_secs(10));
        assert!(http.allowed_hosts.is_empty());
        let env = [
            ("MCP_PROXY_MAX_CONNECTIONS_PER_ADDRESS", "0"),
            ("MCP_PROXY_FIRST_REQUEST_TIMEOUT", "2.5"),
            ("MCP_PROXY_ALLOWED_HOSTS", "proxy.lan, mcp.example.com"),
        ];
        let http = parse(&["--sse"], &env).unwrap().http;
        assert_eq!(http.max_connections_per_address, 0);
        assert_eq!(http.first_request_timeout, Duration::from_millis(2500));
        assert_eq!(http.allowed_hosts, ["proxy.lan", "mcp.example.com"]);
    }

    #[test]
    fn sessions_are_bounded_per_key_and_per_address_by_default() {
        let settings = parse(&["--sse"], &[]).unwrap();
        assert_eq!((settings.max_sessions, settings.max_sessions_per_key, settings.max_sessions_per_address), (4096, 1024, 256));
        assert_eq!(settings.http.session_unused_timeout, Duration::from_secs(10));
        let env = [("MCP_PROXY_MAX_SESSIONS_PER_ADDRESS", "0"), ("MCP_PROXY_SESSION_UNUSED_TIMEOUT", "2")];
        let settings = parse(&["--sse"], &env).unwrap();
        assert_eq!((settings.max_sessions_per_address, settings.http.session_unused_timeout), (0, Duration::from_secs(2)));
    }

    const OAUTH: [(&str, &str); 2] =
        [("MCP_PROXY_OAUTH_ISSUER", "https://as.example"), ("MCP_PROXY_OAUTH_RESOURCE", "https://hub.lan/mcp")];

    #[test]
    fn oauth_is_off_unless_an_issuer_and_resource_are_given() {
        assert!(parse(&["--sse"], &[]).unwrap().http.oauth.is_none());
        let oauth = parse(&["--sse"], &OAUTH).unwrap().http.oauth.unwrap();
        assert_eq!((oauth.issuer.as_str(), oauth.resource.as_str()), ("https://as.example", "https://hub.lan/mcp"));
        assert_eq!((oauth.leeway, oauth.scopes.len()), (Duration::from_secs(60), 0));
        let err = parse(&["--sse"], &OAUTH[..1]).unwrap_err().to_string();
        assert!(err.contains("MCP_PROXY_OAUTH_ISSUER needs MCP_PROXY_OAUTH_RESOURCE"), "{err}");
    }

    #[test]
    fn an_oauth_issuer_must_be_https_unless_on_this_machine() {
        let env = |issuer| [("MCP_PROXY_OAUTH_ISSUER", issuer), OAUTH[1]];
        let err = parse(&["--sse"], &env("http://as.example")).unwrap_err().to_string();
        assert!(err.contains("'http://as.example' must be https"), "{err}");
        assert!(parse(&["--sse"], &env("http://127.0.0.1:4444")).is_ok());
        assert!(parse(&["--sse"], &env("http://[::1]:4444/realm")).is_ok());
        for bad in ["as.example", "ftp://as.example", "https://as.example/?tenant=1", "https://as.example#x"] {
            assert!(parse(&["--sse"], &env(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn oauth_scopes_leeway_and_introspection_are_read() {
        let mut env = OAUTH.to_vec();
        env.extend([
            ("MCP_PROXY_OAUTH_SCOPES", "mcp:tools  mcp:read"),
            ("MCP_PROXY_OAUTH_LEEWAY", "0"),
            ("MCP_PROXY_OAUTH_INTROSPECTION_CLIENT_ID", "rs"),
            ("MCP_PROXY_OAUTH_INTROSPECTION_CLIENT_SECRET", "s3cret"),
        ]);
        let settings = parse(&["--sse"], &env).unwrap();
        let oauth = settings.http.oauth.as_ref().unwrap();
        assert_eq!((oauth.scopes.as_slice(), oauth.leeway), (&["mcp:tools".to_owned(), "mcp:read".to_owned()][..], Duration::ZERO));
        assert_eq!(oauth.introspection.as_ref().map(|c| c.client_id.as_str()), Some("rs"));
        assert!(settings.secrets().contains(&"s3cret".to_owned()), "the introspection secret is masked in logs");
        env.pop();
        assert!(parse(&["--sse"], &env).unwrap_err().to_string().contains("go together"));
    }

    #[test]
    fn a_client_metadata_url_is_https_with_a_path_of_its_own() {
        let url = |value| parse(&["--sse"], &[("MCP_PROXY_OAUTH_CLIENT_METADATA_URL", value)]).map(|s| s.http.client_metadata_url);
        assert_eq!(url("https://hub.lan/oauth-client.json").unwrap().as_deref(), Some("https://hub.lan/oauth-client.json"));
        for bad in
            ["http://hub.lan/oauth-client.json", "https://hub.lan", "https://hub.lan/", "https://hub.lan/mcp", "https://hub.lan/admin/x"]
        {
            assert!(url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn login_and_logout_name_a_server() {
        assert_eq!(parse(&["login", "github"], &[]).unwrap().mode, Mode::Login { server: "github".into(), open: false });
        assert_eq!(parse(&["--open", "login", "x"], &[]).unwrap().mode, Mode::Login { server: "x".into(), open: true });
        assert_eq!(parse(&["logout", "x", "--config", "c.json"], &[]).unwrap().mode, Mode::Logout { server: "x".into() });
        assert!(parse(&["login"], &[]).unwrap_err().to_string().contains("login needs the key of a server"));
        assert!(parse(&["--sse", "login", "x"], &[]).is_err());
        assert!(parse(&["--sse", "--open"], &[]).unwrap_err().to_string().contains("--open goes with login SERVER"));
    }

    #[cfg(feature = "tls")]
    #[test]
    fn tls_files_come_from_flags_or_environment() {
        let files = |cert: &str, key: &str| Some(TlsFiles { cert: cert.into(), key: key.into() });
        assert_eq!(parse(&["--sse"], &[]).unwrap().http.tls, None);
        let s = parse(&["--sse", "--tls-cert", "c.pem", "--tls-key", "k.pem"], &[("MCP_PROXY_TLS_CERT", "e.pem")]);
        assert_eq!(s.unwrap().http.tls, files("c.pem", "k.pem"));
        let s = parse(&["--sse"], &[("MCP_PROXY_TLS_CERT", "c.pem"), ("MCP_PROXY_TLS_KEY", "k.pem")]);
        assert_eq!(s.unwrap().http.tls, files("c.pem", "k.pem"));
    }

    #[test]
    fn a_tls_certificate_without_its_key_or_a_key_without_its_certificate_is_a_usage_error() {
        let err = parse(&["--sse", "--tls-cert", "c.pem"], &[]).unwrap_err().to_string();
        assert!(err.contains("--tls-cert needs --tls-key"), "{err}");
        let err = parse(&["--sse"], &[("MCP_PROXY_TLS_KEY", "k.pem")]).unwrap_err().to_string();
        assert!(err.contains("--tls-key needs --tls-cert"), "{err}");
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn tls_files_are_refused_by_a_build_without_tls() {
        let err = parse(&["--sse", "--tls-cert", "c.pem", "--tls-key", "k.pem"], &[]).unwrap_err().to_string();
        assert!(err.contains("built without TLS"), "{err}");
    }

    #[test]
    fn the_admin_cookie_is_secure_over_https_unless_said_otherwise() {
        let admin = |extra: &[(&'static str, &'static str)]| {
            let mut env = vec![("ENABLE_ADMIN_UI", "1"), ("MCP_PROXY_TLS_CERT", "c.pem"), ("MCP_PROXY_TLS_KEY", "k.pem")];
            env.extend_from_slice(extra);
            parse(&["--sse"], &env).map(|s| s.http.admin.unwrap().cookie_secure)
        };
        if cfg!(feature = "tls") {
            assert!(admin(&[]).unwrap());
            assert!(!admin(&[("ADMIN_COOKIE_SECURE", "false")]).unwrap());
        }
        assert!(!parse(&["--sse"], &[("ENABLE_ADMIN_UI", "1")]).unwrap().http.admin.unwrap().cookie_secure);
    }

    #[test]
    fn list_tools_mode() {
        assert_eq!(parse(&["--list-tools"], &[]).unwrap().mode, Mode::ListTools);
    }
}
