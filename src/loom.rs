//! Swaps std's synchronisation primitives for loom's under `--cfg loom`, so the lock-free state
//! machines can be model-checked with the same source (the `bytes` crate does the same).
#![allow(unused_imports)]

#[cfg(loom)]
pub(crate) use loom::sync::{
    atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering},
    Arc, Mutex, MutexGuard,
};

#[cfg(not(loom))]
pub(crate) use std::sync::{
    atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering},
    Arc, Mutex, MutexGuard,
};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::AtomicPtr;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::AtomicPtr;

/// Marks a point where the code relies on the total order of `SeqCst` accesses (a store then a
/// load of another word: the Dekker pairs of the state word and the byte counters). loom models
/// `SeqCst` accesses as `AcqRel` (loom#180, a source of false alarms) but models
/// `fence(SeqCst)` exactly, so under `--cfg loom` this is that fence, placed around each
/// `SeqCst` access of those words: for code whose accesses to them are all `SeqCst` this
/// gives the same executions as C++20's `SeqCst`. Outside loom it is nothing: the accesses
/// are `SeqCst` already.
#[inline(always)]
pub(crate) fn seq_cst_point() {
    #[cfg(loom)]
    loom::sync::atomic::fence(Ordering::SeqCst);
}

/// `SeqCst` counters for loom models that replay code using std's `SeqCst` atomics: every
/// access is fenced on both sides ([`seq_cst_point`]), so the model sees `SeqCst` as C++20 has it.
#[cfg(all(test, loom))]
pub(crate) mod sc {
    use super::{seq_cst_point, Ordering::SeqCst};

    macro_rules! sc_atomic {
        ($name:ident, $atomic:ty, $int:ty) => {
            #[derive(Default)]
            pub(crate) struct $name($atomic);

            #[allow(dead_code)] // each model uses what it needs
            impl $name {
                pub(crate) fn new(value: $int) -> $name {
                    $name(<$atomic>::new(value))
                }
                pub(crate) fn load(&self) -> $int {
                    seq_cst_point();
                    let value = self.0.load(SeqCst);
                    seq_cst_point();
                    value
                }
                pub(crate) fn store(&self, value: $int) {
                    seq_cst_point();
                    self.0.store(value, SeqCst);
                    seq_cst_point();
                }
                pub(crate) fn fetch_add(&self, value: $int) -> $int {
                    seq_cst_point();
                    let previous = self.0.fetch_add(value, SeqCst);
                    seq_cst_point();
                    previous
                }
            }
        };
    }

    sc_atomic!(U64, loom::sync::atomic::AtomicU64, u64);
    sc_atomic!(Usize, loom::sync::atomic::AtomicUsize, usize);
}
