//! `EventLoop`: the reactor-face server. One poller (the main reactor) accepts; accepted
//! connections go to the pollers of a [`PollManager`] (the sub-reactors), picked by its
//! load-balance policy; handlers run as coroutines on those pollers (or on a [`HandlerPool`],
//! or inline).

use std::collections::HashMap;
use std::io::{self, ErrorKind, Result};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use socket2::{Socket, TcpKeepalive};

use super::listener::Listener;
use crate::poll::{EventHandler, LoadBalance, PollEvent, PollManager, Poller, Ready, Registration};
use crate::reactor::connection::state::CONNECT_PENDING;
use crate::reactor::connection::{lock, ConnHooks, ConnOptions, Connection, Executor};
use crate::reactor::runner::HandlerPool;
use crate::transport::addr::Addr;

type Prepare<C> = Arc<dyn Fn(&Connection) -> C + Send + Sync>;
type Hook<C> = Arc<dyn Fn(&C, &Connection) + Send + Sync>;
type Request<C> = Arc<dyn Fn(&C, &Connection) -> Result<()> + Send + Sync>;

/// Accept backoff after `EMFILE`/`ENFILE`/`ENOBUFS`/`ENOMEM`: starts here, doubles per failure.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
/// ... and stops growing here (the same bounds as Go's `net/http` server).
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Accepts per readiness event, so one busy listener cannot starve the other fds of its poller.
const ACCEPTS_PER_EVENT: usize = 128;

/// A network server: accepts connections and runs the callbacks on them.
///
/// An echo server on a free port, served from a thread, spoken to with std, and shut down:
///
/// ```
/// use std::io::{Read, Write};
/// use std::time::{Duration, Instant};
/// use netpoll::{EventLoop, Listener};
///
/// let server = EventLoop::builder()
///     .on_request(|_ctx, conn| {
///         let mut reader = conn.reader();
///         let data = reader.next(reader.len())?;       // everything that arrived
///         let mut writer = conn.writer();
///         writer.write_direct(data)?;                  // echo it, no copy
///         writer.flush()
///     })
///     .build()?;
/// let listener = Listener::bind_tcp("127.0.0.1:0")?;
/// let addr = *listener.local_addr().as_inet().unwrap();
///
/// std::thread::scope(|s| {
///     let serving = s.spawn(|| server.serve(listener)); // until shutdown
///
///     let mut client = std::net::TcpStream::connect(addr)?;
///     client.set_read_timeout(Some(Duration::from_secs(5)))?;
///     client.write_all(b"hello")?;
///     let mut echo = [0u8; 5];
///     client.read_exact(&mut echo)?;
///     assert_eq!(&echo, b"hello");
///
///     // Graceful: stop accepting, close idle connections, give busy ones until the deadline.
///     server.shutdown(Instant::now() + Duration::from_secs(5))?;
///     assert_eq!(client.read(&mut echo)?, 0); // the server closed our connection
///     serving.join().unwrap() // serve returned Ok
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct EventLoop<C = ()> {
    shared: Arc<Shared<C>>,
}

/// Configures an [`EventLoop`]. `C` is the per-connection context that `on_prepare` returns and
/// the other callbacks receive.
///
/// A line server with a per-connection line counter as its context, a greeting, timeouts, and
/// its own poller instead of the process-wide ones:
///
/// ```
/// use std::io::{BufRead, BufReader, Write};
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::time::{Duration, Instant};
/// use netpoll::{EventLoop, Listener};
///
/// let server = EventLoop::builder()
///     .on_prepare(|_conn| AtomicUsize::new(0)) // the context of each connection
///     .on_connect(|_lines, conn| {
///         let mut writer = conn.writer();
///         let _ = writer.write_string("hi\n").and_then(|()| writer.flush());
///     })
///     .on_request(|lines, conn| {
///         let line = conn.reader().until(b'\n')?; // waits for a whole line
///         let n = lines.fetch_add(1, Ordering::Relaxed) + 1;
///         let mut writer = conn.writer();
///         writer.write_string(&format!("{n}: "))?;
///         writer.write_direct(line)?;
///         writer.flush()
///     })
///     .read_timeout(Duration::from_secs(5)) // a started frame must complete within 5 s
///     .idle_timeout(Duration::from_secs(60)) // silent connections are closed
///     .num_loops(1)
///     .build()?;
/// let listener = Listener::bind_tcp("127.0.0.1:0")?;
/// let addr = *listener.local_addr().as_inet().unwrap();
///
/// std::thread::scope(|s| {
///     let serving = s.spawn(|| server.serve(listener));
///     let client = std::net::TcpStream::connect(addr)?;
///     client.set_read_timeout(Some(Duration::from_secs(5)))?;
///     let mut lines = BufReader::new(&client);
///     let mut line = String::new();
///     lines.read_line(&mut line)?;
///     assert_eq!(line, "hi\n");
///     (&client).write_all(b"one\ntwo\n")?;
///     for expected in ["1: one\n", "2: two\n"] {
///         line.clear();
///         lines.read_line(&mut line)?;
///         assert_eq!(line, expected);
///     }
///     assert_eq!(server.connections(), 1);
///     server.shutdown(Instant::now() + Duration::from_secs(5))?;
///     serving.join().unwrap()
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct EventLoopBuilder<C> {
    on_prepare: Prepare<C>,
    on_connect: Option<Hook<C>>,
    on_request: Option<Request<C>>,
    on_disconnect: Option<Hook<C>>,
    options: ConnOptions,
    num_loops: Option<usize>,
    load_balance: Option<LoadBalance>,
    poll_manager: Option<Arc<PollManager>>,
    keepalive: Option<Duration>,
}

impl<C> std::fmt::Debug for EventLoop<C> {
    /// Never blocks: a table another thread holds right now prints as `<locked>` (as std's
    /// `Mutex` prints), so it is safe from handlers and callbacks.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shared = &self.shared;
        let mut s = f.debug_struct("EventLoop");
        match shared.connections.try_lock() {
            Ok(connections) => s.field("connections", &connections.len()),
            Err(_) => s.field("connections", &format_args!("<locked>")),
        };
        match shared.run.try_lock() {
            Ok(run) => s
                .field("serving", &run.acceptor.is_some())
                .field("shutting_down", &run.shutting_down),
            Err(_) => s.field("run", &format_args!("<locked>")),
        };
        s.field("options", &shared.options)
            .field("keepalive", &shared.keepalive)
            .finish_non_exhaustive()
    }
}

impl<C> std::fmt::Debug for EventLoopBuilder<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoopBuilder")
            .field("on_connect", &self.on_connect.is_some())
            .field("on_request", &self.on_request.is_some())
            .field("on_disconnect", &self.on_disconnect.is_some())
            .field("options", &self.options)
            .field("num_loops", &self.num_loops)
            .field("load_balance", &self.load_balance)
            .field("poll_manager", &self.poll_manager.is_some())
            .field("keepalive", &self.keepalive)
            .finish_non_exhaustive()
    }
}

struct Shared<C> {
    this: Weak<Shared<C>>,
    on_prepare: Prepare<C>,
    callbacks: Arc<Callbacks<C>>,
    options: ConnOptions,
    keepalive: Option<Duration>,
    manager: ManagerRef,
    connections: Mutex<HashMap<u64, Connection>>,
    next_id: AtomicU64,
    run: Mutex<Run>,
    /// Signals `serve` that `run.stopped` was set.
    run_changed: Condvar,
    /// Signals `shutdown` that a connection left `connections`.
    conns_changed: Condvar,
}

enum ManagerRef {
    Global(&'static PollManager),
    Own(Arc<PollManager>),
}

impl ManagerRef {
    fn get(&self) -> &PollManager {
        match self {
            ManagerRef::Global(m) => m,
            ManagerRef::Own(m) => m,
        }
    }
}

#[derive(Default)]
struct Run {
    acceptor: Option<Arc<Acceptor>>,
    shutting_down: bool,
    /// Set when `serve` must return, with what it returns.
    stopped: Option<Result<()>>,
}

impl EventLoop<()> {
    /// A builder with no callbacks, the global pollers and coroutine handlers.
    pub fn builder() -> EventLoopBuilder<()> {
        EventLoopBuilder {
            on_prepare: Arc::new(|_| ()),
            on_connect: None,
            on_request: None,
            on_disconnect: None,
            options: ConnOptions::default(),
            num_loops: None,
            load_balance: None,
            poll_manager: None,
            keepalive: None,
        }
    }
}

impl EventLoopBuilder<()> {
    /// Sets the callback that prepares each accepted connection before it is registered and
    /// returns its context. It runs on the accepting poller thread, so keep it short; it may
    /// close the connection to refuse it. Callbacks set earlier ignore the context.
    pub fn on_prepare<D: Send + Sync + 'static>(
        self,
        on_prepare: impl Fn(&Connection) -> D + Send + Sync + 'static,
    ) -> EventLoopBuilder<D> {
        let hook = |h: Option<Hook<()>>| {
            h.map(|h| Arc::new(move |_: &D, c: &Connection| h(&(), c)) as Hook<D>)
        };
        let on_request = self
            .on_request
            .map(|h| Arc::new(move |_: &D, c: &Connection| h(&(), c)) as Request<D>);
        EventLoopBuilder {
            on_prepare: Arc::new(on_prepare),
            on_connect: hook(self.on_connect),
            on_request,
            on_disconnect: hook(self.on_disconnect),
            options: self.options,
            num_loops: self.num_loops,
            load_balance: self.load_balance,
            poll_manager: self.poll_manager,
            keepalive: self.keepalive,
        }
    }
}

impl<C: Send + Sync + 'static> EventLoopBuilder<C> {
    /// Called once per connection before any `on_request`; may write (and flush) a greeting.
    pub fn on_connect(mut self, f: impl Fn(&C, &Connection) + Send + Sync + 'static) -> Self {
        self.on_connect = Some(Arc::new(f));
        self
    }

    /// Called when input arrives, at most one call at a time per connection. It may read what
    /// it needs (waiting for more) and write replies. If it returns leaving a partial frame it
    /// is called again only when more input arrives. An error (or a panic) closes the
    /// connection.
    pub fn on_request(
        mut self,
        f: impl Fn(&C, &Connection) -> Result<()> + Send + Sync + 'static,
    ) -> Self {
        self.on_request = Some(Arc::new(f));
        self
    }

    /// Called once when the peer hangs up, even while `on_request` runs.
    pub fn on_disconnect(mut self, f: impl Fn(&C, &Connection) + Send + Sync + 'static) -> Self {
        self.on_disconnect = Some(Arc::new(f));
        self
    }

    /// Bounds how long a read waits for data (default: no bound; `until` waits for its whole
    /// delimited frame under one deadline, so a trickle of bytes does not extend it). Inline
    /// handlers never wait:
    /// for them it bounds how long a frame may stay partial, from the first call that returned
    /// `WouldBlock` for more input until a call consumes input again; then the connection is
    /// closed (`TimedOut`). That also ends a client that trickles a frame byte by byte; a
    /// frame the handler waits for whole (a 64 MiB bulk, say) must arrive within it, so set
    /// it for the slowest link a large frame must cross.
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.options.read_timeout = Some(timeout);
        self
    }

    /// Bounds how long a flush waits for the peer to read (default: no bound). Inline
    /// handlers' flushes never wait: for them it bounds how long the peer may take none of the
    /// output they queued (for TCP no byte acknowledged; for a Unix socket no send buffer
    /// read to its end, about 36 KiB at a time), then the connection is closed
    /// (`TimedOut`), so a peer that never reads does not hold the connection and its queued
    /// output forever, while one that reads slowly is not cut off. The close comes one to two
    /// timeouts after the peer's last progress (one timer per connection, re-armed once per
    /// timeout). Output queued from a foreign thread on an inline connection falls under the
    /// same timer once an inline flush or the poller's sending has armed it.
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.options.write_timeout = Some(timeout);
        self
    }

    /// Closes connections without traffic in either direction for this long (default: never).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.options.idle_timeout = Some(timeout);
        self
    }

    /// Enables TCP keepalive probes after `idle` on accepted TCP connections (default: off).
    pub fn tcp_keepalive(mut self, idle: Duration) -> Self {
        self.keepalive = Some(idle);
        self
    }

    /// Unread input per connection before the poller stops reading it
    /// (default [`DEFAULT_INPUT_CAP`](crate::reactor::connection::DEFAULT_INPUT_CAP)).
    pub fn input_cap(mut self, bytes: usize) -> Self {
        self.options.input_cap = bytes.max(1);
        self
    }

    /// Unsent output per connection before writes wait
    /// (default [`DEFAULT_OUTPUT_CAP`](crate::reactor::connection::DEFAULT_OUTPUT_CAP)).
    pub fn output_cap(mut self, bytes: usize) -> Self {
        self.options.output_cap = bytes.max(1);
        self
    }

    /// Runs this server on its own `n` pollers instead of the global ones.
    pub fn num_loops(mut self, n: usize) -> Self {
        self.num_loops = Some(n);
        self
    }

    /// Balances connections over its own pollers with `balance` (implies own pollers).
    pub fn load_balance(mut self, balance: LoadBalance) -> Self {
        self.load_balance = Some(balance);
        self
    }

    /// Uses these pollers (shared with other servers or dialers).
    pub fn poll_manager(mut self, manager: Arc<PollManager>) -> Self {
        self.poll_manager = Some(manager);
        self
    }

    /// Runs each connection's handlers in a coroutine on its poller (the default): `on_connect`
    /// and `on_request` may block in netpoll's calls (a read waiting for bytes, a flush or a
    /// write waiting for room, a `TcpConn` of the Go-net face, [`crate::sleep`]) and those
    /// suspend the coroutine while the poller serves its other connections — no thread is
    /// parked, no futex. The coroutine exists only while a handler runs: an idle connection
    /// holds no stack. A call that blocks the *thread* (std I/O, a std channel or `Mutex`
    /// held across a netpoll call, a long computation) stalls every connection of that poller,
    /// and can deadlock it when the thing it waits for runs on the same poller: wrap it in
    /// [`crate::blocking`]. Handlers of one poller run one at a time (one poller per CPU by
    /// default), share its thread-locals, and get [`crate::rt::stack_size`] of stack (64 KiB by
    /// default, where a pool thread has 256 KiB; an overflow aborts the process). See
    /// `docs/GOROUTINES.md`.
    ///
    /// ```
    /// # use netpoll::EventLoop;
    /// let server = EventLoop::builder()
    ///     .coroutine_handlers()
    ///     .on_request(|_, conn| {
    ///         let line = conn.reader().until(b'\n')?; // suspends until the line is complete
    ///         let mut writer = conn.writer();
    ///         writer.write_direct(line)?;
    ///         writer.flush() // suspends while the peer is slow to read
    ///     })
    ///     .build()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn coroutine_handlers(mut self) -> Self {
        self.options.executor = Executor::Coroutine;
        self
    }

    /// Runs handlers on this pool of threads instead of coroutines: for handlers that block
    /// their thread and cannot be changed (see [`crate::runner::default_pool`]).
    pub fn handler_pool(mut self, pool: HandlerPool) -> Self {
        self.options.executor = Executor::Pool(pool);
        self
    }

    /// Runs handlers on the poller threads themselves: the fastest path, for handlers that
    /// never block. The poller that would bring more data is the thread running the handler,
    /// so nothing waits; instead `WouldBlock` means "call me again when it can progress":
    ///
    /// - a read that lacks data (`next(n)`, `until`, ...) fails with `WouldBlock`; returning
    ///   that error (`?`) keeps the connection open, and the handler is called again when more
    ///   input arrived (a frame larger than the input cap still arrives);
    /// - writes are always taken (a reply is never cut in two), and `flush` never waits: what
    ///   the socket does not take at once the poller sends later;
    /// - the output cap applies between requests: while the queue is at the cap the handler
    ///   is not called and the connection's input is paused, until the poller has sent the
    ///   queue below it — backpressure, not a reset. A handler that answers many pipelined
    ///   requests per call asks [`ConnWriter::ready`](crate::ConnWriter::ready) before each,
    ///   which fails with `WouldBlock` at the cap.
    ///
    /// ```
    /// # use netpoll::EventLoop;
    /// let server = EventLoop::builder()
    ///     .inline_handlers()
    ///     .on_request(|_, conn| {
    ///         let line = conn.reader().until(b'\n')?; // WouldBlock until the line is complete
    ///         let mut writer = conn.writer();
    ///         writer.write_direct(line)?;
    ///         writer.flush()
    ///     })
    ///     .build()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn inline_handlers(mut self) -> Self {
        self.options.executor = Executor::Inline;
        self
    }

    /// Builds the server (starting its own pollers if asked to).
    pub fn build(self) -> Result<EventLoop<C>> {
        let manager = match (self.poll_manager, self.num_loops, self.load_balance) {
            (Some(manager), _, _) => ManagerRef::Own(manager),
            (None, None, None) => ManagerRef::Global(PollManager::global()?),
            (None, loops, balance) => {
                let manager =
                    PollManager::new(loops.unwrap_or_else(crate::poll::default_num_loops))?;
                manager.set_load_balance(balance.unwrap_or_default());
                ManagerRef::Own(Arc::new(manager))
            }
        };
        Ok(EventLoop {
            shared: Arc::new_cyclic(|this| Shared {
                this: this.clone(),
                on_prepare: self.on_prepare,
                callbacks: Arc::new(Callbacks {
                    on_connect: self.on_connect,
                    on_request: self.on_request,
                    on_disconnect: self.on_disconnect,
                }),
                options: self.options,
                keepalive: self.keepalive,
                manager,
                connections: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(0),
                run: Mutex::new(Run::default()),
                run_changed: Condvar::new(),
                conns_changed: Condvar::new(),
            }),
        })
    }
}

impl<C: Send + Sync + 'static> EventLoop<C> {
    /// Accepts on `listener` and serves until [`shutdown`](EventLoop::shutdown) (then `Ok`) or
    /// a fatal accept error (then that error). One `serve` at a time per event loop.
    pub fn serve(&self, listener: Listener) -> Result<()> {
        listener.ensure_nonblocking()?;
        let poller = self.shared.manager.get().pick();
        let acceptor = Arc::new_cyclic(|weak: &Weak<Acceptor>| {
            let handler: Weak<dyn EventHandler> = weak.clone();
            Acceptor {
                this: weak.clone(),
                registration: Registration::new(listener.as_raw_fd(), handler),
                listener,
                poller,
                server: Arc::downgrade(&self.shared) as Weak<dyn AcceptSink>,
                backoff: Mutex::new(ACCEPT_BACKOFF_MIN),
            }
        });
        {
            let mut run = lock(&self.shared.run);
            if run.acceptor.is_some() {
                return Err(io::Error::other("this event loop is already serving"));
            }
            if run.shutting_down {
                return Err(io::Error::other("this event loop was shut down"));
            }
            run.acceptor = Some(Arc::clone(&acceptor));
        }
        acceptor
            .poller
            .control(&acceptor.registration, PollEvent::Readable)?;
        let mut run = lock(&self.shared.run);
        loop {
            if let Some(result) = run.stopped.take() {
                run.acceptor = None;
                drop(run);
                acceptor.detach();
                return result;
            }
            run = self
                .shared
                .run_changed
                .wait(run)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Stops gracefully: stops accepting, closes idle connections at once, lets running
    /// handlers finish until `deadline`, then closes the rest; `serve` returns `Ok`.
    /// Returns `TimedOut` if connections had to be closed at the deadline.
    pub fn shutdown(&self, deadline: Instant) -> Result<()> {
        let acceptor = {
            let mut run = lock(&self.shared.run);
            run.shutting_down = true;
            run.acceptor.clone()
        };
        if let Some(acceptor) = acceptor {
            acceptor.stop_listening();
        }
        let connections: Vec<Connection> =
            lock(&self.shared.connections).values().cloned().collect();
        for conn in connections {
            // One atomic step against the handler's exit: either we see PROCESSING clear and
            // close, or the handler sees CLOSE_IDLE when it finishes and closes. Either way the
            // close waits for queued output to go out (bounded by the deadline below).
            if !conn.mark_close_when_idle() {
                conn.inner.close_when_drained(ErrorKind::NotConnected);
            }
        }
        let mut forced = false;
        let mut connections = lock(&self.shared.connections);
        while !connections.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                forced = true;
                let rest: Vec<Connection> = connections.values().cloned().collect();
                drop(connections);
                rest.iter().for_each(Connection::close);
                break;
            }
            connections = self
                .shared
                .conns_changed
                .wait_timeout(connections, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let mut run = lock(&self.shared.run);
        if run.acceptor.is_some() && run.stopped.is_none() {
            run.stopped = Some(Ok(()));
        }
        drop(run);
        self.shared.run_changed.notify_all();
        if forced {
            Err(io::Error::new(
                ErrorKind::TimedOut,
                "shutdown deadline passed; remaining connections were closed",
            ))
        } else {
            Ok(())
        }
    }

    /// Connections currently open.
    pub fn connections(&self) -> usize {
        lock(&self.shared.connections).len()
    }
}

/// The server's connection callbacks, shared by all its connections.
struct Callbacks<C> {
    on_connect: Option<Hook<C>>,
    on_request: Option<Request<C>>,
    on_disconnect: Option<Hook<C>>,
}

/// One accepted connection's context with the server's callbacks: a single allocation.
struct PerConn<C> {
    context: C,
    callbacks: Arc<Callbacks<C>>,
    /// Weak: the server's connection table holds the connection, which holds this.
    server: Weak<Shared<C>>,
    id: u64,
}

impl<C: Send + Sync + 'static> ConnHooks for PerConn<C> {
    fn has_on_request(&self) -> bool {
        self.callbacks.on_request.is_some()
    }

    fn on_request(&self, conn: &Connection) -> Result<()> {
        match &self.callbacks.on_request {
            Some(f) => f(&self.context, conn),
            None => Ok(()),
        }
    }

    fn on_connect(&self, conn: &Connection) {
        if let Some(f) = &self.callbacks.on_connect {
            f(&self.context, conn);
        }
    }

    fn has_on_disconnect(&self) -> bool {
        self.callbacks.on_disconnect.is_some()
    }

    fn on_disconnect(&self, conn: &Connection) {
        if let Some(f) = &self.callbacks.on_disconnect {
            f(&self.context, conn);
        }
    }

    fn on_close(&self, _conn: &Connection) {
        if let Some(server) = self.server.upgrade() {
            lock(&server.connections).remove(&self.id);
            server.conns_changed.notify_all();
        }
    }
}

/// What the acceptor needs from its server, without the server's context type.
trait AcceptSink: Send + Sync {
    fn accepted(&self, socket: Socket, peer: Addr, is_tcp: bool);
    fn stop(&self, result: Result<()>);
}

impl<C: Send + Sync + 'static> AcceptSink for Shared<C> {
    fn accepted(&self, socket: Socket, peer: Addr, is_tcp: bool) {
        if lock(&self.run).shutting_down {
            return; // accepted in a batch that shutdown interrupted: refused like later ones
        }
        if is_tcp {
            // Small requests and replies must not wait for Nagle's timer.
            let _ = socket.set_tcp_nodelay(true);
            if let Some(idle) = self.keepalive {
                let _ = socket.set_tcp_keepalive(&TcpKeepalive::new().with_time(idle));
            }
        }
        let local = match socket.local_addr() {
            Ok(addr) => Addr::from_sockaddr(&addr),
            Err(_) => return, // the peer is already gone
        };
        let poller: Arc<Poller> = self.manager.get().pick_for(peer.as_inet());
        // on_disconnect must not start before on_connect returned (as in CloudWeGo netpoll).
        let initial = if self.callbacks.on_connect.is_some() {
            CONNECT_PENDING
        } else {
            0
        };
        let conn = Connection::new(socket, poller, Some(local), peer, &self.options, initial);
        let context = (self.on_prepare)(&conn);
        if !conn.is_active() {
            return; // on_prepare refused it
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        conn.set_hooks(Arc::new(PerConn {
            context,
            callbacks: Arc::clone(&self.callbacks),
            server: self.this.clone(),
            id,
        }));
        lock(&self.connections).insert(id, conn.clone());
        if lock(&self.run).shutting_down {
            // Inserted after shutdown's snapshot of the table (or racing it): close it as
            // shutdown would have.
            conn.close();
            return;
        }
        if conn.register(PollEvent::Readable).is_err() {
            return; // register closed it; the close callback forgot it
        }
        if self.callbacks.on_connect.is_some() {
            conn.inner.schedule_processing();
        }
    }

    fn stop(&self, result: Result<()>) {
        let mut run = lock(&self.run);
        if run.stopped.is_none() && run.acceptor.is_some() {
            run.stopped = Some(result);
        }
        drop(run);
        self.run_changed.notify_all();
    }
}

/// The listener's owner on the main reactor: accepts until the backlog is empty.
struct Acceptor {
    this: Weak<Acceptor>,
    listener: Listener,
    registration: Registration,
    poller: Arc<Poller>,
    server: Weak<dyn AcceptSink>,
    backoff: Mutex<Duration>,
}

impl Acceptor {
    fn detach(&self) {
        if self.registration.is_attached() {
            let _ = self.poller.control(&self.registration, PollEvent::Detach);
        }
    }

    /// Shutdown: stop accepting, and make the kernel refuse new connects at once (and reset
    /// those still queued) instead of completing handshakes nobody will accept. `shutdown(2)`
    /// rather than `close(2)`: the poller thread may be inside `accept` on this fd right now,
    /// and a closed fd number could be reused under it; the fd itself closes with the acceptor.
    fn stop_listening(&self) {
        self.detach();
        self.listener.stop_listening();
    }

    /// Out of fds (or kernel memory): the level-triggered listener would report the same
    /// pending connection on every wait and spin the poller. Stop watching it, and look again
    /// after a growing pause.
    fn back_off(self: &Arc<Self>) {
        let pause = {
            let mut backoff = lock(&self.backoff);
            let pause = *backoff;
            *backoff = (pause * 2).min(ACCEPT_BACKOFF_MAX);
            pause
        };
        if self
            .poller
            .set_interest(&self.registration, false, false)
            .is_err()
        {
            return; // detached: the server is stopping
        }
        let weak = Arc::downgrade(self);
        let _ = self.poller.schedule(Instant::now() + pause, move || {
            if let Some(acceptor) = weak.upgrade() {
                let _ = acceptor
                    .poller
                    .set_interest(&acceptor.registration, true, false);
            }
        });
    }
}

impl EventHandler for Acceptor {
    fn on_ready(&self, _ready: Ready) {
        let Some(server) = self.server.upgrade() else {
            return;
        };
        let is_tcp = self.listener.is_tcp();
        for _ in 0..ACCEPTS_PER_EVENT {
            match self.listener.accept() {
                Ok((socket, peer)) => {
                    *lock(&self.backoff) = ACCEPT_BACKOFF_MIN;
                    server.accepted(socket, peer, is_tcp);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                // The peer gave up while queued: not our failure.
                Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => continue,
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                    ) =>
                {
                    if let Some(this) = self.this.upgrade() {
                        this.back_off();
                    }
                    return;
                }
                // shutdown() detached us, then shut the listener down: the rest of this batch
                // meets EINVAL, which is the stop that was asked for, not a listener failure.
                Err(_) if !self.registration.is_attached() => return,
                Err(e) => {
                    self.detach();
                    server.stop(Err(e));
                    return;
                }
            }
        }
    }

    fn on_hangup(&self, ready: Ready) {
        if let Some(server) = self.server.upgrade() {
            let error = self
                .listener
                .take_error()
                .ok()
                .flatten()
                .unwrap_or_else(|| io::Error::other(format!("listener failed: {ready:?}")));
            server.stop(Err(error));
        }
    }
}
