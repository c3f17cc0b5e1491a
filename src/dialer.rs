//! `Dialer`: client connections for the reactor face, connected without blocking a thread on
//! `connect(2)` and registered on a poller like accepted ones.

use std::io::{self, ErrorKind, Result};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, SockAddr, Socket};

use crate::sys::socket::stream_socket;

use crate::addr::Addr;
use crate::connection::state::DIALING;
use crate::connection::{ConnOptions, Connection, Executor};
use crate::poll::{PollEvent, PollManager};
use crate::runner::HandlerPool;

/// Dials with the default [`Dialer`]: `network` is `tcp`, `tcp4`, `tcp6` or `unix`; `timeout`
/// bounds the whole dial (`None`: no bound beyond the kernel's).
pub fn dial_connection(
    network: &str,
    address: &str,
    timeout: Option<Duration>,
) -> Result<Connection> {
    Dialer::new().dial_connection(network, address, timeout)
}

/// Makes client [`Connection`]s: same readers, writers, timeouts and `set_on_request` as
/// accepted ones.
#[derive(Clone, Debug, Default)]
pub struct Dialer {
    manager: Option<Arc<PollManager>>,
    options: ConnOptions,
}

impl Dialer {
    /// A dialer using the global pollers and handler pool.
    pub fn new() -> Dialer {
        Dialer::default()
    }

    /// Registers dialed connections on these pollers.
    pub fn poll_manager(mut self, manager: Arc<PollManager>) -> Self {
        self.manager = Some(manager);
        self
    }

    /// Runs `set_on_request` handlers of dialed connections on this pool.
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

    /// Connects to `address` over `network` (`tcp`, `tcp4`, `tcp6` or `unix`) within `timeout`.
    ///
    /// TCP host names are resolved and the addresses of the wanted family tried in order until
    /// one connects. Errors: `InvalidInput` for an unknown network or an address that does not
    /// parse, `ConnectionRefused`, `NetworkUnreachable`/`HostUnreachable`, `TimedOut` when the
    /// time runs out.
    pub fn dial_connection(
        &self,
        network: &str,
        address: &str,
        timeout: Option<Duration>,
    ) -> Result<Connection> {
        let deadline = timeout.map(|t| Instant::now() + t);
        match network {
            "tcp" | "tcp4" | "tcp6" => {
                let candidates: Vec<SocketAddr> = address
                    .to_socket_addrs()
                    .map_err(|e| context(e, network, address))?
                    .filter(|a| match network {
                        "tcp4" => a.is_ipv4(),
                        "tcp6" => a.is_ipv6(),
                        _ => true,
                    })
                    .collect();
                if candidates.is_empty() {
                    return Err(io::Error::new(
                        ErrorKind::InvalidInput,
                        format!("dial {network} {address}: no {network} address found"),
                    ));
                }
                let mut last_error = None;
                for addr in candidates {
                    match self.dial_tcp(addr, deadline) {
                        Ok(conn) => return Ok(conn),
                        Err(e) => {
                            let timed_out = e.kind() == ErrorKind::TimedOut;
                            last_error = Some(context(e, network, address));
                            if timed_out {
                                break;
                            }
                        }
                    }
                }
                Err(last_error.expect("at least one address was tried"))
            }
            "unix" => {
                let target = SockAddr::unix(address)?;
                let socket = stream_socket(Domain::UNIX)?;
                let peer = Addr::Unix(Some(address.into()));
                self.connect(socket, &target, peer, deadline)
                    .map_err(|e| context(e, network, address))
            }
            other => Err(io::Error::new(
                ErrorKind::InvalidInput,
                format!("dial {other} {address}: unknown network {other:?}"),
            )),
        }
    }

    fn dial_tcp(&self, addr: SocketAddr, deadline: Option<Instant>) -> Result<Connection> {
        // The kernel may pick the destination's own port as our source port when nothing
        // listens there and connect us to ourselves (TCP simultaneous open); retry a couple
        // of times, as Go does, rather than hand out such a connection.
        let mut attempts = 0;
        loop {
            let socket = stream_socket(Domain::for_address(addr))?;
            socket.set_tcp_nodelay(true)?;
            let conn = self.connect(socket, &addr.into(), Addr::Inet(addr), deadline)?;
            if attempts < 2 && is_self_connect(conn.local_addr(), conn.peer_addr()) {
                conn.close();
                attempts += 1;
                continue;
            }
            return Ok(conn);
        }
    }

    /// A non-blocking connect, then one edge-triggered writable event on a poller, then
    /// `SO_ERROR`; on success the same registration switches to level-triggered input.
    fn connect(
        &self,
        socket: Socket,
        target: &SockAddr,
        peer: Addr,
        deadline: Option<Instant>,
    ) -> Result<Connection> {
        let in_progress = match socket.connect(target) {
            Ok(()) => false,
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => true,
            Err(e) => return Err(e),
        };
        let manager = match &self.manager {
            Some(manager) => manager.as_ref(),
            None => PollManager::global()?,
        };
        let poller = manager.pick();
        let local = (!in_progress)
            .then(|| socket.local_addr().ok().map(|a| Addr::from_sockaddr(&a)))
            .flatten();
        if !in_progress {
            let conn = Connection::new(socket, poller, local, peer, &self.options, 0);
            conn.register(PollEvent::Readable)?;
            return Ok(conn);
        }
        let conn = Connection::new(socket, poller, None, peer, &self.options, DIALING);
        conn.register(PollEvent::Writable)?;
        let result = self.wait_connected(&conn, deadline);
        if let Err(e) = result {
            conn.close();
            return Err(e);
        }
        Ok(conn)
    }

    fn wait_connected(&self, conn: &Connection, deadline: Option<Instant>) -> Result<()> {
        let inner = &conn.inner;
        loop {
            inner.wait_dial_event(deadline)?;
            if let Some(e) = conn.socket().take_error()? {
                return Err(e);
            }
            match conn.socket().peer_addr() {
                Ok(_) => break,
                // Woken before the handshake finished: wait for the next edge.
                Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => inner.clear_dial_event(),
                Err(e) => return Err(e),
            }
        }
        let local = conn.socket().local_addr()?;
        inner.set_local_addr(Addr::from_sockaddr(&local));
        inner.finish_dial();
        // The registration is persistent, so even a connect edge that carried a hang-up (the
        // peer wrote and closed at once) left it attached: level-triggered input then reports
        // the data and the end of input again.
        conn.register(PollEvent::ModReadable)
    }
}

fn is_self_connect(local: &Addr, peer: &Addr) -> bool {
    matches!((local, peer), (Addr::Inet(l), Addr::Inet(p)) if l == p)
}

fn context(e: io::Error, network: &str, address: &str) -> io::Error {
    io::Error::new(e.kind(), format!("dial {network} {address}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_connect_is_same_inet_endpoint() {
        let a: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:5001".parse().unwrap();
        assert!(is_self_connect(&Addr::Inet(a), &Addr::Inet(a)));
        assert!(!is_self_connect(&Addr::Inet(a), &Addr::Inet(b)));
        assert!(!is_self_connect(&Addr::Unix(None), &Addr::Unix(None)));
    }
}
