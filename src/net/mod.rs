//! The Go-net face (Go's runtime netpoller and `net` package) on the same pollers as the reactor
//! face: blocking-style connections that park the calling thread — or an async task — until
//! the poller reports readiness, a deadline passes, or another thread closes the connection.
//!
//! | file | owns |
//! |---|---|
//! | `slot.rs` | one direction's waiter slot: empty / ready / waiting(thread or waker); loom-modelled |
//! | `desc.rs` | `PollDesc`: two slots, the info word (closing, expired, event error), deadline timers |
//! | `fd.rs` | `NetFd`: socket + descriptor, the close protocol, read/write/accept loops |
//! | `conn.rs` | [`TcpConn`], [`UnixConn`]: `Read`/`Write`, async traits, socket options |
//! | `listen.rs` | [`ListenConfig`], [`TcpListener`], [`UnixListener`], [`Incoming`] |
//! | `dial.rs` | [`Dialer`], [`CancelToken`]: deadlines, happy eyeballs, retries |
//! | `error.rs` | [`ErrClosed`], [`is_closed`], [`is_timeout`], [`is_canceled`] |
//!
//! ```no_run
//! use std::io::{Read, Write};
//! use std::time::{Duration, Instant};
//!
//! let listener = netpoll::net::listen_tcp("tcp", "127.0.0.1:0")?;
//! let addr = listener.local_addr().to_string();
//! std::thread::spawn(move || {
//!     let (conn, _) = listener.accept().unwrap();
//!     let mut buf = [0u8; 5];
//!     (&conn).read_exact(&mut buf).unwrap();
//!     (&conn).write_all(&buf).unwrap();
//! });
//! let conn = netpoll::net::Dialer::new()
//!     .timeout(Duration::from_secs(5))
//!     .dial_tcp("tcp", &addr)?;
//! conn.set_deadline(Some(Instant::now() + Duration::from_secs(5)))?;
//! (&conn).write_all(b"hello")?;
//! let mut echo = [0u8; 5];
//! (&conn).read_exact(&mut echo)?;
//! # Ok::<(), std::io::Error>(())
//! ```

mod conn;
mod desc;
mod dial;
mod error;
mod fd;
mod listen;
pub(crate) mod slot;

pub use conn::{KeepAliveConfig, TcpConn, UnixConn};
pub use dial::{dial_tcp, dial_unix, CancelToken, Dialer};
pub use error::{is_canceled, is_closed, is_timeout, Canceled, ErrClosed, OpError};
pub use listen::{
    default_backlog, listen_tcp, listen_unix, ControlHook, Incoming, ListenConfig, TcpListener,
    UnixListener,
};
