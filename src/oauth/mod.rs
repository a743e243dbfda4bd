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
