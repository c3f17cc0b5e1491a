//! The handler pool: a bounded set of threads that run connection handlers off the pollers.
//!
//! Threads start on demand up to `max_workers` and leave after `keep_alive` without work, so an
//! idle server holds few threads. The queue needs no bound of its own: each connection has at
//! most one task queued or running, so it holds at most one entry per connection.

use std::collections::VecDeque;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

type Job = Box<dyn FnOnce() + Send>;

/// A bounded thread pool for handlers. Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct HandlerPool {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    work: Condvar,
    max_workers: usize,
    keep_alive: Duration,
    stack_size: usize,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Job>,
    workers: usize,
    idle: usize,
    shutdown: bool,
}

impl HandlerPool {
    /// The default bound on threads: handlers may block (waiting for the rest of a frame, or on
    /// their own I/O), so the pool is far wider than the core count.
    pub const DEFAULT_MAX_WORKERS: usize = 256;
    /// How long an idle worker waits for work before it exits.
    pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(10);
    /// Handler threads' stack size: 256 KiB (Rust's default is 2 MiB).
    pub const DEFAULT_STACK_SIZE: usize = 256 * 1024;

    /// A pool of at most `max_workers` threads (at least 1).
    pub fn new(max_workers: usize) -> HandlerPool {
        HandlerPool::with_options(
            max_workers,
            HandlerPool::DEFAULT_KEEP_ALIVE,
            HandlerPool::DEFAULT_STACK_SIZE,
        )
    }

    /// A pool with every knob: thread bound, idle time before a thread exits, stack size.
    pub fn with_options(
        max_workers: usize,
        keep_alive: Duration,
        stack_size: usize,
    ) -> HandlerPool {
        HandlerPool {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                work: Condvar::new(),
                max_workers: max_workers.max(1),
                keep_alive,
                stack_size,
            }),
        }
    }

    /// Queues `job`; starts a thread for it if none is idle and the bound allows.
    ///
    /// A panicking job is caught (the panic hook has reported it) so the thread lives on; jobs
    /// that must react to their own panic catch it themselves.
    pub fn spawn(&self, job: impl FnOnce() + Send + 'static) -> io::Result<()> {
        let mut state = self.shared.lock();
        if state.shutdown {
            return Err(io::Error::other("handler pool is shut down"));
        }
        state.queue.push_back(Box::new(job));
        if state.idle > state.queue.len() - 1 {
            drop(state);
            self.shared.work.notify_one();
            return Ok(());
        }
        if state.workers < self.shared.max_workers {
            state.workers += 1;
            drop(state);
            let shared = Arc::clone(&self.shared);
            let started = thread::Builder::new()
                .name("netpoll-handler".into())
                .stack_size(self.shared.stack_size)
                .spawn(move || shared.work_loop());
            if let Err(e) = started {
                // The job stays queued for the existing workers; with none, report it.
                let mut state = self.shared.lock();
                state.workers -= 1;
                if state.workers == 0 {
                    state.queue.pop_back();
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Threads alive now.
    pub fn workers(&self) -> usize {
        self.shared.lock().workers
    }

    /// Stops taking jobs; queued jobs still run, then the threads exit.
    pub fn shutdown(&self) {
        self.shared.lock().shutdown = true;
        self.shared.work.notify_all();
    }
}

impl Default for HandlerPool {
    fn default() -> HandlerPool {
        HandlerPool::new(HandlerPool::DEFAULT_MAX_WORKERS)
    }
}

impl std::fmt::Debug for HandlerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("HandlerPool")
            .field("workers", &state.workers)
            .field("idle", &state.idle)
            .field("queued", &state.queue.len())
            .finish()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Jobs never run under this lock, so a poisoned lock guards consistent data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn work_loop(&self) {
        let mut state = self.lock();
        loop {
            if let Some(job) = state.queue.pop_front() {
                drop(state);
                let _ = panic::catch_unwind(AssertUnwindSafe(job));
                state = self.lock();
                continue;
            }
            if state.shutdown {
                break;
            }
            state.idle += 1;
            let (next, timeout) = self
                .work
                .wait_timeout(state, self.keep_alive)
                .unwrap_or_else(|e| e.into_inner());
            state = next;
            state.idle -= 1;
            if timeout.timed_out() && state.queue.is_empty() {
                break;
            }
        }
        state.workers -= 1;
    }
}

/// The process-wide handler pool ([`HandlerPool::DEFAULT_MAX_WORKERS`] threads at most), used
/// by servers and dialed connections unless given their own.
pub fn default_pool() -> HandlerPool {
    static POOL: std::sync::OnceLock<HandlerPool> = std::sync::OnceLock::new();
    POOL.get_or_init(HandlerPool::default).clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;
    use std::sync::Barrier;

    #[test]
    fn runs_jobs_and_never_exceeds_its_bound() {
        let pool = HandlerPool::new(3);
        let gate = Arc::new(Barrier::new(4));
        let (tx, rx) = channel();
        for i in 0..6 {
            let (gate, tx) = (gate.clone(), tx.clone());
            pool.spawn(move || {
                if i < 3 {
                    gate.wait();
                }
                tx.send(i).unwrap();
            })
            .unwrap();
        }
        assert!(pool.workers() <= 3);
        gate.wait();
        let mut got: Vec<i32> = (0..6)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        got.sort();
        assert_eq!(got, vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(pool.workers(), 3);
    }

    #[test]
    fn a_panicking_job_does_not_kill_the_pool() {
        let pool = HandlerPool::new(1);
        pool.spawn(|| panic!("job bug (expected by this test)"))
            .unwrap();
        let (tx, rx) = channel();
        pool.spawn(move || tx.send(()).unwrap()).unwrap();
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
    }

    #[test]
    fn idle_workers_leave_after_keep_alive() {
        let pool = HandlerPool::with_options(2, Duration::from_millis(20), 64 * 1024);
        let (tx, rx) = channel();
        pool.spawn(move || tx.send(()).unwrap()).unwrap();
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        // Bounded wait on the pool's own state: the worker leaves after its keep-alive.
        while pool.workers() > 0 && std::time::Instant::now() < deadline {
            thread::yield_now();
        }
        assert_eq!(pool.workers(), 0);
    }

    #[test]
    fn shutdown_refuses_new_jobs() {
        let pool = HandlerPool::new(1);
        pool.shutdown();
        assert!(pool.spawn(|| {}).is_err());
    }
}
