//! Socket options both faces set the same way, and where a new fd registers.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Socket, TcpKeepalive};

use crate::poll::{PollManager, Poller};

/// TCP keepalive settings (Go's `net.KeepAliveConfig`). The default probes after 15 s idle,
/// every 15 s, 9 times, as Go does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeepAliveConfig {
    /// Idle time before the first probe.
    pub idle: Duration,
    /// Time between probes.
    pub interval: Duration,
    /// Unanswered probes before the connection is dropped.
    pub count: u32,
}

impl Default for KeepAliveConfig {
    fn default() -> Self {
        KeepAliveConfig {
            idle: Duration::from_secs(15),
            interval: Duration::from_secs(15),
            count: 9,
        }
    }
}

pub(crate) fn apply_keepalive(socket: &Socket, config: Option<KeepAliveConfig>) -> io::Result<()> {
    match config {
        None => socket.set_keepalive(false),
        Some(c) => socket.set_tcp_keepalive(
            &TcpKeepalive::new()
                .with_time(c.idle)
                .with_interval(c.interval)
                .with_retries(c.count),
        ),
    }
}

/// Where a new fd registers: inside a coroutine, that coroutine's poller (so the wakes of the
/// coroutines using it stay local, lock- and syscall-free); elsewhere a pick of the caller's
/// [`PollManager`], or of the global one.
pub(crate) fn poller_for(
    manager: Option<&Arc<PollManager>>,
    peer: Option<&SocketAddr>,
) -> io::Result<Arc<Poller>> {
    if let Some(poller) = crate::rt::current_poller() {
        return Ok(poller);
    }
    Ok(match manager {
        Some(manager) => manager.pick_for(peer),
        None => PollManager::global()?.pick_for(peer),
    })
}

/// An IP socket address from the kernel's, or `InvalidInput` for another family.
pub(crate) fn inet(addr: socket2::SockAddr) -> io::Result<SocketAddr> {
    addr.as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not an IP socket address"))
}
