//! The partial-frame timer's edges (found in review): a stale want from an earlier call, a
//! handler that waits between frames, the timeout switched off and on at run time, and inline
//! handlers started from the acceptor's poller. Each is bounded (LIMIT) and synchronises on
//! observable events, not sleeps.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{TestServer, LIMIT};
use netpoll::{Connection, EventLoop};

/// True once the server closed `client` (EOF or reset) within the client's read timeout.
fn closed(client: &mut TcpStream) -> bool {
    let mut byte = [0u8; 64];
    match client.read(&mut byte) {
        Ok(0) => true,
        Ok(n) => panic!("unexpected {:?}", String::from_utf8_lossy(&byte[..n])),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => true,
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
        Err(e) => panic!("read: {e}"),
    }
}

fn expect(client: &mut TcpStream, want: &[u8]) {
    let mut got = vec![0u8; want.len()];
    client.read_exact(&mut got).unwrap();
    assert_eq!(got, want);
}

/// Lines echoed inline on one poller; each accepted connection is sent on the channel.
fn line_server(timeout: Duration) -> (TestServer<()>, Receiver<Connection>) {
    let (tx, rx) = channel::<Connection>();
    let tx = Mutex::new(tx);
    let server = TestServer::start(
        EventLoop::builder()
            .on_prepare(move |conn| {
                tx.lock().unwrap().send(conn.clone()).unwrap();
            })
            .inline_handlers()
            .num_loops(1) // every connection and every timer on one poller thread
            .read_timeout(timeout)
            .on_request(|_, conn| {
                let line = conn.reader().until(b'\n');
                let mut writer = conn.writer();
                match line {
                    Ok(line) => writer.write_direct(line)?,
                    Err(e) => {
                        writer.write_binary(b"?")?;
                        writer.flush()?;
                        return Err(e);
                    }
                }
                writer.flush()
            })
            .build()
            .unwrap(),
    );
    (server, rx)
}

/// Case 0. `ConnReader::until` takes its line through the buffer's own `next`, never
/// through `wait_for`, so a line that completes leaves the `inline_want` of its earlier short
/// call in place. `track_partial_frame` then sees "waiting, and consumed since": it restarts the
/// clock as if a new frame were partial, and the timer closes the connection `TimedOut` once it
/// has been idle for the read timeout. Any line that was ever split across two reads arms this.
#[test]
fn an_idle_connection_after_a_split_line_is_not_timed_out() {
    const TIMEOUT: Duration = Duration::from_millis(200);
    let (server, _conns) = line_server(TIMEOUT);
    let mut client = server.connect();
    client.write_all(b"par").unwrap();
    expect(&mut client, b"?");
    client.write_all(b"t\n").unwrap();
    expect(&mut client, b"part\n");
    // Nothing is partial now: idle for 5 read timeouts.
    client.set_read_timeout(Some(TIMEOUT * 5)).unwrap();
    let started = Instant::now();
    assert!(
        !closed(&mut client),
        "closed {:?} into idleness, no frame partial",
        started.elapsed()
    );
}

/// A barrier on the (single) poller thread: an echo round trip on another connection is
/// served only after the poller finished whatever round it was in (`process` and its
/// `track_partial_frame` included).
fn barrier(probe: &mut TcpStream) {
    probe.write_all(b"sync\n").unwrap();
    expect(probe, b"sync\n");
}

/// Case 2. `set_read_timeout(None)` then `Some` again leaves `partial_since` stale:
/// `track_partial_frame` returns before touching it while the timeout is `None`, so a frame
/// that *completed* meanwhile still looks partial to the pending timer, which closes an
/// idle connection (`TimedOut`) once the timeout is back.
#[test]
fn a_frame_that_completed_while_the_timeout_was_off_is_not_timed_out() {
    const TIMEOUT: Duration = Duration::from_millis(1000);
    let (server, conns) = line_server(TIMEOUT);
    let mut probe = server.connect();
    let _probe_conn = conns.recv_timeout(LIMIT).unwrap();
    let mut client = server.connect();
    let conn = conns.recv_timeout(LIMIT).unwrap();

    client.write_all(b"part").unwrap();
    expect(&mut client, b"?"); // partial: clock started, timer armed for +TIMEOUT
    barrier(&mut probe); // that round's track_partial_frame has run
    let armed = Instant::now();

    conn.set_read_timeout(None);
    client.write_all(b" done\n").unwrap();
    expect(&mut client, b"part done\n"); // the frame completed...
    barrier(&mut probe); // ...and its round finished (timeout off: partial_since kept)
    conn.set_read_timeout(Some(TIMEOUT));
    if armed.elapsed() >= TIMEOUT {
        eprintln!("too slow to reproduce (the timer already fired while off)");
        return;
    }
    // No frame is partial now. The pending timer fires at `armed + TIMEOUT`.
    client.set_read_timeout(Some(TIMEOUT * 3)).unwrap();
    assert!(
        !closed(&mut client),
        "closed {:?} after the timer was armed, with no partial frame",
        armed.elapsed()
    );
    assert_eq!(conn.close_reason(), None);
}

/// Case 3. The opposite effect of the same staleness: the timer that fires while the
/// timeout is `None` clears `partial_timer` but leaves `partial_since`; once the timeout is
/// back, `track_partial_frame` sees "the same frame, its deadline stands" and returns without
/// arming, so that frame is never timed out however long it trickles.
#[test]
fn a_partial_frame_is_timed_out_after_the_timeout_is_switched_off_and_on() {
    const TIMEOUT: Duration = Duration::from_millis(200);
    let (server, conns) = line_server(TIMEOUT);
    let mut probe = server.connect();
    let _probe_conn = conns.recv_timeout(LIMIT).unwrap();
    let mut client = server.connect();
    let conn = conns.recv_timeout(LIMIT).unwrap();

    client.write_all(b"part").unwrap();
    expect(&mut client, b"?");
    barrier(&mut probe); // partial_since set, timer armed
    conn.set_read_timeout(None);

    // A witness on the same poller whose timer is armed later: once it is closed, the
    // client's timer (earlier deadline, same timer heap) has fired and seen `None`.
    let mut witness = server.connect();
    let _witness_conn = conns.recv_timeout(LIMIT).unwrap();
    witness.write_all(b"x").unwrap();
    expect(&mut witness, b"?");
    assert!(closed(&mut witness), "the witness was never timed out");

    conn.set_read_timeout(Some(TIMEOUT));
    client.write_all(b"more").unwrap(); // still no newline: the same frame, partial
    expect(&mut client, b"?");
    let started = Instant::now();
    client.set_read_timeout(Some(LIMIT)).unwrap();
    assert!(
        closed(&mut client),
        "a frame partial for over {:?} was never timed out (no timer armed)",
        started.elapsed()
    );
}

/// Case 4 (pre-existing, not in the diff, but it decides where `process` and
/// `track_partial_frame` run). With `on_connect`, `AcceptSink::accepted` calls
/// `schedule_processing` on the *acceptor's* poller thread, and an inline connection's
/// `process` (on_connect, then on_request for input already counted) runs there. On a thread
/// that is not the connection's poller, `runs_inline_here()` is false: a short read *blocks
/// that poller thread* instead of returning `WouldBlock`.
#[test]
fn an_inline_handler_never_blocks_even_right_after_on_connect() {
    let (entered_tx, entered_rx) = channel::<()>();
    let entered_tx = Mutex::new(entered_tx);
    let outcomes: Arc<Mutex<Vec<Result<(), ErrorKind>>>> = Arc::default();
    let recorded = outcomes.clone();
    let off_poller = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let off_poller_seen = off_poller.clone();
    let server = TestServer::start(
        EventLoop::builder()
            .inline_handlers()
            .num_loops(2)
            .on_connect(move |_, conn| {
                let own = format!("netpoll-poller-{}", conn.poller_id());
                if std::thread::current().name() == Some(own.as_str()) {
                    return; // on its own poller: nothing to show for this connection
                }
                off_poller_seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                // Let the connection's poller count the client's first bytes first (bounded).
                let give_up = Instant::now() + LIMIT;
                while conn.reader().len() < 5 && Instant::now() < give_up {
                    std::thread::yield_now();
                }
            })
            .on_request(move |_, conn| {
                let _ = entered_tx.lock().unwrap().send(());
                let got = conn.reader().next(10);
                recorded
                    .lock()
                    .unwrap()
                    .push(got.as_ref().map(|_| ()).map_err(|e| e.kind()));
                let data = got?;
                let mut writer = conn.writer();
                writer.write_direct(data)?;
                writer.flush()
            })
            .build()
            .unwrap(),
    );
    // Round robin: the acceptor took one poller, connections alternate; some land on the other.
    for i in 0..4 {
        outcomes.lock().unwrap().clear();
        let mut client = server.connect();
        client.write_all(b"hello").unwrap();
        entered_rx.recv_timeout(LIMIT).expect("handler not called");
        client.write_all(b"world").unwrap();
        expect(&mut client, b"helloworld");
        let first = outcomes.lock().unwrap()[0];
        assert_eq!(
            first,
            Err(ErrorKind::WouldBlock),
            "connection {i}: the first call's next(10) with 5 bytes buffered waited instead of \
             returning WouldBlock (the handler ran on the acceptor's poller thread)"
        );
        while entered_rx.try_recv().is_ok() {}
    }
    assert_eq!(
        off_poller.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "on_connect ran off its connection's poller"
    );
}
