//! The producer side of a `LinkBuffer`: user writes, and the poller's booked reads.

use std::io::{self, IoSliceMut};
use std::mem::MaybeUninit;
use std::ops::{Deref, DerefMut};

use bytes::{BufMut, Bytes, BytesMut};

use super::{lock, pool, LinkBuffer};
use crate::loom::MutexGuard;

/// The first read books 512 bytes (CloudWeGo netpoll's starting book size); each read that
/// fills all it booked doubles the next booking, up to [`MAX_BOOK_SIZE`].
pub const INITIAL_BOOK_SIZE: usize = pool::MIN_BLOCK;
/// The largest single booking: 64 KiB, the largest pooled block.
pub const MAX_BOOK_SIZE: usize = pool::MAX_BLOCK;

/// What the writer owns: the block being filled and, in order before it, chunks written but
/// not yet flushed.
pub(crate) struct WriteSide {
    tail: BytesMut,
    pending: Vec<Bytes>,
    pending_len: usize,
    /// A second block booked for the current read (when the tail's room was short).
    next: Option<BytesMut>,
    booked_in_tail: usize,
    booked_total: usize,
    book_size: usize,
}

impl Default for WriteSide {
    fn default() -> WriteSide {
        WriteSide {
            tail: BytesMut::new(),
            pending: Vec::new(),
            pending_len: 0,
            next: None,
            booked_in_tail: 0,
            booked_total: 0,
            book_size: INITIAL_BOOK_SIZE,
        }
    }
}

impl WriteSide {
    pub(crate) fn block_count(&self) -> usize {
        usize::from(self.tail.capacity() > 0)
            + self.pending.len()
            + usize::from(self.next.is_some())
    }
}

/// Writes a [`LinkBuffer`]. Nothing written is visible to the reader until
/// [`flush`](Writer::flush), which publishes it all at once.
///
/// ```
/// use bytes::Bytes;
/// use netpoll::buffer::LinkBuffer;
///
/// let buf = LinkBuffer::new();
/// let mut writer = buf.writer();
/// let header = writer.malloc(2);                    // room to fill in place
/// header.copy_from_slice(&[0, 5]);
/// writer.write_direct(Bytes::from_static(b"hello")); // linked in, not copied
/// assert_eq!(buf.len(), 0);                         // not visible yet
/// writer.flush();
/// assert_eq!(buf.len(), 7);
/// ```
pub struct Writer<'a> {
    buffer: &'a LinkBuffer,
    side: MutexGuard<'a, WriteSide>,
}

/// Writable space booked for one `readv`, across at most two blocks.
pub struct Booked<'s> {
    slices: [IoSliceMut<'s>; 2],
    count: usize,
}

impl<'s> Deref for Booked<'s> {
    type Target = [IoSliceMut<'s>];
    fn deref(&self) -> &Self::Target {
        &self.slices[..self.count]
    }
}

impl DerefMut for Booked<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.slices[..self.count]
    }
}

impl<'a> Writer<'a> {
    pub(crate) fn new(buffer: &'a LinkBuffer, side: MutexGuard<'a, WriteSide>) -> Writer<'a> {
        Writer { buffer, side }
    }

    /// Returns `n` writable bytes (zeroed), part of the next flush.
    pub fn malloc(&mut self, n: usize) -> &mut [u8] {
        self.reserve(n);
        let tail = &mut self.side.tail;
        let at = tail.len();
        tail.resize(at + n, 0);
        &mut tail[at..]
    }

    /// Bytes written since the last flush.
    pub fn malloc_len(&self) -> usize {
        self.side.pending_len + self.side.tail.len()
    }

    /// Keeps only the first `n` bytes written since the last flush (for a caller that
    /// malloc'ed more than it used). `n` beyond [`malloc_len`](Writer::malloc_len) is an error.
    pub fn malloc_ack(&mut self, n: usize) -> io::Result<()> {
        let total = self.malloc_len();
        if n > total {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("malloc_ack({n}) beyond the {total} bytes written"),
            ));
        }
        let side = &mut *self.side;
        if n >= side.pending_len {
            side.tail.truncate(n - side.pending_len);
            return Ok(());
        }
        side.tail.clear();
        let mut keep = n;
        side.pending.retain_mut(|chunk| {
            let kept = keep.min(chunk.len());
            chunk.truncate(kept);
            keep -= kept;
            kept > 0
        });
        side.pending_len = n;
        Ok(())
    }

    /// Appends UTF-8 text (copied).
    pub fn write_string(&mut self, text: &str) {
        self.write_binary(text.as_bytes());
    }

    /// Appends a copy of `data`.
    pub fn write_binary(&mut self, data: &[u8]) {
        self.reserve(data.len());
        self.side.tail.extend_from_slice(data);
    }

    /// Appends one byte.
    pub fn write_byte(&mut self, byte: u8) {
        self.reserve(1);
        self.side.tail.put_u8(byte);
    }

    /// Links `data` in without copying it.
    pub fn write_direct(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        self.seal_tail();
        self.side.pending_len += data.len();
        self.side.pending.push(data);
    }

    /// Moves everything readable in `other` in, without copying.
    pub fn append(&mut self, other: LinkBuffer) {
        let mut reader = other.reader();
        let n = reader.len();
        let Ok(slice) = reader.slice(n) else {
            return; // `other` is ours alone: its length cannot change under us
        };
        drop(reader);
        let chunks: Vec<Bytes> = lock(&slice.handoff).drain(..).collect();
        self.seal_tail();
        for chunk in chunks {
            self.side.pending_len += chunk.len();
            self.side.pending.push(chunk);
        }
    }

    /// Makes everything written visible to the reader at once.
    pub fn flush(&mut self) {
        self.seal_tail();
        // The tail's spare room goes back with its block once the reader is done: an idle
        // buffer holds no block.
        self.side.tail = BytesMut::new();
        let chunks = std::mem::take(&mut self.side.pending);
        self.side.pending_len = 0;
        self.buffer.publish(chunks);
    }

    /// Writable space of about `size` bytes for one `readv`, across at most `max_blocks`
    /// blocks (1 or 2 are used). Follow with [`book_ack`](Writer::book_ack).
    pub fn book(&mut self, size: usize, max_blocks: usize) -> Booked<'_> {
        let size = size.max(1);
        let side = &mut *self.side;
        let room = side.tail.capacity() - side.tail.len();
        if room < size {
            if max_blocks >= 2 && room > 0 {
                side.next = Some(pool::get(size - room));
            } else if !side.tail.is_empty() {
                // Unflushed user data lives in the tail: keep it in order, start a new block.
                let written = side.tail.split().freeze();
                side.pending_len += written.len();
                side.pending.push(written);
                side.tail = pool::get(size);
            } else if !side.tail.try_reclaim(size) {
                side.tail = pool::get(size);
            }
        }
        let side = &mut *self.side;
        let first = spare(&mut side.tail);
        side.booked_in_tail = first.len();
        let mut slices = [IoSliceMut::new(first), IoSliceMut::new(&mut [])];
        let mut count = 1;
        if let Some(next) = side.next.as_mut() {
            slices[1] = IoSliceMut::new(spare(next));
            count = 2;
        }
        side.booked_total = slices[..count].iter().map(|s| s.len()).sum();
        Booked { slices, count }
    }

    /// Publishes the first `n` booked bytes (what `readv` returned) and adapts the next
    /// booking: doubled after a read that filled it, up to [`MAX_BOOK_SIZE`].
    pub fn book_ack(&mut self, n: usize) {
        let side = &mut *self.side;
        let booked = std::mem::take(&mut side.booked_total);
        let n = n.min(booked);
        if n == booked && side.book_size < MAX_BOOK_SIZE {
            side.book_size *= 2;
        }
        let in_tail = n.min(side.booked_in_tail);
        // SAFETY: `readv` initialised the first `in_tail` bytes of the tail's spare room.
        unsafe { side.tail.advance_mut(in_tail) };
        let mut chunks = [Bytes::new(), Bytes::new()];
        chunks[0] = side.tail.split().freeze();
        if let Some(mut next) = side.next.take() {
            // SAFETY: `readv` fills its buffers in order; the rest of `n` went to this block.
            unsafe { next.advance_mut(n - in_tail) };
            chunks[1] = next.split().freeze();
            side.tail = next;
        }
        if n < booked {
            // The socket is drained: keep no spare block while the connection idles. The
            // block returns to the pool when the reader is done with its bytes.
            side.tail = BytesMut::new();
        }
        self.buffer.publish(chunks);
    }

    /// How many bytes the next [`book`](Writer::book) should ask for.
    pub fn next_book_size(&self) -> usize {
        self.side.book_size
    }

    fn reserve(&mut self, n: usize) {
        let tail = &mut self.side.tail;
        if tail.capacity() - tail.len() >= n {
            return;
        }
        if tail.is_empty() {
            if !tail.try_reclaim(n) {
                *tail = pool::get(n.max(4096));
            }
            return;
        }
        // Keep what the tail holds in order and continue in a fresh block.
        self.seal_tail();
        self.side.tail = pool::get(n.max(4096));
    }

    fn seal_tail(&mut self) {
        if !self.side.tail.is_empty() {
            let chunk = self.side.tail.split().freeze();
            self.side.pending_len += chunk.len();
            self.side.pending.push(chunk);
        }
    }
}

/// The spare room of `block` as a byte slice for `readv` to fill.
///
/// Invariant: every block comes from `pool::get`, which zeroes a new block's whole capacity,
/// and no block grows afterwards (the writer reserves before it writes, and `try_reclaim`
/// never allocates), so the spare room is initialised memory.
fn spare(block: &mut BytesMut) -> &mut [u8] {
    let room: &mut [MaybeUninit<u8>] = block.spare_capacity_mut();
    // SAFETY: by the invariant above these bytes are initialised; MaybeUninit<u8> and u8 have
    // the same layout, and the slice borrows `block` mutably for its whole life.
    unsafe { &mut *(room as *mut [MaybeUninit<u8>] as *mut [u8]) }
}
