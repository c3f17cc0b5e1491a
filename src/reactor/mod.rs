//! The reactor face (after CloudWeGo netpoll): pollers read straight into each connection's
//! zero-copy input buffer and hand the connection to handlers.
//!
//! | file | owns |
//! |---|---|
//! | `event_loop.rs` | [`EventLoop`] and its builder: accept, callbacks, graceful shutdown |
//! | `connection/` | [`Connection`], [`ConnReader`], [`ConnWriter`], the handler task |
//! | `dialer.rs` | [`Dialer`], [`dial_connection`]: the shared dial, wrapped as a `Connection` |
//! | `interop.rs` | raw fds, std and socket2 conversions of [`Connection`] and [`Listener`] |
//! | `listener.rs` | [`Listener`]: a listening socket from the shared `ListenConfig` |
//! | `runner.rs` | [`HandlerPool`]: the threads handlers run on when asked to (`handler_pool`) |

pub mod connection;
mod dialer;
mod event_loop;
mod interop;
mod listener;
pub mod runner;

pub use connection::{ConnReader, ConnWriter, Connection};
pub use dialer::{dial_connection, Dialer};
pub use event_loop::{EventLoop, EventLoopBuilder};
pub use listener::Listener;
pub use runner::HandlerPool;
