//! A minimal stdio MCP server for benchmarks: newline-delimited JSON-RPC on stdin/stdout, one tool
//! `echo` (returns its `message` argument as text), answered in order on the reading thread, so the
//! backend adds as little as possible to what is measured. Also: `initialize`, `ping`, `tools/list`,
//! empty `prompts/list` / `resources/list`; other requests get -32601; notifications are ignored.
use serde_json::{json, Value};
use std::io::{self, BufRead, BufWriter, Write};

const VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

fn main() {
    let name = std::env::args().skip_while(|a| a != "--name").nth(1).unwrap_or_else(|| "echo".into());
    let stdin = io::stdin().lock();
    let mut out = BufWriter::new(io::stdout().lock());
    for line in stdin.lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let Ok(msg) = serde_json::from_str::<Value>(&line) else {
            let _ = writeln!(out, r#"{{"jsonrpc":"2.0","id":null,"error":{{"code":-32700,"message":"Parse error"}}}}"#);
            let _ = out.flush();
            continue;
        };
        let (Some(id), Some(method)) = (msg.get("id"), msg.get("method").and_then(Value::as_str)) else {
            continue; // a notification or a response: nothing to say
        };
        let params = msg.get("params").cloned().unwrap_or(Value::Null);
        let result = match method {
            "initialize" => {
                let asked = params.get("protocolVersion").and_then(Value::as_str).unwrap_or("");
                let version = if VERSIONS.contains(&asked) { asked } else { "2025-06-18" };
                Ok(json!({
                    "protocolVersion": version,
                    "capabilities": {"tools": {}},
                    "serverInfo": {"name": name, "version": "0.0.0"}
                }))
            }
            "ping" => Ok(json!({})),
            "tools/list" => Ok(json!({"tools": [{
                "name": "echo",
                "description": "Echoes its message.",
                "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]}
            }]})),
            "prompts/list" => Ok(json!({"prompts": []})),
            "resources/list" => Ok(json!({"resources": []})),
            "tools/call" => match params.get("name").and_then(Value::as_str) {
                Some("echo") => {
                    let text = params.pointer("/arguments/message").and_then(Value::as_str).unwrap_or("");
                    Ok(json!({"content": [{"type": "text", "text": text}]}))
                }
                _ => Err((-32602, "Unknown tool")),
            },
            _ => Err((-32601, "Method not found")),
        };
        let reply = match result {
            Ok(r) => json!({"jsonrpc": "2.0", "id": id, "result": r}),
            Err((code, message)) => json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}),
        };
        if serde_json::to_writer(&mut out, &reply).is_err() || out.write_all(b"\n").is_err() || out.flush().is_err() {
            break;
        }
    }
}
