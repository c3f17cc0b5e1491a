//! Coroutine handlers at their edges (each test failed before its fix): a cross-poller
//! `detach` from handlers, close callbacks when a poller closes under a suspended handler, a
//! `Gate` hand-off past an unwound waiter, a closing poller not held by a timed wait.
//!
//! Every test is bounded: a wait that hangs becomes a failure after `LIMIT` (or less), and a
//! test that leaves poller threads stuck forgets what would join them, so the binary still exits.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::LIMIT;
use netpoll::poll::PollManager;
use netpoll::{Connection, EventLoop, Listener};

fn shared<T: Send + 'static>(tx: Sender<T>) -> Arc<Mutex<Sender<T>>> {
    Arc::new(Mutex::new(tx))
}

/// A served `EventLoop` whose drop shuts it down with a short deadline (a test that found a
/// leaked connection should not wait `LIMIT` for it), or forgets it if told the pollers hang.
struct Served {
    server: Option<Arc<EventLoop<()>>>,
    serving: Option<std::thread::JoinHandle<std::io::Result<()>>>,
    addr: std::net::SocketAddr,
}

impl Served {
    fn start(server: EventLoop<()>) -> Served {
        let listener = Listener::bind_tcp("127.0.0.1:0").unwrap();
        let addr = *listener.local_addr().as_inet().unwrap();
        let server = Arc::new(server);
        let serving = {
            let server = server.clone();
            std::thread::spawn(move || server.serve(listener))
        };
        Served {
            server: Some(server),
            serving: Some(serving),
            addr,
        }
    }

    fn server(&self) -> &EventLoop<()> {
        self.server.as_ref().unwrap()
    }

    fn connect(&self) -> std::net::TcpStream {
        let stream = std::net::TcpStream::connect(self.addr).unwrap();
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        stream.set_write_timeout(Some(LIMIT)).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
    }

    /// The pollers are stuck: joining anything would hang the test binary.
    fn abandon(mut self) {
        std::mem::forget(self.server.take());
        std::mem::forget(self.serving.take());
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = server.shutdown(Instant::now() + Duration::from_millis(500));
            if let Some(serving) = self.serving.take() {
                let _ = serving.join();
            }
        }
    }
}

/// BUG (deadlock, high): `Connection::detach` called in a coroutine for a connection of
/// *another* poller waits for a task round trip on that poller with a std `mpsc` channel, which
/// blocks the calling poller's thread. Two coroutine handlers on two pollers, each detaching a
/// connection of the other's poller at the same time, wait for each other forever: both poller
/// threads sit in `recv`, neither runs the other's task. (With pool handlers the waits were on
/// pool threads and the pollers ran the tasks.) The handlers spin until both are inside only to
/// make the overlap certain; in production it is a race.
#[test]
fn coroutine_handlers_detaching_across_pollers_do_not_deadlock() {
    let manager = Arc::new(PollManager::new(2).unwrap());
    let conns: Arc<Mutex<Vec<Connection>>> = Arc::default();
    let inside = Arc::new(AtomicUsize::new(0));
    let (result_tx, result_rx) = channel();
    let result_tx = shared(result_tx);
    let server = Served::start(
        EventLoop::builder()
            .poll_manager(manager.clone())
            .on_request({
                let conns = conns.clone();
                move |_, conn| {
                    let mut reader = conn.reader();
                    let n = reader.len();
                    reader.skip(n)?;
                    drop(reader);
                    conns.lock().unwrap().push(conn.clone());
                    inside.fetch_add(1, Ordering::SeqCst);
                    // Both handlers are running, each on its own poller.
                    let start = Instant::now();
                    while inside.load(Ordering::SeqCst) < 2 {
                        if start.elapsed() > LIMIT {
                            return Ok(());
                        }
                        std::hint::spin_loop();
                    }
                    let other = conns
                        .lock()
                        .unwrap()
                        .iter()
                        .find(|c| c.poller_id() != conn.poller_id())
                        .cloned();
                    let result = other.map(|other| other.detach().map(drop).map_err(|e| e.kind()));
                    let _ = result_tx.lock().unwrap().send(result);
                    Ok(())
                }
            })
            .build()
            .unwrap(),
    );
    let mut a = server.connect();
    let mut b = server.connect();
    a.write_all(b"a").unwrap();
    b.write_all(b"b").unwrap();
    let mut results = Vec::new();
    for _ in 0..2 {
        match result_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(result) => results.push(result),
            Err(_) => {
                // Both pollers are stuck in `recv`: nothing can be joined any more.
                std::mem::forget(manager);
                server.abandon();
                panic!(
                    "deadlock: the two detaches did not return within 5 s ({} did)",
                    results.len()
                );
            }
        }
    }
    for result in results {
        let result = result.expect("the two connections were on different pollers");
        assert!(result.is_ok(), "detach failed: {result:?}");
    }
}

/// BUG (lost close callbacks, medium): a handler suspended when its poller closes is unwound and
/// its `HandlerTask` guard closes the connection, which is documented to let the close
/// callbacks run. But `finish_if_done` runs on the poller thread outside a coroutine, so
/// `run_user_code` spawns the callbacks into a *new* coroutine on the closing poller; the
/// scheduler is being torn down and drops it unstarted. The user's close callback never runs,
/// and neither does the server's own `on_close` hook: the connection stays in the server's table
/// (so a later `shutdown` waits for it until its deadline and reports `TimedOut`).
#[test]
fn close_callbacks_run_when_the_poller_closes_under_a_suspended_handler() {
    let manager = Arc::new(PollManager::new(1).unwrap());
    let (closed_tx, closed_rx) = channel();
    let closed_tx = shared(closed_tx);
    let (entered_tx, entered_rx) = channel();
    let entered_tx = shared(entered_tx);
    let server = Served::start(
        EventLoop::builder()
            .poll_manager(manager.clone())
            .on_connect(move |_, conn| {
                let closed_tx = closed_tx.clone();
                conn.add_close_callback(move |_| {
                    let _ = closed_tx.lock().unwrap().send(());
                });
            })
            .on_request(move |_, conn| {
                let _ = entered_tx.lock().unwrap().send(());
                // Waits (suspended) for bytes that never come.
                conn.reader().next(100).map(drop)
            })
            .build()
            .unwrap(),
    );
    let mut client = server.connect();
    client.write_all(b"x").unwrap();
    entered_rx.recv_timeout(LIMIT).expect("handler entered");
    assert_eq!(server.server().connections(), 1);

    manager.close(); // the poller exits with the handler suspended

    let ran = closed_rx.recv_timeout(Duration::from_secs(3)).is_ok();
    let left = server.server().connections();
    assert!(ran, "the close callback never ran after the poller closed");
    assert_eq!(left, 0, "the server still counts the connection");
}

/// BUG (lost wake-up, medium): a coroutine unwound while queued on a `Gate` (its poller
/// closed) stays in the gate's wait list, and `GateGuard::drop` hands the gate to exactly one
/// waiter (`take_one`). When the dead coroutine is first in line it takes that hand-off and the
/// live waiter behind it is never woken: it waits forever for a gate nobody holds, on a
/// connection that is already closed.
///
/// Here the holder is a handler (suspended in `next`) and a second coroutine of the same poller
/// queues for the reader; a coroutine of *another* poller queues behind it. Closing the first
/// poller unwinds both; the third must then get the reader (and find the connection closed: the
/// `HandlerTask` guard closed it).
#[test]
fn a_gate_waiter_behind_an_unwound_coroutine_is_still_woken() {
    let manager = Arc::new(PollManager::new(1).unwrap());
    let poller = manager.pick();
    let elsewhere = Arc::new(PollManager::new(1).unwrap());
    let other_poller = elsewhere.pick();
    let (conn_tx, conn_rx) = channel();
    let conn_tx = shared(conn_tx);
    let server = Served::start(
        EventLoop::builder()
            .poll_manager(manager.clone())
            .on_request(move |_, conn| {
                let mut reader = conn.reader(); // holds the reader gate...
                let _ = conn_tx.lock().unwrap().send(conn.clone());
                reader.next(100).map(drop) // ...while suspended here
            })
            .build()
            .unwrap(),
    );
    let mut client = server.connect();
    client.write_all(b"x").unwrap();
    let conn: Connection = conn_rx.recv_timeout(LIMIT).expect("handler entered");

    // First in line: a coroutine of the same poller.
    let first = conn.clone();
    let _queued = netpoll::go_on(&poller, move || {
        let _reader = first.reader();
    });
    // Runs once the queued coroutine has suspended in the gate.
    netpoll::go_on(&poller, || ()).join().unwrap();

    // Second in line: a coroutine of another poller.
    let (got_tx, got_rx) = channel();
    let second = conn.clone();
    let _waiter = netpoll::go_on(&other_poller, move || {
        let mut reader = second.reader();
        let _ = got_tx.send(reader.next(100).map(drop).map_err(|e| e.kind()));
    });
    netpoll::go_on(&other_poller, || ()).join().unwrap();

    manager.close(); // unwinds the handler (releasing the gate) and the first waiter

    let got = got_rx.recv_timeout(Duration::from_secs(3));
    assert!(
        got.is_ok(),
        "the live waiter was never handed the free reader gate"
    );
    let got = got.unwrap();
    assert!(got.is_err(), "the connection is closed: {got:?}");
    drop(server);
}

/// BUG (shutdown latency, low): `park_until` in a coroutine whose poller is already closing
/// cannot arm a timer, and falls back to `thread::sleep` for the whole remaining timeout on the
/// poller thread. A coroutine resumed in the loop's last iteration that then waits with a
/// deadline (a read or flush with a timeout, `netpoll::sleep`) holds the poller's exit, and so
/// `PollManager::close`/drop, for up to that timeout, and ignores any wake meanwhile. Suspending
/// (the teardown right after unwinds it) would let the poller exit at once.
#[test]
fn a_closing_poller_is_not_held_by_a_coroutine_waiting_with_a_timeout() {
    let manager = Arc::new(PollManager::new(1).unwrap());
    let poller = manager.pick();
    let go_on = Arc::new(AtomicBool::new(false));
    let (inside_tx, inside_rx) = channel();
    let flag = go_on.clone();
    let _sleeper = netpoll::go_on(&poller, move || {
        inside_tx.send(()).unwrap();
        // Stays on the poller thread until the close has begun (bounded), like a handler busy
        // with a request when the close comes.
        let start = Instant::now();
        while !flag.load(Ordering::SeqCst) && start.elapsed() < LIMIT {
            std::hint::spin_loop();
        }
        netpoll::sleep(Duration::from_secs(3));
    });
    inside_rx.recv_timeout(LIMIT).unwrap();
    let closer = {
        let manager = manager.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            manager.close();
            start.elapsed()
        })
    };
    // `execute` fails once the poller is closing.
    let start = Instant::now();
    while poller.execute(|| ()).is_ok() {
        assert!(start.elapsed() < LIMIT, "the close never began");
        std::thread::yield_now();
    }
    go_on.store(true, Ordering::SeqCst);
    let took = closer.join().unwrap();
    assert!(
        took < Duration::from_millis(1500),
        "closing the poller took {took:?}: the coroutine slept on its thread"
    );
}
