//! Inline handlers never wait, so the read timeout bounds how long a frame may stay partial:
//! a client that starts a frame and never finishes it (silent, or trickling a byte at a time)
//! is closed on time, while clients that finish their frames, however slowly their stream
//! goes overall, are not.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{line_echo, TestServer, LIMIT};
use netpoll::EventLoop;

const TIMEOUT: Duration = Duration::from_millis(300);

/// Lines echoed by an inline handler with a 300 ms read timeout.
fn line_server() -> TestServer {
    TestServer::start(
        EventLoop::builder()
            .inline_handlers()
            .read_timeout(TIMEOUT)
            .on_request(line_echo)
            .build()
            .unwrap(),
    )
}

/// True once the server has closed `client` (EOF or reset); false if it answered or the
/// client's own read timed out.
fn closed(client: &mut TcpStream) -> bool {
    let mut byte = [0u8; 64];
    match client.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if e.kind() == ErrorKind::ConnectionReset => true,
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
        Err(e) => panic!("read: {e}"),
    }
}

fn round_trip(client: &mut TcpStream, line: &[u8]) {
    client.write_all(line).unwrap();
    let mut got = vec![0u8; line.len()];
    client.read_exact(&mut got).unwrap();
    assert_eq!(got, line);
}

#[test]
fn a_silent_partial_frame_is_closed_after_the_read_timeout() {
    let server = line_server();
    let mut client = server.connect();
    round_trip(&mut client, b"whole\n");
    let started = Instant::now();
    client.write_all(b"part of a line").unwrap();
    assert!(closed(&mut client), "the partial frame was not timed out");
    let waited = started.elapsed();
    assert!(
        waited >= TIMEOUT,
        "closed after {waited:?}, before the timeout"
    );
    assert!(waited < LIMIT, "closed only after {waited:?}");
}

/// A byte every 50 ms is traffic, but no frame ever completes: the deadline runs from the
/// first byte of the frame, not from the last. A client served meanwhile stays fast.
#[test]
fn a_trickling_client_is_closed_and_others_stay_fast() {
    let server = line_server();
    let mut slow = server.connect();
    slow.set_read_timeout(Some(Duration::from_millis(1)))
        .unwrap();
    let mut normal = server.connect();
    let started = Instant::now();
    let mut was_closed = false;
    while started.elapsed() < LIMIT {
        if slow.write_all(b"x").is_err() || closed(&mut slow) {
            was_closed = true;
            break;
        }
        let asked = Instant::now();
        round_trip(&mut normal, b"ping\n");
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "a normal client waited"
        );
        std::thread::sleep(Duration::from_millis(50)); // the trickle's pace, not a sync
    }
    let waited = started.elapsed();
    assert!(was_closed, "a client trickling a frame was never closed");
    assert!(
        waited >= TIMEOUT,
        "closed after {waited:?}, before the timeout"
    );
    round_trip(&mut normal, b"still served\n");
}

/// Frames that complete keep the connection, even when the stream as a whole lasts many
/// timeouts and every write ends in the middle of the next frame.
#[test]
fn frames_that_complete_are_never_timed_out() {
    let server = line_server();
    let mut client = server.connect();
    let started = Instant::now();
    client.write_all(b"line 0").unwrap();
    let mut i = 0;
    while started.elapsed() < TIMEOUT * 4 {
        // Finish the pending line and start the next one in the same write.
        i += 1;
        client.write_all(format!("\nline {i}").as_bytes()).unwrap();
        let expected = format!("line {}\n", i - 1);
        let mut got = vec![0u8; expected.len()];
        client.read_exact(&mut got).unwrap();
        assert_eq!(got, expected.as_bytes());
        std::thread::sleep(TIMEOUT / 6); // slower than the traffic, faster than the timeout
    }
    client.write_all(b"\n").unwrap();
    let expected = format!("line {i}\n");
    let mut got = vec![0u8; expected.len()];
    client.read_exact(&mut got).unwrap();
    assert_eq!(got, expected.as_bytes());
}

/// Waiting handlers (coroutines, pool threads): `until` waits for its delimiter under one
/// deadline, not a fresh one per byte that arrives, so a trickled line is timed out too.
#[test]
fn a_trickled_line_is_timed_out_for_waiting_handlers() {
    for pool in [false, true] {
        let mut builder = EventLoop::builder().read_timeout(TIMEOUT);
        if pool {
            builder = builder.handler_pool(netpoll::HandlerPool::new(2));
        }
        let server = TestServer::start(builder.on_request(line_echo).build().unwrap());
        let mut slow = server.connect();
        slow.set_read_timeout(Some(Duration::from_millis(1)))
            .unwrap();
        let started = Instant::now();
        let mut was_closed = false;
        while started.elapsed() < LIMIT {
            if slow.write_all(b"x").is_err() || closed(&mut slow) {
                was_closed = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50)); // the trickle's pace, not a sync
        }
        let waited = started.elapsed();
        assert!(
            was_closed,
            "pool={pool}: a trickled line was never timed out"
        );
        assert!(waited >= TIMEOUT, "pool={pool}: closed after {waited:?}");
    }
}
