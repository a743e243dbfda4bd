//! A backend MCP server run as a child process, spoken to over its stdin and stdout.
//!
//! Three threads per child: a writer that serialises messages from the dispatcher onto stdin, a reader
//! that parses stdout lines into `Event::FromBackend`, and a logger for stderr. The child runs in its own
//! process group so that stopping it also stops whatever it started (`npx`, `uvx` and `sh -c` wrappers
//! leave grandchildren). The reader thread reaps the child when its stdout closes and then reports
//! `Event::BackendExited`: the dispatcher never blocks on a child.

use super::Link;
use crate::config::StdioConfig;
use crate::jsonrpc::Message;
use crate::lines::{Line, LineReader};
use crossbeam_channel::{Receiver, Sender};
use std::io::{self, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Longest line accepted from a backend's stdout; longer ones are dropped with a log line.
const MAX_LINE: usize = 64 * 1024 * 1024;
/// How long a child may take to exit after its stdout closed or it was asked to stop, before SIGKILL.
const EXIT_GRACE: Duration = Duration::from_secs(3);
/// Stack for threads that parse untrusted JSON (serde_json recurses up to 128 levels).
const PARSER_STACK: usize = 256 * 1024;
/// Stack for threads that only move bytes.
const PUMP_STACK: usize = 64 * 1024;

/// A running child. Dropping it closes the child's stdin, which well-behaved servers take as a request
/// to exit; [`StdioBackend::terminate`] and [`StdioBackend::kill`] do the rest.
pub struct StdioBackend {
    /// `None` once stdin was closed on purpose.
    outbox: Option<Sender<Message>>,
    pgid: i32,
    /// Set by the reader thread once the child is reaped, so no signal is sent to a reused group id.
    reaped: Arc<AtomicBool>,
}

impl StdioBackend {
    /// Spawns the child and its three threads.
    pub fn spawn(key: &str, cfg: &StdioConfig, link: Link) -> io::Result<StdioBackend> {
        let mut command = Command::new(&cfg.command);
        command.args(&cfg.args).envs(&cfg.env).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
        if let Some(cwd) = &cfg.cwd {
            command.current_dir(cwd);
        }
        let mut child = command.spawn()?;
        let pgid = child.id() as i32;
        let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take()) else {
            kill_group(pgid, libc::SIGKILL);
            let _ = child.wait();
            return Err(io::Error::other("child has no stdio pipes"));
        };
        // The reader thread, which reaps the child, starts first: if a later thread cannot start,
        // killing the group is enough for it to reap. If it cannot start itself, the group is killed.
        let reader_key = key.to_owned();
        let reaped = Arc::new(AtomicBool::new(false));
        let reaped_by_reader = reaped.clone();
        let started = spawn_thread(format!("{key}-stdout"), PARSER_STACK, move || {
            read_loop(&reader_key, stdout, &link);
            let reason = reap(child, pgid);
            reaped_by_reader.store(true, Ordering::SeqCst);
            link.exited(reason);
        });
        let (outbox, inbox) = crossbeam_channel::unbounded();
        let log_key = key.to_owned();
        let started = started
            .and_then(|()| spawn_thread(format!("{key}-stdin"), PUMP_STACK, move || write_loop(stdin, inbox)))
            .and_then(|()| spawn_thread(format!("{key}-stderr"), PUMP_STACK, move || log_loop(&log_key, stderr)));
        if let Err(e) = started {
            kill_group(pgid, libc::SIGKILL);
            return Err(e);
        }
        Ok(StdioBackend { outbox: Some(outbox), pgid, reaped })
    }

    /// Queues a message for the child's stdin. False if the writer has stopped (the child is gone).
    pub fn send(&self, msg: Message) -> bool {
        self.outbox.as_ref().is_some_and(|outbox| outbox.send(msg).is_ok())
    }

    /// Closes the child's stdin once queued messages are written: the polite way to ask an MCP server
    /// to exit.
    pub fn close_input(&mut self) {
        self.outbox = None;
    }

    /// Asks the whole process group to exit (SIGTERM).
    pub fn terminate(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Ends the whole process group at once (SIGKILL).
    pub fn kill(&self) {
        self.signal(libc::SIGKILL);
    }

    fn signal(&self, signal: libc::c_int) {
        if !self.reaped.load(Ordering::SeqCst) {
            kill_group(self.pgid, signal);
        }
    }
}

fn spawn_thread(name: String, stack: usize, f: impl FnOnce() + Send + 'static) -> io::Result<()> {
    thread::Builder::new().name(name).stack_size(stack).spawn(f).map(drop)
}

fn write_loop(stdin: ChildStdin, inbox: Receiver<Message>) {
    // An error means the child closed stdin or died; the reader thread reports the exit.
    let _ = crate::lines::write_messages(stdin, &inbox, |msg| msg);
}

fn read_loop(key: &str, stdout: impl io::Read, link: &Link) {
    let mut lines = LineReader::new(BufReader::new(stdout), MAX_LINE);
    loop {
        match lines.next_line() {
            Ok(Some(Line::Text(text))) if text.trim().is_empty() => {}
            Ok(Some(Line::Text(text))) => match Message::parse(&text) {
                Ok(msg) => {
                    if !link.message(msg) {
                        return; // The dispatcher is gone: the proxy is exiting.
                    }
                }
                Err(e) => log::warn!("[{key}] ignoring a stdout line that is not MCP ({e}): {}", super::preview(&text, 200)),
            },
            Ok(Some(Line::TooLong(len))) => log::warn!("[{key}] dropped a {len}-byte stdout line (limit {MAX_LINE})"),
            Ok(Some(Line::NotUtf8(len))) => log::warn!("[{key}] dropped a {len}-byte stdout line that is not UTF-8"),
            Ok(None) => return,
            Err(e) => {
                log::warn!("[{key}] reading stdout failed: {e}");
                return;
            }
        }
    }
}

fn log_loop(key: &str, stderr: impl io::Read) {
    let mut lines = LineReader::new(BufReader::new(stderr), 64 * 1024);
    while let Ok(Some(line)) = lines.next_line() {
        match line {
            Line::Text(text) => log::info!("[{key}] {text}"),
            Line::TooLong(len) | Line::NotUtf8(len) => log::info!("[{key}] ({len} bytes of unprintable stderr)"),
        }
    }
}

/// Waits for a child whose stdout has closed, escalating to SIGKILL after a grace period, then kills
/// whatever is left of its process group. Returns how it ended, for the log.
fn reap(mut child: Child, pgid: i32) -> String {
    let deadline = Instant::now() + EXIT_GRACE;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                kill_group(pgid, libc::SIGKILL);
                break child.wait();
            }
            Err(e) => break Err(e),
        }
    };
    // Grandchildren may outlive the leader; the group id stays reserved while any of them lives.
    kill_group(pgid, libc::SIGKILL);
    match status {
        Ok(status) => format!("process {status}"),
        Err(e) => format!("process lost: {e}"),
    }
}

fn kill_group(pgid: i32, signal: libc::c_int) {
    if pgid > 0 {
        // SAFETY: kill(2) with a negative pid signals a process group; it touches no memory of ours.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}
