//! Installing a stdio server from its `installCommands`, with every output line streamed to the admin
//! pages as it comes.
//!
//! The target folder is `installDirectory`, else `TOOLS_FOLDER/<key>`, else `./tools/<key>`; an existing
//! folder means "installed" and nothing runs. Commands run one by one through `sh -c` in the target's
//! parent folder, each in its own process group; the first one that fails stops the install. Output is
//! read as bytes and shown lossily (a compiler's Latin-1 message must not end the stream), and a pipe is
//! drained until the command closes it: a reader that stopped early would kill the command with SIGPIPE.

use super::Updates;
use crate::config::{ServerConfig, Transport};
use serde_json::json;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;

/// Longest piece of output sent as one event: a line longer than this (a progress bar redrawn with `\r`)
/// is sent in pieces rather than buffered whole.
const MAX_CHUNK: u64 = 64 * 1024;

/// Why an install cannot start.
pub enum Refusal {
    NotStdio,
    NoCommands,
    BadKey,
}

impl Refusal {
    pub fn message(&self, key: &str) -> String {
        match self {
            Refusal::NotStdio => "Installation commands only supported for stdio servers.".into(),
            Refusal::NoCommands => format!("Server '{key}' has no installCommands."),
            Refusal::BadKey => format!("Server key '{key}' cannot name a folder (it holds '/' or is '..')."),
        }
    }
}

/// Where a server is installed.
pub fn target(server: &ServerConfig, tools_folder: Option<&Path>) -> Result<PathBuf, Refusal> {
    if let Some(dir) = &server.install_directory {
        return Ok(PathBuf::from(dir));
    }
    // The key becomes a folder name under the tools folder: it must not climb out of it.
    if server.key.contains('/') || server.key == ".." || server.key == "." {
        return Err(Refusal::BadKey);
    }
    Ok(tools_folder.map_or_else(|| PathBuf::from("tools"), Path::to_path_buf).join(&server.key))
}

pub fn check(server: &ServerConfig) -> Result<(), Refusal> {
    if !matches!(server.transport, Transport::Stdio(_)) {
        return Err(Refusal::NotStdio);
    }
    if server.install_commands.is_empty() {
        return Err(Refusal::NoCommands);
    }
    Ok(())
}

/// Runs the install, reporting on `updates`; returns when it is over.
pub fn run(server: &ServerConfig, target: &Path, updates: &Updates) {
    let key = server.key.as_str();
    updates.begin(key);
    let info = |message: String| updates.send("install_info", json!({ "serverKey": key, "message": message }));
    let error = |message: String| updates.send("install_error", json!({ "serverKey": key, "error": message }));
    info(format!("Install target for '{key}': {}", target.display()));
    if target.exists() {
        info(format!("{} already exists. Installation skipped.", target.display()));
        return updates.send("install_complete", json!({ "serverKey": key, "code": 0, "message": "Already installed." }));
    }
    let parent = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if let Err(e) = std::fs::create_dir_all(parent) {
        return error(format!("Cannot create {}: {e}", parent.display()));
    }
    for command in &server.install_commands {
        info(format!("Running: {command}"));
        match run_command(key, command, parent, updates) {
            Ok(0) => {}
            Ok(code) => {
                let message = format!("Command \"{command}\" failed with exit code {code}.");
                return updates.send("install_error", json!({ "serverKey": key, "error": message, "command": command, "exitCode": code }));
            }
            Err(e) => return error(format!("Command \"{command}\" could not run: {e}")),
        }
    }
    if !target.exists() {
        if let Err(e) = std::fs::create_dir_all(target) {
            return error(format!("Cannot create {}: {e}", target.display()));
        }
        info(format!("Created {}.", target.display()));
    }
    updates.send("install_complete", json!({ "serverKey": key, "code": 0, "message": "Installation process completed successfully." }));
}

/// Runs one command, streaming its output; returns its exit code (-1 when killed by a signal).
fn run_command(key: &str, command: &str, cwd: &Path, updates: &Updates) -> std::io::Result<i32> {
    let mut child = crate::children::spawn(
        Command::new("sh")
            .args(["-c", command])
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0),
    )?;
    let pumps: Vec<_> = [
        child.stdout.take().map(|out| ("install_stdout", Box::new(out) as Box<dyn Read + Send>)),
        child.stderr.take().map(|err| ("install_stderr", Box::new(err) as Box<dyn Read + Send>)),
    ]
    .into_iter()
    .flatten()
    .map(|(event, stream)| {
        let (updates, key) = (updates.clone(), key.to_owned());
        thread::spawn(move || pump(stream, |output| updates.send(event, json!({ "serverKey": key, "output": output }))))
    })
    .collect();
    let status = child.wait();
    crate::children::reaped(child.id());
    let status = status?;
    for pump in pumps {
        let _ = pump.join();
    }
    Ok(status.code().unwrap_or(-1))
}

/// Hands every line of `stream` (with its newline; at most [`MAX_CHUNK`] bytes at a time) to `send`,
/// invalid UTF-8 replaced by U+FFFD, until end of file or a read error.
fn pump(stream: impl Read, send: impl Fn(String)) {
    let mut reader = BufReader::new(stream);
    let mut chunk = Vec::new();
    loop {
        chunk.clear();
        match (&mut reader).take(MAX_CHUNK).read_until(b'\n', &mut chunk) {
            Ok(0) => return,
            Ok(_) => send(String::from_utf8_lossy(&chunk).into_owned()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                log::warn!("install output: {e}");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn pumped(input: &[u8]) -> Vec<String> {
        let sent = RefCell::new(Vec::new());
        pump(input, |output| sent.borrow_mut().push(output));
        sent.into_inner()
    }

    #[test]
    fn pump_shows_invalid_utf8_lossily_and_reads_on() {
        assert_eq!(pumped(b"caf\xe9\nafter\nlast"), ["caf\u{FFFD}\n", "after\n", "last"]);
    }

    #[test]
    fn pump_sends_an_endless_line_in_pieces() {
        let sizes: Vec<usize> = pumped(&vec![b'x'; 150 * 1024]).iter().map(String::len).collect();
        assert_eq!(sizes, [64 * 1024, 64 * 1024, 22 * 1024]);
    }
}
