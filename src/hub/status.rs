//! What the dispatcher tells about itself: `/health`, `/metrics`, the effective catalog for `--check` and
//! the admin UI, and the name clashes a tool config would cause. Answers are typed ([`crate::event`])
//! and serialised only at the HTTP boundary.

use super::catalog::{default_name, qualify, ListKind};
use super::Hub;
use crate::event::{ExposedTool, Health, Inspection, ToolRow};
use crate::tool_config::Overrides;
use serde_json::Value;
use std::fmt::Write;

impl Hub {
    /// The proxy's status for `GET /health`: always the version; with `detailed`, every backend's state.
    pub(super) fn health(&self, detailed: bool) -> Health {
        Health {
            status: "ok",
            version: env!("CARGO_PKG_VERSION"),
            backends: detailed.then(|| self.backends.statuses()),
            sessions: detailed.then(|| self.clients.session_count()),
        }
    }

    /// The dispatcher's part of `GET /metrics`: requests, errors and latencies per backend, backend
    /// states and restarts, and open client sessions per transport.
    pub(super) fn render_metrics(&self) -> String {
        let mut out = String::new();
        self.metrics.render(&mut out, &|id| self.backends.key(id).to_owned());
        out.push_str("# HELP mcp_proxy_backend_up 1 when the backend is connected and ready.\n# TYPE mcp_proxy_backend_up gauge\n");
        for b in self.backends.configured() {
            let (key, up) = (super::metrics::label(&b.config.key), u8::from(b.is_ready()));
            let _ = writeln!(out, "mcp_proxy_backend_up{{backend=\"{key}\"}} {up}");
        }
        out.push_str("# HELP mcp_proxy_backend_restarts_total Restarts since the proxy started.\n");
        out.push_str("# TYPE mcp_proxy_backend_restarts_total counter\n");
        for b in self.backends.configured() {
            let key = super::metrics::label(&b.config.key);
            let _ = writeln!(out, "mcp_proxy_backend_restarts_total{{backend=\"{key}\"}} {}", b.restarts);
        }
        out.push_str("# HELP mcp_proxy_backend_instances Per-client instances of an isolated server (one that crashed counts until its client's next call starts it again).\n");
        out.push_str("# TYPE mcp_proxy_backend_instances gauge\n");
        for (id, b) in self.backends.iter().filter(|(id, b)| b.state != super::backends::State::Removed && self.backends.is_isolated(*id)) {
            let key = super::metrics::label(&b.config.key);
            let _ = writeln!(out, "mcp_proxy_backend_instances{{backend=\"{key}\"}} {}", self.backends.instances.of_server(id).len());
        }
        out.push_str("# HELP mcp_proxy_sessions Open client sessions by transport.\n# TYPE mcp_proxy_sessions gauge\n");
        for transport in ["stdio", "sse", "streamable_http"] {
            let _ = writeln!(out, "mcp_proxy_sessions{{transport=\"{transport}\"}} {}", self.clients.count_by_transport(transport));
        }
        out.push_str("# HELP mcp_proxy_notifications_dropped_total Notifications dropped for a consumer that did not keep up: ");
        out.push_str("the dispatcher (from backends) or a client.\n# TYPE mcp_proxy_notifications_dropped_total counter\n");
        let _ = writeln!(out, "mcp_proxy_notifications_dropped_total{{stage=\"dispatcher\"}} {}", crate::backend::notifications_dropped());
        let _ = writeln!(out, "mcp_proxy_notifications_dropped_total{{stage=\"client\"}} {}", self.clients.dropped());
        out
    }

    pub(super) fn inspect(&self) -> Inspection {
        let tools = self
            .catalog
            .list(ListKind::Tools)
            .iter()
            .filter_map(|def| {
                let name = def.get("name")?.as_str()?;
                let route = self.catalog.tool(name)?;
                Some(ExposedTool {
                    name: name.to_owned(),
                    server: self.backends.key(route.backend).to_owned(),
                    original: route.name.clone(),
                    description: def.get("description").cloned(),
                })
            })
            .collect();
        Inspection {
            tools,
            all_tools: self.all_tools(),
            problems: self.findings.problems.clone(),
            notes: self.findings.notes.clone(),
            backends: self.backends.statuses(),
            profiles: self.views.summaries(),
        }
    }

    /// Every tool of every ready backend that its filters let through, disabled ones included, with
    /// the name it is exposed under and its override: what the admin Tools page edits.
    fn all_tools(&self) -> Vec<ToolRow> {
        let sep = &self.settings.separator;
        let mut rows = Vec::new();
        for (id, b) in self.backends.iter().filter(|(_, b)| b.is_ready()) {
            for tool in b.list(ListKind::Tools) {
                let Some(name) = tool.get("name").and_then(Value::as_str) else { continue };
                if !b.config.filters.tools.admits(name) {
                    continue;
                }
                let key = qualify(&b.config.key, sep, name);
                let over = self.overrides.get(&key);
                let default = default_name(b.config.prefix(), sep, name);
                rows.push(ToolRow {
                    name: name.to_owned(),
                    server_name: b.config.key.clone(),
                    exposed_name: self.catalog.exposed_name(id, name).map_or_else(|| default.clone(), str::to_owned),
                    default_name: default,
                    description: tool.get("description").cloned(),
                    exposed_description: over.and_then(|o| o.exposed_description.clone()),
                    enabled: over.is_none_or(|o| o.enabled),
                    key,
                });
            }
        }
        rows
    }

    /// The name clashes today's backends would have under these overrides, by the catalog's own rule.
    pub(super) fn override_clashes(&self, overrides: &Overrides) -> Vec<String> {
        self.build_catalog(overrides).1.clashes
    }
}
