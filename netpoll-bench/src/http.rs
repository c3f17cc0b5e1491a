//! `netpoll-bench http`: `wrk` against our HTTP example (`examples/http.rs`, one poller),
//! hyper on netpoll tasks (`examples/hello_hyper.rs`, one poller) and hyper on tokio's
//! current-thread runtime (`serve-http --server hyper-tokio`, below), each in a child process
//! pinned to the server CPU, wrk on the load CPU, rounds alternating; plain keep-alive and
//! pipelined 16 deep (`wrk/pipeline.lua`).

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response};

use crate::compare::{self, Comparison, Goal, Plan, Sample};
use crate::procs::{self, ServerProcess};
use crate::report::{num, pinning_json, show_duration, string};
use crate::{parse, PinArgs};

/// Our server and the peers, in table order.
pub const SERVERS: &[&str] = &["netpoll-http", "hyper-netpoll", "hyper-tokio"];

/// The pipelining script wrk runs (`-s`), written to a temporary file for it.
const PIPELINE_LUA: &str = include_str!("../wrk/pipeline.lua");

#[derive(clap::Args, Clone)]
pub struct HttpArgs {
    /// Rounds; each starts every server afresh per pipeline depth, servers alternating.
    #[arg(long, value_parser = parse::positive)]
    rounds: Option<usize>,
    /// Measured time per wrk run, whole seconds (wrk -d; default 10s).
    #[arg(long, value_parser = parse::duration)]
    duration: Option<Duration>,
    /// A wrk run before the measured one, not measured (0s: none; default 1s).
    #[arg(long, value_parser = parse::duration)]
    warmup: Option<Duration>,
    /// Connections (wrk -c).
    #[arg(long, default_value = "100", value_parser = parse::positive)]
    connections: usize,
    /// wrk threads (wrk -t).
    #[arg(long, default_value = "1", value_parser = parse::positive)]
    threads: usize,
    /// Pipeline depths, comma-separated: 1 is plain keep-alive, more runs wrk/pipeline.lua.
    #[arg(long, value_delimiter = ',', default_value = "1,16", value_parser = parse::positive)]
    pipelines: Vec<usize>,
    /// The path requested.
    #[arg(long, default_value = "/plaintext")]
    path: String,
    /// Servers, comma-separated (default: all): netpoll-http, hyper-netpoll, hyper-tokio.
    #[arg(long, value_delimiter = ',', value_parser = server_name)]
    servers: Vec<String>,
    /// A smoke run: 1 round of 2 s after a 1 s warm-up, unless those are given.
    #[arg(long)]
    quick: bool,
    /// Our HTTP server's binary (default: target/release/examples/http, built with cargo).
    #[arg(long, value_name = "PATH")]
    http_bin: Option<PathBuf>,
    /// hyper on netpoll's binary (default: target/release/examples/hello_hyper, built with
    /// cargo --features hyper).
    #[arg(long, value_name = "PATH")]
    hyper_bin: Option<PathBuf>,
    /// Runs this command line instead of our HTTP server (it takes `--addr` and `--loops` and
    /// prints `listening on ADDR`), to try the harness before the example exists.
    #[arg(long, hide = true, value_name = "CMD")]
    ours_cmd: Option<String>,
    /// The client.
    #[arg(long, default_value = "wrk", value_name = "PATH")]
    wrk: PathBuf,
    /// Also write the results (settings, medians, min/max, every sample, targets, failed runs)
    /// as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    #[command(flatten)]
    pin: PinArgs,
}

fn server_name(name: &str) -> Result<String, String> {
    parse::one_of(name, SERVERS, "server")
}

/// What wrk printed, as numbers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WrkReport {
    pub requests: u64,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// connect, read, write, timeout.
    pub socket_errors: [u64; 4],
    /// wrk's "Non-2xx or 3xx responses" (it counts status 400 and above).
    pub non_2xx: u64,
}

impl WrkReport {
    pub fn errors(&self) -> u64 {
        self.socket_errors.iter().sum::<u64>() + self.non_2xx
    }
}

/// wrk's time (`817.00us`, `0.93ms`, `1.21s`, `2.00m`) in ms.
fn wrk_ms(text: &str) -> Option<f64> {
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let value: f64 = text[..split].parse().ok()?;
    let scale = match &text[split..] {
        "us" => 1e-3,
        "ms" => 1.0,
        "s" => 1e3,
        "m" => 60e3,
        "h" => 3600e3,
        _ => return None,
    };
    Some(value * scale)
}

/// Parses wrk 4's report (run with `--latency`: p50 and p99 come from its "Latency
/// Distribution").
pub fn parse_wrk(text: &str) -> Result<WrkReport, String> {
    let mut report = WrkReport::default();
    let (mut requests, mut rps, mut p50, mut p99) = (None, None, None, None);
    let bad = |line: &str| format!("unexpected wrk line {:?}", line.trim());
    for line in text.lines() {
        let line = line.trim();
        let words: Vec<&str> = line.split_whitespace().collect();
        if let Some(rest) = line.strip_prefix("Requests/sec:") {
            rps = Some(rest.trim().parse::<f64>().map_err(|_| bad(line))?);
        } else if words.get(1..3) == Some(&["requests", "in"]) {
            requests = Some(words[0].parse::<u64>().map_err(|_| bad(line))?);
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 10, write 42862, timeout 0"
            for part in rest.split(',') {
                let kv: Vec<&str> = part.split_whitespace().collect();
                let slot = match kv.first() {
                    Some(&"connect") => 0,
                    Some(&"read") => 1,
                    Some(&"write") => 2,
                    Some(&"timeout") => 3,
                    _ => return Err(bad(line)),
                };
                report.socket_errors[slot] = kv
                    .get(1)
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| bad(line))?;
            }
        } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            report.non_2xx = rest.trim().parse().map_err(|_| bad(line))?;
        } else if let [pct @ ("50%" | "99%"), time] = words[..] {
            let ms = wrk_ms(time).ok_or_else(|| bad(line))?;
            // wrk 4 sometimes prints 0.00us for the upper percentiles, pipelined above all
            // (wg/wrk#236, #354): not a measurement.
            let ms = if ms > 0.0 { ms } else { f64::NAN };
            if pct == "50%" {
                p50 = Some(ms);
            } else {
                p99 = Some(ms);
            }
        }
    }
    let missing = |what: &str| format!("wrk printed no {what}: {:?}", text.trim());
    report.requests = requests.ok_or_else(|| missing("request count"))?;
    report.rps = rps.ok_or_else(|| missing("Requests/sec"))?;
    report.p50_ms = p50.ok_or_else(|| missing("latency distribution (run with --latency)"))?;
    report.p99_ms = p99.ok_or_else(|| missing("99% latency"))?;
    Ok(report)
}

/// A wrk duration: whole seconds, at least one (`-d` takes s/m/h units only).
fn whole_seconds(d: Duration, flag: &str) -> Result<u64, String> {
    if d.subsec_nanos() != 0 || d.as_secs() == 0 {
        return Err(format!(
            "{flag} {}: wrk takes whole seconds, 1s or more",
            show_duration(d)
        ));
    }
    Ok(d.as_secs())
}

/// A binary that takes `--addr HOST:0 --loops 1` and prints `listening on ADDR`: the program
/// and the arguments before those.
type Launch = (PathBuf, Vec<String>);

pub fn run(args: &HttpArgs) -> Result<(), String> {
    let rounds = args.rounds.unwrap_or(if args.quick { 1 } else { 3 });
    let duration = args
        .duration
        .unwrap_or(Duration::from_secs(if args.quick { 2 } else { 10 }));
    let warmup = args.warmup.unwrap_or(Duration::from_secs(1));
    let secs = whole_seconds(duration, "--duration")?;
    let warm_secs = if warmup.is_zero() {
        None
    } else {
        Some(whole_seconds(warmup, "--warmup")?)
    };
    let wrk_version = Command::new(&args.wrk)
        .arg("-v")
        .output()
        .map_err(|e| {
            format!(
                "{}: {e} (scripts/install-http-tools installs it)",
                args.wrk.display()
            )
        })
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })?;
    let servers = parse::chosen(&args.servers, SERVERS);
    // Counted before this thread is pinned to one of them.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pin = args.pin.resolve()?;
    let json_file = crate::create(&args.json, "json")?;
    let exe = std::env::current_exe().map_err(|e| format!("finding this program: {e}"))?;
    let mut launches: Vec<Launch> = Vec::new();
    for server in &servers {
        launches.push(match server.as_str() {
            "netpoll-http" => match (&args.ours_cmd, &args.http_bin) {
                (Some(cmd), _) => {
                    let mut words = cmd.split_whitespace().map(str::to_string);
                    let program = words.next().ok_or("--ours-cmd is empty")?;
                    (program.into(), words.collect())
                }
                (None, Some(bin)) => (bin.clone(), Vec::new()),
                (None, None) => (
                    procs::example("http", &[])
                        .map_err(|e| format!("{e}; or give --http-bin PATH"))?,
                    Vec::new(),
                ),
            },
            "hyper-netpoll" => match &args.hyper_bin {
                Some(bin) => (bin.clone(), Vec::new()),
                None => (
                    procs::example("hello_hyper", &["hyper"])
                        .map_err(|e| format!("{e}; or give --hyper-bin PATH"))?,
                    Vec::new(),
                ),
            },
            _ => (
                exe.clone(),
                vec!["serve-http".into(), "--server".into(), "hyper-tokio".into()],
            ),
        });
    }
    let what = |(bin, extra): &Launch| {
        format!(
            "{} {}--addr 127.0.0.1:0 --loops 1",
            bin.display(),
            extra.iter().map(|w| format!("{w} ")).collect::<String>()
        )
    };
    // The servers' logs and wrk's script.
    let scratch = std::env::temp_dir().join(format!("netpoll-bench-http-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)
        .map_err(|e| format!("creating {}: {e}", scratch.display()))?;
    let script = scratch.join("pipeline.lua");
    std::fs::write(&script, PIPELINE_LUA)
        .map_err(|e| format!("writing {}: {e}", script.display()))?;
    if let Some((_, load)) = pin {
        crate::sys::pin_to_cpu(load).map_err(|e| format!("pinning wrk to CPU {load}: {e}"))?;
    }

    let plan = Plan {
        setting_name: "pipeline",
        settings: args
            .pipelines
            .iter()
            .map(|p| format!("depth {p}"))
            .collect(),
        tests: vec!["plaintext".to_string()],
        servers: servers.clone(),
    };
    let bar = compare::progress(&plan, rounds);
    let (samples, failures) = compare::collect(&plan, rounds, &bar, |round, s, server| {
        let k = servers
            .iter()
            .position(|x| x == server)
            .expect("a planned server");
        let (bin, extra) = &launches[k];
        let mut command = Command::new(bin);
        command
            .args(extra)
            .args(["--addr", "127.0.0.1:0", "--loops", "1"]);
        let log = scratch.join(format!(
            "{server}-{round}-{depth}.log",
            depth = args.pipelines[s]
        ));
        let mut process = ServerProcess::announced(command, server, pin.map(|p| p.0), Some(&log))?;
        let depth = args.pipelines[s];
        let url = format!("http://{}{}", process.addr, args.path);
        let wrk = |secs: u64| {
            let mut command = Command::new(&args.wrk);
            command.args([
                "-t",
                &args.threads.to_string(),
                "-c",
                &args.connections.to_string(),
            ]);
            command.args(["-d", &format!("{secs}s"), "--latency"]);
            if depth > 1 {
                command.arg("-s").arg(&script);
            }
            command.arg(&url);
            if depth > 1 {
                command.args(["--", &depth.to_string()]);
            }
            command
        };
        let limit = |secs: u64| Duration::from_secs(secs + 30);
        if let Some(warm) = warm_secs {
            let out = procs::run_client(wrk(warm), limit(warm), &mut process)?;
            let report = parse_wrk(&out.stdout)?;
            if report.errors() > 0 {
                return Err(format!("in the warm-up: {}", errors(&report)));
            }
        }
        let before = process.cpu_nanos()?;
        let out = procs::run_client(wrk(secs), limit(secs), &mut process)?;
        let cpu_ns = process.cpu_nanos()?.saturating_sub(before);
        let report = parse_wrk(&out.stdout)?;
        if report.requests == 0 {
            return Err(format!("wrk completed no request ({})", errors(&report)));
        }
        if report.errors() > 0 {
            bar.suspend(|| {
                eprintln!(
                    "errors: {server} / depth {depth} / round {round}: {}",
                    errors(&report)
                )
            });
        }
        Ok(vec![Ok(Sample {
            round,
            requests: report.requests,
            rps: report.rps,
            p50_ms: report.p50_ms,
            p99_ms: report.p99_ms,
            cpu_ns,
            errors: report.errors(),
        })])
    });
    bar.finish_and_clear();
    let _ = std::fs::remove_dir_all(&scratch);

    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let goals = plan
        .settings
        .iter()
        .map(|setting| Goal {
            test: "plaintext".to_string(),
            setting: setting.clone(),
            ours: SERVERS[0].to_string(),
            peer: SERVERS[2].to_string(),
            min_ratio: 1.3,
        })
        .collect();
    let mut notes: Vec<String> = servers
        .iter()
        .zip(&launches)
        .map(|(s, l)| format!("{s} = {}", what(l)))
        .collect();
    notes.push(format!(
        "depth 16 = wrk -s wrk/pipeline.lua (16 requests written at once per connection); {} warm-up run first, not measured",
        warm_secs.map_or("no".to_string(), |s| format!("a {s} s"))
    ));
    notes.push("n/a = wrk printed 0.00us for that percentile (a wrk 4 fault with pipelining, wg/wrk#236): not a measurement".to_string());
    notes.push("p50/p99 = wrk's --latency distribution, in ms; errors = socket errors + non-2xx; CPU us/req = the server process's CPU clock over the wrk run / requests".to_string());
    let comparison = Comparison {
        title: format!(
            "netpoll-bench http: {wrk_version}, -t{} -c{} -d{secs}s GET {}, {rounds} rounds (medians, min–max over rounds in parentheses), {cpus} CPUs, Linux {}, {}",
            args.threads,
            args.connections,
            args.path,
            kernel.trim(),
            match pin {
                Some((server, load)) => format!("servers on CPU {server}, wrk on CPU {load}"),
                None => "not pinned".to_string(),
            }
        ),
        notes,
        settings_json: vec![
            ("client".into(), string(&wrk_version)),
            ("rounds".into(), rounds.to_string()),
            ("duration_s".into(), num(duration.as_secs_f64())),
            ("warmup_s".into(), num(warmup.as_secs_f64())),
            ("connections".into(), args.connections.to_string()),
            ("threads".into(), args.threads.to_string()),
            ("path".into(), string(&args.path)),
            (
                "servers".into(),
                format!(
                    "{{{}}}",
                    servers
                        .iter()
                        .zip(&launches)
                        .map(|(s, l)| format!("{}: {}", string(s), string(&what(l))))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            ("cpus".into(), cpus.to_string()),
            ("kernel".into(), string(kernel.trim())),
            ("pinning".into(), pinning_json(pin)),
        ],
        plan,
        samples,
        failures,
        baseline: SERVERS[2].to_string(),
        goals,
    };
    crate::finish(&comparison, json_file, &args.json)
}

fn errors(r: &WrkReport) -> String {
    let [connect, read, write, timeout] = r.socket_errors;
    format!(
        "socket errors: connect {connect}, read {read}, write {write}, timeout {timeout}; non-2xx: {}",
        r.non_2xx
    )
}

/// `serve-http --server hyper-tokio`: hyper's HTTP/1.1 server on tokio's current-thread
/// runtime, a task per connection (TCP_NODELAY), "Hello, World!" with `Content-Type:
/// text/plain` on any path (hyper adds `Date` and `Content-Length`). Prints `listening on
/// ADDR` once ready; exits 0 at SIGINT/SIGTERM.
pub fn serve_hyper_tokio(addr: SocketAddr) -> io::Result<()> {
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioIo, TokioTimer};

    async fn plaintext(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
        let mut response = Response::new(Full::new(Bytes::from_static(b"Hello, World!")));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        Ok(response)
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        println!("listening on {}", listener.local_addr()?);
        let accept = async {
            loop {
                let (stream, _) = listener.accept().await?;
                stream.set_nodelay(true)?;
                tokio::spawn(async move {
                    let _ = http1::Builder::new()
                        .timer(TokioTimer::new())
                        .serve_connection(TokioIo::new(stream), service_fn(plaintext))
                        .await;
                });
            }
            #[allow(unreachable_code)]
            Ok::<(), io::Error>(())
        };
        crate::servers::until_signal(accept).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// wrk 4.1.0 (Debian) against hello_hyper, -t1 -c100 -d2s --latency.
    const PLAIN: &str = "Running 2s test @ http://127.0.0.1:40893/plaintext
  1 threads and 100 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   758.86us  271.24us   4.51ms   69.04%
    Req/Sec   111.37k     7.65k  125.49k    52.38%
  Latency Distribution
     50%  817.00us
     75%    0.93ms
     90%    1.00ms
     99%    1.21ms
  232318 requests in 2.10s, 19.72MB read
Requests/sec: 110486.04
Transfer/sec:      9.38MB
";

    /// The same server killed 1 s into a 2 s run.
    const KILLED: &str = "Running 2s test @ http://127.0.0.1:40893/plaintext
  1 threads and 10 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   220.27us  402.37us   6.37ms   96.31%
    Req/Sec    44.18k    16.05k   61.07k    81.82%
  Latency Distribution
     50%  148.00us
     75%  188.00us
     90%  237.00us
     99%    2.34ms
  48357 requests in 2.00s, 4.10MB read
  Socket errors: connect 0, read 10, write 42862, timeout 0
Requests/sec:  24168.33
Transfer/sec:      2.05MB
";

    /// python3 -m http.server, a path it does not have (404s).
    const NOT_FOUND: &str = "Running 1s test @ http://127.0.0.1:38080/nope
  1 threads and 10 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    10.85ms    5.97ms  26.27ms   67.95%
    Req/Sec   549.10    162.57   747.00     70.00%
  Latency Distribution
     50%    9.85ms
     75%   14.54ms
     90%   20.66ms
     99%   24.33ms
  546 requests in 1.00s, 277.27KB read
  Non-2xx or 3xx responses: 546
Requests/sec:    545.66
Transfer/sec:    277.09KB
";

    /// hyper-tokio pipelined 16 deep: wrk's percentiles above the median are 0.00us.
    const ZEROS: &str = "  Latency Distribution
     50%   34.94ms
     75%    0.00us
     90%    0.00us
     99%    0.00us
  81555 requests in 2.06s, 8.94MB read
Requests/sec:  39589.81
";

    #[test]
    fn a_percentile_of_zero_is_not_a_measurement() {
        let r = parse_wrk(ZEROS).unwrap();
        assert_eq!((r.requests, r.p50_ms), (81555, 34.94));
        assert!(r.p99_ms.is_nan(), "{r:?}");
    }

    #[test]
    fn parses_wrk_reports() {
        let r = parse_wrk(PLAIN).unwrap();
        assert_eq!(r.requests, 232318);
        assert_eq!(r.rps, 110486.04);
        assert!((r.p50_ms - 0.817).abs() < 1e-9, "{r:?}");
        assert_eq!(r.p99_ms, 1.21);
        assert_eq!(r.errors(), 0);
        let r = parse_wrk(KILLED).unwrap();
        assert_eq!(r.socket_errors, [0, 10, 42862, 0]);
        assert_eq!(r.errors(), 42872);
        assert!((r.p50_ms - 0.148).abs() < 1e-9);
        let r = parse_wrk(NOT_FOUND).unwrap();
        assert_eq!((r.non_2xx, r.errors(), r.requests), (546, 546, 546));
        assert_eq!(r.p99_ms, 24.33);
    }

    #[test]
    fn wrk_output_without_latency_or_garbled_is_an_error() {
        let no_latency: String = PLAIN
            .lines()
            .filter(|l| {
                !l.trim_start()
                    .starts_with(|c: char| c.is_ascii_digit() && l.contains('%'))
            })
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(
            parse_wrk(&no_latency).unwrap_err().contains("--latency"),
            "{no_latency}"
        );
        assert!(parse_wrk("unable to connect to 127.0.0.1:1 Connection refused").is_err());
        let garbled = PLAIN.replace("connections\n", "connections\n  Socket errors: connect x\n");
        assert!(parse_wrk(&garbled).unwrap_err().contains("Socket errors"));
        assert_eq!(wrk_ms("2.00m"), Some(120_000.0));
        assert_eq!(wrk_ms("1.5s"), Some(1500.0));
        assert_eq!(wrk_ms("12parsecs"), None);
    }

    #[test]
    fn durations_are_whole_seconds() {
        assert_eq!(whole_seconds(Duration::from_secs(2), "--duration"), Ok(2));
        assert!(whole_seconds(Duration::from_millis(1500), "--duration").is_err());
        assert!(whole_seconds(Duration::ZERO, "--warmup").is_err());
    }
}
