//! Load-balancing policies for picking a poller.

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How [`PollManager::pick`](super::PollManager::pick) chooses among pollers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LoadBalance {
    /// Each pick takes the next poller in turn.
    #[default]
    RoundRobin,
    /// Each pick takes a poller uniformly at random.
    Random,
    /// The peer's IP address decides, so every connection from one peer lands on the same
    /// poller (while the number of pollers stays the same). Picks without an address fall back
    /// to round robin.
    SourceAddrHash,
}

impl LoadBalance {
    pub(crate) fn index(self, len: usize, next: &AtomicUsize, peer: Option<&SocketAddr>) -> usize {
        debug_assert!(len > 0);
        match (self, peer) {
            (LoadBalance::Random, _) => fastrand::usize(..len),
            (LoadBalance::SourceAddrHash, Some(peer)) => {
                // `DefaultHasher::new()` uses fixed keys: stable for the life of the process,
                // unlike `RandomState`.
                let mut hasher = std::hash::DefaultHasher::new();
                peer.ip().hash(&mut hasher);
                (hasher.finish() % len as u64) as usize
            }
            (LoadBalance::RoundRobin | LoadBalance::SourceAddrHash, _) => {
                next.fetch_add(1, Ordering::Relaxed) % len
            }
        }
    }
}
