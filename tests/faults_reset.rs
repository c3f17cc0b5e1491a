//! Resets: a client that resets (SO_LINGER 0) in the middle of a large echo, and a storm of
//! clients that connect and reset before the server accepts them. The server survives, each
//! connection ends exactly once, other clients are unaffected, every byte the resetting
//! client got is what it sent (in order), and the fd count returns to its baseline.
//! Reactor face with coroutine, pool and inline handlers; Go-net face on threads, coroutines
//! and tasks.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use common::faults::{
    self, checked_echo, echo_async, echo_sync, reset, wait_fds, wait_for, Driver, NetServer,
    DRIVERS, HANDLERS,
};
use common::{echo, pattern, TestServer, LIMIT};

const SENT: usize = 16 << 20;
/// The client resets once this much came back.
const RESET_AFTER: usize = 1 << 20;

/// Sends a large pattern while reading the echo; once RESET_AFTER bytes came back it stops
/// writing, and resets. Returns how many bytes came back, all checked against what was sent.
fn reset_mid_echo(addr: SocketAddr, seed: u64) -> usize {
    let client = TcpStream::connect(addr).unwrap();
    client.set_read_timeout(Some(LIMIT)).unwrap();
    client.set_write_timeout(Some(LIMIT)).unwrap();
    let data = Arc::new(pattern(seed, SENT));
    let stop = Arc::new(AtomicBool::new(false));
    let writing = {
        let mut writer = client.try_clone().unwrap();
        let (data, stop) = (data.clone(), stop.clone());
        std::thread::spawn(move || {
            for chunk in data.chunks(16 * 1024) {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                writer.write_all(chunk).unwrap();
            }
            panic!("sent everything before the reset point");
        })
    };
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    // Keep reading until the writer has stopped (so it cannot block on a full socket), then
    // reset with the rest of the echo in flight.
    let started = std::time::Instant::now();
    while !writing.is_finished() {
        assert!(started.elapsed() < LIMIT, "the echo stalled");
        match (&client).read(&mut buf) {
            Ok(0) => panic!("EOF before the reset"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            // Once the writer stops, the echo may have caught up: look at it again.
            Err(e) if stop.load(Ordering::SeqCst) && e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("echo read failed before the reset: {e}"),
        }
        if got.len() >= RESET_AFTER && !stop.swap(true, Ordering::SeqCst) {
            client
                .set_read_timeout(Some(std::time::Duration::from_millis(20)))
                .unwrap();
        }
    }
    writing.join().unwrap();
    reset(client);
    assert!(
        got[..] == data[..got.len()],
        "echo bytes out of order or changed"
    );
    got.len()
}

#[test]
fn reactor_survives_a_reset_in_the_middle_of_a_large_echo() {
    let _serial = faults::serial();
    for handlers in HANDLERS {
        let closes = Arc::new(AtomicUsize::new(0));
        let disconnects = Arc::new(AtomicUsize::new(0));
        let prepared = Arc::new(AtomicUsize::new(0));
        let server = TestServer::start(
            handlers
                .builder()
                .on_prepare({
                    let (closes, prepared) = (closes.clone(), prepared.clone());
                    move |conn| {
                        prepared.fetch_add(1, Ordering::SeqCst);
                        let closes = closes.clone();
                        conn.add_close_callback(move |_| {
                            closes.fetch_add(1, Ordering::SeqCst);
                        });
                    }
                })
                .on_request(echo)
                .on_disconnect({
                    let disconnects = disconnects.clone();
                    move |_, _| {
                        disconnects.fetch_add(1, Ordering::SeqCst);
                    }
                })
                .build()
                .unwrap(),
        );
        let baseline = faults::baseline();
        let addr = server.addr;
        // Two resetting clients and one normal echo at the same time.
        let resets: Vec<_> = (0..2)
            .map(|seed| std::thread::spawn(move || reset_mid_echo(addr, seed)))
            .collect();
        let normal = std::thread::spawn(move || checked_echo(addr, Arc::new(pattern(9, 4 << 20))));
        for r in resets {
            assert!(r.join().unwrap() >= RESET_AFTER);
        }
        normal.join().unwrap();
        // And after it, a new client is served.
        checked_echo(addr, Arc::new(pattern(10, 100_000)));
        wait_for("connections closed", || server.server.connections() == 0);
        wait_for("close callbacks", || closes.load(Ordering::SeqCst) == 4);
        wait_fds(baseline, &format!("{handlers:?}"));
        assert_eq!(prepared.load(Ordering::SeqCst), 4, "{handlers:?}");
        assert_eq!(
            closes.load(Ordering::SeqCst),
            4,
            "{handlers:?}: close callbacks"
        );
        // One each: the normal clients' FIN, the resetting clients' RST (or the failed write
        // to them) end the connection the same way.
        assert_eq!(
            disconnects.load(Ordering::SeqCst),
            4,
            "{handlers:?}: on_disconnect"
        );
    }
}

fn net_survives_a_reset_in_the_middle_of_a_large_echo(
    driver: Driver,
    resetting: u64,
    with_normal: bool,
) {
    let _serial = faults::serial();
    {
        let baseline = faults::baseline();
        let server = NetServer::start(driver, echo_sync(), echo_async());
        let addr = server.addr;
        let resets: Vec<_> = (0..resetting)
            .map(|seed| std::thread::spawn(move || reset_mid_echo(addr, seed)))
            .collect();
        let normal = std::thread::spawn(move || {
            if with_normal {
                checked_echo(addr, Arc::new(pattern(9, 4 << 20)))
            }
        });
        let resets: Vec<_> = resets.into_iter().map(|r| r.join()).collect();
        let normal = normal.join();
        if resets.iter().any(|r| r.is_err()) || normal.is_err() {
            server.stop();
            panic!("{driver:?}: handlers: {:?}", server.all_results());
        }
        checked_echo(addr, Arc::new(pattern(10, 100_000)));
        server.stop();
        let results = server.all_results();
        assert_eq!(
            results.len(),
            resetting as usize + 1 + with_normal as usize,
            "{driver:?}"
        );
        let ok: Vec<u64> = results
            .iter()
            .filter_map(|r| r.as_ref().ok().copied())
            .collect();
        let mut ok = ok;
        ok.sort();
        let expected: &[u64] = if with_normal {
            &[100_000, 4 << 20]
        } else {
            &[100_000]
        };
        assert_eq!(ok, expected, "{driver:?}: the normal echoes");
        for e in results.iter().filter_map(|r| r.as_ref().err()) {
            assert!(
                matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe),
                "{driver:?}: {e}"
            );
        }
        drop(server);
        wait_fds(baseline, &format!("{driver:?}"));
    }
}

#[test]
fn net_on_threads_survives_a_reset_in_the_middle_of_a_large_echo() {
    net_survives_a_reset_in_the_middle_of_a_large_echo(Driver::Threads, 2, true);
}

#[test]
fn net_on_coroutines_survives_a_reset_in_the_middle_of_a_large_echo() {
    net_survives_a_reset_in_the_middle_of_a_large_echo(Driver::Coroutines, 2, true);
}

#[test]
fn net_on_tasks_survives_a_reset_in_the_middle_of_a_large_echo() {
    net_survives_a_reset_in_the_middle_of_a_large_echo(Driver::Tasks, 2, true);
}

const STORM: usize = 500;

/// STORM clients connect and reset at once; the listener has not accepted any of them yet.
fn storm(addr: SocketAddr) {
    for _ in 0..STORM {
        reset(TcpStream::connect(addr).unwrap());
    }
}

#[test]
fn reactor_keeps_serving_after_a_connect_then_reset_storm() {
    let _serial = faults::serial();
    for handlers in HANDLERS {
        let baseline = faults::baseline();
        let closes = Arc::new(AtomicUsize::new(0));
        let prepared = Arc::new(AtomicUsize::new(0));
        let listener = netpoll::Listener::bind_tcp("127.0.0.1:0").unwrap();
        let addr = *listener.local_addr().as_inet().unwrap();
        // The backlog fills with reset connections before serve's first accept.
        storm(addr);
        let mut server = TestServer::start_on(
            handlers
                .builder()
                .on_prepare({
                    let (closes, prepared) = (closes.clone(), prepared.clone());
                    move |conn| {
                        prepared.fetch_add(1, Ordering::SeqCst);
                        let closes = closes.clone();
                        conn.add_close_callback(move |_| {
                            closes.fetch_add(1, Ordering::SeqCst);
                        });
                    }
                })
                .on_request(echo)
                .build()
                .unwrap(),
            listener,
            addr,
        );
        checked_echo(addr, Arc::new(pattern(1, 1 << 20)));
        let mut client = server.connect();
        client.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        client.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        drop(client);
        wait_for("connections closed", || server.server.connections() == 0);
        let accepted = prepared.load(Ordering::SeqCst);
        wait_for("close callbacks", || {
            closes.load(Ordering::SeqCst) == accepted
        });
        assert!(
            (2..=STORM + 2).contains(&accepted),
            "{handlers:?}: {accepted}"
        );
        server.stop().unwrap();
        drop(server);
        wait_fds(baseline, &format!("{handlers:?}"));
        assert_eq!(closes.load(Ordering::SeqCst), accepted, "{handlers:?}");
    }
}

#[test]
fn net_keeps_serving_after_a_connect_then_reset_storm() {
    let _serial = faults::serial();
    for driver in DRIVERS {
        let baseline = faults::baseline();
        let listener = Arc::new(netpoll::net::listen_tcp("tcp", "127.0.0.1:0").unwrap());
        storm(listener.local_addr());
        let server = NetServer::start_on(driver, listener, echo_sync(), echo_async());
        checked_echo(server.addr, Arc::new(pattern(1, 1 << 20)));
        server.stop();
        let results = server.all_results();
        let accepted = results.len();
        assert!(
            (1..=STORM + 1).contains(&accepted),
            "{driver:?}: {accepted}"
        );
        let served: Vec<_> = results
            .iter()
            .filter(|r| matches!(r, Ok(n) if *n > 0))
            .collect();
        assert_eq!(served.len(), 1, "{driver:?}");
        for e in results.iter().filter_map(|r| r.as_ref().err()) {
            assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{driver:?}: {e}");
        }
        drop(server);
        wait_fds(baseline, &format!("{driver:?}"));
    }
}
