//! netpoll: epoll-based networking for TCP and Unix sockets, with two faces over one set of pollers.
//!
//! - The **reactor face** (after CloudWeGo netpoll): pollers that read into zero-copy
//!   [`buffer::LinkBuffer`]s and hand connections to handlers.
//! - The **Go-net face** (after Go's runtime netpoller and `net` package): blocking-style
//!   connections with deadlines, parked on the same pollers.
//!
//! The layers, bottom up (imports point downward only):
//!
//! | module     | owns |
//! |------------|------|
//! | `sys`      | every syscall and FFI `unsafe`: epoll, eventfd, readv/sendmsg, accept4 |
//! | [`buffer`] | `LinkBuffer`: pooled blocks, nocopy `Reader`/`Writer` (knows nothing of sockets) |
//! | [`poll`]   | [`poll::Poller`] threads and the [`poll::PollManager`] that balances fds across them |
//! | [`connection`], [`EventLoop`], [`Dialer`] | the reactor face |
//! | [`net`]    | the Go-net face: [`net::TcpConn`], [`net::TcpListener`], [`net::Dialer`], deadlines |
//!
//! See `docs/ARCHITECTURE.md` for the map.
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg(target_os = "linux")]

mod addr;
pub mod buffer;
pub mod connection;
mod dialer;
mod event_loop;
mod listener;
mod loom;
pub mod net;
pub mod poll;
pub mod runner;
mod sys;

pub use addr::Addr;
pub use connection::{ConnReader, ConnWriter, Connection};
pub use dialer::{dial_connection, Dialer};
pub use event_loop::{EventLoop, EventLoopBuilder};
pub use listener::Listener;
pub use runner::HandlerPool;

/// The README's examples, compiled and run as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;
