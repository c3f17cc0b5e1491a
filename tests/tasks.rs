//! Async tasks on the pollers: spawn, join (awaited, blocking, from a coroutine), abort, panics,
//! `spawn_local`, `block_on`, timers, and the Go-net face's async I/O driven by tasks — on the
//! tasks' own poller (local wakes) and on another one (remote wakes).

mod common;

use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use common::LIMIT;
use futures::io::{AsyncReadExt, AsyncWriteExt};
use netpoll::net::{self, TcpConn};
use netpoll::poll::PollManager;
use netpoll::task;
use netpoll::time;

fn manager(n: usize) -> Arc<PollManager> {
    Arc::new(PollManager::new(n).unwrap())
}

/// Joins on a helper thread, bounded by LIMIT.
fn join_within<T: Send + 'static>(handle: task::JoinHandle<T>) -> Result<T, task::JoinError> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(handle.join());
    });
    rx.recv_timeout(LIMIT)
        .expect("the task did not finish in time")
}

#[test]
fn spawn_and_join_from_a_thread() {
    let handle = netpoll::spawn(async { 6 * 7 });
    assert_eq!(join_within(handle).unwrap(), 42);
}

#[test]
fn a_join_handle_is_a_future() {
    let outer = netpoll::spawn(async {
        let inner = netpoll::spawn(async { "inner" });
        inner.await.unwrap()
    });
    assert_eq!(join_within(outer).unwrap(), "inner");
}

#[test]
fn a_panic_reaches_the_join_handle() {
    let handle = netpoll::spawn(async { panic!("boom") });
    let err = join_within::<()>(handle).unwrap_err();
    assert!(err.is_panic());
    assert_eq!(*err.into_panic().downcast::<&str>().unwrap(), "boom");
}

#[test]
fn abort_cancels_a_waiting_task_and_drops_its_future() {
    struct Dropped(Arc<AtomicUsize>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let drops = Arc::new(AtomicUsize::new(0));
    let guard = Dropped(drops.clone());
    let handle = netpoll::spawn(async move {
        let _guard = guard;
        time::sleep(Duration::from_secs(3600)).await;
    });
    handle.abort();
    let err = join_within(handle).unwrap_err();
    assert!(err.is_cancelled());
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

#[test]
fn spawn_local_runs_a_non_send_future_on_the_same_poller() {
    let handle = netpoll::spawn(async {
        let here = netpoll::rt::current_poller().unwrap().id();
        let local = netpoll::spawn_local(async {
            // An `Rc` held across an await: this future is not `Send`.
            let shared = Rc::new(5);
            time::sleep(Duration::from_millis(1)).await;
            (*shared * 2, netpoll::rt::current_poller().unwrap().id())
        });
        let (value, there) = local.await.unwrap();
        (value, here == there)
    });
    assert_eq!(join_within(handle).unwrap(), (10, true));
}

#[test]
fn block_on_runs_a_future_on_a_thread_and_inside_a_coroutine() {
    assert_eq!(netpoll::block_on(async { 1 + 1 }), 2);
    let in_coroutine = netpoll::go(|| {
        // Suspends the coroutine (not its poller) until the sleep ends.
        netpoll::block_on(async {
            time::sleep(Duration::from_millis(20)).await;
            netpoll::rt::is_coroutine()
        })
    });
    assert!(in_coroutine.join().unwrap());
}

#[test]
fn a_task_joins_a_coroutine_asynchronously() {
    let handle = netpoll::spawn(async {
        let coroutine = netpoll::go(|| {
            netpoll::sleep(Duration::from_millis(10));
            "from the coroutine"
        });
        coroutine.await.unwrap()
    });
    assert_eq!(join_within(handle).unwrap(), "from the coroutine");
}

#[test]
fn sleeps_end_in_deadline_order() {
    let handle = netpoll::spawn(async {
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sleepers: Vec<_> = [60u64, 20, 40]
            .into_iter()
            .map(|ms| {
                let order = order.clone();
                netpoll::spawn(async move {
                    time::sleep(Duration::from_millis(ms)).await;
                    order.lock().unwrap().push(ms);
                })
            })
            .collect();
        for sleeper in sleepers {
            sleeper.await.unwrap();
        }
        let order = order.lock().unwrap().clone();
        order
    });
    assert_eq!(join_within(handle).unwrap(), vec![20, 40, 60]);
}

#[test]
fn timeout_fires_and_does_not_fire() {
    let handle = netpoll::spawn(async {
        let started = Instant::now();
        let late = time::timeout(Duration::from_millis(30), time::sleep(LIMIT)).await;
        let waited = started.elapsed();
        let early = time::timeout(LIMIT, async { 7 }).await;
        (late.is_err(), waited, early)
    });
    let (late, waited, early) = join_within(handle).unwrap();
    assert!(late, "the timeout fired");
    assert!(waited >= Duration::from_millis(30));
    assert_eq!(early, Ok(7));
}

#[test]
fn interval_ticks_on_schedule() {
    let handle = netpoll::spawn(async {
        let mut ticks = time::interval(Duration::from_millis(10));
        let first = ticks.tick().await;
        let mut last = first;
        for _ in 0..5 {
            last = ticks.tick().await;
        }
        (last - first, Instant::now() - first)
    });
    let (scheduled, elapsed) = join_within(handle).unwrap();
    assert_eq!(scheduled, Duration::from_millis(50));
    assert!(elapsed >= Duration::from_millis(50));
}

async fn echo(mut conn: TcpConn) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 4096];
    let mut total = 0;
    loop {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            return Ok(total);
        }
        conn.write_all(&buf[..n]).await?;
        total += n as u64;
    }
}

/// 10,000 tasks on 2 pollers: 5,000 echo servers accepted in a task, 5,000 clients, every byte
/// checked.
#[test]
fn ten_thousand_tasks_echo_on_two_pollers() {
    const PAIRS: usize = 5000;
    let m = manager(2);
    let listener = net::ListenConfig::new()
        .poll_manager(m.clone())
        .listen_tcp("tcp", "127.0.0.1:0")
        .unwrap();
    let addr = listener.local_addr();
    let poller = m.pick();
    let accepting = task::spawn_on(&poller, async move {
        let mut servers = Vec::with_capacity(PAIRS);
        for _ in 0..PAIRS {
            let (conn, _) = listener.accept_async().await?;
            servers.push(netpoll::spawn(echo(conn)));
        }
        let mut total = 0;
        for server in servers {
            total += server.await.map_err(std::io::Error::from)??;
        }
        Ok::<_, std::io::Error>(total)
    })
    .unwrap();
    let clients: Vec<_> = (0..PAIRS)
        .map(|i| {
            let poller = m.pick();
            task::spawn_on(&poller, async move {
                let mut conn = net::Dialer::new().dial_tcp_async("tcp", addr).await?;
                let message = common::pattern(i as u64, 64 + i % 512);
                conn.write_all(&message).await?;
                let mut reply = vec![0u8; message.len()];
                conn.read_exact(&mut reply).await?;
                assert!(reply == message, "client {i}: echo differs");
                Ok::<_, std::io::Error>(message.len() as u64)
            })
            .unwrap()
        })
        .collect();
    let mut sent = 0;
    for client in clients {
        sent += join_within(client).unwrap().unwrap();
    }
    assert_eq!(join_within(accepting).unwrap().unwrap(), sent);
}

#[test]
fn close_from_a_foreign_thread_wakes_a_pending_task_read() {
    let listener = net::listen_tcp("tcp", "127.0.0.1:0").unwrap();
    let _client = std::net::TcpStream::connect(listener.local_addr().to_string()).unwrap();
    let (server, _) = listener.accept().unwrap();
    let server = Arc::new(server);
    let (started_tx, started_rx) = mpsc::channel();
    let reading = netpoll::spawn({
        let server = server.clone();
        async move {
            let _ = started_tx.send(());
            let mut reader = &*server;
            reader.read(&mut [0u8; 8]).await
        }
    });
    started_rx.recv_timeout(LIMIT).unwrap();
    server.close_now().unwrap();
    let err = join_within(reading).unwrap().unwrap_err();
    assert!(net::is_closed(&err), "{err}");
}

/// The connection is registered on poller B, the task reading it runs on poller A: every wake
/// crosses threads (remote push + trigger) and the bytes still arrive in order.
#[test]
fn a_task_on_one_poller_reads_a_connection_of_another() {
    let a = manager(1);
    let b = manager(1);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let conn = net::Dialer::new()
        .poll_manager(b.clone())
        .dial_tcp("tcp", listener.local_addr().unwrap())
        .unwrap();
    let (mut peer, _) = listener.accept().unwrap();
    let poller_a = a.pick();
    let reading = task::spawn_on(&poller_a, async move {
        let mut conn = conn;
        let mut got = Vec::new();
        conn.read_to_end(&mut got).await.map(|_| got)
    })
    .unwrap();
    let data = common::pattern(3, 1 << 20);
    std::io::Write::write_all(&mut peer, &data).unwrap();
    drop(peer);
    let got = join_within(reading).unwrap().unwrap();
    assert!(got == data);
}
