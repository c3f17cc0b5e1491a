//! Both faces and the rest of the ecosystem: raw fds round-trip, std and socket2 sockets convert
//! and carry data, and `Debug` prints without blocking while a handler runs.

mod common;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread;

use common::{echo, TestServer, LIMIT};
use netpoll::net::{self, TcpConn, TcpListener, UnixConn, UnixListener};
use netpoll::{Connection, EventLoop, Listener};
use socket2::{Domain, SockAddr, SockRef, Socket, Type};

fn unix_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "netpoll-interop-{}-{name}.sock",
        std::process::id()
    ))
}

/// Serves one connection of a Go-net listener: echoes until end of stream.
fn echo_once_tcp(listener: TcpListener) -> thread::JoinHandle<io::Result<u64>> {
    thread::spawn(move || {
        let (conn, _) = listener.accept()?;
        conn.set_deadline(Some(std::time::Instant::now() + LIMIT))?;
        let n = io::copy(&mut &conn, &mut &conn)?;
        conn.close_write()?;
        Ok(n)
    })
}

fn echo_once_unix(listener: UnixListener) -> thread::JoinHandle<io::Result<u64>> {
    thread::spawn(move || {
        let (conn, _) = listener.accept()?;
        conn.set_deadline(Some(std::time::Instant::now() + LIMIT))?;
        let n = io::copy(&mut &conn, &mut &conn)?;
        conn.close_write()?;
        Ok(n)
    })
}

/// Sends `msg`, half-closes, reads the echo to the end.
fn round_trip_tcp(conn: &TcpConn, msg: &[u8]) {
    conn.set_deadline(Some(std::time::Instant::now() + LIMIT))
        .unwrap();
    (&*conn).write_all(msg).unwrap();
    conn.close_write().unwrap();
    let mut got = Vec::new();
    (&*conn).read_to_end(&mut got).unwrap();
    assert_eq!(got, msg);
}

fn round_trip_unix(conn: &UnixConn, msg: &[u8]) {
    conn.set_deadline(Some(std::time::Instant::now() + LIMIT))
        .unwrap();
    (&*conn).write_all(msg).unwrap();
    conn.close_write().unwrap();
    let mut got = Vec::new();
    (&*conn).read_to_end(&mut got).unwrap();
    assert_eq!(got, msg);
}

/// Writes `msg` on a reactor connection and waits for it to come back.
fn round_trip_reactor(conn: &Connection, msg: &[u8]) {
    conn.set_read_timeout(Some(LIMIT));
    conn.set_write_timeout(Some(LIMIT));
    let mut writer = conn.writer();
    writer.write_binary(msg).unwrap();
    writer.flush().unwrap();
    drop(writer);
    let got = conn.reader().next(msg.len()).unwrap();
    assert_eq!(&got[..], msg);
}

/// The fd as an `OwnedFd`, the one `unsafe` step a caller takes with a raw fd.
fn owned(fd: std::os::fd::RawFd) -> OwnedFd {
    assert!(fd >= 0, "no descriptor given");
    // SAFETY: `fd` was just given up by `into_raw_fd`: open and owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

#[test]
fn tcp_conn_and_listener_fds_round_trip() {
    let listener = net::listen_tcp("tcp", "127.0.0.1:0").unwrap();
    let addr = listener.local_addr();
    let fd = listener.as_raw_fd();
    assert!(fd >= 0);
    let raw = listener.into_raw_fd();
    assert_eq!(raw, fd, "the same descriptor is handed over");
    let listener = TcpListener::try_from(owned(raw)).unwrap();
    assert_eq!(listener.local_addr(), addr);
    let server = echo_once_tcp(listener);

    let conn = net::Dialer::new()
        .timeout(LIMIT)
        .dial_tcp("tcp", addr)
        .unwrap();
    let (local, peer) = (conn.local_addr(), conn.peer_addr());
    let conn = TcpConn::try_from(owned(conn.into_raw_fd())).unwrap();
    assert_eq!((conn.local_addr(), conn.peer_addr()), (local, peer));
    round_trip_tcp(&conn, b"through a raw fd and back");
    assert_eq!(server.join().unwrap().unwrap(), 25);
}

#[test]
fn tcp_conn_into_std_keeps_the_stream_open() {
    let listener = net::listen_tcp("tcp", "127.0.0.1:0").unwrap();
    let addr = listener.local_addr();
    let server = echo_once_tcp(listener);
    let conn = net::dial_tcp("tcp", addr).unwrap();
    let mut std_stream = conn.into_std().unwrap();
    std_stream.set_nonblocking(false).unwrap();
    std_stream.set_read_timeout(Some(LIMIT)).unwrap();
    std_stream.write_all(b"std again").unwrap();
    std_stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut got = Vec::new();
    std_stream.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"std again");
    server.join().unwrap().unwrap();
}

#[test]
fn unix_conn_and_listener_fds_round_trip_and_keep_the_socket_file() {
    let path = unix_path("roundtrip");
    let _ = std::fs::remove_file(&path);
    let listener = net::listen_unix(&path).unwrap();
    let listener = UnixListener::try_from(owned(listener.into_raw_fd())).unwrap();
    assert!(
        path.exists(),
        "into_raw_fd leaves the socket file to the new owner"
    );
    assert_eq!(listener.path(), path);
    let server = echo_once_unix(listener);

    let conn = net::dial_unix(&path).unwrap();
    let conn = UnixConn::try_from(owned(conn.into_raw_fd())).unwrap();
    round_trip_unix(&conn, b"unix fd round trip");
    assert_eq!(server.join().unwrap().unwrap(), 18);
    // The adopted listener did not bind the path, so dropping it left the file.
    assert!(path.exists());
    std::fs::remove_file(&path).unwrap();

    let (a, b) = UnixConn::pair().unwrap();
    let a = UnixConn::try_from(owned(a.into_raw_fd())).unwrap();
    (&a).write_all(b"pair").unwrap();
    let mut got = [0u8; 4];
    b.set_deadline(Some(std::time::Instant::now() + LIMIT))
        .unwrap();
    (&b).read_exact(&mut got).unwrap();
    assert_eq!(&got, b"pair");
}

#[test]
fn go_net_raw_fd_is_minus_one_after_close_and_with_fd_lends_it() {
    let (a, _b) = UnixConn::pair().unwrap();
    let fd = a.as_raw_fd();
    assert!(fd >= 0);
    assert_eq!(a.with_fd(|b| b.as_raw_fd()).unwrap(), fd);
    // The lent fd works for options this API lacks.
    let size = a
        .with_fd(|b| SockRef::from(&b).send_buffer_size())
        .unwrap()
        .unwrap();
    assert!(size > 0);
    a.close_now().unwrap();
    assert_eq!(a.as_raw_fd(), -1);
    assert!(net::is_closed(&a.with_fd(|_| ()).unwrap_err()));
    assert_eq!(a.into_raw_fd(), -1, "a closed connection has no fd to give");

    let listener = net::listen_tcp("tcp", "127.0.0.1:0").unwrap();
    listener.close().unwrap();
    assert_eq!(listener.as_raw_fd(), -1);
    assert!(listener.into_std().is_err());
}

#[test]
fn go_net_types_convert_from_std() {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    let server = echo_once_tcp(TcpListener::try_from(std_listener).unwrap());
    let conn = TcpConn::try_from(TcpStream::connect(addr).unwrap()).unwrap();
    round_trip_tcp(&conn, b"from std tcp");
    server.join().unwrap().unwrap();

    let path = unix_path("std");
    let _ = std::fs::remove_file(&path);
    let std_listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let listener = UnixListener::try_from(std_listener).unwrap();
    assert_eq!(listener.path(), path);
    let server = echo_once_unix(listener);
    let conn = UnixConn::try_from(UnixStream::connect(&path).unwrap()).unwrap();
    round_trip_unix(&conn, b"from std unix");
    server.join().unwrap().unwrap();
    assert!(path.exists(), "std's file is std's owner's to remove");
    std::fs::remove_file(&path).unwrap();
}

fn socket2_tcp_listener() -> (Socket, SocketAddr) {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket
        .bind(&SockAddr::from(
            "127.0.0.1:0".parse::<SocketAddr>().unwrap(),
        ))
        .unwrap();
    socket.listen(16).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    (socket, addr)
}

fn socket2_tcp_client(addr: SocketAddr) -> Socket {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.connect(&SockAddr::from(addr)).unwrap();
    socket
}

#[test]
fn go_net_types_convert_from_socket2() {
    let (socket, addr) = socket2_tcp_listener();
    let server = echo_once_tcp(TcpListener::try_from(socket).unwrap());
    let conn = TcpConn::try_from(socket2_tcp_client(addr)).unwrap();
    round_trip_tcp(&conn, b"from socket2 tcp");
    server.join().unwrap().unwrap();

    let path = unix_path("socket2");
    let _ = std::fs::remove_file(&path);
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
    socket.bind(&SockAddr::unix(&path).unwrap()).unwrap();
    socket.listen(16).unwrap();
    let server = echo_once_unix(UnixListener::try_from(socket).unwrap());
    let client = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
    client.connect(&SockAddr::unix(&path).unwrap()).unwrap();
    let conn = UnixConn::try_from(client).unwrap();
    round_trip_unix(&conn, b"from socket2 unix");
    server.join().unwrap().unwrap();
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn conversions_reject_the_wrong_kind_of_socket() {
    let invalid = |e: io::Error| assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
    let udp = Socket::new(Domain::IPV4, Type::DGRAM, None).unwrap();
    invalid(TcpConn::try_from(udp).unwrap_err());
    let (listening, _) = socket2_tcp_listener();
    invalid(TcpConn::try_from(listening).unwrap_err());
    let unbound = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    invalid(TcpListener::try_from(unbound).unwrap_err());
    let (unix, _) = UnixStream::pair().unwrap();
    invalid(TcpConn::try_from(Socket::from(unix)).unwrap_err());
    let tcp_listener = socket2_tcp_listener().0;
    invalid(UnixListener::try_from(tcp_listener).unwrap_err());
    let (listening, _) = socket2_tcp_listener();
    invalid(Connection::from_std(listening).unwrap_err());
    let udp = Socket::new(Domain::IPV4, Type::DGRAM, None).unwrap();
    invalid(Listener::try_from(udp).unwrap_err());
    let unbound = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    assert!(Connection::from_std(unbound).is_err(), "not connected");
}

#[test]
fn reactor_listener_fd_round_trips_and_serves() {
    let listener = Listener::bind_tcp("127.0.0.1:0").unwrap();
    let addr = *listener.local_addr().as_inet().unwrap();
    assert_eq!(listener.as_fd().as_raw_fd(), listener.as_raw_fd());
    let raw = listener.into_raw_fd();
    // SAFETY: `raw` was just given up by `into_raw_fd`.
    let listener = unsafe { Listener::from_raw_fd(raw) };
    assert_eq!(listener.local_addr().as_inet(), Some(&addr));
    let server = TestServer::start_on(
        EventLoop::builder().on_request(echo).build().unwrap(),
        listener,
        addr,
    );
    let mut client = server.connect();
    client.write_all(b"adopted listener").unwrap();
    let mut got = [0u8; 16];
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"adopted listener");
}

#[test]
fn reactor_listener_from_a_blocking_std_fd_does_not_block_the_poller() {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    // SAFETY: `into_raw_fd` gave the descriptor up.
    let listener = unsafe { Listener::from_raw_fd(std_listener.into_raw_fd()) };
    let server = TestServer::start_on(
        EventLoop::builder().on_request(echo).build().unwrap(),
        listener,
        addr,
    );
    // Two connections: with a blocking listener the acceptor would hang after the first.
    for round in 0..2u8 {
        let mut client = server.connect();
        client.write_all(&[round; 3]).unwrap();
        let mut got = [0u8; 3];
        client.read_exact(&mut got).unwrap();
        assert_eq!(got, [round; 3]);
    }
}

#[test]
fn reactor_listener_from_socket2_and_std_unix_serves() {
    let (socket, addr) = socket2_tcp_listener();
    let server = TestServer::start_on(
        EventLoop::builder().on_request(echo).build().unwrap(),
        Listener::try_from(socket).unwrap(),
        addr,
    );
    let mut client = server.connect();
    client.write_all(b"s2").unwrap();
    let mut got = [0u8; 2];
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"s2");
}

#[test]
fn reactor_connection_from_std_and_socket2_echoes() {
    let server = TestServer::start(EventLoop::builder().on_request(echo).build().unwrap());

    let conn = Connection::try_from(TcpStream::connect(server.addr).unwrap()).unwrap();
    assert_eq!(conn.peer_addr().as_inet(), Some(&server.addr));
    round_trip_reactor(&conn, b"reactor from std tcp");
    assert_eq!(conn.as_raw_fd(), conn.socket().as_raw_fd());
    assert_eq!(conn.as_fd().as_raw_fd(), conn.as_raw_fd());
    assert!(SockRef::from(&conn).recv_buffer_size().unwrap() > 0);
    conn.close();
    assert!(
        conn.as_raw_fd() >= 0,
        "the socket lives as long as the handles"
    );

    let conn = Connection::try_from(socket2_tcp_client(server.addr)).unwrap();
    round_trip_reactor(&conn, b"reactor from socket2");

    // A Unix pair: the far end is a plain std stream that echoes once.
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    theirs.set_read_timeout(Some(LIMIT)).unwrap();
    let peer = thread::spawn(move || {
        let mut buf = [0u8; 12];
        theirs.read_exact(&mut buf).unwrap();
        theirs.write_all(&buf).unwrap();
    });
    let conn = Connection::try_from(ours).unwrap();
    round_trip_reactor(&conn, b"reactor unix");
    peer.join().unwrap();
}

#[test]
fn debug_prints_without_blocking_while_a_handler_runs() {
    let (entered_tx, entered_rx) = mpsc::channel::<String>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = std::sync::Arc::new(std::sync::Mutex::new(release_rx));
    let builder = EventLoop::builder().on_request(move |_, conn| {
        let reader = conn.reader();
        let inside = format!("{conn:?} {reader:?} {:?}", conn.writer());
        drop(reader);
        let _ = entered_tx.send(inside);
        // Held here until the test printed everything (bounded: never longer than LIMIT).
        let release_rx = release_rx.clone();
        let _ = netpoll::blocking(move || release_rx.lock().unwrap().recv_timeout(LIMIT));
        echo(&(), conn)
    });
    let builder_debug = format!("{builder:?}");
    assert!(
        builder_debug.starts_with("EventLoopBuilder"),
        "{builder_debug}"
    );
    let server = TestServer::start(builder.build().unwrap());
    let mut client = server.connect();
    client.write_all(b"x").unwrap();
    let inside = entered_rx.recv_timeout(LIMIT).expect("handler ran");
    for name in ["Connection", "ConnReader", "ConnWriter"] {
        assert!(inside.contains(name), "{inside}");
    }

    // Print the server from another thread, so a deadlock fails the test instead of hanging it.
    let (printed_tx, printed_rx) = mpsc::channel();
    let shared = server.server.clone();
    thread::spawn(move || {
        let _ = printed_tx.send(format!("{shared:?}"));
    });
    let printed = printed_rx.recv_timeout(LIMIT).expect("Debug did not block");
    assert!(printed.starts_with("EventLoop"), "{printed}");
    assert!(printed.contains("connections"), "{printed}");

    release_tx.send(()).unwrap();
    let mut got = [0u8; 1];
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"x");

    let listener = Listener::bind_tcp("127.0.0.1:0").unwrap();
    for text in [
        format!("{listener:?}"),
        format!("{:?}", net::listen_tcp("tcp", "127.0.0.1:0").unwrap()),
        format!("{:?}", UnixConn::pair().unwrap().0),
    ] {
        assert!(!text.is_empty());
    }
}
