//! The examples as a user runs them: `echo` prints its address, echoes, stops on SIGTERM/SIGINT;
//! `goroutines` (the scheduler tour) runs its checks and exits 0.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc::channel;
use std::sync::OnceLock;

use common::{build_example, LIMIT};

/// The echo example, built fresh (once per test run).
fn example() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| build_example("echo")).clone()
}

/// Runs the example with `args` to completion (bounded by LIMIT): (exit code, stdout, stderr).
fn run_to_end(args: &[&str]) -> (Option<i32>, String, String) {
    let child = Command::new(example())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()).unwrap());
    let Ok(output) = rx.recv_timeout(LIMIT) else {
        // SAFETY: killing the child we started, which did not exit in time.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        panic!("echo {args:?} did not exit");
    };
    let output = output.unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn echo_example_help_prints_usage() {
    let (code, stdout, _) = run_to_end(&["--help"]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("Usage: echo"), "{stdout}");
    assert!(stdout.contains("--addr <HOST:PORT>"), "{stdout}");
    assert!(stdout.contains("--loops <N>"), "{stdout}");
}

#[test]
fn echo_example_bad_flag_gets_a_usage_error() {
    let (code, stdout, stderr) = run_to_end(&["--no-such-flag"]);
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains("unexpected argument '--no-such-flag'"),
        "{stderr}"
    );
    assert!(stderr.contains("Usage: echo"), "{stderr}");
    // clap's message, not `main` returning an io::Error printed as `Error: Custom { .. }`.
    assert!(!stderr.contains("Custom"), "{stderr}");

    let (code, _, stderr) = run_to_end(&["--loops", "zero"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("invalid value 'zero' for '--loops <N>'"),
        "{stderr}"
    );
}

fn run_and_signal(signal: libc::c_int) {
    let mut child = Command::new(example())
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

/// The scheduler tour (`examples/goroutines.rs`) runs to the end and its checks pass.
#[test]
fn the_goroutines_example_passes_its_checks() {
    let child = Command::new(build_example("goroutines"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()).unwrap());
    let Ok(output) = rx.recv_timeout(LIMIT) else {
        // SAFETY: killing the child we started, which did not exit in time.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        panic!("the goroutines example did not exit");
    };
    let output = output.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("all checks passed"),
        "{}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}
