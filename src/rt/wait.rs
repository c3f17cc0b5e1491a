//! Waiting that works the same for a thread and a coroutine: a condition-variable analogue
//! ([`WaitList`] with [`wait_until`]) and a lock without data ([`Gate`]).
//!
//! std's `Condvar` and `Mutex` park the *thread*. A coroutine that waits on one stalls its
//! poller, and when the waker is that same poller (new input, room to send) it never comes:
//! a deadlock. These wait with a [`Parker`] instead, which suspends a coroutine and parks a
//! thread, so the poller keeps running while a coroutine waits.
//!
//! Both keep their waiters inside a std `Mutex` the caller owns, which is never held across a
//! wait: the condition is checked and the waiter queued under the lock, the lock released, and
//! only then does the caller park; a notifier takes the same lock to dequeue, and wakes after
//! releasing it. So a wake between the check and the park is never lost (the thread's unpark
//! token, or the coroutine's queued resume, outlives the race).

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use super::{park, park_until, Parker};

/// The waiters of one condition, kept inside the `Mutex` that guards the condition.
///
/// A queue, oldest first. Its capacity is kept across waits, and a single waiter is taken out
/// without allocating, so a connection's read–wake cycle allocates nothing once warm.
#[derive(Default)]
pub(crate) struct WaitList {
    waiters: VecDeque<(u64, Parker)>,
    next_id: u64,
}

impl WaitList {
    pub(crate) const fn new() -> WaitList {
        WaitList {
            waiters: VecDeque::new(),
            next_id: 0,
        }
    }

    fn push(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.waiters.push_back((id, Parker::current()));
        id
    }

    fn contains(&self, id: u64) -> bool {
        self.waiters.iter().any(|(other, _)| *other == id)
    }

    fn remove(&mut self, id: u64) {
        self.waiters.retain(|(other, _)| *other != id);
    }

    /// Takes every waiter; wake them ([`Wakes::wake`]) after unlocking.
    #[must_use = "wake the waiters after releasing the lock"]
    pub(crate) fn take_all(&mut self) -> Wakes {
        match self.waiters.len() {
            0 => Wakes::None,
            1 => self.take_one(),
            _ => Wakes::Many(self.waiters.drain(..).map(|(_, p)| p).collect()),
        }
    }

    /// Takes the longest-waiting waiter, if any.
    #[must_use = "wake the waiter after releasing the lock"]
    pub(crate) fn take_one(&mut self) -> Wakes {
        match self.waiters.pop_front() {
            Some((_, parker)) => Wakes::One(parker),
            None => Wakes::None,
        }
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }
}

/// Waiters taken from a [`WaitList`], to be woken once its lock is released.
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

/// Queues the caller on the list `list` picks out of `guard`, releases the lock, waits for a
/// wake (or `deadline`), and takes the lock again. `None` without waiting once `deadline` has
/// passed. Wakes can be spurious: callers re-check their condition in a loop.
pub(crate) fn wait_until<'a, T>(
    mutex: &'a Mutex<T>,
    mut guard: MutexGuard<'a, T>,
    list: impl Fn(&mut T) -> &mut WaitList,
    deadline: Option<Instant>,
) -> Option<MutexGuard<'a, T>> {
    if deadline.is_some_and(|d| d <= Instant::now()) {
        return None;
    }
    let id = list(&mut guard).push();
    drop(guard);
    match deadline {
        Some(deadline) => park_until(deadline),
        None => park(),
    }
    let mut guard = mutex.lock().unwrap_or_else(|e| e.into_inner());
    // Still queued if this was a timeout or a spurious wake: a later notify must not wake us
    // while we wait for something else.
    list(&mut guard).remove(id);
    Some(guard)
}

/// A lock that guards no data, whose waiters may be threads or coroutines (FIFO). Held across
/// waits (a reader waiting for input keeps its reader), which a std `Mutex` must not be in a
/// coroutine: a second coroutine of the same poller blocking on it would stall that poller.
pub(crate) struct Gate {
    state: Mutex<GateState>,
}

struct GateState {
    locked: bool,
    waiters: WaitList,
}

impl Gate {
    pub(crate) const fn new() -> Gate {
        Gate {
            state: Mutex::new(GateState {
                locked: false,
                waiters: WaitList::new(),
            }),
        }
    }

    fn lock_state(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until the gate is free and takes it.
    pub(crate) fn lock(&self) -> GateGuard<'_> {
        let mut state = self.lock_state();
        while state.locked {
            let id = state.waiters.push();
            drop(state);
            // Unwound while queued (the coroutine's poller closed): leave the queue, and if the
            // releaser already chose us, pass the free gate on, or the next waiter is never woken.
            let cancel = PassOn { gate: self, id };
            park();
            std::mem::forget(cancel);
            state = self.lock_state();
            state.waiters.remove(id);
        }
        state.locked = true;
        GateGuard { gate: self }
    }
}

struct PassOn<'a> {
    gate: &'a Gate,
    id: u64,
}

impl Drop for PassOn<'_> {
    fn drop(&mut self) {
        let wakes = {
            let mut state = self.gate.lock_state();
            if state.waiters.contains(self.id) {
                state.waiters.remove(self.id);
                Wakes::None
            } else if !state.locked {
                state.waiters.take_one()
            } else {
                Wakes::None
            }
        };
        wakes.wake();
    }
}

/// Holds a [`Gate`]; releasing it wakes the next waiter.
pub(crate) struct GateGuard<'a> {
    gate: &'a Gate,
}

impl Drop for GateGuard<'_> {
    fn drop(&mut self) {
        let wakes = {
            let mut state = self.gate.lock_state();
            state.locked = false;
            state.waiters.take_one()
        };
        // The woken waiter re-checks `locked`: if somebody else took the gate first it queues
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
    fn gate_serialises_threads() {
        let gate = Arc::new(Gate::new());
        let count = Arc::new(Mutex::new(0usize));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (gate, count) = (gate.clone(), count.clone());
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        let _held = gate.lock();
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
    }

    #[test]
    fn wait_until_times_out_and_unqueues() {
        let mutex = Mutex::new(WaitList::new());
        let deadline = Instant::now() + Duration::from_millis(20);
        let mut guard = mutex.lock().unwrap();
        loop {
            guard = match wait_until(&mutex, guard, |l| l, Some(deadline)) {
                Some(guard) => guard,
                None => break,
            };
            assert!(guard.is_empty(), "a returning waiter leaves the list");
        }
        assert!(Instant::now() >= deadline);
        assert!(mutex.lock().unwrap().is_empty());
    }
}
