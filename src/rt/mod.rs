//! Goroutines on the pollers: stackful coroutines (corosensei) scheduled by the poller threads,
//! so blocking-style code suspends in user space instead of parking a thread.
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | [`go`], [`go_on`], [`Builder`], [`JoinHandle`], [`yield_now`], [`sleep`], [`blocking`], stack size |
//! | `sched.rs` | the per-poller scheduler: the slab of coroutines, the stack pool, the current coroutine, `CoHandle` |
//! | `pool.rs` | [`HandlerPool`]: the thread pool [`blocking`] (and the reactor face's pool handlers) run on |
//! | `oneshot.rs` | a one-shot channel whose receiver is a future, and `blocking_async`: a blocking call on the pool awaited by async code (the async dial's name resolution) |
//! | `coop.rs` | the cooperative budget: I/O operations per turn before a task or coroutine lets the others run |
//! | `wait.rs` | `WaitSet`: a condition-variable analogue and data-less locks whose waiters may be threads or coroutines, one set per owner |
//! | `lock.rs` | `QueueLock`: a lock whose waiters (threads and coroutines) queue FIFO and sleep until handed the lock (`NetFd`'s direction locks) |
//!
//! A coroutine is created on its poller's thread from a `Send` closure and never leaves it
//! (corosensei's `Coroutine` is `!Send`): whatever it creates inside stays on that thread.
//! Inside one, every blocking call of the Go-net face ([`crate::net`]) suspends the coroutine
//! instead of the thread; outside, the same calls park the thread as before. See
//! `docs/GOROUTINES.md` for what may (and must not) run in a coroutine.
//!
//! ```
//! use std::io::{Read, Write};
//! let listener = netpoll::net::listen_tcp("tcp", "127.0.0.1:0")?;
//! let addr = listener.local_addr();
//! let server = netpoll::go(move || {
//!     let (mut conn, _) = listener.accept()?; // suspends this coroutine, not a thread
//!     let mut buf = [0u8; 5];
//!     conn.read_exact(&mut buf)?;
//!     conn.write_all(&buf)
//! });
//! let client = netpoll::go(move || {
//!     let mut conn = netpoll::net::dial_tcp("tcp", addr)?;
//!     conn.write_all(b"hello")?;
//!     let mut echo = [0u8; 5];
//!     conn.read_exact(&mut echo)?;
//!     Ok::<_, std::io::Error>(echo)
//! });
//! assert_eq!(&client.join().unwrap()?, b"hello");
//! server.join().unwrap()?;
//! # Ok::<(), std::io::Error>(())
//! ```

pub(crate) mod coop;
pub(crate) mod lock;
pub(crate) mod oneshot;
pub(crate) mod pool;
pub(crate) mod sched;
pub mod task;
pub mod time;
pub(crate) mod wait;

use std::any::Any;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

pub use pool::{default_pool, HandlerPool};
pub(crate) use sched::{current, in_coroutine, CoHandle};

use crate::poll::{PollManager, Poller};

/// The default stack of a coroutine: 64 KiB (plus one guard page).
pub const DEFAULT_STACK_SIZE: usize = 64 * 1024;

static STACK_SIZE: AtomicUsize = AtomicUsize::new(DEFAULT_STACK_SIZE);

/// Sets the stack size of coroutines spawned from now on without [`Builder::stack_size`]
/// (at least 4 KiB; corosensei adds a guard page). Pooled stacks of the old size are unmapped
/// as they come back instead of being reused.
pub fn set_stack_size(bytes: usize) {
    STACK_SIZE.store(bytes.max(4096), Ordering::Relaxed);
}

/// The stack size of coroutines spawned without [`Builder::stack_size`].
pub fn stack_size() -> usize {
    STACK_SIZE.load(Ordering::Relaxed)
}

/// Who waits for something in this layer: a parked thread or a suspended coroutine.
#[derive(Clone)]
pub(crate) enum Parker {
    Thread(Thread),
    Coroutine(CoHandle),
    /// An async task (a coroutine's `JoinHandle` polled as a future).
    Task(std::task::Waker),
}

impl Parker {
    /// The caller: its coroutine if it runs in one, else its thread.
    pub(crate) fn current() -> Parker {
        match current() {
            Some(handle) => Parker::Coroutine(handle),
            None => Parker::Thread(thread::current()),
        }
    }

    pub(crate) fn wake(self) {
        match self {
            Parker::Thread(thread) => thread.unpark(),
            Parker::Coroutine(handle) => handle.wake(),
            Parker::Task(waker) => waker.wake(),
        }
    }
}

/// Suspends the running coroutine, or parks the thread outside one, until a wake (or a
/// spurious return: callers loop on their condition).
pub(crate) fn park() {
    task::assert_not_in_task("a blocking wait");
    if !sched::suspend() {
        thread::park();
    }
}

/// [`park`] with a bound: a coroutine arms a timer on its poller that wakes it at `deadline`.
pub(crate) fn park_until(deadline: Instant) {
    task::assert_not_in_task("a blocking wait");
    match (current(), current_poller()) {
        (Some(me), Some(poller)) => {
            match poller.schedule(deadline, move || me.wake()) {
                Ok(key) => {
                    sched::suspend();
                    poller.cancel(key);
                }
                // The poller is closing: no timer will resume us, but its teardown unwinds us
                // right after this iteration (a real wake before that still resumes us).
                Err(_) => {
                    sched::suspend();
                }
            }
        }
        _ => thread::park_timeout(deadline.saturating_duration_since(Instant::now())),
    }
}

/// A one-value mailbox between any threads and coroutines: `put` wakes the waiter.
pub(crate) struct Mailbox<T> {
    inner: Mutex<MailboxState<T>>,
}

struct MailboxState<T> {
    items: Vec<T>,
    waiter: Option<Parker>,
    /// Senders still expected; `recv` gives up once none is left and nothing is queued.
    senders: usize,
}

impl<T> Mailbox<T> {
    pub(crate) fn new(senders: usize) -> Arc<Mailbox<T>> {
        Arc::new(Mailbox {
            inner: Mutex::new(MailboxState {
                items: Vec::new(),
                waiter: None,
                senders,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, MailboxState<T>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds one expected sender.
    pub(crate) fn add_sender(&self) {
        self.lock().senders += 1;
    }

    /// Delivers `item` (and counts one sender as done).
    pub(crate) fn put(&self, item: T) {
        let waiter = {
            let mut state = self.lock();
            state.items.push(item);
            state.senders = state.senders.saturating_sub(1);
            state.waiter.take()
        };
        if let Some(waiter) = waiter {
            waiter.wake();
        }
    }

    /// Counts one sender as done without an item (and wakes the waiter to notice).
    pub(crate) fn sender_gone(&self) {
        let waiter = {
            let mut state = self.lock();
            state.senders = state.senders.saturating_sub(1);
            state.waiter.take()
        };
        if let Some(waiter) = waiter {
            waiter.wake();
        }
    }

    /// The next item, waiting (suspending in a coroutine) until `deadline` if given. `None` at
    /// the deadline, or when no sender is left.
    pub(crate) fn recv(&self, deadline: Option<Instant>) -> Option<T> {
        loop {
            {
                let mut state = self.lock();
                if !state.items.is_empty() {
                    return Some(state.items.remove(0));
                }
                // Nothing waits while a poller thread unwinds its coroutines (`sched`).
                if state.senders == 0
                    || deadline.is_some_and(|d| d <= Instant::now())
                    || sched::tearing_down()
                {
                    return None;
                }
                state.waiter = Some(Parker::current());
            }
            match deadline {
                Some(deadline) => park_until(deadline),
                None => park(),
            }
        }
    }
}

/// The result of a coroutine, shared by it and its [`JoinHandle`].
struct JoinState<T> {
    result: Option<thread::Result<T>>,
    waiter: Option<Parker>,
}

struct Completer<T> {
    state: Option<Arc<Mutex<JoinState<T>>>>,
}

impl<T> Completer<T> {
    fn complete(mut self, result: thread::Result<T>) {
        if let Some(state) = self.state.take() {
            let waiter = {
                let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
                state.result = Some(result);
                state.waiter.take()
            };
            if let Some(waiter) = waiter {
                waiter.wake();
            }
        }
    }
}

impl<T> Drop for Completer<T> {
    /// Never run (the poller closed first) or unwound at shutdown: the joiner still returns.
    fn drop(&mut self) {
        if self.state.is_some() {
            let payload: Box<dyn Any + Send> =
                Box::new("netpoll: the coroutine's poller closed before it finished");
            Completer {
                state: self.state.take(),
            }
            .complete(Err(payload));
        }
    }
}

/// Owns a coroutine's result (std's `JoinHandle` for goroutines). Dropping it detaches the
/// coroutine.
pub struct JoinHandle<T> {
    state: Arc<Mutex<JoinState<T>>>,
    poller: usize,
}

impl<T> JoinHandle<T> {
    /// Waits for the coroutine to finish: parks a plain thread, suspends a calling coroutine.
    /// `Err` carries the payload of a panic in the coroutine (or a message if its poller closed
    /// before it finished). Called by a destructor that runs while a poller shuts down (its
    /// suspended coroutines unwinding), it does not wait: an unfinished coroutine's join
    /// returns `Err` at once.
    pub fn join(self) -> thread::Result<T> {
        loop {
            {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(result) = state.result.take() {
                    return result;
                }
                if sched::tearing_down() {
                    // The coroutine may be one this teardown unwinds after the caller.
                    return Err(Box::new(
                        "netpoll: join during a poller's shutdown, the coroutine had not finished",
                    ));
                }
                state.waiter = Some(Parker::current());
            }
            park();
        }
    }

    /// True once the coroutine has finished (its result is waiting for `join`).
    pub fn is_finished(&self) -> bool {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.result.is_some()
    }

    /// The id of the poller the coroutine runs on ([`Poller::id`]).
    pub fn poller_id(&self) -> usize {
        self.poller
    }
}

/// A coroutine's handle awaited from async code (a task joining a coroutine): completes with
/// what [`JoinHandle::join`] returns, without blocking the task's poller.
impl<T> std::future::Future for JoinHandle<T> {
    type Output = thread::Result<T>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<thread::Result<T>> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(result) = state.result.take() {
            return std::task::Poll::Ready(result);
        }
        state.waiter = Some(Parker::Task(cx.waker().clone()));
        std::task::Poll::Pending
    }
}

impl<T> std::fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinHandle")
            .field("poller", &self.poller)
            .field("finished", &self.is_finished())
            .finish()
    }
}

/// Spawns coroutines with options (std's `thread::Builder` for goroutines).
#[derive(Clone, Debug, Default)]
pub struct Builder {
    stack_size: Option<usize>,
}

impl Builder {
    /// The defaults: [`stack_size`] bytes of stack.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// The stack of coroutines this builder spawns (at least 4 KiB; a guard page is added).
    /// Only stacks of the default size are pooled.
    pub fn stack_size(mut self, bytes: usize) -> Builder {
        self.stack_size = Some(bytes.max(4096));
        self
    }

    /// Spawns `f` on a poller of the global [`PollManager`], chosen by its load-balance policy.
    pub fn spawn<F, T>(self, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let poller = PollManager::global()?.pick();
        self.spawn_on(&poller, f)
    }

    /// Spawns `f` on `poller`. The coroutine is created on the poller's thread (at once when
    /// called there, else through its task queue) and runs only there.
    pub fn spawn_on<F, T>(self, poller: &Arc<Poller>, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let state = Arc::new(Mutex::new(JoinState {
            result: None,
            waiter: None,
        }));
        let completer = Completer {
            state: Some(state.clone()),
        };
        let body = Box::new(move || {
            let result = panic::catch_unwind(AssertUnwindSafe(f));
            completer.complete(result);
        });
        let stack_size = self.stack_size;
        if poller.is_current_thread() {
            sched::spawn_here(poller, body, stack_size)?;
        } else {
            let weak = Arc::downgrade(poller);
            poller.execute(move || {
                let Some(poller) = weak.upgrade() else { return };
                if let Err(e) = sched::spawn_here(&poller, body, stack_size) {
                    // `body` (and its completer) is dropped: the joiner sees an error.
                    log::error!("netpoll: cannot create a coroutine: {e}");
                }
            })?;
        }
        Ok(JoinHandle {
            state,
            poller: poller.id(),
        })
    }
}

/// Runs `body` as a detached coroutine on `poller`: created at once on the poller's own thread,
/// through its task queue from any other. The error (the poller is closing, or no stack could
/// be mapped) comes back only when the body could not be queued; a failure on the poller
/// thread afterwards drops the body unrun, which its owner must tolerate (drop guards).
pub(crate) fn spawn_detached(
    poller: &Arc<Poller>,
    body: Box<dyn FnOnce() + Send>,
) -> io::Result<()> {
    if poller.is_current_thread() {
        return sched::spawn_here(poller, body, None);
    }
    let weak = Arc::downgrade(poller);
    poller.execute(move || {
        let Some(poller) = weak.upgrade() else { return };
        if let Err(e) = sched::spawn_here(&poller, body, None) {
            log::error!("netpoll: cannot create a coroutine: {e}");
        }
    })
}

/// Spawns `f` as a coroutine on a poller of the global [`PollManager`] (chosen by its
/// load-balance policy), like `go f()` in Go. Panics if the coroutine cannot be created
/// (the pollers cannot start); [`Builder::spawn`] returns the error instead.
pub fn go<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    Builder::new()
        .spawn(f)
        .expect("netpoll::go: cannot spawn a coroutine")
}

/// Spawns `f` as a coroutine on `poller`. Panics if the poller is closed;
/// [`Builder::spawn_on`] returns the error instead.
pub fn go_on<F, T>(poller: &Arc<Poller>, f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    Builder::new()
        .spawn_on(poller, f)
        .expect("netpoll::go_on: cannot spawn a coroutine")
}

/// Lets the other runnable coroutines of this poller (and its I/O) run, then continues. Outside
/// a coroutine, `std::thread::yield_now`.
pub fn yield_now() {
    if !sched::yield_now() {
        thread::yield_now();
    }
}

/// Sleeps for `duration`: a coroutine suspends on a timer of its poller; a thread sleeps. In a
/// destructor run by a poller's shutdown (its coroutines unwinding) it returns at once.
pub fn sleep(duration: Duration) {
    let until = Instant::now() + duration;
    if sched::tearing_down() {
        return;
    }
    if !in_coroutine() {
        thread::sleep(duration);
        return;
    }
    while Instant::now() < until {
        park_until(until);
    }
}

/// True when the caller runs inside a coroutine (where netpoll's blocking calls suspend).
pub fn is_coroutine() -> bool {
    in_coroutine()
}

/// The poller the calling coroutine or async task runs on (`None` elsewhere): spawn there with
/// [`go_on`] (or [`task::spawn_on`]) to keep related work, and its wakes, on one thread.
pub fn current_poller() -> Option<Arc<Poller>> {
    sched::current_poller().or_else(task::current_task_poller)
}

/// The number of spare stacks pooled on the calling poller thread (0 elsewhere): a finished
/// coroutine's stack of the default size waits there for the next spawn.
pub fn pooled_stacks() -> usize {
    sched::pooled_stacks()
}

/// The number of live coroutines on the calling poller thread (0 elsewhere).
pub fn live_coroutines() -> usize {
    sched::live()
}

/// Runs `f`, which may block, without stalling the poller: inside a coroutine `f` runs on the
/// [`default_pool`] while the coroutine is suspended (the poller serves everything else);
/// outside one it simply runs here. A panic in `f` resumes in the caller. If the pool refuses
/// the job (it was shut down, or cannot start a thread) or drops it unrun, `f` runs inline on
/// the calling coroutine instead (stalling its poller meanwhile), with a warning in the log.
pub fn blocking<F, T>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    if !in_coroutine() {
        return f();
    }
    let mailbox = Mailbox::<thread::Result<T>>::new(1);
    // `f` waits here until the job takes it: a refused or dropped job leaves it to the caller.
    let cell = Arc::new(Mutex::new(Some(f)));
    let job = {
        let (sender, cell) = (Sender(Some(mailbox.clone())), cell.clone());
        move || {
            let f = take_closure(&cell);
            if let Some(f) = f {
                sender.put(panic::catch_unwind(AssertUnwindSafe(f)));
            }
        }
    };
    let refused = match default_pool().spawn(job) {
        Ok(()) => match mailbox.recv(None) {
            Some(Ok(value)) => return value,
            Some(Err(payload)) => panic::resume_unwind(payload),
            // Every sender left without a result: the job was dropped before it took `f`
            // (once it has, it always delivers `f`'s result, a panic included).
            None => "dropped the job unrun".to_string(),
        },
        Err(e) => format!("refused the job: {e}"),
    };
    match take_closure(&cell) {
        Some(f) => {
            log::warn!("netpoll::blocking: the handler pool {refused}; running it inline");
            f()
        }
        // The job took `f` but delivered nothing: impossible, since once it has taken `f` it
        // always puts `f`'s result (a panic included) before its sender goes.
        None => unreachable!("netpoll::blocking: the job took the closure and gave no result"),
    }
}

fn take_closure<F>(cell: &Mutex<Option<F>>) -> Option<F> {
    cell.lock().unwrap_or_else(|e| e.into_inner()).take()
}

/// The job's side of `blocking`'s mailbox: dropped without a result (the job dropped unrun), it
/// still counts itself out, so the receiver does not wait for it forever.
struct Sender<T>(Option<Arc<Mailbox<T>>>);

impl<T> Sender<T> {
    fn put(mut self, item: T) {
        if let Some(mailbox) = self.0.take() {
            mailbox.put(item);
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if let Some(mailbox) = self.0.take() {
            mailbox.sender_gone();
        }
    }
}
