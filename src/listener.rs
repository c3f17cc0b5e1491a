//! Listening sockets for the reactor face: TCP and Unix, bound here or converted from std.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use socket2::{Domain, SockAddr, Socket};

use crate::addr::Addr;
use crate::sys::socket::{accept4, default_backlog, stream_socket};

/// A non-blocking listening socket (TCP or Unix) ready for an [`EventLoop`](crate::EventLoop).
#[derive(Debug)]
pub struct Listener {
    socket: Socket,
    local_addr: Addr,
    /// The socket file this listener created; removed when it is dropped (as Go does).
    unlink_on_drop: Option<PathBuf>,
}

impl Listener {
    /// Binds a TCP listener with `SO_REUSEADDR` and the system's maximum backlog.
    /// Tries each resolved address in turn and returns the last error if none binds.
    pub fn bind_tcp(addr: impl ToSocketAddrs) -> io::Result<Listener> {
        let mut last_error = None;
        for addr in addr.to_socket_addrs()? {
            match Listener::bind_tcp_addr(addr) {
                Ok(listener) => return Ok(listener),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "address resolved to nothing")
        }))
    }

    fn bind_tcp_addr(addr: SocketAddr) -> io::Result<Listener> {
        let socket = stream_socket(Domain::for_address(addr))?;
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        socket.listen(default_backlog())?;
        Listener::from_socket(socket, None)
    }

    /// Binds a Unix-socket listener at `path`; the socket file is removed when the listener is
    /// dropped. Fails with `AddrInUse` if the path exists.
    pub fn bind_unix(path: impl AsRef<Path>) -> io::Result<Listener> {
        let path = path.as_ref();
        let socket = stream_socket(Domain::UNIX)?;
        socket.bind(&SockAddr::unix(path)?)?;
        socket.listen(default_backlog())?;
        Listener::from_socket(socket, Some(path.to_path_buf()))
    }

    fn from_socket(socket: Socket, unlink_on_drop: Option<PathBuf>) -> io::Result<Listener> {
        socket.set_nonblocking(true)?;
        let local_addr = Addr::from_sockaddr(&socket.local_addr()?);
        Ok(Listener {
            socket,
            local_addr,
            unlink_on_drop,
        })
    }

    /// The address it listens on (with the real port when bound to port 0).
    pub fn local_addr(&self) -> &Addr {
        &self.local_addr
    }

    /// Accepts one pending connection: a non-blocking, close-on-exec socket and its peer.
    pub(crate) fn accept(&self) -> io::Result<(Socket, Addr)> {
        let (fd, peer): (OwnedFd, SockAddr) = accept4(self.socket.as_raw_fd())?;
        Ok((Socket::from(fd), Addr::from_sockaddr(&peer)))
    }

    /// Stops listening without closing the fd: new connects are refused from now on (for TCP,
    /// the kernel also resets those still in the accept queue).
    pub(crate) fn stop_listening(&self) {
        // Fails only on a socket that is not listening any more: nothing left to stop.
        let _ = self.socket.shutdown(std::net::Shutdown::Read);
    }

    /// The pending socket error, if any (`SO_ERROR`).
    pub(crate) fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.socket.take_error()
    }

    /// True for TCP listeners (accepted sockets get `TCP_NODELAY`).
    pub(crate) fn is_tcp(&self) -> bool {
        matches!(self.local_addr, Addr::Inet(_))
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

impl TryFrom<std::net::TcpListener> for Listener {
    type Error = io::Error;
    /// Takes over a std listener (switching it to non-blocking mode).
    fn try_from(listener: std::net::TcpListener) -> io::Result<Listener> {
        Listener::from_socket(Socket::from(OwnedFd::from(listener)), None)
    }
}

impl TryFrom<std::os::unix::net::UnixListener> for Listener {
    type Error = io::Error;
    /// Takes over a std Unix listener (switching it to non-blocking mode). The socket file is
    /// left in place: whoever created it removes it.
    fn try_from(listener: std::os::unix::net::UnixListener) -> io::Result<Listener> {
        Listener::from_socket(Socket::from(OwnedFd::from(listener)), None)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(path) = &self.unlink_on_drop {
            let _ = std::fs::remove_file(path);
        }
    }
}
