//! Results of the runs driven by external clients (`resp`: redis-benchmark, `http`: wrk):
//! per (setting, test, server) medians over rounds with their min–max, the ratio to a peer
//! server, the targets met or missed, and the text table and JSON.

use std::fmt::Write as _;

use indicatif::{ProgressBar, ProgressStyle};

use crate::report::{
    failures_json, failures_text, num, render, stat_cell, stat_json, string, Stat,
};

/// One client run of one test against one server.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// 1-based.
    pub round: usize,
    pub requests: u64,
    /// As the client reported them.
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// The server process's CPU time over the client's run.
    pub cpu_ns: u64,
    /// What the client counted as failed (wrk: socket errors plus non-2xx responses).
    pub errors: u64,
}

impl Sample {
    pub fn cpu_us_per_req(&self) -> f64 {
        self.cpu_ns as f64 / 1000.0 / self.requests.max(1) as f64
    }
}

/// A run that produced no sample.
#[derive(Clone, Debug)]
pub struct Failure {
    pub server: String,
    /// "SET -P 16".
    pub case: String,
    pub round: usize,
    pub error: String,
}

/// What is run: every test at every setting on every server, each round.
pub struct Plan {
    /// What the settings column is called ("pipeline").
    pub setting_name: &'static str,
    /// "-P 16", "-P 1".
    pub settings: Vec<String>,
    /// "SET", "GET".
    pub tests: Vec<String>,
    pub servers: Vec<String>,
}

/// A target: `ours` over `peer` in median req/s on `test` at `setting`, at least `min_ratio`,
/// with no client errors and no failed run of `ours` there.
#[derive(Clone, Debug)]
pub struct Goal {
    pub test: String,
    pub setting: String,
    pub ours: String,
    pub peer: String,
    pub min_ratio: f64,
}

/// A goal's outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub ratio: Option<f64>,
    pub errors: u64,
    pub failed_runs: usize,
    pub met: bool,
}

/// `samples[setting][test][server]`: every run's sample.
pub type Samples = Vec<Vec<Vec<Vec<Sample>>>>;

/// A finished comparison.
pub struct Comparison {
    /// The first line of the text and the notes after it.
    pub title: String,
    pub notes: Vec<String>,
    /// Top-level JSON fields, (name, JSON value).
    pub settings_json: Vec<(String, String)>,
    pub plan: Plan,
    pub samples: Samples,
    pub failures: Vec<Failure>,
    /// The server the "x req/s" column is to.
    pub baseline: String,
    pub goals: Vec<Goal>,
}

/// The progress bar of a run of `plan`: one step per server start.
pub fn progress(plan: &Plan, rounds: usize) -> ProgressBar {
    ProgressBar::new((rounds * plan.settings.len() * plan.servers.len()) as u64)
        .with_style(ProgressStyle::with_template(crate::PROGRESS).expect("a valid template"))
}

/// Runs the plan `rounds` times; within a round, setting by setting, the servers alternate.
/// `run(round, setting, server)` gives a result per test of the plan, in order, or one error
/// for them all (the server did not start). Every failure is shown at once and recorded; the
/// others go on.
pub fn collect(
    plan: &Plan,
    rounds: usize,
    bar: &ProgressBar,
    mut run: impl FnMut(usize, usize, &str) -> Result<Vec<Result<Sample, String>>, String>,
) -> (Samples, Vec<Failure>) {
    let (settings, tests, servers) = (plan.settings.len(), plan.tests.len(), plan.servers.len());
    let mut samples = vec![vec![vec![Vec::new(); servers]; tests]; settings];
    let mut failures = Vec::new();
    for round in 1..=rounds {
        for (s, setting) in plan.settings.iter().enumerate() {
            for (k, server) in plan.servers.iter().enumerate() {
                bar.set_message(format!("round {round}: {server} {setting}"));
                let results = match run(round, s, server) {
                    Ok(results) => results,
                    Err(e) => vec![Err(e); tests],
                };
                for (t, result) in results.into_iter().enumerate().take(tests) {
                    let case = format!("{} {setting}", plan.tests[t]);
                    match result {
                        Ok(sample) => {
                            if sample.errors > 0 {
                                bar.suspend(|| {
                                    eprintln!(
                                        "errors: {server} / {case} / round {round}: the client counted {} errors",
                                        sample.errors
                                    )
                                });
                            }
                            samples[s][t][k].push(sample);
                        }
                        Err(error) => {
                            bar.suspend(|| {
                                eprintln!("failed: {server} / {case} / round {round}: {error}")
                            });
                            failures.push(Failure {
                                server: server.clone(),
                                case,
                                round,
                                error,
                            });
                        }
                    }
                }
                bar.inc(1);
            }
        }
    }
    (samples, failures)
}

/// The metrics of a row, medians with min–max.
struct Stats {
    rps: Option<Stat>,
    p50_ms: Option<Stat>,
    p99_ms: Option<Stat>,
    cpu_us_per_req: Option<Stat>,
    errors: u64,
}

/// A metric a client could not give in a run (NaN: wrk's zero percentiles) is left out of
/// its median.
fn stats(samples: &[Sample]) -> Stats {
    let stat = |f: &dyn Fn(&Sample) -> f64| {
        Stat::of(samples.iter().map(f).filter(|v| v.is_finite()).collect())
    };
    Stats {
        rps: stat(&|x| x.rps),
        p50_ms: stat(&|x| x.p50_ms),
        p99_ms: stat(&|x| x.p99_ms),
        cpu_us_per_req: stat(&|x| x.cpu_us_per_req()),
        errors: samples.iter().map(|x| x.errors).sum(),
    }
}

impl Comparison {
    fn index(&self, setting: &str, test: &str, server: &str) -> Option<(usize, usize, usize)> {
        let p = &self.plan;
        Some((
            p.settings.iter().position(|s| s == setting)?,
            p.tests.iter().position(|t| t == test)?,
            p.servers.iter().position(|k| k == server)?,
        ))
    }

    fn median_rps(&self, s: usize, t: usize, k: usize) -> Option<f64> {
        stats(&self.samples[s][t][k]).rps.map(|r| r.median)
    }

    /// Row's median req/s over the baseline's, in the same test and setting.
    fn x_rps(&self, s: usize, t: usize, k: usize) -> Option<f64> {
        let b = self.plan.servers.iter().position(|k| *k == self.baseline)?;
        match (self.median_rps(s, t, k), self.median_rps(s, t, b)) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        }
    }

    fn failed_runs(&self, s: usize, t: usize, k: usize) -> usize {
        let case = format!("{} {}", self.plan.tests[t], self.plan.settings[s]);
        self.failures
            .iter()
            .filter(|f| f.server == self.plan.servers[k] && f.case == case)
            .count()
    }

    /// Whether `goal` was met; `None` when its test, setting or servers were not run.
    pub fn verdict(&self, goal: &Goal) -> Option<Verdict> {
        let (s, t, k) = self.index(&goal.setting, &goal.test, &goal.ours)?;
        let (_, _, p) = self.index(&goal.setting, &goal.test, &goal.peer)?;
        let ratio = match (self.median_rps(s, t, k), self.median_rps(s, t, p)) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        let errors = stats(&self.samples[s][t][k]).errors;
        let failed_runs = self.failed_runs(s, t, k);
        Some(Verdict {
            ratio,
            errors,
            failed_runs,
            met: ratio.is_some_and(|r| r >= goal.min_ratio) && errors == 0 && failed_runs == 0,
        })
    }

    /// Every client error count and failed run, for the exit status.
    pub fn trouble(&self) -> Option<String> {
        let errors: u64 = self
            .samples
            .iter()
            .flatten()
            .flatten()
            .flatten()
            .map(|x| x.errors)
            .sum();
        match (errors, self.failures.len()) {
            (0, 0) => None,
            (errors, failed) => Some(format!(
                "{failed} failed run(s), {errors} client-reported error(s) (listed above)"
            )),
        }
    }

    /// The text: how it was run, the table, the targets, then the failed runs.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.title);
        for note in &self.notes {
            let _ = writeln!(out, "{note}");
        }
        let _ = writeln!(out, "x req/s is to {}\n", self.baseline);
        out.push_str(&self.table());
        if !self.goals.is_empty() {
            out.push('\n');
        }
        for goal in &self.goals {
            let _ = writeln!(out, "{}", self.goal_line(goal));
        }
        failures_text(&mut out, self.failure_rows());
        out
    }

    /// The failed runs as (server, case, round, error).
    fn failure_rows(&self) -> impl ExactSizeIterator<Item = (&str, &str, usize, &str)> {
        self.failures.iter().map(|f| {
            (
                f.server.as_str(),
                f.case.as_str(),
                f.round,
                f.error.as_str(),
            )
        })
    }

    fn goal_line(&self, goal: &Goal) -> String {
        let what = format!(
            "target: {} {} req/s {} / {} >= {:.1}x",
            goal.test, goal.setting, goal.ours, goal.peer, goal.min_ratio
        );
        match self.verdict(goal) {
            None => format!("{what}: not run"),
            Some(v) => {
                let ratio = v.ratio.map_or("-".to_string(), |r| format!("{r:.2}x"));
                let mut line = format!(
                    "{what}, 0 errors: {ratio}, {} errors, {} failed runs: {}",
                    v.errors,
                    v.failed_runs,
                    if v.met { "met" } else { "missed" }
                );
                if v.ratio.is_none() {
                    line.push_str(" (no measurement)");
                }
                line
            }
        }
    }

    /// The table alone.
    pub fn table(&self) -> String {
        let header = [
            "test",
            self.plan.setting_name,
            "server",
            "req/s",
            "p50 ms",
            "p99 ms",
            "CPU us/req",
            "errors",
            "x req/s",
        ];
        let mut rows = Vec::new();
        for (s, setting) in self.plan.settings.iter().enumerate() {
            for (t, test) in self.plan.tests.iter().enumerate() {
                for (k, server) in self.plan.servers.iter().enumerate() {
                    let st = stats(&self.samples[s][t][k]);
                    let text = |v: String| (v, String::new());
                    // Measured, but not this metric ("n/a"), or never measured ("failed").
                    let measured = !self.samples[s][t][k].is_empty();
                    let cell = |stat: Option<Stat>, decimals: usize| match stat {
                        None if measured => text("n/a".to_string()),
                        stat => stat_cell(stat, decimals),
                    };
                    rows.push(vec![
                        text(test.clone()),
                        text(setting.clone()),
                        text(server.clone()),
                        cell(st.rps, 0),
                        cell(st.p50_ms, 3),
                        cell(st.p99_ms, 3),
                        cell(st.cpu_us_per_req, 2),
                        text(st.errors.to_string()),
                        text(
                            self.x_rps(s, t, k)
                                .map_or("-".to_string(), |r| format!("{r:.2}")),
                        ),
                    ]);
                }
            }
        }
        render(&header, 3, &rows)
    }

    /// One JSON object: the settings, a result per (setting, test, server) with its samples,
    /// the targets, the failed runs.
    pub fn json(&self) -> String {
        let mut out = String::from("{\n");
        for (name, value) in &self.settings_json {
            let _ = writeln!(out, "  {}: {value},", string(name));
        }
        let _ = writeln!(out, "  \"baseline\": {},", string(&self.baseline));
        out.push_str("  \"results\": [");
        let mut first = true;
        for (s, setting) in self.plan.settings.iter().enumerate() {
            for (t, test) in self.plan.tests.iter().enumerate() {
                for (k, server) in self.plan.servers.iter().enumerate() {
                    let samples = &self.samples[s][t][k];
                    let st = stats(samples);
                    out.push_str(if first { "\n" } else { ",\n" });
                    first = false;
                    let _ = write!(
                        out,
                        "    {{\"test\": {}, {}: {}, \"server\": {}, \"runs\": {}, \"failed_runs\": {}, \"rps\": {}, \"p50_ms\": {}, \"p99_ms\": {}, \"cpu_us_per_req\": {}, \"errors\": {}, \"x_rps\": {}, \"samples\": [",
                        string(test),
                        string(self.plan.setting_name),
                        string(setting),
                        string(server),
                        samples.len(),
                        self.failed_runs(s, t, k),
                        stat_json(st.rps),
                        stat_json(st.p50_ms),
                        stat_json(st.p99_ms),
                        stat_json(st.cpu_us_per_req),
                        st.errors,
                        self.x_rps(s, t, k).map_or("null".to_string(), num),
                    );
                    for (j, x) in samples.iter().enumerate() {
                        let _ = write!(
                            out,
                            "{}{{\"round\": {}, \"requests\": {}, \"rps\": {}, \"p50_ms\": {}, \"p99_ms\": {}, \"cpu_ns\": {}, \"cpu_us_per_req\": {}, \"errors\": {}}}",
                            if j == 0 { "" } else { ", " },
                            x.round,
                            x.requests,
                            num(x.rps),
                            num(x.p50_ms),
                            num(x.p99_ms),
                            x.cpu_ns,
                            num(x.cpu_us_per_req()),
                            x.errors,
                        );
                    }
                    out.push_str("]}");
                }
            }
        }
        out.push_str(if first { "],\n" } else { "\n  ],\n" });
        out.push_str("  \"targets\": [");
        for (i, goal) in self.goals.iter().enumerate() {
            let v = self.verdict(goal);
            let _ = write!(
                out,
                "{}\n    {{\"test\": {}, {}: {}, \"ours\": {}, \"peer\": {}, \"min_ratio\": {}, \"ratio\": {}, \"errors\": {}, \"failed_runs\": {}, \"met\": {}}}",
                if i == 0 { "" } else { "," },
                string(&goal.test),
                string(self.plan.setting_name),
                string(&goal.setting),
                string(&goal.ours),
                string(&goal.peer),
                num(goal.min_ratio),
                v.as_ref().and_then(|v| v.ratio).map_or("null".to_string(), num),
                v.as_ref().map_or("null".to_string(), |v| v.errors.to_string()),
                v.as_ref().map_or("null".to_string(), |v| v.failed_runs.to_string()),
                v.as_ref().map_or("null".to_string(), |v| v.met.to_string()),
            );
        }
        out.push_str(if self.goals.is_empty() {
            "],\n"
        } else {
            "\n  ],\n"
        });
        failures_json(&mut out, "case", self.failure_rows());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(round: usize, rps: f64, errors: u64) -> Sample {
        Sample {
            round,
            requests: 1000,
            rps,
            p50_ms: 0.5,
            p99_ms: 1.5,
            cpu_ns: 2_000_000,
            errors,
        }
    }

    fn comparison() -> Comparison {
        let plan = Plan {
            setting_name: "pipeline",
            settings: vec!["-P 16".into()],
            tests: vec!["SET".into(), "GET".into()],
            servers: vec!["ours".into(), "peer".into()],
        };
        let bar = ProgressBar::hidden();
        let (samples, failures) = collect(&plan, 3, &bar, |round, _, server| {
            if server == "ours" && round == 2 {
                // GET fails in round 2; SET runs with an error count.
                return Ok(vec![Ok(sample(round, 1200.0, 1)), Err("boom".to_string())]);
            }
            let rps = if server == "ours" { 1100.0 } else { 1000.0 };
            Ok(vec![
                Ok(sample(round, rps, 0)),
                Ok(sample(round, rps + round as f64, 0)),
            ])
        });
        assert_eq!(bar.position(), 6);
        Comparison {
            title: "title".into(),
            notes: vec![],
            settings_json: vec![("rounds".into(), "3".into())],
            plan,
            samples,
            failures,
            baseline: "peer".into(),
            goals: vec![
                Goal {
                    test: "SET".into(),
                    setting: "-P 16".into(),
                    ours: "ours".into(),
                    peer: "peer".into(),
                    min_ratio: 1.0,
                },
                Goal {
                    test: "GET".into(),
                    setting: "-P 16".into(),
                    ours: "peer".into(),
                    peer: "ours".into(),
                    min_ratio: 0.5,
                },
            ],
        }
    }

    #[test]
    fn goals_need_the_ratio_and_no_errors() {
        let c = comparison();
        let set = c.verdict(&c.goals[0]).unwrap();
        assert_eq!(set.ratio, Some(1.1));
        assert_eq!(set.errors, 1);
        assert!(!set.met, "an error misses the target");
        let get = c.verdict(&c.goals[1]).unwrap();
        assert_eq!((get.failed_runs, get.met), (0, true));
        assert_eq!(c.failures.len(), 1);
        assert_eq!(c.failures[0].case, "GET -P 16");
        assert!(c
            .trouble()
            .unwrap()
            .contains("1 failed run(s), 1 client-reported"));
    }

    #[test]
    fn text_and_json() {
        let c = comparison();
        let text = c.text();
        assert!(text.contains("ours / GET -P 16 / round 2: boom"), "{text}");
        assert!(text.contains("target: SET -P 16 req/s ours / peer >= 1.0x, 0 errors: 1.10x, 1 errors, 0 failed runs: missed"), "{text}");
        let table = c.table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 5, "{table}");
        assert!(lines[1].starts_with("SET   -P 16     ours"), "{table}");
        assert!(lines[1].contains("1100 (1100–1200)"), "{table}");
        assert!(lines[1].trim_end().ends_with("1.10"), "{table}");
        let json = c.json();
        for field in [
            "\"rounds\": 3,",
            "\"test\": \"GET\", \"pipeline\": \"-P 16\", \"server\": \"ours\", \"runs\": 2, \"failed_runs\": 1",
            "\"met\": false",
            "\"case\": \"GET -P 16\", \"round\": 2, \"error\": \"boom\"",
        ] {
            assert!(json.contains(field), "{field} not in {json}");
        }
    }
}
