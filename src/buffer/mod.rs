//! `LinkBuffer`: a queue of pooled byte blocks with a nocopy [`Reader`] and [`Writer`].
//!
//! Bytes enter at the writer side (a poller's `readv` into booked blocks, or a user's writes)
//! and become visible to the reader side all at once on [`Writer::flush`] / [`Writer::book_ack`].
//! The reader hands them out as [`bytes::Bytes`]: a reference-count bump when the range lies in
//! one block, exactly one copy when it spans blocks.
//!
//! **Why `Bytes` and not borrows.** A borrow tied to the reader would forbid keeping a frame
//! while reading the next one, and forbid handing it to another thread or linking it into an
//! output buffer (`write_direct`) — the very things an echo or proxy does. `Bytes` costs one
//! atomic increment and outlives `release`, and the pool reclaims a block only once no `Bytes`
//! shares it, so a held frame can never see its memory reused.
//!
//! **Concurrency.** One producer and one consumer may work at the same time; each side is a
//! lock that its party holds while it works (a [`Reader`] or [`Writer`] guard), and the
//! published blocks pass between them through a third, short-held hand-off lock that neither
//! holds while it waits. The published length is an atomic counter. A second reader (or
//! writer) simply waits for the first guard. All of this is safe code; the one `unsafe` is
//! marking the bytes a `readv` wrote as initialised.
//!
//! **Memory.** Blocks come from a bounded pool of power-of-two size classes (512 B – 64 KiB,
//! see [`pool`]). A new buffer allocates nothing; a block is returned to the pool when its bytes
//! are consumed and nothing else shares it; a drained buffer holds no block, so an idle
//! connection holds no buffer memory.
//!
//! ```
//! use netpoll::buffer::LinkBuffer;
//!
//! let buf = LinkBuffer::new();
//! let mut writer = buf.writer();
//! writer.write_string("hello, ");
//! writer.write_binary(b"world\n");
//! writer.flush();                      // visible to the reader from here on
//! drop(writer);
//!
//! let mut reader = buf.reader();
//! assert_eq!(reader.until(b',')?.as_ref(), b"hello,");
//! reader.skip(1)?;
//! assert_eq!(reader.read_string(5)?, "world");
//! assert_eq!(reader.len(), 1);
//! # Ok::<(), std::io::Error>(())
//! ```

pub mod pool;
mod reader;
mod writer;

use std::collections::VecDeque;

use bytes::Bytes;

use crate::loom::{AtomicUsize, Mutex, MutexGuard, Ordering};

pub use reader::Reader;
pub use writer::{Booked, Writer, INITIAL_BOOK_SIZE, MAX_BOOK_SIZE};

/// A linked queue of byte blocks; see the [module documentation](self).
#[derive(Default)]
pub struct LinkBuffer {
    write: Mutex<writer::WriteSide>,
    /// Published chunks on their way from the writer side to the reader side.
    handoff: Mutex<VecDeque<Bytes>>,
    read: Mutex<reader::ReadSide>,
    /// Bytes published and not yet consumed.
    len: AtomicUsize,
}

impl LinkBuffer {
    /// An empty buffer; allocates nothing until data is written.
    pub fn new() -> LinkBuffer {
        LinkBuffer::default()
    }

    /// A buffer holding `data`, published, without copying it.
    pub fn from_bytes(data: Bytes) -> LinkBuffer {
        let buffer = LinkBuffer::new();
        buffer.publish([data]);
        buffer
    }

    /// Bytes readable now (published, not yet consumed).
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// True when nothing is readable.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The reader side; a second reader waits until this guard drops.
    pub fn reader(&self) -> Reader<'_> {
        Reader::new(self, lock(&self.read))
    }

    /// The writer side; a second writer waits until this guard drops.
    pub fn writer(&self) -> Writer<'_> {
        Writer::new(self, lock(&self.write))
    }

    /// Blocks held now, on either side (for tests of the memory contract).
    pub fn block_count(&self) -> usize {
        let writing = lock(&self.write).block_count();
        let handoff = lock(&self.handoff).len();
        let reading = lock(&self.read).block_count();
        writing + handoff + reading
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

impl std::fmt::Debug for LinkBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkBuffer")
            .field("len", &self.len())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The sides hold plain data that no panic leaves half-updated.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn too_short(n: usize, len: usize) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        format!("asked for {n} bytes but {len} are buffered"),
    )
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! `RUSTFLAGS="--cfg loom" cargo test --release --lib loom_tests`
    use super::*;
    use loom::sync::Arc;

    /// A producer publishing while a consumer reads: the consumer sees whole flushes, in
    /// order, and the published length never runs ahead of the readable bytes.
    #[test]
    fn publish_and_consume_concurrently() {
        loom::model(|| {
            let buf = Arc::new(LinkBuffer::new());
            let producer = {
                let buf = buf.clone();
                loom::thread::spawn(move || {
                    let mut writer = buf.writer();
                    writer.write_binary(b"ab");
                    writer.flush();
                    writer.write_direct(Bytes::from_static(b"cd"));
                    writer.flush();
                })
            };
            let mut got = Vec::new();
            while got.len() < 4 {
                let mut reader = buf.reader();
                let n = reader.len();
                if n == 0 {
                    drop(reader);
                    loom::thread::yield_now();
                    continue;
                }
                assert!(n == 2 || n == 4, "a flush became visible in part: {n}");
                got.extend_from_slice(&reader.next(n).expect("len promised these bytes"));
                reader.release();
            }
            assert_eq!(got, b"abcd");
            producer.join().unwrap();
        });
    }
}
