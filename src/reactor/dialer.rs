//! `Dialer`: client connections for the reactor face. The dial itself is the shared
//! [`net::Dialer`](crate::net::Dialer) (timeouts, deadlines, happy eyeballs, cancellation,
//! self-connect retry); its connected socket becomes a [`Connection`] registered on a poller
//! like an accepted one.

use std::io::{self, ErrorKind, Result};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::connection::{ConnOptions, Connection, Executor};
use super::runner::HandlerPool;
use crate::poll::{PollEvent, PollManager};
use crate::transport::addr::{Addr, ToAddress};
use crate::transport::dial::{CancelToken, Dialer as DialCore};
use crate::transport::fd::NetFd;
use crate::transport::options::poller_for;

/// Dials with the default [`Dialer`] (CloudWeGo netpoll's `DialConnection`): `network` is
/// `tcp`, `tcp4`, `tcp6` or `unix`; `timeout` bounds the whole dial (`None`: no bound beyond
/// the kernel's).
pub fn dial_connection(
    network: &str,
    address: &str,
    timeout: Option<Duration>,
) -> Result<Connection> {
    let mut dialer = Dialer::new();
    if let Some(timeout) = timeout {
        dialer = dialer.timeout(timeout);
    }
    dialer.dial_connection(network, address)
}

/// Makes client [`Connection`]s: same readers, writers, timeouts and `set_on_request` as
/// accepted ones. The dial options are those of [`net::Dialer`](crate::net::Dialer), which does
/// the dialing; the rest are the connection's.
///
/// ```
/// use std::io::{Read, Write};
/// use std::time::Duration;
/// # let server = std::net::TcpListener::bind("127.0.0.1:0")?;
/// # let addr = server.local_addr()?;
/// let mut conn = netpoll::Dialer::new()
///     .timeout(Duration::from_secs(5))
///     .read_timeout(Duration::from_secs(5))
///     .dial_tcp("tcp", addr)?;
/// # let (mut peer, _) = server.accept()?;
/// conn.write_all(b"ping")?; // queued and flushed
/// # peer.write_all(b"pong")?;
/// let reply = conn.reader().next(4)?; // waits for 4 bytes
/// # assert_eq!(&reply[..], b"pong");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct Dialer {
    dial: DialCore,
    options: ConnOptions,
}

impl Dialer {
    /// A dialer using the global pollers (handlers of dialed connections run as coroutines).
    pub fn new() -> Dialer {
        Dialer::default()
    }

    /// Dials with these options (timeout, deadline, local address, keepalive, control hook,
    /// cancel token, fallback delay, pollers).
    pub fn with_dialer(mut self, dialer: crate::net::Dialer) -> Self {
        self.dial = dialer;
        self
    }

    /// Bounds the whole dial, name resolution and every address included; zero means none.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.dial = self.dial.timeout(timeout);
        self
    }

    /// An absolute deadline for the dial; the earlier of this and the timeout applies.
    pub fn deadline(mut self, deadline: Instant) -> Self {
        self.dial = self.dial.deadline(deadline);
        self
    }

    /// Dials started with this dialer can be cancelled through `token`.
    pub fn cancel_token(mut self, token: CancelToken) -> Self {
        self.dial = self.dial.cancel_token(token);
        self
    }

    /// Registers dialed connections on these pollers.
    pub fn poll_manager(mut self, manager: Arc<PollManager>) -> Self {
        self.dial = self.dial.poll_manager(manager);
        self
    }

    /// Runs `set_on_request` handlers of dialed connections on this pool (default: a
    /// coroutine on the connection's poller, as for servers).
    pub fn handler_pool(mut self, pool: HandlerPool) -> Self {
        self.options.executor = Executor::Pool(pool);
        self
    }

    /// The read timeout of dialed connections.
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.options.read_timeout = Some(timeout);
        self
    }

    /// The write timeout of dialed connections.
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.options.write_timeout = Some(timeout);
        self
    }

    /// Connects to `address` over `network` (`tcp`, `tcp4`, `tcp6`): `"host:port"`, a
    /// `SocketAddr`, `(host, port)`, ... — as [`net::Dialer::dial_tcp`](crate::net::Dialer::dial_tcp).
    pub fn dial_tcp(&self, network: &str, address: impl ToAddress) -> Result<Connection> {
        let fd = self.dial.dial_tcp_fd(network, &address.to_address())?;
        self.wrap(fd)
    }

    /// Connects a Unix-socket path.
    pub fn dial_unix(&self, path: impl AsRef<Path>) -> Result<Connection> {
        let fd = self.dial.dial_unix_fd(path.as_ref())?;
        self.wrap(fd)
    }

    /// Connects to `address` over `network`: `tcp`, `tcp4`, `tcp6` (`host:port`) or `unix` (a
    /// path). Errors: `InvalidInput` for an unknown network or an address that does not parse,
    /// `ConnectionRefused`, `TimedOut` when the time runs out, ... as `dial NETWORK ADDRESS: ...`.
    pub fn dial_connection(&self, network: &str, address: &str) -> Result<Connection> {
        match network {
            "unix" => self.dial_unix(address),
            "tcp" | "tcp4" | "tcp6" => self.dial_tcp(network, address),
            other => Err(io::Error::new(
                ErrorKind::InvalidInput,
                format!("dial {other} {address}: unknown network {other:?}"),
            )),
        }
    }

    /// The dial's descriptor, taken off its poll descriptor, as a registered connection.
    fn wrap(&self, fd: NetFd) -> Result<Connection> {
        let socket = fd.into_socket()?;
        let local = Addr::from_sockaddr(&socket.local_addr()?);
        let peer = Addr::from_sockaddr(&socket.peer_addr()?);
        let poller = poller_for(self.dial.manager(), peer.as_inet())?;
        let conn = Connection::new(socket, poller, Some(local), peer, &self.options, 0);
        conn.register(PollEvent::Readable)?;
        Ok(conn)
    }
}
