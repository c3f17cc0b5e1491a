//! `Connection`: a socket registered on a poller, with input and output `LinkBuffer`s.
//!
//! Who does what:
//! - the **poller thread** reads into the input buffer (`readv` straight into booked blocks),
//!   sends the output buffer while a flush waits for room, and reports hang-ups;
//! - the **handler task** (a coroutine on the connection's poller by default, a handler pool
//!   thread, or inline on the poller) runs `on_connect` and `on_request`, at most one at a time
//!   per connection;
//! - **any thread** may read (waiting for bytes), write and flush, and close.
//!
//! The flags they race on live in one state word (`state`); the byte counters `arrived` and
//! `consumed` tell the handler task whether a call made progress, so a handler that leaves a
//! partial frame is not called again until more input arrives.

mod io;
mod process;
mod reader;
pub(crate) mod state;
mod writer;

use std::fmt;
use std::io::{Error, ErrorKind, Result};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use socket2::Socket;

pub use reader::ConnReader;
pub use writer::ConnWriter;

use crate::buffer::LinkBuffer;
use crate::poll::{EventHandler, PollEvent, Poller, Registration, TimerKey};
use crate::reactor::runner::HandlerPool;
use crate::rt::wait::{Queue, WaitSet};
use crate::transport::addr::Addr;
use state::*;

/// Default cap on unread input per connection: past it the poller stops reading the socket until
/// the handler consumes (a single `next(n)` larger than this still gets its n bytes).
pub const DEFAULT_INPUT_CAP: usize = 1 << 20;
/// Default cap on unsent output per connection: writes past it wait for the peer to read,
/// bounded by the write timeout.
pub const DEFAULT_OUTPUT_CAP: usize = 4 << 20;

/// The handler for input on a connection. Returning an error closes the connection.
pub type OnRequest = Arc<dyn Fn(&Connection) -> Result<()> + Send + Sync>;
type OnceCallback = Box<dyn FnOnce(&Connection) + Send>;

/// A TCP or Unix-socket connection driven by a poller. Cheap to clone; clones share the
/// connection.
///
/// Reading waits: [`ConnReader::next`] returns once n bytes arrived, the read timeout passed
/// (`TimedOut`), or the connection closed (`UnexpectedEof` when the peer finished,
/// `NotConnected` when it was closed here). Writing buffers until [`Connection::flush`].
///
/// Servers get theirs in the [`EventLoop`](crate::EventLoop) callbacks; clients dial one. Here
/// a client talks to a std peer, then closes:
///
/// ```
/// use std::io::{Read, Write};
/// use std::sync::mpsc;
/// use std::time::Duration;
///
/// let server = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let address = server.local_addr()?.to_string();
/// let conn = netpoll::dial_connection("tcp", &address, Some(Duration::from_secs(5)))?;
/// let (mut peer, _) = server.accept()?;
/// peer.set_read_timeout(Some(Duration::from_secs(5)))?;
/// conn.set_read_timeout(Some(Duration::from_secs(5))); // bounds every waiting read
///
/// let mut writer = conn.writer();
/// writer.write_string("ping")?;
/// writer.flush()?; // sent now
/// drop(writer);
/// let mut buf = [0u8; 4];
/// peer.read_exact(&mut buf)?;
/// peer.write_all(b"pong")?;
/// assert_eq!(&conn.reader().next(4)?[..], b"pong"); // waits for the 4 bytes
///
/// let (tx, closed) = mpsc::channel();
/// conn.add_close_callback(move |_conn| tx.send(()).unwrap()); // runs once, after close
/// let handle = conn.clone(); // clones share the connection
/// handle.close();
/// assert!(!conn.is_active());
/// closed.recv_timeout(Duration::from_secs(5)).unwrap();
/// assert_eq!(peer.read(&mut buf)?, 0); // the peer sees end of stream
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct Connection {
    pub(crate) inner: Arc<ConnInner>,
}

/// Where handler tasks run.
#[derive(Clone, Debug)]
pub(crate) enum Executor {
    /// In a coroutine on the connection's poller, created when input arrives and gone when the
    /// handler returns (an idle connection holds no stack): a read or flush that must wait
    /// suspends it, and the poller serves its other connections meanwhile.
    Coroutine,
    /// On a handler pool thread.
    Pool(HandlerPool),
    /// On the poller thread itself: for handlers that never block.
    Inline,
}

/// Per-connection settings fixed at creation.
#[derive(Clone, Debug)]
pub(crate) struct ConnOptions {
    pub(crate) executor: Executor,
    pub(crate) input_cap: usize,
    pub(crate) output_cap: usize,
    pub(crate) read_timeout: Option<Duration>,
    pub(crate) write_timeout: Option<Duration>,
    pub(crate) idle_timeout: Option<Duration>,
}

impl Default for ConnOptions {
    fn default() -> ConnOptions {
        ConnOptions {
            executor: Executor::Coroutine,
            input_cap: DEFAULT_INPUT_CAP,
            output_cap: DEFAULT_OUTPUT_CAP,
            read_timeout: None,
            write_timeout: None,
            idle_timeout: None,
        }
    }
}

pub(crate) struct ConnInner {
    /// Itself, for callbacks that get `&self` from the poller but must hand out an `Arc`.
    this: std::sync::Weak<ConnInner>,
    socket: Socket,
    registration: Registration,
    poller: Arc<Poller>,
    executor: Executor,
    state: State,
    /// Known at creation for accepted sockets; set once connected for dialed ones.
    local_addr: OnceLock<Addr>,
    peer_addr: Addr,

    input: LinkBuffer,
    output: LinkBuffer,
    /// Serialises senders of the output buffer: a flushing user or the poller.
    send_lock: Mutex<()>,
    /// Serialises epoll interest changes so the kernel sees the latest flags.
    interest_lock: Mutex<()>,

    /// Bytes the poller has published to `input`, ever.
    arrived: AtomicU64,
    /// Bytes readers have taken from `input`, ever.
    consumed: AtomicU64,
    /// Bytes a waiting reader needs buffered; 0 when no reader waits.
    wait_size: AtomicUsize,
    /// Bytes an inline handler asked for and did not get (it returned `WouldBlock`); raises the
    /// input cap like `wait_size`, but nobody waits, so arrivals schedule the handler.
    inline_want: AtomicUsize,
    /// Readers waiting for input, flushers waiting for room (threads or coroutines), and the
    /// gates that serialise `reader()` and `writer()` guards: held across waits, so they must
    /// suspend a waiting coroutine rather than block its poller (the buffer's own side locks
    /// are then never contended). Queues: [`READ_WAIT`], [`WRITE_WAIT_Q`], [`READER_GATE`],
    /// [`WRITER_GATE`].
    pub(crate) waiters: Mutex<WaitSet>,

    input_cap: usize,
    output_cap: usize,
    read_timeout_ms: AtomicU64,
    write_timeout_ms: AtomicU64,
    idle_timeout_ms: AtomicU64,
    /// Milliseconds since `epoch()` of the last byte read or written.
    last_active: AtomicU64,
    /// Bumped by every `set_idle_timeout`, so an older idle timer chain stops.
    idle_seq: AtomicU32,
    /// The pending idle timer, cancelled when `set_idle_timeout` starts a new chain (a caller
    /// resetting it per request would otherwise leave one timer per call until it fired).
    idle_timer: Mutex<Option<TimerKey>>,
    /// Inline handlers: `now_ms()` (at least 1) when the handler last began waiting for the
    /// rest of a frame, 0 while it waits for nothing. The read timeout bounds that wait.
    partial_since: AtomicU64,
    /// `consumed` when `partial_since` was set: a handler that consumed since made progress.
    partial_consumed: AtomicU64,
    /// A partial-frame timer is pending (one at a time per connection).
    partial_timer: AtomicBool,
    /// Bytes handed to the kernel, ever (written under `send_lock`): the write timeout of
    /// output no flush waits for (an inline handler's) watches it move.
    sent: AtomicU64,
    /// That write timer is pending (one at a time per connection).
    write_timer: AtomicBool,

    callbacks: Mutex<Callbacks>,
    close_reason: OnceLock<ErrorKind>,
}

/// Readers waiting for `wait_size` bytes.
pub(crate) const READ_WAIT: Queue = 0;
/// Flushes waiting for the output to drain.
pub(crate) const WRITE_WAIT_Q: Queue = 1;
/// The gate of `reader()` guards.
pub(crate) const READER_GATE: Queue = 2;
/// The gate of `writer()` guards.
pub(crate) const WRITER_GATE: Queue = 3;

#[derive(Default)]
struct Callbacks {
    /// Set by `set_on_request` (a dialed connection's handler).
    on_request: Option<OnRequest>,
    /// A server's callbacks and this connection's context, in one allocation.
    hooks: Option<Arc<dyn ConnHooks>>,
    on_close: Vec<OnceCallback>,
}

/// What a server attaches to each accepted connection: its callbacks with the connection's
/// context. One object per connection keeps an idle connection small.
pub(crate) trait ConnHooks: Send + Sync {
    /// False if the server has no `on_request` (input then just accumulates, up to the cap).
    fn has_on_request(&self) -> bool;
    fn on_request(&self, conn: &Connection) -> Result<()>;
    fn on_connect(&self, conn: &Connection);
    /// False if the server has no `on_disconnect` (so none is scheduled).
    fn has_on_disconnect(&self) -> bool;
    fn on_disconnect(&self, conn: &Connection);
    /// Runs with the close callbacks, once.
    fn on_close(&self, conn: &Connection);
}

/// The handler `on_request` calls resolve to.
#[derive(Clone)]
pub(crate) enum RequestHandler {
    Closure(OnRequest),
    Hooks(Arc<dyn ConnHooks>),
}

impl RequestHandler {
    pub(crate) fn call(&self, conn: &Connection) -> Result<()> {
        match self {
            RequestHandler::Closure(f) => f(conn),
            RequestHandler::Hooks(h) => h.on_request(conn),
        }
    }
}

impl Connection {
    /// Wraps a connected non-blocking socket; not yet registered.
    pub(crate) fn new(
        socket: Socket,
        poller: Arc<Poller>,
        local_addr: Option<Addr>,
        peer_addr: Addr,
        options: &ConnOptions,
        initial_state: u32,
    ) -> Connection {
        let fd = socket.as_raw_fd();
        let inner = Arc::new_cyclic(|weak: &std::sync::Weak<ConnInner>| {
            let handler: std::sync::Weak<dyn EventHandler> = weak.clone();
            ConnInner {
                this: weak.clone(),
                socket,
                // Persistent: the peer's half-close must not take the socket off the poller,
                // since queued output still has to go out (see `io.rs`).
                registration: Registration::persistent(fd, handler),
                poller,
                executor: options.executor.clone(),
                state: State::new(initial_state),
                local_addr: local_addr.map(OnceLock::from).unwrap_or_default(),
                peer_addr,
                input: LinkBuffer::new(),
                output: LinkBuffer::new(),
                send_lock: Mutex::new(()),
                interest_lock: Mutex::new(()),
                arrived: AtomicU64::new(0),
                consumed: AtomicU64::new(0),
                wait_size: AtomicUsize::new(0),
                inline_want: AtomicUsize::new(0),
                waiters: Mutex::new(WaitSet::default()),
                input_cap: options.input_cap,
                output_cap: options.output_cap,
                read_timeout_ms: AtomicU64::new(to_ms(options.read_timeout)),
                write_timeout_ms: AtomicU64::new(to_ms(options.write_timeout)),
                idle_timeout_ms: AtomicU64::new(to_ms(options.idle_timeout)),
                last_active: AtomicU64::new(now_ms()),
                idle_seq: AtomicU32::new(0),
                idle_timer: Mutex::new(None),
                partial_since: AtomicU64::new(0),
                partial_consumed: AtomicU64::new(0),
                partial_timer: AtomicBool::new(false),
                sent: AtomicU64::new(0),
                write_timer: AtomicBool::new(false),
                callbacks: Mutex::new(Callbacks::default()),
                close_reason: OnceLock::new(),
            }
        });
        Connection { inner }
    }

    /// Attaches to the poller, level-triggered input (or switches a dialed socket to it), and
    /// starts the idle timer.
    pub(crate) fn register(&self, event: PollEvent) -> Result<()> {
        let inner = &self.inner;
        if let Err(e) = inner.poller.control(&inner.registration, event) {
            inner.close_with(e.kind());
            return Err(e);
        }
        inner.start_idle_timer();
        Ok(())
    }

    /// Reads from the input buffer; the returned guard's calls wait for data.
    /// Readers are serialised: a second reader waits for the first guard to drop.
    pub fn reader(&self) -> ConnReader<'_> {
        ConnReader::new(&self.inner)
    }

    /// Writes to the output buffer; nothing is sent until [`ConnWriter::flush`] (or
    /// [`Connection::flush`]). Writers are serialised.
    pub fn writer(&self) -> ConnWriter<'_> {
        ConnWriter::new(&self.inner)
    }

    /// Sends everything written so far: tries at once, and if the socket is full waits (up to
    /// the write timeout) while the poller sends the rest.
    pub fn flush(&self) -> Result<()> {
        self.writer().flush()
    }

    /// True until the connection is closed (here, or after the peer left and its input was
    /// handled).
    pub fn is_active(&self) -> bool {
        !self.inner.state.has(CLOSED)
    }

    /// Closes the connection from any thread, at once; idempotent. Waiting readers and writers
    /// fail with `NotConnected`; output not yet handed to the kernel is dropped (flush first to
    /// send it); close callbacks run once any running handler has returned.
    ///
    /// The library's own closes are gentler: after the peer's end of input, or at a graceful
    /// shutdown, the connection closes only once its queued output has been sent (or the write
    /// timeout fired).
    pub fn close(&self) {
        self.inner.close_with(ErrorKind::NotConnected);
    }

    /// Takes the connection off its poller without closing the socket, and returns the socket
    /// (CloudWeGo netpoll's `Detach`), e.g. to hand it to other code. The socket stays
    /// non-blocking. From then on the connection counts as closed here: its close callbacks run,
    /// and input the poller had read before `detach` returned stays readable through
    /// [`Connection::reader`] (read it first: later bytes go to the returned socket only).
    ///
    /// Fails with `InvalidInput` while flushed output is still queued (nothing is dropped:
    /// wait for the flush), and with `NotConnected` once closed.
    pub fn detach(&self) -> Result<Socket> {
        let inner = &self.inner;
        let state = inner.state.load();
        if state & CLOSED != 0 {
            return Err(inner.closed_error());
        }
        if state & WRITE_WAIT != 0 || !inner.output.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "output is still queued: detach after the flush finished",
            ));
        }
        // A second descriptor of the same socket: ours closes when the last handle drops,
        // which then neither sends a FIN nor touches the caller's.
        let socket = inner.socket.try_clone()?;
        if inner.state.set(CLOSED) & CLOSED != 0 {
            return Err(inner.closed_error());
        }
        let _ = inner.close_reason.set(ErrorKind::NotConnected);
        if inner.registration.is_attached() {
            let _ = inner.poller.control(&inner.registration, PollEvent::Detach);
        }
        if !inner.poller.is_current_thread() {
            // The poller may be inside a callback for this fd that passed its checks before the
            // detach: one task round trip waits it out, so no read takes the caller's bytes
            // after we return. (A closed poller runs no callbacks and drops the task at once.)
            // A coroutine-aware wait: a coroutine handler detaching a connection of another
            // poller must not block its own poller's thread (two of them would deadlock).
            struct Done(Arc<crate::rt::Mailbox<()>>);
            impl Drop for Done {
                fn drop(&mut self) {
                    self.0.put(()); // run, or dropped unrun by a closing poller
                }
            }
            let finished = crate::rt::Mailbox::<()>::new(1);
            let done = Done(Arc::clone(&finished));
            if inner.poller.execute(move || drop(done)).is_ok() {
                let _ = finished.recv(None);
            }
        }
        inner.wake_all();
        inner.finish_if_done();
        Ok(socket)
    }

    /// Runs `callback` once when the connection has closed (after any running handler and
    /// `on_disconnect` returned). Added after that, it runs at once.
    pub fn add_close_callback(&self, callback: impl FnOnce(&Connection) + Send + 'static) {
        let mut callbacks = lock(&self.inner.callbacks);
        if self.inner.state.has(CALLBACKS_RUN) {
            drop(callbacks);
            callback(self);
        } else {
            callbacks.on_close.push(Box::new(callback));
        }
    }

    /// Sets the handler called when input arrives (what `EventLoop`'s `on_request` sets on
    /// accepted connections; a dialed connection may set one too). Input already buffered is
    /// handled at once.
    pub fn set_on_request(
        &self,
        on_request: impl Fn(&Connection) -> Result<()> + Send + Sync + 'static,
    ) {
        lock(&self.inner.callbacks).on_request = Some(Arc::new(on_request));
        if self.inner.buffered() > 0 {
            self.inner.schedule_processing();
        }
    }

    pub(crate) fn set_hooks(&self, hooks: Arc<dyn ConnHooks>) {
        lock(&self.inner.callbacks).hooks = Some(hooks);
    }

    /// Asks the connection to close once no handler runs; false if none runs now (the caller
    /// closes it). One atomic step against the handler task's exit, so exactly one side closes.
    pub(crate) fn mark_close_when_idle(&self) -> bool {
        self.inner.state.set(CLOSE_IDLE) & PROCESSING != 0
    }

    /// Bounds how long a read waits for data; `None` waits until data or close.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) {
        self.inner
            .read_timeout_ms
            .store(to_ms(timeout), Ordering::Relaxed);
    }

    /// Bounds how long a flush (or a write past the output cap) waits for the peer to read;
    /// for output no flush waits for (an inline handler's), how long the peer may take none
    /// of it before the connection is closed (see `EventLoopBuilder::write_timeout`). Set
    /// while such output is already queued, it applies from the next flush or send.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) {
        self.inner
            .write_timeout_ms
            .store(to_ms(timeout), Ordering::Relaxed);
    }

    /// Closes the connection after `timeout` without a byte read or written; `None` disables.
    pub fn set_idle_timeout(&self, timeout: Option<Duration>) {
        self.inner
            .idle_timeout_ms
            .store(to_ms(timeout), Ordering::Relaxed);
        self.inner.start_idle_timer();
    }

    /// The local address.
    pub fn local_addr(&self) -> &Addr {
        static UNKNOWN: Addr = Addr::Unix(None);
        self.inner.local_addr.get().unwrap_or(&UNKNOWN)
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> &Addr {
        &self.inner.peer_addr
    }

    /// The id of the poller serving this connection.
    pub fn poller_id(&self) -> usize {
        self.inner.poller.id()
    }

    /// Why the connection closed, once it has: `NotConnected` for a local close,
    /// `UnexpectedEof` after the peer finished, `TimedOut` for the idle timeout, or the I/O
    /// error that ended it.
    pub fn close_reason(&self) -> Option<ErrorKind> {
        self.inner.close_reason.get().copied()
    }

    /// The underlying socket, for options this API does not cover.
    pub fn socket(&self) -> &Socket {
        &self.inner.socket
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("fd", &self.inner.socket.as_raw_fd())
            .field("local", &self.local_addr())
            .field("peer", &self.inner.peer_addr)
            .field("active", &self.is_active())
            .finish()
    }
}

impl ConnInner {
    /// The handler for input, if any: a server's hooks or a `set_on_request` closure.
    pub(crate) fn request_handler(&self) -> Option<RequestHandler> {
        let callbacks = lock(&self.callbacks);
        if let Some(f) = &callbacks.on_request {
            return Some(RequestHandler::Closure(Arc::clone(f)));
        }
        callbacks
            .hooks
            .clone()
            .filter(|h| h.has_on_request())
            .map(RequestHandler::Hooks)
    }

    fn has_request_handler(&self) -> bool {
        let callbacks = lock(&self.callbacks);
        callbacks.on_request.is_some()
            || callbacks.hooks.as_ref().is_some_and(|h| h.has_on_request())
    }

    pub(crate) fn hooks(&self) -> Option<Arc<dyn ConnHooks>> {
        lock(&self.callbacks).hooks.clone()
    }

    /// Bytes published and not yet consumed.
    ///
    /// `consumed <= arrived` holds at every instant (readers take only what `arrived` counted)
    /// and both only grow, so reading `consumed` *first* keeps the difference from underflowing
    /// even when another thread moves both counters between the two loads.
    pub(crate) fn buffered(&self) -> usize {
        let consumed = self.consumed.load(Ordering::SeqCst);
        let arrived = self.arrived.load(Ordering::SeqCst);
        (arrived - consumed) as usize
    }

    fn read_timeout(&self) -> Option<Duration> {
        from_ms(self.read_timeout_ms.load(Ordering::Relaxed))
    }

    fn write_timeout(&self) -> Option<Duration> {
        from_ms(self.write_timeout_ms.load(Ordering::Relaxed))
    }

    /// The input level at which the poller stops reading: the cap, or more while a reader
    /// waits for (or an inline handler asked for) a larger frame.
    fn effective_input_cap(&self) -> usize {
        self.input_cap
            .max(self.wait_size.load(Ordering::SeqCst))
            .max(self.inline_want.load(Ordering::SeqCst))
    }

    /// The error for a call on a closed connection: `NotConnected` when it was closed here
    /// (`close`, the idle timeout, shutdown), else the kind the socket or the peer ended it
    /// with (`BrokenPipe`, `ConnectionReset`, ...), so a waiting flush learns the peer reset.
    pub(crate) fn closed_error(&self) -> Error {
        match self.close_reason.get() {
            None | Some(ErrorKind::NotConnected | ErrorKind::TimedOut) => closed_error(),
            Some(&kind) => Error::new(kind, format!("connection closed: {kind}")),
        }
    }

    /// The library's own close (the peer finished and its input was handled, or a graceful
    /// shutdown): once the queued output has been sent, or the write timeout fired. The poller
    /// finishes it when the output drains (`send_for_waiting_flush`).
    pub(crate) fn close_when_drained(self: &Arc<Self>, reason: ErrorKind) {
        let previous = self.state.set(CLOSE_AFTER_DRAIN);
        if previous & (CLOSE_AFTER_DRAIN | CLOSED) != 0 {
            return;
        }
        // Recorded now: the close that follows (by the poller, a timer, or here) keeps it.
        let _ = self.close_reason.set(reason);
        self.sync_interest(); // no more input
        if previous & OUTPUT_DEAD != 0 {
            self.close_with(if self.output.is_empty() {
                reason
            } else {
                ErrorKind::BrokenPipe
            });
            return;
        }
        if previous & WRITE_WAIT == 0 {
            // Nobody is sending, so whatever is queued is ours to send. (A poller that drains
            // after our flag sees it when it clears WRITE_WAIT, and closes instead.)
            match self.send_output() {
                Ok(true) => return self.close_with(reason),
                Ok(false) => {
                    self.state.set(WRITE_WAIT);
                    self.sync_interest();
                }
                Err(e) => return self.close_with(e.kind()),
            }
        }
        let deadline = self
            .write_timeout()
            .and_then(|t| Instant::now().checked_add(t));
        if let Some(deadline) = deadline {
            let weak = Arc::downgrade(self);
            let _ = self.poller.schedule(deadline, move || {
                if let Some(inner) = weak.upgrade() {
                    if !inner.state.has(CLOSED) {
                        log::debug!(
                            "netpoll: write timeout closing {} with {} bytes unsent",
                            inner.peer_addr,
                            inner.output.len()
                        );
                        inner.close_with(ErrorKind::TimedOut);
                    }
                }
            });
        }
    }

    /// Why the library closes once the output drained (recorded by `close_when_drained`).
    pub(crate) fn drain_reason(&self) -> ErrorKind {
        self.close_reason
            .get()
            .copied()
            .unwrap_or(ErrorKind::NotConnected)
    }

    /// Closes once; later calls do nothing. `reason` is kept for [`Connection::close_reason`].
    pub(crate) fn close_with(self: &Arc<Self>, reason: ErrorKind) {
        if self.state.set(CLOSED) & CLOSED != 0 {
            return;
        }
        let _ = self.close_reason.set(reason);
        let (unread, unsent) = (self.buffered(), self.output.len());
        if unread > 0 || unsent > 0 {
            // Dropped by a close the caller asked for (or an error); never silently.
            log::debug!(
                "netpoll: closing {} ({reason}) with {unread} bytes unread, {unsent} unsent",
                self.peer_addr
            );
        }
        if self.registration.is_attached() {
            // Errors here mean the poller already dropped the registration (closed poller,
            // or a hang-up detached it): either way it is gone.
            let _ = self.poller.control(&self.registration, PollEvent::Detach);
        }
        // The peer sees end-of-stream now; the fd itself is closed when the last handle drops,
        // so its number cannot be reused while a thread might still use it.
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
        // Its closure holds only a Weak, but a long idle timeout would keep it (and the
        // connection's allocation) per closed connection under churn.
        if let Some(key) = lock(&self.idle_timer).take() {
            self.poller.cancel(key);
        }
        self.wake_all();
        self.finish_if_done();
    }

    /// Runs the close callbacks if closed and no handler or `on_disconnect` is running.
    pub(crate) fn finish_if_done(self: &Arc<Self>) {
        if !self.state.try_finish() {
            return;
        }
        let (callbacks, hooks) = {
            let mut all = lock(&self.callbacks);
            (std::mem::take(&mut all.on_close), all.hooks.clone())
        };
        if callbacks.is_empty() && hooks.is_none() {
            return;
        }
        let conn = Connection {
            inner: Arc::clone(self),
        };
        self.run_user_code(move || {
            if let Some(hooks) = hooks {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    hooks.on_close(&conn)
                }));
            }
            for callback in callbacks {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| callback(&conn)));
            }
        });
    }

    /// Runs user code beside the handler task: in a coroutine of its own in coroutine mode, on
    /// the handler pool in pool mode, right here (the poller thread) in inline mode.
    fn run_apart(&self, job: impl FnOnce() + Send + 'static) {
        match &self.executor {
            Executor::Coroutine => self.spawn_or_run(job),
            Executor::Pool(pool) => {
                // A shut-down pool runs nothing: then run the job here rather than never (it
                // ends by letting the close callbacks run).
                let slot = Arc::new(Mutex::new(Some(job)));
                let queued = Arc::clone(&slot);
                let spawned = pool.spawn(move || {
                    if let Some(job) = lock(&queued).take() {
                        job();
                    }
                });
                if spawned.is_err() {
                    if let Some(job) = lock(&slot).take() {
                        job();
                    }
                }
            }
            Executor::Inline => job(),
        }
    }

    /// Runs user code that may block: when called from the poller thread outside a coroutine,
    /// in a coroutine (coroutine mode) or on the handler pool (pool mode); otherwise right here.
    fn run_user_code(&self, job: impl FnOnce() + Send + 'static) {
        match &self.executor {
            Executor::Coroutine if self.runs_inline_here() => self.spawn_or_run(job),
            Executor::Pool(pool) if self.poller.is_current_thread() => {
                if let Err(job_error) = pool.spawn(job) {
                    // The pool is shut down: nothing else will run it.
                    let _ = job_error;
                }
            }
            _ => job(),
        }
    }

    /// Runs `job` in a new coroutine on this connection's poller; right here if none can be
    /// made (the poller is closing), rather than never.
    fn spawn_or_run(&self, job: impl FnOnce() + Send + 'static) {
        let slot = Arc::new(Mutex::new(Some(job)));
        let queued = Arc::clone(&slot);
        let body = Box::new(move || {
            if let Some(job) = lock(&queued).take() {
                job();
            }
        });
        if crate::rt::spawn_detached(&self.poller, body).is_err() {
            if let Some(job) = lock(&slot).take() {
                job();
            }
        }
    }

    /// True when the caller is this connection's poller thread outside any coroutine (an
    /// inline handler, or the poller's own event code): waiting there would stop the very
    /// thread that reads and sends, so callers must not wait.
    pub(crate) fn runs_inline_here(&self) -> bool {
        self.poller.is_current_thread() && !crate::rt::is_coroutine()
    }

    /// Wakes every reader waiting for input.
    pub(crate) fn wake_readers(&self) {
        let wakes = lock(&self.waiters).take_all(READ_WAIT);
        wakes.wake();
    }

    /// Wakes every flush waiting for room.
    pub(crate) fn wake_writers(&self) {
        let wakes = lock(&self.waiters).take_all(WRITE_WAIT_Q);
        wakes.wake();
    }

    fn wake_all(&self) {
        let (readers, writers) = {
            let mut waiters = lock(&self.waiters);
            (waiters.take_all(READ_WAIT), waiters.take_all(WRITE_WAIT_Q))
        };
        readers.wake();
        writers.wake();
    }

    /// Applies the current flags to the kernel: input while not paused (cap, or an inline
    /// handler blocked on output) and not ended; output while a flush waits.
    fn sync_interest(&self) {
        let _guard = lock(&self.interest_lock);
        let state = self.state.load();
        if state & CLOSED != 0 || !self.registration.is_attached() {
            return;
        }
        let readable = state & INPUT_OFF == 0;
        let writable = state & WRITE_WAIT != 0;
        // Fails only if the registration was detached meanwhile (closing): nothing to apply.
        let _ = self
            .poller
            .set_interest(&self.registration, readable, writable);
    }

    /// After a reader consumed `n` bytes: count them and resume reading if input was paused.
    pub(crate) fn consumed(&self, n: usize) {
        if n == 0 {
            return;
        }
        let before = self.consumed.fetch_add(n as u64, Ordering::SeqCst);
        debug_assert!(
            before + n as u64 <= self.arrived.load(Ordering::SeqCst),
            "a reader took bytes the poller had not counted yet"
        );
        if self.state.has(READ_PAUSED) && self.buffered() < self.effective_input_cap() {
            self.resume_reading();
        }
    }

    fn resume_reading(&self) {
        if self.state.clear(READ_PAUSED) & READ_PAUSED != 0 {
            self.sync_interest();
        }
    }

    fn start_idle_timer(self: &Arc<Self>) {
        let seq = self.idle_seq.fetch_add(1, Ordering::SeqCst) + 1;
        let at =
            from_ms(self.idle_timeout_ms.load(Ordering::Relaxed)).map(|idle| Instant::now() + idle);
        self.arm_idle_timer(seq, at);
    }

    /// One timer at a time per connection: when it fires it closes the connection if it was
    /// idle long enough, otherwise re-arms for the moment it would be. The previous timer is
    /// cancelled, under the lock that also checks `seq` is still the newest chain's (so a
    /// firing timer of an older chain cannot replace the newer one's key).
    fn arm_idle_timer(self: &Arc<Self>, seq: u32, at: Option<Instant>) {
        let mut pending = lock(&self.idle_timer);
        if self.idle_seq.load(Ordering::SeqCst) != seq {
            return;
        }
        if let Some(old) = pending.take() {
            self.poller.cancel(old); // false when it is the one firing now
        }
        let Some(at) = at else { return };
        let weak = Arc::downgrade(self);
        *pending = self
            .poller
            .schedule(at, move || {
                let Some(inner) = weak.upgrade() else { return };
                if inner.idle_seq.load(Ordering::SeqCst) != seq || inner.state.has(CLOSED) {
                    return;
                }
                let Some(idle) = from_ms(inner.idle_timeout_ms.load(Ordering::Relaxed)) else {
                    return;
                };
                let quiet = Duration::from_millis(
                    now_ms().saturating_sub(inner.last_active.load(Ordering::Relaxed)),
                );
                if quiet >= idle {
                    inner.close_with(ErrorKind::TimedOut);
                } else {
                    inner.arm_idle_timer(seq, Some(Instant::now() + (idle - quiet)));
                }
            })
            .ok();
    }

    /// Inline handlers, after each round of calls: a handler that returned waiting for more of
    /// a frame (`inline_want` set) must get it within the read timeout, counted from the first
    /// call that waited without consuming anything since. (A thread or coroutine handler's
    /// reads wait, and each wait has the timeout instead.)
    pub(crate) fn track_partial_frame(self: &Arc<Self>) {
        if self.inline_want.load(Ordering::SeqCst) == 0 {
            self.partial_since.store(0, Ordering::SeqCst);
            return;
        }
        let Some(timeout) = self.read_timeout() else {
            return;
        };
        let consumed = self.consumed.load(Ordering::SeqCst);
        let since = self.partial_since.load(Ordering::SeqCst);
        if since != 0 && self.partial_consumed.load(Ordering::SeqCst) == consumed {
            // The same frame, still waiting: its deadline stands (and has a timer).
            if !self.partial_timer.swap(true, Ordering::SeqCst) {
                let waited = Duration::from_millis(now_ms().saturating_sub(since));
                self.arm_partial_timer(Instant::now() + timeout.saturating_sub(waited));
            }
            return;
        }
        self.partial_consumed.store(consumed, Ordering::SeqCst);
        self.partial_since.store(now_ms().max(1), Ordering::SeqCst);
        if !self.partial_timer.swap(true, Ordering::SeqCst) {
            self.arm_partial_timer(Instant::now() + timeout);
        }
    }

    /// The partial-frame timer: closes the connection (`TimedOut`) once a frame has waited for
    /// the read timeout, re-arms for a frame that began waiting later, and stops when nothing
    /// waits. `partial_timer` is cleared before the last look, so a frame that starts waiting
    /// meanwhile either sees the flag clear and arms its own timer, or is seen here.
    fn arm_partial_timer(self: &Arc<Self>, at: Instant) {
        let weak = Arc::downgrade(self);
        let _ = self.poller.schedule(at, move || {
            let Some(inner) = weak.upgrade() else { return };
            loop {
                if inner.state.has(CLOSED) {
                    return;
                }
                let Some(timeout) = inner.read_timeout() else {
                    // The timeout was removed; a later one arms a timer of its own.
                    inner.partial_timer.store(false, Ordering::SeqCst);
                    return;
                };
                let since = inner.partial_since.load(Ordering::SeqCst);
                if since != 0 && inner.state.has(OUTPUT_FULL) {
                    // Our own backpressure paused the input: the rest of the frame may be
                    // waiting in the kernel. The clock restarts once the output drains.
                    inner.partial_since.store(now_ms().max(1), Ordering::SeqCst);
                    inner.arm_partial_timer(Instant::now() + timeout);
                    return;
                }
                if since != 0 {
                    let waited = Duration::from_millis(now_ms().saturating_sub(since));
                    if waited >= timeout {
                        log::debug!(
                            "netpoll: {} sent part of a frame and not the rest within {:?}",
                            inner.peer_addr,
                            timeout
                        );
                        inner.close_with(ErrorKind::TimedOut);
                    } else {
                        inner.arm_partial_timer(Instant::now() + (timeout - waited));
                    }
                    return;
                }
                inner.partial_timer.store(false, Ordering::SeqCst);
                if inner.partial_since.load(Ordering::SeqCst) == 0
                    || inner.partial_timer.swap(true, Ordering::SeqCst)
                {
                    return;
                }
            }
        });
    }

    /// A flush that did not wait (an inline handler's, on the poller thread) left output for
    /// the poller: the write timeout bounds how long the peer may take none of it, then the
    /// connection is closed (`TimedOut`), where a waiting flush would have failed. One timer
    /// at a time per connection; it re-arms while the peer takes bytes and stops once the
    /// output drained.
    pub(crate) fn watch_unwaited_output(self: &Arc<Self>) {
        if self.write_timeout().is_some() && !self.write_timer.swap(true, Ordering::SeqCst) {
            self.arm_write_timer(self.progress());
        }
    }

    /// The timer of `watch_unwaited_output`: closes if the peer made no progress since
    /// `seen`. `write_timer` is cleared before the last look, so a flush that leaves output
    /// meanwhile either sees the flag clear and arms its own timer, or is seen here.
    fn arm_write_timer(self: &Arc<Self>, seen: Progress) {
        let Some(timeout) = self.write_timeout() else {
            self.write_timer.store(false, Ordering::SeqCst);
            return;
        };
        let weak = Arc::downgrade(self);
        let _ = self.poller.schedule(Instant::now() + timeout, move || {
            let Some(inner) = weak.upgrade() else { return };
            if inner.state.has(CLOSED) {
                return;
            }
            if !inner.state.has(WRITE_WAIT) {
                inner.write_timer.store(false, Ordering::SeqCst);
                if inner.state.has(WRITE_WAIT) && !inner.write_timer.swap(true, Ordering::SeqCst) {
                    inner.arm_write_timer(inner.progress());
                }
                return;
            }
            let now = inner.progress();
            if !now.moved_since(seen) && inner.write_timeout().is_some() {
                log::debug!(
                    "netpoll: {} took none of {} queued bytes within the write timeout",
                    inner.peer_addr,
                    inner.output.len()
                );
                inner.close_with(ErrorKind::TimedOut);
            } else {
                inner.arm_write_timer(now);
            }
        });
    }

    fn progress(&self) -> Progress {
        Progress {
            sent: self.sent.load(Ordering::Relaxed),
            queued: crate::sys::socket::unsent_bytes(&self.socket).unwrap_or(usize::MAX),
        }
    }

    /// Records activity for the idle timer; free when no idle timeout is set.
    fn touch(&self) {
        if self.idle_timeout_ms.load(Ordering::Relaxed) != 0 {
            self.last_active.store(now_ms(), Ordering::Relaxed);
        }
    }
}

/// What the write timer of inline output compares: bytes handed to the kernel, and the socket's
/// send queue. Either moving is the peer's progress: `sent` alone stands still while a slow
/// TCP peer reads, since a full send buffer reports room only once a third of it is free; the
/// queue shrinks as the peer acknowledges (TCP) or reads whole buffers (Unix sockets, whose
/// queue counts buffer sizes, not bytes).
#[derive(Clone, Copy)]
struct Progress {
    sent: u64,
    /// `usize::MAX` when the kernel would not say.
    queued: usize,
}

impl Progress {
    fn moved_since(self, then: Progress) -> bool {
        self.sent != then.sent || self.queued < then.queued
    }
}

impl Drop for ConnInner {
    fn drop(&mut self) {
        if self.registration.is_attached() {
            let _ = self.poller.control(&self.registration, PollEvent::Detach);
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // These locks guard data no panic leaves half-updated (a panicking handler never holds
    // them across user code).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn to_ms(timeout: Option<Duration>) -> u64 {
    // 0 means "none"; a zero timeout becomes 1 ms so it still means "at once".
    timeout.map_or(0, |t| (t.as_millis() as u64).max(1))
}

fn from_ms(ms: u64) -> Option<Duration> {
    (ms != 0).then(|| Duration::from_millis(ms))
}

/// Milliseconds since the first call in this process: a cheap clock for idle bookkeeping.
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// Waits on `queue` of the connection's waiters until woken or until `deadline` (`None`: no
/// deadline); a coroutine suspends, a thread parks. Returns the guard again, or `None` once
/// the deadline has passed; callers re-check their condition either way.
pub(crate) fn wait_until<'a>(
    waiters: &'a Mutex<WaitSet>,
    guard: MutexGuard<'a, WaitSet>,
    queue: Queue,
    deadline: Option<Instant>,
) -> Option<MutexGuard<'a, WaitSet>> {
    crate::rt::wait::wait_until(waiters, guard, queue, deadline)
}

pub(crate) fn closed_error() -> Error {
    Error::new(ErrorKind::NotConnected, "connection closed")
}

pub(crate) fn eof_error() -> Error {
    Error::new(ErrorKind::UnexpectedEof, "connection closed by peer")
}
