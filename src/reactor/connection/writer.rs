//! `ConnWriter`: the output buffer's writer, with a flush that sends and waits for room.

use std::io::{self, ErrorKind, Result};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::state::*;
use super::{lock, wait_until, ConnInner, WRITER_GATE, WRITE_WAIT_Q};
use crate::buffer::{LinkBuffer, Writer};
use crate::rt::wait::{lock_gate, GateGuard};

/// Writes a connection's output. Data becomes visible to the sender only at
/// [`flush`](ConnWriter::flush), all at once. Past the output cap a write first waits (up to
/// the write timeout) for the peer to read what is queued.
///
/// ```
/// use std::io::Read;
/// # let server = std::net::TcpListener::bind("127.0.0.1:0")?;
/// # let conn = netpoll::Dialer::new().dial_tcp("tcp", server.local_addr()?)?;
/// # let (mut peer, _) = server.accept()?;
/// # peer.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
/// // `conn` is a netpoll::Connection, `peer` a std::net::TcpStream at its other end.
/// let mut writer = conn.writer();
/// writer.write_binary(&5u32.to_be_bytes())?;
/// writer.write_string("hello")?;
/// writer.write_direct(bytes::Bytes::from_static(b"!"))?; // linked in, not copied
/// writer.flush()?; // one sendmsg for all three
/// drop(writer);
///
/// let mut frame = [0u8; 10];
/// peer.read_exact(&mut frame)?;
/// assert_eq!(&frame[..], b"\0\0\0\x05hello!");
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct ConnWriter<'a> {
    inner: &'a Arc<ConnInner>,
    /// The output buffer's producer side; holding it serialises writers.
    writer: Writer<'a>,
    /// `runs_inline_here()`, asked once: a guard is `!Send`, so it stays on its thread (and
    /// in or out of its coroutine) for its whole life.
    inline: bool,
    /// Taken first, released last (fields drop in order): the serialisation a coroutine can
    /// wait on without stalling its poller.
    _serial: GateGuard<'a>,
}

impl std::fmt::Debug for ConnWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // This guard's own state only: no lock is taken.
        f.debug_struct("ConnWriter")
            .field("fd", &self.inner.socket.as_raw_fd())
            .field("unflushed", &self.malloc_len())
            .finish()
    }
}

impl<'a> ConnWriter<'a> {
    pub(crate) fn new(inner: &'a Arc<ConnInner>) -> ConnWriter<'a> {
        let serial = lock_gate(&inner.waiters, WRITER_GATE);
        ConnWriter {
            inner,
            writer: inner.output.writer(),
            inline: inner.runs_inline_here(),
            _serial: serial,
        }
    }

    /// Before adding `n` bytes: fail on a closed connection (or one that can send no more),
    /// and wait for the peer to drain queued output if this write would pass the cap.
    ///
    /// An inline handler cannot wait on the poller it runs on, and refusing a write would cut
    /// a reply in two, so there every write is taken; the cap applies between requests
    /// instead: the handler is not called while the queue is over it, and [`ready`] tells a
    /// handler working through pipelined requests to stop.
    ///
    /// [`ready`]: ConnWriter::ready
    fn make_room(&mut self, n: usize) -> Result<()> {
        let state = self.inner.state.load();
        if state & CLOSED != 0 {
            return Err(self.inner.closed_error());
        }
        if state & OUTPUT_DEAD != 0 {
            return Err(dead_output_error());
        }
        if self.inline {
            return Ok(());
        }
        let queued = self.inner.output.len() + self.writer.malloc_len();
        if queued > 0 && queued + n > self.inner.output_cap {
            self.flush()?;
        }
        Ok(())
    }

    /// Waits until the queued output is under the output cap: call it before taking the next
    /// request off the input, so that a peer that does not read stops the requests rather than
    /// growing the queue. An inline handler gets `WouldBlock` instead (return it: the handler
    /// is called again once the poller has sent the queue below the cap, the input paused
    /// meanwhile). It covers this writer's own connection: a handler writing to other
    /// connections bounds those itself.
    pub fn ready(&mut self) -> Result<()> {
        self.make_room(0)?;
        if !self.inline {
            return Ok(());
        }
        let queued = self.inner.output.len() + self.writer.malloc_len();
        if queued >= self.inner.output_cap {
            self.writer.flush();
            if self.inner.output_blocked() {
                return Err(io::Error::new(
                    ErrorKind::WouldBlock,
                    "output cap reached: an inline handler is called again once it drains",
                ));
            }
        }
        Ok(())
    }

    /// Returns `n` writable bytes in the output buffer, not yet visible to the sender.
    pub fn malloc(&mut self, n: usize) -> Result<&mut [u8]> {
        self.make_room(n)?;
        Ok(self.writer.malloc(n))
    }

    /// Bytes written or malloc'ed since the last flush.
    pub fn malloc_len(&self) -> usize {
        self.writer.malloc_len()
    }

    /// Keeps only the first `n` unflushed bytes.
    pub fn malloc_ack(&mut self, n: usize) -> Result<()> {
        self.writer.malloc_ack(n)
    }

    /// Appends UTF-8 text.
    pub fn write_string(&mut self, text: &str) -> Result<()> {
        self.write_binary(text.as_bytes())
    }

    /// Appends a copy of `data`.
    pub fn write_binary(&mut self, data: &[u8]) -> Result<()> {
        self.make_room(data.len())?;
        self.writer.write_binary(data);
        Ok(())
    }

    /// Appends one byte.
    pub fn write_byte(&mut self, byte: u8) -> Result<()> {
        self.make_room(1)?;
        self.writer.write_byte(byte);
        Ok(())
    }

    /// Links `data` into the output without copying it.
    pub fn write_direct(&mut self, data: Bytes) -> Result<()> {
        self.make_room(data.len())?;
        self.writer.write_direct(data);
        Ok(())
    }

    /// Moves all of `other`'s bytes into the output without copying them.
    pub fn append(&mut self, other: LinkBuffer) -> Result<()> {
        self.make_room(other.len())?;
        self.writer.append(other);
        Ok(())
    }

    /// Makes everything written visible and sends it: at once if the socket takes it all,
    /// otherwise the poller sends the rest while this waits, up to the write timeout
    /// (`TimedOut`; the data stays queued and keeps going out as the peer reads).
    pub fn flush(&mut self) -> Result<()> {
        self.writer.flush();
        self.inner.send_and_wait()
    }
}

impl ConnInner {
    fn send_and_wait(self: &Arc<Self>) -> Result<()> {
        let state = self.state.load();
        if state & CLOSED != 0 {
            return Err(self.closed_error());
        }
        if state & OUTPUT_DEAD != 0 {
            return Err(dead_output_error());
        }
        if !self.state.has(WRITE_WAIT) {
            match self.send_output() {
                Ok(true) => return Ok(()),
                Ok(false) => {
                    // Socket full: let the poller send the rest when it has room.
                    self.state.set(WRITE_WAIT);
                    self.sync_interest();
                }
                Err(e) => {
                    self.close_with(e.kind());
                    return Err(e);
                }
            }
        }
        if self.runs_inline_here() {
            // Inline handler: the poller it runs on sends the rest once this returns, bounded
            // by the write timeout.
            self.watch_unwaited_output();
            return Ok(());
        }
        let deadline = self.write_timeout().map(|t| Instant::now() + t);
        let mut guard = lock(&self.waiters);
        loop {
            let state = self.state.load();
            if state & CLOSED != 0 {
                return Err(self.closed_error());
            }
            if state & OUTPUT_DEAD != 0 {
                // The peer is gone: the rest can never be sent.
                return Err(dead_output_error());
            }
            if state & WRITE_WAIT == 0 {
                return Ok(());
            }
            guard = match wait_until(&self.waiters, guard, WRITE_WAIT_Q, deadline) {
                Some(guard) => guard,
                None => return Err(io::Error::new(ErrorKind::TimedOut, "write timeout")),
            };
        }
    }
}

impl io::Write for super::Connection {
    /// Queues `buf` and flushes at once (like netpoll's `Write`): a `write_all` followed by a
    /// wait for the reply must not depend on a later `flush`.
    fn write(&mut self, buf: &[u8]) -> Result<usize> {
        let mut writer = self.writer();
        writer.write_binary(buf)?;
        writer.flush()?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<()> {
        super::Connection::flush(self)
    }
}

fn dead_output_error() -> io::Error {
    io::Error::new(
        ErrorKind::BrokenPipe,
        "the peer can no longer receive (hung up or reset)",
    )
}
