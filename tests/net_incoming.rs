//! `TcpListener::incoming()` rides out `EMFILE`: it backs off without spinning, serves again
//! once descriptors free up, and a close from another thread ends it at once, back-off or not.
//!
//! The server runs in a child process (this test binary, re-run with an environment variable)
//! so its lowered fd limit and its CPU use are its own. The child reads commands on stdin and
//! reports on stdout. The waits that let time pass are the measuring windows, not hand-offs.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::{Duration, Instant};

use common::faults::{assert_idle, exhaust, round_trip};
use common::LIMIT;

const CHILD_ENV: &str = "NETPOLL_INCOMING_CHILD";
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
    let listener = Arc::new(netpoll::net::listen_tcp("tcp", "127.0.0.1:0").unwrap());
    println!("listening on {}", listener.local_addr());
    static CLOSED_AT: OnceLock<Instant> = OnceLock::new();
    {
        let listener = listener.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            // "close" on stdin closes the listener from this thread.
            if std::io::stdin().read_line(&mut line).is_ok() && line.trim() == "close" {
                CLOSED_AT.get_or_init(Instant::now);
                listener.close().unwrap();
            }
        });
    }
    // The obvious accept loop: any error it sees ends it.
    for conn in listener.incoming() {
        match conn {
            Ok(conn) => {
                std::thread::spawn(move || {
                    let _ = conn.set_deadline(Some(Instant::now() + LIMIT * 3));
                    let _ = std::io::copy(&mut &conn, &mut &conn);
                });
            }
            Err(e) => {
                let took = CLOSED_AT.get().map(|at| at.elapsed());
                println!(
                    "incoming ended: closed={} took_ms={} error={e}",
                    netpoll::net::is_closed(&e),
                    took.map_or(u128::MAX, |t| t.as_millis())
                );
                std::process::exit(0);
            }
        }
    }
    println!("incoming ended without an error");
    std::process::exit(1);
}

#[test]
fn incoming_backs_off_on_emfile_recovers_and_ends_at_close() {
    // Regression (issue 5): accept returns EMFILE (as Go's does) and the obvious accept loop
    // exited on it; incoming() backs off as Go's http.Server does.
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["child_server", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let (lines_tx, lines) = mpsc::channel();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in stdout.lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let next_line = |what: &str| -> String {
        loop {
            let line = lines
                .recv_timeout(LIMIT)
                .unwrap_or_else(|_| panic!("the child never said {what:?}"));
            // The harness prints "test child_server ... " on the same line.
            if let Some((_, rest)) = line.split_once(what) {
                return rest.trim().to_string();
            }
        }
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let addr = next_line("listening on ");
        let mut first = TcpStream::connect(&addr).unwrap();
        round_trip(&mut first, b"ok");

        // Out of descriptors: idle, no error out of incoming().
        let mut conns = exhaust(&addr, pid, FD_LIMIT);
        assert_idle(pid, Duration::from_millis(1500), "incoming");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the accept loop exited"
        );

        // Free them: the queued connections are accepted and served, and new ones too.
        let mut last = conns.pop().unwrap();
        drop(conns);
        drop(first);
        let mut buf = [0u8; 1];
        last.set_read_timeout(Some(LIMIT)).unwrap();
        last.read_exact(&mut buf).unwrap(); // the "?" sent while it was queued
        assert_eq!(&buf, b"?");
        round_trip(&mut last, b"hi");
        drop(last);
        let mut fresh = TcpStream::connect(&addr).unwrap();
        round_trip(&mut fresh, b"again");
        drop(fresh);

        // Out of descriptors again, long enough for the back-off to reach most of a second;
        // a close from another thread ends incoming() at once all the same.
        let conns = exhaust(&addr, pid, FD_LIMIT);
        assert_idle(pid, Duration::from_millis(1500), "incoming");
        writeln!(stdin, "close").unwrap();
        let report = next_line("incoming ended: ");
        assert!(report.contains("closed=true"), "{report}");
        let took: u128 = report
            .split_once("took_ms=")
            .and_then(|(_, r)| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(u128::MAX);
        assert!(took < 300, "incoming ended {took} ms after close: {report}");
        // The child exits right after its report: its stdout closes.
        loop {
            match lines.recv_timeout(LIMIT) {
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("the child did not exit"),
            }
        }
        let status = child.wait().unwrap();
        assert!(status.success(), "{status}");
        drop(conns);
    }));
    let _ = child.kill();
    let _ = child.wait();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
