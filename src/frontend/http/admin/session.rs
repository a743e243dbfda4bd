//! Admin logins: random session ids in an HttpOnly, SameSite=Strict cookie, a CSRF token per session,
//! expiry, and limits on failed logins: per address, and in all (guessing from many addresses).
//!
//! No lock-out lasts forever for the right password: one address's lock-out ends a minute after its
//! failures; while failures from everywhere hold the global one, an address that logged in before is
//! not held by it, and one attempt every few seconds is still checked, so an attacker who keeps the
//! global cap full does not keep the administrator out.
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
/// Failed logins from all addresses together within the window, beyond which logins are held.
const GLOBAL_FAILURES_ALLOWED: usize = 50;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// While the global limit holds, one attempt in this long is still checked.
const GLOBAL_TRIAL_EVERY: Duration = Duration::from_secs(5);
/// Addresses that logged in, remembered (the most recent) so others' failures do not lock them out.
const TRUSTED_ADDRESSES: usize = 64;

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
    failures: Mutex<Failures>,
}

#[derive(Default)]
struct Failures {
    by_address: HashMap<Option<IpAddr>, Vec<Instant>>,
    /// Every failure within the window, from any address.
    all: Vec<Instant>,
    /// The last attempt checked while the global limit held.
    last_trial: Option<Instant>,
    trusted: Vec<Option<IpAddr>>,
}

impl Failures {
    /// Forgets failures older than the window, for every address, so the map cannot grow with addresses.
    fn prune(&mut self, now: Instant) {
        let recent = |t: &Instant| now.duration_since(*t) < FAILURE_WINDOW;
        self.by_address.retain(|_, times| {
            times.retain(recent);
            !times.is_empty()
        });
        self.all.retain(recent);
    }

    /// Whether an attempt from `peer` may be checked now.
    fn admits(&mut self, peer: Option<IpAddr>, now: Instant) -> bool {
        self.prune(now);
        if self.by_address.get(&peer).is_some_and(|times| times.len() >= FAILURES_ALLOWED) {
            return false;
        }
        if self.all.len() < GLOBAL_FAILURES_ALLOWED || self.trusted.contains(&peer) {
            return true;
        }
        let trial = self.last_trial.is_none_or(|t| now.duration_since(t) >= GLOBAL_TRIAL_EVERY);
        if trial {
            self.last_trial = Some(now);
        }
        trial
    }

    fn failed(&mut self, peer: Option<IpAddr>, now: Instant) {
        self.by_address.entry(peer).or_default().push(now);
        self.all.push(now);
    }

    fn succeeded(&mut self, peer: Option<IpAddr>) {
        self.trusted.retain(|p| *p != peer);
        if self.trusted.len() >= TRUSTED_ADDRESSES {
            self.trusted.remove(0);
        }
        self.trusted.push(peer);
    }
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
        self.login_at(settings, user, password, peer, Instant::now())
    }

    fn login_at(
        &self,
        settings: &AdminSettings,
        user: &str,
        password: &str,
        peer: Option<IpAddr>,
        now: Instant,
    ) -> Result<(String, Session), LoginError> {
        if !locked(&self.failures).admits(peer, now) {
            return Err(LoginError::RateLimited);
        }
        // Both compared every time, so timing says nothing about which one was wrong.
        let user_ok = constant_time_eq(user.as_bytes(), settings.username.as_bytes());
        // Without a password (start-up makes one when ADMIN_PASSWORD is unset) nobody logs in.
        let password_ok = settings.password.as_deref().is_some_and(|expected| constant_time_eq(password.as_bytes(), expected.as_bytes()));
        if !(user_ok & password_ok) {
            locked(&self.failures).failed(peer, now);
            // What the client typed is not logged: it may be a password typed in the wrong field.
            let what = if user_ok { "wrong password" } else { "unknown user" };
            log::warn!("admin login failed ({what}) from {}", peer.map_or("?".into(), |p| p.to_string()));
            return Err(LoginError::Invalid);
        }
        locked(&self.failures).succeeded(peer);
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

#[cfg(test)]
mod tests {
    use super::*;

    const RIGHT: &str = "right-password";

    fn settings() -> AdminSettings {
        AdminSettings { username: "admin".into(), password: Some(RIGHT.into()), cookie_secure: false, tools_folder: None, terminal: None }
    }

    fn address(n: u32) -> Option<IpAddr> {
        Some(IpAddr::from(n.to_be_bytes()))
    }

    /// Fails the global limit full from as many addresses, none over its own limit.
    fn flood(sessions: &Sessions, now: Instant) {
        for n in 0..u32::try_from(GLOBAL_FAILURES_ALLOWED).unwrap() {
            assert!(matches!(sessions.login_at(&settings(), "admin", "guess", address(1000 + n), now), Err(LoginError::Invalid)));
        }
    }

    #[test]
    fn failed_logins_from_many_addresses_hold_logins_from_everywhere() {
        let (sessions, now) = (Sessions::default(), Instant::now());
        flood(&sessions, now);
        let attempt = |password| sessions.login_at(&settings(), "admin", password, address(1), now);
        assert!(matches!(attempt("guess"), Err(LoginError::Invalid)), "the first attempt under the lock is a trial");
        assert!(matches!(attempt(RIGHT), Err(LoginError::RateLimited)), "the next within the trial interval is held");
    }

    #[test]
    fn the_right_password_gets_through_a_global_lock_out_on_a_trial() {
        let (sessions, now) = (Sessions::default(), Instant::now());
        flood(&sessions, now);
        assert!(matches!(sessions.login_at(&settings(), "admin", "guess", address(1), now), Err(LoginError::Invalid)));
        let later = now + GLOBAL_TRIAL_EVERY;
        assert!(sessions.login_at(&settings(), "admin", RIGHT, address(1), later).is_ok());
    }

    #[test]
    fn an_address_that_logged_in_before_is_not_held_by_others_failures() {
        let (sessions, now) = (Sessions::default(), Instant::now());
        assert!(sessions.login_at(&settings(), "admin", RIGHT, address(1), now).is_ok());
        flood(&sessions, now);
        assert!(matches!(sessions.login_at(&settings(), "admin", "guess", address(2), now), Err(LoginError::Invalid)));
        assert!(sessions.login_at(&settings(), "admin", RIGHT, address(1), now).is_ok());
    }

    #[test]
    fn an_addresss_lock_out_ends_with_its_window() {
        let (sessions, now) = (Sessions::default(), Instant::now());
        for _ in 0..FAILURES_ALLOWED {
            assert!(matches!(sessions.login_at(&settings(), "admin", "guess", address(1), now), Err(LoginError::Invalid)));
        }
        assert!(matches!(sessions.login_at(&settings(), "admin", RIGHT, address(1), now), Err(LoginError::RateLimited)));
        assert!(sessions.login_at(&settings(), "admin", RIGHT, address(1), now + FAILURE_WINDOW).is_ok());
    }
}
