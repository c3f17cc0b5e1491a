//! The Go-net face's dial calls: the shared [`Dialer`] yields a connected descriptor, made a
//! [`TcpConn`] or [`UnixConn`] here.

use std::io;
use std::path::Path;

use super::conn::{TcpConn, UnixConn};
use crate::transport::addr::ToAddress;
use crate::transport::dial::Dialer;
use crate::transport::listen::context;

/// Dials `address` over `network` (`tcp`, `tcp4`, `tcp6`) with the default [`Dialer`].
///
/// ```
/// # let listener = netpoll::net::listen_tcp("tcp", "127.0.0.1:0")?;
/// # let addr = listener.local_addr();
/// let conn = netpoll::net::dial_tcp("tcp", addr)?; // a SocketAddr, "host:port", (ip, port)
/// assert_eq!(conn.peer_addr(), addr);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn dial_tcp(network: &str, address: impl ToAddress) -> io::Result<TcpConn> {
    Dialer::new().dial_tcp(network, address)
}

/// Dials a Unix-socket path with the default [`Dialer`].
pub fn dial_unix(path: impl AsRef<Path>) -> io::Result<UnixConn> {
    Dialer::new().dial_unix(path)
}

impl Dialer {
    /// Connects to `address` over `network` (`tcp`, `tcp4`, `tcp6`): `"host:port"`,
    /// `"[v6]:port"`, a `SocketAddr`, `(host, port)`, `(ip, port)`.
    ///
    /// Host names are resolved; with `tcp` and both families present the first family is tried
    /// first and the other starts after the fallback delay or as soon as the first fails (the
    /// first to connect wins). Within a family, addresses are tried in order, each given an
    /// equal share of the remaining time (at least 2 s). Errors: `TimedOut` when the time runs
    /// out, the cancel error, else the first family's error, all as `dial tcp ADDRESS: ...`.
    ///
    /// ```
    /// use std::time::Duration;
    /// # let listener = netpoll::net::listen_tcp("tcp", "127.0.0.1:0")?;
    /// # let port = listener.local_addr().port();
    /// let conn = netpoll::net::Dialer::new()
    ///     .timeout(Duration::from_secs(5))
    ///     .dial_tcp("tcp", ("127.0.0.1", port))?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn dial_tcp(&self, network: &str, address: impl ToAddress) -> io::Result<TcpConn> {
        let address = address.to_address();
        // A peer that reset at once leaves no address for getpeername: still a dial error.
        TcpConn::from_fd(self.dial_tcp_fd(network, &address)?)
            .map_err(|e| context("dial", network, &address, e))
    }

    /// Connects a Unix-socket path. Errors read `dial unix PATH: ...`.
    pub fn dial_unix(&self, path: impl AsRef<Path>) -> io::Result<UnixConn> {
        let path = path.as_ref();
        UnixConn::from_fd(self.dial_unix_fd(path)?)
            .map_err(|e| context("dial", "unix", &path.display().to_string(), e))
    }

    /// The async [`dial_tcp`](Self::dial_tcp), for any executor, with the same behaviour: a
    /// host name is resolved on the handler pool (no thread per lookup; the awaiting task is
    /// woken with the result, and the timeout bounds the lookup too), a literal address needs
    /// no lookup; happy eyeballs races the two families as two futures, the fallback started
    /// after the fallback delay (a poller timer) or when the primary fails. Inside a netpoll
    /// task the connection registers on the task's poller.
    pub async fn dial_tcp_async(
        &self,
        network: &str,
        address: impl ToAddress,
    ) -> io::Result<TcpConn> {
        let address = address.to_address();
        TcpConn::from_fd(self.dial_tcp_fd_async(network, &address).await?)
            .map_err(|e| context("dial", network, &address, e))
    }
}
