//! Helpers of the fault-injection tests (`tests/faults_*.rs`): the three reactor executors and
//! the three Go-net drivers as parameters, fd counting with a bounded wait for the baseline,
//! and re-running the test binary as a child in a "client" role.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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
        self.builder_with_pool(64)
    }

    /// With a pool of `workers` threads (Pool): a handler waiting for a slow peer holds one,
    /// so a test with many such peers needs a pool wider than their number.
    pub fn builder_with_pool(self, workers: usize) -> EventLoopBuilder<()> {
        let builder = EventLoop::builder();
        match self {
            Handlers::Coroutine => builder.coroutine_handlers(),
            Handlers::Pool => builder.handler_pool(HandlerPool::new(workers)),
            Handlers::Inline => builder.inline_handlers(),
        }
    }

    /// The name a child process is given its role by.
    pub fn parse(name: &str) -> Option<Handlers> {
        HANDLERS.into_iter().find(|h| format!("{h:?}") == name)
    }
}

/// Counts a reactor server's connection ends: close callbacks and `on_disconnect` calls.
#[derive(Clone, Default)]
pub struct Ends {
    closes: Arc<AtomicUsize>,
    disconnects: Arc<AtomicUsize>,
}

impl Ends {
    /// For `on_prepare`: counts `conn`'s close callback.
    pub fn watch(&self, conn: &netpoll::Connection) {
        let closes = self.closes.clone();
        conn.add_close_callback(move |_| {
            closes.fetch_add(1, Ordering::SeqCst);
        });
    }

    /// An `on_disconnect` callback that counts.
    pub fn on_disconnect<C>(&self) -> impl Fn(&C, &netpoll::Connection) + Send + Sync + 'static {
        let disconnects = self.disconnects.clone();
        move |_, _| {
            disconnects.fetch_add(1, Ordering::SeqCst);
        }
    }

    pub fn closes(&self) -> usize {
        self.closes.load(Ordering::SeqCst)
    }

    pub fn disconnects(&self) -> usize {
        self.disconnects.load(Ordering::SeqCst)
    }

    /// Waits (bounded) for `n` closes and no connection left, stops the server, waits for the
    /// fd count to return to `baseline`; then asserts `n` closes and `disconnects` calls of
    /// `on_disconnect`, each connection's end counted once.
    pub fn finish<C: Send + Sync + 'static>(
        &self,
        mut server: super::TestServer<C>,
        n: usize,
        disconnects: usize,
        baseline: usize,
        what: &str,
    ) {
        wait_for(&format!("{what}: close callbacks"), || self.closes() >= n);
        wait_for(&format!("{what}: connections closed"), || {
            server.server.connections() == 0
        });
        server.stop().unwrap();
        drop(server);
        wait_fds(baseline, what);
        assert_eq!(self.closes(), n, "{what}: close callbacks");
        assert_eq!(self.disconnects(), disconnects, "{what}: on_disconnect");
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

impl Driver {
    /// The name a child process is given its role by.
    pub fn parse(name: &str) -> Option<Driver> {
        DRIVERS.into_iter().find(|d| format!("{d:?}") == name)
    }
}

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
                    // There is no async `incoming()`: back off on a resource shortage as it
                    // does (5 ms, doubling up to 1 s), as Go's http.Server does.
                    let mut backoff = None;
                    loop {
                        match l.accept_async().await {
                            Ok((conn, _)) => {
                                backoff = None;
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
                            Err(e) if is_resource_shortage(&e) => {
                                let delay = backoff
                                    .map_or(Duration::from_millis(5), |d: Duration| {
                                        (d * 2).min(Duration::from_secs(1))
                                    });
                                backoff = Some(delay);
                                netpoll::time::sleep(delay).await;
                            }
                            Err(_) => {} // a reset before accept and the like: keep accepting
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
    // `incoming()` backs off on EMFILE and the like instead of spinning on them.
    for conn in listener.incoming() {
        match conn {
            Ok(conn) => {
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
            Err(_) => {} // a deadline and the like: keep accepting
        }
    }
}

/// `EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM` (what `incoming()` backs off on), through the
/// Go-net face's error context.
pub fn is_resource_shortage(e: &io::Error) -> bool {
    let cause = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<net::OpError>())
        .map_or(e, |op| op.cause());
    matches!(
        cause.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
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

/// A child process of [`spawn_child`], killed (SIGKILL) and reaped on drop, so a failing test
/// leaves no child behind. Its stdout lines arrive on `lines`.
pub struct ChildProcess {
    pub child: Child,
    pub lines: Receiver<String>,
}

impl ChildProcess {
    pub fn spawn(test: &str, env: &str, value: &str) -> ChildProcess {
        ChildProcess::from_child(spawn_child(test, env, value))
    }

    pub fn from_child(mut child: Child) -> ChildProcess {
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        ChildProcess { child, lines }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What follows `what` on the next line that has it (the harness prints "test NAME ... "
    /// on the same line as the child's first output), bounded by LIMIT.
    pub fn next_line(&self, what: &str) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(LIMIT)
                .unwrap_or_else(|_| panic!("the child never said {what:?}"));
            if let Some((_, rest)) = line.split_once(what) {
                return rest.trim().to_string();
            }
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// user + system CPU time of a process, in clock ticks (USER_HZ, 100 a second).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Open descriptors of another process.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Bytes received per connection, one counter per connection in accept order.
pub type Received = Arc<Mutex<Vec<Arc<AtomicU64>>>>;

/// The CPU time `pid` uses over `window` stays under a quarter of a core (a process spinning
/// on a level-triggered listener burns all of one).
pub fn assert_idle(pid: u32, window: Duration, what: &str) {
    let before = cpu_ticks(pid);
    std::thread::sleep(window); // the measuring window
    let used = cpu_ticks(pid) - before;
    let budget = window.as_millis() as u64 * 100 / 1000 / 4; // USER_HZ = 100
    assert!(
        used <= budget,
        "{what}: the process used {used} ticks in {window:?} while out of fds"
    );
}

/// Writes `msg` and reads it back (bounded by LIMIT).
pub fn round_trip(conn: &mut std::net::TcpStream, msg: &[u8]) {
    use std::io::{Read, Write};
    conn.set_read_timeout(Some(LIMIT)).unwrap();
    conn.write_all(msg).unwrap();
    let mut buf = vec![0u8; msg.len()];
    conn.read_exact(&mut buf).unwrap();
    assert_eq!(buf, msg);
}

/// Opens connections to an echo server in process `pid` (fd limit `fd_limit`) until it is out
/// of descriptors: twice its limit, and the last one's echo ("?") does not come back within
/// a short wait. Returns them all.
pub fn exhaust(addr: &str, pid: u32, fd_limit: u64) -> Vec<std::net::TcpStream> {
    use std::io::{Read, Write};
    let mut conns: Vec<std::net::TcpStream> = (0..2 * fd_limit)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    let last = conns.last_mut().unwrap();
    last.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    last.write_all(b"?").unwrap();
    let err = last.read(&mut [0u8; 1]).unwrap_err();
    assert!(
        matches!(
            err.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ),
        "{err}"
    );
    assert!(
        open_fds(pid) as u64 >= fd_limit,
        "the server is not out of fds"
    );
    conns
}

/// A Go-net echo handler (threads, coroutines): echoes until end of stream, then returns the
/// byte count; every call bounded by a deadline of LIMIT.
pub fn echo_sync() -> SyncHandler {
    echo_sync_counted(Received::default())
}

/// [`echo_sync`], counting what each connection received into `received`.
pub fn echo_sync_counted(received: Received) -> SyncHandler {
    Arc::new(move |conn: TcpConn| {
        use std::io::{Read, Write};
        let count = counter(&received);
        conn.set_deadline(Some(Instant::now() + LIMIT))?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        loop {
            let n = (&conn).read(&mut buf)?;
            if n == 0 {
                return Ok(total);
            }
            count.fetch_add(n as u64, Ordering::SeqCst);
            (&conn).write_all(&buf[..n])?;
            total += n as u64;
        }
    })
}

/// [`echo_sync`] as a future, for tasks.
pub fn echo_async() -> AsyncHandler {
    echo_async_counted(Received::default())
}

/// [`echo_sync_counted`] as a future, for tasks.
pub fn echo_async_counted(received: Received) -> AsyncHandler {
    Arc::new(move |mut conn: TcpConn| {
        let count = counter(&received);
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
                count.fetch_add(n as u64, Ordering::SeqCst);
                conn.write_all(&buf[..n]).await?;
                total += n as u64;
            }
        })
    })
}

/// A new connection's counter, registered in `received`.
pub fn counter(received: &Received) -> Arc<AtomicU64> {
    let count = Arc::new(AtomicU64::new(0));
    received.lock().unwrap().push(count.clone());
    count
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
