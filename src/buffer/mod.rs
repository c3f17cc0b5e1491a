//! `LinkBuffer`: a queue of pooled byte blocks with a nocopy [`Reader`] and [`Writer`].
//!
//! Bytes enter at the writer side (a poller's `readv` into booked blocks, or a user's writes)
//! and become visible to the reader side all at once on [`Writer::flush`] / [`Writer::book_ack`].
//! The reader hands them out as [`bytes::Bytes`]: a reference-count bump when the range lies in
//! one block, exactly one copy when it spans blocks.
//!
//! **Why `Bytes` and not borrows.** A borrow tied to the reader would forbid keeping a frame
//! while reading the next one, and forbid handing it to another thread or linking it into an
//! output buffer (`write_direct`) — the very things an echo server or a proxy does. `Bytes`
//! costs one atomic increment, outlives [`Reader::release`], and the pool reuses a block only
//! once no `Bytes` shares it, so a held frame never sees its memory reused. `peek` returns
//! `Bytes` too (same cost, one type to learn); [`Reader::find`] searches without taking.
//!
//! **Concurrency.** A buffer has one producer and one consumer at a time, which may be on
//! different threads (the poller filling input while a handler reads it; a user filling output
//! while the poller sends it). Each party works through a guard, [`LinkBuffer::writer`] or
//! [`LinkBuffer::reader`]: a per-side lock that only a *second* writer (or reader) ever waits
//! for, so in the single-producer/single-consumer pattern it is never contended. The two sides
//! share no lock: finished chunks cross from producer to consumer through a lock-free hand-off
//! (`handoff.rs`: an atomic stack of publishes, pushed with a Release compare-exchange and taken
//! whole with an Acquire swap). The readable length is two counters, bytes ever published and
//! bytes ever consumed, each stored (not read-modify-written) by its own side only; the
//! producer stores with Release *after* the push and `len()` loads with Acquire, so a reader
//! that sees `len() >= n` finds `n` bytes in the hand-off. The model is checked with loom
//! (`loom_tests` below).
//!
//! **Unsafe, and why it is sound.** Two places. The hand-off owns its batches through raw
//! pointers (`handoff.rs`; loom checks every access to a batch is ordered). And `readv` fills
//! a block's spare room through `&mut [u8]`, which must be initialised memory: pool blocks are
//! zeroed once when allocated and never reallocated, and a caller's `Bytes` (which may own
//! uninitialised capacity) is tagged foreign and never enters the pool (`chunk.rs`).
//!
//! **Memory.** Blocks come from a bounded pool of power-of-two size classes (512 B – 64 KiB,
//! see [`pool`]). A new buffer allocates nothing; a block goes back to the pool once its bytes
//! are consumed and released and nothing else shares it; a drained buffer holds no block, so an
//! idle connection holds no buffer memory ([`LinkBuffer::block_count`] shows it) beyond a few
//! hundred bytes of bookkeeping (queue capacities, one spare hand-off batch). Reads grow with
//! the traffic: [`INITIAL_BOOK_SIZE`] for the first, doubling up to [`MAX_BOOK_SIZE`].
//!
//! ```
//! use netpoll::buffer::LinkBuffer;
//!
//! let buf = LinkBuffer::new();
//! let mut writer = buf.writer();
//! writer.write_string("hello, ");
//! writer.write_binary(b"world\n");
//! writer.flush(); // visible to the reader from here on
//! drop(writer);
//!
//! let mut reader = buf.reader();
//! assert_eq!(reader.until(b',')?.as_ref(), b"hello,");
//! reader.skip(1)?;
//! assert_eq!(reader.read_string(5)?, "world");
//! assert_eq!(reader.len(), 1);
//! # Ok::<(), std::io::Error>(())
//! ```

mod book;
mod chunk;
mod handoff;
pub mod pool;
mod reader;
mod writer;

use bytes::Bytes;

use crate::loom::{AtomicUsize, Mutex, MutexGuard, Ordering};
use chunk::Chunk;
use handoff::Handoff;

pub use book::{Booked, INITIAL_BOOK_SIZE, MAX_BOOK_SIZE};
pub use reader::Reader;
pub use writer::Writer;

/// A linked queue of byte blocks; see the [module documentation](self).
///
/// A writer/reader round trip: frames written into pool blocks come out as [`Bytes`] that share
/// those blocks (no copy), and a caller's own `Bytes` is linked in and handed back as is.
///
/// ```
/// use bytes::Bytes;
/// use netpoll::buffer::LinkBuffer;
///
/// let buf = LinkBuffer::new();
/// assert_eq!(buf.block_count(), 0); // a new buffer holds no memory
///
/// let payload = Bytes::from(vec![7u8; 1000]);
/// let mut writer = buf.writer();
/// writer.write_binary(&4u32.to_be_bytes());
/// writer.write_string("ping");
/// writer.write_direct(payload.clone()); // linked in, not copied
/// writer.flush(); // all three become readable at once
/// drop(writer);
/// assert_eq!(buf.len(), 1008);
///
/// let mut reader = buf.reader();
/// let len = reader.next(4)?;
/// let body = reader.next(u32::from_be_bytes(len[..].try_into().unwrap()) as usize)?;
/// assert_eq!(&body[..], b"ping");
/// // nocopy `next`: both frames point into the block they were written to, side by side.
/// assert_eq!(len.as_ptr().wrapping_add(4), body.as_ptr());
/// // The caller's Bytes comes back as the same memory.
/// assert_eq!(reader.next(1000)?.as_ptr(), payload.as_ptr());
/// assert!(reader.is_empty());
///
/// reader.release(); // consumed blocks go back to the pool once no Bytes shares them
/// drop(reader);
/// assert_eq!(buf.block_count(), 0);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Default)]
pub struct LinkBuffer {
    /// The producer's state; only a second producer ever waits for this lock.
    write: Mutex<writer::WriteSide>,
    /// Published chunks on their way from the producer to the consumer.
    handoff: Handoff,
    /// The consumer's state; only a second consumer ever waits for this lock.
    read: Mutex<reader::ReadSide>,
    /// Bytes ever published. Only the producer writes it (holding `write`, or owning a new
    /// buffer), so it is a plain store, not a read-modify-write, and no cache line is fought
    /// over by both sides; likewise `consumed` for the consumer.
    published: AtomicUsize,
    /// Bytes ever consumed; only the consumer writes it (holding `read`).
    consumed: AtomicUsize,
}

impl LinkBuffer {
    /// An empty buffer; allocates nothing until data is written.
    pub fn new() -> LinkBuffer {
        LinkBuffer::default()
    }

    /// A buffer holding `data`, readable at once, without copying it.
    pub fn from_bytes(data: Bytes) -> LinkBuffer {
        let buffer = LinkBuffer::new();
        buffer.publish(Chunk::foreign(data), Vec::new());
        buffer
    }

    /// Bytes readable now (published, not yet consumed).
    pub fn len(&self) -> usize {
        // `consumed` first: it never passes `published`, so the difference cannot underflow
        // however the two sides move between the loads.
        let consumed = self.consumed.load(Ordering::Acquire);
        self.published
            .load(Ordering::Acquire)
            .wrapping_sub(consumed)
    }

    /// True when nothing is readable.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The consumer side. While the guard lives, another `reader()` call waits.
    pub fn reader(&self) -> Reader<'_> {
        Reader::new(self, lock(&self.read))
    }

    /// The consumer side if no other guard holds it now (`None` instead of waiting).
    pub fn try_reader(&self) -> Option<Reader<'_>> {
        let guard = match self.read.try_lock() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        Some(Reader::new(self, guard))
    }

    /// The producer side. While the guard lives, another `writer()` call waits.
    pub fn writer(&self) -> Writer<'_> {
        Writer::new(self, lock(&self.write))
    }

    /// Blocks this buffer holds now, on either side (a block shared by several chunks counts
    /// once per chunk). Zero for a new or drained-and-released buffer: an idle connection
    /// holds no buffer memory. Takes both side locks, so call it with no guard alive.
    pub fn block_count(&self) -> usize {
        let writing = lock(&self.write).block_count();
        let mut reader = self.reader();
        reader.pull();
        writing + reader.block_count()
    }

    /// Hands `first` and `rest` to the consumer, then counts them readable. The order matters:
    /// a consumer that sees the new length must find the chunks in the hand-off. The caller is
    /// the producer: it holds the write side, or owns a buffer nobody else can see yet.
    fn publish(&self, first: Chunk, rest: Vec<Chunk>) {
        let added = first.len() + rest.iter().map(|chunk| chunk.len()).sum::<usize>();
        if added == 0 {
            return;
        }
        self.handoff.push(first, rest);
        let published = self.published.load(Ordering::Relaxed);
        self.published
            .store(published.wrapping_add(added), Ordering::Release);
    }

    /// Counts `n` bytes consumed; the caller holds the read side.
    fn count_consumed(&self, n: usize) {
        let consumed = self.consumed.load(Ordering::Relaxed);
        self.consumed
            .store(consumed.wrapping_add(n), Ordering::Release);
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
    // A side holds plain data that no panic leaves half-updated, so poisoning is ignored.
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

    /// A producer publishing while a consumer reads: the consumer sees whole publishes, in
    /// order, and the published length never runs ahead of the chunks in the hand-off.
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
                assert!(n == 2 || n == 4, "a publish became visible in part: {n}");
                got.extend_from_slice(&reader.next(n).expect("len promised these bytes"));
                reader.release();
            }
            assert_eq!(got, b"abcd");
            producer.join().unwrap();
            assert_eq!(buf.block_count(), 0);
        });
    }

    /// The hand-off alone, with the consumer taking while the producer pushes three times:
    /// nothing is lost, duplicated or reordered, and what is left is freed on drop.
    #[test]
    fn handoff_keeps_order_across_concurrent_takes() {
        loom::model(|| {
            let handoff = Arc::new(Handoff::new());
            let producer = {
                let handoff = handoff.clone();
                loom::thread::spawn(move || {
                    for byte in [b"a", b"b", b"c"] {
                        handoff.push(Chunk::foreign(Bytes::from_static(byte)), Vec::new());
                    }
                })
            };
            let mut taken = std::collections::VecDeque::new();
            handoff.take_all(&mut taken);
            handoff.take_all(&mut taken);
            producer.join().unwrap();
            let seen: Vec<u8> = taken.iter().map(|c| c[0]).collect();
            assert!(b"abc".starts_with(&seen), "out of order: {seen:?}");
        });
    }

    /// A published read (`book_ack`) and its release race a second read booking into the
    /// block's leftover room: the reader must see exactly the acknowledged bytes.
    #[test]
    fn booked_reads_publish_exactly_what_was_acknowledged() {
        loom::model(|| {
            let buf = Arc::new(LinkBuffer::new());
            let producer = {
                let buf = buf.clone();
                loom::thread::spawn(move || {
                    for byte in [1u8, 2] {
                        let mut writer = buf.writer();
                        let mut booked = writer.book(4, 2);
                        booked[0][0] = byte;
                        writer.book_ack(1);
                    }
                })
            };
            let mut got = Vec::new();
            while got.len() < 2 {
                let mut reader = buf.reader();
                let result = reader.read_byte();
                reader.release();
                drop(reader);
                match result {
                    Ok(byte) => got.push(byte),
                    Err(_) => loom::thread::yield_now(),
                }
            }
            producer.join().unwrap();
            assert_eq!(got, [1, 2]);
        });
    }
}
