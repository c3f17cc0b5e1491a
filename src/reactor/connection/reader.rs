//! `ConnReader`: the input buffer's reader, made to wait for bytes that have not arrived yet.

use std::io::{self, ErrorKind, Result};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::state::*;
use super::{eof_error, lock, wait_until, ConnInner, READER_GATE, READ_WAIT};
use crate::buffer::{LinkBuffer, Reader};
use crate::rt::wait::{lock_gate, GateGuard};

/// Reads a connection's input. Every call that needs n bytes waits until they arrived, the
/// read timeout passed (`TimedOut`), or the connection closed (`UnexpectedEof` once the peer
/// finished and fewer than n bytes are left; `NotConnected` after a local close).
///
/// Returned `Bytes` share the buffer's blocks when the range lies in one block (no copy).
///
/// A length-prefixed frame whose body arrives later; each `next` waits for its bytes:
///
/// ```
/// use std::io::Write;
/// use std::time::Duration;
/// # let server = std::net::TcpListener::bind("127.0.0.1:0")?;
/// # let conn = netpoll::Dialer::new().dial_tcp("tcp", server.local_addr()?)?;
/// # let (mut peer, _) = server.accept()?;
/// // `conn` is a netpoll::Connection, `peer` a std::net::TcpStream at its other end.
/// conn.set_read_timeout(Some(Duration::from_secs(5)));
/// peer.write_all(&5u32.to_be_bytes())?;
/// let sender = std::thread::spawn(move || {
///     std::thread::sleep(Duration::from_millis(20));
///     peer.write_all(b"hello")
/// });
///
/// let mut reader = conn.reader();
/// let header = reader.next(4)?;                       // waits for 4 bytes
/// let len = u32::from_be_bytes(header[..].try_into().unwrap()) as usize;
/// let body = reader.next(len)?;                       // waits for the body
/// assert_eq!(&body[..], b"hello");
/// assert!(reader.is_empty());
/// # sender.join().unwrap()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct ConnReader<'a> {
    inner: &'a Arc<ConnInner>,
    /// The input buffer's consumer side; holding it serialises readers.
    reader: Reader<'a>,
    /// Taken first, released last (fields drop in order): the serialisation a coroutine can
    /// wait on without stalling its poller.
    _serial: GateGuard<'a>,
}

impl std::fmt::Debug for ConnReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Atomics only: safe to print from a handler or while another thread waits.
        f.debug_struct("ConnReader")
            .field("fd", &self.inner.socket.as_raw_fd())
            .field("buffered", &self.inner.buffered())
            .finish()
    }
}

impl<'a> ConnReader<'a> {
    pub(crate) fn new(inner: &'a Arc<ConnInner>) -> ConnReader<'a> {
        let serial = lock_gate(&inner.waiters, READER_GATE);
        ConnReader {
            inner,
            reader: inner.input.reader(),
            _serial: serial,
        }
    }

    /// Bytes readable now without waiting.
    pub fn len(&self) -> usize {
        self.inner.buffered()
    }

    /// True when nothing is readable now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the next `n` bytes, waiting for them.
    pub fn next(&mut self, n: usize) -> Result<Bytes> {
        self.wait_for(n)?;
        let bytes = self.reader.next(n)?;
        self.inner.consumed(n);
        Ok(bytes)
    }

    /// Returns the next `n` bytes without taking them, waiting for them.
    pub fn peek(&mut self, n: usize) -> Result<Bytes> {
        self.wait_for(n)?;
        self.reader.peek(n)
    }

    /// Discards the next `n` bytes, waiting for them.
    pub fn skip(&mut self, n: usize) -> Result<()> {
        self.wait_for(n)?;
        self.reader.skip(n)?;
        self.inner.consumed(n);
        Ok(())
    }

    /// Waits until at least `n` bytes are buffered, taking none: what a parser calls once it
    /// knows how long the rest of its frame is. For an inline handler this is the
    /// `WouldBlock` that starts the read timeout's clock for a partial frame, so a handler
    /// that has answered everything and holds no partial frame returns `Ok` instead of asking
    /// for one more byte.
    pub fn fill(&mut self, n: usize) -> Result<()> {
        self.wait_for(n)
    }

    /// The offset of the first `delim` at or after offset `from` among the bytes buffered now.
    /// Never waits.
    pub fn find(&mut self, delim: u8, from: usize) -> Option<usize> {
        let available = self.len();
        // Only counted bytes (see `until`).
        self.reader.find(delim, from).filter(|&at| at < available)
    }

    /// The first block of what is buffered now: bytes a parser can look at in place. Never
    /// waits; shorter than [`len`](ConnReader::len) when the rest lies in later blocks.
    pub fn front(&mut self) -> &[u8] {
        let available = self.len();
        let front = self.reader.front();
        // Only counted bytes (see `until`).
        &front[..front.len().min(available)]
    }

    /// Takes bytes up to and including `delim`, waiting until it arrives.
    pub fn until(&mut self, delim: u8) -> Result<Bytes> {
        let mut searched = 0;
        // One deadline for the whole line: a fresh one per byte would let a client that
        // trickles a byte at a time hold the wait forever.
        let deadline = self.inner.read_timeout().map(|t| Instant::now() + t);
        loop {
            let available = self.len();
            // Only what the counters say has arrived: the poller puts bytes in the buffer a
            // moment before it counts them, and taking those would overtake `arrived`.
            let found = self
                .reader
                .find(delim, searched)
                .filter(|&at| at < available);
            if let Some(at) = found {
                let bytes = self.reader.next(at + 1)?;
                self.inner.consumed(at + 1);
                return Ok(bytes);
            }
            searched = available;
            self.wait_for_by(available + 1, deadline)?;
        }
    }

    /// Takes the next `n` bytes as UTF-8 text, waiting for them. Invalid UTF-8 is an
    /// `InvalidData` error and consumes nothing.
    pub fn read_string(&mut self, n: usize) -> Result<String> {
        self.wait_for(n)?;
        let text = self.reader.read_string(n)?;
        self.inner.consumed(n);
        Ok(text)
    }

    /// Copies the next `n` bytes into a new `Vec`, waiting for them.
    pub fn read_binary(&mut self, n: usize) -> Result<Vec<u8>> {
        self.wait_for(n)?;
        let data = self.reader.read_binary(n)?;
        self.inner.consumed(n);
        Ok(data)
    }

    /// Takes one byte, waiting for it.
    pub fn read_byte(&mut self) -> Result<u8> {
        self.wait_for(1)?;
        let byte = self.reader.read_byte()?;
        self.inner.consumed(1);
        Ok(byte)
    }

    /// Takes the next `n` bytes as a new, independent [`LinkBuffer`] that shares
    /// their blocks (no copy), waiting for them.
    pub fn slice(&mut self, n: usize) -> Result<LinkBuffer> {
        self.wait_for(n)?;
        let slice = self.reader.slice(n)?;
        self.inner.consumed(n);
        Ok(slice)
    }

    /// Frees blocks already read. The handler task also does this after each `on_request`.
    pub fn release(&mut self) {
        self.reader.release();
    }

    /// Waits until at least `n` bytes are buffered, for the read timeout at most.
    fn wait_for(&self, n: usize) -> Result<()> {
        self.wait_for_by(n, None)
    }

    /// Waits until at least `n` bytes are buffered, until `deadline` if given (else for the
    /// read timeout from now).
    fn wait_for_by(&self, n: usize, deadline: Option<Instant>) -> Result<()> {
        let inner = self.inner;
        if inner.buffered() >= n {
            if inner.inline_want.load(Ordering::Relaxed) != 0 {
                inner.inline_want.store(0, Ordering::SeqCst);
            }
            return Ok(());
        }
        if inner.runs_inline_here() {
            // Inline handlers run on the poller: waiting would stop the very thread that reads.
            // Once the input has ended, more will never come.
            let state = inner.state.load();
            if state & CLOSED != 0 && state & PEER_CLOSED == 0 {
                return Err(inner.closed_error());
            }
            if state & (PEER_CLOSED | CLOSED) != 0 {
                return Err(eof_error());
            }
            // "Call me again when more input arrived": a frame larger than the cap must still
            // be able to arrive.
            inner.inline_want.store(n, Ordering::SeqCst);
            if inner.state.has(READ_PAUSED) && inner.buffered() < inner.effective_input_cap() {
                inner.resume_reading();
            }
            return Err(io::Error::new(
                ErrorKind::WouldBlock,
                "not enough input yet: an inline handler is called again when more arrives",
            ));
        }
        let deadline = deadline.or_else(|| inner.read_timeout().map(|t| Instant::now() + t));
        let mut guard = lock(&inner.waiters);
        inner.wait_size.store(n, Ordering::SeqCst);
        // Reset however the wait ends, an unwind included (a coroutine dropped by its closing
        // poller): a stale size would keep arrivals from scheduling the handler.
        let _waiting = WaitSize(inner);
        // A frame larger than the input cap must still be able to arrive.
        if inner.state.has(READ_PAUSED) && inner.buffered() < inner.effective_input_cap() {
            inner.resume_reading();
        }
        let result = loop {
            if inner.buffered() >= n {
                break Ok(());
            }
            let state = inner.state.load();
            if state & CLOSED != 0 && state & PEER_CLOSED == 0 {
                break Err(inner.closed_error());
            }
            if state & (PEER_CLOSED | CLOSED) != 0 {
                break Err(eof_error());
            }
            guard = match wait_until(&inner.waiters, guard, READ_WAIT, deadline) {
                Some(guard) => guard,
                None => break Err(io::Error::new(ErrorKind::TimedOut, "read timeout")),
            };
        };
        result
    }
}

/// Clears `wait_size` when a waiting read ends.
struct WaitSize<'a>(&'a ConnInner);

impl Drop for WaitSize<'_> {
    fn drop(&mut self) {
        self.0.wait_size.store(0, Ordering::SeqCst);
    }
}

impl ConnInner {
    /// Returns consumed input blocks to the pool. Skipped while a reader guard is alive (a
    /// user's reader in another coroutine, say): waiting for it here could stall the poller,
    /// and that reader's own `release` (or the next handler call) does it later.
    pub(crate) fn release_read_blocks(&self) {
        if let Some(mut reader) = self.input.try_reader() {
            reader.release();
        }
    }
}

impl io::Read for super::Connection {
    /// Reads what is buffered (waiting for at least one byte); `Ok(0)` once the peer finished.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut reader = self.reader();
        match reader.wait_for(1) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(0),
            Err(e) => return Err(e),
        }
        let n = reader.len().min(buf.len());
        let bytes = reader.next(n)?;
        buf[..n].copy_from_slice(&bytes);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use super::super::{ConnOptions, Connection};
    use crate::poll::Poller;
    use crate::transport::addr::Addr;

    /// The poller puts bytes in the input buffer a moment before it counts them in `arrived`.
    /// A reader in that moment must go by the counter: `until` finding a delimiter among the
    /// uncounted bytes and taking them would push `consumed` past `arrived`.
    #[test]
    fn until_takes_only_bytes_already_counted() {
        let (ours, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
        let poller = Poller::new().unwrap();
        let conn = Connection::new(
            socket2::Socket::from(std::os::fd::OwnedFd::from(ours)),
            poller,
            None,
            Addr::Unix(None),
            &ConnOptions::default(),
            0,
        );
        conn.set_read_timeout(Some(Duration::from_millis(20)));
        let inner = &conn.inner;
        // Published, not yet counted: the poller is between `book_ack` and `input_arrived`.
        {
            let mut producer = inner.input.writer();
            producer.write_binary(b"line\n");
            producer.flush();
        }
        let early = conn.reader().until(b'\n');
        assert_eq!(
            early.map_err(|e| e.kind()),
            Err(std::io::ErrorKind::TimedOut),
            "took bytes that had not been counted"
        );
        assert_eq!(inner.consumed.load(Ordering::SeqCst), 0);
        // Counted: now the line is there.
        inner.arrived.fetch_add(5, Ordering::SeqCst);
        assert_eq!(&conn.reader().until(b'\n').unwrap()[..], b"line\n");
        assert_eq!(inner.buffered(), 0);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! The input counters under loom: `RUSTFLAGS="--cfg loom" cargo test --release --lib
    //! loom_tests`.
    //!
    //! `arrived`, `consumed` and `wait_size` are plain `AtomicU64`/`AtomicUsize` fields of
    //! `ConnInner`, which needs a socket and a poller; the models replay, in order, the lines of
    //! `ConnReader::wait_for`, `ConnInner::consumed` (mod.rs) and `input_arrived` (io.rs) that
    //! touch them, with the real `State` for `READ_PAUSED`. The `WaitSet` queue a reader parks on
    //! is modelled by a loom `Condvar` under the same mutex: both queue the waiter under the lock
    //! before releasing it, and the waker dequeues under the lock, so a wake between the
    //! reader's check and its sleep is not lost in either. The counters are `crate::loom::sc`'s:
    //! `SeqCst` as the real ones have it (loom alone would model them as `AcqRel`).
    use crate::loom::sc::{Usize as AtomicUsize, U64 as AtomicU64};
    use crate::reactor::connection::state::{State, READ_PAUSED};
    use loom::sync::{Arc, Condvar, Mutex};
    use loom::thread;

    #[derive(Default)]
    struct Input {
        arrived: AtomicU64,
        consumed: AtomicU64,
        wait_size: AtomicUsize,
        /// The `WaitSet`'s READ_WAIT queue: how many readers are queued.
        waiters: Mutex<usize>,
        wake: Condvar,
        state: State,
    }

    impl Input {
        /// `ConnInner::buffered`: `consumed` first, so the difference cannot underflow.
        fn buffered(&self) -> usize {
            let consumed = self.consumed.load();
            let arrived = self.arrived.load();
            (arrived - consumed) as usize
        }

        /// `ConnReader::wait_for` (no deadline): publish `wait_size` under the waiters' lock,
        /// then re-check `buffered()` before every sleep.
        fn wait_for(&self, n: usize) {
            if self.buffered() >= n {
                return;
            }
            let mut guard = self.waiters.lock().unwrap();
            self.wait_size.store(n);
            while self.buffered() < n {
                *guard += 1;
                guard = self.wake.wait(guard).unwrap();
            }
            drop(guard);
            self.wait_size.store(0);
        }

        /// `input_arrived`'s wake: count, then wake a waiting reader that now has enough.
        fn input_arrived(&self, n: u64) {
            self.arrived.fetch_add(n);
            let buffered = self.buffered();
            let waiting = self.wait_size.load();
            if waiting != 0 && buffered >= waiting {
                // `wake_readers`: take the queue under the lock, wake after releasing it.
                let queued = std::mem::take(&mut *self.waiters.lock().unwrap());
                if queued > 0 {
                    self.wake.notify_all();
                }
            }
        }

        /// `input_arrived`'s pause at the cap, then its re-check.
        fn pause_at_cap(&self, cap: usize) {
            if self.buffered() >= cap {
                self.state.set(READ_PAUSED);
                if self.buffered() < cap {
                    self.state.clear(READ_PAUSED); // resume_reading
                }
            }
        }

        /// `ConnInner::consumed`: count, then resume reading if paused and below the cap.
        fn consumed(&self, n: u64, cap: usize) {
            self.consumed.fetch_add(n);
            if self.state.has(READ_PAUSED) && self.buffered() < cap {
                self.state.clear(READ_PAUSED);
            }
        }
    }

    /// The Dekker pair of a waiting read: the reader publishes `wait_size` then re-checks
    /// `buffered()`; the poller counts `arrived` then reads `wait_size`. The frame comes in two
    /// reads: the reader never sleeps with its two bytes buffered (loom fails a model whose
    /// threads all block).
    #[test]
    fn a_waiting_reader_never_sleeps_with_enough_bytes_buffered() {
        loom::model(|| {
            let input = Arc::new(Input::default());
            let poller = {
                let input = input.clone();
                thread::spawn(move || {
                    input.input_arrived(1);
                    input.input_arrived(1);
                })
            };
            input.wait_for(2);
            assert!(input.buffered() >= 2);
            poller.join().unwrap();
            assert_eq!(input.wait_size.load(), 0);
        });
    }

    /// `READ_PAUSED` between the poller (count, pause at the cap, re-check) and a reader
    /// consuming (count, resume if paused and below the cap): input is never left paused
    /// below the cap, where nothing would resume it.
    #[test]
    fn input_is_never_left_paused_below_the_cap() {
        const CAP: usize = 2;
        loom::model(|| {
            let input = Arc::new(Input::default());
            input.arrived.store(1);
            let poller = {
                let input = input.clone();
                thread::spawn(move || {
                    input.arrived.fetch_add(1);
                    input.pause_at_cap(CAP);
                })
            };
            input.consumed(1, CAP);
            poller.join().unwrap();
            assert!(
                !(input.state.has(READ_PAUSED) && input.buffered() < CAP),
                "paused with {} bytes buffered",
                input.buffered()
            );
        });
    }
}
