//! Live reload: re-reads both config files when they change (polled by modification time and size),
//! on SIGHUP, and on request (the admin API), and hands a validated result to the dispatcher.
//!
//! Polling needs no dependency and costs one `stat` per file per interval. A file that does not parse,
//! or has any entry that cannot be used, is reported in full and the running configuration is kept:
//! applying a half-valid file would stop servers that are working.

use crate::config;
use crate::event::Event;
use crate::profile_config::{Credentials, Profile};
use crate::settings;
use crate::tool_config;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub struct Watch {
    pub config_path: PathBuf,
    pub tool_config_path: PathBuf,
    /// `None`: no polling, only SIGHUP and explicit requests.
    pub poll: Option<Duration>,
    /// What profiles' keys and tokens are bound to (HTTP mode); `None`: no binding (stdio).
    pub credentials: Option<Credentials>,
}

/// A file's identity for change detection.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Runs until the dispatcher is gone. `requests` carries SIGHUP and admin reload requests. A change of
/// the OAuth token store (a `login` in another process) is passed on as [`Event::TokensChanged`].
pub fn run(watch: Watch, requests: Receiver<()>, events: Sender<Event>) {
    let tokens_path = watch.config_path.with_file_name(config::OAUTH_TOKENS_FILE);
    let mut tokens = stamp(&tokens_path);
    let mut stamps = (stamp(&watch.config_path), stamp(&watch.tool_config_path));
    // Without polling, wait for requests only (a day at a time).
    let interval = watch.poll.unwrap_or(Duration::from_secs(86_400));
    loop {
        let requested = match requests.recv_timeout(interval) {
            Ok(()) => true,
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let now = (stamp(&watch.config_path), stamp(&watch.tool_config_path));
        let changed = watch.poll.is_some() && now != stamps;
        stamps = now;
        let tokens_now = stamp(&tokens_path);
        if watch.poll.is_some() && tokens_now != tokens && events.send(Event::TokensChanged).is_err() {
            return;
        }
        tokens = tokens_now;
        if !(requested || changed) {
            continue;
        }
        match read(&watch) {
            Ok(event) => {
                if events.send(event).is_err() {
                    return;
                }
            }
            Err(problems) => {
                for problem in problems {
                    log::error!("reload: {problem}");
                }
                log::error!("reload: keeping the running configuration");
            }
        }
    }
}

/// Reads both files; any problem at all refuses the whole reload.
pub fn read(watch: &Watch) -> Result<Event, Vec<String>> {
    let mut servers = config::load(&watch.config_path, &settings::env_lookup).map_err(|e| vec![e.to_string()])?;
    let tools = tool_config::load(&watch.tool_config_path).map_err(|e| vec![e.to_string()])?;
    let mut problems: Vec<String> = servers.problems.into_iter().chain(tools.problems).collect();
    problems.extend(bind_profiles(&mut servers.profiles, watch.credentials.as_ref()));
    if !problems.is_empty() {
        return Err(problems);
    }
    crate::logging::add_secrets(servers.servers.iter().flat_map(|s| s.secrets(&settings::env_lookup)));
    Ok(Event::Reload { servers: servers.servers, profiles: servers.profiles, overrides: tools.tools })
}

/// Binds profiles to the credentials they name (when there are credentials to bind to), and keeps
/// their secrets out of the logs; the problems, naming each profile.
pub fn bind_profiles(profiles: &mut [Profile], credentials: Option<&Credentials>) -> Vec<String> {
    crate::logging::add_secrets(crate::profile_config::secrets(profiles));
    let Some(credentials) = credentials else { return Vec::new() };
    let unbound = profiles.iter().filter(|p| !p.keys.is_empty() || !p.tokens.is_empty());
    if credentials.keys.is_empty() && credentials.tokens.is_empty() {
        return unbound
            .map(|p| format!("profile '{}' binds keys or tokens, but none are configured (ALLOWED_KEYS, ALLOWED_TOKENS): everyone may use every profile", p.name))
            .collect();
    }
    crate::profile_config::bind(profiles, credentials)
}
