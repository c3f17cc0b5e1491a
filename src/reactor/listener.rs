//! Listening sockets for the reactor face: TCP and Unix, made by the shared [`ListenConfig`]
//! (the Go-net face's too), or converted from std.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;

use socket2::Socket;

use crate::net::ListenConfig;
use crate::sys::socket::accept4;
use crate::transport::addr::{Addr, ToAddress};
use crate::transport::listen::SocketFile;

/// A non-blocking listening socket (TCP or Unix) ready for an [`EventLoop`](crate::EventLoop)
/// (see [`EventLoop::serve`](crate::EventLoop::serve) for one served and shut down).
///
/// ```
/// use netpoll::Listener;
///
/// let listener = Listener::bind_tcp("127.0.0.1:0")?;
/// assert_ne!(listener.local_addr().as_inet().unwrap().port(), 0);
/// let taken = Listener::bind_tcp(listener.local_addr().as_inet().unwrap());
/// assert!(taken.unwrap_err().to_string().starts_with("listen tcp 127.0.0.1:"));
///
/// // A Unix listener removes its socket file when dropped (if the path still names it).
/// let path = std::env::temp_dir().join(format!("netpoll-doc-{}.sock", std::process::id()));
/// # let _ = std::fs::remove_file(&path);
/// let unix = Listener::bind_unix(&path)?;
/// assert!(path.exists());
/// drop(unix);
/// assert!(!path.exists());
///
/// // Or take over a std listener.
/// let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let listener = Listener::try_from(std_listener)?;
/// # let _ = listener;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Listener {
    socket: Socket,
    local_addr: Addr,
    /// The socket file this listener created; dropping it removes the file, if still ours.
    _socket_file: Option<SocketFile>,
}

impl Listener {
    /// Listens on TCP `address` (`"host:port"`, `":port"`, a `SocketAddr`, ...) with
    /// `SO_REUSEADDR` and the system's maximum backlog. Errors say `listen tcp ADDRESS: ...`.
    pub fn bind_tcp(address: impl ToAddress) -> io::Result<Listener> {
        Listener::with_config(&ListenConfig::new(), "tcp", address)
    }

    /// Binds a Unix-socket listener at `path`. The socket file is removed when the listener is
    /// dropped, and only if the path still names this socket. Fails with `AddrInUse` if the
    /// path exists.
    pub fn bind_unix(path: impl AsRef<Path>) -> io::Result<Listener> {
        Listener::with_config_unix(&ListenConfig::new(), path)
    }

    /// Listens on `network` (`tcp`, `tcp4`, `tcp6`) at `address` with the options of `config`
    /// (backlog, `SO_REUSEPORT`, control hook); the same listen code as the Go-net face.
    pub fn with_config(
        config: &ListenConfig,
        network: &str,
        address: impl ToAddress,
    ) -> io::Result<Listener> {
        let socket = config.tcp_socket(network, &address.to_address())?;
        Listener::from_socket(socket, None)
    }

    /// A Unix-socket listener with the options of `config`.
    pub fn with_config_unix(config: &ListenConfig, path: impl AsRef<Path>) -> io::Result<Listener> {
        let (socket, file) = config.unix_socket(path.as_ref())?;
        Listener::from_socket(socket, Some(file))
    }

    pub(super) fn from_socket(socket: Socket, file: Option<SocketFile>) -> io::Result<Listener> {
        socket.set_nonblocking(true)?;
        let local_addr = Addr::from_sockaddr(&socket.local_addr()?);
        Ok(Listener {
            socket,
            local_addr,
            _socket_file: file,
        })
    }

    /// A listener on an adopted socket, infallibly (for `FromRawFd`): the non-blocking switch
    /// fails only for a descriptor that is not open, which `from_raw_fd`'s contract rules out,
    /// and [`ensure_nonblocking`](Self::ensure_nonblocking) repeats it before serving; an
    /// address the kernel will not tell reads as an unnamed Unix socket.
    pub(crate) fn adopt(socket: Socket) -> Listener {
        let _ = socket.set_nonblocking(true);
        let local_addr = socket
            .local_addr()
            .map(|a| Addr::from_sockaddr(&a))
            .unwrap_or(Addr::Unix(None));
        Listener {
            socket,
            local_addr,
            _socket_file: None,
        }
    }

    /// The socket, given up: a socket file this listener created stays in place.
    pub(super) fn into_socket(self) -> Socket {
        if let Some(file) = &self._socket_file {
            file.disown();
        }
        self.socket
    }

    pub(super) fn socket(&self) -> &Socket {
        &self.socket
    }

    /// Makes sure accepts cannot block the poller thread (an adopted fd may be blocking).
    pub(crate) fn ensure_nonblocking(&self) -> io::Result<()> {
        self.socket.set_nonblocking(true)
    }

    /// The address it listens on (with the real port when bound to port 0).
    pub fn local_addr(&self) -> &Addr {
        &self.local_addr
    }

    /// Accepts one pending connection: a non-blocking, close-on-exec socket and its peer.
    pub(crate) fn accept(&self) -> io::Result<(Socket, Addr)> {
        let (socket, peer) = accept4(&self.socket)?;
        Ok((socket, Addr::from_sockaddr(&peer)))
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
