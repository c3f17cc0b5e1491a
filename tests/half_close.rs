//! The peer's half-close ends the input, not the connection: everything it sent reaches the
//! handler, everything the handler queued is sent before our FIN, and only then does the
//! library close. Pool and inline handlers, with and without a write timeout, with a small
//! input cap; sizes from 1 B to 24 MiB.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{echo, pattern, TestServer, LIMIT};
use netpoll::{EventLoop, EventLoopBuilder};

const SIZES: [usize; 7] = [
    1,
    1000,
    64 * 1024 + 1,
    (1 << 20) + 7,
    3 << 20,
    8 << 20,
    24 << 20,
];
const TRIES: usize = 20;

/// Sends `data`, half-closes, and reads until EOF, concurrently; returns what came back.
fn echo_then_half_close(addr: std::net::SocketAddr, data: Arc<Vec<u8>>) -> Vec<u8> {
    let mut client = TcpStream::connect(addr).unwrap();
    client.set_read_timeout(Some(LIMIT)).unwrap();
    client.set_write_timeout(Some(LIMIT)).unwrap();
    let mut writer = client.try_clone().unwrap();
    let sending = std::thread::spawn(move || {
        writer.write_all(&data).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut got = Vec::new();
    // EOF (a clean end) after everything, never a reset: read_to_end fails on ECONNRESET.
    client
        .read_to_end(&mut got)
        .expect("the echo ended with an error instead of EOF");
    sending.join().unwrap();
    got
}

fn run_matrix(name: &str, builder: EventLoopBuilder<()>) {
    let server = TestServer::start(builder.on_request(echo).build().unwrap());
    // The sizes cycle over the tries, and the tries run two at a time.
    for round in 0..TRIES / 2 {
        let runs: Vec<_> = (0..2)
            .map(|k| {
                let size = SIZES[(round * 2 + k) % SIZES.len()];
                let data = Arc::new(pattern((round * 2 + k) as u64, size));
                let addr = server.addr;
                std::thread::spawn(move || (data.clone(), echo_then_half_close(addr, data)))
            })
            .collect();
        for run in runs {
            let (sent, got) = run.join().unwrap();
            assert_eq!(got.len(), sent.len(), "{name}: bytes lost");
            assert!(got == *sent, "{name}: bytes changed");
        }
    }
}

#[test]
fn half_close_pool_handlers() {
    run_matrix("pool", EventLoop::builder());
}

#[test]
fn half_close_pool_handlers_with_a_write_timeout() {
    run_matrix(
        "pool+write timeout",
        EventLoop::builder().write_timeout(LIMIT),
    );
}

#[test]
fn half_close_pool_handlers_with_a_small_input_cap() {
    run_matrix("pool+cap", EventLoop::builder().input_cap(16 * 1024));
}

#[test]
fn half_close_inline_handlers() {
    run_matrix("inline", EventLoop::builder().inline_handlers());
}

#[test]
fn half_close_inline_handlers_with_a_write_timeout() {
    run_matrix(
        "inline+write timeout",
        EventLoop::builder().inline_handlers().write_timeout(LIMIT),
    );
}

#[test]
fn half_close_inline_handlers_with_a_small_input_cap() {
    run_matrix(
        "inline+cap",
        EventLoop::builder().inline_handlers().input_cap(16 * 1024),
    );
}

/// The peer closes while its input is paused at the cap (the first `on_request` is slow): the
/// rest is still read and handled after the handler catches up.
#[test]
fn input_paused_at_the_cap_is_read_to_the_end_after_the_peer_closes() {
    const SENT: usize = 48 * 1024;
    let (release_tx, release_rx) = channel::<()>();
    let release_rx = Arc::new(Mutex::new(release_rx));
    let handled = Arc::new(Mutex::new(0usize));
    let server = TestServer::start(
        EventLoop::builder()
            .input_cap(16 * 1024)
            .on_request({
                let handled = handled.clone();
                move |_, conn| {
                    // The first call waits until the client has sent everything and closed.
                    // (Off the poller: a coroutine handler must not block its thread.)
                    let release_rx = release_rx.clone();
                    let _ =
                        netpoll::blocking(move || release_rx.lock().unwrap().recv_timeout(LIMIT));
                    let mut reader = conn.reader();
                    let n = reader.len();
                    reader.skip(n)?;
                    *handled.lock().unwrap() += n;
                    Ok(())
                }
            })
            .build()
            .unwrap(),
    );
    let mut client = server.connect();
    // The kernel buffers all 48 KiB while our side reads 16 KiB and pauses.
    client.write_all(&pattern(7, SENT)).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    drop(release_tx); // every later recv returns at once
                      // Our side closes only once the input is handled, so EOF here means the count is final.
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
    assert_eq!(*handled.lock().unwrap(), SENT);
}

/// Our FIN goes out only after the queued output: a reply written after the peer's half-close
/// still arrives, followed by EOF.
#[test]
fn a_reply_written_after_the_peer_half_closed_arrives_before_eof() {
    for inline in [false, true] {
        let mut builder = EventLoop::builder().on_request(|_, conn| {
            // The whole request (inline: `WouldBlock` until it is all here, then called again).
            let request = conn.reader().next(64 * 1024)?;
            let mut writer = conn.writer();
            // A reply much larger than the request and than the socket's buffers.
            for _ in 0..64 {
                writer.write_binary(&request)?;
            }
            writer.flush()
        });
        if inline {
            builder = builder.inline_handlers();
        }
        let server = TestServer::start(builder.build().unwrap());
        let mut client = server.connect();
        let request = pattern(3, 64 * 1024);
        client.write_all(&request).unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), 64 * request.len(), "inline={inline}");
        assert!(got.chunks(request.len()).all(|c| c == &request[..]));
    }
}

/// With no write timeout, a flush waiting for room ends as soon as the peer can no longer
/// receive (it reset): the handler gets an error instead of hanging forever.
#[test]
fn a_flush_waiting_for_room_fails_when_the_peer_resets() {
    let (result_tx, result_rx) = channel();
    let result_tx = Arc::new(Mutex::new(result_tx));
    let (started_tx, started_rx) = channel();
    let started_tx = Arc::new(Mutex::new(started_tx));
    let server = TestServer::start(
        EventLoop::builder()
            .on_request(move |_, conn| {
                let mut reader = conn.reader();
                let n = reader.len();
                reader.skip(n)?;
                drop(reader);
                let _ = started_tx.lock().unwrap().send(());
                let mut writer = conn.writer();
                let block = vec![7u8; 1 << 20];
                let result = (|| {
                    for _ in 0..64 {
                        writer.write_binary(&block)?;
                        writer.flush()?;
                    }
                    Ok::<(), std::io::Error>(())
                })();
                let _ = result_tx.lock().unwrap().send(result.map_err(|e| e.kind()));
                Ok(())
            })
            .build()
            .unwrap(),
    );
    let client = server.connect();
    (&client).write_all(b"go").unwrap();
    started_rx.recv_timeout(LIMIT).unwrap();
    // Never read, then reset: linger 0 makes close send RST.
    socket2::SockRef::from(&client)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(client);
    let result = result_rx
        .recv_timeout(LIMIT)
        .expect("the flush never returned after the peer reset");
    assert!(
        result.is_err(),
        "64 MiB cannot have been sent to a reset peer"
    );
}
