//! hyper 1.x on netpoll (feature `hyper`): no tokio, no `hyper-util`.
//!
//! - [`net::TcpConn`](crate::net::TcpConn) and [`net::UnixConn`](crate::net::UnixConn) (owned,
//!   and shared as `&Conn`) implement `hyper::rt::Read` and `hyper::rt::Write`, so they go
//!   straight into `hyper::server::conn::http1::Builder::serve_connection` or
//!   `hyper::client::conn::http1::handshake`. Reads go through the connection's non-blocking
//!   async path (the same as its `futures::io::AsyncRead`), with `read(2)` straight into
//!   hyper's buffer (no copy); `poll_flush` has nothing to flush; `poll_shutdown` shuts down the
//!   write side (`close_write`), as tokio's `TcpStream` does.
//! - [`Executor`] spawns hyper's background futures as netpoll tasks ([`crate::spawn`]: on the
//!   calling task's poller, so an HTTP/2 stream or a client connection stays with its socket).
//! - [`Timer`] gives hyper poller timers ([`crate::time`]) for its header-read timeout and
//!   keep-alive timers; its [`Sleep`] supports `reset` in place.
//!
//! A connection served by a netpoll task is polled on the poller its socket is registered on,
//! so each readiness event is a local queue push: one event loop per request.
//!
//! ```
//! use http_body_util::{BodyExt, Empty, Full};
//! use hyper::body::Bytes;
//! use hyper::service::service_fn;
//! use netpoll::net;
//!
//! let listener = net::listen_tcp("tcp", "127.0.0.1:0")?;
//! let addr = listener.local_addr();
//! netpoll::spawn(async move {
//!     let (conn, _) = listener.accept_async().await?;
//!     let service = service_fn(|_req| async {
//!         Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from("hi"))))
//!     });
//!     hyper::server::conn::http1::Builder::new()
//!         .timer(netpoll::hyper::Timer)
//!         .serve_connection(conn, service)
//!         .await
//!         .map_err(std::io::Error::other)
//! });
//!
//! let body = netpoll::block_on(async move {
//!     let conn = net::Dialer::new().dial_tcp_async("tcp", addr).await?;
//!     let (mut sender, connection) = hyper::client::conn::http1::handshake(conn).await?;
//!     netpoll::spawn(connection);
//!     let request = hyper::Request::get("/").body(Empty::<Bytes>::new())?;
//!     let response = sender.send_request(request).await?;
//!     assert_eq!(response.status(), 200);
//!     Ok::<_, Box<dyn std::error::Error + Send + Sync>>(response.into_body().collect().await?)
//! })
//! .unwrap();
//! assert_eq!(body.to_bytes(), "hi");
//! # Ok::<(), std::io::Error>(())
//! ```

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use ::hyper::rt::ReadBufCursor;

use crate::net::{TcpConn, UnixConn};
use crate::poll::PollManager;
use crate::sys::hyper_io::read_cursor;

/// `hyper::rt::Read`/`Write` for a connection type, owned or shared (`&Conn`).
macro_rules! hyper_io {
    ($conn:ty, $t:ty) => {
        #[cfg_attr(docsrs, doc(cfg(feature = "hyper")))]
        impl ::hyper::rt::Read for $t {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                mut buf: ReadBufCursor<'_>,
            ) -> Poll<io::Result<()>> {
                let conn: &$conn = &self;
                let wanted = buf.remaining();
                match conn
                    .fd
                    .poll_read_with(cx, wanted, |sock| read_cursor(sock, &mut buf))
                {
                    Poll::Ready(Ok(_)) => Poll::Ready(Ok(())),
                    Poll::Ready(Err(e)) => Poll::Ready(Err(conn.op_error("read", e))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }

        #[cfg_attr(docsrs, doc(cfg(feature = "hyper")))]
        impl ::hyper::rt::Write for $t {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                let conn: &$conn = &self;
                match conn.fd.poll_write(cx, &[IoSlice::new(buf)]) {
                    Poll::Ready(Err(e)) => Poll::Ready(Err(conn.op_error("write", e))),
                    other => other,
                }
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                let conn: &$conn = &self;
                match conn.fd.poll_write(cx, bufs) {
                    Poll::Ready(Err(e)) => Poll::Ready(Err(conn.op_error("write", e))),
                    other => other,
                }
            }

            fn is_write_vectored(&self) -> bool {
                true
            }

            /// Writes go straight to the socket: nothing to flush.
            fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }

            /// Shuts down the writing side (`close_write`); the connection closes when dropped.
            fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                let conn: &$conn = &self;
                Poll::Ready(conn.close_write())
            }
        }
    };
}

hyper_io!(TcpConn, TcpConn);
hyper_io!(TcpConn, &TcpConn);
hyper_io!(UnixConn, UnixConn);
hyper_io!(UnixConn, &UnixConn);

/// hyper's executor on netpoll: each future becomes a task ([`crate::spawn`]) on the calling
/// task's (or coroutine's) poller, or, from elsewhere, on a poller of the global
/// [`PollManager`]. Give it to hyper's builders that take one (HTTP/2's, `hyper-util`'s).
///
/// A future that cannot be spawned (every poller closed, or the global pollers cannot start)
/// is dropped, with an error in the log: hyper's executor interface has no way to report it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Executor;

impl<F> ::hyper::rt::Executor<F> for Executor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        let poller = match crate::rt::current_poller() {
            Some(poller) => poller,
            None => match PollManager::global() {
                Ok(manager) => manager.pick(),
                Err(e) => {
                    log::error!("netpoll::hyper::Executor: the pollers cannot start ({e})");
                    return;
                }
            },
        };
        if let Err(e) = crate::task::spawn_on(&poller, future) {
            log::error!("netpoll::hyper::Executor: cannot spawn hyper's task ({e})");
        }
    }
}

/// hyper's timer on netpoll: [`Sleep`]s on the poller timers of [`crate::time`], armed on the
/// poller of the task that polls them (millisecond resolution).
#[derive(Clone, Copy, Debug, Default)]
pub struct Timer;

impl ::hyper::rt::Timer for Timer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn ::hyper::rt::Sleep>> {
        Box::pin(Sleep(crate::time::sleep(duration)))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn ::hyper::rt::Sleep>> {
        Box::pin(Sleep(crate::time::sleep_until(deadline)))
    }

    /// Moves one of this timer's sleeps in place (its poller timer re-armed at the next poll);
    /// another timer's sleep is replaced.
    fn reset(&self, sleep: &mut Pin<Box<dyn ::hyper::rt::Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<Sleep>() {
            Some(ours) => ours.get_mut().0.reset(new_deadline),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// A [`Timer`]'s sleep: a [`crate::time::Sleep`] that hyper can hold.
#[derive(Debug)]
pub struct Sleep(crate::time::Sleep);

impl Sleep {
    /// When it completes.
    pub fn deadline(&self) -> Instant {
        self.0.deadline()
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl ::hyper::rt::Sleep for Sleep {}

#[cfg(test)]
mod tests {
    use super::*;
    use ::hyper::rt::Timer as _;

    #[test]
    fn timer_sleeps_and_resets_in_place() {
        crate::block_on(async {
            let start = Instant::now();
            let mut sleep = Timer.sleep(Duration::from_secs(30));
            Timer.reset(&mut sleep, start + Duration::from_millis(20));
            assert!(sleep.as_mut().downcast_mut_pin::<Sleep>().is_some());
            sleep.await;
            let took = start.elapsed();
            assert!(took >= Duration::from_millis(19), "{took:?}");
            assert!(took < Duration::from_secs(10), "{took:?}");
        });
    }

    #[test]
    fn executor_runs_futures_on_the_pollers() {
        use ::hyper::rt::Executor as _;
        let (tx, rx) = std::sync::mpsc::channel();
        Executor.execute(async move {
            tx.send(crate::rt::current_poller().is_some()).unwrap();
        });
        let on_poller = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(on_poller);
    }
}
