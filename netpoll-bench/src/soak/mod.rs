//! `netpoll-bench soak`: mixed, verified load with faults against servers in child processes.
//!
//! Echo servers on both faces (the reactor with inline, pool and coroutine handlers; the Go-net
//! face on threads, coroutines and tasks), examples/resp.rs and examples/http.rs each get a few
//! client threads. Every session picks a fault at random — none, a reset in the middle, a
//! half-close, a slow reader, a slow writer, connection churn, malformed input — and checks
//! every byte that must come back. A sampler reads each server's RSS and fd count twice a
//! second. The run fails on any lost or corrupted byte (or unexpected error), a server that
//! exits, an fd count that does not return to its baseline once the load stops, an RSS that
//! keeps growing after the warm-up, or a server that does not exit cleanly on SIGTERM.

mod echo;
mod http;
mod resp;
mod wire;

use std::fs;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use signal_hook::consts::{SIGINT, SIGTERM};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::procs::{self, ServerProcess};
use crate::{parse, report, sys};
use wire::Rng;

#[derive(clap::Args)]
pub struct SoakArgs {
    /// How long the load runs, in minutes (fractions allowed: 0.5 = 30 s).
    #[arg(long, default_value = "1")]
    minutes: f64,
    /// Client threads per server.
    #[arg(long, default_value = "3", value_parser = parse::positive)]
    clients: usize,
    /// Seed of every random choice (default: from the clock); printed, to repeat a run.
    #[arg(long)]
    seed: Option<u64>,
    /// Servers, comma-separated (default: all): echo-inline, echo-pool, echo-coroutine,
    /// go-net-thread, go-net-coroutine, go-net-task, resp, http.
    #[arg(long, value_delimiter = ',')]
    servers: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Proto {
    Echo,
    Resp,
    Http,
}

struct Spec {
    name: &'static str,
    proto: Proto,
    /// `serve --server KIND` for the echo servers; the example's name otherwise.
    kind: &'static str,
}

const SPECS: &[Spec] = &[
    Spec {
        name: "echo-inline",
        proto: Proto::Echo,
        kind: "netpoll",
    },
    Spec {
        name: "echo-pool",
        proto: Proto::Echo,
        kind: "netpoll-pool",
    },
    Spec {
        name: "echo-coroutine",
        proto: Proto::Echo,
        kind: "netpoll-co",
    },
    Spec {
        name: "go-net-thread",
        proto: Proto::Echo,
        kind: "netpoll-net",
    },
    Spec {
        name: "go-net-coroutine",
        proto: Proto::Echo,
        kind: "netpoll-go",
    },
    Spec {
        name: "go-net-task",
        proto: Proto::Echo,
        kind: "netpoll-async",
    },
    Spec {
        name: "resp",
        proto: Proto::Resp,
        kind: "resp",
    },
    Spec {
        name: "http",
        proto: Proto::Http,
        kind: "http",
    },
];

/// What a session does to its connection besides the exchange itself.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Fault {
    None,
    Reset,
    HalfClose,
    SlowReader,
    SlowWriter,
    Churn,
    /// Bad protocol input (RESP and HTTP; an echo has none).
    Malformed,
}

const FAULTS: [Fault; 7] = [
    Fault::None,
    Fault::Reset,
    Fault::HalfClose,
    Fault::SlowReader,
    Fault::SlowWriter,
    Fault::Churn,
    Fault::Malformed,
];

impl Fault {
    fn short(self) -> &'static str {
        match self {
            Fault::None => "ok",
            Fault::Reset => "rst",
            Fault::HalfClose => "half",
            Fault::SlowReader => "slowr",
            Fault::SlowWriter => "sloww",
            Fault::Churn => "churn",
            Fault::Malformed => "bad",
        }
    }

    /// Half the sessions are plain; the rest spread over the faults.
    fn pick(rng: &mut Rng, proto: Proto) -> Fault {
        let fault = match rng.range(0, 99) {
            0..=49 => Fault::None,
            50..=59 => Fault::Reset,
            60..=69 => Fault::HalfClose,
            70..=77 => Fault::SlowReader,
            78..=84 => Fault::SlowWriter,
            85..=94 => Fault::Churn,
            _ => Fault::Malformed,
        };
        match (fault, proto) {
            (Fault::Malformed, Proto::Echo) => Fault::None,
            _ => fault,
        }
    }
}

/// One server's counts, shared by its clients.
#[derive(Default)]
pub struct Stats {
    sessions: AtomicU64,
    ops: AtomicU64,
    bytes: AtomicU64,
    faults: [AtomicU64; FAULTS.len()],
    failures: AtomicU64,
    first_failures: Mutex<Vec<String>>,
}

impl Stats {
    /// One exchange whose `bytes` were all checked.
    pub fn verified(&self, bytes: usize) {
        self.verified_ops(1, bytes);
    }

    pub fn verified_ops(&self, ops: u64, bytes: usize) {
        self.ops.fetch_add(ops, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    fn fail(&self, what: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut first = self
            .first_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if first.len() < 5 {
            first.push(what);
        }
    }
}

/// One sample of a server's footprint.
#[derive(Clone, Copy)]
struct Sample {
    at: Duration,
    rss_kib: u64,
    fds: usize,
}

/// A server under soak.
struct Running {
    spec: &'static Spec,
    addr: SocketAddr,
    pid: u32,
    process: Mutex<ServerProcess>,
    stats: Stats,
    samples: Mutex<Vec<Sample>>,
    /// Open fds once warmed up, with no client connected.
    baseline_fds: usize,
    /// Open fds once the load stopped and the server had time to close.
    fds_after: AtomicUsize,
    /// It exited during the load.
    crashed: AtomicBool,
    /// Why it failed, beyond the clients' failures.
    problems: Mutex<Vec<String>>,
}

impl Running {
    fn problem(&self, what: String) {
        self.problems
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(what);
    }

    fn session(&self, rng: &mut Rng, model: &mut resp::Model, fault: Fault) -> Result<(), String> {
        match self.spec.proto {
            Proto::Echo => echo::session(self.addr, rng, fault, &self.stats),
            Proto::Resp => resp::session(self.addr, rng, model, fault, &self.stats),
            Proto::Http => http::session(self.addr, rng, fault, &self.stats),
        }
    }
}

fn start(spec: &Spec, logs: &std::path::Path) -> Result<ServerProcess, String> {
    let log = logs.join(format!("{}.log", spec.name));
    match spec.proto {
        Proto::Echo => ServerProcess::start(spec.kind, None),
        Proto::Resp => {
            let mut command = Command::new(procs::example(spec.kind, &[])?);
            command.args(["--addr", "127.0.0.1:0", "--read-timeout-ms", "5000"]);
            ServerProcess::announced(command, spec.name, None, Some(&log))
        }
        Proto::Http => {
            let mut command = Command::new(procs::example(spec.kind, &[])?);
            command.args(["--addr", "127.0.0.1:0", "--read-timeout", "5"]);
            ServerProcess::announced(command, spec.name, None, Some(&log))
        }
    }
}

/// The fd count once it holds still for 200 ms (closes finish on the server's pollers).
fn settled_fds(pid: u32) -> usize {
    let mut last = sys::fd_count(pid);
    let give_up = Instant::now() + Duration::from_secs(5);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = sys::fd_count(pid);
        if now == last || Instant::now() > give_up {
            return now;
        }
        last = now;
    }
}

/// A client thread: sessions with random faults until the deadline (or an interrupt).
fn client(server: &Running, seed: u64, id: usize, deadline: Instant, interrupted: &AtomicBool) {
    let mut rng = Rng::new(seed);
    let mut model = resp::Model::new(format!("soak:{id}"));
    let mut generation = 0;
    while Instant::now() < deadline && !interrupted.load(Ordering::Relaxed) {
        let fault = Fault::pick(&mut rng, server.spec.proto);
        server.stats.sessions.fetch_add(1, Ordering::Relaxed);
        server.stats.faults[fault as usize].fetch_add(1, Ordering::Relaxed);
        if let Err(e) = server.session(&mut rng, &mut model, fault) {
            server.stats.fail(format!("{} session: {e}", fault.short()));
            // The model no longer knows what the server holds: go on with fresh keys.
            generation += 1;
            model = resp::Model::new(format!("soak:{id}:{generation}"));
            // Not a synchronisation: a dead server must not turn the clients into a spin.
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Median of the samples' RSS.
fn median_rss(samples: &[Sample]) -> u64 {
    let mut v: Vec<u64> = samples.iter().map(|s| s.rss_kib).collect();
    v.sort_unstable();
    v[v.len() / 2]
}

/// RSS growth after the warm-up: the median of the last third against the first third's.
/// Allowed: 20% or 8 MiB, whichever is more (allocators keep what a burst took).
fn rss_verdict(samples: &[Sample], warmup: Duration) -> Result<String, String> {
    let after: Vec<Sample> = samples.iter().copied().filter(|s| s.at >= warmup).collect();
    if after.len() < 6 {
        return Ok("too short to judge".into());
    }
    let third = after.len() / 3;
    let first = median_rss(&after[..third]);
    let last = median_rss(&after[after.len() - third..]);
    let growth = last.saturating_sub(first);
    let text = format!(
        "{:.1} → {:.1} MiB",
        first as f64 / 1024.0,
        last as f64 / 1024.0
    );
    if growth > (first / 5).max(8 * 1024) {
        Err(format!("RSS grew after the warm-up: {text}"))
    } else {
        Ok(text)
    }
}

pub fn run(args: &SoakArgs) -> Result<(), String> {
    if !args.minutes.is_finite() || args.minutes <= 0.0 {
        return Err("--minutes must be more than 0".into());
    }
    let duration = Duration::from_secs_f64(args.minutes * 60.0);
    let warmup = (duration / 5).clamp(Duration::from_secs(5), Duration::from_secs(60));
    let warmup = warmup.min(duration / 2);
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let specs: Vec<&'static Spec> = if args.servers.is_empty() {
        SPECS.iter().collect()
    } else {
        args.servers
            .iter()
            .map(|name| {
                SPECS
                    .iter()
                    .find(|s| s.name == name.as_str())
                    .ok_or_else(|| {
                        let names: Vec<&str> = SPECS.iter().map(|s| s.name).collect();
                        format!("unknown server {name:?}; one of {}", names.join(", "))
                    })
            })
            .collect::<Result<_, _>>()?
    };
    let _ = sys::raise_fd_limit();
    let logs = std::env::temp_dir().join(format!("netpoll-soak-{}", std::process::id()));
    fs::create_dir_all(&logs).map_err(|e| format!("creating {}: {e}", logs.display()))?;
    println!(
        "soak: {} servers × {} clients for {}, warm-up {}, seed {seed} (repeat with --seed {seed})",
        specs.len(),
        args.clients,
        report::show_duration(duration),
        report::show_duration(warmup),
    );

    // Start every server, warm it with one plain session, then take its fd baseline.
    let mut running = Vec::new();
    for spec in specs {
        let process = start(spec, &logs)?;
        let (addr, pid) = (process.addr, process.pid());
        let mut server = Running {
            spec,
            addr,
            pid,
            process: Mutex::new(process),
            stats: Stats::default(),
            samples: Mutex::new(Vec::new()),
            baseline_fds: 0,
            fds_after: AtomicUsize::new(0),
            crashed: AtomicBool::new(false),
            problems: Mutex::new(Vec::new()),
        };
        let mut rng = Rng::new(seed);
        let mut model = resp::Model::new("soak:warm".into());
        server
            .session(&mut rng, &mut model, Fault::None)
            .map_err(|e| format!("{}: the first session failed: {e}", spec.name))?;
        server.baseline_fds = settled_fds(pid);
        running.push(server);
    }

    // SIGINT/SIGTERM end the load early; the checks, the report and the servers' stop still
    // happen (a killed soak would leave its servers running).
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        signal_hook::flag::register(signal, interrupted.clone())
            .map_err(|e| format!("handling signal {signal}: {e}"))?;
    }
    let started = Instant::now();
    let deadline = started + duration;
    let bar = ProgressBar::new(duration.as_secs().max(1)).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} s {msg}").expect("a valid template"),
    );
    std::thread::scope(|scope| {
        for (i, server) in running.iter().enumerate() {
            for c in 0..args.clients {
                let seed = seed ^ ((i as u64 + 1) << 32) ^ (c as u64 + 1);
                let interrupted = &interrupted;
                scope.spawn(move || client(server, seed, c, deadline, interrupted));
            }
        }
        // The sampler: footprints, and whether each server still runs.
        while Instant::now() < deadline && !interrupted.load(Ordering::Relaxed) {
            for server in &running {
                if server.crashed.load(Ordering::Relaxed) {
                    continue;
                }
                let alive = server
                    .process
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .check_alive();
                match alive {
                    Err(e) => {
                        server.crashed.store(true, Ordering::Relaxed);
                        server.problem(format!("crashed: {e}"));
                    }
                    Ok(()) => {
                        if let Ok(rss_kib) = sys::status_kib(server.pid, "VmRSS") {
                            let sample = Sample {
                                at: started.elapsed(),
                                rss_kib,
                                fds: sys::fd_count(server.pid),
                            };
                            server
                                .samples
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push(sample);
                        }
                    }
                }
            }
            let failures: u64 = running
                .iter()
                .map(|s| s.stats.failures.load(Ordering::Relaxed))
                .sum();
            bar.set_position(started.elapsed().as_secs());
            bar.set_message(format!("{failures} failures"));
            std::thread::sleep(Duration::from_millis(500)); // the sampling period
        }
        bar.set_message("stopping the clients");
    });
    bar.finish_and_clear();

    // After the load: fds back to the baseline, a clean exit on SIGTERM.
    for server in &running {
        let give_up = Instant::now() + Duration::from_secs(10);
        let mut fds = sys::fd_count(server.pid);
        while fds > server.baseline_fds && Instant::now() < give_up {
            std::thread::sleep(Duration::from_millis(50));
            fds = sys::fd_count(server.pid);
        }
        server.fds_after.store(fds, Ordering::Relaxed);
        if fds > server.baseline_fds {
            server.problem(format!(
                "fds leaked: {fds} open 10 s after the load, {} before it",
                server.baseline_fds
            ));
        }
        let samples = server
            .samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Err(e) = rss_verdict(&samples, warmup) {
            server.problem(e);
        }
        let mut process = server.process.lock().unwrap_or_else(|e| e.into_inner());
        match stop(&mut process) {
            Err(e) if !server.crashed.load(Ordering::Relaxed) => server.problem(e),
            _ => {}
        }
    }
    let cut_short = interrupted.load(Ordering::Relaxed);
    if cut_short {
        println!(
            "interrupted after {:.1} s: the report covers that much",
            started.elapsed().as_secs_f64()
        );
    }
    let failed = print_report(&running, warmup) || cut_short;
    if failed {
        Err(format!(
            "the soak failed (seed {seed}; server logs in {})",
            logs.display()
        ))
    } else {
        let _ = fs::remove_dir_all(&logs);
        println!("soak passed");
        Ok(())
    }
}

/// SIGTERM, then a clean exit within 10 s (the servers drain and leave with status 0).
fn stop(process: &mut ServerProcess) -> Result<(), String> {
    if let Ok(Some(status)) = process.child.try_wait() {
        return Err(format!("exited on its own ({status})"));
    }
    sys::kill(process.pid(), libc::SIGTERM).map_err(|e| format!("SIGTERM: {e}"))?;
    let give_up = Instant::now() + Duration::from_secs(10);
    loop {
        match process.child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("exit on SIGTERM: {status}")),
            Ok(None) if Instant::now() > give_up => {
                return Err("still running 10 s after SIGTERM".into())
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("waiting for the exit: {e}")),
        }
    }
}

/// Prints the table and every failure; true if anything failed.
fn print_report(running: &[Running], warmup: Duration) -> bool {
    let header = [
        "server",
        "sessions",
        "ops",
        "MiB checked",
        "faults ok/rst/half/slowr/sloww/churn/bad",
        "failures",
        "RSS after warm-up",
        "peak fds",
        "fds before/after",
        "verdict",
    ];
    let mut rows = Vec::new();
    let mut failed = false;
    let mut details = String::new();
    for server in running {
        let stats = &server.stats;
        let samples = server.samples.lock().unwrap_or_else(|e| e.into_inner());
        let failures = stats.failures.load(Ordering::Relaxed);
        let problems = server.problems.lock().unwrap_or_else(|e| e.into_inner());
        let ok = failures == 0 && problems.is_empty();
        failed |= !ok;
        let faults: Vec<String> = stats
            .faults
            .iter()
            .map(|f| f.load(Ordering::Relaxed).to_string())
            .collect();
        let rss = rss_verdict(&samples, warmup).unwrap_or_else(|e| e);
        let peak_fds = samples.iter().map(|s| s.fds).max().unwrap_or(0);
        let after = server.fds_after.load(Ordering::Relaxed);
        let cell = |s: String| (s, String::new());
        rows.push(vec![
            cell(server.spec.name.to_string()),
            cell(stats.sessions.load(Ordering::Relaxed).to_string()),
            cell(stats.ops.load(Ordering::Relaxed).to_string()),
            cell(format!(
                "{:.1}",
                stats.bytes.load(Ordering::Relaxed) as f64 / (1 << 20) as f64
            )),
            cell(faults.join("/")),
            cell(failures.to_string()),
            cell(rss),
            cell(peak_fds.to_string()),
            cell(format!("{}/{after}", server.baseline_fds)),
            cell(if ok { "ok" } else { "FAILED" }.to_string()),
        ]);
        let first = stats
            .first_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for what in problems.iter().chain(first.iter()) {
            details += &format!("{}: {what}\n", server.spec.name);
        }
    }
    print!("{}", report::render(&header, 1, &rows));
    if !details.is_empty() {
        print!("\n{details}");
    }
    failed
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    use super::wire::{expect, FAST};
    use super::*;

    fn samples(rss: impl Fn(u64) -> u64) -> Vec<Sample> {
        (0..60)
            .map(|i| Sample {
                at: Duration::from_millis(500 * i),
                rss_kib: rss(i),
                fds: 10,
            })
            .collect()
    }

    #[test]
    fn rss_that_holds_still_or_wobbles_passes() {
        let warmup = Duration::from_secs(5);
        assert!(rss_verdict(&samples(|_| 50_000), warmup).is_ok());
        assert!(rss_verdict(&samples(|i| 50_000 + (i % 7) * 900), warmup).is_ok());
    }

    #[test]
    fn rss_that_keeps_growing_fails() {
        let warmup = Duration::from_secs(5);
        let verdict = rss_verdict(&samples(|i| 50_000 + i * 1024), warmup);
        assert!(verdict.unwrap_err().contains("RSS grew"));
    }

    /// A loopback pair: the server side writes `sent` (then closes), the client side checks it.
    fn check(sent: &'static [u8], want: &[u8]) -> Result<(), String> {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream.write_all(sent).unwrap();
        });
        let client = TcpStream::connect(addr).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let result = expect(&client, want, FAST, "test");
        peer.join().unwrap();
        result
    }

    #[test]
    fn a_changed_byte_is_found_and_placed() {
        assert!(check(b"abcdef", b"abcdef").is_ok());
        let e = check(b"abcXef", b"abcdef").unwrap_err();
        assert!(e.contains("byte 3 of 6 differs"), "{e}");
    }

    #[test]
    fn a_close_before_the_end_is_a_loss() {
        let e = check(b"abc", b"abcdef").unwrap_err();
        assert!(e.contains("closed after 3 of 6 bytes"), "{e}");
    }
}
