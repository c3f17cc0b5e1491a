//! One descriptor's slots and deadlines under an arbitrary order of events, checked against a
//! model after every step. `fuzz/fuzz_targets/slot_deadline.rs` feeds it libFuzzer's bytes;
//! `cargo test` runs it on proptest's (tests below). Loom checks the same code with threads
//! racing (`loom_tests`); this checks every *order* of single steps, which loom cannot reach
//! at length.
//!
//! The steps are what the pollers, timers and callers do: readiness of either direction, an
//! async wait polled (or abandoned, its future dropped), a deadline set (past, future or
//! none), the clock moving with due timers firing, and close. The waiters are async tasks:
//! polling never blocks, and the same slot protocol serves threads and coroutines.
//!
//! What must hold after every step:
//! - a wait completes iff the model says so: latched readiness first, then close or an
//!   expired deadline, else it stays pending;
//! - a pending wait whose completion became due has been woken (no lost wake-up);
//! - the info word's expired bit of each direction is exactly "its deadline is at or before
//!   the clock";
//! - each direction has exactly the one armed timer its deadline records (none after close,
//!   none without a deadline, one at or before a future deadline).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use super::{io, lock, Mode, Slot, TimerKey, Timers, Timing, CLOSING};
use crate::loom::Ordering;
use crate::transport::slot::Woken;

const MODES: [Mode; 2] = [Mode::Read, Mode::Write];

fn index(mode: Mode) -> usize {
    match mode {
        Mode::Read => 0,
        Mode::Write => 1,
    }
}

/// Counts wakes.
#[derive(Default)]
struct Counter(AtomicUsize);

impl Wake for Counter {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// The poller's timers, faked: armed ones in a map, fired by [`Machine::advance`].
#[derive(Default)]
struct FakeTimers {
    armed: RefCell<BTreeMap<u64, (usize, Instant)>>,
    next: Cell<u64>,
}

impl Timers for FakeTimers {
    fn arm(&self, mode: Mode, at: Instant) -> io::Result<TimerKey> {
        let id = self.next.get() + 1;
        self.next.set(id);
        self.armed.borrow_mut().insert(id, (index(mode), at));
        Ok(TimerKey::fake(id))
    }

    fn disarm(&self, key: TimerKey) {
        // A key that already fired cancels nothing, as on a poller.
        self.armed.borrow_mut().remove(&key.id());
    }
}

/// One direction's waiter as the model sees it.
#[derive(Default)]
struct Side {
    /// Readiness delivered and not consumed.
    ready: bool,
    deadline: Option<Instant>,
    /// A wait polled to `Pending` and not abandoned: its wake counter, and the count then.
    pending: Option<(Arc<Counter>, usize)>,
}

struct Machine {
    timing: Timing,
    slots: [Slot; 2],
    timers: FakeTimers,
    sides: [Side; 2],
    now: Instant,
    closed: bool,
}

impl Machine {
    fn new() -> Machine {
        Machine {
            timing: Timing::default(),
            slots: [Slot::default(), Slot::default()],
            timers: FakeTimers::default(),
            sides: [Side::default(), Side::default()],
            // Deadlines up to 128 ms in the past must be representable.
            now: Instant::now() + Duration::from_secs(1),
            closed: false,
        }
    }

    fn wake(&self, i: usize, io_ready: bool) {
        if let Some(waiter) = self.slots[i].unblock(io_ready) {
            waiter.wake();
        }
    }

    fn readiness(&mut self, mode: Mode) {
        let i = index(mode);
        self.sides[i].ready = true;
        self.wake(i, true);
    }

    fn interrupted(&self, mode: Mode) -> bool {
        self.timing.info.load(Ordering::SeqCst) & (CLOSING | mode.expired_bit()) != 0
    }

    fn expired(&self, i: usize) -> bool {
        self.sides[i].deadline.is_some_and(|at| at <= self.now)
    }

    fn poll(&mut self, mode: Mode) {
        let i = index(mode);
        let counter = match &self.sides[i].pending {
            Some((counter, _)) => counter.clone(),
            None => Arc::new(Counter::default()),
        };
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let got = self.slots[i].poll_wait(&mut cx, || self.interrupted(mode));
        let side = &self.sides[i];
        let want = if side.ready {
            Poll::Ready(Woken::Ready)
        } else if self.closed || self.expired(i) {
            Poll::Ready(Woken::Interrupted)
        } else {
            Poll::Pending
        };
        assert_eq!(
            got, want,
            "{mode:?} wait: ready {}, closed {}",
            side.ready, self.closed
        );
        let side = &mut self.sides[i];
        if got == Poll::Ready(Woken::Ready) {
            side.ready = false;
        }
        side.pending = match got {
            Poll::Pending => {
                let seen = counter.0.load(Ordering::SeqCst);
                Some((counter, seen))
            }
            Poll::Ready(_) => None,
        };
    }

    fn set_deadline(&mut self, mode: Mode, at: Option<Instant>) {
        if self.closed {
            return; // refused above the descriptor (`NetFd::guard`), never reaches it
        }
        let i = index(mode);
        self.sides[i].deadline = at;
        if self.timing.set(mode, at, self.now, &self.timers).unwrap() {
            self.wake(i, false);
        }
    }

    /// Moves the clock and fires every timer due, earliest first, as the poller would.
    fn advance(&mut self, by: Duration) {
        self.now += by;
        loop {
            let due = self
                .timers
                .armed
                .borrow()
                .iter()
                .filter(|(_, (_, at))| *at <= self.now)
                .min_by_key(|(id, (_, at))| (*at, **id))
                .map(|(id, entry)| (*id, *entry));
            let Some((id, (i, at))) = due else { break };
            self.timers.armed.borrow_mut().remove(&id);
            if self.timing.fired(MODES[i], at, self.now, &self.timers) {
                self.wake(i, false);
            }
        }
    }

    fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        // `evict`, then `deregister`'s timer half.
        self.timing.info.fetch_or(CLOSING, Ordering::SeqCst);
        self.wake(0, false);
        self.wake(1, false);
        self.timing.disarm_all(&self.timers);
    }

    fn check(&self) {
        for mode in MODES {
            let i = index(mode);
            let side = &self.sides[i];
            let due = side.ready || self.closed || self.expired(i);
            if let (true, Some((counter, seen))) = (due, &side.pending) {
                assert!(
                    counter.0.load(Ordering::SeqCst) > *seen,
                    "lost wake-up: the {mode:?} wait is due (ready {}, closed {}, expired {}) but was not woken",
                    side.ready,
                    self.closed,
                    self.expired(i)
                );
            }
            let expired_bit = self.timing.info.load(Ordering::SeqCst) & mode.expired_bit() != 0;
            if !self.closed {
                assert_eq!(
                    expired_bit,
                    self.expired(i),
                    "{mode:?} expired bit, deadline {:?}, now {:?}",
                    side.deadline,
                    self.now
                );
            }
            let armed: Vec<(u64, Instant)> = self
                .timers
                .armed
                .borrow()
                .iter()
                .filter(|(_, (m, _))| *m == i)
                .map(|(id, (_, at))| (*id, *at))
                .collect();
            let recorded = {
                let mut deadlines = lock(&self.timing.deadlines);
                deadlines.get(mode).timer.map(|(at, key)| (key.id(), at))
            };
            match (self.closed, side.deadline, recorded, armed.as_slice()) {
                (true, _, None, []) => {}
                (false, None, None, []) => {}
                (false, Some(at), _, []) if at <= self.now => {}
                (false, Some(at), Some(timer), [one]) if timer == *one && timer.1 <= at => {}
                other => panic!(
                    "{mode:?} timers: closed {}, deadline {:?}, recorded {:?}, armed {:?}",
                    other.0, other.1, other.2, other.3
                ),
            }
        }
    }
}

/// Runs the steps `data` spells, two bytes a step (what, argument), checking after each.
/// Panics on the first violation.
pub fn run(data: &[u8]) {
    let mut machine = Machine::new();
    for step in data.chunks(2) {
        let (what, arg) = (step[0], step.get(1).copied().unwrap_or(0));
        let mode = MODES[(arg & 1) as usize];
        match what % 8 {
            0 => machine.readiness(mode),
            1 | 2 => machine.poll(mode),
            3 => {
                // The future dropped while pending: its waker stays in the slot, stale.
                machine.sides[index(mode)].pending = None;
            }
            4 => {
                // None, or -64 ms to +63 ms from now.
                let at = match arg >> 1 {
                    0 => None,
                    n => Some(
                        machine.now + Duration::from_millis(n as u64) - Duration::from_millis(64),
                    ),
                };
                machine.set_deadline(mode, at);
            }
            5 | 6 => machine.advance(Duration::from_millis((arg >> 1) as u64)),
            _ => {
                if arg % 16 == 0 {
                    machine.close();
                } else {
                    machine.readiness(mode);
                }
            }
        }
        machine.check();
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn any_order_of_events_keeps_the_model(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            super::run(&data);
        }
    }

    /// Orders worth keeping: a wait interrupted by a deadline that is then pushed later,
    /// readiness racing an expiry, close while pending.
    #[test]
    fn chosen_orders() {
        let wait_read = [1, 0];
        let past_read_deadline = [4, 2]; // arg 2: n = 1 → now - 63 ms
        let future_read_deadline = [4, 200]; // n = 100 → now + 36 ms
        let tick = [5, 100]; // 50 ms
        let readable = [0, 0];
        let close = [7, 0];
        for steps in [
            vec![
                wait_read,
                past_read_deadline,
                future_read_deadline,
                wait_read,
                tick,
                wait_read,
            ],
            vec![
                future_read_deadline,
                wait_read,
                readable,
                tick,
                wait_read,
                wait_read,
            ],
            vec![wait_read, [3, 0], readable, wait_read, close, wait_read],
            vec![
                future_read_deadline,
                tick,
                tick,
                wait_read,
                close,
                future_read_deadline,
            ],
        ] {
            super::run(&steps.concat());
        }
    }
}
