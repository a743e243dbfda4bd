//! Helpers for `tests/tool_control.rs`, on top of the stdio harness ([`super::stdio`]):
//!
//! - [`Controlled`]: a proxy started with a `tool_config.json` of the test's choosing (passed through
//!   `MCP_PROXY_TOOL_CONFIG`, since the harness writes the server config only when the proxy starts);
//! - [`write_atomically`]: replacing a config file the way editors do, so the proxy's watcher never
//!   reads a half-written file;
//! - [`run_cli`]: one run of `--check` or `--list-tools`, with a deadline ([`spawn_cli`] and
//!   [`wait_cli`] when the test reads stdout itself).
//!
//! Every wait has a deadline, so a misbehaving proxy fails the test instead of hanging it.

use super::stdio::{Proxy, ProxyBuilder};
use super::{clear_proxy_env, unique, TempDir, PROXY_BIN};
use serde_json::Value;
use std::io::Read;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// A running proxy and the `tool_config.json` it reads. Fields drop in order: the proxy first, then
/// the directory holding the tool config.
pub struct Controlled {
    pub proxy: Proxy,
    pub tool_config: PathBuf,
    _dir: TempDir,
}

impl Deref for Controlled {
    type Target = Proxy;
    fn deref(&self) -> &Proxy {
        &self.proxy
    }
}

impl DerefMut for Controlled {
    fn deref_mut(&mut self) -> &mut Proxy {
        &mut self.proxy
    }
}

/// Starts the proxy on `config` with `tool_config` (JSON text, written as is; `None`: no file) and
/// the extra environment `env`. Not initialized.
pub fn spawn_with_tool_config(config: &Value, tool_config: Option<&str>, env: &[(&str, &str)]) -> Controlled {
    let dir = TempDir::new();
    let path = dir.path().join("tool_config.json");
    if let Some(text) = tool_config {
        std::fs::write(&path, text).expect("cannot write tool_config.json");
    }
    let mut builder = ProxyBuilder::new(config).env("MCP_PROXY_TOOL_CONFIG", path.to_str().expect("utf-8 temp path"));
    for (name, value) in env {
        builder = builder.env(name, value);
    }
    Controlled { proxy: builder.spawn(), tool_config: path, _dir: dir }
}

/// As [`spawn_with_tool_config`], then the MCP handshake.
pub fn start_with_tool_config(config: &Value, tool_config: &Value) -> Controlled {
    let mut proxy = spawn_with_tool_config(config, Some(&tool_config.to_string()), &[]);
    proxy.initialize();
    proxy
}

/// Replaces `path` with `text` through a rename, so a reader sees the old file or the new one, never a
/// truncated one.
pub fn write_atomically(path: &Path, text: &str) {
    let temp = path.with_file_name(format!(".{}.tmp", unique("write")));
    std::fs::write(&temp, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", temp.display()));
    std::fs::rename(&temp, path).unwrap_or_else(|e| panic!("cannot rename onto {}: {e}", path.display()));
}

// ----- one-shot runs: --check, --list-tools -----------------------------------------------------------------

/// What a one-shot run of the proxy printed and how it ended.
#[derive(Debug)]
pub struct CliRun {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CliRun {
    /// Fails the test with `what` and everything the run printed.
    pub fn fail(&self, what: &str) -> ! {
        panic!("{what}\nstatus: {}\n--- stdout ---\n{}--- stderr ---\n{}--- end ---", self.status, self.stdout, self.stderr)
    }

    /// The stdout lines that list tools: `name  server / original` (the `--check` table, header excluded).
    pub fn check_rows(&self) -> Vec<(String, String, String)> {
        self.stdout
            .lines()
            .skip(1)
            .filter_map(|line| match line.split_whitespace().collect::<Vec<_>>().as_slice() {
                [name, server, "/", original] => Some((name.to_string(), server.to_string(), original.to_string())),
                _ => None,
            })
            .collect()
    }

    pub fn last_line(&self) -> &str {
        self.stdout.lines().last().unwrap_or("")
    }
}

/// A directory with `mcp_server.json` holding `config` and, when given, `tool_config.json` beside it
/// (where the proxy looks by default).
pub struct ConfigDir {
    pub dir: TempDir,
    pub config_path: PathBuf,
}

impl ConfigDir {
    pub fn new(config: &Value, tool_config: Option<&Value>) -> ConfigDir {
        let dir = TempDir::new();
        let config_path = dir.path().join("mcp_server.json");
        std::fs::write(&config_path, serde_json::to_string_pretty(config).unwrap()).expect("cannot write config");
        if let Some(tools) = tool_config {
            std::fs::write(dir.path().join("tool_config.json"), tools.to_string()).expect("cannot write tool config");
        }
        ConfigDir { dir, config_path }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Starts the proxy with `--config <dir>/mcp_server.json` and `args`, stdin closed, stdout and stderr piped.
pub fn spawn_cli(dir: &ConfigDir, args: &[&str]) -> Child {
    let mut command = Command::new(PROXY_BIN);
    command.arg("--config").arg(&dir.config_path).args(args);
    clear_proxy_env(&mut command);
    command.env("LOGGING", "info").env("MCP_PROXY_STARTUP_TIMEOUT", "5");
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    command.spawn().unwrap_or_else(|e| panic!("cannot start {PROXY_BIN}: {e}"))
}

/// Runs the proxy as [`spawn_cli`] does and waits for it to exit within `timeout` (killing it and
/// failing the test if it does not).
pub fn run_cli(dir: &ConfigDir, args: &[&str], timeout: Duration) -> CliRun {
    wait_cli(spawn_cli(dir, args), args, timeout)
}

/// Waits for a run of [`spawn_cli`] to exit within `timeout`, reading its stderr and whatever of its
/// stdout the test has not taken (killing it and failing the test if it does not exit).
pub fn wait_cli(mut child: Child, args: &[&str], timeout: Duration) -> CliRun {
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = child.stdout.take().map(|pipe| read_all(Box::new(pipe)));
    let stderr = read_all(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + timeout;
    let (status, timed_out) = loop {
        match child.try_wait().expect("cannot wait for the proxy") {
            Some(status) => break (status, false),
            None if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            None => {
                let _ = child.kill();
                break (child.wait().expect("cannot reap the proxy"), true);
            }
        }
    };
    let stdout = stdout.map(|reader| reader.join().unwrap()).unwrap_or_default();
    let run = CliRun { status, stdout, stderr: stderr.join().unwrap() };
    if timed_out {
        run.fail(&format!("proxy {args:?} did not exit within {timeout:?}"));
    }
    run
}
