//! Poller shutdown with coroutines still suspended on it: the teardown never hangs, whatever the
//! unwound coroutines' destructors do (close a connection another suspended coroutine is reading,
//! read, join), threads waiting on the poller's descriptors are woken, and jobs racing the close
//! are run or refused. Every wait is bounded: a hang fails the test instead of stalling it.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use netpoll::net::{self, ListenConfig, TcpConn};
use netpoll::poll::PollManager;
use netpoll::{go_on, JoinHandle};

const BOUND: Duration = Duration::from_secs(20);

/// Runs `f` on a helper thread and fails the test if it has not returned within `BOUND`.
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(BOUND)
        .unwrap_or_else(|_| panic!("{what} did not return within {BOUND:?}"))
}

fn join_within<T: Send + 'static>(handle: JoinHandle<T>) -> std::thread::Result<T> {
    within("join", move || handle.join())
}

/// A connected pair on `m`: the netpoll side, and its peer as a std stream.
fn pair(m: &Arc<PollManager>) -> (Arc<TcpConn>, std::net::TcpStream) {
    let listener = ListenConfig::new()
        .poll_manager(m.clone())
        .listen_tcp("tcp", "127.0.0.1:0")
        .unwrap();
    let peer = std::net::TcpStream::connect(listener.local_addr()).unwrap();
    let (conn, _) = listener.accept().unwrap();
    (Arc::new(conn), peer)
}

/// Waits (bounded) until `flag` is set by a coroutine.
fn wait_for(flag: &AtomicBool) {
    let deadline = Instant::now() + BOUND;
    while !flag.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the coroutine never got there");
        std::thread::yield_now();
    }
}

/// `defer conn.Close()`: closes the connection when dropped, e.g. by a forced unwind.
struct CloseOnDrop(Arc<TcpConn>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        let _ = self.0.close_now();
    }
}

/// The review's deadlock: coroutine B (first in the slab, so unwound first) holds a connection
/// it closes on unwind, while coroutine A is suspended in `read` on it, holding the socket's
/// read guard. Before the fix the close waited for that guard on the poller thread, forever.
#[test]
fn shutdown_returns_when_an_unwound_coroutine_closes_a_connection_another_is_reading() {
    let m = Arc::new(PollManager::new(1).unwrap());
    let poller = m.pick();
    let (conn, mut peer) = pair(&m);
    let (b_ready, a_ready) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let b = {
        let (guard, ready) = (CloseOnDrop(conn.clone()), b_ready.clone());
        go_on(&poller, move || {
            let _guard = guard;
            ready.store(true, Ordering::SeqCst);
            netpoll::sleep(Duration::from_secs(3600));
        })
    };
    wait_for(&b_ready);
    let a = {
        let (conn, ready) = (conn.clone(), a_ready.clone());
        go_on(&poller, move || {
            ready.store(true, Ordering::SeqCst);
            (&*conn).read(&mut [0u8; 16])
        })
    };
    wait_for(&a_ready);
    drop(conn); // the two coroutines hold the only references
    drop(poller);
    within("PollManager::close", move || m.close());
    assert!(join_within(a).is_err(), "A was unwound");
    assert!(join_within(b).is_err(), "B was unwound");
    // The connection's fd was really closed: the peer reads end of stream.
    peer.set_read_timeout(Some(BOUND)).unwrap();
    assert_eq!(peer.read(&mut [0u8; 16]).unwrap(), 0);
}

/// An unwound coroutine's destructor that reads an idle connection of the closing poller: no
/// event will ever come, so the read fails at once with the closed error instead of parking the
/// poller thread forever.
#[test]
fn a_read_in_an_unwinding_destructor_fails_instead_of_parking() {
    struct ReadOnDrop(Arc<TcpConn>, mpsc::Sender<std::io::Result<usize>>);
    impl Drop for ReadOnDrop {
        fn drop(&mut self) {
            let _ = self.1.send((&*self.0).read(&mut [0u8; 16]));
        }
    }
    let m = Arc::new(PollManager::new(1).unwrap());
    let poller = m.pick();
    let (conn, _peer) = pair(&m);
    let (tx, rx) = mpsc::channel();
    let ready = Arc::new(AtomicBool::new(false));
    let handle = {
        let (guard, ready) = (ReadOnDrop(conn, tx), ready.clone());
        go_on(&poller, move || {
            let _guard = guard;
            ready.store(true, Ordering::SeqCst);
            netpoll::sleep(Duration::from_secs(3600));
        })
    };
    wait_for(&ready);
    drop(poller);
    within("PollManager::close", move || m.close());
    let err = rx.recv_timeout(BOUND).unwrap().unwrap_err();
    assert!(net::is_closed(&err), "{err}");
    assert!(join_within(handle).is_err());
}

/// An unwound coroutine's destructor that joins another coroutine of the same poller, one that
/// is unwound after it: the join returns `Err` at once instead of parking the poller thread.
#[test]
fn a_join_in_an_unwinding_destructor_returns_instead_of_parking() {
    struct JoinOnDrop(Option<JoinHandle<()>>, mpsc::Sender<bool>);
    impl Drop for JoinOnDrop {
        fn drop(&mut self) {
            if let Some(handle) = self.0.take() {
                let _ = self.1.send(handle.join().is_err());
            }
        }
    }
    let m = Arc::new(PollManager::new(1).unwrap());
    let poller = m.pick();
    let (tx, rx) = mpsc::channel();
    let (first_ready, second_ready) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    // The joiner takes the first slot; the coroutine it joins is spawned from inside it, later.
    let joiner = {
        let (ready, second_ready) = (first_ready.clone(), second_ready.clone());
        go_on(&poller, move || {
            let here = netpoll::rt::current_poller().unwrap();
            let other = go_on(&here, move || {
                second_ready.store(true, Ordering::SeqCst);
                netpoll::sleep(Duration::from_secs(3600));
            });
            let _guard = JoinOnDrop(Some(other), tx);
            ready.store(true, Ordering::SeqCst);
            netpoll::sleep(Duration::from_secs(3600));
        })
    };
    wait_for(&first_ready);
    wait_for(&second_ready);
    drop(poller);
    within("PollManager::close", move || m.close());
    assert!(rx.recv_timeout(BOUND).unwrap(), "the join returned Err");
    assert!(join_within(joiner).is_err());
}

/// A plain thread blocked in `read` on a connection of a poller that shuts down: no event will
/// ever come from that poller, so the shutdown evicts the descriptor and the read returns the
/// closed error.
#[test]
fn a_thread_blocked_on_a_closing_pollers_connection_is_woken() {
    let m = Arc::new(PollManager::new(1).unwrap());
    let (conn, _peer) = pair(&m);
    let reading = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    {
        let (conn, reading) = (conn.clone(), reading.clone());
        std::thread::spawn(move || {
            reading.store(true, Ordering::SeqCst);
            let _ = tx.send((&*conn).read(&mut [0u8; 16]));
        });
    }
    wait_for(&reading);
    // The read may not have started its wait yet: either way it ends with the closed error.
    within("PollManager::close", move || m.close());
    let err = rx.recv_timeout(BOUND).unwrap().unwrap_err();
    assert!(net::is_closed(&err), "{err}");
    // Closing it afterwards still closes the fd (the eviction was not the user's close).
    conn.close_now().unwrap();
    assert!(conn.close_now().is_err(), "a second close reports it");
    let _ = (&*conn).write(b"x").unwrap_err();
}

/// Coroutines spawned from a thread while another thread closes their poller: each spawn is
/// either refused (an error) or its `JoinHandle` returns (the coroutine ran, or its job was
/// dropped at the close and the handle says so), even while the poller handle stays alive.
/// Before the fix a spawn job queued just after the loop's last drain sat in the dead poller's
/// queue until the last `Arc<Poller>` went, and its join waited until then (a window of
/// nanoseconds this stress rarely hits; `poll::poller::tests` forces it).
#[test]
fn coroutines_spawned_while_the_poller_closes_are_run_or_refused() {
    use std::sync::atomic::AtomicUsize;
    for _ in 0..20 {
        let poller = netpoll::poll::Poller::new().unwrap();
        let spawned = Arc::new(AtomicUsize::new(0));
        let spawner = {
            let (poller, spawned) = (poller.clone(), spawned.clone());
            std::thread::spawn(move || {
                let mut handles = Vec::new();
                // Bounded: the close below makes spawning fail long before this.
                while handles.len() < 1_000_000 {
                    match netpoll::rt::Builder::new().spawn_on(&poller, || 1u8) {
                        Ok(handle) => handles.push(handle),
                        Err(_) => break,
                    }
                    spawned.fetch_add(1, Ordering::Relaxed);
                }
                handles
            })
        };
        let deadline = Instant::now() + BOUND;
        while spawned.load(Ordering::Relaxed) < 50 {
            assert!(Instant::now() < deadline);
            std::thread::yield_now();
        }
        let closer = {
            let poller = poller.clone();
            std::thread::spawn(move || poller.close())
        };
        closer.join().unwrap();
        let handles = spawner.join().unwrap();
        // `poller` is still alive here: nothing may depend on its last handle going.
        within("joining every spawned coroutine", move || {
            for handle in handles {
                let _ = handle.join();
            }
        });
        drop(poller);
    }
}

/// The thread id (in `/proc/self/task`) of the calling thread.
fn tid() -> String {
    let link = std::fs::read_link("/proc/thread-self").unwrap();
    link.file_name().unwrap().to_string_lossy().into_owned()
}

/// Waits (bounded) until thread `tid` of this process has exited.
fn wait_thread_gone(tid: &str) {
    let deadline = Instant::now() + BOUND;
    while std::path::Path::new(&format!("/proc/self/task/{tid}")).exists() {
        assert!(Instant::now() < deadline, "thread {tid} never exited");
        std::thread::yield_now();
    }
}

/// The last `Arc<Poller>` dropped on a handler-pool thread, inside the `blocking` job of a
/// coroutine of that very poller (suspended meanwhile): the drop closes the poller and joins its
/// thread from the pool thread, which unwinds the coroutine; nothing waits for anything else.
#[test]
fn the_last_poller_handle_dropped_on_a_pool_thread_closes_it() {
    let poller = netpoll::poll::Poller::new().unwrap();
    let last = poller.clone();
    let (dropped_tx, dropped_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let go_rx = std::sync::Mutex::new(go_rx);
    let handle = go_on(&poller, move || {
        netpoll::blocking(move || {
            let _ = go_rx.lock().unwrap().recv_timeout(BOUND);
            drop(last); // the last handle: closes the poller, joins its thread
            let _ = dropped_tx.send(());
        })
    });
    let poller_tid = within("the poller's thread id", {
        let poller = poller.clone();
        move || go_on(&poller, tid).join().unwrap()
    });
    drop(poller);
    go_tx.send(()).unwrap();
    dropped_rx
        .recv_timeout(BOUND)
        .expect("dropping the last handle on the pool thread hung");
    assert!(join_within(handle).is_err(), "the coroutine was unwound");
    wait_thread_gone(&poller_tid);
}

/// The last `Arc<Poller>` dropped inside a coroutine of that poller, on its own thread: the
/// drop must not join the thread it runs on; the loop exits after the coroutine returns.
#[test]
fn the_last_poller_handle_dropped_on_its_own_thread_does_not_join_itself() {
    let poller = netpoll::poll::Poller::new().unwrap();
    let last = poller.clone();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let ready_rx = std::sync::Mutex::new(ready_rx);
    let handle = go_on(&poller, move || {
        // Wait (suspended, in blocking) until the test dropped its own handle.
        netpoll::blocking(move || ready_rx.lock().unwrap().recv_timeout(BOUND).is_ok());
        let me = tid();
        drop(last);
        me
    });
    drop(poller);
    ready_tx.send(()).unwrap();
    let poller_tid = join_within(handle).expect("the coroutine finished normally");
    wait_thread_gone(&poller_tid);
}

/// A remote wake may hold the last `Arc<Poller>` (it upgrades a weak reference for its push):
/// the handle's owner drops it while a pool thread's `blocking` job wakes the coroutine. Either
/// may close the poller; every round ends.
#[test]
fn a_remote_wake_racing_the_last_handle_drop_never_hangs() {
    for _ in 0..100 {
        let poller = netpoll::poll::Poller::new().unwrap();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let go_rx = std::sync::Mutex::new(go_rx);
        let handle = go_on(&poller, move || {
            netpoll::blocking(move || go_rx.lock().unwrap().recv_timeout(BOUND).is_ok())
        });
        // Let the coroutine reach its wait most of the time (not needed for correctness).
        std::thread::yield_now();
        go_tx.send(()).unwrap();
        drop(poller);
        let _ = join_within(handle);
    }
}
