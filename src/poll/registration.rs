//! Registrations and the per-poller table that maps epoll tokens back to their owners.
//!
//! A token is `generation << 32 | slot`. Freeing a slot bumps its generation, so an event that
//! was already fetched from the kernel for a detached registration no longer matches anything,
//! even when the fd number and the slot are reused at once (Go's `fdseq` guards the same race).

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use super::EventHandler;

/// The token of the poller's own eventfd; never produced by the slot table.
pub(crate) const TRIGGER_TOKEN: u64 = u64::MAX;
/// "Not attached to any poller".
const DETACHED: u64 = 0;

/// An fd and the handler that owns its events, attachable to one [`Poller`](super::Poller).
///
/// The registration holds the handler weakly, so an owner may keep its registration inside
/// itself without a reference cycle; once the owner is dropped no event can reach it. The fd
/// stays owned by the caller, who must [`PollEvent::Detach`](super::PollEvent::Detach) before
/// closing it.
pub struct Registration {
    pub(crate) inner: Arc<RegistrationInner>,
}

pub(crate) struct RegistrationInner {
    pub(crate) fd: RawFd,
    pub(crate) handler: Weak<dyn EventHandler>,
    /// The current token, or `DETACHED`. Checked right before each dispatch.
    pub(crate) token: AtomicU64,
    /// The id of the poller it is attached to (meaningful only while attached).
    pub(crate) poller_id: AtomicUsize,
    /// The poller detaches it on a hang-up or error (the reactor face). Poll descriptors of the
    /// Go-net face stay attached: a half-closed socket may still be written, and the owner
    /// detaches when it closes.
    pub(crate) detach_on_hangup: bool,
}

impl Registration {
    /// A registration for `fd` whose events go to `handler`. Nothing is watched until
    /// [`Poller::control`](super::Poller::control) adds it.
    pub fn new(fd: RawFd, handler: Weak<dyn EventHandler>) -> Registration {
        Registration::with_hangup_detach(fd, handler, true)
    }

    /// A registration the poller never detaches by itself: hang-ups and errors arrive through
    /// `on_ready` only, and the owner detaches when it closes.
    pub(crate) fn persistent(fd: RawFd, handler: Weak<dyn EventHandler>) -> Registration {
        Registration::with_hangup_detach(fd, handler, false)
    }

    fn with_hangup_detach(
        fd: RawFd,
        handler: Weak<dyn EventHandler>,
        detach_on_hangup: bool,
    ) -> Registration {
        Registration {
            inner: Arc::new(RegistrationInner {
                fd,
                handler,
                token: AtomicU64::new(DETACHED),
                poller_id: AtomicUsize::new(0),
                detach_on_hangup,
            }),
        }
    }

    /// The registered fd.
    pub fn fd(&self) -> RawFd {
        self.inner.fd
    }

    /// True while the registration is attached to a poller.
    pub fn is_attached(&self) -> bool {
        self.inner.token.load(Ordering::Acquire) != DETACHED
    }
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("fd", &self.inner.fd)
            .field("token", &self.inner.token.load(Ordering::Relaxed))
            .finish()
    }
}

/// The slot table of one poller. Guarded by the poller's mutex.
#[derive(Default)]
pub(crate) struct Slab {
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
}

struct Slot {
    generation: u32,
    entry: Option<Arc<RegistrationInner>>,
}

impl Slab {
    /// Puts `inner` in a free slot and returns its token.
    pub(crate) fn insert(&mut self, inner: Arc<RegistrationInner>) -> u64 {
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.slots.push(Slot {
                    generation: 1,
                    entry: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.entry = Some(inner);
        self.live += 1;
        token(slot.generation, index)
    }

    /// Frees the slot of `token` if it is still current; bumps the generation.
    pub(crate) fn remove(&mut self, token: u64) -> Option<Arc<RegistrationInner>> {
        let (generation, index) = split(token);
        let slot = self.slots.get_mut(index as usize)?;
        if slot.generation != generation || slot.entry.is_none() {
            return None;
        }
        // Generation 0 would make token 0 (DETACHED) and u32::MAX could form TRIGGER_TOKEN.
        slot.generation = match slot.generation.wrapping_add(1) {
            0 | u32::MAX => 1,
            g => g,
        };
        self.free.push(index);
        self.live -= 1;
        slot.entry.take()
    }

    pub(crate) fn get(&self, token: u64) -> Option<&Arc<RegistrationInner>> {
        let (generation, index) = split(token);
        let slot = self.slots.get(index as usize)?;
        if slot.generation == generation {
            slot.entry.as_ref()
        } else {
            None
        }
    }

    pub(crate) fn live(&self) -> usize {
        self.live
    }

    pub(crate) fn drain(&mut self) -> impl Iterator<Item = Arc<RegistrationInner>> + '_ {
        self.live = 0;
        self.free.clear();
        self.slots.drain(..).filter_map(|s| s.entry)
    }
}

fn token(generation: u32, index: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(index)
}

fn split(token: u64) -> (u32, u32) {
    ((token >> 32) as u32, token as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nobody;
    impl EventHandler for Nobody {
        fn on_ready(&self, _: crate::sys::Ready) {}
    }

    fn inner() -> Arc<RegistrationInner> {
        let weak: Weak<dyn EventHandler> = Weak::<Nobody>::new();
        Registration::new(3, weak).inner
    }

    #[test]
    fn reused_slot_gets_a_new_generation() {
        let mut slab = Slab::default();
        let first = slab.insert(inner());
        assert!(slab.remove(first).is_some());
        let second = slab.insert(inner());
        assert_eq!(first as u32, second as u32, "slot reused");
        assert_ne!(first, second);
        assert!(slab.get(first).is_none());
        assert!(slab.remove(first).is_none());
        assert!(slab.get(second).is_some());
        assert_eq!(slab.live(), 1);
    }

    #[test]
    fn tokens_never_collide_with_reserved_values() {
        let mut slab = Slab::default();
        slab.slots.push(Slot {
            generation: u32::MAX - 1,
            entry: None,
        });
        slab.free.push(0);
        let t = slab.insert(inner());
        slab.remove(t);
        let t = slab.insert(inner());
        assert_ne!(t, TRIGGER_TOKEN);
        assert_ne!(t, DETACHED);
        assert_eq!(t >> 32, 1);
    }
}
