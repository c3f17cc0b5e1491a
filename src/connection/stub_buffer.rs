//! TEMPORARY stand-in for the LinkBuffer while it is being written; same method names.
#![allow(missing_docs, dead_code)]

use std::collections::VecDeque;
use std::io::{self, IoSlice, IoSliceMut};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;

#[derive(Default)]
pub struct LinkBuffer {
    inner: Mutex<Inner>,
}

#[derive(Default)]
pub struct Inner {
    data: VecDeque<u8>,
    pending: Vec<u8>,
    booked: Vec<u8>,
}

pub type Reader<'a> = MutexGuard<'a, Inner>;
pub type Writer<'a> = MutexGuard<'a, Inner>;

fn short() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "not enough data")
}

impl LinkBuffer {
    pub fn new() -> LinkBuffer {
        LinkBuffer::default()
    }
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap().data.len()
    }
    pub fn producer(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }
    pub fn producer_mut(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }
    pub fn consumer(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }
}

impl Inner {
    pub fn book(&mut self, size: usize, _max: usize) -> Vec<IoSliceMut<'_>> {
        self.booked.resize(size, 0);
        vec![IoSliceMut::new(&mut self.booked)]
    }
    pub fn book_ack(&mut self, n: usize) {
        let b = std::mem::take(&mut self.booked);
        self.data.extend(&b[..n]);
    }
    pub fn next(&mut self, n: usize) -> io::Result<Bytes> {
        if self.data.len() < n {
            return Err(short());
        }
        Ok(Bytes::from(self.data.drain(..n).collect::<Vec<u8>>()))
    }
    pub fn peek(&mut self, n: usize) -> io::Result<Bytes> {
        if self.data.len() < n {
            return Err(short());
        }
        Ok(Bytes::from(
            self.data.range(..n).copied().collect::<Vec<u8>>(),
        ))
    }
    pub fn skip(&mut self, n: usize) -> io::Result<()> {
        self.next(n).map(|_| ())
    }
    pub fn find(&self, delim: u8, from: usize) -> Option<usize> {
        self.data
            .iter()
            .skip(from)
            .position(|b| *b == delim)
            .map(|p| p + from)
    }
    pub fn read_string(&mut self, n: usize) -> io::Result<String> {
        let b = self.peek(n)?;
        let s = String::from_utf8(b.to_vec())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.skip(n)?;
        Ok(s)
    }
    pub fn read_binary(&mut self, n: usize) -> io::Result<Vec<u8>> {
        self.next(n).map(|b| b.to_vec())
    }
    pub fn read_byte(&mut self) -> io::Result<u8> {
        self.data.pop_front().ok_or_else(short)
    }
    pub fn slice(&mut self, n: usize) -> io::Result<LinkBuffer> {
        let b = self.next(n)?;
        let out = LinkBuffer::new();
        out.inner.lock().unwrap().data.extend(&b[..]);
        Ok(out)
    }
    pub fn release(&mut self) {}
    pub fn malloc_len(&self) -> usize {
        self.pending.len()
    }
    pub fn malloc(&mut self, n: usize) -> &mut [u8] {
        let at = self.pending.len();
        self.pending.resize(at + n, 0);
        &mut self.pending[at..]
    }
    pub fn malloc_ack(&mut self, n: usize) -> io::Result<()> {
        self.pending.truncate(n);
        Ok(())
    }
    pub fn write_binary(&mut self, d: &[u8]) {
        self.pending.extend_from_slice(d)
    }
    pub fn write_byte(&mut self, b: u8) {
        self.pending.push(b)
    }
    pub fn write_direct(&mut self, d: Bytes) {
        self.pending.extend_from_slice(&d)
    }
    pub fn append(&mut self, other: LinkBuffer) {
        let o = other.inner.into_inner().unwrap();
        self.pending.extend(o.data);
    }
    pub fn flush(&mut self) {
        let p = std::mem::take(&mut self.pending);
        self.data.extend(p);
    }
    pub fn readable_iovecs(&mut self, _max: usize) -> Vec<IoSlice<'_>> {
        let (a, b) = self.data.as_slices();
        let mut v = Vec::new();
        if !a.is_empty() {
            v.push(IoSlice::new(a));
        }
        if !b.is_empty() {
            v.push(IoSlice::new(b));
        }
        v
    }
}
