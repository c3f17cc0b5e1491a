//! The `echo` example as a user runs it: prints its address, echoes, stops on SIGTERM/SIGINT.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc::channel;

use common::LIMIT;

fn run_and_signal(signal: libc::c_int) {
    // cargo builds examples next to the test binaries: target/<profile>/examples/echo
    let exe = std::env::current_exe().unwrap();
    let example = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/echo");
    assert!(
        example.exists(),
        "build the example first: {}",
        example.display()
    );
    let mut child = Command::new(&example)
        .args(["--addr", "127.0.0.1:0", "--loops", "2"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr = first
        .strip_prefix("listening on ")
        .expect(&first)
        .to_string();

    let mut conn = TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(LIMIT)).unwrap();
    conn.write_all(b"hello, echo").unwrap();
    let mut got = [0u8; 11];
    conn.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello, echo");

    // SAFETY: sending a signal to the child we started.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
    let (tx, rx) = channel();
    std::thread::spawn(move || tx.send(child.wait()).unwrap());
    let status = rx
        .recv_timeout(LIMIT)
        .expect("the example did not stop after the signal")
        .unwrap();
    assert!(status.success(), "{status}");
    // The idle connection was closed by the graceful shutdown.
    assert_eq!(conn.read(&mut got).unwrap(), 0);
}

#[test]
fn echo_example_serves_and_stops_on_sigterm() {
    run_and_signal(libc::SIGTERM);
}

#[test]
fn echo_example_stops_on_sigint() {
    run_and_signal(libc::SIGINT);
}
