//! The core both faces stand on (Go's `internal/poll` and the shared half of `net`):
//!
//! | file | owns |
//! |---|---|
//! | `addr.rs` | [`Addr`](addr::Addr) (an IP address or a Unix path) and [`ToAddress`](addr::ToAddress), what dial and listen calls take |
//! | `adopt.rs` | checks for sockets handed over by the user (std, socket2, fds) before either face wraps them |
//! | `slot.rs` | one direction's waiter slot: empty / ready / waiting(thread or waker); loom-modelled |
//! | `desc.rs` | `PollDesc`: two slots, the info word (closing, expired, event error), deadline timers |
//! | `fd.rs` | `NetFd`: socket + descriptor, the close protocol, read/write/accept/connect loops |
//! | `dial.rs` | the one `Dialer` and `CancelToken`: deadlines, happy eyeballs, retries |
//! | `listen.rs` | the one `ListenConfig`: listening sockets, the Unix socket-file rule |
//! | `options.rs` | `KeepAliveConfig` and the poller a new fd registers on |
//! | `error.rs` | `ErrClosed`, `OpError`, `is_closed` / `is_timeout` / `is_canceled` |
//!
//! The Go-net face (`net/`) wraps a `NetFd` as a `TcpConn`/`UnixConn`; the reactor face takes a
//! dialed or listening socket from here and registers it its own way.

pub(crate) mod addr;
pub(crate) mod adopt;
pub(crate) mod desc;
pub(crate) mod dial;
pub(crate) mod error;
pub(crate) mod fd;
pub(crate) mod listen;
pub(crate) mod options;
pub(crate) mod slot;
