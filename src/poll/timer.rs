//! One-shot timers run on a poller thread; the loop's `epoll_wait` timeout is the earliest one.
//!
//! Timers are not cancelled: an owner whose deadline moved lets the old timer fire and do
//! nothing (it compares a sequence number or a timestamp, as Go's `rseq`/`wseq` do). That keeps
//! arming a timer to one heap push and no bookkeeping on the I/O path.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Instant;

pub(crate) type TimerTask = Box<dyn FnOnce() + Send>;

struct Entry {
    deadline: Instant,
    /// Insertion order, so timers with equal deadlines fire first-in first-out.
    seq: u64,
    task: TimerTask,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    /// Reversed: `BinaryHeap` is a max-heap and the earliest deadline must come out first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.deadline, other.seq).cmp(&(self.deadline, self.seq))
    }
}

#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Entry>,
    next_seq: u64,
}

impl Timers {
    /// Adds a timer; returns true when it is now the earliest (the loop must recompute its wait).
    pub(crate) fn push(&mut self, deadline: Instant, task: TimerTask) -> bool {
        let earliest = self.heap.peek().is_none_or(|top| deadline < top.deadline);
        self.next_seq += 1;
        self.heap.push(Entry {
            deadline,
            seq: self.next_seq,
            task,
        });
        earliest
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|e| e.deadline)
    }

    /// Removes and returns the tasks due at `now`.
    pub(crate) fn expired(&mut self, now: Instant, out: &mut Vec<TimerTask>) {
        while self.heap.peek().is_some_and(|e| e.deadline <= now) {
            if let Some(entry) = self.heap.pop() {
                out.push(entry.task);
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    pub(crate) fn clear(&mut self) {
        self.heap.clear();
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
        assert!(timers.push(now + Duration::from_secs(2), Box::new(|| {})));
        assert!(!timers.push(now + Duration::from_secs(3), Box::new(|| {})));
        assert!(timers.push(now + Duration::from_secs(1), Box::new(|| {})));
        assert_eq!(timers.len(), 3);
    }
}
