//! Helpers of the fault-injection tests (`tests/faults_*.rs`): the three reactor executors and
//! the three Go-net drivers as parameters, fd counting with a bounded wait for the baseline,
//! and re-running the test binary as a child in a "client" role.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use netpoll::net::{self, TcpConn, TcpListener};
use netpoll::{EventLoop, EventLoopBuilder, HandlerPool};

use super::LIMIT;

/// One fault test at a time per binary: they count the process's fds.
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Open descriptors of this process (the directory's own fd included, every time alike).
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// The fd count to come back to: taken once the global pollers (an epoll fd and an eventfd
/// each, created at first use) exist.
pub fn baseline() -> usize {
    drop(net::listen_tcp("tcp", "127.0.0.1:0").unwrap());
    netpoll::go(|| ()).join().unwrap();
    fd_count()
}

/// Waits (bounded by LIMIT) until the fd count is back to `baseline`: closes complete
/// asynchronously on the pollers. Returns the time it took.
pub fn wait_fds(baseline: usize, what: &str) -> Duration {
    let start = Instant::now();
    loop {
        let now = fd_count();
        if now <= baseline {
            return start.elapsed();
        }
        if start.elapsed() >= LIMIT {
            let open: Vec<String> = std::fs::read_dir("/proc/self/fd")
                .unwrap()
                .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .map(|p| p.display().to_string())
                .collect();
            panic!("{what}: {now} fds open, baseline {baseline}: leaked; open: {open:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits (bounded by LIMIT) until `cond` holds; polls every few milliseconds.
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < LIMIT, "{what}: not within {LIMIT:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// This process's resident set, in bytes.
pub fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// The reactor face's handler executors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handlers {
    Coroutine,
    Pool,
    Inline,
}

pub const HANDLERS: [Handlers; 3] = [Handlers::Coroutine, Handlers::Pool, Handlers::Inline];

impl Handlers {
    pub fn builder(self) -> EventLoopBuilder<()> {
        let builder = EventLoop::builder();
        match self {
            Handlers::Coroutine => builder.coroutine_handlers(),
            Handlers::Pool => builder.handler_pool(HandlerPool::new(64)),
            Handlers::Inline => builder.inline_handlers(),
        }
    }
}

/// The Go-net face's drivers: plain threads, coroutines (`netpoll::go`), async tasks
/// (`netpoll::spawn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    Threads,
    Coroutines,
    Tasks,
}

pub const DRIVERS: [Driver; 3] = [Driver::Threads, Driver::Coroutines, Driver::Tasks];

pub type SyncHandler = Arc<dyn Fn(TcpConn) -> io::Result<u64> + Send + Sync>;
pub type AsyncHandler =
    Arc<dyn Fn(TcpConn) -> Pin<Box<dyn Future<Output = io::Result<u64>> + Send>> + Send + Sync>;

/// A Go-net server: an accept loop and one handler per connection, both run by `driver`
/// (threads and coroutines run `sync`, tasks run `future`). Each handler's result arrives on
/// `results`.
pub struct NetServer {
    pub addr: std::net::SocketAddr,
    pub listener: Arc<TcpListener>,
    pub results: Receiver<io::Result<u64>>,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicUsize>,
    accept_done: Receiver<io::Error>,
}

impl NetServer {
    pub fn start(driver: Driver, sync: SyncHandler, future: AsyncHandler) -> NetServer {
        let listener = Arc::new(net::listen_tcp("tcp", "127.0.0.1:0").unwrap());
        NetServer::start_on(driver, listener, sync, future)
    }

    pub fn start_on(
        driver: Driver,
        listener: Arc<TcpListener>,
        sync: SyncHandler,
        future: AsyncHandler,
    ) -> NetServer {
        let addr = listener.local_addr();
        let (results_tx, results) = channel();
        let (done_tx, accept_done) = channel();
        let l = listener.clone();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        match driver {
            Driver::Threads => {
                std::thread::spawn(move || {
                    accept_sync(&l, &count, results_tx, done_tx, sync, false)
                });
            }
            Driver::Coroutines => {
                netpoll::go(move || accept_sync(&l, &count, results_tx, done_tx, sync, true));
            }
            Driver::Tasks => {
                netpoll::spawn(async move {
                    loop {
                        match l.accept_async().await {
                            Ok((conn, _)) => {
                                count.fetch_add(1, Ordering::SeqCst);
                                let results = results_tx.clone();
                                let run = future(conn);
                                netpoll::spawn(async move {
                                    let _ = results.send(run.await);
                                });
                            }
                            Err(e) if net::is_closed(&e) => {
                                let _ = done_tx.send(e);
                                return;
                            }
                            Err(_) => {} // ECONNABORTED and the like: keep accepting
                        }
                    }
                });
            }
        }
        NetServer {
            addr,
            listener,
            results,
            accepted,
            accept_done,
        }
    }

    /// The next handler result, bounded by LIMIT.
    pub fn result(&self) -> io::Result<u64> {
        self.results
            .recv_timeout(LIMIT)
            .expect("a connection handler did not finish")
    }

    /// Results of every accepted connection's handler once the server stopped (bounded).
    pub fn all_results(&self) -> Vec<io::Result<u64>> {
        (0..self.accepted.load(Ordering::SeqCst))
            .map(|_| self.result())
            .collect()
    }

    /// Closes the listener and waits for the accept loop to end with the closed error.
    pub fn stop(&self) {
        self.listener.close().unwrap();
        let e = self
            .accept_done
            .recv_timeout(LIMIT)
            .expect("the accept loop did not end at close");
        assert!(net::is_closed(&e), "{e}");
    }

    pub fn connect(&self) -> std::net::TcpStream {
        let stream = std::net::TcpStream::connect(self.addr).unwrap();
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        stream.set_write_timeout(Some(LIMIT)).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
    }
}

fn accept_sync(
    listener: &TcpListener,
    accepted: &AtomicUsize,
    results: Sender<io::Result<u64>>,
    done: Sender<io::Error>,
    handler: SyncHandler,
    coroutines: bool,
) {
    loop {
        match listener.accept() {
            Ok((conn, _)) => {
                accepted.fetch_add(1, Ordering::SeqCst);
                let results = results.clone();
                let handler = handler.clone();
                let run = move || {
                    let _ = results.send(handler(conn));
                };
                if coroutines {
                    netpoll::go(run);
                } else {
                    std::thread::spawn(run);
                }
            }
            Err(e) if net::is_closed(&e) => {
                let _ = done.send(e);
                return;
            }
            Err(_) => {} // ECONNABORTED and the like: keep accepting
        }
    }
}

/// Sets SO_LINGER 0 and drops the stream: the kernel sends RST instead of FIN.
pub fn reset(stream: std::net::TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(stream);
}

/// Re-runs this test binary as a child running only `test` (a `#[test]` that does nothing
/// unless `env` is set), with `env=value`; stdout piped.
pub fn spawn_child(test: &str, env: &str, value: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(env, value)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// A Go-net echo handler (threads, coroutines): echoes until end of stream, then returns the
/// byte count; every call bounded by a deadline of LIMIT.
pub fn echo_sync() -> SyncHandler {
    Arc::new(|conn: TcpConn| {
        use std::io::{Read, Write};
        conn.set_deadline(Some(Instant::now() + LIMIT))?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        loop {
            let n = (&conn).read(&mut buf)?;
            if n == 0 {
                return Ok(total);
            }
            (&conn).write_all(&buf[..n])?;
            total += n as u64;
        }
    })
}

/// [`echo_sync`] as a future, for tasks.
pub fn echo_async() -> AsyncHandler {
    Arc::new(|mut conn: TcpConn| {
        Box::pin(async move {
            use futures::io::{AsyncReadExt, AsyncWriteExt};
            conn.set_deadline(Some(Instant::now() + LIMIT))?;
            let mut buf = vec![0u8; 64 * 1024];
            let mut total = 0u64;
            loop {
                let n = conn.read(&mut buf).await?;
                if n == 0 {
                    return Ok(total);
                }
                conn.write_all(&buf[..n]).await?;
                total += n as u64;
            }
        })
    })
}

/// Sends `data` from a second thread while reading the echo, half-closes, reads to EOF;
/// asserts every byte came back in order.
pub fn checked_echo(addr: std::net::SocketAddr, data: Arc<Vec<u8>>) {
    use std::io::{Read, Write};
    let client = std::net::TcpStream::connect(addr).unwrap();
    client.set_read_timeout(Some(LIMIT)).unwrap();
    client.set_write_timeout(Some(LIMIT)).unwrap();
    let mut writer = client.try_clone().unwrap();
    let sent = data.clone();
    let sending = std::thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        writer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut got = Vec::with_capacity(data.len());
    (&client).read_to_end(&mut got).unwrap();
    sending.join().unwrap();
    assert_eq!(got.len(), data.len(), "echo lost bytes");
    assert!(got == *data, "echo changed bytes");
}
