//! The write timeout of inline handlers' output (which no flush waits for) against peers that
//! take nothing and peers that read slowly (found in review): a `ready()` that sent the queue
//! back under the cap still arms the timer, and a peer that keeps reading — even while the
//! poller has not been told the full socket has room again — is not closed.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{TestServer, LIMIT};
use netpoll::EventLoop;

const WRITE_TIMEOUT: Duration = Duration::from_millis(300);
/// Slack for a loaded machine: the timer re-arms once per timeout, so a close comes between one
/// and two timeouts after the last byte went, plus scheduling delays.
const LATE: Duration = Duration::from_secs(2);

fn client_with_rcvbuf(addr: SocketAddr, rcvbuf: usize) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(rcvbuf).unwrap();
    socket.connect(&addr.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    stream.set_write_timeout(Some(LIMIT)).unwrap();
    stream
}

/// When and why the connection closed.
type Closed = mpsc::Receiver<(Instant, Option<ErrorKind>)>;

/// An inline server that answers any input with `reply` bytes (then `flush`), its output cap
/// twice that, the given write timeout and, if given, send buffer; it reports each close.
fn replying_server(
    reply: usize,
    write_timeout: Duration,
    sndbuf: Option<usize>,
) -> (netpoll::EventLoop, Closed) {
    let (tx, closed) = mpsc::channel();
    let server = EventLoop::builder()
        .on_prepare(move |conn| {
            if let Some(size) = sndbuf {
                conn.socket().set_send_buffer_size(size).unwrap();
            }
            let tx = tx.clone();
            conn.add_close_callback(move |c| {
                let _ = tx.send((Instant::now(), c.close_reason()));
            });
        })
        .inline_handlers()
        .output_cap(reply * 2)
        .write_timeout(write_timeout)
        .on_request(move |_, conn| {
            let mut reader = conn.reader();
            let n = reader.len();
            reader.skip(n)?;
            drop(reader);
            let mut writer = conn.writer();
            writer.write_binary(&vec![7u8; reply])?;
            writer.flush()
        })
        .build()
        .unwrap();
    (server, closed)
}

#[test]
fn a_ready_that_sends_below_the_cap_still_arms_the_write_timeout() {
    const CAP: usize = 256 * 1024;
    let (tx, closed) = mpsc::channel();
    let server = TestServer::start(
        EventLoop::builder()
            .on_prepare(move |conn| {
                conn.socket().set_send_buffer_size(32 * 1024).unwrap();
                let tx = tx.clone();
                conn.add_close_callback(move |c| {
                    let _ = tx.send((Instant::now(), c.close_reason()));
                });
            })
            .inline_handlers()
            .output_cap(CAP)
            .write_timeout(WRITE_TIMEOUT)
            .on_request(|_, conn| {
                let mut reader = conn.reader();
                let n = reader.len();
                reader.skip(n)?;
                drop(reader);
                let mut writer = conn.writer();
                writer.write_binary(&vec![7u8; CAP + 16 * 1024])?;
                // Publishes and sends part; what is left is below the cap: Ok, no flush after.
                writer.ready()
            })
            .build()
            .unwrap(),
    );
    let client = client_with_rcvbuf(server.addr, 64 * 1024);
    (&client).write_all(b"r").unwrap();
    let asked = Instant::now();
    match closed.recv_timeout(WRITE_TIMEOUT * 2 + LATE + Duration::from_secs(3)) {
        Ok((at, reason)) => {
            assert_eq!(reason, Some(ErrorKind::TimedOut));
            assert!(
                at - asked <= WRITE_TIMEOUT * 2 + LATE,
                "closed late: {:?}",
                at - asked
            );
        }
        Err(_) => panic!(
            "output queued, write timeout {WRITE_TIMEOUT:?}, the peer took nothing for {:?}: never closed",
            asked.elapsed()
        ),
    }
}

/// The poller hears that a full send buffer has room only once about a third of it is free:
/// with an 8 MiB buffer and a reader of 800 KB/s that is over 3 s without a send, though the
/// peer acknowledges bytes all along. (The timeout is 1 s here: with a small receive buffer
/// on loopback's 64 KiB segments, TCP's own window probing can stall a slow reader for a few
/// hundred milliseconds, which no sender can see past.)
#[test]
fn a_peer_that_keeps_reading_slowly_is_not_closed() {
    const REPLY: usize = 16 << 20;
    const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
    let (server, closed) = replying_server(REPLY, WRITE_TIMEOUT, Some(4 << 20));
    let server = TestServer::start(server);
    let mut client = client_with_rcvbuf(server.addr, 256 * 1024);
    client.write_all(b"r").unwrap();
    let started = Instant::now();
    let (mut got, mut buf, mut timeline) = (0usize, vec![0u8; 8 * 1024], Vec::new());
    // About 800 KB/s: 8 KiB every 10 ms, for 5 s (the sleep paces a slow reader).
    while started.elapsed() < Duration::from_secs(5) {
        match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                got += n;
                timeline.push((Instant::now(), got));
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if let Ok((at, reason)) = closed.try_recv() {
        let before: Vec<_> = timeline.iter().filter(|(t, _)| *t <= at).collect();
        let recent = before
            .iter()
            .filter(|(t, _)| at.duration_since(*t) <= WRITE_TIMEOUT)
            .count();
        panic!(
            "closed ({reason:?}) {:?} after the request; the peer had read {} bytes, {recent} reads in the last write timeout",
            at - started,
            before.last().map_or(0, |(_, g)| *g)
        );
    }
}

/// The same over a Unix socket, whose send queue the kernel counts in whole buffers (about
/// 36 KiB each here): a peer reading 160 KB/s frees one every ~0.25 s, well inside the
/// timeout, though the poller hears of room only once three quarters of the queue are read.
#[test]
fn a_unix_peer_that_keeps_reading_slowly_is_not_closed() {
    const REPLY: usize = 4 << 20;
    const WRITE_TIMEOUT: Duration = Duration::from_millis(500);
    let dir = std::env::temp_dir().join(format!("netpoll-wt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("slow.sock");
    let (server, closed) = replying_server(REPLY, WRITE_TIMEOUT, None);
    let server = TestServer::start_on(
        server,
        netpoll::Listener::bind_unix(&path).unwrap(),
        "127.0.0.1:1".parse().unwrap(),
    );
    let mut client = std::os::unix::net::UnixStream::connect(&path).unwrap();
    client.set_read_timeout(Some(LIMIT)).unwrap();
    client.write_all(b"r").unwrap();
    let started = Instant::now();
    let (mut got, mut buf) = (0usize, vec![0u8; 8 * 1024]);
    // About 160 KB/s: 8 KiB every 50 ms, for 3 s (the sleep paces a slow reader).
    while started.elapsed() < Duration::from_secs(3) {
        match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    if let Ok((at, reason)) = closed.try_recv() {
        if at < started + Duration::from_secs(3) {
            panic!(
                "closed ({reason:?}) {:?} after the request, the peer reading steadily ({got} bytes by the end)",
                at - started
            );
        }
    }
}
