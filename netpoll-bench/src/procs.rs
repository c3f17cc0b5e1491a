//! Child processes: the servers under test (this program's own `serve`, the workspace's
//! examples, `redis-server`), started pinned to a CPU and stopped by PID, and the external
//! clients (`redis-benchmark`, `wrk`), run with a deadline.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::sys;

/// A server child process, stopped with SIGTERM (then SIGKILL, if it lingers) when dropped.
pub struct ServerProcess {
    pub child: Child,
    pub addr: SocketAddr,
    /// What the messages call it.
    pub name: String,
    /// Where its output goes, if not to ours.
    pub log: Option<PathBuf>,
}

impl ServerProcess {
    /// This program's `serve --server KIND` (an echo server), pinned with its `--cpu`.
    pub fn start(kind: &str, cpu: Option<usize>) -> Result<ServerProcess, String> {
        let exe = std::env::current_exe().map_err(|e| format!("finding this program: {e}"))?;
        let mut command = Command::new(exe);
        command.args(["serve", "--server", kind, "--addr", "127.0.0.1:0"]);
        if let Some(cpu) = cpu {
            command.args(["--cpu", &cpu.to_string()]);
        }
        ServerProcess::announced(command, kind, None, None)
    }

    /// Starts `command` (on `cpu`, when given) and waits for its first line, `listening on
    /// ADDR`, as this program's servers and the workspace's examples print once ready. Its
    /// stderr goes to `log` when given (a closing peer makes some servers chatty).
    pub fn announced(
        mut command: Command,
        name: &str,
        cpu: Option<usize>,
        log: Option<&Path>,
    ) -> Result<ServerProcess, String> {
        command.stdout(Stdio::piped());
        if let Some(log) = log {
            command.stderr(log_file(log)?);
        }
        let mut child = spawn_on(&mut command, cpu).map_err(|e| {
            format!(
                "starting the {name} server ({}): {e}",
                command.get_program().to_string_lossy()
            )
        })?;
        let mut line = String::new();
        let read = BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut line);
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok());
        match (addr, read) {
            (Some(addr), _) => Ok(ServerProcess {
                child,
                addr,
                name: name.to_string(),
                log: log.map(Path::to_path_buf),
            }),
            (None, read) => {
                // Stop it if it still runs, then say how it ended.
                let _ = sys::kill(child.id(), libc::SIGTERM);
                let status = child.wait();
                Err(match (read, status) {
                    (Err(e), _) => format!("the {name} server: reading its address: {e}"),
                    (Ok(0), Ok(status)) => format!(
                        "the {name} server exited before listening ({status}){}",
                        log.map_or(String::new(), said)
                    ),
                    _ => format!("the {name} server: unexpected first line {line:?}"),
                })
            }
        }
    }

    /// Starts `command` (on `cpu`, when given), a RESP server told to listen on `addr`, and
    /// waits (up to 10 s) until it answers `PING` there. Its output goes to `log`.
    pub fn resp_at(
        mut command: Command,
        name: &str,
        cpu: Option<usize>,
        addr: SocketAddr,
        log: &Path,
    ) -> Result<ServerProcess, String> {
        command.stdout(log_file(log)?).stderr(log_file(log)?);
        let child = spawn_on(&mut command, cpu).map_err(|e| {
            format!(
                "starting the {name} server ({}): {e}",
                command.get_program().to_string_lossy()
            )
        })?;
        let mut server = ServerProcess {
            child,
            addr,
            name: name.to_string(),
            log: Some(log.to_path_buf()),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!(
                    "the {name} server exited before answering ({status}){}",
                    said(log)
                ));
            }
            if ping(addr).is_ok() {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the {name} server did not answer PING on {addr} in 10 s"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's CPU time so far (ns), or a message that says whose it is.
    pub fn cpu_nanos(&self) -> Result<u64, String> {
        sys::cpu_nanos(self.pid())
            .map_err(|e| format!("reading the {} server's CPU time: {e}", self.name))
    }

    /// An error if the server has exited.
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(format!(
                "the {} server exited during the run ({status}){}",
                self.name,
                self.log.as_deref().map_or(String::new(), said)
            )),
            _ => Ok(()),
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let pid = self.child.id();
        if !matches!(self.child.try_wait(), Ok(None)) {
            return; // reaped already: the pid may be another process's by now
        }
        let _ = sys::kill(pid, libc::SIGTERM);
        // A graceful shutdown may take a moment (hyper drains its connections); 5 s at most.
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Ok(None) = self.child.try_wait() {
            if Instant::now() > deadline {
                let _ = sys::kill(pid, libc::SIGKILL);
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.wait();
    }
}

/// A log file for a server's output (appended to: stdout and stderr may share it).
fn log_file(log: &Path) -> Result<std::fs::File, String> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("opening {}: {e}", log.display()))
}

/// "; it printed: ..." with the last lines of a server's log, or nothing if it is empty.
fn said(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    match lines.len() {
        0 => String::new(),
        n => format!(
            "; it printed:\n{}",
            lines[n.saturating_sub(10)..].join("\n")
        ),
    }
}

/// Spawns `command` pinned to `cpu`: from a thread pinned there, whose CPU mask the child
/// inherits (its own threads too, as they start); unpinned with `None`.
fn spawn_on(command: &mut Command, cpu: Option<usize>) -> io::Result<Child> {
    let Some(cpu) = cpu else {
        return command.spawn();
    };
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                sys::pin_to_cpu(cpu)?;
                command.spawn()
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the spawning thread panicked")))
    })
}

/// One RESP `PING` round trip on a fresh connection.
fn ping(addr: SocketAddr) -> io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
    stream.set_read_timeout(Some(Duration::from_millis(500)))?;
    stream.write_all(b"PING\r\n")?;
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply)?;
    if &reply == b"+PONG\r\n" {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "PING answered {:?}",
            String::from_utf8_lossy(&reply)
        )))
    }
}

/// A free loopback port, for a server (redis-server) that cannot pick one itself and say it.
pub fn free_port() -> Result<SocketAddr, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("finding a free port: {e}"))
}

/// What a client run printed.
pub struct ClientOutput {
    pub stdout: String,
    pub stderr: String,
}

/// Runs a client to its end. Fails, with what it printed, when it cannot start, exits
/// non-zero, outlives `timeout` (redis-benchmark retries a refused connect forever), or the
/// server exits under it; in the last two cases the client is killed by its PID.
pub fn run_client(
    mut command: Command,
    timeout: Duration,
    server: &mut ServerProcess,
) -> Result<ClientOutput, String> {
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {program}: {e}"))?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let mut stopped = None;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) => {}
            Err(e) => break Err(format!("waiting for {program}: {e}")),
        }
        let why = if let Err(e) = server.check_alive() {
            Some(e)
        } else if Instant::now() > deadline {
            Some(format!(
                "{program} did not finish in {}",
                crate::report::show_duration(timeout)
            ))
        } else {
            None
        };
        if let (Some(why), None) = (why, &stopped) {
            let _ = sys::kill(child.id(), libc::SIGKILL);
            stopped = Some(why);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let output = ClientOutput {
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    };
    // The last lines of its stderr (progress lines end in \r, keep only what was printed last).
    let said = || {
        let text = output.stderr.replace('\r', "\n");
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    };
    if let Some(why) = stopped {
        return Err(format!("{why}; {program} stopped; it printed: {}", said()));
    }
    let status = status?;
    if !status.success() {
        return Err(format!("{program} failed ({status}): {}", said()));
    }
    Ok(output)
}

/// An example binary of the workspace, `target/PROFILE/examples/NAME` (under
/// `CARGO_TARGET_DIR` when set), built first with `cargo build [--release] --example NAME`
/// (cargo rebuilds it only when stale). The profile is this program's own: a release build
/// for measurements, a debug one (with debug assertions) for CI's soak. `features` are
/// passed to cargo.
pub fn example(name: &str, features: &[&str]) -> Result<PathBuf, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("netpoll-bench is inside the workspace")
        .to_path_buf();
    // A one-file example or one with modules (examples/NAME/main.rs).
    let one_file = root.join("examples").join(format!("{name}.rs"));
    let source = if one_file.exists() {
        one_file
    } else {
        root.join("examples").join(name).join("main.rs")
    };
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let (profile, release) = if cfg!(debug_assertions) {
        ("debug", None)
    } else {
        ("release", Some("--release"))
    };
    let binary = target.join(profile).join("examples").join(name);
    if !source.exists() {
        return Err(format!(
            "{} does not exist (yet): no {name} example to build",
            source.display()
        ));
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&root)
        .arg("build")
        .args(release)
        .args(["--example", name]);
    if !features.is_empty() {
        command.args(["--features", &features.join(",")]);
    }
    eprintln!(
        "building the {name} example (cargo build {}--example {name})",
        release.map_or(String::new(), |r| format!("{r} "))
    );
    let status = command
        .status()
        .map_err(|e| format!("running cargo to build the {name} example: {e}"))?;
    if !status.success() {
        return Err(format!("building the {name} example failed ({status})"));
    }
    if !binary.exists() {
        return Err(format!(
            "cargo built {name} but {} is not there",
            binary.display()
        ));
    }
    Ok(binary)
}
