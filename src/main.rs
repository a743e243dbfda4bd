//! mcp-proxy-server: many MCP servers served as one.
//!
//! `main` reads the settings, starts logging, loads the server config and hands over to the mode asked
//! for. ARCHITECTURE.md maps the threads and channels; the dispatcher lives in `hub`.

use event::Event;
use hub::{Hub, HubSettings};
use mcp_proxy_server::{
    children, config, config_watch, event, frontend, http, hub, list_tools, logging, profile_config, random, settings, signals, tool_config,
};
use settings::{env_lookup, Mode, Settings};
use std::process::ExitCode;
use std::time::Duration;

/// How long processes the proxy adopted get between SIGTERM and SIGKILL when it exits.
const ORPHAN_GRACE: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    let settings = match Settings::from_process() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("mcp-proxy-server: {e}");
            return ExitCode::from(2);
        }
    };
    match settings.mode {
        Mode::Help => return print(settings::USAGE),
        Mode::Version => return print(&format!("mcp-proxy-server {}\n", env!("CARGO_PKG_VERSION"))),
        Mode::Stdio | Mode::Http | Mode::ListTools | Mode::Check | Mode::Login { .. } | Mode::Logout { .. } => {}
    }
    logging::init(&settings.log_filter, settings.log_json, settings.secrets());
    for warning in &settings.warnings {
        log::warn!("{warning}");
    }
    if matches!(settings.mode, Mode::Login { .. } | Mode::Logout { .. }) {
        return match oauth_account(&settings) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                log::error!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    let outcome = run(&settings);
    // The backends have stopped; what they left behind outside their process groups goes too.
    children::kill_adopted(ORPHAN_GRACE);
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `--help` and `--version`: `text` on stdout (a reader that has gone, as in `| head -1`, is no failure).
fn print(text: &str) -> ExitCode {
    match list_tools::to_stdout(|out| out.write_all(text.as_bytes())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcp-proxy-server: cannot write to stdout: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `login SERVER` and `logout SERVER`: one remote server's OAuth tokens, in the store beside the config.
#[cfg(feature = "oauth")]
fn oauth_account(settings: &Settings) -> Result<(), Box<dyn std::error::Error>> {
    use mcp_proxy_server::oauth;
    let store = oauth::store::TokenStore::beside(&settings.config_path);
    match &settings.mode {
        Mode::Login { server, open } => {
            let config = config::load(&settings.config_path, &env_lookup)?;
            logging::add_secrets(config.servers.iter().flat_map(|s| s.secrets(&env_lookup)));
            let Some(found) = config.servers.iter().find(|s| s.key == *server) else {
                let keys: Vec<&str> = config.servers.iter().map(|s| s.key.as_str()).collect();
                return Err(format!("{} has no server '{server}' (it has: {})", settings.config_path.display(), keys.join(", ")).into());
            };
            oauth::login::login(found, &store, *open, settings.http.client_metadata_url.as_deref())
        }
        Mode::Logout { server } => oauth::login::logout(server, &store),
        _ => Ok(()),
    }
}

#[cfg(not(feature = "oauth"))]
fn oauth_account(_: &Settings) -> Result<(), Box<dyn std::error::Error>> {
    Err("this build has no OAuth support (cargo feature `oauth`)".into())
}

/// Runs the mode asked for; `Ok(false)` when it ran but found problems (`--check`).
fn run(settings: &Settings) -> Result<bool, Box<dyn std::error::Error>> {
    let mut config = config::load(&settings.config_path, &env_lookup)?;
    logging::add_secrets(config.servers.iter().flat_map(|s| s.secrets(&env_lookup)));
    // A profile that cannot be bound would let its keys see everything: nothing starts.
    let credentials = (settings.mode == Mode::Http)
        .then(|| profile_config::Credentials { keys: settings.http.keys.clone(), tokens: settings.http.tokens.clone() });
    let unbound = config_watch::bind_profiles(&mut config.profiles, credentials.as_ref());
    if !unbound.is_empty() {
        return Err(format!("{}: {}", settings.config_path.display(), unbound.join("; ")).into());
    }
    if let Some(name) = settings.profile.as_deref().filter(|name| !config.profiles.iter().any(|p| p.name == *name)) {
        return Err(format!("--profile '{name}': {} has no such profile", settings.config_path.display()).into());
    }
    for problem in &config.problems {
        log::error!("{problem} (this server is skipped)");
    }
    log::info!("{}: {} servers", settings.config_path.display(), config.servers.len());
    let tools = tool_config::load(&settings.tool_config_path)?;
    for problem in &tools.problems {
        log::error!("{problem} (this override is skipped)");
    }
    let files_ok = config.problems.is_empty() && tools.problems.is_empty();
    let (events, inbox) = crossbeam_channel::unbounded::<Event>();
    let (reload, reload_requests) = crossbeam_channel::unbounded();
    // Read before anything starts, so a certificate that cannot be used stops the start-up.
    let transport = match settings.mode {
        Mode::Http => frontend::http::transport(&settings.http)?,
        _ => http::Transport::Plain,
    };
    // Both block signals for every thread started after them: they come before any other thread.
    children::adopt_orphans()?;
    let certificate = transport.clone();
    signals::install(events.clone(), reload, move || certificate.reload())?;
    let hub_settings = HubSettings {
        separator: settings.separator.clone(),
        request_timeout: settings.request_timeout,
        startup_timeout: settings.startup_timeout,
        exit_when_no_clients: settings.mode != Mode::Http,
        session_idle_timeout: settings.http.session_idle_timeout,
        session_unused_timeout: settings.http.session_unused_timeout,
        restart_backoff: settings.restart_backoff,
        retries: settings.retries,
        client_capabilities: match settings.mode {
            Mode::Http => Some(settings.http.client_capabilities()),
            _ => None,
        },
        shutdown_grace: settings.shutdown_grace,
        max_in_flight: settings.max_in_flight,
        max_sessions: settings.max_sessions,
        max_sessions_per_key: settings.max_sessions_per_key,
        max_sessions_per_address: settings.max_sessions_per_address,
    };
    let served = hub::Served { servers: config.servers, profiles: config.profiles, overrides: tools.tools };
    let hub = Hub::new(hub_settings, served, events.clone());
    if matches!(settings.mode, Mode::Stdio | Mode::Http) {
        let watch = config_watch::Watch {
            config_path: settings.config_path.clone(),
            tool_config_path: settings.tool_config_path.clone(),
            poll: settings.config_poll,
            credentials: credentials.clone(),
        };
        let watcher_events = events.clone();
        std::thread::Builder::new().name("config-watch".into()).spawn(move || config_watch::run(watch, reload_requests, watcher_events))?;
    }
    match settings.mode {
        Mode::ListTools => {
            list_tools::run(hub, events, inbox, settings.startup_timeout, list_tools::Report::Tools, settings.profile.clone())
        }
        Mode::Check => {
            let catalog_ok = list_tools::run(hub, events, inbox, settings.startup_timeout, list_tools::Report::Check, None)?;
            Ok(files_ok && catalog_ok)
        }
        Mode::Http => {
            let listener = bind(&settings.http, transport.scheme())?;
            let admin = admin_ui(settings, events.clone())?;
            let http = settings.http.clone();
            std::thread::Builder::new()
                .name("accept".into())
                .spawn(move || frontend::http::serve(listener, transport, http, events, admin))?;
            hub.run(inbox);
            #[cfg(feature = "web-terminal")]
            frontend::http::admin::terminal::Terminals::kill_all();
            Ok(true)
        }
        _ => {
            let stdout = frontend::stdio::serve(events, settings.profile.clone())?;
            hub.run(inbox);
            // The dispatcher has dropped the client's outbox; wait for the last replies to be written.
            let _ = stdout.join();
            Ok(true)
        }
    }
}

/// Binds the HTTP listener and says where, loudly when it is reachable from other machines without auth.
fn bind(http: &settings::HttpSettings, scheme: &str) -> Result<std::net::TcpListener, Box<dyn std::error::Error>> {
    let listener = std::net::TcpListener::bind((http.host.as_str(), http.port))
        .map_err(|e| format!("cannot listen on {}:{}: {e}", http.host, http.port))?;
    let addr = listener.local_addr()?;
    log::info!("listening on {scheme}://{addr} (Streamable HTTP: /mcp, SSE: /sse)");
    if !addr.ip().is_loopback() && http.keys.is_empty() && http.tokens.is_empty() && http.oauth.is_none() {
        log::warn!(
            "listening on {addr} with no API key, token or OAuth configured: anyone who can reach this port can use every tool. \
             Set ALLOWED_KEYS, ALLOWED_TOKENS or MCP_PROXY_OAUTH_ISSUER."
        );
    }
    Ok(listener)
}

/// The admin UI, if enabled, and never with a well-known password: with `ADMIN_PASSWORD` unset a random
/// one is made for this run and printed once; set to the original's default `password`, the UI is off.
fn admin_ui(settings: &Settings, events: crossbeam_channel::Sender<Event>) -> std::io::Result<Option<frontend::http::admin::Admin>> {
    let Some(mut admin) = settings.http.admin.clone() else {
        log::info!("Admin UI is DISABLED. Set ENABLE_ADMIN_UI=true to enable.");
        return Ok(None);
    };
    if admin.has_default_password() {
        log::error!(
            "refusing to serve the admin UI: ADMIN_PASSWORD is the original's public default; choose another, or unset it for a random one"
        );
        return Ok(None);
    }
    if admin.password.is_none() {
        let password = random::token_hex(16)?;
        // Printed, not logged: a log filter could hide it, and the in-memory log that /admin/logs shows
        // must not keep it. Masked in every log line from here on.
        eprintln!("admin UI login for this run: user {:?}, password {password} (ADMIN_PASSWORD is not set)", admin.username);
        logging::add_secrets([password.clone()]);
        admin.password = Some(password);
    }
    log::info!("admin UI on /admin/ (user {:?})", admin.username);
    let watch = config_watch::Watch {
        config_path: settings.config_path.clone(),
        tool_config_path: settings.tool_config_path.clone(),
        poll: settings.config_poll,
        credentials: Some(profile_config::Credentials { keys: settings.http.keys.clone(), tokens: settings.http.tokens.clone() }),
    };
    let https = settings.http.tls.is_some();
    Ok(Some(frontend::http::admin::Admin::new(admin, watch, settings.separator.clone(), events, settings.http.keepalive, https)))
}
