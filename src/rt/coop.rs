//! Cooperative budget: how many I/O operations a task or coroutine may complete in one turn on
//! its poller before it must let the others run.
//!
//! A task whose socket always has data never sees `Pending`, and a coroutine whose reads never
//! wait never suspends: either would keep its poller — every other connection, timer and task
//! on it — for as long as the peer keeps sending. Each turn (a task's poll, a coroutine's
//! resume) starts with [`PER_TURN`] units; every read, write or accept takes one; once spent,
//! an async call returns `Pending` after waking its own task, and a coroutine yields (requeues
//! itself behind the others). Outside tasks and coroutines the budget is unlimited. This is
//! tokio's cooperative scheduling in its simplest form.

use std::cell::Cell;
use std::task::{Context, Poll};

/// Operations per turn: far more than a request needs, few enough that a flooded connection
/// gives the others a turn every few hundred microseconds.
pub(crate) const PER_TURN: u32 = 128;

const UNLIMITED: u32 = u32::MAX;

thread_local! {
    static BUDGET: Cell<u32> = const { Cell::new(UNLIMITED) };
}

/// Starts a turn: the budget is `PER_TURN` until [`end_turn`] restores what was before.
pub(crate) fn start_turn() -> u32 {
    BUDGET.with(|b| b.replace(PER_TURN))
}

/// Ends a turn started by [`start_turn`].
pub(crate) fn end_turn(previous: u32) {
    BUDGET.with(|b| b.set(previous));
}

/// Takes one unit; false once this turn's budget is spent (never outside a turn).
fn consume() -> bool {
    BUDGET.with(|b| match b.get() {
        0 => false,
        UNLIMITED => true,
        n => {
            b.set(n - 1);
            true
        }
    })
}

/// For async I/O: `Ready` to go on, or `Pending` (its task already woken, so it runs again
/// after the others) once the budget is spent.
pub(crate) fn poll_proceed(cx: &mut Context<'_>) -> Poll<()> {
    if consume() {
        Poll::Ready(())
    } else {
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Gives back the unit an async call took when it made no progress (it returned `Pending`,
/// registered to be woken): only completed operations count, as in tokio. Without it a task
/// polling more than `PER_TURN` idle sources each turn would spend its budget on the first
/// ones and never read the later ones.
pub(crate) fn refund() {
    BUDGET.with(|b| {
        let n = b.get();
        if n < PER_TURN {
            b.set(n + 1);
        }
    });
}

/// `result`, after giving back its unit if it is `Pending` (see [`refund`]).
pub(crate) fn refund_if_pending<T>(result: Poll<T>) -> Poll<T> {
    if result.is_pending() {
        refund();
    }
    result
}

/// For blocking-style I/O: a coroutine whose budget is spent yields first (a thread never
/// has a budget).
pub(crate) fn proceed() {
    if !consume() {
        super::yield_now();
    }
}
