//! A bounded pool of buffer blocks in power-of-two size classes, shared by every buffer.
//!
//! Blocks come back when a buffer has consumed all of one and nothing else still shares it
//! (`Bytes::try_into_mut` proves that), so a request/response connection reuses the same few
//! blocks instead of allocating per read. Each class keeps at most [`MAX_FREE_BYTES`] of free
//! blocks; past that a returned block goes back to the allocator.

use std::sync::Mutex;

use bytes::{Bytes, BytesMut};

/// The smallest block: 512 bytes (CloudWeGo netpoll's first read size).
pub const MIN_BLOCK: usize = 512;
/// The largest pooled block: 64 KiB. Larger requests get exact-size blocks that are not pooled.
pub const MAX_BLOCK: usize = 64 * 1024;
/// Free bytes kept per size class (4 MiB): bounds the pool at 28 MiB over its seven classes.
pub const MAX_FREE_BYTES: usize = 4 << 20;

const CLASSES: usize = (MAX_BLOCK / MIN_BLOCK).trailing_zeros() as usize + 1;

static POOL: [Mutex<Vec<BytesMut>>; CLASSES] = [const { Mutex::new(Vec::new()) }; CLASSES];

/// The class whose blocks hold at least `size` bytes, if it is pooled.
fn class_for(size: usize) -> Option<usize> {
    let size = size.max(MIN_BLOCK).next_power_of_two();
    (size <= MAX_BLOCK).then(|| (size / MIN_BLOCK).trailing_zeros() as usize)
}

fn class_size(class: usize) -> usize {
    MIN_BLOCK << class
}

/// An empty block with room for at least `size` bytes.
///
/// A new block's whole capacity is zeroed once, so its spare room is always initialised
/// memory: the writer lends that room to `readv` as `&mut [u8]` (see `writer::spare`).
pub(crate) fn get(size: usize) -> BytesMut {
    let size = match class_for(size) {
        Some(class) => {
            let reused = POOL[class].lock().unwrap_or_else(|e| e.into_inner()).pop();
            if let Some(block) = reused {
                return block;
            }
            class_size(class)
        }
        None => size,
    };
    let mut block = BytesMut::zeroed(size);
    block.clear();
    block
}

/// Offers a chunk whose bytes were all consumed. Kept if nothing else shares its allocation
/// and its class has room; otherwise dropped (its memory returns when the last sharer drops).
pub(crate) fn recycle(chunk: Bytes) {
    let Ok(mut block) = chunk.try_into_mut() else {
        return;
    };
    block.clear();
    put(block);
}

/// Returns an unused block (e.g. a writer's tail that was never filled).
pub(crate) fn put(mut block: BytesMut) {
    if !block.is_empty() {
        return;
    }
    // Reclaim the whole allocation: possible only when this handle is its sole owner.
    let capacity = largest_class_within(block.capacity());
    let Some(class) = capacity.and_then(class_for) else {
        return;
    };
    if !block.try_reclaim(class_size(class)) {
        return;
    }
    let mut free = POOL[class].lock().unwrap_or_else(|e| e.into_inner());
    if (free.len() + 1) * class_size(class) <= MAX_FREE_BYTES {
        free.push(block);
    }
}

/// The largest class size a block of `capacity` can serve. A block advanced to its end
/// reports capacity 0; `try_reclaim` of the class size tells whether the allocation is big
/// enough, so start from the largest class and let the reclaim decide.
fn largest_class_within(capacity: usize) -> Option<usize> {
    if capacity >= MIN_BLOCK {
        let mut size = MIN_BLOCK;
        while size * 2 <= capacity.min(MAX_BLOCK) {
            size *= 2;
        }
        Some(size)
    } else {
        Some(MIN_BLOCK)
    }
}

/// Free blocks held now, per class (for tests and diagnostics).
pub fn free_blocks() -> [usize; CLASSES] {
    std::array::from_fn(|class| POOL[class].lock().map(|v| v.len()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_round_up_to_powers_of_two() {
        assert_eq!(class_for(1), Some(0));
        assert_eq!(class_for(512), Some(0));
        assert_eq!(class_for(513), Some(1));
        assert_eq!(class_for(64 * 1024), Some(CLASSES - 1));
        assert_eq!(class_for(64 * 1024 + 1), None);
        assert!(get(1000).capacity() >= 1000);
        assert!(get(100_000).capacity() >= 100_000);
    }

    #[test]
    fn a_shared_chunk_is_not_recycled() {
        let mut block = BytesMut::with_capacity(4096);
        block.extend_from_slice(&[1; 100]);
        let chunk = block.split().freeze();
        let other = chunk.clone();
        recycle(chunk); // `other` still shares it: must not be pooled and reused
        assert_eq!(&other[..], &[1; 100][..]);
    }
}
