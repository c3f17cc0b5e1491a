//! What the soak's clients share: a seeded random source, random payloads, connecting with
//! timeouts, a writer thread beside the reader (so neither side's buffers can deadlock a large
//! exchange), reading against exactly what must come back, and resets.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use socket2::SockRef;

/// A read that waits longer than this is a failure: the server stopped answering.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A write that makes no progress for this long is a failure.
const WRITE_STALL: Duration = Duration::from_secs(10);
/// Writes wake this often to see whether the reader told them to stop.
const WRITE_POLL: Duration = Duration::from_millis(100);

/// xorshift64*: reproducible from `--seed`, and fast enough to fill megabytes of payload.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// In `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }

    pub fn percent(&mut self, p: u64) -> bool {
        self.next() % 100 < p
    }

    /// In `1..=max`, log-uniform: as many tiny as huge sizes.
    pub fn size(&mut self, max: usize) -> usize {
        let bits = (usize::BITS - max.leading_zeros()) as usize;
        let top = (1usize << self.range(0, bits)).min(max);
        self.range((top / 2).max(1), top)
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

/// A client connection with the soak's timeouts.
pub fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let set = || -> std::io::Result<()> {
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        stream.set_write_timeout(Some(WRITE_POLL))?;
        stream.set_nodelay(true)
    };
    set().map_err(|e| format!("setting up a connection to {addr}: {e}"))?;
    Ok(stream)
}

/// Closes with SO_LINGER 0: the peer gets an RST, whatever is queued is dropped.
pub fn reset(stream: TcpStream) {
    let _ = SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

/// How the writer sends.
#[derive(Clone, Copy, Default)]
pub struct Sending {
    /// `shutdown(SHUT_WR)` once everything is sent: a half-close.
    pub then_shutdown: bool,
    /// One byte at a time, a millisecond apart (a slow, slowloris-like writer).
    pub slowly: bool,
}

/// How the reader reads.
#[derive(Clone, Copy)]
pub struct Reading {
    pub chunk: usize,
    /// A pause after every read: a slow reader, so the server meets backpressure.
    pub pause: Option<Duration>,
}

pub const FAST: Reading = Reading {
    chunk: 64 * 1024,
    pause: None,
};
pub const SLOW: Reading = Reading {
    chunk: 4096,
    pause: Some(Duration::from_millis(1)),
};

/// Sends `bytes` (how `sending` says) on a thread of its own while `read` runs on this one;
/// a reader that finishes or fails stops the writer. The reader's error wins.
pub fn exchange<T>(
    stream: &TcpStream,
    bytes: &[u8],
    sending: Sending,
    read: impl FnOnce(&TcpStream) -> Result<T, String>,
) -> Result<T, String> {
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| send(stream, bytes, sending, &stop));
        let got = read(stream);
        stop.store(true, Ordering::Relaxed);
        let wrote = writer
            .join()
            .unwrap_or_else(|_| Err("the writer thread panicked".into()));
        let value = got?;
        wrote?;
        Ok(value)
    })
}

/// Writes all of `bytes` unless `stop` is set first (then returns Ok: the reader decided).
pub fn send(
    stream: &TcpStream,
    bytes: &[u8],
    sending: Sending,
    stop: &AtomicBool,
) -> Result<(), String> {
    let mut writer = stream;
    let mut sent = 0;
    let mut progress = Instant::now();
    while sent < bytes.len() {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let end = if sending.slowly {
            sent + 1
        } else {
            bytes.len().min(sent + 256 * 1024)
        };
        match writer.write(&bytes[sent..end]) {
            Ok(0) => return Err(format!("write: 0 bytes after {sent} of {}", bytes.len())),
            Ok(n) => {
                sent += n;
                progress = Instant::now();
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if progress.elapsed() > WRITE_STALL {
                    return Err(format!(
                        "write stalled for {WRITE_STALL:?} after {sent} of {} bytes",
                        bytes.len()
                    ));
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("write after {sent} of {} bytes: {e}", bytes.len())),
        }
        if sending.slowly {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    if sending.then_shutdown {
        stream
            .shutdown(Shutdown::Write)
            .map_err(|e| format!("shutdown(write): {e}"))?;
    }
    Ok(())
}

/// Sends all of `bytes` from this thread (for requests the server reads in full whatever the
/// client does).
pub fn send_all(stream: &TcpStream, bytes: &[u8], sending: Sending) -> Result<(), String> {
    send(stream, bytes, sending, &AtomicBool::new(false))
}

/// Reads exactly `want`, comparing as it goes: a byte that differs or a close before the end is
/// an error that says where.
pub fn expect(stream: &TcpStream, want: &[u8], reading: Reading, what: &str) -> Result<(), String> {
    let mut buf = vec![0u8; reading.chunk.min(want.len()).max(1)];
    let mut reader = stream;
    let mut got = 0;
    while got < want.len() {
        let room = (want.len() - got).min(buf.len());
        match reader.read(&mut buf[..room]) {
            Ok(0) => {
                return Err(format!(
                    "{what}: closed after {got} of {} bytes",
                    want.len()
                ))
            }
            Ok(n) => {
                if let Some(i) = (0..n).find(|&i| buf[i] != want[got + i]) {
                    return Err(format!(
                        "{what}: byte {} of {} differs (got {:#04x}, expected {:#04x})",
                        got + i,
                        want.len(),
                        buf[i],
                        want[got + i]
                    ));
                }
                got += n;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(format!(
                    "{what}: read after {got} of {} bytes: {e}",
                    want.len()
                ))
            }
        }
        if let Some(pause) = reading.pause {
            std::thread::sleep(pause);
        }
    }
    Ok(())
}

/// Reads and discards up to `len` bytes (what a client about to reset has no use for).
pub fn skim(stream: &TcpStream, len: usize) -> Result<(), String> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut reader = stream;
    let mut got = 0;
    while got < len {
        let room = (len - got).min(buf.len());
        match reader.read(&mut buf[..room]) {
            Ok(0) => return Err(format!("closed after {got} of {len} bytes")),
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read after {got} of {len} bytes: {e}")),
        }
    }
    Ok(())
}

/// Reads until the server closes; more bytes, or an error instead of a FIN, is a failure.
pub fn expect_eof(stream: &TcpStream, what: &str) -> Result<(), String> {
    let mut reader = stream;
    let mut byte = [0u8; 256];
    loop {
        return match reader.read(&mut byte) {
            Ok(0) => Ok(()),
            Ok(n) => Err(format!("{what}: {n} bytes more than expected")),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => Err(format!("{what}: waiting for the close: {e}")),
        };
    }
}

/// Reads until the server closes, returning what came (at most `limit` bytes).
pub fn read_to_close(stream: &TcpStream, limit: usize, what: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let mut reader = stream;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) if out.len() + n > limit => {
                return Err(format!("{what}: more than {limit} bytes before the close"))
            }
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("{what}: waiting for the close: {e}")),
        }
    }
}
