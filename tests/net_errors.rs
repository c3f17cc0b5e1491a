//! Errors of the Go-net face as Go prints them (`net.OpError`: `OP NET [LOCAL->]ADDR: CAUSE`),
//! for each operation (dial, listen, accept, read, write, close), blocking and async, with the
//! cause's `io::ErrorKind` and `is_timeout` / `is_closed` / `is_canceled` kept through the
//! wrapper. Real loopback sockets; every wait is bounded by a deadline or `LIMIT`.

mod common;

use std::io::{self, ErrorKind, Read, Write};
use std::path::PathBuf;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use common::LIMIT;
use netpoll::net::{self, CancelToken, Dialer, OpError, TcpConn};

/// The `OpError` inside `e` (every error of a connection, listener or dial has one).
fn op_error(e: &io::Error) -> &OpError {
    e.get_ref()
        .and_then(|c| c.downcast_ref::<OpError>())
        .unwrap_or_else(|| panic!("not an OpError: {e:?}"))
}

/// A connected TCP pair on loopback: (dialed, accepted).
fn tcp_pair() -> (TcpConn, TcpConn) {
    let listener = net::listen_tcp("tcp", "127.0.0.1:0").unwrap();
    let client = net::dial_tcp("tcp", listener.local_addr()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (client, server)
}

/// `LOCAL->PEER` of a connection, as its errors print it.
fn route(conn: &TcpConn) -> String {
    format!("{}->{}", conn.local_addr(), conn.peer_addr())
}

/// A fresh path for a Unix socket of this test process.
fn socket_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("netpoll-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

// ---- dial -------------------------------------------------------------------------------------

#[test]
fn dial_refused_names_the_address_and_keeps_the_errno() {
    // A port that was just free: nothing listens there.
    let port = net::listen_tcp("tcp", "127.0.0.1:0")
        .unwrap()
        .local_addr()
        .port();
    let err = net::dial_tcp("tcp", ("127.0.0.1", port)).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("dial tcp 127.0.0.1:{port}: connection refused")
    );
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    let op = op_error(&err);
    assert_eq!((op.op(), op.net()), ("dial", "tcp"));
    assert_eq!(op.source_addr(), None);
    assert_eq!(op.addr(), Some(format!("127.0.0.1:{port}").as_str()));
    assert_eq!(op.cause().raw_os_error(), Some(libc::ECONNREFUSED));
}

#[test]
fn dial_timeout_and_cancel_stay_recognisable() {
    let past = Instant::now() - Duration::from_secs(1);
    let err = Dialer::new()
        .deadline(past)
        .dial_tcp("tcp", "127.0.0.1:1")
        .unwrap_err();
    assert_eq!(err.to_string(), "dial tcp 127.0.0.1:1: i/o timeout");
    assert!(net::is_timeout(&err) && err.kind() == ErrorKind::TimedOut);

    let token = CancelToken::new();
    token.cancel();
    let err = Dialer::new()
        .cancel_token(token)
        .dial_tcp("tcp4", "127.0.0.1:1")
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "dial tcp4 127.0.0.1:1: operation was canceled"
    );
    assert!(net::is_canceled(&err) && !net::is_timeout(&err));
}

#[test]
fn dial_unix_names_the_path() {
    let path = socket_path("missing.sock");
    let err = net::dial_unix(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("dial unix {}: no such file or directory", path.display())
    );
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

// ---- listen -----------------------------------------------------------------------------------

#[test]
fn listen_on_a_busy_port_names_the_address() {
    let taken = net::listen_tcp("tcp", "127.0.0.1:0").unwrap();
    let addr = taken.local_addr();
    let err = net::listen_tcp("tcp", addr).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("listen tcp {addr}: address already in use")
    );
    assert_eq!(err.kind(), ErrorKind::AddrInUse);
    assert_eq!(
        op_error(&err).cause().raw_os_error(),
        Some(libc::EADDRINUSE)
    );

    // The reactor face binds through the same ListenConfig, so it says the same.
    let err = netpoll::Listener::bind_tcp(addr).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("listen tcp {addr}: address already in use")
    );
    assert_eq!(err.kind(), ErrorKind::AddrInUse);
}

#[test]
fn listen_unix_on_an_existing_file_names_the_path() {
    let path = socket_path("taken.sock");
    let _taken = net::listen_unix(&path).unwrap();
    let err = net::listen_unix(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("listen unix {}: address already in use", path.display())
    );
    assert_eq!(err.kind(), ErrorKind::AddrInUse);
}

// ---- accept -----------------------------------------------------------------------------------

#[test]
fn accept_errors_name_the_listening_address() {
    let listener = net::listen_tcp("tcp", "127.0.0.1:0").unwrap();
    let addr = listener.local_addr();
    listener
        .set_deadline(Some(Instant::now() + Duration::from_millis(20)))
        .unwrap();
    let err = listener.accept().unwrap_err();
    assert_eq!(err.to_string(), format!("accept tcp {addr}: i/o timeout"));
    assert!(net::is_timeout(&err) && err.kind() == ErrorKind::TimedOut);

    listener.close().unwrap();
    let err = listener.accept().unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("accept tcp {addr}: use of closed network connection")
    );
    assert!(net::is_closed(&err) && err.kind() == ErrorKind::NotConnected);
    // The async accept says the same; so does a second close.
    let err = futures::executor::block_on(listener.accept_async()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("accept tcp {addr}: use of closed network connection")
    );
    let err = listener.close().unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("close tcp {addr}: use of closed network connection")
    );
    assert!(net::is_closed(&err));
}

#[test]
fn the_accept_loop_yields_the_closed_error_in_context() {
    let listener = net::ListenConfig::new().listen_tcp("tcp4", ":0").unwrap();
    let port = listener.local_addr().port();
    listener.close().unwrap();
    let err = listener.incoming().next().unwrap().unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("accept tcp4 0.0.0.0:{port}: use of closed network connection")
    );
    assert!(net::is_closed(&err));
}

#[test]
fn unix_accept_names_the_path() {
    let path = socket_path("accept.sock");
    let listener = net::listen_unix(&path).unwrap();
    listener
        .set_deadline(Some(Instant::now() - Duration::from_secs(1)))
        .unwrap();
    let err = listener.accept().unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("accept unix {}: i/o timeout", path.display())
    );
    assert!(net::is_timeout(&err));
}

// ---- read -------------------------------------------------------------------------------------

#[test]
fn a_read_timeout_names_both_ends() {
    let (mut client, _server) = tcp_pair();
    client
        .set_read_deadline(Some(Instant::now() + Duration::from_millis(20)))
        .unwrap();
    let err = client.read(&mut [0u8; 8]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("read tcp {}: i/o timeout", route(&client))
    );
    assert!(net::is_timeout(&err) && !net::is_closed(&err));
    assert_eq!(err.kind(), ErrorKind::TimedOut);
    let op = op_error(&err);
    assert_eq!(
        op.source_addr(),
        Some(client.local_addr().to_string().as_str())
    );
    assert_eq!(op.addr(), Some(client.peer_addr().to_string().as_str()));
}

#[test]
fn a_read_after_close_now_is_the_closed_error_in_context() {
    let (client, _server) = tcp_pair();
    let route = route(&client);
    client.close_now().unwrap();
    let err = (&client).read(&mut [0u8; 8]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("read tcp {route}: use of closed network connection")
    );
    assert!(net::is_closed(&err) && err.kind() == ErrorKind::NotConnected);
    let err = client.close_now().unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("close tcp {route}: use of closed network connection")
    );
}

#[test]
fn a_reset_read_keeps_the_kind_and_errno() {
    let (mut client, server) = tcp_pair();
    client
        .set_read_deadline(Some(Instant::now() + LIMIT))
        .unwrap();
    // Closing with linger 0 sends a reset.
    server.set_linger(Some(Duration::ZERO)).unwrap();
    drop(server);
    let err = client.read(&mut [0u8; 8]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("read tcp {}: connection reset by peer", route(&client))
    );
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
    assert_eq!(
        op_error(&err).cause().raw_os_error(),
        Some(libc::ECONNRESET)
    );
}

#[test]
fn async_reads_are_in_context_and_pending_is_not_an_error() {
    use futures::io::{AsyncRead, AsyncReadExt};
    let (mut client, _server) = tcp_pair();
    // Nothing to read: Pending, no error built.
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut buf = [0u8; 8];
    assert!(std::pin::Pin::new(&mut client)
        .poll_read(&mut cx, &mut buf)
        .is_pending());

    client
        .set_read_deadline(Some(Instant::now() - Duration::from_secs(1)))
        .unwrap();
    // (std's Read is in scope too in this file, so the trait is named.)
    let err = futures::executor::block_on(AsyncReadExt::read(&mut client, &mut buf)).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("read tcp {}: i/o timeout", route(&client))
    );
    assert!(net::is_timeout(&err));
    match std::pin::Pin::new(&mut client).poll_read(&mut cx, &mut buf) {
        Poll::Ready(Err(e)) => {
            assert!(net::is_timeout(&e) && e.to_string().starts_with("read tcp"))
        }
        other => panic!("{other:?}"),
    }
}

#[cfg(feature = "tokio")]
#[test]
fn tokio_reads_and_writes_are_in_context() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut client, _server) = tcp_pair();
    let route = route(&client);
    client.close_now().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (read, write) = runtime.block_on(async {
        // (std's Read/Write are in scope too in this file, so the traits are named.)
        let read = AsyncReadExt::read(&mut client, &mut [0u8; 8]).await;
        let write = AsyncWriteExt::write_all(&mut client, b"x").await;
        (read.unwrap_err(), write.unwrap_err())
    });
    assert_eq!(
        read.to_string(),
        format!("read tcp {route}: use of closed network connection")
    );
    assert_eq!(
        write.to_string(),
        format!("write tcp {route}: use of closed network connection")
    );
    assert!(net::is_closed(&read) && net::is_closed(&write));
}

// ---- write ------------------------------------------------------------------------------------

#[test]
fn a_write_after_close_write_is_a_broken_pipe() {
    let (mut client, _server) = tcp_pair();
    client.close_write().unwrap();
    let err = client.write(b"late").unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("write tcp {}: broken pipe", route(&client))
    );
    assert_eq!(err.kind(), ErrorKind::BrokenPipe);
    assert_eq!(op_error(&err).cause().raw_os_error(), Some(libc::EPIPE));
    // write_all passes the same error on.
    let err = client.write_all(b"late").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BrokenPipe);
    assert!(err.to_string().starts_with("write tcp "), "{err}");
}

#[test]
fn a_write_timeout_names_both_ends() {
    let (mut client, _server) = tcp_pair();
    client
        .set_write_deadline(Some(Instant::now() + Duration::from_millis(50)))
        .unwrap();
    // The peer never reads: the buffers fill and the deadline fires (bounded by byte count).
    let chunk = vec![0u8; 256 * 1024];
    let mut written = 0usize;
    let err = loop {
        match client.write(&chunk) {
            Ok(n) => {
                written += n;
                assert!(written < 1 << 30, "the send buffer never filled");
            }
            Err(e) => break e,
        }
    };
    assert_eq!(
        err.to_string(),
        format!("write tcp {}: i/o timeout", route(&client))
    );
    assert!(net::is_timeout(&err) && err.kind() == ErrorKind::TimedOut);
}

#[test]
fn unix_errors_leave_the_unnamed_end_out() {
    let path = socket_path("pipe.sock");
    let listener = net::listen_unix(&path).unwrap();
    let mut client = net::dial_unix(&path).unwrap();
    let (server, _) = listener.accept().unwrap();
    drop(server);
    client.set_deadline(Some(Instant::now() + LIMIT)).unwrap();
    // The client did not bind: only the peer's path shows (Go would print "@->PATH").
    let err = client.write(b"x").unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("write unix {}: broken pipe", path.display())
    );
    assert_eq!(err.kind(), ErrorKind::BrokenPipe);
    let op = op_error(&err);
    assert_eq!(op.source_addr(), None);

    let (mut a, b) = net::UnixConn::pair().unwrap();
    drop(b);
    let err = a.write(b"x").unwrap_err();
    assert_eq!(err.to_string(), "write unix: broken pipe");
}
