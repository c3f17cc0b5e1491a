//! Interim buffer for connections until `buffer::LinkBuffer` lands: chunks of `Bytes`, nocopy
//! reads within a chunk, `readv` straight into spare capacity. Same method names as the
//! LinkBuffer's, so the swap is an import change.
//!
//! Three locks, each held by one party: the producer side (poller for input, the writer for
//! output), the consumer side (reader / sender), and a short hand-off queue between them that
//! neither holds while it waits.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{self, IoSlice, IoSliceMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// A queue of byte chunks with a producer side and a consumer side.
#[derive(Default)]
pub struct LinkBuffer {
    write: Mutex<WriteSide>,
    handoff: Mutex<VecDeque<Bytes>>,
    read: Mutex<ReadSide>,
    /// Published bytes not yet consumed.
    len: AtomicUsize,
}

#[derive(Default)]
pub struct WriteSide {
    /// Space being written (malloc, write_binary) or booked for readv.
    tail: BytesMut,
    /// Written, not yet flushed, in order; `tail` content comes after these.
    pending: Vec<Bytes>,
    pending_len: usize,
    booked: usize,
}

#[derive(Default)]
pub struct ReadSide {
    chunks: VecDeque<Bytes>,
    len: usize,
}

pub struct Writer<'a> {
    side: MutexGuard<'a, WriteSide>,
    buffer: &'a LinkBuffer,
}

pub struct Reader<'a> {
    side: MutexGuard<'a, ReadSide>,
    buffer: &'a LinkBuffer,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn short(n: usize, len: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("asked for {n} bytes, {len} buffered"),
    )
}

impl LinkBuffer {
    pub fn new() -> LinkBuffer {
        LinkBuffer::default()
    }

    /// Published bytes not yet consumed.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn producer(&self) -> Writer<'_> {
        Writer {
            side: lock(&self.write),
            buffer: self,
        }
    }

    pub fn consumer(&self) -> Reader<'_> {
        Reader {
            side: lock(&self.read),
            buffer: self,
        }
    }

    fn publish(&self, chunks: impl IntoIterator<Item = Bytes>) {
        let mut handoff = lock(&self.handoff);
        let mut added = 0;
        for chunk in chunks {
            if !chunk.is_empty() {
                added += chunk.len();
                handoff.push_back(chunk);
            }
        }
        drop(handoff);
        self.len.fetch_add(added, Ordering::AcqRel);
    }
}

impl Writer<'_> {
    /// Spare space of at least `size` bytes for one `readv`.
    pub fn book(&mut self, size: usize, _max_blocks: usize) -> Vec<IoSliceMut<'_>> {
        let tail = &mut self.side.tail;
        if tail.capacity() - tail.len() < size {
            tail.reserve(size);
        }
        let spare = tail.spare_capacity_mut();
        let booked = spare.len();
        // SAFETY: readv only writes into the slice; `book_ack` marks as initialised exactly
        // the bytes the kernel reported written.
        let spare: &mut [u8] =
            unsafe { &mut *(spare as *mut [std::mem::MaybeUninit<u8>] as *mut [u8]) };
        self.side.booked = booked;
        vec![IoSliceMut::new(spare)]
    }

    /// Publishes the first `n` booked bytes.
    pub fn book_ack(&mut self, n: usize) {
        let n = n.min(self.side.booked);
        if n == 0 {
            self.side.booked = 0;
            return;
        }
        let booked = std::mem::take(&mut self.side.booked);
        let tail = &mut self.side.tail;
        // SAFETY: the kernel initialised these n bytes of spare capacity in readv.
        unsafe { tail.advance_mut(n) };
        let chunk = tail.split().freeze();
        if n < booked {
            // The socket is drained: an idle connection keeps no spare block.
            *tail = BytesMut::new();
        }
        self.buffer.publish([chunk]);
    }

    pub fn malloc_len(&self) -> usize {
        self.side.pending_len + self.side.tail.len()
    }

    pub fn malloc(&mut self, n: usize) -> &mut [u8] {
        let tail = &mut self.side.tail;
        let at = tail.len();
        tail.resize(at + n, 0);
        &mut tail[at..]
    }

    /// Keeps only the first `n` unflushed bytes.
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
            if keep == 0 {
                return false;
            }
            chunk.truncate(keep.min(chunk.len()));
            keep -= chunk.len();
            true
        });
        side.pending_len = n;
        Ok(())
    }

    pub fn write_binary(&mut self, data: &[u8]) {
        self.side.tail.extend_from_slice(data);
    }

    pub fn write_byte(&mut self, byte: u8) {
        self.side.tail.put_u8(byte);
    }

    pub fn write_direct(&mut self, data: Bytes) {
        self.seal_tail();
        self.side.pending_len += data.len();
        self.side.pending.push(data);
    }

    pub fn append(&mut self, other: LinkBuffer) {
        let mut reader = other.consumer();
        reader.pull();
        let chunks: Vec<Bytes> = reader.side.chunks.drain(..).collect();
        drop(reader);
        self.seal_tail();
        for chunk in chunks {
            self.side.pending_len += chunk.len();
            self.side.pending.push(chunk);
        }
    }

    fn seal_tail(&mut self) {
        if !self.side.tail.is_empty() {
            let chunk = self.side.tail.split().freeze();
            self.side.pending_len += chunk.len();
            self.side.pending.push(chunk);
        }
    }

    /// Makes everything written visible to the consumer at once.
    pub fn flush(&mut self) {
        self.seal_tail();
        let chunks = std::mem::take(&mut self.side.pending);
        self.side.pending_len = 0;
        self.buffer.publish(chunks);
    }
}

impl Reader<'_> {
    /// Moves published chunks into the reader's own queue.
    fn pull(&mut self) {
        let mut handoff = lock(&self.buffer.handoff);
        for chunk in handoff.drain(..) {
            self.side.len += chunk.len();
            self.side.chunks.push_back(chunk);
        }
    }

    fn ensure(&mut self, n: usize) -> io::Result<()> {
        if self.side.len < n {
            self.pull();
        }
        if self.side.len < n {
            return Err(short(n, self.side.len));
        }
        Ok(())
    }

    fn consumed(&mut self, n: usize) {
        self.side.len -= n;
        self.buffer.len.fetch_sub(n, Ordering::AcqRel);
    }

    pub fn next(&mut self, n: usize) -> io::Result<Bytes> {
        let bytes = self.peek(n)?;
        self.skip(n)?;
        Ok(bytes)
    }

    pub fn peek(&mut self, n: usize) -> io::Result<Bytes> {
        self.ensure(n)?;
        let first = &self.side.chunks[0];
        if first.len() >= n {
            return Ok(first.slice(..n));
        }
        let mut out = BytesMut::with_capacity(n);
        for chunk in &self.side.chunks {
            let take = (n - out.len()).min(chunk.len());
            out.extend_from_slice(&chunk[..take]);
            if out.len() == n {
                break;
            }
        }
        Ok(out.freeze())
    }

    pub fn skip(&mut self, n: usize) -> io::Result<()> {
        self.ensure(n)?;
        let mut left = n;
        while left > 0 {
            let front = &mut self.side.chunks[0];
            if front.len() <= left {
                left -= front.len();
                self.side.chunks.pop_front();
            } else {
                front.advance(left);
                left = 0;
            }
        }
        self.consumed(n);
        Ok(())
    }

    /// Position of the first `delim` at or after `from`.
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

    pub fn read_string(&mut self, n: usize) -> io::Result<String> {
        let bytes = self.peek(n)?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
            .to_owned();
        self.skip(n)?;
        Ok(text)
    }

    pub fn read_binary(&mut self, n: usize) -> io::Result<Vec<u8>> {
        self.next(n).map(|b| b.to_vec())
    }

    pub fn read_byte(&mut self) -> io::Result<u8> {
        Ok(self.next(1)?[0])
    }

    pub fn slice(&mut self, n: usize) -> io::Result<LinkBuffer> {
        self.ensure(n)?;
        let out = LinkBuffer::new();
        let mut left = n;
        let mut parts = Vec::new();
        while left > 0 {
            let front = &mut self.side.chunks[0];
            let take = left.min(front.len());
            parts.push(front.split_to(take));
            if front.is_empty() {
                self.side.chunks.pop_front();
            }
            left -= take;
        }
        self.consumed(n);
        out.publish(parts);
        Ok(out)
    }

    /// Chunks are freed as they are consumed; nothing to do.
    pub fn release(&mut self) {}

    /// Up to `max` readable chunks as iovecs for one sendmsg.
    pub fn readable_iovecs(&mut self, max: usize) -> Vec<IoSlice<'_>> {
        self.pull();
        self.side
            .chunks
            .iter()
            .take(max)
            .map(|c| IoSlice::new(c))
            .collect()
    }
}
