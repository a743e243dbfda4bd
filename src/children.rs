//! The proxy's child processes: those it starts (stdio backends, install commands, web terminal shells)
//! and, on Linux, those the kernel hands it as a child subreaper (`PR_SET_CHILD_SUBREAPER`).
//!
//! A backend may leave processes behind that escaped its process group: a `setsid()` daemon, or a
//! grandchild that moved to a group of its own. When their parent dies, the kernel gives them to the
//! nearest subreaper ancestor instead of init: the proxy. So they stay within reach: the reaper thread
//! collects them when they die (they would be zombies otherwise), and [`kill_adopted`] ends those still
//! running when the proxy exits.
//!
//! The proxy's own children are waited for by their owners (`Child::wait`, `waitpid(pid)`), and the
//! reaper must never take their exit status: a catch-all `waitpid(-1)` would. So every child the proxy
//! starts goes through [`spawn`], which records its pid under a lock, and its owner calls [`reaped`]
//! once it has waited for it. The reaper waits only for children of ours (found in `/proc`) whose pid
//! is not recorded, under the same lock: adopted ones. It wakes on SIGCHLD, taken with `sigwait` on a
//! thread of its own, as `signals` does for the other signals.

use std::collections::{BTreeSet, HashSet};
use std::io;
use std::process::{Child, Command};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// Pids of the children the proxy started and whose owners have not reaped them yet.
static OWN: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

fn own() -> MutexGuard<'static, BTreeSet<u32>> {
    OWN.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Makes the proxy a child subreaper and starts the reaper thread. SIGCHLD is blocked in the calling
/// thread, and so in every thread started after it: call this before any other thread starts, or one of
/// them could take the signal and drop it. The reaper itself runs with every signal blocked, so that
/// signals another module waits for later (`signals`) are never delivered to it.
pub fn adopt_orphans() -> io::Result<()> {
    become_subreaper()?;
    let child_exited = signal_set(|set| {
        // SAFETY: `set` is an initialised signal set.
        unsafe { libc::sigaddset(set, libc::SIGCHLD) };
    });
    let every = signal_set(|set| {
        // SAFETY: `set` is a signal set.
        unsafe { libc::sigfillset(set) };
    });
    set_mask(libc::SIG_BLOCK, &child_exited)?;
    let before = set_mask(libc::SIG_BLOCK, &every)?;
    let started = thread::Builder::new().name("reaper".into()).stack_size(64 * 1024).spawn(move || loop {
        let mut signal: libc::c_int = 0;
        // SAFETY: `child_exited` is an initialised signal set and `signal` a valid out-pointer.
        if unsafe { libc::sigwait(&child_exited, &mut signal) } == 0 {
            // One SIGCHLD may stand for many exits: every zombie found is collected.
            for child in children().into_iter().filter(|c| c.zombie) {
                reap_adopted(child.pid);
            }
        }
    });
    set_mask(libc::SIG_SETMASK, &before)?;
    started.map(drop)
}

/// An empty signal set that `fill` then adds to.
fn signal_set(fill: impl FnOnce(&mut libc::sigset_t)) -> libc::sigset_t {
    // SAFETY: sigset_t is plain data that sigemptyset initialises.
    let mut set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        set
    };
    fill(&mut set);
    set
}

/// Changes the calling thread's signal mask; returns the mask it had.
fn set_mask(how: libc::c_int, set: &libc::sigset_t) -> io::Result<libc::sigset_t> {
    let mut before = signal_set(|_| {});
    // SAFETY: both pointers are to initialised signal sets, valid for the call.
    let rc = unsafe { libc::pthread_sigmask(how, set, &mut before) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(before)
}

#[cfg(target_os = "linux")]
fn become_subreaper() -> io::Result<()> {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer flag and touches no memory of ours.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Elsewhere orphans go to init as before: README states the limit.
#[cfg(not(target_os = "linux"))]
fn become_subreaper() -> io::Result<()> {
    Ok(())
}

/// Starts `command` as a child whose exit status belongs to the caller: the reaper leaves it alone
/// until [`reaped`] is called. Every child the proxy starts must go through here.
pub fn spawn(command: &mut Command) -> io::Result<Child> {
    // The lock is held across the fork: a child that exits at once is recorded before the reaper,
    // which takes the same lock, can look at it.
    let mut own = own();
    let child = command.spawn()?;
    own.insert(child.id());
    Ok(child)
}

/// Called by the owner of a child from [`spawn`] once it has waited for it.
pub fn reaped(pid: u32) {
    own().remove(&pid);
}

/// Ends every adopted process still running: SIGTERM, then SIGKILL to those left after `grace`. Killing
/// one may orphan its own children, which come to the proxy in turn, so this goes on until none is
/// left, or gives up after twice `grace`. For the proxy's exit, once its backends have stopped.
pub fn kill_adopted(grace: Duration) {
    let start = Instant::now();
    let mut terminated = HashSet::new();
    loop {
        let running: Vec<u32> = children().into_iter().filter(|c| !c.zombie).map(|c| c.pid).collect();
        let adopted: Vec<u32> = {
            let own = own();
            running.into_iter().filter(|pid| !own.contains(pid)).collect()
        };
        if adopted.is_empty() {
            return;
        }
        let waited = start.elapsed();
        if waited > grace * 2 {
            log::warn!("{} adopted processes did not stop; leaving them to the kernel: {adopted:?}", adopted.len());
            return;
        }
        for pid in adopted {
            if waited >= grace {
                signal_adopted(pid, libc::SIGKILL);
            } else if terminated.insert(pid) {
                let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                log::info!("stopping process {pid} ({}), an orphan the proxy adopted", name.trim_end());
                signal_adopted(pid, libc::SIGTERM);
            }
            reap_adopted(pid);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for `pid` if it is an adopted child that has exited.
fn reap_adopted(pid: u32) {
    let own = own();
    if own.contains(&pid) {
        return; // Its owner waits for it.
    }
    let mut status = 0;
    // SAFETY: waitpid writes the status through a valid pointer. WNOHANG: a live child is left alone.
    unsafe {
        libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG);
    }
}

/// Signals `pid` if it is still an unreaped child of ours that we did not start. The lock keeps the
/// reaper from collecting it meanwhile, so the pid cannot have been reused by another process.
fn signal_adopted(pid: u32, signal: libc::c_int) {
    let own = own();
    if own.contains(&pid) || !is_our_child(pid) {
        return;
    }
    // SAFETY: kill(2) touches no memory of ours.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

/// True while `pid` is a child of ours, running or a zombie not yet reaped.
fn is_our_child(pid: u32) -> bool {
    // SAFETY: siginfo_t is plain data; waitid writes it through a valid pointer. WNOWAIT|WNOHANG: it
    // only looks, and fails with ECHILD for a process that is not our child.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT) == 0
    }
}

/// A child of ours as `/proc` shows it.
struct Found {
    pid: u32,
    zombie: bool,
}

/// The proxy's children: the processes whose parent is the proxy, from `/proc/<pid>/stat`.
fn children() -> Vec<Found> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (state, ppid) = state_and_parent(&stat)?;
            (ppid == me).then_some(Found { pid, zombie: state == 'Z' })
        })
        .collect()
}

/// The state letter and the parent pid from a `/proc/<pid>/stat` line. The command name before them
/// may hold spaces and parentheses, so fields are counted after the last `)`.
fn state_and_parent(stat: &str) -> Option<(char, u32)> {
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    Some((state, fields.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_after_the_last_parenthesis() {
        assert_eq!(state_and_parent("42 (a) b) (c) Z 7 42 42 0 -1"), Some(('Z', 7)));
        assert_eq!(state_and_parent("42 (sleep) S 1 42 42"), Some(('S', 1)));
        assert_eq!(state_and_parent("garbage"), None);
    }

    #[test]
    fn a_spawned_child_is_ours_until_its_owner_has_reaped_it() {
        let mut child = spawn(Command::new("true").stdin(std::process::Stdio::null())).unwrap();
        let pid = child.id();
        assert!(own().contains(&pid));
        child.wait().unwrap();
        reaped(pid);
        assert!(!own().contains(&pid));
    }
}
