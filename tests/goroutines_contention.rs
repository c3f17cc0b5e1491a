//! Contended `NetFd` locks inside coroutines: a writer that finds the write lock held by another
//! coroutine of its poller is suspended until the holder releases it (it does not spin on the
//! poller), whole writes never interleave, and threads and coroutines contending for one
//! connection all get their turn. Real sockets on loopback; every wait is bounded.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use netpoll::net::{self, ListenConfig, TcpConn};
use netpoll::poll::PollManager;
use netpoll::{go_on, JoinHandle};

const BOUND: Duration = Duration::from_secs(30);
const CHUNK: usize = 1 << 20;

fn join_within<T: Send + 'static>(handle: JoinHandle<T>) -> std::thread::Result<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(handle.join());
    });
    rx.recv_timeout(BOUND)
        .expect("coroutine did not finish in time")
}

/// A connection on `m` whose peer (a std stream) has a small receive buffer, so a big write
/// soon waits for the peer to read.
fn slow_pair(m: &Arc<PollManager>) -> (Arc<TcpConn>, std::net::TcpStream) {
    use socket2::{Domain, Socket, Type};
    let listener = ListenConfig::new()
        .poll_manager(m.clone())
        .listen_tcp("tcp", "127.0.0.1:0")
        .unwrap();
    let peer = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    peer.set_recv_buffer_size(64 * 1024).unwrap();
    peer.connect(&listener.local_addr().into()).unwrap();
    let (conn, _) = listener.accept().unwrap();
    conn.with_fd(|fd| socket2::SockRef::from(&fd).set_send_buffer_size(64 * 1024))
        .unwrap()
        .unwrap();
    (Arc::new(conn), peer.into())
}

fn wait_for(flag: &AtomicBool) {
    let deadline = Instant::now() + BOUND;
    while !flag.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "never got there");
        std::thread::yield_now();
    }
}

/// CPU time of the calling thread so far (`/proc/thread-self/schedstat`: nanoseconds on CPU).
fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    let ns: u64 = stat.split_whitespace().next().unwrap().parse().unwrap();
    Duration::from_nanos(ns)
}

/// Reads `chunks` chunks of `CHUNK` bytes from `peer` and checks each is whole: one tag byte
/// repeated, never two writes interleaved. Returns the tags in arrival order.
fn read_chunks(mut peer: std::net::TcpStream, chunks: usize) -> Vec<u8> {
    peer.set_read_timeout(Some(BOUND)).unwrap();
    let mut buf = vec![0u8; CHUNK];
    (0..chunks)
        .map(|_| {
            peer.read_exact(&mut buf).unwrap();
            let tag = buf[0];
            assert!(
                buf.iter().all(|&b| b == tag),
                "a chunk of tag {tag} is mixed"
            );
            tag
        })
        .collect()
}

/// Two coroutines of one poller `write_all` big chunks on one connection while the peer does
/// not read: one holds the write lock waiting for room, the other waits for the lock. The
/// poller thread must stay nearly idle meanwhile (before the fix the second writer yielded in a
/// loop: the poller burnt a core), and every chunk arrives whole.
#[test]
fn a_writer_waiting_for_the_write_lock_is_suspended_not_spinning() {
    let m = Arc::new(PollManager::new(1).unwrap());
    let poller = m.pick();
    let (conn, peer) = slow_pair(&m);
    let rounds = 2u8;
    let writers: Vec<_> = (0..2u8)
        .map(|w| {
            let (conn, started) = (conn.clone(), Arc::new(AtomicBool::new(false)));
            let flag = started.clone();
            let handle = go_on(&poller, move || -> std::io::Result<()> {
                flag.store(true, Ordering::SeqCst);
                for round in 0..rounds {
                    (&*conn).write_all(&vec![1 + w * 16 + round; CHUNK])?;
                }
                Ok(())
            });
            (handle, started)
        })
        .collect();
    for (_, started) in &writers {
        wait_for(started);
    }
    // Measured on the poller thread itself, by a coroutine that sleeps on a poller timer.
    let window = Duration::from_millis(500);
    let probe = go_on(&poller, move || {
        let (cpu, wall) = (thread_cpu(), Instant::now());
        netpoll::sleep(window);
        (thread_cpu() - cpu, wall.elapsed())
    });
    let (cpu, wall) = join_within(probe).unwrap();
    assert!(
        writers.iter().all(|(handle, _)| !handle.is_finished()),
        "the writers did not wait: the test proves nothing"
    );
    assert!(
        cpu < wall / 5,
        "the poller thread was busy {cpu:?} of {wall:?} while both writers waited"
    );
    let tags = read_chunks(peer, 2 * rounds as usize);
    for (handle, _) in writers {
        join_within(handle).unwrap().unwrap();
    }
    let mut sorted = tags.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [1, 2, 17, 18]);
    // Each writer's own chunks arrive in its order.
    let order = |w: u8| {
        tags.iter()
            .filter(|&&t| t / 16 == w)
            .copied()
            .collect::<Vec<_>>()
    };
    assert_eq!(order(0), [1, 2]);
    assert_eq!(order(1), [17, 18]);
}

/// Plain threads and coroutines (of two pollers) contend for one connection's write lock:
/// every writer gets its turn, and no chunk is torn.
#[test]
fn threads_and_coroutines_share_a_write_lock() {
    let m = Arc::new(PollManager::new(2).unwrap());
    let pollers = m.pollers();
    let (conn, peer) = slow_pair(&m);
    let reader = std::thread::spawn(move || read_chunks(peer, 8));
    let mut coroutines = Vec::new();
    let mut threads = Vec::new();
    for w in 0..4u8 {
        let conn = conn.clone();
        let body = move || -> std::io::Result<()> {
            for round in 0..2 {
                (&*conn).write_all(&vec![1 + w * 16 + round; CHUNK])?;
            }
            Ok(())
        };
        if w % 2 == 0 {
            coroutines.push(go_on(&pollers[usize::from(w / 2)], body));
        } else {
            threads.push(std::thread::spawn(body));
        }
    }
    for handle in coroutines {
        join_within(handle).unwrap().unwrap();
    }
    for thread in threads {
        thread.join().unwrap().unwrap();
    }
    let mut tags = reader.join().unwrap();
    tags.sort_unstable();
    assert_eq!(tags, [1, 2, 17, 18, 33, 34, 49, 50]);
}

/// A coroutine waiting for the write lock is woken by a close (from another coroutine of the
/// same poller) with the closed error, as is the holder.
#[test]
fn close_wakes_a_coroutine_waiting_for_the_write_lock() {
    let m = Arc::new(PollManager::new(1).unwrap());
    let poller = m.pick();
    let (conn, _peer) = slow_pair(&m);
    let started = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..3u8)
        .map(|w| {
            let (conn, started) = (conn.clone(), started.clone());
            go_on(&poller, move || {
                started.fetch_add(1, Ordering::SeqCst);
                (&*conn).write_all(&vec![w; 8 * CHUNK])
            })
        })
        .collect();
    let deadline = Instant::now() + BOUND;
    while started.load(Ordering::SeqCst) < 3 {
        assert!(Instant::now() < deadline);
        std::thread::yield_now();
    }
    let closer = {
        let conn = conn.clone();
        go_on(&poller, move || conn.close_now())
    };
    join_within(closer).unwrap().unwrap();
    for handle in writers {
        let err = join_within(handle).unwrap().unwrap_err();
        assert!(net::is_closed(&err), "{err}");
    }
}

/// Readers too: two coroutines reading one connection take turns; a thread closing it wakes
/// both, the one in `read` and the one waiting for the read lock.
#[test]
fn a_thread_close_wakes_coroutines_in_and_waiting_for_read() {
    let m = Arc::new(PollManager::new(1).unwrap());
    let poller = m.pick();
    let (conn, mut peer) = slow_pair(&m);
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let conn = conn.clone();
            go_on(&poller, move || -> std::io::Result<()> {
                let mut buf = [0u8; 4];
                // Reads the peer's 64 bytes between them, then both wait (until the close).
                while (&*conn).read(&mut buf)? > 0 {}
                Ok(())
            })
        })
        .collect();
    peer.write_all(&[7u8; 64]).unwrap();
    // Both coroutines have run (and are suspended, one in read, one for the lock) once the poller
    // answers a later coroutine: the queue is FIFO.
    join_within(go_on(&poller, || ())).unwrap();
    conn.close_now().unwrap();
    for handle in readers {
        let err = join_within(handle).unwrap().unwrap_err();
        assert!(net::is_closed(&err), "{err}");
    }
}

/// The poller shuts down while one coroutine holds the write lock (waiting for room) and two
/// more wait in its queue: the unwinding hands the lock on or leaves the queue, so the lock is
/// free afterwards and a close from a thread completes instead of waiting forever.
#[test]
fn shutdown_with_coroutines_queued_for_a_lock_leaves_it_free() {
    let m = Arc::new(PollManager::new(1).unwrap());
    let poller = m.pick();
    let (conn, _peer) = slow_pair(&m);
    let started = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..3u8)
        .map(|w| {
            let (conn, started) = (conn.clone(), started.clone());
            go_on(&poller, move || {
                started.fetch_add(1, Ordering::SeqCst);
                (&*conn).write_all(&vec![w; 8 * CHUNK])
            })
        })
        .collect();
    let deadline = Instant::now() + BOUND;
    while started.load(Ordering::SeqCst) < 3 {
        assert!(Instant::now() < deadline);
        std::thread::yield_now();
    }
    // Let all three reach their waits (the poller answers a later coroutine after them).
    join_within(go_on(&poller, || ())).unwrap();
    drop(poller);
    let (tx, rx) = mpsc::channel();
    {
        let m = m.clone();
        std::thread::spawn(move || {
            m.close();
            let _ = tx.send(());
        });
    }
    rx.recv_timeout(BOUND).expect("the shutdown hung");
    for handle in writers {
        assert!(join_within(handle).is_err(), "unwound");
    }
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(conn.close_now());
    });
    rx.recv_timeout(BOUND)
        .expect("close hung: a lock was left held")
        .unwrap();
}
