//! The main run's results: per (scenario, server) medians with their min–max over rounds, the
//! runs that failed, and the three ways out: the text table, JSON and CSV.

use std::fmt::Write as _;
use std::time::Duration;

use crate::load::LoadResult;

/// One measured run of one server in one scenario.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// 1-based.
    pub round: usize,
    pub load: LoadResult,
    /// The server process's CPU time over the measured window.
    pub cpu_ns: u64,
    pub peak_rss_kib: u64,
}

impl Sample {
    pub fn cpu_us_per_req(&self) -> f64 {
        self.cpu_ns as f64 / 1000.0 / self.load.requests.max(1) as f64
    }
}

/// A run that produced no sample.
#[derive(Clone, Debug)]
pub struct Failure {
    pub server: String,
    pub scenario: &'static str,
    /// 1-based.
    pub round: usize,
    pub error: String,
}

/// How the run was made (the table's first lines, the JSON's top-level fields).
#[derive(Clone, Debug)]
pub struct Meta {
    pub rounds: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub cpus: usize,
    pub kernel: String,
    /// (server CPU, load CPU) when pinned.
    pub pinning: Option<(usize, usize)>,
    /// The server the ratios are to.
    pub baseline: String,
    /// Servers asked for but not run: (server, why).
    pub skipped: Vec<(String, String)>,
}

/// Median, min and max of one metric over a row's samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stat {
    /// `None` for no values. The median of an even count is the upper middle value (as
    /// before: one of the measured values, not an average of two).
    pub fn of(mut values: Vec<f64>) -> Option<Stat> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(|a, b| a.total_cmp(b));
        Some(Stat {
            median: values[values.len() / 2],
            min: values[0],
            max: values[values.len() - 1],
        })
    }
}

/// One line of the table: a server in a scenario.
#[derive(Clone, Debug)]
pub struct Row {
    pub scenario: &'static str,
    pub scenario_id: &'static str,
    pub server: String,
    pub samples: Vec<Sample>,
    pub failed_runs: usize,
    pub rps: Option<Stat>,
    pub p50_us: Option<Stat>,
    pub p99_us: Option<Stat>,
    pub p999_us: Option<Stat>,
    pub cpu_us_per_req: Option<Stat>,
    pub rss_mib: Option<Stat>,
    /// Failed requests plus failed connects, summed over the samples.
    pub errors: u64,
    /// Median req/s and CPU/req over the baseline server's in the same scenario.
    pub x_rps: Option<f64>,
    pub x_cpu: Option<f64>,
}

/// Everything a main run produced.
pub struct Report {
    pub meta: Meta,
    pub rows: Vec<Row>,
    pub failures: Vec<Failure>,
}

impl Report {
    /// `scenarios[s]` is (table name, id); `samples[s][k]` the samples of server `kinds[k]`.
    pub fn new(
        meta: Meta,
        scenarios: &[(&'static str, &'static str)],
        kinds: &[String],
        samples: &[Vec<Vec<Sample>>],
        failures: Vec<Failure>,
    ) -> Report {
        let baseline = kinds.iter().position(|k| *k == meta.baseline).unwrap_or(0);
        let mut rows = Vec::new();
        for (s, &(scenario, scenario_id)) in scenarios.iter().enumerate() {
            let stat = |k: usize, f: &dyn Fn(&Sample) -> f64| {
                Stat::of(samples[s][k].iter().map(f).collect())
            };
            let rps = |k| stat(k, &|x| x.load.rps());
            let cpu = |k| stat(k, &|x| x.cpu_us_per_req());
            let ratio = |a: Option<Stat>, b: Option<Stat>| match (a, b) {
                (Some(a), Some(b)) if b.median > 0.0 => Some(a.median / b.median),
                _ => None,
            };
            for (k, kind) in kinds.iter().enumerate() {
                let runs = &samples[s][k];
                rows.push(Row {
                    scenario,
                    scenario_id,
                    server: kind.clone(),
                    samples: runs.clone(),
                    failed_runs: failures
                        .iter()
                        .filter(|f| f.server == *kind && f.scenario == scenario)
                        .count(),
                    rps: rps(k),
                    p50_us: stat(k, &|x| x.load.p50_us),
                    p99_us: stat(k, &|x| x.load.p99_us),
                    p999_us: stat(k, &|x| x.load.p999_us),
                    cpu_us_per_req: cpu(k),
                    rss_mib: stat(k, &|x| x.peak_rss_kib as f64 / 1024.0),
                    errors: runs
                        .iter()
                        .map(|x| x.load.errors + x.load.connect_failures)
                        .sum(),
                    x_rps: ratio(rps(k), rps(baseline)),
                    x_cpu: ratio(cpu(k), cpu(baseline)),
                });
            }
        }
        Report {
            meta,
            rows,
            failures,
        }
    }

    /// The text report: how it was run, the table, then the failed runs.
    pub fn text(&self) -> String {
        let m = &self.meta;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "netpoll-bench: echo on loopback, {} rounds x {} per run after {} warm-up (medians, min–max over rounds in parentheses), {} CPUs, Linux {}, {}",
            m.rounds,
            show_duration(m.duration),
            show_duration(m.warmup),
            m.cpus,
            m.kernel,
            match m.pinning {
                Some((server, load)) => format!("servers on CPU {server}, load on CPU {load}"),
                None => "not pinned".to_string(),
            }
        );
        out.push_str(
            "netpoll = EventLoop with inline handlers on 1 poller; netpoll-pool = same with the handler pool\n",
        );
        out.push_str("netpoll-net = thread per connection on blocking netpoll::net::TcpConn (parks on the pollers)\n");
        out.push_str("netpoll-go = coroutine per connection on netpoll::net::TcpConn (suspends on its poller), accept loops in coroutines\n");
        out.push_str("netpoll-async = async task per connection on netpoll::net::TcpConn (futures::io), accept loops in tasks\n");
        out.push_str("go-net = Go's net, goroutine per connection, GOMAXPROCS=1\n");
        out.push_str(
            "CPU us/req = the server process's CPU clock (ns) over the measured window / requests\n",
        );
        // Each note names its server ("go-net: no `go` on PATH ...").
        for (_, why) in &m.skipped {
            let _ = writeln!(out, "skipped: {why}");
        }
        let _ = writeln!(out, "ratios (x req/s, x CPU/req) are to {}\n", m.baseline);
        out.push_str(&self.table());
        failures_text(
            &mut out,
            self.failures
                .iter()
                .map(|f| (f.server.as_str(), f.scenario, f.round, f.error.as_str())),
        );
        out
    }

    /// The table alone, its column widths computed from the header and the cells.
    pub fn table(&self) -> String {
        let header = [
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
            "x CPU/req",
        ];
        let ratio = |r: Option<f64>| {
            (
                r.map_or("-".to_string(), |r| format!("{r:.2}")),
                String::new(),
            )
        };
        let rows: Vec<Vec<(String, String)>> = self
            .rows
            .iter()
            .map(|r| {
                vec![
                    (r.scenario.to_string(), String::new()),
                    (r.server.clone(), String::new()),
                    stat_cell(r.rps, 0),
                    stat_cell(r.p50_us, 0),
                    stat_cell(r.p99_us, 0),
                    stat_cell(r.p999_us, 0),
                    stat_cell(r.cpu_us_per_req, 2),
                    stat_cell(r.rss_mib, 1),
                    (r.errors.to_string(), String::new()),
                    ratio(r.x_rps),
                    ratio(r.x_cpu),
                ]
            })
            .collect();
        render(&header, 2, &rows)
    }

    /// One JSON object: the run's settings, a result per (scenario, server) with every
    /// sample, and the failed runs.
    pub fn json(&self) -> String {
        let m = &self.meta;
        let mut out = String::from("{\n");
        let _ = writeln!(out, "  \"rounds\": {},", m.rounds);
        let _ = writeln!(out, "  \"duration_s\": {},", num(m.duration.as_secs_f64()));
        let _ = writeln!(out, "  \"warmup_s\": {},", num(m.warmup.as_secs_f64()));
        let _ = writeln!(out, "  \"cpus\": {},", m.cpus);
        let _ = writeln!(out, "  \"kernel\": {},", string(&m.kernel));
        let _ = writeln!(out, "  \"pinning\": {},", pinning_json(m.pinning));
        let _ = writeln!(out, "  \"baseline\": {},", string(&m.baseline));
        out.push_str("  \"skipped\": [");
        for (i, (server, why)) in m.skipped.iter().enumerate() {
            let _ = write!(
                out,
                "{}{{\"server\": {}, \"why\": {}}}",
                if i == 0 { "" } else { ", " },
                string(server),
                string(why)
            );
        }
        out.push_str("],\n");
        out.push_str("  \"results\": [");
        for (i, r) in self.rows.iter().enumerate() {
            out.push_str(if i == 0 { "\n" } else { ",\n" });
            let _ = write!(
                out,
                "    {{\"scenario\": {}, \"scenario_id\": {}, \"server\": {}, \"runs\": {}, \"failed_runs\": {}, \"rps\": {}, \"p50_us\": {}, \"p99_us\": {}, \"p999_us\": {}, \"cpu_us_per_req\": {}, \"peak_rss_mib\": {}, \"errors\": {}, \"x_rps\": {}, \"x_cpu_per_req\": {}, \"samples\": [",
                string(r.scenario),
                string(r.scenario_id),
                string(&r.server),
                r.samples.len(),
                r.failed_runs,
                stat_json(r.rps),
                stat_json(r.p50_us),
                stat_json(r.p99_us),
                stat_json(r.p999_us),
                stat_json(r.cpu_us_per_req),
                stat_json(r.rss_mib),
                r.errors,
                r.x_rps.map_or("null".to_string(), num),
                r.x_cpu.map_or("null".to_string(), num),
            );
            for (j, x) in r.samples.iter().enumerate() {
                let _ = write!(
                    out,
                    "{}{{\"round\": {}, \"requests\": {}, \"rps\": {}, \"p50_us\": {}, \"p99_us\": {}, \"p999_us\": {}, \"cpu_ns\": {}, \"cpu_us_per_req\": {}, \"peak_rss_kib\": {}, \"errors\": {}, \"connect_failures\": {}}}",
                    if j == 0 { "" } else { ", " },
                    x.round,
                    x.load.requests,
                    num(x.load.rps()),
                    num(x.load.p50_us),
                    num(x.load.p99_us),
                    num(x.load.p999_us),
                    x.cpu_ns,
                    num(x.cpu_us_per_req()),
                    x.peak_rss_kib,
                    x.load.errors,
                    x.load.connect_failures,
                );
            }
            out.push_str("]}");
        }
        out.push_str(if self.rows.is_empty() {
            "],\n"
        } else {
            "\n  ],\n"
        });
        failures_json(
            &mut out,
            "scenario",
            self.failures
                .iter()
                .map(|f| (f.server.as_str(), f.scenario, f.round, f.error.as_str())),
        );
        out
    }

    /// One CSV line per (scenario, server): medians with their min and max, as in the table.
    pub fn csv(&self) -> String {
        let mut out = String::from("scenario,scenario_id,server,runs,failed_runs");
        for metric in [
            "rps",
            "p50_us",
            "p99_us",
            "p999_us",
            "cpu_us_per_req",
            "peak_rss_mib",
        ] {
            let _ = write!(out, ",{metric}_median,{metric}_min,{metric}_max");
        }
        out.push_str(",errors,x_rps,x_cpu_per_req\n");
        for r in &self.rows {
            let _ = write!(
                out,
                "{},{},{},{},{}",
                csv_field(r.scenario),
                csv_field(r.scenario_id),
                csv_field(&r.server),
                r.samples.len(),
                r.failed_runs
            );
            for s in [
                r.rps,
                r.p50_us,
                r.p99_us,
                r.p999_us,
                r.cpu_us_per_req,
                r.rss_mib,
            ] {
                match s {
                    Some(s) => {
                        let _ = write!(out, ",{},{},{}", num(s.median), num(s.min), num(s.max));
                    }
                    None => out.push_str(",,,"),
                }
            }
            let opt = |v: Option<f64>| v.map_or(String::new(), num);
            let _ = writeln!(out, ",{},{},{}", r.errors, opt(r.x_rps), opt(r.x_cpu));
        }
        out
    }
}

/// A table cell of a [`Stat`] as (main, bracket): the median with `decimals` decimals, then its
/// min–max spread in parentheses when the rounds differ; `failed` when nothing was measured.
pub fn stat_cell(s: Option<Stat>, decimals: usize) -> (String, String) {
    match s {
        None => ("failed".to_string(), String::new()),
        Some(s) if s.min == s.max => (format!("{:.*}", decimals, s.median), String::new()),
        Some(s) => (
            format!("{:.*}", decimals, s.median),
            format!("({:.*}–{:.*})", decimals, s.min, decimals, s.max),
        ),
    }
}

/// Lays out a table: the first `text_cols` columns left-aligned, the others right-aligned
/// (each cell's main part, then its bracket part), column widths from the header and cells.
pub fn render(header: &[&str], text_cols: usize, rows: &[Vec<(String, String)>]) -> String {
    let width = |s: &str| s.chars().count();
    let mut main_w: Vec<usize> = header.iter().map(|h| width(h)).collect();
    let mut extra_w = vec![0; header.len()];
    for row in rows {
        for (c, (main, extra)) in row.iter().enumerate() {
            main_w[c] = main_w[c].max(width(main));
            extra_w[c] = extra_w[c].max(width(extra));
        }
    }
    let cell = |c: usize, main: &str, extra: &str| -> String {
        let pad = |s: &str, w: usize| " ".repeat(w.saturating_sub(width(s)));
        if c < text_cols {
            format!("{main}{}", pad(main, main_w[c]))
        } else if extra_w[c] == 0 {
            format!("{}{main}", pad(main, main_w[c]))
        } else {
            format!(
                "{}{main} {extra}{}",
                pad(main, main_w[c]),
                pad(extra, extra_w[c])
            )
        }
    };
    let line = |cells: Vec<String>| cells.join("  ").trim_end().to_string() + "\n";
    let mut out = line(
        header
            .iter()
            .enumerate()
            .map(|(c, h)| cell(c, h, ""))
            .collect(),
    );
    for row in rows {
        out += &line(
            row.iter()
                .enumerate()
                .map(|(c, (main, extra))| cell(c, main, extra))
                .collect(),
        );
    }
    out
}

/// The text's list of failed runs, (server, case, round, error) each; nothing if none.
pub fn failures_text<'a>(
    out: &mut String,
    failures: impl ExactSizeIterator<Item = (&'a str, &'a str, usize, &'a str)>,
) {
    if failures.len() == 0 {
        return;
    }
    let _ = writeln!(out, "\n{} failed run(s):", failures.len());
    for (server, case, round, error) in failures {
        let _ = writeln!(out, "  {server} / {case} / round {round}: {error}");
    }
}

/// Ends a JSON object with its `failures` field: (server, case, round, error) each, the case
/// under the name `case`.
pub fn failures_json<'a>(
    out: &mut String,
    case: &str,
    failures: impl Iterator<Item = (&'a str, &'a str, usize, &'a str)>,
) {
    out.push_str("  \"failures\": [");
    let mut any = false;
    for (i, (server, what, round, error)) in failures.enumerate() {
        any = true;
        let _ = write!(
            out,
            "{}\n    {{\"server\": {}, {}: {}, \"round\": {round}, \"error\": {}}}",
            if i == 0 { "" } else { "," },
            string(server),
            string(case),
            string(what),
            string(error)
        );
    }
    out.push_str(if any { "\n  ]\n}\n" } else { "]\n}\n" });
}

/// `{"server_cpu": 0, "load_cpu": 1}` or `null`.
pub fn pinning_json(pinning: Option<(usize, usize)>) -> String {
    match pinning {
        Some((server, load)) => format!("{{\"server_cpu\": {server}, \"load_cpu\": {load}}}"),
        None => "null".to_string(),
    }
}

/// `1s`, `500ms`, `1.5s`.
pub fn show_duration(d: Duration) -> String {
    if d.as_millis() < 1000 && d.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{} s", d.as_secs_f64())
    }
}

/// A JSON number; `null` for NaN and infinities, which JSON cannot hold.
pub fn num(v: f64) -> String {
    if v.is_finite() {
        let s = format!("{v:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        if s.is_empty() || s == "-" {
            "0".to_string()
        } else {
            s.to_string()
        }
    } else {
        "null".to_string()
    }
}

pub fn stat_json(s: Option<Stat>) -> String {
    match s {
        Some(s) => format!(
            "{{\"median\": {}, \"min\": {}, \"max\": {}}}",
            num(s.median),
            num(s.min),
            num(s.max)
        ),
        None => "null".to_string(),
    }
}

/// A JSON string literal.
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(round: usize, requests: u64, p99: f64, cpu_ns: u64) -> Sample {
        Sample {
            round,
            load: LoadResult {
                requests,
                elapsed: Duration::from_secs(1),
                p50_us: p99 / 2.0,
                p99_us: p99,
                p999_us: p99 * 2.0,
                ..LoadResult::default()
            },
            cpu_ns,
            peak_rss_kib: 4096,
        }
    }

    fn report() -> Report {
        let meta = Meta {
            rounds: 3,
            duration: Duration::from_secs(1),
            warmup: Duration::from_millis(500),
            cpus: 2,
            kernel: "6.1".into(),
            pinning: None,
            baseline: "netpoll".into(),
            skipped: vec![("go-net".into(), "go-net: no `go` on PATH".into())],
        };
        let kinds = vec!["netpoll".to_string(), "tokio-mt".to_string()];
        let samples = vec![vec![
            vec![
                sample(1, 1000, 900.0, 10_000_000),
                sample(2, 3000, 1100.0, 30_000_000),
                sample(3, 2000, 1000.0, 20_000_000),
            ],
            // tokio-mt: round 2 failed.
            vec![
                sample(1, 4000, 500.0, 20_000_000),
                sample(3, 4000, 700.0, 20_000_000),
            ],
        ]];
        let failures = vec![Failure {
            server: "tokio-mt".into(),
            scenario: "64B x100",
            round: 2,
            error: "connect 127.0.0.1:9: Connection refused (os error 111) \"quoted\"".into(),
        }];
        Report::new(
            meta,
            &[("64B x100", "64b-x100")],
            &kinds,
            &samples,
            failures,
        )
    }

    #[test]
    fn medians_spreads_ratios_and_failures() {
        let r = report();
        let netpoll = &r.rows[0];
        assert_eq!(
            netpoll.rps,
            Some(Stat {
                median: 2000.0,
                min: 1000.0,
                max: 3000.0
            })
        );
        assert_eq!(netpoll.cpu_us_per_req.unwrap().median, 10.0);
        let tokio = &r.rows[1];
        assert_eq!(tokio.samples.len(), 2);
        assert_eq!(tokio.failed_runs, 1);
        assert_eq!(tokio.x_rps, Some(2.0));
        assert_eq!(tokio.x_cpu, Some(0.5));
    }

    #[test]
    fn table_columns_line_up() {
        let text = report().text();
        assert!(
            text.contains("tokio-mt / 64B x100 / round 2: connect 127.0.0.1:9"),
            "{text}"
        );
        assert!(text.contains("skipped: go-net: no `go` on PATH"), "{text}");
        let table = report().table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        // Every column's right edge (the end of the header word) is where the cells' medians
        // end: check req/s and the last column.
        let header = lines[0];
        let end_of = |word: &str| header.find(word).unwrap() + word.len();
        let rps_end = end_of("req/s");
        for line in &lines[1..] {
            let chars: Vec<char> = line.chars().collect();
            assert!(chars[rps_end - 1].is_ascii_digit(), "{table}");
            assert_eq!(chars.get(rps_end), Some(&' '), "{table}");
        }
        assert!(lines[1].contains("2000 (1000–3000)"), "{table}");
        assert!(lines[2].contains("4000 "), "{table}");
        let last = header.chars().count();
        assert!(lines.iter().all(|l| l.chars().count() == last), "{table}");
    }

    #[test]
    fn json_and_csv_hold_every_field() {
        let r = report();
        let json = r.json();
        for field in [
            "\"rounds\": 3",
            "\"baseline\": \"netpoll\"",
            "\"server\": \"tokio-mt\"",
            "\"rps\": {\"median\": 2000, \"min\": 1000, \"max\": 3000}",
            "\"cpu_us_per_req\": {\"median\": 10",
            "\"failed_runs\": 1",
            "\"skipped\": [{\"server\": \"go-net\", \"why\": \"go-net: no `go` on PATH\"}],",
            "\"round\": 2, \"error\": \"connect 127.0.0.1:9: Connection refused (os error 111) \\\"quoted\\\"\"",
        ] {
            assert!(json.contains(field), "{field} not in {json}");
        }
        let csv = r.csv();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 3);
        let columns = lines[0].split(',').count();
        assert!(
            lines.iter().all(|l| l.split(',').count() == columns),
            "{csv}"
        );
        assert!(lines[0].starts_with("scenario,scenario_id,server,runs,failed_runs,rps_median"));
        assert!(lines[1].starts_with("64B x100,64b-x100,netpoll,3,0,2000,1000,3000,"));
        assert_eq!(csv_field("a,\"b\""), "\"a,\"\"b\"\"\"");
        assert_eq!(num(f64::NAN), "null");
        assert_eq!(num(0.25), "0.25");
        assert_eq!(num(3.0), "3");
    }
}
