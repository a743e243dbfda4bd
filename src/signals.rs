//! Turns SIGINT and SIGTERM into an [`Event::Shutdown`] for the dispatcher, and SIGHUP into a reload
//! request for the config watcher (and whatever else the caller reloads then: the TLS certificate).
//!
//! The signals are blocked in every thread (the mask is inherited, so [`install`] runs before any other
//! thread starts, but for the reaper of `children`, which blocks every signal) and one thread takes them
//! synchronously with `sigwait`: no code runs in a signal handler, so there is nothing
//! async-signal-unsafe to get wrong. Children get a clean mask: std resets it before exec.

use crate::event::Event;
use crossbeam_channel::Sender;
use std::io;

/// Blocks the handled signals in the calling thread (and so in every thread started after it) and
/// starts the thread that reports them. `on_hup` runs on that thread at every SIGHUP.
pub fn install(events: Sender<Event>, reload: Sender<()>, on_hup: impl Fn() + Send + 'static) -> io::Result<()> {
    // SAFETY: sigset_t is plain data that sigemptyset initialises; the calls only read and write it.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        set
    };
    std::thread::Builder::new().name("signals".into()).stack_size(64 * 1024).spawn(move || loop {
        let mut signal: libc::c_int = 0;
        // SAFETY: `set` is an initialised signal set and `signal` a valid out-pointer.
        if unsafe { libc::sigwait(&set, &mut signal) } != 0 {
            continue;
        }
        if signal == libc::SIGHUP {
            log::info!("SIGHUP: reloading the configuration");
            let _ = reload.send(());
            on_hup();
            continue;
        }
        log::info!("received signal {signal}");
        if events.send(Event::Shutdown).is_err() {
            return;
        }
    })?;
    Ok(())
}
