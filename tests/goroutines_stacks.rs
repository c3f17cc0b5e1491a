//! Stack reuse: 100,000 coroutines created and finished leave the process's mappings near
//! where they started (each live stack is two mappings; finished ones go back to the
//! per-poller pool and are reused). Alone in its binary: other tests' threads and stacks would
//! move the count.

use std::sync::mpsc;
use std::time::Duration;

use netpoll::poll::PollManager;

fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
}

#[test]
fn a_hundred_thousand_coroutines_reuse_their_stacks() {
    let manager = PollManager::new(1).unwrap();
    let poller = manager.pick();
    // Warm up: the poller's scheduler, a first stack, the pool thread of join_within.
    assert_eq!(netpoll::go_on(&poller, || 1).join().unwrap(), 1);
    let baseline = mappings();
    let (tx, rx) = mpsc::channel();
    let driver = netpoll::go_on(&poller, move || {
        let here = netpoll::rt::current_poller().unwrap();
        let mut sum = 0u64;
        // In waves of 100 live at once, so the pool is exercised with more than one stack.
        for wave in 0..1000u64 {
            let handles: Vec<_> = (0..100u64)
                .map(|i| netpoll::go_on(&here, move || wave * 100 + i))
                .collect();
            sum += handles.into_iter().map(|h| h.join().unwrap()).sum::<u64>();
        }
        let _ = tx.send(mappings());
        sum
    });
    let during = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("100k coroutines did not finish in time");
    assert_eq!(driver.join().unwrap(), (0..100_000u64).sum::<u64>());
    // 100 pooled stacks (two mappings each) and some slack for the allocator.
    assert!(
        during <= baseline + 2 * 101 + 64,
        "mappings grew from {baseline} to {during}: stacks are not reused"
    );
    let after = mappings();
    assert!(after <= baseline + 2 * 101 + 64, "{baseline} -> {after}");
}
