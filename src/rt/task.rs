//! Async tasks on the pollers: [`spawn`], [`spawn_local`], [`JoinHandle`], [`block_on`].
//!
//! A task is a future kept in its poller thread's slab (index + generation, like a coroutine)
//! and polled only there, from the run queue it shares with the coroutines (and their budget).
//! Its waker names the slot and the poller's run queue: a wake on that poller's thread is a
//! local push (no lock, no syscall), from anywhere else a remote push plus the coalesced
//! trigger. A `queued` flag makes repeated wakes before the next poll one push. Tasks never
//! move: `spawn` sends a `Send` future to the poller once; `spawn_local` creates it where it is.
//!
//! While a task is polled, the thread-local current poller is set, so a connection it dials or
//! accepts registers on its own poller, and its wakes stay local.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

// loom's under `--cfg loom` for the flags and locks two threads race on (`Queued`, `Join`).
use crate::loom::{AtomicBool, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

use super::{park, Parker};
use crate::poll::poller::{at_poller_exit, current_poller_id, push_local, RunQueue, Runnable};
use crate::poll::{PollManager, Poller};

type LocalFuture = Pin<Box<dyn Future<Output = ()>>>;

struct Entry {
    generation: u32,
    future: Option<LocalFuture>,
    /// The task's waker and what it wraps (for the `queued` flag).
    wake: Option<(Waker, Arc<TaskWake>)>,
}

struct Tasks {
    poller: Weak<Poller>,
    entries: Vec<Entry>,
    free: Vec<u32>,
}

thread_local! {
    static TASKS: RefCell<Option<Tasks>> = const { RefCell::new(None) };
    /// The poller whose task is being polled on this thread (0: none).
    static POLLING: Cell<usize> = const { Cell::new(0) };
}

/// True while an async task is polled on this thread (outside any coroutine it may run).
pub(crate) fn in_task() -> bool {
    POLLING.with(Cell::get) != 0 && !super::sched::in_coroutine()
}

/// Panics inside an async task: a blocking wait there parks the task's poller thread, which is
/// the thread that would deliver the wake-up (its timers, its fds' readiness, its other tasks).
#[track_caller]
pub(crate) fn assert_not_in_task(what: &str) {
    if in_task() {
        panic!(
            "netpoll: {what} inside an async task would block its poller thread (and deadlock \
             it); .await the async form instead, or move the blocking work to netpoll::blocking"
        );
    }
}

/// The poller of the task being polled on this thread, if any.
pub(crate) fn current_task_poller() -> Option<Arc<Poller>> {
    if POLLING.with(Cell::get) == 0 {
        return None;
    }
    TASKS.with(|t| t.borrow().as_ref().and_then(|t| t.poller.upgrade()))
}

/// What a task's waker holds: its slot and its poller's run queue.
struct TaskWake {
    poller: usize,
    key: u64,
    queue: RunQueue,
    /// Set by the first wake after a poll began; cleared just before the next poll.
    queued: Queued,
}

/// A task's `queued` flag: repeated wakes before the next poll make one push. Its own type
/// so loom checks this code (`loom_tests` below).
struct Queued(AtomicBool);

impl Queued {
    fn new() -> Queued {
        Queued(AtomicBool::new(false))
    }

    /// A wake: true if the caller must push the task (no push is pending since its last poll
    /// began).
    fn wake(&self) -> bool {
        !self.0.swap(true, Ordering::AcqRel)
    }

    /// The task is about to be polled: wakes from here on push again. A swap (not a store): it
    /// reads the flag, so what a waker wrote before a wake that found it set is seen by the poll.
    fn begin_poll(&self) {
        self.0.swap(false, Ordering::AcqRel);
    }
}

impl Wake for TaskWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.wake() {
            return;
        }
        let item = Runnable {
            run: poll_task,
            arg: self.key,
        };
        if !push_local(self.poller, item) {
            // Fails only once the poller closes, and then its tasks are gone.
            let _ = self.queue.run_soon(item);
        }
    }
}

/// Inserts `future` into the calling poller thread's slab and queues its first poll.
fn insert_here(poller: &Arc<Poller>, future: LocalFuture) {
    debug_assert_eq!(current_poller_id(), Some(poller.id()));
    let wake = TASKS.with(|t| {
        let mut t = t.borrow_mut();
        let t = t.get_or_insert_with(|| new_tasks(poller));
        let index = match t.free.pop() {
            Some(index) => index,
            None => {
                t.entries.push(Entry {
                    generation: 0,
                    future: None,
                    wake: None,
                });
                (t.entries.len() - 1) as u32
            }
        };
        let entry = &mut t.entries[index as usize];
        let key = u64::from(index) | (u64::from(entry.generation) << 32);
        let wake = Arc::new(TaskWake {
            poller: poller.id(),
            key,
            queue: poller.run_queue(),
            queued: Queued::new(),
        });
        entry.future = Some(future);
        entry.wake = Some((Waker::from(wake.clone()), wake.clone()));
        wake
    });
    wake.wake_by_ref();
}

fn new_tasks(poller: &Arc<Poller>) -> Tasks {
    at_poller_exit(teardown);
    Tasks {
        poller: Arc::downgrade(poller),
        entries: Vec::new(),
        free: Vec::new(),
    }
}

/// The poller's loop exited: drop every task (their join handles see them cancelled).
fn teardown() {
    let futures: Vec<LocalFuture> = TASKS.with(|t| {
        let mut t = t.borrow_mut();
        t.as_mut()
            .map(|t| {
                t.entries
                    .iter_mut()
                    .filter_map(|e| e.future.take())
                    .collect()
            })
            .unwrap_or_default()
    });
    drop(futures);
    TASKS.with(|t| t.borrow_mut().take());
}

/// A run-queue item: poll the task in slot `arg` (index | generation << 32).
fn poll_task(arg: u64) {
    let (index, generation) = (arg as u32, (arg >> 32) as u32);
    let taken = TASKS.with(|t| {
        let mut t = t.borrow_mut();
        let t = t.as_mut()?;
        let entry = t.entries.get_mut(index as usize)?;
        if entry.generation != generation {
            return None; // a stale wake: that task ended, maybe the slot was reused
        }
        // Both moved out for the poll and back after it (no reference-count traffic): nothing
        // reads the slot meanwhile, a task is never polled re-entrantly.
        let future = entry.future.take()?;
        match entry.wake.take() {
            Some((waker, wake)) => Some((future, waker, wake)),
            None => {
                entry.future = Some(future);
                None
            }
        }
    });
    let Some((mut future, waker, wake)) = taken else {
        return;
    };
    // Wakes from here on queue a new poll.
    wake.queued.begin_poll();
    let previous = POLLING.with(|p| p.replace(current_poller_id().unwrap_or(0)));
    let mut cx = Context::from_waker(&waker);
    let budget = super::coop::start_turn();
    // The task wrapper catches the user's panics; this only keeps a panicking wrapper (it
    // does not panic) from unwinding the poller.
    let done = match panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut cx))) {
        Ok(Poll::Pending) => false,
        Ok(Poll::Ready(())) | Err(_) => true,
    };
    super::coop::end_turn(budget);
    POLLING.with(|p| p.set(previous));
    // What goes back into the slot, or (the task ended, or the slab is gone) is dropped here,
    // after the borrow: a future's destructor may spawn or wake tasks.
    let left = TASKS.with(|t| {
        let mut t = t.borrow_mut();
        let Some(t) = t.as_mut() else {
            return Some((future, waker, wake));
        };
        let entry = &mut t.entries[index as usize];
        if done {
            entry.generation = entry.generation.wrapping_add(1);
            t.free.push(index);
            Some((future, waker, wake))
        } else {
            entry.future = Some(future);
            entry.wake = Some((waker, wake));
            None
        }
    });
    drop(left);
}

/// Why a task did not produce its value: it panicked, or it was aborted (or its poller closed
/// before it finished).
pub struct JoinError {
    repr: JoinErrorRepr,
}

enum JoinErrorRepr {
    Cancelled,
    Panic(Box<dyn Any + Send>),
}

impl JoinError {
    /// True if the task was aborted, or dropped unfinished because its poller closed.
    pub fn is_cancelled(&self) -> bool {
        matches!(self.repr, JoinErrorRepr::Cancelled)
    }

    /// True if the task panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self.repr, JoinErrorRepr::Panic(_))
    }

    /// The panic's payload (to `std::panic::resume_unwind`); panics if the task was cancelled.
    pub fn into_panic(self) -> Box<dyn Any + Send> {
        match self.repr {
            JoinErrorRepr::Panic(payload) => payload,
            JoinErrorRepr::Cancelled => panic!("JoinError::into_panic on a cancelled task"),
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.repr {
            JoinErrorRepr::Cancelled => f.write_str("JoinError::Cancelled"),
            JoinErrorRepr::Panic(_) => f.write_str("JoinError::Panic(..)"),
        }
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.repr {
            JoinErrorRepr::Cancelled => f.write_str("task was cancelled"),
            JoinErrorRepr::Panic(_) => f.write_str("task panicked"),
        }
    }
}

impl std::error::Error for JoinError {}

impl From<JoinError> for io::Error {
    fn from(e: JoinError) -> io::Error {
        io::Error::other(e.to_string())
    }
}

/// Drops a finished or cancelled future; a panic in its `Drop` is caught, so the handle still
/// gets its result (the panic hook has reported it).
fn drop_quietly<T>(value: Option<T>) {
    let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(value)));
}

/// Shared by a task and its [`JoinHandle`].
struct Join<T> {
    state: Mutex<JoinState<T>>,
    aborted: AtomicBool,
}

struct JoinState<T> {
    result: Option<Result<T, JoinError>>,
    /// The result was handed out (a handle polled again after that is a bug of its caller).
    taken: bool,
    /// A `JoinHandle` polled as a future.
    waker: Option<Waker>,
    /// A blocking `join()` (a thread or a coroutine).
    parker: Option<Parker>,
    /// The task's own waker, for `abort`.
    task: Option<Waker>,
}

impl<T> Join<T> {
    fn lock(&self) -> MutexGuard<'_, JoinState<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn complete(&self, result: Result<T, JoinError>) {
        let (waker, parker) = {
            let mut state = self.lock();
            if state.result.is_none() {
                state.result = Some(result);
            }
            state.task = None;
            (state.waker.take(), state.parker.take())
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        if let Some(parker) = parker {
            parker.wake();
        }
    }
}

/// The task as the slab holds it: the user's future, its result delivered to the handle.
struct TaskFuture<F: Future> {
    future: Option<Pin<Box<F>>>,
    join: Arc<Join<F::Output>>,
    /// The handle has its result.
    done: bool,
    /// The task's waker is in `join` (for `abort`).
    registered: bool,
}

impl<F: Future> Future for TaskFuture<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if !this.registered && !this.done {
            // The slab polls a task with the one waker it made for it: `abort` needs it once.
            // Registered before `aborted` is read, so an `abort` either sees the waker or is
            // seen here (both go through the join lock).
            this.join.lock().task = Some(cx.waker().clone());
            this.registered = true;
        }
        if this.join.aborted.load(Ordering::Acquire) {
            drop_quietly(this.future.take()); // dropped here, on its poller
            this.done = true;
            this.join.complete(Err(JoinError {
                repr: JoinErrorRepr::Cancelled,
            }));
            return Poll::Ready(());
        }
        let Some(future) = this.future.as_mut() else {
            return Poll::Ready(());
        };
        match panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(value)) => {
                drop_quietly(this.future.take());
                this.done = true;
                this.join.complete(Ok(value));
                Poll::Ready(())
            }
            Err(payload) => {
                drop_quietly(this.future.take());
                this.done = true;
                this.join.complete(Err(JoinError {
                    repr: JoinErrorRepr::Panic(payload),
                }));
                Poll::Ready(())
            }
        }
    }
}

impl<F: Future> Drop for TaskFuture<F> {
    /// Dropped unfinished (its poller closed, or it was never inserted): the handle returns.
    fn drop(&mut self) {
        if !self.done {
            // The future first: what it holds goes before the handle hears of it. A panicking
            // Drop must not keep the handle from hearing it (its join would block forever).
            let future = self.future.take();
            let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(future)));
            self.join.complete(Err(JoinError {
                repr: JoinErrorRepr::Cancelled,
            }));
        }
    }
}

/// Owns a task's result: `.await` it from async code, [`join`](JoinHandle::join) it from a
/// thread or a coroutine, [`abort`](JoinHandle::abort) it. Dropping it detaches the task.
pub struct JoinHandle<T> {
    join: Arc<Join<T>>,
    poller: usize,
}

impl<T> JoinHandle<T> {
    /// Waits for the task: parks a plain thread, suspends a calling coroutine.
    pub fn join(self) -> Result<T, JoinError> {
        loop {
            {
                let mut state = self.join.lock();
                if let Some(result) = state.result.take() {
                    return result;
                }
                state.parker = Some(Parker::current());
            }
            park();
        }
    }

    /// Cancels the task: it is dropped on its poller at its next turn (at once if it is
    /// waiting), and the handle returns a cancelled [`JoinError`] — unless it finished first.
    pub fn abort(&self) {
        self.join.aborted.store(true, Ordering::Release);
        let task = self.join.lock().task.clone();
        if let Some(task) = task {
            task.wake();
        }
    }

    /// True once the task has finished (or been cancelled).
    pub fn is_finished(&self) -> bool {
        let state = self.join.lock();
        state.result.is_some() || state.taken
    }

    /// The id of the poller the task runs on.
    pub fn poller_id(&self) -> usize {
        self.poller
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.join.lock();
        if let Some(result) = state.result.take() {
            state.taken = true;
            return Poll::Ready(result);
        }
        assert!(
            !state.taken,
            "netpoll: a task::JoinHandle polled after it completed"
        );
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

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("poller", &self.poller)
            .field("finished", &self.is_finished())
            .finish()
    }
}

fn new_join<T>() -> Arc<Join<T>> {
    Arc::new(Join {
        state: Mutex::new(JoinState {
            result: None,
            taken: false,
            waker: None,
            parker: None,
            task: None,
        }),
        aborted: AtomicBool::new(false),
    })
}

/// Spawns `future` on `poller`: created at once on the poller's own thread, through its task
/// queue from anywhere else. It is polled only there.
pub fn spawn_on<F>(poller: &Arc<Poller>, future: F) -> io::Result<JoinHandle<F::Output>>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let join = new_join();
    let task = TaskFuture {
        future: Some(Box::pin(future)),
        join: join.clone(),
        done: false,
        registered: false,
    };
    if poller.is_current_thread() {
        insert_here(poller, Box::pin(task));
    } else {
        let weak = Arc::downgrade(poller);
        // If the poller closes before it runs this, `task` is dropped: the handle returns.
        poller.execute(move || {
            if let Some(poller) = weak.upgrade() {
                insert_here(&poller, Box::pin(task));
            }
        })?;
    }
    Ok(JoinHandle {
        join,
        poller: poller.id(),
    })
}

/// Spawns `future` as a task on the pollers, like `tokio::spawn`: on the caller's poller when
/// called from a task or coroutine (its wakes stay local), otherwise on a poller of the global
/// [`PollManager`] chosen by its load-balance policy. The task never moves to another poller.
/// Panics if the pollers cannot start; [`spawn_on`] returns the error instead.
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let poller = match super::current_poller() {
        Some(poller) => poller,
        None => PollManager::global()
            .expect("netpoll::spawn: the pollers cannot start")
            .pick(),
    };
    spawn_on(&poller, future).expect("netpoll::spawn: the poller is closed")
}

/// Spawns a `!Send` future on the calling task's or coroutine's poller, where it stays (like
/// `tokio::task::spawn_local`). Panics outside a netpoll task or coroutine.
pub fn spawn_local<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let poller =
        super::current_poller().expect("netpoll::spawn_local: not in a netpoll task or coroutine");
    let join = new_join();
    let task = TaskFuture {
        future: Some(Box::pin(future)),
        join: join.clone(),
        done: false,
        registered: false,
    };
    insert_here(&poller, Box::pin(task));
    JoinHandle {
        join,
        poller: poller.id(),
    }
}

/// A waker that unparks a thread or resumes a coroutine.
struct ParkerWake(Parker);

impl Wake for ParkerWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.clone().wake();
    }
}

/// Runs `future` to completion on the calling thread, like `futures::executor::block_on`: the
/// thread parks between polls; inside a coroutine only the coroutine is suspended, and its
/// poller goes on. Its I/O and timers are netpoll's, on the pollers, so nothing else needs to
/// run. Do not call it from a task (it would block that task's poller).
pub fn block_on<F: Future>(future: F) -> F::Output {
    assert_not_in_task("block_on");
    let mut future = std::pin::pin!(future);
    let waker = Waker::from(Arc::new(ParkerWake(Parker::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(value) = future.as_mut().poll(&mut cx) {
            return value;
        }
        park();
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! A task's wake path under loom: `RUSTFLAGS="--cfg loom" cargo test --release --lib
    //! loom_tests`.
    //!
    //! `Queued` is the real code. The slab and the run queue live in the poller thread's locals
    //! (no atomics, one thread), so the model keeps them on the model's main thread, the
    //! poller: a `VecDeque` of keys behind a loom `Mutex` (the remote queue and trigger are
    //! checked in `poll::poller`), and `poll_task`'s steps in order: pop, check the
    //! generation, `begin_poll`, poll, bump the generation once done.
    use super::Queued;
    use loom::sync::atomic::AtomicUsize;
    use loom::sync::{Arc, Mutex};
    use loom::thread;
    use std::collections::VecDeque;

    const SEQ: std::sync::atomic::Ordering = std::sync::atomic::Ordering::SeqCst;

    struct Task {
        queued: Queued,
        /// The run queue: task keys (the generation they were made for).
        queue: Mutex<VecDeque<u32>>,
        /// What the task waits for: two events, each published before its wake.
        events: AtomicUsize,
        wakers_done: AtomicUsize,
    }

    impl Task {
        /// An event source: publish, then `TaskWake::wake_by_ref` (push unless queued).
        fn publish_and_wake(&self) {
            self.events.fetch_add(1, SEQ);
            if self.queued.wake() {
                let mut queue = self.queue.lock().unwrap();
                assert!(queue.is_empty(), "a task queued twice");
                queue.push_back(0);
            }
            self.wakers_done.fetch_add(1, SEQ);
        }
    }

    /// Two wakes from two threads race the poller polling the task (already polled once,
    /// pending, not queued). The task is queued at most once at a time (two wakes before a
    /// poll are one push), no wake is lost (the task sees both events and completes), and a
    /// wake after it completed pushes a stale key that polls nothing.
    #[test]
    fn a_task_woken_twice_runs_once_and_never_after_it_completes() {
        loom::model(|| {
            let task = Arc::new(Task {
                queued: Queued::new(),
                queue: Mutex::new(VecDeque::new()),
                events: AtomicUsize::new(0),
                wakers_done: AtomicUsize::new(0),
            });
            let wakers: Vec<_> = (0..2)
                .map(|_| {
                    let task = task.clone();
                    thread::spawn(move || task.publish_and_wake())
                })
                .collect();
            let mut generation = 0u32;
            let mut polls = 0;
            loop {
                let done = task.wakers_done.load(SEQ) == 2;
                let Some(key) = task.queue.lock().unwrap().pop_front() else {
                    if done {
                        break;
                    }
                    thread::yield_now();
                    continue;
                };
                if key != generation {
                    continue; // poll_task: a stale wake
                }
                task.queued.begin_poll();
                polls += 1;
                if task.events.load(SEQ) == 2 {
                    generation += 1; // Ready: the slot's generation moves on
                }
            }
            for waker in wakers {
                waker.join().unwrap();
            }
            assert_eq!(
                generation, 1,
                "a wake was lost: the task never saw both events"
            );
            assert!(polls <= 2);
        });
    }

    /// `JoinHandle::abort` from another thread racing the task's first poll (which registers
    /// the task's waker in the join lock, then reads `aborted`): the abort is seen by that
    /// poll, or it finds the waker and wakes the task, whose next poll cancels it. Never a
    /// task left pending with its abort unseen. The real `TaskFuture` and `JoinHandle`.
    #[test]
    fn an_abort_racing_the_first_poll_always_cancels_the_task() {
        use super::{new_join, JoinHandle, TaskFuture};
        use std::future::Future;
        use std::pin::Pin;
        use std::task::{Context, Wake, Waker};

        struct Woken(AtomicUsize);
        impl Wake for Woken {
            fn wake(self: std::sync::Arc<Self>) {
                self.0.fetch_add(1, SEQ);
            }
        }

        loom::model(|| {
            let join = new_join::<u32>();
            let mut task = TaskFuture {
                future: Some(Box::pin(std::future::pending::<u32>())),
                join: join.clone(),
                done: false,
                registered: false,
            };
            let handle = JoinHandle {
                join: join.clone(),
                poller: 0,
            };
            let woken = std::sync::Arc::new(Woken(AtomicUsize::new(0)));
            let waker = Waker::from(woken.clone());
            let aborter = thread::spawn(move || {
                handle.abort();
                handle
            });
            let mut cx = Context::from_waker(&waker);
            let first = Pin::new(&mut task).poll(&mut cx);
            let handle = aborter.join().unwrap();
            if first.is_pending() {
                assert!(
                    woken.0.load(SEQ) >= 1,
                    "the abort was lost: the task sleeps on"
                );
                assert!(Pin::new(&mut task).poll(&mut cx).is_ready());
            }
            drop(task);
            let result = handle.join.lock().result.take();
            assert!(result.is_some_and(|r| r.is_err_and(|e| e.is_cancelled())));
        });
    }
}
