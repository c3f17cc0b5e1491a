//! `netpoll-bench resp`: Debian's `redis-benchmark` against our RESP example
//! (`examples/resp/`, one poller) and `redis-server` (no persistence, one I/O thread), each
//! in a child process pinned to the server CPU, the client on the load CPU, rounds alternating.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::compare::{self, Comparison, Goal, Plan, Sample};
use crate::procs::{self, ServerProcess};
use crate::report::{num, pinning_json, string};
use crate::{parse, PinArgs};

/// The tests: the name redis-benchmark's CSV gives, and its `-t` name.
pub const TESTS: &[(&str, &str)] = &[
    ("PING_INLINE", "ping_inline"),
    ("PING_MBULK", "ping_mbulk"),
    ("SET", "set"),
    ("GET", "get"),
    ("INCR", "incr"),
    ("MSET", "mset"),
];

/// Our server and the peer, in table order.
pub const SERVERS: &[&str] = &["netpoll-resp", "redis-server"];

#[derive(clap::Args, Clone)]
pub struct RespArgs {
    /// Rounds; each starts every server afresh per pipeline depth and runs every test on it,
    /// servers alternating.
    #[arg(long, value_parser = parse::positive)]
    rounds: Option<usize>,
    /// Requests per test at -P 1 (redis-benchmark -n; default 100000).
    #[arg(short = 'n', long, value_parser = parse::positive)]
    requests: Option<usize>,
    /// Requests per test at a pipeline depth above 1 (default 1000000, or -n when given).
    #[arg(long, value_parser = parse::positive)]
    pipelined_requests: Option<usize>,
    /// Connections (redis-benchmark -c).
    #[arg(long, default_value = "50", value_parser = parse::positive)]
    clients: usize,
    /// Pipeline depths (redis-benchmark -P), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "16,1", value_parser = parse::positive)]
    pipelines: Vec<usize>,
    /// Tests, comma-separated (default: all): PING_INLINE, PING_MBULK, SET, GET, INCR, MSET.
    #[arg(long, value_delimiter = ',', value_parser = test_name)]
    tests: Vec<String>,
    /// Servers, comma-separated (default: both): netpoll-resp, redis-server.
    #[arg(long, value_delimiter = ',', value_parser = server_name)]
    servers: Vec<String>,
    /// A smoke run: 1 round, -n 20000 (100000 pipelined), unless those are given.
    #[arg(long)]
    quick: bool,
    /// Our RESP server's binary (default: target/release/examples/resp, built with cargo).
    #[arg(long, value_name = "PATH")]
    resp_bin: Option<PathBuf>,
    /// Runs this instead of our RESP server: `redis-server` (a second one, to try the harness),
    /// or a command line that takes `--addr` and `--loops` and prints `listening on ADDR`.
    #[arg(long, hide = true, value_name = "CMD")]
    ours_cmd: Option<String>,
    /// The redis-server to compare with.
    #[arg(long, default_value = "redis-server", value_name = "PATH")]
    redis_server: PathBuf,
    /// The client.
    #[arg(long, default_value = "redis-benchmark", value_name = "PATH")]
    redis_benchmark: PathBuf,
    /// Longest a single redis-benchmark run may take (it retries a refused connect forever).
    #[arg(long, default_value = "120s", value_parser = parse::duration)]
    timeout: Duration,
    /// Also write the results (settings, medians, min/max, every sample, targets, failed runs)
    /// as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    #[command(flatten)]
    pin: PinArgs,
}

fn test_name(name: &str) -> Result<String, String> {
    let names: Vec<&str> = TESTS.iter().map(|(t, _)| *t).collect();
    parse::one_of(name, &names, "test")
}

fn server_name(name: &str) -> Result<String, String> {
    parse::one_of(name, SERVERS, "server")
}

/// One line of `redis-benchmark --csv`: the test and its latencies in ms.
#[derive(Clone, Debug, PartialEq)]
pub struct CsvLine {
    /// As printed: "SET", "MSET (10 keys)".
    pub test: String,
    pub rps: f64,
    pub avg_ms: f64,
    pub min_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Parses `redis-benchmark --csv` (7.0: a header line `"test","rps","avg_latency_ms",...`,
/// then one line per test), finding the columns by the header's names.
pub fn parse_csv(text: &str) -> Result<Vec<CsvLine>, String> {
    let fields = |line: &str| -> Vec<String> {
        line.trim()
            .split(',')
            .map(|f| f.trim().trim_matches('"').to_string())
            .collect()
    };
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = fields(lines.next().ok_or("redis-benchmark printed no CSV")?);
    let column = |name: &str| {
        header.iter().position(|h| h == name).ok_or_else(|| {
            format!("redis-benchmark's CSV has no {name:?} column (header {header:?}; version 7.0 or later prints it)")
        })
    };
    let test = column("test")?;
    let cols = [
        "rps",
        "avg_latency_ms",
        "min_latency_ms",
        "p50_latency_ms",
        "p95_latency_ms",
        "p99_latency_ms",
        "max_latency_ms",
    ]
    .iter()
    .map(|name| column(name))
    .collect::<Result<Vec<usize>, String>>()?;
    let mut out = Vec::new();
    for line in lines {
        let f = fields(line);
        let mut v = [0f64; 7];
        for (value, col) in v.iter_mut().zip(&cols) {
            let col = *col;
            *value = f.get(col).and_then(|x| x.parse().ok()).ok_or_else(|| {
                format!(
                    "redis-benchmark's CSV line {line:?}: no number in column {}",
                    header[col]
                )
            })?;
        }
        out.push(CsvLine {
            test: f.get(test).cloned().unwrap_or_default(),
            rps: v[0],
            avg_ms: v[1],
            min_ms: v[2],
            p50_ms: v[3],
            p95_ms: v[4],
            p99_ms: v[5],
            max_ms: v[6],
        });
    }
    Ok(out)
}

/// How a server of the comparison is started.
enum Launch {
    /// A binary that takes `--addr HOST:0 --loops 1` and prints `listening on ADDR`.
    Announced(PathBuf, Vec<String>),
    Redis(PathBuf),
}

/// The program's version line (`redis-benchmark 7.0.15`), or why it cannot run.
fn version(program: &Path, hint: &str) -> Result<String, String> {
    let out = Command::new(program)
        .arg("--version")
        .output()
        .map_err(|e| format!("{}: {e} ({hint})", program.display()))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub fn run(args: &RespArgs) -> Result<(), String> {
    let rounds = args.rounds.unwrap_or(if args.quick { 1 } else { 3 });
    let requests = args
        .requests
        .unwrap_or(if args.quick { 20_000 } else { 100_000 });
    let pipelined = args
        .pipelined_requests
        .unwrap_or(match (args.requests, args.quick) {
            (Some(n), _) => n,
            (None, true) => 100_000,
            (None, false) => 1_000_000,
        });
    let install = "scripts/install-redis installs it";
    let bench_version = version(&args.redis_benchmark, install)?;
    let redis_version = version(&args.redis_server, install)?;
    let servers = parse::chosen(&args.servers, SERVERS);
    let names: Vec<&str> = TESTS.iter().map(|(t, _)| *t).collect();
    let tests = parse::chosen(&args.tests, &names);
    // Counted before this thread is pinned to one of them.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pin = args.pin.resolve()?;
    let json_file = crate::create(&args.json, "json")?;
    let ours = if !servers.iter().any(|s| s == SERVERS[0]) {
        None
    } else {
        Some(match (&args.ours_cmd, &args.resp_bin) {
            (Some(cmd), _) if cmd.trim() == "redis-server" => {
                Launch::Redis(args.redis_server.clone())
            }
            (Some(cmd), _) => {
                let mut words = cmd.split_whitespace().map(str::to_string);
                let program = words.next().ok_or("--ours-cmd is empty")?;
                Launch::Announced(program.into(), words.collect())
            }
            (None, Some(bin)) => Launch::Announced(bin.clone(), Vec::new()),
            (None, None) => Launch::Announced(
                procs::example("resp", &[]).map_err(|e| format!("{e}; or give --resp-bin PATH"))?,
                Vec::new(),
            ),
        })
    };
    let ours_what = match &ours {
        Some(Launch::Announced(bin, extra)) => {
            format!(
                "{} {}--addr 127.0.0.1:0 --loops 1",
                bin.display(),
                extra.iter().map(|w| format!("{w} ")).collect::<String>()
            )
        }
        Some(Launch::Redis(_)) => "a second redis-server (--ours-cmd redis-server)".to_string(),
        None => "not run".to_string(),
    };
    let peer = Launch::Redis(args.redis_server.clone());
    if let Some((_, load)) = pin {
        crate::sys::pin_to_cpu(load)
            .map_err(|e| format!("pinning the clients to CPU {load}: {e}"))?;
    }
    let scratch = std::env::temp_dir().join(format!("netpoll-bench-resp-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)
        .map_err(|e| format!("creating {}: {e}", scratch.display()))?;

    let plan = Plan {
        setting_name: "pipeline",
        settings: args.pipelines.iter().map(|p| format!("-P {p}")).collect(),
        tests,
        servers,
    };
    let bar = compare::progress(&plan, rounds);
    let mut starts = 0usize;
    let (samples, failures) = compare::collect(&plan, rounds, &bar, |round, s, server| {
        let launch = if server == SERVERS[0] {
            ours.as_ref().expect("ours is run")
        } else {
            &peer
        };
        starts += 1;
        let mut process = match launch {
            Launch::Announced(bin, extra) => {
                let mut command = Command::new(bin);
                command
                    .args(extra)
                    .args(["--addr", "127.0.0.1:0", "--loops", "1"]);
                let log = scratch.join(format!("{server}-{starts}.log"));
                ServerProcess::announced(command, server, pin.map(|p| p.0), Some(&log))?
            }
            Launch::Redis(bin) => {
                let addr = procs::free_port()?;
                let dir = scratch.join(format!("redis-{starts}"));
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("creating {}: {e}", dir.display()))?;
                let mut command = Command::new(bin);
                command
                    .current_dir(&dir)
                    .args(["--port", &addr.port().to_string()]);
                command.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
                command.args(["--io-threads", "1", "--daemonize", "no"]);
                command.arg("--dir").arg(&dir);
                ServerProcess::resp_at(command, server, pin.map(|p| p.0), addr, &dir.join("log"))?
            }
        };
        let depth = args.pipelines[s];
        let n = if depth > 1 { pipelined } else { requests };
        let results = plan
            .tests
            .iter()
            .map(|test| {
                let t_name = TESTS
                    .iter()
                    .find(|(t, _)| t == test)
                    .expect("a known test")
                    .1;
                let mut command = Command::new(&args.redis_benchmark);
                command.args(["-h", "127.0.0.1", "-p", &process.addr.port().to_string()]);
                command.args(["-c", &args.clients.to_string(), "-n", &n.to_string()]);
                command.args(["-P", &depth.to_string(), "-t", t_name, "--csv"]);
                let before = process.cpu_nanos()?;
                let out = procs::run_client(command, args.timeout, &mut process)?;
                let cpu_ns = process.cpu_nanos()?.saturating_sub(before);
                let lines = parse_csv(&out.stdout)?;
                let line = lines
                    .iter()
                    .find(|l| l.test.split(' ').next() == Some(test.as_str()))
                    .ok_or_else(|| {
                        format!("redis-benchmark printed no {test} line: {:?}", out.stdout)
                    })?;
                if line.rps <= 0.0 {
                    return Err(format!("redis-benchmark measured {} req/s", line.rps));
                }
                Ok(Sample {
                    round,
                    requests: n as u64,
                    rps: line.rps,
                    p50_ms: line.p50_ms,
                    p99_ms: line.p99_ms,
                    cpu_ns,
                    errors: 0,
                })
            })
            .collect();
        Ok(results)
    });
    bar.finish_and_clear();
    let _ = std::fs::remove_dir_all(&scratch);

    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let goals = ["SET", "GET"]
        .iter()
        .map(|test| Goal {
            test: test.to_string(),
            setting: "-P 16".to_string(),
            ours: SERVERS[0].to_string(),
            peer: SERVERS[1].to_string(),
            min_ratio: 1.0,
        })
        .collect();
    let comparison = Comparison {
        title: format!(
            "netpoll-bench resp: {bench_version}, -c {}, -n {requests} per test at -P 1 and {pipelined} pipelined, {rounds} rounds (medians, min–max over rounds in parentheses), {cpus} CPUs, Linux {}, {}",
            args.clients,
            kernel.trim(),
            match pin {
                Some((server, load)) => format!("servers on CPU {server}, redis-benchmark on CPU {load}"),
                None => "not pinned".to_string(),
            }
        ),
        notes: vec![
            format!("netpoll-resp = {ours_what}"),
            format!("redis-server = {redis_version}; --io-threads 1 --save '' --appendonly no"),
            "p50/p99 = redis-benchmark's own, in ms; CPU us/req = the server process's CPU clock over the client's run / requests".to_string(),
        ],
        settings_json: vec![
            ("client".into(), string(&bench_version)),
            ("redis_server".into(), string(&redis_version)),
            ("netpoll_resp".into(), string(&ours_what)),
            ("rounds".into(), rounds.to_string()),
            ("clients".into(), args.clients.to_string()),
            ("requests".into(), requests.to_string()),
            ("pipelined_requests".into(), pipelined.to_string()),
            ("cpus".into(), cpus.to_string()),
            ("kernel".into(), string(kernel.trim())),
            ("pinning".into(), pinning_json(pin)),
            ("timeout_s".into(), num(args.timeout.as_secs_f64())),
        ],
        plan,
        samples,
        failures,
        baseline: SERVERS[1].to_string(),
        goals,
    };
    crate::finish(&comparison, json_file, &args.json)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// redis-benchmark 7.0.15 against redis-server 7.0.15 on this machine (-P 16 -c 50 -n 20000).
    const CAPTURED: &str = r#""test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
"PING_INLINE","666666.69","0.840","0.296","0.623","1.831","2.087","2.367"
"PING_MBULK","666666.69","0.748","0.072","0.735","1.079","1.991","2.191"
"SET","416666.66","1.436","0.336","1.479","2.103","4.639","4.791"
"GET","444444.44","1.348","0.256","0.927","4.863","5.519","5.759"
"INCR","303030.31","2.089","0.432","1.991","4.103","5.783","7.735"
"MSET (10 keys)","235294.11","3.120","0.584","2.935","5.415","6.271","6.799"
"#;

    #[test]
    fn parses_redis_benchmark_csv() {
        let lines = parse_csv(CAPTURED).unwrap();
        assert_eq!(lines.len(), 6);
        assert_eq!(
            lines[2],
            CsvLine {
                test: "SET".into(),
                rps: 416666.66,
                avg_ms: 1.436,
                min_ms: 0.336,
                p50_ms: 1.479,
                p95_ms: 2.103,
                p99_ms: 4.639,
                max_ms: 4.791,
            }
        );
        assert_eq!(lines[5].test, "MSET (10 keys)");
        assert_eq!(lines[5].p99_ms, 6.271);
    }

    #[test]
    fn a_test_that_failed_leaves_the_header_alone() {
        // What it prints on stdout when the server answers an error (it exits 1).
        let header = CAPTURED.lines().next().unwrap();
        assert_eq!(parse_csv(header).unwrap(), vec![]);
        assert!(parse_csv("").unwrap_err().contains("no CSV"));
        // An older redis-benchmark (6.x) prints only "test","rps".
        let e = parse_csv("\"test\",\"rps\"\n\"SET\",\"1000.0\"\n").unwrap_err();
        assert!(
            e.contains("p50_latency_ms") || e.contains("avg_latency_ms"),
            "{e}"
        );
        let e = parse_csv(&format!(
            "{header}\n\"SET\",\"x\",\"1\",\"1\",\"1\",\"1\",\"1\",\"1\"\n"
        ))
        .unwrap_err();
        assert!(e.contains("column rps"), "{e}");
    }

    #[test]
    fn names() {
        assert_eq!(test_name("set").unwrap(), "SET");
        assert!(test_name("LPUSH").unwrap_err().contains("PING_INLINE"));
        assert!(server_name("redis").unwrap_err().contains("netpoll-resp"));
    }
}
