//! One-shot timers run on a poller thread; the loop's `epoll_wait` timeout is the earliest one.
//!
//! A timer can be cancelled by the [`TimerKey`] `push` returned: its task (the closure and
//! whatever it captured) is dropped at once. The tasks live in a map keyed by id; the heap holds
//! only `(deadline, id)` pairs, so a cancelled timer leaves a 24-byte heap entry behind, which is
//! skipped when it comes up, and the heap is rebuilt without them once they outnumber the live
//! timers. Owners that never cancel (a timer whose reason went away checks and does nothing, as
//! Go's `rseq`/`wseq` do) pay one heap push and one map insert per timer.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Instant;

pub(crate) type TimerTask = Box<dyn FnOnce() + Send>;

/// Names one scheduled timer of one poller, for [`Poller::cancel`](super::Poller::cancel).
/// Ids are never reused, so a stale key cancels nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerKey(u64);

impl TimerKey {
    /// A key no poller issued, for models that fake the timers.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn fake(id: u64) -> TimerKey {
        TimerKey(id)
    }

    /// The id [`TimerKey::fake`] was given.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn id(self) -> u64 {
        self.0
    }
}

/// Below this many heap entries the dead ones are not worth a rebuild.
const COMPACT_MIN: usize = 64;

#[derive(Default)]
pub(crate) struct Timers {
    /// Earliest first; ids (insertion order) break ties, so equal deadlines fire first-in
    /// first-out. Entries whose id is no longer in `tasks` were cancelled.
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    tasks: HashMap<u64, TimerTask>,
    next_id: u64,
}

impl Timers {
    /// Adds a timer; also returns true when it is now the earliest (the loop must recompute
    /// its wait).
    pub(crate) fn push(&mut self, deadline: Instant, task: TimerTask) -> (TimerKey, bool) {
        self.skip_cancelled();
        let earliest = self
            .heap
            .peek()
            .is_none_or(|Reverse((top, _))| deadline < *top);
        self.next_id += 1;
        let id = self.next_id;
        self.heap.push(Reverse((deadline, id)));
        self.tasks.insert(id, task);
        (TimerKey(id), earliest)
    }

    /// Removes a timer that has not run yet, dropping its task now. False if it already ran,
    /// was cancelled, or belongs to another poller's timers (ids differ per poller only by
    /// chance; callers keep keys with the poller that issued them).
    pub(crate) fn cancel(&mut self, key: TimerKey) -> bool {
        let removed = self.tasks.remove(&key.0).is_some();
        if removed {
            self.compact();
        }
        removed
    }

    /// Rebuilds the heap without cancelled entries once they are the majority, and gives back
    /// memory the map no longer needs.
    fn compact(&mut self) {
        if self.heap.len() >= COMPACT_MIN && self.heap.len() > 2 * self.tasks.len() {
            let tasks = &self.tasks;
            self.heap.retain(|Reverse((_, id))| tasks.contains_key(id));
            self.heap.shrink_to_fit();
        }
        if self.tasks.capacity() >= COMPACT_MIN && self.tasks.len() < self.tasks.capacity() / 4 {
            self.tasks.shrink_to_fit();
        }
    }

    fn skip_cancelled(&mut self) {
        while let Some(Reverse((_, id))) = self.heap.peek() {
            if self.tasks.contains_key(id) {
                break;
            }
            self.heap.pop();
        }
    }

    /// The earliest live deadline.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        self.skip_cancelled();
        self.heap.peek().map(|Reverse((deadline, _))| *deadline)
    }

    /// Removes and returns the tasks due at `now`.
    pub(crate) fn expired(&mut self, now: Instant, out: &mut Vec<TimerTask>) {
        while let Some(&Reverse((deadline, id))) = self.heap.peek() {
            if deadline > now {
                break;
            }
            self.heap.pop();
            if let Some(task) = self.tasks.remove(&id) {
                out.push(task);
            }
        }
    }

    /// Timers scheduled and neither run nor cancelled.
    pub(crate) fn len(&self) -> usize {
        self.tasks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    #[test]
    fn expired_come_out_in_deadline_then_insertion_order() {
        let mut timers = Timers::default();
        let order = Arc::new(Mutex::new(Vec::new()));
        let start = Instant::now();
        for (i, ms) in [(0, 30), (1, 10), (2, 10), (3, 50)] {
            let order = order.clone();
            timers.push(
                start + Duration::from_millis(ms),
                Box::new(move || order.lock().unwrap().push(i)),
            );
        }
        let mut due = Vec::new();
        timers.expired(start + Duration::from_millis(30), &mut due);
        due.into_iter().for_each(|t| t());
        assert_eq!(*order.lock().unwrap(), vec![1, 2, 0]);
        assert_eq!(
            timers.next_deadline(),
            Some(start + Duration::from_millis(50))
        );
    }

    #[test]
    fn push_reports_a_new_earliest() {
        let mut timers = Timers::default();
        let now = Instant::now();
        assert!(timers.push(now + Duration::from_secs(2), Box::new(|| {})).1);
        assert!(!timers.push(now + Duration::from_secs(3), Box::new(|| {})).1);
        assert!(timers.push(now + Duration::from_secs(1), Box::new(|| {})).1);
        assert_eq!(timers.len(), 3);
    }

    #[test]
    fn cancel_drops_the_task_at_once_and_it_never_runs() {
        let mut timers = Timers::default();
        let now = Instant::now();
        let captured = Arc::new(());
        let held = captured.clone();
        let (key, _) = timers.push(now, Box::new(move || drop(held)));
        let (other, _) = timers.push(now + Duration::from_millis(1), Box::new(|| {}));
        assert_eq!(Arc::strong_count(&captured), 2);
        assert!(timers.cancel(key));
        assert_eq!(
            Arc::strong_count(&captured),
            1,
            "the closure was not dropped"
        );
        assert!(!timers.cancel(key), "a key cancels once");
        assert_eq!(timers.len(), 1);
        assert_eq!(timers.next_deadline(), Some(now + Duration::from_millis(1)));
        let mut due = Vec::new();
        timers.expired(now + Duration::from_secs(1), &mut due);
        assert_eq!(due.len(), 1);
        assert!(
            !timers.cancel(other),
            "a timer that ran cannot be cancelled"
        );
    }

    #[test]
    fn cancelled_entries_do_not_pile_up_in_the_heap() {
        let mut timers = Timers::default();
        let far = Instant::now() + Duration::from_secs(3600);
        let keep = timers.push(far, Box::new(|| {})).0;
        for _ in 0..10_000 {
            let (key, _) = timers.push(far, Box::new(|| {}));
            assert!(timers.cancel(key));
        }
        assert_eq!(timers.len(), 1);
        assert!(
            timers.heap.len() <= 2 * COMPACT_MIN,
            "{}",
            timers.heap.len()
        );
        assert!(timers.cancel(keep));
    }
}
