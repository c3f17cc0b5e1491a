//! A stale event must not reach a detached owner, nor a new owner of the reused fd number.
//!
//! Its own test binary: fd numbers are process-wide, and a parallel test opening sockets could
//! take the number this test expects the kernel to hand back.

mod common;

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use common::{hold, round_trip, Recorder};
use netpoll::poll::{EventHandler, PollEvent, Poller, Ready, Registration};

/// Two owners, A and B, become readable in the same batch. Whichever is called first detaches
/// the other, closes its fd and registers a new owner, which gets the lowest free fd number
/// (the one just closed) and the table slot just freed.
struct Scene {
    poller: Arc<Poller>,
    streams: Mutex<[Option<UnixStream>; 2]>,
    registrations: Mutex<[Option<Registration>; 2]>,
    calls: [AtomicUsize; 2],
    winner: Mutex<Option<usize>>,
    replacement: Mutex<Option<(Arc<Recorder>, Registration, UnixStream)>>,
}

struct Racer {
    scene: Arc<Scene>,
    index: usize,
}

impl EventHandler for Racer {
    fn on_ready(&self, _: Ready) {
        let scene = &self.scene;
        scene.calls[self.index].fetch_add(1, Ordering::SeqCst);
        if let Some(mine) = scene.streams.lock().unwrap()[self.index].as_mut() {
            let mut buf = [0u8; 64];
            while matches!(mine.read(&mut buf), Ok(n) if n > 0) {}
        }
        let mut winner = scene.winner.lock().unwrap();
        if winner.is_some() {
            return;
        }
        *winner = Some(self.index);
        let other = 1 - self.index;
        let reg = scene.registrations.lock().unwrap()[other].take().unwrap();
        scene.poller.control(&reg, PollEvent::Detach).unwrap();
        drop(scene.streams.lock().unwrap()[other].take()); // close(2): the number is free
        let (recorder, new_reg, peer, _events) = Recorder::pair(true);
        assert_eq!(
            new_reg.fd(),
            reg.fd(),
            "the kernel should reuse the lowest free fd"
        );
        scene.poller.control(&new_reg, PollEvent::Readable).unwrap();
        *scene.replacement.lock().unwrap() = Some((recorder, new_reg, peer));
    }
}

#[test]
fn stale_generation_event_is_dropped_after_fd_reuse() {
    let poller = Poller::new().unwrap();
    let (a, mut a_peer) = UnixStream::pair().unwrap();
    let (b, mut b_peer) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    let fds = [a.as_raw_fd(), b.as_raw_fd()];
    let scene = Arc::new(Scene {
        poller: poller.clone(),
        streams: Mutex::new([Some(a), Some(b)]),
        registrations: Mutex::new([None, None]),
        calls: Default::default(),
        winner: Mutex::new(None),
        replacement: Mutex::new(None),
    });
    let racers: Vec<Arc<Racer>> = (0..2)
        .map(|index| {
            Arc::new(Racer {
                scene: scene.clone(),
                index,
            })
        })
        .collect();
    for (index, racer) in racers.iter().enumerate() {
        let weak = Arc::downgrade(racer) as Weak<dyn EventHandler>;
        let reg = Registration::new(fds[index], weak);
        poller.control(&reg, PollEvent::Readable).unwrap();
        scene.registrations.lock().unwrap()[index] = Some(reg);
    }

    // Both become readable while the loop is held: the next wait returns both in one batch.
    let release = hold(&poller);
    a_peer.write_all(b"a").unwrap();
    b_peer.write_all(b"b").unwrap();
    drop(release);
    round_trip(&poller);
    round_trip(&poller);

    let winner = scene.winner.lock().unwrap().expect("no owner was called");
    let loser = 1 - winner;
    assert_eq!(
        scene.calls[loser].load(Ordering::SeqCst),
        0,
        "the detached owner received the event fetched before it was detached"
    );
    let replacement = scene.replacement.lock().unwrap();
    let (recorder, new_reg, _) = replacement.as_ref().unwrap();
    assert_eq!(
        recorder.calls(),
        0,
        "the new owner of the reused fd received the old owner's event"
    );
    poller.control(new_reg, PollEvent::Detach).unwrap();
    let survivor = scene.registrations.lock().unwrap()[winner].take();
    poller
        .control(&survivor.unwrap(), PollEvent::Detach)
        .unwrap();
}
