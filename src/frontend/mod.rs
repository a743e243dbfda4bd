//! Client-facing transports: each turns a client connection into [`crate::event::Event`]s and writes the
//! dispatcher's replies back. A frontend knows nothing of backends; it talks only to the dispatcher.

pub mod http;
pub mod stdio;
