//! `PollDesc`: the poll descriptor of one fd (Go's `pollDesc`). It is registered once,
//! edge-triggered for input and output, and never detached by the poller on a hang-up; it owns a
//! read [`Slot`] and a write [`Slot`], the deadlines, and the info word that explains why a
//! waiter woke.
//!
//! The info word (bits, all set and read SeqCst, always *before* a waiter is woken):
//!
//! | bit             | set by                         | cleared by                 | makes                     |
//! |-----------------|--------------------------------|----------------------------|---------------------------|
//! | `CLOSING`       | `evict` (close)                | never                      | both directions: closed   |
//! | `READ_EXPIRED`  | a read deadline in the past / its timer | a new read deadline (future or none) | reads: timeout |
//! | `WRITE_EXPIRED` | likewise for writes            | likewise                   | writes: timeout           |
//! | `EVENT_ERR`     | an event whose mask is exactly `ERR` | never                | a read about to wait: the socket error |
//! | `POLLER_CLOSED` | the poller's loop exiting (`on_poller_closed`) | never      | both directions: closed (no event will come); the fd stays open until the owner closes it |
//! | `EDGE_SPENT`    | an event with `RDHUP`, `HUP`, `ERR` or `PRI` | never        | reads after a short read: read until `EAGAIN` again (an end, an error or bytes past an urgent mark may be queued with their edge already spent) |
//!
//! When a call is refused the precedence is closed, then expired, then event error (as in Go).
//!
//! Events: `IN | PRI | RDHUP | HUP | ERR` wake the reader, `OUT | HUP | ERR` the writer.
//!
//! Deadlines (`Timing`): whether a deadline has passed is decided *and* published in the info
//! word under the deadlines lock, so a decision can never mark a deadline set after it as
//! expired (loom model in `loom_tests`); only the wake happens after the lock. A direction keeps
//! at most one poller timer, at or before its deadline, and a firing timer compares the
//! *current* deadline with the clock (which subsumes Go's `rseq`/`wseq` check), expires it if it
//! has passed and re-arms itself if the deadline moved later; so a caller who pushes the
//! deadline forward before every read (the usual idle timeout pattern) costs one timer per
//! deadline period, not one per read. A deadline moved earlier, cleared, or passed cancels the
//! old timer, and close cancels both, so a closed descriptor holds no timer.

use std::io;
use std::os::fd::RawFd;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Instant;

use super::error;
use super::slot::{Slot, Waiter};
use crate::loom::{AtomicU32, Mutex, MutexGuard, Ordering};
use crate::poll::{EventHandler, PollEvent, Poller, Ready, Registration, TimerKey};

const CLOSING: u32 = 1;
const READ_EXPIRED: u32 = 1 << 1;
const WRITE_EXPIRED: u32 = 1 << 2;
const EVENT_ERR: u32 = 1 << 3;
const POLLER_CLOSED: u32 = 1 << 4;
const EDGE_SPENT: u32 = 1 << 5;

/// One direction of a descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Read,
    Write,
}

impl Mode {
    fn expired_bit(self) -> u32 {
        match self {
            Mode::Read => READ_EXPIRED,
            Mode::Write => WRITE_EXPIRED,
        }
    }
}

/// Arms and cancels the one-shot timers of deadlines: the descriptor's poller, or a fake in the
/// loom model.
trait Timers {
    /// Arms a timer that calls [`Timing::fired`] for `mode` at `at`.
    fn arm(&self, mode: Mode, at: Instant) -> io::Result<TimerKey>;
    fn disarm(&self, key: TimerKey);
}

#[derive(Default)]
struct Deadline {
    /// The current deadline; `None` waits forever.
    at: Option<Instant>,
    /// The one pending timer of this direction: when it fires, and its key.
    timer: Option<(Instant, TimerKey)>,
}

#[derive(Default)]
struct Deadlines {
    read: Deadline,
    write: Deadline,
}

impl Deadlines {
    fn get(&mut self, mode: Mode) -> &mut Deadline {
        match mode {
            Mode::Read => &mut self.read,
            Mode::Write => &mut self.write,
        }
    }
}

/// The info word and the deadlines: the part of a descriptor that decides why a waiter wakes.
/// Whether a deadline has expired is decided and published in the info word under the
/// deadlines lock, so a deadline set later can never be marked expired by an earlier decision.
#[derive(Default)]
struct Timing {
    info: AtomicU32,
    deadlines: Mutex<Deadlines>,
}

impl Timing {
    /// Sets the deadline of `mode`. True when the waiter must be woken (the deadline passed).
    fn set(
        &self,
        mode: Mode,
        at: Option<Instant>,
        now: Instant,
        timers: &dyn Timers,
    ) -> io::Result<bool> {
        let mut deadlines = lock(&self.deadlines);
        let deadline = deadlines.get(mode);
        deadline.at = at;
        self.settle(mode, deadline, now, timers)
    }

    /// The timer armed for `fired_at` fired. True when the waiter must be woken.
    fn fired(&self, mode: Mode, fired_at: Instant, now: Instant, timers: &dyn Timers) -> bool {
        let mut deadlines = lock(&self.deadlines);
        if self.info.load(Ordering::SeqCst) & CLOSING != 0 {
            return false; // closing disarmed (or is about to disarm) every timer
        }
        let deadline = deadlines.get(mode);
        if deadline.timer.is_some_and(|(at, _)| at == fired_at) {
            deadline.timer = None;
        }
        // Arming fails only if the poller is closing, and then nothing waits on its events.
        self.settle(mode, deadline, now, timers).unwrap_or(false)
    }

    /// Under the deadlines lock: publishes whether the deadline in force has passed and keeps
    /// at most one timer, at or before the deadline. True if it has passed.
    fn settle(
        &self,
        mode: Mode,
        deadline: &mut Deadline,
        now: Instant,
        timers: &dyn Timers,
    ) -> io::Result<bool> {
        match deadline.at {
            Some(at) if at <= now => {
                // Published here, under the lock (issue 9): after the lock is dropped a newer
                // deadline may already be in force, and marking it expired would be wrong.
                self.info.fetch_or(mode.expired_bit(), Ordering::SeqCst);
                if let Some((_, key)) = deadline.timer.take() {
                    timers.disarm(key);
                }
                Ok(true)
            }
            at => {
                self.info.fetch_and(!mode.expired_bit(), Ordering::SeqCst);
                match (at, deadline.timer) {
                    (None, Some((_, key))) => {
                        deadline.timer = None;
                        timers.disarm(key);
                    }
                    // An earlier timer finds the deadline moved and re-arms: pushing the
                    // deadline forward before every read costs one timer per period.
                    (Some(at), Some((armed, _))) if armed <= at => {}
                    (Some(at), old) => {
                        let key = timers.arm(mode, at)?;
                        if let Some((_, old)) = old {
                            timers.disarm(old);
                        }
                        deadline.timer = Some((at, key));
                    }
                    (None, None) => {}
                }
                Ok(false)
            }
        }
    }

    /// Cancels both directions' timers (at close): their closures go now, not in an hour.
    fn disarm_all(&self, timers: &dyn Timers) {
        let mut deadlines = lock(&self.deadlines);
        for mode in [Mode::Read, Mode::Write] {
            if let Some((_, key)) = deadlines.get(mode).timer.take() {
                timers.disarm(key);
            }
        }
    }
}

/// A descriptor's timers, on its poller.
struct PollerTimers<'a>(&'a Arc<PollDesc>);

impl Timers for PollerTimers<'_> {
    fn arm(&self, mode: Mode, at: Instant) -> io::Result<TimerKey> {
        let desc = Arc::downgrade(self.0);
        self.0.poller.schedule(at, move || {
            if let Some(desc) = desc.upgrade() {
                desc.timer_fired(mode, at);
            }
        })
    }

    fn disarm(&self, key: TimerKey) {
        self.0.poller.cancel(key);
    }
}

pub(crate) struct PollDesc {
    timing: Timing,
    read: Slot,
    write: Slot,
    poller: Arc<Poller>,
    registration: Registration,
}

impl PollDesc {
    /// True once an event said the input may hold something no later edge will announce (an
    /// end of stream, an error, urgent data): short reads prove nothing from then on.
    pub(crate) fn edge_spent(&self) -> bool {
        self.timing.info.load(Ordering::SeqCst) & EDGE_SPENT != 0
    }

    /// The id of the poller the fd is registered on.
    pub(crate) fn poller_id(&self) -> usize {
        self.poller.id()
    }

    /// Registers `fd` on `poller`, edge-triggered for both directions.
    pub(crate) fn register(fd: RawFd, poller: Arc<Poller>) -> io::Result<Arc<PollDesc>> {
        let desc = Arc::new_cyclic(|weak: &Weak<PollDesc>| {
            let handler: Weak<dyn EventHandler> = weak.clone();
            PollDesc {
                timing: Timing::default(),
                read: Slot::default(),
                write: Slot::default(),
                poller,
                registration: Registration::persistent(fd, handler),
            }
        });
        desc.poller.attach_edge(&desc.registration)?;
        Ok(desc)
    }

    fn slot(&self, mode: Mode) -> &Slot {
        match mode {
            Mode::Read => &self.read,
            Mode::Write => &self.write,
        }
    }

    /// Whether a call in `mode` may go ahead: the closed error, then the timeout error.
    pub(crate) fn check(&self, mode: Mode) -> io::Result<()> {
        let info = self.timing.info.load(Ordering::SeqCst);
        if info & (CLOSING | POLLER_CLOSED) != 0 {
            Err(error::closed())
        } else if info & mode.expired_bit() != 0 {
            Err(error::timeout())
        } else {
            Ok(())
        }
    }

    fn interrupted(&self, mode: Mode) -> bool {
        self.timing.info.load(Ordering::SeqCst) & (CLOSING | POLLER_CLOSED | mode.expired_bit())
            != 0
    }

    /// Before waiting: the fd reported an error event and its syscall still says `EAGAIN`; an
    /// edge-triggered fd will not report it again, so waiting would be forever.
    fn event_error(&self, mode: Mode) -> Option<io::Error> {
        if mode == Mode::Read && self.timing.info.load(Ordering::SeqCst) & EVENT_ERR != 0 {
            return Some(io::Error::other(super::error::EventError));
        }
        None
    }

    /// Called after the syscall said `EAGAIN`: waits for readiness, then says whether to retry
    /// (`Ok`) or give up (closed, timed out, error event).
    pub(crate) fn wait(&self, mode: Mode) -> io::Result<()> {
        self.check(mode)?;
        if let Some(e) = self.event_error(mode) {
            return Err(e);
        }
        refuse_during_teardown()?;
        self.slot(mode).wait(|| self.interrupted(mode));
        self.check(mode)
    }

    /// Consumes readiness latched in `mode`'s slot (nobody waiting), for a caller about to issue
    /// the syscall anyway: a read that follows covers what that readiness announced.
    pub(crate) fn take_ready(&self, mode: Mode) -> bool {
        self.slot(mode).take_ready()
    }

    /// The async [`PollDesc::wait`]: `Ready(Ok)` means retry the syscall.
    pub(crate) fn poll_wait(&self, mode: Mode, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check(mode)?;
        if let Some(e) = self.event_error(mode) {
            return Poll::Ready(Err(e));
        }
        match self.slot(mode).poll_wait(cx, || self.interrupted(mode)) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(_) => Poll::Ready(self.check(mode)),
        }
    }

    /// Waits until `until` whatever the readiness (an accept backing off after `EMFILE`); ends
    /// early with the closed error at close, or the timeout error at the deadline of `mode`.
    pub(crate) fn sleep_until(self: &Arc<Self>, mode: Mode, until: Instant) -> io::Result<()> {
        self.check(mode)?;
        refuse_during_teardown()?;
        let desc = Arc::downgrade(self);
        let key = self.poller.schedule(until, move || {
            if let Some(desc) = desc.upgrade() {
                wake(desc.slot(mode).unblock(false));
            }
        })?;
        // The timer fires only once `until` has passed, so a wake lost before the wait is
        // published is caught by the clock check after it.
        let due = || Instant::now() >= until;
        let result = loop {
            if let Err(e) = self.check(mode) {
                break Err(e);
            }
            if due() {
                break Ok(());
            }
            // Readiness consumed here is not lost: the caller's syscall runs until EAGAIN.
            self.slot(mode).wait(|| self.interrupted(mode) || due());
        };
        self.poller.cancel(key);
        result
    }

    /// Sets the deadline of `mode`; see the module doc. `None` clears it.
    pub(crate) fn set_deadline(
        self: &Arc<Self>,
        mode: Mode,
        at: Option<Instant>,
    ) -> io::Result<()> {
        let timers = PollerTimers(self);
        if self.timing.set(mode, at, Instant::now(), &timers)? {
            wake(self.slot(mode).unblock(false));
        }
        Ok(())
    }

    fn timer_fired(self: &Arc<Self>, mode: Mode, fired_at: Instant) {
        let timers = PollerTimers(self);
        if self.timing.fired(mode, fired_at, Instant::now(), &timers) {
            wake(self.slot(mode).unblock(false));
        }
    }

    /// Marks the descriptor closing and wakes both waiters. False if it already was.
    pub(crate) fn evict(&self) -> bool {
        let previous = self.timing.info.fetch_or(CLOSING, Ordering::SeqCst);
        wake(self.read.unblock(false));
        wake(self.write.unblock(false));
        previous & CLOSING == 0
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.timing.info.load(Ordering::SeqCst) & CLOSING != 0
    }

    /// Removes the fd from its poller and cancels its deadline timers; called once closing,
    /// before the fd is closed.
    pub(crate) fn deregister(self: &Arc<Self>) {
        self.timing.disarm_all(&PollerTimers(self));
        // Fails only if it is not attached (the poller closed): nothing to undo then.
        let _ = self.poller.control(&self.registration, PollEvent::Detach);
    }
}

impl EventHandler for PollDesc {
    /// The poller is gone: no event, no timer will ever wake a waiter again. Every call fails
    /// with the closed error from now on; the fd stays open until the owner closes it.
    fn on_poller_closed(&self) {
        self.timing.info.fetch_or(POLLER_CLOSED, Ordering::SeqCst);
        wake(self.read.unblock(false));
        wake(self.write.unblock(false));
    }

    fn on_ready(&self, ready: Ready) {
        if ready.without(Ready::PRIORITY) == Ready::ERROR {
            self.timing.info.fetch_or(EVENT_ERR, Ordering::SeqCst);
        }
        let ends = Ready::READ_CLOSED | Ready::HANGUP | Ready::ERROR | Ready::PRIORITY;
        if ready.intersects(ends) && !self.edge_spent() {
            // Before the wake below: the reader it wakes must see it.
            self.timing.info.fetch_or(EDGE_SPENT, Ordering::SeqCst);
        }
        let reader = ready
            .intersects(Ready::READABLE | ends)
            .then(|| self.read.unblock(true))
            .flatten();
        let writer = ready
            .intersects(Ready::WRITABLE | Ready::HANGUP | Ready::ERROR)
            .then(|| self.write.unblock(true))
            .flatten();
        wake(reader);
        wake(writer);
    }
}

/// While a poller thread tears its coroutines down, nothing on it may wait: no event or timer of
/// that poller will come, and the holder of what it would wait for may be a coroutine that is
/// resumed only to be unwound after this destructor (see `rt::sched`). The wait fails instead.
fn refuse_during_teardown() -> io::Result<()> {
    if crate::rt::sched::tearing_down() {
        return Err(error::closed());
    }
    Ok(())
}

fn wake(waiter: Option<Waiter>) {
    if let Some(waiter) = waiter {
        waiter.wake();
    }
}

#[cfg(all(any(test, fuzzing), not(loom)))]
pub(crate) mod event_orders;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! `RUSTFLAGS="--cfg loom" cargo test --release --lib net::desc::loom_tests`
    use super::*;
    use loom::sync::Arc;
    use std::time::Duration;

    /// Timers that only count: arming hands out fresh keys.
    #[derive(Default)]
    struct FakeTimers {
        next: loom::sync::atomic::AtomicU64,
    }

    impl Timers for FakeTimers {
        fn arm(&self, _: Mode, _: Instant) -> io::Result<TimerKey> {
            Ok(TimerKey::fake(self.next.fetch_add(1, Ordering::SeqCst)))
        }
        fn disarm(&self, _: TimerKey) {}
    }

    /// The info word agrees with the deadline in force: expired iff it is at or before `now`.
    fn consistent(timing: &Timing, now: Instant) {
        let at = lock(&timing.deadlines).read.at;
        let expired = timing.info.load(Ordering::SeqCst) & READ_EXPIRED != 0;
        assert_eq!(expired, at.is_some_and(|at| at <= now), "deadline {at:?}");
    }

    /// A timer firing for a passed deadline while another thread pushes the deadline an hour
    /// later (issue 9): whichever runs last, a later deadline is never left marked expired.
    #[test]
    fn a_firing_timer_never_expires_a_deadline_pushed_later() {
        loom::model(|| {
            let base = Instant::now();
            let now = base + Duration::from_secs(1);
            let timing = Arc::new(Timing::default());
            {
                let mut deadlines = lock(&timing.deadlines);
                deadlines.read.at = Some(base);
                deadlines.read.timer = Some((base, TimerKey::fake(u64::MAX)));
            }
            let timers = Arc::new(FakeTimers::default());
            let fired = {
                let (timing, timers) = (timing.clone(), timers.clone());
                loom::thread::spawn(move || {
                    timing.fired(Mode::Read, base, now, &*timers);
                })
            };
            timing
                .set(
                    Mode::Read,
                    Some(base + Duration::from_secs(3600)),
                    now,
                    &*timers,
                )
                .unwrap();
            fired.join().unwrap();
            consistent(&timing, now);
        });
    }

    /// A past deadline and a future one set by two threads: the info word ends up agreeing
    /// with whichever was set last.
    #[test]
    fn racing_deadline_changes_leave_the_last_ones_verdict() {
        loom::model(|| {
            let base = Instant::now();
            let now = base + Duration::from_secs(1);
            let timing = Arc::new(Timing::default());
            let timers = Arc::new(FakeTimers::default());
            let past = {
                let (timing, timers) = (timing.clone(), timers.clone());
                loom::thread::spawn(move || {
                    timing.set(Mode::Read, Some(base), now, &*timers).unwrap();
                })
            };
            timing
                .set(
                    Mode::Read,
                    Some(base + Duration::from_secs(3600)),
                    now,
                    &*timers,
                )
                .unwrap();
            past.join().unwrap();
            consistent(&timing, now);
        });
    }
}
