//! Go-net face: `close_now` from several threads at once, racing a reader, a writer and a
//! deadline setter on the same `TcpConn` (run on threads, or as coroutines). No panic, no
//! hang; exactly one close succeeds, every other call ends with Go's closed error; the fd
//! count returns to its baseline.

mod common;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::channel;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::faults::{self, wait_fds, Driver};
use common::LIMIT;
use netpoll::net::{self, TcpConn};

const ROUNDS: usize = 30;
const CLOSERS: usize = 4;

/// A reader, a writer and a deadline setter on `conn`, each until its call fails with the
/// closed error (timeouts from the deadlines are retried). Returns a label per failure.
fn race(driver: Driver, conn: Arc<TcpConn>) -> Vec<String> {
    let (tx, rx) = channel::<Result<(), String>>();
    let stop = Arc::new(AtomicBool::new(false));
    let run = |f: Box<dyn FnOnce() -> Result<(), String> + Send>| {
        let tx = tx.clone();
        let job = move || {
            let _ = tx.send(f());
        };
        match driver {
            Driver::Coroutines => drop(netpoll::go(job)),
            _ => drop(std::thread::spawn(job)),
        }
    };
    let c = conn.clone();
    run(Box::new(move || {
        let mut buf = [0u8; 4096];
        loop {
            match (&*c).read(&mut buf) {
                Ok(0) => return Err("reader: EOF instead of the closed error".into()),
                Ok(_) => {}
                Err(e) if net::is_timeout(&e) => {}
                Err(e) if net::is_closed(&e) => return Ok(()),
                Err(e) => return Err(format!("reader: {e}")),
            }
        }
    }));
    let c = conn.clone();
    run(Box::new(move || {
        let chunk = vec![7u8; 16 * 1024];
        loop {
            match (&*c).write(&chunk) {
                Ok(_) => {}
                Err(e) if net::is_timeout(&e) => {}
                Err(e) if net::is_closed(&e) => return Ok(()),
                Err(e) => return Err(format!("writer: {e}")),
            }
        }
    }));
    let c = conn.clone();
    let s = stop.clone();
    run(Box::new(move || {
        let mut i = 0u32;
        while !s.load(Ordering::SeqCst) {
            i += 1;
            // Past, near and far deadlines, flipping the pending calls between waiting and
            // timing out.
            let at = match i % 3 {
                0 => Instant::now() - Duration::from_millis(1),
                1 => Instant::now() + Duration::from_millis(1),
                _ => Instant::now() + LIMIT,
            };
            match c.set_deadline(Some(at)) {
                Ok(()) => {}
                Err(e) if net::is_closed(&e) => return Ok(()),
                Err(e) => return Err(format!("deadline: {e}")),
            }
            if matches!(driver, Driver::Coroutines) {
                netpoll::yield_now();
            } else {
                std::thread::yield_now();
            }
        }
        Ok(())
    }));
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
