//! netpoll: epoll-based networking for TCP and Unix sockets, with two faces over one set of pollers.
//!
//! - The **reactor face** (after CloudWeGo netpoll): pollers that read into zero-copy
//!   [`buffer::LinkBuffer`]s and hand connections to handlers.
//! - The **Go-net face** (after Go's runtime netpoller and `net` package): blocking-style
//!   connections with deadlines, parked on the same pollers.
//!
//! The layers, bottom up (imports point downward only; the two faces sit side by side):
//!
//! | module        | owns |
//! |---------------|------|
//! | `sys`         | every syscall and FFI `unsafe`: epoll, eventfd, readv; sendmsg, accept4 via socket2 |
//! | [`poll`]      | [`poll::Poller`] threads, timers, the [`poll::PollManager`] that balances fds |
//! | [`buffer`]    | `LinkBuffer`: pooled blocks, nocopy `Reader`/`Writer` (knows nothing of sockets) |
//! | [`rt`]        | the scheduler of each poller: goroutines ([`go`], [`go_on`], [`blocking`], [`sleep`], [`yield_now`]), async [`task`]s ([`spawn`], [`spawn_local`], [`block_on`]), [`time`], and the [`HandlerPool`] |
//! | `transport`   | the shared core: [`Addr`], [`ToAddress`], the poll descriptor, the one dial and listen code |
//! | [`reactor`]   | the reactor face: [`EventLoop`], [`Connection`], [`Dialer`], [`Listener`], [`HandlerPool`] |
//! | [`net`]       | the Go-net face: [`net::TcpConn`], [`net::TcpListener`], [`net::Dialer`], deadlines |
//! | `hyper`       | feature `hyper`: hyper 1.x's `rt::{Read, Write}` for the Go-net face's connections, its `Executor` and `Timer` on tasks and poller timers |
//!
//! See `docs/ARCHITECTURE.md` for the map.
#![deny(missing_docs)]
#![warn(missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg(target_os = "linux")]

pub mod buffer;
#[cfg(feature = "hyper")]
#[cfg_attr(docsrs, doc(cfg(feature = "hyper")))]
pub mod hyper;
mod loom;
pub mod net;
pub mod poll;
pub mod proto;
pub mod reactor;
pub mod rt;
mod sys;
mod transport;

/// What `fuzz/` drives that is not public API: one descriptor's slot and deadline state
/// machine under arbitrary event orders. Only under `cargo fuzz` (`--cfg fuzzing`).
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzz_seams {
    pub use crate::transport::desc::event_orders::run as slot_deadline;
}

pub use reactor::{
    connection, dial_connection, runner, ConnReader, ConnWriter, Connection, Dialer, EventLoop,
    EventLoopBuilder, HandlerPool, Listener,
};
pub use rt::task::{block_on, spawn, spawn_local};
pub use rt::{blocking, go, go_on, sleep, task, time, yield_now, JoinHandle};
pub use transport::addr::{Addr, ToAddress};

/// The README's examples, compiled and run as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;
