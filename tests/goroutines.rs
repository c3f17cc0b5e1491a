//! Goroutines (`netpoll::go`) on the pollers: spawn/join, panics, yield ordering, sleep,
//! `blocking`, and the Go-net face inside coroutines (echo, deadlines, close from a thread and
//! from a coroutine, accept/dial timeouts, cancellation). Real sockets on loopback; every wait
//! is bounded.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use netpoll::net::{self, CancelToken, Dialer, ListenConfig, TcpConn};
use netpoll::poll::PollManager;
use netpoll::{go, go_on, JoinHandle};

const BOUND: Duration = Duration::from_secs(20);

/// Joins `handle` from a helper thread, failing the test if it takes longer than `BOUND`.
fn join_within<T: Send + 'static>(handle: JoinHandle<T>) -> std::thread::Result<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(handle.join());
    });
    rx.recv_timeout(BOUND)
        .expect("coroutine did not finish in time")
}

fn manager(n: usize) -> Arc<PollManager> {
    Arc::new(PollManager::new(n).unwrap())
}

#[test]
fn go_and_join_from_a_thread() {
    let handle = go(|| {
        assert!(netpoll::rt::is_coroutine());
        40 + 2
    });
    assert_eq!(join_within(handle).unwrap(), 42);
    assert!(!netpoll::rt::is_coroutine());
}

#[test]
fn join_from_a_coroutine_suspends_it() {
    let m = manager(2);
    let pollers = m.pollers();
    let (p0, p1) = (pollers[0].clone(), pollers[1].clone());
    let outer = go_on(&p0, move || {
        // Same poller: if join blocked the thread, the inner one could never run.
        let same = go_on(&netpoll::rt::current_poller().unwrap(), || 1);
        let other = go_on(&p1, || 2);
        same.join().unwrap() + other.join().unwrap()
    });
    assert_eq!(join_within(outer).unwrap(), 3);
}

#[test]
fn a_panic_reaches_join() {
    let handle = go(|| -> u32 { panic!("boom (expected by this test)") });
    let payload = join_within(handle).unwrap_err();
    assert_eq!(
        payload.downcast_ref::<&str>(),
        Some(&"boom (expected by this test)")
    );
    // The poller survives it.
    assert_eq!(join_within(go(|| 7)).unwrap(), 7);
}

#[test]
fn yield_now_lets_the_others_run_in_order() {
    let m = manager(1);
    let poller = m.pick();
    let log = Arc::new(Mutex::new(Vec::new()));
    let outer = {
        let log = log.clone();
        go_on(&poller, move || {
            let here = netpoll::rt::current_poller().unwrap();
            let spawn = |name: &'static str| {
                let log = log.clone();
                go_on(&here, move || {
                    for round in 0..3 {
                        log.lock().unwrap().push(format!("{name}{round}"));
                        netpoll::yield_now();
                    }
                })
            };
            let (a, b) = (spawn("a"), spawn("b"));
            a.join().unwrap();
            b.join().unwrap();
        })
    };
    join_within(outer).unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        ["a0", "b0", "a1", "b1", "a2", "b2"].map(String::from)
    );
}

#[test]
fn sleep_uses_poller_timers_and_does_not_block_the_poller() {
    let m = manager(1);
    let poller = m.pick();
    let started = Instant::now();
    let sleeper = go_on(&poller, || {
        let t = Instant::now();
        netpoll::sleep(Duration::from_millis(150));
        t.elapsed()
    });
    // A coroutine on the same poller finishes while the sleeper sleeps.
    let quick = go_on(&poller, Instant::now);
    let quick_done = join_within(quick).unwrap();
    assert!(!sleeper.is_finished());
    let slept = join_within(sleeper).unwrap();
    assert!(slept >= Duration::from_millis(150), "{slept:?}");
    assert!(quick_done.duration_since(started) < Duration::from_millis(150));
}

/// An echo server coroutine for one connection: reads and writes back until end of stream.
fn echo(conn: TcpConn) -> std::io::Result<u64> {
    let mut total = 0;
    let mut buf = vec![0u8; 4096];
    loop {
        let n = (&conn).read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        (&conn).write_all(&buf[..n])?;
        total += n as u64;
    }
}

#[test]
fn blocking_does_not_stall_the_poller() {
    let m = manager(1);
    let poller = m.pick();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let blocked = go_on(&poller, move || {
        netpoll::blocking(move || release_rx.lock().unwrap().recv_timeout(BOUND).is_ok())
    });
    let listener = ListenConfig::new()
        .poll_manager(m.clone())
        .listen_tcp("tcp", "127.0.0.1:0")
        .unwrap();
    let addr = listener.local_addr();
    let server = go_on(&poller, move || echo(listener.accept()?.0));
    // From a plain thread: the server coroutine answers while the other one is in `blocking`.
    let client = net::dial_tcp("tcp", addr).unwrap();
    client.set_deadline(Some(Instant::now() + BOUND)).unwrap();
    for round in 0..10u8 {
        (&client).write_all(&[round; 100]).unwrap();
        let mut back = [0u8; 100];
        (&client).read_exact(&mut back).unwrap();
        assert_eq!(back, [round; 100]);
    }
    assert!(!blocked.is_finished());
    release_tx.send(()).unwrap();
    assert!(join_within(blocked).unwrap());
    client.close_write().unwrap();
    assert_eq!(join_within(server).unwrap().unwrap(), 1000);
}

#[test]
fn a_panic_in_blocking_resumes_in_the_coroutine() {
    let handle = go(|| netpoll::blocking(|| -> u8 { panic!("pool job (expected by this test)") }));
    assert!(join_within(handle).is_err());
}

#[test]
fn echo_between_coroutines_with_every_byte_checked() {
    let listener = net::listen_tcp("tcp", "127.0.0.1:0").unwrap();
    let addr = listener.local_addr();
    let server = go(move || echo(listener.accept()?.0));
    let client = go(move || -> std::io::Result<()> {
        let conn = Dialer::new().timeout(BOUND).dial_tcp("tcp", addr)?;
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let writer = {
            // Writes and reads in two coroutines, so a full socket cannot deadlock them.
            let conn = Arc::new(conn);
            let w = conn.clone();
            let data = data.clone();
            let h = go(move || {
                (&*w).write_all(&data)?;
                w.close_write()
            });
            (conn, h)
        };
        let (conn, h) = writer;
        let mut back = vec![0u8; data.len()];
        (&*conn).read_exact(&mut back)?;
        h.join().unwrap()?;
        assert!(back == data, "echo differs");
        Ok(())
    });
    join_within(client).unwrap().unwrap();
    assert_eq!(join_within(server).unwrap().unwrap(), 200_000);
}

#[test]
fn a_read_deadline_fires_inside_a_coroutine() {
    let listener = net::listen_tcp("tcp", "127.0.0.1:0").unwrap();
    let addr = listener.local_addr();
    let _peer = std::net::TcpStream::connect(addr).unwrap();
    let handle = go(move || {
        let (conn, _) = listener.accept().unwrap();
        let start = Instant::now();
        conn.set_read_deadline(Some(start + Duration::from_millis(100)))
            .unwrap();
        let err = (&conn).read(&mut [0u8; 16]).unwrap_err();
        (net::is_timeout(&err), start.elapsed())
    });
    let (timeout, elapsed) = join_within(handle).unwrap();
    assert!(timeout);
    assert!(elapsed >= Duration::from_millis(100), "{elapsed:?}");
}

/// A connected pair: the netpoll side accepted inside a coroutine on `poller`'s manager, the
/// peer a std stream.
fn pair(m: &Arc<PollManager>) -> (Arc<TcpConn>, std::net::TcpStream) {
    let listener = ListenConfig::new()
        .poll_manager(m.clone())
        .listen_tcp("tcp", "127.0.0.1:0")
        .unwrap();
    let peer = std::net::TcpStream::connect(listener.local_addr()).unwrap();
    let (conn, _) = listener.accept().unwrap();
    (Arc::new(conn), peer)
}

#[test]
fn close_from_a_foreign_thread_wakes_a_coroutine_in_read() {
    let m = manager(1);
    let (conn, _peer) = pair(&m);
    let reading = Arc::new(AtomicBool::new(false));
    let reader = {
        let (conn, reading) = (conn.clone(), reading.clone());
        go_on(&m.pick(), move || {
            reading.store(true, Ordering::SeqCst);
            (&*conn).read(&mut [0u8; 16])
        })
    };
    let deadline = Instant::now() + BOUND;
    while !reading.load(Ordering::SeqCst) && Instant::now() < deadline {
        std::thread::yield_now();
    }
    // Racing the read's wait either way: before it, the read sees the closed descriptor; after,
    // the close wakes it.
    conn.close_now().unwrap();
    let err = join_within(reader).unwrap().unwrap_err();
    assert!(net::is_closed(&err), "{err}");
}

#[test]
fn close_from_another_coroutine_wakes_a_coroutine_in_read() {
    let m = manager(1);
    let poller = m.pick();
    let (conn, _peer) = pair(&m);
    let reading = Arc::new(AtomicBool::new(false));
    let reader = {
        let (conn, reading) = (conn.clone(), reading.clone());
        go_on(&poller, move || {
            reading.store(true, Ordering::SeqCst);
            (&*conn).read(&mut [0u8; 16])
        })
    };
    let closer = go_on(&poller, move || {
        while !reading.load(Ordering::SeqCst) {
            netpoll::yield_now();
        }
        // The reader is suspended in read holding the socket's read guard: close must let it
        // run (not block the poller) to finish.
        netpoll::yield_now();
        conn.close_now()
    });
    join_within(closer).unwrap().unwrap();
    let err = join_within(reader).unwrap().unwrap_err();
    assert!(net::is_closed(&err), "{err}");
}

#[test]
fn an_accept_deadline_fires_inside_a_coroutine() {
    let handle = go(|| {
        let listener = net::listen_tcp("tcp", "127.0.0.1:0").unwrap();
        let start = Instant::now();
        listener
            .set_deadline(Some(start + Duration::from_millis(100)))
            .unwrap();
        let err = listener.accept().unwrap_err();
        (net::is_timeout(&err), start.elapsed())
    });
    let (timeout, elapsed) = join_within(handle).unwrap();
    assert!(timeout);
    assert!(elapsed >= Duration::from_millis(100));
}

/// A listener whose accept queue is full, so further connects hang in SYN_SENT (the kernel
/// drops their SYNs): a target for dial timeouts and cancellation. Keep the fillers alive.
fn full_listener() -> (
    std::net::SocketAddr,
    Vec<std::net::TcpStream>,
    socket2::Socket,
) {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => fillers.push(s),
            Err(_) => break,
        }
    }
    (addr, fillers, socket)
}

#[test]
fn a_dial_timeout_fires_inside_a_coroutine() {
    let (addr, _fillers, _listener) = full_listener();
    let handle = go(move || {
        let start = Instant::now();
        let err = Dialer::new()
            .timeout(Duration::from_millis(200))
            .dial_tcp("tcp", addr)
            .unwrap_err();
        (net::is_timeout(&err), start.elapsed())
    });
    let (timeout, elapsed) = join_within(handle).unwrap();
    assert!(timeout);
    assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
}

#[test]
fn a_dial_inside_a_coroutine_is_cancelled_from_a_thread() {
    let (addr, _fillers, _listener) = full_listener();
    let token = CancelToken::new();
    let dialing = Arc::new(AtomicBool::new(false));
    let handle = {
        let (token, dialing) = (token.clone(), dialing.clone());
        go(move || {
            dialing.store(true, Ordering::SeqCst);
            Dialer::new()
                .timeout(BOUND)
                .cancel_token(token)
                .dial_tcp("tcp", addr)
                .unwrap_err()
        })
    };
    let deadline = Instant::now() + BOUND;
    while !dialing.load(Ordering::SeqCst) && Instant::now() < deadline {
        std::thread::yield_now();
    }
    token.cancel();
    let err = join_within(handle).unwrap();
    assert!(net::is_canceled(&err), "{err}");
}

#[test]
fn a_dial_by_name_resolves_through_blocking_and_stays_on_the_poller() {
    let m = manager(2);
    let listener = net::listen_tcp("tcp", "127.0.0.1:0").unwrap();
    let port = listener.local_addr().port();
    let poller = m.pollers()[1].clone();
    let id = poller.id();
    let before = poller.registrations();
    let handle = go_on(&poller, move || {
        let conn = Dialer::new()
            .timeout(BOUND)
            .dial_tcp("tcp4", ("localhost", port))
            .unwrap();
        let here = netpoll::rt::current_poller().unwrap();
        (here.id(), here.registrations(), conn)
    });
    let (ran_on, registered, _conn) = join_within(handle).unwrap();
    assert_eq!(ran_on, id);
    assert_eq!(
        registered,
        before + 1,
        "the dialed fd registers on the coroutine's poller"
    );
}

#[test]
fn coroutines_from_many_threads() {
    let handles: Vec<_> = (0..8)
        .map(|t| {
            std::thread::spawn(move || {
                let hs: Vec<_> = (0..200).map(|i| go(move || t * 1000 + i)).collect();
                hs.into_iter().map(|h| h.join().unwrap()).sum::<i32>()
            })
        })
        .collect();
    let total: i32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let expected: i32 = (0..8)
        .map(|t| (0..200).map(|i| t * 1000 + i).sum::<i32>())
        .sum();
    assert_eq!(total, expected);
}
