//! Micro-benchmarks of the goroutine layer: spawn+join from inside a coroutine (pooled
//! stacks) and a yield_now round trip between two coroutines of one poller.
use std::time::Instant;

fn main() {
    let manager = netpoll::poll::PollManager::new(1).unwrap();
    let poller = manager.pick();
    let (spawn_ns, yield_ns) = netpoll::go_on(&poller, || {
        let here = netpoll::rt::current_poller().unwrap();
        let n = 100_000u32;
        let t = Instant::now();
        for i in 0..n {
            netpoll::go_on(&here, move || i).join().unwrap();
        }
        let spawn = t.elapsed().as_nanos() as f64 / f64::from(n);
        let other = netpoll::go_on(&here, move || {
            for _ in 0..n {
                netpoll::yield_now();
            }
        });
        let t = Instant::now();
        for _ in 0..n {
            netpoll::yield_now();
        }
        other.join().unwrap();
        (spawn, t.elapsed().as_nanos() as f64 / f64::from(n))
    })
    .join()
    .unwrap();
    println!("spawn+run+join (pooled stack): {spawn_ns:.0} ns");
    println!(
        "yield_now between two coroutines (two switches + two queue pushes): {yield_ns:.0} ns"
    );
}
