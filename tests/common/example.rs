//! The examples as a user runs them: built fresh, started as child processes, stopped by PID.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use super::LIMIT;

/// Example `name`, built fresh: `cargo test --test X` alone does not build examples (and one
/// left over from an earlier build may be stale), so this runs `cargo build --example NAME`
/// for this test's profile and features, a quick no-op when `cargo test` built it.
pub fn build_example(name: &str) -> PathBuf {
    // Test binaries live in target/<profile>/deps; examples in target/<profile>/examples.
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let mut build = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    build
        .args(["build", "--quiet", "--example", name, "--manifest-path"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .args(["--features", &features()])
        .env("CARGO_TARGET_DIR", profile_dir.parent().unwrap());
    if profile_dir.file_name() == Some("release".as_ref()) {
        build.arg("--release");
    }
    let mut child = build.spawn().unwrap();
    // Bounded, with room for a cold build on a loaded machine.
    let give_up = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > give_up {
            let _ = child.kill();
            panic!("building the {name} example took over 10 minutes");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "cargo build --example {name}: {status}");
    let example = profile_dir.join("examples").join(name);
    assert!(example.exists(), "no example at {}", example.display());
    example
}

/// The features this test was built with, so the example shares its build of the library.
fn features() -> String {
    let mut features = vec![];
    if cfg!(feature = "hyper") {
        features.push("hyper");
    }
    if cfg!(feature = "tokio") {
        features.push("tokio");
    }
    features.join(",")
}

/// A server example running as a child process; killed if the test ends without stopping it.
pub struct Running {
    child: Option<Child>,
    /// What it printed after `listening on `.
    pub addr: String,
}

impl Running {
    /// Starts `exe` with `args` and waits for its `listening on ADDR` line.
    pub fn start(exe: &PathBuf, args: &[&str]) -> Running {
        let mut child = Command::new(exe)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            for _ in lines {} // keep the pipe drained
        });
        let mut running = Running {
            child: Some(child),
            addr: String::new(),
        };
        let first = rx
            .recv_timeout(LIMIT)
            .expect("no `listening on` line in time");
        let first = first.expect("the example printed nothing").unwrap();
        running.addr = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {first}"))
            .to_string();
        running
    }

    pub fn pid(&self) -> libc::pid_t {
        self.child.as_ref().map_or(0, |c| c.id() as libc::pid_t)
    }

    /// Sends `signal` and waits (bounded) for the exit.
    pub fn stop(mut self, signal: libc::c_int) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        // SAFETY: signalling the child we started, which has not been reaped.
        assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let status = child.wait();
            let _ = tx.send(status);
        });
        rx.recv_timeout(LIMIT)
            .expect("the example did not stop after the signal")
            .unwrap()
    }

    /// The child's resident set size in KiB (from /proc).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
