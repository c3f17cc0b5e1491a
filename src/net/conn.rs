//! `TcpConn` and `UnixConn`: blocking-style stream connections with deadlines, usable from many
//! threads at once (one reader and one writer at a time; `close` from anywhere), and from async
//! code through `futures::io::{AsyncRead, AsyncWrite}` (and tokio's, with the `tokio` feature),
//! each implemented for the owned connection and for `&Conn`, so one thread can `close()` while
//! another's async read is pending.

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
use crate::transport::fd::NetFd;
use crate::transport::options::{apply_keepalive, inet, poller_for, KeepAliveConfig};

/// tokio's `AsyncRead`/`AsyncWrite` for a connection type, owned or shared (`&Conn`, so another
/// thread can `close()` while a tokio read is pending, as with the futures traits).
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
                let n = std::task::ready!(self
                    .fd
                    .poll_read(cx, &mut [IoSliceMut::new(buf.initialize_unfilled())]))?;
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
                self.fd.poll_write(cx, &[IoSlice::new(buf)])
            }
            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                self.fd.poll_write(cx, bufs)
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

/// The methods and trait implementations every stream connection shares.
macro_rules! stream_connection {
    ($conn:ident) => {
        impl $conn {
            /// Reads into `buf`, waiting for data; `Ok(0)` at end of stream (and for an empty
            /// `buf`). Fails with a timeout past the read deadline and with the closed error
            /// ([`is_closed`](super::is_closed)) once closed.
            pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
                self.fd.read(buf)
            }

            /// [`read`](Self::read) into several buffers with one `readv`.
            pub fn read_vectored(&self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
                self.fd.read_vectored(bufs)
            }

            /// Writes all of `buf`, waiting for room as often as needed. An error or deadline
            /// after some bytes went out returns that count; the next call reports the error.
            pub fn write(&self, buf: &[u8]) -> io::Result<usize> {
                self.fd.write(buf)
            }

            /// [`write`](Self::write) for several buffers, gathered by `sendmsg` (up to 1024 a
            /// call).
            pub fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
                self.fd.write_vectored(bufs)
            }

            /// Closes the connection from any thread: pending and later calls fail with the
            /// closed error; returns once the fd is closed. A second close returns that error.
            pub fn close(&self) -> io::Result<()> {
                self.fd.close()
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
                self.fd.with_socket(|s| s.shutdown(Shutdown::Read))
            }

            /// Shuts down the writing side (`shutdown(SHUT_WR)`): the peer reads end of stream.
            pub fn close_write(&self) -> io::Result<()> {
                self.fd.with_socket(|s| s.shutdown(Shutdown::Write))
            }

            /// True once [`close`](Self::close) was called (or started) on this connection.
            pub fn is_closed(&self) -> bool {
                self.fd.is_closed()
            }
        }

        impl Read for $conn {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.fd.read(buf)
            }
            fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
                self.fd.read_vectored(bufs)
            }
        }

        impl Read for &$conn {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.fd.read(buf)
            }
            fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
                self.fd.read_vectored(bufs)
            }
        }

        impl Write for $conn {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.fd.write(buf)
            }
            fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
                self.fd.write_vectored(bufs)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }

        impl Write for &$conn {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.fd.write(buf)
            }
            fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
                self.fd.write_vectored(bufs)
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
                self.fd.poll_read(cx, &mut [IoSliceMut::new(buf)])
            }
            fn poll_read_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &mut [IoSliceMut<'_>],
            ) -> Poll<io::Result<usize>> {
                self.fd.poll_read(cx, bufs)
            }
        }

        impl futures_io::AsyncRead for &$conn {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut [u8],
            ) -> Poll<io::Result<usize>> {
                self.fd.poll_read(cx, &mut [IoSliceMut::new(buf)])
            }
        }

        impl futures_io::AsyncWrite for $conn {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                self.fd.poll_write(cx, &[IoSlice::new(buf)])
            }
            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                self.fd.poll_write(cx, bufs)
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
                self.fd.poll_write(cx, &[IoSlice::new(buf)])
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
/// In async code, mind the inherent methods: `conn.close()` closes the whole connection and
/// `conn.read(..)` blocks the thread. For the async ones name the trait, e.g.
/// `AsyncWriteExt::close(&mut conn)` (which shuts down only the write side) or
/// `AsyncReadExt::read(&mut conn, buf)`.
///
/// Raw fds: `AsRawFd`, [`with_fd`](TcpConn::with_fd) (in place of `AsFd`, which `close(&self)`
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
    pub(super) fd: NetFd,
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
/// Raw fds: `AsRawFd`, [`with_fd`](UnixConn::with_fd) (in place of `AsFd`, which `close(&self)`
/// would make unsound), `IntoRawFd`, and `TryFrom<OwnedFd>` (in place of `FromRawFd`, which
/// cannot report a failed registration); std and socket2 sockets convert with `TryFrom`.
pub struct UnixConn {
    pub(super) fd: NetFd,
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
