//! Behaviour of `PollManager`: pick distribution per policy and resizing with live registrations.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use common::{Recorder, LIMIT};
use netpoll::poll::{default_num_loops, LoadBalance, PollEvent, PollManager};

fn histogram(manager: &PollManager, picks: usize) -> HashMap<usize, usize> {
    let mut counts = HashMap::new();
    for _ in 0..picks {
        *counts.entry(manager.pick().id()).or_default() += 1;
    }
    counts
}

#[test]
fn default_loops_is_at_least_one() {
    assert!(default_num_loops() >= 1);
}

#[test]
fn round_robin_takes_each_poller_in_turn() {
    let manager = PollManager::new(4).unwrap();
    let counts = histogram(&manager, 400);
    assert_eq!(counts.len(), 4);
    assert!(counts.values().all(|&n| n == 100), "{counts:?}");
}

#[test]
fn random_spreads_picks_evenly() {
    let manager = PollManager::new(4).unwrap();
    manager.set_load_balance(LoadBalance::Random);
    assert_eq!(manager.load_balance(), LoadBalance::Random);
    let counts = histogram(&manager, 4_000);
    assert_eq!(counts.len(), 4);
    // Expected 1,000 each with a standard deviation of 27: 200 away is over 7 deviations.
    assert!(
        counts.values().all(|&n| (800..=1_200).contains(&n)),
        "{counts:?}"
    );
}

#[test]
fn source_addr_hash_keeps_a_peer_on_one_poller() {
    let manager = PollManager::new(4).unwrap();
    manager.set_load_balance(LoadBalance::SourceAddrHash);
    let peer =
        |last: u8, port: u16| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)), port);
    let mut used = HashMap::new();
    for last in 0..=255u8 {
        let first = manager.pick_for(Some(&peer(last, 1000))).id();
        for port in 1001..1020 {
            assert_eq!(manager.pick_for(Some(&peer(last, port))).id(), first);
        }
        *used.entry(first).or_insert(0) += 1;
    }
    assert_eq!(
        used.len(),
        4,
        "256 peers should reach every poller: {used:?}"
    );
    // Without an address the policy falls back to round robin.
    let counts = histogram(&manager, 40);
    assert!(counts.values().all(|&n| n == 10), "{counts:?}");
}

#[test]
fn set_num_loops_grows_and_shrinks_with_live_registrations() {
    let manager = PollManager::new(2).unwrap();
    assert_eq!(
        manager.set_num_loops(0).unwrap_err().kind(),
        std::io::ErrorKind::InvalidInput
    );

    // One live registration on each of the two first pollers.
    let first = manager.pollers();
    let mut pairs = Vec::new();
    for poller in &first {
        let (recorder, reg, peer, events) = Recorder::pair(true);
        poller.control(&reg, PollEvent::Readable).unwrap();
        pairs.push((poller.clone(), recorder, reg, peer, events));
    }

    manager.set_num_loops(4).unwrap();
    assert_eq!(manager.num_loops(), 4);
    assert_eq!(histogram(&manager, 8).len(), 4);
    let grown = manager.pollers();

    manager.set_num_loops(1).unwrap();
    assert_eq!(manager.num_loops(), 1);
    let kept = manager.pollers()[0].id();
    assert_eq!(kept, first[0].id());
    assert!(histogram(&manager, 10).keys().all(|&id| id == kept));
    // The two new pollers had nothing and close at once; the second first poller still serves.
    for empty in &grown[2..] {
        assert!(empty.wait_closed(LIMIT));
    }
    assert_eq!(manager.retired_loops(), 1);

    let (retired, _recorder, reg, peer, events) = &mut pairs[1];
    peer.write_all(b"still served").unwrap();
    assert!(events.recv_timeout(LIMIT).unwrap().1.is_readable());
    assert!(!retired.is_closed());

    retired.control(reg, PollEvent::Detach).unwrap();
    assert!(
        retired.wait_closed(LIMIT),
        "a retired poller must close after its last detach"
    );
    assert_eq!(manager.retired_loops(), 0);

    let (kept_poller, _, reg, _, _) = &pairs[0];
    kept_poller.control(reg, PollEvent::Detach).unwrap();
    manager.set_num_loops(3).unwrap();
    assert_eq!(manager.num_loops(), 3);
}
