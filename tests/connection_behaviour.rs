//! How a reactor-face connection behaves: waiting reads, timeouts, close, callbacks, caps.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{echo, pattern, TestServer, LIMIT};
use netpoll::{Connection, EventLoop};

/// A sender the `Fn` callbacks can share.
fn shared<T: Send + 'static>(tx: Sender<T>) -> Arc<Mutex<Sender<T>>> {
    Arc::new(Mutex::new(tx))
}

#[test]
fn next_waits_for_the_second_half_of_a_split_packet() {
    let (entered_tx, entered_rx) = channel();
    let entered = shared(entered_tx);
    let server = TestServer::start(
        EventLoop::builder()
            .on_request(move |_, conn| {
                let _ = entered.lock().unwrap().send(());
                let frame = conn.reader().next(8)?;
                let mut writer = conn.writer();
                writer.write_binary(&frame)?;
                writer.flush()
            })
            .build()
            .unwrap(),
    );
    let mut client = server.connect();
    client.write_all(b"1234").unwrap();
    entered_rx.recv_timeout(LIMIT).unwrap();
    client.write_all(b"5678").unwrap();
    let mut got = [0u8; 8];
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"12345678");
    assert!(
        entered_rx.try_recv().is_err(),
        "one call served the whole frame"
    );
}

#[test]
fn read_timeout_fires() {
    let (tx, rx) = channel();
    let tx = shared(tx);
    let server = TestServer::start(
        EventLoop::builder()
            .read_timeout(Duration::from_millis(100))
            .on_request(move |_, conn| {
                let started = Instant::now();
                let result = conn.reader().next(100);
                let _ = tx
                    .lock()
                    .unwrap()
                    .send((result.map(|_| ()), started.elapsed()));
                Ok(())
            })
            .build()
            .unwrap(),
    );
    let mut client = server.connect();
    client.write_all(b"x").unwrap();
    let (result, waited) = rx.recv_timeout(LIMIT).unwrap();
    assert_eq!(result.unwrap_err().kind(), ErrorKind::TimedOut);
    assert!(
        waited >= Duration::from_millis(100),
        "fired early: {waited:?}"
    );
}

#[test]
fn write_timeout_fires_against_a_peer_that_never_reads() {
    let (tx, rx) = channel();
    let tx = shared(tx);
    let server = TestServer::start(
        EventLoop::builder()
            .write_timeout(Duration::from_millis(200))
            .on_connect(move |_, conn| {
                // Far more than the socket buffers hold; the client never reads.
                let chunk = vec![7u8; 1 << 20];
                let mut result = Ok(());
                for _ in 0..64 {
                    let mut writer = conn.writer();
                    result = writer.write_binary(&chunk).and_then(|_| writer.flush());
                    if result.is_err() {
                        break;
                    }
                }
                let _ = tx.lock().unwrap().send(result);
            })
            .build()
            .unwrap(),
    );
    let _client = server.connect();
    let result = rx.recv_timeout(LIMIT).unwrap();
    assert_eq!(result.unwrap_err().kind(), ErrorKind::TimedOut);
}

#[test]
fn close_from_another_thread_unblocks_a_waiting_next() {
    let (conn_tx, conn_rx) = channel::<Connection>();
    let (result_tx, result_rx) = channel();
    let conn_tx = shared(conn_tx);
    let result_tx = shared(result_tx);
    let server = TestServer::start(
        EventLoop::builder()
            .on_request(move |_, conn| {
                let _ = conn_tx.lock().unwrap().send(conn.clone());
                let result = conn.reader().next(10);
                let _ = result_tx.lock().unwrap().send(result.map(|_| ()));
                Ok(())
            })
            .build()
            .unwrap(),
    );
    let mut client = server.connect();
    client.write_all(b"1").unwrap();
    let conn = conn_rx.recv_timeout(LIMIT).unwrap();
    conn.close();
    let result = result_rx.recv_timeout(LIMIT).unwrap();
    assert_eq!(result.unwrap_err().kind(), ErrorKind::NotConnected);
    assert!(!conn.is_active());
    // The peer sees the close.
    let mut buf = [0u8; 1];
    assert_eq!(client.read(&mut buf).unwrap(), 0);
}

#[test]
fn a_handler_leaving_a_partial_frame_is_not_called_in_a_loop() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = channel();
    let tx = shared(tx);
    let counted = calls.clone();
    let server = TestServer::start(
        EventLoop::builder()
            .on_request(move |_, conn| {
                counted.fetch_add(1, Ordering::SeqCst);
                let mut reader = conn.reader();
                if reader.len() < 8 {
                    let _ = tx.lock().unwrap().send(reader.len());
                    return Ok(()); // partial frame: wait for the rest
                }
                let frame = reader.next(8)?;
                drop(reader);
                let mut writer = conn.writer();
                writer.write_binary(&frame)?;
                writer.flush()
            })
            .build()
            .unwrap(),
    );
    let mut client = server.connect();
    client.write_all(b"abc").unwrap();
    assert_eq!(rx.recv_timeout(LIMIT).unwrap(), 3);
    // A spinning server would call the handler over and over while we round-trip here.
    let mut other = server.connect();
    other.write_all(b"01234567").unwrap();
    let mut got = [0u8; 8];
    other.read_exact(&mut got).unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the partial frame was retried without input"
    );
    client.write_all(b"defgh").unwrap();
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"abcdefgh");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[test]
fn pipelined_frames_in_one_read_are_all_handled() {
    // A handler that takes one frame per call must be called again while input makes progress.
    let server = TestServer::start(
        EventLoop::builder()
            .on_request(|_, conn| {
                let frame = conn.reader().next(4)?;
                let mut writer = conn.writer();
                writer.write_binary(&frame)?;
                writer.flush()
            })
            .build()
            .unwrap(),
    );
    let mut client = server.connect();
    let data = pattern(3, 4 * 100);
    client.write_all(&data).unwrap();
    let mut got = vec![0u8; data.len()];
    client.read_exact(&mut got).unwrap();
    assert_eq!(got, data);
}

#[test]
fn a_panicking_handler_closes_its_connection_and_the_server_keeps_serving() {
    let server = TestServer::start(
        EventLoop::builder()
            .on_request(|ctx, conn| {
                if conn.reader().peek(4)?.as_ref() == b"boom" {
                    panic!("handler bug (expected by this test)");
                }
                echo(ctx, conn)
            })
            .build()
            .unwrap(),
    );
    let mut bad = server.connect();
    bad.write_all(b"boom").unwrap();
    let mut buf = [0u8; 4];
    assert_eq!(
        bad.read(&mut buf).unwrap(),
        0,
        "the panicking connection is closed"
    );
    let mut good = server.connect();
    good.write_all(b"fine").unwrap();
    good.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"fine");
}

/// A connection's callback log; the close callback's entry wakes `wait_closed`.
#[derive(Default)]
struct Entries {
    list: Mutex<Vec<&'static str>>,
    changed: std::sync::Condvar,
}

impl Entries {
    fn push(&self, entry: &'static str) {
        self.list.lock().unwrap().push(entry);
        self.changed.notify_all();
    }
}

type Log = Arc<Entries>;

fn logging_server(log_tx: Sender<Log>, close_on_request: bool) -> TestServer<Log> {
    let log_tx = shared(log_tx);
    TestServer::start(
        EventLoop::builder()
            .on_prepare(move |conn: &Connection| {
                let log: Log = Arc::default();
                log.push("prepare");
                let closing = log.clone();
                conn.add_close_callback(move |_| closing.push("close"));
                let _ = log_tx.lock().unwrap().send(log.clone());
                log
            })
            .on_connect(|log, _| log.push("connect"))
            .on_request(move |log, conn| {
                log.push("request");
                let mut reader = conn.reader();
                let n = reader.len();
                reader.skip(n)?;
                if close_on_request {
                    conn.close();
                }
                Ok(())
            })
            .on_disconnect(|log, _| log.push("disconnect"))
            .build()
            .unwrap(),
    )
}

/// Waits (bounded) until the connection's log has its close entry.
fn wait_closed(log: &Log) -> Vec<&'static str> {
    let list = log.list.lock().unwrap();
    let (list, _) = log
        .changed
        .wait_timeout_while(list, LIMIT, |l| !l.contains(&"close"))
        .unwrap();
    list.clone()
}

#[test]
fn callbacks_run_in_order_and_once() {
    let (tx, rx) = channel();
    let server = logging_server(tx, false);
    let mut client = server.connect();
    let log = rx.recv_timeout(LIMIT).unwrap();
    client.write_all(b"hello").unwrap();
    drop(client);
    let entries = wait_closed(&log);
    assert_eq!(entries[..2], ["prepare", "connect"]);
    let requests = entries.iter().filter(|e| **e == "request").count();
    assert!(requests >= 1, "{entries:?}");
    assert_eq!(
        entries.iter().filter(|e| **e == "disconnect").count(),
        1,
        "{entries:?}"
    );
    assert_eq!(
        entries.iter().filter(|e| **e == "close").count(),
        1,
        "{entries:?}"
    );
    assert_eq!(entries.last(), Some(&"close"), "{entries:?}");
    let disconnect = entries.iter().position(|e| *e == "disconnect").unwrap();
    assert!(disconnect > 1, "{entries:?}");
}

#[test]
fn close_racing_the_peer_hangup_runs_each_callback_at_most_once() {
    let (tx, rx) = channel();
    let server = logging_server(tx, true);
    for _ in 0..100 {
        let mut client = server.connect();
        let log = rx.recv_timeout(LIMIT).unwrap();
        // The server closes when it sees data; we hang up at the same moment.
        client.write_all(b"bye").unwrap();
        drop(client);
        let entries = wait_closed(&log);
        assert_eq!(
            entries.iter().filter(|e| **e == "close").count(),
            1,
            "{entries:?}"
        );
        assert!(
            entries.iter().filter(|e| **e == "disconnect").count() <= 1,
            "{entries:?}"
        );
        assert_eq!(
            entries.iter().filter(|e| **e == "connect").count(),
            1,
            "{entries:?}"
        );
    }
    let deadline = Instant::now() + LIMIT;
    while server.server.connections() > 0 && Instant::now() < deadline {
        std::thread::yield_now();
    }
    assert_eq!(
        server.server.connections(),
        0,
        "closed connections are forgotten"
    );
}

#[test]
fn idle_timeout_closes_an_idle_connection_and_keeps_an_active_one() {
    let server = TestServer::start(
        EventLoop::builder()
            .idle_timeout(Duration::from_millis(300))
            .on_request(echo)
            .build()
            .unwrap(),
    );
    let mut idle = server.connect();
    let mut active = server.connect();
    let started = Instant::now();
    let mut buf = [0u8; 1];
    // Keep one connection busy for well past the idle timeout, pacing pings at 50 ms.
    while started.elapsed() < Duration::from_millis(900) {
        active.write_all(b"p").unwrap();
        active.read_exact(&mut buf).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    idle.set_read_timeout(Some(LIMIT)).unwrap();
    assert_eq!(
        idle.read(&mut buf).unwrap(),
        0,
        "the idle connection was closed"
    );
    active.write_all(b"q").unwrap();
    active.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"q", "the active connection is still served");
}

#[test]
fn input_cap_bounds_server_memory_while_the_handler_does_not_read() {
    const CAP: usize = 64 * 1024;
    let (tx, rx) = channel::<(Connection, usize)>();
    let tx = shared(tx);
    let server = TestServer::start(
        EventLoop::builder()
            .input_cap(CAP)
            .on_request(move |_, conn| {
                // Never reads; reports how much is buffered each time input arrives.
                let _ = tx.lock().unwrap().send((conn.clone(), conn.reader().len()));
                Ok(())
            })
            .build()
            .unwrap(),
    );
    let mut client = server.connect();
    client.set_nonblocking(true).unwrap();
    let flood = std::thread::spawn(move || {
        let chunk = vec![1u8; 64 * 1024];
        let (mut sent, mut stalls) = (0usize, 0);
        let deadline = Instant::now() + LIMIT;
        // Until the kernel's buffers are full as well, which happens once the server stops.
        while stalls < 1_000 && sent < (256 << 20) && Instant::now() < deadline {
            match client.write(&chunk) {
                Ok(n) => (sent, stalls) = (sent + n, 0),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    stalls += 1;
                    std::thread::yield_now();
                }
                Err(e) => panic!("{e}"),
            }
        }
        (client, sent)
    });
    let conn = loop {
        let (conn, buffered) = rx
            .recv_timeout(LIMIT)
            .expect("server never reached its cap");
        if buffered >= CAP {
            break conn;
        }
    };
    let (_client, sent) = flood.join().unwrap();
    let buffered = conn.reader().len();
    assert!(
        sent > 4 * CAP,
        "the flood should outgrow the cap: sent {sent}"
    );
    assert!(
        buffered <= CAP + 64 * 1024,
        "server buffered {buffered} bytes of {sent} sent"
    );
}

#[test]
fn a_frame_larger_than_the_input_cap_still_arrives() {
    const CAP: usize = 16 * 1024;
    let server = TestServer::start(
        EventLoop::builder()
            .input_cap(CAP)
            .on_request(|_, conn| {
                let frame = conn.reader().next(10 * CAP)?;
                let mut writer = conn.writer();
                writer.write_binary(&frame[..16])?;
                writer.flush()
            })
            .build()
            .unwrap(),
    );
    let mut client = server.connect();
    let data = pattern(11, 10 * CAP);
    client.write_all(&data).unwrap();
    let mut got = [0u8; 16];
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got[..], &data[..16]);
}

#[test]
fn graceful_shutdown_finishes_the_request_in_flight_and_closes_idle_ones() {
    let (entered_tx, entered_rx) = channel();
    let (release_tx, release_rx) = channel::<()>();
    let (connected_tx, connected_rx) = channel();
    let entered_tx = shared(entered_tx);
    let connected_tx = shared(connected_tx);
    let release_rx = Arc::new(Mutex::new(release_rx));
    let mut server = TestServer::start(
        EventLoop::builder()
            .on_connect(move |_, _| {
                let _ = connected_tx.lock().unwrap().send(());
            })
            .on_request(move |ctx, conn| {
                let _ = entered_tx.lock().unwrap().send(());
                // Waits off the poller: a coroutine handler must not block its thread.
                let release_rx = release_rx.clone();
                let _ = netpoll::blocking(move || release_rx.lock().unwrap().recv_timeout(LIMIT));
                echo(ctx, conn)
            })
            .build()
            .unwrap(),
    );
    let mut busy = server.connect();
    let mut idle = server.connect();
    busy.write_all(b"in flight").unwrap();
    entered_rx.recv_timeout(LIMIT).unwrap();
    // Both accepted: one still in the listener's backlog would be reset when it closes.
    for _ in 0..2 {
        connected_rx.recv_timeout(LIMIT).unwrap();
    }
    let stopper = server.server.clone();
    let shutdown = std::thread::spawn(move || stopper.shutdown(Instant::now() + LIMIT));
    // The idle connection is closed at once, while the request is still running.
    let mut buf = [0u8; 9];
    assert_eq!(idle.read(&mut buf).unwrap(), 0);
    release_tx.send(()).unwrap();
    busy.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"in flight");
    assert_eq!(
        busy.read(&mut buf).unwrap(),
        0,
        "closed after its handler finished"
    );
    shutdown.join().unwrap().unwrap();
    server.stop().unwrap();
    // New connections are refused once the listener is gone.
    assert!(std::net::TcpStream::connect(server.addr).is_err());
}

#[test]
fn shutdown_closes_what_is_still_running_at_the_deadline() {
    let (entered_tx, entered_rx) = channel();
    let entered_tx = shared(entered_tx);
    let server = TestServer::start(
        EventLoop::builder()
            .on_request(move |_, conn| {
                let _ = entered_tx.lock().unwrap().send(());
                // Waits for input that never comes: only the forced close ends it.
                let _ = conn.reader().next(1 << 20);
                Ok(())
            })
            .build()
            .unwrap(),
    );
    let mut stuck = server.connect();
    stuck.write_all(b"x").unwrap();
    entered_rx.recv_timeout(LIMIT).unwrap();
    let err = server
        .server
        .shutdown(Instant::now() + Duration::from_millis(100))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut);
    let mut buf = [0u8; 1];
    assert_eq!(stuck.read(&mut buf).unwrap(), 0);
}

#[test]
fn writes_past_the_output_cap_wait_then_fail_against_a_peer_that_never_reads() {
    const CAP: usize = 256 * 1024;
    let (tx, rx) = channel();
    let tx = shared(tx);
    let server = TestServer::start(
        EventLoop::builder()
            .output_cap(CAP)
            .write_timeout(Duration::from_millis(200))
            .on_connect(move |_, conn| {
                // Writes without flushing: the cap alone must stop the growth.
                let chunk = vec![5u8; 64 * 1024];
                let mut result = Ok(());
                let mut written = 0usize;
                while result.is_ok() && written < (256 << 20) {
                    result = conn.writer().write_binary(&chunk);
                    written += chunk.len();
                }
                let queued = conn.writer().malloc_len();
                let _ = tx.lock().unwrap().send((result, written, queued));
            })
            .build()
            .unwrap(),
    );
    let _client = server.connect();
    let (result, written, queued) = rx.recv_timeout(LIMIT).unwrap();
    assert_eq!(result.unwrap_err().kind(), ErrorKind::TimedOut);
    assert!(
        written < 64 << 20,
        "wrote {written} bytes before the cap held"
    );
    assert!(queued <= CAP, "{queued} bytes queued past the cap");
}

/// `set_idle_timeout` called over and over (say once per request) keeps one idle timer per
/// connection: each call used to schedule a fresh poller timer and leave the old ones pending
/// until they fired, 10,000 calls, 10,000 timers for a minute.
#[test]
fn resetting_the_idle_timeout_keeps_one_timer() {
    let manager = Arc::new(netpoll::poll::PollManager::new(1).unwrap());
    let (conn_tx, conn_rx) = channel();
    let conn_tx = shared(conn_tx);
    let server = TestServer::start(
        EventLoop::builder()
            .poll_manager(manager.clone())
            .on_connect(move |_, conn| {
                let _ = conn_tx.lock().unwrap().send(conn.clone());
            })
            .on_request(echo)
            .build()
            .unwrap(),
    );
    let timers = || -> usize { manager.pollers().iter().map(|p| p.stats().timers).sum() };
    let mut client = server.connect();
    let conn: Connection = conn_rx.recv_timeout(LIMIT).unwrap();
    let before = timers();
    for _ in 0..10_000 {
        conn.set_idle_timeout(Some(Duration::from_secs(60)));
    }
    let after = timers();
    assert!(
        after <= before + 1,
        "{} timers pending after resetting the idle timeout 10,000 times ({before} before)",
        after
    );
    // The timeout still works: a short one closes the quiet connection.
    conn.set_idle_timeout(Some(Duration::from_millis(50)));
    client.set_read_timeout(Some(LIMIT)).unwrap();
    let mut byte = [0u8; 1];
    assert_eq!(
        client.read(&mut byte).unwrap(),
        0,
        "not closed by the idle timeout"
    );
    assert_eq!(conn.close_reason(), Some(ErrorKind::TimedOut));
}
