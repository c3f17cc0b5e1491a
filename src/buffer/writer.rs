//! The producer side of a `LinkBuffer`: user writes, and the poller's booked reads.

use std::io;
use std::mem::{self, MaybeUninit};

use bytes::{BufMut, Bytes, BytesMut};

use super::book::{self, Booked, INITIAL_BOOK_SIZE};
use super::chunk::Chunk;
use super::{pool, LinkBuffer};
use crate::loom::MutexGuard;

/// The smallest block a write starts: 4 KiB, so a run of small writes shares one block
/// instead of taking a 512-byte block each.
const WRITE_BLOCK: usize = 4096;

/// What the producer owns: the block being filled and, in order before its bytes, chunks
/// written but not yet published.
///
/// Invariant: `tail` and `next` come from `pool::get` (whose blocks are zeroed when first
/// allocated) or are empty, and they never reallocate (every write first makes room with
/// `replace_tail`, and `try_reclaim` never allocates), so their spare room is initialised memory.
pub(crate) struct WriteSide {
    tail: BytesMut,
    /// Chunks cut from `tail` share its block: then a retired tail cannot be pooled (the block
    /// returns with the last chunk), so don't try.
    tail_shared: bool,
    pending: Vec<Chunk>,
    /// Bytes in `pending`.
    pending_len: usize,
    /// The second block of the outstanding booking, when the tail's room was short.
    next: Option<BytesMut>,
    /// The outstanding booking: bytes of it in the tail, and in all.
    booked_in_tail: usize,
    booked: usize,
    book_size: usize,
}

impl Default for WriteSide {
    fn default() -> WriteSide {
        WriteSide {
            tail: BytesMut::new(),
            tail_shared: false,
            pending: Vec::new(),
            pending_len: 0,
            next: None,
            booked_in_tail: 0,
            booked: 0,
            book_size: INITIAL_BOOK_SIZE,
        }
    }
}

impl WriteSide {
    /// Makes `block` the tail, handing the old tail's block back.
    fn set_tail(&mut self, block: BytesMut) {
        let old = mem::replace(&mut self.tail, block);
        // A shared block returns with its last chunk; an unshared one with no room is
        // `BytesMut::new()`, no block at all.
        if !mem::replace(&mut self.tail_shared, false) && old.capacity() > 0 {
            pool::put(old);
        }
    }

    pub(crate) fn block_count(&self) -> usize {
        // A full tail (capacity 0) still holds its block while chunks share it.
        usize::from(self.tail.capacity() > 0 || self.tail_shared)
            + self.pending.len()
            + usize::from(self.next.is_some())
    }
}

/// Writes a [`LinkBuffer`]. Nothing written is visible to the reader until
/// [`flush`](Writer::flush) (or, for the poller's reads, [`book_ack`](Writer::book_ack)),
/// which publishes it all at once.
///
/// User writes copy into pooled blocks (`write_*`, `malloc`) or link the caller's memory in
/// (`write_direct`, `append`). The poller's reads go through [`book`](Writer::book): space for
/// one `readv`, published by `book_ack`.
///
/// ```
/// use bytes::Bytes;
/// use netpoll::buffer::LinkBuffer;
///
/// let buf = LinkBuffer::new();
/// let mut writer = buf.writer();
/// let header = writer.malloc(2); // room to fill in place
/// header.copy_from_slice(&[0, 5]);
/// writer.write_direct(Bytes::from_static(b"hello")); // linked in, not copied
/// assert_eq!(writer.malloc_len(), 7);
/// assert_eq!(buf.len(), 0); // not visible yet
/// writer.flush();
/// assert_eq!(buf.len(), 7);
///
/// // The poller's side: book space, let `readv` fill it, publish what it read.
/// let mut booked = writer.book(writer.next_book_size(), 2);
/// booked[0][..3].copy_from_slice(b"abc"); // what a readv would do
/// writer.book_ack(3);
/// assert_eq!(buf.len(), 10);
/// ```
pub struct Writer<'a> {
    buffer: &'a LinkBuffer,
    side: MutexGuard<'a, WriteSide>,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(buffer: &'a LinkBuffer, side: MutexGuard<'a, WriteSide>) -> Writer<'a> {
        Writer { buffer, side }
    }

    /// Returns `n` contiguous writable bytes, part of the next flush. They are zeroed, never
    /// stale: a caller that fills fewer and forgets [`malloc_ack`](Writer::malloc_ack) must not
    /// send another connection's old bytes.
    pub fn malloc(&mut self, n: usize) -> &mut [u8] {
        if spare_len(&self.side.tail) < n {
            self.replace_tail(n.max(WRITE_BLOCK));
        }
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
    /// malloc'ed more than it used). `n` beyond [`malloc_len`](Writer::malloc_len) fails with
    /// `InvalidInput` and changes nothing.
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

    /// Appends a copy of `data`, across as many blocks as it takes (each at most
    /// [`pool::MAX_BLOCK`]).
    pub fn write_binary(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let mut room = spare_len(&self.side.tail);
            if room == 0 {
                self.replace_tail(data.len().clamp(WRITE_BLOCK, pool::MAX_BLOCK));
                room = spare_len(&self.side.tail);
            }
            let (now, later) = data.split_at(room.min(data.len()));
            self.side.tail.extend_from_slice(now);
            data = later;
        }
    }

    /// Appends one byte.
    pub fn write_byte(&mut self, byte: u8) {
        if spare_len(&self.side.tail) == 0 {
            self.replace_tail(WRITE_BLOCK);
        }
        self.side.tail.put_u8(byte);
    }

    /// Links `data` in at the current position without copying it. (netpoll's
    /// `WriteDirect(p, remainCap)` can also insert into space malloc'ed earlier; here the
    /// caller writes in order instead.)
    pub fn write_direct(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        self.seal_tail();
        self.side.pending_len += data.len();
        self.side.pending.push(Chunk::foreign(data));
    }

    /// Moves all of `other` (flushed or not) in after what this writer holds, without copying.
    pub fn append(&mut self, other: LinkBuffer) {
        other.writer().flush();
        let mut reader = other.reader();
        reader.pull();
        let chunks = reader.take_chunks();
        drop(reader);
        self.seal_tail();
        for chunk in chunks {
            self.side.pending_len += chunk.len();
            self.side.pending.push(chunk);
        }
    }

    /// Makes everything written visible to the reader at once.
    pub fn flush(&mut self) {
        self.seal_tail();
        // Hand the tail's block back: once the reader releases its bytes it returns to the
        // pool, so an idle buffer holds no block. The next write takes one from the pool.
        self.side.set_tail(BytesMut::new());
        self.publish();
    }

    /// Writable space of `size` bytes (at least 1) for one `readv`: the tail block's room and,
    /// when that is short and `max_blocks >= 2`, a second block for the rest. Follow with
    /// [`book_ack`](Writer::book_ack); booking again first cancels this booking.
    pub fn book(&mut self, size: usize, max_blocks: usize) -> Booked<'_> {
        let size = size.max(1);
        if let Some(unused) = self.side.next.take() {
            pool::put(unused);
        }
        let room = spare_len(&self.side.tail);
        if room < size {
            if max_blocks >= 2 && room > 0 {
                self.side.next = Some(pool::get(size - room));
            } else {
                self.replace_tail(size);
            }
        }
        let side = &mut *self.side;
        let in_tail = spare_len(&side.tail).min(size);
        side.booked_in_tail = in_tail;
        side.booked = size;
        let first = &mut spare(&mut side.tail)[..in_tail];
        let second = side
            .next
            .as_mut()
            .map(|next| &mut spare(next)[..size - in_tail]);
        Booked::new(first, second)
    }

    /// Publishes the first `n` booked bytes (what `readv` returned; more is clamped to the
    /// booking) together with anything written before them, and adapts the next booking:
    /// doubled after a read that filled it, up to [`MAX_BOOK_SIZE`](super::MAX_BOOK_SIZE). A
    /// short read means the socket is drained, so the tail block is handed back: an idle
    /// connection holds no buffer memory.
    pub fn book_ack(&mut self, n: usize) {
        let side = &mut *self.side;
        let booked = mem::take(&mut side.booked);
        let n = n.min(booked);
        if n == booked && booked >= side.book_size {
            side.book_size = book::next_book_size(side.book_size, n);
        }
        let in_tail = n.min(side.booked_in_tail);
        // SAFETY: the first `in_tail` bytes of the tail's spare room were booked and `readv`
        // filled them; they were initialised before that anyway (the `WriteSide` invariant),
        // and `in_tail <= booked_in_tail <= spare room`, so the length stays within capacity.
        unsafe { side.tail.advance_mut(in_tail) };
        self.seal_tail();
        if let Some(mut next) = self.side.next.take() {
            let in_next = n - in_tail;
            // SAFETY: `readv` fills its slices in order, so the rest of `n` went to the start
            // of this block's spare room, which the second booked slice covered.
            unsafe { next.advance_mut(in_next) };
            self.side.set_tail(next);
            self.seal_tail();
        }
        if n < booked {
            // The socket is drained: hand the block back (it returns to the pool with its
            // last chunk). After a full read the tail stays, even when full: the poller reads
            // again at once (a full read means more may wait), and the next `book` can rewind
            // the block in place if the reader has released it by then. That next read ends
            // short sooner or later, so an idle connection still holds no block.
            self.side.set_tail(BytesMut::new());
        }
        self.publish();
    }

    /// How many bytes the next [`book`](Writer::book) should ask for: starts at
    /// [`INITIAL_BOOK_SIZE`](super::INITIAL_BOOK_SIZE), doubles after each read that filled
    /// its booking.
    pub fn next_book_size(&self) -> usize {
        self.side.book_size
    }

    /// Replaces the tail with a block of at least `capacity` bytes, keeping its bytes in order.
    fn replace_tail(&mut self, capacity: usize) {
        self.seal_tail();
        let side = &mut *self.side;
        // An empty tail whose chunks were all released is unshared again: rewind it in place.
        if side.tail.try_reclaim(capacity) {
            side.tail_shared = false;
            return;
        }
        side.set_tail(pool::get(capacity));
    }

    /// Moves the tail's bytes to `pending` (the tail keeps its spare room).
    fn seal_tail(&mut self) {
        let side = &mut *self.side;
        if !side.tail.is_empty() {
            let chunk = Chunk::pooled(side.tail.split().freeze());
            side.tail_shared = true;
            side.pending_len += chunk.len();
            side.pending.push(chunk);
        }
    }

    fn publish(&mut self) {
        let side = &mut *self.side;
        side.pending_len = 0;
        if side.pending.len() == 1 {
            // The common case: one chunk, sent inline; `pending` keeps its allocation.
            let chunk = side.pending.pop().expect("one chunk");
            self.buffer.publish(chunk, Vec::new());
        } else if !side.pending.is_empty() {
            self.buffer
                .publish(Chunk::default(), mem::take(&mut side.pending));
        }
    }
}

impl std::fmt::Debug for Writer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("malloc_len", &self.malloc_len())
            .finish()
    }
}

fn spare_len(block: &BytesMut) -> usize {
    block.capacity() - block.len()
}

/// The spare room of `block` as bytes for `readv` to fill.
fn spare(block: &mut BytesMut) -> &mut [u8] {
    let room: &mut [MaybeUninit<u8>] = block.spare_capacity_mut();
    // SAFETY: by the `WriteSide` invariant these bytes are initialised; `MaybeUninit<u8>` and
    // `u8` have the same layout, and the slice mutably borrows `block` for its whole life.
    unsafe { &mut *(room as *mut [MaybeUninit<u8>] as *mut [u8]) }
}
