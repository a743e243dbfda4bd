//! OAuth 2.1 as the MCP authorization spec uses it. Today one side of it: the proxy as a resource
//! server that lets in clients bearing access tokens from an external authorization server
//! (`resource_server`). The proxy never issues tokens itself.
//!
//! Built only with the `oauth` cargo feature: signatures are checked by ring (already linked for TLS)
//! through `jwt_ring`, JWT parsing and claim checks are jsonwebtoken's.

pub mod client;
pub mod credentials;
mod discovery;
mod jwt_ring;
mod keys;
pub mod resource_server;
mod token_cache;
pub mod store;
pub mod www_authenticate;

pub use resource_server::{Refusal, ResourceServer, Verified};
