//! A run of published bytes, and whether its memory may go back to the pool.

use std::ops::{Deref, DerefMut};

use bytes::Bytes;

/// Bytes moving through a buffer, tagged with where their memory came from.
#[derive(Clone, Debug, Default)]
pub(crate) struct Chunk {
    pub(crate) bytes: Bytes,
    /// True when `bytes` lies in a pool block (filled by a `Writer`). Only those blocks may
    /// return to the pool: the pool lends a block's spare room to `readv` as initialised
    /// memory, and a caller's `Bytes` (`write_direct`, `from_bytes`) may own uninitialised
    /// capacity beyond its length.
    pub(crate) pooled: bool,
}

impl Chunk {
    /// Bytes cut from a pool block.
    pub(crate) fn pooled(bytes: Bytes) -> Chunk {
        Chunk {
            bytes,
            pooled: true,
        }
    }

    /// A caller's bytes, never pooled.
    pub(crate) fn foreign(bytes: Bytes) -> Chunk {
        Chunk {
            bytes,
            pooled: false,
        }
    }

    /// Splits off the first `n` bytes, which keep this chunk's origin.
    pub(crate) fn split_chunk(&mut self, n: usize) -> Chunk {
        Chunk {
            bytes: self.bytes.split_to(n),
            pooled: self.pooled,
        }
    }
}

impl Deref for Chunk {
    type Target = Bytes;
    fn deref(&self) -> &Bytes {
        &self.bytes
    }
}

impl DerefMut for Chunk {
    fn deref_mut(&mut self) -> &mut Bytes {
        &mut self.bytes
    }
}
