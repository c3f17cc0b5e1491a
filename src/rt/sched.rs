//! The scheduler of one poller thread: its coroutines, their stacks, and the current one.
//!
//! Everything here lives in the poller thread's locals and is touched only by that thread:
//! - `SCHED`: the slab of coroutines (index + generation), the pool of spare stacks;
//! - `CURRENT`: the handle of the coroutine running now (set around each resume);
//! - `YIELDER`: that coroutine's yielder, published by the coroutine itself after every resume
//!   and cleared before every suspend (the one `unsafe` block of this layer reads it).
//!
//! A coroutine runs only when its handle is popped from the poller's run queue
//! ([`RunQueue::run_soon`]); a wake is such a push: local on the poller thread, remote (mutex +
//! trigger) from elsewhere. Wakes may be stale or repeated (a wait that ended early still gets
//! its wake later), so every suspension re-checks its condition in a loop, and a handle whose
//! generation no longer matches its slot wakes nothing.
//!
//! ## Teardown
//! When the poller's loop exits, in this order (`poll::poller::run`, then [`teardown`]):
//! 1. the loop stops dispatching (no event, timer or run-queue item runs any more, and
//!    `execute`, `schedule` and remote pushes are refused) and the *teardown phase* begins: a
//!    flag of the poller thread, [`tearing_down`], set until the thread is done;
//! 2. every registration still attached is detached and its owner told (`on_poller_closed`):
//!    each Go-net poll descriptor of the poller is marked `POLLER_CLOSED` and its waiters are
//!    woken, so threads (and other pollers' coroutines) waiting on it fail with the closed
//!    error instead of waiting forever; this poller's coroutines are only queued, never run;
//! 3. the tasks queued before the close began run (a spawn's task creates its coroutine, which
//!    never starts); the timers are dropped unrun;
//! 4. this module's hook ([`teardown`]): every coroutine still suspended is dropped, in slab
//!    order, which force-unwinds it here, on the poller thread, outside any coroutine. Their
//!    destructors run; their `JoinHandle`s get `Err`;
//! 5. the scheduler (spare stacks, coroutines created by steps 3 and 4, never started: their
//!    closures are dropped, their handles get `Err`) and the registry entry go; then the run
//!    queues are cleared and the flag with them.
//!
//! During the teardown phase nothing on this thread waits ([`tearing_down`]), because what it
//! would wait for may be held by a coroutine that is still suspended and will only be resumed to
//! be unwound after the current destructor: a netpoll wait (read, write, accept, dial, sleep on
//! a descriptor) fails at once with the closed error, a `JoinHandle::join` returns `Err`, a
//! mailbox receive gives up, `sleep` returns, and a `NetFd` lock held by someone else is not
//! waited for (the call fails with the closed error). A close does not wait for the calls in
//! flight when they hold its locks (they may be suspended coroutines, which are not in a
//! syscall and only resume to unwind): it evicts the descriptor and shuts the socket down
//! (`shutdown(2)`, so the peer sees the end), and the fd itself is closed when its last owner
//! drops it, once no call can be using it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, RwLock, Weak};

use corosensei::stack::{DefaultStack, Stack};
use corosensei::{Coroutine, CoroutineResult, Yielder};

use crate::poll::poller::{at_poller_exit, current_poller_id, push_local, RunQueue, Runnable};
use crate::poll::Poller;

type Co = Coroutine<(), (), (), DefaultStack>;
type Body = Box<dyn FnOnce() + Send>;

/// Names one coroutine: its poller, its slot in that poller's slab, the slot's generation.
/// `Copy` and `Send`: it is what a waiter slot holds, and any thread may wake it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CoHandle {
    poller: usize,
    index: u32,
    generation: u32,
}

impl CoHandle {
    /// Makes the coroutine runnable on its poller: a local push on that poller's thread, a
    /// remote push plus trigger from any other. A handle whose poller is gone wakes nothing.
    pub(crate) fn wake(self) {
        let item = Runnable {
            run: resume_packed,
            arg: u64::from(self.index) | (u64::from(self.generation) << 32),
        };
        if push_local(self.poller, item) {
            return;
        }
        if let Some(queue) = run_queue_by_id(self.poller) {
            // Fails only once the poller closes, and then its coroutines are gone.
            let _ = queue.run_soon(item);
        }
    }
}

struct Entry {
    generation: u32,
    co: Option<Co>,
    /// The coroutine's stack, `(limit, base)`, to tell whether code runs on it.
    bounds: (usize, usize),
}

struct Scheduler {
    poller: Weak<Poller>,
    poller_id: usize,
    entries: Vec<Entry>,
    free: Vec<u32>,
    /// Spare stacks of the default size, reused by later coroutines.
    stacks: Vec<DefaultStack>,
    live: usize,
}

/// Spare stacks kept per poller at most; more are unmapped when their coroutine ends.
const MAX_POOLED_STACKS: usize = 1024;

thread_local! {
    static SCHED: RefCell<Option<Scheduler>> = const { RefCell::new(None) };
    static CURRENT: Cell<Option<CoHandle>> = const { Cell::new(None) };
    static BOUNDS: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
    static YIELDER: Cell<*const Yielder<(), ()>> = const { Cell::new(std::ptr::null()) };
    /// (default size, span of a stack made with it), recorded when one is made.
    static DEFAULT_SPAN: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

/// True while the calling thread is a poller thread whose loop has exited and that is shutting
/// down (evicting descriptors, running its last tasks, unwinding its suspended coroutines): then
/// nothing may wait (see the module doc's teardown order).
pub(crate) fn tearing_down() -> bool {
    crate::poll::poller::exiting()
}

/// The run queues of pollers that run coroutines, by poller id, for remote wakes. Weak
/// handles: a wake never keeps a poller alive, and never drops its last `Arc<Poller>` (which
/// would close it and join its thread inside the wake).
fn registry() -> &'static RwLock<HashMap<usize, RunQueue>> {
    static REGISTRY: std::sync::OnceLock<RwLock<HashMap<usize, RunQueue>>> =
        std::sync::OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

fn run_queue_by_id(id: usize) -> Option<RunQueue> {
    let registry = registry().read().unwrap_or_else(|e| e.into_inner());
    registry.get(&id).cloned()
}

/// True when the caller runs inside a coroutine, on that coroutine's stack (not, say, inside a
/// coroutine of its own nested in ours), so it may suspend.
pub(crate) fn in_coroutine() -> bool {
    if YIELDER.with(Cell::get).is_null() {
        return false;
    }
    let (limit, base) = BOUNDS.with(Cell::get);
    let here = &limit as *const usize as usize;
    limit < here && here <= base
}

/// The running coroutine's handle, if the caller may suspend it.
pub(crate) fn current() -> Option<CoHandle> {
    if in_coroutine() {
        CURRENT.with(Cell::get)
    } else {
        None
    }
}

/// The poller the running coroutine belongs to.
pub(crate) fn current_poller() -> Option<Arc<Poller>> {
    current()?;
    SCHED.with(|s| s.borrow().as_ref().and_then(|s| s.poller.upgrade()))
}

/// Suspends the running coroutine until something wakes its handle (or a stale wake resumes it:
/// callers loop on their condition). False, without suspending, outside a coroutine.
pub(crate) fn suspend() -> bool {
    if !in_coroutine() {
        return false;
    }
    // Cleared before the suspend: while this coroutine is suspended, code running on this
    // thread (the loop, other coroutines) must not find its yielder.
    let yielder = YIELDER.with(|y| y.replace(std::ptr::null()));
    // SAFETY: `yielder` was published by this coroutine's body (`run_body`) from the `&Yielder`
    // corosensei passed it, which stays valid until that body returns. It is non-null only
    // while that body runs on this thread: cleared here before every suspend and at the body's
    // end, republished below after every resume; a `Coroutine` is `!Send`, so the body never
    // runs on another thread. `in_coroutine` checked we run on that coroutine's own stack, so
    // this is the coroutine the yielder belongs to (not one nested inside it).
    unsafe { (*yielder).suspend(()) };
    YIELDER.with(|y| y.set(yielder));
    true
}

/// Suspends the running coroutine after queueing its own wake: others queued before it run
/// first. False outside a coroutine.
pub(crate) fn yield_now() -> bool {
    let Some(me) = current() else {
        return false;
    };
    me.wake();
    suspend()
}

/// Creates a coroutine running `body` on the calling poller thread and queues it. `stack_size`
/// `None` takes the default size (and a pooled stack).
pub(crate) fn spawn_here(
    poller: &Arc<Poller>,
    body: Body,
    stack_size: Option<usize>,
) -> io::Result<()> {
    debug_assert_eq!(current_poller_id(), Some(poller.id()));
    if poller.is_closing() {
        // It would never be resumed (the teardown drops it unstarted): let the caller run the
        // body itself (`spawn_or_run`) or fail (`go`).
        return Err(io::Error::new(
            io::ErrorKind::NotConnected,
            "poller is closing",
        ));
    }
    let default = super::stack_size();
    let size = stack_size.unwrap_or(default);
    let pooled = if size == default {
        SCHED.with(|s| {
            let mut s = s.borrow_mut();
            let s = s.as_mut()?;
            let stack = s.stacks.pop()?;
            let span = stack.base().get() - stack.limit().get();
            if DEFAULT_SPAN.with(Cell::get) == (default, span) {
                Some(stack)
            } else {
                // Pooled under an older default: none of them fits now.
                s.stacks.clear();
                None
            }
        })
    } else {
        None
    };
    let fresh = pooled.is_none();
    let stack = match pooled {
        Some(stack) => stack,
        None => DefaultStack::new(size)?,
    };
    let bounds = (stack.limit().get(), stack.base().get());
    if size == default && fresh {
        // What a default stack spans (corosensei rounds up and counts its guard page): the
        // stacks that may go back to the pool are exactly these.
        DEFAULT_SPAN.with(|span| span.set((default, bounds.1 - bounds.0)));
    }
    let co = Coroutine::with_stack(stack, move |yielder: &Yielder<(), ()>, ()| {
        run_body(yielder, body)
    });
    let handle = SCHED.with(|s| {
        let mut s = s.borrow_mut();
        let s = s.get_or_insert_with(|| new_scheduler(poller));
        s.live += 1;
        let index = match s.free.pop() {
            Some(index) => index,
            None => {
                s.entries.push(Entry {
                    generation: 0,
                    co: None,
                    bounds: (0, 0),
                });
                (s.entries.len() - 1) as u32
            }
        };
        let entry = &mut s.entries[index as usize];
        entry.co = Some(co);
        entry.bounds = bounds;
        CoHandle {
            poller: s.poller_id,
            index,
            generation: entry.generation,
        }
    });
    handle.wake();
    Ok(())
}

/// The first use of coroutines on this poller thread: the scheduler, its entry in the
/// registry, and its teardown when the loop exits.
fn new_scheduler(poller: &Arc<Poller>) -> Scheduler {
    registry()
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(poller.id(), poller.run_queue());
    let id = poller.id();
    at_poller_exit(move || teardown(id));
    Scheduler {
        poller: Arc::downgrade(poller),
        poller_id: id,
        entries: Vec::new(),
        free: Vec::new(),
        stacks: Vec::new(),
        live: 0,
    }
}

/// Spare stacks pooled on the calling poller thread.
pub(crate) fn pooled_stacks() -> usize {
    SCHED.with(|s| s.borrow().as_ref().map_or(0, |s| s.stacks.len()))
}

/// Live coroutines of the calling poller thread.
pub(crate) fn live() -> usize {
    SCHED.with(|s| s.borrow().as_ref().map_or(0, |s| s.live))
}

fn run_body(yielder: &Yielder<(), ()>, body: Body) {
    YIELDER.with(|y| y.set(yielder as *const _));
    // The body catches its own panics (the join handle carries them); this catch only keeps a
    // forced unwind (the poller closing) inside the coroutine, where corosensei expects it.
    let _ = panic::catch_unwind(AssertUnwindSafe(body));
    YIELDER.with(|y| y.set(std::ptr::null()));
}

/// A run-queue item: resume the coroutine in slot `arg` (index | generation << 32).
fn resume_packed(arg: u64) {
    let (index, generation) = (arg as u32, (arg >> 32) as u32);
    let taken = SCHED.with(|s| {
        let mut s = s.borrow_mut();
        let s = s.as_mut()?;
        let entry = s.entries.get_mut(index as usize)?;
        if entry.generation != generation {
            return None; // a stale wake: that coroutine ended, maybe the slot was reused
        }
        let handle = CoHandle {
            poller: s.poller_id,
            index,
            generation,
        };
        entry.co.take().map(|co| (co, entry.bounds, handle))
    });
    let Some((mut co, bounds, handle)) = taken else {
        return;
    };
    // No borrow of SCHED is held while the coroutine runs: it spawns, wakes, suspends.
    CURRENT.with(|c| c.set(Some(handle)));
    BOUNDS.with(|b| b.set(bounds));
    let budget = super::coop::start_turn();
    let result = co.resume(());
    super::coop::end_turn(budget);
    CURRENT.with(|c| c.set(None));
    BOUNDS.with(|b| b.set((0, 0)));
    SCHED.with(|s| {
        let mut s = s.borrow_mut();
        let Some(s) = s.as_mut() else { return };
        match result {
            CoroutineResult::Yield(()) => s.entries[index as usize].co = Some(co),
            CoroutineResult::Return(()) => {
                let entry = &mut s.entries[index as usize];
                entry.generation = entry.generation.wrapping_add(1);
                s.free.push(index);
                s.live -= 1;
                let stack = co.into_stack();
                let span = stack.base().get() - stack.limit().get();
                // Only a stack of today's default size is reused (the default may change).
                let reusable = DEFAULT_SPAN.with(Cell::get) == (super::stack_size(), span);
                if s.stacks.len() < MAX_POOLED_STACKS && reusable {
                    s.stacks.push(stack);
                }
            }
        }
    });
}

/// The poller's loop exited: unwind every coroutine still suspended (their join handles see
/// the unwind as a panic), then free the stacks. Steps 4 and 5 of the module doc's order.
fn teardown(id: usize) {
    let coroutines: Vec<Co> = SCHED.with(|s| {
        let mut s = s.borrow_mut();
        s.as_mut()
            .map(|s| s.entries.iter_mut().filter_map(|e| e.co.take()).collect())
            .unwrap_or_default()
    });
    // Dropping a suspended coroutine force-unwinds it, running its destructors here, outside
    // any coroutine; with the teardown flag set, nothing they call waits.
    drop(coroutines);
    // Dropped outside the borrow: never-started coroutines spawned meanwhile drop their
    // closures here, whose destructors may touch the scheduler.
    let scheduler = SCHED.with(|s| s.borrow_mut().take());
    drop(scheduler);
    registry()
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id);
}
