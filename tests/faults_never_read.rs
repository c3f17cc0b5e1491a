//! Peers that send requests and never read the replies.
//!
//! Reactor face (coroutine, pool and inline handlers): each request (one byte) asks for a
//! REPLY-byte reply; the handler asks `ConnWriter::ready` before each and copies the reply
//! in, so without the output cap it would queue a reply for every request in its input
//! (gigabytes). With the cap the server's RSS growth stays within a bound of the caps, the
//! handler gets backpressure (a waiting handler's `ready`/write waits the whole write timeout
//! and fails with `TimedOut`; an inline handler's `ready` says `WouldBlock`), and the write
//! timeout then closes the connection, no sooner and not much later than it should.
//!
//! Go-net face (threads, coroutines, tasks): a write with a write deadline blocks, returns the
//! timeout error at the deadline (within bounds), and the connection then closes cleanly;
//! it has no user-space output queue, so what it wrote is bounded by the kernel's buffers and
//! there is no RSS to watch. After each, the fd count returns to its baseline.
//!
//! `tests/connection_behaviour.rs` checks one waiting (coroutine) handler's flush and writes
//! past the cap timing out, and `tests/net_conn.rs` one thread's write deadline; this adds
//! many peers at once, the memory bound, every executor and driver, the close and the fds.

mod common;

use std::io::{self, ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::faults::{
    self, rss, wait_fds, AsyncHandler, Driver, Handlers, NetServer, SyncHandler, HANDLERS,
};
use common::{TestServer, LIMIT};
use netpoll::net::{self, TcpConn};

const CLIENTS: usize = 8;
const REPLY: usize = 256 * 1024;
const OUTPUT_CAP: usize = 1 << 20;
const INPUT_CAP: usize = 64 * 1024;
const WRITE_TIMEOUT: Duration = Duration::from_millis(300);
/// How late past its bound a close may come (a loaded 2-core machine).
const LATE: Duration = Duration::from_secs(2);
/// A guard for the machine, should the cap fail: a connection that queued this many replies
/// ends its handler (and the test) before memory runs away.
const MAX_REPLIES: usize = 64;
/// The reactor's timers count whole milliseconds, so they may fire up to 1 ms early.
const ROUNDING: Duration = Duration::from_millis(2);

/// A client that never reads: a small receive buffer (no autotuning to tens of MiB), then
/// requests written until the server closes the connection (the write fails) or LIMIT.
fn never_reading_client(addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    socket.connect(&addr.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_write_timeout(Some(LIMIT)).unwrap();
    stream
}

/// What a handler saw of its connection's backpressure.
#[derive(Default)]
struct Seen {
    replies: usize,
    /// The first failed call: when it began, how long it waited, its error.
    pushed_back: Option<(Instant, Duration, ErrorKind)>,
    closed: Option<(Instant, Option<ErrorKind>)>,
}

type Shared = Arc<Mutex<Seen>>;

/// `f`, recording its failure as the connection's first backpressure.
fn timed<T>(seen: &Shared, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    let asked = Instant::now();
    let result = f();
    if let Err(e) = &result {
        let mut seen = seen.lock().unwrap();
        if seen.pushed_back.is_none() {
            seen.pushed_back = Some((asked, asked.elapsed(), e.kind()));
        }
    }
    result
}

fn reactor_holds_memory_and_times_out(handlers: Handlers) {
    let baseline = faults::baseline();
    let reply: Arc<Vec<u8>> = Arc::new(vec![7u8; REPLY]);
    let seen: Arc<Mutex<Vec<Shared>>> = Arc::default();
    let mut server = TestServer::start(
        handlers
            .builder()
            .output_cap(OUTPUT_CAP)
            .input_cap(INPUT_CAP)
            .write_timeout(WRITE_TIMEOUT)
            .on_prepare({
                let seen = seen.clone();
                move |conn| {
                    let mine = Shared::default();
                    seen.lock().unwrap().push(mine.clone());
                    let closed = mine.clone();
                    conn.add_close_callback(move |conn| {
                        closed.lock().unwrap().closed = Some((Instant::now(), conn.close_reason()));
                    });
                    mine
                }
            })
            .on_request(move |seen, conn| {
                let mut reader = conn.reader();
                let mut writer = conn.writer();
                while !reader.is_empty() {
                    // Stop taking requests while the peer does not take replies.
                    timed(seen, || writer.ready())?;
                    reader.skip(1)?;
                    let replies = {
                        let mut seen = seen.lock().unwrap();
                        seen.replies += 1;
                        seen.replies
                    };
                    if replies > MAX_REPLIES {
                        return Err(io::Error::other("the output cap did not hold"));
                    }
                    timed(seen, || writer.write_binary(&reply))?;
                }
                timed(seen, || writer.flush())
            })
            .build()
            .unwrap(),
    );
    let rss_before = rss();
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let addr = server.addr;
            std::thread::spawn(move || {
                let client = never_reading_client(addr);
                let requests = vec![b'r'; 4096];
                // Blocks once the server stops taking requests; fails once it closed.
                while (&client).write(&requests).is_ok() {}
                client
            })
        })
        .collect();
    let mut peak = 0;
    faults::wait_for(&format!("{handlers:?}: every connection closed"), || {
        peak = peak.max(rss().saturating_sub(rss_before));
        let seen = seen.lock().unwrap();
        seen.len() == CLIENTS && seen.iter().all(|s| s.lock().unwrap().closed.is_some())
    });
    let clients: Vec<TcpStream> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let bound = CLIENTS * (OUTPUT_CAP + INPUT_CAP + 2 * REPLY) + (16 << 20);
    assert!(
        peak <= bound,
        "{handlers:?}: RSS grew by {} MiB (bound {} MiB)",
        peak >> 20,
        bound >> 20
    );
    for s in seen.lock().unwrap().iter() {
        let s = s.lock().unwrap();
        let (asked, waited, kind) = s.pushed_back.expect("the handler got no backpressure");
        let (closed_at, reason) = s.closed.unwrap();
        assert!(
            s.replies <= MAX_REPLIES,
            "{handlers:?}: the cap did not hold"
        );
        assert_eq!(
            reason,
            Some(ErrorKind::TimedOut),
            "{handlers:?}: close reason"
        );
        // A waiting handler waits out the write timeout, and its error closes once what is
        // queued has gone out or the write timeout passed again; an inline one is told
        // `WouldBlock`, and the write timeout closes it once the peer has taken nothing of
        // what it queued for that long.
        let (first, last) = if handlers == Handlers::Inline {
            assert_eq!(kind, ErrorKind::WouldBlock, "{handlers:?}");
            // The peer took its last byte after the start and before `asked`; the write
            // timeout closes once it has taken nothing for that long (checked at most a
            // write timeout later).
            (started + WRITE_TIMEOUT, asked + 2 * WRITE_TIMEOUT + LATE)
        } else {
            assert_eq!(kind, ErrorKind::TimedOut, "{handlers:?}");
            assert!(waited >= WRITE_TIMEOUT, "{handlers:?}: waited {waited:?}");
            (asked + 2 * WRITE_TIMEOUT, asked + 2 * WRITE_TIMEOUT + LATE)
        };
        assert!(
            closed_at + ROUNDING >= first,
            "{handlers:?}: closed {:?} after the backpressure began, too soon",
            closed_at - asked
        );
        assert!(
            closed_at <= last,
            "{handlers:?}: closed {:?} after the backpressure began, too late",
            closed_at - asked
        );
    }
    drop(clients);
    server.stop().unwrap();
    drop(server);
    wait_fds(baseline, &format!("{handlers:?}"));
}

#[test]
fn reactor_output_cap_holds_memory_then_the_write_timeout_closes() {
    let _serial = faults::serial();
    for handlers in HANDLERS {
        reactor_holds_memory_and_times_out(handlers);
    }
}

/// The Go-net handler's end: the write that failed must have failed with the timeout, at the
/// deadline; then the connection closes. Returns what was written.
fn check_write_timeout(
    conn: &TcpConn,
    started: Instant,
    error: io::Error,
    written: usize,
) -> io::Result<u64> {
    let waited = started.elapsed();
    if !net::is_timeout(&error) {
        return Err(error);
    }
    if waited < WRITE_TIMEOUT || waited > WRITE_TIMEOUT + LATE {
        return Err(io::Error::other(format!(
            "the write timed out after {waited:?}"
        )));
    }
    conn.close_now()?;
    Ok(written as u64)
}

/// Writes past what the kernel holds for a peer that reads nothing: the writes must block.
const TOO_MUCH: usize = 16 << 20;

fn write_until_timeout_sync() -> SyncHandler {
    Arc::new(|conn: TcpConn| {
        let started = Instant::now();
        conn.set_write_deadline(Some(started + WRITE_TIMEOUT))?;
        let chunk = vec![7u8; 64 * 1024];
        let mut written = 0;
        while written < TOO_MUCH {
            match (&conn).write(&chunk) {
                Ok(n) => written += n,
                Err(e) => return check_write_timeout(&conn, started, e, written),
            }
        }
        Err(io::Error::other("writes did not block"))
    })
}

fn write_until_timeout_async() -> AsyncHandler {
    Arc::new(|mut conn: TcpConn| {
        Box::pin(async move {
            use futures::io::AsyncWriteExt;
            let started = Instant::now();
            conn.set_write_deadline(Some(started + WRITE_TIMEOUT))?;
            let chunk = vec![7u8; 64 * 1024];
            let mut written = 0;
            while written < TOO_MUCH {
                match AsyncWriteExt::write(&mut conn, &chunk).await {
                    Ok(n) => written += n,
                    Err(e) => return check_write_timeout(&conn, started, e, written),
                }
            }
            Err(io::Error::other("writes did not block"))
        })
    })
}

fn net_write_deadline_against_a_peer_that_never_reads(driver: Driver) {
    let _serial = faults::serial();
    let baseline = faults::baseline();
    let server = NetServer::start(
        driver,
        write_until_timeout_sync(),
        write_until_timeout_async(),
    );
    let clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| never_reading_client(server.addr))
        .collect();
    let results: Vec<io::Result<u64>> = (0..CLIENTS).map(|_| server.result()).collect();
    for r in &results {
        assert!(r.is_ok(), "{driver:?}: {results:?}");
    }
    drop(clients);
    server.stop();
    drop(server);
    wait_fds(baseline, &format!("{driver:?}"));
}

#[test]
fn net_on_threads_write_deadline_against_a_peer_that_never_reads() {
    net_write_deadline_against_a_peer_that_never_reads(Driver::Threads);
}

#[test]
fn net_on_coroutines_write_deadline_against_a_peer_that_never_reads() {
    net_write_deadline_against_a_peer_that_never_reads(Driver::Coroutines);
}

#[test]
fn net_on_tasks_write_deadline_against_a_peer_that_never_reads() {
    net_write_deadline_against_a_peer_that_never_reads(Driver::Tasks);
}
