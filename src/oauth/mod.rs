//! OAuth 2.1 as the MCP authorization spec uses it, both ways. The proxy as a resource server lets
//! in clients bearing access tokens from an external authorization server (`resource_server`). The
//! proxy as a client logs in to protected remote servers (`login`, `client`), keeps the tokens
//! (`store`) and sends and refreshes them (`credentials`). The proxy never issues tokens itself.
//!
//! Built only with the `oauth` cargo feature: signatures are checked by ring (already linked for TLS)
//! through `jwt_ring`, JWT parsing and claim checks are jsonwebtoken's.

pub mod client;
pub mod credentials;
mod discovery;
mod jwt_ring;
mod keys;
pub mod login;
pub mod resource_server;
pub mod store;
mod token_cache;

pub use resource_server::{Refusal, ResourceServer, Verified};

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The longest anything here is remembered by its expiry: an `exp` or `expires_in` from a server is
/// not trusted to be sane (a huge one would overflow an `Instant`).
const MAX_REMEMBERED: Duration = Duration::from_secs(24 * 3600);

/// A short stable name for `text`: the first 8 bytes of its SHA-256 in hex (names that must not carry
/// what they name: a user id, a server key in a file name).
fn short_hash(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The instant of a Unix time: now if it has passed, at most a day ahead.
fn instant_at(unix_seconds: u64) -> Instant {
    Instant::now() + Duration::from_secs(unix_seconds.saturating_sub(unix_now())).min(MAX_REMEMBERED)
}
