//! The few PTY system calls the web terminal needs, on libc: open a PTY pair, start a shell as a
//! session leader with the PTY as its controlling terminal, resize, kill the whole process group, reap.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::FromRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Starts `shell` on a new PTY of `cols` x `rows`; returns the PTY's master side and the shell's pid
/// (which is also its process group and session id).
pub fn spawn_shell(shell: &str, cwd: &Path, cols: u16, rows: u16) -> io::Result<(File, i32)> {
    // SAFETY: plain system calls on a descriptor we own; the name buffer outlives ptsname_r.
    let (master, slave_name) = unsafe {
        let fd = check(libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC))?;
        let master = File::from_raw_fd(fd);
        check(libc::grantpt(fd))?;
        check(libc::unlockpt(fd))?;
        let mut name = [0 as libc::c_char; 128];
        let rc = libc::ptsname_r(fd, name.as_mut_ptr(), name.len());
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        (master, std::ffi::CStr::from_ptr(name.as_ptr()).to_string_lossy().into_owned())
    };
    resize(&master, cols, rows)?;
    let slave = OpenOptions::new().read(true).write(true).custom_flags(libc::O_NOCTTY).open(&slave_name)?;
    let mut command = Command::new(shell);
    command
        .current_dir(cwd)
        .env("TERM", "xterm-256color")
        .stdin(Stdio::from(slave.try_clone()?))
        .stdout(Stdio::from(slave.try_clone()?))
        .stderr(Stdio::from(slave));
    // SAFETY: only async-signal-safe calls between fork and exec: setsid and ioctl.
    unsafe {
        command.pre_exec(|| {
            check(libc::setsid())?;
            // The PTY (now on fd 0) becomes the new session's controlling terminal.
            check(libc::ioctl(0, libc::TIOCSCTTY, 0))?;
            Ok(())
        });
    }
    let child = crate::children::spawn(&mut command)?;
    // The pid is reaped with waitpid by the reader thread (`reap`), not through `Child`.
    Ok((master, child.id() as i32))
}

pub fn resize(master: &File, cols: u16, rows: u16) -> io::Result<()> {
    let size = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which is valid for the call.
    check(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) }).map(drop)
}

/// SIGKILL to everything in the shell's session: its own process group and the group of every job it
/// started (an interactive shell gives each background job a group of its own). The session id is the
/// shell's pid, and the kernel does not reuse an id while a session still holds it.
pub fn kill_session(sid: i32) {
    if sid <= 0 {
        return;
    }
    let signal = |pid: i32| {
        // SAFETY: kill(2) touches no memory of ours.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    };
    signal(-sid);
    let Ok(entries) = std::fs::read_dir("/proc") else { return };
    for pid in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
        if session_of(pid) == Some(sid) {
            signal(pid);
        }
    }
}

/// The session id of a process, from `/proc/<pid>/stat` (its command name may hold spaces and
/// parentheses, so fields are counted after the last `)`).
fn session_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields = &stat[stat.rfind(')')? + 1..];
    // state, ppid, pgrp, session
    fields.split_whitespace().nth(3)?.parse().ok()
}

/// Waits for the shell and returns its exit code (`None` when killed by a signal or already reaped).
pub fn reap(pid: i32) -> Option<i32> {
    let mut status = 0;
    // SAFETY: waitpid writes the status through a valid pointer.
    let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
    crate::children::reaped(pid as u32);
    (rc == pid && libc::WIFEXITED(status)).then(|| libc::WEXITSTATUS(status))
}
