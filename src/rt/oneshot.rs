//! A one-shot channel whose receiver is a future (a `Mutex<Option<T>>` and a `Waker`), and
//! [`blocking_async`]: a blocking closure run on a [`HandlerPool`], its result awaited.
//!
//! [`Mailbox`](super::Mailbox) serves threads and coroutines that wait by parking; this serves
//! async code under any executor (netpoll's tasks, tokio, `futures`' `block_on`): the pool
//! thread's send wakes the awaiting task's waker, which for a netpoll task is a push onto its
//! poller's run queue.

use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::thread;

use super::HandlerPool;
// loom's under `--cfg loom` for the channel itself, so `loom_tests` below checks this code.
use crate::loom::{Arc, MutexGuard};

struct Shared<T> {
    state: crate::loom::Mutex<State<T>>,
}

struct State<T> {
    value: Option<T>,
    waker: Option<Waker>,
    /// The sender went, with or without a value.
    closed: bool,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The sending half: [`send`](Sender::send) once, or drop it to tell the receiver nothing will
/// come.
pub(crate) struct Sender<T> {
    shared: Option<Arc<Shared<T>>>,
}

/// The receiving half, a future: `Some(value)`, or `None` once the sender went without one.
pub(crate) struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

/// A connected pair.
pub(crate) fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: crate::loom::Mutex::new(State {
            value: None,
            waker: None,
            closed: false,
        }),
    });
    (
        Sender {
            shared: Some(shared.clone()),
        },
        Receiver { shared },
    )
}

impl<T> Sender<T> {
    /// Delivers `value` and wakes the receiver (a receiver already dropped just loses it).
    pub(crate) fn send(mut self, value: T) {
        if let Some(shared) = self.shared.take() {
            close(&shared, Some(value));
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            close(&shared, None);
        }
    }
}

fn close<T>(shared: &Shared<T>, value: Option<T>) {
    let waker = {
        let mut state = shared.lock();
        if value.is_some() {
            state.value = value;
        }
        state.closed = true;
        state.waker.take()
    };
    // Woken outside the lock: a netpoll waker may poll nothing here, but others might.
    if let Some(waker) = waker {
        waker.wake();
    }
}

impl<T> Future for Receiver<T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.shared.lock();
        if let Some(value) = state.value.take() {
            return Poll::Ready(Some(value));
        }
        if state.closed {
            return Poll::Ready(None);
        }
        if state
            .waker
            .as_ref()
            .is_none_or(|w| !w.will_wake(cx.waker()))
        {
            state.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// Holds the closure until the pool's job takes it; dropped first (the awaiting future was
/// dropped), it takes the closure away so a job not yet started runs nothing.
struct Claim<F>(std::sync::Arc<Mutex<Option<F>>>);

impl<F> Claim<F> {
    fn take(&self) -> Option<F> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

impl<F> Drop for Claim<F> {
    fn drop(&mut self) {
        drop(self.take());
    }
}

/// Runs `f`, which may block (a `getaddrinfo`), on `pool` and completes with its result,
/// without blocking the awaiting task's thread. A panic in `f` resumes in the awaiting task. If
/// the pool refuses the job (shut down, or no thread could start) or drops it unrun, `f` runs
/// inline on the awaiting task instead (blocking its thread meanwhile), with a warning in the
/// log: slower, never a failure. Dropping the future before the job starts cancels `f`.
pub(crate) async fn blocking_async<F, T>(pool: &HandlerPool, f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let claim = Claim(std::sync::Arc::new(Mutex::new(Some(f))));
    let (sender, receiver) = channel::<thread::Result<T>>();
    let job = {
        // A plain handle, not a `Claim`: a job dropped unrun must leave `f` to the caller.
        let cell = claim.0.clone();
        move || {
            let f = cell.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(f) = f {
                sender.send(panic::catch_unwind(AssertUnwindSafe(f)));
            }
            // Without `f` (the awaiting future went first) the sender just drops.
        }
    };
    let refused = match pool.spawn(job) {
        Ok(()) => match receiver.await {
            Some(Ok(value)) => return value,
            Some(Err(payload)) => panic::resume_unwind(payload),
            // The sender went without a result: the job was dropped before it took `f` (once
            // it has, it always sends `f`'s result, a panic included).
            None => "dropped the job unrun".to_string(),
        },
        Err(e) => format!("refused the job: {e}"),
    };
    match claim.take() {
        Some(f) => {
            log::warn!("netpoll: the handler pool {refused}; running the blocking call inline");
            f()
        }
        // Once the job has taken `f` it always sends (see above), so this cannot happen.
        None => unreachable!("netpoll: the pool's job took the closure and sent no result"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn poll_once<F: Future + Unpin>(f: &mut F, waker: &Waker) -> Poll<F::Output> {
        Pin::new(f).poll(&mut Context::from_waker(waker))
    }

    #[test]
    fn send_wakes_the_receiver_and_a_dropped_sender_closes_it() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());

        let (tx, mut rx) = channel::<u32>();
        assert!(poll_once(&mut rx, &waker).is_pending());
        tx.send(7);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(poll_once(&mut rx, &waker), Poll::Ready(Some(7)));

        let (tx, mut rx) = channel::<u32>();
        assert!(poll_once(&mut rx, &waker).is_pending());
        drop(tx);
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        assert_eq!(poll_once(&mut rx, &waker), Poll::Ready(None));
    }

    #[test]
    fn blocking_async_runs_on_the_pool() {
        let pool = HandlerPool::new(1);
        let on = crate::rt::task::block_on(blocking_async(&pool, || thread::current().id()));
        assert_ne!(on, thread::current().id());
        assert_eq!(pool.workers(), 1);
    }

    #[test]
    fn a_refusing_pool_runs_the_closure_inline() {
        let pool = HandlerPool::new(1);
        pool.shutdown();
        let on = crate::rt::task::block_on(blocking_async(&pool, || thread::current().id()));
        assert_eq!(on, thread::current().id());
    }

    #[test]
    fn a_panic_resumes_in_the_awaiting_task() {
        let pool = HandlerPool::new(1);
        let caught = panic::catch_unwind(AssertUnwindSafe(|| {
            crate::rt::task::block_on(blocking_async(&pool, || {
                panic!("blocking job bug (expected by this test)")
            }))
        }));
        assert!(caught.is_err());
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! The channel under loom (the real code: its `Arc` and `Mutex` are `crate::loom`'s):
    //! `RUSTFLAGS="--cfg loom" cargo test --release --lib loom_tests`. The receiver is polled
    //! by `block_on` below, whose waker unparks the polling loom thread.
    use super::*;

    fn block_on<F: Future + Unpin>(mut future: F) -> F::Output {
        struct Unpark(loom::thread::Thread);
        impl std::task::Wake for Unpark {
            fn wake(self: std::sync::Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(std::sync::Arc::new(Unpark(loom::thread::current())));
        let mut cx = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(value) = Pin::new(&mut future).poll(&mut cx) {
                return value;
            }
            loom::thread::park();
        }
    }

    /// A send from another thread racing the receiver's polls (before its waker is stored,
    /// or after): the receiver always gets the value.
    #[test]
    fn a_send_racing_the_receivers_poll_is_delivered() {
        loom::model(|| {
            let (tx, rx) = channel::<u32>();
            let sender = loom::thread::spawn(move || tx.send(7));
            assert_eq!(block_on(rx), Some(7));
            sender.join().unwrap();
        });
    }

    /// A sender dropped unsent (the pool dropped the job) racing the receiver's polls: the
    /// receiver always ends, with `None`.
    #[test]
    fn a_sender_dropped_racing_the_receivers_poll_ends_it() {
        loom::model(|| {
            let (tx, rx) = channel::<u32>();
            let sender = loom::thread::spawn(move || drop(tx));
            assert_eq!(block_on(rx), None);
            sender.join().unwrap();
        });
    }

    /// A receiver dropped (the awaiting future went away) racing the send: the value is
    /// dropped with the last handle, whichever side that is (loom fails on a leaked `Arc`).
    #[test]
    fn a_receiver_dropped_racing_the_send_frees_the_value() {
        loom::model(|| {
            let (tx, rx) = channel::<Arc<()>>();
            let value = Arc::new(());
            let sent = value.clone();
            let sender = loom::thread::spawn(move || tx.send(sent));
            drop(rx);
            sender.join().unwrap();
            assert_eq!(
                Arc::strong_count(&value),
                1,
                "the value outlived both halves"
            );
        });
    }
}
