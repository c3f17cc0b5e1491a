//! The Go-net face's connections, checked as behaviours the way Go's `net/timeout_test.go` and
//! `x/net/nettest` check a `net.Conn`: deadlines, close from another thread, concurrent reads
//! and writes, random-size I/O, many blocked readers. Real loopback sockets throughout.
//!
//! Some tests let time pass (`sleep`) so a deadline can fire or not; none sleeps to wait for
//! another thread: those waits are channels and joins bounded by `LIMIT`.

mod common;

use std::io::{ErrorKind, IoSlice, IoSliceMut, Read, Write};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::LIMIT;
use netpoll::net::{self, ListenConfig, TcpConn, TcpListener, UnixConn};

/// A connected TCP pair on loopback: (dialed, accepted).
fn tcp_pair() -> (TcpConn, TcpConn) {
    let listener = net::listen_tcp("tcp", "127.0.0.1:0").unwrap();
    let addr = listener.local_addr().to_string();
    let client = net::dial_tcp("tcp", &addr).unwrap();
    let (server, peer) = listener.accept().unwrap();
    assert_eq!(peer, client.local_addr());
    (client, server)
}

/// Runs `f` on a thread and waits at most `LIMIT` for it.
fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(LIMIT)
        .expect("operation did not finish in time")
}

/// Fills the socket's send buffer: writes with a short deadline until it times out.
fn fill_send_buffer(conn: &TcpConn) {
    conn.set_write_deadline(Some(Instant::now() + Duration::from_millis(100)))
        .unwrap();
    let chunk = vec![0u8; 64 * 1024];
    let start = Instant::now();
    loop {
        match (&*conn).write(&chunk) {
            Ok(n) if n == chunk.len() => assert!(start.elapsed() < LIMIT, "never filled"),
            Ok(_) => {} // cut short by the deadline; the next call reports it
            Err(e) => {
                assert!(net::is_timeout(&e), "{e}");
                break;
            }
        }
    }
    conn.set_write_deadline(None).unwrap();
}

#[test]
fn read_deadline_fires_with_a_timeout_error() {
    let (client, _server) = tcp_pair();
    let start = Instant::now();
    client
        .set_read_deadline(Some(start + Duration::from_millis(50)))
        .unwrap();
    let err = (&client).read(&mut [0u8; 8]).unwrap_err();
    assert!(net::is_timeout(&err), "{err}");
    assert_eq!(err.kind(), ErrorKind::TimedOut);
    assert!(!net::is_closed(&err));
    assert!(start.elapsed() >= Duration::from_millis(50));
    assert!(start.elapsed() < LIMIT);
    // It stays expired until the deadline changes.
    assert!(net::is_timeout(&(&client).read(&mut [0u8; 8]).unwrap_err()));
}

#[test]
fn write_deadline_fires_when_the_peer_does_not_read() {
    let (client, _server) = tcp_pair();
    let start = Instant::now();
    fill_send_buffer(&client);
    assert!(start.elapsed() >= Duration::from_millis(100));
    // With the deadline cleared the socket is still full: a new short deadline fires again.
    client
        .set_write_deadline(Some(Instant::now() + Duration::from_millis(30)))
        .unwrap();
    // The kernel may still take a little (its buffers grow), but never 8 MiB in 30 ms.
    let big = vec![1u8; 8 << 20];
    match (&client).write(&big) {
        Ok(n) => assert!(n < big.len(), "a full socket took everything"),
        Err(e) => assert!(net::is_timeout(&e), "{e}"),
    }
    assert!(net::is_timeout(&(&client).write(&big).unwrap_err()));
}

#[test]
fn past_deadline_fails_at_once_even_with_data_buffered() {
    let (client, server) = tcp_pair();
    (&server).write_all(b"ready").unwrap();
    // Wait (bounded) until the data has arrived, with a generous deadline.
    client
        .set_read_deadline(Some(Instant::now() + LIMIT))
        .unwrap();
    let mut first = [0u8; 1];
    assert_eq!((&client).read(&mut first).unwrap(), 1);

    client
        .set_read_deadline(Some(Instant::now() - Duration::from_secs(1)))
        .unwrap();
    let start = Instant::now();
    let err = (&client).read(&mut [0u8; 8]).unwrap_err();
    assert!(net::is_timeout(&err), "{err}");
    assert!(
        start.elapsed() < Duration::from_millis(100),
        "failed at once"
    );
    client
        .set_write_deadline(Some(Instant::now() - Duration::from_secs(1)))
        .unwrap();
    assert!(net::is_timeout(&(&client).write(b"x").unwrap_err()));

    // Clearing the deadline makes the buffered data readable again.
    client.set_deadline(None).unwrap();
    let mut rest = [0u8; 4];
    client.read_exact_all(&mut rest);
    assert_eq!(&rest, b"eady");
}

/// `read_exact` through `&TcpConn`, bounded by the connection's own deadline.
trait ReadExactAll {
    fn read_exact_all(&self, buf: &mut [u8]);
}
impl ReadExactAll for TcpConn {
    fn read_exact_all(&self, buf: &mut [u8]) {
        self.set_read_deadline(Some(Instant::now() + LIMIT))
            .unwrap();
        (&*self).read_exact(buf).unwrap();
        self.set_read_deadline(None).unwrap();
    }
}

#[test]
fn past_deadline_wakes_a_pending_read() {
    let (client, _server) = tcp_pair();
    let client = Arc::new(client);
    let reader = {
        let client = client.clone();
        thread::spawn(move || (&*client).read(&mut [0u8; 8]))
    };
    thread::sleep(Duration::from_millis(30)); // let the read park (not required for a pass)
    client
        .set_read_deadline(Some(Instant::now() - Duration::from_secs(1)))
        .unwrap();
    let err = bounded(move || reader.join().unwrap()).unwrap_err();
    assert!(net::is_timeout(&err), "{err}");
}

#[test]
fn deadline_extended_while_blocked_keeps_waiting() {
    let (client, server) = tcp_pair();
    let client = Arc::new(client);
    client
        .set_read_deadline(Some(Instant::now() + Duration::from_millis(100)))
        .unwrap();
    let reader = {
        let client = client.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4];
            (&*client).read(&mut buf).map(|n| buf[..n].to_vec())
        })
    };
    client
        .set_read_deadline(Some(Instant::now() + LIMIT))
        .unwrap();
    thread::sleep(Duration::from_millis(300)); // past the first deadline
    (&server).write_all(b"late").unwrap();
    let got = bounded(move || reader.join().unwrap()).unwrap();
    assert_eq!(got, b"late");
}

#[test]
fn deadline_shortened_while_blocked_fires_early() {
    let (client, _server) = tcp_pair();
    let client = Arc::new(client);
    client
        .set_read_deadline(Some(Instant::now() + Duration::from_secs(3600)))
        .unwrap();
    let (started_tx, started_rx) = mpsc::channel();
    let reader = {
        let client = client.clone();
        thread::spawn(move || {
            started_tx.send(()).unwrap();
            let start = Instant::now();
            ((&*client).read(&mut [0u8; 4]), start.elapsed())
        })
    };
    started_rx.recv_timeout(LIMIT).unwrap();
    client
        .set_read_deadline(Some(Instant::now() + Duration::from_millis(50)))
        .unwrap();
    let (result, waited) = bounded(move || reader.join().unwrap());
    assert!(net::is_timeout(&result.unwrap_err()));
    assert!(waited < LIMIT);
}

#[test]
fn deadline_cleared_waits_forever() {
    let (client, server) = tcp_pair();
    client
        .set_read_deadline(Some(Instant::now() + Duration::from_millis(50)))
        .unwrap();
    client.set_read_deadline(None).unwrap();
    let client = Arc::new(client);
    let reader = {
        let client = client.clone();
        thread::spawn(move || (&*client).read(&mut [0u8; 4]))
    };
    thread::sleep(Duration::from_millis(200)); // the cleared deadline's timer fires meanwhile
    (&server).write_all(b"data").unwrap();
    assert_eq!(bounded(move || reader.join().unwrap()).unwrap(), 4);
}

#[test]
fn many_deadline_moves_leave_only_the_last_one() {
    // The usual idle-timeout pattern: push the deadline forward before every read. A stale
    // timer must never expire the new deadline.
    let (client, server) = tcp_pair();
    for i in 0..200u32 {
        client
            .set_read_deadline(Some(
                Instant::now() + Duration::from_millis(20 + u64::from(i % 7)),
            ))
            .unwrap();
        (&server).write_all(&i.to_be_bytes()).unwrap();
        let mut buf = [0u8; 4];
        (&client).read_exact(&mut buf).unwrap();
        assert_eq!(u32::from_be_bytes(buf), i);
    }
    client
        .set_read_deadline(Some(Instant::now() + Duration::from_millis(300)))
        .unwrap();
    thread::sleep(Duration::from_millis(60)); // every earlier timer has fired by now
    (&server).write_all(b"ok").unwrap();
    let mut buf = [0u8; 2];
    (&client).read_exact(&mut buf).unwrap();
}

#[test]
fn close_unblocks_a_pending_read_with_the_closed_error() {
    let (client, _server) = tcp_pair();
    let client = Arc::new(client);
    let reader = {
        let client = client.clone();
        thread::spawn(move || (&*client).read(&mut [0u8; 8]))
    };
    thread::sleep(Duration::from_millis(30)); // let the read park (not required for a pass)
    client.close_now().unwrap();
    let err = bounded(move || reader.join().unwrap()).unwrap_err();
    assert!(net::is_closed(&err), "{err}");
    assert!(!net::is_timeout(&err));
    let route = format!("{}->{}", client.local_addr(), client.peer_addr());
    assert_eq!(
        err.to_string(),
        format!("read tcp {route}: use of closed network connection")
    );
    // Later calls and a second close fail the same way.
    assert!(net::is_closed(&(&*client).read(&mut [0u8; 1]).unwrap_err()));
    assert!(net::is_closed(&(&*client).write(b"x").unwrap_err()));
    assert!(net::is_closed(&client.close_now().unwrap_err()));
    assert!(net::is_closed(&client.set_deadline(None).unwrap_err()));
}

#[test]
fn close_unblocks_a_pending_write_with_the_closed_error() {
    let (client, _server) = tcp_pair();
    fill_send_buffer(&client);
    let client = Arc::new(client);
    let writer = {
        let client = client.clone();
        thread::spawn(move || loop {
            // Loops until an error: a write cut short returns its count first.
            if let Err(e) = (&*client).write(&[7u8; 256 * 1024]) {
                return e;
            }
        })
    };
    thread::sleep(Duration::from_millis(30)); // let the write park (not required for a pass)
    client.close_now().unwrap();
    let err = bounded(move || writer.join().unwrap());
    assert!(net::is_closed(&err), "{err}");
}

#[test]
fn close_is_seen_by_the_peer_and_drop_closes_too() {
    let (client, server) = tcp_pair();
    client.close_now().unwrap();
    server
        .set_read_deadline(Some(Instant::now() + LIMIT))
        .unwrap();
    assert_eq!((&server).read(&mut [0u8; 4]).unwrap(), 0, "EOF after close");
    let (client, server) = tcp_pair();
    drop(client);
    server
        .set_read_deadline(Some(Instant::now() + LIMIT))
        .unwrap();
    assert_eq!((&server).read(&mut [0u8; 4]).unwrap(), 0, "EOF after drop");
}

#[test]
fn a_pending_accept_is_unblocked_by_close() {
    let listener = Arc::new(net::listen_tcp("tcp", "127.0.0.1:0").unwrap());
    let acceptor = {
        let listener = listener.clone();
        thread::spawn(move || listener.accept().map(|_| ()))
    };
    thread::sleep(Duration::from_millis(30)); // let the accept park (not required for a pass)
    listener.close().unwrap();
    let err = bounded(move || acceptor.join().unwrap()).unwrap_err();
    assert!(net::is_closed(&err), "{err}");
    // The port is free again: nothing listens on it.
    let refused = std::net::TcpStream::connect(listener.local_addr()).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
}

#[test]
fn accept_deadline_fires() {
    let listener = net::listen_tcp("tcp", "127.0.0.1:0").unwrap();
    listener
        .set_deadline(Some(Instant::now() + Duration::from_millis(30)))
        .unwrap();
    assert!(net::is_timeout(&listener.accept().unwrap_err()));
}

#[test]
fn zero_length_read_returns_at_once() {
    let (client, _server) = tcp_pair();
    let start = Instant::now();
    assert_eq!((&client).read(&mut []).unwrap(), 0);
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[test]
fn concurrent_reads_and_writes_from_two_threads() {
    // One thread writes 8 MiB while another reads the echo of it on the same connection.
    const TOTAL: usize = 8 << 20;
    let (client, server) = tcp_pair();
    let echo = thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match (&server).read(&mut buf).unwrap() {
                0 => break,
                n => assert_eq!((&server).write(&buf[..n]).unwrap(), n),
            }
        }
    });
    client.set_deadline(Some(Instant::now() + LIMIT)).unwrap();
    let client = Arc::new(client);
    let writer = {
        let client = client.clone();
        thread::spawn(move || {
            let data: Vec<u8> = (0..TOTAL).map(|i| (i % 251) as u8).collect();
            for chunk in data.chunks(100_000) {
                assert_eq!((&*client).write(chunk).unwrap(), chunk.len());
            }
            client.close_write().unwrap();
        })
    };
    let mut got = 0usize;
    let mut buf = vec![0u8; 50_000];
    loop {
        let n = (&*client).read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        for (k, b) in buf[..n].iter().enumerate() {
            assert_eq!(*b, ((got + k) % 251) as u8, "byte {}", got + k);
        }
        got += n;
    }
    assert_eq!(got, TOTAL);
    writer.join().unwrap();
    echo.join().unwrap();
}

#[test]
fn basic_io_with_random_sizes_both_ways() {
    let (client, server) = tcp_pair();
    client.set_deadline(Some(Instant::now() + LIMIT)).unwrap();
    server.set_deadline(Some(Instant::now() + LIMIT)).unwrap();
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    for round in 0..200 {
        let len = rng.usize(0..200_000);
        let data: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        let (from, to) = if round % 2 == 0 {
            (&client, &server)
        } else {
            (&server, &client)
        };
        thread::scope(|s| {
            s.spawn(|| {
                // Vectored on odd rounds: three slices of the same data.
                if round % 4 == 1 && len >= 3 {
                    let (a, rest) = data.split_at(len / 3);
                    let (b, c) = rest.split_at(rest.len() / 2);
                    let slices = [IoSlice::new(a), IoSlice::new(b), IoSlice::new(c)];
                    assert_eq!((&*from).write_vectored(&slices).unwrap(), len);
                } else {
                    assert_eq!((&*from).write(&data).unwrap(), len);
                }
            });
            let mut got = vec![0u8; len];
            let mut filled = 0;
            while filled < len {
                let n = if round % 3 == 0 {
                    let (a, b) = got[filled..].split_at_mut((len - filled).div_ceil(2));
                    (&*to)
                        .read_vectored(&mut [IoSliceMut::new(a), IoSliceMut::new(b)])
                        .unwrap()
                } else {
                    let end = (filled + rng.usize(1..=65536)).min(len);
                    (&*to).read(&mut got[filled..end]).unwrap()
                };
                assert!(n > 0, "unexpected EOF");
                filled += n;
            }
            assert!(got == data, "round {round}: data differs");
        });
    }
}

#[test]
fn ten_thousand_blocked_reads_are_each_woken_by_their_own_data() {
    // 5,000 socket pairs, a blocked reader on both ends of each: 10,000 readers parked on the
    // pollers at once. Each end then receives one byte naming it; every reader must get exactly
    // its own byte.
    const PAIRS: usize = 5_000;
    let pairs: Vec<(Arc<UnixConn>, Arc<UnixConn>)> = (0..PAIRS)
        .map(|_| {
            let (a, b) = UnixConn::pair().unwrap();
            (Arc::new(a), Arc::new(b))
        })
        .collect();
    let (done_tx, done_rx) = mpsc::channel();
    let mut readers = Vec::with_capacity(2 * PAIRS);
    for (i, (a, b)) in pairs.iter().enumerate() {
        for (side, conn) in [(0u8, a), (1u8, b)] {
            let conn = conn.clone();
            let done = done_tx.clone();
            let reader = thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    conn.set_read_deadline(Some(Instant::now() + 3 * LIMIT))
                        .unwrap();
                    let mut buf = [0u8; 4];
                    let result = (&*conn).read_exact(&mut buf).map(|_| buf);
                    let _ = done.send((i, side, result));
                })
                .unwrap();
            readers.push(reader);
        }
    }
    drop(done_tx);
    // Wake them in a scrambled order; each byte says which pair and which end it is for.
    let mut order: Vec<usize> = (0..PAIRS).collect();
    fastrand::Rng::with_seed(7).shuffle(&mut order);
    for &i in &order {
        let (a, b) = &pairs[i];
        let tag = |side: u8| ((i as u32) << 1 | u32::from(side)).to_be_bytes();
        (&**b).write_all(&tag(0)).unwrap(); // read by a (side 0)
        (&**a).write_all(&tag(1)).unwrap(); // read by b (side 1)
    }
    let deadline = Instant::now() + 3 * LIMIT;
    for _ in 0..2 * PAIRS {
        let wait = deadline.saturating_duration_since(Instant::now());
        let (i, side, result) = done_rx.recv_timeout(wait).expect("a reader was not woken");
        let buf = result.unwrap_or_else(|e| panic!("reader {i}/{side}: {e}"));
        assert_eq!(u32::from_be_bytes(buf), (i as u32) << 1 | u32::from(side));
    }
    for reader in readers {
        reader.join().unwrap();
    }
}

#[test]
fn close_write_gives_the_peer_eof_and_close_read_gives_us_eof() {
    let (client, server) = tcp_pair();
    (&client).write_all(b"bye").unwrap();
    client.close_write().unwrap();
    server.set_deadline(Some(Instant::now() + LIMIT)).unwrap();
    let mut all = Vec::new();
    (&server).read_to_end(&mut all).unwrap();
    assert_eq!(all, b"bye");
    // The other direction still works after a half close.
    (&server).write_all(b"still here").unwrap();
    let mut buf = [0u8; 10];
    client.read_exact_all(&mut buf);
    assert_eq!(&buf, b"still here");
    client.close_read().unwrap();
    assert_eq!((&client).read(&mut buf).unwrap(), 0);
}

#[test]
fn linger_zero_resets_the_connection() {
    let (client, server) = tcp_pair();
    client.set_linger(Some(Duration::ZERO)).unwrap();
    assert_eq!(client.linger().unwrap(), Some(Duration::ZERO));
    client.close_now().unwrap();
    server.set_deadline(Some(Instant::now() + LIMIT)).unwrap();
    let err = (&server).read(&mut [0u8; 4]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    assert!(!net::is_closed(&err) && !net::is_timeout(&err));
}

#[test]
fn accepted_and_dialed_connections_have_nodelay_and_keepalive() {
    let (client, server) = tcp_pair();
    for conn in [&client, &server] {
        assert!(conn.nodelay().unwrap());
        assert!(conn.keepalive().unwrap());
    }
    client.set_nodelay(false).unwrap();
    assert!(!client.nodelay().unwrap());
    client.set_keepalive(None).unwrap();
    assert!(!client.keepalive().unwrap());
}

#[test]
fn listen_config_runs_the_control_hook_before_bind() {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let listener = ListenConfig::new()
        .control(move |socket| {
            // Not bound yet: the local address is the unspecified one with port 0.
            let port = socket.local_addr()?.as_socket().map(|a| a.port());
            tx.lock().unwrap().send(port).unwrap();
            socket.set_recv_buffer_size(64 * 1024)
        })
        .listen_tcp("tcp", "127.0.0.1:0")
        .unwrap();
    assert_eq!(rx.try_recv().unwrap(), Some(0));
    assert_ne!(listener.local_addr().port(), 0);
    let failing = ListenConfig::new()
        .control(|_| Err(std::io::Error::other("refused by hook")))
        .listen_tcp("tcp", "127.0.0.1:0")
        .unwrap_err();
    assert!(failing.to_string().contains("refused by hook"), "{failing}");
}

#[test]
fn reuse_port_lets_two_listeners_share_a_port() {
    let config = ListenConfig::new().reuse_port(true);
    let first = config.listen_tcp("tcp", "127.0.0.1:0").unwrap();
    let addr = first.local_addr().to_string();
    let second = config.listen_tcp("tcp", &addr).unwrap();
    assert_eq!(first.local_addr(), second.local_addr());
    let err = ListenConfig::new().listen_tcp("tcp", &addr).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AddrInUse, "{err}");
    assert!(
        err.to_string().starts_with(&format!("listen tcp {addr}: ")),
        "{err}"
    );
    let err = ListenConfig::new()
        .listen_tcp_addr(first.local_addr())
        .unwrap_err();
    assert!(err.to_string().starts_with("listen tcp "), "{err}");
}

#[test]
fn wildcard_listen_accepts_ipv4() {
    let listener: TcpListener = net::listen_tcp("tcp", ":0").unwrap();
    let port = listener.local_addr().port();
    let client = net::dial_tcp("tcp4", format!("127.0.0.1:{port}")).unwrap();
    let (server, _) = listener.accept().unwrap();
    (&client).write_all(b"v4").unwrap();
    let mut buf = [0u8; 2];
    server.read_exact_all(&mut buf);
    assert_eq!(&buf, b"v4");
}

#[test]
fn unix_listener_accepts_and_removes_its_file_on_close() {
    let dir = std::env::temp_dir().join(format!("netpoll-net-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("conn.sock");
    let _ = std::fs::remove_file(&path);
    let listener = net::listen_unix(&path).unwrap();
    let client = net::dial_unix(&path).unwrap();
    let (server, _) = listener.accept().unwrap();
    (&client).write_all(b"unix").unwrap();
    server.set_deadline(Some(Instant::now() + LIMIT)).unwrap();
    let mut buf = [0u8; 4];
    (&server).read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"unix");
    assert_eq!(server.local_addr().as_unix_path(), Some(path.as_path()));
    listener.close().unwrap();
    assert!(!path.exists());
    let _ = std::fs::remove_dir(&dir);
}

#[test]
fn a_closed_fd_number_reused_at_once_gets_no_stale_wake() {
    // Close a connection with a pending readiness edge, then open new ones (the kernel reuses
    // the lowest free fd number): none of them may see data or a wake meant for the old one.
    for _ in 0..50 {
        let (a, b) = UnixConn::pair().unwrap();
        (&b).write_all(b"old").unwrap();
        a.close_now().unwrap();
        drop(b);
        let (c, _d) = UnixConn::pair().unwrap();
        c.set_read_deadline(Some(Instant::now() + Duration::from_millis(5)))
            .unwrap();
        assert!(net::is_timeout(&(&c).read(&mut [0u8; 4]).unwrap_err()));
    }
}

#[test]
fn an_accept_loop_survives_peers_that_reset_before_being_accepted() {
    // Regression (issue 4): accept asked the kernel for the peer address again, which a reset
    // connection no longer has (ENOTCONN), and the obvious accept loop died on it.
    let listener = Arc::new(net::listen_tcp("tcp", "127.0.0.1:0").unwrap());
    let addr = listener.local_addr();
    let server = {
        let listener = listener.clone();
        thread::spawn(move || -> std::io::Result<usize> {
            let mut served = 0;
            loop {
                let (conn, peer) = match listener.accept() {
                    Ok(accepted) => accepted,
                    Err(e) if net::is_closed(&e) => return Ok(served),
                    Err(e) => return Err(e),
                };
                assert_eq!(conn.peer_addr(), peer);
                served += 1;
                // Echo one message if there is one; a reset peer fails the read at once.
                conn.set_deadline(Some(Instant::now() + LIMIT)).unwrap();
                let mut buf = [0u8; 5];
                if (&conn).read_exact(&mut buf).is_ok() {
                    (&conn).write_all(&buf).unwrap();
                }
            }
        })
    };
    for _ in 0..1000 {
        let client = std::net::TcpStream::connect(addr).unwrap();
        socket2::SockRef::from(&client)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(client); // RST, usually before the server got to accept it
    }
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    client.set_read_timeout(Some(LIMIT)).unwrap();
    std::io::Write::write_all(&mut client, b"hello").unwrap();
    let mut buf = [0u8; 5];
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    listener.close().unwrap();
    let served = server.join().unwrap().expect("the accept loop died");
    assert_eq!(served, 1001);
}

#[test]
fn an_error_that_cuts_a_write_short_is_reported_by_the_next_call() {
    // Regression (issue 10): the error that stopped a partial write was dropped, so the next
    // call saw the aftermath (EPIPE) instead of the cause (ECONNRESET).
    let (client, server) = tcp_pair();
    let client = Arc::new(client);
    let writer = {
        let client = client.clone();
        thread::spawn(move || {
            let big = vec![7u8; 64 * 1024 * 1024];
            let first = (&*client).write(&big);
            let second = (&*client).write(b"more");
            (first.map(|n| n < big.len()), second)
        })
    };
    // Once a byte arrived the write is under way; a reset now cuts it short.
    server.set_deadline(Some(Instant::now() + LIMIT)).unwrap();
    let mut byte = [0u8; 1];
    (&server).read_exact(&mut byte).unwrap();
    server.set_linger(Some(Duration::ZERO)).unwrap();
    server.close_now().unwrap();
    let (first, second) = bounded(move || writer.join().unwrap());
    assert!(first.unwrap(), "the first write returns its short count");
    let err = second.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    // Reported once; after that the socket's own state speaks (EPIPE).
    let err = (&*client).write(b"again").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BrokenPipe, "{err}");
}

#[test]
fn an_old_unix_listener_leaves_a_newer_listeners_file_alone() {
    // Regression (issue 6): the socket file was removed on close and again on drop, by path,
    // so dropping an old listener deleted the file of a newer one on the same path.
    let dir = std::env::temp_dir().join(format!("netpoll-unlink-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("reused.sock");
    let _ = std::fs::remove_file(&path);

    let old = net::listen_unix(&path).unwrap();
    old.close().unwrap();
    assert!(!path.exists(), "close removes its own file");
    let new = net::listen_unix(&path).unwrap();
    drop(old);
    assert!(
        path.exists(),
        "dropping the old listener removed the new one's file"
    );
    let client = net::dial_unix(&path).unwrap();
    let (server, _) = new.accept().unwrap();
    (&client).write_all(b"x").unwrap();
    server.set_deadline(Some(Instant::now() + LIMIT)).unwrap();
    (&server).read_exact(&mut [0u8; 1]).unwrap();

    // A file that replaced ours (someone removed it and bound again) is not ours to remove.
    std::fs::remove_file(&path).unwrap();
    let replacement = std::os::unix::net::UnixListener::bind(&path).unwrap();
    drop(new);
    assert!(path.exists(), "dropping removed a file it did not create");
    drop(replacement);
    std::fs::remove_file(&path).unwrap();

    // Dropping without close removes its own file.
    let dropped = net::listen_unix(&path).unwrap();
    drop(dropped);
    assert!(!path.exists());
    let _ = std::fs::remove_dir(&dir);
}

#[test]
fn unix_incoming_serves_then_ends_with_the_closed_error_at_close() {
    let dir = std::env::temp_dir().join(format!("netpoll-incoming-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("incoming.sock");
    let _ = std::fs::remove_file(&path);
    let listener = Arc::new(net::listen_unix(&path).unwrap());
    let server = {
        let listener = listener.clone();
        thread::spawn(move || {
            let mut incoming = listener.incoming();
            let conn = incoming.next().unwrap().unwrap();
            (&conn).write_all(b"hi").unwrap();
            let end = incoming.next().unwrap().unwrap_err();
            (net::is_closed(&end), incoming.next().is_none())
        })
    };
    let client = net::dial_unix(&path).unwrap();
    client.set_deadline(Some(Instant::now() + LIMIT)).unwrap();
    let mut buf = [0u8; 2];
    (&client).read_exact(&mut buf).unwrap();
    listener.close().unwrap();
    assert_eq!(bounded(move || server.join().unwrap()), (true, true));
    let _ = std::fs::remove_dir_all(&dir);
}
