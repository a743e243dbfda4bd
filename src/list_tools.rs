//! `--list-tools` and `--check`: start the backends, print what clients would be offered, exit.
//!
//! This is a client of the dispatcher like any other, speaking MCP through the same event channel, so
//! what it prints is exactly what a real client would see. `--check` also prints where each tool
//! leads and fails (exit 1) when a server could not start or the catalog has problems. A reader that
//! stops early (`--list-tools | head`) ends the printing quietly, with the exit status it would have had.

use crate::event::{BackendState, ClientId, Era, Event, Inspection};
use crate::hub::Hub;
use crate::jsonrpc::{raw, Message};
use crossbeam_channel::{Receiver, Sender};
use serde_json::{json, Value};
use std::io::{self, Write};
use std::time::Duration;

/// What to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    Tools,
    Check,
}

/// Runs the dispatcher until the tools are listed; `Ok(false)` when `--check` found problems.
pub fn run(
    hub: Hub,
    events: Sender<Event>,
    inbox: Receiver<Event>,
    startup: Duration,
    report: Report,
    profile: Option<String>,
) -> Result<bool, Box<dyn std::error::Error>> {
    let dispatcher = std::thread::Builder::new().name("hub".into()).spawn(move || hub.run(inbox))?;
    let client = ClientId::fresh();
    let (outbox, replies) = crossbeam_channel::unbounded();
    let init = json!({ "protocolVersion": crate::event::LATEST_PROTOCOL_VERSION, "capabilities": {},
                       "clientInfo": { "name": "mcp-proxy-server --list-tools", "version": env!("CARGO_PKG_VERSION") } });
    // A send fails only when the dispatcher has stopped: there is nothing more to say than that.
    let stopped = |_| "the dispatcher stopped";
    let send = |msg| events.send(Event::FromClient { client, msg, era: Era::Handshake }).map_err(stopped);
    events.send(Event::ClientConnected { client, outbox, profile }).map_err(stopped)?;
    send(Message::request(Value::from(1), "initialize", Some(raw(&init))))?;
    send(Message::notification("notifications/initialized", None))?;
    send(Message::request(Value::from(2), "tools/list", None))?;
    let wait = startup + Duration::from_secs(5);
    let listed = loop {
        match replies.recv_timeout(wait) {
            Ok(msg) if msg.id == Some(Value::from(2)) => break Ok(msg),
            Ok(_) => continue,
            Err(_) => break Err("no answer to tools/list"),
        }
    };
    let (reply, inspected) = crossbeam_channel::bounded(1);
    events.send(Event::Inspect { reply }).map_err(stopped)?;
    let inspection = inspected.recv_timeout(Duration::from_secs(5))?;
    events.send(Event::ClientGone { client }).map_err(stopped)?;
    let _ = dispatcher.join();
    let result: Value = match listed?.result {
        Some(result) => serde_json::from_str(result.get())?,
        None => return Err("tools/list failed".into()),
    };
    let tools: &[Value] = result.get("tools").and_then(Value::as_array).map_or(&[], Vec::as_slice);
    let ok = match report {
        Report::Tools => true,
        Report::Check => check_ok(&inspection),
    };
    to_stdout(|out| match report {
        Report::Tools => print_tools(out, tools),
        Report::Check => print_check(out, &inspection, ok),
    })
    .map_err(|e| format!("cannot write to stdout: {e}"))?;
    Ok(ok)
}

/// Writes to stdout through `print`. A reader that has gone (`--list-tools | head`) is no failure: like
/// ripgrep and the coreutils, the rest is left unprinted and the exit is quiet, not a panic.
pub fn to_stdout(print: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<()> {
    let mut out = io::stdout().lock();
    match print(&mut out).and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        written => written,
    }
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn print_tools(out: &mut dyn Write, tools: &[Value]) -> io::Result<()> {
    let width = tools.iter().map(|t| text(t, "name").len()).max().unwrap_or(0);
    for tool in tools {
        let first_line = text(tool, "description").lines().next().unwrap_or("");
        writeln!(out, "{:<width$}  {first_line}", text(tool, "name"))?;
    }
    writeln!(out, "{} tools", tools.len())
}

/// True when the catalog has no problem and every server is connected (or switched off).
fn check_ok(inspection: &Inspection) -> bool {
    inspection.problems.is_empty()
        && inspection.backends.iter().all(|backend| matches!(backend.state, BackendState::Connected | BackendState::Inactive))
}

/// Prints the effective catalog, every server's state and every problem, then the verdict `ok`.
fn print_check(out: &mut dyn Write, inspection: &Inspection, ok: bool) -> io::Result<()> {
    let tools = &inspection.tools;
    let width = tools.iter().map(|t| t.name.len()).max().unwrap_or(4).max(4);
    writeln!(out, "{:<width$}  server / original name", "tool")?;
    for tool in tools {
        writeln!(out, "{:<width$}  {} / {}", tool.name, tool.server, tool.original)?;
    }
    for backend in &inspection.backends {
        let error = backend.last_error.as_ref().map(|e| format!(" ({e})")).unwrap_or_default();
        let isolated = backend.instances.as_ref().map(|_| ", an instance per client session").unwrap_or_default();
        writeln!(out, "server {}: {}{error}{isolated}", backend.key, backend.state)?;
    }
    for profile in &inspection.profiles {
        let bound = match profile.credentials.as_slice() {
            [] => String::new(),
            credentials => format!("; only for {}", credentials.join(", ")),
        };
        let search = if profile.tool_search { " through tool search" } else { "" };
        writeln!(out, "profile {}: {} tools{search}{bound}: {}", profile.name, profile.tools.len(), profile.tools.join(", "))?;
    }
    for note in &inspection.notes {
        writeln!(out, "note: {note}")?;
    }
    for problem in &inspection.problems {
        writeln!(out, "problem: {problem}")?;
    }
    writeln!(out, "{} tools, {} problems: {}", tools.len(), inspection.problems.len(), if ok { "ok" } else { "NOT OK" })
}
