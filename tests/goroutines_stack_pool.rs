//! The per-poller stack pool: a finished coroutine's stack is kept and taken by the next spawn
//! (a fresh stack costs an mmap, an mprotect and later a munmap).

use std::sync::mpsc;
use std::time::Duration;

use netpoll::poll::PollManager;

/// A finished coroutine's stack goes back to its poller's pool (read from the poller thread,
/// outside any coroutine), and the next spawn takes it instead of mapping a new one.
#[test]
fn a_finished_coroutines_stack_is_pooled_and_taken_again() {
    let manager = PollManager::new(1).unwrap();
    let poller = manager.pick();
    let pooled = |poller: &std::sync::Arc<netpoll::poll::Poller>| {
        let (tx, rx) = mpsc::channel();
        poller
            .execute(move || tx.send(netpoll::rt::pooled_stacks()).unwrap())
            .unwrap();
        rx.recv_timeout(Duration::from_secs(10)).unwrap()
    };
    netpoll::go_on(&poller, || ()).join().unwrap();
    let after_one = pooled(&poller);
    assert!(
        after_one >= 1,
        "the stack of a finished coroutine was not pooled"
    );
    // Sequential spawns reuse that one stack: the pool neither grows nor empties.
    for _ in 0..100 {
        netpoll::go_on(&poller, || ()).join().unwrap();
    }
    assert_eq!(pooled(&poller), after_one);
}
