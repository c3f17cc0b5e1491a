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

/// An error with the operation it happened in, Go's `net.OpError`, printed as Go prints it:
/// `OP NET [SOURCE->]ADDR: CAUSE`, e.g.
///
/// - `dial tcp 127.0.0.1:80: connection refused`
/// - `listen tcp 0.0.0.0:80: address already in use`
/// - `accept tcp [::]:80: use of closed network connection`
/// - `read tcp 127.0.0.1:5000->127.0.0.1:80: i/o timeout`
/// - `write unix /tmp/app.sock: broken pipe`
///
/// A kernel error is printed as Go prints it (`broken pipe`, not `Broken pipe (os error 32)`);
/// the errno is still there: `cause().raw_os_error()`. An unnamed Unix endpoint (a client that
/// did not bind) is left out rather than printed as Go's `@`.
///
/// The wrapping `io::Error` has the cause's [`io::ErrorKind`]; [`is_closed`], [`is_timeout`] and
/// [`is_canceled`] look through it. Reach the `OpError` with
/// `e.get_ref().and_then(|c| c.downcast_ref::<OpError>())`.
#[derive(Debug)]
pub struct OpError {
    op: &'static str,
    net: Box<str>,
    source_addr: Option<Box<str>>,
    addr: Option<Box<str>>,
    cause: io::Error,
}

impl OpError {
    /// The operation: `dial`, `listen`, `accept`, `read`, `write` or `close`.
    pub fn op(&self) -> &str {
        self.op
    }

    /// The network: `tcp`, `tcp4`, `tcp6` or `unix`.
    pub fn net(&self) -> &str {
        &self.net
    }

    /// The local address of a connection (Go's `Source`); `None` for dial, listen and accept,
    /// and for an unnamed Unix socket.
    pub fn source_addr(&self) -> Option<&str> {
        self.source_addr.as_deref()
    }

    /// The address operated on (Go's `Addr`): the peer of a connection, the address dialed or
    /// listened on; `None` for an unnamed Unix socket.
    pub fn addr(&self) -> Option<&str> {
        self.addr.as_deref()
    }

    /// The error itself, with its errno if it came from the kernel.
    pub fn cause(&self) -> &io::Error {
        &self.cause
    }
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.op, self.net)?;
        match (&self.source_addr, &self.addr) {
            (Some(source), Some(addr)) => write!(f, " {source}->{addr}")?,
            (Some(one), None) | (None, Some(one)) => write!(f, " {one}")?,
            (None, None) => {}
        }
        f.write_str(": ")?;
        go_style(&self.cause, f)
    }
}

/// An errno as Go prints it (`connection reset by peer`); anything else as it is.
fn go_style(e: &io::Error, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let Some(code) = e.raw_os_error() else {
        return fmt::Display::fmt(e, f);
    };
    let text = e.to_string();
    let text = text
        .strip_suffix(&format!(" (os error {code})"))
        .unwrap_or(&text);
    let mut chars = text.chars();
    match (chars.next(), chars.clone().next()) {
        // "Broken pipe" → "broken pipe", but "RFS specific error" stays.
        (Some(first), Some(second)) if first.is_ascii_uppercase() && !second.is_uppercase() => {
            write!(f, "{}{}", first.to_ascii_lowercase(), chars.as_str())
        }
        _ => f.write_str(text),
    }
}

impl std::error::Error for OpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.cause)
    }
}

/// `cause` in the context of `op` on `net` (see [`OpError`]), with the cause's kind. Only ever
/// called on an error path; `WouldBlock` (never a user-visible error of the Go-net face) is
/// left as it is.
#[cold]
#[inline(never)]
pub(crate) fn with_op(
    op: &'static str,
    net: &str,
    source_addr: Option<String>,
    addr: Option<String>,
    cause: io::Error,
) -> io::Error {
    if cause.kind() == io::ErrorKind::WouldBlock {
        return cause;
    }
    io::Error::new(
        cause.kind(),
        OpError {
            op,
            net: net.into(),
            source_addr: source_addr.map(String::into_boxed_str),
            addr: addr.map(String::into_boxed_str),
            cause,
        },
    )
}

/// The errno of `e`, looking through an [`OpError`].
pub(crate) fn os_error(e: &io::Error) -> Option<i32> {
    e.raw_os_error().or_else(|| {
        e.get_ref()
            .and_then(|c| c.downcast_ref::<OpError>())
            .and_then(|op| op.cause.raw_os_error())
    })
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
        let e = with_op("dial", "tcp", None, Some("a:1".into()), canceled());
        assert!(is_canceled(&e));
        assert_eq!(e.to_string(), "dial tcp a:1: operation was canceled");
        let inner = with_op("read", "unix", None, None, closed());
        assert_eq!(
            inner.to_string(),
            "read unix: use of closed network connection"
        );
        let e = with_op("accept", "tcp", None, Some("[::]:80".into()), inner);
        assert!(is_closed(&e) && e.kind() == io::ErrorKind::NotConnected);
        let e = with_op(
            "read",
            "tcp",
            Some("a:1".into()),
            Some("b:2".into()),
            timeout(),
        );
        assert!(is_timeout(&e));
        assert_eq!(e.to_string(), "read tcp a:1->b:2: i/o timeout");
    }

    #[test]
    fn kernel_errors_print_as_go_prints_them() {
        let epipe = io::Error::from_raw_os_error(libc::EPIPE);
        let e = with_op("write", "tcp", Some("a:1".into()), None, epipe);
        assert_eq!(e.to_string(), "write tcp a:1: broken pipe");
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
        assert_eq!(os_error(&e), Some(libc::EPIPE));
        let would_block = io::Error::from(io::ErrorKind::WouldBlock);
        let e = with_op("read", "tcp", None, None, would_block);
        assert!(e.get_ref().is_none(), "WouldBlock is left unwrapped");
    }
}
