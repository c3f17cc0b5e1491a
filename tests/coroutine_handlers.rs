//! Reactor handlers as coroutines (the default): a handler that waits — for input, for room to
//! send, on a timer — suspends, and its poller serves every other connection meanwhile. These
//! run on one poller, so a wait that blocked the thread would stall the test.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{echo, pattern, TestServer, LIMIT};
use netpoll::poll::PollManager;
use netpoll::EventLoop;

fn one_poller() -> Arc<PollManager> {
    Arc::new(PollManager::new(1).unwrap())
}

fn round_trip(client: &mut std::net::TcpStream, message: &[u8]) {
    client.write_all(message).unwrap();
    let mut got = vec![0u8; message.len()];
    client.read_exact(&mut got).unwrap();
    assert_eq!(got, message);
}

/// A length-prefixed frame: the handler waits in `next(n)` for the body, suspended.
fn frame_echo(_: &(), conn: &netpoll::Connection) -> std::io::Result<()> {
    let mut reader = conn.reader();
    let header = reader.next(4)?;
    let len = u32::from_be_bytes(header[..].try_into().unwrap()) as usize;
    let body = reader.next(len)?;
    drop(reader);
    let mut writer = conn.writer();
    writer.write_direct(body)?;
    writer.flush()
}

#[test]
fn a_handler_waiting_for_input_suspends_while_the_poller_serves_others() {
    let (inside_tx, inside_rx) = channel();
    let inside_tx = Arc::new(Mutex::new(inside_tx));
    let server = TestServer::start(
        EventLoop::builder()
            .poll_manager(one_poller())
            .on_request(move |ctx, conn| {
                let _ = inside_tx.lock().unwrap().send(netpoll::rt::is_coroutine());
                frame_echo(ctx, conn)
            })
            .build()
            .unwrap(),
    );
    let mut waiting = server.connect();
    waiting.write_all(&5u32.to_be_bytes()).unwrap();
    assert!(
        inside_rx.recv_timeout(LIMIT).unwrap(),
        "handler in a coroutine"
    );
    // The first handler now waits for its body on the only poller; others are still served.
    for i in 0..20u32 {
        let mut other = server.connect();
        let body = format!("other {i}");
        let mut message = (body.len() as u32).to_be_bytes().to_vec();
        message.extend_from_slice(body.as_bytes());
        other.write_all(&message).unwrap();
        let mut got = vec![0u8; body.len()];
        other.read_exact(&mut got).unwrap();
        assert_eq!(got, body.as_bytes());
    }
    waiting.write_all(b"hello").unwrap();
    let mut got = [0u8; 5];
    waiting.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello");
}

#[test]
fn a_flush_waiting_for_a_slow_reader_suspends_while_others_are_served() {
    const TOTAL: usize = 8 << 20;
    let (flushed_tx, flushed_rx) = channel();
    let flushed_tx = Arc::new(Mutex::new(flushed_tx));
    let server = TestServer::start(
        EventLoop::builder()
            .poll_manager(one_poller())
            .output_cap(64 * 1024)
            .on_request(move |ctx, conn| {
                let first = conn.reader().peek(1)?;
                if &first[..] != b"B" {
                    return echo(ctx, conn);
                }
                conn.reader().skip(1)?;
                // Far more than the socket buffers hold: writes past the cap and the flush
                // wait (suspended) until the client reads.
                let data = pattern(7, TOTAL);
                let mut writer = conn.writer();
                for chunk in data.chunks(16 * 1024) {
                    writer.write_binary(chunk)?;
                }
                let result = writer.flush();
                let _ = flushed_tx.lock().unwrap().send(result.is_ok());
                result
            })
            .build()
            .unwrap(),
    );
    let mut bulk = server.connect();
    bulk.write_all(b"B").unwrap();
    // The bulk client reads nothing yet: its handler is stuck behind the cap.
    for i in 0..20 {
        let mut other = server.connect();
        round_trip(&mut other, format!("ping {i}").as_bytes());
    }
    assert!(flushed_rx.try_recv().is_err(), "8 MiB cannot be sent yet");
    let mut got = vec![0u8; TOTAL];
    bulk.read_exact(&mut got).unwrap();
    assert!(got == pattern(7, TOTAL), "every byte arrives in order");
    assert!(flushed_rx.recv_timeout(LIMIT).unwrap());
}

#[test]
fn idle_connections_hold_no_coroutine() {
    let manager = one_poller();
    let poller = manager.pick();
    let server = TestServer::start(
        EventLoop::builder()
            .poll_manager(manager.clone())
            .on_request(echo)
            .build()
            .unwrap(),
    );
    let mut clients: Vec<_> = (0..100).map(|_| server.connect()).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        round_trip(client, format!("hello {i}").as_bytes());
    }
    // Every handler returned after its reply: the only coroutine left is the probe itself.
    // (A handler's coroutine ends after it flushed; the probe queues behind those.)
    let deadline = Instant::now() + LIMIT;
    loop {
        let live = netpoll::go_on(&poller, netpoll::rt::live_coroutines)
            .join()
            .unwrap();
        if live == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "{live} coroutines still live");
        std::thread::yield_now();
    }
    assert_eq!(server.server.connections(), 100);
}

#[test]
fn two_coroutines_writing_one_connection_take_turns_without_stalling_the_poller() {
    const PUSHES: usize = 2000;
    const PUSH: &[u8] = b"#PUSH#\n";
    let server = TestServer::start(
        EventLoop::builder()
            .poll_manager(one_poller())
            .output_cap(4 * 1024)
            .on_connect(|_, conn| {
                // A second writer in a coroutine of the same poller: both wait for room in turn
                // while the client is slow to read.
                let conn = conn.clone();
                let poller = netpoll::rt::current_poller().expect("on_connect in a coroutine");
                netpoll::go_on(&poller, move || {
                    for _ in 0..PUSHES {
                        let mut writer = conn.writer();
                        if writer
                            .write_binary(PUSH)
                            .and_then(|_| writer.flush())
                            .is_err()
                        {
                            return;
                        }
                    }
                });
            })
            .on_request(echo)
            .build()
            .unwrap(),
    );
    let mut client = server.connect();
    let sent: Vec<u8> = (0..256 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    let mut writer = client.try_clone().unwrap();
    let to_send = sent.clone();
    let sender = std::thread::spawn(move || writer.write_all(&to_send));
    let expected = sent.len() + PUSHES * PUSH.len();
    let mut got = Vec::with_capacity(expected);
    let mut buf = [0u8; 4096];
    while got.len() < expected {
        let n = client.read(&mut buf).unwrap();
        assert!(n > 0, "closed after {} of {expected} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
        // A slow reader, so the writers meet the cap.
        if got.len() % 8 == 0 {
            std::thread::yield_now();
        }
    }
    sender.join().unwrap().unwrap();
    let pushes = got.windows(PUSH.len()).filter(|w| *w == PUSH).count();
    assert_eq!(pushes, PUSHES, "every push arrived whole");
    let echoed: Vec<u8> = got
        .split(|&b| b == b'#' || b == b'\n')
        .filter(|part| *part != b"PUSH")
        .flatten()
        .copied()
        .collect();
    assert!(
        echoed == sent,
        "the echo arrived in order between the pushes"
    );
}

#[test]
fn a_handler_sleeping_on_a_poller_timer_does_not_stall_it() {
    let server = TestServer::start(
        EventLoop::builder()
            .poll_manager(one_poller())
            .on_request(|ctx, conn| {
                if &conn.reader().peek(1)?[..] == b"s" {
                    netpoll::sleep(Duration::from_millis(500));
                }
                echo(ctx, conn)
            })
            .build()
            .unwrap(),
    );
    let mut sleeper = server.connect();
    sleeper.write_all(b"s").unwrap();
    let started = Instant::now();
    let mut other = server.connect();
    round_trip(&mut other, b"not asleep");
    let served_in = started.elapsed();
    let mut got = [0u8; 1];
    sleeper.read_exact(&mut got).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert!(
        served_in < Duration::from_millis(500),
        "the other connection waited for the sleeper ({served_in:?})"
    );
}

#[test]
fn shutdown_wakes_a_handler_suspended_in_read() {
    let (result_tx, result_rx) = channel();
    let result_tx = Arc::new(Mutex::new(result_tx));
    let mut server = TestServer::start(
        EventLoop::builder()
            .poll_manager(one_poller())
            .on_request(move |_, conn| {
                let _ = result_tx.lock().unwrap().send(None);
                // Waits for bytes the client never sends.
                let result = conn.reader().next(100).map(|_| ());
                let kind = result.as_ref().err().map(|e| e.kind());
                let _ = result_tx.lock().unwrap().send(kind);
                result
            })
            .build()
            .unwrap(),
    );
    let mut client = server.connect();
    client.write_all(b"x").unwrap();
    assert_eq!(
        result_rx.recv_timeout(LIMIT).unwrap(),
        None,
        "handler entered"
    );
    let _ = server
        .server
        .shutdown(Instant::now() + Duration::from_millis(300));
    let kind = result_rx.recv_timeout(LIMIT).unwrap();
    assert!(
        kind.is_some(),
        "the suspended read failed once the server closed it"
    );
    server.stop().unwrap();
    let mut buf = [0u8; 1];
    match client.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("expected the close, got {other:?}"),
    }
}

#[test]
fn a_handler_pool_still_serves_handlers_that_block_their_thread() {
    let (release_tx, release_rx) = channel::<()>();
    let release_rx = Arc::new(Mutex::new(release_rx));
    let server = TestServer::start(
        EventLoop::builder()
            .poll_manager(one_poller())
            .handler_pool(netpoll::HandlerPool::new(4))
            .on_request(move |ctx, conn| {
                assert!(!netpoll::rt::is_coroutine());
                if &conn.reader().peek(1)?[..] == b"w" {
                    // Blocks this pool thread, not the poller.
                    let _ = release_rx.lock().unwrap().recv_timeout(LIMIT);
                }
                echo(ctx, conn)
            })
            .build()
            .unwrap(),
    );
    let mut blocked = server.connect();
    blocked.write_all(b"w").unwrap();
    let mut other = server.connect();
    round_trip(&mut other, b"served meanwhile");
    release_tx.send(()).unwrap();
    let mut got = [0u8; 1];
    blocked.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"w");
}
