//! Deadline timers of closed connections are released at close, not when they would have
//! fired. A test binary of its own: it counts the timers of the global pollers, which no other
//! test here uses.

use std::io::Read;
use std::time::{Duration, Instant};

use netpoll::net::UnixConn;
use netpoll::poll::PollManager;

fn live_timers() -> usize {
    PollManager::global()
        .unwrap()
        .pollers()
        .iter()
        .map(|p| p.stats().timers)
        .sum()
}

/// Resident set size in bytes.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    pages * page
}

#[test]
fn closing_releases_deadline_timers_at_once() {
    // Regression (issue 7): timers could not be cancelled, so each closed connection's 1 h
    // deadline timers (and, through them, the descriptor's memory) stayed for the hour.
    const PAIRS: usize = 30_000;
    let warm = UnixConn::pair().unwrap();
    drop(warm);
    let baseline = live_timers();
    let rss_before = rss();
    let hour = Instant::now() + Duration::from_secs(3600);
    for i in 0..PAIRS {
        let (a, b) = UnixConn::pair().unwrap();
        a.set_deadline(Some(hour)).unwrap();
        b.set_read_deadline(Some(hour + Duration::from_secs(1)))
            .unwrap();
        if i % 2 == 0 {
            a.close_now().unwrap();
        }
        drop(a);
        drop(b);
    }
    let left = live_timers();
    let grown = rss().saturating_sub(rss_before);
    assert!(
        left <= baseline,
        "{} timers outlived their connections",
        left - baseline
    );
    assert!(grown < 8 << 20, "RSS grew by {grown} bytes");

    // A deadline still works after all that, and its timer goes with its connection.
    let (a, _b) = UnixConn::pair().unwrap();
    a.set_read_deadline(Some(Instant::now() + Duration::from_millis(20)))
        .unwrap();
    let err = (&a).read(&mut [0u8; 1]).unwrap_err();
    assert!(netpoll::net::is_timeout(&err), "{err}");
    a.set_read_deadline(Some(hour)).unwrap();
    assert_eq!(live_timers(), baseline + 1);
    a.close_now().unwrap();
    assert_eq!(live_timers(), baseline);
}
