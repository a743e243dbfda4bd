//! Admin logins: random session ids in an HttpOnly, SameSite=Strict cookie, a CSRF token per session,
//! expiry, and a limit on failed logins per address.
//!
//! These maps belong to the admin pages, not to MCP routing, so a mutex is the simple, right tool.

use super::super::auth::constant_time_eq;
use crate::http::Request;
use crate::settings::AdminSettings;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub const COOKIE: &str = "mcp_admin";
const LIFETIME: Duration = Duration::from_secs(24 * 3600);
const FAILURES_ALLOWED: usize = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct Session {
    pub user: String,
    pub csrf: String,
    expires: Instant,
}

pub enum LoginError {
    Invalid,
    RateLimited,
    /// The kernel gave no randomness for the session id.
    Internal(String),
}

#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<Option<IpAddr>, Vec<Instant>>>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Sessions {
    /// Checks credentials; on success returns the new session's id and CSRF token.
    pub fn login(
        &self,
        settings: &AdminSettings,
        user: &str,
        password: &str,
        peer: Option<IpAddr>,
    ) -> Result<(String, Session), LoginError> {
        let now = Instant::now();
        {
            // Old failures are forgotten for every address, so the map cannot grow with addresses.
            let mut failures = locked(&self.failures);
            failures.retain(|_, times| {
                times.retain(|t| now.duration_since(*t) < FAILURE_WINDOW);
                !times.is_empty()
            });
            if failures.get(&peer).is_some_and(|times| times.len() >= FAILURES_ALLOWED) {
                return Err(LoginError::RateLimited);
            }
        }
        // Both compared every time, so timing says nothing about which one was wrong.
        let user_ok = constant_time_eq(user.as_bytes(), settings.username.as_bytes());
        // Without a password (start-up makes one when ADMIN_PASSWORD is unset) nobody logs in.
        let password_ok = settings.password.as_deref().is_some_and(|expected| constant_time_eq(password.as_bytes(), expected.as_bytes()));
        if !(user_ok & password_ok) {
            locked(&self.failures).entry(peer).or_default().push(now);
            // What the client typed is not logged: it may be a password typed in the wrong field.
            let what = if user_ok { "wrong password" } else { "unknown user" };
            log::warn!("admin login failed ({what}) from {}", peer.map_or("?".into(), |p| p.to_string()));
            return Err(LoginError::Invalid);
        }
        let token = || crate::random::token_hex(32).map_err(|e| LoginError::Internal(e.to_string()));
        let (id, csrf) = (token()?, token()?);
        let session = Session { user: user.to_owned(), csrf, expires: now + LIFETIME };
        let mut live = locked(&self.live);
        live.retain(|_, s| s.expires > now);
        live.insert(id.clone(), session.clone());
        Ok((id, session))
    }

    /// The live session the request's cookie names.
    pub fn find(&self, req: &Request) -> Option<Session> {
        let id = req.cookie(COOKIE)?;
        let live = locked(&self.live);
        live.get(id).filter(|s| s.expires > Instant::now()).cloned()
    }

    pub fn logout(&self, req: &Request) {
        if let Some(id) = req.cookie(COOKIE) {
            locked(&self.live).remove(id);
        }
    }
}

/// The `Set-Cookie` value for a session id (or, with `None`, one that clears the cookie).
pub fn cookie(id: Option<&str>, secure: bool) -> String {
    let (value, age) = match id {
        Some(id) => (id, LIFETIME.as_secs()),
        None => ("", 0),
    };
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={value}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={age}{secure}")
}

/// True when the request carries the session's CSRF token.
pub fn csrf_ok(req: &Request, session: &Session) -> bool {
    req.header("x-csrf-token").is_some_and(|t| constant_time_eq(t.as_bytes(), session.csrf.as_bytes()))
}
