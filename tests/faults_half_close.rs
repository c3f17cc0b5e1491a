//! Half-closes both ways, on the reactor face (coroutine, pool and inline handlers) and the
//! Go-net face (threads, coroutines, tasks):
//!
//! - the client shuts down its write side in the middle of a large echo (several at once, of
//!   different sizes): the server still sends all the echo that remains, then closes; every
//!   byte comes back in order, each connection ends once;
//! - the server shuts down its write side (reactor: `conn.socket().shutdown(Write)`, the
//!   reactor has no call of its own for it; Go-net: `close_write`) while the client keeps
//!   sending: the client reads EOF, goes on sending, and the server reads (and checks) every
//!   byte it sends.
//!
//! After each, the fd count returns to its baseline. `tests/half_close.rs` covers the first
//! case for the reactor's coroutine and inline handlers in more sizes and with input caps and
//! write timeouts; here it also runs on a real handler pool and on the Go-net face, and counts
//! the ends and the fds.

mod common;

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use common::faults::{
    self, checked_echo, echo_async, echo_sync, wait_fds, AsyncHandler, Ends, NetServer,
    SyncHandler, DRIVERS, HANDLERS,
};
use common::{echo, pattern, TestServer, LIMIT};
use netpoll::net::TcpConn;

const ECHO_SIZES: [usize; 3] = [1, 100_000, 8 << 20];

/// Echoes of every size at once, each half-closed by its client as soon as it has sent all.
fn concurrent_half_closed_echoes(addr: SocketAddr) {
    let runs: Vec<_> = ECHO_SIZES
        .iter()
        .enumerate()
        .map(|(seed, &size)| {
            std::thread::spawn(move || checked_echo(addr, Arc::new(pattern(seed as u64, size))))
        })
        .collect();
    for run in runs {
        run.join().unwrap();
    }
}

#[test]
fn reactor_sends_the_rest_of_the_echo_after_the_client_half_closes() {
    let _serial = faults::serial();
    for handlers in HANDLERS {
        let baseline = faults::baseline();
        let ends = Ends::default();
        let server = TestServer::start(
            handlers
                .builder()
                .on_prepare({
                    let ends = ends.clone();
                    move |conn| ends.watch(conn)
                })
                .on_request(echo)
                .on_disconnect(ends.on_disconnect())
                .build()
                .unwrap(),
        );
        concurrent_half_closed_echoes(server.addr);
        let n = ECHO_SIZES.len();
        ends.finish(server, n, n, baseline, &format!("{handlers:?}"));
    }
}

#[test]
fn net_sends_the_rest_of_the_echo_after_the_client_half_closes() {
    let _serial = faults::serial();
    for driver in DRIVERS {
        let baseline = faults::baseline();
        let server = NetServer::start(driver, echo_sync(), echo_async());
        concurrent_half_closed_echoes(server.addr);
        server.stop();
        let mut echoed: Vec<u64> = server
            .all_results()
            .into_iter()
            .map(|r| r.unwrap_or_else(|e| panic!("{driver:?}: {e}")))
            .collect();
        echoed.sort();
        let expected: Vec<u64> = ECHO_SIZES.iter().map(|&n| n as u64).collect();
        assert_eq!(echoed, expected, "{driver:?}");
        drop(server);
        wait_fds(baseline, &format!("{driver:?}"));
    }
}

/// What the client sends after the server shut down its write side.
const SENT: usize = 4 << 20;
/// The server shuts down its write side once it has this much.
const SHUT_AFTER: usize = 64 * 1024;
/// The client sends this much, waits for EOF, then sends the rest.
const BEFORE_EOF: usize = 1 << 20;
/// The server's last words before it shuts down its write side.
const BYE: &[u8] = b"bye\n";

/// The server's view of one connection: what arrived, checked against what the client sends.
struct Sink {
    expected: Arc<Vec<u8>>,
    got: usize,
    wrong: Option<usize>,
    shut: bool,
}

impl Sink {
    fn new(expected: Arc<Vec<u8>>) -> Sink {
        Sink {
            expected,
            got: 0,
            wrong: None,
            shut: false,
        }
    }

    /// Takes `data`; true when it is time to shut down the write side (once).
    fn take(&mut self, data: &[u8]) -> bool {
        let end = self.got + data.len();
        if self.wrong.is_none()
            && (end > self.expected.len() || data != &self.expected[self.got..end])
        {
            self.wrong = Some(self.got);
        }
        self.got = end;
        if self.got >= SHUT_AFTER && !self.shut {
            self.shut = true;
            return true;
        }
        false
    }

    /// At end of input: every byte, none changed.
    fn result(&self) -> io::Result<u64> {
        if let Some(at) = self.wrong {
            return Err(io::Error::new(
                ErrorKind::InvalidData,
                format!("bytes changed or out of order at {at}"),
            ));
        }
        Ok(self.got as u64)
    }
}

/// The client: sends BEFORE_EOF bytes, waits until it has read BYE and EOF, sends the rest,
/// half-closes. Returns once the server has read everything (its stream ends).
fn send_past_the_servers_eof(addr: SocketAddr, data: Arc<Vec<u8>>) {
    let client = std::net::TcpStream::connect(addr).unwrap();
    client.set_read_timeout(Some(LIMIT)).unwrap();
    client.set_write_timeout(Some(LIMIT)).unwrap();
    let (eof_tx, eof_rx) = channel();
    let reading = {
        let client = client.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut got = Vec::new();
            let read = (&client).read_to_end(&mut got);
            let _ = eof_tx.send(());
            (read.map_err(|e| e.kind()), got)
        })
    };
    (&client).write_all(&data[..BEFORE_EOF]).unwrap();
    eof_rx
        .recv_timeout(LIMIT)
        .expect("no EOF after the server shut down its write side");
    let (read, got) = reading.join().unwrap();
    assert_eq!(read, Ok(BYE.len()), "the read side did not end with EOF");
    assert_eq!(got, BYE);
    // The server's write side is shut, its read side is not: the rest still goes in.
    (&client)
        .write_all(&data[BEFORE_EOF..])
        .expect("the server stopped reading when it shut down its write side");
    client.shutdown(Shutdown::Write).unwrap();
    // The server closes once it has read our FIN; until then reads see EOF again.
    let mut rest = [0u8; 1];
    assert_eq!((&client).read(&mut rest).unwrap(), 0);
}

#[test]
fn reactor_reads_everything_after_shutting_down_its_write_side() {
    let _serial = faults::serial();
    let data = Arc::new(pattern(5, SENT));
    for handlers in HANDLERS {
        let baseline = faults::baseline();
        let (done_tx, done_rx) = channel::<io::Result<u64>>();
        let done_tx = Arc::new(Mutex::new(done_tx));
        let ends = Ends::default();
        let server = TestServer::start(
            handlers
                .builder()
                .on_prepare({
                    let (data, ends) = (data.clone(), ends.clone());
                    move |conn| {
                        ends.watch(conn);
                        let sink = Arc::new(Mutex::new(Sink::new(data.clone())));
                        let (s, done) = (sink.clone(), done_tx.clone());
                        conn.add_close_callback(move |_| {
                            let result = s.lock().unwrap().result();
                            let _ = done.lock().unwrap().send(result);
                        });
                        sink
                    }
                })
                .on_request(|sink, conn| {
                    let mut reader = conn.reader();
                    let data = reader.next(reader.len())?;
                    drop(reader);
                    if sink.lock().unwrap().take(&data) {
                        let mut writer = conn.writer();
                        writer.write_binary(BYE)?;
                        writer.flush()?;
                        drop(writer);
                        conn.socket().shutdown(Shutdown::Write)?;
                    }
                    Ok(())
                })
                .on_disconnect(ends.on_disconnect())
                .build()
                .unwrap(),
        );
        send_past_the_servers_eof(server.addr, data.clone());
        let read = done_rx
            .recv_timeout(LIMIT)
            .expect("the connection did not close");
        assert_eq!(read.unwrap(), SENT as u64, "{handlers:?}");
        ends.finish(server, 1, 1, baseline, &format!("{handlers:?}"));
    }
}

/// The Go-net server of the second case: reads and checks everything, says BYE and shuts
/// down its write side once SHUT_AFTER bytes arrived.
fn shut_write_sync(data: Arc<Vec<u8>>) -> SyncHandler {
    Arc::new(move |conn: TcpConn| {
        conn.set_deadline(Some(Instant::now() + LIMIT))?;
        let mut sink = Sink::new(data.clone());
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = (&conn).read(&mut buf)?;
            if n == 0 {
                return sink.result();
            }
            if sink.take(&buf[..n]) {
                (&conn).write_all(BYE)?;
                conn.close_write()?;
            }
        }
    })
}

fn shut_write_async(data: Arc<Vec<u8>>) -> AsyncHandler {
    Arc::new(move |mut conn: TcpConn| {
        let data = data.clone();
        Box::pin(async move {
            use futures::io::{AsyncReadExt, AsyncWriteExt};
            conn.set_deadline(Some(Instant::now() + LIMIT))?;
            let mut sink = Sink::new(data);
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = AsyncReadExt::read(&mut conn, &mut buf).await?;
                if n == 0 {
                    return sink.result();
                }
                if sink.take(&buf[..n]) {
                    AsyncWriteExt::write_all(&mut conn, BYE).await?;
                    AsyncWriteExt::close(&mut conn).await?; // the write side only
                }
            }
        })
    })
}

#[test]
fn net_reads_everything_after_shutting_down_its_write_side() {
    let _serial = faults::serial();
    let data = Arc::new(pattern(6, SENT));
    for driver in DRIVERS {
        let baseline = faults::baseline();
        let server = NetServer::start(
            driver,
            shut_write_sync(data.clone()),
            shut_write_async(data.clone()),
        );
        send_past_the_servers_eof(server.addr, data.clone());
        server.stop();
        let results = server.all_results();
        assert_eq!(results.len(), 1, "{driver:?}");
        match &results[0] {
            Ok(n) => assert_eq!(*n, SENT as u64, "{driver:?}"),
            Err(e) => panic!("{driver:?}: {e}"),
        }
        drop(server);
        wait_fds(baseline, &format!("{driver:?}"));
    }
}
