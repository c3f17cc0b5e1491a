//! After a short read of a TCP stream the next read waits for the next readiness edge instead of
//! issuing a `readv` that says EAGAIN. These are the cases where a short read leaves something
//! behind whose edge was already spent — urgent data (the read stops at its mark), end of stream
//! and data in one edge — and where waiting for a new edge would stall forever. A read deadline
//! turns a stall into a failure.

mod common;

use std::io::{IoSliceMut, Read, Write};
use std::net::Shutdown;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use common::LIMIT;

use netpoll::net::{self, TcpConn};
use netpoll::poll::PollManager;

/// (netpoll's accepted side, a std client) on loopback.
fn pair() -> (TcpConn, std::net::TcpStream) {
    let listener = net::listen_tcp("tcp", "127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().to_string()).unwrap();
    let (server, _) = listener.accept().unwrap();
    server
        .set_read_deadline(Some(Instant::now() + LIMIT))
        .unwrap();
    (server, client)
}

/// Reads `want` bytes, or to end of stream, (or fails at the deadline) 64 bytes at a time, so
/// every read that finds fewer bytes is short.
fn read_up_to(mut conn: TcpConn, want: usize) -> std::io::Result<Vec<u8>> {
    let mut all = Vec::new();
    let mut buf = [0u8; 64];
    while all.len() < want {
        match conn.read(&mut buf)? {
            0 => break,
            n => all.extend_from_slice(&buf[..n]),
        }
    }
    Ok(all)
}

/// A coroutine waiting in `read` on a poller that is held (its thread blocked in a task) while
/// the client sends `burst`: released, the poller collects everything in one event, the edge
/// that wakes the reader, so no later edge announces what the first short read leaves behind.
/// (A coroutine, so that "the reader is waiting" is known without a sleep: it runs on that
/// poller and suspends before the poller runs anything else.)
fn one_edge_burst(
    burst: impl FnOnce(&mut socket2::Socket),
    want: usize,
) -> std::io::Result<Vec<u8>> {
    one_edge_burst_with(burst, move |server| read_up_to(server, want))
}

fn urgent_burst(client: &mut socket2::Socket) {
    client.write_all(b"abc").unwrap();
    client.send_out_of_band(b"!").unwrap();
    client.write_all(b"def").unwrap();
}

#[test]
fn urgent_data_in_the_waking_edge_does_not_stall_the_next_read() {
    // Without SO_OOBINLINE the urgent byte is not part of the stream; the read stops at its
    // mark with "def" still queued.
    let got = one_edge_burst(urgent_burst, 6).expect("the read after the mark stalled");
    assert_eq!(got, b"abcdef");
}

fn data_then_end(client: &mut socket2::Socket) {
    client.write_all(b"last words").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
}

#[test]
fn end_of_stream_in_the_waking_edge_is_seen_after_a_short_read() {
    let got = one_edge_burst(data_then_end, usize::MAX).expect("the end was missed");
    assert_eq!(got, b"last words");
}

/// Request/response: each request is one short read, then the reader waits for the next edge;
/// every byte of 2,000 round trips arrives.
fn ping_pong(read_side_in_coroutine: bool) {
    let (server, mut client) = pair();
    let serve = move || -> std::io::Result<u64> {
        let mut server = server;
        let mut buf = vec![0u8; 4096];
        let mut served = 0;
        loop {
            match server.read(&mut buf)? {
                0 => return Ok(served),
                n => {
                    server.write_all(&buf[..n])?;
                    served += 1;
                }
            }
        }
    };
    let served = if read_side_in_coroutine {
        let handle = netpoll::go(serve);
        Box::new(move || handle.join().unwrap()) as Box<dyn FnOnce() -> _>
    } else {
        let handle = std::thread::spawn(serve);
        Box::new(move || handle.join().unwrap())
    };
    client.set_read_timeout(Some(LIMIT)).unwrap();
    for i in 0..2000u32 {
        let message = format!("request {i}");
        client.write_all(message.as_bytes()).unwrap();
        let mut reply = vec![0u8; message.len()];
        client.read_exact(&mut reply).unwrap();
        assert_eq!(reply, message.as_bytes());
    }
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(served().unwrap(), 2000);
}

#[test]
fn request_response_on_a_thread() {
    ping_pong(false);
}

#[test]
fn request_response_in_a_coroutine() {
    ping_pong(true);
}

/// The reader of [`one_edge_burst`] given by the test: a coroutine whose first read waits on a held poller while the client
/// sends `burst`, so everything arrives in the one edge that wakes it; then `reader` goes on.
fn one_edge_burst_with<T: Send + 'static>(
    burst: impl FnOnce(&mut socket2::Socket),
    reader: impl FnOnce(TcpConn) -> T + Send + 'static,
) -> T {
    let manager = Arc::new(PollManager::new(1).unwrap());
    let poller = manager.pick();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = net::Dialer::new()
        .poll_manager(manager.clone())
        .dial_tcp("tcp", listener.local_addr().unwrap())
        .unwrap();
    server
        .set_read_deadline(Some(Instant::now() + Duration::from_secs(2)))
        .unwrap();
    let (client, _) = listener.accept().unwrap();
    let mut client = socket2::Socket::from(client);
    let (waiting_tx, waiting_rx) = mpsc::channel();
    let reading = netpoll::go_on(&poller, move || {
        let _ = waiting_tx.send(());
        reader(server)
    });
    waiting_rx.recv_timeout(LIMIT).unwrap();
    let release = common::hold(&poller);
    burst(&mut client);
    drop(release);
    let got = reading.join().unwrap();
    drop(client);
    got
}

/// More buffers than one `readv` takes (`MAX_IOVECS` = 1024): the read fills the first 1024 and
/// returns 1024 < the total asked for, which the shortcut takes for "the queue is empty"; the
/// next read waits for an edge that never comes while 1024 bytes are queued.
#[test]
fn a_read_cut_at_the_iovec_limit_is_not_a_short_read() {
    let got = one_edge_burst_with(
        |client| client.write_all(&[7u8; 2048]).unwrap(),
        |mut server| -> std::io::Result<(usize, usize)> {
            let mut bytes = vec![0u8; 1100];
            let first = {
                let mut bufs: Vec<IoSliceMut<'_>> =
                    bytes.chunks_mut(1).map(IoSliceMut::new).collect();
                // The first read waits (nothing queued yet), then takes 1024 of the 2048 bytes.
                server.read_vectored(&mut bufs)?
            };
            let mut rest = [0u8; 4096];
            let second = server.read(&mut rest)?;
            Ok((first, second))
        },
    );
    let (first, second) = got.expect("the read after a read cut at 1024 iovecs stalled");
    assert_eq!(first, 1024);
    assert_eq!(second, 1024);
}

// The async path (`futures::io::AsyncRead`, and hyper's `Read`) takes the same shortcut: after a
// short read the next poll waits for an edge (and stays pending without a syscall until it
// comes). The same cases, with the reader an async task on the held poller.

/// [`one_edge_burst_with`] for an async reader: a task whose first read is pending on a held
/// poller while the client sends `burst`.
fn one_edge_burst_async<T, F>(
    burst: impl FnOnce(&mut socket2::Socket),
    reader: impl FnOnce(TcpConn) -> F + Send + 'static,
) -> T
where
    T: Send + 'static,
    F: std::future::Future<Output = T> + Send + 'static,
{
    let manager = Arc::new(PollManager::new(1).unwrap());
    let poller = manager.pick();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = net::Dialer::new()
        .poll_manager(manager.clone())
        .dial_tcp("tcp", listener.local_addr().unwrap())
        .unwrap();
    server
        .set_read_deadline(Some(Instant::now() + Duration::from_secs(2)))
        .unwrap();
    let (client, _) = listener.accept().unwrap();
    let mut client = socket2::Socket::from(client);
    let (waiting_tx, waiting_rx) = mpsc::channel();
    let reading = netpoll::task::spawn_on(&poller, async move {
        let _ = waiting_tx.send(());
        // The first poll of the read is pending before this task yields the poller.
        reader(server).await
    })
    .unwrap();
    waiting_rx.recv_timeout(LIMIT).unwrap();
    let release = common::hold(&poller);
    burst(&mut client);
    drop(release);
    let got = reading.join().unwrap();
    drop(client);
    got
}

/// [`read_up_to`], async.
async fn read_up_to_async(mut conn: TcpConn, want: usize) -> std::io::Result<Vec<u8>> {
    let mut all = Vec::new();
    let mut buf = [0u8; 64];
    while all.len() < want {
        match futures::io::AsyncReadExt::read(&mut conn, &mut buf).await? {
            0 => break,
            n => all.extend_from_slice(&buf[..n]),
        }
    }
    Ok(all)
}

#[test]
fn async_urgent_data_in_the_waking_edge_does_not_stall_the_next_read() {
    let got = one_edge_burst_async(urgent_burst, |conn| read_up_to_async(conn, 6))
        .expect("the async read after the mark stalled");
    assert_eq!(got, b"abcdef");
}

#[test]
fn async_end_of_stream_in_the_waking_edge_is_seen_after_a_short_read() {
    let got = one_edge_burst_async(data_then_end, |conn| read_up_to_async(conn, usize::MAX))
        .expect("the end was missed");
    assert_eq!(got, b"last words");
}

#[test]
fn async_read_cut_at_the_iovec_limit_is_not_a_short_read() {
    let got = one_edge_burst_async(
        |client| client.write_all(&[7u8; 2048]).unwrap(),
        |mut server| async move {
            let mut bytes = vec![0u8; 1100];
            let first = {
                let mut bufs: Vec<IoSliceMut<'_>> =
                    bytes.chunks_mut(1).map(IoSliceMut::new).collect();
                futures::io::AsyncReadExt::read_vectored(&mut server, &mut bufs).await?
            };
            let mut rest = [0u8; 4096];
            let second = futures::io::AsyncReadExt::read(&mut server, &mut rest).await?;
            Ok::<_, std::io::Error>((first, second))
        },
    );
    let (first, second) = got.expect("the async read after a read cut at 1024 iovecs stalled");
    assert_eq!(first, 1024);
    assert_eq!(second, 1024);
}

/// Request/response in a task: every request is a short read followed by a pending poll that
/// the next request's edge wakes; then a blocking read on the same connection (after an async
/// short read) still gets the bytes that come later.
#[test]
fn async_request_response_then_a_blocking_read() {
    let (server, mut client) = pair();
    let serving = netpoll::spawn(async move {
        let mut server = server;
        let mut buf = vec![0u8; 4096];
        for _ in 0..2000 {
            let n = futures::io::AsyncReadExt::read(&mut server, &mut buf).await?;
            futures::io::AsyncWriteExt::write_all(&mut server, &buf[..n]).await?;
        }
        Ok::<_, std::io::Error>(server)
    });
    client.set_read_timeout(Some(LIMIT)).unwrap();
    for i in 0..2000u32 {
        // Fixed-size messages, one write and one short read each.
        let message = format!("request {i:05}");
        client.write_all(message.as_bytes()).unwrap();
        let mut reply = vec![0u8; message.len()];
        client.read_exact(&mut reply).unwrap();
        assert_eq!(reply, message.as_bytes());
    }
    let server = serving.join().unwrap().unwrap();
    // The last async read was short: the blocking read waits for the edge of these bytes.
    client.write_all(b"after").unwrap();
    let mut got = [0u8; 5];
    (&server).read_exact(&mut got).unwrap();
    assert_eq!(&got, b"after");
}
