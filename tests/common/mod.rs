//! Helpers shared by the poller tests: a recording handler and a gate that holds a poller busy.
#![allow(dead_code)]

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use netpoll::poll::{EventHandler, Poller, Ready, Registration};

pub mod example;
pub mod faults;

/// Long enough for any healthy wait on a loaded 2-core CI machine; only hit when a test fails.
pub const LIMIT: Duration = Duration::from_secs(10);

/// Owns one end of a socket pair and reports every callback.
pub struct Recorder {
    pub stream: Mutex<Option<UnixStream>>,
    /// Read whatever is readable on each event (otherwise level-triggered events repeat).
    pub drain: bool,
    pub ready_calls: AtomicUsize,
    pub hangup_calls: AtomicUsize,
    pub events: Mutex<Sender<(&'static str, Ready)>>,
}

impl Recorder {
    /// A registered socket pair: returns the recorder (owning our end), its registration, the
    /// peer end, and the receiver of its callbacks.
    pub fn pair(
        drain: bool,
    ) -> (
        Arc<Recorder>,
        Registration,
        UnixStream,
        Receiver<(&'static str, Ready)>,
    ) {
        let (ours, peer) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let (tx, rx) = channel();
        let fd = ours.as_raw_fd();
        let recorder = Arc::new(Recorder {
            stream: Mutex::new(Some(ours)),
            drain,
            ready_calls: AtomicUsize::new(0),
            hangup_calls: AtomicUsize::new(0),
            events: Mutex::new(tx),
        });
        let weak: Weak<dyn EventHandler> = Arc::downgrade(&recorder) as Weak<dyn EventHandler>;
        (recorder, Registration::new(fd, weak), peer, rx)
    }

    pub fn calls(&self) -> usize {
        self.ready_calls.load(Ordering::SeqCst)
    }
}

impl EventHandler for Recorder {
    fn on_ready(&self, ready: Ready) {
        self.ready_calls.fetch_add(1, Ordering::SeqCst);
        if self.drain && ready.is_readable() {
            if let Some(stream) = self.stream.lock().unwrap().as_mut() {
                let mut buf = [0u8; 4096];
                while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
            }
        }
        let _ = self.events.lock().unwrap().send(("ready", ready));
    }

    fn on_hangup(&self, ready: Ready) {
        self.hangup_calls.fetch_add(1, Ordering::SeqCst);
        let _ = self.events.lock().unwrap().send(("hangup", ready));
    }
}

/// Runs a task on the poller thread and waits until it has run: every event fetched before the
/// call has been dispatched by then.
pub fn round_trip(poller: &Poller) {
    let (tx, rx) = channel();
    poller.execute(move || tx.send(()).unwrap()).unwrap();
    rx.recv_timeout(LIMIT).expect("poller did not run the task");
}

/// Blocks the poller thread inside a task until the returned sender is dropped or sent to.
/// Returns once the poller is inside the task.
pub fn hold(poller: &Poller) -> Sender<()> {
    let (entered_tx, entered_rx) = channel();
    let (release_tx, release_rx) = channel::<()>();
    poller
        .execute(move || {
            entered_tx.send(()).unwrap();
            let _ = release_rx.recv_timeout(LIMIT);
        })
        .unwrap();
    entered_rx
        .recv_timeout(LIMIT)
        .expect("poller did not enter the task");
    release_tx
}

/// A server running `serve` on its own thread; shut down (and joined) on drop.
pub struct TestServer<C: Send + Sync + 'static = ()> {
    pub server: Arc<netpoll::EventLoop<C>>,
    pub addr: std::net::SocketAddr,
    pub serving: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl<C: Send + Sync + 'static> TestServer<C> {
    pub fn start(server: netpoll::EventLoop<C>) -> TestServer<C> {
        let listener = netpoll::Listener::bind_tcp("127.0.0.1:0").unwrap();
        let addr = *listener.local_addr().as_inet().unwrap();
        TestServer::start_on(server, listener, addr)
    }

    pub fn start_on(
        server: netpoll::EventLoop<C>,
        listener: netpoll::Listener,
        addr: std::net::SocketAddr,
    ) -> TestServer<C> {
        let server = Arc::new(server);
        let serving = {
            let server = server.clone();
            std::thread::spawn(move || server.serve(listener))
        };
        TestServer {
            server,
            addr,
            serving: Some(serving),
        }
    }

    pub fn connect(&self) -> std::net::TcpStream {
        let stream = std::net::TcpStream::connect(self.addr).unwrap();
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        stream.set_write_timeout(Some(LIMIT)).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
    }

    /// Shuts down and returns what `serve` returned.
    pub fn stop(&mut self) -> std::io::Result<()> {
        let _ = self.server.shutdown(std::time::Instant::now() + LIMIT);
        match self.serving.take() {
            Some(handle) => handle.join().expect("serve panicked"),
            None => Ok(()),
        }
    }
}

impl<C: Send + Sync + 'static> Drop for TestServer<C> {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// An echo handler: sends back whatever arrived.
pub fn echo<C>(_: &C, conn: &netpoll::Connection) -> std::io::Result<()> {
    let mut reader = conn.reader();
    let data = reader.next(reader.len())?;
    drop(reader);
    let mut writer = conn.writer();
    writer.write_direct(data)?;
    writer.flush()
}

/// A line echo handler: takes a whole line (waiting for it, or, inline, called again until it
/// is complete) and sends it back.
pub fn line_echo<C>(_: &C, conn: &netpoll::Connection) -> std::io::Result<()> {
    let line = conn.reader().until(b'\n')?;
    let mut writer = conn.writer();
    writer.write_direct(line)?;
    writer.flush()
}

/// Deterministic test data: byte `i` of stream `seed`.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
