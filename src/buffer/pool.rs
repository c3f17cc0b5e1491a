//! A bounded pool of buffer blocks in power-of-two size classes, shared by every buffer.
//!
//! A block comes back when a buffer has consumed and released all of it and nothing else
//! shares it (`Bytes::try_into_mut` proves that), so a request/response connection reuses the
//! same few blocks instead of allocating per read. Each class keeps at most [`MAX_FREE_BYTES`]
//! of free blocks; past that a returned block goes back to the allocator. A class is a
//! `Mutex<Vec<_>>` taken for one push or pop: blocks move through it once per block filled,
//! not per read or write call, so it is far from the hot path.

use std::sync::Mutex;

use bytes::{Bytes, BytesMut};

/// The smallest block: 512 bytes (netpoll's first read size).
pub const MIN_BLOCK: usize = 512;
/// The largest pooled block: 64 KiB. Larger requests get exact-size blocks that are not pooled.
pub const MAX_BLOCK: usize = 64 * 1024;
/// Free bytes kept per size class (4 MiB): bounds the pool at 32 MiB over its eight classes.
pub const MAX_FREE_BYTES: usize = 4 << 20;

/// Size classes: 512 B, 1 KiB, … 64 KiB.
pub const CLASSES: usize = (MAX_BLOCK / MIN_BLOCK).trailing_zeros() as usize + 1;

static FREE: [Mutex<Vec<BytesMut>>; CLASSES] = [const { Mutex::new(Vec::new()) }; CLASSES];

/// The class whose blocks hold at least `size` bytes, if it is pooled.
fn class_for(size: usize) -> Option<usize> {
    let size = size.max(MIN_BLOCK).checked_next_power_of_two()?;
    (size <= MAX_BLOCK).then(|| (size / MIN_BLOCK).trailing_zeros() as usize)
}

fn class_size(class: usize) -> usize {
    MIN_BLOCK << class
}

fn free_list(class: usize) -> std::sync::MutexGuard<'static, Vec<BytesMut>> {
    FREE[class].lock().unwrap_or_else(|e| e.into_inner())
}

/// An empty block with room for at least `size` bytes.
///
/// A new block's whole capacity is zeroed once, so its spare room is always initialised memory:
/// the writer lends that room to `readv` as `&mut [u8]` without zeroing it per read.
pub(crate) fn get(size: usize) -> BytesMut {
    let size = match class_for(size) {
        Some(class) => {
            if let Some(block) = free_list(class).pop() {
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

/// Offers a chunk whose bytes were all consumed. Pooled if nothing else shares its block;
/// otherwise dropped (the block is freed when its last sharer drops).
pub(crate) fn recycle(chunk: Bytes) {
    if let Ok(block) = chunk.try_into_mut() {
        put(block);
    }
}

/// Offers a block handle whose bytes are no longer needed (a writer's retired tail, or a
/// consumed chunk). Pooled, rewound to the start of its allocation, if the handle is the
/// block's only owner, the block is a pooled size and its class has room.
pub(crate) fn put(mut block: BytesMut) {
    block.clear();
    // The handle may sit anywhere in its allocation. Asking for one byte more than its room
    // rewinds it to the start (`try_reclaim` never allocates, and only the sole owner may
    // rewind), after which its capacity is the allocation's size. A handle already at the
    // start refuses and keeps its full capacity; a shared one refuses and keeps only its own
    // room, which rarely is a class size and is still memory no other handle touches.
    let room = block.capacity();
    let _ = block.try_reclaim(room + 1);
    let size = block.capacity();
    let Some(class) = class_for(size).filter(|&class| class_size(class) == size) else {
        return; // not one of ours (a caller's buffer), or too big to pool
    };
    let mut free = free_list(class);
    if (free.len() + 1) * size <= MAX_FREE_BYTES {
        free.push(block);
    }
}

/// Free blocks held now, per class, smallest first (for tests and diagnostics).
pub fn free_blocks() -> [usize; CLASSES] {
    std::array::from_fn(|class| free_list(class).len())
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
        assert_eq!(class_for(usize::MAX), None);
        assert!(get(1000).capacity() >= 1000);
        assert!(get(100_000).capacity() >= 100_000);
    }

    #[test]
    fn a_shared_chunk_is_not_recycled() {
        let mut block = get(4096);
        block.extend_from_slice(&[1; 100]);
        let chunk = block.split().freeze();
        drop(block);
        let other = chunk.clone();
        recycle(chunk); // `other` still shares it: must not be pooled and reused
        let reused = get(4096);
        assert_eq!(&other[..], &[1; 100][..]);
        assert_ne!(reused.as_ptr(), other.as_ptr());
    }

    #[test]
    fn a_consumed_block_returns_whole_to_its_own_class() {
        let mut block = get(2048);
        let start = block.as_ptr();
        block.extend_from_slice(&[2; 700]);
        let mut chunk = block.split().freeze();
        drop(block);
        chunk.advance_to_end();
        recycle(chunk);
        // Another test may take it first; only check what we get if it is ours.
        let again = get(2048);
        if again.as_ptr() == start {
            assert_eq!(again.capacity(), 2048);
        }
    }

    trait AdvanceToEnd {
        fn advance_to_end(&mut self);
    }
    impl AdvanceToEnd for Bytes {
        fn advance_to_end(&mut self) {
            bytes::Buf::advance(self, self.len());
        }
    }
}
