//! The errors the Go-net face adds to the kernel's: "use of closed network connection" and
//! "i/o timeout", each recognisable without string matching.

use std::fmt;
use std::io;

/// The payload of the error an operation on a closed connection or listener returns (Go's
/// `net.ErrClosed`). Its [`io::ErrorKind`] is `NotConnected`; [`is_closed`] tells it apart from
/// a kernel `ENOTCONN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrClosed;

impl fmt::Display for ErrClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("use of closed network connection")
    }
}

impl std::error::Error for ErrClosed {}

/// The payload of the error a dial cancelled through a [`CancelToken`](super::CancelToken)
/// returns; its kind is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Canceled;

impl fmt::Display for Canceled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("operation was canceled")
    }
}

impl std::error::Error for Canceled {}

/// True when `e` says the connection or listener was closed by this process (not by the peer).
pub fn is_closed(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<ErrClosed>())
}

/// True when `e` is a deadline or dial timeout (kind `TimedOut`).
pub fn is_timeout(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::TimedOut
}

/// True when `e` reports a dial cancelled through its token.
pub fn is_canceled(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Canceled>())
}

pub(crate) fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, ErrClosed)
}

pub(crate) fn timeout() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "i/o timeout")
}

pub(crate) fn canceled() -> io::Error {
    io::Error::other(Canceled)
}

pub(crate) fn busy(direction: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::ResourceBusy,
        format!("another blocking {direction} is in progress on this connection"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_errors_are_told_apart() {
        assert!(is_closed(&closed()) && !is_timeout(&closed()));
        assert!(is_timeout(&timeout()) && !is_closed(&timeout()));
        assert!(is_canceled(&canceled()) && !is_closed(&canceled()));
        let enotconn = io::Error::from_raw_os_error(libc::ENOTCONN);
        assert_eq!(enotconn.kind(), closed().kind());
        assert!(!is_closed(&enotconn));
        assert_eq!(closed().to_string(), "use of closed network connection");
        assert_eq!(timeout().to_string(), "i/o timeout");
    }
}
