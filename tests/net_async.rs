//! The Go-net face's connections and listeners driven from async code: `futures::io` traits
//! under `futures::executor::block_on` and under tokio runtimes (current-thread and
//! multi-thread), tokio's own traits (feature `tokio`), async accept and dial, a parked read
//! woken by data, by its read deadline, and by `close` from another thread. Real loopback and
//! Unix sockets throughout.
//!
//! Where a test must know a task is parked it polls by hand with a waker that reports on a
//! channel, or wraps the future so it signals its first `Pending`; no test sleeps to wait for
//! another thread. Every wait is bounded by `LIMIT`.

mod common;

use std::future::Future;
use std::io::{self, ErrorKind};
use std::pin::{pin, Pin};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use common::{pattern, LIMIT};
use futures::executor::block_on;
use futures::future::join;
use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use netpoll::net::{self, Dialer, TcpConn};

/// Slack allowed past a deadline for a loaded machine to notice it.
const SLACK: Duration = Duration::from_secs(2);

/// Runs `f` on a thread and waits at most `LIMIT` for it.
fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(LIMIT)
        .expect("operation did not finish in time")
}

/// A connected TCP pair on loopback, (dialed, accepted), every operation bounded by `LIMIT`.
fn tcp_pair() -> (TcpConn, TcpConn) {
    let listener = net::listen_tcp("tcp", "127.0.0.1:0").unwrap();
    let client = Dialer::new()
        .timeout(LIMIT)
        .dial_tcp("tcp", listener.local_addr().to_string())
        .unwrap();
    listener.set_deadline(Some(Instant::now() + LIMIT)).unwrap();
    let (server, _) = listener.accept().unwrap();
    for conn in [&client, &server] {
        conn.set_deadline(Some(Instant::now() + LIMIT)).unwrap();
    }
    (client, server)
}

/// A waker that reports each wake on a channel.
struct ChannelWaker(Mutex<mpsc::Sender<()>>);

impl Wake for ChannelWaker {
    fn wake(self: Arc<Self>) {
        let _ = self.0.lock().unwrap().send(());
    }
}

fn channel_waker() -> (Waker, mpsc::Receiver<()>) {
    let (tx, rx) = mpsc::channel();
    (Waker::from(Arc::new(ChannelWaker(Mutex::new(tx)))), rx)
}

/// Polls until `Ready`, waiting (bounded) for a wake after each `Pending`.
fn drive<T>(
    mut poll: impl FnMut(&mut Context<'_>) -> Poll<T>,
    cx: &mut Context<'_>,
    woken: &mpsc::Receiver<()>,
) -> T {
    for _ in 0..1000 {
        match poll(cx) {
            Poll::Ready(value) => return value,
            Poll::Pending => woken
                .recv_timeout(LIMIT)
                .expect("a pending operation was never woken"),
        }
    }
    panic!("still pending after 1000 wakes");
}

fn poll_read(conn: &TcpConn, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
    let mut reader = conn;
    Pin::new(&mut reader).poll_read(cx, buf)
}

/// Wraps a future and signals on `parked` the first time it returns `Pending` (it has then
/// registered its waker).
struct SignalPending<F> {
    inner: Pin<Box<F>>,
    parked: Option<mpsc::Sender<()>>,
}

fn signal_pending<F: Future>(inner: F) -> (SignalPending<F>, mpsc::Receiver<()>) {
    let (tx, rx) = mpsc::channel();
    let wrapped = SignalPending {
        inner: Box::pin(inner),
        parked: Some(tx),
    };
    (wrapped, rx)
}

impl<F: Future> Future for SignalPending<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let result = self.inner.as_mut().poll(cx);
        if result.is_pending() {
            if let Some(parked) = self.parked.take() {
                let _ = parked.send(());
            }
        }
        result
    }
}

/// Echoes everything read from `conn` back until end of stream, then shuts down writing.
async fn echo<C>(conn: &C) -> io::Result<()>
where
    for<'a> &'a C: AsyncRead + AsyncWrite + Unpin,
{
    let (mut reader, mut writer) = (conn, conn);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        writer.write_all(&buf[..n]).await?;
    }
    writer.close().await
}

/// Sends `data` and closes writing while reading everything that comes back.
async fn round_trip<C>(conn: &C, data: &[u8]) -> io::Result<Vec<u8>>
where
    for<'a> &'a C: AsyncRead + AsyncWrite + Unpin,
{
    let (mut reader, mut writer) = (conn, conn);
    let send = async {
        writer.write_all(data).await?;
        writer.close().await
    };
    let mut got = Vec::new();
    let (sent, received) = join(send, reader.read_to_end(&mut got)).await;
    sent?;
    received?;
    Ok(got)
}

// ---- echo under executors --------------------------------------------------------------------

#[test]
fn echo_under_block_on_with_client_and_server_joined() {
    let data = pattern(1, 256 * 1024);
    let expected = data.clone();
    let (got, client_local, server_peer) = bounded(move || {
        let listener = net::listen_tcp("tcp", "127.0.0.1:0").unwrap();
        let addr = listener.local_addr().to_string();
        let server = async {
            let (conn, peer) = listener.accept_async().await?;
            conn.set_deadline(Some(Instant::now() + LIMIT))?;
            echo(&conn).await?;
            Ok::<_, io::Error>(peer)
        };
        let client = async {
            let conn = Dialer::new()
                .timeout(LIMIT)
                .dial_tcp_async("tcp", &addr)
                .await?;
            conn.set_deadline(Some(Instant::now() + LIMIT))?;
            let got = round_trip(&conn, &data).await?;
            Ok::<_, io::Error>((got, conn.local_addr()))
        };
        let (server, client) = block_on(join(server, client));
        let (got, local) = client.unwrap();
        (got, local, server.unwrap())
    });
    assert_eq!(server_peer, client_local);
    assert!(got == expected, "echo differs ({} bytes back)", got.len());
}

/// A tokio runtime drives futures-io traits on `&TcpConn`: the server and the client's writer
/// are spawned tasks (on a multi-thread runtime they run on other workers).
fn echo_on_tokio_with_futures_traits(runtime: tokio::runtime::Runtime) {
    let data = pattern(2, 256 * 1024);
    let expected = data.clone();
    let got = bounded(move || {
        let listener = net::listen_tcp("tcp", "127.0.0.1:0").unwrap();
        let addr = listener.local_addr().to_string();
        runtime.block_on(async move {
            let work = async move {
                let server = tokio::spawn(async move {
                    let (conn, _) = listener.accept_async().await?;
                    conn.set_deadline(Some(Instant::now() + LIMIT))?;
                    echo(&conn).await
                });
                let conn = Dialer::new()
                    .timeout(LIMIT)
                    .dial_tcp_async("tcp", &addr)
                    .await?;
                conn.set_deadline(Some(Instant::now() + LIMIT))?;
                let conn = Arc::new(conn);
                let writer = {
                    let conn = conn.clone();
                    tokio::spawn(async move {
                        let mut writer = &*conn;
                        writer.write_all(&data).await?;
                        writer.close().await
                    })
                };
                let mut got = Vec::new();
                let mut reader = &*conn;
                reader.read_to_end(&mut got).await?;
                writer.await.expect("writer task panicked")?;
                server.await.expect("server task panicked")?;
                Ok::<_, io::Error>(got)
            };
            tokio::time::timeout(LIMIT, work).await
        })
    })
    .expect("the echo timed out")
    .unwrap();
    assert!(got == expected, "echo differs ({} bytes back)", got.len());
}

#[test]
fn echo_on_a_tokio_current_thread_runtime_with_futures_traits() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    echo_on_tokio_with_futures_traits(runtime);
}

#[test]
fn echo_on_a_tokio_multi_thread_runtime_with_futures_traits() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    echo_on_tokio_with_futures_traits(runtime);
}

#[test]
fn unix_socket_echo_under_block_on() {
    let path = std::env::temp_dir().join(format!("netpoll-net-async-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = net::listen_unix(&path).unwrap();
    let data = pattern(3, 128 * 1024);
    let expected = data.clone();
    let got = bounded(move || {
        let server = async {
            let (conn, _) = listener.accept_async().await?;
            conn.set_deadline(Some(Instant::now() + LIMIT))?;
            echo(&conn).await
        };
        let client = async {
            // `&UnixConn`'s traits for the round trip, the owned connection's for the last read.
            let mut conn = Dialer::new().timeout(LIMIT).dial_unix(&path)?;
            conn.set_deadline(Some(Instant::now() + LIMIT))?;
            let sent = {
                let writer = &conn;
                round_trip(writer, &data).await?
            };
            let mut extra = [0u8; 1];
            assert_eq!(AsyncReadExt::read(&mut conn, &mut extra).await?, 0);
            Ok::<_, io::Error>(sent)
        };
        let (server, client) = block_on(join(server, client));
        server.unwrap();
        client.unwrap()
    });
    assert!(got == expected, "echo differs ({} bytes back)", got.len());
}

#[test]
fn owned_connections_implement_the_futures_traits() {
    let (client, server) = tcp_pair();
    let got = bounded(move || {
        let (mut client, mut server) = (client, server);
        block_on(async {
            client.write_all(b"owned").await?;
            AsyncWriteExt::flush(&mut client).await?;
            AsyncWriteExt::close(&mut client).await?; // shuts down writing, unlike `TcpConn::close`
            let mut got = Vec::new();
            server.read_to_end(&mut got).await?;
            Ok::<_, io::Error>(got)
        })
    })
    .unwrap();
    assert_eq!(got, b"owned");
}

// ---- async accept and dial -------------------------------------------------------------------

#[test]
fn a_pending_async_accept_is_woken_by_an_incoming_connection() {
    let listener = net::listen_tcp("tcp", "127.0.0.1:0").unwrap();
    listener.set_deadline(Some(Instant::now() + LIMIT)).unwrap();
    let (waker, woken) = channel_waker();
    let mut cx = Context::from_waker(&waker);
    let mut accept = pin!(listener.accept_async());
    assert!(
        accept.as_mut().poll(&mut cx).is_pending(),
        "accepted a ghost"
    );

    let mut client = std::net::TcpStream::connect(listener.local_addr()).unwrap();
    let (conn, peer) = drive(|cx| accept.as_mut().poll(cx), &mut cx, &woken).unwrap();
    assert_eq!(peer, client.local_addr().unwrap());
    assert_eq!(conn.peer_addr(), peer);
    assert!(conn.nodelay().unwrap());

    io::Write::write_all(&mut client, b"hi").unwrap();
    let mut buf = [0u8; 2];
    let n = drive(|cx| poll_read(&conn, cx, &mut buf), &mut cx, &woken).unwrap();
    assert_eq!(&buf[..n], &b"hi"[..n]);
}

#[test]
fn close_from_another_thread_unblocks_a_pending_async_accept() {
    let listener = Arc::new(net::listen_tcp("tcp", "127.0.0.1:0").unwrap());
    let (accept, parked) = {
        let listener = listener.clone();
        signal_pending(async move { listener.accept_async().await.map(|_| ()) })
    };
    let accepting = thread::spawn(move || block_on(accept));
    parked.recv_timeout(LIMIT).expect("the accept never parked");
    listener.close().unwrap();
    let err = bounded(move || accepting.join().unwrap()).unwrap_err();
    assert!(net::is_closed(&err), "{err}");
}

#[test]
fn an_async_accept_times_out_at_the_listener_deadline() {
    let listener = net::listen_tcp("tcp", "127.0.0.1:0").unwrap();
    let timeout = Duration::from_millis(100);
    listener
        .set_deadline(Some(Instant::now() + timeout))
        .unwrap();
    let started = Instant::now();
    let err = bounded(move || block_on(listener.accept_async()).map(|_| ())).unwrap_err();
    let took = started.elapsed();
    assert!(net::is_timeout(&err), "{err}");
    assert!(took >= timeout && took < timeout + SLACK, "took {took:?}");
}

#[test]
fn async_dial_connects_to_a_host_name() {
    let listener = net::listen_tcp("tcp", "127.0.0.1:0").unwrap();
    let port = listener.local_addr().port();
    let conn = bounded(move || {
        block_on(
            Dialer::new()
                .timeout(LIMIT)
                .dial_tcp_async("tcp", &format!("localhost:{port}")),
        )
    })
    .unwrap();
    listener.set_deadline(Some(Instant::now() + LIMIT)).unwrap();
    let (_server, peer) = listener.accept().unwrap();
    assert_eq!(peer, conn.local_addr());
    assert_eq!(conn.peer_addr().port(), port);
    assert!(conn.nodelay().unwrap() && conn.keepalive().unwrap());
}

#[test]
fn async_dial_reports_a_refused_connection_promptly() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap().to_string();
    drop(free);
    let started = Instant::now();
    let err = bounded(move || block_on(Dialer::new().timeout(LIMIT).dial_tcp_async("tcp", &addr)))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    assert!(started.elapsed() < SLACK, "took {:?}", started.elapsed());
}

#[test]
fn async_dial_with_a_past_deadline_fails_at_once() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let err = bounded(move || {
        block_on(
            Dialer::new()
                .deadline(Instant::now())
                .dial_tcp_async("tcp", &addr),
        )
    })
    .unwrap_err();
    assert!(net::is_timeout(&err), "{err}");
    assert_eq!(
        listener.accept().unwrap_err().kind(),
        ErrorKind::WouldBlock,
        "it connected anyway"
    );
}

// ---- parked reads and writes -----------------------------------------------------------------

#[test]
fn a_parked_async_read_is_woken_by_data() {
    let (client, server) = tcp_pair();
    let (waker, woken) = channel_waker();
    let mut cx = Context::from_waker(&waker);
    let mut buf = [0u8; 16];
    assert!(poll_read(&server, &mut cx, &mut buf).is_pending());

    io::Write::write_all(&mut &client, b"wake up").unwrap();
    woken
        .recv_timeout(LIMIT)
        .expect("data did not wake the parked read");
    let n = drive(|cx| poll_read(&server, cx, &mut buf), &mut cx, &woken).unwrap();
    assert_eq!(&buf[..n], b"wake up");
}

#[test]
fn a_read_parked_in_block_on_on_another_thread_is_woken_by_data() {
    let (client, server) = tcp_pair();
    let server = Arc::new(server);
    let (read, parked) = {
        let server = server.clone();
        signal_pending(async move {
            let mut buf = [0u8; 5];
            let mut reader = &*server;
            reader.read_exact(&mut buf).await.map(|()| buf)
        })
    };
    let reading = thread::spawn(move || block_on(read));
    parked.recv_timeout(LIMIT).expect("the read never parked");
    io::Write::write_all(&mut &client, b"hello").unwrap();
    let got = bounded(move || reading.join().unwrap()).unwrap();
    assert_eq!(&got, b"hello");
}

#[test]
fn an_async_read_times_out_at_its_read_deadline() {
    let (client, server) = tcp_pair();
    let server = Arc::new(server);
    let timeout = Duration::from_millis(150);
    // The clock starts where the deadline is counted from: a slow `set_read_deadline` (under a
    // sanitizer, say) must not make an exact timer look early.
    let started = Instant::now();
    server.set_read_deadline(Some(started + timeout)).unwrap();
    let err = {
        let server = server.clone();
        bounded(move || {
            let mut reader = &*server;
            block_on(AsyncReadExt::read(&mut reader, &mut [0u8; 8]))
        })
    }
    .unwrap_err();
    let took = started.elapsed();
    assert!(net::is_timeout(&err), "{err}");
    assert!(!net::is_closed(&err));
    assert!(took >= timeout, "fired early: {took:?}");
    assert!(took < timeout + SLACK, "fired late: {took:?}");

    // Only reads expired: writing still works, and a new deadline lets reads go on.
    io::Write::write_all(&mut &*server, b"w").unwrap();
    let mut one = [0u8; 1];
    io::Read::read_exact(&mut &client, &mut one).unwrap();
    server
        .set_read_deadline(Some(Instant::now() + LIMIT))
        .unwrap();
    io::Write::write_all(&mut &client, b"r").unwrap();
    let n = bounded(move || {
        let mut reader = &*server;
        block_on(AsyncReadExt::read(&mut reader, &mut one)).map(|n| (n, one))
    })
    .unwrap();
    assert_eq!(n, (1, *b"r"));
}

#[test]
fn a_deadline_moved_into_the_past_wakes_a_parked_async_read_at_once() {
    let (_client, server) = tcp_pair();
    let (waker, woken) = channel_waker();
    let mut cx = Context::from_waker(&waker);
    let mut buf = [0u8; 4];
    assert!(poll_read(&server, &mut cx, &mut buf).is_pending());
    server.set_read_deadline(Some(Instant::now())).unwrap();
    woken
        .recv_timeout(LIMIT)
        .expect("the expired deadline did not wake the read");
    let err = drive(|cx| poll_read(&server, cx, &mut buf), &mut cx, &woken).unwrap_err();
    assert!(net::is_timeout(&err), "{err}");
}

#[test]
fn close_from_another_thread_unblocks_a_pending_async_read() {
    let (client, server) = tcp_pair();
    let server = Arc::new(server);
    let (read, parked) = {
        let server = server.clone();
        signal_pending(async move {
            let mut reader = &*server;
            AsyncReadExt::read(&mut reader, &mut [0u8; 8]).await
        })
    };
    let reading = thread::spawn(move || block_on(read));
    parked.recv_timeout(LIMIT).expect("the read never parked");
    {
        let server = server.clone();
        bounded(move || server.close_now()).unwrap();
    }
    let err = bounded(move || reading.join().unwrap()).unwrap_err();
    assert!(net::is_closed(&err), "{err}");
    assert!(!net::is_timeout(&err));
    assert!(server.is_closed());
    assert!(net::is_closed(&server.close_now().unwrap_err()));

    // The peer sees the close as end of stream.
    let mut rest = Vec::new();
    io::Read::read_to_end(&mut &client, &mut rest).unwrap();
    assert!(rest.is_empty());
}

#[test]
fn a_parked_async_write_completes_once_the_peer_reads() {
    let (client, server) = tcp_pair();
    let (waker, woken) = channel_waker();
    let mut cx = Context::from_waker(&waker);
    // Fill both socket buffers: poll writes until one is pending (bounded by the byte count).
    let chunk = vec![7u8; 64 * 1024];
    let mut written = 0usize;
    let mut writer = &client;
    loop {
        match Pin::new(&mut writer).poll_write(&mut cx, &chunk) {
            Poll::Ready(Ok(n)) => {
                written += n;
                assert!(written < 256 << 20, "the send buffer never filled");
            }
            Poll::Ready(Err(e)) => panic!("write failed: {e}"),
            Poll::Pending => break,
        }
    }

    // Drain on another thread; the parked write must be woken and finish.
    let reader = thread::spawn(move || {
        let mut total = 0usize;
        let mut buf = vec![0u8; 256 * 1024];
        while total < written + chunk.len() {
            match io::Read::read(&mut &server, &mut buf) {
                Ok(0) => break,
                Ok(n) => total += n,
                Err(e) => panic!("read failed: {e}"),
            }
        }
        total
    });
    let mut rest = &vec![7u8; 64 * 1024][..];
    while !rest.is_empty() {
        let n = drive(
            |cx| Pin::new(&mut writer).poll_write(cx, rest),
            &mut cx,
            &woken,
        )
        .unwrap();
        rest = &rest[n..];
    }
    let total = bounded(move || reader.join().unwrap());
    assert_eq!(total, written + 64 * 1024);
}

#[test]
fn a_parked_async_write_times_out_at_its_write_deadline() {
    let (client, _server) = tcp_pair();
    let timeout = Duration::from_millis(150);
    let started = Instant::now();
    client.set_write_deadline(Some(started + timeout)).unwrap();
    // The peer never reads: writing fills both buffers, then parks until the deadline.
    let (written, err) = bounded(move || {
        let chunk = vec![1u8; 64 * 1024];
        let mut writer = &client;
        let mut written = 0usize;
        let err = block_on(async {
            loop {
                match AsyncWriteExt::write(&mut writer, &chunk).await {
                    Ok(n) => written += n,
                    Err(e) => return e,
                }
                assert!(written < 256 << 20, "the send buffer never filled");
            }
        });
        (written, err)
    });
    let took = started.elapsed();
    assert!(net::is_timeout(&err), "{err}");
    assert!(written > 0);
    assert!(took >= timeout && took < timeout + SLACK, "took {took:?}");
}

// ---- tokio's own traits (crate feature `tokio`) ----------------------------------------------

#[cfg(feature = "tokio")]
mod tokio_traits {
    use super::{bounded, pattern, tcp_pair, LIMIT};
    use netpoll::net::{self, Dialer, UnixConn};
    use std::io;
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn echo_with_tokio_traits(runtime: tokio::runtime::Runtime) {
        let data = pattern(4, 256 * 1024);
        let expected = data.clone();
        let got = bounded(move || {
            let listener = net::listen_tcp("tcp", "127.0.0.1:0").unwrap();
            let addr = listener.local_addr().to_string();
            runtime.block_on(async move {
                let work = async move {
                    let server = tokio::spawn(async move {
                        let (conn, _) = listener.accept_async().await?;
                        conn.set_deadline(Some(Instant::now() + LIMIT))?;
                        let (mut reader, mut writer) = tokio::io::split(conn);
                        tokio::io::copy(&mut reader, &mut writer).await?;
                        writer.shutdown().await
                    });
                    let conn = Dialer::new()
                        .timeout(LIMIT)
                        .dial_tcp_async("tcp", &addr)
                        .await?;
                    conn.set_deadline(Some(Instant::now() + LIMIT))?;
                    let (mut reader, mut writer) = tokio::io::split(conn);
                    let sender = tokio::spawn(async move {
                        writer.write_all(&data).await?;
                        writer.flush().await?;
                        writer.shutdown().await
                    });
                    let mut got = Vec::new();
                    reader.read_to_end(&mut got).await?;
                    sender.await.expect("sender task panicked")?;
                    server.await.expect("server task panicked")?;
                    Ok::<_, io::Error>(got)
                };
                tokio::time::timeout(LIMIT, work).await
            })
        })
        .expect("the echo timed out")
        .unwrap();
        assert!(got == expected, "echo differs ({} bytes back)", got.len());
    }

    #[test]
    fn echo_through_tokio_traits_on_a_current_thread_runtime() {
        echo_with_tokio_traits(
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap(),
        );
    }

    #[test]
    fn echo_through_tokio_traits_on_a_multi_thread_runtime() {
        echo_with_tokio_traits(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_time()
                .build()
                .unwrap(),
        );
    }

    #[test]
    fn tokio_read_times_out_and_shutdown_gives_the_peer_end_of_stream() {
        let (mut a, mut b) = UnixConn::pair().unwrap();
        let (mut client, _server) = tcp_pair();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        bounded(move || {
            runtime.block_on(async move {
                a.write_all(b"pair").await.unwrap();
                a.shutdown().await.unwrap();
                let mut got = Vec::new();
                b.read_to_end(&mut got).await.unwrap();
                assert_eq!(got, b"pair");

                let deadline = Instant::now() + std::time::Duration::from_millis(100);
                client.set_read_deadline(Some(deadline)).unwrap();
                let err = AsyncReadExt::read(&mut client, &mut [0u8; 4])
                    .await
                    .unwrap_err();
                assert!(net::is_timeout(&err), "{err}");
                assert!(Instant::now() >= deadline);
            })
        });
    }

    #[test]
    fn close_from_another_thread_wakes_a_pending_tokio_read_on_a_shared_conn() {
        // Regression (issue 11): tokio's traits existed only for the owned connection, so no
        // other thread could hold the connection to close it during a tokio read (Go's
        // CloseTimeout case). Now `&TcpConn` and `&UnixConn` implement them too.
        let (client, _server) = tcp_pair();
        let client = std::sync::Arc::new(client);
        let (parked_tx, parked_rx) = std::sync::mpsc::channel();
        let reader = {
            let client = client.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                let mut shared: &net::TcpConn = &client;
                let mut buf = [0u8; 4];
                let (read, parked) =
                    super::signal_pending(AsyncReadExt::read(&mut shared, &mut buf));
                parked_tx.send(parked).unwrap();
                runtime.block_on(read)
            })
        };
        let parked = parked_rx.recv_timeout(LIMIT).unwrap();
        parked.recv_timeout(LIMIT).expect("the read never parked");
        client.close_now().unwrap();
        let err = bounded(move || reader.join().unwrap()).unwrap_err();
        assert!(net::is_closed(&err), "{err}");

        // The write side, and Unix connections, through shared references too.
        let (a, b) = UnixConn::pair().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (mut a, mut b) = (&a, &b);
            a.write_all(b"shared").await.unwrap();
            a.shutdown().await.unwrap();
            let mut got = Vec::new();
            b.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"shared");
        });
    }
}
