//! Connection slots: how many connections may be open at once, in all and from one address.
//!
//! Every connection holds one file descriptor and one thread until it ends, so sockets that never send
//! a byte can starve everyone else (a normal client gets 503) and, worse, use up the descriptors a
//! crashed stdio backend needs to be restarted ("Too many open files"). The total is therefore sized
//! from `RLIMIT_NOFILE` at start-up, keeping a reserve for backends, and one address may hold only its
//! share of it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

/// Connections at most: in all, and from one client address (0: no per-address limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    pub total: usize,
    pub per_address: usize,
}

/// Why a connection gets no slot.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    Full,
    AddressFull,
}

/// Descriptors kept for everything that is not an HTTP connection (backends' pipes and sockets, config
/// files, the listener): an eighth of the limit, at least 64 and at most 1024, at most half.
pub fn descriptor_reserve(nofile: u64) -> u64 {
    (nofile / 8).clamp(64, 1024).min(nofile / 2)
}

/// The soft `RLIMIT_NOFILE` of this process, if it has a finite one.
pub fn descriptor_limit() -> Option<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into `limit`, which outlives the call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    // rlim_t is 32 bits on some 32-bit targets.
    #[allow(clippy::unnecessary_cast)]
    let current = limit.rlim_cur as u64;
    (rc == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(current)
}

impl Capacity {
    /// `wanted`, with its total lowered to what `nofile` descriptors allow beside the reserve.
    pub fn within(wanted: Capacity, nofile: Option<u64>) -> Capacity {
        let Some(nofile) = nofile else { return wanted };
        let room = usize::try_from(nofile - descriptor_reserve(nofile)).unwrap_or(usize::MAX);
        Capacity { total: wanted.total.min(room), ..wanted }
    }
}

/// The slots in use, by address.
pub struct Slots {
    capacity: Capacity,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// One connection's slot, given back when dropped (however its thread ends).
pub struct Slot {
    slots: Arc<Slots>,
    peer: IpAddr,
}

impl Slots {
    pub fn new(capacity: Capacity) -> Arc<Slots> {
        Arc::new(Slots { capacity, open: Mutex::default() })
    }

    /// A slot for a connection from `peer`, unless the server or that address is full.
    pub fn take(self: &Arc<Self>, peer: IpAddr) -> Result<Slot, Refusal> {
        let mut open = self.locked();
        if open.total >= self.capacity.total {
            return Err(Refusal::Full);
        }
        let mine = open.by_address.entry(peer).or_default();
        if self.capacity.per_address > 0 && *mine >= self.capacity.per_address {
            return Err(Refusal::AddressFull);
        }
        *mine += 1;
        open.total += 1;
        super::OPEN_CONNECTIONS.fetch_add(1, Ordering::Relaxed);
        Ok(Slot { slots: Arc::clone(self), peer })
    }

    fn locked(&self) -> MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.locked();
        open.total -= 1;
        if let Some(count) = open.by_address.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                open.by_address.remove(&self.peer);
            }
        }
        super::OPEN_CONNECTIONS.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn one_address_gets_its_share_and_others_still_get_in() {
        let slots = Slots::new(Capacity { total: 10, per_address: 2 });
        let held = [slots.take(ip(1)).unwrap(), slots.take(ip(1)).unwrap()];
        assert_eq!(slots.take(ip(1)).err(), Some(Refusal::AddressFull));
        assert!(slots.take(ip(2)).is_ok());
        drop(held);
        assert!(slots.take(ip(1)).is_ok(), "a slot given back can be taken again");
    }

    #[test]
    fn the_total_is_a_limit_for_every_address() {
        let slots = Slots::new(Capacity { total: 2, per_address: 0 });
        let _held = [slots.take(ip(1)).unwrap(), slots.take(ip(2)).unwrap()];
        assert_eq!(slots.take(ip(3)).err(), Some(Refusal::Full));
    }

    #[test]
    fn given_back_slots_leave_no_address_behind() {
        let slots = Slots::new(Capacity { total: 5, per_address: 5 });
        drop(slots.take(ip(1)).unwrap());
        assert!(slots.locked().by_address.is_empty());
        assert_eq!(slots.locked().total, 0);
    }

    #[test]
    fn the_total_leaves_descriptors_for_backends() {
        let wanted = Capacity { total: 8192, per_address: 256 };
        assert_eq!(Capacity::within(wanted, Some(4096)), Capacity { total: 4096 - 512, per_address: 256 });
        assert_eq!(Capacity::within(wanted, Some(1024)).total, 1024 - 128);
        assert_eq!(Capacity::within(wanted, Some(100)).total, 50);
        assert_eq!(Capacity::within(wanted, Some(1 << 20)).total, 8192);
        assert_eq!(Capacity::within(wanted, None), wanted);
    }
}
