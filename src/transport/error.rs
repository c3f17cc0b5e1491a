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

/// The payload of the error a dial cancelled through a [`CancelToken`](crate::net::CancelToken)
/// returns; its kind is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Canceled;

impl fmt::Display for Canceled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("operation was canceled")
    }
}

impl std::error::Error for Canceled {}

/// An error with the operation it happened in (Go's `net.OpError`): "dial tcp host:80: ...".
/// Its kind is the cause's; [`is_closed`] and [`is_canceled`] look through it.
#[derive(Debug)]
pub struct OpError {
    op: String,
    source: io::Error,
}

impl OpError {
    /// What was being done, e.g. `dial tcp 127.0.0.1:80`.
    pub fn op(&self) -> &str {
        &self.op
    }
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.op, self.source)
    }
}

impl std::error::Error for OpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

pub(crate) fn with_op(op: String, source: io::Error) -> io::Error {
    io::Error::new(source.kind(), OpError { op, source })
}

/// True when `T` is `e`'s payload or anywhere in its chain of causes.
fn caused_by<T: std::error::Error + 'static>(e: &io::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = e.get_ref().map(|c| c as _);
    while let Some(c) = cause {
        if c.is::<T>() {
            return true;
        }
        cause = match c.downcast_ref::<io::Error>() {
            Some(inner) => inner.get_ref().map(|c| c as _),
            None => c.source(),
        };
    }
    false
}

/// True when `e` says the connection or listener was closed by this process (not by the peer).
pub fn is_closed(e: &io::Error) -> bool {
    caused_by::<ErrClosed>(e)
}

/// True when `e` is a deadline or dial timeout (kind `TimedOut`).
pub fn is_timeout(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::TimedOut
}

/// True when `e` reports a dial cancelled through its token.
pub fn is_canceled(e: &io::Error) -> bool {
    caused_by::<Canceled>(e)
}

/// The fd reported an error event (`EPOLLERR` alone) and its syscall still says `EAGAIN`;
/// `NetFd` replaces it with the socket's own error (`SO_ERROR`) when there is one.
#[derive(Debug)]
pub(crate) struct EventError;

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the socket reported an error event")
    }
}

impl std::error::Error for EventError {}

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

    #[test]
    fn an_operation_context_keeps_the_cause_recognisable() {
        let e = with_op("dial tcp a:1".into(), canceled());
        assert!(is_canceled(&e));
        assert_eq!(e.to_string(), "dial tcp a:1: operation was canceled");
        let e = with_op("accept".into(), with_op("inner".into(), closed()));
        assert!(is_closed(&e) && e.kind() == io::ErrorKind::NotConnected);
        assert!(is_timeout(&with_op("read".into(), timeout())));
    }
}
