//! Slowloris: many clients at once that trickle a line without ever finishing it (a byte every
//! TRICKLE, so they are never idle) or connect and say nothing, against a line-echo server
//! with a read timeout (for a started line) and an idle timeout (for a line not started). The
//! server drops each of them no sooner than its timeout and not much later (a generous bound
//! for a loaded machine), while a normal client doing round trips all along stays fast (its
//! slowest round trip well below the read timeout). The timeouts are short (300 ms and 500 ms)
//! so the whole run takes a few seconds. Afterwards the fd count returns to its baseline.
//!
//! Reactor face: `read_timeout` and `idle_timeout` of the builder, with coroutine, pool and
//! inline handlers (`until(b'\n')`). Go-net face: the handler sets a read deadline per read,
//! as a Go server does: the idle timeout while no line is started, the start of the line plus
//! the read timeout once one is (on threads, coroutines and tasks).
//!
//! `tests/partial_frame_timeout.rs` covers a single trickling client of the reactor face
//! (inline handlers, and `until` for waiting ones); this adds many at once, silent ones, both
//! bounds, the Go-net face and the fd count.

mod common;

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::faults::{
    self, wait_fds, wait_for, AsyncHandler, Driver, NetServer, SyncHandler, HANDLERS,
};
use common::{line_echo, TestServer, LIMIT};
use netpoll::net::{self, TcpConn};

const READ_TIMEOUT: Duration = Duration::from_millis(300);
const IDLE_TIMEOUT: Duration = Duration::from_millis(500);
/// A trickling client's pace: well inside the idle timeout, so only the read timeout ends it.
const TRICKLE: Duration = Duration::from_millis(150);
const TRICKLING: usize = 200;
const SILENT: usize = 50;
/// How long after its timeout a slow client may still be connected (a loaded 2-core machine).
const LATE: Duration = Duration::from_secs(2);
/// The reactor's timers count whole milliseconds, so they may fire up to 1 ms before the
/// exact instant.
const ROUNDING: Duration = Duration::from_millis(2);
/// The normal client's slowest round trip may take this long.
const NORMAL_MAX: Duration = Duration::from_millis(150);

struct Slow {
    stream: TcpStream,
    trickle: bool,
    /// When what times it out began: its first byte (trickling) or its connect (silent).
    since: Instant,
    next_byte: Instant,
    lived: Option<Duration>,
}

/// The slow clients' lifetimes, (trickling, silent), each measured from `since` until the
/// client saw the server close (EOF or reset). One thread drives them all, non-blocking.
fn slowloris(addr: SocketAddr) -> (Vec<Duration>, Vec<Duration>) {
    let mut slow: Vec<Slow> = (0..TRICKLING + SILENT)
        .map(|i| {
            let since = Instant::now();
            let mut stream = TcpStream::connect(addr).unwrap();
            let trickle = i < TRICKLING;
            if trickle {
                stream.write_all(b"x").unwrap();
            }
            stream.set_nonblocking(true).unwrap();
            Slow {
                stream,
                trickle,
                since,
                next_byte: since + TRICKLE,
                lived: None,
            }
        })
        .collect();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    while slow.iter().any(|s| s.lived.is_none()) {
        assert!(started.elapsed() < LIMIT, "slow clients still connected");
        for s in slow.iter_mut().filter(|s| s.lived.is_none()) {
            let gone = match s.stream.read(&mut buf) {
                Ok(0) => true,
                Ok(n) => panic!("the server answered {n} bytes of an unfinished line"),
                Err(e) if e.kind() == ErrorKind::WouldBlock => false,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => true,
                Err(e) => panic!("slow client read: {e}"),
            };
            let now = Instant::now();
            if !gone && s.trickle && now >= s.next_byte {
                match s.stream.write(b"x") {
                    Ok(_) => s.next_byte += TRICKLE,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    // Written after the server closed: the next read sees it.
                    Err(e)
                        if matches!(
                            e.kind(),
                            ErrorKind::BrokenPipe | ErrorKind::ConnectionReset
                        ) => {}
                    Err(e) => panic!("slow client write: {e}"),
                }
            }
            if gone {
                s.lived = Some(now - s.since);
            }
        }
        std::thread::sleep(Duration::from_millis(5)); // the sweep's pace
    }
    let lived = |trickle: bool| -> Vec<Duration> {
        slow.iter()
            .filter(|s| s.trickle == trickle)
            .map(|s| s.lived.unwrap())
            .collect()
    };
    (lived(true), lived(false))
}

/// Round trips of a line, paced, until `stop`; returns how many and the slowest.
fn normal_client(addr: SocketAddr, stop: Arc<AtomicBool>) -> (usize, Duration) {
    let mut client = TcpStream::connect(addr).unwrap();
    client.set_read_timeout(Some(LIMIT)).unwrap();
    client.set_nodelay(true).unwrap();
    let (mut count, mut slowest) = (0, Duration::ZERO);
    let mut got = [0u8; 5];
    while !stop.load(Ordering::SeqCst) {
        let asked = Instant::now();
        client.write_all(b"ping\n").unwrap();
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ping\n");
        slowest = slowest.max(asked.elapsed());
        count += 1;
        std::thread::sleep(Duration::from_millis(10)); // the pace of the round trips
    }
    (count, slowest)
}

/// Slow clients and a normal one at once against `addr`; checks both bounds of every slow
/// client's end and the normal client's pace.
fn run(addr: SocketAddr, what: &str, rounding: Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let normal = {
        let stop = stop.clone();
        std::thread::spawn(move || normal_client(addr, stop))
    };
    let (trickling, silent) = slowloris(addr);
    stop.store(true, Ordering::SeqCst);
    let (round_trips, slowest) = normal.join().unwrap();
    for (lived, timeout, kind) in [
        (&trickling, READ_TIMEOUT, "trickling"),
        (&silent, IDLE_TIMEOUT, "silent"),
    ] {
        let first = lived.iter().min().unwrap();
        let last = lived.iter().max().unwrap();
        assert!(
            *first + rounding >= timeout,
            "{what}: a {kind} client was dropped after {first:?}, before its timeout {timeout:?}"
        );
        assert!(
            *last <= timeout + LATE,
            "{what}: a {kind} client was dropped only after {last:?} (timeout {timeout:?})"
        );
    }
    assert!(round_trips > 10, "{what}: {round_trips} normal round trips");
    assert!(
        slowest < NORMAL_MAX,
        "{what}: a normal round trip took {slowest:?} among the slow clients"
    );
}

#[test]
fn reactor_drops_slowloris_clients_on_time_and_keeps_a_normal_client_fast() {
    let _serial = faults::serial();
    for handlers in HANDLERS {
        let baseline = faults::baseline();
        let reasons = Arc::new(Mutex::new(Vec::new()));
        let mut server = TestServer::start(
            // Every trickling client holds a waiting handler: a pool thread each.
            handlers
                .builder_with_pool(netpoll::HandlerPool::DEFAULT_MAX_WORKERS)
                .read_timeout(READ_TIMEOUT)
                .idle_timeout(IDLE_TIMEOUT)
                .on_prepare({
                    let reasons = reasons.clone();
                    move |conn| {
                        let reasons = reasons.clone();
                        conn.add_close_callback(move |conn| {
                            reasons.lock().unwrap().push(conn.close_reason());
                        });
                    }
                })
                .on_request(line_echo)
                .build()
                .unwrap(),
        );
        run(server.addr, &format!("{handlers:?}"), ROUNDING);
        let all = TRICKLING + SILENT + 1;
        wait_for("close callbacks", || reasons.lock().unwrap().len() == all);
        let timed_out = reasons
            .lock()
            .unwrap()
            .iter()
            .filter(|r| **r == Some(ErrorKind::TimedOut))
            .count();
        assert_eq!(timed_out, TRICKLING + SILENT, "{handlers:?}: timed out");
        wait_for("connections closed", || server.server.connections() == 0);
        server.stop().unwrap();
        drop(server);
        wait_fds(baseline, &format!("{handlers:?}"));
    }
}

/// A line echo's framing with Go-style deadlines: the idle timeout while no line is started,
/// the line's start plus the read timeout once one is.
#[derive(Default)]
struct Lines {
    partial: Vec<u8>,
    since: Option<Instant>,
}

impl Lines {
    fn read_deadline(&self) -> Instant {
        match self.since {
            None => Instant::now() + IDLE_TIMEOUT,
            Some(started) => started + READ_TIMEOUT,
        }
    }

    /// Takes what was read; returns the lines it completed.
    fn push(&mut self, data: &[u8]) -> Vec<u8> {
        let was_partial = !self.partial.is_empty();
        self.partial.extend_from_slice(data);
        let end = self
            .partial
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let lines: Vec<u8> = self.partial.drain(..end).collect();
        if self.partial.is_empty() {
            self.since = None;
        } else if end > 0 || !was_partial {
            self.since = Some(Instant::now()); // a new line started in this read
        }
        lines
    }
}

fn lines_sync() -> SyncHandler {
    Arc::new(|conn: TcpConn| {
        let mut lines = Lines::default();
        let mut buf = vec![0u8; 4096];
        let mut echoed = 0u64;
        loop {
            conn.set_read_deadline(Some(lines.read_deadline()))?;
            let n = (&conn).read(&mut buf)?;
            if n == 0 {
                return Ok(echoed);
            }
            let reply = lines.push(&buf[..n]);
            if !reply.is_empty() {
                conn.set_write_deadline(Some(Instant::now() + LIMIT))?;
                (&conn).write_all(&reply)?;
                echoed += reply.len() as u64;
            }
        }
    })
}

fn lines_async() -> AsyncHandler {
    Arc::new(|mut conn: TcpConn| {
        Box::pin(async move {
            use futures::io::{AsyncReadExt, AsyncWriteExt};
            let mut lines = Lines::default();
            let mut buf = vec![0u8; 4096];
            let mut echoed = 0u64;
            loop {
                conn.set_read_deadline(Some(lines.read_deadline()))?;
                let n = AsyncReadExt::read(&mut conn, &mut buf).await?;
                if n == 0 {
                    return Ok(echoed);
                }
                let reply = lines.push(&buf[..n]);
                if !reply.is_empty() {
                    conn.set_write_deadline(Some(Instant::now() + LIMIT))?;
                    AsyncWriteExt::write_all(&mut conn, &reply).await?;
                    echoed += reply.len() as u64;
                }
            }
        })
    })
}

fn net_drops_slowloris_clients(driver: Driver) {
    let _serial = faults::serial();
    let baseline = faults::baseline();
    let server = NetServer::start(driver, lines_sync(), lines_async());
    run(server.addr, &format!("{driver:?}"), Duration::ZERO);
    server.stop();
    let results: Vec<io::Result<u64>> = server.all_results();
    let timed_out = results
        .iter()
        .filter(|r| matches!(r, Err(e) if net::is_timeout(e)))
        .count();
    assert_eq!(timed_out, TRICKLING + SILENT, "{driver:?}: {results:?}");
    assert_eq!(results.len(), TRICKLING + SILENT + 1, "{driver:?}");
    drop(server);
    wait_fds(baseline, &format!("{driver:?}"));
}

#[test]
fn net_on_threads_drops_slowloris_clients_on_time() {
    net_drops_slowloris_clients(Driver::Threads);
}

#[test]
fn net_on_coroutines_drops_slowloris_clients_on_time() {
    net_drops_slowloris_clients(Driver::Coroutines);
}

#[test]
fn net_on_tasks_drops_slowloris_clients_on_time() {
    net_drops_slowloris_clients(Driver::Tasks);
}
