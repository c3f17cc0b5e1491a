//! The async dial inside netpoll tasks (issue 13, item 3): a host name resolves (on the handler
//! pool, no thread per lookup), the dialed connection registers on the task's own poller (and an
//! accepted one too), a refused connect fails with the dial's context, and `Dialer::timeout`
//! fires against a blackholed address.
//!
//! A "blackholed" address is a listener with backlog 1 that never accepts, its queue filled
//! first (as in `tests/net_dial.rs`): the kernel then drops further SYNs, so a connect hangs
//! until its deadline. When the machine cannot provide one the test prints `SKIPPED` and
//! returns. No test sleeps to wait for another thread: waits are channels bounded by `LIMIT`.

mod common;

use std::io::{self, ErrorKind};
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use common::LIMIT;
use futures::io::{AsyncReadExt, AsyncWriteExt};
use netpoll::net::{self, Dialer, ListenConfig, TcpConn, TcpListener};
use netpoll::poll::PollManager;
use netpoll::task;

/// Slack allowed past a deadline for a loaded machine to notice it.
const SLACK: Duration = Duration::from_secs(2);

/// How long a probe connect may take before its target counts as blackholed.
const PROBE: Duration = Duration::from_millis(100);

fn manager(n: usize) -> Arc<PollManager> {
    Arc::new(PollManager::new(n).unwrap())
}

/// Joins a task returning `io::Result` on a helper thread, bounded by LIMIT.
fn join_within<T: Send + 'static>(handle: task::JoinHandle<io::Result<T>>) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(handle.join());
    });
    rx.recv_timeout(LIMIT)
        .expect("the task did not finish in time")
        .expect("the task failed")
        .expect("the task returned an error")
}

/// A listener with a full queue that never accepts.
struct Blackhole {
    addr: SocketAddr,
    _listener: TcpListener,
    _queued: Vec<TcpConn>,
}

fn blackhole(test: &str) -> Option<Blackhole> {
    let listener = match ListenConfig::new()
        .with_backlog(1)
        .listen_tcp_addr(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
    {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("SKIPPED {test}: cannot listen: {e}");
            return None;
        }
    };
    let addr = listener.local_addr();
    let mut queued = Vec::new();
    let mut timeouts = 0;
    for _ in 0..16 {
        match Dialer::new().timeout(PROBE).dial_tcp("tcp", addr) {
            Ok(conn) => {
                queued.push(conn);
                timeouts = 0;
            }
            Err(e) if net::is_timeout(&e) => {
                timeouts += 1;
                if timeouts == 2 {
                    return Some(Blackhole {
                        addr,
                        _listener: listener,
                        _queued: queued,
                    });
                }
            }
            Err(e) => {
                eprintln!("SKIPPED {test}: filling the queue of {addr} failed: {e}");
                return None;
            }
        }
    }
    eprintln!("SKIPPED {test}: the kernel completed every connect to {addr}: SYNs are not dropped");
    None
}

#[test]
fn a_task_dials_a_host_name() {
    let listener = StdListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let dialing = netpoll::spawn(async move {
        let mut conn = Dialer::new()
            .timeout(LIMIT)
            .dial_tcp_async("tcp", format!("localhost:{port}"))
            .await?;
        conn.write_all(b"ping").await?;
        let mut reply = [0u8; 4];
        conn.read_exact(&mut reply).await?;
        Ok::<_, io::Error>((conn.peer_addr(), reply))
    });
    let (mut server, _) = listener.accept().unwrap();
    server.set_read_timeout(Some(LIMIT)).unwrap();
    let mut got = [0u8; 4];
    io::Read::read_exact(&mut server, &mut got).unwrap();
    assert_eq!(&got, b"ping");
    io::Write::write_all(&mut server, b"pong").unwrap();
    let (peer, reply) = join_within(dialing);
    assert_eq!(peer, SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    assert_eq!(&reply, b"pong");
}

/// Each poller's task dials (by address and by name) and accepts: every connection registers
/// on the poller of the task that made it, even with a dialer naming other pollers.
#[test]
fn connections_a_task_dials_or_accepts_register_on_its_poller() {
    let pollers = manager(2);
    let elsewhere = manager(1);
    let listener = net::listen_tcp("tcp", "127.0.0.1:0").unwrap();
    let addr = listener.local_addr();
    let listener = Arc::new(listener);
    for poller in pollers.pollers() {
        let (listener, elsewhere) = (listener.clone(), elsewhere.clone());
        let id = poller.id();
        let ids = task::spawn_on(&poller, async move {
            let by_addr = Dialer::new().dial_tcp_async("tcp", addr).await?;
            let by_name = Dialer::new()
                .poll_manager(elsewhere)
                .dial_tcp_async("tcp", format!("localhost:{}", addr.port()))
                .await?;
            let (first, _) = listener.accept_async().await?;
            let (second, _) = listener.accept_async().await?;
            Ok::<_, io::Error>([
                by_addr.poller_id(),
                by_name.poller_id(),
                first.poller_id(),
                second.poller_id(),
            ])
        })
        .unwrap();
        assert_eq!(join_within(ids), [id; 4], "poller {id}");
    }
}

#[test]
fn a_refused_async_dial_fails_with_the_dial_context() {
    let closed = {
        let probe = StdListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        probe.local_addr().unwrap()
    };
    let dialing = netpoll::spawn(async move {
        Ok::<_, io::Error>(Dialer::new().dial_tcp_async("tcp", closed).await.err())
    });
    let err = join_within(dialing).expect("a dial to a closed port connected");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    assert!(
        err.to_string().starts_with(&format!("dial tcp {closed}: ")),
        "{err}"
    );
}

#[test]
fn an_async_dial_in_a_task_times_out_at_the_dialer_timeout() {
    let Some(hole) = blackhole("async dial timeout in a task") else {
        return;
    };
    let timeout = Duration::from_millis(300);
    let addr = hole.addr;
    let dialing = netpoll::spawn(async move {
        let started = Instant::now();
        let result = Dialer::new()
            .timeout(timeout)
            .dial_tcp_async("tcp", addr)
            .await;
        Ok::<_, io::Error>((result.err(), started.elapsed()))
    });
    let (err, took) = join_within(dialing);
    let err = err.expect("a dial to a blackholed address connected");
    assert!(net::is_timeout(&err), "{err}");
    assert!(took >= timeout, "gave up early: {took:?}");
    assert!(took < timeout + SLACK, "gave up late: {took:?}");
    drop(hole);
}
