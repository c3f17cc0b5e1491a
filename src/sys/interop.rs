//! `FromRawFd`, an `unsafe fn`, for the one public type where adopting a descriptor cannot
//! fail: the reactor face's [`Listener`], which registers nothing until an `EventLoop` serves
//! it. (The one reference from `sys` up to a face: the `unsafe` stays in this layer.)
//!
//! The connections and the Go-net face's listeners register on a poller when wrapped, which can
//! fail; `from_raw_fd` can report no error and this crate does not panic on I/O conditions, so
//! they take a raw fd through `TryFrom<OwnedFd>` / `from_std` instead, as tokio's types do.

use std::os::fd::{FromRawFd, RawFd};

use socket2::Socket;

use crate::reactor::Listener;

impl FromRawFd for Listener {
    /// Takes over a listening TCP or Unix socket and switches it to non-blocking mode. Nothing
    /// is checked or registered here (this cannot fail): a descriptor that is not a listening
    /// socket makes [`EventLoop::serve`](crate::EventLoop::serve) fail. A Unix socket file is
    /// left in place.
    ///
    /// # Safety
    ///
    /// `fd` must be an open descriptor that the caller owns and gives up: the listener closes
    /// it when dropped.
    unsafe fn from_raw_fd(fd: RawFd) -> Listener {
        // SAFETY: the caller guarantees (this function's contract, std's `FromRawFd` one) that
        // `fd` is open and owned by nobody else from now on, which is what `Socket` needs to
        // close it exactly once.
        let socket = unsafe { Socket::from_raw_fd(fd) };
        Listener::adopt(socket)
    }
}
