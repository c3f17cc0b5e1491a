//! The Go-net face's types and the rest of the ecosystem: raw fds, std and socket2 sockets.
//!
//! | conversion | `TcpConn`, `UnixConn`, `TcpListener`, `UnixListener` |
//! |---|---|
//! | `AsRawFd` | the fd while open, -1 once closed |
//! | `with_fd` | a `BorrowedFd` for the length of a closure (instead of `AsFd`) |
//! | `IntoRawFd`, `into_std` | the socket, open and off its poller (still non-blocking) |
//! | `TryFrom<std …>`, `TryFrom<socket2::Socket>`, `TryFrom<OwnedFd>` | checked, non-blocking, registered |
//!
//! **No `AsFd`.** `AsFd::as_fd(&self)` returns a `BorrowedFd<'_>` that promises the fd stays
//! open while the borrow lives, but [`close`](TcpConn::close) also takes `&self`: another
//! thread could close the fd (and the kernel reuse its number) while the `BorrowedFd` is still
//! in use. `with_fd` holds the same read guard a `read` holds, so a concurrent `close` waits
//! until the closure returns; that is the sound way to lend the fd.
//!
//! **No `FromRawFd`.** Wrapping registers the socket on a poller, which can fail (the pollers
//! cannot start, `epoll_ctl` runs out of memory or watches), and `from_raw_fd` cannot report
//! an error; panicking there would turn a resource shortage into a crash. As tokio does, the
//! conversions are fallible instead: `TryFrom<OwnedFd>` takes a raw fd once the caller has
//! made it an `OwnedFd` (the one unsafe `OwnedFd::from_raw_fd` call, in the caller's code,
//! where the ownership claim is made). (The reactor face's [`Listener`](crate::Listener) does implement `FromRawFd`: it
//! registers nothing until served.)

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use socket2::Socket;

use super::conn::{TcpConn, UnixConn};
use super::listen::{TcpListener, UnixListener};
use super::ListenConfig;
use crate::transport::adopt::{adopt, Family};
use crate::transport::fd::NetFd;
use crate::transport::listen::SocketFile;
use crate::transport::options::{inet, poller_for};

/// `AsRawFd` and `with_fd`, shared by the four types.
macro_rules! fd_access {
    ($t:ident) => {
        impl AsRawFd for $t {
            /// The socket's fd number while it is open; -1 once [`close`]($t::close) started.
            ///
            /// As with std's sockets after `into_raw_fd`, a number obtained before a close is
            /// meaningless after it: the kernel may give it to the next file opened. To use the
            /// fd while another thread may close the connection, use
            /// [`with_fd`]($t::with_fd).
            fn as_raw_fd(&self) -> RawFd {
                self.fd.raw_fd()
            }
        }

        impl $t {
            /// Runs `f` with the socket's fd borrowed (for `setsockopt` calls this API lacks,
            /// `socket2::SockRef::from(&fd)`, ...); fails with the closed error once closed.
            ///
            /// This type has no `AsFd`: [`close`]($t::close) takes `&self`, so a `BorrowedFd`
            /// handed out by `as_fd(&self)` could outlive the fd. Here a concurrent close waits
            /// until `f` returns. So `f` must be short, must not close the fd it is lent, and
            /// must not call this connection's methods (a close waiting on another thread
            /// would block them).
            pub fn with_fd<T>(&self, f: impl FnOnce(BorrowedFd<'_>) -> T) -> io::Result<T> {
                self.fd.with_socket(|s| Ok(f(s.as_fd())))
            }
        }
    };
}

fd_access!(TcpConn);
fd_access!(UnixConn);
fd_access!(TcpListener);
fd_access!(UnixListener);

/// `TryFrom<OwnedFd>` through `TryFrom<Socket>`.
macro_rules! try_from_owned_fd {
    ($t:ident) => {
        impl TryFrom<OwnedFd> for $t {
            type Error = io::Error;
            /// Takes over a socket fd, checked as `TryFrom<socket2::Socket>` is: the way in for
            /// a raw fd, after the caller's (unsafe) `OwnedFd::from_raw_fd(fd)`. There is no `FromRawFd`:
            /// registering on a poller can fail, and `from_raw_fd` could neither report that
            /// nor (in this crate) panic.
            fn try_from(fd: OwnedFd) -> io::Result<$t> {
                $t::try_from(Socket::from(fd))
            }
        }
    };
}

try_from_owned_fd!(TcpConn);
try_from_owned_fd!(UnixConn);
try_from_owned_fd!(TcpListener);
try_from_owned_fd!(UnixListener);

/// The socket taken out of `fd`, or -1 if it was closed (there is no descriptor to give).
fn raw_or_closed(fd: NetFd) -> RawFd {
    fd.into_socket().map_or(-1, IntoRawFd::into_raw_fd)
}

impl IntoRawFd for TcpConn {
    /// Gives up the socket, open, off its poller and still non-blocking; -1 if the connection
    /// was closed, since there is no descriptor left to give.
    fn into_raw_fd(self) -> RawFd {
        raw_or_closed(self.fd)
    }
}

impl TcpConn {
    /// Gives up the socket as a std stream, off its poller and still non-blocking (tokio's
    /// `into_std`); fails with the closed error if it was closed.
    pub fn into_std(self) -> io::Result<std::net::TcpStream> {
        self.fd.into_socket().map(Into::into)
    }
}

impl TryFrom<std::net::TcpStream> for TcpConn {
    type Error = io::Error;
    /// [`TcpConn::from_std`].
    fn try_from(stream: std::net::TcpStream) -> io::Result<TcpConn> {
        TcpConn::from_std(stream)
    }
}

impl TryFrom<Socket> for TcpConn {
    type Error = io::Error;
    /// Takes over a connected TCP socket (switching it to non-blocking mode) and registers it
    /// on the global pollers. `InvalidInput` if it is not a connected IPv4/IPv6 stream socket.
    fn try_from(socket: Socket) -> io::Result<TcpConn> {
        adopt(&socket, Family::Inet, false)?;
        let peer = inet(socket.peer_addr()?)?;
        TcpConn::new(socket, poller_for(None, Some(&peer))?)
    }
}

impl IntoRawFd for UnixConn {
    /// Gives up the socket, open, off its poller and still non-blocking; -1 if it was closed.
    fn into_raw_fd(self) -> RawFd {
        raw_or_closed(self.fd)
    }
}

impl UnixConn {
    /// Gives up the socket as a std stream, off its poller and still non-blocking; fails with
    /// the closed error if it was closed.
    pub fn into_std(self) -> io::Result<std::os::unix::net::UnixStream> {
        self.fd.into_socket().map(Into::into)
    }
}

impl TryFrom<std::os::unix::net::UnixStream> for UnixConn {
    type Error = io::Error;
    /// [`UnixConn::from_std`].
    fn try_from(stream: std::os::unix::net::UnixStream) -> io::Result<UnixConn> {
        UnixConn::from_std(stream)
    }
}

impl TryFrom<Socket> for UnixConn {
    type Error = io::Error;
    /// Takes over a connected Unix stream socket (switching it to non-blocking mode) and
    /// registers it on the global pollers. `InvalidInput` if it is not one.
    fn try_from(socket: Socket) -> io::Result<UnixConn> {
        adopt(&socket, Family::Unix, false)?;
        UnixConn::new(socket, poller_for(None, None)?)
    }
}

impl IntoRawFd for TcpListener {
    /// Gives up the listening socket, open, off its poller and still non-blocking; -1 if it
    /// was closed.
    fn into_raw_fd(self) -> RawFd {
        raw_or_closed(self.fd)
    }
}

impl TcpListener {
    /// Takes over a std listener (switching it to non-blocking mode) and registers it on the
    /// global pollers. Accepted connections get `TCP_NODELAY` and the default
    /// [`ListenConfig`]'s keepalive, as from [`listen_tcp`](super::listen_tcp).
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        TcpListener::try_from(Socket::from(listener))
    }

    /// Gives up the listening socket as a std listener, off its poller and still
    /// non-blocking; fails with the closed error if it was closed.
    pub fn into_std(self) -> io::Result<std::net::TcpListener> {
        self.fd.into_socket().map(Into::into)
    }
}

impl TryFrom<std::net::TcpListener> for TcpListener {
    type Error = io::Error;
    /// [`TcpListener::from_std`].
    fn try_from(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        TcpListener::from_std(listener)
    }
}

impl TryFrom<Socket> for TcpListener {
    type Error = io::Error;
    /// Takes over a listening TCP socket; see [`TcpListener::from_std`]. `InvalidInput` if it
    /// is not a listening IPv4/IPv6 stream socket.
    fn try_from(socket: Socket) -> io::Result<TcpListener> {
        adopt(&socket, Family::Inet, true)?;
        let local = inet(socket.local_addr()?)?;
        let fd = NetFd::new(socket, poller_for(None, None)?)?;
        Ok(TcpListener {
            fd,
            net: "tcp",
            local,
            keepalive: ListenConfig::new().accepted_keepalive(),
            manager: None,
        })
    }
}

impl IntoRawFd for UnixListener {
    /// Gives up the listening socket, open, off its poller and still non-blocking; -1 if it
    /// was closed. The socket file stays: it belongs to the socket's new owner.
    fn into_raw_fd(self) -> RawFd {
        self.path.disown();
        raw_or_closed(self.fd)
    }
}

impl UnixListener {
    /// Takes over a std Unix listener (switching it to non-blocking mode) and registers it on
    /// the global pollers. Its socket file is not this listener's: close and drop leave it in
    /// place, as std does; whoever created it removes it.
    pub fn from_std(listener: std::os::unix::net::UnixListener) -> io::Result<UnixListener> {
        UnixListener::try_from(Socket::from(listener))
    }

    /// Gives up the listening socket as a std listener, off its poller and still
    /// non-blocking; fails with the closed error if it was closed. The socket file stays.
    pub fn into_std(self) -> io::Result<std::os::unix::net::UnixListener> {
        self.path.disown();
        self.fd.into_socket().map(Into::into)
    }
}

impl TryFrom<std::os::unix::net::UnixListener> for UnixListener {
    type Error = io::Error;
    /// [`UnixListener::from_std`].
    fn try_from(listener: std::os::unix::net::UnixListener) -> io::Result<UnixListener> {
        UnixListener::from_std(listener)
    }
}

impl TryFrom<Socket> for UnixListener {
    type Error = io::Error;
    /// Takes over a listening Unix socket; see [`UnixListener::from_std`]. Its
    /// [`path`](UnixListener::path) is the bound path, empty for an unnamed or abstract one.
    /// `InvalidInput` if it is not a listening Unix stream socket.
    fn try_from(socket: Socket) -> io::Result<UnixListener> {
        adopt(&socket, Family::Unix, true)?;
        let path = socket
            .local_addr()?
            .as_pathname()
            .map(PathBuf::from)
            .unwrap_or_default();
        let fd = NetFd::new(socket, poller_for(None, None)?)?;
        Ok(UnixListener {
            fd,
            path: SocketFile::foreign(path),
            manager: None,
        })
    }
}
