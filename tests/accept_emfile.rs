//! Out of file descriptors, the acceptor backs off instead of spinning on its level-triggered
//! listener, and serves again once descriptors free up.
//!
//! The server runs in a child process (this test binary, re-run with an environment variable)
//! so its lowered fd limit and its CPU use are its own.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::faults::cpu_ticks;
use common::{echo, LIMIT};

const CHILD_ENV: &str = "NETPOLL_EMFILE_CHILD";
const FD_LIMIT: u64 = 64;

/// Not a test of its own: the child's body, run only when the parent sets `CHILD_ENV`.
#[test]
fn child_server() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let limit = libc::rlimit {
        rlim_cur: FD_LIMIT,
        rlim_max: FD_LIMIT,
    };
    // SAFETY: setrlimit reads a valid rlimit struct.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    let listener = netpoll::Listener::bind_tcp("127.0.0.1:0").unwrap();
    println!("listening on {}", listener.local_addr());
    let server = netpoll::EventLoop::builder()
        .on_request(echo)
        .build()
        .unwrap();
    // Runs until the parent kills this process.
    server.serve(listener).unwrap();
}

#[test]
fn accept_backs_off_on_emfile_and_recovers() {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["child_server", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("child exited before listening")
            .unwrap();
        // The harness prints "test child_server ... " on the same line.
        if let Some((_, addr)) = line.split_once("listening on ") {
            break addr.trim().to_string();
        }
    };
    let result = std::panic::catch_unwind(|| {
        // Twice as many connections as the child has descriptors: the later ones wait in the
        // backlog while accept fails with EMFILE.
        let mut conns: Vec<TcpStream> = (0..2 * FD_LIMIT)
            .map(|_| {
                let c = TcpStream::connect(&addr).unwrap();
                c.set_read_timeout(Some(LIMIT)).unwrap();
                c
            })
            .collect();
        let mut buf = [0u8; 2];
        conns[0].write_all(b"ok").unwrap();
        conns[0].read_exact(&mut buf).unwrap();

        // Measure the child's CPU while it cannot accept: a spinning acceptor burns a whole core.
        let window = Duration::from_millis(600);
        let before = cpu_ticks(pid);
        std::thread::sleep(window);
        let used = cpu_ticks(pid) - before;
        let ticks_per_sec = 100; // USER_HZ on Linux
        let budget = window.as_millis() as u64 * ticks_per_sec / 1000 / 4;
        assert!(
            used <= budget,
            "server used {used} ticks of CPU in {window:?} while out of fds"
        );

        // Free descriptors: the waiting connections are accepted and served.
        let keep = conns.len() - 1;
        conns.drain(..keep);
        let last = conns.last_mut().unwrap();
        last.write_all(b"hi").unwrap();
        last.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hi");
    });
    let _ = child.kill();
    let _ = child.wait();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
