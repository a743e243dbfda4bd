//! `--list-tools`: start the backends, print the aggregated tools, exit.
//!
//! It is a client of the dispatcher like any other, speaking MCP through the same event channel, so
//! what it prints is exactly what a real client would be offered.

use crate::hub::{ClientId, Event, Hub};
use crate::jsonrpc::{raw, Message};
use crossbeam_channel::{Receiver, Sender};
use serde_json::{json, Value};
use std::time::Duration;

pub fn run(hub: Hub, events: Sender<Event>, inbox: Receiver<Event>, startup: Duration) -> Result<(), Box<dyn std::error::Error>> {
    let dispatcher = std::thread::Builder::new().name("hub".into()).spawn(move || hub.run(inbox))?;
    let client = ClientId::fresh();
    let (outbox, replies) = crossbeam_channel::unbounded();
    let init = json!({ "protocolVersion": crate::hub::LATEST_PROTOCOL_VERSION, "capabilities": {},
                       "clientInfo": { "name": "mcp-proxy-server --list-tools", "version": env!("CARGO_PKG_VERSION") } });
    let send = |msg| events.send(Event::FromClient { client, msg });
    events.send(Event::ClientConnected { client, session: None, outbox: Some(outbox) })?;
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
    events.send(Event::ClientGone { client })?;
    let _ = dispatcher.join();
    let result: Value = match listed?.result {
        Some(result) => serde_json::from_str(result.get())?,
        None => return Err("tools/list failed".into()),
    };
    print_tools(result.get("tools").and_then(Value::as_array).map_or(&[], Vec::as_slice));
    Ok(())
}

fn print_tools(tools: &[Value]) {
    let name = |t: &Value| t.get("name").and_then(Value::as_str).unwrap_or("?").to_owned();
    let width = tools.iter().map(|t| name(t).len()).max().unwrap_or(0);
    for tool in tools {
        let description = tool.get("description").and_then(Value::as_str).unwrap_or("");
        let first_line = description.lines().next().unwrap_or("");
        println!("{:<width$}  {first_line}", name(tool));
    }
    println!("{} tools", tools.len());
}
