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
//!
//! When a call is refused the precedence is closed, then expired, then event error (as in Go).
//!
//! Events: `IN | RDHUP | HUP | ERR` wake the reader, `OUT | HUP | ERR` the writer.
//!
//! Deadline timers are poller timers, which cannot be cancelled. A timer never acts on a
//! deadline other than the current one: when it fires it compares the *current* deadline with
//! the clock (which subsumes Go's `rseq`/`wseq` check), expires it if it has passed and re-arms
//! itself if the deadline moved later. A direction has at most one armed timer at or before its
//! deadline, so a caller who pushes the deadline forward before every read (the usual idle
//! timeout pattern) costs one timer per deadline period, not one per read.

use std::io;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::Instant;

use super::error;
use super::slot::{Slot, Waiter};
use crate::loom::{AtomicU32, Ordering};
use crate::poll::{EventHandler, PollEvent, Poller, Ready, Registration};

const CLOSING: u32 = 1;
const READ_EXPIRED: u32 = 1 << 1;
const WRITE_EXPIRED: u32 = 1 << 2;
const EVENT_ERR: u32 = 1 << 3;

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

#[derive(Default)]
struct Deadline {
    /// The current deadline; `None` waits forever.
    at: Option<Instant>,
    /// The earliest timer still pending for this direction.
    armed: Option<Instant>,
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

pub(crate) struct PollDesc {
    info: AtomicU32,
    read: Slot,
    write: Slot,
    deadlines: Mutex<Deadlines>,
    poller: Arc<Poller>,
    registration: Registration,
}

impl PollDesc {
    /// Registers `fd` on `poller`, edge-triggered for both directions.
    pub(crate) fn register(fd: RawFd, poller: Arc<Poller>) -> io::Result<Arc<PollDesc>> {
        let desc = Arc::new_cyclic(|weak: &Weak<PollDesc>| {
            let handler: Weak<dyn EventHandler> = weak.clone();
            PollDesc {
                info: AtomicU32::new(0),
                read: Slot::default(),
                write: Slot::default(),
                deadlines: Mutex::new(Deadlines::default()),
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
        let info = self.info.load(Ordering::SeqCst);
        if info & CLOSING != 0 {
            Err(error::closed())
        } else if info & mode.expired_bit() != 0 {
            Err(error::timeout())
        } else {
            Ok(())
        }
    }

    fn interrupted(&self, mode: Mode) -> bool {
        self.info.load(Ordering::SeqCst) & (CLOSING | mode.expired_bit()) != 0
    }

    /// Before waiting: the fd reported an error event and its syscall still says `EAGAIN`; an
    /// edge-triggered fd will not report it again, so waiting would be forever.
    fn event_error(&self, mode: Mode) -> Option<io::Error> {
        if mode == Mode::Read && self.info.load(Ordering::SeqCst) & EVENT_ERR != 0 {
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
        self.slot(mode).wait(|| self.interrupted(mode));
        self.check(mode)
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

    /// Sets the deadline of `mode`; see the module doc. `None` clears it.
    pub(crate) fn set_deadline(
        self: &Arc<Self>,
        mode: Mode,
        at: Option<Instant>,
    ) -> io::Result<()> {
        let mut deadlines = lock(&self.deadlines);
        let deadline = deadlines.get(mode);
        deadline.at = at;
        match at {
            Some(at) if at <= Instant::now() => {
                drop(deadlines);
                self.expire(mode);
                Ok(())
            }
            _ => {
                self.info.fetch_and(!mode.expired_bit(), Ordering::SeqCst);
                self.arm(deadline)
                    .map(|at| self.schedule(mode, at))
                    .unwrap_or(Ok(()))
            }
        }
    }

    /// The instant to arm a timer for, if the current deadline needs one.
    fn arm(&self, deadline: &mut Deadline) -> Option<Instant> {
        let at = deadline.at?;
        if deadline.armed.is_some_and(|armed| armed <= at) {
            return None; // an earlier timer will find the deadline moved and re-arm
        }
        deadline.armed = Some(at);
        Some(at)
    }

    fn schedule(self: &Arc<Self>, mode: Mode, at: Instant) -> io::Result<()> {
        let desc = Arc::downgrade(self);
        self.poller.schedule(at, move || {
            if let Some(desc) = desc.upgrade() {
                desc.timer_fired(mode, at);
            }
        })
    }

    fn timer_fired(self: &Arc<Self>, mode: Mode, fired_at: Instant) {
        let mut deadlines = lock(&self.deadlines);
        let deadline = deadlines.get(mode);
        if deadline.armed == Some(fired_at) {
            deadline.armed = None;
        }
        match deadline.at {
            Some(at) if at <= Instant::now() => {
                drop(deadlines);
                self.expire(mode);
            }
            Some(_) => {
                if let Some(at) = self.arm(deadline) {
                    // On the poller thread: scheduling fails only if the poller is closing,
                    // and then nothing waits on its events any more.
                    let _ = self.schedule(mode, at);
                }
            }
            None => {}
        }
    }

    /// Publishes the expiry, then wakes the waiter (which reads it).
    fn expire(&self, mode: Mode) {
        self.info.fetch_or(mode.expired_bit(), Ordering::SeqCst);
        wake(self.slot(mode).unblock(false));
    }

    /// Marks the descriptor closing and wakes both waiters. False if it already was.
    pub(crate) fn evict(&self) -> bool {
        let previous = self.info.fetch_or(CLOSING, Ordering::SeqCst);
        wake(self.read.unblock(false));
        wake(self.write.unblock(false));
        previous & CLOSING == 0
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.info.load(Ordering::SeqCst) & CLOSING != 0
    }

    /// Removes the fd from its poller; called before the fd is closed.
    pub(crate) fn deregister(&self) {
        // Fails only if it is not attached (the poller closed): nothing to undo then.
        let _ = self.poller.control(&self.registration, PollEvent::Detach);
    }
}

impl EventHandler for PollDesc {
    fn on_ready(&self, ready: Ready) {
        if ready == Ready::ERROR {
            self.info.fetch_or(EVENT_ERR, Ordering::SeqCst);
        }
        let reader = ready
            .intersects(Ready::READABLE | Ready::READ_CLOSED | Ready::HANGUP | Ready::ERROR)
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

fn wake(waiter: Option<Waiter>) {
    if let Some(waiter) = waiter {
        waiter.wake();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
