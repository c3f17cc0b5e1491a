//! The one place a `LinkBuffer`'s producer and consumer meet: a lock-free hand-off of
//! published chunks.
//!
//! The producer pushes each publish (a flush or a `book_ack`) as one [`Batch`] onto an atomic
//! stack; the consumer takes the whole stack with one `swap` and restores publish order. Neither
//! side ever waits for the other, and an empty hand-off is a null pointer: it holds no memory.
//!
//! Synchronisation: a batch is fully built (its chunks and its link to the older batches) before
//! the producer's `compare_exchange(.., Release)` makes it the top; the consumer's
//! `swap(null, Acquire)` synchronises with that, so every batch it takes is complete. A taken
//! batch is owned by the consumer alone: the producer only ever touches the batch it is pushing
//! and reads the top *pointer* (never the batch behind it). The push's compare-exchange retries
//! only when the consumer emptied the stack in between.

use std::collections::VecDeque;
use std::{mem, ptr};

use super::chunk::Chunk;
use crate::loom::{AtomicPtr, Ordering};

/// One publish, linked to the batch published before it.
struct Batch {
    /// Written by the producer before the push and by the consumer after the take, never by
    /// both; the cell lets loom check that (see `BodyCell`).
    body: BodyCell<Body>,
}

struct Body {
    /// Most publishes carry one chunk: kept inline so a publish costs one allocation.
    first: Chunk,
    rest: Vec<Chunk>,
    older: *mut Batch,
}

/// An unbounded single-producer, single-consumer queue of published chunks (also sound with
/// several of either: the push is a compare-exchange and the take a swap).
///
/// It is `Send + Sync` through `AtomicPtr`; that is sound because a batch holds only chunks of
/// `Bytes` (themselves `Send + Sync`) and passes wholly from the pushing thread to the taking
/// one.
pub(crate) struct Handoff {
    /// The newest batch, or null when nothing is waiting.
    newest: AtomicPtr<Batch>,
    /// One emptied batch that the consumer hands back for the producer's next push, so a
    /// steady stream of publishes allocates nothing; null when there is none.
    spare: AtomicPtr<Batch>,
}

impl Handoff {
    pub(crate) fn new() -> Handoff {
        Handoff {
            newest: AtomicPtr::new(ptr::null_mut()),
            spare: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Publishes `first` followed by `rest` (empty chunks allowed; the consumer drops them).
    pub(crate) fn push(&self, first: Chunk, rest: Vec<Chunk>) {
        let spare = self.spare.swap(ptr::null_mut(), Ordering::Acquire);
        let batch = if spare.is_null() {
            Box::into_raw(Box::new(Batch {
                body: BodyCell::new(Body {
                    first,
                    rest,
                    older: ptr::null_mut(),
                }),
            }))
        } else {
            // SAFETY: the swap took the spare out of the shared slot, so this thread is its
            // only owner, and the Acquire swap synchronises with the consumer's swap that put
            // it there, after emptying it.
            unsafe {
                (*spare).body.with_mut(|body| {
                    (*body).first = first;
                    (*body).rest = rest;
                })
            };
            spare
        };
        let mut newest = self.newest.load(Ordering::Relaxed);
        loop {
            // SAFETY: `batch` came from `Box::into_raw` above and is not shared yet: until the
            // compare-exchange below succeeds, only this thread can reach it.
            unsafe { (*batch).body.with_mut(|body| (*body).older = newest) };
            match self.newest.compare_exchange_weak(
                newest,
                batch,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(now) => newest = now,
            }
        }
    }

    /// Moves every published chunk, oldest first, onto the back of `out`; returns their bytes.
    pub(crate) fn take_all(&self, out: &mut VecDeque<Chunk>) -> usize {
        let newest = self.newest.swap(ptr::null_mut(), Ordering::Acquire);
        // Reverse the newest-first links in place, then walk oldest first.
        let mut oldest = ptr::null_mut();
        let mut at = newest;
        while !at.is_null() {
            // SAFETY: the swap took the whole list out of the shared stack, so this thread is
            // its only owner, and the Acquire swap synchronises with the Release push of every
            // batch in it, so their bodies are fully written.
            at = unsafe {
                (*at).body.with_mut(|body| {
                    let older = (*body).older;
                    (*body).older = oldest;
                    oldest = at;
                    older
                })
            };
        }
        let mut bytes = 0;
        let mut at = oldest;
        while !at.is_null() {
            // SAFETY: as above.
            let (first, rest, older) = unsafe {
                (*at).body.with_mut(|body| {
                    let body = &mut *body;
                    (
                        mem::take(&mut body.first),
                        mem::take(&mut body.rest),
                        body.older,
                    )
                })
            };
            // The emptied batch becomes the spare; the one it displaces (never the producer's:
            // the producer only ever takes from the slot) is freed.
            let displaced = self.spare.swap(at, Ordering::AcqRel);
            free(displaced);
            at = older;
            for chunk in std::iter::once(first).chain(rest) {
                if !chunk.is_empty() {
                    bytes += chunk.len();
                    out.push_back(chunk);
                }
            }
        }
        bytes
    }
}

/// `std`'s `UnsafeCell` with loom's access API, so the same code runs in both builds and loom
/// can check that producer and consumer never touch a batch body without synchronisation.
#[cfg(loom)]
use loom::cell::UnsafeCell as BodyCell;

#[cfg(not(loom))]
struct BodyCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> BodyCell<T> {
    fn new(value: T) -> BodyCell<T> {
        BodyCell(std::cell::UnsafeCell::new(value))
    }

    fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// Frees a batch allocated by `push` (or does nothing for null).
fn free(batch: *mut Batch) {
    if !batch.is_null() {
        // SAFETY: callers pass a batch from `Box::into_raw` in `push` that they alone own (just
        // displaced from the spare slot, or the slot's content on drop); it is freed only here.
        drop(unsafe { Box::from_raw(batch) });
    }
}

impl Drop for Handoff {
    fn drop(&mut self) {
        self.take_all(&mut VecDeque::new());
        free(self.spare.swap(ptr::null_mut(), Ordering::Acquire));
    }
}

impl Default for Handoff {
    fn default() -> Handoff {
        Handoff::new()
    }
}
