//! `EMFILE`: an echo server in a child process (this test binary re-run in a server role)
//! whose fd limit is lowered (`setrlimit` before any netpoll use) gets twice as many
//! connections as it has descriptors. It keeps running, does not spin while it cannot accept
//! (its CPU time over a window stays under a quarter of a core), serves the connections that
//! waited in the backlog and new ones once descriptors free up, and its fd count returns to
//! what it was before the first connection (no leak). Reactor face with coroutine, pool and
//! inline handlers; Go-net face on threads and coroutines (accept loop `incoming()`) and
//! tasks (`accept_async` with the same back-off, as there is no async `incoming()`).
//!
//! `tests/accept_emfile.rs` covers the reactor's back-off and recovery with its default
//! (coroutine) handlers, and `tests/net_incoming.rs` those of `incoming()` on a thread and
//! its end at close; neither counts the fds afterwards. Here every executor and driver runs
//! the same case, with the fd count.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::faults::{
    self, assert_idle, echo_async, echo_sync, exhaust, open_fds, round_trip, ChildProcess, Driver,
    Handlers, NetServer,
};
use common::{echo, TestServer, LIMIT};

const ROLE_ENV: &str = "NETPOLL_FAULTS_EMFILE_ROLE";
const FD_LIMIT: u64 = 64;

/// Not a test of its own: the child's body, run only when the parent sets `ROLE_ENV` to
/// `reactor:HANDLERS` or `net:DRIVER`. Serves until killed (or 3 × LIMIT).
#[test]
fn emfile_server_role() {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        return;
    };
    let limit = libc::rlimit {
        rlim_cur: FD_LIMIT,
        rlim_max: FD_LIMIT,
    };
    // SAFETY: setrlimit reads a valid rlimit struct.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    // The global pollers exist before the parent takes the fd count.
    let _ = faults::baseline();
    let (face, name) = role.split_once(':').unwrap();
    let _server: Box<dyn std::any::Any> = match face {
        "reactor" => {
            let handlers = Handlers::parse(name).unwrap();
            let server = TestServer::start(handlers.builder().on_request(echo).build().unwrap());
            println!("listening on {}", server.addr);
            Box::new(server)
        }
        _ => {
            let driver = Driver::parse(name).unwrap();
            let server = NetServer::start(driver, echo_sync(), echo_async());
            println!("listening on {}", server.addr);
            Box::new(server)
        }
    };
    std::thread::sleep(3 * LIMIT); // the child's longest life; the parent kills it sooner
    std::process::exit(1);
}

fn survives_emfile(role: &str) {
    let mut child = ChildProcess::spawn("emfile_server_role", ROLE_ENV, role);
    let pid = child.pid();
    let addr = child.next_line("listening on ");
    let baseline = open_fds(pid);
    let mut first = TcpStream::connect(&addr).unwrap();
    round_trip(&mut first, b"ok");

    // Out of descriptors: alive, and idle rather than spinning on the listener.
    let mut conns = exhaust(&addr, pid, FD_LIMIT);
    assert_idle(pid, Duration::from_millis(500), role);
    assert!(
        child.child.try_wait().unwrap().is_none(),
        "{role}: the server exited"
    );

    // Descriptors free: the connection that waited in the backlog is served, new ones too.
    let mut last = conns.pop().unwrap();
    drop(conns);
    drop(first);
    last.set_read_timeout(Some(LIMIT)).unwrap();
    let mut buf = [0u8; 1];
    last.read_exact(&mut buf).unwrap(); // the "?" sent while it was queued
    assert_eq!(&buf, b"?");
    round_trip(&mut last, b"hi");
    let mut fresh = TcpStream::connect(&addr).unwrap();
    round_trip(&mut fresh, b"again");
    drop((last, fresh));

    // Every connection closed: the fd count is what it was before the first.
    let started = Instant::now();
    while open_fds(pid) > baseline {
        assert!(
            started.elapsed() < LIMIT,
            "{role}: {} fds open, {baseline} before: leaked",
            open_fds(pid)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill();
}

#[test]
fn reactor_coroutine_handlers_survive_emfile() {
    survives_emfile("reactor:Coroutine");
}

#[test]
fn reactor_pool_handlers_survive_emfile() {
    survives_emfile("reactor:Pool");
}

#[test]
fn reactor_inline_handlers_survive_emfile() {
    survives_emfile("reactor:Inline");
}

#[test]
fn net_on_threads_survives_emfile() {
    survives_emfile("net:Threads");
}

#[test]
fn net_on_coroutines_survives_emfile() {
    survives_emfile("net:Coroutines");
}

#[test]
fn net_on_tasks_survives_emfile() {
    survives_emfile("net:Tasks");
}
