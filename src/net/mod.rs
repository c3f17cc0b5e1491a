//! The Go-net face (Go's runtime netpoller and `net` package) on the same pollers as the reactor
//! face: blocking-style connections that park the calling thread — or an async task — until
//! the poller reports readiness, a deadline passes, or another thread closes the connection.
//!
//! | file | owns |
//! |---|---|
//! | `conn.rs` | [`TcpConn`], [`UnixConn`]: `Read`/`Write`, async traits, socket options |
//! | `listen.rs` | [`TcpListener`], [`UnixListener`], [`Incoming`], and `ListenConfig::listen_*` |
//! | `dial.rs` | `Dialer::dial_*` making `TcpConn`/`UnixConn` |
//! | `interop.rs` | raw fds (`AsRawFd`, `with_fd`, `IntoRawFd`), std and socket2 conversions; why no `AsFd`/`FromRawFd` |
//!
//! The poll descriptor, [`Dialer`], [`ListenConfig`] and the errors are the shared core below
//! both faces (`transport/`), re-exported here.
//!
//! Reads and writes are the traits' methods, whichever are in scope: `std::io::{Read, Write}`
//! (implemented for the connection and for `&Conn`) block the thread,
//! `futures::io::{AsyncReadExt, AsyncWriteExt}` and, with the `tokio` feature,
//! `tokio::io::{AsyncReadExt, AsyncWriteExt}` are awaited. The connections have no inherent
//! `read`, `write` or `close`: an inherent method wins over a trait's, so
//! `conn.read(&mut buf).await` would not compile and the compiler's hint (drop the `.await`)
//! would block the executor. Go's `Close` is therefore [`TcpConn::close_now`] (close from any
//! thread, waking pending calls); the async `close()` (futures) and `shutdown()` (tokio) shut
//! down the write side only, as [`TcpConn::close_write`] does.
//!
//! Errors say what failed, as Go's do ([`OpError`]): `read tcp 127.0.0.1:5000->127.0.0.1:80: i/o
//! timeout`, `accept tcp [::]:80: use of closed network connection`; their
//! [`io::ErrorKind`](std::io::ErrorKind) is the cause's, and [`is_timeout`], [`is_closed`] and
//! [`is_canceled`] look through them.
//!
//! ```
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
//! assert_eq!(&echo, b"hello");
//! # Ok::<(), std::io::Error>(())
//! ```

mod conn;
mod dial;
mod interop;
mod listen;

pub use crate::transport::dial::{CancelToken, Dialer};
pub use crate::transport::error::{
    is_canceled, is_closed, is_timeout, Canceled, ErrClosed, OpError,
};
pub use crate::transport::listen::{default_backlog, ControlHook, ListenConfig};
pub use crate::transport::options::KeepAliveConfig;
pub use conn::{TcpConn, UnixConn};
pub use dial::{dial_tcp, dial_unix};
pub use listen::{listen_tcp, listen_unix, Incoming, TcpListener, UnixListener};
