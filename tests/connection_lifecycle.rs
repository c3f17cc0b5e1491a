//! A connection's life at its edges: callback order around a slow `on_connect`, connects while
//! the server shuts down, and `detach` handing the socket to other code.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{TestServer, LIMIT};
use netpoll::EventLoop;

fn shared<T: Send + 'static>(tx: Sender<T>) -> Arc<Mutex<Sender<T>>> {
    Arc::new(Mutex::new(tx))
}

/// The peer hangs up while `on_connect` still runs: `on_disconnect` comes after `on_connect`
/// returned, never during it (CloudWeGo netpoll's order).
#[test]
fn on_disconnect_waits_for_a_slow_on_connect() {
    let (log_tx, log_rx) = channel::<&'static str>();
    let log = shared(log_tx);
    let (disconnected_tx, disconnected_rx) = channel::<()>();
    let disconnected_rx = Arc::new(Mutex::new(disconnected_rx));
    let disconnected_tx = shared(disconnected_tx);
    let server = TestServer::start(
        EventLoop::builder()
            .on_connect({
                let log = log.clone();
                move |_, conn| {
                    let _ = log.lock().unwrap().send("connect-start");
                    // Returns once the poller has seen the hang-up (the client sends nothing).
                    let eof = conn.reader().next(1);
                    assert!(eof.is_err());
                    // An on_disconnect started by that hang-up would run now: give it the
                    // chance to show itself (a bounded wait for what must not happen).
                    // (Off the poller: a coroutine handler must not block its thread.)
                    let disconnected_rx = disconnected_rx.clone();
                    let early = netpoll::blocking(move || {
                        disconnected_rx
                            .lock()
                            .unwrap()
                            .recv_timeout(Duration::from_millis(300))
                    });
                    if early.is_ok() {
                        let _ = log.lock().unwrap().send("disconnect-during-connect");
                    }
                    let _ = log.lock().unwrap().send("connect-end");
                }
            })
            .on_request(|_, conn| {
                let mut reader = conn.reader();
                let n = reader.len();
                reader.skip(n)
            })
            .on_disconnect({
                let log = log.clone();
                move |_, _| {
                    let _ = log.lock().unwrap().send("disconnect");
                    let _ = disconnected_tx.lock().unwrap().send(());
                }
            })
            .build()
            .unwrap(),
    );
    let client = server.connect();
    assert_eq!(log_rx.recv_timeout(LIMIT).unwrap(), "connect-start");
    drop(client);
    let order: Vec<_> = (0..2)
        .map(|_| log_rx.recv_timeout(LIMIT).unwrap())
        .collect();
    assert_eq!(order, ["connect-end", "disconnect"]);
}

/// Once shutdown begins, new connects are refused at once instead of being completed by the
/// kernel and reset later.
#[test]
fn connects_during_shutdown_are_refused() {
    let (release_tx, release_rx) = channel::<()>();
    let release = Arc::new(Mutex::new(release_rx));
    let (busy_tx, busy_rx) = channel();
    let busy = shared(busy_tx);
    let server = TestServer::start(
        EventLoop::builder()
            .on_request(move |_, conn| {
                let request = conn.reader().next(1)?;
                if &request[..] == b"p" {
                    let mut writer = conn.writer();
                    writer.write_binary(b"p")?;
                    return writer.flush();
                }
                let _ = busy.lock().unwrap().send(());
                // Keeps shutdown waiting for this connection (waiting off the poller: a
                // coroutine handler must not block its thread).
                let release = release.clone();
                let _ = netpoll::blocking(move || release.lock().unwrap().recv_timeout(LIMIT));
                Ok(())
            })
            .build()
            .unwrap(),
    );
    let mut busy_client = server.connect();
    busy_client.write_all(b"x").unwrap();
    busy_rx.recv_timeout(LIMIT).unwrap();
    let mut idle_client = server.connect();
    // A round trip: accepted and served (not left in the accept queue, which shutdown resets).
    idle_client.write_all(b"p").unwrap();
    idle_client.read_exact(&mut [0u8; 1]).unwrap();

    let stopper = server.server.clone();
    let stopping = std::thread::spawn(move || stopper.shutdown(Instant::now() + LIMIT));
    // Shutdown closes idle connections right after it stops listening: EOF here means new
    // connects meet a closed door.
    let mut buf = [0u8; 1];
    assert_eq!(idle_client.read(&mut buf).unwrap(), 0);
    let refused = TcpStream::connect_timeout(&server.addr, LIMIT);
    match refused {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}"),
        Ok(stream) => {
            stream.set_read_timeout(Some(LIMIT)).unwrap();
            panic!("connected during shutdown to {:?}", stream.peer_addr());
        }
    }
    drop(release_tx);
    stopping.join().unwrap().unwrap();
    drop(busy_client);
}

/// `detach` takes the connection off its poller without closing the socket: the caller talks
/// over it directly, the library reads nothing more from it, and close callbacks run.
#[test]
fn detach_hands_over_a_working_socket() {
    let (socket_tx, socket_rx) = channel();
    let socket_tx = shared(socket_tx);
    let (closed_tx, closed_rx) = channel();
    let closed_tx = shared(closed_tx);
    let server = TestServer::start(
        EventLoop::builder()
            .on_connect(move |_, conn| {
                let closed_tx = closed_tx.clone();
                conn.add_close_callback(move |_| {
                    let _ = closed_tx.lock().unwrap().send(());
                });
                let _ = socket_tx.lock().unwrap().send(conn.detach());
                // A second detach (or any use) finds it closed here.
                assert!(conn.detach().is_err());
                assert!(!conn.is_active());
            })
            .on_request(|_, _| panic!("a detached connection's input reached the handler"))
            .build()
            .unwrap(),
    );
    let mut client = server.connect();
    let socket = socket_rx.recv_timeout(LIMIT).unwrap().unwrap();
    closed_rx.recv_timeout(LIMIT).unwrap();
    socket.set_nonblocking(false).unwrap();
    socket.set_read_timeout(Some(LIMIT)).unwrap();
    let mut stream: TcpStream = socket.into();
    client.write_all(b"ping").unwrap();
    let mut got = [0u8; 4];
    stream.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");
    stream.write_all(b"pong").unwrap();
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"pong");
    // The server no longer counts it.
    assert_eq!(server.server.connections(), 0);
}
