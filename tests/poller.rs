//! Behaviour of one `Poller`: trigger, delivery, interest changes, detach and close.

mod common;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::mpsc::channel;
use std::time::Instant;

use common::{hold, round_trip, Recorder, LIMIT};
use netpoll::poll::{PollEvent, Poller, Ready};

#[test]
fn trigger_wakes_a_blocked_wait() {
    let poller = Poller::new().unwrap();
    // Nothing else is registered, so only the trigger can end this wait.
    round_trip(&poller);
    let stats = poller.stats();
    assert_eq!(stats.trigger_writes, 1);
    assert_eq!(stats.wakes, 1);

    // A second trigger after the wake writes again: the flag was cleared.
    round_trip(&poller);
    assert_eq!(poller.stats().trigger_writes, 2);
}

#[test]
fn triggers_while_busy_coalesce_into_one_wake() {
    let poller = Poller::new().unwrap();
    let release = hold(&poller);
    for _ in 0..1_000 {
        poller.trigger().unwrap();
    }
    drop(release);
    round_trip(&poller);
    let stats = poller.stats();
    // One write to start the held task, one for the 1,000 triggers; the round trip's own
    // trigger may coalesce with them or need a third.
    assert!(stats.trigger_writes <= 3, "{stats:?}");
    assert!(stats.wakes <= 3, "{stats:?}");
}

#[test]
fn readable_socketpair_is_delivered() {
    let poller = Poller::new().unwrap();
    let (recorder, reg, mut peer, events) = Recorder::pair(true);
    poller.control(&reg, PollEvent::Readable).unwrap();
    assert!(reg.is_attached());
    peer.write_all(b"ping").unwrap();
    let (kind, ready) = events.recv_timeout(LIMIT).unwrap();
    assert_eq!(kind, "ready");
    assert!(ready.is_readable());
    assert!(!ready.is_writable(), "only input is watched: {ready:?}");
    poller.control(&reg, PollEvent::Detach).unwrap();
    drop(recorder);
}

#[test]
fn r2rw_then_rw2r_switches_writable_interest() {
    let poller = Poller::new().unwrap();
    let (_recorder, reg, mut peer, events) = Recorder::pair(true);
    poller.control(&reg, PollEvent::Readable).unwrap();

    poller.control(&reg, PollEvent::R2RW).unwrap();
    let (_, ready) = events.recv_timeout(LIMIT).unwrap();
    assert!(
        ready.is_writable(),
        "R2RW must report room to write: {ready:?}"
    );

    poller.control(&reg, PollEvent::RW2R).unwrap();
    // Let any batch fetched before RW2R finish, then forget what it reported.
    round_trip(&poller);
    round_trip(&poller);
    while events.try_recv().is_ok() {}

    peer.write_all(b"x").unwrap();
    let (_, ready) = events.recv_timeout(LIMIT).unwrap();
    assert!(ready.is_readable());
    assert!(
        !ready.is_writable(),
        "RW2R must stop writable reports: {ready:?}"
    );
    poller.control(&reg, PollEvent::Detach).unwrap();
}

#[test]
fn detach_stops_events() {
    let poller = Poller::new().unwrap();
    // Not draining: level-triggered input keeps reporting until detached.
    let (recorder, reg, mut peer, events) = Recorder::pair(false);
    poller.control(&reg, PollEvent::Readable).unwrap();
    peer.write_all(b"data").unwrap();
    events.recv_timeout(LIMIT).unwrap();

    poller.control(&reg, PollEvent::Detach).unwrap();
    assert!(!reg.is_attached());
    assert_eq!(poller.registrations(), 0);
    round_trip(&poller);
    let settled = recorder.calls();
    peer.write_all(b"more").unwrap();
    round_trip(&poller);
    round_trip(&poller);
    assert_eq!(
        recorder.calls(),
        settled,
        "an event reached a detached owner"
    );

    // Detaching twice, or modifying a detached registration, is a clear error.
    let err = poller.control(&reg, PollEvent::Detach).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    let err = poller.control(&reg, PollEvent::R2RW).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn attaching_twice_or_to_another_poller_is_refused() {
    let (a, b) = (Poller::new().unwrap(), Poller::new().unwrap());
    let (_recorder, reg, _peer, _events) = Recorder::pair(true);
    a.control(&reg, PollEvent::Readable).unwrap();
    let err = a.control(&reg, PollEvent::Readable).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    let err = b.control(&reg, PollEvent::RW2R).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    a.control(&reg, PollEvent::Detach).unwrap();
}

#[test]
fn peer_hangup_detaches_then_calls_on_hangup_once() {
    let poller = Poller::new().unwrap();
    let (recorder, reg, peer, events) = Recorder::pair(true);
    poller.control(&reg, PollEvent::Readable).unwrap();
    drop(peer);
    // First the readiness (so the owner can read what was left), then the hang-up.
    let mut saw_hangup = false;
    while !saw_hangup {
        let (kind, ready) = events.recv_timeout(LIMIT).unwrap();
        assert!(ready.intersects(Ready::HANGUP), "{kind}: {ready:?}");
        saw_hangup = kind == "hangup";
    }
    assert!(!reg.is_attached());
    round_trip(&poller);
    assert_eq!(
        recorder
            .hangup_calls
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[test]
fn writable_edge_reports_once_and_mod_readable_switches_to_input() {
    let poller = Poller::new().unwrap();
    let (recorder, reg, mut peer, events) = Recorder::pair(true);
    poller.control(&reg, PollEvent::Writable).unwrap();
    let (_, ready) = events.recv_timeout(LIMIT).unwrap();
    assert!(ready.is_writable());
    round_trip(&poller);
    round_trip(&poller);
    assert_eq!(
        recorder.calls(),
        1,
        "edge-triggered output must report once"
    );

    poller.control(&reg, PollEvent::ModReadable).unwrap();
    peer.write_all(b"hello").unwrap();
    loop {
        let (_, ready) = events.recv_timeout(LIMIT).unwrap();
        if ready.is_readable() {
            break;
        }
    }
    poller.control(&reg, PollEvent::Detach).unwrap();
}

#[test]
fn close_joins_promptly_and_refuses_later_work() {
    let poller = Poller::new().unwrap();
    let (recorder, reg, _peer, _events) = Recorder::pair(true);
    poller.control(&reg, PollEvent::Readable).unwrap();
    let started = Instant::now();
    poller.close();
    assert!(poller.is_closed());
    assert!(started.elapsed() < LIMIT);
    // The closed poller forgot the registration without calling it.
    assert!(!reg.is_attached());
    assert_eq!(recorder.calls(), 0);
    assert!(poller.execute(|| {}).is_err());
    assert!(poller.control(&reg, PollEvent::Readable).is_err());
    poller.close(); // idempotent
}

#[test]
fn close_from_a_task_on_the_poller_thread_stops_the_loop() {
    let poller = Poller::new().unwrap();
    let (tx, rx) = channel();
    let handle = poller.clone();
    poller
        .execute(move || {
            handle.close();
            tx.send(()).unwrap();
        })
        .unwrap();
    rx.recv_timeout(LIMIT).unwrap();
    assert!(poller.wait_closed(LIMIT));
}

#[test]
fn more_ready_fds_than_the_event_array_are_all_delivered() {
    const PAIRS: usize = 1_000;
    let poller = Poller::new().unwrap();
    assert_eq!(poller.stats().event_capacity, 128);
    let mut pairs = Vec::with_capacity(PAIRS);
    for _ in 0..PAIRS {
        let (recorder, reg, peer, events) = Recorder::pair(true);
        poller.control(&reg, PollEvent::Readable).unwrap();
        pairs.push((recorder, reg, peer, events));
    }
    // All become readable while the loop is held, so one wait sees every one of them.
    let release = hold(&poller);
    for (_, _, peer, _) in pairs.iter_mut() {
        peer.write_all(b"!").unwrap();
    }
    drop(release);
    for (_, _, _, events) in &pairs {
        let (_, ready) = events.recv_timeout(LIMIT).unwrap();
        assert!(ready.is_readable());
    }
    let capacity = poller.stats().event_capacity;
    assert!(capacity >= 512, "array did not grow: {capacity}");
    for (_, reg, _, _) in &pairs {
        poller.control(reg, PollEvent::Detach).unwrap();
    }
}

#[test]
fn a_panicking_handler_is_cut_off_and_the_loop_keeps_serving() {
    struct Panics;
    impl netpoll::poll::EventHandler for Panics {
        fn on_ready(&self, _: Ready) {
            panic!("handler bug (expected by this test)");
        }
    }
    let poller = Poller::new().unwrap();
    let (ours, mut peer) = UnixStream::pair().unwrap();
    let bad = std::sync::Arc::new(Panics);
    let weak = std::sync::Arc::downgrade(&bad) as std::sync::Weak<dyn netpoll::poll::EventHandler>;
    use std::os::fd::AsRawFd;
    let bad_reg = netpoll::poll::Registration::new(ours.as_raw_fd(), weak);
    poller.control(&bad_reg, PollEvent::Readable).unwrap();
    peer.write_all(b"boom").unwrap();

    let (_recorder, reg, mut peer2, events) = Recorder::pair(true);
    poller.control(&reg, PollEvent::Readable).unwrap();
    peer2.write_all(b"still here").unwrap();
    assert!(events.recv_timeout(LIMIT).unwrap().1.is_readable());
    round_trip(&poller);
    assert!(!bad_reg.is_attached());
    poller.control(&reg, PollEvent::Detach).unwrap();
}

#[test]
fn timers_fire_in_deadline_order_and_not_early() {
    let poller = Poller::new().unwrap();
    let (tx, rx) = channel();
    let start = Instant::now();
    for (label, ms) in [("b", 40u64), ("a", 20), ("c", 60)] {
        let tx = tx.clone();
        poller
            .schedule(start + std::time::Duration::from_millis(ms), move || {
                tx.send((label, start.elapsed())).unwrap()
            })
            .unwrap();
    }
    let fired: Vec<_> = (0..3).map(|_| rx.recv_timeout(LIMIT).unwrap()).collect();
    assert_eq!(
        fired.iter().map(|f| f.0).collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    assert!(
        fired[0].1 >= std::time::Duration::from_millis(20),
        "{fired:?}"
    );
}

#[test]
fn an_earlier_timer_from_another_thread_wakes_a_loop_waiting_on_a_later_one() {
    let poller = Poller::new().unwrap();
    let far = Instant::now() + std::time::Duration::from_secs(3600);
    poller.schedule(far, || {}).unwrap();
    round_trip(&poller); // the loop now sleeps until the far timer
    let (tx, rx) = channel();
    poller
        .schedule(Instant::now(), move || tx.send(()).unwrap())
        .unwrap();
    rx.recv_timeout(LIMIT)
        .expect("the new earliest timer did not wake the loop");
}
