//! The reactor-face `Dialer`: connections, errors and timeouts.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::sync::mpsc::channel;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{echo, TestServer, LIMIT};
use netpoll::{dial_connection, EventLoop, Listener};

#[test]
fn dials_tcp_and_talks_through_reader_and_writer() {
    let server = TestServer::start(EventLoop::builder().on_request(echo).build().unwrap());
    let conn = dial_connection("tcp", &server.addr.to_string(), Some(LIMIT)).unwrap();
    assert!(conn.is_active());
    assert_eq!(conn.peer_addr().as_inet(), Some(&server.addr));
    assert!(conn.local_addr().as_inet().is_some());
    assert!(conn.socket().tcp_nodelay().unwrap());
    conn.set_read_timeout(Some(LIMIT));
    let mut writer = conn.writer();
    writer.write_string("ping").unwrap();
    writer.flush().unwrap();
    drop(writer);
    assert_eq!(conn.reader().read_string(4).unwrap(), "ping");
    conn.close();
}

#[test]
fn dials_tcp4_tcp6_and_a_host_name() {
    let v4 = TestServer::start(EventLoop::builder().on_request(echo).build().unwrap());
    let port = v4.addr.port();
    let mut conn = dial_connection("tcp4", &format!("localhost:{port}"), Some(LIMIT)).unwrap();
    conn.write_all(b"v4").unwrap();
    let mut got = [0u8; 2];
    conn.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"v4");

    // IPv6 loopback may be disabled on a CI machine; only then is this part skipped.
    if let Ok(listener) = Listener::bind_tcp("[::1]:0") {
        let addr = *listener.local_addr().as_inet().unwrap();
        let v6 = TestServer::start_on(
            EventLoop::builder().on_request(echo).build().unwrap(),
            listener,
            addr,
        );
        let mut conn = dial_connection("tcp6", &v6.addr.to_string(), Some(LIMIT)).unwrap();
        conn.write_all(b"v6").unwrap();
        conn.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"v6");
        let err = dial_connection("tcp4", &v6.addr.to_string(), Some(LIMIT)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    } else {
        eprintln!("SKIPPED the IPv6 half: no ::1 on this machine");
    }
}

#[test]
fn dials_a_unix_socket() {
    let path = std::env::temp_dir().join(format!("netpoll-dial-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = Listener::bind_unix(&path).unwrap();
    let _server = TestServer::start_on(
        EventLoop::builder().on_request(echo).build().unwrap(),
        listener,
        "127.0.0.1:1".parse().unwrap(),
    );
    let mut conn = dial_connection("unix", path.to_str().unwrap(), Some(LIMIT)).unwrap();
    conn.write_all(b"unix").unwrap();
    let mut got = [0u8; 4];
    conn.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"unix");
}

#[test]
fn client_side_on_request_is_called_when_replies_arrive() {
    let server = TestServer::start(EventLoop::builder().on_request(echo).build().unwrap());
    let conn = dial_connection("tcp", &server.addr.to_string(), Some(LIMIT)).unwrap();
    let (tx, rx) = channel();
    let tx = Mutex::new(tx);
    conn.set_on_request(move |conn| {
        let mut reader = conn.reader();
        let data = reader.next(reader.len())?;
        let _ = tx.lock().unwrap().send(data);
        Ok(())
    });
    let mut writer = conn.writer();
    writer.write_binary(b"callback").unwrap();
    writer.flush().unwrap();
    drop(writer);
    let mut got = Vec::new();
    while got.len() < 8 {
        got.extend_from_slice(&rx.recv_timeout(LIMIT).unwrap());
    }
    assert_eq!(got, b"callback");
}

#[test]
fn refused_unknown_network_and_missing_path_are_clear_errors() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    let err = dial_connection("tcp", &addr.to_string(), Some(LIMIT)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");

    let err = dial_connection("udp9", "127.0.0.1:1", Some(LIMIT)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("unknown network"), "{err}");

    let err = dial_connection("tcp", "not an address", Some(LIMIT)).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::InvalidInput | ErrorKind::Other),
        "{err}"
    );

    let err = dial_connection("unix", "/nonexistent/netpoll.sock", Some(LIMIT)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

#[test]
fn dial_times_out_against_a_full_backlog() {
    // A listener that never accepts, with the smallest backlog: once its queue is full the
    // kernel drops further SYNs, so a connect can only time out.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut held = Vec::new();
    let mut timed_out = None;
    for _ in 0..16 {
        let started = Instant::now();
        match dial_connection("tcp", &addr.to_string(), Some(Duration::from_millis(200))) {
            Ok(conn) => held.push(conn),
            Err(e) => {
                timed_out = Some((e, started.elapsed()));
                break;
            }
        }
    }
    let (err, took) = timed_out.expect("the backlog never filled");
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    assert!(
        took >= Duration::from_millis(200),
        "gave up early: {took:?}"
    );
    assert!(took < LIMIT);
}
