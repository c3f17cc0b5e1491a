//! `NetFd`: a non-blocking socket, its [`PollDesc`], and the locks that give Go's `netFD`
//! semantics (Go's `internal/poll.FD` with its `fdMutex`).
//!
//! - Every operation holds a read guard of `socket` while it runs, waits included; the guard is
//!   only ever tried, never waited for: only `close` takes the write guard, after evicting the
//!   descriptor, so a busy guard means a close is under way and the call fails with the closed
//!   error (Go's `fdMutex` refuses a reference once closing). `close` evicts the descriptor
//!   (waiters wake with the closed error and drop their guards), takes both direction locks
//!   (every call that may wait holds one), then the write guard, so it deregisters from the
//!   poller and closes the fd only once no syscall can still be using that fd number, and it
//!   returns only after that. During a poller's teardown it waits for none of them (see
//!   `close_in_teardown`).
//! - Reads (and accepts) are serialised by `read_lock`, writes by `write_lock`: one waiter per
//!   slot. They are [`QueueLock`]s: blocking calls queue for them, FIFO, and sleep until the
//!   holder hands the lock over; inside a coroutine that sleep is a suspension, since the
//!   holder may be another coroutine of the same poller, suspended with the lock, which only
//!   that thread can resume. Threads and coroutines queue alike. An async poll only tries the
//!   lock, and fails with `ResourceBusy` if a blocking call of the same direction holds it.
//! - `write_lock` also holds the *sticky write error*: an error that stopped a write after some
//!   bytes went out (the call returned that count) is kept and returned by the next write, so
//!   the caller sees the cause (`ECONNRESET`), not its aftermath (`EPIPE`). Timeouts and close
//!   are not kept: the info word already makes them persist.
//! - A read (blocking or async) issues `readv` until `EAGAIN` before it waits, except right after
//!   a short read of a TCP stream, when it waits for the next readiness edge first (see
//!   `read_vectored` and `poll_read_with`).

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::desc::{Mode, PollDesc};
use super::error;
use crate::poll::Poller;
use crate::rt::coop;
use crate::rt::lock::{QueueGuard, QueueLock};
use crate::sys::socket::{accept4, readv, sendmsg, MAX_IOVECS};

pub(crate) struct NetFd {
    socket: RwLock<Option<Socket>>,
    desc: Arc<PollDesc>,
    /// Serialises reads (and accepts); holds whether the last read was short (see
    /// `read_vectored`).
    read_lock: QueueLock<bool>,
    /// A TCP stream socket: the only kind whose short reads prove the queue empty.
    tcp: bool,
    /// Serialises writes; holds the error that cut the last write short, for the next call.
    write_lock: QueueLock<Option<io::Error>>,
    /// The fd number at creation, for `AsRawFd` (which must not take a lock).
    raw: RawFd,
}

impl NetFd {
    /// Takes a non-blocking socket and registers it on `poller`.
    pub(crate) fn new(socket: Socket, poller: Arc<Poller>) -> io::Result<NetFd> {
        let raw = socket.as_raw_fd();
        // TCP proper: other stream protocols (MPTCP, SCTP) may stop reads short differently.
        let tcp = socket.r#type().is_ok_and(|t| t == Type::STREAM)
            && socket
                .domain()
                .is_ok_and(|d| d == Domain::IPV4 || d == Domain::IPV6)
            && socket.protocol().is_ok_and(|p| p == Some(Protocol::TCP));
        let desc = PollDesc::register(raw, poller)?;
        Ok(NetFd {
            raw,
            socket: RwLock::new(Some(socket)),
            desc,
            read_lock: QueueLock::new(false),
            tcp,
            write_lock: QueueLock::new(None),
        })
    }

    pub(crate) fn desc(&self) -> &Arc<PollDesc> {
        &self.desc
    }

    /// Runs `f` on the socket unless it is closed (setsockopt, shutdown, addresses).
    pub(crate) fn with_socket<T>(&self, f: impl FnOnce(&Socket) -> io::Result<T>) -> io::Result<T> {
        let guard = self.guard()?;
        f(socket(&guard))
    }

    fn guard(&self) -> io::Result<RwLockReadGuard<'_, Option<Socket>>> {
        let guard = read_guard(&self.socket)?;
        if guard.is_none() {
            return Err(error::closed());
        }
        Ok(guard)
    }

    /// Reads into `bufs`; a zero-length read returns 0 at once, end of stream is `Ok(0)`.
    pub(crate) fn read_vectored(&self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        coop::proceed();
        let serial = lock_co(&self.read_lock)?;
        let guard = self.guard()?;
        let sock = socket(&guard);
        self.desc.check(Mode::Read)?;
        // Leading empty buffers would use up `readv`'s buffer limit and read nothing.
        let Some(first) = bufs.iter().position(|b| !b.is_empty()) else {
            return Ok(0);
        };
        let bufs = &mut bufs[first..];
        // What one `readv` can fill: it takes at most MAX_IOVECS buffers, so a read that fills
        // those is not short, however many more buffers follow.
        let wanted: usize = bufs.iter().take(MAX_IOVECS).map(|b| b.len()).sum();
        // After a short read of a TCP stream, wait for the next readiness edge instead of
        // issuing a `readv` that would only say EAGAIN (one read per request instead of two).
        // A short read took everything the socket held: TCP copies its whole receive queue and
        // backlog before it returns short, so bytes arriving later raise a new edge (latched in
        // the slot if it comes before we wait). What can stop a read short with more queued —
        // urgent data (its mark), end of stream, an error — comes with `PRI`, `RDHUP`, `HUP` or
        // `ERR` on its event, which marks the descriptor `EDGE_SPENT` for good, before the
        // reader is woken; then reads go until EAGAIN. Unix sockets never take the shortcut:
        // a read stops at a message carrying descriptors or credentials, with no event at all.
        // (One case is not detected: with `SO_RCVLOWAT` above 1, set by the user through the
        // socket, bytes queued below the mark raise no edge, so after a short read they wait
        // for more instead of being returned — as a blocking socket would do.)
        if serial.with(std::mem::take) && !self.desc.edge_spent() {
            self.wait(sock, Mode::Read)?;
        }
        loop {
            match readv(sock, bufs) {
                Ok(n) => {
                    if self.tcp && n > 0 && n < wanted {
                        serial.with(|short| *short = true);
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait(sock, Mode::Read)?,
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes all of `bufs` unless an error or the deadline stops it; then it returns the bytes
    /// written so far, or the error if there were none (the next call reports the error).
    pub(crate) fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        coop::proceed();
        let sticky = lock_co(&self.write_lock)?;
        let guard = self.guard()?;
        let sock = socket(&guard);
        self.desc.check(Mode::Write)?;
        if let Some(e) = sticky.with(Option::take) {
            return Err(e);
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        // The common case sends everything at once without copying the slice list.
        let mut written = match self.send_once(sock, bufs) {
            Ok(n) if n == total => return Ok(n),
            Ok(n) => n,
            Err(e) => return Err(e),
        };
        let mut rest: Vec<IoSlice<'_>> = bufs.to_vec();
        let mut rest = &mut rest[..];
        IoSlice::advance_slices(&mut rest, written);
        while written < total {
            match self.send_once(sock, rest) {
                Ok(n) => {
                    written += n;
                    IoSlice::advance_slices(&mut rest, n);
                }
                Err(e) if written > 0 => {
                    if !error::is_timeout(&e) && !error::is_closed(&e) {
                        sticky.with(|sticky| *sticky = Some(e));
                    }
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(written)
    }

    /// One `sendmsg`, waiting for room first if the socket is full.
    fn send_once(&self, sock: &Socket, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        loop {
            match sendmsg(sock, bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait(sock, Mode::Write)?,
                result => return result,
            }
        }
    }

    /// `PollDesc::wait`, with an error event turned into the socket's own error.
    fn wait(&self, sock: &Socket, mode: Mode) -> io::Result<()> {
        self.desc.wait(mode).map_err(|e| socket_error(sock, e))
    }

    /// Accepts one connection (non-blocking, close-on-exec); `ECONNABORTED` is retried.
    pub(crate) fn accept(&self) -> io::Result<(Socket, SockAddr)> {
        coop::proceed();
        let _serial = lock_co(&self.read_lock)?;
        let guard = self.guard()?;
        let sock = socket(&guard);
        self.desc.check(Mode::Read)?;
        loop {
            match accept_once(sock) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait(sock, Mode::Read)?,
                result => return result,
            }
        }
    }

    /// Sleeps until `until` (an accept loop backing off); close ends it with the closed error.
    pub(crate) fn accept_backoff(&self, until: Instant) -> io::Result<()> {
        let _serial = lock_co(&self.read_lock)?;
        let _guard = self.guard()?;
        self.desc.sleep_until(Mode::Read, until)
    }

    pub(crate) fn poll_read(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
    ) -> Poll<io::Result<usize>> {
        // As in `read_vectored`: leading empty buffers would use up readv's limit.
        let first = bufs
            .iter()
            .position(|b| !b.is_empty())
            .unwrap_or(bufs.len());
        let bufs = &mut bufs[first..];
        let wanted: usize = bufs.iter().take(MAX_IOVECS).map(|b| b.len()).sum();
        self.poll_read_with(cx, wanted, |sock| readv(sock, bufs))
    }

    /// The async read with the syscall given: `read` is one non-blocking read of the socket of
    /// at most `wanted` bytes (`readv` into slices, or `read(2)` into hyper's uninitialised
    /// buffer); `wanted == 0` returns 0 at once (after the closed and deadline checks).
    ///
    /// After a short read of a TCP stream it waits for the next readiness edge before reading
    /// again, as `read_vectored` does (and tokio, which clears its readiness on a short read):
    /// the read that would only say `EAGAIN` is skipped, one `read` per request instead of two.
    /// The short-read flag stays set while the poll is pending, so a poll without a wake (the
    /// task woken for something else) makes no syscall either.
    pub(crate) fn poll_read_with(
        &self,
        cx: &mut Context<'_>,
        wanted: usize,
        read: impl FnMut(&Socket) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        // Only a call that made progress spends budget: a `Pending` gives its unit back.
        std::task::ready!(coop::poll_proceed(cx));
        coop::refund_if_pending(self.poll_read_with_inner(cx, wanted, read))
    }

    fn poll_read_with_inner(
        &self,
        cx: &mut Context<'_>,
        wanted: usize,
        mut read: impl FnMut(&Socket) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        let serial = try_lock(&self.read_lock, &self.desc, "read")?;
        let guard = self.guard()?;
        let sock = socket(&guard);
        self.desc.check(Mode::Read)?;
        if wanted == 0 {
            return Poll::Ready(Ok(0));
        }
        if serial.with(|short| *short) && !self.desc.edge_spent() {
            match self.desc.poll_wait(Mode::Read, cx) {
                // The flag stays: nothing new to read until the edge wakes us.
                Poll::Pending => return Poll::Pending,
                Poll::Ready(woken) => {
                    // Woken, closed or expired: either way the next read goes to the socket.
                    serial.with(|short| *short = false);
                    woken.map_err(|e| socket_error(sock, e))?;
                }
            }
        }
        serial.with(|short| *short = false);
        // The wake that brought us here left its readiness latched (a woken task re-polls
        // rather than consuming it in a wait, as a blocking waiter does). The read below covers
        // it; left latched, it would let the wait after a short read return at once, for a read
        // that only says EAGAIN.
        self.desc.take_ready(Mode::Read);
        loop {
            match read(sock) {
                Ok(n) => {
                    if self.tcp && n > 0 && n < wanted {
                        serial.with(|short| *short = true);
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::task::ready!(self.desc.poll_wait(Mode::Read, cx))
                        .map_err(|e| socket_error(sock, e))?
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// One write as far as the socket takes it (`AsyncWrite` allows short writes).
    pub(crate) fn poll_write(
        &self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(coop::poll_proceed(cx));
        coop::refund_if_pending(self.poll_write_inner(cx, bufs))
    }

    fn poll_write_inner(
        &self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let sticky = try_lock(&self.write_lock, &self.desc, "write")?;
        let guard = self.guard()?;
        let sock = socket(&guard);
        self.desc.check(Mode::Write)?;
        if let Some(e) = sticky.with(Option::take) {
            return Poll::Ready(Err(e));
        }
        loop {
            match sendmsg(sock, bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::task::ready!(self.desc.poll_wait(Mode::Write, cx))?
                }
                result => return Poll::Ready(result),
            }
        }
    }

    pub(crate) fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(Socket, SockAddr)>> {
        std::task::ready!(coop::poll_proceed(cx));
        coop::refund_if_pending(self.poll_accept_inner(cx))
    }

    fn poll_accept_inner(&self, cx: &mut Context<'_>) -> Poll<io::Result<(Socket, SockAddr)>> {
        let _serial = try_lock(&self.read_lock, &self.desc, "accept")?;
        let guard = self.guard()?;
        let sock = socket(&guard);
        self.desc.check(Mode::Read)?;
        loop {
            match accept_once(sock) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::task::ready!(self.desc.poll_wait(Mode::Read, cx))
                        .map_err(|e| socket_error(sock, e))?
                }
                result => return Poll::Ready(result),
            }
        }
    }

    /// Waits until the socket is writable (a connect in progress finished); `Ok` means look at
    /// `SO_ERROR`.
    pub(crate) fn wait_writable(&self) -> io::Result<()> {
        let _serial = lock_co(&self.write_lock)?;
        let _guard = self.guard()?;
        self.desc.wait(Mode::Write)
    }

    pub(crate) fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let _serial = try_lock(&self.write_lock, &self.desc, "write")?;
        let _guard = self.guard()?;
        self.desc.poll_wait(Mode::Write, cx)
    }

    pub(crate) fn set_deadline(&self, mode: Option<Mode>, at: Option<Instant>) -> io::Result<()> {
        let _guard = self.guard()?;
        match mode {
            Some(mode) => self.desc.set_deadline(mode, at),
            None => {
                self.desc.set_deadline(Mode::Read, at)?;
                self.desc.set_deadline(Mode::Write, at)
            }
        }
    }

    /// Closes the socket: wakes every waiter with the closed error, waits for calls in flight to
    /// leave, deregisters, closes the fd. A second close returns the closed error.
    pub(crate) fn close(&self) -> io::Result<()> {
        if !self.desc.evict() {
            return Err(error::closed());
        }
        if crate::rt::sched::tearing_down() {
            self.close_in_teardown();
            return Ok(());
        }
        // The calls in flight, woken by the eviction, leave. Every call that may wait holds
        // its direction's lock: once close holds both, what still holds the socket is a call
        // that never waits (options, addresses, deadlines, an async poll), on another thread.
        let _reads = self.read_lock.lock();
        let _writes = self.write_lock.lock();
        let mut socket = write_guard(&self.socket);
        self.desc.deregister();
        drop(socket.take());
        Ok(())
    }

    /// Close from a destructor run by a poller's shutdown (`rt::sched`'s teardown order): the
    /// calls in flight may be coroutines suspended on this very thread, resumed only to be
    /// unwound after this destructor, so their locks are not waited for. Uncontended, this is
    /// an ordinary close. Otherwise the socket is shut down (the peer sees the end, and any
    /// later syscall on it fails at once) and the fd is left for `Drop` to close: it must not be
    /// closed while a call could still use its number, and a suspended call is not in a syscall
    /// but still holds the socket.
    fn close_in_teardown(&self) {
        let serial = (self.read_lock.try_lock(), self.write_lock.try_lock());
        if let (Some(_), Some(_)) = serial {
            if let Some(mut socket) = try_take_write(&self.socket) {
                self.desc.deregister();
                drop(socket.take());
                return;
            }
        }
        drop(serial);
        if let Ok(guard) = self.socket.try_read() {
            if let Some(socket) = guard.as_ref() {
                let _ = socket.shutdown(std::net::Shutdown::Both);
            }
        }
        log::debug!(
            "netpoll: close during a poller's shutdown while calls hold the socket: shut down \
             now, the fd is closed when the connection is dropped"
        );
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.desc.is_closing()
    }

    /// The fd number while open, -1 once a close has started (the number may be reused).
    pub(crate) fn raw_fd(&self) -> RawFd {
        if self.is_closed() {
            -1
        } else {
            self.raw
        }
    }

    /// Takes the socket back, open, off its poller (the reactor face registers a dialed socket
    /// its own way). Nothing else can be using it: `self` is owned.
    pub(crate) fn into_socket(mut self) -> io::Result<Socket> {
        let socket = self.socket.get_mut().unwrap_or_else(|e| e.into_inner());
        let Some(socket) = socket.take() else {
            return Err(error::closed());
        };
        self.desc.evict();
        self.desc.deregister();
        Ok(socket)
    }
}

impl Drop for NetFd {
    fn drop(&mut self) {
        let socket = self.socket.get_mut().unwrap_or_else(|e| e.into_inner());
        if socket.is_some() {
            self.desc.evict();
            self.desc.deregister();
            drop(socket.take());
        }
    }
}

fn accept_once(listener: &Socket) -> io::Result<(Socket, SockAddr)> {
    loop {
        match accept4(listener) {
            Ok(accepted) => return Ok(accepted),
            // The peer gave up while queued: not this listener's error (Go retries too).
            Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Replaces an `EventError` with the socket's pending error, if it has one.
fn socket_error(socket: &Socket, e: io::Error) -> io::Error {
    if !e
        .get_ref()
        .is_some_and(|inner| inner.is::<error::EventError>())
    {
        return e;
    }
    match socket.take_error() {
        Ok(Some(socket_error)) => socket_error,
        _ => e,
    }
}

fn socket<'a>(guard: &'a RwLockReadGuard<'_, Option<Socket>>) -> &'a Socket {
    guard.as_ref().expect("guard() checked the socket is open")
}

/// Takes a direction lock, waiting in its FIFO queue: a coroutine suspends (the holder may be
/// another coroutine of its poller, suspended with the lock), a thread parks. Refused (the
/// closed error) only during a poller's teardown, where nothing waits.
fn lock_co<T>(l: &QueueLock<T>) -> io::Result<QueueGuard<'_, T>> {
    l.lock().ok_or_else(error::closed)
}

fn try_take_write<T>(l: &RwLock<T>) -> Option<RwLockWriteGuard<'_, T>> {
    match l.try_write() {
        Ok(guard) => Some(guard),
        Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// A read guard of the socket, never waited for: only close takes the write guard, after it
/// evicted the descriptor, so a read guard that is not free now means a close is under way and
/// the call fails with the closed error (Go's `fdMutex` refuses a reference once closing).
/// Waiting would also be wrong: std's `RwLock` makes new readers wait while a writer waits,
/// and the readers that writer waits for may be coroutines suspended on this thread.
fn read_guard<T>(l: &RwLock<T>) -> io::Result<RwLockReadGuard<'_, T>> {
    match l.try_read() {
        Ok(guard) => Ok(guard),
        Err(TryLockError::Poisoned(e)) => Ok(e.into_inner()),
        Err(TryLockError::WouldBlock) => Err(error::closed()),
    }
}

/// The write guard close takes once it holds both direction locks: the readers left are calls
/// that never wait, on other threads. A thread blocks for them; a coroutine must not block its
/// poller even so (a user's `with_fd` closure could, against its documentation, suspend), so it
/// naps on a poller timer between tries (1 ms at most; reached only when such a call is in flight
/// at that very moment).
fn write_guard<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    if !crate::rt::in_coroutine() {
        return l.write().unwrap_or_else(|e| e.into_inner());
    }
    let mut nap = Duration::from_micros(50);
    loop {
        if let Some(guard) = try_take_write(l) {
            return guard;
        }
        crate::rt::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(1));
    }
}

/// An async poll's lock: taken now or refused. Busy because a close holds it (close takes both
/// direction locks) is the closed error, not "another call in progress".
fn try_lock<'a, T>(
    l: &'a QueueLock<T>,
    desc: &PollDesc,
    direction: &str,
) -> io::Result<QueueGuard<'a, T>> {
    l.try_lock().ok_or_else(|| {
        if desc.is_closing() {
            error::closed()
        } else {
            error::busy(direction)
        }
    })
}
