//! Clients killed with SIGKILL while writing: child processes (this test binary re-run in a
//! client role) connect to an echo server and write large data without reading, so the
//! server's replies back up and the child ends up blocked in `write`; the parent kills them
//! there. The server survives, each connection ends exactly once (reactor: `on_disconnect`
//! and the close callbacks; Go-net: one handler result each, none a timeout), a normal client
//! is served afterwards with every byte back in order, and the fd count returns to its
//! baseline. Reactor face with coroutine, pool and inline handlers; Go-net face on threads,
//! coroutines and tasks.

mod common;

use std::io::{ErrorKind, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use common::faults::{
    self, checked_echo, counter, echo_async_counted, echo_sync_counted, wait_fds, wait_for,
    ChildProcess, Ends, NetServer, Received, DRIVERS, HANDLERS,
};
use common::{pattern, TestServer, LIMIT};

const CLIENT_ENV: &str = "NETPOLL_FAULTS_KILLED_CLIENT";
const KILLED: usize = 4;
/// Each child is killed once the server has read this much of it.
const READ_BEFORE_KILL: u64 = 256 * 1024;
const NORMAL: usize = 1 << 20;

/// Not a test of its own: the child's body, run only when the parent sets `CLIENT_ENV` (to
/// the server's address). Writes until killed, never reads.
#[test]
fn killed_client_role() {
    let Some(addr) = std::env::var_os(CLIENT_ENV) else {
        return;
    };
    let stream = std::net::TcpStream::connect(addr.to_str().unwrap()).unwrap();
    // Bounds the child's life if the parent never kills it.
    stream.set_write_timeout(Some(LIMIT)).unwrap();
    let chunk = pattern(1, 64 * 1024);
    let started = Instant::now();
    while started.elapsed() < 3 * LIMIT {
        if (&stream).write_all(&chunk).is_err() {
            break;
        }
    }
}

/// Starts KILLED children against `addr`, waits until the server has read READ_BEFORE_KILL
/// of each (`received` counts per connection), and kills them while they write.
fn kill_writing_clients(addr: SocketAddr, received: &Received) {
    let mut children: Vec<ChildProcess> = (0..KILLED)
        .map(|_| ChildProcess::spawn("killed_client_role", CLIENT_ENV, &addr.to_string()))
        .collect();
    wait_for("every child writing", || {
        let received = received.lock().unwrap();
        received.len() == KILLED
            && received
                .iter()
                .all(|c| c.load(Ordering::SeqCst) >= READ_BEFORE_KILL)
    });
    for child in &mut children {
        assert!(
            child.child.try_wait().unwrap().is_none(),
            "a child stopped writing before it was killed"
        );
        child.kill(); // SIGKILL
    }
}

#[test]
fn reactor_survives_clients_killed_while_writing() {
    let _serial = faults::serial();
    for handlers in HANDLERS {
        let baseline = faults::baseline();
        let received = Received::default();
        let ends = Ends::default();
        let server = TestServer::start(
            handlers
                .builder()
                .on_prepare({
                    let (ends, received) = (ends.clone(), received.clone());
                    move |conn| {
                        ends.watch(conn);
                        counter(&received)
                    }
                })
                .on_request(|count: &Arc<AtomicU64>, conn| {
                    let mut reader = conn.reader();
                    let data = reader.next(reader.len())?;
                    drop(reader);
                    count.fetch_add(data.len() as u64, Ordering::SeqCst);
                    let mut writer = conn.writer();
                    writer.write_direct(data)?;
                    writer.flush()
                })
                .on_disconnect(ends.on_disconnect())
                .build()
                .unwrap(),
        );
        kill_writing_clients(server.addr, &received);
        checked_echo(server.addr, Arc::new(pattern(2, NORMAL)));
        let n = KILLED + 1;
        ends.finish(server, n, n, baseline, &format!("{handlers:?}"));
    }
}

#[test]
fn net_survives_clients_killed_while_writing() {
    let _serial = faults::serial();
    for driver in DRIVERS {
        let baseline = faults::baseline();
        let received = Received::default();
        let server = NetServer::start(
            driver,
            echo_sync_counted(received.clone()),
            echo_async_counted(received.clone()),
        );
        kill_writing_clients(server.addr, &received);
        checked_echo(server.addr, Arc::new(pattern(2, NORMAL)));
        server.stop();
        let results = server.all_results();
        assert_eq!(results.len(), KILLED + 1, "{driver:?}");
        let normal = results
            .iter()
            .filter(|r| matches!(r, Ok(n) if *n == NORMAL as u64))
            .count();
        assert_eq!(normal, 1, "{driver:?}: the normal echo: {results:?}");
        for r in &results {
            // A killed child with replies unread resets; one that happened to have read
            // none would have sent a FIN (an Ok count). Never a hang until the deadline.
            if let Err(e) = r {
                assert!(
                    matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe),
                    "{driver:?}: {e}"
                );
            }
        }
        assert!(
            server.results.try_recv().is_err(),
            "{driver:?}: a connection ended twice"
        );
        drop(server);
        wait_fds(baseline, &format!("{driver:?}"));
    }
}
