//! The Go-net face's listeners: `TcpListener`, `UnixListener` and their `incoming()` loop, on
//! sockets made by the shared [`ListenConfig`].

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use socket2::{SockAddr, Socket};

use super::conn::{TcpConn, UnixConn};
use crate::poll::PollManager;
use crate::transport::addr::{Addr, ToAddress};
use crate::transport::desc::Mode;
use crate::transport::error;
use crate::transport::fd::NetFd;
use crate::transport::listen::{context, ListenConfig, SocketFile};
use crate::transport::options::{apply_keepalive, inet, poller_for, KeepAliveConfig};

impl ListenConfig {
    /// Listens on `network` (`tcp`, `tcp4`, `tcp6`) at `address`: `"host:port"`, `":port"` or
    /// an empty host (every address, dual-stack where IPv6 exists), a `SocketAddr`, `(ip, port)`.
    ///
    /// ```
    /// let listener = netpoll::net::ListenConfig::new()
    ///     .reuse_port(true)
    ///     .listen_tcp("tcp", "127.0.0.1:0")?;
    /// assert_ne!(listener.local_addr().port(), 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn listen_tcp(&self, network: &str, address: impl ToAddress) -> io::Result<TcpListener> {
        let address = address.to_address();
        let socket = self.tcp_socket(network, &address)?;
        let register = || {
            let local = inet(socket.local_addr()?)?;
            let poller = poller_for(self.manager(), None)?;
            Ok((local, poller))
        };
        let (local, poller) = register().map_err(|e| context("listen", network, &address, e))?;
        Ok(TcpListener {
            fd: NetFd::new(socket, poller).map_err(|e| context("listen", network, &address, e))?,
            net: match network {
                "tcp4" => "tcp4",
                "tcp6" => "tcp6",
                _ => "tcp",
            },
            local,
            keepalive: self.accepted_keepalive(),
            manager: self.manager().cloned(),
        })
    }

    /// Listens on one TCP address.
    pub fn listen_tcp_addr(&self, addr: SocketAddr) -> io::Result<TcpListener> {
        self.listen_tcp("tcp", addr)
    }

    /// Listens on a Unix-socket path. The socket file is removed when the listener is closed or
    /// dropped, whichever comes first, and only if the path still names the socket this listener
    /// bound (same device and inode): a newer listener on the same path keeps its file. An
    /// existing file makes it fail with `AddrInUse`.
    pub fn listen_unix(&self, path: impl AsRef<Path>) -> io::Result<UnixListener> {
        let path = path.as_ref();
        let (socket, file) = self.unix_socket(path)?;
        let register = || NetFd::new(socket, poller_for(self.manager(), None)?);
        let fd =
            register().map_err(|e| context("listen", "unix", &path.display().to_string(), e))?;
        Ok(UnixListener {
            fd,
            path: file,
            manager: self.manager().cloned(),
        })
    }
}

/// Listens with the default [`ListenConfig`] (Go's `net.Listen("tcp", address)`).
pub fn listen_tcp(network: &str, address: impl ToAddress) -> io::Result<TcpListener> {
    ListenConfig::new().listen_tcp(network, address)
}

/// Listens on a Unix-socket path with the default [`ListenConfig`].
pub fn listen_unix(path: impl AsRef<Path>) -> io::Result<UnixListener> {
    ListenConfig::new().listen_unix(path)
}

/// A TCP listener of the Go-net face (Go's `*net.TCPListener`).
///
/// Raw fds: `AsRawFd`, [`with_fd`](TcpListener::with_fd) (in place of `AsFd`, which `close(&self)`
/// would make unsound), `IntoRawFd`, and `TryFrom<OwnedFd>` (in place of `FromRawFd`, which
/// cannot report a failed registration); std and socket2 sockets convert with `TryFrom`.
///
/// A thread serves connections from [`incoming`](Self::incoming) until another thread closes
/// the listener:
///
/// ```
/// use std::io::{Read, Write};
/// use std::net::{Shutdown, TcpStream};
/// use std::sync::Arc;
/// use netpoll::net;
///
/// let listener = Arc::new(net::listen_tcp("tcp", "127.0.0.1:0")?);
/// let addr = listener.local_addr();
///
/// let accepting = Arc::clone(&listener);
/// let server = std::thread::spawn(move || {
///     let mut served = 0;
///     for conn in accepting.incoming() {
///         let Ok(conn) = conn else { break }; // the closed error: close() was called
///         // A real server hands each connection to a thread (or task); this one echoes
///         // until end of stream, then drops the connection, which closes it.
///         std::io::copy(&mut &conn, &mut &conn)?;
///         served += 1;
///     }
///     Ok::<_, std::io::Error>(served)
/// });
///
/// for _ in 0..2 {
///     let mut client = TcpStream::connect(addr)?;
///     client.write_all(b"hi")?;
///     client.shutdown(Shutdown::Write)?;
///     let mut echo = String::new();
///     client.read_to_string(&mut echo)?;
///     assert_eq!(echo, "hi");
/// }
/// listener.close()?; // ends incoming() in the other thread at once
/// assert_eq!(server.join().unwrap()?, 2);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct TcpListener {
    pub(super) fd: NetFd,
    /// `tcp`, `tcp4` or `tcp6`, as listened on: the network its errors name.
    pub(super) net: &'static str,
    pub(super) local: SocketAddr,
    pub(super) keepalive: Option<KeepAliveConfig>,
    pub(super) manager: Option<Arc<PollManager>>,
}

impl TcpListener {
    /// Waits for a connection. Accepted connections have `TCP_NODELAY` and the config's
    /// keepalive, and are spread over the pollers. `close` from another thread makes a pending
    /// accept fail with the closed error.
    ///
    /// A connection the peer reset while it waited in the backlog is still returned (as Go
    /// does): its address is the one `accept4` reported, and its reads fail with the reset.
    ///
    /// Errors read `accept tcp LOCAL: ...` (an [`OpError`](super::OpError)).
    pub fn accept(&self) -> io::Result<(TcpConn, SocketAddr)> {
        self.fd
            .accept()
            .and_then(|(socket, peer)| self.finish_accept(socket, &peer))
            .map_err(|e| self.op_error("accept", e))
    }

    /// The async [`accept`](Self::accept).
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpConn, SocketAddr)>> {
        match self.fd.poll_accept(cx) {
            Poll::Ready(accepted) => Poll::Ready(
                accepted
                    .and_then(|(socket, peer)| self.finish_accept(socket, &peer))
                    .map_err(|e| self.op_error("accept", e)),
            ),
            Poll::Pending => Poll::Pending,
        }
    }

    /// `e` as `OP tcp LOCAL: ...`.
    #[cold]
    #[inline(never)]
    fn op_error(&self, op: &'static str, e: io::Error) -> io::Error {
        error::with_op(op, self.net, None, Some(self.local.to_string()), e)
    }

    /// `accept` as a future, for any executor.
    pub async fn accept_async(&self) -> io::Result<(TcpConn, SocketAddr)> {
        poll_fn(|cx| self.poll_accept(cx)).await
    }

    fn finish_accept(&self, socket: Socket, peer: &SockAddr) -> io::Result<(TcpConn, SocketAddr)> {
        // Option errors are ignored, as Go ignores them: a connection already reset by its peer
        // may refuse them, and it is still the caller's to read (and see the reset).
        let _ = socket.set_tcp_nodelay(true);
        let _ = apply_keepalive(&socket, self.keepalive);
        // The address accept4 reported: a reset connection has no peer any more (ENOTCONN).
        let peer = inet(peer.clone())?;
        let local = socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .unwrap_or(self.local);
        let poller = poller_for(self.manager.as_ref(), Some(&peer))?;
        Ok((TcpConn::accepted(socket, poller, local, peer)?, peer))
    }

    /// An iterator over accepted connections, the accept loop of Go's `http.Server`: it rides
    /// out running short of resources (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`) by backing off
    /// (5 ms, doubling up to 1 s, reset by the next success) instead of yielding the error, and
    /// resumes once descriptors free up. The back-off waits on the listener's poll descriptor,
    /// so a [`close`](Self::close) from another thread ends it at once: the iterator then yields
    /// the closed error once and ends. Other errors (a deadline) are yielded as they come, as
    /// std's `incoming` does.
    ///
    /// ```no_run
    /// # fn main() -> std::io::Result<()> {
    /// let listener = netpoll::net::listen_tcp("tcp", "127.0.0.1:8080")?;
    /// for conn in listener.incoming() {
    ///     let conn = conn?; // only the closed error (or a deadline) gets here
    ///     std::thread::spawn(move || { let _ = std::io::copy(&mut &conn, &mut &conn); });
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn incoming(&self) -> Incoming<'_, TcpListener> {
        Incoming::new(self)
    }

    /// The address it listens on (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Stops listening; a pending accept fails with the closed error. (No async trait has a
    /// `close` for listeners, so Go's name stays.)
    pub fn close(&self) -> io::Result<()> {
        self.fd.close().map_err(|e| self.op_error("close", e))
    }

    /// Sets the deadline of `accept`; see [`TcpConn::set_deadline`].
    pub fn set_deadline(&self, at: Option<std::time::Instant>) -> io::Result<()> {
        self.fd.set_deadline(Some(Mode::Read), at)
    }
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpListener")
            .field("local", &self.local)
            .field("closed", &self.fd.is_closed())
            .finish()
    }
}

/// A Unix-socket listener of the Go-net face (Go's `*net.UnixListener`).
///
/// Raw fds: `AsRawFd`, [`with_fd`](UnixListener::with_fd) (in place of `AsFd`, which `close(&self)`
/// would make unsound), `IntoRawFd`, and `TryFrom<OwnedFd>` (in place of `FromRawFd`, which
/// cannot report a failed registration); std and socket2 sockets convert with `TryFrom`.
pub struct UnixListener {
    pub(super) fd: NetFd,
    pub(super) path: SocketFile,
    pub(super) manager: Option<Arc<PollManager>>,
}

impl UnixListener {
    /// Waits for a connection. Errors read `accept unix PATH: ...`.
    pub fn accept(&self) -> io::Result<(UnixConn, Addr)> {
        self.fd
            .accept()
            .and_then(|(socket, peer)| self.finish_accept(socket, &peer))
            .map_err(|e| self.op_error("accept", e))
    }

    /// The async [`accept`](Self::accept).
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(UnixConn, Addr)>> {
        match self.fd.poll_accept(cx) {
            Poll::Ready(accepted) => Poll::Ready(
                accepted
                    .and_then(|(socket, peer)| self.finish_accept(socket, &peer))
                    .map_err(|e| self.op_error("accept", e)),
            ),
            Poll::Pending => Poll::Pending,
        }
    }

    /// `e` as `OP unix PATH: ...`.
    #[cold]
    #[inline(never)]
    fn op_error(&self, op: &'static str, e: io::Error) -> io::Error {
        let path = self.path().display().to_string();
        error::with_op(op, "unix", None, Some(path), e)
    }

    /// `accept` as a future, for any executor.
    pub async fn accept_async(&self) -> io::Result<(UnixConn, Addr)> {
        poll_fn(|cx| self.poll_accept(cx)).await
    }

    fn finish_accept(&self, socket: Socket, peer: &SockAddr) -> io::Result<(UnixConn, Addr)> {
        let poller = poller_for(self.manager.as_ref(), None)?;
        let peer = Addr::from_sockaddr(peer);
        let local = socket
            .local_addr()
            .map(|a| Addr::from_sockaddr(&a))
            .unwrap_or_else(|_| Addr::Unix(Some(self.path().to_path_buf())));
        Ok((
            UnixConn::accepted(socket, poller, local, peer.clone())?,
            peer,
        ))
    }

    /// An iterator over accepted connections that backs off on `EMFILE` and its kin instead of
    /// yielding them; see [`TcpListener::incoming`].
    pub fn incoming(&self) -> Incoming<'_, UnixListener> {
        Incoming::new(self)
    }

    /// The path it listens on.
    pub fn path(&self) -> &Path {
        &self.path.path
    }

    /// Stops listening and removes the socket file; a pending accept fails with the closed
    /// error.
    pub fn close(&self) -> io::Result<()> {
        self.fd.close().map_err(|e| self.op_error("close", e))?;
        self.path.unlink();
        Ok(())
    }

    /// Sets the deadline of `accept`.
    pub fn set_deadline(&self, at: Option<std::time::Instant>) -> io::Result<()> {
        self.fd.set_deadline(Some(Mode::Read), at)
    }
}

impl fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixListener")
            .field("path", &self.path.path)
            .field("closed", &self.fd.is_closed())
            .finish()
    }
}

/// The first back-off after a resource error, and the cap (Go's `http.Server.Serve`).
const BACKOFF_FIRST: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Errors that mean "out of a resource for now": wait and accept again.
fn is_resource_shortage(e: &io::Error) -> bool {
    matches!(
        error::os_error(e),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// The accept loop of a listener: see [`TcpListener::incoming`]. Yields `io::Result<TcpConn>`
/// for a `TcpListener` and `io::Result<UnixConn>` for a `UnixListener`.
pub struct Incoming<'a, L> {
    listener: &'a L,
    backoff: Option<Duration>,
    done: bool,
}

impl<'a, L> Incoming<'a, L> {
    fn new(listener: &'a L) -> Self {
        Incoming {
            listener,
            backoff: None,
            done: false,
        }
    }

    /// `accept` gives errors in their context; `wrap` puts a back-off's error in it.
    fn next_with<T>(
        &mut self,
        fd: &NetFd,
        mut accept: impl FnMut() -> io::Result<T>,
        wrap: impl FnOnce(io::Error) -> io::Error,
    ) -> Option<io::Result<T>> {
        if self.done {
            return None;
        }
        loop {
            let error = match accept() {
                Ok(conn) => {
                    self.backoff = None;
                    return Some(Ok(conn));
                }
                Err(e) if is_resource_shortage(&e) => {
                    let delay = self
                        .backoff
                        .map_or(BACKOFF_FIRST, |d| (d * 2).min(BACKOFF_MAX));
                    self.backoff = Some(delay);
                    match fd.accept_backoff(Instant::now() + delay) {
                        Ok(()) => continue,
                        Err(e) => wrap(e),
                    }
                }
                Err(e) => e,
            };
            if error::is_closed(&error) {
                self.done = true;
            }
            return Some(Err(error));
        }
    }
}

impl Iterator for Incoming<'_, TcpListener> {
    type Item = io::Result<TcpConn>;

    fn next(&mut self) -> Option<io::Result<TcpConn>> {
        let listener = self.listener;
        self.next_with(
            &listener.fd,
            || listener.accept().map(|(conn, _)| conn),
            |e| listener.op_error("accept", e),
        )
    }
}

impl Iterator for Incoming<'_, UnixListener> {
    type Item = io::Result<UnixConn>;

    fn next(&mut self) -> Option<io::Result<UnixConn>> {
        let listener = self.listener;
        self.next_with(
            &listener.fd,
            || listener.accept().map(|(conn, _)| conn),
            |e| listener.op_error("accept", e),
        )
    }
}

impl<L> fmt::Debug for Incoming<'_, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("backoff", &self.backoff)
            .field("done", &self.done)
            .finish()
    }
}
