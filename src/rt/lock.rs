//! `QueueLock`: a lock whose waiters queue, FIFO, and sleep until the holder hands it over. A
//! waiter is a [`Parker`]: a parked thread, or a suspended coroutine (which must never block its
//! poller thread: the holder may be another coroutine of that thread, suspended with the lock,
//! that only this thread can resume). Threads and coroutines queue alike.
//!
//! **No lock-free part**: the holder flag, the queue and the hand-over are all under one std
//! `Mutex`, held only for a few instructions and never while anyone waits, so there is no fast
//! path to model (no loom model; the unit tests below and `tests/goroutines_contention.rs`
//! test it). The hand-over is direct: a release with waiters keeps the lock held and grants it
//! to the first waiter (by its ticket), so a newcomer (or a `try_lock`) cannot overtake the
//! queue, and a woken waiter never has to queue again. No wake is lost: a waiter queues
//! (under the mutex) before it sleeps, and a grant is recorded (under the mutex) before its
//! wake; a thread's unpark token and a coroutine's run-queue entry both survive until it
//! sleeps, and a stale or spurious wake is recognised by the grant not naming its ticket.
//!
//! A coroutine dropped while it waits (its poller shutting down) leaves the queue, and passes
//! the lock on if it had already been granted it.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use super::{park, sched, Parker};

pub(crate) struct QueueLock<T> {
    state: Mutex<State<T>>,
}

struct State<T> {
    held: bool,
    /// The ticket of the waiter the lock was handed to, which has not claimed it yet.
    granted: Option<u64>,
    next_ticket: u64,
    waiters: VecDeque<(u64, Parker)>,
    data: T,
}

/// Holds a [`QueueLock`]; dropping it hands the lock to the first waiter.
pub(crate) struct QueueGuard<'a, T> {
    lock: &'a QueueLock<T>,
}

impl<T> QueueLock<T> {
    pub(crate) fn new(data: T) -> QueueLock<T> {
        QueueLock {
            state: Mutex::new(State {
                held: false,
                granted: None,
                next_ticket: 0,
                waiters: VecDeque::new(),
                data,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State<T>> {
        // Nothing panics under this mutex but the callers' `with` closures, which leave the
        // data as valid as any other value.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The lock if it is free now (nobody holds it, so nobody waits for it either).
    pub(crate) fn try_lock(&self) -> Option<QueueGuard<'_, T>> {
        let mut state = self.state();
        if state.held {
            return None;
        }
        state.held = true;
        Some(QueueGuard { lock: self })
    }

    /// Waits for the lock in FIFO order: suspends a coroutine, parks a thread. `None`, without
    /// waiting, when the lock is held and the caller is a poller thread unwinding its
    /// coroutines (the holder may be one of them: see `sched`'s teardown order).
    pub(crate) fn lock(&self) -> Option<QueueGuard<'_, T>> {
        let ticket = {
            let mut state = self.state();
            if !state.held {
                state.held = true;
                return Some(QueueGuard { lock: self });
            }
            if sched::tearing_down() {
                return None;
            }
            let ticket = state.next_ticket;
            state.next_ticket = ticket.wrapping_add(1);
            state.waiters.push_back((ticket, Parker::current()));
            ticket
        };
        let mut queued = Queued {
            lock: self,
            ticket,
            done: false,
        };
        loop {
            park();
            let mut state = self.state();
            if state.granted == Some(ticket) {
                state.granted = None;
                queued.done = true;
                return Some(QueueGuard { lock: self });
            }
            // A stale or spurious wake: still queued, sleep again.
        }
    }

    /// Runs `f` on the protected value.
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self.state().data)
    }

    /// Lets the lock go: to the first waiter if there is one (it stays held), else free.
    fn release(&self, state: &mut State<T>) -> Option<Parker> {
        match state.waiters.pop_front() {
            Some((ticket, parker)) => {
                state.granted = Some(ticket);
                Some(parker)
            }
            None => {
                state.held = false;
                None
            }
        }
    }

    #[cfg(all(test, not(loom)))]
    fn waiters(&self) -> usize {
        self.state().waiters.len()
    }
}

impl<T> QueueGuard<'_, T> {
    /// Runs `f` on the protected value (briefly under the lock's internal mutex: `f` must not
    /// wait).
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        self.lock.with(f)
    }
}

impl<T> Drop for QueueGuard<'_, T> {
    fn drop(&mut self) {
        let next = {
            let mut state = self.lock.state();
            self.lock.release(&mut state)
        };
        // Woken after the mutex is released: the waiter's first act is to take it.
        if let Some(next) = next {
            next.wake();
        }
    }
}

/// A waiter's place in the queue, given up if the waiter is dropped while it waits (a coroutine
/// force-unwound by its poller's shutdown).
struct Queued<'a, T> {
    lock: &'a QueueLock<T>,
    ticket: u64,
    done: bool,
}

impl<T> Drop for Queued<'_, T> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let next = {
            let mut state = self.lock.state();
            if state.granted == Some(self.ticket) {
                // Handed over but never claimed: pass it on.
                state.granted = None;
                self.lock.release(&mut state)
            } else {
                state.waiters.retain(|(ticket, _)| *ticket != self.ticket);
                None
            }
        };
        if let Some(next) = next {
            next.wake();
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    fn wait_until(what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::yield_now();
        }
    }

    #[test]
    fn waiters_get_the_lock_in_fifo_order_and_try_lock_cannot_overtake() {
        let lock = Arc::new(QueueLock::new(Vec::new()));
        let held = lock.try_lock().unwrap();
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let thread = {
                    let lock = lock.clone();
                    std::thread::spawn(move || {
                        let guard = lock.lock().unwrap();
                        guard.with(|order| order.push(i));
                    })
                };
                wait_until("the waiter never queued", || lock.waiters() == i + 1);
                thread
            })
            .collect();
        drop(held);
        // Handed over: held until the queue is empty, so a newcomer's try_lock fails meanwhile
        // or succeeds only once every waiter had its turn.
        if let Some(late) = lock.try_lock() {
            late.with(|order| assert_eq!(order.len(), 4, "try_lock overtook the queue"));
        }
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(lock.try_lock().unwrap().with(|o| o.clone()), [0, 1, 2, 3]);
    }

    #[test]
    fn contended_increments_are_exclusive_and_none_is_lost() {
        let lock = Arc::new(QueueLock::new((0u64, false)));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let lock = lock.clone();
                std::thread::spawn(move || {
                    for _ in 0..2000 {
                        let guard = lock.lock().unwrap();
                        guard.with(|(_, inside)| {
                            assert!(!*inside, "two holders at once");
                            *inside = true;
                        });
                        std::thread::yield_now();
                        guard.with(|(count, inside)| {
                            *count += 1;
                            *inside = false;
                        });
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(lock.try_lock().unwrap().with(|(count, _)| *count), 8000);
    }
}
