//! `netpoll::time`: [`sleep`], [`sleep_until`], [`timeout`], [`interval`] on the poller timers,
//! for async code (coroutines have [`crate::sleep`]).
//!
//! A [`Sleep`] arms one timer on its first poll: on the poller of the task polling it (the
//! timer's wake is then a local push), else on a poller of the global manager. The timer wakes
//! the latest waker; dropping the `Sleep` cancels it. Resolution is the pollers' (a millisecond).

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::poll::{PollManager, Poller, TimerKey};

/// Completes at its deadline. Made by [`sleep`] and [`sleep_until`].
pub struct Sleep {
    deadline: Instant,
    armed: Option<(Arc<Poller>, TimerKey)>,
    shared: Arc<Mutex<SleepState>>,
}

#[derive(Default)]
struct SleepState {
    fired: bool,
    waker: Option<Waker>,
}

/// Waits until `duration` has passed.
pub fn sleep(duration: Duration) -> Sleep {
    sleep_until(Instant::now() + duration)
}

/// Waits until `deadline`.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline,
        armed: None,
        shared: Arc::default(),
    }
}

impl Sleep {
    /// When this sleep completes.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// True once the deadline has passed.
    pub fn is_elapsed(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// Moves the deadline (the sleep completes at the new one, earlier or later).
    pub fn reset(&mut self, deadline: Instant) {
        self.disarm();
        self.deadline = deadline;
        self.shared = Arc::default();
    }

    fn disarm(&mut self) {
        if let Some((poller, key)) = self.armed.take() {
            poller.cancel(key);
        }
    }

    fn arm(&mut self) -> io::Result<()> {
        let poller = match super::current_poller() {
            Some(poller) => poller,
            None => PollManager::global()?.pick(),
        };
        let shared = Arc::clone(&self.shared);
        let key = poller.schedule(self.deadline, move || {
            let waker = {
                let mut state = shared.lock().unwrap_or_else(|e| e.into_inner());
                state.fired = true;
                state.waker.take()
            };
            if let Some(waker) = waker {
                waker.wake();
            }
        })?;
        self.armed = Some((poller, key));
        Ok(())
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            self.disarm();
            return Poll::Ready(());
        }
        {
            let mut state = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            if state.fired {
                // The timer runs at millisecond resolution, possibly a little early.
                drop(state);
                if Instant::now() >= self.deadline {
                    return Poll::Ready(());
                }
                self.shared = Arc::default();
                self.armed = None;
            } else if state
                .waker
                .as_ref()
                .is_none_or(|w| !w.will_wake(cx.waker()))
            {
                state.waker = Some(cx.waker().clone());
            }
        }
        if self.armed.is_none() {
            self.shared.lock().unwrap_or_else(|e| e.into_inner()).waker = Some(cx.waker().clone());
            if let Err(e) = self.arm() {
                // No poller can time it (all closed): say so, and complete rather than hang.
                log::warn!("netpoll::time: cannot arm a timer ({e}); the sleep ends now");
                return Poll::Ready(());
            }
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.disarm();
    }
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep")
            .field("deadline", &self.deadline)
            .finish()
    }
}

/// The error of a [`timeout`] whose deadline came first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elapsed(());

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl std::error::Error for Elapsed {}

impl From<Elapsed> for io::Error {
    fn from(_: Elapsed) -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, "deadline has elapsed")
    }
}

/// `future`, or [`Elapsed`] if it has not completed within `duration` (it is then dropped).
pub fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<F> {
    Timeout {
        future: Box::pin(future),
        sleep: sleep(duration),
    }
}

/// Made by [`timeout`].
pub struct Timeout<F> {
    future: Pin<Box<F>>,
    sleep: Sleep,
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // The future first: one that is ready at the deadline still counts.
        if let Poll::Ready(value) = self.future.as_mut().poll(cx) {
            return Poll::Ready(Ok(value));
        }
        match Pin::new(&mut self.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed(()))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<F> fmt::Debug for Timeout<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeout")
            .field("deadline", &self.sleep.deadline)
            .finish()
    }
}

/// Ticks every `period`, the first tick at once (as tokio's `interval`). A tick that is late
/// because the task was busy comes at once, and the next ones keep the original schedule
/// (missed ticks burst to catch up).
pub fn interval(period: Duration) -> Interval {
    assert!(
        period > Duration::ZERO,
        "netpoll::time::interval: the period must be > 0"
    );
    let now = Instant::now();
    Interval {
        next: now,
        period,
        sleep: sleep_until(now),
    }
}

/// Made by [`interval`].
#[derive(Debug)]
pub struct Interval {
    next: Instant,
    period: Duration,
    sleep: Sleep,
}

impl Interval {
    /// Waits for the next tick and returns when it was due.
    pub async fn tick(&mut self) -> Instant {
        std::future::poll_fn(|cx| self.poll_tick(cx)).await
    }

    /// The poll form of [`tick`](Interval::tick).
    pub fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<Instant> {
        if self.sleep.deadline() != self.next {
            self.sleep.reset(self.next);
        }
        match Pin::new(&mut self.sleep).poll(cx) {
            Poll::Ready(()) => {
                let due = self.next;
                self.next = due + self.period;
                Poll::Ready(due)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// The period between ticks.
    pub fn period(&self) -> Duration {
        self.period
    }
}
