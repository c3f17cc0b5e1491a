//! The Linux epoll backend.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::{Interest, Ready};

/// An epoll instance. Closing happens when it is dropped.
#[derive(Debug)]
pub(crate) struct Selector {
    epfd: OwnedFd,
}

impl Selector {
    pub(crate) fn new() -> io::Result<Selector> {
        // SAFETY: epoll_create1 takes no pointers; a non-negative result is a new fd we own.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `fd` was just returned by the kernel and nothing else owns it.
        let epfd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Selector { epfd })
    }

    pub(crate) fn register(&self, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, token, interest)
    }

    pub(crate) fn reregister(&self, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, token, interest)
    }

    pub(crate) fn deregister(&self, fd: RawFd) -> io::Result<()> {
        // Kernels before 2.6.9 required a non-null event even for DEL; passing one costs nothing.
        let mut event = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: `event` is a valid epoll_event for the duration of the call.
        cvt(unsafe {
            libc::epoll_ctl(self.epfd.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, &mut event)
        })?;
        Ok(())
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: interest_to_epoll(interest),
            u64: token,
        };
        // SAFETY: `event` is a valid epoll_event for the duration of the call.
        cvt(unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), op, fd, &mut event) })?;
        Ok(())
    }

    /// Waits for events, filling `events` (its previous contents are replaced).
    /// `None` waits until something happens; `EINTR` is retried with the same timeout.
    pub(crate) fn select(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        let timeout_ms = match timeout {
            None => -1,
            // Round up so a 0.5 ms timer does not turn into a busy 0 ms wait.
            Some(t) => t
                .as_nanos()
                .div_ceil(1_000_000)
                .min(libc::c_int::MAX as u128) as libc::c_int,
        };
        events.list.clear();
        loop {
            // SAFETY: the pointer and capacity describe `events.list`'s spare allocation, which the
            // kernel fills with at most `capacity` initialised epoll_events.
            let n = unsafe {
                libc::epoll_wait(
                    self.epfd.as_raw_fd(),
                    events.list.as_mut_ptr(),
                    events.list.capacity() as libc::c_int,
                    timeout_ms,
                )
            };
            match cvt(n) {
                Ok(n) => {
                    // SAFETY: the kernel initialised the first `n` entries (n <= capacity).
                    unsafe { events.list.set_len(n as usize) };
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

fn interest_to_epoll(interest: Interest) -> u32 {
    // ERR (and HUP) are always reported. RDHUP goes with input: it is the end of the input, and
    // a level-triggered RDHUP left on after that end was read would be reported forever.
    let mut bits = libc::EPOLLERR as u32;
    if interest.readable {
        bits |= (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
    }
    if interest.writable {
        bits |= libc::EPOLLOUT as u32;
    }
    if interest.edge {
        bits |= libc::EPOLLET as u32;
        // Urgent data stops a TCP read at its mark with bytes still queued; the edge reader
        // must learn of it (level-triggered, a pending PRI would be reported forever).
        if interest.readable {
            bits |= libc::EPOLLPRI as u32;
        }
    }
    bits
}

/// The kernel's event array for one `select`, with a capacity the caller grows.
pub(crate) struct Events {
    list: Vec<libc::epoll_event>,
}

impl Events {
    pub(crate) fn with_capacity(capacity: usize) -> Events {
        Events {
            list: Vec::with_capacity(capacity),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.list.capacity()
    }

    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    /// Replaces the array with an empty one of `capacity` entries.
    pub(crate) fn resize(&mut self, capacity: usize) {
        self.list = Vec::with_capacity(capacity);
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, Ready)> + '_ {
        self.list.iter().map(|e| {
            let bits = e.events as libc::c_int;
            let mut ready = Ready::EMPTY;
            if bits & libc::EPOLLIN != 0 {
                ready |= Ready::READABLE;
            }
            if bits & libc::EPOLLOUT != 0 {
                ready |= Ready::WRITABLE;
            }
            if bits & libc::EPOLLHUP != 0 {
                ready |= Ready::HANGUP;
            }
            if bits & libc::EPOLLRDHUP != 0 {
                ready |= Ready::READ_CLOSED;
            }
            if bits & libc::EPOLLERR != 0 {
                ready |= Ready::ERROR;
            }
            if bits & libc::EPOLLPRI != 0 {
                ready |= Ready::PRIORITY;
            }
            (e.u64, ready)
        })
    }
}

/// Turns a libc `-1` return into the thread's `errno`.
pub(super) fn cvt<T: IsMinusOne>(ret: T) -> io::Result<T> {
    if ret.is_minus_one() {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

pub(super) trait IsMinusOne {
    fn is_minus_one(&self) -> bool;
}

impl IsMinusOne for libc::c_int {
    fn is_minus_one(&self) -> bool {
        *self == -1
    }
}

impl IsMinusOne for libc::ssize_t {
    fn is_minus_one(&self) -> bool {
        *self == -1
    }
}
