//! `serve` + `load` for every server kind: a few seconds of tiny load, every byte verified.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc::channel;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_netpoll-bench");
const LIMIT: Duration = Duration::from_secs(30);

fn smoke(server: &str) {
    let mut child = Command::new(BIN)
        .args(["serve", "--server", server, "--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .expect(&line)
        .to_string();

    let (tx, rx) = channel();
    let load_addr = addr.clone();
    std::thread::spawn(move || {
        let out = Command::new(BIN)
            .args([
                "load",
                "--addr",
                &load_addr,
                "--conns",
                "4",
                "--size",
                "100",
                "--pipeline",
                "2",
            ])
            .args(["--secs", "0.5", "--json"])
            .output();
        let _ = tx.send(out);
    });
    let out = rx
        .recv_timeout(LIMIT)
        .expect("load did not finish")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Stop the server we started, by PID.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let (wtx, wrx) = channel();
    std::thread::spawn(move || wtx.send(child.wait()).unwrap());
    let status = wrx
        .recv_timeout(LIMIT)
        .expect("server did not stop on SIGTERM")
        .unwrap();

    assert!(out.status.success(), "{server}: load failed: {stdout}");
    assert!(stdout.contains("\"errors\":0"), "{server}: {stdout}");
    assert!(
        !stdout.contains("\"requests\":0,"),
        "{server}: no request measured: {stdout}"
    );
    assert!(status.success(), "{server}: exit status {status}");
}

#[test]
fn netpoll() {
    smoke("netpoll");
}

#[test]
fn netpoll_pool() {
    smoke("netpoll-pool");
}

#[test]
fn tokio_current_thread() {
    smoke("tokio");
}

#[test]
fn tokio_multi_thread() {
    smoke("tokio-mt");
}

#[test]
fn std_threads() {
    smoke("std");
}

#[test]
fn netpoll_net_threads() {
    smoke("netpoll-net");
}

#[test]
fn epoll_floor() {
    smoke("epoll");
}

#[test]
fn unknown_server_is_a_clear_error() {
    let out = Command::new(BIN)
        .args(["serve", "--server", "nope", "--addr", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown server"));
}
