//! 10,000 coroutines echoing at once on two pollers (5,000 client coroutines and the 5,000
//! server coroutines serving them), every byte checked. Alone in its binary: it holds 10,000
//! sockets and 20,000 stack mappings.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netpoll::net::{Dialer, ListenConfig};
use netpoll::poll::PollManager;

const PAIRS: usize = 5_000;
const BYTES: usize = 2_000;

fn pattern(conn: usize) -> Vec<u8> {
    (0..BYTES).map(|i| (i * 31 + conn * 7) as u8).collect()
}

#[test]
fn ten_thousand_coroutines_echo_on_two_pollers() {
    let limit = rlimit_nofile();
    if limit < (2 * PAIRS + 200) as u64 {
        panic!(
            "RLIMIT_NOFILE {limit} is below the {} this test needs",
            2 * PAIRS + 200
        );
    }
    let manager = Arc::new(PollManager::new(2).unwrap());
    let pollers = manager.pollers();
    let listener = Arc::new(
        ListenConfig::new()
            .with_backlog(4096)
            .poll_manager(manager.clone())
            .listen_tcp("tcp", "127.0.0.1:0")
            .unwrap(),
    );
    let addr = listener.local_addr();
    let deadline = Instant::now() + Duration::from_secs(120);
    // The acceptor runs on poller 0 and spawns each server coroutine on the poller its
    // connection was registered on (its own), so wakes stay local.
    let acceptor = {
        let listener = listener.clone();
        netpoll::go_on(&pollers[0], move || {
            let here = netpoll::rt::current_poller().unwrap();
            let mut servers = Vec::with_capacity(PAIRS);
            for _ in 0..PAIRS {
                let (conn, _) = listener.accept()?;
                conn.set_deadline(Some(deadline))?;
                servers.push(netpoll::go_on(&here, move || -> std::io::Result<usize> {
                    let mut buf = [0u8; 1024];
                    let mut total = 0;
                    loop {
                        let n = (&conn).read(&mut buf)?;
                        if n == 0 {
                            return Ok(total);
                        }
                        (&conn).write_all(&buf[..n])?;
                        total += n;
                    }
                }));
            }
            Ok::<_, std::io::Error>(servers)
        })
    };
    let clients: Vec<_> = (0..PAIRS)
        .map(|i| {
            netpoll::go_on(&pollers[i % 2], move || -> std::io::Result<()> {
                let conn = Dialer::new()
                    .timeout(Duration::from_secs(60))
                    .dial_tcp("tcp", addr)?;
                conn.set_deadline(Some(deadline))?;
                let data = pattern(i);
                // Halves, so every echo is in flight while other coroutines run.
                let mut back = vec![0u8; BYTES];
                (&conn).write_all(&data[..BYTES / 2])?;
                (&conn).read_exact(&mut back[..BYTES / 2])?;
                netpoll::yield_now();
                (&conn).write_all(&data[BYTES / 2..])?;
                (&conn).read_exact(&mut back[BYTES / 2..])?;
                conn.close_write()?;
                assert_eq!(
                    (&conn).read(&mut [0u8; 1])?,
                    0,
                    "echo sent more than it got"
                );
                assert!(back == data, "connection {i}: echo differs");
                Ok(())
            })
        })
        .collect();
    for (i, client) in clients.into_iter().enumerate() {
        client
            .join()
            .unwrap_or_else(|_| panic!("client {i} panicked"))
            .unwrap_or_else(|e| panic!("client {i}: {e}"));
    }
    let servers = acceptor.join().unwrap().unwrap();
    let served: usize = servers
        .into_iter()
        .map(|s| s.join().unwrap().unwrap())
        .sum();
    assert_eq!(served, PAIRS * BYTES);
    assert!(Instant::now() < deadline);
}

fn rlimit_nofile() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX)
}
