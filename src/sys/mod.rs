//! The operating-system layer: every syscall and every FFI `unsafe` block of the crate lives here.
//!
//! A backend provides (mio's `sys` layer is the model):
//!
//! - [`Selector`]: create, `register(fd, token, interest)`, `reregister`, `deregister`, and
//!   `select(events, timeout)` that fills an [`Events`] array and retries `EINTR`;
//! - [`Events`]: a growable array of kernel events, each readable as a token and a [`Ready`] set;
//! - [`EventFd`]: a non-blocking counter that wakes a blocked `select`;
//! - the socket calls in [`socket`]: `readv`, `sendmsg` with `MSG_NOSIGNAL`, `accept4`;
//! - `hyper_io.rs` (feature `hyper`): `read(2)` straight into hyper's uninitialised read buffer;
//! - `interop.rs`: `FromRawFd` for the reactor face's `Listener` (an `unsafe fn`, so it lives here).
//!
//! Only Linux epoll exists today; a kqueue backend would add `kqueue.rs` with the same items and a
//! `cfg` switch here, leaving every layer above untouched.

mod epoll;
mod eventfd;
#[cfg(feature = "hyper")]
pub(crate) mod hyper_io;
mod interop;
pub(crate) mod socket;

pub(crate) use epoll::{Events, Selector};
pub(crate) use eventfd::EventFd;

/// What a registration asks the kernel to report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Interest {
    pub(crate) readable: bool,
    pub(crate) writable: bool,
    /// Edge-triggered: report a readiness change once instead of while it lasts.
    pub(crate) edge: bool,
}

/// A readiness set reported by the kernel, independent of the backend's bit layout.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Ready(u8);

impl Ready {
    /// Nothing is ready.
    pub const EMPTY: Ready = Ready(0);
    /// Data (or a pending connection, or end of stream) can be read.
    pub const READABLE: Ready = Ready(1);
    /// The socket send buffer has room.
    pub const WRITABLE: Ready = Ready(1 << 1);
    /// The connection hung up in both directions (`EPOLLHUP`).
    pub const HANGUP: Ready = Ready(1 << 2);
    /// An error is pending on the fd (`EPOLLERR`).
    pub const ERROR: Ready = Ready(1 << 3);
    /// The peer closed its sending side (`EPOLLRDHUP`): reads will reach end of stream, writes
    /// may still work.
    pub const READ_CLOSED: Ready = Ready(1 << 4);
    /// Urgent (TCP out-of-band) data is pending (`EPOLLPRI`); reported to edge-triggered
    /// readers only.
    pub const PRIORITY: Ready = Ready(1 << 5);

    /// True when any readiness in `other` is also in `self`.
    pub fn intersects(self, other: Ready) -> bool {
        self.0 & other.0 != 0
    }

    /// `self` without the readiness in `other`.
    pub fn without(self, other: Ready) -> Ready {
        Ready(self.0 & !other.0)
    }

    /// True when nothing is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Data can be read.
    pub fn is_readable(self) -> bool {
        self.intersects(Ready::READABLE)
    }

    /// The fd can take writes.
    pub fn is_writable(self) -> bool {
        self.intersects(Ready::WRITABLE)
    }

    /// The peer hung up or an error is pending: the owner should finish reading and close.
    pub fn is_hangup_or_error(self) -> bool {
        self.intersects(Ready(
            Ready::HANGUP.0 | Ready::ERROR.0 | Ready::READ_CLOSED.0,
        ))
    }
}

impl std::ops::BitOr for Ready {
    type Output = Ready;
    fn bitor(self, rhs: Ready) -> Ready {
        Ready(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for Ready {
    fn bitor_assign(&mut self, rhs: Ready) {
        self.0 |= rhs.0;
    }
}

impl std::fmt::Debug for Ready {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = [
            (Ready::READABLE, "READABLE"),
            (Ready::WRITABLE, "WRITABLE"),
            (Ready::HANGUP, "HANGUP"),
            (Ready::ERROR, "ERROR"),
            (Ready::READ_CLOSED, "READ_CLOSED"),
            (Ready::PRIORITY, "PRIORITY"),
        ];
        let set: Vec<&str> = names
            .iter()
            .filter(|(r, _)| self.intersects(*r))
            .map(|(_, n)| *n)
            .collect();
        write!(f, "Ready({})", set.join(" | "))
    }
}
