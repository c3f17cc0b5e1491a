//! Sockets handed over by the user (std, socket2, an `OwnedFd`, a raw fd): checked to be the
//! kind the wrapping type expects, then switched to non-blocking mode, before either face
//! registers them.

use std::io;

use socket2::{Domain, Socket, Type};

/// The address family a wrapping type needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    /// IPv4 or IPv6 (`TcpConn`, `TcpListener`).
    Inet,
    /// `AF_UNIX` (`UnixConn`, `UnixListener`).
    Unix,
    /// Either (the reactor face's `Connection` and `Listener`).
    Any,
}

/// Checks that `socket` is a stream socket of `family`, listening if `listening` (else not),
/// and makes it non-blocking. Errors are `InvalidInput` naming what is wrong.
pub(crate) fn adopt(socket: &Socket, family: Family, listening: bool) -> io::Result<()> {
    if socket.r#type()? != Type::STREAM {
        return Err(invalid("not a stream socket"));
    }
    let domain = socket.domain()?;
    let inet = domain == Domain::IPV4 || domain == Domain::IPV6;
    match family {
        Family::Inet if !inet => return Err(invalid("not a TCP (IPv4 or IPv6) socket")),
        Family::Unix if domain != Domain::UNIX => return Err(invalid("not a Unix socket")),
        Family::Any if !inet && domain != Domain::UNIX => {
            return Err(invalid("not a TCP or Unix socket"))
        }
        _ => {}
    }
    match (listening, socket.is_listener()?) {
        (true, false) => return Err(invalid("not a listening socket")),
        (false, true) => return Err(invalid("a listening socket, not a connection")),
        _ => {}
    }
    socket.set_nonblocking(true)
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what.to_string())
}
