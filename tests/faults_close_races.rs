//! Close races.
//!
//! Go-net face: `close_now` from several threads at once, racing a reader, a writer and a
//! deadline setter on the same `TcpConn` (run on threads, as coroutines, or as async tasks).
//! No panic, no hang; exactly one close succeeds, every other call ends with Go's closed
//! error; the fd count returns to its baseline.
//!
//! Reactor face (coroutine, pool and inline handlers): `Connection::close` from several
//! foreign threads at once, racing the handler's waiting reads and flushes, a foreign writer,
//! and a thread moving the read, write and idle timeouts (some short enough to fire). No
//! panic, no hang; the close callbacks run exactly once per connection (so the handler
//! returned), `on_disconnect` at most once, the foreign writer ends with an error, the peer
//! sees the end; the fd count returns to its baseline.

mod common;

use std::future::Future;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use common::faults::{self, wait_fds, Driver};
use common::LIMIT;
use netpoll::net::{self, TcpConn};

const ROUNDS: usize = 30;
const CLOSERS: usize = 4;

/// How a racing call ended: `None` to call again, else the racer's verdict.
type Verdict = Option<Result<(), String>>;

fn read_verdict(result: io::Result<usize>) -> Verdict {
    match result {
        Ok(0) => Some(Err("reader: EOF instead of the closed error".into())),
        Ok(_) => None,
        Err(e) if net::is_timeout(&e) => None,
        Err(e) if net::is_closed(&e) => Some(Ok(())),
        Err(e) => Some(Err(format!("reader: {e}"))),
    }
}

fn write_verdict(result: io::Result<usize>) -> Verdict {
    match result {
        Ok(_) => None,
        Err(e) if net::is_timeout(&e) => None,
        Err(e) if net::is_closed(&e) => Some(Ok(())),
        Err(e) => Some(Err(format!("writer: {e}"))),
    }
}

/// Sets the `i`th deadline: past, near and far in turn, flipping the pending calls between
/// waiting and timing out.
fn deadline_verdict(conn: &TcpConn, i: u32) -> Verdict {
    let at = match i % 3 {
        0 => Instant::now() - Duration::from_millis(1),
        1 => Instant::now() + Duration::from_millis(1),
        _ => Instant::now() + LIMIT,
    };
    match conn.set_deadline(Some(at)) {
        Ok(()) => None,
        Err(e) if net::is_closed(&e) => Some(Ok(())),
        Err(e) => Some(Err(format!("deadline: {e}"))),
    }
}

/// Pending once, so the executor runs something else.
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if std::mem::replace(&mut self.0, true) {
            return Poll::Ready(());
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Starts a reader, a writer and a deadline setter on `conn` (threads, coroutines or tasks),
/// each until its call fails with the closed error (timeouts from the deadlines are
/// retried); each sends its verdict on `tx`.
fn start_racers(
    driver: Driver,
    conn: &Arc<TcpConn>,
    stop: &Arc<AtomicBool>,
    tx: &Sender<Result<(), String>>,
) {
    if driver == Driver::Tasks {
        let (c, t) = (conn.clone(), tx.clone());
        let reader = async move {
            use futures::io::AsyncReadExt;
            let mut buf = [0u8; 4096];
            loop {
                if let Some(v) = read_verdict(AsyncReadExt::read(&mut &*c, &mut buf).await) {
                    let _ = t.send(v);
                    return;
                }
            }
        };
        let (c, t) = (conn.clone(), tx.clone());
        let writer = async move {
            use futures::io::AsyncWriteExt;
            let chunk = vec![7u8; 16 * 1024];
            loop {
                if let Some(v) = write_verdict(AsyncWriteExt::write(&mut &*c, &chunk).await) {
                    let _ = t.send(v);
                    return;
                }
            }
        };
        let (c, t, s) = (conn.clone(), tx.clone(), stop.clone());
        let deadlines = async move {
            let mut i = 0u32;
            while !s.load(Ordering::SeqCst) {
                i += 1;
                if let Some(v) = deadline_verdict(&c, i) {
                    let _ = t.send(v);
                    return;
                }
                YieldNow(false).await;
            }
            let _ = t.send(Ok(()));
        };
        drop(netpoll::spawn(reader));
        drop(netpoll::spawn(writer));
        drop(netpoll::spawn(deadlines));
        return;
    }
    let run = |f: Box<dyn FnOnce() + Send>| match driver {
        Driver::Coroutines => drop(netpoll::go(f)),
        _ => drop(std::thread::spawn(f)),
    };
    let (c, t) = (conn.clone(), tx.clone());
    run(Box::new(move || {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(v) = read_verdict((&*c).read(&mut buf)) {
                let _ = t.send(v);
                return;
            }
        }
    }));
    let (c, t) = (conn.clone(), tx.clone());
    run(Box::new(move || {
        let chunk = vec![7u8; 16 * 1024];
        loop {
            if let Some(v) = write_verdict((&*c).write(&chunk)) {
                let _ = t.send(v);
                return;
            }
        }
    }));
    let (c, t, s) = (conn.clone(), tx.clone(), stop.clone());
    run(Box::new(move || {
        let mut i = 0u32;
        while !s.load(Ordering::SeqCst) {
            i += 1;
            if let Some(v) = deadline_verdict(&c, i) {
                let _ = t.send(v);
                return;
            }
            if driver == Driver::Coroutines {
                netpoll::yield_now();
            } else {
                std::thread::yield_now();
            }
        }
        let _ = t.send(Ok(()));
    }));
}

/// Races a reader, a writer and a deadline setter on `conn` against CLOSERS concurrent
/// `close_now` calls. Returns a label per failure.
fn race(driver: Driver, conn: Arc<TcpConn>) -> Vec<String> {
    let (tx, rx) = channel::<Result<(), String>>();
    let stop = Arc::new(AtomicBool::new(false));
    start_racers(driver, &conn, &stop, &tx);
    // The closers, from plain threads, all at once.
    let barrier = Arc::new(Barrier::new(CLOSERS));
    let closers: Vec<_> = (0..CLOSERS)
        .map(|_| {
            let (c, b) = (conn.clone(), barrier.clone());
            std::thread::spawn(move || {
                b.wait();
                c.close_now()
            })
        })
        .collect();
    let closes: Vec<_> = closers.into_iter().map(|h| h.join().unwrap()).collect();
    let ok = closes.iter().filter(|r| r.is_ok()).count();
    let mut failures = Vec::new();
    if ok != 1 {
        failures.push(format!("{ok} closes succeeded"));
    }
    for e in closes.iter().filter_map(|r| r.as_ref().err()) {
        if !net::is_closed(e) {
            failures.push(format!("second close: {e}"));
        }
    }
    stop.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        match rx.recv_timeout(LIMIT) {
            Ok(Ok(())) => {}
            Ok(Err(f)) => failures.push(f),
            Err(_) => failures.push("a call hung after close".into()),
        }
    }
    failures
}

fn run(driver: Driver) {
    let _serial = faults::serial();
    let baseline = faults::baseline();
    let listener = net::listen_tcp("tcp", "127.0.0.1:0").unwrap();
    for round in 0..ROUNDS {
        let conn = Arc::new(net::dial_tcp("tcp", listener.local_addr()).unwrap());
        let (peer, _) = listener.accept().unwrap();
        // The peer echoes, so reads have data and writes have room some of the time.
        let echoing = std::thread::spawn(move || {
            let _ = peer.set_deadline(Some(Instant::now() + LIMIT));
            let _ = std::io::copy(&mut &peer, &mut &peer);
        });
        let failures = race(driver, conn);
        assert!(
            failures.is_empty(),
            "{driver:?} round {round}: {failures:?}"
        );
        echoing.join().unwrap();
    }
    drop(listener);
    wait_fds(baseline, &format!("{driver:?}"));
}

#[test]
fn close_races_reads_writes_and_deadlines_on_threads() {
    run(Driver::Threads);
}

#[test]
fn close_races_reads_writes_and_deadlines_in_coroutines() {
    run(Driver::Coroutines);
}

#[test]
fn close_races_reads_writes_and_deadlines_in_tasks() {
    run(Driver::Tasks);
}

/// What the reactor's callbacks saw of one connection.
#[derive(Default)]
struct Seen {
    calls: AtomicUsize,
    disconnects: AtomicUsize,
}

/// The peer of a reactor round: writes and reads until the connection ends (both bounded).
fn busy_peer(addr: std::net::SocketAddr) -> std::thread::JoinHandle<()> {
    let stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    stream.set_write_timeout(Some(LIMIT)).unwrap();
    let writer = stream.try_clone().unwrap();
    let writing = std::thread::spawn(move || {
        let chunk = vec![3u8; 16 * 1024];
        while (&writer).write_all(&chunk).is_ok() {}
    });
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match (&stream).read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    assert!(
                        matches!(e.kind(), io::ErrorKind::ConnectionReset),
                        "peer read: {e}"
                    );
                    break;
                }
            }
        }
        // The server closed: end our writer too (its write may wait for a window the closed
        // socket will not open).
        let _ = stream.shutdown(std::net::Shutdown::Both);
        writing.join().unwrap();
    })
}

/// Races `Connection::close` from CLOSERS threads against the handler's reads and flushes, a
/// foreign writer and a timeout setter, on one connection.
fn reactor_race(conn: netpoll::Connection, seen: &Seen) -> Vec<String> {
    let mut failures = Vec::new();
    // Let the handler get going first.
    faults::wait_for("the handler ran", || {
        seen.calls.load(Ordering::SeqCst) > 0 || !conn.is_active()
    });
    let stop = Arc::new(AtomicBool::new(false));
    let timeouts = {
        let (c, s) = (conn.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0u32;
            while !s.load(Ordering::SeqCst) {
                i += 1;
                let t = match i % 4 {
                    0 => Some(Duration::from_millis(1)),
                    1 => None,
                    2 => Some(Duration::from_millis(20)),
                    _ => Some(LIMIT),
                };
                c.set_read_timeout(t);
                c.set_write_timeout(t);
                c.set_idle_timeout(t.map(|t| t * 5));
                std::thread::yield_now();
            }
        })
    };
    let foreign_writer = {
        let c = conn.clone();
        std::thread::spawn(move || {
            let chunk = vec![9u8; 16 * 1024];
            loop {
                let mut writer = c.writer();
                if let Err(e) = writer.write_binary(&chunk).and_then(|()| writer.flush()) {
                    return e.kind();
                }
            }
        })
    };
    let barrier = Arc::new(Barrier::new(CLOSERS));
    let closers: Vec<_> = (0..CLOSERS)
        .map(|_| {
            let (c, b) = (conn.clone(), barrier.clone());
            std::thread::spawn(move || {
                b.wait();
                c.close();
            })
        })
        .collect();
    for closer in closers {
        closer.join().unwrap();
    }

    if conn.is_active() {
        failures.push("still active after close".to_string());
    }
    let started = Instant::now();
    while !foreign_writer.is_finished() && started.elapsed() < LIMIT {
        std::thread::sleep(Duration::from_millis(1));
    }
    if !foreign_writer.is_finished() {
        failures.push("the foreign writer hung after close".to_string());
    } else {
        let kind = foreign_writer.join().unwrap();
        if !matches!(
            kind,
            io::ErrorKind::NotConnected
                | io::ErrorKind::TimedOut
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::ConnectionReset
        ) {
            failures.push(format!("foreign writer: {kind:?}"));
        }
    }
    stop.store(true, Ordering::SeqCst);
    timeouts.join().unwrap();
    failures
}

#[test]
fn reactor_close_races_the_handlers_reads_writes_and_timeouts() {
    let _serial = faults::serial();
    for handlers in faults::HANDLERS {
        let baseline = faults::baseline();
        let (conns_tx, conns) = channel::<(netpoll::Connection, Arc<Seen>)>();
        let conns_tx = std::sync::Mutex::new(conns_tx);
        let (closed_tx, closed) = channel::<usize>();
        let closed_tx = std::sync::Mutex::new(closed_tx);
        let mut server = common::TestServer::start(
            handlers
                .builder()
                .on_prepare(move |conn| {
                    let seen = Arc::new(Seen::default());
                    let (s, tx) = (seen.clone(), closed_tx.lock().unwrap().clone());
                    conn.add_close_callback(move |_| {
                        let _ = tx.send(s.disconnects.load(Ordering::SeqCst));
                    });
                    let _ = conns_tx.lock().unwrap().send((conn.clone(), seen.clone()));
                    seen
                })
                .on_request(|seen, conn| {
                    seen.calls.fetch_add(1, Ordering::SeqCst);
                    // Waiting handlers wait here for one byte more than is buffered, then
                    // flush twice that (waiting for room); inline ones are called again.
                    let mut reader = conn.reader();
                    let n = reader.len();
                    let data = reader.next(n + 1)?;
                    drop(reader);
                    let mut writer = conn.writer();
                    writer.write_direct(data.clone())?;
                    writer.write_direct(data)?;
                    writer.flush()
                })
                .on_disconnect(|seen, _| {
                    seen.disconnects.fetch_add(1, Ordering::SeqCst);
                })
                .build()
                .unwrap(),
        );
        for round in 0..ROUNDS {
            let peer = busy_peer(server.addr);
            let (conn, seen) = conns.recv_timeout(LIMIT).expect("not accepted");
            let failures = reactor_race(conn, &seen);
            assert!(
                failures.is_empty(),
                "{handlers:?} round {round}: {failures:?}"
            );
            let disconnects = closed
                .recv_timeout(LIMIT)
                .unwrap_or_else(|_| panic!("{handlers:?} round {round}: no close callback"));
            assert!(
                disconnects <= 1,
                "{handlers:?} round {round}: {disconnects}"
            );
            peer.join().unwrap();
        }
        faults::wait_for("connections closed", || server.server.connections() == 0);
        server.stop().unwrap();
        drop(server);
        wait_fds(baseline, &format!("{handlers:?}"));
        assert!(closed.try_recv().is_err(), "{handlers:?}: a second close");
    }
}
