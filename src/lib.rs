//! mcp-proxy-server as a library: the modules the binary is made of, public so that integration
//! tests and fuzz targets (`fuzz/`) can reach the parsers directly. The binary (`main.rs`) is the
//! product; nothing here is a stable API.

pub mod backend;
pub mod children;
pub mod config;
pub mod config_watch;
pub mod event;
pub mod files;
pub mod frontend;
pub mod http;
pub mod hub;
pub mod jsonrpc;
pub mod lines;
pub mod list_tools;
pub mod logging;
pub mod mcp_param;
pub mod modern;
#[cfg(feature = "oauth")]
pub mod oauth;
pub mod profile_config;
pub mod random;
pub mod search;
pub mod settings;
pub mod signals;
pub mod sse;
pub mod tool_config;
pub mod uri;
pub mod www_authenticate;
