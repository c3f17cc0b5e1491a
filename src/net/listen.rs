//! `ListenConfig` → `TcpListener` / `UnixListener` (Go's `net.ListenConfig`, `net.Listen`).
//!
//! Order, as in Go: socket (non-blocking, close-on-exec) → options → control hook → bind →
//! listen → register on a poller.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use socket2::{Domain, SockAddr, Socket};

use super::conn::{apply_keepalive, inet, poller_for, KeepAliveConfig, TcpConn, UnixConn};
use super::fd::NetFd;
use crate::addr::Addr;
use crate::poll::PollManager;
use crate::sys::socket::stream_socket;

/// A hook that sees each socket after it is created and before it is bound or connected
/// (Go's `Control`): set options the config does not cover. An error aborts the listen or dial.
pub type ControlHook = Arc<dyn Fn(&Socket) -> io::Result<()> + Send + Sync>;

/// How to listen (Go's `net.ListenConfig`).
#[derive(Clone)]
pub struct ListenConfig {
    backlog: Option<i32>,
    reuse_port: bool,
    keepalive: Option<KeepAliveConfig>,
    control: Option<ControlHook>,
    manager: Option<Arc<PollManager>>,
}

impl Default for ListenConfig {
    fn default() -> Self {
        ListenConfig {
            backlog: None,
            reuse_port: false,
            keepalive: Some(KeepAliveConfig::default()),
            control: None,
            manager: None,
        }
    }
}

impl fmt::Debug for ListenConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenConfig")
            .field("backlog", &self.backlog())
            .field("reuse_port", &self.reuse_port)
            .field("keepalive", &self.keepalive)
            .field("control", &self.control.is_some())
            .finish()
    }
}

impl ListenConfig {
    /// The defaults: the system backlog, `SO_REUSEADDR`, no `SO_REUSEPORT`, keepalive 15 s on
    /// accepted TCP connections, the global pollers.
    pub fn new() -> ListenConfig {
        ListenConfig::default()
    }

    /// The listen backlog (default: [`default_backlog`]).
    pub fn backlog(&self) -> i32 {
        self.backlog.unwrap_or_else(default_backlog)
    }

    /// Sets the listen backlog.
    pub fn with_backlog(mut self, backlog: i32) -> Self {
        self.backlog = Some(backlog);
        self
    }

    /// Sets `SO_REUSEPORT`, so several listeners can share a port (the kernel spreads
    /// connections between them).
    pub fn reuse_port(mut self, on: bool) -> Self {
        self.reuse_port = on;
        self
    }

    /// Keepalive for accepted TCP connections; `None` turns it off.
    pub fn keepalive(mut self, config: Option<KeepAliveConfig>) -> Self {
        self.keepalive = config;
        self
    }

    /// A hook run on the socket before `bind`.
    pub fn control(
        mut self,
        hook: impl Fn(&Socket) -> io::Result<()> + Send + Sync + 'static,
    ) -> Self {
        self.control = Some(Arc::new(hook));
        self
    }

    /// Registers the listener and its accepted connections on these pollers.
    pub fn poll_manager(mut self, manager: Arc<PollManager>) -> Self {
        self.manager = Some(manager);
        self
    }

    /// Listens on `network` (`tcp`, `tcp4`, `tcp6`) at `address` (`host:port`; `:port` or an
    /// empty host listens on every address, dual-stack where IPv6 exists).
    pub fn listen_tcp(&self, network: &str, address: &str) -> io::Result<TcpListener> {
        let listen = || {
            let mut last_error = None;
            for addr in listen_addrs(network, address)? {
                match self.bind_tcp(addr) {
                    Ok(listener) => return Ok(listener),
                    Err(e) => last_error = Some(e),
                }
            }
            Err(last_error.unwrap_or_else(|| no_address(network)))
        };
        listen().map_err(|e| context("listen", network, address, e))
    }

    /// Listens on one TCP address.
    pub fn listen_tcp_addr(&self, addr: SocketAddr) -> io::Result<TcpListener> {
        self.bind_tcp(addr)
            .map_err(|e| context("listen", "tcp", &addr.to_string(), e))
    }

    fn bind_tcp(&self, addr: SocketAddr) -> io::Result<TcpListener> {
        let socket = stream_socket(Domain::for_address(addr))?;
        socket.set_reuse_address(true)?;
        if self.reuse_port {
            socket.set_reuse_port(true)?;
        }
        if addr.is_ipv6() && addr.ip().is_unspecified() {
            // A wildcard listener serves IPv4 too (as Go's ":port" does).
            socket.set_only_v6(false)?;
        }
        if let Some(control) = &self.control {
            control(&socket)?;
        }
        socket.bind(&addr.into())?;
        socket.listen(self.backlog())?;
        let local = inet(socket.local_addr()?)?;
        let poller = poller_for(self.manager.as_ref(), None)?;
        Ok(TcpListener {
            fd: NetFd::new(socket, poller)?,
            local,
            keepalive: self.keepalive,
            manager: self.manager.clone(),
        })
    }

    /// Listens on a Unix-socket path. The socket file is removed when the listener is closed or
    /// dropped, whichever comes first, and only if the path still names the socket this listener
    /// bound (same device and inode): a newer listener on the same path keeps its file. An
    /// existing file makes it fail with `AddrInUse`.
    pub fn listen_unix(&self, path: impl AsRef<Path>) -> io::Result<UnixListener> {
        let path = path.as_ref();
        self.bind_unix(path)
            .map_err(|e| context("listen", "unix", &path.display().to_string(), e))
    }

    fn bind_unix(&self, path: &Path) -> io::Result<UnixListener> {
        let socket = stream_socket(Domain::UNIX)?;
        if let Some(control) = &self.control {
            control(&socket)?;
        }
        socket.bind(&SockAddr::unix(path)?)?;
        let unlink = SocketFile::bound(path);
        socket.listen(self.backlog())?;
        let poller = poller_for(self.manager.as_ref(), None)?;
        Ok(UnixListener {
            fd: NetFd::new(socket, poller)?,
            path: unlink,
            manager: self.manager.clone(),
        })
    }
}

/// Listens with the default [`ListenConfig`] (Go's `net.Listen("tcp", address)`).
pub fn listen_tcp(network: &str, address: &str) -> io::Result<TcpListener> {
    ListenConfig::new().listen_tcp(network, address)
}

/// Listens on a Unix-socket path with the default [`ListenConfig`].
pub fn listen_unix(path: impl AsRef<Path>) -> io::Result<UnixListener> {
    ListenConfig::new().listen_unix(path)
}

/// The default listen backlog: `/proc/sys/net/core/somaxconn`, read once, capped at 65535
/// (older kernels keep the backlog in 16 bits, seed 001); `SOMAXCONN` if it cannot be read.
pub fn default_backlog() -> i32 {
    crate::sys::socket::default_backlog()
}

fn listen_addrs(network: &str, address: &str) -> io::Result<Vec<SocketAddr>> {
    let want = family_filter(network)?;
    let (host, port) = split_host_port(address)?;
    if host.is_empty() {
        let ip = match network {
            "tcp4" => IpAddr::from([0, 0, 0, 0]),
            _ => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        // Where IPv6 is missing, the v4 wildcard is the fallback.
        return Ok(vec![
            SocketAddr::new(ip, port),
            SocketAddr::new(IpAddr::from([0, 0, 0, 0]), port),
        ]);
    }
    Ok((host, port).to_socket_addrs()?.filter(want).collect())
}

/// The family filter of a TCP network name.
pub(crate) fn family_filter(network: &str) -> io::Result<fn(&SocketAddr) -> bool> {
    match network {
        "tcp" => Ok(|_| true),
        "tcp4" => Ok(|a| a.is_ipv4()),
        "tcp6" => Ok(|a| a.is_ipv6()),
        other => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("unknown network {other:?} (want tcp, tcp4 or tcp6)"),
        )),
    }
}

/// Splits `host:port`, `[v6]:port` and `:port`.
pub(crate) fn split_host_port(address: &str) -> io::Result<(&str, u16)> {
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("address {address:?}: want host:port"),
        )
    };
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = port.parse::<u16>().map_err(|_| bad())?;
    Ok((host, port))
}

pub(crate) fn no_address(network: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("no suitable address for {network}"),
    )
}

pub(crate) fn context(op: &str, network: &str, address: &str, e: io::Error) -> io::Error {
    super::error::with_op(format!("{op} {network} {address}"), e)
}

/// A TCP listener of the Go-net face (Go's `*net.TCPListener`).
pub struct TcpListener {
    fd: NetFd,
    local: SocketAddr,
    keepalive: Option<KeepAliveConfig>,
    manager: Option<Arc<PollManager>>,
}

impl TcpListener {
    /// Waits for a connection. Accepted connections have `TCP_NODELAY` and the config's
    /// keepalive, and are spread over the pollers. `close` from another thread makes a pending
    /// accept fail with the closed error.
    ///
    /// A connection the peer reset while it waited in the backlog is still returned (as Go
    /// does): its address is the one `accept4` reported, and its reads fail with the reset.
    pub fn accept(&self) -> io::Result<(TcpConn, SocketAddr)> {
        let (socket, peer) = self.fd.accept()?;
        self.finish_accept(socket, &peer)
    }

    /// The async [`accept`](Self::accept).
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpConn, SocketAddr)>> {
        let (socket, peer) = std::task::ready!(self.fd.poll_accept(cx))?;
        Poll::Ready(self.finish_accept(socket, &peer))
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

    /// Stops listening; a pending accept fails with the closed error.
    pub fn close(&self) -> io::Result<()> {
        self.fd.close()
    }

    /// Sets the deadline of `accept`; see [`TcpConn::set_deadline`].
    pub fn set_deadline(&self, at: Option<std::time::Instant>) -> io::Result<()> {
        self.fd.set_deadline(Some(super::desc::Mode::Read), at)
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

/// The socket file a Unix listener created: removed once, on close or drop, and only if the
/// path still names that file (another listener may have bound the path since).
struct SocketFile {
    path: PathBuf,
    /// Device and inode of the file at bind; taken by the one unlink.
    id: std::sync::Mutex<Option<(u64, u64)>>,
}

impl SocketFile {
    fn bound(path: &Path) -> SocketFile {
        SocketFile {
            path: path.to_path_buf(),
            id: std::sync::Mutex::new(file_id(path)),
        }
    }

    fn unlink(&self) {
        let id = self.id.lock().unwrap_or_else(|e| e.into_inner()).take();
        if id.is_some() && file_id(&self.path) == id {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        self.unlink();
    }
}

/// (device, inode) of the file at `path` itself (not a symlink's target).
fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// A Unix-socket listener of the Go-net face (Go's `*net.UnixListener`).
pub struct UnixListener {
    fd: NetFd,
    path: SocketFile,
    manager: Option<Arc<PollManager>>,
}

impl UnixListener {
    /// Waits for a connection.
    pub fn accept(&self) -> io::Result<(UnixConn, Addr)> {
        let (socket, peer) = self.fd.accept()?;
        self.finish_accept(socket, &peer)
    }

    /// The async [`accept`](Self::accept).
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(UnixConn, Addr)>> {
        let (socket, peer) = std::task::ready!(self.fd.poll_accept(cx))?;
        Poll::Ready(self.finish_accept(socket, &peer))
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
        self.fd.close()?;
        self.path.unlink();
        Ok(())
    }

    /// Sets the deadline of `accept`.
    pub fn set_deadline(&self, at: Option<std::time::Instant>) -> io::Result<()> {
        self.fd.set_deadline(Some(super::desc::Mode::Read), at)
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
        e.raw_os_error(),
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

    fn next_with<T>(
        &mut self,
        fd: &NetFd,
        mut accept: impl FnMut() -> io::Result<T>,
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
                        Err(e) => e,
                    }
                }
                Err(e) => e,
            };
            if super::error::is_closed(&error) {
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
        self.next_with(&listener.fd, || listener.accept().map(|(conn, _)| conn))
    }
}

impl Iterator for Incoming<'_, UnixListener> {
    type Item = io::Result<UnixConn>;

    fn next(&mut self) -> Option<io::Result<UnixConn>> {
        let listener = self.listener;
        self.next_with(&listener.fd, || listener.accept().map(|(conn, _)| conn))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        assert_eq!(split_host_port(":80").unwrap(), ("", 80));
        assert_eq!(split_host_port("[::1]:8080").unwrap(), ("::1", 8080));
        assert_eq!(split_host_port("localhost:1").unwrap(), ("localhost", 1));
        assert!(split_host_port("localhost").is_err());
        assert!(split_host_port("a:99999").is_err());
    }

    #[test]
    fn backlog_is_somaxconn_capped() {
        let b = default_backlog();
        assert!(b > 0 && b <= 65535);
    }
}
