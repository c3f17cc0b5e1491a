//! netpoll-bench: echo servers side by side on loopback, in one run.
//!
//! `cargo run --release -p netpoll-bench` runs every server (each in its own child process)
//! through every scenario, alternating servers over several rounds, and prints one table of
//! medians. `serve`, `load` and `idle` expose the parts.

mod load;
mod servers;
mod sys;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use load::{LoadResult, LoadSpec};

#[derive(Parser)]
#[command(about = "Echo benchmark of netpoll against tokio, std threads and raw epoll")]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    /// Rounds; each round runs every server once per scenario, servers alternating.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Measured seconds per run (after a 0.5 s warm-up).
    #[arg(long, default_value_t = 1.0)]
    secs: f64,
    /// Servers, comma-separated (default: all): netpoll, netpoll-pool, tokio, tokio-mt, std,
    /// netpoll-net, epoll.
    #[arg(long, value_delimiter = ',')]
    servers: Vec<String>,
    /// CPU for the servers.
    #[arg(long, default_value_t = 0)]
    server_cpu: usize,
    /// CPU for the load generator.
    #[arg(long, default_value_t = 1)]
    load_cpu: usize,
    /// Do not pin servers and load to CPUs.
    #[arg(long)]
    no_pin: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs one echo server until SIGINT/SIGTERM.
    Serve {
        /// netpoll, netpoll-pool, tokio, tokio-mt, std, netpoll-net or epoll.
        #[arg(long)]
        server: String,
        #[arg(long, default_value = "echo")]
        proto: String,
        #[arg(long, default_value = "127.0.0.1:0")]
        addr: SocketAddr,
        /// Pollers (netpoll, netpoll-pool: default 1; netpoll-net: default the global pollers,
        /// one per 4 CPUs).
        #[arg(long)]
        loops: Option<usize>,
        /// Pin the server to this CPU.
        #[arg(long)]
        cpu: Option<usize>,
    },
    /// Drives an echo server and prints what it measured.
    Load {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value_t = 100)]
        conns: usize,
        #[arg(long, default_value_t = 64)]
        size: usize,
        #[arg(long, default_value_t = 1)]
        pipeline: usize,
        #[arg(long, default_value_t = 2.0)]
        secs: f64,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Opens many idle connections to a server and reports its memory per connection.
    Idle {
        #[arg(long)]
        server: String,
        #[arg(long, default_value_t = 10_000)]
        conns: usize,
    },
}

/// A scenario: connections × message size × pipeline depth.
struct Scenario {
    name: &'static str,
    conns: usize,
    size: usize,
    pipeline: usize,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "64B x100",
        conns: 100,
        size: 64,
        pipeline: 1,
    },
    Scenario {
        name: "64B x1000",
        conns: 1000,
        size: 64,
        pipeline: 1,
    },
    Scenario {
        name: "1KiB x100",
        conns: 100,
        size: 1024,
        pipeline: 1,
    },
    Scenario {
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
            servers::serve(&server, addr, loops)
        }
        Some(Cmd::Load {
            addr,
            conns,
            size,
            pipeline,
            secs,
            json,
        }) => {
            let spec = LoadSpec {
                conns,
                size,
                pipeline,
                warmup: Duration::from_millis(500),
                secs: Duration::from_secs_f64(secs),
            };
            let r = load::run(addr, &spec, |_| {});
            print_load(&r, json);
            if r.connect_failures > 0 || r.errors > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
        Some(Cmd::Idle { server, conns }) => idle(&server, conns),
    };
    if let Err(e) = result {
        eprintln!("netpoll-bench: {e}");
        std::process::exit(1);
    }
}

fn print_load(r: &LoadResult, json: bool) {
    if json {
        println!(
            "{{\"requests\":{},\"rps\":{:.0},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"errors\":{},\"connect_failures\":{}}}",
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

/// A server child process, stopped with SIGTERM when dropped.
struct ServerProcess {
    child: Child,
    addr: SocketAddr,
}

impl ServerProcess {
    fn start(kind: &str, cpu: Option<usize>) -> std::io::Result<ServerProcess> {
        let mut command = Command::new(std::env::current_exe()?);
        command.args(["serve", "--server", kind, "--addr", "127.0.0.1:0"]);
        if let Some(cpu) = cpu {
            command.args(["--cpu", &cpu.to_string()]);
        }
        let mut child = command.stdout(Stdio::piped()).spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| {
                std::io::Error::other(format!("{kind}: unexpected first line {line:?}"))
            })?;
        Ok(ServerProcess { child, addr })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = sys::kill(self.child.id(), libc::SIGTERM);
        let _ = self.child.wait();
    }
}

/// One measured run.
#[derive(Clone, Default)]
struct Sample {
    load: LoadResult,
    cpu_us_per_req: f64,
    peak_rss_kib: u64,
}

fn run_once(kind: &str, scenario: &Scenario, args: &RunArgs, pin: bool) -> std::io::Result<Sample> {
    let server = ServerProcess::start(kind, pin.then_some(args.server_cpu))?;
    let spec = LoadSpec {
        conns: scenario.conns,
        size: scenario.size,
        pipeline: scenario.pipeline,
        warmup: Duration::from_millis(500),
        secs: Duration::from_secs_f64(args.secs),
    };
    let pid = server.pid();
    let (mut cpu_start, mut cpu_end) = (0, 0);
    let load = load::run(server.addr, &spec, |start| {
        let now = sys::cpu_micros(pid).unwrap_or(0);
        if start {
            cpu_start = now;
        } else {
            cpu_end = now;
        }
    });
    let peak_rss_kib = sys::status_kib(pid, "VmHWM").unwrap_or(0);
    let cpu_us_per_req = (cpu_end - cpu_start) as f64 / load.requests.max(1) as f64;
    Ok(Sample {
        load,
        cpu_us_per_req,
        peak_rss_kib,
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn run_all(args: &RunArgs) -> std::io::Result<()> {
    let kinds: Vec<String> = if args.servers.is_empty() {
        servers::ALL.iter().map(|s| s.to_string()).collect()
    } else {
        args.servers.clone()
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pin = !args.no_pin && cores >= 2;
    if pin {
        sys::pin_to_cpu(args.load_cpu)?;
    }
    sys::raise_fd_limit()?;
    let total = (args.rounds * kinds.len() * SCENARIOS.len()) as u64;
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} {msg} [{elapsed_precise} / ~{duration_precise}]",
        )
        .expect("a valid template"),
    );
    // samples[scenario][server] = one Sample per round
    let mut samples = vec![vec![Vec::<Sample>::new(); kinds.len()]; SCENARIOS.len()];
    for _round in 0..args.rounds {
        for (s, scenario) in SCENARIOS.iter().enumerate() {
            for (k, kind) in kinds.iter().enumerate() {
                bar.set_message(format!("{kind} {}", scenario.name));
                samples[s][k].push(run_once(kind, scenario, args, pin)?);
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();

    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!(
        "netpoll-bench: echo on loopback, {} rounds x {:.1} s per run (medians), {cores} CPUs, Linux {}, {}",
        args.rounds,
        args.secs,
        kernel.trim(),
        if pin {
            format!("servers on CPU {}, load on CPU {}", args.server_cpu, args.load_cpu)
        } else {
            "not pinned".to_string()
        }
    );
    println!("netpoll = EventLoop with inline handlers on 1 poller; netpoll-pool = same with the handler pool");
    println!("netpoll-net = thread per connection on blocking netpoll::net::TcpConn (parks on the pollers)");
    // Ratios are to netpoll when it ran, otherwise to the first server listed.
    let baseline = kinds.iter().position(|k| k == "netpoll").unwrap_or(0);
    println!("ratios (x req/s, x CPU/req) are to {}\n", kinds[baseline]);
    println!(
        "{:<22} {:<13} {:>10} {:>8} {:>8} {:>8} {:>9} {:>8} {:>6} {:>8} {:>9}",
        "scenario",
        "server",
        "req/s",
        "p50 us",
        "p99 us",
        "p999 us",
        "CPU us/req",
        "RSS MiB",
        "errors",
        "x req/s",
        "x CPU/req"
    );
    for (s, scenario) in SCENARIOS.iter().enumerate() {
        let base = &samples[s][baseline];
        let base_rps = median(base.iter().map(|x| x.load.rps()).collect());
        let base_cpu = median(base.iter().map(|x| x.cpu_us_per_req).collect());
        for (k, kind) in kinds.iter().enumerate() {
            let runs = &samples[s][k];
            let rps = median(runs.iter().map(|x| x.load.rps()).collect());
            let cpu = median(runs.iter().map(|x| x.cpu_us_per_req).collect());
            let errors: u64 = runs
                .iter()
                .map(|x| x.load.errors + x.load.connect_failures)
                .sum();
            println!(
                "{:<22} {:<13} {:>10.0} {:>8.0} {:>8.0} {:>8.0} {:>9.2} {:>8.1} {:>6} {:>8.2} {:>9.2}",
                scenario.name,
                kind,
                rps,
                median(runs.iter().map(|x| x.load.p50_us).collect()),
                median(runs.iter().map(|x| x.load.p99_us).collect()),
                median(runs.iter().map(|x| x.load.p999_us).collect()),
                cpu,
                median(runs.iter().map(|x| x.peak_rss_kib as f64).collect()) / 1024.0,
                errors,
                rps / base_rps,
                cpu / base_cpu,
            );
        }
    }
    Ok(())
}

/// Opens `conns` idle connections (spread over several 127.0.0.x source addresses) and reports
/// the server's resident memory per connection.
fn idle(kind: &str, conns: usize) -> std::io::Result<()> {
    sys::raise_fd_limit()?;
    let server = ServerProcess::start(kind, None)?;
    let pid = server.pid();
    // Let the server settle (threads started, first allocations done) before the baseline.
    let warm = std::net::TcpStream::connect(server.addr)?;
    drop(warm);
    let before = sys::status_kib(pid, "VmRSS")?;
    let mut held = Vec::with_capacity(conns);
    for i in 0..conns {
        let source = SocketAddr::from(([127, 0, 0, 2 + (i / 20_000) as u8], 0));
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        socket.bind(&source.into())?;
        socket.connect(&server.addr.into())?;
        held.push(socket);
    }
    // Wait until the server has accepted them all: its fd count covers them.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() < conns
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    if std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() < conns {
        eprintln!("warning: the server had not accepted all {conns} connections after 30 s");
    }
    let after = sys::status_kib(pid, "VmRSS")?;
    let per_conn = (after.saturating_sub(before)) as f64 * 1024.0 / conns as f64;
    println!(
        "idle {kind}: {conns} connections, server RSS {before} KiB -> {after} KiB, {per_conn:.0} bytes per connection"
    );
    Ok(())
}
