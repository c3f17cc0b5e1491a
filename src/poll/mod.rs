//! Pollers: threads that wait on epoll and hand readiness to the owners of registered fds.
//!
//! - [`Poller`]: one event loop on its own thread, an eventfd trigger, and a table of
//!   [`Registration`]s whose tokens carry a generation.
//! - [`PollManager`]: N pollers, picked by a [`LoadBalance`] policy, resizable at run time.
//!
//! Owners implement [`EventHandler`]; its callbacks run on the poller thread and must not block.

mod balance;
mod manager;
pub(crate) mod poller;
mod registration;
mod timer;

pub use crate::sys::Ready;
pub use balance::LoadBalance;
pub use manager::{default_num_loops, PollManager};
pub use poller::{Poller, PollerStats};
pub use registration::Registration;
pub use timer::TimerKey;

/// How [`Poller::control`] changes a registration; the six operations of CloudWeGo netpoll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollEvent {
    /// Add the fd, level-triggered, watching input and hang-ups (`IN | RDHUP | ERR`).
    /// Used for listeners and connections.
    Readable,
    /// Switch an added fd to level-triggered input (`IN | RDHUP | ERR`); used once a dial that
    /// waited with [`PollEvent::Writable`] has connected.
    ModReadable,
    /// Add the fd edge-triggered for output (`OUT | ERR`); used while dialing, where one
    /// "connected" (or failed) edge is all that matters.
    Writable,
    /// Remove the fd. No event reaches the owner afterwards, even if the kernel reuses the fd
    /// number for a new registration.
    Detach,
    /// Watch output as well as input (`IN | OUT | RDHUP | ERR`): the socket's send buffer was
    /// full and the owner waits for room.
    R2RW,
    /// Stop watching output again (`IN | RDHUP | ERR`).
    RW2R,
}

/// The owner of a registration: receives its readiness on the poller thread.
///
/// Callbacks must not block: they run on the thread that serves every fd of that poller. Work
/// that may block belongs on another thread (the handler pool of the reactor face).
pub trait EventHandler: Send + Sync {
    /// The fd is ready. `ready` may also carry [`Ready::HANGUP`], [`Ready::READ_CLOSED`] or
    /// [`Ready::ERROR`], so an owner can read what the peer sent before it hung up; for a
    /// registration made with [`Registration::new`], [`EventHandler::on_hangup`] follows after
    /// the batch (a persistent one stays attached and sees only `on_ready`).
    fn on_ready(&self, ready: Ready);

    /// The peer hung up or the fd has an error (`HUP`, `RDHUP` or `ERR`), for registrations made
    /// with [`Registration::new`]. By the time this runs the poller has detached the
    /// registration, so this is the last call the owner receives for it. Hang-ups are collected
    /// during a batch and delivered after it.
    fn on_hangup(&self, ready: Ready) {
        let _ = ready;
    }

    /// The poller closed with this registration still attached: no further callback of any
    /// kind will come, and the registration is detached. Runs on the poller thread as its loop
    /// exits (before the coroutines still suspended on it are unwound), so an owner can fail
    /// whoever still waits for its events instead of leaving them waiting forever. The default
    /// does nothing.
    fn on_poller_closed(&self) {}
}
