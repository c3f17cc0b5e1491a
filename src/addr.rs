//! Endpoint addresses of TCP and Unix-socket connections.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use socket2::SockAddr;

/// A connection or listener endpoint: an IP socket address or a Unix-socket path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Addr {
    /// An IPv4 or IPv6 address and port.
    Inet(SocketAddr),
    /// A Unix-socket path; `None` for an unnamed socket (a client that did not bind).
    Unix(Option<PathBuf>),
}

impl Addr {
    /// The IP socket address, if this is one.
    pub fn as_inet(&self) -> Option<&SocketAddr> {
        match self {
            Addr::Inet(addr) => Some(addr),
            Addr::Unix(_) => None,
        }
    }

    /// The Unix-socket path, if this is a named Unix socket.
    pub fn as_unix_path(&self) -> Option<&Path> {
        match self {
            Addr::Unix(Some(path)) => Some(path),
            _ => None,
        }
    }

    pub(crate) fn from_sockaddr(addr: &SockAddr) -> Addr {
        match addr.as_socket() {
            Some(inet) => Addr::Inet(inet),
            None => Addr::Unix(addr.as_pathname().map(Path::to_path_buf)),
        }
    }
}

impl From<SocketAddr> for Addr {
    fn from(addr: SocketAddr) -> Addr {
        Addr::Inet(addr)
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Inet(addr) => addr.fmt(f),
            Addr::Unix(Some(path)) => path.display().fmt(f),
            Addr::Unix(None) => f.write_str("(unnamed)"),
        }
    }
}
