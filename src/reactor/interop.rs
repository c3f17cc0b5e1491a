//! The reactor face's types and the rest of the ecosystem: raw fds, std and socket2 sockets.
//!
//! | conversion | [`Connection`] | [`Listener`] |
//! |---|---|---|
//! | `AsRawFd`, `AsFd` | yes: the socket lives until the last handle drops, even after `close` | yes |
//! | `IntoRawFd` | no: [`Connection::detach`], which can fail | yes |
//! | `FromRawFd` | no: registering can fail; [`Connection::from_std`] | yes (`sys/interop.rs`): nothing registers until `serve` |
//! | std, socket2 | `from_std`, `TryFrom<TcpStream / UnixStream / Socket>` | `TryFrom<TcpListener / UnixListener / Socket>` |

use std::io::Result;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, RawFd};

use socket2::Socket;

use super::connection::{ConnOptions, Connection};
use super::listener::Listener;
use crate::poll::PollEvent;
use crate::transport::addr::Addr;
use crate::transport::adopt::{adopt, Family};
use crate::transport::options::poller_for;

impl Connection {
    /// Takes over a connected TCP or Unix stream socket (a std `TcpStream` or `UnixStream`, a
    /// `socket2::Socket`, an `OwnedFd`), switches it to non-blocking mode and registers it on
    /// the global pollers with coroutine handlers and no timeouts, as a dialed
    /// connection. Options already set on the socket are kept (nothing sets `TCP_NODELAY`).
    ///
    /// Fails with `InvalidInput` for a socket of another kind (a datagram or listening
    /// socket), `NotConnected` for an unconnected one, or the registration's error.
    pub fn from_std(stream: impl Into<Socket>) -> Result<Connection> {
        let socket = stream.into();
        adopt(&socket, Family::Any, false)?;
        let peer = Addr::from_sockaddr(&socket.peer_addr()?);
        let local = Addr::from_sockaddr(&socket.local_addr()?);
        let poller = poller_for(None, peer.as_inet())?;
        let conn = Connection::new(
            socket,
            poller,
            Some(local),
            peer,
            &ConnOptions::default(),
            0,
        );
        conn.register(PollEvent::Readable)?;
        Ok(conn)
    }
}

impl TryFrom<std::net::TcpStream> for Connection {
    type Error = std::io::Error;
    /// [`Connection::from_std`].
    fn try_from(stream: std::net::TcpStream) -> Result<Connection> {
        Connection::from_std(stream)
    }
}

impl TryFrom<std::os::unix::net::UnixStream> for Connection {
    type Error = std::io::Error;
    /// [`Connection::from_std`].
    fn try_from(stream: std::os::unix::net::UnixStream) -> Result<Connection> {
        Connection::from_std(stream)
    }
}

impl TryFrom<Socket> for Connection {
    type Error = std::io::Error;
    /// [`Connection::from_std`].
    fn try_from(socket: Socket) -> Result<Connection> {
        Connection::from_std(socket)
    }
}

impl AsRawFd for Connection {
    /// The socket's fd. It stays open (and this number valid) until the last clone of the
    /// connection drops, even after [`close`](Connection::close) or
    /// [`detach`](Connection::detach) (which hands out a duplicate).
    fn as_raw_fd(&self) -> RawFd {
        self.socket().as_raw_fd()
    }
}

impl AsFd for Connection {
    /// Sound because the socket is closed only when the last handle drops, which cannot
    /// happen while `self` is borrowed. Reading or writing through it bypasses the
    /// connection's buffers: meant for socket options.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket().as_fd()
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket().as_fd()
    }
}

impl IntoRawFd for Listener {
    /// Gives up the listening socket (non-blocking). A socket file it created stays in
    /// place: it belongs to the socket's new owner.
    fn into_raw_fd(self) -> RawFd {
        self.into_socket().into_raw_fd()
    }
}

impl TryFrom<Socket> for Listener {
    type Error = std::io::Error;
    /// Takes over a listening TCP or Unix stream socket (switching it to non-blocking mode).
    /// `InvalidInput` if it is not one. A Unix socket file is left in place.
    fn try_from(socket: Socket) -> Result<Listener> {
        adopt(&socket, Family::Any, true)?;
        Listener::from_socket(socket, None)
    }
}
