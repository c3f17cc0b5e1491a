//! Protocol codecs on the zero-copy buffers: RESP2 ([`resp`]) and HTTP/1.1 ([`http`]).
//!
//! The parsers read through [`Input`]: what is buffered *now*, taken without waiting. They
//! never block and never ask for more than is there; when a frame is incomplete they say how
//! many bytes they need, and the caller waits for those (a [`ConnReader`]'s `fill`, which an
//! inline handler turns into "call me again"), or, in tests and fuzzing, feeds more into a
//! [`LinkBuffer`].
//!
//! [`LinkBuffer`]: crate::buffer::LinkBuffer

use std::io;

use bytes::Bytes;

use crate::buffer::{Reader, Writer};
use crate::{ConnReader, ConnWriter};

pub mod http;
pub mod resp;

/// Buffered input a parser takes frames from. Implemented by a connection's reader and by a
/// [`LinkBuffer`](crate::buffer::LinkBuffer)'s; `n` never exceeds [`len`](Input::len).
pub trait Input {
    /// Bytes readable now.
    fn len(&self) -> usize;
    /// True when nothing is readable now.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The first block of what is readable now: bytes to look at in place, without a copy
    /// (shorter than [`len`](Input::len) when the rest lies in later blocks).
    fn front(&mut self) -> &[u8];
    /// The offset of the first `delim` at or after `from`, among the bytes readable now.
    fn find(&mut self, delim: u8, from: usize) -> Option<usize>;
    /// The next `n` bytes, left in place (shared when they lie in one block, else copied).
    fn peek(&mut self, n: usize) -> io::Result<Bytes>;
    /// Takes the next `n` bytes (shared when they lie in one block, else copied).
    fn next(&mut self, n: usize) -> io::Result<Bytes>;
    /// Discards the next `n` bytes.
    fn skip(&mut self, n: usize) -> io::Result<()>;
}

impl Input for Reader<'_> {
    fn len(&self) -> usize {
        Reader::len(self)
    }
    fn front(&mut self) -> &[u8] {
        Reader::front(self)
    }
    fn find(&mut self, delim: u8, from: usize) -> Option<usize> {
        Reader::find(self, delim, from)
    }
    fn peek(&mut self, n: usize) -> io::Result<Bytes> {
        Reader::peek(self, n)
    }
    fn next(&mut self, n: usize) -> io::Result<Bytes> {
        Reader::next(self, n)
    }
    fn skip(&mut self, n: usize) -> io::Result<()> {
        Reader::skip(self, n)
    }
}

impl Input for ConnReader<'_> {
    fn len(&self) -> usize {
        ConnReader::len(self)
    }
    fn front(&mut self) -> &[u8] {
        ConnReader::front(self)
    }
    fn find(&mut self, delim: u8, from: usize) -> Option<usize> {
        ConnReader::find(self, delim, from)
    }
    fn peek(&mut self, n: usize) -> io::Result<Bytes> {
        ConnReader::peek(self, n)
    }
    fn next(&mut self, n: usize) -> io::Result<Bytes> {
        ConnReader::next(self, n)
    }
    fn skip(&mut self, n: usize) -> io::Result<()> {
        ConnReader::skip(self, n)
    }
}

/// Where encoders write replies: a connection's writer, a
/// [`LinkBuffer`](crate::buffer::LinkBuffer)'s, or a `Vec<u8>`.
pub trait Output {
    /// Appends a copy of `data`.
    fn write_binary(&mut self, data: &[u8]) -> io::Result<()>;
    /// Appends `data` without copying it, where the output can link it.
    fn write_direct(&mut self, data: Bytes) -> io::Result<()>;
}

impl Output for ConnWriter<'_> {
    fn write_binary(&mut self, data: &[u8]) -> io::Result<()> {
        ConnWriter::write_binary(self, data)
    }
    fn write_direct(&mut self, data: Bytes) -> io::Result<()> {
        ConnWriter::write_direct(self, data)
    }
}

impl Output for Writer<'_> {
    fn write_binary(&mut self, data: &[u8]) -> io::Result<()> {
        Writer::write_binary(self, data);
        Ok(())
    }
    fn write_direct(&mut self, data: Bytes) -> io::Result<()> {
        Writer::write_direct(self, data);
        Ok(())
    }
}

impl Output for Vec<u8> {
    fn write_binary(&mut self, data: &[u8]) -> io::Result<()> {
        self.extend_from_slice(data);
        Ok(())
    }
    fn write_direct(&mut self, data: Bytes) -> io::Result<()> {
        self.extend_from_slice(&data);
        Ok(())
    }
}
