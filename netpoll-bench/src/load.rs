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
    /// The first failure, with the OS error (`connect 127.0.0.1:9: Connection refused (os
    /// error 111)`, `127.0.0.1:8080: read: ...`, `... echoed bytes differ`).
    pub first_error: Option<String>,
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
    first_error: Option<String>,
    measuring: bool,
}

/// Connects to the first of `addrs` that accepts, in order; the error names the last address
/// tried and carries the OS error.
async fn connect_any(addrs: &[SocketAddr]) -> Result<(tokio::net::TcpStream, SocketAddr), String> {
    let mut last = String::from("connect: no address to connect to");
    for &addr in addrs {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(stream) => return Ok((stream, addr)),
            Err(e) => last = format!("connect {addr}: {e}"),
        }
    }
    Err(last)
}

/// Runs the load against the first of `addrs` that accepts a connection (the others are
/// tried in order, as for a host name that resolves to `::1` and `127.0.0.1`).
/// `on_measure(start)` is called when the measured window starts (`true`) and ends (`false`),
/// so the caller can sample the server's CPU at those moments. If no connection could be
/// made at all, returns at once, without the warm-up or the measured window.
pub fn run(addrs: &[SocketAddr], spec: &LoadSpec, mut on_measure: impl FnMut(bool)) -> LoadResult {
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
            first_error: None,
            measuring: false,
        }));
        let stop = Rc::new(RefCell::new(false));
        let mut connect_failures = 0;
        let mut first_error = None;
        let mut tasks = Vec::new();
        // Once one address has worked, the other connections go to it.
        let mut chosen: Option<SocketAddr> = None;
        for c in 0..spec.conns {
            let result = match chosen {
                Some(addr) => tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(|e| format!("connect {addr}: {e}")),
                None => connect_any(addrs).await.map(|(stream, addr)| {
                    chosen = Some(addr);
                    stream
                }),
            };
            let stream = match result {
                Ok(s) => s,
                Err(e) => {
                    connect_failures += 1;
                    first_error.get_or_insert(e);
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let (shared, stop, spec) = (shared.clone(), stop.clone(), spec.clone());
            tasks.push(tokio::task::spawn_local(async move {
                client(stream, c, &spec, &shared, &stop).await;
            }));
        }
        if tasks.is_empty() {
            return LoadResult {
                connect_failures,
                first_error,
                ..LoadResult::default()
            };
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
            first_error: first_error.or_else(|| s.first_error.clone()),
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
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "the server".to_string(), |a| a.to_string());
    while !*stop.borrow() {
        for (i, b) in out.iter_mut().enumerate() {
            *b = (i as u64 ^ round ^ id as u64) as u8;
        }
        let started = Instant::now();
        let outcome = match tokio::time::timeout(Duration::from_secs(5), async {
            stream
                .write_all(&out)
                .await
                .map_err(|e| format!("{peer}: write: {e}"))?;
            stream
                .read_exact(&mut back)
                .await
                .map_err(|e| format!("{peer}: read: {e}"))?;
            Ok::<(), String>(())
        })
        .await
        {
            Ok(Ok(())) if out == back => Ok(()),
            Ok(Ok(())) => Err(format!("{peer}: the echoed bytes differ from those sent")),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("{peer}: no echo within 5 s")),
        };
        let micros = started.elapsed().as_micros().max(1) as u64;
        let mut s = shared.borrow_mut();
        if let Err(e) = outcome {
            s.errors += 1;
            s.first_error.get_or_insert(e);
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
