//! The consumer side of a `LinkBuffer`.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use bytes::{Buf, Bytes, BytesMut};

use super::chunk::Chunk;
use super::{pool, too_short, LinkBuffer};
use crate::loom::MutexGuard;

/// Consumed chunks kept for [`Reader::release`] before the reader releases them itself, so a
/// caller that never releases still holds bounded memory.
const MAX_SPENT: usize = 64;

/// What the consumer owns: chunks taken from the hand-off, and consumed chunks waiting for
/// [`Reader::release`] (deferred so that frames handed out as `Bytes` are usually dropped by
/// then, leaving their block unshared and reusable).
#[derive(Default)]
pub(crate) struct ReadSide {
    chunks: VecDeque<Chunk>,
    /// Bytes in `chunks`.
    len: usize,
    spent: Vec<Chunk>,
}

/// Reads a [`LinkBuffer`]: takes bytes as [`Bytes`] that share the buffer's blocks when the
/// range lies in one block (one copy when it spans blocks). Asking for more than
/// [`len`](Reader::len) fails with `UnexpectedEof` and consumes nothing; waiting for more data
/// is the connection's job.
///
/// ```
/// use netpoll::buffer::LinkBuffer;
///
/// let buf = LinkBuffer::new();
/// let mut writer = buf.writer();
/// writer.write_binary(&[0, 5]);
/// writer.write_string("hello");
/// writer.flush();
/// drop(writer);
///
/// let mut reader = buf.reader();
/// let len = u16::from_be_bytes([reader.read_byte()?, reader.read_byte()?]) as usize;
/// assert_eq!(&reader.peek(1)?[..], b"h"); // looks, takes nothing
/// let body = reader.next(len)?; // shares the block, no copy
/// assert_eq!(&body[..], b"hello");
/// assert_eq!(
///     reader.next(1).unwrap_err().kind(),
///     std::io::ErrorKind::UnexpectedEof
/// );
/// reader.release(); // consumed blocks go back to the pool once `body` drops
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Reader<'a> {
    buffer: &'a LinkBuffer,
    side: MutexGuard<'a, ReadSide>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buffer: &'a LinkBuffer, side: MutexGuard<'a, ReadSide>) -> Reader<'a> {
        Reader { buffer, side }
    }

    /// Bytes readable now.
    pub fn len(&self) -> usize {
        self.buffer.len()
    }

    /// True when nothing is readable.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the next `n` bytes.
    pub fn next(&mut self, n: usize) -> io::Result<Bytes> {
        if n == 0 {
            return Ok(Bytes::new());
        }
        self.ensure(n)?;
        let front = &mut self.side.chunks[0];
        let bytes = if front.len() > n {
            front.split_to(n)
        } else if front.len() == n {
            // A clone, not a split: the reader keeps its own hold on the block until
            // `release`, which can then return it to the pool if the caller dropped theirs.
            let whole = front.bytes.clone();
            self.pop_front();
            whole
        } else {
            self.copy_out(n)
        };
        self.consumed(n);
        Ok(bytes)
    }

    /// Returns the next `n` bytes without taking them (shared when in one block, else copied).
    pub fn peek(&mut self, n: usize) -> io::Result<Bytes> {
        if n == 0 {
            return Ok(Bytes::new());
        }
        self.ensure(n)?;
        let front = &self.side.chunks[0];
        if front.len() >= n {
            return Ok(front.slice(..n));
        }
        let mut out = BytesMut::with_capacity(n);
        self.copy_front(n, |part| out.extend_from_slice(part));
        Ok(out.freeze())
    }

    /// Discards the next `n` bytes.
    pub fn skip(&mut self, n: usize) -> io::Result<()> {
        self.ensure(n)?;
        let mut left = n;
        while left > 0 {
            let front = &mut self.side.chunks[0];
            if front.len() > left {
                front.advance(left);
                break;
            }
            left -= front.len();
            self.pop_front();
        }
        self.consumed(n);
        Ok(())
    }

    /// Takes bytes through the first `delim`. Without one buffered, fails with
    /// `UnexpectedEof` and consumes nothing.
    pub fn until(&mut self, delim: u8) -> io::Result<Bytes> {
        match self.find(delim, 0) {
            Some(at) => self.next(at + 1),
            None => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "delimiter not found in the buffered bytes",
            )),
        }
    }

    /// The first block's readable bytes: the longest run readable in place, without a copy
    /// (shorter than [`len`](Reader::len) when the rest lies in later blocks).
    pub fn front(&mut self) -> &[u8] {
        if self.side.chunks.is_empty() {
            self.pull();
        }
        self.side.chunks.front().map_or(&[], |chunk| &chunk[..])
    }

    /// The offset of the first `delim` at or after offset `from`, if buffered. (A connection
    /// waiting for a delimiter passes how far it already searched.)
    pub fn find(&mut self, delim: u8, from: usize) -> Option<usize> {
        self.pull();
        let mut offset = 0;
        for chunk in &self.side.chunks {
            if offset + chunk.len() > from {
                let start = from.saturating_sub(offset);
                if let Some(i) = chunk[start..].iter().position(|b| *b == delim) {
                    return Some(offset + start + i);
                }
            }
            offset += chunk.len();
        }
        None
    }

    /// Takes the next `n` bytes as UTF-8 text; invalid UTF-8 fails with `InvalidData` and
    /// consumes nothing.
    pub fn read_string(&mut self, n: usize) -> io::Result<String> {
        self.ensure(n)?;
        let mut text = Vec::with_capacity(n);
        self.copy_front(n, |part| text.extend_from_slice(part));
        let text =
            String::from_utf8(text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.skip(n)?;
        Ok(text)
    }

    /// Takes the next `n` bytes as a new `Vec` (always a copy; [`next`](Reader::next) avoids
    /// it).
    pub fn read_binary(&mut self, n: usize) -> io::Result<Vec<u8>> {
        self.ensure(n)?;
        let mut out = Vec::with_capacity(n);
        self.copy_front(n, |part| out.extend_from_slice(part));
        self.skip(n)?;
        Ok(out)
    }

    /// Takes one byte.
    pub fn read_byte(&mut self) -> io::Result<u8> {
        self.ensure(1)?;
        let byte = self.side.chunks[0][0];
        self.skip(1)?;
        Ok(byte)
    }

    /// Takes the next `n` bytes as a new, readable buffer that shares their blocks (no copy).
    pub fn slice(&mut self, n: usize) -> io::Result<LinkBuffer> {
        if n == 0 {
            return Ok(LinkBuffer::new());
        }
        self.ensure(n)?;
        let mut parts = Vec::new();
        let mut left = n;
        while left > 0 {
            let front = &mut self.side.chunks[0];
            if front.len() > left {
                parts.push(front.split_chunk(left));
                break;
            }
            left -= front.len();
            parts.push(front.clone());
            self.pop_front();
        }
        self.consumed(n);
        let out = LinkBuffer::new();
        out.publish(Chunk::default(), parts);
        Ok(out)
    }

    /// Frees the blocks already read: each goes back to the pool unless something (a `Bytes`
    /// handed out earlier) still shares it, in which case it is freed when that drops. Bytes
    /// handed out stay valid; this only gives up the reader's own hold.
    pub fn release(&mut self) {
        for chunk in self.side.spent.drain(..) {
            if chunk.pooled {
                pool::recycle(chunk.bytes);
            }
        }
    }

    /// Fills `out` with the readable chunks, in order and up to its length, for one vectored
    /// write (`sendmsg`); returns how many it filled. Follow a partial write with
    /// [`skip`](Reader::skip) and [`release`](Reader::release).
    pub fn readable_slices<'s>(&'s mut self, out: &mut [IoSlice<'s>]) -> usize {
        self.pull();
        let mut filled = 0;
        for (slot, chunk) in out.iter_mut().zip(self.side.chunks.iter()) {
            *slot = IoSlice::new(chunk);
            filled += 1;
        }
        filled
    }

    /// Moves published chunks from the hand-off into the reader's own queue.
    pub(crate) fn pull(&mut self) {
        let side = &mut *self.side;
        side.len += self.buffer.handoff.take_all(&mut side.chunks);
    }

    /// Chunks held (readable or awaiting release).
    pub(crate) fn block_count(&self) -> usize {
        self.side.chunks.len() + self.side.spent.len()
    }

    /// Takes every readable chunk (for `Writer::append`, which owns the buffer).
    pub(crate) fn take_chunks(&mut self) -> VecDeque<Chunk> {
        let n = self.side.len;
        self.side.len = 0;
        self.buffer.count_consumed(n);
        std::mem::take(&mut self.side.chunks)
    }

    /// Makes `n` bytes available in `chunks`, pulling from the hand-off only when short.
    fn ensure(&mut self, n: usize) -> io::Result<()> {
        if self.side.len < n {
            self.pull();
            if self.side.len < n {
                return Err(too_short(n, self.side.len));
            }
        }
        Ok(())
    }

    /// Passes the next `n` bytes (all available) to `sink`, one chunk's part at a time.
    fn copy_front(&self, n: usize, mut sink: impl FnMut(&[u8])) {
        let mut left = n;
        for chunk in &self.side.chunks {
            let take = left.min(chunk.len());
            sink(&chunk[..take]);
            left -= take;
            if left == 0 {
                break;
            }
        }
    }

    /// One copy of the next `n` bytes, which span chunks; consumes them.
    fn copy_out(&mut self, n: usize) -> Bytes {
        let mut out = BytesMut::with_capacity(n);
        while out.len() < n {
            let want = n - out.len();
            let front = &mut self.side.chunks[0];
            if front.len() > want {
                out.extend_from_slice(&front[..want]);
                front.advance(want);
            } else {
                out.extend_from_slice(front);
                self.pop_front();
            }
        }
        out.freeze()
    }

    fn pop_front(&mut self) {
        if let Some(chunk) = self.side.chunks.pop_front() {
            self.side.spent.push(chunk);
            if self.side.spent.len() >= MAX_SPENT {
                self.release();
            }
        }
    }

    fn consumed(&mut self, n: usize) {
        self.side.len -= n;
        if self.side.chunks.front().is_some_and(|c| c.is_empty()) {
            self.pop_front();
        }
        self.buffer.count_consumed(n);
    }
}

impl std::fmt::Debug for Reader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").field("len", &self.len()).finish()
    }
}
