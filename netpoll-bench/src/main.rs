//! netpoll-bench: echo servers side by side on loopback, in one run.
//!
//! `cargo run --release -p netpoll-bench` runs every server (each in its own child process)
//! through every scenario, alternating servers over several rounds, and prints one table of
//! medians. `serve`, `load` and `idle` expose the parts. `resp` and `http` drive real
//! protocol servers with real clients (redis-benchmark, wrk) the same way.

mod compare;
mod http;
mod load;
mod parse;
mod plot;
mod procs;
mod report;
mod resp;
mod servers;
mod soak;
mod sys;

use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use load::{LoadResult, LoadSpec};
use parse::Target;
use procs::ServerProcess;
use report::{Failure, Meta, Report, Sample};

#[derive(Parser)]
#[command(
    about = "Echo benchmark of netpoll against tokio, std threads and raw epoll; `resp` and `http` drive real servers with redis-benchmark and wrk"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    /// Rounds; each round runs every server once per scenario, servers alternating.
    #[arg(long, default_value = "3", value_parser = parse::positive)]
    rounds: usize,
    /// Measured time per run, e.g. 1s, 500ms, 2m (a bare number is seconds).
    #[arg(long, alias = "secs", default_value = "1s", value_parser = parse::duration)]
    duration: Duration,
    /// Warm-up per run, under load but not measured, e.g. 500ms, 0s.
    #[arg(long, default_value = "500ms", value_parser = parse::duration)]
    warmup: Duration,
    /// Servers, comma-separated (default: all): netpoll, netpoll-pool, netpoll-co, netpoll-go,
    /// netpoll-async, tokio, tokio-mt, std, netpoll-net, go-net, epoll. Those this machine cannot run (go-net
    /// without `go` on PATH) are skipped with a note.
    #[arg(long, value_delimiter = ',', value_parser = parse::server)]
    servers: Vec<String>,
    /// Scenarios, comma-separated, by id (default: all): 64b-x100, 64b-x1000, 1kib-x100,
    /// 64b-x100-p16 (the table's names, like "64B x100", work too).
    #[arg(long, value_delimiter = ',', value_parser = parse::scenario)]
    scenarios: Vec<usize>,
    /// Also write the results (settings, medians, min/max, every sample, failed runs) as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Also write the table as CSV, one line per scenario and server.
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
    /// Also draw CPU us/request and p99 per server and scenario into an SVG file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    #[command(flatten)]
    pin: PinArgs,
}

/// Where the servers and the load (or the clients) run.
#[derive(clap::Args, Clone)]
pub struct PinArgs {
    /// CPU for the servers.
    #[arg(long, default_value_t = 0)]
    server_cpu: usize,
    /// CPU for the load generator (or the external clients).
    #[arg(long, default_value_t = 1)]
    load_cpu: usize,
    /// Do not pin servers and load to CPUs.
    #[arg(long)]
    no_pin: bool,
}

impl PinArgs {
    /// (server CPU, load CPU) to pin to, or `None`: `--no-pin`, or a single CPU. A CPU
    /// this machine does not have is an error.
    pub fn resolve(&self) -> Result<Option<(usize, usize)>, String> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if self.no_pin || cores < 2 {
            return Ok(None);
        }
        for (flag, cpu) in [
            ("--server-cpu", self.server_cpu),
            ("--load-cpu", self.load_cpu),
        ] {
            if cpu >= cores {
                return Err(format!(
                    "{flag} {cpu}: this machine has {cores} CPUs (0 to {}); or use --no-pin",
                    cores - 1
                ));
            }
        }
        Ok(Some((self.server_cpu, self.load_cpu)))
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs one echo server until SIGINT/SIGTERM; prints `listening on ADDR` once ready.
    Serve {
        /// netpoll, netpoll-pool, netpoll-co, netpoll-go, netpoll-async, tokio, tokio-mt, std,
        /// netpoll-net, go-net (needs `go` on PATH) or epoll.
        #[arg(long, value_parser = parse::server)]
        server: String,
        /// The protocol; only echo exists.
        #[arg(long, default_value = "echo")]
        proto: String,
        /// Address to listen on, HOST:PORT (a name such as localhost:8080 is resolved; port 0
        /// picks a free port).
        #[arg(long, default_value = "127.0.0.1:0", value_parser = parse::target)]
        addr: Target,
        /// Pollers (netpoll, netpoll-pool: default 1; netpoll-net, netpoll-go, netpoll-async:
        /// default the global pollers, one per 4 CPUs); go-net: GOMAXPROCS (default 1).
        #[arg(long)]
        loops: Option<usize>,
        /// Pin the server to this CPU.
        #[arg(long)]
        cpu: Option<usize>,
    },
    /// Drives an echo server and prints what it measured.
    Load {
        /// The server, HOST:PORT (e.g. 127.0.0.1:8080 or localhost:8080; a name's addresses
        /// are tried in order).
        #[arg(long, value_parser = parse::target)]
        addr: Target,
        /// Connections, each a closed loop: send, wait for the whole echo, check it, repeat.
        #[arg(long, default_value = "100", value_parser = parse::positive)]
        conns: usize,
        /// Bytes per request.
        #[arg(long, default_value = "64", value_parser = parse::positive)]
        size: usize,
        /// Requests written at once per connection before reading their echoes.
        #[arg(long, default_value = "1", value_parser = parse::positive)]
        pipeline: usize,
        /// Measured time, e.g. 2s, 500ms, 1m (a bare number is seconds).
        #[arg(long, alias = "secs", default_value = "2s", value_parser = parse::duration)]
        duration: Duration,
        /// Warm-up before measuring, under load but not counted.
        #[arg(long, default_value = "500ms", value_parser = parse::duration)]
        warmup: Duration,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// redis-benchmark against our RESP example and redis-server, side by side.
    Resp(resp::RespArgs),
    /// wrk against our HTTP example, hyper on netpoll tasks and hyper on tokio, side by side.
    Http(http::HttpArgs),
    /// Runs one of the HTTP peers until SIGINT/SIGTERM; prints `listening on ADDR` once ready.
    ServeHttp {
        /// hyper-tokio: hyper 1.x on tokio's current-thread runtime, "Hello, World!".
        #[arg(long, value_parser = ["hyper-tokio"])]
        server: String,
        /// Address to listen on, HOST:PORT (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:0", value_parser = parse::target)]
        addr: Target,
        /// Accepted for the examples' interface; the runtime is one thread.
        #[arg(long, value_parser = ["1"])]
        loops: Option<String>,
    },
    /// Mixed, verified load with random faults against servers in child processes; fails on a
    /// lost or corrupted byte, a crash, or fds or RSS that leak.
    Soak(soak::SoakArgs),
    /// Opens many idle connections to a server and reports its memory per connection.
    Idle {
        /// The server to measure: netpoll, netpoll-pool, netpoll-co, netpoll-go, netpoll-async,
        /// tokio, tokio-mt, std, netpoll-net, go-net or epoll.
        #[arg(long, value_parser = parse::server)]
        server: String,
        /// Idle connections to open (from 127.0.0.2, .3, ...: 20,000 per source address).
        #[arg(long, default_value = "10000", value_parser = parse::positive)]
        conns: usize,
        /// How long to wait for the server to accept them all, e.g. 30s.
        #[arg(long, default_value = "30s", value_parser = parse::duration)]
        timeout: Duration,
    },
}

/// The progress bar of a run of many runs.
pub const PROGRESS: &str = "{bar:40} {pos}/{len} {msg} [{elapsed_precise} / ~{duration_precise}]";

/// A scenario: connections × message size × pipeline depth.
pub struct Scenario {
    /// What `--scenarios` takes.
    pub id: &'static str,
    /// What the table shows.
    pub name: &'static str,
    conns: usize,
    size: usize,
    pipeline: usize,
}

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        id: "64b-x100",
        name: "64B x100",
        conns: 100,
        size: 64,
        pipeline: 1,
    },
    Scenario {
        id: "64b-x1000",
        name: "64B x1000",
        conns: 1000,
        size: 64,
        pipeline: 1,
    },
    Scenario {
        id: "1kib-x100",
        name: "1KiB x100",
        conns: 100,
        size: 1024,
        pipeline: 1,
    },
    Scenario {
        id: "64b-x100-p16",
        name: "64B x100 pipelined 16",
        conns: 100,
        size: 64,
        pipeline: 16,
    },
];

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        None => run_all(&cli.run),
        Some(Cmd::Serve {
            server,
            proto,
            addr,
            loops,
            cpu,
        }) => {
            if proto != "echo" {
                eprintln!("only --proto echo exists");
                std::process::exit(2);
            }
            if let Some(cpu) = cpu {
                let _ = sys::pin_to_cpu(cpu);
            }
            servers::serve(&server, addr.addrs[0], loops).map_err(|e| e.to_string())
        }
        Some(Cmd::Load {
            addr,
            conns,
            size,
            pipeline,
            duration,
            warmup,
            json,
        }) => {
            let spec = LoadSpec {
                conns,
                size,
                pipeline,
                warmup,
                secs: duration,
            };
            let r = load::run(&addr.addrs, &spec, |_| {});
            if r.requests == 0 && r.errors == 0 && r.connect_failures as usize == conns {
                // Nothing connected: say why, and nothing else.
                let why = r.first_error.as_deref().unwrap_or("connect failed");
                eprintln!("netpoll-bench: load {addr}: {why}");
                std::process::exit(1);
            }
            print_load(&r, json);
            if r.connect_failures > 0 || r.errors > 0 {
                if let Some(e) = &r.first_error {
                    eprintln!("netpoll-bench: first error: {e}");
                }
                std::process::exit(1);
            }
            Ok(())
        }
        Some(Cmd::Idle {
            server,
            conns,
            timeout,
        }) => idle(&server, conns, timeout),
        Some(Cmd::Resp(args)) => resp::run(&args),
        Some(Cmd::Soak(args)) => soak::run(&args),
        Some(Cmd::Http(args)) => http::run(&args),
        Some(Cmd::ServeHttp { server, addr, .. }) => {
            debug_assert_eq!(server, "hyper-tokio");
            http::serve_hyper_tokio(addr.addrs[0]).map_err(|e| e.to_string())
        }
    };
    if let Err(e) = result {
        eprintln!("netpoll-bench: {e}");
        std::process::exit(1);
    }
}

fn print_load(r: &LoadResult, json: bool) {
    if json {
        let error = match &r.first_error {
            Some(e) => format!("\"{}\"", e.replace('\\', "\\\\").replace('"', "\\\"")),
            None => "null".to_string(),
        };
        println!(
            "{{\"requests\":{},\"rps\":{:.0},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"errors\":{},\"connect_failures\":{},\"first_error\":{error}}}",
            r.requests, r.rps(), r.p50_us, r.p99_us, r.p999_us, r.errors, r.connect_failures
        );
    } else {
        println!(
            "requests {} req/s {:.0} p50 {}us p99 {}us p999 {}us errors {} connect_failures {}",
            r.requests,
            r.rps(),
            r.p50_us,
            r.p99_us,
            r.p999_us,
            r.errors,
            r.connect_failures
        );
    }
}

/// Runs `kind` through `scenario` once: a fresh server process, the load, its CPU time over
/// the measured window. A run that measured no request is an error.
fn run_once(
    kind: &str,
    scenario: &Scenario,
    args: &RunArgs,
    server_cpu: Option<usize>,
    round: usize,
) -> Result<Sample, String> {
    let mut server = ServerProcess::start(kind, server_cpu)?;
    let spec = LoadSpec {
        conns: scenario.conns,
        size: scenario.size,
        pipeline: scenario.pipeline,
        warmup: args.warmup,
        secs: args.duration,
    };
    let pid = server.pid();
    let (mut cpu_start, mut cpu_end) = (Ok(0), Ok(0));
    let load = load::run(&[server.addr], &spec, |start| {
        let now = sys::cpu_nanos(pid);
        if start {
            cpu_start = now;
        } else {
            cpu_end = now;
        }
    });
    let peak_rss_kib = sys::status_kib(pid, "VmHWM").unwrap_or(0);
    if let Ok(Some(status)) = server.child.try_wait() {
        return Err(format!("the server exited during the run ({status})"));
    }
    if load.requests == 0 {
        return Err(match &load.first_error {
            Some(e) => format!(
                "no request completed ({} errors, {} failed connects; first: {e})",
                load.errors, load.connect_failures
            ),
            None => "no request completed".to_string(),
        });
    }
    let cpu =
        |r: std::io::Result<u64>| r.map_err(|e| format!("reading the server's CPU time: {e}"));
    let cpu_ns = cpu(cpu_end)?.saturating_sub(cpu(cpu_start)?);
    Ok(Sample {
        round,
        load,
        cpu_ns,
        peak_rss_kib,
    })
}

/// Runs every server through every chosen scenario, `rounds` times, servers alternating
/// within a scenario. A run that fails is recorded (server, scenario, round, error), shown at
/// once, and the others go on. Returns `samples[scenario][server]` and the failures.
fn collect(
    rounds: usize,
    scenarios: &[&'static Scenario],
    kinds: &[String],
    bar: &ProgressBar,
    mut run: impl FnMut(&str, &Scenario, usize) -> Result<Sample, String>,
) -> (Vec<Vec<Vec<Sample>>>, Vec<Failure>) {
    let mut samples = vec![vec![Vec::<Sample>::new(); kinds.len()]; scenarios.len()];
    let mut failures = Vec::new();
    for round in 1..=rounds {
        for (s, scenario) in scenarios.iter().enumerate() {
            for (k, kind) in kinds.iter().enumerate() {
                bar.set_message(format!("round {round}: {kind} {}", scenario.name));
                match run(kind, scenario, round) {
                    Ok(sample) => {
                        if let (true, Some(e)) = (
                            sample.load.errors + sample.load.connect_failures > 0,
                            &sample.load.first_error,
                        ) {
                            bar.suspend(|| {
                                eprintln!(
                                    "warning: {kind} / {} / round {round}: {} errors, {} failed connects; first: {e}",
                                    scenario.name, sample.load.errors, sample.load.connect_failures
                                )
                            });
                        }
                        samples[s][k].push(sample);
                    }
                    Err(error) => {
                        bar.suspend(|| {
                            eprintln!(
                                "failed: {kind} / {} / round {round}: {error}",
                                scenario.name
                            )
                        });
                        failures.push(Failure {
                            server: kind.clone(),
                            scenario: scenario.name,
                            round,
                            error,
                        });
                    }
                }
                bar.inc(1);
            }
        }
    }
    (samples, failures)
}

/// Creates an output file now, so that a bad path fails before the run rather than after it.
pub fn create(path: &Option<PathBuf>, what: &str) -> Result<Option<File>, String> {
    path.as_ref()
        .map(|p| File::create(p).map_err(|e| format!("--{what} {}: {e}", p.display())))
        .transpose()
}

/// Writes `text` into the output file made by [`create`], if any.
fn write(file: Option<File>, path: &Option<PathBuf>, text: String) -> Result<(), String> {
    if let (Some(mut file), Some(path)) = (file, path) {
        file.write_all(text.as_bytes())
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// The end of `resp` and `http`: the text, the JSON file, and an error (the exit status) when
/// a run failed or a client counted errors.
pub fn finish(
    comparison: &compare::Comparison,
    json_file: Option<File>,
    json: &Option<PathBuf>,
) -> Result<(), String> {
    print!("{}", comparison.text());
    write(json_file, json, comparison.json())?;
    match comparison.trouble() {
        Some(trouble) => Err(trouble),
        None => Ok(()),
    }
}

fn run_all(args: &RunArgs) -> Result<(), String> {
    let mut kinds = parse::chosen(&args.servers, servers::ALL);
    // Servers this machine cannot run (no `go`) are skipped with a note.
    let mut skipped = Vec::new();
    kinds.retain(|kind| match servers::unavailable(kind) {
        Some(why) => {
            eprintln!("skipped: {why}");
            skipped.push((kind.clone(), why));
            false
        }
        None => true,
    });
    if kinds.is_empty() {
        return Err("no server left to run (all skipped, see above)".to_string());
    }
    let mut scenarios: Vec<&'static Scenario> = Vec::new();
    for &s in &args.scenarios {
        if !scenarios.iter().any(|x| std::ptr::eq(*x, &SCENARIOS[s])) {
            scenarios.push(&SCENARIOS[s]);
        }
    }
    if scenarios.is_empty() {
        scenarios = SCENARIOS.iter().collect();
    }
    if args.duration.is_zero() {
        return Err("--duration must be more than 0".to_string());
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pinning = args.pin.resolve()?;
    if let Some(plot) = &args.plot {
        if plot.extension().is_none_or(|e| e != "svg") {
            return Err(format!(
                "--plot {}: draws SVG only, give a FILE.svg",
                plot.display()
            ));
        }
    }
    let json_file = create(&args.json, "json")?;
    let csv_file = create(&args.csv, "csv")?;
    drop(create(&args.plot, "plot")?);
    if let Some((_, load)) = pinning {
        sys::pin_to_cpu(load).map_err(|e| format!("pinning the load to CPU {load}: {e}"))?;
    }
    sys::raise_fd_limit().map_err(|e| format!("raising the fd limit: {e}"))?;

    let total = (args.rounds * kinds.len() * scenarios.len()) as u64;
    let bar = ProgressBar::new(total)
        .with_style(ProgressStyle::with_template(PROGRESS).expect("a valid template"));
    let (samples, failures) = collect(
        args.rounds,
        &scenarios,
        &kinds,
        &bar,
        |kind, scenario, round| run_once(kind, scenario, args, pinning.map(|p| p.0), round),
    );
    bar.finish_and_clear();

    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    // Ratios are to netpoll when it ran, otherwise to the first server listed.
    let baseline = if kinds.iter().any(|k| k == "netpoll") {
        "netpoll".to_string()
    } else {
        kinds[0].clone()
    };
    let meta = Meta {
        rounds: args.rounds,
        duration: args.duration,
        warmup: args.warmup,
        cpus: cores,
        kernel: kernel.trim().to_string(),
        pinning,
        baseline,
        skipped,
    };
    let names: Vec<(&'static str, &'static str)> =
        scenarios.iter().map(|s| (s.name, s.id)).collect();
    let report = Report::new(meta, &names, &kinds, &samples, failures);
    print!("{}", report.text());
    write(json_file, &args.json, report.json())?;
    write(csv_file, &args.csv, report.csv())?;
    if let Some(path) = &args.plot {
        plot::svg(&report, path)?;
        eprintln!("wrote {}", path.display());
    }
    if !report.failures.is_empty() {
        return Err(format!(
            "{} of {total} runs failed (listed above)",
            report.failures.len()
        ));
    }
    Ok(())
}

/// Opens `conns` idle connections (spread over several 127.0.0.x source addresses) and reports
/// the server's resident memory per connection.
fn idle(kind: &str, conns: usize, timeout: Duration) -> Result<(), String> {
    if let Some(why) = servers::unavailable(kind) {
        return Err(why);
    }
    sys::raise_fd_limit().map_err(|e| format!("raising the fd limit: {e}"))?;
    let server = ServerProcess::start(kind, None)?;
    let pid = server.pid();
    let addr = server.addr;
    // Let the server settle (threads started, first allocations done) before the baseline.
    let warm = std::net::TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    drop(warm);
    let rss =
        || sys::status_kib(pid, "VmRSS").map_err(|e| format!("reading the server's RSS: {e}"));
    let before = rss()?;
    let bar = ProgressBar::new(conns as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {msg} [{elapsed_precise}]")
            .expect("a valid template"),
    );
    bar.set_message("connecting");
    let mut held = Vec::with_capacity(conns);
    for i in 0..conns {
        let source = SocketAddr::from(([127, 0, 0, 2 + (i / 20_000) as u8], 0));
        let connect = || -> std::io::Result<socket2::Socket> {
            let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
            socket.bind(&source.into())?;
            socket.connect(&addr.into())?;
            Ok(socket)
        };
        match connect() {
            Ok(socket) => held.push(socket),
            Err(e) => {
                bar.finish_and_clear();
                return Err(format!(
                    "connect {addr} from {}: {e} (after {i} of {conns} connections)",
                    source.ip()
                ));
            }
        }
        bar.inc(1);
    }
    // Wait until the server has accepted them all: its fd count covers them.
    let fds = || sys::fd_count(pid);
    bar.set_message("waiting for the server to accept them");
    bar.set_position((fds().min(conns)) as u64);
    let deadline = Instant::now() + timeout;
    while fds() < conns && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        bar.set_position((fds().min(conns)) as u64);
    }
    bar.finish_and_clear();
    if fds() < conns {
        eprintln!(
            "warning: the server had not accepted all {conns} connections after {}",
            report::show_duration(timeout)
        );
    }
    // Accepted is not yet served: a coroutine or task per connection may still be waiting for
    // its first run (its stack and buffer not touched). Wait for the RSS to settle: under
    // 64 KiB of growth in 250 ms, for at most 5 s.
    let mut after = rss()?;
    let settle = Instant::now() + Duration::from_secs(5);
    while Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(250));
        let now = rss()?;
        let grew = now.saturating_sub(after);
        after = now;
        if grew < 64 {
            break;
        }
    }
    let per_conn = (after.saturating_sub(before)) as f64 * 1024.0 / conns as f64;
    println!(
        "idle {kind}: {conns} connections, server RSS {before} KiB -> {after} KiB, {per_conn:.0} bytes per connection"
    );
    // The server closes first, so the TIME_WAIT states are its own (on its one port), not
    // the client's: the next run from 127.0.0.2 finds its ephemeral ports free again.
    drop(server);
    drop(held);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_run_keeps_the_other_samples() {
        let kinds = vec!["a".to_string(), "b".to_string()];
        let scenarios: Vec<&'static Scenario> = SCENARIOS[..2].iter().collect();
        let bar = ProgressBar::hidden();
        let (samples, failures) = collect(3, &scenarios, &kinds, &bar, |kind, scenario, round| {
            if kind == "b" && scenario.id == "64b-x1000" && round == 2 {
                Err("connect 127.0.0.1:9: Connection refused (os error 111)".to_string())
            } else {
                Ok(Sample {
                    round,
                    ..Sample::default()
                })
            }
        });
        assert_eq!(bar.position(), 12);
        assert_eq!(samples[0][0].len(), 3);
        assert_eq!(samples[0][1].len(), 3);
        assert_eq!(samples[1][0].len(), 3);
        let rounds: Vec<usize> = samples[1][1].iter().map(|s| s.round).collect();
        assert_eq!(rounds, [1, 3]);
        assert_eq!(failures.len(), 1);
        let f = &failures[0];
        assert_eq!(
            (f.server.as_str(), f.scenario, f.round),
            ("b", "64B x1000", 2)
        );
        assert!(f.error.contains("Connection refused"));
    }

    #[test]
    fn command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
