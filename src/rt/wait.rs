//! Waiting that works the same for a thread and a coroutine: a [`WaitSet`] holds the waiters of
//! a few conditions and a few data-less locks ("gates") of one owner (a connection), behind one
//! std `Mutex` the owner keeps; [`wait_until`] is the condition-variable wait, [`lock_gate`]
//! the lock.
//!
//! std's `Condvar` and `Mutex` park the *thread*. A coroutine that waits on one stalls its
//! poller, and when the waker is that same poller (new input, room to send) it never comes:
//! a deadlock. These wait with a [`Parker`] instead, which suspends a coroutine and parks a
//! thread, so the poller keeps running while a coroutine waits.
//!
//! The mutex is never held across a wait: the condition is checked and the waiter queued under
//! it, the mutex released, and only then does the caller park; a notifier takes the same mutex
//! to dequeue, and wakes after releasing it. So a wake between the check and the park is never
//! lost (the thread's unpark token, or the coroutine's queued resume, outlives the race).
//!
//! One set per owner, all queues in one `Vec` tagged by queue number: an idle connection pays
//! 32 bytes for all of its waiting, and the `Vec` allocates only when somebody first waits.

use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use super::{park, park_until, Parker};

/// A queue of a [`WaitSet`], numbered by its owner (below 8: a gate's number is also its bit).
pub(crate) type Queue = u8;

/// The waiters of one owner's conditions and gates, oldest first.
#[derive(Default)]
pub(crate) struct WaitSet {
    waiters: Vec<Waiting>,
    next_id: u32,
    /// Gates held: bit `1 << queue`.
    held: u8,
}

struct Waiting {
    id: u32,
    queue: Queue,
    parker: Parker,
}

impl WaitSet {
    fn push(&mut self, queue: Queue) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.waiters.push(Waiting {
            id,
            queue,
            parker: Parker::current(),
        });
        id
    }

    /// Dequeues waiter `id`; false if it was no longer queued (a notifier took it).
    fn remove(&mut self, id: u32) -> bool {
        match self.waiters.iter().position(|w| w.id == id) {
            Some(at) => {
                self.waiters.remove(at);
                true
            }
            None => false,
        }
    }

    /// Takes every waiter of `queue`; wake them ([`Wakes::wake`]) after unlocking.
    #[must_use = "wake the waiters after releasing the lock"]
    pub(crate) fn take_all(&mut self, queue: Queue) -> Wakes {
        match self.waiters.iter().filter(|w| w.queue == queue).count() {
            0 => Wakes::None,
            1 => self.take_one(queue),
            _ => {
                // Several waiters on one condition: rare (readers and writers are serialised
                // by their gates), so this may allocate.
                let (taken, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiters)
                    .into_iter()
                    .partition(|w| w.queue == queue);
                self.waiters = kept;
                Wakes::Many(taken.into_iter().map(|w| w.parker).collect())
            }
        }
    }

    /// Takes the longest-waiting waiter of `queue`, if any.
    #[must_use = "wake the waiter after releasing the lock"]
    pub(crate) fn take_one(&mut self, queue: Queue) -> Wakes {
        match self.waiters.iter().position(|w| w.queue == queue) {
            Some(at) => Wakes::One(self.waiters.remove(at).parker),
            None => Wakes::None,
        }
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }
}

/// Waiters taken from a [`WaitSet`], to be woken once its mutex is released.
pub(crate) enum Wakes {
    None,
    One(Parker),
    Many(Vec<Parker>),
}

impl Wakes {
    pub(crate) fn wake(self) {
        match self {
            Wakes::None => {}
            Wakes::One(parker) => parker.wake(),
            Wakes::Many(parkers) => parkers.into_iter().for_each(Parker::wake),
        }
    }
}

fn relock(mutex: &Mutex<WaitSet>) -> MutexGuard<'_, WaitSet> {
    // Nothing panics while it is held: the set stays consistent.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Queues the caller on `queue`, releases the mutex, waits for a wake (or `deadline`), and takes
/// the mutex again. `None` without waiting once `deadline` has passed. Wakes can be spurious:
/// callers re-check their condition in a loop.
pub(crate) fn wait_until<'a>(
    mutex: &'a Mutex<WaitSet>,
    mut guard: MutexGuard<'a, WaitSet>,
    queue: Queue,
    deadline: Option<Instant>,
) -> Option<MutexGuard<'a, WaitSet>> {
    if deadline.is_some_and(|d| d <= Instant::now()) {
        return None;
    }
    let id = guard.push(queue);
    drop(guard);
    // Unwound while queued (its poller closing): leave the queue.
    let queued = Unqueue { mutex, id };
    match deadline {
        Some(deadline) => park_until(deadline),
        None => park(),
    }
    std::mem::forget(queued);
    let mut guard = relock(mutex);
    // Still queued after a timeout or a spurious wake: a later notify must not wake us while
    // we wait for something else.
    guard.remove(id);
    Some(guard)
}

struct Unqueue<'a> {
    mutex: &'a Mutex<WaitSet>,
    id: u32,
}

impl Drop for Unqueue<'_> {
    fn drop(&mut self) {
        relock(self.mutex).remove(self.id);
    }
}

/// Takes gate `gate` of the set: a lock that guards no data, whose waiters may be threads or
/// coroutines (FIFO). Held across waits (a reader waiting for input keeps its reader), which a
/// std `Mutex` must not be in a coroutine: a second coroutine of the same poller blocking on
/// it would stall that poller.
pub(crate) fn lock_gate(mutex: &Mutex<WaitSet>, gate: Queue) -> GateGuard<'_> {
    let bit = 1u8 << gate;
    let mut set = relock(mutex);
    while set.held & bit != 0 {
        let id = set.push(gate);
        drop(set);
        // Unwound while queued (its poller closing): leave the queue, and if the releaser
        // already chose us, pass the free gate on, or the next waiter is never woken.
        let cancel = PassOn { mutex, gate, id };
        park();
        std::mem::forget(cancel);
        set = relock(mutex);
        set.remove(id);
    }
    set.held |= bit;
    GateGuard { mutex, gate }
}

struct PassOn<'a> {
    mutex: &'a Mutex<WaitSet>,
    gate: Queue,
    id: u32,
}

impl Drop for PassOn<'_> {
    fn drop(&mut self) {
        let wakes = {
            let mut set = relock(self.mutex);
            if set.remove(self.id) || set.held & (1 << self.gate) != 0 {
                Wakes::None
            } else {
                set.take_one(self.gate)
            }
        };
        wakes.wake();
    }
}

/// Holds a gate; releasing it wakes the next waiter.
pub(crate) struct GateGuard<'a> {
    mutex: &'a Mutex<WaitSet>,
    gate: Queue,
}

impl Drop for GateGuard<'_> {
    fn drop(&mut self) {
        let wakes = {
            let mut set = relock(self.mutex);
            set.held &= !(1 << self.gate);
            set.take_one(self.gate)
        };
        // The woken waiter re-checks the bit: if somebody else took the gate first it queues
        // again (at the back: fairness is best-effort, progress is not).
        wakes.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_gate_serialises_threads() {
        let set = Arc::new(Mutex::new(WaitSet::default()));
        let count = Arc::new(Mutex::new(0usize));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (set, count) = (set.clone(), count.clone());
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        let _held = lock_gate(&set, 2);
                        let mut c = count.lock().unwrap();
                        *c += 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*count.lock().unwrap(), 4000);
        assert!(set.lock().unwrap().is_empty());
    }

    #[test]
    fn two_gates_of_one_set_are_independent() {
        let set = Mutex::new(WaitSet::default());
        let _reader = lock_gate(&set, 2);
        let _writer = lock_gate(&set, 3); // would deadlock if the gates were one
        assert_eq!(set.lock().unwrap().held, 0b1100);
    }

    #[test]
    fn wait_until_times_out_and_unqueues() {
        let mutex = Mutex::new(WaitSet::default());
        let deadline = Instant::now() + Duration::from_millis(20);
        let mut guard = mutex.lock().unwrap();
        loop {
            guard = match wait_until(&mutex, guard, 0, Some(deadline)) {
                Some(guard) => guard,
                None => break,
            };
            assert!(guard.is_empty(), "a returning waiter leaves the set");
        }
        assert!(Instant::now() >= deadline);
        assert!(mutex.lock().unwrap().is_empty());
    }

    #[test]
    fn take_all_takes_only_its_queue() {
        let mut set = WaitSet::default();
        for queue in [0, 1, 0, 1, 0] {
            set.push(queue);
        }
        assert!(matches!(set.take_all(0), Wakes::Many(p) if p.len() == 3));
        assert!(matches!(set.take_all(1), Wakes::Many(p) if p.len() == 2));
        assert!(set.is_empty());
    }
}
