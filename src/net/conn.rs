//! `TcpConn` and `UnixConn`: blocking-style stream connections with deadlines, usable from many
//! threads at once (one reader and one writer at a time; `close_now` from anywhere), and from
//! async code through `futures::io::{AsyncRead, AsyncWrite}` (and tokio's, with the `tokio`
//! feature), each implemented for the owned connection and for `&Conn`, so one thread can
//! `close_now()` while another's async read is pending.
//!
//! Reads and writes are trait methods only: `std::io::{Read, Write}` for blocking code,
//! `futures::io::{AsyncReadExt, AsyncWriteExt}` or `tokio::io::{AsyncReadExt, AsyncWriteExt}`
//! for async code, whichever is in scope. An inherent `read`/`write` would win over the
//! extension traits, so `conn.read(&mut buf).await` would fail to compile and the compiler's
//! hint (remove the `.await`) would block the executor. For the same reason the Go-style close
//! of the whole connection is `close_now`, not `close` (futures' `AsyncWriteExt::close`) nor
//! `shutdown` (tokio's): those two shut down only the write side, as Go's `CloseWrite` does.
//!
//! Errors carry their context as Go prints it (an [`OpError`](super::OpError)):
//! `read tcp 127.0.0.1:5000->127.0.0.1:80: i/o timeout`, with the cause's `ErrorKind` kept. The
//! context is built only on the error path.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use socket2::Socket;

use crate::poll::Poller;
use crate::transport::addr::Addr;
use crate::transport::desc::Mode;
use crate::transport::error;
use crate::transport::fd::NetFd;
use crate::transport::options::{apply_keepalive, inet, poller_for, KeepAliveConfig};

/// tokio's `AsyncRead`/`AsyncWrite` for a connection type, owned or shared (`&Conn`, so another
/// thread can `close_now()` while a tokio read is pending, as with the futures traits).
macro_rules! tokio_traits {
    ($t:ty) => {
        #[cfg(feature = "tokio")]
        #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
        impl tokio::io::AsyncRead for $t {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                let n = std::task::ready!(
                    self.poll_read_bufs(cx, &mut [IoSliceMut::new(buf.initialize_unfilled())])
                )?;
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
        }

        #[cfg(feature = "tokio")]
        #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
        impl tokio::io::AsyncWrite for $t {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                self.poll_write_bufs(cx, &[IoSlice::new(buf)])
            }
            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                self.poll_write_bufs(cx, bufs)
            }
            fn is_write_vectored(&self) -> bool {
                true
            }
            fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }
            fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(self.close_write())
            }
        }
    };
}

/// Wraps the error of a ready poll in the connection's context; `Pending` and success pass
/// through untouched.
macro_rules! ready_or_context {
    ($conn:expr, $op:literal, $poll:expr) => {
        match $poll {
            Poll::Ready(Err(e)) => Poll::Ready(Err($conn.op_error($op, e))),
            other => other,
        }
    };
}

/// The methods and trait implementations every stream connection shares.
///
/// There is deliberately no inherent `read`, `write` or `close`: they would shadow the methods
/// of `std::io::{Read, Write}`, `futures::io::{AsyncReadExt, AsyncWriteExt}` and tokio's
/// extension traits, so `conn.read(&mut buf).await` would not compile and the compiler's hint
/// ("remove the `.await`") would put a blocking read in async code.
macro_rules! stream_connection {
    ($conn:ident) => {
        impl $conn {
            /// Closes the connection from any thread (Go's `Conn.Close`): pending and later calls
            /// fail with the closed error ([`is_closed`](super::is_closed)); returns once calls
            /// in flight have left and the fd is closed. A second close returns that error.
            ///
            /// It is not called `close` because that name belongs to
            /// `futures::io::AsyncWriteExt::close` (and `shutdown` to tokio's `AsyncWriteExt`),
            /// which shut down only the write side, as a future: an inherent `close` would
            /// shadow them in async code. Dropping the connection closes it too.
            pub fn close_now(&self) -> io::Result<()> {
                self.fd.close().map_err(|e| self.op_error("close", e))
            }

            /// Sets both deadlines. An instant in the past fails pending and later calls with a
            /// timeout at once, even with data buffered; `None` waits forever.
            pub fn set_deadline(&self, at: Option<Instant>) -> io::Result<()> {
                self.fd.set_deadline(None, at)
            }

            /// Sets the read deadline; see [`set_deadline`](Self::set_deadline).
            pub fn set_read_deadline(&self, at: Option<Instant>) -> io::Result<()> {
                self.fd.set_deadline(Some(Mode::Read), at)
            }

            /// Sets the write deadline; see [`set_deadline`](Self::set_deadline).
            pub fn set_write_deadline(&self, at: Option<Instant>) -> io::Result<()> {
                self.fd.set_deadline(Some(Mode::Write), at)
            }

            /// Shuts down the reading side (`shutdown(SHUT_RD)`): later reads see end of stream.
            pub fn close_read(&self) -> io::Result<()> {
                self.fd
                    .with_socket(|s| s.shutdown(Shutdown::Read))
                    .map_err(|e| self.op_error("close", e))
            }

            /// Shuts down the writing side (`shutdown(SHUT_WR)`): the peer reads end of stream.
            pub fn close_write(&self) -> io::Result<()> {
                self.fd
                    .with_socket(|s| s.shutdown(Shutdown::Write))
                    .map_err(|e| self.op_error("close", e))
            }

            /// True once [`close_now`](Self::close_now) was called (or started) on this
            /// connection.
            pub fn is_closed(&self) -> bool {
                self.fd.is_closed()
            }

            /// The id of the poller the connection is registered on ([`Poller::id`]); for
            /// tests and diagnostics.
            #[doc(hidden)]
            pub fn poller_id(&self) -> usize {
                self.fd.desc().poller_id()
            }

            fn read_bufs(&self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
                self.fd
                    .read_vectored(bufs)
                    .map_err(|e| self.op_error("read", e))
            }

            fn write_bufs(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
                self.fd
                    .write_vectored(bufs)
                    .map_err(|e| self.op_error("write", e))
            }

            fn poll_read_bufs(
                &self,
                cx: &mut Context<'_>,
                bufs: &mut [IoSliceMut<'_>],
            ) -> Poll<io::Result<usize>> {
                ready_or_context!(self, "read", self.fd.poll_read(cx, bufs))
            }

            fn poll_write_bufs(
                &self,
                cx: &mut Context<'_>,
                bufs: &[IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                ready_or_context!(self, "write", self.fd.poll_write(cx, bufs))
            }
        }

        impl Read for $conn {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.read_bufs(&mut [IoSliceMut::new(buf)])
            }
            fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
                self.read_bufs(bufs)
            }
        }

        impl Read for &$conn {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.read_bufs(&mut [IoSliceMut::new(buf)])
            }
            fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
                self.read_bufs(bufs)
            }
        }

        impl Write for $conn {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.write_bufs(&[IoSlice::new(buf)])
            }
            fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
                self.write_bufs(bufs)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }

        impl Write for &$conn {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.write_bufs(&[IoSlice::new(buf)])
            }
            fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
                self.write_bufs(bufs)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }

        impl futures_io::AsyncRead for $conn {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut [u8],
            ) -> Poll<io::Result<usize>> {
                self.poll_read_bufs(cx, &mut [IoSliceMut::new(buf)])
            }
            fn poll_read_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &mut [IoSliceMut<'_>],
            ) -> Poll<io::Result<usize>> {
                self.poll_read_bufs(cx, bufs)
            }
        }

        impl futures_io::AsyncRead for &$conn {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut [u8],
            ) -> Poll<io::Result<usize>> {
                self.poll_read_bufs(cx, &mut [IoSliceMut::new(buf)])
            }
            fn poll_read_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &mut [IoSliceMut<'_>],
            ) -> Poll<io::Result<usize>> {
                self.poll_read_bufs(cx, bufs)
            }
        }

        impl futures_io::AsyncWrite for $conn {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                self.poll_write_bufs(cx, &[IoSlice::new(buf)])
            }
            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                self.poll_write_bufs(cx, bufs)
            }
            fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }
            /// Shuts down the writing side, as async-std and tokio do.
            fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(self.close_write())
            }
        }

        impl futures_io::AsyncWrite for &$conn {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                self.poll_write_bufs(cx, &[IoSlice::new(buf)])
            }
            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                self.poll_write_bufs(cx, bufs)
            }
            fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }
            fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(self.close_write())
            }
        }

        tokio_traits!($conn);
        tokio_traits!(&$conn);
    };
}

/// A TCP connection of the Go-net face (Go's `*net.TCPConn`), made by
/// [`TcpListener::accept`](super::TcpListener::accept) or [`Dialer`](super::Dialer).
///
/// Share it between threads with `&TcpConn` or `Arc<TcpConn>`: `Read`/`Write` are implemented
/// for `&TcpConn` as for std's `TcpStream`. Dropping it closes it.
///
/// Reads and writes come from the traits in scope: `std::io::{Read, Write}` block the thread,
/// `futures::io::{AsyncReadExt, AsyncWriteExt}` (or tokio's) are futures; no inherent method
/// shadows them. [`close_now`](Self::close_now) closes the whole connection from any thread;
/// the async `close()`/`shutdown()` shut down only the write side.
///
/// Raw fds: `AsRawFd`, [`with_fd`](TcpConn::with_fd) (in place of `AsFd`, which `close_now(&self)`
/// would make unsound), `IntoRawFd`, and `TryFrom<OwnedFd>` (in place of `FromRawFd`, which
/// cannot report a failed registration); std and socket2 sockets convert with `TryFrom`.
///
/// ```
/// use std::io::{Read, Write};
/// use std::time::{Duration, Instant};
/// use netpoll::net;
///
/// let listener = net::listen_tcp("tcp", "127.0.0.1:0")?;
/// let client = net::dial_tcp("tcp", listener.local_addr())?;
/// let (server, peer) = listener.accept()?;
/// assert_eq!(peer, client.local_addr());
///
/// // Read and Write on &TcpConn, as on std's &TcpStream: one thread may read while another
/// // writes.
/// (&client).write_all(b"ping")?;
/// let mut buf = [0u8; 4];
/// (&server).read_exact(&mut buf)?;
/// assert_eq!(&buf, b"ping");
///
/// // A deadline bounds every read until it is moved; `is_timeout` tells that failure apart.
/// server.set_read_deadline(Some(Instant::now() + Duration::from_millis(20)))?;
/// let err = (&server).read_exact(&mut buf).unwrap_err();
/// assert!(net::is_timeout(&err));
///
/// server.set_read_deadline(Some(Instant::now() + Duration::from_secs(5)))?;
/// drop(client); // dropping closes it
/// assert_eq!((&server).read_to_end(&mut Vec::new())?, 0); // end of stream
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct TcpConn {
    pub(crate) fd: NetFd,
    pub(super) local: SocketAddr,
    pub(super) peer: SocketAddr,
}

stream_connection!(TcpConn);

impl TcpConn {
    pub(crate) fn new(socket: Socket, poller: Arc<Poller>) -> io::Result<TcpConn> {
        TcpConn::from_fd(NetFd::new(socket, poller)?)
    }

    /// An accepted connection, with the addresses `accept4` and the listener gave (a peer that
    /// reset while queued has no address left for `getpeername`).
    pub(crate) fn accepted(
        socket: Socket,
        poller: Arc<Poller>,
        local: SocketAddr,
        peer: SocketAddr,
    ) -> io::Result<TcpConn> {
        let fd = NetFd::new(socket, poller)?;
        Ok(TcpConn { fd, local, peer })
    }

    pub(crate) fn from_fd(fd: NetFd) -> io::Result<TcpConn> {
        let (local, peer) =
            fd.with_socket(|s| Ok((inet(s.local_addr()?)?, inet(s.peer_addr()?)?)))?;
        Ok(TcpConn { fd, local, peer })
    }

    /// `e` as `OP tcp LOCAL->PEER: ...`.
    #[cold]
    #[inline(never)]
    pub(crate) fn op_error(&self, op: &'static str, e: io::Error) -> io::Error {
        error::with_op(
            op,
            "tcp",
            Some(self.local.to_string()),
            Some(self.peer.to_string()),
            e,
        )
    }

    /// Takes over a connected std stream (switching it to non-blocking mode) and registers it
    /// on the global pollers.
    pub fn from_std(stream: std::net::TcpStream) -> io::Result<TcpConn> {
        stream.set_nonblocking(true)?;
        let peer = stream.peer_addr()?;
        TcpConn::new(Socket::from(stream), poller_for(None, Some(&peer))?)
    }

    /// The local address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Disables (true) or enables Nagle's algorithm. On by default for dialed and accepted
    /// connections, as in Go.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.fd.with_socket(|s| s.set_tcp_nodelay(nodelay))
    }

    /// Whether `TCP_NODELAY` is set.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.fd.with_socket(|s| s.tcp_nodelay())
    }

    /// `SO_LINGER`: `Some(Duration::ZERO)` makes close reset the connection (RST) and drop
    /// unsent data; `Some(t)` makes close wait up to `t` for unsent data; `None` is the
    /// default (close returns at once, the kernel sends in the background).
    pub fn set_linger(&self, linger: Option<Duration>) -> io::Result<()> {
        self.fd.with_socket(|s| s.set_linger(linger))
    }

    /// The `SO_LINGER` setting.
    pub fn linger(&self) -> io::Result<Option<Duration>> {
        self.fd.with_socket(|s| s.linger())
    }

    /// Turns keepalive probes on with `config`, or off with `None`.
    pub fn set_keepalive(&self, config: Option<KeepAliveConfig>) -> io::Result<()> {
        self.fd.with_socket(|s| apply_keepalive(s, config))
    }

    /// Whether keepalive probes are on.
    pub fn keepalive(&self) -> io::Result<bool> {
        self.fd.with_socket(|s| s.keepalive())
    }
}

impl std::fmt::Debug for TcpConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpConn")
            .field("local", &self.local)
            .field("peer", &self.peer)
            .field("closed", &self.fd.is_closed())
            .finish()
    }
}

/// A Unix stream-socket connection of the Go-net face (Go's `*net.UnixConn`).
///
/// Raw fds: `AsRawFd`, [`with_fd`](UnixConn::with_fd) (in place of `AsFd`, which `close_now(&self)`
/// would make unsound), `IntoRawFd`, and `TryFrom<OwnedFd>` (in place of `FromRawFd`, which
/// cannot report a failed registration); std and socket2 sockets convert with `TryFrom`.
pub struct UnixConn {
    pub(crate) fd: NetFd,
    pub(super) local: Addr,
    pub(super) peer: Addr,
}

stream_connection!(UnixConn);

impl UnixConn {
    pub(crate) fn new(socket: Socket, poller: Arc<Poller>) -> io::Result<UnixConn> {
        UnixConn::from_fd(NetFd::new(socket, poller)?)
    }

    /// An accepted connection, with the addresses `accept4` and the listener gave.
    pub(crate) fn accepted(
        socket: Socket,
        poller: Arc<Poller>,
        local: Addr,
        peer: Addr,
    ) -> io::Result<UnixConn> {
        let fd = NetFd::new(socket, poller)?;
        Ok(UnixConn { fd, local, peer })
    }

    pub(crate) fn from_fd(fd: NetFd) -> io::Result<UnixConn> {
        let (local, peer) = fd.with_socket(|s| {
            Ok((
                Addr::from_sockaddr(&s.local_addr()?),
                Addr::from_sockaddr(&s.peer_addr()?),
            ))
        })?;
        Ok(UnixConn { fd, local, peer })
    }

    /// `e` as `OP unix LOCAL->PEER: ...`, an unnamed end left out.
    #[cold]
    #[inline(never)]
    pub(crate) fn op_error(&self, op: &'static str, e: io::Error) -> io::Error {
        let shown = |a: &Addr| match a {
            Addr::Unix(None) => None,
            named => Some(named.to_string()),
        };
        error::with_op(op, "unix", shown(&self.local), shown(&self.peer), e)
    }

    /// Takes over a connected std Unix stream and registers it on the global pollers.
    pub fn from_std(stream: std::os::unix::net::UnixStream) -> io::Result<UnixConn> {
        stream.set_nonblocking(true)?;
        UnixConn::new(Socket::from(stream), poller_for(None, None)?)
    }

    /// A connected pair, like `socketpair(2)`, both registered on the global pollers.
    pub fn pair() -> io::Result<(UnixConn, UnixConn)> {
        let (a, b) = std::os::unix::net::UnixStream::pair()?;
        Ok((UnixConn::from_std(a)?, UnixConn::from_std(b)?))
    }

    /// The local address (unnamed for a client that did not bind).
    pub fn local_addr(&self) -> &Addr {
        &self.local
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> &Addr {
        &self.peer
    }
}

impl std::fmt::Debug for UnixConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnixConn")
            .field("local", &self.local)
            .field("peer", &self.peer)
            .field("closed", &self.fd.is_closed())
            .finish()
    }
}
