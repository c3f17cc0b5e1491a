//! The load generator: closed-loop echo clients on a current-thread tokio runtime, every echoed
//! byte verified.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One load run's shape.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    pub conns: usize,
    pub size: usize,
    pub pipeline: usize,
    pub warmup: Duration,
    pub secs: Duration,
}

/// What a load run measured (over the measured window only).
#[derive(Clone, Debug, Default)]
pub struct LoadResult {
    pub requests: u64,
    pub elapsed: Duration,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub errors: u64,
    pub connect_failures: u64,
}

impl LoadResult {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

struct Shared {
    histogram: Histogram<u64>,
    requests: u64,
    errors: u64,
    measuring: bool,
}

/// Runs the load against `addr`. `on_measure(start)` is called when the measured window starts
/// (`true`) and ends (`false`), so the caller can sample the server's CPU at those moments.
pub fn run(addr: SocketAddr, spec: &LoadSpec, mut on_measure: impl FnMut(bool)) -> LoadResult {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime for the load");
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let shared = Rc::new(RefCell::new(Shared {
            histogram: Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
            requests: 0,
            errors: 0,
            measuring: false,
        }));
        let stop = Rc::new(RefCell::new(false));
        let mut connect_failures = 0;
        let mut tasks = Vec::new();
        for c in 0..spec.conns {
            let stream = match tokio::net::TcpStream::connect(addr).await {
                Ok(s) => s,
                Err(_) => {
                    connect_failures += 1;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let (shared, stop, spec) = (shared.clone(), stop.clone(), spec.clone());
            tasks.push(tokio::task::spawn_local(async move {
                client(stream, c, &spec, &shared, &stop).await;
            }));
        }
        tokio::time::sleep(spec.warmup).await;
        {
            let mut s = shared.borrow_mut();
            s.measuring = true;
        }
        on_measure(true);
        let start = Instant::now();
        tokio::time::sleep(spec.secs).await;
        let elapsed = start.elapsed();
        shared.borrow_mut().measuring = false;
        on_measure(false);
        *stop.borrow_mut() = true;
        for task in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        let s = shared.borrow();
        let q = |p: f64| s.histogram.value_at_quantile(p) as f64;
        LoadResult {
            requests: s.requests,
            elapsed,
            p50_us: q(0.50),
            p99_us: q(0.99),
            p999_us: q(0.999),
            errors: s.errors,
            connect_failures,
        }
    })
}

async fn client(
    mut stream: tokio::net::TcpStream,
    id: usize,
    spec: &LoadSpec,
    shared: &RefCell<Shared>,
    stop: &RefCell<bool>,
) {
    let batch = spec.size * spec.pipeline;
    let mut out = vec![0u8; batch];
    let mut back = vec![0u8; batch];
    let mut round = 0u64;
    while !*stop.borrow() {
        for (i, b) in out.iter_mut().enumerate() {
            *b = (i as u64 ^ round ^ id as u64) as u8;
        }
        let started = Instant::now();
        let ok = match tokio::time::timeout(Duration::from_secs(5), async {
            stream.write_all(&out).await?;
            stream.read_exact(&mut back).await?;
            Ok::<(), std::io::Error>(())
        })
        .await
        {
            Ok(Ok(())) => out == back,
            _ => false,
        };
        let micros = started.elapsed().as_micros().max(1) as u64;
        let mut s = shared.borrow_mut();
        if !ok {
            s.errors += 1;
            return;
        }
        if s.measuring {
            s.requests += spec.pipeline as u64;
            // One sample per request of the batch: each waited the batch's round trip.
            let _ = s.histogram.record_n(micros, spec.pipeline as u64);
        }
        round += 1;
    }
}
