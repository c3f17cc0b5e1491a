//! A hyper 1.x HTTP/1.1 server on netpoll tasks (no tokio): keep-alive, "Hello, World!".
//!
//! ```sh
//! cargo run --release --features hyper --example hello_hyper -- --addr 127.0.0.1:8080 [--loops N]
//! curl http://127.0.0.1:8080/
//! ```
//! Prints `listening on ADDR` once ready. On SIGINT or SIGTERM it stops accepting, asks every
//! connection to finish its request in flight and close (hyper's graceful shutdown), waits for
//! them (5 s at most) and exits 0.
//!
//! One accept loop per poller, each a task on its poller (`netpoll::task::spawn_on`) with a
//! `SO_REUSEPORT` listener of its own, so the kernel spreads the connections over the pollers;
//! each connection is a task (`netpoll::spawn`) on the poller its socket registered on (a
//! connection accepted in a task registers on that task's poller), so each of its readiness
//! events is a local queue push. `--loops N` runs on N pollers of its own
//! (`PollManager::new(N)`), else on netpoll's global pollers.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::io;
use std::num::NonZeroUsize;
use std::pin::pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use clap::Parser;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use netpoll::net::{self, ListenConfig, TcpConn, TcpListener};
use netpoll::poll::PollManager;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// A hyper HTTP/1.1 server on netpoll tasks; stops gracefully on SIGINT/SIGTERM.
#[derive(Parser)]
#[command(name = "hello_hyper")]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
    addr: String,
    /// Run on N pollers of its own instead of netpoll's global ones.
    #[arg(long, value_name = "N")]
    loops: Option<NonZeroUsize>,
}

/// How long in-flight connections get to finish after the signal.
const DRAIN: Duration = Duration::from_secs(5);

fn main() -> io::Result<()> {
    let Args { addr, loops } = Args::parse();
    let own = loops.map(|n| PollManager::new(n.get())).transpose()?;
    let pollers = match &own {
        Some(manager) => manager.pollers(),
        None => PollManager::global()?.pollers(),
    };

    // One listener per poller, made inside a task of that poller (so it registers there).
    let mut listeners = Vec::with_capacity(pollers.len());
    let mut bind = addr;
    for poller in &pollers {
        let config = ListenConfig::new().reuse_port(pollers.len() > 1);
        let at = bind.clone();
        let listener =
            netpoll::task::spawn_on(poller, async move { config.listen_tcp("tcp", at.as_str()) })?
                .join()
                .map_err(io::Error::from)??;
        // Port 0 picked a port: the other listeners share it.
        bind = listener.local_addr().to_string();
        listeners.push(Arc::new(listener));
    }
    println!("listening on {bind}");

    let shutdown = Shutdown::new();
    let accepts = listeners
        .iter()
        .zip(&pollers)
        .map(|(listener, poller)| {
            netpoll::task::spawn_on(poller, accept_loop(listener.clone(), shutdown.clone()))
        })
        .collect::<io::Result<Vec<_>>>()?;

    // Wait for SIGINT or SIGTERM, then: stop accepting, drain, exit.
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    signals.forever().next();
    for listener in &listeners {
        let _ = listener.close(); // each accept loop ends with the closed error
    }
    for accept in accepts {
        if let Ok(Err(e)) = accept.join() {
            eprintln!("hello_hyper: accept loop: {e}");
        }
    }
    let left = shutdown.trigger_and_wait(Instant::now() + DRAIN);
    if left > 0 {
        eprintln!("hello_hyper: {left} connection(s) still open after {DRAIN:?}; exiting");
    }
    drop(own);
    Ok(())
}

async fn hello(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(
        b"Hello, World!",
    ))))
}

/// Accepts until the listener is closed; one task per connection, on this poller.
async fn accept_loop(listener: Arc<TcpListener>, shutdown: Arc<Shutdown>) -> io::Result<()> {
    loop {
        let conn = match listener.accept_async().await {
            Ok((conn, _)) => conn,
            Err(e) if net::is_closed(&e) => return Ok(()),
            Err(e) => {
                // Out of fds or memory, say: back off a little rather than spin.
                eprintln!("hello_hyper: accept: {e}");
                netpoll::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let guard = shutdown.enter();
        netpoll::spawn(serve(conn, guard));
    }
}

/// Serves one connection with hyper until the peer closes it or the shutdown has it finish.
async fn serve(conn: TcpConn, guard: Guard) {
    let connection = http1::Builder::new()
        .timer(netpoll::hyper::Timer)
        .serve_connection(conn, service_fn(hello));
    let mut connection = pin!(connection);
    let mut stop = pin!(guard.stopped());
    let mut stopping = false;
    let result = poll_fn(|cx| {
        if !stopping && stop.as_mut().poll(cx).is_ready() {
            // Finish the request in flight (if any), then close instead of keeping alive.
            connection.as_mut().graceful_shutdown();
            stopping = true;
        }
        connection.as_mut().poll(cx)
    })
    .await;
    if let Err(e) = result {
        // A peer that resets or sends garbage ends its own connection only.
        if !e.is_incomplete_message() {
            eprintln!("hello_hyper: connection: {e}");
        }
    }
}

/// The shutdown signal and the count of open connections.
struct Shutdown {
    state: Mutex<State>,
    drained: Condvar,
}

#[derive(Default)]
struct State {
    stopping: bool,
    /// The open connections, by id, with the waker of the task waiting for the shutdown.
    open: HashMap<u64, Option<Waker>>,
    next_id: u64,
}

impl Shutdown {
    fn new() -> Arc<Shutdown> {
        Arc::new(Shutdown {
            state: Mutex::default(),
            drained: Condvar::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one open connection until the guard drops.
    fn enter(self: &Arc<Self>) -> Guard {
        let mut state = self.lock();
        let id = state.next_id;
        state.next_id += 1;
        state.open.insert(id, None);
        Guard {
            shutdown: self.clone(),
            id,
        }
    }

    /// Tells every connection to finish, then waits until none is open or `deadline` passes;
    /// returns how many are still open.
    fn trigger_and_wait(&self, deadline: Instant) -> usize {
        let wakers: Vec<Waker> = {
            let mut state = self.lock();
            state.stopping = true;
            state.open.values_mut().filter_map(Option::take).collect()
        };
        for waker in wakers {
            waker.wake();
        }
        let mut state = self.lock();
        while !state.open.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = match self.drained.wait_timeout(state, left) {
                Ok((state, _)) => state,
                Err(e) => e.into_inner().0,
            };
        }
        state.open.len()
    }
}

/// One open connection, counted in its [`Shutdown`].
struct Guard {
    shutdown: Arc<Shutdown>,
    id: u64,
}

impl Guard {
    /// Completes once the shutdown has begun.
    fn stopped(&self) -> impl Future<Output = ()> + '_ {
        poll_fn(|cx| {
            let mut state = self.shutdown.lock();
            if state.stopping {
                return Poll::Ready(());
            }
            if let Some(waker) = state.open.get_mut(&self.id) {
                if waker.as_ref().is_none_or(|w| !w.will_wake(cx.waker())) {
                    *waker = Some(cx.waker().clone());
                }
            }
            Poll::Pending
        })
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut state = self.shutdown.lock();
        state.open.remove(&self.id);
        if state.open.is_empty() {
            self.shutdown.drained.notify_all();
        }
    }
}
