//! The cooperative budget counts only I/O calls that made progress (each test failed before).
//!
//! A task that polls more than `PER_TURN` (128) idle connections in one poll (a `select_all`
//! over reads, a hand-written poll loop) spends the whole budget on reads that only register
//! and return `Pending`; every connection after the 128th is answered `Pending` by the budget
//! (task woken) and never reaches its socket. The task spins on its poller forever and the data
//! that arrives on the 200th connection is never read. tokio refunds the unit when the
//! operation returns `Pending` (`RestoreOnPending`).

mod common;

use std::future::poll_fn;
use std::io::{IoSliceMut, Write};
use std::pin::Pin;
use std::sync::mpsc;
use std::sync::Arc;
use std::task::Poll;
use std::thread;

use common::LIMIT;
use netpoll::net::{self, TcpConn};
use netpoll::poll::PollManager;

#[test]
fn data_on_the_200th_idle_connection_of_a_task_is_read() {
    const N: usize = 200;
    let manager = Arc::new(PollManager::new(1).unwrap());
    let poller = manager.pick();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut conns: Vec<TcpConn> = Vec::new();
    let mut peers = Vec::new();
    for _ in 0..N {
        let conn = net::Dialer::new()
            .poll_manager(manager.clone())
            .dial_tcp("tcp", addr)
            .unwrap();
        let (peer, _) = listener.accept().unwrap();
        conns.push(conn);
        peers.push(peer);
    }
    let task = netpoll::task::spawn_on(&poller, async move {
        let mut buf = [0u8; 16];
        // Polls every connection in order each time, like `futures::future::select_all`.
        poll_fn(|cx| {
            for (i, conn) in conns.iter_mut().enumerate() {
                let mut bufs = [IoSliceMut::new(&mut buf)];
                if let Poll::Ready(r) =
                    futures::io::AsyncRead::poll_read_vectored(Pin::new(conn), cx, &mut bufs)
                {
                    return Poll::Ready((i, r.map_err(|e| e.to_string())));
                }
            }
            Poll::Pending
        })
        .await
    })
    .unwrap();
    // Let the task settle into its waits, then send on the last connection only.
    thread::sleep(std::time::Duration::from_millis(100));
    peers[N - 1].write_all(b"hello").unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(task.join());
    });
    let got = rx
        .recv_timeout(LIMIT)
        .expect("the read on the last connection never ran: the budget answered it Pending");
    assert_eq!(got.unwrap(), (N - 1, Ok(5)));
    drop(peers);
}
