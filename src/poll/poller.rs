//! One poller: an epoll instance, its thread, its trigger and its registration table.
//!
//! The loop, once per wake:
//! 1. `epoll_wait` into the event array (128 entries, doubled whenever a wait fills it, up to
//!    128 Ki, as CloudWeGo netpoll does);
//! 2. under the table lock, map each token to its registration, dropping stale generations;
//! 3. without the lock, re-check each registration is still current and call `on_ready`;
//!    hang-ups and errors of registrations made with `Registration::new` are set aside
//!    (persistent ones — the connections of both faces — handle them in `on_ready`);
//! 4. after the batch, detach each set-aside registration and call its `on_hangup`;
//! 5. if the trigger fired, run the queued tasks; then the timers that are due;
//! 6. run the poller's *run queue* (work the layer above queued with [`RunQueue::run_soon`]),
//!    at most what was queued when the drain began and at most `RUN_BUDGET` items; while it is
//!    not empty, the next `epoll_wait` does not sleep (timeout 0).
//!
//! The run queue knows nothing of what it runs: an item is a function pointer and a `u64`
//! (`Runnable`), so queueing allocates nothing. A push on the poller's own thread goes to a
//! thread-local queue (no lock, no syscall); a push from another thread goes to a mutex-guarded
//! remote queue plus the coalesced trigger, and the loop moves it over when it wakes.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use super::registration::{RegistrationInner, Slab, TRIGGER_TOKEN};
use super::timer::{TimerKey, TimerTask, Timers};
use super::{PollEvent, Ready, Registration};
use crate::sys::{EventFd, Events, Interest, Selector};

const INITIAL_EVENTS: usize = 128;
const MAX_EVENTS: usize = 128 * 1024;

type Task = Box<dyn FnOnce() + Send>;

/// Items of the run queue drained per loop iteration at most; the rest wait for the next one,
/// after an `epoll_wait` that does not sleep, so queued work never starves I/O and timers.
const RUN_BUDGET: usize = 4096;

/// One item of a poller's run queue: `run(arg)` on the poller thread. Plain data, so a push
/// allocates nothing (the layer above packs a handle into `arg`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Runnable {
    pub(crate) run: fn(u64),
    pub(crate) arg: u64,
}

thread_local! {
    /// The id of the poller whose loop runs on this thread (0: not a poller thread).
    static LOCAL_POLLER: Cell<usize> = const { Cell::new(0) };
    /// That poller's run queue: touched only by its own thread, so no lock.
    static LOCAL_QUEUE: RefCell<VecDeque<Runnable>> = const { RefCell::new(VecDeque::new()) };
    /// Work to run when the loop exits, before the thread's locals are destroyed.
    static AT_EXIT: RefCell<Vec<Box<dyn FnOnce()>>> = const { RefCell::new(Vec::new()) };
    /// Set from the moment the loop exits until the thread is done with its shutdown.
    static EXITING: Cell<bool> = const { Cell::new(false) };
}

/// True on a poller thread whose loop has exited while it shuts down (evicts its
/// registrations, runs its last tasks and its exit hooks): nothing there may wait, since no
/// event or timer of this poller will ever come again, and what it would wait for may belong to
/// a coroutine of this thread that is resumed only to be unwound (see `rt::sched`).
pub(crate) fn exiting() -> bool {
    EXITING.with(Cell::get)
}

/// The id of the poller whose loop runs on the calling thread, if any.
pub(crate) fn current_poller_id() -> Option<usize> {
    let id = LOCAL_POLLER.with(Cell::get);
    (id != 0).then_some(id)
}

/// Queues `item` on the run queue of poller `id` if the caller is that poller's thread: a push
/// onto a thread-local queue. False (nothing queued) on any other thread.
pub(crate) fn push_local(id: usize, item: Runnable) -> bool {
    if LOCAL_POLLER.with(Cell::get) != id {
        return false;
    }
    LOCAL_QUEUE.with(|q| q.borrow_mut().push_back(item));
    true
}

/// Runs `f` when the calling poller thread's loop exits (after it stopped dispatching, before
/// the thread's locals are destroyed). False, and `f` is dropped, off a poller thread.
pub(crate) fn at_poller_exit(f: impl FnOnce() + 'static) -> bool {
    if current_poller_id().is_none() {
        return false;
    }
    AT_EXIT.with(|hooks| hooks.borrow_mut().push(Box::new(f)));
    true
}

/// One event loop on its own thread. Cheap to share as `Arc<Poller>`; dropping the last handle
/// closes it.
pub struct Poller {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    id: usize,
    selector: Selector,
    trigger_fd: EventFd,
    /// Set by the first `trigger()` since the poller last drained the eventfd; later triggers
    /// see it set and skip the write.
    triggered: TriggerFlag,
    table: Mutex<Slab>,
    tasks: Mutex<Vec<Task>>,
    /// The run queue's remote half: pushes from other threads, moved to the local queue when
    /// the loop wakes.
    remote: Mutex<Vec<Runnable>>,
    timers: Mutex<Timers>,
    closing: AtomicBool,
    /// Retired by its manager: close once the last registration is detached.
    retired: AtomicBool,
    stopped: Mutex<bool>,
    stopped_cv: Condvar,
    thread_id: Mutex<Option<ThreadId>>,
    stats: Counters,
}

#[derive(Default)]
struct Counters {
    waits: AtomicU64,
    wakes: AtomicU64,
    trigger_writes: AtomicU64,
    events: AtomicU64,
    capacity: AtomicUsize,
}

/// Counters of one poller, for tests and diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PollerStats {
    /// `epoll_wait` calls that returned.
    pub waits: u64,
    /// Times the loop found its eventfd triggered and drained it.
    pub wakes: u64,
    /// Times `trigger()` actually wrote the eventfd (the rest were coalesced).
    pub trigger_writes: u64,
    /// Events delivered to owners (`on_ready` plus `on_hangup` calls).
    pub events: u64,
    /// Current size of the event array.
    pub event_capacity: usize,
    /// Registrations currently attached.
    pub registrations: usize,
    /// Timers scheduled and neither run nor cancelled.
    pub timers: usize,
}

static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

impl Poller {
    /// Opens an epoll instance and an eventfd and starts the loop thread.
    pub fn new() -> io::Result<Arc<Poller>> {
        let shared = Arc::new(Shared {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            selector: Selector::new()?,
            trigger_fd: EventFd::new()?,
            triggered: TriggerFlag::new(),
            table: Mutex::new(Slab::default()),
            tasks: Mutex::new(Vec::new()),
            remote: Mutex::new(Vec::new()),
            timers: Mutex::new(Timers::default()),
            closing: AtomicBool::new(false),
            retired: AtomicBool::new(false),
            stopped: Mutex::new(false),
            stopped_cv: Condvar::new(),
            thread_id: Mutex::new(None),
            stats: Counters {
                capacity: AtomicUsize::new(INITIAL_EVENTS),
                ..Counters::default()
            },
        });
        let trigger = Interest {
            readable: true,
            writable: false,
            edge: false,
        };
        use std::os::fd::AsRawFd;
        shared
            .selector
            .register(shared.trigger_fd.as_raw_fd(), TRIGGER_TOKEN, trigger)?;
        let loop_shared = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name(format!("netpoll-poller-{}", shared.id))
            .spawn(move || run(loop_shared))?;
        *lock(&shared.thread_id) = Some(thread.thread().id());
        Ok(Arc::new(Poller {
            shared,
            thread: Mutex::new(Some(thread)),
        }))
    }

    /// True when called from this poller's own thread (inside a handler, task or timer).
    pub(crate) fn is_current_thread(&self) -> bool {
        self.shared.on_poller_thread()
    }

    /// A process-unique id of this poller.
    pub fn id(&self) -> usize {
        self.shared.id
    }

    /// Wakes the loop if it is blocked in `epoll_wait`. Only the first trigger since the loop
    /// last woke writes the eventfd; the rest coalesce into that one wake.
    pub fn trigger(&self) -> io::Result<()> {
        self.shared.trigger()
    }

    /// Runs `task` on the poller thread soon (after the current batch, or after a wake). Once
    /// the poller has begun to close it is refused (the closed error, `task` dropped); a task
    /// queued before that runs, at the latest as the loop exits.
    pub fn execute(&self, task: impl FnOnce() + Send + 'static) -> io::Result<()> {
        if self.shared.closing.load(Ordering::Acquire) {
            return Err(closed_error());
        }
        #[cfg(all(test, not(loom)))]
        tests::between_check_and_push();
        {
            // Checked again under the lock: the loop's last drain takes it after `closing` is
            // set, so a task pushed here is either seen by that drain or refused.
            let mut tasks = lock(&self.shared.tasks);
            if self.shared.closing.load(Ordering::Acquire) {
                drop(tasks);
                return Err(closed_error());
            }
            tasks.push(Box::new(task));
        }
        self.shared.trigger()
    }

    /// A handle on this poller's run queue that does not keep the poller alive
    /// ([`RunQueue::run_soon`] queues an item).
    pub(crate) fn run_queue(&self) -> RunQueue {
        RunQueue {
            shared: Arc::downgrade(&self.shared),
        }
    }

    /// Runs `task` on the poller thread at `deadline` (or soon after, at millisecond
    /// resolution). The key cancels it ([`cancel`](Self::cancel)); a task whose reason went away
    /// may also just check and do nothing. Dropped unrun if the poller closes first.
    pub fn schedule(
        &self,
        deadline: Instant,
        task: impl FnOnce() + Send + 'static,
    ) -> io::Result<TimerKey> {
        let (key, earliest) = {
            // Checked under the lock, as in `execute`: no timer is added after the last clear
            // (it would sit, with its closure, in the dead poller until the last handle goes).
            let mut timers = lock(&self.shared.timers);
            if self.shared.closing.load(Ordering::Acquire) {
                drop(timers);
                return Err(closed_error());
            }
            timers.push(deadline, Box::new(task))
        };
        // The loop computes its wait from the earliest timer before sleeping; a new earliest
        // timer from another thread must wake it to recompute.
        if earliest && !self.shared.on_poller_thread() {
            self.shared.trigger()?;
        }
        Ok(key)
    }

    /// Cancels a timer of this poller that has not started to run: its task is dropped now and
    /// never runs. False if it already ran (or is running), was cancelled, or the poller closed.
    /// A cancelled earliest timer may still wake the loop once, early; it then finds nothing.
    pub fn cancel(&self, key: TimerKey) -> bool {
        lock(&self.shared.timers).cancel(key)
    }

    /// Changes what the kernel reports for `registration`; see [`PollEvent`] for each operation.
    ///
    /// `Readable` and `Writable` attach an unattached registration to this poller; the others
    /// need it attached here. Errors: `InvalidInput` when the registration is attached elsewhere
    /// (or not at all, for the modifying events), the poller's closed error once it has closed,
    /// and whatever `epoll_ctl` reports.
    pub fn control(&self, registration: &Registration, event: PollEvent) -> io::Result<()> {
        self.shared.control(&registration.inner, event)
    }

    /// Attaches `registration` edge-triggered for input and output at once: one readiness edge
    /// per change, for owners that read and write until `EAGAIN` (the Go-net face).
    pub(crate) fn attach_edge(&self, registration: &Registration) -> io::Result<()> {
        self.shared
            .attach(&registration.inner, Interest::READ_WRITE_EDGE)
    }

    /// Sets the interest of an attached registration directly (level-triggered); used to stop
    /// reading a connection whose input is full, and to rest a listener after `EMFILE`.
    pub(crate) fn set_interest(
        &self,
        registration: &Registration,
        readable: bool,
        writable: bool,
    ) -> io::Result<()> {
        let interest = Interest {
            readable,
            writable,
            edge: false,
        };
        self.shared.modify(&registration.inner, interest)
    }

    /// Stops the loop and joins its thread. Idempotent. Called from the poller's own thread (a
    /// handler) it only asks the loop to stop. Registrations still attached are detached; their
    /// owners get one last call, [`EventHandler::on_poller_closed`](super::EventHandler), and
    /// nothing after it; their fds remain their owners' to close. Tasks queued before the close
    /// began still run as the loop exits; timers are dropped unrun.
    pub fn close(&self) {
        self.shared.begin_close();
        if self.shared.on_poller_thread() {
            return;
        }
        if let Some(thread) = lock(&self.thread).take() {
            // A panic on the poller thread was already reported by the panic hook; the loop is
            // gone either way.
            let _ = thread.join();
        }
    }

    /// True once `close` has begun (the loop may still be finishing its last iteration).
    pub(crate) fn is_closing(&self) -> bool {
        self.shared.closing.load(Ordering::Acquire)
    }

    /// True once the loop has exited.
    pub fn is_closed(&self) -> bool {
        *lock(&self.shared.stopped)
    }

    /// Waits up to `timeout` for the loop to exit; true if it has.
    pub fn wait_closed(&self, timeout: std::time::Duration) -> bool {
        let stopped = lock(&self.shared.stopped);
        let (stopped, _) = self
            .shared
            .stopped_cv
            .wait_timeout_while(stopped, timeout, |stopped| !*stopped)
            .unwrap_or_else(|e| e.into_inner());
        *stopped
    }

    /// The number of registrations attached to this poller.
    pub fn registrations(&self) -> usize {
        lock(&self.shared.table).live()
    }

    /// A snapshot of this poller's counters.
    pub fn stats(&self) -> PollerStats {
        let c = &self.shared.stats;
        PollerStats {
            waits: c.waits.load(Ordering::Relaxed),
            wakes: c.wakes.load(Ordering::Relaxed),
            trigger_writes: c.trigger_writes.load(Ordering::Relaxed),
            events: c.events.load(Ordering::Relaxed),
            event_capacity: c.capacity.load(Ordering::Relaxed),
            registrations: self.registrations(),
            timers: lock(&self.shared.timers).len(),
        }
    }

    /// Marks the poller as leaving its manager: it closes itself once no registration is left.
    pub(crate) fn retire(&self) {
        self.shared.retired.store(true, Ordering::Release);
        if self.registrations() == 0 {
            self.shared.begin_close();
        }
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.close();
    }
}

impl std::fmt::Debug for Poller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poller")
            .field("id", &self.shared.id)
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// The trigger's coalescing flag: only the first trigger since the loop last drained the
/// eventfd writes it. Its own type (with `crate::loom`'s atomic) so loom checks this code
/// (`loom_tests` below).
struct TriggerFlag(crate::loom::AtomicU32);

impl TriggerFlag {
    fn new() -> TriggerFlag {
        TriggerFlag(crate::loom::AtomicU32::new(0))
    }

    /// A trigger: true if the caller must write the eventfd (the loop may be asleep and no
    /// write is pending since it last woke); false if one is, and will wake it.
    fn arm(&self) -> bool {
        self.0.swap(1, Ordering::AcqRel) == 0
    }

    /// The loop woke and drained the eventfd: the next trigger writes again. Called after the
    /// drain and before the loop looks at the queues.
    fn rearm(&self) {
        self.0.store(0, Ordering::Release);
    }
}

/// A weak handle on a poller's run queue, for wakes from any thread (the scheduler's registry
/// holds these). It never keeps the poller alive, so a wake is never the one that drops the
/// last `Arc<Poller>`: that would close the poller and join its thread inside whatever called
/// the wake (a destructor, a lock release), running the poller's whole teardown there.
#[derive(Clone)]
pub(crate) struct RunQueue {
    shared: std::sync::Weak<Shared>,
}

impl RunQueue {
    /// Queues `item` on the poller's run queue. On the poller's own thread it is a push onto a
    /// thread-local queue (no lock, no syscall); from any other thread a push onto the remote
    /// queue and a (coalesced) trigger. The closed error once the poller closes (items queued
    /// before are dropped unrun if it closes first).
    pub(crate) fn run_soon(&self, item: Runnable) -> io::Result<()> {
        match self.shared.upgrade() {
            Some(shared) => shared.run_soon(item),
            None => Err(closed_error()),
        }
    }
}

impl Shared {
    fn run_soon(&self, item: Runnable) -> io::Result<()> {
        if push_local(self.id, item) {
            return Ok(());
        }
        {
            // Checked under the lock, as in `execute`: nothing is pushed after the last clear.
            let mut remote = lock(&self.remote);
            if self.closing.load(Ordering::Acquire) {
                return Err(closed_error());
            }
            remote.push(item);
        }
        self.trigger()
    }

    fn trigger(&self) -> io::Result<()> {
        if !self.triggered.arm() {
            return Ok(());
        }
        self.stats.trigger_writes.fetch_add(1, Ordering::Relaxed);
        self.trigger_fd.notify()
    }

    fn begin_close(&self) {
        if !self.closing.swap(true, Ordering::AcqRel) {
            // Bypass coalescing: the loop must see this wake even if a trigger is pending.
            let _ = self.trigger_fd.notify();
        }
    }

    /// A thread-local read (the loop publishes its id while it runs): this is on every
    /// handler's hot path, where a lock and a `thread::current()` would cost.
    fn on_poller_thread(&self) -> bool {
        current_poller_id() == Some(self.id)
    }

    fn control(&self, reg: &Arc<RegistrationInner>, event: PollEvent) -> io::Result<()> {
        let (interest, attach) = match event {
            PollEvent::Readable => (Interest::READ, true),
            PollEvent::Writable => (Interest::WRITE_EDGE, true),
            PollEvent::ModReadable | PollEvent::RW2R => (Interest::READ, false),
            PollEvent::R2RW => (Interest::READ_WRITE, false),
            PollEvent::Detach => return self.detach(reg, None).map(|_| ()),
        };
        if attach {
            self.attach(reg, interest)
        } else {
            self.modify(reg, interest)
        }
    }

    fn attach(&self, reg: &Arc<RegistrationInner>, interest: Interest) -> io::Result<()> {
        // Attach and detach change the table and the kernel together, under the table lock, so
        // an event can never name a token the table has not seen.
        let mut table = lock(&self.table);
        if self.closing.load(Ordering::Acquire) {
            return Err(closed_error());
        }
        if reg.token.load(Ordering::Acquire) != 0 {
            return Err(invalid("registration is already attached to a poller"));
        }
        let token = table.insert(Arc::clone(reg));
        if let Err(e) = self.selector.register(reg.fd, token, interest) {
            table.remove(token);
            return Err(e);
        }
        reg.poller_id.store(self.id, Ordering::Relaxed);
        reg.token.store(token, Ordering::Release);
        Ok(())
    }

    fn modify(&self, reg: &Arc<RegistrationInner>, interest: Interest) -> io::Result<()> {
        let current = reg.token.load(Ordering::Acquire);
        if current == 0 || reg.poller_id.load(Ordering::Relaxed) != self.id {
            return Err(invalid("registration is not attached to this poller"));
        }
        self.selector.reregister(reg.fd, current, interest)
    }

    /// Detaches `reg` if it is attached here (and, when `expected` is given, still under that
    /// token). Returns whether it was attached.
    fn detach(&self, reg: &Arc<RegistrationInner>, expected: Option<u64>) -> io::Result<bool> {
        let mut table = lock(&self.table);
        let current = reg.token.load(Ordering::Acquire);
        if current == 0 || reg.poller_id.load(Ordering::Relaxed) != self.id {
            return match expected {
                Some(_) => Ok(false),
                None => Err(invalid("registration is not attached to this poller")),
            };
        }
        if expected.is_some_and(|t| t != current) {
            return Ok(false);
        }
        reg.token.store(0, Ordering::Release);
        table.remove(current);
        let result = self.selector.deregister(reg.fd);
        let last = table.live() == 0;
        drop(table);
        if last && self.retired.load(Ordering::Acquire) {
            self.begin_close();
        }
        // ENOENT/EBADF: the owner closed the fd before detaching; the kernel already forgot it.
        match result {
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EBADF)) => Ok(true),
            Err(e) => Err(e),
            Ok(()) => Ok(true),
        }
    }

    fn run_tasks(&self) {
        let tasks = std::mem::take(&mut *lock(&self.tasks));
        for task in tasks {
            // As with handlers, a panicking task was reported by the hook and must not stop
            // the loop.
            let _ = panic::catch_unwind(AssertUnwindSafe(task));
        }
    }
}

impl Interest {
    const READ: Interest = Interest {
        readable: true,
        writable: false,
        edge: false,
    };
    const READ_WRITE: Interest = Interest {
        readable: true,
        writable: true,
        edge: false,
    };
    const WRITE_EDGE: Interest = Interest {
        readable: false,
        writable: true,
        edge: true,
    };
    const READ_WRITE_EDGE: Interest = Interest {
        readable: true,
        writable: true,
        edge: true,
    };
}

/// The loop thread.
fn run(shared: Arc<Shared>) {
    let mut events = Events::with_capacity(INITIAL_EVENTS);
    let mut batch: Vec<(Arc<RegistrationInner>, u64, Ready)> = Vec::new();
    let mut hangups: Vec<(Arc<RegistrationInner>, u64, Ready)> = Vec::new();
    let mut due: Vec<TimerTask> = Vec::new();
    LOCAL_POLLER.with(|id| id.set(shared.id));
    while !shared.closing.load(Ordering::Acquire) {
        let timeout = if LOCAL_QUEUE.with(|q| !q.borrow().is_empty()) {
            Some(Duration::ZERO)
        } else {
            lock(&shared.timers)
                .next_deadline()
                .map(|deadline| deadline.saturating_duration_since(Instant::now()))
        };
        if let Err(e) = shared.selector.select(&mut events, timeout) {
            // epoll_wait fails only on a broken epoll fd or bad arguments: nothing to recover.
            log::error!("netpoll: poller {} stopped: epoll_wait: {e}", shared.id);
            break;
        }
        shared.stats.waits.fetch_add(1, Ordering::Relaxed);

        let mut triggered = false;
        {
            let table = lock(&shared.table);
            for (token, ready) in events.iter() {
                if token == TRIGGER_TOKEN {
                    triggered = true;
                } else if let Some(reg) = table.get(token) {
                    batch.push((Arc::clone(reg), token, ready));
                }
            }
        }

        for (reg, token, ready) in batch.drain(..) {
            // An earlier handler of this batch may have detached it; then the event is stale.
            if reg.token.load(Ordering::Acquire) != token {
                continue;
            }
            if ready.is_hangup_or_error() && reg.detach_on_hangup {
                hangups.push((Arc::clone(&reg), token, ready));
            }
            if let Some(handler) = reg.handler.upgrade() {
                shared.stats.events.fetch_add(1, Ordering::Relaxed);
                // A panicking owner must not take every other fd of this poller down with it:
                // the panic hook has reported it; cut the owner off and carry on.
                let call = AssertUnwindSafe(|| handler.on_ready(ready));
                if panic::catch_unwind(call).is_err() {
                    let _ = shared.detach(&reg, Some(token));
                }
            }
        }

        for (reg, token, ready) in hangups.drain(..) {
            if matches!(shared.detach(&reg, Some(token)), Ok(true)) {
                if let Some(handler) = reg.handler.upgrade() {
                    shared.stats.events.fetch_add(1, Ordering::Relaxed);
                    let _ = panic::catch_unwind(AssertUnwindSafe(|| handler.on_hangup(ready)));
                }
            }
        }

        if triggered {
            // Drain first, then clear the flag: a trigger racing in between sees the flag still
            // set and skips its write, but its task is queued before the flag is cleared, so the
            // run_tasks below sees it. A trigger after the clear writes and wakes the next wait.
            let _ = shared.trigger_fd.drain();
            shared.triggered.rearm();
            shared.stats.wakes.fetch_add(1, Ordering::Relaxed);
            shared.run_tasks();
            let remote = std::mem::take(&mut *lock(&shared.remote));
            LOCAL_QUEUE.with(|q| q.borrow_mut().extend(remote));
        }

        lock(&shared.timers).expired(Instant::now(), &mut due);
        for task in due.drain(..) {
            let _ = panic::catch_unwind(AssertUnwindSafe(task));
        }

        run_queue();

        if events.len() == events.capacity() && events.capacity() < MAX_EVENTS {
            events.resize(events.capacity() * 2);
            shared
                .stats
                .capacity
                .store(events.capacity(), Ordering::Relaxed);
        }
    }

    EXITING.with(|e| e.set(true));
    // Closing: forget every registration so no further callback can run, then tell each owner
    // (the Go-net face's descriptors fail their waiters with the closed error: no event will
    // ever wake them now), then run the tasks queued before the close began (`execute`
    // refuses any after it), and drop the timers.
    let orphans: Vec<_> = lock(&shared.table).drain().collect();
    for reg in &orphans {
        reg.token.store(0, Ordering::Release);
    }
    for reg in orphans {
        if let Some(handler) = reg.handler.upgrade() {
            let _ = panic::catch_unwind(AssertUnwindSafe(|| handler.on_poller_closed()));
        }
    }
    shared.run_tasks();
    // Dropped outside the lock: a timer's closure may own something whose drop cancels a timer.
    let timers = std::mem::take(&mut *lock(&shared.timers));
    drop(timers);
    // The layer above tears down what it keeps on this thread (its hooks may still queue work,
    // which is then dropped).
    let hooks = AT_EXIT.with(|hooks| std::mem::take(&mut *hooks.borrow_mut()));
    for hook in hooks {
        let _ = panic::catch_unwind(AssertUnwindSafe(hook));
    }
    LOCAL_QUEUE.with(|q| q.borrow_mut().clear());
    lock(&shared.remote).clear();
    LOCAL_POLLER.with(|id| id.set(0));
    EXITING.with(|e| e.set(false));
    *lock(&shared.stopped) = true;
    shared.stopped_cv.notify_all();
}

/// Drains the run queue: what was queued when it began, at most `RUN_BUDGET` items. Items
/// queued meanwhile run next iteration (a coroutine that yields lets I/O in first).
fn run_queue() {
    let queued = LOCAL_QUEUE.with(|q| q.borrow().len()).min(RUN_BUDGET);
    for _ in 0..queued {
        // The borrow ends before the item runs: it may push more.
        let Some(item) = LOCAL_QUEUE.with(|q| q.borrow_mut().pop_front()) else {
            break;
        };
        let _ = panic::catch_unwind(AssertUnwindSafe(|| (item.run)(item.arg)));
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The poller's locks guard plain data that no panic leaves half-updated.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn closed_error() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "poller is closed")
}

fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    thread_local! {
        /// Runs inside `execute` on this thread, after its `closing` check, before it queues.
        static HOOK: RefCell<Option<Box<dyn FnOnce()>>> = const { RefCell::new(None) };
    }

    pub(super) fn between_check_and_push() {
        if let Some(hook) = HOOK.with(|h| h.borrow_mut().take()) {
            hook();
        }
    }

    /// Sets its flag when dropped: a task that ran or was dropped, not one left queued.
    struct Gone(Arc<AtomicBool>);

    impl Drop for Gone {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// The race of `execute` with close, forced: the close runs to the end (the loop exits,
    /// past its last drain of the task queue) between `execute`'s `closing` check and its push.
    /// The task must then be refused, or run, or dropped: never left in the dead poller's queue
    /// (where it would wait, a coroutine's `JoinHandle` with it, for the last `Arc<Poller>`).
    #[test]
    fn a_task_queued_as_the_poller_closes_is_refused_or_run_never_left() {
        let poller = Poller::new().unwrap();
        {
            let poller = poller.clone();
            HOOK.with(|h| {
                *h.borrow_mut() = Some(Box::new(move || {
                    poller.shared.begin_close();
                    assert!(poller.wait_closed(Duration::from_secs(20)));
                }))
            });
        }
        let gone = Arc::new(AtomicBool::new(false));
        let task = Gone(gone.clone());
        let result = poller.execute(move || drop(task));
        assert!(
            result.is_err() || gone.load(Ordering::SeqCst),
            "{result:?}: left queued"
        );
        assert!(
            gone.load(Ordering::SeqCst),
            "a refused task is dropped at once"
        );
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! The trigger under loom: `RUSTFLAGS="--cfg loom" cargo test --release --lib loom_tests`.
    //!
    //! `TriggerFlag` is the real code. The eventfd is modelled by a counter and a `Condvar`
    //! (`notify` adds one and wakes a sleeper, the loop's `epoll_wait` sleeps while it is 0,
    //! `drain` zeroes it), and the remote push (`Shared::run_soon`) and the loop's wake (`run`)
    //! are replayed in their order: push under the lock then trigger; drain, rearm, then take
    //! the remote queue.
    use super::TriggerFlag;
    use loom::sync::{Arc, Condvar, Mutex};
    use loom::thread;

    #[derive(Default)]
    struct EventFd {
        count: Mutex<u64>,
        readable: Condvar,
    }

    impl EventFd {
        fn notify(&self) {
            *self.count.lock().unwrap() += 1;
            self.readable.notify_one();
        }

        /// `epoll_wait` with no timeout, on the trigger alone.
        fn wait_readable(&self) {
            let mut count = self.count.lock().unwrap();
            while *count == 0 {
                count = self.readable.wait(count).unwrap();
            }
        }

        fn drain(&self) {
            *self.count.lock().unwrap() = 0;
        }
    }

    struct Shared {
        trigger_fd: EventFd,
        triggered: TriggerFlag,
        remote: Mutex<Vec<u32>>,
    }

    impl Shared {
        /// `Shared::run_soon` off the poller thread, then `Shared::trigger`.
        fn run_soon(&self, item: u32) {
            self.remote.lock().unwrap().push(item);
            if self.triggered.arm() {
                self.trigger_fd.notify();
            }
        }
    }

    /// Two remote wakes (a coroutine's `CoHandle::wake`, a task's waker from another thread:
    /// both are `run_soon` pushes) race the loop going back to sleep with an empty run queue:
    /// a push whose trigger coalesced into a pending one is seen by the wake that pending one
    /// causes, so the loop never sleeps with an item queued (loom fails a model whose threads
    /// all block), and every item runs once.
    #[test]
    fn a_remote_wake_racing_the_poller_going_to_sleep_is_never_lost() {
        loom::model(|| {
            let shared = Arc::new(Shared {
                trigger_fd: EventFd::default(),
                triggered: TriggerFlag::new(),
                remote: Mutex::new(Vec::new()),
            });
            let wakers: Vec<_> = [1, 2]
                .into_iter()
                .map(|item| {
                    let shared = shared.clone();
                    thread::spawn(move || shared.run_soon(item))
                })
                .collect();
            let mut ran = Vec::new();
            while ran.len() < 2 {
                // The local queue is empty: the loop sleeps in epoll_wait.
                shared.trigger_fd.wait_readable();
                shared.trigger_fd.drain();
                shared.triggered.rearm();
                ran.extend(std::mem::take(&mut *shared.remote.lock().unwrap()));
            }
            ran.sort_unstable();
            assert_eq!(ran, [1, 2]);
            for waker in wakers {
                waker.join().unwrap();
            }
        });
    }

    /// `closing` against `Poller::execute`: a task queued from another thread as the poller
    /// closes is refused (`execute` saw `closing`, before or under the lock) or run by the
    /// loop's last `run_tasks`, which takes the lock after `closing` was set: never accepted and
    /// then dropped unrun. (`closing` is a plain field of `Shared`, replayed here.)
    #[test]
    fn a_task_queued_as_the_poller_closes_is_run_or_refused() {
        use loom::sync::atomic::AtomicBool;
        use std::sync::atomic::Ordering::{AcqRel, Acquire};
        loom::model(|| {
            let closing = Arc::new(AtomicBool::new(false));
            let tasks = Arc::new(Mutex::new(Vec::new()));
            let submitter = {
                let (closing, tasks) = (closing.clone(), tasks.clone());
                thread::spawn(move || {
                    // `execute`: checked before, and again under the lock.
                    if closing.load(Acquire) {
                        return false;
                    }
                    let mut tasks = tasks.lock().unwrap();
                    if closing.load(Acquire) {
                        return false;
                    }
                    tasks.push(1);
                    true
                })
            };
            // `begin_close`, then the loop exits and runs what was queued (`run_tasks`).
            closing.swap(true, AcqRel);
            let ran = std::mem::take(&mut *tasks.lock().unwrap());
            let accepted = submitter.join().unwrap();
            assert_eq!(ran.len(), usize::from(accepted), "accepted and never run");
        });
    }
}
