//! Edges of a connection's end found in review: a reset still runs on_disconnect, an inline
//! reply survives a truncated trailing frame, a shutdown that lands inside an accept batch.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{TestServer, LIMIT};
use netpoll::EventLoop;

fn shared<T: Send + 'static>(tx: Sender<T>) -> Arc<Mutex<Sender<T>>> {
    Arc::new(Mutex::new(tx))
}

/// Events of one connection until its close callback ran.
fn until_closed(rx: &std::sync::mpsc::Receiver<&'static str>) -> Vec<&'static str> {
    let mut seen = Vec::new();
    loop {
        let e = rx.recv_timeout(LIMIT).expect("connection never closed");
        seen.push(e);
        if e == "close" {
            return seen;
        }
    }
}

fn disconnect_server(log: Arc<Mutex<Sender<&'static str>>>) -> TestServer {
    let on_close_log = log.clone();
    TestServer::start(
        EventLoop::builder()
            .on_prepare(move |conn| {
                let log = on_close_log.clone();
                conn.add_close_callback(move |_| {
                    let _ = log.lock().unwrap().send("close");
                });
            })
            .on_request(common::echo)
            .on_disconnect(move |_, _| {
                let _ = log.lock().unwrap().send("disconnect");
            })
            .build()
            .unwrap(),
    )
}

/// Control: an orderly close by the peer runs on_disconnect before the close callbacks.
#[test]
fn on_disconnect_runs_when_the_peer_closes() {
    let (tx, rx) = channel();
    let server = disconnect_server(shared(tx));
    let mut client = server.connect();
    client.write_all(b"x").unwrap();
    client.read_exact(&mut [0u8; 1]).unwrap();
    drop(client);
    assert_eq!(until_closed(&rx), ["disconnect", "close"]);
}

/// The peer resets (SO_LINGER 0): on_disconnect must still run (it did before bcceee5, where
/// on_hangup always went through peer_closed). Today read_input gets ECONNRESET, closes, and
/// hung_up returns at `CLOSED` before peer_closed: on_disconnect never runs.
#[test]
fn on_disconnect_runs_when_the_peer_resets() {
    let (tx, rx) = channel();
    let server = disconnect_server(shared(tx));
    let mut client = server.connect();
    client.write_all(b"x").unwrap();
    client.read_exact(&mut [0u8; 1]).unwrap();
    socket2::SockRef::from(&client)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(client);
    assert_eq!(until_closed(&rx), ["disconnect", "close"]);
}

/// An inline handler written like the project's own (`until(b'\n')?`) queues a large reply;
/// the peer sent one full line plus a truncated one and half-closed. The reply must arrive in
/// full before EOF. Today the handler's next `until` returns UnexpectedEof once the EOF was
/// read, handle_input turns that into close_with (immediate), and the queued reply is cut.
#[test]
fn an_inline_reply_survives_a_truncated_trailing_frame() {
    const REPLY: usize = 16 << 20;
    let (eof_tx, eof_rx) = channel::<()>();
    let eof = shared(eof_tx);
    let server = TestServer::start(
        EventLoop::builder()
            .inline_handlers()
            // Big enough that the reply never pauses input (OUTPUT_FULL): the EOF is read while
            // the reply is still queued.
            .output_cap(64 << 20)
            .on_request(|_, conn| {
                let _line = conn.reader().until(b'\n')?;
                let mut writer = conn.writer();
                writer.write_binary(&vec![b'r'; REPLY])?;
                writer.flush()
            })
            // Inline: runs in peer_closed, i.e. once the server has read our FIN.
            .on_disconnect(move |_, _| {
                let _ = eof.lock().unwrap().send(());
            })
            .build()
            .unwrap(),
    );
    let mut client = TcpStream::connect(server.addr).unwrap();
    client.set_read_timeout(Some(LIMIT)).unwrap();
    client.write_all(b"request\npartial").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    // Not reading until the server saw the end of input: the reply is queued at that moment.
    eof_rx.recv_timeout(LIMIT).unwrap();
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let end = loop {
        match client.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => got += n,
            Err(e) => break Err(e),
        }
    };
    assert_eq!((got, end.map_err(|e| e.kind())), (REPLY, Ok(())));
}

/// Shutdown while the acceptor is in the middle of an accept batch: after stop_listening's
/// shutdown(2), the batch's next accept() fails with EINVAL, which on_ready treats as a fatal
/// listener error: serve returns Err(EINVAL) for a graceful shutdown. (The connection accepted
/// in that batch also escapes the shutdown snapshot, so shutdown waits for it to the deadline.)
#[test]
fn a_graceful_shutdown_during_an_accept_batch_returns_ok() {
    let (entered_tx, entered_rx) = channel::<()>();
    let (go_tx, go_rx) = channel::<()>();
    let entered = shared(entered_tx);
    let go = Arc::new(Mutex::new(go_rx));
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (busy_tx, busy_rx) = channel::<()>();
    let busy = shared(busy_tx);
    let (release_tx, release_rx) = channel::<()>();
    let release = Arc::new(Mutex::new(release_rx));
    let mut server = TestServer::start(
        EventLoop::builder()
            .on_prepare(move |_| {
                // The third connection holds the acceptor inside its accept batch.
                if accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 2 {
                    let _ = entered.lock().unwrap().send(());
                    let _ = go.lock().unwrap().recv_timeout(LIMIT);
                }
            })
            .on_request(move |_, conn| {
                let request = conn.reader().next(1)?;
                if &request[..] == b"p" {
                    let mut writer = conn.writer();
                    writer.write_binary(b"p")?;
                    return writer.flush();
                }
                let _ = busy.lock().unwrap().send(());
                // Waits off the poller: a coroutine handler must not block its thread.
                let release = release.clone();
                let _ = netpoll::blocking(move || release.lock().unwrap().recv_timeout(LIMIT));
                Ok(())
            })
            .build()
            .unwrap(),
    );
    let mut busy_client = server.connect();
    busy_client.write_all(b"b").unwrap();
    busy_rx.recv_timeout(LIMIT).unwrap();
    let mut idle_client = server.connect();
    idle_client.write_all(b"p").unwrap();
    idle_client.read_exact(&mut [0u8; 1]).unwrap();
    let _third = server.connect();
    entered_rx.recv_timeout(LIMIT).unwrap();

    let stopper = server.server.clone();
    let stopping =
        std::thread::spawn(move || stopper.shutdown(Instant::now() + Duration::from_secs(2)));
    // EOF on the idle client: shutdown has stopped listening.
    assert_eq!(idle_client.read(&mut [0u8; 1]).unwrap(), 0);
    go_tx.send(()).unwrap();
    drop(release_tx);
    let shutdown = stopping.join().unwrap();
    let served = server.serving.take().unwrap().join().unwrap();
    assert_eq!(
        (
            served.map_err(|e| e.to_string()),
            shutdown.map_err(|e| e.kind())
        ),
        (Ok(()), Ok(()))
    );
}

/// A handler that queues a reply and then returns an error (a protocol error, say) closes the
/// connection only after that reply went out: inline, where flush never waits, too.
#[test]
fn a_handler_error_closes_after_its_reply_went_out() {
    const REPLY: usize = 8 << 20;
    for inline in [false, true] {
        let mut builder = EventLoop::builder().on_request(|_, conn| {
            let mut reader = conn.reader();
            let n = reader.len();
            reader.skip(n)?;
            drop(reader);
            let mut writer = conn.writer();
            writer.write_binary(&vec![b'e'; REPLY])?;
            writer.flush()?;
            Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "protocol error",
            ))
        });
        if inline {
            builder = builder.inline_handlers();
        }
        let server = TestServer::start(builder.build().unwrap());
        let mut client = server.connect();
        client.write_all(b"garbage").unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), REPLY, "inline={inline}: the reply was cut short");
    }
}
