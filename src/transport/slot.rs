//! One direction (read or write) of a poll descriptor: the state that makes sure a readiness
//! event arriving between "the syscall said EAGAIN" and "go to sleep" is never lost (Go's
//! `netpollblock` / `netpollunblock`, with `pdReady` / `pdWait`).
//!
//! | state     | meaning                                   | who moves it out            |
//! |-----------|-------------------------------------------|-----------------------------|
//! | `EMPTY`   | nothing latched, nobody waiting           | a waiter (→ `WAITING`), the poller (→ `READY`) |
//! | `READY`   | readiness latched, nobody consumed it yet | a waiter (→ `EMPTY`, returns at once) |
//! | `WAITING` | a waiter is published in `waiter`         | the poller (→ `READY`), close/deadline (→ `EMPTY`), the waiter cancelling (→ `EMPTY`) |
//!
//! Only I/O readiness is latched. Close and deadline expiry are not: they are published in the
//! descriptor's info word *before* the waiter is woken, and a woken waiter reads that word. All
//! transitions are SeqCst: the waiter's "publish WAITING, then re-check the info word" and the
//! closer's "set the info word, then look for a waiter" form a Dekker pair.
//!
//! A waiter is one of three kinds, one mechanism for every caller:
//!
//! | waiter      | published by                          | woken by                                  |
//! |-------------|---------------------------------------|-------------------------------------------|
//! | `Thread`    | a blocking call on a plain thread     | `unpark`                                  |
//! | `Task`      | an async poll                         | `Waker::wake`                             |
//! | `Coroutine` | a blocking call inside a coroutine    | a push of its handle on its poller's run queue (local on that poller's thread, remote + trigger elsewhere) |
//!
//! The protocol does not depend on the kind: a coroutine publishes itself, re-checks, and
//! suspends while `WAITING` exactly where a thread parks (a wake may come early or twice; the
//! loop on the state absorbs it). Under `--cfg loom` the coroutine is modelled by `co_model`: a
//! handle whose wake pushes onto a queue that the waiting thread drains.

use std::task::{Context, Poll, Waker};

#[cfg(loom)]
use co_model::{current_co, suspend, CoHandle};
#[cfg(loom)]
use loom::thread::{current, park, Thread};
#[cfg(not(loom))]
use std::thread::{current, park, Thread};

#[cfg(not(loom))]
use crate::rt::{current as current_co, CoHandle};
#[cfg(not(loom))]
fn suspend() -> bool {
    crate::rt::sched::suspend()
}

use crate::loom::{AtomicU8, Mutex, Ordering};

const EMPTY: u8 = 0;
const READY: u8 = 1;
const WAITING: u8 = 2;

/// Who to wake.
pub(crate) enum Waiter {
    Thread(Thread),
    Task(Waker),
    Coroutine(CoHandle),
}

impl Waiter {
    pub(crate) fn wake(self) {
        match self {
            Waiter::Thread(thread) => thread.unpark(),
            Waiter::Task(waker) => waker.wake(),
            Waiter::Coroutine(handle) => handle.wake(),
        }
    }
}

/// The outcome of a wait, before the caller looks at the info word.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Woken {
    /// I/O readiness was consumed: retry the syscall.
    Ready,
    /// Woken without readiness (close, deadline, or a deadline change): check why.
    Interrupted,
}

#[derive(Default)]
pub(crate) struct Slot {
    state: AtomicU8,
    waiter: Mutex<Option<Waiter>>,
}

impl Slot {
    /// Marks readiness (`io_ready`) or interrupts a waiter (close or deadline). Returns the
    /// waiter to wake; the caller wakes it after releasing its own locks.
    #[must_use]
    pub(crate) fn unblock(&self, io_ready: bool) -> Option<Waiter> {
        loop {
            let old = self.state.load(Ordering::SeqCst);
            let new = match (old, io_ready) {
                (READY, _) | (_, true) => READY,
                _ => EMPTY,
            };
            // Always a read-modify-write, even when nothing changes: it orders this call after
            // the caller's info-word store against the waiter's EMPTY → WAITING, so the Dekker
            // pair holds with acquire/release alone (loom models SeqCst as AcqRel).
            if self
                .state
                .compare_exchange(old, new, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                return if old == WAITING {
                    lock(&self.waiter).take()
                } else {
                    None
                };
            }
        }
    }

    /// Blocks the caller until readiness or an interruption: suspends it inside a coroutine,
    /// parks the thread elsewhere. `interrupted` is the caller's check of the info word
    /// (closed / expired), run after publishing the wait: if it says so, the wait is cancelled
    /// without sleeping.
    pub(crate) fn wait(&self, interrupted: impl Fn() -> bool) -> Woken {
        if self.take_ready() {
            return Woken::Ready;
        }
        let (me, coroutine) = match current_co() {
            Some(handle) => (Waiter::Coroutine(handle), true),
            None => {
                #[cfg(not(loom))]
                crate::rt::task::assert_not_in_task("a blocking Go-net call");
                (Waiter::Thread(current()), false)
            }
        };
        let previous = lock(&self.waiter).replace(me);
        match self.publish_wait(&interrupted, previous) {
            Some(woken) => woken,
            None => {
                while self.state.load(Ordering::SeqCst) == WAITING {
                    // A resume without our wake (a stale one from an earlier wait) or a
                    // spurious unpark: the state says whether to go on waiting.
                    if !coroutine || !suspend() {
                        park();
                    }
                }
                self.finish()
            }
        }
    }

    /// The async face of [`Slot::wait`]: registers `cx`'s waker and returns `Pending`, or the
    /// outcome if there already is one.
    pub(crate) fn poll_wait(
        &self,
        cx: &mut Context<'_>,
        interrupted: impl Fn() -> bool,
    ) -> Poll<Woken> {
        if self.take_ready() {
            return Poll::Ready(Woken::Ready);
        }
        let state = self.state.load(Ordering::SeqCst);
        if state == WAITING {
            // Polled again while waiting: refresh the waker, then make sure the poller did not
            // move the slot while we did.
            *lock(&self.waiter) = Some(Waiter::Task(cx.waker().clone()));
            if self.state.load(Ordering::SeqCst) == WAITING {
                if interrupted() {
                    return Poll::Ready(self.cancel());
                }
                return Poll::Pending;
            }
            return Poll::Ready(self.finish());
        }
        *lock(&self.waiter) = Some(Waiter::Task(cx.waker().clone()));
        match self.publish_wait(&interrupted, None) {
            Some(woken) => Poll::Ready(woken),
            None => Poll::Pending,
        }
    }

    /// Consumes latched readiness, if any.
    pub(crate) fn take_ready(&self) -> bool {
        self.state
            .compare_exchange(READY, EMPTY, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// EMPTY → WAITING, then the re-check. `Some` when the wait is already over.
    ///
    /// `displaced` is what a blocking waiter replaced in `waiter`. Blocking calls of one
    /// direction are serialised by the caller's lock, and an async call holds that lock while it
    /// polls, but an async task stays WAITING between polls: a blocking call arriving then takes
    /// its place and wakes it, so the task polls again (and finds the direction busy) instead of
    /// sleeping on a wake that now goes to the thread.
    fn publish_wait(
        &self,
        interrupted: &impl Fn() -> bool,
        displaced: Option<Waiter>,
    ) -> Option<Woken> {
        loop {
            match self
                .state
                .compare_exchange(EMPTY, WAITING, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => break,
                Err(READY) => {
                    if self.take_ready() {
                        return Some(Woken::Ready);
                    }
                }
                Err(_) => {
                    // WAITING: a task's wait that we just took over.
                    if let Some(task @ Waiter::Task(_)) = displaced {
                        task.wake();
                    }
                    break;
                }
            }
        }
        // Published: a close or deadline set before this point is visible now, and one set
        // after it will find us WAITING.
        if interrupted() {
            return Some(self.cancel());
        }
        None
    }

    /// Leaves the wait early (interrupted while WAITING).
    fn cancel(&self) -> Woken {
        match self.state.swap(EMPTY, Ordering::SeqCst) {
            // Readiness won the race: it is consumed, but the caller returns an error anyway;
            // the next call tries its syscall before waiting, so nothing is lost.
            READY => Woken::Ready,
            _ => Woken::Interrupted,
        }
    }

    /// After the state left WAITING: reset it and say why.
    fn finish(&self) -> Woken {
        match self.state.swap(EMPTY, Ordering::SeqCst) {
            READY => Woken::Ready,
            _ => Woken::Interrupted,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> crate::loom::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The coroutine waiter under loom, without corosensei: the waiting loom thread plays a poller
/// thread whose coroutine is suspended. Its `suspend` runs the poller's other local work (the
/// model's "local" wakes, e.g. readiness delivered by `on_ready` on the same thread), then
/// returns if its handle was queued, else parks until a remote wake (push + unpark, the
/// trigger). A wake is only a push of the handle, as in `rt`.
#[cfg(loom)]
pub(crate) mod co_model {
    use loom::sync::{Arc, Mutex};
    use loom::thread::Thread;
    use std::cell::RefCell;

    /// One modelled coroutine: its poller's run queue and that poller's thread.
    pub(crate) struct Model {
        pub(crate) queue: Mutex<Vec<u32>>,
        pub(crate) poller: Thread,
        /// Work the poller thread runs while the coroutine is suspended (local wakes).
        pub(crate) local: std::sync::Mutex<Vec<Box<dyn FnOnce() + Send>>>,
        /// Pushes seen: local ones and remote ones.
        pub(crate) local_wakes: loom::sync::atomic::AtomicUsize,
        pub(crate) remote_wakes: loom::sync::atomic::AtomicUsize,
    }

    #[derive(Clone)]
    pub(crate) struct CoHandle {
        pub(crate) model: Arc<Model>,
        pub(crate) id: u32,
    }

    loom::thread_local! {
        static CURRENT: RefCell<Option<CoHandle>> = RefCell::new(None);
    }

    impl Model {
        /// A model whose poller is the calling loom thread.
        pub(crate) fn on_this_thread() -> Arc<Model> {
            Arc::new(Model {
                queue: Mutex::new(Vec::new()),
                poller: loom::thread::current(),
                local: std::sync::Mutex::new(Vec::new()),
                local_wakes: loom::sync::atomic::AtomicUsize::new(0),
                remote_wakes: loom::sync::atomic::AtomicUsize::new(0),
            })
        }
    }

    /// Makes the calling loom thread "run inside" coroutine `handle` from now on.
    pub(crate) fn enter(handle: CoHandle) {
        CURRENT.with(|c| *c.borrow_mut() = Some(handle));
    }

    pub(crate) fn current_co() -> Option<CoHandle> {
        CURRENT.with(|c| c.borrow().clone())
    }

    impl CoHandle {
        pub(crate) fn wake(self) {
            let ordering = loom::sync::atomic::Ordering::SeqCst;
            self.model.queue.lock().unwrap().push(self.id);
            if loom::thread::current().id() == self.model.poller.id() {
                self.model.local_wakes.fetch_add(1, ordering);
            } else {
                self.model.remote_wakes.fetch_add(1, ordering);
                self.model.poller.unpark();
            }
        }
    }

    /// Suspends the modelled coroutine: run local work, then resume once a wake was queued.
    pub(crate) fn suspend() -> bool {
        let me = current_co().expect("suspend outside a modelled coroutine");
        loop {
            let local: Vec<_> = std::mem::take(&mut *me.model.local.lock().unwrap());
            for work in local {
                work();
            }
            let mut queue = me.model.queue.lock().unwrap();
            if let Some(at) = queue.iter().position(|&id| id == me.id) {
                queue.remove(at);
                return true;
            }
            drop(queue);
            loom::thread::park();
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    #[test]
    fn latched_readiness_is_consumed_without_sleeping() {
        let slot = Slot::default();
        assert!(slot.unblock(true).is_none());
        assert_eq!(slot.wait(|| false), Woken::Ready);
    }

    #[test]
    fn an_interruption_is_not_latched() {
        let slot = Slot::default();
        assert!(slot.unblock(false).is_none());
        let closed = AtomicBool::new(true);
        assert_eq!(
            slot.wait(|| closed.load(Ordering::SeqCst)),
            Woken::Interrupted
        );
    }

    #[test]
    fn a_parked_thread_is_woken_by_readiness() {
        let slot = Arc::new(Slot::default());
        let waiter = {
            let slot = slot.clone();
            std::thread::spawn(move || slot.wait(|| false))
        };
        // Bounded: each round either wakes the waiter or finds it not yet waiting.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !waiter.is_finished() && std::time::Instant::now() < deadline {
            if let Some(w) = slot.unblock(true) {
                w.wake();
            }
            std::thread::yield_now();
        }
        assert_eq!(waiter.join().unwrap(), Woken::Ready);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! `RUSTFLAGS="--cfg loom" cargo test --release --lib net::slot`
    use super::*;
    use loom::sync::atomic::AtomicBool;
    use loom::sync::Arc;

    /// Readiness racing the wait is never lost: the waiter returns Ready.
    #[test]
    fn readiness_racing_the_wait_is_never_lost() {
        loom::model(|| {
            let slot = Arc::new(Slot::default());
            let poller = {
                let slot = slot.clone();
                loom::thread::spawn(move || {
                    if let Some(w) = slot.unblock(true) {
                        w.wake();
                    }
                })
            };
            assert_eq!(slot.wait(|| false), Woken::Ready);
            poller.join().unwrap();
        });
    }

    /// A close racing the wait always ends it: published before the wait (seen by the
    /// re-check) or after it (the closer finds WAITING and wakes it).
    #[test]
    fn close_racing_the_wait_always_ends_it() {
        loom::model(|| {
            let slot = Arc::new(Slot::default());
            let closed = Arc::new(AtomicBool::new(false));
            let closer = {
                let (slot, closed) = (slot.clone(), closed.clone());
                loom::thread::spawn(move || {
                    closed.store(true, Ordering::SeqCst);
                    if let Some(w) = slot.unblock(false) {
                        w.wake();
                    }
                })
            };
            let woken = slot.wait(|| closed.load(Ordering::SeqCst));
            assert_eq!(woken, Woken::Interrupted);
            closer.join().unwrap();
        });
    }

    /// Readiness, a deadline and a close all racing one waiter: it wakes exactly once and the
    /// slot ends EMPTY or READY (never WAITING with nobody to wake).
    #[test]
    fn readiness_deadline_and_close_racing() {
        loom::model(|| {
            let slot = Arc::new(Slot::default());
            let closed = Arc::new(AtomicBool::new(false));
            let ready = {
                let slot = slot.clone();
                loom::thread::spawn(move || {
                    if let Some(w) = slot.unblock(true) {
                        w.wake();
                    }
                })
            };
            let closer = {
                let (slot, closed) = (slot.clone(), closed.clone());
                loom::thread::spawn(move || {
                    closed.store(true, Ordering::SeqCst);
                    if let Some(w) = slot.unblock(false) {
                        w.wake();
                    }
                })
            };
            let _ = slot.wait(|| closed.load(Ordering::SeqCst));
            ready.join().unwrap();
            closer.join().unwrap();
            assert_ne!(slot.state.load(Ordering::SeqCst), WAITING);
        });
    }

    /// A deadline and a close published by two threads into one info word (as `PollDesc` does)
    /// while a thread waits: the wait always ends, as an interruption, and the waiter sees at
    /// least one of the reasons when it checks the word afterwards.
    #[test]
    fn deadline_and_close_racing_one_waiter() {
        use loom::sync::atomic::AtomicU32;
        const CLOSING: u32 = 1;
        const EXPIRED: u32 = 2;
        loom::model(|| {
            let slot = Arc::new(Slot::default());
            let info = Arc::new(AtomicU32::new(0));
            let publishers: Vec<_> = [CLOSING, EXPIRED]
                .into_iter()
                .map(|bit| {
                    let (slot, info) = (slot.clone(), info.clone());
                    loom::thread::spawn(move || {
                        info.fetch_or(bit, Ordering::SeqCst);
                        if let Some(w) = slot.unblock(false) {
                            w.wake();
                        }
                    })
                })
                .collect();
            let woken = slot.wait(|| info.load(Ordering::SeqCst) != 0);
            assert_eq!(woken, Woken::Interrupted);
            assert_ne!(info.load(Ordering::SeqCst), 0);
            for p in publishers {
                p.join().unwrap();
            }
            assert_eq!(slot.state.load(Ordering::SeqCst), EMPTY);
        });
    }

    /// The coroutine waiter: the waiting thread plays a poller whose coroutine waits in the
    /// slot. Readiness is *local* (run by that poller thread while the coroutine is suspended,
    /// as `on_ready` would) and races a close from another thread (a remote wake): the wait
    /// always ends, and the slot is never left WAITING.
    #[test]
    fn coroutine_local_readiness_racing_a_remote_close() {
        use super::co_model::{enter, CoHandle, Model};
        loom::model(|| {
            let slot = Arc::new(Slot::default());
            let closed = Arc::new(AtomicBool::new(false));
            // The poller thread (not the model's main thread: loom's `join` must not see the
            // remote wakes' unparks).
            let poller = {
                let (slot, closed) = (slot.clone(), closed.clone());
                loom::thread::spawn(move || {
                    let model = Model::on_this_thread();
                    enter(CoHandle {
                        model: model.clone(),
                        id: 1,
                    });
                    {
                        let slot = slot.clone();
                        model.local.lock().unwrap().push(Box::new(move || {
                            if let Some(w) = slot.unblock(true) {
                                w.wake();
                            }
                        }));
                    }
                    let woken = slot.wait(|| closed.load(Ordering::SeqCst));
                    // Unrun local work holds the slot, which may hold our handle: break the
                    // cycle (loom checks for leaks).
                    model.local.lock().unwrap().clear();
                    woken
                })
            };
            let closer = {
                let (slot, closed) = (slot.clone(), closed.clone());
                loom::thread::spawn(move || {
                    closed.store(true, Ordering::SeqCst);
                    if let Some(w) = slot.unblock(false) {
                        w.wake();
                    }
                })
            };
            let woken = poller.join().unwrap();
            closer.join().unwrap();
            if woken == Woken::Interrupted {
                assert!(closed.load(Ordering::SeqCst));
            }
            assert_ne!(slot.state.load(Ordering::SeqCst), WAITING);
        });
    }

    /// Remote readiness (another thread's `on_ready`: push + trigger) racing a deadline set
    /// from a third thread, with a coroutine waiting: it wakes, and reports the deadline only
    /// if the deadline was published.
    #[test]
    fn coroutine_remote_readiness_racing_a_deadline() {
        use super::co_model::{enter, CoHandle, Model};
        loom::model(|| {
            let slot = Arc::new(Slot::default());
            let expired = Arc::new(AtomicBool::new(false));
            let poller = {
                let (slot, expired) = (slot.clone(), expired.clone());
                loom::thread::spawn(move || {
                    let model = Model::on_this_thread();
                    enter(CoHandle {
                        model: model.clone(),
                        id: 7,
                    });
                    let woken = slot.wait(|| expired.load(Ordering::SeqCst));
                    (woken, model.local_wakes.load(Ordering::SeqCst))
                })
            };
            let ready = {
                let slot = slot.clone();
                loom::thread::spawn(move || {
                    if let Some(w) = slot.unblock(true) {
                        w.wake();
                    }
                })
            };
            let deadline = {
                let (slot, expired) = (slot.clone(), expired.clone());
                loom::thread::spawn(move || {
                    expired.store(true, Ordering::SeqCst);
                    if let Some(w) = slot.unblock(false) {
                        w.wake();
                    }
                })
            };
            let (woken, local_wakes) = poller.join().unwrap();
            ready.join().unwrap();
            deadline.join().unwrap();
            if woken == Woken::Interrupted {
                assert!(expired.load(Ordering::SeqCst));
            }
            assert_ne!(slot.state.load(Ordering::SeqCst), WAITING);
            // Every wake of the coroutine was a push from another thread (remote).
            assert_eq!(local_wakes, 0);
        });
    }

    /// A close and a deadline (one info word) racing a coroutine's wait, with a stale wake of
    /// the coroutine already queued (an earlier wait that ended early): the stale resume does
    /// not end the wait; it ends as an interruption, the slot EMPTY.
    #[test]
    fn coroutine_deadline_and_close_with_a_stale_wake() {
        use super::co_model::{enter, CoHandle, Model};
        use loom::sync::atomic::AtomicU32;
        loom::model(|| {
            let slot = Arc::new(Slot::default());
            let info = Arc::new(AtomicU32::new(0));
            let poller = {
                let (slot, info) = (slot.clone(), info.clone());
                loom::thread::spawn(move || {
                    let me = CoHandle {
                        model: Model::on_this_thread(),
                        id: 3,
                    };
                    me.clone().wake(); // stale, from a previous wait
                    enter(me);
                    slot.wait(|| info.load(Ordering::SeqCst) != 0)
                })
            };
            let publishers: Vec<_> = [1u32, 2]
                .into_iter()
                .map(|bit| {
                    let (slot, info) = (slot.clone(), info.clone());
                    loom::thread::spawn(move || {
                        info.fetch_or(bit, Ordering::SeqCst);
                        if let Some(w) = slot.unblock(false) {
                            w.wake();
                        }
                    })
                })
                .collect();
            let woken = poller.join().unwrap();
            assert_eq!(woken, Woken::Interrupted);
            assert_ne!(info.load(Ordering::SeqCst), 0);
            for p in publishers {
                p.join().unwrap();
            }
            assert_eq!(slot.state.load(Ordering::SeqCst), EMPTY);
        });
    }
}
