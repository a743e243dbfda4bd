//! A backend MCP server run as a child process, spoken to over its stdin and stdout.
//!
//! Four threads per child: a writer that serialises messages from the dispatcher onto stdin, a reader
//! that parses stdout lines into `Event::FromBackend`, a logger for stderr, and a watcher that waits for
//! the child to exit. The child runs in its own process group so that stopping it also stops whatever it
//! started (`npx`, `uvx` and `sh -c` wrappers leave grandchildren).
//!
//! The backend has exited when its leader (the child itself) has, even if a grandchild still holds its
//! stdout open. The watcher sees the exit without reaping (so the group id cannot be reused yet), kills
//! what is left of the group, reaps the leader and tells the reader, which delivers what is already in
//! the pipe and then reports `Event::BackendExited`: once per connection, after its last message. A
//! child that closes its stdout but lives on is given a grace period, then killed. The dispatcher never
//! blocks on a child.

use super::{Dialect, Link};
use crate::config::StdioConfig;
use crate::jsonrpc::Message;
use crate::lines::{Line, LineReader};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::io::{self, BufReader, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// Longest line accepted from a backend's stdout; longer ones are dropped with a log line.
const MAX_LINE: usize = 64 * 1024 * 1024;
/// How long a child may live on after closing its stdout, or after it was asked to stop, before
/// SIGKILL; also how long the reader drains a pipe that a process outside the group keeps writing to.
const EXIT_GRACE: Duration = Duration::from_secs(3);
/// Stack for threads that parse untrusted JSON (serde_json recurses up to 128 levels).
const PARSER_STACK: usize = 256 * 1024;
/// Stack for threads that only move bytes or wait.
const PUMP_STACK: usize = 64 * 1024;

/// A running child. Dropping it closes the child's stdin, which well-behaved servers take as a request
/// to exit; [`StdioBackend::terminate`] and [`StdioBackend::kill`] do the rest.
pub struct StdioBackend {
    /// `None` once stdin was closed on purpose.
    outbox: Option<Sender<Message>>,
    group: Arc<Group>,
}

impl StdioBackend {
    /// Spawns the child and its four threads.
    pub fn spawn(key: &str, cfg: &StdioConfig, link: Link, dialect: Dialect) -> io::Result<StdioBackend> {
        let mut command = Command::new(&cfg.command);
        command.args(&cfg.args).envs(&cfg.env).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
        if let Some(cwd) = &cfg.cwd {
            command.current_dir(cwd);
        }
        let mut child = crate::children::spawn(&mut command)?;
        let group = Arc::new(Group { pgid: child.id() as i32, reaped: Mutex::new(false) });
        let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take()) else {
            group.abandon();
            return Err(io::Error::other("child has no stdio pipes"));
        };
        // The watcher, which reaps the child, starts first: if a later thread cannot start, killing the
        // group is enough for it to reap. If it cannot start itself, the group is killed and abandoned.
        let (status_rx, exited_rx) = group.watch(key, child).inspect_err(|_| group.abandon())?;
        let (reader_key, log_key) = (key.to_owned(), key.to_owned());
        let reader_group = group.clone();
        let (outbox, inbox) = crossbeam_channel::unbounded();
        let started = spawn_thread(format!("{key}-stdout"), PARSER_STACK, move || {
            read_loop(&reader_key, Stdout { pipe: stdout, exited: exited_rx, drain_until: None }, &link);
            link.exited(exit_reason(&reader_group, &status_rx));
        })
        .and_then(|()| spawn_thread(format!("{key}-stdin"), PUMP_STACK, move || write_loop(stdin, inbox, &dialect)))
        .and_then(|()| spawn_thread(format!("{key}-stderr"), PUMP_STACK, move || log_loop(&log_key, stderr)));
        if let Err(e) = started {
            group.signal(libc::SIGKILL);
            return Err(e);
        }
        Ok(StdioBackend { outbox: Some(outbox), group })
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
        self.group.signal(libc::SIGTERM);
    }

    /// Ends the whole process group at once (SIGKILL).
    pub fn kill(&self) {
        self.group.signal(libc::SIGKILL);
    }
}

/// The child's process group, whose id is the child's pid. It is signalled only while the child is
/// unreaped: until then no other process or group can have that id.
struct Group {
    pgid: i32,
    /// True once the child is reaped. Held across "check, then signal" and across reaping, so the two
    /// never interleave.
    reaped: Mutex<bool>,
}

impl Group {
    fn signal(&self, signal: libc::c_int) {
        let reaped = self.reaped.lock().unwrap_or_else(PoisonError::into_inner);
        if !*reaped {
            kill_group(self.pgid, signal);
        }
    }

    /// Starts the thread that waits for the child: it sends how the child ended on the returned channel,
    /// then closes the write end of the returned pipe.
    fn watch(self: &Arc<Self>, key: &str, child: Child) -> io::Result<(Receiver<String>, OwnedFd)> {
        let (exited_rx, exited_tx) = pipe()?;
        let (status_tx, status_rx) = crossbeam_channel::bounded(1);
        let group = self.clone();
        spawn_thread(format!("{key}-wait"), PUMP_STACK, move || {
            let _ = status_tx.send(group.wait(child));
            drop(exited_tx); // Wakes the reader, after the status is there for it.
        })?;
        Ok((status_rx, exited_rx))
    }

    /// Waits for the child to exit, kills the rest of its group, then reaps it. Returns how it ended,
    /// for the log.
    fn wait(&self, mut child: Child) -> String {
        if wait_exited(self.pgid) {
            // Grandchildren may outlive the leader; its zombie still holds the group id.
            kill_group(self.pgid, libc::SIGKILL);
        }
        let mut reaped = self.reaped.lock().unwrap_or_else(PoisonError::into_inner);
        let status = child.wait();
        *reaped = true;
        crate::children::reaped(child.id());
        match status {
            Ok(status) => format!("process {status}"),
            Err(e) => format!("process lost: {e}"),
        }
    }

    /// Kills a child that no watcher will wait for; the reaper collects it.
    fn abandon(&self) {
        kill_group(self.pgid, libc::SIGKILL);
        crate::children::reaped(self.pgid as u32);
    }
}

/// How the child ended, once the reader is done: at once when the watcher has seen the exit; else the
/// child closed its stdout (or the proxy is exiting), and gets [`EXIT_GRACE`] to exit before SIGKILL.
fn exit_reason(group: &Group, status: &Receiver<String>) -> String {
    let status = match status.recv_timeout(EXIT_GRACE) {
        Err(RecvTimeoutError::Timeout) => {
            group.signal(libc::SIGKILL);
            status.recv().map_err(|_| RecvTimeoutError::Disconnected)
        }
        status => status,
    };
    status.unwrap_or_else(|_| "process lost: its watcher stopped".into())
}

/// The child's stdout: read until end of file or, once the child has exited (the `exited` pipe closes),
/// until nothing more is waiting in it. A process that left the group may hold it open for ever.
struct Stdout {
    pipe: ChildStdout,
    exited: OwnedFd,
    /// Set when the exit is seen: a process that keeps writing is not read past this.
    drain_until: Option<Instant>,
}

impl Read for Stdout {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.drain_until.is_none() {
            let [output, exited] = readable([self.pipe.as_raw_fd(), self.exited.as_raw_fd()], -1)?;
            if output {
                return self.pipe.read(buf);
            }
            if !exited {
                return Err(io::ErrorKind::Interrupted.into()); // Nothing ready: the caller asks again.
            }
            self.drain_until = Some(Instant::now() + EXIT_GRACE);
        }
        let draining = self.drain_until.is_some_and(|until| Instant::now() < until);
        if draining && readable([self.pipe.as_raw_fd()], 0)? == [true] {
            self.pipe.read(buf)
        } else {
            Ok(0)
        }
    }
}

/// Which of `fds` are readable (data, end of file or an error waiting), within `timeout_ms` (-1: no
/// limit).
fn readable<const N: usize>(fds: [RawFd; N], timeout_ms: libc::c_int) -> io::Result<[bool; N]> {
    let mut polled = fds.map(|fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 });
    // SAFETY: poll reads and writes exactly N pollfd structs in the array it is given.
    if unsafe { libc::poll(polled.as_mut_ptr(), N as libc::nfds_t, timeout_ms) } < 0 {
        return Err(io::Error::last_os_error()); // EINTR comes back as Interrupted, which readers retry.
    }
    Ok(polled.map(|p| p.revents != 0))
}

/// A pipe whose ends are closed on exec, so no child holds them: `(read end, write end)`.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two new descriptors into the array, which are then owned here.
    unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])))
    }
}

/// Blocks until the child `pid` has exited, leaving it unreaped; false if it cannot be waited for.
fn wait_exited(pid: i32) -> bool {
    loop {
        // SAFETY: siginfo_t is plain data; waitid writes it through a valid pointer. WNOWAIT leaves the
        // child waitable, so `Child::wait` still gets its status.
        let rc = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOWAIT)
        };
        if rc == 0 {
            return true;
        }
        // Any error but EINTR (ECHILD: not our child any more) is for `Child::wait` to report.
        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return false;
        }
    }
}

fn spawn_thread(name: String, stack: usize, f: impl FnOnce() + Send + 'static) -> io::Result<()> {
    thread::Builder::new().name(name).stack_size(stack).spawn(f).map(drop)
}

fn write_loop(stdin: ChildStdin, inbox: Receiver<Message>, dialect: &Dialect) {
    // An error means the child closed stdin or died; the reader thread reports the exit.
    let _ = crate::lines::write_messages(stdin, &inbox, |msg| dialect.translate(msg));
}

fn read_loop(key: &str, stdout: impl io::Read, link: &Link) {
    let mut lines = LineReader::new(BufReader::new(stdout), MAX_LINE);
    loop {
        match lines.next_line() {
            Ok(Some(Line::Text(text))) if text.trim().is_empty() => {}
            Ok(Some(Line::Text(text))) => match Message::parse(text) {
                Ok(msg) => {
                    if !link.message(msg) {
                        return; // The dispatcher is gone: the proxy is exiting.
                    }
                }
                Err(e) => log::warn!("[{key}] ignoring a stdout line that is not MCP ({e}): {}", super::preview(text, 200)),
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

fn kill_group(pgid: i32, signal: libc::c_int) {
    if pgid > 0 {
        // SAFETY: kill(2) with a negative pid signals a process group; it touches no memory of ours.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}
