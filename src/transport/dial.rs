//! `Dialer` (Go's `net.Dialer`), the one dial code of both faces: timeouts and deadlines, local
//! address, keepalive, a control hook, name resolution, addresses tried in order with the
//! remaining time split between them, happy eyeballs between IPv6 and IPv4, self-connect retry,
//! cancellation from another thread. It yields a connected, registered [`NetFd`]: the Go-net
//! face wraps it as a `TcpConn`/`UnixConn`, the reactor face takes its socket for a
//! `Connection`.

use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::Poll;
use std::time::{Duration, Instant};

use socket2::{Domain, SockAddr, Socket};

use super::desc::{Mode, PollDesc};
use super::error;
use super::fd::NetFd;
use super::listen::{context, family_filter, no_address, split_host_port, ControlHook};
use super::options::{apply_keepalive, poller_for, KeepAliveConfig};
use crate::poll::PollManager;
use crate::rt::Mailbox;
use crate::sys::socket::stream_socket;

/// Go's floor for one address's share of the remaining dial time.
const MIN_ADDRESS_TIMEOUT: Duration = Duration::from_secs(2);
/// Go's default happy-eyeballs fallback delay.
const DEFAULT_FALLBACK_DELAY: Duration = Duration::from_millis(300);

/// Cancels dials from another thread (the part of Go's `context` a dial uses). Cheap to clone;
/// every clone cancels the same dials.
#[derive(Clone, Default)]
pub struct CancelToken {
    inner: Arc<CancelInner>,
}

#[derive(Default)]
struct CancelInner {
    state: Mutex<CancelState>,
}

#[derive(Default)]
struct CancelState {
    canceled: bool,
    /// Descriptors of connects in progress, woken by `cancel`.
    watching: Vec<Weak<PollDesc>>,
    /// Tokens cancelled with this one (the two sides of a happy-eyeballs race).
    children: Vec<CancelToken>,
}

impl CancelToken {
    /// A token that has not been cancelled.
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    /// Cancels every dial using this token, now and later: they fail with an error for which
    /// [`is_canceled`](crate::net::is_canceled) holds, and sockets they made are closed.
    pub fn cancel(&self) {
        let (watching, children) = {
            let mut state = lock(&self.inner.state);
            state.canceled = true;
            (
                std::mem::take(&mut state.watching),
                std::mem::take(&mut state.children),
            )
        };
        for desc in watching.iter().filter_map(Weak::upgrade) {
            // A deadline long past wakes the connect's wait at once (Go does the same).
            let _ = desc.set_deadline(Mode::Write, Some(Instant::now()));
        }
        for child in children {
            child.cancel();
        }
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_canceled(&self) -> bool {
        lock(&self.inner.state).canceled
    }

    fn child(&self) -> CancelToken {
        let child = CancelToken::new();
        let mut state = lock(&self.inner.state);
        if state.canceled {
            lock(&child.inner.state).canceled = true;
        } else {
            state.children.retain(|c| Arc::strong_count(&c.inner) > 1);
            state.children.push(child.clone());
        }
        child
    }

    /// Watches `desc` while its connect is in progress; the guard stops watching. `None` (and
    /// nothing watched) if the token is already cancelled.
    fn watch(&self, desc: &Arc<PollDesc>) -> Option<Watch<'_>> {
        let mut state = lock(&self.inner.state);
        if state.canceled {
            return None;
        }
        state.watching.retain(|w| w.strong_count() > 0);
        state.watching.push(Arc::downgrade(desc));
        Some(Watch {
            token: self,
            desc: Arc::downgrade(desc),
        })
    }
}

/// A connect watched by a [`CancelToken`]; dropping it stops the watch, so cancelling the token
/// later leaves the established connection alone.
struct Watch<'a> {
    token: &'a CancelToken,
    desc: Weak<PollDesc>,
}

impl Watch<'_> {
    /// Stops watching; then fails if the token was cancelled meanwhile, so a cancel racing a
    /// successful connect still fails the dial (as in Go) and never touches a returned
    /// connection.
    fn finish(self) -> io::Result<()> {
        self.unwatch();
        if self.token.is_canceled() {
            return Err(error::canceled());
        }
        Ok(())
    }

    fn unwatch(&self) {
        lock(&self.token.inner.state)
            .watching
            .retain(|w| !w.ptr_eq(&self.desc));
    }
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        self.unwatch();
    }
}

impl fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelToken")
            .field("canceled", &self.is_canceled())
            .finish()
    }
}

/// How to dial (Go's `net.Dialer`). Defaults: no timeout, happy eyeballs after 300 ms, keepalive
/// 15 s, `TCP_NODELAY`, the global pollers.
///
/// Its `dial_tcp`/`dial_unix` make the Go-net face's connections; the reactor face's
/// [`Dialer`](crate::Dialer) wraps one to make [`Connection`](crate::Connection)s.
///
/// ```
/// use std::time::Duration;
/// use netpoll::net::{self, CancelToken, Dialer, KeepAliveConfig};
///
/// let listener = net::listen_tcp("tcp", "127.0.0.1:0")?;
/// let dialer = Dialer::new()
///     .timeout(Duration::from_secs(5)) // the whole dial: resolution and every address
///     .keepalive(Some(KeepAliveConfig { idle: Duration::from_secs(30), ..Default::default() }))
///     .control(|socket| socket.set_recv_buffer_size(256 << 10)); // before connect
/// let conn = dialer.dial_tcp("tcp", listener.local_addr())?;
/// assert_eq!(conn.peer_addr(), listener.local_addr());
///
/// // A token cancels dials from another thread; one cancelled already makes no socket at all.
/// let token = CancelToken::new();
/// token.cancel();
/// let err = dialer.cancel_token(token).dial_tcp("tcp", listener.local_addr()).unwrap_err();
/// assert!(net::is_canceled(&err));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct Dialer {
    timeout: Option<Duration>,
    deadline: Option<Instant>,
    local_addr: Option<SocketAddr>,
    keepalive: Option<KeepAliveConfig>,
    fallback_delay: Option<Duration>,
    control: Option<ControlHook>,
    cancel: Option<CancelToken>,
    manager: Option<Arc<PollManager>>,
}

impl Default for Dialer {
    fn default() -> Self {
        Dialer {
            timeout: None,
            deadline: None,
            local_addr: None,
            keepalive: Some(KeepAliveConfig::default()),
            fallback_delay: Some(DEFAULT_FALLBACK_DELAY),
            control: None,
            cancel: None,
            manager: None,
        }
    }
}

impl fmt::Debug for Dialer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dialer")
            .field("timeout", &self.timeout)
            .field("deadline", &self.deadline)
            .field("local_addr", &self.local_addr)
            .field("keepalive", &self.keepalive)
            .field("fallback_delay", &self.fallback_delay)
            .field("control", &self.control.is_some())
            .field("cancel", &self.cancel)
            .finish()
    }
}

impl Dialer {
    /// A dialer with the defaults.
    pub fn new() -> Dialer {
        Dialer::default()
    }

    /// Bounds the whole dial, name resolution and every address included. Zero means no
    /// timeout, as in Go.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = (!timeout.is_zero()).then_some(timeout);
        self
    }

    /// An absolute deadline for the dial; the earlier of this and the timeout applies.
    pub fn deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Binds the socket to this local address before connecting.
    pub fn local_addr(mut self, addr: SocketAddr) -> Self {
        self.local_addr = Some(addr);
        self
    }

    /// Keepalive for dialed TCP connections; `None` turns it off.
    pub fn keepalive(mut self, config: Option<KeepAliveConfig>) -> Self {
        self.keepalive = config;
        self
    }

    /// How long the primary address family gets before the other one is tried in parallel
    /// (RFC 6555); `None` disables the race.
    pub fn fallback_delay(mut self, delay: Option<Duration>) -> Self {
        self.fallback_delay = delay;
        self
    }

    /// A hook run on each socket before it is bound or connected.
    pub fn control(
        mut self,
        hook: impl Fn(&Socket) -> io::Result<()> + Send + Sync + 'static,
    ) -> Self {
        self.control = Some(Arc::new(hook));
        self
    }

    /// Dials started with this dialer can be cancelled through `token`.
    pub fn cancel_token(mut self, token: CancelToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// Registers dialed connections on these pollers.
    pub fn poll_manager(mut self, manager: Arc<PollManager>) -> Self {
        self.manager = Some(manager);
        self
    }

    fn effective_deadline(&self) -> Option<Instant> {
        let by_timeout = self.timeout.map(|t| Instant::now() + t);
        match (by_timeout, self.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The pollers dialed connections register on (`None`: the global ones).
    pub(crate) fn manager(&self) -> Option<&Arc<PollManager>> {
        self.manager.as_ref()
    }

    /// Connects to `address` (`host:port`) over `network` (`tcp`, `tcp4`, `tcp6`): see
    /// `net::Dialer::dial_tcp`.
    pub(crate) fn dial_tcp_fd(&self, network: &str, address: &str) -> io::Result<NetFd> {
        let deadline = self.effective_deadline();
        let token = self.cancel.clone().unwrap_or_default();
        self.resolve_and_dial(network, address, deadline, &token)
            .map_err(|e| context("dial", network, address, e))
    }

    fn resolve_and_dial(
        &self,
        network: &str,
        address: &str,
        deadline: Option<Instant>,
        token: &CancelToken,
    ) -> io::Result<NetFd> {
        let want = family_filter(network)?;
        let (host, port) = split_host_port(address)?;
        let host = if host.is_empty() { "localhost" } else { host };
        let addrs: Vec<SocketAddr> = resolve(host, port)?.into_iter().filter(want).collect();
        if addrs.is_empty() {
            return Err(no_address(network));
        }
        may_start(deadline, token)?;
        let (primary, fallback) = split_families(addrs);
        match (self.fallback_delay, fallback.is_empty()) {
            (Some(delay), false) => self.dial_parallel(primary, fallback, delay, deadline, token),
            _ => {
                let mut all = primary;
                all.extend(fallback);
                self.dial_serial(&all, deadline, token)
            }
        }
    }

    /// Happy eyeballs: the primary family at once, the fallback after `delay` or as soon as
    /// the primary fails; the first success wins and the other is cancelled and closed. Each
    /// side is a coroutine on the caller's poller when the caller is a coroutine (the race then
    /// suspends instead of blocking the poller), a thread otherwise.
    fn dial_parallel(
        &self,
        primary: Vec<SocketAddr>,
        fallback: Vec<SocketAddr>,
        delay: Duration,
        deadline: Option<Instant>,
        token: &CancelToken,
    ) -> io::Result<NetFd> {
        let results = Mailbox::<(bool, io::Result<NetFd>)>::new(0);
        let poller = crate::rt::current_poller();
        let start = |is_primary: bool, addrs: Vec<SocketAddr>| -> io::Result<CancelToken> {
            let (dialer, results, side) = (self.clone(), results.clone(), token.child());
            let cancel = side.clone();
            results.add_sender();
            let attempt = move || {
                let result = dialer.dial_serial(&addrs, deadline, &side);
                // Once the race is decided nobody receives: the loser's connection stays in
                // the mailbox and is closed when the mailbox goes.
                results.put((is_primary, result));
            };
            match &poller {
                Some(poller) => crate::rt::Builder::new()
                    .spawn_on(poller, attempt)
                    .map(|_| cancel),
                None => std::thread::Builder::new()
                    .name("netpoll-dial".into())
                    .spawn(attempt)
                    .map(|_| cancel),
            }
        };
        let primary_side = start(true, primary)?;
        let mut fallback_side = None;
        let mut fallback_addrs = Some(fallback);
        let mut primary_error = None;
        let mut fallback_error = None;
        let fallback_at = Instant::now() + delay;
        loop {
            let pending = usize::from(primary_error.is_none())
                + usize::from(fallback_side.is_some() && fallback_error.is_none());
            if pending == 0 && fallback_addrs.is_none() {
                break;
            }
            // With the fallback not started the primary is pending, so `None` is the fallback
            // delay passing; afterwards it means every side has reported.
            let waiting_for_fallback = fallback_addrs.is_some();
            let received = results.recv(waiting_for_fallback.then_some(fallback_at));
            match received {
                Some((_, Ok(conn))) => {
                    primary_side.cancel();
                    if let Some(side) = &fallback_side {
                        CancelToken::cancel(side);
                    }
                    return Ok(conn);
                }
                Some((true, Err(e))) => {
                    primary_error = Some(e);
                    if let Some(addrs) = fallback_addrs.take() {
                        fallback_side = Some(start(false, addrs)?);
                    }
                }
                Some((false, Err(e))) => fallback_error = Some(e),
                None if waiting_for_fallback => {
                    if let Some(addrs) = fallback_addrs.take() {
                        fallback_side = Some(start(false, addrs)?);
                    }
                }
                None => break,
            }
        }
        Err(primary_error
            .or(fallback_error)
            .unwrap_or_else(|| io::Error::other("dial attempts ended without a result")))
    }

    /// Tries `addrs` in order; each gets an equal share of the time left (at least 2 s).
    fn dial_serial(
        &self,
        addrs: &[SocketAddr],
        deadline: Option<Instant>,
        token: &CancelToken,
    ) -> io::Result<NetFd> {
        let mut first_error = None;
        for (i, &addr) in addrs.iter().enumerate() {
            if token.is_canceled() {
                return Err(error::canceled());
            }
            let partial = match deadline {
                None => None,
                Some(deadline) => {
                    Some(partial_deadline(Instant::now(), deadline, addrs.len() - i)?)
                }
            };
            match self.dial_addr(addr, partial, token) {
                Ok(conn) => return Ok(conn),
                Err(e) if error::is_canceled(&e) => return Err(e),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or_else(|| no_address("tcp")))
    }

    /// One address, retrying a self-connect or a spurious `EADDRNOTAVAIL` twice when no local
    /// port was asked for (Go does the same).
    fn dial_addr(
        &self,
        addr: SocketAddr,
        deadline: Option<Instant>,
        token: &CancelToken,
    ) -> io::Result<NetFd> {
        let may_retry = self.local_addr.is_none_or(|a| a.port() == 0);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let socket = self.tcp_socket(addr)?;
            let result = self.connect(socket, &addr.into(), Some(&addr), deadline, token);
            let retry = may_retry && attempt <= 2;
            match result {
                Ok(fd) => {
                    let local = fd.with_socket(|s| s.local_addr())?;
                    if retry && local.as_socket() == Some(addr) {
                        continue; // connected to ourselves: TCP simultaneous open
                    }
                    return Ok(fd);
                }
                Err(e) if retry && e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// A TCP socket with the dialer's options (`TCP_NODELAY`, keepalive).
    fn tcp_socket(&self, addr: SocketAddr) -> io::Result<Socket> {
        let socket = stream_socket(Domain::for_address(addr))?;
        socket.set_tcp_nodelay(true)?;
        apply_keepalive(&socket, self.keepalive)?;
        Ok(socket)
    }

    /// Connects a Unix-socket path.
    pub(crate) fn dial_unix_fd(&self, path: &Path) -> io::Result<NetFd> {
        let deadline = self.effective_deadline();
        let token = self.cancel.clone().unwrap_or_default();
        let display = path.display().to_string();
        let dial = || {
            may_start(deadline, &token)?;
            let socket = stream_socket(Domain::UNIX)?;
            self.connect(socket, &SockAddr::unix(path)?, None, deadline, &token)
        };
        dial().map_err(|e| context("dial", "unix", &display, e))
    }

    /// Control hook, bind, non-blocking connect, registration on a poller, then (if the connect
    /// is in progress) a wait for writability bounded by `deadline`, `SO_ERROR`, and
    /// `getpeername` to confirm.
    fn connect(
        &self,
        socket: Socket,
        target: &SockAddr,
        inet_target: Option<&SocketAddr>,
        deadline: Option<Instant>,
        token: &CancelToken,
    ) -> io::Result<NetFd> {
        let in_progress = self.start_connect(&socket, target, inet_target.is_some())?;
        let fd = NetFd::new(socket, poller_for(self.manager.as_ref(), inet_target)?)?;
        if !in_progress {
            return Ok(fd);
        }
        fd.set_deadline(Some(Mode::Write), deadline)?;
        let Some(watch) = token.watch(fd.desc()) else {
            return Err(error::canceled());
        };
        loop {
            let waited = fd.wait_writable();
            if token.is_canceled() {
                // Even a connect that succeeded in the race is undone (as in Go).
                return Err(error::canceled());
            }
            waited?;
            if connected(&fd)? {
                break;
            }
        }
        watch.finish()?;
        fd.set_deadline(Some(Mode::Write), None)?;
        Ok(fd)
    }

    /// Control hook, optional bind, `connect`; true while the connect is in progress.
    fn start_connect(&self, socket: &Socket, target: &SockAddr, inet: bool) -> io::Result<bool> {
        if let Some(control) = &self.control {
            control(socket)?;
        }
        if let (Some(local), true) = (self.local_addr, inet) {
            socket.bind(&local.into())?;
        }
        match socket.connect(target) {
            Ok(()) => Ok(false),
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// The async `dial_tcp`, shaped like the blocking one: a host name is resolved on the
    /// handler pool (a literal address needs no lookup), bounded by the deadline; then happy
    /// eyeballs between the families, each side trying its addresses in order.
    pub(crate) async fn dial_tcp_fd_async(
        &self,
        network: &str,
        address: &str,
    ) -> io::Result<NetFd> {
        let deadline = self.effective_deadline();
        let token = self.cancel.clone().unwrap_or_default();
        self.resolve_and_dial_async(network, address, deadline, &token)
            .await
            .map_err(|e| context("dial", network, address, e))
    }

    async fn resolve_and_dial_async(
        &self,
        network: &str,
        address: &str,
        deadline: Option<Instant>,
        token: &CancelToken,
    ) -> io::Result<NetFd> {
        let want = family_filter(network)?;
        may_start(deadline, token)?;
        let (host, port) = split_host_port(address)?;
        let host = if host.is_empty() { "localhost" } else { host };
        let addrs = resolve_async(&crate::rt::default_pool(), host, port, deadline).await?;
        let addrs: Vec<SocketAddr> = addrs.into_iter().filter(want).collect();
        if addrs.is_empty() {
            return Err(no_address(network));
        }
        may_start(deadline, token)?;
        let (primary, fallback) = split_families(addrs);
        match (self.fallback_delay, fallback.is_empty()) {
            (Some(delay), false) => {
                self.dial_parallel_async(&primary, &fallback, delay, deadline, token)
                    .await
            }
            _ => {
                let mut all = primary;
                all.extend(fallback);
                self.dial_serial_async(&all, deadline, token).await
            }
        }
    }

    /// Happy eyeballs as two futures polled together: the primary family at once, the
    /// fallback after `delay` (a poller timer) or as soon as the primary fails; the first
    /// success wins, and the other future is dropped, which closes its socket. The caller's
    /// token cancels both sides (each watches its own connect).
    async fn dial_parallel_async(
        &self,
        primary: &[SocketAddr],
        fallback: &[SocketAddr],
        delay: Duration,
        deadline: Option<Instant>,
        token: &CancelToken,
    ) -> io::Result<NetFd> {
        let mut primary = std::pin::pin!(self.dial_serial_async(primary, deadline, token));
        let mut fallback = std::pin::pin!(self.dial_serial_async(fallback, deadline, token));
        let mut fallback_timer = crate::rt::time::sleep(delay);
        let mut fallback_started = false;
        let mut primary_error: Option<io::Error> = None;
        let mut fallback_error: Option<io::Error> = None;
        poll_fn(|cx| {
            if primary_error.is_none() {
                if let Poll::Ready(result) = primary.as_mut().poll(cx) {
                    match result {
                        Ok(fd) => return Poll::Ready(Ok(fd)),
                        Err(e) if error::is_canceled(&e) => return Poll::Ready(Err(e)),
                        Err(e) => {
                            primary_error = Some(e);
                            fallback_started = true;
                        }
                    }
                }
            }
            if !fallback_started && Pin::new(&mut fallback_timer).poll(cx).is_ready() {
                fallback_started = true;
            }
            if fallback_started && fallback_error.is_none() {
                if let Poll::Ready(result) = fallback.as_mut().poll(cx) {
                    match result {
                        Ok(fd) => return Poll::Ready(Ok(fd)),
                        Err(e) if error::is_canceled(&e) => return Poll::Ready(Err(e)),
                        Err(e) => fallback_error = Some(e),
                    }
                }
            }
            if fallback_error.is_some() {
                // Both sides failed: the primary's error, as the blocking dial reports.
                if let Some(e) = primary_error.take() {
                    return Poll::Ready(Err(e));
                }
            }
            Poll::Pending
        })
        .await
    }

    /// Tries `addrs` in order; each gets an equal share of the time left (at least 2 s).
    async fn dial_serial_async(
        &self,
        addrs: &[SocketAddr],
        deadline: Option<Instant>,
        token: &CancelToken,
    ) -> io::Result<NetFd> {
        let mut first_error = None;
        for (i, &addr) in addrs.iter().enumerate() {
            may_start(deadline, token)?;
            let partial = match deadline {
                None => None,
                Some(d) => Some(partial_deadline(Instant::now(), d, addrs.len() - i)?),
            };
            match self.connect_async(addr, partial, token).await {
                Ok(conn) => return Ok(conn),
                Err(e) if error::is_canceled(&e) => return Err(e),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or_else(|| no_address("tcp")))
    }

    async fn connect_async(
        &self,
        addr: SocketAddr,
        deadline: Option<Instant>,
        token: &CancelToken,
    ) -> io::Result<NetFd> {
        let socket = self.tcp_socket(addr)?;
        let in_progress = self.start_connect(&socket, &addr.into(), true)?;
        let fd = NetFd::new(socket, poller_for(self.manager.as_ref(), Some(&addr))?)?;
        if in_progress {
            fd.set_deadline(Some(Mode::Write), deadline)?;
            let Some(watch) = token.watch(fd.desc()) else {
                return Err(error::canceled());
            };
            loop {
                let waited = poll_fn(|cx| fd.poll_writable(cx)).await;
                if token.is_canceled() {
                    return Err(error::canceled());
                }
                waited?;
                if connected(&fd)? {
                    break;
                }
            }
            watch.finish()?;
            fd.set_deadline(Some(Mode::Write), None)?;
        }
        Ok(fd)
    }
}

/// After a writable wake: the connect's outcome (`SO_ERROR`), or false when the wake came
/// before the handshake finished and the caller should wait again.
fn connected(fd: &NetFd) -> io::Result<bool> {
    fd.with_socket(|s| match s.take_error()? {
        Some(e) => Err(e),
        None => match s.peer_addr() {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Ok(false),
            Err(e) => Err(e),
        },
    })
}

/// Refuses to start (or go on with) a dial whose token is cancelled or whose time is up.
fn may_start(deadline: Option<Instant>, token: &CancelToken) -> io::Result<()> {
    if token.is_canceled() {
        return Err(error::canceled());
    }
    if deadline.is_some_and(|d| d <= Instant::now()) {
        return Err(error::timeout());
    }
    Ok(())
}

/// Go's `partialDeadline`: an equal share of the time left for each remaining address, at
/// least 2 s (or all of it when less is left).
fn partial_deadline(now: Instant, deadline: Instant, remaining: usize) -> io::Result<Instant> {
    let left = deadline.saturating_duration_since(now);
    if left.is_zero() {
        return Err(error::timeout());
    }
    let share = left / remaining.max(1) as u32;
    let share = if share < MIN_ADDRESS_TIMEOUT {
        left.min(MIN_ADDRESS_TIMEOUT)
    } else {
        share
    };
    Ok(now + share)
}

/// The primary family is the first address's; the rest go to the fallback (Go's
/// `partition`).
fn split_families(addrs: Vec<SocketAddr>) -> (Vec<SocketAddr>, Vec<SocketAddr>) {
    let primary_is_v6 = addrs.first().is_some_and(SocketAddr::is_ipv6);
    addrs
        .into_iter()
        .partition(|a| a.is_ipv6() == primary_is_v6)
}

/// Resolves `host` (a literal needs no lookup). Inside a coroutine `getaddrinfo` runs on the
/// handler pool through [`crate::rt::blocking`], so it does not stall the poller (if the pool
/// refuses the job, `blocking` runs it inline: the dial still resolves, nothing panics).
fn resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    if crate::rt::in_coroutine() {
        let host = host.to_string();
        return crate::rt::blocking(move || {
            (host.as_str(), port)
                .to_socket_addrs()
                .map(Iterator::collect)
        });
    }
    (host, port).to_socket_addrs().map(Iterator::collect)
}

/// Resolves `host` for async code: a literal needs no lookup (and touches no pool); a name's
/// `getaddrinfo` runs on `pool` and its result comes back through a waker (the awaiting task's
/// thread never blocks), bounded by `deadline` on a poller timer. A pool that refuses the job
/// leaves the lookup to run inline, with a warning (`rt::oneshot::blocking_async`).
async fn resolve_async(
    pool: &crate::rt::HandlerPool,
    host: &str,
    port: u16,
    deadline: Option<Instant>,
) -> io::Result<Vec<SocketAddr>> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let host = host.to_string();
    let lookup = crate::rt::oneshot::blocking_async(pool, move || {
        (host.as_str(), port)
            .to_socket_addrs()
            .map(Iterator::collect)
    });
    match deadline {
        None => lookup.await,
        // A lookup still running at the deadline finishes on the pool, unheard.
        Some(deadline) => {
            let remaining = deadline.saturating_duration_since(Instant::now());
            crate::rt::time::timeout(remaining, lookup)
                .await
                .unwrap_or_else(|_| Err(error::timeout()))
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_deadline_splits_time_with_a_two_second_floor() {
        let now = Instant::now();
        let d = |s| now + Duration::from_secs(s);
        assert_eq!(partial_deadline(now, d(30), 3).unwrap(), d(10));
        assert_eq!(partial_deadline(now, d(3), 3).unwrap(), d(2));
        assert_eq!(partial_deadline(now, d(1), 3).unwrap(), d(1));
        assert!(error::is_timeout(
            &partial_deadline(now, now, 1).unwrap_err()
        ));
    }

    #[test]
    fn families_split_by_the_first_address() {
        let v6: SocketAddr = "[::1]:1".parse().unwrap();
        let v4: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let (p, f) = split_families(vec![v6, v4, v6]);
        assert_eq!((p, f), (vec![v6, v6], vec![v4]));
    }

    use crate::rt::task::block_on;
    use crate::rt::HandlerPool;

    #[test]
    fn a_literal_address_resolves_without_the_pool() {
        let pool = HandlerPool::new(1);
        let addrs = block_on(resolve_async(&pool, "127.0.0.1", 80, None)).unwrap();
        assert_eq!(addrs, vec!["127.0.0.1:80".parse().unwrap()]);
        let addrs = block_on(resolve_async(&pool, "::1", 80, None)).unwrap();
        assert_eq!(addrs, vec!["[::1]:80".parse().unwrap()]);
        assert_eq!(pool.workers(), 0, "a literal address started a pool thread");
    }

    #[test]
    fn a_name_resolves_on_the_pool_or_inline_when_the_pool_refuses() {
        let pool = HandlerPool::new(1);
        let addrs = block_on(resolve_async(&pool, "localhost", 80, None)).unwrap();
        assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 80));
        assert_eq!(pool.workers(), 1, "the lookup did not run on the pool");

        let refusing = HandlerPool::new(1);
        refusing.shutdown();
        let addrs = block_on(resolve_async(&refusing, "localhost", 80, None)).unwrap();
        assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 80));
    }

    /// A listener with a full queue that never accepts (see `tests/net_dial.rs`), or `None`
    /// when this machine completes every connect anyway.
    fn blackhole() -> Option<(
        SocketAddr,
        crate::net::TcpListener,
        Vec<crate::net::TcpConn>,
    )> {
        let listener = crate::net::ListenConfig::new()
            .with_backlog(1)
            .listen_tcp_addr("127.0.0.1:0".parse().unwrap())
            .ok()?;
        let addr = listener.local_addr();
        let (mut queued, mut timeouts) = (Vec::new(), 0);
        for _ in 0..16 {
            match Dialer::new()
                .timeout(Duration::from_millis(100))
                .dial_tcp("tcp", addr)
            {
                Ok(conn) => {
                    queued.push(conn);
                    timeouts = 0;
                }
                Err(e) if error::is_timeout(&e) => {
                    timeouts += 1;
                    if timeouts == 2 {
                        return Some((addr, listener, queued));
                    }
                }
                Err(_) => return None,
            }
        }
        None
    }

    fn closed_port() -> SocketAddr {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    }

    #[test]
    fn async_happy_eyeballs_starts_the_fallback_after_the_delay() {
        let Some((hole, _listener, _queued)) = blackhole() else {
            eprintln!("SKIPPED async happy eyeballs with a hanging primary: no blackhole here");
            return;
        };
        let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = open.local_addr().unwrap();
        let delay = Duration::from_millis(200);
        let started = Instant::now();
        let fd = block_on(Dialer::new().dial_parallel_async(
            &[hole],
            &[target],
            delay,
            Some(Instant::now() + Duration::from_secs(10)),
            &CancelToken::new(),
        ))
        .unwrap();
        let took = started.elapsed();
        assert_eq!(
            fd.with_socket(|s| s.peer_addr()).unwrap().as_socket(),
            Some(target)
        );
        assert!(took >= delay, "the fallback started early: {took:?}");
        assert!(took < delay + Duration::from_secs(2), "too late: {took:?}");
    }

    #[test]
    fn async_happy_eyeballs_falls_back_at_once_when_the_primary_fails() {
        let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = open.local_addr().unwrap();
        let started = Instant::now();
        let fd = block_on(Dialer::new().dial_parallel_async(
            &[closed_port()],
            &[target],
            Duration::from_secs(30),
            None,
            &CancelToken::new(),
        ))
        .unwrap();
        assert_eq!(
            fd.with_socket(|s| s.peer_addr()).unwrap().as_socket(),
            Some(target)
        );
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn async_happy_eyeballs_reports_the_primary_error_when_both_fail() {
        let (primary, fallback) = (closed_port(), closed_port());
        let err = block_on(Dialer::new().dial_parallel_async(
            &[primary],
            &[fallback],
            Duration::from_millis(1),
            None,
            &CancelToken::new(),
        ))
        .err()
        .expect("a dial to two closed ports connected");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
    }

    #[test]
    fn a_cancelled_token_cancels_its_children() {
        let parent = CancelToken::new();
        let child = parent.child();
        parent.cancel();
        assert!(child.is_canceled());
        assert!(parent.child().is_canceled());
    }
}
