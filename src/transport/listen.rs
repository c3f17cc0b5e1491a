//! `ListenConfig` (Go's `net.ListenConfig`): the one listen code of both faces. It makes the
//! listening socket; `net::TcpListener`/`UnixListener` and the reactor's `Listener` register it.
//!
//! Order, as in Go: socket (non-blocking, close-on-exec) → options → control hook → bind →
//! listen; the face then registers it on a poller.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use socket2::{Domain, SockAddr, Socket};

use super::options::KeepAliveConfig;
use crate::poll::PollManager;
use crate::sys::socket::stream_socket;

/// A hook that sees each socket after it is created and before it is bound or connected
/// (Go's `Control`): set options the config does not cover. An error aborts the listen or dial.
pub type ControlHook = Arc<dyn Fn(&Socket) -> io::Result<()> + Send + Sync>;

/// How to listen (Go's `net.ListenConfig`). One config serves both faces: its `listen_tcp`
/// and `listen_unix` make [`net::TcpListener`](crate::net::TcpListener)s and
/// [`net::UnixListener`](crate::net::UnixListener)s, and [`Listener::with_config`](crate::Listener::with_config)
/// the reactor face's listeners.
///
/// ```
/// use std::time::Duration;
/// use netpoll::net::{KeepAliveConfig, ListenConfig};
///
/// let config = ListenConfig::new()
///     .with_backlog(1024)
///     .reuse_port(true) // several listeners on one port; the kernel spreads connections
///     .keepalive(Some(KeepAliveConfig { idle: Duration::from_secs(60), ..Default::default() }))
///     .control(|socket| socket.set_recv_buffer_size(256 << 10)); // before bind
/// let go_style = config.listen_tcp("tcp", "127.0.0.1:0")?;
/// let port = go_style.local_addr().port();
/// // With SO_REUSEPORT a reactor-face listener can share the port.
/// let reactor = netpoll::Listener::with_config(&config, "tcp", ("127.0.0.1", port))?;
/// assert_eq!(reactor.local_addr().as_inet(), Some(&go_style.local_addr()));
/// # Ok::<(), std::io::Error>(())
/// ```
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

    /// The keepalive accepted TCP connections get.
    pub(crate) fn accepted_keepalive(&self) -> Option<KeepAliveConfig> {
        self.keepalive
    }

    /// The pollers the listener and its connections register on (`None`: the global ones).
    pub(crate) fn manager(&self) -> Option<&Arc<PollManager>> {
        self.manager.as_ref()
    }

    /// A listening TCP socket on `network` (`tcp`, `tcp4`, `tcp6`) at `address` (`host:port`;
    /// `:port` or an empty host listens on every address, dual-stack where IPv6 exists).
    /// Errors say `listen tcp ADDRESS: ...`.
    pub(crate) fn tcp_socket(&self, network: &str, address: &str) -> io::Result<Socket> {
        let listen = || {
            let mut last_error = None;
            for addr in listen_addrs(network, address)? {
                match self.bind_tcp(addr) {
                    Ok(socket) => return Ok(socket),
                    Err(e) => last_error = Some(e),
                }
            }
            Err(last_error.unwrap_or_else(|| no_address(network)))
        };
        listen().map_err(|e| context("listen", network, address, e))
    }

    fn bind_tcp(&self, addr: SocketAddr) -> io::Result<Socket> {
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
        Ok(socket)
    }

    /// A listening Unix socket at `path`, with the file it created. An existing file makes it
    /// fail with `AddrInUse`. Errors say `listen unix PATH: ...`.
    pub(crate) fn unix_socket(&self, path: &Path) -> io::Result<(Socket, SocketFile)> {
        let bind = || {
            let socket = stream_socket(Domain::UNIX)?;
            if let Some(control) = &self.control {
                control(&socket)?;
            }
            socket.bind(&SockAddr::unix(path)?)?;
            let file = SocketFile::bound(path);
            socket.listen(self.backlog())?;
            Ok((socket, file))
        };
        bind().map_err(|e| context("listen", "unix", &path.display().to_string(), e))
    }
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

/// `e` as `OP NETWORK ADDRESS: ...` (an [`OpError`](super::error::OpError)).
pub(crate) fn context(op: &'static str, network: &str, address: &str, e: io::Error) -> io::Error {
    super::error::with_op(op, network, None, Some(address.to_owned()), e)
}

/// The socket file a Unix listener created: removed once, on close or drop, and only if the
/// path still names that file (another listener may have bound the path since).
#[derive(Debug)]
pub(crate) struct SocketFile {
    pub(crate) path: PathBuf,
    /// Device and inode of the file at bind; taken by the one unlink.
    id: std::sync::Mutex<Option<(u64, u64)>>,
}

impl SocketFile {
    pub(crate) fn bound(path: &Path) -> SocketFile {
        SocketFile {
            path: path.to_path_buf(),
            id: std::sync::Mutex::new(file_id(path)),
        }
    }

    /// A path this process did not bind (an adopted listener): never removed.
    pub(crate) fn foreign(path: PathBuf) -> SocketFile {
        SocketFile {
            path,
            id: std::sync::Mutex::new(None),
        }
    }

    /// Gives up the file: it stays when this is dropped (its socket changed owner).
    pub(crate) fn disown(&self) {
        self.id.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// Removes the file if it is still ours; later calls do nothing.
    pub(crate) fn unlink(&self) {
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
