//! The key space: string values in shards, each a hash map plus its keys by expiry time.

use std::cell::Cell;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// Values shorter than this are copied out of the input: a 3-byte value that kept sharing its
/// 64 KiB input block would keep the whole block alive for as long as the key lives.
pub const SHARE_MIN: usize = 4096;

const SHARDS: usize = 16;

/// A stored value and when it expires.
#[derive(Clone, Debug)]
pub struct Entry {
    pub value: Bytes,
    pub expires: Option<Instant>,
}

/// One shard: the live entries, and (deadline, key) for those with a deadline, so expired keys
/// are found without scanning.
#[derive(Default)]
pub struct Shard {
    map: HashMap<Bytes, Entry>,
    deadlines: BTreeSet<(Instant, Bytes)>,
}

impl Shard {
    /// The live entry for `key`; an expired one is removed on the way (lazy expiry).
    pub fn get(&mut self, key: &[u8], now: &Now) -> Option<&Entry> {
        let expired = self.map.get(key)?.expires.is_some_and(|at| at <= now.get());
        if expired {
            self.remove(key);
            return None;
        }
        self.map.get(key)
    }

    /// Stores `value` under `key` with `expires`; returns the live entry it replaced.
    pub fn set(
        &mut self,
        key: &[u8],
        value: Bytes,
        expires: Option<Instant>,
        now: &Now,
    ) -> Option<Entry> {
        let entry = Entry {
            value: own(value),
            expires,
        };
        // In place when the key exists: one hash, no new key.
        let Some(slot) = self.map.get_mut(key) else {
            let key = Bytes::copy_from_slice(key);
            if let Some(at) = expires {
                self.deadlines.insert((at, key.clone()));
            }
            self.map.insert(key, entry);
            return None;
        };
        let old = std::mem::replace(slot, entry);
        if old.expires != expires {
            if let Some(at) = old.expires {
                self.deadlines.remove(&(at, Bytes::copy_from_slice(key)));
            }
            if let Some(at) = expires {
                self.deadlines.insert((at, Bytes::copy_from_slice(key)));
            }
        }
        old.expires.is_none_or(|at| at > now.get()).then_some(old)
    }

    /// Sets (or with `None` clears) the deadline of a live key; false if there is none.
    pub fn set_expiry(&mut self, key: &[u8], expires: Option<Instant>, now: &Now) -> bool {
        let Some(entry) = self.get(key, now).cloned() else {
            return false;
        };
        self.set(key, entry.value, expires, now);
        true
    }

    /// Removes `key` (live or not); returns its entry.
    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let (key, entry) = self.map.remove_entry(key)?;
        if let Some(at) = entry.expires {
            self.deadlines.remove(&(at, key));
        }
        Some(entry)
    }

    /// Removes up to `budget` keys whose deadline has passed; returns how many.
    fn expire(&mut self, now: Instant, budget: usize) -> usize {
        let mut removed = 0;
        while removed < budget {
            let Some((at, _)) = self.deadlines.first() else {
                break;
            };
            if *at > now {
                break;
            }
            let Some((_, key)) = self.deadlines.pop_first() else {
                break;
            };
            self.map.remove(&key);
            removed += 1;
        }
        removed
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// The time, read once per command and only if a deadline needs it.
#[derive(Default)]
pub struct Now(Cell<Option<Instant>>);

impl Now {
    pub fn get(&self) -> Instant {
        match self.0.get() {
            Some(now) => now,
            None => {
                let now = Instant::now();
                self.0.set(Some(now));
                now
            }
        }
    }
}

/// Copies a short value out of the block it shares with other input (see [`SHARE_MIN`]).
fn own(value: Bytes) -> Bytes {
    if value.len() < SHARE_MIN {
        Bytes::copy_from_slice(&value)
    } else {
        value
    }
}

/// All keys, sharded by a hash of the key so pollers rarely meet on a lock.
pub struct Store {
    shards: Box<[Mutex<Shard>]>,
}

impl Store {
    pub fn new() -> Store {
        Store {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    /// The shard that holds `key`.
    pub fn shard(&self, key: &[u8]) -> MutexGuard<'_, Shard> {
        // FNV-1a: only picks a shard; each map hashes with SipHash and random keys.
        let hash = key.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        lock(&self.shards[(hash % SHARDS as u64) as usize])
    }

    /// Live keys (an expired key counts until it is expired, as in Redis).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    pub fn clear(&self) {
        for shard in self.shards.iter() {
            *lock(shard) = Shard::default();
        }
    }

    /// Active expiry: what Redis's `activeExpireCycle` does, by deadline order instead of by
    /// sampling. Called periodically; each call does bounded work per shard.
    pub fn expire_due(&self) -> usize {
        let now = Instant::now();
        self.shards
            .iter()
            .map(|s| lock(s).expire(now, 10_000))
            .sum()
    }
}

/// How often expired keys are swept (Redis: `hz 10`).
pub const EXPIRE_PERIOD: Duration = Duration::from_millis(100);

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // A panicking command leaves a shard consistent: every update is a single map operation.
    shard.lock().unwrap_or_else(|e| e.into_inner())
}
