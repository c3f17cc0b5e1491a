//! A connection that never runs dry does not keep its poller: the task (or coroutine) reading it
//! yields after a budget of operations, so a timer-driven task on the same poller keeps its
//! schedule. Without the budget the echo's reads never wait and the sleeper never runs.

mod common;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use common::LIMIT;
use futures::io::AsyncReadExt;
use netpoll::net::{self, TcpConn};
use netpoll::poll::{PollManager, Poller};

/// A connection registered on `manager`'s (one) poller, and a peer that floods it until `stop`.
fn flooded(manager: &Arc<PollManager>, stop: &Arc<AtomicBool>) -> TcpConn {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let conn = net::Dialer::new()
        .poll_manager(manager.clone())
        .dial_tcp("tcp", listener.local_addr().unwrap())
        .unwrap();
    let (peer, _) = listener.accept().unwrap();
    peer.set_write_timeout(Some(LIMIT)).unwrap();
    let mut writer = peer;
    let s1 = stop.clone();
    thread::spawn(move || {
        let block = vec![7u8; 65536];
        while !s1.load(Ordering::Relaxed) && writer.write_all(&block).is_ok() {}
    });
    conn
}

/// Twenty 10 ms sleeps in a task on `poller`: how long the slowest took; `None` if they did not
/// all end within LIMIT.
fn sleeper_on(poller: &Arc<Poller>) -> Option<Duration> {
    let timer = netpoll::task::spawn_on(poller, async {
        let mut worst = Duration::ZERO;
        for _ in 0..20 {
            let started = Instant::now();
            netpoll::time::sleep(Duration::from_millis(10)).await;
            worst = worst.max(started.elapsed());
        }
        worst
    })
    .unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(timer.join());
    });
    rx.recv_timeout(LIMIT).ok().map(Result::unwrap)
}

#[test]
fn a_flooded_task_does_not_starve_its_poller() {
    let manager = Arc::new(PollManager::new(1).unwrap());
    let poller = manager.pick();
    let stop = Arc::new(AtomicBool::new(false));
    let conn = flooded(&manager, &stop);
    let _reader = netpoll::task::spawn_on(&poller, async move {
        let mut conn = conn;
        let mut buf = vec![0u8; 16];
        loop {
            // Reading 16 bytes at a time from a peer writing 64 KiB at a time: the socket never
            // runs dry, so no read ever waits.
            match AsyncReadExt::read(&mut conn, &mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .unwrap();
    let worst = sleeper_on(&poller);
    // Stopped before any assert: the peer's end of stream lets the reader (and the poller) go.
    stop.store(true, Ordering::Relaxed);
    let worst = worst.expect("the sleeper was starved by the flooded connection");
    assert!(worst < LIMIT, "a 10 ms sleep took {worst:?}");
}

#[test]
fn a_flooded_coroutine_does_not_starve_its_poller() {
    let manager = Arc::new(PollManager::new(1).unwrap());
    let poller = manager.pick();
    let stop = Arc::new(AtomicBool::new(false));
    let conn = flooded(&manager, &stop);
    let _reader = netpoll::go_on(&poller, move || {
        let mut conn = conn;
        let mut buf = vec![0u8; 16];
        loop {
            match Read::read(&mut conn, &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    let worst = sleeper_on(&poller);
    // Stopped before any assert: the peer's end of stream lets the reader (and the poller) go.
    stop.store(true, Ordering::Relaxed);
    let worst = worst.expect("the sleeper was starved by the flooded connection");
    assert!(worst < LIMIT, "a 10 ms sleep took {worst:?}");
}
