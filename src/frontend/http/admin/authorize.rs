//! The admin UI's "Authorize" button for a remote server that needs an OAuth login: the `login` flow
//! (`oauth::login::Started`) with the admin page itself as the way back.
//!
//! `POST /admin/server/authorize/<key>` (an admin session, CSRF) starts a login and answers the URL to
//! send the browser to; the authorization server sends it back to `GET /admin/oauth/callback`. The
//! session cookie is `SameSite=Strict`, so it does not come with that cross-site redirect: the callback
//! is found by its `state` alone (128 random bits, one use, ten minutes), which is what `state` is for.
//! The proxy registers as a `web` client for this redirect each time (the spec wants redirects to be
//! https or localhost: an admin UI served over plain http on a LAN name gets an error from the
//! authorization server, which the page shows).

use crate::config::{self, ServerConfig};
use crate::event::Event;
use crate::http::{Request, Response};
use crate::oauth::login::{Registering, Started};
use crate::oauth::store::TokenStore;
use crossbeam_channel::Sender;
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a started login waits for its answer.
const PENDING_FOR: Duration = Duration::from_secs(600);
/// Logins under way at most (each one is a click in an admin session).
const MAX_PENDING: usize = 64;

#[derive(Default)]
pub struct Authorizations {
    pending: Mutex<HashMap<String, (Started, Instant)>>,
}

impl Authorizations {
    /// Starts a login to server `key` of the config at `config_path`, answering `{"url"}`.
    pub fn start(&self, req: &Request, key: &str, config_path: &Path, https: bool) -> Response {
        let server = match find_server(config_path, key) {
            Ok(server) => server,
            Err(why) => return Response::json(404, &json!({ "error": why })),
        };
        let Some(host) = req.header("host") else { return Response::json(400, &json!({ "error": "no Host header" })) };
        let scheme = if https { "https" } else { "http" };
        let redirect_uri = format!("{scheme}://{host}/admin/oauth/callback");
        {
            // Checked first: starting a login registers a client at the authorization server.
            let mut pending = self.lock();
            pending.retain(|_, (_, at)| at.elapsed() < PENDING_FOR);
            if pending.len() >= MAX_PENDING {
                return Response::json(429, &json!({ "error": "too many logins under way; try again in a few minutes" }));
            }
        }
        let store = TokenStore::beside(config_path);
        match Started::begin(&server, &store, redirect_uri, Registering::Web, None) {
            Ok(started) => {
                let url = started.url.clone();
                log::info!("[{key}] admin login started at {}", started.issuer());
                self.lock().insert(started.state.clone(), (started, Instant::now()));
                Response::json(200, &json!({ "url": url }))
            }
            Err(e) => Response::json(502, &json!({ "error": format!("cannot start a login to '{key}': {e}") })),
        }
    }

    /// The authorization server's answer: the login it belongs to is finished and the browser sent back
    /// to the admin page, or shown what went wrong.
    pub fn callback(&self, req: &Request, config_path: &Path, events: &Sender<Event>) -> Response {
        let params = Request::form_fields(&req.query);
        let state = params.iter().find(|(k, _)| k == "state").map(|(_, v)| v.clone()).unwrap_or_default();
        let started = self.lock().remove(&state).filter(|(_, at)| at.elapsed() < PENDING_FOR).map(|(started, _)| started);
        let Some(started) = started else {
            return page(
                400,
                "This login is unknown or expired (each Authorize link works once, for ten minutes). Start again from the admin page.",
            );
        };
        let key = started.server().to_owned();
        match started.complete(&params, &TokenStore::beside(config_path)) {
            Ok(()) => {
                log::info!("[{key}] logged in from the admin UI");
                let _ = events.send(Event::TokensChanged);
                Response::empty(303).with_header("Location", &format!("/admin/?authorized={key}"))
            }
            Err(e) => {
                log::warn!("[{key}] admin login failed: {e}");
                page(400, &format!("The login to '{key}' failed: {e}"))
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Started, Instant)>> {
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn find_server(config_path: &Path, key: &str) -> Result<ServerConfig, String> {
    let loaded = config::load(config_path, &crate::settings::env_lookup).map_err(|e| e.to_string())?;
    loaded.servers.into_iter().find(|s| s.key == key).ok_or_else(|| format!("no server '{key}' in the config"))
}

fn page(status: u16, text: &str) -> Response {
    Response::new(status, "text/html; charset=utf-8", crate::oauth::login::page(text, Some(("/admin/", "Back to the admin page"))))
}
