//! Endpoint addresses of TCP and Unix-socket connections.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
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

/// An address to dial or listen on, as both faces take it: `"host:port"` (a host name is
/// resolved), `"[v6]:port"`, `":port"` (for listening: every address), a [`SocketAddr`],
/// `(host, port)` or `(ip, port)`. Unix-socket paths go to the `*_unix` calls instead.
///
/// ```
/// use netpoll::ToAddress;
/// use std::net::{Ipv6Addr, SocketAddr};
/// assert_eq!("localhost:80".to_address(), "localhost:80");
/// assert_eq!(SocketAddr::from(([127, 0, 0, 1], 80)).to_address(), "127.0.0.1:80");
/// assert_eq!((Ipv6Addr::LOCALHOST, 80).to_address(), "[::1]:80");
/// assert_eq!(("::1", 80).to_address(), "[::1]:80");
/// ```
pub trait ToAddress {
    /// The address as `host:port` text, the form the dial and listen code parses.
    fn to_address(&self) -> Cow<'_, str>;
}

impl ToAddress for str {
    fn to_address(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

impl ToAddress for String {
    fn to_address(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

impl<T: ToAddress + ?Sized> ToAddress for &T {
    fn to_address(&self) -> Cow<'_, str> {
        (**self).to_address()
    }
}

macro_rules! display_address {
    ($($t:ty),*) => {$(
        impl ToAddress for $t {
            fn to_address(&self) -> Cow<'_, str> {
                Cow::Owned(self.to_string())
            }
        }
    )*};
}
display_address!(SocketAddr, SocketAddrV4, SocketAddrV6);

macro_rules! ip_port_address {
    ($($t:ty),*) => {$(
        impl ToAddress for ($t, u16) {
            fn to_address(&self) -> Cow<'_, str> {
                Cow::Owned(SocketAddr::new(IpAddr::from(self.0), self.1).to_string())
            }
        }
    )*};
}
ip_port_address!(IpAddr, Ipv4Addr, Ipv6Addr);

impl ToAddress for (&str, u16) {
    fn to_address(&self) -> Cow<'_, str> {
        Cow::Owned(host_port(self.0, self.1))
    }
}

impl ToAddress for (String, u16) {
    fn to_address(&self) -> Cow<'_, str> {
        Cow::Owned(host_port(&self.0, self.1))
    }
}

/// `host:port`, bracketing an IPv6 literal.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
