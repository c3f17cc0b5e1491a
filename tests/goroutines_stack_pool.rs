//! The per-poller stack pool: a finished coroutine's stack is kept and taken by the next spawn
//! (a fresh stack costs an mmap, an mprotect and later a munmap).

use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use netpoll::poll::PollManager;

const LIMIT: Duration = Duration::from_secs(10);

/// `set_stack_size` is process-wide: the tests of this binary take turns.
static STACK_SIZE: Mutex<()> = Mutex::new(());

fn stack_lock() -> std::sync::MutexGuard<'static, ()> {
    STACK_SIZE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Spare stacks in `poller`'s pool, read on the poller thread outside any coroutine.
fn pooled(poller: &Arc<netpoll::poll::Poller>) -> usize {
    let (tx, rx) = mpsc::channel();
    poller
        .execute(move || tx.send(netpoll::rt::pooled_stacks()).unwrap())
        .unwrap();
    rx.recv_timeout(LIMIT).unwrap()
}

/// A finished coroutine's stack goes back to its poller's pool (read from the poller thread,
/// outside any coroutine), and the next spawn takes it instead of mapping a new one.
#[test]
fn a_finished_coroutines_stack_is_pooled_and_taken_again() {
    let _serial = stack_lock();
    let manager = PollManager::new(1).unwrap();
    let poller = manager.pick();
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

/// Pooled stacks of the old default are handed out after `set_stack_size` raised it: the new
/// coroutine runs on a 64 KiB stack (and its span is recorded as the new default's, so the
/// wrong stacks keep coming back). Measured from `/proc/self/maps`: the writable mapping that
/// holds a local of the coroutine.
#[test]
fn set_stack_size_is_honoured_by_the_next_default_spawn() {
    let _serial = stack_lock();
    let manager = PollManager::new(1).unwrap();
    let poller = manager.pick();
    let old = netpoll::rt::stack_size();
    netpoll::go_on(&poller, || ()).join().unwrap();
    assert!(
        pooled(&poller) >= 1,
        "precondition: a default stack is pooled"
    );
    let new = 1024 * 1024;
    netpoll::rt::set_stack_size(new);
    let mapped = netpoll::go_on(&poller, || {
        let local = 0u8;
        mapping_size(std::hint::black_box(&local) as *const u8 as usize)
    })
    .join();
    netpoll::rt::set_stack_size(old);
    let mapped = mapped
        .unwrap()
        .expect("no mapping holds the coroutine's stack");
    assert!(
        mapped >= new,
        "a coroutine spawned after set_stack_size({new}) runs on a {mapped}-byte stack"
    );
}

/// Size of the mapping of /proc/self/maps that contains `addr`.
fn mapping_size(addr: usize) -> Option<usize> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|line| {
        let range = line.split_whitespace().next()?;
        let (lo, hi) = range.split_once('-')?;
        let (lo, hi) = (
            usize::from_str_radix(lo, 16).ok()?,
            usize::from_str_radix(hi, 16).ok()?,
        );
        (lo <= addr && addr < hi).then_some(hi - lo)
    })
}
