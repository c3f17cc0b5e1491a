//! The reactor face end to end: an `EventLoop` echo server under real loopback traffic.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::thread;

use common::{echo, pattern, TestServer, LIMIT};
use netpoll::{EventLoop, Listener};

fn echo_server() -> TestServer {
    TestServer::start(EventLoop::builder().on_request(echo).build().unwrap())
}

#[test]
fn echoes_over_500_concurrent_connections_every_byte_checked() {
    const CONNS: usize = 500;
    const THREADS: usize = 10;
    const ROUNDS: usize = 4;
    let server = echo_server();
    let addr = server.addr;
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            thread::spawn(move || {
                // Every connection of this thread is open at once; rounds interleave them.
                let mut conns: Vec<TcpStream> = (0..CONNS / THREADS)
                    .map(|_| {
                        let s = TcpStream::connect(addr).unwrap();
                        s.set_read_timeout(Some(LIMIT)).unwrap();
                        s
                    })
                    .collect();
                for round in 0..ROUNDS {
                    for (i, conn) in conns.iter_mut().enumerate() {
                        let seed = (t * 1_000_000 + i * 100 + round) as u64;
                        conn.write_all(&pattern(seed, 100 + i % 300)).unwrap();
                    }
                    for (i, conn) in conns.iter_mut().enumerate() {
                        let seed = (t * 1_000_000 + i * 100 + round) as u64;
                        let expected = pattern(seed, 100 + i % 300);
                        let mut got = vec![0u8; expected.len()];
                        conn.read_exact(&mut got).unwrap();
                        assert_eq!(got, expected, "connection {t}/{i} round {round}");
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
}

#[test]
fn sixteen_mib_each_way_on_one_connection() {
    const TOTAL: usize = 16 << 20;
    let server = echo_server();
    let mut conn = server.connect();
    let mut writer = conn.try_clone().unwrap();
    let data = pattern(7, TOTAL);
    let expected = data.clone();
    let sender = thread::spawn(move || {
        for chunk in data.chunks(100_003) {
            writer.write_all(chunk).unwrap();
        }
    });
    let mut got = vec![0u8; TOTAL];
    conn.read_exact(&mut got).unwrap();
    sender.join().unwrap();
    assert!(got == expected, "16 MiB echo differs");
}

#[test]
fn one_thousand_short_lived_connections_in_parallel() {
    const THREADS: usize = 8;
    const EACH: usize = 125;
    let server = echo_server();
    let addr = server.addr;
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            thread::spawn(move || {
                for i in 0..EACH {
                    let mut conn = TcpStream::connect(addr).unwrap();
                    conn.set_read_timeout(Some(LIMIT)).unwrap();
                    let msg = pattern((t * EACH + i) as u64, 64);
                    conn.write_all(&msg).unwrap();
                    let mut got = [0u8; 64];
                    conn.read_exact(&mut got).unwrap();
                    assert_eq!(&got[..], &msg[..]);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
}

#[test]
fn echoes_over_a_unix_socket() {
    let path = std::env::temp_dir().join(format!("netpoll-echo-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = Listener::bind_unix(&path).unwrap();
    let server = EventLoop::builder().on_request(echo).build().unwrap();
    let mut running = TestServer::start_on(server, listener, "127.0.0.1:1".parse().unwrap());
    let mut conn = UnixStream::connect(&path).unwrap();
    conn.set_read_timeout(Some(LIMIT)).unwrap();
    conn.write_all(b"over unix").unwrap();
    let mut got = [0u8; 9];
    conn.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"over unix");
    running.stop().unwrap();
    drop(running);
    assert!(!path.exists(), "the listener removes its socket file");
}

#[test]
fn serves_a_listener_converted_from_std() {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    let listener = Listener::try_from(std_listener).unwrap();
    let server = EventLoop::builder().on_request(echo).build().unwrap();
    let _running = TestServer::start_on(server, listener, addr);
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(LIMIT)).unwrap();
    conn.write_all(b"std").unwrap();
    let mut got = [0u8; 3];
    conn.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"std");
}

#[test]
fn inline_handlers_echo_on_the_poller_threads() {
    let server = TestServer::start(
        EventLoop::builder()
            .on_request(echo)
            .inline_handlers()
            .num_loops(2)
            .build()
            .unwrap(),
    );
    let mut conns: Vec<TcpStream> = (0..20).map(|_| server.connect()).collect();
    for (i, conn) in conns.iter_mut().enumerate() {
        conn.write_all(&pattern(i as u64, 5000)).unwrap();
    }
    for (i, conn) in conns.iter_mut().enumerate() {
        let mut got = vec![0u8; 5000];
        conn.read_exact(&mut got).unwrap();
        assert_eq!(got, pattern(i as u64, 5000));
    }
}

#[test]
fn accepted_tcp_connections_have_nodelay() {
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let server = TestServer::start(
        EventLoop::builder()
            .on_prepare(move |conn| {
                let _ = tx
                    .lock()
                    .unwrap()
                    .send(conn.socket().tcp_nodelay().unwrap());
            })
            .build()
            .unwrap(),
    );
    let _conn = server.connect();
    assert!(rx.recv_timeout(LIMIT).unwrap());
}
