//! Reader and writer operations on a live connection (a dialed client against a server).

mod common;

use std::io::{ErrorKind, Write};
use std::time::Duration;

use common::{echo, TestServer, LIMIT};
use netpoll::{dial_connection, Connection, EventLoop};

fn client_of(server: &TestServer) -> Connection {
    let conn = dial_connection("tcp", &server.addr.to_string(), Some(LIMIT)).unwrap();
    conn.set_read_timeout(Some(LIMIT));
    conn
}

fn send(conn: &Connection, data: &[u8]) {
    let mut writer = conn.writer();
    writer.write_binary(data).unwrap();
    writer.flush().unwrap();
}

#[test]
fn until_read_byte_peek_skip_and_read_string() {
    let server = TestServer::start(EventLoop::builder().on_request(echo).build().unwrap());
    let conn = client_of(&server);
    send(&conn, b"GET /x\r\nrest!");
    let mut reader = conn.reader();
    assert_eq!(&reader.until(b'\n').unwrap()[..], b"GET /x\r\n");
    assert_eq!(&reader.peek(2).unwrap()[..], b"re");
    assert_eq!(reader.read_byte().unwrap(), b'r');
    reader.skip(1).unwrap();
    assert_eq!(reader.read_string(3).unwrap(), "st!");
    assert_eq!(reader.len(), 0);
}

#[test]
fn until_waits_for_a_delimiter_that_arrives_later() {
    let server = TestServer::start(EventLoop::builder().on_request(echo).build().unwrap());
    let conn = client_of(&server);
    send(&conn, b"no newline yet");
    let waiter = {
        let conn = conn.clone();
        std::thread::spawn(move || conn.reader().until(b'\n').map(|b| b.to_vec()))
    };
    // The reader holds the read lock while it waits; the writer side is free.
    send(&conn, b", now\n");
    assert_eq!(waiter.join().unwrap().unwrap(), b"no newline yet, now\n");
}

#[test]
fn invalid_utf8_is_invalid_data_and_consumes_nothing() {
    let server = TestServer::start(EventLoop::builder().on_request(echo).build().unwrap());
    let conn = client_of(&server);
    send(&conn, &[0xff, 0xfe, b'o', b'k']);
    let mut reader = conn.reader();
    let err = reader.read_string(4).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidData);
    assert_eq!(reader.read_binary(4).unwrap(), [0xff, 0xfe, b'o', b'k']);
}

#[test]
fn slice_takes_an_independent_buffer() {
    let server = TestServer::start(EventLoop::builder().on_request(echo).build().unwrap());
    let conn = client_of(&server);
    send(&conn, b"headerbody");
    let mut reader = conn.reader();
    let header = reader.slice(6).unwrap();
    assert_eq!(header.len(), 6);
    assert_eq!(reader.read_string(4).unwrap(), "body");
}

#[test]
fn write_byte_string_direct_and_malloc_then_flush_once() {
    let server = TestServer::start(EventLoop::builder().on_request(echo).build().unwrap());
    let conn = client_of(&server);
    let mut writer = conn.writer();
    writer.write_byte(b'<').unwrap();
    writer.write_string("text").unwrap();
    writer
        .write_direct(bytes::Bytes::from_static(b"|direct|"))
        .unwrap();
    let space = writer.malloc(8).unwrap();
    space[..3].copy_from_slice(b"mal");
    writer.malloc_ack(1 + 4 + 8 + 3).unwrap(); // keep only "mal" of the 8 malloc'ed bytes
    writer.write_byte(b'>').unwrap();
    assert_eq!(writer.malloc_len(), 17);
    writer.flush().unwrap();
    drop(writer);
    assert_eq!(conn.reader().read_string(17).unwrap(), "<text|direct|mal>");
}

#[test]
fn reads_after_the_peer_closes_return_what_is_left_then_eof() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let tx = std::sync::Mutex::new(tx);
    let server = TestServer::start(
        EventLoop::builder()
            .on_connect(move |_, conn| {
                let mut writer = conn.writer();
                let _ = writer.write_string("last words");
                let _ = writer.flush();
                conn.close();
                let _ = tx.lock().unwrap().send(());
            })
            .build()
            .unwrap(),
    );
    let conn = client_of(&server);
    rx.recv_timeout(LIMIT).unwrap();
    let mut reader = conn.reader();
    assert_eq!(reader.read_string(4).unwrap(), "last");
    let err = reader.next(100).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnexpectedEof);
    assert_eq!(reader.read_string(6).unwrap(), " words");
    drop(reader);
    let mut rest = Vec::new();
    let mut c = conn.clone();
    assert_eq!(std::io::Read::read_to_end(&mut c, &mut rest).unwrap(), 0);
}

#[test]
fn writes_after_close_fail_with_not_connected() {
    let server = TestServer::start(EventLoop::builder().on_request(echo).build().unwrap());
    let mut conn = client_of(&server);
    conn.close();
    conn.close(); // idempotent
    assert!(!conn.is_active());
    assert_eq!(conn.close_reason(), Some(ErrorKind::NotConnected));
    assert_eq!(
        conn.write(b"x").unwrap_err().kind(),
        ErrorKind::NotConnected
    );
    assert_eq!(
        conn.reader().next(1).unwrap_err().kind(),
        ErrorKind::NotConnected
    );
}

#[test]
fn tcp_keepalive_option_is_applied_to_accepted_connections() {
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let server = TestServer::start(
        EventLoop::builder()
            .tcp_keepalive(Duration::from_secs(30))
            .on_prepare(move |conn| {
                let socket = conn.socket();
                let _ = tx.lock().unwrap().send((
                    socket.keepalive().unwrap(),
                    socket.tcp_keepalive_time().unwrap(),
                ));
            })
            .build()
            .unwrap(),
    );
    let _conn = server.connect();
    let (on, idle) = rx.recv_timeout(LIMIT).unwrap();
    assert!(on);
    assert_eq!(idle, Duration::from_secs(30));
}

#[test]
fn idle_timeout_closes_a_dialed_connection() {
    let server = TestServer::start(EventLoop::builder().on_request(echo).build().unwrap());
    let conn = client_of(&server);
    conn.set_idle_timeout(Some(Duration::from_millis(100)));
    let err = conn.reader().next(1).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotConnected);
    assert_eq!(conn.close_reason(), Some(ErrorKind::TimedOut));
}
