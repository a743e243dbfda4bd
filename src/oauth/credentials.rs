//! A remote backend's OAuth access token while the proxy runs: read from the token store, sent with
//! every request, refreshed shortly before it expires and when the server refuses it, and given up
//! (the server then "needs login") when the refresh token is refused too.
//!
//! One `Credentials` per connection, used by all its threads: the mutex makes one refresh at a time, and
//! a thread that waited for it uses the token the other got. Across processes (a `login` while the proxy
//! runs) the store's lock and a re-read before each refresh keep a rotated refresh token from being used
//! twice. Refreshes run on the backend's own threads, never the dispatcher's.

use super::client::{self, covers, ClientError};
use super::discovery::{self, FetchError};
use super::store::{ServerTokens, TokenStore};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

/// Refresh this long before the access token expires, at most (and at most half its lifetime, so a
/// short-lived token is not refreshed on every request).
const REFRESH_MARGIN_S: u64 = 60;
/// After a refresh failed for want of the authorization server, requests go on with the token in
/// hand for this long before one tries again (each try may wait the whole fetch timeout).
const RETRY_REFRESH: Duration = Duration::from_secs(30);
/// The most a server's `403 insufficient_scope` answers may ask for, together.
const MAX_WANTED_SCOPE: usize = 1024;
/// A token this fresh that the server still refuses will not be made acceptable by another refresh.
const FRESH: Duration = Duration::from_secs(60);

pub struct Credentials {
    key: String,
    url: String,
    store: TokenStore,
    agent: ureq::Agent,
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    tokens: Option<ServerTokens>,
    /// When `tokens` last changed: a request refused before then was sent with an older token.
    changed: Option<Instant>,
    /// When a refresh last failed for want of the authorization server: not tried again for a while.
    unreachable_since: Option<Instant>,
    /// When this connection last got a token by refreshing.
    refreshed: Option<Instant>,
    /// The store's modification time when `tokens` were read, to notice a `login` cheaply.
    seen: Option<SystemTime>,
    /// The store has been read at least once.
    loaded: bool,
}

/// What to do after the server refused an access token.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Another token is there: send the request again with it.
    Retry,
    /// No token will do until a person logs in; the text says so, and how.
    Login(String),
    /// The token could not be refreshed now (the authorization server does not answer): try later.
    Later(String),
}

impl Credentials {
    pub fn new(key: &str, url: &str, store: TokenStore) -> Credentials {
        Credentials { key: key.to_owned(), url: url.to_owned(), store, agent: discovery::agent(), held: Mutex::new(Held::default()) }
    }

    /// The access token to send now, refreshed first if it is about to expire; `None` before a login.
    pub fn bearer(&self) -> Option<String> {
        let mut held = self.lock();
        // Read once: later a token is read again only when one is refused, so requests to a server
        // that needs no OAuth cost no file system call each.
        if !held.loaded {
            self.reread_if_changed(&mut held);
        }
        let expiring = held.tokens.as_ref().is_some_and(expiring);
        let waiting = held.unreachable_since.is_some_and(|at| at.elapsed() < RETRY_REFRESH);
        if expiring && !waiting {
            if let Next::Login(why) | Next::Later(why) = self.refresh(&mut held, None) {
                log::warn!("[{}] {why}", self.key);
            }
        }
        held.tokens.as_ref().map(|t| t.access_token.clone())
    }

    /// The server answered 401 to a request sent at `sent_at`: `Ok` when another token is there to try
    /// (refreshed now, or by another thread or a `login` since), else why a login is needed.
    pub fn rejected(&self, sent_at: Instant) -> Next {
        let mut held = self.lock();
        self.reread_if_changed(&mut held);
        match held.tokens.as_ref() {
            Some(_) if held.changed.is_some_and(|changed| changed > sent_at) => Next::Retry,
            // Refreshing again would only give the server another token it refuses (a wrong audience,
            // a grant it no longer honours): only a login can help.
            Some(_) if held.refreshed.is_some_and(|refreshed| refreshed.elapsed() < FRESH) => {
                self.needs_login("it refuses even a freshly obtained access token")
            }
            Some(current) => {
                let refused = current.access_token.clone();
                self.refresh(&mut held, Some(&refused))
            }
            None => self.needs_login("it asks for an OAuth login"),
        }
    }

    /// Refreshes under this server's lock in the store (other servers' refreshes go on meanwhile): the
    /// store is read again first, and a token there other than the one refused is taken instead
    /// (another process refreshed it, or a person logged in).
    fn refresh(&self, held: &mut Held, refused: Option<&str>) -> Next {
        let next = match self.store.lock_server(&self.key) {
            Ok(_one_refresh) => self.refresh_locked(held, refused),
            Err(e) => Next::Later(format!("the OAuth token store: {e}")),
        };
        match &next {
            Next::Retry => {
                held.changed = Some(Instant::now());
                held.unreachable_since = None;
                held.seen = self.store.modified();
            }
            Next::Login(_) => held.tokens = None,
            Next::Later(_) => held.unreachable_since = Some(Instant::now()),
        }
        next
    }

    fn refresh_locked(&self, held: &mut Held, refused: Option<&str>) -> Next {
        let stored = match self.store.read() {
            Ok(mut stored) => stored.servers.remove(&self.key).filter(|t| covers(&t.resource, &self.url)),
            Err(e) => return Next::Later(format!("the OAuth token store: {e}")),
        };
        let Some(tokens) = stored else { return self.needs_login("its tokens are gone from the store") };
        let in_hand = held.tokens.as_ref().map(|t| t.access_token.as_str());
        let newer = Some(tokens.access_token.as_str()) != in_hand && Some(tokens.access_token.as_str()) != refused;
        if newer && !expiring(&tokens) {
            held.tokens = Some(tokens);
            return Next::Retry;
        }
        match client::refresh(&self.agent, &tokens) {
            Ok(fresh) => match self.store.update(|s| s.servers.insert(self.key.clone(), fresh.clone())) {
                Ok(_) => {
                    log::info!("[{}] OAuth access token refreshed", self.key);
                    held.tokens = Some(fresh);
                    held.refreshed = Some(Instant::now());
                    Next::Retry
                }
                Err(e) => Next::Later(format!("the OAuth token store: {e}")),
            },
            Err(e) if grant_is_over(&e) => {
                if let Err(e) = self.store.update(|s| s.servers.remove(&self.key)) {
                    log::warn!("[{}] the OAuth token store: {e}", self.key);
                }
                self.needs_login(&format!("its refresh was refused ({e})"))
            }
            // The authorization server is unreachable: keep what there is, and try again later.
            Err(e) => Next::Later(format!("cannot refresh the OAuth access token now: {e}")),
        }
    }

    /// The server wants `scope` beyond what the token carries: it is remembered for the next login.
    /// What a server may add is bounded (RFC 6749 scope characters, [`MAX_WANTED_SCOPE`] bytes in all):
    /// it is the server's text, and the person is asked to consent to it.
    pub fn want_scope(&self, scope: &str) {
        let valid =
            scope.split_whitespace().all(|s| s.bytes().all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b)));
        if !valid {
            return log::warn!("[{}] ignored a scope with characters no scope has", self.key);
        }
        let remembered = self.store.update(|stored| {
            if let Some(tokens) = stored.servers.get_mut(&self.key) {
                let wanted = client::union_scopes([tokens.wanted_scope.as_deref(), Some(scope)]);
                if wanted.as_ref().is_some_and(|w| w.len() <= MAX_WANTED_SCOPE) {
                    tokens.wanted_scope = wanted;
                }
            }
        });
        if let Err(e) = remembered {
            log::warn!("[{}] cannot remember the scope it wants: {e}", self.key);
        }
    }

    fn reread_if_changed(&self, held: &mut Held) {
        let modified = self.store.modified();
        if held.seen.is_some() && modified == held.seen {
            return;
        }
        held.seen = modified;
        held.loaded = true;
        match self.store.read() {
            Ok(mut stored) => {
                let tokens = stored.servers.remove(&self.key).filter(|t| covers(&t.resource, &self.url));
                if tokens != held.tokens {
                    held.tokens = tokens;
                    held.changed = Some(Instant::now());
                }
            }
            Err(e) => log::warn!("[{}] cannot read the OAuth tokens: {e}", self.key),
        }
    }

    fn needs_login(&self, why: &str) -> Next {
        Next::Login(format!("needs login: {why}; run `mcp-proxy-server login {}`", self.key))
    }

    fn lock(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// True when the access token should be refreshed before it is used.
fn expiring(tokens: &ServerTokens) -> bool {
    let Some(expires_at) = tokens.expires_at else { return false };
    let margin = tokens.lifetime.map_or(REFRESH_MARGIN_S, |lifetime| (lifetime / 2).min(REFRESH_MARGIN_S));
    super::unix_now() + margin >= expires_at
}

/// The refresh token itself was refused (RFC 6749 5.2): revoked, expired, or used already.
fn grant_is_over(e: &ClientError) -> bool {
    matches!(e, ClientError::Fetch(FetchError::Denied { error, .. }) if error == "invalid_grant" || error == "invalid_client")
        || matches!(e, ClientError::Refused(_))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::store::Registration;

    fn tokens(expires_in: Option<u64>, lifetime: Option<u64>) -> ServerTokens {
        ServerTokens {
            issuer: "https://as.example".into(),
            resource: "https://mcp.example/mcp".into(),
            token_endpoint: "https://as.example/token".into(),
            client: Registration { client_id: "c".into(), client_secret: None },
            access_token: "a".into(),
            refresh_token: None,
            expires_at: expires_in.map(|s| crate::oauth::unix_now() + s),
            lifetime,
            scope: None,
            wanted_scope: None,
        }
    }

    #[test]
    fn a_token_is_refreshed_within_a_minute_of_its_expiry_or_half_its_lifetime() {
        assert!(!expiring(&tokens(None, None)), "no expiry known: used until refused");
        assert!(!expiring(&tokens(Some(3600), Some(3600))));
        assert!(expiring(&tokens(Some(30), Some(3600))));
        assert!(!expiring(&tokens(Some(6), Some(10))), "a 10 s token is good for its first 5 s");
        assert!(expiring(&tokens(Some(4), Some(10))));
    }

    fn store_with(label: &str, tokens: Option<ServerTokens>) -> (Credentials, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("mcp-proxy-credentials-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = TokenStore::beside(&dir.join("mcp_server.json"));
        if let Some(tokens) = tokens {
            store.update(|s| s.servers.insert("remote".into(), tokens)).unwrap();
        }
        (Credentials::new("remote", "https://mcp.example/mcp", store), dir)
    }

    #[test]
    fn without_a_login_there_is_no_token_and_a_refusal_asks_for_one() {
        let (credentials, dir) = store_with("none", None);
        assert_eq!(credentials.bearer(), None);
        let why = credentials.rejected(Instant::now());
        assert_eq!(why, Next::Login("needs login: it asks for an OAuth login; run `mcp-proxy-server login remote`".into()));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_stored_token_is_sent_and_one_for_another_url_is_not() {
        let (credentials, dir) = store_with("stored", Some(tokens(Some(3600), Some(3600))));
        assert_eq!(credentials.bearer().as_deref(), Some("a"));
        let moved = Credentials::new("remote", "https://elsewhere.example/mcp", TokenStore::beside(&dir.join("mcp_server.json")));
        assert_eq!(moved.bearer(), None, "the server's URL changed: its tokens are not sent elsewhere");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_token_refused_after_another_was_stored_is_retried_with_that_one() {
        let (credentials, dir) = store_with("newer", Some(tokens(Some(3600), Some(3600))));
        let sent_at = Instant::now();
        credentials.store.update(|s| s.servers.get_mut("remote").map(|t| t.access_token = "newer".into())).unwrap();
        assert_eq!(credentials.rejected(sent_at), Next::Retry, "a token stored since the refused request was sent is tried");
        assert_eq!(credentials.bearer().as_deref(), Some("newer"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_server_that_refuses_a_freshly_refreshed_token_needs_a_login_not_another_refresh() {
        let (credentials, dir) = store_with("fresh", Some(tokens(Some(3600), Some(3600))));
        assert_eq!(credentials.bearer().as_deref(), Some("a"));
        credentials.lock().refreshed = Some(Instant::now());
        let Next::Login(why) = credentials.rejected(Instant::now()) else { panic!("a login is needed") };
        assert!(why.contains("refuses even a freshly obtained access token"), "{why}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn while_the_authorization_server_is_unreachable_the_token_in_hand_is_used_without_retrying_each_time() {
        let mut expiring_soon = tokens(Some(10), Some(3600));
        expiring_soon.refresh_token = Some("r".into());
        expiring_soon.token_endpoint = "http://127.0.0.1:9/token".into(); // nothing listens there
        let (credentials, dir) = store_with("unreachable", Some(expiring_soon));
        assert_eq!(credentials.bearer().as_deref(), Some("a"), "the token in hand, though the refresh failed");
        let failed_at = credentials.lock().unreachable_since.expect("the failure is noted");
        assert_eq!(credentials.bearer().as_deref(), Some("a"));
        assert_eq!(credentials.lock().unreachable_since, Some(failed_at), "not tried again at once");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_wanted_scope_is_remembered_for_the_next_login() {
        let (credentials, dir) = store_with("wanted", Some(tokens(Some(3600), Some(3600))));
        credentials.want_scope("mcp:admin");
        credentials.want_scope("mcp:admin mcp:write");
        assert_eq!(credentials.store.read().unwrap().servers["remote"].wanted_scope.as_deref(), Some("mcp:admin mcp:write"));
        credentials.want_scope("bad\"scope");
        credentials.want_scope(&"x".repeat(2000));
        assert_eq!(credentials.store.read().unwrap().servers["remote"].wanted_scope.as_deref(), Some("mcp:admin mcp:write"), "bounded");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_refused_token_without_a_refresh_token_needs_a_login_and_is_forgotten() {
        let (credentials, dir) = store_with("norefresh", Some(tokens(Some(3600), Some(3600))));
        assert_eq!(credentials.bearer().as_deref(), Some("a"));
        let Next::Login(why) = credentials.rejected(Instant::now()) else { panic!("a login is needed") };
        assert!(why.starts_with("needs login: its refresh was refused"), "{why}");
        assert!(credentials.store.read().unwrap().servers.is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
