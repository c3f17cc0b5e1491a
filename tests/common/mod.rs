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
